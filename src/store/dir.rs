//! The managed directory: opened once, locked, and every operation relative to its fd.
//!
//! Nothing here follows a symlink out of the directory: names are single components,
//! files are created with `O_EXCL|O_NOFOLLOW`, reads through links use
//! `openat2(RESOLVE_BENEATH)`, and links are replaced by `renameat`, never written through.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    AtFlags, FileType, FlockOperation, Mode, OFlags, RenameFlags, ResolveFlags, Stat,
};
use rustix::io::Errno;

use super::error::{errno, StoreError};
use super::failpoint;
use super::naming::{self, TEMP_PREFIX};
use crate::paths::{self, NodeRoot};

/// Mode and owner of a file to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    pub mode: u32,
    /// `None`: whoever the agent runs as.
    pub owner: Option<(u32, u32)>,
}

impl FileSpec {
    pub const CERT: FileSpec = FileSpec {
        mode: 0o644,
        owner: None,
    };
    pub const KEY: FileSpec = FileSpec {
        mode: 0o600,
        owner: None,
    };

    /// The spec for a new private key replacing a file with this spec: owner and group
    /// kept, mode 0600 whatever the old file's (said in the log when that tightens it).
    pub fn private(self, path: &Path) -> FileSpec {
        if self.mode != 0o600 {
            tracing::warn!(
                path = %path.display(),
                "private key mode {:04o} tightened to 0600 for the new key",
                self.mode
            );
        }
        FileSpec {
            mode: 0o600,
            ..self
        }
    }

    /// The spec of an existing file: its permission bits and owner.
    pub fn of(st: &Stat) -> FileSpec {
        FileSpec {
            mode: st.st_mode & 0o7777,
            owner: Some((st.st_uid, st.st_gid)),
        }
    }
}

/// What a name in the directory is, without following it.
#[derive(Debug)]
pub enum Entry {
    Missing,
    File(Stat),
    Symlink(PathBuf),
    Directory,
    /// A socket, FIFO or device, in words.
    Other(&'static str),
}

/// An open, exclusively locked managed directory.
pub struct ManagedDir {
    fd: OwnedFd,
    node: PathBuf,
    host: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ManagedDir {
    /// Open the existing directory `node_dir` under `root`, resolving symlinks inside the
    /// root only, and take its lock (`flock`, exclusive: the daemon and a `rollback`
    /// command never interleave).
    pub fn open(root: &NodeRoot, node_dir: &Path) -> Result<ManagedDir, StoreError> {
        Self::open_with(root, node_dir, false)
    }

    /// [`ManagedDir::open`], creating missing components (0755, each fsynced into its parent).
    pub fn open_or_create(root: &NodeRoot, node_dir: &Path) -> Result<ManagedDir, StoreError> {
        Self::open_with(root, node_dir, true)
    }

    fn open_with(root: &NodeRoot, node_dir: &Path, create: bool) -> Result<ManagedDir, StoreError> {
        let host = root.host_path(node_dir);
        let node = Path::new("/").join(paths::normalize(paths::relative(node_dir)));
        let io = |op, e: Errno| StoreError::io(&host, op, errno(e));
        let fd = root
            .open_dir(&node, create)
            .map_err(|e| StoreError::io(&host, "open directory", e))?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive).map_err(|e| io("lock", e))?;
        Ok(ManagedDir { fd, node, host })
    }

    /// The directory as a node path (what symlinks written for kubelet point into).
    pub fn node_path(&self) -> &Path {
        &self.node
    }

    /// A name in this directory, on this machine (for error messages).
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.host.join(name)
    }

    fn io(&self, name: &str, op: &'static str, e: Errno) -> StoreError {
        StoreError::io(self.host_path(name), op, errno(e))
    }

    pub fn check_name(&self, name: &str) -> Result<(), StoreError> {
        naming::validate_name(name).map_err(|reason| StoreError::InvalidName {
            path: self.host_path(name),
            reason,
        })
    }

    /// A fresh temporary name (unique in this process; stale ones from dead processes are
    /// removed by [`ManagedDir::remove_temps`] under the lock).
    pub fn temp_name(&self, what: &str) -> String {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!(
            "{TEMP_PREFIX}{}-{n}-{what}",
            rustix::process::getpid().as_raw_nonzero()
        )
    }

