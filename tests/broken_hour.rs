//! One certificate failing for good, one simulated hour, the daemon's real decisions
//! (`benches/broken_hour/mod.rs`): at most 3 journal lines and no API request after the
//! first attempt before the long interval.

#[path = "../benches/broken_hour/mod.rs"]
mod broken_hour;

use broken_hour::{run, Case};
use time::Duration;

#[test]
fn a_permanent_failure_costs_three_lines_and_no_request_in_an_hour() {
    for case in [Case::DeniedCsr, Case::MissingCaKey] {
        for u in [0.0, 0.5, 0.999] {
            let r = run(case, Duration::hours(1), Duration::minutes(7), u);
            assert!(r.journal_lines <= 3, "{case:?} u={u}: {:#?}", r.lines);
            assert_eq!(r.requests_within_interval, 0, "{case:?} u={u}");
            assert_eq!(r.attempts, 1, "{case:?} u={u}");
            // The first failure is said, and reminded once at 30 min.
            assert!(
                r.lines.iter().any(|l| l.contains("still")),
                "{:#?}",
                r.lines
            );
        }
    }
}

#[test]
fn after_the_long_interval_it_is_tried_again_once() {
    // Two hours and a quarter: the second attempt after 1 h (+ up to 10% jitter), the
    // third after another; never more.
    let r = run(
        Case::DeniedCsr,
        Duration::minutes(135),
        Duration::minutes(7),
        0.999,
    );
    assert_eq!(r.attempts, 3, "{:#?}", r.lines);
    let r = run(
        Case::DeniedCsr,
        Duration::minutes(135),
        Duration::minutes(7),
        0.0,
    );
    assert_eq!(r.attempts, 3, "{:#?}", r.lines);
}
