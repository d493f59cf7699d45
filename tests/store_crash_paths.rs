//! Crash consistency of the store paths tests/store_crash.rs does not take: creating a
//! pair from nothing (new names, and names deleted while the store's old version is still
//! there), and rewriting a kubeconfig that carries a client certificate and key. A child
//! process loops over the operation announcing each step; the parent SIGKILLs it at
//! random moments, hundreds of times, and checks what a reader sees after every kill:
//! a pair is both files (matching) or neither, never one; a kubeconfig is whole and its
//! embedded certificate matches its embedded key.

mod store_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kube_cert_agent::kube::kubeconfig::{decode_data, replace_client_credentials, Kubeconfig};
use kube_cert_agent::store::{FileSpec, Managed, PkiStore, Store};
use store_common::*;

const KILLS: usize = 500;
const FIXTURES: usize = 4;
/// Pair names the create child cycles through: after the first round each is re-created
/// while its old versions and `..NAME.data` are still there.
const NAMES: u64 = 6;
const KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

fn kills_wanted() -> usize {
    std::env::var("KCA_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS)
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn fixtures(dir: &Path) -> Vec<Pair> {
    (0..FIXTURES)
        .map(|i| Pair {
            cert: std::fs::read_to_string(dir.join(format!("{i}.crt"))).unwrap(),
            key: std::fs::read_to_string(dir.join(format!("{i}.key"))).unwrap(),
        })
        .collect()
}

fn pair(n: u64) -> Managed {
    Managed::Pair {
        cert: format!("{PKI}/new-{n}.crt").into(),
        key: format!("{PKI}/new-{n}.key").into(),
    }
}

/// A kubeconfig for fixture `i`, made by the agent's own rewrite.
fn kubeconfig_text(p: &Pair) -> String {
    let base = "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: admin@kubernetes\n  context: {cluster: kubernetes, user: kubernetes-admin}\ncurrent-context: admin@kubernetes\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate: /nowhere\n";
    replace_client_credentials(base, p.cert.as_bytes(), p.key.as_bytes())
        .unwrap()
        .0
}

/// The children. `create`: delete (if present) then create pair `new-<seq % NAMES>`;
/// `kubeconfig`: rewrite admin.conf with fixture `seq % FIXTURES`.
#[test]
fn crash_paths_child() {
    let Ok(dir) = std::env::var("KCA_CRASH_DIR") else {
        return;
    };
    let fx = fixtures(Path::new(&std::env::var("KCA_CRASH_FIXTURES").unwrap()));
    let base: u64 = std::env::var("KCA_CRASH_SEQ").unwrap().parse().unwrap();
    let mode = std::env::var("KCA_CRASH_MODE").unwrap();
    let root = PathBuf::from(&dir);
    let store = Store::new(node(&root), 3);
    let texts: Vec<String> = fx.iter().map(kubeconfig_text).collect();
    say("ready");
    for seq in base.. {
        let p = &fx[seq as usize % FIXTURES];
        let now = time::OffsetDateTime::now_utc();
        match mode.as_str() {
            "create" => {
                let n = seq % NAMES;
                let pki = host(&root, PKI);
                let (c, k) = (
                    pki.join(format!("new-{n}.crt")),
                    pki.join(format!("new-{n}.key")),
                );
                // A kill between the two unlinks leaves the test's own torn pair: the
                // next child finishes that delete before it installs.
                if c.is_symlink() || k.is_symlink() {
                    say(&format!("deleting {n} {seq}"));
                    for f in [&c, &k] {
                        match std::fs::remove_file(f) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                panic!("{}: {e}", f.display())
                            }
                            _ => {}
                        }
                    }
                }
                say(&format!("start {n} {seq}"));
                store
                    .install(&pair(n), p.cert.as_bytes(), p.key.as_bytes(), now)
                    .unwrap();
                say(&format!("done {n} {seq}"));
            }
            _ => {
                say(&format!("start 0 {seq}"));
                store
                    .write_file(
                        Path::new(KUBECONFIG),
                        texts[seq as usize % FIXTURES].as_bytes(),
                        FileSpec::KEY,
                    )
                    .unwrap();
                say(&format!("done 0 {seq}"));
            }
        }
    }
}

