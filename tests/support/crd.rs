//! Validating documents against a shipped CRD's openAPIV3Schema with python3-jsonschema,
//! every object closed (unknown fields refused) as a strict API server does.

use serde_json::Value;

/// Close every object schema (additionalProperties: false) unless it preserves unknowns.
pub fn close(schema: &mut Value) {
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

/// The closed schema of the CRD in `etc/crds/FILE`, with metadata name/namespace.
pub fn crd_schema(file: &str) -> Value {
    let path = format!("{}/etc/crds/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
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
pub fn jsonschema_errors(schema: &Value, doc: &Value) -> Vec<String> {
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
