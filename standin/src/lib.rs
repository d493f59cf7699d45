//! A stand-in for kube-apiserver's `certificates.k8s.io/v1` API, with kube-controller-manager's
//! CSR approver, signer and cleaner, for tests and demos. See README.md for what it models and
//! what it does not.
//!
//! ```no_run
//! let api = kube_standin_apiserver::StandIn::start(Default::default()).unwrap();
//! api.write_bootstrap_kubeconfig("/tmp/bootstrap-kubeconfig".as_ref()).unwrap();
//! // ... run the agent, then:
//! let csrs = api.list();
//! # drop(csrs);
//! ```

mod api;
mod auth;
mod ca;
mod carotation;
mod cluster;
mod control_plane;
mod controllers;
mod core_events;
mod csr_api;
mod objects;
mod proto;
mod rbac;
mod state;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

pub use api::{APISERVER_CLIENT, CLIENT_KUBELET, KUBELET_SERVING};
pub use ca::CertAndKey;
pub use csr_api::condition_summary;
pub use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
pub use rbac::Subject;
pub use state::{Faults, RequestRecord};

use state::{lock, EventKind, Shared, Store};

/// The bootstrap token used when [`Options::tokens`] is empty.
pub const DEFAULT_TOKEN: &str = "abcdef.0123456789abcdef";

/// How to start the stand-in.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Load `ca.crt` + `ca.key` from here instead of generating an ECDSA P-256 CA.
    pub ca_dir: Option<PathBuf>,
    /// Bootstrap tokens `<id>.<secret>` accepted (user `system:bootstrap:<id>`).
    pub tokens: Vec<String>,
    /// The signer's maximum duration (`--cluster-signing-duration`, default 1 year).
    pub signing_duration: Duration,
    /// csrcleaner: issued, denied and failed CSRs are deleted this long after the condition (1 h).
    pub gc_after: Duration,
    /// csrcleaner: pending CSRs are deleted this long after creation (24 h).
    pub pending_gc_after: Duration,
    /// Watch events kept for watches from an older resourceVersion; older ones get 410.
    pub watch_history: usize,
    /// Requests without credentials are `system:anonymous` (kubeadm's default); when false, 401.
    pub anonymous: bool,
    /// Refuse (403) CSRs a node creates for another node's name or for other signers, and
    /// bootstrap-token CSRs for signers other than kube-apiserver-client-kubelet. The real
    /// server accepts those and leaves them pending; set false for that.
    pub strict_create: bool,
    /// Print every request on stderr.
    pub log_to_stderr: bool,
    /// Fault knobs in effect from the start.
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ca_dir: None,
            tokens: vec![],
            signing_duration: Duration::from_secs(365 * 24 * 3600),
            gc_after: Duration::from_secs(3600),
            pending_gc_after: Duration::from_secs(24 * 3600),
            watch_history: 1000,
            anonymous: true,
            strict_create: true,
            log_to_stderr: false,
            faults: Faults::default(),
        }
    }
}

/// A running stand-in API server. Dropping it shuts it down.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    token: String,
}

