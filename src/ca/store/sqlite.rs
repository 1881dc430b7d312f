//! The SQLite store: `DIR/ca.db`, WAL mode, a busy timeout, `synchronous = FULL`, and one
//! transaction per change (`BEGIN IMMEDIATE` for those that read before they write, so two
//! processes never both read and then both try to upgrade).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use super::migrate;
use super::{CrlState, CrlSummary, ListFilter, RevokeOutcome, Row, SQLITE_FILE, Store, WriteAccess};
use crate::ca::CaError;
use crate::ca::legacy::Database;
use crate::ca::record::Record;
use crate::fsutil;
use crate::pki::{RevocationReason, Serial};

/// How long a command waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const COLUMNS: &str =
    "serial, subject, sans, profile, not_before, not_after, issued_at, revoked_at, revocation_reason, der";

/// A CA's SQLite store, for one issuer.
pub(crate) struct SqliteStore {
    pub(super) conn: Connection,
    pub(super) issuer: String,
    pub(super) path: PathBuf,
}

impl SqliteStore {
    /// Opens `DIR/ca.db`, which must exist, be whole, carry a schema this build knows (newer
    /// migrations are applied), and belong to `issuer`.
    ///
    /// # Errors
    /// [`CaError::StoreMoved`] when `ca move-store` fenced it off, and the errors of
    /// [`super::open`].
    pub(crate) fn open(dir: &Path, issuer: &str) -> Result<Self, CaError> {
        Self::open_inner(dir, issuer, false)
    }

    /// [`SqliteStore::open`], also when `ca move-store` fenced the store off: for the move
    /// itself, which reads it once more to finish a move cut short.
    pub(super) fn open_fenced(dir: &Path, issuer: &str) -> Result<Self, CaError> {
        Self::open_inner(dir, issuer, true)
    }

    fn open_inner(dir: &Path, issuer: &str, fenced_too: bool) -> Result<Self, CaError> {
        let path = dir.join(SQLITE_FILE);
        check_file(&path)?;
        let mut conn = connect(&path, false)?;
        if !fenced_too && is_fenced(&conn).map_err(|e| database_error(&path, e))? {
            return Err(moved_error(&path));
        }
        migrate(&mut conn, &path, false)?;
        let store = Self {
            conn,
            issuer: issuer.to_string(),
            path,
        };
        store.check_owner()?;
        Ok(store)
    }

    /// Creates `DIR/ca.db` for a new CA (refusing to replace one).
    pub(crate) fn create(dir: &Path, issuer: &str) -> Result<(), CaError> {
        let path = dir.join(SQLITE_FILE);
        let unfinished = || CaError::UnfinishedInit {
            dir: dir.into(),
            found: SQLITE_FILE.into(),
        };
        if path.symlink_metadata().is_ok() {
            return Err(unfinished());
        }
        // Made here (so removed below on failure: never a file another process made).
        match create_private(&path) {
            Err(CaError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(unfinished());
            }
            other => other?,
        }
        let result = (|| {
            let mut conn = connect(&path, true)?;
            make_private(&path)?;
            migrate(&mut conn, &path, true)?;
            insert_issuer(&conn, issuer, 0).map_err(|e| database_error(&path, e))?;
            conn.close().map_err(|(_, e)| database_error(&path, e))?;
            fsutil::sync_parent(&path).map_err(|e| CaError::io(&path, e))
        })();
        if result.is_err() {
            remove_database(&path);
        }
        result
    }

