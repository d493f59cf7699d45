//! The daemon's half of a fleet rotation (`caRotation.cluster: true`): every
//! `caRotation.pollInterval` it lists the CARotation objects with the node's client
//! certificate, runs the phase each one asks for (the decisions are [`super::fleet`]'s),
//! and reports the phase it reached into the object's `status.nodes`.
//!
//! The report is a server-side apply of the status subresource with a field manager of
//! the node's own (`kube-cert-agent-NODE`): `status.nodes` is a list-map keyed by `name`,
//! so each node owns exactly its entry and thousands of nodes report without a
//! read-modify-write race or a conflict. It is sent only when the entry would change.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::config::Config;
use crate::kube::client::ApiClient;
use crate::kubelet::Node;
use crate::paths::NodeRoot;

use super::fleet::{self, NodeStatus, Plan};
use super::record::{self, Phase};
use super::{Options, PhaseError};

/// The CARotation objects (cluster-scoped).
pub const PATH: &str = "/apis/kube-cert-agent.io/v1alpha1/carotations";

/// The field manager of a node's status entry: one per node (at most 128 characters).
pub fn field_manager(node: &str) -> String {
    let mut m = format!("kube-cert-agent-{node}");
    m.truncate(128);
    m
}

/// An attempt at an object's phase that did not complete: when to try again.
#[derive(Debug, Clone)]
struct Attempt {
    phase: Phase,
    serial: String,
    count: u32,
    next_at: OffsetDateTime,
    /// A refusal or failure (the record says nothing of it).
    error: Option<String>,
}

/// What the daemon remembers between polls, by object name.
#[derive(Debug, Default)]
pub struct Attempts(HashMap<String, Attempt>);

/// One poll: list, run, report. Returns what happened, one line each (for the journal).
pub async fn sync(
    root: &NodeRoot,
    config: &Config,
    attempts: &mut Attempts,
    progress: crate::kubelet::Progress<'_>,
) -> Result<Vec<String>, String> {
    let spec = config
        .kubelet
        .as_ref()
        .ok_or("caRotation.cluster needs the kubelet section (its credentials)")?;
    let store = crate::store::Store::new(root.clone(), config.history);
    let node_name = crate::kubelet::node_name(&config.node_name);
    let node = Node {
        root,
        spec,
        node_name: node_name.clone(),
        store: &store,
    };
    let client = || -> Result<ApiClient, String> {
        // Made anew for each request: a phase changes the CA the node trusts and the
        // client certificate it presents.
        let (endpoint, creds) = node.mtls()?.ok_or("no valid node client certificate yet")?;
        ApiClient::new(&endpoint, &creds).map_err(|e| e.to_string())
    };
    let list = client()?
        .get_json(PATH)
        .await
        .map_err(|e| format!("listing CARotation objects: {e}"))?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let (objects, bad) = fleet::objects(&items, &node_name);
    let mut lines = bad;
    let interval = config.ca_rotation.interval();
    let cas: Vec<&str> = config.cas.iter().map(|c| c.name.as_str()).collect();
    attempts
        .0
        .retain(|name, _| objects.iter().any(|o| &o.name == name));
    for obj in &objects {
        let rivals: Vec<&str> = objects
            .iter()
            .filter(|o| o.name != obj.name && o.wanted.ca == obj.wanted.ca)
            .map(|o| o.name.as_str())
            .collect();
        let serial = obj.new_serial.clone().unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        // A new ask (another phase or another CA) starts without backoff.
        let attempt = attempts
            .0
            .get(&obj.name)
            .filter(|a| a.phase == obj.wanted.phase && a.serial == serial);
        let due = attempt.map_or(true, |a| now >= a.next_at);
        let last_error = attempt.and_then(|a| a.error.clone());
        let rec = record::read(root)?;
        let plan = fleet::plan(
            obj,
            &cas,
            &rivals,
            rec.get(&obj.wanted.ca),
            due,
            last_error.as_deref(),
        );
        let entry = match plan {
            Plan::Report {
                phase,
                complete,
                message,
            } => fleet::status(&node_name, phase, complete, &message, now),
            Plan::Run(phase) => {
                let (entry, done) = run(root, config, obj, phase, progress, &mut lines).await;
                if done {
                    attempts.0.remove(&obj.name);
                } else {
                    let count = attempt.map_or(0, |a| a.count) + 1;
                    let error = (!entry.message.is_empty()).then(|| entry.message.clone());
                    attempts.0.insert(
                        obj.name.clone(),
                        Attempt {
                            phase,
                            serial: serial.clone(),
                            count,
                            next_at: fleet::next_attempt(now, count, interval),
                            error,
                        },
                    );
                }
                entry
            }
        };
        if obj.reported.as_ref().is_some_and(|r| r.same_as(&entry)) {
            continue;
        }
        let path = format!(
            "{PATH}/{}/status?fieldManager={}&force=true",
            obj.name,
            field_manager(&node_name)
        );
        let body = fleet::apply_body(&obj.name, &entry);
        match client()?
            .apply_patch::<serde_json::Value>(&path, &body)
            .await
        {
            Ok(_) => lines.push(format!(
                "CARotation {}: reported phase {} complete={}",
                obj.name, entry.phase, entry.complete
            )),
            Err(e) => lines.push(format!(
                "CARotation {}: could not report the phase reached: {e}",
                obj.name
            )),
        }
    }
    Ok(lines)
}

/// Run `phase` of the object's CA; the entry to report and whether the phase completed.
async fn run(
    root: &NodeRoot,
    config: &Config,
    obj: &fleet::Object,
    phase: Phase,
    progress: crate::kubelet::Progress<'_>,
    lines: &mut Vec<String>,
) -> (NodeStatus, bool) {
    let now = OffsetDateTime::now_utc();
    let opts = Options {
        phase,
        dry_run: false,
        new_cert: None,
        new_cert_pem: (phase == Phase::Prepare).then(|| obj.wanted.new_ca_pem.clone().into_bytes()),
        new_key: None,
        now,
    };
    let ca = &obj.wanted.ca;
    lines.push(format!(
        "CARotation {}: running phase {} of CA {ca}",
        obj.name,
        phase.as_str()
    ));
    let node = crate::kubelet::node_name(&config.node_name);
    match super::run(root, config, ca, &opts, progress).await {
        Ok(report) => {
            lines.extend(
                report
                    .lines
                    .iter()
                    .map(|l| format!("CARotation {}: {l}", obj.name)),
            );
            let error = record::read(root)
                .ok()
                .and_then(|r| r.get(ca).and_then(|r| r.error.clone()))
                .unwrap_or_default();
            let message = if report.complete {
                String::new()
            } else {
                error
            };
            (
                fleet::status(&node, phase, report.complete, &message, now),
                report.complete,
            )
        }
        Err(PhaseError { message, .. }) => {
            lines.push(format!(
                "CARotation {}: phase {}: {message}",
                obj.name,
                phase.as_str()
            ));
            // The phase the node is at (the record), with why the asked one did not run.
            let at = record::read(root)
                .ok()
                .and_then(|r| r.get(ca).cloned())
                .filter(|r| Ok(&r.new_serial) == obj.new_serial.as_ref());
            let (p, c) = at.map_or((phase, false), |r| (r.phase, r.complete));
            (fleet::status(&node, p, c, &message, now), false)
        }
    }
}
