//! Kubelet TLS bootstrapping and renewal, end to end against the stand-in API server
//! (tests/support is ours; standin/ speaks certificates.k8s.io/v1 over real HTTPS), with the
//! real kubectl approving CSRs and reading the kubeconfig the agent wrote.

#[path = "kubelet/revoked.rs"]
mod revoked;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube_standin_apiserver::{Options, StandIn};
use support::{openssl, text, NodeTree};

const NODE: &str = "node-1";

struct Setup {
    node: NodeTree,
    api: StandIn,
}

fn setup(csr_timeout: &str) -> Setup {
    setup_with(csr_timeout, true)
}

fn setup_with(csr_timeout: &str, serving: bool) -> Setup {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    // NodeTree::worker names the node node-1 (NODE).
    let node = NodeTree::worker(
        &api,
        &format!(
            "kubelet:\n  serving: {{enabled: {serving}, addresses: [{NODE}, 127.0.0.1]}}\n  csrTimeout: {csr_timeout}\n"
        ),
    );
    Setup { node, api }
}

const CLIENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const SERVING_PEM: &str = "/var/lib/kubelet/pki/kubelet-server-current.pem";

/// kubectl reads files at host paths: a copy of kubelet.conf whose file references point
/// into the test's node tree (the agent writes node paths, right once the tree is `/`).
fn host_kubeconfig(node: &NodeTree) -> std::path::PathBuf {
    let conf = std::fs::read_to_string(node.path("/etc/kubernetes/kubelet.conf")).unwrap();
    assert!(
        conf.contains(&format!("client-certificate: {CLIENT_PEM}")),
        "{conf}"
    );
    let host = node.root().join("kubelet-host.conf");
    std::fs::write(
        &host,
        conf.replace(CLIENT_PEM, node.resolved(CLIENT_PEM).to_str().unwrap()),
    )
    .unwrap();
    host
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

#[test]
fn bootstrap_from_a_token_then_renew_with_the_node_certificate() {
    let s = setup("30s");
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("kubelet-client: rotated (forced)")
            && t.contains("authenticated with the bootstrap token"),
        "{t}"
    );
    assert!(t.contains("2 API requests"), "create + watch only: {t}");

    // The certificate is the node's, chains to the cluster CA, and check agrees.
    let pem = s.node.resolved(CLIENT_PEM);
    let v = openssl::view(&pem);
    assert_eq!(v.subject, "O=system:nodes, CN=system:node:node-1");
    std::fs::write(s.node.root().join("ca.crt"), s.api.ca_pem()).unwrap();
    let verify = openssl::openssl(
        s.node.root(),
        &["verify", "-CAfile", "ca.crt", pem.to_str().unwrap()],
    );
    assert!(verify.trim().ends_with(": OK"), "{verify}");
    let (code, rows) = s.node.check_json(&[]);
    assert_eq!(support::row(&rows, CLIENT_PEM, None)["keyMatches"], true);
    // The serving certificate is configured and not obtained yet: check names it (exit 2).
    assert_eq!(code, 2, "{rows:#?}");
    let serving = support::row(&rows, SERVING_PEM, None);
    assert!(
        serving["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("missing: kubelet-serving is configured")),
        "{serving}"
    );

    // A real Go client accepts the kubeconfig and certificate the agent wrote.
    let host = host_kubeconfig(&s.node);
    let k = kubectl(&host, &["get", "csr", "-o", "name"]);
    assert!(k.status.success(), "kubectl: {}", text(&k));
    assert!(String::from_utf8_lossy(&k.stdout)
        .contains("certificatesigningrequest.certificates.k8s.io/csr-"));

    // Renewal authenticates with the node's certificate (mTLS), not the token.
    let first = v.serial;
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("authenticated with the client certificate"),
        "{}",
        text(&out)
    );
    assert_ne!(openssl::view(&s.node.resolved(CLIENT_PEM)).serial, first);
    // rollback takes the config's name and swaps the -current link back.
    let out = s.node.agent(&["rollback", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(openssl::view(&s.node.resolved(CLIENT_PEM)).serial, first);
    let users: Vec<String> = s
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.user.clone())
        .collect();
    assert_eq!(users, ["system:bootstrap:abcdef", "system:node:node-1"]);
}

/// Poll `cond` every 5 ms for at most 20 s; false if it never held.
fn wait_until(what: &str, cond: impl Fn() -> bool) -> bool {
    for _ in 0..4000 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("gave up waiting for {what}");
    false
}

/// The agent run in the background, with its stderr lines available.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(node: &NodeTree, args: &[&str]) -> Running {
        let mut child = support::agent_cmd()
            .arg("--root")
            .arg(node.root())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Running { child, lines }
    }

    fn wait_line(&self, contains: &str) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no line with {contains:?}"));
            if l.contains(contains) {
                return l;
            }
        }
    }

    fn finish(mut self) -> (i32, String) {
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let code = self.child.wait().unwrap().code().unwrap();
        (code, stdout)
    }
}

