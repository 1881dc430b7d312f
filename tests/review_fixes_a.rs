//! Review fixes (part a): outputs that are FIFOs, devices, pipes or symbolic links are written
//! through, not replaced; `-` reads standard input for every file input; passphrase files lose
//! exactly one line ending; `ca init` makes its directory 0700 and its state files with fixed
//! modes; `sign` refuses a chain `verify` would refuse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{code, stderr};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A root CA in `ca/`, a code-signing certificate `s.{key,pem,chain.pem}`, a module `m`.
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        env.ok(&env.run(
            "ca",
            &["init", "--dir", "ca", "--name", "R", "--no-passphrase", "-q"],
            None,
        ));
        env.ok(&env.run(
            "ca",
            &[
                "--dir",
                "ca",
                "issue",
                "--profile",
                "code-signing",
                "--name",
                "s",
                "--out",
                "s",
                "-q",
            ],
            None,
        ));
        std::fs::write(env.path("m"), (0..1000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()).unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = support::command(tool);
        cmd.args(args).current_dir(self.dir.path());
        support::run(&mut cmd, stdin, support::TIMEOUT)
    }

    fn ok(&self, out: &Output) {
        assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    }

    fn mknod_null(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        let status = Command::new("mknod")
            .args(["-m", "666"])
            .arg(&path)
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(status.success(), "mknod needs root (these tests make /dev/null copies)");
        path
    }

    fn mkfifo(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        assert!(Command::new("mkfifo").arg(&path).status().unwrap().success());
        path
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

fn is_char_device(path: &Path) -> bool {
    std::fs::symlink_metadata(path).unwrap().file_type().is_char_device()
}

fn is_fifo(path: &Path) -> bool {
    std::fs::symlink_metadata(path).unwrap().file_type().is_fifo()
}

/// Reads a FIFO to its end on a thread (bounded: the writer is a tool that exits).
fn drain(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read(path).unwrap())
}

const SIGN: [&str; 4] = ["--key", "s.key", "--cert", "s.chain.pem"];

