//! `/var/lib/kube-cert-agent/state.json`: what the daemon manages, the last result and the
//! next deadline of each certificate, and dependents' actions still pending. Written
//! atomically (`Store::write_file`) after every cycle; read by `kube-cert-agent status`.

use super::control::Daemon;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::paths::NodeRoot;
use crate::store::{FileSpec, Store};

pub const STATE_PATH: &str = "/var/lib/kube-cert-agent/state.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub pid: u32,
    /// RFC 3339.
    pub updated: String,
    pub certificates: Vec<CertState>,
    /// Actions of rotated certificates that have not succeeded yet (retried with backoff).
    pub pending_actions: Vec<PendingAction>,
    /// CSRs the daemon is waiting on (rewritten when one is created and when the wait ends).
    #[serde(default)]
    pub pending_csrs: Vec<PendingCsr>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingCsr {
    pub name: String,
    pub signer: String,
    /// RFC 3339: when it was created.
    pub since: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertState {
    pub name: String,
    pub path: String,
    /// `rotated`, `valid`, `failed`, `clockBehind`.
    pub last_result: String,
    pub error: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub next_deadline: Option<String>,
    pub last_rotated: Option<String>,
    /// When a failed rotation is tried again.
    pub retry_at: Option<String>,
    /// The planned renewal deadline, as `kube_cert_agent_renewal_timestamp_seconds`: once
    /// passed it stays until a renewal succeeds.
    #[serde(default)]
    pub deadline: Option<String>,
    /// The last time a check or rotation ended with a valid certificate in place.
    #[serde(default)]
    pub last_success: Option<String>,
    /// The life-cycle's phase (`valid`, `issuing`, `awaitingApproval`, `backoff`, ...).
    #[serde(default)]
    pub phase: String,
    /// In `awaitingApproval`: the CSR, and since when (RFC 3339) it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_since: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingAction {
    pub action: String,
    pub certificates: Vec<String>,
    pub error: String,
    pub attempts: u32,
    pub retry_at: String,
}

pub fn write(root: &NodeRoot, state: &State) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    json.push(b'\n');
    Store::new(root.clone(), 1)
        .write_file(
            Path::new(STATE_PATH),
            &json,
            FileSpec {
                mode: 0o644,
                owner: None,
            },
        )
        .map_err(|e| format!("{STATE_PATH}: {e}"))
}

pub fn read(root: &NodeRoot) -> Result<Option<State>, String> {
    match root.read(Path::new(STATE_PATH)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{STATE_PATH}: {e}")),
        Err(crate::paths::ReadError::NotFound) => Ok(None),
        Err(e) => Err(format!("{STATE_PATH}: {e}")),
    }
}

/// `status --output table`.
pub fn render_table(state: Option<&State>, daemon: Daemon) -> String {
    let mut out = match daemon {
        Daemon::Running(pid) => format!("daemon: running (pid {pid})\n"),
        Daemon::Busy => "daemon: running, busy in a rotation cycle (a CSR may be waiting for approval); the state below is from before it\n".to_string(),
        Daemon::Absent => "daemon: not running\n".to_string(),
    };
    let Some(s) = state else {
        out.push_str("no state yet: the daemon has not completed a cycle\n");
        return out;
    };
    out.push_str(&format!("state of {}\n\n", s.updated));
    let rows: Vec<[String; 6]> = s
        .certificates
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.last_result.clone(),
                c.serial.clone().unwrap_or_else(|| "-".into()),
                c.not_after.clone().unwrap_or_else(|| "-".into()),
                c.deadline
                    .clone()
                    .or_else(|| c.next_deadline.clone())
                    .unwrap_or_else(|| "-".into()),
                c.last_success.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "LAST RESULT",
        "SERIAL",
        "NOT AFTER",
        "RENEWAL DEADLINE",
        "LAST SUCCESS",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: [&str; 6]| {
        let mut l = String::new();
        for (i, c) in r.iter().enumerate() {
            l.push_str(&format!("{:<width$}  ", c, width = w[i]));
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    for c in &s.certificates {
        if let Some(e) = &c.error {
            out.push_str(&format!("\n{}: {e}", c.name));
            if let Some(r) = &c.retry_at {
                out.push_str(&format!(" (retry at {r})"));
            }
        }
    }
    for c in &s.certificates {
        if let (Some(csr), Some(since)) = (&c.csr, &c.csr_since) {
            out.push_str(&format!(
                "\n{}: {}: CSR {csr} since {since} ({})",
                c.name,
                c.phase,
                age(since)
            ));
        } else if c.phase == "issuing" {
            out.push_str(&format!("\n{}: issuing (a renewal is running)", c.name));
        }
    }
    for p in &s.pending_csrs {
        let age = age(&p.since);
        out.push_str(&format!(
            "\npending CSR {} (signer {}) waiting for approval and issuance since {} ({age}): kubectl certificate approve {}",
            p.name, p.signer, p.since, p.name
        ));
    }
    for a in &s.pending_actions {
        out.push_str(&format!(
            "\npending action {} for {}: {} ({} attempts, retry at {})",
            a.action,
            a.certificates.join(", "),
            a.error,
            a.attempts,
            a.retry_at
        ));
    }
    if out.ends_with('\n') {
        out
    } else {
        out + "\n"
    }
}

/// How long ago an RFC 3339 instant was, shortly (`3m`).
fn age(since: &str) -> String {
    time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .map(|t| {
            crate::check::short_human_duration(
                (time::OffsetDateTime::now_utc() - t).whole_seconds(),
            )
        })
        .unwrap_or_else(|_| "?".into())
}

/// `status --output json`: the state plus `running` and `pid` of the live daemon.
pub fn render_json(state: Option<&State>, daemon: Daemon) -> String {
    let v = serde_json::json!({
        "running": daemon != Daemon::Absent,
        "busy": daemon == Daemon::Busy,
        "pid": match daemon { Daemon::Running(pid) => Some(pid), _ => None },
        "state": state,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}
