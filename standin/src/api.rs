//! HTTP: authentication, authorization, routing and the certificates.k8s.io/v1 handlers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body::Frame;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::ca::{csr_pem_to_der, parse_csr};
use crate::state::{
    age_of, lock, now_time, ApiError, EventKind, RequestRecord, Shared, GROUP, RESOURCE,
};

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

/// The authenticated requester.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
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

fn text(code: u16, s: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::Full(Some(Bytes::from(s.to_string()))))
        .expect("response")
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
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

const BOOTSTRAP_TOKEN_USER_PREFIX: &str = "system:bootstrap:";

fn is_bootstrap_token_shape(t: &str) -> Option<(&str, &str)> {
    let (id, secret) = t.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Union authenticator, as kube-apiserver: client certificate, then bearer token; a request
/// with no credentials is `system:anonymous` when anonymous auth is on; any presented but
/// invalid credential (with nothing valid) is 401.
fn authenticate(
    shared: &Shared,
    peer_cert: Option<&[u8]>,
    req: &Request<hyper::body::Incoming>,
) -> Result<User, ApiError> {
    let unauthorized = || ApiError::new(401, "Unauthorized", "Unauthorized");
    let mut presented = false;
    if let Some(der) = peer_cert {
        presented = true;
        if let Ok((cn, mut groups)) = shared.ca.authenticate_client_cert(der) {
            groups.push("system:authenticated".into());
            return Ok(User { name: cn, groups });
        }
    }
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        presented = true;
        let h = h.to_str().unwrap_or("");
        if let Some(token) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
            if let Some((id, secret)) = is_bootstrap_token_shape(token.trim()) {
                if shared.tokens.get(id).map(String::as_str) == Some(secret) {
                    return Ok(User {
                        name: format!("{BOOTSTRAP_TOKEN_USER_PREFIX}{id}"),
                        groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
                    });
                }
            }
        }
    }
    if presented || !shared.opts.anonymous {
        return Err(unauthorized());
    }
    Ok(User {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    })
}

fn forbidden(user: &User, verb: &str, res: &str, name: Option<&str>, why: &str) -> ApiError {
    let what = match name {
        Some(n) => format!("{RESOURCE}.{GROUP} \"{n}\" is forbidden"),
        None => format!("{RESOURCE}.{GROUP} is forbidden"),
    };
    let mut msg = format!(
        "{what}: User \"{}\" cannot {verb} resource \"{res}\" in API group \"{GROUP}\" at the cluster scope",
        user.name
    );
    if !why.is_empty() {
        msg.push_str(": ");
        msg.push_str(why);
    }
    let mut e = ApiError::new(403, "Forbidden", msg);
    e.name = name.map(str::to_string);
    e
}

