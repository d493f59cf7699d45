//! Kubelet TLS bootstrapping and renewal: key -> CSR -> wait until Approved and Issued ->
//! check -> install `kubelet-{client,server}-current.pem` -> write `kubelet.conf`.
//!
//! Credentials: the current client certificate (mTLS) while it is valid; the bootstrap
//! token otherwise, and again when the API server rejects the certificate (the seeds'
//! `-fixKubeletCredentials`). The bootstrap kubeconfig is re-read on every attempt.

mod csr_wait;
pub mod pending;
use csr_wait::{wait_issued, with_retries};
pub mod notice;
pub mod san;
pub mod verify;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use time::OffsetDateTime;

use crate::config::KubeletSpec;
use crate::kube::client::{ApiClient, ApiError, Credentials, Endpoint};
use crate::kube::kubeconfig::{self, Kubeconfig};
use crate::lifecycle::Failure;
use crate::paths::{self, NodeRoot};
use crate::pki::csr::{self, KubeletCert};
use crate::pki::{keygen, parse_material, CertInfo};
use crate::store::Store;

/// What the operator should see while the agent waits.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("CSR {name} was denied: {reason}: {message}")]
    Denied {
        name: String,
        reason: String,
        message: String,
    },
    #[error("CSR {name} failed: {reason}: {message}")]
    Failed {
        name: String,
        reason: String,
        message: String,
    },
    #[error("CSR {name} was deleted before it was issued")]
    Deleted { name: String },
    #[error("CSR {name} was not issued within {timeout:?}{hint}")]
    Timeout {
        name: String,
        timeout: Duration,
        hint: String,
    },
    #[error("CSR {name}: {reason}; nothing was installed")]
    Rejected { name: String, reason: String },
    #[error("{0}")]
    Install(String),
}

/// Whether another CSR could help. A denial, a failed or rejected CSR, refused
/// credentials or a bad config are permanent: a new CSR would be answered the same way
/// (and piles up CSR objects in etcd); server trouble and local I/O are transient.
pub fn classify(e: &KubeletError) -> Failure {
    let transient = match e {
        KubeletError::Api(a) => a.is_transient(),
        KubeletError::Install(_) | KubeletError::Deleted { .. } => true,
        KubeletError::Config(_)
        | KubeletError::Denied { .. }
        | KubeletError::Failed { .. }
        | KubeletError::Timeout { .. }
        | KubeletError::Rejected { .. } => false,
    };
    if transient {
        Failure::transient(e.to_string())
    } else {
        Failure::permanent(e.to_string())
    }
}

/// The result of one successful bootstrap or renewal.
#[derive(Debug)]
pub struct Obtained {
    pub csr_name: String,
    pub cert: CertInfo,
    /// Requests sent to the API server for this certificate.
    pub requests: u64,
    /// `bootstrap token` or `client certificate`.
    pub authenticated_with: &'static str,
    /// The current PEM's node path.
    pub path: PathBuf,
    /// Time spent waiting for the server to approve and sign (from the create's answer to
    /// the issued certificate arriving); the rest of the time was the agent's own.
    pub waited: Duration,
}

/// Everything the flow needs from the node.
pub struct Node<'a> {
    pub root: &'a NodeRoot,
    pub spec: &'a KubeletSpec,
    pub node_name: String,
    pub store: &'a Store,
}

