//! Issue 7 for `sign`, `verify` (and the same-file rule in `ca` and the echo tools): no output
//! ever replaces an input, `-` is standard input or output, untrusted text is shown escaped,
//! results go to stdout and diagnostics to stderr, the key-permission warning is for private
//! keys only, and a long-lived library verifier reads the clock per verification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Pki, stderr, stdout};
use time::OffsetDateTime;

use tessera::ca::{CertificateAuthority, InitRequest, Profile};
use tessera::pki::{KeyAlgorithm, PkiError};
use tessera::sign::{Bundle, CheckTime, HashAlgorithm, SignError, SignRequest, Signer, Verifier, embed};

const HINT: &str = "hint: write the output to another path; the input was left as it is\n";

/// A root CA made an hour ago in `ca/`, a code-signing certificate `signer.{pem,key,chain.pem}`,
/// and a module `m.bin` signed detached (`m.bin.sig`) and embedded (`m.bin.signed`).
struct Env {
    pki: Pki,
}

impl Env {
    fn new() -> Self {
        let now = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let env = Self {
            pki: Pki::named("Hardening Root", now),
        };
        env.issue(Profile::CodeSigning, "signer", "Module Signer", KeyAlgorithm::Ed25519);
        env.write("m.bin", &module_bytes(100_000));
        env.ok(&env.sign(&["m.bin"]));
        env.ok(&env.sign(&["m.bin", "--embed"]));
        env
    }

    fn issue(&self, profile: Profile, prefix: &str, name: &str, algorithm: KeyAlgorithm) {
        let at = OffsetDateTime::now_utc() - time::Duration::minutes(30);
        self.pki.issue_files(profile, prefix, name, algorithm, at);
    }

    fn path(&self, name: &str) -> PathBuf {
        self.pki.path(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn symlink(&self, target: &str, link: &str) {
        std::os::unix::fs::symlink(target, self.path(link)).unwrap();
    }

    fn hard_link(&self, target: &str, link: &str) {
        std::fs::hard_link(self.path(target), self.path(link)).unwrap();
    }

    fn sign(&self, args: &[&str]) -> Output {
        self.run("sign", &sign_args(args), Input::Null, Sink::Piped, &[])
    }

    fn verify(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--root".to_string(), "ca/ca.pem".to_string()]);
        self.run("verify", &all, Input::Null, Sink::Piped, &[])
    }

    /// Runs a tool in the test directory (60 s at most).
    fn run(&self, tool: &str, args: &[String], stdin: Input, stdout: Sink, env: &[(&str, &str)]) -> Output {
        let mut cmd = support::command(tool);
        cmd.current_dir(self.pki.dir.path()).args(args).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let bytes = match stdin {
            Input::Null => {
                cmd.stdin(Stdio::null());
                None
            }
            Input::Bytes(b) => {
                cmd.stdin(Stdio::piped());
                Some(b)
            }
            Input::File(p) => {
                cmd.stdin(File::open(self.path(&p)).unwrap());
                None
            }
        };
        match stdout {
            Sink::Piped => cmd.stdout(Stdio::piped()),
            Sink::AppendTo(p) => cmd.stdout(File::options().append(true).open(self.path(&p)).unwrap()),
        };
        let child = cmd.spawn().unwrap();
        support::finish(
            child,
            bytes.as_deref(),
            Duration::from_secs(60),
            &format!("{tool} {args:?}"),
        )
    }

    fn ok(&self, out: &Output) {
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    }

    /// Every file under the test directory: its bytes, or a link's target.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    out.insert(rel, format!("-> {}", target.display()).into_bytes());
                } else if meta.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.pki.dir.path(), self.pki.dir.path(), &mut out);
        out
    }
}

enum Input {
    Null,
    Bytes(Vec<u8>),
    File(String),
}

enum Sink {
    Piped,
    AppendTo(String),
}

fn sign_args(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if !args.contains(&"--key") && !args.contains(&"--generate") {
        all.extend(["--key", "signer.key", "--cert", "signer.chain.pem"].map(String::from));
    }
    all
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn module_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Exit 2, nothing on stdout, and exactly the same-file error naming both paths.
fn assert_same_file(out: &Output, tool: &str, output: &str, input: &str) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    assert_eq!(stdout(out), "");
    assert_eq!(
        stderr(out),
        format!("{tool}: error: {output} is the same file as {input}; refusing to overwrite an input\n{tool}: {HINT}")
    );
}

// ---------------------------------------------------------------------------------------------
// Kind 6: never destroy input.

