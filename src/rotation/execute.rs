//! Executing a local-CA renewal: issue, check, install atomically. The only writer.

use time::OffsetDateTime;

use super::plan::{heal_future_not_before, leaf_spec, rfc3339, Current, Reason};
use super::revoked::{blocked_by, floor_for, future_identity, reason_to_rotate};
use super::scan::{current_kubeconfig_cert, current_pair, latest_in_history, read};
use super::{outcome, Action, Failure, Outcome, Request, CA_WARN_WITHIN};
use crate::config::{CaRef, CertificateSpec, KubeconfigSpec};
use crate::kube::kubeconfig;
use crate::paths::NodeRoot;
use crate::pki::issue::{self, Ca, LeafSpec, Usage};
use crate::pki::keygen;
use crate::pki::policy::RenewalPolicy;
use crate::pki::CertInfo;
use crate::revocation::Entry;
use crate::store::{FileSpec, Store};

/// Where a local-CA renewal stands after [`issue_checked`].
pub(super) enum Step {
    /// Nothing issued: blocked by a revocation, or a dry run.
    Stop(Action),
    Issued(Box<issue::Issued>, rcgen::KeyPair),
}

/// What every local-CA renewal does between deciding and installing: start after any
/// revocation written "as of now", refuse a replacement the same revocation would revoke,
/// stop for a dry run, then make (or keep) the key and issue.
pub(super) fn issue_checked(
    ca: &Ca,
    mut leaf: LeafSpec,
    revs: &[Entry],
    reason: &Reason,
    req: Request,
    key: impl FnOnce() -> Result<rcgen::KeyPair, String>,
) -> Result<Step, String> {
    floor_for(revs, &mut leaf, req.now);
    if let Some(blocked) = blocked_by(revs, &future_identity(&leaf, req.now)) {
        return Ok(Step::Stop(blocked));
    }
    if req.dry_run {
        return Ok(Step::Stop(Action::WouldRotate(reason.clone())));
    }
    let key = key()?;
    let issued = issue::issue(ca, &leaf, &key, req.now)?;
    Ok(Step::Issued(Box::new(issued), key))
}

/// The CA certificate's notBefore, if it can be read (the decision only needs to know
/// whether the CA is valid now; a CA that cannot be read fails later, with its reason).
fn ca_not_before(root: &NodeRoot, ca: &CaRef) -> Option<OffsetDateTime> {
    let bytes = read(root, &ca.cert).ok()?;
    let der = crate::pki::parse_material(&bytes)
        .ok()?
        .certificates
        .into_iter()
        .next()?;
    CertInfo::parse(&der).ok().map(|c| c.not_before)
}

pub(super) fn load_ca(root: &NodeRoot, ca: &CaRef, now: OffsetDateTime) -> Result<Ca, String> {
    let cert = read(root, &ca.cert)?;
    let key = read(root, &ca.key)?;
    Ca::load(&cert, &key, now)
        .map_err(|e| format!("CA {} / {}: {e}", ca.cert.display(), ca.key.display()))
}

pub(super) fn ca_warnings(ca: &Ca, issued: &issue::Issued, now: OffsetDateTime) -> Vec<String> {
    let mut w = Vec::new();
    if issued.capped_by_ca {
        w.push(format!(
            "CA {} expires at {}, before the requested validity would end: the certificate was cut short",
            ca.cert.subject,
            rfc3339(ca.cert.not_after)
        ));
    } else if ca.cert.not_after - now < CA_WARN_WITHIN {
        w.push(format!(
            "CA {} expires at {} (within a year); CAs are never rotated automatically: plan its replacement",
            ca.cert.subject,
            rfc3339(ca.cert.not_after)
        ));
    }
    w
}

/// A missing certificate is created only where it belongs: on a control-plane node (its
/// CA key is here, or the kube-apiserver manifest is); elsewhere it is left absent, which
/// is no error. The outcome says which.
fn belongs_here(
    root: &NodeRoot,
    current: &Current,
    ca: &CaRef,
    out: &mut Outcome,
) -> Result<(), Action> {
    if !matches!(current, Current::Missing) {
        return Ok(());
    }
    let why = crate::node_facts::control_plane_evidence(root, &ca.key).map_err(Action::NotHere)?;
    out.detail = Some(format!("created: {why}"));
    Ok(())
}

