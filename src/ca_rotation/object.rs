//! A `CARotation` object (kube-cert-agent.io/v1alpha1, etc/crds/), as `kubectl get -o yaml`
//! prints it: the phase the fleet is to reach and the new CA's certificate (pure).

use serde::Deserialize;

use super::record::Phase;

pub const API_VERSION: &str = "kube-cert-agent.io/v1alpha1";
pub const KIND: &str = "CARotation";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    api_version: String,
    kind: String,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    ca: String,
    phase: String,
    #[serde(rename = "newCACertificate")]
    new_ca_certificate: String,
}

/// What a node takes from the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub ca: String,
    pub phase: Phase,
    pub new_ca_pem: String,
}

pub fn parse(text: &str) -> Result<Wanted, String> {
    let d: Doc = serde_saphyr::from_str(text)
        .map_err(|e| format!("not a CARotation: {}", crate::config::render_yaml_error(&e)))?;
    wanted(d)
}

/// An item of a CARotation list, as the API server sends it (JSON).
pub fn from_value(v: &serde_json::Value) -> Result<Wanted, String> {
    let d: Doc =
        serde::Deserialize::deserialize(v).map_err(|e| format!("not a CARotation: {e}"))?;
    wanted(d)
}

fn wanted(d: Doc) -> Result<Wanted, String> {
    if d.api_version != API_VERSION || d.kind != KIND {
        return Err(format!(
            "expected {API_VERSION} {KIND}, got {} {}",
            d.api_version, d.kind
        ));
    }
    let phase = Phase::parse(&d.spec.phase).ok_or_else(|| {
        format!(
            "spec.phase: {:?} is not prepare, reissue or finalize",
            d.spec.phase
        )
    })?;
    Ok(Wanted {
        ca: d.spec.ca,
        phase,
        new_ca_pem: d.spec.new_ca_certificate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_phase_and_the_certificate() {
        let w = parse(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: CARotation\nmetadata: {name: r1}\nspec:\n  ca: cluster\n  phase: reissue\n  newCACertificate: |\n    -----BEGIN CERTIFICATE-----\n    AA==\n    -----END CERTIFICATE-----\nstatus: {nodes: []}\n",
        )
        .unwrap();
        assert_eq!((w.ca.as_str(), w.phase), ("cluster", Phase::Reissue));
        assert!(w.new_ca_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let e = parse(
            "apiVersion: v1\nkind: ConfigMap\nspec: {ca: a, phase: prepare, newCACertificate: x}\n",
        )
        .unwrap_err();
        assert!(
            e.contains("expected kube-cert-agent.io/v1alpha1 CARotation"),
            "{e}"
        );
        let e = parse("apiVersion: kube-cert-agent.io/v1alpha1\nkind: CARotation\nspec: {ca: a, phase: undo, newCACertificate: x}\n")
            .unwrap_err();
        assert!(e.contains("spec.phase"), "{e}");
    }
}
