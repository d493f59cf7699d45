//! Crashes in every phase of a CA rotation: the agent is killed (SIGKILL at random
//! moments, and, with the `failpoints` feature, aborted before each file it writes lands,
//! one run per file) and run again until the phase completes. After every crash the node
//! must still work (every leaf verifies against every trust point; the signing certificate
//! belongs to the signing key), and the rotation must end where an uninterrupted one does.

mod ca_rotation_common;
mod support;

use std::process::Stdio;
use std::time::Duration;

use ca_rotation_common::*;

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u64::from_le_bytes(b) % n
}

/// SIGKILL `rotate-ca cluster --phase PHASE` `kills` times at random moments.
fn random_kills(k: &Kubeadm, phase: &str, kills: usize) {
    for i in 0..kills {
        let mut child = support::agent_cmd()
            .arg("--root")
            .arg(k.node.root())
            .args(["rotate-ca", "cluster", "--phase", phase])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(random_below(200)));
        let _ = child.kill();
        child.wait().unwrap();
        assert_cluster_ca_works(k, &format!("{phase}: after random kill {i}"));
    }
}

/// For n = 1, 2, ...: on a copy of the node at the start of the phase, run the phase with
/// the agent aborting just before the n-th file it writes lands; the copy must still work,
/// and running the phase again must complete it. Stops at the first n the phase gets
/// through; returns how many crash points there were.
#[cfg(feature = "failpoints")]
fn crash_at_every_write(k: &Kubeadm, phase: &str) -> usize {
    for n in 1.. {
        let copy = k.fork();
        let out = support::agent_cmd()
            .arg("--root")
            .arg(copy.node.root())
            .args(["rotate-ca", "cluster", "--phase", phase])
            .env("KCA_FAILPOINTS", format!("store::after-fsync=abort@{n}"))
            .output()
            .unwrap();
        match out.status.code() {
            None => assert_cluster_ca_works(&copy, &format!("{phase}: crashed before write {n}")),
            Some(0) => return n - 1,
            Some(c) => panic!(
                "{phase}: exit {c} with a failpoint: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        finish(&copy, phase);
    }
    unreachable!()
}

fn finish(k: &Kubeadm, phase: &str) {
    let (code, text) = k.phase("cluster", phase, &[]);
    assert_eq!(
        code, 0,
        "{phase} did not complete after the crashes: {text}"
    );
    let status = k.node.agent(&["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let r = &v["caRotations"][0];
    assert_eq!(
        (r["phase"].as_str(), r["complete"].as_bool()),
        (Some(phase), Some(true)),
        "{v:#}"
    );
}

#[test]
fn crashes_in_every_phase_leave_a_working_node_and_the_rotation_resumes() {
    let k = Kubeadm::new("https://127.0.0.1:6443", "");
    let ca = k.node.path(CAS[0].cert);
    let old = bundle_serials(&ca);
    for phase in ["prepare", "reissue", "finalize"] {
        // Every-write crashes first, on copies of the node at the start of the phase: after
        // the random kills part of the phase is done, and how many writes remain is chance.
        #[cfg(feature = "failpoints")]
        {
            let crashes = crash_at_every_write(&k, phase);
            println!("{phase}: {crashes} crash points, each resumed to completion");
            assert!(crashes >= 3, "{phase}: only {crashes} writes");
        }
        random_kills(&k, phase, 2);
        finish(&k, phase);
        assert_cluster_ca_works(&k, &format!("{phase}: complete"));
        let b = bundle_serials(&ca);
        match phase {
            "prepare" => assert_eq!((b.len(), &b[0]), (2, &old[0])),
            "reissue" => {
                assert_eq!((b.len(), &b[1]), (2, &old[0]));
                kubelet_from_new_ca(&k);
            }
            _ => assert!(b.len() == 1 && b[0] != old[0], "{b:?}"),
        }
        // A crashed run may have restarted dependents already; the phase did so at least once.
        assert!(k.restart_lines().iter().any(|l| l == "ca-cluster"));
    }
}
