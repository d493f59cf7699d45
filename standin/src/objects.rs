//! Resources other than CSRs: core/v1 Nodes (with the status subresource), coordination/v1
//! Leases and core/v1 Events. Each is stored as the JSON of its k8s-openapi type (every body
//! is decoded into that type first, so a wrong shape is a 400 as with the real server),
//! shares the CSRs' global resourceVersion, and supports get, list, create, update
//! (optimistic concurrency: a stale resourceVersion is 409 Conflict) and delete. No watch.

use std::collections::{BTreeMap, HashMap};

use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status};
use serde_json::{json, Value};

use crate::auth::User;
use crate::rbac::{self, Attrs};
use crate::state::{lock, now_time, ApiError, Shared};

/// A resource the stand-in serves besides CSRs.
pub struct Kind {
    pub prefix: &'static str,
    pub group: &'static str,
    pub api_version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `status` subresource: the main resource's updates keep the old status and
    /// status updates keep everything else.
    pub status: bool,
    typed: fn(Value) -> Result<Value, String>,
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

pub const KINDS: &[Kind] = &[
    Kind {
        prefix: "/api/v1",
        group: "",
        api_version: "v1",
        resource: "nodes",
        kind: "Node",
        namespaced: false,
        status: true,
        typed: typed::<Node>,
    },
    Kind {
        prefix: "/api/v1",
        group: "",
        api_version: "v1",
        resource: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        typed: typed::<Event>,
    },
    Kind {
        prefix: "/apis/coordination.k8s.io/v1",
        group: "coordination.k8s.io",
        api_version: "coordination.k8s.io/v1",
        resource: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
        typed: typed::<Lease>,
    },
    Kind {
        prefix: crate::carotation::PREFIX,
        group: crate::carotation::GROUP,
        api_version: "kube-cert-agent.io/v1alpha1",
        resource: crate::carotation::RESOURCE,
        kind: "CARotation",
        namespaced: false,
        status: true,
        typed: crate::carotation::typed,
    },
];

/// The stored objects, by `resource/namespace/name` (namespace empty when cluster-scoped).
pub type Objects = BTreeMap<String, Value>;

pub fn key(resource: &str, namespace: &str, name: &str) -> String {
    format!("{resource}/{namespace}/{name}")
}

/// A request for one of [`KINDS`], parsed from its path.
pub struct Target {
    pub kind: &'static Kind,
    pub namespace: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// `/api/v1/nodes/{name}/status`, `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`...
pub fn parse_path(path: &str) -> Option<Target> {
    KINDS.iter().find_map(|kind| {
        let rest = path.strip_prefix(kind.prefix)?;
        let mut parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let mut namespace = String::new();
        if kind.namespaced {
            if parts.len() < 3 || parts[0] != "namespaces" {
                return None;
            }
            namespace = parts[1].to_string();
            parts.drain(..2);
        }
        if parts.first() != Some(&kind.resource) || parts.len() > 3 {
            return None;
        }
        let sub = parts.get(2).map(|s| s.to_string());
        if sub
            .as_deref()
            .is_some_and(|s| !(kind.status && s == "status"))
        {
            return None;
        }
        Some(Target {
            kind,
            namespace,
            name: parts.get(1).map(|s| s.to_string()),
            sub,
        })
    })
}

pub(crate) fn not_found(kind: &Kind, name: &str) -> ApiError {
    let what = qualified(kind);
    let mut e = ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"));
    e.name = Some(name.into());
    e
}

fn qualified(kind: &Kind) -> String {
    if kind.group.is_empty() {
        kind.resource.to_string()
    } else {
        format!("{}.{}", kind.resource, kind.group)
    }
}

/// kubeadm's RBAC plus the Node authorizer for these resources; RBAC bindings for the rest.
pub(crate) fn authorize(
    shared: &Shared,
    user: &User,
    verb: &str,
    t: &Target,
) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let node = user
        .name
        .strip_prefix("system:node:")
        .filter(|_| user.groups.iter().any(|g| g == "system:nodes"));
    let name = t.name.as_deref();
    // system:node ClusterRole: nodes record events (create, patch, update) and read them.
    if node.is_some()
        && t.kind.resource == "events"
        && matches!(verb, "create" | "patch" | "update" | "get" | "list")
    {
        return Ok(());
    }
    if let (Some(node), "nodes") = (node, t.kind.resource) {
        // system:node ClusterRole: read every Node; NodeRestriction: change only its own.
        let own = name == Some(node);
        let ok = matches!(verb, "get" | "list" | "watch")
            || (verb == "create" && t.name.is_none())
            || (own && t.sub.as_deref() == Some("status") && verb == "update");
        if ok {
            return Ok(());
        }
    }
    let a = Attrs {
        verb,
        group: t.kind.group,
        resource: t.kind.resource,
        subresource: t.sub.as_deref(),
        name,
    };
    if rbac::allows(shared, user, &a) {
        return Ok(());
    }
    let res = match &t.sub {
        Some(s) => format!("{}/{s}", t.kind.resource),
        None => t.kind.resource.to_string(),
    };
    let what = match name {
        Some(n) => format!("{} \"{n}\" is forbidden", qualified(t.kind)),
        None => format!("{} is forbidden", qualified(t.kind)),
    };
    let scope = if t.kind.namespaced {
        format!("in the namespace \"{}\"", t.namespace)
    } else {
        "at the cluster scope".into()
    };
    let mut e = ApiError::new(
        403,
        "Forbidden",
        format!(
            "{what}: User \"{}\" cannot {verb} resource \"{res}\" in API group \"{}\" {scope}",
            user.name, t.kind.group
        ),
    );
    e.name = t.name.clone();
    Err(e)
}

/// Serves one request for a [`Target`]; returns the HTTP status and JSON body.
pub fn handle(
    shared: &Shared,
    user: &User,
    method: &Method,
    t: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let verb = match (method, &t.name) {
        (&Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("the stand-in does not serve watches of {}", t.kind.resource),
            ))
        }
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::DELETE, Some(_)) => "delete",
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "{method} on {} is not modelled by the stand-in",
                    t.kind.resource
                ),
            ))
        }
    };
    authorize(shared, user, verb, t)?;
    match verb {
        "list" => Ok((200, list(shared, t))),
        "get" => get(shared, t).map(|v| (200, v)),
        "create" => create(shared, t, decode(t.kind, body)?).map(|v| (201, v)),
        "update" => update(shared, t, decode(t.kind, body)?).map(|v| (200, v)),
        _ => delete(shared, t).map(|v| (200, v)),
    }
}

