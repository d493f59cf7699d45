//! kubelet style: `NAME-<stamp>.pem` (certificate and key in one file, 0600) and
//! `NAME-current.pem -> /node/dir/NAME-<stamp>.pem` (an absolute node path, as kubelet
//! writes it), switched by renaming a temporary link over the old one.

use time::OffsetDateTime;

use super::dir::{Entry, FileSpec, ManagedDir};
use super::error::StoreError;
use super::failpoint;
use super::history::{self, Installed, Version};
use super::naming;

/// The file `NAME-current.pem` points at, if any.
fn current_file(dir: &ManagedDir, base: &str) -> Result<Option<String>, StoreError> {
    let link = naming::kubelet_current(base);
    match dir.entry(&link)? {
        Entry::Missing => Ok(None),
        // A plain file (not kubelet's layout) is replaced by the link: one file, one rename.
        Entry::File(_) => Ok(None),
        Entry::Directory => Err(StoreError::IsDirectory {
            path: dir.host_path(&link),
        }),
        Entry::Other(kind) => Err(StoreError::NotAFile {
            path: dir.host_path(&link),
            kind,
        }),
        Entry::Symlink(t) => match naming::kubelet_link_file(&t, dir.node_path()) {
            Some(f) => Ok(Some(f)),
            None => Err(StoreError::SymlinkEscape {
                path: dir.host_path(&link),
                target: t.display().to_string(),
            }),
        },
    }
}

pub fn versions(dir: &ManagedDir, base: &str) -> Result<Vec<Version>, StoreError> {
    let current = current_file(dir, base)?;
    let mut out: Vec<Version> = dir
        .list()?
        .iter()
        .filter_map(|n| {
            naming::parse_kubelet_version(base, n).map(|s| Version {
                name: n.clone(),
                stamp: s.to_string(),
                current: Some(n) == current.as_ref(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.stamp.cmp(&b.stamp));
    Ok(out)
}

fn link_target(dir: &ManagedDir, file: &str) -> String {
    dir.node_path().join(file).display().to_string()
}

/// Install `pem` (certificate, then key) as the new current version of `base`.
pub fn install(
    dir: &ManagedDir,
    base: &str,
    pem: &[u8],
    now: OffsetDateTime,
    keep: u32,
) -> Result<Installed, StoreError> {
    let _ = dir.remove_temps();
    let mut current = current_file(dir, base)?;
    let mut stamps: Vec<String> = versions(dir, base)?.into_iter().map(|v| v.stamp).collect();
    // A plain `NAME-current.pem` (not kubelet's layout) is kept as a version first, so that
    // a rollback can return to it; the link then replaces it in one rename.
    let link = naming::kubelet_current(base);
    if let Entry::File(st) = dir.entry(&link)? {
        let (old, _) = dir.read_beneath(&link)?;
        let stamp = naming::next_kubelet_stamp(now, &stamps);
        let file = naming::kubelet_version(base, &stamp);
        dir.write_version_file(&file, &old, FileSpec::of(&st))?;
        stamps.push(stamp);
        current = Some(file);
    }
    // The PEM carries the private key: 0600 whatever the previous version's mode.
    let spec = match &current {
        Some(f) => match dir.entry(f)? {
            Entry::File(st) => FileSpec::of(&st).private(&dir.host_path(f)),
            _ => FileSpec::KEY,
        },
        None => FileSpec::KEY,
    };
    let stamp = naming::next_kubelet_stamp(now, &stamps);
    let file = naming::kubelet_version(base, &stamp);
    dir.write_version_file(&file, pem, spec)?;
    if let Err(e) = dir.swap_symlink(&naming::kubelet_current(base), &link_target(dir, &file)) {
        // Never delete what the link may still point at (if putting it back failed too).
        if current_file(dir, base).ok().flatten().as_deref() != Some(file.as_str()) {
            let _ = dir.remove(&file);
        }
        return Err(e);
    }

    let mut all = stamps;
    all.push(stamp.clone());
    let prune = || -> Result<(), StoreError> {
        failpoint::hit("store::before-prune")
            .map_err(|e| StoreError::io(dir.host_path(&file), "prune", e))?;
        for old in history::to_prune(&all, Some(&stamp), keep) {
            dir.remove(&naming::kubelet_version(base, &old))?;
        }
        Ok(())
    };
    let prune_error = prune().err();
    Ok(Installed {
        version: Version {
            name: file,
            stamp,
            current: true,
        },
        prune_error,
    })
}

/// Point `NAME-current.pem` back at the newest version older than the current one.
pub fn rollback(dir: &ManagedDir, base: &str) -> Result<Version, StoreError> {
    let _ = dir.remove_temps();
    let link = naming::kubelet_current(base);
    let versions = versions(dir, base)?;
    let current = versions
        .iter()
        .find(|v| v.current)
        .ok_or_else(|| StoreError::NoCurrent {
            path: dir.host_path(&link),
        })?;
    let stamps: Vec<String> = versions.iter().map(|v| v.stamp.clone()).collect();
    let target = history::rollback_target(&stamps, &current.stamp).ok_or_else(|| {
        StoreError::NoPrevious {
            path: dir.host_path(&link),
        }
    })?;
    let file = naming::kubelet_version(base, &target);
    let (pem, _) = dir.read_beneath(&file)?;
    super::verify::check_pair(&pem, &pem).map_err(|reason| StoreError::BadMaterial {
        path: dir.host_path(&file),
        reason,
    })?;
    dir.swap_symlink(&link, &link_target(dir, &file))?;
    Ok(Version {
        name: file,
        stamp: target,
        current: true,
    })
}
