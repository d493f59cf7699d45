//! The daemon's event loop: one `select!` over signals, inotify, the control socket, the
//! watchdog tick and the next wake-up.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::schedule::{self, Gate};
use super::socket::serve_connection;
use super::{watch_dirs, Agent, ControlMsg, TaskMsg};
use crate::exit::{ExitCode, Fatal};
use crate::rotation::{self, plan::rfc3339};
use crate::service::control;
use crate::service::notify as sd;

/// Await `f`, sending WATCHDOG=1 meanwhile on the loop's own watchdog tick (one cadence,
/// not one more timer per call): a rotation is the loop at work, not a stall.
async fn pinging<F: Future>(tick: &mut Option<tokio::time::Interval>, f: F) -> F::Output {
    let Some(tick) = tick.as_mut() else {
        return f.await;
    };
    tokio::pin!(f);
    loop {
        tokio::select! {
            out = &mut f => return out,
            _ = tick.tick() => sd::watchdog(),
        }
    }
}

impl Agent {
    pub(super) async fn main(&mut self) -> Result<ExitCode, Fatal> {
        let mut term = signal(SignalKind::terminate()).map_err(Fatal::failure)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Fatal::failure)?;
        let mut hup = signal(SignalKind::hangup()).map_err(Fatal::failure)?;
        let listener = control::bind(&self.root).map_err(|e| Fatal::failure(anyhow::anyhow!(e)))?;
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<ControlMsg>();

        // inotify (notify's RecommendedWatcher: a thread blocked in read(2), no polling);
        // bursts are gathered here with a tokio timer, not with notify-debouncer-full,
        // whose thread wakes every tick forever.
        let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let mut watcher =
            ::notify::recommended_watcher(move |res: ::notify::Result<::notify::Event>| {
                match res {
                    // Opening and reading (ours: every rescan reads every file) change nothing.
                    Ok(e) if matches!(e.kind, ::notify::EventKind::Access(_)) => {}
                    Ok(e) => {
                        let _ = fs_tx.send(e.paths);
                    }
                    // An overflowed queue or a watch error: rescan everything.
                    Err(_) => {
                        let _ = fs_tx.send(vec![]);
                    }
                }
            })
            .map_err(|e| Fatal::failure(anyhow::anyhow!("inotify: {e}")))?;
        let mut watched: Vec<PathBuf> = vec![];
        self.add_watches(&mut watcher, &mut watched);
        // Before the first reconcile, which may wait on a CSR: that wait is worth seeing.
        self.endpoints = crate::metrics::endpoints::Endpoints::start(
            &self.metrics,
            &self.root,
            &self.config.metrics,
        )
        .await;
        self.events =
            crate::events::Recorder::start(&self.root, &self.config, self.metrics.clone());

        let mut wd_tick = self.watchdog.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut task_rx = self.tasks.1.take().expect("the loop runs once");
        // Reconcile, then READY=1: at once when the kubelet's client certificate is not
        // being requested, else when its task reports (a serving CSR never holds it up).
        sd::status("reconciling");
        // The cluster's RenewRevocation entries before the first rotation, when they can be
        // read at once (each request has a timeout; the loop is not running yet). Later
        // listings are tasks (`revocation.pollInterval`).
        self.spawn_revocation_listing();
        while self.listing {
            match pinging(&mut wd_tick, task_rx.recv()).await {
                Some(TaskMsg::Revocations(r)) => self.on_revocations(r).await,
                Some(other) => self.on_task(other).await,
                None => break,
            }
        }
        // Look before renewing: a certificate overdue with the whole fleet (the nodes were
        // off) waits its turn instead of renewing at start-up (`lifecycle::spread`).
        self.rescan().await;
        pinging(&mut wd_tick, self.cycle(&[], false, "start-up")).await;
        let mut ready = false;
        if !self.client_in_flight() {
            self.announce_ready();
            ready = true;
        }

