//! Issuing a leaf certificate from a CA on disk ("YAML-based key and certificate creation"),
//! and checking the result before anyone installs it.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use crate::pki::{keygen, parse_material, CertInfo};

/// Backdating of notBefore, for nodes whose clocks are a little behind (the Kubernetes
/// signer does the same).
pub const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Usage {
    ServerAuth,
    ClientAuth,
}

/// A CA whose certificate and key were loaded and checked.
pub struct Ca {
    pub cert: CertInfo,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.cert.subject)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Check that `cert` is a CA certificate valid at `now` and that `key` is its key.
    pub fn load(cert_pem: &[u8], key_pem: &[u8], now: OffsetDateTime) -> Result<Ca, String> {
        let m = parse_material(cert_pem).map_err(|e| format!("CA certificate: {e}"))?;
        let der = m
            .certificates
            .first()
            .ok_or("CA certificate: no certificate in file")?;
        let cert = CertInfo::parse(der).map_err(|e| format!("CA certificate: {e}"))?;
        if !cert.is_ca {
            return Err(format!(
                "CA certificate ({}) is not a CA: basicConstraints CA:TRUE is missing",
                cert.subject
            ));
        }
        if now >= cert.not_after {
            return Err(format!(
                "CA certificate ({}) expired at {}; the agent never rotates a CA: replace it and re-issue",
                cert.subject,
                crate::pki::rfc3339(cert.not_after)
            ));
        }
        if now < cert.not_before {
            return Err(format!(
                "CA certificate ({}) is not valid until {} (is the clock behind?)",
                cert.subject,
                crate::pki::rfc3339(cert.not_before)
            ));
        }
        let km = parse_material(key_pem).map_err(|e| format!("CA key: {e}"))?;
        let key = km
            .private_keys
            .first()
            .ok_or("CA key: no private key in file")?;
        let key = keygen::load(key).map_err(|e| format!("CA key: {e}"))?;
        if key.der_bytes() != cert.public_key.as_slice() {
            return Err("CA key does not match the CA certificate".into());
        }
        Ok(Ca { cert, key })
    }
}

impl Ca {
    /// An X.509 v2 CRL listing `revoked` (serial hex, revocation time), valid from `now`
    /// for `validity`. A CA whose keyUsage lacks cRLSign cannot sign one (kubeadm's CAs
    /// have keyCertSign only): the error says so.
    /// The CA's subject key identifier: a CRL's authority key identifier must repeat it, or
    /// openssl and Go do not find the CRL for the CA.
    fn subject_key_id(&self) -> Option<Vec<u8>> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert.der).ok()?;
        cert.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
    }

    pub fn sign_crl(
        &self,
        revoked: &[(String, OffsetDateTime)],
        crl_number: u64,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<String, String> {
        let mut revoked_certs = Vec::new();
        for (serial, when) in revoked {
            let bytes = hex_bytes(serial).ok_or_else(|| format!("serial {serial:?} is not hex"))?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: *when,
                reason_code: Some(rcgen::RevocationReason::Superseded),
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + validity,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: match self.subject_key_id() {
                Some(ski) => rcgen::KeyIdMethod::PreSpecified(ski),
                None => rcgen::KeyIdMethod::Sha256,
            },
        };
        let issuer = Issuer::from_ca_cert_der(&self.cert.der.clone().into(), &self.key)
            .map_err(|e| format!("CA certificate cannot sign: {e}"))?;
        match params.signed_by(&issuer) {
            Ok(crl) => crl.pem().map_err(|e| e.to_string()),
            Err(rcgen::Error::IssuerNotCrlSigner) => Err(format!(
                "CA {} may not sign CRLs (its keyUsage lacks cRLSign)",
                self.cert.subject
            )),
            Err(e) => Err(format!("signing the CRL failed: {e}")),
        }
    }
}

/// `0a1b` -> [0x0a, 0x1b] (odd lengths get a leading zero).
fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_string()
    };
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// What a leaf must say.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usages: Vec<Usage>,
    pub validity: Duration,
    /// Start no earlier than this (within the 5-minute backdating window): a revocation
    /// entry with `notBefore` a minute ago must not match the replacement too.
    pub not_before_floor: Option<OffsetDateTime>,
}

