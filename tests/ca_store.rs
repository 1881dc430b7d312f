//! The CA's state store: one generic suite run against SQLite and against a private PostgreSQL
//! cluster; 16 `ca` processes on one SQLite store; four CA instances sharing one PostgreSQL
//! database; `kill -9` on PostgreSQL; an unreachable PostgreSQL; import of a `db.json` written
//! in the format of the releases before the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

mod pg_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::{ca, json, ok, output, stderr};

use pg_support::Postgres;
use tessera::ca::store::{self, CrlSummary, RevokeOutcome, Store, WriteAccess};
use tessera::ca::{ListFilter, Location, Record, RevocationReason, Status, SubjectAltName};
use tessera::pki::{CrlInfo, pem};
use time::OffsetDateTime;

/// The store suite exercises the write transactions directly, below the CA.
const WRITE: WriteAccess = tessera::internal::STORE_WRITE_ACCESS;

// ---------------------------------------------------------------------------------------------
// The generic suite

/// One certificate PEM for every record (the store keeps it, it does not judge it).
fn some_certificate() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["store.test".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}

fn record(serial: &str, now: OffsetDateTime, days_left: i64, pem: &str) -> Record {
    Record {
        serial: serial.parse().unwrap(),
        subject: format!("CN={serial}"),
        sans: vec![SubjectAltName::Dns(format!("{serial}.test"))],
        profile: "client".into(),
        not_before: now - time::Duration::days(1),
        not_after: now + time::Duration::days(days_left),
        issued_at: now,
        revoked: None,
        certificate: pem.into(),
    }
}

fn serials(store: &mut dyn Store, filter: &ListFilter) -> Vec<String> {
    let mut out = Vec::new();
    store
        .list(filter, &mut |r| {
            out.push(r.serial.to_string());
            Ok(())
        })
        .unwrap();
    out
}

