//! A fleet of agents on a virtual clock, driving the real planning code: the life-cycle
//! (`lifecycle::transition`, its jittered backoffs), the fleet-wide spread
//! (`lifecycle::spread`) and the renewal deadlines (`pki::policy`, 80% +- 10% drawn from
//! each certificate's serial). Shared by `benches/fleet.rs` and `tests/fleet.rs`.
//!
//! Each node has the two kubelet certificates (client and serving, one signer each). What
//! the daemon's scan does between the file system and the life-cycle (expired? revoked?
//! past its deadline?) is restated here in a few lines; everything that decides *when* is
//! the library's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use kube_cert_agent::lifecycle::{
    self, spread, Effect, Event, FailureClass, Life, Observation, Phase, Settings,
};
use kube_cert_agent::pki::policy::{unit_from_serial, RenewalPolicy};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const T0: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);
/// Kubelet signers per node: kube-apiserver-client-kubelet and kubelet-serving.
pub const SIGNERS: usize = 2;
/// API requests of one renewal, as the kubelet client makes them (measured against the
/// stand-in by `benches/bootstrap.rs` and checked by the bench's real-network section):
/// create the CSR, watch it until issued; the serving certificate first reads its Node for
/// the SANs.
pub const REQUESTS: [u64; SIGNERS] = [2, 3];
/// From the CSR's creation to the certificate (an approver and signer that keep up).
const SIGNING: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every node joins within the first hour, then renews on its own for 30 days.
    Steady,
    /// The fleet was off for longer than a lifetime: every certificate expired; every node
    /// boots at the same instant.
    AllExpired,
    /// A CA rotation revokes every kubelet certificate at `EVENT`: all are re-issued.
    Reissue,
    /// The API server answers nothing for an hour from `EVENT`, then recovers.
    Outage,
}

/// When the event of `Reissue` and `Outage` happens.
pub const EVENT: Duration = Duration::days(2);
pub const OUTAGE: Duration = Duration::hours(1);

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub nodes: usize,
    pub days: i64,
    pub lifetime: Duration,
    /// `renewal.fleetSpread`.
    pub window: Duration,
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    /// CSR creations per simulated minute.
    pub per_minute: Vec<u32>,
    pub csrs: u64,
    pub renewals: u64,
    pub requests: u64,
    /// The most CSRs one (node, signer) had outstanding at once.
    pub max_outstanding: u32,
    /// Certificates that were expired at some instant after the start (Steady, Reissue,
    /// Outage: should be none).
    pub expired_seen: u64,
}

struct Cert {
    life: Life,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: String,
    /// Revoked by a CA rotation (until re-issued).
    revoked: bool,
    outstanding: u32,
    /// The one look the agent has scheduled (older queue entries are stale).
    wake: OffsetDateTime,
    /// Issued in a batch (`spread::starts_batch`): its first renewal is drawn wide. `next`:
    /// what the renewal in flight will make of it.
    batch: bool,
    batch_next: bool,
}

impl Cert {
    /// The renewal deadline, as the daemon plans it (`rotation::plan` then `agent::scan`).
    fn deadline(&self) -> OffsetDateTime {
        let policy = if self.batch {
            spread::first_policy(&POLICY)
        } else {
            POLICY
        };
        policy.deadline_at(
            self.not_before,
            self.not_after,
            unit_from_serial(&self.serial),
        )
    }

    /// The life-cycle's settings for this certificate: kubelet certificates back off over
    /// the fleet window after API errors (`agent::feed`).
    fn settings(&self, window: Duration, now: OffsetDateTime) -> Settings {
        let s = Settings::default();
        let not_after = (!self.serial.is_empty()).then_some(self.not_after);
        Settings {
            transient_cap: spread::retry_cap(window, s.transient_cap, now, not_after),
            ..s
        }
    }
}

/// splitmix64: deterministic draws, so a run is reproducible.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

const POLICY: RenewalPolicy = RenewalPolicy {
    renew_at: 0.8,
    jitter: 0.1,
};

