//! The control socket: `rotate` and `ping` requests from the command line.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Agent, ControlMsg};
use crate::exit::ExitCode;
use crate::rotation::{self, Outcome};
use crate::service::control;

impl Agent {
    pub(super) async fn on_control(&mut self, req: control::Request) -> control::Reply {
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
        let mut running = vec![];
        let outcomes = if dry_run {
            self.rotate(&names, forced, true).await
        } else {
            let names = if all { known } else { names };
            let outcomes = self.cycle(&names, forced, "rotate command").await;
            // Renewals through the API server go on in a task: say so rather than wait.
            for c in self.certs.iter().filter(|c| c.life.phase.in_flight()) {
                if names.is_empty() || names.contains(&c.name) {
                    running.push(format!(
                        "{}: renewal running (CSR to the API server); `kube-cert-agent status` shows the result",
                        c.name
                    ));
                }
            }
            outcomes
        };
        let mut lines: Vec<String> = outcomes.iter().map(Outcome::line).collect();
        lines.extend(running);
        control::Reply {
            lines,
            code: if outcomes.iter().any(Outcome::failed) {
                ExitCode::Failure as i32
            } else {
                ExitCode::Ok as i32
            },
        }
    }
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
