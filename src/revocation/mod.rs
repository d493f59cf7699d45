//! RenewRevocation (the seeds' custom resource): entries by serial number, Group, DNS name
//! or suffix, and IP, with an optional `notBefore`. Matching certificates are re-issued at
//! once; an entry that would also match the replacement blocks instead of looping.

pub mod cluster;
pub mod crl;
pub mod parse;

use std::net::IpAddr;

use time::OffsetDateTime;

pub use parse::{load_dir, parse_documents, parse_values, Loaded};

use crate::pki::CertInfo;

pub const API_VERSION: &str = "certificates.microsoft.com/v1";
pub const KIND: &str = "RenewRevocation";

/// One `spec.revocations[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The file it came from.
    pub source: String,
    /// `metadata.name` of its document.
    pub document: String,
    /// Position in `spec.revocations`.
    pub index: usize,
    pub rule: Rule,
    /// Only certificates issued (notBefore) before this instant are revoked.
    pub not_before: Option<OffsetDateTime>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Lower-case hex without separators or leading zeros.
    Serial(String),
    /// A subject organisation (O), as Kubernetes groups are.
    Group(String),
    /// An exact DNS name (trailing dot ignored).
    Dns(String),
    /// `.cluster.local`: every name ending so.
    DnsSuffix(String),
    Ip(IpAddr),
}

impl Entry {
    /// `my-renew-revocation/0`, as `status` and the logs name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.document, self.index)
    }

    pub fn describe(&self) -> String {
        let what = match &self.rule {
            Rule::Serial(s) => format!("serialnumber {s}"),
            Rule::Group(g) => format!("Group {g}"),
            Rule::Dns(d) => format!("DNS {d}"),
            Rule::DnsSuffix(d) => format!("DNS *{d}"),
            Rule::Ip(i) => format!("IP {i}"),
        };
        match self.not_before {
            Some(nb) => format!("{what} issued before {}", crate::pki::rfc3339(nb)),
            None => what,
        }
    }
}

/// What a revocation rule looks at in a certificate (an existing one, or the one a renewal
/// would issue).
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub serial: Option<&'a str>,
    pub common_name: Option<&'a str>,
    pub organizations: &'a [String],
    pub dns_names: &'a [String],
    pub ip_addresses: &'a [IpAddr],
    pub not_before: OffsetDateTime,
}

impl<'a> Identity<'a> {
    pub fn of(c: &'a CertInfo) -> Identity<'a> {
        Identity {
            serial: Some(&c.serial),
            common_name: c.common_name.as_deref(),
            organizations: &c.organizations,
            dns_names: &c.dns_names,
            ip_addresses: &c.ip_addresses,
            not_before: c.not_before,
        }
    }
}

/// `77:FD:f4...` / `0077fd...` -> `77fdf4...`
pub fn normalize_serial(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    })
}

