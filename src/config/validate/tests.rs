//! Validation at load: each rule and the words of its error.

use super::*;

#[test]
fn dns_names_follow_rfc_1123() {
    for good in [
        "kubernetes",
        "kubernetes.default.svc",
        "*.example.com",
        "a-1.B2.c",
        "xn--bcher-kva.example",
    ] {
        check_dns_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "",
        "bad name!*",
        "a..b",
        "-a.b",
        "a-.b",
        "*",
        "a.*.b",
        "*a.b",
        "a.b.",
        "under_score.example",
    ] {
        assert!(check_dns_name(bad).is_err(), "{bad:?} accepted");
    }
    assert!(check_dns_name(&"a".repeat(64)).is_err());
    assert!(check_dns_name(&vec!["a".repeat(63); 5].join(".")).is_err());
}

#[test]
fn pairs_share_a_directory_and_a_stem() {
    let p = |s: &str| PathBuf::from(s);
    let pki = "/etc/kubernetes/pki";
    check_pair_layout(
        "c",
        &p(&format!("{pki}/apiserver.crt")),
        &p(&format!("{pki}/apiserver.key")),
    )
    .unwrap();
    let e = check_pair_layout(
        "c",
        &p(&format!("{pki}/apiserverr.crt")),
        &p(&format!("{pki}/apiserver.key")),
    )
    .unwrap_err();
    assert!(e.contains("mistyped"), "{e}");
    let e = check_pair_layout(
        "c",
        &p(&format!("{pki}/etcd/server.crt")),
        &p(&format!("{pki}/server.key")),
    )
    .unwrap_err();
    assert!(e.contains("same directory"), "{e}");
}

#[test]
fn system_directories_are_never_managed() {
    for bad in ["/", "/etc", "/usr/lib/pki", "/var/lib", "/root"] {
        assert!(check_managed_dir("d", Path::new(bad)).is_err(), "{bad}");
    }
    for good in ["/etc/kubernetes/pki", "/var/lib/kubelet/pki", "/srv/pki"] {
        check_managed_dir("d", Path::new(good)).unwrap();
    }
}
