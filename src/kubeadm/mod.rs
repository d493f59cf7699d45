//! kubeadm's conventions, for a control-plane certificate the agent creates from nothing:
//! the subject and SANs kubeadm would give `apiserver`, `etcd-server` and `etcd-peer`
//! (cmd/kubeadm/app/util/pkiutil: GetAPIServerAltNames, GetEtcdAltNames,
//! GetEtcdPeerAltNames). Pure: the inputs are resolved from the config and the node by
//! [`node`].

pub mod kubeconfig;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::pki::issue::Usage;

/// `certificates[].profile`: what a certificate created from nothing says, where the
/// config leaves it out (a renewal keeps what the current certificate says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Profile {
    #[serde(rename = "kubeadm-apiserver")]
    Apiserver,
    #[serde(rename = "kubeadm-etcd-server")]
    EtcdServer,
    #[serde(rename = "kubeadm-etcd-peer")]
    EtcdPeer,
}

/// The `kubeadm:` section: kubeadm's inputs to those SANs. Absent keys come from kubeadm's
/// own config file when it is on the node, else from kubeadm's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeadmSpec {
    /// The file given to `kubeadm init/join --config` (InitConfiguration,
    /// ClusterConfiguration, JoinConfiguration documents); read when present.
    #[serde(default = "default_config_file")]
    pub config_file: PathBuf,
    /// `networking.dnsDomain` (kubeadm: cluster.local).
    #[serde(default)]
    pub dns_domain: Option<String>,
    /// `networking.serviceSubnet` (kubeadm: 10.96.0.0/12); its first address is a SAN of
    /// the API server (the `kubernetes` Service's ClusterIP).
    #[serde(default)]
    pub service_subnet: Option<String>,
    /// The node's addresses (kubeadm: the advertise address). Empty: detected.
    #[serde(default)]
    pub node_addresses: Vec<IpAddr>,
}

fn default_config_file() -> PathBuf {
    "/etc/kubernetes/kubeadm-config.yaml".into()
}

impl Default for KubeadmSpec {
    fn default() -> Self {
        KubeadmSpec {
            config_file: default_config_file(),
            dns_domain: None,
            service_subnet: None,
            node_addresses: vec![],
        }
    }
}

pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_BIND_PORT: u16 = 6443;
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";

/// Everything the SANs depend on, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub node_name: String,
    pub dns_domain: String,
    /// The first (or only) service CIDR.
    pub service_subnet: String,
    pub node_addresses: Vec<IpAddr>,
    /// `controlPlaneEndpoint` (host or host:port), a SAN of the API server.
    pub control_plane_endpoint: Option<String>,
    /// `apiServer.certSANs`, `etcd.local.serverCertSANs`, `etcd.local.peerCertSANs`.
    pub apiserver_sans: Vec<String>,
    pub etcd_server_sans: Vec<String>,
    pub etcd_peer_sans: Vec<String>,
    /// `localAPIEndpoint.bindPort` (kubeadm: 6443): this node's API server port.
    pub bind_port: u16,
    /// `clusterName` (kubeadm: kubernetes): the cluster's name in kubeconfigs.
    pub cluster_name: String,
}

/// What a certificate created under a profile says.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usages: Vec<Usage>,
}

/// The first address of a CIDR (`10.96.0.0/12` -> 10.96.0.1), as kubeadm's
/// GetIndexedIP(subnet, 1). Dual-stack `a,b`: the first.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, String> {
    let first = cidr.split(',').next().unwrap_or("").trim();
    let net: ipnet::IpNet = first
        .parse()
        .map_err(|_| format!("service subnet {cidr:?} is not a CIDR like 10.96.0.0/12"))?;
    let base = net.network();
    let ip = match base {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4).wrapping_add(1)).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6).wrapping_add(1)).into()),
    };
    if !net.contains(&ip) {
        return Err(format!("service subnet {cidr:?} has no first address"));
    }
    Ok(ip)
}

/// Host part of `host`, `host:port` or `[v6]:port`.
fn endpoint_host(endpoint: &str) -> &str {
    let e = endpoint.trim();
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match e.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => e,
    }
}

/// Names and addresses in order, each once; strings that parse as IPs go to the IPs.
#[derive(Default)]
struct AltNames {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl AltNames {
    fn add(&mut self, s: &str) {
        let s = s.trim();
        if s.is_empty() {
            return;
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => self.add_ip(ip),
            Err(_) if !self.dns.iter().any(|d| d == s) => self.dns.push(s.to_string()),
            Err(_) => {}
        }
    }
    fn add_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }
}

