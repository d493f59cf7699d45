//! `make bench`: what the daemon costs while idle, and how fast it repairs.
//! 1. 50 local-CA certificates managed; after READY=1 (and a settle period), over
//!    BENCH_IDLE_SECS (default 60 s): CPU time (utime+stime from /proc/PID/stat), wake-ups
//!    (voluntary context switches summed over /proc/PID/task/*/status), RSS (VmRSS), with
//!    WATCHDOG_USEC=30s as the packaged unit sets it (a ping every 15 s).
//! 2. Reaction time from an external deletion of a certificate's link (`apiserver-0.crt`)
//!    to a new, valid certificate under that name.
//!
//! Prints figures; asserts correctness only, never time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::daemon::{serial_of, wait_until, Daemon};
use support::openssl::{self, Key};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const N: usize = 50;

fn proc_stat(pid: i32) -> (f64, u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0; // USER_HZ
    let cpu = (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / tick;
    let (mut vol, mut invol) = (0, 0);
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                vol += v.trim().parse::<u64>().unwrap_or(0);
            }
            if let Some(v) = l.strip_prefix("nonvoluntary_ctxt_switches:") {
                invol += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (cpu, vol, invol, rss)
}

fn main() {
    let idle: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let node = NodeTree::new();
    openssl::ca(&node.path(PKI), "ca", Key::P256, "kubernetes", 3650);
    let mut body = String::from(
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n",
    );
    for i in 0..N {
        body.push_str(&format!(
            "- name: apiserver-{i}\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver-{i}.crt\n  key: {PKI}/apiserver-{i}.key\n  subject: {{commonName: apiserver-{i}}}\n  dnsNames: [apiserver-{i}]\n  usages: [serverAuth]\n"
        ));
    }
    std::fs::write(node.path("/etc/kube-cert-agent/config.yaml"), body).unwrap();

    let started = Instant::now();
    let mut d = Daemon::start(&node, &[("WATCHDOG_USEC", "30000000")]);
    d.wait_notify("READY=1", Duration::from_secs(120));
    println!(
        "daemon_idle: start-up with {N} certificates issued (ECDSA P-384), to READY=1: {:?}",
        started.elapsed()
    );
    // Let spawn_blocking's idle threads (10 s keep-alive) go before measuring.
    std::thread::sleep(Duration::from_secs(12));
    let pid = d.pid();
    while d
        .try_wait_notify("WATCHDOG=1", Duration::from_millis(50))
        .is_some()
    {}
    let (c0, v0, i0, _) = proc_stat(pid);
    std::thread::sleep(Duration::from_secs(idle));
    let (c1, v1, i1, rss) = proc_stat(pid);
    let pings = {
        let mut n = 0;
        while d
            .try_wait_notify("WATCHDOG=1", Duration::from_millis(50))
            .is_some()
        {
            n += 1;
        }
        n
    };
    println!("daemon_idle: idle {idle} s with {N} certificates managed:");
    println!("  CPU time            {:.3} s", c1 - c0);
    println!(
        "  wake-ups            {} voluntary + {} involuntary context switches (all threads); {} watchdog pings",
        v1 - v0,
        i1 - i0,
        pings
    );
    println!("  RSS                 {:.1} MB", rss as f64 / 1024.0);

    let crt = node.path(&format!("{PKI}/apiserver-7.crt"));
    let mut times = vec![];
    for _ in 0..10 {
        let before = serial_of(&crt).expect("a certificate");
        let t = Instant::now();
        std::fs::remove_file(&crt).unwrap();
        wait_until(Duration::from_secs(10), || {
            crt.exists() && serial_of(&crt).is_some_and(|s| s != before)
        })
        .unwrap_or_else(|| {
            let ls = std::process::Command::new("ls")
                .arg("-la")
                .arg(node.path(PKI))
                .output()
                .unwrap();
            let log: Vec<String> = d
                .log_text()
                .lines()
                .filter(|l| {
                    l.contains("apiserver-7")
                        || l.contains("rescan after")
                        || l.contains("woke for")
                })
                .map(|l| l.chars().take(160).collect())
                .collect();
            panic!(
                "not repaired (before {before}, now {:?})\n{}\n{}",
                serial_of(&crt),
                String::from_utf8_lossy(&ls.stdout)
                    .lines()
                    .filter(|l| l.contains("-7"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                log.join("\n")
            )
        });
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "daemon_idle: external deletion of a link -> repaired (new valid certificate): median {:?}, max {:?} (10 runs; includes openssl polling at 10 ms)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)), Some(0));
}
