//! The `ca` tool's command-line conventions: `-` is stdin/stdout, results on stdout and
//! diagnostics on stderr, `-q`, per-subcommand help, `--json` shapes and types, out-of-range
//! numbers (usage errors, never a panic; typed errors in the library), and output names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::{ToolCa, ok_output, output, output_with_stdin, stderr, stdout};

use proptest::prelude::*;
use serde_json::Value;
use tessera::ca::{CaError, CertificateAuthority, InitRequest, IssueRequest, Profile, RevocationReason};
use time::OffsetDateTime;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

support::newtype!(
    /// A root CA (no passphrase) in a temporary directory, which is also the working directory of
    /// the commands run from it.
    Ca(ToolCa)
);

impl Ca {
    fn new() -> Self {
        Self(ToolCa::new("Conventions Root", &[]))
    }
    fn cmd(&self) -> Command {
        let mut cmd = self.0.cmd();
        cmd.current_dir(self.tmp.path());
        cmd
    }
    fn issue(&self, name: &str) -> Value {
        json(&ok_output(self.cmd().args([
            "issue",
            "--profile",
            "client",
            "--json",
            "--name",
            name,
        ])))
    }
}

/// Every timestamp in a JSON document is RFC 3339 in UTC to the second: `2030-01-31T12:00:00Z`.
fn assert_timestamps(value: &Value, context: &str) {
    const TIME_KEYS: [&str; 7] = [
        "not_before",
        "not_after",
        "issued_at",
        "revoked_at",
        "this_update",
        "next_update",
        "time",
    ];
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if TIME_KEYS.contains(&key.as_str()) && !v.is_null() {
                    let text = v.as_str().unwrap_or_else(|| panic!("{context}: {key} is not a string"));
                    let b = text.as_bytes();
                    let shape = b.len() == 20
                        && b.iter().enumerate().all(|(i, c)| match i {
                            4 | 7 => *c == b'-',
                            10 => *c == b'T',
                            13 | 16 => *c == b':',
                            19 => *c == b'Z',
                            _ => c.is_ascii_digit(),
                        });
                    assert!(shape, "{context}: {key} = {text:?} is not YYYY-MM-DDTHH:MM:SSZ");
                }
                assert_timestamps(v, context);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_timestamps(v, context)),
        _ => {}
    }
}

