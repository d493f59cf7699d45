//! Serving the hub: HTTP on `metrics.listen` (`GET /metrics`) and the node_exporter
//! textfile `metrics.textfile`, rewritten atomically.
//!
//! Neither ever holds up the daemon: the inventory is read and the text encoded on a
//! blocking thread, connections are capped and time out, and the hub's lock is held only to
//! copy a snapshot. The inventory is re-read when the daemon says files changed, or when it
//! is older than [`INVENTORY_MAX_AGE`] (files in a directory no one watches).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{families, Hub};
use crate::inventory::{self, Entry};
use crate::paths::NodeRoot;
use crate::store::{FileSpec, Store};

/// How old a cached inventory may get before a scrape re-reads it.
pub const INVENTORY_MAX_AGE: Duration = Duration::from_secs(60);
/// How often the textfile is rewritten besides after each change (expiry flags and TTLs move
/// with time).
pub const TEXTFILE_EVERY: Duration = Duration::from_secs(60);
/// Connections served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 16;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Cached {
    at: Instant,
    entries: Arc<Vec<Entry>>,
}

/// The exposition now: re-reads the inventory if needed. Blocking (file reads): call it on a
/// blocking thread.
pub fn render(hub: &Hub, root: &NodeRoot) -> String {
    let entries = inventory_of(hub, root);
    let mut snap = hub.snapshot(entries);
    snap.ca_rotations = ca_rotations(root);
    families::encode(snap, OffsetDateTime::now_utc())
}

/// The CA rotations `rotate-ca` recorded (by hand or for a CARotation object); none when
/// the record cannot be read.
fn ca_rotations(root: &NodeRoot) -> Vec<super::CaRotationFacts> {
    let record = crate::ca_rotation::record::read(root).unwrap_or_default();
    record
        .rotations
        .iter()
        .map(|r| super::CaRotationFacts {
            ca: r.ca.clone(),
            phase: r.phase.as_str(),
            complete: r.complete,
            updated: OffsetDateTime::parse(
                &r.updated,
                &time::format_description::well_known::Rfc3339,
            )
            .ok(),
        })
        .collect()
}

fn inventory_of(hub: &Hub, root: &NodeRoot) -> Arc<Vec<Entry>> {
    // Held while reading, so that concurrent scrapes share one read.
    let mut cache = hub.cache.lock().unwrap_or_else(|p| p.into_inner());
    let dirty = hub.take_dirty();
    if let Some(c) = cache.as_ref() {
        if !dirty && c.at.elapsed() < INVENTORY_MAX_AGE {
            return c.entries.clone();
        }
    }
    let entries = match hub.config() {
        Some(config) => Arc::new(inventory::collect(
            root,
            &inventory::default_targets(root, &config),
        )),
        None => Arc::default(),
    };
    *cache = Some(Cached {
        at: Instant::now(),
        entries: entries.clone(),
    });
    entries
}

/// What `/metrics` answers: the text exposition, rendered per scrape (off the runtime).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The agent's exposition, for [`serve_on`].
pub fn renderer(hub: Hub, root: NodeRoot) -> Render {
    Arc::new(move || render(&hub, &root))
}

/// Bind `addr` and serve `/metrics` with `render` from a task (the agent's and the
/// approver's endpoint alike).
pub async fn listen_with(addr: SocketAddr, render: Render) -> Result<SocketAddr, String> {
    let listener = bind(addr).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("metrics.listen {addr}: {e}"))?;
    serve_on(listener, render);
    Ok(bound)
}

/// Bind `addr`; an error names the address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics.listen {addr}: {e}"))
}

/// Serve `/metrics` on `listener` from a task; aborting the task closes the listener.
pub fn serve_on(listener: tokio::net::TcpListener, render: Render) -> JoinHandle<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("metrics: accept: {e}");
                    continue;
                }
            };
            let render = render.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req, render.clone()));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = conn.await;
                drop(permit);
            });
        }
    })
}

async fn handle<B>(req: Request<B>, render: Render) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "kube-cert-agent: the metrics are at /metrics\n".into(),
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics\n".into(),
        ));
    }
    let body = match tokio::task::spawn_blocking(move || render()).await {
        Ok(b) => b,
        Err(e) => return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
    };
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(families::CONTENT_TYPE),
    );
    Ok(r)
}

/// Rewrite `path` (a node path) after every change the hub hears of and every
/// [`TEXTFILE_EVERY`], from a task, until `stopped` is set (see `endpoints`).
pub fn textfile(
    path: PathBuf,
    hub: Hub,
    root: NodeRoot,
    stopped: Arc<Mutex<bool>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (h, r, p, s) = (hub.clone(), root.clone(), path.clone(), stopped.clone());
            let written = tokio::task::spawn_blocking(move || {
                let stopped = s.lock().unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return Ok(());
                }
                write_textfile(&h, &r, &p)
            })
            .await;
            match written {
                Ok(Err(e)) => tracing::error!(ERROR = %e, "metrics.textfile: {e}"),
                Err(e) => tracing::error!("metrics.textfile: {e}"),
                Ok(Ok(())) => {}
            }
            tokio::select! {
                _ = hub.changed.notified() => {}
                _ = tokio::time::sleep(TEXTFILE_EVERY) => {}
            }
        }
    })
}

/// Temp file, fsync, rename, fsync of the directory: node_exporter never reads half a file.
pub fn write_textfile(hub: &Hub, root: &NodeRoot, path: &std::path::Path) -> Result<(), String> {
    let text = render(hub, root);
    Store::new(root.clone(), 1)
        .write_file(
            path,
            text.as_bytes(),
            FileSpec {
                mode: 0o644,
                owner: None,
            },
        )
        .map_err(|e| format!("{}: {e}", path.display()))
}
