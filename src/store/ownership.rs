//! Before a pair's files are replaced, prove they belong to the certificate being rotated.
//!
//! A typo in one configured path (`apiserverr.crt` beside the real `apiserver.key`) must
//! not replace the real key: a key that another certificate in the directory uses, or a
//! certificate whose key is another file of the directory, is refused, naming both files.
//! Files that cannot be parsed prove nothing either way and are replaced (that is what
//! repairing a broken pair means).

use super::dir::{Entry, ManagedDir};
use super::error::StoreError;
use crate::pki::{key, parse_material, CertInfo};

/// The leaf of a certificate file.
fn leaf(bytes: &[u8]) -> Option<CertInfo> {
    let m = parse_material(bytes).ok()?;
    CertInfo::parse(m.certificates.first()?).ok()
}

/// The public key a certificate file's leaf carries.
fn cert_public_key(bytes: &[u8]) -> Option<Vec<u8>> {
    leaf(bytes).map(|c| c.public_key)
}

/// The public keys of the private keys a file holds.
fn key_public_keys(bytes: &[u8]) -> Vec<Vec<u8>> {
    let Ok(m) = parse_material(bytes) else {
        return Vec::new();
    };
    m.private_keys
        .iter()
        .filter_map(|k| key::public_key_of(k).ok())
        .collect()
}

/// The other public files of the directory (not ours, not the store's `..` names), with
/// what they hold. Unreadable ones are skipped: they cannot own anything.
fn others(dir: &ManagedDir, ours: &[&str]) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = dir.list() else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .filter(|n| !n.starts_with('.') && !ours.contains(&n.as_str()))
        .filter(|n| matches!(dir.entry(n), Ok(Entry::File(_) | Entry::Symlink(_))))
        .filter_map(|n| dir.read_beneath(&n).ok().map(|(data, _)| (n, data)))
        .collect();
    out.sort();
    out
}

/// `Ok` when replacing the pair's current `cert` and `key` contents (`None`: missing or
/// unreadable) cannot break another certificate of the directory.
/// `ca`: the pair is a CA's own (`rotate-ca`), so a CA certificate in place is expected.
pub fn check(
    dir: &ManagedDir,
    ca: bool,
    cert_name: &str,
    key_name: &str,
    cert: Option<&[u8]>,
    key_data: Option<&[u8]>,
) -> Result<(), StoreError> {
    if !ca && cert.and_then(leaf).is_some_and(|c| c.is_ca) {
        return Err(StoreError::IsCa {
            path: dir.host_path(cert_name),
        });
    }
    let cert_pub = cert.and_then(cert_public_key);
    let key_pubs = key_data.map(key_public_keys).unwrap_or_default();
    if let Some(c) = &cert_pub {
        if key_pubs.contains(c) {
            return Ok(()); // the pair belongs together
        }
    }
    if key_pubs.is_empty() && cert_pub.is_none() {
        return Ok(());
    }
    for (other, data) in others(dir, &[cert_name, key_name]) {
        if !key_pubs.is_empty() {
            if let Some(p) = cert_public_key(&data) {
                if key_pubs.contains(&p) {
                    return Err(StoreError::BelongsElsewhere {
                        path: dir.host_path(key_name),
                        owner: dir.host_path(&other),
                        what: format!(
                            "is the key of {}, not of {}",
                            dir.host_path(&other).display(),
                            dir.host_path(cert_name).display()
                        ),
                    });
                }
            }
        }
        if let Some(c) = &cert_pub {
            if key_public_keys(&data).contains(c) {
                return Err(StoreError::BelongsElsewhere {
                    path: dir.host_path(cert_name),
                    owner: dir.host_path(&other),
                    what: format!(
                        "has its key in {}, not in {}",
                        dir.host_path(&other).display(),
                        dir.host_path(key_name).display()
                    ),
                });
            }
        }
    }
    Ok(())
}
