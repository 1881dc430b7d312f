//! The CA's state store: every certificate a CA hands out, its revocation state, and the CRL
//! number, in a real database.
//!
//! One interface, [`Store`], with two implementations:
//! - SQLite in `DIR/ca.db` (the embedded default: nothing to install or start). WAL mode, a busy
//!   timeout, and one transaction per change, so several `ca` processes on one machine can run
//!   at once without a lock file of ours;
//! - PostgreSQL (`--db postgres://USER@HOST:PORT/DB`), shared by several CA instances.
//!
//! Each change is one transaction, named for what it guarantees: [`Store::issue`] (insert if the
//! serial is free), [`Store::revoke_once`] (one conditional `UPDATE … WHERE status = 'good'`:
//! of concurrent revokers exactly one wins, and the CRL number advances in the same transaction
//! that reads the revoked set) and [`Store::advance_crl_number`].
//!
//! The state of `ca serve` (ACME accounts, orders, authorizations, challenges, nonces, leases
//! and the published CRL) is in the same database, per CA, behind [`acme::AcmeStore`]
//! ([`Store::acme`]); schema version 2.
//!
//! The CA directory records which store it has (`DIR/store.json`, written by `ca init` before
//! `ca.pem`), so a missing or damaged store is refused, never taken for a fresh CA. A directory
//! made by an earlier Tessera (`db.json`) is imported once, atomically (see [`open`]). An SQLite
//! store moves into PostgreSQL with [`move_to_postgres`] (`ca move-store`).

pub mod acme;
mod acme_sql;
mod migrate;
mod postgres;
mod postgres_acme;
mod redact;
mod sqlite;
mod sqlite_acme;
mod transfer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CaError;
use super::record::{Record, Revocation, Status};
use crate::fsutil;
use crate::pki::{RevocationReason, Serial, SubjectAltName};

pub(crate) use redact::redact;
pub use sqlite::backup_sqlite;
pub use transfer::{MoveReport, move_to_postgres};

/// The SQLite store's file inside a CA directory.
pub const SQLITE_FILE: &str = "ca.db";
/// The file that records which store a CA directory has.
pub const STORE_FILE: &str = "store.json";
/// What the legacy `db.json` is renamed to once imported.
pub const IMPORTED_JSON: &str = "db.json.imported";

/// Where a CA's state lives. Its `Debug` shows a PostgreSQL URL without its password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded default: `DIR/ca.db`.
    Sqlite,
    /// A PostgreSQL database, by connection URL (`postgres://USER@HOST:PORT/DB`).
    Postgres(String),
}

impl Location {
    /// The location named by `--db` (or `TESSERA_DB`): a `postgres://` or `postgresql://` URL,
    /// or `sqlite` for the embedded default.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `--db`) for anything else.
    pub fn parse(text: &str) -> Result<Self, CaError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("sqlite") {
            return Ok(Self::Sqlite);
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<::postgres::Config>().map_err(|e| {
                // The parser's message may quote a name it read where a password was meant
                // (`?password=a&b=c`: "unknown option `b`"): only names shown anyway stay.
                let shown = redact(text);
                let problem = redact::quoted_names_shown(&crate::pki::error_chain(&e), &shown);
                CaError::invalid("--db", format!("{shown} is not a usable PostgreSQL URL: {problem}"))
            })?;
            return Ok(Self::Postgres(text.to_string()));
        }
        Err(CaError::invalid(
            "--db",
            format!(
                "{:?} is not a store: use postgres://USER@HOST:PORT/DB, or sqlite for DIR/ca.db",
                redact(text)
            ),
        ))
    }

    fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("Sqlite"),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
        }
    }
}

/// What `DIR/store.json` says.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Marker {
    /// `sqlite` or `postgres`.
    backend: String,
}

/// One revoked certificate, as a CRL lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial.
    pub serial: Serial,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// A CRL number and the revoked set it stands for, read in the transaction that handed the
/// number out: a CRL signed from it lists every revocation recorded before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlState {
    /// The CRL number, handed out to this caller alone.
    pub number: u64,
    /// Every revoked certificate, by serial.
    pub revoked: Vec<RevokedEntry>,
}

