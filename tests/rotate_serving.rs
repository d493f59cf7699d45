//! `kube-cert-agent rotate kubelet-serving` sent through the running daemon (the control
//! socket), against the stand-in API server, which never approves a serving CSR by itself
//! (as kube-controller-manager). The CLI names the CSR to approve, a second `rotate` makes
//! no second CSR, the socket keeps answering while the CSR waits, and once the real
//! kubectl approves it the daemon installs the certificate.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube_standin_apiserver::{Options, StandIn, KUBELET_SERVING};
use support::daemon::{key_matches, serial_of, wait_until, Daemon};
use support::{openssl, text, NodeTree};

const T: Duration = Duration::from_secs(30);
const SERVING_PEM: &str = "/var/lib/kubelet/pki/kubelet-server-current.pem";
const SAVED: &str = "/var/lib/kube-cert-agent/pending-csr-kubelet-serving.json";
/// `rotate` through the daemon while a CSR waits for a person (README, "Exit codes").
const AWAITING_APPROVAL: i32 = 5;

/// A worker named node-1 with kubelet's client and serving certificates, both valid: the
/// daemon starts with nothing to request, so the serving CSR is the `rotate` command's.
/// The stand-in then holds no serving CSR.
fn node_with_both_certificates(api: &StandIn) -> NodeTree {
    let node = NodeTree::worker(
        api,
        "kubelet:\n  serving: {enabled: true, addresses: [node-1, 127.0.0.1]}\n  csrTimeout: 10m\n",
    );
    let out = node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No daemon yet: this `rotate` waits here for the approval the test gives.
    let mut seed = support::agent_cmd()
        .arg("--root")
        .arg(node.root())
        .args(["rotate", "kubelet-serving"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(T, || serving_csrs(api).len() == 1).expect("the seeding serving CSR");
    let csr = name_of(&serving_csrs(api)[0]);
    api.approve(&csr).unwrap();
    assert!(seed.wait().unwrap().success());
    api.delete(&csr).unwrap();
    node
}

fn serving_csrs(api: &StandIn) -> Vec<CertificateSigningRequest> {
    api.list()
        .into_iter()
        .filter(|c| {
            c.spec.signer_name == KUBELET_SERVING
                && c.spec.username.as_deref() == Some("system:node:node-1")
        })
        .collect()
}

fn name_of(csr: &CertificateSigningRequest) -> String {
    csr.metadata.name.clone().unwrap()
}

/// Neither approved, denied, failed nor issued.
fn pending(api: &StandIn, csr: &str) -> bool {
    api.get(csr).is_some_and(|c| {
        c.status.as_ref().map_or(true, |s| {
            s.conditions.as_deref().unwrap_or_default().is_empty() && s.certificate.is_none()
        })
    })
}

/// `status --output json`: the daemon's pid (present only when it answered `ping` on the
/// control socket) and the kubelet-serving entry.
fn status(node: &NodeTree) -> (Option<u64>, serde_json::Value) {
    let out = node.agent(&["status", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let serving = v["state"]["certificates"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "kubelet-serving").cloned())
        .unwrap_or(serde_json::Value::Null);
    (v["pid"].as_u64(), serving)
}

/// `rotate kubelet-serving` through the daemon: its exit code and stdout. It must say it
/// asked the daemon (not rotate in this process).
fn rotate_serving(node: &NodeTree) -> (Option<i32>, String) {
    let out = node.agent(&["rotate", "kubelet-serving"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("asked the running daemon"),
        "{}",
        text(&out)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn rotate_kubelet_serving_names_the_pending_csr_and_kubectl_approval_installs_it() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node_with_both_certificates(&api);
    let before = serial_of(&node.resolved(SERVING_PEM)).unwrap();
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // Both certificates valid: the daemon's first reconcile requested nothing.
    assert!(serving_csrs(&api).is_empty(), "{}", d.log_text());

    // The command is answered once the CSR exists and waits for a person: it names it,
    // says how to approve it, and exits 5 (not renewed yet, nothing failed).
    let (code, out) = rotate_serving(&node);
    let csrs = serving_csrs(&api);
    assert_eq!(csrs.len(), 1, "{out}");
    let csr = name_of(&csrs[0]);
    assert_eq!(code, Some(AWAITING_APPROVAL), "{out}");
    assert!(
        out.contains(&format!("kubelet-serving: CSR {csr} waits for approval"))
            && out.contains(&format!("kubectl certificate approve {csr}")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(pending(&api, &csr));

    // While it waits the control socket answers: `status` gets the daemon's pid over
    // `ping` and shows the wait; the CSR is still pending after that answer.
    let (pid, serving) = status(&node);
    assert_eq!(pid, Some(d.pid() as u64));
    assert_eq!(serving["phase"], "awaitingApproval", "{serving}");
    assert_eq!(serving["csr"], csr.as_str(), "{serving}");
    assert!(node.path(SAVED).exists());

    // A second `rotate` names the same CSR and creates none: the stand-in holds one.
    let (code, again) = rotate_serving(&node);
    assert_eq!(code, Some(AWAITING_APPROVAL), "{again}");
    assert!(
        again.contains(&format!("kubelet-serving: CSR {csr} waits for approval")),
        "{again}"
    );
    assert_eq!(
        serving_csrs(&api).iter().map(name_of).collect::<Vec<_>>(),
        std::slice::from_ref(&csr)
    );
    assert!(pending(&api, &csr));

    // A person approves it with kubectl (protobuf body, as against a real API server).
    let admin = node.root().join("admin.conf");
    api.write_admin_kubeconfig(&admin).unwrap();
    let k = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["certificate", "approve", &csr])
        .output()
        .expect("kubectl runs");
    assert!(k.status.success(), "{}", text(&k));

    // The daemon's watch sees it issued and installs it: a new serial, and status leaves
    // awaitingApproval.
    wait_until(T, || {
        serial_of(&node.resolved(SERVING_PEM)).is_some_and(|s| s != before)
            && status(&node).1["phase"] == "valid"
    })
    .unwrap_or_else(|| panic!("not installed: {}\n{}", status(&node).1, d.log_text()));
    let pem = node.resolved(SERVING_PEM);
    std::fs::write(node.root().join("ca.crt"), api.ca_pem()).unwrap();
    let verify = openssl::openssl(
        node.root(),
        &["verify", "-CAfile", "ca.crt", pem.to_str().unwrap()],
    );
    assert!(verify.trim().ends_with(": OK"), "{verify}");
    // kubelet's PEM holds the certificate and its key: they belong together.
    assert!(key_matches(&pem, &pem));
    let v = openssl::view(&pem);
    assert_eq!(v.sans, ["DNS:node-1", "IP:127.0.0.1"]);
    let (_, serving) = status(&node);
    assert!(serving.get("csr").is_none(), "{serving}");
    let table = String::from_utf8_lossy(&node.agent(&["status"]).stdout).into_owned();
    assert!(!table.contains("awaitingApproval"), "{table}");
    assert!(!node.path(SAVED).exists());
    assert_eq!(serving_csrs(&api).len(), 1);
    let log = d.log_text();
    assert!(!log.contains("PRIVATE KEY"), "a key in the log:\n{log}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log_text());
}

#[test]
fn two_rotates_sent_at_once_share_one_csr() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node_with_both_certificates(&api);
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // Every API answer takes 500 ms, so the first command's renewal is most likely still
    // issuing (no CSR yet) when the second command arrives; either way the outcome below
    // must hold.
    api.set_latency(Duration::from_millis(500));
    let spawn = || {
        support::agent_cmd()
            .arg("--root")
            .arg(node.root())
            .args(["rotate", "kubelet-serving"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    wait_until(T, || status(&node).1["phase"] == "issuing")
        .unwrap_or_else(|| panic!("{}\n{}", status(&node).1, d.log_text()));
    let second = spawn();
    let outs = [first, second].map(|c| c.wait_with_output().unwrap());
    let csrs = serving_csrs(&api);
    assert_eq!(csrs.len(), 1, "{}", d.log_text());
    let csr = name_of(&csrs[0]);
    for out in &outs {
        assert_eq!(out.status.code(), Some(AWAITING_APPROVAL), "{}", text(out));
        assert!(
            text(out).contains(&format!("kubelet-serving: CSR {csr} waits for approval")),
            "{}",
            text(out)
        );
    }
    assert!(pending(&api, &csr));
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log_text());
}
