//! `make bench`: `check --output json` over 10,000 certificates, whole process (start to
//! exit), against peers measured in the same run, interleaved round by round:
//! - benches/check_peers.py `parse`: python3-cryptography parsing every file and printing
//!   the same fields as JSON, no signature checked (the floor a script gets to);
//! - benches/check_peers.py `verify`: the same plus each signature against its CA (the
//!   work `check` does);
//! - a shell loop of `openssl x509 -noout -enddate` (once; BENCH_OPENSSL_LOOP=0 skips it:
//!   it takes minutes).
//!
//! A benchmark, not a test: it prints figures and asserts nothing about time.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rcgen::{CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

/// The interpreter with Debian's python3-cryptography (not a virtualenv's).
const PYTHON: &str = "/usr/bin/python3";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Run `cmd`, check that it printed `rows` JSON rows, return the wall time in seconds.
fn timed_rows(cmd: &mut Command, rows: usize) -> f64 {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(
        out.status.code().is_some(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(parsed.len(), rows, "{cmd:?}: every certificate reported");
    s
}

fn make_tree(pki: &Path, n: usize) {
    // One CA and n leaves signed by it (made with rcgen: openssl would take minutes).
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
}

fn main() {
    let n: usize = std::env::var("BENCH_CERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/check_peers.py");
    let probe = Command::new(PYTHON)
        .args(["-c", "import cryptography"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "the python peers need {PYTHON} with python3-cryptography (apt-get install python3-cryptography)"
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("etc/kubernetes/pki");
    std::fs::create_dir_all(&pki).unwrap();
    let t = Instant::now();
    make_tree(&pki, n);
    eprintln!(
        "made {n} certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let agent = env!("CARGO_BIN_EXE_kube-cert-agent");
    let check = || {
        let mut c = Command::new(agent);
        c.args(["check", "--output", "json"]).arg(&pki);
        c
    };
    let python = |mode: &str| {
        let mut c = Command::new(PYTHON);
        c.arg(peers).arg(mode).arg(&pki);
        c
    };
    // Warm the page cache for every contender alike.
    timed_rows(&mut check(), n + 1);
    let (mut ours, mut parse, mut verify) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(timed_rows(&mut check(), n + 1));
        parse.push(timed_rows(&mut python("parse"), n + 1));
        verify.push(timed_rows(&mut python("verify"), n + 1));
    }
    let (ours, parse, verify) = (median(ours), median(parse), median(verify));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "check --output json over {} certificates, signatures verified, whole process \
         (median of {rounds} interleaved rounds, {cores} cores):",
        n + 1
    );
    println!("  kube-cert-agent check:                     {ours:.3} s");
    println!("  python3-cryptography, parse only:          {parse:.3} s");
    println!("  python3-cryptography, parse + verify:      {verify:.3} s");
    println!(
        "  ratio check/parse-only script: {:.2} (target < 1.0); check/verifying script: {:.2}",
        ours / parse,
        ours / verify
    );

    if std::env::var("BENCH_OPENSSL_LOOP").as_deref() == Ok("0") {
        return;
    }
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
    println!("  shell loop of openssl x509 -noout -enddate: {openssl_s:.3} s");
    println!(
        "  ratio: check is {:.0}x faster than the openssl loop",
        openssl_s / ours
    );
}
