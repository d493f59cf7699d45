//! The simulator's request counts checked against reality: a few hundred agents (in-process,
//! each with its own node tree, running the product's kubelet CSR client) bootstrap and
//! then renew both kubelet certificates against the stand-in API server on loopback. It
//! counts the requests the stand-in received per renewal (and checks that the clients
//! counted alike), and the CPU time of the stand-in's threads (its runtime names them;
//! `/proc/self/task/*/schedstat`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use kube_cert_agent::config::Config;
use kube_cert_agent::kubelet::{obtain, Node, Progress};
use kube_cert_agent::paths::NodeRoot;
use kube_cert_agent::pki::csr::KubeletCert;
use kube_cert_agent::store::Store;
use kube_standin_apiserver::{Options, StandIn, KUBELET_SERVING};

/// One round: every node renews both kubelet certificates once.
pub struct Round {
    pub label: &'static str,
    pub nodes: usize,
    /// Requests the clients sent, client certificate and serving certificate.
    pub requests: [u64; 2],
    /// Requests the stand-in received (must equal the clients' sum).
    pub received: u64,
    /// CPU time of the stand-in's threads; `None` without /proc schedstat.
    pub standin_cpu: Option<Duration>,
    pub wall: Duration,
}

/// CPU time (user + system) of the stand-in's threads.
fn standin_cpu() -> Option<Duration> {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // The runtime's thread name, cut to the kernel's 15 characters.
        if !comm.starts_with("standin-apiserv") {
            continue;
        }
        // schedstat's first field: nanoseconds spent on a CPU.
        let s = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// `nodes` agents, `parallel` at a time: first the bootstrap of both certificates (the
/// client one with the token, the serving one with the new client certificate), then a
/// renewal of both with the client certificate, as a steady-state renewal runs.
pub fn run(nodes: usize, parallel: usize) -> Vec<Round> {
    let api = StandIn::start(Options::default()).expect("the stand-in starts");
    let dirs: Vec<tempfile::TempDir> = (0..nodes)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    for d in &dirs {
        for sub in ["var/lib/kubelet/pki", "etc/kubernetes"] {
            std::fs::create_dir_all(d.path().join(sub)).expect("node tree");
        }
        api.write_bootstrap_kubeconfig(&d.path().join("var/lib/kubelet/bootstrap-kubeconfig"))
            .expect("bootstrap kubeconfig");
    }
    let config = Config::parse(
        Path::new("fleet.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: fleet\nkubelet: {}\n",
    )
    .expect("config");
    let spec = config.kubelet.as_ref().expect("kubelet section");
    let roots: Vec<NodeRoot> = dirs.iter().map(|d| NodeRoot::new(d.path())).collect();
    let stores: Vec<Store> = roots
        .iter()
        .map(|r| Store::new(r.clone(), config.history))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let quiet: Progress = &|_: &str| {};
    let stop = AtomicBool::new(false);
    let mut rounds = vec![];
    std::thread::scope(|s| {
        // kubelet-serving CSRs wait for a person or an approver: approve them as they come.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for o in api.list() {
                    let pending = o
                        .status
                        .as_ref()
                        .and_then(|st| st.conditions.as_ref())
                        .map_or(true, |c| c.is_empty());
                    if o.spec.signer_name == KUBELET_SERVING && pending {
                        let _ = api.approve(o.metadata.name.as_deref().unwrap_or_default());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        for label in ["bootstrap", "renewal"] {
            api.clear_requests();
            let cpu = standin_cpu();
            let started = Instant::now();
            let requests = rt.block_on(
                stream::iter(0..nodes)
                    .map(|i| {
                        let node = Node {
                            root: &roots[i],
                            spec,
                            node_name: format!("fleet-{i}"),
                            store: &stores[i],
                        };
                        async move {
                            let c = obtain(&node, KubeletCert::Client, quiet).await;
                            let c = c.unwrap_or_else(|e| panic!("fleet-{i} client: {e}"));
                            let s = obtain(&node, KubeletCert::Serving, quiet).await;
                            let s = s.unwrap_or_else(|e| panic!("fleet-{i} serving: {e}"));
                            [c.requests, s.requests]
                        }
                    })
                    .buffer_unordered(parallel)
                    .fold([0u64; 2], |a, b| async move { [a[0] + b[0], a[1] + b[1]] }),
            );
            let wall = started.elapsed();
            let standin_cpu = cpu.zip(standin_cpu()).map(|(a, b)| b.saturating_sub(a));
            rounds.push(Round {
                label,
                nodes,
                requests,
                received: api.requests().len() as u64,
                standin_cpu,
                wall,
            });
        }
        stop.store(true, Ordering::Relaxed);
    });
    rounds
}
