//! Zero downtime through a whole CA rotation: an HTTPS server built from the node's files
//! (serving certificate apiserver.crt/.key, client CAs from ca.crt, client certificates
//! required and verified, files re-read for every connection as kube-apiserver's dynamic
//! reloading does) and the real kubectl with the node's kubeconfigs keep talking while
//! prepare, reissue and finalize run. Every kubectl request and every handshake is counted:
//! none may fail.

mod ca_rotation_common;
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use ca_rotation_common::*;
use kube_cert_agent::pki::parse_material;

#[derive(Default)]
struct Counts {
    handshakes_ok: AtomicUsize,
    handshakes_failed: AtomicUsize,
    requests_ok: AtomicUsize,
    requests_failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// The server's TLS config from the node's files now; `None` if the certificate and key
/// read are not a pair (read between the two renames of a swap): keep the last good one.
fn server_config(pki: &std::path::Path) -> Option<Arc<rustls::ServerConfig>> {
    let read = |n: &str| std::fs::read(pki.join(n)).ok();
    let (cert, key, ca) = (
        read("apiserver.crt")?,
        read("apiserver.key")?,
        read("ca.crt")?,
    );
    kube_cert_agent::store::verify::check_pair(&cert, &key).ok()?;
    let chain = parse_material(&cert).ok()?.certificates;
    let key = parse_material(&key).ok()?.private_keys.into_iter().next()?;
    let mut roots = rustls::RootCertStore::empty();
    for der in parse_material(&ca).ok()?.certificates {
        roots.add(der.into()).ok()?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .ok()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.into_iter().map(Into::into).collect(), key)
        .ok()?;
    Some(Arc::new(config))
}

fn serve(listener: TcpListener, pki: PathBuf, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let mut last_good = server_config(&pki).expect("the node's files make a server");
    for conn in listener.incoming() {
        if stop.load(SeqCst) {
            break;
        }
        let Ok(mut tcp) = conn else { continue };
        if let Some(c) = server_config(&pki) {
            last_good = c;
        }
        let conn = rustls::ServerConnection::new(last_good.clone()).unwrap();
        let counts = counts.clone();
        std::thread::spawn(move || {
            let mut tls = rustls::StreamOwned::new(conn, &mut tcp);
            while tls.conn.is_handshaking() {
                if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                    counts.handshakes_failed.fetch_add(1, SeqCst);
                    counts
                        .errors
                        .lock()
                        .unwrap()
                        .push(format!("server handshake: {e}"));
                    return;
                }
            }
            counts.handshakes_ok.fetch_add(1, SeqCst);
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
    }
}

/// kubectl with the node's kubeconfigs, in turn, until told to stop.
fn clients(node: PathBuf, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let mut i = 0;
    while !stop.load(SeqCst) {
        let kc = node.join(KUBECONFIGS[i % KUBECONFIGS.len()].trim_start_matches('/'));
        i += 1;
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["get", "--raw", "/healthz"])
            .output()
            .expect("kubectl runs");
        if out.status.success() && out.stdout == b"ok" {
            counts.requests_ok.fetch_add(1, SeqCst);
        } else {
            counts.requests_failed.fetch_add(1, SeqCst);
            counts.errors.lock().unwrap().push(format!(
                "kubectl --kubeconfig {}: {}",
                kc.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
}

/// Block until kubectl has made `n` more successful requests (progress, not time).
fn wait_for_requests(counts: &Counts, n: usize) {
    let target = counts.requests_ok.load(SeqCst) + n;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while counts.requests_ok.load(SeqCst) < target {
        let failed = counts.requests_failed.load(SeqCst);
        assert_eq!(failed, 0, "{:?}", counts.errors.lock().unwrap());
        assert!(
            std::time::Instant::now() < deadline,
            "no progress: {:?}",
            counts.errors.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn kubectl_keeps_talking_to_a_server_built_from_the_node_through_all_three_phases() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let k = Kubeadm::new(&format!("https://{addr}"), "");
    let counts = Arc::new(Counts::default());
    let (stop_server, stop_client) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let server = {
        let (pki, c, s) = (k.node.path(PKI), counts.clone(), stop_server.clone());
        std::thread::spawn(move || serve(listener, pki, c, s))
    };
    let client = {
        let (node, c, s) = (
            k.node.root().to_path_buf(),
            counts.clone(),
            stop_client.clone(),
        );
        std::thread::spawn(move || clients(node, c, s))
    };
    wait_for_requests(&counts, 2);
    let mut per_phase = Vec::new();
    for phase in ["prepare", "reissue", "finalize"] {
        let before = counts.requests_ok.load(SeqCst);
        let (code, text) = k.phase("cluster", phase, &[]);
        assert_eq!(code, 0, "{phase}: {text}");
        if phase == "reissue" {
            kubelet_from_new_ca(&k);
        }
        // Requests after the phase, with what it wrote.
        wait_for_requests(&counts, 3);
        per_phase.push((phase, counts.requests_ok.load(SeqCst) - before));
    }
    // The client stops first: the server answers its last request.
    stop_client.store(true, SeqCst);
    client.join().unwrap();
    stop_server.store(true, SeqCst);
    // Wake the accept loop so that it sees the stop flag.
    let _ = std::net::TcpStream::connect(addr);
    server.join().unwrap();
    let errors = counts.errors.lock().unwrap().clone();
    println!(
        "requests ok {}, handshakes ok {}, per phase {per_phase:?}",
        counts.requests_ok.load(SeqCst),
        counts.handshakes_ok.load(SeqCst)
    );
    assert_eq!(counts.requests_failed.load(SeqCst), 0, "{errors:?}");
    assert_eq!(counts.handshakes_failed.load(SeqCst), 0, "{errors:?}");
    assert!(counts.requests_ok.load(SeqCst) >= 11);
    // The server really moved: it now presents a certificate from the new CA only.
    let pki = k.node.path(PKI);
    assert_eq!(bundle_serials(&pki.join("ca.crt")).len(), 1);
    assert!(verifies(&pki.join("ca.crt"), &pki.join("apiserver.crt")));
}
