//! The cluster CA: generated at start or loaded from `ca.crt` + `ca.key`; signs the serving
//! certificate, client certificates for tests, and approved CSRs (the csrsigning controller).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ::time::OffsetDateTime;
use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::prelude::*;

/// A private key with its certificate, both PEM.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

pub(crate) fn random_bytes(buf: &mut [u8]) {
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(buf)
        .expect("system randomness");
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

pub(crate) fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn pem_to_der(pem_text: &str) -> Result<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| anyhow!("not PEM: {e}"))?;
    Ok(p.contents)
}

impl Ca {
    /// A new ECDSA P-256 CA, CN `kubernetes`, valid 10 years (as kubeadm's, but ECDSA for speed).
    pub fn generate() -> Result<Ca> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "kubernetes");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let now = to_offset(SystemTime::now());
        p.not_before = now - ::time::Duration::minutes(5);
        p.not_after = now + ::time::Duration::days(3650);
        p.serial_number = Some(random_serial());
        let cert = p.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Self::from_parts(cert.pem(), key_pem)
    }

    /// Loads `ca.crt` and `ca.key` (PKCS#8, or what rcgen's aws-lc-rs backend reads) from `dir`.
    pub fn load(dir: &Path) -> Result<Ca> {
        let cert = std::fs::read_to_string(dir.join("ca.crt"))
            .with_context(|| format!("reading {}", dir.join("ca.crt").display()))?;
        let key = std::fs::read_to_string(dir.join("ca.key"))
            .with_context(|| format!("reading {}", dir.join("ca.key").display()))?;
        Self::from_parts(cert, key)
    }

    pub fn from_parts(cert_pem: String, key_pem: String) -> Result<Ca> {
        let key = KeyPair::from_pem(&key_pem).context("CA key")?;
        let cert_der = pem_to_der(&cert_pem)?;
        let (_, x) = parse_x509_certificate(&cert_der).map_err(|e| anyhow!("CA cert: {e}"))?;
        let not_after = x.validity().not_after.to_datetime();
        let issuer =
            Issuer::from_ca_cert_der(&cert_der.clone().into(), key).context("CA certificate")?;
        Ok(Ca {
            cert_pem,
            key_pem,
            cert_der,
            issuer,
            not_after,
        })
    }

    /// Issues a leaf for a fresh ECDSA P-256 key.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        eku: ExtendedKeyUsagePurpose,
        validity: Duration,
    ) -> Result<CertAndKey> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        p.distinguished_name = DistinguishedName::new();
        // rcgen keeps one value per attribute type: only the first organization is kept.
        if let Some(o) = orgs.first() {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial());
        let now = to_offset(SystemTime::now());
        p.not_before = now - ::time::Duration::minutes(5);
        p.not_after = now + ::time::Duration::try_from(validity)?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Verifies that `der` was signed by this CA, is currently valid and (if it has an
    /// extended key usage extension) allows client auth. Returns (CN, O values).
    pub fn authenticate_client_cert(&self, der: &[u8]) -> Result<(String, Vec<String>)> {
        authenticate_client_cert(&self.cert_der, der)
    }

    /// The csrsigning controller's `Sign`: subject, SANs and public key from the CSR;
    /// notBefore = now - 5 min; notAfter = now + `duration`, capped at the CA's notAfter;
    /// key usages from `usages`; CA:false; CSR extensions other than SANs dropped.
    /// With `wrong_key`, the certificate carries a freshly generated key instead (a fault).
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        usages: &[String],
        duration: Duration,
        wrong_key: bool,
    ) -> Result<String> {
        let csr = parse_csr(csr_der)?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        for (oid, v) in &csr.subject {
            p.distinguished_name.push(DnType::from_oid(oid), v.as_str());
        }
        p.subject_alt_names = csr.sans.clone();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages.clear();
        p.extended_key_usages.clear();
        for u in usages {
            match u.as_str() {
                "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "content commitment" => p.key_usages.push(KeyUsagePurpose::ContentCommitment),
                "data encipherment" => p.key_usages.push(KeyUsagePurpose::DataEncipherment),
                "key agreement" => p.key_usages.push(KeyUsagePurpose::KeyAgreement),
                "cert sign" => p.key_usages.push(KeyUsagePurpose::KeyCertSign),
                "crl sign" => p.key_usages.push(KeyUsagePurpose::CrlSign),
                "encipher only" => p.key_usages.push(KeyUsagePurpose::EncipherOnly),
                "decipher only" => p.key_usages.push(KeyUsagePurpose::DecipherOnly),
                "server auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                "client auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "code signing" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::CodeSigning),
                "email protection" | "s/mime" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::EmailProtection),
                "timestamping" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::TimeStamping),
                "ocsp signing" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::OcspSigning),
                "any" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::Any),
                other => bail!("unsupported key usage: {other}"),
            }
        }
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial());
        let now = to_offset(SystemTime::now());
        p.not_before = now - ::time::Duration::minutes(5);
        let mut not_after = now + ::time::Duration::try_from(duration)?;
        if not_after > self.not_after {
            not_after = self.not_after;
        }
        p.not_after = not_after;
        let cert = if wrong_key {
            let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            p.signed_by(&other, &self.issuer)?
        } else {
            let spki = SubjectPublicKeyInfo::from_der(&csr.spki_der)
                .map_err(|e| anyhow!("unsupported public key: {e}"))?;
            p.signed_by(&spki, &self.issuer)?
        };
        Ok(cert.pem())
    }
}

