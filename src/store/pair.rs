//! A certificate and key with fixed names (`apiserver.crt` / `apiserver.key`), switched
//! together by one rename:
//!
//! ```text
//! ..apiserver.2026_11_22_03_00_00.123456789/{apiserver.crt,apiserver.key}
//! ..apiserver.data -> ..apiserver.2026_11_22_03_00_00.123456789
//! apiserver.crt    -> ..apiserver.data/apiserver.crt
//! apiserver.key    -> ..apiserver.data/apiserver.key
//! ```

use time::OffsetDateTime;

use super::dir::{Entry, FileSpec, ManagedDir};
use super::error::StoreError;
use super::failpoint;
use super::history::{self, Installed, Version};
use super::naming;
use super::ownership;

/// The names of one pair in its directory.
#[derive(Debug, Clone)]
pub struct PairNames {
    /// The versioned directories' name: the certificate file's stem (`apiserver`).
    pub stem: String,
    pub cert: String,
    pub key: String,
}

/// What a pair holds: a leaf (a CA found in its place is refused), or a CA (`rotate-ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    Leaf,
    Ca,
}

/// What a public name is now.
enum Public {
    Missing,
    /// Already `..STEM.data/FILE`.
    Linked,
    /// A regular file, or a link staying in the directory: kubeadm's layout, to migrate.
    Plain {
        data: Vec<u8>,
        spec: FileSpec,
    },
}

fn public(dir: &ManagedDir, stem: &str, file: &str) -> Result<Public, StoreError> {
    match dir.entry(file)? {
        Entry::Missing => Ok(Public::Missing),
        Entry::Directory => Err(StoreError::IsDirectory {
            path: dir.host_path(file),
        }),
        Entry::Other(kind) => Err(StoreError::NotAFile {
            path: dir.host_path(file),
            kind,
        }),
        Entry::Symlink(t) if t.as_os_str() == naming::pair_link_target(stem, file).as_str() => {
            Ok(Public::Linked)
        }
        Entry::File(_) | Entry::Symlink(_) => {
            let (data, st) = dir.read_beneath(file)?;
            Ok(Public::Plain {
                data,
                spec: FileSpec::of(&st),
            })
        }
    }
}

