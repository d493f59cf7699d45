//! HTTP: the response body, routing and discovery. Authentication is in auth.rs, the CSR
//! handlers in csr_api.rs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::state::{lock, ApiError, RequestRecord, Shared, GROUP, RESOURCE};

use crate::auth::{authenticate, authorize, User};
use crate::csr_api::{create, delete, get, list, table, update_sub, watch};

pub const CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// A response body: complete, or a stream of chunks (watch).
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
}

pub(crate) fn text(code: u16, s: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::Full(Some(Bytes::from(s.to_string()))))
        .expect("response")
}

pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn handle(
    shared: Arc<Shared>,
    peer_cert: Arc<Option<Vec<u8>>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query_s = req.uri().query().unwrap_or("").to_string();
    let query = parse_query(&query_s);
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let user = authenticate(&shared, (*peer_cert).as_deref(), &req);
    let resp = match &user {
        Err(e) => error_response(e),
        Ok(u) => route(&shared, u, req, &path, &query, is_watch).await,
    };
    let rec = RequestRecord {
        method: method.to_string(),
        path,
        query: query_s,
        user: user.map(|u| u.name).unwrap_or_default(),
        status: resp.status().as_u16(),
        watch: is_watch,
    };
    if shared.opts.log_to_stderr {
        eprintln!(
            "{} {}{}{} user={:?} -> {}",
            rec.method,
            rec.path,
            if rec.query.is_empty() { "" } else { "?" },
            rec.query,
            rec.user,
            rec.status
        );
    }
    lock(&shared.log).push(rec);
    Ok(resp)
}

const API_PREFIX: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const RENEW_REVOCATIONS: &str =
    "/apis/certificates.microsoft.com/v1/namespaces/kube-system/renewrevocations";

/// LIST of the RenewRevocation custom resource: nodes and admins may read it (the agent's
/// CRD file ships the ClusterRole that grants this to system:nodes).
fn renew_revocations(shared: &Arc<Shared>, user: &User, method: &Method) -> Response<Body> {
    if method != Method::GET {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "the stand-in serves renewrevocations read-only",
        ));
    }
    if !(user.in_group("system:masters") || user.in_group("system:nodes")) {
        return error_response(&ApiError::new(
            403,
            "Forbidden",
            format!(
                "renewrevocations.certificates.microsoft.com is forbidden: User \"{}\" cannot list resource \"renewrevocations\" in API group \"certificates.microsoft.com\" in the namespace \"kube-system\"",
                user.name
            ),
        ));
    }
    let items = lock(&shared.renew_revocations).clone();
    let rv = lock(&shared.store).rv;
    json_response(
        200,
        &serde_json::json!({
            "apiVersion": "certificates.microsoft.com/v1",
            "kind": "RenewRevocationList",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    )
}

async fn route(
    shared: &Arc<Shared>,
    user: &User,
    req: Request<hyper::body::Incoming>,
    path: &str,
    query: &HashMap<String, String>,
    is_watch: bool,
) -> Response<Body> {
    let method = req.method().clone();
    match path {
        "/healthz" | "/livez" | "/readyz" => return text(200, "ok"),
        "/version" => return json_response(200, &version()),
        _ => {}
    }
    let discovery = discovery(shared, path);
    if let Some(d) = discovery {
        if user.name == "system:anonymous" {
            return error_response(&ApiError::new(
                403,
                "Forbidden",
                format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
            ));
        }
        return json_response(200, &d);
    }
    if path == RENEW_REVOCATIONS {
        return renew_revocations(shared, user, &method);
    }
    let req = if path == "/api/v1/events" || path.starts_with("/api/v1/namespaces/") {
        let as_table = wants_table(&req);
        match crate::core_events::route(shared, user, req, path, query, as_table).await {
            Ok(r) => return r,
            Err(req) => req,
        }
    } else {
        req
    };
    if let Some(t) = crate::objects::parse_path(path) {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = if method == Method::POST || method == Method::PUT || method == Method::PATCH {
            match read_body(req.into_body()).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            }
        } else {
            Vec::new()
        };
        if method == Method::PATCH && t.kind.resource == crate::carotation::RESOURCE {
            let patched = crate::objects::authorize(shared, user, "patch", &t)
                .and_then(|()| crate::carotation::patch(shared, &t, &content_type, query, &body));
            return match patched {
                Ok(v) => json_response(200, &v),
                Err(e) => error_response(&e),
            };
        }
        return match crate::objects::handle(shared, user, &method, &t, query, &body) {
            Ok((code, v)) => json_response(code, &v),
            Err(e) => error_response(&e),
        };
    }
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() > 2 || (parts.len() == 2 && parts[1] != "approval" && parts[1] != "status") {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let name = parts.first().copied();
    let sub = parts.get(1).copied();

    // Fault injection for the CSR API, after authentication (the request log names the user).
    let (latency, injected) = {
        let mut f = lock(&shared.faults);
        let injected = if f.throttle_next > 0 {
            f.throttle_next -= 1;
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            e.retry_after = Some(f.retry_after_seconds);
            Some(e)
        } else if f.fail_next > 0 {
            f.fail_next -= 1;
            Some(if f.fail_code == 503 {
                ApiError::new(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request (injected fault)",
                )
            } else {
                ApiError::new(
                    500,
                    "InternalError",
                    "Internal error occurred: injected fault",
                )
            })
        } else {
            None
        };
        (f.latency, injected)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(e) = injected {
        return error_response(&e);
    }

    let result = match (&method, name, sub) {
        (&Method::GET, None, None) => {
            let verb = if is_watch { "watch" } else { "list" };
            match authorize(shared, user, verb, None, None, None) {
                Err(e) => Err(e),
                Ok(()) if is_watch => return watch(shared, query, wants_table(&req)).unwrap_or_else(|e| error_response(&e)),
                Ok(()) => list(shared, query, wants_table(&req)),
            }
        }
        (&Method::POST, None, None) => {
            let body = read_body(req.into_body()).await;
            match body {
                Err(e) => Err(e),
                Ok(b) => create(shared, user, &b),
            }
        }
        (&Method::GET, Some(n), s) => authorize(shared, user, "get", s, Some(n), None)
            .and_then(|_| get(shared, n))
            .map(|o| if wants_table(&req) { table(shared, &[o]) } else { json_response(200, &o) }),
        (&Method::PUT, Some(n), Some(s)) => {
            match authorize(shared, user, "update", Some(s), Some(n), None)
                .and_then(|_| approval_admission(shared, user, n, s))
            {
                Err(e) => Err(e),
                Ok(()) => match read_body(req.into_body()).await {
                    Err(e) => Err(e),
                    Ok(b) => update_sub(shared, n, s, &b),
                },
            }
        }
        (&Method::DELETE, Some(n), None) => authorize(shared, user, "delete", None, Some(n), None)
            .and_then(|_| delete(shared, n)),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method} is not modelled by the stand-in)"),
        )),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// CertificateApproval admission: approval updates also need `approve` on the CSR's signer.
