//! The five tools never die on output (issue 7, kind 5): a reader that goes away ends a tool
//! quietly (exit 0, nothing on stderr), any other stdout write error is `tool: error: cannot
//! write to stdout: …` with exit 3, and a full stderr changes nothing but the lost text. Also:
//! usage errors carry the tool's prefix (exit 2), and `--help` examples are never wrapped.
//!
//! A closed pipe is made deterministic with `std::io::pipe` and the read end dropped before the
//! tool starts (`ca list | head -0`), or by reading one line of an output larger than a pipe
//! buffer and then dropping the reader (`ca show big-crl.pem | head -1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{TOOLS, ca, command_path, stderr};

fn dev_full() -> Stdio {
    Stdio::from(File::options().write(true).open("/dev/full").expect("/dev/full exists"))
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

fn run_with(cmd: &mut Command, stdout: Stdio, stderr: Stdio) -> Output {
    let what = format!("{cmd:?}");
    support::finish(
        cmd.stdout(stdout).stderr(stderr).spawn().expect("tool starts"),
        None,
        Duration::from_secs(30),
        &what,
    )
}

fn assert_no_panic(out: &Output, what: &str) {
    let err = stderr(out);
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {err}");
    assert!(
        !err.contains("failed printing") && !err.contains("panicked"),
        "{what}: {err}"
    );
}

/// stdout closed by its reader: exit 0, nothing on stderr.
fn assert_quiet_on_closed_pipe(cmd: &mut Command, what: &str) {
    let out = run_with(cmd, closed_pipe(), Stdio::piped());
    assert_no_panic(&out, what);
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "{what}");
}

/// stdout on a full disk: exit 3 and `tool: error: cannot write to stdout: …`.
fn assert_fails_on_full_stdout(cmd: &mut Command, name: &str, what: &str) {
    let out = run_with(cmd, dev_full(), Stdio::piped());
    assert_no_panic(&out, what);
    assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("{name}: error: cannot write to stdout: No space left on device (os error 28)\n"),
        "{what}"
    );
}

