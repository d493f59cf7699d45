//! RenewRevocation and `repair`, on trees made with openssl; CRLs checked with
//! `openssl verify -crl_check`.

mod support;

use support::openssl::{self, Key, Leaf};
use support::{text, NodeTree};

const PKI: &str = "/etc/kubernetes/pki";

fn config(node: &NodeTree, body: &str) {
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        format!("apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\n{body}"),
    )
    .unwrap();
}

fn revocations(node: &NodeTree, file: &str, entries: &str) {
    let dir = node.path("/etc/kube-cert-agent/revocations.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(file),
        format!(
            "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {{name: {}, namespace: kube-system}}\n\
             spec:\n  description: test\n  revocations:\n{entries}",
            file.trim_end_matches(".yaml")
        ),
    )
    .unwrap();
}

const CERTS: &str = "certificates:
- name: apiserver
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver.crt
  key: /etc/kubernetes/pki/apiserver.key
- name: apiserver-kubelet-client
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver-kubelet-client.crt
  key: /etc/kubernetes/pki/apiserver-kubelet-client.key
";

/// `openssl ca` dates: issued a day ago, valid for three more days. (Certificates made in
/// the same second as a revocation's notBefore are not "issued before" it.)
fn issued_yesterday() -> Option<(&'static str, &'static str)> {
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    let now = time::OffsetDateTime::now_utc();
    let start = (now - time::Duration::days(1)).format(fmt).unwrap();
    let end = (now + time::Duration::days(3)).format(fmt).unwrap();
    Some((
        Box::leak(start.into_boxed_str()),
        Box::leak(end.into_boxed_str()),
    ))
}

fn tree() -> (NodeTree, openssl::Pair) {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let dates = issued_yesterday();
    openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            sans: "DNS:kubernetes.default.svc,IP:10.96.0.1",
            dates,
            ..Leaf::default()
        },
    );
    openssl::leaf(
        &pki,
        "apiserver-kubelet-client",
        &ca,
        &Leaf {
            subject: "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client",
            eku: "clientAuth",
            dates,
            ..Leaf::default()
        },
    );
    config(&node, CERTS);
    (node, ca)
}

#[test]
fn a_revoked_certificate_is_renewed_and_the_crl_rejects_the_old_one() {
    let (node, _ca) = tree();
    let pki = node.path(PKI);
    let old = node.root().join("old-apiserver.crt");
    std::fs::copy(pki.join("apiserver.crt"), &old).unwrap();
    let serial = openssl::view(&old).serial;
    // Upper case with colons: as an operator might paste it from openssl's -text output.
    let pasted: Vec<String> = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    revocations(
        &node,
        "by-serial.yaml",
        &format!(
            "  - {{kind: serialnumber, serialNumber: \"{}\"}}\n",
            pasted.join(":")
        ),
    );

    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 2);
    let r = support::row(&rows, "/etc/kubernetes/pki/apiserver.crt", None);
    assert_eq!(r["status"], "invalid");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("revoked by by-serial/0"),
        "{r}"
    );

    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("apiserver: rotated (revoked by by-serial/0"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("apiserver-kubelet-client: rotated"),
        "only the revoked one: {}",
        text(&out)
    );
    let new_serial = openssl::view(&pki.join("apiserver.crt")).serial;
    assert_ne!(new_serial, serial);

    // The CRL next to the CA rejects the old certificate and accepts the new one.
    let crl = pki.join("ca.crl");
    assert!(crl.exists(), "{}", text(&out));
    let verify = |cert: &std::path::Path| {
        std::process::Command::new("openssl")
            .args(["verify", "-crl_check", "-CRLfile"])
            .arg(&crl)
            .arg("-CAfile")
            .arg(pki.join("ca.crt"))
            .arg(cert)
            .output()
            .unwrap()
    };
    let v_old = verify(&old);
    assert!(
        !v_old.status.success(),
        "the old certificate must be rejected"
    );
    assert!(
        text(&v_old).contains("certificate revoked"),
        "{}",
        text(&v_old)
    );
    let v_new = verify(&pki.join("apiserver.crt"));
    assert!(v_new.status.success(), "{}", text(&v_new));

    // Nothing loops: the next run keeps everything.
    let out = node.agent(&["rotate"]);
    assert!(
        text(&out).contains("apiserver: valid, next rotation"),
        "{}",
        text(&out)
    );
    assert_eq!(openssl::view(&pki.join("apiserver.crt")).serial, new_serial);
    let (code, _) = node.check_json(&[]);
    assert_eq!(code, 0);
}

