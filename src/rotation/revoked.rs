//! Pure decisions about RenewRevocation entries: is the current certificate revoked, would
//! its replacement be, and from when the replacement must start.

use time::OffsetDateTime;

use super::plan::{decide, heal_future_not_before, rfc3339, Current, Decision, Reason};
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
/// loop, so the operator is told how to fix the entry instead.
pub(super) fn blocked_by(revs: &[Entry], future: &Identity, now: OffsetDateTime) -> Option<Action> {
    let e = revocation::first_match(revs, future)?;
    let why = match e.not_before {
        None => {
            "it has no notBefore, so it also revokes the certificate that would replace this one"
        }
        Some(_) => "its notBefore is later than the replacement's notBefore",
    };
    Some(Action::Blocked {
        entry: format!(
            "revocation {} ({}) in {}: {why}; set its notBefore to the time of the revocation (for example \"{}\") \
             to revoke only what was issued before it",
            e.id(),
            e.describe(),
            e.source,
            rfc3339(now)
        ),
    })
}

/// Why to rotate now, or the outcome when not: valid and not yet due, or a clock behind.
/// `ca_not_before`: the issuing CA's notBefore, when known (a local CA).
pub(super) fn reason_to_rotate(
    current: &Current,
    revs: &[Entry],
    policy: &RenewalPolicy,
    req: Request,
    ca_not_before: Option<OffsetDateTime>,
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
    match heal_future_not_before(decision, ca_not_before, req.now) {
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
