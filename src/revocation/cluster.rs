//! RenewRevocation objects from the cluster (`revocation.cluster: true`): listed from
//! kube-system with the node's client certificate, by the command line on every run and by
//! the daemon in a task every `revocation.pollInterval` (no watch yet). Reading them needs
//! RBAC: the CRD file ships a ClusterRole and binding that let `system:nodes`
//! get/list/watch `renewrevocations`.

use crate::kube::client::ApiClient;
use crate::kubelet::Node;

use super::{parse_values, Loaded};

pub const PATH: &str =
    "/apis/certificates.microsoft.com/v1/namespaces/kube-system/renewrevocations";
pub const SOURCE: &str = "cluster kube-system/renewrevocations";

/// With `revocation.cluster: true` (and the kubelet section, whose credentials are used):
/// the cluster's entries, or why they could not be read. None when not configured.
pub async fn load(
    root: &crate::paths::NodeRoot,
    config: &crate::config::Config,
) -> Option<Result<Loaded, String>> {
    if !config.revocation.cluster {
        return None;
    }
    read(root, config).await
}

/// The cluster's entries whether or not `revocation.cluster` applies them (`revocations
/// --cluster`); None without a kubelet section, whose credentials read them.
pub async fn read(
    root: &crate::paths::NodeRoot,
    config: &crate::config::Config,
) -> Option<Result<Loaded, String>> {
    let spec = config.kubelet.as_ref()?;
    let store = crate::store::Store::new(root.clone(), config.history);
    let node = Node {
        root,
        spec,
        node_name: crate::kubelet::node_name(&config.node_name),
        store: &store,
    };
    Some(list(&node).await)
}

/// List and parse; an error says why the cluster's entries could not be read.
pub async fn list(node: &Node<'_>) -> Result<Loaded, String> {
    let (endpoint, creds) = node.mtls()?.ok_or(
        "no valid node client certificate yet (the kubelet client certificate comes first)",
    )?;
    let client = ApiClient::new(&endpoint, &creds).map_err(|e| e.to_string())?;
    let list = client.get_json(PATH).await.map_err(|e| e.to_string())?;
    let items = list
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or_else(|| format!("{PATH}: the answer has no items"))?;
    Ok(parse_values(SOURCE, items))
}
