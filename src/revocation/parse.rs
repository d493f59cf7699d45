//! Reading RenewRevocation documents, exactly as the seeds show them. A bad entry is an
//! error naming the file and the entry; the other entries still apply, and nothing is
//! revoked because of an entry that failed to parse.

use std::path::Path;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{normalize_serial, Entry, Rule, API_VERSION, KIND};
use crate::paths::NodeRoot;

/// Entries and errors from one or more files.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Loaded {
    pub entries: Vec<Entry>,
    /// `file: document 2 (name) entry 3: reason`
    pub errors: Vec<String>,
}

/// Parse every document in `text` (several may be separated by `---`), each on its own:
/// a YAML error in one document is an error naming that document, and the entries of the
/// others still apply (fail closed: a broken document never cancels a valid revocation).
pub fn parse_documents(source: &str, text: &str) -> Loaded {
    let mut out = Loaded::default();
    for (n, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let value = if is_blank_document(doc) {
            Value::Null
        } else {
            match serde_saphyr::from_str::<Value>(doc) {
                Ok(v) => v,
                Err(e) => {
                    out.errors.push(format!(
                        "{source}: document {} (from line {first_line}): {}",
                        n + 1,
                        crate::yaml::render_error(&e)
                    ));
                    continue;
                }
            }
        };
        let l = parse_values(source, std::slice::from_ref(&value));
        out.entries.extend(l.entries);
        // parse_values numbers its one document 1: give the real number.
        out.errors.extend(l.errors.into_iter().map(|e| {
            e.replacen(
                &format!("{source}: document 1"),
                &format!("{source}: document {}", n + 1),
                1,
            )
        }));
    }
    out
}

/// Split a YAML stream into documents the way Kubernetes' YAML reader does (a line that
/// is `---`, or starts with `--- `, begins a document): each with its first line number.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 1usize, 0usize);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            if offset > start || i > 0 {
                docs.push((start_line, &text[start..offset]));
            }
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

/// Only comments, whitespace, `---` and `...`: an empty document (a trailing `---`).
fn is_blank_document(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// Documents already parsed (YAML files, or the items of a list from the API server).
pub fn parse_values(source: &str, docs: &[Value]) -> Loaded {
    let mut out = Loaded::default();
    for (d, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue; // an empty document (a trailing ---)
        }
        let where_doc = format!("{source}: document {}", d + 1);
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("").trim();
        let api = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim();
        if kind != KIND || api != API_VERSION {
            out.errors.push(format!(
                "{where_doc}: is {api}/{kind}, not {API_VERSION}/{KIND}; ignored"
            ));
            continue;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            out.errors
                .push(format!("{where_doc}: metadata.name is missing"));
            continue;
        }
        let where_doc = format!("{where_doc} ({name})");
        let description = doc
            .pointer("/spec/description")
            .and_then(Value::as_str)
            .map(|d| d.trim().to_string());
        let list = match doc.pointer("/spec/revocations") {
            Some(Value::Array(a)) => a,
            Some(_) => {
                out.errors
                    .push(format!("{where_doc}: spec.revocations must be a list"));
                continue;
            }
            None => {
                out.errors
                    .push(format!("{where_doc}: spec.revocations is missing"));
                continue;
            }
        };
        if list.is_empty() {
            out.errors.push(format!(
                "{where_doc}: spec.revocations is empty; it revokes nothing"
            ));
        }
        for (i, raw) in list.iter().enumerate() {
            match parse_entry(raw) {
                Ok(parsed) => out.entries.push(Entry {
                    source: source.to_string(),
                    document: name.clone(),
                    index: i,
                    rule: parsed.rule,
                    not_before: parsed.not_before,
                    // The entry's own words (every entry of the seed has some), else the
                    // document's.
                    description: parsed.description.or_else(|| description.clone()),
                }),
                Err(e) => out.errors.push(format!("{where_doc} entry {i}: {e}")),
            }
        }
    }
    out
}

