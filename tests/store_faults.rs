//! Real failures from the system: ENOSPC (a full tmpfs), EROFS (a read-only mount), EACCES
//! (a child running as nobody). Mounts happen in a private mount namespace: the test
//! binary re-runs itself under `unshare --mount` with `KCA_STORE_CHILD` naming the role.
//! After each failure the previous certificate and key must still be in place and match.

mod store_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube_cert_agent::store::{FileSpec, Managed, PkiStore, Store};
use store_common::*;

const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
const KEY: &str = "/etc/kubernetes/pki/apiserver.key";
const CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;
const EACCES: i32 = 13;

fn apiserver() -> Managed {
    Managed::Pair {
        cert: CRT.into(),
        key: KEY.into(),
    }
}

fn kubelet_client() -> Managed {
    Managed::Kubelet {
        dir: KUBELET_PKI.into(),
        name: "kubelet-client".into(),
    }
}

/// Install a first version of both styles; return it.
fn install_first(root: &Path) -> Pair {
    let store = Store::new(node(root), 5);
    let p = gen("first");
    store
        .install(&apiserver(), p.cert.as_bytes(), p.key.as_bytes(), t(0))
        .unwrap();
    store
        .install(&kubelet_client(), p.cert.as_bytes(), p.key.as_bytes(), t(0))
        .unwrap();
    p
}

/// Try a second version of both styles and a kubeconfig write; each must fail with
/// `errno`, name its path, and leave the first version whole.
fn second_install_fails(root: &Path, first: &Pair, errno: i32) {
    let store = Store::new(node(root), 5);
    let p = gen("second-with-a-longer-name-to-need-more-space");
    for m in [apiserver(), kubelet_client()] {
        let err = store
            .install(&m, p.cert.as_bytes(), p.key.as_bytes(), t(1))
            .unwrap_err();
        println!("{m:?}: {err}");
        assert_eq!(err.raw_os_error(), Some(errno), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(root.to_str().unwrap()), "no path in: {msg}");
    }
    let err = store
        .write_file(
            Path::new("/var/lib/kubelet/pki/kubeconfig"),
            &[b'x'; 64 * 1024],
            FileSpec::KEY,
        )
        .unwrap_err();
    println!("write_file: {err}");
    assert_eq!(err.raw_os_error(), Some(errno), "{err}");
    assert_pair_is(root, CRT, KEY, first);
    assert_pair_is(root, CURRENT, CURRENT, first);
    assert!(temps(root, PKI).is_empty(), "{:?}", temps(root, PKI));
    assert!(
        temps(root, KUBELET_PKI).is_empty(),
        "{:?}",
        temps(root, KUBELET_PKI)
    );
    assert_eq!(store.versions(&apiserver()).unwrap().len(), 1);
    assert_eq!(store.versions(&kubelet_client()).unwrap().len(), 1);
}

fn mount(args: &[&str]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The child side: runs only when the parent set `KCA_STORE_CHILD`.
#[test]
fn child() {
    let Ok(role) = std::env::var("KCA_STORE_CHILD") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("KCA_STORE_DIR").unwrap());
    match role.as_str() {
        "enospc" | "erofs" => {
            if let Err(e) = mount(&[
                "-t",
                "tmpfs",
                "-o",
                "size=64k",
                "tmpfs",
                dir.to_str().unwrap(),
            ]) {
                println!("CANNOT-MOUNT: {e}");
                return;
            }
            let first = install_first(&dir);
            if role == "enospc" {
                // Fill the file system to the last block.
                let mut f = std::fs::File::create(dir.join("filler")).unwrap();
                let block = [0u8; 512];
                loop {
                    match f.write(&block) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            assert_eq!(e.raw_os_error(), Some(ENOSPC), "{e}");
                            break;
                        }
                    }
                }
                drop(f);
                second_install_fails(&dir, &first, ENOSPC);
                // Space again: the next install works and nothing left behind gets in the way.
                std::fs::remove_file(dir.join("filler")).unwrap();
                let store = Store::new(node(&dir), 5);
                let p = gen("third");
                store
                    .install(&apiserver(), p.cert.as_bytes(), p.key.as_bytes(), t(2))
                    .unwrap();
                assert_pair_is(&dir, CRT, KEY, &p);
            } else {
                mount(&["-o", "remount,ro", dir.to_str().unwrap()]).unwrap();
                second_install_fails(&dir, &first, EROFS);
            }
        }
        "eacces" => {
            let store = Store::new(node(&dir), 5);
            let p = gen("second");
            for m in [apiserver(), kubelet_client()] {
                let err = store
                    .install(&m, p.cert.as_bytes(), p.key.as_bytes(), t(1))
                    .unwrap_err();
                println!("{m:?}: {err}");
                assert_eq!(err.raw_os_error(), Some(EACCES), "{err}");
                assert!(err.to_string().contains("Permission denied"), "{err}");
            }
        }
        other => panic!("unknown child role {other}"),
    }
    println!("CHILD-OK");
}

fn run_child(
    prefix: &[&str],
    role: &str,
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<String, String> {
    let mut cmd = child_command(prefix, "child");
    cmd.env("KCA_STORE_CHILD", role).env("KCA_STORE_DIR", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {prefix:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "child {role} failed: {:?}",
        out.status
    );
    Ok(stdout)
}

fn in_private_mount_namespace(role: &str) {
    let d = tempfile::tempdir().unwrap();
    let prefix = ["unshare", "--mount", "--propagation", "private"];
    // CI runs as root with unshare(1): a machine that cannot mount fails the test.
    let out = run_child(&prefix, role, d.path(), &[]).unwrap_or_else(|e| panic!("{role}: {e}"));
    assert!(
        !out.contains("CANNOT-MOUNT"),
        "{role}: no tmpfs mount in a private namespace (needs root and unshare)"
    );
    assert!(out.contains("CHILD-OK"), "child did not finish");
}

#[test]
fn enospc_on_a_full_tmpfs_leaves_the_previous_version() {
    in_private_mount_namespace("enospc");
}

#[test]
fn erofs_on_a_read_only_mount_leaves_the_previous_version() {
    in_private_mount_namespace("erofs");
}

#[test]
fn eacces_as_nobody_leaves_the_previous_version() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root to run a child as uid 65534 (CI runs as root)"
    );
    let d = tempfile::tempdir().unwrap();
    // Traversable by nobody, so that the failure is the write and not the path.
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let first = install_first(d.path());
    let prefix = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ];
    let out = run_child(&prefix, "eacces", d.path(), &[]).unwrap();
    assert!(out.contains("CHILD-OK"), "child did not finish");
    assert_pair_is(d.path(), CRT, KEY, &first);
    assert_pair_is(d.path(), CURRENT, CURRENT, &first);
    assert!(temps(d.path(), PKI).is_empty());
    assert!(temps(d.path(), KUBELET_PKI).is_empty());
}
