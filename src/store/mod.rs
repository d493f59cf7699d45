//! The disk: atomic writes, symlink swaps, history and rollback of certificate versions.
//!
//! Every operation opens its managed directory once (under `--root`, symlinks resolved
//! inside the root), takes an exclusive `flock` on it, and works relative to that fd.
//! Each step is crash-safe: a file or versioned directory gets its final name only once
//! its content is fsynced, a live name changes by one `rename(2)`, and the directory is
//! fsynced after every rename. On any failure the previous version stays in place and
//! working; temporary names (`..tmp-*`) are removed at once, or by the next operation if
//! the process died.
//!
//! Layouts: see [`kubelet`] (`NAME-<stamp>.pem` + `NAME-current.pem`) and [`pair`]
//! (`..STEM.<stamp>/` + `..STEM.data` + links for `STEM.crt` / `STEM.key`).

pub mod dir;
pub mod error;
pub mod failpoint;
pub mod history;
pub mod kubelet;
pub mod naming;
pub mod ownership;
pub mod pair;
pub mod verify;

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use dir::FileSpec;
pub use error::StoreError;
pub use history::{Installed, Version};

use crate::paths::NodeRoot;
use dir::{Entry, ManagedDir};

/// One managed certificate, as the CLI's `rollback NAME` and the daemon name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Managed {
    /// Separate files with fixed names (node paths), in one directory.
    Pair { cert: PathBuf, key: PathBuf },
    /// kubelet's layout: `dir/NAME-current.pem` (node path of `dir`, and `NAME` such as
    /// `kubelet-client`).
    Kubelet { dir: PathBuf, name: String },
}

/// The narrow edge the daemon talks to; the real one is [`Store`].
pub trait PkiStore {
    /// Make `cert_pem` + `key_pem` the current version of `m`, keeping history.
    fn install(
        &self,
        m: &Managed,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<Installed, StoreError>;
    /// The versions of `m` on disk, oldest first.
    fn versions(&self, m: &Managed) -> Result<Vec<Version>, StoreError>;
    /// Switch `m` back to the newest version older than the current one.
    fn rollback(&self, m: &Managed) -> Result<Version, StoreError>;
}

/// The store on a node tree.
#[derive(Debug, Clone)]
pub struct Store {
    root: NodeRoot,
    history: u32,
}

impl Store {
    /// `history`: versions kept per certificate, the current one included (config `history`).
    pub fn new(root: NodeRoot, history: u32) -> Store {
        Store { root, history }
    }

    /// Atomically write `data` to the node path `path` (kubeconfigs, state.json, CRLs).
    /// A file being replaced keeps its owner and mode, except that a secret (`new_file`
    /// 0600, e.g. a kubeconfig carrying a private key) is always 0600; a new one gets
    /// `new_file`.
    /// Refused: a directory, a symlink (escaping or not), a name with `/` or `..`.
    pub fn write_file(
        &self,
        path: &Path,
        data: &[u8],
        new_file: FileSpec,
    ) -> Result<(), StoreError> {
        let (dir, name) = self.split(path)?;
        let dir = ManagedDir::open_or_create(&self.root, &dir)?;
        dir.check_name(&name)?;
        let _ = dir.remove_temps();
        let spec = match dir.entry(&name)? {
            Entry::Missing => new_file,
            Entry::File(st) if new_file.mode == FileSpec::KEY.mode => {
                FileSpec::of(&st).private(&dir.host_path(&name))
            }
            Entry::File(st) => FileSpec::of(&st),
            Entry::Directory => {
                return Err(StoreError::IsDirectory {
                    path: dir.host_path(&name),
                })
            }
            Entry::Other(kind) => {
                return Err(StoreError::NotAFile {
                    path: dir.host_path(&name),
                    kind,
                })
            }
            Entry::Symlink(t) => {
                let path = dir.host_path(&name);
                let target = t.display().to_string();
                return Err(
                    if naming::kubelet_link_file(&t, dir.node_path()).is_none() {
                        StoreError::SymlinkEscape { path, target }
                    } else {
                        StoreError::IsSymlink { path, target }
                    },
                );
            }
        };
        dir.write_atomic(&name, data, spec, false)
    }

