# Tessera: the two commands are `make demo` and `make test`.
CARGO ?= cargo
LIMBO ?= ../shared/conformance/limbo.json.xz
# Tessera's own measured agreement (docs/conformance.md): 9740 / 9770 = 99.693%; losing one
# case (9739 / 9770 = 99.683%) fails.
LIMBO_MIN ?= 99.69
# 1: a test whose outside tool (openssl, xz, a tmpfs, the conformance file) is missing fails
# instead of skipping (`make test TESSERA_REQUIRE_TOOLS=0` skips, with a message).
TESSERA_REQUIRE_TOOLS ?= 1

.PHONY: all build demo demo-deps fleet test fmt-check clippy dependencies unit doc conformance bench fuzz fuzz-seeds deps pg-deps clean-demo

all: build

build:
	$(CARGO) build --bins

## demo: build, create a demo PKI in certs/demo, sign and verify a module, run mTLS echo with key rotation
demo: demo-deps build
	@bash scripts/demo.sh

## test: everything CI runs (rustfmt check, clippy -D warnings, unit + integration + doc tests)
test: deps pg-deps fmt-check clippy dependencies unit doc

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## dependencies: ring is the only crypto provider (no aws-lc), one generation of RustCrypto crates, and
## `default-features = false` builds the library without clap, anyhow, tracing-subscriber, indicatif,
## rpassword or terminal_size
dependencies:
	@if $(CARGO) tree -i aws-lc-rs >/dev/null 2>&1; then echo "aws-lc-rs is in the dependency tree"; exit 1; fi
	@dups=$$($(CARGO) tree --duplicates -e normal 2>/dev/null | grep -E '^(digest|pkcs8|pkcs5|der|spki|sha2|sha3|keccak|cshake|ed25519|ed25519-dalek|curve25519-dalek) v' || true); \
	  if [ -n "$$dups" ]; then echo "two generations of RustCrypto crates: $$dups"; exit 1; fi
	@cli=$$($(CARGO) tree --no-default-features -e normal --prefix none 2>/dev/null | grep -E '^(clap|clap_builder|anyhow|tracing-subscriber|indicatif|rpassword|terminal_size) v' | sort -u || true); \
	  if [ -n "$$cli" ]; then echo "the library without the cli feature depends on CLI crates: $$cli"; exit 1; fi
	$(CARGO) clippy --lib --no-default-features -- -D warnings
	@echo "dependencies: ring only, one generation of RustCrypto crates, the library builds without the cli feature (no clap)"

## unit: every test; a missing outside tool fails the test that needs it (TESSERA_REQUIRE_TOOLS)
unit:
	TESSERA_REQUIRE_TOOLS=$(TESSERA_REQUIRE_TOOLS) $(CARGO) test --workspace

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## conformance: the x509-limbo suite through tessera's pki verification path, and every case
## through `ca verify` too (its exit code must say what the library said)
conformance: deps
	$(CARGO) build --bin ca --example limbo
	$(CARGO) run --example limbo -- $(LIMBO) --min-agreement $(LIMBO_MIN) --cli

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (needs nightly: rustup toolchain install nightly)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= certificate crl csr verify bundle statement embedded pkcs8 framing jws
fuzz: deps fuzz-seeds
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    || { echo "fuzz: $$t found a crash: see fuzz/artifacts/$$t/; fix it and save the input in tests/fuzz_regressions/$$t/"; exit 1; }; \
	done

## fuzz-seeds: write the seed corpora (generated at run time) to fuzz/corpus/<target>/
fuzz-seeds:
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || { \
	  echo "make fuzz: the nightly toolchain is missing (cargo-fuzz needs it): rustup toolchain install nightly"; exit 1; }
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "installing cargo-fuzz"; $(CARGO) install cargo-fuzz; }
	TESSERA_FUZZ_SEEDS=$(CURDIR)/fuzz/corpus TESSERA_FUZZ_LIMBO=$(abspath $(LIMBO)) $(CARGO) test --test fuzz_regressions seeds

## fleet: HAProxy and three echo-servers sharing session tickets on loopback; one killed under load and restarted (scripts/fleet.sh)
fleet: deps build
	@bash scripts/fleet.sh

## bench: speed figures (never part of `make test`)
bench: deps pg-deps build
	@bash scripts/bench.sh

## demo-deps: the demo's one outside tool (openssl, the independent verifier it shows agreeing)
demo-deps:
	@command -v openssl >/dev/null 2>&1 || { echo "installing openssl"; apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

## deps: tools the tests need that a fresh machine may lack (the demo needs none of these)
deps: demo-deps
	@command -v xz >/dev/null 2>&1 || { echo "installing xz-utils"; apt-get update -qq && apt-get install -y -qq xz-utils >/dev/null; }
	@command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || { echo "installing haproxy"; apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
	@test -x /usr/sbin/nginx -a -f /usr/lib/nginx/modules/ngx_stream_module.so || { echo "installing nginx and its stream module (the fleet test behind nginx; nginx is not started as a service)"; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
	  apt-get update -qq && apt-get install -y -qq nginx libnginx-mod-stream >/dev/null; status=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$status; }
	@command -v faketime >/dev/null 2>&1 || { echo "installing faketime (a ca serve instance with a clock ahead of the database's)"; apt-get update -qq && apt-get install -y -qq faketime >/dev/null; }
	@missing=""; for t in lego certbot pebble; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	  if [ -n "$$missing" ]; then echo "installing$$missing (real ACME clients and the reference server for the ca serve tests)"; \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

## pg-deps: PostgreSQL 15 for the store tests and benchmark (each starts a private cluster; the
## demo needs none: its CAs keep their state in SQLite)
pg-deps:
	@test -x /usr/lib/postgresql/15/bin/initdb || { echo "installing postgresql (private clusters for the store tests)"; apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }

clean-demo:
	rm -rf certs/demo
