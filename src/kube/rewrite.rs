//! Putting new client credentials into a kubeconfig without touching anything else: the
//! text is edited in place (the lines of the four credential fields of one user), so every
//! other scalar keeps exactly the form it was written in (`1.10`, `007`, `true`, `null`
//! stay what they are; comments stay too). Where the byte positions come from: the YAML
//! parser's spans (serde-saphyr `Spanned`). The result is parsed again and compared with
//! the original: anything but the credentials differing is refused, never written.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::kubeconfig::{current_user_name, Kubeconfig};

/// The fields a rewrite replaces (file references and embedded data are exclusive).
const CREDENTIAL_KEYS: [&str; 4] = [
    "client-certificate",
    "client-key",
    "client-certificate-data",
    "client-key-data",
];

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    users: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    user: Option<Spanned<Keys>>,
}

/// The keys of a mapping, with where each one is written.
#[derive(Default)]
struct Keys(Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    m.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
            fn visit_unit<E>(self) -> Result<Keys, E> {
                Ok(Keys::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Put a new client certificate and key into a kubeconfig, as embedded data, for the user
/// of the current context (or the only user). Returns the new text and the user's name.
pub fn replace_client_credentials(
    text: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(String, String), String> {
    let kc = Kubeconfig::parse(text.as_bytes())?;
    let user_name = current_user_name(&kc)?;
    let index = kc
        .users
        .iter()
        .position(|u| u.name == user_name)
        .ok_or_else(|| format!("user {user_name:?} of the current context is not in users"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (cert, key) = (b64(cert_pem), b64(key_pem));
    let out = splice(text, index, &cert, &key).ok_or_else(|| {
        format!("users[{user_name}].user: not a mapping the agent can edit in place")
    })?;
    check_only_credentials_changed(text, &out, index, &cert, &key)?;
    Ok((out, user_name))
}

fn splice(text: &str, index: usize, cert: &str, key: &str) -> Option<String> {
    let doc: Doc = serde_saphyr::from_str(text).ok()?;
    let user = doc.users.into_iter().nth(index)?.user?;
    let start = user.referenced.span().byte_offset()? as usize;
    if text[start..].starts_with('{') {
        splice_flow(text, start, cert, key)
    } else {
        let keys: Vec<(String, usize)> = user
            .value
            .0
            .iter()
            .map(|k| Some((k.value.clone(), k.referenced.span().byte_offset()? as usize)))
            .collect::<Option<_>>()?;
        splice_block(text, &keys, cert, key)
    }
}

/// `{a: b, client-key: x}` -> `{a: b, client-certificate-data: C, client-key-data: K}`.
fn splice_flow(text: &str, start: usize, cert: &str, key: &str) -> Option<String> {
    let (mut depth, mut quote, mut end) = (0i32, None::<char>, None);
    let mut commas = Vec::new();
    for (i, c) in text[start..].char_indices() {
        match (quote, c) {
            (Some('"'), '\\') => {} // an escaped quote is handled by the next arm's check
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => {
                depth -= 1;
                if depth == 0 {
                    end = Some(start + i);
                    break;
                }
            }
            (None, ',') if depth == 1 => commas.push(start + i),
            _ => {}
        }
    }
    let end = end?;
    let mut bounds = vec![start + 1];
    bounds.extend(commas.iter().map(|c| c + 1));
    let mut stops = commas.clone();
    stops.push(end);
    let mut kept: Vec<&str> = bounds
        .iter()
        .zip(&stops)
        .map(|(a, b)| text[*a..*b].trim())
        .filter(|e| !e.is_empty())
        .filter(|e| {
            let k = e.split(':').next().unwrap_or("").trim();
            let k = k.trim_matches(|c| c == '"' || c == '\'');
            !CREDENTIAL_KEYS.contains(&k)
        })
        .collect();
    let new_c = format!("client-certificate-data: {cert}");
    let new_k = format!("client-key-data: {key}");
    kept.push(&new_c);
    kept.push(&new_k);
    Some(format!(
        "{}{{{}}}{}",
        &text[..start],
        kept.join(", "),
        &text[end + 1..]
    ))
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The byte range of a block mapping entry whose key is at `at` (indentation `indent`):
/// its line, and the lines below that are more indented (or a `- ` sequence at the same
/// indentation, YAML's compact form).
fn entry_range(text: &str, at: usize, indent: usize) -> (usize, usize) {
    let begin = line_start(text, at);
    let mut end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
    let mut probe = end;
    while probe < text.len() {
        let next = text[probe..]
            .find('\n')
            .map_or(text.len(), |i| probe + i + 1);
        let line = text[probe..next].trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            probe = next; // blank: part of the entry only if the entry goes on after it
            continue;
        }
        let i = indent_of(line);
        if i > indent || (i == indent && line[i..].starts_with("- ")) {
            end = next;
            probe = next;
        } else {
            break;
        }
    }
    (begin, end)
}

fn splice_block(text: &str, keys: &[(String, usize)], cert: &str, key: &str) -> Option<String> {
    let (_, first) = keys.first()?;
    let indent = *first - line_start(text, *first);
    let mut ranges = Vec::new();
    let mut last_end = 0;
    for (k, at) in keys {
        let ls = line_start(text, *at);
        // A key must start its line (after spaces): anything else is not a layout we edit.
        if !text[ls..*at].chars().all(|c| c == ' ') || *at - ls != indent {
            return None;
        }
        let r = entry_range(text, *at, indent);
        last_end = last_end.max(r.1);
        if CREDENTIAL_KEYS.contains(&k.as_str()) {
            ranges.push(r);
        }
    }
    let insert_at = ranges.first().map_or(last_end, |r| r.0);
    let pad = " ".repeat(indent);
    let mut new_lines =
        format!("{pad}client-certificate-data: {cert}\n{pad}client-key-data: {key}\n");
    if insert_at == text.len() && !text.ends_with('\n') {
        new_lines.insert(0, '\n');
    }
    let mut out = String::with_capacity(text.len() + new_lines.len());
    let mut pos = 0;
    let mut inserted = false;
    for (a, b) in &ranges {
        out.push_str(&text[pos..*a]);
        if !inserted {
            out.push_str(&new_lines);
            inserted = true;
        }
        pos = *b;
    }
    if !inserted {
        out.push_str(&text[pos..insert_at]);
        out.push_str(&new_lines);
        pos = insert_at;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

/// The rewrite must differ from the original in the user's four credential fields only,
/// and carry the new ones.
fn check_only_credentials_changed(
    old: &str,
    new: &str,
    index: usize,
    cert: &str,
    key: &str,
) -> Result<(), String> {
    let parse = |t: &str| -> Result<Value, String> {
        serde_saphyr::from_str(t).map_err(|e| crate::yaml::render_error(&e))
    };
    let (mut a, mut b) = (
        parse(old)?,
        parse(new).map_err(|e| format!("rewrite broke the YAML: {e}"))?,
    );
    let user = |v: &mut Value| v.pointer_mut(&format!("/users/{index}/user")).cloned();
    let got = user(&mut b).unwrap_or(Value::Null);
    if got.get("client-certificate-data").and_then(Value::as_str) != Some(cert)
        || got.get("client-key-data").and_then(Value::as_str) != Some(key)
    {
        return Err("rewrite did not place the new credentials".into());
    }
    for v in [&mut a, &mut b] {
        if let Some(Value::Object(m)) = v.pointer_mut(&format!("/users/{index}/user")) {
            for k in CREDENTIAL_KEYS {
                m.remove(k);
            }
        }
    }
    if a != b {
        return Err("an in-place rewrite would change more than the credentials; refused".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_of(out: &str, field: &str) -> Vec<u8> {
        let kc = Kubeconfig::parse(out.as_bytes()).unwrap();
        let u = &kc.users.iter().find(|u| u.name == "true").unwrap().user;
        let v = match field {
            "c" => u.client_certificate_data.clone(),
            _ => u.client_key_data.clone(),
        };
        super::super::kubeconfig::decode_data(field, &v.unwrap()).unwrap()
    }

    #[test]
    fn scalars_keep_the_form_they_were_written_in() {
        let kc = "apiVersion: v1\nkind: Config\n# a comment stays\nclusters:\n- name: 1.10\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: Q0E=\ncontexts:\n- name: 007\n  context:\n    cluster: 1.10\n    user: 'true'\n    namespace: null\ncurrent-context: 007\npreferences: {}\nusers:\n- name: 'true'\n  user:\n    client-certificate: /old/c.pem\n    exec:\n      args:\n      - 1.10\n    client-key: /old/k.pem\n- name: other\n  user: {token: 007}\n";
        let (out, user) = replace_client_credentials(kc, b"CERT", b"KEY").unwrap();
        assert_eq!(user, "true");
        assert_eq!(data_of(&out, "c"), b"CERT");
        assert_eq!(data_of(&out, "k"), b"KEY");
        for kept in [
            "# a comment stays\n",
            "- name: 1.10\n",
            "- name: 007\n",
            "    cluster: 1.10\n",
            "    namespace: null\n",
            "current-context: 007\n",
            "      - 1.10\n",
            "  user: {token: 007}\n",
        ] {
            assert!(out.contains(kept), "lost {kept:?} in\n{out}");
        }
        assert!(!out.contains("/old/"), "{out}");
        // Everything but the user's credential lines is byte-identical.
        let strip = |t: &str| {
            t.lines()
                .filter(|l| {
                    !CREDENTIAL_KEYS
                        .iter()
                        .any(|k| l.trim_start().starts_with(&format!("{k}:")))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&out), strip(kc));
        // Again, now with -data fields in place: replaced where they are.
        let (again, _) = replace_client_credentials(&out, b"C2", b"K2").unwrap();
        assert_eq!(strip(&again), strip(kc));
        assert_eq!(data_of(&again, "c"), b"C2");
    }

    #[test]
    fn flow_mappings_are_edited_in_place() {
        let kc = "users:\n- name: 'true'\n  user: {client-certificate: /a, token: 1.10, client-key: \"/b\"}\n";
        let (out, _) = replace_client_credentials(kc, b"C", b"K").unwrap();
        assert!(out.contains("token: 1.10"), "{out}");
        assert!(!out.contains("/a") && !out.contains("/b"), "{out}");
        assert_eq!(data_of(&out, "k"), b"K");
        let empty = "users:\n- name: 'true'\n  user: {}\n";
        let (out, _) = replace_client_credentials(empty, b"C", b"K").unwrap();
        assert_eq!(data_of(&out, "c"), b"C");
    }
}
