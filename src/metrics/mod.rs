//! Prometheus metrics: what the node's certificates are, and what the agent does about them.
//!
//! The daemon feeds a [`Hub`] through a narrow interface (the [`Outcome`]s of its scans and
//! rotations, CSRs it waits for, "the files changed"); [`serve`] exposes the hub on
//! `metrics.listen` and in `metrics.textfile`. The families and their encoding are pure
//! ([`families`], [`x509`]): a snapshot and `now` in, text out.

pub mod endpoints;
pub mod families;
pub mod serve;
pub mod x509;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use time::OffsetDateTime;

use crate::config::Config;
use crate::inventory::Entry;
use crate::rotation::{self, plan::Reason, Action, Outcome};

/// Why a Kubernetes Event was not delivered (`kube_cert_agent_events_dropped_total{reason}`):
/// the API server did not answer or refused, no valid node client certificate to send with,
/// the queue was full, or over the rate limit.
pub const EVENT_DROP_REASONS: [&str; 4] = [
    "unreachable",
    "no-credentials",
    "queue-full",
    "rate-limited",
];

/// Which of kubelet's certificates a managed name is, for kubelet's own families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    KubeletClient,
    KubeletServing,
}

impl Kind {
    fn of(name: &str) -> Kind {
        use crate::pki::csr::KubeletCert;
        if name == KubeletCert::Client.name() {
            Kind::KubeletClient
        } else if name == KubeletCert::Serving.name() {
            Kind::KubeletServing
        } else {
            Kind::Local
        }
    }
}

/// What the agent knows about one managed certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFacts {
    pub name: String,
    pub kind: Kind,
    /// The planned renewal deadline. Once passed, it stays where it was until a rotation
    /// succeeds, so that "deadline passed an hour ago" means a stalled renewal.
    pub deadline: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
    /// The last time a scan or a rotation ended with a valid certificate in place.
    pub last_success: Option<OffsetDateTime>,
    /// A revocation entry blocks its renewal (see `rotation::Action::Blocked`).
    pub blocked: bool,
}

/// A CSR the agent is waiting on (one at a time per signer).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCsr {
    pub signer: String,
    pub name: String,
    pub since: OffsetDateTime,
}

/// Where one CA's rotation is on this node (`rotate-ca`'s record, read at each scrape).
#[derive(Debug, Clone, PartialEq)]
pub struct CaRotationFacts {
    pub ca: String,
    /// prepare, reissue or finalize.
    pub phase: &'static str,
    pub complete: bool,
    /// When the phase last ran (its completion, once complete).
    pub updated: Option<OffsetDateTime>,
}

/// Everything the families are made of, copied out of the hub for one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub certs: Vec<CertFacts>,
    /// `(name, "success" | "failure")` -> count.
    pub rotations: BTreeMap<(String, &'static str), u64>,
    pub kubelet: bool,
    pub kubelet_client_renew_errors: u64,
    pub kubelet_server_renew_errors: u64,
    pub pending_csrs: Vec<PendingCsr>,
    pub events_dropped: BTreeMap<&'static str, u64>,
    pub inventory: Arc<Vec<Entry>>,
    pub ca_rotations: Vec<CaRotationFacts>,
}

#[derive(Debug, Default)]
struct State {
    certs: BTreeMap<String, CertFacts>,
    rotations: BTreeMap<(String, &'static str), u64>,
    kubelet: bool,
    kubelet_client_renew_errors: u64,
    kubelet_server_renew_errors: u64,
    pending_csrs: BTreeMap<String, PendingCsr>,
    events_dropped: BTreeMap<&'static str, u64>,
    config: Option<Arc<Config>>,
    /// The inventory is re-read when the files changed (or it is older than
    /// [`serve::INVENTORY_MAX_AGE`]).
    inventory_dirty: bool,
}

/// The daemon's side of the metrics: cheap to clone, each call takes a short lock.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::Notify>,
    pub(crate) cache: Arc<Mutex<Option<serve::Cached>>>,
}

