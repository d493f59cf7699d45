//! Logging: to journald (native protocol, structured fields) when its socket exists, else
//! to stderr: one compact line without timestamps when JOURNAL_STREAM says stderr goes to
//! the journal anyway, with timestamps on a terminal.
//!
//! Events about certificates carry CERT_NAME, CERT_PATH, SERIAL, NOT_AFTER, ACTION (and
//! ERROR for failures), so that `journalctl -u kube-cert-agent CERT_NAME=apiserver` works.
//! tracing levels map to journal priorities: ERROR=err(3), WARN=warning(4), INFO=notice(5).

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Where log events went; said once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journald,
    StderrForJournal,
    Stderr,
}

pub fn init() -> Sink {
    let level = std::env::var("KCA_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    if Path::new(JOURNAL_SOCKET).exists() && std::env::var_os("KCA_LOG_STDERR").is_none() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("kube-cert-agent".into());
                if tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    return Sink::Journald;
                }
            }
            Err(e) => {
                eprintln!("kube-cert-agent: journald logging unavailable ({e}); logging to stderr")
            }
        }
    }
    let journal_stream = std::env::var_os("JOURNAL_STREAM").is_some();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let ok = if journal_stream {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt.compact().without_time())
            .try_init()
            .is_ok()
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt.compact())
            .try_init()
            .is_ok()
    };
    let _ = ok;
    if journal_stream {
        Sink::StderrForJournal
    } else {
        Sink::Stderr
    }
}
