//! Rotating the certificates the config declares: from the local CA for `certificates:`
//! and `kubeconfigs:`. One function per managed kind; each returns an [`Outcome`] and never
//! leaves a working certificate replaced by a broken one (the store installs only checked
//! material, atomically).
//!
//! Layout: `scan` reads what is on disk (read-only), `plan` and `revoked` decide (pure),
//! `execute` and `kubelet` issue and install (the only writers).

mod execute;
mod kubelet;
pub mod plan;
mod revoked;
mod scan;

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::config::Config;
use crate::kubelet::{Node, Progress};
pub use crate::lifecycle::{Failure, FailureClass};
use crate::paths::NodeRoot;
use crate::pki::csr::KubeletCert;
use crate::revocation::{self, crl};
use crate::store::Store;
use plan::{rfc3339, Current, Reason};

pub use execute::{rotate_certificate, rotate_kubeconfig, rotate_or_create_kubeconfig};
pub use kubelet::rotate_kubelet;

/// A CA that expires within this is worth a warning at every rotation.
pub const CA_WARN_WITHIN: Duration = Duration::days(365);

/// What happened to one managed certificate.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// The file the certificate lives in (node path).
    pub path: PathBuf,
    pub action: Action,
    /// Serial and notAfter before and after.
    pub before: Option<(String, OffsetDateTime)>,
    pub after: Option<(String, OffsetDateTime)>,
    /// Things an operator should know that did not stop the rotation.
    pub warnings: Vec<String>,
    /// How it was done (the CSR, the credentials used).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Rotated(Reason),
    WouldRotate(Reason),
    Kept {
        next: OffsetDateTime,
    },
    ClockBehind {
        not_before: OffsetDateTime,
    },
    /// Revoked, but the replacement would be revoked by the same entry: not renewed, so
    /// the agent does not loop; the operator must fix the entry.
    Blocked {
        entry: String,
        /// When the replacement can clear the entry by itself (a kubelet certificate under
        /// an "as of now" cutoff, waiting out the signer's backdating): the daemon tries
        /// again then. None: blocked until the entry changes.
        until: Option<OffsetDateTime>,
    },
    /// Missing, and it does not belong on this node (not a control-plane node): not
    /// created, and not an error.
    NotHere(String),
    Failed(Failure),
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self.action, Action::Failed(_) | Action::Blocked { .. })
    }

    /// One line for the terminal (`rotate`) and for logs.
    pub fn line(&self) -> String {
        let serials = match (&self.before, &self.after) {
            (Some((b, _)), Some((a, na))) => {
                format!(": serial {b} -> {a}, expires {}", rfc3339(*na))
            }
            (None, Some((a, na))) => format!(": serial {a}, expires {}", rfc3339(*na)),
            _ => String::new(),
        };
        let what = match &self.action {
            Action::Rotated(r) => format!("rotated ({r}){serials}"),
            Action::WouldRotate(r) => format!("would rotate ({r})"),
            Action::Kept { next } => format!("valid, next rotation {}", rfc3339(*next)),
            Action::ClockBehind { not_before } => format!(
                "not valid until {}: is this node's clock behind? Not re-issued (force with rotate {})",
                rfc3339(*not_before),
                self.name
            ),
            Action::Blocked { entry, .. } => format!("BLOCKED: {entry}"),
            Action::NotHere(why) => format!("absent, {why}"),
            Action::Failed(e) => format!("FAILED: {e}"),
        };
        let mut line = format!("{}: {what}", self.name);
        if let Some(d) = &self.detail {
            line.push_str(&format!(" ({d})"));
        }
        for w in &self.warnings {
            line.push_str(&format!("\n  warning: {w}"));
        }
        line
    }
}

/// How a rotation run was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub forced: bool,
    pub dry_run: bool,
    /// Renew only what is broken: expired, missing, unreadable, revoked (`repair`).
    pub repair_only: bool,
    pub now: OffsetDateTime,
}

/// The names a config declares: certificates, kubeconfigs, then the kubelet's.
pub fn managed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .certificates
        .iter()
        .map(|c| c.name.clone())
        .chain(config.kubeconfigs.iter().map(|k| k.name.clone()))
        .collect();
    names.extend(
        kubelet_kinds(config)
            .into_iter()
            .map(|k| k.name().to_string()),
    );
    names
}

/// The kubelet certificates the config manages.
pub fn kubelet_kinds(config: &Config) -> Vec<KubeletCert> {
    match &config.kubelet {
        None => vec![],
        Some(k) if k.serving.enabled => vec![KubeletCert::Client, KubeletCert::Serving],
        Some(_) => vec![KubeletCert::Client],
    }
}

/// Where a local-CA rotation (key generation, signing, the install's fsyncs) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worker {
    /// On tokio's blocking pool: the daemon's loop keeps answering meanwhile.
    Pool,
    /// On the calling thread: a command with nothing else to serve (`rotate`, `repair`).
    /// A whole `rotate` then starts no thread and waits for no hand-off between threads
    /// (README "Performance").
    Caller,
}

