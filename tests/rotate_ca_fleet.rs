//! A CA rotation driven by the cluster, end to end: an operator (the real kubectl, as
//! admin) creates a CARotation object on the stand-in API server and advances its
//! `spec.phase`; a worker's daemon (a real process, `caRotation.cluster: true`) runs each
//! phase once and reports the phase it reached into the object's `status.nodes` through
//! the RBAC the CRD file ships. The stand-in plays the control plane's half: its client CA
//! bundle widens (prepare) and narrows (finalize), its signer switches (reissue), so the
//! worker's kubelet client certificate comes back from the new CA through a CSR only once
//! the signer has switched.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube_standin_apiserver::{Options, StandIn, Subject};
use serde_json::Value;
use support::daemon::{wait_until, Daemon};
use support::metrics::{self, one, parse};
use support::openssl;
use support::NodeTree;

const T: Duration = Duration::from_secs(120);
const PKI: &str = "/etc/kubernetes/pki";
const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
const KUBELET_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const OBJECT: &str = "cluster-2026";

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

/// The ClusterRoles the CRD file ships, bound as its ClusterRoleBindings bind them.
fn bind_shipped_rbac(api: &StandIn) {
    let path = format!(
        "{}/etc/crds/carotations.kube-cert-agent.io.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut bound = 0;
    for b in docs.iter().filter(|d| d["kind"] == "ClusterRoleBinding") {
        let role = docs
            .iter()
            .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == b["roleRef"]["name"])
            .expect("the bound ClusterRole is in the file");
        let role: ClusterRole = serde_json::from_value(role.clone()).unwrap();
        for s in b["subjects"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap().to_string();
            let subject = match s["kind"].as_str() {
                Some("Group") => Subject::Group(name),
                _ => Subject::User(name),
            };
            api.bind_cluster_role(subject, role.clone());
            bound += 1;
        }
    }
    assert!(bound >= 1, "the CRD file binds no ClusterRole");
}

/// A control-plane node's first step (the runbook's): `rotate-ca cluster --phase prepare`
/// on the cluster CA makes the new CA, staged with its key.
fn new_cluster_ca(api: &StandIn) -> (String, String, NodeTree) {
    let cp = NodeTree::new();
    std::fs::write(cp.path(&format!("{PKI}/ca.crt")), api.ca_pem()).unwrap();
    std::fs::write(cp.path(&format!("{PKI}/ca.key")), api.ca_key_pem()).unwrap();
    std::fs::write(
        cp.path("/etc/kube-cert-agent/config.yaml"),
        format!(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: cp-1\n\
             cas:\n- {{name: cluster, cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n"
        ),
    )
    .unwrap();
    let out = cp.agent(&["rotate-ca", "cluster", "--phase", "prepare"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = "/var/lib/kube-cert-agent/ca-rotation/cluster";
    let cert = std::fs::read_to_string(cp.path(&format!("{staged}/new-ca.crt"))).unwrap();
    let key = std::fs::read_to_string(cp.path(&format!("{staged}/new-ca.key"))).unwrap();
    (cert, key, cp)
}

/// A worker: kubelet bootstraps from `api`; it trusts the cluster CA (no key).
fn worker(api: &StandIn) -> NodeTree {
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    std::fs::write(node.path(&format!("{PKI}/ca.crt")), api.ca_pem()).unwrap();
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: node-1\n\
             metrics: {{listen: \"127.0.0.1:0\"}}\n\
             kubelet:\n  serving: {{enabled: false}}\n\
             cas:\n- {{name: cluster, cert: {PKI}/ca.crt}}\n\
             caRotation: {{cluster: true, pollInterval: 1s}}\n"
        ),
    )
    .unwrap();
    node
}

/// A kubeconfig (the operator's, or a copy of the node's with host paths) trusting `trust` (PEM bundle), with a `system:masters`
/// client certificate (PEM cert, key).
fn write_admin(api: &StandIn, path: &Path, trust: &str, client: (&str, &str)) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             contexts:\n- name: admin\n  context: {{cluster: kubernetes, user: admin}}\ncurrent-context: admin\n\
             users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            api.url(),
            b64(trust),
            b64(client.0),
            b64(client.1)
        ),
    )
    .unwrap();
}

/// An admin client certificate from the new CA (what the control plane's reissue gives
/// admin.conf).
fn admin_from(cp: &NodeTree) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let staged = "/var/lib/kube-cert-agent/ca-rotation/cluster";
    let ca = openssl::Pair {
        cert: cp.path(&format!("{staged}/new-ca.crt")),
        key: cp.path(&format!("{staged}/new-ca.key")),
    };
    let p = openssl::leaf(
        dir.path(),
        "admin",
        &ca,
        &openssl::Leaf {
            subject: "/O=system:masters/CN=kubernetes-admin",
            eku: "clientAuth",
            key: openssl::Key::P256,
            days: 30,
            ..Default::default()
        },
    );
    (
        std::fs::read_to_string(p.cert).unwrap(),
        std::fs::read_to_string(p.key).unwrap(),
    )
}

