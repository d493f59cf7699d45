//! Executing a rotation cycle: rotate, log, run the dependents' actions (with retries),
//! rescan and save the state.

use super::tasks::ActionJob;
use super::{actions_of, schedule, Agent, Pending};
use crate::config::Action;
use crate::lifecycle::{spread, Event, Observation};
use crate::rotation::{self, plan::rfc3339, Outcome, Request, Worker};
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
        // The life-cycle logs these, once per change of state (`Agent::feed`).
        rotation::Action::Failed(_)
        | rotation::Action::ClockBehind { .. }
        | rotation::Action::Blocked { .. } => {}
        rotation::Action::Kept { .. } | rotation::Action::WouldRotate(_) => tracing::debug!(
            CERT_NAME = name, CERT_PATH = %path, SERIAL = %serial, NOT_AFTER = %not_after,
            ACTION = "kept", "{line}"
        ),
        rotation::Action::NotHere(_) => tracing::debug!(
            CERT_NAME = name, CERT_PATH = %path, ACTION = "absent", "{line}"
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
            now: self.clock.now(),
        };
        // CSR progress, revocation entries that failed to parse, CRLs written: worth seeing.
        let progress = |m: &str| tracing::info!("{m}");
        let cluster = self.cluster.as_ref();
        let rotation = rotation::rotate(
            &self.root,
            &self.config,
            names,
            req,
            cluster,
            Worker::Pool,
            &progress,
        );
        crate::kubelet::notice::observed(self.csr_sink(), rotation).await
    }

    /// Where a CSR's progress goes: the pending-CSR gauge and the Node's events.
    pub(super) fn csr_sink(&self) -> crate::kubelet::notice::Sink {
        use crate::kubelet::notice::CsrNotice;
        let (metrics, events) = (self.metrics.clone(), self.events.clone());
        let (root, saved) = (self.root.clone(), self.saved.clone());
        std::sync::Arc::new(move |n: CsrNotice| {
            match &n {
                CsrNotice::Created { csr, signer, since } => {
                    metrics.csr_pending(signer, csr, *since);
                    super::save_pending_csrs(&root, &saved, &metrics);
                }
                CsrNotice::Ended { signer } => {
                    metrics.csr_settled(signer);
                    super::save_pending_csrs(&root, &saved, &metrics);
                }
                _ => {}
            }
            events.csr(&n);
        })
    }

    /// Rotate (`names` empty: what is due), log, run the coalesced actions of what was
    /// rotated, rescan, save state.json, update STATUS. `forced` (SIGHUP, `rotate NAME`)
    /// ends any backoff; otherwise a certificate in backoff is left alone until its time.
    pub(super) async fn cycle(
        &mut self,
        names: &[String],
        forced: bool,
        why: &str,
    ) -> Vec<Outcome> {
        // A CA rotation phase writes the same files: this waits for it (`on_ca_synced`).
        if self.ca_busy() {
            let later = (names.to_vec(), forced, why.to_string());
            if !self.deferred.contains(&later) {
                tracing::info!("{why}: a CA rotation phase is running; rotating when it ends");
                self.deferred.push(later);
            }
            return vec![];
        }
        let now = self.clock.now();
        let pool: Vec<String> = if names.is_empty() {
            self.certs.iter().map(|c| c.name.clone()).collect()
        } else {
            names.to_vec()
        };
        let mut attempt = vec![];
        for n in pool {
            if forced {
                self.feed(&n, Event::Forced);
            }
            if self
                .certs
                .iter()
                .any(|c| c.name == n && c.life.may_start(now))
            {
                attempt.push(n);
            }
        }
        // Woken for a broken certificate's reminder, not its retry: the life-cycle says it
        // (and the next wake moves on; without this the loop would wake at once, again).
        let woke: Vec<String> = self
            .certs
            .iter()
            .filter(|c| !attempt.contains(&c.name) && c.retry_at.is_some_and(|t| t <= now))
            .map(|c| c.name.clone())
            .collect();
        for n in woke {
            self.feed(&n, Event::Woke);
        }
        // The kubelet's certificates wait on the API server (a serving CSR on a person):
        // a task does that and reports back; the loop goes on.
        let kubelet: Vec<String> = rotation::kubelet_kinds(&self.config)
            .iter()
            .map(|k| k.name().to_string())
            .collect();
        let (remote, local): (Vec<String>, Vec<String>) =
            attempt.into_iter().partition(|n| kubelet.contains(n));
        // A CSR task only when it is time (or forced), not for every cycle: its phase says
        // so, or the wake-up the last scan planned for it has come (a blocked one whose
        // revocation cutoff passes at a known instant).
        let remote: Vec<String> = remote
            .into_iter()
            .filter(|n| {
                forced
                    || self.certs.iter().any(|c| {
                        &c.name == n && (c.life.is_time(now) || c.next.is_some_and(|t| t <= now))
                    })
            })
            .collect();
        if !remote.is_empty() {
            self.spawn_kubelet(remote, forced, why);
        }
        // `rotate` takes an empty list as "all": nothing to try is nothing to call.
        let outcomes = if local.is_empty() {
            vec![]
        } else {
            self.rotate(&local, forced, false).await
        };
        self.apply(&outcomes, why).await;
        if outcomes
            .iter()
            .any(|o| matches!(o.action, rotation::Action::Rotated(_)))
        {
            crate::service::memory::give_back();
            crate::service::memory::release_code();
        }
        outcomes
    }

    /// What a cycle (or a task's report) does with outcomes: feed the life-cycle, log, run
    /// the coalesced actions of what was rotated, rescan, save state.json, update STATUS.
    pub(super) async fn apply(&mut self, outcomes: &[Outcome], why: &str) {
        let now = self.clock.now();
        self.metrics.observe(outcomes, false, now);
        self.events.outcomes(outcomes);
        let mut batches_changed = false;
        for o in outcomes {
            log_outcome(o, why);
            self.answered.insert(o.name.clone(), (o.line(), o.failed()));
            let reaches_api = self.reaches_api(&o.name);
            let Some(c) = self.cert_mut(&o.name) else {
                continue;
            };
            c.path = o.path.clone();
            let events = match &o.action {
                rotation::Action::Rotated(reason) => {
                    c.result = "rotated".into();
                    c.error = None;
                    c.last_rotated = Some(now);
                    let (serial, not_after) = o.after.clone().unwrap_or_else(|| ("-".into(), now));
                    // Issued in a batch: its first renewal is drawn wide (`spread`).
                    c.batch = (reaches_api
                        && spread::starts_batch(super::scan::cause(reason), now))
                    .then(|| serial.clone());
                    batches_changed = true;
                    vec![
                        Event::Started,
                        Event::Installed {
                            serial,
                            // The rescan below replaces it with the renewal deadline.
                            deadline: not_after,
                        },
                    ]
                }
                rotation::Action::Failed(f) => {
                    c.result = "failed".into();
                    c.error = Some(f.message.clone());
                    vec![
                        Event::Started,
                        Event::Failed {
                            class: f.class,
                            error: f.message.clone(),
                        },
                    ]
                }
                rotation::Action::ClockBehind { not_before } => {
                    c.result = "clockBehind".into();
                    c.error = None;
                    vec![Event::Observed(Observation::ClockBehind {
                        not_before: *not_before,
                    })]
                }
                // Not retried on a timer unless the replacement clears the entry by itself
                // at a known instant (the rescan below wakes it then); otherwise nothing
                // changes until the entry is fixed, and the revocations.d watch (or the
                // hourly resync) brings the next attempt.
                rotation::Action::Blocked { entry, .. } => {
                    c.result = "blocked".into();
                    c.error = Some(entry.clone());
                    vec![Event::Observed(Observation::Blocked {
                        reason: entry.clone(),
                    })]
                }
                // Not on this node: nothing to try until the node changes (a CA key or the
                // apiserver manifest appears), as for a blocked one.
                rotation::Action::NotHere(why) => {
                    c.result = "absent".into();
                    c.error = Some(why.clone());
                    vec![Event::Observed(Observation::Blocked {
                        reason: why.clone(),
                    })]
                }
                rotation::Action::Kept { next } => {
                    if c.result == "unknown" || c.result == "failed" {
                        c.result = "valid".into();
                    }
                    c.error = None;
                    vec![Event::Observed(Observation::Valid { deadline: *next })]
                }
                rotation::Action::WouldRotate(_) => vec![],
            };
            for e in events {
                self.feed(&o.name, e);
            }
        }
        if batches_changed {
            self.sync_batches();
        }
        // The node's client certificate is what the cluster's entries are read with.
        let client = crate::pki::csr::KubeletCert::Client.name();
        if outcomes
            .iter()
            .any(|o| o.name == client && matches!(o.action, rotation::Action::Rotated(_)))
        {
            self.spawn_revocation_listing();
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
            self.queue_action(action, certs, 0);
        }
        self.rescan().await;
        self.save_state();
        sd::status(&self.status_line());
    }

    /// Hand an action to the action worker (`tasks::spawn_action_worker`); its result
    /// comes back as `TaskMsg::ActionDone`.
    pub(super) fn queue_action(&mut self, action: Action, certs: Vec<String>, attempts: u32) {
        let job = ActionJob {
            action,
            certs,
            attempts,
        };
        if let Err(e) = self.action_jobs.send(job) {
            tracing::error!("internal error: the action worker is gone: {e}");
        }
    }

    /// An action ran: logged; a failure is retried with backoff.
    pub(super) fn action_done(&mut self, job: ActionJob, result: Result<String, String>) {
        let ActionJob {
            action,
            certs,
            attempts,
        } = job;
        let what = actions::describe(&action);
        let names = certs.join(",");
        match result {
            Ok(msg) => tracing::info!(
                CERT_NAME = %names, ACTION = %what, "{msg} (after rotating {names})"
            ),
            Err(e) => {
                let now = self.clock.now();
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
        self.save_state();
        sd::status(&self.status_line());
    }

    /// The actions whose retry is due, to the action worker.
    pub(super) fn retry_actions(&mut self) {
        let now = self.clock.now();
        let (due, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.retry_at <= now);
        self.pending = rest;
        for p in due {
            self.queue_action(p.action, p.certs, p.attempts);
        }
        self.save_state();
        sd::status(&self.status_line());
    }
}
