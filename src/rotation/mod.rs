//! Rotating the certificates the config declares: from the local CA for `certificates:`
//! and `kubeconfigs:`. One function per managed kind; each returns an [`Outcome`] and never
//! leaves a working certificate replaced by a broken one (the store installs only checked
//! material, atomically).

pub mod plan;

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::config::{CaRef, CertificateSpec, Config, KubeconfigSpec, SubjectSpec};
use crate::kube::kubeconfig::{self, Kubeconfig};
use crate::kubelet::{Node, Progress};
use crate::paths::{self, NodeRoot};
use crate::pki::csr::KubeletCert;
use crate::pki::issue::{self, Ca, LeafSpec, Usage};
use crate::pki::policy::RenewalPolicy;
use crate::pki::{key, keygen, parse_material, CertInfo};
use crate::revocation::{self, crl, Entry, Identity};
use crate::store::{FileSpec, Store};
use plan::{decide, rfc3339, Current, Decision, Reason};

/// A CA that expires within this is worth a warning at every rotation.
pub const CA_WARN_WITHIN: Duration = Duration::days(365);

/// What happened to one managed certificate.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// The file the certificate lives in (node path).
    pub path: PathBuf,
    pub action: Action,
    /// Serial and notAfter before and after.
    pub before: Option<(String, OffsetDateTime)>,
    pub after: Option<(String, OffsetDateTime)>,
    /// Things an operator should know that did not stop the rotation.
    pub warnings: Vec<String>,
    /// How it was done (the CSR, the credentials used).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Rotated(Reason),
    WouldRotate(Reason),
    Kept {
        next: OffsetDateTime,
    },
    ClockBehind {
        not_before: OffsetDateTime,
    },
    /// Revoked, but the replacement would be revoked by the same entry: not renewed, so
    /// the agent does not loop; the operator must fix the entry.
    Blocked {
        entry: String,
    },
    Failed(String),
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self.action, Action::Failed(_) | Action::Blocked { .. })
    }

    /// One line for the terminal (`rotate`) and for logs.
    pub fn line(&self) -> String {
        let serials = match (&self.before, &self.after) {
            (Some((b, _)), Some((a, na))) => {
                format!(": serial {b} -> {a}, expires {}", rfc3339(*na))
            }
            (None, Some((a, na))) => format!(": serial {a}, expires {}", rfc3339(*na)),
            _ => String::new(),
        };
        let what = match &self.action {
            Action::Rotated(r) => format!("rotated ({r}){serials}"),
            Action::WouldRotate(r) => format!("would rotate ({r})"),
            Action::Kept { next } => format!("valid, next rotation {}", rfc3339(*next)),
            Action::ClockBehind { not_before } => format!(
                "not valid until {}: is this node's clock behind? Not re-issued (force with rotate {})",
                rfc3339(*not_before),
                self.name
            ),
            Action::Blocked { entry } => format!("BLOCKED: {entry}"),
            Action::Failed(e) => format!("FAILED: {e}"),
        };
        let mut line = format!("{}: {what}", self.name);
        if let Some(d) = &self.detail {
            line.push_str(&format!(" ({d})"));
        }
        for w in &self.warnings {
            line.push_str(&format!("\n  warning: {w}"));
        }
        line
    }
}

/// How a rotation run was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub forced: bool,
    pub dry_run: bool,
    /// Renew only what is broken: expired, missing, unreadable, revoked (`repair`).
    pub repair_only: bool,
    pub now: OffsetDateTime,
}

/// The names a config declares: certificates, kubeconfigs, then the kubelet's.
pub fn managed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .certificates
        .iter()
        .map(|c| c.name.clone())
        .chain(config.kubeconfigs.iter().map(|k| k.name.clone()))
        .collect();
    names.extend(
        kubelet_kinds(config)
            .into_iter()
            .map(|k| k.name().to_string()),
    );
    names
}

/// The kubelet certificates the config manages.
pub fn kubelet_kinds(config: &Config) -> Vec<KubeletCert> {
    match &config.kubelet {
        None => vec![],
        Some(k) if k.serving.enabled => vec![KubeletCert::Client, KubeletCert::Serving],
        Some(_) => vec![KubeletCert::Client],
    }
}

