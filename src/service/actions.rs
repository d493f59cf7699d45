//! Dependents' `onRotate` actions: restart / try-restart / reload-or-restart a systemd unit
//! over D-Bus (zbus; waiting for `JobRemoved` to learn the job's result), with `systemctl`
//! only when the system bus is unavailable; a signal to a unit's MainPID or to the pid in a
//! pid file; a command (argv, no shell, a timeout, no NOTIFY_SOCKET in its environment).

use std::time::Duration;

use futures_util::StreamExt;
use rustix::process::Signal;

use crate::config::{Action, CommandSpec, Config, SignalSpec};
use crate::paths::NodeRoot;

/// How long a unit job may take before we call it failed (systemd's default start timeout
/// is 90 s; a restart is a stop and a start).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(200);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str)
        -> zbus::Result<zbus::zvariant::OwnedObjectPath>;
    fn try_restart_unit(
        &self,
        name: &str,
        mode: &str,
    ) -> zbus::Result<zbus::zvariant::OwnedObjectPath>;
    fn reload_or_restart_unit(
        &self,
        name: &str,
        mode: &str,
    ) -> zbus::Result<zbus::zvariant::OwnedObjectPath>;
    fn get_unit(&self, name: &str) -> zbus::Result<zbus::zvariant::OwnedObjectPath>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Service {
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property, name = "Result")]
    fn result(&self) -> zbus::Result<String>;
}

pub use crate::config::validate::check_unit as validate_unit;

pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    Ok(match n {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "TERM" => Signal::TERM,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "WINCH" => Signal::WINCH,
        "CONT" => Signal::CONT,
        _ => return Err(format!("{name:?} is not a signal this agent sends (HUP, USR1, USR2, TERM, INT, QUIT, WINCH, CONT, KILL)")),
    })
}

/// Every `onRotate` in the config, checked at start-up (a bad one is a config error).
pub fn validate_config(config: &Config) -> Result<(), String> {
    let all = config
        .certificates
        .iter()
        .map(|c| (c.name.as_str(), &c.on_rotate))
        .chain(
            config
                .kubeconfigs
                .iter()
                .map(|k| (k.name.as_str(), &k.on_rotate)),
        )
        .chain(config.kubelet.iter().map(|k| ("kubelet", &k.on_rotate)))
        .chain(config.cas.iter().map(|c| (c.name.as_str(), &c.on_rotate)));
    for (name, actions) in all {
        for a in actions {
            validate(a).map_err(|e| format!("{name}: onRotate: {e}"))?;
        }
    }
    Ok(())
}

pub fn validate(a: &Action) -> Result<(), String> {
    crate::config::validate::check_action(a)
}

/// One line naming an action, for logs and state.json.
pub fn describe(a: &Action) -> String {
    match a {
        Action::Restart(u) => format!("restart {u}"),
        Action::TryRestart(u) => format!("try-restart {u}"),
        Action::ReloadOrRestart(u) => format!("reload-or-restart {u}"),
        Action::Signal(SignalSpec {
            unit: Some(u),
            signal,
            ..
        }) => format!("signal {signal} to {u}"),
        Action::Signal(SignalSpec {
            pid_file: Some(p),
            signal,
            ..
        }) => format!("signal {signal} to the pid in {}", p.display()),
        Action::Signal(s) => format!("signal {}", s.signal),
        Action::Command(c) => format!("command {:?}", c.argv),
    }
}

/// Runs actions; holds the D-Bus connection once made.
#[derive(Default)]
pub struct Runner {
    bus: Option<zbus::Connection>,
    bus_failed: bool,
}

impl Runner {
    async fn bus(&mut self) -> Option<zbus::Connection> {
        if self.bus.is_none() && !self.bus_failed {
            match zbus::Connection::system().await {
                Ok(c) => self.bus = Some(c),
                Err(e) => {
                    tracing::warn!("D-Bus system bus unavailable ({e}); using systemctl");
                    self.bus_failed = true;
                }
            }
        }
        self.bus.clone()
    }