#[test]
fn serving_csr_waits_for_an_approval_made_with_kubectl() {
    let s = setup("30s");
    assert_eq!(
        s.node.agent(&["rotate", "kubelet-client"]).status.code(),
        Some(0)
    );
    let run = Running::start(&s.node, &["rotate", "kubelet-serving"]);
    let line = run.wait_line("kubectl certificate approve");
    let name = line.split_whitespace().last().unwrap().to_string();
    assert!(name.starts_with("csr-"), "{line}");
    let admin = s.node.root().join("admin.conf");
    s.api.write_admin_kubeconfig(&admin).unwrap();
    let pending = kubectl(&admin, &["get", "csr", &name]);
    assert!(
        String::from_utf8_lossy(&pending.stdout).contains("Pending"),
        "{}",
        text(&pending)
    );
    let k = kubectl(&admin, &["certificate", "approve", &name]);
    assert!(k.status.success(), "{}", text(&k));
    let (code, stdout) = run.finish();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("kubelet-serving: rotated"), "{stdout}");
    let v = openssl::view(&s.node.resolved(SERVING_PEM));
    assert_eq!(v.sans, ["DNS:node-1", "IP:127.0.0.1"]);
    let listed = kubectl(&admin, &["get", "csr", &name]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("Approved,Issued"),
        "{}",
        text(&listed)
    );
}

#[test]
fn an_expired_client_certificate_logs_in_again_with_the_token() {
    let s = setup_with("30s", false);
    assert_eq!(
        s.node.agent(&["rotate", "kubelet-client"]).status.code(),
        Some(0)
    );
    // Replace the current certificate with an expired one for the same node, from the
    // cluster CA, with its key in the same PEM.
    s.node.expire_kubelet_client(&s.api);
    // `repair` re-bootstraps an expired client certificate with the token.
    let out = s.node.agent(&["repair"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("kubelet-client: rotated (expired)"), "{t}");
    assert!(t.contains("authenticated with the bootstrap token"), "{t}");
    assert!(
        t.contains("1 repaired, 0 healthy, 0 could not be repaired"),
        "{t}"
    );
    // Not offered to the API server at all (no 401 round trip first).
    assert!(!t.contains("refused the node's client certificate"), "{t}");
    let out = s.node.agent(&["repair"]);
    assert!(
        text(&out).contains("0 repaired, 1 healthy"),
        "{}",
        text(&out)
    );
}

/// A client certificate for this node from another CA ("not-the-cluster"), with its key,
/// as the current kubelet client PEM.
fn foreign_client_certificate(s: &Setup, dir: &std::path::Path) -> openssl::Pair {
    let other = openssl::ca(dir, "other", openssl::Key::P256, "not-the-cluster", 30);
    let leaf = openssl::leaf(
        dir,
        "n",
        &other,
        &openssl::Leaf {
            subject: "/O=system:nodes/CN=system:node:node-1",
            eku: "clientAuth",
            ..Default::default()
        },
    );
    let mut pem = std::fs::read(&leaf.cert).unwrap();
    pem.extend(std::fs::read(&leaf.key).unwrap());
    std::fs::write(s.node.path(CLIENT_PEM), pem).unwrap();
    other
}

#[test]
fn a_rejected_client_certificate_falls_back_to_the_token() {
    let s = setup("30s");
    let dir = tempfile::tempdir().unwrap();
    let other = foreign_client_certificate(&s, dir.path());
    // The node trusts both CAs, so the certificate is offered; the API server answers 401.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = format!(
        "{}{}",
        s.api.ca_pem(),
        std::fs::read_to_string(&other.cert).unwrap()
    );
    let path = s.node.path("/var/lib/kubelet/bootstrap-kubeconfig");
    let kc = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&b64.encode(s.api.ca_pem()), &b64.encode(bundle.as_bytes()));
    std::fs::write(&path, kc).unwrap();
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("refused the node's client certificate"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("authenticated with the bootstrap token"),
        "{}",
        text(&out)
    );
}

