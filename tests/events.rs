//! Kubernetes Events on the Node, recorded by a real daemon process against the stand-in API
//! server and read back with the real kubectl: `kubectl get events --field-selector
//! involvedObject.kind=Node`. Identical events are one object with a count; an unreachable
//! API server drops events with a counter and holds nothing up.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube_standin_apiserver::{Options, StandIn};
use support::daemon::{wait_until, Daemon};
use support::metrics::{self, one, parse};
use support::openssl::{self, Key};
use support::NodeTree;

const T: Duration = Duration::from_secs(60);
const PKI: &str = "/etc/kubernetes/pki";

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node that bootstraps kubelet's certificates from `api`, with a local CA and a
/// certificate `broken` whose CA key is missing (every rotation fails the same way).
fn node(api: &StandIn, serving: bool) -> NodeTree {
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    openssl::ca(&node.path(PKI), "ca", Key::P256, "kubernetes", 3650);
    // A control-plane node (the apiserver manifest): `broken`, whose CA key is missing,
    // fails there rather than being left absent as on a worker.
    std::fs::create_dir_all(node.path("/etc/kubernetes/manifests")).unwrap();
    std::fs::write(
        node.path("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        "",
    )
    .unwrap();
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: node-1\n\
             metrics: {{listen: \"127.0.0.1:0\"}}\n\
             kubelet:\n  serving: {{enabled: {serving}, addresses: [node-1, 10.0.0.1]}}\n\
             certificates:\n- name: broken\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/missing-ca.key}}\n  cert: {PKI}/broken.crt\n  key: {PKI}/broken.key\n  subject: {{commonName: broken}}\n"
        ),
    )
    .unwrap();
    node
}

fn admin(api: &StandIn, dir: &Path) -> std::path::PathBuf {
    let p = dir.join("admin.conf");
    api.write_admin_kubeconfig(&p).unwrap();
    p
}

#[test]
fn kubectl_sees_the_nodes_events_pending_csr_then_rotations() {
    let api = StandIn::start(Options::default()).unwrap();
    let node = node(&api, true);
    let admin = admin(&api, node.root());
    let d = Daemon::start(&node, &[]);
    let addr = metrics::address(&d);
    // The serving CSR waits for a human: an event says so, with the command, and the
    // pending-CSR gauge shows it (the daemon is still in its first reconcile).
    let pending = wait_until(T, || {
        api.events("default")
            .iter()
            .any(|e| e.reason.as_deref() == Some("CertificateSigningRequestPending"))
    });
    assert!(pending.is_some(), "no pending event\n{}", d.log_text());
    let csr = api
        .list()
        .into_iter()
        .find(|c| c.spec.signer_name == "kubernetes.io/kubelet-serving")
        .and_then(|c| c.metadata.name)
        .expect("a serving CSR");
    let samples = parse(&metrics::scrape(&addr));
    let age = one(
        &samples,
        "kube_cert_agent_pending_csr_age_seconds",
        &[("signer", "kubernetes.io/kubelet-serving")],
    );
    assert!(age.value >= 0.0);
    let out = kubectl(
        &admin,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Node",
        ],
    );
    assert!(out.contains("CertificateSigningRequestPending"), "{out}");
    assert!(
        out.contains(&format!("kubectl certificate approve {csr}")),
        "{out}"
    );
    assert!(out.contains("node/node-1"), "{out}");

    // `status` says the same while the daemon is busy waiting: the CSR, its signer, its age
    // and the command.
    let out = node.agent(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "pending CSR {csr} (signer kubernetes.io/kubelet-serving)"
        )) && text.contains(&format!("kubectl certificate approve {csr}")),
        "{text}"
    );
    let out = node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"]["pendingCsrs"][0]["name"], csr.as_str(), "{v}");

    api.approve(&csr).unwrap();
    let rotated = wait_until(T, || {
        let reasons: Vec<String> = api
            .events("default")
            .iter()
            .filter(|e| e.reason.as_deref() == Some("CertificateRotated"))
            .filter_map(|e| e.message.clone())
            .collect();
        reasons
            .iter()
            .any(|m| m.starts_with("kubelet-client: rotated"))
            && reasons
                .iter()
                .any(|m| m.starts_with("kubelet-serving: rotated"))
    });
    assert!(
        rotated.is_some(),
        "{:#?}\n{}",
        api.events("default"),
        d.log_text()
    );
    let out = kubectl(
        &admin,
        &[
            "get", "events", "--field-selector", "involvedObject.kind=Node,reason=CertificateRotated",
            "-o", "jsonpath={range .items[*]}{.type} {.source.component} {.involvedObject.name} {.message}{\"\\n\"}{end}",
        ],
    );
    assert!(
        out.contains("Normal kube-cert-agent node-1 kubelet-serving: rotated"),
        "{out}"
    );
    // The wait is over: no pending CSR any more, in the metrics or in `status`, which shows
    // the deadline and last success the metrics show.
    let done = wait_until(T, || {
        let out = node.agent(&["status", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["state"]["pendingCsrs"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            && v["state"]["certificates"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["name"] == "kubelet-serving" && c["lastSuccess"].is_string())
            })
    });
    assert!(
        done.is_some(),
        "{}",
        String::from_utf8_lossy(&node.agent(&["status", "--output", "json"]).stdout)
    );
    let out = node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = parse(&metrics::scrape(&addr));
    let serving = v["state"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubelet-serving")
        .unwrap()
        .clone();
    let deadline = one(
        &samples,
        "kube_cert_agent_renewal_timestamp_seconds",
        &[("name", "kubelet-serving")],
    )
    .value as i64;
    let from_status = time::OffsetDateTime::parse(
        serving["deadline"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert_eq!(from_status, deadline, "{serving}");
    let samples = parse(&metrics::scrape(&addr));
    assert!(
        support::metrics::find(&samples, "kube_cert_agent_pending_csr_age_seconds", &[]).is_empty()
    );
    // kubelet's TTL gauge equals notAfter (openssl) minus the scrape time.
    // The -current link is absolute, as kubelet writes it: a node path.
    let pem = node.resolved("/var/lib/kubelet/pki/kubelet-client-current.pem");
    let o = support::metrics::openssl_facts(&pem);
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let samples = parse(&metrics::scrape(&addr));
    let after = time::OffsetDateTime::now_utc().unix_timestamp();
    let ttl = one(
        &samples,
        "kubelet_certificate_manager_client_ttl_seconds",
        &[],
    )
    .value as i64;
    // Whole seconds, rounded down: up to one second under notAfter minus the scrape time.
    assert!(
        (o.not_after - after - 1..=o.not_after - before).contains(&ttl),
        "ttl {ttl}, notAfter {} scraped between {before} and {after}",
        o.not_after
    );
}

#[test]
fn the_same_failure_again_is_one_event_with_a_count() {
    let api = StandIn::start(Options::default()).unwrap();
    let node = node(&api, false);
    let admin = admin(&api, node.root());
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // Two failures through the control socket, after READY=1 (the node has its client
    // certificate by then).
    for _ in 0..2 {
        let out = node.agent(&["rotate", "broken"]);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let counted = wait_until(T, || {
        api.events("default")
            .iter()
            .any(|e| e.reason.as_deref() == Some("CertificateRotationFailed") && e.count >= Some(2))
    });
    assert!(
        counted.is_some(),
        "{:#?}\n{}",
        api.events("default"),
        d.log_text()
    );
    let out = kubectl(
        &admin,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Node,reason=CertificateRotationFailed",
            "-o",
            "jsonpath={.items[*].count}",
        ],
    );
    // One object, counted at least twice (the start-up failure may have gone out before
    // the node had its client certificate, and been dropped).
    let counts: Vec<i64> = out.split_whitespace().map(|c| c.parse().unwrap()).collect();
    assert_eq!(counts.len(), 1, "one object: {out}");
    assert!(counts[0] >= 2, "{out}");
}

#[test]
fn an_unreachable_api_server_drops_events_with_a_counter() {
    let api = StandIn::start(Options::default()).unwrap();
    let node = node(&api, false);
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let addr = metrics::address(&d);
    api.shutdown();
    // Each rotate is answered (the daemon is not waiting on the events), and its failure
    // event is dropped and counted.
    for _ in 0..3 {
        let out = node.agent(&["rotate", "broken"]);
        assert_eq!(out.status.code(), Some(4));
    }
    let mut dropped = 0.0;
    let seen = wait_until(T, || {
        let samples = parse(&metrics::scrape(&addr));
        dropped = one(
            &samples,
            "kube_cert_agent_events_dropped_total",
            &[("reason", "unreachable")],
        )
        .value;
        dropped >= 3.0
    });
    assert!(seen.is_some(), "dropped {dropped}\n{}", d.log_text());
    assert!(
        d.log_text().contains("ACTION=event-dropped") || d.log_text().contains("not delivered")
    );
}
