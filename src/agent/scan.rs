//! Read-only rescans: what is on disk now, compared with what the agent last saw.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::{fingerprint, Agent};
use crate::config;
use crate::rotation::{self, plan::rfc3339, Outcome};
use crate::service::actions;

impl Agent {
    /// A dry run over everything: the next deadlines, and what is on disk now (so that the
    /// events of our own writes compare equal).
    pub(super) async fn rescan(&mut self) -> Vec<Outcome> {
        let scan = self.rotate(&[], false, true).await;
        let now = OffsetDateTime::now_utc();
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
            c.next = match &o.action {
                rotation::Action::Kept { next } => Some(*next),
                rotation::Action::ClockBehind { not_before } => Some(*not_before),
                // Still due: a failing one waits for its retry; anything else at once.
                rotation::Action::WouldRotate(_) if c.failures == 0 => Some(now),
                _ => None,
            };
        }
        scan
    }

    /// Something changed in a watched directory: rescan and compare with what the agent
    /// last saw. Its own writes compare equal and do nothing.
    pub(super) async fn on_fs_events(&mut self, paths: Vec<PathBuf>) {
        if paths.iter().any(|p| p == &self.config_file) {
            match config::load(Some(&self.config_file), &self.root) {
                Ok(c) => match actions::validate_config(&c) {
                    Ok(()) => {
                        tracing::info!("{}: changed; reloaded", self.config_file.display());
                        if c.metrics != self.config.metrics {
                            tracing::warn!("metrics: a changed listen or textfile takes effect when the agent restarts");
                        }
                        self.config = c;
                        self.sync_names();
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
