//! A fleet moving through a rotation together (pure): for each CARotation object the
//! daemon lists, which phase this node runs now, and the entry it reports into the
//! object's `status.nodes`.
//!
//! A phase runs once: a phase this node completed for the object's new CA is only
//! reported. An incomplete or refused phase is run again, later each time (the cluster
//! signer may not have switched yet: every attempt is a CSR), until the object asks for
//! something else.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::object::{self, Wanted};
use super::record::{Phase, Rotation};

/// The most a retry waits, in poll intervals (1, 2, 4, 8, then 16 intervals).
pub const MAX_BACKOFF_INTERVALS: u32 = 16;

/// One node's entry in `status.nodes` (the CRD's list-map keyed by `name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub phase: String,
    pub complete: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// RFC 3339.
    #[serde(default)]
    pub updated: String,
}

impl NodeStatus {
    /// Whether `other` says the same (the time of the report aside).
    pub fn same_as(&self, other: &NodeStatus) -> bool {
        (&self.name, &self.phase, self.complete, &self.message)
            == (&other.name, &other.phase, other.complete, &other.message)
    }
}

/// A CARotation object as listed, with what this node already reported into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub name: String,
    pub wanted: Wanted,
    /// Serial of `wanted.new_ca_pem` (lower-case hex), or why it is unreadable.
    pub new_serial: Result<String, String>,
    pub reported: Option<NodeStatus>,
}

/// Read the items of a CARotation list; an item that is not one is named and skipped.
pub fn objects(items: &[Value], node: &str) -> (Vec<Object>, Vec<String>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for item in items {
        let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
        let wanted = match object::from_value(item) {
            Ok(w) => w,
            Err(e) => {
                bad.push(format!("CARotation {name:?}: {e}"));
                continue;
            }
        };
        let new_serial = crate::pki::parse_material(wanted.new_ca_pem.as_bytes())
            .and_then(|m| {
                m.certificates
                    .first()
                    .ok_or_else(|| "no certificate".to_string())
                    .and_then(|der| crate::pki::CertInfo::parse(der))
            })
            .map(|c| c.serial)
            .map_err(|e| format!("spec.newCACertificate: {e}"));
        let reported = item["status"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["name"].as_str() == Some(node))
            .find_map(|n| serde_json::from_value(n.clone()).ok());
        out.push(Object {
            name,
            wanted,
            new_serial,
            reported,
        });
    }
    (out, bad)
}

/// What to do about one object now.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Run this phase (with the object's certificate in prepare).
    Run(Phase),
    /// Run nothing (done, or not due again yet); report this.
    Report {
        phase: Phase,
        complete: bool,
        message: String,
    },
}

/// The phase this node reached in the rotation to `serial`, if the record is about it.
fn reached(record: Option<&Rotation>, serial: &str) -> Option<(Phase, bool, String)> {
    record
        .filter(|r| r.new_serial == serial)
        .map(|r| (r.phase, r.complete, r.error.clone().unwrap_or_default()))
}

/// The plan for `obj`. `cas`: the CA names of this node's config; `rivals`: the other
/// objects naming the same CA; `record`: this node's rotation of that CA; `due`: whether
/// an attempt may be made now (backoff), `last_error`: why the last attempt did not
/// complete, when it ended before the record said so (a refusal).
pub fn plan(
    obj: &Object,
    cas: &[&str],
    rivals: &[&str],
    record: Option<&Rotation>,
    due: bool,
    last_error: Option<&str>,
) -> Plan {
    let want = obj.wanted.phase;
    let report = |phase, complete, message: String| Plan::Report {
        phase,
        complete,
        message,
    };
    if !cas.contains(&obj.wanted.ca.as_str()) {
        return report(
            want,
            true,
            format!(
                "this node has no CA {} (cas: in its config): nothing to do",
                obj.wanted.ca
            ),
        );
    }
    let serial = match &obj.new_serial {
        Ok(s) => s.as_str(),
        Err(e) => return report(want, false, e.clone()),
    };
    let here = reached(record, serial);
    if !rivals.is_empty() {
        let (phase, complete, _) = here.clone().unwrap_or((want, false, String::new()));
        return report(
            phase,
            complete,
            format!(
                "CARotation objects {} also rotate CA {}: delete the finished ones (one rotation per CA at a time)",
                rivals.join(", "),
                obj.wanted.ca
            ),
        );
    }
    match here {
        Some((phase, true, _)) if phase == want => report(phase, true, String::new()),
        Some((phase, complete, error)) => {
            if due {
                Plan::Run(want)
            } else {
                let why = last_error.map(str::to_string).unwrap_or(error);
                report(phase, complete, why)
            }
        }
        None if want == Phase::Prepare && due => Plan::Run(Phase::Prepare),
        None if want == Phase::Prepare => report(
            want,
            false,
            last_error.unwrap_or("waiting to retry").to_string(),
        ),
        None => report(
            want,
            false,
            format!(
                "this node has not prepared the rotation to CA serial {serial}: set spec.phase \
                 to prepare until every node has, or run rotate-ca {} --phase prepare --cert on this node",
                obj.wanted.ca
            ),
        ),
    }
}

/// The entry to report for `plan`'s outcome.
pub fn status(
    node: &str,
    phase: Phase,
    complete: bool,
    message: &str,
    now: OffsetDateTime,
) -> NodeStatus {
    NodeStatus {
        name: node.to_string(),
        phase: phase.as_str().to_string(),
        complete,
        message: message.to_string(),
        updated: crate::rotation::plan::rfc3339(now),
    }
}

