//! Fleet-wide waves: when a certificate is overdue because of something that hit every node
//! at once (nodes off over a weekend, a CA rotation that revokes every kubelet certificate,
//! a clock that jumped), its renewal starts after a random delay over `renewal.fleetSpread`
//! instead of at once, so that N nodes arrive at the API server at N / window per unit of
//! time, not in the same second (kubernetes/kubernetes#41912: one hour per 1,000 nodes).
//!
//! A certificate that expires within the window goes first: its delay is drawn over half
//! of what is left of its life, so it is renewed before it breaks. One that has already
//! expired is spread over the whole window like the others: if the whole fleet expired
//! together (the Monday morning), "at once" would be the stampede itself; the fleet drains
//! at the budget's rate whatever the order, and each node waits at most the window.
//!
//! A certificate that reaches its own (jittered) deadline while the agent runs is not a
//! wave: its deadline is already spread. Neither is one the operator forces (SIGHUP,
//! `rotate NAME`) nor a missing one (a node joining: the provisioning paces those).
//!
//! What a batch leaves behind: certificates issued together (a cluster provisioned in one
//! hour, a wave) would renew together for many lifetimes; their first renewal is drawn
//! over a whole period instead ([`first_policy`]). And retries after API errors back off
//! up to the fleet window, not 5 minutes ([`retry_cap`]), so a recovering API server is
//! not met by everyone who failed during its outage at once.

use time::{Duration, OffsetDateTime};

use crate::pki::policy::RenewalPolicy;

/// The daemon notices a deadline within one capped sleep (10 min) or the hourly resync;
/// a deadline passed longer ago than this means the agent was not running (or the clock
/// jumped): every node of a fleet that was off finds itself in the same state.
pub const LATE: Duration = Duration::hours(1);

/// Why a certificate is due now, as far as the spread is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Past its notAfter.
    Expired,
    /// Revoked by an entry (a CA rotation's forced re-issue).
    Reissue,
    /// Past its renewal deadline.
    Deadline(OffsetDateTime),
    /// Missing: a node joining (at once; it starts a batch, see [`starts_batch`]).
    Missing,
    /// Broken, forced by the operator: at once.
    Other,
}

/// Whether this renewal is part of a fleet-wide wave (and so waits its turn).
pub fn in_wave(due: Due, now: OffsetDateTime) -> bool {
    match due {
        Due::Expired | Due::Reissue => true,
        Due::Deadline(d) => now - d > LATE,
        Due::Missing | Due::Other => false,
    }
}

/// Whether a certificate issued for this cause came in a batch with many others (a node
/// joining: clusters are provisioned and scaled many nodes at a time; or a fleet-wide
/// wave), so that its first renewal is drawn over a whole period ([`first_policy`]).
pub fn starts_batch(due: Due, now: OffsetDateTime) -> bool {
    due == Due::Missing || in_wave(due, now)
}

/// The renewal policy of a certificate issued in a batch, until its first renewal.
///
/// Certificates issued within the same hour renew within the same 20% of their life
/// (70%..90%), and as every renewal adds about the same interval they keep renewing
/// together for many lifetimes: a fleet provisioned in one hour meets four times its mean
/// CSR rate every 80% of a lifetime. Drawing the first renewal over a span as wide as that
/// period (renewAt wide, ending where the usual span ends: 10%..90% for 80% +- 10%)
/// spreads the batch evenly at once, and the usual draws keep it so. The cost: one early
/// renewal per certificate.
pub fn first_policy(usual: &RenewalPolicy) -> RenewalPolicy {
    let latest = usual.renew_at + usual.jitter;
    let half = usual.renew_at / 2.0;
    RenewalPolicy {
        renew_at: latest - half,
        jitter: half,
    }
}

/// The longest wait between retries of a renewal that failed against the API server.
/// Full-jitter exponential backoff spreads a fleet that failed together over about as long
/// as it has been failing, but only up to its cap: with the usual 5-minute cap, every node
/// that failed through an hour-long outage comes back within 5 minutes of the recovery.
/// So the cap is the fleet window, but at most half the remaining life (the retry comes
/// before the certificate expires), and never below `floor` (the usual cap).
pub fn retry_cap(
    window: Duration,
    floor: Duration,
    now: OffsetDateTime,
    not_after: Option<OffsetDateTime>,
) -> Duration {
    let life = not_after.map_or(window, |na| (na - now) / 2);
    window.min(life).max(floor)
}

/// When a renewal in a wave starts: `now` plus a draw `u` in [0, 1) over the window, or
/// over half the remaining life of a certificate that expires within the window.
pub fn start_at(
    window: Duration,
    now: OffsetDateTime,
    not_after: Option<OffsetDateTime>,
    u: f64,
) -> OffsetDateTime {
    let u = u.clamp(0.0, 1.0);
    let span = match not_after {
        Some(na) if na > now => window.min((na - now) / 2),
        _ => window,
    };
    now + span.max(Duration::ZERO) * u
}

