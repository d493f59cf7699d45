//! `cargo bench --bench broken_hour`: a node with one certificate that fails for good, over
//! one simulated hour on a virtual clock, through the daemon's real decision code (see
//! `broken_hour/mod.rs`). Prints the journal lines and API requests of that hour; targets:
//! <= 3 lines, and no request after the first attempt before the long interval
//! (`renewal.permanentFailureBackoff`, 1 h) has passed.

#[path = "broken_hour/mod.rs"]
mod broken_hour;

use broken_hour::{run, Case};
use time::Duration;

fn main() {
    let (span, fs_every) = (Duration::hours(1), Duration::minutes(7));
    println!(
        "broken_hour: one permanently failing certificate, {span} simulated, an unrelated inotify rescan every {fs_every}"
    );
    let mut worst = (0, 0);
    for case in [Case::DeniedCsr, Case::MissingCaKey] {
        // The permanent backoff's jitter at both ends of its draw.
        for u in [0.0, 0.999] {
            let started = std::time::Instant::now();
            let r = run(case, span, fs_every, u);
            println!(
                "  {case:?} (jitter {u}): journal lines {}, attempts {}, API requests {} ({} after the first attempt within the long interval), loop wakes {} ({:.1} ms)",
                r.journal_lines,
                r.attempts,
                r.requests,
                r.requests_within_interval,
                r.wakes,
                started.elapsed().as_secs_f64() * 1e3
            );
            for l in &r.lines {
                println!("    {l}");
            }
            worst = (
                worst.0.max(r.journal_lines),
                worst.1.max(r.requests_within_interval),
            );
        }
    }
    println!("  targets: <= 3 journal lines, 0 API requests beyond the long interval");
    println!(
        "broken_hour: journal_lines_max={} requests_within_interval_max={}",
        worst.0, worst.1
    );
}
