//! The library API for Nodes, Leases, Events and RBAC bindings (crate::objects, crate::rbac).

use anyhow::{anyhow, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, NodeAddress, NodeStatus};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::objects::{key, KINDS};
use crate::rbac::Subject;
use crate::state::lock;
use crate::StandIn;

fn node_object(name: &str, addresses: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(
                addresses
                    .iter()
                    .map(|(t, a)| NodeAddress {
                        type_: t.to_string(),
                        address: a.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl StandIn {
    fn objects_of(&self, resource: &str, namespace: &str) -> Vec<Value> {
        let prefix = key(resource, namespace, "");
        lock(&self.shared.objects)
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn store_object(&self, resource: &str, namespace: &str, name: &str, v: Value) {
        lock(&self.shared.objects).insert(key(resource, namespace, name), v);
    }

    /// Registers Node `name` with `status.addresses` (`(type, address)`: `Hostname`,
    /// `InternalIP`, `ExternalIP`, `InternalDNS`, `ExternalDNS`), as kubelet does; replaces
    /// the addresses of an existing Node.
    pub fn set_node(&self, name: &str, addresses: &[(&str, &str)]) -> Result<Node> {
        let kind = KINDS.iter().find(|k| k.resource == "nodes").expect("nodes");
        let old = lock(&self.shared.objects)
            .get(&key("nodes", "", name))
            .cloned();
        let mut node = node_object(name, addresses);
        if let Some(old) = old {
            let old: Node = serde_json::from_value(old)?;
            node.metadata = old.metadata;
        } else {
            node.metadata.uid = Some(crate::api::uuid4());
            node.metadata.creation_timestamp = Some(crate::state::now_time());
        }
        node.metadata.resource_version = Some({
            let mut st = lock(&self.shared.store);
            st.rv += 1;
            st.rv.to_string()
        });
        let mut v = serde_json::to_value(&node)?;
        v["apiVersion"] = kind.api_version.into();
        v["kind"] = kind.kind.into();
        self.store_object("nodes", "", name, v);
        Ok(node)
    }

    /// Deletes Node `name`.
    pub fn delete_node(&self, name: &str) -> Result<()> {
        lock(&self.shared.objects)
            .remove(&key("nodes", "", name))
            .map(|_| ())
            .ok_or_else(|| anyhow!("node {name:?} not found"))
    }

    /// All Nodes.
    pub fn nodes(&self) -> Vec<Node> {
        self.objects_of("nodes", "")
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// The Lease `namespace/name`, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        lock(&self.shared.objects)
            .get(&key("leases", namespace, name))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The Events in `namespace`, by name.
    pub fn events(&self, namespace: &str) -> Vec<Event> {
        self.objects_of("events", namespace)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Binds `role` to a user or group (what a ClusterRoleBinding does); its rules then
    /// authorize that subject's requests, `approve` on `signers` included.
    pub fn bind_cluster_role(&self, subject: Subject, role: ClusterRole) {
        lock(&self.shared.bindings).push((subject, role));
    }
}