impl Hub {
    pub fn new(config: &Config) -> Hub {
        let hub = Hub::default();
        hub.set_config(config);
        hub
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The managed set follows the config (after a reload too).
    pub fn set_config(&self, config: &Config) {
        let names = rotation::managed_names(config);
        let mut s = self.lock();
        s.certs.retain(|n, _| names.contains(n));
        for n in names {
            s.certs.entry(n.clone()).or_insert_with(|| CertFacts {
                kind: Kind::of(&n),
                name: n,
                deadline: None,
                not_after: None,
                last_success: None,
                blocked: false,
            });
        }
        s.kubelet = config.kubelet.is_some();
        s.config = Some(Arc::new(config.clone()));
        s.inventory_dirty = true;
        drop(s);
        self.changed.notify_one();
    }

    /// What scans (`dry_run`) and rotations found. Only rotations count in the counters.
    pub fn observe(&self, outcomes: &[Outcome], dry_run: bool, now: OffsetDateTime) {
        let mut s = self.lock();
        for o in outcomes {
            let kind = Kind::of(&o.name);
            if !dry_run {
                let result = match &o.action {
                    Action::Rotated(_) => Some("success"),
                    Action::Failed(_) => Some("failure"),
                    _ => None,
                };
                if let Some(r) = result {
                    *s.rotations.entry((o.name.clone(), r)).or_default() += 1;
                }
                if matches!(o.action, Action::Failed(_)) {
                    match kind {
                        Kind::KubeletClient => s.kubelet_client_renew_errors += 1,
                        Kind::KubeletServing => s.kubelet_server_renew_errors += 1,
                        Kind::Local => {}
                    }
                }
            }
            let Some(f) = s.certs.get_mut(&o.name) else {
                continue;
            };
            *f = facts_after(f, o, now);
        }
        s.inventory_dirty = true;
        drop(s);
        self.changed.notify_one();
    }

    /// A CSR was created and is being waited on.
    pub fn csr_pending(&self, signer: &str, name: &str, since: OffsetDateTime) {
        let p = PendingCsr {
            signer: signer.to_string(),
            name: name.to_string(),
            since,
        };
        self.lock().pending_csrs.insert(signer.to_string(), p);
        self.changed.notify_one();
    }

    /// The wait on `signer`'s CSR ended (issued, denied, failed or given up).
    pub fn csr_settled(&self, signer: &str) {
        self.lock().pending_csrs.remove(signer);
        self.changed.notify_one();
    }

    /// An event that was not delivered; `reason` is one of [`EVENT_DROP_REASONS`].
    pub fn event_dropped(&self, reason: &'static str) {
        *self.lock().events_dropped.entry(reason).or_default() += 1;
    }

    /// Files in a watched directory changed: the next scrape re-reads the inventory.
    pub fn inventory_changed(&self) {
        self.lock().inventory_dirty = true;
        self.changed.notify_one();
    }

    pub fn facts(&self) -> Vec<CertFacts> {
        self.lock().certs.values().cloned().collect()
    }

    pub fn pending_csrs(&self) -> Vec<PendingCsr> {
        self.lock().pending_csrs.values().cloned().collect()
    }

    fn config(&self) -> Option<Arc<Config>> {
        self.lock().config.clone()
    }

    /// Whether the inventory must be re-read; clears the flag.
    fn take_dirty(&self) -> bool {
        std::mem::take(&mut self.lock().inventory_dirty)
    }

    fn snapshot(&self, inventory: Arc<Vec<Entry>>) -> Snapshot {
        let s = self.lock();
        Snapshot {
            certs: s.certs.values().cloned().collect(),
            rotations: s.rotations.clone(),
            kubelet: s.kubelet,
            kubelet_client_renew_errors: s.kubelet_client_renew_errors,
            kubelet_server_renew_errors: s.kubelet_server_renew_errors,
            pending_csrs: s.pending_csrs.values().cloned().collect(),
            events_dropped: s.events_dropped.clone(),
            inventory,
            ca_rotations: vec![],
        }
    }
}

/// One certificate's facts after an outcome (pure).
pub fn facts_after(prev: &CertFacts, o: &Outcome, now: OffsetDateTime) -> CertFacts {
    let mut f = prev.clone();
    let current = o.after.as_ref().or(o.before.as_ref());
    f.not_after = current.map(|(_, na)| *na);
    f.blocked = matches!(o.action, Action::Blocked { .. });
    // A deadline already passed stays put while the certificate is still due.
    let passed = prev.deadline.filter(|d| *d <= now);
    match &o.action {
        Action::Rotated(_) => {
            f.last_success = Some(now);
            // The next deadline comes with the next scan.
            f.deadline = None;
        }
        Action::Kept { next } => {
            f.last_success = Some(now);
            f.deadline = Some(*next);
        }
        Action::WouldRotate(Reason::Due(d)) => f.deadline = Some(*d),
        Action::WouldRotate(_) | Action::Failed(_) | Action::Blocked { .. } => {
            f.deadline = Some(passed.unwrap_or(now))
        }
        Action::ClockBehind { not_before } => f.deadline = Some(*not_before),
        Action::NotHere(_) => f.deadline = None,
    }
    f
}

pub fn build_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn outcome(action: Action) -> Outcome {
        Outcome {
            name: "apiserver".into(),
            path: "/etc/kubernetes/pki/apiserver.crt".into(),
            action,
            before: Some(("01".into(), datetime!(2026-12-05 00:00 UTC))),
            after: None,
            warnings: vec![],
            detail: None,
        }
    }

