# Sourced by scripts/demo.sh after the PKI steps: uses say, run, $BIN, $DEMO and P (passphrase file args).
SIGN="$BIN/sign"
VERIFY="$BIN/verify"

say "Signed load modules: the code-signing certificate (Ed25519) signs, verify checks offline"
head -c 4194304 /dev/urandom > "$DEMO/module.so"
run "$SIGN" "$DEMO/module.so" --key "$DEMO/signer.key" --cert "$DEMO/signer.chain.pem"
run "$VERIFY" "$DEMO/module.so" --root "$DEMO/root/ca.pem" --crl "$DEMO/issuing/crl.pem" --name module.so

say "One flipped bit: the module is rejected"
cp "$DEMO/module.so" "$DEMO/module.so.orig"
printf '\x00' | dd of="$DEMO/module.so" bs=1 seek=1000 conv=notrunc status=none
if "$VERIFY" "$DEMO/module.so" --root "$DEMO/root/ca.pem"; then
  echo "UNEXPECTED: a tampered module verified" >&2; exit 1
else
  echo "(rejected, exit code $?)"
fi
mv "$DEMO/module.so.orig" "$DEMO/module.so"

say "Embedded signature; the original bytes come back exactly, verified"
run "$SIGN" "$DEMO/module.so" --key "$DEMO/signer.key" --cert "$DEMO/signer.chain.pem" --embed --quiet
run "$VERIFY" "$DEMO/module.so.signed" --root "$DEMO/root/ca.pem" --extract "$DEMO/module.extracted" --json
run cmp "$DEMO/module.so" "$DEMO/module.extracted"

say "A server certificate cannot sign, and a revoked signer is refused"
run "$BIN/ca" issue --dir "$DEMO/issuing" "${P[@]}" --profile server --key-type ed25519 --name web.demo.test --out "$DEMO/web"
if "$SIGN" "$DEMO/module.so" --key "$DEMO/web.key" --cert "$DEMO/web.chain.pem" -o "$DEMO/web.sig"; then
  echo "UNEXPECTED: a server certificate signed a module" >&2; exit 1
else
  echo "(refused, exit code $?)"
fi
MSERIAL=$("$BIN/ca" show --json "$DEMO/signer.pem" | sed -n 's/.*"serial": "\([0-9a-f]*\)".*/\1/p')
run "$BIN/ca" revoke --dir "$DEMO/issuing" "${P[@]}" "$MSERIAL" --reason key-compromise
if "$VERIFY" "$DEMO/module.so" --root "$DEMO/root/ca.pem" --crl "$DEMO/issuing/crl.pem"; then
  echo "UNEXPECTED: a module signed by a revoked signer verified" >&2; exit 1
else
  echo "(rejected, exit code $?)"
fi

say "Raw-key mode (no CA), like minisign"
run "$SIGN" --generate "$DEMO/release" --no-passphrase
run "$SIGN" "$DEMO/module.so" --key "$DEMO/release.key" -o "$DEMO/module.so.rawsig"
run "$VERIFY" "$DEMO/module.so" --pubkey "$DEMO/release.pub" --sig "$DEMO/module.so.rawsig"
