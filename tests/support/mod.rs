//! What the integration tests share (`mod support;` in a `tests/*.rs` file): the tools under
//! test and a clean environment for them, running a child with a time limit, `openssl`, the
//! rule for outside tools (fail under `TESSERA_REQUIRE_TOOLS=1`, skip with a message
//! otherwise), and PKIs at a fixed time, made through the library or the `ca` tool.
//!
//! The channel tests have their own fixture (`tests/channel_common`), and the PostgreSQL tests
//! start their cluster with `tests/pg_support`.
#![allow(
    dead_code,
    unused_macros,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use tempfile::TempDir;
use time::OffsetDateTime;

use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile};
use tessera::pki::{KeyAlgorithm, PrivateKey, TrustStore};

// ---------------------------------------------------------------------------------------------
// The tools under test

/// Every binary of the crate, by name, as Cargo built it for this test.
pub const TOOLS: [(&str, &str); 5] = [
    ("ca", env!("CARGO_BIN_EXE_ca")),
    ("sign", env!("CARGO_BIN_EXE_sign")),
    ("verify", env!("CARGO_BIN_EXE_verify")),
    ("echo-server", env!("CARGO_BIN_EXE_echo-server")),
    ("echo-client", env!("CARGO_BIN_EXE_echo-client")),
];

/// The path of the built binary `name` (`ca`, `sign`, `verify`, `echo-server`, `echo-client`).
#[track_caller]
pub fn tool(name: &str) -> PathBuf {
    match TOOLS.iter().find(|(n, _)| *n == name) {
        Some((_, path)) => PathBuf::from(path),
        None => panic!("no tool {name:?}: the crate builds {:?}", TOOLS.map(|(n, _)| n)),
    }
}

/// The directory that holds the binaries under test (`target/debug` or the profile in use).
pub fn bin_dir() -> PathBuf {
    tool("ca").parent().unwrap().to_path_buf()
}

/// A command for the tool `name` in a clean environment: none of the variables a user may
/// have set that would change what it does (`TESSERA_PASSPHRASE`, `TESSERA_CA_DIR`,
/// `TESSERA_DB`, `RUST_LOG`, `COLUMNS`, `SSLKEYLOGFILE`), `NO_COLOR=1`, standard input empty.
pub fn command(name: &str) -> Command {
    command_path(tool(name))
}

/// The program at `path` in the clean environment of [`command`].
pub fn command_path(path: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(path);
    for var in [
        "TESSERA_PASSPHRASE",
        "TESSERA_CA_DIR",
        "TESSERA_DB",
        "RUST_LOG",
        "COLUMNS",
        "SSLKEYLOGFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// The tool `name` started by `sh -c 'PRELUDE; exec TOOL ARGS…'` in the clean environment of
/// [`command`]: for what only a shell sets up before a program starts, and the program
/// inherits (`umask 022`, `ulimit -f 128`, `trap '' HUP`: a signal ignored, as under `nohup`).
/// Add the tool's arguments with `.arg`/`.args`.
pub fn command_under_shell(prelude: &str, name: &str) -> Command {
    let mut cmd = command_path("sh");
    cmd.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(tool(name));
    cmd
}

/// `ca --dir DIR` in a clean environment (see [`command`]).
pub fn ca(dir: &Path) -> Command {
    let mut cmd = command("ca");
    cmd.arg("--dir").arg(dir);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Running a child

/// How long [`output`] and [`ok`] wait for one tool before they kill it and fail.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `cmd` with `stdin` on its standard input (empty when `None`) and collects its output.
/// A child that has not exited after `timeout` is killed, and the test fails with what it had
/// written. Standard input is written from a thread while the output is read, and a child that
/// exits without reading all of it (a usage error) is no failure: `BrokenPipe` is ignored.
#[track_caller]
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    finish(child, stdin, timeout, &format!("{cmd:?}"))
}

/// Waits at most `timeout` for a spawned `child` (killing it then and failing), after writing
/// `stdin` to its piped standard input when given; its piped stdout and stderr are collected.
#[track_caller]
pub fn finish(mut child: Child, stdin: Option<&[u8]>, timeout: Duration, what: &str) -> Output {
    let writer = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => {
            let bytes = bytes.to_vec();
            Some(std::thread::spawn(move || match pipe.write_all(&bytes) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
                _ => Ok(()),
            }))
        }
        _ => None,
    };
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.map(|t| t.join().unwrap()).unwrap_or_default();
    let stderr = stderr.map(|t| t.join().unwrap()).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "{what} did not exit within {timeout:?} and was killed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    if let Some(Err(e)) = writer.map(|w| w.join().unwrap()) {
        panic!("writing the standard input of {what}: {e}");
    }
    Output { status, stdout, stderr }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// `sign --generate k --no-passphrase` in `dir`: an unencrypted signing key `k.key` and its
