use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn s() -> Settings {
    Settings::default()
}

fn at(phase: Phase) -> Life {
    Life {
        phase,
        ..Life::default()
    }
}

fn step(life: &Life, ev: Event, now: OffsetDateTime) -> (Life, Vec<Effect>) {
    transition("apiserver", life, &ev, now, 0.5, &s())
}

fn lines(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal(j) => Some(j.text.as_str()),
            _ => None,
        })
        .collect()
}

fn perm(error: &str) -> Event {
    Event::Failed {
        class: FailureClass::Permanent,
        error: error.into(),
    }
}

fn transient(error: &str) -> Event {
    Event::Failed {
        class: FailureClass::Transient,
        error: error.into(),
    }
}

fn due() -> Event {
    Event::Observed(Observation::Due {
        reason: "missing".into(),
    })
}

fn every_phase() -> Vec<Phase> {
    vec![
        Phase::Unknown,
        Phase::Valid { deadline: T0 },
        Phase::ClockBehind { not_before: T0 },
        Phase::Due {
            reason: "expired".into(),
        },
        Phase::Issuing { since: T0 },
        Phase::AwaitingApproval {
            csr: "csr-1".into(),
            since: T0,
        },
        Phase::Backoff {
            until: T0 + Duration::hours(1),
            attempts: 1,
            class: FailureClass::Permanent,
            error: "denied".into(),
        },
        Phase::Backoff {
            until: T0 + Duration::seconds(2),
            attempts: 1,
            class: FailureClass::Transient,
            error: "503".into(),
        },
        Phase::Blocked {
            reason: "revocation x".into(),
        },
        Phase::Waiting {
            until: T0 + Duration::minutes(20),
            reason: "expired".into(),
        },
    ]
}

fn every_event() -> Vec<Event> {
    vec![
        Event::Observed(Observation::Overdue {
            reason: "revoked".into(),
            until: T0 + Duration::minutes(40),
        }),
        Event::Observed(Observation::Valid {
            deadline: T0 + Duration::days(3),
        }),
        Event::Observed(Observation::ClockBehind {
            not_before: T0 + Duration::days(1),
        }),
        due(),
        Event::Observed(Observation::Blocked {
            reason: "revocation y".into(),
        }),
        Event::Forced,
        Event::InputsChanged,
        Event::Started,
        Event::CsrPending {
            csr: "csr-2".into(),
        },
        Event::Installed {
            serial: "ab".into(),
            deadline: T0 + Duration::days(3),
        },
        perm("CA key missing"),
        transient("connection refused"),
        Event::Woke,
    ]
}

