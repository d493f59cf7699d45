//! The control socket: `/run/kube-cert-agent/control.sock` (under `--root`), mode 0600 so
//! that only root talks to it. One request line, answered by the daemon's output lines and
//! a last line `exit N`. `kube-cert-agent rotate` asks the daemon through it instead of
//! racing it; `status` uses `ping` to learn whether a daemon is running.
//!
//! ```text
//! -> ping                      <- pong PID / exit 0
//! -> rotate [--all] [--dry-run] [NAME...]
//! <- apiserver: rotated (forced): serial 1a -> 2b, expires ...
//! <- exit 0
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::paths::NodeRoot;

pub const SOCKET_PATH: &str = "/run/kube-cert-agent/control.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    Rotate {
        all: bool,
        dry_run: bool,
        names: Vec<String>,
    },
}

impl Request {
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ping") if words.next().is_none() => Ok(Request::Ping),
            Some("rotate") => {
                let (mut all, mut dry_run, mut names) = (false, false, vec![]);
                for w in words {
                    match w {
                        "--all" => all = true,
                        "--dry-run" => dry_run = true,
                        n if n.starts_with('-') => return Err(format!("unknown flag {n}")),
                        n => names.push(n.to_string()),
                    }
                }
                Ok(Request::Rotate {
                    all,
                    dry_run,
                    names,
                })
            }
            _ => Err("expected `ping` or `rotate [--all] [--dry-run] [NAME...]`".into()),
        }
    }

    pub fn line(&self) -> String {
        match self {
            Request::Ping => "ping".into(),
            Request::Rotate {
                all,
                dry_run,
                names,
            } => {
                let mut s = "rotate".to_string();
                if *all {
                    s.push_str(" --all");
                }
                if *dry_run {
                    s.push_str(" --dry-run");
                }
                for n in names {
                    s.push(' ');
                    s.push_str(n);
                }
                s
            }
        }
    }
}

/// The socket as this machine sees it (for messages).
pub fn socket_path(root: &NodeRoot) -> PathBuf {
    root.host_path(Path::new(SOCKET_PATH))
}

/// The socket's directory, opened inside the root (a symlinked `ROOT/run/...` resolves
/// inside ROOT, never to another node's daemon), and a path to the socket through that
/// open directory (`/proc/self/fd/N/control.sock`) for bind and connect. The fd must stay
/// open while the path is used.
fn socket_in_root(
    root: &NodeRoot,
    create: bool,
) -> io::Result<(std::os::fd::OwnedFd, PathBuf, &'static str)> {
    use std::os::fd::AsRawFd;
    let node = Path::new(SOCKET_PATH);
    let dir = root.open_dir(node.parent().unwrap_or(Path::new("/")), create)?;
    let name = "control.sock";
    let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
    Ok((dir, path, name))
}

/// The daemon's answer: its output lines and exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<String>,
    pub code: i32,
}

/// Ask the daemon. `Ok(None)`: no daemon answers (no socket, or nobody listening).
pub fn ask(root: &NodeRoot, req: &Request, timeout: Option<Duration>) -> io::Result<Option<Reply>> {
    let stream =
        match socket_in_root(root, false).and_then(|(_dir, path, _)| UnixStream::connect(path)) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    (&stream).write_all(format!("{}\n", req.line()).as_bytes())?;
    let mut lines = Vec::new();
    for line in BufReader::new(&stream).lines() {
        let line = line?;
        if let Some(code) = line.strip_prefix("exit ") {
            let code = code
                .trim()
                .parse()
                .map_err(|_| io::Error::other(format!("bad reply line {line:?}")))?;
            return Ok(Some(Reply { lines, code }));
        }
        lines.push(line);
    }
    Err(io::Error::other(
        "the daemon closed the connection without an answer",
    ))
}

/// Whether a daemon is there, as the control socket tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// Answered `ping` with its pid.
    Running(u32),
    /// Accepted the connection but did not answer in time: a daemon is bound to the socket
    /// and busy in a rotation cycle (a kubelet CSR waiting for approval, for instance). A
    /// stale socket file refuses connections instead.
    Busy,
    Absent,
}

pub fn probe(root: &NodeRoot) -> Daemon {
    match ask(root, &Request::Ping, Some(Duration::from_secs(2))) {
        Ok(Some(r)) => r
            .lines
            .first()
            .and_then(|l| l.strip_prefix("pong "))
            .and_then(|p| p.trim().parse().ok())
            .map_or(Daemon::Absent, Daemon::Running),
        Ok(None) => Daemon::Absent,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Daemon::Busy
        }
        Err(_) => Daemon::Absent,
    }
}

/// The pid of the running daemon, if one answers `ping`.
pub fn running(root: &NodeRoot) -> Option<u32> {
    match probe(root) {
        Daemon::Running(pid) => Some(pid),
        _ => None,
    }
}

/// Bind the socket: refuse when another daemon answers on it, replace a stale one, 0600.
pub fn bind(root: &NodeRoot) -> Result<tokio::net::UnixListener, String> {
    let path = socket_path(root);
    match probe(root) {
        Daemon::Running(pid) => {
            return Err(format!(
                "{}: another daemon (pid {pid}) is running on this node",
                path.display()
            ))
        }
        // Removing a busy daemon's socket would cut it off: refuse as well.
        Daemon::Busy => {
            return Err(format!(
                "{}: another daemon is running on this node (busy)",
                path.display()
            ))
        }
        Daemon::Absent => {}
    }
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let (dir, via_fd, name) = socket_in_root(root, true).map_err(|e| shown(&e))?;
    remove_stale(&dir, name).map_err(|e| shown(&e))?;
    // umask while binding, so the socket is never connectable by others, even briefly.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let l = tokio::net::UnixListener::bind(&via_fd);
    rustix::process::umask(old);
    let l = l.map_err(|e| shown(&e))?;
    rustix::fs::chmodat(
        &dir,
        name,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| shown(&e))?;
    Ok(l)
}

/// Remove the socket a daemon leaves behind, only if it is a socket (never a file or a
/// link someone put there).
fn remove_stale(dir: &std::os::fd::OwnedFd, name: &str) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType};
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Socket => {
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
        }
        Ok(st) => Err(io::Error::other(format!(
            "not a socket but {}; refusing to remove it",
            crate::paths::mode_in_words(st.st_mode)
        ))),
    }
}

/// Remove the daemon's socket at exit (inside the root, only if it is a socket).
pub fn unbind(root: &NodeRoot) {
    if let Ok((dir, _, name)) = socket_in_root(root, false) {
        let _ = remove_stale(&dir, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Ping,
            Request::Rotate {
                all: true,
                dry_run: false,
                names: vec![],
            },
            Request::Rotate {
                all: false,
                dry_run: true,
                names: vec!["apiserver".into(), "kubelet-client".into()],
            },
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
        assert!(Request::parse("rotate --force").is_err());
        assert!(Request::parse("reboot").is_err());
    }
}
