//! Private keys: which public key they belong to, and what kind they are.

use rustls_pki_types::PrivateKeyDer;

/// The raw public key (the contents of a certificate's subjectPublicKey BIT STRING) that
/// belongs to this private key. PKCS#1, SEC1 and PKCS#8 (RSA, ECDSA P-256/384/521, Ed25519).
pub fn public_key_of(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, String> {
    use rcgen::PublicKeyData;
    let pair =
        rcgen::KeyPair::try_from(key).map_err(|e| format!("private key cannot be loaded ({e})"))?;
    Ok(pair.der_bytes().to_vec())
}
