//! A kubeconfig made from nothing, as `kubeadm init phase kubeconfig` makes admin.conf,
//! super-admin.conf, controller-manager.conf and scheduler.conf: the cluster CA embedded,
//! the server kubeadm would put there, and an embedded client certificate and key. Pure:
//! the caller issues the certificate and writes the file.

use std::path::Path;

use base64::Engine;

use super::Facts;

/// Where a new kubeconfig points, and the names kubeadm gives its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `https://host:port`.
    pub server: String,
    /// `clusterName` of ClusterConfiguration (kubeadm: kubernetes).
    pub cluster: String,
}

/// `https://host:port`, IPv6 in brackets (Go's net.JoinHostPort).
fn url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// The server of kubeconfig `path`, as kubeadm chooses it (kubeconfig.go,
/// getKubeConfigSpecsBase): controller-manager.conf and scheduler.conf talk to this node's
/// own API server (advertise address and bind port); admin.conf, super-admin.conf and any
/// other to `controlPlaneEndpoint` when set (its port, else the bind port), else to this
/// node's.
pub fn target(path: &Path, f: &Facts) -> Result<Target, String> {
    let local = || {
        f.node_addresses
            .first()
            .map(|ip| url(&ip.to_string(), f.bind_port))
            .ok_or_else(|| {
                "no address for this node's API server (set kubeadm.nodeAddresses, or \
                 localAPIEndpoint.advertiseAddress in kubeadm's config file)"
                    .to_string()
            })
    };
    let own = matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("controller-manager.conf" | "scheduler.conf")
    );
    let server = match (&f.control_plane_endpoint, own) {
        (Some(e), false) => {
            let host = super::endpoint_host(e);
            let port = e
                .trim()
                .rsplit_once(':')
                .filter(|(h, _)| !h.contains(':') || h.ends_with(']'))
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or(f.bind_port);
            url(host, port)
        }
        _ => local()?,
    };
    Ok(Target {
        server,
        cluster: f.cluster_name.clone(),
    })
}

/// The file's text, as kubeadm writes it (client-go's clientcmd: keys in order); the
/// user is the certificate's CN and the context `user@cluster`.
pub fn render(t: &Target, ca_pem: &[u8], user: &str, cert_pem: &[u8], key_pem: &[u8]) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let context = format!("{user}@{}", t.cluster);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\n\
         contexts:\n- context:\n    cluster: {cluster}\n    user: {user}\n  name: {context}\n\
         current-context: {context}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n\
         \x20   client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
        server = t.server,
        cluster = yaml_scalar(&t.cluster),
        user = yaml_scalar(user),
        context = yaml_scalar(&context),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// `system:kube-scheduler` stays a plain scalar (a colon not followed by a space); a
/// name YAML would read as something else (`true`, `1.10`, `a b`) is quoted.
fn yaml_scalar(s: &str) -> String {
    let special = ["true", "false", "yes", "no", "on", "off", "null", "~"]
        .contains(&s.to_ascii_lowercase().as_str())
        || s.parse::<f64>().is_ok();
    let plain = !s.is_empty()
        && !special
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@/".contains(c))
        && !s.starts_with(['-', ':', '@'])
        && !s.ends_with(':');
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn facts() -> Facts {
        Facts {
            node_name: "cp1".into(),
            dns_domain: super::super::DEFAULT_DNS_DOMAIN.into(),
            service_subnet: super::super::DEFAULT_SERVICE_SUBNET.into(),
            node_addresses: vec!["192.168.1.10".parse().unwrap()],
            control_plane_endpoint: None,
            apiserver_sans: vec![],
            etcd_server_sans: vec![],
            etcd_peer_sans: vec![],
            bind_port: 6443,
            cluster_name: "kubernetes".into(),
        }
    }

    fn server(file: &str, f: &Facts) -> String {
        target(Path::new("/etc/kubernetes").join(file).as_path(), f)
            .unwrap()
            .server
    }

    /// kubeadm's getKubeConfigSpecsBase: the control-plane endpoint for the admins, this
    /// node's own API server for the controller-manager and the scheduler.
    #[test]
    fn servers_as_kubeadm_chooses_them() {
        let f = facts();
        for file in [
            "admin.conf",
            "super-admin.conf",
            "scheduler.conf",
            "controller-manager.conf",
        ] {
            assert_eq!(server(file, &f), "https://192.168.1.10:6443", "{file}");
        }
        let f = Facts {
            control_plane_endpoint: Some("api.example".into()),
            bind_port: 8443,
            ..facts()
        };
        assert_eq!(server("admin.conf", &f), "https://api.example:8443");
        assert_eq!(server("super-admin.conf", &f), "https://api.example:8443");
        assert_eq!(server("scheduler.conf", &f), "https://192.168.1.10:8443");
        let f = Facts {
            control_plane_endpoint: Some("[fd00::5]:6444".into()),
            node_addresses: vec!["fd00::10".parse().unwrap()],
            ..facts()
        };
        assert_eq!(server("admin.conf", &f), "https://[fd00::5]:6444");
        assert_eq!(
            server("controller-manager.conf", &f),
            "https://[fd00::10]:6443"
        );
        let f = Facts {
            node_addresses: vec![],
            ..facts()
        };
        let e = target(Path::new("/etc/kubernetes/scheduler.conf"), &f).unwrap_err();
        assert!(e.contains("kubeadm.nodeAddresses"), "{e}");
    }

    #[test]
    fn rendered_as_kubeadm_writes_it() {
        let t = Target {
            server: "https://10.0.0.1:6443".into(),
            cluster: "kubernetes".into(),
        };
        let text = render(&t, b"CA", "system:kube-scheduler", b"CERT", b"KEY");
        assert_eq!(
            text,
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://10.0.0.1:6443\n  name: kubernetes\n\
             contexts:\n- context:\n    cluster: kubernetes\n    user: system:kube-scheduler\n  name: system:kube-scheduler@kubernetes\n\
             current-context: system:kube-scheduler@kubernetes\nkind: Config\npreferences: {}\nusers:\n- name: system:kube-scheduler\n  user:\n\
             \x20   client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n"
        );
        let kc = crate::kube::kubeconfig::Kubeconfig::parse(text.as_bytes()).unwrap();
        assert_eq!(
            crate::kube::kubeconfig::current_user_name(&kc).unwrap(),
            "system:kube-scheduler"
        );
        assert_eq!(yaml_scalar("a b"), "\"a b\"");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("1.10"), "\"1.10\"");
    }
}
