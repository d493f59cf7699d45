//! The life-cycle of one managed certificate as a pure state machine.
//!
//! [`transition`] takes the current [`Life`], an [`Event`], `now` and a random draw in
//! [0, 1) (the jitter), and returns the next [`Life`] and the [`Effect`]s to perform. No
//! disk, clock or network here: the daemon feeds it the outcomes of its scans and tasks,
//! and a fleet simulator can drive it on a virtual clock.
//!
//! ```text
//!  Unknown ──observed──► Valid{deadline} ──deadline / forced──► Due ──► Issuing ──installed──► Valid
//!     └──overdue in a fleet-wide wave──► Waiting{until} ──until──► Due   (`spread`)
//!                                                                 │         └─► AwaitingApproval{csr} ─installed─► Valid
//!                          any ─failed(transient)─► Backoff{transient, until}: short, exponential, jittered
//!                          any ─failed(permanent)─► Backoff{permanent, until}: long interval (1 h), or a
//!                                                   forced event (SIGHUP, rotate NAME, config change)
//!                          any ─revocation that would match the replacement─► Blocked{reason}
//! ```
//!
//! The journal gets one line per change of phase (or of the error), and while a
//! certificate stays broken a reminder at most every [`Settings::reminder`].

pub mod backoff;
pub mod spread;

use time::OffsetDateTime;

pub use backoff::Settings;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 5xx, 429, timeouts, connection refused, a full disk: retry soon, backing off.
    Transient,
    /// A missing CA key, a denied CSR, a config problem: retrying cannot help until
    /// something changes.
    Permanent,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
        }
    }
}

/// A failed renewal: what went wrong and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
}

impl Failure {
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::Transient,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::Permanent,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Bad material, a bad config, a CA that cannot be loaded: retrying the same inputs gives
/// the same answer. I/O that may pass is mapped to [`Failure::transient`] where it happens.
impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::permanent(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::permanent(message)
    }
}

/// Where a certificate stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not looked at yet.
    Unknown,
    /// Valid; renew at `deadline`.
    Valid { deadline: OffsetDateTime },
    /// Not valid yet by this node's clock: not re-issued (another one would be the same).
    ClockBehind { not_before: OffsetDateTime },
    /// To be renewed now.
    Due { reason: String },
    /// Overdue in a fleet-wide wave: waits its turn (`renewal.fleetSpread`) until `until`.
    Waiting {
        until: OffsetDateTime,
        reason: String,
    },
    /// A renewal is running.
    Issuing { since: OffsetDateTime },
    /// A CSR was created and waits for the signer.
    AwaitingApproval { csr: String, since: OffsetDateTime },
    /// The last attempt failed; the next one not before `until`.
    Backoff {
        until: OffsetDateTime,
        attempts: u32,
        class: FailureClass,
        error: String,
    },
    /// A revocation entry would revoke the replacement too: nothing is tried until the
    /// entry changes (the revocations directory is watched) or an operator forces it.
    Blocked { reason: String },
}

impl Phase {
    /// The phase's name, as `status` and the journal show it.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Unknown => "unknown",
            Phase::Valid { .. } => "valid",
            Phase::ClockBehind { .. } => "clockBehind",
            Phase::Due { .. } => "due",
            Phase::Waiting { .. } => "waiting",
            Phase::Issuing { .. } => "issuing",
            Phase::AwaitingApproval { .. } => "awaitingApproval",
            Phase::Backoff { .. } => "backoff",
            Phase::Blocked { .. } => "blocked",
        }
    }

    /// A renewal is running (a task owns the certificate).
    pub fn in_flight(&self) -> bool {
        matches!(self, Phase::Issuing { .. } | Phase::AwaitingApproval { .. })
    }

    /// Broken: worth a periodic reminder in the journal.
    pub fn broken(&self) -> bool {
        matches!(self, Phase::Backoff { .. } | Phase::Blocked { .. })
    }

    /// The error an operator should see, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            Phase::Backoff { error, .. } => Some(error),
            Phase::Blocked { reason } => Some(reason),
            _ => None,
        }
    }
}

/// What the plan says about the certificate on disk now (from a read-only scan).
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Valid {
        deadline: OffsetDateTime,
    },
    ClockBehind {
        not_before: OffsetDateTime,
    },
    Due {
        reason: String,
    },
    /// Due because of something that hit the whole fleet (see `spread`): start at `until`,
    /// drawn by the daemon over the window. A later draw does not move an earlier one.
    Overdue {
        reason: String,
        until: OffsetDateTime,
    },
    Blocked {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A scan (start-up, rescan after an inotify event, the hourly resync).
    Observed(Observation),
    /// The operator asked: SIGHUP, `rotate NAME`, a config change. Ends any backoff.
    Forced,
    /// Files the certificate is made from changed (a CA key put back, a revocation
    /// entry edited): worth another try even after a permanent failure.
    InputsChanged,
    /// Execution started.
    Started,
    /// A CSR was created (or found again after a restart) and waits for approval.
    CsrPending {
        csr: String,
    },
    /// A new certificate is installed.
    Installed {
        serial: String,
        deadline: OffsetDateTime,
    },
    Failed {
        class: FailureClass,
        error: String,
    },
    /// The loop woke for this certificate (its `wake_at`) and nothing else happened to
    /// it: a broken one's reminder is due. Changes no phase.
    Woke,
}

