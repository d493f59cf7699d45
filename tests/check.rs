//! `kube-cert-agent check` against trees made with the real openssl CLI.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};

use support::openssl::{self, b64, Key, Leaf};
use support::{row, NodeTree};

const PKI: &str = "/etc/kubernetes/pki";

/// A kubeadm-like tree: CA, leaves of every key type, expired and not-yet-valid leaves, a
/// kubelet cert+key bundle behind an absolute `-current` symlink, and a kubeconfig with
/// embedded data.
fn kubeadm_like_tree() -> (NodeTree, Vec<(String, std::path::PathBuf)>) {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::Rsa2048, "kubernetes", 3650);
    let mut files = vec![(format!("{PKI}/ca.crt"), ca.cert.clone())];
    let leaves = [
        (
            "apiserver",
            Key::P384,
            "/CN=kube-apiserver",
            "DNS:kubernetes,DNS:kubernetes.default.svc,IP:10.96.0.1,IP:fd00::1",
        ),
        (
            "apiserver-kubelet-client",
            Key::Rsa2048,
            "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client",
            "",
        ),
        (
            "front-proxy-client",
            Key::Rsa4096,
            "/CN=front-proxy-client",
            "",
        ),
        (
            "etcd-healthcheck",
            Key::P256,
            "/O=system:masters/CN=kube-etcd-healthcheck-client",
            "",
        ),
        ("ed", Key::Ed25519, "/CN=ed25519-leaf", "DNS:ed.example"),
    ];
    for (name, key, subject, sans) in leaves {
        let p = openssl::leaf(
            &pki,
            name,
            &ca,
            &Leaf {
                subject,
                sans,
                key,
                ..Leaf::default()
            },
        );
        files.push((format!("{PKI}/{name}.crt"), p.cert));
    }
    let expired = openssl::leaf(
        &pki,
        "expired",
        &ca,
        &Leaf {
            subject: "/CN=expired",
            dates: Some(("20200101000000Z", "20200105000000Z")),
            ..Leaf::default()
        },
    );
    files.push((format!("{PKI}/expired.crt"), expired.cert));
    let future = openssl::leaf(
        &pki,
        "future",
        &ca,
        &Leaf {
            subject: "/CN=future",
            dates: Some(("20400101000000Z", "20400105000000Z")),
            ..Leaf::default()
        },
    );
    files.push((format!("{PKI}/future.crt"), future.cert));

    // kubelet: cert + key in one PEM, and an absolute symlink as kubelet writes it.
    let work = tempfile::tempdir().unwrap();
    let kc = openssl::leaf(
        work.path(),
        "kubelet-client",
        &ca,
        &Leaf {
            subject: "/O=system:nodes/CN=system:node:n1",
            eku: "clientAuth",
            ..Leaf::default()
        },
    );
    let bundle = node.path("/var/lib/kubelet/pki/kubelet-client-2026-11-22-03-00-00.pem");
    let mut pem = std::fs::read(&kc.cert).unwrap();
    pem.extend(std::fs::read(&kc.key).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    symlink(
        "/var/lib/kubelet/pki/kubelet-client-2026-11-22-03-00-00.pem",
        node.path("/var/lib/kubelet/pki/kubelet-client-current.pem"),
    )
    .unwrap();
    files.push((
        "/var/lib/kubelet/pki/kubelet-client-current.pem".into(),
        bundle.clone(),
    ));

    // admin.conf with embedded data.
    let admin = openssl::leaf(
        work.path(),
        "admin",
        &ca,
        &Leaf {
            subject: "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
            eku: "clientAuth",
            ..Leaf::default()
        },
    );
    std::fs::write(
        node.path("/etc/kubernetes/admin.conf"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: {}\n\
             users:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
             contexts:\n- name: admin\n  context: {{cluster: kubernetes, user: kubernetes-admin}}\ncurrent-context: admin\n",
            b64(&ca.cert),
            b64(&admin.cert),
            b64(&admin.key)
        ),
    )
    .unwrap();
    // Keep the admin cert outside the tree for the openssl comparison.
    let kept = node.root().join("admin-for-openssl.pem");
    std::fs::copy(&admin.cert, &kept).unwrap();
    files.push((
        "/etc/kubernetes/admin.conf#users[kubernetes-admin].client-certificate-data".into(),
        kept,
    ));
    (node, files)
}