/// The CRL number last handed out and how many certificates are revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrlSummary {
    /// The last CRL number handed out (0: none yet).
    pub number: u64,
    /// How many certificates are revoked.
    pub revoked: u64,
}

/// What [`Store::revoke_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// This call revoked it; the CRL state includes it.
    Revoked(CrlState),
    /// It was revoked before (by this or another process): the recorded revocation.
    AlreadyRevoked(Revocation),
    /// No certificate with this serial.
    Unknown,
}

/// Which records `ca list` wants.
#[derive(Clone, Debug)]
pub struct ListFilter {
    /// Only records with this status at `now`.
    pub status: Option<Status>,
    /// Only unrevoked records whose notAfter is between `now` and `now + DUR`.
    pub expiring_within: Option<Duration>,
    /// At most this many (newest first).
    pub limit: Option<u64>,
    /// The time statuses are taken at.
    pub now: OffsetDateTime,
}

impl ListFilter {
    /// Every record, newest first.
    pub fn all(now: OffsetDateTime) -> Self {
        Self {
            status: None,
            expiring_within: None,
            limit: None,
            now,
        }
    }

    /// The `not_after` bounds (Unix seconds) the filter implies: (after or at, before or at).
    fn expiry_bounds(&self) -> (i64, i64) {
        let now = self.now.unix_timestamp();
        let mut low = i64::MIN;
        let mut high = i64::MAX;
        match self.status {
            Some(Status::Valid) => low = now,
            Some(Status::Expired) => high = now.saturating_sub(1),
            _ => {}
        }
        if let Some(within) = self.expiring_within {
            low = low.max(now);
            let secs = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
            high = high.min(now.saturating_add(secs));
        }
        (low, high)
    }

    /// `Some("good")`/`Some("revoked")` to filter on, `None` for any.
    fn status_column(&self) -> Option<&'static str> {
        match self.status {
            Some(Status::Revoked) => Some("revoked"),
            Some(Status::Valid | Status::Expired) => Some("good"),
            None if self.expiring_within.is_some() => Some("good"),
            None => None,
        }
    }

    fn limit(&self) -> i64 {
        self.limit.and_then(|n| i64::try_from(n).ok()).unwrap_or(i64::MAX)
    }
}

/// The key to a store's write transactions ([`Store::issue`], [`Store::revoke_once`],
/// [`Store::advance_crl_number`]). Only the CA's own issuance, revocation and CRL code can make
/// one, so a library user cannot record a certificate without issuing it, mark one revoked
/// without a CRL, or use up CRL numbers: those go through [`super::CertificateAuthority`].
#[derive(Clone, Copy, Debug)]
pub struct WriteAccess(());

impl WriteAccess {
    /// For the CA's issuance, revocation and CRL code (and, through `tessera::internal`, the
    /// store's own tests).
    pub(crate) const fn granted() -> Self {
        Self(())
    }
}

/// A CA's state store, for one issuer (the CA whose certificate has the fingerprint given when
/// it was opened). Every method is one transaction. The write transactions need a
/// [`WriteAccess`], which only the CA holds: a library user reads the store ([`Store::find`],
/// [`Store::list`], [`Store::crl_summary`]) and changes it through
/// [`super::CertificateAuthority`].
pub trait Store: Send {
    /// Where the store is, for messages (a path, or a URL without password).
    fn describe(&self) -> String;

    /// Makes sure the store's connection is usable before an operation: a PostgreSQL
    /// connection that is known to be closed (an earlier operation failed on it: the server
    /// restarted, the backend was terminated, the network failed) is replaced by a new one, and
    /// one that has been idle for more than 100 ms is first checked with an empty query (one
    /// round trip) and replaced if it fails, so that an operation does not start on a
    /// connection that is already gone. Reconnecting is retried with a backoff (200 ms,
    /// doubling to 5 s): within it, this fails at once. SQLite has no connection to lose: a
    /// no-op.
    ///
    /// An operation that fails midway because the connection broke is not retried: it may have
    /// committed. Its error is returned; the next call here reconnects.
    ///
    /// # Errors
    /// [`CaError::Store`] when the connection is lost and a new one cannot be made (yet).
    fn ensure_connected(&mut self) -> Result<(), CaError> {
        Ok(())
    }

