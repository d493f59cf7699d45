//! Read-only rescans: what is on disk now, compared with what the agent last saw.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::{fingerprint, Agent};
use crate::config;
use crate::lifecycle::{spread, Event, Observation, Phase};
use crate::rotation::{self, plan::rfc3339, plan::Reason, Outcome};
use crate::service::actions;

impl Agent {
    /// A dry run over everything: the next deadlines, and what is on disk now (so that the
    /// events of our own writes compare equal).
    pub(super) async fn rescan(&mut self) -> Vec<Outcome> {
        let scan = self.rotate(&[], false, true).await;
        let now = self.clock.now();
        self.metrics.observe(&scan, true, now);
        for o in &scan {
            self.seen.insert(o.name.clone(), fingerprint(o));
            let Some(c) = self.cert_mut(&o.name) else {
                continue;
            };
            c.path = o.path.clone();
            if let Some((s, na)) = &o.before {
                c.serial = Some(s.clone());
                c.not_after = Some(*na);
            } else {
                c.serial = None;
                c.not_after = None;
            }
            let event = match &o.action {
                rotation::Action::Kept { next } => Some(Observation::Valid { deadline: *next }),
                rotation::Action::ClockBehind { not_before } => Some(Observation::ClockBehind {
                    not_before: *not_before,
                }),
                rotation::Action::WouldRotate(r) => Some(self.due(o, r, now)),
                rotation::Action::Blocked { entry, .. } => Some(Observation::Blocked {
                    reason: entry.clone(),
                }),
                // Absent and not meant for this node: nothing to try until the node changes.
                rotation::Action::NotHere(why) => Some(Observation::Blocked {
                    reason: why.clone(),
                }),
                // Only an attempt counts as a failure; a scan that cannot tell waits for it.
                rotation::Action::Rotated(_) | rotation::Action::Failed(_) => None,
            };
            let name = o.name.clone();
            if let Some(ev) = event {
                self.feed(&name, Event::Observed(ev));
            }
            let Some(c) = self.cert_mut(&name) else {
                continue;
            };
            // Due: at once, unless it waits out a backoff (then `retry_at` wakes it) or its
            // turn in a fleet-wide wave. Blocked: when the replacement can clear the entry
            // by itself, if it can (`rotation::Action::Blocked::until`), else at a change.
            let blocked_until = match &o.action {
                rotation::Action::Blocked { until, .. } => *until,
                _ => None,
            };
            c.next = match &c.life.phase {
                Phase::Valid { deadline } => Some(*deadline),
                Phase::Blocked { .. } => blocked_until,
                Phase::Waiting { until, .. } => Some(*until),
                Phase::ClockBehind { not_before } => Some(*not_before),
                Phase::Due { .. } | Phase::Unknown if c.life.may_start(now) => Some(now),
                _ => None,
            };
        }
        scan
    }

    /// What a scan that finds `o` due says: a kubelet certificate overdue because of a
    /// fleet-wide event waits its turn over `renewal.fleetSpread` (`lifecycle::spread`);
    /// local-CA certificates never reach the API server and go at once.
    fn due(&self, o: &Outcome, r: &Reason, now: OffsetDateTime) -> Observation {
        let reason = r.to_string();
        let local = self.config.certificates.iter().any(|c| c.name == o.name)
            || self.config.kubeconfigs.iter().any(|k| k.name == o.name);
        let cause = cause(r);
        if local || !spread::in_wave(cause, now) {
            return Observation::Due { reason };
        }
        let window = self.config.renewal.fleet_window();
        let not_after = o.before.as_ref().map(|(_, na)| *na);
        let until = spread::start_at(window, now, not_after, crate::kube::retry::random_unit());
        Observation::Overdue { reason, until }
    }

    /// Something changed in a watched directory: rescan and compare with what the agent
    /// last saw. Its own writes compare equal and do nothing.
    pub(super) async fn on_fs_events(&mut self, paths: Vec<PathBuf>) {
        if paths.iter().any(|p| p == &self.config_file) {
            match config::load(Some(&self.config_file), &self.root) {
                Ok(c) => match actions::validate_config(&c) {
                    Ok(()) => {
                        tracing::info!("{}: changed; reloaded", self.config_file.display());
                        self.config = c;
                        self.sync_names();
                        // After sync_names: the endpoint renders the new config's inventory.
                        self.endpoints
                            .apply(&self.metrics, &self.root, &self.config.metrics)
                            .await;
                        // A config change is an operator's action: worth another try.
                        for n in rotation::managed_names(&self.config) {
                            self.feed(&n, Event::InputsChanged);
                        }
                        self.cycle(&[], false, "config change").await;
                        return;
                    }
                    Err(e) => tracing::error!(
                        ERROR = %e,
                        "{}: changed but invalid ({e}); keeping the previous config",
                        self.config_file.display()
                    ),
                },
                Err(e) => tracing::error!(
                    ERROR = %e,
                    "{}: changed but invalid ({e}); keeping the previous config",
                    self.config_file.display()
                ),
            }
        }
        tracing::debug!("rescan after events on {paths:?}");
        // Files a local-CA certificate is made from may have been fixed (a CA key put
        // back): a permanent failure is worth one more try. Not the kubelet's: a denied CSR
        // waits for the operator or the long interval, whatever else changes on disk.
        let local: Vec<String> = self
            .config
            .certificates
            .iter()
            .map(|c| c.name.clone())
            .chain(self.config.kubeconfigs.iter().map(|k| k.name.clone()))
            .collect();
        for n in &local {
            self.feed(n, Event::InputsChanged);
        }
        self.metrics.inventory_changed();
        let before = self.seen.clone();
        let scan = self.rescan().await;
        let mut changed = vec![];
        for o in &scan {
            let now_fp = fingerprint(o);
            let was = before.get(&o.name).cloned().unwrap_or_default();
            if now_fp == was {
                continue;
            }
            let what = match &o.action {
                rotation::Action::WouldRotate(r) => format!("now {r}"),
                _ => format!("now serial {now_fp}"),
            };
            let (serial, not_after) = match &o.before {
                Some((s, na)) => (s.clone(), rfc3339(*na)),
                None => ("-".into(), "-".into()),
            };
            tracing::warn!(
                CERT_NAME = %o.name, CERT_PATH = %o.path.display(), SERIAL = %serial,
                NOT_AFTER = %not_after, ACTION = "external-change",
                "{}: changed by someone else: was serial {was}, {what}", o.name
            );
            changed.push(o.name.clone());
        }
        if !changed.is_empty() {
            // Repairs what is missing or broken; a valid replacement is only re-scheduled.
            self.cycle(&changed, false, "external change").await;
        }
    }
}

/// Why a certificate is due, as far as the fleet spread is concerned.
pub(super) fn cause(r: &Reason) -> spread::Due {
    match r {
        Reason::Expired => spread::Due::Expired,
        Reason::Revoked(_) => spread::Due::Reissue,
        Reason::Due(deadline) => spread::Due::Deadline(*deadline),
        Reason::Missing => spread::Due::Missing,
        _ => spread::Due::Other,
    }
}
