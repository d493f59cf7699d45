//! core/v1 Events (`/api/v1/namespaces/{ns}/events`, `/api/v1/events`): what kubelet and the
//! agent record on the Node object, and what `kubectl get events` reads.
//!
//! Modelled: `POST` (name or `generateName`; `AlreadyExists`), `GET` one, `GET` list in a
//! namespace or across all (`fieldSelector` on the fields kube-apiserver indexes for events;
//! Table output with kubectl's columns), `PATCH` with a JSON merge patch (strategic merge patch
//! is applied the same way: an Event has no lists a strategic merge would key), validation as
//! kube-apiserver's for the fields the agent sets. Authorization: `system:masters`; nodes may
//! create, patch and read events (what the Node authorizer and `system:node` allow); anyone
//! else is 403. Not modelled: watch, PUT, DELETE, events.k8s.io/v1, event TTL.

use std::collections::{BTreeMap, HashMap};

use http::{header, Method, Request, Response};
use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Value};

use crate::api::{error_response, human_duration, json_response, read_body, Body, User};
use crate::state::{age_of, lock, now_time, ApiError, Shared};

/// Events by (namespace, name).
pub type EventStore = BTreeMap<(String, String), Event>;

/// `Some(response)` when `path` is an events path.
pub async fn route(
    shared: &Shared,
    user: &User,
    req: Request<hyper::body::Incoming>,
    path: &str,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Option<Response<Body>> {
    let (namespace, name) = if path == "/api/v1/events" {
        (None, None)
    } else {
        let rest = path.strip_prefix("/api/v1/namespaces/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [ns, "events"] => (Some(ns.to_string()), None),
            [ns, "events", n] => (Some(ns.to_string()), Some(n.to_string())),
            _ => return None,
        }
    };
    let method = req.method().clone();
    let verb = match (&method, &name) {
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) if namespace.is_some() => "create",
        (&Method::PATCH, Some(_)) => "patch",
        _ => {
            return Some(error_response(&ApiError::new(
                405,
                "MethodNotAllowed",
                format!("the server does not allow this method on the requested resource ({method} is not modelled by the stand-in)"),
            )))
        }
    };
    if let Err(e) = authorize(user, verb, namespace.as_deref()) {
        return Some(error_response(&e));
    }
    let patch_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let result = match verb {
        "list" => list(shared, namespace.as_deref(), query, as_table),
        "get" => get(
            shared,
            namespace.as_deref().unwrap_or(""),
            name.as_deref().unwrap_or(""),
        ),
        "create" => match read_body(req.into_body()).await {
            Ok(b) => create(shared, namespace.as_deref().unwrap_or(""), &b),
            Err(e) => Err(e),
        },
        _ => match read_body(req.into_body()).await {
            Ok(b) => patch(
                shared,
                namespace.as_deref().unwrap_or(""),
                name.as_deref().unwrap_or(""),
                &patch_type,
                &b,
            ),
            Err(e) => Err(e),
        },
    };
    Some(result.unwrap_or_else(|e| error_response(&e)))
}

fn authorize(user: &User, verb: &str, namespace: Option<&str>) -> Result<(), ApiError> {
    if user.in_group("system:masters") {
        return Ok(());
    }
    let is_node = user.name.starts_with("system:node:") && user.in_group("system:nodes");
    if is_node && matches!(verb, "create" | "patch" | "get" | "list") {
        return Ok(());
    }
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    Err(ApiError::new(
        403,
        "Forbidden",
        format!(
            "events is forbidden: User \"{}\" cannot {verb} resource \"events\" in API group \"\" {scope}",
            user.name
        ),
    ))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(404, "NotFound", format!("events \"{name}\" not found"))
}

fn invalid(name: &str, causes: &[String]) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("Event \"{name}\" is invalid: {}", causes.join(", ")),
    )
}