#[test]
fn an_entry_without_not_before_blocks_instead_of_looping_and_not_before_unblocks_it() {
    let (node, _) = tree();
    let pki = node.path(PKI);
    let before = openssl::view(&pki.join("apiserver-kubelet-client.crt")).serial;
    revocations(
        &node,
        "admins.yaml",
        "  - {kind: Group, group: \"kubeadm:cluster-admins\"}\n",
    );
    for _ in 0..2 {
        let out = node.agent(&["rotate"]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("apiserver-kubelet-client: BLOCKED: revocation admins/0 (Group kubeadm:cluster-admins)"), "{t}");
        assert!(
            t.contains("it has no notBefore") && t.contains("set its notBefore"),
            "{t}"
        );
        assert_eq!(
            openssl::view(&pki.join("apiserver-kubelet-client.crt")).serial,
            before,
            "not re-issued"
        );
    }
    // The fix the message asks for: notBefore = now revokes what exists, not the replacement.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    revocations(
        &node,
        "admins.yaml",
        &format!("  - {{kind: Group, group: \"kubeadm:cluster-admins\", notBefore: \"{now}\"}}\n"),
    );
    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("apiserver-kubelet-client: rotated (revoked by admins/0"),
        "{}",
        text(&out)
    );
    let out = node.agent(&["rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("apiserver-kubelet-client: valid"),
        "{}",
        text(&out)
    );
}

