//! The spread property on a small fleet: 200 nodes' real planning code on a virtual clock
//! (`benches/fleet_sim`). A fleet provisioned in one hour renews evenly afterwards; after a
//! fleet-wide event the busiest minute stays within the CSR budget `renewal.fleetSpread`
//! is sized against, and no node ever has two CSRs of one signer outstanding. No wall-clock timing: counts on the virtual clock. And the daemon
//! itself: an expired kubelet certificate waits its turn over `renewal.fleetSpread`.

#[allow(dead_code)] // the bench uses every scenario; this test only some
#[path = "../benches/fleet_sim/mod.rs"]
mod fleet_sim;
mod support;

use fleet_sim::{peak_mean, run, Params, Scenario, EVENT, SIGNERS};
use kube_cert_agent::lifecycle::spread;
use time::Duration;

const NODES: usize = 200;

fn params() -> Params {
    Params {
        nodes: NODES,
        days: 6,
        lifetime: Duration::days(4),
        // One hour per 1,000 nodes: 12 minutes.
        window: Duration::minutes(12),
        seed: 7,
    }
}

fn budget() -> f64 {
    spread::budget_per_minute(params().window, NODES as u64, SIGNERS as u64)
}

/// A fleet provisioned within one hour: after the bootstraps, its renewals are spread
/// evenly. Daily buckets (a small fleet's hourly counts are Poisson noise); with the usual
/// 70%..90% draw for the first renewal every certificate would renew within the same 20 h
/// of day 3, more than three times the mean.
#[test]
fn a_fleet_provisioned_in_one_hour_renews_evenly() {
    let p = Params {
        days: 13,
        ..params()
    };
    let r = run(&p, Scenario::Steady);
    let day = 24 * 60;
    // Every node bootstrapped both certificates within the first hour.
    let joined: u32 = r.per_minute[..60].iter().sum();
    assert_eq!(joined as usize, NODES * SIGNERS);
    let (peak, mean) = peak_mean(&r.per_minute, day, 13 * day, day);
    assert!(
        peak <= 1.5 * mean,
        "daily peak {} over 1.5 x mean {}",
        peak * day as f64,
        mean * day as f64
    );
    // About one renewal per certificate every 80% of a lifetime (3.2 days), plus the one
    // early first renewal: the spread costs no more than that.
    let renewals = r.renewals as f64 - (NODES * SIGNERS) as f64;
    let per_cert = renewals / (NODES * SIGNERS) as f64;
    assert!(
        (12.0 / 3.2..12.0 / 3.2 + 1.0).contains(&per_cert),
        "{per_cert}"
    );
    assert_eq!(r.max_outstanding, 1);
    assert_eq!(r.expired_seen, 0);
    assert!(r.requests as f64 <= 3.0 * r.renewals as f64);
}

#[test]
fn a_fleet_expired_at_once_renews_within_the_budget() {
    let r = run(&params(), Scenario::AllExpired);
    // Every certificate renewed once in the wave (and again later, on its own deadline).
    let wave: u32 = r.per_minute[..12].iter().sum();
    assert_eq!(wave as usize, NODES * SIGNERS, "{:?}", &r.per_minute[..20]);
    let (peak, _) = peak_mean(&r.per_minute, 0, r.per_minute.len(), 1);
    assert!(peak <= budget(), "peak {peak}/min over budget {}", budget());
    // Without the spread, the whole fleet would have come in the first minute.
    assert!(
        r.per_minute[0] < (NODES * SIGNERS / 4) as u32,
        "{}",
        r.per_minute[0]
    );
    assert_eq!(r.max_outstanding, 1);
}

#[test]
fn a_ca_rotation_reissue_is_spread_within_the_budget() {
    let r = run(&params(), Scenario::Reissue);
    let event = EVENT.whole_minutes() as usize;
    let wave: u32 = r.per_minute[event..event + 12].iter().sum();
    assert!(wave as usize >= NODES * SIGNERS, "{wave}");
    let (peak, _) = peak_mean(&r.per_minute, event, r.per_minute.len(), 1);
    assert!(peak <= budget(), "peak {peak}/min over budget {}", budget());
    assert_eq!(r.max_outstanding, 1);
    assert_eq!(r.expired_seen, 0);
}

#[test]
fn an_api_outage_is_retried_without_a_wave_and_nothing_expires() {
    let r = run(&params(), Scenario::Outage);
    let event = EVENT.whole_minutes() as usize;
    let (peak, _) = peak_mean(&r.per_minute, event, r.per_minute.len(), 1);
    assert!(peak <= budget(), "peak {peak}/min over budget {}", budget());
    assert_eq!(r.max_outstanding, 1);
    assert_eq!(r.expired_seen, 0);
    // The failure count survives each retry and the backoff grows up to the fleet window:
    // an hour of outage costs a few failed requests per certificate, not one per second.
    assert!(
        r.requests as f64 <= 3.0 * r.renewals as f64,
        "{} requests for {} renewals",
        r.requests,
        r.renewals
    );
}