/// What every backend must do. `open` opens a new connection to the store of `issuer` (created
/// before with `create`).
fn store_suite(open: &(dyn Fn(&str) -> Box<dyn Store> + Sync), create: &dyn Fn(&str)) {
    let issuer = "aa".repeat(32);
    create(&issuer);
    let mut store = open(&issuer);
    let now = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let pem = some_certificate();
    let all = ListFilter::all(now);

    // Empty.
    assert_eq!(store.crl_summary().unwrap(), CrlSummary { number: 0, revoked: 0 });
    assert!(serials(store.as_mut(), &all).is_empty());
    assert_eq!(store.find(&"01".parse().unwrap()).unwrap(), None);

    // issue: insert if absent.
    assert!(store.issue(&record("0a01", now, 30, &pem), WRITE).unwrap());
    assert!(store.issue(&record("0a02", now, 5, &pem), WRITE).unwrap());
    assert!(store.issue(&record("0a03", now, -2, &pem), WRITE).unwrap());
    assert!(
        !store.issue(&record("0a01", now, 99, &pem), WRITE).unwrap(),
        "a taken serial is refused"
    );
    let found = store.find(&"A:01".parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        found,
        record("0a01", now, 30, &pem),
        "stored as given, found however typed"
    );

    // list: newest first, filters, limit.
    assert_eq!(serials(store.as_mut(), &all), ["0a03", "0a02", "0a01"]);
    let with = |status: Option<Status>, within: Option<u64>, limit: Option<u64>| ListFilter {
        status,
        expiring_within: within.map(|d| Duration::from_secs(d * 86_400)),
        limit,
        now,
    };
    assert_eq!(serials(store.as_mut(), &with(None, None, Some(2))), ["0a03", "0a02"]);
    assert_eq!(
        serials(store.as_mut(), &with(Some(Status::Expired), None, None)),
        ["0a03"]
    );
    assert_eq!(
        serials(store.as_mut(), &with(Some(Status::Valid), None, None)),
        ["0a02", "0a01"]
    );
    assert_eq!(serials(store.as_mut(), &with(None, Some(7), None)), ["0a02"]);
    assert!(serials(store.as_mut(), &with(Some(Status::Revoked), None, None)).is_empty());

    // revoke_once: one winner, the CRL number advances with the revoked set.
    let at = now + time::Duration::seconds(5);
    match store
        .revoke_once(&"0a01".parse().unwrap(), at, RevocationReason::KeyCompromise, WRITE)
        .unwrap()
    {
        RevokeOutcome::Revoked(state) => {
            assert_eq!(state.number, 1);
            assert_eq!(state.revoked.len(), 1);
            assert_eq!(state.revoked[0].serial, "0a01");
            assert_eq!(state.revoked[0].at, at);
            assert_eq!(state.revoked[0].reason, RevocationReason::KeyCompromise);
        }
        other => panic!("{other:?}"),
    }
    match store
        .revoke_once(&"a01".parse().unwrap(), now, RevocationReason::Superseded, WRITE)
        .unwrap()
    {
        RevokeOutcome::AlreadyRevoked(revocation) => {
            assert_eq!(
                (revocation.at, revocation.reason),
                (at, RevocationReason::KeyCompromise)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .revoke_once(&"ff".parse().unwrap(), now, RevocationReason::Superseded, WRITE)
            .unwrap(),
        RevokeOutcome::Unknown
    );
    assert_eq!(store.crl_summary().unwrap(), CrlSummary { number: 1, revoked: 1 });
    assert_eq!(
        serials(store.as_mut(), &with(Some(Status::Revoked), None, None)),
        ["0a01"]
    );
    assert_eq!(
        serials(store.as_mut(), &with(Some(Status::Valid), None, None)),
        ["0a02"]
    );
    let state = store.advance_crl_number(WRITE).unwrap();
    assert_eq!(state.number, 2);
    assert_eq!(state.revoked.len(), 1);

    // Concurrency, each thread with its own connection: one winner per contested revocation,
    // one winner per contested serial, CRL numbers handed out once each.
    for i in 0..8 {
        assert!(
            store
                .issue(&record(&format!("0b{i:02}"), now, 30, &pem), WRITE)
                .unwrap()
        );
    }
    let threads = 8;
    let barrier = Barrier::new(threads);
    let results: Vec<(usize, bool, Vec<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let issuer = &issuer;
                let pem = &pem;
                scope.spawn(move || {
                    let mut store = open(issuer);
                    barrier.wait();
                    let mut won = 0;
                    let mut numbers = Vec::new();
                    for i in 0..8 {
                        if let RevokeOutcome::Revoked(state) = store
                            .revoke_once(
                                &format!("0b{i:02}").parse().unwrap(),
                                now,
                                RevocationReason::Superseded,
                                WRITE,
                            )
                            .unwrap()
                        {
                            won += 1;
                            numbers.push(state.number);
                        }
                        numbers.push(store.advance_crl_number(WRITE).unwrap().number);
                    }
                    let inserted = store.issue(&record("0c00", now, 30, pem), WRITE).unwrap();
                    let _ = t;
                    (won, inserted, numbers)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().map(|r| r.0).sum::<usize>(),
        8,
        "one winner per revocation"
    );
    assert_eq!(results.iter().filter(|r| r.1).count(), 1, "one winner per serial");
    let mut numbers: Vec<u64> = Vec::new();
    for (_, _, mine) in &results {
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "increasing: {mine:?}");
        numbers.extend(mine);
    }
    let unique: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(unique.len(), numbers.len(), "every CRL number handed out once");
    assert_eq!(unique.first(), Some(&3));
    assert_eq!(unique.last(), Some(&(2 + numbers.len() as u64)), "no gaps");
    let summary = store.crl_summary().unwrap();
    assert_eq!(summary.revoked, 9);
    assert_eq!(store.advance_crl_number(WRITE).unwrap().revoked.len(), 9);
}

#[test]
fn the_store_suite_passes_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    store_suite(&|issuer| store::open(&dir, issuer, None).unwrap(), &|issuer| {
        store::create(&dir, issuer, &Location::Sqlite).unwrap();
    });
    // Another CA's store is refused, never shared.
    let err = store::open(&dir, &"bb".repeat(32), None).err().unwrap();
    assert!(err.to_string().contains("belongs to another CA"), "{err}");
}

#[test]
fn the_store_suite_passes_on_postgresql() {
    let pg = Postgres::start();
    let url = pg.url("ca");
    let location = Location::Postgres(url.clone());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    store_suite(
        &|issuer| store::open(&dir, issuer, Some(&location)).unwrap(),
        &|issuer| {
            store::create(&dir, issuer, &location).unwrap();
        },
    );
    // Several CAs share one database, each seeing only its own records and CRL numbers.
    let other = tempfile::tempdir().unwrap();
    let issuer = "cc".repeat(32);
    store::create(other.path(), &issuer, &location).unwrap();
    let mut store = store::open(other.path(), &issuer, Some(&location)).unwrap();
    assert_eq!(store.crl_summary().unwrap(), CrlSummary { number: 0, revoked: 0 });
    assert!(serials(store.as_mut(), &ListFilter::all(OffsetDateTime::now_utc())).is_empty());
    // A CA the database does not hold is refused.
    let err = store::open(other.path(), &"dd".repeat(32), Some(&location))
        .err()
        .unwrap();
    assert!(err.to_string().contains("it holds no CA whose certificate"), "{err}");
    // Migrations were applied once.
    let versions: Vec<i64> = pg
        .client("ca")
        .query("SELECT version FROM schema_migrations", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

// ---------------------------------------------------------------------------------------------
// Through the `ca` command

/// A `ca` command on the CA in `dir`, with `--db` when given.
fn ca_with(dir: &Path, db: Option<&str>) -> Command {
    let mut cmd = ca(dir);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd
}

fn issue(dir: &Path, db: Option<&str>, name: &str) -> String {
    let out = ok(ca_with(dir, db).args(["issue", "--profile", "client", "--json", "--name", name]));
    json(&out)["certificate"]["serial"].as_str().unwrap().to_string()
}

fn list(dir: &Path, db: Option<&str>) -> Vec<serde_json::Value> {
    serde_json::from_str(&ok(ca_with(dir, db).args(["list", "--json", "-q"]))).unwrap()
}

fn crl_of(dir: &Path) -> CrlInfo {
    let bytes = std::fs::read(dir.join("crl.pem")).unwrap();
    CrlInfo::from_der(&pem::parse_crls(&bytes, "crl.pem").unwrap()[0]).unwrap()
}

fn crl_serials(dir: &Path) -> BTreeSet<String> {
    crl_of(dir).revoked.into_iter().map(|r| r.serial.to_string()).collect()
}

fn crl_number(dir: &Path) -> u64 {
    crl_of(dir).crl_number.unwrap().parse().unwrap()
}

/// What one instance did in a concurrency test.
#[derive(Debug, Default)]
struct Work {
    issued: Vec<String>,
    revoked: Vec<String>,
    /// Contested serials this instance revoked first.
    won: Vec<String>,
    /// The CRL numbers it saw, in order.
    numbers: Vec<u64>,
}

/// Issues `per` certificates, revokes the first, tries to revoke every contested serial, and
/// writes the CRL: the same work for the SQLite and the PostgreSQL tests.
fn work(dir: &Path, db: Option<&str>, tag: &str, per: usize, contested: &[String]) -> Work {
    let mut done = Work::default();
    for i in 0..per {
        done.issued.push(issue(dir, db, &format!("{tag}-{i}")));
    }
    let own = done.issued[0].clone();
    let out = json(&ok(ca_with(dir, db).args(["revoke", &own, "--json"])));
    done.numbers.push(out["crl"]["crl_number"].as_u64().unwrap());
    done.revoked.push(own);
    for serial in contested {
        let out = json(&ok(ca_with(dir, db).args([
            "revoke",
            serial,
            "--json",
            "--reason",
            "superseded",
        ])));
        if out["already_revoked"] == false {
            done.won.push(serial.clone());
        }
        done.numbers.push(out["crl"]["crl_number"].as_u64().unwrap());
    }
    let out = json(&ok(ca_with(dir, db).args(["crl", "--json"])));
    done.numbers.push(out["crl_number"].as_u64().unwrap());
    done.issued.push(issue(dir, db, &format!("{tag}-last")));
    done
}

/// Every certificate recorded once, one winner per contested revocation, CRL numbers that
/// never go back within an instance; returns every revoked serial.
fn check_work(results: &[Work], contested: &[String], records: &[serde_json::Value]) -> BTreeSet<String> {
    let recorded: Vec<String> = records.iter().map(|r| r["serial"].as_str().unwrap().into()).collect();
    let unique: BTreeSet<&String> = recorded.iter().collect();
    assert_eq!(unique.len(), recorded.len(), "duplicate serials");
    let issued: Vec<&String> = results.iter().flat_map(|w| &w.issued).chain(contested).collect();
    assert_eq!(recorded.len(), issued.len(), "lost or extra records");
    for serial in &issued {
        assert!(unique.contains(serial), "{serial} not recorded");
    }
    for serial in contested {
        let winners = results.iter().filter(|w| w.won.contains(serial)).count();
        assert_eq!(winners, 1, "{serial}: {winners} winners");
    }
    for w in results {
        assert!(
            w.numbers.windows(2).all(|p| p[0] <= p[1]),
            "CRL numbers went back: {:?}",
            w.numbers
        );
    }
    let revoked: BTreeSet<String> = results
        .iter()
        .flat_map(|w| w.revoked.iter().cloned())
        .chain(contested.iter().cloned())
        .collect();
    let in_store: BTreeSet<String> = records
        .iter()
        .filter(|r| r["status"] == "revoked")
        .map(|r| r["serial"].as_str().unwrap().into())
        .collect();
    assert_eq!(in_store, revoked);
    revoked
}

#[test]
fn sixteen_processes_issue_revoke_and_write_crls_at_once_on_one_sqlite_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--name", "Busy Root", "--no-passphrase"]));
    let contested: Vec<String> = (0..2).map(|i| issue(&dir, None, &format!("contested-{i}"))).collect();
    let barrier = Arc::new(Barrier::new(16));
    let results: Vec<Work> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let (dir, barrier, contested) = (&dir, barrier.clone(), &contested);
                scope.spawn(move || {
                    barrier.wait();
                    work(dir, None, &format!("p{t}"), 2, contested)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let records = list(&dir, None);
    let revoked = check_work(&results, &contested, &records);
    // The CRL left by the last command lists exactly the revoked serials, without another
    // command to repair it.
    assert_eq!(crl_serials(&dir), revoked);
    let conn = rusqlite::Connection::open(dir.join("ca.db")).unwrap();
    let number: i64 = conn
        .query_row("SELECT crl_number FROM issuers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(crl_number(&dir), number as u64, "crl.pem is the last CRL handed out");
    assert!(!dir.join("db.lock").exists(), "no lock file of our own");
}

#[test]
fn four_instances_share_one_postgresql_database() {
    let pg = Postgres::start();
    let url = pg.url("ca");
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("ca0");
    ok(ca_with(&first, Some(&url)).args(["init", "--name", "Shared Root", "--no-passphrase"]));
    assert!(!first.join("ca.db").exists(), "no SQLite store beside PostgreSQL");
    // Each instance holds a copy of the CA directory (certificate, key, chain, store.json).
    let dirs: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("ca{i}"))).collect();
    for dir in &dirs[1..] {
        std::fs::create_dir(dir).unwrap();
        for file in ["ca.pem", "ca.key", "chain.pem", "store.json"] {
            std::fs::copy(first.join(file), dir.join(file)).unwrap();
        }
    }
    // Without --db, an instance says where its state is.
    let out = output(ca(&dirs[1]).arg("list"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keeps its state in PostgreSQL; give its URL with --db"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("hint: give every ca command on this CA --db postgres://"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("reachable"), "{}", stderr(&out));
    // An SQLite CA given a PostgreSQL --db is told to leave it out (nothing was contacted).
    let sqlite_dir = tmp.path().join("sqlite-ca");
    ok(ca(&sqlite_dir).args(["init", "--name", "SQLite Root", "--no-passphrase"]));
    let out = output(ca_with(&sqlite_dir, Some(&url)).arg("list"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("(SQLite), not in PostgreSQL"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint: leave out --db"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("reachable"), "{}", stderr(&out));

    let contested: Vec<String> = (0..3)
        .map(|i| issue(&first, Some(&url), &format!("contested-{i}")))
        .collect();
    let barrier = Arc::new(Barrier::new(4));
    let results: Vec<Work> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(t, dir)| {
                let (url, barrier, contested) = (&url, barrier.clone(), &contested);
                scope.spawn(move || {
                    barrier.wait();
                    work(dir, Some(url), &format!("i{t}"), 3, contested)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let records = list(&dirs[2], Some(&url));
    let revoked = check_work(&results, &contested, &records);
    // Strictly increasing across instances: no CRL number was handed out twice.
    let mut newly: Vec<u64> = Vec::new();
    for w in &results {
        newly.push(w.numbers[0]);
        newly.push(*w.numbers.last().unwrap());
    }
    let unique: BTreeSet<u64> = newly.iter().copied().collect();
    assert_eq!(
        unique.len(),
        newly.len(),
        "a CRL number was handed out twice: {newly:?}"
    );
    // Each instance's CRL lists the revocations made by the others once it runs a command
    // (here `ca crl`), and every instance's CRL numbers are distinct.
    let mut numbers = BTreeMap::new();
    for dir in &dirs {
        ok(ca_with(dir, Some(&url)).arg("crl"));
        assert_eq!(crl_serials(dir), revoked, "{}", dir.display());
        numbers.insert(crl_number(dir), dir.clone());
    }
    assert_eq!(numbers.len(), 4, "{numbers:?}");
    // `ca list` reads the shared state from any instance.
    assert_eq!(list(&dirs[3], Some(&url)).len(), records.len());
    // ca backup is for SQLite; PostgreSQL has pg_dump.
    let out = output(
        ca_with(&first, Some(&url))
            .args(["backup", "--out"])
            .arg(tmp.path().join("b.db")),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_postgresql_is_exit_3_with_a_hint_and_nothing_is_written() {
    let pg = Postgres::start();
    let url = pg.url("ca");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca_with(&dir, Some(&url)).args(["init", "--no-passphrase"]));
    let serial = issue(&dir, Some(&url), "alice");
    ok(ca_with(&dir, Some(&url)).args(["revoke", &serial]));
    let crl = std::fs::read(dir.join("crl.pem")).unwrap();
    // Nothing listens on this port any more.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead_url = format!("postgres://postgres@127.0.0.1:{dead}/ca");
    for args in [
        &["list"][..],
        &["crl"],
        &["revoke", &serial],
        &["issue", "--profile", "client", "--name", "bob"],
    ] {
        let out = output(ca_with(&dir, Some(&dead_url)).args(args));
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "ca: error: cannot use the CA's store {dead_url}: cannot connect"
            )) && err.contains("ca: hint: check that the database is running and reachable"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
        assert_eq!(std::fs::read(dir.join("crl.pem")).unwrap(), crl, "{args:?}");
        assert!(!dir.join("issued/bob.pem").exists() && !dir.join("issued/bob.key").exists());
    }
    // init against an unreachable server leaves no CA behind.
    let fresh = tmp.path().join("fresh");
    let out = output(ca_with(&fresh, Some(&dead_url)).args(["init", "--no-passphrase"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&fresh)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A bad URL is a usage error; the password never reaches the message.
    let out = output(ca_with(&dir, Some("mysql://u:hunter2@h/x")).arg("list"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    // A password given as a parameter never reaches a message either.
    for given in [
        "host=127.0.0.1 password=hunter2 dbname=ca".to_string(),
        format!("postgres://postgres@127.0.0.1:{dead}/ca?password=hunter2"),
    ] {
        let out = output(ca_with(&dir, Some(&given)).arg("list"));
        assert!(matches!(out.status.code(), Some(2 | 3)), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains("hunter2") && stderr(&out).contains("password=***"),
            "{}",
            stderr(&out)
        );
    }
    // Once reachable again, all is as it was; also through the Unix socket, without TCP. No
    // PostgreSQL NOTICE reaches stderr.
    let out = output(ca_with(&dir, Some(&url)).arg("list"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("NOTICE"), "{}", stderr(&out));
    assert_eq!(list(&dir, Some(&url)).len(), 1);
    assert_eq!(list(&dir, Some(&pg.socket_url("ca"))).len(), 1);
    // A database without the schema, and a store of a newer Tessera: exit 3, each with its hint.
    pg.create_db("empty");
    let out = output(ca_with(&dir, Some(&pg.url("empty"))).arg("list"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no schema") && stderr(&out).contains("ca: hint: check that --db (or TESSERA_DB) names"),
        "{}",
        stderr(&out)
    );
    pg.client("ca")
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
            &[],
        )
        .unwrap();
    let out = output(ca_with(&dir, Some(&url)).arg("list"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("newer than this Tessera knows")
            && stderr(&out).contains("ca: hint: run a Tessera at least as new"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kill_9_during_issue_and_revoke_on_postgresql_loses_nothing() {
    let pg = Postgres::start();
    let url = pg.url("ca");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca_with(&dir, Some(&url)).args(["init", "--no-passphrase"]));
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut seed = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 | 1;
    eprintln!("kill delays seed: {seed}");
    let mut delay = |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_micros(seed % (max + 1))
    };
    let kill_after = |cmd: &mut Command, delay: Duration| {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
    };
    for i in 0..15 {
        let prefix = out_dir.join(format!("k{i}"));
        kill_after(
            ca_with(&dir, Some(&url))
                .args(["issue", "--profile", "client", "--name", &format!("k{i}"), "--out"])
                .arg(&prefix),
            delay(60_000),
        );
    }
    let recorded: BTreeSet<String> = list(&dir, Some(&url))
        .iter()
        .map(|r| r["serial"].as_str().unwrap().into())
        .collect();
    // Every certificate handed out (its file written) is recorded.
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with("chain.pem") || !path.to_string_lossy().ends_with(".pem") {
            continue;
        }
        let der = pem::load_certificates(&path).unwrap();
        let info = tessera::pki::CertificateInfo::from_der(&der[0]).unwrap();
        assert!(
            recorded.contains(&info.serial.to_string()),
            "{} not recorded",
            path.display()
        );
    }
    let serials: Vec<String> = (0..12).map(|i| issue(&dir, Some(&url), &format!("r{i}"))).collect();
    for serial in &serials {
        kill_after(ca_with(&dir, Some(&url)).args(["revoke", serial]), delay(60_000));
        // Whatever the moment, the store opens and the next command leaves the CRL complete.
        ok(ca_with(&dir, Some(&url)).args(["revoke", serial]));
        let in_store: BTreeSet<String> = list(&dir, Some(&url))
            .iter()
            .filter(|r| r["status"] == "revoked")
            .map(|r| r["serial"].as_str().unwrap().into())
            .collect();
        assert_eq!(crl_serials(&dir), in_store);
    }
    assert_eq!(crl_serials(&dir).len(), 12);
}

// ---------------------------------------------------------------------------------------------
// Import of a db.json

/// Takes the SQLite store out of the CA in `dir`: its records (oldest first, as db.json held
/// them) and the CA's fingerprint, for a db.json of the release before the store.
fn remove_store(dir: &Path) -> (Vec<Record>, String) {
    let mut records = Vec::new();
    store::open_dir(dir, None)
        .unwrap()
        .list(&ListFilter::all(OffsetDateTime::now_utc()), &mut |r| {
            records.push(r);
            Ok(())
        })
        .unwrap();
    records.reverse();
    let (cert, _) = tessera::ca::read_ca_certificates(dir).unwrap();
    let fingerprint = tessera::pki::CertificateInfo::from_der(&cert)
        .unwrap()
        .sha256_fingerprint;
    for name in ["ca.db", "ca.db-wal", "ca.db-shm", "store.json"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    (records, fingerprint)
}

#[test]
fn a_db_json_from_the_release_before_the_store_is_imported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--name", "Old Root", "--no-passphrase"]));
    let serials: Vec<String> = ["a", "b", "c", "d"].iter().map(|n| issue(&dir, None, n)).collect();
    ok(ca(&dir).args(["revoke", &serials[1], "--reason", "key-compromise"]));
    ok(ca(&dir).args(["revoke", &serials[3]]));
    let before = ok(ca(&dir).args(["list", "--json"]));
    let number = crl_number(&dir);
    // The same state as the previous release wrote it: db.json (records oldest first, the CRL
    // number, the CA's fingerprint), no store.
    let (records, fingerprint) = remove_store(&dir);
    tessera::internal::write_legacy_database(&dir, &fingerprint, number, records).unwrap();
    std::fs::write(dir.join("db.lock"), b"").unwrap();
    let legacy = std::fs::read(dir.join("db.json")).unwrap();
    assert!(String::from_utf8_lossy(&legacy).contains("\"crl_number\""));
    // A copy with a damaged db.json is refused, and nothing is made of it.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for name in ["ca.pem", "ca.key", "chain.pem", "crl.pem"] {
        std::fs::copy(dir.join(name), damaged.join(name)).unwrap();
    }
    std::fs::write(damaged.join("db.json"), &legacy[..legacy.len() / 2]).unwrap();
    let out = output(ca(&damaged).arg("list"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("db.json is damaged: the file is truncated"),
        "{}",
        stderr(&out)
    );
    assert!(!damaged.join("ca.db").exists() && !damaged.join("store.json").exists());

    // Four commands at once on the old directory: one imports, all see the same records.
    let outputs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| ok(ca(&dir).args(["list", "--json"]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outputs {
        assert_eq!(out, &before);
    }
    assert!(!dir.join("db.json").exists());
    assert_eq!(
        std::fs::read(dir.join("db.json.imported")).unwrap(),
        legacy,
        "kept, renamed"
    );
    assert!(!dir.join("db.lock").exists());
    assert_eq!(
        json(&std::fs::read_to_string(dir.join("store.json")).unwrap())["backend"],
        "sqlite"
    );
    // The imported CA goes on: the revocations stand, CRL numbers continue.
    assert_eq!(ok(ca(&dir).args(["list", "--json"])), before);
    ok(ca(&dir).args(["revoke", &serials[0]]));
    assert_eq!(crl_number(&dir), number + 1);
    assert_eq!(
        crl_serials(&dir),
        BTreeSet::from([serials[0].clone(), serials[1].clone(), serials[3].clone()])
    );
    let out = output(ca(&dir).args(["revoke", &serials[1], "--reason", "superseded"]));
    assert_eq!(out.status.code(), Some(1), "still revoked for key-compromise");
}

#[test]
fn a_db_json_is_imported_into_postgresql_once_by_several_instances() {
    let pg = Postgres::start();
    pg.create_db("legacy");
    let url = pg.url("legacy");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--name", "Old Root", "--no-passphrase"]));
    let serials: Vec<String> = ["a", "b", "c"].iter().map(|n| issue(&dir, None, n)).collect();
    ok(ca(&dir).args(["revoke", &serials[1], "--reason", "key-compromise"]));
    let before = ok(ca(&dir).args(["list", "--json"]));
    let number = crl_number(&dir);
    let (records, fingerprint) = remove_store(&dir);
    // A copy whose db.json lacks a record, for later.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    tessera::internal::write_legacy_database(&other, &fingerprint, number, records[..2].to_vec()).unwrap();
    tessera::internal::write_legacy_database(&dir, &fingerprint, number, records).unwrap();
    // Two instances, each with its copy of the old directory, start at once on one database.
    let copies: Vec<PathBuf> = ["one", "two"].iter().map(|n| tmp.path().join(n)).collect();
    for copy in copies.iter().chain(std::iter::once(&other)) {
        std::fs::create_dir_all(copy).unwrap();
        for name in ["ca.pem", "ca.key", "chain.pem", "crl.pem"] {
            std::fs::copy(dir.join(name), copy.join(name)).unwrap();
        }
    }
    for copy in &copies {
        std::fs::copy(dir.join("db.json"), copy.join("db.json")).unwrap();
    }
    let outputs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = copies
            .iter()
            .map(|copy| scope.spawn(|| ok(ca_with(copy, Some(&url)).args(["list", "--json"]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outputs {
        assert_eq!(out, &before);
    }
    for copy in &copies {
        assert!(!copy.join("db.json").exists() && copy.join("db.json.imported").exists());
        assert!(!copy.join("ca.db").exists(), "nothing imported into SQLite");
        assert_eq!(
            json(&std::fs::read_to_string(copy.join("store.json")).unwrap())["backend"],
            "postgres"
        );
    }
    let mut client = pg.client("legacy");
    let rows: i64 = client
        .query_one("SELECT COUNT(*) FROM certificates", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 3, "imported once");
    let held: i64 = client.query_one("SELECT crl_number FROM issuers", &[]).unwrap().get(0);
    assert_eq!(u64::try_from(held).unwrap(), number);
    // A copy whose db.json says something else is refused, and keeps its db.json.
    let out = output(ca_with(&other, Some(&url)).args(["list"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("with other records than its db.json"),
        "{}",
        stderr(&out)
    );
    assert!(other.join("db.json").exists() && !other.join("store.json").exists());
    // The instances go on together: a revocation by one is in the other's next CRL.
    ok(ca_with(&copies[0], Some(&url)).args(["revoke", &serials[0]]));
    ok(ca_with(&copies[1], Some(&url)).args(["crl"]));
    assert_eq!(
        crl_serials(&copies[1]),
        BTreeSet::from([serials[0].clone(), serials[1].clone()])
    );
}

#[test]
fn ca_backup_is_a_consistent_copy_taken_while_others_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--no-passphrase"]));
    issue(&dir, None, "first");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let copies: Vec<PathBuf> = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                issue(&dir, None, &format!("w{n}"));
                n += 1;
            }
        });
        let copies: Vec<PathBuf> = (0..4)
            .map(|i| {
                let out = tmp.path().join(format!("copy{i}.db"));
                ok(ca(&dir).args(["backup", "--out"]).arg(&out));
                out
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        copies
    });
    let total = list(&dir, None).len();
    let mut previous = 0;
    for copy in &copies {
        // Each copy is a whole store of this CA: put in place of ca.db, it lists its records.
        let restored = tmp.path().join("restored");
        let _ = std::fs::remove_dir_all(&restored);
        std::fs::create_dir(&restored).unwrap();
        for name in ["ca.pem", "ca.key", "chain.pem", "store.json"] {
            std::fs::copy(dir.join(name), restored.join(name)).unwrap();
        }
        std::fs::copy(copy, restored.join("ca.db")).unwrap();
        let count = list(&restored, None).len();
        assert!(count >= previous && count <= total, "{count} of {total}");
        previous = count;
        let check: String = rusqlite::Connection::open(copy)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    // An existing file is never replaced.
    let out = output(ca(&dir).args(["backup", "--out"]).arg(&copies[0]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

/// The hidden temporary files of writes of `out` beside it (`.NAME.tmp-…`, SQLite's
/// `-journal`, `-wal` and `-shm` of one included).
fn temporaries_of(out: &Path) -> Vec<String> {
    let prefix = format!(".{}.tmp-", out.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// `ca backup` writes a file only its owner can read, from its creation: 0600 under umask 022
/// (and 000), where a file SQLite creates would be 0644 (0666). A failed backup leaves neither
/// the file nor a temporary file nor SQLite's companions of one: OUT exists, OUT's directory
/// is unwritable, or the copy outgrows the file size limit (`ulimit -f`, SIGXFSZ ignored:
/// exit 3 and a message naming the limit). What a killed backup left (its process gone) is
/// removed by the next backup to the same OUT.
#[test]
fn ca_backup_is_private_from_the_start_and_leaves_nothing_behind() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--no-passphrase"]));
    issue(&dir, None, "first");
    let backups = tmp.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    for umask in ["022", "000"] {
        let out = backups.join(format!("umask{umask}.db"));
        let run = output(
            support::command_under_shell(&format!("umask {umask}"), "ca")
                .arg("--dir")
                .arg(&dir)
                .args(["backup", "--out"])
                .arg(&out),
        );
        assert!(run.status.success(), "{}", stderr(&run));
        assert_eq!(mode(&out), 0o600, "umask {umask}");
        assert!(temporaries_of(&out).is_empty(), "{:?}", temporaries_of(&out));
    }

    // OUT exists: refused before anything is written, OUT untouched.
    let out = backups.join("umask022.db");
    let before = std::fs::read(&out).unwrap();
    let run = output(ca(&dir).args(["backup", "--out"]).arg(&out));
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("already exists"), "{}", stderr(&run));
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert!(temporaries_of(&out).is_empty(), "{:?}", temporaries_of(&out));

    // OUT's directory cannot be written (as root, whom a mode does not stop: a directory of
    // /sys, where nobody creates files).
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let writable = std::fs::write(locked.join("probe"), b"").is_ok();
    let out = if writable {
        PathBuf::from("/sys/tessera-backup.db")
    } else {
        locked.join("copy.db")
    };
    let run = output(ca(&dir).args(["backup", "--out"]).arg(&out));
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("ca: error:"), "{}", stderr(&run));
    assert!(!out.exists());
    if !writable {
        assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();

    // The copy outgrows the file size limit (128 blocks of 512 bytes, as POSIX shells count:
    // room for the store's 32 KiB -shm file, half the store's size) with SIGXFSZ ignored, so
    // the write fails with EFBIG: exit 3, the limit named, nothing left.
    let store_size = std::fs::metadata(dir.join("ca.db")).unwrap().len();
    assert!(store_size > 128 * 1024, "{store_size}");
    let out = backups.join("limited.db");
    let run = output(
        support::command_under_shell("trap '' XFSZ; ulimit -f 128", "ca")
            .arg("--dir")
            .arg(&dir)
            .args(["backup", "--out"])
            .arg(&out),
    );
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("at most 65536 bytes"), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("ca: hint:") && stderr(&run).contains("`ulimit -f`"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
    assert!(temporaries_of(&out).is_empty(), "{:?}", temporaries_of(&out));

    // What a killed backup left beside OUT (its process gone): removed by the next one.
    let out = backups.join("swept.db");
    let left: Vec<PathBuf> = ["", "-journal", "-wal", "-shm"]
        .iter()
        .map(|suffix| backups.join(format!(".swept.db.tmp-4194305-0123456789abcdef{suffix}")))
        .collect();
    for path in &left {
        std::fs::write(path, b"half a copy").unwrap();
    }
    ok(ca(&dir).args(["backup", "--out"]).arg(&out));
    assert!(temporaries_of(&out).is_empty(), "{:?}", temporaries_of(&out));
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn ca_list_filters_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--no-passphrase"]));
    let short = {
        let out = ok(ca(&dir).args([
            "issue",
            "--profile",
            "client",
            "--json",
            "--hours",
            "5",
            "--name",
            "short",
        ]));
        json(&out)["certificate"]["serial"].as_str().unwrap().to_string()
    };
    let long = issue(&dir, None, "long");
    let gone = issue(&dir, None, "gone");
    ok(ca(&dir).args(["revoke", &gone]));
    let serials = |args: &[&str]| -> Vec<String> {
        let out = ok(ca(&dir).args(["list", "--json"]).args(args));
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        v.iter().map(|r| r["serial"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(
        serials(&[]),
        [gone.clone(), long.clone(), short.clone()],
        "newest first"
    );
    assert_eq!(serials(&["--limit", "1"]), std::slice::from_ref(&gone));
    assert_eq!(serials(&["--status", "revoked"]), std::slice::from_ref(&gone));
    assert_eq!(serials(&["--status", "valid"]), [long.clone(), short.clone()]);
    assert!(serials(&["--status", "expired"]).is_empty());
    assert_eq!(serials(&["--expiring-within", "6h"]), std::slice::from_ref(&short));
    assert_eq!(serials(&["--expiring-within", "400d", "--limit", "1"]), [long]);
    let text = ok(ca(&dir).args(["list", "--status", "expired"]));
    assert_eq!(text, "no certificates match\n");
    for bad in [
        &["--limit", "0"][..],
        &["--status", "lost"],
        &["--expiring-within", "soon"],
        &["--expiring-within", "99999d"],
    ] {
        let out = output(ca(&dir).arg("list").args(bad));
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}
