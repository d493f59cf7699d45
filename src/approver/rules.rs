//! The approval rules, as pure functions over plain values: a kubelet-serving CSR is
//! approved only when every rule proves it; the first rule that fails names the denial.
//! Also which pending CSRs a newer one supersedes, and the breaker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::csr::RequestedCert;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// One approval rule. `id` is the metric label, `reason` the Denied condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `spec.request` is a valid CSR whose self-signature verifies.
    Request,
    /// The requester is `system:node:<X>` in group `system:nodes`.
    Requester,
    /// The subject is exactly `CN=system:node:<X>, O=system:nodes`.
    Subject,
    /// Node X exists.
    Node,
    /// At least one SAN; only DNS and IP SANs; each among Node X's `status.addresses`.
    Sans,
    /// Usages are exactly digital signature + server auth (+ key encipherment for RSA).
    Usages,
    /// The key type and size are allowed.
    Key,
    /// `spec.expirationSeconds`, when set, is within the maximum.
    Duration,
    /// A newer pending CSR of the same node replaces this one.
    Superseded,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::Request,
        Rule::Requester,
        Rule::Subject,
        Rule::Node,
        Rule::Sans,
        Rule::Usages,
        Rule::Key,
        Rule::Duration,
        Rule::Superseded,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::Request => "request",
            Rule::Requester => "requester",
            Rule::Subject => "subject",
            Rule::Node => "node",
            Rule::Sans => "sans",
            Rule::Usages => "usages",
            Rule::Key => "key",
            Rule::Duration => "duration",
            Rule::Superseded => "superseded",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Rule::Request => "InvalidRequest",
            Rule::Requester => "RequesterNotNode",
            Rule::Subject => "SubjectNotNode",
            Rule::Node => "NodeNotFound",
            Rule::Sans => "SANNotNodeAddress",
            Rule::Usages => "UsagesNotServing",
            Rule::Key => "KeyNotAllowed",
            Rule::Duration => "DurationTooLong",
            Rule::Superseded => "Superseded",
        }
    }
}

/// What the approver allows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Key types as `check` prints them: `ECDSA P-256`, `RSA 2048`, ...
    pub allowed_keys: Vec<String>,
    /// The longest `spec.expirationSeconds` approved.
    pub max_duration: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_keys: [
                "ECDSA P-256",
                "ECDSA P-384",
                "RSA 2048",
                "RSA 3072",
                "RSA 4096",
            ]
            .map(String::from)
            .to_vec(),
            max_duration: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// The CSR's API fields that the rules read.
#[derive(Debug, Clone)]
pub struct CsrSpec<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
    pub usages: &'a [String],
    pub expiration_seconds: Option<i32>,
}

/// Node X's `status.addresses`, split by what a SAN can match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    /// Hostname, InternalDNS, ExternalDNS (lower case).
    pub dns: Vec<String>,
    /// InternalIP, ExternalIP.
    pub ips: Vec<IpAddr>,
}

impl NodeAddresses {
    /// From `(type, address)` pairs as `Node.status.addresses` lists them. An IP-typed entry
    /// that does not parse is ignored (it cannot match anything).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = NodeAddresses::default();
        for (t, a) in pairs {
            match t {
                "Hostname" | "InternalDNS" | "ExternalDNS" => out.dns.push(a.to_ascii_lowercase()),
                "InternalIP" | "ExternalIP" => out.ips.extend(a.parse::<IpAddr>()),
                _ => {}
            }
        }
        out
    }
}

/// A rule failed: which one, and why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub rule: Rule,
    pub message: String,
}

fn fail(rule: Rule, message: impl Into<String>) -> Failure {
    Failure {
        rule,
        message: message.into(),
    }
}

/// The node name a requester speaks for, if it is a node.
pub fn requesting_node<'a>(spec: &CsrSpec<'a>) -> Option<&'a str> {
    spec.username
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty() && spec.groups.iter().any(|g| g == "system:nodes"))
}