/// A `certificates:` entry: issue from the CA, install as a pair.
/// `created`: what kubeadm would make this certificate say (its `profile`), for one that
/// does not exist yet.
pub fn rotate_certificate(
    root: &NodeRoot,
    store: &Store,
    policy: &RenewalPolicy,
    spec: &CertificateSpec,
    req: Request,
    revs: &[Entry],
    created: Option<Result<crate::kubeadm::Defaults, String>>,
) -> Outcome {
    let (current, current_key, template) = current_pair(root, &spec.cert, &spec.key);
    let template = template.or_else(|| latest_in_history(root, store, &spec.cert, &spec.key));
    let mut out = outcome(
        &spec.name,
        &spec.cert,
        &current,
        Action::Failed(Failure::permanent("")),
    );
    let ca_nb = ca_not_before(root, &spec.ca);
    let heal = |d| heal_future_not_before(d, ca_nb, req.now);
    let reason = match reason_to_rotate(&current, revs, policy, req, heal) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    if let Err(action) = belongs_here(root, &current, &spec.ca, &mut out) {
        return Outcome { action, ..out };
    }
    let result = (|| -> Result<Outcome, Failure> {
        let ca = load_ca(root, &spec.ca, req.now)?;
        let created = match (&template, created) {
            (None, Some(d)) => Some(d?),
            _ => None,
        };
        let leaf = leaf_spec(
            spec.subject.as_ref(),
            spec.dns_names.as_ref(),
            spec.ip_addresses.as_ref(),
            spec.usages.as_ref(),
            spec.validity.0,
            template.as_ref(),
            created.as_ref(),
        )?;
        let key = || match current_key {
            Some(k) if spec.reuse_key => Ok(k),
            _ => keygen::generate(spec.key_type),
        };
        let (issued, key) = match issue_checked(&ca, leaf, revs, &reason, req, key)? {
            Step::Issued(issued, key) => (issued, key),
            Step::Stop(action) => {
                return Ok(Outcome {
                    action,
                    ..out.clone()
                })
            }
        };
        let key_pem = key.serialize_pem();
        let installed = store
            .install_pair(
                &spec.cert,
                &spec.key,
                issued.cert_pem.as_bytes(),
                key_pem.as_bytes(),
                req.now,
            )
            .map_err(|e| Failure::transient(e.to_string()))?;
        let mut warnings = ca_warnings(&ca, &issued, req.now);
        if let Some(e) = installed.prune_error {
            warnings.push(format!("old versions not pruned: {e}"));
        }
        Ok(Outcome {
            action: Action::Rotated(reason.clone()),
            after: Some((issued.info.serial.clone(), issued.info.not_after)),
            warnings,
            ..out.clone()
        })
    })();
    match result {
        Ok(o) => o,
        Err(e) => {
            out.action = Action::Failed(e);
            out.detail = None; // "created: ..." only when it was
            out
        }
    }
}

/// A `kubeconfigs:` entry: issue a client certificate and rewrite the file atomically.
/// One that does not exist is not created (see [`rotate_or_create_kubeconfig`]).
pub fn rotate_kubeconfig(
    root: &NodeRoot,
    store: &Store,
    policy: &RenewalPolicy,
    spec: &KubeconfigSpec,
    req: Request,
    revs: &[Entry],
) -> Outcome {
    let none = Some(Err("no server to point a new one at".to_string()));
    rotate_or_create_kubeconfig(root, store, policy, spec, req, revs, none)
}

