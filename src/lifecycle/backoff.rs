//! How long to wait after a failure, by class: transient failures back off exponentially
//! with full jitter up to a cap; permanent ones wait the long interval (plus up to 10%, so
//! a fleet that failed together does not retry together).

use time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// First transient wait (ceiling of the jittered draw), doubled per attempt.
    pub transient_base: Duration,
    pub transient_cap: Duration,
    /// `renewal.permanentFailureBackoff` (default 1 h).
    pub permanent: Duration,
    /// A certificate that stays broken is mentioned again at most this often.
    pub reminder: Duration,
}

/// No transient retry sooner than this (a tight loop is never what anyone wants).
pub const FLOOR: Duration = Duration::seconds(1);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            transient_base: Duration::seconds(2),
            transient_cap: Duration::minutes(5),
            permanent: Duration::hours(1),
            reminder: Duration::minutes(30),
        }
    }
}

impl Settings {
    /// The wait after failure number `attempts` (1-based) of `class`; `u` in [0, 1).
    pub fn wait(&self, class: super::FailureClass, attempts: u32, u: f64) -> Duration {
        let u = u.clamp(0.0, 1.0);
        match class {
            super::FailureClass::Transient => {
                let doublings = attempts.saturating_sub(1).min(20);
                let ceiling =
                    (self.transient_base * (1u32 << doublings) as f64).min(self.transient_cap);
                (ceiling * u).max(FLOOR)
            }
            super::FailureClass::Permanent => self.permanent + self.permanent * (0.1 * u),
        }
    }
}
