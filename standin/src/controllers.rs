//! kube-controller-manager's csrapproving (sarapprove), csrsigning and csrcleaner, in one loop.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::ByteString;

use crate::api::{APISERVER_CLIENT, CLIENT_KUBELET, KUBELET_SERVING};
use crate::ca::{csr_pem_to_der, parse_csr, ParsedCsr};
use crate::csr_api::add_condition;
use crate::state::{age_of, lock, EventKind, Shared};

pub async fn run(shared: Arc<Shared>) {
    let tick =
        (shared.opts.gc_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shared.kick.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        let s = shared.clone();
        // Signing may mean RSA work: keep it off the I/O threads.
        let _ = tokio::task::spawn_blocking(move || reconcile(&s)).await;
    }
}

fn cond<'a>(
    o: &'a CertificateSigningRequest,
    t: &str,
) -> Option<&'a k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition> {
    o.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

fn issued(o: &CertificateSigningRequest) -> bool {
    o.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn has_usages(usages: &[String], allowed: &[&str], required: &str) -> Result<(), String> {
    if !usages.iter().any(|u| u == required) {
        return Err(format!("missing required usage \"{required}\""));
    }
    for u in usages {
        if !allowed.contains(&u.as_str()) {
            return Err(format!(
                "usage \"{u}\" is not allowed, allowed usages: {allowed:?}"
            ));
        }
    }
    Ok(())
}

/// `ValidateKubeletClientCSR`.
pub fn validate_kubelet_client(csr: &ParsedCsr, usages: &[String]) -> Result<(), String> {
    if csr.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !csr.dns_names.is_empty()
        || !csr.ip_addresses.is_empty()
        || !csr.emails.is_empty()
        || !csr.uris.is_empty()
    {
        return Err("subjectAltNames are not allowed".into());
    }
    if !csr.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    has_usages(
        usages,
        &["digital signature", "key encipherment", "client auth"],
        "client auth",
    )
}

/// `ValidateKubeletServingCSR`.
pub fn validate_kubelet_serving(csr: &ParsedCsr, usages: &[String]) -> Result<(), String> {
    if csr.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if csr.dns_names.is_empty() && csr.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !csr.emails.is_empty() || !csr.uris.is_empty() {
        return Err("Email and URI subjectAltNames are not allowed".into());
    }
    if !csr.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    has_usages(
        usages,
        &["digital signature", "key encipherment", "server auth"],
        "server auth",
    )
}

enum Action {
    Approve,
    Deny(String),
    Fail(String),
    Certificate(String),
    Delete,
}

fn decide(shared: &Shared, o: &CertificateSigningRequest) -> Option<Action> {
    let approved = cond(o, "Approved");
    let denied = cond(o, "Denied");
    let failed = cond(o, "Failed");
    let gc = shared.opts.gc_after;
    // csrcleaner
    if let Some(c) = approved.filter(|_| issued(o)) {
        if c.last_update_time.as_ref().is_some_and(|t| age_of(t) >= gc) {
            return Some(Action::Delete);
        }
    }
    for c in [denied, failed].into_iter().flatten() {
        if c.last_update_time.as_ref().is_some_and(|t| age_of(t) >= gc) {
            return Some(Action::Delete);
        }
    }
    if approved.is_none()
        && denied.is_none()
        && failed.is_none()
        && o.metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| age_of(t) >= shared.opts.pending_gc_after)
    {
        return Some(Action::Delete);
    }
    let usages = o.spec.usages.clone().unwrap_or_default();
    let parsed = csr_pem_to_der(&o.spec.request.0).and_then(|d| parse_csr(&d));
    // csrapproving (sarapprove): once per CSR.
    if approved.is_none() && denied.is_none() && failed.is_none() && !issued(o) {
        let uid = o.metadata.uid.clone().unwrap_or_default();
        let first_sight = lock(&shared.approver_seen).insert(uid);
        if first_sight {
            let mut f = lock(&shared.faults);
            if f.deny_next > 0 {
                f.deny_next -= 1;
                return Some(Action::Deny(
                    "denied by the stand-in's deny-next fault knob".into(),
                ));
            }
            if f.never_approve {
                return None;
            }
        } else if lock(&shared.faults).never_approve {
            return None;
        }
        let groups = o.spec.groups.clone().unwrap_or_default();
        let in_group = |g: &str| groups.iter().any(|x| x == g);
        if let Ok(p) = &parsed {
            if o.spec.signer_name == CLIENT_KUBELET && validate_kubelet_client(p, &usages).is_ok() {
                // nodeclient: RBAC grants create certificatesigningrequests/nodeclient to system:bootstrappers;
                // selfnodeclient (username == CN) to system:nodes. system:masters may do both.
                let self_node = o.spec.username.as_deref() == Some(p.common_name.as_str());
                if in_group("system:bootstrappers")
                    || in_group("system:masters")
                    || (self_node && in_group("system:nodes"))
                {
                    return Some(Action::Approve);
                }
            }
        }
        return None;
    }
    // csrsigning
    if approved.is_some() && failed.is_none() && !issued(o) {
        let signer = o.spec.signer_name.as_str();
        if ![CLIENT_KUBELET, KUBELET_SERVING, APISERVER_CLIENT].contains(&signer) {
            return None;
        }
        {
            let mut f = lock(&shared.faults);
            if f.never_sign {
                return None;
            }
            if f.fail_csr_next > 0 {
                f.fail_csr_next -= 1;
                return Some(Action::Fail(
                    "injected failure (the stand-in's fail-next-csr fault knob)".into(),
                ));
            }
        }
        let p = match parsed {
            Ok(p) => p,
            Err(e) => return Some(Action::Fail(e.to_string())),
        };
        let valid = match signer {
            CLIENT_KUBELET => validate_kubelet_client(&p, &usages),
            KUBELET_SERVING => validate_kubelet_serving(&p, &usages),
            _ => has_usages(
                &usages,
                &["digital signature", "key encipherment", "client auth"],
                "client auth",
            ),
        };
        if let Err(e) = valid {
            return Some(Action::Fail(e));
        }
        let max = shared.opts.signing_duration;
        let duration = match o.spec.expiration_seconds {
            None => max,
            // signer.duration(): cap at the signer's TTL, 10-minute floor.
            Some(s) => {
                let req = Duration::from_secs(s.max(0) as u64);
                if req > max {
                    max
                } else if req < Duration::from_secs(600) {
                    Duration::from_secs(600)
                } else {
                    req
                }
            }
        };
        let wrong_key = {
            let mut f = lock(&shared.faults);
            if f.wrong_key_next > 0 {
                f.wrong_key_next -= 1;
                true
            } else {
                false
            }
        };
        let der = csr_pem_to_der(&o.spec.request.0).expect("parsed above");
        let signer = lock(&shared.signer).clone();
        let signed = match &signer {
            Some(ca) => ca.sign_csr(&der, &usages, duration, wrong_key),
            None => shared.ca.sign_csr(&der, &usages, duration, wrong_key),
        };
        return match signed {
            Ok(pem) => Some(Action::Certificate(pem)),
            Err(e) => Some(Action::Fail(e.to_string())),
        };
    }
    None
}

