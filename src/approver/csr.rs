//! What a kubelet-serving CSR asks for, read from `spec.request` (PEM or DER): subject
//! attributes, SANs by kind, key type; the self-signature is verified. Pure: bytes in,
//! values out.

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The request's contents, as the rules look at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedCert {
    /// Subject attributes in order: (`CN`, `O`, `OU`, ... or the OID), value.
    pub subject: Vec<(String, String)>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// SANs of other kinds (email, URI, directory name, ...), described.
    pub other_sans: Vec<String>,
    /// `ECDSA P-256`, `RSA 2048`, ... (as `check` prints key types).
    pub key_type: String,
}

fn attr_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN".into(),
        "2.5.4.10" => "O".into(),
        "2.5.4.11" => "OU".into(),
        "2.5.4.6" => "C".into(),
        "2.5.4.7" => "L".into(),
        "2.5.4.8" => "ST".into(),
        other => other.into(),
    }
}

/// Parses and checks the CSR in `request` (a PEM `CERTIFICATE REQUEST`, as the API carries it).
pub fn parse(request: &[u8]) -> Result<RequestedCert, String> {
    let der = match pem::parse(request) {
        Ok(p) if p.tag() == "CERTIFICATE REQUEST" || p.tag() == "NEW CERTIFICATE REQUEST" => {
            p.into_contents()
        }
        Ok(p) => {
            return Err(format!(
                "PEM block is {:?}, not CERTIFICATE REQUEST",
                p.tag()
            ))
        }
        Err(e) => return Err(format!("not a PEM certificate request: {e}")),
    };
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("not a valid certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("the request's self-signature does not verify: {e}"))?;
    let info = &csr.certification_request_info;
    let mut subject = Vec::new();
    for rdn in info.subject.iter_rdn() {
        for attr in rdn.iter() {
            let value = attr
                .as_str()
                .map_err(|e| format!("subject attribute is not a string: {e}"))?;
            subject.push((
                attr_name(&attr.attr_type().to_id_string()),
                value.to_string(),
            ));
        }
    }
    let (mut dns_names, mut ip_addresses, mut other_sans) = (Vec::new(), Vec::new(), Vec::new());
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => match crate::pki::cert::ip_from_bytes(b) {
                        Some(ip) => ip_addresses.push(ip),
                        None => other_sans.push(format!("IP of {} bytes", b.len())),
                    },
                    GeneralName::RFC822Name(e) => other_sans.push(format!("email {e}")),
                    GeneralName::URI(u) => other_sans.push(format!("URI {u}")),
                    other => other_sans.push(format!("{other:?}")),
                }
            }
        }
    }
    Ok(RequestedCert {
        subject,
        dns_names,
        ip_addresses,
        other_sans,
        key_type: crate::pki::cert::spki_key_type(&info.subject_pki),
    })
}
