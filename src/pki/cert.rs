//! One certificate, parsed into the facts the agent reports and decides on.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// `CN=kube-apiserver, O=...`, in certificate order.
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    /// Lower-case hex without separators or sign padding, as `openssl x509 -serial` prints
    /// it (there in upper case).
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub is_ca: bool,
    /// `RSA 2048`, `ECDSA P-384`, `Ed25519`.
    pub key_type: String,
    /// `serverAuth`, `clientAuth`, ...
    pub ext_key_usages: Vec<String>,
    /// Raw subject public key (BIT STRING contents): compared against private keys.
    pub public_key: Vec<u8>,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            ));
        }
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let mut ext_key_usages = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                            GeneralName::IPAddress(ip) => {
                                if let Some(ip) = ip_from_bytes(ip) {
                                    ip_addresses.push(ip)
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let flags = [
                        (eku.server_auth, "serverAuth"),
                        (eku.client_auth, "clientAuth"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "ocspSigning"),
                        (eku.any, "any"),
                    ];
                    ext_key_usages.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_string()));
                }
                ParsedExtension::UnsupportedExtension { .. }
                | ParsedExtension::ParseError { .. }
                    if ext.critical =>
                {
                    return Err(format!("critical extension {} cannot be parsed", ext.oid));
                }
                _ => {}
            }
        }
        let attr = |name: &x509_parser::x509::X509Name<'_>, oid| {
            name.iter_by_oid(oid)
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect::<Vec<_>>()
        };
        let subject = cert.subject();
        Ok(CertInfo {
            der: der.to_vec(),
            subject: subject.to_string(),
            issuer: cert.issuer().to_string(),
            common_name: attr(subject, &oid_registry::OID_X509_COMMON_NAME)
                .into_iter()
                .next(),
            organizations: attr(subject, &oid_registry::OID_X509_ORGANIZATION_NAME),
            serial: serial_hex(cert.raw_serial()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            dns_names,
            ip_addresses,
            is_ca: cert.is_ca(),
            key_type: spki_key_type(cert.public_key()),
            ext_key_usages,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            subject_der: subject.as_raw().to_vec(),
            issuer_der: cert.issuer().as_raw().to_vec(),
        })
    }

    pub fn is_self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    /// Whether `issuer`'s key signed this certificate.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, me)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// Serial as lower-case hex with the DER sign-padding byte removed.
pub fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// `ECDSA P-256`, `RSA 2048`, `Ed25519`, ... (certificates and CSRs alike).
pub fn spki_key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                Some("1.3.132.0.34") => "ECDSA P-384".into(),
                Some("1.3.132.0.35") => "ECDSA P-521".into(),
                Some(other) => format!("ECDSA {other}"),
                None => "ECDSA".into(),
            }
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_drops_sign_padding_only() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x01, 0x00]), "0100");
    }
}
