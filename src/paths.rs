//! Node paths under a root directory (`--root DIR`).
//!
//! Every path the agent reads from its config or from a kubeconfig is a *node path*
//! (`/etc/kubernetes/pki/ca.crt`). On a real node the root is `/`; in tests, the demo and
//! image builds it is a directory holding a node tree. Files are opened with
//! `openat2(RESOLVE_IN_ROOT)`, so that the absolute symlinks kubelet writes
//! (`kubelet-client-current.pem -> /var/lib/kubelet/pki/kubelet-client-<ts>.pem`) resolve
//! inside the tree and never escape it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// The largest file the agent will read as certificate material or YAML. A 50 MB "certificate"
/// is reported, not loaded.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct NodeRoot {
    root: PathBuf,
}

/// Why a file could not be read, in the words an operator needs.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("file too large ({size} bytes; the limit is {limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("symlink loop (or too many levels of symlinks)")]
    SymlinkLoop,
    #[error("dangling symlink to {target}")]
    Dangling { target: String },
    #[error("not a regular file: {0}")]
    NotAFile(&'static str),
    #[error("permission denied")]
    PermissionDenied,
    #[error("no such file")]
    NotFound,
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
            io::ErrorKind::NotFound => ReadError::NotFound,
            _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                ReadError::SymlinkLoop
            }
            _ => ReadError::Io(e),
        }
    }
}

