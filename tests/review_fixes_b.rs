//! Review fixes (b): untrusted names escaped in every text output of `ca`, SANs valid for their
//! type and written once, `ca`'s messages and exit codes, compact warnings in the short-lived
//! tools, usage errors that end with a hint, and help that is never wrapped to one word a line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{ToolCa, ca, code, ok, openssl, output, s, stderr, stdout};

/// Nothing that could move the cursor or reorder a line reaches the terminal.
#[track_caller]
fn assert_no_raw_controls(text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c)),
        "raw control or bidi character in {text:?}"
    );
}

support::newtype!(Ca(ToolCa));

impl Ca {
    fn new() -> Self {
        Self(ToolCa::new("Review CA", &["-q"]))
    }

    fn records(&self) -> usize {
        let json: serde_json::Value = serde_json::from_str(&ok(self.cmd().args(["list", "--json"]))).unwrap();
        json.as_array().unwrap().len()
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

// 1. Untrusted text printed raw.

#[test]
fn issue_and_list_escape_subjects_and_json_keeps_them() {
    let ca = Ca::new();
    let out = ok(ca
        .cmd()
        .args([
            "issue",
            "--profile",
            "client",
            "--name",
            "evil\u{202e}gro.elpmaxe",
            "--out",
        ])
        .arg(ca.path("b")));
    assert!(
        out.starts_with("issued client certificate \"CN=evil\\u{202e}gro.elpmaxe\" serial "),
        "{out}"
    );
    assert_no_raw_controls(&out);
    let list = ok(ca.cmd().arg("list"));
    assert!(list.contains("  CN=evil\\u{202e}gro.elpmaxe\n"), "{list}");
    assert_no_raw_controls(&list);
    let json: serde_json::Value = serde_json::from_str(&ok(ca.cmd().args(["list", "--json"]))).unwrap();
    assert_eq!(json[0]["subject"], "CN=evil\u{202e}gro.elpmaxe");
}

#[test]
fn list_escapes_names_from_the_database() {
    let ca = Ca::new();
    ok(ca
        .cmd()
        .args(["issue", "--profile", "client", "--name", "a", "-q", "--out"])
        .arg(ca.path("a")));
    // A store written by someone else (or imported from an older Tessera) may hold anything.
    let sans = serde_json::json!(["dns:x\u{1b}[2Jy", "uri:x://a\u{202e}b"]).to_string();
    rusqlite::Connection::open(ca.dir().join("ca.db"))
        .unwrap()
        .execute(
            "UPDATE certificates SET sans = ?1, subject = ?2",
            rusqlite::params![sans, "CN=\u{1b}[31mred"],
        )
        .unwrap();
    let list = ok(ca.cmd().arg("list"));
    assert!(
        list.contains("  CN=\\u{1b}[31mred [dns:x\\u{1b}[2Jy, uri:x://a\\u{202e}b]\n"),
        "{list}"
    );
    assert_no_raw_controls(&list);
    let json: serde_json::Value = serde_json::from_str(&ok(ca.cmd().args(["list", "--json"]))).unwrap();
    assert_eq!(json[0]["sans"][0], "dns:x\u{1b}[2Jy");
}

/// A root and a leaf whose subjects carry an escape sequence and a bidi override, by OpenSSL.
fn evil_chain(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("root.pem");
    let root_key = dir.join("root.key");
    let leaf = dir.join("leaf.pem");
    let leaf_key = dir.join("leaf.key");
    let csr = dir.join("leaf.csr");
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    support::openssl_p256_self_signed(
        &root_key,
        &root,
        &[
            "-days",
            "5",
            "-utf8",
            "-subj",
            "/CN=Root\u{1b}[31m\u{202e}X",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    support::openssl_p256_csr(&leaf_key, &csr, &["-utf8", "-subj", "/CN=evil\u{1b}[31m\u{202e}RED"]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&root),
        "-CAkey",
        &s(&root_key),
        "-days",
        "3",
        "-out",
        &s(&leaf),
        "-extfile",
        &s(&ext),
    ]);
    (root, leaf)
}

#[test]
fn verify_escapes_the_trusted_path_and_quiet_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, leaf) = evil_chain(tmp.path());
    let out = ok(support::command("ca").arg("verify").arg(&leaf).arg("--root").arg(&root));
    assert!(out.contains("\n  0: CN=evil\\u{1b}[31m\\u{202e}RED (serial "), "{out}");
    assert!(out.contains("\n  1: CN=Root\\u{1b}[31m\\u{202e}X (serial "), "{out}");
    assert_no_raw_controls(&out);
    let json: serde_json::Value = serde_json::from_str(&ok(support::command("ca")
        .arg("verify")
        .arg(&leaf)
        .arg("--root")
        .arg(&root)
        .arg("--json")))
    .unwrap();
    assert_eq!(json["path"][0]["subject"], "CN=evil\u{1b}[31m\u{202e}RED");