/// Verifies that `der` was signed by the CA `ca_der`, is currently valid and (if it has an
/// extended key usage extension) allows client auth. Returns (CN, O values).
pub fn authenticate_client_cert(ca_der: &[u8], der: &[u8]) -> Result<(String, Vec<String>)> {
    let (_, ca) = parse_x509_certificate(ca_der).map_err(|e| anyhow!("{e}"))?;
    let (_, c) = parse_x509_certificate(der).map_err(|e| anyhow!("bad certificate: {e}"))?;
    if c.issuer().as_raw() != ca.subject().as_raw() {
        bail!("certificate signed by unknown authority");
    }
    c.verify_signature(Some(ca.public_key()))
        .map_err(|_| anyhow!("certificate signed by unknown authority"))?;
    if !c.validity().is_valid() {
        bail!("certificate has expired or is not yet valid");
    }
    if let Ok(Some(eku)) = c.extended_key_usage() {
        if !eku.value.client_auth && !eku.value.any {
            bail!("certificate specifies an incompatible key usage");
        }
    }
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("")
        .to_string();
    let orgs = c
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Ok((cn, orgs))
}

/// What the API server and the controllers need from a PEM/DER CSR.
pub struct ParsedCsr {
    /// Subject attributes in order: (OID arcs, value).
    pub subject: Vec<(Vec<u64>, String)>,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    pub sans: Vec<SanType>,
    pub spki_der: Vec<u8>,
}

/// Decodes `spec.request` (PEM `CERTIFICATE REQUEST`), checks its self-signature.
pub fn csr_pem_to_der(request: &[u8]) -> Result<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(request)
        .map_err(|_| anyhow!("PEM block type must be CERTIFICATE REQUEST"))?;
    if p.label != "CERTIFICATE REQUEST" && p.label != "NEW CERTIFICATE REQUEST" {
        bail!("PEM block type must be CERTIFICATE REQUEST");
    }
    Ok(p.contents)
}

pub fn parse_csr(der: &[u8]) -> Result<ParsedCsr> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| anyhow!("failed to parse certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| anyhow!("x509: certificate request signature is invalid"))?;
    let info = &csr.certification_request_info;
    let subject = &info.subject;
    let mut attrs = Vec::new();
    for rdn in subject.iter() {
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| anyhow!("bad OID in subject"))?
                .collect();
            let v = attr
                .as_str()
                .map_err(|_| anyhow!("unsupported subject attribute value"))?;
            attrs.push((oid, v.to_string()));
        }
    }
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("")
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let mut out = ParsedCsr {
        subject: attrs,
        common_name,
        organizations,
        dns_names: vec![],
        ip_addresses: vec![],
        emails: vec![],
        uris: vec![],
        sans: vec![],
        spki_der: info.subject_pki.raw.to_vec(),
    };
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => {
                            out.dns_names.push(d.to_string());
                            out.sans.push(SanType::DnsName((*d).try_into()?));
                        }
                        GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                                16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                                _ => bail!("bad IP address SAN"),
                            };
                            out.ip_addresses.push(ip);
                            out.sans.push(SanType::IpAddress(ip));
                        }
                        GeneralName::RFC822Name(e) => {
                            out.emails.push(e.to_string());
                            out.sans.push(SanType::Rfc822Name((*e).try_into()?));
                        }
                        GeneralName::URI(u) => {
                            out.uris.push(u.to_string());
                            out.sans.push(SanType::URI((*u).try_into()?));
                        }
                        _ => bail!("unsupported subjectAltName type"),
                    }
                }
            }
        }
    }
    Ok(out)
}
