#!/usr/bin/env bash
# `make demo`: a tour of Tessera on a fresh demo PKI in certs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug}
DEMO=certs/demo
CA="$BIN/ca"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
STEP=0
say() { STEP=$((STEP + 1)); printf '\n%s== %d. %s%s\n' "$B" "$STEP" "$*" "$N"; }
run() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

rm -rf "$DEMO"
mkdir -p "$DEMO"
chmod 700 "$DEMO"
# The CA keys are encrypted; the demo keeps its passphrase in a 0600 file.
(umask 077; head -c 24 /dev/urandom | base64 > "$DEMO/passphrase")
P=(--passphrase-file "$DEMO/passphrase")

say "A root CA and an intermediate (issuing) CA limited to *.demo.test and 127.0.0.0/8"
run "$CA" init --dir "$DEMO/root" --name "Tessera Demo Root" "${P[@]}" --path-len 1
run "$CA" init --dir "$DEMO/issuing" --parent "$DEMO/root" --name "Tessera Demo Issuing CA" "${P[@]}" \
    --permit-dns demo.test --permit-ip 127.0.0.0/8

say "Server, client and code-signing certificates"
run "$CA" issue --dir "$DEMO/issuing" "${P[@]}" --profile server --name server.demo.test --san 127.0.0.1 --out "$DEMO/server"
run "$CA" issue --dir "$DEMO/issuing" "${P[@]}" --profile client --name client.demo.test --out "$DEMO/client"
run "$CA" issue --dir "$DEMO/issuing" "${P[@]}" --profile code-signing --name "Demo Release Signer" --out "$DEMO/signer"

say "The issuing CA refuses a name outside its constraints"
if "$CA" issue --dir "$DEMO/issuing" "${P[@]}" --profile server --name www.evil.example --out "$DEMO/evil"; then
  echo "UNEXPECTED: the CA issued a certificate outside its name constraints" >&2; exit 1
else
  echo "(refused, exit code $?)"
fi

say "Inspect and verify"
run "$CA" show "$DEMO/server.pem"
run "$CA" verify "$DEMO/server.chain.pem" --root "$DEMO/root/ca.pem" --usage server --name server.demo.test
run "$CA" verify "$DEMO/client.chain.pem" --root "$DEMO/root/ca.pem" --usage client
run "$CA" verify "$DEMO/signer.chain.pem" --root "$DEMO/root/ca.pem" --usage code-signing

say "Revocation: a second client certificate is revoked and the CRL rejects it"
run "$CA" issue --dir "$DEMO/issuing" "${P[@]}" --profile client --name lost-laptop.demo.test --out "$DEMO/lost"
SERIAL=$("$CA" show --json "$DEMO/lost.pem" | sed -n 's/.*"serial": "\([0-9a-f]*\)".*/\1/p')
run "$CA" revoke --dir "$DEMO/issuing" "${P[@]}" "$SERIAL" --reason key-compromise
if "$CA" verify "$DEMO/lost.chain.pem" --root "$DEMO/root/ca.pem" --usage client --crl "$DEMO/issuing/crl.pem"; then
  echo "UNEXPECTED: a revoked certificate verified" >&2; exit 1
else
  echo "(rejected, exit code $?)"
fi
run openssl verify -crl_check -CRLfile "$DEMO/issuing/crl.pem" -CAfile "$DEMO/root/ca.pem" -untrusted "$DEMO/issuing/ca.pem" "$DEMO/lost.pem" || echo "(openssl agrees: rejected)"
run "$CA" list --dir "$DEMO/issuing"

say "The CA's state: SQLite in the CA directory (ca.db), filtered listings, an online backup"
run "$CA" list --dir "$DEMO/issuing" --status revoked
run "$CA" backup --dir "$DEMO/issuing" --out "$DEMO/issuing-backup.db"

