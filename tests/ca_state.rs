//! The `ca` tool's state (the SQLite store `DIR/ca.db`): a CA whose store is missing or damaged
//! is refused (never started afresh), the CRL always reflects the store (an interrupted command
//! is repaired by the next one), and `kill -9` at any moment leaves no debris and blocks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{ToolCa, ca, ok, output, stderr};

use tessera::pki::{CrlInfo, pem};

support::newtype!(
    /// A root CA without passphrase in a fresh temporary directory.
    Ca(ToolCa)
);

impl Ca {
    fn new() -> Self {
        Self(ToolCa::new("State Root", &[]))
    }
    /// Issues a client certificate; returns its serial.
    fn issue(&self, name: &str) -> String {
        let json = self.issue_json("client", name);
        json["certificate"]["serial"].as_str().unwrap().to_string()
    }
    /// Every record, newest first, as `ca list --json` shows them.
    fn records(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&ok(self.cmd().args(["list", "--json", "-q"]))).unwrap()
    }
    /// Serials the store records as revoked.
    fn revoked_in_db(&self) -> BTreeSet<String> {
        let conn = rusqlite::Connection::open(self.dir().join("ca.db")).unwrap();
        let mut statement = conn
            .prepare("SELECT serial FROM certificates WHERE status = 'revoked'")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
    /// The last CRL number the store handed out.
    fn crl_number_in_db(&self) -> u64 {
        let conn = rusqlite::Connection::open(self.dir().join("ca.db")).unwrap();
        conn.query_row("SELECT crl_number FROM issuers", [], |row| row.get::<_, i64>(0))
            .unwrap() as u64
    }
    fn crl(&self) -> CrlInfo {
        let bytes = std::fs::read(self.dir().join("crl.pem")).unwrap();
        CrlInfo::from_der(&pem::parse_crls(&bytes, "crl.pem").unwrap()[0]).unwrap()
    }
    /// Serials `crl.pem` lists.
    fn revoked_in_crl(&self) -> BTreeSet<String> {
        self.crl().revoked.into_iter().map(|r| r.serial.to_string()).collect()
    }
    fn crl_number(&self) -> u64 {
        self.crl().crl_number.unwrap().parse().unwrap()
    }
    /// The CRL lists exactly what the database records, under the database's CRL number.
    fn assert_consistent(&self, context: &str) {
        assert_eq!(self.revoked_in_crl(), self.revoked_in_db(), "{context}");
        assert_eq!(self.crl_number(), self.crl_number_in_db(), "{context}");
    }
}

/// Hidden files (temporaries) in `dir`.
fn hidden_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A small deterministic generator for kill delays; the seed is printed on failure.
struct Delays(u64);

impl Delays {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill delays seed: {seed}");
        Self(seed)
    }
    /// A delay from 0 to `max_micros` microseconds.
    fn next(&mut self, max_micros: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % (max_micros + 1))
    }
}

/// Runs `cmd` and kills it (SIGKILL) after `delay`, whatever it was doing.
fn kill_after(cmd: &mut Command, delay: Duration) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_missing_database_is_refused_and_nothing_is_started_afresh() {
    let ca = Ca::new();
    let revoked = ca.issue("alice");
    ca.issue("bob");
    ok(ca.cmd().args(["revoke", &revoked, "--reason", "key-compromise"]));
    let crl_before = std::fs::read(ca.dir().join("crl.pem")).unwrap();
    std::fs::rename(ca.dir().join("ca.db"), ca.path("ca.db.moved")).unwrap();

    let commands: [&[&str]; 5] = [
        &["crl"],
        &["list"],
        &["issue", "--profile", "client", "--name", "carol"],
        &["revoke", &revoked],
        &["list", "--json"],
    ];
    for args in commands {
        let out = output(ca.cmd().args(args));
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let dir = ca.dir().display().to_string();
        assert_eq!(
            stderr(&out),
            format!(
                "ca: error: the issuance database {dir}/ca.db is missing\n\
                 ca: hint: restore the store from a backup (`ca backup` makes one); a CA never starts afresh \
                 without it, as a new store would forget every revocation (certificates and keys are unaffected)\n"
            ),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!ca.dir().join("ca.db").exists(), "{args:?} created a database");
        assert_eq!(std::fs::read(ca.dir().join("crl.pem")).unwrap(), crl_before, "{args:?}");
    }
    // An intermediate cannot be made from it either.
    let out = output(
        self::ca(&ca.path("sub"))
            .args(["init", "--no-passphrase", "--parent"])
            .arg(ca.dir()),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("ca.db is missing"), "{}", stderr(&out));
    assert!(!ca.path("sub").exists());

    // Put back, everything is as it was: the revocation stands.
    std::fs::rename(ca.path("ca.db.moved"), ca.dir().join("ca.db")).unwrap();
    ok(ca.cmd().arg("crl"));
    assert_eq!(ca.revoked_in_crl(), BTreeSet::from([revoked]));
    assert_eq!(ca.crl_number(), 2);
}

