//! The metrics endpoint and textfile of a real daemon process: `promtool check metrics` on a
//! scrape, every value against what openssl says about the same file, a real Prometheus
//! scraping the agent on loopback and answering a query, and the node_exporter textfile.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{wait_until, Daemon};
use support::metrics::{self, find, one, openssl_facts, parse};
use support::openssl::{self, Key, Leaf};
use support::NodeTree;

const PKI: &str = "/etc/kubernetes/pki";
const T: Duration = Duration::from_secs(60);

/// A node with a CA, two managed certificates (issued by the agent at start-up), and
/// certificates it does not manage: an etcd leaf with O and OU, an expired leaf, a
/// kubeconfig with an embedded client certificate, and a file that is not a certificate.
fn node(metrics: &str) -> NodeTree {
    let node = NodeTree::new();
    let ca = openssl::ca(&node.path(PKI), "ca", Key::P256, "kubernetes", 3650);
    let etcd_ca = openssl::ca(
        &node.path(&format!("{PKI}/etcd")),
        "ca",
        Key::P256,
        "etcd-ca",
        3650,
    );
    openssl::leaf(
        &node.path(&format!("{PKI}/etcd")),
        "peer",
        &etcd_ca,
        &Leaf {
            subject: "/O=system:etcd/OU=peers/CN=etcd-peer",
            sans: "DNS:node-1,IP:10.0.0.1",
            days: 30,
            ..Default::default()
        },
    );
    openssl::leaf(
        &node.path(PKI),
        "old-client",
        &ca,
        &Leaf {
            subject: "/CN=old-client",
            eku: "clientAuth",
            dates: Some(("20200101000000Z", "20200105000000Z")),
            ..Default::default()
        },
    );
    // Made outside the directories the inventory reads: only its copy in admin.conf counts.
    std::fs::create_dir_all(node.path("/fixtures")).unwrap();
    let admin = openssl::leaf(
        &node.path("/fixtures"),
        "admin",
        &ca,
        &Leaf {
            subject: "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
            eku: "clientAuth",
            days: 365,
            ..Default::default()
        },
    );
    std::fs::write(
        node.path("/etc/kubernetes/admin.conf"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts: []\n",
            openssl::b64(&ca.cert),
            openssl::b64(&admin.cert),
            openssl::b64(&admin.key)
        ),
    )
    .unwrap();
    std::fs::write(
        node.path(&format!("{PKI}/stray.crt")),
        "not a certificate\n",
    )
    .unwrap();
    let mut body = format!(
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\nmetrics: {metrics}\ncertificates:\n"
    );
    for n in ["apiserver", "front-proxy-client"] {
        body.push_str(&format!(
            "- name: {n}\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/{n}.crt\n  key: {PKI}/{n}.key\n  subject: {{commonName: {n}, organizations: [kube-cert-agent]}}\n  dnsNames: [{n}]\n  usages: [serverAuth]\n  keyType: ecdsa-p256\n"
        ));
    }
    std::fs::write(node.path("/etc/kube-cert-agent/config.yaml"), body).unwrap();
    node
}

fn start(node: &NodeTree) -> (Daemon, String) {
    let mut d = Daemon::start(node, &[]);
    d.wait_notify("READY=1", T);
    let addr = metrics::address(&d);
    (d, addr)
}

fn unix_now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as f64
}

