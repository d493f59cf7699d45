//! What a file holds: certificates and private keys, from PEM (any number of blocks, in
//! any order: a kubelet `*.pem` holds a certificate and its key) or from DER.

use rustls_pki_types::PrivateKeyDer;

/// The certificate material found in one file.
#[derive(Default)]
pub struct Material {
    /// DER of each certificate, in file order.
    pub certificates: Vec<Vec<u8>>,
    /// Each private key, in file order.
    pub private_keys: Vec<PrivateKeyDer<'static>>,
    /// How many public keys (`sa.pub`), CSRs and CRLs were seen and skipped.
    pub other_blocks: usize,
}

impl std::fmt::Debug for Material {
    // Never print key bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("certificates", &self.certificates.len())
            .field("private_keys", &self.private_keys.len())
            .field("other_blocks", &self.other_blocks)
            .finish()
    }
}

/// Parse file contents. The error is a one-line reason for an operator.
pub fn parse_material(bytes: &[u8]) -> Result<Material, String> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("empty file".into());
    }
    if contains(bytes, b"-----BEGIN ") {
        parse_pem(bytes)
    } else {
        parse_der(bytes)
    }
}

fn parse_pem(bytes: &[u8]) -> Result<Material, String> {
    let blocks = pem::parse_many(bytes).map_err(|e| format!("malformed PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("PEM header without a matching END line (truncated file?)".into());
    }
    let mut m = Material::default();
    for (i, block) in blocks.into_iter().enumerate() {
        let n = i + 1;
        match block.tag() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                m.certificates.push(block.into_contents())
            }
            "PRIVATE KEY" => m
                .private_keys
                .push(PrivateKeyDer::Pkcs8(block.into_contents().into())),
            "RSA PRIVATE KEY" => m
                .private_keys
                .push(PrivateKeyDer::Pkcs1(block.into_contents().into())),
            "EC PRIVATE KEY" => m
                .private_keys
                .push(PrivateKeyDer::Sec1(block.into_contents().into())),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(format!(
                    "PEM block {n} is an encrypted private key; the agent needs unencrypted keys"
                ))
            }
            "PUBLIC KEY"
            | "RSA PUBLIC KEY"
            | "CERTIFICATE REQUEST"
            | "NEW CERTIFICATE REQUEST"
            | "X509 CRL"
            | "EC PARAMETERS" => m.other_blocks += 1,
            other => return Err(format!("PEM block {n} has unknown type \"{other}\"")),
        }
    }
    // A truncated file can still hold complete earlier blocks; the partial last one is
    // invisible to the PEM parser, so look for an unmatched BEGIN.
    let begins = count(bytes, b"-----BEGIN ");
    let ends = count(bytes, b"-----END ");
    if begins != ends {
        return Err(format!(
            "{begins} PEM BEGIN lines but {ends} END lines (truncated file?)"
        ));
    }
    Ok(m)
}

fn parse_der(bytes: &[u8]) -> Result<Material, String> {
    let mut m = Material::default();
    if x509_parser::parse_x509_certificate(bytes).is_ok() {
        m.certificates.push(bytes.to_vec());
        return Ok(m);
    }
    if let Ok(key) = PrivateKeyDer::try_from(bytes.to_vec()) {
        if rcgen::KeyPair::try_from(&key).is_ok() {
            m.private_keys.push(key);
            return Ok(m);
        }
    }
    Err("neither PEM nor a DER certificate or private key".into())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_whitespace_files_are_empty() {
        assert_eq!(parse_material(b"").unwrap_err(), "empty file");
        assert_eq!(parse_material(b" \n\t\n").unwrap_err(), "empty file");
    }

    #[test]
    fn random_bytes_are_rejected() {
        let junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert!(parse_material(&junk)
            .unwrap_err()
            .contains("neither PEM nor"));
    }

    #[test]
    fn truncated_pem_is_named() {
        let e = parse_material(b"-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn bad_base64_is_named() {
        let e = parse_material(
            b"-----BEGIN CERTIFICATE-----\n!!!notbase64***\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(e.contains("malformed PEM"), "{e}");
    }

    #[test]
    fn key_debug_output_never_contains_key_bytes() {
        let m =
            parse_material(b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n")
                .unwrap();
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("AAECAwQF") && !shown.contains("[0, 1, 2"),
            "{shown}"
        );
    }
}