/// Every phase x every event: the rules that hold for all of them.
#[test]
fn every_phase_and_event() {
    let now = T0 + Duration::minutes(1);
    for phase in every_phase() {
        for ev in every_event() {
            let life = at(phase.clone());
            let (next, effects) = step(&life, ev.clone(), now);
            let ctx = format!("{phase:?} + {ev:?} -> {:?}", next.phase);
            let issues = effects.iter().filter(|e| **e == Effect::Issue).count();
            assert!(issues <= 1, "{ctx}");
            assert!(lines(&effects).len() <= 1, "{ctx}: {effects:?}");
            match &ev {
                // Waking changes no phase and starts nothing.
                Event::Woke => {
                    assert_eq!(next.phase, phase, "{ctx}");
                    assert_eq!(issues, 0, "{ctx}");
                }
                // A running renewal owns the certificate: scans and forcing do not move it.
                Event::Observed(_) | Event::Forced if phase.in_flight() => {
                    assert_eq!(next.phase, phase, "{ctx}");
                    assert_eq!(issues, 0, "{ctx}");
                }
                // A turn in a wave (drawn 40 min ahead): waited for, or kept if drawn before.
                Event::Observed(Observation::Overdue { .. }) => {
                    match &phase {
                        // An ended backoff goes at once: its jitter was the spread.
                        Phase::Backoff { until, .. } if now >= *until => {
                            assert_eq!(issues, 1, "{ctx}")
                        }
                        Phase::Backoff { .. } | Phase::Waiting { .. } => {
                            assert_eq!(next.phase, phase, "{ctx}");
                            assert_eq!(issues, 0, "{ctx}");
                        }
                        _ => {
                            assert_eq!(issues, 0, "{ctx}");
                            assert_eq!(next.phase.name(), "waiting", "{ctx}");
                            assert!(!next.may_start(now), "{ctx}");
                        }
                    }
                }
                Event::Observed(Observation::Due { .. }) => match &phase {
                    Phase::Backoff { until, .. } | Phase::Waiting { until, .. } if now < *until => {
                        assert_eq!(next.phase, phase, "{ctx}");
                        assert_eq!(issues, 0, "{ctx}");
                    }
                    _ => {
                        assert_eq!(next.phase.name(), "due", "{ctx}");
                        assert_eq!(issues, 1, "{ctx}");
                    }
                },
                Event::Observed(Observation::Valid { deadline }) => {
                    assert_eq!(
                        next.phase,
                        Phase::Valid {
                            deadline: *deadline
                        },
                        "{ctx}"
                    );
                }
                Event::Observed(Observation::Blocked { .. }) => {
                    assert_eq!(next.phase.name(), "blocked", "{ctx}");
                    assert_eq!(lines(&effects).len(), 1, "{ctx}");
                }
                Event::Observed(Observation::ClockBehind { .. }) => {
                    assert_eq!(next.phase.name(), "clockBehind", "{ctx}");
                }
                Event::Forced => {
                    assert_eq!(next.phase.name(), "due", "{ctx}");
                    assert_eq!(issues, 1, "{ctx}");
                }
                Event::InputsChanged => match &phase {
                    Phase::Backoff {
                        class: FailureClass::Permanent,
                        ..
                    } => assert!(next.may_start(now), "{ctx}"),
                    _ => assert_eq!(next.phase, phase, "{ctx}"),
                },
                Event::Started => assert_eq!(next.phase, Phase::Issuing { since: now }),
                Event::CsrPending { .. } => {
                    assert_eq!(next.phase.name(), "awaitingApproval", "{ctx}");
                    assert!(!next.may_start(now), "{ctx}");
                }
                Event::Installed { .. } => {
                    assert_eq!(next.phase.name(), "valid", "{ctx}");
                    assert!(lines(&effects).is_empty(), "{ctx}");
                }
                Event::Failed { class, .. } => {
                    let Phase::Backoff {
                        until, class: c, ..
                    } = next.phase
                    else {
                        panic!("{ctx}");
                    };
                    assert_eq!(c, *class, "{ctx}");
                    assert!(until > now, "{ctx}");
                    assert!(!next.may_start(now), "{ctx}");
                }
            }
        }
    }
}

#[test]
fn a_permanent_failure_waits_the_long_interval_and_is_logged_once() {
    let life = at(Phase::Issuing { since: T0 });
    let (life, fx) = step(&life, perm("CSR csr-1 was denied: NoWay"), T0);
    assert_eq!(lines(&fx).len(), 1);
    assert!(lines(&fx)[0].contains("permanent failure"), "{fx:?}");
    let Phase::Backoff { until, .. } = life.phase else {
        panic!()
    };
    // 1 h, plus at most 10% jitter, never less.
    assert!(until >= T0 + Duration::hours(1) && until <= T0 + Duration::minutes(66));
    // Scans before then change nothing and start nothing.
    let (same, fx) = step(&life, due(), T0 + Duration::minutes(29));
    assert_eq!(same.phase, life.phase);
    assert!(fx.is_empty());
    assert!(!life.may_start(T0 + Duration::minutes(59)));
    assert!(life.may_start(until));
}