    /// Writes the records and CRL number of a legacy `db.json` into a new database under a
    /// temporary name, then renames it to `DIR/ca.db` (replacing what an interrupted import
    /// left): the import appears whole or not at all.
    pub(crate) fn import(dir: &Path, issuer: &str, legacy: &Database) -> Result<(), CaError> {
        let path = dir.join(SQLITE_FILE);
        // 0600 from its creation, removed with SQLite's files beside it on failure or signal.
        let file = fsutil::AtomicFile::create_with_mode(&path, fsutil::PRIVATE_MODE)
            .map_err(|e| CaError::io(&path, e))?
            .with_sqlite_companions();
        let temp = file
            .temporary_path()
            .ok_or_else(|| CaError::Database {
                path: path.clone(),
                reason: "it is not a regular file".into(),
            })?
            .to_path_buf();
        let result = (|| {
            let mut conn = connect(&temp, true)?;
            make_private(&temp)?;
            migrate(&mut conn, &temp, true)?;
            let tx = conn.transaction().map_err(|e| database_error(&temp, e))?;
            let number = i64::try_from(legacy.crl_number).map_err(|_| CaError::Database {
                path: dir.join(crate::ca::legacy::DATABASE_FILE),
                reason: format!("its CRL number {} is too large", legacy.crl_number),
            })?;
            insert_issuer(&tx, issuer, number).map_err(|e| database_error(&temp, e))?;
            for record in &legacy.records {
                let der = super::record_der(record, &temp.display().to_string())?;
                tx.execute(
                    "INSERT INTO certificates (issuer, serial, subject, sans, profile, not_before, not_after, \
                     issued_at, status, revoked_at, revocation_reason, der) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        issuer,
                        record.serial.to_string(),
                        record.subject,
                        super::sans_to_text(&record.sans),
                        record.profile,
                        record.not_before.unix_timestamp(),
                        record.not_after.unix_timestamp(),
                        record.issued_at.unix_timestamp(),
                        if record.revoked.is_some() { "revoked" } else { "good" },
                        record.revoked.as_ref().map(|r| r.at.unix_timestamp()),
                        record.revoked.as_ref().map(|r| r.reason.name()),
                        der,
                    ],
                )
                .map_err(|e| database_error(&temp, e))?;
            }
            tx.commit().map_err(|e| database_error(&temp, e))?;
            conn.close().map_err(|(_, e)| database_error(&temp, e))
        })();
        // Dropped on failure, the temporary file goes with its companions.
        result?;
        file.commit(true).map_err(|e| CaError::io(&path, e))
    }

    fn describe_path(&self) -> String {
        self.path.display().to_string()
    }

    fn fail(&self, e: rusqlite::Error) -> CaError {
        database_error(&self.path, e)
    }

    fn check_owner(&self) -> Result<(), CaError> {
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT issuer FROM issuers WHERE issuer = ?1",
                params![self.issuer],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        if found.is_some() {
            return Ok(());
        }
        let other: Option<String> = self
            .conn
            .query_row("SELECT issuer FROM issuers LIMIT 1", [], |row| row.get(0))
            .optional()
            .map_err(|e| self.fail(e))?;
        Err(CaError::Database {
            path: self.path.clone(),
            reason: match other {
                Some(other) => format!(
                    "it belongs to another CA (certificate fingerprint {other}, but ca.pem has {})",
                    self.issuer
                ),
                None => "it records no CA".into(),
            },
        })
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.describe_path()
    }

    fn issue(&mut self, record: &Record, _: WriteAccess) -> Result<bool, CaError> {
        insert_certificate(&self.conn, &self.issuer, record, &self.path)
    }

    fn acme(&mut self) -> &mut dyn super::acme::AcmeStore {
        self
    }

    fn revoke_once(
        &mut self,
        serial: &Serial,
        at: OffsetDateTime,
        reason: RevocationReason,
        _: WriteAccess,
    ) -> Result<RevokeOutcome, CaError> {
        let serial = serial.to_string();
        let reason = reason.name();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| database_error(&path, e))?;
        let changed: Option<String> = tx
            .query_row(
                "UPDATE certificates SET status = 'revoked', revoked_at = ?3, revocation_reason = ?4 \
                 WHERE issuer = ?1 AND serial = ?2 AND status = 'good' RETURNING serial",
                params![self.issuer, serial, at.unix_timestamp(), reason],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| database_error(&path, e))?;
        let outcome = if changed.is_some() {
            RevokeOutcome::Revoked(advance(&tx, &self.issuer, &path)?)
        } else {
            let existing: Option<(Option<i64>, Option<String>)> = tx
                .query_row(
                    "SELECT revoked_at, revocation_reason FROM certificates WHERE issuer = ?1 AND serial = ?2",
                    params![self.issuer, serial],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(|e| database_error(&path, e))?;
            match existing {
                Some((Some(at), Some(reason))) => RevokeOutcome::AlreadyRevoked(crate::ca::Revocation {
                    at: super::time_from(at, &path.display().to_string())?,
                    reason: super::reason_from(&reason, &serial, &path.display().to_string())?,
                }),
                Some(_) => {
                    return Err(CaError::Database {
                        path,
                        reason: format!("certificate {serial} is neither good nor revoked"),
                    });
                }
                None => RevokeOutcome::Unknown,
            }
        };
        tx.commit().map_err(|e| database_error(&path, e))?;
        Ok(outcome)
    }

    fn advance_crl_number(&mut self, _: WriteAccess) -> Result<CrlState, CaError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| database_error(&path, e))?;
        let state = advance(&tx, &self.issuer, &path)?;
        tx.commit().map_err(|e| database_error(&path, e))?;
        Ok(state)
    }

    fn crl_summary(&mut self) -> Result<CrlSummary, CaError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| database_error(&path, e))?;
        let number: i64 = tx
            .query_row(
                "SELECT crl_number FROM issuers WHERE issuer = ?1",
                params![self.issuer],
                |row| row.get(0),
            )
            .map_err(|e| database_error(&path, e))?;
        let revoked: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM certificates WHERE issuer = ?1 AND status = 'revoked'",
                params![self.issuer],
                |row| row.get(0),
            )
            .map_err(|e| database_error(&path, e))?;
        tx.commit().map_err(|e| database_error(&path, e))?;
        let store = path.display().to_string();
        Ok(CrlSummary {
            number: super::crl_number_from(number, &store)?,
            revoked: u64::try_from(revoked).unwrap_or(0),
        })
    }

    fn crl_number(&mut self) -> Result<u64, CaError> {
        let path = self.path.clone();
        let number: i64 = self
            .conn
            .query_row(
                "SELECT crl_number FROM issuers WHERE issuer = ?1",
                params![self.issuer],
                |row| row.get(0),
            )
            .map_err(|e| database_error(&path, e))?;
        super::crl_number_from(number, &path.display().to_string())
    }

    fn find(&mut self, serial: &Serial) -> Result<Option<Record>, CaError> {
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE issuer = ?1 AND serial = ?2");
        let row = self
            .conn
            .query_row(&sql, params![self.issuer, serial.to_string()], read_row)
            .optional()
            .map_err(|e| self.fail(e))?;
        row.map(|r| r.into_record(&self.describe_path())).transpose()
    }

    fn list(
        &mut self,
        filter: &ListFilter,
        each: &mut dyn FnMut(Record) -> Result<(), CaError>,
    ) -> Result<(), CaError> {
        let (low, high) = filter.expiry_bounds();
        let store = self.describe_path();
        let path = self.path.clone();
        // Parameterised; the only variable part is which of three fixed statements is used, so
        // that the revoked set comes from its partial index.
        let sql = match filter.status_column() {
            None => format!(
                "SELECT {COLUMNS} FROM certificates WHERE issuer = ?1 AND not_after BETWEEN ?2 AND ?3 \
                 ORDER BY id DESC LIMIT ?4"
            ),
            Some("revoked") => format!(
                "SELECT {COLUMNS} FROM certificates WHERE issuer = ?1 AND status = 'revoked' \
                 AND not_after BETWEEN ?2 AND ?3 ORDER BY id DESC LIMIT ?4"
            ),
            Some(_) => format!(
                "SELECT {COLUMNS} FROM certificates WHERE issuer = ?1 AND status = 'good' \
                 AND not_after BETWEEN ?2 AND ?3 ORDER BY id DESC LIMIT ?4"
            ),
        };
        let mut statement = self.conn.prepare(&sql).map_err(|e| database_error(&path, e))?;
        let mut rows = statement
            .query(params![self.issuer, low, high, filter.limit()])
            .map_err(|e| database_error(&path, e))?;
        while let Some(row) = rows.next().map_err(|e| database_error(&path, e))? {
            let row = read_row(row).map_err(|e| database_error(&path, e))?;
            each(row.into_record(&store)?)?;
        }
        Ok(())
    }
}

