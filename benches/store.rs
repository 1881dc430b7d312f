//! The CA's state store: what issuance, listing and CRL generation cost with an empty store and
//! with a large one, on SQLite and on PostgreSQL (a private cluster started here). Every figure
//! is also given as a ratio against a baseline measured in the same run, as the machines are
//! shared and noisy. `cargo bench --bench store` (or `make bench`); never part of `cargo test`.
//!
//! Sizes: `TESSERA_BENCH_STORE_RECORDS` (default 100000), `TESSERA_BENCH_STORE_REVOKED`
//! (default 10000), `TESSERA_BENCH_STORE_ISSUES` (issues timed per case, default 20).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CA: &str = env!("CARGO_BIN_EXE_ca");

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ca(dir: &Path, db: Option<&str>) -> Command {
    let mut cmd = Command::new(CA);
    cmd.arg("--dir").arg(dir).arg("-q");
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd.env_remove("TESSERA_DB").env_remove("RUST_LOG");
    cmd
}

fn ok(cmd: &mut Command) {
    let out = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    ok(cmd);
    start.elapsed()
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Median time of one `ca issue` (unencrypted CA key, a new P-256 key included).
fn issue_time(dir: &Path, db: Option<&str>, tag: &str, n: usize) -> Duration {
    median(
        (0..n)
            .map(|i| {
                timed(
                    ca(dir, db)
                        .args(["issue", "--profile", "client", "--name", &format!("{tag}{i}"), "--out"])
                        .arg(dir.join(format!("bench-{tag}-{i}"))),
                )
            })
            .collect(),
    )
}

/// Issuances per second with `procs` processes issuing `n` each at once.
fn throughput(dir: &Path, db: Option<&str>, tag: &str, procs: usize, n: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for p in 0..procs {
            scope.spawn(move || {
                for i in 0..n {
                    ok(ca(dir, db)
                        .args([
                            "issue",
                            "--profile",
                            "client",
                            "--name",
                            &format!("{tag}{p}x{i}"),
                            "--out",
                        ])
                        .arg(dir.join(format!("tp-{tag}-{p}-{i}"))));
                }
            });
        }
    });
    (procs * n) as f64 / start.elapsed().as_secs_f64()
}

/// The rows the fill inserts: serial, whether revoked.
fn rows(records: usize, revoked: usize) -> impl Iterator<Item = (String, bool)> {
    let every = records.checked_div(revoked).unwrap_or(usize::MAX).max(1);
    (0..records).map(move |i| {
        (
            format!("7e{i:030x}"),
            revoked > 0 && i % every == 0 && i / every < revoked,
        )
    })
}

