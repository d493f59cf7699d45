//! What the kubeadm conventions need from the node: kubeadm's own config file when it is
//! there, the node's addresses, and whether this is a control-plane node (where a missing
//! control-plane certificate belongs and may be created).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::Config;
use crate::kubeadm::{
    Facts, KubeadmSpec, DEFAULT_BIND_PORT, DEFAULT_CLUSTER_NAME, DEFAULT_DNS_DOMAIN,
    DEFAULT_SERVICE_SUBNET,
};
use crate::paths::{NodeRoot, ReadError};

/// kubeadm writes this manifest on every control-plane node.
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

/// The inputs of kubeadm's SANs: the config's keys, else kubeadm's config file on the node,
/// else kubeadm's defaults. A kubeadm config file that cannot be read is an error naming it.
pub fn facts(root: &NodeRoot, config: &Config) -> Result<Facts, String> {
    let spec: &KubeadmSpec = &config.kubeadm;
    let file = read_kubeadm_file(root, &spec.config_file)?;
    let strings = |kind: &str, pointer: &str| -> Vec<String> {
        file.iter()
            .filter(|d| d["kind"] == kind)
            .filter_map(|d| d.pointer(pointer))
            .flat_map(|v| match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                _ => vec![],
            })
            .collect()
    };
    let first = |kind: &str, pointer: &str| strings(kind, pointer).into_iter().next();
    let port = |kind: &str, pointer: &str| {
        file.iter()
            .filter(|d| d["kind"] == kind)
            .find_map(|d| d.pointer(pointer)?.as_u64())
            .and_then(|p| u16::try_from(p).ok())
    };
    let mut node_addresses = spec.node_addresses.clone();
    if node_addresses.is_empty() {
        node_addresses = strings("InitConfiguration", "/localAPIEndpoint/advertiseAddress")
            .into_iter()
            .chain(strings(
                "JoinConfiguration",
                "/controlPlane/localAPIEndpoint/advertiseAddress",
            ))
            .filter_map(|a| a.parse().ok())
            .collect();
    }
    if node_addresses.is_empty() {
        node_addresses = detected_addresses();
    }
    let cc = "ClusterConfiguration";
    Ok(Facts {
        node_name: crate::kubelet::node_name(&config.node_name),
        dns_domain: spec
            .dns_domain
            .clone()
            .or_else(|| first(cc, "/networking/dnsDomain"))
            .unwrap_or_else(|| DEFAULT_DNS_DOMAIN.into()),
        service_subnet: spec
            .service_subnet
            .clone()
            .or_else(|| first(cc, "/networking/serviceSubnet"))
            .unwrap_or_else(|| DEFAULT_SERVICE_SUBNET.into()),
        node_addresses,
        control_plane_endpoint: first(cc, "/controlPlaneEndpoint").filter(|e| !e.is_empty()),
        apiserver_sans: strings(cc, "/apiServer/certSANs"),
        etcd_server_sans: strings(cc, "/etcd/local/serverCertSANs"),
        etcd_peer_sans: strings(cc, "/etcd/local/peerCertSANs"),
        bind_port: port("InitConfiguration", "/localAPIEndpoint/bindPort")
            .or_else(|| {
                port(
                    "JoinConfiguration",
                    "/controlPlane/localAPIEndpoint/bindPort",
                )
            })
            .unwrap_or(DEFAULT_BIND_PORT),
        cluster_name: first(cc, "/clusterName")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into()),
    })
}

/// The documents of kubeadm's config file; none when it is absent.
fn read_kubeadm_file(root: &NodeRoot, path: &Path) -> Result<Vec<Value>, String> {
    let at = |e: String| format!("kubeadm config {}: {e}", path.display());
    let bytes = match root.read(path) {
        Ok(b) => b,
        Err(ReadError::NotFound) => return Ok(vec![]),
        Err(e) => return Err(at(e.to_string())),
    };
    let text = String::from_utf8(bytes).map_err(|_| at("not UTF-8".into()))?;
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text)
        .map_err(|e| at(crate::yaml::render_error(&e)))
}

