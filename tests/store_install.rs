//! Installing versions: layouts, migration from kubeadm's plain files, history, rollback,
//! permissions.

mod store_common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kube_cert_agent::inventory::{self, Target};
use kube_cert_agent::store::{FileSpec, Managed, PkiStore, Store};
use store_common::*;

fn apiserver() -> Managed {
    Managed::Pair {
        cert: format!("{PKI}/apiserver.crt").into(),
        key: format!("{PKI}/apiserver.key").into(),
    }
}

fn kubelet_client() -> Managed {
    Managed::Kubelet {
        dir: KUBELET_PKI.into(),
        name: "kubelet-client".into(),
    }
}

const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
const KEY: &str = "/etc/kubernetes/pki/apiserver.key";
const CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

#[test]
fn kubelet_style_layout_links_a_node_path_and_is_0600() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let p = gen("node-1");
    let v = store
        .install(&kubelet_client(), p.cert.as_bytes(), p.key.as_bytes(), t(0))
        .unwrap();
    assert!(v.prune_error.is_none());
    let file = &v.version.name;
    assert!(
        file.starts_with("kubelet-client-") && file.ends_with(".pem"),
        "{file}"
    );
    let link = std::fs::read_link(host(d.path(), CURRENT)).unwrap();
    // The node path, not the host path under the temporary root.
    assert_eq!(link, Path::new(KUBELET_PKI).join(file));
    assert_eq!(mode(&host(d.path(), KUBELET_PKI).join(file)), 0o600);
    assert_pair_is(d.path(), CURRENT, CURRENT, &p);
    assert!(temps(d.path(), KUBELET_PKI).is_empty());
}

#[test]
fn kubelet_versions_in_the_same_second_get_unique_names() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let mut names = Vec::new();
    let mut last = None;
    for i in 0..3 {
        let p = gen(&format!("n{i}"));
        let v = store
            .install(&kubelet_client(), p.cert.as_bytes(), p.key.as_bytes(), t(0))
            .unwrap();
        names.push(v.version.name);
        last = Some(p);
    }
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_pair_is(d.path(), CURRENT, CURRENT, &last.unwrap());
    let versions = store.versions(&kubelet_client()).unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions.last().unwrap().current);
    // The inventory reports the current link only: the history keeps kubelet's name shape.
    let inv = inventory::collect(&node(d.path()), &[Target::PkiDir(KUBELET_PKI.into())]);
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert!(
        inv[0].path.ends_with("kubelet-client-current.pem"),
        "{inv:?}"
    );
}

#[test]
fn pair_style_layout_switches_both_names_through_one_link() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let p1 = gen("api-1");
    let v1 = store
        .install(&apiserver(), p1.cert.as_bytes(), p1.key.as_bytes(), t(0))
        .unwrap();
    assert_pair_is(d.path(), CRT, KEY, &p1);
    let pki = host(d.path(), PKI);
    assert_eq!(
        std::fs::read_link(pki.join("apiserver.crt")).unwrap(),
        Path::new("..apiserver.data/apiserver.crt")
    );
    assert_eq!(
        std::fs::read_link(pki.join("apiserver.key")).unwrap(),
        Path::new("..apiserver.data/apiserver.key")
    );
    assert_eq!(
        std::fs::read_link(pki.join("..apiserver.data")).unwrap(),
        Path::new(&v1.version.name)
    );
    assert!(
        v1.version.name.starts_with("..apiserver.2"),
        "{}",
        v1.version.name
    );
    assert_eq!(mode(&pki.join("apiserver.crt")), 0o644);
    assert_eq!(mode(&pki.join("apiserver.key")), 0o600);

    let p2 = gen("api-2");
    let v2 = store
        .install(&apiserver(), p2.cert.as_bytes(), p2.key.as_bytes(), t(0))
        .unwrap();
    assert_ne!(v1.version.name, v2.version.name);
    assert_pair_is(d.path(), CRT, KEY, &p2);
    assert!(temps(d.path(), PKI).is_empty());

    // The inventory sees one certificate with its key, nothing of the history.
    let inv = inventory::collect(&node(d.path()), &[Target::PkiDir(PKI.into())]);
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert_eq!(inv[0].key_matches, Some(true), "{inv:?}");
}

#[test]
fn several_pairs_share_a_directory() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let a = gen("a");
    let b = gen("b");
    let front = Managed::Pair {
        cert: format!("{PKI}/front-proxy-client.crt").into(),
        key: format!("{PKI}/front-proxy-client.key").into(),
    };
    store
        .install(&apiserver(), a.cert.as_bytes(), a.key.as_bytes(), t(0))
        .unwrap();
    store
        .install(&front, b.cert.as_bytes(), b.key.as_bytes(), t(0))
        .unwrap();
    assert_pair_is(d.path(), CRT, KEY, &a);
    assert_pair_is(
        d.path(),
        &format!("{PKI}/front-proxy-client.crt"),
        &format!("{PKI}/front-proxy-client.key"),
        &b,
    );
    assert_eq!(store.versions(&apiserver()).unwrap().len(), 1);
    assert_eq!(store.versions(&front).unwrap().len(), 1);
    let inv = inventory::collect(&node(d.path()), &[Target::PkiDir(PKI.into())]);
    assert_eq!(inv.len(), 2, "{inv:?}");
}