#[derive(Debug)]
struct AcceptAnyClientCert {
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

/// Takes any client certificate at the TLS layer (checking only the handshake signature), so
/// that the authenticator can answer a bad one with 401, as kube-apiserver does.
impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl StandIn {
    /// Starts the server on its own tokio runtime (2 worker threads); usable from synchronous
    /// and asynchronous tests alike.
    pub fn start(opts: Options) -> Result<StandIn> {
        let ca = match &opts.ca_dir {
            Some(d) => ca::Ca::load(d)?,
            None => ca::Ca::generate()?,
        };
        let mut tokens = HashMap::new();
        let list = if opts.tokens.is_empty() {
            vec![DEFAULT_TOKEN.to_string()]
        } else {
            opts.tokens.clone()
        };
        for t in &list {
            let (id, secret) = t
                .split_once('.')
                .filter(|(i, s)| i.len() == 6 && s.len() == 16)
                .ok_or_else(|| {
                    anyhow!("bootstrap token {t:?} is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}")
                })?;
            tokens.insert(id.to_string(), secret.to_string());
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(AcceptAnyClientCert {
            algs: provider.signature_verification_algorithms,
        });
        // Resolved per handshake: a CA rotation re-issues it (control_plane).
        let serving = control_plane::ServingCert::new(&ca)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(serving.clone());
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let std_listener = std::net::TcpListener::bind(opts.listen)
            .with_context(|| format!("binding {}", opts.listen))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let (close_watches, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            faults: Mutex::new(opts.faults.clone()),
            opts,
            ca,
            tokens,
            store: Mutex::new(Store {
                objects: Default::default(),
                rv: 1000,
                history: Default::default(),
                compacted: 1000,
            }),
            events,
            log: Mutex::new(vec![]),
            kick: tokio::sync::Notify::new(),
            close_watches,
            approver_seen: Mutex::new(HashSet::new()),
            addr: Mutex::new(addr.to_string()),
            renew_revocations: Mutex::new(vec![]),
            objects: Mutex::new(Default::default()),
            bindings: Mutex::new(vec![]),
            client_cas: Mutex::new(vec![]),
            signer: Mutex::new(None),
            serving,
            apply_owners: Mutex::new(Default::default()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("standin-apiserver")
            .enable_all()
            .build()?;
        let s = shared.clone();
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("standin-apiserver: {e}");
                    return;
                }
            };
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let peer = Arc::new(
                        tls.get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.to_vec()),
                    );
                    let svc = hyper::service::service_fn(move |req| {
                        api::handle(s.clone(), peer.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        runtime.spawn(controllers::run(shared.clone()));
        let token = list[0].clone();
        Ok(StandIn {
            shared,
            addr,
            runtime: Some(runtime),
            token,
        })
    }

    /// The listening address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The cluster CA certificate (PEM): signs the serving certificate and issued certificates,
    /// and authenticates client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca.cert_pem
    }

    /// The cluster CA key (PEM), e.g. to write a node's /etc/kubernetes/pki/ca.key.
    pub fn ca_key_pem(&self) -> &str {
        &self.shared.ca.key_pem
    }

    /// The first configured bootstrap token (`abcdef.0123456789abcdef` by default).
    pub fn bootstrap_token(&self) -> &str {
        &self.token
    }

    /// Issues a client certificate from the cluster CA (fresh ECDSA P-256 key). Only the first
    /// group is kept as the subject O (an rcgen limitation).
    pub fn issue_client_cert(
        &self,
        user: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<CertAndKey> {
        self.shared.ca.issue(
            user,
            groups,
            &[],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    fn kubeconfig(&self, user_name: &str, user: &str) -> String {
        let ca = csr_api::b64(self.ca_pem().as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user_name}\n  name: {user_name}@kubernetes\ncurrent-context: {user_name}@kubernetes\npreferences: {{}}\nusers:\n- name: {user_name}\n  user:\n{user}",
            self.url()
        )
    }

    /// The kubeconfig kubeadm writes for TLS bootstrapping: server URL, embedded CA, token.
    pub fn bootstrap_kubeconfig(&self) -> String {
        self.kubeconfig(
            "tls-bootstrap-token-user",
            &format!("    token: {}\n", self.token),
        )
    }

    /// A kubeconfig with an embedded client certificate for `user` / `groups[0]`.
    pub fn client_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<String> {
        let ck = self.issue_client_cert(user, groups, Duration::from_secs(365 * 24 * 3600))?;
        Ok(self.kubeconfig(
            user,
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                csr_api::b64(ck.cert_pem.as_bytes()),
                csr_api::b64(ck.key_pem.as_bytes())
            ),
        ))
    }

    /// Writes [`Self::bootstrap_kubeconfig`] to `path` (mode 0600).
    pub fn write_bootstrap_kubeconfig(&self, path: &Path) -> Result<()> {
        write_private(path, &self.bootstrap_kubeconfig())
    }

    /// Writes an admin kubeconfig (client cert CN `kubernetes-admin`, O `system:masters`).
    pub fn write_admin_kubeconfig(&self, path: &Path) -> Result<()> {
        write_private(
            path,
            &self.client_kubeconfig("kubernetes-admin", &["system:masters"])?,
        )
    }

    /// Writes a kubeconfig for node `node` (CN `system:node:<node>`, O `system:nodes`).
    pub fn write_node_kubeconfig(&self, path: &Path, node: &str) -> Result<()> {
        write_private(
            path,
            &self.client_kubeconfig(&format!("system:node:{node}"), &["system:nodes"])?,
        )
    }

    fn modify(
        &self,
        name: &str,
        f: impl FnOnce(&mut CertificateSigningRequest) -> Result<()>,
    ) -> Result<CertificateSigningRequest> {
        let mut st = lock(&self.shared.store);
        let mut obj = st
            .objects
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("certificatesigningrequest {name:?} not found"))?;
        f(&mut obj)?;
        Ok(self.shared.commit(&mut st, EventKind::Modified, obj))
    }

    fn has(o: &CertificateSigningRequest, t: &str) -> bool {
        o.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == t))
    }

    /// Approves a CSR (reason `StandInApprove`), as `kubectl certificate approve` would; the
    /// signer then issues it.
    pub fn approve(&self, name: &str) -> Result<CertificateSigningRequest> {
        self.modify(name, |o| {
            if Self::has(o, "Denied") {
                bail!("{name} is already denied");
            }
            if !Self::has(o, "Approved") {
                csr_api::add_condition(
                    o,
                    "Approved",
                    "StandInApprove",
                    "approved through the stand-in's library API",
                );
            }
            Ok(())
        })
    }

    /// Denies a CSR with `reason` (the condition's reason; message says who did it).
    pub fn deny(&self, name: &str, reason: &str) -> Result<CertificateSigningRequest> {
        self.modify(name, |o| {
            if Self::has(o, "Approved") {
                bail!("{name} is already approved");
            }
            if !Self::has(o, "Denied") {
                csr_api::add_condition(
                    o,
                    "Denied",
                    reason,
                    "denied through the stand-in's library API",
                );
            }
            Ok(())
        })
    }

    /// Marks a CSR Failed with `reason`, as a signer does when it cannot sign.
    pub fn fail(&self, name: &str, reason: &str) -> Result<CertificateSigningRequest> {
        self.modify(name, |o| {
            if !Self::has(o, "Failed") {
                csr_api::add_condition(
                    o,
                    "Failed",
                    reason,
                    "failed through the stand-in's library API",
                );
            }
            Ok(())
        })
    }

    /// Deletes a CSR (a DELETED watch event follows).
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut st = lock(&self.shared.store);
        let obj = st
            .objects
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("{name:?} not found"))?;
        self.shared.commit(&mut st, EventKind::Deleted, obj);
        Ok(())
    }

    /// All CSRs, by name.
    pub fn list(&self) -> Vec<CertificateSigningRequest> {
        lock(&self.shared.store).objects.values().cloned().collect()
    }

    /// One CSR.
    pub fn get(&self, name: &str) -> Option<CertificateSigningRequest> {
        lock(&self.shared.store).objects.get(name).cloned()
    }

    /// The current resourceVersion (of the last change).
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv
    }

    /// Forgets the watch history: a watch from any older resourceVersion then gets 410.
    pub fn compact(&self) {
        self.shared.compact()
    }

    /// Polls (10 ms) until `pred` holds for the CSR list or `timeout` passes; returns the last list.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[CertificateSigningRequest]) -> bool,
    ) -> Result<Vec<CertificateSigningRequest>> {
        let end = Instant::now() + timeout;
        loop {
            let l = self.list();
            if pred(&l) {
                return Ok(l);
            }
            if Instant::now() > end {
                bail!(
                    "timed out after {timeout:?}; CSRs: {:?}",
                    l.iter()
                        .map(|o| (o.metadata.name.clone(), condition_summary(o)))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // ---- fault knobs ----

    /// A copy of the fault knobs in effect.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }
    /// Replaces all fault knobs at once.
    pub fn set_faults(&self, f: Faults) {
        *lock(&self.shared.faults) = f;
        self.shared.kick.notify_one();
    }
    /// Delay added to every CSR API request.
    pub fn set_latency(&self, d: Duration) {
        lock(&self.shared.faults).latency = d;
    }
    /// The next `n` CSR API requests fail with `code` (500 InternalError or 503 ServiceUnavailable).
    pub fn fail_next(&self, n: u32, code: u16) {
        let mut f = lock(&self.shared.faults);
        f.fail_next = n;
        f.fail_code = code;
    }
    /// The next `n` CSR API requests get 429 TooManyRequests with `Retry-After: retry_after_seconds`.
    pub fn throttle_next(&self, n: u32, retry_after_seconds: u32) {
        let mut f = lock(&self.shared.faults);
        f.throttle_next = n;
        f.retry_after_seconds = retry_after_seconds;
    }
    /// Watches started from now on end after `n` events (`Some(0)`: at once); `None`: normal.
    pub fn set_watch_event_limit(&self, n: Option<usize>) {
        lock(&self.shared.faults).watch_event_limit = n;
    }
    /// Ends every open watch stream now (clean end of the HTTP response).
    pub fn close_watches(&self) {
        self.shared.close_watches.send_modify(|g| *g += 1);
    }
    /// The approver denies the next `n` new CSRs (reason `StandInDenied`).
    pub fn deny_next(&self, n: u32) {
        lock(&self.shared.faults).deny_next = n;
    }
    /// The signer marks the next `n` approved CSRs Failed (reason `SignerValidationFailure`).
    pub fn fail_next_csr(&self, n: u32) {
        lock(&self.shared.faults).fail_csr_next = n;
        self.shared.kick.notify_one();
    }
    /// Turns the auto-approver off (`true`) or on.
    pub fn set_never_approve(&self, v: bool) {
        lock(&self.shared.faults).never_approve = v;
        self.shared.kick.notify_one();
    }
    /// Turns the signer off (`true`: approved CSRs stay without a certificate) or on.
    pub fn set_never_sign(&self, v: bool) {
        lock(&self.shared.faults).never_sign = v;
        self.shared.kick.notify_one();
    }
    /// The signer issues the next `n` certificates for a freshly generated key instead of the
    /// CSR's (the subject and chain are right; only the public key is wrong).
    pub fn sign_wrong_key_next(&self, n: u32) {
        lock(&self.shared.faults).wrong_key_next = n;
    }

    // ---- request log ----

    /// Every request so far, in order.
    /// Replace the RenewRevocation objects served under
    /// `/apis/certificates.microsoft.com/v1/namespaces/kube-system/renewrevocations`
    /// (the CRD the agent ships; list only: no watch, no create through the API).
    pub fn set_renew_revocations(&self, objects: Vec<serde_json::Value>) {
        *lock(&self.shared.renew_revocations) = objects;
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }
    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Stops serving (open connections are dropped). Also done on drop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Writes `contents` to `path` with mode 0600 (used by the binary for ca.key and kubeconfigs).
pub fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    write_private(path, contents)
}