    /// Run one action. `certs`: the certificates it is for (given to commands as
    /// KUBE_CERT_AGENT_CERTIFICATES).
    pub async fn run(
        &mut self,
        root: &NodeRoot,
        a: &Action,
        certs: &[String],
    ) -> Result<String, String> {
        match a {
            Action::Restart(u) => self.unit_job("restart", u).await,
            Action::TryRestart(u) => self.unit_job("try-restart", u).await,
            Action::ReloadOrRestart(u) => self.unit_job("reload-or-restart", u).await,
            Action::Signal(s) => self.signal(root, s).await,
            Action::Command(c) => command(c, certs).await,
        }
    }

    async fn unit_job(&mut self, verb: &str, unit: &str) -> Result<String, String> {
        validate_unit(unit)?;
        match self.bus().await {
            Some(bus) => dbus_job(&bus, verb, unit).await,
            None => systemctl(&[verb, unit])
                .await
                .map(|_| format!("{verb} {unit}: done (systemctl)")),
        }
    }

    async fn signal(&mut self, root: &NodeRoot, s: &SignalSpec) -> Result<String, String> {
        let sig = parse_signal(&s.signal)?;
        let pid = match (&s.unit, &s.pid_file) {
            (Some(u), _) => {
                validate_unit(u)?;
                let pid = match self.bus().await {
                    Some(bus) => main_pid_dbus(&bus, u).await?,
                    None => systemctl(&["show", "-p", "MainPID", "--value", u])
                        .await?
                        .trim()
                        .parse()
                        .map_err(|_| format!("{u}: no MainPID from systemctl"))?,
                };
                if pid == 0 {
                    return Err(format!("{u} has no main process (not running?)"));
                }
                pid
            }
            (None, Some(p)) => {
                let text = root
                    .read(p)
                    .map_err(|e| format!("pid file {}: {e}", p.display()))?;
                String::from_utf8_lossy(&text)
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| format!("pid file {}: not a pid", p.display()))?
            }
            (None, None) => return Err("signal: no unit and no pidFile".into()),
        };
        let p = rustix::process::Pid::from_raw(pid as i32)
            .filter(|_| pid > 1)
            .ok_or_else(|| format!("refusing to signal pid {pid}"))?;
        rustix::process::kill_process(p, sig).map_err(|e| format!("kill {pid}: {e}"))?;
        Ok(format!("sent {} to pid {pid}", s.signal))
    }
}

async fn dbus_job(bus: &zbus::Connection, verb: &str, unit: &str) -> Result<String, String> {
    let m = ManagerProxy::new(bus).await.map_err(|e| e.to_string())?;
    // Subscribe once per connection; systemd answers AlreadySubscribed after that.
    match m.subscribe().await {
        Ok(()) => {}
        Err(e) if e.to_string().contains("AlreadySubscribed") => {}
        Err(e) => return Err(format!("D-Bus Subscribe: {e}")),
    }
    // Listen before asking, so that a fast job's JobRemoved is not missed.
    let mut removed = m
        .receive_job_removed()
        .await
        .map_err(|e| format!("D-Bus JobRemoved: {e}"))?;
    let job = match verb {
        "restart" => m.restart_unit(unit, "replace").await,
        "try-restart" => m.try_restart_unit(unit, "replace").await,
        _ => m.reload_or_restart_unit(unit, "replace").await,
    }
    .map_err(|e| format!("{verb} {unit}: {}", dbus_error(&e)))?;
    let wait = async {
        while let Some(sig) = removed.next().await {
            let Ok(args) = sig.args() else { continue };
            if args.job().as_str() == job.as_str() {
                return Some(args.result().to_string());
            }
        }
        None
    };
    match tokio::time::timeout(JOB_TIMEOUT, wait).await {
        Ok(Some(r)) if r == "done" => Ok(format!("{verb} {unit}: done")),
        Ok(Some(r)) => {
            let why = unit_result(bus, &m, unit).await;
            Err(format!("{verb} {unit}: job {r}{why}"))
        }
        Ok(None) => Err(format!(
            "{verb} {unit}: the bus closed before the job ended"
        )),
        Err(_) => Err(format!(
            "{verb} {unit}: the job did not end within {}s",
            JOB_TIMEOUT.as_secs()
        )),
    }
}

