//! `make bench`: `check --output json` over 10,000 certificates against a shell loop of
//! `openssl x509 -noout -enddate` over the same files, in one run, reported as a ratio.
//! A benchmark, not a test: it prints figures and asserts nothing about time.

use std::process::Command;
use std::time::Instant;

use rcgen::{CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

fn main() {
    let n: usize = std::env::var("BENCH_CERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("etc/kubernetes/pki");
    std::fs::create_dir_all(&pki).unwrap();

    // The tree: one CA and n leaves signed by it (made with rcgen: openssl would take minutes).
    let t = Instant::now();
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench-ca");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(pki.join("ca.crt"), ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    for i in 0..n {
        let mut p = CertificateParams::new(vec![format!("leaf-{i}.example")]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("leaf-{i}"));
        let c = p.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(pki.join(format!("leaf-{i:05}.crt")), c.pem()).unwrap();
    }
    eprintln!(
        "made {n} certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let agent = env!("CARGO_BIN_EXE_kube-cert-agent");
    // Warm the page cache for both contenders alike.
    let _ = Command::new(agent)
        .args(["check", "--output", "json"])
        .arg(&pki)
        .output();
    let mut agent_runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(agent)
            .args(["check", "--output", "json"])
            .arg(&pki)
            .output()
            .unwrap();
        agent_runs.push(t.elapsed().as_secs_f64());
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), n + 1, "every certificate reported");
    }
    agent_runs.sort_by(f64::total_cmp);
    let agent_s = agent_runs[1];

    let t = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg("for f in \"$1\"/*.crt; do openssl x509 -noout -enddate -in \"$f\"; done")
        .arg("sh")
        .arg(&pki)
        .output()
        .unwrap();
    let openssl_s = t.elapsed().as_secs_f64();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n + 1);

    println!(
        "check --output json over {} certificates: {:.3} s (median of 3)",
        n + 1,
        agent_s
    );
    println!(
        "shell loop of openssl x509 -noout -enddate:  {:.3} s",
        openssl_s
    );
    println!(
        "ratio: check is {:.0}x faster than the openssl loop",
        openssl_s / agent_s
    );
}