/// What the child last said about each name: the step and its sequence number.
type Steps = HashMap<u64, (String, u64)>;
/// The sequence numbers the last child started, per name (what may have landed since).
type Started = HashMap<u64, Vec<u64>>;

struct Tally {
    kills: usize,
    torn: usize,
    mid: usize,
}

/// Kill a child of `mode` at random moments; after each kill `check` says what is wrong.
fn kill_loop(
    mode: &str,
    root: &Path,
    fixture_dir: &Path,
    check: impl Fn(&Steps, &Started) -> Vec<String>,
) -> Tally {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("{mode}: seed {seed}");
    let mut rng = Xorshift(seed);
    let mut steps = Steps::new();
    let mut tally = Tally {
        kills: 0,
        torn: 0,
        mid: 0,
    };
    let mut next_seq = 0u64;
    let want = kills_wanted();
    while tally.kills < want {
        let mut cmd = child_command(&[], "crash_paths_child");
        cmd.env("KCA_CRASH_DIR", root)
            .env("KCA_CRASH_SEQ", next_seq.to_string())
            .env("KCA_CRASH_FIXTURES", fixture_dir)
            .env("KCA_CRASH_MODE", mode);
        let lines = run_and_kill(cmd, &mut rng, 20_000);
        tally.kills += 1;
        let mut last = String::new();
        let mut started = Started::new();
        for l in lines {
            let w: Vec<&str> = l.split_whitespace().collect();
            let [what, n, seq] = w[..] else { continue };
            let (Ok(n), Ok(seq)) = (n.parse::<u64>(), seq.parse::<u64>()) else {
                continue;
            };
            steps.insert(n, (what.to_string(), seq));
            if what == "start" {
                started.entry(n).or_default().push(seq);
            }
            next_seq = next_seq.max(seq + 1);
            last = what.to_string();
        }
        if last == "start" || last == "deleting" {
            tally.mid += 1;
        }
        let problems = check(&steps, &started);
        if !problems.is_empty() {
            tally.torn += 1;
            println!("{mode} kill {}: TORN: {problems:?}", tally.kills);
        }
    }
    tally
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<Pair>) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("node");
    std::fs::create_dir_all(host(&root, PKI)).unwrap();
    let fixture_dir = d.path().join("fixtures");
    std::fs::create_dir(&fixture_dir).unwrap();
    for i in 0..FIXTURES {
        let p = gen(&format!("fixture-{i}"));
        std::fs::write(fixture_dir.join(format!("{i}.crt")), &p.cert).unwrap();
        std::fs::write(fixture_dir.join(format!("{i}.key")), &p.key).unwrap();
    }
    let fx = fixtures(&fixture_dir);
    (d, root, fixture_dir, fx)
}

