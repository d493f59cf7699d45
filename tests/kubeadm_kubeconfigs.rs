//! The shipped config, unedited, on a control-plane node that has kubeadm's CAs and no
//! kubeconfigs: admin.conf, super-admin.conf, controller-manager.conf and scheduler.conf
//! are created as `kubeadm init phase kubeconfig` makes them (the cluster CA embedded,
//! kubeadm's server for each, a client certificate from the cluster CA), 0600, and a real
//! Go client (kubectl) reads them. On a worker none is created.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::openssl::{self, Key};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const KUBECONFIGS: [&str; 4] = [
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
];

fn kubectl(kubeconfig: &Path, jsonpath: &str) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["config", "view", "--raw", "--minify", "-o"])
        .arg(format!("jsonpath={jsonpath}"))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}

#[test]
fn missing_kubeconfigs_on_a_control_plane_node_are_created_as_kubeadm_makes_them() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    openssl::ca(&pki, "ca", Key::Rsa2048, "kubernetes", 3650);
    std::fs::write(
        node.path("/etc/kubernetes/kubeadm-config.yaml"),
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 192.168.5.5\n  bindPort: 6443\n---\n\
         apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: prod\ncontrolPlaneEndpoint: api.example\n",
    )
    .unwrap();
    let (code, text) = node.agent_shipped(&["check"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("missing: admin.conf is configured: a control-plane node: its CA key /etc/kubernetes/pki/ca.key is here; `kube-cert-agent rotate` creates it"),
        "{text}"
    );

    let mut args = vec!["rotate"];
    args.extend(KUBECONFIGS);
    let (code, text) = node.agent_shipped(&args);
    assert_eq!(code, 0, "{text}");
    // The next look (not forced) finds them valid: created once.
    let (_, again) = node.agent_shipped(&["rotate", "--dry-run"]);

    let want = [
        // (file, user = CN, organisation, server)
        (
            "admin.conf",
            "kubernetes-admin",
            Some("kubeadm:cluster-admins"),
            "https://api.example:6443",
        ),
        (
            "super-admin.conf",
            "kubernetes-super-admin",
            Some("system:masters"),
            "https://api.example:6443",
        ),
        (
            "controller-manager.conf",
            "system:kube-controller-manager",
            None,
            "https://192.168.5.5:6443",
        ),
        (
            "scheduler.conf",
            "system:kube-scheduler",
            None,
            "https://192.168.5.5:6443",
        ),
    ];
    for (file, user, org, server) in want {
        assert!(
            text.contains(&format!("{file}: rotated (forced)"))
                && text.contains("created: a control-plane node"),
            "{file}: {text}"
        );
        let path = node.path(&format!("/etc/kubernetes/{file}"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
        assert_eq!(
            kubectl(&path, "{.clusters[0].cluster.server}"),
            server,
            "{file}"
        );
        assert_eq!(kubectl(&path, "{.clusters[0].name}"), "prod");
        assert_eq!(kubectl(&path, "{.current-context}"), format!("{user}@prod"));
        assert_eq!(kubectl(&path, "{.users[0].name}"), user);
        let ca = b64_decode(&kubectl(
            &path,
            "{.clusters[0].cluster.certificate-authority-data}",
        ));
        assert_eq!(
            ca,
            std::fs::read(pki.join("ca.crt")).unwrap(),
            "{file}: the CA embedded"
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.crt");
        let key = dir.path().join("client.key");
        std::fs::write(
            &cert,
            b64_decode(&kubectl(&path, "{.users[0].user.client-certificate-data}")),
        )
        .unwrap();
        std::fs::write(
            &key,
            b64_decode(&kubectl(&path, "{.users[0].user.client-key-data}")),
        )
        .unwrap();
        let v = openssl::view(&cert);
        let subject = match org {
            Some(o) => format!("O={o}, CN={user}"),
            None => format!("CN={user}"),
        };
        assert_eq!(v.subject, subject, "{file}");
        let verify = openssl::openssl(
            &pki,
            &["verify", "-CAfile", "ca.crt", cert.to_str().unwrap()],
        );
        assert!(verify.trim().ends_with(": OK"), "{file}: {verify}");
        assert!(support::daemon::key_matches(&cert, &key), "{file}");
    }
    for file in KUBECONFIGS {
        assert!(again.contains(&format!("{file}: valid")), "{again}");
    }
}

#[test]
fn on_a_worker_no_kubeconfig_is_created() {
    let node = NodeTree::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let ca = openssl::ca(elsewhere.path(), "ca", Key::P256, "kubernetes", 3650);
    std::fs::copy(&ca.cert, node.path(&format!("{PKI}/ca.crt"))).unwrap();
    let mut args = vec!["rotate"];
    args.extend(KUBECONFIGS);
    let (code, text) = node.agent_shipped(&args);
    assert_eq!(code, 0, "{text}");
    for file in KUBECONFIGS {
        assert!(
            text.contains(&format!(
                "{file}: absent, not created: not a control-plane node"
            )),
            "{file}: {text}"
        );
        assert!(
            !node.path(&format!("/etc/kubernetes/{file}")).exists(),
            "{file}"
        );
    }
}
