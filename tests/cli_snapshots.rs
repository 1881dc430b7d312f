//! Snapshots of the command-line contract: every tool's `--help` (and each `ca` subcommand's),
//! usage errors (exit 2) and the `error:` / `hint:` pairs of typical failures, byte for byte.
//!
//! Each file `tests/cmd/*.trycmd` is one case and its snapshot (the format of `trycmd`'s
//! `.trycmd` files, run by this harness so the cases can share a PKI made for the run):
//!
//! ```text
//! $ ca --dir root revoke zz        the command (split at spaces; '…' quotes), run in the fixture
//! ? 2                              its exit code
//! --- stdout                       what it wrote to stdout, redacted (below)
//! --- stderr                       what it wrote to stderr, redacted
//! ca: error: …
//! ```
//!
//! Lines before the `$` line starting with `#` are comments. The commands run in a fresh
//! directory holding the fixture made by [`fixture`] (so paths in a case are relative), in the
//! clean environment of `support::command`. Before comparing, the output is redacted: the
//! fixture's path reads `[TMP]`, the crate version `[VERSION]`, a run of 16 or more hex digits
//! (serials, key ids, digests) `[HEX]`, an RFC 3339 time `[TIME]`.
//!
//! To add a case, write a file with its `$` line only; to accept changed output, run
//! `TRYCMD=overwrite cargo test --test cli_snapshots` and review the diff (`git diff tests/cmd`).
//! The output of a tool is the contract (docs/*.md): a snapshot changes only with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use support::{ca, ok};

/// The PKI the cases use, made by the `ca` tool (so it is valid now), in `dir`:
/// - `root/`: a root CA; `inter/`: an intermediate under it (no passphrases);
/// - `enc/`: a root CA whose key is encrypted with the passphrase in `pass` (`wrong` holds
///   another);
/// - `server.{pem,key,chain.pem}`: a server certificate for `server`, valid for 2 days;
/// - `signer.{pem,key,chain.pem}`: a code-signing certificate; `module.bin` signed with it
///   (`module.bin.sig`), and `tampered.bin`, the module with one byte changed;
/// - `revoked.{pem,key,chain.pem}`: a code-signing certificate revoked (key compromise) in
///   `inter/crl.pem`, and `revoked.bin` signed with it before (`revoked.bin.sig`);
/// - `locked.{pem,key,chain.pem}`: a code-signing certificate whose key is encrypted with
///   the passphrase in `pass`;
/// - `not-a-certificate.pem`: text that is no PEM.
fn fixture(dir: &Path) {
    let at = |name: &str| dir.join(name);
    ok(ca(&at("root")).args(["init", "--name", "Snapshot Root", "--no-passphrase", "-q"]));
    ok(ca(&at("inter"))
        .args([
            "init",
            "--name",
            "Snapshot Issuing CA",
            "--no-passphrase",
            "-q",
            "--parent",
        ])
        .arg(at("root")));
    std::fs::write(at("pass"), "correct horse\n").unwrap();
    std::fs::write(at("wrong"), "battery staple\n").unwrap();
    ok(ca(&at("enc"))
        .args(["init", "--name", "Encrypted Root", "-q", "--passphrase-file"])
        .arg(at("pass")));
    for (profile, name, extra) in [
        ("server", "server", &["--days", "2"][..]),
        ("code-signing", "signer", &[][..]),
        ("code-signing", "revoked", &[][..]),
        ("code-signing", "locked", &["--key-passphrase-file", "pass"][..]),
    ] {
        ok(ca(&at("inter"))
            .current_dir(dir)
            .args(["issue", "-q", "--profile", profile, "--name", name, "--out"])
            .arg(at(name))
            .args(extra));
    }
    let sign = |module: &str, signer: &str| {
        ok(support::command("sign").current_dir(dir).args([
            module,
            "--key",
            &format!("{signer}.key"),
            "--cert",
            &format!("{signer}.chain.pem"),
            "-q",
        ]));
    };
    std::fs::write(at("module.bin"), b"a module\n").unwrap();
    std::fs::write(at("tampered.bin"), b"a modulE\n").unwrap();
    std::fs::write(at("revoked.bin"), b"a module\n").unwrap();
    sign("module.bin", "signer");
    sign("revoked.bin", "revoked");
    let shown = support::json(&ok(ca(&at("inter")).args(["show", "--json"]).arg(at("revoked.pem"))));
    let serial = shown["serial"].as_str().unwrap();
    ok(ca(&at("inter")).args(["revoke", "-q", serial, "--reason", "key-compromise"]));
    std::fs::write(at("not-a-certificate.pem"), "hello\n").unwrap();
}

/// One case file: comments, the command, and the expected exit code and output (if written).
struct Case {
    path: PathBuf,
    comments: Vec<String>,
    command: String,
    expected: Option<String>,
}

