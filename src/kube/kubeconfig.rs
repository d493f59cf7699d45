//! Reading kubeconfig files: only the fields that carry certificates, keys and tokens.
//! Unknown fields are allowed here (kubeconfigs carry many we do not use).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Kubeconfig {
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default, rename = "current-context")]
    pub current_context: Option<String>,
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
            .map_err(|e| format!("not a kubeconfig: {}", crate::config::render_yaml_error(&e)))?;
        Ok(kc)
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
