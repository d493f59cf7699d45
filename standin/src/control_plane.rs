//! The control plane's half of a CA rotation, as knobs: kube-apiserver's client CA bundle
//! (`--client-ca-file`, widened in prepare and narrowed in finalize), kube-controller-
//! manager's signing CA (`--cluster-signing-cert-file`/`-key-file`, switched in reissue) and
//! the API server's serving certificate (re-issued from the signing CA in reissue, served
//! from the next TLS handshake on, as kube-apiserver reloads its files).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::Ca;
use crate::state::lock;
use crate::StandIn;

/// The serving certificate every handshake gets; replaced by [`StandIn::reissue_serving_cert`].
#[derive(Debug)]
pub struct ServingCert(Mutex<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(lock(&self.0).clone())
    }
}

fn pem_blocks(pem_text: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = vec![];
    for p in x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes()) {
        out.push(p.map_err(|e| anyhow!("PEM: {e}"))?.contents);
    }
    Ok(out)
}

/// kube-apiserver's serving certificate from `ca` (its SANs as kubeadm makes them for a
/// local API server), as rustls serves it.
fn serving_key(ca: &Ca) -> Result<Arc<CertifiedKey>> {
    let serving = ca.issue(
        "kube-apiserver",
        &[],
        &["localhost", "127.0.0.1", "kubernetes", "kubernetes.default"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        Duration::from_secs(365 * 24 * 3600),
    )?;
    let chain: Vec<CertificateDer<'static>> = pem_blocks(&serving.cert_pem)?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::try_from(pem_blocks(&serving.key_pem)?.remove(0))
        .map_err(|e| anyhow!("serving key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("serving key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

impl ServingCert {
    pub fn new(ca: &Ca) -> Result<Arc<ServingCert>> {
        Ok(Arc::new(ServingCert(Mutex::new(serving_key(ca)?))))
    }
}

/// The CA certificates (DER) of a PEM bundle.
fn ders(pems: &[&str]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in pems {
        let blocks = pem_blocks(p)?;
        if blocks.is_empty() {
            return Err(anyhow!("no certificate in {p:?}"));
        }
        out.extend(blocks);
    }
    Ok(out)
}

impl StandIn {
    /// kube-apiserver's `--client-ca-file`: client certificates signed by any of these CAs
    /// authenticate (at start: the cluster CA alone). A CA rotation's prepare makes it old +
    /// new, its finalize new alone.
    pub fn set_client_cas(&self, pems: &[&str]) -> Result<()> {
        *lock(&self.shared.client_cas) = ders(pems)?;
        Ok(())
    }

    /// kube-controller-manager's signing CA (`--cluster-signing-cert-file`/`-key-file`):
    /// approved CSRs are signed by it from now on (at start: the cluster CA). A CA
    /// rotation's reissue switches it to the new CA.
    pub fn set_signing_ca(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        let ca = Ca::from_parts(cert_pem.to_string(), key_pem.to_string())?;
        *lock(&self.shared.signer) = Some(Arc::new(ca));
        Ok(())
    }

    /// kube-apiserver's serving certificate re-issued from the current signing CA (a
    /// control-plane node's reissue re-issues apiserver.crt); new handshakes get it.
    pub fn reissue_serving_cert(&self) -> Result<()> {
        let signer = lock(&self.shared.signer).clone();
        let key = match &signer {
            Some(ca) => serving_key(ca)?,
            None => serving_key(&self.shared.ca)?,
        };
        *lock(&self.shared.serving.0) = key;
        Ok(())
    }
}
