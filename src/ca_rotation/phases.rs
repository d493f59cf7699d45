//! The three phases, each a desired state written where it differs (see the table in
//! [`super`]). Order within a phase keeps the node working after a crash at any point:
//! trust widens before the signer changes, leaves move after the signer, trust narrows
//! last and only once nothing depends on the old CA.

use std::path::{Path, PathBuf};

use crate::config::{Action, CaSpec, Config};
use crate::paths::NodeRoot;
use crate::pki::CertInfo;
use crate::rotation::plan::rfc3339;
use crate::store::{FileSpec, Store};

use super::bundle::{self, Pair};
use super::newca::{self, NewCa};
use super::record::{self, Phase, Rotation};
use super::{leaves, staging, trust, Options, PhaseError, Report};

/// Everything a phase needs.
pub struct Ctx<'a> {
    pub root: &'a NodeRoot,
    pub config: &'a Config,
    pub ca: &'a CaSpec,
    pub opts: &'a Options,
    pub store: Store,
}

impl<'a> Ctx<'a> {
    pub fn new(root: &'a NodeRoot, config: &'a Config, ca: &'a CaSpec, opts: &'a Options) -> Self {
        Ctx {
            root,
            config,
            ca,
            opts,
            store: Store::new(root.clone(), config.history),
        }
    }

    /// Every kubeconfig on the node: the inventory's patterns, the managed ones and the
    /// kubelet's (node paths of files that exist).
    pub fn kubeconfig_paths(&self) -> Vec<PathBuf> {
        let c = self.config;
        let mut v = crate::inventory::expand_kubeconfig_globs(self.root, &c.inventory.kubeconfigs);
        v.extend(c.kubeconfigs.iter().map(|k| k.path.clone()));
        if let Some(k) = &c.kubelet {
            v.push(k.kubeconfig.clone());
            v.push(k.bootstrap_kubeconfig.clone());
        }
        v.sort();
        v.dedup();
        v.retain(|p| self.root.host_path(p).is_file());
        v
    }

    fn read(&self, p: &Path) -> Result<Vec<u8>, String> {
        self.root
            .read(p)
            .map_err(|e| format!("{}: {e}", p.display()))
    }

    fn live_bundle(&self) -> Result<Vec<Vec<u8>>, String> {
        let b = self.read(&self.ca.cert)?;
        bundle::certificates(&b).map_err(|e| format!("{}: {e}", self.ca.cert.display()))
    }

    fn live_key(&self) -> Result<Option<Vec<u8>>, String> {
        self.ca.key.as_ref().map(|k| self.read(k)).transpose()
    }

    /// Do `what` unless it is a dry run; say so either way.
    fn step(
        &self,
        lines: &mut Vec<String>,
        what: String,
        f: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        if self.opts.dry_run {
            lines.push(format!("would {what}"));
        } else {
            f()?;
            lines.push(what);
        }
        Ok(())
    }