/// Records a new certificate if its serial is free (`INSERT … ON CONFLICT DO NOTHING
/// RETURNING`), on a connection or inside the caller's transaction: false when it is taken.
pub(super) fn insert_certificate(
    conn: &Connection,
    issuer: &str,
    record: &Record,
    path: &Path,
) -> Result<bool, CaError> {
    let der = super::record_der(record, &path.display().to_string())?;
    let inserted: Option<String> = conn
        .query_row(
            "INSERT INTO certificates (issuer, serial, subject, sans, profile, not_before, not_after, issued_at, \
             status, der) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'good', ?9) \
             ON CONFLICT (issuer, serial) DO NOTHING RETURNING serial",
            params![
                issuer,
                record.serial.to_string(),
                record.subject,
                super::sans_to_text(&record.sans),
                record.profile,
                record.not_before.unix_timestamp(),
                record.not_after.unix_timestamp(),
                record.issued_at.unix_timestamp(),
                der,
            ],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| database_error(path, e))?;
    Ok(inserted.is_some())
}

/// Hands out the next CRL number and reads the revoked set, inside the caller's transaction.
fn advance(tx: &rusqlite::Transaction<'_>, issuer: &str, path: &Path) -> Result<CrlState, CaError> {
    let number: i64 = tx
        .query_row(
            "UPDATE issuers SET crl_number = crl_number + 1 WHERE issuer = ?1 RETURNING crl_number",
            params![issuer],
            |row| row.get(0),
        )
        .map_err(|e| database_error(path, e))?;
    let store = path.display().to_string();
    let mut statement = tx
        .prepare(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = ?1 AND status = 'revoked' ORDER BY serial",
        )
        .map_err(|e| database_error(path, e))?;
    let rows = statement
        .query_map(params![issuer], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .map_err(|e| database_error(path, e))?;
    let mut revoked = Vec::new();
    for row in rows {
        let (serial, at, reason) = row.map_err(|e| database_error(path, e))?;
        revoked.push(super::revoked_entry(&serial, at, &reason, &store)?);
    }
    Ok(CrlState {
        number: super::crl_number_from(number, &store)?,
        revoked,
    })
}

fn insert_issuer(conn: &Connection, issuer: &str, crl_number: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO issuers (issuer, crl_number, created_at) VALUES (?1, ?2, ?3)",
        params![issuer, crl_number, OffsetDateTime::now_utc().unix_timestamp()],
    )
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        serial: row.get(0)?,
        subject: row.get(1)?,
        sans: row.get(2)?,
        profile: row.get(3)?,
        not_before: row.get(4)?,
        not_after: row.get(5)?,
        issued_at: row.get(6)?,
        revoked_at: row.get(7)?,
        reason: row.get(8)?,
        der: row.get(9)?,
    })
}