fn approval_admission(shared: &Shared, user: &User, name: &str, sub: &str) -> Result<(), ApiError> {
    if sub != "approval" {
        return Ok(());
    }
    let signer = get(shared, name)?.spec.signer_name;
    if crate::rbac::may_approve(shared, user, &signer) {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "Forbidden",
        format!("{RESOURCE}.{GROUP} \"{name}\" is forbidden: user not permitted to approve requests with signerName \"{signer}\""),
    )
    .with_name(name))
}

fn wants_table(req: &Request<hyper::body::Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|a| a.contains("as=Table") && a.contains("g=meta.k8s.io"))
        .unwrap_or(false)
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-standin",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn discovery(shared: &Shared, path: &str) -> Option<Value> {
    let gv = json!({"groupVersion": "certificates.k8s.io/v1", "version": "v1"});
    let coordination = json!({"groupVersion": "coordination.k8s.io/v1", "version": "v1"});
    if let Some(d) = crate::carotation::discovery(path) {
        return Some(d);
    }
    match path {
        "/api" => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": *lock(&shared.addr)}]
        })),
        "/api/v1" => Some(
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": crate::objects::discovery_resources("/api/v1")}),
        ),
        "/apis/coordination.k8s.io" => Some(json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": "coordination.k8s.io", "versions": [coordination], "preferredVersion": coordination
        })),
        "/apis/coordination.k8s.io/v1" => Some(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "coordination.k8s.io/v1",
            "resources": crate::objects::discovery_resources("/apis/coordination.k8s.io/v1")
        })),
        "/apis" => Some(json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": GROUP, "versions": [gv], "preferredVersion": gv},
                       {"name": "coordination.k8s.io", "versions": [coordination], "preferredVersion": coordination},
                       crate::carotation::api_group()]
        })),
        "/apis/certificates.k8s.io" => Some(json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv
        })),
        "/apis/certificates.k8s.io/v1" => Some(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "certificates.k8s.io/v1",
            "resources": [
                {"name": RESOURCE, "singularName": "certificatesigningrequest", "namespaced": false,
                 "kind": "CertificateSigningRequest",
                 "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                 "shortNames": ["csr"], "storageVersionHash": "95fRKMXA+00="},
                {"name": "certificatesigningrequests/approval", "singularName": "", "namespaced": false,
                 "kind": "CertificateSigningRequest", "verbs": ["get", "patch", "update"]},
                {"name": "certificatesigningrequests/status", "singularName": "", "namespaced": false,
                 "kind": "CertificateSigningRequest", "verbs": ["get", "patch", "update"]}
            ]
        })),
        // Just enough OpenAPI v3 for kubectl's query-parameter verifier to learn that the server
        // does field validation (so `kubectl create -f` needs no client-side schema).
        "/openapi/v3" => Some(json!({"paths": {
            "apis/certificates.k8s.io/v1": {
                "serverRelativeURL": "/openapi/v3/apis/certificates.k8s.io/v1?hash=5354414e44494e"},
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=5354414e44494f"},
            "apis/kube-cert-agent.io/v1alpha1": {
                "serverRelativeURL": "/openapi/v3/apis/kube-cert-agent.io/v1alpha1?hash=5354414e444950"}}})),
        "/openapi/v3/api/v1" => Some(crate::core_events::openapi()),
        "/openapi/v3/apis/certificates.k8s.io/v1" => {
            let gvk = json!({"group": GROUP, "version": "v1", "kind": "CertificateSigningRequest"});
            let op = |id: &str, action: &str| openapi_op(&gvk, id, action);
            Some(json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes (stand-in)", "version": "v1.32.0"},
                "paths": {
                    "/apis/certificates.k8s.io/v1/certificatesigningrequests": {
                        "post": op("createCertificatesV1CertificateSigningRequest", "post")
                    },
                    "/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}": {
                        "put": op("replaceCertificatesV1CertificateSigningRequest", "put"),
                        "patch": op("patchCertificatesV1CertificateSigningRequest", "patch")
                    }
                },
                "components": {"schemas": {}}
            }))
        }
        _ => None,
    }
}