#[test]
fn migration_from_plain_files_keeps_mode_and_owner() {
    let d = tempfile::tempdir().unwrap();
    let old = gen("kubeadm");
    write_plain(d.path(), PKI, "apiserver", &old);
    let pki = host(d.path(), PKI);
    std::fs::set_permissions(
        pki.join("apiserver.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(
        pki.join("apiserver.crt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o604),
    )
    .unwrap();
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        std::os::unix::fs::lchown(pki.join("apiserver.key"), Some(1234), Some(4321)).unwrap();
    } else {
        println!("not root: owner preservation not exercised (cannot chown to another user)");
    }

    let store = Store::new(node(d.path()), 5);
    let new = gen("new");
    store
        .install(&apiserver(), new.cert.as_bytes(), new.key.as_bytes(), t(0))
        .unwrap();
    assert_pair_is(d.path(), CRT, KEY, &new);
    // A new private key is 0600 whatever the old one's mode (owner and group kept).
    assert_eq!(mode(&pki.join("apiserver.key")), 0o600);
    assert_eq!(mode(&pki.join("apiserver.crt")), 0o604);
    if as_root {
        assert_eq!(owner(&pki.join("apiserver.key")), (1234, 4321));
    }
    // Two versions: the migrated kubeadm pair, then the new one; rollback finds the old.
    let versions = store.versions(&apiserver()).unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    store.rollback(&apiserver()).unwrap();
    assert_pair_is(d.path(), CRT, KEY, &old);
}

#[cfg(feature = "failpoints")]
#[test]
fn migration_interrupted_after_the_first_link_still_shows_old_with_old() {
    use kube_cert_agent::store::failpoint;
    let d = tempfile::tempdir().unwrap();
    let old = gen("kubeadm");
    write_plain(d.path(), PKI, "apiserver", &old);
    let store = Store::new(node(d.path()), 5);
    let new = gen("new");
    failpoint::arm("store::migrated-data", "error");
    assert!(store
        .install(&apiserver(), new.cert.as_bytes(), new.key.as_bytes(), t(0))
        .is_err());
    failpoint::disarm_all();
    assert_pair_is(d.path(), CRT, KEY, &old);
    store
        .install(&apiserver(), new.cert.as_bytes(), new.key.as_bytes(), t(0))
        .unwrap();
    assert_pair_is(d.path(), CRT, KEY, &new);
}

#[test]
fn history_is_pruned_to_n_current_included() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 3);
    for i in 0..6 {
        let p = gen(&format!("v{i}"));
        store
            .install(&apiserver(), p.cert.as_bytes(), p.key.as_bytes(), t(i))
            .unwrap();
        store
            .install(&kubelet_client(), p.cert.as_bytes(), p.key.as_bytes(), t(i))
            .unwrap();
    }
    for m in [apiserver(), kubelet_client()] {
        let v = store.versions(&m).unwrap();
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[2].current, "{v:?}");
        assert!(v.windows(2).all(|w| w[0].stamp < w[1].stamp));
    }
    // Nothing else is left in the directories: 3 dirs + data link + 2 names; 3 + current.
    assert_eq!(std::fs::read_dir(host(d.path(), PKI)).unwrap().count(), 6);
    assert_eq!(
        std::fs::read_dir(host(d.path(), KUBELET_PKI))
            .unwrap()
            .count(),
        4
    );
}

#[test]
fn rollback_steps_back_one_version_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let ps: Vec<Pair> = (0..3).map(|i| gen(&format!("v{i}"))).collect();
    for (i, p) in ps.iter().enumerate() {
        store
            .install(
                &apiserver(),
                p.cert.as_bytes(),
                p.key.as_bytes(),
                t(i as i64),
            )
            .unwrap();
        store
            .install(
                &kubelet_client(),
                p.cert.as_bytes(),
                p.key.as_bytes(),
                t(i as i64),
            )
            .unwrap();
    }
    store.rollback(&apiserver()).unwrap();
    store.rollback(&kubelet_client()).unwrap();
    assert_pair_is(d.path(), CRT, KEY, &ps[1]);
    assert_pair_is(d.path(), CURRENT, CURRENT, &ps[1]);
    store.rollback(&apiserver()).unwrap();
    store.rollback(&kubelet_client()).unwrap();
    assert_pair_is(d.path(), CRT, KEY, &ps[0]);
    assert_pair_is(d.path(), CURRENT, CURRENT, &ps[0]);
    let e = store.rollback(&apiserver()).unwrap_err().to_string();
    assert!(
        e.contains("apiserver.crt") && e.contains("no older version"),
        "{e}"
    );
    assert!(store.rollback(&kubelet_client()).is_err());
    // Still the oldest; the newer versions are kept, listed, not current.
    assert_pair_is(d.path(), CRT, KEY, &ps[0]);
    let v = store.versions(&apiserver()).unwrap();
    assert_eq!(v.iter().filter(|v| v.current).count(), 1);
    assert!(v[0].current);
    // A new install after a rollback becomes current.
    let p = gen("after");
    store
        .install(&apiserver(), p.cert.as_bytes(), p.key.as_bytes(), t(10))
        .unwrap();
    assert_pair_is(d.path(), CRT, KEY, &p);
}

