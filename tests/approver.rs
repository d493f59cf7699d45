//! `kube-cert-agent approver` end to end against the stand-in API server, with only the
//! shipped ClusterRole (deploy/approver/clusterrole.yaml) bound to its identity: a node
//! agent's serving CSR approved with no human; CSRs made with openssl and created with the
//! real kubectl as a node, denied for the rule they break; superseded CSRs; the breaker;
//! two replicas and a Lease, and a take-over when the holder is killed.

#[path = "approver/lease.rs"]
mod lease;
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube_standin_apiserver::{CertificateSigningRequest, Options, StandIn, Subject};
use support::daemon::wait_until;
use support::{openssl, text, NodeTree};

const SA_USER: &str = "system:serviceaccount:kube-system:kube-cert-agent-approver";
const LONG: Duration = Duration::from_secs(60);

fn start_api(opts: Options) -> (StandIn, tempfile::TempDir) {
    let api = StandIn::start(opts).expect("stand-in starts");
    let role_yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/approver/clusterrole.yaml"
    ))
    .unwrap();
    let role: ClusterRole =
        serde_saphyr::from_str(&role_yaml).expect("the shipped ClusterRole parses");
    api.bind_cluster_role(Subject::User(SA_USER.into()), role);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("approver.conf"),
        api.client_kubeconfig(SA_USER, &["system:serviceaccounts"])
            .unwrap(),
    )
    .unwrap();
    api.write_admin_kubeconfig(&dir.path().join("admin.conf"))
        .unwrap();
    (api, dir)
}

/// A running approver process, killed on drop.
struct Approver {
    child: Child,
    log: PathBuf,
}

