//! Helpers shared by the tests/store_*.rs integration tests.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kube_cert_agent::paths::NodeRoot;
use kube_cert_agent::pki::{key, parse_material, CertInfo};
use time::OffsetDateTime;

pub const PKI: &str = "/etc/kubernetes/pki";
pub const KUBELET_PKI: &str = "/var/lib/kubelet/pki";

/// A fresh self-signed certificate and its key (PEM), with `cn` as its DNS name.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

pub fn gen(cn: &str) -> Pair {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    let cert = params.self_signed(&kp).unwrap();
    Pair {
        cert: cert.pem(),
        key: kp.serialize_pem(),
    }
}

pub fn node(root: &Path) -> NodeRoot {
    NodeRoot::new(root)
}

pub fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000 + secs).unwrap()
}

/// Read a certificate (first in file) and key (a separate file, or the same one) as a
/// reader would (through links, inside the root), and check the key belongs to it.
/// Returns the certificate's DER.
pub fn read_valid(root: &Path, cert: &str, key_path: &str) -> Result<Vec<u8>, String> {
    let r = node(root);
    let cb = r
        .read(Path::new(cert))
        .map_err(|e| format!("{cert}: {e}"))?;
    let kb = r
        .read(Path::new(key_path))
        .map_err(|e| format!("{key_path}: {e}"))?;
    let cm = parse_material(&cb).map_err(|e| format!("{cert}: {e}"))?;
    let der = cm
        .certificates
        .first()
        .ok_or_else(|| format!("{cert}: no certificate"))?
        .clone();
    let info = CertInfo::parse(&der).map_err(|e| format!("{cert}: {e}"))?;
    let km = parse_material(&kb).map_err(|e| format!("{key_path}: {e}"))?;
    if km.private_keys.len() != 1 {
        return Err(format!("{key_path}: {} keys", km.private_keys.len()));
    }
    let public = key::public_key_of(&km.private_keys[0]).map_err(|e| format!("{key_path}: {e}"))?;
    if public != info.public_key {
        return Err(format!("{cert} / {key_path}: key does not match"));
    }
    Ok(der)
}

/// The DER of the first certificate in a PEM string.
pub fn der_of(pem_text: &str) -> Vec<u8> {
    parse_material(pem_text.as_bytes()).unwrap().certificates[0].clone()
}

/// Assert that the pair at `cert`/`key` (node paths) is `expected`, whole and matching.
pub fn assert_pair_is(root: &Path, cert: &str, key_path: &str, expected: &Pair) {
    let der = read_valid(root, cert, key_path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        der == der_of(&expected.cert),
        "{cert} is not the expected version"
    );
}

pub fn host(root: &Path, node_path: &str) -> PathBuf {
    root.join(node_path.trim_start_matches('/'))
}

/// Names starting with `..tmp-` in a node directory.
pub fn temps(root: &Path, node_dir: &str) -> Vec<String> {
    std::fs::read_dir(host(root, node_dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..tmp-"))
        .collect()
}

pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

pub fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// Write kubeadm's layout: plain `NAME.crt` and `NAME.key` files.
pub fn write_plain(root: &Path, dir: &str, name: &str, p: &Pair) {
    let d = host(root, dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("{name}.crt")), &p.cert).unwrap();
    std::fs::write(d.join(format!("{name}.key")), &p.key).unwrap();
}

/// Run the current test binary's test `name` as a child, with extra environment.
pub fn child_command(prefix: &[&str], test_name: &str) -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if prefix.is_empty() {
        std::process::Command::new(&exe)
    } else {
        let mut c = std::process::Command::new(prefix[0]);
        c.args(&prefix[1..]).arg(&exe);
        c
    };
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"]);
    cmd
}

/// xorshift64: the kill moments, reproducible from the printed seed.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Spawn a crash child, wait for its "ready" line, let it run for a random moment below
/// `max_us` microseconds, SIGKILL it, and return the lines it printed after "ready".
pub fn run_and_kill(
    mut cmd: std::process::Command,
    rng: &mut Xorshift,
    max_us: u64,
) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A reader thread, so that a child that never says "ready" fails the test instead of
    // hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // libtest prints "test NAME ... " without a newline before the test runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.ends_with("ready") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child did not get ready: {e}");
            }
        }
    }
    std::thread::sleep(Duration::from_micros(rng.next() % max_us));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    rx.try_iter().collect()
}