pub fn reconcile(shared: &Shared) {
    let snapshot: Vec<CertificateSigningRequest> =
        lock(&shared.store).objects.values().cloned().collect();
    for o in snapshot {
        let Some(action) = decide(shared, &o) else {
            continue;
        };
        let name = o.metadata.name.clone().unwrap_or_default();
        let mut st = lock(&shared.store);
        // Optimistic concurrency, as a controller's update would have.
        let Some(cur) = st.objects.get(&name).cloned() else {
            continue;
        };
        if cur.metadata.resource_version != o.metadata.resource_version {
            shared.kick.notify_one();
            continue;
        }
        let mut obj = cur;
        match action {
            Action::Delete => {
                shared.commit(&mut st, EventKind::Deleted, obj);
                continue;
            }
            Action::Approve => add_condition(
                &mut obj,
                "Approved",
                "AutoApproved",
                "Auto approving kubelet client certificate after SubjectAccessReview.",
            ),
            Action::Deny(m) => add_condition(&mut obj, "Denied", "StandInDenied", &m),
            Action::Fail(m) => add_condition(&mut obj, "Failed", "SignerValidationFailure", &m),
            Action::Certificate(pem) => {
                obj.status.get_or_insert_with(Default::default).certificate =
                    Some(ByteString(pem.into_bytes()));
            }
        }
        shared.commit(&mut st, EventKind::Modified, obj);
    }
}