/// Rotate `names` (forced), or with `names` empty every managed certificate that is due.
/// Kubelet certificates go through the API server; the client certificate first, since a
/// serving CSR may need it. `cluster`: the cluster's RenewRevocation entries, as the caller
/// read them (the command line just before, the daemon in a task: never on its loop); the
/// caller says why when it could not.
pub async fn rotate(
    root: &NodeRoot,
    config: &Config,
    names: &[String],
    req: Request,
    cluster: Option<&revocation::Loaded>,
    worker: Worker,
    progress: Progress<'_>,
) -> Vec<Outcome> {
    let store = Store::new(root.clone(), config.history);
    let policy = config.renewal.policy();
    let wanted = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
    // Re-read on every run: an operator adds a revocation by dropping a file.
    let mut loaded = revocation::load_dir(root, &config.revocation.directory);
    if let Some(l) = cluster {
        loaded.entries.extend(l.entries.iter().cloned());
        loaded.errors.extend(l.errors.iter().cloned());
    }
    for e in &loaded.errors {
        progress(&format!("error: revocation not applied: {e}"));
    }
    let revs = std::sync::Arc::new(loaded.entries);
    let mut out = Vec::new();
    // kubeadm's inputs, read once, for certificates created under a profile and for
    // kubeconfigs created from nothing.
    let facts = (config.certificates.iter().any(|c| c.profile.is_some())
        || !config.kubeconfigs.is_empty())
    .then(|| crate::node_facts::facts(root, config));
    for c in config.certificates.iter().filter(|c| wanted(&c.name)) {
        let created = c.profile.and_then(|p| {
            let f = facts.as_ref()?;
            Some(f.clone().and_then(|f| crate::kubeadm::defaults(p, &f)))
        });
        let (root, store, c, revs) = (root.clone(), store.clone(), c.clone(), revs.clone());
        let (name, path) = (c.name.clone(), c.cert.clone());
        let task = move || rotate_certificate(&root, &store, &policy, &c, req, &revs, created);
        out.push(blocking(worker, name, path, task).await);
    }
    for k in config.kubeconfigs.iter().filter(|k| wanted(&k.name)) {
        let created = facts.as_ref().map(|f| {
            f.clone()
                .and_then(|f| crate::kubeadm::kubeconfig::target(&k.path, &f))
        });
        let (root, store, k, revs) = (root.clone(), store.clone(), k.clone(), revs.clone());
        let (name, path) = (k.name.clone(), k.path.clone());
        let task =
            move || rotate_or_create_kubeconfig(&root, &store, &policy, &k, req, &revs, created);
        out.push(blocking(worker, name, path, task).await);
    }
    let replaced: Vec<crl::Replaced> = out
        .iter()
        .filter_map(|o| match (&o.action, &o.before) {
            (Action::Rotated(Reason::Revoked(_)), Some((serial, _))) => Some(crl::Replaced {
                name: o.name.clone(),
                serial: serial.clone(),
            }),
            _ => None,
        })
        .collect();
    // Execution is the only writer: a dry run (`rotate --dry-run`, the daemon's rescans)
    // leaves the CRLs as they are.
    if !req.dry_run {
        crl::update(root, config, &revs, &replaced, req.now, progress);
    }
    if let Some(spec) = &config.kubelet {
        let node = Node {
            root,
            spec,
            node_name: crate::kubelet::node_name(&config.node_name),
            store: &store,
        };
        for kind in kubelet_kinds(config)
            .into_iter()
            .filter(|k| wanted(k.name()))
        {
            out.push(rotate_kubelet(&node, &policy, kind, req, &revs, progress).await);
        }
    }
    out
}

/// Run a local-CA rotation where `worker` says: in the daemon, off the async thread (key
/// generation, RSA-4096: most of a second, must not stall the loop).
async fn blocking(
    worker: Worker,
    name: String,
    path: PathBuf,
    task: impl FnOnce() -> Outcome + Send + 'static,
) -> Outcome {
    if worker == Worker::Caller {
        return task();
    }
    match tokio::task::spawn_blocking(task).await {
        Ok(o) => o,
        Err(e) => Outcome {
            name,
            path,
            action: Action::Failed(Failure::transient(format!(
                "internal error: the rotation task failed: {e}"
            ))),
            before: None,
            after: None,
            warnings: vec![],
            detail: None,
        },
    }
}

pub(super) fn outcome(name: &str, path: &Path, current: &Current, action: Action) -> Outcome {
    Outcome {
        name: name.to_string(),
        path: path.to_path_buf(),
        action,
        before: match current {
            Current::Present(c) => Some((c.serial.clone(), c.not_after)),
            _ => None,
        },
        after: None,
        warnings: vec![],
        detail: None,
    }
}
