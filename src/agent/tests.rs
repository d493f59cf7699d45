//! The daemon's decisions with in-memory fakes at its edges (`edges`): a fake clock moved by
//! hand, an action runner and an API that record what they are asked and answer as
//! scripted. No sockets, no systemd; the node tree is a temporary directory with a CA made
//! by openssl. Each test drives the agent as its loop does (cycles, task reports) and
//! asserts what was asked of each edge, in order and in number.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;

use super::edges::{ActionEdge, ApiEdge, Clock, Edges, LocalFut};
use super::schedule::WakeFor;
use super::{Agent, TaskMsg};
use crate::ca_rotation::cluster::Attempts;
use crate::config::{Action, Config};
use crate::lifecycle::Phase;
use crate::paths::NodeRoot;
use crate::revocation::Loaded;
use crate::service::control;

const PKI: &str = "/etc/kubernetes/pki";

/// A clock that moves only when told.
#[derive(Clone)]
struct FakeClock(std::sync::Arc<std::sync::Mutex<OffsetDateTime>>);

impl FakeClock {
    fn at(t: OffsetDateTime) -> FakeClock {
        FakeClock(std::sync::Arc::new(std::sync::Mutex::new(t)))
    }
    fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

type Calls = Rc<RefCell<Vec<(Action, Vec<String>)>>>;

/// Records each action and answers from a script (then Ok); the first answer waits for
/// the gate, when there is one (a restart that takes long).
struct FakeActions {
    calls: Calls,
    script: VecDeque<Result<String, String>>,
    gate: Option<oneshot::Receiver<()>>,
}

impl ActionEdge for FakeActions {
    fn run<'a>(
        &'a mut self,
        _root: &'a NodeRoot,
        action: &'a Action,
        certs: &'a [String],
    ) -> LocalFut<'a, Result<String, String>> {
        self.calls
            .borrow_mut()
            .push((action.clone(), certs.to_vec()));
        let r = self.script.pop_front().unwrap_or(Ok("done".into()));
        let gate = self.gate.take();
        Box::pin(async move {
            if let Some(g) = gate {
                let _ = g.await;
            }
            r
        })
    }
}

/// Answers listings from a script the test fills; a CA poll ends when the test says so.
#[derive(Default)]
struct FakeApi {
    listings: RefCell<VecDeque<Result<Loaded, String>>>,
    listed: RefCell<u32>,
    ca_release: RefCell<Option<oneshot::Receiver<()>>>,
    ca_polls: RefCell<u32>,
}

impl ApiEdge for Rc<FakeApi> {
    fn revocations(&self, _: NodeRoot, _: Config) -> LocalFut<'static, Result<Loaded, String>> {
        *self.listed.borrow_mut() += 1;
        let r = self
            .listings
            .borrow_mut()
            .pop_front()
            .unwrap_or(Ok(Loaded::default()));
        Box::pin(async move { r })
    }

    fn ca_rotations(
        &self,
        _: NodeRoot,
        _: Config,
        attempts: Attempts,
    ) -> LocalFut<'static, (Attempts, Result<Vec<String>, String>)> {
        *self.ca_polls.borrow_mut() += 1;
        let release = self.ca_release.borrow_mut().take();
        Box::pin(async move {
            if let Some(r) = release {
                let _ = r.await;
            }
            (attempts, Ok(vec!["CARotation test: phase done".into()]))
        })
    }
}

struct Node {
    _dir: tempfile::TempDir,
    root: NodeRoot,
    config: Config,
    clock: FakeClock,
    calls: Calls,
    api: Rc<FakeApi>,
}

