//! The approver's loop, while this replica holds the Lease: list the pending
//! kubelet-serving CSRs, watch them, and after every batch of changes deny the superseded
//! ones, check the breaker, run the rules on each new CSR (reading its Node fresh) and
//! approve or deny through the `approval` subresource. Decisions come from `rules`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time, WatchEvent};
use tokio::sync::{mpsc, watch};

use super::csr;
use super::metrics::Metrics;
use super::rules::{self, CsrSpec, Failure, NodeAddresses, Pending, Policy, Rule, SIGNER};
use crate::kube::client::{ApiClient, ApiError};

const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const SIGNER_SELECTOR: &str = "fieldSelector=spec.signerName%3Dkubernetes.io%2Fkubelet-serving";

/// What to do with a CSR that fails a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailure {
    /// Deny it, with the rule as the reason.
    Deny,
    /// Leave it pending for a human (the failure is logged and counted).
    Pending,
}

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    pub on_failure: OnFailure,
    pub breaker_margin: usize,
    pub identity: String,
    /// Where the Lease is: Events about the breaker are recorded on it.
    pub namespace: String,
    pub lease_name: String,
}

pub struct Controller {
    client: ApiClient,
    s: Settings,
    metrics: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    /// Pending kubelet-serving CSRs by name.
    pending: HashMap<String, CertificateSigningRequest>,
    /// Pending CSRs that failed a rule and are left pending (not evaluated again until a relist).
    held: HashSet<String>,
    nodes: usize,
    breaker: bool,
}

fn is_pending(o: &CertificateSigningRequest) -> bool {
    o.spec.signer_name == SIGNER
        && !o
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| ["Approved", "Denied", "Failed"].contains(&c.type_.as_str()))
            })
}

fn name_of(o: &CertificateSigningRequest) -> String {
    o.metadata.name.clone().unwrap_or_default()
}

fn code(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::Status { code, .. } => Some(*code),
        _ => None,
    }
}

fn spec_of(o: &CertificateSigningRequest) -> CsrSpec<'_> {
    CsrSpec {
        username: o.spec.username.as_deref().unwrap_or(""),
        groups: o.spec.groups.as_deref().unwrap_or(&[]),
        usages: o.spec.usages.as_deref().unwrap_or(&[]),
        expiration_seconds: o.spec.expiration_seconds,
    }
}