/// Opens a connection with the settings every command uses.
fn connect(path: &Path, create: bool) -> Result<Connection, CaError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| database_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| database_error(path, e))?;
    // WAL: readers never block the writer; FULL: a committed transaction survives power loss.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| database_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "the store is not in WAL mode");
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(|e| database_error(path, e))?;
    Ok(conn)
}

/// Applies pending migrations in one transaction. An existing store must already carry the
/// migrations table: an empty file is damage, not a new store.
fn migrate(conn: &mut Connection, path: &Path, creating: bool) -> Result<(), CaError> {
    if !creating && up_to_date(conn, path)? {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| database_error(path, e))?;
    let has_table: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| database_error(path, e))?;
    if !has_table && !creating {
        return Err(CaError::Database {
            path: path.into(),
            reason: "it holds no CA store (no schema): it was emptied or replaced".into(),
        });
    }
    tx.execute_batch(migrate::CREATE_TABLE)
        .map_err(|e| database_error(path, e))?;
    let applied: Vec<i64> = {
        let mut statement = tx
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .map_err(|e| database_error(path, e))?;
        let rows = statement
            .query_map([], |row| row.get(0))
            .map_err(|e| database_error(path, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| database_error(path, e))?
    };
    let pending = migrate::pending(&applied).map_err(|reason| CaError::Database {
        path: path.into(),
        reason,
    })?;
    for migration in pending {
        tx.execute_batch(migration.sqlite)
            .map_err(|e| database_error(path, e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![
                migration.version,
                migration.name,
                OffsetDateTime::now_utc().unix_timestamp()
            ],
        )
        .map_err(|e| database_error(path, e))?;
        tracing::info!(path = %path.display(), version = migration.version, name = migration.name, "applied migration");
    }
    tx.commit().map_err(|e| database_error(path, e))
}

/// True when the store has every migration this build knows: a read, without the write lock
/// that applying migrations takes (every command opens the store).
fn up_to_date(conn: &Connection, path: &Path) -> Result<bool, CaError> {
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| database_error(path, e))?;
    if !has_table {
        return Ok(false);
    }
    let mut statement = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .map_err(|e| database_error(path, e))?;
    let applied: Vec<i64> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| database_error(path, e))?;
    Ok(matches!(migrate::pending(&applied), Ok(pending) if pending.is_empty()))
}

