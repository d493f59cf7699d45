//! The certificates.k8s.io/v1 CertificateSigningRequest handlers: get, list (with field
//! selectors and kubectl's table), create, the approval and status subresources, delete
//! and watch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, Response};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{
    field_terms, human_duration, json_response, random_suffix, uuid4, Body, LEGACY_UNKNOWN,
};
use crate::auth::{authorize, User};
use crate::ca::{csr_pem_to_der, parse_csr};
use crate::state::{age_of, lock, now_time, ApiError, EventKind, Shared, GROUP, RESOURCE};

pub(crate) fn get(shared: &Shared, name: &str) -> Result<CertificateSigningRequest, ApiError> {
    lock(&shared.store)
        .objects
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(name))
}

type Filter = Box<dyn Fn(&CertificateSigningRequest) -> bool + Send + Sync>;

/// `fieldSelector`: CSRs support `metadata.name` and `spec.signerName` with `=`, `==`, `!=`.
pub(crate) fn field_filter(query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let terms = field_terms(query, |k| {
        if k == "metadata.name" || k == "spec.signerName" {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "\"{k}\" is not a known field selector: only \"metadata.name\", \"spec.signerName\""
            )))
        }
    })?;
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

pub(crate) fn list(
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
pub(crate) fn table(shared: &Shared, items: &[CertificateSigningRequest]) -> Response<Body> {
    let rv = lock(&shared.store).rv;
    json_response(200, &table_value(rv, items))
}

pub(crate) fn table_value(rv: u64, items: &[CertificateSigningRequest]) -> Value {
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

pub(crate) fn decode_csr_body(body: &[u8]) -> Result<CertificateSigningRequest, ApiError> {
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

pub(crate) const KNOWN_USAGES: &[&str] = &[
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

pub(crate) fn create(
    shared: &Shared,
    user: &User,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
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

pub(crate) fn has_cond(s: &Option<CertificateSigningRequestStatus>, t: &str) -> bool {
    s.as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t))
}

/// `PUT .../{name}/approval` and `PUT .../{name}/status`.
pub(crate) fn update_sub(
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

pub(crate) fn delete(shared: &Shared, name: &str) -> Result<Response<Body>, ApiError> {
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
pub(crate) fn obj_event(kind: &str, o: &CertificateSigningRequest, as_table: bool) -> Bytes {
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

pub(crate) fn event_line(kind: &str, object: &impl serde::Serialize) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    v.push(b'\n');
    Bytes::from(v)
}

/// `watch=true`: newline-delimited `WatchEvent`s. Without a resourceVersion (or "0"),
/// the current objects come first as ADDED; with one, every later change is replayed from the
/// history, or one ERROR event (410 Expired) if that version has been compacted away.
pub(crate) fn watch(
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
