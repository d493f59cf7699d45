//! `make demo` (scripts/demo.sh) takes its binaries from CARGO_TARGET_DIR, as cargo put
//! them there. The build is stubbed (CARGO=true) and the binaries are recorders, so this
//! checks only which binaries the script runs, in about a second.

use std::os::unix::fs::PermissionsExt;

#[test]
fn make_demo_runs_the_binaries_of_cargo_target_dir() {
    let target = tempfile::tempdir().unwrap();
    let release = target.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    let calls = target.path().join("calls");
    for bin in ["kube-cert-agent", "standin-apiserver"] {
        let p = release.join(bin);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"$0 $*\" >> {}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let node = target.path().join("node");
    // The recorders print nothing, so the demo stops at its first check of real output;
    // what it ran until then is the point.
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"))
        .env("CARGO", "true")
        .env("CARGO_TARGET_DIR", target.path())
        .env("DEMO_NODE", &node)
        .output()
        .expect("bash runs the demo");
    let ran = std::fs::read_to_string(&calls).unwrap_or_else(|_| {
        panic!(
            "the demo ran no binary from CARGO_TARGET_DIR:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let first = ran.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "{} --root {} check",
            release.join("kube-cert-agent").display(),
            node.display()
        )
    );
    assert!(node.join("etc/kubernetes/pki/ca.crt").exists());
}
