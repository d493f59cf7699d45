//! Leader election: only the Lease holder acts; a killed holder is replaced after the lease
//! duration, a holder stopped with SIGTERM hands over at once.

use super::*;

#[test]
fn only_the_lease_holder_acts_and_the_other_takes_over_when_it_dies() {
    let (api, dir) = start_api(Options::default());
    api.set_node("node-a", &[("Hostname", "node-a")]).unwrap();
    api.set_node("node-b", &[("Hostname", "node-b")]).unwrap();
    let d = dir.path();
    let mut first = Approver::start(d, "replica-1", &[]);
    assert!(wait_until(LONG, || api
        .lease("kube-system", "kube-cert-agent-approver")
        .is_some())
    .is_some());
    let mut second = Approver::start(d, "replica-2", &[]);
    let holder = || {
        api.lease("kube-system", "kube-cert-agent-approver")
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .unwrap()
    };
    assert_eq!(holder(), "replica-1");
    assert!(create_with_kubectl(
        &api,
        d,
        "node-a",
        "csr-1",
        "system:node:node-a",
        "DNS:node-a"
    )
    .0
    .status
    .success());
    let one = wait_decided(&api, "csr-1");
    assert!(
        one.0 == "Approved" && one.2.contains("replica-1"),
        "{one:?}"
    );
    assert!(
        holder() == "replica-1",
        "no take-over while the holder renews"
    );
    assert!(
        !second.log_text().contains("CSR csr-1"),
        "{}",
        second.log_text()
    );
    // Kill the holder: replica-2 takes the Lease over and approves the next CSR.
    first.kill();
    assert!(
        wait_until(LONG, || holder() == "replica-2").is_some(),
        "{}",
        second.log_text()
    );
    let lease = api
        .lease("kube-system", "kube-cert-agent-approver")
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.lease_transitions, Some(1));
    assert!(create_with_kubectl(
        &api,
        d,
        "node-b",
        "csr-2",
        "system:node:node-b",
        "DNS:node-b"
    )
    .0
    .status
    .success());
    let two = wait_decided(&api, "csr-2");
    assert!(
        two.0 == "Approved" && two.2.contains("replica-2"),
        "{two:?}"
    );
    assert!(
        second.log_text().contains("acquired the lease"),
        "{}",
        second.log_text()
    );
    second.kill();
}

#[test]
fn a_holder_stopped_with_sigterm_releases_the_lease_for_the_other_replica() {
    let (api, dir) = start_api(Options::default());
    let d = dir.path();
    // An hour-long lease: only the release can explain a take-over during this test.
    let long = [
        "--lease-duration",
        "1h",
        "--renew-deadline",
        "2s",
        "--retry-period",
        "200ms",
    ];
    let holder = || {
        api.lease("kube-system", "kube-cert-agent-approver")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let mut first = Approver::start(d, "replica-1", &long);
    assert!(wait_until(LONG, || holder().as_deref() == Some("replica-1")).is_some());
    let mut second = Approver::start(d, "replica-2", &long);
    assert!(
        wait_until(LONG, || second.log_text().contains("starting")).is_some(),
        "{}",
        second.log_text()
    );
    let status = first.terminate();
    assert!(status.success(), "{status:?}: {}", first.log_text());
    let log = first.log_text();
    let stopping = log.find("approver stopping").expect("logged stopping");
    let released = log.find("released the lease").expect("logged the release");
    assert!(stopping < released, "{log}");
    assert!(
        wait_until(LONG, || holder().as_deref() == Some("replica-2")).is_some(),
        "{}",
        second.log_text()
    );
    let spec = api
        .lease("kube-system", "kube-cert-agent-approver")
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.lease_duration_seconds, Some(3600));
    second.kill();
}