/// RBAC as kubeadm sets it up plus the Node authorizer, for this one resource.
fn authorize(
    shared: &Shared,
    user: &User,
    verb: &str,
    sub: Option<&str>,
    name: Option<&str>,
    create: Option<&CertificateSigningRequest>,
) -> Result<(), ApiError> {
    let res = match sub {
        Some(s) => format!("{RESOURCE}/{s}"),
        None => RESOURCE.to_string(),
    };
    if user.in_group("system:masters") {
        return Ok(());
    }
    let attrs = crate::rbac::Attrs {
        verb,
        group: GROUP,
        resource: RESOURCE,
        subresource: sub,
        name,
    };
    if crate::rbac::allows(shared, user, &attrs) {
        return Ok(());
    }
    let is_bootstrapper = user.in_group("system:bootstrappers");
    let node_name = user
        .name
        .strip_prefix("system:node:")
        .filter(|_| user.in_group("system:nodes"));
    if !(is_bootstrapper || node_name.is_some()) || sub.is_some() {
        return Err(forbidden(user, verb, &res, name, ""));
    }
    match verb {
        "get" | "list" | "watch" => Ok(()),
        "create" => {
            let Some(csr) = create else { return Ok(()) };
            if !shared.opts.strict_create {
                return Ok(());
            }
            let signer = csr.spec.signer_name.as_str();
            let cn = csr_common_name(csr).unwrap_or_default();
            if let Some(node) = node_name {
                if signer != CLIENT_KUBELET && signer != KUBELET_SERVING {
                    return Err(forbidden(
                        user,
                        verb,
                        &res,
                        name,
                        &format!(
                            "nodes may only request signers {CLIENT_KUBELET} and {KUBELET_SERVING}"
                        ),
                    ));
                }
                if cn != format!("system:node:{node}") {
                    return Err(forbidden(user, verb, &res, name, &format!("node \"{node}\" may only request certificates for itself, not for \"{cn}\"")));
                }
                Ok(())
            } else if signer != CLIENT_KUBELET {
                Err(forbidden(
                    user,
                    verb,
                    &res,
                    name,
                    &format!("bootstrappers may only request signer {CLIENT_KUBELET}"),
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(forbidden(user, verb, &res, name, "")),
    }
}

fn csr_common_name(csr: &CertificateSigningRequest) -> Option<String> {
    let der = csr_pem_to_der(&csr.spec.request.0).ok()?;
    parse_csr(&der).ok().map(|p| p.common_name)
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
        let body = if method == Method::POST || method == Method::PUT {
            match read_body(req.into_body()).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            }
        } else {
            Vec::new()
        };
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
                       {"name": "coordination.k8s.io", "versions": [coordination], "preferredVersion": coordination}]
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
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=5354414e44494f"}}})),
        "/openapi/v3/api/v1" => Some(crate::core_events::openapi()),
        "/openapi/v3/apis/certificates.k8s.io/v1" => {
            let gvk = json!({"group": GROUP, "version": "v1", "kind": "CertificateSigningRequest"});
            let params = json!([
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}, "uniqueItems": true},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}, "uniqueItems": true},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}, "uniqueItems": true}
            ]);
            let op = |id: &str, action: &str| {
                json!({
                    "operationId": id, "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk, "parameters": params,
                    "responses": {"200": {"description": "OK"}}
                })
            };
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

fn get(shared: &Shared, name: &str) -> Result<CertificateSigningRequest, ApiError> {
    lock(&shared.store)
        .objects
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(name))
}

type Filter = Box<dyn Fn(&CertificateSigningRequest) -> bool + Send + Sync>;

/// `fieldSelector`: CSRs support `metadata.name` and `spec.signerName` with `=`, `==`, `!=`.
fn field_filter(query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let mut terms: Vec<(String, bool, String)> = Vec::new();
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
            if k != "metadata.name" && k != "spec.signerName" {
                return Err(ApiError::bad_request(format!(
                    "\"{k}\" is not a known field selector: only \"metadata.name\", \"spec.signerName\""
                )));
            }
            terms.push((k.to_string(), neg, v.to_string()));
        }
    }
    Ok(Box::new(move |o: &CertificateSigningRequest| {
        terms.iter().all(|(k, neg, v)| {
            let actual = if k == "metadata.name" {
                o.metadata.name.as_deref().unwrap_or("")
            } else {
                o.spec.signer_name.as_str()
            };
            (actual == v) != *neg
        })
    }))
}