#[test]
fn sign_never_writes_over_an_input() {
    let env = Env::new();
    std::fs::write(env.path("pw"), "a passphrase\n").unwrap();
    env.symlink("m.bin", "lnk");
    env.hard_link("m.bin", "hard");
    let abs = env.path("m.bin").display().to_string();
    let before = env.snapshot();
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        // The issue's example: the module replaced by its own signature.
        (
            vec!["m.bin", "-o", "m.bin"],
            "the output (-o) m.bin".into(),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "-o", "./m.bin"],
            "the output (-o) ./m.bin".into(),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "-o", &abs],
            format!("the output (-o) {abs}"),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "-o", "lnk"],
            "the output (-o) lnk".into(),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "-o", "hard"],
            "the output (-o) hard".into(),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "--embed", "-o", "m.bin"],
            "the output (-o) m.bin".into(),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "--embed", "-o", "hard"],
            "the output (-o) hard".into(),
            "the module m.bin",
        ),
        (
            vec!["m.bin", "-o", "signer.key"],
            "the output (-o) signer.key".into(),
            "the key (--key) signer.key",
        ),
        (
            vec!["m.bin", "-o", "signer.chain.pem"],
            "the output (-o) signer.chain.pem".into(),
            "the chain (--cert) signer.chain.pem",
        ),
        (
            vec!["m.bin", "--passphrase-file", "pw", "-o", "pw"],
            "the output (-o) pw".into(),
            "the passphrase file pw",
        ),
    ];
    for (args, output, input) in &cases {
        let out = env.sign(args);
        assert_same_file(&out, "sign", output, input);
        assert_eq!(env.snapshot(), before, "sign {args:?} changed a file");
    }

    // The default output names: FILE.sig a link to FILE, FILE.signed a hard link to it.
    std::fs::remove_file(env.path("m.bin.sig")).unwrap();
    env.symlink("m.bin", "m.bin.sig");
    std::fs::remove_file(env.path("m.bin.signed")).unwrap();
    env.hard_link("m.bin", "m.bin.signed");
    let before = env.snapshot();
    assert_same_file(
        &env.sign(&["m.bin"]),
        "sign",
        "the output m.bin.sig",
        "the module m.bin",
    );
    assert_same_file(
        &env.sign(&["m.bin", "--embed"]),
        "sign",
        "the output m.bin.signed",
        "the module m.bin",
    );
    // Raw-key mode is checked the same way.
    env.ok(&env.run(
        "sign",
        &strings(&["--generate", "me", "--no-passphrase"]),
        Input::Null,
        Sink::Piped,
        &[],
    ));
    let before_raw = env.snapshot();
    assert_same_file(
        &env.sign(&["m.bin", "--key", "me.key", "-o", "me.key"]),
        "sign",
        "the output (-o) me.key",
        "the key (--key) me.key",
    );
    assert_eq!(env.snapshot(), before_raw);
    assert!(before.iter().all(|(k, v)| before_raw.get(k) == Some(v)));
}

#[test]
fn sign_refuses_a_dangling_link_to_an_input_and_redirected_stdio() {
    let env = Env::new();
    // `out` dangles to `pw2`, the passphrase file named on the command line: writing through
    // the link would create that input. Refused before anything is read.
    env.symlink("pw2", "out");
    let before = env.snapshot();
    assert_same_file(
        &env.sign(&["m.bin", "--passphrase-file", "pw2", "-o", "out"]),
        "sign",
        "the output (-o) out",
        "the passphrase file pw2",
    );
    assert_eq!(env.snapshot(), before);

    // `sign m.bin -o - >> m.bin`: standard output is the module.
    let original = env.read("m.bin");
    let out = env.run(
        "sign",
        &sign_args(&["m.bin", "-o", "-"]),
        Input::Null,
        Sink::AppendTo("m.bin".into()),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "sign: error: standard output is the same file as the module m.bin; refusing to overwrite an input\nsign: {HINT}"
        )
    );
    assert_eq!(env.read("m.bin"), original);

    // `sign - -o m.bin.sig < m.bin.sig`: the output is standard input.
    let sig = env.read("m.bin.sig");
    let out = env.run(
        "sign",
        &sign_args(&["-", "--name", "m.bin", "-o", "m.bin.sig"]),
        Input::File("m.bin.sig".into()),
        Sink::Piped,
        &[],
    );
    assert_same_file(&out, "sign", "the output (-o) m.bin.sig", "standard input");
    assert_eq!(env.read("m.bin.sig"), sig);
}

