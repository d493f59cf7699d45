//! `/etc/kube-cert-agent/config.yaml`: schema, defaults and validation.
//!
//! Parsing rejects unknown fields (a misspelt key is an error, not a silent default) and
//! every error names the file, and where the YAML parser knows them, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

pub mod ca_rotation;
pub mod validate;
use validate::require_absolute;

pub const API_VERSION: &str = "kube-cert-agent.io/v1alpha1";
pub const KIND: &str = "AgentConfiguration";
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kube-cert-agent/config.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub api_version: String,
    pub kind: String,
    /// Empty: the host name.
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub renewal: Renewal,
    /// Versions kept per certificate, the current one included.
    #[serde(default = "default_history")]
    pub history: u32,
    #[serde(default)]
    pub inventory: InventorySpec,
    #[serde(default)]
    pub kubelet: Option<KubeletSpec>,
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    #[serde(default)]
    pub kubeconfigs: Vec<KubeconfigSpec>,
    /// The CAs `rotate-ca` may rotate (kubeadm: cluster, etcd, front-proxy).
    #[serde(default)]
    pub cas: Vec<CaSpec>,
    #[serde(default)]
    pub revocation: RevocationSpec,
    /// Follow CARotation objects in the cluster (the daemon).
    #[serde(default)]
    pub ca_rotation: ca_rotation::CaRotationSpec,
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// kubeadm's inputs to the SANs of certificates created under a `profile`.
    #[serde(default)]
    pub kubeadm: crate::kubeadm::KubeadmSpec,
}

fn default_history() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Renewal {
    /// Renew at this fraction of the lifetime (seeds: 80%).
    #[serde(default = "default_renew_at")]
    pub renew_at: Percent,
    /// +- this fraction, drawn at random per certificate (kubelet: 70%..90%).
    #[serde(default = "default_jitter")]
    pub jitter: Percent,
    /// After a failure that retrying cannot fix (a denied CSR, a missing CA key, a config
    /// problem), the next attempt waits this long unless something changes (SIGHUP,
    /// `rotate NAME`, a config or file change).
    #[serde(default = "default_permanent_failure_backoff")]
    pub permanent_failure_backoff: HumanDuration,
    /// The window over which a fleet-wide wave of kubelet renewals (certificates expired
    /// after the node was off, re-issued after a CA rotation) is spread: each node starts
    /// after a random delay within it. Size it about 1 h per 1,000 nodes; 0s: at once.
    /// Also the cap of kubelet renewals' backoff after API errors (`spread::retry_cap`).
    #[serde(default = "default_fleet_spread")]
    pub fleet_spread: HumanDuration,
}

fn default_fleet_spread() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

fn default_permanent_failure_backoff() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

fn default_renew_at() -> Percent {
    Percent(80.0)
}
fn default_jitter() -> Percent {
    Percent(10.0)
}

impl Renewal {
    /// The pure renewal policy these settings describe (fractions of the lifetime).
    pub fn policy(&self) -> crate::pki::policy::RenewalPolicy {
        crate::pki::policy::RenewalPolicy {
            renew_at: self.renew_at.0 / 100.0,
            jitter: self.jitter.0 / 100.0,
        }
    }

    /// `renewal.fleetSpread` as a window (see `lifecycle::spread`).
    pub fn fleet_window(&self) -> time::Duration {
        time::Duration::try_from(self.fleet_spread.0).unwrap_or(time::Duration::hours(1))
    }

    /// The life-cycle's backoff settings.
    pub fn backoff(&self) -> crate::lifecycle::Settings {
        crate::lifecycle::Settings {
            permanent: time::Duration::try_from(self.permanent_failure_backoff.0)
                .unwrap_or(time::Duration::hours(1)),
            ..Default::default()
        }
    }
}

impl Default for Renewal {
    fn default() -> Self {
        Renewal {
            renew_at: default_renew_at(),
            jitter: default_jitter(),
            permanent_failure_backoff: default_permanent_failure_backoff(),
            fleet_spread: default_fleet_spread(),
        }
    }
}

/// What `check` and the daemon look at besides the certificates they manage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InventorySpec {
    #[serde(default = "default_pki_dirs")]
    pub pki_directories: Vec<PathBuf>,
    /// Kubeconfig files; `*` globs allowed.
    #[serde(default = "default_kubeconfig_globs")]
    pub kubeconfigs: Vec<String>,
}

fn default_pki_dirs() -> Vec<PathBuf> {
    vec!["/etc/kubernetes/pki".into(), "/var/lib/kubelet/pki".into()]
}
fn default_kubeconfig_globs() -> Vec<String> {
    vec![
        "/etc/kubernetes/*.conf".into(),
        "/var/lib/kubelet/bootstrap-kubeconfig".into(),
    ]
}

impl Default for InventorySpec {
    fn default() -> Self {
        InventorySpec {
            pki_directories: default_pki_dirs(),
            kubeconfigs: default_kubeconfig_globs(),
        }
    }
}