impl Node {
    /// A CA made by openssl and `names` to issue from it, each restarting `unit`.
    fn new(names: &[&str], unit: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join(&PKI[1..]);
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/kube-cert-agent/revocations.d")).unwrap();
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "3650", "-subj", "/CN=kubernetes"])
            .arg("-keyout")
            .arg(pki.join("ca.key"))
            .arg("-out")
            .arg(pki.join("ca.crt"))
            .output()
            .expect("openssl is needed (TESTING.md)");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let mut yaml = String::from(
            "apiVersion: kube-cert-agent.io/v1alpha1\nkind: AgentConfiguration\ncertificates:\n",
        );
        for n in names {
            yaml.push_str(&format!(
                "- name: {n}\n  ca: {{cert: {PKI}/ca.crt, key: {PKI}/ca.key}}\n  cert: {PKI}/{n}.crt\n  key: {PKI}/{n}.key\n  subject: {{commonName: {n}}}\n  dnsNames: [{n}]\n  usages: [serverAuth]\n  keyType: ecdsa-p256\n  onRotate: [{{restart: {unit}}}]\n"
            ));
        }
        let config = Config::parse(Path::new("/etc/kube-cert-agent/config.yaml"), &yaml).unwrap();
        Node {
            root: NodeRoot::new(dir.path()),
            _dir: dir,
            config,
            clock: FakeClock::at(OffsetDateTime::now_utc()),
            calls: Rc::default(),
            api: Rc::default(),
        }
    }

    /// The agent, and where its tasks report (what the loop would select on).
    fn agent(
        &self,
        script: Vec<Result<String, String>>,
        gate: Option<oneshot::Receiver<()>>,
    ) -> (Agent, tokio::sync::mpsc::UnboundedReceiver<TaskMsg>) {
        let edges = Edges {
            clock: std::sync::Arc::new(self.clock.clone()),
            actions: Box::new(FakeActions {
                calls: self.calls.clone(),
                script: script.into(),
                gate,
            }),
            api: Rc::new(self.api.clone()),
        };
        let file = self
            .root
            .host_path(Path::new("/etc/kube-cert-agent/config.yaml"));
        let mut a = Agent::new(self.root.clone(), self.config.clone(), file, edges);
        let rx = a.tasks.1.take().unwrap();
        (a, rx)
    }
}

/// Hand the agent its tasks' reports, as the loop does, until one that `want` picks has
/// been handled.
async fn until_handled(
    a: &mut Agent,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<TaskMsg>,
    want: fn(&TaskMsg) -> bool,
) {
    loop {
        let msg = rx.recv().await.expect("the tasks report");
        let done = want(&msg);
        a.on_task(msg).await;
        if done {
            return;
        }
    }
}

fn is_listing(m: &TaskMsg) -> bool {
    matches!(m, TaskMsg::Revocations(_))
}

fn serial(a: &Agent, name: &str) -> Option<String> {
    a.certs.iter().find(|c| c.name == name)?.serial.clone()
}

/// Run `f` on a current-thread runtime inside a LocalSet, as the daemon does.
fn local<F: std::future::Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