/// The real daemon with `renewal.fleetSpread: 10h` finds its kubelet client certificate
/// expired at start-up (the node was off): no CSR at start-up, the journal says when its
/// turn comes, status shows that instant within the window; `rotate NAME` skips the queue.
#[test]
fn the_daemon_makes_an_expired_kubelet_certificate_wait_its_turn() {
    use kube_standin_apiserver::{Options, StandIn};
    use support::daemon::Daemon;
    use support::NodeTree;
    const T: std::time::Duration = std::time::Duration::from_secs(30);

    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::worker(
        &api,
        "renewal: {fleetSpread: 10h}\nkubelet:\n  serving: {enabled: false}\n",
    );
    let out = node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Replace it with an expired one for the same node from the cluster CA.
    node.expire_kubelet_client(&api);
    let csrs = api.list().len();

    let started = time::OffsetDateTime::now_utc();
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // READY comes after the start-up cycle: it created no CSR.
    assert_eq!(api.list().len(), csrs, "{}", d.log_text());
    let log = d.log_text();
    assert!(
        log.contains("kubelet-client: expired: renewal waits its turn in a fleet-wide wave until"),
        "{log}"
    );
    let out = node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["state"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubelet-client")
        .cloned()
        .unwrap();
    let next = time::OffsetDateTime::parse(
        c["nextDeadline"].as_str().unwrap_or_else(|| panic!("{c}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        next >= started - time::Duration::seconds(1)
            && next <= time::OffsetDateTime::now_utc() + time::Duration::hours(10),
        "{c}"
    );
    // The operator's word skips the queue: one CSR, installed.
    let out = node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log_text());
    // The daemon runs kubelet CSRs as a task: `rotate` returns once it has started. Wait
    // for the CSR to appear (a state, not a duration), then count exactly one.
    let give_up = std::time::Instant::now() + T;
    while api.list().len() == csrs && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(api.list().len(), csrs + 1, "{}", d.log_text());
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
}

/// The real daemon, a node joining: its kubelet client certificate, bootstrapped at
/// start-up, is planned for renewal with the wide first draw (10%..90% of its life); one
/// the operator forces afterwards is planned as usual (70%..90%). Exact instants, computed
/// from the certificate on disk with the library's policy.
#[test]
fn the_daemon_draws_a_joining_nodes_first_renewal_over_a_whole_period() {
    use kube_cert_agent::pki::policy::{unit_from_serial, RenewalPolicy};
    use kube_cert_agent::pki::CertInfo;
    use kube_standin_apiserver::{Options, StandIn};
    use support::daemon::{wait_until, Daemon};
    use support::NodeTree;
    const T: std::time::Duration = std::time::Duration::from_secs(30);
    const USUAL: RenewalPolicy = RenewalPolicy {
        renew_at: 0.8,
        jitter: 0.1,
    };

    let api = StandIn::start(Options::default()).expect("stand-in starts");
    let node = NodeTree::new();
    api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
        .unwrap();
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: node-1\n\
         kubelet:\n  serving: {enabled: false}\n",
    )
    .unwrap();
    let current = node.path("/var/lib/kubelet/pki/kubelet-client-current.pem");
    let on_disk = || -> Option<CertInfo> {
        // The link is absolute (as kubelet writes it): resolve it inside the node tree.
        let target = std::fs::read_link(&current).ok()?;
        let pems = pem::parse_many(std::fs::read(node.path(target.to_str()?)).ok()?).ok()?;
        let der = pems.iter().find(|p| p.tag() == "CERTIFICATE")?.contents();
        CertInfo::parse(der).ok()
    };
    // The status's planned deadline, once it is about the certificate on disk.
    let planned = |serial: &str| -> Option<time::OffsetDateTime> {
        let out = node.agent(&["status", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let c = v["state"]["certificates"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "kubelet-client")?
            .clone();
        if c["serial"].as_str()? != serial {
            return None;
        }
        time::OffsetDateTime::parse(
            c["nextDeadline"].as_str()?,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    };
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    // Bootstrapped in a task: wait for the status to describe the installed certificate.
    let mut joined = None;
    wait_until(T, || {
        joined = on_disk().and_then(|c| Some((planned(&c.serial)?, c)));
        joined.is_some()
    });
    let (deadline, cert) = joined.unwrap_or_else(|| panic!("{}", d.log_text()));
    let u = unit_from_serial(&cert.serial);
    let wide = spread::first_policy(&USUAL).deadline_at(cert.not_before, cert.not_after, u);
    assert!(
        (deadline - wide).abs() < time::Duration::SECOND,
        "planned {deadline}, the wide first draw says {wide}"
    );

    // The operator's renewal is not a batch: the usual draw.
    let out = node.agent(&["rotate", "kubelet-client"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log_text());
    let mut renewed = None;
    wait_until(T, || {
        renewed = on_disk()
            .filter(|c| c.serial != cert.serial)
            .and_then(|c| Some((planned(&c.serial)?, c)));
        renewed.is_some()
    });
    let (deadline, cert) = renewed.unwrap_or_else(|| panic!("{}", d.log_text()));
    let u = unit_from_serial(&cert.serial);
    let usual = USUAL.deadline_at(cert.not_before, cert.not_after, u);
    assert!(
        (deadline - usual).abs() < time::Duration::SECOND,
        "planned {deadline}, the usual draw says {usual}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
}