#[test]
fn devices_fifos_and_links_are_written_through() {
    let env = Env::new();
    let mynull = env.mknod_null("mynull");
    let mut args = vec!["m"];
    args.extend(SIGN);
    args.extend(["-o", "mynull", "-q"]);
    env.ok(&env.run("sign", &args, None));
    assert!(is_char_device(&mynull), "sign -o replaced the device");

    // verify --extract into a device
    let mut args = vec!["m"];
    args.extend(SIGN);
    args.push("-q");
    env.ok(&env.run("sign", &args, None));
    let mynull2 = env.mknod_null("mynull2");
    env.ok(&env.run(
        "verify",
        &["m", "--root", "ca/ca.pem", "--extract", "mynull2", "-q"],
        None,
    ));
    assert!(is_char_device(&mynull2), "verify --extract replaced the device");

    // verify --extract into a FIFO: only verified bytes reach it
    let fifo = env.mkfifo("myfifo");
    let reader = drain(&fifo);
    env.ok(&env.run(
        "verify",
        &["m", "--root", "ca/ca.pem", "--extract", "myfifo", "-q"],
        None,
    ));
    assert_eq!(reader.join().unwrap(), env.read("m"));
    std::fs::copy(env.path("m"), env.path("bad")).unwrap();
    std::fs::copy(env.path("m.sig"), env.path("bad.sig")).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(env.path("bad"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let reader = drain(&fifo);
    let out = env.run(
        "verify",
        &["bad", "--root", "ca/ca.pem", "--extract", "myfifo", "-q"],
        None,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // The FIFO was never opened for writing: open it once to end the reader.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    assert_eq!(reader.join().unwrap(), b"");
    assert!(is_fifo(&fifo));

    // ca crl --out a FIFO: the reader gets the CRL, the FIFO stays
    let reader = drain(&fifo);
    env.ok(&env.run("ca", &["--dir", "ca", "crl", "--out", "myfifo", "-q"], None));
    let crl = reader.join().unwrap();
    assert!(
        crl.starts_with(b"-----BEGIN X509 CRL-----\n"),
        "{}",
        String::from_utf8_lossy(&crl)
    );
    assert!(is_fifo(&fifo));
    assert_eq!(crl, env.read("ca/crl.pem"));

    // sign -o FIFO, and the embedded copy through a FIFO
    let reader = drain(&fifo);
    let mut args = vec!["m"];
    args.extend(SIGN);
    args.extend(["--embed", "-o", "myfifo", "-q"]);
    env.ok(&env.run("sign", &args, None));
    let signed = reader.join().unwrap();
    assert!(signed.starts_with(&env.read("m")));
    assert!(is_fifo(&fifo));

    // a symbolic link: the file it points to is replaced, the link stays
    std::fs::write(env.path("real.crl"), b"old\n").unwrap();
    std::os::unix::fs::symlink("real.crl", env.path("link.crl")).unwrap();
    env.ok(&env.run("ca", &["--dir", "ca", "crl", "--out", "link.crl", "-q"], None));
    assert!(
        std::fs::symlink_metadata(env.path("link.crl"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(env.read("real.crl"), env.read("ca/crl.pem"));
    // a link into another directory: the temporary file goes there, nothing is left behind
    std::fs::create_dir(env.path("out")).unwrap();
    std::os::unix::fs::symlink("out/m.sig", env.path("m.sig.link")).unwrap();
    let mut args = vec!["m"];
    args.extend(SIGN);
    args.extend(["-o", "m.sig.link", "-q"]);
    env.ok(&env.run("sign", &args, None));
    assert!(
        std::fs::symlink_metadata(env.path("m.sig.link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        env.read("out/m.sig")
            .starts_with(b"-----BEGIN TESSERA MODULE SIGNATURE-----")
    );
    assert_eq!(std::fs::read_dir(env.path("out")).unwrap().count(), 1);

    // a directory is a clear error, and stays a directory
    let mut args = vec!["m"];
    args.extend(SIGN);
    args.extend(["-o", "out", "-q"]);
    let out = env.run("sign", &args, None);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    assert!(env.path("out").is_dir());
    assert_eq!(std::fs::read_dir(env.path("out")).unwrap().count(), 1);
}

#[test]
fn process_substitution_pipes_are_written_through() {
    let env = Env::new();
    let script = format!(
        "{} m --key s.key --cert s.chain.pem -q -o >(cat > piped.sig); rc=$?; wait; sleep 0.3; exit $rc",
        support::tool("sign").display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut piped = Vec::new();
    for _ in 0..50 {
        piped = env.read("piped.sig");
        if piped.ends_with(b"-----END TESSERA MODULE SIGNATURE-----\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        piped.starts_with(b"-----BEGIN TESSERA MODULE SIGNATURE-----"),
        "{}",
        String::from_utf8_lossy(&piped)
    );
    std::fs::write(env.path("m.sig"), &piped).unwrap();
    env.ok(&env.run("verify", &["m", "--root", "ca/ca.pem", "-q"], None));
}

#[test]
fn dash_reads_standard_input_for_every_file() {
    let env = Env::new();
    let key = env.read("s.key");
    let chain = env.read("s.chain.pem");
    let root = env.read("ca/ca.pem");
    env.ok(&env.run(
        "sign",
        &["m", "--key", "-", "--cert", "s.chain.pem", "-o", "a.sig", "-q"],
        Some(&key),
    ));
    env.ok(&env.run(
        "sign",
        &["m", "--key", "s.key", "--cert", "-", "-o", "b.sig", "-q"],
        Some(&chain),
    ));
    env.ok(&env.run("verify", &["m", "--sig", "a.sig", "--root", "-", "-q"], Some(&root)));
    env.ok(&env.run("ca", &["--dir", "ca", "crl", "-q"], None));
    let crl = env.read("ca/crl.pem");
    env.ok(&env.run(
        "verify",
        &["m", "--sig", "b.sig", "--root", "ca/ca.pem", "--crl", "-", "-q"],
        Some(&crl),
    ));
    // raw-key mode, with an encrypted key whose passphrase comes from standard input
    std::fs::write(env.path("pw"), b"secret words\n").unwrap();
    env.ok(&env.run("sign", &["--generate", "me", "--passphrase-file", "pw", "-q"], None));
    env.ok(&env.run(
        "sign",
        &["m", "--key", "me.key", "--passphrase-file", "-", "-o", "r.sig", "-q"],
        Some(b"secret words\n"),
    ));
    let public = env.read("me.pub");
    env.ok(&env.run("verify", &["m", "--sig", "r.sig", "--pubkey", "-", "-q"], Some(&public)));
    // ca: the CA key's passphrase from standard input
    env.ok(&env.run(
        "ca",
        &["init", "--dir", "ca2", "--name", "R2", "--passphrase-file", "pw", "-q"],
        None,
    ));
    env.ok(&env.run(
        "ca",
        &["--dir", "ca2", "--passphrase-file", "-", "crl", "-q"],
        Some(b"secret words\n"),
    ));

    // two inputs from standard input: a usage error, nothing written
    for args in [
        &["-", "--name", "m", "--key", "-", "--cert", "s.chain.pem", "-o", "x.sig"][..],
        &["m", "--key", "-", "--cert", "-", "-o", "x.sig"][..],
        &[
            "m",
            "--key",
            "me.key",
            "--passphrase-file",
            "-",
            "--cert",
            "-",
            "-o",
            "x.sig",
        ][..],
    ] {
        let out = env.run("sign", args, Some(&key));
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("sign: error: only one input can be read from stdin (-)"),
            "{}",
            stderr(&out)
        );
        assert!(!env.path("x.sig").exists());
    }
    let out = env.run("verify", &["m", "--sig", "-", "--root", "-"], Some(&root));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = env.run("verify", &["m", "--root", "-", "--crl", "-"], Some(&root));
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // --generate - : a key pair needs a prefix
    for prefix in ["-", "out/"] {
        let out = env.run("sign", &["--generate", prefix, "--no-passphrase"], None);
        assert_eq!(code(&out), 2, "{prefix:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--generate needs a file name prefix"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.path("-.key").exists() && !env.path("-.pub").exists());
    assert!(!env.path(".key").exists());
}

#[test]
fn passphrase_files_lose_exactly_one_line_ending() {
    let env = Env::new();
    std::fs::write(env.path("pw"), b"pw\n").unwrap();
    env.ok(&env.run("sign", &["--generate", "k", "--passphrase-file", "pw", "-q"], None));
    let sign_with = |contents: &[u8]| {
        std::fs::write(env.path("pass"), contents).unwrap();
        env.run(
            "sign",
            &["m", "--key", "k.key", "--passphrase-file", "pass", "-o", "m.sig", "-q"],
            None,
        )
    };
    env.ok(&sign_with(b"pw"));
    env.ok(&sign_with(b"pw\n"));
    env.ok(&sign_with(b"pw\r\n"));
    for wrong in [&b"pw\n\n"[..], b"pw\r\n\r\n", b"pw\n\r\n", b"pw \n"] {
        let out = sign_with(wrong);
        assert_eq!(code(&out), 3, "{wrong:?} was accepted as pw");
        assert!(stderr(&out).contains("passphrase"), "{}", stderr(&out));
    }
    for empty in [&b""[..], b"\n", b"\r\n"] {
        let out = sign_with(empty);
        assert_eq!(code(&out), 3, "{empty:?}");
        assert!(
            stderr(&out).starts_with("sign: error: passphrase file pass is empty\nsign: hint: "),
            "{}",
            stderr(&out)
        );
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs `ca ARGS` under umask 000 in `dir`.
fn ca_umask_000(dir: &Path, args: &str) -> Output {
    Command::new("bash")
        .args([
            "-c",
            &format!("umask 000; exec {} {args}", support::tool("ca").display()),
        ])
        .current_dir(dir)
        .env_remove("TESSERA_PASSPHRASE")
        .output()
        .unwrap()
}

#[test]
fn ca_init_makes_a_private_directory_and_fixed_modes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, before) in [("open", 0o777), ("usual", 0o755)] {
        let ca = dir.path().join(name);
        std::fs::create_dir(&ca).unwrap();
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(before)).unwrap();
        let out = ca_umask_000(dir.path(), &format!("init --dir {name} --name R --no-passphrase"));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("the CA directory had mode {before:04o}; it is now 0700")),
            "{}",
            stderr(&out)
        );
        let out = ca_umask_000(dir.path(), &format!("--dir {name} crl -q"));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(mode(&ca), 0o700, "{name}");
        for (file, expected) in [
            ("ca.key", 0o600),
            ("ca.pem", 0o644),
            ("chain.pem", 0o644),
            ("crl.pem", 0o644),
            ("ca.db", 0o600),
            ("store.json", 0o600),
        ] {
            assert_eq!(mode(&ca.join(file)), expected, "{name}/{file}");
        }
    }
    // A new directory: 0700, no note.
    let out = ca_umask_000(dir.path(), "init --dir fresh --name R --no-passphrase -q");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&dir.path().join("fresh")), 0o700);
}

#[test]
fn reloads_read_the_passphrase_file_again() {
    use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile};
    use tessera::channel::{ReloadableServerConfig, ServerFiles};
    use tessera::pki::{Passphrase, PrivateKey};
    use time::OffsetDateTime;

    let dir = tempfile::tempdir().unwrap();
    let earlier = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let ca = CertificateAuthority::init(&dir.path().join("ca"), &InitRequest::new("R"), None, earlier).unwrap();
    ca.issue(&IssueRequest::new(Profile::Server, "localhost"), earlier)
        .unwrap()
        .write(&dir.path().join("srv"), None)
        .unwrap();
    let key_path = dir.path().join("srv.key");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, b"first words\n").unwrap();
    let mut files = ServerFiles::new(dir.path().join("srv.chain.pem"), &key_path);
    files.passphrase_file = Some(pw.clone());
    // Started with an unencrypted key: the passphrase file is not needed yet.
    let first = files.load(OffsetDateTime::now_utc()).unwrap();
    let server = ReloadableServerConfig::from_files(first, files);
    // The key is encrypted before a reload: the file is read again.
    let key = PrivateKey::load(&key_path, None).unwrap();
    let encrypted = dir.path().join("srv.key.new");
    key.save(&encrypted, Some(&Passphrase::new("first words".into())))
        .unwrap();
    std::fs::rename(&encrypted, &key_path).unwrap();
    assert_eq!(server.reload().unwrap(), 1);
    // The passphrase file changes with the key.
    key.save(&encrypted, Some(&Passphrase::new("second words".into())))
        .unwrap();
    std::fs::rename(&encrypted, &key_path).unwrap();
    let err = chain(&server.reload().unwrap_err());
    assert!(!err.contains("no passphrase was given"), "{err}");
    assert!(err.contains("passphrase"), "{err}");
    std::fs::write(&pw, b"second words\n").unwrap();
    assert_eq!(server.reload().unwrap(), 2);
    // An empty passphrase file is named as such.
    std::fs::write(&pw, b"\n").unwrap();
    let err = chain(&server.reload().unwrap_err());
    assert!(
        err.contains(&format!("passphrase file {} is not valid: it is empty", pw.display())),
        "{err}"
    );
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[test]
fn sign_refuses_a_chain_verify_would_refuse() {
    let env = Env::new();
    env.ok(&env.run(
        "ca",
        &[
            "init",
            "--dir",
            "inter",
            "--name",
            "Inter",
            "--parent",
            "ca",
            "--no-passphrase",
            "-q",
        ],
        None,
    ));
    env.ok(&env.run(
        "ca",
        &[
            "--dir",
            "inter",
            "issue",
            "--profile",
            "code-signing",
            "--name",
            "t",
            "--out",
            "t",
            "-q",
        ],
        None,
    ));
    let chain = String::from_utf8(env.read("t.chain.pem")).unwrap();
    let blocks: Vec<String> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_string)
        .collect();
    assert_eq!(blocks.len(), 2, "{chain}");
    std::fs::write(env.path("leaf.pem"), &blocks[0]).unwrap();
    std::fs::write(env.path("reversed.pem"), format!("{}{}", blocks[1], blocks[0])).unwrap();
    let other = String::from_utf8(env.read("s.chain.pem")).unwrap();
    std::fs::write(env.path("unrelated.pem"), format!("{}{}", blocks[0], other)).unwrap();

    // With --root: the leaf alone is refused (the intermediate is missing), nothing written.
    let out = env.run(
        "sign",
        &["m", "--key", "t.key", "--cert", "leaf.pem", "--root", "ca/ca.pem"],
        None,
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out)
            .starts_with("sign: error: the chain leaf.pem does not verify against ca/ca.pem for code signing: "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("sign: hint: CHAIN must hold the signer's certificate and every intermediate"));
    assert!(!env.path("m.sig").exists());
    // The whole chain passes, quietly, and verifies.
    let out = env.run(
        "sign",
        &["m", "--key", "t.key", "--cert", "t.chain.pem", "--root", "ca/ca.pem"],
        None,
    );
    env.ok(&out);
    assert_eq!(stderr(&out), "");
    env.ok(&env.run("verify", &["m", "--root", "ca/ca.pem", "-q"], None));
    std::fs::remove_file(env.path("m.sig")).unwrap();
    // A root from standard input.
    let root = env.read("ca/ca.pem");
    env.ok(&env.run(
        "sign",
        &[
            "m",
            "--key",
            "t.key",
            "--cert",
            "t.chain.pem",
            "--root",
            "-",
            "-o",
            "in.sig",
            "-q",
        ],
        Some(&root),
    ));

    // Without --root: chains out of order or with a stranger are refused...
    for bad in ["reversed.pem", "unrelated.pem"] {
        let out = env.run("sign", &["m", "--key", "t.key", "--cert", bad], None);
        assert_eq!(code(&out), 3, "{bad}: {}", stderr(&out));
        if bad == "unrelated.pem" {
            assert!(stderr(&out).contains("did not issue certificate 1"), "{}", stderr(&out));
        }
        assert!(!env.path("m.sig").exists());
    }
    // ...and what cannot be checked is signed with a warning.
    let out = env.run("sign", &["m", "--key", "t.key", "--cert", "leaf.pem"], None);
    env.ok(&out);
    assert!(
        stderr(&out).starts_with("sign: warning: without --root, CHAIN was checked for order only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn echo_tools_read_one_file_from_standard_input() {
    use std::io::BufRead;
    let env = Env::new();
    env.ok(&env.run(
        "ca",
        &[
            "--dir",
            "ca",
            "issue",
            "--profile",
            "server",
            "--name",
            "localhost",
            "--san",
            "127.0.0.1",
            "--out",
            "srv",
            "-q",
        ],
        None,
    ));
    env.ok(&env.run(
        "ca",
        &[
            "--dir",
            "ca",
            "issue",
            "--profile",
            "client",
            "--name",
            "alice",
            "--out",
            "alice",
            "-q",
        ],
        None,
    ));
    let mut server = support::command("echo-server")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "-",
            "--key",
            "srv.key",
            "--client-ca",
            "ca/ca.pem",
        ])
        .current_dir(env.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    stdin.write_all(&env.read("srv.chain.pem")).unwrap();
    drop(stdin);
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line.trim().strip_prefix("listening on ").map(str::to_string);
    let client = |args: &[&str], input: Option<&[u8]>| {
        let mut all = vec!["--connect", address.as_deref().unwrap(), "--server-name", "localhost"];
        all.extend(args);
        let mut cmd = support::command("echo-client");
        cmd.args(&all).current_dir(env.dir.path());
        support::run(&mut cmd, Some(input.unwrap_or_default()), support::TIMEOUT)
    };
    let result = (|| {
        address.as_ref().ok_or(format!("no address in {line:?}"))?;
        let root = env.read("ca/ca.pem");
        let out = client(
            &["--ca", "-", "--cert", "alice.chain.pem", "--key", "alice.key", "hello"],
            Some(&root),
        );
        if code(&out) != 0 || out.stdout != b"hello\n" {
            return Err(format!("first: {}", stderr(&out)));
        }
        // A reload re-reads the files and reuses the certificate chain read from stdin.
        let pid = server.id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let key = env.read("alice.key");
        let out = client(
            &["--ca", "ca/ca.pem", "--cert", "alice.chain.pem", "--key", "-", "again"],
            Some(&key),
        );
        if code(&out) != 0 || out.stdout != b"again\n" {
            return Err(format!("after reload: {}", stderr(&out)));
        }
        // Without MESSAGE arguments standard input is the stream: `-` is a usage error.
        let out = client(&["--ca", "-"], Some(&root));
        if code(&out) != 2 {
            return Err(format!("stream: {}", stderr(&out)));
        }
        Ok(())
    })();
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    result.unwrap_or_else(|e| panic!("{e}\nserver log:\n{log}"));
    assert!(log.contains("configuration reloaded generation=1"), "{log}");
    // Two inputs from standard input: a usage error at start.
    let out = support::command("echo-server")
        .args(["--listen", "127.0.0.1:0", "--cert", "-", "--key", "-"])
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only one input can be read from stdin (-): --cert and --key"),
        "{}",
        stderr(&out)
    );
}
