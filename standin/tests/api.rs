//! The stand-in over real HTTPS, driven by a plain rustls HTTP/1.1 client.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kube_standin_apiserver::{Options, StandIn, CLIENT_KUBELET, KUBELET_SERVING};
use serde_json::json;

fn token(api: &StandIn) -> Client {
    Client::new(api, Auth::Token(api.bootstrap_token().to_string()))
}

fn as_user(api: &StandIn, user: &str, group: &str) -> Client {
    let ck = api
        .issue_client_cert(user, &[group], Duration::from_secs(3600))
        .unwrap();
    Client::new(
        api,
        Auth::Cert {
            cert_pem: ck.cert_pem,
            key_pem: ck.key_pem,
        },
    )
}

fn admin(api: &StandIn) -> Client {
    as_user(api, "kubernetes-admin", "system:masters")
}

#[test]
fn bootstrap_token_csr_is_auto_approved_and_issued_with_backdated_verifiable_cert() {
    let api = StandIn::start(Options::default()).unwrap();
    let c = token(&api);
    let (csr_pem, _key) = node_client_csr("node-a");
    let (code, obj) = c.post(
        CSRS,
        &csr_object("csr-*", &csr_pem, CLIENT_KUBELET, CLIENT_USAGES, Some(3600)),
    );
    assert_eq!(code, 201, "{obj}");
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("csr-") && name.len() == 9,
        "generateName: {name}"
    );
    assert_eq!(obj["kind"], "CertificateSigningRequest");
    assert_eq!(obj["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(obj["spec"]["username"], "system:bootstrap:abcdef");
    assert_eq!(
        obj["spec"]["groups"],
        json!(["system:bootstrappers", "system:authenticated"])
    );
    assert!(obj["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(obj.get("status").is_none() || obj["status"].get("conditions").is_none());
    let created = now();

    let o = wait_csr(&api, &name, |o| issued_cert(o).is_some());
    let (reason, _) = cond(&o, "Approved").expect("approved");
    assert_eq!(reason, "AutoApproved");
    let cert = issued_cert(&o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), api.ca_pem()).unwrap();
    std::fs::write(dir.path().join("node.crt"), &cert).unwrap();
    run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.crt"))
        .arg(dir.path().join("node.crt")));
    let subj = run(Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "keyUsage,extendedKeyUsage",
            "-in",
        ])
        .arg(dir.path().join("node.crt")));
    assert!(
        subj.contains("CN = system:node:node-a") && subj.contains("O = system:nodes"),
        "{subj}"
    );
    assert!(
        subj.contains("TLS Web Client Authentication") && subj.contains("Digital Signature"),
        "{subj}"
    );
    let (nb, na) = validity(&cert);
    assert!(
        (created - 300 - nb).abs() <= 10,
        "notBefore backdated 5 min: {nb} vs {created}"
    );
    assert!(
        (na - (created + 3600)).abs() <= 10,
        "notAfter = now + expirationSeconds"
    );
    assert_eq!(spki_of_cert(&cert), spki_of_csr(&csr_pem));

    // The same CSR read back by the requester, and listed by name.
    let (code, got) = c.get(&format!("{CSRS}/{name}"));
    assert_eq!(code, 200);
    assert!(got["status"]["certificate"].is_string());
    let (code, list) = c.get(&format!("{CSRS}?fieldSelector=metadata.name%3D{name}"));
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "CertificateSigningRequestList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["metadata"]["resourceVersion"].is_string());
    let (_, none) = c.get(&format!("{CSRS}?fieldSelector=metadata.name%3Dother"));
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
}

