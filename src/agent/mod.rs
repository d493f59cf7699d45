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
//!
//! Layout: `event_loop` (the `select!`), `scan` (read-only rescans), `execute` (rotation
//! cycles and dependents' actions), `socket` (the control socket), `schedule` (pure timing).

pub mod edges;
mod event_loop;
mod execute;
mod scan;
pub mod schedule;
mod socket;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::config::{self, Action, Config};
use crate::exit::{ExitCode, Fatal};
use crate::lifecycle::{self, spread, Effect, Event, Level, Life, Phase};
use crate::paths::NodeRoot;
use crate::rotation::{self, plan::rfc3339, Outcome};
use crate::service::notify as sd;
use crate::service::{actions, control, state};

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
    /// Where it stands in its life-cycle (the pure state machine of `lifecycle`).
    life: Life,
    retry_at: Option<OffsetDateTime>,
    /// The serial this agent installed in a batch (`lifecycle::spread::starts_batch`): its
    /// first renewal is drawn wide. Kept in memory only: after a restart the usual draw
    /// applies (later, never unsafe).
    batch: Option<String>,
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

/// A task's report to the main loop.
enum TaskMsg {
    /// One certificate's outcome, and what triggered the run.
    Outcome(Box<Outcome>, String),
    /// A kubelet certificate's CSR exists (created, or resumed after a restart) and waits
    /// for approval and issuance.
    CsrPending { name: String, csr: String },
    /// That CSR is not approved automatically: someone must (a serving CSR).
    CsrNeedsApproval { name: String },
    /// An `onRotate` action ran.
    ActionDone {
        job: tasks::ActionJob,
        result: Result<String, String>,
    },
    /// The cluster's RenewRevocation entries were listed.
    Revocations(Result<crate::revocation::Loaded, String>),
    /// A poll of the CARotation objects ended (the attempts come back).
    CaSynced(
        crate::ca_rotation::cluster::Attempts,
        Result<Vec<String>, String>,
    ),
}

struct Agent {
    root: NodeRoot,
    config: Config,
    config_file: PathBuf,
    certs: Vec<Cert>,
    pending: Vec<Pending>,
    /// Where `onRotate` actions are sent (`tasks::spawn_action_worker`).
    action_jobs: mpsc::UnboundedSender<tasks::ActionJob>,
    clock: std::sync::Arc<dyn edges::Clock + Send + Sync>,
    api: std::rc::Rc<dyn edges::ApiEdge>,
    /// The cluster's RenewRevocation entries last read (`revocation.cluster`), given to
    /// every rotation; None until the first listing succeeds.
    cluster: Option<crate::revocation::Loaded>,
    /// Why the last listing failed (logged once per change).
    cluster_error: Option<String>,
    /// A listing task is under way.
    listing: bool,
    /// Per certificate, what the agent last saw on disk (serial, or `absent`): an event
    /// whose rescan gives the same is the agent's own write.
    seen: HashMap<String, String>,
    resync_at: OffsetDateTime,
    watchdog: Option<Duration>,
    metrics: crate::metrics::Hub,
    /// The metrics endpoint and textfile, moved when a reloaded config moves them.
    endpoints: crate::metrics::endpoints::Endpoints,
    events: crate::events::Recorder,
    /// The last state.json written (for the pending-CSR rewrite).
    saved: SavedState,
    /// Attempts at phases of CARotation objects that did not complete (their backoff).
    /// None while a poll's task holds them: a phase runs.
    ca_attempts: Option<crate::ca_rotation::cluster::Attempts>,
    /// Rotations asked for while a CA rotation phase ran: names, forced, why.
    deferred: Vec<(Vec<String>, bool, String)>,
    /// `rotate` requests waiting for kubelet renewals (`socket`).
    parked: Vec<socket::Parked>,
    /// Per certificate, the last outcome's line and whether it failed, or that its CSR
    /// needs a person (for `parked`).
    answered: HashMap<String, (String, bool)>,
    /// Reports of tasks (kubelet CSRs) to the main loop.
    tasks: (
        mpsc::UnboundedSender<TaskMsg>,
        Option<mpsc::UnboundedReceiver<TaskMsg>>,
    ),
}