#[test]
fn the_same_failure_again_is_not_logged_again_but_reminded_after_30_minutes() {
    let mut life = at(Phase::Due {
        reason: "missing".into(),
    });
    let mut said = vec![];
    let mut now = T0;
    // A transient failure every 2 minutes for an hour.
    for _ in 0..30 {
        let (l, _) = step(&life, Event::Started, now);
        let (l, fx) = step(&l, transient("503 Service Unavailable"), now);
        said.extend(lines(&fx).iter().map(|s| s.to_string()));
        life = l;
        now += Duration::minutes(2);
    }
    assert_eq!(said.len(), 2, "one line, one reminder: {said:?}");
    assert!(said[1].starts_with("apiserver: still failing"), "{said:?}");
    // A different error is a change of state: one line.
    let (l, _) = step(&life, Event::Started, now);
    let (_, fx) = step(&l, transient("connection refused"), now);
    assert_eq!(lines(&fx).len(), 1);
}

#[test]
fn waking_for_a_reminder_says_it_once_and_moves_the_next_wake_on() {
    let s = s();
    let (life, _) = step(
        &at(Phase::Due {
            reason: "missing".into(),
        }),
        Event::Started,
        T0,
    );
    let (life, fx) = step(&life, perm("CA key: not a key"), T0);
    assert_eq!(lines(&fx).len(), 1);
    // The reminder comes before the retry; the daemon wakes for it.
    let wake = life.wake_at(&s).unwrap();
    assert_eq!(wake, T0 + s.reminder);
    let (l, fx) = step(&life, Event::Woke, wake);
    assert_eq!(l.phase, life.phase);
    assert_eq!(lines(&fx).len(), 1, "{fx:?}");
    assert!(lines(&fx)[0].contains("still"), "{fx:?}");
    // Said: the next wake is the retry (or the next reminder), never the same instant.
    assert!(l.wake_at(&s).unwrap() > wake);
    // Waking again at once says nothing more.
    let (_, fx) = step(&l, Event::Woke, wake);
    assert!(fx.is_empty());
}

#[test]
fn transient_waits_grow_exponentially_up_to_the_cap() {
    let st = s();
    let w = |n| st.wait(FailureClass::Transient, n, 0.999_999);
    assert!(w(1) <= Duration::seconds(2));
    assert!(w(2) > w(1) && w(3) > w(2));
    assert!(w(30) <= st.transient_cap);
    assert!(w(30) >= st.transient_cap - Duration::seconds(1));
    // Full jitter, but never a tight loop.
    assert_eq!(st.wait(FailureClass::Transient, 5, 0.0), backoff::FLOOR);
}

#[test]
fn forcing_ends_a_backoff_and_inputs_changed_ends_only_a_permanent_one() {
    let p = at(Phase::Backoff {
        until: T0 + Duration::hours(1),
        attempts: 3,
        class: FailureClass::Permanent,
        error: "denied".into(),
    });
    let (l, fx) = step(&p, Event::Forced, T0);
    assert_eq!(l.phase.name(), "due");
    assert_eq!(fx, vec![Effect::Issue]);
    let (l, _) = step(&p, Event::InputsChanged, T0);
    assert!(l.may_start(T0));
    let t = at(Phase::Backoff {
        until: T0 + Duration::seconds(30),
        attempts: 3,
        class: FailureClass::Transient,
        error: "503".into(),
    });
    let (l, _) = step(&t, Event::InputsChanged, T0);
    assert!(!l.may_start(T0));
}

#[test]
fn awaiting_approval_is_said_once_and_keeps_its_start() {
    let l = at(Phase::Issuing { since: T0 });
    let ev = Event::CsrPending {
        csr: "csr-9".into(),
    };
    let (l, fx) = step(&l, ev.clone(), T0);
    assert_eq!(lines(&fx), vec!["apiserver: CSR csr-9 waits for approval"]);
    let (l2, fx) = step(&l, ev, T0 + Duration::minutes(5));
    assert!(fx.is_empty());
    assert_eq!(l2.phase, l.phase);
}