impl Case {
    fn read(path: PathBuf) -> Self {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut comments = Vec::new();
        let mut lines = text.split_inclusive('\n');
        let command = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{}: no `$ command` line", path.display()));
            if let Some(command) = line.strip_prefix("$ ") {
                break command.trim_end().to_string();
            }
            assert!(
                line.starts_with('#') || line.trim().is_empty(),
                "{}: only `#` comments come before the `$` line: {line:?}",
                path.display()
            );
            comments.push(line.trim_end().to_string());
        };
        let rest: String = lines.collect();
        Self {
            path,
            comments,
            command,
            expected: (!rest.is_empty()).then_some(rest),
        }
    }

    /// The file as it would be written with `actual` as the snapshot.
    fn render(&self, actual: &str) -> String {
        let mut text = String::new();
        for comment in &self.comments {
            writeln!(text, "{comment}").unwrap();
        }
        writeln!(text, "$ {}", self.command).unwrap();
        text + actual
    }
}

/// Splits a command line at spaces; `'…'` quotes a word with spaces.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            ' ' if !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "unbalanced quote in {command:?}");
    words.extend(word);
    words
}

/// What a case's tool did, redacted: `? CODE`, then stdout and stderr.
fn run_case(case: &Case, dir: &Path) -> String {
    let words = words(&case.command);
    let (tool, args) = words.split_first().expect("a command");
    let out = support::output(support::command(tool).args(args).current_dir(dir));
    let code = out.status.code().map_or("killed".to_string(), |c| c.to_string());
    let redact = |bytes: &[u8]| redact(&String::from_utf8_lossy(bytes), dir);
    format!(
        "? {code}\n--- stdout\n{}--- stderr\n{}",
        redact(&out.stdout),
        redact(&out.stderr)
    )
}

/// The output with what changes from run to run replaced (see the module doc).
fn redact(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "[TMP]");
    let text = text.replace(env!("CARGO_PKG_VERSION"), "[VERSION]");
    let text = replace_runs(&text, 16, |c| c.is_ascii_hexdigit(), "[HEX]");
    redact_times(&text)
}

/// Replaces every run of at least `min` characters matching `class` (a whole word: not
/// preceded or followed by a letter, digit or `_`) with `with`.
fn replace_runs(text: &str, min: usize, class: impl Fn(char) -> bool, with: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        if class(chars[i]) && (i == 0 || !word(chars[i - 1])) {
            while i < chars.len() && class(chars[i]) {
                i += 1;
            }
            if i - start >= min && (i == chars.len() || !word(chars[i])) {
                out.push_str(with);
                continue;
            }
            i = start;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Replaces RFC 3339 times in UTC to the second (`2030-01-31T12:00:00Z`) with `[TIME]`.
fn redact_times(text: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let fits = bytes.len() - i >= SHAPE.len()
            && SHAPE.iter().zip(&bytes[i..]).all(|(s, b)| match s {
                b'd' => b.is_ascii_digit(),
                s => s == b,
            });
        if fits {
            out.push_str("[TIME]");
            i += SHAPE.len();
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[test]
fn redaction_keeps_what_is_not_volatile() {
    let dir = Path::new("/tmp/.tmpAbC");
    assert_eq!(
        redact(
            "/tmp/.tmpAbC/x.pem: certificate 0a1b2c3d4e5f60718293a4b5c6d7e8f9 expired at 2030-01-31T12:00:00Z; exit 3, key 1f3a\n",
            dir
        ),
        "[TMP]/x.pem: certificate [HEX] expired at [TIME]; exit 3, key 1f3a\n"
    );
    assert_eq!(
        redact("deadbeefdeadbeefx and 0123456789abcdef0", dir),
        "deadbeefdeadbeefx and [HEX]"
    );
    assert_eq!(words("ca --name 'two words' x"), ["ca", "--name", "two words", "x"]);
}

#[test]
fn every_snapshot_matches() {
    let overwrite = std::env::var("TRYCMD").is_ok_and(|v| v == "overwrite");
    let tmp = tempfile::tempdir().unwrap();
    // The fixture's path, resolved (a tool may print it resolved).
    let dir = tmp.path().canonicalize().unwrap();
    fixture(&dir);
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "trycmd"))
        .collect();
    paths.sort();
    assert!(paths.len() > 20, "the cases are in {}", cases_dir.display());
    let mut failures = Vec::new();
    for path in paths {
        let case = Case::read(path);
        let actual = run_case(&case, &dir);
        if case.expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if overwrite {
            std::fs::write(&case.path, case.render(&actual)).unwrap();
            eprintln!("wrote {}", case.path.display());
        } else {
            failures.push(format!(
                "{} ($ {}):\n--- expected\n{}--- actual\n{actual}",
                case.path.display(),
                case.command,
                case.expected.as_deref().unwrap_or("(nothing yet)\n"),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ (after review, TRYCMD=overwrite cargo test --test cli_snapshots \
         accepts the new output):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
