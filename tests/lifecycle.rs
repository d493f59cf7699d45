//! The certificate life-cycle end to end: failures by class (a denied CSR waits for the
//! operator or the long interval; the same failure is logged once), read-only dry runs,
//! and a deleted certificate re-issued from its history.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kube_standin_apiserver::{Options, StandIn};
use support::daemon::{serial_of, wait_until, Daemon};
use support::openssl::{self, Key};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const T: Duration = Duration::from_secs(30);

fn config(node: &NodeTree, body: &str) {
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!("apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\n{body}"),
    )
    .unwrap();
}

fn kubelet_node(api: &StandIn, permanent_backoff: &str) -> NodeTree {
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    config(
        &node,
        &format!(
            "nodeName: node-1\nrenewal: {{permanentFailureBackoff: {permanent_backoff}}}\n\
             kubelet:\n  serving: {{enabled: false}}\n"
        ),
    );
    node
}

fn status_of(node: &NodeTree, name: &str) -> serde_json::Value {
    let out = node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["state"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {v}"))
}

fn rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

fn created(csr: &k8s_openapi::api::certificates::v1::CertificateSigningRequest) -> i64 {
    csr.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .expect("creationTimestamp")
}

#[test]
fn a_denied_csr_waits_for_the_operator_and_is_logged_once() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    api.deny_next(1);
    let node = kubelet_node(&api, "1h");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // One CSR, denied; the plan says: next try in an hour, not in a second.
    let csrs = api.list();
    assert_eq!(csrs.len(), 1);
    let s = status_of(&node, "kubelet-client");
    assert_eq!(s["lastResult"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("was denied"), "{s}");
    let retry = rfc3339(s["retryAt"].as_str().unwrap());
    let left = retry - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(25), "retry in {left}");
    // Another cycle of the loop (a forced rotation of nothing else, through the control
    // socket, answered after the cycle and its rescan) does not bring a new CSR.
    let out = node.agent(&["rotate", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(api.list().len(), 1);
    // SIGHUP is the operator's word: a new CSR at once, approved and installed.
    d.signal("HUP");
    let link = node.path("/var/lib/kubelet/pki/kubelet-client-current.pem");
    wait_until(T, || std::fs::symlink_metadata(&link).is_ok())
        .unwrap_or_else(|| panic!("not installed after SIGHUP\n{}", d.log_text()));
    assert_eq!(api.list().len(), 2);
    let log = d.log_text();
    let said = log.lines().filter(|l| l.contains("was denied")).count();
    assert_eq!(said, 1, "{log}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
}

#[test]
fn after_a_denial_the_next_csr_waits_the_permanent_failure_interval() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    api.deny_next(1);
    let node = kubelet_node(&api, "3s");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let link = node.path("/var/lib/kubelet/pki/kubelet-client-current.pem");
    wait_until(T, || std::fs::symlink_metadata(&link).is_ok())
        .unwrap_or_else(|| panic!("not installed after the interval\n{}", d.log_text()));
    // Exactly two CSRs; the second created at least the interval after the first (the
    // stand-in's timestamps, whole seconds).
    let csrs = api.list();
    assert_eq!(csrs.len(), 2, "{csrs:?}");
    let mut times: Vec<i64> = csrs.iter().map(created).collect();
    times.sort();
    assert!(times[1] - times[0] >= 3, "{times:?}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
}

#[test]
fn the_same_failure_is_logged_once_and_a_fixed_input_is_retried() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let key = std::fs::read(pki.join("ca.key")).unwrap();
    std::fs::remove_file(pki.join("ca.key")).unwrap();
    // A control-plane node (the apiserver manifest), so a missing CA key is a failure and
    // not "absent, not meant for this node".
    std::fs::create_dir_all(node.path("/etc/kubernetes/manifests")).unwrap();
    std::fs::write(
        node.path("/etc/kubernetes/manifests/kube-apiserver.yaml"),
        "",
    )
    .unwrap();
    config(
        &node,
        &format!(
            "certificates:\n- name: apiserver\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver.crt\n  key: {PKI}/apiserver.key\n  subject: {{commonName: kube-apiserver}}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n"
        ),
    );
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // Three operator-forced attempts: each fails the same way and says so on the command
    // line; the journal has one line for it.
    for _ in 0..3 {
        let out = node.agent(&["rotate", "apiserver"]);
        assert_eq!(out.status.code(), Some(4), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("apiserver: FAILED"));
    }
    let log = d.log_text();
    assert_eq!(
        log.matches("apiserver: failing (permanent").count(),
        1,
        "{log}"
    );
    // The CA key comes back: a relevant change, retried without waiting for the hour.
    std::fs::write(pki.join("ca.key"), key).unwrap();
    let cert = pki.join("apiserver.crt");
    wait_until(T, || cert.exists())
        .unwrap_or_else(|| panic!("not retried after the CA key came back\n{}", d.log_text()));
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
}

/// Every file under `dir` (links as their targets), with its bytes.
fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let key = p.strip_prefix(dir).unwrap().display().to_string();
            if meta.file_type().is_symlink() {
                out.insert(
                    key,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn rotate_dry_run_leaves_the_tree_byte_identical_crls_included() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    config(
        &node,
        &format!(
            "certificates:\n- name: apiserver\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver.crt\n  key: {PKI}/apiserver.key\n  subject: {{commonName: kube-apiserver}}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n"
        ),
    );
    // A serial revocation: a run that executes writes ca.crl for it.
    let dir = node.path("/etc/kube-cert-agent/revocations.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("r.yaml"),
        "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: r, namespace: kube-system}\n\
         spec:\n  revocations:\n  - {kind: serialnumber, serialNumber: 77fdf4b1033b387aaace6ce1c18710c2}\n",
    )
    .unwrap();
    let before = tree_bytes(node.root());
    let out = node.agent(&["rotate", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("apiserver: would rotate (missing)"),
        "{out:?}"
    );
    assert!(
        before == tree_bytes(node.root()),
        "rotate --dry-run changed the tree"
    );
    // The same run for real writes the certificate and the CRL: the dry run had something
    // to leave alone.
    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(pki.join("ca.crl").exists());
    let before = tree_bytes(node.root());
    for args in [
        &["rotate", "--dry-run", "--all"][..],
        &["check"][..],
        &["status"][..],
    ] {
        node.agent(args);
        assert!(
            before == tree_bytes(node.root()),
            "{args:?} changed the tree"
        );
    }
}

#[test]
fn a_deleted_certificate_without_a_subject_in_its_config_is_reissued_from_its_history() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let entry = |subject: &str| {
        format!(
            "certificates:\n- name: apiserver\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver.crt\n  key: {PKI}/apiserver.key\n  usages: [serverAuth]\n{subject}"
        )
    };
    config(
        &node,
        &entry("  subject: {commonName: kube-apiserver, organizations: [kubeadm]}\n  dnsNames: [kubernetes, kubernetes.default]\n  ipAddresses: [10.96.0.1]\n"),
    );
    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let old = openssl::view(&pki.join("apiserver.crt"));
    // The config no longer says the subject or the SANs, and the certificate is deleted.
    config(&node, &entry(""));
    std::fs::remove_file(pki.join("apiserver.crt")).unwrap();
    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let new = openssl::view(&pki.join("apiserver.crt"));
    assert_ne!(new.serial, old.serial);
    assert_eq!(new.subject, old.subject);
    assert_eq!(new.sans, old.sans);
    assert!(
        new.sans.contains(&"DNS:kubernetes.default".to_string()),
        "{:?}",
        new.sans
    );
}

fn serving_csrs(
    api: &StandIn,
) -> Vec<k8s_openapi::api::certificates::v1::CertificateSigningRequest> {
    api.list()
        .into_iter()
        .filter(|c| c.spec.signer_name == "kubernetes.io/kubelet-serving")
        .collect()
}

fn pending(csr: &k8s_openapi::api::certificates::v1::CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .map(|s| s.conditions.as_deref().unwrap_or_default().is_empty() && s.certificate.is_none())
        .unwrap_or(true)
}

#[test]
fn a_pending_serving_csr_holds_up_nothing_else() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    config(
        &node,
        &format!(
            "nodeName: node-1\nkubelet:\n  serving: {{enabled: true, addresses: [node-1, 127.0.0.1]}}\n  csrTimeout: 10m\n\
             certificates:\n- name: apiserver\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver.crt\n  key: {PKI}/apiserver.key\n  subject: {{commonName: kube-apiserver}}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n"
        ),
    );
    let mut d = Daemon::start(&node, &[]);
    // READY=1 does not wait for a person to approve the serving CSR.
    d.wait_notify("READY=1", T);
    wait_until(T, || serving_csrs(&api).len() == 1)
        .unwrap_or_else(|| panic!("no serving CSR\n{}", d.log_text()));
    // While it waits, a deleted local-CA certificate is repaired...
    let cert = pki.join("apiserver.crt");
    let before = serial_of(&cert).unwrap();
    std::fs::remove_file(&cert).unwrap();
    wait_until(T, || serial_of(&cert).is_some_and(|s| s != before))
        .unwrap_or_else(|| panic!("not repaired while the CSR waits\n{}", d.log_text()));
    // ...the control socket answers...
    let out = node.agent(&["rotate", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // ...and the serving CSR is still the one, still pending: the repair came first.
    let csrs = serving_csrs(&api);
    assert_eq!(csrs.len(), 1);
    assert!(pending(&csrs[0]), "{:?}", csrs[0].status);
    let log = d.log_text();
    let created = log
        .find("signer kubernetes.io/kubelet-serving")
        .expect("CSR created line");
    // The repair is the last "rotated (missing)" of apiserver (the first was at start-up).
    let repaired = log
        .rfind("apiserver: rotated (missing)")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(created < repaired, "{log}");
    // SIGTERM during the wait: the daemon exits now, not after csrTimeout.
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log_text());
}

#[test]
fn a_server_that_never_answers_times_out_naming_the_server() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    // Accepts connections and never says a word (not even the TLS handshake).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let node = NodeTree::new();
    std::fs::write(
        node.path("/var/lib/kubelet/bootstrap-kubeconfig"),
        api.bootstrap_kubeconfig().replace(&api.url(), &url),
    )
    .unwrap();
    config(
        &node,
        "nodeName: node-1\nkubelet:\n  serving: {enabled: false}\n  csrTimeout: 3s\n  requestTimeout: 1s\n",
    );
    let out = node.agent(&["rotate", "kubelet-client"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        text.contains(&format!("{url}: no answer within 1s")),
        "{text}"
    );
}
