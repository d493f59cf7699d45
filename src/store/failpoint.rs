//! Failpoints between write, fsync, swap and prune (cargo feature `failpoints`).
//!
//! Without the feature [`hit`] is an empty inline function. With it, a point is armed
//! per thread with [`arm`] (so that parallel tests do not see each other's points) or
//! per process with the environment variable `KCA_FAILPOINTS=name=action[,name=action]`
//! (for child processes). Actions: `error` (the operation fails with EIO), `enospc`,
//! `abort` (the process dies on the spot, as a crash or a SIGKILL would leave it),
//! `abort@N` (dies at the N-th pass of that point in this process, N from 1: a crash at
//! every write of a multi-file operation, one run per N).

/// Every point the store passes, in the order an install passes them.
pub const POINTS: &[&str] = &[
    "store::migrated-data",
    "store::after-write",
    "store::after-fsync",
    "store::before-swap",
    "store::after-swap",
    "store::before-prune",
    "store::mid-prune",
];

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) -> std::io::Result<()> {
    Ok(())
}

#[cfg(feature = "failpoints")]
pub use armed::{action, arm, disarm_all};

#[cfg(feature = "failpoints")]
pub(crate) use armed::hit;

#[cfg(feature = "failpoints")]
mod armed {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::io;

    thread_local! {
        static ARMED: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    }

    /// Arm `name` with `action` (`error`, `enospc`, `abort`) for the calling thread.
    pub fn arm(name: &str, action: &str) {
        ARMED.with(|a| a.borrow_mut().insert(name.to_string(), action.to_string()));
    }

    /// Disarm every point of the calling thread.
    pub fn disarm_all() {
        ARMED.with(|a| a.borrow_mut().clear());
    }

    /// The action armed for `name` (thread, then KCA_FAILPOINTS), for points outside the
    /// store that act on their own (the daemon's `stall`).
    pub fn action(name: &str) -> Option<String> {
        action_for(name)
    }

    fn action_for(name: &str) -> Option<String> {
        if let Some(a) = ARMED.with(|a| a.borrow().get(name).cloned()) {
            return Some(a);
        }
        let env = std::env::var("KCA_FAILPOINTS").ok()?;
        env.split(',').find_map(|item| {
            let (n, a) = item.split_once('=')?;
            (n == name).then(|| a.to_string())
        })
    }

    /// Passes of each point in this process (for `abort@N`).
    static PASSES: std::sync::Mutex<Option<HashMap<String, usize>>> = std::sync::Mutex::new(None);

    fn pass(name: &str) -> usize {
        let mut g = PASSES.lock().unwrap_or_else(|e| e.into_inner());
        let n = g
            .get_or_insert_with(HashMap::new)
            .entry(name.to_string())
            .or_default();
        *n += 1;
        *n
    }

    pub(crate) fn hit(name: &str) -> io::Result<()> {
        let action = action_for(name);
        if let Some(nth) = action.as_deref().and_then(|a| a.strip_prefix("abort@")) {
            if nth.parse::<usize>().ok() == Some(pass(name)) {
                std::process::abort();
            }
            return Ok(());
        }
        match action.as_deref() {
            None => Ok(()),
            Some("abort") => std::process::abort(),
            Some("enospc") => Err(io::Error::from_raw_os_error(28)),
            Some(_) => Err(io::Error::other(format!("failpoint {name}"))),
        }
    }
}
