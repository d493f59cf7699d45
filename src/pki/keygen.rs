//! Generating private keys of the types the config names.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyType {
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
        }
    }
}

/// A fresh key pair. RSA-4096 takes hundreds of milliseconds: async callers run this in
/// `spawn_blocking`.
pub fn generate(key_type: KeyType) -> Result<rcgen::KeyPair, String> {
    use rcgen::{
        KeyPair, RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256,
    };
    let pair = match key_type {
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
    };
    let pair = pair.map_err(|e| format!("cannot generate a {} key: {e}", key_type.name()))?;
    // The store checks the new pair before installing it: no need to load the key again.
    super::key::remember(
        pair.serialized_der(),
        rcgen::PublicKeyData::der_bytes(&pair),
    );
    Ok(pair)
}

/// Load a private key (PKCS#1, SEC1 or PKCS#8 PEM/DER) for signing.
pub fn load(key: &rustls_pki_types::PrivateKeyDer<'_>) -> Result<rcgen::KeyPair, String> {
    let pair =
        rcgen::KeyPair::try_from(key).map_err(|e| format!("private key cannot be loaded ({e})"))?;
    super::key::remember(key.secret_der(), rcgen::PublicKeyData::der_bytes(&pair));
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[test]
    fn generated_keys_have_the_asked_type_and_round_trip_through_pem() {
        for kt in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let k = generate(kt).unwrap();
            let pem = k.serialize_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
            let m = crate::pki::parse_material(pem.as_bytes()).unwrap();
            let again = load(&m.private_keys[0]).unwrap();
            assert_eq!(again.der_bytes(), k.der_bytes());
            assert_eq!(kt.is_rsa(), matches!(kt, KeyType::Rsa2048));
        }
    }
}