    let quiet = output(
        support::command("ca")
            .args(["-q", "verify"])
            .arg(&leaf)
            .arg("--root")
            .arg(&root),
    );
    assert_eq!(code(&quiet), 0);
    assert_eq!(stdout(&quiet), "");
    assert_eq!(stderr(&quiet), "");
}

// 2. SANs valid for their type, and written once.

#[test]
fn a_request_with_a_control_character_in_a_name_is_refused_and_nothing_is_written() {
    let ca = Ca::new();
    let csr = ca.path("esc.csr");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ed25519",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/CN=x",
        "-addext",
        "subjectAltName=URI:x://a\u{1b}[2Jb,DNS:z.example.org",
        "-out",
        &s(&csr),
    ]);
    let before = ca.files();
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "server", "--name", "esc.example.org", "--csr"])
            .arg(&csr)
            .arg("--out")
            .arg(ca.path("esc")),
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "ca: error: cannot issue for the certificate signing request: the request asks for the URI \
         \"x://a\\u{1b}[2Jb\", which is not a valid URI: character U+001B is not allowed in a URI (RFC 3986 \
         §2: percent-encode it)\nca: hint: give the certificate's names with --san (the request's names are \
         then ignored)\n"
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(ca.files(), before);
    assert_eq!(ca.records(), 0);
}

#[test]
fn a_request_with_a_malformed_dns_name_is_refused_in_plain_words() {
    let ca = Ca::new();
    let csr = ca.path("dd.csr");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ed25519",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/CN=x",
        "-addext",
        "subjectAltName=DNS:a..b",
        "-out",
        &s(&csr),
    ]);
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "server", "--name", "x.example.org", "--csr"])
            .arg(&csr)
            .arg("--out")
            .arg(ca.path("dd")),
    );
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out)
            .contains("the request asks for the DNS name \"a..b\", which is not a valid DNS name: label 2 is empty\n"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ca.records(), 0);
}

#[test]
fn san_values_not_valid_for_their_type_are_usage_errors() {
    let ca = Ca::new();
    let cases = [
        (
            "email:a\u{1b}b@x.org",
            "\"email:a\\u{1b}b@x.org\" is not a valid e-mail address: character U+001B is not allowed before @",
        ),
        (
            "uri:x://a\u{1b}[2Jb",
            "\"uri:x://a\\u{1b}[2Jb\" is not a valid URI: character U+001B is not allowed in a URI",
        ),
        (
            "uri:https://a b",
            "\"uri:https://a b\" is not a valid URI: character U+0020 is not allowed in a URI",
        ),
        (
            "uri://host/path",
            "\"uri://host/path\" is not a valid URI: it has no scheme",
        ),
        ("uri:1x://host", "is not a valid URI: the scheme \"1x\" is not a letter"),
        (
            "uri:https://a/%zz",
            "is not a valid URI: a % is not followed by two hex digits",
        ),
        (
            "email:a b@x.org",
            "is not a valid e-mail address: character U+0020 is not allowed before @",
        ),
        (
            "email:a@b@x.org",
            "is not a valid e-mail address: the domain after @: character '@' is not a letter",
        ),
        (
            "email:a..b@x.org",
            "is not a valid e-mail address: the part before @ starts or ends with a dot",
        ),
        ("email:nobody", "is not a valid e-mail address: it has no @"),
        (
            "dns:a\u{7f}.test",
            "\"dns:a\\u{7f}.test\" is not a valid DNS name: character U+007F is not a letter, digit or hyphen",
        ),
        (
            "dns:a_b.test",
            "is not a valid DNS name: character '_' is not a letter, digit or hyphen",
        ),
        (
            "dns:bücher.example",
            "is not a valid DNS name: character U+00FC is not ASCII (give an internationalised name as its A-label, xn--…)",
        ),
        ("dns:a..b", "\"dns:a..b\" is not a valid DNS name: label 2 is empty"),
        (
            "dns:-a.test",
            "is not a valid DNS name: label 1 starts or ends with a hyphen",
        ),
        (
            "dns:a.*.test",
            "is not a valid DNS name: a wildcard * may only be the whole leftmost label",
        ),
        ("ip:300.1.1.1", "\"ip:300.1.1.1\" is not an IP address"),
    ];
    for (san, expected) in cases {
        let out = output(
            ca.cmd()
                .args([
                    "issue",
                    "--profile",
                    "server",
                    "--name",
                    "ok.example.org",
                    "--san",
                    san,
                    "--out",
                ])
                .arg(ca.path("x")),
        );
        assert_eq!(code(&out), 2, "{san}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("ca: error: --san \""), "{san}: {err}");
        assert!(err.contains(expected), "{san}: {err}");
        assert!(err.contains("\nca: hint: give dns:HOST"), "{san}: {err}");
        assert_no_raw_controls(&err);
    }
    assert_eq!(ca.records(), 0);
    assert!(!ca.path("x.pem").exists());
    // Valid names of every type pass, normalised.
    let out = ok(ca
        .cmd()
        .args([
            "issue",
            "--profile",
            "server",
            "--name",
            "ok.example.org",
            "--san",
            "email:First.Last+tag@Example.ORG",
            "--san",
            "URI:SPIFFE://example.org/svc%20a",
            "--san",
            "dns:xn--bcher-kva.example.",
            "--san",
            "*.Example.org",
            "--san",
            "ip:::1",
            "--out",
        ])
        .arg(ca.path("ok")));
    assert!(
        out.contains(
            "  names:       dns:ok.example.org, email:First.Last+tag@example.org, uri:spiffe://example.org/svc%20a, \
             dns:xn--bcher-kva.example, dns:*.example.org, ip:::1\n"
        ),
        "{out}"
    );
}

