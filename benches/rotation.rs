//! `make bench`: rotation cost, measured against openssl in the same run.
//! 1. One ECDSA P-384 leaf from the local CA, three ways, interleaved run by run:
//!    in-process (the daemon's path, trigger to fsynced link), whole process
//!    (`kube-cert-agent rotate apiserver`, start to exit: what an operator or a cron job
//!    pays), and the shell pipeline an admin scripts: genpkey + req + x509 + mv + sync.
//! 2. RSA-4096 key generation against `openssl genpkey ... rsa_keygen_bits:4096`.
//!
//! Prints medians and ratios; asserts correctness only, never time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_cert_agent::config::Config;
use kube_cert_agent::paths::NodeRoot;
use kube_cert_agent::pki::keygen::{self, KeyType};
use kube_cert_agent::rotation::{self, Action, Request};
use kube_cert_agent::store::Store;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

const CONFIG: &str = "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n- name: apiserver\n  \
     ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/apiserver.crt\n  \
     key: /etc/kubernetes/pki/apiserver.key\n  subject: {commonName: kube-apiserver}\n  dnsNames: [kubernetes]\n  \
     usages: [serverAuth]\n  keyType: ecdsa-p384\n";

/// What an admin scripts: a key, a CSR, the CA signs it, files moved into place and synced.
const OPENSSL_PIPELINE: &str =
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out new.key 2>/dev/null
openssl req -new -key new.key -subj /CN=kube-apiserver -out new.csr
openssl x509 -req -in new.csr -CA ca.crt -CAkey ca.key -days 4 -out new.crt \
  -extfile /dev/stdin 2>/dev/null <<EOF
subjectAltName=DNS:kubernetes
extendedKeyUsage=serverAuth
EOF
mv new.key ossl.key && mv new.crt ossl.crt && sync ossl.crt ossl.key";

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let node = tempfile::tempdir().unwrap();
    let pki = node.path().join("etc/kubernetes/pki");
    std::fs::create_dir_all(&pki).unwrap();
    sh(
        &pki,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ca.key 2>/dev/null
         openssl req -x509 -new -key ca.key -subj /CN=kubernetes -days 3650 -out ca.crt \
           -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,digitalSignature",
    );
    std::fs::create_dir_all(node.path().join("etc/kube-cert-agent")).unwrap();
    std::fs::write(node.path().join("etc/kube-cert-agent/config.yaml"), CONFIG).unwrap();
    let config = Config::parse(Path::new("bench.yaml"), CONFIG).unwrap();
    let root = NodeRoot::new(node.path());
    let store = Store::new(root.clone(), config.history);
    let policy = config.renewal.policy();
    let spec = &config.certificates[0];
    let in_process = || {
        let req = Request {
            forced: true,
            dry_run: false,
            repair_only: false,
            now: time::OffsetDateTime::now_utc(),
        };
        let t = Instant::now();
        let o = rotation::rotate_certificate(&root, &store, &policy, spec, req, &[], None);
        let d = t.elapsed();
        assert!(matches!(o.action, Action::Rotated(_)), "{}", o.line());
        d
    };
    let agent = env!("CARGO_BIN_EXE_kube-cert-agent");
    let whole_process = || {
        let t = Instant::now();
        let out = Command::new(agent)
            .arg("--root")
            .arg(node.path())
            .args(["rotate", "apiserver"])
            .output()
            .unwrap();
        let d = t.elapsed();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("rotated"),
            "{out:?}"
        );
        d
    };
    in_process(); // the first run migrates kubeadm's plain files: not a rotation
    let (mut inproc, mut process, mut openssl) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        inproc.push(in_process());
        process.push(whole_process());
        let t = Instant::now();
        sh(&pki, OPENSSL_PIPELINE);
        openssl.push(t.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (i, p, o) = (ms(median(inproc)), ms(median(process)), ms(median(openssl)));
    println!("ECDSA P-384 rotation from the local CA, median of {runs} interleaved runs:");
    println!("  openssl genpkey + req + x509 + mv + sync (shell pipeline):     {o:.2} ms");
    println!(
        "  kube-cert-agent rotate apiserver, whole process, start to exit: {p:.2} ms, ratio {:.3} (target <= 0.2)",
        p / o
    );
    println!(
        "  kube-cert-agent in-process (daemon), trigger to fsynced link:   {i:.2} ms, ratio {:.3}",
        i / o
    );

    let rsa_runs = runs;
    let mut ours = Vec::new();
    for _ in 0..rsa_runs {
        let t = Instant::now();
        let k = keygen::generate(KeyType::Rsa4096).unwrap();
        ours.push(t.elapsed());
        assert!(k.serialize_der().len() > 2000);
    }
    let mut theirs = Vec::new();
    for _ in 0..rsa_runs {
        let t = Instant::now();
        sh(
            &pki,
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out rsa.key 2>/dev/null",
        );
        theirs.push(t.elapsed());
    }
    let total = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
    let (to, tt) = (total(&ours), total(&theirs));
    println!(
        "RSA-4096 key generation, {rsa_runs} runs (times vary a lot per run: primes are random):"
    );
    println!(
        "  kube-cert-agent (aws-lc-rs): median {:.0} ms, total {:.2} s",
        median(ours).as_secs_f64() * 1e3,
        to
    );
    println!(
        "  openssl genpkey:             median {:.0} ms, total {:.2} s",
        median(theirs).as_secs_f64() * 1e3,
        tt
    );
    println!(
        "  ratio agent/openssl (totals): {:.2} (target <= 1.0)",
        to / tt
    );
}
