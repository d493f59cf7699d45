//! The config file cases of the catalog: each runs through every command that loads it.

use super::*;

pub(crate) fn all_config_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add =
        |label: &str, body: String, reason: &[&str]| v.extend(config_cases(label, body, reason));
    add("empty", String::new(), &["empty file"]);
    add("not yaml", "[[[".into(), &["line"]);
    add("not a mapping", "- a\n- b\n".into(), &["line"]);
    add(
        "apiVersion",
        "apiVersion: v1\nkind: AgentConfiguration\n".into(),
        &["apiVersion"],
    );
    add(
        "kind",
        "apiVersion: kube-cert-agent.io/v1alpha1\nkind: Pod\n".into(),
        &["kind"],
    );
    add(
        "unknown key",
        format!("{HEAD}certifcates: []\n"),
        &["unknown field", "certifcates"],
    );
    add(
        "unknown nested key",
        format!("{HEAD}renewal: {{renewAt: 80%, jiter: 5%}}\n"),
        &["jiter"],
    );
    add(
        "renewAt 0",
        format!("{HEAD}renewal: {{renewAt: 0%}}\n"),
        &["renewal.renewAt"],
    );
    add(
        "renewAt 100",
        format!("{HEAD}renewal: {{renewAt: 100%}}\n"),
        &["renewal.renewAt"],
    );
    add(
        "renewAt words",
        format!("{HEAD}renewal: {{renewAt: most}}\n"),
        &["percentage"],
    );
    add(
        "jitter too wide",
        format!("{HEAD}renewal: {{renewAt: 80%, jitter: 30%}}\n"),
        &["renewal.jitter"],
    );
    add("history 0", format!("{HEAD}history: 0\n"), &["history"]);
    add(
        "history negative",
        format!("{HEAD}history: -1\n"),
        &["line 3"],
    );
    add(
        "name empty",
        cert_entry("").replace("name: a", "name: ''"),
        &["name"],
    );
    add(
        "name slash",
        cert_entry("").replace("name: a", "name: a/b"),
        &["name", "a/b"],
    );
    add(
        "name dot",
        cert_entry("").replace("name: a", "name: .a"),
        &["name"],
    );
    add("name twice", format!("{}{}", cert_entry(""), "- name: a\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/b.crt\n  key: /etc/kubernetes/pki/b.key\n"), &["used twice"]);
    add(
        "relative cert",
        cert_entry("").replace("cert: /etc/kubernetes/pki/a.crt", "cert: pki/a.crt"),
        &["certificates[a].cert", "absolute"],
    );
    add(
        "relative key",
        cert_entry("").replace("key: /etc/kubernetes/pki/a.key", "key: a.key"),
        &["certificates[a].key", "absolute"],
    );
    add(
        "relative ca",
        cert_entry("").replace("{cert: /etc/kubernetes/pki/ca.crt", "{cert: ca.crt"),
        &["ca.cert", "absolute"],
    );
    add(
        "cert outside",
        cert_entry("")
            .replace("/etc/kubernetes/pki/a.crt", "/root/a.crt")
            .replace("/etc/kubernetes/pki/a.key", "/root/a.key"),
        &["certificates[a].cert", "outside"],
    );
    add(
        "cert dot-dot",
        cert_entry("").replace(
            "/etc/kubernetes/pki/a.crt",
            "/etc/kubernetes/pki/../../shadow",
        ),
        &["outside"],
    );
    add(
        "pair in two dirs",
        cert_entry("").replace(
            "/etc/kubernetes/pki/a.crt",
            "/etc/kubernetes/pki/etcd/a.crt",
        ),
        &["same directory"],
    );
    add(
        "typo in cert name",
        cert_entry("").replace("/etc/kubernetes/pki/a.crt", "/etc/kubernetes/pki/aa.crt"),
        &["mistyped"],
    );
    add(
        "cert is key",
        cert_entry("").replace("/etc/kubernetes/pki/a.crt", "/etc/kubernetes/pki/a.key"),
        &["a.key"],
    );
    add(
        "cert over the CA",
        cert_entry("")
            .replace(
                "cert: /etc/kubernetes/pki/a.crt",
                "cert: /etc/kubernetes/pki/ca.crt",
            )
            .replace(
                "key: /etc/kubernetes/pki/a.key",
                "key: /etc/kubernetes/pki/ca.key",
            ),
        &["CA file"],
    );
    add("one file two entries", format!("{}{}", cert_entry(""), "- name: b\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/a.crt\n  key: /etc/kubernetes/pki/a.key\n"), &["also written by"]);
    add("one stem two entries", format!("{}{}", cert_entry(""), "- name: b\n  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}\n  cert: /etc/kubernetes/pki/a.pem\n  key: /etc/kubernetes/pki/a.pk8\n"), &["same name before the extension"]);
    add(
        "validity words",
        cert_entry("  validity: soon\n"),
        &["duration"],
    );
    add(
        "validity 1m",
        cert_entry("  validity: 1m\n"),
        &["validity", "10m"],
    );
    add(
        "validity 1000y",
        cert_entry("  validity: 1000y\n"),
        &["validity", "100 years"],
    );
    add(
        "validity 3000000d",
        cert_entry("  validity: 3000000d\n"),
        &["validity"],
    );
    add(
        "keyType",
        cert_entry("  keyType: dsa-1024\n"),
        &["dsa-1024"],
    );
    add(
        "dns bang",
        cert_entry("  dnsNames: ['bad name!*']\n"),
        &["dnsNames[0]", "not a DNS name"],
    );
    add(
        "dns empty label",
        cert_entry("  dnsNames: [a..b]\n"),
        &["dnsNames[0]", "label"],
    );
    add(
        "dns inner wildcard",
        cert_entry("  dnsNames: [a.*.example]\n"),
        &["wildcard"],
    );
    add(
        "dns leading hyphen",
        cert_entry("  dnsNames: [-a.example]\n"),
        &["'-'"],
    );
    add(
        "dns long label",
        cert_entry(&format!("  dnsNames: [{}.example]\n", "a".repeat(64))),
        &["63"],
    );
    add(
        "dns trailing dot",
        cert_entry("  dnsNames: [a.example.]\n"),
        &["not a DNS name"],
    );
    add(
        "ip 300",
        cert_entry("  ipAddresses: [300.1.1.1]\n"),
        &["line"],
    );
    add(
        "ip words",
        cert_entry("  ipAddresses: [not-an-ip]\n"),
        &["line"],
    );
    add("usage", cert_entry("  usages: [fooAuth]\n"), &["fooAuth"]);
    add(
        "two organizations",
        cert_entry("  subject: {commonName: x, organizations: [a, b]}\n"),
        &["organizations"],
    );
    add(
        "empty commonName",
        cert_entry("  subject: {commonName: ''}\n"),
        &["commonName"],
    );
    add(
        "argv empty",
        action("{command: {argv: []}}"),
        &["argv is empty"],
    );
    add(
        "argv relative",
        action("{command: {argv: [systemctl, restart, x]}}"),
        &["argv[0]", "absolute"],
    );
    add(
        "argv0 empty",
        action("{command: {argv: ['']}}"),
        &["argv is empty"],
    );
    add(
        "timeout 0",
        action("{command: {argv: [/bin/true], timeout: 0s}}"),
        &["timeout"],
    );
    add(
        "unit no suffix",
        action("{restart: kubelet}"),
        &["not a systemd unit name"],
    );
    add(
        "unit path",
        action("{restart: ../x.service}"),
        &["not a systemd unit name"],
    );
    add(
        "unit option",
        action("{tryRestart: --now.service}"),
        &["not a systemd unit name"],
    );
    add(
        "signal name",
        action("{signal: {unit: x.service, signal: BOGUS}}"),
        &["not a signal"],
    );
    add(
        "signal both",
        action("{signal: {unit: x.service, pidFile: /run/x.pid, signal: HUP}}"),
        &["exactly one"],
    );
    add(
        "signal pidFile relative",
        action("{signal: {pidFile: x.pid, signal: HUP}}"),
        &["pidFile", "absolute"],
    );
    add("unknown action", action("{reboot: now}"), &["reboot"]);
    add("kubeconfig outside", format!("{HEAD}kubeconfigs:\n- name: k\n  path: /tmp/admin.conf\n  ca: {{cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}}\n"), &["kubeconfigs[k].path", "outside"]);
    add("kubeconfig /etc/passwd", format!("{HEAD}kubeconfigs:\n- name: k\n  path: /etc/passwd\n  ca: {{cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}}\n"), &["/etc/passwd", "outside"]);
    add(
        "kubelet kubeconfig /etc/passwd",
        format!("{HEAD}kubelet: {{kubeconfig: /etc/passwd}}\n"),
        &["kubelet.kubeconfig", "outside"],
    );
    add(
        "kubelet certDir /etc",
        format!("{HEAD}kubelet: {{certDir: /etc}}\n"),
        &["kubelet.certDir", "system directory"],
    );
    add(
        "kubelet certDir relative",
        format!("{HEAD}kubelet: {{certDir: pki}}\n"),
        &["kubelet.certDir", "absolute"],
    );
    add(
        "pki dir /",
        format!("{HEAD}inventory: {{pkiDirectories: [/]}}\n"),
        &["pkiDirectories[0]", "system directory"],
    );
    add(
        "pki dir relative",
        format!("{HEAD}inventory: {{pkiDirectories: [pki]}}\n"),
        &["pkiDirectories[0]", "absolute"],
    );
    add(
        "pki dir /usr",
        format!("{HEAD}inventory: {{pkiDirectories: [/usr/lib/pki]}}\n"),
        &["system directory"],
    );
    add(
        "revocation dir relative",
        format!("{HEAD}revocation: {{directory: revs}}\n"),
        &["revocation.directory"],
    );
    add(
        "revocation cluster alone",
        format!("{HEAD}revocation: {{cluster: true}}\n"),
        &["revocation.cluster"],
    );
    add(
        "serving address",
        format!("{HEAD}kubelet: {{serving: {{addresses: ['bad host!']}}}}\n"),
        &["kubelet.serving.addresses[0]"],
    );
    add(
        "csrTimeout 0",
        format!("{HEAD}kubelet: {{csrTimeout: 0s}}\n"),
        &["csrTimeout"],
    );
    add(
        "kubelet keyType",
        format!("{HEAD}kubelet: {{client: {{keyType: rsa-512}}}}\n"),
        &["rsa-512"],
    );
    add(
        "nodeName mapping",
        format!("{HEAD}nodeName: {{a: b}}\n"),
        &["line"],
    );
    add(
        "certificates mapping",
        format!("{HEAD}certificates: {{a: b}}\n"),
        &["line"],
    );
    add("kubeconfig validity", format!("{HEAD}kubeconfigs:\n- name: k\n  path: /etc/kubernetes/k.conf\n  ca: {{cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}}\n  validity: 0s\n"), &["kubeconfigs[k].validity"]);
    add(
        "ca name",
        format!("{HEAD}cas:\n- name: my_ca\n  cert: /etc/kubernetes/pki/ca.crt\n"),
        &["cas", "my_ca"],
    );
    let mut bomb = format!("{HEAD}x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..30 {
        let p = i - 1;
        bomb.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    add("alias bomb", bomb, &[""]);
    // Not UTF-8 and not a regular file: written by the setup, not as text.
    v.push(case(
        "config not UTF-8",
        &["check"],
        3,
        CONFIG,
        &["not UTF-8"],
        |r| std::fs::write(host(r, CONFIG), b"\xff\xfe\x00bad").unwrap(),
    ));
    v.push(case(
        "config is a directory",
        &["rotate"],
        3,
        CONFIG,
        &["not a regular file: a directory"],
        |r| {
            std::fs::remove_file(host(r, CONFIG)).unwrap();
            std::fs::create_dir(host(r, CONFIG)).unwrap();
        },
    ));
    v
}