pub use crate::pki::issue::Usage;
pub use crate::pki::keygen::KeyType;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletSpec {
    #[serde(default = "default_bootstrap_kubeconfig")]
    pub bootstrap_kubeconfig: PathBuf,
    #[serde(default = "default_kubelet_kubeconfig")]
    pub kubeconfig: PathBuf,
    #[serde(default = "default_kubelet_cert_dir")]
    pub cert_dir: PathBuf,
    #[serde(default)]
    pub client: KubeletClientSpec,
    #[serde(default)]
    pub serving: KubeletServingSpec,
    #[serde(default)]
    pub on_rotate: Vec<Action>,
    /// How long to wait for a CSR to be approved and issued.
    #[serde(default = "default_csr_timeout")]
    pub csr_timeout: HumanDuration,
    /// Every API request is answered within this, or fails (transient) naming the server.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Not read from the file: the serials of the kubelet certificates the daemon installed
    /// in a batch (a node joining, a fleet-wide wave), whose first renewal is drawn wide
    /// (`lifecycle::spread::first_policy`).
    #[serde(skip)]
    pub first_renewal: Vec<String>,
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(crate::kube::client::REQUEST_TIMEOUT)
}

fn default_csr_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15 * 60))
}

fn default_bootstrap_kubeconfig() -> PathBuf {
    "/var/lib/kubelet/bootstrap-kubeconfig".into()
}
fn default_kubelet_kubeconfig() -> PathBuf {
    "/etc/kubernetes/kubelet.conf".into()
}
fn default_kubelet_cert_dir() -> PathBuf {
    "/var/lib/kubelet/pki".into()
}
fn default_kubelet_key_type() -> KeyType {
    // What kubelet itself generates.
    KeyType::EcdsaP256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletClientSpec {
    #[serde(default = "default_kubelet_key_type")]
    pub key_type: KeyType,
}

impl Default for KubeletClientSpec {
    fn default() -> Self {
        KubeletClientSpec {
            key_type: default_kubelet_key_type(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletServingSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_kubelet_key_type")]
    pub key_type: KeyType,
    /// Host names and IP addresses for the SANs; empty: the Node's status.addresses of
    /// `addressTypes` (read as the node), or detected while the Node does not exist.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Which of the Node's status.addresses become SANs.
    #[serde(default = "all_node_address_types")]
    pub address_types: Vec<NodeAddressType>,
}

/// A `Node.status.addresses[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NodeAddressType {
    Hostname,
    InternalDNS,
    ExternalDNS,
    InternalIP,
    ExternalIP,
}

impl NodeAddressType {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAddressType::Hostname => "Hostname",
            NodeAddressType::InternalDNS => "InternalDNS",
            NodeAddressType::ExternalDNS => "ExternalDNS",
            NodeAddressType::InternalIP => "InternalIP",
            NodeAddressType::ExternalIP => "ExternalIP",
        }
    }
}

fn all_node_address_types() -> Vec<NodeAddressType> {
    use NodeAddressType::*;
    vec![Hostname, InternalDNS, ExternalDNS, InternalIP, ExternalIP]
}

fn default_true() -> bool {
    true
}

impl Default for KubeletServingSpec {
    fn default() -> Self {
        KubeletServingSpec {
            enabled: true,
            key_type: default_kubelet_key_type(),
            addresses: Vec::new(),
            address_types: all_node_address_types(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaRef {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectSpec {
    #[serde(default)]
    pub common_name: Option<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
}

/// A certificate issued from a CA on disk ("YAML-based key and certificate creation").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateSpec {
    pub name: String,
    pub ca: CaRef,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Absent: keep the subject of the certificate being renewed.
    #[serde(default)]
    pub subject: Option<SubjectSpec>,
    #[serde(default)]
    pub dns_names: Option<Vec<String>>,
    #[serde(default)]
    pub ip_addresses: Option<Vec<std::net::IpAddr>>,
    #[serde(default)]
    pub usages: Option<Vec<Usage>>,
    /// kubeadm's subject, SANs and usages for a certificate created from nothing, where
    /// the fields above leave them out.
    #[serde(default)]
    pub profile: Option<crate::kubeadm::Profile>,
    #[serde(default = "default_leaf_key_type")]
    pub key_type: KeyType,
    #[serde(default = "default_leaf_validity")]
    pub validity: HumanDuration,
    /// Keep the existing private key on renewal.
    #[serde(default)]
    pub reuse_key: bool,
    #[serde(default)]
    pub on_rotate: Vec<Action>,
}

fn default_leaf_key_type() -> KeyType {
    KeyType::EcdsaP384
}
fn default_leaf_validity() -> HumanDuration {
    // Seeds: "non-root certificates are short-lived (4 days)".
    HumanDuration(std::time::Duration::from_secs(96 * 3600))
}

/// A kubeconfig whose embedded client certificate the agent renews.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeconfigSpec {
    pub name: String,
    pub path: PathBuf,
    pub ca: CaRef,
    #[serde(default)]
    pub subject: Option<SubjectSpec>,
    #[serde(default = "default_leaf_key_type")]
    pub key_type: KeyType,
    #[serde(default = "default_leaf_validity")]
    pub validity: HumanDuration,
    #[serde(default)]
    pub on_rotate: Vec<Action>,
}

/// A CA on this node that `rotate-ca NAME` rotates: its trust file (`ca.crt`, what readers
/// load as trust and, first in it, the signing certificate) and its key. Without a key the
/// node only trusts the CA (a worker): the new CA comes with `--cert`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaSpec {
    pub name: String,
    pub cert: PathBuf,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// What reloads the CA files (API server, controller manager, etcd): run once after
    /// each phase that changed a trust point or the signer.
    #[serde(default)]
    pub on_rotate: Vec<Action>,
}

/// What to do after a certificate was rotated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Action {
    Restart(String),
    TryRestart(String),
    ReloadOrRestart(String),
    Signal(SignalSpec),
    Command(CommandSpec),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignalSpec {
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    #[serde(default)]
    pub unit: Option<String>,
    pub signal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandSpec {
    pub argv: Vec<String>,
    #[serde(default = "default_command_timeout")]
    pub timeout: HumanDuration,
}

fn default_command_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevocationSpec {
    #[serde(default = "default_revocation_dir")]
    pub directory: PathBuf,
    /// Also list RenewRevocation objects in kube-system.
    #[serde(default)]
    pub cluster: bool,
    /// How often the daemon lists them (`cluster: true`); the command line lists them on
    /// every run.
    #[serde(default = "default_revocation_poll")]
    pub poll_interval: HumanDuration,
}

fn default_revocation_poll() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

fn default_revocation_dir() -> PathBuf {
    "/etc/kube-cert-agent/revocations.d".into()
}

impl Default for RevocationSpec {
    fn default() -> Self {
        RevocationSpec {
            directory: default_revocation_dir(),
            cluster: false,
            poll_interval: default_revocation_poll(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsSpec {
    /// `127.0.0.1:9793`; empty: off.
    #[serde(default)]
    pub listen: String,
    /// node_exporter textfile collector file (`*.prom`), rewritten atomically; absent: off.
    #[serde(default)]
    pub textfile: Option<PathBuf>,
}

impl MetricsSpec {
    /// The address to serve on, if any.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let l = self.listen.trim();
        if l.is_empty() {
            return Ok(None);
        }
        l.parse().map(Some).map_err(|_| {
            format!("metrics.listen: {l:?} is not an address and port like 127.0.0.1:9793 or [::1]:9793")
        })
    }

    fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        if let Some(p) = &self.textfile {
            require_absolute("metrics.textfile", p)?;
            // node_exporter's textfile collector reads only `*.prom`.
            if p.extension().and_then(|e| e.to_str()) != Some("prom") {
                return Err(format!(
                    "metrics.textfile: {} must end in .prom (node_exporter reads only *.prom)",
                    p.display()
                ));
            }
        }
        Ok(())
    }
}

/// A percentage written `80%` (or a bare number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::N(n) => n,
            Raw::S(s) => s
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .map_err(|_| {
                    serde::de::Error::custom(format!("expected a percentage like 80%, got {s:?}"))
                })?,
        };
        Ok(Percent(v))
    }
}

/// A duration written `96h`, `4d`, `10y`, `90m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub std::time::Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("expected a duration like 96h, 30d or 10y, got {s:?} ({e})"))
}

/// A configuration error, naming the file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The configuration used when no file exists at the default path: inventory only.
    pub fn defaults() -> Config {
        Config::parse(
            Path::new("<defaults>"),
            &format!("apiVersion: {API_VERSION}\nkind: {KIND}\n"),
        )
        .expect("built-in defaults parse")
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.to_path_buf(),
            message,
        };
        if text.trim().is_empty() {
            return Err(err(
                "empty file: expected an AgentConfiguration document".into()
            ));
        }
        let config: Config =
            serde_saphyr::from_str(text).map_err(|e| err(render_yaml_error(&e)))?;
        config.validate().map_err(err)?;
        Ok(config)
    }
}

pub use crate::yaml::render_error as render_yaml_error;

/// Load the config: an explicit `--config` must exist; the default path may be absent
/// (then the built-in defaults apply: inventory only, nothing managed).
pub fn load(explicit: Option<&Path>, root: &crate::paths::NodeRoot) -> Result<Config, ConfigError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (root.host_path(Path::new(DEFAULT_CONFIG_PATH)), false),
    };
    let err = |message: String| ConfigError {
        path: path.clone(),
        message,
    };
    // The default path is a node path: read inside the root like every other one.
    let read = match explicit {
        Some(_) => crate::paths::read_host_file(&path),
        None => root.read(Path::new(DEFAULT_CONFIG_PATH)),
    };
    match read {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
            Config::parse(&path, &text)
        }
        Err(crate::paths::ReadError::NotFound) if !required => Ok(Config::defaults()),
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
