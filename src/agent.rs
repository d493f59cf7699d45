//! `kube-cert-agent run`: the daemon loop.
//!
//! Start-up: load and validate the config (a config error exits 3, which the unit's
//! `RestartPreventExitStatus=3` does not restart), reconcile (rotate what is due, missing,
//! broken or a dangling `-current` link), then READY=1 with a STATUS= line.
//!
//! Then one `select!` on: SIGTERM/SIGINT, SIGHUP (gathered: forced rotation of everything,
//! RELOADING=1 ... READY=1), inotify events (gathered: rescan and compare with what the
//! agent last wrote; repair or re-schedule what someone else changed), the control socket,
//! the watchdog tick, and one sleep toward the earliest of the deadlines, retries and the
//! hourly safety resync. Sleeps are capped at [`schedule::MAX_SLEEP`] and the wall clock is
//! re-read on every wake (see `schedule`). A rotation in progress is awaited inside a
//! branch, so a SIGTERM waits for it to finish: a swap is never cut in half. The watchdog is
//! pinged from this same loop (also while a rotation runs), so a stalled loop stops the
//! pings and systemd kills it.

pub mod schedule;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::config::{self, Action, Config};
use crate::exit::{ExitCode, Fatal};
use crate::paths::NodeRoot;
use crate::rotation::{self, plan::rfc3339, Outcome, Request};
use crate::service::notify as sd;
use crate::service::{actions, control, state};
use schedule::Gate;

/// Test-only failpoint (feature `failpoints`, env `KCA_FAILPOINTS=agent::stall-main-loop=stall`):
/// the main loop blocks forever, as a deadlock would; the watchdog must notice.
pub const STALL_POINT: &str = "agent::stall-main-loop";

/// The daemon's view of one managed certificate.
#[derive(Debug, Clone)]
struct Cert {
    name: String,
    path: PathBuf,
    actions: Vec<Action>,
    result: String,
    error: Option<String>,
    serial: Option<String>,
    not_after: Option<OffsetDateTime>,
    next: Option<OffsetDateTime>,
    last_rotated: Option<OffsetDateTime>,
    failures: u32,
    retry_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
struct Pending {
    action: Action,
    certs: Vec<String>,
    error: String,
    attempts: u32,
    retry_at: OffsetDateTime,
}

type ControlMsg = (control::Request, oneshot::Sender<control::Reply>);

struct Agent {
    root: NodeRoot,
    config: Config,
    config_file: PathBuf,
    certs: Vec<Cert>,
    pending: Vec<Pending>,
    runner: actions::Runner,
    /// Per certificate, what the agent last saw on disk (serial, or `absent`): an event
    /// whose rescan gives the same is the agent's own write.
    seen: HashMap<String, String>,
    resync_at: OffsetDateTime,
    watchdog: Option<Duration>,
}

/// `kube-cert-agent run`.
pub fn run(root: NodeRoot, config_path: Option<&Path>) -> Result<ExitCode, Fatal> {
    let sink = crate::service::logging::init();
    let config = config::load(config_path, &root).map_err(Fatal::config)?;
    actions::validate_config(&config).map_err(|e| Fatal::config(anyhow::anyhow!(e)))?;
    if rotation::managed_names(&config).is_empty() {
        return Err(Fatal::config(anyhow::anyhow!(
            "the config declares no certificates, kubeconfigs or kubelet section: nothing to keep valid"
        )));
    }
    let config_file = config_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.host_path(Path::new(config::DEFAULT_CONFIG_PATH)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::failure)?;
    tracing::info!(
        "kube-cert-agent {} starting (root {}, logging to {sink:?})",
        env!("CARGO_PKG_VERSION"),
        root.root().display()
    );
    runtime.block_on(async move {
        let mut agent = Agent::new(root, config, config_file);
        agent.main().await
    })
}

/// Await `f`, sending WATCHDOG=1 meanwhile: a long rotation (a CSR waiting for approval)
/// is the loop at work, not a stall.
async fn pinging<F: Future>(watchdog: Option<Duration>, f: F) -> F::Output {
    let Some(every) = watchdog else {
        return f.await;
    };
    tokio::pin!(f);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut f => return out,
            _ = tick.tick() => sd::watchdog(),
        }
    }
}

