//! When to renew: a pure function of a certificate's validity and the renewal settings.
//!
//! deadline = notBefore + lifetime x (renewAt +- jitter), the jitter drawn per certificate
//! (kubelet: 70%..90%). The draw is derived from the certificate's serial, so a restart
//! does not move a deadline, and a fleet's serials (random) spread its renewals evenly.

use time::OffsetDateTime;

/// Renewal settings as fractions of the lifetime (0.8, 0.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    pub renew_at: f64,
    pub jitter: f64,
}

impl RenewalPolicy {
    /// `u` in [0, 1) picks the point within renewAt +- jitter.
    pub fn deadline_at(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        u: f64,
    ) -> OffsetDateTime {
        let fraction = self.renew_at + self.jitter * (2.0 * u.clamp(0.0, 1.0) - 1.0);
        let lifetime = not_after - not_before;
        not_before + lifetime * fraction
    }

    /// The deadline of a certificate, with its jitter derived from its serial.
    pub fn deadline(&self, cert: &super::CertInfo) -> OffsetDateTime {
        self.deadline_at(
            cert.not_before,
            cert.not_after,
            unit_from_serial(&cert.serial),
        )
    }
}

/// A stable value in [0, 1) from a serial (hex): FNV-1a, then the top 53 bits.
pub fn unit_from_serial(serial_hex: &str) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in serial_hex.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    // Finalise (splitmix64) so that serials differing in one digit land far apart.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d049bb133111eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    const P: RenewalPolicy = RenewalPolicy {
        renew_at: 0.8,
        jitter: 0.1,
    };
    const NB: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);
    const NA: OffsetDateTime = datetime!(2026-11-05 00:00 UTC);

    #[test]
    fn deadline_spans_70_to_90_percent() {
        assert_eq!(P.deadline_at(NB, NA, 0.0), NB + Duration::hours(96) * 0.7);
        assert_eq!(P.deadline_at(NB, NA, 0.5), NB + Duration::hours(96) * 0.8);
        assert_eq!(P.deadline_at(NB, NA, 1.0), NB + Duration::hours(96) * 0.9);
        // Out-of-range draws are clamped, never past 90%.
        assert_eq!(P.deadline_at(NB, NA, 7.0), P.deadline_at(NB, NA, 1.0));
    }

    #[test]
    fn serial_draws_are_stable_and_spread_evenly() {
        assert_eq!(unit_from_serial("0a1b"), unit_from_serial("0a1b"));
        // 10,000 sequential serials (the worst case: a CA that counts) fill ten buckets
        // evenly: no thundering herd at one instant.
        let mut buckets = [0u32; 10];
        for i in 0..10_000u32 {
            let u = unit_from_serial(&format!("{i:032x}"));
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((850..1150).contains(&b), "{buckets:?}");
        }
    }
}
