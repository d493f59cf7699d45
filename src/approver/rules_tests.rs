//! The approval rules, one case per way a CSR can be wrong, on CSRs rcgen makes.

use super::*;
use crate::approver::csr::parse;
use crate::pki::csr::{build, KubeletCert};
use crate::pki::keygen::{generate, KeyType};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};

fn groups() -> Vec<String> {
    vec!["system:nodes".into(), "system:authenticated".into()]
}

fn usages(u: &[&str]) -> Vec<String> {
    u.iter().map(|s| s.to_string()).collect()
}

fn serving_csr(
    node: &str,
    dns: &[&str],
    ips: &[&str],
    key: KeyType,
) -> Result<RequestedCert, String> {
    let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
    let pem = build(
        KubeletCert::Serving,
        node,
        &dns,
        &ips,
        &generate(key).unwrap(),
    )
    .unwrap();
    parse(pem.as_bytes())
}

fn node_a() -> NodeAddresses {
    NodeAddresses::from_pairs([
        ("Hostname", "node-a"),
        ("InternalIP", "10.0.0.5"),
        ("ExternalIP", "203.0.113.7"),
        ("InternalDNS", "node-a.cluster.internal"),
    ])
}

/// Runs both stages as the controller does.
fn verdict(
    username: &str,
    u: &[&str],
    expiration: Option<i32>,
    req: Result<RequestedCert, String>,
    node: Option<&NodeAddresses>,
) -> Result<(), Failure> {
    let g = groups();
    let u = usages(u);
    let spec = CsrSpec {
        username,
        groups: &g,
        usages: &u,
        expiration_seconds: expiration,
    };
    let name = check_request(&spec, &req, &Policy::default())?;
    check_node(name, req.as_ref().unwrap(), node)
}

const EC: &[&str] = &["digital signature", "server auth"];
const A: &str = "system:node:node-a";

#[test]
fn a_node_asking_for_its_own_addresses_is_approved() {
    let req = serving_csr(
        "node-a",
        &["node-a", "NODE-A.cluster.internal"],
        &["10.0.0.5", "203.0.113.7"],
        KeyType::EcdsaP256,
    );
    assert_eq!(verdict(A, EC, None, req, Some(&node_a())), Ok(()));
    let rsa = serving_csr("node-a", &["node-a"], &[], KeyType::Rsa2048);
    let rsa_usages = ["key encipherment", "digital signature", "server auth"];
    assert_eq!(
        verdict(A, &rsa_usages, Some(86400), rsa, Some(&node_a())),
        Ok(())
    );
}

#[test]
fn an_address_the_node_does_not_have_is_denied_and_named() {
    let req = serving_csr(
        "node-a",
        &["node-a", "evil.example"],
        &["10.0.0.5", "10.0.0.99"],
        KeyType::EcdsaP256,
    );
    let f = verdict(A, EC, None, req, Some(&node_a())).unwrap_err();
    assert_eq!(f.rule, Rule::Sans);
    assert!(
        f.message.contains("evil.example, 10.0.0.99 not among"),
        "{}",
        f.message
    );
    // A host name is not an IP address and the other way round.
    let req = serving_csr("node-a", &["10.0.0.5"], &[], KeyType::EcdsaP256);
    assert_eq!(
        verdict(A, EC, None, req, Some(&node_a())).unwrap_err().rule,
        Rule::Sans
    );
}

#[test]
fn another_nodes_name_fails_on_the_subject_and_the_requester() {
    // Node A asks for a certificate in node B's name.
    let req = serving_csr("node-b", &["node-b"], &[], KeyType::EcdsaP256);
    assert_eq!(
        verdict(A, EC, None, req, Some(&node_a())).unwrap_err().rule,
        Rule::Subject
    );
    // Someone who is not a node at all.
    let req = serving_csr("node-a", &["node-a"], &[], KeyType::EcdsaP256);
    let f = verdict(
        "system:serviceaccount:default:x",
        EC,
        None,
        req.clone(),
        Some(&node_a()),
    )
    .unwrap_err();
    assert_eq!(f.rule, Rule::Requester);
    // A node name without the group.
    let g = vec!["system:authenticated".to_string()];
    let u = usages(EC);
    let spec = CsrSpec {
        username: A,
        groups: &g,
        usages: &u,
        expiration_seconds: None,
    };
    assert_eq!(
        check_request(&spec, &req, &Policy::default())
            .unwrap_err()
            .rule,
        Rule::Requester
    );
}

