//! The seed's RenewRevocation example, byte for byte (per-entry `description`, trailing
//! spaces): read from the seed document itself, accepted by the file reader, by the CRD's
//! schema (validated with python3-jsonschema, every object closed as a strict API server
//! treats unknown fields), and shown as is in the README.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::NodeTree;

/// The seed document (../shared/seeds/ beside the checkout; /work/shared in a worktree).
fn seed_text() -> String {
    let name = "000_a13da003afd4d206.txt";
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds");
    let path = [beside, PathBuf::from("/work/shared/seeds")]
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("seed {name} not found in ../shared/seeds or /work/shared/seeds")
        });
    std::fs::read_to_string(&path).unwrap()
}

/// The ```yaml block after `heading`, exactly as written (trailing spaces kept).
fn yaml_block(text: &str, heading: &str) -> String {
    let after = &text[text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"))..];
    let start = after.find("```yaml\n").expect("a ```yaml block") + "```yaml\n".len();
    let end = after[start..].find("```").expect("end of the block");
    after[start..start + end].to_string()
}

fn seed_example() -> String {
    let block = yaml_block(&seed_text(), "## Certificate revocation");
    // The point of the test: the seed really has these.
    assert!(block.contains("  - description: Revoked certificates by serial number \n"));
    assert!(block.contains("apiVersion: certificates.microsoft.com/v1 \n"));
    block
}

#[test]
fn the_seed_example_is_read_verbatim_from_revocations_d() {
    let node = NodeTree::new();
    let dir = node.path("/etc/kube-cert-agent/revocations.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seed.yaml"), seed_example()).unwrap();
    let out = node.agent(&["revocations", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
    let rules: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "serialnumber 77fdf4b1033b387aaace6ce1c18710c2 issued before 2020-04-17T17:22:05Z",
            "Group system:nodes",
            "DNS kubernetes.default.svc",
            "DNS *.cluster.local",
            "IP 170.63.128.124",
        ]
    );
    let descriptions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            "Revoked certificates by serial number",
            "Revoked certificates by group",
            "Revoked certificates by DNS",
            "Revoked certificates by DNS Suffix",
            "Revoked certificates by IP",
        ]
    );
}

/// Close every object of a structural schema that lists its properties
/// (`additionalProperties: false`), which is what a strict API server does with unknown
/// fields. `metadata` is ObjectMeta, validated by the API server itself: it gets the
/// ObjectMeta fields the seed uses, closed too.
fn close(schema: &mut Value) {
    if let Some(obj) = schema.as_object_mut() {
        if obj.get("type").and_then(Value::as_str) == Some("object")
            && !obj.contains_key("additionalProperties")
            && !obj.contains_key("x-kubernetes-preserve-unknown-fields")
        {
            obj.entry("properties")
                .or_insert_with(|| serde_json::json!({}));
            obj.insert("additionalProperties".into(), Value::Bool(false));
        }
        for (_, v) in obj.iter_mut() {
            close(v);
        }
    } else if let Some(a) = schema.as_array_mut() {
        a.iter_mut().for_each(close);
    }
}

fn crd_schema() -> Value {
    let crd_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/crds/renewrevocations.certificates.microsoft.com.yaml"
    );
    let text = std::fs::read_to_string(crd_path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
    let crd = docs
        .iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .expect("the CRD document");
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    schema["properties"]["metadata"] = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}
    });
    close(&mut schema);
    schema
}

/// Validate `doc` against `schema` with python3-jsonschema; the errors, one per line.
fn jsonschema_errors(schema: &Value, doc: &Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (dir.path().join("schema.json"), dir.path().join("doc.json"));
    std::fs::write(&s, schema.to_string()).unwrap();
    std::fs::write(&d, doc.to_string()).unwrap();
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\n\
        jsonschema.Draft4Validator.check_schema(schema)\n\
        v = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())\n\
        for e in v.iter_errors(doc): print('/'.join(map(str, e.absolute_path)) + ': ' + e.message)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&s)
        .arg(&d)
        .output()
        .expect("python3 (with python3-jsonschema: scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "python3-jsonschema failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_crd_schema_accepts_the_seed_example_and_refuses_unknown_fields() {
    let schema = crd_schema();
    let seed: Value = serde_saphyr::from_str(&seed_example()).unwrap();
    let errors = jsonschema_errors(&schema, &seed);
    assert!(errors.is_empty(), "the CRD refuses the seed: {errors:#?}");

    // The validator does refuse what a strict API server refuses.
    let mut bad = seed.clone();
    bad["spec"]["revocations"][0]["comment"] = "x".into();
    bad["spec"]["extra"] = 1.into();
    bad["spec"]["revocations"][1]["kind"] = "fingerprint".into();
    let errors = jsonschema_errors(&schema, &bad).join("\n");
    for want in [
        "spec/revocations/0: Additional properties are not allowed ('comment'",
        "spec: Additional properties are not allowed ('extra'",
        "spec/revocations/1/kind: 'fingerprint' does not match",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }
}

#[test]
fn the_readme_shows_the_seed_example_as_is() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert_eq!(
        yaml_block(&readme, "## Revocation (RenewRevocation)"),
        seed_example()
    );
}
