//! The daemon under a real systemd (PID 1 in a sandbox, ../shared/tools/systemd-sandbox):
//! the packaged unit from systemd/ pointed at the built binary with `--root` on a tree
//! under /exchange. Needs root and the tool; a machine without them fails the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::daemon::{serial_of, wait_until};
use support::openssl::{self, Key};

const T: Duration = Duration::from_secs(30);

struct Sandbox {
    dir: PathBuf,
    tool: PathBuf,
}

impl Sandbox {
    /// Boot one; a machine that cannot fails the test.
    fn start(name: &str) -> Sandbox {
        // ../shared beside the checkout; /work/shared from a worktree (as package-test.sh).
        let tool = [
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/systemd-sandbox"),
            PathBuf::from("/work/shared/tools/systemd-sandbox"),
        ]
        .into_iter()
        .find(|t| t.exists())
        .unwrap_or_else(|| PathBuf::from("../shared/tools/systemd-sandbox"));
        if !tool.exists() || !rustix::process::geteuid().is_root() {
            // CI provides both (root, ../shared/tools): a missing one is a failure, not a skip.
            panic!("needs root and {}", tool.display());
        }
        let dir = PathBuf::from(format!("/tmp/kca-sandbox-{name}-{}", std::process::id()));
        let sb = Sandbox { dir, tool };
        let out = sb.cmd(&["start"]);
        assert!(
            out.status.success(),
            "sandbox start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sb
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.tool)
            .args(args)
            .env("SANDBOX_DIR", &self.dir)
            .output()
            .expect("systemd-sandbox runs")
    }