#[test]
fn a_scrape_passes_promtool_and_every_value_is_what_openssl_says() {
    let node = node("{listen: \"127.0.0.1:0\"}");
    let (_d, addr) = start(&node);
    let text = metrics::scrape(&addr);
    let (code, out) = metrics::promtool_check(&text);
    assert_eq!(code, 0, "promtool check metrics: {out}\n{text}");
    assert!(out.trim().is_empty(), "promtool found problems: {out}");
    let samples = parse(&text);

    let files = [
        format!("{PKI}/apiserver.crt"),
        format!("{PKI}/front-proxy-client.crt"),
        format!("{PKI}/ca.crt"),
        format!("{PKI}/etcd/ca.crt"),
        format!("{PKI}/etcd/peer.crt"),
        format!("{PKI}/old-client.crt"),
    ];
    for f in &files {
        let o = openssl_facts(&node.path(f));
        let want = [("filepath", f.as_str())];
        let not_after = one(&samples, "x509_cert_not_after", &want);
        let not_before = one(&samples, "x509_cert_not_before", &want);
        let expired = one(&samples, "x509_cert_expired", &want);
        assert_eq!(not_after.value, o.not_after as f64, "{f}");
        assert_eq!(not_before.value, o.not_before as f64, "{f}");
        assert_eq!(
            expired.value,
            if unix_now() > o.not_after as f64 {
                1.0
            } else {
                0.0
            },
            "{f}"
        );
        let l = &not_after.labels;
        assert_eq!(l["serial_number"], o.serial_decimal, "{f}");
        assert_eq!(
            l["filename"],
            Path::new(f).file_name().unwrap().to_str().unwrap()
        );
        for (attr, v) in &o.subject {
            assert_eq!(
                l.get(&format!("subject_{attr}")),
                Some(v),
                "{f}: subject {attr}"
            );
        }
        for (attr, v) in &o.issuer {
            assert_eq!(
                l.get(&format!("issuer_{attr}")),
                Some(v),
                "{f}: issuer {attr}"
            );
        }
        // Nothing the certificate does not have.
        let subject_labels = l.keys().filter(|k| k.starts_with("subject_")).count();
        assert_eq!(subject_labels, o.subject.len(), "{f}: {l:?}");
    }
    let old = one(
        &samples,
        "x509_cert_expired",
        &[("filename", "old-client.crt")],
    );
    assert_eq!(old.value, 1.0);
    let peer = one(&samples, "x509_cert_not_after", &[("filename", "peer.crt")]);
    assert_eq!(peer.labels["subject_O"], "system:etcd");
    assert_eq!(peer.labels["subject_OU"], "peers");
    assert_eq!(peer.labels["issuer_CN"], "etcd-ca");

    // The kubeconfig's embedded certificates, labelled as the exporter labels them.
    let user = one(
        &samples,
        "x509_cert_not_after",
        &[
            ("filepath", "/etc/kubernetes/admin.conf"),
            ("embedded_kind", "user"),
        ],
    );
    assert_eq!(user.labels["embedded_key"], "kubernetes-admin");
    assert_eq!(user.labels["subject_CN"], "kubernetes-admin");
    let cluster = one(
        &samples,
        "x509_cert_not_after",
        &[
            ("filepath", "/etc/kubernetes/admin.conf"),
            ("embedded_kind", "cluster"),
        ],
    );
    assert_eq!(cluster.labels["embedded_key"], "kubernetes");
    let ca = openssl_facts(&node.path(&format!("{PKI}/ca.crt")));
    assert_eq!(cluster.value, ca.not_after as f64);

    // The file that is not a certificate.
    assert_eq!(one(&samples, "x509_read_errors", &[]).value, 1.0);
    assert_eq!(
        one(&samples, "x509_cert_error", &[("filename", "stray.crt")]).value,
        1.0
    );
    assert_eq!(
        one(
            &samples,
            "x509_cert_error",
            &[("filename", "apiserver.crt")]
        )
        .value,
        0.0
    );

    // The agent's own: deadlines between notBefore and notAfter (70%..90% of the lifetime),
    // one successful rotation each (the start-up issued them), nothing blocked or pending.
    for n in ["apiserver", "front-proxy-client"] {
        let o = openssl_facts(&node.path(&format!("{PKI}/{n}.crt")));
        let deadline = one(
            &samples,
            "kube_cert_agent_renewal_timestamp_seconds",
            &[("name", n)],
        )
        .value;
        let life = (o.not_after - o.not_before) as f64;
        let at = (deadline - o.not_before as f64) / life;
        assert!(
            (0.69..=0.91).contains(&at),
            "{n}: deadline at {at} of the lifetime"
        );
        let ok = one(
            &samples,
            "kube_cert_agent_rotations_total",
            &[("name", n), ("result", "success")],
        );
        assert_eq!(ok.value, 1.0, "{n}");
        let failed = one(
            &samples,
            "kube_cert_agent_rotations_total",
            &[("name", n), ("result", "failure")],
        );
        assert_eq!(failed.value, 0.0, "{n}");
        assert_eq!(
            one(
                &samples,
                "kube_cert_agent_revocation_blocked",
                &[("name", n)]
            )
            .value,
            0.0
        );
        let last = one(
            &samples,
            "kube_cert_agent_last_success_timestamp_seconds",
            &[("name", n)],
        )
        .value;
        assert!(
            last >= o.not_before as f64 && last <= unix_now(),
            "{n}: {last}"
        );
    }
    assert!(find(&samples, "kube_cert_agent_pending_csr_age_seconds", &[]).is_empty());
    assert!(find(
        &samples,
        "kubelet_certificate_manager_client_ttl_seconds",
        &[]
    )
    .is_empty());
    let info = one(&samples, "kube_cert_agent_build_info", &[]);
    assert_eq!(info.labels["version"], env!("CARGO_PKG_VERSION"));

    // Anything but /metrics is a 404.
    let (status, _, _) = metrics::get(&addr, "/");
    assert!(status.contains(" 404 "), "{status}");
}