/// Refuses, before SQLite sees it, a `ca.db` that is missing (SQLite would create an empty
/// one), empty, not an SQLite file, or shorter than its header says (truncated). A checkpoint
/// by another process writes page 1 (with the new size) before the pages that grow the file,
/// so an apparent truncation is looked at again a few times before it counts.
fn check_file(path: &Path) -> Result<(), CaError> {
    for _ in 0..5 {
        match check_file_once(path) {
            Err(Shorter { .. }) => std::thread::sleep(Duration::from_millis(50)),
            Ok(()) => return Ok(()),
            Err(Refused(e)) => return Err(e),
        }
    }
    match check_file_once(path) {
        Ok(()) => Ok(()),
        Err(Refused(e)) => Err(e),
        Err(Shorter { len, expected }) => Err(CaError::Database {
            path: path.into(),
            reason: format!("the file is truncated ({len} bytes, its header says {expected})"),
        }),
    }
}

/// Why [`check_file_once`] refused a file.
enum FileProblem {
    /// Shorter than its header says: truncated, or caught in the middle of a checkpoint.
    Shorter { len: u64, expected: u64 },
    /// Anything else.
    Refused(CaError),
}
use FileProblem::{Refused, Shorter};

fn check_file_once(path: &Path) -> Result<(), FileProblem> {
    let damaged = |reason: String| {
        Refused(CaError::Database {
            path: path.into(),
            reason,
        })
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refused(CaError::MissingDatabase { path: path.into() }));
        }
        Err(e) => return Err(Refused(CaError::io(path, e))),
    };
    if !meta.is_file() {
        return Err(damaged("it is not a file".into()));
    }
    let len = meta.len();
    if len == 0 {
        return Err(damaged("the file is empty".into()));
    }
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path).map_err(|e| Refused(CaError::io(path, e)))?;
    if file.read_exact(&mut header).is_err() {
        return Err(damaged(format!("the file is truncated ({len} bytes)")));
    }
    if !header.starts_with(b"SQLite format 3\0") {
        return Err(damaged("the file is not an SQLite database".into()));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([header[28], header[29], header[30], header[31]]));
    let counter = &header[24..28];
    let valid_for = &header[92..96];
    if counter == valid_for && pages > 0 && len < page_size.saturating_mul(pages) {
        return Err(Shorter {
            len,
            expected: page_size.saturating_mul(pages),
        });
    }
    Ok(())
}