/// public key `k.pub`; panics (the test fails) if `sign` does not exit 0.
pub fn generate_sign_key(dir: &Path) {
    let out = output(
        command("sign")
            .current_dir(dir)
            .args(["--generate", "k", "--no-passphrase"]),
    );
    assert!(out.status.success(), "{out:?}");
}

/// Runs `cmd` with empty standard input, within [`TIMEOUT`].
#[track_caller]
pub fn output(cmd: &mut Command) -> Output {
    run(cmd, None, TIMEOUT)
}

/// Runs `cmd` with `input` on its standard input, within [`TIMEOUT`].
#[track_caller]
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    run(cmd, Some(input), TIMEOUT)
}

/// Fails unless `out` is a success, showing `cmd`, stdout and stderr.
#[track_caller]
pub fn assert_success(cmd: &Command, out: &Output) {
    assert!(
        out.status.success(),
        "failed: {cmd:?}\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// Runs `cmd` (see [`output`]), fails unless it succeeds, and returns its stdout as text.
#[track_caller]
pub fn ok(cmd: &mut Command) -> String {
    let out = ok_output(cmd);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd` (see [`output`]) and fails unless it succeeds.
#[track_caller]
pub fn ok_output(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert_success(cmd, &out);
    out
}

/// The exit code (fails when the child was killed by a signal).
#[track_caller]
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited (not killed by a signal)")
}

/// Standard output as text (lossy).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text (lossy).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses JSON text.
#[track_caller]
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A path as an argument string.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `prefix` with `suffix` appended to its last component (`with(out, ".pem")`).
pub fn with(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------------------------
// Outside tools

/// The variable that turns every missing outside tool (openssl, xz, a tmpfs, …) into a test
/// failure instead of a skip. `make test` and `.ci/run` set it.
pub const REQUIRE_TOOLS: &str = "TESSERA_REQUIRE_TOOLS";

/// Whether [`REQUIRE_TOOLS`] is set to `1`.
pub fn tools_required() -> bool {
    std::env::var_os(REQUIRE_TOOLS).is_some_and(|v| v == "1")
}

/// Whether something a test needs is `available`. When it is not: fails under
/// `TESSERA_REQUIRE_TOOLS=1`, else prints that the test is skipped and why, and returns false
/// (the caller returns).
#[track_caller]
pub fn require(what: &str, available: bool, hint: &str) -> bool {
    if available {
        return true;
    }
    if tools_required() {
        panic!("{what} is missing and {REQUIRE_TOOLS}=1: {hint}");
    }
    eprintln!("skipped: {what} is missing ({hint}); with {REQUIRE_TOOLS}=1 this test fails instead");
    false
}

/// Whether the program `name` runs (`name -V`/`version`/`--version` may all differ, so this
/// only asks whether it starts). See [`require`].
#[track_caller]
pub fn require_tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    require(
        &format!("the program `{name}`"),
        found,
        "`make deps` installs the tools the tests use",
    )
}

/// Runs `openssl ARGS…` and fails unless it succeeds.
#[track_caller]
pub fn openssl(args: &[&str]) -> Output {
    let out = openssl_output(args);
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    out
}

/// Runs `openssl ARGS…` (whatever its exit code). OpenSSL is the independent verifier these
/// tests compare with, so its absence is a failure (`make deps` installs it).
#[track_caller]
pub fn openssl_output(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed (`make deps` installs it)")
}

// ---------------------------------------------------------------------------------------------
// PKIs

/// The fixed "now" of library tests.
pub fn now() -> OffsetDateTime {
    time::macros::datetime!(2030-06-01 12:00:00 UTC)
}

/// A root CA made through the library at a fixed time, in a fresh temporary directory
/// (`dir/ca`, which the `ca` tool opens too), issuing leaves on demand.
pub struct Pki {
    pub dir: TempDir,
    pub ca: CertificateAuthority,
}

/// How [`Pki::builder`] makes the root CA.
pub struct PkiBuilder {
    name: String,
    at: OffsetDateTime,
    request: InitRequest,
}

impl PkiBuilder {
    /// The root's common name (default `Test Root`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self.request.name = name.to_string();
        self
    }

    /// When the root is made (default [`now`]).
    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = at;
        self
    }

    /// The root's key algorithm (default Ed25519).
    pub fn key_algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.request.key_algorithm = algorithm;
        self
    }

    /// The root's lifetime (default the library's).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.request.lifetime = Some(lifetime);
        self
    }

    pub fn build(self) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &self.request, None, self.at)
            .unwrap_or_else(|e| panic!("root CA {:?}: {e}", self.name));
        Pki { dir, ca }
    }
}

impl Pki {
    /// A root CA to configure; see [`PkiBuilder`].
    pub fn builder() -> PkiBuilder {
        let mut request = InitRequest::new("Test Root");
        request.key_algorithm = KeyAlgorithm::Ed25519;
        PkiBuilder {
            name: "Test Root".into(),
            at: now(),
            request,
        }
    }

    /// A fresh Ed25519 root CA created at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self::builder().at(at).build()
    }

    /// A fresh Ed25519 root CA with the given common name.
    pub fn named(name: &str, at: OffsetDateTime) -> Self {
        Self::builder().name(name).at(at).build()
    }

    /// The CA's directory (for the `ca` tool's `--dir`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// A path in the temporary directory, beside the CA's.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.ca.root().clone()
    }

    pub fn trust(&self) -> TrustStore {
        let mut store = TrustStore::new();
        store.add_root(self.root(), "root").unwrap();
        store
    }

    /// Issues a leaf with a fresh key; returns (key, chain without the root, serial in hex).
    pub fn issue(
        &self,
        profile: Profile,
        name: &str,
        algorithm: KeyAlgorithm,
        at: OffsetDateTime,
        lifetime: Option<Duration>,
    ) -> (PrivateKey, Vec<CertificateDer<'static>>, String) {
        let mut request = IssueRequest::new(profile, name).with_key_algorithm(algorithm);
        if let Some(l) = lifetime {
            request = request.with_lifetime(l);
        }
        let issued = self.ca.issue(&request, at).unwrap();
        (issued.key.unwrap(), issued.chain, issued.info.serial.to_string())
    }

    /// Issues a leaf with a fresh key and writes it as `PREFIX.{key,pem,chain.pem}` beside the
    /// CA (no passphrase); returns its serial in hex.
    pub fn issue_files(
        &self,
        profile: Profile,
        prefix: &str,
        name: &str,
        algorithm: KeyAlgorithm,
        at: OffsetDateTime,
    ) -> String {
        let request = IssueRequest::new(profile, name).with_key_algorithm(algorithm);
        let issued = self.ca.issue(&request, at).unwrap();
        issued.write(&self.path(prefix), None).unwrap();
        issued.info.serial.to_string()
    }

    pub fn code_signer(&self, at: OffsetDateTime) -> (PrivateKey, Vec<CertificateDer<'static>>, String) {
        self.issue(Profile::CodeSigning, "Module Signer", KeyAlgorithm::Ed25519, at, None)
    }
}

/// A root and an intermediate CA made by the `ca` tool (so at the real time, as the tool is
/// used), no passphrases, in a fresh temporary directory: `root/`, `inter/`, and leaves issued
/// by the intermediate on demand, by profile and name.
pub struct ToolPki {
    pub tmp: TempDir,
}

impl ToolPki {
    /// `ca init --name ROOT` in `root/`, then `ca init --name INTER --parent root FLAGS…` in
    /// `inter/`.
    pub fn new(root: &str, inter: &str, intermediate_flags: &[&str]) -> Self {
        let pki = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        ok(ca(&pki.root()).args(["init", "--name", root, "--no-passphrase"]));
        ok(ca(&pki.inter())
            .args(["init", "--name", inter, "--no-passphrase", "--parent"])
            .arg(pki.root())
            .args(intermediate_flags));
        pki
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    pub fn inter(&self) -> PathBuf {
        self.tmp.path().join("inter")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `ca issue --profile PROFILE --name NAME --out PREFIX EXTRA…` by the intermediate;
    /// returns the prefix (`PREFIX.pem`, `PREFIX.key`, `PREFIX.chain.pem`).
    pub fn issue(&self, profile: &str, name: &str, extra: &[&str]) -> PathBuf {
        let prefix = self.path(name);
        ok(ca(&self.inter())
            .args(["issue", "--profile", profile, "--name", name, "--out"])
            .arg(&prefix)
            .args(extra));
        prefix
    }

    /// The intermediate's records, as `ca list --json` shows them.
    pub fn list(&self) -> Vec<serde_json::Value> {
        json(&ok(ca(&self.inter()).args(["list", "--json"])))
            .as_array()
            .unwrap()
            .clone()
    }
}

/// One root CA made by `ca init --no-passphrase` (at the real time) in `ca/` of a fresh
/// temporary directory, whose other paths are free for the test.
pub struct ToolCa {
    pub tmp: TempDir,
}

impl ToolCa {
    /// `ca init --name NAME --no-passphrase FLAGS…`.
    pub fn new(name: &str, flags: &[&str]) -> Self {
        let ca = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        ok(ca.cmd().args(["init", "--name", name, "--no-passphrase"]).args(flags));
        ca
    }

    /// The CA's directory.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    /// A path in the temporary directory, beside the CA's.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `ca --dir DIR` (see [`ca`]).
    pub fn cmd(&self) -> Command {
        ca(&self.dir())
    }

    /// `ca issue --profile PROFILE --json --name NAME`: what it printed.
    pub fn issue_json(&self, profile: &str, name: &str) -> serde_json::Value {
        json(&ok(self.cmd().args([
            "issue",
            "--profile",
            profile,
            "--json",
            "--name",
            name,
        ])))
    }
}

/// `newtype!(Name(Base))`: a private `struct Name(Base)` that dereferences to `Base`, so a test
/// file adds methods of its own to a shared fixture (`ToolCa`, `ToolPki`, `Pki`).
macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($base:ty)) => {
        $(#[$meta])*
        struct $name($base);

        impl std::ops::Deref for $name {
            type Target = $base;
            fn deref(&self) -> &$base {
                &self.0
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use newtype;

// ---------------------------------------------------------------------------------------------
// Certificates made outside the CA

/// `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout KEY -out CSR
/// EXTRA…`: a P-256 key and a request for it (fails unless OpenSSL succeeds).
#[track_caller]
pub fn openssl_p256_csr(key: &Path, csr: &Path, extra: &[&str]) -> Output {
    openssl_req_p256("-new", key, csr, extra)
}

/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout KEY -out CERT
/// EXTRA…`: a P-256 key and a self-signed certificate for it (fails unless OpenSSL succeeds).
#[track_caller]
pub fn openssl_p256_self_signed(key: &Path, cert: &Path, extra: &[&str]) -> Output {
    openssl_req_p256("-x509", key, cert, extra)
}

#[track_caller]
fn openssl_req_p256(mode: &str, key: &Path, out: &Path, extra: &[&str]) -> Output {
    let (key, out) = (s(key), s(out));
    let mut args = vec![
        "req",
        mode,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &out,
    ];
    args.extend_from_slice(extra);
    openssl(&args)
}

/// The 32-byte seed of an Ed25519 PKCS#8 key (RFC 8410 layout: the last 32 bytes of the
/// inner OCTET STRING that starts at offset 16).
pub fn seed(key: &PrivateKey) -> [u8; 32] {
    key.pkcs8_der()[16..48].try_into().unwrap()
}

/// A certificate of more than `size` bytes of DER (a large private extension), issued by a
/// throwaway CA: not self-signed, not a code-signing certificate. Filler for oversized chains.
pub fn large_certificate(subject: &str, size: usize) -> CertificateDer<'static> {
    let issuer_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut issuer_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    issuer_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Filler Issuer");
    let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, subject);
    let mut content = vec![0x04, 0x82];
    content.extend_from_slice(&u16::try_from(size).unwrap().to_be_bytes());
    content.resize(size + 4, 0x5a);
    params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 55555, 1],
        content,
    ));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let der = cert.der().clone();
    assert!(der.len() > size);
    der
}
