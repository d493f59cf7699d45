//! `kube-cert-agent run` as a real child process on a `--root` tree: sd_notify over a
//! datagram socket the test binds, real signals, inotify, the control socket.

mod support;

use std::time::Duration;

use kube_standin_apiserver::{Options, StandIn};
use support::daemon::{key_matches, serial_of, wait_until, Daemon};
use support::openssl::{self, Key};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const T: Duration = Duration::from_secs(30);

/// A tree with a CA and `names` declared as certificates (none issued yet: the first
/// reconcile issues them).
fn tree(names: &[&str], key_type: &str, on_rotate: &str) -> NodeTree {
    let node = NodeTree::new();
    openssl::ca(&node.path(PKI), "ca", Key::P256, "kubernetes", 3650);
    let mut body = String::from(
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n",
    );
    for n in names {
        body.push_str(&format!(
            "- name: {n}\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/{n}.crt\n  key: {PKI}/{n}.key\n  subject: {{commonName: {n}}}\n  dnsNames: [{n}]\n  usages: [serverAuth]\n  keyType: {key_type}\n  onRotate: {on_rotate}\n"
        ));
    }
    std::fs::write(node.path("/etc/kube-cert-agent/config.yaml"), body).unwrap();
    node
}

fn serial(node: &NodeTree, name: &str) -> String {
    serial_of(&node.path(&format!("{PKI}/{name}.crt")))
        .unwrap_or_else(|| panic!("{name}: no certificate"))
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn ready_only_after_the_first_reconcile_with_status_and_watchdog_pings() {
    let node = tree(&["apiserver", "front-proxy-client"], "ecdsa-p256", "[]");
    let mut d = Daemon::start(&node, &[("WATCHDOG_USEC", "400000")]);
    let ready = d.wait_notify("READY=1", T);
    // Both certificates were issued before READY=1.
    assert!(serial_of(&node.path(&format!("{PKI}/apiserver.crt"))).is_some());
    assert!(serial_of(&node.path(&format!("{PKI}/front-proxy-client.crt"))).is_some());
    assert!(
        ready.contains("STATUS=2 certificates, next rotation "),
        "{ready}"
    );
    // WATCHDOG_USEC=400ms: a ping about every 200 ms. Count 5 of them (not a timing test:
    // only that they come; a wall-clock bound flaked on a loaded 2-core machine).
    let before = d.messages.len();
    for _ in 0..5 {
        d.wait_notify("WATCHDOG=1", Duration::from_secs(10));
    }
    let pings = d.messages[before..]
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert!(pings >= 5, "{pings} watchdog pings");
    // state.json and `status` agree, and see the daemon running.
    let out = node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["state"]["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(v["state"]["certificates"][0]["lastResult"], "rotated");
    assert!(v["state"]["certificates"][0]["nextDeadline"].is_string());
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
    d.wait_notify("STOPPING=1", Duration::from_secs(5));
    let out = node.agent(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon: not running"));
}

#[test]
fn ten_sighups_give_one_forced_rotation_announced_with_reloading_then_ready() {
    let node = tree(&["apiserver", "etcd-server"], "ecdsa-p256", "[]");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let (a0, e0) = (serial(&node, "apiserver"), serial(&node, "etcd-server"));
    for _ in 0..10 {
        d.signal("HUP");
    }
    let reloading = d.wait_notify("RELOADING=1", T);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    d.wait_notify("READY=1", T);
    let (a1, e1) = (serial(&node, "apiserver"), serial(&node, "etcd-server"));
    assert_ne!(a0, a1);
    assert_ne!(e0, e1);
    // No second rotation follows (bounded wait for something that must not come).
    assert!(d
        .try_wait_notify("RELOADING=1", Duration::from_millis(1500))
        .is_none());
    let log = d.log_text();
    assert_eq!(count(&log, "TRIGGER=\"SIGHUP\""), 2, "{log}");
    assert_eq!(count(&log, "SIGHUP: forced rotation"), 1, "{log}");
}

#[test]
fn sigterm_during_a_rotation_finishes_it_and_exits_0() {
    // RSA-4096 keys: a rotation long enough to land a SIGTERM in the middle of it.
    let node = tree(&["apiserver", "apiserver-kubelet-client"], "rsa-4096", "[]");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", Duration::from_secs(60));
    let before = serial(&node, "apiserver-kubelet-client");
    d.signal("HUP");
    d.wait_notify("RELOADING=1", T);
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        d.log_text()
    );
    d.wait_notify("STOPPING=1", Duration::from_secs(5));
    // The rotation in progress was finished, not cut: new serials, each cert with its key.
    for n in ["apiserver", "apiserver-kubelet-client"] {
        let cert = node.path(&format!("{PKI}/{n}.crt"));
        assert!(
            key_matches(&cert, &node.path(&format!("{PKI}/{n}.key"))),
            "{n}"
        );
    }
    assert_ne!(serial(&node, "apiserver-kubelet-client"), before);
    let log = d.log_text();
    assert!(
        log.find("TRIGGER=\"SIGHUP\"") < log.find("SIGTERM: stopping"),
        "{log}"
    );
}

#[test]
fn a_deleted_link_or_a_garbage_certificate_is_repaired_at_once() {
    let node = tree(&["apiserver"], "ecdsa-p256", "[]");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let crt = node.path(&format!("{PKI}/apiserver.crt"));
    let key = node.path(&format!("{PKI}/apiserver.key"));
    let s0 = serial(&node, "apiserver");

    std::fs::remove_file(&crt).unwrap();
    let took = wait_until(Duration::from_secs(10), || serial_of(&crt).is_some())
        .unwrap_or_else(|| panic!("not repaired\n{}", d.log_text()));
    eprintln!("deleted apiserver.crt repaired in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(key_matches(&crt, &key));
    let s1 = serial(&node, "apiserver");
    assert_ne!(s0, s1);

    std::fs::write(node.root().join("garbage"), b"not a certificate\n").unwrap();
    std::fs::rename(node.root().join("garbage"), &crt).unwrap();
    let took = wait_until(Duration::from_secs(10), || {
        serial_of(&crt).is_some_and(|s| s != s1)
    })
    .unwrap_or_else(|| panic!("not repaired\n{}", d.log_text()));
    eprintln!("garbage apiserver.crt repaired in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(key_matches(&crt, &key));
    let log = d.log_text();
    assert_eq!(count(&log, "ACTION=\"external-change\""), 2, "{log}");
    // Our own writes did not count as changes: nothing else was rotated.
    assert_eq!(count(&log, "ACTION=\"rotated\""), 3, "{log}");
}

#[test]
fn rotate_with_a_daemon_running_asks_the_daemon() {
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let node = tree(
        &["apiserver", "front-proxy-client"],
        "ecdsa-p256",
        &format!("[{{command: {{argv: [/bin/sh, -c, 'echo \"$KUBE_CERT_AGENT_CERTIFICATES\" >> {}']}}}}]", ran.display()),
    );
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // The command ran once for both certificates of the first cycle.
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "apiserver,front-proxy-client\n"
    );
    let s0 = serial(&node, "apiserver");
    let out = node.agent(&["rotate", "apiserver"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("asked the running daemon"));
    let s1 = serial(&node, "apiserver");
    assert!(stdout.contains(&format!("serial {s0} -> {s1}")), "{stdout}");
    assert!(d.log_text().contains("TRIGGER=\"rotate command\""));
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "apiserver,front-proxy-client\napiserver\n"
    );
    let out = node.agent(&["rotate", "nope"]);
    assert_eq!(out.status.code(), Some(3));
    // The socket is root's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.path("/run/kube-cert-agent/control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_config_error_exits_3_and_an_unmanaged_config_too() {
    let node = NodeTree::new();
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n- name: a\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/a.crt\n  key: /etc/kubernetes/pki/a.key\n  onRotate: [{restart: 'kubelet; reboot'}]\n",
    )
    .unwrap();
    let out = node.agent(&["run"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a systemd unit name"));
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nhistroy: 3\n",
    )
    .unwrap();
    assert_eq!(node.agent(&["run"]).status.code(), Some(3));
}

#[test]
fn a_deleted_kubelet_client_current_link_is_repaired_through_the_api_server() {
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::worker(&api, "kubelet:\n  serving: {enabled: false}\n");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let link = node.path("/var/lib/kubelet/pki/kubelet-client-current.pem");
    let target = std::fs::read_link(&link).unwrap();
    std::fs::remove_file(&link).unwrap();
    let took = wait_until(Duration::from_secs(10), || {
        std::fs::read_link(&link).is_ok_and(|t| t != target)
    })
    .unwrap_or_else(|| panic!("not repaired\n{}", d.log_text()));
    eprintln!("deleted kubelet-client-current.pem repaired in {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let log = d.log_text();
    assert!(
        log.contains("CERT_NAME=kubelet-client") && log.contains("external-change"),
        "{log}"
    );
}

#[test]
fn a_failed_action_is_logged_retried_and_shown_by_status() {
    // The unit does not exist: with or without systemd on the host, systemctl fails
    // with its own words and the restart stays pending.
    let node = tree(&["apiserver"], "ecdsa-p256", "[{restart: nothere.service}]");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // The restart runs in the action task, beside the loop: its failure comes after.
    let failed = wait_until(T, || {
        let log = d.log_text();
        log.contains("ERROR") && log.contains("ACTION=restart nothere.service")
    });
    assert!(failed.is_some(), "{}", d.log_text());
    let mut pending = serde_json::Value::Null;
    let shown = wait_until(T, || {
        let out = node.agent(&["status", "--output", "json"]).stdout;
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        pending = v["state"]["pendingActions"][0].clone();
        !pending.is_null()
    });
    assert!(shown.is_some(), "the failed restart is pending in status");
    assert_eq!(pending["action"], "restart nothere.service", "{pending}");
    assert_eq!(pending["certificates"][0], "apiserver");
    assert!(
        pending["error"]
            .as_str()
            .unwrap()
            .contains("nothere.service"),
        "{pending}"
    );
    // Retried with backoff: a second attempt is logged (at most ~1 s later).
    let retried = wait_until(Duration::from_secs(10), || {
        count(&d.log_text(), "ACTION=restart nothere.service") >= 2
    });
    assert!(retried.is_some(), "{}", d.log_text());
    let table = String::from_utf8_lossy(&node.agent(&["status"]).stdout).into_owned();
    assert!(
        table.contains("pending action restart nothere.service for apiserver"),
        "{table}"
    );
}

#[test]
fn a_dangling_link_found_at_start_up_is_repaired_before_ready() {
    let node = tree(&["apiserver"], "ecdsa-p256", "[]");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
    drop(d);
    // The versioned directory behind `..apiserver.data` is gone: both links dangle.
    let pki = node.path(PKI);
    let data = std::fs::read_link(pki.join("..apiserver.data")).unwrap();
    std::fs::remove_dir_all(pki.join(&data)).unwrap();
    assert!(serial_of(&pki.join("apiserver.crt")).is_none());
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    assert!(key_matches(
        &pki.join("apiserver.crt"),
        &pki.join("apiserver.key")
    ));
    assert!(d.log_text().contains("dangling"), "{}", d.log_text());
}