/// `kube-cert-agent run`.
pub fn run(root: NodeRoot, config_path: Option<&Path>) -> Result<ExitCode, Fatal> {
    crate::service::memory::one_arena();
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
        // The blocking thread (rotations) stops after 10 s without work: what it freed is
        // given back then.
        .on_thread_stop(crate::service::memory::give_back)
        .build()
        .map_err(Fatal::failure)?;
    tracing::info!(
        "kube-cert-agent {} starting (root {}, logging to {sink:?})",
        env!("CARGO_PKG_VERSION"),
        root.root().display()
    );
    // A LocalSet: tasks (kubelet CSRs) run on this one thread beside the loop.
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut agent = Agent::new(root, config, config_file, edges::Edges::real());
        agent.main().await
    })
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

impl Agent {
    /// Within a `LocalSet`: the action worker is a local task.
    fn new(root: NodeRoot, config: Config, config_file: PathBuf, edges: edges::Edges) -> Agent {
        let metrics = crate::metrics::Hub::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let action_jobs = tasks::spawn_action_worker(root.clone(), edges.actions, tx.clone());
        let now = edges.clock.now();
        let mut a = Agent {
            root,
            config,
            config_file,
            certs: vec![],
            pending: vec![],
            action_jobs,
            clock: edges.clock,
            api: edges.api,
            cluster: None,
            cluster_error: None,
            listing: false,
            seen: HashMap::new(),
            resync_at: now + schedule::RESYNC,
            watchdog: sd::watchdog_interval(),
            metrics: metrics.clone(),
            endpoints: Default::default(),
            events: crate::events::Recorder::off(metrics),
            saved: SavedState::default(),
            ca_attempts: Some(Default::default()),
            deferred: vec![],
            parked: vec![],
            answered: HashMap::new(),
            tasks: (tx, Some(rx)),
        };
        a.sync_names();
        a
    }