impl NodeRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodeRoot { root: root.into() }
    }

    pub fn system() -> Self {
        NodeRoot::new("/")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The host path of a node path: `/etc/x` under root `/tmp/n` is `/tmp/n/etc/x`.
    pub fn host_path(&self, node_path: &Path) -> PathBuf {
        self.root.join(relative(node_path))
    }

    /// Read a node path, resolving symlinks inside the root, at most [`MAX_FILE_BYTES`].
    pub fn read(&self, node_path: &Path) -> Result<Vec<u8>, ReadError> {
        match self.open_in_root(node_path) {
            Ok(fd) => read_limited(File::from(fd)),
            Err(e) => Err(self.explain_open_error(node_path, e)),
        }
    }

    fn open_in_root(&self, node_path: &Path) -> io::Result<OwnedFd> {
        let root = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let rel = relative(node_path);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(rustix::fs::openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Open the directory at a node path, resolving every symlink inside the root (so that
    /// nothing under `--root` can send a write elsewhere). `create`: make missing
    /// components (0755 whatever the umask, each fsynced into its parent), each relative to
    /// its opened parent.
    pub fn open_dir(&self, node_dir: &Path, create: bool) -> io::Result<OwnedFd> {
        let rootfd = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let rel = normalize(relative(node_dir));
        let open_in_root = |p: &Path| {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            rustix::fs::openat2(
                &rootfd,
                p,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
        };
        match open_in_root(&rel) {
            Ok(fd) => Ok(fd),
            Err(rustix::io::Errno::NOENT) if create => {
                let mut cur = open_in_root(Path::new(""))?;
                let mut sofar = PathBuf::new();
                for c in rel.components() {
                    sofar.push(c);
                    let created = match rustix::fs::mkdirat(
                        &cur,
                        c.as_os_str(),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) => {
                            rustix::fs::fsync(&cur)?;
                            true
                        }
                        Err(rustix::io::Errno::EXIST) => false,
                        Err(e) => return Err(e.into()),
                    };
                    cur = open_in_root(&sofar)?;
                    if created {
                        // 0755 whatever the umask (the unit sets UMask=0077).
                        rustix::fs::fchmod(&cur, Mode::from_raw_mode(0o755))?;
                    }
                }
                Ok(cur)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The metadata of a node path (symlinks resolved inside the root), without opening it.
    pub fn stat_in_root(&self, node_path: &Path) -> io::Result<rustix::fs::Stat> {
        let root = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let rel = relative(node_path);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let fd = rustix::fs::openat2(
            &root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(rustix::fs::fstat(&fd)?)
    }

    /// ENOENT on a path that is itself a symlink means the link dangles: say where it points.
    fn explain_open_error(&self, node_path: &Path, e: io::Error) -> ReadError {
        // Opening a socket gives ENXIO, a FIFO may block, a device is not ours: say what
        // the file is instead of a raw errno.
        if let Ok(st) = self.stat_in_root(node_path) {
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
            {
                return ReadError::NotAFile(mode_in_words(st.st_mode));
            }
        }
        let err = ReadError::from(e);
        if matches!(err, ReadError::NotFound) {
            if let Ok(target) = std::fs::read_link(self.host_path(node_path)) {
                return ReadError::Dangling {
                    target: target.display().to_string(),
                };
            }
        }
        err
    }
}

/// Read a path given on the command line, as given (no root), with the same limits.
pub fn read_host_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    match File::open(path) {
        Ok(f) => read_limited(f),
        Err(e) => {
            let err = ReadError::from(e);
            if matches!(err, ReadError::NotFound) {
                if let Ok(target) = std::fs::read_link(path) {
                    return Err(ReadError::Dangling {
                        target: target.display().to_string(),
                    });
                }
            }
            Err(err)
        }
    }
}

fn read_limited(file: File) -> Result<Vec<u8>, ReadError> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile(kind_in_words(meta.file_type())));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // take(): a file that grows while we read it still cannot exceed the limit.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            size: buf.len() as u64,
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(buf)
}

/// What a file that is not a regular file is, in words ("a socket").
pub fn kind_in_words(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_file() {
        "a regular file"
    } else {
        "of an unknown type"
    }
}

/// [`kind_in_words`] for a raw `st_mode`.
pub fn mode_in_words(mode: u32) -> &'static str {
    use rustix::fs::FileType as T;
    match T::from_raw_mode(mode) {
        T::Directory => "a directory",
        T::Socket => "a socket",
        T::Fifo => "a named pipe (FIFO)",
        T::CharacterDevice => "a character device",
        T::BlockDevice => "a block device",
        T::Symlink => "a symlink",
        T::RegularFile => "a regular file",
        _ => "of an unknown type",
    }
}

/// `/a/b` -> `a/b`; `..` components are dropped so that a node path never leaves the root.
pub fn relative(node_path: &Path) -> &Path {
    node_path.strip_prefix("/").unwrap_or(node_path)
}

/// Resolve a path found inside a file (a kubeconfig's `client-certificate: pki/x.crt`):
/// relative paths are relative to that file's directory, as kubectl does.
pub fn resolve_reference(referencing_file: &Path, reference: &str) -> PathBuf {
    let reference = Path::new(reference);
    if reference.is_absolute() {
        return reference.to_path_buf();
    }
    let base = referencing_file.parent().unwrap_or(Path::new("/"));
    normalize(&base.join(reference))
}

/// Lexical normalisation (`a/./b/../c` -> `a/c`), never above `/`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_joins_under_root() {
        let r = NodeRoot::new("/tmp/node");
        assert_eq!(
            r.host_path(Path::new("/etc/kubernetes/pki/ca.crt")),
            PathBuf::from("/tmp/node/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(
            NodeRoot::system().host_path(Path::new("/etc/x")),
            PathBuf::from("/etc/x")
        );
    }

    #[test]
    fn references_resolve_against_the_kubeconfig_directory() {
        let kc = Path::new("/etc/kubernetes/kubelet.conf");
        assert_eq!(
            resolve_reference(kc, "pki/ca.crt"),
            PathBuf::from("/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(
            resolve_reference(kc, "../../var/lib/kubelet/pki/x.pem"),
            PathBuf::from("/var/lib/kubelet/pki/x.pem")
        );
        assert_eq!(
            resolve_reference(kc, "/abs/x.pem"),
            PathBuf::from("/abs/x.pem")
        );
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("var/lib/kubelet/pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("kubelet-client-1.pem"), b"inside").unwrap();
        std::os::unix::fs::symlink(
            "/var/lib/kubelet/pki/kubelet-client-1.pem",
            pki.join("kubelet-client-current.pem"),
        )
        .unwrap();
        let root = NodeRoot::new(dir.path());
        let got = root
            .read(Path::new("/var/lib/kubelet/pki/kubelet-client-current.pem"))
            .unwrap();
        assert_eq!(got, b"inside");
    }

    #[test]
    fn loops_and_dangling_links_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.path().join("d")).unwrap();
        let root = NodeRoot::new(dir.path());
        assert!(matches!(
            root.read(Path::new("/a")),
            Err(ReadError::SymlinkLoop)
        ));
        match root.read(Path::new("/d")) {
            Err(ReadError::Dangling { target }) => assert_eq!(target, "/nowhere"),
            other => panic!("expected dangling, got {other:?}"),
        }
    }
}
