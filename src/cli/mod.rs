//! The command line (the contract in DESIGN.md) and what each command does.

mod revocation;
mod rotate_ca;

use revocation::{revocations, rollback};
use rotate_ca::rotate_ca;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::exit::{render_error_chain, ExitCode, Fatal};
use crate::inventory::{self, Target};
use crate::paths::NodeRoot;
use crate::pki::WarnPolicy;

#[derive(Debug, Parser)]
#[command(
    name = "kube-cert-agent",
    version,
    about = "Keeps every certificate a Kubernetes node depends on valid",
    long_about = "Keeps every certificate a Kubernetes node depends on valid: inventories the \
node's PKI, renews certificates before they expire, and reports what it finds.\n\n\
Exit codes: 0 ok; 1 (check) some certificate in its warning window; 2 (check) some \
certificate expired, not yet valid or unreadable; 3 usage or configuration error; 4 runtime failure; \
5 (rotate, through the daemon) a kubelet CSR waits for approval, the certificate is not renewed yet."
)]
pub struct Cli {
    /// Configuration file [default: ROOT/etc/kube-cert-agent/config.yaml, optional]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Work on the node tree at DIR: every path from the config and from kubeconfigs is
    /// taken under DIR.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon, in the foreground (what kube-cert-agent.service starts).
    Run,
    /// What the daemon manages: last result, next rotation, pending actions; and whether
    /// a daemon is running.
    Status {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Report every certificate on the node and when it expires.
    Check(CheckArgs),
    /// Renew certificates now: the named ones, --all, or (with neither) those that are due.
    Rotate(RotateArgs),
    /// Renew what is broken: expired, missing, unreadable, mismatched or revoked
    /// certificates (control-plane ones from their CA, kubelet ones with the bootstrap token).
    Repair {
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The RenewRevocation entries loaded, where from, and what each one matches.
    Revocations {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
        /// Also list the cluster's RenewRevocation objects (read with the kubelet's
        /// credentials), even when `revocation.cluster` does not apply them.
        #[arg(long)]
        cluster: bool,
    },
    /// Rotate one of the node's CAs (`cas:` in the config) with no downtime, one phase at
    /// a time: prepare (trust old + new), reissue (the new CA signs; leaves re-issued),
    /// finalize (the old CA leaves every trust point once nothing depends on it).
    RotateCa(RotateCaArgs),
    /// Switch a certificate back to its previous version.
    Rollback {
        /// A name from the config (`certificates[].name`, `kubelet-client`, `kubelet-serving`).
        name: String,
        /// Roll back even to a version that a RenewRevocation entry revokes.
        #[arg(long)]
        force: bool,
    },
    /// Approve kubelet-serving CSRs that can be proven (a cluster controller; see README).
    Approver(crate::approver::ApproverArgs),
    /// Print the version.
    Version {
        /// Also the crypto library and where keys, signatures and serials get their
        /// randomness.
        #[arg(long)]
        verbose: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Names from the config (`certificates[].name`, `kubeconfigs[].name`,
    /// `kubelet-client`, `kubelet-serving`).
    #[arg(conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every managed certificate, due or not.
    #[arg(long)]
    pub all: bool,
    /// Say what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct RotateCaArgs {
    /// A name from the config's `cas:` (kubeadm: cluster, etcd, front-proxy).
    pub name: String,
    #[arg(long, value_parser = ["prepare", "reissue", "finalize"], required_unless_present = "from_object", conflicts_with = "from_object")]
    pub phase: Option<String>,
    /// Take the phase and the new CA certificate from a CARotation object (a file, or `-`
    /// for stdin: `kubectl get carotation NAME -o yaml | ... --from-object -`).
    #[arg(long, value_name = "FILE")]
    pub from_object: Option<PathBuf>,
    /// Say what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// prepare: use this new CA certificate instead of making one (every control-plane
    /// node of a cluster must use the same one; a worker node needs only the certificate).
    #[arg(long, value_name = "FILE", conflicts_with = "from_object")]
    pub cert: Option<PathBuf>,
    /// prepare: the key of the --cert CA.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files or directories to check, as given (default: the configured pki directories
    /// and kubeconfigs, under --root).
    pub paths: Vec<PathBuf>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Output,
    /// Report a certificate as `warning` when it expires within DURATION (e.g. 30d).
    /// Default: leaves past 90% of their lifetime, CAs within a year of expiry.
    #[arg(long, value_name = "DURATION")]
    pub warn_within: Option<String>,
    /// Also report the certificates the TLS server at HOST:PORT presents.
    #[arg(long, value_name = "HOST:PORT")]
    pub remote: Vec<String>,
}

/// Entry point used by `main.rs`.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Config
            } else {
                ExitCode::Ok
            }
            .into();
        }
    };
    match run(cli) {
        Ok(code) => code.into(),
        Err(f) => {
            eprintln!("{}", render_error_chain(&f.error));
            f.code.into()
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode, Fatal> {
    let root = NodeRoot::new(&cli.root);
    if !cli.root.is_dir() {
        return Err(Fatal::config(anyhow::anyhow!(
            "--root {}: not a directory",
            cli.root.display()
        )));
    }
    match cli.command {
        Command::Version { verbose } => {
            println!("kube-cert-agent {}", env!("CARGO_PKG_VERSION"));
            if verbose {
                for l in crate::pki::randomness::describe() {
                    println!("{l}");
                }
            }
            Ok(ExitCode::Ok)
        }
        Command::Run => crate::agent::run(root, cli.config.as_deref()),
        Command::Approver(args) => crate::approver::run(args),
        Command::Status { output } => {
            let running = crate::service::control::probe(&root);
            let state = crate::service::state::read(&root)
                .map_err(|e| Fatal::failure(anyhow::anyhow!(e)))?;
            let cas = crate::ca_rotation::record::read(&root)
                .map_err(|e| Fatal::failure(anyhow::anyhow!(e)))?;
            let text = match output {
                Output::Json => {
                    let text = crate::service::state::render_json(state.as_ref(), running);
                    let mut v: serde_json::Value =
                        serde_json::from_str(&text).map_err(Fatal::failure)?;
                    v["caRotations"] =
                        serde_json::to_value(&cas.rotations).map_err(Fatal::failure)?;
                    serde_json::to_string_pretty(&v).map_err(Fatal::failure)? + "\n"
                }
                Output::Table => {
                    crate::service::state::render_table(state.as_ref(), running)
                        + &crate::ca_rotation::record::render_table(&cas)
                }
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Ok(ExitCode::Ok)
        }
        Command::Check(args) => {
            let config = config::load(cli.config.as_deref(), &root).map_err(Fatal::config)?;
            check(&root, &config, &args)
        }
        Command::Rotate(args) => {
            let config = config::load(cli.config.as_deref(), &root).map_err(Fatal::config)?;
            rotate(&root, &config, &args)
        }
        Command::Repair { dry_run } => {
            let config = config::load(cli.config.as_deref(), &root).map_err(Fatal::config)?;
            repair(&root, &config, dry_run)
        }
        Command::Revocations { output, cluster } => {
            let config = config::load(cli.config.as_deref(), &root).map_err(Fatal::config)?;
            revocations(&root, &config, output, cluster)
        }
        Command::RotateCa(args) => {
            let config = config::load(cli.config.as_deref(), &root).map_err(Fatal::config)?;
            rotate_ca(&root, &config, args)
        }
        Command::Rollback { name, force } => {
            let config = config::load(cli.config.as_deref(), &root).map_err(Fatal::config)?;
            rollback(&root, &config, &name, force)
        }
    }
}

fn rotate(root: &NodeRoot, config: &Config, args: &RotateArgs) -> Result<ExitCode, Fatal> {
    let known = crate::rotation::managed_names(config);
    if known.is_empty() {
        return Err(Fatal::config(anyhow::anyhow!(
            "the config declares no certificates or kubeconfigs to rotate"
        )));
    }
    if let Some(unknown) = args.names.iter().find(|n| !known.contains(n)) {
        return Err(Fatal::config(anyhow::anyhow!(
            "no certificate named {unknown:?} in the config (known: {})",
            known.join(", ")
        )));
    }
    let req = crate::rotation::Request {
        forced: args.all || !args.names.is_empty(),
        dry_run: args.dry_run,
        repair_only: false,
        now: time::OffsetDateTime::now_utc(),
    };
    if let Some(k) = &config.kubelet {
        if !k.serving.enabled && args.names.iter().any(|n| n == "kubelet-serving") {
            return Err(Fatal::config(anyhow::anyhow!(
                "kubelet-serving: kubelet.serving.enabled is false in the config"
            )));
        }
    }
    // A running daemon does it (no race with its own rotations); else we do it here.
    let ask = crate::service::control::Request::Rotate {
        all: args.all,
        dry_run: args.dry_run,
        names: args.names.clone(),
    };
    let rev_errors = revocation_errors(root, config);
    match crate::service::control::ask(root, &ask, None) {
        Ok(Some(reply)) => {
            eprintln!("kube-cert-agent: asked the running daemon");
            for l in &reply.lines {
                println!("{l}");
            }
            for e in &rev_errors {
                eprintln!("error: revocation not applied: {e}");
            }
            return Ok(match reply.code {
                0 if rev_errors.is_empty() => ExitCode::Ok,
                5 if rev_errors.is_empty() => ExitCode::AwaitingApproval,
                0 | 3 | 5 => ExitCode::Config,
                _ => ExitCode::Failure,
            });
        }
        Ok(None) => {}
        Err(e) => eprintln!(
            "kube-cert-agent: the daemon's control socket did not answer ({e}); rotating here"
        ),
    }
    let (runtime, outcomes) = rotate_here(root, config, &args.names, req)?;
    for o in &outcomes {
        println!("{}", o.line());
    }
    let actions_ok = run_dependents(&runtime, root, config, &outcomes);
    Ok(if outcomes.iter().any(|o| o.failed()) || !actions_ok {
        ExitCode::Failure
    } else if !rev_errors.is_empty() {
        ExitCode::Config
    } else {
        ExitCode::Ok
    })
}

/// A rotation run in this process (no daemon to ask), progress on stderr. The runtime is
/// returned for the dependents' actions that follow.
fn rotate_here(
    root: &NodeRoot,
    config: &Config,
    names: &[String],
    req: crate::rotation::Request,
) -> Result<(tokio::runtime::Runtime, Vec<crate::rotation::Outcome>), Fatal> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::failure)?;
    let progress = |msg: &str| eprintln!("{msg}");
    let outcomes = runtime.block_on(async {
        let cluster = match crate::revocation::cluster::load(root, config).await {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                progress(&format!(
                    "RenewRevocation objects not read from the cluster (files still apply): {e}"
                ));
                None
            }
            None => None,
        };
        let worker = crate::rotation::Worker::Caller;
        let cluster = cluster.as_ref();
        crate::rotation::rotate(root, config, names, req, cluster, worker, &progress).await
    });
    Ok((runtime, outcomes))
}

/// Restart / signal what depends on the rotated certificates, each once.
fn run_dependents(
    runtime: &tokio::runtime::Runtime,
    root: &NodeRoot,
    config: &Config,
    outcomes: &[crate::rotation::Outcome],
) -> bool {
    let (lines, ok) = runtime.block_on(crate::agent::run_actions_once(root, config, outcomes));
    for l in lines {
        println!("{l}");
    }
    ok
}

fn repair(root: &NodeRoot, config: &Config, dry_run: bool) -> Result<ExitCode, Fatal> {
    let req = crate::rotation::Request {
        forced: false,
        dry_run,
        repair_only: true,
        now: time::OffsetDateTime::now_utc(),
    };
    let rev_errors = revocation_errors(root, config);
    let (runtime, outcomes) = rotate_here(root, config, &[], req)?;
    use crate::rotation::Action;
    let mut repaired = 0;
    for o in &outcomes {
        match &o.action {
            // Healthy certificates are not repair's business: say nothing about them.
            Action::Kept { .. } => {}
            Action::Rotated(_) => {
                repaired += 1;
                println!("{}", o.line());
            }
            _ => println!("{}", o.line()),
        }
    }
    let broken = outcomes.iter().filter(|o| o.failed()).count();
    let healthy = outcomes
        .iter()
        .filter(|o| matches!(o.action, Action::Kept { .. }))
        .count();
    let verb = if dry_run { "to repair" } else { "repaired" };
    let count = if dry_run {
        outcomes
            .iter()
            .filter(|o| matches!(o.action, Action::WouldRotate(_)))
            .count()
    } else {
        repaired
    };
    println!("{count} {verb}, {healthy} healthy, {broken} could not be repaired");
    // Dependents restarted once, after everything repaired is in place.
    let actions_ok = dry_run || run_dependents(&runtime, root, config, &outcomes);
    Ok(if broken > 0 || !actions_ok {
        ExitCode::Failure
    } else if !rev_errors.is_empty() {
        ExitCode::Config
    } else {
        ExitCode::Ok
    })
}

fn check(root: &NodeRoot, config: &Config, args: &CheckArgs) -> Result<ExitCode, Fatal> {
    let policy = match &args.warn_within {
        Some(s) => {
            let d = config::parse_duration(s)
                .map_err(|e| Fatal::config(anyhow::anyhow!("--warn-within: {e}")))?;
            WarnPolicy::Within(time::Duration::try_from(d).map_err(Fatal::config)?)
        }
        None => WarnPolicy::Lifetime,
    };
    let mut targets: Vec<Target> = if args.paths.is_empty() {
        inventory::default_targets(root, config)
    } else {
        args.paths.iter().cloned().map(Target::Given).collect()
    };
    targets.extend(args.remote.iter().cloned().map(Target::Remote));
    let mut entries = inventory::collect(root, &targets);
    if args.paths.is_empty() {
        // Everything the config declares, even what walking the directories cannot see.
        let declared = crate::declared::problems(root, config, &entries);
        entries.extend(declared);
    }
    let mut rows = crate::check::rows(&entries, time::OffsetDateTime::now_utc(), policy);
    let revs = crate::revocation::load_dir(root, &config.revocation.directory);
    for e in &revs.errors {
        eprintln!("error: revocation not applied: {e}");
    }
    crate::check::apply_revocations(&mut rows, &entries, &revs.entries);
    // What the config declares and the node lacks (only for the node's own report).
    let absent = if args.paths.is_empty() {
        crate::absent::find(root, config)
    } else {
        vec![]
    };
    rows.extend(crate::absent::missing_rows(&absent));
    let text = match args.output {
        Output::Json => crate::check::render_json(&rows),
        Output::Table => {
            crate::check::render_table(&rows) + &crate::absent::render_not_here(&absent)
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`check | head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    // Revocation fails closed: what could be read applies, and the command says it failed.
    Ok(if revs.errors.is_empty() {
        crate::check::exit_code(&rows)
    } else {
        ExitCode::Config
    })
}

/// The errors of the revocation files (the entries that could be read still apply): a
/// command that meets any exits non-zero.
fn revocation_errors(root: &NodeRoot, config: &Config) -> Vec<String> {
    crate::revocation::load_dir(root, &config.revocation.directory).errors
}
