#!/usr/bin/env bash
# The fleet benchmark (issue 11, called by scripts/bench.sh; not a test). On 127.0.0.1, with
# HAProxy in `mode tcp` in front (PEERS.md shape, send-proxy-v2 to the fleet), in one run:
#   1. full vs resumed handshakes through HAProxy to three echo-servers sharing --ticket-keys:
#      handshakes per second and the servers' CPU per handshake (echo-client --bench, one
#      byte per connection; --retry 1 makes the client resume with the tickets it got);
#   2. echo throughput through HAProxy vs direct, to the same echo-server;
#   3. capacity-bound scaling over 1, 2 and 3 servers: each server holds at most K sessions
#      (HAProxy `maxconn K` queues the rest; echo-server --max-conns 2K as a backstop: a server
#      may still count a session HAProxy has already released), each
#      session waits D ms before its echo (hidden --bench-echo-delay-ms), so the ideal rate is
#      servers x K / D: connections per second, with the CPU used beside each point.
# Ratios are against the baseline measured in the same run. Prints a table and writes
# target/bench/fleet.json. Distribution and failover figures come from `make fleet`. Every
# process it starts is stopped by its PID; about a minute with the default sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}
ES="$BIN/echo-server"
EC="$BIN/echo-client"
CA="$BIN/ca"
HANDSHAKES=${FLEET_BENCH_HANDSHAKES:-600}   # connections per handshake round
ROUNDS=${FLEET_BENCH_ROUNDS:-3}
BYTES=${FLEET_BENCH_BYTES:-268435456}      # echoed per throughput run (256 MiB)
K=${FLEET_BENCH_SLOTS:-4}                  # sessions per server in the capacity runs
DELAY=${FLEET_BENCH_DELAY_MS:-100}         # service delay per session, ms
CAP_SECONDS=${FLEET_BENCH_CAP_SECONDS:-3}  # length of each capacity point at the ideal rate
OUT=${FLEET_BENCH_OUT:-target/bench/fleet.json}

if [ ! -x "$ES" ] || [ ! -x "$EC" ] || [ ! -x "$CA" ]; then
  echo "fleet-bench: building release binaries"
  cargo build --release --bin echo-server --bin echo-client --bin ca
fi
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || { echo "fleet-bench: haproxy is missing (make deps)" >&2; exit 3; }

