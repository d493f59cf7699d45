//! The CSR the agent waits on, kept across restarts: its name, what it asked for and the
//! private key its request carries (one JSON file per signer in the state directory,
//! 0600, written atomically by the store). A restart resumes watching that CSR instead of
//! creating a second one: at most one outstanding CSR per signer per node.
//!
//! The file goes when the request has ended: installed, denied, failed, rejected, or gone
//! from the server. A CSR nobody approved within `csrTimeout` stays: the next attempt
//! watches it again rather than adding another object for someone to approve.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::csr_wait::with_retries;
use super::{KubeletError, Node, Progress};
use crate::kube::client::{ApiClient, ApiError};
use crate::paths::{NodeRoot, ReadError};
use crate::pki::csr::KubeletCert;
use crate::pki::{parse_material, CertInfo};
use crate::store::{FileSpec, Store};

/// The agent's state directory (beside `state.json`).
pub const STATE_DIR: &str = "/var/lib/kube-cert-agent";

/// What is saved of a pending CSR.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    /// The CSR object's name.
    pub csr: String,
    pub signer: String,
    /// RFC 3339: when the server created it.
    pub created: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// The request's private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Never the key: this is what a `{:?}` shows.
impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("csr", &self.csr)
            .field("signer", &self.signer)
            .field("created", &self.created)
            .field("dns_names", &self.dns_names)
            .field("ip_addresses", &self.ip_addresses)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// `/var/lib/kube-cert-agent/pending-csr-kubelet-client.json` (node path).
pub fn path(kind: KubeletCert) -> PathBuf {
    PathBuf::from(STATE_DIR).join(format!("pending-csr-{}.json", kind.name()))
}

/// The pending CSR saved for `kind`, if any.
pub fn load(root: &NodeRoot, kind: KubeletCert) -> Result<Option<Saved>, String> {
    let p = path(kind);
    match root.read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display())),
        Err(ReadError::NotFound) => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

pub fn save(store: &Store, kind: KubeletCert, s: &Saved) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?;
    json.push(b'\n');
    store
        .write_file(&path(kind), &json, FileSpec::KEY)
        .map_err(|e| e.to_string())
}

/// The request has ended: the saved CSR and its key go.
pub fn forget(store: &Store, kind: KubeletCert) {
    if let Err(e) = store.remove_file(&path(kind)) {
        tracing::warn!("cannot remove the saved pending CSR: {e}");
    }
}

/// Whether `e` ends the CSR's request for good (its saved copy is of no more use): a
/// decision (denied, failed), an object that is gone, an issued certificate we refuse.
/// A timeout or an API error does not: the next attempt watches the same CSR again.
pub fn ends_request(e: &KubeletError) -> bool {
    matches!(
        e,
        KubeletError::Denied { .. }
            | KubeletError::Failed { .. }
            | KubeletError::Deleted { .. }
            | KubeletError::Rejected { .. }
    )
}

/// One CSR to wait on: created now, or saved by an earlier run and found again.
pub struct Request {
    pub key: rcgen::KeyPair,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub object: CertificateSigningRequest,
    /// When the server created the CSR.
    pub created: OffsetDateTime,
}

impl Request {
    pub fn name(&self) -> String {
        self.object.metadata.name.clone().unwrap_or_default()
    }

    /// Save it, so that a restart resumes it. Not fatal: this run still waits on it.
    pub fn save(&self, store: &Store, kind: KubeletCert) {
        let s = Saved {
            csr: self.name(),
            signer: kind.signer().to_string(),
            created: crate::pki::rfc3339(self.created),
            dns_names: self.dns.clone(),
            ip_addresses: self.ips.clone(),
            key_pem: self.key.serialize_pem(),
        };
        if let Err(e) = save(store, kind, &s) {
            tracing::warn!(
                "CSR {}: cannot save it for a restart ({e}); a restart during the wait creates another",
                s.csr
            );
        }
    }
}

