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

fn crd_schema() -> Value {
    support::crd::crd_schema("renewrevocations.certificates.microsoft.com.yaml")
}

use support::crd::jsonschema_errors;

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