#[test]
fn an_empty_truncated_corrupt_or_foreign_database_is_refused() {
    let ca = Ca::new();
    let serial = ca.issue("alice");
    ok(ca.cmd().args(["revoke", &serial]));
    let whole = std::fs::read(ca.dir().join("ca.db")).unwrap();
    let crl_before = std::fs::read(ca.dir().join("crl.pem")).unwrap();
    let other = Ca::new();
    other.issue("someone");
    let foreign = std::fs::read(other.dir().join("ca.db")).unwrap();
    // The same store with a schema version from a newer Tessera.
    let newer_dir = tempfile::tempdir().unwrap();
    std::fs::write(newer_dir.path().join("ca.db"), &whole).unwrap();
    rusqlite::Connection::open(newer_dir.path().join("ca.db"))
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
            [],
        )
        .unwrap();
    let newer = std::fs::read(newer_dir.path().join("ca.db")).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "the file is empty"),
        (b"  \n".to_vec(), "the file is truncated"),
        (whole[..whole.len() / 2].to_vec(), "the file is truncated"),
        (whole[..whole.len() - 3].to_vec(), "the file is truncated"),
        (b"\x00\x13\xff garbage".repeat(20), "the file is not an SQLite database"),
        (newer, "its schema version 99 is newer than this Tessera knows"),
        (foreign, "it belongs to another CA"),
    ];
    for (bytes, words) in cases {
        std::fs::write(ca.dir().join("ca.db"), &bytes).unwrap();
        for args in [
            &["crl"][..],
            &["list"],
            &["revoke", &serial],
            &["issue", "--profile", "client", "--name", "x"],
        ] {
            let out = output(ca.cmd().args(args));
            assert_eq!(out.status.code(), Some(3), "{words} {args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.starts_with(&format!(
                    "ca: error: issuance database {}/ca.db is damaged: ",
                    ca.dir().display()
                )) && err.contains(words)
                    && err.contains("ca: hint: restore the store from a backup"),
                "{words} {args:?}: {err}"
            );
            assert_eq!(
                std::fs::read(ca.dir().join("ca.db")).unwrap(),
                bytes,
                "{words} {args:?}"
            );
            assert_eq!(std::fs::read(ca.dir().join("crl.pem")).unwrap(), crl_before);
            assert!(!ca.dir().join("issued/x.pem").exists());
        }
    }
}

#[test]
fn a_database_older_than_the_crl_is_refused_so_no_revocation_is_undone() {
    let ca = Ca::new();
    let first = ca.issue("alice");
    let second = ca.issue("bob");
    ok(ca.cmd().args(["revoke", &first]));
    let backup = std::fs::read(ca.dir().join("ca.db")).unwrap();
    ok(ca.cmd().args(["revoke", &second]));
    let crl = std::fs::read(ca.dir().join("crl.pem")).unwrap();
    std::fs::write(ca.dir().join("ca.db"), &backup).unwrap();
    for args in [
        &["crl"][..],
        &["revoke", &first],
        &["issue", "--profile", "client", "--name", "c"],
    ] {
        let out = output(ca.cmd().args(args));
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("has CRL number 2, but the issuance database has only reached 1")
                && stderr(&out).contains("ca: hint: restore the newest backup of the store"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(ca.dir().join("crl.pem")).unwrap(), crl, "{args:?}");
        assert_eq!(std::fs::read(ca.dir().join("ca.db")).unwrap(), backup, "{args:?}");
    }
    // `ca list` still lists, and warns.
    let out = output(ca.cmd().arg("list"));
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("ca: warning: "), "{}", stderr(&out));
}

