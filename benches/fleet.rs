//! `cargo bench --bench fleet`: a fleet of FLEET_NODES (default 10,000) agents' real
//! planning code on a virtual clock over 30 simulated days (see `fleet_sim`), in four
//! scenarios. Prints CSR creations per minute (peak, mean), API requests per renewal and
//! CSR objects per node per day for each, then one summary line.
//!
//! `renewal.fleetSpread` is sized by the rule of thumb of kubernetes/kubernetes#41912: one
//! hour per 1,000 nodes.

#[path = "fleet_sim/mod.rs"]
mod fleet_sim;

use fleet_sim::{peak_mean, run, Params, Scenario, EVENT, SIGNERS};
use kube_cert_agent::lifecycle::spread;
use time::Duration;

fn main() {
    let nodes: usize = std::env::var("FLEET_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let days = 30;
    let p = Params {
        nodes,
        days,
        // The seeds' leaves live 4 days: 30 days see about nine renewals of each.
        lifetime: Duration::days(4),
        window: (Duration::hours(1) * (nodes as f64 / 1000.0)).max(Duration::minutes(10)),
        seed: 0x5eed,
    };
    let budget = spread::budget_per_minute(p.window, nodes as u64, SIGNERS as u64);
    println!(
        "fleet: {nodes} nodes x {SIGNERS} kubelet signers, {days} days, lifetime {}, renewal.fleetSpread {} (budget {budget:.1} CSRs/min)",
        p.lifetime, p.window
    );
    let minutes = (days * 24 * 60) as usize;
    let event = EVENT.whole_minutes() as usize;
    let (mut steady_ratio, mut event_peak, mut rpr, mut cnd) = (0.0, 0.0f64, 0.0f64, 0.0f64);
    let mut outstanding = 0;
    for scenario in [
        Scenario::Steady,
        Scenario::AllExpired,
        Scenario::Reissue,
        Scenario::Outage,
    ] {
        let started = std::time::Instant::now();
        let r = run(&p, scenario);
        let (peak, mean) = peak_mean(&r.per_minute, 0, minutes, 1);
        let requests = r.requests as f64 / r.renewals.max(1) as f64;
        let per_node_day = r.csrs as f64 / (nodes as f64 * days as f64);
        println!(
            "  {scenario:?}: CSRs/min peak {peak:.0} mean {mean:.2}; requests/renewal {requests:.2}; CSRs/node/day {per_node_day:.3}; max outstanding CSRs per signer per node {}; expired certificates seen {} ({:.1} s)",
            r.max_outstanding,
            r.expired_seen,
            started.elapsed().as_secs_f64()
        );
        outstanding = outstanding.max(r.max_outstanding);
        rpr = rpr.max(requests);
        cnd = cnd.max(per_node_day);
        match scenario {
            Scenario::Steady => {
                // Hourly buckets after the first lifetime (per-minute counts of a few
                // CSRs are Poisson noise, not a stampede).
                let (hp, hm) = peak_mean(&r.per_minute, 4 * 24 * 60, minutes, 60);
                steady_ratio = hp / hm.max(f64::MIN_POSITIVE);
                println!("    hourly after day 4: peak {hp:.2}/min mean {hm:.2}/min, peak/mean {steady_ratio:.2} (target 1.5 or less)");
            }
            Scenario::AllExpired => event_peak = event_peak.max(peak),
            Scenario::Reissue | Scenario::Outage => {
                let (ep, _) = peak_mean(&r.per_minute, event, minutes, 1);
                println!("    from the event on: peak {ep:.0}/min (budget {budget:.1})");
                event_peak = event_peak.max(ep);
            }
        }
    }
    println!(
        "  targets: steady peak/mean <= 1.5, event peak <= budget, <= 3 requests per renewal, <= 1 outstanding CSR per signer per node (max seen {outstanding})"
    );
    println!(
        "fleet: nodes={nodes} days={days} steady_peak_to_mean={steady_ratio:.2} event_peak_per_min={event_peak:.0} budget_per_min={budget:.1} requests_per_renewal={rpr:.2} csrs_per_node_day={cnd:.3}"
    );
}
