//! Pure decisions about RenewRevocation entries: is the current certificate revoked, would
//! its replacement be, and from when the replacement must start.

use time::OffsetDateTime;

use super::plan::{decide, rfc3339, Current, Decision, Reason};
use super::{Action, Request};
use crate::pki::issue::{self, LeafSpec};
use crate::pki::policy::RenewalPolicy;
use crate::revocation::{self, Entry, Identity};

/// The revocation entry the current certificate matches, as the outcome names it.
pub(super) fn revoked_by(revs: &[Entry], current: &Current) -> Option<String> {
    let Current::Present(c) = current else {
        return None;
    };
    revocation::first_match(revs, &Identity::of(c))
        .map(|e| format!("{} ({}) in {}", e.id(), e.describe(), e.source))
}

/// An entry that would revoke the certificate a renewal is about to issue: renewing would
/// loop, so the operator is told how to fix the entry instead. The words are the journal's
/// key for this state (one line per change), so nothing in them changes between rescans.
pub(super) fn blocked_by(revs: &[Entry], future: &Identity) -> Option<Action> {
    let e = revocation::first_match(revs, future)?;
    let why = match e.not_before {
        None => {
            "it has no notBefore, so it also revokes the certificate that would replace this one"
        }
        Some(_) => "its notBefore is later than the replacement's notBefore",
    };
    Some(Action::Blocked {
        entry: format!(
            "revocation {} ({}) in {}: {why}; set its notBefore to the time of the revocation (RFC 3339, as \
             `date -u +%FT%TZ` prints it) to revoke only what was issued before it",
            e.id(),
            e.describe(),
            e.source,
        ),
        until: None,
    })
}

/// Why to rotate now, or the outcome when not: valid and not yet due, or a clock behind.
/// `heal`: turns a "not yet valid" certificate that was issued while the clock ran ahead
/// into a renewal (`plan::heal_future_not_before` for a local CA, `plan::heal_kubelet_ahead`).
pub(super) fn reason_to_rotate(
    current: &Current,
    revs: &[Entry],
    policy: &RenewalPolicy,
    req: Request,
    heal: impl FnOnce(Decision) -> Decision,
) -> Result<Reason, Action> {
    let revoked = revoked_by(revs, current);
    let decision = decide(
        current,
        req.forced,
        revoked,
        req.repair_only,
        policy,
        req.now,
    );
    match heal(decision) {
        Decision::Rotate(r) => Ok(r),
        Decision::Keep(next) => Err(Action::Kept { next }),
        Decision::ClockBehind(not_before) => Err(Action::ClockBehind { not_before }),
    }
}

/// What a certificate issued now from `leaf` would show a revocation rule.
pub(super) fn future_identity(leaf: &LeafSpec, now: OffsetDateTime) -> Identity<'_> {
    Identity {
        serial: None,
        common_name: Some(&leaf.common_name),
        organizations: &leaf.organizations,
        dns_names: &leaf.dns_names,
        ip_addresses: &leaf.ip_addresses,
        not_before: leaf.not_before(now),
    }
}

/// Start the replacement at the latest `notBefore` of a matching entry that falls within
/// the backdating window, so an entry written "as of now" revokes the old certificate and
/// not its replacement.
pub(super) fn floor_for(revs: &[Entry], leaf: &mut LeafSpec, now: OffsetDateTime) {
    let at_cutoff = |cutoff: OffsetDateTime| Identity {
        not_before: cutoff - time::Duration::seconds(1),
        ..future_identity(leaf, now)
    };
    leaf.not_before_floor = revs
        .iter()
        .filter_map(|e| e.not_before.map(|nb| (e, nb)))
        .filter(|(_, nb)| *nb > now - issue::BACKDATE && *nb <= now)
        .filter(|(e, nb)| revocation::matches(e, &at_cutoff(*nb)))
        .map(|(_, nb)| nb)
        .max();
}