impl LeafSpec {
    /// The notBefore a certificate issued at `now` gets (whole seconds, as certificates
    /// carry them).
    pub fn not_before(&self, now: OffsetDateTime) -> OffsetDateTime {
        let t = match self.not_before_floor {
            Some(f) if f > now - BACKDATE && f <= now => f,
            _ => now - BACKDATE,
        };
        t.replace_nanosecond(0).unwrap_or(t)
    }

    /// What `kubeadm certs renew` keeps: the subject, SANs and usages of the current cert.
    pub fn from_existing(cert: &CertInfo, validity: Duration) -> LeafSpec {
        let usages = cert
            .ext_key_usages
            .iter()
            .filter_map(|u| match u.as_str() {
                "serverAuth" => Some(Usage::ServerAuth),
                "clientAuth" => Some(Usage::ClientAuth),
                _ => None,
            })
            .collect();
        LeafSpec {
            common_name: cert.common_name.clone().unwrap_or_default(),
            organizations: cert.organizations.clone(),
            dns_names: cert.dns_names.clone(),
            ip_addresses: cert.ip_addresses.clone(),
            usages,
            validity,
            not_before_floor: None,
        }
    }
}

/// A certificate issued and checked.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub info: CertInfo,
    /// The CA expires before the requested validity would end: notAfter was cut to the
    /// CA's notAfter.
    pub capped_by_ca: bool,
}