/// When the next attempt after `attempts` failed ones may run.
pub fn next_attempt(last: OffsetDateTime, attempts: u32, interval: Duration) -> OffsetDateTime {
    let n = 1u32 << attempts.saturating_sub(1).min(4);
    last + interval * n.min(MAX_BACKOFF_INTERVALS) as i32
}

/// The server-side apply body that sets this node's entry (and only it) in the status.
pub fn apply_body(object: &str, entry: &NodeStatus) -> Value {
    serde_json::json!({
        "apiVersion": object::API_VERSION,
        "kind": object::KIND,
        "metadata": {"name": object},
        "status": {"nodes": [entry]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(phase: Phase) -> Object {
        Object {
            name: "cluster-2026".into(),
            wanted: Wanted {
                ca: "cluster".into(),
                phase,
                new_ca_pem: String::new(),
            },
            new_serial: Ok("0b".into()),
            reported: None,
        }
    }

    fn rec(phase: Phase, complete: bool, serial: &str) -> Rotation {
        Rotation {
            ca: "cluster".into(),
            phase,
            complete,
            old_serial: "0a".into(),
            new_serial: serial.into(),
            started: String::new(),
            updated: String::new(),
            error: (!complete).then(|| "the cluster signer has not switched yet".into()),
        }
    }

    const CAS: &[&str] = &["cluster", "etcd"];

    #[test]
    fn a_phase_runs_until_complete_then_is_only_reported() {
        use Phase::*;
        let p = |o: &Object, r: Option<&Rotation>, due| plan(o, CAS, &[], r, due, None);
        assert_eq!(p(&obj(Prepare), None, true), Plan::Run(Prepare));
        let done = rec(Prepare, true, "0b");
        assert_eq!(
            p(&obj(Prepare), Some(&done), true),
            Plan::Report {
                phase: Prepare,
                complete: true,
                message: String::new()
            }
        );
        assert_eq!(p(&obj(Reissue), Some(&done), true), Plan::Run(Reissue));
        // Incomplete: again when due; meanwhile the record's state and why.
        let waiting = rec(Reissue, false, "0b");
        assert_eq!(p(&obj(Reissue), Some(&waiting), true), Plan::Run(Reissue));
        assert_eq!(
            p(&obj(Reissue), Some(&waiting), false),
            Plan::Report {
                phase: Reissue,
                complete: false,
                message: "the cluster signer has not switched yet".into()
            }
        );
        // A refusal the record does not hold is reported until the next attempt.
        assert_eq!(
            plan(
                &obj(Finalize),
                CAS,
                &[],
                Some(&done),
                false,
                Some("reissue comes first")
            ),
            Plan::Report {
                phase: Prepare,
                complete: true,
                message: "reissue comes first".into()
            }
        );
    }

    #[test]
    fn what_is_not_this_nodes_is_reported_not_run() {
        use Phase::*;
        let mut other_ca = obj(Prepare);
        other_ca.wanted.ca = "front-proxy".into();
        let Plan::Report {
            complete, message, ..
        } = plan(&other_ca, CAS, &[], None, true, None)
        else {
            panic!("a CA the node does not have is not run")
        };
        assert!(
            complete && message.contains("no CA front-proxy"),
            "{message}"
        );
        // Reissue of a rotation this node never prepared (another serial in the record).
        let old = rec(Finalize, true, "09");
        let Plan::Report {
            complete, message, ..
        } = plan(&obj(Reissue), CAS, &[], Some(&old), true, None)
        else {
            panic!("not prepared here")
        };
        assert!(
            !complete && message.contains("has not prepared"),
            "{message}"
        );
        // Two objects for one CA: neither runs.
        let Plan::Report { message, .. } =
            plan(&obj(Prepare), CAS, &["cluster-2025"], None, true, None)
        else {
            panic!("rivals")
        };
        assert!(message.contains("cluster-2025"), "{message}");
    }

    #[test]
    fn retries_back_off_to_sixteen_intervals() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let i = Duration::minutes(1);
        let waits: Vec<i64> = (1..=7)
            .map(|n| (next_attempt(t0, n, i) - t0).whole_minutes())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn reads_list_items_and_this_nodes_entry() {
        let items = vec![
            serde_json::json!({
                "apiVersion": "kube-cert-agent.io/v1alpha1", "kind": "CARotation",
                "metadata": {"name": "r1"},
                "spec": {"ca": "cluster", "phase": "reissue", "newCACertificate": "junk"},
                "status": {"nodes": [
                    {"name": "node-2", "phase": "reissue", "complete": true},
                    {"name": "node-1", "phase": "prepare", "complete": true, "updated": "2026-12-02T06:00:00Z"}]},
            }),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        ];
        let (objects, bad) = objects(&items, "node-1");
        assert_eq!(objects.len(), 1);
        assert_eq!(bad.len(), 1, "{bad:?}");
        let o = &objects[0];
        assert_eq!(o.wanted.phase, Phase::Reissue);
        assert!(o.new_serial.is_err());
        let r = o.reported.as_ref().unwrap();
        assert_eq!((r.phase.as_str(), r.complete), ("prepare", true));
        assert!(r.same_as(&status(
            "node-1",
            Phase::Prepare,
            true,
            "",
            OffsetDateTime::UNIX_EPOCH
        )));
        let body = apply_body("r1", r);
        assert_eq!(body["status"]["nodes"][0]["name"], "node-1");
        assert!(body["status"]["nodes"][0].get("message").is_none());
    }
}
