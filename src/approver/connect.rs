//! Where the approver's API server is and who it is: `--kubeconfig` (client certificate,
//! token or token file; embedded or referenced CA), or in-cluster (the pod's service
//! account token and CA, `KUBERNETES_SERVICE_HOST`/`_PORT`), as client-go's
//! `BuildConfigFromFlags` chooses.

use std::path::Path;

use crate::kube::client::{Credentials, Endpoint};
use crate::kube::kubeconfig::{self, decode_data, Kubeconfig};
use crate::paths::resolve_reference;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Endpoint and credentials from a kubeconfig file (its current context).
pub fn from_kubeconfig(path: &Path) -> Result<(Endpoint, Credentials), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let kc = Kubeconfig::parse(&read(path)?).map_err(at)?;
    let cluster_name = kubeconfig::current_cluster_name(&kc).map_err(at)?;
    let cluster = &kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .ok_or_else(|| at(format!("cluster {cluster_name:?} not found")))?
        .cluster;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| at(format!("cluster {cluster_name:?} has no server")))?;
    let (ca_pem, ca_source) = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(d), _) => (decode_data("certificate-authority-data", d).map_err(at)?, path.display().to_string()),
        (None, Some(f)) => {
            let p = resolve_reference(path, f);
            (read(&p)?, p.display().to_string())
        }
        (None, None) => return Err(at(format!(
            "cluster {cluster_name:?} has no certificate-authority(-data): the approver never talks to an unverified API server"
        ))),
    };
    let user_name = kubeconfig::current_user_name(&kc).map_err(at)?;
    let user = &kc
        .users
        .iter()
        .find(|u| u.name == user_name)
        .ok_or_else(|| at(format!("user {user_name:?} not found")))?
        .user;
    let data_or_file = |data: &Option<String>,
                        file: &Option<String>,
                        field: &str|
     -> Result<Option<Vec<u8>>, String> {
        match (data, file) {
            (Some(d), _) => decode_data(field, d).map(Some).map_err(at),
            (None, Some(f)) => read(&resolve_reference(path, f)).map(Some),
            (None, None) => Ok(None),
        }
    };
    let cert = data_or_file(
        &user.client_certificate_data,
        &user.client_certificate,
        "client-certificate-data",
    )?;
    let key = data_or_file(&user.client_key_data, &user.client_key, "client-key-data")?;
    let creds = match (cert, key, &user.token, &user.token_file) {
        (Some(cert_pem), Some(key_pem), _, _) => {
            Credentials::ClientCertificate { cert_pem, key_pem }
        }
        (_, _, Some(t), _) => Credentials::BearerToken(t.trim().to_string()),
        (_, _, None, Some(f)) => Credentials::BearerToken(
            String::from_utf8_lossy(&read(&resolve_reference(path, f))?)
                .trim()
                .to_string(),
        ),
        _ => {
            return Err(at(format!(
                "user {user_name:?} has neither a client certificate and key nor a token"
            )))
        }
    };
    Ok((
        Endpoint {
            server,
            ca_pem,
            ca_source,
        },
        creds,
    ))
}

/// Endpoint and credentials of the pod the approver runs in. The token is re-read on every
/// call: kubelet rotates projected service account tokens.
pub fn in_cluster() -> Result<(Endpoint, Credentials), String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        "not running in a pod (KUBERNETES_SERVICE_HOST is not set): pass --kubeconfig".to_string()
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let dir = Path::new(SA_DIR);
    let token = String::from_utf8_lossy(&read(&dir.join("token"))?)
        .trim()
        .to_string();
    let ca_path = dir.join("ca.crt");
    Ok((
        Endpoint {
            server: format!("https://{host}:{port}"),
            ca_pem: read(&ca_path)?,
            ca_source: ca_path.display().to_string(),
        },
        Credentials::BearerToken(token),
    ))
}

/// The namespace of the pod, for the Lease and Events (`kube-system` outside a pod).
pub fn pod_namespace() -> Option<String> {
    std::fs::read_to_string(Path::new(SA_DIR).join("namespace"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
