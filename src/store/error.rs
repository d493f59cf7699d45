//! What went wrong, naming the path and the cause an operator can act on.

use std::io;
use std::path::PathBuf;

/// Every store error names the host path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A system call failed; `source` carries the errno (ENOSPC, EACCES, EROFS, ENOTDIR...).
    #[error("{path}: {op}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: invalid name: {reason}", path = path.display())]
    InvalidName { path: PathBuf, reason: String },
    #[error("{path}: symlink points outside the managed directory (to {target}); refusing it", path = path.display())]
    SymlinkEscape { path: PathBuf, target: String },
    #[error("{path}: is a directory; refusing to replace it", path = path.display())]
    IsDirectory { path: PathBuf },
    #[error("{path}: is a symlink (to {target}); refusing to replace it with a file", path = path.display())]
    IsSymlink { path: PathBuf, target: String },
    #[error("{path}: not a regular file: {kind}", path = path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{cert} and {key}: a certificate and its key must be in the same directory", cert = cert.display(), key = key.display())]
    DifferentDirectories { cert: PathBuf, key: PathBuf },
    #[error("{path}: certificate material rejected: {reason}", path = path.display())]
    BadMaterial { path: PathBuf, reason: String },
    /// Replacing this file would break another certificate (a typo in a configured path).
    #[error("{path} {what}: refusing to replace it (check the configured cert and key paths)", path = path.display())]
    BelongsElsewhere {
        path: PathBuf,
        owner: PathBuf,
        what: String,
    },
    #[error("{path}: holds a CA certificate where a leaf belongs; the agent never replaces a CA", path = path.display())]
    IsCa { path: PathBuf },
    #[error("{path}: no current version", path = path.display())]
    NoCurrent { path: PathBuf },
    #[error("{path}: no older version to roll back to", path = path.display())]
    NoPrevious { path: PathBuf },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// The errno of a failed system call, if that is what this error is.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `rustix` errors into `io::Error`, for `StoreError::io`.
pub(crate) fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_path_the_operation_and_the_errno() {
        let e = StoreError::io(
            "/etc/kubernetes/pki/apiserver.crt",
            "write",
            io::Error::from_raw_os_error(28),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("/etc/kubernetes/pki/apiserver.crt: write: "),
            "{s}"
        );
        assert!(s.contains("No space left on device"), "{s}");
        assert_eq!(e.raw_os_error(), Some(28));
    }
}
