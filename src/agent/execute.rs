//! Executing a rotation cycle: rotate, log, run the dependents' actions (with retries),
//! rescan and save the state.

use time::OffsetDateTime;

use super::{actions_of, schedule, Agent, Pending};
use crate::config::Action;
use crate::rotation::{self, plan::rfc3339, Outcome, Request};
use crate::service::actions;
use crate::service::notify as sd;

/// One event per rotation, failure or external change, with the journal fields operators
/// query (CERT_NAME, CERT_PATH, SERIAL, NOT_AFTER, ACTION, ERROR).
fn log_outcome(o: &Outcome, why: &str) {
    let name = o.name.as_str();
    let path = o.path.display().to_string();
    let (serial, not_after) = match o.after.as_ref().or(o.before.as_ref()) {
        Some((s, na)) => (s.clone(), rfc3339(*na)),
        None => ("-".into(), "-".into()),
    };
    let line = o.line();
    match &o.action {
        rotation::Action::Rotated(_) => tracing::info!(
            CERT_NAME = name, CERT_PATH = %path, SERIAL = %serial, NOT_AFTER = %not_after,
            ACTION = "rotated", TRIGGER = why, "{line}"
        ),
        rotation::Action::Failed(e) => tracing::error!(
            CERT_NAME = name, CERT_PATH = %path, SERIAL = %serial, NOT_AFTER = %not_after,
            ACTION = "rotate-failed", ERROR = %e, TRIGGER = why, "{line}"
        ),
        rotation::Action::ClockBehind { .. } => tracing::warn!(
            CERT_NAME = name, CERT_PATH = %path, SERIAL = %serial, NOT_AFTER = %not_after,
            ACTION = "clock-behind", "{line}"
        ),
        rotation::Action::Blocked { entry } => tracing::error!(
            CERT_NAME = name, CERT_PATH = %path, SERIAL = %serial, NOT_AFTER = %not_after,
            ACTION = "revocation-blocked", ERROR = %entry, TRIGGER = why, "{line}"
        ),
        rotation::Action::Kept { .. } | rotation::Action::WouldRotate(_) => tracing::debug!(
            CERT_NAME = name, CERT_PATH = %path, SERIAL = %serial, NOT_AFTER = %not_after,
            ACTION = "kept", "{line}"
        ),
    }
    for w in &o.warnings {
        tracing::warn!(CERT_NAME = name, CERT_PATH = %path, ACTION = "warning", "{name}: {w}");
    }
}

impl Agent {
    pub(super) async fn rotate(
        &self,
        names: &[String],
        forced: bool,
        dry_run: bool,
    ) -> Vec<Outcome> {
        let req = Request {
            forced,
            dry_run,
            repair_only: false,
            now: OffsetDateTime::now_utc(),
        };
        // CSR progress, revocation entries that failed to parse, CRLs written: worth seeing.
        let progress = |m: &str| tracing::info!("{m}");
        rotation::rotate(&self.root, &self.config, names, req, &progress).await
    }

    /// Rotate (`names` empty: what is due), log, run the coalesced actions of what was
    /// rotated, rescan, save state.json, update STATUS.
    pub(super) async fn cycle(
        &mut self,
        names: &[String],
        forced: bool,
        why: &str,
    ) -> Vec<Outcome> {
        let outcomes = self.rotate(names, forced, false).await;
        let now = OffsetDateTime::now_utc();
        self.metrics.observe(&outcomes, false, now);
        for o in &outcomes {
            log_outcome(o, why);
            let Some(c) = self.cert_mut(&o.name) else {
                continue;
            };
            c.path = o.path.clone();
            match &o.action {
                rotation::Action::Rotated(_) => {
                    c.result = "rotated".into();
                    c.error = None;
                    c.failures = 0;
                    c.retry_at = None;
                    c.last_rotated = Some(now);
                }
                rotation::Action::Failed(e) => {
                    c.result = "failed".into();
                    c.error = Some(e.clone());
                    c.retry_at = Some(schedule::retry_at(
                        now,
                        c.failures,
                        crate::kube::retry::random_unit(),
                    ));
                    c.failures += 1;
                }
                rotation::Action::ClockBehind { .. } => {
                    c.result = "clockBehind".into();
                    c.error = None;
                    c.failures = 0;
                    c.retry_at = None;
                }
                // Not retried on a timer: nothing changes until the entry is fixed, and the
                // revocations.d watch (or the hourly resync) brings the next attempt.
                rotation::Action::Blocked { entry } => {
                    c.result = "blocked".into();
                    c.error = Some(entry.clone());
                    c.failures = 0;
                    c.retry_at = None;
                }
                rotation::Action::Kept { .. } | rotation::Action::WouldRotate(_) => {
                    if c.result == "unknown" || c.result == "failed" {
                        c.result = "valid".into();
                    }
                    c.error = None;
                    c.failures = 0;
                    c.retry_at = None;
                }
            }
        }
        // Dependents: each action once, after every certificate of the cycle is installed.
        let rotated: Vec<(String, Vec<Action>)> = outcomes
            .iter()
            .filter(|o| matches!(o.action, rotation::Action::Rotated(_)))
            .map(|o| (o.name.clone(), actions_of(&self.config, &o.name)))
            .collect();
        let plan = schedule::coalesce(rotated.iter().map(|(n, a)| (n.as_str(), a.as_slice())));
        for (action, certs) in plan {
            // A new run supersedes a pending retry of the same action.
            let mut certs = certs;
            if let Some(i) = self.pending.iter().position(|p| p.action == action) {
                for n in self.pending.remove(i).certs {
                    if !certs.contains(&n) {
                        certs.push(n);
                    }
                }
            }
            self.run_action(action, certs, 0).await;
        }
        self.rescan().await;
        self.save_state();
        sd::status(&self.status_line());
        outcomes
    }

    pub(super) async fn run_action(&mut self, action: Action, certs: Vec<String>, attempts: u32) {
        let what = actions::describe(&action);
        let names = certs.join(",");
        match self.runner.run(&self.root, &action, &certs).await {
            Ok(msg) => tracing::info!(
                CERT_NAME = %names, ACTION = %what, "{msg} (after rotating {names})"
            ),
            Err(e) => {
                let now = OffsetDateTime::now_utc();
                let retry_at = schedule::retry_at(now, attempts, crate::kube::retry::random_unit());
                tracing::error!(
                    CERT_NAME = %names, ACTION = %what, ERROR = %e,
                    "{what} (after rotating {names}) failed: {e}; retrying at {}", rfc3339(retry_at)
                );
                self.pending.push(Pending {
                    action,
                    certs,
                    error: e,
                    attempts: attempts + 1,
                    retry_at,
                });
            }
        }
    }

    pub(super) async fn retry_actions(&mut self) {
        let now = OffsetDateTime::now_utc();
        let (due, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.retry_at <= now);
        self.pending = rest;
        for p in due {
            self.run_action(p.action, p.certs, p.attempts).await;
        }
        self.save_state();
        sd::status(&self.status_line());
    }
}