#[test]
fn sign_generate_never_writes_over_its_passphrase_file() {
    let env = Env::new();
    std::fs::write(env.path("pw.key"), "a passphrase\n").unwrap();
    std::fs::write(env.path("pass"), "another passphrase\n").unwrap();
    env.symlink("pass", "me.pub");
    let before = env.snapshot();
    let generate = |args: &[&str]| env.run("sign", &strings(args), Input::Null, Sink::Piped, &[]);
    assert_same_file(
        &generate(&["--generate", "pw", "--passphrase-file", "pw.key"]),
        "sign",
        "the private key pw.key",
        "the passphrase file pw.key",
    );
    assert_same_file(
        &generate(&["--generate", "me", "--passphrase-file", "pass"]),
        "sign",
        "the public key me.pub",
        "the passphrase file pass",
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn verify_never_writes_over_an_input() {
    let env = Env::new();
    env.symlink("m.bin", "lnk");
    env.hard_link("m.bin", "hard");
    std::fs::copy(env.path("m.bin.sig"), env.path("s.sig")).unwrap();
    env.pki
        .ca
        .write_crl(OffsetDateTime::now_utc(), Duration::from_secs(86_400))
        .unwrap();
    env.ok(&env.run(
        "sign",
        &strings(&["--generate", "me", "--no-passphrase"]),
        Input::Null,
        Sink::Piped,
        &[],
    ));
    env.ok(&env.sign(&["m.bin", "--key", "me.key", "-o", "raw.sig"]));
    let before = env.snapshot();
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        // The issue's examples.
        (
            vec!["m.bin", "--extract", "m.bin.sig"],
            "the output (--extract) m.bin.sig",
            "the signature m.bin.sig",
        ),
        (
            vec!["m.bin.signed", "--extract", "m.bin.signed"],
            "the output (--extract) m.bin.signed",
            "the module m.bin.signed",
        ),
        (
            vec!["m.bin", "--extract", "m.bin"],
            "the output (--extract) m.bin",
            "the module m.bin",
        ),
        (
            vec!["m.bin", "--extract", "lnk"],
            "the output (--extract) lnk",
            "the module m.bin",
        ),
        (
            vec!["m.bin", "--extract", "hard"],
            "the output (--extract) hard",
            "the module m.bin",
        ),
        (
            vec!["m.bin", "--sig", "s.sig", "--extract", "s.sig"],
            "the output (--extract) s.sig",
            "the signature (--sig) s.sig",
        ),
        (
            vec!["m.bin", "--extract", "ca/ca.pem"],
            "the output (--extract) ca/ca.pem",
            "the root (--root) ca/ca.pem",
        ),
        (
            vec!["m.bin", "--crl", "ca/crl.pem", "--extract", "ca/crl.pem"],
            "the output (--extract) ca/crl.pem",
            "the CRL (--crl) ca/crl.pem",
        ),
    ];
    for (args, output, input) in &cases {
        assert_same_file(&env.verify(args), "verify", output, input);
        assert_eq!(env.snapshot(), before, "verify {args:?} changed a file");
    }
    let raw = env.run(
        "verify",
        &strings(&["m.bin", "--sig", "raw.sig", "--pubkey", "me.pub", "--extract", "me.pub"]),
        Input::Null,
        Sink::Piped,
        &[],
    );
    assert_same_file(
        &raw,
        "verify",
        "the output (--extract) me.pub",
        "the public key (--pubkey) me.pub",
    );

    // A dangling link to an input path, and standard output appended to the module.
    env.symlink("later.crl", "out");
    let before = env.snapshot();
    assert_same_file(
        &env.verify(&["m.bin", "--crl", "later.crl", "--extract", "out"]),
        "verify",
        "the output (--extract) out",
        "the CRL (--crl) later.crl",
    );
    let out = env.run(
        "verify",
        &strings(&["m.bin", "--root", "ca/ca.pem", "--extract", "-"]),
        Input::Null,
        Sink::AppendTo("m.bin".into()),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("verify: error: standard output is the same file as the module m.bin;"));
    assert_eq!(env.snapshot(), before);
}

#[test]
fn ca_never_writes_over_an_input_or_another_cas_files() {
    let env = Env::new();
    env.pki
        .ca
        .write_crl(OffsetDateTime::now_utc(), Duration::from_secs(86_400))
        .unwrap();
    let mut other = InitRequest::new("Other Root");
    other.key_algorithm = KeyAlgorithm::Ed25519;
    let other = CertificateAuthority::init(&env.path("other"), &other, None, OffsetDateTime::now_utc()).unwrap();
    other
        .write_crl(OffsetDateTime::now_utc(), Duration::from_secs(86_400))
        .unwrap();
    let req = Command::new("openssl")
        .current_dir(env.pki.dir.path())
        .args(["req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", "req.key"])
        .args(["-subj", "/CN=req.example.test", "-out", "req.pem"])
        .output()
        .unwrap();
    assert!(req.status.success(), "{}", String::from_utf8_lossy(&req.stderr));
    std::fs::write(env.path("pw"), "a passphrase\n").unwrap();
    std::fs::create_dir(env.path("new")).unwrap();
    env.symlink("../pw", "new/ca.key");
    let before = env.snapshot();
    let ca = |args: &[&str]| env.run("ca", &strings(args), Input::Null, Sink::Piped, &[]);

    for (file, role) in [
        ("ca.pem", "the CA's certificate"),
        ("ca.key", "the CA's key"),
        ("chain.pem", "the CA's chain"),
        ("ca.db", "the CA's database"),
    ] {
        let path = format!("ca/{file}");
        assert_same_file(
            &ca(&["--dir", "ca", "crl", "--out", &path]),
            "ca",
            &format!("the output (--out) {path}"),
            &format!("{role} {path}"),
        );
    }
    let out = ca(&["--dir", "ca", "crl", "--out", "other/crl.pem"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "ca: error: the output (--out) other/crl.pem is a file of the CA in other; refusing to replace it\n\
         ca: hint: write the CRL to another path; `ca crl` keeps this CA's own crl.pem up to date\n"
    );
    // `ca issue --csr req.pem --out req` would write req.pem, the request itself.
    assert_same_file(
        &ca(&[
            "--dir",
            "ca",
            "issue",
            "--profile",
            "server",
            "--name",
            "req.example.test",
            "--csr",
            "req.pem",
            "--out",
            "req",
        ]),
        "ca",
        "the output PREFIX.pem (--out) req.pem",
        "the request (--csr) req.pem",
    );
    assert_same_file(
        &ca(&[
            "--dir",
            "ca",
            "issue",
            "--profile",
            "server",
            "--name",
            "x.test",
            "--out",
            "ca/ca",
        ]),
        "ca",
        "the output PREFIX.pem (--out) ca/ca.pem",
        "the CA's certificate ca/ca.pem",
    );
    // `ca init` whose new key file is a link to its own passphrase file.
    assert_same_file(
        &ca(&["--dir", "new", "init", "--passphrase-file", "pw"]),
        "ca",
        "the CA's key new/ca.key",
        "the passphrase file (--passphrase-file) pw",
    );
    assert_eq!(env.snapshot(), before);
    // The CA's own crl.pem is fine: it is what `ca crl` writes anyway.
    let out = ca(&["--dir", "ca", "crl", "--out", "ca/crl.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn echo_tools_never_append_their_key_log_to_an_input() {
    let env = Env::new();
    env.issue(Profile::Server, "server", "localhost", KeyAlgorithm::P256);
    env.issue(Profile::Client, "client", "client", KeyAlgorithm::P256);
    let before = env.snapshot();
    let out = env.run(
        "echo-server",
        &strings(&[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "server.chain.pem",
            "--key",
            "server.key",
        ]),
        Input::Null,
        Sink::Piped,
        &[("SSLKEYLOGFILE", "server.key")],
    );
    assert_same_file(
        &out,
        "echo-server",
        "the key log (SSLKEYLOGFILE) server.key",
        "the key (--key) server.key",
    );
    let out = env.run(
        "echo-client",
        &strings(&[
            "--connect",
            "127.0.0.1:9",
            "--ca",
            "ca/ca.pem",
            "--cert",
            "client.chain.pem",
            "--key",
            "client.key",
            "hello",
        ]),
        Input::Null,
        Sink::Piped,
        &[("SSLKEYLOGFILE", "ca/ca.pem")],
    );
    assert_same_file(
        &out,
        "echo-client",
        "the key log (SSLKEYLOGFILE) ca/ca.pem",
        "the root (--ca) ca/ca.pem",
    );
    assert_eq!(env.snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// `-` is standard input or output.

#[test]
fn sign_to_standard_output_and_from_standard_input() {
    let env = Env::new();
    let module = env.read("m.bin");
    // `sign FILE -o -`: the signature on stdout, nothing else anywhere, no file named `-`.
    let out = env.sign(&["m.bin", "-o", "-", "--root", "ca/ca.pem"]);
    env.ok(&out);
    assert_eq!(stderr(&out), "");
    assert!(!env.path("-").exists());
    let bundle = Bundle::from_pem(&out.stdout, "stdout").unwrap();
    assert_eq!(bundle.statement().digest, HashAlgorithm::Sha3_256.digest(&module));
    assert_eq!(bundle.statement().length, module.len() as u64);
    // ... which `verify --sig -` reads back from stdin.
    let verified = env.run(
        "verify",
        &strings(&["m.bin", "--sig", "-", "--root", "ca/ca.pem"]),
        Input::Bytes(out.stdout.clone()),
        Sink::Piped,
        &[],
    );
    env.ok(&verified);
    assert!(stdout(&verified).starts_with("m.bin: OK\n"));

    // `sign -` with -o FILE.
    let out = env.run(
        "sign",
        &sign_args(&["-", "--name", "m.bin", "-o", "piped.sig"]),
        Input::Bytes(module.clone()),
        Sink::Piped,
        &[],
    );
    env.ok(&out);
    env.ok(&env.verify(&["m.bin", "--sig", "piped.sig", "--name", "m.bin"]));

    // `sign - --embed -o -`: exactly the module, then the trailer; verified from a pipe.
    let out = env.run(
        "sign",
        &sign_args(&["-", "--name", "m.bin", "--embed", "-o", "-", "--root", "ca/ca.pem"]),
        Input::Bytes(module.clone()),
        Sink::Piped,
        &[],
    );
    env.ok(&out);
    assert_eq!(stderr(&out), "");
    assert_eq!(&out.stdout[..module.len()], &module[..]);
    let (bundle, _) = {
        let path = env.write("embedded.bin", &out.stdout);
        let file = File::open(&path).unwrap();
        embed::read_embedded(&file, out.stdout.len() as u64, "embedded.bin")
            .unwrap()
            .unwrap()
    };
    assert_eq!(out.stdout.len(), module.len() + embed::trailer(&bundle).unwrap().len());
    let extracted = env.run(
        "verify",
        &strings(&["-", "--root", "ca/ca.pem", "--extract", "-"]),
        Input::Bytes(out.stdout.clone()),
        Sink::Piped,
        &[],
    );
    env.ok(&extracted);
    assert_eq!(extracted.stdout, module, "--extract - gives exactly the module");
    assert_eq!(stderr(&extracted), "");
    assert!(!env.path("-").exists());
}

#[test]
fn verify_reads_the_module_or_the_signature_from_standard_input() {
    let env = Env::new();
    let module = env.read("m.bin");
    let signed = env.read("m.bin.signed");
    let verify = |args: &[&str], stdin: Input| {
        let mut all = strings(args);
        all.extend(strings(&["--root", "ca/ca.pem"]));
        env.run("verify", &all, stdin, Sink::Piped, &[])
    };
    // Module on a pipe, detached signature in a file.
    let out = verify(&["-", "--sig", "m.bin.sig"], Input::Bytes(module.clone()));
    env.ok(&out);
    assert!(stdout(&out).starts_with("standard input: OK\n"));
    assert!(stdout(&out).contains("(detached signature)"));
    // Tampered on the pipe: rejected.
    let mut tampered = module.clone();
    tampered[5000] ^= 1;
    let out = verify(&["-", "--sig", "m.bin.sig"], Input::Bytes(tampered));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    // Module redirected from a file: its embedded signature is found and checked first.
    let out = verify(&["-"], Input::File("m.bin.signed".into()));
    env.ok(&out);
    assert!(stdout(&out).contains("(embedded signature)"));
    let out = verify(&["-", "--sig", "m.bin.sig"], Input::File("m.bin".into()));
    env.ok(&out);
    // Embedded signature on a pipe.
    let out = verify(&["-", "--name", "m.bin"], Input::Bytes(signed.clone()));
    env.ok(&out);
    assert!(stdout(&out).contains("(embedded signature)"));
    // A plain module on a pipe without --sig: what to do.
    let out = verify(&["-"], Input::Bytes(module.clone()));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        "verify: error: standard input has no embedded signature, and no detached signature was given\n\
         verify: hint: pass the detached signature with --sig SIG (a module read from a pipe has no FILE.sig beside it)\n"
    );
    // Signature on stdin.
    let sig = env.read("m.bin.sig");
    env.ok(&verify(&["m.bin", "--sig", "-"], Input::Bytes(sig.clone())));
    env.ok(&verify(&["m.bin", "--sig", "-"], Input::File("m.bin.sig".into())));
    // Both on stdin at once: a usage error.
    let out = verify(&["-", "--sig", "-"], Input::Bytes(sig));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "verify: error: standard input can carry the module (FILE -) or its signature (--sig -), not both\n\
         verify: hint: give one of them as a file\n"
    );
}

/// Starts writing `bytes` into the named pipe `path` (the writer waits for a reader).
fn feed_fifo(path: PathBuf, bytes: Vec<u8>) {
    std::thread::spawn(move || {
        if let Ok(mut fifo) = File::options().write(true).open(path) {
            let _ = fifo.write_all(&bytes);
        }
    });
}

#[test]
fn a_module_on_a_named_pipe_is_read_as_a_stream() {
    let env = Env::new();
    let module = env.read("m.bin");
    let fifo = |name: &str| {
        let made = Command::new("mkfifo").arg(env.path(name)).status().unwrap();
        assert!(made.success());
    };
    // A pipe has no size: with FILE.sig beside it, it is checked against that.
    fifo("p.bin");
    std::fs::copy(env.path("m.bin.sig"), env.path("p.bin.sig")).unwrap();
    feed_fifo(env.path("p.bin"), module.clone());
    let out = env.verify(&["p.bin", "--name", "m.bin"]);
    env.ok(&out);
    assert!(stdout(&out).starts_with("p.bin: OK\n"), "{}", stdout(&out));
    // With an embedded signature, extracted exactly.
    fifo("p.signed");
    feed_fifo(env.path("p.signed"), env.read("m.bin.signed"));
    let out = env.verify(&["p.signed", "--extract", "-"]);
    env.ok(&out);
    assert_eq!(out.stdout, module);
    // A plain module on a pipe, no signature anywhere.
    fifo("q.bin");
    feed_fifo(env.path("q.bin"), module.clone());
    let out = env.verify(&["q.bin"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out)
            .starts_with("verify: error: q.bin has no embedded signature, and no detached signature was given\n")
    );
    // The library reads it the same way.
    fifo("lib.signed");
    feed_fifo(env.path("lib.signed"), env.read("m.bin.signed"));
    let mut trust = tessera::pki::TrustStore::new();
    trust.add_root(env.pki.ca.root().clone(), "root").unwrap();
    let loaded = Verifier::new(trust)
        .load_verified(&env.path("lib.signed"), None)
        .unwrap();
    assert_eq!(loaded.bytes(), &module[..]);
    assert!(loaded.verification().embedded);
}

#[test]
fn extract_to_standard_output_releases_only_verified_bytes() {
    let env = Env::new();
    let module = env.read("m.bin");
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().to_str().unwrap().to_string();
    let extract = |file: &str, stdin: Input| {
        env.run(
            "verify",
            &strings(&[file, "--root", "ca/ca.pem", "--extract", "-"]),
            stdin,
            Sink::Piped,
            &[("TMPDIR", tmpdir.as_str())],
        )
    };
    let out = extract("m.bin.signed", Input::Null);
    env.ok(&out);
    assert_eq!(out.stdout, module);
    assert_eq!(stderr(&out), "");
    let out = extract("m.bin", Input::Null);
    env.ok(&out);
    assert_eq!(out.stdout, module);
    // A tampered module: rejected, and not one byte of it on stdout.
    let mut signed = env.read("m.bin.signed");
    signed[70_000] ^= 0x80;
    env.write("bad.signed", &signed);
    let out = extract("bad.signed", Input::Null);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    let out = extract("-", Input::Bytes(signed));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    // The spool file never outlives the run.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(!env.path("-").exists());
}

#[test]
fn a_large_module_with_sha3_512_round_trips_through_pipes() {
    let env = Env::new();
    // Larger than the reader's chunk and the held-back window, so the window slides.
    let module = module_bytes(3 * 1024 * 1024 + 12_345);
    let out = env.run(
        "sign",
        &sign_args(&["-", "--name", "big.bin", "--embed", "--hash", "sha3-512", "-o", "-"]),
        Input::Bytes(module.clone()),
        Sink::Piped,
        &[],
    );
    env.ok(&out);
    let extracted = env.run(
        "verify",
        &strings(&["-", "--root", "ca/ca.pem", "--name", "big.bin", "--extract", "-"]),
        Input::Bytes(out.stdout.clone()),
        Sink::Piped,
        &[],
    );
    env.ok(&extracted);
    assert_eq!(extracted.stdout.len(), module.len());
    assert!(extracted.stdout == module);
    // With --json the report goes to stdout, so the bytes go to a file.
    let json = env.run(
        "verify",
        &strings(&["-", "--root", "ca/ca.pem", "--json", "--extract", "big.out"]),
        Input::Bytes(out.stdout),
        Sink::Piped,
        &[],
    );
    env.ok(&json);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["hash"], "sha3-512");
    assert_eq!(v["length"], module.len() as u64);
    assert_eq!(v["embedded"], true);
    assert_eq!(v["file"], "-");
    assert_eq!(v["extracted"], "big.out");
    assert!(env.read("big.out") == module);
}

#[test]
fn json_and_data_cannot_share_standard_output() {
    let env = Env::new();
    let out = env.sign(&["m.bin", "-o", "-", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "sign: error: --json and -o - would both write to standard output\n\
         sign: hint: write the signature to a file with -o OUT; --json then prints only the report\n"
    );
    let out = env.verify(&["m.bin", "--json", "--extract", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "verify: error: --json and --extract - would both write to standard output\n\
         verify: hint: extract to a file with --extract OUT, or drop --json\n"
    );
    // Nothing was extracted; stdout holds only the JSON failure report, as with every --json.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["valid"].as_bool(), v["exit_code"].as_u64()), (Some(false), Some(2)));
}

// ---------------------------------------------------------------------------------------------
// Messages: untrusted text escaped; results on stdout, diagnostics on stderr; -q.

#[test]
fn a_bidi_module_name_and_subject_are_shown_escaped() {
    let env = Env::new();
    env.issue(
        Profile::CodeSigning,
        "evil",
        "Evil \u{202E}gpj.exe Signer",
        KeyAlgorithm::Ed25519,
    );
    let name = "invoice\u{202E}fdp.exe";
    let out = env.sign(&[
        "m.bin",
        "--key",
        "evil.key",
        "--cert",
        "evil.chain.pem",
        "--name",
        name,
        "-o",
        "evil.sig",
    ]);
    env.ok(&out);
    assert!(stdout(&out).starts_with("signed invoice\\u{202e}fdp.exe (100000 bytes, sha3-256 "));
    assert!(stdout(&out).contains("  signer:    CN=Evil \\u{202e}gpj.exe Signer (serial "));

    let out = env.verify(&["m.bin", "--sig", "evil.sig"]);
    env.ok(&out);
    let text = stdout(&out);
    assert!(text.contains("\n  name:      invoice\\u{202e}fdp.exe\n"), "{text}");
    assert!(
        text.contains("\n  signer:    CN=Evil \\u{202e}gpj.exe Signer (serial "),
        "{text}"
    );
    assert!(
        text.contains("\n  chain:     CN=Evil \\u{202e}gpj.exe Signer <- CN=Hardening Root\n"),
        "{text}"
    );
    // The wrong-name refusal quotes the signed name: escaped too.
    let out = env.verify(&["m.bin", "--sig", "evil.sig", "--name", "m.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invoice\\u{202e}fdp.exe"), "{}", stderr(&out));
    for out in [&out, &env.verify(&["m.bin", "--sig", "evil.sig"])] {
        assert!(!stdout(out).contains('\u{202E}') && !stderr(out).contains('\u{202E}'));
    }
    // JSON keeps the real text, as valid JSON.
    let out = env.verify(&["m.bin", "--sig", "evil.sig", "--json"]);
    env.ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], name);
    assert_eq!(v["signer"]["subject"], "CN=Evil \u{202E}gpj.exe Signer");
}

#[test]
fn results_on_stdout_diagnostics_on_stderr_and_quiet_means_errors_only() {
    let env = Env::new();
    // With --root the chain is checked through: no warning.
    let out = env.sign(&["m.bin", "-o", "a.sig", "--root", "ca/ca.pem"]);
    env.ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("signed m.bin (100000 bytes, sha3-256 "), "{text}");
    assert!(text.contains("\n  signer:    CN=Module Signer (serial "));
    assert!(text.ends_with("\n  wrote:     a.sig\n"));
    assert_eq!(stderr(&out), "");
    let out = env.sign(&["m.bin", "-o", "b.sig", "-q"]);
    env.ok(&out);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
    assert!(env.path("b.sig").exists());
    let generate = |args: &[&str]| env.run("sign", &strings(args), Input::Null, Sink::Piped, &[]);
    let out = generate(&["--generate", "me", "--no-passphrase"]);
    env.ok(&out);
    assert!(stdout(&out).starts_with("wrote me.key (private, keep it secret) and me.pub (key id "));
    assert_eq!(stderr(&out), "");
    let out = generate(&["--generate", "you", "--no-passphrase", "-q"]);
    env.ok(&out);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));

    let out = env.verify(&["m.bin", "--sig", "a.sig"]);
    env.ok(&out);
    assert!(stdout(&out).starts_with("m.bin: OK\n"));
    assert_eq!(stderr(&out), "");
    let out = env.verify(&["m.bin", "--sig", "a.sig", "-q"]);
    env.ok(&out);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
    // -q still shows errors.
    let out = env.verify(&["m.bin", "--sig", "a.sig", "-q", "--name", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).starts_with("verify: error: module is signed as \"m.bin\", not \"other\"\n"));
    let out = env.sign(&["missing.bin", "-q"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).starts_with("sign: error: cannot access missing.bin: "));
}