/// Rotate `names` (forced), or with `names` empty every managed certificate that is due.
/// Kubelet certificates go through the API server; the client certificate first, since a
/// serving CSR may need it.
pub async fn rotate(
    root: &NodeRoot,
    config: &Config,
    names: &[String],
    req: Request,
    progress: Progress<'_>,
) -> Vec<Outcome> {
    let store = Store::new(root.clone(), config.history);
    let policy = RenewalPolicy::from_config(&config.renewal);
    let wanted = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
    // Re-read on every run: an operator adds a revocation by dropping a file.
    let mut loaded = revocation::load_dir(root, &config.revocation.directory);
    if let (true, Some(spec)) = (config.revocation.cluster, &config.kubelet) {
        let node = Node {
            root,
            spec,
            node_name: crate::kubelet::node_name(&config.node_name),
            store: &store,
        };
        match revocation::cluster::list(&node).await {
            Ok(l) => {
                loaded.entries.extend(l.entries);
                loaded.errors.extend(l.errors);
            }
            Err(e) => progress(&format!(
                "RenewRevocation objects not read from the cluster (files still apply): {e}"
            )),
        }
    }
    for e in &loaded.errors {
        progress(&format!("error: revocation not applied: {e}"));
    }
    let revs = std::sync::Arc::new(loaded.entries);
    let mut out = Vec::new();
    for c in config.certificates.iter().filter(|c| wanted(&c.name)) {
        let (root, store, c, revs) = (root.clone(), store.clone(), c.clone(), revs.clone());
        let (name, path) = (c.name.clone(), c.cert.clone());
        let task = move || rotate_certificate(&root, &store, &policy, &c, req, &revs);
        out.push(blocking(name, path, task).await);
    }
    for k in config.kubeconfigs.iter().filter(|k| wanted(&k.name)) {
        let (root, store, k, revs) = (root.clone(), store.clone(), k.clone(), revs.clone());
        let (name, path) = (k.name.clone(), k.path.clone());
        let task = move || rotate_kubeconfig(&root, &store, &policy, &k, req, &revs);
        out.push(blocking(name, path, task).await);
    }
    crl::update(root, config, &revs, &out, req.now, progress);
    if let Some(spec) = &config.kubelet {
        let node = Node {
            root,
            spec,
            node_name: crate::kubelet::node_name(&config.node_name),
            store: &store,
        };
        for kind in kubelet_kinds(config)
            .into_iter()
            .filter(|k| wanted(k.name()))
        {
            out.push(rotate_kubelet(&node, &policy, kind, req, &revs, progress).await);
        }
    }
    out
}

/// Run a local-CA rotation off the async threads: key generation (RSA-4096: most of a
/// second) must not stall the daemon's loop.
async fn blocking(
    name: String,
    path: PathBuf,
    task: impl FnOnce() -> Outcome + Send + 'static,
) -> Outcome {
    match tokio::task::spawn_blocking(task).await {
        Ok(o) => o,
        Err(e) => Outcome {
            name,
            path,
            action: Action::Failed(format!("internal error: the rotation task failed: {e}")),
            before: None,
            after: None,
            warnings: vec![],
            detail: None,
        },
    }
}

/// A kubelet certificate: bootstrap or renew through a CSR.
pub async fn rotate_kubelet(
    node: &Node<'_>,
    policy: &RenewalPolicy,
    kind: KubeletCert,
    req: Request,
    revs: &[Entry],
    progress: Progress<'_>,
) -> Outcome {
    let current = match node.current(kind) {
        Ok(Some(c)) => Current::Present(Box::new(c)),
        Ok(None) => Current::Missing,
        Err(e) => Current::Broken(e),
    };
    let path = node.current_pem(kind);
    let mut out = outcome(kind.name(), &path, &current, Action::Failed(String::new()));
    let reason = match reason_to_rotate(&current, revs, policy, req) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    // What the CSR will ask for: a revocation matching that would match the new one too.
    let (dns, ips) = match kind {
        KubeletCert::Client => (vec![], vec![]),
        KubeletCert::Serving => node.serving_addresses(),
    };
    let leaf = LeafSpec {
        common_name: crate::pki::csr::node_user(&node.node_name),
        organizations: vec!["system:nodes".into()],
        dns_names: dns,
        ip_addresses: ips,
        usages: vec![],
        validity: Duration::ZERO,
        not_before_floor: None,
    };
    if let Some(blocked) = blocked_by(revs, &future_identity(&leaf, req.now), req.now) {
        return Outcome {
            action: blocked,
            ..out
        };
    }
    if req.dry_run {
        return Outcome {
            action: Action::WouldRotate(reason),
            ..out
        };
    }
    match crate::kubelet::obtain(node, kind, progress).await {
        Ok(o) => {
            out.action = Action::Rotated(reason);
            out.after = Some((o.cert.serial.clone(), o.cert.not_after));
            out.detail = Some(format!(
                "CSR {}, authenticated with the {}, {} API requests",
                o.csr_name, o.authenticated_with, o.requests
            ));
            out
        }
        Err(e) => {
            out.action = Action::Failed(e.to_string());
            out
        }
    }
}

