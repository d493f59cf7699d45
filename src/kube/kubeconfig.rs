//! Reading kubeconfig files: only the fields that carry certificates, keys and tokens.
//! Unknown fields are allowed here (kubeconfigs carry many we do not use).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Kubeconfig {
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(default, rename = "current-context")]
    pub current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(default)]
    pub context: Context,
}

#[derive(Debug, Default, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    #[serde(default)]
    pub cluster: Cluster,
}

#[derive(Debug, Default, Deserialize)]
pub struct Cluster {
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default, rename = "certificate-authority")]
    pub certificate_authority: Option<String>,
    #[serde(default, rename = "certificate-authority-data")]
    pub certificate_authority_data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: AuthInfo,
}

#[derive(Default, Deserialize)]
pub struct AuthInfo {
    #[serde(default, rename = "client-certificate")]
    pub client_certificate: Option<String>,
    #[serde(default, rename = "client-certificate-data")]
    pub client_certificate_data: Option<String>,
    #[serde(default, rename = "client-key")]
    pub client_key: Option<String>,
    #[serde(default, rename = "client-key-data")]
    pub client_key_data: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    pub token_file: Option<String>,
}

impl std::fmt::Debug for AuthInfo {
    // Keys and tokens never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthInfo")
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .field("has_client_key_data", &self.client_key_data.is_some())
            .field("has_token", &self.token.is_some())
            .finish()
    }
}

impl Kubeconfig {
    /// Parse kubeconfig YAML; the error is a one-line reason.
    pub fn parse(bytes: &[u8]) -> Result<Kubeconfig, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let kc: Kubeconfig = serde_saphyr::from_str(text)
            .map_err(|e| format!("not a kubeconfig: {}", crate::yaml::render_error(&e)))?;
        Ok(kc)
    }
}

/// The user of the current context, or the only user.
pub fn current_user_name(kc: &Kubeconfig) -> Result<String, String> {
    if let Some(ctx) = kc.current_context.as_deref().filter(|c| !c.is_empty()) {
        return kc
            .contexts
            .iter()
            .find(|c| c.name == ctx)
            .and_then(|c| c.context.user.clone())
            .ok_or_else(|| format!("current-context {ctx:?} names no user"));
    }
    match kc.users.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => Err("kubeconfig has no users".into()),
        _ => Err(
            "kubeconfig has several users and no current-context: cannot tell which to renew"
                .into(),
        ),
    }
}

/// The cluster of the current context, or the only cluster.
pub fn current_cluster_name(kc: &Kubeconfig) -> Result<String, String> {
    if let Some(ctx) = kc.current_context.as_deref().filter(|c| !c.is_empty()) {
        return kc
            .contexts
            .iter()
            .find(|c| c.name == ctx)
            .and_then(|c| c.context.cluster.clone())
            .ok_or_else(|| format!("current-context {ctx:?} names no cluster"));
    }
    match kc.clusters.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => Err("kubeconfig has no clusters".into()),
        _ => Err("kubeconfig has several clusters and no current-context".into()),
    }
}

/// Decode a `*-data` field (base64 of PEM). Whitespace is tolerated, as client-go does.
pub fn decode_data(field: &str, value: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("{field} is not valid base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_that_carry_credentials() {
        let kc = Kubeconfig::parse(
            br#"
apiVersion: v1
kind: Config
clusters:
- name: k
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: QUJD}
users:
- name: u
  user: {client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem, token: abc.def}
contexts: [{name: c, context: {cluster: k, user: u}}]
current-context: c
"#,
        )
        .unwrap();
        assert_eq!(
            kc.clusters[0].cluster.certificate_authority_data.as_deref(),
            Some("QUJD")
        );
        assert_eq!(kc.users[0].user.token.as_deref(), Some("abc.def"));
        assert!(!format!("{:?}", kc.users[0].user).contains("abc.def"));
        assert_eq!(decode_data("x", "QU\nJD").unwrap(), b"ABC");
        assert!(decode_data("client-key-data", "@@@")
            .unwrap_err()
            .contains("client-key-data"));
    }

    #[test]
    fn non_yaml_is_an_error() {
        assert!(Kubeconfig::parse(b"{{{{ not: yaml")
            .unwrap_err()
            .starts_with("not a kubeconfig"));
    }
}

pub use super::rewrite::replace_client_credentials;

#[cfg(test)]
mod rewrite_tests {
    use super::*;

    const KC: &str = r#"apiVersion: v1
kind: Config
preferences: {}
clusters:
- name: kubernetes
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: Q0E=
contexts:
- name: kubernetes-admin@kubernetes
  context: {cluster: kubernetes, user: kubernetes-admin}
- name: other
  context: {cluster: kubernetes, user: someone-else}
current-context: kubernetes-admin@kubernetes
users:
- name: someone-else
  user: {token: keep-me}
- name: kubernetes-admin
  user:
    client-certificate: /old/cert.pem
    client-key: /old/key.pem
"#;

    #[test]
    fn replaces_only_the_current_users_credentials() {
        let (out, user) = replace_client_credentials(KC, b"CERT", b"KEY").unwrap();
        assert_eq!(user, "kubernetes-admin");
        let kc = Kubeconfig::parse(out.as_bytes()).unwrap();
        let admin = &kc
            .users
            .iter()
            .find(|u| u.name == "kubernetes-admin")
            .unwrap()
            .user;
        assert_eq!(
            decode_data("c", admin.client_certificate_data.as_ref().unwrap()).unwrap(),
            b"CERT"
        );
        assert_eq!(
            decode_data("k", admin.client_key_data.as_ref().unwrap()).unwrap(),
            b"KEY"
        );
        assert!(admin.client_certificate.is_none() && admin.client_key.is_none());
        let other = &kc
            .users
            .iter()
            .find(|u| u.name == "someone-else")
            .unwrap()
            .user;
        assert_eq!(other.token.as_deref(), Some("keep-me"));
        assert_eq!(
            kc.clusters[0].cluster.server.as_deref(),
            Some("https://10.0.0.1:6443")
        );
        assert_eq!(
            kc.current_context.as_deref(),
            Some("kubernetes-admin@kubernetes")
        );
        // Field order is kept (apiVersion first), so diffs stay readable.
        assert!(out.starts_with("apiVersion: v1\nkind: Config\n"), "{out}");
    }

    #[test]
    fn ambiguous_or_broken_kubeconfigs_are_refused() {
        let two = "users:\n- name: a\n  user: {}\n- name: b\n  user: {}\n";
        assert!(replace_client_credentials(two, b"", b"")
            .unwrap_err()
            .contains("several users"));
        let dangling = "current-context: x\ncontexts: []\nusers: []\n";
        assert!(replace_client_credentials(dangling, b"", b"")
            .unwrap_err()
            .contains("names no user"));
        assert!(replace_client_credentials("[[[", b"", b"")
            .unwrap_err()
            .starts_with("not a kubeconfig"));
    }
}
