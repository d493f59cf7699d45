//! The node's certificate inventory: walk pki directories and kubeconfig files, parse every
//! certificate and key found, and relate them (key matches, chains to which CA).
//!
//! Nothing here prints or decides; `check` turns the inventory into a report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kube::kubeconfig::{decode_data, Kubeconfig};
use crate::parallel;
use crate::paths::{self, NodeRoot};
use crate::pki::cert::SignatureCheck;
use crate::pki::{key, parse_material, CertInfo};

/// Where to look.
#[derive(Debug, Clone)]
pub enum Target {
    /// A pki directory, as a node path (under `--root`); walked recursively.
    PkiDir(PathBuf),
    /// A kubeconfig, as a node path.
    Kubeconfig(PathBuf),
    /// A path given on the command line, as given: a file (certificate material or a
    /// kubeconfig, told apart by content) or a directory.
    Given(PathBuf),
    /// `HOST:PORT` of a TLS server: the chain it presents.
    Remote(String),
}

/// One certificate, or one file that should have held one.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file, as a node path (or as given on the command line).
    pub path: String,
    /// Where in the file: `#2` in a bundle, `users[admin].client-certificate-data`.
    pub location: Option<String>,
    pub cert: Option<CertInfo>,
    /// The private key the certificate was paired with, if any.
    pub key_path: Option<String>,
    pub key_matches: Option<bool>,
    /// The CA entry (path) whose key signed this certificate, if found in the inventory.
    pub chains_to: Option<String>,
    /// Why this entry is unusable; `None` when it is fine.
    pub problem: Option<String>,
}

impl Entry {
    fn problem(path: String, location: Option<String>, problem: String) -> Entry {
        Entry {
            path,
            location,
            cert: None,
            key_path: None,
            key_matches: None,
            chains_to: None,
            problem: Some(problem),
        }
    }

    /// A file that should hold a certificate but cannot be used, and why.
    pub fn problem_at(path: String, problem: String) -> Entry {
        Entry::problem(path, None, problem)
    }

    /// `path` or `path (location)`.
    pub fn label(&self) -> String {
        match &self.location {
            Some(l) => format!("{} ({l})", self.path),
            None => self.path.clone(),
        }
    }
}

/// A file location: a node path (read under the root) or a path as given.
#[derive(Debug, Clone)]
enum Loc {
    Node(PathBuf),
    Host(PathBuf),
}

impl Loc {
    fn read(&self, root: &NodeRoot) -> Result<Vec<u8>, String> {
        match self {
            Loc::Node(p) => root.read(p),
            Loc::Host(p) => paths::read_host_file(p),
        }
        .map_err(|e| e.to_string())
    }

    fn display(&self) -> String {
        match self {
            Loc::Node(p) | Loc::Host(p) => p.display().to_string(),
        }
    }

    /// The directory to list, on this machine.
    fn host(&self, root: &NodeRoot) -> PathBuf {
        match self {
            Loc::Node(p) => root.host_path(p),
            Loc::Host(p) => p.clone(),
        }
    }

    fn child(&self, name: &std::ffi::OsStr) -> Loc {
        match self {
            Loc::Node(p) => Loc::Node(p.join(name)),
            Loc::Host(p) => Loc::Host(p.join(name)),
        }
    }

    /// A path written inside this file: absolute ones are node paths, relative ones are
    /// relative to this file's directory.
    fn reference(&self, reference: &str) -> Loc {
        match self {
            _ if Path::new(reference).is_absolute() => Loc::Node(PathBuf::from(reference)),
            Loc::Node(p) => Loc::Node(paths::resolve_reference(p, reference)),
            Loc::Host(p) => Loc::Host(paths::resolve_reference(p, reference)),
        }
    }
}

/// What a directory walk found: read and parsed afterwards, on every core.
enum Found {
    /// A certificate (or lone key) file, and the key file beside it.
    File { file: Loc, sibling_key: Option<Loc> },
    /// A directory that could not be listed, and why.
    Unlisted { dir: String, reason: String },
}

/// File extensions that hold certificate material in a pki directory.
const MATERIAL_EXTENSIONS: &[&str] = &["crt", "pem", "cer", "der", "key"];

