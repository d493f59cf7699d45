//! Failpoints between write, fsync, swap and prune (`cargo test --features failpoints`).
//! An error at any point leaves the previous version live and no temporary file behind;
//! an abort (a crash at that exact point) leaves the old or the new version, whole.
#![cfg(feature = "failpoints")]

mod store_common;

use std::path::Path;

use kube_cert_agent::store::failpoint::{self, POINTS};
use kube_cert_agent::store::{Managed, PkiStore, Store};
use store_common::*;

const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
const KEY: &str = "/etc/kubernetes/pki/apiserver.key";
const CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

fn targets() -> [(Managed, &'static str, &'static str); 2] {
    [
        (
            Managed::Pair {
                cert: CRT.into(),
                key: KEY.into(),
            },
            CRT,
            KEY,
        ),
        (
            Managed::Kubelet {
                dir: KUBELET_PKI.into(),
                name: "kubelet-client".into(),
            },
            CURRENT,
            CURRENT,
        ),
    ]
}

/// A first version: kubeadm's plain files for the pair (so that migration runs), and a
/// kubelet-style version installed by the store, with one older version to prune.
fn setup(root: &Path, history: u32) -> Pair {
    let store = Store::new(node(root), history);
    let (km, ..) = &targets()[1];
    let older = gen("older");
    store
        .install(km, older.cert.as_bytes(), older.key.as_bytes(), t(0))
        .unwrap();
    let first = gen("first");
    store
        .install(km, first.cert.as_bytes(), first.key.as_bytes(), t(1))
        .unwrap();
    write_plain(root, PKI, "apiserver", &first);
    first
}

#[test]
fn an_error_at_any_point_keeps_the_previous_version() {
    for point in POINTS {
        for action in ["error", "enospc"] {
            let d = tempfile::tempdir().unwrap();
            let first = setup(d.path(), 5);
            let store = Store::new(node(d.path()), 1);
            let new = gen("new");
            for (m, c, k) in targets() {
                failpoint::arm(point, action);
                let res = store.install(&m, new.cert.as_bytes(), new.key.as_bytes(), t(5));
                failpoint::disarm_all();
                match res {
                    Err(e) => {
                        println!("{point}={action} {m:?}: {e}");
                        assert_pair_is(d.path(), c, k, &first);
                    }
                    // Pruning comes after the switch: the install stands, the error is told.
                    Ok(inst) if point.contains("prune") => {
                        // Kubelet versions are single files, unlinked without a mid-prune step.
                        let kubelet_mid =
                            *point == "store::mid-prune" && matches!(m, Managed::Kubelet { .. });
                        assert_eq!(inst.prune_error.is_some(), !kubelet_mid, "{point}: {m:?}");
                        assert_pair_is(d.path(), c, k, &new);
                    }
                    // A point this path does not pass (migration for kubelet style).
                    Ok(_) => {
                        assert_eq!(*point, "store::migrated-data", "{m:?}");
                        assert_pair_is(d.path(), c, k, &new);
                    }
                }
            }
            // Whatever was left is cleaned up by the next install, which works.
            let again = gen("again");
            for (m, c, k) in targets() {
                store
                    .install(&m, again.cert.as_bytes(), again.key.as_bytes(), t(9))
                    .unwrap();
                assert_pair_is(d.path(), c, k, &again);
                assert_eq!(store.versions(&m).unwrap().len(), 1);
            }
            assert!(temps(d.path(), PKI).is_empty(), "{point}");
            assert!(temps(d.path(), KUBELET_PKI).is_empty(), "{point}");
        }
    }
}

#[test]
fn failpoint_child() {
    let Ok(dir) = std::env::var("KCA_FP_DIR") else {
        return;
    };
    let store = Store::new(node(Path::new(&dir)), 1);
    let new = Pair {
        cert: std::env::var("KCA_FP_CERT").unwrap(),
        key: std::env::var("KCA_FP_KEY").unwrap(),
    };
    for (m, ..) in targets() {
        let _ = store.install(&m, new.cert.as_bytes(), new.key.as_bytes(), t(5));
    }
    println!("CHILD-SURVIVED");
}

#[test]
fn a_crash_at_any_point_leaves_old_or_new_whole() {
    for point in POINTS {
        let d = tempfile::tempdir().unwrap();
        let first = setup(d.path(), 5);
        let new = gen("new");
        let out = child_command(&[], "failpoint_child")
            .env("KCA_FP_DIR", d.path())
            .env("KCA_FP_CERT", &new.cert)
            .env("KCA_FP_KEY", &new.key)
            .env("KCA_FAILPOINTS", format!("{point}=abort"))
            .output()
            .unwrap();
        let survived = String::from_utf8_lossy(&out.stdout).contains("CHILD-SURVIVED");
        println!("{point}: child {:?}, survived {survived}", out.status);
        for (_, c, k) in targets() {
            let der = read_valid(d.path(), c, k).unwrap_or_else(|e| panic!("{point}: {e}"));
            assert!(
                der == der_of(&first.cert) || der == der_of(&new.cert),
                "{point}: {c} is neither version"
            );
        }
        if *point != "store::migrated-data" {
            assert!(!survived, "{point} was not reached");
        }
        let store = Store::new(node(d.path()), 1);
        let again = gen("again");
        for (m, c, k) in targets() {
            store
                .install(&m, again.cert.as_bytes(), again.key.as_bytes(), t(9))
                .unwrap();
            assert_pair_is(d.path(), c, k, &again);
        }
        assert!(temps(d.path(), PKI).is_empty() && temps(d.path(), KUBELET_PKI).is_empty());
    }
}
