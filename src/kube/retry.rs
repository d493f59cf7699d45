//! Capped exponential backoff with full jitter: a pure function of the attempt number and
//! a random draw, so it is tested without sleeping.

use std::time::Duration;

pub const BASE: Duration = Duration::from_millis(500);
pub const CAP: Duration = Duration::from_secs(60);

/// The wait before retry number `attempt` (0-based): uniform in [0, min(CAP, BASE x 2^attempt)],
/// never less than the server's Retry-After.
pub fn backoff(attempt: u32, u: f64, retry_after: Option<Duration>) -> Duration {
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    let jittered = ceiling.mul_f64(u.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) => jittered.max(ra),
        None => jittered,
    }
}

/// A draw in [0, 1) from the OS.
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_honours_retry_after() {
        assert_eq!(backoff(0, 1.0, None), BASE);
        assert_eq!(backoff(3, 1.0, None), BASE * 8);
        assert_eq!(backoff(30, 1.0, None), CAP);
        assert_eq!(backoff(5, 0.0, None), Duration::ZERO);
        assert_eq!(
            backoff(0, 0.5, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
    }
}