impl Approver {
    fn start(dir: &Path, identity: &str, extra: &[&str]) -> Approver {
        let log = dir.join(format!("{identity}.log"));
        let child = support::agent_cmd()
            .args(["approver", "--kubeconfig"])
            .arg(dir.join("approver.conf"))
            .args(["--namespace", "kube-system", "--identity", identity])
            .args(if extra.contains(&"--lease-duration") {
                &[][..]
            } else {
                &[
                    "--lease-duration",
                    "3s",
                    "--renew-deadline",
                    "2s",
                    "--retry-period",
                    "200ms",
                ][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("approver starts");
        Approver { child, log }
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// SIGTERM, as systemd or the kubelet stops it; the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// The CSR's decisive condition: (type, reason, message).
fn decision(o: &CertificateSigningRequest) -> Option<(String, String, String)> {
    o.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Approved" || c.type_ == "Denied")
        .map(|c| {
            (
                c.type_.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn wait_decided(api: &StandIn, name: &str) -> (String, String, String) {
    let mut d = None;
    let found = wait_until(LONG, || {
        d = api.get(name).as_ref().and_then(decision);
        d.is_some()
    });
    assert!(
        found.is_some(),
        "{name} was never decided: {:?}",
        api.get(name)
    );
    d.unwrap()
}

/// openssl makes a key and a CSR for `cn` with `sans` (`DNS:x,IP:y`); kubectl, as node
/// `as_node`, creates it as a kubelet-serving CSR. Returns kubectl's output and the name.
fn create_with_kubectl(
    api: &StandIn,
    dir: &Path,
    as_node: &str,
    name: &str,
    cn: &str,
    sans: &str,
) -> (Output, String) {
    let node_conf = dir.join(format!("{as_node}.conf"));
    if !node_conf.exists() {
        api.write_node_kubeconfig(&node_conf, as_node).unwrap();
    }
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    openssl::openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    openssl::openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
            "-subj",
            &format!("/O=system:nodes/CN={cn}"),
            "-addext",
            &format!("subjectAltName={sans}"),
        ],
    );
    let request = openssl::b64(&csr);
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(&manifest, format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kubelet-serving\n  usages: [digital signature, server auth]\n"
    )).unwrap();
    (
        kubectl(&node_conf, &["create", "-f", manifest.to_str().unwrap()]),
        name.to_string(),
    )
}

/// The host path of the current serving PEM (kubelet's link holds a node path).
fn serving_pem(node: &NodeTree) -> PathBuf {
    node.resolved("/var/lib/kubelet/pki/kubelet-server-current.pem")
}

#[test]
fn a_node_agents_serving_csr_is_approved_with_no_human_and_renewals_keep_the_sans() {
    let (api, dir) = start_api(Options::default());
    // The Node's addresses, which the agent cannot detect on this machine: proof that the
    // SANs come from the Node object.
    api.set_node(
        "node-1",
        &[
            ("Hostname", "node-1"),
            ("InternalIP", "192.0.2.10"),
            ("ExternalDNS", "node-1.example.net"),
        ],
    )
    .unwrap();
    let _approver = Approver::start(dir.path(), "approver-a", &[]);
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    std::fs::write(node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: node-1\nkubelet:\n  csrTimeout: 60s\n").unwrap();
    let out = node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = node.agent(&["rotate", "kubelet-serving"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let serving: Vec<_> = api
        .list()
        .into_iter()
        .filter(|o| o.spec.signer_name == "kubernetes.io/kubelet-serving")
        .collect();
    assert_eq!(serving.len(), 1);
    let (t, reason, message) = decision(&serving[0]).unwrap();
    assert_eq!(
        (t.as_str(), reason.as_str()),
        ("Approved", "KubeCertAgentApproved"),
        "{message}"
    );
    assert!(message.contains("approver-a"), "{message}");
    let pem = serving_pem(&node);
    let view = openssl::view(&pem);
    let sans = format!("{:?}", view.sans);
    assert!(
        sans.contains("192.0.2.10") && sans.contains("node-1.example.net"),
        "{sans}"
    );

    // A renewal asks for identical SANs and is approved again.
    let out = node.agent(&["rotate", "kubelet-serving"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let renewed = openssl::view(&serving_pem(&node));
    assert_ne!(renewed.serial, view.serial);
    assert_eq!(renewed.sans, view.sans);
    // The Node's addresses change: the next renewal follows them.
    api.set_node(
        "node-1",
        &[("Hostname", "node-1"), ("InternalIP", "192.0.2.11")],
    )
    .unwrap();
    let out = node.agent(&["rotate", "kubelet-serving"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let moved = openssl::view(&serving_pem(&node));
    let sans = format!("{:?}", moved.sans);
    assert!(
        sans.contains("192.0.2.11") && !sans.contains("192.0.2.10"),
        "{sans}"
    );
}

#[test]
fn csrs_naming_what_the_node_does_not_have_are_denied_by_rule() {
    let (api, dir) = start_api(Options {
        strict_create: false,
        ..Options::default()
    });
    api.set_node(
        "node-a",
        &[("Hostname", "node-a"), ("InternalIP", "10.0.0.5")],
    )
    .unwrap();
    api.set_node(
        "node-b",
        &[("Hostname", "node-b"), ("InternalIP", "10.0.0.6")],
    )
    .unwrap();
    let approver = Approver::start(dir.path(), "approver-a", &[]);
    let d = dir.path();
    // An IP the Node does not have.
    let (out, ip) = create_with_kubectl(
        &api,
        d,
        "node-a",
        "evil-ip",
        "system:node:node-a",
        "DNS:node-a,IP:10.0.0.5,IP:10.9.9.9",
    );
    assert!(out.status.success(), "{}", text(&out));
    // A DNS name the Node does not have (another node's).
    let (out, dns) = create_with_kubectl(
        &api,
        d,
        "node-b",
        "evil-dns",
        "system:node:node-b",
        "DNS:node-a",
    );
    assert!(out.status.success(), "{}", text(&out));
    // Node A asking for node B's name.
    let (out, other) = create_with_kubectl(
        &api,
        d,
        "node-a",
        "a-for-b",
        "system:node:node-b",
        "DNS:node-b,IP:10.0.0.6",
    );
    assert!(out.status.success(), "{}", text(&out));
    let d1 = wait_decided(&api, &ip);
    assert_eq!(
        (d1.0.as_str(), d1.1.as_str()),
        ("Denied", "SANNotNodeAddress"),
        "{d1:?}"
    );
    assert!(
        d1.2.contains("10.9.9.9 not among Node \"node-a\""),
        "{d1:?}"
    );
    let d2 = wait_decided(&api, &dns);
    assert_eq!(
        (d2.0.as_str(), d2.1.as_str()),
        ("Denied", "SANNotNodeAddress"),
        "{d2:?}"
    );
    let d3 = wait_decided(&api, &other);
    assert_eq!(
        (d3.0.as_str(), d3.1.as_str()),
        ("Denied", "SubjectNotNode"),
        "{d3:?}"
    );
    // Nothing was ever approved, so nothing was signed.
    assert!(api.list().iter().all(|o| o
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_none()));
    assert!(
        approver.log_text().contains("Denied"),
        "{}",
        approver.log_text()
    );

    // A proper CSR from the same node is approved: the rules are not simply refusing all.
    let (out, good) = create_with_kubectl(
        &api,
        d,
        "node-a",
        "good",
        "system:node:node-a",
        "DNS:node-a,IP:10.0.0.5",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(wait_decided(&api, &good).0, "Approved");

    // With the stand-in's strict create (the default), node A cannot even create it.
    let (strict, sdir) = start_api(Options::default());
    let (out, _) = create_with_kubectl(
        &strict,
        sdir.path(),
        "node-a",
        "a-for-b",
        "system:node:node-b",
        "DNS:node-b",
    );
    assert!(
        !out.status.success() && text(&out).contains("forbidden"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_older_pending_csr_is_superseded_and_left_pending_by_policy() {
    let (api, dir) = start_api(Options::default());
    api.set_node(
        "node-a",
        &[("Hostname", "node-a"), ("InternalIP", "10.0.0.5")],
    )
    .unwrap();
    let d = dir.path();
    // Both exist before the approver starts: its first list sees both.
    assert!(create_with_kubectl(
        &api,
        d,
        "node-a",
        "csr-old",
        "system:node:node-a",
        "DNS:node-a"
    )
    .0
    .status
    .success());
    assert!(create_with_kubectl(
        &api,
        d,
        "node-a",
        "csr-new",
        "system:node:node-a",
        "DNS:node-a"
    )
    .0
    .status
    .success());
    assert!(create_with_kubectl(
        &api,
        d,
        "node-a",
        "csr-bad",
        "system:node:node-a",
        "DNS:elsewhere"
    )
    .0
    .status
    .success());
    let _approver = Approver::start(d, "approver-a", &["--on-failure", "pending"]);
    let old = wait_decided(&api, "csr-old");
    assert_eq!(
        (old.0.as_str(), old.1.as_str()),
        ("Denied", "Superseded"),
        "{old:?}"
    );
    let new = wait_decided(&api, "csr-new");
    // csr-bad is newer still (created last): it supersedes csr-new too.
    assert_eq!(
        (new.0.as_str(), new.1.as_str()),
        ("Denied", "Superseded"),
        "{new:?}"
    );
    // csr-bad breaks the SAN rule and policy "pending" leaves it for a human.
    assert!(
        wait_until(LONG, || _approver
            .log_text()
            .contains("CSR csr-bad left pending: rule sans"))
        .is_some(),
        "{}",
        _approver.log_text()
    );
    assert!(decision(&api.get("csr-bad").unwrap()).is_none());
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_breaker_stops_approvals_when_more_csrs_are_pending_than_nodes() {
    let (api, dir) = start_api(Options::default());
    api.set_node("node-a", &[("Hostname", "node-a")]).unwrap();
    let d = dir.path();
    // Two nodes' CSRs pending, one Node: 2 > 1 + margin 0.
    assert!(create_with_kubectl(
        &api,
        d,
        "node-a",
        "csr-a",
        "system:node:node-a",
        "DNS:node-a"
    )
    .0
    .status
    .success());
    assert!(create_with_kubectl(
        &api,
        d,
        "node-b",
        "csr-b",
        "system:node:node-b",
        "DNS:node-b"
    )
    .0
    .status
    .success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let approver = Approver::start(
        d,
        "approver-a",
        &["--breaker-margin", "0", "--metrics-listen", &metrics],
    );
    let mut events = vec![];
    assert!(
        wait_until(LONG, || {
            events = api.events("kube-system");
            !events.is_empty()
        })
        .is_some(),
        "{}",
        approver.log_text()
    );
    assert_eq!(events[0].reason.as_deref(), Some("BreakerOpen"));
    assert_eq!(events[0].involved_object.kind.as_deref(), Some("Lease"));
    // The breaker opened before any CSR was looked at: both are still pending.
    assert!(
        decision(&api.get("csr-a").unwrap()).is_none()
            && decision(&api.get("csr-b").unwrap()).is_none()
    );
    let m = scrape(&metrics);
    assert!(
        m.contains("kube_cert_agent_approver_breaker_open 1")
            && m.contains("kube_cert_agent_approver_pending 2"),
        "{m}"
    );
    // The second node joins: the breaker closes and both are decided.
    api.set_node("node-b", &[("Hostname", "node-b")]).unwrap();
    assert!(create_with_kubectl(
        &api,
        d,
        "node-a",
        "csr-a2",
        "system:node:node-a",
        "DNS:node-a"
    )
    .0
    .status
    .success());
    assert_eq!(wait_decided(&api, "csr-a2").0, "Approved");
    assert_eq!(wait_decided(&api, "csr-b").0, "Approved");
    assert_eq!(wait_decided(&api, "csr-a").1, "Superseded");
    let reasons: Vec<_> = api
        .events("kube-system")
        .iter()
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "BreakerClosed").count(),
        1,
        "{reasons:?}"
    );
    // The counters move right after the API answered the approval.
    let mut m = String::new();
    let counted = wait_until(LONG, || {
        m = scrape(&metrics);
        m.contains("kube_cert_agent_approver_approved_total 2")
    });
    assert!(counted.is_some(), "{m}");
    assert!(
        m.contains("kube_cert_agent_approver_denied_total{rule=\"superseded\"} 1"),
        "{m}"
    );
    // The real Prometheus tooling accepts the exposition.
    let body = m.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_from(body);
    assert!(promtool.status.success(), "promtool: {}", text(&promtool));
}

trait OutputFrom {
    fn output_from(&mut self, input: &str) -> Output;
}

impl OutputFrom for Command {
    /// Runs with `input` on stdin.
    fn output_from(&mut self, input: &str) -> Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}
