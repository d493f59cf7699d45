//! `kube-cert-agent rotate-ca NAME --phase prepare|reissue|finalize`: rotating one of the
//! node's CAs with no downtime, in the pattern every working scheme follows (Talos
//! `acceptedCAs`, Gardener's two-phase rotation): trust old and new together, re-issue
//! every leaf from the new CA, then drop the old one.
//!
//! Each phase is a desired state computed from the two CAs; running it writes only what
//! differs (so it is idempotent and resumes after a crash), every file through the store
//! (atomic, fsynced), the CA certificate and key switched together by one rename. The
//! record of where the rotation is lives in [`record`].
//!
//! | phase | `ca.crt` (trust, signing cert first) | `ca.key` | kubeconfig CA data | leaves |
//! |---|---|---|---|---|
//! | prepare | old, new | old | old, new | unchanged |
//! | reissue | new, old | new | old, new | re-issued from new |
//! | finalize | new | new | new | checked: all verify against new alone |

pub mod bundle;
pub mod cluster;
pub mod fleet;
pub mod leaves;
pub mod newca;
pub mod object;
pub mod phases;
pub mod record;
pub mod trust;

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::config::{CaSpec, Config};
use crate::paths::NodeRoot;
use crate::pki::CertInfo;
use record::{Phase, Rotation};

/// Where a rotation keeps its two CAs between phases (the agent's state directory).
pub const STAGING_DIR: &str = "/var/lib/kube-cert-agent/ca-rotation";

/// How the command was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub phase: Phase,
    pub dry_run: bool,
    /// A new CA to use instead of making one (`--cert`, `--key`), host paths.
    pub new_cert: Option<PathBuf>,
    /// The new CA certificate itself (from a CARotation object), instead of `new_cert`.
    pub new_cert_pem: Option<Vec<u8>>,
    pub new_key: Option<PathBuf>,
    pub now: OffsetDateTime,
}

/// What a phase did, line by line, and how it ended.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    /// Every step done: the phase is reached.
    pub complete: bool,
}

/// An error before or during a phase; `refused` when the node is not in a state that
/// allows it (the operator has something to do first), as opposed to a failure.
#[derive(Debug)]
pub struct PhaseError {
    pub refused: bool,
    pub message: String,
}

impl PhaseError {
    pub fn refused(m: impl Into<String>) -> PhaseError {
        PhaseError {
            refused: true,
            message: m.into(),
        }
    }
    pub fn failed(m: impl Into<String>) -> PhaseError {
        PhaseError {
            refused: false,
            message: m.into(),
        }
    }
}

impl From<String> for PhaseError {
    fn from(m: String) -> PhaseError {
        PhaseError::failed(m)
    }
}

/// Whether `want` may run given the rotation recorded for this CA (pure).
pub fn admit(current: Option<&Rotation>, want: Phase) -> Result<(), String> {
    let Some(r) = current else {
        return match want {
            Phase::Prepare => Ok(()),
            _ => Err(format!(
                "no rotation of this CA has been prepared on this node: start with --phase prepare, not {}",
                want.as_str()
            )),
        };
    };
    let done = r.phase == Phase::Finalize && r.complete;
    match (r.phase, want) {
        _ if done && want == Phase::Prepare => Ok(()),
        (have, want) if have == want => Ok(()),
        (Phase::Prepare, Phase::Reissue) | (Phase::Reissue, Phase::Finalize) if r.complete => {
            Ok(())
        }
        (Phase::Prepare, Phase::Finalize) if r.complete => {
            Err("phase reissue comes first: run --phase reissue".into())
        }
        (have, want) if want > have => Err(format!(
            "phase {} is not complete on this node{}: run it again until it is, then {}",
            have.as_str(),
            r.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            want.as_str()
        )),
        (have, want) => Err(format!(
            "this node is already at phase {} of the rotation to CA serial {}; going back to {} is not supported (roll back with the store's history, see the README)",
            have.as_str(),
            r.new_serial,
            want.as_str()
        )),
    }
}

/// Staging paths of one rotation: (new CA cert, new CA key, old CA cert), node paths.
pub fn staging(ca: &CaSpec) -> (PathBuf, PathBuf, PathBuf) {
    let d = Path::new(STAGING_DIR).join(&ca.name);
    (
        d.join("new-ca.crt"),
        d.join("new-ca.key"),
        d.join("old-ca.crt"),
    )
}

/// Run one phase of the rotation of `name`.
pub async fn run(
    root: &NodeRoot,
    config: &Config,
    name: &str,
    opts: &Options,
    progress: crate::kubelet::Progress<'_>,
) -> Result<Report, PhaseError> {
    let ca = config.cas.iter().find(|c| c.name == name).ok_or_else(|| {
        let known: Vec<&str> = config.cas.iter().map(|c| c.name.as_str()).collect();
        PhaseError::refused(format!(
            "no CA named {name:?} in the config's cas: section (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })?;
    let rec = record::read(root)?;
    admit(rec.get(name), opts.phase).map_err(|e| PhaseError::refused(format!("{name}: {e}")))?;
    let ctx = phases::Ctx::new(root, config, ca, opts);
    match opts.phase {
        Phase::Prepare => phases::prepare(&ctx, rec.get(name)).await,
        Phase::Reissue => phases::reissue(&ctx, progress).await,
        Phase::Finalize => phases::finalize(&ctx).await,
    }
}

/// The first certificate of a PEM file (node path), parsed.
pub fn read_cert(root: &NodeRoot, path: &Path) -> Result<CertInfo, String> {
    let bytes = root
        .read(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = bundle::certificates(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    CertInfo::parse(&certs[0]).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
pub(crate) fn test_cert(tag: &str) -> Vec<u8> {
    format!("not-a-real-certificate-{tag}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rot(phase: Phase, complete: bool) -> Rotation {
        Rotation {
            ca: "cluster".into(),
            phase,
            complete,
            old_serial: "01".into(),
            new_serial: "02".into(),
            started: String::new(),
            updated: String::new(),
            error: Some("kubelet-client is still from the old CA".into()),
        }
    }

    #[test]
    fn phases_go_forward_one_at_a_time_and_repeat() {
        use Phase::*;
        assert!(admit(None, Prepare).is_ok());
        assert!(admit(None, Reissue).unwrap_err().contains("start with"));
        // Repeating a phase (idempotence, resume after a crash) is always allowed.
        for p in [Prepare, Reissue, Finalize] {
            assert!(admit(Some(&rot(p, false)), p).is_ok());
            assert!(admit(Some(&rot(p, true)), p).is_ok());
        }
        assert!(admit(Some(&rot(Prepare, true)), Reissue).is_ok());
        let e = admit(Some(&rot(Prepare, false)), Reissue).unwrap_err();
        assert!(e.contains("not complete") && e.contains("old CA"), "{e}");
        assert!(admit(Some(&rot(Prepare, true)), Finalize)
            .unwrap_err()
            .contains("reissue comes first"));
        assert!(admit(Some(&rot(Reissue, true)), Finalize).is_ok());
        assert!(admit(Some(&rot(Reissue, true)), Prepare)
            .unwrap_err()
            .contains("going back"));
        // A finished rotation lets the next one start.
        assert!(admit(Some(&rot(Finalize, true)), Prepare).is_ok());
        assert!(admit(Some(&rot(Finalize, false)), Prepare).is_err());
    }
}