#[test]
fn every_field_matches_openssl() {
    let (node, files) = kubeadm_like_tree();
    let (code, rows) = node.check_json(&[]);
    assert_eq!(
        code, 2,
        "an expired and a not-yet-valid certificate give exit 2"
    );
    for (node_path, host_cert) in &files {
        let (path, location) = match node_path.split_once('#') {
            Some((p, l)) => (p, Some(l)),
            None => (node_path.as_str(), None),
        };
        let r = row(&rows, path, location);
        let o = openssl::view(host_cert);
        assert_eq!(r["serial"], o.serial, "serial of {node_path}");
        assert_eq!(r["subject"], o.subject, "subject of {node_path}");
        assert_eq!(r["notAfter"], o.not_after, "notAfter of {node_path}");
        let mut sans: Vec<String> = r["dnsNames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("DNS:{}", d.as_str().unwrap()))
            .chain(
                r["ipAddresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| format!("IP:{}", i.as_str().unwrap())),
            )
            .collect();
        sans.sort();
        // openssl prints IPv6 in upper-case, uncompressed form; compare parsed addresses.
        let norm = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| match s.strip_prefix("IP:") {
                    Some(ip) => format!("IP:{}", ip.parse::<std::net::IpAddr>().unwrap()),
                    None => s.clone(),
                })
                .collect()
        };
        let mut want = norm(&o.sans);
        want.sort();
        assert_eq!(norm(&sans), want, "SANs of {node_path}");
    }
    let status = |p: &str| row(&rows, p, None)["status"].as_str().unwrap().to_string();
    assert_eq!(status(&format!("{PKI}/expired.crt")), "expired");
    assert_eq!(status(&format!("{PKI}/future.crt")), "notYetValid");
    assert_eq!(status(&format!("{PKI}/apiserver.crt")), "ok");
    assert_eq!(status(&format!("{PKI}/ca.crt")), "ok");
    let ca = row(&rows, &format!("{PKI}/ca.crt"), None);
    assert_eq!(ca["isCA"], true);
    assert_eq!(ca["keyType"], "RSA 2048");
    for (name, key_type) in [
        ("apiserver", "ECDSA P-384"),
        ("front-proxy-client", "RSA 4096"),
        ("etcd-healthcheck", "ECDSA P-256"),
        ("ed", "Ed25519"),
    ] {
        let r = row(&rows, &format!("{PKI}/{name}.crt"), None);
        assert_eq!(r["keyType"], key_type, "{name}");
        assert_eq!(r["keyMatches"], true, "{name}");
        assert_eq!(r["isCA"], false, "{name}");
        assert_eq!(r["chainsTo"], format!("{PKI}/ca.crt"), "{name}");
    }
    let kubelet = row(
        &rows,
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
        None,
    );
    assert_eq!(kubelet["keyMatches"], true, "key in the same PEM");
    assert_eq!(kubelet["extKeyUsages"], serde_json::json!(["clientAuth"]));
    // History behind the -current link is not listed twice.
    assert!(!rows
        .iter()
        .any(|r| r["path"].as_str().unwrap().contains("2026-11-22-03-00-00")));
    let admin = row(
        &rows,
        "/etc/kubernetes/admin.conf",
        Some("users[kubernetes-admin].client-certificate-data"),
    );
    assert_eq!(admin["keyMatches"], true);
    let embedded_ca = row(
        &rows,
        "/etc/kubernetes/admin.conf",
        Some("clusters[kubernetes].certificate-authority-data"),
    );
    assert_eq!(embedded_ca["serial"], ca["serial"]);
    // serial: lower-case hex, residualSeconds consistent with notAfter.
    for r in rows.iter().filter(|r| r["serial"].is_string()) {
        let s = r["serial"].as_str().unwrap();
        assert!(
            s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{s}"
        );
    }
    assert!(
        row(&rows, &format!("{PKI}/expired.crt"), None)["residualSeconds"]
            .as_i64()
            .unwrap()
            < 0
    );
}