/// What a crash between recording a revocation and writing `crl.pem` leaves: the database
/// ahead of the CRL. Made here by putting the previous CRL back.
fn interrupted_revocation(ca: &Ca) -> (String, Vec<u8>) {
    let first = ca.issue("first");
    let second = ca.issue("second");
    ca.issue("third");
    ok(ca.cmd().args(["revoke", &first]));
    let old = std::fs::read(ca.dir().join("crl.pem")).unwrap();
    ok(ca.cmd().args(["revoke", &second, "--reason", "superseded"]));
    std::fs::write(ca.dir().join("crl.pem"), &old).unwrap();
    assert_eq!(ca.revoked_in_crl().len(), 1);
    assert_eq!(ca.revoked_in_db().len(), 2);
    (second, old)
}

#[test]
fn an_interrupted_revocation_is_repaired_by_the_retry() {
    let ca = Ca::new();
    let (second, _) = interrupted_revocation(&ca);
    // `ca list` cannot sign, so it says so.
    let out = output(ca.cmd().arg("list"));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("crl.pem is CRL number 1, but the store has handed out CRL number 2")
            && stderr(&out).contains("the next `ca crl` (or any command that signs) rewrites it"),
        "{}",
        stderr(&out)
    );
    // The retry succeeds (the revocation was recorded) and the CRL lists it.
    let out = output(ca.cmd().args(["revoke", &second, "--reason", "superseded"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{second} was already revoked on ")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    ca.assert_consistent("after the retry");
    assert_eq!(
        ca.crl_number(),
        3,
        "a fresh number: CRL number 2 may have been seen nowhere, but never reuse"
    );
    // openssl accepts the repaired CRL.
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-verify", "-in"])
        .arg(ca.dir().join("crl.pem"))
        .arg("-CAfile")
        .arg(ca.dir().join("ca.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify OK"));
}

#[test]
fn any_command_that_signs_repairs_a_crl_left_behind() {
    for next in [
        &["issue", "--profile", "client", "--name", "later"][..],
        &["crl"],
        &["revoke", "00"], // an unknown serial: refused, but the CRL is repaired first
    ] {
        let ca = Ca::new();
        interrupted_revocation(&ca);
        let out = output(ca.cmd().args(next));
        ca.assert_consistent(&format!("after {next:?}: {}", stderr(&out)));
        assert_eq!(ca.revoked_in_crl().len(), 2);
    }
    // A deleted or damaged crl.pem is rewritten the same way.
    for damage in [
        None,
        Some(&b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"[..]),
    ] {
        let ca = Ca::new();
        let serial = ca.issue("alice");
        ok(ca.cmd().args(["revoke", &serial]));
        match damage {
            None => std::fs::remove_file(ca.dir().join("crl.pem")).unwrap(),
            Some(bytes) => std::fs::write(ca.dir().join("crl.pem"), bytes).unwrap(),
        }
        ok(ca.cmd().args(["issue", "--profile", "client", "--name", "bob"]));
        ca.assert_consistent("rewritten");
        assert_eq!(ca.revoked_in_crl(), BTreeSet::from([serial]));
    }
}

#[test]
fn revoking_again_is_idempotent_and_another_reason_is_refused() {
    let ca = Ca::new();
    let serial = ca.issue("alice");
    let out = ok(ca.cmd().args(["revoke", &serial, "--reason", "key-compromise"]));
    assert!(
        out.starts_with(&format!("revoked {serial} (key-compromise); wrote ")),
        "{out}"
    );
    let crl = std::fs::read(ca.dir().join("crl.pem")).unwrap();
    // Same reason, or none: nothing changes, success.
    for args in [&["--reason", "key-compromise"][..], &[], &["--reason", "unspecified"]] {
        let out = output(ca.cmd().args(["revoke", &serial]).args(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("{serial} was already revoked on "))
                && text.contains("(key-compromise); nothing changed"),
            "{text}"
        );
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(ca.dir().join("crl.pem")).unwrap(),
            crl,
            "the CRL is not re-signed"
        );
    }
    // Another reason: exit 1, with a hint; nothing changes.
    let out = output(ca.cmd().args(["revoke", &serial, "--reason", "superseded"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("ca: error: certificate {serial} is already revoked, since "))
            && err.contains("(key-compromise)\nca: hint: a revocation is final"),
        "{err}"
    );
    assert_eq!(std::fs::read(ca.dir().join("crl.pem")).unwrap(), crl);
    // --json tells which case it was.
    let json: serde_json::Value = serde_json::from_str(&ok(ca.cmd().args(["revoke", &serial, "--json"]))).unwrap();
    assert_eq!(json["already_revoked"], true);
    assert_eq!(json["reason"], "key-compromise");
}

#[test]
fn kill_9_during_revoke_never_leaves_the_crl_behind_the_database() {
    let ca = Ca::new();
    let serials: Vec<String> = (0..30).map(|i| ca.issue(&format!("r{i}"))).collect();
    let mut delays = Delays::new();
    let mut behind = 0;
    for (i, serial) in serials.iter().enumerate() {
        kill_after(
            ca.cmd().args(["revoke", serial, "--reason", "key-compromise"]),
            delays.next(30_000),
        );
        if ca.dir().join("crl.pem").exists() && ca.revoked_in_crl() != ca.revoked_in_db() {
            behind += 1;
        }
        // Whatever the moment of the kill, the retry succeeds and leaves the CRL complete.
        let out = output(ca.cmd().args(["revoke", serial, "--reason", "key-compromise"]));
        assert_eq!(out.status.code(), Some(0), "round {i}: {}", stderr(&out));
        ca.assert_consistent(&format!("round {i}"));
    }
    eprintln!("the kill left the CRL behind the database {behind} time(s) of 30");
    assert_eq!(ca.revoked_in_crl().len(), 30);
    assert!(hidden_files(&ca.dir()).is_empty(), "{:?}", hidden_files(&ca.dir()));
}

#[test]
fn kill_9_during_issue_leaves_no_debris_and_blocks_no_reissue() {
    let ca = Ca::new();
    let out_dir = ca.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut delays = Delays::new();
    let (mut finished, mut leftovers) = (0, 0);
    for i in 0..40 {
        let name = format!("k{i}");
        let prefix = out_dir.join(&name);
        kill_after(
            ca.cmd()
                .args(["issue", "--profile", "client", "--name", &name, "--out"])
                .arg(&prefix),
            delays.next(20_000),
        );
        let file = |suffix: &str| out_dir.join(format!("{name}{suffix}"));
        if file(".pem").exists() {
            // Finished before the kill: all three files are there.
            assert!(file(".key").exists() && file(".chain.pem").exists(), "{name}");
            finished += 1;
            continue;
        }
        // Interrupted: issuing again under the same name works.
        let out = output(
            ca.cmd()
                .args(["issue", "--profile", "client", "--name", &name, "--out"])
                .arg(&prefix),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        for warning in stderr(&out).lines() {
            assert!(
                warning.contains("left by an interrupted `ca issue`"),
                "{name}: {warning}"
            );
            leftovers += 1;
        }
        assert!(file(".key").exists() && file(".chain.pem").exists(), "{name}");
    }
    eprintln!("{finished} of 40 finished before the kill; {leftovers} leftover files removed by a re-issue");
    // Every certificate handed out (its file written) is recorded in the store.
    let recorded: BTreeSet<String> = ca
        .records()
        .iter()
        .map(|r| r["serial"].as_str().unwrap().into())
        .collect();
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if name.ends_with(".pem") && !name.ends_with(".chain.pem") {
            let der = pem::load_certificates(&path).unwrap();
            let serial = tessera::pki::CertificateInfo::from_der(&der[0])
                .unwrap()
                .serial
                .to_string();
            assert!(recorded.contains(&serial), "{name} not recorded");
        }
    }
    // One more command under the lock sweeps what the last kill may have left in the CA.
    ok(ca.cmd().arg("crl"));
    assert!(hidden_files(&ca.dir()).is_empty(), "{:?}", hidden_files(&ca.dir()));
    assert!(hidden_files(&out_dir).is_empty(), "{:?}", hidden_files(&out_dir));
    // Every key has its certificate.
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            assert!(
                path.with_extension("pem").exists(),
                "{} without certificate",
                path.display()
            );
        }
    }
}

#[test]
fn leftovers_of_an_interrupted_issue_are_recognised_and_nothing_else_is_touched() {
    let ca = Ca::new();
    let prefix = ca.path("www");
    let with = |suffix: &str| ca.path(&format!("www{suffix}"));
    ok(ca
        .cmd()
        .args(["issue", "--profile", "client", "--name", "www", "--out"])
        .arg(&prefix));
    // What a crash between placing the key and the certificate leaves.
    std::fs::remove_file(with(".pem")).unwrap();
    let serial = ca.records()[0]["serial"].as_str().unwrap().to_string();
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--name", "www", "--out"])
            .arg(&prefix),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "ca: warning: removed {0}.chain.pem, left by an interrupted `ca issue` (certificate {serial} was recorded but never written)\n\
             ca: warning: removed {0}.key, left by an interrupted `ca issue` (certificate {serial} was recorded but never written)\n",
            prefix.display()
        )
    );
    assert!(with(".pem").exists() && with(".key").exists());

    // A key that is not this CA's is never removed.
    let foreign = ca.path("mine");
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(foreign.with_extension("key"))
        .status()
        .unwrap();
    assert!(status.success());
    let key = std::fs::read(foreign.with_extension("key")).unwrap();
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--name", "mine", "--out"])
            .arg(&foreign),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("mine.key already exists; refusing to overwrite it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(foreign.with_extension("key")).unwrap(), key);

    // An encrypted leftover is removed only when its passphrase proves it is ours.
    let pass = ca.path("pass");
    std::fs::write(&pass, "pw pw pw\n").unwrap();
    let enc = ca.path("enc");
    ok(ca
        .cmd()
        .args(["issue", "--profile", "client", "--name", "enc", "--key-passphrase-file"])
        .arg(&pass)
        .arg("--out")
        .arg(&enc));
    std::fs::remove_file(enc.with_extension("pem")).unwrap();
    std::fs::remove_file(ca.path("enc.chain.pem")).unwrap();
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--name", "enc", "--out"])
            .arg(&enc),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("enc.key exists without")
            && stderr(&out).contains("ca: hint: if an earlier `ca issue` of this name was interrupted"),
        "{}",
        stderr(&out)
    );
    assert!(enc.with_extension("key").exists());
    let out = output(
        ca.cmd()
            .args(["issue", "--profile", "client", "--name", "enc", "--key-passphrase-file"])
            .arg(&pass)
            .arg("--out")
            .arg(&enc),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enc.key, left by an interrupted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stale_temporaries_are_swept_and_live_ones_kept() {
    let ca = Ca::new();
    ca.issue("first");
    let issued = ca.dir().join("issued");
    // A PID above the kernel's limit is never running; ours is.
    let dead = 4_194_305;
    let live = std::process::id();
    let stale = [
        ca.dir().join(format!(".db.json.tmp-{dead}-0123456789abcdef")),
        ca.dir().join(format!(".crl.pem.tmp-{dead}-00112233445566ff")),
        issued.join(format!(".x.pem.tmp-{dead}-0123456789abcdef")),
        issued.join(format!(".x.key.tmp-{dead}-0123456789abcdef")),
    ];
    let kept = [
        ca.dir().join(format!(".db.json.tmp-{live}-0123456789abcdef")),
        issued.join(".notes"),
        issued.join(format!(".x.pem.tmp-{dead}-not-hex")),
    ];
    for path in stale.iter().chain(&kept) {
        std::fs::write(path, b"partial").unwrap();
    }
    ca.issue("second");
    for path in &stale {
        assert!(!path.exists(), "{} left", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} removed", path.display());
    }
}

#[test]
fn an_interrupted_init_is_named_and_a_complete_ca_always_has_its_database() {
    let tmp = tempfile::tempdir().unwrap();
    // What an interrupted init leaves: a key without ca.pem.
    let dir = tmp.path().join("half");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("ca.key"), b"key").unwrap();
    let out = output(ca(&dir).args(["init", "--no-passphrase"]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        format!(
            "ca: error: {} holds an unfinished CA (ca.key exists but ca.pem does not): an earlier `ca init` was interrupted\n\
             ca: hint: if nothing was issued from it, remove the directory and run `ca init` again; if ca.pem was deleted, restore it from a backup\n",
            dir.display()
        )
    );
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), b"key");

    let mut delays = Delays::new();
    for i in 0..12 {
        let dir = tmp.path().join(format!("ca{i}"));
        kill_after(ca(&dir).args(["init", "--no-passphrase"]), delays.next(30_000));
        if dir.join("ca.pem").exists() {
            // Complete: it has its database and works.
            ok(ca(&dir).arg("list"));
            ok(ca(&dir).arg("crl"));
        } else {
            // Incomplete: init again either works or names the leftover.
            let out = output(ca(&dir).args(["init", "--no-passphrase"]));
            assert!(
                out.status.code() == Some(0) || stderr(&out).contains("an earlier `ca init` was interrupted"),
                "{}",
                stderr(&out)
            );
        }
        assert!(hidden_files(&dir).is_empty() || !dir.join("ca.pem").exists());
    }
}
