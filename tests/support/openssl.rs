//! Certificates made with the real `openssl` CLI, so the agent is checked against an
//! independent implementation.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run openssl in `dir`; panic with its stderr on failure; return stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[derive(Clone, Copy, Debug)]
pub enum Key {
    Rsa2048,
    Rsa4096,
    P256,
    P384,
    Ed25519,
}

impl Key {
    fn genpkey_args(self) -> Vec<&'static str> {
        match self {
            Key::Rsa2048 => vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Key::Rsa4096 => vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            Key::P256 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Key::P384 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Key::Ed25519 => vec!["-algorithm", "ED25519"],
        }
    }
}

/// A certificate and its key on disk.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn genkey(path: &Path, key: Key) {
    let mut args = vec!["genpkey"];
    args.extend(key.genpkey_args());
    args.extend(["-out", path.to_str().unwrap()]);
    openssl(path.parent().unwrap(), &args);
}

/// A self-signed CA valid for `days`.
pub fn ca(dir: &Path, name: &str, key: Key, cn: &str, days: u32) -> Pair {
    let pair = Pair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    genkey(&pair.key, key);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            pair.key.to_str().unwrap(),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            &days.to_string(),
            "-out",
            pair.cert.to_str().unwrap(),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ],
    );
    pair
}

/// What a leaf looks like.
pub struct Leaf<'a> {
    pub subject: &'a str,
    /// `DNS:a,IP:10.0.0.1`; empty for none.
    pub sans: &'a str,
    pub eku: &'a str,
    pub key: Key,
    /// `YYYYMMDDHHMMSSZ`; both or neither.
    pub dates: Option<(&'a str, &'a str)>,
    pub days: u32,
}

impl Default for Leaf<'_> {
    fn default() -> Self {
        Leaf {
            subject: "/CN=leaf",
            sans: "",
            eku: "serverAuth",
            key: Key::P256,
            dates: None,
            days: 4,
        }
    }
}

/// Issue a leaf from `ca` into `dir/name.crt` + `dir/name.key`, with `openssl ca` (which can
/// backdate: expired and not-yet-valid fixtures).
pub fn leaf(dir: &Path, name: &str, ca: &Pair, spec: &Leaf) -> Pair {
    let pair = Pair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    genkey(&pair.key, spec.key);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir(w.join("new")).unwrap();
    std::fs::write(w.join("index.txt"), "").unwrap();
    std::fs::write(w.join("serial"), format!("{:032x}\n", rand_serial())).unwrap();
    let mut ext = format!(
        "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={}\n",
        spec.eku
    );
    if !spec.sans.is_empty() {
        ext.push_str(&format!("subjectAltName={}\n", spec.sans));
    }
    std::fs::write(w.join("ext.cnf"), ext).unwrap();
    std::fs::write(
        w.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca=d\n[d]\ndatabase={0}/index.txt\nnew_certs_dir={0}/new\nserial={0}/serial\n\
             default_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\norganizationName=optional\n",
            w.display()
        ),
    )
    .unwrap();
    let csr = w.join("req.csr");
    openssl(
        w,
        &[
            "req",
            "-new",
            "-key",
            pair.key.to_str().unwrap(),
            "-subj",
            spec.subject,
            "-out",
            csr.to_str().unwrap(),
        ],
    );
    let days = spec.days.to_string();
    let mut args = vec![
        "ca",
        "-batch",
        "-notext",
        "-preserveDN",
        "-config",
        "ca.cnf",
        "-cert",
        ca.cert.to_str().unwrap(),
        "-keyfile",
        ca.key.to_str().unwrap(),
        "-extfile",
        "ext.cnf",
        "-extensions",
        "v3",
        "-in",
        "req.csr",
        "-out",
        pair.cert.to_str().unwrap(),
    ];
    match spec.dates {
        Some((start, end)) => args.extend(["-startdate", start, "-enddate", end]),
        None => args.extend(["-days", &days]),
    }
    openssl(w, &args);
    pair
}

/// A CA certificate for an existing key with explicit dates (expired CAs), via
/// `openssl ca -selfsign`.
pub fn ca_with_dates(out: &Path, key: &Path, cn: &str, start: &str, end: &str) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir(w.join("new")).unwrap();
    std::fs::write(w.join("index.txt"), "").unwrap();
    std::fs::write(w.join("serial"), format!("{:032x}\n", rand_serial())).unwrap();
    std::fs::write(w.join("ext.cnf"), "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n").unwrap();
    std::fs::write(
        w.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca=d\n[d]\ndatabase={0}/index.txt\nnew_certs_dir={0}/new\nserial={0}/serial\n\
             default_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
            w.display()
        ),
    )
    .unwrap();
    openssl(
        w,
        &[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            "req.csr",
        ],
    );
    openssl(
        w,
        &[
            "ca",
            "-batch",
            "-notext",
            "-selfsign",
            "-config",
            "ca.cnf",
            "-keyfile",
            key.to_str().unwrap(),
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3",
            "-in",
            "req.csr",
            "-out",
            out.to_str().unwrap(),
            "-startdate",
            start,
            "-enddate",
            end,
        ],
    );
}

fn rand_serial() -> u128 {
    let mut b = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    // Positive, and never a leading zero byte, so serial formats are not ambiguous.
    (u128::from_be_bytes(b) >> 2) | (1u128 << 124)
}

/// What openssl says about a certificate: (serial lower-case, subject normalised, notAfter
/// as RFC 3339, SANs sorted as `DNS:x` / `IP:y`).
pub struct OpensslView {
    pub serial: String,
    pub subject: String,
    pub not_after: String,
    pub sans: Vec<String>,
}

pub fn view(cert_pem: &Path) -> OpensslView {
    let text = openssl(
        Path::new("/"),
        &[
            "x509",
            "-in",
            cert_pem.to_str().unwrap(),
            "-noout",
            "-serial",
            "-subject",
            "-enddate",
            "-ext",
            "subjectAltName",
        ],
    );
    let mut v = OpensslView {
        serial: String::new(),
        subject: String::new(),
        not_after: String::new(),
        sans: Vec::new(),
    };
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(s) = l.strip_prefix("serial=") {
            v.serial = s.to_ascii_lowercase();
        } else if let Some(s) = l.strip_prefix("subject=") {
            v.subject = s.replace(" = ", "=");
        } else if let Some(s) = l.strip_prefix("notAfter=") {
            v.not_after = openssl_date_to_rfc3339(s);
        } else if l.contains("Subject Alternative Name") {
            if let Some(names) = lines.next() {
                v.sans = names
                    .split(',')
                    .map(|s| s.trim().replace("IP Address:", "IP:"))
                    .collect();
                v.sans.sort();
            }
        }
    }
    v
}

/// `Nov 26 04:32:00 2026 GMT` -> `2026-11-26T04:32:00Z`.
fn openssl_date_to_rfc3339(s: &str) -> String {
    let fmt = time::format_description::parse_borrowed::<2>(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT",
    )
    .unwrap();
    let t = time::PrimitiveDateTime::parse(s.trim(), &fmt)
        .unwrap_or_else(|e| panic!("openssl date {s:?}: {e}"))
        .assume_utc();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Base64 of a file, for kubeconfig `*-data` fields.
pub fn b64(path: &Path) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}
