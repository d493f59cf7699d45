//! The status of a certificate at an instant: a pure function of its validity and `now`.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Ok,
    Warning,
    Expired,
    NotYetValid,
    Invalid,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Expired => "expired",
            Status::NotYetValid => "notYetValid",
            Status::Invalid => "invalid",
        }
    }
}

/// When a still-valid certificate counts as a warning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WarnPolicy {
    /// `--warn-within D`: residual time below D.
    Within(Duration),
    /// Default. Leaves: past 90% of their lifetime, the latest point at which the agent's
    /// renewal (80% +- 10%) should have happened. CAs: within a year of expiry, since a CA is
    /// never rotated automatically and replacing one takes planning.
    Lifetime,
}

/// How long before expiry a CA is reported as a warning under [`WarnPolicy::Lifetime`].
pub const CA_WARNING: Duration = Duration::days(365);

pub fn classify(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    is_ca: bool,
    now: OffsetDateTime,
    policy: WarnPolicy,
) -> Status {
    if now < not_before {
        return Status::NotYetValid;
    }
    if now >= not_after {
        return Status::Expired;
    }
    let residual = not_after - now;
    let warn = match policy {
        WarnPolicy::Within(d) => residual < d,
        WarnPolicy::Lifetime if is_ca => residual < CA_WARNING,
        WarnPolicy::Lifetime => residual * 10 < (not_after - not_before),
    };
    if warn {
        Status::Warning
    } else {
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NB: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);
    const NA: OffsetDateTime = datetime!(2026-11-05 00:00 UTC); // a 4-day leaf

    #[test]
    fn leaf_lifetime_policy() {
        let p = WarnPolicy::Lifetime;
        assert_eq!(
            classify(NB, NA, false, datetime!(2026-10-31 23:59 UTC), p),
            Status::NotYetValid
        );
        assert_eq!(classify(NB, NA, false, NB, p), Status::Ok);
        // 90% of 96h is 86.4h: 2026-11-04 14:24
        assert_eq!(
            classify(NB, NA, false, datetime!(2026-11-04 14:23 UTC), p),
            Status::Ok
        );
        assert_eq!(
            classify(NB, NA, false, datetime!(2026-11-04 14:25 UTC), p),
            Status::Warning
        );
        assert_eq!(classify(NB, NA, false, NA, p), Status::Expired);
    }

    #[test]
    fn ca_warns_a_year_ahead() {
        let nb = datetime!(2016-11-01 00:00 UTC);
        let na = datetime!(2026-11-01 00:00 UTC);
        let p = WarnPolicy::Lifetime;
        assert_eq!(
            classify(nb, na, true, datetime!(2025-10-31 00:00 UTC), p),
            Status::Ok
        );
        assert_eq!(
            classify(nb, na, true, datetime!(2025-11-02 00:00 UTC), p),
            Status::Warning
        );
    }

    #[test]
    fn explicit_window() {
        let p = WarnPolicy::Within(Duration::hours(48));
        assert_eq!(
            classify(NB, NA, false, datetime!(2026-11-02 23:00 UTC), p),
            Status::Ok
        );
        assert_eq!(
            classify(NB, NA, false, datetime!(2026-11-03 01:00 UTC), p),
            Status::Warning
        );
    }
}