#[test]
fn expiration_seconds_honoured_capped_and_validated() {
    let api = StandIn::start(Options {
        signing_duration: Duration::from_secs(7200),
        ..Default::default()
    })
    .unwrap();
    let c = token(&api);
    let mut names = vec![];
    for exp in [Some(1800), Some(86400), None] {
        let (csr_pem, _) = node_client_csr("n");
        let (code, obj) = c.post(
            CSRS,
            &csr_object("csr-*", &csr_pem, CLIENT_KUBELET, CLIENT_USAGES, exp),
        );
        assert_eq!(code, 201, "{obj}");
        names.push((obj["metadata"]["name"].as_str().unwrap().to_string(), now()));
    }
    let want = [1800, 7200, 7200];
    for ((name, t), want) in names.iter().zip(want) {
        let o = wait_csr(&api, name, |o| issued_cert(o).is_some());
        let (_, na) = validity(&issued_cert(&o).unwrap());
        assert!(
            (na - (t + want)).abs() <= 10,
            "{name}: notAfter {na}, want now+{want}"
        );
    }
    // Below the 10-minute floor: the API rejects it (validation), as kube-apiserver does.
    let (csr_pem, _) = node_client_csr("n");
    let (code, st) = c.post(
        CSRS,
        &csr_object("short", &csr_pem, CLIENT_KUBELET, CLIENT_USAGES, Some(599)),
    );
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "Invalid");
    assert!(
        st["message"].as_str().unwrap().contains("600 seconds"),
        "{st}"
    );
    // Other validation: no usages, a garbage request, the legacy signer.
    let mut bad = csr_object("x", &csr_pem, CLIENT_KUBELET, &[], None);
    bad["spec"]["request"] = json!("bm90IGEgQ1NS");
    let (code, st) = admin(&api).post(CSRS, &bad);
    assert_eq!(code, 422);
    assert!(
        st["message"].as_str().unwrap().contains("spec.usages"),
        "{st}"
    );
    assert!(
        st["message"].as_str().unwrap().contains("spec.request"),
        "{st}"
    );
    let (code, _) = admin(&api).post(
        CSRS,
        &csr_object(
            "y",
            &csr_pem,
            "kubernetes.io/legacy-unknown",
            CLIENT_USAGES,
            None,
        ),
    );
    assert_eq!(code, 422);
}

