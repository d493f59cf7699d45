//! An HTTPS client for the three calls the agent makes to the API server: create a CSR,
//! watch it, and (after a `410 Gone`) get it again. Built on reqwest with a rustls config
//! of our own: the API server's certificate is always verified against the CA of the
//! kubeconfig; the client certificate is fixed when a client is built (build a new one
//! after a rotation), and TLS session resumption is off so a rotated certificate is
//! never replaced by a resumed session's old one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, WatchEvent};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pki::parse_material;

const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// How the agent authenticates.
pub enum Credentials {
    /// A bootstrap token (`abcdef.0123456789abcdef`).
    Token(String),
    /// The node's current client certificate (PEM: certificate, then key; may be one file).
    ClientCertificate { cert_pem: Vec<u8>, key_pem: Vec<u8> },
    /// Any other bearer token (a service account's, read from the kubeconfig or the pod).
    BearerToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(t) => {
                write!(f, "Token({}.<redacted>)", t.split('.').next().unwrap_or(""))
            }
            Credentials::ClientCertificate { .. } => write!(f, "ClientCertificate"),
            Credentials::BearerToken(_) => write!(f, "BearerToken(<redacted>)"),
        }
    }
}

/// Where the API server is and how to trust it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://host:port`
    pub server: String,
    pub ca_pem: Vec<u8>,
    /// Where the CA came from, for error messages (`/var/lib/kubelet/bootstrap-kubeconfig`).
    pub ca_source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{server}: 401 Unauthorized: the API server rejected {what}")]
    Unauthorized { server: String, what: String },
    #[error("{server}: 403 Forbidden: {message}")]
    Forbidden { server: String, message: String },
    #[error("{server}: TLS verification failed against the CA from {ca_source}: {detail}")]
    Tls {
        server: String,
        ca_source: String,
        detail: String,
    },
    #[error("{server}: cannot connect: {detail}")]
    Connect { server: String, detail: String },
    #[error("{server}: no answer within {after:?} (request timeout)")]
    Timeout { server: String, after: Duration },
    #[error("{server}: {code} {reason}: {message}")]
    Status {
        server: String,
        code: u16,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{server}: unexpected response: {detail}")]
    Decode { server: String, detail: String },
    #[error("configuration: {0}")]
    Setup(String),
}

impl ApiError {
    /// Worth another try with the same credentials (5xx, 429, connection trouble).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Connect { .. } | ApiError::Timeout { .. } => true,
            ApiError::Status { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    /// The server's Retry-After, for 429 (and 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// `410 Gone`: the resourceVersion is too old; get the object again.
    pub fn is_gone(&self) -> bool {
        matches!(self, ApiError::Status { code: 410, .. })
    }
}

/// One watch event on a CSR.
#[derive(Debug)]
pub enum CsrEvent {
    Changed(Box<CertificateSigningRequest>),
    Deleted,
    /// `410 Gone` (or another error status) inside the stream.
    Error(ApiError),
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    what: String,
    ca_source: String,
    requests: Arc<AtomicU64>,
    timeout: Duration,
}

/// Every request gets an answer within this (a server that accepts and never answers
/// must not stall the agent); `kubelet.requestTimeout` sets it for the kubelet's CSRs.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A watch is cut and resumed (from its resourceVersion) after this.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(300);

impl ApiClient {
    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    pub fn new(endpoint: &Endpoint, creds: &Credentials) -> Result<ApiClient, ApiError> {
        let setup = |e: String| ApiError::Setup(e);
        let mut roots = rustls::RootCertStore::empty();
        let ca = parse_material(&endpoint.ca_pem)
            .map_err(|e| setup(format!("CA from {}: {e}", endpoint.ca_source)))?;
        for der in ca.certificates {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| setup(format!("CA from {}: {e}", endpoint.ca_source)))?;
        }
        if roots.is_empty() {
            return Err(setup(format!(
                "no CA certificate in {}",
                endpoint.ca_source
            )));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .with_root_certificates(roots);
        let (mut tls, token, what) = match creds {
            Credentials::Token(t) => {
                let id = t.split('.').next().unwrap_or_default();
                (
                    builder.with_no_client_auth(),
                    Some(t.clone()),
                    format!("bootstrap token {id}.<secret>"),
                )
            }
            Credentials::BearerToken(t) => (
                builder.with_no_client_auth(),
                Some(t.clone()),
                "bearer token".to_string(),
            ),
            Credentials::ClientCertificate { cert_pem, key_pem } => {
                let certs = parse_material(cert_pem)
                    .map_err(|e| setup(format!("client certificate: {e}")))?;
                let key = parse_material(key_pem)
                    .map_err(|e| setup(format!("client key: {e}")))?
                    .private_keys
                    .into_iter()
                    .next()
                    .ok_or_else(|| setup("client key: no private key".into()))?;
                let chain: Vec<CertificateDer<'static>> = certs
                    .certificates
                    .into_iter()
                    .map(CertificateDer::from)
                    .collect();
                let subject = chain
                    .first()
                    .and_then(|c| crate::pki::CertInfo::parse(c).ok())
                    .map(|c| c.subject)
                    .unwrap_or_default();
                let tls = builder
                    .with_client_auth_cert(chain, PrivateKeyDer::clone_key(&key))
                    .map_err(|e| setup(format!("client certificate: {e}")))?;
                (tls, None, format!("client certificate {subject}"))
            }
        };
        tls.resumption = rustls::client::Resumption::disabled();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1)
            .user_agent(concat!("kube-cert-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(ApiClient {
            http,
            server: endpoint.server.trim_end_matches('/').to_string(),
            token,
            what,
            ca_source: endpoint.ca_source.clone(),
            requests: Arc::new(AtomicU64::new(0)),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Requests sent so far (the benchmark counts them per rotation).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn request(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut r = self
            .http
            .request(method, format!("{}{path_and_query}", self.server))
            .header("Accept", "application/json")
            .timeout(self.timeout);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    fn transport_error(&self, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            return ApiError::Timeout {
                server: self.server.clone(),
                after: self.timeout,
            };
        }
        let mut detail = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            detail = format!("{detail}: {s}");
            src = s.source();
        }
        let lower = detail.to_ascii_lowercase();
        if lower.contains("certificate")
            || lower.contains("unknownissuer")
            || lower.contains("invalid peer")
        {
            ApiError::Tls {
                server: self.server.clone(),
                ca_source: self.ca_source.clone(),
                detail,
            }
        } else {
            ApiError::Connect {
                server: self.server.clone(),
                detail,
            }
        }
    }

    async fn status_error(&self, resp: reqwest::Response) -> ApiError {
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        let status: Option<Status> = serde_json::from_str(&body).ok();
        let message = status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_else(|| body.chars().take(200).collect());
        let reason = status.and_then(|s| s.reason).unwrap_or_default();
        let server = self.server.clone();
        match code {
            401 => ApiError::Unauthorized {
                server,
                what: self.what.clone(),
            },
            403 => ApiError::Forbidden { server, message },
            _ => ApiError::Status {
                server,
                code,
                reason,
                message,
                retry_after,
            },
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
    ) -> Result<T, ApiError> {
        if !resp.status().is_success() {
            return Err(self.status_error(resp).await);
        }
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            server: self.server.clone(),
            detail: e.to_string(),
        })
    }