/// The unit's own account of a failure (`Result=exit-code`), as `systemctl status` shows.
async fn unit_result(bus: &zbus::Connection, m: &ManagerProxy<'_>, unit: &str) -> String {
    let Ok(path) = m.get_unit(unit).await else {
        return String::new();
    };
    let Ok(svc) = ServiceProxy::builder(bus).path(path).map(|b| b.build()) else {
        return String::new();
    };
    match svc.await {
        Ok(s) => s
            .result()
            .await
            .map(|r| format!(" (unit result: {r})"))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn dbus_error(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({})", name.as_str()),
        other => other.to_string(),
    }
}

async fn main_pid_dbus(bus: &zbus::Connection, unit: &str) -> Result<u32, String> {
    let m = ManagerProxy::new(bus).await.map_err(|e| e.to_string())?;
    let path = m
        .get_unit(unit)
        .await
        .map_err(|e| format!("{unit}: {}", dbus_error(&e)))?;
    let svc = ServiceProxy::builder(bus)
        .path(path)
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| e.to_string())?;
    svc.main_pid()
        .await
        .map_err(|e| format!("{unit}: MainPID: {e}"))
}

fn child(program: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}

async fn systemctl(args: &[&str]) -> Result<String, String> {
    let out = child("systemctl")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("systemctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "systemctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn command(c: &CommandSpec, certs: &[String]) -> Result<String, String> {
    let mut cmd = child(&c.argv[0]);
    cmd.args(&c.argv[1..])
        .env("KUBE_CERT_AGENT_CERTIFICATES", certs.join(","))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let run = cmd
        .spawn()
        .map_err(|e| format!("command {:?}: {e}", c.argv[0]))?;
    match tokio::time::timeout(c.timeout.0, run.wait_with_output()).await {
        Err(_) => Err(format!(
            "command {:?}: killed after the {}s timeout",
            c.argv[0],
            c.timeout.0.as_secs()
        )),
        Ok(Err(e)) => Err(format!("command {:?}: {e}", c.argv[0])),
        Ok(Ok(out)) if out.status.success() => Ok(format!("command {:?}: ok", c.argv[0])),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            Err(format!("command {:?}: {}: {tail}", c.argv[0], out.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_checked() {
        for ok in [
            "kubelet.service",
            "kube-apiserver.service",
            "getty@tty1.service",
            "a.socket",
        ] {
            assert_eq!(validate_unit(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "kubelet",
            "--now.service",
            "../x.service",
            "a b.service",
            ".service",
            "x;reboot.service",
        ] {
            assert!(validate_unit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals_by_name() {
        assert_eq!(parse_signal("SIGHUP"), Ok(Signal::HUP));
        assert_eq!(parse_signal("usr1"), Ok(Signal::USR1));
        assert!(parse_signal("SIGSEGV").is_err());
    }

    #[tokio::test]
    async fn commands_get_no_notify_socket_and_time_out() {
        let spec = |argv: &[&str], secs: u64| CommandSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: crate::config::HumanDuration(Duration::from_secs(secs)),
        };
        std::env::set_var("NOTIFY_SOCKET", "/nonexistent");
        let r = command(
            &spec(
                &[
                    "/bin/sh",
                    "-c",
                    "test -z \"$NOTIFY_SOCKET\" && test \"$KUBE_CERT_AGENT_CERTIFICATES\" = a,b",
                ],
                10,
            ),
            &["a".into(), "b".into()],
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        let r = command(&spec(&["/bin/sh", "-c", "echo nope >&2; exit 3"], 10), &[]).await;
        assert!(r.as_ref().unwrap_err().contains("nope"), "{r:?}");
        let r = command(&spec(&["/bin/sleep", "30"], 1), &[]).await;
        assert!(r.unwrap_err().contains("timeout"));
    }
}
