//! [`AcmeStore`] on SQLite. SQLite has one writer at a time: each change is one statement, or
//! one `BEGIN IMMEDIATE` transaction when it reads before it writes, so a conditional change
//! is decided by exactly one process (the others wait up to the busy timeout, then see it
//! done).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::WriteAccess;
use super::acme::{
    Account, AcmeStore, Authorization, Challenge, Expired, Identifier, Lease, Order, PublishedCrl, Rekeyed,
};
use super::acme_sql as sql;
use super::sqlite::{SqliteStore, database_error, insert_certificate};
use crate::ca::{CaError, Record};
use crate::pki::Serial;

const ACCOUNT_COLUMNS: &str = "id, thumbprint, jwk, contact, status, created";
const ORDER_COLUMNS: &str = "id, account_id, status, identifiers, authorizations, expires, not_before, not_after, \
                             error, certificate, replaces, created";
const AUTHORIZATION_COLUMNS: &str = "id, order_id, account_id, kind, value, wildcard, status, expires";
const CHALLENGE_COLUMNS: &str = "id, kind, token, status, validated, error";

/// The raw columns of an account row.
type AccountRow = (String, String, String, String, String, i64);

fn read_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn account_from(row: AccountRow, store: &str) -> Result<Account, CaError> {
    let (id, thumbprint, jwk, contact, status, created) = row;
    Ok(Account {
        id,
        thumbprint,
        jwk,
        contact: sql::contact_from_text(&contact, store)?,
        status: sql::account_status_from(&status, store)?,
        created,
    })
}

/// The raw columns of an order row.
struct OrderRow {
    id: String,
    account_id: String,
    status: String,
    identifiers: String,
    authorizations: String,
    expires: i64,
    not_before: Option<i64>,
    not_after: Option<i64>,
    error: Option<String>,
    certificate: Option<String>,
    replaces: Option<String>,
    created: i64,
}

fn read_order(row: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        id: row.get(0)?,
        account_id: row.get(1)?,
        status: row.get(2)?,
        identifiers: row.get(3)?,
        authorizations: row.get(4)?,
        expires: row.get(5)?,
        not_before: row.get(6)?,
        not_after: row.get(7)?,
        error: row.get(8)?,
        certificate: row.get(9)?,
        replaces: row.get(10)?,
        created: row.get(11)?,
    })
}

fn order_from(row: OrderRow, store: &str) -> Result<Order, CaError> {
    Ok(Order {
        id: row.id,
        account_id: row.account_id,
        status: sql::order_status_from(&row.status, store)?,
        identifiers: sql::identifiers_from_text(&row.identifiers, store)?,
        authorizations: sql::ids_from_text(&row.authorizations, store)?,
        expires: row.expires,
        not_before: row.not_before,
        not_after: row.not_after,
        error: row.error,
        certificate: sql::serial_from(row.certificate, store)?,
        replaces: row.replaces,
        created: row.created,
    })
}

/// The raw columns of an authorization row.
type AuthorizationRow = (String, String, String, String, String, bool, String, i64);

fn read_authorization(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuthorizationRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

/// The raw columns of a challenge row.
type ChallengeRow = (String, String, String, String, Option<i64>, Option<String>);

fn read_challenge(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChallengeRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn challenge_from(row: ChallengeRow, store: &str) -> Result<Challenge, CaError> {
    let (id, kind, token, status, validated, error) = row;
    Ok(Challenge {
        id,
        kind,
        token,
        status: sql::challenge_status_from(&status, store)?,
        validated,
        error,
    })
}

/// The authorization `id` with its challenges, read on `conn` (a connection or a transaction).
fn load_authorization(
    conn: &Connection,
    issuer: &str,
    id: &str,
    path: &Path,
) -> Result<Option<Authorization>, CaError> {
    let store = path.display().to_string();
    let row = conn
        .query_row(
            &format!("SELECT {AUTHORIZATION_COLUMNS} FROM acme_authorizations WHERE issuer = ?1 AND id = ?2"),
            params![issuer, id],
            read_authorization,
        )
        .optional()
        .map_err(|e| database_error(path, e))?;
    let Some((id, order_id, account_id, kind, value, wildcard, status, expires)) = row else {
        return Ok(None);
    };
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {CHALLENGE_COLUMNS} FROM acme_challenges WHERE issuer = ?1 AND authorization_id = ?2 \
             ORDER BY ordinal"
        ))
        .map_err(|e| database_error(path, e))?;
    let rows = statement
        .query_map(params![issuer, id], read_challenge)
        .map_err(|e| database_error(path, e))?;
    let mut challenges = Vec::new();
    for row in rows {
        challenges.push(challenge_from(row.map_err(|e| database_error(path, e))?, &store)?);
    }
    Ok(Some(Authorization {
        id,
        order_id,
        account_id,
        identifier: Identifier { kind, value },
        wildcard,
        status: sql::authorization_status_from(&status, &store)?,
        expires,
        challenges,
    }))
}

