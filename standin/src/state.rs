//! Object storage (an in-memory "etcd" with a global resourceVersion), the watch history,
//! fault knobs and the request log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails, Time};
use tokio::sync::{broadcast, watch, Notify};

use crate::ca::Ca;
use crate::Options;

pub const GROUP: &str = "certificates.k8s.io";
pub const RESOURCE: &str = "certificatesigningrequests";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventKind,
    pub object: CertificateSigningRequest,
}

pub struct Store {
    pub objects: BTreeMap<String, CertificateSigningRequest>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// A watch from a resourceVersion below this is answered with 410 Expired.
    pub compacted: u64,
}

/// Fault knobs. Counters count down as they fire.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub latency: Duration,
    pub fail_next: u32,
    pub fail_code: u16,
    pub throttle_next: u32,
    pub retry_after_seconds: u32,
    pub watch_event_limit: Option<usize>,
    pub deny_next: u32,
    pub fail_csr_next: u32,
    pub never_approve: bool,
    pub never_sign: bool,
    pub wrong_key_next: u32,
}

/// One API request as the stand-in saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Authenticated user name; empty when authentication failed (401).
    pub user: String,
    pub status: u16,
    /// `true` for `watch=true` requests.
    pub watch: bool,
}

pub struct Shared {
    pub opts: Options,
    pub ca: Ca,
    pub tokens: HashMap<String, String>,
    pub store: Mutex<Store>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub faults: Mutex<Faults>,
    pub log: Mutex<Vec<RequestRecord>>,
    pub kick: Notify,
    pub close_watches: watch::Sender<u64>,
    pub approver_seen: Mutex<HashSet<String>>,
    pub addr: Mutex<String>,
    /// RenewRevocation objects in kube-system (certificates.microsoft.com/v1), as JSON.
    pub renew_revocations: Mutex<Vec<serde_json::Value>>,
    /// Nodes, Leases and Events (crate::objects).
    pub objects: Mutex<crate::objects::Objects>,
    /// ClusterRoles bound to users or groups (crate::rbac).
    pub bindings: Mutex<crate::rbac::Bindings>,
    /// kube-apiserver's client CA bundle (DER); empty: the cluster CA (crate::control_plane).
    pub client_cas: Mutex<Vec<Vec<u8>>>,
    /// kube-controller-manager's signing CA when switched from the cluster CA.
    pub signer: Mutex<Option<Arc<Ca>>>,
    /// The serving certificate of new TLS handshakes.
    pub serving: Arc<crate::control_plane::ServingCert>,
    /// Server-side apply ownership of CARotation status entries (crate::carotation).
    pub apply_owners: Mutex<crate::carotation::Owners>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_time() -> Time {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time in range"))
}

pub fn age_of(t: &Time) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    Duration::from_secs((now - t.0.as_second()).max(0) as u64)
}

/// An API error, rendered as a `metav1.Status`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub name: Option<String>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            name: None,
            retry_after: None,
        }
    }
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    pub fn not_found(name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{RESOURCE}.{GROUP} \"{name}\" not found"),
        )
        .with_name(name)
    }
    pub fn already_exists(name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{RESOURCE}.{GROUP} \"{name}\" already exists"),
        )
        .with_name(name)
    }
    pub fn conflict(name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {RESOURCE}.{GROUP} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_name(name)
    }
    pub fn invalid(name: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("CertificateSigningRequest.{GROUP} \"{name}\" is invalid: {detail}"),
        )
        .with_name(name)
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }
    pub fn status(&self) -> Status {
        let details = if self.name.is_some() || self.retry_after.is_some() {
            Some(StatusDetails {
                name: self.name.clone(),
                group: self.name.as_ref().map(|_| GROUP.to_string()),
                kind: self.name.as_ref().map(|_| RESOURCE.to_string()),
                retry_after_seconds: self.retry_after.map(|s| s as i32),
                ..Default::default()
            })
        } else {
            None
        };
        Status {
            code: Some(self.code as i32),
            details,
            message: Some(self.message.clone()),
            reason: if self.reason.is_empty() {
                None
            } else {
                Some(self.reason.to_string())
            },
            status: Some("Failure".to_string()),
            ..Default::default()
        }
    }
}

impl Shared {
    /// Stores a change: bumps the resourceVersion, records and broadcasts the event.
    /// Must be called with the store locked (pass the guard).
    pub fn commit(
        &self,
        st: &mut Store,
        kind: EventKind,
        mut obj: CertificateSigningRequest,
    ) -> CertificateSigningRequest {
        st.rv += 1;
        obj.metadata.resource_version = Some(st.rv.to_string());
        let name = obj.metadata.name.clone().unwrap_or_default();
        match kind {
            EventKind::Deleted => {
                st.objects.remove(&name);
            }
            _ => {
                st.objects.insert(name, obj.clone());
            }
        }
        let ev = Arc::new(Event {
            rv: st.rv,
            kind,
            object: obj.clone(),
        });
        st.history.push_back(ev.clone());
        while st.history.len() > self.opts.watch_history {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.rv;
            }
        }
        let _ = self.events.send(ev);
        self.kick.notify_one();
        obj
    }

    /// Drops the whole watch history: a watch from any resourceVersion below the current
    /// one then gets 410 Expired (as after an etcd compaction).
    pub fn compact(&self) {
        let mut st = lock(&self.store);
        st.history.clear();
        st.compacted = st.rv;
    }
}