#[test]
fn watch_from_resource_version_sees_later_events_and_too_old_gets_410() {
    let api = StandIn::start(Options::default()).unwrap();
    api.set_never_approve(true);
    let adm = admin(&api);
    let (csr_pem, _) = node_client_csr("w");
    let (code, obj) = adm.post(
        CSRS,
        &csr_object("watched", &csr_pem, CLIENT_KUBELET, CLIENT_USAGES, None),
    );
    assert_eq!(code, 201);
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, other) = adm.post(
        CSRS,
        &csr_object(
            "other",
            &node_client_csr("o").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    assert!(
        other["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv.parse::<u64>().unwrap()
    );

    let mut w = adm.request("GET", &format!("{CSRS}?fieldSelector=metadata.name%3Dwatched&watch=true&resourceVersion={rv}&allowWatchBookmarks=true"), None);
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type"), Some("application/json"));
    api.approve("watched").unwrap();
    let ev = w.events(1);
    assert_eq!(ev[0]["type"], "MODIFIED");
    assert_eq!(ev[0]["object"]["metadata"]["name"], "watched");
    assert_eq!(ev[0]["object"]["kind"], "CertificateSigningRequest");
    let ev = w.events(1);
    assert_eq!(ev[0]["type"], "MODIFIED", "signer's update");
    assert!(ev[0]["object"]["status"]["certificate"].is_string());
    api.delete("watched").unwrap();
    let ev = w.events(1);
    assert_eq!(ev[0]["type"], "DELETED");

    // Without a resourceVersion: the current state first, as ADDED.
    let mut w2 = adm.request("GET", &format!("{CSRS}?watch=1"), None);
    let ev = w2.events(1);
    assert_eq!(ev[0]["type"], "ADDED");
    assert_eq!(ev[0]["object"]["metadata"]["name"], "other");
    drop(w2);

    // After a compaction the old resourceVersion is gone: 200 + one ERROR event (410 Expired).
    api.compact();
    let mut w3 = adm.request(
        "GET",
        &format!("{CSRS}?watch=true&resourceVersion={rv}"),
        None,
    );
    assert_eq!(w3.status, 200);
    let ev = w3.events(2);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["kind"], "Status");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");
    assert!(w3.ended());
    // A current resourceVersion still works after the compaction.
    let cur = api.resource_version();
    let mut w4 = adm.request(
        "GET",
        &format!("{CSRS}?watch=true&resourceVersion={cur}"),
        None,
    );
    api.delete("other").unwrap();
    assert_eq!(w4.events(1)[0]["type"], "DELETED");
}

#[test]
fn authentication_and_authorization() {
    let api = StandIn::start(Options::default()).unwrap();
    // Unknown bootstrap token, malformed token: 401 Unauthorized.
    for t in ["abcdef.ffffffffffffffff", "not-a-token"] {
        let c = Client::new(&api, Auth::Token(t.into()));
        let (code, st) = c.get(CSRS);
        assert_eq!(code, 401);
        assert_eq!(st["reason"], "Unauthorized");
    }
    // A client certificate from another CA, and an expired one: 401.
    let other = StandIn::start(Options::default()).unwrap();
    let ck = other
        .issue_client_cert(
            "kubernetes-admin",
            &["system:masters"],
            Duration::from_secs(3600),
        )
        .unwrap();
    let c = Client::new(
        &api,
        Auth::Cert {
            cert_pem: ck.cert_pem,
            key_pem: ck.key_pem,
        },
    );
    assert_eq!(c.get(CSRS).0, 401);
    let ck = api
        .issue_client_cert("kubernetes-admin", &["system:masters"], Duration::ZERO)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let c = Client::new(
        &api,
        Auth::Cert {
            cert_pem: ck.cert_pem,
            key_pem: ck.key_pem,
        },
    );
    assert_eq!(c.get(CSRS).0, 401);
    // No credentials: system:anonymous, which may not touch CSRs (kubeadm's default).
    let (code, st) = Client::new(&api, Auth::None).get(CSRS);
    assert_eq!(code, 403);
    assert!(st["message"].as_str().unwrap().contains("system:anonymous"));
    assert_eq!(
        Client::new(&api, Auth::None)
            .request("GET", "/healthz", None)
            .status,
        200
    );

    // A node may create CSRs for itself only.
    let node = as_user(&api, "system:node:n1", "system:nodes");
    let (code, st) = node.post(
        CSRS,
        &csr_object(
            "for-n2",
            &node_client_csr("n2").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    assert_eq!(code, 403, "{st}");
    assert_eq!(st["reason"], "Forbidden");
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.contains("User \"system:node:n1\"") && msg.contains("cannot create"),
        "{msg}"
    );
    // ... and its own client CSR is auto-approved as selfnodeclient.
    let (code, _) = node.post(
        CSRS,
        &csr_object(
            "own",
            &node_client_csr("n1").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    assert_eq!(code, 201);
    let o = wait_csr(&api, "own", |o| issued_cert(o).is_some());
    assert_eq!(o.spec.username.as_deref(), Some("system:node:n1"));
    // Bootstrappers may not approve, nor create other signers' CSRs; nodes may not delete.
    let boot = token(&api);
    let (code, st) = boot.put(
        &format!("{CSRS}/own/approval"),
        &serde_json::to_value(&o).unwrap(),
    );
    assert_eq!(code, 403);
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("cannot update resource \"certificatesigningrequests/approval\""),
        "{st}"
    );
    let (code, _) = boot.post(
        CSRS,
        &csr_object(
            "srv",
            &make_csr("system:node:n1", "system:nodes", &["n1"]).0,
            KUBELET_SERVING,
            SERVING_USAGES,
            None,
        ),
    );
    assert_eq!(code, 403);
    assert_eq!(
        node.request("DELETE", &format!("{CSRS}/own"), None).status,
        403
    );
    // An authenticated user with no role: 403 for reads too.
    assert_eq!(as_user(&api, "jane", "developers").get(CSRS).0, 403);
    // The admin may delete.
    let (code, st) = admin(&api)
        .request("DELETE", &format!("{CSRS}/own"), None)
        .status_and_json();
    assert_eq!(code, 200);
    assert_eq!(st["status"], "Success");
}

trait StatusJson {
    fn status_and_json(self) -> (u16, serde_json::Value);
}
impl StatusJson for Response {
    fn status_and_json(self) -> (u16, serde_json::Value) {
        let s = self.status;
        (s, self.json())
    }
}

#[test]
fn serving_csr_stays_pending_until_approved_and_keeps_its_sans() {
    let api = StandIn::start(Options::default()).unwrap();
    let node = as_user(&api, "system:node:n1", "system:nodes");
    let (csr_pem, _) = make_csr(
        "system:node:n1",
        "system:nodes",
        &["n1", "n1.example.test", "10.0.0.7"],
    );
    let (code, _) = node.post(
        CSRS,
        &csr_object(
            "n1-serving",
            &csr_pem,
            KUBELET_SERVING,
            SERVING_USAGES,
            None,
        ),
    );
    assert_eq!(code, 201);
    std::thread::sleep(Duration::from_millis(400));
    let o = api.get("n1-serving").unwrap();
    assert!(
        o.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_none(),
        "still pending"
    );
    api.approve("n1-serving").unwrap();
    let o = wait_csr(&api, "n1-serving", |o| issued_cert(o).is_some());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.crt"), issued_cert(&o).unwrap()).unwrap();
    let out = run(Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
        ])
        .arg(dir.path().join("s.crt")));
    assert!(
        out.contains("DNS:n1, DNS:n1.example.test, IP Address:10.0.0.7"),
        "{out}"
    );
    assert!(out.contains("TLS Web Server Authentication"), "{out}");
}

#[test]
fn conflicts_not_found_already_exists_and_approval_rules() {
    let api = StandIn::start(Options {
        strict_create: false,
        ..Default::default()
    })
    .unwrap();
    api.set_never_approve(true);
    let adm = admin(&api);
    let body = csr_object(
        "dup",
        &node_client_csr("d").0,
        CLIENT_KUBELET,
        CLIENT_USAGES,
        None,
    );
    let (_, obj) = adm.post(CSRS, &body);
    let (code, st) = adm.post(CSRS, &body);
    assert_eq!((code, st["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, st) = adm.get(&format!("{CSRS}/missing"));
    assert_eq!((code, st["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(st["details"]["name"], "missing");
    // Approve with the current resourceVersion; the same (now stale) version again: Conflict.
    let mut upd = obj.clone();
    upd["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]});
    let (code, after) = adm.put(&format!("{CSRS}/dup/approval"), &upd);
    assert_eq!(code, 200, "{after}");
    assert!(after["status"]["conditions"][0]["lastUpdateTime"].is_string());
    let (code, st) = adm.put(&format!("{CSRS}/dup/approval"), &upd);
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    // Approved and Denied together: Invalid; removing Approved: Invalid.
    let mut both = wait_csr(&api, "dup", |o| issued_cert(o).is_some());
    let mut v = serde_json::to_value(&both).unwrap();
    v["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Denied", "status": "True"}));
    let (code, st) = adm.put(&format!("{CSRS}/dup/approval"), &v);
    assert_eq!(
        (code, st["reason"].as_str()),
        (422, Some("Invalid")),
        "{st}"
    );
    both.status.as_mut().unwrap().conditions = None;
    let (code, _) = adm.put(
        &format!("{CSRS}/dup/approval"),
        &serde_json::to_value(&both).unwrap(),
    );
    assert_eq!(code, 422);
    // status subresource: the certificate may not change once issued.
    let mut v = serde_json::to_value(api.get("dup").unwrap()).unwrap();
    v["status"]["certificate"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        api.ca_pem()
    ));
    let (code, _) = adm.put(&format!("{CSRS}/dup/status"), &v);
    assert_eq!(code, 422);
    // Non-strict creation (as the real server): a node's CSR for another node is accepted, but
    // the approver does not approve it (it is neither nodeclient nor selfnodeclient).
    api.set_never_approve(false);
    let node = as_user(&api, "system:node:n1", "system:nodes");
    let (code, _) = node.post(
        CSRS,
        &csr_object(
            "n1-for-n2",
            &node_client_csr("n2").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    assert_eq!(code, 201);
    std::thread::sleep(Duration::from_millis(300));
    assert!(cond(&api.get("n1-for-n2").unwrap(), "Approved").is_none());
}

#[test]
fn fault_knobs_each_fire() {
    let api = StandIn::start(Options::default()).unwrap();
    let c = token(&api);
    let list = format!("{CSRS}?fieldSelector=metadata.name%3Dnone");

    // latency
    api.set_latency(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(c.get(&list).0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    api.set_latency(Duration::ZERO);

    // 500 and 503, then normal again
    api.fail_next(1, 500);
    let (code, st) = c.get(&list);
    assert_eq!((code, st["reason"].as_str()), (500, Some("InternalError")));
    api.fail_next(1, 503);
    let (code, st) = c.get(&list);
    assert_eq!(
        (code, st["reason"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    assert_eq!(c.get(&list).0, 200);

    // 429 with Retry-After
    api.throttle_next(1, 7);
    let r = c.request("GET", &list, None);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    let st = r.json();
    assert_eq!(st["reason"], "TooManyRequests");
    assert_eq!(st["details"]["retryAfterSeconds"], 7);

    // watches that end early: immediately, after one event, and on demand
    api.set_watch_event_limit(Some(0));
    let mut w = c.request("GET", &format!("{CSRS}?watch=true"), None);
    assert_eq!(w.status, 200);
    assert!(w.events(1).is_empty());
    api.set_watch_event_limit(Some(1));
    let rv = api.resource_version();
    let mut w = c.request(
        "GET",
        &format!("{CSRS}?watch=true&resourceVersion={rv}"),
        None,
    );
    api.set_never_approve(true);
    let (_, a) = c.post(
        CSRS,
        &csr_object(
            "csr-*",
            &node_client_csr("f").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    let a = a["metadata"]["name"].as_str().unwrap().to_string();
    api.approve(&a).unwrap();
    let ev = w.events(5);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(w.ended());
    api.set_watch_event_limit(None);
    wait_csr(&api, &a, |o| issued_cert(o).is_some());
    let mut w = c.request(
        "GET",
        &format!(
            "{CSRS}?watch=true&resourceVersion={}",
            api.resource_version()
        ),
        None,
    );
    api.close_watches();
    assert!(w.events(1).is_empty());

    // never approve: a valid bootstrap CSR stays pending
    let (_, b) = c.post(
        CSRS,
        &csr_object(
            "csr-*",
            &node_client_csr("f").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    let b = b["metadata"]["name"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(300));
    assert!(cond(&api.get(&b).unwrap(), "Approved").is_none());
    api.set_never_approve(false);
    wait_csr(&api, &b, |o| issued_cert(o).is_some());

    // deny next
    api.deny_next(1);
    let (_, d) = c.post(
        CSRS,
        &csr_object(
            "csr-*",
            &node_client_csr("f").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    let d = wait_csr(&api, d["metadata"]["name"].as_str().unwrap(), |o| {
        cond(o, "Denied").is_some()
    });
    assert!(issued_cert(&d).is_none());

    // mark Failed
    api.fail_next_csr(1);
    let (_, f) = c.post(
        CSRS,
        &csr_object(
            "csr-*",
            &node_client_csr("f").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    let f = wait_csr(&api, f["metadata"]["name"].as_str().unwrap(), |o| {
        cond(o, "Failed").is_some()
    });
    assert_eq!(cond(&f, "Failed").unwrap().0, "SignerValidationFailure");
    assert!(cond(&f, "Approved").is_some() && issued_cert(&f).is_none());

    // never sign: approved, no certificate
    api.set_never_sign(true);
    let (_, n) = c.post(
        CSRS,
        &csr_object(
            "csr-*",
            &node_client_csr("f").0,
            CLIENT_KUBELET,
            CLIENT_USAGES,
            None,
        ),
    );
    let n = n["metadata"]["name"].as_str().unwrap().to_string();
    wait_csr(&api, &n, |o| cond(o, "Approved").is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert!(issued_cert(&api.get(&n).unwrap()).is_none());
    api.set_never_sign(false);
    wait_csr(&api, &n, |o| issued_cert(o).is_some());

    // a certificate for a different key: right subject and chain, wrong public key
    api.sign_wrong_key_next(1);
    let (csr_pem, _) = node_client_csr("f");
    let (_, k) = c.post(
        CSRS,
        &csr_object("csr-*", &csr_pem, CLIENT_KUBELET, CLIENT_USAGES, None),
    );
    let k = wait_csr(&api, k["metadata"]["name"].as_str().unwrap(), |o| {
        issued_cert(o).is_some()
    });
    assert_ne!(
        spki_of_cert(&issued_cert(&k).unwrap()),
        spki_of_csr(&csr_pem)
    );

    // the request log: method, path, query, user
    let log = api.requests();
    let posts: Vec<_> = log.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 6);
    assert!(posts
        .iter()
        .all(|r| r.user == "system:bootstrap:abcdef" && r.status == 201 && r.path == CSRS));
    assert!(log
        .iter()
        .any(|r| r.watch && r.query.contains("resourceVersion=")));
    assert!(log.iter().any(|r| r.status == 429));
    api.clear_requests();
    assert!(api.requests().is_empty());
}

#[test]
fn kubeadm_style_rsa_ca_from_a_directory_signs_rsa_csrs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // kubeadm: RSA 2048, PKCS#1 key ("BEGIN RSA PRIVATE KEY").
    run(Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(d.join("ca.key"))
        .arg("2048")
        .stderr(std::process::Stdio::null()));
    run(Command::new("openssl")
        .args(["req", "-x509", "-new", "-key"])
        .arg(d.join("ca.key"))
        .args([
            "-subj",
            "/CN=kubernetes",
            "-days",
            "3650",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-out",
        ])
        .arg(d.join("ca.crt")));
    let api = StandIn::start(Options {
        ca_dir: Some(d.to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        api.ca_pem(),
        std::fs::read_to_string(d.join("ca.crt")).unwrap()
    );
    // An RSA node key and CSR made by openssl, as a kubelet with an RSA key would send it.
    run(Command::new("openssl")
        .args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(d.join("node.key"))
        .args(["-subj", "/O=system:nodes/CN=system:node:rsa", "-out"])
        .arg(d.join("node.csr"))
        .stderr(std::process::Stdio::null()));
    let csr_pem = std::fs::read_to_string(d.join("node.csr")).unwrap();
    let c = token(&api);
    let (code, obj) = c.post(
        CSRS,
        &csr_object(
            "csr-*",
            &csr_pem,
            CLIENT_KUBELET,
            &["digital signature", "key encipherment", "client auth"],
            None,
        ),
    );
    assert_eq!(code, 201, "{obj}");
    let o = wait_csr(&api, obj["metadata"]["name"].as_str().unwrap(), |o| {
        issued_cert(o).is_some()
    });
    std::fs::write(d.join("node.crt"), issued_cert(&o).unwrap()).unwrap();
    run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.join("ca.crt"))
        .arg(d.join("node.crt")));
    assert_eq!(
        spki_of_cert(&issued_cert(&o).unwrap()),
        spki_of_csr(&csr_pem)
    );
    // The issued certificate then authenticates its node (mTLS with the RSA key).
    let node = Client::new(
        &api,
        Auth::Cert {
            cert_pem: issued_cert(&o).unwrap(),
            key_pem: std::fs::read_to_string(d.join("node.key")).unwrap(),
        },
    );
    let (code, _) = node.get(CSRS);
    assert_eq!(code, 200);
    assert_eq!(api.requests().last().unwrap().user, "system:node:rsa");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn usable_from_async_tests_and_shut_down_there() {
    let api = StandIn::start(Options::default()).unwrap();
    let addr = api.addr();
    let ca = api.ca_pem().to_string();
    let code = tokio::task::spawn_blocking(move || {
        Client::with_ca(addr, &ca, Auth::None)
            .request("GET", "/healthz", None)
            .status
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    api.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed after shutdown"
    );
}

#[test]
fn cleaner_deletes_issued_and_denied_csrs_after_gc_after() {
    let api = StandIn::start(Options {
        gc_after: Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap();
    let c = token(&api);
    let rv = api.resource_version();
    let mut w = c.request(
        "GET",
        &format!("{CSRS}?watch=true&resourceVersion={rv}"),
        None,
    );
    api.deny_next(1);
    for _ in 0..2 {
        let (code, _) = c.post(
            CSRS,
            &csr_object(
                "csr-*",
                &node_client_csr("g").0,
                CLIENT_KUBELET,
                CLIENT_USAGES,
                None,
            ),
        );
        assert_eq!(code, 201);
    }
    // ADDED x2, Denied, Approved, Issued, then DELETED x2 once a second has passed.
    let ev = w.events(7);
    let kinds: Vec<_> = ev
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "DELETED").count(),
        2,
        "{kinds:?}"
    );
    assert!(api.list().is_empty());
}