#[test]
fn an_action_runs_once_for_a_cycle_off_the_loop_and_a_failure_is_retried_at_its_backoff() {
    let node = Node::new(&["apiserver", "front-proxy-client"], "kubelet.service");
    local(async {
        let (release, gate) = oneshot::channel();
        let failed = Err("Unit kubelet.service not found.".into());
        let (mut a, mut rx) = node.agent(vec![failed], Some(gate));
        a.rescan().await;
        let out = a.cycle(&[], false, "start-up").await;
        let lines: Vec<String> = out.iter().map(|o| o.line()).collect();
        assert!(
            out.iter().all(|o| !o.failed()) && out.len() == 2,
            "{lines:?}"
        );
        // The restart hangs (D-Bus slow to answer): the loop goes on meanwhile, a rescan
        // and a forced rotation of one certificate included.
        a.rescan().await;
        let again = a
            .cycle(&["apiserver".to_string()], true, "rotate command")
            .await;
        assert!(matches!(
            again[0].action,
            crate::rotation::Action::Rotated(_)
        ));
        assert_eq!(
            node.calls.borrow().len(),
            1,
            "the worker is on the first run"
        );
        release.send(()).unwrap();
        let msg = rx.recv().await.unwrap();
        assert!(matches!(msg, TaskMsg::ActionDone { .. }));
        a.on_task(msg).await;
        // One restart for both certificates (coalesced), failed: pending with a backoff.
        let calls = node.calls.borrow().clone();
        assert_eq!(calls[0].1, vec!["apiserver", "front-proxy-client"]);
        assert_eq!(a.pending.len(), 1);
        // The second rotation's restart ran after the first (one worker, in order).
        let msg = rx.recv().await.unwrap();
        a.on_task(msg).await;
        let calls = node.calls.borrow().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].1, vec!["apiserver"]);
        let retry_at = a.pending[0].retry_at;
        let t0 = node.clock.now();
        assert!(retry_at > t0, "{retry_at} after {t0}");
        assert_eq!(a.next_wake(), (retry_at, WakeFor::Actions));
        // Before its time, a wake-up retries nothing.
        node.clock.set(retry_at - Duration::milliseconds(1));
        a.retry_actions();
        assert_eq!(a.pending.len(), 1);
        // At its time, it goes to the worker again, and succeeds.
        node.clock.set(retry_at);
        a.retry_actions();
        assert!(a.pending.is_empty());
        let msg = rx.recv().await.unwrap();
        a.on_task(msg).await;
        assert!(a.pending.is_empty());
        let calls = node.calls.borrow().clone();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[2].1, vec!["apiserver", "front-proxy-client"]);
        assert_eq!(calls[0].0, calls[2].0);
    });
}

/// One RenewRevocation entry revoking `serial`, as the cluster's list would carry it.
fn revoking(serial: &str) -> Loaded {
    let doc = serde_json::json!({
        "apiVersion": "certificates.microsoft.com/v1",
        "kind": "RenewRevocation",
        "metadata": {"name": "test", "namespace": "kube-system"},
        "spec": {"revocations": [{"kind": "serialnumber", "serialNumber": serial}]}
    });
    let l = crate::revocation::parse_values(crate::revocation::cluster::SOURCE, &[doc]);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l
}

#[test]
fn cluster_revocations_are_listed_by_a_task_kept_through_errors_and_a_change_reissues() {
    let mut node = Node::new(&["apiserver"], "kube-apiserver.service");
    node.config.revocation.cluster = true;
    local(async {
        let (mut a, mut rx) = node.agent(vec![], None);
        a.spawn_revocation_listing();
        // A listing under way is not started twice.
        a.spawn_revocation_listing();
        until_handled(&mut a, &mut rx, is_listing).await;
        assert_eq!(*node.api.listed.borrow(), 1);
        a.rescan().await;
        a.cycle(&[], false, "start-up").await;
        let first = serial(&a, "apiserver").expect("issued");
        // Cycles and rescans use what was listed: they never ask the API server.
        a.cycle(&[], false, "deadline").await;
        a.rescan().await;
        assert_eq!(*node.api.listed.borrow(), 1);
        // The cluster now revokes it: the change makes it due at once, and the next cycle
        // replaces it.
        node.api
            .listings
            .borrow_mut()
            .push_back(Ok(revoking(&first)));
        a.spawn_revocation_listing();
        until_handled(&mut a, &mut rx, is_listing).await;
        let now = node.clock.now();
        let c = a.certs.iter().find(|c| c.name == "apiserver").unwrap();
        assert_eq!(c.next, Some(now), "due at once: {:?}", c.life);
        let out = a.cycle(&[], false, "deadline").await;
        assert!(
            matches!(&out[0].action, crate::rotation::Action::Rotated(r) if r.to_string().contains("revoked")),
            "{}",
            out[0].line()
        );
        let second = serial(&a, "apiserver").unwrap();
        assert_ne!(first, second);
        // The API server fails: the entries read before still apply (fail closed).
        node.api
            .listings
            .borrow_mut()
            .push_back(Err("connection refused".into()));
        a.spawn_revocation_listing();
        until_handled(&mut a, &mut rx, is_listing).await;
        assert_eq!(a.cluster_error.as_deref(), Some("connection refused"));
        assert_eq!(a.cluster, Some(revoking(&first)));
        assert_eq!(*node.api.listed.borrow(), 3);
    });
}