    /// What `name` is, without following it.
    pub fn entry(&self, name: &str) -> Result<Entry, StoreError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(Entry::Missing),
            Err(e) => Err(self.io(name, "stat", e)),
            Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Entry::File(st),
                FileType::Directory => Entry::Directory,
                FileType::Symlink => Entry::Symlink(self.read_link(name)?),
                _ => Entry::Other(paths::mode_in_words(st.st_mode)),
            }),
        }
    }

    pub fn read_link(&self, name: &str) -> Result<PathBuf, StoreError> {
        let t = rustix::fs::readlinkat(&self.fd, name, Vec::new())
            .map_err(|e| self.io(name, "readlink", e))?;
        let t: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(t.into_bytes());
        Ok(PathBuf::from(t))
    }

    /// Open `name` for reading, following symlinks only while they stay beneath this
    /// directory. A link that leaves it is a [`StoreError::SymlinkEscape`].
    pub fn open_beneath(&self, name: &str) -> Result<(std::fs::File, Stat), StoreError> {
        self.open_beneath_with(name, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK)
    }

    /// The metadata of `name` (beneath this directory), without needing read permission.
    pub fn stat_beneath(&self, name: &str) -> Result<Stat, StoreError> {
        self.open_beneath_with(name, OFlags::PATH).map(|(_, st)| st)
    }

    fn open_beneath_with(
        &self,
        name: &str,
        flags: OFlags,
    ) -> Result<(std::fs::File, Stat), StoreError> {
        let fd = rustix::fs::openat2(
            &self.fd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            Errno::XDEV => StoreError::SymlinkEscape {
                path: self.host_path(name),
                target: self
                    .read_link(name)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into()),
            },
            e => self.io(name, "open", e),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io(name, "stat", e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Ok((std::fs::File::from(fd), st)),
            FileType::Directory => Err(StoreError::IsDirectory {
                path: self.host_path(name),
            }),
            _ => Err(StoreError::NotAFile {
                path: self.host_path(name),
                kind: paths::mode_in_words(st.st_mode),
            }),
        }
    }

    /// Read `name` (beneath this directory, at most [`paths::MAX_FILE_BYTES`]).
    pub fn read_beneath(&self, name: &str) -> Result<(Vec<u8>, Stat), StoreError> {
        use std::io::Read;
        let (f, st) = self.open_beneath(name)?;
        let mut buf = Vec::new();
        f.take(paths::MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::io(self.host_path(name), "read", e))?;
        if buf.len() as u64 > paths::MAX_FILE_BYTES {
            return Err(StoreError::BadMaterial {
                path: self.host_path(name),
                reason: "file too large".into(),
            });
        }
        Ok((buf, st))
    }

    /// Names in the directory (not `.`/`..`).
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        let dir = rustix::fs::Dir::read_from(&self.fd).map_err(|e| self.io("", "list", e))?;
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(|e| self.io("", "list", e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                out.push(name);
            }
        }
        Ok(out)
    }

    pub fn fsync(&self) -> Result<(), StoreError> {
        rustix::fs::fsync(&self.fd).map_err(|e| self.io("", "fsync directory", e))
    }

    /// Atomically give `name` the content `data`: temporary file, fsync, rename, fsync of
    /// the directory. `NOREPLACE` makes the rename fail rather than replace an existing name.
    pub fn write_atomic(
        &self,
        name: &str,
        data: &[u8],
        spec: FileSpec,
        noreplace: bool,
    ) -> Result<(), StoreError> {
        self.write_file_named(name, data, spec, noreplace)?;
        self.fsync()
    }

    /// A new version file `name` (never replacing one): temporary file, fsync, rename.
    /// The name becomes durable with the caller's next fsync of this directory, the one
    /// after the link swap that makes it current; see [`ManagedDir::write_version_dir`].
    pub fn write_version_file(
        &self,
        name: &str,
        data: &[u8],
        spec: FileSpec,
    ) -> Result<(), StoreError> {
        self.write_file_named(name, data, spec, true)
    }

    /// [`ManagedDir::write_atomic`] up to the rename: the content is durable, the name not yet.
    fn write_file_named(
        &self,
        name: &str,
        data: &[u8],
        spec: FileSpec,
        noreplace: bool,
    ) -> Result<(), StoreError> {
        let tmp = self.temp_name("file");
        let res = (|| {
            create_file(&self.fd, &tmp, data, spec)
                .map_err(|(op, e)| StoreError::io(self.host_path(name), op, e))?;
            let flags = if noreplace {
                RenameFlags::NOREPLACE
            } else {
                RenameFlags::empty()
            };
            rustix::fs::renameat_with(&self.fd, tmp.as_str(), &self.fd, name, flags)
                .map_err(|e| self.io(name, "rename", e))
        })();
        if res.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        res
    }

    /// Point `name` at `target` by renaming a fresh temporary symlink over it, then fsync
    /// the directory. Readers see the old link or the new one, never none.
    pub fn swap_symlink(&self, name: &str, target: &str) -> Result<(), StoreError> {
        let previous = match self.entry(name)? {
            Entry::Symlink(t) => Some(t),
            _ => None,
        };
        let tmp = self.temp_name("link");
        rustix::fs::symlinkat(target, &self.fd, tmp.as_str())
            .map_err(|e| self.io(name, "symlink", e))?;
        let mut renamed = false;
        let res = (|| {
            failpoint::hit("store::before-swap")
                .map_err(|e| StoreError::io(self.host_path(name), "swap", e))?;
            rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)
                .map_err(|e| self.io(name, "rename", e))?;
            renamed = true;
            failpoint::hit("store::after-swap")
                .map_err(|e| StoreError::io(self.host_path(name), "swap", e))?;
            self.fsync()
        })();
        if res.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            // The switch is visible but not known to be durable, and the caller is told it
            // failed: put the previous link back (best effort) so that both agree.
            if let (true, Some(previous)) = (renamed, previous) {
                let back = self.temp_name("link");
                if rustix::fs::symlinkat(&previous, &self.fd, back.as_str()).is_ok()
                    && rustix::fs::renameat(&self.fd, back.as_str(), &self.fd, name).is_err()
                {
                    let _ = rustix::fs::unlinkat(&self.fd, back.as_str(), AtFlags::empty());
                }
                let _ = rustix::fs::fsync(&self.fd);
            }
        }
        res
    }

    /// Create the versioned directory `name` holding `files`, complete and fsynced before
    /// it gets its name (so that a directory with a version name is always whole). The
    /// files and the directory are fsynced at once, not one after another: each must be
    /// durable before the rename either way, and concurrent fsyncs share a journal commit.
    ///
    /// The name itself becomes durable with the caller's next fsync of this directory: the
    /// one after the link swap that makes the version current ([`ManagedDir::swap_symlink`]).
    /// No fsync is needed in between for the link never to be durable without the version
    /// it names: both are renames in this one directory, and a filesystem whose renames
    /// survive a power cut whole (ext4's and XFS's journals, btrfs's transactions: what
    /// the store's atomic swap relies on anyway) writes them to disk in the order they
    /// were made. One fsync round per install fewer (README "Performance").
    pub fn write_version_dir(
        &self,
        name: &str,
        files: &[(&str, &[u8], FileSpec)],
    ) -> Result<(), StoreError> {
        let tmp = self.temp_name("version");
        rustix::fs::mkdirat(&self.fd, tmp.as_str(), Mode::from_raw_mode(0o755))
            .map_err(|e| self.io(name, "create directory", e))?;
        let res = (|| {
            let sub = rustix::fs::openat(
                &self.fd,
                tmp.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.io(name, "open directory", e))?;
            // 0755 whatever the umask (the unit sets UMask=0077): readers of the
            // certificates inside must be able to traverse it.
            rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o755))
                .map_err(|e| self.io(name, "chmod", e))?;
            let mut written = Vec::with_capacity(files.len());
            for (file, data, spec) in files {
                let path = self.host_path(name).join(file);
                let fd = write_new_file(&sub, file, data, *spec)
                    .map_err(|(op, e)| StoreError::io(path, op, e))?;
                written.push(fd);
            }
            let mut fds: Vec<_> = written.iter().map(|f| f.as_fd()).collect();
            fds.push(sub.as_fd());
            if let Err((i, e)) = fsync_together(&fds) {
                let path = match files.get(i) {
                    Some((file, ..)) => self.host_path(name).join(file),
                    None => self.host_path(name),
                };
                return Err(StoreError::io(path, "fsync", errno(e)));
            }
            failpoint::hit("store::after-fsync")
                .map_err(|e| StoreError::io(self.host_path(name), "fsync", e))?;
            rustix::fs::renameat_with(
                &self.fd,
                tmp.as_str(),
                &self.fd,
                name,
                RenameFlags::NOREPLACE,
            )
            .map_err(|e| self.io(name, "rename", e))
        })();
        if res.is_err() {
            let _ = self.remove_tree_now(&tmp);
        }
        res
    }

    /// Remove a file, a link, or a versioned directory (one level deep). A directory is
    /// first renamed to a temporary name, so that a crash never leaves half a version under
    /// a version name.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        match self.entry(name)? {
            Entry::Missing => Ok(()),
            Entry::Directory => {
                let tmp = self.temp_name("prune");
                rustix::fs::renameat(&self.fd, name, &self.fd, tmp.as_str())
                    .map_err(|e| self.io(name, "rename", e))?;
                failpoint::hit("store::mid-prune")
                    .map_err(|e| StoreError::io(self.host_path(name), "prune", e))?;
                self.remove_tree_now(&tmp)
            }
            _ => rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())
                .map_err(|e| self.io(name, "unlink", e)),
        }
    }

    fn remove_tree_now(&self, name: &str) -> Result<(), StoreError> {
        if let Entry::Directory = self.entry(name)? {
            let sub = rustix::fs::openat(
                &self.fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.io(name, "open directory", e))?;
            let listing = rustix::fs::Dir::read_from(&sub).map_err(|e| self.io(name, "list", e))?;
            for ent in listing {
                let ent = ent.map_err(|e| self.io(name, "list", e))?;
                let n = ent.file_name().to_bytes();
                if n == b"." || n == b".." {
                    continue;
                }
                rustix::fs::unlinkat(&sub, ent.file_name(), AtFlags::empty())
                    .map_err(|e| self.io(name, "unlink", e))?;
            }
            rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
                .map_err(|e| self.io(name, "remove directory", e))
        } else {
            rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())
                .map_err(|e| self.io(name, "unlink", e))
        }
    }

    /// Remove what interrupted operations left behind (temporary files, links, directories).
    /// Safe because we hold the directory lock: no one else is writing here. Best effort: a
    /// leftover that cannot be removed (say, someone put a directory inside one) must not
    /// block installs; it is reported by the returned list.
    pub fn remove_temps(&self) -> Vec<StoreError> {
        let names = match self.list() {
            Ok(n) => n,
            Err(e) => return vec![e],
        };
        names
            .iter()
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .filter_map(|n| self.remove_tree_now(n).err())
            .collect()
    }
}

