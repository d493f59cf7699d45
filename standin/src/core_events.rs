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

use std::collections::HashMap;

use http::{header, Method, Request, Response};
use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Value};

use crate::api::{
    error_response, field_terms, human_duration, json_response, openapi_op, read_body, Body,
};
use crate::auth::User;
use crate::objects::{self, Target};
use crate::state::{age_of, lock, ApiError, Shared};

fn events_kind() -> &'static objects::Kind {
    objects::KINDS
        .iter()
        .find(|k| k.resource == "events")
        .expect("events are one of the stand-in's kinds")
}

/// `Some(response)` for what this module adds to `objects`' events: list (one namespace
/// or all, field selectors, Table), create (validated) and PATCH. `None`: not an events
/// request this module serves (get, update and delete are `objects`').
pub async fn route(
    shared: &Shared,
    user: &User,
    req: Request<hyper::body::Incoming>,
    path: &str,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response<Body>, Request<hyper::body::Incoming>> {
    let all = path == "/api/v1/events";
    let target = match objects::parse_path(path) {
        Some(t) if t.kind.resource == "events" => Some(t),
        _ if all => None,
        _ => return Err(req),
    };
    let method = req.method().clone();
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, target.as_ref().and_then(|t| t.name.as_ref())) {
        (&Method::GET, None) if !watch => "list",
        (&Method::POST, None) if !all => "create",
        (&Method::PATCH, Some(_)) => "patch",
        _ => return Err(req),
    };
    let t = target.unwrap_or(Target {
        kind: events_kind(),
        namespace: String::new(),
        name: None,
        sub: None,
    });
    if let Err(e) = objects::authorize(shared, user, verb, &t) {
        return Ok(error_response(&e));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let result = match verb {
        "list" => list(
            shared,
            (!all).then_some(t.namespace.as_str()),
            query,
            as_table,
        ),
        "create" => match read_body(req.into_body()).await {
            Ok(b) => create(shared, &t, &b),
            Err(e) => Err(e),
        },
        _ => match read_body(req.into_body()).await {
            Ok(b) => patch(shared, &t, &content_type, &b),
            Err(e) => Err(e),
        },
    };
    Ok(result.unwrap_or_else(|e| error_response(&e)))
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

fn decode(body: &[u8]) -> Result<Event, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("error decoding request body: {err}")))
}

fn create(shared: &Shared, t: &Target, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let e = decode(body)?;
    validate(&e, &t.namespace)?;
    let v = serde_json::to_value(&e).expect("serializable");
    objects::create(shared, t, v).map(|v| json_response(201, &v))
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
    t: &Target,
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
    let name = t.name.clone().unwrap_or_default();
    let k = objects::key("events", &t.namespace, &name);
    let mut store = lock(&shared.objects);
    let current = store
        .get(&k)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "NotFound", format!("events \"{name}\" not found")))?;
    let mut v = current.clone();
    merge(&mut v, &p);
    let e: Event = serde_json::from_value(v.clone()).map_err(|err| {
        ApiError::bad_request(format!("the patched object is not an Event: {err}"))
    })?;
    if v["metadata"]["name"] != current["metadata"]["name"]
        || v["metadata"]["uid"] != current["metadata"]["uid"]
    {
        return Err(invalid(
            &name,
            &["metadata: the patch may not change name or uid".into()],
        ));
    }
    validate(&e, &t.namespace)?;
    let mut st = lock(&shared.store);
    st.rv += 1;
    v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    drop(st);
    store.insert(k, v.clone());
    Ok(json_response(200, &v))
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
    let terms = field_terms(query, |k| match field(&Event::default(), k) {
        Some(_) => Ok(()),
        None => Err(ApiError::bad_request(format!(
            "field label not supported: {k}"
        ))),
    })?;
    let prefix = match namespace {
        Some(ns) => objects::key("events", ns, ""),
        None => "events/".to_string(),
    };
    let items: Vec<Event> = lock(&shared.objects)
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, v)| serde_json::from_value::<Event>(v.clone()).ok())
        .filter(|e| {
            terms
                .iter()
                .all(|(k, neg, v)| (field(e, k).as_deref() == Some(v.as_str())) != *neg)
        })
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
    let op = |id: &str, action: &str| openapi_op(&gvk, id, action);
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
