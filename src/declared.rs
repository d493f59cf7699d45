//! What the config declares, checked on disk, for `check`: every configured certificate,
//! key and kubeconfig gets a line when it is missing, dangling, not a regular file,
//! unreadable, half of a pair (torn), a CA where a leaf belongs, or a kubeconfig without a
//! client certificate. Walking the pki directories cannot see these: a deleted pair
//! leaves nothing to walk, and a directory named `apiserver.crt` is walked into.

use std::path::Path;

use crate::config::Config;
use crate::inventory::Entry;
use crate::kube::kubeconfig::Kubeconfig;
use crate::paths::{NodeRoot, ReadError};
use crate::pki::{parse_material, CertInfo};

/// What a reader of the node path `p` gets: its bytes, or why not, in words.
fn read(root: &NodeRoot, p: &Path) -> Result<Vec<u8>, String> {
    root.read(p).map_err(|e| match e {
        ReadError::NotFound => "missing".to_string(),
        e => e.to_string(),
    })
}

/// Problems with what `config` declares that `entries` (the inventory) does not already
/// report. Each names the file, the config entry and the reason.
pub fn problems(root: &NodeRoot, config: &Config, entries: &[Entry]) -> Vec<Entry> {
    let reported = |p: &Path| {
        let p = p.display().to_string();
        entries.iter().any(|e| e.path == p && e.problem.is_some())
    };
    let mut out = Vec::new();
    let mut ca_in_leaf_slots = Vec::new();
    let mut push = |path: &Path, why: String| {
        if !reported(path) {
            out.push(Entry::problem_at(path.display().to_string(), why));
        }
    };
    for c in &config.certificates {
        let at = format!("certificates[{}]", c.name);
        let cert = read(root, &c.cert);
        let key = read(root, &c.key);
        match (&cert, &key) {
            // An absent certificate is `absent::find`'s to report: missing where it
            // belongs, "not on this node" on a worker.
            (Err(ce), Err(ke)) if ce == "missing" && ke == "missing" => {}
            _ => {
                match &cert {
                    Err(e) if e != "missing" => push(&c.cert, format!("{at}: {e}")),
                    _ => {}
                }
                if let Err(e) = &key {
                    let torn = if cert.is_ok() {
                        " (torn: the certificate is there)"
                    } else {
                        ""
                    };
                    push(&c.key, format!("{at}: key {e}{torn}"));
                }
            }
        }
        if let Ok(bytes) = &cert {
            let leaf = parse_material(bytes)
                .ok()
                .and_then(|m| m.certificates.first().cloned())
                .and_then(|der| CertInfo::parse(&der).ok());
            // Said even when the inventory saw a problem with the file (a key mismatch):
            // this is the reason an operator must act on.
            if leaf.is_some_and(|l| l.is_ca) {
                ca_in_leaf_slots.push(Entry::problem_at(
                    c.cert.display().to_string(),
                    format!("{at}: holds a CA certificate where a leaf certificate belongs"),
                ));
            }
        }
    }
    let kubeconfigs = config
        .kubeconfigs
        .iter()
        .map(|k| (format!("kubeconfigs[{}]", k.name), &k.path));
    let kubelet = config
        .kubelet
        .iter()
        .map(|k| ("kubelet.kubeconfig".to_string(), &k.kubeconfig));
    for (at, path) in kubeconfigs.chain(kubelet) {
        match read(root, path) {
            // Before TLS bootstrapping kubelet.conf does not exist yet: not a problem; an
            // absent configured kubeconfig is `absent::find`'s to report (by node role).
            Err(e) if e == "missing" => {}
            Err(e) => push(path, format!("{at}: {e}")),
            Ok(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => {
                push(path, format!("{at}: empty file"))
            }
            Ok(bytes) => match Kubeconfig::parse(&bytes) {
                Err(e) => push(path, format!("{at}: {e}")),
                Ok(kc) => {
                    let has_client = kc.users.iter().any(|u| {
                        u.user.client_certificate_data.is_some()
                            || u.user.client_certificate.is_some()
                    });
                    if !has_client {
                        push(path, format!("{at}: no user with a client certificate"));
                    }
                }
            },
        }
    }
    out.extend(ca_in_leaf_slots);
    out
}