/// A `kubeconfigs:` entry; one that does not exist is created where it belongs (a
/// control-plane node), as `kubeadm init phase kubeconfig` makes it, pointing at
/// `created` (where kubeadm would point it, resolved from the node).
pub fn rotate_or_create_kubeconfig(
    root: &NodeRoot,
    store: &Store,
    policy: &RenewalPolicy,
    spec: &KubeconfigSpec,
    req: Request,
    revs: &[Entry],
    created: Option<Result<crate::kubeadm::kubeconfig::Target, String>>,
) -> Outcome {
    let exists = {
        let h = root.host_path(&spec.path);
        h.exists() || h.is_symlink()
    };
    if !exists {
        return create_kubeconfig(root, store, policy, spec, req, revs, created);
    }
    let text = match read(root, &spec.path) {
        Ok(t) => t,
        Err(e) => {
            let o = outcome(
                &spec.name,
                &spec.path,
                &Current::Broken(e.clone()),
                Action::Failed(Failure::permanent(e)),
            );
            return o;
        }
    };
    let current = current_kubeconfig_cert(root, &spec.path, &text);
    let out = outcome(
        &spec.name,
        &spec.path,
        &current,
        Action::Failed(Failure::permanent("")),
    );
    let ca_nb = ca_not_before(root, &spec.ca);
    let heal = |d| heal_future_not_before(d, ca_nb, req.now);
    let reason = match reason_to_rotate(&current, revs, policy, req, heal) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    let result = (|| -> Result<Outcome, Failure> {
        let template = match &current {
            Current::Present(c) => Some(&**c),
            _ => None,
        };
        let (ca, issued, key) = match issue_client(root, spec, template, revs, &reason, req)? {
            Ok(issued) => issued,
            Err(action) => {
                return Ok(Outcome {
                    action,
                    ..out.clone()
                })
            }
        };
        let text = std::str::from_utf8(&text)
            .map_err(|_| format!("{}: not UTF-8", spec.path.display()))?;
        let (new_text, _user) = kubeconfig::replace_client_credentials(
            text,
            issued.cert_pem.as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .map_err(|e| format!("{}: {e}", spec.path.display()))?;
        // A kubeconfig with an embedded key is a key: 0600 when new; an existing file keeps
        // its mode and owner.
        store
            .write_file(&spec.path, new_text.as_bytes(), FileSpec::KEY)
            .map_err(|e| Failure::transient(e.to_string()))?;
        Ok(written(&out, &reason, &ca, &issued, req.now))
    })();
    settle(out, result)
}

/// A missing kubeconfig, on a node where it belongs: a client certificate from the CA for
/// the configured subject, written with the CA and server kubeadm would put there (0600,
/// atomically). Elsewhere it stays absent, which is no error.
fn create_kubeconfig(
    root: &NodeRoot,
    store: &Store,
    policy: &RenewalPolicy,
    spec: &KubeconfigSpec,
    req: Request,
    revs: &[Entry],
    created: Option<Result<crate::kubeadm::kubeconfig::Target, String>>,
) -> Outcome {
    let current = Current::Missing;
    let mut out = outcome(
        &spec.name,
        &spec.path,
        &current,
        Action::Failed(Failure::permanent("")),
    );
    let reason = match reason_to_rotate(&current, revs, policy, req, |d| d) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    if let Err(action) = belongs_here(root, &current, &spec.ca, &mut out) {
        return Outcome { action, ..out };
    }
    let result = (|| -> Result<Outcome, Failure> {
        let target = created
            .unwrap_or_else(|| Err("no server to point a new one at".into()))
            .map_err(|e| format!("{}: missing, not created: {e}", spec.path.display()))?;
        let user = spec
            .subject
            .as_ref()
            .and_then(|s| s.common_name.clone())
            .ok_or_else(|| {
                format!(
                    "{}: missing, not created: the config gives it no subject.commonName (the user it is for)",
                    spec.path.display()
                )
            })?;
        let (ca, issued, key) = match issue_client(root, spec, None, revs, &reason, req)? {
            Ok(issued) => issued,
            Err(action) => {
                return Ok(Outcome {
                    action,
                    ..out.clone()
                })
            }
        };
        // The whole CA file, as kubeadm embeds ca.crt (during a CA rotation: both CAs).
        let ca_pem = read(root, &spec.ca.cert)?;
        let text = crate::kubeadm::kubeconfig::render(
            &target,
            &ca_pem,
            &user,
            issued.cert_pem.as_bytes(),
            key.serialize_pem().as_bytes(),
        );
        store
            .write_file(&spec.path, text.as_bytes(), FileSpec::KEY)
            .map_err(|e| Failure::transient(e.to_string()))?;
        Ok(written(&out, &reason, &ca, &issued, req.now))
    })();
    settle(out, result)
}

/// The signing CA, the checked certificate and its key.
type ClientIssued = (Ca, Box<issue::Issued>, rcgen::KeyPair);

/// A kubeconfig's client certificate and key, from its CA, for clientAuth only (the
/// current certificate's subject where the config gives none). `Ok(Err(action))`: the
/// issuance stopped there (still revoked, or a dry run).
fn issue_client(
    root: &NodeRoot,
    spec: &KubeconfigSpec,
    template: Option<&CertInfo>,
    revs: &[Entry],
    reason: &Reason,
    req: Request,
) -> Result<Result<ClientIssued, Action>, Failure> {
    let ca = load_ca(root, &spec.ca, req.now)?;
    let leaf = leaf_spec(
        spec.subject.as_ref(),
        Some(&vec![]),
        Some(&vec![]),
        Some(&vec![Usage::ClientAuth]),
        spec.validity.0,
        template,
        None,
    )?;
    let key = || keygen::generate(spec.key_type);
    Ok(match issue_checked(&ca, leaf, revs, reason, req, key)? {
        Step::Issued(issued, key) => Ok((ca, issued, key)),
        Step::Stop(action) => Err(action),
    })
}

/// The outcome once a kubeconfig with its new client certificate is written.
fn written(
    out: &Outcome,
    reason: &Reason,
    ca: &Ca,
    issued: &issue::Issued,
    now: OffsetDateTime,
) -> Outcome {
    Outcome {
        action: Action::Rotated(reason.clone()),
        after: Some((issued.info.serial.clone(), issued.info.not_after)),
        warnings: ca_warnings(ca, issued, now),
        ..out.clone()
    }
}

/// A kubeconfig's result: a failure keeps what was read ("created: ..." only when it was).
fn settle(mut out: Outcome, result: Result<Outcome, Failure>) -> Outcome {
    match result {
        Ok(o) => o,
        Err(e) => {
            out.action = Action::Failed(e);
            out.detail = None;
            out
        }
    }
}
