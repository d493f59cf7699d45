#!/bin/bash
# make package-test: the .deb and .rpm that `make deb` / `make rpm` built, checked the way a
# distribution would (lintian, rpmlint, systemd-analyze) and installed for real: the .deb
# with dpkg in a real systemd (../shared/tools/systemd-sandbox), the .rpm into a scratch
# root. Each check prints one line; the first failure stops the script with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
SANDBOX_TOOL=${SYSTEMD_SANDBOX:-$TOP/../shared/tools/systemd-sandbox}
[[ -x $SANDBOX_TOOL ]] || SANDBOX_TOOL=/work/shared/tools/systemd-sandbox
UNIT=systemd/kube-cert-agent.service
T=${CARGO_TARGET_DIR:-$TOP/target}
DEB=$(ls "$T"/debian/kube-cert-agent_*.deb | tail -n1)
RPM=$(ls "$T"/rpm/RPMS/*/kube-cert-agent-*.rpm | tail -n1)
WORK=$(mktemp -d /tmp/kca-package-test.XXXXXX)
export SANDBOX_DIR=$WORK/sandbox
sandbox_started=""
cleanup() {
  if [[ -n $sandbox_started ]]; then "$SANDBOX_TOOL" stop || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; exit 1; }

# ---- the unit ---------------------------------------------------------------------------
# security: exposure 2.5 or lower (threshold 25 = 2.5; exit status non-zero above it).
out=$(systemd-analyze security --offline=true --threshold=25 "$UNIT" 2>&1) ||
  fail "systemd-analyze security above 2.5: $(tail -n1 <<<"$out")"
pass "unit_security_exposure: $(tail -n1 <<<"$out" | sed 's/.*level for //')"

# verify, on the host: the staged copy with ExecStart pointing at the staged binary (verify
# wants it to exist) and the staged man page on MANPATH (verify runs man for
# Documentation=man:). Any output at all is a failure (verify exits 0 on warnings).
mkdir -p "$WORK/verify"
sed "s|/usr/bin/kube-cert-agent|$TOP/target/pkgroot/deb/usr/bin/kube-cert-agent|" \
  target/pkgroot/deb/lib/systemd/system/kube-cert-agent.service > "$WORK/verify/kube-cert-agent.service"
out=$(MANPATH=$TOP/target/pkgroot/deb/usr/share/man: systemd-analyze verify "$WORK/verify/kube-cert-agent.service" 2>&1) ||
  fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify printed: $out"
pass "unit_verify_host: systemd-analyze verify printed nothing"

# ---- lintian ------------------------------------------------------------------------------
# Zero errors; warnings only those listed with their reason in packaging/README.md.
LINTIAN_ALLOWED='initial-upload-closes-no-bugs'
out=$(lintian --pedantic "$DEB" 2>&1 | grep -v '^running with root privileges' || true)
if grep -q '^E:' <<<"$out"; then fail "lintian errors:"$'\n'"$out"; fi
bad=$(grep '^W:' <<<"$out" | grep -Ev ": ($LINTIAN_ALLOWED)( |$)" || true)
[[ -z $bad ]] || fail "lintian warnings not listed in packaging/README.md:"$'\n'"$bad"
pass "deb_lintian: 0 errors; warnings: $(grep -c '^W:' <<<"$out" || true) (listed)"

# ---- rpmlint ------------------------------------------------------------------------------
RPMLINT_ALLOWED='no-manual-page-for-binary'
out=$(rpmlint -c packaging/rpm/rpmlint.toml "$RPM" 2>&1 || true)
grep -q ' 0 errors' <<<"$out" || fail "rpmlint errors:"$'\n'"$out"
bad=$(grep ': W: ' <<<"$out" | grep -Ev ": W: ($RPMLINT_ALLOWED)( |$)" || true)
[[ -z $bad ]] || fail "rpmlint warnings not listed in packaging/README.md:"$'\n'"$bad"
pass "rpm_rpmlint: 0 errors; warnings: $(grep -c ': W: ' <<<"$out" || true) (listed)"

# ---- rpm: contents, scripts, scratch-root install -----------------------------------------
expected_rpm_files=(
  /usr/bin/kube-cert-agent
  /usr/lib/systemd/system/kube-cert-agent.service
  /etc/kube-cert-agent/config.yaml
  /etc/kube-cert-agent/revocations.d
  /usr/share/kube-cert-agent/crds/renewrevocations.certificates.microsoft.com.yaml
  /usr/share/kube-cert-agent/crds/carotations.kube-cert-agent.io.yaml
  /usr/share/kube-cert-agent/monitoring/kube-cert-agent.rules.yaml
  /usr/share/kube-cert-agent/monitoring/prometheusrule.yaml
  /usr/share/kube-cert-agent/monitoring/grafana-dashboard.json
  /usr/share/man/man8/kube-cert-agent.8.gz
  /usr/share/bash-completion/completions/kube-cert-agent
  /usr/share/zsh/site-functions/_kube-cert-agent
  /usr/share/fish/vendor_completions.d/kube-cert-agent.fish
  /usr/share/doc/kube-cert-agent/copyright
)
list=$(rpm -qpl "$RPM")
for f in "${expected_rpm_files[@]}"; do
  grep -qx -- "$f" <<<"$list" || fail "rpm -qpl: $f missing"
done
grep -q '^/usr/share/licenses/kube-cert-agent[^/]*/LICENSE$' <<<"$list" || fail "rpm -qpl: LICENSE missing"
[[ $(rpm -qpc "$RPM") == *"/etc/kube-cert-agent/config.yaml"* ]] || fail "rpm: config.yaml is not %config"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -q '^cn /etc/kube-cert-agent/config.yaml$' ||
  fail "rpm: config.yaml is not %config(noreplace)"
pass "rpm_files: rpm -qpl lists the ${#expected_rpm_files[@]} expected paths + LICENSE; config.yaml is %config(noreplace)"
scripts=$(rpm -qp --scripts "$RPM")
for want in 'postinstall scriptlet' 'systemctl --no-reload enable kube-cert-agent.service' \
  'preuninstall scriptlet' 'systemctl --no-reload disable --now kube-cert-agent.service' \
  'postuninstall scriptlet' 'systemctl daemon-reload' '[ -d /run/systemd/system ]'; do
  grep -qF -- "$want" <<<"$scripts" || fail "rpm -qp --scripts: no '$want'"
done
grep -qP 'systemctl.*(?<![-\w])start\b|enable --now' <<<"$scripts" && fail "rpm scripts start the service (they must only enable it)"
pass "rpm_scripts: enable (no start) in %post, disable --now in %preun, daemon-reload guarded"
# The scriptlets where neither systemd nor systemctl exists (a container image build): they
# must succeed and do nothing. PATH is an empty directory, so nothing on this host is run.
mkdir -p "$WORK/nobin"
for s in POSTIN PREUN POSTUN; do
  body=$(rpm -qp --qf "%{$s}" "$RPM")
  for arg in 0 1 2; do
    PATH=$WORK/nobin /bin/sh -ec "$body" sh "$arg" >/dev/null 2>&1 ||
      fail "rpm $s scriptlet (arg $arg) fails without systemd/systemctl"
  done
done
ROOT=$WORK/rpmroot
mkdir -p "$ROOT"
rpm --root "$ROOT" --initdb
rpm --root "$ROOT" -i --nodeps --noscripts "$RPM" 2>"$WORK/rpm-i.log" || fail "rpm --root -i: $(cat "$WORK/rpm-i.log")"
rpm --root "$ROOT" -q kube-cert-agent >/dev/null || fail "rpm --root: not registered"
[[ $(stat -c %a "$ROOT/usr/bin/kube-cert-agent") == 755 ]] || fail "rpm --root: binary mode"
[[ $(stat -c %a "$ROOT/etc/kube-cert-agent/config.yaml") == 644 ]] || fail "rpm --root: config mode"
"$ROOT/usr/bin/kube-cert-agent" version | grep -q '^kube-cert-agent ' || fail "rpm --root: binary does not run"
pass "rpm_scratch_root: rpm --root --initdb + -i --nodeps --noscripts; files in place, binary runs"
# The alerts and the dashboard as installed: promtool takes the rules (a missing promtool
# fails here too), the PrometheusRule's groups are the same, the dashboard is JSON.
MON=$ROOT/usr/share/kube-cert-agent/monitoring
out=$(promtool check rules "$MON/kube-cert-agent.rules.yaml" 2>&1) ||
  fail "promtool check rules (installed): $out"
python3 - "$MON" <<'PY' || fail "installed monitoring files malformed"
import json, sys, yaml
d = sys.argv[1]
rules = yaml.safe_load(open(f"{d}/kube-cert-agent.rules.yaml"))
pr = yaml.safe_load(open(f"{d}/prometheusrule.yaml"))
assert pr["kind"] == "PrometheusRule" and pr["spec"]["groups"] == rules["groups"]
assert json.load(open(f"{d}/grafana-dashboard.json"))["panels"]
PY
pass "rpm_monitoring: rules (promtool check rules), PrometheusRule and Grafana dashboard in /usr/share/kube-cert-agent/monitoring"

# ---- deb contents -------------------------------------------------------------------------
# path mode, as installed (checked again after dpkg -i in the sandbox).
expected_deb=(
  "/usr/bin/kube-cert-agent 755"
  "/lib/systemd/system/kube-cert-agent.service 644"
  "/etc/kube-cert-agent/config.yaml 644"
  "/etc/kube-cert-agent/revocations.d 755"
  "/etc/kube-cert-agent/revocations.d/README 644"
  "/usr/share/kube-cert-agent/crds/renewrevocations.certificates.microsoft.com.yaml 644"
  "/usr/share/kube-cert-agent/crds/carotations.kube-cert-agent.io.yaml 644"
  "/usr/share/kube-cert-agent/monitoring/kube-cert-agent.rules.yaml 644"
  "/usr/share/kube-cert-agent/monitoring/prometheusrule.yaml 644"
  "/usr/share/kube-cert-agent/monitoring/grafana-dashboard.json 644"
  "/usr/share/man/man8/kube-cert-agent.8.gz 644"
  "/usr/share/bash-completion/completions/kube-cert-agent 644"
  "/usr/share/zsh/vendor-completions/_kube-cert-agent 644"
  "/usr/share/fish/vendor_completions.d/kube-cert-agent.fish 644"
  "/usr/share/doc/kube-cert-agent/copyright 644"
  "/usr/share/doc/kube-cert-agent/changelog.Debian.gz 644"
)
debfiles=$(dpkg-deb -c "$DEB")
for f in kube-cert-agent.rules.yaml prometheusrule.yaml grafana-dashboard.json; do
  grep -q " \./usr/share/kube-cert-agent/monitoring/$f\$" <<<"$debfiles" || fail "deb: monitoring/$f missing"
done
pass "deb_monitoring: the rules, PrometheusRule and dashboard in /usr/share/kube-cert-agent/monitoring"
dpkg-deb -f "$DEB" Depends | grep -q libc6 || fail "deb: no libc6 dependency"
[[ $(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles) == *"/etc/kube-cert-agent/config.yaml"* ]] ||
  fail "deb: config.yaml is not a conffile"
pass "deb_control: Depends on libc6; config.yaml is a conffile"

# The CRD is YAML for apiextensions.k8s.io/v1 with the expected names.
python3 - etc/crds/renewrevocations.certificates.microsoft.com.yaml <<'PY' || fail "CRD malformed"
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
d = docs[0]
# Read access for nodes (revocation.cluster: true lists with the node's certificate).
role = next(x for x in docs if x["kind"] == "ClusterRole")
assert role["rules"][0]["resources"] == ["renewrevocations"] and "list" in role["rules"][0]["verbs"]
binding = next(x for x in docs if x["kind"] == "RoleBinding")
assert binding["metadata"]["namespace"] == "kube-system" and binding["subjects"][0]["name"] == "system:nodes"
# Nodes record Events about themselves (create, and patch for the count of a repeated one).
ev = next(x for x in docs if x["kind"] == "ClusterRole" and x["metadata"]["name"] == "kube-cert-agent:node-events")
assert ev["rules"][0]["resources"] == ["events"] and set(ev["rules"][0]["verbs"]) == {"create", "patch"}
evb = next(x for x in docs if x["kind"] == "ClusterRoleBinding")
assert evb["roleRef"]["name"] == "kube-cert-agent:node-events" and evb["subjects"][0]["name"] == "system:nodes"
assert d["apiVersion"] == "apiextensions.k8s.io/v1" and d["kind"] == "CustomResourceDefinition"
assert d["metadata"]["name"] == "renewrevocations.certificates.microsoft.com"
s = d["spec"]; assert s["scope"] == "Namespaced" and s["names"]["kind"] == "RenewRevocation"
v = s["versions"][0]; assert v["name"] == "v1"
spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
assert "description" in spec
item = spec["revocations"]["items"]["properties"]
assert set(item) == {"kind", "serialNumber", "group", "dns", "ip", "notBefore", "description"}, set(item)
# The seed's example entries (src/revocation/parse.rs) match the patterns (RE2 and
# Python agree on these).
import re
for k in ["serialnumber", "Group", "DNS", "IP", "serialNumber"]:
    assert re.fullmatch(item["kind"]["pattern"].strip("^$"), k), k
assert re.fullmatch(item["serialNumber"]["pattern"], "77fdf4b1033b387aaace6ce1c18710c2")
PY
pass "crd_schema: renewrevocations.certificates.microsoft.com, RenewRevocation v1, the six entry fields and the seed's per-entry description, read access for system:nodes"

# ---- the .deb in real systemd -------------------------------------------------------------
if [[ $(id -u) != 0 ]] || [[ ! -d /sys/fs/cgroup/unified ]]; then
  fail "deb_in_systemd: needs root and systemd-sandbox (CI provides both)"
fi
"$SANDBOX_TOOL" start >/dev/null
sandbox_started=1
sb() { "$SANDBOX_TOOL" run "$@"; }
cp "$DEB" "$SANDBOX_DIR/exchange/kube-cert-agent.deb"

sb dpkg -i /exchange/kube-cert-agent.deb >"$WORK/dpkg-i.log" 2>&1 || fail "dpkg -i: $(cat "$WORK/dpkg-i.log")"
# PACKAGE_TEST_AGENT=/path/to/kube-cert-agent: try the packaged unit with another build of
# the agent (e.g. a branch not merged yet), copied over /usr/bin/kube-cert-agent.
if [[ -n ${PACKAGE_TEST_AGENT:-} ]]; then
  cp "$PACKAGE_TEST_AGENT" "$SANDBOX_DIR/exchange/agent"
  sb install -m 0755 /exchange/agent /usr/bin/kube-cert-agent
  echo "note: /usr/bin/kube-cert-agent replaced by $PACKAGE_TEST_AGENT"
fi
for e in "${expected_deb[@]}"; do
  read -r path mode <<<"$e"
  got=$(sb stat -c '%a %U:%G' "$path" 2>/dev/null) || fail "dpkg -i: $path missing"
  [[ $got == "$mode root:root" ]] || fail "dpkg -i: $path is $got, want $mode root:root"
done
pass "deb_install_files: dpkg -i; ${#expected_deb[@]} paths with their modes, owned by root"
[[ $(sb systemctl is-enabled kube-cert-agent.service) == enabled ]] || fail "not enabled after dpkg -i"
st=$(sb systemctl is-active kube-cert-agent.service || true)
[[ $st == inactive ]] || fail "started by dpkg -i (state: $st); it must only be enabled"
pass "deb_enabled_not_started: enabled, inactive after dpkg -i"
out=$(sb systemd-analyze verify /lib/systemd/system/kube-cert-agent.service 2>&1) || fail "verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify (installed) printed: $out"
pass "unit_verify_installed: systemd-analyze verify of the installed unit printed nothing"
sb kube-cert-agent version | grep -qx "kube-cert-agent $(dpkg-deb -f "$DEB" Version | sed 's/-[^-]*$//')" ||
  fail "kube-cert-agent version"
sb kube-cert-agent check >/dev/null 2>&1 || fail "kube-cert-agent check (empty node, shipped config) failed: exit $?"
sb sh -c 'zcat /usr/share/man/man8/kube-cert-agent.8.gz | grep -q "^\.TH"' || fail "man page: not a gzipped roff page"
pass "deb_binary_runs: kube-cert-agent version, check (shipped config, node not joined: exit 0) and the man page"

# Rotation under the unit's own hardening: a drop-in turns the installed unit into a
# one-shot `rotate --all` on a node tree made with openssl. ProtectSystem=strict +
# ReadWritePaths must let it write /etc/kubernetes/pki, UMask=0077 must not leak into
# the certificate modes, and the system bus must stay reachable.
sb sh -ec '
  P=/etc/kubernetes/pki; mkdir -p $P
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $P/ca.key 2>/dev/null
  openssl req -x509 -new -key $P/ca.key -subj /CN=kubernetes -days 3650 -out $P/ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $P/apiserver.key 2>/dev/null
  openssl req -new -key $P/apiserver.key -subj /CN=kube-apiserver -out /tmp/kca.csr 2>/dev/null
  printf "subjectAltName=DNS:kubernetes\nextendedKeyUsage=serverAuth\n" > /tmp/kca.ext
  openssl x509 -req -in /tmp/kca.csr -CA $P/ca.crt -CAkey $P/ca.key -CAcreateserial -days 4 \
    -extfile /tmp/kca.ext -out $P/apiserver.crt 2>/dev/null
  chmod 600 $P/*.key
  cat > /etc/kube-cert-agent/package-test.yaml <<CFG
apiVersion: kube-cert-agent.io/v1alpha1
kind: AgentConfiguration
certificates:
- name: apiserver
  ca: {cert: /etc/kubernetes/pki/ca.crt, key: /etc/kubernetes/pki/ca.key}
  cert: /etc/kubernetes/pki/apiserver.crt
  key: /etc/kubernetes/pki/apiserver.key
CFG
  mkdir -p /run/systemd/system/kube-cert-agent.service.d
  cat > /run/systemd/system/kube-cert-agent.service.d/package-test.conf <<UNIT
[Service]
Type=oneshot
ExecStart=
ExecStart=/usr/bin/kube-cert-agent --config /etc/kube-cert-agent/package-test.yaml rotate --all
ExecStartPost=/usr/bin/busctl --system call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager GetUnit s kube-cert-agent.service
ExecReload=
WatchdogSec=0
Restart=no
UNIT
  systemctl daemon-reload'
serial_before=$(sb openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt)
sb systemctl start kube-cert-agent.service ||
  fail "hardened rotate --all failed: $(sb journalctl -u kube-cert-agent --no-pager -n 30)"
serial_after=$(sb openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt)
[[ $serial_before != "$serial_after" ]] || fail "hardened rotate --all: certificate not replaced"
sb openssl verify -CAfile /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/apiserver.crt >/dev/null ||
  fail "hardened rotate --all: new certificate does not verify"
crt=$(sb readlink -f /etc/kubernetes/pki/apiserver.crt)
key=$(sb readlink -f /etc/kubernetes/pki/apiserver.key)
[[ $(sb stat -c %a "$(dirname "$crt")") == 755 ]] || fail "versioned directory $(dirname "$crt") is not 0755 under UMask=0077"
[[ $(sb stat -c %a "$crt") == 644 ]] || fail "new certificate is not 0644 under UMask=0077"
[[ $(sb stat -c %a "$key") == 600 ]] || fail "new key is not 0600"
sb journalctl -u kube-cert-agent --no-pager | grep -q 'apiserver' || fail "journalctl -u shows no rotation"
pass "deb_hardened_rotation: rotate --all inside the unit's sandbox replaced /etc/kubernetes/pki/apiserver.crt (dir 0755, cert 0644, key 0600), D-Bus reachable, journal shows it"
sb rm -rf /run/systemd/system/kube-cert-agent.service.d
sb systemctl daemon-reload

# The daemon itself: start (Type=notify READY), reload (SIGHUP rotates), journal.
sb kube-cert-agent --help 2>/dev/null | grep -qE '^\s+run\b' || fail "the installed kube-cert-agent has no 'run' command"
{
  # A small config: the one certificate above (the shipped one has kubelet bootstrapping),
  # restarting a dummy unit after each rotation (over D-Bus, from inside the sandbox).
  sb sh -ec 'cp /etc/kube-cert-agent/config.yaml /exchange/config.yaml.orig
    { cat /etc/kube-cert-agent/package-test.yaml; echo "  onRotate: [{restart: kca-dummy.service}]"; } \
      > /etc/kube-cert-agent/config.yaml
    printf "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n" > /run/systemd/system/kca-dummy.service
    systemctl daemon-reload; systemctl start kca-dummy.service'
  sb systemctl start kube-cert-agent.service ||
    fail "systemctl start: $(sb journalctl -u kube-cert-agent --no-pager -n 30)"
  [[ $(sb systemctl is-active kube-cert-agent.service) == active ]] || fail "not active after start"
  pass "deb_daemon_start: systemctl start reached active (READY=1)"
  before=$(sb openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt)
  dummy0=$(sb systemctl show -p ActiveEnterTimestampMonotonic --value kca-dummy.service)
  sb systemctl reload kube-cert-agent.service || fail "systemctl reload failed"
  for _ in $(seq 100); do
    after=$(sb openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt)
    dummy1=$(sb systemctl show -p ActiveEnterTimestampMonotonic --value kca-dummy.service)
    [[ $after != "$before" && $dummy1 != "$dummy0" ]] && break
    sleep 0.1
  done
  [[ $after != "$before" ]] || fail "systemctl reload did not rotate apiserver.crt within 10 s"
  [[ $dummy1 != "$dummy0" ]] || fail "onRotate restart of kca-dummy.service (D-Bus) did not happen"
  sb journalctl -u kube-cert-agent --no-pager | grep -qi 'apiserver' || fail "journal shows no rotation"
  [[ $(sb systemctl is-active kube-cert-agent.service) == active ]] || fail "not active after reload"
  pass "deb_daemon_reload: systemctl reload rotated apiserver.crt, restarted kca-dummy.service over D-Bus; journalctl -u shows it"
  sb cp /exchange/config.yaml.orig /etc/kube-cert-agent/config.yaml
  sb mkdir -p /var/lib/kube-cert-agent   # (the daemon's state.json is there already)
}

# dpkg -r: stopped, disabled, binary and unit gone, conffile kept; --purge removes it.
sb mkdir -p /var/lib/kube-cert-agent
sb dpkg -r kube-cert-agent >"$WORK/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$WORK/dpkg-r.log")"
st=$(sb systemctl is-active kube-cert-agent.service || true)
[[ $st != active ]] || fail "still active after dpkg -r"
sb test ! -e /usr/bin/kube-cert-agent || fail "dpkg -r left the binary"
sb test ! -e /lib/systemd/system/kube-cert-agent.service || fail "dpkg -r left the unit"
sb test ! -e /etc/systemd/system/multi-user.target.wants/kube-cert-agent.service || fail "dpkg -r left it enabled"
sb test -f /etc/kube-cert-agent/config.yaml || fail "dpkg -r removed the conffile"
pass "deb_remove: dpkg -r stopped and disabled it, removed binary and unit, kept config.yaml"
sb dpkg --purge kube-cert-agent >"$WORK/dpkg-p.log" 2>&1 || fail "dpkg --purge: $(cat "$WORK/dpkg-p.log")"
sb test ! -e /etc/kube-cert-agent/config.yaml || fail "dpkg --purge left config.yaml"
sb test ! -e /var/lib/kube-cert-agent || fail "dpkg --purge left /var/lib/kube-cert-agent"
pass "deb_purge: dpkg --purge removed config.yaml and the state directory"
