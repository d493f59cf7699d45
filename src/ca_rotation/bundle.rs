//! Trust bundles as lists of certificates (pure): which certificates of a rotation a
//! bundle holds, and the bundle a phase wants.

use crate::pki::{parse_material, CertInfo};

/// The two CAs of one rotation, as DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// The certificates of a PEM bundle, in file order.
pub fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let m = parse_material(pem)?;
    if m.certificates.is_empty() {
        return Err("no certificate in the bundle".into());
    }
    Ok(m.certificates)
}

/// PEM of `certs`, one block each.
pub fn to_pem(certs: &[Vec<u8>]) -> String {
    certs
        .iter()
        .map(|der| {
            let cfg = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
            pem::encode_config(&pem::Pem::new("CERTIFICATE", der.clone()), cfg)
        })
        .collect::<Vec<_>>()
        .join("")
}

/// `existing` with the rotation's CAs replaced by `wanted`, at the place the first of them
/// was (or first, if neither was there). Other certificates in the bundle (other CAs an
/// operator put there) are kept in their order.
pub fn rebundle(existing: &[Vec<u8>], pair: &Pair, wanted: &[&[u8]]) -> Vec<Vec<u8>> {
    let ours = |c: &Vec<u8>| *c == pair.old || *c == pair.new;
    let at = existing.iter().position(ours).unwrap_or(0);
    let mut out: Vec<Vec<u8>> = existing[..at]
        .iter()
        .filter(|c| !ours(c))
        .cloned()
        .collect();
    out.extend(wanted.iter().map(|c| c.to_vec()));
    out.extend(existing[at..].iter().filter(|c| !ours(c)).cloned());
    out
}

/// Whether `bundle` holds either CA of the rotation (so it is a trust point of it).
pub fn holds_either(bundle: &[Vec<u8>], pair: &Pair) -> bool {
    bundle.iter().any(|c| *c == pair.old || *c == pair.new)
}

/// Parse one CA certificate, with the reason on failure.
pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
    CertInfo::parse(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(b: u8) -> Vec<u8> {
        vec![b]
    }

    #[test]
    fn rebundle_replaces_only_the_rotation_cas_in_place() {
        let pair = Pair {
            old: c(1),
            new: c(2),
        };
        let other = c(9);
        // prepare: old alone -> old + new, other CAs kept where they were.
        let b = rebundle(&[other.clone(), c(1)], &pair, &[&pair.old, &pair.new]);
        assert_eq!(b, vec![other.clone(), c(1), c(2)]);
        // reissue: new first (its key signs).
        let b = rebundle(&b, &pair, &[&pair.new, &pair.old]);
        assert_eq!(b, vec![other.clone(), c(2), c(1)]);
        // finalize: new alone; running it twice changes nothing.
        let b = rebundle(&b, &pair, &[&pair.new]);
        assert_eq!(b, vec![other.clone(), c(2)]);
        assert_eq!(rebundle(&b, &pair, &[&pair.new]), b);
        // A bundle without either gets them first.
        assert_eq!(rebundle(&[c(7)], &pair, &[&pair.new]), vec![c(2), c(7)]);
        assert!(holds_either(&[c(7), c(2)], &pair));
        assert!(!holds_either(&[c(7)], &pair));
    }
}
