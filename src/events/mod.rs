//! Kubernetes Events on the Node object, as kubelet records them (core/v1, namespace
//! `default`, `involvedObject` {kind Node, name and uid the node name}, source
//! `kube-cert-agent` on the node): a certificate rotated, a rotation failed (with the
//! reason), a CSR waiting for someone to approve it (with the `kubectl certificate approve`
//! command), a CSR denied, a renewal blocked by a revocation entry.
//!
//! Never in the daemon's way: [`Recorder::record`] puts a notice in a bounded queue and
//! returns; a task sends them with the node's client certificate (which needs the `kubelet`
//! section). Identical events become one object with a count, a token bucket caps the rate
//! (`correlate`), and whatever cannot be delivered (API server unreachable, no valid client
//! certificate, the queue full, over the rate) is dropped and counted in
//! `kube_cert_agent_events_dropped_total{reason}`, never queued without bound.

pub mod correlate;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::config::{Config, KubeletSpec};
use crate::kube::client::{ApiClient, ApiError};
use crate::kubelet::notice::CsrNotice;
use crate::kubelet::Node;
use crate::metrics::Hub;
use crate::paths::NodeRoot;
use crate::rotation::{Action, Outcome};
use crate::store::Store;
pub use correlate::Notice;
use correlate::{Correlator, Decision};

pub const COMPONENT: &str = "kube-cert-agent";
/// Where events about cluster-scoped objects go, as kubelet's recorder puts them.
pub const NAMESPACE: &str = "default";
/// Notices waiting to be sent; more are dropped.
pub const QUEUE: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Notice>>,
    hub: Hub,
}

impl Recorder {
    /// Records nothing (no `kubelet` section: no credentials to send with).
    pub fn off(hub: Hub) -> Recorder {
        Recorder { tx: None, hub }
    }

    /// Start the sending task when the config has the node's credentials.
    pub fn start(root: &NodeRoot, config: &Config, hub: Hub) -> Recorder {
        let Some(spec) = config.kubelet.clone() else {
            return Recorder::off(hub);
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let node_name = crate::kubelet::node_name(&config.node_name);
        let sender = Sender {
            root: root.clone(),
            spec,
            node_name,
            history: config.history,
            hub: hub.clone(),
        };
        tokio::spawn(sender.run(rx));
        Recorder { tx: Some(tx), hub }
    }

    pub fn record(&self, n: Notice) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(n).is_err() {
            self.hub.event_dropped("queue-full");
        }
    }

    pub fn outcomes(&self, outcomes: &[Outcome]) {
        for n in outcomes.iter().filter_map(from_outcome) {
            self.record(n);
        }
    }

    pub fn csr(&self, n: &CsrNotice) {
        if let Some(n) = from_csr(n) {
            self.record(n);
        }
    }
}

/// The event a rotation's outcome is worth, if any.
pub fn from_outcome(o: &Outcome) -> Option<Notice> {
    let line = o.line();
    match &o.action {
        Action::Rotated(_) => Some(Notice::new("Normal", "CertificateRotated", line)),
        Action::Failed(_) => Some(Notice::new("Warning", "CertificateRotationFailed", line)),
        Action::Blocked { .. } => {
            Some(Notice::new("Warning", "CertificateRevocationBlocked", line))
        }
        _ => None,
    }
}

pub fn from_csr(n: &CsrNotice) -> Option<Notice> {
    match n {
        CsrNotice::AwaitingApproval { csr, signer } => Some(Notice::new(
            "Warning",
            "CertificateSigningRequestPending",
            format!("CSR {csr} (signer {signer}) is waiting for approval: kubectl certificate approve {csr}"),
        )),
        CsrNotice::Denied { csr, signer, reason, message } => Some(Notice::new(
            "Warning",
            "CertificateSigningRequestDenied",
            format!("CSR {csr} (signer {signer}) was denied: {reason}: {message}"),
        )),
        CsrNotice::Created { .. } | CsrNotice::Ended { .. } => None,
    }
}

/// The Event object for `n` (pure).
pub fn event_object(
    n: &Notice,
    node: &str,
    name: &str,
    count: i32,
    first: OffsetDateTime,
    now: OffsetDateTime,
) -> Event {
    let time = |t: OffsetDateTime| {
        Time(k8s_openapi::jiff::Timestamp::from_second(t.unix_timestamp()).unwrap_or_default())
    };
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid: Some(node.to_string()),
            ..Default::default()
        },
        type_: Some(n.type_.to_string()),
        reason: Some(n.reason.to_string()),
        message: Some(n.message.clone()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: Some(node.to_string()),
        }),
        first_timestamp: Some(time(first)),
        last_timestamp: Some(time(now)),
        count: Some(count),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(node.to_string()),
        ..Default::default()
    }
}

/// `<node>.<hex Unix nanoseconds>`, as client-go names events.
pub fn event_name(node: &str, now: OffsetDateTime) -> String {
    format!("{node}.{:x}", now.unix_timestamp_nanos())
}

struct Sender {
    root: NodeRoot,
    spec: KubeletSpec,
    node_name: String,
    history: u32,
    hub: Hub,
}

