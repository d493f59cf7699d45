//! The daemon's decisions, as plain functions over values: when to wake up next, how long
//! one sleep may be, how SIGHUPs coalesce, which dependents to restart after a cycle, when
//! to retry a failure, what `STATUS=` says. No clock is read here: `now` is an argument.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Action;

/// The longest single sleep. Tokio's timers run on CLOCK_MONOTONIC, which stops while the
/// machine is suspended and ignores NTP steps; capping every sleep and re-reading the wall
/// clock on each wake bounds how late a deadline can be noticed after a resume or a step.
pub const MAX_SLEEP: Duration = Duration::from_secs(600);
/// The slow safety resync: a full rescan even if no event came (a missed inotify event, a
/// directory created after start).
pub const RESYNC: Duration = Duration::from_secs(3600);
/// SIGHUPs are gathered until this long passes without another one...
pub const HUP_QUIET: Duration = Duration::from_millis(250);
/// ...or this long after the first one, whichever comes first.
pub const HUP_MAX_WAIT: Duration = Duration::from_secs(1);
/// A failed rotation or action is retried no sooner than this.
pub const RETRY_FLOOR: Duration = Duration::from_secs(1);

/// Why the loop wakes up at a given instant.
#[derive(Debug, Clone, PartialEq)]
pub enum WakeFor {
    /// A certificate's renewal deadline.
    Deadline(String),
    /// A retry of a failed rotation.
    Retry(String),
    /// Retry of dependents' actions that failed.
    Actions,
    /// The slow safety resync.
    Resync,
}

/// The earliest of the deadlines, retries and the resync.
pub fn next_wake(
    deadlines: &[(String, OffsetDateTime)],
    retries: &[(String, OffsetDateTime)],
    actions_retry: Option<OffsetDateTime>,
    resync_at: OffsetDateTime,
) -> (OffsetDateTime, WakeFor) {
    let mut best = (resync_at, WakeFor::Resync);
    for (n, t) in deadlines {
        if *t < best.0 {
            best = (*t, WakeFor::Deadline(n.clone()));
        }
    }
    for (n, t) in retries {
        if *t < best.0 {
            best = (*t, WakeFor::Retry(n.clone()));
        }
    }
    if let Some(t) = actions_retry {
        if t < best.0 {
            best = (t, WakeFor::Actions);
        }
    }
    best
}

/// A wall clock that moved this much more (or less) than the monotonic clock between two
/// wakes was stepped (NTP, an operator, a resume from suspend): every plan is redone.
pub const CLOCK_JUMP: time::Duration = time::Duration::seconds(60);

/// How far the wall clock jumped between two wakes: `wall_before`/`wall_now` from the
/// wall clock, `monotonic_elapsed` from the monotonic clock over the same interval.
/// `None` when the two agree within [`CLOCK_JUMP`].
pub fn clock_jump(
    wall_before: OffsetDateTime,
    wall_now: OffsetDateTime,
    monotonic_elapsed: Duration,
) -> Option<time::Duration> {
    let mono = time::Duration::try_from(monotonic_elapsed).ok()?;
    let skew = (wall_now - wall_before) - mono;
    (skew.abs() >= CLOCK_JUMP).then_some(skew)
}

/// How long to sleep toward `at` (wall clock) from `now`: never more than [`MAX_SLEEP`],
/// zero when it has passed.
pub fn sleep_for(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    let left = at - now;
    if left <= time::Duration::ZERO {
        return Duration::ZERO;
    }
    Duration::try_from(left).unwrap_or(MAX_SLEEP).min(MAX_SLEEP)
}

/// Filesystem events are gathered until this long passes without another one...
pub const FS_QUIET: Duration = Duration::from_millis(50);
/// ...or this long after the first one.
pub const FS_MAX_WAIT: Duration = Duration::from_millis(250);

/// Gathering bursts (SIGHUPs, filesystem events) into one reaction: it fires `quiet` after
/// the last signal, at most `max_wait` after the first. Driven by tokio's clock, so tests
/// use `tokio::time::pause`.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    quiet: Duration,
    max_wait: Duration,
    first: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
}

