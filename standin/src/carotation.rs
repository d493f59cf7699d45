//! kube-cert-agent's `CARotation` custom resource (kube-cert-agent.io/v1alpha1, cluster
//! scoped, etc/crds/carotations.kube-cert-agent.io.yaml), as kube-apiserver serves a CRD:
//! stored through `objects` (get, list, create, update, delete, the status subresource),
//! validated against the CRD's schema (422 with the apiserver's field paths), unknown
//! fields pruned, and PATCH:
//! - `application/merge-patch+json` on the object or on `/status` (RFC 7386; the status
//!   subresource keeps the other half, as for every resource with one);
//! - `application/apply-patch+yaml` (server-side apply, JSON bodies) on `/status`:
//!   `status.nodes` is a list-map keyed by `name`, so each field manager owns the entries
//!   it applied: an applied entry replaces the one with its name, an entry the manager
//!   applied before and no longer does is removed, another manager's entry is a conflict
//!   unless `force=true`;
//! - `application/strategic-merge-patch+json`: 415, as for every custom resource.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use crate::api::openapi_op;
use crate::objects::{self, Target};
use crate::state::{lock, ApiError, Shared};

pub const PREFIX: &str = "/apis/kube-cert-agent.io/v1alpha1";
pub const GROUP: &str = "kube-cert-agent.io";
pub const RESOURCE: &str = "carotations";
const PHASES: [&str; 3] = ["prepare", "reissue", "finalize"];

/// A custom resource has no Go type: any JSON object decodes.
pub fn typed(v: Value) -> Result<Value, String> {
    match v {
        Value::Object(_) => Ok(v),
        other => Err(format!("expected an object, got {}", json_type(&other))),
    }
}

/// Who applied which `status.nodes` entries: (object name, field manager) -> entry names.
pub type Owners = BTreeMap<(String, String), BTreeSet<String>>;

fn invalid(name: &str, causes: &[(String, String)]) -> ApiError {
    let detail: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let msg = if detail.len() == 1 {
        detail[0].clone()
    } else {
        format!("[{}]", detail.join(", "))
    };
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("CARotation.{GROUP} \"{name}\" is invalid: {msg}"),
    );
    e.name = Some(name.to_string());
    e
}