#[test]
fn a_dash_is_stdin_or_stdout() {
    let ca = Ca::new();
    ca.issue("alice");
    let chain = std::fs::read(ca.dir().join("issued/alice.chain.pem")).unwrap();
    let root = ca.dir().join("ca.pem");

    // ca verify -: the certificate from stdin.
    let out = output_with_stdin(
        ca.cmd().args(["verify", "-", "--usage", "client", "--root"]).arg(&root),
        &chain,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("standard input: trusted for client use at "),
        "{}",
        stdout(&out)
    );
    // --root -: the root from stdin.
    let out = output_with_stdin(
        ca.cmd().args(["verify", "ca/issued/alice.pem", "--root", "-"]),
        &std::fs::read(&root).unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Only one input can come from stdin.
    let out = output_with_stdin(ca.cmd().args(["verify", "-", "--root", "-"]), &chain);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out), "ca: error: only one input can be read from stdin (-)\n");

    // ca show -.
    let out = output_with_stdin(ca.cmd().args(["show", "--json", "-"]), &chain);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        json(&out)["subject"],
        "CN=alice",
        "the chain of a leaf of a root holds the leaf alone"
    );

    // ca crl --out -: the CRL on stdout, no summary, no file named "-".
    let out = ok_output(ca.cmd().args(["crl", "--out", "-"]));
    assert!(
        stdout(&out).starts_with("-----BEGIN X509 CRL-----\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with("-----END X509 CRL-----\n"));
    assert_eq!(
        stdout(&out).lines().filter(|l| l.starts_with("-----")).count(),
        2,
        "nothing but the CRL"
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert!(!ca.path("-").exists(), "a file named - was created");
    assert_eq!(
        std::fs::read_to_string(ca.dir().join("crl.pem")).unwrap(),
        stdout(&out),
        "crl.pem is the same CRL"
    );
    let out = output(ca.cmd().args(["crl", "--out", "-", "--json"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "ca: error: --json and --out - both write to stdout; choose one\n"
    );

    // ca issue --csr -: the request from stdin (made by openssl).
    let key = ca.path("svc.key");
    let made = Command::new("openssl")
        .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let csr = Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=svc.example.test", "-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(csr.status.success());
    let out = output_with_stdin(
        ca.cmd().args([
            "issue",
            "--profile",
            "server",
            "--name",
            "svc.example.test",
            "--csr",
            "-",
            "--json",
        ]),
        &csr.stdout,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(json(&out)["files"]["key"].is_null());
    assert!(!ca.path("-").exists());

    // ca issue --out - is not stdout: three files are written.
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--name", "x", "--out", "-"]),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("ca: error: --out takes a file prefix"),
        "{}",
        stderr(&out)
    );
    assert!(!ca.path("-.pem").exists());
}

#[test]
fn results_go_to_stdout_diagnostics_to_stderr_and_quiet_keeps_only_errors() {
    let ca = Ca::new();
    let serial = ca.issue("alice")["certificate"]["serial"].as_str().unwrap().to_string();
    ca.issue("bob");

    // revoke and crl: their summary on stdout, nothing on stderr.
    let out = ok_output(ca.cmd().args(["revoke", &serial]));
    assert!(
        stdout(&out).starts_with(&format!("revoked {serial} (unspecified); wrote ")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).ends_with("(CRL number 1, 1 revoked)\n"),
        "{}",
        stdout(&out)
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let out = ok_output(ca.cmd().arg("crl"));
    assert!(
        stdout(&out).starts_with("wrote CRL number 2 with 1 revoked certificate(s) to "),
        "{}",
        stdout(&out)
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let out = ok_output(ca.cmd().args(["crl", "--out", "copy.crl"]));
    assert!(
        stdout(&out).trim_end().ends_with("crl.pem and copy.crl"),
        "{}",
        stdout(&out)
    );
    assert!(ca.path("copy.crl").exists());

    // -q: nothing at all on success…
    for args in [&["revoke", &serial][..], &["crl"], &["crl", "-q", "--out", "copy2.crl"]] {
        let out = ok_output(ca.cmd().arg("-q").args(args));
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?}: {} / {}",
            stdout(&out),
            stderr(&out)
        );
    }
    // …except what issue and init created, which is their result.
    let out = ok_output(ca.cmd().args(["-q", "issue", "--profile", "client", "--name", "carol"]));
    assert!(
        stdout(&out).starts_with("issued client certificate \"CN=carol\""),
        "{}",
        stdout(&out)
    );
    assert!(out.stderr.is_empty());
    let out = ok_output(support::ca(&ca.path("other")).args(["init", "-q", "--no-passphrase"]));
    assert!(stdout(&out).starts_with("created root CA"), "{}", stdout(&out));
    // A warning (the default lifetime shortened to the CA's) goes to stderr, and -q drops it.
    let short = ca.path("short");
    ok_output(support::ca(&short).args(["init", "--no-passphrase", "--days", "30"]));
    let out = ok_output(support::ca(&short).args(["issue", "--profile", "client", "--name", "d"]));
    assert!(stdout(&out).starts_with("issued client certificate"));
    assert!(stderr(&out).starts_with("ca: warning: lifetime shortened to end with the CA certificate"));
    let out = ok_output(support::ca(&short).args(["issue", "-q", "--profile", "client", "--name", "e"]));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    // Errors are still reported with -q.
    let out = output(ca.cmd().args(["-q", "revoke", "abcdef"]));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).starts_with("ca: error: no certificate with serial abcdef"));
    assert!(out.stdout.is_empty());
}

/// The lines of a help section (`EXAMPLES:`, `EXIT CODES:`) up to the next blank line.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn each_subcommand_has_its_own_examples_and_exit_codes() {
    // The exit codes each subcommand can return.
    let cases: [(&str, &[&str]); 10] = [
        ("init", &["0", "1", "2", "3"]),
        ("issue", &["0", "1", "2", "3"]),
        ("set", &["0", "2", "3"]),
        ("renew", &["0", "1", "2", "3"]),
        ("export", &["0", "2", "3"]),
        ("revoke", &["0", "1", "2", "3"]),
        ("crl", &["0", "2", "3"]),
        ("list", &["0", "2", "3"]),
        ("show", &["0", "2", "3"]),
        ("verify", &["0", "1", "2", "3"]),
    ];
    for (sub, codes) in cases {
        let out = ok_output(support::command("ca").args([sub, "--help"]));
        let help = stdout(&out);
        let examples = section(&help, "EXAMPLES:");
        assert!(!examples.is_empty(), "{sub}: no examples\n{help}");
        for line in &examples {
            assert!(
                line.starts_with(&format!("  ca {sub} ")) || line.contains(&format!("| ca {sub} ")),
                "{sub}: an example of another command, or a wrapped line: {line:?}"
            );
            assert!(line.len() <= 100, "{sub}: example too long to stay unwrapped: {line:?}");
        }
        let listed: Vec<&str> = section(&help, "EXIT CODES:")
            .iter()
            .filter_map(|l| l.strip_prefix("  ").and_then(|l| l.split_whitespace().next()))
            .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        assert_eq!(listed, codes, "{sub}\n{help}");
    }
    // The top level lists every code and points to the subcommands.
    let help = stdout(&ok_output(support::command("ca").arg("--help")));
    assert!(help.contains("Each subcommand's --help has its own examples and exit codes."));
    // --days says what happens past the CA's lifetime.
    let help = stdout(&ok_output(support::command("ca").args(["issue", "--help"])));
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("shortened (with a warning) to end with the CA's certificate"),
        "{flat}"
    );
    assert!(
        flat.contains("an explicit value past the CA's end is refused (exit 1)"),
        "{flat}"
    );
}

