//! `rotate-ca NAME --phase ...`: one phase of a CA rotation on this node.

use crate::config::Config;
use crate::exit::{ExitCode, Fatal};
use crate::paths::NodeRoot;

use super::RotateCaArgs;

pub(super) fn rotate_ca(
    root: &NodeRoot,
    config: &Config,
    args: RotateCaArgs,
) -> Result<ExitCode, Fatal> {
    use crate::ca_rotation::{self, record::Phase};
    if !config.cas.iter().any(|c| c.name == args.name) {
        let known: Vec<&str> = config.cas.iter().map(|c| c.name.as_str()).collect();
        return Err(Fatal::config(anyhow::anyhow!(
            "no CA named {:?} in the config's cas: section (known: {})",
            args.name,
            known.join(", ")
        )));
    }
    let mut object_cert = None;
    let phase = match (&args.phase, &args.from_object) {
        (Some(p), _) => Phase::parse(p).expect("clap checked the phase"),
        (None, Some(f)) => {
            let text = if f.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                    .map_err(Fatal::failure)?;
                t
            } else {
                std::fs::read_to_string(f)
                    .map_err(|e| Fatal::config(anyhow::anyhow!("{}: {e}", f.display())))?
            };
            let w = ca_rotation::object::parse(&text)
                .map_err(|e| Fatal::config(anyhow::anyhow!("{}: {e}", f.display())))?;
            if w.ca != args.name {
                return Err(Fatal::config(anyhow::anyhow!(
                    "{}: the object rotates CA {:?}, not {:?}",
                    f.display(),
                    w.ca,
                    args.name
                )));
            }
            object_cert = Some(w.new_ca_pem.into_bytes());
            w.phase
        }
        (None, None) => unreachable!("clap requires --phase or --from-object"),
    };
    let opts = ca_rotation::Options {
        phase,
        dry_run: args.dry_run,
        new_cert: args.cert,
        // Only prepare takes a new CA; later phases use the staged one.
        new_cert_pem: object_cert.filter(|_| phase == Phase::Prepare),
        new_key: args.key,
        now: time::OffsetDateTime::now_utc(),
    };
    if args.dry_run && opts.new_cert.is_none() && opts.phase == Phase::Prepare {
        eprintln!("kube-cert-agent: dry run: a new CA would be made (or the staged one reused)");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::failure)?;
    let progress = |msg: &str| eprintln!("{msg}");
    let result = runtime.block_on(ca_rotation::run(root, config, &args.name, &opts, &progress));
    let node = crate::kubelet::node_name(&config.node_name);
    match result {
        Ok(report) => {
            for l in &report.lines {
                println!("{l}");
            }
            // What a node reports for the fleet (the CARotation's status.nodes entry).
            println!(
                "report: node {node} CA {} phase {} complete={}",
                args.name,
                phase.as_str(),
                report.complete
            );
            Ok(if report.complete {
                ExitCode::Ok
            } else {
                ExitCode::Failure
            })
        }
        Err(e) if e.refused => Err(Fatal::config(anyhow::anyhow!(e.message))),
        Err(e) => Err(Fatal::failure(anyhow::anyhow!(e.message))),
    }
}
