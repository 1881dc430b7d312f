#!/usr/bin/env bash
# `make bench`: every speed figure, each as a ratio against a baseline measured in the same run
# (the machines are shared and noisy). Sizes come from TESSERA_BENCH_* variables; see
# docs/PERFORMANCE.md. Nothing here runs in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v minisign >/dev/null 2>&1 || { echo "installing minisign (the verify baseline)"; apt-get update -qq && apt-get install -y -qq minisign >/dev/null; }
if [ -f benches/sign.rs ]; then
  echo "== sign/verify: verify throughput vs openssl dgst -sha3-256 and minisign -V"
  cargo bench --bench sign
fi
echo "== ca store: issuance with an empty vs a large store, list, CRL, 1 vs 4 processes (SQLite, PostgreSQL)"
cargo bench --bench store
echo "== channel: echo throughput, rotation cost, handshakes, memory"
bash scripts/bench-channel.sh
echo "== ca serve: ACME orders per second (SQLite, PostgreSQL, beside Pebble), OCSP responses per second (beside openssl ocsp)"
cargo bench --bench acme
