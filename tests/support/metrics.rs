//! Reading the agent's metrics as a client would: an HTTP GET, the text format parsed into
//! samples, `promtool check metrics`, and what openssl says about the same files.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::daemon::{wait_until, Daemon};

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The address the daemon logged (`metrics: serving http://ADDR/metrics`).
pub fn address(d: &Daemon) -> String {
    let mut addr = None;
    wait_until(Duration::from_secs(30), || {
        addr = d.log_text().lines().find_map(|l| {
            let rest = l.split("metrics: serving http://").nth(1)?;
            Some(rest.trim_end_matches("/metrics").trim().to_string())
        });
        addr.is_some()
    });
    addr.unwrap_or_else(|| {
        panic!(
            "the daemon never said where it serves metrics\n{}",
            d.log_text()
        )
    })
}

/// `GET path` over HTTP/1.1 (connection closed after): status line, headers and body.
pub fn get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

pub fn scrape(addr: &str) -> String {
    let (status, headers, body) = get(addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    body
}

/// `promtool check metrics` on `text`: (exit code, its output).
pub fn promtool_check(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/install-test-deps.sh: apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The samples of a text exposition (enough of the format for our output: no timestamps).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = vec![];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return m;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(o) => v.push(o),
                    None => {}
                },
                '"' => break,
                o => v.push(o),
            }
        }
        m.insert(key.trim_start_matches(',').to_string(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The samples named `name` whose labels include every pair of `want`.
pub fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

pub fn one<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> &'a Sample {
    let found = find(samples, name, want);
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0]
}

/// What openssl says about a PEM certificate file, in the exporter's terms: not before and
/// not after as Unix time, the serial in decimal, subject and issuer attributes.
pub struct OpensslFacts {
    pub not_before: i64,
    pub not_after: i64,
    pub serial_decimal: String,
    pub subject: BTreeMap<String, String>,
    pub issuer: BTreeMap<String, String>,
}

pub fn openssl_facts(cert: &Path) -> OpensslFacts {
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-startdate",
            "-enddate",
            "-serial",
            "-dateopt",
            "iso_8601",
        ])
        .args(["-subject", "-issuer", "-nameopt", "RFC2253", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {text}"))
            .to_string()
    };
    // `2026-12-02 05:33:28Z`
    let unix = |s: String| {
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
        time::PrimitiveDateTime::parse(s.trim(), &fmt)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .assume_utc()
            .unix_timestamp()
    };
    let rdn = |s: String| -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        // RFC 2253 lists the last RDN first; the exporter takes each attribute's first value
        // in certificate order, so the last one written here.
        for part in s.split(',') {
            if let Some((k, v)) = part.split_once('=') {
                m.insert(k.trim().to_string(), v.to_string());
            }
        }
        m
    };
    OpensslFacts {
        not_before: unix(field("notBefore=")),
        not_after: unix(field("notAfter=")),
        serial_decimal: num_bigint::BigUint::parse_bytes(field("serial=").trim().as_bytes(), 16)
            .unwrap()
            .to_string(),
        subject: rdn(field("subject=")),
        issuer: rdn(field("issuer=")),
    }
}

/// deploy/monitoring: the shipped rules, PrometheusRule and dashboard.
pub fn monitoring_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring")
}

pub fn yaml(p: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every expression of the rules file and the dashboard (`$instance` as `.*`).
pub fn expressions() -> Vec<String> {
    let rules = yaml(&monitoring_dir().join("kube-cert-agent.rules.yaml"));
    let mut exprs: Vec<String> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().replace("$instance", ".*"));
        }
    }
    exprs
}

/// `s` with every byte but unreserved ones percent-encoded (a query parameter).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