/// Checks every rule except the Node's addresses; on success returns the node name, whose
/// Node the caller then reads and passes to [`check_node`].
pub fn check_request<'a>(
    spec: &CsrSpec<'a>,
    req: &Result<RequestedCert, String>,
    policy: &Policy,
) -> Result<&'a str, Failure> {
    let req = req.as_ref().map_err(|e| fail(Rule::Request, e.clone()))?;
    let node = requesting_node(spec).ok_or_else(|| {
        fail(
            Rule::Requester,
            format!(
                "requester {:?} is not system:node:<name> in group system:nodes",
                spec.username
            ),
        )
    })?;
    let want_cn = format!("system:node:{node}");
    let subject_ok = req.subject.len() == 2
        && req.subject.iter().any(|(k, v)| k == "CN" && *v == want_cn)
        && req
            .subject
            .iter()
            .any(|(k, v)| k == "O" && v == "system:nodes");
    if !subject_ok {
        let got: Vec<String> = req
            .subject
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return Err(fail(
            Rule::Subject,
            format!(
                "subject is {:?}, not exactly CN={want_cn}, O=system:nodes",
                got.join(", ")
            ),
        ));
    }
    let rsa = req.key_type.starts_with("RSA");
    if !policy.allowed_keys.contains(&req.key_type) {
        return Err(fail(
            Rule::Key,
            format!(
                "key type {} is not allowed (allowed: {})",
                req.key_type,
                policy.allowed_keys.join(", ")
            ),
        ));
    }
    let mut want = vec!["digital signature", "server auth"];
    if rsa {
        want.push("key encipherment");
    }
    let mut got: Vec<&str> = spec.usages.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    want.sort_unstable();
    if got != want || got.len() != spec.usages.len() {
        return Err(fail(
            Rule::Usages,
            format!(
                "usages are [{}], not exactly [{}]",
                spec.usages.join(", "),
                want.join(", ")
            ),
        ));
    }
    if let Some(s) = spec.expiration_seconds {
        if s < 0 || Duration::from_secs(s as u64) > policy.max_duration {
            return Err(fail(
                Rule::Duration,
                format!(
                    "requested duration {s}s is longer than the maximum {}s",
                    policy.max_duration.as_secs()
                ),
            ));
        }
    }
    if !req.other_sans.is_empty() {
        return Err(fail(
            Rule::Sans,
            format!(
                "only DNS and IP SANs are allowed, the request has {}",
                req.other_sans.join(", ")
            ),
        ));
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err(fail(Rule::Sans, "the request has no DNS or IP SAN"));
    }
    Ok(node)
}

/// Node X must exist and hold every SAN of the request among its addresses.
pub fn check_node(
    node_name: &str,
    req: &RequestedCert,
    node: Option<&NodeAddresses>,
) -> Result<(), Failure> {
    let node =
        node.ok_or_else(|| fail(Rule::Node, format!("Node {node_name:?} does not exist")))?;
    let foreign_dns: Vec<&str> = req
        .dns_names
        .iter()
        .filter(|d| !node.dns.contains(&d.to_ascii_lowercase()))
        .map(String::as_str)
        .collect();
    let foreign_ips: Vec<String> = req
        .ip_addresses
        .iter()
        .filter(|ip| !node.ips.contains(ip))
        .map(IpAddr::to_string)
        .collect();
    if foreign_dns.is_empty() && foreign_ips.is_empty() {
        return Ok(());
    }
    let all: Vec<&str> = foreign_dns
        .into_iter()
        .chain(foreign_ips.iter().map(String::as_str))
        .collect();
    Err(fail(
        Rule::Sans,
        format!(
            "{} not among Node {node_name:?}'s status.addresses",
            all.join(", ")
        ),
    ))
}

/// A pending CSR, as ordering among one node's CSRs needs it.
#[derive(Debug, Clone)]
pub struct Pending<'a> {
    pub name: &'a str,
    pub node: &'a str,
    /// Creation time (seconds since the epoch) and the resourceVersion it was created at,
    /// for a total order within one second.
    pub created: (i64, u64),
}

/// Pending CSRs that a newer pending CSR of the same node supersedes (every one but each
/// node's newest), with that newer CSR's name.
pub fn superseded<'a>(pending: &[Pending<'a>]) -> Vec<(&'a str, &'a str)> {
    let mut newest: HashMap<&str, &Pending<'a>> = HashMap::new();
    for p in pending {
        let e = newest.entry(p.node).or_insert(p);
        if (p.created, p.name) > (e.created, e.name) {
            *e = p;
        }
    }
    let mut out: Vec<(&str, &str)> = pending
        .iter()
        .filter_map(|p| {
            let n = newest[p.node];
            (n.name != p.name).then_some((p.name, n.name))
        })
        .collect();
    out.sort_unstable();
    out
}

/// The breaker is open (no approvals) while more kubelet-serving CSRs are pending than
/// there are Nodes plus `margin`: a flood of CSRs is an attack or a bug, not renewals.
pub fn breaker_open(pending: usize, nodes: usize, margin: usize) -> bool {
    pending > nodes + margin
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