/// The configured pki directories and kubeconfigs, plus every managed file outside them.
pub fn default_targets(root: &NodeRoot, config: &crate::config::Config) -> Vec<Target> {
    let inv = &config.inventory;
    let mut targets: Vec<Target> = inv
        .pki_directories
        .iter()
        .cloned()
        .map(Target::PkiDir)
        .collect();
    let mut kubeconfigs = expand_kubeconfig_globs(root, &inv.kubeconfigs);
    kubeconfigs.extend(config.kubeconfigs.iter().map(|k| k.path.clone()));
    if let Some(k) = &config.kubelet {
        kubeconfigs.push(k.kubeconfig.clone());
    }
    kubeconfigs.sort();
    kubeconfigs.dedup();
    kubeconfigs.retain(|k| root.host_path(k).exists() || root.host_path(k).is_symlink());
    targets.extend(kubeconfigs.into_iter().map(Target::Kubeconfig));
    targets
}

/// Build the inventory of `targets`.
pub fn collect(root: &NodeRoot, targets: &[Target]) -> Vec<Entry> {
    let mut entries = certificates(root, targets);
    link_chains(&mut entries);
    entries
}

/// The certificates of `targets` without relating them: no signature checked, `chains_to`
/// left empty (what the metrics need, at a fraction of the cost).
pub fn certificates(root: &NodeRoot, targets: &[Target]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for t in targets {
        match t {
            Target::PkiDir(p) => {
                let loc = Loc::Node(p.clone());
                // A node without (say) kubelet has no /var/lib/kubelet/pki: nothing to report.
                if loc.host(root).is_dir() {
                    entries.extend(read_tree(root, &loc))
                }
            }
            Target::Kubeconfig(p) => read_kubeconfig(root, &Loc::Node(p.clone()), &mut entries),
            Target::Remote(addr) => match crate::remote::fetch_chain(addr) {
                Ok(chain) => push_certs(&format!("remote:{addr}"), None, chain, None, &mut entries),
                Err(e) => entries.push(Entry::problem(format!("remote:{addr}"), None, e)),
            },
            Target::Given(p) => {
                let loc = Loc::Host(p.clone());
                if p.is_dir() {
                    entries.extend(read_tree(root, &loc))
                } else {
                    read_given_file(root, &loc, &mut entries)
                }
            }
        }
    }
    entries
}