impl Node<'_> {
    pub fn current_pem(&self, kind: KubeletCert) -> PathBuf {
        self.spec
            .cert_dir
            .join(format!("{}-current.pem", kind.base_name()))
    }

    /// The current certificate of `kind`, if readable and matching its key.
    pub fn current(&self, kind: KubeletCert) -> Result<Option<CertInfo>, String> {
        Ok(self.current_with_pem(kind)?.map(|(info, _)| info))
    }

    /// The current certificate and the PEM it came from (certificate and key), read once.
    fn current_with_pem(&self, kind: KubeletCert) -> Result<Option<(CertInfo, Vec<u8>)>, String> {
        let path = self.current_pem(kind);
        let at = |e: String| format!("{}: {e}", path.display());
        let bytes = match self.root.read(&path) {
            Err(paths::ReadError::NotFound) | Err(paths::ReadError::Dangling { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(at(e.to_string())),
            Ok(b) => b,
        };
        let m = parse_material(&bytes).map_err(at)?;
        let der = m
            .certificates
            .first()
            .ok_or_else(|| at("no certificate".into()))?;
        let info = CertInfo::parse(der).map_err(at)?;
        let key = m
            .private_keys
            .first()
            .ok_or_else(|| at("no private key".into()))?;
        if crate::pki::key::public_key_of(key)? != info.public_key {
            return Err(at("the key does not match the certificate".into()));
        }
        if kind == KubeletCert::Client {
            self.check_client_chain(&info).map_err(at)?;
        }
        Ok(Some((info, bytes)))
    }

    /// The API server accepts the client certificate only if it chains to the CA the
    /// node's kubeconfig trusts (kubelet.conf, or before it exists the bootstrap
    /// kubeconfig): after a CA change one that does not is broken, however valid.
    fn check_client_chain(&self, info: &CertInfo) -> Result<(), String> {
        let kubeconfigs = [&self.spec.kubeconfig, &self.spec.bootstrap_kubeconfig];
        let Some((path, kc)) = kubeconfigs
            .into_iter()
            .find_map(|p| self.read_kubeconfig(p).ok().map(|kc| (p, kc)))
        else {
            return Ok(()); // nothing says which CA to trust yet
        };
        let endpoint = self.endpoint(path, &kc)?;
        let cas = verify::cas_of(&endpoint.ca_pem);
        if verify::chains_to(info, &cas) {
            return Ok(());
        }
        Err(format!(
            "issued by {}, which is not the CA {} trusts ({}): the API server would reject it",
            info.issuer,
            path.display(),
            cas.iter()
                .map(|c| c.subject.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    fn read_kubeconfig(&self, path: &Path) -> Result<Kubeconfig, String> {
        let bytes = self
            .root
            .read(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Kubeconfig::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Server and CA of a kubeconfig's current cluster, with file references under the root.
    fn endpoint(&self, path: &Path, kc: &Kubeconfig) -> Result<Endpoint, String> {
        let cluster_name =
            kubeconfig::current_cluster_name(kc).map_err(|e| format!("{}: {e}", path.display()))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .ok_or_else(|| format!("{}: cluster {cluster_name:?} not found", path.display()))?;
        let server =
            cluster.cluster.server.clone().ok_or_else(|| {
                format!("{}: cluster {cluster_name:?} has no server", path.display())
            })?;
        let (ca_pem, ca_source) = match (&cluster.cluster.certificate_authority_data, &cluster.cluster.certificate_authority) {
            (Some(d), _) => (kubeconfig::decode_data("certificate-authority-data", d).map_err(|e| format!("{}: {e}", path.display()))?, path.display().to_string()),
            (None, Some(f)) => {
                let p = paths::resolve_reference(path, f);
                (self.root.read(&p).map_err(|e| format!("{}: {e}", p.display()))?, p.display().to_string())
            }
            (None, None) => {
                return Err(format!(
                    "{}: cluster {cluster_name:?} has no certificate-authority(-data): the agent never talks to an unverified API server",
                    path.display()
                ))
            }
        };
        Ok(Endpoint {
            server,
            ca_pem,
            ca_source,
        })
    }

    /// The bootstrap token and endpoint, re-read now.
    fn bootstrap(&self) -> Result<(Endpoint, Credentials), String> {
        let path = &self.spec.bootstrap_kubeconfig;
        let kc = self.read_kubeconfig(path)?;
        let endpoint = self.endpoint(path, &kc)?;
        let user =
            kubeconfig::current_user_name(&kc).map_err(|e| format!("{}: {e}", path.display()))?;
        let auth = &kc
            .users
            .iter()
            .find(|u| u.name == user)
            .ok_or_else(|| format!("{}: user {user:?} not found", path.display()))?
            .user;
        let token = match (&auth.token, &auth.token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(f)) => {
                let p = paths::resolve_reference(path, f);
                String::from_utf8_lossy(
                    &self
                        .root
                        .read(&p)
                        .map_err(|e| format!("{}: {e}", p.display()))?,
                )
                .trim()
                .to_string()
            }
            (None, None) => return Err(format!("{}: user {user:?} has no token", path.display())),
        };
        if !is_bootstrap_token(&token) {
            return Err(format!(
                "{}: the token is not a bootstrap token (<6 chars>.<16 chars>)",
                path.display()
            ));
        }
        Ok((endpoint, Credentials::Token(token)))
    }

    /// The node's client certificate, with the endpoint of kubelet.conf (or, before the
    /// first one was written, of the bootstrap kubeconfig).
    pub fn mtls(&self) -> Result<Option<(Endpoint, Credentials)>, String> {
        // An expired (or not yet valid) certificate is not offered: straight to the token.
        let now = OffsetDateTime::now_utc();
        let pem = match self.current_with_pem(KubeletCert::Client) {
            Ok(Some((c, pem))) if c.not_before <= now && now < c.not_after => pem,
            _ => return Ok(None),
        };
        let endpoint = match self.read_kubeconfig(&self.spec.kubeconfig) {
            Ok(kc) => self.endpoint(&self.spec.kubeconfig, &kc)?,
            Err(_) => self
                .read_kubeconfig(&self.spec.bootstrap_kubeconfig)
                .and_then(|kc| self.endpoint(&self.spec.bootstrap_kubeconfig, &kc))?,
        };
        Ok(Some((
            endpoint,
            Credentials::ClientCertificate {
                cert_pem: pem.clone(),
                key_pem: pem,
            },
        )))
    }

    /// Host names and IP addresses for the serving certificate's SANs.
    pub fn serving_addresses(&self) -> (Vec<String>, Vec<IpAddr>) {
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        let configured = &self.spec.serving.addresses;
        if configured.is_empty() {
            dns.push(self.node_name.clone());
            if let Ok(ifs) = if_addrs::get_if_addrs() {
                ips.extend(ifs.into_iter().filter(|i| !i.is_loopback()).map(|i| i.ip()));
            }
        } else {
            for a in configured {
                match a.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => dns.push(a.clone()),
                }
            }
        }
        dns.sort();
        dns.dedup();
        ips.sort();
        ips.dedup();
        (dns, ips)
    }
}

/// `abcdef.0123456789abcdef`
pub fn is_bootstrap_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(t.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// The node name: the config's, else the host name in lower case (as kubelet does). The
/// host name comes from uname(2), as Go's os.Hostname falls back to: the unit's
/// `ProcSubset=pid` hides /proc/sys/kernel/hostname.
pub fn node_name(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .trim()
        .to_lowercase()
}

/// Bootstrap or renew the kubelet certificate `kind`, and install it.
pub async fn obtain(
    node: &Node<'_>,
    kind: KubeletCert,
    progress: Progress<'_>,
) -> Result<Obtained, KubeletError> {
    let timeout = node.spec.csr_timeout.0;
    // mTLS first; the token when there is no valid certificate or it is refused.
    let mtls = node.mtls().map_err(KubeletError::Config)?;
    let mut first_error = None;
    if let Some((endpoint, creds)) = mtls {
        match attempt(node, kind, &endpoint, &creds, timeout, progress).await {
            Ok(mut o) => {
                o.authenticated_with = "client certificate";
                return Ok(o);
            }
            Err(KubeletError::Api(
                e @ (ApiError::Unauthorized { .. }
                | ApiError::Forbidden { .. }
                | ApiError::Tls { .. }),
            )) => {
                progress(&format!("the API server refused the node's client certificate ({e}); logging in again with the bootstrap token"));
                first_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let (endpoint, creds) = node.bootstrap().map_err(|e| match &first_error {
        Some(fe) => KubeletError::Config(format!(
            "{fe}; and the bootstrap kubeconfig cannot be used: {e}"
        )),
        None => KubeletError::Config(e),
    })?;
    let result = attempt(node, kind, &endpoint, &creds, timeout, progress).await;
    match result {
        Err(KubeletError::Api(ApiError::Unauthorized { server, .. })) => Err(KubeletError::Config(format!(
            "{server}: 401 Unauthorized: the bootstrap token in {} was rejected (expired or deleted?): \
             create a new one (kubeadm token create) and put it in that file",
            node.spec.bootstrap_kubeconfig.display()
        ))),
        other => other,
    }
}

async fn attempt(
    node: &Node<'_>,
    kind: KubeletCert,
    endpoint: &Endpoint,
    creds: &Credentials,
    timeout: Duration,
    progress: Progress<'_>,
) -> Result<Obtained, KubeletError> {
    let client = ApiClient::new(endpoint, creds)?.with_timeout(node.spec.request_timeout.0);
    let deadline = tokio::time::Instant::now() + timeout;
    // A CSR from before a restart is watched again rather than asked for a second time.
    let request = match pending::resume(node, kind, &client, deadline, progress).await? {
        Some(r) => r,
        None => create(node, kind, &client, deadline, progress).await?,
    };
    let name = request.name();
    let waiting = tokio::time::Instant::now();
    let signer = kind.signer().to_string();
    notice::notify(notice::CsrNotice::Created {
        csr: name.clone(),
        signer: signer.clone(),
        since: request.created,
    });
    let issued = wait_issued(
        &client,
        request.object.clone(),
        deadline,
        kind,
        timeout,
        progress,
    )
    .await;
    notice::notify(notice::CsrNotice::Ended { signer });
    let issued = issued.inspect_err(|e| {
        if pending::ends_request(e) {
            pending::forget(node.store, kind);
        }
    })?;
    let waited = waiting.elapsed();
    let pending::Request { key, dns, ips, .. } = request;
    let cas = verify::cas_of(&endpoint.ca_pem);
    let public = rcgen::PublicKeyData::der_bytes(&key).to_vec();
    let req = verify::Requested {
        kind,
        node_name: &node.node_name,
        public_key: &public,
        dns_names: &dns,
        ip_addresses: &ips,
    };
    let cert =
        verify::check_issued(&issued, &req, &cas, OffsetDateTime::now_utc()).map_err(|reason| {
            pending::forget(node.store, kind);
            KubeletError::Rejected {
                name: name.clone(),
                reason,
            }
        })?;
    let now = OffsetDateTime::now_utc();
    node.store
        .install_kubelet(
            &node.spec.cert_dir,
            kind.base_name(),
            &issued,
            key.serialize_pem().as_bytes(),
            now,
        )
        .map_err(|e| KubeletError::Install(e.to_string()))?;
    // Installed: the request has served its purpose.
    pending::forget(node.store, kind);
    if kind == KubeletCert::Client {
        write_kubelet_conf(node, endpoint).map_err(KubeletError::Install)?;
    }
    Ok(Obtained {
        csr_name: name,
        cert,
        requests: client.requests_sent(),
        authenticated_with: "bootstrap token",
        path: node.current_pem(kind),
        waited,
    })
}

/// A new key and CSR for `kind`, created on the server and saved for a restart.
async fn create(
    node: &Node<'_>,
    kind: KubeletCert,
    client: &ApiClient,
    deadline: tokio::time::Instant,
    progress: Progress<'_>,
) -> Result<pending::Request, KubeletError> {
    let key_type = match kind {
        KubeletCert::Client => node.spec.client.key_type,
        KubeletCert::Serving => node.spec.serving.key_type,
    };
    let key = tokio::task::spawn_blocking(move || keygen::generate(key_type))
        .await
        .map_err(|e| KubeletError::Install(e.to_string()))?
        .map_err(KubeletError::Install)?;
    let (dns, ips) = match kind {
        KubeletCert::Client => (vec![], vec![]),
        KubeletCert::Serving => match node.spec.serving.addresses.is_empty() {
            true => san::from_node(node, client, progress).await,
            false => node.serving_addresses(),
        },
    };
    let request =
        csr::build(kind, &node.node_name, &dns, &ips, &key).map_err(KubeletError::Install)?;
    let object = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: kind.signer().to_string(),
            usages: Some(
                kind.usages(key_type.is_rsa())
                    .into_iter()
                    .map(String::from)
                    .collect(),
            ),
            ..Default::default()
        },
        status: None,
    };
    let object = with_retries(deadline, || client.create_csr(&object)).await?;
    let request = pending::Request {
        key,
        dns,
        ips,
        created: pending::created_at(&object),
        object,
    };
    request.save(node.store, kind);
    progress(&format!(
        "CSR {} created (signer {}), waiting for it to be approved and issued",
        request.name(),
        kind.signer()
    ));
    Ok(request)
}

/// `kubelet.conf` as kubelet writes it: the cluster, and the current client PEM as both
/// certificate and key (node paths, so the tree is right when --root becomes /).
fn write_kubelet_conf(node: &Node<'_>, endpoint: &Endpoint) -> Result<(), String> {
    use base64::Engine;
    let pem = node.current_pem(KubeletCert::Client);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: default-cluster\n\
         contexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n  name: default-context\n\
         current-context: default-context\npreferences: {{}}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {pem}\n    client-key: {pem}\n",
        ca = base64::engine::general_purpose::STANDARD.encode(&endpoint.ca_pem),
        server = endpoint.server,
        pem = pem.display(),
    );
    if node.root.read(&node.spec.kubeconfig).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    node.store
        .write_file(
            &node.spec.kubeconfig,
            text.as_bytes(),
            crate::store::FileSpec::KEY,
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_token_shape() {
        assert!(is_bootstrap_token("abcdef.0123456789abcdef"));
        assert!(!is_bootstrap_token("abcdef.0123456789abcde"));
        assert!(!is_bootstrap_token("ABCDEF.0123456789abcdef"));
        assert!(!is_bootstrap_token("just-a-token"));
    }
}