pub fn run(p: &Params, scenario: Scenario) -> Report {
    let mut rng = Rng::new(p.seed);
    let end = T0 + Duration::days(p.days);
    let mut report = Report {
        per_minute: vec![0; (p.days * 24 * 60) as usize + 1],
        ..Default::default()
    };
    let mut serials = 0u64;
    let mut next_serial = || {
        serials += 1;
        format!("{:032x}", serials.wrapping_mul(0x2545f4914f6cdd1d))
    };
    let mut certs: Vec<Cert> = Vec::with_capacity(p.nodes * SIGNERS);
    // (when, cert, wake kind): 0 = the agent looks at the certificate, 1 = a CSR is issued.
    let mut queue: BinaryHeap<Reverse<(OffsetDateTime, usize, u8)>> = BinaryHeap::new();
    for _node in 0..p.nodes {
        // Steady: joined within the first hour (nothing on disk: bootstrap at once).
        // Others: running for a while, certificates of uniformly spread ages.
        let (nb, start) = match scenario {
            Scenario::Steady => (None, T0 + Duration::hours(1) * rng.unit()),
            Scenario::AllExpired => (Some(T0 - p.lifetime * (1.5 + rng.unit())), T0),
            Scenario::Reissue | Scenario::Outage => {
                (Some(T0 - p.lifetime * (0.7 * rng.unit())), T0)
            }
        };
        for _ in 0..SIGNERS {
            let i = certs.len();
            let (not_before, not_after) = match nb {
                Some(nb) => (nb, nb + p.lifetime),
                None => (start, start),
            };
            certs.push(Cert {
                life: Life::default(),
                not_before,
                not_after,
                serial: if nb.is_some() {
                    next_serial()
                } else {
                    String::new()
                },
                revoked: false,
                outstanding: 0,
                wake: start,
                batch: false,
                batch_next: false,
            });
            queue.push(Reverse((start, i, 0)));
        }
    }
    let mut revoked_at_event = false;
    while let Some(Reverse((now, i, kind))) = queue.pop() {
        if now >= end {
            break;
        }
        if scenario == Scenario::Reissue && !revoked_at_event && now >= T0 + EVENT {
            // The revocation entry lands on every node; its watch rescans at once.
            revoked_at_event = true;
            for (j, c) in certs.iter_mut().enumerate() {
                c.revoked = true;
                c.wake = T0 + EVENT;
                queue.push(Reverse((T0 + EVENT, j, 0)));
            }
        }
        let api_down =
            scenario == Scenario::Outage && now >= T0 + EVENT && now < T0 + EVENT + OUTAGE;
        let c = &mut certs[i];
        if kind == 1 {
            // The CSR is issued: install.
            c.outstanding -= 1;
            c.not_before = now;
            c.not_after = now + p.lifetime;
            c.serial = next_serial();
            c.revoked = false;
            c.batch = c.batch_next;
            report.renewals += 1;
            let deadline = c.deadline();
            let settings = c.settings(p.window, now);
            c.life = step(
                c,
                Event::Installed {
                    serial: c.serial.clone(),
                    deadline,
                },
                now,
                &mut rng,
                &settings,
            );
            c.wake = deadline;
            queue.push(Reverse((deadline, i, 0)));
            continue;
        }
        if now != c.wake || c.life.phase.in_flight() {
            continue;
        }
        if c.not_before < now && c.not_after <= now && !c.serial.is_empty() && now > T0 {
            report.expired_seen += 1;
        }
        // The scan: what the daemon's `rescan` observes (`agent::scan`).
        let settings = c.settings(p.window, now);
        let obs = if c.serial.is_empty() {
            c.batch_next = spread::starts_batch(spread::Due::Missing, now);
            Observation::Due {
                reason: "missing".into(),
            }
        } else {
            let deadline = c.deadline();
            let cause = if now >= c.not_after {
                Some(spread::Due::Expired)
            } else if c.revoked {
                Some(spread::Due::Reissue)
            } else if now >= deadline {
                Some(spread::Due::Deadline(deadline))
            } else {
                None
            };
            c.batch_next = cause.is_some_and(|cause| spread::starts_batch(cause, now));
            match cause {
                None => Observation::Valid { deadline },
                Some(cause) if spread::in_wave(cause, now) => Observation::Overdue {
                    reason: format!("{cause:?}"),
                    until: spread::start_at(p.window, now, Some(c.not_after), rng.unit()),
                },
                Some(_) => Observation::Due {
                    reason: "due".into(),
                },
            }
        };
        c.life = step(c, Event::Observed(obs), now, &mut rng, &settings);
        if matches!(c.life.phase, Phase::Due { .. }) && c.life.may_start(now) {
            // The attempt: the first request is the CSR's creation.
            let signer = i % SIGNERS;
            if api_down {
                report.requests += 1;
                c.life = step(c, Event::Started, now, &mut rng, &settings);
                c.life = step(
                    c,
                    Event::Failed {
                        class: FailureClass::Transient,
                        error: "503".into(),
                    },
                    now,
                    &mut rng,
                    &settings,
                );
            } else {
                report.requests += REQUESTS[signer];
                report.csrs += 1;
                report.per_minute[((now - T0).whole_minutes()) as usize] += 1;
                c.outstanding += 1;
                report.max_outstanding = report.max_outstanding.max(c.outstanding);
                c.life = step(c, Event::Started, now, &mut rng, &settings);
                c.life = step(
                    c,
                    Event::CsrPending {
                        csr: format!("csr-{i}"),
                    },
                    now,
                    &mut rng,
                    &settings,
                );
                queue.push(Reverse((now + Duration::seconds(SIGNING), i, 1)));
                continue;
            }
        }
        // Without a wake-up of its own, the daemon's hourly resync looks again.
        let at = c
            .life
            .wake_at(&settings)
            .unwrap_or(now + Duration::hours(1));
        c.wake = at.max(now + Duration::SECOND);
        queue.push(Reverse((c.wake, i, 0)));
    }
    report
}

fn step(c: &Cert, ev: Event, now: OffsetDateTime, rng: &mut Rng, s: &Settings) -> Life {
    let (life, effects) = lifecycle::transition("kubelet", &c.life, &ev, now, rng.unit(), s);
    debug_assert!(effects
        .iter()
        .all(|e| matches!(e, Effect::Issue | Effect::Journal(_))));
    life
}

/// Peak and mean of per-minute counts over `[from, to)` minutes.
pub fn peak_mean(counts: &[u32], from: usize, to: usize, bucket: usize) -> (f64, f64) {
    let slice = &counts[from.min(counts.len())..to.min(counts.len())];
    let sums: Vec<u64> = slice
        .chunks(bucket)
        .filter(|c| c.len() == bucket)
        .map(|c| c.iter().map(|&x| u64::from(x)).sum())
        .collect();
    let peak = sums.iter().copied().max().unwrap_or(0) as f64 / bucket as f64;
    let mean = sums.iter().sum::<u64>() as f64 / (sums.len().max(1) * bucket) as f64;
    (peak, mean)
}
