//! The one check the store makes on content: a certificate and the key it is paired with.

use crate::pki::{key, parse_material, CertInfo};

/// `Ok` when `cert_pem` holds a certificate (the first one is the leaf) and `key_pem` holds
/// the private key for it. The two may be the same bytes (a kubelet `*.pem`).
pub fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let certs = parse_material(cert_pem)?;
    let leaf = certs
        .certificates
        .first()
        .ok_or_else(|| "no certificate".to_string())?;
    let info = CertInfo::parse(leaf)?;
    let keys = parse_material(key_pem)?;
    let [private] = keys.private_keys.as_slice() else {
        return Err(format!(
            "expected one private key, found {}",
            keys.private_keys.len()
        ));
    };
    if key::public_key_of(private)? != info.public_key {
        return Err("the private key does not belong to the certificate".into());
    }
    Ok(())
}
