//! `ca move-store`: moves a CA's state from its SQLite store (`DIR/ca.db`) into PostgreSQL,
//! for a CA that outgrows one machine.
//!
//! What moves: the CA's row (CRL number), every certificate (in issuance order, so `ca list`
//! keeps its newest-first order), and the state of `ca serve`: ACME accounts, orders,
//! authorizations, challenges and the published CRL. What does not: unused nonces (clients get
//! `badNonce` and retry, RFC 8555 §6.5) and leases (the instances on PostgreSQL take new ones).
//!
//! How, so that nothing is lost or written twice:
//! 1. the SQLite store is opened as every command opens it (whole, current schema, this CA's)
//!    and its write lock taken (`BEGIN IMMEDIATE`): a `ca` command that writes meanwhile waits;
//! 2. the rows are copied into PostgreSQL in one transaction (under an advisory lock on the
//!    CA), which commits whole or not at all;
//! 3. in the same SQLite transaction, triggers are added that refuse every later write to
//!    `ca.db` ("this CA's store moved to PostgreSQL"), then it commits: a process that was
//!    waiting, or one that still has the old store open, fails instead of writing where nobody
//!    reads;
//! 4. `DIR/store.json` says `postgres` (written atomically); `ca.db` stays, read-only, as it
//!    was at the move.
//!
//! Interrupted after step 2, the next `ca move-store` finds PostgreSQL holding this CA with
//! exactly the SQLite store's certificates, statuses, CRL number and row counts and finishes
//! steps 3 and 4; PostgreSQL holding this CA with anything else is refused, nothing changed.

use std::path::Path;

use postgres::types::{ToSql, Type};
use rusqlite::TransactionBehavior;
use rusqlite::types::Value;

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{DirLock, Location, SQLITE_FILE, STORE_FILE, read_marker, redact, write_marker};
use crate::ca::CaError;

/// The tables that move, in an order that satisfies their foreign keys, each with the column
/// that orders its rows. `issuers` is moved first, on its own; `certificates.id` is not copied
/// (PostgreSQL numbers the rows again, in the same order: ids are shared by every CA there).
const MOVED_TABLES: [(&str, &str); 6] = [
    ("certificates", "id"),
    ("acme_accounts", "created, id"),
    ("acme_orders", "created, id"),
    ("acme_authorizations", "id"),
    ("acme_challenges", "id"),
    ("published_crls", "issuer"),
];

/// Every table of the SQLite store, fenced off after the move.
const ALL_TABLES: [&str; 9] = [
    "issuers",
    "certificates",
    "acme_accounts",
    "acme_orders",
    "acme_authorizations",
    "acme_challenges",
    "acme_nonces",
    "acme_leases",
    "published_crls",
];

/// What [`move_to_postgres`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveReport {
    /// Rows copied per table (`issuers` first), in the order they were copied; empty when an
    /// interrupted move was finished ([`MoveReport::resumed`]).
    pub copied: Vec<(&'static str, u64)>,
    /// PostgreSQL already held exactly this store (an earlier move stopped after its copy);
    /// only the fencing of `ca.db` and `store.json` were done now.
    pub resumed: bool,
    /// The PostgreSQL store, as shown in messages (password masked).
    pub target: String,
}