#[test]
fn repeated_sans_are_written_once() {
    let ca = Ca::new();
    let out = output(
        ca.cmd()
            .args([
                "issue",
                "--profile",
                "server",
                "--name",
                "b.test",
                "--san",
                "a.test",
                "--san",
                "A.TEST",
                "--san",
                "dns:a.test.",
                "--out",
            ])
            .arg(ca.path("dup")),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("  names:       dns:b.test, dns:a.test\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stderr(&out),
        "ca: warning: --san dns:a.test is given more than once; the certificate names it once\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(ca.cmd().args(["list", "--json"]))).unwrap();
    assert_eq!(json[0]["sans"], serde_json::json!(["dns:b.test", "dns:a.test"]));

    // The same from a request, quietly.
    let csr = ca.path("dup.csr");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ed25519",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/CN=x",
        "-addext",
        "subjectAltName=DNS:c.test,DNS:C.TEST,DNS:c.test.",
        "-out",
        &s(&csr),
    ]);
    let out = ok(ca
        .cmd()
        .args(["issue", "--profile", "server", "--name", "c.test", "--csr"])
        .arg(&csr)
        .arg("--out")
        .arg(ca.path("dupcsr")));
    assert!(out.contains("  names:       dns:c.test\n"), "{out}");
}

// 3. Messages and codes.

#[test]
fn a_serial_that_is_not_hex_is_a_usage_error() {
    let ca = Ca::new();
    for (serial, expected) in [
        (
            "zz",
            "ca: error: \"zz\" is not a serial number: 'z' is not a hex digit\n",
        ),
        ("", "ca: error: the serial number is empty\n"),
        (
            "-1",
            "ca: error: \"-1\" is not a serial number: '-' is not a hex digit\n",
        ),
        (
            "0x1f",
            "ca: error: \"0x1f\" is not a serial number: 'x' is not a hex digit\n",
        ),
    ] {
        let out = output(ca.cmd().args(["revoke", serial]));
        assert_eq!(code(&out), 2, "{serial:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with(expected), "{serial:?}: {err}");
        assert!(
            err.contains("ca: hint: give the serial in hex as `ca list` prints it"),
            "{err}"
        );
    }
    let out = output(ca.cmd().args(["revoke", &"1".repeat(41)]));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("longer than 20 octets"), "{}", stderr(&out));
    // A well-formed serial that is not there is still exit 3.
    let out = output(ca.cmd().args(["revoke", "3f:9a:0c"]));
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).starts_with("ca: error: no certificate with serial 3f9a0c was issued"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_lists_only_causes_of_its_own() {
    let help = ok(support::command("ca").arg("--help"));
    assert!(!help.contains("tampered"), "{help}");
    assert!(help.contains("EXIT CODES:\n  0  success\n"), "{help}");
    for sub in ["verify", "show"] {
        let help = ok(support::command("ca").args([sub, "--help"]));
        let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("else certs/ca; not used by `show`, `verify` and `export`)"),
            "{sub}: {help}"
        );
        assert!(!help.contains("tampered"), "{help}");
    }
}

#[test]
fn a_name_is_escaped_once() {
    let ca = Ca::new();
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "server", "--name", "a\u{202e}b.test"]),
    );
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(err.contains("and \"a\\u{202e}b.test\" is neither"), "{err}");
    assert!(!err.contains("\\\\u"), "{err}");
}

