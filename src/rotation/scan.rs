//! Reading what is on disk for a managed certificate (read-only).

use std::path::Path;

use super::plan::Current;
use crate::kube::kubeconfig::{self, Kubeconfig};
use crate::paths::{self, NodeRoot};
use crate::pki::{key, keygen, parse_material, CertInfo};
use crate::store::{Managed, PkiStore, Store};

pub(super) fn read(root: &NodeRoot, p: &Path) -> Result<Vec<u8>, String> {
    root.read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The certificate on disk at `cert` with its key at `key`: its state, its key when it
/// matches, and the parsed certificate even when its key does not (a renewal keeps its
/// subject and SANs).
pub(super) fn current_pair(
    root: &NodeRoot,
    cert: &Path,
    key: &Path,
) -> (Current, Option<rcgen::KeyPair>, Option<CertInfo>) {
    let broken = |e: String| Current::Broken(format!("{}: {e}", cert.display()));
    let info = match root.read(cert) {
        Err(paths::ReadError::NotFound) => return (Current::Missing, None, None),
        Err(e) => return (broken(e.to_string()), None, None),
        Ok(b) => parse_material(&b).and_then(|m| {
            let der = m.certificates.first().ok_or("no certificate in file")?;
            CertInfo::parse(der)
        }),
    };
    let info = match info {
        Ok(i) => i,
        Err(e) => return (broken(e), None, None),
    };
    let key_pair = read(root, key)
        .and_then(|b| parse_material(&b))
        .and_then(|m| {
            m.private_keys
                .first()
                .ok_or_else(|| "no private key".to_string())
                .and_then(keygen::load)
        });
    // A certificate whose key is missing or wrong is broken, but it still says what its
    // replacement should say.
    match key_pair {
        Ok(k) if rcgen::PublicKeyData::der_bytes(&k) == info.public_key.as_slice() => (
            Current::Present(Box::new(info.clone())),
            Some(k),
            Some(info),
        ),
        Ok(_) => (
            Current::Broken(format!(
                "{} does not match {}",
                key.display(),
                cert.display()
            )),
            None,
            Some(info),
        ),
        Err(e) => (
            Current::Broken(format!("key {}: {e}", key.display())),
            None,
            Some(info),
        ),
    }
}

/// The client certificate a kubeconfig carries for its current user.
pub(super) fn current_kubeconfig_cert(root: &NodeRoot, path: &Path, text: &[u8]) -> Current {
    let broken = |e: String| Current::Broken(format!("{}: {e}", path.display()));
    let kc = match Kubeconfig::parse(text) {
        Ok(kc) => kc,
        Err(e) => return broken(e),
    };
    let user = match kubeconfig::current_user_name(&kc) {
        Ok(u) => u,
        Err(e) => return broken(e),
    };
    let Some(u) = kc.users.iter().find(|u| u.name == user) else {
        return broken(format!("user {user:?} not found"));
    };
    let load =
        |data: &Option<String>, file: &Option<String>, field: &str| -> Result<Vec<u8>, String> {
            match (data, file) {
                (Some(d), _) => kubeconfig::decode_data(field, d),
                (None, Some(f)) => read(root, &paths::resolve_reference(path, f)),
                (None, None) => Err(format!("user {user:?} has no {field}")),
            }
        };
    let cert = load(
        &u.user.client_certificate_data,
        &u.user.client_certificate,
        "client certificate",
    );
    let key = load(&u.user.client_key_data, &u.user.client_key, "client key");
    let parsed = cert.and_then(|c| parse_material(&c)).and_then(|m| {
        let der = m.certificates.first().ok_or("no certificate")?;
        CertInfo::parse(der)
    });
    let info = match parsed {
        Ok(i) => i,
        Err(e) => return broken(e),
    };
    let key_ok = key
        .and_then(|k| parse_material(&k))
        .and_then(|m| {
            m.private_keys
                .first()
                .ok_or_else(|| "no private key".to_string())
                .and_then(key::public_key_of)
        })
        .map(|p| p == info.public_key);
    match key_ok {
        Ok(true) => Current::Present(Box::new(info)),
        Ok(false) => broken("client key does not match the client certificate".into()),
        Err(e) => broken(format!("client key: {e}")),
    }
}

/// The certificate of the newest version in the pair's history, when the live one is gone:
/// a deleted certificate is re-issued with the subject and SANs it had.
pub(super) fn latest_in_history(
    root: &NodeRoot,
    store: &Store,
    cert: &Path,
    key: &Path,
) -> Option<CertInfo> {
    let managed = Managed::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let versions = store.versions(&managed).ok()?;
    let file = cert.file_name()?;
    versions.iter().rev().find_map(|v| {
        let path = cert.parent()?.join(&v.name).join(file);
        let bytes = root.read(&path).ok()?;
        let m = parse_material(&bytes).ok()?;
        CertInfo::parse(m.certificates.first()?).ok()
    })
}