/// Moves the CA in `dir` from its SQLite store into the PostgreSQL database at `url` (see the
/// module documentation). The CA is named by `DIR/ca.pem` (its SHA-256 fingerprint keys its
/// rows, as in every store); its key is not needed.
///
/// # Errors
/// [`CaError::NotACa`] when `dir` holds no CA; [`CaError::Store`] when the CA is already on PostgreSQL, when PostgreSQL cannot be reached,
/// or holds this CA with other records; [`CaError::MissingDatabase`] / [`CaError::Database`]
/// for a missing, damaged or foreign `ca.db` (as every command); I/O errors for `store.json`.
/// Nothing is changed on any error, except a copy PostgreSQL committed before a later step
/// failed, which the next run finishes.
pub fn move_to_postgres(dir: &Path, url: &str) -> Result<MoveReport, CaError> {
    let (certificate, _) = crate::ca::read_ca_certificates(dir)?;
    let issuer = crate::pki::CertificateInfo::from_der(&certificate)?.sha256_fingerprint;
    let issuer = issuer.as_str();
    let _lock = DirLock::acquire(dir)?;
    match read_marker(dir)? {
        Some(marker) if marker.backend == "sqlite" => {}
        Some(marker) if marker.backend == "postgres" => {
            return Err(CaError::Store {
                store: dir.join(STORE_FILE).display().to_string(),
                reason: "this CA already keeps its state in PostgreSQL: there is nothing to move".into(),
            });
        }
        _ => {
            // Opening reports a missing or damaged store.json (or imports a legacy db.json).
            drop(super::open(dir, issuer, None)?);
        }
    }
    let mut sqlite = SqliteStore::open(dir, issuer)?;
    let mut postgres = PostgresStore::connect(url, issuer)?;
    postgres.migrate(true)?;
    let target = redact(url);
    let source = sqlite.path.clone();
    let failed_sqlite = |e: rusqlite::Error| super::sqlite::database_error(&source, e);
    let failed_postgres = |e: postgres::Error| super::postgres::fail(url, &e);

    let tx = sqlite
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed_sqlite)?;
    let mut pg = postgres.client.transaction().map_err(failed_postgres)?;
    pg.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&issuer])
        .map_err(failed_postgres)?;
    let held = pg
        .query_opt("SELECT crl_number FROM issuers WHERE issuer = $1", &[&issuer])
        .map_err(failed_postgres)?
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()
        .map_err(failed_postgres)?;
    let (crl_number, created_at): (i64, i64) = tx
        .query_row(
            "SELECT crl_number, created_at FROM issuers WHERE issuer = ?1",
            [issuer],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(failed_sqlite)?;
    let mut copied = Vec::new();
    let resumed = match held {
        Some(held) => {
            let same =
                held == crl_number && same_content(&tx, &mut pg, issuer).map_err(|e| e.into_error(&source, url))?;
            if !same {
                return Err(CaError::Store {
                    store: target,
                    reason: format!(
                        "it already holds this CA (fingerprint {issuer}) with other records than {} \
                         (CRL number {held} there, {crl_number} here); nothing was changed",
                        source.display()
                    ),
                });
            }
            true
        }
        None => {
            pg.execute(
                "INSERT INTO issuers (issuer, crl_number, created_at) VALUES ($1, $2, $3)",
                &[&issuer, &crl_number, &created_at],
            )
            .map_err(failed_postgres)?;
            copied.push(("issuers", 1));
            for (table, order) in MOVED_TABLES {
                let rows = copy_table(&tx, &mut pg, issuer, table, order).map_err(|e| e.into_error(&source, url))?;
                copied.push((table, rows));
            }
            false
        }
    };
    pg.commit().map_err(failed_postgres)?;
    for table in ALL_TABLES {
        for operation in ["INSERT", "UPDATE", "DELETE"] {
            tx.execute_batch(&format!(
                "CREATE TRIGGER IF NOT EXISTS moved_to_postgresql_{table}_{} BEFORE {operation} ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'this CA''s store moved to PostgreSQL (ca move-store): give the ca \
                 commands --db (or TESSERA_DB)'); END;",
                operation.to_ascii_lowercase()
            ))
            .map_err(failed_sqlite)?;
        }
    }
    tx.commit().map_err(failed_sqlite)?;
    write_marker(dir, &Location::Postgres(url.to_string()))?;
    tracing::info!(
        dir = %dir.display(),
        store = %target,
        resumed,
        "moved the CA's store from {SQLITE_FILE} to PostgreSQL"
    );
    Ok(MoveReport {
        copied,
        resumed,
        target,
    })
}

/// A failure on one side of the copy.
enum CopyError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    Mismatch(String),
}

impl CopyError {
    fn into_error(self, source: &Path, url: &str) -> CaError {
        match self {
            Self::Sqlite(e) => super::sqlite::database_error(source, e),
            Self::Postgres(e) => super::postgres::fail(url, &e),
            Self::Mismatch(reason) => CaError::Store {
                store: redact(url),
                reason,
            },
        }
    }
}