D=$(mktemp -d)
chmod 700 "$D"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() {
  for _ in $(seq 200); do
    if grep -q '^listening on' "$1" 2>/dev/null; then sed -n 's/^listening on //p' "$1"; return; fi
    sleep 0.05
  done
  echo "fleet-bench: a server did not start: $(cat "${1%.out}.log")" >&2; exit 3
}
cpu_ticks() { local t=0; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

"$CA" init --dir "$D/ca" --name "Fleet Bench Root" --no-passphrase >/dev/null
"$CA" issue --dir "$D/ca" --profile server --name localhost --san 127.0.0.1 --out "$D/server" >/dev/null
"$CA" issue --dir "$D/ca" --profile client --name client.bench --out "$D/client" >/dev/null
"$CA" crl --dir "$D/ca" >/dev/null
"$ES" --new-ticket-key "$D/tickets.keys" >/dev/null
SERVER_ARGS=(--cert "$D/server.chain.pem" --key "$D/server.key" --client-ca "$D/ca/ca.pem" --crl "$D/ca/crl.pem"
  --ticket-keys "$D/tickets.keys" --quiet)
declare -A PID ADDR
start() { # name, extra arguments
  "$ES" --listen 127.0.0.1:0 "${SERVER_ARGS[@]}" "${@:2}" >"$D/$1.out" 2>"$D/$1.log" &
  PID[$1]=$!
  PIDS+=("$!")
  ADDR[$1]=$(listening "$D/$1.out")
}
for b in b1 b2 b3; do start "$b" --proxy-protocol; done
start d
for c in c1 c2 c3; do start "$c" --proxy-protocol --max-conns $((2 * K)) --bench-echo-delay-ms "$DELAY"; done
FLEET=127.0.0.1:$(free_port) SINGLE=127.0.0.1:$(free_port)
CAP1=127.0.0.1:$(free_port) CAP2=127.0.0.1:$(free_port) CAP3=127.0.0.1:$(free_port)
{
  cat <<EOF
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout queue 60s
frontend fleet
  bind $FLEET
  default_backend fleet
backend fleet
  balance leastconn
  server b1 ${ADDR[b1]} send-proxy-v2
  server b2 ${ADDR[b2]} send-proxy-v2
  server b3 ${ADDR[b3]} send-proxy-v2
frontend single
  bind $SINGLE
  default_backend single
backend single
  server d ${ADDR[d]}
EOF
  for n in 1 2 3; do
    front=CAP$n
    echo "frontend cap$n"
    echo "  bind ${!front}"
    echo "  default_backend cap$n"
    echo "backend cap$n"
    echo "  balance leastconn"
    for i in $(seq "$n"); do echo "  server c$i ${ADDR[c$i]} send-proxy-v2 maxconn $K"; done
  done
} >"$D/haproxy.cfg"
"$HAPROXY" -c -f "$D/haproxy.cfg" >/dev/null
"$HAPROXY" -f "$D/haproxy.cfg" -db >"$D/haproxy.out" 2>&1 &
HAP=$!
PIDS+=("$HAP")
sleep 0.3
client() { "$EC" --connect "$1" --server-name localhost --ca "$D/ca/ca.pem" --cert "$D/client.chain.pem" --key "$D/client.key" "${@:2}"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$D/results"
: >"$RESULTS"

echo "== 1. handshakes through HAProxy (3 servers), full vs resumed: $ROUNDS rounds of $HANDSHAKES connections"
for r in $(seq "$ROUNDS"); do
  for kind in full resumed; do
    extra=()
    [ "$kind" = resumed ] && extra=(--retry 1)
    t0=$(cpu_ticks "${PID[b1]}" "${PID[b2]}" "${PID[b3]}")
    h0=$(cpu_ticks "$HAP")
    client "$FLEET" --bench --bytes "$HANDSHAKES" --conns "$HANDSHAKES" --concurrency 4 "${extra[@]}" --json >"$D/hs.json"
    t1=$(cpu_ticks "${PID[b1]}" "${PID[b2]}" "${PID[b3]}")
    h1=$(cpu_ticks "$HAP")
    echo "handshake $kind $r $(field "$D/hs.json" handshakes_per_second) $((t1 - t0)) $((h1 - h0)) $(field "$D/hs.json" resumed)" >>"$RESULTS"
  done
done

echo "== 2. echo throughput, $BYTES bytes over 2 connections: direct vs through HAProxy (same server)"
for r in $(seq "$ROUNDS"); do
  for via in direct haproxy; do
    target=${ADDR[d]}
    [ "$via" = haproxy ] && target=$SINGLE
    t0=$(cpu_ticks "${PID[d]}")
    client "$target" --bench --bytes "$BYTES" --conns 2 --json >"$D/tp.json"
    t1=$(cpu_ticks "${PID[d]}")
    echo "throughput $via $r $(field "$D/tp.json" mib_per_second) $((t1 - t0)) 0 0" >>"$RESULTS"
  done
done

echo "== 3. capacity-bound scaling: $K sessions per server, $DELAY ms per session, resumed handshakes"
for n in 1 2 3; do
  front=CAP$n
  conns=$((CAP_SECONDS * n * K * 1000 / DELAY))
  pids=()
  for i in $(seq "$n"); do pids+=("${PID[c$i]}"); done
  t0=$(cpu_ticks "${pids[@]}")
  h0=$(cpu_ticks "$HAP")
  client "${!front}" --bench --bytes "$conns" --conns "$conns" --concurrency $((2 * n * K)) --retry 1 --json >"$D/cap.json"
  t1=$(cpu_ticks "${pids[@]}")
  h1=$(cpu_ticks "$HAP")
  echo "capacity $n 1 $(field "$D/cap.json" handshakes_per_second) $((t1 - t0)) $((h1 - h0)) $conns" >>"$RESULTS"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$OUT")"
python3 - "$RESULTS" "$OUT" "$HZ" "$HANDSHAKES" "$K" "$DELAY" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" <<'EOF'
import json, statistics, sys
results, out, hz, n, k, delay, load_before, load_after, cpus = sys.argv[1:]
hz, n, k, delay = int(hz), int(n), int(k), int(delay)
rows = [line.split() for line in open(results)]
med = statistics.median
def ms(ticks, count): return ticks / hz * 1e3 / count
hs = {kind: [r for r in rows if r[0] == "handshake" and r[1] == kind] for kind in ("full", "resumed")}
full_rate = med(float(r[3]) for r in hs["full"])
res_rate = med(float(r[3]) for r in hs["resumed"])
full_cpu = med(ms(int(r[4]), n) for r in hs["full"])
# A resumed round's first connection (and any that found no ticket) is a full handshake.
res_cpu = med((ms(int(r[4]), 1) - (n - int(r[6])) * full_cpu) / max(int(r[6]), 1) for r in hs["resumed"])
hap_full = med(ms(int(r[5]), n) for r in hs["full"])
hap_res = med(ms(int(r[5]), n) for r in hs["resumed"])
tp = {via: med(float(r[3]) for r in rows if r[0] == "throughput" and r[1] == via) for via in ("direct", "haproxy")}
cap = [r for r in rows if r[0] == "capacity"]
base = float(cap[0][3])
report = {
    "machine": {"cpus": int(cpus), "load_before": load_before, "load_after": load_after},
    "handshakes": {
        "connections_per_round": n, "rounds": len(hs["full"]),
        "full": {"per_second": full_rate, "server_cpu_ms": full_cpu, "haproxy_cpu_ms": hap_full},
        "resumed": {"per_second": res_rate, "server_cpu_ms": res_cpu, "haproxy_cpu_ms": hap_res,
                    "resumed": [int(r[6]) for r in hs["resumed"]]},
        "resumed_over_full_rate": res_rate / full_rate,
        "resumed_over_full_server_cpu": res_cpu / full_cpu,
    },
    "throughput_mib_per_second": {"direct": tp["direct"], "haproxy": tp["haproxy"],
                                  "haproxy_over_direct": tp["haproxy"] / tp["direct"]},
    "capacity": {"slots_per_server": k, "delay_ms": delay, "points": [
        {"servers": int(r[1]), "connections": int(r[6]), "per_second": float(r[3]),
         "ideal_per_second": int(r[1]) * k * 1000 / delay, "over_one_server": float(r[3]) / base,
         "server_cpu_ms_per_connection": ms(int(r[4]), int(r[6])),
         "haproxy_cpu_ms_per_connection": ms(int(r[5]), int(r[6]))} for r in cap]},
}
# The shape scripts/bench.sh's summary reads: bench, load_average, figures["ratio.*"].value.
report["bench"] = "fleet"
report["load_average"] = load_after
report["figures"] = {f"ratio.{name}": {"value": value} for name, value in [
    ("handshakes_per_second.resumed_over_full", res_rate / full_rate),
    ("server_cpu_per_handshake.resumed_over_full", res_cpu / full_cpu),
    ("echo_throughput.haproxy_over_direct", tp["haproxy"] / tp["direct"]),
] + [(f"capacity.{p['servers']}_servers_over_1", p["over_one_server"]) for p in report["capacity"]["points"][1:]]}
with open(out, "w") as f:
    json.dump(report, f, indent=2)
print(f"{'measurement':<52} {'value':>12} {'ratio':>8}")
print(f"{'handshakes/s through HAProxy, full':<52} {full_rate:>12.0f} {1:>8.2f}")
print(f"{'handshakes/s through HAProxy, resumed':<52} {res_rate:>12.0f} {res_rate / full_rate:>8.2f}")
print(f"{'server CPU ms per full handshake':<52} {full_cpu:>12.3f} {1:>8.2f}")
print(f"{'server CPU ms per resumed handshake':<52} {res_cpu:>12.3f} {res_cpu / full_cpu:>8.2f}")
print(f"{'HAProxy CPU ms per connection, full / resumed':<52} {hap_full:>5.3f}/{hap_res:<6.3f}")
print(f"{'echo MiB/s direct':<52} {tp['direct']:>12.1f} {1:>8.2f}")
print(f"{'echo MiB/s through HAProxy':<52} {tp['haproxy']:>12.1f} {tp['haproxy'] / tp['direct']:>8.2f}")
for p in report["capacity"]["points"]:
    label = f"capacity, {p['servers']} server(s): conn/s (ideal {p['ideal_per_second']:.0f})"
    print(f"{label:<52} {p['per_second']:>12.1f} {p['over_one_server']:>8.2f}"
          f"   server CPU {p['server_cpu_ms_per_connection']:.3f} ms/conn, HAProxy {p['haproxy_cpu_ms_per_connection']:.3f}")
print(f"load average before / after: {load_before} / {load_after} ({cpus} CPUs)")
EOF
echo "(ratios against the first row of each group, same run; CPU from /proc/PID/stat, ${HZ} ticks/s; JSON in $OUT)"
