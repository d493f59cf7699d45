//! Runtime paths (the control socket) resolve under `--root` with the certificates' rules:
//! a symlinked `ROOT/run/kube-cert-agent` can neither send a command to another root's
//! daemon nor make `run` unlink or bind a socket outside its root.

mod support;

use std::time::Duration;

use support::daemon::Daemon;
use support::openssl::{self, Key};
use support::{text, NodeTree};

fn managed_tree() -> NodeTree {
    let node = NodeTree::new();
    openssl::ca(
        &node.path("/etc/kubernetes/pki"),
        "ca",
        Key::P256,
        "kubernetes",
        3650,
    );
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n- name: apiserver\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/apiserver.crt\n  key: /etc/kubernetes/pki/apiserver.key\n  subject: {commonName: kube-apiserver}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n",
    )
    .unwrap();
    node
}

#[test]
fn a_symlinked_run_directory_never_reaches_another_roots_daemon() {
    let a = managed_tree();
    let mut d = Daemon::start(&a, &[]);
    d.wait_notify("READY=1", Duration::from_secs(60));
    let a_run = a.path("/run/kube-cert-agent");
    assert!(a_run.join("control.sock").exists());
    // Sanity: A's own CLI reaches A's daemon.
    let out = a.agent(&["rotate", "--dry-run"]);
    assert!(
        text(&out).contains("asked the running daemon"),
        "{}",
        text(&out)
    );

    // Node tree B whose run directory is a symlink to A's (an absolute host path).
    let b = managed_tree();
    std::fs::create_dir_all(b.path("/run")).unwrap();
    std::os::unix::fs::symlink(&a_run, b.path("/run/kube-cert-agent")).unwrap();
    let a_serial_before = support::daemon::serial_of(&a.path("/etc/kubernetes/pki/apiserver.crt"));
    let out = b.agent(&["rotate", "--all"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        !t.contains("asked the running daemon"),
        "B's rotate reached A's daemon: {t}"
    );
    assert!(
        b.path("/etc/kubernetes/pki/apiserver.crt").exists(),
        "B was not rotated here: {t}"
    );
    assert_eq!(
        support::daemon::serial_of(&a.path("/etc/kubernetes/pki/apiserver.crt")),
        a_serial_before,
        "A's certificate changed"
    );

    // `run` on B does not unlink A's socket nor bind through the link.
    // (`timeout`: a daemon that wrongly started would serve forever.)
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_kube-cert-agent"))
        .arg("--root")
        .arg(b.root())
        .arg("run")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("control.sock"), "{}", text(&out));
    assert!(
        a_run.join("control.sock").exists(),
        "A's socket was removed"
    );
    let out = a.agent(&["rotate", "--dry-run"]);
    assert!(
        text(&out).contains("asked the running daemon"),
        "A's daemon lost its socket: {}",
        text(&out)
    );
}