fn list(
    shared: &Shared,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let filter = field_filter(query)?;
    let (items, rv) = {
        let st = lock(&shared.store);
        let items: Vec<_> = st.objects.values().filter(|o| filter(o)).cloned().collect();
        (items, st.rv)
    };
    if as_table {
        return Ok(table(shared, &items));
    }
    let list = k8s_openapi::List::<CertificateSigningRequest> {
        items,
        metadata: ListMeta {
            resource_version: Some(rv.to_string()),
            ..Default::default()
        },
    };
    Ok(json_response(200, &list))
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

pub fn condition_summary(o: &CertificateSigningRequest) -> String {
    let mut parts: Vec<String> = o
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default();
    if o.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
    {
        parts.push("Issued".into());
    }
    if parts.is_empty() {
        "Pending".into()
    } else {
        parts.join(",")
    }
}

/// Server-side printing (what `kubectl get csr` asks for), with the real columns.
fn table(shared: &Shared, items: &[CertificateSigningRequest]) -> Response<Body> {
    let rv = lock(&shared.store).rv;
    json_response(200, &table_value(rv, items))
}

fn table_value(rv: u64, items: &[CertificateSigningRequest]) -> Value {
    let col = |name: &str, ty: &str, format: &str, desc: &str, prio: i32| json!({"name": name, "type": ty, "format": format, "description": desc, "priority": prio});
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let age = o.metadata.creation_timestamp.as_ref().map(|t| human_duration(age_of(t))).unwrap_or_else(|| "<unknown>".into());
            let dur = o.spec.expiration_seconds.map(|s| human_duration(Duration::from_secs(s as u64))).unwrap_or_else(|| "<none>".into());
            json!({
                "cells": [o.metadata.name, age, o.spec.signer_name, o.spec.username.clone().unwrap_or_default(), dur, condition_summary(o)],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.metadata}
            })
        })
        .collect();
    json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv.to_string()},
            "columnDefinitions": [
                col("Name", "string", "name", "Name must be unique within a namespace.", 0),
                col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0),
                col("SignerName", "string", "", "Requested signer for the request.", 0),
                col("Requestor", "string", "", "Information about the requesting user.", 0),
                col("RequestedDuration", "string", "", "expirationSeconds is the requested duration of validity of the issued certificate.", 0),
                col("Condition", "string", "", "Conditions applied to the request.", 0),
            ],
            "rows": rows
    })
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

fn decode_csr_body(body: &[u8]) -> Result<CertificateSigningRequest, ApiError> {
    if body.starts_with(crate::proto::MAGIC) {
        return crate::proto::decode_csr(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    if let Some(k) = v.get("kind").and_then(Value::as_str) {
        if k != "CertificateSigningRequest" {
            return Err(ApiError::bad_request(format!("the object provided is unrecognized (must be of type CertificateSigningRequest): kind {k}")));
        }
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

fn create(shared: &Shared, user: &User, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut csr = decode_csr_body(body)?;
    authorize(shared, user, "create", None, None, Some(&csr))?;
    let display_name = csr
        .metadata
        .name
        .clone()
        .or(csr.metadata.generate_name.clone())
        .unwrap_or_default();
    // Validation (pkg/apis/certificates/validation).
    let mut errs: Vec<String> = Vec::new();
    if csr.metadata.name.as_deref().unwrap_or("").is_empty()
        && csr
            .metadata
            .generate_name
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        errs.push("metadata.name: Required value: name or generateName is required".into());
    }
    match csr_pem_to_der(&csr.spec.request.0).and_then(|d| parse_csr(&d)) {
        Ok(_) => {}
        Err(e) => errs.push(format!("spec.request: Invalid value: []byte{{...}}: {e}")),
    }
    if csr.spec.signer_name.is_empty() {
        errs.push("spec.signerName: Required value".into());
    } else if csr.spec.signer_name == LEGACY_UNKNOWN {
        errs.push(format!("spec.signerName: Invalid value: \"{LEGACY_UNKNOWN}\": the legacy signerName is not allowed via this API version"));
    } else if !csr.spec.signer_name.contains('/') {
        errs.push(format!("spec.signerName: Invalid value: \"{}\": must be a fully qualified domain and path of the form 'example.com/signer-name'", csr.spec.signer_name));
    }
    match &csr.spec.usages {
        None => errs.push("spec.usages: Required value".into()),
        Some(us) if us.is_empty() => errs.push("spec.usages: Required value".into()),
        Some(us) => {
            for (i, u) in us.iter().enumerate() {
                if !KNOWN_USAGES.contains(&u.as_str()) {
                    errs.push(format!("spec.usages[{i}]: Unsupported value: \"{u}\""));
                }
            }
        }
    }
    if let Some(s) = csr.spec.expiration_seconds {
        if s < 600 {
            errs.push(format!("spec.expirationSeconds: Invalid value: {s}: may not specify a duration less than 600 seconds (10 minutes)"));
        }
    }
    if !errs.is_empty() {
        let msg = if errs.len() == 1 {
            errs[0].clone()
        } else {
            format!("[{}]", errs.join(", "))
        };
        return Err(ApiError::invalid(&display_name, msg));
    }
    // PrepareForCreate: identity from the authenticated requester, status cleared.
    csr.spec.username = Some(user.name.clone());
    csr.spec.groups = Some(user.groups.clone());
    csr.spec.uid = None;
    csr.spec.extra = None;
    csr.status = None;
    let mut st = lock(&shared.store);
    let name = match csr.metadata.name.clone().filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => loop {
            let n = format!(
                "{}{}",
                csr.metadata.generate_name.as_deref().unwrap_or(""),
                random_suffix()
            );
            if !st.objects.contains_key(&n) {
                break n;
            }
        },
    };
    if st.objects.contains_key(&name) {
        return Err(ApiError::already_exists(&name));
    }
    csr.metadata.name = Some(name);
    csr.metadata.uid = Some(uuid4());
    csr.metadata.creation_timestamp = Some(now_time());
    csr.metadata.namespace = None;
    csr.metadata.self_link = None;
    csr.metadata.managed_fields = None;
    csr.metadata.deletion_timestamp = None;
    csr.metadata.generation = None;
    let obj = shared.commit(&mut st, EventKind::Added, csr);
    Ok(json_response(201, &obj))
}

fn has_cond(s: &Option<CertificateSigningRequestStatus>, t: &str) -> bool {
    s.as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t))
}