/// The node's addresses as kubeadm would advertise them: every interface address but
/// loopback and link-local (which no client dials).
pub fn detected_addresses() -> Vec<IpAddr> {
    let Ok(ifs) = if_addrs::get_if_addrs() else {
        return vec![];
    };
    let mut ips: Vec<IpAddr> = ifs
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Whether a missing certificate issued by the CA whose key is `ca_key` belongs on this
/// node: yes on a control-plane node (that CA's key is here, or the kube-apiserver static
/// pod manifest is). `Ok` says why it does, `Err` why not.
pub fn control_plane_evidence(root: &NodeRoot, ca_key: &Path) -> Result<String, String> {
    let exists = |p: &Path| {
        let h = root.host_path(p);
        h.exists() || h.is_symlink()
    };
    if exists(ca_key) {
        return Ok(format!(
            "a control-plane node: its CA key {} is here",
            ca_key.display()
        ));
    }
    let manifest = PathBuf::from(APISERVER_MANIFEST);
    if exists(&manifest) {
        return Ok(format!(
            "a control-plane node: {} is here",
            manifest.display()
        ));
    }
    Err(format!(
        "not created: not a control-plane node (no CA key {}, no {})",
        ca_key.display(),
        manifest.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        (d, r)
    }

    fn config(extra: &str) -> Config {
        Config::parse(
            Path::new("c.yaml"),
            &format!("apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: cp1\n{extra}"),
        )
        .unwrap()
    }

    #[test]
    fn config_keys_then_kubeadm_file_then_defaults() {
        let (d, root) = node();
        let f = facts(&root, &config("kubeadm: {nodeAddresses: [10.0.0.5]}\n")).unwrap();
        assert_eq!(f.dns_domain, "cluster.local");
        assert_eq!(f.service_subnet, "10.96.0.0/12");
        assert_eq!(f.node_addresses, ["10.0.0.5".parse::<IpAddr>().unwrap()]);

        std::fs::create_dir_all(d.path().join("etc/kubernetes")).unwrap();
        std::fs::write(
            d.path().join("etc/kubernetes/kubeadm-config.yaml"),
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint: {advertiseAddress: 192.168.5.5, bindPort: 6444}\n---\n\
             apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: prod\ncontrolPlaneEndpoint: api.example:6443\n\
             networking: {dnsDomain: corp.example, serviceSubnet: 10.200.0.0/16}\napiServer: {certSANs: [lb.example]}\n",
        )
        .unwrap();
        let f = facts(&root, &config("")).unwrap();
        assert_eq!(f.dns_domain, "corp.example");
        assert_eq!(f.service_subnet, "10.200.0.0/16");
        assert_eq!(f.node_addresses, ["192.168.5.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            f.control_plane_endpoint.as_deref(),
            Some("api.example:6443")
        );
        assert_eq!(f.apiserver_sans, ["lb.example"]);
        assert_eq!((f.bind_port, f.cluster_name.as_str()), (6444, "prod"));
        // The config's keys win.
        let f = facts(&root, &config("kubeadm: {dnsDomain: other.example}\n")).unwrap();
        assert_eq!(f.dns_domain, "other.example");

        std::fs::write(
            d.path().join("etc/kubernetes/kubeadm-config.yaml"),
            "kind: [unclosed\n",
        )
        .unwrap();
        let e = facts(&root, &config("")).unwrap_err();
        assert!(
            e.starts_with("kubeadm config /etc/kubernetes/kubeadm-config.yaml: "),
            "{e}"
        );
    }

    #[test]
    fn control_plane_by_ca_key_or_apiserver_manifest() {
        let (d, root) = node();
        let key = Path::new("/etc/kubernetes/pki/ca.key");
        let e = control_plane_evidence(&root, key).unwrap_err();
        assert!(e.contains("not a control-plane node"), "{e}");
        std::fs::create_dir_all(d.path().join("etc/kubernetes/manifests")).unwrap();
        std::fs::write(d.path().join(&APISERVER_MANIFEST[1..]), "").unwrap();
        assert!(control_plane_evidence(&root, key)
            .unwrap()
            .contains("kube-apiserver.yaml"));
        std::fs::remove_file(d.path().join(&APISERVER_MANIFEST[1..])).unwrap();
        std::fs::create_dir_all(d.path().join("etc/kubernetes/pki")).unwrap();
        std::fs::write(d.path().join("etc/kubernetes/pki/ca.key"), "").unwrap();
        assert!(control_plane_evidence(&root, key)
            .unwrap()
            .contains("CA key"));
    }
}