#[test]
fn table_lists_leaves_and_cas_like_kubeadm() {
    let (node, _) = kubeadm_like_tree();
    let out = node.agent(&["check"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    for col in [
        "CERTIFICATE",
        "EXPIRES",
        "RESIDUAL TIME",
        "CERTIFICATE AUTHORITY",
        "STATUS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let ca_section = text.split("\n\n").nth(1).expect("a CA section");
    assert!(ca_section.starts_with("CERTIFICATE AUTHORITY"), "{text}");
    assert!(ca_section.contains("/etc/kubernetes/pki/ca.crt"), "{text}");
    let expired_line = text.lines().find(|l| l.contains("expired.crt")).unwrap();
    assert!(
        expired_line.contains("<expired>") && expired_line.ends_with("expired"),
        "{expired_line}"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn warn_window_gives_exit_1() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            days: 4,
            ..Leaf::default()
        },
    );
    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 0, "{rows:#?}");
    let (code, rows) = node.check_json(&["--warn-within", "5d"]);
    assert_eq!(code, 1);
    assert_eq!(
        row(&rows, &format!("{PKI}/apiserver.crt"), None)["status"],
        "warning"
    );
    assert_eq!(row(&rows, &format!("{PKI}/ca.crt"), None)["status"], "ok");
    // A CA that expires within a year warns by default: CAs are never rotated automatically.
    let short_ca = tempfile::tempdir().unwrap();
    openssl::ca(short_ca.path(), "short", Key::P256, "short-lived-ca", 200);
    let out = node.agent(&[
        "check",
        "--output",
        "json",
        short_ca.path().join("short.crt").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = node.agent(&["check", "--warn-within", "soon"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--warn-within"));
}

/// Every bad input is reported as `invalid` with a reason, and the good certificate next to
/// them is still reported.
#[test]
fn bad_input_is_reported_not_fatal() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let good = openssl::leaf(&pki, "good", &ca, &Leaf::default());
    let good_pem = std::fs::read_to_string(&good.cert).unwrap();

    let junk: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(pki.join("random.crt"), junk).unwrap();
    std::fs::write(pki.join("truncated.crt"), &good_pem[..good_pem.len() / 2]).unwrap();
    let mut lines: Vec<&str> = good_pem.lines().collect();
    lines[3] = "!!!! this is not base64 ****";
    std::fs::write(pki.join("badbase64.crt"), lines.join("\n")).unwrap();
    std::fs::write(pki.join("empty.crt"), "").unwrap();
    // A certificate with someone else's key.
    let other = openssl::leaf(
        &tempfile::tempdir().unwrap().keep(),
        "other",
        &ca,
        &Leaf::default(),
    );
    std::fs::copy(&good.cert, pki.join("mismatch.crt")).unwrap();
    std::fs::copy(&other.key, pki.join("mismatch.key")).unwrap();
    openssl::genkey(&pki.join("orphan.key"), Key::P256);
    symlink("loop2.crt", pki.join("loop1.crt")).unwrap();
    symlink("loop1.crt", pki.join("loop2.crt")).unwrap();
    symlink("/etc/kubernetes/pki/gone.crt", pki.join("dangling.crt")).unwrap();
    let huge = std::fs::File::create(pki.join("huge.crt")).unwrap();
    huge.set_len(50 << 20).unwrap();
    std::fs::write(
        node.path("/etc/kubernetes/notyaml.conf"),
        "clusters: [[[ {{{ : :\n\t- ]",
    )
    .unwrap();
    std::fs::write(
        node.path("/etc/kubernetes/badb64.conf"),
        "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    client-certificate-data: '%%%not-base64%%%'\n",
    )
    .unwrap();

    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 2);
    let expect = [
        ("random.crt", None, "neither PEM nor"),
        ("truncated.crt", None, "truncated"),
        ("badbase64.crt", None, "malformed PEM"),
        ("empty.crt", None, "empty file"),
        ("mismatch.crt", None, "does not match"),
        ("orphan.key", None, "private key with no certificate"),
        ("loop1.crt", None, "symlink loop"),
        (
            "dangling.crt",
            None,
            "dangling symlink to /etc/kubernetes/pki/gone.crt",
        ),
        ("huge.crt", None, "file too large"),
    ];
    for (file, location, reason) in expect {
        let r = row(&rows, &format!("{PKI}/{file}"), location);
        assert_eq!(r["status"], "invalid", "{file}: {r}");
        let err = r["error"].as_str().unwrap();
        assert!(err.contains(reason), "{file}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    assert_eq!(
        row(&rows, &format!("{PKI}/mismatch.crt"), None)["keyMatches"],
        false
    );
    let r = row(&rows, "/etc/kubernetes/notyaml.conf", None);
    assert!(
        r["error"].as_str().unwrap().starts_with("not a kubeconfig"),
        "{r}"
    );
    let r = row(
        &rows,
        "/etc/kubernetes/badb64.conf",
        Some("users[u].client-certificate-data"),
    );
    assert!(
        r["error"].as_str().unwrap().contains("not valid base64"),
        "{r}"
    );
    // The good certificate is still there and fine.
    assert_eq!(row(&rows, &format!("{PKI}/good.crt"), None)["status"], "ok");
    assert_eq!(
        row(&rows, &format!("{PKI}/good.crt"), None)["keyMatches"],
        true
    );

    // The table names the path and the reason on one line.
    let out = node.agent(&["check"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("/etc/kubernetes/pki/empty.crt: empty file"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Mode 000 only stops a non-root reader (root bypasses file permissions), so this runs
/// the agent as `nobody` (uid 65534) with setpriv.
#[test]
fn unreadable_file_is_reported_for_a_non_root_reader() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let secret = openssl::leaf(&pki, "secret", &ca, &Leaf::default());
    std::fs::remove_file(&secret.key).unwrap();
    for dir in [
        node.root().to_path_buf(),
        node.path("/etc"),
        node.path("/etc/kubernetes"),
        pki.clone(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&ca.cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&ca.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&secret.cert, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_kube-cert-agent"),
        ])
        .arg("--root")
        .arg(node.root())
        .args(["check", "--output", "json"])
        .output()
        .expect("setpriv runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let r = row(&rows, &format!("{PKI}/secret.crt"), None);
    assert_eq!(r["error"], "permission denied");
    assert_eq!(row(&rows, &format!("{PKI}/ca.crt"), None)["status"], "ok");
}

#[test]
fn kubeconfig_file_references_resolve_under_root() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let client = openssl::leaf(
        &pki,
        "kubelet-client",
        &ca,
        &Leaf {
            eku: "clientAuth",
            ..Leaf::default()
        },
    );
    let _ = client;
    std::fs::write(
        node.path("/etc/kubernetes/kubelet.conf"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster: {server: 'https://127.0.0.1:6443', certificate-authority: pki/ca.crt}\n\
         users:\n- name: default-auth\n  user: {client-certificate: /etc/kubernetes/pki/kubelet-client.crt, client-key: /etc/kubernetes/pki/kubelet-client.key}\n",
    )
    .unwrap();
    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 0, "{rows:#?}");
    let r = row(
        &rows,
        "/etc/kubernetes/kubelet.conf",
        Some("users[default-auth].client-certificate"),
    );
    assert_eq!(r["keyMatches"], true);
    let r = row(
        &rows,
        "/etc/kubernetes/kubelet.conf",
        Some("clusters[k].certificate-authority"),
    );
    assert_eq!(r["isCA"], true);
}

#[test]
fn remote_reports_the_served_certificate() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let srv = openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            sans: "IP:127.0.0.1",
            ..Leaf::default()
        },
    );
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-naccept",
            "1",
            "-cert",
        ])
        .arg(&srv.cert)
        .arg("-key")
        .arg(&srv.key)
        // s_server drops its connection when stdin reaches EOF: keep stdin open.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // s_server prints "ACCEPT 127.0.0.1:PORT" once it listens.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "s_server exited"
        );
        if let Some(a) = line.trim().strip_prefix("ACCEPT ") {
            break a.to_string();
        }
    };
    let (code, rows) = node.check_json(&["--remote", &addr, srv.cert.to_str().unwrap()]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 0, "{rows:#?}");
    let remote = row(&rows, &format!("remote:{addr}"), None);
    assert_eq!(remote["serial"], openssl::view(&srv.cert).serial);
    assert_eq!(remote["status"], "ok");
    assert_eq!(
        remote["chainsTo"],
        serde_json::Value::Null,
        "no CA was given on the command line"
    );
}

#[test]
fn config_errors_name_the_file_and_line_and_exit_3() {
    let node = NodeTree::new();
    let cfg = node.path("/etc/kube-cert-agent/config.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nrenewal:\n  renewAt: 80%\n  jiter: 10%\n",
    )
    .unwrap();
    let out = node.agent(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(cfg.to_str().unwrap()) && err.contains("jiter") && err.contains("line 5"),
        "{err}"
    );
    // An explicit --config that does not exist is an error too; the default path may be absent.
    let out = node.agent(&["--config", "/nonexistent/config.yaml", "check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.yaml: no such file"));
    std::fs::remove_file(&cfg).unwrap();
    assert_eq!(node.agent(&["check"]).status.code(), Some(0));
    // Usage errors are exit 3, not clap's 2 (which means "expired" here).
    assert_eq!(
        node.agent(&["check", "--no-such-flag"]).status.code(),
        Some(3)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = support::agent_cmd().arg("version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("kube-cert-agent {}", env!("CARGO_PKG_VERSION"))
    );
}