/// This node's entry in the object's status, as the operator reads it with kubectl.
fn reported(admin: &Path) -> Option<Value> {
    let out = kubectl(admin, &["get", "carotation", OBJECT, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["status"]["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == "node-1")
        .cloned()
}

fn wait_reported(admin: &Path, d: &Daemon, phase: &str, complete: bool) -> Value {
    let mut last = None;
    let ok = wait_until(T, || {
        last = reported(admin);
        last.as_ref()
            .is_some_and(|n| n["phase"] == phase && n["complete"] == complete)
    });
    assert!(
        ok.is_some(),
        "node-1 never reported phase {phase} complete={complete}; last: {last:?}\n{}",
        d.log_text()
    );
    last.unwrap()
}

fn serials(pem: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    pem.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| {
            let f = dir.path().join("c.pem");
            std::fs::write(&f, b).unwrap();
            support::openssl::view(&f).serial
        })
        .collect()
}

/// The CA bundle a kubeconfig embeds, as kubectl reads it: serials.
fn kubeconfig_cas(node: &NodeTree, path: &str) -> Vec<String> {
    serials(&kubeconfig_ca_pem(node, path))
}

/// The CA bundle a kubeconfig embeds, as kubectl reads it: PEM.
fn kubeconfig_ca_pem(node: &NodeTree, path: &str) -> String {
    let data = kubectl(
        &node.path(path),
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
    );
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap();
    String::from_utf8(pem).unwrap()
}

/// The kubelet's client certificate file: `-current.pem` links to it by its node path.
fn kubelet_pem(node: &NodeTree) -> std::path::PathBuf {
    let link = node.path(KUBELET_PEM);
    match std::fs::read_link(&link) {
        Ok(t) if t.is_absolute() => node.path(t.to_str().unwrap()),
        Ok(t) => link.parent().unwrap().join(t),
        Err(_) => link,
    }
}

/// `openssl verify` of the kubelet's client certificate against `ca` alone.
fn kubelet_verifies_against(node: &NodeTree, ca_pem: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(kubelet_pem(node))
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("openssl verify: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn status_patches(api: &StandIn) -> usize {
    api.requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.ends_with(&format!("/carotations/{OBJECT}/status"))
        })
        .count()
}

fn lists(api: &StandIn) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/carotations"))
        .count()
}