/// kube-apiserver's checks (pkg/apis/core/validation ValidateEventCreate) for what a
/// client sets.
fn validate(e: &Event, namespace: &str) -> Result<(), ApiError> {
    let name = e.metadata.name.clone().unwrap_or_default();
    let mut causes = vec![];
    let io = &e.involved_object;
    if io.kind.as_deref().unwrap_or("").is_empty() {
        causes.push("involvedObject.kind: Required value".to_string());
    }
    let io_ns = io.namespace.as_deref().unwrap_or("");
    if !io_ns.is_empty() && io_ns != namespace {
        causes.push(format!(
            "involvedObject.namespace: Invalid value: \"{io_ns}\": does not match event.namespace"
        ));
    }
    match e.type_.as_deref() {
        None | Some("") | Some("Normal") | Some("Warning") => {}
        Some(t) => causes.push(format!(
            "type: Unsupported value: \"{t}\": supported values: \"Normal\", \"Warning\""
        )),
    }
    if e.count.unwrap_or(0) < 0 {
        causes.push("count: Invalid value: must be non-negative".into());
    }
    if e.message.as_deref().unwrap_or("").len() > 4096 {
        causes.push("message: Too long: may not be longer than 4096".into());
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(&name, &causes))
    }
}

fn stamp(shared: &Shared, e: &mut Event) {
    let mut st = lock(&shared.store);
    st.rv += 1;
    e.metadata.resource_version = Some(st.rv.to_string());
}

fn create(shared: &Shared, namespace: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut e: Event = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("error decoding request body: {err}")))?;
    match e.metadata.namespace.as_deref() {
        None | Some("") => e.metadata.namespace = Some(namespace.to_string()),
        Some(ns) if ns == namespace => {}
        Some(ns) => {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})"
            )))
        }
    }
    if e.metadata.name.as_deref().unwrap_or("").is_empty() {
        match e.metadata.generate_name.as_deref() {
            Some(p) if !p.is_empty() => {
                e.metadata.name = Some(format!("{p}{}", crate::api::random_suffix()))
            }
            _ => {
                return Err(invalid(
                    "",
                    &["metadata.name: Required value: name or generateName is required".into()],
                ))
            }
        }
    }
    validate(&e, namespace)?;
    let name = e.metadata.name.clone().unwrap_or_default();
    let key = (namespace.to_string(), name.clone());
    if lock(&shared.core_events).contains_key(&key) {
        return Err(ApiError::new(
            409,
            "AlreadyExists",
            format!("events \"{name}\" already exists"),
        ));
    }
    e.metadata.uid = Some(crate::api::uuid4());
    e.metadata.creation_timestamp = Some(now_time());
    stamp(shared, &mut e);
    lock(&shared.core_events).insert(key, e.clone());
    Ok(json_response(201, &e))
}

fn get(shared: &Shared, namespace: &str, name: &str) -> Result<Response<Body>, ApiError> {
    lock(&shared.core_events)
        .get(&(namespace.to_string(), name.to_string()))
        .map(|e| json_response(200, e))
        .ok_or_else(|| not_found(name))
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn patch(
    shared: &Shared,
    namespace: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if !(content_type.starts_with("application/merge-patch+json")
        || content_type.starts_with("application/strategic-merge-patch+json"))
    {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"),
        ));
    }
    let p: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let key = (namespace.to_string(), name.to_string());
    let current = lock(&shared.core_events)
        .get(&key)
        .cloned()
        .ok_or_else(|| not_found(name))?;
    let mut v = serde_json::to_value(&current).expect("serializable");
    merge(&mut v, &p);
    let mut e: Event = serde_json::from_value(v).map_err(|err| {
        ApiError::bad_request(format!("the patched object is not an Event: {err}"))
    })?;
    if e.metadata.name.as_deref() != Some(name) || e.metadata.uid != current.metadata.uid {
        return Err(invalid(
            name,
            &["metadata: the patch may not change name or uid".into()],
        ));
    }
    validate(&e, namespace)?;
    stamp(shared, &mut e);
    lock(&shared.core_events).insert(key, e.clone());
    Ok(json_response(200, &e))
}

