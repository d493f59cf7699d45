//! Work that waits on something outside (the API server, a person approving a serving CSR)
//! runs as a local task and reports back to the main loop over a channel, so the loop keeps
//! answering signals, inotify and the control socket, and stays the only watchdog pinger.

use time::OffsetDateTime;

use super::{Agent, TaskMsg};
use crate::lifecycle::Event;
use crate::rotation::{self, Request};

impl Agent {
    /// Renew the kubelet certificates `names` (client first: a serving CSR may need it) in
    /// a task. Each is marked issuing, so no second CSR is started for it meanwhile.
    pub(super) fn spawn_kubelet(&mut self, names: Vec<String>, forced: bool, why: &str) {
        for n in &names {
            self.feed(n, Event::Started);
        }
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
                let outcomes =
                    rotation::rotate(&root, &config, std::slice::from_ref(&name), req, &progress)
                        .await;
                for o in outcomes {
                    if tx.send(TaskMsg::Outcome(Box::new(o), why.clone())).is_err() {
                        return;
                    }
                }
            }
        });
    }
}