impl From<rusqlite::Error> for CopyError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<postgres::Error> for CopyError {
    fn from(e: postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

/// The columns of `table` in the SQLite store, as PRAGMA table_info lists them (`id` of
/// `certificates` left out).
fn sqlite_columns(tx: &rusqlite::Transaction<'_>, table: &str) -> Result<Vec<String>, CopyError> {
    let mut statement = tx.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = statement
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names
        .into_iter()
        .filter(|name| !(table == "certificates" && name == "id"))
        .collect())
}

/// Copies this CA's rows of `table`, in `order`, as they are; returns how many. The values are
/// bound with the types PostgreSQL's prepared INSERT asks for (BIGINT, TEXT, BYTEA, BOOLEAN:
/// SQLite's booleans are 0 and 1).
fn copy_table(
    tx: &rusqlite::Transaction<'_>,
    pg: &mut postgres::Transaction<'_>,
    issuer: &str,
    table: &str,
    order: &str,
) -> Result<u64, CopyError> {
    let columns = sqlite_columns(tx, table)?;
    let list = columns.join(", ");
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = pg.prepare(&format!(
        "INSERT INTO {table} ({list}) VALUES ({})",
        placeholders.join(", ")
    ))?;
    let types = insert.params().to_vec();
    let mut select = tx.prepare(&format!(
        "SELECT {list} FROM {table} WHERE issuer = ?1 ORDER BY {order}"
    ))?;
    let mut rows = select.query([issuer])?;
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len());
        for (i, (column, ty)) in columns.iter().zip(&types).enumerate() {
            let value: Value = row.get(i)?;
            values.push(bind(value, ty).ok_or_else(|| {
                CopyError::Mismatch(format!(
                    "column {table}.{column} of {SQLITE_FILE} holds a value PostgreSQL's {ty} column cannot take"
                ))
            })?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|value| value.as_ref()).collect();
        pg.execute(&insert, &refs)?;
        count += 1;
    }
    Ok(count)
}

/// `value` as the Rust type PostgreSQL's `ty` takes; `None` when they do not fit.
fn bind(value: Value, ty: &Type) -> Option<Box<dyn ToSql + Sync>> {
    let boxed: Box<dyn ToSql + Sync> = match value {
        Value::Null if *ty == Type::INT8 => Box::new(None::<i64>),
        Value::Null if *ty == Type::TEXT => Box::new(None::<String>),
        Value::Null if *ty == Type::BYTEA => Box::new(None::<Vec<u8>>),
        Value::Null if *ty == Type::BOOL => Box::new(None::<bool>),
        Value::Integer(i) if *ty == Type::INT8 => Box::new(i),
        Value::Integer(i @ (0 | 1)) if *ty == Type::BOOL => Box::new(i == 1),
        Value::Text(text) if *ty == Type::TEXT => Box::new(text),
        Value::Blob(bytes) if *ty == Type::BYTEA => Box::new(bytes),
        _ => return None,
    };
    Some(boxed)
}

/// Whether PostgreSQL holds exactly what the SQLite store holds for this CA: the same number of
/// rows in every moved table, and the same certificates with the same status and revocation.
fn same_content(
    tx: &rusqlite::Transaction<'_>,
    pg: &mut postgres::Transaction<'_>,
    issuer: &str,
) -> Result<bool, CopyError> {
    for (table, _) in MOVED_TABLES {
        let here: i64 = tx.query_row(
            &format!("SELECT count(*) FROM {table} WHERE issuer = ?1"),
            [issuer],
            |row| row.get(0),
        )?;
        let there: i64 = pg
            .query_one(&format!("SELECT count(*) FROM {table} WHERE issuer = $1"), &[&issuer])?
            .try_get(0)?;
        if here != there {
            return Ok(false);
        }
    }
    let query = "SELECT serial, status, revoked_at, revocation_reason FROM certificates WHERE issuer = ";
    type Entry = (String, String, Option<i64>, Option<String>);
    let mut statement = tx.prepare(&format!("{query}?1"))?;
    let mut here: Vec<Entry> = statement
        .query_map([issuer], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut there: Vec<Entry> = pg
        .query(&format!("{query}$1"), &[&issuer])?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)))
        .collect::<Result<_, postgres::Error>>()?;
    // Sorted here, not by either database (PostgreSQL's collation depends on its locale).
    here.sort_unstable();
    there.sort_unstable();
    Ok(here == there)
}
