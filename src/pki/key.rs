//! Private keys: which public key they belong to, and what kind they are.
//!
//! Finding a private key's public key means loading the key, which aws-lc validates: for
//! an EC key two or three scalar multiplications (~0.3 ms for P-384, the largest single
//! cost of a `rotate` after the fsyncs). One rotation asks about the same keys several
//! times (the current key: the rotation's scan, the store's check of the current version,
//! the check of which files it belongs to; the new key: the store's check before
//! installing it), so each thread remembers its last few answers, keyed by the SHA-256 of
//! the key's bytes (never the bytes themselves).

use std::cell::RefCell;

use rustls_pki_types::PrivateKeyDer;

/// Enough for one rotation: the CA's key, the current key, the new key.
const REMEMBERED: usize = 4;

type Digest = [u8; 32];

thread_local! {
    static RECENT: RefCell<Vec<(Digest, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

fn digest(secret_der: &[u8]) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret_der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Remember that the private key encoded as `secret_der` belongs to the public key
/// `public` (a key just generated, or loaded and so validated).
pub(crate) fn remember(secret_der: &[u8], public: &[u8]) {
    let d = digest(secret_der);
    RECENT.with_borrow_mut(|recent| {
        if recent.iter().any(|(k, _)| *k == d) {
            return;
        }
        if recent.len() == REMEMBERED {
            recent.remove(0);
        }
        recent.push((d, public.to_vec()));
    });
}

/// The raw public key (the contents of a certificate's subjectPublicKey BIT STRING) that
/// belongs to this private key. PKCS#1, SEC1 and PKCS#8 (RSA, ECDSA P-256/384/521, Ed25519).
pub fn public_key_of(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, String> {
    use rcgen::PublicKeyData;
    let d = digest(key.secret_der());
    let known = RECENT.with_borrow(|recent| {
        recent
            .iter()
            .find(|(k, _)| *k == d)
            .map(|(_, public)| public.clone())
    });
    if let Some(public) = known {
        return Ok(public);
    }
    let pair =
        rcgen::KeyPair::try_from(key).map_err(|e| format!("private key cannot be loaded ({e})"))?;
    remember(key.secret_der(), pair.der_bytes());
    Ok(pair.der_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keygen::{generate, KeyType};
    use rcgen::PublicKeyData;

    fn der(k: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(k.serialize_der().into())
    }

    #[test]
    fn remembered_answers_are_the_keys_own_also_after_others_push_them_out() {
        let keys: Vec<rcgen::KeyPair> = (0..REMEMBERED + 3)
            .map(|_| generate(KeyType::EcdsaP256).unwrap())
            .collect();
        for _ in 0..2 {
            for k in &keys {
                assert_eq!(public_key_of(&der(k)).unwrap(), k.der_bytes());
            }
        }
        let in_another_thread = der(&keys[0]);
        let public = std::thread::spawn(move || public_key_of(&in_another_thread).unwrap());
        assert_eq!(public.join().unwrap(), keys[0].der_bytes());
    }

    #[test]
    fn a_key_that_does_not_load_is_an_error_every_time() {
        let bad = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
        assert!(public_key_of(&bad).is_err());
        assert!(public_key_of(&bad).is_err());
    }
}
