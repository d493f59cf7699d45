//! The control socket: `rotate` and `ping` requests from the command line.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use time::OffsetDateTime;

use super::{schedule, Agent, ControlMsg};
use crate::exit::ExitCode;
use crate::lifecycle::Phase;
use crate::rotation::{self, Outcome};
use crate::service::control;

/// A `rotate` answered once every kubelet renewal it started has an outcome or a CSR
/// waiting for a person (the loop goes on meanwhile).
pub(super) struct Parked {
    lines: Vec<String>,
    failed: bool,
    /// Some CSR waits for a person (exit 5 unless something failed).
    awaiting: bool,
    /// Certificates still being requested (`issuing`).
    waiting: Vec<String>,
    reply: oneshot::Sender<control::Reply>,
}

impl Agent {
    pub(super) async fn on_control(
        &mut self,
        req: control::Request,
        reply: oneshot::Sender<control::Reply>,
    ) {
        let control::Request::Rotate {
            all,
            dry_run,
            names,
        } = req
        else {
            let _ = reply.send(control::Reply {
                lines: vec![format!("pong {}", std::process::id())],
                code: 0,
            });
            return;
        };
        let known = rotation::managed_names(&self.config);
        if let Some(u) = names.iter().find(|n| !known.contains(n)) {
            let _ = reply.send(control::Reply {
                lines: vec![format!(
                    "error: no certificate named {u:?} in the daemon's config"
                )],
                code: ExitCode::Config as i32,
            });
            return;
        }
        let forced = all || !names.is_empty();
        if dry_run {
            let outcomes = self.rotate(&names, forced, true).await;
            let lines = outcomes.iter().map(Outcome::line).collect();
            let _ = reply.send(reply_of(lines, outcomes.iter().any(Outcome::failed), false));
            return;
        }
        // A CA rotation phase writes the same files: nothing is started meanwhile.
        if self.ca_busy() {
            let _ = reply.send(control::Reply {
                lines: vec![
                    "a CA rotation phase is running (CARotation, see `kubectl get carotations`); nothing was rotated: try again when it ends (`kube-cert-agent status`)".to_string(),
                ],
                code: ExitCode::Failure as i32,
            });
            return;
        }
        let names = if all { known } else { names };
        let outcomes = self.cycle(&names, forced, "rotate command").await;
        let mut parked = Parked {
            lines: outcomes.iter().map(Outcome::line).collect(),
            failed: outcomes.iter().any(Outcome::failed),
            awaiting: false,
            waiting: vec![],
            reply,
        };
        // Renewals through the API server go on in a task: their answer comes when each has
        // an outcome, or a CSR that waits for someone to approve it. One that already
        // waited for approval before this command is said at once (no second CSR).
        for c in self.certs.iter().filter(|c| c.life.phase.in_flight()) {
            if !names.is_empty() && !names.contains(&c.name) {
                continue;
            }
            match &c.life.phase {
                Phase::AwaitingApproval { csr, since } => {
                    parked
                        .lines
                        .push(awaiting_line(&c.name, csr, self.csr_since(csr, *since)));
                    parked.awaiting = true;
                }
                _ => parked.waiting.push(c.name.clone()),
            }
        }
        for n in &parked.waiting {
            self.answered.remove(n);
        }
        self.parked.push(parked);
        self.settle_parked();
    }

    /// When the server created `csr` (known from the CSR task's notice), else `seen`.
    pub(super) fn csr_since(&self, csr: &str, seen: OffsetDateTime) -> OffsetDateTime {
        self.metrics
            .pending_csrs()
            .into_iter()
            .find(|p| p.name == csr)
            .map_or(seen, |p| p.since)
    }

    /// Answer the parked `rotate`s whose certificates have all settled.
    pub(super) fn settle_parked(&mut self) {
        let mut still = vec![];
        for mut p in std::mem::take(&mut self.parked) {
            let mut waiting = vec![];
            for n in std::mem::take(&mut p.waiting) {
                let Some(c) = self.certs.iter().find(|c| c.name == n) else {
                    continue;
                };
                match (&c.life.phase, self.answered.get(&n)) {
                    // Created, and not approved automatically (a serving CSR): a person must.
                    (Phase::AwaitingApproval { csr, since }, Some(_)) => {
                        p.lines
                            .push(awaiting_line(&n, csr, self.csr_since(csr, *since)));
                        p.awaiting = true;
                    }
                    // Created: the signer may still approve it by itself.
                    (Phase::Issuing { .. } | Phase::AwaitingApproval { .. }, _) => waiting.push(n),
                    (_, Some((line, failed))) => {
                        p.lines.push(line.clone());
                        p.failed |= failed;
                    }
                    (phase, None) => p.lines.push(format!("{n}: {}", phase.name())),
                }
            }
            p.waiting = waiting;
            if p.waiting.is_empty() {
                let _ = p.reply.send(reply_of(p.lines, p.failed, p.awaiting));
            } else {
                still.push(p);
            }
        }
        self.parked = still;
    }

    /// The daemon stops: whoever waits on a renewal hears so rather than a closed socket.
    pub(super) fn answer_parked_on_exit(&mut self) {
        for mut p in std::mem::take(&mut self.parked) {
            for n in &p.waiting {
                p.lines.push(format!(
                    "{n}: the daemon stopped during the renewal; a CSR already created is resumed when it starts again"
                ));
            }
            let _ = p.reply.send(control::Reply {
                lines: p.lines,
                code: ExitCode::Failure as i32,
            });
        }
    }
}

/// A failure outranks a CSR waiting for a person, which outranks success.
fn reply_of(lines: Vec<String>, failed: bool, awaiting: bool) -> control::Reply {
    let code = if failed {
        ExitCode::Failure
    } else if awaiting {
        ExitCode::AwaitingApproval
    } else {
        ExitCode::Ok
    };
    control::Reply {
        lines,
        code: code as i32,
    }
}

/// What `rotate NAME` says of a kubelet certificate whose CSR waits for approval: no
/// second CSR, and what the operator can do.
fn awaiting_line(name: &str, csr: &str, since: OffsetDateTime) -> String {
    let age = schedule::human(OffsetDateTime::now_utc() - since);
    format!(
        "{name}: CSR {csr} waits for approval (for {age}); no second CSR is created: approve it with `kubectl certificate approve {csr}` and the daemon installs the certificate once issued"
    )
}

/// One control connection: read the request line (bounded), hand it to the loop, write
/// the reply. `ping` is answered here.
pub(super) async fn serve_connection(
    stream: tokio::net::UnixStream,
    tx: mpsc::UnboundedSender<ControlMsg>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_outranks_a_waiting_csr_which_outranks_success() {
        let code = |failed, awaiting| reply_of(vec![], failed, awaiting).code;
        assert_eq!(code(true, true), ExitCode::Failure as i32);
        assert_eq!(code(false, true), ExitCode::AwaitingApproval as i32);
        assert_eq!(code(false, false), ExitCode::Ok as i32);
    }
}
