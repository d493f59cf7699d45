//! sd_notify (crate sd-notify): READY, STATUS, WATCHDOG, RELOADING, STOPPING. Every call is
//! a no-op without NOTIFY_SOCKET; errors are logged, never fatal. NOTIFY_SOCKET stays in
//! our environment (the crate reads it per call) and is removed from every child's
//! environment instead (see `actions`).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STATUS= only when it changed: every message is a wake-up for PID 1 (and a send that
/// can block while the manager's socket buffer is full).
pub fn status(status: &str) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if *last != status {
        *last = status.to_string();
        send(&[NotifyState::Status(status)]);
    }
}

/// RELOADING=1 with MONOTONIC_USEC (systemd 253+ wants it; older ones ignore it).
pub fn reloading(status: &str) {
    match NotifyState::monotonic_usec_now() {
        Ok(m) => send(&[NotifyState::Reloading, m, NotifyState::Status(status)]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status(status)]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send WATCHDOG=1: half of WATCHDOG_USEC, if the watchdog is on for us.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