/// A line for the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a renewal now.
    Issue,
    Journal(Journal),
}

/// One certificate's state: its phase and when the journal last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub phase: Phase,
    /// What the journal last said (so a repeated failure is not said again).
    pub reported: Option<String>,
    pub logged_at: Option<OffsetDateTime>,
    /// Failures since the last success. Kept in the life, not the phase: a retry goes
    /// Backoff -> Due -> Issuing -> Failed, and the backoff must still grow.
    pub failures: u32,
}

impl Default for Life {
    fn default() -> Self {
        Life {
            phase: Phase::Unknown,
            reported: None,
            logged_at: None,
            failures: 0,
        }
    }
}

impl Life {
    /// When the daemon must next look at this certificate without an event.
    pub fn wake_at(&self, settings: &Settings) -> Option<OffsetDateTime> {
        let reminder = |t: OffsetDateTime| {
            self.logged_at
                .map(|l| t.min(l + settings.reminder))
                .unwrap_or(t)
        };
        match &self.phase {
            Phase::Valid { deadline } => Some(*deadline),
            Phase::ClockBehind { not_before } => Some(*not_before),
            Phase::Waiting { until, .. } => Some(*until),
            Phase::Backoff { until, .. } => Some(reminder(*until)),
            _ => None,
        }
    }

    /// Is it time to look again (a deadline, a backoff or a turn that has come, or due)?
    /// A renewal through the API server is started only then: a valid certificate is not
    /// handed to a CSR task just to be found valid.
    pub fn is_time(&self, now: OffsetDateTime) -> bool {
        match &self.phase {
            Phase::Unknown | Phase::Due { .. } => true,
            Phase::Valid { deadline } => now >= *deadline,
            Phase::ClockBehind { not_before } => now >= *not_before,
            Phase::Backoff { until, .. } | Phase::Waiting { until, .. } => now >= *until,
            Phase::Issuing { .. } | Phase::AwaitingApproval { .. } | Phase::Blocked { .. } => false,
        }
    }

    /// May a renewal start now (without an operator forcing it)?
    pub fn may_start(&self, now: OffsetDateTime) -> bool {
        match &self.phase {
            Phase::Backoff { until, .. } | Phase::Waiting { until, .. } => now >= *until,
            Phase::Issuing { .. } | Phase::AwaitingApproval { .. } => false,
            _ => true,
        }
    }
}

fn journal(level: Level, text: String) -> Effect {
    Effect::Journal(Journal { level, text })
}