/// A kubelet certificate's replacement is signed by kube-controller-manager, which
/// backdates notBefore by 5 minutes ([`issue::BACKDATE`]): requested now, it starts 5
/// minutes ago and an entry written "as of now" revokes it too. When only such cutoffs
/// (at most [`issue::BACKDATE`] ahead of this clock, for a writer's small skew) stand in
/// the way, it is not blocked for good: the request waits until the replacement starts at
/// or after every cutoff. Anything else blocks as for local-CA certificates.
///
/// `backdate`: how far before its request the signer dates a certificate, as seen on the
/// current one (written at minus notBefore; at least [`issue::BACKDATE`]): a signer whose
/// clock is behind this node's dates it earlier still, and requesting at cutoff + 5 min
/// would bring back a revoked certificate again and again.
pub(super) fn kubelet_blocked(
    revs: &[Entry],
    leaf: &LeafSpec,
    now: OffsetDateTime,
    backdate: time::Duration,
) -> Option<Action> {
    let backdate = backdate.max(issue::BACKDATE);
    let at = |t: OffsetDateTime| Identity {
        not_before: t - backdate,
        ..future_identity(leaf, now)
    };
    let mut request_at = now;
    let mut waited_for = None;
    // Each round moves past one entry's cutoff; an entry is passed at most once.
    for _ in 0..=revs.len() {
        let Some(e) = revocation::first_match(revs, &at(request_at)) else {
            break;
        };
        match e.not_before {
            Some(cutoff) if cutoff <= now + issue::BACKDATE => {
                let cutoff = cutoff.replace_nanosecond(0).unwrap_or(cutoff);
                request_at = request_at.max(cutoff + backdate);
                waited_for = Some(e);
            }
            _ => return blocked_by(revs, &at(request_at)),
        }
    }
    let e = waited_for?;
    // Seconds more are the time between signing and writing, not worth a word.
    let dated = if backdate - issue::BACKDATE < time::Duration::minutes(1) {
        "kube-controller-manager backdates a new certificate's notBefore by 5 minutes".to_string()
    } else {
        format!(
            "the signer dates a new certificate {backdate} before it is requested (the current \
             one's notBefore is that long before this node wrote it: 5 minutes of \
             kube-controller-manager's backdating, the rest a signer's clock behind this node's)"
        )
    };
    Some(Action::Blocked {
        entry: format!(
            "revocation {} ({}) in {}: {dated}, so a replacement requested before {until} would \
             be revoked too; the daemon requests it at {until}, without anyone's help (`rotate` \
             does from then on)",
            e.id(),
            e.describe(),
            e.source,
            until = rfc3339(request_at),
        ),
        until: Some(request_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Rule;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-11-22 05:33:28 UTC);

    fn nodes(not_before: Option<OffsetDateTime>) -> Entry {
        Entry {
            source: "/etc/kube-cert-agent/revocations.d/nodes.yaml".into(),
            document: "nodes".into(),
            index: 0,
            rule: Rule::Group("system:nodes".into()),
            not_before,
            description: None,
        }
    }

    fn kubelet_leaf() -> LeafSpec {
        LeafSpec {
            common_name: "system:node:node-1".into(),
            organizations: vec!["system:nodes".into()],
            dns_names: vec![],
            ip_addresses: vec![],
            usages: vec![],
            validity: Duration::ZERO,
            not_before_floor: None,
        }
    }

    /// An "as of now" cutoff: kube-controller-manager's 5-minute backdating would revoke a
    /// replacement requested now; it is requested at cutoff + 5 min, explained without
    /// advice (the notBefore is already set).
    #[test]
    fn an_as_of_now_cutoff_waits_for_the_signers_backdating() {
        for cutoff in [NOW, NOW - Duration::minutes(2), NOW + Duration::seconds(30)] {
            let revs = [nodes(Some(cutoff))];
            let Some(Action::Blocked { entry, until }) =
                kubelet_blocked(&revs, &kubelet_leaf(), NOW, issue::BACKDATE)
            else {
                panic!("{cutoff}: not blocked");
            };
            assert_eq!(until, Some(cutoff + issue::BACKDATE), "{cutoff}");
            assert!(entry.contains("backdates"), "{entry}");
            assert!(!entry.contains("set its notBefore"), "{entry}");
            // At that instant the replacement clears the cutoff: requested, no loop.
            assert_eq!(
                kubelet_blocked(
                    &revs,
                    &kubelet_leaf(),
                    cutoff + issue::BACKDATE,
                    issue::BACKDATE
                ),
                None
            );
        }
        // Cutoffs more than 5 minutes old are already cleared.
        let revs = [nodes(Some(NOW - Duration::minutes(6)))];
        assert_eq!(
            kubelet_blocked(&revs, &kubelet_leaf(), NOW, issue::BACKDATE),
            None
        );
    }

    /// A signer whose clock is 2 minutes behind dated the current certificate 7 minutes
    /// before this node wrote it: the next request waits 7 minutes past the cutoff, so it
    /// does not bring back a revoked certificate in a loop.
    #[test]
    fn a_signer_behind_this_clock_is_waited_out_too() {
        let revs = [nodes(Some(NOW))];
        let seven = Duration::minutes(7);
        let Some(Action::Blocked { entry, until }) =
            kubelet_blocked(&revs, &kubelet_leaf(), NOW, seven)
        else {
            panic!("not blocked");
        };
        assert_eq!(until, Some(NOW + seven));
        assert!(entry.contains("a signer's clock behind"), "{entry}");
        assert_eq!(
            kubelet_blocked(&revs, &kubelet_leaf(), NOW + seven, seven),
            None
        );
    }

    /// Two cutoffs: the later one decides. An entry with no notBefore, or a cutoff far
    /// ahead of this clock, blocks with the advice, as for local-CA certificates.
    #[test]
    fn later_cutoffs_and_unfixable_entries() {
        let mut second = nodes(Some(NOW + Duration::minutes(1)));
        second.index = 1;
        let revs = [nodes(Some(NOW - Duration::minutes(3))), second];
        let Some(Action::Blocked { until, .. }) =
            kubelet_blocked(&revs, &kubelet_leaf(), NOW, issue::BACKDATE)
        else {
            panic!("not blocked");
        };
        assert_eq!(until, Some(NOW + Duration::minutes(6)));

        for e in [nodes(None), nodes(Some(NOW + Duration::hours(1)))] {
            let Some(Action::Blocked { entry, until }) =
                kubelet_blocked(&[e], &kubelet_leaf(), NOW, issue::BACKDATE)
            else {
                panic!("not blocked");
            };
            assert_eq!(until, None);
            assert!(entry.contains("set its notBefore"), "{entry}");
        }
    }
}
