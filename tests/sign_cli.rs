//! The `sign` and `verify` binaries: exit codes, messages and files, run for real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use predicates::prelude::*;
use support::Pki;
use time::OffsetDateTime;

use tessera::ca::{Profile, RevocationReason};
use tessera::pki::KeyAlgorithm;

/// A root CA made an hour ago in `ca/`, and a code-signing certificate `signer.{key,pem,chain.pem}`.
struct Env {
    pki: Pki,
}

impl Env {
    fn new() -> Self {
        Self::named("CLI Root")
    }

    fn named(root: &str) -> Self {
        let now = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let env = Self {
            pki: Pki::named(root, now),
        };
        env.issue(Profile::CodeSigning, "signer", "Module Signer");
        env
    }

    fn issue(&self, profile: Profile, prefix: &str, name: &str) -> String {
        let at = OffsetDateTime::now_utc() - time::Duration::minutes(30);
        self.pki.issue_files(profile, prefix, name, KeyAlgorithm::Ed25519, at)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.pki.path(name)
    }

    fn root(&self) -> PathBuf {
        self.path("ca/ca.pem")
    }

    fn module(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn sign(&self) -> Command {
        let mut cmd = support::command("sign");
        cmd.current_dir(self.pki.dir.path());
        cmd
    }

    fn verify(&self) -> Command {
        let mut cmd = support::command("verify");
        cmd.current_dir(self.pki.dir.path());
        cmd
    }

    fn sign_module(&self, module: &Path, extra: &[&str]) {
        assert_cmd::Command::from_std(self.sign())
            .arg(module)
            .args(["--key", "signer.key", "--cert", "signer.chain.pem", "--quiet"])
            .args(extra)
            .assert()
            .success();
    }
}

fn run(cmd: Command) -> assert_cmd::assert::Assert {
    assert_cmd::Command::from_std(cmd)
        .timeout(Duration::from_secs(60))
        .assert()
}

fn module_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 253) as u8).collect()
}

#[test]
fn detached_round_trip_then_tamper_is_rejected_with_exit_1() {
    let env = Env::new();
    let m = env.module("mod.bin", &module_bytes());
    env.sign_module(&m, &[]);
    assert!(env.path("mod.bin.sig").exists());
    let mut ok = env.verify();
    ok.arg("mod.bin")
        .arg("--root")
        .arg(env.root())
        .args(["--name", "mod.bin"]);
    run(ok)
        .code(0)
        .stdout(predicate::str::starts_with("mod.bin: OK\n"))
        .stdout(predicate::str::contains("signer:    CN=Module Signer (serial "))
        .stdout(predicate::str::contains("chain:     CN=Module Signer <- CN=CLI Root"))
        .stdout(predicate::str::contains("sha3-256:"))
        .stdout(predicate::str::contains("length:    300000 bytes (detached signature)"));

    let mut bytes = module_bytes();
    bytes[1000] ^= 0x01;
    std::fs::write(&m, &bytes).unwrap();
    let mut bad = env.verify();
    bad.arg("mod.bin").arg("--root").arg(env.root());
    run(bad).code(1).stdout("").stderr(
        "verify: error: module content does not match its signature (tampered)\n\
         verify: hint: the module was changed after it was signed; do not load it\n",
    );
}

#[test]
fn truncated_and_extended_modules_are_rejected() {
    let env = Env::new();
    let m = env.module("mod.bin", &module_bytes());
    env.sign_module(&m, &[]);
    std::fs::write(&m, &module_bytes()[..299_999]).unwrap();
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root());
    run(cmd).code(1).stderr(predicate::str::starts_with(
        "verify: error: module is truncated: 299999 bytes, signed length 300000\n",
    ));
    let mut longer = module_bytes();
    longer.push(0);
    std::fs::write(&m, &longer).unwrap();
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root());
    run(cmd).code(1).stderr(predicate::str::starts_with(
        "verify: error: module is extended: more than the signed length of 300000 bytes\n",
    ));
}

