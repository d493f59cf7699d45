//! A kubeadm node tree for CA rotation tests, made with the real openssl: the three CAs,
//! their leaves, kubeconfigs with embedded CA data and client certificates, and the
//! kubelet's kubeconfig and client certificate; plus checks with openssl and kubectl.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::openssl::{self, Key, Leaf, Pair};
use crate::support::NodeTree;

pub const PKI: &str = "/etc/kubernetes/pki";

/// One CA of the kubeadm set: its config name, CA file stem (under pki) and leaves (node
/// paths of certificates it issued).
pub struct CaSet {
    pub name: &'static str,
    pub cert: &'static str,
    pub leaves: &'static [&'static str],
}

pub const CAS: &[CaSet] = &[
    CaSet {
        name: "cluster",
        cert: "/etc/kubernetes/pki/ca.crt",
        leaves: &[
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        ],
    },
    CaSet {
        name: "etcd",
        cert: "/etc/kubernetes/pki/etcd/ca.crt",
        leaves: &[
            "/etc/kubernetes/pki/etcd/server.crt",
            "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        ],
    },
    CaSet {
        name: "front-proxy",
        cert: "/etc/kubernetes/pki/front-proxy-ca.crt",
        leaves: &["/etc/kubernetes/pki/front-proxy-client.crt"],
    },
];

/// Kubeconfigs the config manages (client certificate from the cluster CA).
pub const KUBECONFIGS: &[&str] = &[
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/scheduler.conf",
];
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const KUBELET_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

pub struct Kubeadm {
    pub node: NodeTree,
    /// The file every dependent's restart appends one line to.
    pub restarts: PathBuf,
}

fn leaf(dir: &Path, name: &str, ca: &Pair, subject: &str, sans: &str, eku: &str) -> Pair {
    openssl::leaf(
        dir,
        name,
        ca,
        &Leaf {
            subject,
            sans,
            eku,
            key: Key::P256,
            days: 30,
            ..Leaf::default()
        },
    )
}

/// A kubeconfig with the CA embedded and a client certificate (embedded, or a file).
pub fn kubeconfig(server: &str, ca: &Path, cert: &Path, key: Option<&Path>) -> String {
    let user = match key {
        Some(k) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            openssl::b64(cert),
            openssl::b64(k)
        ),
        None => format!("    client-certificate: {KUBELET_PEM}\n    client-key: {KUBELET_PEM}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: ctx\n  context: {{cluster: kubernetes, user: u}}\ncurrent-context: ctx\nusers:\n- name: u\n  user:\n{user}",
        openssl::b64(ca)
    )
}

impl Kubeadm {
    /// `server`: the URL the kubeconfigs point at. `extra`: more config YAML.
    pub fn new(server: &str, extra: &str) -> Kubeadm {
        let node = NodeTree::new();
        let pki = node.path(PKI);
        let etcd = pki.join("etcd");
        let ca = openssl::ca(&pki, "ca", Key::Rsa2048, "kubernetes", 3650);
        let etcd_ca = openssl::ca(&etcd, "ca", Key::Rsa2048, "etcd-ca", 3650);
        let fp_ca = openssl::ca(&pki, "front-proxy-ca", Key::Rsa2048, "front-proxy-ca", 3650);
        leaf(
            &pki,
            "apiserver",
            &ca,
            "/CN=kube-apiserver",
            "DNS:localhost,IP:127.0.0.1",
            "serverAuth",
        );
        leaf(
            &pki,
            "apiserver-kubelet-client",
            &ca,
            "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client",
            "",
            "clientAuth",
        );
        leaf(
            &etcd,
            "server",
            &etcd_ca,
            "/CN=node-1",
            "DNS:localhost,IP:127.0.0.1",
            "serverAuth,clientAuth",
        );
        leaf(
            &pki,
            "apiserver-etcd-client",
            &etcd_ca,
            "/CN=kube-apiserver-etcd-client",
            "",
            "clientAuth",
        );
        leaf(
            &pki,
            "front-proxy-client",
            &fp_ca,
            "/CN=front-proxy-client",
            "",
            "clientAuth",
        );
        let work = tempfile::tempdir().unwrap();
        for (path, cn) in [
            (
                KUBECONFIGS[0],
                "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
            ),
            (KUBECONFIGS[1], "/CN=system:kube-scheduler"),
        ] {
            let p = leaf(work.path(), "client", &ca, cn, "", "clientAuth");
            let text = kubeconfig(server, &ca.cert, &p.cert, Some(&p.key));
            std::fs::write(node.path(path), text).unwrap();
        }
        // The kubelet's client certificate, as kubelet keeps it: cert + key in one PEM.
        let k = leaf(
            work.path(),
            "kubelet",
            &ca,
            "/O=system:nodes/CN=system:node:node-1",
            "",
            "clientAuth",
        );
        let mut pem = std::fs::read(&k.cert).unwrap();
        pem.extend(std::fs::read(&k.key).unwrap());
        std::fs::write(node.path(KUBELET_PEM), pem).unwrap();
        std::fs::write(
            node.path(KUBELET_CONF),
            kubeconfig(server, &ca.cert, &k.cert, None),
        )
        .unwrap();

        let restarts = node.root().join("restarts.log");
        let action = |what: &str| {
            format!(
                "[{{command: {{argv: [/bin/sh, -c, 'echo {what} >> {}']}}}}]",
                restarts.display()
            )
        };
        let cert = |name: &str, ca: &str, file: &str, on: &str| {
            format!(
                "- name: {name}\n  ca: {{cert: {ca}.crt, key: {ca}.key}}\n  cert: {PKI}/{file}.crt\n  key: {PKI}/{file}.key\n  validity: 720h\n  onRotate: {on}\n"
            )
        };
        let c = format!("{PKI}/ca");
        let e = format!("{PKI}/etcd/ca");
        let f = format!("{PKI}/front-proxy-ca");
        let mut body = String::from("cas:\n");
        for (name, stem) in [("cluster", &c), ("etcd", &e), ("front-proxy", &f)] {
            body.push_str(&format!(
                "- {{name: {name}, cert: {stem}.crt, key: {stem}.key, onRotate: {}}}\n",
                action(&format!("ca-{name}"))
            ));
        }
        body.push_str("certificates:\n");
        body.push_str(&cert(
            "apiserver",
            &c,
            "apiserver",
            &action("kube-apiserver"),
        ));
        body.push_str(&cert(
            "apiserver-kubelet-client",
            &c,
            "apiserver-kubelet-client",
            &action("kube-apiserver"),
        ));
        body.push_str(&cert("etcd-server", &e, "etcd/server", &action("etcd")));
        body.push_str(&cert(
            "apiserver-etcd-client",
            &e,
            "apiserver-etcd-client",
            &action("kube-apiserver"),
        ));
        body.push_str(&cert(
            "front-proxy-client",
            &f,
            "front-proxy-client",
            &action("kube-apiserver"),
        ));
        body.push_str("kubeconfigs:\n");
        for (name, path) in [
            ("admin.conf", KUBECONFIGS[0]),
            ("scheduler.conf", KUBECONFIGS[1]),
        ] {
            body.push_str(&format!(
                "- name: {name}\n  path: {path}\n  ca: {{cert: {c}.crt, key: {c}.key}}\n  validity: 720h\n  onRotate: {}\n",
                action(name)
            ));
        }
        body.push_str(extra);
        std::fs::write(
            node.path("/etc/kube-cert-agent/config.yaml"),
            format!("apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\n{body}"),
        )
        .unwrap();
        Kubeadm { node, restarts }
    }

    /// A copy of this node tree (symlinks kept), to crash one copy per point.
    pub fn fork(&self) -> Kubeadm {
        let node = NodeTree::new();
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", self.node.root().display()))
            .arg(node.root())
            .status()
            .unwrap();
        assert!(st.success());
        Kubeadm {
            node,
            restarts: self.restarts.clone(),
        }
    }

    pub fn restart_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.restarts)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `rotate-ca NAME --phase PHASE [extra]`: (exit code, stdout + stderr).
    pub fn phase(&self, ca: &str, phase: &str, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["rotate-ca", ca, "--phase", phase];
        args.extend_from_slice(extra);
        let out = self.node.agent(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().expect("exited"), text)
    }

    /// The CA bundle a kubeconfig embeds, as kubectl reads it, written to a file.
    pub fn kubectl_ca(&self, kubeconfig: &str, out: &Path) -> PathBuf {
        let data = kubectl(&[
            "--kubeconfig",
            self.node.path(kubeconfig).to_str().unwrap(),
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ]);
        let file = out.join(format!(
            "{}.ca.pem",
            Path::new(kubeconfig).file_name().unwrap().to_string_lossy()
        ));
        use base64::Engine;
        std::fs::write(
            &file,
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .unwrap(),
        )
        .unwrap();
        file
    }

    /// The client certificate of a kubeconfig with embedded data, as kubectl reads it.
    pub fn kubectl_client_cert(&self, kubeconfig: &str, out: &Path) -> PathBuf {
        let data = kubectl(&[
            "--kubeconfig",
            self.node.path(kubeconfig).to_str().unwrap(),
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.users[0].user.client-certificate-data}",
        ]);
        let file = out.join(format!(
            "{}.client.pem",
            Path::new(kubeconfig).file_name().unwrap().to_string_lossy()
        ));
        use base64::Engine;
        std::fs::write(
            &file,
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .unwrap(),
        )
        .unwrap();
        file
    }
}

pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `openssl verify -CAfile trust cert` (the whole bundle as trust anchors): true if OK.
pub fn verifies(trust: &Path, cert: &Path) -> bool {
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(trust)
        .arg(cert)
        .output()
        .expect("openssl runs");
    out.status.success()
}

/// The certificates (subject + serial lines) a PEM bundle holds, via openssl.
pub fn bundle_serials(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for block in text.split_inclusive("-----END CERTIFICATE-----\n") {
        if !block.contains("BEGIN CERTIFICATE") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.pem");
        std::fs::write(&f, block).unwrap();
        out.push(openssl::view(&f).serial);
    }
    out
}

/// What kubelet gets through a CSR once the controller manager signs with the new cluster
/// CA: a client certificate from the staged new CA, installed as kubelet does.
pub fn kubelet_from_new_ca(k: &Kubeadm) {
    let dir = tempfile::tempdir().unwrap();
    let staging = "/var/lib/kube-cert-agent/ca-rotation/cluster";
    let signer = Pair {
        cert: k.node.path(&format!("{staging}/new-ca.crt")),
        key: k.node.path(&format!("{staging}/new-ca.key")),
    };
    let l = leaf(
        dir.path(),
        "kubelet",
        &signer,
        "/O=system:nodes/CN=system:node:node-1",
        "",
        "clientAuth",
    );
    let mut pem = std::fs::read(&l.cert).unwrap();
    pem.extend(std::fs::read(&l.key).unwrap());
    std::fs::write(k.node.path(KUBELET_PEM), pem).unwrap();
}