/// Create `name` in `dir` with exactly `spec` (never more permissive on the way: the file
/// is created with the final mode, which umask can only narrow), write, fsync.
fn create_file(
    dir: &impl AsFd,
    name: &str,
    data: &[u8],
    spec: FileSpec,
) -> Result<(), (&'static str, std::io::Error)> {
    let f = write_new_file(dir, name, data, spec)?;
    f.sync_all().map_err(|err| ("fsync", err))?;
    failpoint::hit("store::after-fsync").map_err(|err| ("fsync", err))?;
    Ok(())
}

/// fsync every fd, concurrently (the calling thread takes the first). The filesystem
/// commits them together where one after another each would wait for its own journal
/// commit and cache flush. On failure: the index of the first fd that failed.
fn fsync_together(fds: &[BorrowedFd<'_>]) -> Result<(), (usize, Errno)> {
    let Some((first, rest)) = fds.split_first() else {
        return Ok(());
    };
    std::thread::scope(|s| {
        // No thread to be had (a TasksMax= limit): that fsync runs here, after the first.
        let others: Vec<_> = rest
            .iter()
            .map(|fd| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || rustix::fs::fsync(fd))
                    .map_err(|_| fd)
            })
            .collect();
        let mut result = rustix::fs::fsync(first).map_err(|e| (0, e));
        for (i, other) in others.into_iter().enumerate() {
            let r = match other {
                // A thread that cannot report counts as a failed fsync, never as a success.
                Ok(h) => h.join().unwrap_or(Err(Errno::IO)),
                Err(fd) => rustix::fs::fsync(fd),
            };
            if let (Ok(()), Err(e)) = (&result, r) {
                result = Err((i + 1, e));
            }
        }
        result
    })
}

/// [`create_file`] without the fsync: the caller makes the file durable.
fn write_new_file(
    dir: &impl AsFd,
    name: &str,
    data: &[u8],
    spec: FileSpec,
) -> Result<std::fs::File, (&'static str, std::io::Error)> {
    let e = |op| move |err: Errno| (op, errno(err));
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(spec.mode & 0o777),
    )
    .map_err(e("create"))?;
    if let Some((uid, gid)) = spec.owner {
        let st = rustix::fs::fstat(&fd).map_err(e("stat"))?;
        if (st.st_uid, st.st_gid) != (uid, gid) {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(e("chown"))?;
        }
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(spec.mode)).map_err(e("chmod"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data).map_err(|err| ("write", err))?;
    failpoint::hit("store::after-write").map_err(|err| ("write", err))?;
    Ok(f)
}