fn decode(kind: &Kind, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    if let Some(k) = v.get("kind").and_then(Value::as_str) {
        if k != kind.kind {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): kind {k}",
                kind.kind
            )));
        }
    }
    let v = (kind.typed)(v)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    // A custom resource is checked against its CRD's schema (422), not a Go type.
    if kind.resource == crate::carotation::RESOURCE {
        return crate::carotation::validate(v);
    }
    Ok(v)
}

fn meta(v: &Value) -> ObjectMeta {
    serde_json::from_value(v.get("metadata").cloned().unwrap_or(Value::Null)).unwrap_or_default()
}

fn stamp(v: &mut Value, kind: &Kind, m: ObjectMeta) {
    v["metadata"] = serde_json::to_value(m).expect("metadata");
    v["apiVersion"] = json!(kind.api_version);
    v["kind"] = json!(kind.kind);
}

pub(crate) fn next_rv(shared: &Shared) -> String {
    let mut st = lock(&shared.store);
    st.rv += 1;
    st.rv.to_string()
}

fn list(shared: &Shared, t: &Target) -> Value {
    let prefix = if t.kind.namespaced {
        key(t.kind.resource, &t.namespace, "")
    } else {
        format!("{}/", t.kind.resource)
    };
    let items: Vec<Value> = lock(&shared.objects)
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .collect();
    let rv = lock(&shared.store).rv;
    json!({
        "apiVersion": t.kind.api_version,
        "kind": format!("{}List", t.kind.kind),
        "metadata": ListMeta { resource_version: Some(rv.to_string()), ..Default::default() },
        "items": items,
    })
}

fn get(shared: &Shared, t: &Target) -> Result<Value, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    lock(&shared.objects)
        .get(&key(t.kind.resource, &t.namespace, name))
        .cloned()
        .ok_or_else(|| not_found(t.kind, name))
}