/// The revocation entry the current certificate matches, as the outcome names it.
fn revoked_by(revs: &[Entry], current: &Current) -> Option<String> {
    let Current::Present(c) = current else {
        return None;
    };
    revocation::first_match(revs, &Identity::of(c))
        .map(|e| format!("{} ({}) in {}", e.id(), e.describe(), e.source))
}

/// An entry that would revoke the certificate a renewal is about to issue: renewing would
/// loop, so the operator is told how to fix the entry instead.
fn blocked_by(revs: &[Entry], future: &Identity, now: OffsetDateTime) -> Option<Action> {
    let e = revocation::first_match(revs, future)?;
    let why = match e.not_before {
        None => {
            "it has no notBefore, so it also revokes the certificate that would replace this one"
        }
        Some(_) => "its notBefore is later than the replacement's notBefore",
    };
    Some(Action::Blocked {
        entry: format!(
            "revocation {} ({}) in {}: {why}; set its notBefore to the time of the revocation (for example \"{}\") \
             to revoke only what was issued before it",
            e.id(),
            e.describe(),
            e.source,
            rfc3339(now)
        ),
    })
}

/// Why to rotate now, or the outcome when not: valid and not yet due, or a clock behind.
fn reason_to_rotate(
    current: &Current,
    revs: &[Entry],
    policy: &RenewalPolicy,
    req: Request,
) -> Result<Reason, Action> {
    let revoked = revoked_by(revs, current);
    match decide(
        current,
        req.forced,
        revoked,
        req.repair_only,
        policy,
        req.now,
    ) {
        Decision::Rotate(r) => Ok(r),
        Decision::Keep(next) => Err(Action::Kept { next }),
        Decision::ClockBehind(not_before) => Err(Action::ClockBehind { not_before }),
    }
}

/// What a certificate issued now from `leaf` would show a revocation rule.
fn future_identity(leaf: &LeafSpec, now: OffsetDateTime) -> Identity<'_> {
    Identity {
        serial: None,
        common_name: Some(&leaf.common_name),
        organizations: &leaf.organizations,
        dns_names: &leaf.dns_names,
        ip_addresses: &leaf.ip_addresses,
        not_before: leaf.not_before(now),
    }
}

/// Start the replacement at the latest `notBefore` of a matching entry that falls within
/// the backdating window, so an entry written "as of now" revokes the old certificate and
/// not its replacement.
fn floor_for(revs: &[Entry], leaf: &mut LeafSpec, now: OffsetDateTime) {
    let at_cutoff = |cutoff: OffsetDateTime| Identity {
        not_before: cutoff - time::Duration::seconds(1),
        ..future_identity(leaf, now)
    };
    leaf.not_before_floor = revs
        .iter()
        .filter_map(|e| e.not_before.map(|nb| (e, nb)))
        .filter(|(_, nb)| *nb > now - issue::BACKDATE && *nb <= now)
        .filter(|(e, nb)| revocation::matches(e, &at_cutoff(*nb)))
        .map(|(_, nb)| nb)
        .max();
}

