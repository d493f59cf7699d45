//! Crash consistency: a child process rotates a pair and a kubelet-style PEM in a loop with
//! freshly generated certificates; the parent SIGKILLs it at random moments, hundreds of
//! times. After each kill every managed name must resolve to a whole certificate and the
//! key that belongs to it, and that version must be the last one installed or the one
//! being installed; every versioned file or directory must be whole too. Leftovers must not
//! break the next install.

mod store_common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use kube_cert_agent::store::{Managed, PkiStore, Store};
use store_common::*;

const CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
const KEY: &str = "/etc/kubernetes/pki/apiserver.key";
const CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const KILLS: usize = 500;
const HISTORY: u32 = 3;

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

const FIXTURES: usize = 6;

/// The child: rotate forever through the fixture pairs, announcing each install before and
/// after. `seq` selects the pair: `seq % FIXTURES`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("KCA_CRASH_DIR") else {
        return;
    };
    let fixtures = load_fixtures(Path::new(&std::env::var("KCA_CRASH_FIXTURES").unwrap()));
    let base: u64 = std::env::var("KCA_CRASH_SEQ").unwrap().parse().unwrap();
    let store = Store::new(node(Path::new(&dir)), HISTORY);
    say("ready");
    for i in 0.. {
        let seq = base + i;
        let p = &fixtures[seq as usize % FIXTURES];
        let now = time::OffsetDateTime::now_utc();
        for (tag, m) in [("p", apiserver()), ("k", kubelet_client())] {
            say(&format!("start {tag} {seq}"));
            store
                .install(&m, p.cert.as_bytes(), p.key.as_bytes(), now)
                .unwrap();
            say(&format!("done {tag} {seq}"));
        }
    }
}

fn load_fixtures(dir: &Path) -> Vec<Pair> {
    (0..FIXTURES)
        .map(|i| Pair {
            cert: std::fs::read_to_string(dir.join(format!("{i}.crt"))).unwrap(),
            key: std::fs::read_to_string(dir.join(format!("{i}.key"))).unwrap(),
        })
        .collect()
}

/// One line to the parent, flushed at once (stdout to a pipe may be buffered).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Every versioned file or directory on disk is whole: problems found.
fn check_versions(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let store = Store::new(node(root), HISTORY);
    for v in store.versions(&apiserver()).unwrap() {
        let c = format!("{PKI}/{}/apiserver.crt", v.name);
        let k = format!("{PKI}/{}/apiserver.key", v.name);
        if let Err(e) = read_valid(root, &c, &k) {
            problems.push(format!("version {}: {e}", v.name));
        }
    }
    for v in store.versions(&kubelet_client()).unwrap() {
        let f = format!("{KUBELET_PKI}/{}", v.name);
        if let Err(e) = read_valid(root, &f, &f) {
            problems.push(format!("version {}: {e}", v.name));
        }
    }
    problems
}

