//! `standin-apiserver --dir DIR`: runs the stand-in API server until SIGTERM/SIGINT.
//! Writes DIR/ca.crt, DIR/ca.key, DIR/bootstrap-kubeconfig, DIR/admin.conf, then prints one
//! line on stdout: the server URL (`https://127.0.0.1:PORT`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use kube_standin_apiserver::{write_private_file, Faults, Options, StandIn};

fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("bad duration {s:?} (use ms, s, m, h or d)"),
    };
    Ok(Duration::from_secs(secs))
}

/// A stand-in for kube-apiserver's certificates.k8s.io/v1 API with the CSR approver and signer.
#[derive(Parser, Debug)]
#[command(name = "standin-apiserver", version)]
struct Cli {
    /// Output directory for ca.crt, ca.key, bootstrap-kubeconfig and admin.conf.
    #[arg(long)]
    dir: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Bootstrap token ID.SECRET (repeatable; the first goes into bootstrap-kubeconfig).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Load the cluster CA from DIR/ca.crt and DIR/ca.key instead of generating one.
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// Signer's maximum certificate duration (e.g. 96h, 8760h).
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    signing_duration: Duration,
    /// Delete issued, denied and failed CSRs this long after the condition.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    gc_after: Duration,
    /// Delete pending CSRs this long after creation.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pending_gc_after: Duration,
    /// Answer requests without credentials with 401 instead of treating them as system:anonymous.
    #[arg(long)]
    no_anonymous: bool,
    /// Accept CSRs that a node makes for another node, as the real server does.
    #[arg(long)]
    permissive_create: bool,
    /// Log every request on stderr.
    #[arg(long)]
    log_requests: bool,
    /// Fault: latency added to every CSR API request (e.g. 200ms).
    #[arg(long, value_parser = parse_duration)]
    latency: Option<Duration>,
    /// Fault: the first N CSR API requests fail (see --fail-code).
    #[arg(long, default_value_t = 0)]
    fail_next: u32,
    /// Fault: status code for --fail-next (500 or 503).
    #[arg(long, default_value_t = 500)]
    fail_code: u16,
    /// Fault: the first N CSR API requests get 429 with Retry-After (see --retry-after).
    #[arg(long, default_value_t = 0)]
    throttle_next: u32,
    /// Fault: Retry-After seconds for --throttle-next.
    #[arg(long, default_value_t = 1)]
    retry_after: u32,
    /// Fault: every watch stream ends after N events (0: immediately).
    #[arg(long)]
    watch_event_limit: Option<usize>,
    /// Fault: the approver denies the first N CSRs.
    #[arg(long, default_value_t = 0)]
    deny_next: u32,
    /// Fault: the signer marks the first N approved CSRs Failed.
    #[arg(long, default_value_t = 0)]
    fail_next_csr: u32,
    /// Fault: never auto-approve.
    #[arg(long)]
    never_approve: bool,
    /// Fault: never sign approved CSRs.
    #[arg(long)]
    never_sign: bool,
    /// Fault: sign the first N certificates for a different key than the CSR's.
    #[arg(long, default_value_t = 0)]
    wrong_key_next: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.dir).with_context(|| format!("creating {}", cli.dir.display()))?;
    let opts = Options {
        listen: cli.listen,
        ca_dir: cli.ca_dir.clone(),
        tokens: cli.tokens.clone(),
        signing_duration: cli.signing_duration,
        gc_after: cli.gc_after,
        pending_gc_after: cli.pending_gc_after,
        anonymous: !cli.no_anonymous,
        strict_create: !cli.permissive_create,
        log_to_stderr: cli.log_requests,
        faults: Faults {
            latency: cli.latency.unwrap_or_default(),
            fail_next: cli.fail_next,
            fail_code: cli.fail_code,
            throttle_next: cli.throttle_next,
            retry_after_seconds: cli.retry_after,
            watch_event_limit: cli.watch_event_limit,
            deny_next: cli.deny_next,
            fail_csr_next: cli.fail_next_csr,
            never_approve: cli.never_approve,
            never_sign: cli.never_sign,
            wrong_key_next: cli.wrong_key_next,
        },
        ..Options::default()
    };
    let api = StandIn::start(opts)?;
    std::fs::write(cli.dir.join("ca.crt"), api.ca_pem())?;
    write_private_file(&cli.dir.join("ca.key"), api.ca_key_pem())?;
    api.write_bootstrap_kubeconfig(&cli.dir.join("bootstrap-kubeconfig"))?;
    api.write_admin_kubeconfig(&cli.dir.join("admin.conf"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", api.url())?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    api.shutdown();
    Ok(())
}