#[test]
fn rollback_without_history_is_an_error_naming_the_path() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host(d.path(), KUBELET_PKI)).unwrap();
    let store = Store::new(node(d.path()), 5);
    let e = store.rollback(&kubelet_client()).unwrap_err().to_string();
    assert!(
        e.contains("kubelet-client-current.pem") && e.contains("no current version"),
        "{e}"
    );
}

#[test]
fn write_file_creates_with_the_given_mode_and_keeps_an_existing_ones() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let conf = Path::new("/etc/kubernetes/kubelet.conf");
    let hconf = host(d.path(), "/etc/kubernetes/kubelet.conf");
    store.write_file(conf, b"one", FileSpec::KEY).unwrap();
    assert_eq!(std::fs::read(&hconf).unwrap(), b"one");
    assert_eq!(mode(&hconf), 0o600);
    std::fs::set_permissions(&hconf, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        std::os::unix::fs::lchown(&hconf, Some(65534), Some(65534)).unwrap();
    }
    let ino = std::fs::metadata(&hconf).unwrap().ino();
    store.write_file(conf, b"two", FileSpec::KEY).unwrap();
    assert_eq!(std::fs::read(&hconf).unwrap(), b"two");
    // A secret (0600 asked) is tightened back to 0600; the owner stays.
    assert_eq!(mode(&hconf), 0o600);
    if as_root {
        assert_eq!(owner(&hconf), (65534, 65534));
    }
    assert_ne!(
        std::fs::metadata(&hconf).unwrap().ino(),
        ino,
        "replaced, not written in place"
    );
    store
        .write_file(
            Path::new("/etc/kubernetes/pki/ca.crl"),
            b"crl",
            FileSpec::CERT,
        )
        .unwrap();
    let hcrl = host(d.path(), "/etc/kubernetes/pki/ca.crl");
    assert_eq!(mode(&hcrl), 0o644);
    // A file that is not a secret keeps the mode it was given.
    std::fs::set_permissions(&hcrl, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    store
        .write_file(
            Path::new("/etc/kubernetes/pki/ca.crl"),
            b"crl2",
            FileSpec::CERT,
        )
        .unwrap();
    assert_eq!(mode(&hcrl), 0o640);
    assert!(temps(d.path(), "/etc/kubernetes").is_empty());
}

#[test]
fn leftover_temporary_files_are_removed_by_the_next_install() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let p = gen("a");
    store
        .install(&apiserver(), p.cert.as_bytes(), p.key.as_bytes(), t(0))
        .unwrap();
    let pki = host(d.path(), PKI);
    std::fs::write(pki.join("..tmp-1-1-file"), b"junk").unwrap();
    std::fs::create_dir(pki.join("..tmp-1-2-version")).unwrap();
    std::fs::write(pki.join("..tmp-1-2-version/apiserver.crt"), b"half").unwrap();
    std::os::unix::fs::symlink("..apiserver.nothing", pki.join("..tmp-1-3-link")).unwrap();
    // One that cannot be removed (a directory inside) must not block the install.
    std::fs::create_dir_all(pki.join("..tmp-1-4-version/sub")).unwrap();
    let p2 = gen("b");
    store
        .install(&apiserver(), p2.cert.as_bytes(), p2.key.as_bytes(), t(1))
        .unwrap();
    assert_pair_is(d.path(), CRT, KEY, &p2);
    assert_eq!(temps(d.path(), PKI), vec!["..tmp-1-4-version".to_string()]);
}

#[test]
fn a_plain_kubelet_current_file_is_kept_as_a_version() {
    let d = tempfile::tempdir().unwrap();
    let kpki = host(d.path(), KUBELET_PKI);
    std::fs::create_dir_all(&kpki).unwrap();
    let old = gen("plain");
    std::fs::write(
        kpki.join("kubelet-client-current.pem"),
        format!("{}{}", old.cert, old.key),
    )
    .unwrap();
    let store = Store::new(node(d.path()), 5);
    let new = gen("new");
    store
        .install(
            &kubelet_client(),
            new.cert.as_bytes(),
            new.key.as_bytes(),
            t(0),
        )
        .unwrap();
    assert_pair_is(d.path(), CURRENT, CURRENT, &new);
    assert!(
        std::fs::symlink_metadata(kpki.join("kubelet-client-current.pem"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(store.versions(&kubelet_client()).unwrap().len(), 2);
    store.rollback(&kubelet_client()).unwrap();
    assert_pair_is(d.path(), CURRENT, CURRENT, &old);
}

#[test]
fn listing_a_missing_directory_is_an_error_and_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(node(d.path()), 5);
    let e = store.versions(&apiserver()).unwrap_err().to_string();
    assert!(
        e.contains("/etc/kubernetes/pki") && e.contains("No such file"),
        "{e}"
    );
    assert!(!host(d.path(), PKI).exists());
}
