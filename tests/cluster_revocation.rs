//! RenewRevocation objects in the cluster count like files everywhere an operator meets
//! revocation: `revocations --cluster` lists them (with or without `revocation.cluster`
//! in the config), and `rollback` refuses to put back a version they revoke unless
//! `--force`, saying which object and entry.

mod support;

use kube_standin_apiserver::{Options, StandIn};
use support::{openssl, text, NodeTree};

const CLIENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

fn config(node: &NodeTree, cluster: bool) {
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: node-1\n\
             kubelet:\n  serving: {{enabled: false}}\n  csrTimeout: 30s\nrevocation: {{cluster: {cluster}}}\n"
        ),
    )
    .unwrap();
}

fn serial(node: &NodeTree) -> String {
    openssl::view(&node.resolved(CLIENT_PEM)).serial
}

#[test]
fn cluster_entries_are_listed_and_stop_a_rollback_unless_forced() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
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