        // CARotation objects (caRotation.cluster): the first poll right after start-up.
        let mut ca_poll = self.config.ca_rotation.poll_interval.0;
        let mut ca_tick = tokio::time::interval(ca_poll);
        ca_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // RenewRevocation objects (revocation.cluster): listed again every pollInterval.
        let mut rev_poll = self.config.revocation.poll_interval.0;
        let mut rev_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + rev_poll, rev_poll);
        rev_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hup_gate = Gate::hup();
        let mut fs_gate = Gate::fs();
        let mut fs_paths: Vec<PathBuf> = vec![];
        // Wall and monotonic clocks at the last wake: a difference between their advances
        // is a clock step, after which every deadline is planned again.
        let mut last_wall = OffsetDateTime::now_utc();
        let mut last_mono = std::time::Instant::now();
        loop {
            #[cfg(feature = "failpoints")]
            if crate::store::failpoint::action(super::STALL_POINT).as_deref() == Some("stall") {
                tracing::warn!("failpoint {}: stalling the main loop", super::STALL_POINT);
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            let now = OffsetDateTime::now_utc();
            if let Some(jump) = schedule::clock_jump(last_wall, now, last_mono.elapsed()) {
                tracing::warn!(
                    JUMP_SECONDS = jump.whole_seconds(),
                    "the wall clock jumped by {jump} since the last wake: re-planning every certificate"
                );
                self.resync_at = now + schedule::RESYNC;
                pinging(&mut wd_tick, self.cycle(&[], false, "clock jump")).await;
            }
            last_wall = OffsetDateTime::now_utc();
            last_mono = std::time::Instant::now();
            let now = last_wall;
            let (at, why) = self.next_wake();
            let nap = schedule::sleep_for(now, at);
            let hup_at = hup_gate.fire_at();
            // While a CA rotation phase runs, its own writes are not someone else's change:
            // the events wait for its end (then a rescan has seen the new files).
            let fs_at = fs_gate.fire_at().filter(|_| !self.ca_busy());
            let far = tokio::time::Instant::now() + Duration::from_secs(86400);
            tokio::select! {
                biased;
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = async { wd_tick.as_mut().unwrap().tick().await }, if wd_tick.is_some() => {
                    sd::watchdog();
                }
                _ = hup.recv() => hup_gate.signal(tokio::time::Instant::now()),
                _ = tokio::time::sleep_until(hup_at.unwrap_or(far)), if hup_at.is_some() => {
                    hup_gate.take();
                    sd::reloading("SIGHUP: rotating every certificate");
                    tracing::info!("SIGHUP: forced rotation of every certificate");
                    // An operator's nudge: the cluster's entries are read again too.
                    self.spawn_revocation_listing();
                    let all = rotation::managed_names(&self.config);
                    pinging(&mut wd_tick, self.cycle(&all, true, "SIGHUP")).await;
                    sd::ready(&self.status_line());
                }
                Some(paths) = fs_rx.recv() => {
                    fs_paths.extend(paths);
                    fs_gate.signal(tokio::time::Instant::now());
                }
                _ = tokio::time::sleep_until(fs_at.unwrap_or(far)), if fs_at.is_some() => {
                    fs_gate.take();
                    let paths = std::mem::take(&mut fs_paths);
                    pinging(&mut wd_tick, self.on_fs_events(paths)).await;
                    self.add_watches(&mut watcher, &mut watched);
                }
                Ok((stream, _)) = listener.accept() => {
                    let tx = ctl_tx.clone();
                    tokio::spawn(serve_connection(stream, tx));
                }
                Some(msg) = task_rx.recv() => {
                    pinging(&mut wd_tick, self.on_task(msg)).await;
                    if !ready && !self.client_in_flight() {
                        self.announce_ready();
                        ready = true;
                    }
                }
                Some((req, reply)) = ctl_rx.recv() => {
                    pinging(&mut wd_tick, self.on_control(req, reply)).await;
                }
                _ = ca_tick.tick(), if self.config.ca_rotation.cluster => {
                    self.spawn_ca_rotations();
                    // A reload may have changed the interval.
                    if ca_poll != self.config.ca_rotation.poll_interval.0 {
                        ca_poll = self.config.ca_rotation.poll_interval.0;
                        ca_tick = tokio::time::interval_at(tokio::time::Instant::now() + ca_poll, ca_poll);
                        ca_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                _ = rev_tick.tick(), if self.config.revocation.cluster => {
                    self.spawn_revocation_listing();
                    if rev_poll != self.config.revocation.poll_interval.0 {
                        rev_poll = self.config.revocation.poll_interval.0;
                        rev_tick = tokio::time::interval_at(tokio::time::Instant::now() + rev_poll, rev_poll);
                        rev_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                _ = tokio::time::sleep(nap) => {
                    let now = OffsetDateTime::now_utc();
                    tracing::debug!("woke for {why:?} (due {})", rfc3339(at));
                    if now >= at {
                        pinging(&mut wd_tick, self.on_wake(why)).await;
                    }
                }
            }
        }
        sd::stopping();
        if self.ca_busy() {
            // Every phase is resumable from any point (`tests/rotate_ca_crash.rs`).
            tracing::info!(
                "stopping during a CA rotation phase: it resumes when the daemon starts again"
            );
        }
        self.answer_parked_on_exit();
        self.save_state();
        control::unbind(&self.root);
        Ok(ExitCode::Ok)
    }

    pub(super) fn add_watches(
        &self,
        watcher: &mut ::notify::RecommendedWatcher,
        watched: &mut Vec<PathBuf>,
    ) {
        use ::notify::Watcher;
        for d in watch_dirs(&self.root, &self.config, &self.config_file) {
            if watched.contains(&d) || !d.is_dir() {
                continue;
            }
            match watcher.watch(&d, ::notify::RecursiveMode::NonRecursive) {
                Ok(()) => watched.push(d),
                Err(e) => tracing::warn!("cannot watch {}: {e}", d.display()),
            }
        }
    }
}

impl Agent {
    /// The wake-up the loop slept toward has come (`next_wake`). Returns the outcomes of
    /// the cycle it ran, if any.
    pub(super) async fn on_wake(&mut self, why: schedule::WakeFor) -> Vec<rotation::Outcome> {
        match why {
            schedule::WakeFor::Actions => {
                self.retry_actions();
                vec![]
            }
            schedule::WakeFor::Resync => {
                self.resync_at = self.clock.now() + schedule::RESYNC;
                self.cycle(&[], false, "resync").await
            }
            schedule::WakeFor::Deadline(_) | schedule::WakeFor::Retry(_) => {
                self.cycle(&[], false, "deadline").await
            }
        }
    }

    pub(super) fn client_in_flight(&self) -> bool {
        self.certs.iter().any(|c| {
            c.name == crate::pki::csr::KubeletCert::Client.name() && c.life.phase.in_flight()
        })
    }

    fn announce_ready(&self) {
        let status = self.status_line();
        tracing::info!("ready: {status}");
        sd::ready(&status);
    }
}
