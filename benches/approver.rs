//! `make bench`: `kube-cert-agent approver` against the stand-in API server on loopback.
//! 10,000 kubelet-serving CSRs (BENCH_CSRS) from 100 nodes (BENCH_NODES), each node keeping
//! one CSR outstanding at a time (as a kubelet does; two at once would supersede each
//! other). Reported: time from the CSR's creation (the API's answer) to its approval (the
//! Approved watch event), median and p99, and approvals per second over the whole run.
//! The stand-in's signer also signs every approved CSR, as kube-controller-manager would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, WatchEvent};
use k8s_openapi::ByteString;
use kube_cert_agent::approver::connect::from_kubeconfig;
use kube_cert_agent::approver::controller::{Controller, OnFailure, Settings};
use kube_cert_agent::approver::metrics::Metrics;
use kube_cert_agent::approver::rules::Policy;
use kube_cert_agent::kube::client::ApiClient;
use kube_cert_agent::pki::csr::{build, KubeletCert};
use kube_cert_agent::pki::keygen::{generate, KeyType};
use kube_standin_apiserver::{Options, StandIn};
use tokio::sync::oneshot;

const PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client(dir: &std::path::Path, name: &str, kubeconfig: String) -> ApiClient {
    let p = dir.join(format!("{name}.conf"));
    std::fs::write(&p, kubeconfig).unwrap();
    let (endpoint, creds) = from_kubeconfig(&p).unwrap();
    ApiClient::new(&endpoint, &creds).unwrap()
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

fn main() {
    let total = env("BENCH_CSRS", 10_000);
    let nodes = env("BENCH_NODES", 100).min(total);
    let api = StandIn::start(Options {
        watch_history: 100_000,
        ..Options::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for n in 0..nodes {
        api.set_node(
            &format!("node-{n}"),
            &[
                ("Hostname", &format!("node-{n}")),
                ("InternalIP", &format!("10.1.{}.{}", n / 250, n % 250 + 1)),
            ],
        )
        .unwrap();
    }
    // CSRs made up front: the run measures the approver, not key generation.
    let per_node = total.div_ceil(nodes);
    let requests: Vec<Vec<String>> = (0..nodes)
        .map(|n| {
            let name = format!("node-{n}");
            let ip = format!("10.1.{}.{}", n / 250, n % 250 + 1).parse().unwrap();
            (0..per_node)
                .map(|_| {
                    build(
                        KubeletCert::Serving,
                        &name,
                        std::slice::from_ref(&name),
                        &[ip],
                        &generate(KeyType::EcdsaP256).unwrap(),
                    )
                    .unwrap()
                })
                .collect()
        })
        .collect();
    let admin = client(
        dir.path(),
        "admin",
        api.client_kubeconfig("kubernetes-admin", &["system:masters"])
            .unwrap(),
    );
    let node_clients: Vec<ApiClient> = (0..nodes)
        .map(|n| {
            client(
                dir.path(),
                &format!("node-{n}"),
                api.client_kubeconfig(&format!("system:node:node-{n}"), &["system:nodes"])
                    .unwrap(),
            )
        })
        .collect();

    // The watch replays from here, however late it is established.
    let rv0 = api.resource_version();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (latencies, elapsed) = rt.block_on(async move {
        let settings = Settings {
            policy: Policy::default(),
            on_failure: OnFailure::Deny,
            breaker_margin: 10,
            identity: "bench".into(),
            namespace: "kube-system".into(),
            lease_name: "kube-cert-agent-approver".into(),
        };
        // Leadership is given: the bench measures approvals, not elections.
        let (_leader_tx, leader_rx) = tokio::sync::watch::channel(true);
        tokio::spawn(Controller::new(admin.clone(), settings, Metrics::new(), leader_rx).run());

        // One watch over every CSR tells each waiting node when its CSR was approved.
        let waiters: Waiters = Arc::default();
        let w = waiters.clone();
        let watcher = admin.clone();
        tokio::spawn(async move {
            let _ = watcher
                .watch::<CertificateSigningRequest>(
                    &format!("{PATH}?watch=true&resourceVersion={rv0}"),
                    |ev| {
                        if let WatchEvent::Modified(o) = ev {
                            let approved = o
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| c.iter().any(|c| c.type_ == "Approved"));
                            if approved {
                                if let Some(tx) = w
                                    .lock()
                                    .unwrap()
                                    .remove(o.metadata.name.as_deref().unwrap_or(""))
                                {
                                    let _ = tx.send(Instant::now());
                                }
                            }
                        }
                        true
                    },
                )
                .await;
        });
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (n, (c, reqs)) in node_clients.into_iter().zip(requests).enumerate() {
            let waiters = waiters.clone();
            let quota = per_node.min(total.saturating_sub(n * per_node));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for (i, pem) in reqs.into_iter().take(quota).enumerate() {
                    let name = format!("bench-{n}-{i}");
                    let (tx, rx) = oneshot::channel();
                    waiters.lock().unwrap().insert(name.clone(), tx);
                    let csr = CertificateSigningRequest {
                        metadata: ObjectMeta {
                            name: Some(name),
                            ..Default::default()
                        },
                        spec: CertificateSigningRequestSpec {
                            request: ByteString(pem.into_bytes()),
                            signer_name: "kubernetes.io/kubelet-serving".into(),
                            usages: Some(vec!["digital signature".into(), "server auth".into()]),
                            ..Default::default()
                        },
                        status: None,
                    };
                    c.create_csr(&csr).await.expect("create");
                    let created = Instant::now();
                    let approved = tokio::time::timeout(Duration::from_secs(60), rx)
                        .await
                        .expect("approved within 60 s")
                        .unwrap();
                    lat.push(approved.saturating_duration_since(created));
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all, start.elapsed())
    });
    let mut l = latencies;
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "approver: {} CSRs from {nodes} nodes: creation to approval median {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.0} approvals/s ({:.1} s)",
        l.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l[l.len() - 1].as_secs_f64() * 1e3,
        l.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let approved = api
        .list()
        .iter()
        .filter(|o| {
            o.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Approved"))
        })
        .count();
    assert_eq!(approved, l.len(), "every CSR approved, none denied");
}