    /// Make the CA files hold `wanted` (and the signing key `key`, for a node that signs).
    /// Returns whether anything changed.
    fn set_ca_files(
        &self,
        lines: &mut Vec<String>,
        wanted: Vec<Vec<u8>>,
        key: Option<&[u8]>,
        why: &str,
    ) -> Result<bool, String> {
        let live = self.live_bundle()?;
        let live_key = self.live_key()?;
        if wanted == live && (key.is_none() || key == live_key.as_deref()) {
            return Ok(false);
        }
        let pem = bundle::to_pem(&wanted);
        let what = format!("write {} ({why})", self.ca.cert.display());
        self.step(lines, what, || match (&self.ca.key, key) {
            (Some(kp), Some(k)) => self
                .store
                .install_ca_pair(&self.ca.cert, kp, pem.as_bytes(), k, self.opts.now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => self
                .store
                .write_file(&self.ca.cert, pem.as_bytes(), FileSpec::CERT)
                .map_err(|e| e.to_string()),
        })?;
        Ok(true)
    }

    /// Set the embedded CA bundles of every kubeconfig that trusts the rotation's CAs.
    fn set_kubeconfigs(
        &self,
        lines: &mut Vec<String>,
        pair: &Pair,
        wanted: &[&[u8]],
        why: &str,
    ) -> Result<bool, String> {
        let mut changed = false;
        for p in self.kubeconfig_paths() {
            let text = self.read(&p)?;
            let text =
                std::str::from_utf8(&text).map_err(|_| format!("{}: not UTF-8", p.display()))?;
            let Some(new_text) = trust::set_kubeconfig_cas(text, pair, wanted)
                .map_err(|e| format!("{}: {e}", p.display()))?
            else {
                continue;
            };
            let what = format!("write {} certificate-authority-data ({why})", p.display());
            self.step(lines, what, || {
                self.store
                    .write_file(&p, new_text.as_bytes(), FileSpec::KEY)
                    .map_err(|e| e.to_string())
            })?;
            changed = true;
        }
        Ok(changed)
    }

    /// The rotation's record, saved (not on a dry run).
    fn save(&self, r: &Rotation) -> Result<(), String> {
        if self.opts.dry_run {
            return Ok(());
        }
        let mut rec = record::read(self.root)?;
        rec.put(r.clone());
        record::write(self.root, &rec)
    }

    fn rotation(
        &self,
        phase: Phase,
        old: &CertInfo,
        new: &CertInfo,
        started: Option<&str>,
    ) -> Rotation {
        let now = rfc3339(self.opts.now);
        Rotation {
            ca: self.ca.name.clone(),
            phase,
            complete: false,
            old_serial: old.serial.clone(),
            new_serial: new.serial.clone(),
            started: started.map(str::to_string).unwrap_or_else(|| now.clone()),
            updated: now,
            error: None,
        }
    }

    /// Run `actions` (each once, with the certificates it is for); false if one failed.
    async fn run_actions(
        &self,
        lines: &mut Vec<String>,
        actions: Vec<(Action, Vec<String>)>,
    ) -> bool {
        let mut once: Vec<(Action, Vec<String>)> = Vec::new();
        for (a, certs) in actions {
            match once.iter_mut().find(|(x, _)| *x == a) {
                Some((_, c)) => c.extend(certs),
                None => once.push((a, certs)),
            }
        }
        let mut runner = crate::service::actions::Runner::default();
        let mut ok = true;
        for (a, certs) in once {
            let desc = crate::service::actions::describe(&a);
            if self.opts.dry_run {
                lines.push(format!("would run {desc} (for {})", certs.join(", ")));
                continue;
            }
            match runner.run(self.root, &a, &certs).await {
                Ok(m) => lines.push(format!("{m} (for {})", certs.join(", "))),
                Err(e) => {
                    ok = false;
                    lines.push(format!("{desc} (for {}) FAILED: {e}", certs.join(", ")));
                }
            }
        }
        ok
    }

    fn ca_actions(&self) -> Vec<(Action, Vec<String>)> {
        let who = vec![format!("CA {}", self.ca.name)];
        self.ca
            .on_rotate
            .iter()
            .map(|a| (a.clone(), who.clone()))
            .collect()
    }

    /// The new CA: given on the command line, staged by an earlier (interrupted) run, or
    /// made now.
    fn choose_new(&self, old: &CertInfo, lines: &mut Vec<String>) -> Result<NewCa, PhaseError> {
        let signs = self.ca.key.is_some();
        let now = self.opts.now;
        let host =
            |p: &Path| crate::paths::read_host_file(p).map_err(|e| format!("{}: {e}", p.display()));
        let given = match (&self.opts.new_cert, &self.opts.new_cert_pem) {
            (Some(c), _) => Some((format!("--cert {}", c.display()), host(c)?)),
            (None, Some(pem)) => Some(("the CARotation object".to_string(), pem.clone())),
            (None, None) => None,
        };
        let (sc, sk, _) = staging(self.ca);
        if let Some((from, cert)) = given {
            let key = match (&self.opts.new_key, signs) {
                (Some(k), _) => Some(host(k)?),
                // The daemon (no --key): the key copied into the staging directory.
                (None, true) => match self.root.read(&sk) {
                    Ok(k) => Some(k),
                    Err(_) => {
                        return Err(PhaseError::refused(format!(
                            "this node signs with CA {} (cas[].key is set): give the new CA's key with --key too,                              or copy it to {} (0600)",
                            self.ca.name,
                            sk.display()
                        )))
                    }
                },
                (None, false) => None,
            };
            let n = newca::given(old, &cert, key.as_deref().filter(|_| signs), now)
                .map_err(|e| PhaseError::refused(format!("{from}: {e}")))?;
            lines.push(format!("new CA from {from}: serial {}", n.info.serial));
            return Ok(n);
        }
        if let Ok(cert) = self.root.read(&sc) {
            let key = if signs {
                self.root.read(&sk).ok()
            } else {
                None
            };
            if !signs || key.is_some() {
                if let Ok(n) = newca::given(old, &cert, key.as_deref(), now) {
                    lines.push(format!(
                        "new CA staged by an earlier run: serial {}",
                        n.info.serial
                    ));
                    return Ok(n);
                }
            }
        }
        if !signs {
            return Err(PhaseError::refused(format!(
                "this node has no key for CA {} (cas[].key is not set): give the new CA certificate \
                 with --cert (copy it from a control-plane node: {})",
                self.ca.name,
                sc.display()
            )));
        }
        let n = newca::generate(old, now)?;
        lines.push(format!(
            "new CA made: {}, serial {}, key {}, valid until {}",
            n.info.subject,
            n.info.serial,
            n.info.key_type,
            rfc3339(n.info.not_after)
        ));
        Ok(n)
    }

    /// Write the new CA (and the old one, to know it later) into the staging directory.
    fn stage(&self, lines: &mut Vec<String>, old: &CertInfo, new: &NewCa) -> Result<(), String> {
        let (sc, sk, so) = staging(self.ca);
        let mut files: Vec<(&Path, Vec<u8>, FileSpec)> = Vec::new();
        if self.ca.key.is_some() {
            files.push((&sk, new.key_pem.as_bytes().to_vec(), FileSpec::KEY));
        }
        files.push((
            &sc,
            bundle::to_pem(std::slice::from_ref(&new.info.der)).into_bytes(),
            FileSpec::CERT,
        ));
        files.push((
            &so,
            bundle::to_pem(std::slice::from_ref(&old.der)).into_bytes(),
            FileSpec::CERT,
        ));
        for (p, data, spec) in files {
            if self.root.read(p).ok().as_deref() == Some(data.as_slice()) {
                continue;
            }
            self.step(lines, format!("stage {}", p.display()), || {
                self.store
                    .write_file(p, &data, spec)
                    .map_err(|e| e.to_string())
            })?;
        }
        Ok(())
    }

    /// The two CAs staged by prepare.
    fn staged(&self) -> Result<(CertInfo, CertInfo, Option<Vec<u8>>), String> {
        let (sc, sk, so) = staging(self.ca);
        let old = super::read_cert(self.root, &so)?;
        let new = super::read_cert(self.root, &sc)?;
        let key = match &self.ca.key {
            Some(_) => self.root.read(&sk).ok(),
            None => None,
        };
        Ok((old, new, key))
    }
}

/// prepare: stage the new CA and put old + new into every trust point; the signer stays.
pub async fn prepare(ctx: &Ctx<'_>, current: Option<&Rotation>) -> Result<Report, PhaseError> {
    let mut lines = Vec::new();
    let resuming = current.filter(|r| r.phase == Phase::Prepare);
    let live = ctx.live_bundle()?;
    let old = match resuming {
        Some(_) => ctx.staged()?.0,
        None => CertInfo::parse(&live[0]).map_err(|e| format!("{}: {e}", ctx.ca.cert.display()))?,
    };
    if !live.contains(&old.der) {
        return Err(PhaseError::refused(format!(
            "{} no longer holds the CA this rotation started from (serial {}): it was changed by hand",
            ctx.ca.cert.display(),
            old.serial
        )));
    }
    let live_key = ctx.live_key()?;
    if let Some(k) = &live_key {
        let old_pem = bundle::to_pem(std::slice::from_ref(&old.der));
        crate::store::verify::check_pair(old_pem.as_bytes(), k).map_err(|e| {
            PhaseError::refused(format!(
                "{}: {e}",
                ctx.ca.key.as_ref().expect("key").display()
            ))
        })?;
    }
    let new = ctx.choose_new(&old, &mut lines)?;
    ctx.stage(&mut lines, &old, &new)?;
    let mut rot = ctx.rotation(
        Phase::Prepare,
        &old,
        &new.info,
        resuming.map(|r| r.started.as_str()),
    );
    ctx.save(&rot)?;
    let pair = Pair {
        old: old.der.clone(),
        new: new.info.der.clone(),
    };
    let both: [&[u8]; 2] = [&pair.old, &pair.new];
    let mut changed = ctx.set_ca_files(
        &mut lines,
        bundle::rebundle(&live, &pair, &both),
        live_key.as_deref(),
        "trust old + new; the old CA still signs",
    )?;
    changed |= ctx.set_kubeconfigs(&mut lines, &pair, &both, "trust old + new")?;
    let rerun = resuming.is_some_and(|r| !r.complete);
    let ok = !(changed || rerun) || ctx.run_actions(&mut lines, ctx.ca_actions()).await;
    finish(ctx, &mut rot, lines, ok, vec![])
}

/// reissue: the new CA becomes the signer; every leaf of the CA is re-issued from it.
pub async fn reissue(
    ctx: &Ctx<'_>,
    progress: crate::kubelet::Progress<'_>,
) -> Result<Report, PhaseError> {
    let mut lines = Vec::new();
    let current = record::read(ctx.root)?.get(&ctx.ca.name).cloned();
    let (old, new, new_key) = ctx.staged()?;
    let mut rot = ctx.rotation(
        Phase::Reissue,
        &old,
        &new,
        current.as_ref().map(|r| r.started.as_str()),
    );
    ctx.save(&rot)?;
    let pair = Pair {
        old: old.der.clone(),
        new: new.der.clone(),
    };
    let mut changed = false;
    if ctx.ca.key.is_some() {
        let key = match new_key {
            Some(k) => k,
            // After a crash past the switch the staged key may be gone; ca.key holds it.
            None => ctx.live_key()?.unwrap_or_default(),
        };
        let live = ctx.live_bundle()?;
        changed |= ctx.set_ca_files(
            &mut lines,
            bundle::rebundle(&live, &pair, &[&pair.new, &pair.old]),
            Some(&key),
            "the new CA signs; old + new trusted",
        )?;
    }
    let re = leaves::reissue(ctx, &old, &new, &mut lines, progress).await;
    let mut actions = Vec::new();
    let rerun = current.is_some_and(|r| r.phase == Phase::Reissue && !r.complete);
    if changed || rerun || !re.names.is_empty() {
        actions.extend(ctx.ca_actions());
    }
    for n in &re.names {
        actions.extend(
            actions_of(ctx.config, n)
                .into_iter()
                .map(|a| (a, vec![n.clone()])),
        );
    }
    let ok = ctx.run_actions(&mut lines, actions).await;
    finish(ctx, &mut rot, lines, ok, re.waiting)
}

/// finalize: prove nothing depends on the old CA, then drop it from every trust point.
pub async fn finalize(ctx: &Ctx<'_>) -> Result<Report, PhaseError> {
    let mut lines = Vec::new();
    let current = record::read(ctx.root)?.get(&ctx.ca.name).cloned();
    let (old, new, _) = ctx.staged()?;
    let live = ctx.live_bundle()?;
    let mut deps = leaves::dependents(ctx, &old, &new);
    if ctx.ca.key.is_some() && live.first() != Some(&new.der) {
        deps.push(format!(
            "{}: the signing CA is not the new one (run reissue)",
            ctx.ca.cert.display()
        ));
    }
    if !deps.is_empty() {
        let msg = format!(
            "refusing to finalize: {} still depend(s) on the old CA (serial {}):\n  {}",
            deps.len(),
            old.serial,
            deps.join("\n  ")
        );
        if let Some(mut r) = current.filter(|_| !ctx.opts.dry_run) {
            r.error = Some(format!("finalize refused: {}", deps.join("; ")));
            ctx.save(&r)?;
        }
        return Err(PhaseError::refused(msg));
    }
    lines.push(format!(
        "every leaf and kubeconfig of CA {} verifies against the new CA alone",
        ctx.ca.name
    ));
    let mut rot = ctx.rotation(
        Phase::Finalize,
        &old,
        &new,
        current.as_ref().map(|r| r.started.as_str()),
    );
    ctx.save(&rot)?;
    let pair = Pair {
        old: old.der.clone(),
        new: new.der.clone(),
    };
    let live_key = ctx.live_key()?;
    let mut changed = ctx.set_ca_files(
        &mut lines,
        bundle::rebundle(&live, &pair, &[&pair.new]),
        live_key.as_deref(),
        "trust the new CA alone",
    )?;
    changed |= ctx.set_kubeconfigs(&mut lines, &pair, &[&pair.new], "trust the new CA alone")?;
    let rerun = current.is_some_and(|r| r.phase == Phase::Finalize && !r.complete);
    let ok = !(changed || rerun) || ctx.run_actions(&mut lines, ctx.ca_actions()).await;
    if ok && !ctx.opts.dry_run {
        // The signing key lives in the CA files now: no second copy stays behind.
        let (_, sk, _) = staging(ctx.ca);
        match std::fs::remove_file(ctx.root.host_path(&sk)) {
            Ok(()) => lines.push(format!("removed the staged key {}", sk.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PhaseError::failed(format!("{}: {e}", sk.display()))),
        }
    }
    finish(ctx, &mut rot, lines, ok, vec![])
}

fn finish(
    ctx: &Ctx<'_>,
    rot: &mut Rotation,
    mut lines: Vec<String>,
    actions_ok: bool,
    waiting: Vec<String>,
) -> Result<Report, PhaseError> {
    let mut why = waiting;
    if !actions_ok {
        why.push("a dependent's restart failed (run the phase again to retry it)".into());
    }
    rot.complete = why.is_empty();
    rot.error = (!why.is_empty()).then(|| why.join("; "));
    ctx.save(rot)?;
    let verb = if ctx.opts.dry_run { "would be" } else { "is" };
    lines.push(if rot.complete {
        format!(
            "CA {}: phase {} {verb} complete",
            ctx.ca.name,
            rot.phase.as_str()
        )
    } else {
        format!(
            "CA {}: phase {} is NOT complete: {}",
            ctx.ca.name,
            rot.phase.as_str(),
            rot.error.as_deref().unwrap_or("")
        )
    });
    Ok(Report {
        lines,
        complete: rot.complete,
    })
}

/// The `onRotate` of a config entry by name.
fn actions_of(config: &Config, name: &str) -> Vec<Action> {
    if let Some(c) = config.certificates.iter().find(|c| c.name == name) {
        return c.on_rotate.clone();
    }
    if let Some(k) = config.kubeconfigs.iter().find(|k| k.name == name) {
        return k.on_rotate.clone();
    }
    match &config.kubelet {
        Some(k) if name.starts_with("kubelet-") => k.on_rotate.clone(),
        _ => vec![],
    }
}