#[test]
fn state_files_that_are_not_regular_files_are_refused() {
    for name in [
        "ca.db",
        "store.json",
        "db.json",
        "crl.pem",
        "chain.pem",
        "ca.key",
        "ca.pem",
        "urls.json",
    ] {
        let ca = Ca::new();
        let path = ca.dir().join(name);
        let _ = std::fs::remove_file(&path);
        let made = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        for command in ["list", "crl"] {
            let out = support::run(ca.cmd().arg(command), None, Duration::from_secs(20));
            assert_eq!(code(&out), 3, "{name}: {}", stderr(&out));
            assert_eq!(
                stderr(&out).lines().next().unwrap(),
                format!(
                    "ca: error: {} is a FIFO, not a regular file; refusing to read it",
                    path.display()
                )
            );
        }
    }
}

#[test]
fn an_empty_ca_dir_variable_counts_as_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output(
        support::command("ca")
            .current_dir(tmp.path())
            .env("TESSERA_CA_DIR", "")
            .arg("list"),
    );
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).starts_with("ca: error: certs/ca is not a CA directory (no ca.pem)\n"),
        "{}",
        stderr(&out)
    );
    let out = output(support::command("ca").args(["--dir", "", "list"]));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("the directory must not be empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_over_a_file_and_show_of_nothing_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("F");
    std::fs::write(&file, "x").unwrap();
    let out = output(ca(&file).args(["init", "--no-passphrase"]));
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).starts_with(&format!(
            "ca: error: {} exists and is not a directory\n",
            file.display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    let out = output(support::command("ca").args(["show", "-"]));
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).starts_with("ca: error: standard input is empty\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn crl_numbers_are_json_numbers() {
    let ca = Ca::new();
    let json: serde_json::Value = serde_json::from_str(&ok(ca.cmd().args(["crl", "--json"]))).unwrap();
    assert_eq!(json["crl_number"].as_u64(), Some(1));
    assert!(json.get("crl_number_decimal").is_none(), "{json}");
}

// 4. Warnings in the tools' own words.

#[test]
fn library_warnings_read_tool_warning() {
    let ca = Ca::new();
    ok(ca.cmd().args(["crl", "-q"]));
    std::fs::remove_file(ca.dir().join("crl.pem")).unwrap();
    let out = output(ca.cmd().args(["revoke", "01"]));
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    let crl = ca.dir().join("crl.pem");
    assert!(
        err.starts_with(&format!(
            "ca: warning: {} is missing, though the database records CRL number 1",
            crl.display()
        )),
        "{err}"
    );
    assert!(!err.contains("WARN"), "{err}");

    // sign's warning about a key others can read.
    let key = ca.path("k.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &s(&key)]);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let module = ca.path("m.bin");
    std::fs::write(&module, b"module").unwrap();
    let out = output(
        support::command("sign")
            .arg(&module)
            .arg("--key")
            .arg(&key)
            .arg("-o")
            .arg(ca.path("m.sig")),
    );
    let err = stderr(&out);
    assert!(
        err.starts_with("sign: warning: private key file is accessible to group or others; `chmod 600` it"),
        "{err}"
    );
    assert!(!err.contains("WARN"), "{err}");
}

// 5. Usage errors end with a hint.

#[test]
fn usage_errors_end_with_a_hint_naming_the_command() {
    let out = output(support::command("ca").args(["issue", "--profile", "server", "--name", "x", "--bogus"]));
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.ends_with("ca: hint: see 'ca issue --help'\n"), "{err}");
    assert!(!err.contains("For more information"), "{err}");

    let out = output(support::command("ca").args(["issue", "--profile", "server", "--name", "x", "--days", "-1"]));
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "ca: error: invalid value '-1' for '--days <DAYS>': \"-1\" is not a whole number of days: use a whole \
         number of days from 1 to 36500\n\nca: hint: see 'ca issue --help'\n"
    );
    for name in ["sign", "verify"] {
        let out = output(support::command(name).arg("--bogus"));
        assert_eq!(code(&out), 2);
        let err = stderr(&out);
        assert!(err.ends_with(&format!("{name}: hint: see '{name} --help'\n")), "{err}");
    }
}

// 6. Help is wrapped at no fewer than 80 columns.

#[test]
fn narrow_terminals_still_get_readable_help() {
    for (sub, description) in [
        (
            "issue",
            "Subject alternative name: dns:HOST, ip:ADDR, email:ADDR, uri:URI",
        ),
        ("verify", "A DNS name or IP address the certificate must be valid for"),
    ] {
        let help = ok(support::command("ca").env("COLUMNS", "40").args([sub, "--help"]));
        // At 40 columns clap would put one or two words of each description on a line.
        assert!(help.lines().any(|l| l.contains(description)), "{help}");
        let options = help.split("EXAMPLES:").next().unwrap();
        assert!(options.lines().all(|l| l.len() <= 80), "{help}");
        // Description lines (not a flag, not a heading) of a single word.
        let one_word = options
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('-') && !l.ends_with(':') && l.split_whitespace().count() == 1)
            .count();
        assert!(one_word <= 1, "{one_word} lines of one word: {help}");
    }
}