    /// Run inside; stdout. Panics on failure.
    fn run(&self, args: &[&str]) -> String {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        let out = self.cmd(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_run(&self, args: &[&str]) -> String {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&self.cmd(&a).stdout).into_owned()
    }

    /// Host path of /exchange/... inside.
    fn exchange(&self, rel: &str) -> PathBuf {
        self.dir.join("exchange").join(rel)
    }

    fn install_unit(&self, name: &str, text: &str) {
        std::fs::write(self.exchange(name), text).unwrap();
        self.run(&[
            "cp",
            &format!("/exchange/{name}"),
            &format!("/etc/systemd/system/{name}"),
        ]);
        self.run(&["systemctl", "daemon-reload"]);
    }

    fn show(&self, unit: &str, prop: &str) -> String {
        self.try_run(&["systemctl", "show", "-p", prop, "--value", unit])
            .trim()
            .to_string()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.cmd(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node tree under the sandbox's /exchange: a CA and `names` declared, each restarting
/// `dep.service` when rotated. Returns the node path (inside) of the tree.
fn node_tree(sb: &Sandbox, tree: &str, names: &[&str], on_rotate: &str) -> String {
    let root = sb.exchange(tree);
    for d in [
        "etc/kubernetes/pki",
        "etc/kube-cert-agent",
        "var/lib/kubelet/pki",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    openssl::ca(
        &root.join("etc/kubernetes/pki"),
        "ca",
        Key::P256,
        "kubernetes",
        3650,
    );
    let pki = "/etc/kubernetes/pki";
    let mut body = String::from(
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n",
    );
    for n in names {
        body.push_str(&format!(
            "- name: {n}\n  ca: {{cert: {pki}/ca.crt, key: {pki}/ca.key}}\n  cert: {pki}/{n}.crt\n  key: {pki}/{n}.key\n  subject: {{commonName: {n}}}\n  dnsNames: [{n}]\n  usages: [serverAuth]\n  keyType: ecdsa-p256\n  onRotate: {on_rotate}\n"
        ));
    }
    std::fs::write(root.join("etc/kube-cert-agent/config.yaml"), body).unwrap();
    format!("/exchange/{tree}")
}

/// The packaged unit, with ExecStart pointing at the built binary (copied to /exchange)
/// and `--root` at the tree; `extra`: lines added to [Service].
fn agent_unit(sb: &Sandbox, root: &str, extra: &str) -> String {
    let bin = sb.exchange("kube-cert-agent");
    if !bin.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_kube-cert-agent"), &bin).unwrap();
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/kube-cert-agent.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/kube-cert-agent run\n"));
    // The unit's file system is read-only (ProtectSystem=strict) except the node's pki and
    // kubeconfig directories: a --root tree elsewhere needs ReadWritePaths=, as an operator's
    // drop-in would add for certificates outside /etc/kubernetes and /var/lib/kubelet.
    let mut unit = unit.replace(
        "ExecStart=/usr/bin/kube-cert-agent run\n",
        &format!("ExecStart=/exchange/kube-cert-agent --root {root} run\nReadWritePaths={root}\n"),
    );
    if !extra.is_empty() {
        unit = unit.replace("[Service]\n", &format!("[Service]\n{extra}\n"));
    }
    unit
}

fn journal_json(sb: &Sandbox, unit: &str) -> Vec<serde_json::Value> {
    sb.try_run(&["journalctl", "-u", unit, "-o", "json", "--no-pager"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn under_systemd_start_status_reload_restart_dependents_once_and_journal_fields() {
    let sb = Sandbox::start("daemon");
    // The dependent: logs each start, so restarts are counted exactly.
    sb.install_unit(
        "dep.service",
        "[Service]\nExecStart=/bin/sh -c 'echo started >> /exchange/dep.log; exec sleep infinity'\n",
    );
    sb.run(&["systemctl", "start", "dep.service"]);
    let starts = || {
        std::fs::read_to_string(sb.exchange("dep.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(wait_until(T, || starts() == 1).is_some());
    let pid0 = sb.show("dep.service", "MainPID");

    let root = node_tree(
        &sb,
        "node",
        &["apiserver", "front-proxy-client", "etcd-server"],
        "[{restart: dep.service}]",
    );
    sb.install_unit("kube-cert-agent.service", &agent_unit(&sb, &root, ""));
    // Type=notify: `start` returns once READY=1 came, i.e. after the first reconcile.
    sb.run(&["systemctl", "start", "kube-cert-agent.service"]);
    assert_eq!(sb.show("kube-cert-agent.service", "ActiveState"), "active");
    let status = sb.try_run(&[
        "systemctl",
        "status",
        "--no-pager",
        "kube-cert-agent.service",
    ]);
    assert!(
        status.contains("Status: \"3 certificates, next rotation "),
        "{status}"
    );
    // Three certificates issued in the first cycle: dep restarted once, after all three.
    assert!(
        wait_until(T, || starts() == 2).is_some(),
        "dep starts: {}",
        starts()
    );
    let pid1 = sb.show("dep.service", "MainPID");
    assert_ne!(pid0, pid1);

    // reload = forced rotation of everything: new serials, dep restarted once more.
    let crt = sb.exchange("node/etc/kubernetes/pki/apiserver.crt");
    let s0 = serial_of(&crt).unwrap();
    sb.run(&["systemctl", "reload", "kube-cert-agent.service"]);
    assert!(
        wait_until(T, || starts() == 3).is_some(),
        "dep starts: {}\n{}",
        starts(),
        sb.try_run(&["journalctl", "--no-pager", "-n", "60"])
    );
    assert_ne!(serial_of(&crt).unwrap(), s0);
    assert_ne!(sb.show("dep.service", "MainPID"), pid1);
    assert!(
        wait_until(T, || sb.show("kube-cert-agent.service", "ActiveState")
            == "active")
        .is_some()
    );

    // journald got structured fields, with the right priorities.
    let mut entries = vec![];
    wait_until(T, || {
        entries = journal_json(&sb, "kube-cert-agent.service");
        entries.iter().filter(|e| e["ACTION"] == "rotated").count() >= 6
    })
    .unwrap_or_else(|| panic!("journal: {entries:#?}"));
    let rotated: Vec<_> = entries
        .iter()
        .filter(|e| e["ACTION"] == "rotated")
        .collect();
    assert_eq!(rotated.len(), 6, "two cycles of three");
    for e in &rotated {
        assert_eq!(e["PRIORITY"], "5", "{e}");
        assert!(e["SERIAL"].as_str().is_some_and(|s| s.len() > 8), "{e}");
        assert!(
            e["NOT_AFTER"].is_string() && e["CERT_PATH"].is_string(),
            "{e}"
        );
    }
    let api: Vec<_> = entries
        .iter()
        .filter(|e| e["CERT_NAME"] == "apiserver")
        .collect();
    assert!(api.len() >= 2);
    let restarts = entries
        .iter()
        .filter(|e| e["ACTION"] == "restart dep.service")
        .count();
    assert_eq!(restarts, 2, "one restart per cycle");

    // Stop: STOPPING, exit 0, no failure recorded.
    sb.run(&["systemctl", "stop", "kube-cert-agent.service"]);
    assert_eq!(sb.show("kube-cert-agent.service", "Result"), "success");
    assert_eq!(starts(), 3);
}

#[cfg(feature = "failpoints")]
#[test]
fn under_systemd_a_stalled_main_loop_is_killed_by_the_watchdog() {
    let sb = Sandbox::start("watchdog");
    let root = node_tree(&sb, "node", &["apiserver"], "[]");
    let unit = agent_unit(
        &sb,
        &root,
        "Environment=KCA_FAILPOINTS=agent::stall-main-loop=stall",
    )
    .replace("WatchdogSec=30s", "WatchdogSec=2s")
    .replace("Restart=on-failure", "Restart=no");
    sb.install_unit("kube-cert-agent.service", &unit);
    sb.run(&["systemctl", "start", "kube-cert-agent.service"]);
    let result = wait_until(T, || {
        sb.show("kube-cert-agent.service", "Result") == "watchdog"
    });
    assert!(
        result.is_some(),
        "Result={} \n{}",
        sb.show("kube-cert-agent.service", "Result"),
        sb.try_run(&["journalctl", "-u", "kube-cert-agent", "--no-pager"])
    );
    let log = sb.try_run(&["journalctl", "-u", "kube-cert-agent", "--no-pager"]);
    assert!(log.contains("stalling the main loop"), "{log}");
}

/// With `nodeName: ""` the node name is the host name, read with uname(2): under the
/// shipped unit (ProcSubset=pid hides /proc/sys/kernel/hostname) a certificate created
/// under the kubeadm etcd profile is named after the node.
#[test]
fn under_the_shipped_unit_the_node_name_is_the_host_name() {
    let sb = Sandbox::start("nodename");
    let root = sb.exchange("nodename");
    let pki = root.join("etc/kubernetes/pki");
    for d in ["etc/kubernetes/pki", "etc/kube-cert-agent"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    openssl::ca(&pki, "ca", Key::P256, "etcd-ca", 3650);
    let p = "/etc/kubernetes/pki";
    std::fs::write(
        root.join("etc/kube-cert-agent/config.yaml"),
        format!(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: \"\"\n\
             kubeadm: {{nodeAddresses: [10.0.0.1]}}\ncertificates:\n- name: etcd-server\n  \
             ca: {{cert: {p}/ca.crt, key: {p}/ca.key}}\n  cert: {p}/server.crt\n  key: {p}/server.key\n  \
             usages: [serverAuth, clientAuth]\n  profile: kubeadm-etcd-server\n  keyType: ecdsa-p256\n"
        ),
    )
    .unwrap();
    sb.install_unit(
        "kube-cert-agent.service",
        &agent_unit(&sb, "/exchange/nodename", ""),
    );
    sb.run(&["systemctl", "start", "kube-cert-agent.service"]);
    let host = sb.run(&["uname", "-n"]).trim().to_lowercase();
    assert!(!host.is_empty());
    let crt = pki.join("server.crt");
    assert!(
        crt.exists(),
        "not issued: {}",
        sb.try_run(&["journalctl", "-u", "kube-cert-agent", "--no-pager"])
    );
    let v = openssl::view(&crt);
    assert_eq!(v.subject, format!("CN={host}"));
    assert!(v.sans.contains(&format!("DNS:{host}")), "{:?}", v.sans);
    sb.run(&["systemctl", "stop", "kube-cert-agent.service"]);
}
