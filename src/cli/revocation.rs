//! `revocations` (what applies, from files and the cluster) and `rollback` (which
//! refuses a revoked version).

use crate::config::Config;
use crate::exit::{ExitCode, Fatal};
use crate::inventory;
use crate::paths::NodeRoot;

use super::Output;

/// The cluster's RenewRevocation entries (with the kubelet's credentials), or why they
/// could not be read.
fn cluster_entries(
    root: &NodeRoot,
    config: &Config,
) -> Result<Result<crate::revocation::Loaded, String>, Fatal> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::failure)?;
    Ok(
        match runtime.block_on(crate::revocation::cluster::read(root, config)) {
            Some(r) => r,
            None => Err("the config has no kubelet section, whose credentials read them".into()),
        },
    )
}

pub(super) fn revocations(
    root: &NodeRoot,
    config: &Config,
    output: Output,
    cluster: bool,
) -> Result<ExitCode, Fatal> {
    let mut loaded = crate::revocation::load_dir(root, &config.revocation.directory);
    // `revocation.cluster: true`: the cluster's entries apply too, so they are listed too;
    // `--cluster` lists them anyway.
    if config.revocation.cluster || cluster {
        match cluster_entries(root, config)? {
            Ok(l) => {
                loaded.entries.extend(l.entries);
                loaded.errors.extend(l.errors);
            }
            Err(e) => loaded.errors.push(format!(
                "{}: not read: {e}",
                crate::revocation::cluster::SOURCE
            )),
        }
    }
    let targets = inventory::default_targets(root, config);
    let entries = inventory::collect(root, &targets);
    let mut rows = Vec::new();
    for e in &loaded.entries {
        let matches: Vec<String> = entries
            .iter()
            .filter(|i| {
                i.cert.as_ref().is_some_and(|c| {
                    !c.is_ca && crate::revocation::matches(e, &crate::revocation::Identity::of(c))
                })
            })
            .map(|i| i.label())
            .collect();
        rows.push(serde_json::json!({
            "id": e.id(),
            "source": e.source,
            "rule": e.describe(),
            "description": e.description,
            "notBefore": e.not_before.map(crate::pki::rfc3339),
            "matches": matches,
        }));
    }
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"entries": rows, "errors": loaded.errors})
            )
            .expect("json")
        ),
        Output::Table => {
            if rows.is_empty() {
                println!(
                    "No revocation entries in {}{}.",
                    config.revocation.directory.display(),
                    if config.revocation.cluster || cluster {
                        " or in the cluster"
                    } else {
                        ""
                    }
                );
            }
            for r in &rows {
                println!(
                    "{}  {}  ({})",
                    r["id"].as_str().unwrap_or(""),
                    r["rule"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or("")
                );
                let m = r["matches"].as_array().cloned().unwrap_or_default();
                if m.is_empty() {
                    println!("    matches nothing on this node");
                }
                for x in m {
                    println!("    matches {}", x.as_str().unwrap_or(""));
                }
            }
            for e in &loaded.errors {
                println!("error: {e}");
            }
        }
    }
    Ok(if loaded.errors.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Config
    })
}

pub(super) fn rollback(
    root: &NodeRoot,
    config: &Config,
    name: &str,
    force: bool,
) -> Result<ExitCode, Fatal> {
    use crate::store::{Managed, PkiStore};
    let managed = if let Some(c) = config.certificates.iter().find(|c| c.name == name) {
        Managed::Pair {
            cert: c.cert.clone(),
            key: c.key.clone(),
        }
    } else if let (Some(k), Some(base)) = (
        &config.kubelet,
        [
            crate::pki::csr::KubeletCert::Client,
            crate::pki::csr::KubeletCert::Serving,
        ]
        .into_iter()
        .find(|kind| kind.name() == name),
    ) {
        Managed::Kubelet {
            dir: k.cert_dir.clone(),
            name: base.base_name().to_string(),
        }
    } else if config.kubeconfigs.iter().any(|k| k.name == name) {
        return Err(Fatal::config(anyhow::anyhow!(
            "{name} is a kubeconfig: it is rewritten in place (atomically) and keeps no versions"
        )));
    } else {
        return Err(Fatal::config(anyhow::anyhow!(
            "no certificate named {name:?} in the config"
        )));
    };
    let store = crate::store::Store::new(root.clone(), config.history);
    if !force {
        if let Some(why) = revoked_previous(root, config, &store, &managed)? {
            return Err(Fatal::config(anyhow::anyhow!(
                "{name}: not rolled back: {why} (use --force to roll back anyway)"
            )));
        }
    }
    let v = store
        .rollback(&managed)
        .map_err(|e| Fatal::failure(anyhow::anyhow!("rollback of {name}: {e}")))?;
    println!("{name}: rolled back to version {} ({})", v.stamp, v.name);
    Ok(ExitCode::Ok)
}

/// Why not to put back the version a rollback would: a RenewRevocation entry (a file, or
/// with `revocation.cluster` an object in the cluster) revokes it, or the cluster's
/// entries could not be read to tell.
fn revoked_previous(
    root: &NodeRoot,
    config: &Config,
    store: &crate::store::Store,
    managed: &crate::store::Managed,
) -> Result<Option<String>, Fatal> {
    let Some(cert) = previous_version(root, store, managed) else {
        return Ok(None);
    };
    let (stamp, cert) = cert;
    let mut revs = crate::revocation::load_dir(root, &config.revocation.directory).entries;
    if config.revocation.cluster {
        match cluster_entries(root, config)? {
            Ok(l) => revs.extend(l.entries),
            Err(e) => {
                return Ok(Some(format!(
                    "the cluster's RenewRevocation objects could not be read to check version \
                     {stamp} (serial {}) against them: {e}",
                    cert.serial
                )))
            }
        }
    }
    let id = crate::revocation::Identity::of(&cert);
    Ok(crate::revocation::first_match(&revs, &id).map(|e| {
        format!(
            "version {stamp} (serial {}) is revoked by {} ({}) in {}; it would be renewed \
             again at once",
            cert.serial,
            e.id(),
            e.describe(),
            e.source
        )
    }))
}

/// The version a rollback would put back: its stamp and certificate, if readable.
fn previous_version(
    root: &NodeRoot,
    store: &crate::store::Store,
    managed: &crate::store::Managed,
) -> Option<(String, crate::pki::CertInfo)> {
    use crate::store::{Managed, PkiStore};
    let versions = store.versions(managed).ok()?;
    let current = versions.iter().find(|v| v.current)?;
    let stamps: Vec<String> = versions.iter().map(|v| v.stamp.clone()).collect();
    let target = crate::store::history::rollback_target(&stamps, &current.stamp)?;
    let v = versions.iter().find(|v| v.stamp == target)?;
    let file = match managed {
        Managed::Pair { cert, .. } => cert.parent()?.join(&v.name).join(cert.file_name()?),
        Managed::Kubelet { dir, .. } => dir.join(&v.name),
    };
    let bytes = root.read(&file).ok()?;
    let der = crate::pki::parse_material(&bytes)
        .ok()?
        .certificates
        .into_iter()
        .next()?;
    let cert = crate::pki::CertInfo::parse(&der).ok()?;
    Some((v.stamp.clone(), cert))
}
