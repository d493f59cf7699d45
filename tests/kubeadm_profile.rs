//! The shipped config, unedited: on a control-plane node that has only kubeadm's CAs it
//! issues the whole control-plane set with kubeadm's subjects and SANs (checked with
//! openssl); on a worker it creates nothing and reports no error, and `check` names every
//! configured certificate that is absent.

mod support;

use support::openssl::{self, Key, Leaf};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const SEVEN: [&str; 7] = [
    "apiserver",
    "apiserver-kubelet-client",
    "apiserver-etcd-client",
    "front-proxy-client",
    "etcd-server",
    "etcd-peer",
    "etcd-healthcheck-client",
];

/// The node name the agent uses with `nodeName: ""`: the host name, lower case.
fn host_name() -> String {
    let out = std::process::Command::new("uname")
        .arg("-n")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_lowercase()
}

/// kubeadm's three CAs (RSA, keyCertSign), nothing else.
fn control_plane_with_only_cas() -> NodeTree {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::Rsa2048, "kubernetes", 3650);
    openssl::ca(&pki.join("etcd"), "ca", Key::Rsa2048, "etcd-ca", 3650);
    openssl::ca(&pki, "front-proxy-ca", Key::Rsa2048, "front-proxy-ca", 3650);
    node
}

#[test]
fn the_shipped_config_issues_the_kubeadm_set_on_a_node_with_only_the_cas() {
    let node = control_plane_with_only_cas();
    // kubeadm's own config on the node gives the advertise address; the rest: defaults.
    std::fs::write(
        node.path("/etc/kubernetes/kubeadm-config.yaml"),
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 192.168.5.5\n  bindPort: 6443\n",
    )
    .unwrap();
    let (code, text) = node.agent_shipped(&["check"]);
    assert_eq!(code, 2, "missing certificates that belong here: {text}");
    assert!(
        text.contains("MISSING (configured, belongs on this node"),
        "{text}"
    );
    assert!(
        text.contains("missing: apiserver is configured: a control-plane node: its CA key /etc/kubernetes/pki/ca.key is here"),
        "{text}"
    );

    let mut args = vec!["rotate"];
    args.extend(SEVEN);
    let (code, text) = node.agent_shipped(&args);
    assert_eq!(code, 0, "{text}");
    for n in SEVEN {
        assert!(
            text.contains(&format!("{n}: rotated (forced)")),
            "{n}: {text}"
        );
    }
    assert!(text.contains("created: a control-plane node"), "{text}");

    let host = host_name();
    let pki = node.path(PKI);
    let verify = |ca: &str, cert: &str| {
        let v = openssl::openssl(&pki, &["verify", "-CAfile", ca, cert]);
        assert!(v.trim().ends_with(": OK"), "{cert}: {v}");
    };
    let api = openssl::view(&pki.join("apiserver.crt"));
    assert_eq!(api.subject, "CN=kube-apiserver");
    let mut want = vec![
        format!("DNS:{host}"),
        "DNS:kubernetes".into(),
        "DNS:kubernetes.default".into(),
        "DNS:kubernetes.default.svc".into(),
        "DNS:kubernetes.default.svc.cluster.local".into(),
        "IP:10.96.0.1".into(),
        "IP:192.168.5.5".into(),
    ];
    want.sort();
    assert_eq!(api.sans, want);
    verify("ca.crt", "apiserver.crt");
    for (file, peer) in [("etcd/server.crt", false), ("etcd/peer.crt", true)] {
        let v = openssl::view(&pki.join(file));
        assert_eq!(v.subject, format!("CN={host}"), "{file} (peer: {peer})");
        let mut want = vec![
            format!("DNS:{host}"),
            "DNS:localhost".into(),
            "IP:127.0.0.1".into(),
            "IP:0:0:0:0:0:0:0:1".into(),
            "IP:192.168.5.5".into(),
        ];
        want.sort();
        assert_eq!(v.sans, want, "{file}");
        verify("etcd/ca.crt", file);
    }
    let purposes = openssl::openssl(
        &pki,
        &[
            "x509",
            "-in",
            "etcd/peer.crt",
            "-noout",
            "-ext",
            "extendedKeyUsage",
        ],
    );
    assert!(
        purposes.contains("TLS Web Server Authentication")
            && purposes.contains("TLS Web Client Authentication"),
        "{purposes}"
    );
    verify("front-proxy-ca.crt", "front-proxy-client.crt");
    verify("etcd/ca.crt", "etcd/healthcheck-client.crt");
    verify("etcd/ca.crt", "apiserver-etcd-client.crt");
    verify("ca.crt", "apiserver-kubelet-client.crt");

    // A renewal keeps what the certificate says (kubeadm certs renew), profile or not.
    let before = openssl::view(&pki.join("etcd/server.crt"));
    let (code, text) = node.agent_shipped(&["rotate", "etcd-server"]);
    assert_eq!(code, 0, "{text}");
    let after = openssl::view(&pki.join("etcd/server.crt"));
    assert_ne!(before.serial, after.serial);
    assert_eq!(before.sans, after.sans);
}