pub(crate) fn json_response(code: u16, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(v).expect("serializable");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Full(Some(Bytes::from(body))))
        .expect("response")
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status());
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, s.to_string().parse().expect("header"));
    }
    r
}

pub(crate) async fn read_body(mut body: hyper::body::Incoming) -> Result<Vec<u8>, ApiError> {
    use http_body::Body as _;
    let mut out = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => return Err(ApiError::bad_request(format!("reading body: {e}"))),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                    if out.len() > 3 * 1024 * 1024 {
                        return Err(ApiError::new(
                            413,
                            "RequestEntityTooLarge",
                            "request is too large",
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s}s")
    } else if s < 600 {
        if s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{}m{}s", s / 60, s % 60)
        }
    } else if s < 3 * 3600 {
        format!("{}m", s / 60)
    } else if s < 8 * 3600 {
        let m = (s / 60) % 60;
        if m == 0 {
            format!("{}h", s / 3600)
        } else {
            format!("{}h{}m", s / 3600, m)
        }
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

pub(crate) fn random_suffix() -> String {
    // apiserver's generateName alphabet (no vowels, no confusable digits), 5 characters.
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    crate::ca::random_bytes(&mut b);
    b.iter()
        .map(|x| ALPHA[*x as usize % ALPHA.len()] as char)
        .collect()
}

pub(crate) fn uuid4() -> String {
    let mut b = [0u8; 16];
    crate::ca::random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One `fieldSelector` term: the field, whether it is negated (`!=`), the value.
pub(crate) type FieldTerm = (String, bool, String);

/// Parse `fieldSelector` (`=`, `==`, `!=`, comma-separated) as the API server does;
/// `known` refuses a field the resource does not support, with the API server's words.
pub(crate) fn field_terms(
    query: &HashMap<String, String>,
    known: impl Fn(&str) -> Result<(), ApiError>,
) -> Result<Vec<FieldTerm>, ApiError> {
    let mut terms = Vec::new();
    if let Some(fs) = query.get("fieldSelector") {
        for term in fs.split(',').filter(|t| !t.is_empty()) {
            let (k, neg, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{fs}'; can't understand '{term}'"
                )));
            };
            known(k)?;
            terms.push((k.to_string(), neg, v.to_string()));
        }
    }
    Ok(terms)
}

/// One OpenAPI v3 operation as kube-apiserver publishes it: enough for kubectl to learn
/// that the server validates fields (`fieldValidation`) for `gvk`.
pub(crate) fn openapi_op(gvk: &Value, id: &str, action: &str) -> Value {
    json!({
        "operationId": id, "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}, "uniqueItems": true},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}, "uniqueItems": true},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}, "uniqueItems": true}
        ],
        "responses": {"200": {"description": "OK"}}
    })
}
