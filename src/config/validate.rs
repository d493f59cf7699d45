//! Validation of a parsed config: the one function every command runs ([`Config::parse`]
//! calls it), so that `check` accepts exactly the configs `run` accepts.
//!
//! Pure: nothing here touches the disk. Every message starts with the field it concerns.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{Action, Config, HumanDuration, API_VERSION, KIND};

/// The longest validity the agent issues: past this, a typo (`100000d`) rather than intent.
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// The Kubernetes signer's floor; anything shorter would rotate faster than it can issue.
pub const MIN_VALIDITY: Duration = Duration::from_secs(600);

/// Signals an `onRotate` may send (service::actions maps them).
pub const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "TERM", "KILL", "USR1", "USR2", "WINCH", "CONT",
];

/// Directories no configuration may make writable for the agent: its writes there could
/// replace system files.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/var/lib", "/var/log", "/var/run", "/run", "/proc", "/sys", "/dev",
];

impl Config {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.api_version != API_VERSION {
            return Err(format!(
                "apiVersion: expected {API_VERSION}, got {:?}",
                self.api_version
            ));
        }
        if self.kind != KIND {
            return Err(format!("kind: expected {KIND}, got {:?}", self.kind));
        }
        let (at, jitter) = (self.renewal.renew_at.0, self.renewal.jitter.0);
        if !(at > 0.0 && at < 100.0) {
            return Err(format!(
                "renewal.renewAt: must be between 0% and 100%, got {at}%"
            ));
        }
        if !(0.0..100.0).contains(&jitter) || at - jitter <= 0.0 || at + jitter >= 100.0 {
            return Err(format!(
                "renewal.jitter: renewAt +- jitter must stay within (0%, 100%), got {at}% +- {jitter}%"
            ));
        }
        if self.history < 1 {
            return Err("history: must be at least 1 (the current version)".into());
        }
        self.check_names()?;
        self.check_cas()?;
        self.ca_rotation.check(self.kubelet.is_some())?;
        for c in &self.certificates {
            let at = format!("certificates[{}]", c.name);
            for (field, p) in [
                ("cert", &c.cert),
                ("key", &c.key),
                ("ca.cert", &c.ca.cert),
                ("ca.key", &c.ca.key),
            ] {
                require_absolute(&format!("{at}.{field}"), p)?;
            }
            check_validity(&at, c.validity)?;
            for (i, d) in c.dns_names.iter().flatten().enumerate() {
                check_dns_name(d).map_err(|e| format!("{at}.dnsNames[{i}]: {d:?} {e}"))?;
            }
            if let Some(s) = &c.subject {
                check_subject(&at, s)?;
            }
        }
        for k in &self.kubeconfigs {
            let at = format!("kubeconfigs[{}]", k.name);
            for (field, p) in [
                ("path", &k.path),
                ("ca.cert", &k.ca.cert),
                ("ca.key", &k.ca.key),
            ] {
                require_absolute(&format!("{at}.{field}"), p)?;
            }
            check_validity(&at, k.validity)?;
            if let Some(s) = &k.subject {
                check_subject(&at, s)?;
            }
        }
        for (i, p) in self.inventory.pki_directories.iter().enumerate() {
            let field = format!("inventory.pkiDirectories[{i}]");
            require_absolute(&field, p)?;
            check_managed_dir(&field, p)?;
        }
        if let Some(k) = &self.kubelet {
            require_absolute("kubelet.bootstrapKubeconfig", &k.bootstrap_kubeconfig)?;
            require_absolute("kubelet.kubeconfig", &k.kubeconfig)?;
            require_absolute("kubelet.certDir", &k.cert_dir)?;
            check_managed_dir("kubelet.certDir", &k.cert_dir)?;
            for (i, a) in k.serving.addresses.iter().enumerate() {
                if a.parse::<std::net::IpAddr>().is_err() {
                    check_dns_name(a).map_err(|e| {
                        format!(
                            "kubelet.serving.addresses[{i}]: {a:?} is not an IP address and {e}"
                        )
                    })?;
                }
            }
            if k.csr_timeout.0.is_zero() {
                return Err("kubelet.csrTimeout: must be more than 0s".into());
            }
        }
        require_absolute("revocation.directory", &self.revocation.directory)?;
        if self.revocation.cluster && self.kubelet.is_none() {
            return Err("revocation.cluster: reading RenewRevocation objects uses the node's credentials: it needs the kubelet section".into());
        }
        if self.revocation.poll_interval.0 < std::time::Duration::from_secs(1) {
            return Err("revocation.pollInterval: at least 1s".into());
        }
        self.metrics.validate()?;
        self.check_write_targets()?;
        for c in &self.certificates {
            check_pair_layout(&format!("certificates[{}]", c.name), &c.cert, &c.key)?;
        }
        self.check_actions()?;
        Ok(())
    }

    fn check_names(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        let cert_names = self.certificates.iter().map(|c| ("certificates", &c.name));
        let kc_names = self.kubeconfigs.iter().map(|c| ("kubeconfigs", &c.name));
        for (section, name) in cert_names.chain(kc_names) {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || name.starts_with('.')
            {
                return Err(format!(
                    "{section}: name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.'"
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(format!("{section}: name {name:?} is used twice"));
            }
        }
        Ok(())
    }

    fn check_cas(&self) -> Result<(), String> {
        let mut ca_names = HashSet::new();
        for c in &self.cas {
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|x| x.is_ascii_alphanumeric() || x == '-')
            {
                return Err(format!(
                    "cas: name {:?} must be non-empty and use only letters, digits and '-'",
                    c.name
                ));
            }
            if !ca_names.insert(c.name.as_str()) {
                return Err(format!("cas: name {:?} is used twice", c.name));
            }
            require_absolute(&format!("cas[{}].cert", c.name), &c.cert)?;
            if let Some(k) = &c.key {
                require_absolute(&format!("cas[{}].key", c.name), k)?;
                if k.parent() != c.cert.parent() || k == &c.cert {
                    return Err(format!(
                        "cas[{}]: cert and key must be two files in one directory (they are switched together)",
                        c.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The directories whose files the agent may create and replace: the pki directories
    /// and kubelet's certificate directory, and nothing derived from a kubeconfig's path
    /// (a `kubelet.kubeconfig: /etc/passwd` must not make `/etc` writable).
    pub fn managed_directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.inventory.pki_directories.clone();
        if let Some(k) = &self.kubelet {
            dirs.push(k.cert_dir.clone());
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// What the daemon watches for changes: the managed directories and the directories of
    /// the kubeconfigs it rewrites or reads. (Watching is not writing.)
    pub fn watch_directories(&self) -> Vec<PathBuf> {
        let mut dirs = self.managed_directories();
        for g in &self.inventory.kubeconfigs {
            if let Some(parent) = Path::new(g).parent() {
                if !parent.to_string_lossy().contains(['*', '?', '[']) {
                    dirs.push(parent.to_path_buf());
                }
            }
        }
        let kubeconfigs = self.kubeconfigs.iter().map(|k| &k.path);
        for p in kubeconfigs.chain(self.kubelet.iter().map(|k| &k.kubeconfig)) {
            if let Some(parent) = p.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Every file the agent writes, with the field that names it.
    fn write_targets(&self) -> Vec<(String, &PathBuf, Target)> {
        let mut out = Vec::new();
        for c in &self.certificates {
            out.push((
                format!("certificates[{}].cert", c.name),
                &c.cert,
                Target::Pki,
            ));
            out.push((format!("certificates[{}].key", c.name), &c.key, Target::Pki));
        }
        for k in &self.kubeconfigs {
            let field = format!("kubeconfigs[{}].path", k.name);
            out.push((field, &k.path, Target::Kubeconfig));
        }
        if let Some(k) = &self.kubelet {
            out.push((
                "kubelet.kubeconfig".into(),
                &k.kubeconfig,
                Target::Kubeconfig,
            ));
        }
        for c in &self.cas {
            out.push((format!("cas[{}].cert", c.name), &c.cert, Target::Ca));
            if let Some(k) = &c.key {
                out.push((format!("cas[{}].key", c.name), k, Target::Ca));
            }
        }
        out
    }

    /// Every file the agent would write lies in a managed directory (a kubeconfig: in one
    /// or in the directory right above one, as `/etc/kubernetes/admin.conf` is above
    /// `/etc/kubernetes/pki`), no two entries write the same file or the same versioned
    /// pair, and no entry writes over a CA.
    fn check_write_targets(&self) -> Result<(), String> {
        let dirs = self.managed_directories();
        let list = || {
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cas: HashSet<&PathBuf> = self
            .certificates
            .iter()
            .flat_map(|c| [&c.ca.cert, &c.ca.key])
            .chain(
                self.kubeconfigs
                    .iter()
                    .flat_map(|k| [&k.ca.cert, &k.ca.key]),
            )
            .collect();
        let mut seen: HashMap<&PathBuf, String> = HashMap::new();
        for (field, p, kind) in self.write_targets() {
            let lexical_escape = p.components().any(|c| matches!(c, Component::ParentDir));
            let in_managed = dirs.iter().any(|d| p.starts_with(d));
            let above_managed = kind == Target::Kubeconfig
                && p.parent()
                    .is_some_and(|parent| dirs.iter().any(|d| d.parent() == Some(parent)));
            if lexical_escape || !(in_managed || above_managed) {
                return Err(format!(
                    "{field}: {} is outside the directories the agent manages ({}); add its directory to inventory.pkiDirectories",
                    p.display(),
                    list()
                ));
            }
            if cas.contains(p) && kind != Target::Ca {
                return Err(format!(
                    "{field}: {} is a CA file; the agent never writes over a CA",
                    p.display()
                ));
            }
            if let Some(other) = seen.insert(p, field.clone()) {
                return Err(format!(
                    "{field}: {} is also written by {other}; each file belongs to one entry",
                    p.display()
                ));
            }
        }
        // Two pairs with one stem in one directory would share `..STEM.data`.
        let mut stems: HashMap<(PathBuf, String), &str> = HashMap::new();
        for c in &self.certificates {
            let key = (
                c.cert.parent().unwrap_or(Path::new("/")).to_path_buf(),
                stem(&c.cert),
            );
            if let Some(other) = stems.insert(key, &c.name) {
                return Err(format!(
                    "certificates[{}].cert: {} has the same name before the extension as certificates[{other}] in the same directory; the two would share one versioned layout",
                    c.name,
                    c.cert.display()
                ));
            }
        }
        Ok(())
    }

    /// Every `onRotate` action, as `run` checks them at start-up.
    fn check_actions(&self) -> Result<(), String> {
        let all = self
            .certificates
            .iter()
            .map(|c| (format!("certificates[{}]", c.name), &c.on_rotate))
            .chain(
                self.kubeconfigs
                    .iter()
                    .map(|k| (format!("kubeconfigs[{}]", k.name), &k.on_rotate)),
            )
            .chain(
                self.kubelet
                    .iter()
                    .map(|k| ("kubelet".to_string(), &k.on_rotate)),
            );
        for (at, actions) in all {
            for (i, a) in actions.iter().enumerate() {
                check_action(a).map_err(|e| format!("{at}.onRotate[{i}]: {e}"))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Pki,
    Kubeconfig,
    /// `rotate-ca` writes these (and only it writes over a CA).
    Ca,
}

fn stem(p: &Path) -> String {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_string(),
        _ => name,
    }
}

/// A certificate and its key are switched by one rename of `..STEM.data`: they must be in
/// one directory, and (so that a typo in one of them is caught here, not by replacing a
/// real key) have the same name before the extension.
fn check_pair_layout(at: &str, cert: &Path, key: &Path) -> Result<(), String> {
    if cert.parent() != key.parent() {
        return Err(format!(
            "{at}: cert {} and key {} must be in the same directory (the agent switches them together with one rename)",
            cert.display(),
            key.display()
        ));
    }
    if cert == key {
        return Err(format!(
            "{at}: cert and key are the same file {}",
            cert.display()
        ));
    }
    let (c, k) = (stem(cert), stem(key));
    if c != k {
        return Err(format!(
            "{at}: cert {} and key {} must have the same name before the extension ({c:?} is not {k:?}): is one of them mistyped?",
            cert.display(),
            key.display()
        ));
    }
    Ok(())
}

pub(super) fn require_absolute(field: &str, p: &Path) -> Result<(), String> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(format!("{field}: {} must be an absolute path", p.display()))
    }
}

/// A directory the agent may write in: not `/`, not a top-level directory, not a system
/// tree, no `..`.
fn check_managed_dir(field: &str, p: &Path) -> Result<(), String> {
    let normal = p
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let system = SYSTEM_DIRS.iter().any(|s| {
        let s = Path::new(s);
        p == s || (p.starts_with(s) && s == Path::new("/usr"))
    });
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{field}: {} must not contain '..'", p.display()));
    }
    if normal < 2 || system {
        return Err(format!(
            "{field}: {} is a system directory; the agent would be allowed to replace any file in it",
            p.display()
        ));
    }
    Ok(())
}

fn check_validity(at: &str, v: HumanDuration) -> Result<(), String> {
    if v.0 < MIN_VALIDITY {
        return Err(format!("{at}.validity: must be at least 10m"));
    }
    if v.0 > MAX_VALIDITY {
        return Err(format!(
            "{at}.validity: {} is more than 100 years",
            humantime::format_duration(v.0)
        ));
    }
    Ok(())
}

fn check_subject(at: &str, s: &super::SubjectSpec) -> Result<(), String> {
    if s.organizations.len() > 1 {
        return Err(format!(
            "{at}.subject.organizations: only one organization per certificate is supported, got {}",
            s.organizations.len()
        ));
    }
    if s.common_name.as_deref().is_some_and(|cn| cn.is_empty()) {
        return Err(format!("{at}.subject.commonName: empty"));
    }
    Ok(())
}

/// A DNS name for a SAN: RFC 1123 labels (letters, digits, `-` not at either end, 1 to 63
/// characters), 253 characters at most, and a wildcard only as the whole leftmost label.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is not a DNS name: empty".into());
    }
    if name.len() > 253 {
        return Err("is not a DNS name: longer than 253 characters".into());
    }
    for (i, label) in name.split('.').enumerate() {
        if i == 0 && label == "*" {
            if !name.contains('.') {
                return Err("is not a DNS name: a lone wildcard".into());
            }
            continue;
        }
        if label.contains('*') {
            return Err("is not a DNS name: a wildcard may only be the whole leftmost label (*.example.com)".into());
        }
        if label.is_empty() || label.len() > 63 {
            return Err("is not a DNS name: every label must have 1 to 63 characters".into());
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(
                "is not a DNS name: only letters, digits and '-' are allowed (RFC 1123)".into(),
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("is not a DNS name: a label cannot start or end with '-'".into());
        }
    }
    Ok(())
}

/// A unit name systemd would accept: `name.suffix`, from the characters systemd allows,
/// no path, not an option.
pub fn check_unit(name: &str) -> Result<(), String> {
    const SUFFIXES: &[&str] = &[
        ".service", ".socket", ".target", ".timer", ".path", ".mount", ".scope", ".slice",
    ];
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
    if name.is_empty()
        || name.len() > 255
        || name.starts_with(['-', '.'])
        || !ok_chars
        || !SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
    {
        return Err(format!(
            "{name:?} is not a systemd unit name (like kubelet.service)"
        ));
    }
    Ok(())
}

/// `HUP`, `SIGHUP`, `hup` -> `HUP`, if the agent sends it.
pub fn signal_name(name: &str) -> Result<String, String> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n).to_string();
    if SIGNALS.contains(&n.as_str()) {
        Ok(n)
    } else {
        Err(format!(
            "{name:?} is not a signal this agent sends ({})",
            SIGNALS.join(", ")
        ))
    }
}

pub fn check_action(a: &Action) -> Result<(), String> {
    match a {
        Action::Restart(u) | Action::TryRestart(u) | Action::ReloadOrRestart(u) => check_unit(u),
        Action::Signal(s) => {
            signal_name(&s.signal)?;
            match (&s.unit, &s.pid_file) {
                (Some(u), None) => check_unit(u),
                (None, Some(p)) if p.is_absolute() => Ok(()),
                (None, Some(p)) => Err(format!("signal.pidFile {} must be absolute", p.display())),
                _ => Err("signal: give exactly one of unit and pidFile".into()),
            }
        }
        Action::Command(c) if c.argv.is_empty() || c.argv[0].is_empty() => {
            Err("command.argv is empty".into())
        }
        Action::Command(c) if !Path::new(&c.argv[0]).is_absolute() => Err(format!(
            "command.argv[0] {:?} must be an absolute path (no shell, no PATH lookup)",
            c.argv[0]
        )),
        Action::Command(c) if c.timeout.0.is_zero() => {
            Err("command.timeout: must be more than 0s".into())
        }
        Action::Command(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
