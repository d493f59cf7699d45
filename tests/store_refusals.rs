//! What the store refuses, and that the previous version survives each refusal.

mod store_common;

use std::os::unix::fs::symlink;
use std::path::Path;

use kube_cert_agent::store::{FileSpec, Managed, PkiStore, Store, StoreError};
use store_common::*;

const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
const KEY: &str = "/etc/kubernetes/pki/apiserver.key";

fn apiserver() -> Managed {
    Managed::Pair {
        cert: CRT.into(),
        key: KEY.into(),
    }
}

#[test]
fn a_pair_name_linking_outside_the_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("outside.crt");
    std::fs::write(&secret, "not yours").unwrap();
    let pki = host(d.path(), PKI);
    std::fs::create_dir_all(&pki).unwrap();
    let old = gen("old");
    std::fs::write(pki.join("apiserver.key"), &old.key).unwrap();
    for target in [
        "../../../outside.crt",
        "/outside.crt",
        secret.to_str().unwrap(),
    ] {
        let _ = std::fs::remove_file(pki.join("apiserver.crt"));
        symlink(target, pki.join("apiserver.crt")).unwrap();
        let store = Store::new(node(d.path()), 5);
        let new = gen("new");
        let err = store
            .install(&apiserver(), new.cert.as_bytes(), new.key.as_bytes(), t(0))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SymlinkEscape { .. }),
            "{target}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("apiserver.crt") && msg.contains("outside"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "not yours");
        assert_eq!(
            std::fs::read_link(pki.join("apiserver.crt")).unwrap(),
            Path::new(target)
        );
        assert_eq!(
            std::fs::read_to_string(pki.join("apiserver.key")).unwrap(),
            old.key
        );
        assert!(temps(d.path(), PKI).is_empty());
    }
}

#[test]
fn a_kubelet_current_link_outside_the_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let kpki = host(d.path(), KUBELET_PKI);
    std::fs::create_dir_all(&kpki).unwrap();
    symlink(
        "/etc/kubernetes/admin.pem",
        kpki.join("kubelet-client-current.pem"),
    )
    .unwrap();
    let store = Store::new(node(d.path()), 5);
    let p = gen("n");
    let err = store
        .install_kubelet(
            Path::new(KUBELET_PKI),
            "kubelet-client",
            p.cert.as_bytes(),
            p.key.as_bytes(),
            t(0),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::SymlinkEscape { .. }), "{err}");
    assert!(
        err.to_string().contains("kubelet-client-current.pem"),
        "{err}"
    );
    // Nothing was written.
    assert_eq!(std::fs::read_dir(&kpki).unwrap().count(), 1);
}

#[test]
fn write_file_refuses_symlinks_and_directories() {
    let d = tempfile::tempdir().unwrap();
    let etc = host(d.path(), "/etc/kubernetes");
    std::fs::create_dir_all(etc.join("adir")).unwrap();
    std::fs::write(d.path().join("victim"), "keep").unwrap();
    symlink("/victim", etc.join("escape.conf")).unwrap();
    symlink("../../victim", etc.join("escape2.conf")).unwrap();
    let store = Store::new(node(d.path()), 5);
    for name in ["escape.conf", "escape2.conf"] {
        let err = store
            .write_file(
                &Path::new("/etc/kubernetes").join(name),
                b"x",
                FileSpec::CERT,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::SymlinkEscape { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = store
        .write_file(Path::new("/etc/kubernetes/adir"), b"x", FileSpec::CERT)
        .unwrap_err();
    assert!(matches!(err, StoreError::IsDirectory { .. }), "{err}");
    assert!(err.to_string().contains("adir: is a directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("victim")).unwrap(),
        "keep"
    );
    assert!(temps(d.path(), "/etc/kubernetes").is_empty());
}

#[test]
fn a_directory_in_place_of_a_certificate_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pki = host(d.path(), PKI);
    std::fs::create_dir_all(pki.join("apiserver.crt")).unwrap();
    let store = Store::new(node(d.path()), 5);
    let p = gen("n");
    let err = store
        .install(&apiserver(), p.cert.as_bytes(), p.key.as_bytes(), t(0))
        .unwrap_err();
    assert!(matches!(err, StoreError::IsDirectory { .. }), "{err}");
    assert!(err.to_string().contains("apiserver.crt"), "{err}");
    assert!(pki.join("apiserver.crt").is_dir());
    assert!(!pki.join("apiserver.key").exists());
}

#[test]
fn names_with_slashes_or_dots_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let p = gen("n");
    for name in ["../kubelet-client", "a/b", "x..y"] {
        let err = store
            .install_kubelet(
                Path::new(KUBELET_PKI),
                name,
                p.cert.as_bytes(),
                p.key.as_bytes(),
                t(0),
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{name}: {err}"
        );
    }
    let err = store
        .write_file(Path::new("/etc/kubernetes/../../x"), b"x", FileSpec::CERT)
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
    assert!(!d.path().join("x").exists());
}

#[test]
fn cert_and_key_in_different_directories_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let p = gen("n");
    let m = Managed::Pair {
        cert: CRT.into(),
        key: "/etc/kubernetes/pki/etcd/apiserver.key".into(),
    };
    let err = store
        .install(&m, p.cert.as_bytes(), p.key.as_bytes(), t(0))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DifferentDirectories { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("same directory"), "{err}");
}

#[test]
fn a_key_that_does_not_match_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let old = gen("old");
    store
        .install(&apiserver(), old.cert.as_bytes(), old.key.as_bytes(), t(0))
        .unwrap();
    let a = gen("a");
    let b = gen("b");
    let err = store
        .install(&apiserver(), a.cert.as_bytes(), b.key.as_bytes(), t(1))
        .unwrap_err();
    assert!(matches!(err, StoreError::BadMaterial { .. }), "{err}");
    let err = store
        .install(&apiserver(), b"garbage", a.key.as_bytes(), t(1))
        .unwrap_err();
    assert!(matches!(err, StoreError::BadMaterial { .. }), "{err}");
    assert_pair_is(d.path(), CRT, KEY, &old);
    assert_eq!(store.versions(&apiserver()).unwrap().len(), 1);
}
