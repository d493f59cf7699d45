# kube-cert-agent: the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: all build release test test-deps lint demo bench clean \
	install man completions deb rpm package-test

# Install layout (STYLE.md item 12). `make install DESTDIR=/tmp/root PREFIX=/usr`.
PREFIX ?= /usr
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/kube-cert-agent
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
INSTALL ?= install
INSTALL_PROGRAM ?= $(INSTALL) -m 0755
# Packages strip the staged binary (Debian policy; rpm builds no debuginfo from it).
STRIP_BIN = strip --strip-unneeded --remove-section=.comment --remove-section=.note
# cargo's target directory: the release binary, generated files, package output.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
GEN := $(TARGET_DIR)/gen
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# The staged trees both packages are built from.
# (Under this checkout's target/ even with CARGO_TARGET_DIR: cargo-deb takes asset paths
# relative to the package.)
DEB_STAGE := $(CURDIR)/target/pkgroot/deb
RPM_STAGE := $(CURDIR)/target/pkgroot/rpm

all: build

build:
	$(CARGO) build --release

release: build

# Everything the tests use, installed if missing (CI starts from a fresh machine).
test-deps:
	scripts/install-test-deps.sh

# fmt and clippy first: they fail in seconds, the suite takes minutes.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features failpoints -- -D warnings

test: test-deps lint
	$(CARGO) test --workspace --lib --bins --tests
	# Crash windows: the store's failpoints between write, fsync, swap and prune.
	$(CARGO) test --features failpoints --test store_failpoints
	# CA rotation: a crash before every file a phase writes, then resumed.
	$(CARGO) test --features failpoints --test rotate_ca_crash
	# The daemon's stalled-loop failpoint, killed by systemd's watchdog (systemd-sandbox).
	$(CARGO) test --features failpoints --test daemon_systemd watchdog
	# The .deb and .rpm: built, linted, installed (the .deb in real systemd).
	$(MAKE) package-test

demo:
	scripts/demo.sh

# Benchmarks print figures (whole process and in-process) as ratios to peers measured in the
# same run (openssl, python3-cryptography scripts); they never fail on time.
bench:
	$(CARGO) bench --bench bootstrap
	$(CARGO) bench --bench rotation
	$(CARGO) bench --bench check_inventory
	$(CARGO) bench --bench daemon_idle
	$(CARGO) bench --bench fleet
	$(CARGO) bench --bench approver
	$(CARGO) bench --bench broken_hour
	$(CARGO) bench --bench metrics_scrape

clean:
	$(CARGO) clean
	rm -rf demo-node

# The man page and completions, generated from the clap definition by the xtask workspace
# member (so the product binary does not depend on clap_mangen / clap_complete).
man:
	$(CARGO) run --quiet -p xtask -- man $(GEN)/man
	gzip -9n -c $(GEN)/man/kube-cert-agent.8 > $(GEN)/man/kube-cert-agent.8.gz

completions:
	$(CARGO) run --quiet -p xtask -- completions $(GEN)/completions

install: build man completions
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/kube-cert-agent/revocations.d \
		$(DESTDIR)$(DATADIR)/kube-cert-agent/crds $(DESTDIR)$(DATADIR)/kube-cert-agent/monitoring \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(INSTALL_PROGRAM) $(TARGET_DIR)/release/kube-cert-agent $(DESTDIR)$(BINDIR)/kube-cert-agent
	sed 's|/usr/bin/kube-cert-agent|$(BINDIR)/kube-cert-agent|' systemd/kube-cert-agent.service \
		> $(DESTDIR)$(UNITDIR)/kube-cert-agent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kube-cert-agent.service
	$(INSTALL) -m 0644 etc/kube-cert-agent/config.yaml $(DESTDIR)$(SYSCONFDIR)/kube-cert-agent/config.yaml
	$(INSTALL) -m 0644 etc/kube-cert-agent/revocations.d/README \
		$(DESTDIR)$(SYSCONFDIR)/kube-cert-agent/revocations.d/README
	$(INSTALL) -m 0644 etc/crds/renewrevocations.certificates.microsoft.com.yaml \
		etc/crds/carotations.kube-cert-agent.io.yaml \
		$(DESTDIR)$(DATADIR)/kube-cert-agent/crds/
	# Alerts and dashboard for the metrics (README: Metrics, events and alerts).
	$(INSTALL) -m 0644 deploy/monitoring/kube-cert-agent.rules.yaml \
		deploy/monitoring/prometheusrule.yaml deploy/monitoring/grafana-dashboard.json \
		$(DESTDIR)$(DATADIR)/kube-cert-agent/monitoring/
	$(INSTALL) -m 0644 $(GEN)/man/kube-cert-agent.8.gz $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 packaging/copyright $(DESTDIR)$(DOCDIR)/copyright
	$(INSTALL) -m 0644 $(GEN)/completions/kube-cert-agent.bash $(DESTDIR)$(BASHCOMPDIR)/kube-cert-agent
	$(INSTALL) -m 0644 $(GEN)/completions/_kube-cert-agent $(DESTDIR)$(ZSHCOMPDIR)/_kube-cert-agent
	$(INSTALL) -m 0644 $(GEN)/completions/kube-cert-agent.fish $(DESTDIR)$(FISHCOMPDIR)/kube-cert-agent.fish

# .deb: cargo-deb ([package.metadata.deb] in Cargo.toml) over the staged tree; Debian 12
# keeps units in /lib/systemd/system. Output: target/debian/kube-cert-agent_*.deb
deb:
	@$(CARGO) deb --version >/dev/null 2>&1 || { echo "make deb: needs cargo-deb (cargo install cargo-deb --locked)" >&2; exit 1; }
	rm -rf $(DEB_STAGE)
	$(MAKE) install DESTDIR=$(DEB_STAGE) PREFIX=/usr UNITDIR=/lib/systemd/system
	$(STRIP_BIN) $(DEB_STAGE)/usr/bin/kube-cert-agent
	$(CARGO) deb -p kube-cert-agent --no-build --no-strip

# .rpm: packaging/rpm/kube-cert-agent.spec, rpmbuild -bb over the staged tree.
# Output: target/rpm/RPMS/<arch>/kube-cert-agent-*.rpm
rpm:
	@command -v rpmbuild >/dev/null || { echo "make rpm: needs rpmbuild (apt-get install rpm)" >&2; exit 1; }
	rm -rf $(RPM_STAGE) $(TARGET_DIR)/rpm
	$(MAKE) install DESTDIR=$(RPM_STAGE) PREFIX=/usr UNITDIR=/usr/lib/systemd/system \
		ZSHCOMPDIR=/usr/share/zsh/site-functions
	$(STRIP_BIN) $(RPM_STAGE)/usr/bin/kube-cert-agent
	$(INSTALL) -m 0644 LICENSE $(RPM_STAGE)/usr/share/doc/kube-cert-agent/LICENSE
	rpmbuild -bb --quiet --define '_topdir $(TARGET_DIR)/rpm' --define 'stage $(RPM_STAGE)' \
		--define 'pkgversion $(VERSION)' packaging/rpm/kube-cert-agent.spec

# Lint, inspect and install both packages (real systemd for the .deb: systemd-sandbox).
package-test: deb rpm
	scripts/package-test.sh
