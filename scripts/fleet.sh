#!/usr/bin/env bash
# `make fleet`: HAProxy (mode tcp, leastconn, checks every 500 ms with send-proxy-v2) in front of
# three echo-servers sharing one session ticket key file, on 127.0.0.1. Under a bounded load one
# server is killed (SIGKILL) and later restarted; the script prints the per-server distribution,
# how long HAProxy took to mark the server down, new connections lost, messages lost, the share
# of reconnects that resumed their TLS session, and the server CPU time of a full versus a
# resumed handshake. Everything runs in a temporary directory; every process it starts is
# stopped by its PID on exit. About 30 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug}
ES="$BIN/echo-server"
EC="$BIN/echo-client"
CA="$BIN/ca"
MESSAGES=${FLEET_MESSAGES:-10000}  # per message client
CLIENTS=${FLEET_CLIENTS:-4}       # message clients with --retry
HANDSHAKES=${FLEET_HANDSHAKES:-200}

for tool in "$ES" "$EC" "$CA"; do
  [ -x "$tool" ] || { echo "fleet: $tool is missing: run \`make build\` first" >&2; exit 3; }
done
HAPROXY=$(command -v haproxy || true)
[ -n "$HAPROXY" ] || [ ! -x /usr/sbin/haproxy ] || HAPROXY=/usr/sbin/haproxy
if [ -z "$HAPROXY" ]; then
  echo "fleet: installing haproxy"
  apt-get update -qq && apt-get install -y -qq haproxy >/dev/null
  HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
fi
command -v socat >/dev/null 2>&1 || { echo "fleet: installing socat"; apt-get update -qq && apt-get install -y -qq socat >/dev/null; }

D=$(mktemp -d)
chmod 700 "$D"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${FLEET_KEEP:-}" ]; then echo "fleet: kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }
# A free loopback port: bound by the kernel, then released.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits (bounded) until FILE holds `listening on`; prints the address.
listening() {
  for _ in $(seq 200); do
    if grep -q '^listening on' "$1" 2>/dev/null; then sed -n 's/^listening on //p' "$1"; return; fi
    sleep 0.05
  done
  echo "fleet: a server did not start: $(cat "${1%.out}.log")" >&2; exit 3
}
# CPU time (user + system) of process $1 in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "== A PKI, a session ticket key file, three echo-servers, HAProxy"
"$CA" init --dir "$D/ca" --name "Fleet Root" --no-passphrase >/dev/null
"$CA" issue --dir "$D/ca" --profile server --name localhost --san 127.0.0.1 --out "$D/server" >/dev/null
"$CA" issue --dir "$D/ca" --profile client --name client.fleet --out "$D/client" >/dev/null
"$CA" crl --dir "$D/ca" >/dev/null
"$ES" --new-ticket-key "$D/tickets.keys"
SERVER_ARGS=(--cert "$D/server.chain.pem" --key "$D/server.key" --client-ca "$D/ca/ca.pem" --crl "$D/ca/crl.pem"
  --ticket-keys "$D/tickets.keys" --drain-timeout 5)
BEHIND_HAPROXY=(--proxy-protocol)
ADDRS=()
start_server() { # index, listen address, extra arguments
  RUST_LOG=info "$ES" --listen "$2" "${SERVER_ARGS[@]}" "${@:3}" >"$D/b$1.out" 2>"$D/b$1.log" &
  SERVER_PID[$1]=$!
  PIDS+=("$!")
}
declare -a SERVER_PID
for i in 1 2 3; do
  start_server "$i" 127.0.0.1:0 "${BEHIND_HAPROXY[@]}"
  ADDRS[$i]=$(listening "$D/b$i.out")
done
FRONT="127.0.0.1:$(free_port)"
cat >"$D/haproxy.cfg" <<EOF
global
  stats socket $D/hap.sock level admin
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
frontend echo
  bind $FRONT
  default_backend fleet
backend fleet
  balance leastconn
  default-server check inter 500ms fall 2 rise 2 send-proxy-v2
  server b1 ${ADDRS[1]}
  server b2 ${ADDRS[2]}
  server b3 ${ADDRS[3]}
