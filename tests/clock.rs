//! Clock jumps, with a real fake clock (libfaketime, `scripts/install-test-deps.sh`
//! installs it): certificates issued while the clock ran years ahead are healed by
//! `repair`, and the daemon notices the wall clock step back (against its monotonic clock)
//! and re-issues them without being asked.

mod support;

use std::path::Path;
use std::time::Duration;

use support::daemon::{wait_until, Daemon};
use support::openssl::{self, Key};
use support::{text, NodeTree};

const PKI: &str = "/etc/kubernetes/pki";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn config(node: &NodeTree) {
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n- name: apiserver\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/apiserver.crt\n  key: /etc/kubernetes/pki/apiserver.key\n  subject: {commonName: kube-apiserver}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n",
    )
    .unwrap();
}

/// notBefore of a certificate as openssl prints it, as a Unix time.
fn not_before(cert: &Path) -> i64 {
    let out = openssl::openssl(
        cert.parent().unwrap(),
        &[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-startdate",
            "-dateopt",
            "iso_8601",
        ],
    );
    let s = out.trim().trim_start_matches("notBefore=");
    let t = time::PrimitiveDateTime::parse(
        s.trim_end_matches('Z'),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap_or_else(|e| panic!("{s:?}: {e}"));
    t.assume_utc().unix_timestamp()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn certificates_issued_five_years_ahead_are_healed_by_repair() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    config(&node);
    // The clock runs five years ahead while the certificate is issued.
    let out = std::process::Command::new("faketime")
        .args(["-f", "+1825d"])
        .arg(env!("CARGO_BIN_EXE_kube-cert-agent"))
        .arg("--root")
        .arg(node.root())
        .args(["rotate", "apiserver"])
        .output()
        .expect("faketime runs (scripts/install-test-deps.sh installs it)");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let crt = pki.join("apiserver.crt");
    assert!(
        not_before(&crt) > now() + 1800 * 86400,
        "not issued in the future"
    );

    // Back to the real clock: `check` sees it not yet valid; `repair` heals it, once.
    let (code, _) = node.check_json(&[]);
    assert_eq!(code, 2);
    let out = node.agent(&["repair"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("apiserver: rotated (broken: notBefore")
            && t.contains("in the future while its CA is valid"),
        "{t}"
    );
    assert!(not_before(&crt) <= now(), "still in the future");
    openssl::openssl(&pki, &["verify", "-CAfile", "ca.crt", "apiserver.crt"]);
    let again = node.agent(&["repair"]);
    assert!(text(&again).contains("0 repaired"), "{}", text(&again));
}

#[test]
fn the_daemon_notices_the_clock_step_back_and_reissues() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: scripts/install-test-deps.sh installs faketime"
    );
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    config(&node);
    let clock = node.root().join("faketime");
    std::fs::write(&clock, "+1825d\n").unwrap();
    let mut d = Daemon::start(
        &node,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            // The monotonic clock is the reference the wall clock is compared with.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    d.wait_notify("READY=1", Duration::from_secs(60));
    let crt = pki.join("apiserver.crt");
    let ahead = not_before(&crt);
    assert!(
        ahead > now() + 1800 * 86400,
        "the daemon did not run five years ahead"
    );

    // NTP steps the clock back five years. The next wake (a control request here) sees the
    // wall clock move back while the monotonic clock moved on, and re-plans.
    std::fs::write(&clock, "+0d\n").unwrap();
    let out = node.agent(&["rotate", "--dry-run"]);
    assert!(
        text(&out).contains("asked the running daemon"),
        "{}",
        text(&out)
    );
    let healed = wait_until(Duration::from_secs(60), || not_before(&crt) <= now());
    assert!(healed.is_some(), "not re-issued; log:\n{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("the wall clock jumped by"), "{log}");
    assert!(log.contains("in the future while its CA is valid"), "{log}");
    openssl::openssl(&pki, &["verify", "-CAfile", "ca.crt", "apiserver.crt"]);
}
