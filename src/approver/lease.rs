//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does:
//! the holder renews `renewTime` every retry period; another replica takes the Lease over
//! once the record has not changed for `leaseDurationSeconds` *as it observed locally*
//! (so the replicas' clocks need not agree); a holder that could not renew within the
//! renew deadline stops acting before anyone else may start.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::kube::client::{ApiClient, ApiError};

/// What the elector does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over (one more transition).
    TakeOver,
    /// Someone else holds it.
    Follow(String),
}

/// Pure: given the Lease's holder and duration and how long its record has been unchanged
/// as we observed it.
pub fn decide(me: &str, lease: Option<(&str, Duration)>, unchanged_for: Duration) -> Decision {
    match lease {
        None => Decision::Create,
        Some((holder, _)) if holder == me => Decision::Renew,
        Some(("", _)) => Decision::TakeOver,
        Some((_, duration)) if unchanged_for >= duration => Decision::TakeOver,
        Some((holder, _)) => Decision::Follow(holder.to_string()),
    }
}

/// Timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

fn now_micro() -> MicroTime {
    MicroTime(super::now_timestamp())
}

fn spec_of(l: &Lease) -> LeaseSpec {
    l.spec.clone().unwrap_or_default()
}

/// Runs forever: keeps `leader` true exactly while this replica may act.
pub async fn run(
    client: ApiClient,
    namespace: String,
    name: String,
    me: String,
    t: Timings,
    leader: watch::Sender<bool>,
) {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases");
    let one = format!("{path}/{name}");
    let mut observed: Option<(String, Instant)> = None;
    let mut last_renew: Option<Instant> = None;
    loop {
        let current: Result<Option<Lease>, ApiError> = match client.get::<Lease>(&one).await {
            Ok(l) => Ok(Some(l)),
            Err(ApiError::Status { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        };
        match current {
            Err(e) => tracing::warn!("lease {namespace}/{name}: {e}"),
            Ok(lease) => {
                let now = Instant::now();
                // The record (resourceVersion) changing is what proves the holder alive.
                let rv = lease
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone())
                    .unwrap_or_default();
                if !observed.as_ref().is_some_and(|(o, _)| *o == rv) {
                    observed = Some((rv, now));
                }
                let unchanged_for = observed
                    .as_ref()
                    .map(|(_, at)| now - *at)
                    .unwrap_or_default();
                let holder_and_duration = lease.as_ref().map(|l| {
                    let s = spec_of(l);
                    (
                        s.holder_identity.unwrap_or_default(),
                        Duration::from_secs(s.lease_duration_seconds.unwrap_or(15).max(1) as u64),
                    )
                });
                let decision = decide(
                    &me,
                    holder_and_duration.as_ref().map(|(h, d)| (h.as_str(), *d)),
                    unchanged_for,
                );
                let result = match (&decision, lease) {
                    (Decision::Follow(holder), _) => {
                        if leader.send_if_modified(|l| std::mem::replace(l, false)) {
                            tracing::info!("lost the lease {namespace}/{name} to {holder}");
                        }
                        last_renew = None;
                        Ok(false)
                    }
                    (Decision::Create, _) => {
                        let l = Lease {
                            metadata: ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(namespace.clone()),
                                ..Default::default()
                            },
                            spec: Some(LeaseSpec {
                                holder_identity: Some(me.clone()),
                                lease_duration_seconds: Some(t.lease_duration.as_secs() as i32),
                                acquire_time: Some(now_micro()),
                                renew_time: Some(now_micro()),
                                lease_transitions: Some(0),
                                ..Default::default()
                            }),
                        };
                        client
                            .send::<Lease>(reqwest::Method::POST, &path, &l)
                            .await
                            .map(|_| true)
                    }
                    (_, Some(mut l)) => {
                        let mut s = spec_of(&l);
                        if decision == Decision::TakeOver {
                            s.holder_identity = Some(me.clone());
                            s.acquire_time = Some(now_micro());
                            s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
                        }
                        s.lease_duration_seconds = Some(t.lease_duration.as_secs() as i32);
                        s.renew_time = Some(now_micro());
                        l.spec = Some(s);
                        put(&client, &one, &l).await
                    }
                    (_, None) => Ok(false),
                };
                match result {
                    Ok(true) => {
                        last_renew = Some(Instant::now());
                        if leader.send_if_modified(|l| !std::mem::replace(l, true)) {
                            tracing::info!("acquired the lease {namespace}/{name} as {me}");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::info!("lease {namespace}/{name}: {e}"),
                }
            }
        }
        // Not renewed within the deadline: stop acting before another replica may start.
        if last_renew.is_some_and(|r| r.elapsed() > t.renew_deadline)
            && leader.send_if_modified(|l| std::mem::replace(l, false))
        {
            tracing::warn!(
                "could not renew the lease {namespace}/{name} within {:?}; stopped acting",
                t.renew_deadline
            );
            last_renew = None;
        }
        tokio::time::sleep(t.retry_period).await;
    }
}

/// On shutdown, as client-go's `ReleaseOnCancel`: a holder gives the Lease up (empty
/// holder, one-second duration), so another replica takes over at its next retry instead
/// of waiting out the lease duration. `Ok(false)`: we did not hold it.
pub async fn release(
    client: &ApiClient,
    namespace: &str,
    name: &str,
    me: &str,
) -> Result<bool, ApiError> {
    let one = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}");
    let mut l = match client.get::<Lease>(&one).await {
        Ok(l) => l,
        Err(ApiError::Status { code: 404, .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut s = spec_of(&l);
    if s.holder_identity.as_deref() != Some(me) {
        return Ok(false);
    }
    s.holder_identity = Some(String::new());
    s.lease_duration_seconds = Some(1);
    s.acquire_time = Some(now_micro());
    s.renew_time = Some(now_micro());
    l.spec = Some(s);
    put(client, &one, &l).await
}

/// The resourceVersion we read makes the update a compare-and-swap: a replica that
/// changed the Lease meanwhile is never overwritten.
async fn put(client: &ApiClient, one: &str, l: &Lease) -> Result<bool, ApiError> {
    client
        .send::<Lease>(reqwest::Method::PUT, one, l)
        .await
        .map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_renews_others_wait_for_the_observed_duration() {
        let d = Duration::from_secs(15);
        assert_eq!(decide("a", None, Duration::ZERO), Decision::Create);
        assert_eq!(
            decide("a", Some(("a", d)), Duration::from_secs(100)),
            Decision::Renew
        );
        assert_eq!(
            decide("b", Some(("a", d)), Duration::from_secs(14)),
            Decision::Follow("a".into())
        );
        assert_eq!(
            decide("b", Some(("a", d)), Duration::from_secs(15)),
            Decision::TakeOver
        );
        assert_eq!(
            decide("b", Some(("", d)), Duration::ZERO),
            Decision::TakeOver
        );
    }
}