#[test]
fn dns_and_ip_entries_revoke_by_san() {
    let (node, _) = tree();
    revocations(
        &node,
        "names.yaml",
        "  - {kind: DNS, dns: kubernetes.default.svc.}\n",
    );
    let out = node.agent(&["revocations", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["entries"][0]["matches"],
        serde_json::json!(["/etc/kubernetes/pki/apiserver.crt"])
    );
    revocations(
        &node,
        "names.yaml",
        "  - {kind: IP, ip: 10.96.0.2}\n  - {kind: DNS, dns: .svc}\n",
    );
    let out = node.agent(&["revocations", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["entries"][0]["matches"],
        serde_json::json!([]),
        "another IP"
    );
    assert_eq!(
        v["entries"][1]["matches"],
        serde_json::json!(["/etc/kubernetes/pki/apiserver.crt"]),
        "suffix"
    );
}

#[test]
fn bad_revocation_files_are_named_and_the_good_entries_still_apply() {
    let (node, _) = tree();
    let dir = node.path("/etc/kube-cert-agent/revocations.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a-configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    std::fs::write(dir.join("b-broken.yaml"), "spec: [[[\n").unwrap();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    revocations(&node, "c-mixed.yaml", &format!("  - {{kind: Fingerprint, value: x}}\n  - {{kind: IP, ip: 10.96.0.1, notBefore: \"{now}\"}}\n"));
    let out = node.agent(&["revocations"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    for want in [
        "a-configmap.yaml: document 1: is v1/ConfigMap",
        "b-broken.yaml: ",
        "c-mixed.yaml: document 1 (c-mixed) entry 0: unknown kind \"fingerprint\"",
        "c-mixed/1  IP 10.96.0.1 issued before",
        "matches /etc/kubernetes/pki/apiserver.crt",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    // The good entry still revokes; the bad ones revoke nothing.
    let out = node.agent(&["rotate"]);
    assert!(
        text(&out).contains("apiserver: rotated (revoked by c-mixed/1"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("apiserver-kubelet-client: rotated"),
        "{}",
        text(&out)
    );
}

#[test]
fn repair_brings_an_expired_tree_back_and_a_second_repair_does_nothing() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let fp = openssl::ca(&pki, "front-proxy-ca", Key::P256, "front-proxy-ca", 3650);
    let expired = Some(("20260101000000Z", "20260105000000Z"));
    openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            sans: "DNS:kubernetes",
            dates: expired,
            ..Leaf::default()
        },
    );
    openssl::leaf(
        &pki,
        "front-proxy-client",
        &fp,
        &Leaf {
            subject: "/CN=front-proxy-client",
            eku: "clientAuth",
            dates: expired,
            ..Leaf::default()
        },
    );
    // A key that no longer matches its certificate.
    openssl::leaf(
        &pki,
        "apiserver-kubelet-client",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver-kubelet-client",
            eku: "clientAuth",
            ..Leaf::default()
        },
    );
    openssl::genkey(&pki.join("apiserver-kubelet-client.key"), Key::P256);
    config(
        &node,
        &format!(
            "{CERTS}- name: front-proxy-client
  ca: {{cert: /etc/kubernetes/pki/front-proxy-ca.crt, key: /etc/kubernetes/pki/front-proxy-ca.key}}
  cert: /etc/kubernetes/pki/front-proxy-client.crt
  key: /etc/kubernetes/pki/front-proxy-client.key
- name: etcd-healthcheck-client
  ca: {{cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}}
  cert: /etc/kubernetes/pki/etcd-healthcheck-client.crt
  key: /etc/kubernetes/pki/etcd-healthcheck-client.key
  subject: {{commonName: kube-etcd-healthcheck-client}}
  usages: [clientAuth]
"
        ),
    );
    let (code, _) = node.check_json(&[]);
    assert_eq!(code, 2);

    let serials = || {
        [
            "apiserver",
            "front-proxy-client",
            "apiserver-kubelet-client",
        ]
        .map(|n| openssl::view(&pki.join(format!("{n}.crt"))).serial)
    };
    let before = serials();
    let out = node.agent(&["repair", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    for want in [
        "apiserver: would rotate (expired)",
        "front-proxy-client: would rotate (expired)",
        "apiserver-kubelet-client: would rotate (broken",
        "etcd-healthcheck-client: would rotate (missing)",
        "4 to repair, 0 healthy",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    assert_eq!(serials(), before, "a dry run changes nothing");

    let out = node.agent(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("4 repaired, 0 healthy, 0 could not be repaired"),
        "{}",
        text(&out)
    );
    let (code, rows) = node.check_json(&[]);
    assert_eq!(code, 0, "{rows:#?}");
    assert_eq!(
        openssl::openssl(
            &pki,
            &[
                "verify",
                "-CAfile",
                "front-proxy-ca.crt",
                "front-proxy-client.crt"
            ]
        )
        .trim(),
        "front-proxy-client.crt: OK"
    );
    assert_eq!(
        openssl::view(&pki.join("apiserver.crt")).sans,
        ["DNS:kubernetes"],
        "SANs kept"
    );

    let after = serials();
    let out = node.agent(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("0 repaired, 4 healthy"),
        "{}",
        text(&out)
    );
    assert_eq!(serials(), after, "a second repair does nothing");
}

#[test]
fn a_clock_behind_is_reported_not_reissued_in_a_loop() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    // The CA is not valid yet either: this clock is behind, re-issuing would not help.
    // (A leaf "not yet valid" under a CA valid now is healed instead: tests/clock.rs.)
    openssl::ca_with_dates(
        &ca.cert,
        &ca.key,
        "kubernetes",
        "20391201000000Z",
        "20500101000000Z",
    );
    openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            sans: "DNS:kubernetes",
            dates: Some(("20400101000000Z", "20400105000000Z")),
            ..Leaf::default()
        },
    );
    config(
        &node,
        &CERTS
            .lines()
            .take(5)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let s0 = openssl::view(&pki.join("apiserver.crt")).serial;
    for _ in 0..2 {
        let out = node.agent(&["repair"]);
        let t = text(&out);
        assert!(
            t.contains(
                "apiserver: not valid until 2040-01-01T00:00:00Z: is this node's clock behind?"
            ),
            "{t}"
        );
        assert_eq!(openssl::view(&pki.join("apiserver.crt")).serial, s0);
    }
}

#[test]
fn repair_restarts_a_shared_dependent_once() {
    let node = NodeTree::new();
    let pki = node.path(PKI);
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    let expired = Some(("20260101000000Z", "20260105000000Z"));
    openssl::leaf(
        &pki,
        "apiserver",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver",
            sans: "DNS:kubernetes",
            dates: expired,
            ..Leaf::default()
        },
    );
    openssl::leaf(
        &pki,
        "apiserver-kubelet-client",
        &ca,
        &Leaf {
            subject: "/CN=kube-apiserver-kubelet-client",
            eku: "clientAuth",
            dates: expired,
            ..Leaf::default()
        },
    );
    let marker = node.root().join("restarts.log");
    let action = format!(
        "  onRotate: [{{command: {{argv: [/bin/sh, -c, \"echo restarted >> {}\"]}}}}]\n",
        marker.display()
    );
    let body: String = CERTS
        .lines()
        .map(|l| format!("{l}\n"))
        .flat_map(|l| {
            let extra = if l.contains("  key: ") {
                action.clone()
            } else {
                String::new()
            };
            [l, extra]
        })
        .collect();
    config(&node, &body);
    let out = node.agent(&["repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("2 repaired"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "restarted\n",
        "once for both certificates: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("(after rotating apiserver, apiserver-kubelet-client)"),
        "{}",
        text(&out)
    );
}

#[test]
fn rollback_refuses_a_revoked_version_unless_forced() {
    let (node, _ca) = tree();
    let crt = node.path(&format!("{PKI}/apiserver.crt"));
    let old = openssl::view(&crt).serial;
    let out = node.agent(&["rotate", "apiserver"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let new = openssl::view(&crt).serial;
    assert_ne!(new, old);
    revocations(
        &node,
        "bad.yaml",
        &format!("  - {{kind: serialnumber, serialNumber: {old}}}\n"),
    );
    let out = node.agent(&["rollback", "apiserver"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("apiserver: not rolled back: version ")
            && t.contains(&format!("(serial {old}) is revoked by bad/0 (serialnumber"))
            && t.contains("--force"),
        "{t}"
    );
    assert_eq!(openssl::view(&crt).serial, new, "nothing switched");
    let out = node.agent(&["rollback", "apiserver", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(openssl::view(&crt).serial, old);
}