/// Versions of `stem` and the current one's stamp.
pub fn versions(dir: &ManagedDir, stem: &str) -> Result<Vec<Version>, StoreError> {
    let current = current_stamp(dir, stem)?;
    let mut out: Vec<Version> = dir
        .list()?
        .iter()
        .filter_map(|n| {
            naming::parse_pair_version(stem, n).map(|s| Version {
                name: n.clone(),
                stamp: s.to_string(),
                current: Some(s) == current.as_deref(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.stamp.cmp(&b.stamp));
    Ok(out)
}

fn current_stamp(dir: &ManagedDir, stem: &str) -> Result<Option<String>, StoreError> {
    let link = naming::pair_data_link(stem);
    match dir.entry(&link)? {
        Entry::Missing => Ok(None),
        Entry::Symlink(t) => {
            let t = t.to_string_lossy();
            match naming::parse_pair_version(stem, &t) {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(StoreError::SymlinkEscape {
                    path: dir.host_path(&link),
                    target: t.into_owned(),
                }),
            }
        }
        Entry::Directory => Err(StoreError::IsDirectory {
            path: dir.host_path(&link),
        }),
        Entry::File(_) => Err(StoreError::NotAFile {
            path: dir.host_path(&link),
            kind: "a regular file (the store expects a symlink here)",
        }),
        Entry::Other(kind) => Err(StoreError::NotAFile {
            path: dir.host_path(&link),
            kind,
        }),
    }
}

/// Whether the versioned directory `vdir` holds both files, a certificate and its key.
fn whole(dir: &ManagedDir, vdir: &str, names: &PairNames) -> bool {
    let read = |f: &str| dir.read_beneath(&format!("{vdir}/{f}")).ok();
    match (read(&names.cert), read(&names.key)) {
        (Some((c, _)), Some((k, _))) => super::verify::check_pair(&c, &k).is_ok(),
        _ => false,
    }
}

/// Put the store's own names back in order from the history, before anything else:
/// a name of a version that is not a directory is removed (not a version: nothing reads
/// it once the data link is off it), and a `..STEM.data` that dangles, points at a
/// broken version or outside the versions is pointed at the newest whole version (or
/// removed when there is none, so the pair is "missing" and re-created). Returns what was
/// repaired, in words.
pub fn repair_layout(dir: &ManagedDir, names: &PairNames) -> Result<Vec<String>, StoreError> {
    let stem = &names.stem;
    let mut repaired = Vec::new();
    for n in dir.list()? {
        if naming::parse_pair_version(stem, &n).is_some()
            && !matches!(dir.entry(&n)?, Entry::Directory)
        {
            dir.remove(&n)?;
            repaired.push(format!(
                "{}: a version that is not a directory; removed",
                dir.host_path(&n).display()
            ));
        }
    }
    let link = naming::pair_data_link(stem);
    let target = match dir.entry(&link)? {
        Entry::Symlink(t) => t.to_string_lossy().into_owned(),
        _ => return Ok(repaired),
    };
    if naming::parse_pair_version(stem, &target).is_some()
        && matches!(dir.entry(&target)?, Entry::Directory)
        && whole(dir, &target, names)
    {
        return Ok(repaired);
    }
    let mut candidates: Vec<String> = dir
        .list()?
        .into_iter()
        .filter(|n| naming::parse_pair_version(stem, n).is_some())
        .collect();
    candidates.sort();
    let newest_whole = candidates
        .iter()
        .rev()
        .find(|v| matches!(dir.entry(v), Ok(Entry::Directory)) && whole(dir, v, names));
    let what = match newest_whole {
        Some(v) => {
            dir.swap_symlink(&link, v)?;
            format!("pointed at {v}, the newest whole version")
        }
        None => {
            dir.remove(&link)?;
            dir.fsync()?;
            "removed (no whole version left)".to_string()
        }
    };
    repaired.push(format!(
        "{} pointed at {target}, which is not a whole version; {what}",
        dir.host_path(&link).display()
    ));
    Ok(repaired)
}

/// What a reader of `file` sees now (`None`: missing, dangling or unreadable).
fn current_bytes(dir: &ManagedDir, file: &str, p: &Public) -> Option<Vec<u8>> {
    match p {
        Public::Missing => None,
        Public::Plain { data, .. } => Some(data.clone()),
        Public::Linked => dir.read_beneath(file).ok().map(|(d, _)| d),
    }
}

/// Install a new version of the pair; see the module documentation for the layout.
pub fn install(
    dir: &ManagedDir,
    names: &PairNames,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: OffsetDateTime,
    keep: u32,
    holds: Holds,
) -> Result<Installed, StoreError> {
    let _ = dir.remove_temps();
    for r in repair_layout(dir, names)? {
        tracing::warn!(path = %dir.host_path(&names.cert).display(), "store layout repaired: {r}");
    }
    let PairNames { stem, cert, key } = names;
    let data_link = naming::pair_data_link(stem);
    let pc = public(dir, stem, cert)?;
    let pk = public(dir, stem, key)?;
    ownership::check(
        dir,
        holds == Holds::Ca,
        cert,
        key,
        current_bytes(dir, cert, &pc).as_deref(),
        current_bytes(dir, key, &pk).as_deref(),
    )?;
    let mut stamps: Vec<String> = versions(dir, stem)?.into_iter().map(|v| v.stamp).collect();

    // Migration: snapshot what readers see now into a version and put the names behind
    // links to it. Readers keep seeing the old certificate with the old key throughout.
    let plain = |p: &Public| matches!(p, Public::Plain { .. });
    if plain(&pc) || plain(&pk) {
        let mut snapshot: Vec<(&str, Vec<u8>, FileSpec)> = Vec::new();
        for (file, p) in [(cert.as_str(), &pc), (key.as_str(), &pk)] {
            match p {
                Public::Plain { data, spec } => snapshot.push((file, data.clone(), *spec)),
                Public::Linked => {
                    let (data, st) = dir.read_beneath(file)?;
                    snapshot.push((file, data, FileSpec::of(&st)));
                }
                Public::Missing => {}
            }
        }
        let stamp = naming::next_pair_stamp(now, &stamps);
        let vdir = naming::pair_version(stem, &stamp);
        let files: Vec<(&str, &[u8], FileSpec)> = snapshot
            .iter()
            .map(|(f, d, s)| (*f, d.as_slice(), *s))
            .collect();
        dir.write_version_dir(&vdir, &files)?;
        stamps.push(stamp);
        dir.swap_symlink(&data_link, &vdir)?;
        failpoint::hit("store::migrated-data")
            .map_err(|e| StoreError::io(dir.host_path(&data_link), "migrate", e))?;
        for (file, p) in [(cert.as_str(), &pc), (key.as_str(), &pk)] {
            if plain(p) {
                dir.swap_symlink(file, &naming::pair_link_target(stem, file))?;
            }
        }
    }

    // Modes and owners of the files being replaced, or the defaults.
    let spec_of = |file: &str, default: FileSpec| match dir.stat_beneath(file) {
        Ok(st) => Ok(FileSpec::of(&st)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(default)
        }
        Err(e) => Err(e),
    };
    let cert_spec = spec_of(cert, FileSpec::CERT)?;
    let key_spec = spec_of(key, FileSpec::KEY)?.private(&dir.host_path(key));

    let stamp = naming::next_pair_stamp(now, &stamps);
    let vdir = naming::pair_version(stem, &stamp);
    dir.write_version_dir(
        &vdir,
        &[(cert, cert_pem, cert_spec), (key, key_pem, key_spec)],
    )?;
    // A name that does not exist yet gets its link before the switch, pointing through
    // `..STEM.data`: while that link is absent (both names new) the links dangle and a
    // reader sees neither file; the one rename below makes both appear at once.
    let missing: Vec<&str> = [(cert.as_str(), &pc), (key.as_str(), &pk)]
        .into_iter()
        .filter(|(_, p)| matches!(p, Public::Missing))
        .map(|(f, _)| f)
        .collect();
    if missing.len() == 2 && !matches!(dir.entry(&data_link)?, Entry::Missing) {
        // Both names were deleted: unhook the old version first, or the first new link
        // would show the old certificate without its key.
        dir.remove(&data_link)?;
        dir.fsync()?;
    }
    for file in &missing {
        dir.swap_symlink(file, &naming::pair_link_target(stem, file))?;
    }
    if let Err(e) = dir.swap_symlink(&data_link, &vdir) {
        // Never delete what the link may still point at (if putting it back failed too).
        if current_stamp(dir, stem).ok().flatten().as_deref() != Some(stamp.as_str()) {
            let _ = dir.remove(&vdir);
        }
        return Err(e);
    }
    stamps.push(stamp.clone());

    let prune = || -> Result<(), StoreError> {
        failpoint::hit("store::before-prune")
            .map_err(|e| StoreError::io(dir.host_path(&vdir), "prune", e))?;
        for old in history::to_prune(&stamps, Some(&stamp), keep) {
            dir.remove(&naming::pair_version(stem, &old))?;
        }
        Ok(())
    };
    let prune_error = prune().err();
    Ok(Installed {
        version: Version {
            name: vdir,
            stamp,
            current: true,
        },
        prune_error,
    })
}

/// Switch the pair back to the newest version older than the current one.
pub fn rollback(dir: &ManagedDir, names: &PairNames) -> Result<Version, StoreError> {
    let _ = dir.remove_temps();
    for r in repair_layout(dir, names)? {
        tracing::warn!(path = %dir.host_path(&names.cert).display(), "store layout repaired: {r}");
    }
    let data_link = naming::pair_data_link(&names.stem);
    let current = current_stamp(dir, &names.stem)?.ok_or_else(|| StoreError::NoCurrent {
        path: dir.host_path(&names.cert),
    })?;
    let stamps: Vec<String> = versions(dir, &names.stem)?
        .into_iter()
        .map(|v| v.stamp)
        .collect();
    let target =
        history::rollback_target(&stamps, &current).ok_or_else(|| StoreError::NoPrevious {
            path: dir.host_path(&names.cert),
        })?;
    let vdir = naming::pair_version(&names.stem, &target);
    let (c, _) = dir.read_beneath(&format!("{vdir}/{}", names.cert))?;
    let (k, _) = dir.read_beneath(&format!("{vdir}/{}", names.key))?;
    super::verify::check_pair(&c, &k).map_err(|reason| StoreError::BadMaterial {
        path: dir.host_path(&vdir),
        reason,
    })?;
    dir.swap_symlink(&data_link, &vdir)?;
    Ok(Version {
        name: vdir,
        stamp: target,
        current: true,
    })
}
