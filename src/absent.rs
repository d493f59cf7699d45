//! The configured certificates that are not on the node, for `check`: each is either
//! missing where it belongs (an error: the agent creates it), or not meant for this node
//! (a worker's unedited config names the control-plane set: listed, not an error).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::check::Row;
use crate::config::Config;
use crate::paths::NodeRoot;
use crate::pki::Status;

/// One configured certificate with no file.
#[derive(Debug, Clone, PartialEq)]
pub struct Absent {
    pub name: String,
    pub path: PathBuf,
    /// Ok: it belongs here (why, and what makes it); Err: not on this node (why).
    pub belongs: Result<String, String>,
}

/// Every configured certificate, kubeconfig and kubelet certificate whose file is absent.
pub fn find(root: &NodeRoot, config: &Config) -> Vec<Absent> {
    let exists = |p: &std::path::Path| {
        let h = root.host_path(p);
        h.exists() || h.is_symlink()
    };
    let control_plane =
        |key: &std::path::Path| crate::node_facts::control_plane_evidence(root, key);
    let mut out = Vec::new();
    for c in &config.certificates {
        if !exists(&c.cert) {
            let key_too = if exists(&c.key) {
                String::new()
            } else {
                format!(" (and its key {})", c.key.display())
            };
            out.push(Absent {
                name: c.name.clone(),
                path: c.cert.clone(),
                belongs: control_plane(&c.ca.key)
                    .map(|why| format!("{why}; `kube-cert-agent rotate` creates it{key_too}")),
            });
        }
    }
    for k in &config.kubeconfigs {
        if !exists(&k.path) {
            out.push(Absent {
                name: k.name.clone(),
                path: k.path.clone(),
                belongs: control_plane(&k.ca.key).map(|why| {
                    format!(
                        "{why}; `kube-cert-agent rotate` creates it (as kubeadm init phase \
                         kubeconfig does)"
                    )
                }),
            });
        }
    }
    if let Some(spec) = &config.kubelet {
        // A node whose kubelet is not set up yet (the package installed before `kubeadm
        // join`) has nothing to bootstrap with: listed, not an error.
        let kubelet_here = [&spec.bootstrap_kubeconfig, &spec.kubeconfig]
            .into_iter()
            .find(|p| exists(p));
        for kind in crate::rotation::kubelet_kinds(config) {
            let path = spec
                .cert_dir
                .join(format!("{}-current.pem", kind.base_name()));
            if !exists(&path) {
                out.push(Absent {
                    name: kind.name().to_string(),
                    path,
                    belongs: match kubelet_here {
                        Some(evidence) => Ok(format!(
                            "the kubelet is set up here ({} exists); `kube-cert-agent rotate \
                             {}` obtains it with the token of {}",
                            evidence.display(),
                            kind.name(),
                            spec.bootstrap_kubeconfig.display()
                        )),
                        None => Err(format!(
                            "no kubelet set up on this node yet (neither {} nor {})",
                            spec.bootstrap_kubeconfig.display(),
                            spec.kubeconfig.display()
                        )),
                    },
                });
            }
        }
    }
    out
}

/// Rows for the ones that belong here: `invalid`, "missing: ...".
pub fn missing_rows(absent: &[Absent]) -> Vec<Row> {
    absent
        .iter()
        .filter_map(|a| {
            let why = a.belongs.as_ref().ok()?;
            Some(Row::bare(
                a.path.display().to_string(),
                Status::Invalid,
                Some(format!("missing: {} is configured: {why}", a.name)),
            ))
        })
        .collect()
}

/// The table's section for the ones not meant for this node (empty when there are none).
pub fn render_not_here(absent: &[Absent]) -> String {
    let mut out = String::new();
    let not_here: Vec<(&Absent, &String)> = absent
        .iter()
        .filter_map(|a| a.belongs.as_ref().err().map(|why| (a, why)))
        .collect();
    if not_here.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nNOT ON THIS NODE ({} configured, absent, not created here; not an error)",
        not_here.len()
    );
    for (a, why) in not_here {
        let _ = writeln!(out, "{} ({}): {why}", a.name, a.path.display());
    }
    out
}