/// One entry, as read.
struct ParsedEntry {
    rule: Rule,
    not_before: Option<OffsetDateTime>,
    description: Option<String>,
}

fn parse_entry(raw: &Value) -> Result<ParsedEntry, String> {
    let obj = raw.as_object().ok_or("an entry must be a mapping")?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("kind is missing")?;
    let field = |name: &str| -> Result<&str, String> {
        obj.get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("kind {kind} needs {name}"))
    };
    // The seed mixes `serialnumber` and `Group`: kinds are case-insensitive.
    let (rule, allowed) = match kind.to_ascii_lowercase().as_str() {
        "serialnumber" => {
            let s = field("serialNumber")?;
            let n = normalize_serial(s)
                .ok_or_else(|| format!("serialNumber {s:?} is not hexadecimal"))?;
            (Rule::Serial(n), "serialNumber")
        }
        "group" => (Rule::Group(field("group")?.to_string()), "group"),
        "dns" => {
            let d = field("dns")?.to_ascii_lowercase();
            let bad = |d: &str| {
                d.is_empty()
                    || !d
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            };
            if bad(&d) {
                return Err(format!("dns {d:?} is not a DNS name"));
            }
            let rule = if d.starts_with('.') {
                Rule::DnsSuffix(d.trim_end_matches('.').to_string())
            } else {
                Rule::Dns(d.trim_end_matches('.').to_string())
            };
            (rule, "dns")
        }
        "ip" => {
            let s = field("ip")?;
            (
                Rule::Ip(
                    s.parse()
                        .map_err(|_| format!("ip {s:?} is not an IPv4 or IPv6 address"))?,
                ),
                "ip",
            )
        }
        other => {
            return Err(format!(
                "unknown kind {other:?} (serialnumber, Group, DNS or IP)"
            ))
        }
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| !["kind", "notBefore", "description", allowed].contains(&k.as_str()))
    {
        return Err(format!("unknown field {extra:?} for kind {kind}"));
    }
    let not_before = match obj.get("notBefore") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            OffsetDateTime::parse(s.trim(), &Rfc3339)
                .map_err(|e| format!("notBefore {s:?} is not an RFC 3339 time ({e})"))?,
        ),
        Some(other) => return Err(format!("notBefore {other} is not an RFC 3339 time")),
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => return Err(format!("description {other} is not a string")),
    };
    Ok(ParsedEntry {
        rule,
        not_before,
        description,
    })
}