/// Expand the configured kubeconfig globs (node paths) into existing files.
pub fn expand_kubeconfig_globs(root: &NodeRoot, globs: &[String]) -> Vec<PathBuf> {
    let root_str = root.root().to_string_lossy();
    // The root is literal; only the node part of the pattern is a glob.
    let prefix = glob::Pattern::escape(root_str.trim_end_matches('/'));
    let mut out = Vec::new();
    for g in globs {
        let pattern = format!("{prefix}/{}", paths::relative(Path::new(g)).display());
        let mut found: Vec<PathBuf> = glob::glob(&pattern)
            .map(|paths| {
                paths
                    .flatten()
                    .filter_map(|p| {
                        p.strip_prefix(root.root())
                            .ok()
                            .map(|r| Path::new("/").join(r))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        out.extend(found);
    }
    out.dedup();
    out
}

/// Every certificate under `dir`, in walk order (names sorted, depth first). The files are
/// read and parsed in parallel: a pki tree can hold thousands.
fn read_tree(root: &NodeRoot, dir: &Loc) -> Vec<Entry> {
    let mut found = Vec::new();
    walk_dir(root, dir, &mut found);
    parallel::map(&found, |f| match f {
        Found::File { file, sibling_key } => {
            let mut entries = Vec::new();
            read_material_file(root, file, sibling_key.as_ref(), &mut entries);
            entries
        }
        Found::Unlisted { dir, reason } => vec![Entry::problem(dir.clone(), None, reason.clone())],
    })
    .into_iter()
    .flatten()
    .collect()
}

fn walk_dir(root: &NodeRoot, dir: &Loc, found: &mut Vec<Found>) {
    let host = dir.host(root);
    let listing = match std::fs::read_dir(&host) {
        Ok(l) => l,
        Err(e) => {
            found.push(Found::Unlisted {
                dir: dir.display(),
                reason: format!("cannot list directory: {e}"),
            });
            return;
        }
    };
    let mut names: Vec<(std::ffi::OsString, std::fs::FileType)> = listing
        .flatten()
        .filter_map(|e| e.file_type().ok().map(|t| (e.file_name(), t)))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let name_set: std::collections::HashSet<String> = names
        .iter()
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .collect();

    for (name, ftype) in &names {
        let name_str = name.to_string_lossy();
        // `..data` and `..<timestamp>` are the store's versioned directories: the live
        // files are reached through the links beside them.
        if name_str.starts_with("..") {
            continue;
        }
        if ftype.is_dir() {
            walk_dir(root, &dir.child(name), found);
            continue;
        }
        let Some(ext) = Path::new(name).extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !MATERIAL_EXTENSIONS.contains(&ext) {
            continue;
        }
        let stem = name_str[..name_str.len() - ext.len() - 1].to_string();
        if is_superseded_history(&stem, &name_set) {
            continue;
        }
        if ext == "key" {
            let has_cert = ["crt", "pem", "cer"]
                .iter()
                .any(|e| name_set.contains(&format!("{stem}.{e}")));
            // `sa.key` + `sa.pub`: the service-account signing key pair, not a TLS key.
            if has_cert || name_set.contains(&format!("{stem}.pub")) {
                continue;
            }
        }
        let sibling_key = (ext != "key" && name_set.contains(&format!("{stem}.key")))
            .then(|| dir.child(std::ffi::OsStr::new(&format!("{stem}.key"))));
        found.push(Found::File {
            file: dir.child(name),
            sibling_key,
        });
    }
}

/// `kubelet-client-2026-11-22-03-00-00.pem` is history once `kubelet-client-current.pem` exists.
fn is_superseded_history(stem: &str, names: &std::collections::HashSet<String>) -> bool {
    let b = stem.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let (base, ts) = stem.split_at(stem.len() - 20);
    let ts_shape = ts.bytes().enumerate().all(|(i, c)| match i {
        0 | 5 | 8 | 11 | 14 | 17 => c == b'-',
        _ => c.is_ascii_digit(),
    });
    ts_shape && names.contains(&format!("{base}-current.pem"))
}

fn read_given_file(root: &NodeRoot, loc: &Loc, entries: &mut Vec<Entry>) {
    match loc.read(root) {
        Ok(bytes) if looks_like_kubeconfig(&bytes) => {
            kubeconfig_entries(root, loc, &bytes, entries)
        }
        Ok(_) => {
            // `check apiserver.crt` pairs `apiserver.key` beside it, as the directory walk does.
            let sibling = match loc {
                Loc::Host(p) if p.extension().is_some_and(|e| e != "key") => {
                    Some(p.with_extension("key")).filter(|k| k.exists())
                }
                _ => None,
            };
            read_material_file(root, loc, sibling.map(Loc::Host).as_ref(), entries)
        }
        Err(e) => entries.push(Entry::problem(loc.display(), None, e)),
    }
}

fn looks_like_kubeconfig(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    !text.contains("-----BEGIN ")
        && text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("clusters:") || l.starts_with("users:") || l.starts_with("kind: Config")
        })
}

/// Certificates in one file, with the key in the same file or `sibling_key`.
fn read_material_file(
    root: &NodeRoot,
    loc: &Loc,
    sibling_key: Option<&Loc>,
    entries: &mut Vec<Entry>,
) {
    let path = loc.display();
    let material = match loc.read(root).and_then(|b| parse_material(&b)) {
        Ok(m) => m,
        Err(e) => return entries.push(Entry::problem(path, None, e)),
    };
    if material.certificates.is_empty() {
        if !material.private_keys.is_empty() {
            entries.push(Entry::problem(
                path,
                None,
                "private key with no certificate".into(),
            ));
        } else {
            entries.push(Entry::problem(path, None, "no certificate in file".into()));
        }
        return;
    }
    // The key pairs with the first certificate (the leaf; any others are its chain).
    let key = match material.private_keys.first() {
        Some(k) => Some((path.clone(), KeyRead::Loaded(k.clone_key()))),
        None => sibling_key.map(|k| (k.display(), KeyRead::from_file(root, k))),
    };
    push_certs(&path, None, material.certificates, key, entries);
}

/// A private key found for a certificate: (where, what became of reading it).
type LoadedKey = (String, KeyRead);

enum KeyRead {
    Loaded(rustls_pki_types::PrivateKeyDer<'static>),
    /// The key exists but this user may not read it (`check` run as non-root against 0600
    /// keys): whether it matches is unknown, which is not a fault of the certificate.
    NotPermitted,
    Broken(String),
}

impl KeyRead {
    fn from_file(root: &NodeRoot, loc: &Loc) -> KeyRead {
        let bytes = match loc {
            Loc::Node(p) => root.read(p),
            Loc::Host(p) => paths::read_host_file(p),
        };
        match bytes {
            Err(paths::ReadError::PermissionDenied) => KeyRead::NotPermitted,
            Err(e) => KeyRead::Broken(e.to_string()),
            Ok(b) => KeyRead::from_material(parse_material(&b), "no private key in file"),
        }
    }

    fn from_material(m: Result<crate::pki::Material, String>, missing: &str) -> KeyRead {
        match m.map(|m| m.private_keys.into_iter().next()) {
            Ok(Some(k)) => KeyRead::Loaded(k),
            Ok(None) => KeyRead::Broken(missing.to_string()),
            Err(e) => KeyRead::Broken(e),
        }
    }
}

fn push_certs(
    path: &str,
    field: Option<&str>,
    certs: Vec<Vec<u8>>,
    key: Option<LoadedKey>,
    entries: &mut Vec<Entry>,
) {
    let count = certs.len();
    for (i, der) in certs.into_iter().enumerate() {
        let location = match (field, count) {
            (Some(f), 1) => Some(f.to_string()),
            (Some(f), _) => Some(format!("{f}#{}", i + 1)),
            (None, 1) => None,
            (None, _) => Some(format!("#{}", i + 1)),
        };
        let mut entry = match CertInfo::from_der(der) {
            Ok(c) => Entry {
                path: path.to_string(),
                location,
                cert: Some(c),
                key_path: None,
                key_matches: None,
                chains_to: None,
                problem: None,
            },
            Err(e) => {
                entries.push(Entry::problem(path.to_string(), location, e));
                continue;
            }
        };
        if i == 0 {
            if let Some((key_path, loaded)) = &key {
                entry.key_path = Some(key_path.clone());
                let public = match loaded {
                    KeyRead::Loaded(k) => key::public_key_of(k).map(Some),
                    KeyRead::NotPermitted => Ok(None),
                    KeyRead::Broken(e) => Err(e.clone()),
                };
                match public {
                    Ok(Some(public)) => {
                        let matches = entry.cert.as_ref().is_some_and(|c| c.public_key == public);
                        entry.key_matches = Some(matches);
                        if !matches {
                            entry.problem = Some(format!(
                                "private key {key_path} does not match the certificate"
                            ));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => entry.problem = Some(format!("private key {key_path}: {e}")),
                }
            }
        }
        entries.push(entry);
    }
}

fn read_kubeconfig(root: &NodeRoot, loc: &Loc, entries: &mut Vec<Entry>) {
    match loc.read(root) {
        Ok(bytes) => kubeconfig_entries(root, loc, &bytes, entries),
        Err(e) => entries.push(Entry::problem(loc.display(), None, e)),
    }
}

/// Certificates a kubeconfig carries: CA data or files per cluster, client certificate
/// (with its key) per user.
fn kubeconfig_entries(root: &NodeRoot, loc: &Loc, bytes: &[u8], entries: &mut Vec<Entry>) {
    let path = loc.display();
    let kc = match Kubeconfig::parse(bytes) {
        Ok(kc) => kc,
        Err(e) => return entries.push(Entry::problem(path, None, e)),
    };
    // Material from `*-data` (base64 PEM) or a referenced file.
    let load = |field: String,
                data: Option<&String>,
                file: Option<&String>|
     -> Option<(String, Result<crate::pki::Material, String>)> {
        if let Some(d) = data {
            let m = decode_data(&field, d)
                .and_then(|b| parse_material(&b))
                .map_err(|e| format!("{field}: {e}"));
            Some((field, m))
        } else {
            file.map(|f| {
                let target = loc.reference(f);
                let m = target
                    .read(root)
                    .and_then(|b| parse_material(&b))
                    .map_err(|e| format!("{field} {}: {e}", target.display()));
                (field, m)
            })
        }
    };
    for c in &kc.clusters {
        let data_field = format!("clusters[{}].certificate-authority-data", c.name);
        let file_field = format!("clusters[{}].certificate-authority", c.name);
        let field = if c.cluster.certificate_authority_data.is_some() {
            data_field
        } else {
            file_field
        };
        if let Some((field, m)) = load(
            field,
            c.cluster.certificate_authority_data.as_ref(),
            c.cluster.certificate_authority.as_ref(),
        ) {
            match m {
                Ok(m) => push_certs(&path, Some(&field), m.certificates, None, entries),
                Err(e) => entries.push(Entry::problem(path.clone(), Some(field), e)),
            }
        }
    }
    for u in &kc.users {
        let user = &u.user;
        let cert_field = if user.client_certificate_data.is_some() {
            format!("users[{}].client-certificate-data", u.name)
        } else {
            format!("users[{}].client-certificate", u.name)
        };
        let Some((field, m)) = load(
            cert_field,
            user.client_certificate_data.as_ref(),
            user.client_certificate.as_ref(),
        ) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                entries.push(Entry::problem(path.clone(), Some(field), e));
                continue;
            }
        };
        let key_field = if user.client_key_data.is_some() {
            format!("users[{}].client-key-data", u.name)
        } else {
            format!("users[{}].client-key", u.name)
        };
        let key = match m.private_keys.first() {
            Some(k) => Some((field.clone(), KeyRead::Loaded(k.clone_key()))),
            None => load(
                key_field,
                user.client_key_data.as_ref(),
                user.client_key.as_ref(),
            )
            .map(|(kf, km)| {
                let missing = format!("{kf}: no private key");
                (
                    format!("{path} ({kf})"),
                    KeyRead::from_material(km, &missing),
                )
            }),
        };
        push_certs(&path, Some(&field), m.certificates, key, entries);
    }
}

/// Relate each certificate to the CA in the inventory whose key signed it. Each CA's key
/// is parsed once; the signatures are checked on every core.
fn link_chains(entries: &mut [Entry]) {
    // CAs by subject, first occurrence per distinct certificate.
    let mut cas: BTreeMap<&[u8], Vec<(String, SignatureCheck<'_>)>> = BTreeMap::new();
    for e in entries.iter() {
        let Some(c) = e.cert.as_ref().filter(|c| c.is_ca) else {
            continue;
        };
        let list = cas.entry(&c.subject_der).or_default();
        if !list.iter().any(|(_, known)| known.ca_der() == c.der) {
            list.extend(SignatureCheck::new(c).map(|check| (e.label(), check)));
        }
    }
    // Per entry: Ok(the CA that signed it), Err(the first CA of that name: none did).
    let links: Vec<Option<Result<String, String>>> = parallel::map(entries, |e| {
        let cert = e.cert.as_ref()?;
        let candidates = cas.get(cert.issuer_der.as_slice())?;
        let (first, _) = candidates.first()?;
        Some(match candidates.iter().find(|(_, ca)| ca.signed(cert)) {
            Some((label, _)) => Ok(label.clone()),
            None => Err(first.clone()),
        })
    });
    for (e, link) in entries.iter_mut().zip(links) {
        match link {
            Some(Ok(label)) => e.chains_to = Some(label),
            Some(Err(first)) if e.problem.is_none() => {
                e.problem = Some(format!(
                    "signature does not verify against the CA with the same subject ({first})"
                ))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_recognised_only_next_to_a_current_link() {
        let mut names = std::collections::HashSet::new();
        names.insert("kubelet-client-current.pem".to_string());
        assert!(is_superseded_history(
            "kubelet-client-2026-11-22-03-00-00",
            &names
        ));
        assert!(!is_superseded_history(
            "kubelet-server-2026-11-22-03-00-00",
            &names
        ));
        assert!(!is_superseded_history("kubelet-client-current", &names));
        assert!(!is_superseded_history("kubelet", &names));
    }
}