fn fingerprint(o: &Outcome) -> String {
    match (&o.after, &o.before) {
        (Some((s, _)), _) | (None, Some((s, _))) => s.clone(),
        _ => "absent".to_string(),
    }
}

/// Run the onRotate actions of what `outcomes` rotated, each once (coalesced), without
/// retries: for `rotate` and `repair` run from the command line with no daemon. Returns
/// one line per action and whether all succeeded.
pub async fn run_actions_once(
    root: &NodeRoot,
    config: &Config,
    outcomes: &[Outcome],
) -> (Vec<String>, bool) {
    let rotated: Vec<(String, Vec<Action>)> = outcomes
        .iter()
        .filter(|o| matches!(o.action, rotation::Action::Rotated(_)))
        .map(|o| (o.name.clone(), actions_of(config, &o.name)))
        .collect();
    let plan = schedule::coalesce(rotated.iter().map(|(n, a)| (n.as_str(), a.as_slice())));
    let mut runner = actions::Runner::default();
    let (mut lines, mut ok) = (Vec::new(), true);
    for (action, certs) in plan {
        let names = certs.join(", ");
        match runner.run(root, &action, &certs).await {
            Ok(msg) => lines.push(format!("{msg} (after rotating {names})")),
            Err(e) => {
                ok = false;
                lines.push(format!(
                    "{} (after rotating {names}) FAILED: {e}",
                    actions::describe(&action)
                ));
            }
        }
    }
    (lines, ok)
}

fn actions_of(config: &Config, name: &str) -> Vec<Action> {
    if let Some(c) = config.certificates.iter().find(|c| c.name == name) {
        return c.on_rotate.clone();
    }
    if let Some(k) = config.kubeconfigs.iter().find(|k| k.name == name) {
        return k.on_rotate.clone();
    }
    match &config.kubelet {
        Some(k) if name.starts_with("kubelet-") => k.on_rotate.clone(),
        _ => vec![],
    }
}

