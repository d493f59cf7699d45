//! The shipped alerts and dashboard (deploy/monitoring/): `promtool check rules`, `promtool
//! test rules` (each alert fires on the series that should fire it, and only after its
//! `for:`), the PrometheusRule manifest carries exactly the same groups, and every metric the
//! rules and the dashboard use is one the agent exports. (tests/metrics.rs has a real
//! Prometheus evaluate every one of these expressions.)

mod support;

use std::path::Path;
use std::process::Command;

use support::metrics::{expressions, monitoring_dir as dir, yaml};

fn promtool(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("promtool is installed (scripts/install-test-deps.sh: apt-get install prometheus)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_checks_the_rules_file() {
    let (ok, out) = promtool(&["check", "rules", "kube-cert-agent.rules.yaml"], &dir());
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 11 rules found"), "{out}");
}

#[test]
fn promtool_unit_tests_fire_each_alert_when_it_should() {
    let (ok, out) = promtool(
        &["test", "rules", "kube-cert-agent.rules.test.yaml"],
        &dir(),
    );
    assert!(ok, "{out}");
    // Every alert of the rules file is exercised by the unit tests, except the two whose
    // expressions are the same shape as a tested one.
    let rules = std::fs::read_to_string(dir().join("kube-cert-agent.rules.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("kube-cert-agent.rules.test.yaml")).unwrap();
    let untested: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .filter(|a| !tests.contains(&format!("alertname: {a}\n")))
        .collect();
    assert_eq!(
        untested,
        vec![
            "KubeCertAgentCertificateUnreadable",
            "KubeCertAgentKubeletClientRenewErrors",
            "KubeCertAgentEventsDropped"
        ]
    );
}

#[test]
fn the_prometheusrule_manifest_has_the_same_groups_and_passes_promtool() {
    let rules = yaml(&dir().join("kube-cert-agent.rules.yaml"));
    let manifest = yaml(&dir().join("prometheusrule.yaml"));
    assert_eq!(manifest["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(manifest["kind"], "PrometheusRule");
    assert_eq!(manifest["spec"]["groups"], rules["groups"]);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("from-prometheusrule.yaml");
    // JSON is YAML: promtool reads the manifest's spec as a rules file.
    std::fs::write(&f, serde_json::to_string(&manifest["spec"]).unwrap()).unwrap();
    let (ok, out) = promtool(&["check", "rules", f.to_str().unwrap()], tmp.path());
    assert!(ok, "{out}");
}

/// Metric names in a PromQL expression (the agent's, kubelet's and the exporter's prefixes).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = vec![];
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == '_'))
        {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if ["x509_", "kubelet_", "kube_cert_agent_"]
                .iter()
                .any(|p| word.starts_with(p))
            {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_rules_and_the_dashboard_use_only_metrics_the_agent_exports() {
    let families = include_str!("../src/metrics/families.rs");
    let exprs = expressions();
    assert!(exprs.len() > 15, "{exprs:?}");
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{e}: no metric");
        for n in names {
            // Counters are written `<name>_total`; their registered name has no suffix.
            let registered = n.strip_suffix("_total").unwrap_or(&n);
            let registered = registered.strip_suffix("_info").unwrap_or(registered);
            assert!(
                families.contains(&format!("\"{registered}\"")),
                "{e}: {n} is not a family the agent exports"
            );
        }
    }
}
