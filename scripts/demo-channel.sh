# Sourced by scripts/demo.sh (uses its BIN, DEMO, say and run): echo-server and echo-client over
# mutual TLS with in-flight key rotation.
ES="$BIN/echo-server"
EC="$BIN/echo-client"
ROOT="$DEMO/root/ca.pem"
CRL="$DEMO/issuing/crl.pem"

say "echo-server: mutual TLS, client CA + CRL, allow list, keys rotated every 64 KiB"
printf '$ %s\n' "$ES --listen 127.0.0.1:0 --cert $DEMO/server.chain.pem --key $DEMO/server.key --client-ca $ROOT --crl $CRL --allow client.demo.test --rotate-bytes 64K &"
"$ES" --listen 127.0.0.1:0 --cert "$DEMO/server.chain.pem" --key "$DEMO/server.key" \
    --client-ca "$ROOT" --crl "$CRL" --allow client.demo.test --rotate-bytes 64K \
    >"$DEMO/echo-server.out" 2>"$DEMO/echo-server.log" &
ES_PID=$!
trap 'kill "$ES_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$DEMO/echo-server.out" 2>/dev/null && break; sleep 0.05; done
cat "$DEMO/echo-server.out"
ADDR=$(sed -n 's/^listening on //p' "$DEMO/echo-server.out")
CLIENT=(--connect "$ADDR" --server-name server.demo.test --ca "$ROOT" --cert "$DEMO/client.chain.pem" --key "$DEMO/client.key")

say "Messages, with a KeyUpdate after every message (-v prints the rotation counters)"
run "$EC" "${CLIENT[@]}" --rotate-messages 1 -v hello "key rotation" world

say "4 MiB streamed through stdin/stdout, both sides rotating every 64 KiB"
head -c 4194304 /dev/urandom >"$DEMO/random.bin"
printf '$ %s\n' "$EC ${CLIENT[*]} --rotate-bytes 64K -v <$DEMO/random.bin >$DEMO/random.echo"
"$EC" "${CLIENT[@]}" --rotate-bytes 64K -v <"$DEMO/random.bin" >"$DEMO/random.echo"
cmp "$DEMO/random.bin" "$DEMO/random.echo" && echo "(4 MiB echoed byte for byte)"

say "openssl s_client as the client: count the KeyUpdates it receives from echo-server"
head -c 1048576 /dev/zero | tr '\0' 'z' | fold -w 100 >"$DEMO/lines.txt"
openssl s_client -connect "$ADDR" -servername server.demo.test -CAfile "$ROOT" \
    -cert "$DEMO/client.pem" -key "$DEMO/client.key" -cert_chain "$DEMO/issuing/ca.pem" \
    -msg -quiet <"$DEMO/lines.txt" 2>/dev/null >"$DEMO/s_client.out" & SC=$!
sleep 2; kill "$SC" 2>/dev/null || true; wait "$SC" 2>/dev/null || true
echo "openssl s_client saw $(grep -c '^<<< .*KeyUpdate' "$DEMO/s_client.out") KeyUpdate messages from echo-server"

say "Refusals: a revoked client certificate, and no client certificate (exit code 1)"
"$EC" --connect "$ADDR" --server-name server.demo.test --ca "$ROOT" \
    --cert "$DEMO/lost.chain.pem" --key "$DEMO/lost.key" hello && exit 1 || echo "(revoked client refused, exit code $?)"
"$EC" --connect "$ADDR" --server-name server.demo.test --ca "$ROOT" hello && exit 1 || echo "(anonymous client refused, exit code $?)"

say "Graceful stop (SIGTERM): the server's per-connection log"
kill -TERM "$ES_PID"; wait "$ES_PID" || true
trap - EXIT
grep -E 'connection closed|handshake failed|client certificate refused' "$DEMO/echo-server.log" \
    | sed -E 's/^[^ ]+ +//' | cut -c1-220