#[test]
fn the_subject_must_be_exactly_cn_and_o() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, A);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "extra");
    params.subject_alt_names = vec![SanType::DnsName("node-a".try_into().unwrap())];
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let f = verdict(A, EC, None, parse(pem.as_bytes()), Some(&node_a())).unwrap_err();
    assert_eq!(f.rule, Rule::Subject);
    assert!(f.message.contains("OU=extra"), "{}", f.message);
}

#[test]
fn usages_must_be_exactly_serving() {
    let req = || serving_csr("node-a", &["node-a"], &[], KeyType::EcdsaP256);
    for bad in [
        &["digital signature", "server auth", "client auth"][..],
        &["server auth"][..],
        &["digital signature", "key encipherment", "server auth"][..], // not RSA
        &["digital signature", "server auth", "server auth"][..],
    ] {
        let f = verdict(A, bad, None, req(), Some(&node_a())).unwrap_err();
        assert_eq!(f.rule, Rule::Usages, "{bad:?}");
    }
    // RSA without key encipherment.
    let rsa = serving_csr("node-a", &["node-a"], &[], KeyType::Rsa2048);
    assert_eq!(
        verdict(A, EC, None, rsa, Some(&node_a())).unwrap_err().rule,
        Rule::Usages
    );
}

#[test]
fn key_duration_node_and_request_rules() {
    let req = || serving_csr("node-a", &["node-a"], &[], KeyType::EcdsaP384);
    let g = groups();
    let u = usages(EC);
    let spec = CsrSpec {
        username: A,
        groups: &g,
        usages: &u,
        expiration_seconds: None,
    };
    let only_p256 = Policy {
        allowed_keys: vec!["ECDSA P-256".into()],
        ..Policy::default()
    };
    assert_eq!(
        check_request(&spec, &req(), &only_p256).unwrap_err().rule,
        Rule::Key
    );
    let long = Some(2 * 365 * 24 * 3600);
    assert_eq!(
        verdict(A, EC, long, req(), Some(&node_a()))
            .unwrap_err()
            .rule,
        Rule::Duration
    );
    let f = verdict(A, EC, None, req(), None).unwrap_err();
    assert_eq!(
        (f.rule, f.message.as_str()),
        (Rule::Node, "Node \"node-a\" does not exist")
    );
    let garbage =
        parse(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    assert_eq!(
        verdict(A, EC, None, garbage, Some(&node_a()))
            .unwrap_err()
            .rule,
        Rule::Request
    );
}

#[test]
fn email_uri_and_no_sans_are_denied() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, A);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params.subject_alt_names = vec![
        SanType::DnsName("node-a".try_into().unwrap()),
        SanType::Rfc822Name("root@node-a".try_into().unwrap()),
    ];
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let f = verdict(A, EC, None, parse(pem.as_bytes()), Some(&node_a())).unwrap_err();
    assert_eq!(f.rule, Rule::Sans);
    assert!(f.message.contains("email root@node-a"), "{}", f.message);
    params.subject_alt_names = vec![];
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let f = verdict(A, EC, None, parse(pem.as_bytes()), Some(&node_a())).unwrap_err();
    assert_eq!(
        (f.rule, f.message.as_str()),
        (Rule::Sans, "the request has no DNS or IP SAN")
    );
}

#[test]
fn only_each_nodes_newest_pending_csr_survives() {
    let p = |name, node, t, rv| Pending {
        name,
        node,
        created: (t, rv),
    };
    let pending = [
        p("csr-1", "a", 100, 5),
        p("csr-2", "a", 100, 7),
        p("csr-3", "b", 90, 3),
        p("csr-4", "a", 99, 9),
    ];
    assert_eq!(
        superseded(&pending),
        vec![("csr-1", "csr-2"), ("csr-4", "csr-2")]
    );
    assert!(superseded(&pending[2..3]).is_empty());
}

#[test]
fn breaker_opens_past_nodes_plus_margin() {
    assert!(!breaker_open(12, 10, 2));
    assert!(breaker_open(13, 10, 2));
    assert!(breaker_open(1, 0, 0));
}

#[test]
fn every_rule_has_distinct_names() {
    let ids: std::collections::HashSet<_> = Rule::ALL.iter().map(|r| r.id()).collect();
    let reasons: std::collections::HashSet<_> = Rule::ALL.iter().map(|r| r.reason()).collect();
    assert_eq!(
        (ids.len(), reasons.len()),
        (Rule::ALL.len(), Rule::ALL.len())
    );
}