    /// `issue`: records a new certificate if its serial is free (`INSERT … ON CONFLICT DO
    /// NOTHING RETURNING`). Returns false when the serial is taken: sign again with another.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    #[doc(hidden)]
    fn issue(&mut self, record: &Record, access: WriteAccess) -> Result<bool, CaError>;

    /// The ACME state, leases and published CRL of this CA, in the same database and on the
    /// same connection (see [`acme::AcmeStore`]).
    fn acme(&mut self) -> &mut dyn acme::AcmeStore;

    /// `revoke_once`: marks the certificate revoked if it is not (`UPDATE … WHERE status =
    /// 'good'`); in the same transaction advances the CRL number and reads the revoked set.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    #[doc(hidden)]
    fn revoke_once(
        &mut self,
        serial: &Serial,
        at: OffsetDateTime,
        reason: RevocationReason,
        access: WriteAccess,
    ) -> Result<RevokeOutcome, CaError>;

    /// `advance_crl_number`: hands out the next CRL number and reads the revoked set, in one
    /// transaction.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails or the number cannot go higher.
    #[doc(hidden)]
    fn advance_crl_number(&mut self, access: WriteAccess) -> Result<CrlState, CaError>;

    /// The last CRL number handed out and how many certificates are revoked.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn crl_summary(&mut self) -> Result<CrlSummary, CaError>;

    /// The last CRL number handed out (0: none yet): [`Store::crl_summary`] without counting
    /// the revoked certificates, so its cost does not grow with them.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn crl_number(&mut self) -> Result<u64, CaError>;

    /// The record with this serial.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails or the record is damaged.
    fn find(&mut self, serial: &Serial) -> Result<Option<Record>, CaError>;

    /// Calls `each` with every record that matches, newest first, without loading them all.
    /// Stops at the first error `each` returns.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails, or `each`'s error.
    fn list(&mut self, filter: &ListFilter, each: &mut dyn FnMut(Record) -> Result<(), CaError>)
    -> Result<(), CaError>;
}

/// Opens the store of the CA in `dir` (whose certificate has SHA-256 fingerprint `issuer`).
/// `wanted` is what `--db`/`TESSERA_DB` asked for (`None`: what the directory records).
///
/// A directory made by an earlier Tessera (a `db.json`, no `store.json`) is imported first,
/// once and atomically, into the store `wanted` names: into SQLite, the records and the CRL
/// number are written to a temporary database that is renamed to `ca.db`; into PostgreSQL, in
/// one transaction (an instance that finds the CA already imported with the same serials and
/// CRL number goes on). Then `store.json` is written and `db.json` renamed to
/// `db.json.imported`. An interrupted import is redone by the next command.
///
/// # Errors
/// [`CaError::MissingDatabase`] when the store is missing, [`CaError::Database`] when it is
/// damaged, of an unknown schema version or another CA's, [`CaError::Store`] when PostgreSQL
/// cannot be reached or `--db` contradicts the directory.
pub fn open(dir: &Path, issuer: &str, wanted: Option<&Location>) -> Result<Box<dyn Store>, CaError> {
    let recorded = match read_marker(dir)? {
        Some(marker) => marker,
        None => {
            if dir.join(super::legacy::DATABASE_FILE).exists() {
                import_legacy(dir, issuer, wanted)?
            } else {
                return Err(CaError::Database {
                    path: dir.join(STORE_FILE),
                    reason: "it is missing, so this CA directory no longer says which store holds its state \
                             (restore it: {\"backend\": \"sqlite\"} for DIR/ca.db, or \"postgres\")"
                        .into(),
                });
            }
        }
    };
    finish_import(dir);
    match (recorded.backend.as_str(), wanted) {
        ("sqlite", None | Some(Location::Sqlite)) => Ok(Box::new(sqlite::SqliteStore::open(dir, issuer)?)),
        ("postgres", Some(Location::Postgres(url))) => Ok(Box::new(postgres::PostgresStore::open(url, issuer)?)),
        ("postgres", _) => Err(CaError::WrongStore {
            store: dir.join(STORE_FILE).display().to_string(),
            reason: "this CA keeps its state in PostgreSQL; give its URL with --db (or TESSERA_DB)".into(),
            fix: "give every ca command on this CA --db postgres://USER@HOST:PORT/DB (or set TESSERA_DB) \
                  naming the database it keeps its state in; nothing was changed"
                .into(),
        }),
        ("sqlite", Some(Location::Postgres(url))) => Err(CaError::WrongStore {
            store: redact(url),
            reason: format!(
                "the CA in {} keeps its state in {SQLITE_FILE} (SQLite), not in PostgreSQL",
                dir.display()
            ),
            fix: "leave out --db (and unset TESSERA_DB) for this CA, or move its state into \
                  PostgreSQL first with `ca --db URL move-store`; nothing was changed"
                .into(),
        }),
        (other, _) => Err(CaError::Database {
            path: dir.join(STORE_FILE),
            reason: format!("unknown store backend {other:?}"),
        }),
    }
}