    /// The certificate list follows the config (after a reload too).
    fn sync_names(&mut self) {
        self.metrics.set_config(&self.config);
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
                life: Life::default(),
                retry_at: None,
                batch: None,
            });
            c.actions = actions_of(&self.config, &n);
            self.certs.push(c);
        }
        self.sync_batches();
    }

    /// The rotation code learns which kubelet certificates were installed in a batch
    /// through the config it is given (for every rescan and task).
    fn sync_batches(&mut self) {
        let serials: Vec<String> = self.certs.iter().filter_map(|c| c.batch.clone()).collect();
        if let Some(k) = self.config.kubelet.as_mut() {
            k.first_renewal = serials;
        }
    }

    /// Whether a certificate's renewals go through the API server (the kubelet's).
    fn reaches_api(&self, name: &str) -> bool {
        rotation::kubelet_kinds(&self.config)
            .iter()
            .any(|k| k.name() == name)
    }

    fn cert_mut(&mut self, name: &str) -> Option<&mut Cert> {
        self.certs.iter_mut().find(|c| c.name == name)
    }

    /// Feed one life-cycle event to a certificate: the pure transition, then its journal
    /// lines. Returns whether the transition asks for a renewal.
    fn feed(&mut self, name: &str, event: Event) -> bool {
        let mut settings = self.config.renewal.backoff();
        let now = self.clock.now();
        let u = crate::kube::retry::random_unit();
        let window = self.config.renewal.fleet_window();
        let reaches_api = self.reaches_api(name);
        let Some(c) = self.cert_mut(name) else {
            return false;
        };
        // A fleet that failed against the API server together does not retry together.
        if reaches_api {
            settings.transient_cap =
                spread::retry_cap(window, settings.transient_cap, now, c.not_after);
        }
        let (life, effects) = lifecycle::transition(name, &c.life, &event, now, u, &settings);
        c.life = life;
        c.retry_at = match &c.life.phase {
            Phase::Backoff { .. } => c.life.wake_at(&settings),
            _ => None,
        };
        let path = c.path.display().to_string();
        let phase = c.life.phase.name();
        let error = c.life.phase.error().unwrap_or("").to_string();
        let mut issue = false;
        for e in effects {
            match e {
                Effect::Issue => issue = true,
                Effect::Journal(j) => match j.level {
                    Level::Info => tracing::info!(
                        CERT_NAME = name, CERT_PATH = %path, ACTION = phase, "{}", j.text
                    ),
                    Level::Warn => tracing::warn!(
                        CERT_NAME = name, CERT_PATH = %path, ACTION = phase, ERROR = %error, "{}", j.text
                    ),
                    Level::Error => tracing::error!(
                        CERT_NAME = name, CERT_PATH = %path, ACTION = phase, ERROR = %error, "{}", j.text
                    ),
                },
            }
        }
        issue
    }

    fn next_wake(&self) -> (OffsetDateTime, schedule::WakeFor) {
        // While a CA rotation phase runs, certificates wait for its end (`on_ca_synced`
        // cycles then): a deadline passed meanwhile is no reason to wake, or the loop
        // would wake at once, again, for a cycle that can only be deferred.
        let certs = || self.certs.iter().filter(|_| !self.ca_busy());
        let deadlines: Vec<(String, OffsetDateTime)> = certs()
            .filter_map(|c| c.next.map(|n| (c.name.clone(), n)))
            .collect();
        let retries: Vec<(String, OffsetDateTime)> = certs()
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
            .filter(|c| c.life.phase.broken())
            .map(|c| c.name.clone())
            .collect();
        schedule::status_line(self.certs.len(), next, &failing, self.clock.now())
    }

    fn save_state(&self) {
        let facts = self.metrics.facts();
        let fact = |name: &str| facts.iter().find(|f| f.name == name);
        let s = state::State {
            pid: std::process::id(),
            updated: rfc3339(self.clock.now()),
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
                    deadline: fact(&c.name).and_then(|f| f.deadline).map(rfc3339),
                    last_success: fact(&c.name).and_then(|f| f.last_success).map(rfc3339),
                    phase: c.life.phase.name().to_string(),
                    csr: match &c.life.phase {
                        Phase::AwaitingApproval { csr, .. } => Some(csr.clone()),
                        _ => None,
                    },
                    csr_since: match &c.life.phase {
                        Phase::AwaitingApproval { csr, since } => {
                            Some(rfc3339(self.csr_since(csr, *since)))
                        }
                        _ => None,
                    },
                })
                .collect(),
            pending_csrs: pending_csrs(&self.metrics),
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
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }
}

fn pending_csrs(hub: &crate::metrics::Hub) -> Vec<state::PendingCsr> {
    hub.pending_csrs()
        .into_iter()
        .map(|p| state::PendingCsr {
            name: p.name,
            signer: p.signer,
            since: rfc3339(p.since),
        })
        .collect()
}

/// state.json again with the CSRs waited on now (a CSR wait happens inside a cycle, before
/// the cycle saves the state): `status` shows them while the daemon is busy.
fn save_pending_csrs(root: &NodeRoot, saved: &SavedState, hub: &crate::metrics::Hub) {
    let mut saved = saved.lock().unwrap_or_else(|p| p.into_inner());
    // Before the first cycle's end (kubelet bootstrap): a state with only the CSRs.
    let s = saved.get_or_insert_with(|| state::State {
        pid: std::process::id(),
        ..Default::default()
    });
    s.pending_csrs = pending_csrs(hub);
    s.updated = rfc3339(OffsetDateTime::now_utc());
    if let Err(e) = state::write(root, s) {
        tracing::error!(ERROR = %e, "cannot save state: {e}");
    }
}

type SavedState = std::sync::Arc<std::sync::Mutex<Option<state::State>>>;
