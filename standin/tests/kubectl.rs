//! The real kubectl (/usr/bin/kubectl) and openssl against the stand-in, in-process and as the
//! `standin-apiserver` binary.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use kube_standin_apiserver::{Options, StandIn};

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args))
}

fn kubectl_fails(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `openssl req` CSR wrapped in a CSR manifest.
fn openssl_csr_yaml(
    dir: &Path,
    name: &str,
    subj: &str,
    san: Option<&str>,
    signer: &str,
    usages: &str,
) -> std::path::PathBuf {
    let csr = dir.join(format!("{name}.csr"));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
    ])
    .arg(dir.join(format!("{name}.key")))
    .args(["-subj", subj, "-out"])
    .arg(&csr);
    if let Some(s) = san {
        cmd.args(["-addext", &format!("subjectAltName={s}")]);
    }
    run(cmd.stderr(Stdio::null()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let yaml = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {b64}\n  signerName: {signer}\n  expirationSeconds: 86400\n  usages: [{usages}]\n"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn kubectl_create_get_approve_deny_with_openssl_csrs() {
    let api = StandIn::start(Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = d.join("admin.conf");
    api.write_admin_kubeconfig(&admin).unwrap();
    std::fs::write(d.join("ca.crt"), api.ca_pem()).unwrap();

    assert!(kubectl(&admin, &["version"]).contains("Server Version: v1.32"));
    let a = openssl_csr_yaml(
        d,
        "n1-serving",
        "/O=system:nodes/CN=system:node:n1",
        Some("DNS:n1,IP:10.1.2.3"),
        "kubernetes.io/kubelet-serving",
        "digital signature, server auth",
    );
    let b = openssl_csr_yaml(
        d,
        "n1-serving-b",
        "/O=system:nodes/CN=system:node:n1",
        Some("DNS:n1"),
        "kubernetes.io/kubelet-serving",
        "digital signature, server auth",
    );
    assert!(kubectl(&admin, &["create", "-f", a.to_str().unwrap()])
        .contains("certificatesigningrequest.certificates.k8s.io/n1-serving created"));
    kubectl(&admin, &["create", "-f", b.to_str().unwrap()]);
    let table = kubectl(&admin, &["get", "csr"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("SIGNERNAME") && table.contains("REQUESTOR") && table.contains("CONDITION"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("n1-serving ")
            && l.contains("kubernetes-admin")
            && l.ends_with("Pending")),
        "{table}"
    );

    assert!(
        kubectl(&admin, &["certificate", "approve", "n1-serving"]).contains("n1-serving approved")
    );
    assert!(
        kubectl(&admin, &["certificate", "deny", "n1-serving-b"]).contains("n1-serving-b denied")
    );
    wait_csr(&api, "n1-serving", |o| issued_cert(o).is_some());
    let table = kubectl(&admin, &["get", "csr"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n1-serving ") && l.ends_with("Approved,Issued")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("n1-serving-b ") && l.ends_with("Denied")),
        "{table}"
    );
    let denied = api.get("n1-serving-b").unwrap();
    assert_eq!(cond(&denied, "Denied").unwrap().0, "KubectlDeny");

    let cert = kubectl(
        &admin,
        &[
            "get",
            "csr",
            "n1-serving",
            "-o",
            "jsonpath={.status.certificate}",
        ],
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(cert.trim())
        .unwrap();
    std::fs::write(d.join("n1.crt"), &pem).unwrap();
    run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.join("ca.crt"))
        .arg(d.join("n1.crt")));
    // The issued certificate is for the key openssl generated.
    let crt_pub = run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(d.join("n1.crt")));
    let key_pub = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(d.join("n1-serving.key")));
    assert_eq!(crt_pub, key_pub);
    // JSON output parses as the real type.
    let json = kubectl(&admin, &["get", "csr", "n1-serving", "-o", "json"]);
    let o: kube_standin_apiserver::CertificateSigningRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(cond(&o, "Approved").unwrap().0, "KubectlApprove");
    // Approving a denied CSR fails, as with the real server (Approved and Denied exclude each other).
    kubectl_fails(&admin, &["certificate", "approve", "n1-serving-b"]);
    assert!(kubectl(&admin, &["delete", "csr", "n1-serving"]).contains("deleted"));
    assert!(kubectl_fails(&admin, &["get", "csr", "n1-serving"]).contains("NotFound"));
}

#[test]
fn binary_writes_kubeconfigs_prints_url_honours_flags_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_standin-apiserver"))
        .arg("--dir")
        .arg(d)
        .args([
            "--token",
            "123456.abcdefabcdefabcd",
            "--deny-next",
            "1",
            "--signing-duration",
            "48h",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut child = Guard(Some(child));
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url:?}");
    for f in ["ca.crt", "ca.key", "bootstrap-kubeconfig", "admin.conf"] {
        assert!(d.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(d.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let boot = d.join("bootstrap-kubeconfig");
    let raw = kubectl(
        &boot,
        &[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.users[0].user.token} {.clusters[0].cluster.server}",
        ],
    );
    assert_eq!(raw, format!("123456.abcdefabcdefabcd {url}"));

    // A bootstrapper creates node client CSRs with kubectl: the first is denied (--deny-next 1),
    // the second auto-approved and issued with the capped duration.
    let c1 = openssl_csr_yaml(
        d,
        "boot-1",
        "/O=system:nodes/CN=system:node:b",
        None,
        "kubernetes.io/kube-apiserver-client-kubelet",
        "digital signature, client auth",
    );
    let c2 = openssl_csr_yaml(
        d,
        "boot-2",
        "/O=system:nodes/CN=system:node:b",
        None,
        "kubernetes.io/kube-apiserver-client-kubelet",
        "digital signature, client auth",
    );
    kubectl(&boot, &["create", "-f", c1.to_str().unwrap()]);
    kubectl(&boot, &["create", "-f", c2.to_str().unwrap()]);
    let admin = d.join("admin.conf");
    let mut table = String::new();
    for _ in 0..200 {
        table = kubectl(&admin, &["get", "csr"]);
        if table.contains("Approved,Issued") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        table.lines().any(|l| l.starts_with("boot-1 ")
            && l.contains("system:bootstrap:123456")
            && l.ends_with("Denied")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("boot-2 ") && l.ends_with("Approved,Issued")),
        "{table}"
    );
    let cert = kubectl(
        &admin,
        &[
            "get",
            "csr",
            "boot-2",
            "-o",
            "jsonpath={.status.certificate}",
        ],
    );
    std::fs::write(
        d.join("b.crt"),
        base64::engine::general_purpose::STANDARD
            .decode(cert.trim())
            .unwrap(),
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.join("ca.crt"))
        .arg(d.join("b.crt")));
    let (nb, na) = validity(&std::fs::read_to_string(d.join("b.crt")).unwrap());
    assert_eq!(
        na - nb,
        24 * 3600 + 300,
        "24h asked (under the 48h cap), plus the 5 min backdate"
    );
    // Bootstrappers may not approve.
    let err = kubectl_fails(&boot, &["certificate", "approve", "--force", "boot-2"]);
    assert!(
        err.contains("Forbidden") && err.contains("system:bootstrap:123456"),
        "{err}"
    );

    // The CA can be reused by a second instance (--ca-dir): its admin.conf works against the first.
    let d2 = tempfile::tempdir().unwrap();
    let mut second = Command::new(env!("CARGO_BIN_EXE_standin-apiserver"))
        .arg("--dir")
        .arg(d2.path())
        .arg("--ca-dir")
        .arg(d)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out2 = second.stdout.take().unwrap();
    let mut second = Guard(Some(second));
    let mut l2 = String::new();
    std::io::BufReader::new(out2).read_line(&mut l2).unwrap();
    assert_eq!(
        std::fs::read(d2.path().join("ca.crt")).unwrap(),
        std::fs::read(d.join("ca.crt")).unwrap()
    );
    let other_admin = d2.path().join("admin.conf");
    assert!(kubectl(&other_admin, &["--server", &url, "get", "csr"]).contains("boot-2"));

    for g in [&mut child, &mut second] {
        let mut ch = g.0.take().unwrap();
        run(Command::new("kill").args(["-TERM", &ch.id().to_string()]));
        let st = ch.wait().unwrap();
        assert!(st.success(), "exit on SIGTERM: {st:?}");
    }
}

/// Kills the child (by its own pid) if the test fails before stopping it.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn kubectl_get_csr_watch_prints_table_rows_as_the_csr_progresses() {
    let api = StandIn::start(Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.conf");
    api.write_admin_kubeconfig(&admin).unwrap();
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "csr", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _guard = Guard(Some(child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // Wait until the watch is open (kubectl lists first, then watches from that version).
    api.wait_for(Duration::from_secs(10), |_| {
        api.requests().iter().any(|r| r.watch)
    })
    .unwrap();
    let c = Client::new(&api, Auth::Token(api.bootstrap_token().into()));
    let (code, _) = c.post(
        CSRS,
        &csr_object(
            "watch-me",
            &node_client_csr("w").0,
            kube_standin_apiserver::CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    assert_eq!(code, 201);
    let mut seen = vec![];
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
        seen.push(l.clone());
        if l.starts_with("watch-me ") && l.ends_with("Approved,Issued") {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("NAME") && l.contains("CONDITION")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("watch-me ") && l.ends_with("Pending")),
        "{seen:?}"
    );
    assert!(
        seen.last().unwrap().ends_with("Approved,Issued"),
        "{seen:?}"
    );
}

/// core/v1 Events: a node creates and patches events about itself; kubectl reads them with
/// the field selectors operators use; validation and authorization as kube-apiserver's.
#[test]
fn kubectl_reads_node_events_a_node_recorded() {
    let api = StandIn::start(Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (admin, node) = (dir.path().join("admin.conf"), dir.path().join("node.conf"));
    api.write_admin_kubeconfig(&admin).unwrap();
    api.write_node_kubeconfig(&node, "node-1").unwrap();
    let event = |name: &str, reason: &str, type_: &str| {
        let f = dir.path().join(format!("{name}.json"));
        std::fs::write(
            &f,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": "default"},
                "involvedObject": {"kind": "Node", "name": "node-1", "uid": "node-1"},
                "reason": reason, "message": format!("{reason} happened"), "type": type_,
                "source": {"component": "kube-cert-agent", "host": "node-1"},
                "firstTimestamp": "2026-12-02T05:00:00Z", "lastTimestamp": "2026-12-02T05:00:00Z",
                "count": 1
            })
            .to_string(),
        )
        .unwrap();
        f
    };
    // A node may create events (the Node authorizer's rule); a bad type is 422.
    let f = event("node-1.a", "CertificateRotated", "Normal");
    kubectl(&node, &["create", "-f", f.to_str().unwrap()]);
    let f = event("node-1.b", "CertificateRotationFailed", "Warning");
    kubectl(&node, &["create", "-f", f.to_str().unwrap()]);
    let f = event("node-1.c", "Whatever", "Loud");
    let err = kubectl_fails(&node, &["create", "-f", f.to_str().unwrap()]);
    assert!(err.contains("Unsupported value: \"Loud\""), "{err}");
    let err = kubectl_fails(
        &node,
        &[
            "create",
            "-f",
            event("node-1.a", "X", "Normal").to_str().unwrap(),
        ],
    );
    assert!(err.contains("already exists"), "{err}");
    // A merge patch bumps the count, as client-go's correlator does.
    kubectl(
        &node,
        &[
            "patch",
            "event",
            "node-1.b",
            "--type=merge",
            "-p",
            r#"{"count":2,"lastTimestamp":"2026-12-02T05:01:00Z"}"#,
        ],
    );
    let out = kubectl(
        &admin,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Node",
            "-o",
            "wide",
        ],
    );
    assert!(
        out.contains("CertificateRotated") && out.contains("CertificateRotationFailed"),
        "{out}"
    );
    assert!(out.contains("node/node-1"), "{out}");
    let out = kubectl(
        &admin,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "type=Warning",
            "-o",
            "jsonpath={.items[*].count}",
        ],
    );
    assert_eq!(out.trim(), "2");
    let out = kubectl(
        &admin,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Pod",
            "-o",
            "name",
        ],
    );
    assert!(out.trim().is_empty(), "{out}");
    let err = kubectl_fails(
        &admin,
        &["get", "events", "--field-selector", "spec.nope=1"],
    );
    assert!(err.contains("field label not supported"), "{err}");
    assert_eq!(api.events("default").len(), 2);
    // A bootstrap token may not record events.
    let boot = dir.path().join("boot.conf");
    api.write_bootstrap_kubeconfig(&boot).unwrap();
    let err = kubectl_fails(
        &boot,
        &[
            "create",
            "-f",
            event("node-1.d", "X", "Normal").to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
}