    pub async fn create_csr(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError> {
        let resp = self
            .request(reqwest::Method::POST, CSR_PATH)
            .json(csr)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    /// POST a JSON object to an API path (the node's Events).
    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let resp = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    /// PATCH an object with a JSON merge patch (RFC 7386).
    pub async fn merge_patch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        patch: &serde_json::Value,
    ) -> Result<T, ApiError> {
        let resp = self
            .request(reqwest::Method::PATCH, path)
            .header("Content-Type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    /// PATCH with a server-side apply body (JSON is YAML); `path` carries `fieldManager`.
    pub async fn apply_patch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        let resp = self
            .request(reqwest::Method::PATCH, path)
            .header("Content-Type", "application/apply-patch+yaml")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    /// GET any API path as JSON (the RenewRevocation list).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    pub async fn get_csr(&self, name: &str) -> Result<CertificateSigningRequest, ApiError> {
        let resp = self
            .request(reqwest::Method::GET, &format!("{CSR_PATH}/{name}"))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    /// Watch one CSR from `resource_version`; events go to `on_event` until it returns
    /// false or the server ends the stream. Returns Ok(()) when the stream ended.
    pub async fn watch_csr(
        &self,
        name: &str,
        resource_version: &str,
        mut on_event: impl FnMut(CsrEvent) -> bool,
    ) -> Result<(), ApiError> {
        let q = format!(
            "{CSR_PATH}?fieldSelector=metadata.name%3D{name}&watch=true&resourceVersion={resource_version}&allowWatchBookmarks=true"
        );
        self.watch::<CertificateSigningRequest>(&q, |event| {
            let ev = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => CsrEvent::Changed(Box::new(o)),
                WatchEvent::Deleted(_) => CsrEvent::Deleted,
                WatchEvent::Bookmark { .. } => return true,
                WatchEvent::ErrorStatus(s) => CsrEvent::Error(self.watch_status_error(s)),
                WatchEvent::ErrorOther(o) => CsrEvent::Error(ApiError::Decode {
                    server: self.server.clone(),
                    detail: format!("watch error {o:?}"),
                }),
            };
            on_event(ev)
        })
        .await
    }

    /// The `ERROR` event of a watch (410 Expired, ...) as an error.
    pub fn watch_status_error(&self, s: Status) -> ApiError {
        ApiError::Status {
            server: self.server.clone(),
            code: s.code.unwrap_or(500) as u16,
            reason: s.reason.unwrap_or_default(),
            message: s.message.unwrap_or_default(),
            retry_after: None,
        }
    }

    /// A watch (`path_and_query` has `watch=true`): each event goes to `on_event` until it
    /// returns false or the server ends the stream (Ok(()); a dropped stream too).
    pub async fn watch<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        mut on_event: impl FnMut(WatchEvent<T>) -> bool,
    ) -> Result<(), ApiError> {
        let mut resp = self
            .request(reqwest::Method::GET, path_and_query)
            .timeout(WATCH_TIMEOUT.max(self.timeout))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp).await);
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(()),
                // A dropped stream is reconnected by the caller, like an ended one.
                Err(_) => return Ok(()),
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let event: WatchEvent<T> =
                    serde_json::from_slice(&line).map_err(|e| ApiError::Decode {
                        server: self.server.clone(),
                        detail: format!("watch event: {e}"),
                    })?;
                if !on_event(event) {
                    return Ok(());
                }
            }
        }
    }

    /// GET `path` as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }

    /// POST or PUT `body` to `path`; the answer as `T`.
    pub async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ApiError> {
        let resp = self
            .request(method, path)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        self.json(resp).await
    }
}
