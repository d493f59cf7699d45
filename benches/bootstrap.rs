//! `make bench`: kubelet bootstrapping and renewal against the stand-in API server on
//! loopback: requests sent per rotation (target: 3 or fewer) and the agent's own time per
//! rotation, excluding the time the server took to approve and sign.

use std::path::Path;
use std::time::{Duration, Instant};

use kube_cert_agent::config::Config;
use kube_cert_agent::kubelet::{obtain, Node};
use kube_cert_agent::paths::NodeRoot;
use kube_cert_agent::pki::csr::KubeletCert;
use kube_cert_agent::store::Store;
use kube_standin_apiserver::{Options, StandIn};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let api = StandIn::start(Options::default()).unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let root = NodeRoot::new(node_dir.path());
    for d in ["var/lib/kubelet/pki", "etc/kubernetes"] {
        std::fs::create_dir_all(node_dir.path().join(d)).unwrap();
    }
    api.write_bootstrap_kubeconfig(&node_dir.path().join("var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    let config = Config::parse(
        Path::new("bench.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: bench-node\nkubelet: {}\n",
    )
    .unwrap();
    let spec = config.kubelet.as_ref().unwrap();
    let store = Store::new(root.clone(), config.history);
    let node = Node {
        root: &root,
        spec,
        node_name: "bench-node".into(),
        store: &store,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let quiet = |_: &str| {};

    for (label, first_uses_token) in [
        ("bootstrap with the token", true),
        ("renewal with the client certificate", false),
    ] {
        let (mut total, mut own, mut requests) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            if first_uses_token {
                // No current certificate: every run is a first login.
                let _ = std::fs::remove_file(
                    node_dir
                        .path()
                        .join("var/lib/kubelet/pki/kubelet-client-current.pem"),
                );
            }
            api.clear_requests();
            let t = Instant::now();
            let o = rt
                .block_on(obtain(&node, KubeletCert::Client, &quiet))
                .unwrap();
            let d = t.elapsed();
            let want = if first_uses_token {
                "bootstrap token"
            } else {
                "client certificate"
            };
            assert_eq!(o.authenticated_with, want, "run {i}");
            assert_eq!(
                o.requests as usize,
                api.requests().len(),
                "client and server count alike"
            );
            total.push(d);
            own.push(d.saturating_sub(o.waited));
            requests.push(o.requests);
        }
        println!("kubelet client certificate, {label}, {runs} runs on loopback:");
        println!(
            "  API requests per rotation: {:?} (target: 3 or fewer)",
            requests.iter().max().unwrap()
        );
        println!(
            "  total time, median: {:.2} ms",
            median(total).as_secs_f64() * 1e3
        );
        println!(
            "  agent's own time (key, CSR, TLS, create, check, install, kubelet.conf), median: {:.2} ms",
            median(own).as_secs_f64() * 1e3
        );
    }
}
