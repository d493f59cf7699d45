//! Certificate signing requests exactly as kubelet builds them (pkg/kubelet/certificate:
//! CN `system:node:<name>`, O `system:nodes`), and the usages it asks for.

use std::net::IpAddr;

use rcgen::{CertificateParams, DnType, KeyPair};

pub const SIGNER_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SIGNER_SERVING: &str = "kubernetes.io/kubelet-serving";

/// Which kubelet certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletCert {
    Client,
    Serving,
}

impl KubeletCert {
    pub fn signer(self) -> &'static str {
        match self {
            KubeletCert::Client => SIGNER_CLIENT,
            KubeletCert::Serving => SIGNER_SERVING,
        }
    }

    /// The store name: `kubelet-client-current.pem`, `kubelet-server-current.pem`.
    pub fn base_name(self) -> &'static str {
        match self {
            KubeletCert::Client => "kubelet-client",
            KubeletCert::Serving => "kubelet-server",
        }
    }

    /// The config / CLI name.
    pub fn name(self) -> &'static str {
        match self {
            KubeletCert::Client => "kubelet-client",
            KubeletCert::Serving => "kubelet-serving",
        }
    }

    /// certificates.k8s.io usages, as kubelet asks for them (key encipherment only for RSA).
    pub fn usages(self, rsa: bool) -> Vec<&'static str> {
        let mut u = vec!["digital signature"];
        if rsa {
            u.push("key encipherment");
        }
        u.push(match self {
            KubeletCert::Client => "client auth",
            KubeletCert::Serving => "server auth",
        });
        u
    }
}

/// The node's identity in a CSR.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// A PEM CSR for `node_name`, signed by `key`; serving CSRs carry `dns` and `ips` as SANs.
pub fn build(
    kind: KubeletCert,
    node_name: &str,
    dns: &[String],
    ips: &[IpAddr],
    key: &KeyPair,
) -> Result<String, String> {
    if node_name.is_empty() {
        return Err("the node name is empty".into());
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(DnType::CommonName, node_user(node_name));
    if kind == KubeletCert::Serving {
        if dns.is_empty() && ips.is_empty() {
            return Err("a serving certificate needs at least one host name or IP address".into());
        }
        params.subject_alt_names = crate::pki::issue::subject_alt_names(dns, ips)?;
    }
    let csr = params
        .serialize_request(key)
        .map_err(|e| format!("cannot build the CSR: {e}"))?;
    csr.pem().map_err(|e| format!("cannot encode the CSR: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keygen::{generate, KeyType};
    use x509_parser::prelude::FromDer;

    #[test]
    fn client_and_serving_csrs_look_like_kubelets() {
        let key = generate(KeyType::EcdsaP256).unwrap();
        let pem = build(KubeletCert::Client, "node-1", &[], &[], &key).unwrap();
        let der = ::pem::parse(&pem).unwrap().into_contents();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        assert_eq!(
            csr.certification_request_info.subject.to_string(),
            "O=system:nodes, CN=system:node:node-1"
        );
        csr.verify_signature().unwrap();
        let pem = build(
            KubeletCert::Serving,
            "node-1",
            &["node-1".into()],
            &["10.0.0.5".parse().unwrap()],
            &key,
        )
        .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(build(KubeletCert::Serving, "node-1", &[], &[], &key)
            .unwrap_err()
            .contains("at least one"));
        assert_eq!(
            KubeletCert::Client.usages(false),
            ["digital signature", "client auth"]
        );
        assert_eq!(
            KubeletCert::Serving.usages(true),
            ["digital signature", "key encipherment", "server auth"]
        );
    }
}