#[test]
fn a_ca_rotation_phase_runs_in_a_task_and_rotations_wait_for_its_end() {
    let mut node = Node::new(&["apiserver"], "kube-apiserver.service");
    node.config.ca_rotation.cluster = true;
    local(async {
        let (mut a, mut rx) = node.agent(vec![], None);
        // Missing: due now.
        a.rescan().await;
        assert_eq!(
            a.next_wake(),
            (node.clock.now(), WakeFor::Deadline("apiserver".into()))
        );
        let (release, wait) = oneshot::channel();
        *node.api.ca_release.borrow_mut() = Some(wait);
        a.spawn_ca_rotations();
        assert!(a.ca_busy());
        // The loop does not wake for it while the phase runs (it would only defer it).
        assert_eq!(a.next_wake().1, WakeFor::Resync);
        // A second poll while one runs starts nothing.
        a.spawn_ca_rotations();
        assert_eq!(*node.api.ca_polls.borrow(), 1);
        // A rotation asked for meanwhile waits, once however often it is asked; `rotate`
        // says so and rotates nothing.
        assert!(a.cycle(&[], true, "SIGHUP").await.is_empty());
        assert!(a.cycle(&[], true, "SIGHUP").await.is_empty());
        assert_eq!(a.deferred.len(), 1);
        let (tx, answer) = oneshot::channel();
        let req = control::Request::Rotate {
            all: false,
            dry_run: false,
            names: vec!["apiserver".into()],
        };
        a.on_control(req, tx).await;
        let reply = answer.await.unwrap();
        assert_eq!(reply.code, crate::exit::ExitCode::Failure as i32);
        assert!(
            reply.lines[0].contains("CA rotation phase is running"),
            "{:?}",
            reply.lines
        );
        assert!(serial(&a, "apiserver").is_none());
        // The phase ends: the deferred rotation runs.
        release.send(()).unwrap();
        until_handled(&mut a, &mut rx, |m| matches!(m, TaskMsg::CaSynced(..))).await;
        assert!(!a.ca_busy());
        assert!(a.deferred.is_empty());
        assert!(serial(&a, "apiserver").is_some());
    });
}

#[test]
fn a_permanent_failure_is_tried_again_only_after_the_long_interval() {
    let node = Node::new(&["apiserver"], "kube-apiserver.service");
    // A CA key that cannot be read: retrying cannot help until someone replaces it.
    let key = node.root.host_path(Path::new(&format!("{PKI}/ca.key")));
    std::fs::write(key, "not a key\n").unwrap();
    local(async {
        let (mut a, _rx) = node.agent(vec![], None);
        let t0 = node.clock.now();
        a.rescan().await;
        let out = a.cycle(&[], false, "start-up").await;
        assert_eq!(out.len(), 1);
        assert!(out[0].failed(), "{}", out[0].line());
        let long = a.config.renewal.backoff().permanent;
        let until = match &a.certs[0].life.phase {
            Phase::Backoff { until, .. } => *until,
            p => panic!("{p:?}"),
        };
        assert!(until >= t0 + long, "{until}");
        // The loop's wake-ups (a reminder in the journal, the hourly resync) try nothing
        // before then; the first at or after it tries once.
        let (mut wakes, mut tries_before) = (0, 0);
        loop {
            let (at, why) = a.next_wake();
            assert!(at >= node.clock.now(), "{at} for {why:?}");
            node.clock.set(at);
            let out = a.on_wake(why.clone()).await;
            wakes += 1;
            assert!(wakes < 20, "{why:?}");
            if at < until {
                tries_before += out.len();
                continue;
            }
            assert_eq!(out.len(), 1, "tried again at {at}");
            assert!(out[0].failed());
            break;
        }
        assert_eq!(tries_before, 0);
        assert!(wakes >= 2, "a reminder wake-up came first");
    });
}
