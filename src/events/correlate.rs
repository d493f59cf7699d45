//! Which events to send, and how (pure: no clock, no I/O), in the spirit of client-go's
//! EventCorrelator: an event identical to one already sent (same type, reason and message)
//! bumps that event's `count` and `lastTimestamp` instead of making a new object, and a
//! token bucket (burst 25, one more every 5 minutes, client-go's spam filter) caps what one
//! node sends.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

/// One thing worth an Event on the Node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notice {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Longer messages are cut (kube-apiserver refuses very long ones; a screenful is enough).
pub const MAX_MESSAGE: usize = 1024;

impl Notice {
    pub fn new(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Notice {
        let mut message: String = message.into();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE - 3;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        Notice {
            type_,
            reason,
            message,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A new Event object.
    Create,
    /// The same as an earlier one: that object's count becomes `count`.
    Patch {
        name: String,
        count: i32,
        first: OffsetDateTime,
    },
    /// Over the rate limit.
    Drop,
}

pub const BURST: f64 = 25.0;
pub const REFILL_EVERY: Duration = Duration::minutes(5);
/// Distinct events remembered for counting (the oldest is forgotten first).
pub const MAX_REMEMBERED: usize = 256;

#[derive(Debug, Clone)]
struct Sent {
    name: String,
    count: i32,
    first: OffsetDateTime,
    last: OffsetDateTime,
}

#[derive(Debug)]
pub struct Correlator {
    sent: HashMap<Notice, Sent>,
    tokens: f64,
    refilled: OffsetDateTime,
}

impl Correlator {
    pub fn new(now: OffsetDateTime) -> Correlator {
        Correlator {
            sent: HashMap::new(),
            tokens: BURST,
            refilled: now,
        }
    }

    pub fn decide(&mut self, n: &Notice, now: OffsetDateTime) -> Decision {
        let elapsed = (now - self.refilled).max(Duration::ZERO);
        self.tokens = (self.tokens + elapsed / REFILL_EVERY).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return Decision::Drop;
        }
        self.tokens -= 1.0;
        match self.sent.get(n) {
            Some(s) => Decision::Patch {
                name: s.name.clone(),
                count: s.count + 1,
                first: s.first,
            },
            None => Decision::Create,
        }
    }

    /// The API server has `name` for `n` with `count`.
    pub fn sent(
        &mut self,
        n: &Notice,
        name: &str,
        count: i32,
        first: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        if !self.sent.contains_key(n) && self.sent.len() >= MAX_REMEMBERED {
            if let Some(oldest) = self
                .sent
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            {
                self.sent.remove(&oldest);
            }
        }
        self.sent.insert(
            n.clone(),
            Sent {
                name: name.to_string(),
                count,
                first,
                last: now,
            },
        );
    }

    /// The object is gone (expired by the event TTL): the next one is created anew.
    pub fn forget(&mut self, n: &Notice) {
        self.sent.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_same_event_again_is_a_count() {
        let t0 = datetime!(2026-12-02 00:00 UTC);
        let mut c = Correlator::new(t0);
        let n = Notice::new("Warning", "CertificateRotationFailed", "apiserver: boom");
        assert_eq!(c.decide(&n, t0), Decision::Create);
        c.sent(&n, "node-1.abc", 1, t0, t0);
        let t1 = t0 + Duration::minutes(1);
        assert_eq!(
            c.decide(&n, t1),
            Decision::Patch {
                name: "node-1.abc".into(),
                count: 2,
                first: t0
            }
        );
        c.sent(&n, "node-1.abc", 2, t0, t1);
        let other = Notice::new("Warning", "CertificateRotationFailed", "apiserver: bang");
        assert_eq!(c.decide(&other, t1), Decision::Create);
        c.forget(&n);
        assert_eq!(c.decide(&n, t1), Decision::Create);
    }

    #[test]
    fn a_burst_of_25_then_one_every_five_minutes() {
        let t0 = datetime!(2026-12-02 00:00 UTC);
        let mut c = Correlator::new(t0);
        let decisions: Vec<Decision> = (0..30)
            .map(|i| c.decide(&Notice::new("Normal", "R", format!("{i}")), t0))
            .collect();
        assert_eq!(
            decisions.iter().filter(|d| **d == Decision::Drop).count(),
            5
        );
        assert_eq!(decisions[24], Decision::Create);
        assert_eq!(decisions[25], Decision::Drop);
        let n = Notice::new("Normal", "R", "later");
        assert_eq!(c.decide(&n, t0 + Duration::minutes(4)), Decision::Drop);
        assert_eq!(c.decide(&n, t0 + Duration::minutes(5)), Decision::Create);
        assert_eq!(c.decide(&n, t0 + Duration::minutes(6)), Decision::Drop);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let n = Notice::new("Normal", "R", "é".repeat(1000));
        assert!(n.message.len() <= MAX_MESSAGE);
        assert!(n.message.ends_with("..."));
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = datetime!(2026-12-02 00:00 UTC);
        let mut c = Correlator::new(t0);
        for i in 0..(MAX_REMEMBERED + 10) {
            let n = Notice::new("Normal", "R", format!("{i}"));
            c.sent(
                &n,
                &format!("e{i}"),
                1,
                t0,
                t0 + Duration::seconds(i as i64),
            );
        }
        assert_eq!(c.sent.len(), MAX_REMEMBERED);
        // The oldest were forgotten.
        assert!(!c.sent.contains_key(&Notice::new("Normal", "R", "0")));
    }
}