#[test]
fn embedded_signature_is_detected_and_extract_gives_the_original_bytes() {
    let env = Env::new();
    let m = env.module("mod.bin", &module_bytes());
    env.sign_module(&m, &["--embed"]);
    let signed = env.path("mod.bin.signed");
    let mut cmd = env.verify();
    cmd.arg(&signed)
        .arg("--root")
        .arg(env.root())
        .args(["--extract", "out.bin", "--quiet"]);
    run(cmd).code(0).stdout("");
    assert_eq!(std::fs::read(env.path("out.bin")).unwrap(), module_bytes());

    // Tampered embedded file: rejected, and nothing is extracted.
    let mut bytes = std::fs::read(&signed).unwrap();
    bytes[5] ^= 0x80;
    std::fs::write(&signed, &bytes).unwrap();
    let mut cmd = env.verify();
    cmd.arg(&signed)
        .arg("--root")
        .arg(env.root())
        .args(["--extract", "out2.bin"]);
    run(cmd).code(1);
    assert!(!env.path("out2.bin").exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.pki.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn wrong_root_revoked_signer_and_wrong_name_exit_1() {
    let env = Env::new();
    let m = env.module("mod.bin", b"module");
    env.sign_module(&m, &[]);
    let other = Env::named("Other Root");
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(other.root());
    run(cmd).code(1).stderr(
        "verify: error: signer is not trusted: certificate was not issued by a trusted root (unknown issuer)\n\
         verify: hint: the signer does not chain to --root; pass the root CA that issued the signer\n",
    );
    // A different root with the same name: the chain's signature does not verify.
    let impostor = Env::named("CLI Root");
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(impostor.root());
    run(cmd)
        .code(1)
        .stderr(predicate::str::contains("bad signature in certificate chain"));

    let mut cmd = env.verify();
    cmd.arg("mod.bin")
        .arg("--root")
        .arg(env.root())
        .args(["--name", "other.bin"]);
    run(cmd).code(1).stderr(predicate::str::starts_with(
        "verify: error: module is signed as \"mod.bin\", not \"other.bin\"\n",
    ));

    // Revoke the signer: with the CRL the module is refused.
    let signer = env.path("signer.pem");
    let info =
        tessera::pki::CertificateInfo::from_der(&tessera::pki::pem::load_certificates(&signer).unwrap()[0]).unwrap();
    env.pki
        .ca
        .revoke(
            &info.serial,
            RevocationReason::KeyCompromise,
            OffsetDateTime::now_utc(),
            Duration::from_secs(86_400),
        )
        .unwrap();
    let mut cmd = env.verify();
    cmd.arg("mod.bin")
        .arg("--root")
        .arg(env.root())
        .arg("--crl")
        .arg(env.pki.ca.crl_path());
    run(cmd).code(1).stderr(predicate::str::contains("is revoked"));
}

#[test]
fn unusable_input_exits_3() {
    let env = Env::new();
    env.module("mod.bin", b"module");
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root());
    run(cmd).code(3).stderr(predicate::str::starts_with(
        "verify: error: no signature found for mod.bin: no mod.bin.sig and no embedded signature\n",
    ));
    std::fs::write(env.path("mod.bin.sig"), "not a signature\n").unwrap();
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root());
    run(cmd)
        .code(3)
        .stderr(predicate::str::contains("signature bundle mod.bin.sig is malformed"));
    let mut cmd = env.verify();
    cmd.arg("missing.bin").arg("--root").arg(env.root());
    run(cmd).code(3);
    let mut cmd = env.verify();
    cmd.arg("mod.bin");
    run(cmd).code(2);
}

