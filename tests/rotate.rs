//! `kube-cert-agent rotate`: local-CA issuance into a kubeadm-like tree, checked with the
//! real openssl and kubectl.

mod support;

use std::path::Path;

use support::openssl::{self, b64, Key, Leaf};
use support::{text, NodeTree};

const PKI: &str = "/etc/kubernetes/pki";

fn config(node: &NodeTree, body: &str) {
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!("apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\n{body}"),
    )
    .unwrap();
}

const APISERVER: &str = "certificates:
- name: apiserver
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver.crt
  key: /etc/kubernetes/pki/apiserver.key
  subject: {commonName: kube-apiserver}
  dnsNames: [kubernetes, kubernetes.default.svc]
  ipAddresses: [10.96.0.1]
  usages: [serverAuth]
";

fn serial(p: &Path) -> String {
    openssl::view(p).serial
}

#[test]
fn rotates_a_kubeadm_pair_and_openssl_verifies_it() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::Rsa2048, "kubernetes", 3650);
    // kubeadm's starting point: plain files, an RSA key.
    let old = openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            key: Key::Rsa2048,
            ..Leaf::default()
        },
    );
    let old_serial = serial(&old.cert);
    config(&node, APISERVER);

    let out = node.agent(&["rotate", "apiserver"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let new_serial = serial(&pki.join("apiserver.crt"));
    assert_ne!(new_serial, old_serial);
    assert!(
        text(&out).contains(&format!("serial {old_serial} -> {new_serial}")),
        "{}",
        text(&out)
    );

    // openssl agrees: chains to the CA, the SANs and usages asked for, P-384, not a CA.
    let verify = openssl::openssl(&pki, &["verify", "-CAfile", "ca.crt", "apiserver.crt"]);
    assert_eq!(verify.trim(), "apiserver.crt: OK");
    let t = openssl::openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-text"]);
    for want in [
        "DNS:kubernetes, DNS:kubernetes.default.svc, IP Address:10.96.0.1",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "NIST CURVE: P-384",
        "Subject: CN = kube-apiserver",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    // The key on disk matches, is 0600, and the pair is switched through one link.
    let key_pub = openssl::openssl(&pki, &["pkey", "-in", "apiserver.key", "-pubout"]);
    let cert_pub = openssl::openssl(&pki, &["x509", "-in", "apiserver.crt", "-noout", "-pubkey"]);
    assert_eq!(key_pub, cert_pub);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pki.join("apiserver.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_link(pki.join("apiserver.crt")).unwrap(),
        Path::new("..apiserver.data/apiserver.crt")
    );
    // 96h + 5 minutes of backdating.
    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 0, "{rows:#?}");
    let r = support::row(&rows, "/etc/kubernetes/pki/apiserver.crt", None);
    assert_eq!(r["keyMatches"], true);
    assert_eq!(r["serial"], new_serial);

    // Rollback brings the old serial back, atomically.
    let out = node.agent(&["rollback", "apiserver"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(serial(&pki.join("apiserver.crt")), old_serial);
    assert_eq!(
        openssl::openssl(&pki, &["verify", "-CAfile", "ca.crt", "apiserver.crt"]).trim(),
        "apiserver.crt: OK"
    );
}

#[test]
fn renewal_keeps_subject_and_sans_when_the_config_omits_them() {
    let node = NodeTree::new();
    let pki = node.path("/etc/kubernetes/pki/etcd");
    let ca = openssl::ca(&pki, "ca", Key::P256, "etcd-ca", 3650);
    openssl::leaf(
        &pki,
        "server",
        &ca,
        &Leaf {
            subject: "/CN=node-1",
            sans: "DNS:localhost,DNS:node-1,IP:127.0.0.1,IP:::1",
            eku: "serverAuth,clientAuth",
            ..Leaf::default()
        },
    );
    config(
        &node,
        "certificates:
- name: etcd-server
  ca: {cert: /etc/kubernetes/pki/etcd/ca.crt, key: /etc/kubernetes/pki/etcd/ca.key}
  cert: /etc/kubernetes/pki/etcd/server.crt
  key: /etc/kubernetes/pki/etcd/server.key
",
    );
    let before = openssl::view(&pki.join("server.crt"));
    let out = node.agent(&["rotate", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = openssl::view(&pki.join("server.crt"));
    assert_ne!(after.serial, before.serial);
    assert_eq!(after.subject, before.subject);
    assert_eq!(after.sans, before.sans);
    let t = openssl::openssl(&pki, &["x509", "-in", "server.crt", "-noout", "-text"]);
    assert!(
        t.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{t}"
    );
    assert_eq!(
        openssl::openssl(&pki, &["verify", "-CAfile", "ca.crt", "server.crt"]).trim(),
        "server.crt: OK"
    );
}

#[test]
fn rotate_without_names_renews_only_what_is_due() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let fresh = openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            ..Leaf::default()
        },
    );
    config(&node, APISERVER);
    let s0 = serial(&fresh.cert);
    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("apiserver: valid, next rotation"),
        "{}",
        text(&out)
    );
    assert_eq!(serial(&pki.join("apiserver.crt")), s0);
    // Expired: due, whatever the jitter.
    let past = openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            dates: Some(("20200101000000Z", "20200105000000Z")),
            ..Leaf::default()
        },
    );
    let s1 = serial(&past.cert);
    let out = node.agent(&["rotate", "--dry-run"]);
    assert!(
        text(&out).contains("apiserver: would rotate (expired)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        serial(&pki.join("apiserver.crt")),
        s1,
        "dry run changes nothing"
    );
    let out = node.agent(&["rotate"]);
    assert!(
        text(&out).contains("apiserver: rotated (expired)"),
        "{}",
        text(&out)
    );
    assert_ne!(serial(&pki.join("apiserver.crt")), s1);
}

