//! `ca move-store`: a CA's SQLite store moved into a private PostgreSQL cluster, through the
//! `ca` command: the same records afterwards, the old `ca.db` fenced off, a move cut short
//! finished by running it again, a conflicting copy refused with nothing changed, and two CAs
//! moved into one database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

mod pg_support;

use std::path::{Path, PathBuf};

use pg_support::Postgres;
use support::{ca, json, ok, output, stderr};

/// A `ca` command on the CA in `dir`, with `--db` when given.
fn ca_with(dir: &Path, db: Option<&str>) -> std::process::Command {
    let mut cmd = ca(dir);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd
}

/// `ca list --json`: serial, status and revocation reason of every certificate, newest first.
fn list(dir: &Path, db: Option<&str>) -> Vec<(String, String, String)> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&ok(ca_with(dir, db).args(["list", "--json", "-q"]))).unwrap();
    entries
        .iter()
        .map(|e| {
            (
                e["serial"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["revocation_reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A root CA on SQLite in `tmp/NAME` with `issued` client certificates, the second and third
/// revoked; returns the directory and the serials, oldest first.
fn sqlite_ca(tmp: &Path, name: &str, issued: usize) -> (PathBuf, Vec<String>) {
    let dir = tmp.join(name);
    ok(ca(&dir).args(["init", "--name", name, "--no-passphrase"]));
    let serials: Vec<String> = (0..issued)
        .map(|i| {
            let out = ok(ca(&dir).args(["issue", "--profile", "client", "--json", "--name", &format!("c{i}")]));
            json(&out)["certificate"]["serial"].as_str().unwrap().to_string()
        })
        .collect();
    ok(ca(&dir).args(["revoke", &serials[1], "--reason", "key-compromise"]));
    ok(ca(&dir).args(["revoke", &serials[2], "--reason", "superseded"]));
    (dir, serials)
}

/// Copies the directory `from` (files and subdirectories) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn store_json(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("store.json")).unwrap()
}

/// The CRL number in DIR/crl.pem.
fn crl_number(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("crl.pem")).unwrap();
    let der = tessera::pki::pem::parse_crls(&bytes, "crl.pem").unwrap();
    tessera::pki::CrlInfo::from_der(&der[0])
        .unwrap()
        .crl_number
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_sqlite_store_moves_into_postgresql_with_every_record_and_the_old_one_is_fenced_off() {
    let pg = Postgres::start();
    let url = pg.url("ca");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, serials) = sqlite_ca(tmp.path(), "Moving Root", 6);
    let before = list(&dir, None);
    assert_eq!(before.len(), 6);
    let number = crl_number(&dir);

    // Without a PostgreSQL URL: a usage error, nothing changed.
    for db in [None, Some("sqlite")] {
        let out = output(ca_with(&dir, db).arg("move-store"));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--db postgres://"), "{}", stderr(&out));
    }
    assert!(store_json(&dir).contains("sqlite"));

    let out = output(ca_with(&dir, Some(&url)).arg("move-store"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = support::stdout(&out);
    assert!(said.contains("copied 6 certificates"), "{said}");
    assert!(store_json(&dir).contains("postgres"), "{}", store_json(&dir));

    // The same records, in the same order, now from PostgreSQL; none left behind or doubled.
    assert_eq!(list(&dir, Some(&url)), before);
    let rows: i64 = pg
        .client("ca")
        .query_one("SELECT count(*) FROM certificates", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 6);
    // Without --db the CA says where its state is now.
    let out = output(ca(&dir).arg("list"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keeps its state in PostgreSQL"),
        "{}",
        stderr(&out)
    );

    // The CA goes on in PostgreSQL: a revocation takes the next CRL number after the moved one.
    ok(ca_with(&dir, Some(&url)).args(["revoke", &serials[4], "--reason", "cessation-of-operation"]));
    assert_eq!(crl_number(&dir), number + 1);
    let after = list(&dir, Some(&url));
    assert_eq!(after.iter().filter(|e| e.1 == "revoked").count(), 3);
    ok(ca_with(&dir, Some(&url)).args(["issue", "--profile", "client", "--name", "after-the-move"]));

    // The old ca.db is kept as it was, and refuses every write (a process that still had it
    // open, or that waited for the move's lock, fails instead of writing where nobody reads).
    let db = rusqlite::Connection::open(dir.join("ca.db")).unwrap();
    let kept: i64 = db
        .query_row("SELECT count(*) FROM certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 6);
    for statement in [
        "UPDATE certificates SET status = 'good'",
        "DELETE FROM certificates",
        "UPDATE issuers SET crl_number = crl_number + 1",
        "INSERT INTO acme_nonces (issuer, nonce, expires) SELECT issuer, 'n', 0 FROM issuers",
    ] {
        let error = db.execute(statement, []).unwrap_err().to_string();
        assert!(error.contains("moved to PostgreSQL"), "{statement}: {error}");
    }
    drop(db);

    // A second move has nothing to move.
    let out = output(ca_with(&dir, Some(&url)).arg("move-store"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already keeps its state in PostgreSQL"),
        "{}",
        stderr(&out)
    );
    // Its hint says the move is done (no database was contacted: no "reachable" advice).
    assert!(
        stderr(&out).contains("hint: nothing to do: the move is done"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("reachable"), "{}", stderr(&out));

    // A second CA moves into the same database beside the first; each sees its own records.
    let (other, _) = sqlite_ca(tmp.path(), "Second Root", 3);
    let other_before = list(&other, None);
    ok(ca_with(&other, Some(&url)).arg("move-store"));
    assert_eq!(list(&other, Some(&url)), other_before);
    assert_eq!(list(&dir, Some(&url)).len(), 7);
}

/// The names of the triggers that fence `DIR/ca.db` off.
fn fence_triggers(dir: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(dir.join("ca.db")).unwrap();
    let mut names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names.sort();
    names
}

/// A `ca` command that must fail with exit 3 because the move of the CA in `dir` was cut short.
fn refused_as_cut_short(cmd: &mut std::process::Command) {
    let out = output(cmd);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("moved to PostgreSQL by ca move-store"), "{err}");
    assert!(err.contains("the move was cut short"), "{err}");
    assert!(err.contains("run `ca move-store` again"), "{err}");
}

#[test]
fn a_move_cut_short_is_finished_and_a_conflicting_copy_is_refused_with_nothing_changed() {
    let pg = Postgres::start();
    let url = pg.url("ca");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, serials) = sqlite_ca(tmp.path(), "Interrupted Root", 4);
    // A copy of the directory taken before the move, ca.db included.
    let copy = tmp.path().join("copy");
    copy_tree(&dir, &copy);
    let before = list(&dir, None);
    ok(ca_with(&dir, Some(&url)).arg("move-store"));
    assert_eq!(fence_triggers(&dir).len(), 27, "{:?}", fence_triggers(&dir));

    // Cut short after PostgreSQL committed (killed before store.json was written): ca.db is
    // fenced, store.json still says sqlite. Every command says to finish the move, reads and
    // writes alike, and nothing is written to ca.db.
    std::fs::write(dir.join("store.json"), "{\"backend\": \"sqlite\"}\n").unwrap();
    refused_as_cut_short(ca(&dir).args(["list"]));
    refused_as_cut_short(ca(&dir).args(["issue", "--profile", "client", "--name", "lost"]));
    refused_as_cut_short(ca(&dir).args(["revoke", &serials[0]]));

    // PostgreSQL's copy drifted in a column no count or status shows (a subject): the next
    // move compares every column of every row and refuses, naming the table; ca.db stays
    // fenced as it was, store.json unchanged.
    let pg_client = || pg.client("ca");
    let subject: String = pg_client()
        .query_one("SELECT subject FROM certificates WHERE serial = $1", &[&serials[3]])
        .unwrap()
        .get(0);
    pg_client()
        .execute(
            "UPDATE certificates SET subject = 'CN=drifted' WHERE serial = $1",
            &[&serials[3]],
        )
        .unwrap();
    let out = output(ca_with(&dir, Some(&url)).arg("move-store"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("certificates: 4 rows there, 4 here, not all the same"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("nothing was changed"), "{}", stderr(&out));
    assert!(store_json(&dir).contains("sqlite"));
    assert_eq!(fence_triggers(&dir).len(), 27);

    // Put back as it was: the move is finished, nothing copied twice.
    pg_client()
        .execute(
            "UPDATE certificates SET subject = $1 WHERE serial = $2",
            &[&subject, &serials[3]],
        )
        .unwrap();
    let out = output(ca_with(&dir, Some(&url)).arg("move-store"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        support::stdout(&out).contains("finished a move cut short"),
        "{}",
        support::stdout(&out)
    );
    assert!(store_json(&dir).contains("postgres"));
    assert_eq!(list(&dir, Some(&url)), before);
    let rows: i64 = pg_client()
        .query_one("SELECT count(*) FROM certificates", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 4, "nothing copied twice");

    // Cut short after the fence, before PostgreSQL committed: modelled by pointing the fenced
    // store at an empty database. The next move copies everything there.
    std::fs::write(dir.join("store.json"), "{\"backend\": \"sqlite\"}\n").unwrap();
    pg.create_db("second");
    let second = pg.url("second");
    let out = output(ca_with(&dir, Some(&second)).arg("move-store"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        support::stdout(&out).contains("copied 4 certificates"),
        "{}",
        support::stdout(&out)
    );
    assert_eq!(list(&dir, Some(&second)), before);

    // The copy goes on on SQLite (one more certificate), then tries to move into the database
    // that already holds its CA with other records: refused, and the copy is unchanged: no
    // fence is left on it, it still issues.
    ok(ca(&copy).args(["issue", "--profile", "client", "--name", "only-in-the-copy"]));
    let copy_before = list(&copy, None);
    let out = output(ca_with(&copy, Some(&url)).arg("move-store"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("with other records"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("certificates: 4 rows there, 5 here"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("nothing was changed"), "{}", stderr(&out));
    assert!(store_json(&copy).contains("sqlite"));
    assert!(fence_triggers(&copy).is_empty(), "{:?}", fence_triggers(&copy));
    assert_eq!(list(&copy, None), copy_before);
    ok(ca(&copy).args(["issue", "--profile", "client", "--name", "still-writable"]));
    assert_eq!(list(&dir, Some(&url)), before, "PostgreSQL unchanged");
}

#[test]
fn an_unreachable_postgresql_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = sqlite_ca(tmp.path(), "Stay Root", 3);
    let before = list(&dir, None);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = output(ca_with(&dir, Some(&format!("postgres://ca:secret@127.0.0.1:{port}/ca"))).arg("move-store"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("secret"), "{}", stderr(&out));
    assert!(store_json(&dir).contains("sqlite"));
    assert_eq!(list(&dir, None), before);
    ok(ca(&dir).args(["issue", "--profile", "client", "--name", "still-here"]));
}