/// Maps an SQLite error: a damaged file is [`CaError::Database`]; anything else (busy past the
/// timeout, full disk, permissions) is [`CaError::Store`].
pub(super) fn database_error(path: &Path, e: rusqlite::Error) -> CaError {
    if e.to_string().contains(FENCE_MESSAGE) {
        return moved_error(path);
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => CaError::Database {
            path: path.into(),
            reason: format!("the file is damaged ({e})"),
        },
        Some(ErrorCode::CannotOpen) if !path.exists() => CaError::MissingDatabase { path: path.into() },
        _ => CaError::Store {
            store: path.display().to_string(),
            reason: e.to_string(),
        },
    }
}

/// The name of every trigger `ca move-store` adds to fence a moved `ca.db` off starts so.
pub(super) const FENCE_PREFIX: &str = "moved_to_postgresql_";

/// What those triggers abort a write with (and how [`database_error`] knows them).
pub(super) const FENCE_MESSAGE: &str = "this CA's store moved to PostgreSQL (ca move-store)";

/// Whether `ca move-store` fenced this database off (its triggers are there).
pub(super) fn is_fenced(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND substr(name, 1, ?1) = ?2)",
        params![FENCE_PREFIX.len() as i64, FENCE_PREFIX],
        |row| row.get(0),
    )
}

/// [`CaError::StoreMoved`] for the fenced `path`: unfinished when the CA directory's
/// `store.json` still names the SQLite store.
pub(super) fn moved_error(path: &Path) -> CaError {
    let unfinished = path
        .parent()
        .and_then(|dir| super::read_marker(dir).ok().flatten())
        .is_some_and(|marker| marker.backend == "sqlite");
    CaError::StoreMoved {
        path: path.into(),
        unfinished,
    }
}

/// Creates the empty file `path` with mode 0600 (`create_new`), so that SQLite, which keeps an
/// existing file's mode, never makes it readable by others, not even for a moment.
fn create_private(path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::PRIVATE_MODE)
        .open(path)
        .map(drop)
        .map_err(|e| CaError::io(path, e))
}

/// The store holds every certificate and revocation: 0600 whatever the umask, like the key
/// (SQLite gives its `-wal` and `-shm` files the same mode).
fn make_private(path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(fsutil::PRIVATE_MODE))
        .map_err(|e| CaError::io(path, e))
}

fn remove_database(path: &Path) {
    let _ = std::fs::remove_file(path);
    for companion in fsutil::sqlite_companions(path) {
        let _ = std::fs::remove_file(companion);
    }
}

/// Writes a consistent copy of the SQLite store of the CA in `dir` (whose certificate has
/// fingerprint `issuer`) to `out`, while other processes go on using it (`VACUUM INTO`, which
/// reads one snapshot). `out` must not exist; the copy is checked before it gets its name.
///
/// The copy holds what the store holds, so it is private from the first byte: `VACUUM INTO`
/// writes into a temporary file beside `out` made with `create_new` and mode 0600 (SQLite gives
/// its `-journal`, `-wal` and `-shm` files the same mode), which is linked to `out` once checked.
/// On any failure the temporary file and SQLite's files beside it are removed, and so they are
/// when a signal ends `ca backup` (see `cli::remove_temporaries_on_signal`); what a killed
/// backup left (`.NAME.tmp-PID-…`, its process gone) is removed by the next backup to `out`.
///
/// # Errors
/// [`CaError::MissingDatabase`], [`CaError::Database`], [`CaError::Store`], [`CaError::Io`], or
/// [`crate::pki::PkiError::AlreadyExists`] when `out` exists.
pub fn backup_sqlite(dir: &Path, issuer: &str, out: &Path) -> Result<(), CaError> {
    let exists = || crate::pki::PkiError::AlreadyExists { path: out.into() }.into();
    if out.symlink_metadata().is_ok() {
        return Err(exists());
    }
    if out.file_name().is_none() {
        return Err(CaError::invalid("--out", "give a file name"));
    }
    let store = SqliteStore::open(dir, issuer)?;
    let file = fsutil::AtomicFile::create_new(out, fsutil::PRIVATE_MODE)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => exists(),
            _ => CaError::io(out, e),
        })?
        .with_sqlite_companions();
    let temp = file
        .temporary_path()
        .ok_or_else(|| CaError::invalid("--out", "give a regular file"))?
        .to_path_buf();
    let temp_text = temp
        .to_str()
        .ok_or_else(|| CaError::invalid("--out", "the path must be UTF-8"))?;
    store
        .conn
        .execute("VACUUM INTO ?1", params![temp_text])
        .map_err(|e| copy_error(&store.path, out, e))?;
    // The copy must open as this CA's store.
    check_file(&temp)?;
    let mut copy = connect(&temp, false)?;
    migrate(&mut copy, &temp, false)?;
    copy.close().map_err(|(_, e)| database_error(&temp, e))?;
    // A hard link refuses to replace a file that appeared meanwhile.
    file.commit(false).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists(),
        _ => CaError::io(out, e),
    })
}