impl Gate {
    pub fn new(quiet: Duration, max_wait: Duration) -> Gate {
        Gate {
            quiet,
            max_wait,
            first: None,
            last: None,
        }
    }
    pub fn hup() -> Gate {
        Gate::new(HUP_QUIET, HUP_MAX_WAIT)
    }
    pub fn fs() -> Gate {
        Gate::new(FS_QUIET, FS_MAX_WAIT)
    }
    pub fn signal(&mut self, now: tokio::time::Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
    pub fn pending(&self) -> bool {
        self.first.is_some()
    }
    /// When the gathered signals should fire; None: none pending.
    pub fn fire_at(&self) -> Option<tokio::time::Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.quiet).min(first + self.max_wait))
    }
    pub fn take(&mut self) {
        self.first = None;
        self.last = None;
    }
}

/// The actions to run after a cycle, each once, in the order of first mention, with the
/// certificates that asked for it. `rotated`: certificate names with their `onRotate`.
pub fn coalesce<'a>(
    rotated: impl IntoIterator<Item = (&'a str, &'a [Action])>,
) -> Vec<(Action, Vec<String>)> {
    let mut out: Vec<(Action, Vec<String>)> = Vec::new();
    for (name, actions) in rotated {
        for a in actions {
            match out.iter_mut().find(|(x, _)| x == a) {
                Some((_, names)) => {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string())
                    }
                }
                None => out.push((a.clone(), vec![name.to_string()])),
            }
        }
    }
    out
}

/// The next attempt after failure number `attempt` (0-based), with a random draw `u` in
/// [0, 1): capped exponential backoff with full jitter (`kube::retry`), at least
/// [`RETRY_FLOOR`].
pub fn retry_at(now: OffsetDateTime, attempt: u32, u: f64) -> OffsetDateTime {
    let wait = crate::kube::retry::backoff(attempt, u, None).max(RETRY_FLOOR);
    now + wait
}

