//! The PostgreSQL store, shared by several CA instances: the same tables as SQLite, `READ
//! COMMITTED` transactions whose row locks give the guarantees (a conditional `UPDATE` waits for
//! a concurrent one on the same row and then finds it no longer `good`; the CRL number row is
//! locked by the `UPDATE` that advances it, so the revoked set read after it includes every
//! revocation that took a lower number).
//!
//! The connection is made without TLS (`NoTls`): use a loopback address or a Unix socket
//! (`host=/run/postgresql`), or a network the CA trusts. No TLS stack is linked for PostgreSQL.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, GenericClient, NoTls, Transaction};
use time::OffsetDateTime;

use super::migrate;
use super::{CrlState, CrlSummary, ListFilter, RevokeOutcome, Row, Store, WriteAccess, redact};
use crate::ca::CaError;
use crate::ca::record::{Record, Revocation};
use crate::pki::{RevocationReason, Serial};

/// How long connecting may take before the store counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one statement may run, waits for locks included (PostgreSQL's
/// `statement_timeout`): under `ca serve`'s request timeout (30 s) and a balancer's.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The advisory lock that serialises migrations between instances starting at once.
const MIGRATION_LOCK: i64 = 0x7465_7373_6572_6131; // "tessera1"

const COLUMNS: &str =
    "serial, subject, sans, profile, not_before, not_after, issued_at, revoked_at, revocation_reason, der";

/// A connection idle for longer than this is checked (an empty query, one round trip) before
/// it is used: a server restart or a terminated backend is noticed before an operation starts.
/// The client reads what the server sent (its FATAL message, the closed socket) only when
/// asked, so a connection used within this time is trusted.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// How long the idle check may take before the connection counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait after a failed reconnection; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A CA's PostgreSQL store, for one issuer.
pub(crate) struct PostgresStore {
    pub(super) client: Client,
    pub(super) issuer: String,
    pub(super) url: String,
    /// When [`Store::ensure_connected`] last handed the connection out.
    last_used: Instant,
    /// After a failed reconnection: no new attempt before this, the wait that led to it, and
    /// why the attempt failed.
    reconnect: Option<(Instant, Duration, String)>,
    /// Why the connection counts as lost although the client is not closed (it failed the
    /// idle check): it is not used again.
    lost: Option<String>,
}

impl PostgresStore {
    /// Connects, applies pending migrations, and checks that the database holds this CA.
    pub(crate) fn open(url: &str, issuer: &str) -> Result<Self, CaError> {
        let mut store = Self::connect(url, issuer)?;
        store.migrate(false)?;
        let found: Option<String> = store
            .client
            .query_opt("SELECT issuer FROM issuers WHERE issuer = $1", &[&store.issuer])
            .map_err(|e| store.fail(e))?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(|e| store.fail(e))?;
        if found.is_none() {
            return Err(CaError::Store {
                store: redact(url),
                reason: format!(
                    "it holds no CA whose certificate has fingerprint {issuer} (was this CA made with another --db?)"
                ),
            });
        }
        Ok(store)
    }

    /// Records a new CA (creating the schema if this is the first CA in the database).
    pub(crate) fn create(url: &str, issuer: &str) -> Result<(), CaError> {
        let mut store = Self::connect(url, issuer)?;
        store.migrate(true)?;
        let inserted = store
            .client
            .query_opt(
                "INSERT INTO issuers (issuer, crl_number, created_at) VALUES ($1, 0, $2) \
                 ON CONFLICT (issuer) DO NOTHING RETURNING issuer",
                &[&store.issuer, &OffsetDateTime::now_utc().unix_timestamp()],
            )
            .map_err(|e| store.fail(e))?;
        if inserted.is_none() {
            return Err(CaError::Store {
                store: redact(url),
                reason: format!("it already holds a CA whose certificate has fingerprint {issuer}"),
            });
        }
        Ok(())
    }