fn read(root: &NodeRoot, p: &Path) -> Result<Vec<u8>, String> {
    root.read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The certificate on disk at `cert` with its key at `key`.
/// The certificate on disk at `cert` with its key at `key`: its state, its key when it
/// matches, and the parsed certificate even when its key does not (a renewal keeps its
/// subject and SANs).
fn current_pair(
    root: &NodeRoot,
    cert: &Path,
    key: &Path,
) -> (Current, Option<rcgen::KeyPair>, Option<CertInfo>) {
    let broken = |e: String| Current::Broken(format!("{}: {e}", cert.display()));
    let info = match root.read(cert) {
        Err(paths::ReadError::NotFound) => return (Current::Missing, None, None),
        Err(e) => return (broken(e.to_string()), None, None),
        Ok(b) => parse_material(&b).and_then(|m| {
            let der = m.certificates.first().ok_or("no certificate in file")?;
            CertInfo::parse(der)
        }),
    };
    let info = match info {
        Ok(i) => i,
        Err(e) => return (broken(e), None, None),
    };
    let key_pair = read(root, key)
        .and_then(|b| parse_material(&b))
        .and_then(|m| {
            m.private_keys
                .first()
                .ok_or_else(|| "no private key".to_string())
                .and_then(keygen::load)
        });
    // A certificate whose key is missing or wrong is broken, but it still says what its
    // replacement should say.
    match key_pair {
        Ok(k) if rcgen::PublicKeyData::der_bytes(&k) == info.public_key.as_slice() => (
            Current::Present(Box::new(info.clone())),
            Some(k),
            Some(info),
        ),
        Ok(_) => (
            Current::Broken(format!(
                "{} does not match {}",
                key.display(),
                cert.display()
            )),
            None,
            Some(info),
        ),
        Err(e) => (
            Current::Broken(format!("key {}: {e}", key.display())),
            None,
            Some(info),
        ),
    }
}

/// Where a local-CA renewal stands after [`issue_checked`].
enum Step {
    /// Nothing issued: blocked by a revocation, or a dry run.
    Stop(Action),
    Issued(Box<issue::Issued>, rcgen::KeyPair),
}

/// What every local-CA renewal does between deciding and installing: start after any
/// revocation written "as of now", refuse a replacement the same revocation would revoke,
/// stop for a dry run, then make (or keep) the key and issue.
fn issue_checked(
    ca: &Ca,
    mut leaf: LeafSpec,
    revs: &[Entry],
    reason: &Reason,
    req: Request,
    key: impl FnOnce() -> Result<rcgen::KeyPair, String>,
) -> Result<Step, String> {
    floor_for(revs, &mut leaf, req.now);
    if let Some(blocked) = blocked_by(revs, &future_identity(&leaf, req.now), req.now) {
        return Ok(Step::Stop(blocked));
    }
    if req.dry_run {
        return Ok(Step::Stop(Action::WouldRotate(reason.clone())));
    }
    let key = key()?;
    let issued = issue::issue(ca, &leaf, &key, req.now)?;
    Ok(Step::Issued(Box::new(issued), key))
}

fn load_ca(root: &NodeRoot, ca: &CaRef, now: OffsetDateTime) -> Result<Ca, String> {
    let cert = read(root, &ca.cert)?;
    let key = read(root, &ca.key)?;
    Ca::load(&cert, &key, now)
        .map_err(|e| format!("CA {} / {}: {e}", ca.cert.display(), ca.key.display()))
}

/// The leaf to issue: the config's subject, SANs and usages, each falling back to what the
/// current certificate says (what `kubeadm certs renew` keeps).
fn leaf_spec(
    subject: Option<&SubjectSpec>,
    dns: Option<&Vec<String>>,
    ips: Option<&Vec<std::net::IpAddr>>,
    usages: Option<&Vec<Usage>>,
    validity: std::time::Duration,
    template: Option<&CertInfo>,
) -> Result<LeafSpec, String> {
    let validity = Duration::try_from(validity).map_err(|e| e.to_string())?;
    let mut spec = match template {
        Some(c) => LeafSpec::from_existing(c, validity),
        None => LeafSpec {
            common_name: String::new(),
            organizations: vec![],
            dns_names: vec![],
            ip_addresses: vec![],
            usages: vec![],
            validity,
            not_before_floor: None,
        },
    };
    if let Some(s) = subject {
        if let Some(cn) = &s.common_name {
            spec.common_name = cn.clone();
            spec.organizations = s.organizations.clone();
        }
    }
    if let Some(d) = dns {
        spec.dns_names = d.clone();
    }
    if let Some(i) = ips {
        spec.ip_addresses = i.clone();
    }
    if let Some(u) = usages {
        spec.usages = u.clone();
    }
    if spec.common_name.is_empty() {
        return Err(
            "no current certificate to take the subject from: set subject.commonName in the config"
                .into(),
        );
    }
    Ok(spec)
}

fn ca_warnings(ca: &Ca, issued: &issue::Issued, now: OffsetDateTime) -> Vec<String> {
    let mut w = Vec::new();
    if issued.capped_by_ca {
        w.push(format!(
            "CA {} expires at {}, before the requested validity would end: the certificate was cut short",
            ca.cert.subject,
            rfc3339(ca.cert.not_after)
        ));
    } else if ca.cert.not_after - now < CA_WARN_WITHIN {
        w.push(format!(
            "CA {} expires at {} (within a year); CAs are never rotated automatically: plan its replacement",
            ca.cert.subject,
            rfc3339(ca.cert.not_after)
        ));
    }
    w
}

fn outcome(name: &str, path: &Path, current: &Current, action: Action) -> Outcome {
    Outcome {
        name: name.to_string(),
        path: path.to_path_buf(),
        action,
        before: match current {
            Current::Present(c) => Some((c.serial.clone(), c.not_after)),
            _ => None,
        },
        after: None,
        warnings: vec![],
        detail: None,
    }
}

/// A `certificates:` entry: issue from the CA, install as a pair.
pub fn rotate_certificate(
    root: &NodeRoot,
    store: &Store,
    policy: &RenewalPolicy,
    spec: &CertificateSpec,
    req: Request,
    revs: &[Entry],
) -> Outcome {
    let (current, current_key, template) = current_pair(root, &spec.cert, &spec.key);
    let mut out = outcome(
        &spec.name,
        &spec.cert,
        &current,
        Action::Failed(String::new()),
    );
    let reason = match reason_to_rotate(&current, revs, policy, req) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    let result = (|| -> Result<Outcome, String> {
        let ca = load_ca(root, &spec.ca, req.now)?;
        let leaf = leaf_spec(
            spec.subject.as_ref(),
            spec.dns_names.as_ref(),
            spec.ip_addresses.as_ref(),
            spec.usages.as_ref(),
            spec.validity.0,
            template.as_ref(),
        )?;
        let key = || match current_key {
            Some(k) if spec.reuse_key => Ok(k),
            _ => keygen::generate(spec.key_type),
        };
        let (issued, key) = match issue_checked(&ca, leaf, revs, &reason, req, key)? {
            Step::Issued(issued, key) => (issued, key),
            Step::Stop(action) => {
                return Ok(Outcome {
                    action,
                    ..out.clone()
                })
            }
        };
        let key_pem = key.serialize_pem();
        let installed = store
            .install_pair(
                &spec.cert,
                &spec.key,
                issued.cert_pem.as_bytes(),
                key_pem.as_bytes(),
                req.now,
            )
            .map_err(|e| e.to_string())?;
        let mut warnings = ca_warnings(&ca, &issued, req.now);
        if let Some(e) = installed.prune_error {
            warnings.push(format!("old versions not pruned: {e}"));
        }
        Ok(Outcome {
            action: Action::Rotated(reason.clone()),
            after: Some((issued.info.serial.clone(), issued.info.not_after)),
            warnings,
            ..out.clone()
        })
    })();
    match result {
        Ok(o) => o,
        Err(e) => {
            out.action = Action::Failed(e);
            out
        }
    }
}

/// The client certificate a kubeconfig carries for its current user.
fn current_kubeconfig_cert(root: &NodeRoot, path: &Path, text: &[u8]) -> Current {
    let broken = |e: String| Current::Broken(format!("{}: {e}", path.display()));
    let kc = match Kubeconfig::parse(text) {
        Ok(kc) => kc,
        Err(e) => return broken(e),
    };
    let user = match kubeconfig::current_user_name(&kc) {
        Ok(u) => u,
        Err(e) => return broken(e),
    };
    let Some(u) = kc.users.iter().find(|u| u.name == user) else {
        return broken(format!("user {user:?} not found"));
    };
    let load =
        |data: &Option<String>, file: &Option<String>, field: &str| -> Result<Vec<u8>, String> {
            match (data, file) {
                (Some(d), _) => kubeconfig::decode_data(field, d),
                (None, Some(f)) => read(root, &paths::resolve_reference(path, f)),
                (None, None) => Err(format!("user {user:?} has no {field}")),
            }
        };
    let cert = load(
        &u.user.client_certificate_data,
        &u.user.client_certificate,
        "client certificate",
    );
    let key = load(&u.user.client_key_data, &u.user.client_key, "client key");
    let parsed = cert.and_then(|c| parse_material(&c)).and_then(|m| {
        let der = m.certificates.first().ok_or("no certificate")?;
        CertInfo::parse(der)
    });
    let info = match parsed {
        Ok(i) => i,
        Err(e) => return broken(e),
    };
    let key_ok = key
        .and_then(|k| parse_material(&k))
        .and_then(|m| {
            m.private_keys
                .first()
                .ok_or_else(|| "no private key".to_string())
                .and_then(key::public_key_of)
        })
        .map(|p| p == info.public_key);
    match key_ok {
        Ok(true) => Current::Present(Box::new(info)),
        Ok(false) => broken("client key does not match the client certificate".into()),
        Err(e) => broken(format!("client key: {e}")),
    }
}

/// A `kubeconfigs:` entry: issue a client certificate and rewrite the file atomically.
pub fn rotate_kubeconfig(
    root: &NodeRoot,
    store: &Store,
    policy: &RenewalPolicy,
    spec: &KubeconfigSpec,
    req: Request,
    revs: &[Entry],
) -> Outcome {
    let text = match read(root, &spec.path) {
        Ok(t) => t,
        Err(e) => {
            let mut o = outcome(
                &spec.name,
                &spec.path,
                &Current::Missing,
                Action::Failed(String::new()),
            );
            o.action = Action::Failed(format!(
                "{e} (the agent renews the client certificate of an existing kubeconfig; it does not create one)"
            ));
            return o;
        }
    };
    let current = current_kubeconfig_cert(root, &spec.path, &text);
    let mut out = outcome(
        &spec.name,
        &spec.path,
        &current,
        Action::Failed(String::new()),
    );
    let reason = match reason_to_rotate(&current, revs, policy, req) {
        Ok(r) => r,
        Err(action) => return Outcome { action, ..out },
    };
    let result = (|| -> Result<Outcome, String> {
        let ca = load_ca(root, &spec.ca, req.now)?;
        let leaf = leaf_spec(
            spec.subject.as_ref(),
            Some(&vec![]),
            Some(&vec![]),
            Some(&vec![Usage::ClientAuth]),
            spec.validity.0,
            match &current {
                Current::Present(c) => Some(&**c),
                _ => None,
            },
        )?;
        let key = || keygen::generate(spec.key_type);
        let (issued, key) = match issue_checked(&ca, leaf, revs, &reason, req, key)? {
            Step::Issued(issued, key) => (issued, key),
            Step::Stop(action) => {
                return Ok(Outcome {
                    action,
                    ..out.clone()
                })
            }
        };
        let text = std::str::from_utf8(&text)
            .map_err(|_| format!("{}: not UTF-8", spec.path.display()))?;
        let (new_text, _user) = kubeconfig::replace_client_credentials(
            text,
            issued.cert_pem.as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .map_err(|e| format!("{}: {e}", spec.path.display()))?;
        // A kubeconfig with an embedded key is a key: 0600 when new; an existing file keeps
        // its mode and owner.
        store
            .write_file(&spec.path, new_text.as_bytes(), FileSpec::KEY)
            .map_err(|e| e.to_string())?;
        Ok(Outcome {
            action: Action::Rotated(reason.clone()),
            after: Some((issued.info.serial.clone(), issued.info.not_after)),
            warnings: ca_warnings(&ca, &issued, req.now),
            ..out.clone()
        })
    })();
    match result {
        Ok(o) => o,
        Err(e) => {
            out.action = Action::Failed(e);
            out
        }
    }
}