fn dns_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A CN counts as a DNS name when it looks like one (`kube-apiserver` or `etcd.example`,
/// not `system:node:n1`).
fn cn_as_host(cn: &str) -> Option<String> {
    let ok = !cn.is_empty()
        && cn
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    ok.then(|| dns_key(cn))
}

/// Whether `entry` revokes a certificate with this identity.
pub fn matches(entry: &Entry, id: &Identity) -> bool {
    if let Some(cutoff) = entry.not_before {
        // Certificates carry whole seconds: so does the comparison (a cutoff written
        // 05:33:28.4 does not revoke a certificate starting at 05:33:28).
        if id.not_before >= cutoff.replace_nanosecond(0).unwrap_or(cutoff) {
            return false;
        }
    }
    let names = || {
        id.dns_names
            .iter()
            .map(|d| dns_key(d))
            .chain(id.common_name.and_then(cn_as_host))
    };
    match &entry.rule {
        Rule::Serial(s) => id.serial.and_then(normalize_serial).as_deref() == Some(s.as_str()),
        Rule::Group(g) => id.organizations.iter().any(|o| o == g),
        Rule::Dns(d) => names().any(|n| n == *d),
        Rule::DnsSuffix(suffix) => {
            names().any(|n| n.ends_with(suffix.as_str()) || format!(".{n}") == *suffix)
        }
        Rule::Ip(ip) => id.ip_addresses.contains(ip),
    }
}

/// The first entry revoking this identity.
pub fn first_match<'e>(entries: &'e [Entry], id: &Identity) -> Option<&'e Entry> {
    entries.iter().find(|e| matches(e, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(rule: Rule, not_before: Option<OffsetDateTime>) -> Entry {
        Entry {
            source: "f.yaml".into(),
            document: "d".into(),
            index: 0,
            rule,
            not_before,
            description: None,
        }
    }

    const ISSUED: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

    fn id<'a>(
        serial: &'a str,
        orgs: &'a [String],
        cn: Option<&'a str>,
        dns: &'a [String],
        ips: &'a [IpAddr],
    ) -> Identity<'a> {
        Identity {
            serial: Some(serial),
            common_name: cn,
            organizations: orgs,
            dns_names: dns,
            ip_addresses: ips,
            not_before: ISSUED,
        }
    }

    /// Each kind x notBefore before/after/absent x matching/not matching.
    #[test]
    fn matching_table() {
        let orgs = vec!["system:nodes".to_string()];
        let dns = vec![
            "kubernetes.default.svc".to_string(),
            "etcd.cluster.local".to_string(),
        ];
        let ips: Vec<IpAddr> = vec![
            "170.63.128.124".parse().unwrap(),
            "fd00::1".parse().unwrap(),
        ];
        let cert = id(
            "77fdf4b1033b387aaace6ce1c18710c2",
            &orgs,
            Some("system:node:n1"),
            &dns,
            &ips,
        );
        let rules_hit = [
            Rule::Serial("77fdf4b1033b387aaace6ce1c18710c2".into()),
            Rule::Group("system:nodes".into()),
            Rule::Dns("kubernetes.default.svc".into()),
            Rule::DnsSuffix(".cluster.local".into()),
            Rule::Ip("170.63.128.124".parse().unwrap()),
            Rule::Ip("fd00::1".parse().unwrap()),
        ];
        let rules_miss = [
            Rule::Serial("77fdf4b1033b387aaace6ce1c18710c3".into()),
            Rule::Group("system:masters".into()),
            Rule::Dns("kubernetes.default".into()),
            Rule::DnsSuffix(".example.com".into()),
            Rule::Ip("170.63.128.125".parse().unwrap()),
        ];
        let before = Some(datetime!(2026-12-01 00:00 UTC)); // cert issued earlier: revoked
        let after = Some(datetime!(2026-10-01 00:00 UTC)); // cert issued later: not revoked
        for r in &rules_hit {
            assert!(matches(&entry(r.clone(), None), &cert), "{r:?} absent");
            assert!(
                matches(&entry(r.clone(), before), &cert),
                "{r:?} cutoff after issue"
            );
            assert!(
                !matches(&entry(r.clone(), after), &cert),
                "{r:?} cutoff before issue"
            );
        }
        for r in &rules_miss {
            for nb in [None, before, after] {
                assert!(!matches(&entry(r.clone(), nb), &cert), "{r:?} {nb:?}");
            }
        }
    }

    #[test]
    fn dns_rules_follow_the_seed() {
        let none: Vec<String> = vec![];
        let ips: Vec<IpAddr> = vec![];
        // A CN that is a host name counts; system:node:x does not.
        let apiserver = id("01", &none, Some("kube-apiserver"), &none, &ips);
        assert!(matches(
            &entry(Rule::Dns("kube-apiserver".into()), None),
            &apiserver
        ));
        let node = id("01", &none, Some("system:node:n1"), &none, &ips);
        assert!(!matches(
            &entry(Rule::Dns("system:node:n1".into()), None),
            &node
        ));
        // A trailing dot in the certificate is the same FQDN; the suffix needs a label boundary.
        let dotted = vec![
            "Kubernetes.Default.SVC.".to_string(),
            "notcluster.local".to_string(),
        ];
        let c = id("01", &none, None, &dotted, &ips);
        assert!(matches(
            &entry(Rule::Dns("kubernetes.default.svc".into()), None),
            &c
        ));
        assert!(!matches(
            &entry(Rule::DnsSuffix(".cluster.local".into()), None),
            &c
        ));
        let exact = vec!["cluster.local".to_string()];
        assert!(matches(
            &entry(Rule::DnsSuffix(".cluster.local".into()), None),
            &id("01", &none, None, &exact, &ips)
        ));
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(normalize_serial("77:FD:F4").as_deref(), Some("77fdf4"));
        assert_eq!(normalize_serial("0077fdf4").as_deref(), Some("77fdf4"));
        assert_eq!(normalize_serial("00").as_deref(), Some("0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
        let none: Vec<String> = vec![];
        let ips: Vec<IpAddr> = vec![];
        // The certificate's serial form (leading zero byte kept) matches too.
        let c = id("0a1b", &none, None, &none, &ips);
        assert!(matches(&entry(Rule::Serial("a1b".into()), None), &c));
    }
}
