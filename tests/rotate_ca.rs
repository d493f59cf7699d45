//! `kube-cert-agent rotate-ca`: the three phases on a kubeadm node tree made with openssl,
//! for the cluster, etcd and front-proxy CAs. After every phase each leaf is verified by
//! `openssl verify` against each trust point (the CA file and the CA data of every
//! kubeconfig, as the real kubectl reads it); every phase is run twice to show it is
//! idempotent (same bytes, no second restart).

mod ca_rotation_common;
mod support;

use std::path::{Path, PathBuf};

use ca_rotation_common::*;
use support::openssl;

const STAGING: &str = "/var/lib/kube-cert-agent/ca-rotation";

struct Snapshot(Vec<(PathBuf, Vec<u8>)>);

fn snapshot(k: &Kubeadm) -> Snapshot {
    let mut files: Vec<String> = CAS.iter().map(|c| c.cert.to_string()).collect();
    files.extend(
        CAS.iter()
            .flat_map(|c| c.leaves.iter().map(|l| l.to_string())),
    );
    files.extend(KUBECONFIGS.iter().map(|s| s.to_string()));
    files.push(KUBELET_CONF.into());
    Snapshot(
        files
            .iter()
            .map(|f| (PathBuf::from(f), std::fs::read(k.node.path(f)).unwrap()))
            .collect(),
    )
}

/// The trust points of `ca` and its leaves, as files openssl reads.
fn trust_and_leaves(k: &Kubeadm, ca: &CaSet, out: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut trust = vec![k.node.path(ca.cert)];
    let mut leaves: Vec<PathBuf> = ca.leaves.iter().map(|l| k.node.path(l)).collect();
    if ca.name == "cluster" {
        for kc in KUBECONFIGS {
            trust.push(k.kubectl_ca(kc, out));
            leaves.push(k.kubectl_client_cert(kc, out));
        }
        trust.push(k.kubectl_ca(KUBELET_CONF, out));
        leaves.push(k.node.path(KUBELET_PEM));
    }
    (trust, leaves)
}

fn assert_all_verify(k: &Kubeadm, ca: &CaSet, out: &Path, when: &str) {
    let (trust, leaves) = trust_and_leaves(k, ca, out);
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
}

fn pem_file(dir: &Path, name: &str, serial_of: &Path) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(serial_of, &p).unwrap();
    p
}