#[test]
fn kubeconfig_client_certificate_is_renewed_and_kubectl_reads_it() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::Rsa2048, "kubernetes", 3650);
    let work = tempfile::tempdir().unwrap();
    let admin = openssl::leaf(
        work.path(),
        "admin",
        &ca,
        &Leaf {
            subject: "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
            eku: "clientAuth",
            ..Leaf::default()
        },
    );
    let conf = node.path("/etc/kubernetes/admin.conf");
    std::fs::write(
        &conf,
        format!(
            "apiVersion: v1\nkind: Config\npreferences: {{}}\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.1:6443\n  name: kubernetes\n\
             contexts:\n- context:\n    cluster: kubernetes\n    user: kubernetes-admin\n  name: kubernetes-admin@kubernetes\ncurrent-context: kubernetes-admin@kubernetes\n\
             users:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&ca.cert),
            b64(&admin.cert),
            b64(&admin.key)
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    config(
        &node,
        "kubeconfigs:
- name: admin.conf
  path: /etc/kubernetes/admin.conf
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
",
    );
    let out = node.agent(&["rotate", "admin.conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The real kubectl parses the rewritten file; extract the new cert through it.
    let k = std::process::Command::new("kubectl")
        .args(["config", "view", "--raw", "--kubeconfig"])
        .arg(&conf)
        .args(["-o", "jsonpath={.users[0].user.client-certificate-data}"])
        .output()
        .expect("kubectl runs");
    assert!(
        k.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&k.stderr)
    );
    use base64::Engine;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(&k.stdout)
        .unwrap();
    let new_cert = work.path().join("new.crt");
    std::fs::write(&new_cert, cert).unwrap();
    let v = openssl::view(&new_cert);
    assert_ne!(v.serial, openssl::view(&admin.cert).serial);
    assert_eq!(
        v.subject, "O=kubeadm:cluster-admins, CN=kubernetes-admin",
        "subject kept from the old certificate"
    );
    assert_eq!(
        openssl::openssl(
            work.path(),
            &[
                "verify",
                "-CAfile",
                ca.cert.to_str().unwrap(),
                new_cert.to_str().unwrap()
            ]
        )
        .trim(),
        format!("{}: OK", new_cert.display())
    );
    let server = std::process::Command::new("kubectl")
        .args(["config", "view", "--kubeconfig"])
        .arg(&conf)
        .args(["-o", "jsonpath={.clusters[0].cluster.server}"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&server.stdout),
        "https://10.0.0.1:6443"
    );
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600,
        "mode kept"
    );
    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 0, "{rows:#?}");
}

/// CA faults: each names the path and the cause, and the working certificate stays.
#[test]
fn ca_faults_leave_the_working_certificate_in_place() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let leaf = openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            ..Leaf::default()
        },
    );
    let good_serial = serial(&leaf.cert);
    config(&node, APISERVER);
    let ca_key = std::fs::read(&ca.key).unwrap();
    let ca_cert = std::fs::read(&ca.cert).unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_ca = openssl::ca(other.path(), "other", Key::P256, "kubernetes", 3650);

    type Breaker<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Breaker, &str)> = vec![
        (
            "missing CA key",
            Box::new(|| std::fs::remove_file(&ca.key).unwrap()),
            "/etc/kubernetes/pki/ca.key: no such file",
        ),
        (
            "CA key of another CA",
            Box::new(|| std::fs::copy(&other_ca.key, &ca.key).map(|_| ()).unwrap()),
            "CA key does not match the CA certificate",
        ),
        (
            "CA cert that is not a CA",
            Box::new(|| std::fs::copy(&leaf.cert, &ca.cert).map(|_| ()).unwrap()),
            "is not a CA",
        ),
        (
            "expired CA",
            Box::new(|| {
                openssl::ca_with_dates(
                    &ca.cert,
                    &ca.key,
                    "kubernetes",
                    "20200101000000Z",
                    "20210101000000Z",
                )
            }),
            "expired at 2021-01-01",
        ),
    ];
    for (what, break_it, expect) in cases {
        break_it();
        let out = node.agent(&["rotate", "apiserver"]);
        assert_eq!(out.status.code(), Some(4), "{what}: {}", text(&out));
        assert!(text(&out).contains(expect), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("apiserver: FAILED"),
            "{what}: {}",
            text(&out)
        );
        assert_eq!(
            serial(&pki.join("apiserver.crt")),
            good_serial,
            "{what}: old certificate kept"
        );
        std::fs::write(&ca.key, &ca_key).unwrap();
        std::fs::write(&ca.cert, &ca_cert).unwrap();
    }
    // A target that is a directory.
    std::fs::remove_file(pki.join("apiserver.crt")).unwrap();
    std::fs::create_dir(pki.join("apiserver.crt")).unwrap();
    let out = node.agent(&["rotate", "apiserver"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("/etc/kubernetes/pki/apiserver.crt"),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_names_and_paths_outside_the_tree_are_config_errors() {
    let node = NodeTree::new();
    config(&node, APISERVER);
    let out = node.agent(&["rotate", "apiservr"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).contains("no certificate named \"apiservr\"")
            && text(&out).contains("known: apiserver"),
        "{}",
        text(&out)
    );
    let out = node.agent(&["rotate", "--all", "apiserver"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "--all with names is a usage error"
    );
}