#[test]
fn json_output_has_the_documented_fields() {
    let env = Env::new();
    let m = env.module("mod.bin", b"json module");
    env.sign_module(&m, &["--hash", "sha3-512", "--name", "lib/json.so"]);
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root()).arg("--json");
    let out = run(cmd).code(0).get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["name"], "lib/json.so");
    assert_eq!(v["length"], 11);
    assert_eq!(v["hash"], "sha3-512");
    assert_eq!(v["digest"].as_str().unwrap().len(), 128);
    assert_eq!(v["embedded"], false);
    assert_eq!(v["signer"]["kind"], "certificate");
    assert_eq!(v["signer"]["subject"], "CN=Module Signer");
    assert!(v["signed_at"].as_str().unwrap().ends_with('Z'));

    std::fs::write(&m, b"json modulE").unwrap();
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root()).arg("--json");
    let out = run(cmd).code(1).get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["error"], "module content does not match its signature (tampered)");
}

#[test]
fn sign_refuses_mismatched_keys_and_non_code_signing_certificates() {
    let env = Env::new();
    env.module("mod.bin", b"module");
    env.issue(Profile::CodeSigning, "other", "Other Signer");
    let mut cmd = env.sign();
    cmd.args(["mod.bin", "--key", "other.key", "--cert", "signer.chain.pem"]);
    run(cmd).code(3).stderr(
        "sign: error: the private key does not match certificate CN=Module Signer\n\
         sign: hint: pass the key issued with this certificate (PREFIX.key next to PREFIX.chain.pem)\n",
    );
    env.issue(Profile::Server, "server", "www.example.com");
    let mut cmd = env.sign();
    cmd.args(["mod.bin", "--key", "server.key", "--cert", "server.chain.pem"]);
    run(cmd)
        .code(3)
        .stderr(predicate::str::starts_with(
            "sign: error: certificate CN=www.example.com is not a code-signing certificate",
        ))
        .stderr(predicate::str::contains("sign: hint: issue a code-signing certificate"));
    assert!(!env.path("mod.bin.sig").exists());
}

#[test]
fn raw_key_mode_with_an_encrypted_key() {
    let env = Env::new();
    std::fs::write(env.path("pass"), "correct horse battery staple\n").unwrap();
    let mut cmd = env.sign();
    cmd.args(["--generate", "me", "--passphrase-file", "pass"]);
    // The summary is a result: stdout; stderr stays empty.
    run(cmd).code(0).stdout(predicate::str::contains("(key id ")).stderr("");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(env.path("me.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(env.path("me.key"))
            .unwrap()
            .contains("ENCRYPTED PRIVATE KEY")
    );
    // Never overwrites.
    let mut cmd = env.sign();
    cmd.args(["--generate", "me", "--passphrase-file", "pass"]);
    run(cmd).code(3).stderr(predicate::str::contains("already exists"));

    env.module("mod.bin", b"raw signed module");
    let mut cmd = env.sign();
    cmd.args(["mod.bin", "--key", "me.key", "--passphrase-file", "pass", "--json"]);
    let out = run(cmd).code(0).get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["mode"], "raw-key");
    let mut cmd = env.verify();
    cmd.args(["mod.bin", "--pubkey", "me.pub"]);
    run(cmd).code(0).stdout(predicate::str::contains(format!(
        "signer:    raw key {}",
        v["key_id"].as_str().unwrap()
    )));
    let mut cmd = env.verify();
    cmd.arg("mod.bin").arg("--root").arg(env.root());
    run(cmd)
        .code(1)
        .stderr(predicate::str::contains("signed with a raw key"));

    let mut cmd = env.sign();
    cmd.args(["--generate", "stranger", "--no-passphrase"]);
    run(cmd).code(0);
    let mut cmd = env.verify();
    cmd.args(["mod.bin", "--pubkey", "stranger.pub"]);
    run(cmd)
        .code(1)
        .stderr(predicate::str::contains("not by the trusted key"));

    // Wrong passphrase: could not run.
    std::fs::write(env.path("wrong"), "nope\n").unwrap();
    let mut cmd = env.sign();
    cmd.args(["mod.bin", "--key", "me.key", "--passphrase-file", "wrong"]);
    run(cmd).code(3).stderr(predicate::str::contains("wrong passphrase"));
}