    fn fresh() -> CertFacts {
        CertFacts {
            name: "apiserver".into(),
            kind: Kind::Local,
            deadline: None,
            not_after: None,
            last_success: None,
            blocked: false,
        }
    }

    #[test]
    fn a_passed_deadline_stays_until_a_rotation_succeeds() {
        let t0 = datetime!(2026-12-02 00:00 UTC);
        let d = datetime!(2026-12-01 12:00 UTC);
        let f = facts_after(&fresh(), &outcome(Action::WouldRotate(Reason::Due(d))), t0);
        assert_eq!(f.deadline, Some(d));
        let f = facts_after(&f, &outcome(Action::Failed("boom".into())), t0);
        assert_eq!(f.deadline, Some(d));
        assert_eq!(f.last_success, None);
        let later = t0 + time::Duration::hours(3);
        let f = facts_after(&f, &outcome(Action::Failed("boom".into())), later);
        assert_eq!(f.deadline, Some(d), "still the first deadline");
        let f = facts_after(&f, &outcome(Action::Rotated(Reason::Due(d))), later);
        assert_eq!((f.deadline, f.last_success), (None, Some(later)));
    }

    #[test]
    fn missing_certificates_are_due_from_when_first_seen() {
        let t0 = datetime!(2026-12-02 00:00 UTC);
        let f = facts_after(&fresh(), &outcome(Action::Failed("x".into())), t0);
        assert_eq!(f.deadline, Some(t0));
        let f = facts_after(
            &f,
            &outcome(Action::Failed("x".into())),
            t0 + time::Duration::hours(1),
        );
        assert_eq!(f.deadline, Some(t0));
    }

    #[test]
    fn blocked_and_kept() {
        let t0 = datetime!(2026-12-02 00:00 UTC);
        let next = datetime!(2026-12-03 00:00 UTC);
        let f = facts_after(
            &fresh(),
            &outcome(Action::Blocked {
                entry: "e/0".into(),
                until: None,
            }),
            t0,
        );
        assert!(f.blocked);
        let f = facts_after(&f, &outcome(Action::Kept { next }), t0);
        assert!(!f.blocked);
        assert_eq!(f.deadline, Some(next));
        assert_eq!(f.last_success, Some(t0));
        assert_eq!(f.not_after, Some(datetime!(2026-12-05 00:00 UTC)));
    }

    #[test]
    fn counters_count_rotations_not_scans() {
        let c = Config::parse(
            std::path::Path::new("/c.yaml"),
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n- name: apiserver\n  ca: {cert: /p/ca.crt, key: /p/ca.key}\n  cert: /etc/kubernetes/pki/a.crt\n  key: /etc/kubernetes/pki/a.key\n",
        )
        .unwrap();
        let hub = Hub::new(&c);
        let t0 = datetime!(2026-12-02 00:00 UTC);
        hub.observe(&[outcome(Action::Failed("x".into()))], true, t0);
        hub.observe(&[outcome(Action::Failed("x".into()))], false, t0);
        hub.observe(&[outcome(Action::Rotated(Reason::Forced))], false, t0);
        let s = hub.snapshot(Arc::default());
        assert_eq!(s.rotations.get(&("apiserver".into(), "failure")), Some(&1));
        assert_eq!(s.rotations.get(&("apiserver".into(), "success")), Some(&1));
    }
}