/// A worker after `kubeadm join`: the cluster CA's certificate (no key), kubelet's PEMs.
fn worker() -> NodeTree {
    let node = NodeTree::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let ca = openssl::ca(elsewhere.path(), "ca", Key::P256, "kubernetes", 3650);
    std::fs::copy(&ca.cert, node.path(&format!("{PKI}/ca.crt"))).unwrap();
    for (name, eku, sans) in [
        ("kubelet-client", "clientAuth", ""),
        ("kubelet-server", "serverAuth", "DNS:worker-1"),
    ] {
        let leaf = openssl::leaf(
            elsewhere.path(),
            name,
            &ca,
            &Leaf {
                subject: "/O=system:nodes/CN=system:node:worker-1",
                eku,
                sans,
                ..Leaf::default()
            },
        );
        let mut pem = std::fs::read(&leaf.cert).unwrap();
        pem.extend(std::fs::read(&leaf.key).unwrap());
        std::fs::write(
            node.path(&format!("/var/lib/kubelet/pki/{name}-current.pem")),
            pem,
        )
        .unwrap();
    }
    node
}

#[test]
fn on_a_worker_the_unedited_config_creates_nothing_and_reports_no_error() {
    let node = worker();
    let (code, text) = node.agent_shipped(&["check"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("NOT ON THIS NODE (11 configured, absent, not created here; not an error)"),
        "{text}"
    );
    for n in SEVEN.iter().chain(&[
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]) {
        assert!(text.contains(&format!("\n{n} (")), "{n} not named: {text}");
    }
    assert!(text.contains("not a control-plane node (no CA key /etc/kubernetes/pki/ca.key, no /etc/kubernetes/manifests/kube-apiserver.yaml)"), "{text}");

    // rotate (every one due or missing): the control-plane set is left absent, no error.
    let mut args = vec!["rotate"];
    args.extend(SEVEN);
    args.extend(["admin.conf", "scheduler.conf"]);
    let (code, text) = node.agent_shipped(&args);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.matches(": absent, not created: not a control-plane node")
            .count(),
        9,
        "{text}"
    );
    assert!(!node.path(&format!("{PKI}/apiserver.crt")).exists());

    // The kube-apiserver manifest makes it a control-plane node: missing is then an error
    // to report (here: the CA key is not on the node).
    std::fs::create_dir_all(node.path("/etc/kubernetes/manifests")).unwrap();
    std::fs::write(
        node.path("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        "",
    )
    .unwrap();
    let (code, text) = node.agent_shipped(&["rotate", "front-proxy-client"]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("front-proxy-client: FAILED: "), "{text}");
    let (code, _) = node.agent_shipped(&["check"]);
    assert_eq!(code, 2);
}

#[test]
fn before_kubeadm_join_the_kubelet_certificates_are_listed_not_errors() {
    // The package installed on a machine that is not a node yet: no kubelet set up.
    let node = NodeTree::new();
    let (code, text) = node.agent_shipped(&["check"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("NOT ON THIS NODE (13 configured, absent, not created here; not an error)"),
        "{text}"
    );
    assert!(
        text.contains("kubelet-client (/var/lib/kubelet/pki/kubelet-client-current.pem): no kubelet set up on this node yet (neither /var/lib/kubelet/bootstrap-kubeconfig nor /etc/kubernetes/kubelet.conf)"),
        "{text}"
    );
    // `kubeadm join` writes the bootstrap kubeconfig: from then on a missing kubelet
    // certificate is an error that names what obtains it.
    std::fs::write(node.path("/var/lib/kubelet/bootstrap-kubeconfig"), "").unwrap();
    let (code, text) = node.agent_shipped(&["check"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("missing: kubelet-client is configured: the kubelet is set up here (/var/lib/kubelet/bootstrap-kubeconfig exists)"),
        "{text}"
    );
}
