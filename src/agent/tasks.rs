//! Work that waits on something outside (the API server, a person approving a serving CSR)
//! runs as a local task and reports back to the main loop over a channel, so the loop keeps
//! answering signals, inotify and the control socket, and stays the only watchdog pinger.

use time::OffsetDateTime;

use super::{Agent, TaskMsg};
use crate::kubelet::notice::CsrNotice;
use crate::lifecycle::Event;
use crate::pki::csr::KubeletCert;
use crate::rotation::{self, Request, Worker};

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
        tokio::task::spawn_local(async move {
            for name in names {
                let req = Request {
                    forced,
                    dry_run: false,
                    repair_only: false,
                    now: OffsetDateTime::now_utc(),
                };
                // CSR progress is worth seeing as it happens.
                let progress = |m: &str| tracing::info!("{m}");
                let rotation = rotation::rotate(
                    &root,
                    &config,
                    std::slice::from_ref(&name),
                    req,
                    Worker::Pool,
                    &progress,
                );
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