/// After a CA change: a valid client certificate that does not chain to the CA of the
/// node's kubeconfig is broken (the API server would answer 401): `repair`
/// re-bootstraps it with the token at once, without offering it first.
#[test]
fn a_client_certificate_from_another_ca_is_broken_and_repaired_with_the_token() {
    let s = setup_with("30s", false);
    let dir = tempfile::tempdir().unwrap();
    foreign_client_certificate(&s, dir.path());
    let out = s.node.agent(&["rotate", "--dry-run"]);
    let t = text(&out);
    assert!(
        t.contains("kubelet-client: would rotate (broken: ")
            && t.contains("which is not the CA /var/lib/kubelet/bootstrap-kubeconfig trusts"),
        "{t}"
    );
    let out = s.node.agent(&["repair"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("kubelet-client: rotated (broken: "), "{t}");
    assert!(t.contains("authenticated with the bootstrap token"), "{t}");
    assert!(!t.contains("refused the node's client certificate"), "{t}");
    std::fs::write(s.node.root().join("ca.crt"), s.api.ca_pem()).unwrap();
    let pem = s.node.resolved(CLIENT_PEM);
    let verify = openssl::openssl(
        s.node.root(),
        &["verify", "-CAfile", "ca.crt", pem.to_str().unwrap()],
    );
    assert!(verify.trim().ends_with(": OK"), "{verify}");
    // Healthy now: a second repair does nothing.
    assert!(text(&s.node.agent(&["repair"])).contains("0 repaired, 1 healthy"));
}

#[test]
fn transient_failures_are_retried() {
    let s = setup("30s");
    s.api.fail_next(2, 503);
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let codes: Vec<u16> = s.api.requests().iter().map(|r| r.status).collect();
    assert_eq!(&codes[..2], &[503, 503], "{codes:?}");

    s.api.throttle_next(1, 1);
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.api.requests().iter().any(|r| r.status == 429));

    // Watch streams that end after every event are reconnected.
    s.api.set_watch_event_limit(Some(1));
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_too_old_resource_version_is_answered_with_a_fresh_get() {
    let s = setup("30s");
    s.api.set_never_approve(true);
    s.api.set_never_sign(true);
    // Every request waits 500 ms before it is served. The CSR exists as soon as the create
    // is served; the agent's watch (sent only after the create's answer) is served 500 ms
    // later at the earliest. Changing the CSR and forgetting the history in between makes
    // that watch's resourceVersion too old (410), and only a fresh GET can tell the agent
    // where things stand.
    s.api.set_latency(Duration::from_millis(500));
    let run = Running::start(&s.node, &["rotate", "kubelet-client"]);
    assert!(wait_until("the CSR", || !s.api.list().is_empty()));
    let name = s.api.list()[0].metadata.name.clone().unwrap();
    s.api.approve(&name).unwrap();
    s.api.compact();
    let got = || {
        s.api
            .requests()
            .iter()
            .any(|r| r.method == "GET" && !r.watch && r.path.ends_with(&name))
    };
    let found = wait_until("a GET of the CSR after the 410", got);
    s.api.set_latency(Duration::ZERO);
    s.api.set_never_sign(false);
    let (code, stdout) = run.finish();
    assert!(
        found,
        "no GET after the 410; agent said: {stdout}; requests: {:?}",
        s.api.requests()
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("kubelet-client: rotated"), "{stdout}");
    let log = s.api.requests();
    let kinds: Vec<(&str, bool)> = log.iter().map(|r| (r.method.as_str(), r.watch)).collect();
    assert_eq!(
        kinds,
        [
            ("POST", false),
            ("GET", true),
            ("GET", false),
            ("GET", true)
        ],
        "create, the watch answered 410, the GET, the watch that sees the certificate"
    );
}

#[test]
fn denied_failed_and_never_approved_csrs_end_with_the_reason_and_install_nothing() {
    let s = setup("30s");
    s.api.deny_next(1);
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("was denied"), "{}", text(&out));
    s.api.fail_next_csr(1);
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("failed"), "{}", text(&out));
    assert!(!s.node.path(CLIENT_PEM).exists(), "nothing installed");
}

#[test]
fn a_certificate_for_another_key_is_rejected_and_nothing_is_installed() {
    let s = setup("30s");
    assert_eq!(
        s.node.agent(&["rotate", "kubelet-client"]).status.code(),
        Some(0)
    );
    let before = openssl::view(&s.node.resolved(CLIENT_PEM)).serial;
    s.api.sign_wrong_key_next(1);
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("for a different key"), "{}", text(&out));
    assert_eq!(
        openssl::view(&s.node.resolved(CLIENT_PEM)).serial,
        before,
        "the old certificate stays"
    );
}

#[test]
fn a_bad_token_a_wrong_ca_and_a_forbidden_request_say_what_to_do() {
    let s = setup("30s");
    let bk = s.node.path("/var/lib/kubelet/bootstrap-kubeconfig");
    let good = std::fs::read_to_string(&bk).unwrap();
    std::fs::write(
        &bk,
        good.replace("abcdef.0123456789abcdef", "zzzzzz.0123456789abcdef"),
    )
    .unwrap();
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out).contains("401 Unauthorized")
            && text(&out).contains("/var/lib/kubelet/bootstrap-kubeconfig"),
        "{}",
        text(&out)
    );

    // A CA that did not sign the server's certificate: TLS verification fails, by name.
    let other = StandIn::start(Options::default()).unwrap();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(
        &bk,
        good.replace(&b64(s.api.ca_pem()), &b64(other.ca_pem())),
    )
    .unwrap();
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out).contains("TLS verification failed") && text(&out).contains(&s.api.url()),
        "{}",
        text(&out)
    );
    std::fs::write(&bk, &good).unwrap();

    // Bootstrappers may not ask for serving certificates: 403 names user and verb.
    let out = s.node.agent(&["rotate", "kubelet-serving"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out).contains("403 Forbidden") && text(&out).contains("system:bootstrap:abcdef"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_csr_never_approved_times_out_naming_it() {
    let s = setup("2s");
    s.api.set_never_approve(true);
    let out = s.node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("was not issued within 2s"),
        "{}",
        text(&out)
    );
}