pub(crate) fn create(shared: &Shared, t: &Target, mut obj: Value) -> Result<Value, ApiError> {
    let mut m = meta(&obj);
    if t.kind.namespaced {
        match m.namespace.as_deref() {
            Some(ns) if !ns.is_empty() && ns != t.namespace => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object does not match the namespace sent on the request ({ns} != {})",
                    t.namespace
                )))
            }
            _ => m.namespace = Some(t.namespace.clone()),
        }
    }
    let name = match (&m.name, &m.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(g)) if !g.is_empty() => format!("{g}{}", crate::api::random_suffix()),
        _ => {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", t.kind.kind),
            ))
        }
    };
    let mut objects = lock(&shared.objects);
    let k = key(t.kind.resource, &t.namespace, &name);
    if objects.contains_key(&k) {
        let mut e = ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(t.kind)),
        );
        e.name = Some(name);
        return Err(e);
    }
    m.name = Some(name);
    m.uid = Some(crate::api::uuid4());
    m.creation_timestamp = Some(now_time());
    m.resource_version = Some(next_rv(shared));
    m.managed_fields = None;
    // A custom resource's status comes only through its status subresource.
    if t.kind.resource == crate::carotation::RESOURCE {
        obj.as_object_mut().map(|o| o.remove("status"));
    }
    stamp(&mut obj, t.kind, m);
    objects.insert(k, obj.clone());
    Ok(obj)
}

fn update(shared: &Shared, t: &Target, mut obj: Value) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let m = meta(&obj);
    if m.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            m.name.unwrap_or_default()
        )));
    }
    let mut objects = lock(&shared.objects);
    let k = key(t.kind.resource, &t.namespace, &name);
    let old = objects
        .get(&k)
        .cloned()
        .ok_or_else(|| not_found(t.kind, &name))?;
    let mut old_meta = meta(&old);
    if let Some(rv) = m.resource_version.as_deref().filter(|r| !r.is_empty()) {
        if Some(rv) != old_meta.resource_version.as_deref() {
            let mut e = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    qualified(t.kind)
                ),
            );
            e.name = Some(name);
            return Err(e);
        }
    }
    if t.kind.status {
        if t.sub.is_some() {
            // Status update: only the status changes.
            let status = obj.get("status").cloned();
            obj = old.clone();
            match status {
                Some(s) => obj["status"] = s,
                None => {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
            }
        } else if let Some(s) = old.get("status") {
            obj["status"] = s.clone();
        }
    }
    if t.sub.is_none() {
        old_meta.labels = m.labels;
        old_meta.annotations = m.annotations;
    }
    old_meta.resource_version = Some(next_rv(shared));
    stamp(&mut obj, t.kind, old_meta);
    objects.insert(k, obj.clone());
    Ok(obj)
}

fn delete(shared: &Shared, t: &Target) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let old = lock(&shared.objects)
        .remove(&key(t.kind.resource, &t.namespace, &name))
        .ok_or_else(|| not_found(t.kind, &name))?;
    next_rv(shared);
    let status = Status {
        status: Some("Success".into()),
        details: Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusDetails {
                name: Some(name),
                group: Some(t.kind.group.into()),
                kind: Some(t.kind.resource.into()),
                uid: meta(&old).uid,
                ..Default::default()
            },
        ),
        ..Default::default()
    };
    Ok(serde_json::to_value(status).expect("status"))
}

/// Discovery entries for `/api/v1` or `/apis/<group>/v1`.
pub fn discovery_resources(prefix: &str) -> Vec<Value> {
    KINDS
        .iter()
        .filter(|k| k.prefix == prefix)
        .flat_map(|k| {
            let mut main = json!({"name": k.resource, "singularName": k.kind.to_lowercase(),
                "namespaced": k.namespaced, "kind": k.kind,
                "verbs": ["create", "delete", "get", "list", "update"]});
            // CARotations take merge and apply patches (crate::carotation).
            if k.resource == crate::carotation::RESOURCE {
                main["verbs"] = json!(["create", "delete", "get", "list", "patch", "update"]);
            }
            // Events also take a merge patch (crate::core_events), as kubectl's `ev`.
            if k.resource == "events" {
                main["verbs"] = json!(["create", "delete", "get", "list", "patch", "update"]);
                main["shortNames"] = json!(["ev"]);
            }
            let status = k.status.then(|| {
                json!({"name": format!("{}/status", k.resource),
                "singularName": "", "namespaced": k.namespaced, "kind": k.kind,
                "verbs": if k.resource == crate::carotation::RESOURCE { json!(["get", "patch", "update"]) } else { json!(["get", "update"]) }})
            });
            std::iter::once(main).chain(status)
        })
        .collect()
}
