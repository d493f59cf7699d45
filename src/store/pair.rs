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

/// The names of one pair in its directory.
#[derive(Debug, Clone)]
pub struct PairNames {
    /// The versioned directories' name: the certificate file's stem (`apiserver`).
    pub stem: String,
    pub cert: String,
    pub key: String,
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
        Entry::Other => Err(StoreError::NotAFile {
            path: dir.host_path(file),
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
        _ => Err(StoreError::NotAFile {
            path: dir.host_path(&link),
        }),
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
) -> Result<Installed, StoreError> {
    let _ = dir.remove_temps();
    let PairNames { stem, cert, key } = names;
    let data_link = naming::pair_data_link(stem);
    let pc = public(dir, stem, cert)?;
    let pk = public(dir, stem, key)?;
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
    let key_spec = spec_of(key, FileSpec::KEY)?;

    let stamp = naming::next_pair_stamp(now, &stamps);
    let vdir = naming::pair_version(stem, &stamp);
    dir.write_version_dir(
        &vdir,
        &[(cert, cert_pem, cert_spec), (key, key_pem, key_spec)],
    )?;
    if let Err(e) = dir.swap_symlink(&data_link, &vdir) {
        // Never delete what the link may still point at (if putting it back failed too).
        if current_stamp(dir, stem).ok().flatten().as_deref() != Some(stamp.as_str()) {
            let _ = dir.remove(&vdir);
        }
        return Err(e);
    }
    stamps.push(stamp.clone());
    // A name that did not exist gets its link only now, pointing at the new version.
    for (file, p) in [(cert.as_str(), &pc), (key.as_str(), &pk)] {
        if matches!(p, Public::Missing) {
            dir.swap_symlink(file, &naming::pair_link_target(stem, file))?;
        }
    }

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