#[test]
fn help_shows_each_tools_examples_and_exit_codes() {
    let env = Env::new();
    let help = |tool: &str| {
        let out = env.run(tool, &strings(&["--help"]), Input::Null, Sink::Piped, &[]);
        env.ok(&out);
        stdout(&out)
    };
    let sign = help("sign");
    for line in [
        "EXAMPLES:\n",
        "  build | sign - --name module.so --key signer.key --cert signer.chain.pem > module.so.sig\n",
        "  sign --generate me ",
        "EXIT CODES:\n  0  signed (or key pair generated)\n  2  usage error, including an output that is one of the inputs",
        "\n  3  could not sign: ",
    ] {
        assert!(sign.contains(line), "sign --help lacks {line:?}:\n{sign}");
    }
    assert!(!sign.contains("\n  1  "), "sign never exits 1:\n{sign}");
    let verify = help("verify");
    for line in [
        "EXAMPLES:\n",
        "  curl -s https://example.test/m.so | verify - --sig m.so.sig --root ca/ca.pem\n",
        "  verify m.so.signed --root ca/ca.pem --extract - | sha256sum",
        "EXIT CODES:\n  0  valid",
        "\n  1  rejected: tampered",
        "\n  2  usage error, including an output that is one of the inputs",
        "\n  3  could not run: ",
    ] {
        assert!(verify.contains(line), "verify --help lacks {line:?}:\n{verify}");
    }
}

