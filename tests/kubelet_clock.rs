//! Kubelet certificates and clocks: kube-controller-manager backdates what it signs by 5
//! minutes, so a RenewRevocation written "as of now" still revokes a replacement requested
//! at once; the daemon explains it once and requests the replacement by itself as soon as
//! one clears the cutoff. And a kubelet certificate issued while this node's clock ran
//! ahead (notBefore in the future) is re-issued, while one only signed ahead (a signer's
//! clock ahead of ours) is reported, not re-requested in a loop. Clocks are moved with
//! libfaketime (scripts/install-test-deps.sh installs it); nothing waits on wall time.

mod support;

use std::path::Path;
use std::time::Duration;

use kube_standin_apiserver::{Options, StandIn};
use support::daemon::{wait_until, Daemon};
use support::openssl::{self, Key, Leaf};
use support::{text, NodeTree};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const CLIENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const T: Duration = Duration::from_secs(60);

fn node_for(api: &StandIn) -> NodeTree {
    NodeTree::kubelet_client_node(api, "30s")
}

fn client_csrs(api: &StandIn) -> usize {
    api.list()
        .iter()
        .filter(|c| c.spec.signer_name == CLIENT_SIGNER)
        .count()
}

/// notBefore of the current client certificate (openssl), as a Unix time.
fn not_before(node: &NodeTree) -> i64 {
    let pem = node.resolved(CLIENT_PEM);
    let out = openssl::openssl(
        node.root(),
        &[
            "x509",
            "-in",
            pem.to_str().unwrap(),
            "-noout",
            "-startdate",
            "-dateopt",
            "iso_8601",
        ],
    );
    let s = out.trim().trim_start_matches("notBefore=");
    time::PrimitiveDateTime::parse(
        s.trim_end_matches('Z'),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap_or_else(|e| panic!("{s:?}: {e}"))
    .assume_utc()
    .unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// libfaketime re-reads the file at every clock read and exits on a torn one: replace it
/// whole (rename).
fn set_clock(file: &Path, offset_seconds: i64) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{offset_seconds:+}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The daemon runs 5 minutes behind the stand-in's clock (libfaketime, offset from a file
/// it re-reads): a cutoff "as of now" by the daemon's clock is then cleared by what the
/// stand-in signs once the daemon's clock has caught up, which is what happens on a real
/// node 5 minutes later. The clock is moved in steps under a minute, each seen by the loop
/// (watchdog pings), so the daemon sees time pass, not a clock step it would re-plan for.
#[test]
fn an_as_of_now_cutoff_on_the_kubelet_certificate_is_waited_out_with_one_more_csr() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: scripts/install-test-deps.sh installs faketime"
    );
    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = node_for(&api);
    let clock = node.root().join("faketime");
    set_clock(&clock, -300);
    let mut d = Daemon::start(
        &node,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    d.wait_notify("READY=1", T);
    assert_eq!(client_csrs(&api), 1, "bootstrapped once");
    let first = not_before(&node);

    // Revoke the node's certificates "as of now": the current one was issued before.
    let cutoff = first + 1;
    let dir = node.path("/etc/kube-cert-agent/revocations.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("nodes.yaml"),
        format!(
            "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {{name: nodes}}\n\
             spec:\n  revocations:\n  - {{kind: Group, group: system:nodes, notBefore: \"{}\"}}\n",
            rfc3339(cutoff)
        ),
    )
    .unwrap();
    let explained = wait_until(T, || d.log_text().contains("backdates"));
    assert!(
        explained.is_some(),
        "no explanation; log:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    let until = rfc3339(cutoff + 300);
    assert!(
        log.contains(&format!("requests it at {until}")),
        "the instant a replacement clears the cutoff: {log}"
    );
    assert!(
        !log.contains("set its notBefore"),
        "no advice that is already applied: {log}"
    );
    assert_eq!(
        client_csrs(&api),
        1,
        "nothing requested that would be revoked"
    );

    // Time passes on the daemon's clock, in steps the loop sees one by one: after each
    // step, two watchdog pings sent after it (older ones drained first). A step is 25 s,
    // so even two steps seen as one stay under the minute the daemon takes for a jump.
    for offset in (-275..=0).step_by(25) {
        set_clock(&clock, offset);
        while let Ok(m) = d.notify.try_recv() {
            d.messages.push(m);
        }
        for _ in 0..2 {
            d.wait_notify("WATCHDOG=1", T);
        }
    }
    let replaced = wait_until(T, || {
        client_csrs(&api) == 2
            && std::fs::read_link(node.path(CLIENT_PEM)).is_ok()
            && not_before(&node) >= cutoff
    });
    assert!(
        replaced.is_some(),
        "not re-issued by itself; log:\n{}",
        d.log_text()
    );

    // No loop: another look (a control request rescans) finds it valid, no more CSRs.
    let out = node.agent(&["rotate", "--dry-run"]);
    assert!(text(&out).contains("kubelet-client"), "{}", text(&out));
    assert_eq!(client_csrs(&api), 2, "exactly one more CSR");
    let log = d.log_text();
    let explanations = log.lines().filter(|l| l.contains("backdates")).count();
    assert_eq!(explanations, 1, "explained once: {log}");
    let rotated = log
        .find("kubelet-client: rotated (revoked by nodes/0")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(log.find("backdates").unwrap() < rotated, "{log}");
    assert!(!log.contains("the wall clock jumped"), "{log}");
}

/// A client certificate signed by the stand-in's CA with the given notBefore/notAfter
/// (`YYYYMMDDHHMMSSZ`), installed as kubelet's version `stamp` (`YYYY-MM-DD-HH-MM-SS`).
fn install_client(api: &StandIn, node: &NodeTree, start: &str, end: &str, stamp: &str) {
    let work = tempfile::tempdir().unwrap();
    let ca = openssl::Pair {
        cert: work.path().join("ca.crt"),
        key: work.path().join("ca.key"),
    };
    std::fs::write(&ca.cert, api.ca_pem()).unwrap();
    std::fs::write(&ca.key, api.ca_key_pem()).unwrap();
    let leaf = openssl::leaf(
        work.path(),
        "client",
        &ca,
        &Leaf {
            subject: "/O=system:nodes/CN=system:node:node-1",
            eku: "clientAuth",
            key: Key::P256,
            dates: Some((start, end)),
            ..Leaf::default()
        },
    );
    let mut pem = std::fs::read(&leaf.cert).unwrap();
    pem.extend(std::fs::read(&leaf.key).unwrap());
    let file = format!("/var/lib/kubelet/pki/kubelet-client-{stamp}.pem");
    std::fs::write(node.path(&file), pem).unwrap();
    let link = node.path(CLIENT_PEM);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&file, &link).unwrap();
}

fn stamp(t: time::OffsetDateTime, fmt: &[time::format_description::FormatItem<'_>]) -> String {
    t.format(fmt).unwrap()
}

#[test]
fn a_kubelet_certificate_issued_while_the_clock_ran_ahead_is_reissued_once() {
    let openssl_fmt =
        time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    let kubelet_fmt =
        time::macros::format_description!("[year]-[month]-[day]-[hour]-[minute]-[second]");
    let now = time::OffsetDateTime::now_utc();
    let ahead = now + time::Duration::days(1825);
    let api = StandIn::start(Options::default()).expect("stand-in starts");

    // This node's clock ran five years ahead when kubelet wrote it (its file's stamp), and
    // the signer, on the same clock, dated it then; the clock is right again.
    let node = node_for(&api);
    install_client(
        &api,
        &node,
        &stamp(ahead - time::Duration::minutes(5), openssl_fmt),
        &stamp(ahead + time::Duration::days(365), openssl_fmt),
        &stamp(ahead, kubelet_fmt),
    );
    let out = node.agent(&["rotate"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("kubelet-client: rotated (broken: notBefore")
            && t.contains("issued while the clock was ahead"),
        "{t}"
    );
    assert_eq!(client_csrs(&api), 1);
    assert!(not_before(&node) <= time::OffsetDateTime::now_utc().unix_timestamp());
    let again = node.agent(&["rotate"]);
    assert!(
        text(&again).contains("kubelet-client: valid"),
        "{}",
        text(&again)
    );
    assert_eq!(client_csrs(&api), 1, "re-issued once");

    // Written now, dated ahead: the signer's clock is ahead of this node's, and another
    // CSR would come back the same. Reported, not requested.
    let node = node_for(&api);
    install_client(
        &api,
        &node,
        &stamp(ahead - time::Duration::minutes(5), openssl_fmt),
        &stamp(ahead + time::Duration::days(365), openssl_fmt),
        &stamp(now, kubelet_fmt),
    );
    let out = node.agent(&["rotate"]);
    let t = text(&out);
    assert!(t.contains("kubelet-client: not valid until"), "{t}");
    assert_eq!(client_csrs(&api), 1, "no CSR for a signer's clock");
}