fn watch_dirs(root: &NodeRoot, config: &Config, config_file: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config
        .watch_directories()
        .iter()
        .map(|d| root.host_path(d))
        .collect();
    for c in &config.certificates {
        for p in [&c.cert, &c.key] {
            if let Some(d) = p.parent() {
                dirs.push(root.host_path(d));
            }
        }
    }
    for k in &config.kubeconfigs {
        if let Some(d) = k.path.parent() {
            dirs.push(root.host_path(d));
        }
    }
    dirs.push(root.host_path(&config.revocation.directory));
    if let Some(d) = config_file.parent() {
        dirs.push(d.to_path_buf());
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

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
    fn new(root: NodeRoot, config: Config, config_file: PathBuf) -> Agent {
        let mut a = Agent {
            root,
            config,
            config_file,
            certs: vec![],
            pending: vec![],
            runner: actions::Runner::default(),
            seen: HashMap::new(),
            resync_at: OffsetDateTime::now_utc() + schedule::RESYNC,
            watchdog: sd::watchdog_interval(),
        };
        a.sync_names();
        a
    }

    /// The certificate list follows the config (after a reload too).
    fn sync_names(&mut self) {
        let names = rotation::managed_names(&self.config);
        let old = std::mem::take(&mut self.certs);
        for n in names {
            let mut c = old.iter().find(|c| c.name == n).cloned().unwrap_or(Cert {
                name: n.clone(),
                path: PathBuf::new(),
                actions: vec![],
                result: "unknown".into(),
                error: None,
                serial: None,
                not_after: None,
                next: None,
                last_rotated: None,
                failures: 0,
                retry_at: None,
            });
            c.actions = actions_of(&self.config, &n);
            self.certs.push(c);
        }
    }

    fn cert_mut(&mut self, name: &str) -> Option<&mut Cert> {
        self.certs.iter_mut().find(|c| c.name == name)
    }

    async fn main(&mut self) -> Result<ExitCode, Fatal> {
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

        // Reconcile, then READY=1.
        sd::status("reconciling");
        pinging(self.watchdog, self.cycle(&[], false, "start-up")).await;
        let status = self.status_line();
        tracing::info!("ready: {status}");
        sd::ready(&status);

        let mut hup_gate = Gate::hup();
        let mut fs_gate = Gate::fs();
        let mut fs_paths: Vec<PathBuf> = vec![];
        let mut wd_tick = self.watchdog.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            #[cfg(feature = "failpoints")]
            if crate::store::failpoint::action(STALL_POINT).as_deref() == Some("stall") {
                tracing::warn!("failpoint {STALL_POINT}: stalling the main loop");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            let now = OffsetDateTime::now_utc();
            let (at, why) = self.next_wake();
            let nap = schedule::sleep_for(now, at);
            let hup_at = hup_gate.fire_at();
            let fs_at = fs_gate.fire_at();
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
                    let all = rotation::managed_names(&self.config);
                    pinging(self.watchdog, self.cycle(&all, true, "SIGHUP")).await;
                    sd::ready(&self.status_line());
                }
                Some(paths) = fs_rx.recv() => {
                    fs_paths.extend(paths);
                    fs_gate.signal(tokio::time::Instant::now());
                }
                _ = tokio::time::sleep_until(fs_at.unwrap_or(far)), if fs_at.is_some() => {
                    fs_gate.take();
                    let paths = std::mem::take(&mut fs_paths);
                    pinging(self.watchdog, self.on_fs_events(paths)).await;
                    self.add_watches(&mut watcher, &mut watched);
                }
                Ok((stream, _)) = listener.accept() => {
                    let tx = ctl_tx.clone();
                    tokio::spawn(serve_connection(stream, tx));
                }
                Some((req, reply)) = ctl_rx.recv() => {
                    let r = pinging(self.watchdog, self.on_control(req)).await;
                    let _ = reply.send(r);
                }
                _ = tokio::time::sleep(nap) => {
                    let now = OffsetDateTime::now_utc();
                    tracing::debug!("woke for {why:?} (due {})", rfc3339(at));
                    if now >= at {
                        match why {
                            schedule::WakeFor::Actions => {
                                pinging(self.watchdog, self.retry_actions()).await;
                            }
                            schedule::WakeFor::Resync => {
                                self.resync_at = now + schedule::RESYNC;
                                pinging(self.watchdog, self.cycle(&[], false, "resync")).await;
                            }
                            schedule::WakeFor::Deadline(_) | schedule::WakeFor::Retry(_) => {
                                pinging(self.watchdog, self.cycle(&[], false, "deadline")).await;
                            }
                        }
                    }
                }
            }
        }
        sd::stopping();
        self.save_state();
        control::unbind(&self.root);
        Ok(ExitCode::Ok)
    }

    fn add_watches(&self, watcher: &mut ::notify::RecommendedWatcher, watched: &mut Vec<PathBuf>) {
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

    fn next_wake(&self) -> (OffsetDateTime, schedule::WakeFor) {
        let deadlines: Vec<(String, OffsetDateTime)> = self
            .certs
            .iter()
            .filter_map(|c| c.next.map(|n| (c.name.clone(), n)))
            .collect();
        let retries: Vec<(String, OffsetDateTime)> = self
            .certs
            .iter()
            .filter_map(|c| c.retry_at.map(|n| (c.name.clone(), n)))
            .collect();
        let actions = self.pending.iter().map(|p| p.retry_at).min();
        schedule::next_wake(&deadlines, &retries, actions, self.resync_at)
    }

    fn status_line(&self) -> String {
        let next = self
            .certs
            .iter()
            .filter_map(|c| c.next.map(|n| (c.name.as_str(), n)))
            .min_by_key(|(_, n)| *n);
        let failing: Vec<String> = self
            .certs
            .iter()
            .filter(|c| c.failures > 0)
            .map(|c| c.name.clone())
            .collect();
        schedule::status_line(self.certs.len(), next, &failing, OffsetDateTime::now_utc())
    }

    async fn rotate(&self, names: &[String], forced: bool, dry_run: bool) -> Vec<Outcome> {
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
    async fn cycle(&mut self, names: &[String], forced: bool, why: &str) -> Vec<Outcome> {
        let outcomes = self.rotate(names, forced, false).await;
        let now = OffsetDateTime::now_utc();
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

    async fn run_action(&mut self, action: Action, certs: Vec<String>, attempts: u32) {
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

    async fn retry_actions(&mut self) {
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

    /// A dry run over everything: the next deadlines, and what is on disk now (so that the
    /// events of our own writes compare equal).
    async fn rescan(&mut self) -> Vec<Outcome> {
        let scan = self.rotate(&[], false, true).await;
        let now = OffsetDateTime::now_utc();
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
    async fn on_fs_events(&mut self, paths: Vec<PathBuf>) {
        if paths.iter().any(|p| p == &self.config_file) {
            match config::load(Some(&self.config_file), &self.root) {
                Ok(c) => match actions::validate_config(&c) {
                    Ok(()) => {
                        tracing::info!("{}: changed; reloaded", self.config_file.display());
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

    async fn on_control(&mut self, req: control::Request) -> control::Reply {
        let control::Request::Rotate {
            all,
            dry_run,
            names,
        } = req
        else {
            return control::Reply {
                lines: vec![format!("pong {}", std::process::id())],
                code: 0,
            };
        };
        let known = rotation::managed_names(&self.config);
        if let Some(u) = names.iter().find(|n| !known.contains(n)) {
            return control::Reply {
                lines: vec![format!(
                    "error: no certificate named {u:?} in the daemon's config"
                )],
                code: ExitCode::Config as i32,
            };
        }
        let forced = all || !names.is_empty();
        let outcomes = if dry_run {
            self.rotate(&names, forced, true).await
        } else {
            let names = if all { known } else { names };
            self.cycle(&names, forced, "rotate command").await
        };
        control::Reply {
            lines: outcomes.iter().map(Outcome::line).collect(),
            code: if outcomes.iter().any(Outcome::failed) {
                ExitCode::Failure as i32
            } else {
                ExitCode::Ok as i32
            },
        }
    }

    fn save_state(&self) {
        let s = state::State {
            pid: std::process::id(),
            updated: rfc3339(OffsetDateTime::now_utc()),
            certificates: self
                .certs
                .iter()
                .map(|c| state::CertState {
                    name: c.name.clone(),
                    path: c.path.display().to_string(),
                    last_result: c.result.clone(),
                    error: c.error.clone(),
                    serial: c.serial.clone(),
                    not_after: c.not_after.map(rfc3339),
                    next_deadline: c.next.map(rfc3339),
                    last_rotated: c.last_rotated.map(rfc3339),
                    retry_at: c.retry_at.map(rfc3339),
                })
                .collect(),
            pending_actions: self
                .pending
                .iter()
                .map(|p| state::PendingAction {
                    action: actions::describe(&p.action),
                    certificates: p.certs.clone(),
                    error: p.error.clone(),
                    attempts: p.attempts,
                    retry_at: rfc3339(p.retry_at),
                })
                .collect(),
        };
        if let Err(e) = state::write(&self.root, &s) {
            tracing::error!(ERROR = %e, "cannot save state: {e}");
        }
    }
}

/// One control connection: read the request line (bounded), hand it to the loop, write
/// the reply. `ping` is answered here.
async fn serve_connection(stream: tokio::net::UnixStream, tx: mpsc::UnboundedSender<ControlMsg>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(r.take(4096));
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    let reply = match read {
        Ok(Ok(_)) => match control::Request::parse(&line) {
            Ok(req) => {
                let (rtx, rrx) = oneshot::channel();
                if tx.send((req, rtx)).is_err() {
                    return;
                }
                match rrx.await {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
            Err(e) => control::Reply {
                lines: vec![format!("error: {e}")],
                code: ExitCode::Config as i32,
            },
        },
        _ => return,
    };
    let mut text = String::new();
    for l in reply.lines {
        text.push_str(&l);
        text.push('\n');
    }
    text.push_str(&format!("exit {}\n", reply.code));
    let _ = w.write_all(text.as_bytes()).await;
}

use tokio::io::AsyncReadExt as _;