/// The node still works: every leaf of the cluster CA (control-plane certificates, the
/// kubeconfigs' client certificates as kubectl reads them, the kubelet's) verifies against
/// every trust point (ca.crt, each kubeconfig's CA data as kubectl reads it), and the
/// signing certificate (first in ca.crt) belongs to ca.key.
pub fn assert_cluster_ca_works(k: &Kubeadm, when: &str) {
    let work = tempfile::tempdir().unwrap();
    let out = work.path();
    let ca = &CAS[0];
    let mut trust = vec![k.node.path(ca.cert)];
    let mut leaves: Vec<PathBuf> = ca.leaves.iter().map(|l| k.node.path(l)).collect();
    for kc in KUBECONFIGS {
        trust.push(k.kubectl_ca(kc, out));
        leaves.push(k.kubectl_client_cert(kc, out));
    }
    trust.push(k.kubectl_ca(KUBELET_CONF, out));
    leaves.push(k.node.path(KUBELET_PEM));
    // Kubeconfigs mostly hold the same bundle: verify against each distinct one.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    trust.retain(|t| {
        let b = std::fs::read(t).unwrap();
        let fresh = !seen.contains(&b);
        seen.push(b);
        fresh
    });
    for t in &trust {
        for l in &leaves {
            assert!(
                verifies(t, l),
                "{when}: {} does not verify against {}",
                l.display(),
                t.display()
            );
        }
    }
    let pki = k.node.path(PKI);
    let signer_pub = openssl::openssl(&pki, &["x509", "-in", "ca.crt", "-noout", "-pubkey"]);
    let key_pub = openssl::openssl(&pki, &["pkey", "-in", "ca.key", "-pubout"]);
    assert_eq!(
        signer_pub, key_pub,
        "{when}: ca.key does not belong to the first certificate of ca.crt"
    );
}
