//! `kube-cert-agent approver`: approves kubelet-serving CSRs only when it can prove them
//! (see `rules`), with Lease leader election so several replicas can run.
//!
//! A subcommand of the agent's binary rather than a second binary: it shares the API
//! client, kubeconfig reading and X.509 parsing, and one package/image carries both.

pub mod connect;
pub mod controller;
pub mod csr;
pub mod lease;
pub mod metrics;
pub mod rules;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::exit::{ExitCode, Fatal};
use crate::kube::client::ApiClient;
use controller::{Controller, OnFailure, Settings};

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// `ecdsa-p256` (the config's key type names) -> `ECDSA P-256` (as CSRs are read).
fn key_label(s: &str) -> Result<String, String> {
    Ok(match s {
        "ecdsa-p256" => "ECDSA P-256",
        "ecdsa-p384" => "ECDSA P-384",
        "ecdsa-p521" => "ECDSA P-521",
        "rsa-2048" => "RSA 2048",
        "rsa-3072" => "RSA 3072",
        "rsa-4096" => "RSA 4096",
        "ed25519" => "Ed25519",
        _ => return Err(format!("unknown key type {s:?} (ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa-2048, rsa-3072, rsa-4096, ed25519)")),
    }
    .to_string())
}

/// The approver's command line (it reads no config file: a Deployment passes flags).
#[derive(Debug, clap::Args)]
pub struct ApproverArgs {
    /// Kubeconfig to use out of cluster [default: the pod's service account]
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Lease and the Events [default: the pod's, else kube-system]
    #[arg(long)]
    pub namespace: Option<String>,
    /// Name of the coordination.k8s.io/v1 Lease the replicas elect a leader with.
    #[arg(long, default_value = "kube-cert-agent-approver")]
    pub lease_name: String,
    /// This replica's identity in the Lease [default: $POD_NAME, else hostname_pid]
    #[arg(long)]
    pub identity: Option<String>,
    /// How long a Lease not renewed stays valid (leaseDurationSeconds).
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops acting (< lease duration).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or tried.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub retry_period: Duration,
    /// What to do with a CSR that fails a rule.
    #[arg(long, value_enum, default_value = "deny")]
    pub on_failure: OnFailure,
    /// Key types approved, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ecdsa-p256,ecdsa-p384,rsa-2048,rsa-3072,rsa-4096", value_parser = key_label)]
    pub allowed_key_types: Vec<String>,
    /// The longest spec.expirationSeconds approved.
    #[arg(long, default_value = "365d", value_parser = duration)]
    pub max_duration: Duration,
    /// The breaker opens (no approvals) when more CSRs are pending than Nodes + this.
    #[arg(long, default_value_t = 10)]
    pub breaker_margin: usize,
    /// Serve Prometheus metrics on ADDR (`/metrics`); empty: off.
    #[arg(long, value_name = "ADDR", default_value = "")]
    pub metrics_listen: String,
}

/// Now, for API timestamps (microseconds; Time serializes whole seconds).
pub(crate) fn now_timestamp() -> k8s_openapi::jiff::Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    k8s_openapi::jiff::Timestamp::from_microsecond(micros).expect("time in range")
}

fn default_identity() -> String {
    if let Ok(p) = std::env::var("POD_NAME") {
        if !p.is_empty() {
            return p;
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{}", host.trim(), std::process::id())
}

/// Runs the approver until SIGTERM or SIGINT.
pub fn run(args: ApproverArgs) -> Result<ExitCode, Fatal> {
    let _log = crate::service::logging::init();
    if args.renew_deadline >= args.lease_duration {
        return Err(Fatal::config(anyhow!(
            "--renew-deadline ({:?}) must be shorter than --lease-duration ({:?})",
            args.renew_deadline,
            args.lease_duration
        )));
    }
    let (endpoint, creds) = match &args.kubeconfig {
        Some(p) => connect::from_kubeconfig(p),
        None => connect::in_cluster(),
    }
    .map_err(|e| Fatal::config(anyhow!(e)))?;
    let client = ApiClient::new(&endpoint, &creds).map_err(Fatal::config)?;
    let namespace = args
        .namespace
        .clone()
        .or_else(connect::pod_namespace)
        .unwrap_or_else(|| "kube-system".into());
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let settings = Settings {
        policy: rules::Policy {
            allowed_keys: args.allowed_key_types.clone(),
            max_duration: args.max_duration,
        },
        on_failure: args.on_failure,
        breaker_margin: args.breaker_margin,
        identity: identity.clone(),
        namespace: namespace.clone(),
        lease_name: args.lease_name.clone(),
    };
    let timings = lease::Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .map_err(Fatal::failure)?;
    rt.block_on(async move {
        let metrics = metrics::Metrics::new();
        if !args.metrics_listen.is_empty() {
            let addr: SocketAddr = args.metrics_listen.parse().map_err(|e| {
                Fatal::config(anyhow!("--metrics-listen {:?}: {e}", args.metrics_listen))
            })?;
            let m = metrics.clone();
            let bound = crate::metrics::serve::listen_with(addr, Arc::new(move || m.render()))
                .await
                .map_err(|e| Fatal::config(anyhow!("--metrics-listen: {e}")))?;
            tracing::info!("metrics on http://{bound}/metrics");
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        tracing::info!(
            "approver {identity} starting; Lease {namespace}/{}",
            args.lease_name
        );
        let elector = tokio::spawn(lease::run(
            client.clone(),
            namespace.clone(),
            args.lease_name.clone(),
            identity.clone(),
            timings,
            tx,
        ));
        let mut controller =
            tokio::spawn(Controller::new(client.clone(), settings, metrics, rx).run());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Fatal::failure(anyhow!(e)))?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = &mut controller => {}
        }
        tracing::info!("approver stopping");
        // Stop acting and stop renewing before the Lease is given up.
        controller.abort();
        elector.abort();
        let released = tokio::time::timeout(
            timings.renew_deadline,
            lease::release(&client, &namespace, &args.lease_name, &identity),
        )
        .await;
        match released {
            Ok(Ok(true)) => tracing::info!("released the lease {namespace}/{}", args.lease_name),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!("could not release the lease: {e}"),
            Err(_) => tracing::warn!(
                "could not release the lease within {:?}",
                timings.renew_deadline
            ),
        }
        Ok(ExitCode::Ok)
    })
}