/// kubeadm's subject, SANs and usages for `profile` on this node.
pub fn defaults(profile: Profile, f: &Facts) -> Result<Defaults, String> {
    if f.node_name.is_empty() {
        return Err("the node name is empty (set nodeName in the config)".into());
    }
    let mut alt = AltNames::default();
    let (common_name, usages, extra) = match profile {
        Profile::Apiserver => {
            alt.add(&f.node_name);
            for d in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
                alt.add(d);
            }
            alt.add(&format!(
                "kubernetes.default.svc.{}",
                f.dns_domain.trim_matches('.')
            ));
            alt.add_ip(first_service_ip(&f.service_subnet)?);
            f.node_addresses.iter().for_each(|ip| alt.add_ip(*ip));
            if let Some(e) = &f.control_plane_endpoint {
                alt.add(endpoint_host(e));
            }
            (
                "kube-apiserver".to_string(),
                vec![Usage::ServerAuth],
                &f.apiserver_sans,
            )
        }
        Profile::EtcdServer | Profile::EtcdPeer => {
            alt.add(&f.node_name);
            alt.add("localhost");
            f.node_addresses.iter().for_each(|ip| alt.add_ip(*ip));
            alt.add_ip(IpAddr::from([127, 0, 0, 1]));
            alt.add_ip(std::net::Ipv6Addr::LOCALHOST.into());
            let extra = if profile == Profile::EtcdServer {
                &f.etcd_server_sans
            } else {
                &f.etcd_peer_sans
            };
            (
                f.node_name.clone(),
                vec![Usage::ServerAuth, Usage::ClientAuth],
                extra,
            )
        }
    };
    extra.iter().for_each(|s| alt.add(s));
    Ok(Defaults {
        common_name,
        dns_names: alt.dns,
        ip_addresses: alt.ips,
        usages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            node_name: "cp1".into(),
            dns_domain: DEFAULT_DNS_DOMAIN.into(),
            service_subnet: DEFAULT_SERVICE_SUBNET.into(),
            node_addresses: vec!["192.168.1.10".parse().unwrap()],
            control_plane_endpoint: None,
            apiserver_sans: vec![],
            etcd_server_sans: vec![],
            etcd_peer_sans: vec![],
            bind_port: DEFAULT_BIND_PORT,
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
        }
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// kubeadm's GetAPIServerAltNames with its defaults.
    #[test]
    fn apiserver_gets_kubeadms_sans() {
        let d = defaults(Profile::Apiserver, &facts()).unwrap();
        assert_eq!(d.common_name, "kube-apiserver");
        assert_eq!(
            d.dns_names,
            [
                "cp1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"
            ]
        );
        assert_eq!(d.ip_addresses, ips(&["10.96.0.1", "192.168.1.10"]));
        assert_eq!(d.usages, [Usage::ServerAuth]);
    }

    #[test]
    fn apiserver_follows_cluster_settings() {
        let f = Facts {
            dns_domain: "corp.example".into(),
            service_subnet: "10.200.0.0/16,fd00:10::/108".into(),
            control_plane_endpoint: Some("api.corp.example:6443".into()),
            apiserver_sans: vec!["10.0.0.100".into(), "lb.corp.example".into()],
            ..facts()
        };
        let d = defaults(Profile::Apiserver, &f).unwrap();
        assert!(d
            .dns_names
            .contains(&"kubernetes.default.svc.corp.example".into()));
        assert!(d.dns_names.ends_with(&[
            "api.corp.example".to_string(),
            "lb.corp.example".to_string()
        ]));
        assert_eq!(
            d.ip_addresses,
            ips(&["10.200.0.1", "192.168.1.10", "10.0.0.100"])
        );
        let f = Facts {
            control_plane_endpoint: Some("[fd00::5]:6443".into()),
            ..facts()
        };
        assert!(defaults(Profile::Apiserver, &f)
            .unwrap()
            .ip_addresses
            .contains(&"fd00::5".parse().unwrap()));
    }

    /// kubeadm's GetEtcdAltNames / GetEtcdPeerAltNames: CN and SANs the node's.
    #[test]
    fn etcd_server_and_peer_are_the_nodes() {
        for p in [Profile::EtcdServer, Profile::EtcdPeer] {
            let d = defaults(p, &facts()).unwrap();
            assert_eq!(d.common_name, "cp1");
            assert_eq!(d.dns_names, ["cp1", "localhost"]);
            assert_eq!(d.ip_addresses, ips(&["192.168.1.10", "127.0.0.1", "::1"]));
            assert_eq!(d.usages, [Usage::ServerAuth, Usage::ClientAuth]);
        }
        let f = Facts {
            etcd_peer_sans: vec!["etcd-0.example".into()],
            ..facts()
        };
        assert!(defaults(Profile::EtcdPeer, &f)
            .unwrap()
            .dns_names
            .contains(&"etcd-0.example".into()));
        assert!(!defaults(Profile::EtcdServer, &f)
            .unwrap()
            .dns_names
            .contains(&"etcd-0.example".into()));
    }

    #[test]
    fn bad_inputs_are_named() {
        let f = Facts {
            service_subnet: "10.96.0.0".into(),
            ..facts()
        };
        let e = defaults(Profile::Apiserver, &f).unwrap_err();
        assert!(e.contains("10.96.0.0") && e.contains("CIDR"), "{e}");
        let f = Facts {
            node_name: String::new(),
            ..facts()
        };
        assert!(defaults(Profile::EtcdServer, &f)
            .unwrap_err()
            .contains("node name"));
        assert_eq!(
            first_service_ip("fd00:10::/108").unwrap(),
            "fd00:10::1".parse::<IpAddr>().unwrap()
        );
    }
}
