//! One certificate, parsed into the facts the agent reports and decides on.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509CertificateParser;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::nom::Parser as _;
use x509_parser::oid_registry;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

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
        Self::from_der(der.to_vec())
    }

    /// [`CertInfo::parse`], keeping `der` itself (no copy).
    pub fn from_der(der: Vec<u8>) -> Result<CertInfo, String> {
        let mut info = Self::facts(&der)?;
        info.der = der;
        Ok(info)
    }

    /// Everything but `der`, which is left empty.
    fn facts(der: &[u8]) -> Result<CertInfo, String> {
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
            der: Vec::new(),
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
        SignatureCheck::new(issuer).is_some_and(|ca| ca.signed(self))
    }
}

/// A CA's public key, parsed once, to check the signatures of many certificates with.
#[derive(Debug)]
pub struct SignatureCheck<'a> {
    ca_der: &'a [u8],
    public_key: SubjectPublicKeyInfo<'a>,
}

impl<'a> SignatureCheck<'a> {
    /// `None` when `ca` does not parse (a [`CertInfo`] always does).
    pub fn new(ca: &'a CertInfo) -> Option<SignatureCheck<'a>> {
        let (_, cert) = X509Certificate::from_der(&ca.der).ok()?;
        Some(SignatureCheck {
            ca_der: &ca.der,
            public_key: cert.tbs_certificate.subject_pki,
        })
    }

    /// The CA certificate this checks against.
    pub fn ca_der(&self) -> &[u8] {
        self.ca_der
    }

    /// Whether the CA's key signed `cert`.
    pub fn signed(&self, cert: &CertInfo) -> bool {
        // Only the signed bytes, the algorithm and the signature are needed: the
        // extensions (parsed already, into `cert`) are not parsed again.
        let mut parser = X509CertificateParser::new().with_deep_parse_extensions(false);
        let Ok((_, signed)) = parser.parse(&cert.der) else {
            return false;
        };
        x509_parser::verify::verify_signature(
            &self.public_key,
            &signed.signature_algorithm,
            &signed.signature_value,
            signed.tbs_certificate.as_ref(),
        )
        .is_ok()
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
