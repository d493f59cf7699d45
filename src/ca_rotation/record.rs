//! `/var/lib/kube-cert-agent/ca-rotations.json`: the phase each CA rotation has reached
//! on this node, written atomically before and after every phase, read back to resume
//! and by `status`. A file of its own, beside `state.json`: the daemon rewrites
//! `state.json` whole after every cycle, and a `rotate-ca` running next to it must not
//! lose its record to that.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::paths::NodeRoot;
use crate::store::{FileSpec, Store};

pub const RECORD_PATH: &str = "/var/lib/kube-cert-agent/ca-rotations.json";

/// The three phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Prepare,
    Reissue,
    Finalize,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Reissue => "reissue",
            Phase::Finalize => "finalize",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [Phase::Prepare, Phase::Reissue, Phase::Finalize]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One CA's rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// `cas[].name`.
    pub ca: String,
    pub phase: Phase,
    /// The phase finished (every step done); false while it runs, after a crash, or when
    /// it stopped on something it waits for (`error`).
    pub complete: bool,
    /// Serials (lower-case hex) of the two CAs.
    pub old_serial: String,
    pub new_serial: String,
    /// RFC 3339.
    pub started: String,
    pub updated: String,
    /// Why the phase is not complete.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub rotations: Vec<Rotation>,
}

impl Record {
    pub fn get(&self, ca: &str) -> Option<&Rotation> {
        self.rotations.iter().find(|r| r.ca == ca)
    }

    pub fn put(&mut self, r: Rotation) {
        match self.rotations.iter_mut().find(|x| x.ca == r.ca) {
            Some(x) => *x = r,
            None => self.rotations.push(r),
        }
    }
}

pub fn read(root: &NodeRoot) -> Result<Record, String> {
    match root.read(Path::new(RECORD_PATH)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{RECORD_PATH}: {e}")),
        Err(crate::paths::ReadError::NotFound) => Ok(Record::default()),
        Err(e) => Err(format!("{RECORD_PATH}: {e}")),
    }
}

pub fn write(root: &NodeRoot, record: &Record) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
    json.push(b'\n');
    Store::new(root.clone(), 1)
        .write_file(
            Path::new(RECORD_PATH),
            &json,
            FileSpec {
                mode: 0o644,
                owner: None,
            },
        )
        .map_err(|e| format!("{RECORD_PATH}: {e}"))
}

/// The lines `status` adds for CA rotations (nothing when there are none).
pub fn render_table(record: &Record) -> String {
    let mut out = String::new();
    for r in &record.rotations {
        let how = if r.complete { "done" } else { "in progress" };
        out.push_str(&format!(
            "CA rotation {}: phase {} {how} (old CA serial {}, new CA serial {}, updated {})\n",
            r.ca,
            r.phase.as_str(),
            r.old_serial,
            r.new_serial,
            r.updated
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("  waiting: {e}\n"));
        }
    }
    out
}