/// Why `VACUUM INTO` failed: the store's error, or, for a failure to write (SQLite reports
/// an `EFBIG` or `ENOSPC` from a write as a bare I/O error or "disk full"), one naming `out`
/// and the process's file size limit when it has one. An I/O error under such a limit is
/// taken for `EFBIG` (file too large), so that the tool's hint says what to do about it.
fn copy_error(store: &Path, out: &Path, e: rusqlite::Error) -> CaError {
    let code = e.sqlite_error_code();
    if !matches!(
        code,
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull | ErrorCode::CannotOpen)
    ) {
        return database_error(store, e);
    }
    match fsutil::file_size_limit() {
        Some(limit) if code == Some(ErrorCode::SystemIoFailure) => CaError::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("cannot write the copy: {e} (this process may write files of at most {limit} bytes)"),
            ),
        ),
        _ => CaError::io(out, std::io::Error::other(format!("cannot write the copy: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_truncated_file_is_refused_before_sqlite_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SqliteStore::open(dir.path(), "aa"),
            Err(CaError::MissingDatabase { .. })
        ));
        assert!(!dir.path().join(SQLITE_FILE).exists(), "never created by open");
        SqliteStore::create(dir.path(), "aa").unwrap();
        let mut store = SqliteStore::open(dir.path(), "aa").unwrap();
        assert_eq!(store.crl_summary().unwrap(), CrlSummary { number: 0, revoked: 0 });
        drop(store);
        let whole = std::fs::read(dir.path().join(SQLITE_FILE)).unwrap();
        assert!(whole.len() > 4096, "{}", whole.len());
        for (bytes, words) in [
            (&b""[..], "the file is empty"),
            (&whole[..50], "truncated"),
            (&whole[..whole.len() - 1024], "truncated"),
            (&b"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789xx"[..], "not an SQLite database"),
        ] {
            std::fs::write(dir.path().join(SQLITE_FILE), bytes).unwrap();
            let err = SqliteStore::open(dir.path(), "aa").err().unwrap();
            assert!(
                matches!(err, CaError::Database { .. }) && err.to_string().contains(words),
                "{words}: {err}"
            );
        }
        // A valid but empty SQLite database is not a fresh store either.
        std::fs::remove_file(dir.path().join(SQLITE_FILE)).unwrap();
        Connection::open(dir.path().join(SQLITE_FILE))
            .unwrap()
            .execute_batch("CREATE TABLE t (x); DROP TABLE t; VACUUM;")
            .unwrap();
        let err = SqliteStore::open(dir.path(), "aa").err().unwrap();
        assert!(err.to_string().contains("no schema"), "{err}");
    }

    #[test]
    fn another_cas_store_and_a_newer_schema_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::create(dir.path(), "aa").unwrap();
        let err = SqliteStore::open(dir.path(), "bb").err().unwrap();
        assert!(err.to_string().contains("belongs to another CA"), "{err}");
        Connection::open(dir.path().join(SQLITE_FILE))
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
                [],
            )
            .unwrap();
        let err = SqliteStore::open(dir.path(), "aa").err().unwrap();
        assert!(err.to_string().contains("newer than this Tessera knows"), "{err}");
    }
}