fn fill_sqlite(dir: &Path, records: usize, revoked: usize, der: &[u8]) {
    let mut conn = rusqlite::Connection::open(dir.join("ca.db")).unwrap();
    let issuer: String = conn.query_row("SELECT issuer FROM issuers", [], |r| r.get(0)).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO certificates (issuer, serial, subject, sans, profile, not_before, not_after, issued_at, \
                 status, revoked_at, revocation_reason, der) VALUES (?1, ?2, ?3, '[]', 'client', ?4, ?5, ?4, ?6, ?7, ?8, ?9)",
            )
            .unwrap();
        for (serial, is_revoked) in rows(records, revoked) {
            insert
                .execute(rusqlite::params![
                    issuer,
                    serial,
                    format!("CN={serial}"),
                    now - 86_400,
                    now + 90 * 86_400,
                    if is_revoked { "revoked" } else { "good" },
                    is_revoked.then_some(now),
                    is_revoked.then_some("superseded"),
                    der,
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn fill_postgres(client: &mut postgres::Client, dir: &Path, records: usize, revoked: usize, der: &[u8]) {
    // The database holds both CAs: fill the one whose certificate is in `dir`.
    let pem = std::fs::read(dir.join("ca.pem")).unwrap();
    let cert = &tessera::pki::pem::parse_certificates(&pem, "ca.pem").unwrap()[0];
    let issuer = tessera::pki::CertificateInfo::from_der(cert)
        .unwrap()
        .sha256_fingerprint;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let all: Vec<(String, bool)> = rows(records, revoked).collect();
    let mut tx = client.transaction().unwrap();
    for chunk in all.chunks(5_000) {
        let serials: Vec<&str> = chunk.iter().map(|(s, _)| s.as_str()).collect();
        let subjects: Vec<String> = chunk.iter().map(|(s, _)| format!("CN={s}")).collect();
        let statuses: Vec<&str> = chunk.iter().map(|(_, r)| if *r { "revoked" } else { "good" }).collect();
        let revoked_at: Vec<Option<i64>> = chunk.iter().map(|(_, r)| r.then_some(now)).collect();
        let reasons: Vec<Option<&str>> = chunk.iter().map(|(_, r)| r.then_some("superseded")).collect();
        tx.execute(
            "INSERT INTO certificates (issuer, serial, subject, sans, profile, not_before, not_after, issued_at, \
             status, revoked_at, revocation_reason, der) \
             SELECT $1, s, subj, '[]', 'client', $2, $3, $2, st, ra, rr, $4 \
             FROM UNNEST($5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[]) AS t(s, subj, st, ra, rr)",
            &[
                &issuer,
                &(now - 86_400),
                &(now + 90 * 86_400),
                &der,
                &serials,
                &subjects,
                &statuses,
                &revoked_at,
                &reasons,
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    client.batch_execute("VACUUM ANALYZE certificates").unwrap();
}

/// The figures for one backend.
struct Figures {
    empty: Duration,
    full: Duration,
    one: f64,
    four: f64,
    list_revoked: Duration,
    crl: Duration,
}

fn measure(
    root: &Path,
    db: Option<&str>,
    fill: &mut dyn FnMut(&Path, &[u8]),
    records: usize,
    revoked: usize,
    issues: usize,
) -> Figures {
    // Two CAs side by side: one stays empty, one gets the records.
    let empty_dir = root.join("empty");
    let dir = root.join("full");
    for d in [&empty_dir, &dir] {
        ok(ca(d, db).args(["init", "--no-passphrase", "--name", "Bench CA"]));
    }
    let der = std::fs::read(dir.join("ca.pem")).unwrap();
    let der = tessera::pki::pem::parse_certificates(&der, "ca.pem").unwrap()[0].to_vec();
    let start = Instant::now();
    fill(&dir, &der);
    eprintln!(
        "  filled {records} records ({revoked} revoked) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // The first CRL brings crl.pem up to date with the filled store; then let the kernel write
    // the fill back before anything is timed.
    ok(ca(&dir, db).arg("crl"));
    ok(Command::new("sync").arg("-f").arg(&dir));
    issue_time(&empty_dir, db, "warm", 3);
    issue_time(&dir, db, "warm", 3);
    // Interleaved, so that the disk's slow and fast minutes fall on both alike.
    let (mut empty, mut full) = (Vec::new(), Vec::new());
    for i in 0..issues {
        let tag = format!("i{i}-");
        empty.push(issue_time(&empty_dir, db, &tag, 1));
        full.push(issue_time(&dir, db, &tag, 1));
    }
    let crl = median((0..5).map(|_| timed(ca(&dir, db).arg("crl"))).collect());
    let list_revoked = median(
        (0..5)
            .map(|_| timed(ca(&dir, db).args(["list", "--status", "revoked", "--json"])))
            .collect(),
    );
    let one = throughput(&dir, db, "one", 1, issues);
    let four = throughput(&dir, db, "four", 4, issues);
    Figures {
        empty: median(empty),
        full: median(full),
        one,
        four,
        list_revoked,
        crl,
    }
}

fn report(name: &str, f: &Figures, records: usize, revoked: usize) {
    println!("{name}:");
    println!("  issue, empty store:            {} (median)", ms(f.empty));
    println!(
        "  issue, {records} records:     {} ({:.2}x the empty store)",
        ms(f.full),
        f.full.as_secs_f64() / f.empty.as_secs_f64()
    );
    println!(
        "  issuances/s, 1 process:        {:.1}\n  issuances/s, 4 processes:       {:.1} ({:.2}x one process)",
        f.one,
        f.four,
        f.four / f.one
    );
    println!(
        "  ca list --status revoked --json ({revoked} of {records}): {} ({:.1}x one issue)",
        ms(f.list_revoked),
        f.list_revoked.as_secs_f64() / f.empty.as_secs_f64()
    );
    println!(
        "  ca crl ({revoked} revoked):      {} ({:.1}x one issue)",
        ms(f.crl),
        f.crl.as_secs_f64() / f.empty.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let records = env_number("TESSERA_BENCH_STORE_RECORDS", 100_000);
    let revoked = env_number("TESSERA_BENCH_STORE_REVOKED", 10_000);
    let issues = env_number("TESSERA_BENCH_STORE_ISSUES", 20);
    println!("store benchmark: {records} records, {revoked} revoked, {issues} timed issues per case");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sqlite");
    let sqlite = measure(
        &root,
        None,
        &mut |dir, der| fill_sqlite(dir, records, revoked, der),
        records,
        revoked,
        issues,
    );
    report("SQLite (DIR/ca.db)", &sqlite, records, revoked);

    let pg = pg_support::Postgres::start();
    let url = pg.url("ca");
    let root = tmp.path().join("postgres");
    let mut client = pg.client("ca");
    let postgres = measure(
        &root,
        Some(&url),
        &mut |dir, der| fill_postgres(&mut client, dir, records, revoked, der),
        records,
        revoked,
        issues,
    );
    report(
        "PostgreSQL 15 (private cluster, loopback, fsync=off)",
        &postgres,
        records,
        revoked,
    );
}
