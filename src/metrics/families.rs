//! The metric families, encoded from a [`Snapshot`] at `now` (pure: no clock, no I/O).
//!
//! Three sets, each named as the tool operators already use for it, so that existing
//! dashboards and alerts work unchanged:
//! - x509-certificate-exporter's, for every certificate the inventory sees (managed or not):
//!   `x509_cert_not_before`, `x509_cert_not_after`, `x509_cert_expired`, `x509_cert_error`
//!   (per file) and `x509_read_errors`;
//! - kubelet's certificate manager's, when the agent manages kubelet's certificates (it does
//!   the kubelet's job, so it exports what kubelet would): the `*_ttl_seconds` gauges (+Inf
//!   without a certificate) and kubelet's renew-error counters with kubelet's own names;
//! - the agent's own `kube_cert_agent_*`.
//!
//! Written in the Prometheus text format 0.0.4 (prometheus-client's `prometheus_text`), which
//! `promtool check metrics` and every Prometheus read. Kubelet's two counters carry no
//! `_total` suffix; a counter in this crate always gets one, so they are typed `untyped`
//! under kubelet's exact names (rate() and increase() work the same).

use std::collections::HashSet;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

use super::x509::{self, Labels};
use super::{Kind, Snapshot};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The exposition of `snap` at `now`.
pub fn encode(snap: Snapshot, now: OffsetDateTime) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families { snap, now }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Families {
    snap: Snapshot,
    now: OffsetDateTime,
}

fn secs(t: OffsetDateTime) -> f64 {
    t.unix_timestamp() as f64
}