say "ca serve: the CA as an ACME service on loopback; a client obtains a certificate and openssl asks OCSP about it"
# A free loopback port from 20000 up (nothing answers a connection to it).
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
HTTPS_PORT=$(free_port 20443); HTTP_PORT=$(free_port $((HTTPS_PORT + 1))); VA_PORT=$(free_port $((HTTP_PORT + 1)))
ACME="$DEMO/acme"
run "$CA" init --dir "$ACME" --parent "$DEMO/root" --name "Tessera Demo ACME CA" "${P[@]}" \
    --permit-dns demo.test --permit-ip 127.0.0.0/8 \
    --crl-url "http://127.0.0.1:$HTTP_PORT/crl" --ocsp-url "http://127.0.0.1:$HTTP_PORT/ocsp"
printf '$ %s serve --dir %s … &\n' "$CA" "$ACME"
"$CA" serve --dir "$ACME" "${P[@]}" --listen "127.0.0.1:$HTTPS_PORT" --base-url "https://127.0.0.1:$HTTPS_PORT" \
    --http-listen "127.0.0.1:$HTTP_PORT" --va-http-port "$VA_PORT" --va-resolve '*=127.0.0.1' \
    >"$DEMO/serve.out" 2>"$DEMO/serve.log" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '(http)' "$DEMO/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q '(http)' "$DEMO/serve.out" || { echo "UNEXPECTED: ca serve did not start:" >&2; cat "$DEMO/serve.log" >&2; exit 1; }
cat "$DEMO/serve.out"
DIRECTORY="https://127.0.0.1:$HTTPS_PORT/acme/directory"
# http-01: the validation authority fetches the key authorization from the client on
# 127.0.0.1:VA_PORT (--va-resolve makes every name resolve to loopback, for the demo only).
if [ -z "${DEMO_NO_LEGO:-}" ] && command -v lego >/dev/null 2>&1; then   # DEMO_NO_LEGO=1: the in-process client
  LEGO_CA_CERTIFICATES="$DEMO/root/ca.pem" run lego --server "$DIRECTORY" --accept-tos --email demo@demo.test \
      --path "$DEMO/lego" --domains acme.demo.test --http --http.port "127.0.0.1:$VA_PORT" run >"$DEMO/lego.log" 2>&1
  echo "(lego's log: $DEMO/lego.log)"
  cp "$DEMO/lego/certificates/acme.demo.test.crt" "$DEMO/acme-leaf.chain.pem"
else
  echo "(without lego, or with DEMO_NO_LEGO=1: the in-process instant-acme client of examples/acme_client.rs asks)"
  cargo build -q --example acme_client
  run "${BIN%/}/examples/acme_client" "$DIRECTORY" "$DEMO/root/ca.pem" acme.demo.test "$VA_PORT" "$DEMO/acme-client"
  cp "$DEMO/acme-client.pem" "$DEMO/acme-leaf.chain.pem"
fi
openssl x509 -in "$DEMO/acme-leaf.chain.pem" -out "$DEMO/acme-leaf.pem"
run openssl verify -CAfile "$DEMO/root/ca.pem" -untrusted "$ACME/ca.pem" -purpose sslserver "$DEMO/acme-leaf.pem"
run openssl ocsp -url "http://127.0.0.1:$HTTP_PORT/ocsp" -issuer "$ACME/ca.pem" \
    -CAfile "$DEMO/root/ca.pem" -cert "$DEMO/acme-leaf.pem"
kill -TERM "$SERVE_PID"; wait "$SERVE_PID" || true
trap - EXIT
echo "(ca serve stopped on SIGTERM; see docs/serve.md for several instances behind HAProxy)"

if [ -f scripts/demo-sign.sh ]; then source scripts/demo-sign.sh; fi
if [ -f scripts/demo-channel.sh ]; then source scripts/demo-channel.sh; fi

printf '\n%sDone: every step behaved as expected. Everything is in %s (git-ignored; make clean-demo removes it).%s\n' "$B" "$DEMO" "$N"
