//! x509-certificate-exporter's label schema, so that its dashboards and alerts work on our
//! series unchanged: `filepath`, `filename`, `serial_number` (decimal, as Go's
//! `big.Int.String()` prints it), `subject_*` / `issuer_*` (`C`, `ST`, `L`, `O`, `OU`, `CN`;
//! present only when the name has it; the first value of each, but the last `CN`, as Go's
//! `pkix.Name` keeps them) and, for certificates in a
//! kubeconfig, `embedded_kind` (`cluster` or `user`) and `embedded_key` (its name).

use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::inventory::Entry;
use crate::pki::CertInfo;

pub type Labels = Vec<(&'static str, String)>;

/// The labels of one certificate of the inventory, sorted by name as client_golang sorts them.
pub fn cert_labels(entry: &Entry, cert: &CertInfo) -> Labels {
    let mut l = file_labels(&entry.path);
    l.push(("serial_number", serial_decimal(&cert.serial)));
    name_labels("subject", &cert.subject_der, &mut l);
    name_labels("issuer", &cert.issuer_der, &mut l);
    if let Some((kind, key)) = entry.location.as_deref().and_then(embedded) {
        l.push(("embedded_kind", kind.to_string()));
        l.push(("embedded_key", key.to_string()));
    }
    l.sort();
    l
}

/// `filepath` and `filename` of a file.
pub fn file_labels(path: &str) -> Labels {
    let filename = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    vec![("filename", filename), ("filepath", path.to_string())]
}

/// `users[admin].client-certificate-data` -> (`user`, `admin`); bundles (`...#2`) too.
pub fn embedded(location: &str) -> Option<(&'static str, &str)> {
    let (kind, rest) = if let Some(r) = location.strip_prefix("users[") {
        ("user", r)
    } else if let Some(r) = location.strip_prefix("clusters[") {
        ("cluster", r)
    } else {
        return None;
    };
    let end = rest.rfind("].")?;
    Some((kind, &rest[..end]))
}

/// Lower-case hex (as the inventory keeps it) to the decimal Go prints.
pub fn serial_decimal(hex: &str) -> String {
    num_bigint::BigUint::parse_bytes(hex.as_bytes(), 16)
        .map(|n| n.to_string())
        .unwrap_or_else(|| hex.to_string())
}

fn name_labels(prefix: &'static str, der: &[u8], out: &mut Labels) {
    let Ok((_, name)) = X509Name::from_der(der) else {
        return;
    };
    type Attrs<'a> =
        Box<dyn Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>> + 'a>;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue| a.as_str().ok().map(str::to_string);
    let first = |mut it: Attrs| it.find_map(text);
    let attrs: [(&'static str, Option<String>); 6] = [
        ("C", first(Box::new(name.iter_country()))),
        ("ST", first(Box::new(name.iter_state_or_province()))),
        ("L", first(Box::new(name.iter_locality()))),
        ("O", first(Box::new(name.iter_organization()))),
        ("OU", first(Box::new(name.iter_organizational_unit()))),
        // Go's pkix.Name overwrites CommonName with each CN it meets: the last one wins.
        ("CN", name.iter_common_name().filter_map(text).last()),
    ];
    for (attr, value) in attrs {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push((label_name(prefix, attr), v));
        }
    }
}

fn label_name(prefix: &'static str, attr: &'static str) -> &'static str {
    match (prefix, attr) {
        ("subject", "C") => "subject_C",
        ("subject", "ST") => "subject_ST",
        ("subject", "L") => "subject_L",
        ("subject", "O") => "subject_O",
        ("subject", "OU") => "subject_OU",
        ("subject", _) => "subject_CN",
        (_, "C") => "issuer_C",
        (_, "ST") => "issuer_ST",
        (_, "L") => "issuer_L",
        (_, "O") => "issuer_O",
        (_, "OU") => "issuer_OU",
        _ => "issuer_CN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_decimal_like_go_prints_them() {
        assert_eq!(serial_decimal("03e8"), "1000");
        assert_eq!(
            serial_decimal("77fdf4b1033b387aaace6ce1c18710c2"),
            "159496745535942404666097463499946397890"
        );
        // 20 bytes: more than u128.
        assert_eq!(
            serial_decimal("ffffffffffffffffffffffffffffffffffffffff"),
            "1461501637330902918203684832716283019655932542975"
        );
    }

    #[test]
    fn kubeconfig_locations_give_the_embedded_labels() {
        assert_eq!(
            embedded("users[system:node:n1].client-certificate-data"),
            Some(("user", "system:node:n1"))
        );
        assert_eq!(
            embedded("clusters[kubernetes].certificate-authority-data#2"),
            Some(("cluster", "kubernetes"))
        );
        assert_eq!(embedded("#2"), None);
    }

    #[test]
    fn names_take_the_first_value_but_the_last_common_name_as_go_does() {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "first");
        p.distinguished_name.push(DnType::OrganizationName, "org");
        // The same OID again (rcgen keeps one entry per DnType).
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "last");
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let mut l = Labels::new();
        name_labels("subject", x.subject().as_raw(), &mut l);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(l.contains(&("subject_O", "org".to_string())), "{l:?}");
        let cns: Vec<_> = x.subject().iter_common_name().collect();
        assert_eq!(cns.len(), 2, "two CNs in the name");
        let last = cns[1].as_str().unwrap().to_string();
        assert!(l.contains(&("subject_CN", last)), "{l:?}");
    }

    #[test]
    fn file_labels_are_the_node_path_and_its_base_name() {
        assert_eq!(
            file_labels("/etc/kubernetes/pki/apiserver.crt"),
            vec![
                ("filename", "apiserver.crt".to_string()),
                ("filepath", "/etc/kubernetes/pki/apiserver.crt".to_string())
            ]
        );
    }
}
