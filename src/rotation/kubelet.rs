//! Executing a kubelet certificate's renewal: bootstrap or renew through a CSR.

use time::Duration;

use super::plan::{heal_kubelet_ahead, Current};
use super::revoked::{kubelet_blocked, reason_to_rotate};
use super::{outcome, Action, Failure, Outcome, Request};
use crate::kubelet::{Node, Progress};
use crate::pki::csr::KubeletCert;
use crate::pki::issue::LeafSpec;
use crate::pki::policy::RenewalPolicy;
use crate::revocation::Entry;

/// A kubelet certificate: bootstrap or renew through a CSR.
pub async fn rotate_kubelet(
    node: &Node<'_>,
    policy: &RenewalPolicy,
    kind: KubeletCert,
    req: Request,
    revs: &[Entry],
    progress: Progress<'_>,
) -> Outcome {
    let current = match node.current(kind) {
        Ok(Some(c)) => Current::Present(Box::new(c)),
        Ok(None) => Current::Missing,
        Err(e) => Current::Broken(e),
    };
    let path = node.current_pem(kind);
    let mut out = outcome(
        kind.name(),
        &path,
        &current,
        Action::Failed(Failure::permanent("")),
    );
    // The first renewal of a certificate the daemon installed in a batch is drawn wide.
    let first;
    let policy = match &current {
        Current::Present(c) if node.spec.first_renewal.contains(&c.serial) => {
            first = crate::lifecycle::spread::first_policy(policy);
            &first
        }
        _ => policy,
    };
    let written_at = written_at(node, kind);
    let heal = |d| heal_kubelet_ahead(d, written_at, req.now);
    let reason = match reason_to_rotate(&current, revs, policy, req, heal) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    // What the CSR will ask for: a revocation matching that would match the new one too.
    let (dns, ips) = match kind {
        KubeletCert::Client => (vec![], vec![]),
        KubeletCert::Serving => node.serving_addresses(),
    };
    let leaf = LeafSpec {
        common_name: crate::pki::csr::node_user(&node.node_name),
        organizations: vec!["system:nodes".into()],
        dns_names: dns,
        ip_addresses: ips,
        usages: vec![],
        validity: Duration::ZERO,
        not_before_floor: None,
    };
    // How far before its request the signer dated the current certificate.
    let backdate = match (&current, written_at) {
        (Current::Present(c), Some(w)) => w - c.not_before,
        _ => Duration::ZERO,
    };
    if let Some(blocked) = kubelet_blocked(revs, &leaf, req.now, backdate) {
        return Outcome {
            action: blocked,
            ..out
        };
    }
    if req.dry_run {
        return Outcome {
            action: Action::WouldRotate(reason),
            ..out
        };
    }
    match crate::kubelet::obtain(node, kind, progress).await {
        Ok(o) => {
            out.action = Action::Rotated(reason);
            out.after = Some((o.cert.serial.clone(), o.cert.not_after));
            out.detail = Some(format!(
                "CSR {}, authenticated with the {}, {} API requests",
                o.csr_name, o.authenticated_with, o.requests
            ));
            out
        }
        Err(e) => {
            out.action = Action::Failed(crate::kubelet::classify(&e));
            out
        }
    }
}

/// When this node wrote the current version: the stamp of kubelet's file name
/// (`kubelet-client-2026-11-22-05-33-28.pem`), in this node's clock at the time. None for a
/// plain file or an unreadable directory.
fn written_at(node: &Node<'_>, kind: KubeletCert) -> Option<time::OffsetDateTime> {
    use crate::store::{Managed, PkiStore};
    let m = Managed::Kubelet {
        dir: node.spec.cert_dir.clone(),
        name: kind.base_name().to_string(),
    };
    let v = node
        .store
        .versions(&m)
        .ok()?
        .into_iter()
        .find(|v| v.current)?;
    crate::store::naming::parse_kubelet_stamp(&v.stamp)
}
