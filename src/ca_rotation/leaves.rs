//! The leaves of a CA on this node: re-issuing them from the new CA (reissue) and proving
//! that none still depends on the old one (finalize).

use crate::config::Config;
use crate::inventory::{self, Target};
use crate::kubelet::Node;
use crate::pki::csr::KubeletCert;
use crate::pki::CertInfo;
use crate::rotation::{self, Outcome, Request};

use super::phases::Ctx;

/// What re-issuing did: the names re-issued (their dependents restart), and what is still
/// not from the new CA, with the reason.
#[derive(Debug, Default)]
pub struct Reissued {
    pub names: Vec<String>,
    pub waiting: Vec<String>,
}

/// The certificate a config entry names now, if it can be read.
fn current_local(ctx: &Ctx<'_>, path: &std::path::Path) -> Option<CertInfo> {
    super::read_cert(ctx.root, path).ok()
}

/// The client certificate of a kubeconfig's current user, embedded or referenced.
fn current_kubeconfig(ctx: &Ctx<'_>, path: &std::path::Path) -> Option<CertInfo> {
    let entries = inventory::collect(ctx.root, &[Target::Kubeconfig(path.to_path_buf())]);
    let kc = crate::kube::kubeconfig::Kubeconfig::parse(&ctx.root.read(path).ok()?).ok()?;
    let user = crate::kube::kubeconfig::current_user_name(&kc).ok()?;
    entries
        .into_iter()
        .filter(|e| {
            e.location
                .as_deref()
                .is_some_and(|l| l.starts_with(&format!("users[{user}]")))
        })
        .find_map(|e| e.cert)
}

/// Re-issue every leaf of the CA that is not from `new` yet. Local leaves come from the
/// CA files (whose signer is the new CA by now); the kubelet's come through CSRs, and are
/// from the new CA only once the cluster's signer (kube-controller-manager) switched.
pub async fn reissue(
    ctx: &Ctx<'_>,
    old: &CertInfo,
    new: &CertInfo,
    lines: &mut Vec<String>,
    progress: crate::kubelet::Progress<'_>,
) -> Reissued {
    let config: &Config = ctx.config;
    let policy = config.renewal.policy();
    let revs = crate::revocation::load_dir(ctx.root, &config.revocation.directory).entries;
    let req = Request {
        forced: true,
        dry_run: ctx.opts.dry_run,
        repair_only: false,
        now: ctx.opts.now,
    };
    let mut out = Reissued::default();
    let note = |out: &mut Reissued, lines: &mut Vec<String>, o: Outcome| {
        lines.push(o.line());
        if o.failed() {
            out.waiting.push(format!("{}: {}", o.name, o.line()));
        } else if matches!(o.action, rotation::Action::Rotated(_)) {
            out.names.push(o.name.clone());
        }
    };
    let from_new = |c: &Option<CertInfo>| c.as_ref().is_some_and(|c| c.is_signed_by(new));
    for c in config
        .certificates
        .iter()
        .filter(|c| c.ca.cert == ctx.ca.cert)
    {
        if from_new(&current_local(ctx, &c.cert)) {
            lines.push(format!("{}: already issued by the new CA", c.name));
            continue;
        }
        let o = rotation::rotate_certificate(ctx.root, &ctx.store, &policy, c, req, &revs, None);
        note(&mut out, lines, o);
    }
    for k in config
        .kubeconfigs
        .iter()
        .filter(|k| k.ca.cert == ctx.ca.cert)
    {
        if from_new(&current_kubeconfig(ctx, &k.path)) {
            lines.push(format!("{}: already issued by the new CA", k.name));
            continue;
        }
        let o = rotation::rotate_kubeconfig(ctx.root, &ctx.store, &policy, k, req, &revs);
        note(&mut out, lines, o);
    }
    let Some(spec) = &config.kubelet else {
        return out;
    };
    let node = Node {
        root: ctx.root,
        spec,
        node_name: crate::kubelet::node_name(&config.node_name),
        store: &ctx.store,
    };
    for kind in rotation::kubelet_kinds(config) {
        // A kubelet certificate belongs to this CA when the old CA's name issued it.
        let current = node.current(kind).ok().flatten();
        match &current {
            Some(c) if c.issuer_der == old.subject_der && !c.is_signed_by(new) => {}
            _ => continue,
        }
        let o = rotation::rotate_kubelet(&node, &policy, kind, req, &revs, progress).await;
        let rotated = matches!(o.action, rotation::Action::Rotated(_));
        note(&mut out, lines, o);
        if rotated && !from_new(&node.current(kind).ok().flatten()) {
            out.names.retain(|n| n != kind.name());
            out.waiting.push(signer_not_switched(kind));
            lines.push(signer_not_switched(kind));
        }
    }
    out
}

fn signer_not_switched(kind: KubeletCert) -> String {
    format!(
        "{}: the API server issued it from the old CA: the cluster signer has not switched yet \
         (run reissue on every control-plane node, so that kube-controller-manager signs with \
         the new CA), then run reissue here again",
        kind.name()
    )
}

/// Every certificate on the node (pki directories, kubeconfigs) that the old CA's name
/// issued and the new CA did not sign: what still depends on the old CA.
pub fn dependents(ctx: &Ctx<'_>, old: &CertInfo, new: &CertInfo) -> Vec<String> {
    let mut targets: Vec<Target> = ctx
        .config
        .inventory
        .pki_directories
        .iter()
        .cloned()
        .map(Target::PkiDir)
        .collect();
    targets.extend(ctx.kubeconfig_paths().into_iter().map(Target::Kubeconfig));
    inventory::collect(ctx.root, &targets)
        .into_iter()
        .filter_map(|e| {
            let c = e.cert.as_ref()?;
            (!c.is_ca && c.issuer_der == old.subject_der && !c.is_signed_by(new)).then(|| {
                format!(
                    "{} (serial {}, {})",
                    e.label(),
                    c.serial,
                    if c.is_signed_by(old) {
                        "issued by the old CA"
                    } else {
                        "not signed by the new CA"
                    }
                )
            })
        })
        .collect()
}