#[test]
fn a_rotation_shows_in_the_next_scrape() {
    let node = node("{listen: \"[::1]:0\"}");
    let (_d, addr) = start(&node);
    let before = parse(&metrics::scrape(&addr));
    let serial_before = one(
        &before,
        "x509_cert_not_after",
        &[("filename", "apiserver.crt")],
    )
    .labels["serial_number"]
        .clone();
    let out = node.agent(&["rotate", "apiserver"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = parse(&metrics::scrape(&addr));
    let series = one(
        &after,
        "x509_cert_not_after",
        &[("filename", "apiserver.crt")],
    );
    let o = openssl_facts(&node.path(&format!("{PKI}/apiserver.crt")));
    assert_ne!(series.labels["serial_number"], serial_before);
    assert_eq!(series.labels["serial_number"], o.serial_decimal);
    let ok = one(
        &after,
        "kube_cert_agent_rotations_total",
        &[("name", "apiserver"), ("result", "success")],
    );
    assert_eq!(ok.value, 2.0);
}

#[test]
fn a_real_prometheus_scrapes_the_agent_and_answers_a_query() {
    let node = node("{listen: \"127.0.0.1:0\"}");
    let (_d, addr) = start(&node);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: kube-cert-agent\n  static_configs:\n  - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    // A free port for Prometheus's own API (bound and released: Prometheus takes it next).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let web = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(work.path().join("prometheus.log")).unwrap();
    let prom = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            work.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect(
            "prometheus is installed (scripts/install-test-deps.sh: apt-get install prometheus)",
        );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(prom);
    let query = "x509_cert_not_after%7Bfilename%3D%22apiserver.crt%22%7D";
    let mut answer = String::new();
    let found = wait_until(Duration::from_secs(90), || {
        if std::net::TcpStream::connect(&web).is_err() {
            return false;
        }
        let (status, _, body) = metrics::get(&web, &format!("/api/v1/query?query={query}"));
        answer = body;
        status.contains(" 200 ") && answer.contains("\"result\":[{")
    });
    let plog = std::fs::read_to_string(work.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        found.is_some(),
        "no answer from Prometheus: {answer}\n{plog}"
    );
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let r = &v["data"]["result"][0];
    assert_eq!(r["metric"]["job"], "kube-cert-agent", "{v}");
    assert_eq!(r["metric"]["subject_CN"], "apiserver", "{v}");
    let o = openssl_facts(&node.path(&format!("{PKI}/apiserver.crt")));
    assert_eq!(
        r["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
        o.not_after as f64
    );
    assert_eq!(r["metric"]["serial_number"], o.serial_decimal.as_str());
    // Every expression of the shipped alerts and dashboard evaluates on real data.
    for e in metrics::expressions() {
        let (status, _, body) = metrics::get(
            &web,
            &format!("/api/v1/query?query={}", metrics::urlencode(&e)),
        );
        assert!(
            status.contains(" 200 ") && body.contains("\"status\":\"success\""),
            "{e}: {status} {body}"
        );
    }
    // The target is healthy: Prometheus parsed the whole scrape.
    let (_, _, up) = metrics::get(&web, "/api/v1/query?query=up");
    assert!(up.contains("\"value\":[") && up.contains(",\"1\"]"), "{up}");
}

#[test]
fn the_textfile_is_complete_and_passes_promtool() {
    let node = node("{textfile: /var/lib/node-exporter/kube-cert-agent.prom}");
    let mut d = Daemon::start(&node, &[]);
    d.wait_notify("READY=1", T);
    let file = node.path("/var/lib/node-exporter/kube-cert-agent.prom");
    let start = Instant::now();
    let mut text = String::new();
    wait_until(T, || {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        // Both: a write that began before the install counts it but lists the inventory
        // read before it (the next write, at once, has both).
        text.contains("kube_cert_agent_rotations_total{name=\"apiserver\",result=\"success\"} 1")
            && text.contains("x509_cert_not_after{")
            && text.contains("filename=\"apiserver.crt\"")
    })
    .unwrap_or_else(|| {
        panic!(
            "no textfile after {:?}: {text}\n{}",
            start.elapsed(),
            d.log_text()
        )
    });
    let (code, out) = metrics::promtool_check(&text);
    assert_eq!(code, 0, "{out}");
    let samples = parse(&text);
    let o = openssl_facts(&node.path(&format!("{PKI}/apiserver.crt")));
    assert_eq!(
        one(
            &samples,
            "x509_cert_not_after",
            &[("filename", "apiserver.crt")]
        )
        .value,
        o.not_after as f64
    );
    // Atomic: once the daemon has stopped (no write in flight), no temporary file is left
    // beside it; mode 0644.
    d.signal("TERM");
    assert_eq!(d.wait_exit(T), Some(0));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let others: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(others.len(), 1, "{others:?}");
}

#[test]
fn a_bad_metrics_address_is_a_config_error_naming_the_file() {
    let node = node("{listen: \"localhost:http\"}");
    let out = node.agent(&["run"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.yaml") && err.contains("metrics.listen"),
        "{err}"
    );
    let node = node_textfile_bad();
    let out = node.agent(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.textfile") && err.contains(".prom"),
        "{err}"
    );
}

fn node_textfile_bad() -> NodeTree {
    node("{textfile: /var/lib/node-exporter/agent.txt}")
}
