//! The daemon's edges to the world that its decisions depend on, each a narrow trait so
//! that `agent::tests` drives the daemon with in-memory fakes, a fake clock and no sockets:
//! the clock, the systemd edge (`onRotate` actions) and the API edge (the cluster's
//! RenewRevocation entries, CARotation phases). The disk is the node tree under `--root`
//! (a temporary tree in tests); the kubelet's CSRs go to the API server (the stand-in in
//! tests).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::ca_rotation::cluster::Attempts;
use crate::config::{Action, Config};
use crate::paths::NodeRoot;
use crate::revocation::Loaded;
use crate::service::actions;

/// A future run on the daemon's one thread (its tasks are local).
pub type LocalFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The wall clock.
pub trait Clock {
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Running an `onRotate` action (restarting a unit over D-Bus, a signal, a command).
pub trait ActionEdge {
    fn run<'a>(
        &'a mut self,
        root: &'a NodeRoot,
        action: &'a Action,
        certs: &'a [String],
    ) -> LocalFut<'a, Result<String, String>>;
}

impl ActionEdge for actions::Runner {
    fn run<'a>(
        &'a mut self,
        root: &'a NodeRoot,
        action: &'a Action,
        certs: &'a [String],
    ) -> LocalFut<'a, Result<String, String>> {
        Box::pin(actions::Runner::run(self, root, action, certs))
    }
}

/// What the daemon asks of the API server besides the kubelet's CSRs.
pub trait ApiEdge {
    /// The cluster's RenewRevocation entries, or why they could not be read.
    fn revocations(
        &self,
        root: NodeRoot,
        config: Config,
    ) -> LocalFut<'static, Result<Loaded, String>>;
    /// One poll of the CARotation objects: the phases run, one line each. The attempts
    /// (their backoff) go in and come back out.
    fn ca_rotations(
        &self,
        root: NodeRoot,
        config: Config,
        attempts: Attempts,
    ) -> LocalFut<'static, (Attempts, Result<Vec<String>, String>)>;
}

/// The API server named by the kubelet's kubeconfig, with the node's credentials.
pub struct Cluster;

impl ApiEdge for Cluster {
    fn revocations(
        &self,
        root: NodeRoot,
        config: Config,
    ) -> LocalFut<'static, Result<Loaded, String>> {
        Box::pin(async move {
            crate::revocation::cluster::read(&root, &config)
                .await
                .unwrap_or_else(|| Err("no kubelet section, whose credentials read them".into()))
        })
    }

    fn ca_rotations(
        &self,
        root: NodeRoot,
        config: Config,
        mut attempts: Attempts,
    ) -> LocalFut<'static, (Attempts, Result<Vec<String>, String>)> {
        Box::pin(async move {
            // Phases' progress (CSRs, files written) is worth seeing as it happens.
            let progress = |m: &str| tracing::info!("{m}");
            let r =
                crate::ca_rotation::cluster::sync(&root, &config, &mut attempts, &progress).await;
            (attempts, r)
        })
    }
}

/// The daemon's edges.
pub struct Edges {
    pub clock: Arc<dyn Clock + Send + Sync>,
    pub actions: Box<dyn ActionEdge>,
    pub api: std::rc::Rc<dyn ApiEdge>,
}

impl Edges {
    /// The real ones: the system clock, systemd, the API server.
    pub fn real() -> Edges {
        Edges {
            clock: Arc::new(SystemClock),
            actions: Box::new(actions::Runner::default()),
            api: std::rc::Rc::new(Cluster),
        }
    }
}