#[test]
fn the_daemon_runs_each_phase_the_object_asks_for_and_reports_it() {
    let api = StandIn::start(Options::default()).unwrap();
    bind_shipped_rbac(&api);
    let old_ca = api.ca_pem().to_string();
    let (new_ca, new_key, cp) = new_cluster_ca(&api);
    let old_serial = serials(&old_ca).remove(0);
    let new_serial = serials(&new_ca).remove(0);
    let node = worker(&api);
    let admin = node.root().join("admin.conf");
    let admin_old = api
        .issue_client_cert(
            "kubernetes-admin",
            &["system:masters"],
            Duration::from_secs(86400),
        )
        .unwrap();
    write_admin(
        &api,
        &admin,
        &old_ca,
        (&admin_old.cert_pem, &admin_old.key_pem),
    );
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    assert!(kubelet_verifies_against(&node, &old_ca));

    // The operator creates the object in phase prepare.
    let object = serde_json::json!({
        "apiVersion": "kube-cert-agent.io/v1alpha1", "kind": "CARotation",
        "metadata": {"name": OBJECT},
        "spec": {"ca": "cluster", "phase": "prepare", "newCACertificate": new_ca},
    });
    let file = node.root().join("carotation.json");
    std::fs::write(&file, object.to_string()).unwrap();
    kubectl(&admin, &["create", "-f", file.to_str().unwrap()]);
    wait_reported(&admin, &d, "prepare", true);
    let both = vec![old_serial.clone(), new_serial.clone()];
    assert_eq!(
        serials(&std::fs::read_to_string(node.path(&format!("{PKI}/ca.crt"))).unwrap()),
        both
    );
    assert_eq!(kubeconfig_cas(&node, KUBELET_CONF), both);
    // The control plane trusts client certificates of both CAs (its own prepare), and so
    // does the operator's kubeconfig.
    api.set_client_cas(&[&old_ca, &new_ca]).unwrap();
    let both_pem = format!("{old_ca}{new_ca}");
    write_admin(
        &api,
        &admin,
        &both_pem,
        (&admin_old.cert_pem, &admin_old.key_pem),
    );

    // reissue before the cluster signer switched: the kubelet's CSR comes back from the
    // old CA, and the node says so (not complete).
    kubectl(
        &admin,
        &[
            "patch",
            "carotation",
            OBJECT,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"phase":"reissue"}}"#,
        ],
    );
    let waiting = wait_reported(&admin, &d, "reissue", false);
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("signer has not switched"),
        "{waiting}"
    );
    assert!(!kubelet_verifies_against(&node, &new_ca));
    // The control plane's reissue: kube-controller-manager signs with the new CA, the API
    // server serves a certificate from it.
    api.set_signing_ca(&new_ca, &new_key).unwrap();
    api.reissue_serving_cert().unwrap();
    let admin_new = admin_from(&cp);
    write_admin(&api, &admin, &both_pem, (&admin_new.0, &admin_new.1));
    wait_reported(&admin, &d, "reissue", true);
    assert!(
        kubelet_verifies_against(&node, &new_ca),
        "the kubelet client certificate is not from the new CA"
    );

    // finalize: the control plane trusts the new CA alone; so does the node afterwards.
    api.set_client_cas(&[&new_ca]).unwrap();
    kubectl(
        &admin,
        &[
            "patch",
            "carotation",
            OBJECT,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"phase":"finalize"}}"#,
        ],
    );
    wait_reported(&admin, &d, "finalize", true);
    let new_only = vec![new_serial.clone()];
    assert_eq!(
        serials(&std::fs::read_to_string(node.path(&format!("{PKI}/ca.crt"))).unwrap()),
        new_only
    );
    assert_eq!(kubeconfig_cas(&node, KUBELET_CONF), new_only);
    // The node's own kubeconfig (new CA alone, client certificate from the new CA) talks
    // to the API server, as the real kubectl sees it.
    let pem = std::fs::read_to_string(kubelet_pem(&node)).unwrap();
    let as_node = node.root().join("node.conf");
    write_admin(
        &api,
        &as_node,
        &kubeconfig_ca_pem(&node, KUBELET_CONF),
        (&pem, &pem),
    );
    let seen = kubectl(
        &as_node,
        &["get", "carotation", OBJECT, "-o", "jsonpath={.spec.phase}"],
    );
    assert_eq!(seen, "finalize");

    // Each phase ran once: a finished phase is reported once and not again, however many
    // more polls follow.
    let patches = status_patches(&api);
    let polls = lists(&api);
    assert!(
        wait_until(T, || lists(&api) >= polls + 3).is_some(),
        "the daemon stopped polling"
    );
    assert_eq!(status_patches(&api), patches, "a report without a change");

    // The metrics and `status` say where the node is.
    let text = metrics::scrape(&metrics::address(&d));
    let (code, lint) = metrics::promtool_check(&text);
    assert_eq!(code, 0, "promtool check metrics: {lint}");
    let samples = parse(&text);
    for (phase, v) in [("prepare", 0.0), ("reissue", 0.0), ("finalize", 1.0)] {
        let s = one(
            &samples,
            "kube_cert_agent_ca_rotation_phase",
            &[("ca", "cluster"), ("phase", phase)],
        );
        assert_eq!(s.value, v, "{phase}");
    }
    let complete = one(
        &samples,
        "kube_cert_agent_ca_rotation_phase_complete",
        &[("ca", "cluster")],
    );
    assert_eq!(complete.value, 1.0);
    let out = node.agent(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CA rotation cluster: phase finalize done"),
        "{text}"
    );
}