/// `PUT .../{name}/approval` and `PUT .../{name}/status`.
fn update_sub(
    shared: &Shared,
    name: &str,
    sub: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let new = decode_csr_body(body)?;
    if let Some(n) = new.metadata.name.as_deref() {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    let mut st = lock(&shared.store);
    let old = st
        .objects
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(name))?;
    if let Some(rv) = new
        .metadata
        .resource_version
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        if Some(rv) != old.metadata.resource_version.as_deref() {
            return Err(ApiError::conflict(name));
        }
    }
    let mut obj = old.clone();
    let mut status = new.status.clone().unwrap_or_default();
    let now = now_time();
    let mut conds = status.conditions.take().unwrap_or_default();
    for c in conds.iter_mut() {
        if c.last_update_time.is_none() {
            c.last_update_time = Some(now.clone());
        }
        if c.last_transition_time.is_none() {
            c.last_transition_time = Some(now.clone());
        }
        if c.status.is_empty() {
            c.status = "True".into();
        }
    }
    let mut errs: Vec<String> = Vec::new();
    let count = |t: &str| conds.iter().filter(|c| c.type_ == t).count();
    if count("Approved") > 0 && count("Denied") > 0 {
        errs.push("status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive".into());
    }
    for t in ["Approved", "Denied", "Failed"] {
        if count(t) > 1 {
            errs.push(format!(
                "status.conditions: Forbidden: duplicate condition of type {t}"
            ));
        }
    }
    for (i, c) in conds.iter().enumerate() {
        if c.type_.is_empty() {
            errs.push(format!("status.conditions[{i}].type: Required value"));
        }
        if !["True", "False", "Unknown"].contains(&c.status.as_str()) {
            errs.push(format!(
                "status.conditions[{i}].status: Unsupported value: \"{}\"",
                c.status
            ));
        }
    }
    for t in ["Approved", "Denied"] {
        let before = has_cond(&old.status, t);
        let after = count(t) > 0;
        if before && !after {
            errs.push(format!(
                "status.conditions: Forbidden: updates may not remove a condition of type \"{t}\""
            ));
        }
        if sub == "status" && !before && after {
            errs.push(format!(
                "status.conditions: Forbidden: updates may not add a condition of type \"{t}\""
            ));
        }
    }
    let old_cert = old
        .status
        .as_ref()
        .and_then(|s| s.certificate.clone())
        .filter(|c| !c.0.is_empty());
    let mut new_cert = old_cert.clone();
    if sub == "status" {
        new_cert = status.certificate.clone().filter(|c| !c.0.is_empty());
        if let (Some(a), Some(b)) = (&old_cert, &new_cert) {
            if a != b {
                errs.push("status.certificate: Forbidden: updates may not modify existing certificate content".into());
            }
        }
        if old_cert.is_some() && new_cert.is_none() {
            errs.push("status.certificate: Forbidden: updates may not remove existing certificate content".into());
        }
        if let Some(c) = &new_cert {
            if x509_parser::pem::Pem::iter_from_buffer(&c.0)
                .next()
                .is_none_or(|p| p.map(|p| p.label != "CERTIFICATE").unwrap_or(true))
            {
                errs.push("status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block".into());
            }
        }
    }
    if !errs.is_empty() {
        let msg = if errs.len() == 1 {
            errs[0].clone()
        } else {
            format!("[{}]", errs.join(", "))
        };
        return Err(ApiError::invalid(name, msg));
    }
    obj.status = Some(CertificateSigningRequestStatus {
        certificate: new_cert,
        conditions: if conds.is_empty() { None } else { Some(conds) },
    });
    let obj = shared.commit(&mut st, EventKind::Modified, obj);
    Ok(json_response(200, &obj))
}

