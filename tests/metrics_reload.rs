//! A reloaded config that changes `metrics:` moves the endpoint and the textfile, with real
//! sockets: the old port refuses connections, the new one serves; an address that cannot be
//! bound keeps the old one serving with an error that says so; a moved or dropped textfile
//! is deleted.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use support::daemon::{wait_until, Daemon};
use support::metrics::{self, one, parse};
use support::openssl::{self, Key};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const T: Duration = Duration::from_secs(60);

fn config(metrics: &str) -> String {
    format!(
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nmetrics: {metrics}\ncertificates:\n- name: apiserver\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/apiserver.crt\n  key: {PKI}/apiserver.key\n  subject: {{commonName: apiserver}}\n  dnsNames: [apiserver]\n  usages: [serverAuth]\n"
    )
}

/// Replace the config the way an editor or a config manager does: a new file renamed over.
fn write_config(node: &NodeTree, body: &str) {
    let dir = node.path("/etc/kube-cert-agent");
    std::fs::write(dir.join(".config.yaml.new"), body).unwrap();
    std::fs::rename(dir.join(".config.yaml.new"), dir.join("config.yaml")).unwrap();
}

/// A port nothing listens on (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn refused(addr: &str) -> bool {
    matches!(
        TcpStream::connect(addr),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

fn wait_log(d: &Daemon, what: &str) {
    wait_until(T, || d.log_text().contains(what))
        .unwrap_or_else(|| panic!("the daemon never logged {what:?}\n{}", d.log_text()));
}

fn apiserver_not_after(addr: &str) -> f64 {
    let samples = parse(&metrics::scrape(addr));
    one(
        &samples,
        "x509_cert_not_after",
        &[("filename", "apiserver.crt")],
    )
    .value
}

#[test]
fn a_changed_listen_and_textfile_move_and_the_old_ones_are_gone() {
    let node = NodeTree::new();
    openssl::ca(&node.path(PKI), "ca", Key::P256, "kubernetes", 3650);
    std::fs::create_dir_all(node.path("/var/lib/node-exporter")).unwrap();
    write_config(&node, &config("{listen: \"127.0.0.1:0\"}"));
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let first = metrics::address(&d);
    let not_after = apiserver_not_after(&first);
    assert!(not_after > 0.0);

    // Moved to another port, and a textfile added.
    let second = format!("127.0.0.1:{}", free_port());
    write_config(
        &node,
        &config(&format!(
            "{{listen: \"{second}\", textfile: /var/lib/node-exporter/a.prom}}"
        )),
    );
    wait_log(&d, &format!("metrics: serving http://{second}/metrics"));
    assert!(refused(&first), "the old port {first} still accepts");
    assert_eq!(apiserver_not_after(&second), not_after);
    let a = node.path("/var/lib/node-exporter/a.prom");
    wait_until(T, || {
        std::fs::read_to_string(&a).is_ok_and(|t| t.contains("x509_cert_not_after{"))
    })
    .unwrap_or_else(|| panic!("no textfile {}\n{}", a.display(), d.log_text()));

    // A port someone else holds: an error that says so, and the old port keeps serving.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy: SocketAddr = held.local_addr().unwrap();
    write_config(
        &node,
        &config(&format!(
            "{{listen: \"{busy}\", textfile: /var/lib/node-exporter/b.prom}}"
        )),
    );
    wait_log(&d, &format!("still serving http://{second}/metrics"));
    let log = d.log_text();
    let line = log.lines().find(|l| l.contains("still serving")).unwrap();
    assert!(
        line.contains(&format!("metrics.listen {busy}")) && line.contains("in use"),
        "{line}"
    );
    assert_eq!(apiserver_not_after(&second), not_after);
    // The textfile moved all the same: the new one written, the old one deleted.
    let b = node.path("/var/lib/node-exporter/b.prom");
    wait_until(T, || {
        std::fs::read_to_string(&b).is_ok_and(|t| t.contains("x509_cert_not_after{"))
    })
    .unwrap_or_else(|| panic!("no textfile {}\n{}", b.display(), d.log_text()));
    assert!(!a.exists(), "the old textfile is left for node_exporter");
    drop(held);

    // Both turned off: nothing listens, no file is left.
    write_config(&node, &config("{}"));
    wait_log(
        &d,
        &format!("metrics: no longer serving http://{second}/metrics"),
    );
    assert!(refused(&second), "{second} still accepts");
    wait_log(
        &d,
        "metrics.textfile: removed /var/lib/node-exporter/b.prom",
    );
    assert!(!b.exists());
    let left: Vec<_> = std::fs::read_dir(node.path("/var/lib/node-exporter"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Still the same daemon, doing its work.
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
    assert!(Path::new(&node.path(&format!("{PKI}/apiserver.crt"))).exists());
}