impl Controller {
    pub fn new(
        client: ApiClient,
        s: Settings,
        metrics: Arc<Metrics>,
        leader: watch::Receiver<bool>,
    ) -> Self {
        Controller {
            client,
            s,
            metrics,
            leader,
            pending: HashMap::new(),
            held: HashSet::new(),
            nodes: 0,
            breaker: false,
        }
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Runs forever: acts only while the Lease is held.
    pub async fn run(mut self) {
        loop {
            self.metrics.leader.set(0);
            if self.leader.wait_for(|l| *l).await.is_err() {
                return;
            }
            self.metrics.leader.set(1);
            tracing::info!(
                "leading: approving kubelet-serving CSRs as {}",
                self.s.identity
            );
            if let Err(e) = self.session().await {
                tracing::warn!("{e}; listing again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }

    /// One list + watches, until leadership is lost (Ok) or the API fails (Err).
    async fn session(&mut self) -> Result<(), ApiError> {
        let list: k8s_openapi::List<CertificateSigningRequest> = self
            .client
            .get(&format!("{CSR_PATH}?{SIGNER_SELECTOR}"))
            .await?;
        self.pending = list
            .items
            .into_iter()
            .filter(is_pending)
            .map(|o| (name_of(&o), o))
            .collect();
        self.held.clear();
        self.refresh_nodes().await?;
        let mut rv = list.metadata.resource_version.unwrap_or_default();
        self.reconcile().await?;
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel::<WatchEvent<CertificateSigningRequest>>();
            let client = self.client.clone();
            let q = format!("{CSR_PATH}?{SIGNER_SELECTOR}&watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=300");
            let task =
                tokio::spawn(async move { client.watch(&q, |ev| tx.send(ev).is_ok()).await });
            let abort = task.abort_handle();
            let result = loop {
                tokio::select! {
                    _ = self.leader.changed() => {
                        if !self.is_leader() {
                            abort.abort();
                            return Ok(());
                        }
                    }
                    ev = rx.recv() => {
                        let Some(ev) = ev else { break Ok(()) };
                        let mut batch = vec![ev];
                        while let Ok(ev) = rx.try_recv() {
                            batch.push(ev);
                        }
                        for ev in batch {
                            if let Some(e) = self.apply(ev, &mut rv) {
                                abort.abort();
                                // 410 Gone and other in-stream errors: list again.
                                return Err(e);
                            }
                        }
                        if let Err(e) = self.reconcile().await {
                            abort.abort();
                            return Err(e);
                        }
                    }
                }
            };
            let ended: Result<(), ApiError> = match task.await {
                Ok(r) => r,
                Err(_) => result,
            };
            ended?;
        }
    }

    /// Applies one watch event to the cache; an in-stream error is returned.
    fn apply(
        &mut self,
        ev: WatchEvent<CertificateSigningRequest>,
        rv: &mut String,
    ) -> Option<ApiError> {
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                *rv = o.metadata.resource_version.clone().unwrap_or_default();
                let name = name_of(&o);
                if is_pending(&o) {
                    self.pending.insert(name, o);
                } else {
                    self.pending.remove(&name);
                    self.held.remove(&name);
                }
            }
            WatchEvent::Deleted(o) => {
                *rv = o.metadata.resource_version.clone().unwrap_or_default();
                let name = name_of(&o);
                self.pending.remove(&name);
                self.held.remove(&name);
            }
            WatchEvent::Bookmark {
                resource_version, ..
            } => *rv = resource_version,
            WatchEvent::ErrorStatus(s) => return Some(self.client.watch_status_error(s)),
            WatchEvent::ErrorOther(o) => {
                return Some(ApiError::Setup(format!("watch error {o:?}")));
            }
        }
        None
    }

    async fn refresh_nodes(&mut self) -> Result<(), ApiError> {
        let nodes: k8s_openapi::List<Node> = self.client.get("/api/v1/nodes").await?;
        self.nodes = nodes.items.len();
        Ok(())
    }

    async fn node_addresses(&self, node: &str) -> Result<Option<NodeAddresses>, ApiError> {
        match self
            .client
            .get::<Node>(&format!("/api/v1/nodes/{node}"))
            .await
        {
            Ok(n) => {
                let addrs = n.status.and_then(|s| s.addresses).unwrap_or_default();
                Ok(Some(NodeAddresses::from_pairs(
                    addrs.iter().map(|a| (a.type_.as_str(), a.address.as_str())),
                )))
            }
            Err(e) if code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Superseded CSRs, the breaker, then the rules on every CSR not yet decided.
    async fn reconcile(&mut self) -> Result<(), ApiError> {
        let superseded: Vec<(String, String, String)> = {
            let pending: Vec<Pending<'_>> = self
                .pending
                .values()
                .filter_map(|o| {
                    let node = rules::requesting_node(&spec_of(o))?;
                    let created = o
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second())
                        .unwrap_or(0);
                    let rv = o
                        .metadata
                        .resource_version
                        .as_deref()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    Some(Pending {
                        name: o.metadata.name.as_deref()?,
                        node,
                        created: (created, rv),
                    })
                })
                .collect();
            let nodes: HashMap<&str, &str> = pending.iter().map(|p| (p.name, p.node)).collect();
            rules::superseded(&pending)
                .into_iter()
                .map(|(old, new)| (old.to_string(), new.to_string(), nodes[old].to_string()))
                .collect()
        };
        for (old, new, node) in superseded {
            let f = Failure {
                rule: Rule::Superseded,
                message: format!("superseded by {new}, a newer CSR of node {node:?}"),
            };
            self.decide(&old, Err(f), true).await?;
        }
        let mut open = rules::breaker_open(self.pending.len(), self.nodes, self.s.breaker_margin);
        if open {
            // Nodes may have joined since the count: count again before refusing.
            self.refresh_nodes().await?;
            open = rules::breaker_open(self.pending.len(), self.nodes, self.s.breaker_margin);
        }
        self.metrics.pending.set(self.pending.len() as i64);
        self.set_breaker(open).await;
        if open {
            return Ok(());
        }
        let mut names: Vec<String> = self
            .pending
            .keys()
            .filter(|n| !self.held.contains(*n))
            .cloned()
            .collect();
        names.sort();
        for name in names {
            let Some(o) = self.pending.get(&name) else {
                continue;
            };
            let parsed = csr::parse(&o.spec.request.0);
            let verdict = match rules::check_request(&spec_of(o), &parsed, &self.s.policy) {
                Err(f) => Err(f),
                Ok(node) => {
                    let node = node.to_string();
                    let addrs = self.node_addresses(&node).await?;
                    let parsed = parsed.as_ref().expect("checked by check_request");
                    rules::check_node(&node, parsed, addrs.as_ref())
                }
            };
            self.decide(&name, verdict, false).await?;
        }
        self.metrics.pending.set(self.pending.len() as i64);
        Ok(())
    }

    /// Approves (Ok) or, by policy, denies or holds (Err) CSR `name`. `always_deny`: deny
    /// whatever the policy (superseded CSRs).
    async fn decide(
        &mut self,
        name: &str,
        verdict: Result<(), Failure>,
        always_deny: bool,
    ) -> Result<(), ApiError> {
        let (type_, reason, message) = match &verdict {
            Ok(()) => ("Approved", "KubeCertAgentApproved".to_string(), format!(
                "approved by kube-cert-agent approver {}: requester, subject, Node, SANs, usages, key and duration checked",
                self.s.identity
            )),
            Err(f) if always_deny || self.s.on_failure == OnFailure::Deny => {
                ("Denied", f.rule.reason().to_string(), format!("denied by kube-cert-agent approver {}: rule {}: {}", self.s.identity, f.rule.id(), f.message))
            }
            Err(f) => {
                tracing::warn!("CSR {name} left pending: rule {}: {}", f.rule.id(), f.message);
                self.metrics.hold(f.rule);
                self.held.insert(name.to_string());
                return Ok(());
            }
        };
        if !self.is_leader() {
            return Ok(());
        }
        let Some(mut o) = self.pending.get(name).cloned() else {
            return Ok(());
        };
        for attempt in 0..2 {
            let mut body = o.clone();
            body.status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new)
                .push(CertificateSigningRequestCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                    last_update_time: Some(Time(super::now_timestamp())),
                    ..Default::default()
                });
            let path = format!("{CSR_PATH}/{name}/approval");
            match self
                .client
                .send::<CertificateSigningRequest>(reqwest::Method::PUT, &path, &body)
                .await
            {
                Ok(_) => {
                    match &verdict {
                        Ok(()) => {
                            self.metrics.approved.inc();
                        }
                        Err(f) => self.metrics.deny(f.rule),
                    }
                    tracing::info!("CSR {name}: {type_}: {message}");
                    break;
                }
                Err(e) if code(&e) == Some(404) => break,
                Err(e) if code(&e) == Some(409) && attempt == 0 => {
                    o = self.client.get(&format!("{CSR_PATH}/{name}")).await?;
                    if !is_pending(&o) {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.pending.remove(name);
        Ok(())
    }

    /// Records the breaker's state: metric, log and an Event on the Lease when it changes.
    async fn set_breaker(&mut self, open: bool) {
        self.metrics.breaker_open.set(open as i64);
        if open == self.breaker {
            return;
        }
        self.breaker = open;
        let (type_, reason, message) = if open {
            ("Warning", "BreakerOpen", format!(
                "{} kubelet-serving CSRs pending for {} nodes (margin {}): approvals stopped until pending CSRs are cleared",
                self.pending.len(), self.nodes, self.s.breaker_margin
            ))
        } else {
            (
                "Normal",
                "BreakerClosed",
                format!(
                    "{} kubelet-serving CSRs pending for {} nodes: approving again",
                    self.pending.len(),
                    self.nodes
                ),
            )
        };
        tracing::warn!("{reason}: {message}");
        if let Err(e) = self.record_event(type_, reason, &message).await {
            tracing::warn!("could not record the {reason} Event: {e}");
        }
    }

    async fn record_event(&self, type_: &str, reason: &str, message: &str) -> Result<(), ApiError> {
        let ns = &self.s.namespace;
        let now = Time(super::now_timestamp());
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", self.s.lease_name)),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("coordination.k8s.io/v1".into()),
                kind: Some("Lease".into()),
                name: Some(self.s.lease_name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some("kube-cert-agent-approver".into()),
                host: None,
            }),
            reporting_component: Some("kube-cert-agent-approver".into()),
            reporting_instance: Some(self.s.identity.clone()),
            ..Default::default()
        };
        self.client
            .send::<Event>(
                reqwest::Method::POST,
                &format!("/api/v1/namespaces/{ns}/events"),
                &ev,
            )
            .await
            .map(|_| ())
    }
}
