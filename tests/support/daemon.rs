//! The daemon as a child process on a node tree, with a test sd_notify socket: every wait
//! is on the socket, on files or on the log, and has an upper bound.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::NodeTree;

pub struct Daemon {
    pub child: Child,
    /// Messages read by a thread that drains the socket at once (a full socket buffer
    /// would block the daemon's sd_notify send, as it would under a stuck systemd).
    pub notify: std::sync::mpsc::Receiver<String>,
    pub log: PathBuf,
    /// Every sd_notify message received so far, in order.
    pub messages: Vec<String>,
    _sock_dir: tempfile::TempDir,
}

impl Daemon {
    /// Start `run` on `node`; `env`: extra variables (WATCHDOG_USEC, KCA_FAILPOINTS...).
    pub fn start(node: &NodeTree, env: &[(&str, &str)]) -> Daemon {
        let sock_dir = tempfile::tempdir().unwrap();
        let sock = sock_dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&sock).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (tx, notify) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        if tx
                            .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                            .is_err()
                        {
                            return;
                        }
                    }
                    // Timeout: stop once the Daemon (the receiver) is gone.
                    Err(_) => {
                        if tx.send(String::new()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let log = node.root().join("daemon.log");
        let mut cmd = super::agent_cmd();
        cmd.arg("--root")
            .arg(node.root())
            .arg("run")
            .env("NOTIFY_SOCKET", &sock)
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn kube-cert-agent run");
        Daemon {
            child,
            notify,
            log,
            messages: vec![],
            _sock_dir: sock_dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The next notify message containing `what` (a line like `READY=1`), within `timeout`.
    pub fn wait_notify(&mut self, what: &str, timeout: Duration) -> String {
        match self.try_wait_notify(what, timeout) {
            Some(m) => m,
            None => panic!(
                "no sd_notify {what:?} within {timeout:?}; got {:?}\nlog:\n{}",
                self.messages,
                self.log_text()
            ),
        }
    }

    pub fn try_wait_notify(&mut self, what: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self
                .notify
                .recv_timeout(left.min(Duration::from_millis(250)))
            {
                Ok(m) if m.is_empty() => {}
                Ok(m) => {
                    self.messages.push(m.clone());
                    if m.lines().any(|l| l == what || l.starts_with(what)) {
                        return Some(m);
                    }
                }
                Err(_) => {}
            }
            // A daemon that died is seen at once (after what it sent was read).
            if let Ok(Some(st)) = self.child.try_wait() {
                while let Ok(m) = self.notify.try_recv() {
                    if !m.is_empty() {
                        self.messages.push(m.clone());
                        if m.lines().any(|l| l == what || l.starts_with(what)) {
                            return Some(m);
                        }
                    }
                }
                eprintln!("the daemon exited ({st}) while waiting for {what:?}");
                return None;
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) for the process to exit; its code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the daemon did not exit within {timeout:?}\n{}",
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes; how long it took.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The serial of the certificate at `p`, if it parses (openssl).
pub fn serial_of(p: &Path) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(p)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("serial=")
        .map(|s| s.to_ascii_lowercase())
}

/// The public key of a certificate and of a key file agree (openssl).
pub fn key_matches(cert: &Path, key: &Path) -> bool {
    let pubkey = |args: &[&str], p: &Path| {
        std::process::Command::new("openssl")
            .args(args)
            .arg(p)
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let a = pubkey(&["x509", "-noout", "-pubkey", "-in"], cert);
    let b = pubkey(&["pkey", "-pubout", "-in"], key);
    !a.is_empty() && a == b
}