    /// Imports a `db.json` from an earlier Tessera into this database, in one transaction: the
    /// CA's row with the file's CRL number, and every record. Several instances importing their
    /// copies of one CA directory at once (or a command repeating an import that committed but
    /// did not finish) find the CA already there: that is accepted when the database holds
    /// exactly the file's serials and CRL number, refused otherwise.
    pub(crate) fn import(url: &str, issuer: &str, legacy: &crate::ca::legacy::Database) -> Result<(), CaError> {
        let mut store = Self::connect(url, issuer)?;
        store.migrate(true)?;
        let number = i64::try_from(legacy.crl_number).map_err(|_| CaError::Store {
            store: redact(url),
            reason: format!("the db.json's CRL number {} is too large", legacy.crl_number),
        })?;
        let target = store.describe();
        let url = store.url.clone();
        let mut tx = store.client.transaction().map_err(|e| fail(&url, &e))?;
        // One importer at a time for this CA: the others wait here, then compare.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&issuer])
            .map_err(|e| fail(&url, &e))?;
        let inserted = tx
            .query_opt(
                "INSERT INTO issuers (issuer, crl_number, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (issuer) DO NOTHING RETURNING issuer",
                &[&issuer, &number, &OffsetDateTime::now_utc().unix_timestamp()],
            )
            .map_err(|e| fail(&url, &e))?;
        if inserted.is_none() {
            let held: i64 = tx
                .query_one("SELECT crl_number FROM issuers WHERE issuer = $1", &[&issuer])
                .and_then(|row| row.try_get(0))
                .map_err(|e| fail(&url, &e))?;
            let mut serials: Vec<String> = tx
                .query("SELECT serial FROM certificates WHERE issuer = $1", &[&issuer])
                .and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
                .map_err(|e| fail(&url, &e))?;
            let mut expected: Vec<String> = legacy.records.iter().map(|r| r.serial.to_string()).collect();
            serials.sort_unstable();
            expected.sort_unstable();
            tx.commit().map_err(|e| fail(&url, &e))?;
            if held == number && serials == expected {
                return Ok(());
            }
            return Err(CaError::Store {
                store: target,
                reason: format!(
                    "it already holds this CA (fingerprint {issuer}) with other records than its db.json \
                     ({} records and CRL number {held} there, {} and {number} in the file)",
                    serials.len(),
                    expected.len()
                ),
            });
        }
        for record in &legacy.records {
            let der = super::record_der(record, &target)?;
            let revoked_at = record.revoked.as_ref().map(|r| r.at.unix_timestamp());
            let reason = record.revoked.as_ref().map(|r| r.reason.name());
            tx.execute(
                "INSERT INTO certificates (issuer, serial, subject, sans, profile, not_before, not_after, \
                 issued_at, status, revoked_at, revocation_reason, der) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &issuer,
                    &record.serial.to_string(),
                    &record.subject,
                    &super::sans_to_text(&record.sans),
                    &record.profile,
                    &record.not_before.unix_timestamp(),
                    &record.not_after.unix_timestamp(),
                    &record.issued_at.unix_timestamp(),
                    &if record.revoked.is_some() { "revoked" } else { "good" },
                    &revoked_at,
                    &reason,
                    &der,
                ],
            )
            .map_err(|e| fail(&url, &e))?;
        }
        tx.commit().map_err(|e| fail(&url, &e))
    }

    pub(super) fn connect(url: &str, issuer: &str) -> Result<Self, CaError> {
        let mut config: Config = url.parse().map_err(|e| CaError::Store {
            store: redact(url),
            reason: format!("not a usable PostgreSQL URL ({e})"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("tessera-ca");
        // Server-side bounds on every statement (a table locked by someone else, a stalled
        // query) so that a caller gets an error rather than waiting without end, and no NOTICE
        // (`CREATE … IF NOT EXISTS` skipping) on the tool's stderr. Options in the URL come first.
        let options = format!(
            "{} -c statement_timeout={} -c client_min_messages=warning",
            config.get_options().unwrap_or(""),
            STATEMENT_TIMEOUT.as_millis()
        );
        config.options(options.trim_start());
        let client = config.connect(NoTls).map_err(|e| CaError::Store {
            store: redact(url),
            reason: format!("cannot connect ({})", describe(&e)),
        })?;
        Ok(Self {
            client,
            issuer: issuer.to_string(),
            url: url.to_string(),
            last_used: Instant::now(),
            reconnect: None,
            lost: None,
        })
    }

    /// Replaces a lost connection, within the reconnection backoff.
    fn reconnect(&mut self, lost: &str) -> Result<(), CaError> {
        let now = Instant::now();
        if let Some((not_before, _, reason)) = &self.reconnect
            && now < *not_before
        {
            return Err(CaError::Store {
                store: redact(&self.url),
                reason: format!(
                    "the connection was lost ({lost}) and reconnecting failed ({reason}); next attempt in {} ms",
                    not_before.duration_since(now).as_millis()
                ),
            });
        }
        match Self::connect(&self.url, &self.issuer) {
            Ok(fresh) => {
                tracing::warn!(store = %redact(&self.url), lost, "the connection to the store was lost; reconnected");
                // The old client is already closed: dropping it sends nothing.
                self.client = fresh.client;
                self.last_used = now;
                self.reconnect = None;
                self.lost = None;
                Ok(())
            }
            Err(error) => {
                let reason = match &error {
                    CaError::Store { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                let wait = match &self.reconnect {
                    Some((_, wait, _)) => (*wait * 2).min(RECONNECT_MAX),
                    None => RECONNECT_FIRST,
                };
                tracing::warn!(store = %redact(&self.url), lost, error = %reason, retry_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "the connection to the store was lost; reconnecting failed");
                self.reconnect = Some((now + wait, wait, reason));
                Err(error)
            }
        }
    }

    fn fail(&self, e: postgres::Error) -> CaError {
        fail(&self.url, &e)
    }

    pub(super) fn migrate(&mut self, creating: bool) -> Result<(), CaError> {
        let url = self.url.clone();
        // Every command opens the store: a read first, the lock only when there is work.
        let applied: Option<Vec<i64>> = match self
            .client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .and_then(|row| row.try_get::<_, bool>(0))
        {
            Ok(true) => Some(
                self.client
                    .query("SELECT version FROM schema_migrations ORDER BY version", &[])
                    .and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
                    .map_err(|e| fail(&url, &e))?,
            ),
            Ok(false) => None,
            Err(e) => return Err(fail(&url, &e)),
        };
        if let Some(applied) = applied
            && matches!(migrate::pending(&applied), Ok(pending) if pending.is_empty())
        {
            return Ok(());
        }
        let mut tx = self.client.transaction().map_err(|e| fail(&url, &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| fail(&url, &e))?;
        let has_table: bool = tx
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .and_then(|row| row.try_get(0))
            .map_err(|e| fail(&url, &e))?;
        if !has_table && !creating {
            return Err(CaError::Store {
                store: redact(&url),
                reason: "it holds no CA store (no schema): a new CA's store is created by `ca init --db URL`, \
                         and an existing CA's store is in the database its `ca init` was given"
                    .into(),
            });
        }
        tx.batch_execute(migrate::CREATE_TABLE).map_err(|e| fail(&url, &e))?;
        let applied: Vec<i64> = tx
            .query("SELECT version FROM schema_migrations ORDER BY version", &[])
            .and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
            .map_err(|e| fail(&url, &e))?;
        let pending = migrate::pending(&applied).map_err(|reason| CaError::Store {
            store: redact(&url),
            reason,
        })?;
        for migration in pending {
            tx.batch_execute(migration.postgres).map_err(|e| fail(&url, &e))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[
                    &migration.version,
                    &migration.name,
                    &OffsetDateTime::now_utc().unix_timestamp(),
                ],
            )
            .map_err(|e| fail(&url, &e))?;
            tracing::info!(version = migration.version, name = migration.name, "applied migration");
        }
        tx.commit().map_err(|e| fail(&url, &e))
    }
}

impl Store for PostgresStore {
    fn describe(&self) -> String {
        redact(&self.url)
    }

    fn ensure_connected(&mut self) -> Result<(), CaError> {
        if let Some(lost) = self.lost.clone() {
            return self.reconnect(&lost);
        }
        if self.client.is_closed() {
            return self.reconnect("connection closed");
        }
        if self.last_used.elapsed() > IDLE_CHECK
            && let Err(e) = self.client.is_valid(CHECK_TIMEOUT)
        {
            // A connection that fails the check is not used again, closed or not: a half-broken
            // one could hang the next operation.
            let lost = describe(&e);
            self.lost = Some(lost.clone());
            return self.reconnect(&lost);
        }
        self.last_used = Instant::now();
        Ok(())
    }

    fn issue(&mut self, record: &Record, _: WriteAccess) -> Result<bool, CaError> {
        insert_certificate(&mut self.client, &self.issuer, record, &self.url)
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
        let url = self.url.clone();
        let mut tx = self.client.transaction().map_err(|e| fail(&url, &e))?;
        let changed = tx
            .query_opt(
                "UPDATE certificates SET status = 'revoked', revoked_at = $3, revocation_reason = $4 \
                 WHERE issuer = $1 AND serial = $2 AND status = 'good' RETURNING serial",
                &[&self.issuer, &serial, &at.unix_timestamp(), &reason],
            )
            .map_err(|e| fail(&url, &e))?;
        let outcome = if changed.is_some() {
            RevokeOutcome::Revoked(advance(&mut tx, &self.issuer, &url)?)
        } else {
            let existing = tx
                .query_opt(
                    "SELECT revoked_at, revocation_reason FROM certificates WHERE issuer = $1 AND serial = $2",
                    &[&self.issuer, &serial],
                )
                .map_err(|e| fail(&url, &e))?;
            match existing {
                Some(row) => match (
                    row.try_get::<_, Option<i64>>(0).map_err(|e| fail(&url, &e))?,
                    row.try_get::<_, Option<String>>(1).map_err(|e| fail(&url, &e))?,
                ) {
                    (Some(at), Some(reason)) => RevokeOutcome::AlreadyRevoked(Revocation {
                        at: super::time_from(at, &redact(&url))?,
                        reason: super::reason_from(&reason, &serial, &redact(&url))?,
                    }),
                    _ => {
                        return Err(CaError::Store {
                            store: redact(&url),
                            reason: format!("certificate {serial} is neither good nor revoked"),
                        });
                    }
                },
                None => RevokeOutcome::Unknown,
            }
        };
        tx.commit().map_err(|e| fail(&url, &e))?;
        Ok(outcome)
    }

    fn advance_crl_number(&mut self, _: WriteAccess) -> Result<CrlState, CaError> {
        let url = self.url.clone();
        let mut tx = self.client.transaction().map_err(|e| fail(&url, &e))?;
        let state = advance(&mut tx, &self.issuer, &url)?;
        tx.commit().map_err(|e| fail(&url, &e))?;
        Ok(state)
    }

    fn crl_summary(&mut self) -> Result<CrlSummary, CaError> {
        // One statement: one snapshot.
        let row = self
            .client
            .query_one(
                "SELECT crl_number, (SELECT COUNT(*) FROM certificates WHERE issuer = $1 AND status = 'revoked') \
                 FROM issuers WHERE issuer = $1",
                &[&self.issuer],
            )
            .map_err(|e| self.fail(e))?;
        let store = self.describe();
        Ok(CrlSummary {
            number: super::crl_number_from(row.try_get(0).map_err(|e| self.fail(e))?, &store)?,
            revoked: u64::try_from(row.try_get::<_, i64>(1).map_err(|e| self.fail(e))?).unwrap_or(0),
        })
    }

    fn crl_number(&mut self) -> Result<u64, CaError> {
        let row = self
            .client
            .query_one("SELECT crl_number FROM issuers WHERE issuer = $1", &[&self.issuer])
            .map_err(|e| self.fail(e))?;
        let store = self.describe();
        super::crl_number_from(row.try_get(0).map_err(|e| self.fail(e))?, &store)
    }

    fn find(&mut self, serial: &Serial) -> Result<Option<Record>, CaError> {
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE issuer = $1 AND serial = $2");
        let row = self
            .client
            .query_opt(&sql, &[&self.issuer, &serial.to_string()])
            .map_err(|e| self.fail(e))?;
        let store = self.describe();
        row.map(|r| read_row(&r).map_err(|e| self.fail(e))?.into_record(&store))
            .transpose()
    }

    fn list(
        &mut self,
        filter: &ListFilter,
        each: &mut dyn FnMut(Record) -> Result<(), CaError>,
    ) -> Result<(), CaError> {
        let (low, high) = filter.expiry_bounds();
        let store = self.describe();
        let url = self.url.clone();
        let sql = match filter.status_column() {
            None => format!(
                "SELECT {COLUMNS} FROM certificates WHERE issuer = $1 AND not_after BETWEEN $2 AND $3 \
                 ORDER BY id DESC LIMIT $4"
            ),
            Some("revoked") => format!(
                "SELECT {COLUMNS} FROM certificates WHERE issuer = $1 AND status = 'revoked' \
                 AND not_after BETWEEN $2 AND $3 ORDER BY id DESC LIMIT $4"
            ),
            Some(_) => format!(
                "SELECT {COLUMNS} FROM certificates WHERE issuer = $1 AND status = 'good' \
                 AND not_after BETWEEN $2 AND $3 ORDER BY id DESC LIMIT $4"
            ),
        };
        let limit = filter.limit();
        let params: [&(dyn postgres::types::ToSql + Sync); 4] = [&self.issuer, &low, &high, &limit];
        let mut rows = self
            .client
            .query_raw(&sql, params.iter().copied())
            .map_err(|e| fail(&url, &e))?;
        while let Some(row) = rows.next().map_err(|e| fail(&url, &e))? {
            each(read_row(&row).map_err(|e| fail(&url, &e))?.into_record(&store)?)?;
        }
        Ok(())
    }
}

/// Records a new certificate if its serial is free (`INSERT … ON CONFLICT DO NOTHING
/// RETURNING`), on the connection or inside the caller's transaction: false when it is taken.
pub(super) fn insert_certificate(
    client: &mut impl GenericClient,
    issuer: &str,
    record: &Record,
    url: &str,
) -> Result<bool, CaError> {
    let der = super::record_der(record, &redact(url))?;
    let inserted = client
        .query_opt(
            "INSERT INTO certificates (issuer, serial, subject, sans, profile, not_before, not_after, issued_at, \
             status, der) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'good', $9) \
             ON CONFLICT (issuer, serial) DO NOTHING RETURNING serial",
            &[
                &issuer,
                &record.serial.to_string(),
                &record.subject,
                &super::sans_to_text(&record.sans),
                &record.profile,
                &record.not_before.unix_timestamp(),
                &record.not_after.unix_timestamp(),
                &record.issued_at.unix_timestamp(),
                &der,
            ],
        )
        .map_err(|e| fail(url, &e))?;
    Ok(inserted.is_some())
}

/// Hands out the next CRL number (locking the issuer's row until commit) and reads the revoked
/// set after it, inside the caller's transaction.
fn advance(tx: &mut Transaction<'_>, issuer: &str, url: &str) -> Result<CrlState, CaError> {
    let number: i64 = tx
        .query_one(
            "UPDATE issuers SET crl_number = crl_number + 1 WHERE issuer = $1 RETURNING crl_number",
            &[&issuer],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| fail(url, &e))?;
    let store = redact(url);
    let rows = tx
        .query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = $1 AND status = 'revoked' ORDER BY serial",
            &[&issuer],
        )
        .map_err(|e| fail(url, &e))?;
    let mut revoked = Vec::with_capacity(rows.len());
    for row in rows {
        let get = |e: postgres::Error| fail(url, &e);
        let serial: String = row.try_get(0).map_err(get)?;
        let reason: String = row.try_get(2).map_err(get)?;
        revoked.push(super::revoked_entry(
            &serial,
            row.try_get(1).map_err(get)?,
            &reason,
            &store,
        )?);
    }
    Ok(CrlState {
        number: super::crl_number_from(number, &store)?,
        revoked,
    })
}

fn read_row(row: &postgres::Row) -> Result<Row, postgres::Error> {
    Ok(Row {
        serial: row.try_get(0)?,
        subject: row.try_get(1)?,
        sans: row.try_get(2)?,
        profile: row.try_get(3)?,
        not_before: row.try_get(4)?,
        not_after: row.try_get(5)?,
        issued_at: row.try_get(6)?,
        revoked_at: row.try_get(7)?,
        reason: row.try_get(8)?,
        der: row.try_get(9)?,
    })
}

/// A PostgreSQL error in words: the server's message when there is one, else the client's.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

pub(super) fn fail(url: &str, e: &postgres::Error) -> CaError {
    CaError::Store {
        store: redact(url),
        reason: describe(e),
    }
}
