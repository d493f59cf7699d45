//! Shared test support: fixtures made at test time with the real `openssl` CLI, and a
//! node tree under a temporary `--root`.
#![allow(dead_code)] // each test binary uses a different part

pub mod crd;
pub mod daemon;
pub mod metrics;
pub mod openssl;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A throwaway node tree (`--root`).
pub struct NodeTree {
    pub dir: tempfile::TempDir,
}

impl NodeTree {
    pub fn new() -> NodeTree {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in [
            "etc/kubernetes/pki/etcd",
            "var/lib/kubelet/pki",
            "etc/kube-cert-agent",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        NodeTree { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of a node path.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.dir.path().join(node_path.trim_start_matches('/'))
    }

    /// Run the agent with `--root` set to this tree.
    pub fn agent(&self, args: &[&str]) -> Output {
        let mut cmd = agent_cmd();
        cmd.arg("--root").arg(self.root()).args(args);
        cmd.output().expect("run kube-cert-agent")
    }

    /// Run the agent with the shipped, unedited config (etc/kube-cert-agent/config.yaml):
    /// its exit code and everything it printed.
    pub fn agent_shipped(&self, args: &[&str]) -> (i32, String) {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/kube-cert-agent/config.yaml");
        let mut a = vec!["--config", config.to_str().unwrap()];
        a.extend_from_slice(args);
        let out = self.agent(&a);
        (out.status.code().expect("exited"), text(&out))
    }

    /// A worker named node-1 that bootstraps from `api`'s bootstrap token: the bootstrap
    /// kubeconfig, and a config for node-1 with `rest` (YAML) after its header.
    pub fn worker(api: &kube_standin_apiserver::StandIn, rest: &str) -> NodeTree {
        let node = NodeTree::new();
        api.write_bootstrap_kubeconfig(&node.path("/var/lib/kubelet/bootstrap-kubeconfig"))
            .unwrap();
        node.write_worker_config(rest);
        node
    }

    /// The config of the worker named node-1: the header, then `rest` (YAML).
    pub fn write_worker_config(&self, rest: &str) {
        std::fs::write(
            self.path("/etc/kube-cert-agent/config.yaml"),
            format!(
                "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nnodeName: node-1\n{rest}"
            ),
        )
        .unwrap();
    }

    /// A worker named node-1 that bootstraps its kubelet client certificate (serving off)
    /// from `api`'s bootstrap token, waiting at most `csr_timeout` for a CSR.
    pub fn kubelet_client_node(
        api: &kube_standin_apiserver::StandIn,
        csr_timeout: &str,
    ) -> NodeTree {
        NodeTree::worker(
            api,
            &format!("kubelet:\n  serving: {{enabled: false}}\n  csrTimeout: {csr_timeout}\n"),
        )
    }

    /// Replace the kubelet client certificate (the file behind
    /// `kubelet-client-current.pem`) with one from `api`'s CA for node-1 that expired in 2020.
    pub fn expire_kubelet_client(&self, api: &kube_standin_apiserver::StandIn) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), api.ca_pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), api.ca_key_pem()).unwrap();
        let ca = openssl::Pair {
            cert: dir.path().join("ca.crt"),
            key: dir.path().join("ca.key"),
        };
        let old = openssl::leaf(
            dir.path(),
            "old",
            &ca,
            &openssl::Leaf {
                subject: "/O=system:nodes/CN=system:node:node-1",
                eku: "clientAuth",
                dates: Some(("20200101000000Z", "20200105000000Z")),
                ..Default::default()
            },
        );
        let mut pem = std::fs::read(&old.cert).unwrap();
        pem.extend(std::fs::read(&old.key).unwrap());
        std::fs::write(
            self.resolved("/var/lib/kubelet/pki/kubelet-client-current.pem"),
            pem,
        )
        .unwrap();
    }

    /// The host path behind a kubelet-style `-current` link: its target is a node path
    /// (absolute, as kubelet writes it), which only resolves under this tree.
    pub fn resolved(&self, node_path: &str) -> PathBuf {
        let target = std::fs::read_link(self.path(node_path)).expect("a -current link");
        assert!(
            target.is_absolute(),
            "kubelet writes absolute links: {target:?}"
        );
        self.path(target.to_str().unwrap())
    }

    /// `check --output json`, parsed; also returns the exit code.
    pub fn check_json(&self, extra: &[&str]) -> (i32, Vec<serde_json::Value>) {
        let mut args = vec!["check", "--output", "json"];
        args.extend_from_slice(extra);
        let out = self.agent(&args);
        let code = out.status.code().expect("exited, not killed by a signal");
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "check printed no JSON ({e}); stdout: {} stderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        (code, rows)
    }
}

/// What a command printed, stdout then stderr (for assertion messages and matching).
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn agent_cmd() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_kube-cert-agent"))
}

/// The row for `node_path` (and `location`, if given).
pub fn row<'a>(
    rows: &'a [serde_json::Value],
    node_path: &str,
    location: Option<&str>,
) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["path"] == node_path && r["location"].as_str() == location)
        .unwrap_or_else(|| panic!("no row for {node_path} {location:?} in {rows:#?}"))
}