/// A duration as an operator reads it: `2h13m`, `3d4h`, `45s`.
pub fn human(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    let (days, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// The `STATUS=` line: "12 certificates, next rotation apiserver in 2h13m[, 1 failing]".
pub fn status_line(
    count: usize,
    next: Option<(&str, OffsetDateTime)>,
    failing: &[String],
    now: OffsetDateTime,
) -> String {
    let plural = if count == 1 { "" } else { "s" };
    let mut s = format!("{count} certificate{plural}");
    match next {
        Some((name, at)) => s.push_str(&format!(", next rotation {name} in {}", human(at - now))),
        None if count > 0 => s.push_str(", no rotation scheduled"),
        None => {}
    }
    if !failing.is_empty() {
        s.push_str(&format!(", failing: {}", failing.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-22 03:00 UTC);

    #[test]
    fn wakes_for_the_earliest_of_deadlines_retries_and_resync() {
        let d = vec![
            ("a".to_string(), T0 + time::Duration::hours(5)),
            ("b".to_string(), T0 + time::Duration::hours(2)),
        ];
        let resync = T0 + time::Duration::hours(1);
        assert_eq!(next_wake(&d, &[], None, resync), (resync, WakeFor::Resync));
        let resync = T0 + time::Duration::hours(9);
        assert_eq!(
            next_wake(&d, &[], None, resync),
            (T0 + time::Duration::hours(2), WakeFor::Deadline("b".into()))
        );
        let r = vec![("c".to_string(), T0 + time::Duration::minutes(1))];
        assert_eq!(
            next_wake(&d, &r, None, resync).1,
            WakeFor::Retry("c".into())
        );
        assert_eq!(next_wake(&d, &r, Some(T0), resync), (T0, WakeFor::Actions));
    }

    #[test]
    fn sleeps_are_capped_and_a_passed_deadline_is_now() {
        assert_eq!(sleep_for(T0, T0 + time::Duration::days(3)), MAX_SLEEP);
        assert_eq!(
            sleep_for(T0, T0 + time::Duration::seconds(30)),
            Duration::from_secs(30)
        );
        assert_eq!(sleep_for(T0, T0 - time::Duration::hours(1)), Duration::ZERO);
    }

    /// A wall clock that jumps forward (resume after suspend, an NTP step) is seen at the
    /// next capped wake: the loop re-reads the clock and the deadline is due at once.
    #[test]
    fn a_clock_jump_is_caught_at_the_next_capped_wake() {
        let deadline = T0 + time::Duration::hours(20);
        let first = sleep_for(T0, deadline);
        assert_eq!(first, MAX_SLEEP);
        // The machine slept 30 h during that sleep: on waking, the wall clock says so.
        let woke = T0 + time::Duration::hours(30);
        assert_eq!(sleep_for(woke, deadline), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn ten_sighups_in_a_second_fire_once() {
        let mut g = Gate::hup();
        assert_eq!(g.fire_at(), None);
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            g.signal(tokio::time::Instant::now());
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Ten signals 100 ms apart: the quiet period never passed, the cap fires it.
        assert_eq!(g.fire_at(), Some(start + HUP_MAX_WAIT));
        g.take();
        assert!(!g.pending());
        // A single one fires after the quiet period.
        let t = tokio::time::Instant::now();
        g.signal(t);
        assert_eq!(g.fire_at(), Some(t + HUP_QUIET));
    }

    #[test]
    fn a_unit_named_by_five_certificates_is_restarted_once() {
        let kas = vec![Action::Restart("kube-apiserver.service".into())];
        let both = vec![
            Action::Restart("kube-apiserver.service".into()),
            Action::TryRestart("etcd.service".into()),
        ];
        let rotated: Vec<(&str, &[Action])> = vec![
            ("apiserver", &kas),
            ("apiserver-kubelet-client", &kas),
            ("front-proxy-client", &kas),
            ("apiserver-etcd-client", &both),
            ("sa", &kas),
        ];
        let plan = coalesce(rotated);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].0, Action::Restart("kube-apiserver.service".into()));
        assert_eq!(plan[0].1.len(), 5);
        assert_eq!(plan[1].1, vec!["apiserver-etcd-client".to_string()]);
    }

    #[test]
    fn retries_back_off_and_cap() {
        assert_eq!(retry_at(T0, 0, 0.0), T0 + time::Duration::seconds(1));
        assert_eq!(retry_at(T0, 3, 1.0), T0 + time::Duration::seconds(4));
        assert_eq!(retry_at(T0, 40, 1.0), T0 + time::Duration::seconds(60));
    }

    #[test]
    fn status_reads_like_a_sentence() {
        let next = T0 + time::Duration::minutes(133);
        assert_eq!(
            status_line(12, Some(("apiserver", next)), &[], T0),
            "12 certificates, next rotation apiserver in 2h13m"
        );
        assert_eq!(
            status_line(1, None, &["etcd-peer".into()], T0),
            "1 certificate, no rotation scheduled, failing: etcd-peer"
        );
        assert_eq!(human(time::Duration::hours(76)), "3d4h");
    }

    #[test]
    fn clock_jumps_are_told_apart_from_time_passing() {
        let t0 = datetime!(2026-11-22 00:00 UTC);
        let ten = Duration::from_secs(600);
        assert_eq!(clock_jump(t0, t0 + time::Duration::seconds(600), ten), None);
        assert_eq!(clock_jump(t0, t0 + time::Duration::seconds(630), ten), None);
        let back = t0 - time::Duration::days(1825) + time::Duration::seconds(600);
        assert_eq!(clock_jump(t0, back, ten), Some(-time::Duration::days(1825)));
        let ahead = t0 + time::Duration::days(365) + time::Duration::seconds(600);
        assert_eq!(clock_jump(t0, ahead, ten), Some(time::Duration::days(365)));
    }
}