/// One family of gauges (or `untyped`), written only when it has samples.
fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: &[(L, f64)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, v) in samples {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(L, u64)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

type Name = Vec<(&'static str, String)>;

fn by_name(name: &str) -> Name {
    vec![("name", name.to_string())]
}

impl Collector for Families {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        self.x509(&mut enc)?;
        if self.snap.kubelet {
            self.kubelet(&mut enc)?;
        }
        self.agent(&mut enc)
    }
}

impl Families {
    fn x509(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let mut seen: HashSet<Labels> = HashSet::new();
        let (mut not_before, mut not_after, mut expired) = (vec![], vec![], vec![]);
        let mut files: Vec<(Labels, f64)> = vec![];
        let mut file_seen: HashSet<&str> = HashSet::new();
        let mut read_errors = 0u64;
        for e in self.snap.inventory.iter() {
            match &e.cert {
                Some(c) => {
                    let labels = x509::cert_labels(e, c);
                    // The same certificate twice in one file is one series.
                    if !seen.insert(labels.clone()) {
                        continue;
                    }
                    not_before.push((labels.clone(), secs(c.not_before)));
                    not_after.push((labels.clone(), secs(c.not_after)));
                    let is_expired = if self.now > c.not_after { 1.0 } else { 0.0 };
                    expired.push((labels, is_expired));
                    if file_seen.insert(&e.path) {
                        files.push((x509::file_labels(&e.path), 0.0));
                    }
                }
                None => {
                    read_errors += 1;
                    if file_seen.insert(&e.path) {
                        files.push((x509::file_labels(&e.path), 1.0));
                    } else if let Some(f) = files.iter_mut().find(|(l, _)| l[1].1 == e.path) {
                        f.1 = 1.0;
                    }
                }
            }
        }
        let g = MetricType::Gauge;
        family(
            enc,
            "x509_cert_not_before",
            "Indicates the certificate's not before timestamp",
            g,
            &not_before,
        )?;
        family(
            enc,
            "x509_cert_not_after",
            "Indicates the certificate's not after timestamp",
            g,
            &not_after,
        )?;
        family(
            enc,
            "x509_cert_expired",
            "Indicates if the certificate is expired",
            g,
            &expired,
        )?;
        family(
            enc,
            "x509_cert_error",
            "Indicates wether the corresponding file has read failure(s)",
            g,
            &files,
        )?;
        let none: Vec<(Name, f64)> = vec![(vec![], read_errors as f64)];
        family(
            enc,
            "x509_read_errors",
            "Indicates the number of read failure(s)",
            g,
            &none,
        )
    }

    fn kubelet(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let ttl = |kind: Kind| -> Vec<(Name, f64)> {
            let na = self
                .snap
                .certs
                .iter()
                .find(|c| c.kind == kind)
                .and_then(|c| c.not_after);
            let v = match na {
                Some(na) => (na - self.now).whole_seconds() as f64,
                None => f64::INFINITY,
            };
            vec![(vec![], v)]
        };
        let g = MetricType::Gauge;
        family(enc, "kubelet_certificate_manager_client_ttl_seconds",
            "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in seconds until certificate expiry (negative if already expired). If client certificate is invalid or unused, the value will be +INF.",
            g, &ttl(Kind::KubeletClient))?;
        let serving = self
            .snap
            .certs
            .iter()
            .any(|c| c.kind == Kind::KubeletServing);
        if serving {
            family(enc, "kubelet_certificate_manager_server_ttl_seconds",
                "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
                g, &ttl(Kind::KubeletServing))?;
        }
        let u = MetricType::Unknown;
        let client = vec![(Name::new(), self.snap.kubelet_client_renew_errors as f64)];
        family(
            enc,
            "kubelet_certificate_manager_client_expiration_renew_errors",
            "Counter of certificate renewal errors.",
            u,
            &client,
        )?;
        if serving {
            let server = vec![(Name::new(), self.snap.kubelet_server_renew_errors as f64)];
            family(
                enc,
                "kubelet_server_expiration_renew_errors",
                "Counter of certificate renewal errors.",
                u,
                &server,
            )?;
        }
        Ok(())
    }

    fn agent(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let certs = &self.snap.certs;
        let g = MetricType::Gauge;
        let deadlines: Vec<(Name, f64)> = certs
            .iter()
            .filter_map(|c| c.deadline.map(|d| (by_name(&c.name), secs(d))))
            .collect();
        family(enc, "kube_cert_agent_renewal_timestamp_seconds",
            "When the agent plans to renew the certificate (Unix time); a passed deadline stays until a renewal succeeds.",
            g, &deadlines)?;
        let mut rotations: Vec<(Name, u64)> = vec![];
        for c in certs {
            for result in ["success", "failure"] {
                let n = self
                    .snap
                    .rotations
                    .get(&(c.name.clone(), result))
                    .copied()
                    .unwrap_or(0);
                rotations.push((
                    vec![("name", c.name.clone()), ("result", result.to_string())],
                    n,
                ));
            }
        }
        counter_family(
            enc,
            "kube_cert_agent_rotations",
            "Rotations of the certificate since the agent started, by result.",
            &rotations,
        )?;
        let success: Vec<(Name, f64)> = certs
            .iter()
            .filter_map(|c| c.last_success.map(|t| (by_name(&c.name), secs(t))))
            .collect();
        family(enc, "kube_cert_agent_last_success_timestamp_seconds",
            "The last time a check or a rotation of the certificate ended with a valid certificate in place (Unix time).",
            g, &success)?;
        let pending: Vec<(Name, f64)> = self
            .snap
            .pending_csrs
            .iter()
            .map(|p| {
                let age = (self.now - p.since).whole_seconds().max(0) as f64;
                (vec![("signer", p.signer.clone())], age)
            })
            .collect();
        family(enc, "kube_cert_agent_pending_csr_age_seconds",
            "How long the agent has been waiting for its CertificateSigningRequest to this signer to be approved and issued.",
            g, &pending)?;
        let blocked: Vec<(Name, f64)> = certs
            .iter()
            .map(|c| (by_name(&c.name), if c.blocked { 1.0 } else { 0.0 }))
            .collect();
        family(enc, "kube_cert_agent_revocation_blocked",
            "1 when a RenewRevocation entry without notBefore would also revoke the replacement, so the certificate is not renewed.",
            g, &blocked)?;
        let dropped: Vec<(Name, u64)> = super::EVENT_DROP_REASONS
            .iter()
            .map(|r| {
                let n = self.snap.events_dropped.get(r).copied().unwrap_or(0);
                (vec![("reason", r.to_string())], n)
            })
            .collect();
        counter_family(enc, "kube_cert_agent_events_dropped",
            "Kubernetes Events the agent did not deliver, by reason (unreachable, no-credentials, queue-full, rate-limited).",
            &dropped)?;
        // CA rotations (`rotate-ca`, by hand or from a CARotation object): the phase each
        // CA is in on this node, and when that phase last ran.
        let mut phases: Vec<(Name, f64)> = vec![];
        let mut complete: Vec<(Name, f64)> = vec![];
        let mut updated: Vec<(Name, f64)> = vec![];
        for r in &self.snap.ca_rotations {
            for p in ["prepare", "reissue", "finalize"] {
                let v = if r.phase == p { 1.0 } else { 0.0 };
                phases.push((vec![("ca", r.ca.clone()), ("phase", p.to_string())], v));
            }
            complete.push((
                vec![("ca", r.ca.clone())],
                if r.complete { 1.0 } else { 0.0 },
            ));
            if let Some(t) = r.updated {
                updated.push((vec![("ca", r.ca.clone())], secs(t)));
            }
        }
        family(enc, "kube_cert_agent_ca_rotation_phase",
            "1 for the phase of the CA's rotation this node is in (prepare, reissue, finalize), 0 for the others.",
            g, &phases)?;
        family(
            enc,
            "kube_cert_agent_ca_rotation_phase_complete",
            "1 when this node completed the current phase of the CA's rotation.",
            g,
            &complete,
        )?;
        family(enc, "kube_cert_agent_ca_rotation_phase_timestamp_seconds",
            "When this node last ran the current phase of the CA's rotation (Unix time): its completion once complete.",
            g, &updated)?;
        let info = vec![("version", super::build_version().to_string())];
        let m = enc.encode_descriptor(
            "kube_cert_agent_build",
            "The agent's version.",
            None,
            MetricType::Info,
        )?;
        Info::new(info).encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CertFacts, PendingCsr};
    use std::sync::Arc;
    use time::macros::datetime;

    fn snap() -> Snapshot {
        Snapshot {
            certs: vec![
                CertFacts {
                    name: "kubelet-client".into(),
                    kind: Kind::KubeletClient,
                    deadline: Some(datetime!(2026-12-03 00:00 UTC)),
                    not_after: Some(datetime!(2026-12-04 00:00 UTC)),
                    last_success: Some(datetime!(2026-12-02 00:00 UTC)),
                    blocked: false,
                },
                CertFacts {
                    name: "kubelet-serving".into(),
                    kind: Kind::KubeletServing,
                    deadline: None,
                    not_after: None,
                    last_success: None,
                    blocked: true,
                },
            ],
            kubelet: true,
            kubelet_server_renew_errors: 2,
            pending_csrs: vec![PendingCsr {
                signer: "kubernetes.io/kubelet-serving".into(),
                name: "csr-abc".into(),
                since: datetime!(2026-12-01 23:00 UTC),
            }],
            inventory: Arc::new(vec![]),
            ..Default::default()
        }
    }

    #[test]
    fn kubelet_semantics_ttl_and_inf() {
        let text = encode(snap(), datetime!(2026-12-02 00:00 UTC));
        assert!(
            text.contains("\nkubelet_certificate_manager_client_ttl_seconds 172800.0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nkubelet_certificate_manager_server_ttl_seconds +Inf\n"),
            "{text}"
        );
        assert!(
            text.contains("\nkubelet_server_expiration_renew_errors 2.0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kubelet_server_expiration_renew_errors untyped\n"),
            "{text}"
        );
    }

    #[test]
    fn agent_families() {
        let text = encode(snap(), datetime!(2026-12-02 00:00 UTC));
        assert!(
            text.contains(
                "kube_cert_agent_renewal_timestamp_seconds{name=\"kubelet-client\"} 1796256000.0\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("kube_cert_agent_renewal_timestamp_seconds{name=\"kubelet-serving\"}"),
            "{text}"
        );
        assert!(
            text.contains("kube_cert_agent_revocation_blocked{name=\"kubelet-serving\"} 1.0\n"),
            "{text}"
        );
        assert!(text.contains("kube_cert_agent_pending_csr_age_seconds{signer=\"kubernetes.io/kubelet-serving\"} 3600.0\n"), "{text}");
        assert!(
            text.contains(
                "kube_cert_agent_rotations_total{name=\"kubelet-client\",result=\"success\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "kube_cert_agent_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        // No inventory: only the error count of the x509 families.
        assert!(text.contains("\nx509_read_errors 0.0\n"), "{text}");
        assert!(!text.contains("x509_cert_not_after"), "{text}");
    }

    #[test]
    fn ca_rotation_phase_one_hot() {
        let mut s = snap();
        let text = encode(s.clone(), datetime!(2026-12-02 00:00 UTC));
        assert!(!text.contains("kube_cert_agent_ca_rotation"), "{text}");
        s.ca_rotations = vec![crate::metrics::CaRotationFacts {
            ca: "etcd".into(),
            phase: "reissue",
            complete: false,
            updated: Some(datetime!(2026-12-01 12:00 UTC)),
        }];
        let text = encode(s, datetime!(2026-12-02 00:00 UTC));
        for line in [
            "kube_cert_agent_ca_rotation_phase{ca=\"etcd\",phase=\"prepare\"} 0.0\n",
            "kube_cert_agent_ca_rotation_phase{ca=\"etcd\",phase=\"reissue\"} 1.0\n",
            "kube_cert_agent_ca_rotation_phase{ca=\"etcd\",phase=\"finalize\"} 0.0\n",
            "kube_cert_agent_ca_rotation_phase_complete{ca=\"etcd\"} 0.0\n",
            "kube_cert_agent_ca_rotation_phase_timestamp_seconds{ca=\"etcd\"} 1796126400.0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn without_kubelet_no_kubelet_families() {
        let mut s = snap();
        s.kubelet = false;
        let text = encode(s, datetime!(2026-12-02 00:00 UTC));
        assert!(!text.contains("kubelet_certificate_manager"), "{text}");
    }
}