#[test]
fn renewed_after_failures_says_nothing_more_than_the_executor() {
    let l = at(Phase::Backoff {
        until: T0,
        attempts: 2,
        class: FailureClass::Transient,
        error: "503".into(),
    });
    let (l, _) = step(&l, Event::Started, T0);
    let (l, fx) = step(
        &l,
        Event::Installed {
            serial: "0a".into(),
            deadline: T0 + Duration::days(3),
        },
        T0,
    );
    assert!(lines(&fx).is_empty());
    assert_eq!(l.wake_at(&s()), Some(T0 + Duration::days(3)));
}

#[test]
fn recovery_without_a_renewal_is_said_once() {
    let mut l = Life::default();
    let (l2, fx) = step(&l, perm("CA key missing"), T0);
    assert_eq!(lines(&fx).len(), 1);
    l = l2;
    let valid = Event::Observed(Observation::Valid {
        deadline: T0 + Duration::days(1),
    });
    let (l, fx) = step(&l, valid.clone(), T0);
    assert_eq!(lines(&fx), vec!["apiserver: valid again"]);
    let (_, fx) = step(&l, valid, T0);
    assert!(fx.is_empty());
}

/// The benchmark's question as a unit test: one permanently failing certificate, a daemon
/// that wakes at every `wake_at` and rescans, over one simulated hour.
#[test]
fn one_permanently_failing_certificate_over_an_hour() {
    let st = s();
    let mut life = Life::default();
    let (mut attempts, mut said) = (0, 0);
    let mut now = T0;
    let end = T0 + Duration::minutes(59);
    while now < end {
        let (l, fx) = transition("etcd-peer", &life, &due(), now, 0.3, &st);
        said += lines(&fx).len();
        life = l;
        if fx.contains(&Effect::Issue) {
            attempts += 1;
            let (l, fx) = transition("etcd-peer", &life, &Event::Started, now, 0.3, &st);
            said += lines(&fx).len();
            let (l, fx) = transition("etcd-peer", &l, &perm("CA key missing"), now, 0.3, &st);
            said += lines(&fx).len();
            life = l;
        }
        // Wake at the next instant the machine asks for, or every minute (inotify noise).
        let wake = life
            .wake_at(&st)
            .unwrap_or(end)
            .min(now + Duration::minutes(1));
        now = wake.max(now + Duration::seconds(1));
    }
    assert_eq!(attempts, 1);
    assert!(said <= 3, "{said} journal lines");
}

/// A retry goes Backoff -> Due -> Issuing -> Failed: the failure count must survive the
/// trip through Issuing, or a long API outage is retried every second (found by the fleet
/// simulator).
#[test]
fn transient_backoff_grows_across_retries_and_resets_on_success() {
    let transient = || Event::Failed {
        class: FailureClass::Transient,
        error: "503 from https://api:6443".into(),
    };
    let mut life = at(Phase::Valid { deadline: T0 });
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        life = step(&life, Event::Started, now).0;
        life = step(&life, transient(), now).0;
        let Phase::Backoff {
            until, attempts, ..
        } = life.phase.clone()
        else {
            panic!("not in backoff: {:?}", life.phase)
        };
        assert_eq!(attempts, life.failures);
        waits.push(until - now);
        now = until;
        life = step(
            &life,
            Event::Observed(Observation::Due {
                reason: "expired".into(),
            }),
            now,
        )
        .0;
    }
    assert_eq!(life.failures, 6);
    // u = 0.5: 1 s (floor), 2 s, 4 s, 8 s, 16 s, 32 s.
    let secs: Vec<i64> = waits.iter().map(|w| w.whole_seconds()).collect();
    assert_eq!(secs, vec![1, 2, 4, 8, 16, 32]);
    life = step(&life, Event::Started, now).0;
    let (done, _) = step(
        &life,
        Event::Installed {
            serial: "01".into(),
            deadline: now + Duration::days(3),
        },
        now,
    );
    assert_eq!(done.failures, 0);
}

