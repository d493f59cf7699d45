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

use time::{Duration, OffsetDateTime};

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
    /// Missing, broken, forced by the operator: at once.
    Other,
}

/// Whether this renewal is part of a fleet-wide wave (and so waits its turn).
pub fn in_wave(due: Due, now: OffsetDateTime) -> bool {
    match due {
        Due::Expired | Due::Reissue => true,
        Due::Deadline(d) => now - d > LATE,
        Due::Other => false,
    }
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