/// Keep only the fields the schema knows (what the apiserver's pruning does).
fn prune(v: &Value, keep: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn string_field(
    v: &Value,
    path: &str,
    key: &str,
    required: bool,
    causes: &mut Vec<(String, String)>,
) {
    match v.get(key) {
        None | Some(Value::Null) if required => {
            causes.push((format!("{path}.{key}"), "Required value".into()))
        }
        None | Some(Value::Null) => {}
        Some(Value::String(_)) => {}
        Some(other) => causes.push((
            format!("{path}.{key}"),
            format!(
                "Invalid value: \"{}\": {path}.{key} in body must be of type string: \"{}\"",
                other,
                json_type(other)
            ),
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn phase_field(v: &Value, path: &str, causes: &mut Vec<(String, String)>) {
    if let Some(p) = v.get("phase").and_then(Value::as_str) {
        if !PHASES.contains(&p) {
            causes.push((
                format!("{path}.phase"),
                format!("Unsupported value: \"{p}\": supported values: \"prepare\", \"reissue\", \"finalize\""),
            ));
        }
    }
}

/// The object pruned to the CRD's schema and validated against it.
pub fn validate(mut obj: Value) -> Result<Value, ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let mut causes = Vec::new();
    match obj.get("spec") {
        Some(Value::Object(_)) => {
            let spec = prune(&obj["spec"], &["ca", "phase", "newCACertificate"]);
            for k in ["ca", "phase", "newCACertificate"] {
                string_field(&spec, "spec", k, true, &mut causes);
            }
            if let Some(ca) = spec.get("ca").and_then(Value::as_str) {
                let ok =
                    !ca.is_empty() && ca.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !ok {
                    causes.push((
                        "spec.ca".into(),
                        format!("Invalid value: \"{ca}\": spec.ca in body should match '^[A-Za-z0-9-]+$'"),
                    ));
                }
            }
            phase_field(&spec, "spec", &mut causes);
            obj["spec"] = spec;
        }
        _ => causes.push(("spec".into(), "Required value".into())),
    }
    if let Some(status) = obj.get("status").cloned() {
        let mut status = prune(&status, &["nodes"]);
        if let Some(nodes) = status.get("nodes").and_then(Value::as_array).cloned() {
            let mut seen = BTreeSet::new();
            let mut kept = Vec::new();
            for (i, n) in nodes.iter().enumerate() {
                let path = format!("status.nodes[{i}]");
                let n = prune(n, &["name", "phase", "complete", "message", "updated"]);
                for k in ["name", "phase"] {
                    string_field(&n, &path, k, true, &mut causes);
                }
                string_field(&n, &path, "message", false, &mut causes);
                string_field(&n, &path, "updated", false, &mut causes);
                match n.get("complete") {
                    Some(Value::Bool(_)) => {}
                    None | Some(Value::Null) => {
                        causes.push((format!("{path}.complete"), "Required value".into()))
                    }
                    Some(other) => causes.push((
                        format!("{path}.complete"),
                        format!("Invalid value: \"{}\": {path}.complete in body must be of type boolean: \"{}\"", other, json_type(other)),
                    )),
                }
                phase_field(&n, &path, &mut causes);
                if let Some(k) = n.get("name").and_then(Value::as_str) {
                    if !seen.insert(k.to_string()) {
                        causes.push((
                            format!("status.nodes[{i}]"),
                            format!(
                                "Duplicate value: map[string]interface {{}}{{\"name\":\"{k}\"}}"
                            ),
                        ));
                    }
                }
                kept.push(n);
            }
            status["nodes"] = Value::Array(kept);
        }
        obj["status"] = status;
    }
    if causes.is_empty() {
        Ok(obj)
    } else {
        Err(invalid(&name, &causes))
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Server-side apply of `applied` (the status of an apply body) to `status`, as `manager`.
fn apply_status(
    owners: &mut Owners,
    object: &str,
    manager: &str,
    force: bool,
    status: &mut Value,
    applied: &Value,
) -> Result<(), ApiError> {
    let entries: Vec<Value> = applied["nodes"].as_array().cloned().unwrap_or_default();
    let names: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    let mut conflicts = Vec::new();
    for ((o, m), owned) in owners.iter() {
        if o != object || m == manager {
            continue;
        }
        for n in owned.intersection(&names) {
            conflicts.push(format!(
                "conflict with \"{m}\": .status.nodes[name=\"{n}\"]"
            ));
        }
    }
    if !conflicts.is_empty() && !force {
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join("\n")
            ),
        );
        e.name = Some(object.to_string());
        return Err(e);
    }
    if force {
        // Forced: the entries change owner.
        for ((o, m), owned) in owners.iter_mut() {
            if o == object && m != manager {
                owned.retain(|n| !names.contains(n));
            }
        }
    }
    let key = (object.to_string(), manager.to_string());
    let before = owners.get(&key).cloned().unwrap_or_default();
    let still_owned: BTreeSet<String> = owners
        .iter()
        .filter(|((o, m), _)| o == object && m != manager)
        .flat_map(|(_, s)| s.iter().cloned())
        .collect();
    let mut list: Vec<Value> = status["nodes"].as_array().cloned().unwrap_or_default();
    // Entries this manager applied before and no longer does, that nobody else owns.
    list.retain(|e| {
        let n = e["name"].as_str().unwrap_or("");
        names.contains(n) || !before.contains(n) || still_owned.contains(n)
    });
    for e in entries {
        match list.iter_mut().find(|x| x["name"] == e["name"]) {
            Some(x) => *x = e,
            None => list.push(e),
        }
    }
    if !status.is_object() {
        *status = json!({});
    }
    status["nodes"] = Value::Array(list);
    owners.insert(key, names);
    Ok(())
}

/// `PATCH` of a CARotation (or its status).
pub fn patch(
    shared: &Shared,
    t: &Target,
    content_type: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let patch: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding patch: {e} (the stand-in takes JSON patch bodies only)"
        ))
    })?;
    let media = content_type.split(';').next().unwrap_or("").trim();
    let status_only = t.sub.as_deref() == Some("status");
    let mut objects = lock(&shared.objects);
    let k = objects::key(t.kind.resource, "", &name);
    let old = objects
        .get(&k)
        .cloned()
        .ok_or_else(|| objects::not_found(t.kind, &name))?;
    let mut new = old.clone();
    match media {
        "application/merge-patch+json" => merge(&mut new, &patch),
        "application/apply-patch+yaml" if status_only => {
            let manager = query.get("fieldManager").filter(|m| !m.is_empty()).ok_or_else(|| {
                ApiError::bad_request("PATCH with apply-patch requires a fieldManager")
            })?;
            let force = query.get("force").is_some_and(|f| f == "true");
            if patch["apiVersion"].as_str() != Some(t.kind.api_version)
                || patch["kind"].as_str() != Some(t.kind.kind)
            {
                return Err(ApiError::bad_request(
                    "apiVersion and kind of an apply body must be set: kube-cert-agent.io/v1alpha1, CARotation",
                ));
            }
            let mut owners = lock(&shared.apply_owners);
            let mut status = new.get("status").cloned().unwrap_or(json!({}));
            apply_status(
                &mut owners,
                &name,
                manager,
                force,
                &mut status,
                &patch["status"],
            )?;
            new["status"] = status;
        }
        "application/apply-patch+yaml" => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the stand-in models server-side apply on carotations/status only",
            ))
        }
        "application/json-patch+json" => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the stand-in does not model JSON patch (RFC 6902)",
            ))
        }
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"),
            ))
        }
    }
    // The status subresource splits the object: each half changes only through its own.
    if status_only {
        let status = new.get("status").cloned();
        new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                new.as_object_mut().map(|o| o.remove("status"));
            }
        }
    } else {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|o| o.remove("status"));
            }
        }
        new["metadata"] = old["metadata"].clone();
        if let Some(l) = patch["metadata"].get("labels") {
            merge(&mut new["metadata"]["labels"], l);
        }
        if let Some(a) = patch["metadata"].get("annotations") {
            merge(&mut new["metadata"]["annotations"], a);
        }
    }
    let mut new = validate(new)?;
    new["metadata"]["resourceVersion"] = json!(objects::next_rv(shared));
    objects.insert(k, new.clone());
    Ok(new)
}