fn overdue(until: OffsetDateTime) -> Event {
    Event::Observed(Observation::Overdue {
        reason: "expired".into(),
        until,
    })
}

#[test]
fn an_overdue_certificate_in_a_wave_waits_its_turn_then_issues() {
    let turn = T0 + Duration::minutes(37);
    let (l, fx) = step(&Life::default(), overdue(turn), T0);
    assert_eq!(
        l.phase,
        Phase::Waiting {
            until: turn,
            reason: "expired".into()
        }
    );
    assert!(!fx.contains(&Effect::Issue));
    assert!(!l.may_start(T0 + Duration::minutes(36)));
    assert_eq!(l.wake_at(&s()), Some(turn));
    assert!(lines(&fx)[0].contains("waits its turn in a fleet-wide wave until"));
    // A rescan draws again (another turn): the first draw stands, nothing is logged again.
    let (l2, fx) = step(
        &l,
        overdue(T0 + Duration::minutes(5)),
        T0 + Duration::minutes(10),
    );
    assert_eq!(l2, l);
    assert!(fx.is_empty());
    // Its turn comes: due, issue.
    let (l3, fx) = step(&l2, overdue(turn + Duration::hours(1)), turn);
    assert!(matches!(l3.phase, Phase::Due { .. }));
    assert!(fx.contains(&Effect::Issue));
    assert!(l3.may_start(turn));
}

#[test]
fn a_turn_already_passed_issues_at_once_and_the_operator_skips_the_queue() {
    let (l, fx) = step(&Life::default(), overdue(T0), T0);
    assert!(matches!(l.phase, Phase::Due { .. }));
    assert!(fx.contains(&Effect::Issue));
    let (waiting, _) = step(&Life::default(), overdue(T0 + Duration::hours(3)), T0);
    let (l, fx) = step(&waiting, Event::Forced, T0);
    assert!(matches!(l.phase, Phase::Due { .. }));
    assert!(fx.contains(&Effect::Issue));
}

#[test]
fn a_backoff_is_not_lengthened_by_a_wave() {
    // After a failure the jittered backoff spreads the retries: once it ends, the wave's
    // draw does not add a second wait.
    let (l, _) = step(&Life::default(), transient("503"), T0);
    let Phase::Backoff { until, .. } = l.phase else {
        panic!("{l:?}")
    };
    let late = until + Duration::hours(5);
    let (still, _) = step(&l, overdue(late), until - Duration::milliseconds(1));
    assert!(matches!(still.phase, Phase::Backoff { .. }));
    let (l, fx) = step(&l, overdue(late), until);
    assert!(matches!(l.phase, Phase::Due { .. }));
    assert!(fx.contains(&Effect::Issue));
}

#[test]
fn a_csr_task_starts_only_when_it_is_time() {
    let later = T0 + Duration::hours(1);
    let backoff = |until| Phase::Backoff {
        until,
        attempts: 1,
        class: FailureClass::Permanent,
        error: "denied".into(),
    };
    for (phase, at_t0) in [
        (Phase::Unknown, true),
        (
            Phase::Due {
                reason: "missing".into(),
            },
            true,
        ),
        (Phase::Valid { deadline: later }, false),
        (Phase::Valid { deadline: T0 }, true),
        (Phase::ClockBehind { not_before: later }, false),
        (backoff(later), false),
        (backoff(T0), true),
        (
            Phase::Waiting {
                until: later,
                reason: "expired".into(),
            },
            false,
        ),
        (Phase::Issuing { since: T0 }, false),
        (
            Phase::AwaitingApproval {
                csr: "csr-1".into(),
                since: T0,
            },
            false,
        ),
        (
            Phase::Blocked {
                reason: "entry".into(),
            },
            false,
        ),
    ] {
        assert_eq!(at(phase.clone()).is_time(T0), at_t0, "{phase:?}");
    }
}