#[test]
fn sigkill_while_creating_pairs_leaves_both_files_or_neither() {
    let started = Instant::now();
    let (_d, root, fixture_dir, fx) = setup();
    let ders: Vec<Vec<u8>> = fx.iter().map(|p| der_of(&p.cert)).collect();
    let r = node(&root);
    let check = |steps: &Steps, _: &Started| {
        let mut problems = Vec::new();
        for n in 0..NAMES {
            let (c, k) = (format!("{PKI}/new-{n}.crt"), format!("{PKI}/new-{n}.key"));
            let step = steps.get(&n).cloned();
            // Between the child's two unlinks the test itself has torn the pair.
            if step.as_ref().is_some_and(|(w, _)| w == "deleting") {
                continue;
            }
            let present = |p: &str| r.read(Path::new(p)).is_ok();
            match (present(&c), present(&k)) {
                (false, false) if !step.as_ref().is_some_and(|(w, _)| w == "done") => {}
                (true, true) => match read_valid(&root, &c, &k) {
                    Ok(der) => {
                        let live = ders.iter().position(|d| *d == der);
                        let seq = step.as_ref().map(|(_, s)| *s as usize % FIXTURES);
                        if live != seq {
                            problems
                                .push(format!("new-{n}: fixture {live:?} live, child at {step:?}"));
                        }
                    }
                    Err(e) => problems.push(format!("new-{n}: {e}")),
                },
                (cp, kp) => problems.push(format!(
                    "new-{n}: certificate present {cp}, key present {kp}, child at {step:?}"
                )),
            }
        }
        problems
    };
    let t = kill_loop("create", &root, &fixture_dir, check);
    // Leftovers do not get in the way.
    let store = Store::new(node(&root), 3);
    let last = gen("after-the-kills");
    for n in 0..NAMES {
        store
            .install(
                &pair(n),
                last.cert.as_bytes(),
                last.key.as_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert_pair_is(
            &root,
            &format!("{PKI}/new-{n}.crt"),
            &format!("{PKI}/new-{n}.key"),
            &last,
        );
    }
    println!(
        "create: kills {}, torn states {}, kills inside a delete or install {}, duration {:.1} s",
        t.kills,
        t.torn,
        t.mid,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(t.torn, 0, "torn pairs after SIGKILL");
    assert!(
        t.mid > t.kills / 4,
        "too few kills inside an install: {}",
        t.mid
    );
}

#[test]
fn sigkill_while_rewriting_a_kubeconfig_leaves_it_whole() {
    let started = Instant::now();
    let (_d, root, fixture_dir, fx) = setup();
    let ders: Vec<Vec<u8>> = fx.iter().map(|p| der_of(&p.cert)).collect();
    let store = Store::new(node(&root), 3);
    store
        .write_file(
            Path::new(KUBECONFIG),
            kubeconfig_text(&fx[0]).as_bytes(),
            FileSpec::KEY,
        )
        .unwrap();
    let r = node(&root);
    // What a reader saw after the previous kill: it stays, or becomes one of the versions
    // the child started since.
    let seen = std::cell::Cell::new(0usize);
    let check = |_: &Steps, started: &Started| {
        let read = || -> Result<Vec<u8>, String> {
            let bytes = r.read(Path::new(KUBECONFIG)).map_err(|e| e.to_string())?;
            let kc = Kubeconfig::parse(&bytes)?;
            let u = &kc.users.first().ok_or("no user")?.user;
            let c = decode_data("c", u.client_certificate_data.as_ref().ok_or("no cert")?)?;
            let k = decode_data("k", u.client_key_data.as_ref().ok_or("no key")?)?;
            kube_cert_agent::store::verify::check_pair(&c, &k)?;
            Ok(der_of(std::str::from_utf8(&c).unwrap()))
        };
        match read() {
            Err(e) => vec![format!("{KUBECONFIG}: {e}")],
            Ok(der) => {
                let live = ders.iter().position(|d| *d == der);
                let round = started.get(&0).cloned().unwrap_or_default();
                let ok = live == Some(seen.get())
                    || round.iter().any(|s| live == Some(*s as usize % FIXTURES));
                if let Some(l) = live {
                    seen.set(l);
                }
                if ok {
                    vec![]
                } else {
                    vec![format!(
                        "fixture {live:?} live, was {}, child started {round:?}",
                        seen.get()
                    )]
                }
            }
        }
    };
    let t = kill_loop("kubeconfig", &root, &fixture_dir, check);
    assert!(
        temps(&root, "/etc/kubernetes").len() <= 1,
        "leftovers pile up"
    );
    println!(
        "kubeconfig: kills {}, torn states {}, kills inside a rewrite {}, duration {:.1} s",
        t.kills,
        t.torn,
        t.mid,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(t.torn, 0, "torn kubeconfigs after SIGKILL");
    assert!(
        t.mid > t.kills / 4,
        "too few kills inside a rewrite: {}",
        t.mid
    );
}
