//! `ca move-store`: moves a CA's state from its SQLite store (`DIR/ca.db`) into PostgreSQL,
//! for a CA that outgrows one machine.
//!
//! What moves: the CA's row (CRL number), every certificate (in issuance order, so `ca list`
//! keeps its newest-first order), and the state of `ca serve`: ACME accounts, orders,
//! authorizations, challenges and the published CRL. What does not: unused nonces (clients get
//! `badNonce` and retry, RFC 8555 §6.5) and leases (the instances on PostgreSQL take new ones).
//!
//! How, so that nothing is lost or written twice:
//! 1. the SQLite store is opened as every command opens it (whole, current schema, this CA's),
//!    and, under its write lock (`BEGIN IMMEDIATE`: a `ca` command writing meanwhile is waited
//!    for), triggers are added that refuse every later write to `ca.db` ("this CA's store moved
//!    to PostgreSQL"). From here on the SQLite store cannot change: a process that was waiting,
//!    or still has it open, fails instead of writing where nobody will read;
//! 2. the rows are copied into PostgreSQL in one transaction (under an advisory lock on the
//!    CA), which commits whole or not at all;
//! 3. `DIR/store.json` says `postgres` (written atomically); `ca.db` stays, read-only, as it
//!    was at the move.
//!
//! The fence comes first so that a move cut short anywhere leaves nothing that can drift
//! apart: killed after step 1, `ca.db` refuses writes (every command says to run `ca
//! move-store` again, [`CaError::StoreMoved`]); killed after step 2, PostgreSQL holds exactly
//! the fenced store. The next `ca move-store` compares every row of every moved table on both
//! sides and finishes; PostgreSQL holding this CA with anything else is refused. A refusal or
//! failure before step 2 commits takes a fence this run added away again: nothing changed.

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
/// [`CaError::NotACa`] when `dir` holds no CA; [`CaError::Store`] when the CA is already on
/// PostgreSQL, when PostgreSQL cannot be reached, or holds this CA with other records (which
/// table differs is said); [`CaError::MissingDatabase`] / [`CaError::Database`] for a missing,
/// damaged or foreign `ca.db` (as every command); I/O errors for `store.json`. Nothing is
/// changed on any error, except after the copy committed (`store.json` could not be written),
/// or when an earlier run had fenced `ca.db` off: the next run finishes the move.
pub fn move_to_postgres(dir: &Path, url: &str) -> Result<MoveReport, CaError> {
    let (certificate, _) = crate::ca::read_ca_certificates(dir)?;
    let issuer = crate::pki::CertificateInfo::from_der(&certificate)?.sha256_fingerprint;
    let issuer = issuer.as_str();
    let _lock = DirLock::acquire(dir)?;
    match read_marker(dir)? {
        Some(marker) if marker.backend == "sqlite" => {}
        Some(marker) if marker.backend == "postgres" => {
            return Err(CaError::WrongStore {
                store: dir.join(STORE_FILE).display().to_string(),
                reason: "this CA already keeps its state in PostgreSQL: there is nothing to move".into(),
                fix: "nothing to do: the move is done; give this CA's ca commands --db (or TESSERA_DB) \
                      naming that PostgreSQL database"
                    .into(),
            });
        }
        _ => {
            // Opening reports a missing or damaged store.json (or imports a legacy db.json).
            drop(super::open(dir, issuer, None)?);
        }
    }
    // A store an earlier run fenced off is opened too: this run finishes that move.
    let mut sqlite = SqliteStore::open_fenced(dir, issuer)?;
    let mut postgres = PostgresStore::connect(url, issuer)?;
    postgres.migrate(true)?;
    let target = redact(url);
    let source = sqlite.path.clone();
    let failed_sqlite = |e: rusqlite::Error| super::sqlite::database_error(&source, e);

    let fenced_before = super::sqlite::is_fenced(&sqlite.conn).map_err(failed_sqlite)?;
    fence(&mut sqlite.conn).map_err(failed_sqlite)?;
    let copied = copy_fenced(&mut sqlite, &mut postgres, issuer, url);
    let copied = match copied {
        Ok(copied) => copied,
        Err(error) if fenced_before => return Err(error),
        Err(error) => {
            // This run's fence goes: the SQLite store stays the CA's, as it was.
            return match unfence(&mut sqlite.conn) {
                Ok(()) => Err(error),
                Err(e) => Err(CaError::Store {
                    store: source.display().to_string(),
                    reason: format!(
                        "{error}; and its fence could not be taken away again ({e}): run ca move-store again \
                         to finish the move"
                    ),
                }),
            };
        }
    };
    write_marker(dir, &Location::Postgres(url.to_string()))?;
    let resumed = copied.is_none();
    tracing::info!(
        dir = %dir.display(),
        store = %target,
        resumed,
        "moved the CA's store from {SQLITE_FILE} to PostgreSQL"
    );
    Ok(MoveReport {
        copied: copied.unwrap_or_default(),
        resumed,
        target,
    })
}

