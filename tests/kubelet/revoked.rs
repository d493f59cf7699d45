//! Revocation of kubelet certificates: by a file entry and by RenewRevocation objects in
//! the cluster.

use super::*;

/// The seeds say AKS cannot revoke the kubelet serving certificate; the agent can.
#[test]
fn a_revoked_kubelet_serving_certificate_is_replaced() {
    let s = setup("30s");
    assert_eq!(
        s.node.agent(&["rotate", "kubelet-client"]).status.code(),
        Some(0)
    );
    // The serving CSR needs an approval: approve whatever serving CSR shows up.
    let approve_serving = |api: &StandIn| {
        let l = api
            .wait_for(Duration::from_secs(20), |l| {
                l.iter().any(|c| {
                    c.spec.signer_name == "kubernetes.io/kubelet-serving"
                        && c.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_none()
                })
            })
            .unwrap();
        let pending = l
            .iter()
            .find(|c| {
                c.spec.signer_name == "kubernetes.io/kubelet-serving"
                    && c.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_none()
            })
            .unwrap();
        api.approve(pending.metadata.name.as_deref().unwrap())
            .unwrap();
    };
    let run = Running::start(&s.node, &["rotate", "kubelet-serving"]);
    approve_serving(&s.api);
    assert_eq!(run.finish().0, 0);
    let old = openssl::view(&s.node.resolved(SERVING_PEM)).serial;

    let dir = s.node.path("/etc/kube-cert-agent/revocations.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("serving.yaml"),
        format!(
            "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {{name: serving}}\n\
             spec:\n  revocations:\n  - {{kind: serialnumber, serialNumber: {old}}}\n"
        ),
    )
    .unwrap();
    let run = Running::start(&s.node, &["rotate"]);
    approve_serving(&s.api);
    let (code, stdout) = run.finish();
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("kubelet-serving: rotated (revoked by serving/0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubelet-client: valid"),
        "only the revoked one: {stdout}"
    );
    assert_ne!(openssl::view(&s.node.resolved(SERVING_PEM)).serial, old);
    // rollback knows the serving certificate by its config name; the old version is
    // revoked, so only --force puts it back.
    let out = s.node.agent(&["rollback", "kubelet-serving"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = s.node.agent(&["rollback", "kubelet-serving", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(openssl::view(&s.node.resolved(SERVING_PEM)).serial, old);
}

/// `revocation.cluster: true`: RenewRevocation objects in kube-system, read with the node's
/// certificate, revoke like files do.
#[test]
fn renew_revocation_objects_in_the_cluster_are_honoured() {
    let s = setup_with("30s", false);
    let cfg = s.node.path("/etc/kube-cert-agent/config.yaml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{base}revocation: {{cluster: true}}\n")).unwrap();
    assert_eq!(
        s.node.agent(&["rotate", "kubelet-client"]).status.code(),
        Some(0)
    );
    let old = openssl::view(&s.node.resolved(CLIENT_PEM)).serial;
    s.api.set_renew_revocations(vec![serde_json::json!({
        "apiVersion": "certificates.microsoft.com/v1",
        "kind": "RenewRevocation",
        "metadata": {"name": "from-the-cluster", "namespace": "kube-system"},
        "spec": {"revocations": [{"kind": "serialnumber", "serialNumber": old}]}
    })]);
    let out = s.node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("kubelet-client: rotated (revoked by from-the-cluster/0 (serialnumber")
            && text(&out).contains("in cluster kube-system/renewrevocations"),
        "{}",
        text(&out)
    );
    assert_ne!(openssl::view(&s.node.resolved(CLIENT_PEM)).serial, old);
    // `revocations` lists the cluster's entries too, where they come from.
    let out = s.node.agent(&["revocations", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"][0]["id"], "from-the-cluster/0", "{v:#}");
    assert_eq!(
        v["entries"][0]["source"],
        "cluster kube-system/renewrevocations"
    );
    let listed = s
        .api
        .requests()
        .iter()
        .filter(|r| {
            r.path.ends_with("/namespaces/kube-system/renewrevocations")
                && r.user == "system:node:node-1"
        })
        .count();
    assert!(
        listed >= 1,
        "listed with the node's certificate: {:?}",
        s.api.requests()
    );
}
