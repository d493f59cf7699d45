#!/bin/bash
# Install what the test suite uses, only where missing. Debian packages via apt-get.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v setpriv >/dev/null || need+=(util-linux)
# The daemon's systemd tests: systemd as PID 1 in systemd-sandbox, and a system bus for D-Bus.
[[ -x /lib/systemd/systemd ]] || need+=(systemd)
command -v dbus-daemon >/dev/null || need+=(dbus)
# make package-test: lintian (~80 s together with rpm and rpmlint on a fresh machine),
# rpmbuild/rpm (Debian's rpm package), rpmlint; PyYAML for the CRD check.
command -v lintian >/dev/null || need+=(lintian)
command -v rpmbuild >/dev/null || need+=(rpm)
command -v rpmlint >/dev/null || need+=(rpmlint)
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
# make bench: the python peers of `check` (benches/check_peers.py) use Debian's python3-cryptography.
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || need+=(python3-cryptography)
# tests/clock.rs: a clock years ahead, then stepped back (libfaketime).
command -v faketime >/dev/null || need+=(faketime)
# The CRD's schema validated against the seed's RenewRevocation (tests/seed_revocation.rs).
python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
# tests/metrics.rs: promtool (check metrics, check rules) and a real Prometheus server.
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || need+=(prometheus)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || { echo "install-test-deps: need root to install: ${need[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# kubectl is baked into this machine image (apt's kubernetes-client is too old).
command -v kubectl >/dev/null || echo "install-test-deps: note: kubectl not found; the kubectl tests will fail" >&2
command -v cargo >/dev/null || { echo "install-test-deps: cargo is required" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt 2>/dev/null || true
# make deb: cargo-deb (3 to 9 min to build on 2 cores; only when missing).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "install-test-deps: cargo install cargo-deb --locked (3 to 9 min on 2 cores)" >&2
  cargo install cargo-deb --locked --quiet
fi
