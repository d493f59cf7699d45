//! Loading and validating the configuration file.

use super::*;

fn parse(s: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/kube-cert-agent/config.yaml"), s).map_err(|e| e.to_string())
}

const HEAD: &str = "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\n";

#[test]
fn defaults_follow_the_seeds() {
    let c = Config::defaults();
    assert_eq!(c.renewal.renew_at, Percent(80.0));
    assert_eq!(c.renewal.jitter, Percent(10.0));
    assert_eq!(c.renewal.fleet_window(), time::Duration::hours(1));
    assert_eq!(c.history, 5);
    assert!(c.kubelet.is_none());
    let c = parse(&format!(
        "{HEAD}certificates:\n- name: apiserver\n  ca: {{cert: /p/ca.crt, key: /p/ca.key}}\n  cert: /etc/kubernetes/pki/a.crt\n  key: /etc/kubernetes/pki/a.key\n"
    ))
    .unwrap();
    assert_eq!(c.certificates[0].validity.0.as_secs(), 96 * 3600);
    assert_eq!(c.certificates[0].key_type, KeyType::EcdsaP384);
}

#[test]
fn unknown_fields_are_errors_with_a_location() {
    let e = parse(&format!("{HEAD}renewal:\n  renewAt: 80%\n  jiter: 5%\n")).unwrap_err();
    assert!(e.starts_with("/etc/kube-cert-agent/config.yaml: "), "{e}");
    assert!(e.contains("jiter"), "{e}");
    assert!(e.contains("line 5") || e.contains("5:"), "no line in: {e}");
}

#[test]
fn wrong_kind_and_version_are_named() {
    assert!(parse("apiVersion: v1\nkind: AgentConfiguration\n")
        .unwrap_err()
        .contains("apiVersion"));
    assert!(
        parse("apiVersion: kube-cert-agent.io/v1alpha1\nkind: Pod\n")
            .unwrap_err()
            .contains("kind")
    );
    assert!(parse("").unwrap_err().contains("empty file"));
}

#[test]
fn fleet_spread_is_a_duration() {
    let c = parse(&format!("{HEAD}renewal: {{fleetSpread: 10h}}\n")).unwrap();
    assert_eq!(c.renewal.fleet_window(), time::Duration::hours(10));
    let c = parse(&format!("{HEAD}renewal: {{fleetSpread: 0s}}\n")).unwrap();
    assert_eq!(c.renewal.fleet_window(), time::Duration::ZERO);
    let e = parse(&format!("{HEAD}renewal: {{fleetSpread: soon}}\n")).unwrap_err();
    assert!(e.contains("soon"), "{e}");
}

#[test]
fn revocation_poll_interval_is_a_duration_of_at_least_a_second() {
    let c = parse(HEAD).unwrap();
    assert_eq!(
        c.revocation.poll_interval.0,
        std::time::Duration::from_secs(300)
    );
    let c = parse(&format!("{HEAD}revocation: {{pollInterval: 30s}}\n")).unwrap();
    assert_eq!(
        c.revocation.poll_interval.0,
        std::time::Duration::from_secs(30)
    );
    let e = parse(&format!("{HEAD}revocation: {{pollInterval: 0s}}\n")).unwrap_err();
    assert!(e.contains("revocation.pollInterval: at least 1s"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = parse(&format!("{HEAD}renewal: {{renewAt: 95%, jitter: 10%}}\n")).unwrap_err();
    assert!(e.contains("renewal.jitter"), "{e}");
    let e = parse(&format!(
        "{HEAD}certificates:\n- name: a\n  ca: {{cert: /c, key: /k}}\n  cert: rel/a.crt\n  key: /a.key\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("certificates[a].cert") && e.contains("absolute"),
        "{e}"
    );
    let e = parse(&format!(
        "{HEAD}certificates:\n- name: a\n  ca: {{cert: /c, key: /k}}\n  cert: /a.crt\n  key: /a.key\n  validity: soon\n"
    ))
    .unwrap_err();
    assert!(e.contains("expected a duration"), "{e}");
    let e = parse(&format!(
        "{HEAD}certificates:\n- name: a\n  ca: {{cert: /c, key: /k}}\n  cert: /a.crt\n  key: /a.key\n  keyType: dsa-1024\n"
    ))
    .unwrap_err();
    assert!(e.contains("dsa-1024"), "{e}");
}

#[test]
fn the_shipped_example_parses_and_declares_the_kubeadm_set() {
    let text = include_str!("../../etc/kube-cert-agent/config.yaml");
    let c = parse(text).unwrap();
    let names: Vec<&str> = c.certificates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client"
        ]
    );
    let kcs: Vec<&str> = c.kubeconfigs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        kcs,
        [
            "admin.conf",
            "super-admin.conf",
            "controller-manager.conf",
            "scheduler.conf"
        ]
    );
    assert_eq!(
        c.kubelet.unwrap().on_rotate,
        [Action::TryRestart("kubelet.service".into())]
    );
}

#[test]
fn write_targets_must_be_in_managed_directories() {
    let cert = |path: &str| {
        let key = path.replace(".crt", ".key");
        format!("{HEAD}certificates:\n- name: a\n  ca: {{cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}}\n  cert: {path}\n  key: {key}\n")
    };
    assert!(parse(&cert("/etc/kubernetes/pki/a.crt")).is_ok());
    assert!(parse(&cert("/etc/kubernetes/pki/etcd/a.crt")).is_ok());
    let e = parse(&cert("/root/a.crt")).unwrap_err();
    assert!(
        e.contains("certificates[a].cert: /root/a.crt is outside the directories"),
        "{e}"
    );
    assert!(e.contains("/etc/kubernetes/pki"), "{e}");
    let e = parse(&cert("/etc/kubernetes/pki/../../shadow")).unwrap_err();
    assert!(e.contains("outside"), "{e}");
    let kc = format!(
        "{HEAD}kubeconfigs:\n- name: k\n  path: /tmp/admin.conf\n  ca: {{cert: /c, key: /k}}\n"
    );
    assert!(parse(&kc).unwrap_err().contains("kubeconfigs[k].path"));
}

#[test]
fn on_rotate_actions_parse() {
    let c = parse(&format!(
        "{HEAD}kubelet:\n  onRotate: [{{restart: kubelet.service}}, {{command: {{argv: [/bin/true]}}}}]\n"
    ))
    .unwrap();
    let k = c.kubelet.unwrap();
    assert_eq!(k.on_rotate[0], Action::Restart("kubelet.service".into()));
    assert!(matches!(&k.on_rotate[1], Action::Command(c) if c.argv == ["/bin/true"]));
}