    /// Remove the file at the node path `path` (a missing one is fine), then fsync its
    /// directory so the removal survives a crash.
    pub fn remove_file(&self, path: &Path) -> Result<(), StoreError> {
        let (dir, name) = self.split(path)?;
        let dir = match ManagedDir::open(&self.root, &dir) {
            Ok(d) => d,
            Err(_) if !self.root.host_path(&dir).exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        dir.check_name(&name)?;
        dir.remove(&name)?;
        dir.fsync()
    }

    /// Install a new version of a pair (`apiserver.crt` + `apiserver.key`, node paths in
    /// one directory); plain kubeadm files are migrated first. See [`pair`].
    pub fn install_pair(
        &self,
        cert: &Path,
        key: &Path,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<Installed, StoreError> {
        self.install_pair_as(cert, key, cert_pem, key_pem, now, pair::Holds::Leaf)
    }

    /// [`Store::install_pair`] for a CA's own files (`rotate-ca`): the one writer allowed
    /// to replace a CA certificate.
    pub fn install_ca_pair(
        &self,
        cert: &Path,
        key: &Path,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<Installed, StoreError> {
        self.install_pair_as(cert, key, cert_pem, key_pem, now, pair::Holds::Ca)
    }

    fn install_pair_as(
        &self,
        cert: &Path,
        key: &Path,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
        holds: pair::Holds,
    ) -> Result<Installed, StoreError> {
        let (dir, names) = self.pair_names(cert, key)?;
        check_material(&self.root.host_path(cert), cert_pem, key_pem)?;
        let dir = ManagedDir::open_or_create(&self.root, &dir)?;
        pair::install(&dir, &names, cert_pem, key_pem, now, self.history, holds)
    }

    /// Install a new kubelet-style version `dir/NAME-<stamp>.pem` (certificate then key,
    /// 0600) and point `dir/NAME-current.pem` at it. See [`kubelet`].
    pub fn install_kubelet(
        &self,
        dir: &Path,
        name: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<Installed, StoreError> {
        let link = dir.join(naming::kubelet_current(name));
        check_material(&self.root.host_path(&link), cert_pem, key_pem)?;
        let dir = ManagedDir::open_or_create(&self.root, dir)?;
        dir.check_name(name)?;
        let mut pem = cert_pem.to_vec();
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(key_pem);
        kubelet::install(&dir, name, &pem, now, self.history)
    }

    fn split(&self, path: &Path) -> Result<(PathBuf, String), StoreError> {
        let invalid = |reason: &str| StoreError::InvalidName {
            path: self.root.host_path(path),
            reason: reason.to_string(),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| invalid("no file name (or not UTF-8)"))?;
        naming::validate_name(name).map_err(|r| invalid(&r))?;
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(invalid("contains '..'"));
        }
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        Ok((dir, name.to_string()))
    }

    fn pair_names(
        &self,
        cert: &Path,
        key: &Path,
    ) -> Result<(PathBuf, pair::PairNames), StoreError> {
        let (cdir, cname) = self.split(cert)?;
        let (kdir, kname) = self.split(key)?;
        if cdir != kdir {
            return Err(StoreError::DifferentDirectories {
                cert: self.root.host_path(cert),
                key: self.root.host_path(key),
            });
        }
        let stem = match cname.rsplit_once('.') {
            Some((s, _)) if !s.is_empty() => s.to_string(),
            _ => cname.clone(),
        };
        if cname == kname {
            return Err(StoreError::InvalidName {
                path: self.root.host_path(key),
                reason: "the certificate and the key are the same file".into(),
            });
        }
        Ok((
            cdir,
            pair::PairNames {
                stem,
                cert: cname,
                key: kname,
            },
        ))
    }
}

fn check_material(path: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), StoreError> {
    verify::check_pair(cert_pem, key_pem).map_err(|reason| StoreError::BadMaterial {
        path: path.to_path_buf(),
        reason,
    })
}

impl PkiStore for Store {
    fn install(
        &self,
        m: &Managed,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: OffsetDateTime,
    ) -> Result<Installed, StoreError> {
        match m {
            Managed::Pair { cert, key } => self.install_pair(cert, key, cert_pem, key_pem, now),
            Managed::Kubelet { dir, name } => {
                self.install_kubelet(dir, name, cert_pem, key_pem, now)
            }
        }
    }

    fn versions(&self, m: &Managed) -> Result<Vec<Version>, StoreError> {
        match m {
            Managed::Pair { cert, key } => {
                let (d, names) = self.pair_names(cert, key)?;
                pair::versions(&ManagedDir::open(&self.root, &d)?, &names.stem)
            }
            Managed::Kubelet { dir, name } => {
                let d = ManagedDir::open(&self.root, dir)?;
                d.check_name(name)?;
                kubelet::versions(&d, name)
            }
        }
    }

    fn rollback(&self, m: &Managed) -> Result<Version, StoreError> {
        match m {
            Managed::Pair { cert, key } => {
                let (d, names) = self.pair_names(cert, key)?;
                pair::rollback(&ManagedDir::open(&self.root, &d)?, &names)
            }
            Managed::Kubelet { dir, name } => {
                let d = ManagedDir::open(&self.root, dir)?;
                d.check_name(name)?;
                kubelet::rollback(&d, name)
            }
        }
    }
}