#[derive(Default, Clone, Copy)]
struct Track {
    done: u64,
    started: Option<u64>,
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_torn_pair() {
    let started = Instant::now();
    let seed: u64 = std::env::var("KCA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed} (KCA_CRASH_SEED to repeat)");
    let mut rng = Xorshift(seed);
    let d = tempfile::tempdir().unwrap();
    let root: PathBuf = d.path().join("node");
    std::fs::create_dir(&root).unwrap();
    // Freshly generated pairs, made once, cycled through by the children.
    let fixture_dir = d.path().join("fixtures");
    std::fs::create_dir(&fixture_dir).unwrap();
    for i in 0..FIXTURES {
        let p = gen(&format!("fixture-{i}"));
        std::fs::write(fixture_dir.join(format!("{i}.crt")), &p.cert).unwrap();
        std::fs::write(fixture_dir.join(format!("{i}.key")), &p.key).unwrap();
    }
    let fixtures = load_fixtures(&fixture_dir);
    let ders: Vec<Vec<u8>> = fixtures.iter().map(|p| der_of(&p.cert)).collect();
    let seq_of = |der: &[u8]| ders.iter().position(|d| d == der);

    // A first version of both, from the parent, before any kill.
    let store = Store::new(node(&root), HISTORY);
    let p0 = &fixtures[0];
    store
        .install(&apiserver(), p0.cert.as_bytes(), p0.key.as_bytes(), t(0))
        .unwrap();
    store
        .install(
            &kubelet_client(),
            p0.cert.as_bytes(),
            p0.key.as_bytes(),
            t(0),
        )
        .unwrap();

    let mut pair = Track::default();
    let mut kubelet = Track::default();
    let (mut kills, mut torn, mut mid_install, mut with_leftovers, mut installs) =
        (0, 0, 0, 0, 0u64);
    let mut next_seq: u64 = 1;
    let want: usize = std::env::var("KCA_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    while kills < want {
        if kills % 50 == 0 {
            println!("{kills} kills, {:.1} s", started.elapsed().as_secs_f64());
        }
        let mut cmd = child_command(&[], "crash_child");
        cmd.env("KCA_CRASH_DIR", &root)
            .env("KCA_CRASH_SEQ", next_seq.to_string())
            .env("KCA_CRASH_FIXTURES", &fixture_dir);
        let rest = run_and_kill(cmd, &mut rng, 30_000);
        kills += 1;
        let mut last_line = "";
        for l in &rest {
            let mut w = l.split_whitespace();
            let (Some(what), Some(tag), Some(seq)) = (w.next(), w.next(), w.next()) else {
                continue;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            let tr = if tag == "p" { &mut pair } else { &mut kubelet };
            match what {
                "start" => tr.started = Some(seq),
                "done" => {
                    tr.done = seq;
                    tr.started = None;
                    installs += 1;
                }
                _ => {}
            }
            next_seq = next_seq.max(seq + 1);
            last_line = l.as_str();
        }
        if last_line.starts_with("start") {
            mid_install += 1;
        }

        // What a reader sees now.
        let mut problems = Vec::new();
        for (name, c, k, tr) in [
            ("pair", CRT, KEY, &mut pair),
            ("kubelet", CURRENT, CURRENT, &mut kubelet),
        ] {
            match read_valid(&root, c, k) {
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(der) => {
                    // Which fixture is live: the last one installed, or the one being installed.
                    let live = seq_of(&der);
                    let fixture = |seq: u64| seq as usize % FIXTURES;
                    if live == Some(fixture(tr.done)) {
                    } else if let Some(started) = tr.started.filter(|s| live == Some(fixture(*s))) {
                        tr.done = started;
                    } else {
                        problems.push(format!(
                            "{name}: fixture {live:?} is live, expected {} or {:?}",
                            fixture(tr.done),
                            tr.started.map(fixture)
                        ));
                    }
                    tr.started = None;
                }
            }
        }
        problems.extend(check_versions(&root));
        if !temps(&root, PKI).is_empty() || !temps(&root, KUBELET_PKI).is_empty() {
            with_leftovers += 1;
        }
        if !problems.is_empty() {
            torn += 1;
            println!("kill {kills}: TORN: {problems:?}");
        }
    }

    // Leftovers do not get in the way: one more install from here.
    let last = gen("after-the-kills");
    for m in [apiserver(), kubelet_client()] {
        store
            .install(
                &m,
                last.cert.as_bytes(),
                last.key.as_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert!(store.versions(&m).unwrap().len() <= HISTORY as usize);
    }
    assert_pair_is(&root, CRT, KEY, &last);
    assert_pair_is(&root, CURRENT, CURRENT, &last);
    assert!(temps(&root, PKI).is_empty() && temps(&root, KUBELET_PKI).is_empty());

    println!(
        "kills {kills}, torn states {torn}, kills during an install {mid_install}, \
         kills leaving temporary files {with_leftovers}, completed installs {installs}, \
         duration {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(torn, 0, "torn states after SIGKILL");
    assert!(
        mid_install > want / 4,
        "too few kills landed inside an install: {mid_install}"
    );
}
