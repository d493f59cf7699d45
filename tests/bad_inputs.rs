//! A catalog of bad inputs: configs, certificate files, kubeconfigs, revocation files and
//! file-system states. Every case runs the real binary on a copy of one node tree (made
//! once with openssl) and asserts the exit code, that the output names the file and the
//! reason, and that every certificate, key and kubeconfig that was valid before is
//! byte-identical afterwards (except the ones the case says may be repaired).

#[path = "bad_inputs/config_cases.rs"]
mod config_cases;
mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use support::agent_cmd;
use support::openssl::{self, b64, Key, Leaf};

const PKI: &str = "/etc/kubernetes/pki";
const CONFIG: &str = "/etc/kube-cert-agent/config.yaml";
const REVS: &str = "/etc/kube-cert-agent/revocations.d";
const HEAD: &str = "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\n";

/// The public files of the baseline tree: each must read the same after every case.
const WATCHED: &[&str] = &[
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/pki/ca.key",
    "/etc/kubernetes/pki/apiserver.crt",
    "/etc/kubernetes/pki/apiserver.key",
    "/etc/kubernetes/pki/front-proxy-client.crt",
    "/etc/kubernetes/pki/front-proxy-client.key",
    "/etc/kubernetes/admin.conf",
];

const CERTS: &str = "certificates:
- name: apiserver
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver.crt
  key: /etc/kubernetes/pki/apiserver.key
  subject: {commonName: kube-apiserver}
  dnsNames: [kubernetes]
  usages: [serverAuth]
- name: front-proxy-client
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/front-proxy-client.crt
  key: /etc/kubernetes/pki/front-proxy-client.key
  subject: {commonName: front-proxy-client}
  usages: [clientAuth]
kubeconfigs:
- name: admin.conf
  path: /etc/kubernetes/admin.conf
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  subject: {commonName: kubernetes-admin, organizations: ['system:masters']}
";

fn host(root: &Path, node: &str) -> PathBuf {
    root.join(node.trim_start_matches('/'))
}

/// The baseline: a CA, two valid pairs, a kubeconfig with an embedded client certificate,
/// the config that manages them, an empty revocations directory.
fn template() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pki = host(root, PKI);
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::create_dir_all(host(root, REVS)).unwrap();
    std::fs::create_dir_all(host(root, "/var/lib/kubelet/pki")).unwrap();
    let ca = openssl::ca(&pki, "ca", Key::P256, "kubernetes", 3650);
    for (name, cn) in [
        ("apiserver", "kube-apiserver"),
        ("front-proxy-client", "front-proxy-client"),
    ] {
        openssl::leaf(
            &pki,
            name,
            &ca,
            &Leaf {
                subject: &format!("/CN={cn}"),
                days: 30,
                ..Leaf::default()
            },
        );
    }
    let work = tempfile::tempdir().unwrap();
    let admin = openssl::leaf(
        work.path(),
        "admin",
        &ca,
        &Leaf {
            subject: "/O=system:masters/CN=kubernetes-admin",
            eku: "clientAuth",
            days: 30,
            ..Leaf::default()
        },
    );
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: {}\ncontexts:\n- name: kubernetes-admin@kubernetes\n  context: {{cluster: kubernetes, user: kubernetes-admin}}\ncurrent-context: kubernetes-admin@kubernetes\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&ca.cert),
        b64(&admin.cert),
        b64(&admin.key)
    );
    std::fs::write(host(root, "/etc/kubernetes/admin.conf"), kc).unwrap();
    write_config(root, &format!("{HEAD}{CERTS}"));
    dir
}

fn write_config(root: &Path, text: &str) {
    std::fs::create_dir_all(host(root, "/etc/kube-cert-agent")).unwrap();
    std::fs::write(host(root, CONFIG), text).unwrap();
}

fn snapshot(root: &Path) -> Vec<(&'static str, Option<Vec<u8>>)> {
    // Only regular files are read (a FIFO a case put there would block the read).
    let read = |p: &str| {
        let h = host(root, p);
        std::fs::metadata(&h)
            .ok()
            .filter(|m| m.is_file())
            .and_then(|_| std::fs::read(&h).ok())
    };
    WATCHED.iter().map(|p| (*p, read(p))).collect()
}

type Setup = Box<dyn Fn(&Path)>;

struct Case {
    name: String,
    setup: Setup,
    /// Command line after `--root ROOT`.
    args: Vec<&'static str>,
    code: i32,
    /// The file the output must name (node path) and words of the reason.
    file: &'static str,
    reason: Vec<String>,
    /// Watched files the case breaks itself or that a repair may replace.
    may_change: Vec<&'static str>,
}

