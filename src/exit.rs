//! Process exit codes: the contract that scripts, tests and the systemd unit rely on.

/// Exit codes of `kube-cert-agent`. `check` uses 0..=3; other commands use 0, 3 and 4;
/// `rotate` through the daemon also 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything valid / the command did what was asked.
    Ok = 0,
    /// `check`: some certificate is within the warning window.
    Warning = 1,
    /// `check`: some certificate is expired, not yet valid, or unreadable.
    Critical = 2,
    /// Usage or configuration error: retrying will not help (the unit's
    /// `RestartPreventExitStatus=`).
    Config = 3,
    /// A runtime failure (I/O, API server, ...): retrying may help.
    Failure = 4,
    /// `rotate` through the daemon: a kubelet CSR waits for a person's approval. Nothing
    /// failed, but the certificate is not renewed yet: a script must not read this as 0.
    AwaitingApproval = 5,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// An error that carries the exit code it should end the process with.
#[derive(Debug)]
pub struct Fatal {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl Fatal {
    pub fn config(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            code: ExitCode::Config,
            error: error.into(),
        }
    }
    pub fn failure(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            code: ExitCode::Failure,
            error: error.into(),
        }
    }
}

/// `error: X` then one `-> cause` line per cause, as zincati's `log_error_chain` does.
pub fn render_error_chain(error: &anyhow::Error) -> String {
    let mut out = format!("error: {error}");
    for cause in error.chain().skip(1) {
        out.push_str(&format!("\n  -> {cause}"));
    }
    out
}
