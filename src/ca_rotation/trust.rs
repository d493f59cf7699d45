//! Trust points in kubeconfigs: the `certificate-authority-data` of every cluster entry
//! that holds a CA of the rotation (pure text in, text out).

use base64::Engine;
use serde_json::Value;

use super::bundle::{self, Pair};

/// The kubeconfig `text` with every cluster's embedded CA bundle that holds either CA of
/// `pair` set to `wanted` (other CAs in it kept); `None` when nothing changes. Clusters
/// that reference a CA file (`certificate-authority`) are left alone: the file is the
/// trust point. Every other field is kept; comments are not.
pub fn set_kubeconfig_cas(
    text: &str,
    pair: &Pair,
    wanted: &[&[u8]],
) -> Result<Option<String>, String> {
    let mut doc: Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("not a kubeconfig: {}", crate::config::render_yaml_error(&e)))?;
    let Some(clusters) = doc.get_mut("clusters").and_then(Value::as_array_mut) else {
        return Ok(None);
    };
    let mut changed = false;
    for (i, c) in clusters.iter_mut().enumerate() {
        let Some(data) = c
            .get_mut("cluster")
            .and_then(|c| c.get_mut("certificate-authority-data"))
        else {
            continue;
        };
        let Some(b64) = data.as_str() else { continue };
        let field = format!("clusters[{i}].certificate-authority-data");
        let pem = crate::kube::kubeconfig::decode_data(&field, b64)?;
        let existing = bundle::certificates(&pem).map_err(|e| format!("{field}: {e}"))?;
        if !bundle::holds_either(&existing, pair) {
            continue;
        }
        let updated = bundle::rebundle(&existing, pair, wanted);
        if updated != existing {
            let pem = bundle::to_pem(&updated);
            *data = Value::String(base64::engine::general_purpose::STANDARD.encode(pem));
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    serde_saphyr::to_string(&doc)
        .map(Some)
        .map_err(|e| format!("cannot write YAML: {e}"))
}

/// A cluster's name and the CA certificates it embeds.
pub type ClusterCas = (String, Vec<Vec<u8>>);

/// The CA certificates a kubeconfig's clusters embed, per cluster.
pub fn embedded_cas(text: &str) -> Result<Vec<ClusterCas>, String> {
    let kc = crate::kube::kubeconfig::Kubeconfig::parse(text.as_bytes())?;
    let mut out = Vec::new();
    for c in &kc.clusters {
        if let Some(b64) = &c.cluster.certificate_authority_data {
            let field = format!("clusters[{}].certificate-authority-data", c.name);
            let pem = crate::kube::kubeconfig::decode_data(&field, b64)?;
            out.push((
                c.name.clone(),
                bundle::certificates(&pem).map_err(|e| format!("{field}: {e}"))?,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(b: &[Vec<u8>]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bundle::to_pem(b))
    }

    #[test]
    fn rewrites_only_clusters_that_trust_the_rotating_ca() {
        // Any DER-looking bytes do for the bundle logic; use real certificates' shape.
        let (old, new, other) = (
            crate::ca_rotation::test_cert("a"),
            crate::ca_rotation::test_cert("b"),
            crate::ca_rotation::test_cert("c"),
        );
        let pair = Pair {
            old: old.clone(),
            new: new.clone(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: {}\n- name: elsewhere\n  cluster:\n    server: https://x\n    certificate-authority-data: {}\n- name: by-file\n  cluster: {{server: https://y, certificate-authority: /etc/kubernetes/pki/ca.crt}}\nusers: []\n",
            pem_of(std::slice::from_ref(&old)),
            pem_of(std::slice::from_ref(&other)),
        );
        let out = set_kubeconfig_cas(&text, &pair, &[&old, &new])
            .unwrap()
            .expect("changed");
        let cas = embedded_cas(&out).unwrap();
        assert_eq!(cas[0], ("k".to_string(), vec![old.clone(), new.clone()]));
        assert_eq!(cas[1], ("elsewhere".to_string(), vec![other.clone()]));
        assert!(out.contains("certificate-authority: /etc/kubernetes/pki/ca.crt"));
        // Idempotent.
        assert_eq!(
            set_kubeconfig_cas(&out, &pair, &[&old, &new]).unwrap(),
            None
        );
        let fin = set_kubeconfig_cas(&out, &pair, &[&new]).unwrap().unwrap();
        assert_eq!(embedded_cas(&fin).unwrap()[0].1, vec![new]);
    }
}