/// Sign a leaf for `key` from `ca`, valid from `now - 5m` for `spec.validity` (cut at the
/// CA's notAfter), then check it before returning it.
pub fn issue(
    ca: &Ca,
    spec: &LeafSpec,
    key: &KeyPair,
    now: OffsetDateTime,
) -> Result<Issued, String> {
    if spec.common_name.is_empty() {
        return Err("the certificate needs a commonName".into());
    }
    if spec.organizations.len() > 1 {
        // rcgen keeps one value per attribute type in a subject.
        return Err(format!(
            "only one organization per certificate is supported, got {:?}",
            spec.organizations
        ));
    }
    if spec.usages.is_empty() {
        return Err("the certificate needs at least one usage (serverAuth, clientAuth)".into());
    }
    if spec.usages.contains(&Usage::ServerAuth)
        && spec.dns_names.is_empty()
        && spec.ip_addresses.is_empty()
    {
        // TLS clients match names against SANs only (Go ignores the CN): a serving
        // certificate without one is accepted by no client.
        return Err(format!(
            "refusing to issue a serverAuth certificate without a SAN (CN {}): set dnsNames or \
             ipAddresses in the config, or a kubeadm profile",
            spec.common_name
        ));
    }
    let mut params = CertificateParams::default();
    // The default params carry a placeholder CN; start from an empty name so that the
    // order below holds. Go's pkix.Name order: O before CN, as kubeadm writes it.
    params.distinguished_name = rcgen::DistinguishedName::new();
    for o in &spec.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    params.not_before = spec.not_before(now);
    let wanted_end = now + spec.validity;
    let capped_by_ca = wanted_end > ca.cert.not_after;
    params.not_after = wanted_end.min(ca.cert.not_after);
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if is_rsa(key) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = spec
        .usages
        .iter()
        .map(|u| match u {
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    params.subject_alt_names = subject_alt_names(&spec.dns_names, &spec.ip_addresses)?;

    let issuer = Issuer::from_ca_cert_der(&ca.cert.der.clone().into(), &ca.key)
        .map_err(|e| format!("CA certificate cannot be used to issue: {e}"))?;
    let cert = params
        .signed_by(key, &issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    let info = CertInfo::parse(cert.der()).map_err(|e| format!("issued certificate: {e}"))?;
    verify_issued(&info, ca, spec, key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        info,
        capped_by_ca,
    })
}

/// The checks every issued certificate passes before it may be installed: our key, the
/// subject and SANs we asked for, signed by the CA, and the issuer name byte-identical to
/// the CA's subject (Go clients match parents on raw bytes).
pub fn verify_issued(
    info: &CertInfo,
    ca: &Ca,
    spec: &LeafSpec,
    key: &KeyPair,
) -> Result<(), String> {
    if info.public_key != key.der_bytes() {
        return Err("issued certificate does not carry our public key".into());
    }
    if info.common_name.as_deref() != Some(spec.common_name.as_str())
        || info.organizations != spec.organizations
    {
        return Err(format!(
            "issued certificate has subject {:?}, not the one requested",
            info.subject
        ));
    }
    if info.dns_names != spec.dns_names || info.ip_addresses != spec.ip_addresses {
        return Err("issued certificate's SANs differ from the request".into());
    }
    if info.issuer_der != ca.cert.subject_der {
        return Err(format!(
            "issued certificate's issuer name is not byte-identical to the CA subject ({}); \
             the CA subject cannot be reproduced (multi-valued RDN or repeated attribute?)",
            ca.cert.subject
        ));
    }
    if !info.is_signed_by(&ca.cert) {
        return Err("issued certificate's signature does not verify with the CA key".into());
    }
    Ok(())
}

/// SAN entries for host names and IP addresses (shared with CSRs).
pub fn subject_alt_names(dns: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>, String> {
    let mut sans = Vec::new();
    for d in dns {
        let name = d
            .as_str()
            .try_into()
            .map_err(|e| format!("DNS name {d:?}: {e}"))?;
        sans.push(SanType::DnsName(name));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(sans)
}

fn is_rsa(key: &KeyPair) -> bool {
    [
        &rcgen::PKCS_RSA_SHA256,
        &rcgen::PKCS_RSA_SHA384,
        &rcgen::PKCS_RSA_SHA512,
    ]
    .iter()
    .any(|alg| key.algorithm() == *alg)
}

/// 128 random bits, positive, no leading zero byte (RFC 5280: at most 20 octets).
pub(crate) fn random_serial() -> Result<SerialNumber, String> {
    let mut b = [0u8; 16];
    crate::pki::randomness::fill(&mut b)?;
    b[0] = (b[0] & 0x7f).max(1);
    Ok(SerialNumber::from_slice(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keygen::{generate, KeyType};

    fn test_ca(now: OffsetDateTime, years: i64) -> (String, String) {
        let key = generate(KeyType::EcdsaP256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "kubernetes");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now - Duration::days(1);
        p.not_after = now + Duration::days(365 * years);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn spec() -> LeafSpec {
        LeafSpec {
            common_name: "kube-apiserver".into(),
            organizations: vec![],
            dns_names: vec!["kubernetes".into(), "kubernetes.default.svc".into()],
            ip_addresses: vec!["10.96.0.1".parse().unwrap()],
            usages: vec![Usage::ServerAuth],
            validity: Duration::hours(96),
            not_before_floor: None,
        }
    }

    #[test]
    fn a_serving_certificate_without_a_san_is_refused() {
        let now = OffsetDateTime::now_utc();
        let (ca_pem, ca_key) = test_ca(now, 10);
        let ca = Ca::load(ca_pem.as_bytes(), ca_key.as_bytes(), now).unwrap();
        let key = generate(KeyType::EcdsaP256).unwrap();
        let bare = LeafSpec {
            dns_names: vec![],
            ip_addresses: vec![],
            ..spec()
        };
        let e = issue(&ca, &bare, &key, now).unwrap_err();
        assert!(e.contains("without a SAN"), "{e}");
        // A client certificate needs none; one IP is enough for a server.
        let client = LeafSpec {
            usages: vec![Usage::ClientAuth],
            ..bare.clone()
        };
        assert!(issue(&ca, &client, &key, now).is_ok());
        let ip_only = LeafSpec {
            ip_addresses: vec!["10.0.0.1".parse().unwrap()],
            ..bare
        };
        assert!(issue(&ca, &ip_only, &key, now).is_ok());
    }

    #[test]
    fn issues_a_checked_leaf() {
        let now = OffsetDateTime::now_utc();
        let (ca_pem, ca_key) = test_ca(now, 10);
        let ca = Ca::load(ca_pem.as_bytes(), ca_key.as_bytes(), now).unwrap();
        let key = generate(KeyType::EcdsaP384).unwrap();
        let issued = issue(&ca, &spec(), &key, now).unwrap();
        assert_eq!(issued.info.key_type, "ECDSA P-384");
        assert_eq!(
            issued.info.not_before,
            (now - BACKDATE).replace_nanosecond(0).unwrap()
        );
        assert_eq!(
            issued.info.not_after - issued.info.not_before,
            Duration::hours(96) + BACKDATE
        );
        assert_eq!(issued.info.ext_key_usages, ["serverAuth"]);
        assert!(!issued.info.is_ca && !issued.capped_by_ca);
        assert_eq!(
            issued.info.serial.len(),
            32,
            "16 random bytes: {}",
            issued.info.serial
        );
        assert_eq!(
            issued.info.subject, "CN=kube-apiserver",
            "no placeholder left in the name"
        );
        let mut with_o = spec();
        with_o.organizations = vec!["system:nodes".into()];
        let o_first = issue(&ca, &with_o, &key, now).unwrap();
        assert_eq!(o_first.info.subject, "O=system:nodes, CN=kube-apiserver");
        // Round trip: what we would renew from keeps subject, SANs and usages.
        let again = LeafSpec::from_existing(&issued.info, Duration::hours(96));
        assert_eq!(again, spec());
    }

    #[test]
    fn leaf_is_cut_at_the_ca_end() {
        let now = OffsetDateTime::now_utc();
        let key = generate(KeyType::EcdsaP256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "short-ca");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now - Duration::days(1);
        p.not_after = now + Duration::hours(10);
        let ca_pem = p.self_signed(&key).unwrap().pem();
        let ca = Ca::load(ca_pem.as_bytes(), key.serialize_pem().as_bytes(), now).unwrap();
        let issued = issue(&ca, &spec(), &generate(KeyType::EcdsaP256).unwrap(), now).unwrap();
        assert!(issued.capped_by_ca);
        assert_eq!(issued.info.not_after, ca.cert.not_after);
    }

    #[test]
    fn bad_cas_are_refused_with_the_reason() {
        let now = OffsetDateTime::now_utc();
        let (ca_pem, ca_key) = test_ca(now, 10);
        let (_, other_key) = test_ca(now, 10);
        let e = Ca::load(ca_pem.as_bytes(), other_key.as_bytes(), now).unwrap_err();
        assert_eq!(e, "CA key does not match the CA certificate");
        let e = Ca::load(ca_pem.as_bytes(), b"", now).unwrap_err();
        assert!(e.starts_with("CA key: empty file"), "{e}");
        let later = now + Duration::days(3700);
        assert!(Ca::load(ca_pem.as_bytes(), ca_key.as_bytes(), later)
            .unwrap_err()
            .contains("expired"));
        // A leaf is not a CA.
        let ca = Ca::load(ca_pem.as_bytes(), ca_key.as_bytes(), now).unwrap();
        let key = generate(KeyType::EcdsaP256).unwrap();
        let leaf = issue(&ca, &spec(), &key, now).unwrap();
        let e = Ca::load(
            leaf.cert_pem.as_bytes(),
            key.serialize_pem().as_bytes(),
            now,
        )
        .unwrap_err();
        assert!(e.contains("is not a CA"), "{e}");
    }

    #[test]
    fn a_certificate_for_another_key_is_caught() {
        let now = OffsetDateTime::now_utc();
        let (ca_pem, ca_key) = test_ca(now, 10);
        let ca = Ca::load(ca_pem.as_bytes(), ca_key.as_bytes(), now).unwrap();
        let ours = generate(KeyType::EcdsaP256).unwrap();
        let theirs = generate(KeyType::EcdsaP256).unwrap();
        let issued = issue(&ca, &spec(), &theirs, now).unwrap();
        let e = verify_issued(&issued.info, &ca, &spec(), &ours).unwrap_err();
        assert!(e.contains("our public key"), "{e}");
        let mut other = spec();
        other.dns_names.push("evil.example".into());
        assert!(verify_issued(&issued.info, &ca, &other, &theirs)
            .unwrap_err()
            .contains("SANs"));
    }
}