/// Step 1: the triggers that refuse every write to every table, added under the write lock
/// (waiting for a writer under way). Idempotent.
fn fence(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for table in ALL_TABLES {
        for operation in ["INSERT", "UPDATE", "DELETE"] {
            tx.execute_batch(&format!(
                "CREATE TRIGGER IF NOT EXISTS {}{table}_{} BEFORE {operation} ON {table} \
                 BEGIN SELECT RAISE(ABORT, '{}: give the ca commands --db (or TESSERA_DB)'); END;",
                super::sqlite::FENCE_PREFIX,
                operation.to_ascii_lowercase(),
                super::sqlite::FENCE_MESSAGE.replace('\'', "''"),
            ))?;
        }
    }
    tx.commit()
}

/// Takes the fence of [`fence`] away again.
fn unfence(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for table in ALL_TABLES {
        for operation in ["insert", "update", "delete"] {
            tx.execute_batch(&format!(
                "DROP TRIGGER IF EXISTS {}{table}_{operation};",
                super::sqlite::FENCE_PREFIX
            ))?;
        }
    }
    tx.commit()
}

/// Step 2, on the fenced store: copies it into PostgreSQL in one transaction and returns the
/// rows copied per table, or `None` when PostgreSQL already held exactly this store (a move cut
/// short after its copy). PostgreSQL holding this CA with anything else is refused.
fn copy_fenced(
    sqlite: &mut SqliteStore,
    postgres: &mut PostgresStore,
    issuer: &str,
    url: &str,
) -> Result<Option<Vec<(&'static str, u64)>>, CaError> {
    let source = sqlite.path.clone();
    let failed_sqlite = |e: rusqlite::Error| super::sqlite::database_error(&source, e);
    let failed_postgres = |e: postgres::Error| super::postgres::fail(url, &e);
    // One read transaction: one snapshot of the store (which the fence keeps as it is anyway).
    let tx = sqlite.conn.transaction().map_err(failed_sqlite)?;
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
    if let Some(held) = held {
        let differs = if held == crl_number {
            first_difference(&tx, &mut pg, issuer).map_err(|e| e.into_error(&source, url))?
        } else {
            Some(format!("the CRL number is {held} there, {crl_number} here"))
        };
        return match differs {
            None => Ok(None),
            Some(difference) => Err(CaError::Store {
                store: redact(url),
                reason: format!(
                    "it already holds this CA (fingerprint {issuer}) with other records than {} ({difference}); \
                     nothing was changed: move into a database that does not hold this CA, or remove this \
                     CA's rows from that one first",
                    source.display()
                ),
            }),
        };
    }
    pg.execute(
        "INSERT INTO issuers (issuer, crl_number, created_at) VALUES ($1, $2, $3)",
        &[&issuer, &crl_number, &created_at],
    )
    .map_err(failed_postgres)?;
    let mut copied = vec![("issuers", 1)];
    for (table, order) in MOVED_TABLES {
        let rows = copy_table(&tx, &mut pg, issuer, table, order).map_err(|e| e.into_error(&source, url))?;
        copied.push((table, rows));
    }
    pg.commit().map_err(failed_postgres)?;
    Ok(Some(copied))
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

/// Where PostgreSQL's copy of this CA differs from the SQLite store, if it does: every column
/// of every row of every moved table is compared (certificates in issuance order, the other
/// tables by their text key in byte order on both sides), as a SHA-256 digest of each side's
/// rows streamed in that order, so that a store of any size is compared in constant memory.
fn first_difference(
    tx: &rusqlite::Transaction<'_>,
    pg: &mut postgres::Transaction<'_>,
    issuer: &str,
) -> Result<Option<String>, CopyError> {
    use postgres::fallible_iterator::FallibleIterator;
    for (table, _) in MOVED_TABLES {
        let columns = sqlite_columns(tx, table)?;
        let list = columns.join(", ");
        let (here_order, there_order) = match table {
            "certificates" => ("id", "id"),
            "published_crls" => ("issuer", "issuer"),
            // Text keys: SQLite's BINARY collation is byte order, PostgreSQL's "C" too.
            _ => ("id", "id COLLATE \"C\""),
        };
        let mut here = RowDigest::default();
        let mut select = tx.prepare(&format!(
            "SELECT {list} FROM {table} WHERE issuer = ?1 ORDER BY {here_order}"
        ))?;
        let mut rows = select.query([issuer])?;
        while let Some(row) = rows.next()? {
            for i in 0..columns.len() {
                here.add(&Cell::from(row.get::<_, Value>(i)?));
            }
        }
        let mut there = RowDigest::default();
        let query = format!("SELECT {list} FROM {table} WHERE issuer = $1 ORDER BY {there_order}");
        let mut rows = pg.query_raw(query.as_str(), [issuer])?;
        while let Some(row) = rows.next()? {
            for (i, column) in row.columns().iter().enumerate() {
                let ty = column.type_();
                let cell = if *ty == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?.map(Cell::Integer)
                } else if *ty == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?.map(|b| Cell::Integer(i64::from(b)))
                } else if *ty == Type::TEXT {
                    row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
                } else if *ty == Type::BYTEA {
                    row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob)
                } else {
                    return Err(CopyError::Mismatch(format!(
                        "column {table}.{} has the type {ty}, which this Tessera does not know",
                        column.name()
                    )));
                };
                there.add(&cell.unwrap_or(Cell::Null));
            }
        }
        if !here.same_as(&there) {
            return Ok(Some(format!(
                "{table}: {} rows there, {} here{}",
                there.cells / columns.len().max(1),
                here.cells / columns.len().max(1),
                if here.cells == there.cells {
                    ", not all the same"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(None)
}

/// One value of a row, whichever database it came from (PostgreSQL's booleans as SQLite's 0
/// and 1).
enum Cell {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
    Real(f64),
}

impl From<Value> for Cell {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Integer(i) => Self::Integer(i),
            Value::Real(r) => Self::Real(r),
            Value::Text(t) => Self::Text(t),
            Value::Blob(b) => Self::Blob(b),
        }
    }
}

/// A running SHA-256 of cells, each written as a tag byte, then its length and bytes, so that
/// no two sequences of cells write the same bytes.
struct RowDigest {
    context: ring::digest::Context,
    cells: usize,
}

impl Default for RowDigest {
    fn default() -> Self {
        Self {
            context: ring::digest::Context::new(&ring::digest::SHA256),
            cells: 0,
        }
    }
}

impl RowDigest {
    fn add(&mut self, cell: &Cell) {
        let number;
        let (tag, bytes): (u8, &[u8]) = match cell {
            Cell::Null => (0, &[]),
            Cell::Integer(i) => {
                number = i.to_be_bytes();
                (1, &number)
            }
            Cell::Text(t) => (2, t.as_bytes()),
            Cell::Blob(b) => (3, b),
            Cell::Real(r) => {
                number = r.to_bits().to_be_bytes();
                (4, &number)
            }
        };
        self.context.update(&[tag]);
        self.context.update(&(bytes.len() as u64).to_be_bytes());
        self.context.update(bytes);
        self.cells += 1;
    }

    /// Whether both saw the same cells.
    fn same_as(&self, other: &Self) -> bool {
        self.cells == other.cells && self.context.clone().finish().as_ref() == other.context.clone().finish().as_ref()
    }
}
