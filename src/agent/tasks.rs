//! Work that waits on something outside (the API server, a person approving a serving CSR)
//! runs as a local task and reports back to the main loop over a channel, so the loop keeps
//! answering signals, inotify and the control socket, and stays the only watchdog pinger.

use tokio::sync::mpsc;

use super::edges::ActionEdge;
use super::{Agent, TaskMsg};
use crate::config::Action;
use crate::kubelet::notice::CsrNotice;
use crate::lifecycle::Event;
use crate::paths::NodeRoot;
use crate::pki::csr::KubeletCert;
use crate::rotation::{self, Request, Worker};

/// One run of an `onRotate` action, for the certificates it follows.
#[derive(Debug)]
pub(super) struct ActionJob {
    pub action: Action,
    pub certs: Vec<String>,
    /// Earlier failed attempts (the backoff).
    pub attempts: u32,
}

/// The task that runs `onRotate` actions, one after the other in the order given (a
/// restart that D-Bus takes long to answer never holds up the loop).
pub(super) fn spawn_action_worker(
    root: NodeRoot,
    mut edge: Box<dyn ActionEdge>,
    tx: mpsc::UnboundedSender<TaskMsg>,
) -> mpsc::UnboundedSender<ActionJob> {
    let (jobs, mut rx) = mpsc::unbounded_channel::<ActionJob>();
    tokio::task::spawn_local(async move {
        while let Some(job) = rx.recv().await {
            let result = edge.run(&root, &job.action, &job.certs).await;
            if tx.send(TaskMsg::ActionDone { job, result }).is_err() {
                return;
            }
        }
    });
    jobs
}

impl Agent {
    /// Renew the kubelet certificates `names` (client first: a serving CSR may need it) in
    /// a task. Each is marked issuing, so no second CSR is started for it meanwhile.
    pub(super) fn spawn_kubelet(&mut self, names: Vec<String>, forced: bool, why: &str) {
        for n in &names {
            self.feed(n, Event::Started);
        }
        // The CSR's progress reaches the metrics, state.json and the Node's events, and
        // the loop (the life-cycle's awaitingApproval).
        let sink = {
            let (base, tx) = (self.csr_sink(), self.tasks.0.clone());
            let sink: crate::kubelet::notice::Sink = std::sync::Arc::new(move |n: CsrNotice| {
                let name_of = |signer: &str| {
                    [KubeletCert::Client, KubeletCert::Serving]
                        .into_iter()
                        .find(|k| k.signer() == signer)
                        .map(|k| k.name().to_string())
                };
                let msg = match &n {
                    CsrNotice::Created { csr, signer, .. } => {
                        name_of(signer).map(|name| TaskMsg::CsrPending {
                            name,
                            csr: csr.clone(),
                        })
                    }
                    CsrNotice::AwaitingApproval { signer, .. } => {
                        name_of(signer).map(|name| TaskMsg::CsrNeedsApproval { name })
                    }
                    _ => None,
                };
                if let Some(m) = msg {
                    let _ = tx.send(m);
                }
                base(n);
            });
            sink
        };
        let (root, config, tx, why) = (
            self.root.clone(),
            self.config.clone(),
            self.tasks.0.clone(),
            why.to_string(),
        );
        let (clock, cluster) = (self.clock.clone(), self.cluster.clone());
        tokio::task::spawn_local(async move {
            for name in names {
                let req = Request {
                    forced,
                    dry_run: false,
                    repair_only: false,
                    now: clock.now(),
                };
                // CSR progress is worth seeing as it happens.
                let progress = |m: &str| tracing::info!("{m}");
                let one = std::slice::from_ref(&name);
                let (cluster, worker) = (cluster.as_ref(), Worker::Pool);
                let rotation =
                    rotation::rotate(&root, &config, one, req, cluster, worker, &progress);
                let outcomes = crate::kubelet::notice::observed(sink.clone(), rotation).await;
                for o in outcomes {
                    if tx.send(TaskMsg::Outcome(Box::new(o), why.clone())).is_err() {
                        return;
                    }
                }
            }
        });
    }
}

impl Agent {
    /// List the cluster's RenewRevocation entries in a task (`revocation.cluster`), unless
    /// a listing is under way. The answer comes back as [`TaskMsg::Revocations`].
    pub(super) fn spawn_revocation_listing(&mut self) {
        if !self.config.revocation.cluster || self.listing {
            return;
        }
        self.listing = true;
        let tx = self.tasks.0.clone();
        let list = self.api.revocations(self.root.clone(), self.config.clone());
        tokio::task::spawn_local(async move {
            let _ = tx.send(TaskMsg::Revocations(list.await));
        });
    }

