# kube-cert-agent: the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: all build release test test-deps lint demo bench clean

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
	# The daemon's stalled-loop failpoint, killed by systemd's watchdog (systemd-sandbox).
	$(CARGO) test --features failpoints --test daemon_systemd watchdog

demo:
	scripts/demo.sh

# Benchmarks print figures and ratios against openssl; they never fail on time.
bench:
	$(CARGO) bench --bench bootstrap
	$(CARGO) bench --bench rotation
	$(CARGO) bench --bench check_inventory
	$(CARGO) bench --bench daemon_idle

clean:
	$(CARGO) clean
	rm -rf demo-node