/// When the server created `o` (now, if it does not say).
pub fn created_at(o: &CertificateSigningRequest) -> OffsetDateTime {
    o.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.0.as_second()).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// The CSR an earlier run saved for `kind`, if the server still has it and it can still
/// end in a certificate for this node. Anything else drops the saved copy, says why once,
/// and the caller creates a new CSR. A transient API error is returned as it is: the
/// saved copy stays for the next attempt.
pub async fn resume(
    node: &Node<'_>,
    kind: KubeletCert,
    client: &ApiClient,
    deadline: tokio::time::Instant,
    progress: Progress<'_>,
) -> Result<Option<Request>, KubeletError> {
    let saved = match load(node.root, kind) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => {
            progress(&format!(
                "{e}: not a pending CSR this agent can resume; requesting a new one"
            ));
            forget(node.store, kind);
            return Ok(None);
        }
    };
    let name = saved.csr.clone();
    let drop = |why: &str| {
        progress(&format!(
            "CSR {name} from before the restart: {why}; requesting a new one"
        ));
        forget(node.store, kind);
        Ok(None)
    };
    if saved.signer != kind.signer() {
        return drop("saved for another signer");
    }
    let Ok(key) = rcgen::KeyPair::from_pem(&saved.key_pem) else {
        return drop("its saved key does not parse");
    };
    let configured = &node.spec.serving.addresses;
    if kind == KubeletCert::Serving
        && !configured.is_empty()
        && node.serving_addresses() != (saved.dns_names.clone(), saved.ip_addresses.clone())
    {
        return drop("it asks for other addresses than kubelet.serving.addresses now lists");
    }
    let object = match with_retries(deadline, || client.get_csr(&name)).await {
        Ok(o) => o,
        Err(ApiError::Status { code: 404, .. }) => {
            return drop("gone from the API server (deleted, or removed by the garbage collector)")
        }
        Err(e) => return Err(e.into()),
    };
    if object.spec.signer_name != kind.signer() {
        return drop("the object of that name is for another signer");
    }
    // Issued, but not installed before the restart, and expired since: useless.
    if issued_not_after(&object).is_some_and(|na| na <= OffsetDateTime::now_utc()) {
        return drop("its issued certificate has expired since");
    }
    progress(&format!(
        "resuming CSR {name} (signer {}, created {}) from before the restart instead of creating another",
        kind.signer(),
        saved.created
    ));
    Ok(Some(Request {
        key,
        dns: saved.dns_names,
        ips: saved.ip_addresses,
        created: created_at(&object),
        object,
    }))
}

fn issued_not_after(o: &CertificateSigningRequest) -> Option<OffsetDateTime> {
    let pem = o.status.as_ref()?.certificate.as_ref()?;
    let m = parse_material(&pem.0).ok()?;
    CertInfo::parse(m.certificates.first()?)
        .ok()
        .map(|c| c.not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_never_in_debug_output() {
        let s = Saved {
            csr: "csr-1".into(),
            signer: KubeletCert::Client.signer().into(),
            created: "2026-12-01T00:00:00Z".into(),
            dns_names: vec![],
            ip_addresses: vec![],
            key_pem: "-----BEGIN PRIVATE KEY-----\nsecret\n".into(),
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("csr-1"), "{shown}");
        assert!(
            !shown.contains("secret") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }

    #[test]
    fn only_a_decided_or_vanished_request_is_forgotten() {
        let name = || "csr-1".to_string();
        assert!(ends_request(&KubeletError::Denied {
            name: name(),
            reason: "r".into(),
            message: "m".into()
        }));
        assert!(ends_request(&KubeletError::Deleted { name: name() }));
        assert!(!ends_request(&KubeletError::Timeout {
            name: name(),
            timeout: std::time::Duration::from_secs(1),
            hint: String::new()
        }));
        assert!(!ends_request(&KubeletError::Install("disk full".into())));
    }
}