enum Failed {
    Unreachable(String),
    NoCredentials(String),
    Gone,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Notice>) {
        let mut corr = Correlator::new(OffsetDateTime::now_utc());
        // Said once per outage, not once per event.
        let mut failing = false;
        while let Some(n) = rx.recv().await {
            let now = OffsetDateTime::now_utc();
            let decision = corr.decide(&n, now);
            let sent = match &decision {
                Decision::Drop => {
                    self.hub.event_dropped("rate-limited");
                    continue;
                }
                Decision::Create => self.create(&n, now).await.map(|name| (name, 1, now)),
                Decision::Patch { name, count, first } => {
                    match self.patch(name, *count, now).await {
                        Err(Failed::Gone) => {
                            corr.forget(&n);
                            self.create(&n, now).await.map(|name| (name, 1, now))
                        }
                        r => r.map(|()| (name.clone(), *count, *first)),
                    }
                }
            };
            match sent {
                Ok((name, count, first)) => {
                    corr.sent(&n, &name, count, first, now);
                    failing = false;
                }
                Err(f) => {
                    let (reason, why) = match f {
                        Failed::NoCredentials(e) => ("no-credentials", e),
                        Failed::Unreachable(e) => ("unreachable", e),
                        Failed::Gone => ("unreachable", "the event vanished twice".into()),
                    };
                    self.hub.event_dropped(reason);
                    if !failing {
                        tracing::warn!(ACTION = "event-dropped", ERROR = %why, "Kubernetes Event {} not delivered ({why}); dropping events until the API server answers", n.reason);
                        failing = true;
                    }
                }
            }
        }
    }

    fn client(&self) -> Result<ApiClient, Failed> {
        let store = Store::new(self.root.clone(), self.history);
        let node = Node {
            root: &self.root,
            spec: &self.spec,
            node_name: self.node_name.clone(),
            store: &store,
        };
        let (endpoint, creds) = node
            .mtls()
            .map_err(Failed::NoCredentials)?
            .ok_or_else(|| Failed::NoCredentials("no valid node client certificate yet".into()))?;
        ApiClient::new(&endpoint, &creds).map_err(|e| Failed::Unreachable(e.to_string()))
    }

    async fn create(&self, n: &Notice, now: OffsetDateTime) -> Result<String, Failed> {
        let client = self.client()?;
        let name = event_name(&self.node_name, now);
        let ev = event_object(n, &self.node_name, &name, 1, now, now);
        let path = format!("/api/v1/namespaces/{NAMESPACE}/events");
        let sent: Result<Result<Event, ApiError>, _> =
            tokio::time::timeout(REQUEST_TIMEOUT, client.post_json(&path, &ev)).await;
        match sent {
            Ok(Ok(_)) => Ok(name),
            Ok(Err(e)) => Err(Failed::Unreachable(e.to_string())),
            Err(_) => Err(Failed::Unreachable(format!(
                "no answer within {REQUEST_TIMEOUT:?}"
            ))),
        }
    }

    async fn patch(&self, name: &str, count: i32, now: OffsetDateTime) -> Result<(), Failed> {
        let client = self.client()?;
        let path = format!("/api/v1/namespaces/{NAMESPACE}/events/{name}");
        let last = crate::pki::rfc3339(now);
        let patch = serde_json::json!({"count": count, "lastTimestamp": last});
        let sent: Result<Result<Event, ApiError>, _> =
            tokio::time::timeout(REQUEST_TIMEOUT, client.merge_patch(&path, &patch)).await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(ApiError::Status { code: 404, .. })) => Err(Failed::Gone),
            Ok(Err(e)) => Err(Failed::Unreachable(e.to_string())),
            Err(_) => Err(Failed::Unreachable(format!(
                "no answer within {REQUEST_TIMEOUT:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::plan::Reason;
    use time::macros::datetime;

    fn outcome(action: Action) -> Outcome {
        Outcome {
            name: "kubelet-serving".into(),
            path: "/var/lib/kubelet/pki/kubelet-server-current.pem".into(),
            action,
            before: None,
            after: Some(("0a".into(), datetime!(2026-12-06 00:00 UTC))),
            warnings: vec![],
            detail: None,
        }
    }

    #[test]
    fn outcomes_and_csrs_worth_an_event() {
        let n = from_outcome(&outcome(Action::Rotated(Reason::Forced))).unwrap();
        assert_eq!((n.type_, n.reason), ("Normal", "CertificateRotated"));
        assert!(
            n.message.starts_with("kubelet-serving: rotated (forced)"),
            "{}",
            n.message
        );
        let n = from_outcome(&outcome(Action::Blocked {
            entry: "e/0".into(),
            until: None,
        }))
        .unwrap();
        assert_eq!(
            (n.type_, n.reason),
            ("Warning", "CertificateRevocationBlocked")
        );
        assert!(from_outcome(&outcome(Action::Kept {
            next: datetime!(2026-12-05 00:00 UTC)
        }))
        .is_none());
        let n = from_csr(&CsrNotice::AwaitingApproval {
            csr: "csr-x".into(),
            signer: "kubernetes.io/kubelet-serving".into(),
        })
        .unwrap();
        assert!(
            n.message.contains("kubectl certificate approve csr-x"),
            "{}",
            n.message
        );
        assert!(from_csr(&CsrNotice::Ended { signer: "s".into() }).is_none());
    }

    #[test]
    fn the_object_is_what_kubelet_records_about_its_node() {
        let t = datetime!(2026-12-02 05:00 UTC);
        let n = Notice::new("Warning", "CertificateRotationFailed", "x");
        let e = event_object(&n, "node-1", &event_name("node-1", t), 3, t, t);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Node"));
        assert_eq!(e.involved_object.uid.as_deref(), Some("node-1"));
        assert_eq!(e.involved_object.namespace, None);
        assert_eq!(e.count, Some(3));
        assert_eq!(e.metadata.name.as_deref(), Some("node-1.18ed571b07f62000"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["lastTimestamp"], "2026-12-02T05:00:00Z");
        assert_eq!(v["source"]["component"], "kube-cert-agent");
    }
}
