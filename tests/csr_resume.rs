//! A pending kubelet CSR survives a restart: its name and key are kept in the state
//! directory (0600) and the next run watches the same CSR instead of creating a second
//! one. A saved CSR that was denied meanwhile is a permanent failure; one that is gone
//! from the server is replaced by a new one.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube_standin_apiserver::{Options, StandIn};
use support::daemon::{wait_until, Daemon};
use support::NodeTree;

const T: Duration = Duration::from_secs(30);
const SAVED: &str = "/var/lib/kube-cert-agent/pending-csr-kubelet-client.json";
const LINK: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

/// A worker with the kubelet client certificate only, against a stand-in that approves
/// nothing by itself.
fn node(api: &StandIn) -> NodeTree {
    api.set_never_approve(true);
    NodeTree::kubelet_client_node(api, "10m")
}

fn client_csrs(api: &StandIn) -> Vec<CertificateSigningRequest> {
    api.list()
        .into_iter()
        .filter(|c| c.spec.signer_name == "kubernetes.io/kube-apiserver-client-kubelet")
        .collect()
}

fn name_of(csr: &CertificateSigningRequest) -> String {
    csr.metadata.name.clone().unwrap()
}

fn status_of(node: &NodeTree) -> serde_json::Value {
    let out = node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["state"]["certificates"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "kubelet-client").cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Start the daemon and wait until it waits on a CSR; that CSR's name.
fn start_and_wait_for_the_csr(node: &NodeTree, api: &StandIn) -> (Daemon, String) {
    let d = Daemon::start(node, &[]);
    wait_until(T, || {
        client_csrs(api).len() == 1 && node.path(SAVED).exists()
    })
    .unwrap_or_else(|| panic!("no pending CSR saved\n{}", d.log_text()));
    (d, name_of(&client_csrs(api)[0]))
}

fn saved_key(node: &NodeTree) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.path(SAVED)).unwrap()).unwrap();
    v["keyPem"].as_str().unwrap().to_string()
}

fn stop(d: &mut Daemon) {
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log_text());
}

#[test]
fn a_restart_during_the_pending_wait_resumes_the_same_csr() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node(&api);
    let (mut d, csr) = start_and_wait_for_the_csr(&node, &api);
    // Saved 0600, and the key is the request's: never in the log.
    let mode = std::fs::metadata(node.path(SAVED))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = saved_key(&node);
    // `status` shows the wait: awaitingApproval, with the CSR's name.
    wait_until(T, || status_of(&node)["phase"] == "awaitingApproval")
        .unwrap_or_else(|| panic!("status: {}\n{}", status_of(&node), d.log_text()));
    assert_eq!(status_of(&node)["csr"], csr.as_str());
    let table = String::from_utf8_lossy(&node.agent(&["status"]).stdout).into_owned();
    assert!(
        table.contains(&format!(
            "kubelet-client: awaitingApproval: CSR {csr} since"
        )),
        "{table}"
    );
    // `rotate NAME` through the daemon names the pending CSR and creates no other.
    let out = node.agent(&["rotate", "kubelet-client"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // 5: not renewed yet, nothing failed (README, "Exit codes").
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        text.contains(&format!("kubelet-client: CSR {csr} waits for approval")),
        "{text}"
    );
    assert_eq!(client_csrs(&api).len(), 1);
    assert!(!d.log_text().contains("PRIVATE KEY"), "{}", d.log_text());
    // SIGTERM during the wait: the daemon exits now.
    stop(&mut d);
    // The restart watches the same CSR: the stand-in still holds exactly one.
    let mut d = Daemon::start(&node, &[]);
    wait_until(T, || d.log_text().contains(&format!("resuming CSR {csr}")))
        .unwrap_or_else(|| panic!("not resumed\n{}", d.log_text()));
    assert_eq!(client_csrs(&api).len(), 1);
    // Approved now: installed, with the key saved before the restart.
    api.approve(&csr).unwrap();
    wait_until(T, || std::fs::symlink_metadata(node.path(LINK)).is_ok())
        .unwrap_or_else(|| panic!("not installed\n{}", d.log_text()));
    d.wait_notify("READY=1", T);
    let installed = std::fs::read_to_string(node.resolved(LINK)).unwrap();
    assert!(installed.contains(key.trim()), "installed with another key");
    assert_eq!(client_csrs(&api).len(), 1);
    assert!(
        !node.path(SAVED).exists(),
        "the saved CSR outlived its request"
    );
    let log = d.log_text();
    assert!(!log.contains("PRIVATE KEY"), "a key in the log:\n{log}");
    stop(&mut d);
}

#[test]
fn a_saved_csr_denied_meanwhile_is_a_permanent_failure() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node(&api);
    let (mut d, csr) = start_and_wait_for_the_csr(&node, &api);
    stop(&mut d);
    api.deny(&csr, "NotThisNode").unwrap();
    let mut d = Daemon::start(&node, &[]);
    wait_until(T, || status_of(&node)["lastResult"] == "failed")
        .unwrap_or_else(|| panic!("status: {}\n{}", status_of(&node), d.log_text()));
    let s = status_of(&node);
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains(&format!("CSR {csr} was denied")),
        "{s}"
    );
    // Permanent: retried after the long interval, not now; no second CSR.
    assert!(s["retryAt"].is_string(), "{s}");
    assert_eq!(client_csrs(&api).len(), 1);
    assert!(!node.path(SAVED).exists());
    stop(&mut d);
}

#[test]
fn a_saved_csr_gone_from_the_server_is_replaced_by_one_new_csr() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node(&api);
    let (mut d, csr) = start_and_wait_for_the_csr(&node, &api);
    stop(&mut d);
    api.delete(&csr).unwrap();
    let mut d = Daemon::start(&node, &[]);
    wait_until(T, || {
        client_csrs(&api).len() == 1 && name_of(&client_csrs(&api)[0]) != csr
    })
    .unwrap_or_else(|| panic!("no new CSR\n{}", d.log_text()));
    let new = name_of(&client_csrs(&api)[0]);
    wait_until(T, || {
        node.path(SAVED).exists()
            && std::fs::read_to_string(node.path(SAVED))
                .unwrap()
                .contains(&new)
    })
    .unwrap_or_else(|| panic!("the new CSR is not saved\n{}", d.log_text()));
    assert!(
        d.log_text()
            .contains(&format!("CSR {csr} from before the restart: gone")),
        "{}",
        d.log_text()
    );
    api.approve(&new).unwrap();
    wait_until(T, || std::fs::symlink_metadata(node.path(LINK)).is_ok())
        .unwrap_or_else(|| panic!("not installed\n{}", d.log_text()));
    assert_eq!(client_csrs(&api).len(), 1);
    stop(&mut d);
}

#[test]
fn rotate_of_a_kubelet_certificate_through_the_daemon_answers_with_its_outcome() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node(&api);
    // This time the stand-in approves client CSRs itself.
    api.set_never_approve(false);
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let out = node.agent(&["rotate", "kubelet-client"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The renewal's own line (after the CSR task reported), not "renewal running".
    assert!(text.contains("kubelet-client: rotated"), "{text}");
    assert_eq!(client_csrs(&api).len(), 2);
    assert!(!node.path(SAVED).exists());
    stop(&mut d);
}
