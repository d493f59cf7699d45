//! Certificate revocation lists for consumers that take one (etcd `--client-crl-file`,
//! `--peer-crl-file`): for each local CA with revoked serials, an X.509 v2 CRL signed by
//! that CA, written atomically next to it (`etcd/ca.crt` -> `etcd/ca.crl`).
//!
//! A CRL lists: the serials it listed before (read back from the file), every
//! `serialnumber` revocation entry (a serial alone does not say which CA issued it, and
//! serials are random, so it goes into every local CA's list), and the serials of
//! certificates this run replaced because they were revoked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use super::{Entry, Rule};
use crate::config::{CaRef, Config};
use crate::paths::NodeRoot;
use crate::pki::issue::Ca;
use crate::pki::parse_material;
use crate::store::{FileSpec, Store};

/// How long a CRL is valid; it is re-signed when half of that has passed.
pub const VALIDITY: Duration = Duration::days(7);

/// The CRL's path for a CA certificate path.
pub fn crl_path(ca_cert: &Path) -> PathBuf {
    ca_cert.with_extension("crl")
}

/// Serials (hex) and revocation times already in a CRL file, with its thisUpdate and number.
fn read_existing(
    root: &NodeRoot,
    path: &Path,
) -> Option<(BTreeMap<String, OffsetDateTime>, OffsetDateTime, u64)> {
    let bytes = root.read(path).ok()?;
    let der = match ::pem::parse(&bytes) {
        Ok(p) => p.into_contents(),
        Err(_) => bytes,
    };
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).ok()?;
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                crate::pki::cert::serial_hex(r.raw_serial()),
                r.revocation_date.to_datetime(),
            )
        })
        .collect();
    let number = crl
        .crl_number()
        .map(|n| n.to_u64_digits().first().copied().unwrap_or(0))
        .unwrap_or(0);
    Some((serials, crl.last_update().to_datetime(), number))
}

/// A managed certificate that was replaced because a revocation matched it: its old
/// serial goes into its CA's list.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub name: String,
    pub serial: String,
}

/// Write or refresh the CRL of every local CA that has revoked serials.
pub fn update(
    root: &NodeRoot,
    config: &Config,
    revs: &[Entry],
    replaced: &[Replaced],
    now: OffsetDateTime,
    progress: &(dyn Fn(&str) + Sync),
) {
    let store = Store::new(root.clone(), config.history);
    // Local CAs, and which managed names they issue.
    let mut cas: BTreeMap<PathBuf, (CaRef, Vec<String>)> = BTreeMap::new();
    let issued = config
        .certificates
        .iter()
        .map(|c| (&c.ca, &c.name))
        .chain(config.kubeconfigs.iter().map(|k| (&k.ca, &k.name)));
    for (ca, name) in issued {
        cas.entry(ca.cert.clone())
            .or_insert_with(|| (ca.clone(), vec![]))
            .1
            .push(name.clone());
    }
    let serial_entries: Vec<&String> = revs
        .iter()
        .filter_map(|e| match &e.rule {
            Rule::Serial(s) => Some(s),
            _ => None,
        })
        .collect();
    for (ca_path, (ca_ref, names)) in cas {
        let path = crl_path(&ca_path);
        let existing = read_existing(root, &path);
        let mut serials: BTreeMap<String, OffsetDateTime> =
            existing.as_ref().map(|e| e.0.clone()).unwrap_or_default();
        for s in &serial_entries {
            serials.entry((*s).clone()).or_insert(now);
        }
        for r in replaced.iter().filter(|r| names.contains(&r.name)) {
            serials
                .entry(crate::revocation::normalize_serial(&r.serial).unwrap_or_default())
                .or_insert(now);
        }
        if serials.is_empty() {
            continue;
        }
        let unchanged = existing.as_ref().is_some_and(|(old, this_update, _)| {
            old.keys().eq(serials.keys()) && now - *this_update < VALIDITY / 2
        });
        if unchanged {
            continue;
        }
        let number = existing.map(|e| e.2 + 1).unwrap_or(1);
        let result = (|| -> Result<(), String> {
            let cert = root
                .read(&ca_ref.cert)
                .map_err(|e| format!("{}: {e}", ca_ref.cert.display()))?;
            let key = root
                .read(&ca_ref.key)
                .map_err(|e| format!("{}: {e}", ca_ref.key.display()))?;
            let ca = Ca::load(&cert, &key, now)?;
            let list: Vec<(String, OffsetDateTime)> =
                serials.iter().map(|(s, t)| (s.clone(), *t)).collect();
            let pem = ca.sign_crl(&list, number, now, VALIDITY)?;
            // Check what we wrote parses back before it replaces anything.
            parse_material(pem.as_bytes()).map_err(|e| format!("CRL: {e}"))?;
            store
                .write_file(&path, pem.as_bytes(), FileSpec::CERT)
                .map_err(|e| e.to_string())
        })();
        match result {
            Ok(()) => progress(&format!(
                "CRL {} written: {} revoked serial(s)",
                path.display(),
                serials.len()
            )),
            Err(e) => progress(&format!("CRL {} not written: {e}", path.display())),
        }
    }
}
