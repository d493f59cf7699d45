//! `make bench`: rotation cost, measured against openssl in the same run.
//! 1. One ECDSA P-384 leaf from the local CA, trigger to fsynced symlink (in-process, the
//!    daemon's path), against the shell pipeline genpkey + req + x509 + mv.
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
    let config = Config::parse(
        Path::new("bench.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n- name: apiserver\n  \
         ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/apiserver.crt\n  \
         key: /etc/kubernetes/pki/apiserver.key\n  subject: {commonName: kube-apiserver}\n  dnsNames: [kubernetes]\n  \
         usages: [serverAuth]\n  keyType: ecdsa-p384\n",
    )
    .unwrap();
    let root = NodeRoot::new(node.path());
    let store = Store::new(root.clone(), config.history);
    let policy = config.renewal.policy();
    let spec = &config.certificates[0];
    let mut agent = Vec::new();
    for i in 0..runs + 1 {
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
        if i > 0 {
            agent.push(d); // the first run migrates kubeadm's plain files: not a rotation
        }
    }
    let mut openssl = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        sh(
            &pki,
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out new.key 2>/dev/null
             openssl req -new -key new.key -subj /CN=kube-apiserver -out new.csr
             openssl x509 -req -in new.csr -CA ca.crt -CAkey ca.key -days 4 -out new.crt \
               -extfile /dev/stdin 2>/dev/null <<EOF
subjectAltName=DNS:kubernetes
extendedKeyUsage=serverAuth
EOF
             mv new.key ossl.key && mv new.crt ossl.crt && sync ossl.crt ossl.key",
        );
        openssl.push(t.elapsed());
    }
    let (a, o) = (median(agent), median(openssl));
    println!("ECDSA P-384 rotation, trigger to fsynced symlink, median of {runs}:");
    println!("  kube-cert-agent: {:.2} ms", a.as_secs_f64() * 1e3);
    println!(
        "  openssl genpkey + req + x509 + mv (+ sync): {:.2} ms",
        o.as_secs_f64() * 1e3
    );
    println!(
        "  ratio agent/openssl: {:.3} (target <= 0.2)",
        a.as_secs_f64() / o.as_secs_f64()
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