/// Opens the store of the CA in `dir`, as [`open`], taking the CA's fingerprint from
/// `DIR/ca.pem` (for commands that need no key: `ca list`, and the check made before a
/// passphrase is asked for).
///
/// # Errors
/// [`CaError::NotACa`], and as [`open`].
pub fn open_dir(dir: &Path, wanted: Option<&Location>) -> Result<Box<dyn Store>, CaError> {
    let (certificate, _) = super::read_ca_certificates(dir)?;
    let issuer = crate::pki::CertificateInfo::from_der(&certificate)?.sha256_fingerprint;
    open(dir, &issuer, wanted)
}

/// `ca backup`: a consistent copy of the SQLite store of the CA in `dir`, taken while other
/// processes use it (see [`backup_sqlite`]). A PostgreSQL store is backed up with `pg_dump`.
///
/// # Errors
/// [`CaError::Store`] for a PostgreSQL store, and as [`backup_sqlite`].
pub fn backup(dir: &Path, wanted: Option<&Location>, out: &Path) -> Result<(), CaError> {
    let (certificate, _) = super::read_ca_certificates(dir)?;
    let issuer = crate::pki::CertificateInfo::from_der(&certificate)?.sha256_fingerprint;
    // Opening checks the store (and imports a legacy db.json) first.
    drop(open(dir, &issuer, wanted)?);
    match read_marker(dir)? {
        Some(marker) if marker.backend == "sqlite" => backup_sqlite(dir, &issuer, out),
        _ => Err(CaError::Store {
            store: dir.join(STORE_FILE).display().to_string(),
            reason: "this CA keeps its state in PostgreSQL: back it up with pg_dump (see docs/ca.md)".into(),
        }),
    }
}

/// Creates the empty store of a new CA in `dir` and records it in `DIR/store.json` (before
/// `ca.pem` is written). Returns the files it wrote, for removal if `init` fails later.
///
/// # Errors
/// [`CaError::UnfinishedInit`] when `DIR/ca.db` exists, [`CaError::Store`] when PostgreSQL
/// cannot be reached or already holds this CA, I/O errors.
pub fn create(dir: &Path, issuer: &str, location: &Location) -> Result<Vec<PathBuf>, CaError> {
    let mut written = Vec::new();
    match location {
        Location::Sqlite => {
            sqlite::SqliteStore::create(dir, issuer)?;
            written.push(dir.join(SQLITE_FILE));
        }
        Location::Postgres(url) => postgres::PostgresStore::create(url, issuer)?,
    }
    write_marker(dir, location)?;
    written.push(dir.join(STORE_FILE));
    Ok(written)
}