#[test]
fn three_phases_for_every_kubeadm_ca_verified_with_openssl_and_kubectl() {
    let k = Kubeadm::new("https://127.0.0.1:6443", "");
    let work = tempfile::tempdir().unwrap();
    let out = work.path();
    let mut restarts_seen = 0;
    let mut new_restarts = |k: &Kubeadm| {
        let all = k.restart_lines();
        let fresh = all[restarts_seen..].to_vec();
        restarts_seen = all.len();
        let mut fresh = fresh;
        fresh.sort();
        fresh
    };
    for ca in CAS {
        let ca_path = k.node.path(ca.cert);
        let old = bundle_serials(&ca_path);
        assert_eq!(old.len(), 1);
        let old_ca = pem_file(out, &format!("{}-old.pem", ca.name), &ca_path);

        // A dry run lists the changes and makes none.
        let before = snapshot(&k);
        let (code, text) = k.phase(ca.name, "prepare", &["--dry-run"]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains(&format!("would write {}", ca.cert)), "{text}");
        assert_eq!(snapshot(&k).0, before.0, "a dry run changed a file");
        assert!(new_restarts(&k).is_empty());

        // prepare: old + new in every trust point; the signer and every leaf unchanged.
        let (code, text) = k.phase(ca.name, "prepare", &[]);
        assert_eq!(code, 0, "{text}");
        let both = bundle_serials(&ca_path);
        assert_eq!(both.len(), 2, "{text}");
        assert_eq!(
            both[0], old[0],
            "the old CA stays first: its key still signs"
        );
        let new_serial = both[1].clone();
        assert_ne!(new_serial, old[0]);
        for l in ca.leaves {
            assert_eq!(
                std::fs::read(k.node.path(l)).unwrap(),
                before.0.iter().find(|(p, _)| p == Path::new(l)).unwrap().1
            );
        }
        assert_all_verify(&k, ca, out, &format!("{} after prepare", ca.name));
        if ca.name == "cluster" {
            for kc in KUBECONFIGS.iter().chain([&KUBELET_CONF]) {
                let t = k.kubectl_ca(kc, out);
                assert_eq!(bundle_serials(&t), both, "{kc}");
            }
        }
        // The new CA: same subject, new key, ten years.
        let staged = k.node.path(&format!("{STAGING}/{}/new-ca.crt", ca.name));
        let v_new = openssl::view(&staged);
        assert_eq!(v_new.serial, new_serial);
        assert_eq!(v_new.subject, openssl::view(&old_ca).subject);
        assert_eq!(new_restarts(&k), vec![format!("ca-{}", ca.name)]);
        // Again: nothing changes, nothing restarts.
        let after = snapshot(&k);
        let (code, text) = k.phase(ca.name, "prepare", &[]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(snapshot(&k).0, after.0, "prepare is not idempotent: {text}");
        assert!(new_restarts(&k).is_empty());

        // finalize before reissue is refused.
        let (code, text) = k.phase(ca.name, "finalize", &[]);
        assert_eq!(code, 3, "{text}");
        assert!(text.contains("reissue comes first"), "{text}");

        // reissue: the new CA signs; every leaf re-issued from it; dependents once each.
        let (code, text) = k.phase(ca.name, "reissue", &[]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(
            bundle_serials(&ca_path),
            vec![new_serial.clone(), old[0].clone()]
        );
        let new_only = pem_file(out, &format!("{}-new.pem", ca.name), &staged);
        for l in ca.leaves {
            let p = k.node.path(l);
            assert!(
                verifies(&new_only, &p),
                "{l} not from the new CA after reissue"
            );
            assert!(
                !verifies(&old_ca, &p),
                "{l} still verifies against the old CA alone"
            );
        }
        assert_all_verify(&k, ca, out, &format!("{} after reissue", ca.name));
        let mut want: Vec<String> = vec![format!("ca-{}", ca.name)];
        match ca.name {
            "cluster" => {
                want.extend(["admin.conf", "kube-apiserver", "scheduler.conf"].map(String::from))
            }
            "etcd" => want.extend(["etcd", "kube-apiserver"].map(String::from)),
            _ => want.push("kube-apiserver".into()),
        }
        want.sort();
        assert_eq!(
            new_restarts(&k),
            want,
            "each dependent restarted exactly once: {text}"
        );
        let after = snapshot(&k);
        let (code, text) = k.phase(ca.name, "reissue", &[]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(snapshot(&k).0, after.0, "reissue is not idempotent: {text}");
        assert!(new_restarts(&k).is_empty());

        if ca.name == "cluster" {
            for kc in KUBECONFIGS {
                assert!(verifies(&new_only, &k.kubectl_client_cert(kc, out)), "{kc}");
            }
            // The kubelet's certificate (no kubelet section here: nothing renews it through
            // a CSR) is still from the old CA: finalize refuses and names it.
            let (code, text) = k.phase(ca.name, "finalize", &[]);
            assert_eq!(code, 3, "{text}");
            assert!(
                text.contains("refusing to finalize") && text.contains(KUBELET_PEM),
                "{text}"
            );
            assert_eq!(
                bundle_serials(&ca_path).len(),
                2,
                "a refused finalize changed the CA file"
            );
            assert!(new_restarts(&k).is_empty());
            let status = k.node.agent(&["status", "--output", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
            let r = &v["caRotations"][0];
            assert_eq!(r["phase"], "reissue");
            assert!(r["error"].as_str().unwrap().contains(KUBELET_PEM), "{v:#}");
            kubelet_from_new_ca(&k);
        }

        // finalize: the old CA leaves every trust point.
        let (code, text) = k.phase(ca.name, "finalize", &[]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(bundle_serials(&ca_path), vec![new_serial.clone()]);
        assert_all_verify(&k, ca, out, &format!("{} after finalize", ca.name));
        if ca.name == "cluster" {
            for kc in KUBECONFIGS.iter().chain([&KUBELET_CONF]) {
                assert_eq!(
                    bundle_serials(&k.kubectl_ca(kc, out)),
                    vec![new_serial.clone()],
                    "{kc}"
                );
            }
        }
        assert!(
            !k.node
                .path(&format!("{STAGING}/{}/new-ca.key", ca.name))
                .exists(),
            "staged key left behind"
        );
        assert_eq!(new_restarts(&k), vec![format!("ca-{}", ca.name)]);
        let after = snapshot(&k);
        let (code, text) = k.phase(ca.name, "finalize", &[]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(
            snapshot(&k).0,
            after.0,
            "finalize is not idempotent: {text}"
        );
        assert!(new_restarts(&k).is_empty());
    }
    // status shows every rotation done; check finds the whole tree valid.
    let status = k.node.agent(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    for ca in CAS {
        assert!(
            text.contains(&format!("CA rotation {}: phase finalize done", ca.name)),
            "{text}"
        );
    }
    let (code, rows) = k.node.check_json(&[]);
    assert_eq!(code, 0, "{rows:#?}");
}

#[test]
fn phases_run_in_order_and_bad_input_is_refused() {
    let k = Kubeadm::new("https://127.0.0.1:6443", "");
    let (code, text) = k.phase("cluster", "reissue", &[]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("start with --phase prepare"), "{text}");
    let (code, text) = k.phase("nope", "prepare", &[]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("no CA named \"nope\"") && text.contains("cluster, etcd, front-proxy"),
        "{text}"
    );
    // A given CA must have the old CA's subject: the etcd CA cannot succeed the cluster CA.
    let pki = k.node.path(PKI);
    let (code, text) = k.phase(
        "cluster",
        "prepare",
        &[
            "--cert",
            pki.join("etcd/ca.crt").to_str().unwrap(),
            "--key",
            pki.join("etcd/ca.key").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("not byte-identical"), "{text}");
    assert_eq!(
        bundle_serials(&pki.join("ca.crt")).len(),
        1,
        "a refused prepare changed ca.crt"
    );
    // Going back is refused once the signer moved.
    assert_eq!(k.phase("cluster", "prepare", &[]).0, 0);
    assert_eq!(k.phase("cluster", "reissue", &[]).0, 0);
    let (code, text) = k.phase("cluster", "prepare", &[]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("going back"), "{text}");
}

/// A second control-plane node takes the first one's new CA (`--cert/--key`), and a
/// worker, which has no CA key, takes the certificate alone.
#[test]
fn other_nodes_use_the_first_nodes_new_ca() {
    let a = Kubeadm::new("https://127.0.0.1:6443", "");
    assert_eq!(a.phase("cluster", "prepare", &[]).0, 0);
    let staged_cert = a.node.path(&format!("{STAGING}/cluster/new-ca.crt"));
    let staged_key = a.node.path(&format!("{STAGING}/cluster/new-ca.key"));
    // Node b: a copy of a's starting CA (same cluster), its own leaves.
    let b = Kubeadm::new("https://127.0.0.1:6443", "");
    let pki_b = b.node.path(PKI);
    std::fs::copy(
        a.node.path(&format!("{STAGING}/cluster/old-ca.crt")),
        pki_b.join("ca.crt"),
    )
    .unwrap();
    std::fs::copy(
        a.node.path("/etc/kubernetes/pki/..ca.data/ca.key"),
        pki_b.join("ca.key"),
    )
    .unwrap();
    let (code, text) = b.phase(
        "cluster",
        "prepare",
        &[
            "--cert",
            staged_cert.to_str().unwrap(),
            "--key",
            staged_key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        bundle_serials(&pki_b.join("ca.crt")),
        bundle_serials(&a.node.path("/etc/kubernetes/pki/ca.crt"))
    );
    // Without --key on a node that signs: refused.
    let c = Kubeadm::new("https://127.0.0.1:6443", "");
    let (code, text) = c.phase(
        "cluster",
        "prepare",
        &["--cert", staged_cert.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("--key"), "{text}");
}

/// A fleet moves together: the phase and the new CA come from a CARotation object (valid
/// against the shipped CRD), and each node says the phase it reached.
#[test]
fn the_phase_and_the_new_ca_come_from_a_carotation_object() {
    let a = Kubeadm::new("https://127.0.0.1:6443", "");
    assert_eq!(a.phase("cluster", "prepare", &[]).0, 0);
    let new_ca =
        std::fs::read_to_string(a.node.path(&format!("{STAGING}/cluster/new-ca.crt"))).unwrap();
    let staged_key = a.node.path(&format!("{STAGING}/cluster/new-ca.key"));
    let object = |phase: &str| {
        serde_json::json!({
            "apiVersion": "kube-cert-agent.io/v1alpha1",
            "kind": "CARotation",
            "metadata": {"name": "cluster-2026"},
            "spec": {"ca": "cluster", "phase": phase, "newCACertificate": new_ca},
            "status": {"nodes": [{"name": "node-1", "phase": "prepare", "complete": true,
                                  "updated": "2026-12-02T06:00:00Z"}]},
        })
    };
    let schema = support::crd::crd_schema("carotations.kube-cert-agent.io.yaml");
    let errors = support::crd::jsonschema_errors(&schema, &object("prepare"));
    assert!(errors.is_empty(), "{errors:#?}");
    let mut bad = object("undo");
    bad["spec"]["newCAKey"] = "never".into();
    let errors = support::crd::jsonschema_errors(&schema, &bad).join("\n");
    assert!(
        errors.contains("'undo' is not one of") && errors.contains("'newCAKey'"),
        "{errors}"
    );

    // Node b (same cluster CA as a) takes its phase from the object.
    let b = Kubeadm::new("https://127.0.0.1:6443", "");
    let pki_b = b.node.path(PKI);
    std::fs::copy(
        a.node.path(&format!("{STAGING}/cluster/old-ca.crt")),
        pki_b.join("ca.crt"),
    )
    .unwrap();
    std::fs::copy(
        a.node.path("/etc/kubernetes/pki/..ca.data/ca.key"),
        pki_b.join("ca.key"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for phase in ["prepare", "reissue"] {
        let f = dir.path().join(format!("{phase}.yaml"));
        std::fs::write(&f, serde_json::to_string(&object(phase)).unwrap()).unwrap();
        let out = b.node.agent(&[
            "rotate-ca",
            "cluster",
            "--from-object",
            f.to_str().unwrap(),
            "--key",
            staged_key.to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.contains(&format!("phase {phase} complete=true")),
            "{text}"
        );
    }
    let both = bundle_serials(&a.node.path("/etc/kubernetes/pki/ca.crt"));
    assert_eq!(
        bundle_serials(&pki_b.join("ca.crt")),
        vec![both[1].clone(), both[0].clone()]
    );
    // An object for another CA is refused.
    let f = dir.path().join("etcd.yaml");
    let mut other = object("prepare");
    other["spec"]["ca"] = "etcd".into();
    std::fs::write(&f, other.to_string()).unwrap();
    let out = b
        .node
        .agent(&["rotate-ca", "cluster", "--from-object", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotates CA \"etcd\""));
}
