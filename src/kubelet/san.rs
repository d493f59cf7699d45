//! The serving certificate's SANs from the node's own `Node.status.addresses`, read through
//! the API as the node: exactly what an approver that ties SANs to the Node can prove. The
//! addresses are sorted, so a renewal asks for identical SANs unless the Node's changed.
//! Detected addresses are used only while the Node object does not exist (or cannot be read).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node as NodeObject;

use super::{Node, Progress};
use crate::kube::client::{ApiClient, ApiError};

/// Pure: the SANs for `types` among `(type, address)` pairs, sorted and deduplicated.
pub fn sans_of<'a>(
    addresses: impl IntoIterator<Item = (&'a str, &'a str)>,
    types: &[crate::config::NodeAddressType],
) -> (Vec<String>, Vec<IpAddr>) {
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for (t, a) in addresses {
        if !types.iter().any(|x| x.as_str() == t) {
            continue;
        }
        match (t, a.parse::<IpAddr>()) {
            ("InternalIP" | "ExternalIP", Ok(ip)) => ips.push(ip),
            ("InternalIP" | "ExternalIP", Err(_)) => {}
            _ => dns.push(a.to_string()),
        }
    }
    dns.sort();
    dns.dedup();
    ips.sort();
    ips.dedup();
    (dns, ips)
}

/// The Node's addresses as SANs; detected ones when the Node is missing or unreadable.
pub async fn from_node(
    node: &Node<'_>,
    client: &ApiClient,
    progress: Progress<'_>,
) -> (Vec<String>, Vec<IpAddr>) {
    let path = format!("/api/v1/nodes/{}", node.node_name);
    match client.get::<NodeObject>(&path).await {
        Ok(n) => {
            let addrs = n.status.and_then(|s| s.addresses).unwrap_or_default();
            let sans = sans_of(
                addrs.iter().map(|a| (a.type_.as_str(), a.address.as_str())),
                &node.spec.serving.address_types,
            );
            if sans.0.is_empty() && sans.1.is_empty() {
                progress(&format!(
                    "Node {} has no status.addresses of the configured types; using the detected addresses",
                    node.node_name
                ));
                return node.serving_addresses();
            }
            sans
        }
        Err(ApiError::Status { code: 404, .. }) => {
            progress(&format!(
                "Node {} does not exist yet; the serving CSR names the detected addresses",
                node.node_name
            ));
            node.serving_addresses()
        }
        Err(e) => {
            progress(&format!(
                "cannot read Node {} ({e}); the serving CSR names the detected addresses",
                node.node_name
            ));
            node.serving_addresses()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeAddressType::*;

    #[test]
    fn node_addresses_of_the_configured_types_sorted() {
        let addrs = [
            ("InternalIP", "10.0.0.5"),
            ("Hostname", "node-a"),
            ("ExternalIP", "203.0.113.7"),
            ("InternalDNS", "node-a.internal"),
            ("InternalIP", "10.0.0.5"),
            ("InternalIP", "not-an-ip"),
        ];
        let (dns, ips) = sans_of(
            addrs,
            &[Hostname, InternalDNS, ExternalDNS, InternalIP, ExternalIP],
        );
        assert_eq!(dns, ["node-a", "node-a.internal"]);
        assert_eq!(
            ips,
            [
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "203.0.113.7".parse().unwrap()
            ]
        );
        let (dns, ips) = sans_of(addrs, &[InternalIP]);
        assert!(dns.is_empty());
        assert_eq!(ips, ["10.0.0.5".parse::<IpAddr>().unwrap()]);
    }
}