fn write_marker(dir: &Path, location: &Location) -> Result<(), CaError> {
    let path = dir.join(STORE_FILE);
    let marker = Marker {
        backend: location.backend().into(),
    };
    let mut bytes = serde_json::to_vec_pretty(&marker).map_err(|e| CaError::Database {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    fsutil::write_atomic(&path, &bytes, fsutil::PRIVATE_MODE).map_err(|e| CaError::io(path, e))
}

fn read_marker(dir: &Path) -> Result<Option<Marker>, CaError> {
    let path = dir.join(STORE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CaError::io(path, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| CaError::Database {
        path,
        reason: format!("it does not say which store the CA has ({e})"),
    })
}

/// An exclusive lock on the CA directory itself (flock on the directory, no file of ours),
/// serialising what happens to the CA's files beside the store: `crl.pem` is replaced only by a
/// CRL with a higher number, leftovers of interrupted issues are told from files being written,
/// and a legacy `db.json` is imported once.
pub(crate) struct DirLock {
    _dir: std::fs::File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self, CaError> {
        let file = crate::fsutil::lock_dir(dir).map_err(|e| CaError::io(dir, e))?;
        Ok(Self { _dir: file })
    }
}

/// Imports `DIR/db.json` into a new SQLite store (see [`open`]); returns the new marker.
fn import_legacy(dir: &Path, issuer: &str, wanted: Option<&Location>) -> Result<Marker, CaError> {
    let _lock = DirLock::acquire(dir)?;
    if let Some(marker) = read_marker(dir)? {
        // Another process imported it while we waited.
        return Ok(marker);
    }
    let legacy = crate::ca::legacy::Database::load(dir)?;
    legacy.check_owner(dir, issuer)?;
    let location = match wanted {
        Some(Location::Postgres(url)) => {
            postgres::PostgresStore::import(url, issuer, &legacy)?;
            Location::Postgres(url.clone())
        }
        None | Some(Location::Sqlite) => {
            sqlite::SqliteStore::import(dir, issuer, &legacy)?;
            Location::Sqlite
        }
    };
    write_marker(dir, &location)?;
    tracing::info!(
        dir = %dir.display(),
        records = legacy.records.len(),
        backend = location.backend(),
        "imported db.json"
    );
    read_marker(dir)?.ok_or_else(|| CaError::Database {
        path: dir.join(STORE_FILE),
        reason: "it vanished right after it was written".into(),
    })
}

/// After an import: `db.json` is renamed `db.json.imported` (kept, never deleted), and the old
/// lock file removed. Safe to repeat; failures only leave the old files in place.
fn finish_import(dir: &Path) {
    let json = dir.join(super::legacy::DATABASE_FILE);
    if json.exists() {
        let imported = dir.join(IMPORTED_JSON);
        if imported.exists() {
            // A second db.json after an import: keep both, under distinct names.
            let stamp = OffsetDateTime::now_utc().unix_timestamp();
            let _ = std::fs::rename(&json, dir.join(format!("{IMPORTED_JSON}.{stamp}")));
        } else {
            let _ = std::fs::rename(&json, imported);
        }
        let _ = fsutil::sync_parent(&json);
    }
    let _ = std::fs::remove_file(dir.join("db.lock"));
}

/// The SANs column: a JSON array of names as shown (`["dns:a.test", "ip:10.0.0.1"]`).
fn sans_to_text(sans: &[SubjectAltName]) -> String {
    serde_json::to_string(sans).unwrap_or_else(|_| "[]".into())
}

fn sans_from_text(text: &str, serial: &str, store: &str) -> Result<Vec<SubjectAltName>, CaError> {
    serde_json::from_str(text).map_err(|e| CaError::Store {
        store: store.into(),
        reason: format!("the record of certificate {serial} is damaged: its SANs do not parse ({e})"),
    })
}

/// A serial column as stored (lowercase hex). A record whose serial is not hex is damaged: an
/// error naming the store and the record, never a different serial.
fn serial_from(text: &str, store: &str) -> Result<Serial, CaError> {
    text.parse().map_err(|e| CaError::Store {
        store: store.into(),
        reason: format!("the record of certificate {text:?} is damaged: {e}"),
    })
}

/// A revocation reason column as stored (`key-compromise`, …).
fn reason_from(text: &str, serial: &str, store: &str) -> Result<RevocationReason, CaError> {
    text.parse().map_err(|e| CaError::Store {
        store: store.into(),
        reason: format!("the record of certificate {serial} is damaged: {e}"),
    })
}

/// One revoked certificate as the CRL queries read it.
fn revoked_entry(serial: &str, at: i64, reason: &str, store: &str) -> Result<RevokedEntry, CaError> {
    Ok(RevokedEntry {
        serial: serial_from(serial, store)?,
        at: time_from(at, store)?,
        reason: reason_from(reason, serial, store)?,
    })
}

fn time_from(unix: i64, store: &str) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| CaError::Store {
        store: store.into(),
        reason: format!("a record has an impossible time ({unix})"),
    })
}

fn crl_number_from(value: i64, store: &str) -> Result<u64, CaError> {
    u64::try_from(value).map_err(|_| CaError::Store {
        store: store.into(),
        reason: format!("the CRL number {value} is negative"),
    })
}

/// The raw columns of one certificate row, as both backends read them.
struct Row {
    serial: String,
    subject: String,
    sans: String,
    profile: String,
    not_before: i64,
    not_after: i64,
    issued_at: i64,
    revoked_at: Option<i64>,
    reason: Option<String>,
    der: Vec<u8>,
}

impl Row {
    fn into_record(self, store: &str) -> Result<Record, CaError> {
        let revoked = match (self.revoked_at, &self.reason) {
            (Some(at), Some(reason)) => Some(Revocation {
                at: time_from(at, store)?,
                reason: reason_from(reason, &self.serial, store)?,
            }),
            _ => None,
        };
        Ok(Record {
            sans: sans_from_text(&self.sans, &self.serial, store)?,
            serial: serial_from(&self.serial, store)?,
            subject: self.subject,
            profile: self.profile,
            not_before: time_from(self.not_before, store)?,
            not_after: time_from(self.not_after, store)?,
            issued_at: time_from(self.issued_at, store)?,
            revoked,
            certificate: crate::pki::pem::to_pem(crate::pki::pem::CERTIFICATE, &self.der),
        })
    }
}

/// The DER of a record's certificate.
fn record_der(record: &Record, store: &str) -> Result<Vec<u8>, CaError> {
    crate::pki::pem::parse_certificates(record.certificate.as_bytes(), "record")
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .map(|der| der.to_vec())
        .ok_or_else(|| CaError::Store {
            store: store.into(),
            reason: format!("certificate {} has no readable PEM", record.serial),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_messages_and_debug_never_show_a_password() {
        // Refused as no store, or as an unusable URL: the message shows what was given, masked.
        for (given, words) in [
            ("host=127.0.0.1 password=S3cret dbname=ca", "password=***"),
            ("postgres://ca@127.0.0.1:99999/x?password=S3cret", "password=***"),
            ("mysql://ca:S3cret@h/x", "not a store"),
            ("postgres://ca:S3/cret@h:notaport/x", "postgres://ca:***@h:notaport/x"),
            ("postgres://ca:S3cret", "postgres://ca:***"),
            // tokio-postgres reads "S3" as the password and "cret" as an unknown option.
            ("postgres://ca@h/x?password=S3&cret=1", "unknown option `…`"),
            ("postgres://ca@h/x?password=S3&%63ret=1", "unknown option `…`"),
        ] {
            let err = Location::parse(given).unwrap_err().to_string();
            assert!(!err.contains("S3") && !err.contains("cret"), "{given}: {err}");
            assert!(err.contains(words), "{given}: {err}");
        }
        // A name the user wrote outside a password is quoted back.
        let err = Location::parse("postgres://ca@h/x?sslmod=require")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option `sslmod`"), "{err}");
        assert_eq!(Location::parse("sqlite").unwrap(), Location::Sqlite);
        let location = Location::parse("postgres://u:S3cret@127.0.0.1:1/d").unwrap();
        assert!(matches!(location, Location::Postgres(_)));
        assert_eq!(format!("{location:?}"), "Postgres(\"postgres://u:***@127.0.0.1:1/d\")");
    }

    #[test]
    fn list_filters_become_expiry_bounds() {
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let mut filter = ListFilter::all(now);
        assert_eq!(filter.expiry_bounds(), (i64::MIN, i64::MAX));
        assert_eq!(filter.status_column(), None);
        filter.status = Some(Status::Expired);
        assert_eq!(filter.expiry_bounds(), (i64::MIN, 999));
        filter.status = Some(Status::Valid);
        filter.expiring_within = Some(Duration::from_secs(60));
        assert_eq!(filter.expiry_bounds(), (1_000, 1_060));
        assert_eq!(filter.status_column(), Some("good"));
        filter.expiring_within = Some(Duration::MAX);
        assert_eq!(filter.expiry_bounds(), (1_000, i64::MAX));
    }
}
