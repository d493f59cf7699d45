//! `make bench`: what a Prometheus scrape of the daemon's `/metrics` costs with 1,000 and
//! 10,000 certificates in the inventory (BENCH_SCRAPE_CERTS="1000,10000"), whole process
//! over loopback HTTP:
//! - the first scrape after start-up (the inventory is read and parsed: what a scrape costs
//!   after the files changed), then the median of BENCH_SCRAPE_ROUNDS (default 20) scrapes
//!   with the inventory cached (what Prometheus costs the node every scrape interval);
//! - the daemon's RSS after READY=1, after the scrapes, and its peak (VmHWM);
//! - against benches/scrape_peer.py in the same run: x509-certificate-exporter's per-scrape
//!   work (read, parse and render every file on every scrape) in python3-cryptography, its
//!   median per scrape and peak RSS.
//!
//! A benchmark, not a test: it prints figures and asserts only that every certificate is in
//! the scrape.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
use support::daemon::Daemon;
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
/// The interpreter with Debian's python3-cryptography (not a virtualenv's).
const PYTHON: &str = "/usr/bin/python3";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `VmRSS` and `VmHWM` of `pid`, in kB.
fn rss(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A CA (cert and key, for the one managed certificate) and `n` leaves signed by it, made
/// with rcgen (openssl would take minutes).
fn make_tree(pki: &Path, n: usize) {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kubernetes");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(pki.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(pki.join("ca.key"), ca_key.serialize_pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::create_dir_all(pki.join("leaves")).unwrap();
    for i in 0..n {
        let mut p = CertificateParams::new(vec![format!("leaf-{i}.example")]).unwrap();
        p.distinguished_name.push(DnType::OrganizationName, "bench");
        p.distinguished_name
            .push(DnType::CommonName, format!("leaf-{i}"));
        let c = p.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(pki.join(format!("leaves/leaf-{i:05}.crt")), c.pem()).unwrap();
    }
}

/// One scrape: seconds, and the number of `x509_cert_not_after` series in it.
fn timed_scrape(addr: &str) -> (f64, usize, usize) {
    let t = Instant::now();
    let text = support::metrics::scrape(addr);
    let s = t.elapsed().as_secs_f64();
    let series = text
        .lines()
        .filter(|l| l.starts_with("x509_cert_not_after{"))
        .count();
    (s, series, text.len())
}

#[derive(serde::Deserialize)]
struct Peer {
    median_s: f64,
    series: std::collections::BTreeMap<String, usize>,
    maxrss_kb: u64,
}

fn bench(n: usize, rounds: usize) {
    let node = NodeTree::new();
    let t = Instant::now();
    make_tree(&node.path(PKI), n);
    eprintln!(
        "made {n} certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nmetrics: {{listen: \"127.0.0.1:0\"}}\ncertificates:\n- name: apiserver\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver.crt\n  key: {PKI}/apiserver.key\n  subject: {{commonName: kube-apiserver}}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n"
        ),
    )
    .unwrap();
    // The leaves, the CA and the managed certificate.
    let want = n + 2;

    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", Duration::from_secs(300));
    let addr = support::metrics::address(&d);
    let pid = d.pid();
    let (rss_ready, _) = rss(pid);
    let (cold, series, bytes) = timed_scrape(&addr);
    assert_eq!(series, want, "every certificate in the first scrape");
    let mut warm = vec![];
    for _ in 0..rounds {
        let (s, series, _) = timed_scrape(&addr);
        assert_eq!(series, want, "every certificate in every scrape");
        warm.push(s);
    }
    let warm = median(warm);
    let (rss_after, hwm) = rss(pid);
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(60)), Some(0));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/scrape_peer.py");
    let peer_rounds = rounds.clamp(1, 5).to_string();
    let out = Command::new(PYTHON)
        .arg(script)
        .arg(node.path(PKI))
        .arg(&peer_rounds)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: Peer = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        peer.series.get("x509_cert_not_after"),
        Some(&(n + 2)),
        "the peer read every certificate too"
    );

    let mb = |kb: u64| kb as f64 / 1024.0;
    println!("metrics_scrape: GET /metrics with {want} certificates in the inventory ({bytes} bytes of exposition):");
    println!(
        "  first scrape (inventory read and parsed):       {:8.1} ms",
        cold * 1e3
    );
    println!(
        "  later scrapes (inventory cached), median of {rounds}: {:8.1} ms",
        warm * 1e3
    );
    println!(
        "  peer: python3-cryptography, read+parse+render per scrape (x509-certificate-exporter's way), median of {peer_rounds}: {:8.1} ms",
        peer.median_s * 1e3
    );
    println!(
        "  ratio to the peer: first scrape {:.2}, later scrapes {:.3}",
        cold / peer.median_s,
        warm / peer.median_s
    );
    println!(
        "  agent RSS: {:.1} MB after READY=1, {:.1} MB after the scrapes, peak {:.1} MB; peer peak {:.1} MB",
        mb(rss_ready),
        mb(rss_after),
        mb(hwm),
        mb(peer.maxrss_kb)
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SCRAPE_CERTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("BENCH_SCRAPE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let probe = Command::new(PYTHON)
        .args(["-c", "import cryptography"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "the peer needs {PYTHON} with python3-cryptography (apt-get install python3-cryptography)"
    );
    for n in sizes {
        bench(n, rounds.max(1));
    }
}