/// The CSR rate, per minute, that a window is sized against: a wave of `nodes x signers`
/// independent draws over the window averages that many per window; the busiest minute of
/// random draws runs above the mean (about 1.5x over a 10 h window), so the budget is twice
/// the mean. Size `renewal.fleetSpread` as `2 x nodes x signers / budget`.
pub fn budget_per_minute(window: Duration, nodes: u64, signers: u64) -> f64 {
    let minutes = window.as_seconds_f64() / 60.0;
    if minutes <= 0.0 {
        return f64::INFINITY;
    }
    2.0 * (nodes * signers) as f64 / minutes
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-07 08:00 UTC);
    const HOUR: Duration = Duration::hours(1);

    #[test]
    fn only_fleet_wide_causes_make_a_wave() {
        assert!(in_wave(Due::Expired, NOW));
        assert!(in_wave(Due::Reissue, NOW));
        // Its own deadline, noticed in time: already spread by the 70%..90% jitter.
        assert!(!in_wave(Due::Deadline(NOW - Duration::minutes(10)), NOW));
        assert!(!in_wave(Due::Deadline(NOW - LATE), NOW));
        // Noticed two days late: the agent was off, like every node of the fleet.
        assert!(in_wave(Due::Deadline(NOW - Duration::days(2)), NOW));
        assert!(!in_wave(Due::Other, NOW));
        assert!(!in_wave(Due::Missing, NOW));
    }

    #[test]
    fn a_joining_node_and_a_wave_start_a_batch_a_timely_renewal_does_not() {
        assert!(starts_batch(Due::Missing, NOW));
        assert!(starts_batch(Due::Expired, NOW));
        assert!(starts_batch(Due::Reissue, NOW));
        assert!(starts_batch(Due::Deadline(NOW - Duration::days(2)), NOW));
        assert!(!starts_batch(
            Due::Deadline(NOW - Duration::minutes(10)),
            NOW
        ));
        assert!(!starts_batch(Due::Other, NOW));
    }

    #[test]
    fn the_first_renewal_of_a_batch_spans_a_whole_period() {
        let usual = RenewalPolicy {
            renew_at: 0.8,
            jitter: 0.1,
        };
        let nb = NOW;
        let na = NOW + Duration::hours(100);
        let first = first_policy(&usual);
        // 10%..90%: as wide as the mean interval between renewals (80%).
        assert_eq!(first.deadline_at(nb, na, 0.0), nb + Duration::hours(10));
        assert_eq!(first.deadline_at(nb, na, 0.5), nb + Duration::hours(50));
        assert_eq!(first.deadline_at(nb, na, 1.0), nb + Duration::hours(90));
        // Never later than the usual latest point.
        for u in [0.0, 0.3, 0.999] {
            assert!(first.deadline_at(nb, na, u) <= usual.deadline_at(nb, na, u));
        }
    }

    #[test]
    fn retries_back_off_up_to_the_window_but_come_before_expiry() {
        let floor = Duration::minutes(5);
        let far = Some(NOW + Duration::days(300));
        assert_eq!(retry_cap(10 * HOUR, floor, NOW, far), 10 * HOUR);
        // Six hours left: the cap is three, so a retry comes before it expires.
        assert_eq!(
            retry_cap(10 * HOUR, floor, NOW, Some(NOW + 6 * HOUR)),
            3 * HOUR
        );
        // Never below the usual cap (nor for a window of 0s).
        assert_eq!(retry_cap(Duration::ZERO, floor, NOW, far), floor);
        assert_eq!(retry_cap(10 * HOUR, floor, NOW, Some(NOW - HOUR)), floor);
        assert_eq!(retry_cap(10 * HOUR, floor, NOW, None), 10 * HOUR);
    }

    #[test]
    fn the_draw_spans_the_window() {
        let w = 10 * HOUR;
        let far = Some(NOW + Duration::days(300));
        assert_eq!(start_at(w, NOW, far, 0.0), NOW);
        assert_eq!(start_at(w, NOW, far, 0.5), NOW + 5 * HOUR);
        assert_eq!(start_at(w, NOW, far, 0.999), NOW + w * 0.999);
        // Out-of-range draws are clamped: never beyond the window.
        assert_eq!(start_at(w, NOW, far, 7.0), NOW + w);
        // No window: at once.
        assert_eq!(start_at(Duration::ZERO, NOW, far, 0.9), NOW);
    }

    #[test]
    fn one_expiring_within_the_window_goes_first_and_before_it_expires() {
        let w = 10 * HOUR;
        let na = NOW + 2 * HOUR;
        assert_eq!(start_at(w, NOW, Some(na), 0.5), NOW + Duration::minutes(30));
        assert!(start_at(w, NOW, Some(na), 0.999) < NOW + HOUR);
    }

    #[test]
    fn an_expired_one_is_spread_over_the_window() {
        let w = 10 * HOUR;
        assert_eq!(start_at(w, NOW, Some(NOW - HOUR), 0.25), NOW + w / 4);
        assert_eq!(start_at(w, NOW, None, 0.25), NOW + w / 4);
    }

    #[test]
    fn budget_is_nodes_times_signers_per_window() {
        // 10,000 nodes, two kubelet signers, 10 h: 20,000 CSRs over 600 min, twice that.
        let b = budget_per_minute(10 * HOUR, 10_000, 2);
        assert!((b - 66.667).abs() < 0.01, "{b}");
        assert!(budget_per_minute(Duration::ZERO, 1, 1).is_infinite());
    }
}