/// The pure transition. `name` is only used in journal lines; `u` is a draw in [0, 1).
pub fn transition(
    name: &str,
    life: &Life,
    event: &Event,
    now: OffsetDateTime,
    u: f64,
    settings: &Settings,
) -> (Life, Vec<Effect>) {
    let old = &life.phase;
    let mut effects = Vec::new();
    let next: Phase = match (old, event) {
        (p, Event::Woke) => p.clone(),
        // A running renewal owns the certificate: scans do not move it.
        (p, Event::Observed(_)) if p.in_flight() => p.clone(),
        (
            Phase::Backoff { until, .. } | Phase::Waiting { until, .. },
            Event::Observed(Observation::Due { .. } | Observation::Overdue { .. }),
        ) if now < *until => old.clone(),
        // A failed attempt's jittered backoff already spreads the retries; a turn drawn
        // once is kept (rescans do not draw again).
        (
            Phase::Backoff { .. } | Phase::Waiting { .. },
            Event::Observed(Observation::Overdue { reason, .. }),
        ) => {
            effects.push(Effect::Issue);
            Phase::Due {
                reason: reason.clone(),
            }
        }
        (_, Event::Observed(Observation::Overdue { reason, until })) if now < *until => {
            Phase::Waiting {
                until: *until,
                reason: reason.clone(),
            }
        }
        (_, Event::Observed(Observation::Overdue { reason, .. })) => {
            effects.push(Effect::Issue);
            Phase::Due {
                reason: reason.clone(),
            }
        }
        (_, Event::Observed(Observation::Valid { deadline })) => Phase::Valid {
            deadline: *deadline,
        },
        (_, Event::Observed(Observation::ClockBehind { not_before })) => Phase::ClockBehind {
            not_before: *not_before,
        },
        (_, Event::Observed(Observation::Blocked { reason })) => Phase::Blocked {
            reason: reason.clone(),
        },
        (_, Event::Observed(Observation::Due { reason })) => {
            effects.push(Effect::Issue);
            Phase::Due {
                reason: reason.clone(),
            }
        }
        (p, Event::Forced) if p.in_flight() => p.clone(),
        (_, Event::Forced) => {
            effects.push(Effect::Issue);
            Phase::Due {
                reason: "forced".into(),
            }
        }
        (
            Phase::Backoff {
                class: FailureClass::Permanent,
                attempts,
                error,
                ..
            },
            Event::InputsChanged,
        ) => Phase::Backoff {
            until: now,
            attempts: *attempts,
            class: FailureClass::Permanent,
            error: error.clone(),
        },
        (p, Event::InputsChanged) => p.clone(),
        (_, Event::Started) => Phase::Issuing { since: now },
        (Phase::AwaitingApproval { csr, since }, Event::CsrPending { csr: c }) if csr == c => {
            Phase::AwaitingApproval {
                csr: csr.clone(),
                since: *since,
            }
        }
        (_, Event::CsrPending { csr }) => Phase::AwaitingApproval {
            csr: csr.clone(),
            since: now,
        },
        // The executor logs the renewal itself, with its serials and trigger.
        (_, Event::Installed { deadline, .. }) => Phase::Valid {
            deadline: *deadline,
        },
        (_, Event::Failed { class, error }) => {
            let attempts = life.failures.saturating_add(1);
            Phase::Backoff {
                until: now + settings.wait(*class, attempts, u),
                attempts,
                class: *class,
                error: error.clone(),
            }
        }
    };
    let failures = match (&next, event) {
        (Phase::Backoff { attempts, .. }, Event::Failed { .. }) => *attempts,
        (_, Event::Installed { .. } | Event::Forced) => 0,
        (Phase::Valid { .. }, _) => 0,
        _ => life.failures,
    };
    let mut out = Life {
        phase: next,
        reported: life.reported.clone(),
        logged_at: life.logged_at,
        failures,
    };
    let installed = matches!(event, Event::Installed { .. });
    match report_key(&out.phase) {
        Some(key) if out.reported.as_deref() != Some(key.as_str()) => {
            let was_broken = out.reported.as_deref().is_some_and(|k| k != "valid");
            if let Some(line) = change_line(name, &out.phase, was_broken && !installed) {
                effects.push(line);
                out.logged_at = Some(now);
            }
            out.reported = Some(key);
        }
        Some(_)
            if out.phase.broken()
                && out.logged_at.is_some_and(|l| now - l >= settings.reminder) =>
        {
            effects.push(journal(
                Level::Warn,
                format!(
                    "{name}: still {}: {}",
                    describe(&out.phase),
                    out.phase.error().unwrap_or("")
                ),
            ));
            out.logged_at = Some(now);
        }
        _ => {}
    }
    (out, effects)
}

/// What the journal last said about a phase; phases on the way (due, issuing) say nothing.
fn report_key(p: &Phase) -> Option<String> {
    match p {
        Phase::Unknown | Phase::Due { .. } | Phase::Issuing { .. } => None,
        Phase::Valid { .. } => Some("valid".into()),
        Phase::ClockBehind { not_before } => Some(format!("clockBehind {not_before}")),
        Phase::Waiting { until, .. } => Some(format!("waiting {until}")),
        Phase::AwaitingApproval { csr, .. } => Some(format!("awaiting {csr}")),
        Phase::Backoff { class, error, .. } => Some(format!("failing {} {error}", class.as_str())),
        Phase::Blocked { reason } => Some(format!("blocked {reason}")),
    }
}

fn describe(p: &Phase) -> String {
    match p {
        Phase::Backoff {
            class,
            until,
            attempts,
            ..
        } => format!(
            "failing ({} failure, attempt {attempts}, next try {})",
            class.as_str(),
            crate::pki::rfc3339(*until)
        ),
        other => other.name().to_string(),
    }
}

/// The journal line for a change of phase, if it is worth one.
fn change_line(name: &str, next: &Phase, recovered: bool) -> Option<Effect> {
    let line = match next {
        Phase::Backoff { error, .. } => {
            journal(Level::Error, format!("{name}: {}: {error}", describe(next)))
        }
        Phase::Blocked { reason } => journal(Level::Error, format!("{name}: BLOCKED: {reason}")),
        Phase::ClockBehind { not_before } => journal(
            Level::Warn,
            format!(
                "{name}: not valid until {}: is this node's clock behind? Not re-issued",
                crate::pki::rfc3339(*not_before)
            ),
        ),
        Phase::AwaitingApproval { csr, .. } => {
            journal(Level::Info, format!("{name}: CSR {csr} waits for approval"))
        }
        Phase::Waiting { until, reason } => journal(
            Level::Info,
            format!(
                "{name}: {reason}: renewal waits its turn in a fleet-wide wave until {} (renewal.fleetSpread)",
                crate::pki::rfc3339(*until)
            ),
        ),
        // Back to valid after trouble: say so once.
        Phase::Valid { .. } if recovered => journal(Level::Info, format!("{name}: valid again")),
        _ => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests;