#[test]
fn help_lists_examples_and_exit_codes() {
    for tool in ["sign", "verify"] {
        let mut cmd = support::command(tool);
        cmd.arg("--help");
        run(cmd)
            .code(0)
            .stdout(predicate::str::contains("EXAMPLES:"))
            .stdout(predicate::str::contains("EXIT CODES:"));
    }
}

#[test]
fn openssl_independently_verifies_signature_and_digest() {
    if !support::require_tool("openssl") {
        return;
    }
    let env = Env::new();
    let m = env.module("mod.bin", &module_bytes());
    env.sign_module(&m, &[]);
    let bundle = tessera::sign::Bundle::load(&env.path("mod.bin.sig")).unwrap();
    std::fs::write(env.path("statement.der"), bundle.statement_der()).unwrap();
    std::fs::write(env.path("sig.bin"), bundle.signature()).unwrap();
    let status = Command::new("openssl")
        .current_dir(env.pki.dir.path())
        .args(["x509", "-in", "signer.pem", "-pubkey", "-noout", "-out", "signer.pub"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("openssl")
        .current_dir(env.pki.dir.path())
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "signer.pub",
            "-rawin",
            "-in",
            "statement.der",
            "-sigfile",
            "sig.bin",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("openssl")
        .current_dir(env.pki.dir.path())
        .args(["dgst", "-sha3-256", "-r", "mod.bin"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.split_whitespace().next().unwrap(),
        tessera::pki::hex(&bundle.statement().digest)
    );
}

#[test]
fn a_signer_expired_by_now_is_rejected() {
    let env = Env::new();
    let m = env.module("mod.bin", b"module");
    env.sign_module(&m, &[]);
    let mut cmd = env.verify();
    cmd.arg("mod.bin")
        .arg("--root")
        .arg(env.root())
        .args(["--at", "2099-01-01T00:00:00Z"]);
    run(cmd)
        .code(1)
        .stderr(predicate::str::starts_with(
            "verify: error: signer is not trusted now: certificate CN=Module Signer expired at ",
        ))
        .stderr(predicate::str::contains("(checked at 2099-01-01T00:00:00Z)\n"));
}

#[test]
fn standard_input_signs_to_standard_output() {
    let env = Env::new();
    let mut cmd = env.sign();
    cmd.args([
        "-",
        "--key",
        "signer.key",
        "--cert",
        "signer.chain.pem",
        "--name",
        "piped.bin",
        "--quiet",
    ]);
    let out = assert_cmd::Command::from_std(cmd)
        .write_stdin(b"piped module".to_vec())
        .timeout(Duration::from_secs(60))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    assert!(out.starts_with(b"-----BEGIN TESSERA MODULE SIGNATURE-----\n"));
    std::fs::write(env.path("piped.sig"), &out).unwrap();
    env.module("piped.bin", b"piped module");
    let mut cmd = env.verify();
    cmd.arg("piped.bin")
        .arg("--root")
        .arg(env.root())
        .args(["--sig", "piped.sig", "--name", "piped.bin", "--quiet"]);
    run(cmd).code(0).stdout("");
    let mut cmd = env.sign();
    cmd.args(["-", "--key", "signer.key", "--cert", "signer.chain.pem"]);
    run(cmd).code(2).stderr(predicate::str::contains("--name is required"));
}

fn no_files_but(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn sign_refuses_a_chain_too_large_for_a_bundle_and_writes_nothing() {
    let env = Env::new();
    env.module("mod.bin", &module_bytes());
    let mut chain = std::fs::read_to_string(env.path("signer.chain.pem")).unwrap();
    for i in 0..6 {
        let cert = support::large_certificate(&format!("Filler {i}"), 9000);
        chain.push_str(&tessera::pki::pem::to_pem(tessera::pki::pem::CERTIFICATE, &cert));
    }
    std::fs::write(env.path("big.chain.pem"), chain).unwrap();
    let before: Vec<String> = std::fs::read_dir(env.pki.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for extra in [&[][..], &["--embed"][..]] {
        let mut cmd = env.sign();
        cmd.args(["mod.bin", "--key", "signer.key", "--cert", "big.chain.pem"])
            .args(extra);
        run(cmd)
            .code(3)
            .stdout("")
            .stderr(predicate::str::starts_with(
                "sign: error: signature bundle for \"mod.bin\" is ",
            ))
            .stderr(predicate::str::contains("bytes, more than the 65536 allowed\n"))
            .stderr(predicate::str::contains("sign: hint: CHAIN is too large"));
        let names: Vec<&str> = before.iter().map(String::as_str).collect();
        no_files_but(env.pki.dir.path(), &names);
    }
}

#[test]
fn sign_refuses_a_root_in_the_chain() {
    let env = Env::new();
    env.module("mod.bin", b"module");
    let mut chain = std::fs::read_to_string(env.path("signer.chain.pem")).unwrap();
    chain.push_str(&std::fs::read_to_string(env.root()).unwrap());
    std::fs::write(env.path("rooted.chain.pem"), chain).unwrap();
    let mut cmd = env.sign();
    cmd.args(["mod.bin", "--key", "signer.key", "--cert", "rooted.chain.pem"]);
    run(cmd).code(3).stderr(
        "sign: error: certificate chain holds the self-signed certificate CN=CLI Root (a root) at position 2; \
         signatures never carry the root\n\
         sign: hint: CHAIN is the signer's certificate and intermediates, not the root (verifiers pin it)\n",
    );
    assert!(!env.path("mod.bin.sig").exists());
}

#[test]
fn json_with_standard_input_needs_an_output_file() {
    let env = Env::new();
    let mut cmd = env.sign();
    cmd.args([
        "-",
        "--key",
        "signer.key",
        "--cert",
        "signer.chain.pem",
        "--name",
        "piped.bin",
        "--json",
    ]);
    assert_cmd::Command::from_std(cmd)
        .write_stdin(b"piped module".to_vec())
        .timeout(Duration::from_secs(60))
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with(
            "sign: error: --json with standard input needs -o",
        ))
        .stderr(predicate::str::contains(
            "sign: hint: write the signature to a file with -o OUT",
        ));

    // With -o, stdout holds the JSON report alone and the signature goes to the file.
    let mut cmd = env.sign();
    cmd.args([
        "-",
        "--key",
        "signer.key",
        "--cert",
        "signer.chain.pem",
        "--name",
        "piped.bin",
        "--json",
        "-o",
        "piped.sig",
    ]);
    let out = assert_cmd::Command::from_std(cmd)
        .write_stdin(b"piped module".to_vec())
        .timeout(Duration::from_secs(60))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["output"], "piped.sig");
    assert_eq!(report["name"], "piped.bin");
    assert!(
        std::fs::read(env.path("piped.sig"))
            .unwrap()
            .starts_with(b"-----BEGIN TESSERA MODULE SIGNATURE-----\n")
    );
}

#[test]
fn extract_write_errors_name_the_output_file() {
    let env = Env::new();
    let m = env.module("mod.bin", &module_bytes());
    env.sign_module(&m, &[]);
    // Files over 1 KiB cannot be written (EFBIG rather than SIGXFSZ, which is ignored and stays
    // ignored across exec): the module verifies, but writing OUT fails.
    let verify = support::tool("verify");
    let mut cmd = Command::new("sh");
    cmd.current_dir(env.pki.dir.path())
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2; exec \"$0\" \"$@\"")
        .arg(&verify)
        .args(["mod.bin", "--root", "ca/ca.pem", "--extract", "out.bin"]);
    run(cmd)
        .code(3)
        .stderr(predicate::str::starts_with("verify: error: cannot access out.bin: "))
        .stderr(predicate::str::contains("mod.bin").not());
    assert!(!env.path("out.bin").exists());
    no_files_but(
        env.pki.dir.path(),
        &[
            "ca",
            "mod.bin",
            "mod.bin.sig",
            "signer.chain.pem",
            "signer.key",
            "signer.pem",
        ],
    );
}