/// Every `*.yaml` / `*.yml` in a node directory, in name order. A missing directory is no
/// revocations, not an error.
pub fn load_dir(root: &NodeRoot, dir: &Path) -> Loaded {
    let mut out = Loaded::default();
    let host = root.host_path(dir);
    let Ok(listing) = std::fs::read_dir(&host) else {
        return out;
    };
    let mut names: Vec<String> = listing
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && !n.starts_with('.'))
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let source = p.display().to_string();
        match root
            .read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".into()))
        {
            Ok(text) => {
                let l = parse_documents(&source, &text);
                out.entries.extend(l.entries);
                out.errors.extend(l.errors);
            }
            Err(e) => out.errors.push(format!("{source}: {e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's example, verbatim (DESIGN.md).
    const SEED: &str = r#"apiVersion: certificates.microsoft.com/v1
kind: RenewRevocation
metadata: {name: my-renew-revocation, namespace: kube-system}
spec:
  description: My list of renew revocations
  revocations:
  - {kind: serialnumber, serialNumber: 77fdf4b1033b387aaace6ce1c18710c2, notBefore: "2020-04-17T17:22:05Z"}
  - {kind: Group, group: system:nodes}
  - {kind: DNS, dns: kubernetes.default.svc.}   # exact name; trailing dot = same FQDN
  - {kind: DNS, dns: .cluster.local}            # leading dot = suffix
  - {kind: IP, ip: 170.63.128.124}
"#;

    #[test]
    fn the_seed_example_parses() {
        let l = parse_documents("seed.yaml", SEED);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let rules: Vec<&Rule> = l.entries.iter().map(|e| &e.rule).collect();
        assert_eq!(
            rules,
            [
                &Rule::Serial("77fdf4b1033b387aaace6ce1c18710c2".into()),
                &Rule::Group("system:nodes".into()),
                &Rule::Dns("kubernetes.default.svc".into()),
                &Rule::DnsSuffix(".cluster.local".into()),
                &Rule::Ip("170.63.128.124".parse().unwrap()),
            ]
        );
        assert_eq!(
            l.entries[0].not_before,
            Some(time::macros::datetime!(2020-04-17 17:22:05 UTC))
        );
        assert_eq!(l.entries[1].id(), "my-renew-revocation/1");
        assert_eq!(
            l.entries[0].description.as_deref(),
            Some("My list of renew revocations")
        );
    }

    #[test]
    fn bad_entries_are_named_and_the_rest_still_apply() {
        let text = r#"apiVersion: certificates.microsoft.com/v1
kind: RenewRevocation
metadata: {name: bad}
spec:
  revocations:
  - {kind: fingerprint, value: abc}
  - {kind: serialnumber, serialNumber: not-hex}
  - {kind: IP, ip: 300.1.1.1}
  - {kind: Group, group: system:nodes, notBefore: yesterday}
  - {kind: DNS, dns: good.example}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
---
apiVersion: certificates.microsoft.com/v1
kind: RenewRevocation
metadata: {name: empty}
spec: {revocations: []}
"#;
        let l = parse_documents("/etc/kube-cert-agent/revocations.d/x.yaml", text);
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].rule, Rule::Dns("good.example".into()));
        let e = l.errors.join("\n");
        for want in [
            "x.yaml: document 1 (bad) entry 0: unknown kind \"fingerprint\"",
            "entry 1: serialNumber \"not-hex\" is not hexadecimal",
            "entry 2: ip \"300.1.1.1\" is not an IPv4 or IPv6 address",
            "entry 3: notBefore \"yesterday\" is not an RFC 3339 time",
            "document 2: is v1/ConfigMap, not certificates.microsoft.com/v1/RenewRevocation",
            "document 3 (empty): spec.revocations is empty",
        ] {
            assert!(e.contains(want), "missing {want:?} in\n{e}");
        }
    }

    #[test]
    fn a_yaml_error_in_one_document_keeps_the_others() {
        let text = "apiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: good}\nspec:\n  revocations:\n  - {kind: Group, group: system:nodes}\n--- # second\napiVersion: [unclosed\n---\n\n---\napiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: third}\nspec: {revocations: [{kind: IP, ip: 10.0.0.1}]}\n";
        let l = parse_documents("r.yaml", text);
        assert_eq!(l.entries.len(), 2, "{:?}", l.errors);
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert!(
            l.errors[0].starts_with("r.yaml: document 2 (from line 7): "),
            "{:?}",
            l.errors
        );
        assert_eq!(l.entries[1].document, "third");
        // A lone document and a `--- ` inside a block scalar line are not split wrongly.
        let l = parse_documents("s.yaml", "---\napiVersion: certificates.microsoft.com/v1\nkind: RenewRevocation\nmetadata: {name: x}\nspec: {revocations: [{kind: DNS, dns: a.b}]}\n");
        assert_eq!((l.entries.len(), l.errors.len()), (1, 0), "{:?}", l.errors);
    }

    #[test]
    fn a_yaml_bomb_is_refused_not_expanded() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..30 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        // 10^30 nodes if expanded: the budget must refuse it (else this test never ends).
        let l = parse_documents("bomb.yaml", &bomb);
        assert!(l.entries.is_empty());
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert!(l.errors[0].starts_with("bomb.yaml: "), "{:?}", l.errors);
    }
}