/// The group in `/apis`.
pub fn api_group() -> Value {
    let gv = json!({"groupVersion": "kube-cert-agent.io/v1alpha1", "version": "v1alpha1"});
    json!({"name": GROUP, "versions": [gv], "preferredVersion": gv})
}

/// Discovery and OpenAPI v3 of the group (just enough for kubectl: its REST mapping, and
/// that the server validates fields, so `kubectl create -f` sends no client-side schema).
pub fn discovery(path: &str) -> Option<Value> {
    match path {
        "/apis/kube-cert-agent.io" => {
            let mut g = api_group();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Some(g)
        }
        PREFIX => Some(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "kube-cert-agent.io/v1alpha1",
            "resources": objects::discovery_resources(PREFIX)
        })),
        "/openapi/v3/apis/kube-cert-agent.io/v1alpha1" => {
            let gvk = json!({"group": GROUP, "version": "v1alpha1", "kind": "CARotation"});
            let op = |id: &str, action: &str| openapi_op(&gvk, id, action);
            Some(json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes (stand-in)", "version": "v1.32.0"},
                "paths": {
                    format!("{PREFIX}/carotations"): {
                        "post": op("createKubeCertAgentIoV1alpha1CARotation", "post")
                    },
                    format!("{PREFIX}/carotations/{{name}}"): {
                        "put": op("replaceKubeCertAgentIoV1alpha1CARotation", "put"),
                        "patch": op("patchKubeCertAgentIoV1alpha1CARotation", "patch")
                    },
                    format!("{PREFIX}/carotations/{{name}}/status"): {
                        "put": op("replaceKubeCertAgentIoV1alpha1CARotationStatus", "put"),
                        "patch": op("patchKubeCertAgentIoV1alpha1CARotationStatus", "patch")
                    }
                },
                "components": {"schemas": {}}
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, phase: &str) -> Value {
        json!({"name": name, "phase": phase, "complete": true})
    }

    #[test]
    fn each_manager_owns_its_own_entries() {
        let mut owners = Owners::new();
        let mut status = json!({});
        let apply = |owners: &mut Owners, status: &mut Value, m: &str, nodes: Value, force| {
            apply_status(owners, "r", m, force, status, &json!({ "nodes": nodes }))
        };
        apply(
            &mut owners,
            &mut status,
            "agent-n1",
            json!([entry("n1", "prepare")]),
            true,
        )
        .unwrap();
        apply(
            &mut owners,
            &mut status,
            "agent-n2",
            json!([entry("n2", "prepare")]),
            true,
        )
        .unwrap();
        // n1 moves on: its entry changes in place, n2's stays.
        apply(
            &mut owners,
            &mut status,
            "agent-n1",
            json!([entry("n1", "reissue")]),
            true,
        )
        .unwrap();
        assert_eq!(
            status["nodes"],
            json!([entry("n1", "reissue"), entry("n2", "prepare")])
        );
        // Another manager writing n1's entry: a conflict unless forced.
        let e = apply(
            &mut owners,
            &mut status,
            "agent-n2",
            json!([entry("n2", "prepare"), entry("n1", "finalize")]),
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, 409);
        assert!(
            e.message.contains("conflict with \"agent-n1\""),
            "{}",
            e.message
        );
        // An entry its manager no longer applies is removed.
        apply(&mut owners, &mut status, "agent-n2", json!([]), true).unwrap();
        assert_eq!(status["nodes"], json!([entry("n1", "reissue")]));
    }

    #[test]
    fn the_schema_is_enforced_and_unknown_fields_pruned() {
        let ok = validate(json!({
            "metadata": {"name": "r"},
            "spec": {"ca": "cluster", "phase": "prepare", "newCACertificate": "x", "newCAKey": "k"},
            "status": {"nodes": [{"name": "n1", "phase": "prepare", "complete": false, "extra": 1}]},
        }))
        .unwrap();
        assert!(ok["spec"].get("newCAKey").is_none());
        assert!(ok["status"]["nodes"][0].get("extra").is_none());
        let e = validate(json!({
            "metadata": {"name": "r"},
            "spec": {"ca": "a b", "phase": "undo"},
            "status": {"nodes": [{"name": "n1", "phase": "prepare"}, {"name": "n1", "phase": "prepare", "complete": true}]},
        }))
        .unwrap_err();
        assert_eq!(e.code, 422);
        for want in [
            "spec.newCACertificate: Required value",
            "spec.ca: Invalid value: \"a b\"",
            "spec.phase: Unsupported value: \"undo\"",
            "status.nodes[0].complete: Required value",
            "status.nodes[1]: Duplicate value",
        ] {
            assert!(e.message.contains(want), "{want} in {}", e.message);
        }
    }

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
