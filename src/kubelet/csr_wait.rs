//! Waiting for a CSR: watch (re-listing after a dropped watch) until the object shows
//! Issued, Denied or Failed, or the deadline passes; API calls retried while transient.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::{notice, KubeletError, Progress};
use crate::kube::client::{ApiClient, ApiError, CsrEvent};
use crate::kube::retry;
use crate::pki::csr::KubeletCert;

/// Run `call` until it succeeds, fails for good, or the deadline passes; 5xx, 429 and
/// connection errors are retried with capped exponential backoff (Retry-After honoured).
pub(super) async fn with_retries<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut call: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_transient() => {
                let wait = retry::backoff(attempt, retry::random_unit(), e.retry_after());
                if tokio::time::Instant::now() + wait >= deadline {
                    return Err(e);
                }
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "API request failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The outcome a CSR object shows, if it has one.
pub(super) enum Seen {
    Issued(Vec<u8>),
    Denied(String, String),
    Failed(String, String),
    Pending { approved: bool },
}

pub(super) fn seen(csr: &CertificateSigningRequest) -> Seen {
    let status = csr.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.as_slice())
        .unwrap_or_default();
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if let Some(c) = cond("Denied") {
        return Seen::Denied(
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        );
    }
    if let Some(c) = cond("Failed") {
        return Seen::Failed(
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        );
    }
    let approved = cond("Approved").is_some();
    match status.and_then(|s| s.certificate.as_ref()) {
        Some(c) if approved && !c.0.is_empty() => Seen::Issued(c.0.clone()),
        _ => Seen::Pending { approved },
    }
}

pub(super) async fn wait_issued(
    client: &ApiClient,
    created: CertificateSigningRequest,
    deadline: tokio::time::Instant,
    kind: KubeletCert,
    timeout: Duration,
    progress: Progress<'_>,
) -> Result<Vec<u8>, KubeletError> {
    let name = created.metadata.name.clone().unwrap_or_default();
    let mut latest = created;
    let mut said_pending = false;
    let mut reconnects = 0u32;
    loop {
        match seen(&latest) {
            Seen::Issued(c) => return Ok(c),
            Seen::Denied(reason, message) => {
                notice::notify(notice::CsrNotice::Denied {
                    csr: name.clone(),
                    signer: kind.signer().to_string(),
                    reason: reason.clone(),
                    message: message.clone(),
                });
                return Err(KubeletError::Denied {
                    name,
                    reason,
                    message,
                });
            }
            Seen::Failed(reason, message) => {
                return Err(KubeletError::Failed {
                    name,
                    reason,
                    message,
                })
            }
            Seen::Pending { approved } => {
                if !said_pending && !approved && kind == KubeletCert::Serving {
                    progress(&format!(
                        "CSR {name} pending approval: kubelet-serving CSRs are not approved automatically; approve it with kubectl certificate approve {name}"
                    ));
                    notice::notify(notice::CsrNotice::AwaitingApproval {
                        csr: name.clone(),
                        signer: kind.signer().to_string(),
                    });
                    said_pending = true;
                }
            }
        }
        let rv = latest.metadata.resource_version.clone().unwrap_or_default();
        let mut next: Option<CertificateSigningRequest> = None;
        let mut gone = false;
        let mut deleted = false;
        let mut stream_error: Option<ApiError> = None;
        let watch = client.watch_csr(&name, &rv, |ev| match ev {
            CsrEvent::Changed(o) => {
                let done = !matches!(seen(&o), Seen::Pending { .. });
                next = Some(*o);
                !done
            }
            CsrEvent::Deleted => {
                deleted = true;
                false
            }
            CsrEvent::Error(e) if e.is_gone() => {
                gone = true;
                false
            }
            CsrEvent::Error(e) => {
                stream_error = Some(e);
                false
            }
        });
        let result = match tokio::time::timeout_at(deadline, watch).await {
            Err(_) => {
                let hint = if kind == KubeletCert::Serving {
                    format!(" (approve it with kubectl certificate approve {name})")
                } else {
                    String::new()
                };
                return Err(KubeletError::Timeout {
                    name,
                    timeout,
                    hint,
                });
            }
            Ok(r) => r,
        };
        if deleted {
            return Err(KubeletError::Deleted { name });
        }
        match result.err().or(stream_error) {
            Some(e) if e.is_gone() => gone = true,
            Some(e) if e.is_transient() => {
                let wait = retry::backoff(reconnects, retry::random_unit(), e.retry_after());
                reconnects += 1;
                tokio::time::sleep_until((tokio::time::Instant::now() + wait).min(deadline)).await;
            }
            Some(e) => return Err(e.into()),
            None => {}
        }
        if gone {
            // Our resourceVersion is too old: get the object now and watch from there.
            latest = with_retries(deadline, || client.get_csr(&name)).await?;
            continue;
        }
        match next {
            Some(o) => {
                reconnects = 0;
                latest = o;
            }
            None => {
                // The stream ended without news (a dropped watch): reconnect, backing off
                // so that a server that closes at once is not hammered.
                let wait = retry::backoff(reconnects, retry::random_unit(), None);
                reconnects += 1;
                tokio::time::sleep_until((tokio::time::Instant::now() + wait).min(deadline)).await;
            }
        }
    }
}