/// The field selectors kube-apiserver supports for events (pkg/registry/core/event).
fn field(e: &Event, key: &str) -> Option<String> {
    let io = &e.involved_object;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    Some(match key {
        "metadata.name" => s(&e.metadata.name),
        "metadata.namespace" => s(&e.metadata.namespace),
        "involvedObject.kind" => s(&io.kind),
        "involvedObject.namespace" => s(&io.namespace),
        "involvedObject.name" => s(&io.name),
        "involvedObject.uid" => s(&io.uid),
        "involvedObject.apiVersion" => s(&io.api_version),
        "involvedObject.resourceVersion" => s(&io.resource_version),
        "involvedObject.fieldPath" => s(&io.field_path),
        "reason" => s(&e.reason),
        "reportingComponent" => s(&e.reporting_component),
        "source" => e
            .source
            .as_ref()
            .map(|x| s(&x.component))
            .unwrap_or_default(),
        "type" => s(&e.type_),
        _ => return None,
    })
}

fn list(
    shared: &Shared,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let mut terms: Vec<(String, bool, String)> = vec![];
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
            if field(&Event::default(), k).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            terms.push((k.to_string(), neg, v.to_string()));
        }
    }
    let items: Vec<Event> = lock(&shared.core_events)
        .iter()
        .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
        .filter(|(_, e)| {
            terms
                .iter()
                .all(|(k, neg, v)| (field(e, k).as_deref() == Some(v.as_str())) != *neg)
        })
        .map(|(_, e)| e.clone())
        .collect();
    let rv = lock(&shared.store).rv;
    if as_table {
        return Ok(json_response(200, &table(rv, &items)));
    }
    let list = k8s_openapi::List::<Event> {
        items,
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta {
            resource_version: Some(rv.to_string()),
            ..Default::default()
        },
    };
    Ok(json_response(200, &list))
}

/// kubectl's columns for events (pkg/printers/internalversion): Last Seen, Type, Reason,
/// Object, Message; Subobject, Source, First Seen, Count, Name with `-o wide`.
fn table(rv: u64, items: &[Event]) -> Value {
    let col = |name: &str, desc: &str, prio: i32| json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" }, "description": desc, "priority": prio});
    let ago = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref()
            .map(|t| human_duration(age_of(t)))
            .unwrap_or_else(|| "<unknown>".into())
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|e| {
            let io = &e.involved_object;
            let object = format!(
                "{}/{}",
                io.kind.clone().unwrap_or_default().to_lowercase(),
                io.name.clone().unwrap_or_default()
            );
            let source = e
                .source
                .as_ref()
                .map(|s| {
                    let c = s.component.clone().unwrap_or_default();
                    match s.host.as_deref() {
                        Some(h) if !h.is_empty() => format!("{c}, {h}"),
                        _ => c,
                    }
                })
                .unwrap_or_default();
            json!({
                "cells": [ago(&e.last_timestamp), e.type_, e.reason, object,
                          io.field_path.clone().unwrap_or_default(), source, e.message,
                          ago(&e.first_timestamp), e.count.unwrap_or(1), e.metadata.name],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": e.metadata}
            })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": [
            col("Last Seen", "Time since the event was last seen", 0),
            col("Type", "Type of this event (Normal, Warning)", 0),
            col("Reason", "Short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
            col("Object", "The object that this event is about.", 0),
            col("Subobject", "The subobject that this event is about.", 1),
            col("Source", "The component reporting this event.", 1),
            col("Message", "A human-readable description of the status of this operation.", 0),
            col("First Seen", "Time since the event was first seen", 1),
            col("Count", "The number of times this event has occurred.", 1),
            col("Name", "Name must be unique within a namespace.", 1),
        ],
        "rows": rows
    })
}

/// Just enough OpenAPI v3 for kubectl to learn that the server validates fields on events.
pub fn openapi() -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Event"});
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
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (stand-in)", "version": "v1.32.0"},
        "paths": {
            "/api/v1/namespaces/{namespace}/events": {
                "post": op("createCoreV1NamespacedEvent", "post")
            },
            "/api/v1/namespaces/{namespace}/events/{name}": {
                "patch": op("patchCoreV1NamespacedEvent", "patch")
            }
        },
        "components": {"schemas": {}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_replaces_scalars_and_removes_nulls() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut t, &json!({"a": 5, "b": {"d": null, "e": 4}}));
        assert_eq!(t, json!({"a": 5, "b": {"c": 2, "e": 4}}));
    }
}