/// A CA with `certs` issued server certificates.
fn ca_with_certificates(certs: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = ca(&dir)
        .args(["init", "--name", "Output Test CA", "--no-passphrase"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..certs {
        let out = ca(&dir)
            .args([
                "issue",
                "--profile",
                "server",
                "--name",
                &format!("host{i}.example.test"),
                "--out",
            ])
            .arg(tmp.path().join(format!("host{i}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    (tmp, dir)
}

/// A CRL with `entries` revoked serials, signed by `ca_dir`'s key with `openssl ca -gencrl`.
fn big_crl(tmp: &Path, ca_dir: &Path, entries: usize) -> PathBuf {
    let work = tmp.join("openssl-ca");
    std::fs::create_dir(&work).unwrap();
    let mut index = String::new();
    for serial in 0..entries {
        index.push_str(&format!(
            "R\t301231235959Z\t250101000000Z,keyCompromise\t{:08X}\tunknown\t/CN=x\n",
            serial + 1
        ));
    }
    std::fs::write(work.join("index.txt"), index).unwrap();
    std::fs::write(work.join("crlnumber"), "01\n").unwrap();
    let config = format!(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\ndefault_md = default\n\
         default_crl_days = 30\n",
        work.display()
    );
    std::fs::write(work.join("openssl.cnf"), config).unwrap();
    let crl = tmp.join("big-crl.pem");
    let out = Command::new("openssl")
        .args(["ca", "-batch", "-gencrl", "-config"])
        .arg(work.join("openssl.cnf"))
        .arg("-keyfile")
        .arg(ca_dir.join("ca.key"))
        .arg("-cert")
        .arg(ca_dir.join("ca.pem"))
        .arg("-out")
        .arg(&crl)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl ca -gencrl: {}", stderr(&out));
    crl
}

#[test]
fn help_to_a_closed_pipe_or_a_full_disk_never_panics() {
    for (name, path) in TOOLS {
        assert_quiet_on_closed_pipe(command_path(path).arg("--help"), &format!("{name} --help"));
        assert_fails_on_full_stdout(command_path(path).arg("--help"), name, &format!("{name} --help"));
        assert_quiet_on_closed_pipe(command_path(path).arg("--version"), &format!("{name} --version"));
    }
    assert_quiet_on_closed_pipe(
        command_path(env!("CARGO_BIN_EXE_ca")).args(["issue", "--help"]),
        "ca issue --help",
    );
}

#[test]
fn ca_list_to_a_closed_pipe_or_a_full_disk() {
    let (_tmp, dir) = ca_with_certificates(5);
    let out = ca(&dir).arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        6,
        "a header and five rows"
    );
    for args in [&["list"][..], &["list", "--json"]] {
        let what = format!("ca {}", args.join(" "));
        assert_quiet_on_closed_pipe(ca(&dir).args(args), &what);
        assert_fails_on_full_stdout(ca(&dir).args(args), "ca", &what);
    }
    // A summary on stdout (`ca issue`) to a full disk: the certificate is issued, the tool says
    // the summary could not be written.
    let out = run_with(
        ca(&dir)
            .args(["issue", "--profile", "client", "--name", "full.example.test", "--out"])
            .arg(dir.join("full")),
        dev_full(),
        Stdio::piped(),
    );
    assert_no_panic(&out, "ca issue > /dev/full");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("ca: error: cannot write to stdout: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ca_show_of_a_big_crl_read_one_line_then_closed() {
    let (tmp, dir) = ca_with_certificates(0);
    let crl = big_crl(tmp.path(), &dir, 5000);
    // Larger than any pipe buffer: the tool is still writing when the reader goes away.
    let full = ca(&dir).arg("show").arg(&crl).output().unwrap();
    assert_eq!(full.status.code(), Some(0), "{}", stderr(&full));
    assert!(full.stdout.len() > 128 * 1024, "{} bytes", full.stdout.len());

    let mut child = ca(&dir)
        .arg("show")
        .arg(&crl)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let out = support::finish(child, None, Duration::from_secs(30), "the tool");
    assert_no_panic(&out, "ca show big-crl.pem | head -1");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    assert_quiet_on_closed_pipe(ca(&dir).arg("show").arg(&crl), "ca show big-crl.pem");
    assert_fails_on_full_stdout(ca(&dir).arg("show").arg(&crl), "ca", "ca show big-crl.pem > /dev/full");
    assert_quiet_on_closed_pipe(
        ca(&dir).args(["show", "--json"]).arg(&crl),
        "ca show --json big-crl.pem",
    );
}

#[test]
fn echo_server_with_its_stdout_closed_or_full_stops_without_a_panic() {
    let (tmp, dir) = ca_with_certificates(1);
    let server = |cmd: &mut Command| {
        cmd.args(["--listen", "127.0.0.1:0", "--cert"])
            .arg(tmp.path().join("host0.chain.pem"))
            .arg("--key")
            .arg(tmp.path().join("host0.key"))
            .arg("--client-ca")
            .arg(dir.join("ca.pem"));
    };
    let mut cmd = command_path(env!("CARGO_BIN_EXE_echo-server"));
    server(&mut cmd);
    let out = run_with(&mut cmd, closed_pipe(), Stdio::piped());
    assert_no_panic(&out, "echo-server | (closed)");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));

    let mut cmd = command_path(env!("CARGO_BIN_EXE_echo-server"));
    server(&mut cmd);
    let out = run_with(&mut cmd, dev_full(), Stdio::piped());
    assert_no_panic(&out, "echo-server > /dev/full");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("echo-server: error: cannot write to stdout: No space left on device"),
        "{}",
        stderr(&out)
    );
}

/// With stderr on a full disk, each tool returns the exit code it would have returned anyway.
#[test]
fn a_full_stderr_changes_no_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let m = missing.to_str().unwrap();
    let cases: [(&str, Vec<&str>, i32); 10] = [
        (env!("CARGO_BIN_EXE_ca"), vec!["--bogus"], 2),
        (env!("CARGO_BIN_EXE_ca"), vec!["--verbose", "--dir", m, "list"], 3),
        (env!("CARGO_BIN_EXE_ca"), vec!["show", m], 3),
        (env!("CARGO_BIN_EXE_sign"), vec!["--bogus"], 2),
        (env!("CARGO_BIN_EXE_sign"), vec![m, "--key", m], 3),
        (env!("CARGO_BIN_EXE_verify"), vec!["--bogus"], 2),
        (env!("CARGO_BIN_EXE_verify"), vec![m, "--root", m], 3),
        (
            env!("CARGO_BIN_EXE_echo-server"),
            vec!["--listen", "127.0.0.1:0", "--cert", m, "--key", m],
            3,
        ),
        (
            env!("CARGO_BIN_EXE_echo-client"),
            vec!["--connect", "127.0.0.1:1", "--ca", m, "hello"],
            3,
        ),
        (env!("CARGO_BIN_EXE_echo-client"), vec!["--bogus"], 2),
    ];
    for (path, args, code) in cases {
        let what = format!(
            "{} {}",
            Path::new(path).file_name().unwrap().to_string_lossy(),
            args.join(" ")
        );
        // The same code with a readable stderr, saying `tool: error: …`.
        let out = run_with(
            command_path(path).args(&args).env("RUST_LOG", "debug"),
            Stdio::null(),
            Stdio::piped(),
        );
        assert_eq!(out.status.code(), Some(code), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(": error: "), "{what}: {}", stderr(&out));
        // And with stderr on a full disk (logging at debug level too).
        let mut child = command_path(path)
            .args(&args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(dev_full())
            .spawn()
            .unwrap();
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let out = support::finish(child, None, Duration::from_secs(30), "the tool");
        assert_ne!(out.status.code(), Some(101), "{what} panicked");
        assert_eq!(out.status.code(), Some(code), "{what} with a full stderr");
        assert!(!stdout.contains("failed printing"), "{what}: {stdout}");
    }
}

/// One usage error per tool: `tool: error: …`, clap's usage line, exit 2, nothing on stdout.
#[test]
fn usage_errors_carry_the_tool_prefix() {
    for (name, path) in TOOLS {
        let out = command_path(path).arg("--no-such-flag").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert_eq!(out.stdout, b"", "{name}");
        let err = stderr(&out);
        let mut lines = err.lines();
        assert_eq!(
            lines.next(),
            Some(format!("{name}: error: unexpected argument '--no-such-flag' found").as_str())
        );
        assert!(err.contains(&format!("\nUsage: {name} ")), "{name}: {err}");
        assert!(
            err.ends_with(&format!("\n{name}: hint: see '{name} --help'\n")),
            "{name}: {err}"
        );
        assert!(!err.lines().any(|l| l.starts_with("error:")), "{name}: {err}");
    }
    // A subcommand's error, and clap's tip as the tool's hint.
    let out = command_path(env!("CARGO_BIN_EXE_ca"))
        .args(["list", "--jsno"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "ca: error: unexpected argument '--jsno' found\n\nca: hint: a similar argument exists: '--json'\n\n\
         Usage: ca list --json\n\nca: hint: see 'ca list --help'\n"
    );
    // No command at all: still an error with the prefix, exit 2, the help on stderr.
    let out = command_path(env!("CARGO_BIN_EXE_ca")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("ca: error: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("Usage: ca "), "{}", stderr(&out));
    // --help and --version are not errors: stdout, exit 0.
    for (name, path) in TOOLS {
        for flag in ["--help", "--version"] {
            let out = command_path(path).arg(flag).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{name} {flag}");
            assert_eq!(stderr(&out), "", "{name} {flag}");
            assert!(!out.stdout.is_empty(), "{name} {flag}");
        }
    }
}

fn examples_block(help: &str) -> Option<String> {
    let examples = help.split_once("EXAMPLES:\n")?.1;
    Some(
        examples
            .lines()
            .take_while(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect(),
    )
}

fn help_at(cmd: &mut Command, columns: &str) -> String {
    let out = cmd.arg("--help").env("COLUMNS", columns).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The EXAMPLES block is printed as written at any width: every example command stays on one
/// line, while flag descriptions are still wrapped to the terminal.
#[test]
fn help_examples_are_never_wrapped() {
    let mut commands: Vec<(String, Box<dyn Fn() -> Command>)> = TOOLS
        .iter()
        .map(|&(name, path)| {
            (
                name.to_string(),
                Box::new(move || command_path(path)) as Box<dyn Fn() -> Command>,
            )
        })
        .collect();
    for sub in ["init", "issue", "revoke", "crl", "list", "show", "verify"] {
        commands.push((
            format!("ca {sub}"),
            Box::new(move || {
                let mut cmd = command_path(env!("CARGO_BIN_EXE_ca"));
                cmd.arg(sub);
                cmd
            }),
        ));
    }
    for (what, command) in &commands {
        let wide = help_at(&mut command(), "1000");
        let Some(reference) = examples_block(&wide) else {
            panic!("{what} --help has no EXAMPLES: {wide}");
        };
        assert!(reference.lines().all(|l| l.starts_with("  ")), "{what}: {reference}");
        for columns in ["40", "80", "100"] {
            let help = help_at(&mut command(), columns);
            assert_eq!(
                examples_block(&help).as_deref(),
                Some(reference.as_str()),
                "{what} at COLUMNS={columns}"
            );
        }
    }
    // At 40 columns a long example is kept whole while the options are wrapped.
    let help = help_at(command_path(env!("CARGO_BIN_EXE_ca")).arg("issue"), "40");
    let examples = examples_block(&help).unwrap();
    assert!(examples.lines().any(|l| l.len() > 60), "{examples}");
    let options = help.split_once("EXAMPLES:").unwrap().0;
    let wide_options = help_at(command_path(env!("CARGO_BIN_EXE_ca")).arg("issue"), "1000");
    assert!(
        options.lines().count() > wide_options.split_once("EXAMPLES:").unwrap().0.lines().count(),
        "the options are wrapped at 40 columns:\n{help}"
    );
}

/// The shared runner (`support::run`) bounds a child: one that outlives its time limit is
/// killed and the test fails at once; one that exits without reading its standard input is
/// judged by its exit code, not by the broken pipe.
#[test]
fn the_test_runner_kills_a_child_past_its_time_limit_and_ignores_a_closed_stdin() {
    let start = std::time::Instant::now();
    let hung =
        std::panic::catch_unwind(|| support::run(Command::new("sleep").arg("30"), None, Duration::from_millis(300)));
    let message = hung.expect_err("a child past its time limit fails the test");
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("did not exit within 300ms and was killed"),
        "{message}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "killed at once, not waited for"
    );

    let input = vec![b'x'; 4 << 20];
    let out = support::run(&mut Command::new("true"), Some(&input), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0));
    let out = support::run(&mut Command::new("cat"), Some(b"hello"), Duration::from_secs(30));
    assert_eq!(out.stdout, b"hello");
}
