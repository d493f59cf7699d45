//! A small synchronous HTTPS/1.1 client (rustls) for the stand-in's tests, plus CSR helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kube_standin_apiserver::StandIn;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

pub enum Auth {
    None,
    Token(String),
    Cert { cert_pem: String, key_pem: String },
}

fn der_blocks(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    chunked: bool,
    chunk_left: usize,
    done: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn read_some(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        if !self.chunked {
            let n = self.reader.read_to_end(buf).unwrap_or(0);
            self.done = true;
            return n > 0;
        }
        if self.chunk_left == 0 {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                self.done = true;
                return false;
            }
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if size == 0 {
                self.done = true;
                return false;
            }
            self.chunk_left = size;
        }
        let mut b = vec![0u8; self.chunk_left];
        if self.reader.read_exact(&mut b).is_err() {
            self.done = true;
            return false;
        }
        buf.extend_from_slice(&b);
        self.chunk_left = 0;
        let mut crlf = [0u8; 2];
        let _ = self.reader.read_exact(&mut crlf);
        true
    }

    pub fn body(mut self) -> Vec<u8> {
        let mut out = vec![];
        while self.read_some(&mut out) {}
        out
    }

    pub fn json(self) -> Value {
        let b = self.body();
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&b)))
    }

    /// Watch events until the stream ends or `n` have arrived (read timeout: the client's).
    pub fn events(&mut self, n: usize) -> Vec<Value> {
        let mut pending = vec![];
        let mut out = vec![];
        while out.len() < n {
            if let Some(pos) = pending.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                out.push(serde_json::from_slice(&line).unwrap());
                continue;
            }
            if !self.read_some(&mut pending) {
                break;
            }
        }
        out
    }

    /// True when the server has ended the (chunked) body.
    pub fn ended(&mut self) -> bool {
        let mut b = vec![];
        !self.read_some(&mut b) && b.is_empty()
    }
}

pub struct Client {
    pub addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    auth_header: Option<String>,
    pub timeout: Duration,
}

impl Client {
    pub fn new(api: &StandIn, auth: Auth) -> Client {
        Self::with_ca(api.addr(), api.ca_pem(), auth)
    }

    pub fn with_ca(addr: std::net::SocketAddr, ca_pem: &str, auth: Auth) -> Client {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for d in der_blocks(ca_pem) {
            roots.add(CertificateDer::from(d)).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let (config, auth_header) = match auth {
            Auth::None => (b.with_no_client_auth(), None),
            Auth::Token(t) => (b.with_no_client_auth(), Some(format!("Bearer {t}"))),
            Auth::Cert { cert_pem, key_pem } => {
                let chain = der_blocks(&cert_pem)
                    .into_iter()
                    .map(CertificateDer::from)
                    .collect();
                let key = PrivateKeyDer::try_from(der_blocks(&key_pem).remove(0)).unwrap();
                (b.with_client_auth_cert(chain, key).unwrap(), None)
            }
        };
        Client {
            addr,
            config: Arc::new(config),
            auth_header,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        self.request_raw(
            method,
            path,
            body.map(|b| serde_json::to_vec(b).unwrap()),
            "application/json",
        )
    }

    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        accept: &str,
    ) -> Response {
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(self.timeout)).unwrap();
        let conn = rustls::ClientConnection::new(
            self.config.clone(),
            ServerName::try_from("127.0.0.1").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nConnection: close\r\nUser-Agent: standin-test\r\n", self.addr);
        if let Some(a) = &self.auth_header {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method == "POST" || method == "PUT" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        tls.write_all(req.as_bytes()).unwrap();
        tls.write_all(&body).unwrap();
        tls.flush().unwrap();
        let mut reader = BufReader::new(tls);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = vec![];
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        Response {
            status,
            headers,
            reader,
            chunked,
            chunk_left: 0,
            done: false,
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.request("GET", path, None);
        let s = r.status;
        (s, r.json())
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.request("POST", path, Some(body));
        let s = r.status;
        (s, r.json())
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.request("PUT", path, Some(body));
        let s = r.status;
        (s, r.json())
    }
}

pub const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// A PEM CSR for a fresh ECDSA P-256 key: (csr_pem, key_pem).
pub fn make_csr(cn: &str, org: &str, sans: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let csr = p.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key.serialize_pem())
}

pub fn csr_object(
    name_or_generate: &str,
    csr_pem: &str,
    signer: &str,
    usages: &[&str],
    expiration: Option<i64>,
) -> Value {
    let mut meta = json!({});
    if let Some(prefix) = name_or_generate.strip_suffix('*') {
        meta["generateName"] = json!(prefix);
    } else {
        meta["name"] = json!(name_or_generate);
    }
    let mut spec = json!({
        "request": base64::engine::general_purpose::STANDARD.encode(csr_pem),
        "signerName": signer,
        "usages": usages,
    });
    if let Some(e) = expiration {
        spec["expirationSeconds"] = json!(e);
    }
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": meta, "spec": spec})
}

pub fn node_client_csr(node: &str) -> (String, String) {
    make_csr(&format!("system:node:{node}"), "system:nodes", &[])
}

pub const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];
pub const SERVING_USAGES: &[&str] = &["digital signature", "server auth"];

/// The issued certificate (PEM) of a CSR object, if any.
pub fn issued_cert(o: &kube_standin_apiserver::CertificateSigningRequest) -> Option<String> {
    o.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .map(|c| String::from_utf8(c.0.clone()).unwrap())
}

pub fn cond(
    o: &kube_standin_apiserver::CertificateSigningRequest,
    t: &str,
) -> Option<(String, String)> {
    o.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

pub fn wait_csr(
    api: &StandIn,
    name: &str,
    pred: impl Fn(&kube_standin_apiserver::CertificateSigningRequest) -> bool,
) -> kube_standin_apiserver::CertificateSigningRequest {
    let l = api
        .wait_for(Duration::from_secs(10), |l| {
            l.iter()
                .any(|o| o.metadata.name.as_deref() == Some(name) && pred(o))
        })
        .unwrap();
    l.into_iter()
        .find(|o| o.metadata.name.as_deref() == Some(name))
        .unwrap()
}

pub fn spki_of_cert(pem: &str) -> Vec<u8> {
    let der = der_blocks(pem).remove(0);
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    c.tbs_certificate.subject_pki.raw.to_vec()
}

pub fn spki_of_csr(pem: &str) -> Vec<u8> {
    let der = der_blocks(pem).remove(0);
    let (_, c) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<'_, x509_parser::error::X509Error>>::from_der(&der).unwrap();
    c.certification_request_info.subject_pki.raw.to_vec()
}

/// (notBefore, notAfter) as unix seconds.
pub fn validity(pem: &str) -> (i64, i64) {
    let der = der_blocks(pem).remove(0);
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    (
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
