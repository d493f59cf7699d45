//! The endpoint and the textfile as the config asks for them, and moved when a reloaded
//! config changes `metrics.listen` or `metrics.textfile`: the new address is bound before
//! the old one is closed (so a change to an address that cannot be bound keeps the old one
//! serving, with an error that says so), and a moved or dropped textfile is deleted, so
//! that node_exporter does not export its stale values for ever.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use super::serve;
use super::Hub;
use crate::config::MetricsSpec;
use crate::paths::NodeRoot;

/// What is being served now.
#[derive(Debug, Default)]
pub struct Endpoints {
    listen: Option<Listening>,
    textfile: Option<Textfile>,
}

#[derive(Debug)]
struct Listening {
    /// As configured (`127.0.0.1:0` stays that, whatever port it got).
    configured: SocketAddr,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Textfile {
    path: PathBuf,
    task: JoinHandle<()>,
    /// Taken by each write and by the removal: once the removal has set it, no write that
    /// was already under way can bring the file back.
    stopped: Arc<Mutex<bool>>,
}

/// What a new `metrics:` section changes (pure).
#[derive(Debug, PartialEq)]
pub struct Changes {
    /// `Some(new)`: serve on `new` (`None`: no endpoint) instead of what is served now.
    pub listen: Option<Option<SocketAddr>>,
    /// `Some(new)`: write `new` (`None`: no textfile) instead of the current file.
    pub textfile: Option<Option<PathBuf>>,
}

/// Compare what is served with what `spec` asks for. An invalid address (refused when the
/// config was loaded) counts as none.
pub fn changes(listen: Option<SocketAddr>, textfile: Option<&Path>, spec: &MetricsSpec) -> Changes {
    let want_listen = spec.listen_addr().ok().flatten();
    let want_textfile = spec.textfile.as_deref();
    Changes {
        listen: (want_listen != listen).then_some(want_listen),
        textfile: (want_textfile != textfile).then(|| want_textfile.map(Path::to_path_buf)),
    }
}

impl Endpoints {
    /// Start what `spec` asks for. A port that cannot be bound is logged and the agent goes
    /// on without it: certificates matter more than their metrics.
    pub async fn start(hub: &Hub, root: &NodeRoot, spec: &MetricsSpec) -> Endpoints {
        let mut e = Endpoints::default();
        e.apply(hub, root, spec).await;
        e
    }

    /// Where the endpoint is bound, if it is.
    pub fn bound(&self) -> Option<SocketAddr> {
        self.listen.as_ref().map(|l| l.bound)
    }

    /// Follow a (re)loaded `metrics:` section.
    pub async fn apply(&mut self, hub: &Hub, root: &NodeRoot, spec: &MetricsSpec) {
        let c = changes(
            self.listen.as_ref().map(|l| l.configured),
            self.textfile.as_ref().map(|t| t.path.as_path()),
            spec,
        );
        if let Some(want) = c.listen {
            self.relisten(want, hub, root).await;
        }
        if let Some(want) = c.textfile {
            if let Some(old) = self.textfile.take() {
                let path = old.path.clone();
                match stop_textfile(old, root).await {
                    Ok(()) => tracing::info!(
                        "metrics.textfile: removed {} (no longer configured)",
                        path.display()
                    ),
                    Err(e) => tracing::error!(ERROR = %e, "metrics.textfile: {e}"),
                }
            }
            if let Some(path) = want {
                tracing::info!("metrics.textfile: writing {}", path.display());
                let stopped = Arc::new(Mutex::new(false));
                let task =
                    serve::textfile(path.clone(), hub.clone(), root.clone(), stopped.clone());
                self.textfile = Some(Textfile {
                    path,
                    task,
                    stopped,
                });
            }
        }
    }

    async fn relisten(&mut self, want: Option<SocketAddr>, hub: &Hub, root: &NodeRoot) {
        let Some(addr) = want else {
            if let Some(old) = self.listen.take() {
                let bound = old.bound;
                stop(old).await;
                tracing::info!(
                    "metrics: no longer serving http://{bound}/metrics (metrics.listen removed)"
                );
            }
            return;
        };
        let render = serve::renderer(hub.clone(), root.clone());
        let first = serve::bind(addr).await;
        let listener = match (first, self.listen.take()) {
            (Ok(l), old) => {
                if let Some(old) = old {
                    stop(old).await;
                }
                Ok(l)
            }
            // The same port on another address of this host (127.0.0.1 -> 0.0.0.0) is
            // refused while the old one is open: close it and try again, else reopen it.
            (Err(e), Some(old)) => {
                let was = old.bound;
                stop(old).await;
                match serve::bind(addr).await {
                    Ok(l) => Ok(l),
                    Err(_) => Err((e, serve::bind(was).await.ok().map(|l| (l, was)))),
                }
            }
            (Err(e), None) => Err((e, None)),
        };
        match listener {
            Ok(l) => {
                let bound = l.local_addr().unwrap_or(addr);
                let task = serve::serve_on(l, render);
                tracing::info!("metrics: serving http://{bound}/metrics");
                self.listen = Some(Listening {
                    configured: addr,
                    bound,
                    task,
                });
            }
            Err((e, Some((l, was)))) => {
                let task = serve::serve_on(l, render);
                tracing::error!(ERROR = %e, ACTION = "metrics-failed", "{e}; still serving http://{was}/metrics");
                // Kept as the address in force: the next change is compared with it.
                self.listen = Some(Listening {
                    configured: was,
                    bound: was,
                    task,
                });
            }
            Err((e, None)) => {
                tracing::error!(ERROR = %e, ACTION = "metrics-failed", "{e}; going on without the metrics endpoint");
            }
        }
    }
}

/// Close the listening socket: the accept loop is cancelled and dropped (with its
/// listener) before this returns. Connections already accepted finish on their own.
async fn stop(l: Listening) {
    l.task.abort();
    let _ = l.task.await;
}

async fn stop_textfile(t: Textfile, root: &NodeRoot) -> Result<(), String> {
    t.task.abort();
    let _ = t.task.await;
    let file = root.host_path(&t.path);
    let stopped = t.stopped;
    tokio::task::spawn_blocking(move || {
        let mut s = stopped.lock().unwrap_or_else(|p| p.into_inner());
        *s = true;
        match std::fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", file.display())),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(listen: &str, textfile: Option<&str>) -> MetricsSpec {
        MetricsSpec {
            listen: listen.into(),
            textfile: textfile.map(PathBuf::from),
        }
    }

    #[test]
    fn only_what_changed_is_touched() {
        let a: SocketAddr = "127.0.0.1:9793".parse().unwrap();
        let f = Path::new("/var/lib/node-exporter/a.prom");
        let same = changes(
            Some(a),
            Some(f),
            &spec("127.0.0.1:9793", Some(f.to_str().unwrap())),
        );
        assert_eq!(
            same,
            Changes {
                listen: None,
                textfile: None
            }
        );
        let moved = changes(Some(a), Some(f), &spec("[::1]:9793", None));
        assert_eq!(moved.listen, Some(Some("[::1]:9793".parse().unwrap())));
        assert_eq!(moved.textfile, Some(None));
        let off = changes(Some(a), None, &spec("", None));
        assert_eq!(off.listen, Some(None));
        assert_eq!(off.textfile, None);
        let on = changes(None, None, &spec("", Some("/b.prom")));
        assert_eq!(on.textfile, Some(Some(PathBuf::from("/b.prom"))));
    }
}
