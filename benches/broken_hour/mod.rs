//! One node with one certificate that fails for good, over one simulated hour: the
//! daemon's real decisions on a virtual clock. The life-cycle (`lifecycle::transition`,
//! `Life::wake_at`, `Life::may_start`) and the loop's timing (`agent::schedule`) are the
//! library's; what the daemon does around them (a cycle tries what may start, then
//! rescans; an inotify event rescans) is restated here in a few lines, as `agent::execute`
//! and `agent::scan` do it. Shared by `benches/broken_hour.rs` and `tests/broken_hour.rs`.

use kube_cert_agent::agent::schedule::{self, WakeFor};
use kube_cert_agent::lifecycle::{self, Effect, Event, FailureClass, Life, Observation, Settings};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const T0: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// kubelet-client: every CSR is denied (create + watch: 2 API requests per attempt,
    /// and the executor's "CSR created" line).
    DeniedCsr,
    /// A control-plane certificate whose CA key is missing (no API request).
    MissingCaKey,
}

impl Case {
    fn requests_per_attempt(self) -> u64 {
        match self {
            Case::DeniedCsr => 2,
            Case::MissingCaKey => 0,
        }
    }

    /// Lines the executor writes per attempt besides the life-cycle's (at most one).
    fn lines_per_attempt(self) -> u64 {
        match self {
            Case::DeniedCsr => 1,
            Case::MissingCaKey => 0,
        }
    }

    fn error(self) -> &'static str {
        match self {
            Case::DeniedCsr => "CSR csr-1 was denied: NotThisNode: by the operator",
            Case::MissingCaKey => "/etc/kubernetes/pki/ca.key: not found",
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub journal_lines: u64,
    pub attempts: u64,
    pub requests: u64,
    /// Requests after the first attempt and before the long interval has passed since it.
    pub requests_within_interval: u64,
    /// Times the loop woke (timers, inotify).
    pub wakes: u64,
    pub lines: Vec<String>,
}

/// Run `case` from T0 for `span`; every `fs_every` something unrelated changes in a
/// watched directory (an inotify rescan).
pub fn run(case: Case, span: Duration, fs_every: Duration, u: f64) -> Report {
    let settings = Settings::default();
    let name = match case {
        Case::DeniedCsr => "kubelet-client",
        Case::MissingCaKey => "apiserver",
    };
    let mut r = Report::default();
    let mut life = Life::default();
    let end = T0 + span;
    let mut now = T0;
    let mut resync_at = T0 + schedule::RESYNC;
    let mut next_fs = T0 + fs_every;
    let mut first_attempt: Option<OffsetDateTime> = None;
    let feed = |life: &mut Life, ev: Event, now: OffsetDateTime, r: &mut Report| -> bool {
        let (next, effects) = lifecycle::transition(name, life, &ev, now, u, &settings);
        *life = next;
        let mut issue = false;
        for e in effects {
            match e {
                Effect::Issue => issue = true,
                Effect::Journal(j) => {
                    r.journal_lines += 1;
                    r.lines.push(format!("{now}: {}", j.text));
                }
            }
        }
        issue
    };
    // A scan: the certificate is missing, so due.
    let scan = |life: &mut Life, now: OffsetDateTime, r: &mut Report| {
        feed(
            life,
            Event::Observed(Observation::Due {
                reason: "missing".into(),
            }),
            now,
            r,
        );
    };
    // A cycle: try it if it may start, report the failure, rescan.
    let mut cycle = |life: &mut Life, now: OffsetDateTime, r: &mut Report| {
        if life.may_start(now) {
            r.attempts += 1;
            r.requests += case.requests_per_attempt();
            match first_attempt {
                None => first_attempt = Some(now),
                Some(f) if now - f < settings.permanent => {
                    r.requests_within_interval += case.requests_per_attempt()
                }
                Some(_) => {}
            }
            if case.lines_per_attempt() > 0 {
                r.journal_lines += case.lines_per_attempt();
                r.lines.push(format!(
                    "{now}: CSR csr-1 created (signer ...), waiting for it to be approved and issued"
                ));
            }
            feed(life, Event::Started, now, r);
            feed(
                life,
                Event::Failed {
                    class: FailureClass::Permanent,
                    error: case.error().into(),
                },
                now,
                r,
            );
        }
        scan(life, now, r);
    };
    // Start-up: look, then reconcile.
    scan(&mut life, now, &mut r);
    cycle(&mut life, now, &mut r);
    while now < end {
        // A loop that wakes without moving on would spin: the daemon's bug, shown here.
        assert!(r.wakes < 10_000, "the loop spins at {now}");
        let retries: Vec<(String, OffsetDateTime)> = life
            .wake_at(&settings)
            .map(|t| (name.to_string(), t))
            .into_iter()
            .collect();
        let (at, why) = schedule::next_wake(&[], &retries, None, resync_at);
        let nap = Duration::try_from(schedule::sleep_for(now, at)).expect("a short nap");
        let timer = now + nap;
        r.wakes += 1;
        if next_fs <= timer {
            now = next_fs;
            next_fs += fs_every;
            if now >= end {
                break;
            }
            scan(&mut life, now, &mut r);
            continue;
        }
        now = timer;
        if now >= end {
            break;
        }
        if now >= at {
            if why == WakeFor::Resync {
                resync_at = now + schedule::RESYNC;
            }
            cycle(&mut life, now, &mut r);
        }
    }
    r
}