EOF
"$HAPROXY" -c -f "$D/haproxy.cfg" >/dev/null
"$HAPROXY" -f "$D/haproxy.cfg" -db >"$D/haproxy.out" 2>&1 &
PIDS+=("$!")
# `show stat`: backend rows `fleet,bN,…`; column 8 is sessions total, 18 the status.
stat() { echo "show stat" | socat - "UNIX-CONNECT:$D/hap.sock" 2>/dev/null | awk -F, '$1 == "fleet" && $2 ~ /^b/'; }
status_of() { stat | awk -F, -v s="$1" '$2 == s {print $18}'; }
wait_status() { # server, wanted status prefix, then prints the milliseconds waited
  local start; start=$(now_ms)
  for _ in $(seq 300); do
    case "$(status_of "$1")" in "$2"*) echo $(($(now_ms) - start)); return ;; esac
    sleep 0.05
  done
  echo "fleet: $1 never became $2" >&2; exit 3
}
for b in b1 b2 b3; do wait_status "$b" UP >/dev/null; done
echo "HAProxy on $FRONT in front of b1 ${ADDRS[1]}, b2 ${ADDRS[2]}, b3 ${ADDRS[3]} (all UP)"
CLIENT=(--connect "$FRONT" --server-name localhost --ca "$D/ca/ca.pem" --cert "$D/client.chain.pem" --key "$D/client.key")

echo "== Load: $CLIENTS clients with --retry sending $MESSAGES numbered messages each, and new connections"
# New connections, one message each, no retry, each with its start time: a failure that
# started after the kill is a new connection lost; one started before was cut in flight.
(
  n=0
  until [ -e "$D/stop-new" ] || [ "$n" -ge 5000 ]; do
    n=$((n + 1))
    start=$(now_ms)
    code=0
    RUST_LOG=off "$EC" "${CLIENT[@]}" "new $n" >/dev/null 2>>"$D/new.err" || code=$?
    echo "$start $code" >>"$D/new.log"
  done
) &
NEW_PID=$!
PIDS+=("$NEW_PID")
seq -f 'm%06g' 1 "$MESSAGES" >"$D/expected"
mapfile -t MSG <"$D/expected"
for c in $(seq "$CLIENTS"); do
  RUST_LOG=off "$EC" "${CLIENT[@]}" --retry 20 --retry-backoff 50 "${MSG[@]}" >"$D/client$c.out" 2>"$D/client$c.err" &
  CLIENT_PID[$c]=$!
  PIDS+=("$!")
done
# Current sessions per server (show stat column 5), as `b1 N`.
current() { stat | awk -F, '{print $2, $5}'; }
for _ in $(seq 200); do
  [ "$(current | awk '{n += $2} END {print n + 0}')" -ge "$CLIENTS" ] && break
  sleep 0.05
done
# The server with the most open sessions (the message clients' long ones) is killed.
VICTIM=$(current | sort -k2,2nr | head -1 | awk '{print substr($1, 2)}')
echo "sessions open before the kill: $(current | tr '\n' ' ')"
KILLED_AT=$(now_ms)
kill -KILL "${SERVER_PID[$VICTIM]}"
{ wait "${SERVER_PID[$VICTIM]}" || true; } 2>/dev/null
echo "kill -9 b$VICTIM (pid ${SERVER_PID[$VICTIM]})"
DOWN_MS=$(wait_status "b$VICTIM" DOWN)
echo "HAProxy marked b$VICTIM DOWN after $DOWN_MS ms (fall 2 x inter 500 ms)"
sleep 2
echo "restart b$VICTIM on ${ADDRS[$VICTIM]}"
start_server "$VICTIM" "${ADDRS[$VICTIM]}" "${BEHIND_HAPROXY[@]}"
listening "$D/b$VICTIM.out" >/dev/null
UP_MS=$(wait_status "b$VICTIM" UP)
echo "b$VICTIM UP again after $UP_MS ms"
BEFORE=$(stat | awk -F, -v s="b$VICTIM" '$2 == s {print $8}')
sleep 2
touch "$D/stop-new"
wait "$NEW_PID" || true
for c in $(seq "$CLIENTS"); do wait "${CLIENT_PID[$c]}" || echo "client $c exited with $?"; done
AFTER=$(stat | awk -F, -v s="b$VICTIM" '$2 == s {print $8}')

