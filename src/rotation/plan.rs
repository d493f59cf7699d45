//! Whether a managed certificate should be renewed now: a pure function of what is on disk,
//! what was asked, the renewal policy and `now`.

use time::{Duration, OffsetDateTime};

use crate::config::SubjectSpec;
use crate::pki::issue::{LeafSpec, Usage};
use crate::pki::policy::RenewalPolicy;
use crate::pki::CertInfo;

/// Kept here too: RFC 3339 to the second, for people and logs (it lives in `pki`).
pub use crate::pki::rfc3339;

/// What is on disk for a managed certificate.
#[derive(Debug, Clone)]
pub enum Current {
    Missing,
    /// Unreadable, malformed, or its key does not match.
    Broken(String),
    Present(Box<CertInfo>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Named on the command line, `--all`, or SIGHUP.
    Forced,
    Missing,
    Broken(String),
    Expired,
    /// Past its renewal deadline.
    Due(OffsetDateTime),
    /// Matched a RenewRevocation entry (its id and what it says).
    Revoked(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced"),
            Reason::Missing => write!(f, "missing"),
            Reason::Broken(e) => write!(f, "broken: {e}"),
            Reason::Expired => write!(f, "expired"),
            Reason::Due(d) => write!(f, "due since {}", rfc3339(*d)),
            Reason::Revoked(r) => write!(f, "revoked by {r}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Rotate(Reason),
    /// Valid and not yet due: the next deadline.
    Keep(OffsetDateTime),
    /// Not yet valid: the clock is probably behind. Re-issuing would give another
    /// certificate that is "not yet valid" by the same clock, so say so instead.
    ClockBehind(OffsetDateTime),
}

/// `revoked`: the revocation entry the current certificate matches, if any.
/// `repair_only`: renew only what is broken (expired, missing, unreadable, revoked), not
/// what is merely due (`kube-cert-agent repair`).
pub fn decide(
    current: &Current,
    forced: bool,
    revoked: Option<String>,
    repair_only: bool,
    policy: &RenewalPolicy,
    now: OffsetDateTime,
) -> Decision {
    match current {
        Current::Present(c) if now < c.not_before && !forced => Decision::ClockBehind(c.not_before),
        _ if forced => Decision::Rotate(Reason::Forced),
        Current::Present(_) if revoked.is_some() => {
            Decision::Rotate(Reason::Revoked(revoked.unwrap_or_default()))
        }
        Current::Missing => Decision::Rotate(Reason::Missing),
        Current::Broken(e) => Decision::Rotate(Reason::Broken(e.clone())),
        Current::Present(c) if now >= c.not_after => Decision::Rotate(Reason::Expired),
        Current::Present(c) => {
            let deadline = policy.deadline(c);
            if now >= deadline && !repair_only {
                Decision::Rotate(Reason::Due(deadline))
            } else {
                Decision::Keep(deadline)
            }
        }
    }
}

/// A certificate "not yet valid" whose CA already is valid was issued while this node's
/// clock ran ahead (a forward jump since corrected): it is broken, and re-issuing heals it
/// (the new one starts now). When the CA is not yet valid either, the clock is behind and
/// re-issuing would not help: the decision stays [`Decision::ClockBehind`].
pub fn heal_future_not_before(
    d: Decision,
    ca_not_before: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Decision {
    match d {
        Decision::ClockBehind(nb) if ca_not_before.is_some_and(|ca| ca <= now) => {
            Decision::Rotate(Reason::Broken(format!(
                "notBefore {} is in the future while its CA is valid: issued while the clock was ahead",
                rfc3339(nb)
            )))
        }
        d => d,
    }
}

/// A kubelet certificate "not yet valid" that this node wrote (`written_at`: kubelet's
/// file-name stamp, this node's clock at the time) at a time still ahead of now: the
/// node's clock ran ahead then (a forward jump since corrected), and kube-controller-manager
/// on the same clock signed it ahead. Re-issuing heals it. One written at a time already
/// past was signed ahead by a signer whose clock is ahead of this node's: another CSR
/// would come back the same, so it stays [`Decision::ClockBehind`] (reported, no loop).
pub fn heal_kubelet_ahead(
    d: Decision,
    written_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Decision {
    match d {
        Decision::ClockBehind(nb) if written_at.is_some_and(|w| w > now) => {
            Decision::Rotate(Reason::Broken(format!(
                "notBefore {} is in the future, and so is {} when this node wrote it: issued while the clock was ahead",
                rfc3339(nb),
                rfc3339(written_at.unwrap_or(now))
            )))
        }
        d => d,
    }
}

/// The leaf to issue: the config's subject, SANs and usages, each falling back to what the
/// current certificate says (what `kubeadm certs renew` keeps).
pub fn leaf_spec(
    subject: Option<&SubjectSpec>,
    dns: Option<&Vec<String>>,
    ips: Option<&Vec<std::net::IpAddr>>,
    usages: Option<&Vec<Usage>>,
    validity: std::time::Duration,
    template: Option<&CertInfo>,
    created: Option<&crate::kubeadm::Defaults>,
) -> Result<LeafSpec, String> {
    let validity = Duration::try_from(validity).map_err(|e| e.to_string())?;
    let mut spec = match (template, created) {
        (Some(c), _) => LeafSpec::from_existing(c, validity),
        (None, created) => LeafSpec {
            common_name: created.map(|d| d.common_name.clone()).unwrap_or_default(),
            organizations: vec![],
            dns_names: created.map(|d| d.dns_names.clone()).unwrap_or_default(),
            ip_addresses: created.map(|d| d.ip_addresses.clone()).unwrap_or_default(),
            usages: created.map(|d| d.usages.clone()).unwrap_or_default(),
            validity,
            not_before_floor: None,
        },
    };
    if let Some(s) = subject {
        if let Some(cn) = &s.common_name {
            spec.common_name = cn.clone();
            spec.organizations = s.organizations.clone();
        }
    }
    if let Some(d) = dns {
        spec.dns_names = d.clone();
    }
    if let Some(i) = ips {
        spec.ip_addresses = i.clone();
    }
    if let Some(u) = usages {
        spec.usages = u.clone();
    }
    if spec.common_name.is_empty() {
        return Err(
            "no current certificate to take the subject from: set subject.commonName in the config, or a kubeadm profile"
                .into(),
        );
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    fn cert(nb: OffsetDateTime, na: OffsetDateTime) -> Current {
        Current::Present(Box::new(CertInfo {
            der: vec![],
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            common_name: Some("x".into()),
            organizations: vec![],
            serial: "01".into(),
            not_before: nb,
            not_after: na,
            dns_names: vec![],
            ip_addresses: vec![],
            is_ca: false,
            key_type: "ECDSA P-256".into(),
            ext_key_usages: vec![],
            public_key: vec![],
            subject_der: vec![],
            issuer_der: vec![],
        }))
    }

    const P: RenewalPolicy = RenewalPolicy {
        renew_at: 0.8,
        jitter: 0.1,
    };
    const NB: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);
    const NA: OffsetDateTime = datetime!(2026-11-05 00:00 UTC);

    #[test]
    fn decisions() {
        let c = cert(NB, NA);
        let early = NB + Duration::hours(1);
        assert!(matches!(
            decide(&c, false, None, false, &P, early),
            Decision::Keep(_)
        ));
        assert_eq!(
            decide(&c, true, None, false, &P, early),
            Decision::Rotate(Reason::Forced)
        );
        // Past 90% is always due, whatever the jitter drew.
        let late = NB + Duration::hours(96) * 0.91;
        assert!(matches!(
            decide(&c, false, None, false, &P, late),
            Decision::Rotate(Reason::Due(_))
        ));
        assert_eq!(
            decide(&c, false, None, false, &P, NA),
            Decision::Rotate(Reason::Expired)
        );
        assert_eq!(
            decide(&Current::Missing, false, None, false, &P, early),
            Decision::Rotate(Reason::Missing)
        );
        assert_eq!(
            decide(&Current::Broken("x".into()), false, None, false, &P, early),
            Decision::Rotate(Reason::Broken("x".into()))
        );
        // A clock behind the certificate's notBefore: reported, not re-issued in a loop...
        assert_eq!(
            decide(&c, false, None, false, &P, NB - Duration::hours(2)),
            Decision::ClockBehind(NB)
        );
        // ...unless the operator forces it.
        assert_eq!(
            decide(&c, true, None, false, &P, NB - Duration::hours(2)),
            Decision::Rotate(Reason::Forced)
        );
    }

    #[test]
    fn a_future_not_before_under_a_valid_ca_is_healed() {
        let c = cert(NB, NA);
        let now = NB - Duration::days(1825);
        let behind = decide(&c, false, None, true, &P, now);
        assert_eq!(behind, Decision::ClockBehind(NB));
        // The CA is valid now: the certificate was issued while the clock ran ahead.
        let healed = heal_future_not_before(behind.clone(), Some(now - Duration::days(1)), now);
        assert!(
            matches!(healed, Decision::Rotate(Reason::Broken(ref e)) if e.contains("in the future while its CA is valid")),
            "{healed:?}"
        );
        // The CA is not yet valid either: the clock is behind, nothing to heal.
        assert_eq!(
            heal_future_not_before(behind.clone(), Some(now + Duration::days(1)), now),
            behind
        );
        assert_eq!(heal_future_not_before(behind.clone(), None, now), behind);
    }

    /// A kubelet certificate: healed only when this node wrote it while its clock ran
    /// ahead; written before now, the signer's clock is ahead and another CSR would come
    /// back the same (no loop).
    #[test]
    fn a_future_kubelet_certificate_is_healed_only_if_written_ahead() {
        let now = NB - Duration::days(1825);
        let behind = decide(&cert(NB, NA), false, None, false, &P, now);
        let healed = heal_kubelet_ahead(behind.clone(), Some(NB + Duration::minutes(5)), now);
        assert!(
            matches!(healed, Decision::Rotate(Reason::Broken(ref e)) if e.contains("issued while the clock was ahead")),
            "{healed:?}"
        );
        assert_eq!(heal_kubelet_ahead(behind.clone(), Some(now), now), behind);
        assert_eq!(heal_kubelet_ahead(behind.clone(), None, now), behind);
        let valid = decide(&cert(NB, NA), false, None, false, &P, NB);
        assert_eq!(heal_kubelet_ahead(valid.clone(), Some(NA), NB), valid);
    }

    #[test]
    fn revoked_and_repair_only() {
        let c = cert(NB, NA);
        let early = NB + Duration::hours(1);
        assert_eq!(
            decide(&c, false, Some("r/0".into()), false, &P, early),
            Decision::Rotate(Reason::Revoked("r/0".into()))
        );
        // repair renews the broken, not the merely due.
        let late = NB + Duration::hours(96) * 0.91;
        assert!(matches!(
            decide(&c, false, None, true, &P, late),
            Decision::Keep(_)
        ));
        assert_eq!(
            decide(&c, false, None, true, &P, NA),
            Decision::Rotate(Reason::Expired)
        );
        assert_eq!(
            decide(&Current::Missing, false, None, true, &P, early),
            Decision::Rotate(Reason::Missing)
        );
    }

    #[test]
    fn keep_reports_a_deadline_within_70_to_90_percent() {
        let Decision::Keep(d) = decide(&cert(NB, NA), false, None, false, &P, NB) else {
            panic!()
        };
        assert!(d >= NB + Duration::hours(96) * 0.7 && d <= NB + Duration::hours(96) * 0.9);
    }
}