#[test]
fn json_is_consistent_across_commands() {
    let ca = Ca::new();
    let pass = ca.path("pass");
    std::fs::write(&pass, "a passphrase\n").unwrap();

    // init and issue: the same shape.
    let init = json(&ok_output(
        support::ca(&ca.path("sub"))
            .args(["init", "--json", "--passphrase-file"])
            .arg(&pass)
            .arg("--parent")
            .arg(ca.dir()),
    ));
    let issue = json(&ok_output(
        ca.cmd()
            .args([
                "issue",
                "--profile",
                "client",
                "--name",
                "alice",
                "--json",
                "--key-passphrase-file",
            ])
            .arg(&pass),
    ));
    for (what, value) in [("init", &init), ("issue", &issue)] {
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["certificate", "clamped", "encrypted_key", "files"], "{what}");
        assert!(value["certificate"]["serial"].is_string(), "{what}");
        assert!(value["certificate"]["is_ca"].is_boolean(), "{what}");
        assert_eq!(value["encrypted_key"], true, "{what}");
        assert!(value["clamped"].is_boolean(), "{what}");
        for file in ["certificate", "key", "chain"] {
            let path = value["files"][file].as_str().unwrap();
            assert!(
                Path::new(path).is_file() || ca.path(path).is_file(),
                "{what}: {file} = {path}"
            );
        }
        assert_timestamps(value, what);
    }
    assert_eq!(init["certificate"]["is_ca"], true);
    assert_eq!(init["clamped"], false);
    assert!(init["files"]["certificate"].as_str().unwrap().ends_with("sub/ca.pem"));
    let serial = issue["certificate"]["serial"].as_str().unwrap().to_string();

    // revoke: the revocation and the CRL; numbers are numbers.
    let revoke = json(&ok_output(ca.cmd().args([
        "revoke",
        &serial,
        "--reason",
        "key-compromise",
        "--json",
    ])));
    assert_eq!(revoke["serial"], serial.as_str());
    assert_eq!(revoke["reason"], "key-compromise");
    assert_eq!(revoke["already_revoked"], false);
    assert_eq!(revoke["crl"]["crl_number"].as_u64(), Some(1));
    assert_eq!(revoke["crl"]["revoked"][0]["serial"], serial.as_str());
    assert_timestamps(&revoke, "revoke");

    let crl = json(&ok_output(ca.cmd().args(["crl", "--json"])));
    assert_eq!(crl["crl_number"].as_u64(), Some(2));
    assert_timestamps(&crl, "crl");
    let shown = json(&ok_output(ca.cmd().args(["show", "--json", "ca/crl.pem"])));
    assert_eq!(shown, crl);

    let list = json(&ok_output(ca.cmd().args(["list", "--json"])));
    assert_eq!(list.as_array().unwrap().len(), 2, "the intermediate and alice");
    assert_timestamps(&list, "list");
    assert_eq!(
        list[0]["status"], "revoked",
        "newest first: alice, then the intermediate"
    );

    // verify: the time given with a fraction and an offset is shown in UTC to the second.
    let format = &time::format_description::well_known::Rfc3339;
    let at = (OffsetDateTime::now_utc() + time::Duration::days(1))
        .replace_millisecond(123)
        .unwrap()
        .to_offset(time::macros::offset!(+02:00));
    let verify = json(&ok_output(
        ca.cmd()
            .args([
                "verify",
                "--json",
                "--root",
                "ca/ca.pem",
                "--at",
                &at.format(format).unwrap(),
            ])
            .arg(ca.dir().join("issued/alice.pem")),
    ));
    let expected = at.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap();
    assert_eq!(verify["time"], expected.format(format).unwrap().as_str());
    assert_eq!(verify["trusted"], true);
    assert_timestamps(&verify, "verify");
    let show = json(&ok_output(ca.cmd().args(["show", "--json", "ca/ca.pem"])));
    assert_timestamps(&show, "show");
}

