//! The new CA of a rotation: made here (same subject as the old one, a new key of the
//! same type, ten years as kubeadm makes them), or given by the operator (a second
//! control-plane node must use the one the first made). Pure: no disk.

use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use x509_parser::der_parser::asn1_rs::Tag;

use crate::pki::issue::BACKDATE;
use crate::pki::keygen::{self, KeyType};
use crate::pki::{key, parse_material, CertInfo};

/// kubeadm's CA validity (`certutil.NewSelfSignedCACert`: ten years).
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// A new CA: certificate and key, PEM.
pub struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
}

impl std::fmt::Debug for NewCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCa")
            .field("serial", &self.info.serial)
            .finish_non_exhaustive()
    }
}

/// The key type of a certificate's key, as `keyType` names it.
fn key_type_of(info: &CertInfo) -> Result<KeyType, String> {
    Ok(match info.key_type.as_str() {
        "RSA 2048" => KeyType::Rsa2048,
        "RSA 3072" => KeyType::Rsa3072,
        "RSA 4096" => KeyType::Rsa4096,
        "ECDSA P-256" => KeyType::EcdsaP256,
        "ECDSA P-384" => KeyType::EcdsaP384,
        other => return Err(format!("the old CA's key type {other} cannot be generated")),
    })
}

/// The subject of `der` as rcgen writes it, attribute by attribute with its string type,
/// so that the new CA's subject is byte-identical (Go clients match issuers on raw bytes).
fn subject_of(der: &[u8]) -> Result<DistinguishedName, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut dn = DistinguishedName::new();
    for rdn in x509.subject().iter() {
        let attrs: Vec<_> = rdn.iter().collect();
        let [attr] = attrs.as_slice() else {
            return Err("the old CA's subject has a multi-valued RDN".into());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("the old CA's subject has an unreadable attribute type")?
            .collect();
        let data = attr.attr_value().data;
        let text = std::str::from_utf8(data)
            .map_err(|_| "the old CA's subject is not UTF-8".to_string())?
            .to_string();
        let bad = |e: rcgen::Error| format!("the old CA's subject: {e}");
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => DnValue::PrintableString(text.try_into().map_err(bad)?),
            Tag::Utf8String => DnValue::Utf8String(text),
            Tag::Ia5String => DnValue::Ia5String(text.try_into().map_err(bad)?),
            t => return Err(format!("the old CA's subject uses string type {t:?}")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Make the successor of `old`: same subject, a new key of the same type, valid from now
/// (backdated 5 minutes) for ten years.
pub fn generate(old: &CertInfo, now: OffsetDateTime) -> Result<NewCa, String> {
    let key = keygen::generate(key_type_of(old)?)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = subject_of(&old.der)?;
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // kubeadm's: keyEncipherment | digitalSignature | keyCertSign.
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let start = now - BACKDATE;
    p.not_before = start.replace_nanosecond(0).unwrap_or(start);
    p.not_after = now + CA_VALIDITY;
    p.serial_number = Some(crate::pki::issue::random_serial()?);
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("signing the new CA failed: {e}"))?;
    let info = CertInfo::parse(cert.der())?;
    let made = NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        info,
    };
    check_successor(old, &made, now)?;
    Ok(made)
}

/// Take a CA the operator gives (`--cert`/`--key`; the key may be absent on a node that
/// only trusts the CA) and check that it can succeed `old`.
pub fn given(
    old: &CertInfo,
    cert_pem: &[u8],
    key_pem: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<NewCa, String> {
    let m = parse_material(cert_pem)?;
    let [der] = m.certificates.as_slice() else {
        return Err(format!(
            "expected exactly one certificate, found {}",
            m.certificates.len()
        ));
    };
    let info = CertInfo::parse(der)?;
    let key_pem = match key_pem {
        Some(k) => {
            let km = parse_material(k).map_err(|e| format!("key: {e}"))?;
            let [private] = km.private_keys.as_slice() else {
                return Err("key: expected exactly one private key".into());
            };
            if key::public_key_of(private)? != info.public_key {
                return Err("the key does not belong to the certificate".into());
            }
            String::from_utf8(k.to_vec()).map_err(|_| "key: not PEM text".to_string())?
        }
        None => String::new(),
    };
    let cert_pem = crate::ca_rotation::bundle::to_pem(std::slice::from_ref(der));
    let made = NewCa {
        cert_pem,
        key_pem,
        info,
    };
    check_successor(old, &made, now)?;
    Ok(made)
}

/// A successor is a CA, valid now, with the old CA's exact subject and another key.
pub fn check_successor(old: &CertInfo, new: &NewCa, now: OffsetDateTime) -> Result<(), String> {
    let n = &new.info;
    if !n.is_ca {
        return Err("the new CA certificate is not a CA (basicConstraints CA:TRUE missing)".into());
    }
    if !n.is_self_issued() || !n.is_signed_by(n) {
        return Err("the new CA certificate is not self-signed".into());
    }
    if n.subject_der != old.subject_der {
        return Err(format!(
            "the new CA's subject ({}) is not byte-identical to the old CA's ({}): leaves would not chain",
            n.subject, old.subject
        ));
    }
    if n.public_key == old.public_key {
        return Err("the new CA has the old CA's key: a rotation needs a new key".into());
    }
    if now < n.not_before || now >= n.not_after {
        return Err(format!(
            "the new CA is not valid now (valid {} to {})",
            crate::rotation::plan::rfc3339(n.not_before),
            crate::rotation::plan::rfc3339(n.not_after)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_ca(now: OffsetDateTime) -> CertInfo {
        let key = keygen::generate(KeyType::EcdsaP256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(
            DnType::CommonName,
            DnValue::PrintableString("kubernetes".try_into().unwrap()),
        );
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now - Duration::days(300);
        p.not_after = now + Duration::days(3000);
        CertInfo::parse(p.self_signed(&key).unwrap().der()).unwrap()
    }

    #[test]
    fn the_successor_keeps_the_subject_bytes_and_changes_the_key() {
        let now = OffsetDateTime::now_utc();
        let old = old_ca(now);
        let new = generate(&old, now).unwrap();
        assert_eq!(new.info.subject_der, old.subject_der);
        assert_ne!(new.info.public_key, old.public_key);
        assert_eq!(new.info.key_type, "ECDSA P-256");
        assert!(new.info.is_ca);
        assert!(new.info.not_after - now >= CA_VALIDITY - Duration::seconds(1));
        // Given back as files, it is accepted; the old CA itself is not a successor.
        let again = given(
            &old,
            new.cert_pem.as_bytes(),
            Some(new.key_pem.as_bytes()),
            now,
        )
        .unwrap();
        assert_eq!(again.info.serial, new.info.serial);
        let other = generate(&old, now).unwrap();
        let e = given(
            &old,
            new.cert_pem.as_bytes(),
            Some(other.key_pem.as_bytes()),
            now,
        )
        .unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
        let same = NewCa {
            cert_pem: String::new(),
            key_pem: String::new(),
            info: old.clone(),
        };
        assert!(check_successor(&old, &same, now)
            .unwrap_err()
            .contains("old CA's key"));
    }
}