    /// The cluster's entries came back: kept for every rotation until the next listing.
    /// A failure keeps the last entries read (a revocation seen once still applies while
    /// the API server cannot be asked) and is logged once, not at every poll. A change is
    /// an input of every certificate: rescan (what is revoked now is due at once).
    pub(super) async fn on_revocations(&mut self, r: Result<crate::revocation::Loaded, String>) {
        self.listing = false;
        match r {
            Ok(l) => {
                if self.cluster_error.take().is_some() {
                    tracing::info!("RenewRevocation objects read from the cluster again");
                }
                if self.cluster.as_ref() == Some(&l) {
                    return;
                }
                let n = l.entries.len();
                tracing::info!(
                    "RenewRevocation objects from the cluster: {n} {}{}",
                    if n == 1 { "entry" } else { "entries" },
                    if l.errors.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", {} not applied (see `kube-cert-agent revocations`)",
                            l.errors.len()
                        )
                    }
                );
                self.cluster = Some(l);
                for n in rotation::managed_names(&self.config) {
                    self.feed(&n, Event::InputsChanged);
                }
                self.rescan().await;
                self.save_state();
            }
            Err(e) => {
                if self.cluster_error.as_ref() != Some(&e) {
                    let kept = match &self.cluster {
                        Some(l) => {
                            format!("the {} entries read before still apply", l.entries.len())
                        }
                        None => "none read yet".to_string(),
                    };
                    tracing::warn!(
                        ERROR = %e,
                        "RenewRevocation objects not read from the cluster ({e}); {kept}, and the files do; trying again every {}",
                        humantime::format_duration(self.config.revocation.poll_interval.0)
                    );
                }
                self.cluster_error = Some(e);
            }
        }
    }

    /// Start a poll of the CARotation objects in a task, unless one runs or the kubelet's
    /// client certificate is being requested (a phase talks to the API server with it; its
    /// CSR is approved automatically, so the next poll comes soon after). A serving CSR
    /// waiting for a person does not hold a phase up: the reissue phase resumes that same
    /// CSR (`kubelet::pending`). While a phase runs, rotations wait (`cycle` defers them):
    /// a phase and the daemon's own rotations never write the same files at once.
    pub(super) fn spawn_ca_rotations(&mut self) {
        if self.client_in_flight() {
            return;
        }
        // Taken while a phase runs: none starts beside it.
        let Some(attempts) = self.ca_attempts.take() else {
            return;
        };
        let tx = self.tasks.0.clone();
        let sync = self
            .api
            .ca_rotations(self.root.clone(), self.config.clone(), attempts);
        tokio::task::spawn_local(async move {
            let (attempts, r) = sync.await;
            let _ = tx.send(TaskMsg::CaSynced(attempts, r));
        });
    }

    /// Whether a CA rotation phase runs (its task holds the attempts).
    pub(super) fn ca_busy(&self) -> bool {
        self.ca_attempts.is_none()
    }

    /// What a CA rotation poll did; then the rotations deferred meanwhile. A rescan first:
    /// the files the phase wrote are the agent's own, not someone else's change.
    async fn on_ca_synced(
        &mut self,
        attempts: crate::ca_rotation::cluster::Attempts,
        r: Result<Vec<String>, String>,
    ) {
        self.ca_attempts = Some(attempts);
        match r {
            Ok(lines) => {
                for l in lines {
                    tracing::info!("{l}");
                }
            }
            Err(e) => tracing::warn!(ERROR = %e, "CA rotation from the cluster: {e}"),
        }
        self.rescan().await;
        for (names, forced, why) in std::mem::take(&mut self.deferred) {
            self.cycle(&names, forced, &why).await;
        }
        self.save_state();
    }

    /// A task's report.
    pub(super) async fn on_task(&mut self, msg: TaskMsg) {
        match msg {
            TaskMsg::Outcome(o, why) => self.apply(std::slice::from_ref(&*o), &why).await,
            TaskMsg::CsrPending { name, csr } => {
                self.feed(&name, Event::CsrPending { csr });
                self.save_state();
            }
            TaskMsg::CsrNeedsApproval { name } => {
                self.answered.insert(name, (String::new(), false));
            }
            TaskMsg::ActionDone { job, result } => self.action_done(job, result),
            TaskMsg::Revocations(r) => self.on_revocations(r).await,
            TaskMsg::CaSynced(attempts, r) => self.on_ca_synced(attempts, r).await,
        }
        self.settle_parked();
    }
}