#[test]
fn out_of_range_numbers_are_usage_errors_that_name_the_range() {
    let ca = Ca::new();
    let cases: [(&[&str], &str); 7] = [
        (&["init", "--days", "3000000"], "from 1 to 36500"),
        (&["init", "--days", "0"], "from 1 to 36500"),
        (
            &["issue", "--profile", "client", "--name", "a", "--days", "4000000"],
            "from 1 to 36500",
        ),
        (
            &["issue", "--profile", "client", "--name", "a", "--hours", "4294967295"],
            "from 1 to 876000",
        ),
        (
            &[
                "issue",
                "--profile",
                "client",
                "--name",
                "a",
                "--hours",
                "99999999999999999999",
            ],
            "from 1 to 876000",
        ),
        (&["crl", "--crl-days", "4000000"], "from 1 to 3650"),
        (&["revoke", "ab", "--crl-days", "4000000"], "from 1 to 3650"),
    ];
    for (args, range) in cases {
        let dir = if args[0] == "init" { ca.path("new") } else { ca.dir() };
        let out = output(support::ca(&dir).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(range), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
        assert!(!ca.path("new").exists(), "{args:?} wrote something");
    }
    assert!(!ca.dir().join("issued/a.pem").exists());
    // The largest values allowed give a clear answer, not a panic either.
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--name", "a", "--hours", "876000"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("after its issuer"), "{}", stderr(&out));
    ok_output(ca.cmd().args(["crl", "--crl-days", "3650"]));
    ok_output(support::ca(&ca.path("long")).args(["init", "--no-passphrase", "--days", "36500"]));
}

#[test]
fn the_library_gives_typed_errors_for_any_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut request = InitRequest::new("Library Root");
    request.lifetime = Some(Duration::MAX);
    let err = CertificateAuthority::init(&tmp.path().join("a"), &request, None, now).unwrap_err();
    assert!(
        matches!(err, CaError::InvalidRequest { field: "lifetime", .. }),
        "{err}"
    );
    assert!(!tmp.path().join("a").exists());

    let root = CertificateAuthority::init(&tmp.path().join("root"), &InitRequest::new("Root"), None, now).unwrap();
    let err = root
        .issue(
            &IssueRequest::new(Profile::Client, "x").with_lifetime(Duration::MAX),
            now,
        )
        .unwrap_err();
    assert!(matches!(err, CaError::OutlivesIssuer { .. }), "{err}");
    let err = root
        .init_intermediate(&tmp.path().join("sub"), &request, None, now)
        .unwrap_err();
    assert!(matches!(err, CaError::OutlivesIssuer { .. }), "{err}");
    let issued = root.issue(&IssueRequest::new(Profile::Client, "y"), now).unwrap();
    for lifetime in [Duration::MAX, Duration::ZERO] {
        let err = root
            .revoke(&issued.info.serial, RevocationReason::Superseded, now, lifetime)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidRequest {
                    field: "crl-lifetime",
                    ..
                }
            ),
            "{err}"
        );
        let err = root.write_crl(now, lifetime).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::InvalidRequest {
                    field: "crl-lifetime",
                    ..
                }
            ),
            "{err}"
        );
    }
    // Nothing was revoked by the refused calls.
    assert!(!root.crl_path().exists());
    // A time no certificate can carry.
    let far = time::macros::datetime!(9999-12-31 23:30:00 -05:00);
    let err = CertificateAuthority::init(&tmp.path().join("b"), &InitRequest::new("B"), None, far).unwrap_err();
    assert!(matches!(err, CaError::InvalidRequest { field: "time", .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn issuing_with_any_lifetime_never_panics(secs in any::<u64>(), hours in 0u64..2_000_000) {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let mut request = InitRequest::new("Prop Root");
        request.lifetime = Some(Duration::from_secs(secs));
        match CertificateAuthority::init(&tmp.path().join("ca"), &request, None, now) {
            Ok(ca) => {
                let lifetime = Duration::from_secs(hours * 3600);
                match ca.issue(&IssueRequest::new(Profile::Client, "p").with_lifetime(lifetime), now) {
                    Ok(issued) => prop_assert!(issued.info.not_after <= ca.info().not_after),
                    Err(CaError::OutlivesIssuer { .. } | CaError::InvalidRequest { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
            }
            Err(CaError::InvalidRequest { field: "lifetime", .. }) => {}
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}

#[test]
fn output_names_are_derived_sensibly() {
    let ca = Ca::new();
    let files = |v: &Value| ["certificate", "key", "chain"].map(|f| v["files"][f].as_str().unwrap().to_string());
    let issue = |name: &str, out: &str| {
        output(
            ca.cmd()
                .args(["issue", "--profile", "client", "--json", "--name", name, "--out", out]),
        )
    };
    // A directory: DIR/<name>.*, created if need be.
    let out = issue("alice", "certs/");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        files(&json(&out)),
        ["certs/alice.pem", "certs/alice.key", "certs/alice.chain.pem"]
    );
    // An existing directory without the slash: the same.
    let out = issue("bob", "certs");
    assert_eq!(
        files(&json(&out)),
        ["certs/bob.pem", "certs/bob.key", "certs/bob.chain.pem"]
    );
    // A trailing dot, or a .pem ending, is not doubled.
    let out = issue("carol", "carol.");
    assert_eq!(files(&json(&out)), ["carol.pem", "carol.key", "carol.chain.pem"]);
    let out = issue("dave", "d.pem");
    assert_eq!(files(&json(&out)), ["d.pem", "d.key", "d.chain.pem"]);
    for file in ["certs/alice.pem", "certs/bob.key", "carol.pem", "d.chain.pem"] {
        assert!(ca.path(file).is_file(), "{file}");
    }
    assert!(!ca.path("certs/.pem").exists() && !ca.path("carol..pem").exists());
    // A name that leaves no file name is refused, clearly.
    for (name, out) in [("erin", "certs/..."), ("erin", ".pem")] {
        let result = issue(name, out);
        assert_eq!(result.status.code(), Some(2), "{out}: {}", stderr(&result));
        assert!(
            stderr(&result).contains("leaves no file name for the certificate")
                && stderr(&result).contains("ca: hint: give --out PREFIX"),
            "{out}: {}",
            stderr(&result)
        );
    }
    let result = output(ca.cmd().args(["issue", "--profile", "client", "--name", "..."]));
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("no file name can be made from the name \"...\""),
        "{}",
        stderr(&result)
    );
    // The default from a name with a trailing dot.
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--json", "--name", "frank."]),
    );
    assert!(
        files(&json(&out))[0].ends_with("/ca/issued/frank.pem"),
        "{}",
        stdout(&out)
    );
    // Nothing was recorded for the refused ones.
    let list = json(&ok_output(ca.cmd().args(["list", "--json"])));
    assert_eq!(list.as_array().unwrap().len(), 5);
}
