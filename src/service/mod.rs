//! systemd-facing pieces of the daemon: sd_notify, logging to journald, the control
//! socket, dependents' actions (units over D-Bus, signals, commands) and state.json.

pub mod actions;
pub mod control;
pub mod logging;
pub mod memory;
pub mod notify;
pub mod state;