#[test]
fn json_numbers_and_times_are_consistent() {
    let env = Env::new();
    let out = env.sign(&["m.bin", "-o", "j.sig", "--json"]);
    env.ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["length"], 100_000);
    let seconds_z = |s: &str| {
        s.len() == 20
            && s.ends_with('Z')
            && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    };
    assert!(seconds_z(v["signed_at"].as_str().unwrap()), "{v}");
    // --at with a fraction and an offset: reported in UTC, whole seconds.
    let at = OffsetDateTime::now_utc()
        .to_offset(time::macros::offset!(+2))
        .replace_nanosecond(500_000_000)
        .unwrap();
    let at_text = at.format(&time::format_description::well_known::Rfc3339).unwrap();
    let out = env.verify(&["m.bin", "--sig", "j.sig", "--json", "--at", &at_text]);
    env.ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = tessera::pki::rfc3339(at.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap());
    assert_eq!(v["verified_at"], expected.as_str());
    assert!(seconds_z(v["verified_at"].as_str().unwrap()));
    assert!(seconds_z(v["signed_at"].as_str().unwrap()));
    assert_eq!(v["length"], 100_000);
    // Without --at, "now" is whole seconds too.
    let out = env.verify(&["m.bin", "--sig", "j.sig", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(seconds_z(v["verified_at"].as_str().unwrap()), "{v}");
}

// ---------------------------------------------------------------------------------------------
// The key-permission warning is for private keys only.

#[test]
fn only_private_keys_draw_the_permission_warning() {
    let env = Env::new();
    env.ok(&env.run(
        "sign",
        &strings(&["--generate", "me", "--no-passphrase"]),
        Input::Null,
        Sink::Piped,
        &[],
    ));
    std::fs::set_permissions(env.path("me.pub"), std::fs::Permissions::from_mode(0o644)).unwrap();
    const WARNING: &str = "private key file is accessible to group or others";
    // A public key or a certificate passed as --key: the error, no permission warning.
    for wrong in ["me.pub", "signer.pem"] {
        let out = env.sign(&["m.bin", "--key", wrong, "-o", "x.sig"]);
        assert_eq!(out.status.code(), Some(3));
        assert!(!stderr(&out).contains(WARNING), "{}", stderr(&out));
        assert!(stderr(&out).contains("no PRIVATE KEY"), "{}", stderr(&out));
    }
    let out = env.run(
        "verify",
        &strings(&["m.bin", "--pubkey", "me.pub", "--sig", "m.bin.sig"]),
        Input::Null,
        Sink::Piped,
        &[],
    );
    assert!(!stderr(&out).contains(WARNING));
    // A private key readable by others: signed, with the warning on stderr.
    std::fs::set_permissions(env.path("me.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.sign(&["m.bin", "--key", "me.key", "-o", "raw.sig"]);
    env.ok(&out);
    assert!(stderr(&out).contains(WARNING), "{}", stderr(&out));
    assert!(stderr(&out).contains("me.key"));
    // The same key at 0600: silent.
    std::fs::set_permissions(env.path("me.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.sign(&["m.bin", "--key", "me.key", "-o", "raw.sig"]);
    env.ok(&out);
    assert_eq!(stderr(&out), "");
}

// ---------------------------------------------------------------------------------------------
// Library: the verification time is read per verification; embedded signatures on a pipe.

#[test]
fn a_long_lived_verifier_reads_its_clock_at_each_verification() {
    let t0 = support::now();
    let pki = support::Pki::new(t0 - time::Duration::days(10));
    let (key, chain, _) = pki.issue(
        Profile::CodeSigning,
        "Short Signer",
        KeyAlgorithm::Ed25519,
        t0 - time::Duration::days(1),
        Some(Duration::from_secs(3 * 86_400)),
    );
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let module = module_bytes(10_000);
    let bundle = signer.sign_bytes(&module, &SignRequest::new("m.so", t0)).unwrap();
    let clock = Arc::new(Mutex::new(t0));
    let reading = Arc::clone(&clock);
    let verifier = Verifier::new(pki.trust()).with_clock(move || *reading.lock().unwrap());
    let first = verifier.verify_reader(&bundle, &module[..], "m.so").unwrap();
    assert_eq!(first.verification().verified_at, t0);
    // The same verifier, later: the clock moved past the signer's expiry.
    *clock.lock().unwrap() = t0 + time::Duration::days(5);
    let err = verifier.verify_reader(&bundle, &module[..], "m.so").unwrap_err();
    assert!(
        matches!(
            err,
            SignError::Untrusted {
                when: CheckTime::Now,
                source: PkiError::Expired { .. }
            }
        ),
        "{err:?}"
    );
    // A fixed time is fixed.
    let fixed = Verifier::new(pki.trust()).at(t0 + time::Duration::hours(2));
    assert_eq!(
        fixed
            .verify_reader(&bundle, &module[..], "m.so")
            .unwrap()
            .verification()
            .verified_at,
        t0 + time::Duration::hours(2)
    );
    // A verifier on the system clock, for a certificate valid now.
    let now_pki = support::Pki::new(OffsetDateTime::now_utc() - time::Duration::days(1));
    let (key, chain, _) = now_pki.code_signer(OffsetDateTime::now_utc() - time::Duration::hours(1));
    let bundle = Signer::with_certificate(&key, chain)
        .unwrap()
        .sign_bytes(&module, &SignRequest::new("m.so", OffsetDateTime::now_utc()))
        .unwrap();
    let verified = Verifier::new(now_pki.trust())
        .verify_reader(&bundle, &module[..], "m.so")
        .unwrap();
    assert!((verified.verification().verified_at - OffsetDateTime::now_utc()).abs() < time::Duration::minutes(1));
}

/// A reader that hands out a few bytes at a time, like a slow pipe.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(777);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn embedded_signatures_verify_from_a_stream_in_one_pass() {
    let t0 = support::now();
    let pki = support::Pki::new(t0 - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(t0 - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let verifier = Verifier::new(pki.trust()).at(t0);
    for (len, hash) in [
        (0usize, HashAlgorithm::Sha3_256),
        (10, HashAlgorithm::Sha3_512),
        (200_000, HashAlgorithm::Sha3_256),
        (1_500_000, HashAlgorithm::Sha3_512),
    ] {
        let module = module_bytes(len);
        let bundle = signer
            .sign_bytes(&module, &SignRequest::new("m.so", t0).with_hash(hash))
            .unwrap();
        let mut file = module.clone();
        file.extend_from_slice(&embed::trailer(&bundle).unwrap());
        let mut seen = Vec::new();
        let mut last = 0;
        let v = verifier
            .verify_embedded_stream(
                Trickle(&file),
                "pipe",
                &mut |c| {
                    seen.extend_from_slice(c);
                    Ok(())
                },
                &mut |done| last = done,
            )
            .unwrap();
        assert_eq!(seen, module, "the sink gets the payload, never the signature");
        assert_eq!(last, file.len() as u64);
        assert_eq!((v.length, v.hash, v.embedded), (len as u64, hash, true));

        // Tampered payload, a byte after the footer, no footer at all.
        if len > 0 {
            let mut bad = file.clone();
            bad[len / 2] ^= 1;
            let err = verifier.verify_embedded_stream(&bad[..], "pipe", &mut |_| Ok(()), &mut |_| {});
            assert!(matches!(err, Err(SignError::DigestMismatch)), "{err:?}");
        }
        let mut longer = file.clone();
        longer.push(0);
        for input in [&longer[..], &module[..]] {
            let err = verifier.verify_embedded_stream(input, "pipe", &mut |_| Ok(()), &mut |_| {});
            assert!(
                matches!(&err, Err(SignError::NoEmbeddedSignature { what }) if what == "pipe"),
                "{err:?}"
            );
        }
    }
    // A stream shorter than its footer claims.
    let mut short = embed::footer(5000).unwrap().to_vec();
    short.splice(0..0, [0u8; 100]);
    let err = verifier.verify_embedded_stream(&short[..], "pipe", &mut |_| Ok(()), &mut |_| {});
    assert!(matches!(err, Err(SignError::MalformedBundle { .. })), "{err:?}");
}