fn case(
    name: impl Into<String>,
    args: &[&'static str],
    code: i32,
    file: &'static str,
    reason: &[&str],
    setup: impl Fn(&Path) + 'static,
) -> Case {
    Case {
        name: name.into(),
        setup: Box::new(setup),
        args: args.to_vec(),
        code,
        file,
        reason: reason.iter().map(|s| s.to_string()).collect(),
        may_change: vec![],
    }
}

impl Case {
    fn changes(mut self, files: &[&'static str]) -> Case {
        self.may_change.extend_from_slice(files);
        self
    }
}

/// A config case, run through every command that loads the config (`run` too: one
/// validation for all): exit 3, naming the config file and the reason.
fn config_cases(label: &str, body: String, reason: &[&str]) -> Vec<Case> {
    let body = std::rc::Rc::new(body);
    [vec!["check"], vec!["rotate"], vec!["repair"], vec!["run"]]
        .into_iter()
        .map(|args| {
            let b = body.clone();
            case(
                format!("config {label} ({})", args[0]),
                &args,
                3,
                CONFIG,
                reason,
                move |r| write_config(r, &b),
            )
        })
        .collect()
}

fn cert_entry(extra: &str) -> String {
    format!("{HEAD}certificates:\n- name: a\n  ca: {{cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}}\n  cert: /etc/kubernetes/pki/a.crt\n  key: /etc/kubernetes/pki/a.key\n{extra}")
}

fn action(a: &str) -> String {
    cert_entry(&format!("  onRotate: [{a}]\n"))
}

fn replace_with_dir(r: &Path, p: &str) {
    std::fs::remove_file(host(r, p)).unwrap();
    std::fs::create_dir(host(r, p)).unwrap();
}

fn replace_with_socket(r: &Path, p: &str) {
    std::fs::remove_file(host(r, p)).unwrap();
    let l = std::os::unix::net::UnixListener::bind(host(r, p)).unwrap();
    std::mem::forget(l);
}

fn replace_with_fifo(r: &Path, p: &str) {
    std::fs::remove_file(host(r, p)).unwrap();
    let out = std::process::Command::new("mkfifo")
        .arg(host(r, p))
        .status()
        .unwrap();
    assert!(out.success());
}

fn write(r: &Path, p: &str, data: &[u8]) {
    std::fs::write(host(r, p), data).unwrap();
}

fn copy(r: &Path, from: &str, to: &str) {
    std::fs::copy(host(r, from), host(r, to)).unwrap();
}

fn file_cases() -> Vec<Case> {
    const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
    const KEY: &str = "/etc/kubernetes/pki/apiserver.key";
    const FP_KEY: &str = "/etc/kubernetes/pki/front-proxy-client.key";
    const ADMIN: &str = "/etc/kubernetes/admin.conf";
    let pair = &[CRT, KEY];
    let mut v = vec![
        // What `check` must report about managed files.
        case("check: cert is a directory", &["check"], 2, CRT, &["not a regular file: a directory"], |r| replace_with_dir(r, CRT)).changes(pair),
        case("check: cert is a socket", &["check"], 2, CRT, &["not a regular file: a socket"], |r| replace_with_socket(r, CRT)).changes(pair),
        case("check: cert is a FIFO", &["check"], 2, CRT, &["not a regular file: a named pipe"], |r| replace_with_fifo(r, CRT)).changes(pair),
        case("check: key is a socket", &["check"], 2, KEY, &["not a regular file: a socket"], |r| replace_with_socket(r, KEY)).changes(pair),
        case("check: pair deleted", &["check"], 2, CRT, &["missing", "apiserver.key"], |r| {
            std::fs::remove_file(host(r, CRT)).unwrap();
            std::fs::remove_file(host(r, KEY)).unwrap();
        }).changes(pair),
        case("check: key deleted", &["check"], 2, KEY, &["torn"], |r| std::fs::remove_file(host(r, KEY)).unwrap()).changes(pair),
        case("check: cert deleted", &["check"], 2, CRT, &["missing"], |r| std::fs::remove_file(host(r, CRT)).unwrap()).changes(pair),
        case("check: cert empty", &["check"], 2, CRT, &["empty file"], |r| write(r, CRT, b"")).changes(pair),
        case("check: cert garbage", &["check"], 2, CRT, &["neither PEM nor"], |r| write(r, CRT, b"hello, not a certificate\x00\x01")).changes(pair),
        case("check: cert truncated PEM", &["check"], 2, CRT, &["PEM"], |r| {
            let t = std::fs::read_to_string(host(r, CRT)).unwrap();
            write(r, CRT, &t.as_bytes()[..t.len() / 2])
        }).changes(pair),
        case("check: cert too large", &["check"], 2, CRT, &["too large"], |r| write(r, CRT, &vec![b'A'; 5 << 20])).changes(pair),
        case("check: cert dangling link", &["check"], 2, CRT, &["dangling symlink"], |r| {
            std::fs::remove_file(host(r, CRT)).unwrap();
            symlink("/nowhere/x.crt", host(r, CRT)).unwrap();
        }).changes(pair),
        case("check: cert symlink loop", &["check"], 2, CRT, &["symlink loop"], |r| {
            std::fs::remove_file(host(r, CRT)).unwrap();
            symlink("apiserver.crt", host(r, CRT)).unwrap();
        }).changes(pair),
        case("check: CA in the leaf's slot", &["check"], 2, CRT, &["CA certificate where a leaf"], |r| copy(r, "/etc/kubernetes/pki/ca.crt", CRT)).changes(pair),
        case("check: key of another pair", &["check"], 2, CRT, &["match"], |r| copy(r, FP_KEY, KEY)).changes(pair),
        case("check: kubeconfig empty", &["check"], 2, ADMIN, &["empty file"], |r| write(r, ADMIN, b"")).changes(&[ADMIN]),
        case("check: kubeconfig without users", &["check"], 2, ADMIN, &["no user with a client certificate"], |r| write(r, ADMIN, b"apiVersion: v1\nkind: Config\nusers: []\n")).changes(&[ADMIN]),
        case("check: kubeconfig not YAML", &["check"], 2, ADMIN, &["not a kubeconfig"], |r| write(r, ADMIN, b"{{{{")).changes(&[ADMIN]),
        case("check: kubeconfig missing", &["check"], 2, ADMIN, &["missing"], |r| std::fs::remove_file(host(r, ADMIN)).unwrap()).changes(&[ADMIN]),
        case("check: kubeconfig a directory", &["check"], 2, ADMIN, &["not a regular file: a directory"], |r| replace_with_dir(r, ADMIN)).changes(&[ADMIN]),
        case("check: kubeconfig bad base64", &["check"], 2, ADMIN, &["client-certificate-data"], |r| {
            let t = std::fs::read_to_string(host(r, ADMIN)).unwrap();
            let i = t.find("client-certificate-data: ").unwrap() + 29;
            write(r, ADMIN, format!("{}$${}", &t[..i], &t[i + 2..]).as_bytes())
        }).changes(&[ADMIN]),
        // What `rotate` refuses, leaving everything else byte-identical.
        case("rotate: cert is a directory", &["rotate", "apiserver"], 4, CRT, &["is a directory"], |r| replace_with_dir(r, CRT)).changes(pair),
        case("rotate: cert is a socket", &["rotate", "apiserver"], 4, CRT, &["not a regular file: a socket"], |r| replace_with_socket(r, CRT)).changes(pair),
        case("rotate: cert is a FIFO", &["rotate", "apiserver"], 4, CRT, &["not a regular file: a named pipe"], |r| replace_with_fifo(r, CRT)).changes(pair),
        case("rotate: key escapes the directory", &["rotate", "apiserver"], 4, KEY, &["outside the managed directory"], |r| {
            std::fs::remove_file(host(r, KEY)).unwrap();
            symlink("../../../kube-cert-agent/config.yaml", host(r, KEY)).unwrap();
        }).changes(pair),
        case("rotate: deleted cert, key of another pair", &["rotate", "apiserver"], 4, KEY, &["is the key of", "front-proxy-client.crt"], |r| {
            std::fs::remove_file(host(r, CRT)).unwrap();
            copy(r, FP_KEY, KEY);
        }).changes(pair),
        case("rotate: deleted key, cert of another pair", &["rotate", "apiserver"], 4, CRT, &["has its key in", "front-proxy-client.key"], |r| {
            std::fs::remove_file(host(r, KEY)).unwrap();
            copy(r, "/etc/kubernetes/pki/front-proxy-client.crt", CRT);
        }).changes(pair),
        case("rotate: CA in the leaf's slot", &["rotate", "apiserver"], 4, CRT, &["CA certificate where a leaf belongs"], |r| copy(r, "/etc/kubernetes/pki/ca.crt", CRT)).changes(pair),
        case("rotate: CA key missing", &["rotate", "apiserver"], 4, "/etc/kubernetes/pki/ca.key", &["no such file"], |r| std::fs::remove_file(host(r, "/etc/kubernetes/pki/ca.key")).unwrap()).changes(&["/etc/kubernetes/pki/ca.key"]),
        case("rotate: CA key of another", &["rotate", "apiserver"], 4, "/etc/kubernetes/pki/ca.key", &["match"], |r| copy(r, FP_KEY, "/etc/kubernetes/pki/ca.key")).changes(&["/etc/kubernetes/pki/ca.key"]),
        case("rotate: CA is a leaf", &["rotate", "apiserver"], 4, "/etc/kubernetes/pki/ca.crt", &["CA"], |r| {
            copy(r, "/etc/kubernetes/pki/front-proxy-client.crt", "/etc/kubernetes/pki/ca.crt");
            copy(r, FP_KEY, "/etc/kubernetes/pki/ca.key");
        }).changes(&["/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key"]),
        case("rotate: CA garbage", &["rotate", "apiserver"], 4, "/etc/kubernetes/pki/ca.crt", &["neither PEM nor"], |r| write(r, "/etc/kubernetes/pki/ca.crt", b"junk")).changes(&["/etc/kubernetes/pki/ca.crt"]),
        case("rotate: pki is a file", &["rotate", "apiserver"], 4, "/etc/kubernetes/pki", &["Not a directory"], |r| {
            std::fs::rename(host(r, PKI), host(r, "/etc/kubernetes/pki.moved")).unwrap();
            write(r, PKI, b"not a directory");
        }).changes(&["/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key", CRT, KEY, "/etc/kubernetes/pki/front-proxy-client.crt", FP_KEY]),
        case("rotate: kubeconfig empty", &["rotate", "admin.conf"], 4, ADMIN, &["admin.conf"], |r| write(r, ADMIN, b"")).changes(&[ADMIN]),
        // Not an error on a control-plane node: created as kubeadm makes it.
        case("rotate: kubeconfig missing", &["rotate", "admin.conf"], 0, "/etc/kubernetes/pki/ca.key", &["admin.conf: rotated", "created: a control-plane node"], |r| {
            std::fs::remove_file(host(r, ADMIN)).unwrap();
            write(r, "/etc/kubernetes/kubeadm-config.yaml", b"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint: {advertiseAddress: 10.0.0.9}\n");
        }).changes(&[ADMIN]),
        case("rotate: kubeconfig two users", &["rotate", "admin.conf"], 4, ADMIN, &["several users"], |r| write(r, ADMIN, b"apiVersion: v1\nkind: Config\nusers:\n- name: a\n  user: {}\n- name: b\n  user: {}\n")).changes(&[ADMIN]),
        case("rotate: kubeconfig context to nowhere", &["rotate", "admin.conf"], 4, ADMIN, &["names no user"], |r| write(r, ADMIN, b"apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts: []\nusers: []\n")).changes(&[ADMIN]),
        case("rotate: kubeconfig is a directory", &["rotate", "admin.conf"], 4, ADMIN, &["not a regular file: a directory"], |r| replace_with_dir(r, ADMIN)).changes(&[ADMIN]),
        case("rotate: kubeconfig not YAML", &["rotate", "admin.conf"], 4, ADMIN, &["not a kubeconfig"], |r| write(r, ADMIN, b"{{{{")).changes(&[ADMIN]),
    ];
    // The store repairs its own layout from the history, and the pair ends whole.
    v.push(
        case(
            "rotate: dangling ..data repaired",
            &["rotate", "apiserver"],
            0,
            "apiserver",
            &["rotated"],
            |r| {
                versioned(r);
                let d = host(r, PKI);
                let cur = std::fs::read_link(d.join("..apiserver.data")).unwrap();
                std::fs::remove_dir_all(d.join(cur)).unwrap();
            },
        )
        .changes(pair),
    );
    v.push(
        case(
            "rotate: version replaced by a file repaired",
            &["rotate", "apiserver"],
            0,
            "apiserver",
            &["rotated"],
            |r| {
                versioned(r);
                let d = host(r, PKI);
                let cur = std::fs::read_link(d.join("..apiserver.data")).unwrap();
                std::fs::remove_dir_all(d.join(&cur)).unwrap();
                std::fs::write(d.join(cur), b"a file").unwrap();
            },
        )
        .changes(pair),
    );
    v
}

/// Put apiserver into the store's layout with two versions (so that history exists).
fn versioned(r: &Path) {
    for _ in 0..2 {
        let out = agent_cmd()
            .arg("--root")
            .arg(r)
            .args(["rotate", "apiserver"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const REV_OK: &str = "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: ok}\nspec:\n  revocations:\n  - {kind: DNS, dns: nothing.example}\n";

fn revocation_cases() -> Vec<Case> {
    let file = "/etc/kube-cert-agent/revocations.d/r.yaml";
    let mut v = Vec::new();
    let docs: &[(&str, &str, &str)] = &[
        ("yaml error in document 2", "apiVersion: [unclosed\n", "document 2"),
        ("wrong kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n", "is v1/ConfigMap"),
        ("unknown rule", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {revocations: [{kind: fingerprint}]}\n", "unknown kind"),
        ("serial not hex", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {revocations: [{kind: serialnumber, serialNumber: xyz}]}\n", "not hexadecimal"),
        ("bad IP", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {revocations: [{kind: IP, ip: 300.1.1.1}]}\n", "not an IPv4 or IPv6"),
        ("bad notBefore", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {revocations: [{kind: Group, group: g, notBefore: yesterday}]}\n", "RFC 3339"),
        ("no name", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {}\nspec: {revocations: [{kind: Group, group: g}]}\n", "metadata.name"),
        ("no revocations", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {}\n", "spec.revocations is missing"),
        ("empty revocations", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {revocations: []}\n", "empty"),
        ("revocations not a list", "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: b}\nspec: {revocations: yes}\n", "must be a list"),
    ];
    for (label, doc, reason) in docs {
        for cmd in ["check", "rotate"] {
            let text = format!("{REV_OK}---\n{doc}");
            v.push(case(
                format!("revocation {label} ({cmd})"),
                &[cmd],
                3,
                file,
                &[reason, "revocation not applied"],
                move |r| write(r, file, text.as_bytes()),
            ));
        }
    }
    v.push(case(
        "revocation not UTF-8",
        &["check"],
        3,
        file,
        &["not UTF-8"],
        move |r| write(r, file, b"\xff\xfe"),
    ));
    v.push(case(
        "revocation is a directory",
        &["check"],
        3,
        file,
        &["not a regular file: a directory"],
        move |r| std::fs::create_dir(host(r, file)).unwrap(),
    ));
    v.push(case(
        "revocation dangling link",
        &["rotate"],
        3,
        file,
        &["dangling symlink"],
        move |r| symlink("/nowhere.yaml", host(r, file)).unwrap(),
    ));
    v.push(case(
        "revocation is a socket",
        &["check"],
        3,
        file,
        &["not a regular file: a socket"],
        move |r| {
            let l = std::os::unix::net::UnixListener::bind(host(r, file)).unwrap();
            std::mem::forget(l);
        },
    ));
    v
}

#[test]
fn every_bad_input_is_named_and_breaks_nothing() {
    let started = std::time::Instant::now();
    let tpl = template();
    let mut cases = config_cases::all_config_cases();
    let n_config = cases.len();
    cases.extend(file_cases());
    let n_files = cases.len() - n_config;
    cases.extend(revocation_cases());
    let n_revs = cases.len() - n_config - n_files;
    let mut failures = Vec::new();
    for c in &cases {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("node");
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(tpl.path())
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
        let before = snapshot(&root);
        (c.setup)(&root);
        // `timeout`: a `run` whose config is wrongly accepted would serve forever.
        let out = std::process::Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_kube-cert-agent"))
            .arg("--root")
            .arg(&root)
            .args(&c.args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut wrong = Vec::new();
        if out.status.code() != Some(c.code) {
            wrong.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
        }
        if !text.contains(c.file) {
            wrong.push(format!("does not name {}", c.file));
        }
        for r in &c.reason {
            if !text.contains(r.as_str()) {
                wrong.push(format!("does not say {r:?}"));
            }
        }
        if text.contains("panicked") {
            wrong.push("panicked".into());
        }
        for ((path, was), (_, now)) in before.iter().zip(snapshot(&root)) {
            if !c.may_change.contains(path) && *was != now {
                wrong.push(format!("{path} changed"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    output: {}",
                c.name,
                wrong.join("; "),
                text.trim().replace('\n', "\n    ")
            ));
        }
    }
    println!(
        "bad-input catalog: {} cases ({n_config} config through check/rotate/repair/run, {n_files} certificate/kubeconfig/file-system, {n_revs} revocation), {} failed, {:.1} s",
        cases.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(cases.len() >= 100);
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