fn delete(shared: &Shared, name: &str) -> Result<Response<Body>, ApiError> {
    let mut st = lock(&shared.store);
    let obj = st
        .objects
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(name))?;
    let uid = obj.metadata.uid.clone();
    shared.commit(&mut st, EventKind::Deleted, obj);
    Ok(json_response(
        200,
        &Status {
            status: Some("Success".into()),
            details: Some(StatusDetails {
                name: Some(name.into()),
                group: Some(GROUP.into()),
                kind: Some(RESOURCE.into()),
                uid,
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
}

/// A watch event line; with `as_table`, the object is a one-row Table (`kubectl get -w`).
fn obj_event(kind: &str, o: &CertificateSigningRequest, as_table: bool) -> Bytes {
    if as_table {
        let rv = o
            .metadata
            .resource_version
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        event_line(kind, &table_value(rv, std::slice::from_ref(o)))
    } else {
        event_line(kind, o)
    }
}

fn event_line(kind: &str, object: &impl serde::Serialize) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    v.push(b'\n');
    Bytes::from(v)
}

/// `watch=true`: newline-delimited `WatchEvent`s. Without a resourceVersion (or "0"),
/// the current objects come first as ADDED; with one, every later change is replayed from the
/// history, or one ERROR event (410 Expired) if that version has been compacted away.
fn watch(
    shared: &Arc<Shared>,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let filter = field_filter(query)?;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let from: u64;
    let mut sub = None;
    {
        let st = lock(&shared.store);
        match query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => {
                from = st.rv;
                for o in st.objects.values().filter(|o| filter(o)) {
                    initial.push(obj_event("ADDED", o, as_table));
                }
                sub = Some(shared.events.subscribe());
            }
            Some(s) => {
                let r: u64 = s.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: strconv.ParseUint: parsing \"{s}\": invalid syntax"))
                })?;
                from = r;
                if r < st.compacted {
                    let mut e = ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {r} ({})", st.compacted),
                    );
                    e.name = None;
                    initial.push(event_line("ERROR", &e.status()));
                } else {
                    for ev in st.history.iter().filter(|e| e.rv > r && filter(&e.object)) {
                        initial.push(obj_event(ev.kind.as_str(), &ev.object, as_table));
                    }
                    sub = Some(shared.events.subscribe());
                }
            }
        }
    }
    let limit = lock(&shared.faults).watch_event_limit;
    let mut closer = shared.close_watches.subscribe();
    tokio::spawn(async move {
        let mut sent = 0usize;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for line in initial {
            if limit.is_some_and(|l| sent >= l) || tx.send(line).await.is_err() {
                return;
            }
            sent += 1;
        }
        let Some(mut sub) = sub else { return };
        loop {
            if limit.is_some_and(|l| sent >= l) {
                return;
            }
            tokio::select! {
                ev = sub.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= from || !filter(&ev.object) { continue; }
                        if tx.send(obj_event(ev.kind.as_str(), &ev.object, as_table)).await.is_err() { return; }
                        sent += 1;
                    }
                    // Lagged or closed: end the watch; the client resumes from its last version.
                    Err(_) => return,
                },
                _ = closer.changed() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Stream(rx))
        .expect("response"))
}

/// Adds a condition (used by the library's approve/deny and the controllers).
pub fn add_condition(
    obj: &mut CertificateSigningRequest,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let now = now_time();
    let st = obj.status.get_or_insert_with(Default::default);
    st.conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
}

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}
