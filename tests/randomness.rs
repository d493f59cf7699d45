//! Where keys, signatures and serials get their randomness: the binary names the source
//! (aws-lc's DRBG seeded from getrandom, its CPU-jitter source built out), and what it
//! produces does not repeat, within a process and across processes.

mod support;

use std::collections::HashSet;

use kube_cert_agent::pki::issue::{self, Ca, LeafSpec, Usage};
use kube_cert_agent::pki::keygen::{self, KeyType};
use kube_cert_agent::pki::randomness::{self, DrbgSeed};
use rcgen::PublicKeyData;
use support::openssl::{self, Key};
use support::NodeTree;

#[test]
fn version_verbose_names_the_kernel_as_the_seed_source() {
    let out = support::agent_cmd()
        .args(["version", "--verbose"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("aws-lc CTR-DRBG seeded from the kernel (getrandom)")
            && text.contains("CPU-jitter entropy source: off"),
        "built without .cargo/config.toml's AWS_LC_SYS_NO_JITTER_ENTROPY? {text}"
    );
    assert!(
        text.contains("serial numbers: 128 bits from getrandom"),
        "{text}"
    );
    // The library linked into the tests says the same.
    assert_eq!(randomness::drbg_seed(), DrbgSeed::Kernel);
}

#[test]
fn keys_and_serials_never_repeat_within_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let ca = openssl::ca(dir.path(), "ca", Key::P256, "kubernetes", 3650);
    // After openssl made the CA: its notBefore is the second openssl ran in.
    let now = time::OffsetDateTime::now_utc();
    let ca = Ca::load(
        &std::fs::read(&ca.cert).unwrap(),
        &std::fs::read(&ca.key).unwrap(),
        now,
    )
    .unwrap();
    let spec = LeafSpec {
        common_name: "kube-apiserver".into(),
        organizations: vec![],
        dns_names: vec!["kubernetes".into()],
        ip_addresses: vec![],
        usages: vec![Usage::ServerAuth],
        validity: time::Duration::hours(96),
        not_before_floor: None,
    };
    // Four threads at once: aws-lc keeps a DRBG per thread, each seeded on its own.
    let per_thread = 150;
    let issued: Vec<(Vec<u8>, Vec<u8>, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (ca, spec) = (&ca, &spec);
                s.spawn(move || {
                    let kt = if t % 2 == 0 {
                        KeyType::EcdsaP256
                    } else {
                        KeyType::EcdsaP384
                    };
                    (0..per_thread)
                        .map(|_| {
                            let key = keygen::generate(kt).unwrap();
                            let leaf = issue::issue(ca, spec, &key, now).unwrap();
                            (
                                key.der_bytes().to_vec(),
                                key.serialize_der(),
                                leaf.info.serial,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let n = issued.len();
    let publics: HashSet<_> = issued.iter().map(|i| &i.0).collect();
    let privates: HashSet<_> = issued.iter().map(|i| &i.1).collect();
    let serials: HashSet<_> = issued.iter().map(|i| &i.2).collect();
    assert_eq!((publics.len(), privates.len(), serials.len()), (n, n, n));
    for (_, _, serial) in &issued {
        // 128 bits, the top bit cleared (a positive INTEGER) and no leading zero byte.
        assert_eq!(serial.len(), 32, "{serial}");
        assert!(
            serial.as_bytes()[0] <= b'7' && !serial.starts_with("00"),
            "{serial}"
        );
    }
}

#[test]
fn keys_and_serials_never_repeat_across_processes() {
    // Each `rotate` is a fresh process: its DRBG is seeded anew from getrandom.
    let node = NodeTree::new();
    let pki = node.path("/etc/kubernetes/pki");
    openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    std::fs::write(
        node.path("/etc/kube-cert-agent/config.yaml"),
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n\
         - name: apiserver\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  \
         cert: /etc/kubernetes/pki/apiserver.crt\n  key: /etc/kubernetes/pki/apiserver.key\n  \
         subject: {commonName: kube-apiserver}\n  dnsNames: [kubernetes]\n  usages: [serverAuth]\n",
    )
    .unwrap();
    let runs = 12;
    let (mut serials, mut keys) = (HashSet::new(), HashSet::new());
    for _ in 0..runs {
        let out = node.agent(&["rotate", "apiserver"]);
        assert!(out.status.success(), "{out:?}");
        let view = openssl::view(&pki.join("apiserver.crt"));
        serials.insert(view.serial);
        keys.insert(std::fs::read(pki.join("apiserver.key")).unwrap());
    }
    assert_eq!((serials.len(), keys.len()), (runs, runs));
}
