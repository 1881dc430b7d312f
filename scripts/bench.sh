#!/usr/bin/env bash
# `make bench`: every speed figure, each as a ratio against a baseline measured in the same run
# (the machines are shared and noisy: CPU time where it can be, never a figure from another
# run). Sizes come from TESSERA_BENCH_* variables; see docs/PERFORMANCE.md. Each benchmark writes
# its figures to target/bench/NAME.json; the last step prints every ratio as one table. Nothing
# here runs in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
need() { # need COMMAND PACKAGE WHY
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 ($3)"
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
need minisign minisign "the verify baseline"
need openssl openssl "the dgst, s_time and s_server baselines"
need valgrind valgrind "instruction counts per handshake"
need python3 python3 "the summary table"
rm -f target/bench/*.json
if [ -f benches/sign.rs ]; then
  echo "== sign/verify: verify throughput vs openssl dgst -sha3-256 and minisign -V"
  cargo bench --bench sign
fi
echo "== ca store: issuance with an empty vs a large store, list, CRL, 1 vs 4 processes (SQLite, PostgreSQL)"
cargo bench --bench store
echo "== channel: throughput, handshakes (server CPU), revocation, rotation (CPU per GiB), memory, callgrind"
bash scripts/bench-channel.sh
bash scripts/fleet-bench.sh  # fleet behind HAProxy: full vs resumed handshakes, throughput via HAProxy vs direct, 1-3 server capacity
echo "== ca serve: ACME orders per second (SQLite, PostgreSQL, beside Pebble), OCSP responses per second (beside openssl ocsp)"
cargo bench --bench acme
echo
echo "== summary: every same-run ratio (target/bench/*.json)"
python3 - <<'PY'
import glob, json
rows = []
for path in sorted(glob.glob("target/bench/*.json")):
    with open(path) as f:
        run = json.load(f)
    for name, figure in run["figures"].items():
        if name.startswith("ratio."):
            load = " ".join(run.get("load_average", "").split()[:3])
            rows.append((run["bench"], name[len("ratio."):], figure["value"], load))
width = max((len(r[1]) for r in rows), default=10)
print(f"{'bench':<8} {'ratio (same run)':<{width}} {'value':>8}  load average (1, 5, 15 min) at the end")
for bench, name, value, load in rows:
    print(f"{bench:<8} {name:<{width}} {value:8.3f}  {load}")
PY