/// Whether `lease` is the current grant of its name (same holder and token), inside the
/// caller's write transaction.
fn lease_is_current(conn: &Connection, issuer: &str, lease: &Lease, path: &Path) -> Result<bool, CaError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM acme_leases WHERE issuer = ?1 AND name = ?2 AND holder = ?3 AND token = ?4)",
        params![issuer, lease.name, lease.holder, lease.token],
        |row| row.get(0),
    )
    .map_err(|e| database_error(path, e))
}

impl SqliteStore {
    fn store_name(&self) -> String {
        self.path.display().to_string()
    }
}

impl AcmeStore for SqliteStore {
    fn nonce_put(&mut self, nonce: &str, expires: i64) -> Result<(), CaError> {
        self.conn
            .execute(
                "INSERT INTO acme_nonces (issuer, nonce, expires) VALUES (?1, ?2, ?3)",
                params![self.issuer, nonce, expires],
            )
            .map_err(|e| database_error(&self.path, e))?;
        Ok(())
    }

    fn nonce_take(&mut self, nonce: &str, now: i64) -> Result<bool, CaError> {
        let expires: Option<i64> = self
            .conn
            .query_row(
                "DELETE FROM acme_nonces WHERE issuer = ?1 AND nonce = ?2 RETURNING expires",
                params![self.issuer, nonce],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        Ok(expires.is_some_and(|expires| expires > now))
    }

    fn account_create(&mut self, account: &Account) -> Result<(Account, bool), CaError> {
        let inserted: Option<String> = self
            .conn
            .query_row(
                "INSERT INTO acme_accounts (issuer, id, thumbprint, jwk, contact, status, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (issuer, thumbprint) DO NOTHING RETURNING id",
                params![
                    self.issuer,
                    account.id,
                    account.thumbprint,
                    account.jwk,
                    sql::contact_to_text(&account.contact),
                    sql::account_status(account.status),
                    account.created,
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        if inserted.is_some() {
            return Ok((account.clone(), true));
        }
        match self.account_by_thumbprint(&account.thumbprint)? {
            Some(existing) => Ok((existing, false)),
            None => Err(sql::damaged(
                &self.store_name(),
                "an account's thumbprint was taken, yet no account holds it",
            )),
        }
    }

    fn account_by_thumbprint(&mut self, thumbprint: &str) -> Result<Option<Account>, CaError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM acme_accounts WHERE issuer = ?1 AND thumbprint = ?2"),
                params![self.issuer, thumbprint],
                read_account,
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        row.map(|r| account_from(r, &self.store_name())).transpose()
    }

    fn account(&mut self, id: &str) -> Result<Option<Account>, CaError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM acme_accounts WHERE issuer = ?1 AND id = ?2"),
                params![self.issuer, id],
                read_account,
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        row.map(|r| account_from(r, &self.store_name())).transpose()
    }

    fn account_update(&mut self, account: &Account) -> Result<(), CaError> {
        self.conn
            .execute(
                "UPDATE acme_accounts SET contact = ?3, status = ?4 WHERE issuer = ?1 AND id = ?2",
                params![
                    self.issuer,
                    account.id,
                    sql::contact_to_text(&account.contact),
                    sql::account_status(account.status),
                ],
            )
            .map_err(|e| database_error(&self.path, e))?;
        Ok(())
    }

    fn account_rekey(
        &mut self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<Rekeyed, CaError> {
        let path = self.path.clone();
        let fail = |e| database_error(&path, e);
        // One writer at a time: the check and the change see the same accounts.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let holder: Option<String> = tx
            .query_row(
                "SELECT id FROM acme_accounts WHERE issuer = ?1 AND thumbprint = ?2",
                params![self.issuer, new_thumbprint],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        if let Some(holder) = holder.filter(|holder| holder != id) {
            return Ok(Rekeyed::KeyInUse(holder));
        }
        let changed = tx
            .execute(
                "UPDATE acme_accounts SET thumbprint = ?4, jwk = ?5 \
                 WHERE issuer = ?1 AND id = ?2 AND thumbprint = ?3",
                params![self.issuer, id, old_thumbprint, new_thumbprint, new_jwk],
            )
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(if changed == 1 { Rekeyed::Done } else { Rekeyed::Stale })
    }

    fn order_create(&mut self, order: &Order, authorizations: &[Authorization]) -> Result<bool, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let fail = |e| database_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        // Insert-if-absent on the unique index of live orders' `replaces` (RFC 9773 §5).
        let inserted: Option<String> = tx
            .query_row(
                "INSERT INTO acme_orders (issuer, id, account_id, status, identifiers, authorizations, expires, \
                 not_before, not_after, error, certificate, replaces, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (issuer, replaces) WHERE replaces IS NOT NULL AND status <> 'invalid' DO NOTHING \
                 RETURNING id",
                params![
                    issuer,
                    order.id,
                    order.account_id,
                    sql::order_status(order.status),
                    sql::identifiers_to_text(&order.identifiers),
                    sql::ids_to_text(&order.authorizations),
                    order.expires,
                    order.not_before,
                    order.not_after,
                    order.error,
                    order.certificate.as_ref().map(Serial::to_string),
                    order.replaces,
                    order.created,
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        if inserted.is_none() {
            // Dropping the transaction rolls it back: nothing was written.
            return Ok(false);
        }
        for authorization in authorizations {
            tx.execute(
                "INSERT INTO acme_authorizations (issuer, id, order_id, account_id, kind, value, wildcard, status, \
                 expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    issuer,
                    authorization.id,
                    authorization.order_id,
                    authorization.account_id,
                    authorization.identifier.kind,
                    authorization.identifier.value,
                    authorization.wildcard,
                    sql::authorization_status(authorization.status),
                    authorization.expires,
                ],
            )
            .map_err(fail)?;
            for (ordinal, challenge) in authorization.challenges.iter().enumerate() {
                tx.execute(
                    "INSERT INTO acme_challenges (issuer, id, authorization_id, ordinal, kind, token, status, \
                     validated, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        issuer,
                        challenge.id,
                        authorization.id,
                        i64::try_from(ordinal).unwrap_or(i64::MAX),
                        challenge.kind,
                        challenge.token,
                        sql::challenge_status(challenge.status),
                        challenge.validated,
                        challenge.error,
                    ],
                )
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(true)
    }

    fn order(&mut self, id: &str) -> Result<Option<Order>, CaError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {ORDER_COLUMNS} FROM acme_orders WHERE issuer = ?1 AND id = ?2"),
                params![self.issuer, id],
                read_order,
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        row.map(|r| order_from(r, &self.store_name())).transpose()
    }

    fn order_by_certificate(&mut self, serial: &Serial) -> Result<Option<Order>, CaError> {
        let row = self
            .conn
            .query_row(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM acme_orders WHERE issuer = ?1 AND certificate = ?2 \
                     AND certificate IS NOT NULL"
                ),
                params![self.issuer, serial.to_string()],
                read_order,
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        row.map(|r| order_from(r, &self.store_name())).transpose()
    }

    fn orders_of_account(
        &mut self,
        account_id: &str,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<Order>, CaError> {
        // Without a cursor, one past every (created, id): created is never i64::MAX.
        let (created, id) = after.unwrap_or((i64::MAX, ""));
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM acme_orders WHERE issuer = ?1 AND account_id = ?2 \
                 AND status <> 'invalid' AND (created < ?3 OR (created = ?3 AND id < ?4)) \
                 ORDER BY created DESC, id DESC LIMIT ?5"
            ))
            .map_err(|e| database_error(&self.path, e))?;
        let rows = statement
            .query_map(params![self.issuer, account_id, created, id, limit], read_order)
            .map_err(|e| database_error(&self.path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| database_error(&self.path, e))?;
        let store = self.store_name();
        rows.into_iter().map(|r| order_from(r, &store)).collect()
    }

    fn authorization(&mut self, id: &str) -> Result<Option<Authorization>, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let tx = self.conn.transaction().map_err(|e| database_error(&path, e))?;
        let found = load_authorization(&tx, &issuer, id, &path)?;
        tx.commit().map_err(|e| database_error(&path, e))?;
        Ok(found)
    }

    fn authorization_deactivate(&mut self, id: &str) -> Result<bool, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let fail = |e| database_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let order: Option<String> = tx
            .query_row(
                "UPDATE acme_authorizations SET status = 'deactivated' \
                 WHERE issuer = ?1 AND id = ?2 AND status IN ('pending', 'valid') RETURNING order_id",
                params![issuer, id],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        if let Some(order) = &order {
            tx.execute(
                "UPDATE acme_orders SET status = 'invalid' \
                 WHERE issuer = ?1 AND id = ?2 AND status IN ('pending', 'ready')",
                params![issuer, order],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(order.is_some())
    }

    fn challenge(&mut self, id: &str) -> Result<Option<(Challenge, Authorization)>, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let store = self.store_name();
        let fail = |e| database_error(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let row: Option<(ChallengeRow, String)> = tx
            .query_row(
                &format!(
                    "SELECT {CHALLENGE_COLUMNS}, authorization_id FROM acme_challenges WHERE issuer = ?1 AND id = ?2"
                ),
                params![issuer, id],
                |row| Ok((read_challenge(row)?, row.get(6)?)),
            )
            .optional()
            .map_err(fail)?;
        let Some((challenge, authorization)) = row else {
            return Ok(None);
        };
        let challenge = challenge_from(challenge, &store)?;
        let authorization = load_authorization(&tx, &issuer, &authorization, &path)?
            .ok_or_else(|| sql::damaged(&store, format_args!("challenge {id} has no authorization")))?;
        tx.commit().map_err(fail)?;
        Ok(Some((challenge, authorization)))
    }

    fn challenge_claim(&mut self, id: &str, now: i64) -> Result<bool, CaError> {
        let claimed: Option<String> = self
            .conn
            .query_row(
                "UPDATE acme_challenges SET status = 'processing' \
                 WHERE issuer = ?1 AND id = ?2 AND status = 'pending' AND EXISTS ( \
                   SELECT 1 FROM acme_authorizations a WHERE a.issuer = ?1 \
                   AND a.id = acme_challenges.authorization_id AND a.status = 'pending' AND a.expires > ?3) \
                 RETURNING id",
                params![self.issuer, id, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        Ok(claimed.is_some())
    }

    fn challenge_finish(&mut self, id: &str, valid: bool, error: Option<&str>, now: i64) -> Result<(), CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let fail = |e| database_error(&path, e);
        let status = if valid { "valid" } else { "invalid" };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let authorization: Option<String> = tx
            .query_row(
                "UPDATE acme_challenges SET status = ?3, validated = ?4, error = ?5 \
                 WHERE issuer = ?1 AND id = ?2 AND status = 'processing' RETURNING authorization_id",
                params![
                    issuer,
                    id,
                    status,
                    if valid { Some(now) } else { None },
                    if valid { None } else { error }
                ],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        let order: Option<String> = match &authorization {
            Some(authorization) => tx
                .query_row(
                    "UPDATE acme_authorizations SET status = ?3 \
                     WHERE issuer = ?1 AND id = ?2 AND status = 'pending' RETURNING order_id",
                    params![issuer, authorization, status],
                    |row| row.get(0),
                )
                .optional()
                .map_err(fail)?,
            None => None,
        };
        if let Some(order) = &order {
            if valid {
                tx.execute(
                    "UPDATE acme_orders SET status = 'ready' WHERE issuer = ?1 AND id = ?2 AND status = 'pending' \
                     AND NOT EXISTS (SELECT 1 FROM acme_authorizations a WHERE a.issuer = ?1 AND a.order_id = ?2 \
                     AND a.status <> 'valid')",
                    params![issuer, order],
                )
                .map_err(fail)?;
            } else {
                tx.execute(
                    "UPDATE acme_orders SET status = 'invalid', error = ?3 \
                     WHERE issuer = ?1 AND id = ?2 AND status IN ('pending', 'ready')",
                    params![issuer, order, error],
                )
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    fn order_claim_finalize(&mut self, id: &str) -> Result<bool, CaError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claimed: Option<String> = self
            .conn
            .query_row(
                "UPDATE acme_orders SET status = 'processing', processing_since = ?3 \
                 WHERE issuer = ?1 AND id = ?2 AND status = 'ready' RETURNING id",
                params![self.issuer, id, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        Ok(claimed.is_some())
    }

    fn order_finish(&mut self, id: &str, record: &Record, _: WriteAccess) -> Result<bool, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let fail = |e| database_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let processing: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM acme_orders WHERE issuer = ?1 AND id = ?2 AND status = 'processing')",
                params![issuer, id],
                |row| row.get(0),
            )
            .map_err(fail)?;
        if !processing {
            return Err(not_processing(&path, id));
        }
        if !insert_certificate(&tx, &issuer, record, &path)? {
            // Dropping the transaction rolls it back: nothing changed.
            return Ok(false);
        }
        let changed = tx
            .execute(
                "UPDATE acme_orders SET status = 'valid', certificate = ?3, processing_since = NULL \
                 WHERE issuer = ?1 AND id = ?2 AND status = 'processing'",
                params![issuer, id, record.serial.to_string()],
            )
            .map_err(fail)?;
        if changed != 1 {
            return Err(not_processing(&path, id));
        }
        tx.commit().map_err(fail)?;
        Ok(true)
    }

    fn order_fail(&mut self, id: &str, error: &str) -> Result<(), CaError> {
        self.conn
            .execute(
                "UPDATE acme_orders SET status = 'invalid', error = ?3, processing_since = NULL \
                 WHERE issuer = ?1 AND id = ?2 AND status = 'processing'",
                params![self.issuer, id, error],
            )
            .map_err(|e| database_error(&self.path, e))?;
        Ok(())
    }

    fn expire(&mut self, now: i64, stuck_before: i64, lease: &Lease) -> Result<Option<Expired>, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let fail = |e| database_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        if !lease_is_current(&tx, &issuer, lease, &path)? {
            return Ok(None);
        }
        let nonces = tx
            .execute(
                "DELETE FROM acme_nonces WHERE issuer = ?1 AND expires <= ?2",
                params![issuer, now],
            )
            .map_err(fail)?;
        let expired_orders = tx
            .execute(
                "UPDATE acme_orders SET status = 'invalid' \
                 WHERE issuer = ?1 AND status IN ('pending', 'ready') AND expires <= ?2",
                params![issuer, now],
            )
            .map_err(fail)?;
        let stuck_orders = tx
            .execute(
                "UPDATE acme_orders SET status = 'invalid', error = ?3, processing_since = NULL \
                 WHERE issuer = ?1 AND status = 'processing' AND processing_since < ?2",
                params![issuer, stuck_before, sql::STUCK_ERROR],
            )
            .map_err(fail)?;
        let authorizations = tx
            .execute(
                "UPDATE acme_authorizations SET status = 'expired' \
                 WHERE issuer = ?1 AND status = 'pending' AND expires <= ?2",
                params![issuer, now],
            )
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(Some(Expired {
            nonces: count(nonces),
            orders: count(expired_orders).saturating_add(count(stuck_orders)),
            authorizations: count(authorizations),
        }))
    }

    fn lease_acquire(&mut self, name: &str, holder: &str, ttl: Duration, now: i64) -> Result<Option<Lease>, CaError> {
        let until = now.saturating_add(sql::ttl_seconds(ttl));
        let granted: Option<(String, i64, i64)> = self
            .conn
            .query_row(
                "INSERT INTO acme_leases (issuer, name, holder, token, good_until) VALUES (?1, ?2, ?3, 1, ?4) \
                 ON CONFLICT (issuer, name) DO UPDATE SET \
                   token = CASE WHEN acme_leases.holder = excluded.holder AND acme_leases.good_until > ?5 \
                           THEN acme_leases.token ELSE acme_leases.token + 1 END, \
                   holder = excluded.holder, good_until = excluded.good_until \
                 WHERE acme_leases.holder = excluded.holder OR acme_leases.good_until <= ?5 \
                 RETURNING holder, token, good_until",
                params![self.issuer, name, holder, until, now],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        Ok(granted.map(|(holder, token, until)| Lease {
            name: name.to_string(),
            holder,
            token,
            until,
        }))
    }

    fn clock(&mut self) -> Result<i64, CaError> {
        Ok(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    fn lease_release(&mut self, name: &str, holder: &str) -> Result<bool, CaError> {
        let changed = self
            .conn
            .execute(
                "UPDATE acme_leases SET good_until = 0 WHERE issuer = ?1 AND name = ?2 AND holder = ?3",
                params![self.issuer, name, holder],
            )
            .map_err(|e| database_error(&self.path, e))?;
        Ok(changed == 1)
    }

    fn crl_publish(&mut self, crl: &PublishedCrl, lease: Option<&Lease>) -> Result<bool, CaError> {
        let path = self.path.clone();
        let issuer = self.issuer.clone();
        let number = sql::crl_number_to_db(crl.number, &self.store_name())?;
        let fail = |e| database_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        if let Some(lease) = lease
            && !lease_is_current(&tx, &issuer, lease, &path)?
        {
            return Ok(false);
        }
        let stored: Option<i64> = tx
            .query_row(
                "INSERT INTO published_crls (issuer, number, der, this_update, next_update) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (issuer) DO UPDATE SET number = excluded.number, der = excluded.der, \
                   this_update = excluded.this_update, next_update = excluded.next_update \
                 WHERE excluded.number > published_crls.number \
                 RETURNING number",
                params![issuer, number, crl.der, crl.this_update, crl.next_update],
                |row| row.get(0),
            )
            .optional()
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(stored.is_some())
    }

    fn check_health(&mut self) -> Result<(), CaError> {
        let fail = |e| database_error(&self.path, e);
        if super::sqlite::is_fenced(&self.conn).map_err(fail)? {
            return Err(super::sqlite::moved_error(&self.path));
        }
        // The published CRL's row: what /ocsp and /crl read, so a locked or stalled table shows.
        self.crl_published().map(drop)
    }

    fn crl_published(&mut self) -> Result<Option<PublishedCrl>, CaError> {
        let row: Option<(i64, Vec<u8>, i64, i64)> = self
            .conn
            .query_row(
                "SELECT number, der, this_update, next_update FROM published_crls WHERE issuer = ?1",
                params![self.issuer],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(|e| database_error(&self.path, e))?;
        let store = self.store_name();
        row.map(|(number, der, this_update, next_update)| {
            Ok(PublishedCrl {
                der,
                number: super::crl_number_from(number, &store)?,
                this_update,
                next_update,
            })
        })
        .transpose()
    }
}

fn not_processing(path: &Path, id: &str) -> CaError {
    CaError::Store {
        store: path.display().to_string(),
        reason: format!("order {id} is not being finalized (not processing)"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Every SQL statement of this file's implementation (the string literals before the tests
    /// that start with SELECT, INSERT, UPDATE or DELETE, with the column lists filled in).
    fn statements() -> Vec<String> {
        let source = include_str!("sqlite_acme.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut found = Vec::new();
        let mut rest = code;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let end = after.find('"').unwrap();
            let literal = &after[..end];
            rest = &after[end + 1..];
            let mut text = String::new();
            let mut lines = literal.split("\\\n");
            text.push_str(lines.next().unwrap());
            for line in lines {
                text.push_str(line.trim_start());
            }
            let text = text
                .replace("{ACCOUNT_COLUMNS}", ACCOUNT_COLUMNS)
                .replace("{ORDER_COLUMNS}", ORDER_COLUMNS)
                .replace("{AUTHORIZATION_COLUMNS}", AUTHORIZATION_COLUMNS)
                .replace("{CHALLENGE_COLUMNS}", CHALLENGE_COLUMNS);
            if ["SELECT ", "INSERT ", "UPDATE ", "DELETE "]
                .iter()
                .any(|k| text.starts_with(k))
            {
                found.push(text);
            }
        }
        found
    }

    /// Cost per request must not grow with the rows: no statement scans an ACME table; each
    /// finds its rows through the primary key or an index on more than the issuer (SQLite's
    /// query plan says `SEARCH … (issuer=? AND …)`).
    #[test]
    fn no_statement_scans_a_table() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::create(dir.path(), "aa").unwrap();
        let store = SqliteStore::open(dir.path(), "aa").unwrap();
        let statements = statements();
        assert!(statements.len() >= 30, "{statements:#?}");
        let mut searched = 0;
        for sql in &statements {
            let mut plan = store.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = vec![rusqlite::types::Null; plan.parameter_count()];
            let details: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(nulls), |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for detail in &details {
                assert!(
                    !detail.starts_with("SCAN ") || detail == "SCAN CONSTANT ROW",
                    "{sql}\n{details:?}"
                );
                // `issuer` alone would read every row of the CA (except where it is the key).
                let keyed_by_issuer =
                    detail.starts_with("SEARCH published_crls ") || detail.starts_with("SEARCH issuers ");
                assert!(keyed_by_issuer || !detail.ends_with("(issuer=?)"), "{sql}\n{details:?}");
                searched += usize::from(detail.starts_with("SEARCH "));
            }
        }
        assert!(searched >= 25, "{searched}");
    }
}
