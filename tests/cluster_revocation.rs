//! RenewRevocation objects in the cluster count like files everywhere an operator meets
//! revocation: `revocations --cluster` lists them (with or without `revocation.cluster`
//! in the config), and `rollback` refuses to put back a version they revoke unless
//! `--force`, saying which object and entry. The daemon lists them in a task every
//! `revocation.pollInterval` and re-issues what a new entry revokes.

mod support;

use std::time::Duration;

use kube_standin_apiserver::{Options, StandIn};
use support::daemon::{wait_until, Daemon};
use support::{openssl, text, NodeTree};

const CLIENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

fn config(node: &NodeTree, cluster: bool) {
    node.write_worker_config(&format!(
        "kubelet:\n  serving: {{enabled: false}}\n  csrTimeout: 30s\nrevocation: {{cluster: {cluster}}}\n"
    ));
}

fn serial(node: &NodeTree) -> String {
    openssl::view(&node.resolved(CLIENT_PEM)).serial
}

#[test]
fn cluster_entries_are_listed_and_stop_a_rollback_unless_forced() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::worker(&api, "");
    config(&node, false);
    let mut serials = vec![];
    for _ in 0..2 {
        let out = node.agent(&["rotate", "kubelet-client"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serials.push(serial(&node));
    }
    // The first version, which a rollback would put back, is revoked in the cluster.
    let previous = serials[0].clone();
    api.set_renew_revocations(vec![serde_json::json!({
        "apiVersion": "certificates.microsoft.com/v1",
        "kind": "RenewRevocation",
        "metadata": {"name": "from-the-cluster", "namespace": "kube-system"},
        "spec": {"revocations": [{
            "description": "the node's old key leaked",
            "kind": "serialnumber",
            "serialNumber": previous
        }]}
    })]);

    // `revocations --cluster` reads them although the config does not apply them.
    let out = node.agent(&["revocations"]);
    assert!(
        text(&out).contains("No revocation entries"),
        "{}",
        text(&out)
    );
    let out = node.agent(&["revocations", "--cluster"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("from-the-cluster/0  serialnumber")
            && t.contains("(cluster kube-system/renewrevocations)"),
        "{t}"
    );

    // With `revocation.cluster: true` they apply: rollback to the revoked version is
    // refused, and says why; --force rolls back anyway.
    config(&node, true);
    let before = serial(&node);
    let out = node.agent(&["rollback", "kubelet-client"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("not rolled back")
            && t.contains("is revoked by from-the-cluster/0")
            && t.contains("in cluster kube-system/renewrevocations")
            && t.contains("--force"),
        "{t}"
    );
    assert_eq!(serial(&node), before, "nothing changed");
    // The cluster cannot be asked: refused too (fail closed), saying so.
    api.shutdown();
    let out = node.agent(&["rollback", "kubelet-client"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("RenewRevocation objects could not be read") && t.contains("--force"),
        "{t}"
    );
    let out = node.agent(&["rollback", "kubelet-client", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(serial(&node), previous);
}

fn revoking(name: &str, serial: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "certificates.microsoft.com/v1",
        "kind": "RenewRevocation",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"revocations": [{"kind": "serialnumber", "serialNumber": serial}]}
    })
}

#[test]
fn the_daemon_lists_cluster_entries_in_a_task_and_reissues_what_a_new_one_revokes() {
    let t = Duration::from_secs(60);
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::worker(
        &api,
        "kubelet:\n  serving: {enabled: false}\n  csrTimeout: 30s\n\
         revocation: {cluster: true, pollInterval: 1s}\nrenewal: {fleetSpread: 0s}\n",
    );
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", t);
    let first = serial(&node);
    // The first listing, made once the node's client certificate exists: nothing yet.
    let listed = wait_until(t, || {
        d.log_text()
            .contains("RenewRevocation objects from the cluster: 0 entries")
    });
    assert!(listed.is_some(), "{}", d.log_text());
    // An operator revokes the node's certificate in the cluster: a later poll sees it and
    // the daemon replaces it, with no signal and no file on the node (fleetSpread 0s: a
    // one-node fleet renews at once rather than at its turn in a wave).
    api.set_renew_revocations(vec![revoking("leaked", &first)]);
    let replaced = wait_until(t, || serial(&node) != first);
    assert!(replaced.is_some(), "{}", d.log_text());
    let log = d.log_text();
    let seen = log
        .find("RenewRevocation objects from the cluster: 1 entry")
        .expect("the new entry is logged");
    let rotated = log[seen..]
        .find("kubelet-client: rotated (revoked by leaked/0 ")
        .map(|i| i + seen);
    assert!(rotated.is_some(), "listed, then rotated:\n{log}");
    // The API server goes away: said once, and the control socket still answers.
    api.shutdown();
    let said = wait_until(t, || {
        d.log_text()
            .contains("RenewRevocation objects not read from the cluster")
    });
    assert!(said.is_some(), "{}", d.log_text());
    let out = node.agent(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    d.signal("TERM");
    assert_eq!(d.wait_exit(t), Some(0));
}
