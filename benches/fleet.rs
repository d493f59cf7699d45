//! `cargo bench --bench fleet`: a fleet of FLEET_NODES (default 10,000) agents' real
//! planning code on a virtual clock over 30 simulated days (see `fleet_sim`), in four
//! scenarios. Prints CSR creations per minute (peak, mean), API requests per renewal and
//! CSR objects per node per day for each, then one summary line.
//!
//! `renewal.fleetSpread` is sized by the rule of thumb of kubernetes/kubernetes#41912: one
//! hour per 1,000 nodes.

#[path = "fleet_net/mod.rs"]
mod fleet_net;
#[path = "fleet_sim/mod.rs"]
mod fleet_sim;

use fleet_sim::{peak_mean, run, Params, Scenario, EVENT, REQUESTS, SIGNERS};
use kube_cert_agent::lifecycle::spread;
use time::Duration;

/// The steady state is judged over buckets of whole hours that hold on average at least
/// this many CSRs: the busiest of several hundred buckets of independent arrivals runs about
/// three standard deviations (3 sqrt(m)) above their mean m, so with fewer the ratio
/// measures Poisson noise, not a stampede (1,000 nodes make about 26 CSRs an hour: a
/// perfectly even fleet reads about 1.6 hourly).
const BUCKET_CSRS: f64 = 100.0;

fn steady_bucket_hours(mean_per_minute: f64) -> usize {
    let per_hour = (mean_per_minute * 60.0).max(f64::MIN_POSITIVE);
    ((BUCKET_CSRS / per_hour).ceil() as usize).clamp(1, 24)
}

/// The peak/mean a perfectly even fleet would read: the same number of CSRs at uniformly
/// random instants over the same minutes, in the same buckets.
fn even_fleet_ratio(counts: &[u32], bucket: usize) -> f64 {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let mut even = vec![0u32; counts.len()];
    let mut rng = fleet_sim::Rng::new(0xe7e7);
    for _ in 0..total {
        even[(rng.unit() * counts.len() as f64) as usize] += 1;
    }
    let (p, m) = peak_mean(&even, 0, even.len(), bucket);
    p / m.max(f64::MIN_POSITIVE)
}

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
                let from = 4 * 24 * 60;
                let (hp, hm) = peak_mean(&r.per_minute, from, minutes, 60);
                let hourly = hp / hm.max(f64::MIN_POSITIVE);
                let hours = steady_bucket_hours(hm);
                let (bp, bm) = peak_mean(&r.per_minute, from, minutes, 60 * hours);
                steady_ratio = bp / bm.max(f64::MIN_POSITIVE);
                let even = even_fleet_ratio(&r.per_minute[from..minutes], 60 * hours);
                println!("    after day 4, hourly: peak {hp:.2}/min mean {hm:.2}/min, peak/mean {hourly:.2}");
                println!("    after day 4, {hours} h buckets (>= {BUCKET_CSRS} CSRs each on average): peak/mean {steady_ratio:.2} (target 1.5 or less; the same CSRs at uniformly random instants read {even:.2})");
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
    real_network(rpr);
    println!(
        "fleet: nodes={nodes} days={days} steady_peak_to_mean={steady_ratio:.2} event_peak_per_min={event_peak:.0} budget_per_min={budget:.1} requests_per_renewal={rpr:.2} csrs_per_node_day={cnd:.3}"
    );
}

/// The real-network companion: FLEET_NET_NODES (default 300) agents against the stand-in
/// on loopback, next to what the simulator assumed.
fn real_network(simulated_requests_per_renewal: f64) {
    let nodes: usize = std::env::var("FLEET_NET_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    println!("real network: {nodes} in-process agents (the product's kubelet CSR client) against the stand-in on loopback, 32 at a time");
    for r in fleet_net::run(nodes, 32) {
        let n = r.nodes as f64;
        let sent = r.requests[0] + r.requests[1];
        let agree = if sent == r.received {
            "the stand-in received as many"
        } else {
            "MISMATCH: the stand-in received"
        };
        println!(
            "  {}: requests per renewal: client {:.2}, serving {:.2}, both {:.2} (simulator: {}, {}, {:.2}); {agree} ({} of {sent})",
            r.label,
            r.requests[0] as f64 / n,
            r.requests[1] as f64 / n,
            sent as f64 / (2.0 * n),
            REQUESTS[0],
            REQUESTS[1],
            simulated_requests_per_renewal,
            r.received
        );
        match r.standin_cpu {
            Some(cpu) => println!(
                "    stand-in CPU: {:.2} s for {} renewals, {:.2} ms per renewal, {:.2} ms per request ({:.1} s wall)",
                cpu.as_secs_f64(),
                2 * r.nodes,
                cpu.as_secs_f64() * 1e3 / (2.0 * n),
                cpu.as_secs_f64() * 1e3 / r.received.max(1) as f64,
                r.wall.as_secs_f64()
            ),
            None => println!("    stand-in CPU: unavailable (no /proc/self/task/*/schedstat)"),
        }
    }
}
