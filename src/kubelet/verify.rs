//! The checks an issued kubelet certificate passes before it is installed: a server that
//! answers wrongly must not get a bad certificate onto the node.

use std::collections::BTreeSet;
use std::net::IpAddr;

use time::OffsetDateTime;

use crate::pki::csr::{node_user, KubeletCert};
use crate::pki::CertInfo;

/// What we asked for.
pub struct Requested<'a> {
    pub kind: KubeletCert,
    pub node_name: &'a str,
    pub public_key: &'a [u8],
    pub dns_names: &'a [String],
    pub ip_addresses: &'a [IpAddr],
}

/// `chain_pem`: `status.certificate`. `cluster_cas`: the CAs of the kubeconfig.
pub fn check_issued(
    chain_pem: &[u8],
    req: &Requested,
    cluster_cas: &[CertInfo],
    now: OffsetDateTime,
) -> Result<CertInfo, String> {
    let m =
        crate::pki::parse_material(chain_pem).map_err(|e| format!("status.certificate: {e}"))?;
    let leaf_der = m
        .certificates
        .first()
        .ok_or("status.certificate holds no certificate")?;
    let leaf = CertInfo::parse(leaf_der).map_err(|e| format!("issued certificate: {e}"))?;
    if leaf.public_key != req.public_key {
        return Err(
            "the issued certificate is for a different key than the one in our request".into(),
        );
    }
    let want_cn = node_user(req.node_name);
    if leaf.common_name.as_deref() != Some(want_cn.as_str())
        || leaf.organizations != ["system:nodes"]
    {
        return Err(format!(
            "the issued certificate is for {:?}, not CN={want_cn}, O=system:nodes",
            leaf.subject
        ));
    }
    let usage = match req.kind {
        KubeletCert::Client => "clientAuth",
        KubeletCert::Serving => "serverAuth",
    };
    if !leaf.ext_key_usages.iter().any(|u| u == usage) {
        return Err(format!(
            "the issued certificate lacks the {usage} usage (has {:?})",
            leaf.ext_key_usages
        ));
    }
    if leaf.is_ca {
        return Err("the issued certificate is a CA certificate".into());
    }
    if req.kind == KubeletCert::Serving {
        let got: BTreeSet<String> = leaf
            .dns_names
            .iter()
            .cloned()
            .chain(leaf.ip_addresses.iter().map(|i| i.to_string()))
            .collect();
        let want: BTreeSet<String> = req
            .dns_names
            .iter()
            .cloned()
            .chain(req.ip_addresses.iter().map(|i| i.to_string()))
            .collect();
        if got != want {
            return Err(format!(
                "the issued certificate's SANs {got:?} differ from the requested {want:?}"
            ));
        }
    }
    if now >= leaf.not_after {
        return Err("the issued certificate has already expired".into());
    }
    if !chains_to(&leaf, cluster_cas) {
        return Err(format!(
            "the issued certificate (issuer {}) does not chain to the cluster CA",
            leaf.issuer
        ));
    }
    Ok(leaf)
}

/// Whether `leaf` was signed by one of `cas` (issuer name and signature).
pub fn chains_to(leaf: &CertInfo, cas: &[CertInfo]) -> bool {
    cas.iter()
        .any(|ca| leaf.issuer_der == ca.subject_der && leaf.is_signed_by(ca))
}

/// The certificates of a kubeconfig's CA bundle (unreadable ones left out).
pub fn cas_of(ca_pem: &[u8]) -> Vec<CertInfo> {
    crate::pki::parse_material(ca_pem)
        .map(|m| {
            m.certificates
                .iter()
                .filter_map(|d| CertInfo::parse(d).ok())
                .collect()
        })
        .unwrap_or_default()
}