echo "== Results"
echo "connections per server (show stat, column 8: sessions total):"
stat | awk -F, '{printf "  %s %s (%s)\n", $2, $8, $18}'
echo "  b$VICTIM got $((AFTER - BEFORE)) new connections after its restart"
NEW=$(awk -v k="$KILLED_AT" '$1 >= k' "$D/new.log" | wc -l)
LOST=$(awk -v k="$KILLED_AT" '$1 >= k && $2 != 0' "$D/new.log" | wc -l)
CUT=$(awk -v k="$KILLED_AT" '$1 < k && $2 != 0' "$D/new.log" | wc -l)
echo "new connections after the kill: $NEW, lost: $LOST (goal 0); cut in flight by the kill: $CUT"
lost_messages=0 attempts=0 reconnects=0 resumed=0 resent=0
# The figure before WORDS in the retry summary line $1 (0 when absent): `3 connection attempts
# after a failure, 1 reconnect (1 resumed its TLS session), 1 message sent again; …`.
figure() { echo "$1" | grep -oE "[0-9]+ $2" | grep -oE '^[0-9]+' || echo 0; }
for c in $(seq "$CLIENTS"); do
  if ! cmp -s "$D/expected" "$D/client$c.out"; then
    missing=$(sort "$D/expected" | comm -23 - <(sort -u "$D/client$c.out") | wc -l)
    echo "  client $c: output differs from the messages sent ($missing missing)"
    lost_messages=$((lost_messages + (missing > 0 ? missing : 1)))
  fi
  if line=$(grep -m1 '^echo-client: retry: ' "$D/client$c.err"); then
    attempts=$((attempts + $(figure "$line" 'connection attempts?')))
    reconnects=$((reconnects + $(figure "$line" 'reconnects?')))
    resumed=$((resumed + $(figure "$line" 'resumed')))
    resent=$((resent + $(figure "$line" 'messages? sent again')))
  fi
done
echo "messages: $((CLIENTS * MESSAGES)) sent by $CLIENTS clients, lost or duplicated: $lost_messages (goal 0), sent again after a loss: $resent"
if [ "$reconnects" -gt 0 ]; then
  echo "reconnects: $reconnects (of $attempts connection attempts after a failure), resumed their TLS session: $resumed ($((100 * resumed / reconnects)) %)"
else
  echo "reconnects: 0 (the killed server held none of the message clients)"
fi

echo "== Server CPU per handshake, full vs resumed (one echo-server, direct; rounds of $HANDSHAKES connections echoing 1 byte each)"
start_server 9 127.0.0.1:0
DIRECT=$(listening "$D/b9.out")
PID9=${SERVER_PID[9]}
DIRECT_CLIENT=(--connect "$DIRECT" --server-name localhost --ca "$D/ca/ca.pem" --cert "$D/client.chain.pem" --key "$D/client.key")
ROUNDS=${FLEET_ROUNDS:-3}
FIGURES=()
for _ in $(seq "$ROUNDS"); do
  t0=$(cpu_ticks "$PID9")
  "$EC" "${DIRECT_CLIENT[@]}" --bench --bytes "$HANDSHAKES" --conns "$HANDSHAKES" --concurrency 1 --json >"$D/full.json"
  t1=$(cpu_ticks "$PID9")
  "$EC" "${DIRECT_CLIENT[@]}" --bench --bytes "$HANDSHAKES" --conns "$HANDSHAKES" --concurrency 1 --retry 1 --json >"$D/resumed.json"
  t2=$(cpu_ticks "$PID9")
  R=$(grep -oE '"resumed": *[0-9]+' "$D/resumed.json" | grep -oE '[0-9]+$')
  FIGURES+=("$R" "$((t1 - t0))" "$((t2 - t1))")
done
HZ=$(getconf CLK_TCK)
python3 - "$HANDSHAKES" "$HZ" "${FIGURES[@]}" <<'EOF'
import statistics, sys
n, hz, *figures = map(int, sys.argv[1:])
ratios = []
for resumed, full_ticks, second_ticks in zip(*[iter(figures)] * 3):
    full = full_ticks / hz / n * 1e3
    # The second run's full handshakes (those that found no ticket) cost what the first run's did.
    rest = second_ticks / hz * 1e3 - (n - resumed) * full
    per_resumed = rest / resumed if resumed else float("nan")
    ratios.append(per_resumed / full)
    print(f"  full handshake: {full:.3f} ms of server CPU; resumed: {per_resumed:.3f} ms "
          f"({resumed} of {n} resumed); resumed/full = {per_resumed / full:.2f}")
print(f"resumed/full, median of {len(ratios)} rounds: {statistics.median(ratios):.2f}")
EOF
echo "(build: $BIN; the figures are CPU time of the echo-server process, clock ticks of $((1000 / HZ)) ms)"
