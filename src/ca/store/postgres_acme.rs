//! [`AcmeStore`] on PostgreSQL, shared by several `ca serve` instances. `READ COMMITTED`, and
//! the row locks of conditional statements decide races: an `UPDATE … WHERE status = 'pending'`
//! that waits for a concurrent one on the same row re-reads it and finds it no longer pending;
//! `DELETE … RETURNING` returns a row to one caller; `INSERT … ON CONFLICT` waits for a
//! concurrent insert of the same key. Transactions that read before they write lock the row
//! they depend on first (`FOR UPDATE` on the order, `FOR SHARE` on a lease), always an order
//! before its authorizations and challenges, so they neither miss each other's changes nor
//! deadlock.

use std::time::Duration;

use postgres::{GenericClient, Row};

use super::acme::{
    Account, AcmeStore, Authorization, Challenge, Expired, Identifier, Lease, Order, PublishedCrl, Rekeyed,
};
use super::acme_sql as sql;
use super::postgres::{PostgresStore, fail, insert_certificate};
use super::{WriteAccess, redact};
use crate::ca::{CaError, Record};
use crate::pki::Serial;

const ACCOUNT_COLUMNS: &str = "id, thumbprint, jwk, contact, status, created";
const ORDER_COLUMNS: &str = "id, account_id, status, identifiers, authorizations, expires, not_before, not_after, \
                             error, certificate, replaces, created";
const AUTHORIZATION_COLUMNS: &str = "id, order_id, account_id, kind, value, wildcard, status, expires";
const CHALLENGE_COLUMNS: &str = "id, kind, token, status, validated, error";

fn account_from(row: &Row, url: &str) -> Result<Account, CaError> {
    let get = |e: postgres::Error| fail(url, &e);
    let store = redact(url);
    let contact: String = row.try_get(3).map_err(get)?;
    let status: String = row.try_get(4).map_err(get)?;
    Ok(Account {
        id: row.try_get(0).map_err(get)?,
        thumbprint: row.try_get(1).map_err(get)?,
        jwk: row.try_get(2).map_err(get)?,
        contact: sql::contact_from_text(&contact, &store)?,
        status: sql::account_status_from(&status, &store)?,
        created: row.try_get(5).map_err(get)?,
    })
}

fn order_from(row: &Row, url: &str) -> Result<Order, CaError> {
    let get = |e: postgres::Error| fail(url, &e);
    let store = redact(url);
    let status: String = row.try_get(2).map_err(get)?;
    let identifiers: String = row.try_get(3).map_err(get)?;
    let authorizations: String = row.try_get(4).map_err(get)?;
    Ok(Order {
        id: row.try_get(0).map_err(get)?,
        account_id: row.try_get(1).map_err(get)?,
        status: sql::order_status_from(&status, &store)?,
        identifiers: sql::identifiers_from_text(&identifiers, &store)?,
        authorizations: sql::ids_from_text(&authorizations, &store)?,
        expires: row.try_get(5).map_err(get)?,
        not_before: row.try_get(6).map_err(get)?,
        not_after: row.try_get(7).map_err(get)?,
        error: row.try_get(8).map_err(get)?,
        certificate: sql::serial_from(row.try_get(9).map_err(get)?, &store)?,
        replaces: row.try_get(10).map_err(get)?,
        created: row.try_get(11).map_err(get)?,
    })
}

fn challenge_from(row: &Row, url: &str) -> Result<Challenge, CaError> {
    let get = |e: postgres::Error| fail(url, &e);
    let status: String = row.try_get(3).map_err(get)?;
    Ok(Challenge {
        id: row.try_get(0).map_err(get)?,
        kind: row.try_get(1).map_err(get)?,
        token: row.try_get(2).map_err(get)?,
        status: sql::challenge_status_from(&status, &redact(url))?,
        validated: row.try_get(4).map_err(get)?,
        error: row.try_get(5).map_err(get)?,
    })
}

/// The authorization `id` with its challenges, read on `client` (a connection or a
/// transaction).
fn load_authorization(
    client: &mut impl GenericClient,
    issuer: &str,
    id: &str,
    url: &str,
) -> Result<Option<Authorization>, CaError> {
    let get = |e: postgres::Error| fail(url, &e);
    let Some(row) = client
        .query_opt(
            &format!("SELECT {AUTHORIZATION_COLUMNS} FROM acme_authorizations WHERE issuer = $1 AND id = $2"),
            &[&issuer, &id],
        )
        .map_err(get)?
    else {
        return Ok(None);
    };
    let challenges = client
        .query(
            &format!(
                "SELECT {CHALLENGE_COLUMNS} FROM acme_challenges WHERE issuer = $1 AND authorization_id = $2 \
                 ORDER BY ordinal"
            ),
            &[&issuer, &id],
        )
        .map_err(get)?
        .iter()
        .map(|row| challenge_from(row, url))
        .collect::<Result<Vec<_>, _>>()?;
    let status: String = row.try_get(6).map_err(get)?;
    Ok(Some(Authorization {
        id: row.try_get(0).map_err(get)?,
        order_id: row.try_get(1).map_err(get)?,
        account_id: row.try_get(2).map_err(get)?,
        identifier: Identifier {
            kind: row.try_get(3).map_err(get)?,
            value: row.try_get(4).map_err(get)?,
        },
        wildcard: row.try_get(5).map_err(get)?,
        status: sql::authorization_status_from(&status, &redact(url))?,
        expires: row.try_get(7).map_err(get)?,
        challenges,
    }))
}

/// Whether `lease` is the current grant of its name (same holder and token), inside the
/// caller's transaction: the lease row stays share-locked until it ends, so no new grant can
/// commit in between.
fn lease_is_current(client: &mut impl GenericClient, issuer: &str, lease: &Lease, url: &str) -> Result<bool, CaError> {
    let row = client
        .query_opt(
            "SELECT holder, token FROM acme_leases WHERE issuer = $1 AND name = $2 FOR SHARE",
            &[&issuer, &lease.name],
        )
        .map_err(|e| fail(url, &e))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let holder: String = row.try_get(0).map_err(|e| fail(url, &e))?;
    let token: i64 = row.try_get(1).map_err(|e| fail(url, &e))?;
    Ok(holder == lease.holder && token == lease.token)
}

/// Locks the order `id` until the transaction ends (`FOR UPDATE`); its status, or `None` when
/// there is no such order.
fn lock_order(client: &mut impl GenericClient, issuer: &str, id: &str, url: &str) -> Result<Option<String>, CaError> {
    client
        .query_opt(
            "SELECT status FROM acme_orders WHERE issuer = $1 AND id = $2 FOR UPDATE",
            &[&issuer, &id],
        )
        .map_err(|e| fail(url, &e))?
        .map(|row| row.try_get(0).map_err(|e| fail(url, &e)))
        .transpose()
}

impl AcmeStore for PostgresStore {
    fn nonce_put(&mut self, nonce: &str, expires: i64) -> Result<(), CaError> {
        self.client
            .execute(
                "INSERT INTO acme_nonces (issuer, nonce, expires) VALUES ($1, $2, $3)",
                &[&self.issuer, &nonce, &expires],
            )
            .map_err(|e| fail(&self.url, &e))?;
        Ok(())
    }

    fn nonce_take(&mut self, nonce: &str, now: i64) -> Result<bool, CaError> {
        let row = self
            .client
            .query_opt(
                "DELETE FROM acme_nonces WHERE issuer = $1 AND nonce = $2 RETURNING expires",
                &[&self.issuer, &nonce],
            )
            .map_err(|e| fail(&self.url, &e))?;
        let expires: Option<i64> = row
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(|e| fail(&self.url, &e))?;
        Ok(expires.is_some_and(|expires| expires > now))
    }

    fn account_create(&mut self, account: &Account) -> Result<(Account, bool), CaError> {
        let inserted = self
            .client
            .query_opt(
                "INSERT INTO acme_accounts (issuer, id, thumbprint, jwk, contact, status, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issuer, thumbprint) DO NOTHING RETURNING id",
                &[
                    &self.issuer,
                    &account.id,
                    &account.thumbprint,
                    &account.jwk,
                    &sql::contact_to_text(&account.contact),
                    &sql::account_status(account.status),
                    &account.created,
                ],
            )
            .map_err(|e| fail(&self.url, &e))?;
        if inserted.is_some() {
            return Ok((account.clone(), true));
        }
        // ON CONFLICT waited for a concurrent insert to commit: this statement sees it.
        match self.account_by_thumbprint(&account.thumbprint)? {
            Some(existing) => Ok((existing, false)),
            None => Err(sql::damaged(
                &redact(&self.url),
                "an account's thumbprint was taken, yet no account holds it",
            )),
        }
    }

    fn account_by_thumbprint(&mut self, thumbprint: &str) -> Result<Option<Account>, CaError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM acme_accounts WHERE issuer = $1 AND thumbprint = $2"),
                &[&self.issuer, &thumbprint],
            )
            .map_err(|e| fail(&self.url, &e))?;
        row.map(|r| account_from(&r, &self.url)).transpose()
    }

    fn account(&mut self, id: &str) -> Result<Option<Account>, CaError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM acme_accounts WHERE issuer = $1 AND id = $2"),
                &[&self.issuer, &id],
            )
            .map_err(|e| fail(&self.url, &e))?;
        row.map(|r| account_from(&r, &self.url)).transpose()
    }

    fn account_update(&mut self, account: &Account) -> Result<(), CaError> {
        self.client
            .execute(
                "UPDATE acme_accounts SET contact = $3, status = $4 WHERE issuer = $1 AND id = $2",
                &[
                    &self.issuer,
                    &account.id,
                    &sql::contact_to_text(&account.contact),
                    &sql::account_status(account.status),
                ],
            )
            .map_err(|e| fail(&self.url, &e))?;
        Ok(())
    }

    fn account_rekey(
        &mut self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<Rekeyed, CaError> {
        // One statement: the unique index on thumbprints decides a race for the new key (an
        // UPDATE that meets a concurrent one waits for it, then fails with a unique violation).
        let changed = self.client.execute(
            "UPDATE acme_accounts SET thumbprint = $4, jwk = $5 WHERE issuer = $1 AND id = $2 AND thumbprint = $3",
            &[&self.issuer, &id, &old_thumbprint, &new_thumbprint, &new_jwk],
        );
        match changed {
            Ok(1) => Ok(Rekeyed::Done),
            Ok(_) => Ok(Rekeyed::Stale),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Ok(match self.account_by_thumbprint(new_thumbprint)? {
                    Some(holder) if holder.id != id => Rekeyed::KeyInUse(holder.id),
                    // The holder changed its key since: the caller may try again.
                    _ => Rekeyed::Stale,
                })
            }
            Err(e) => Err(fail(&self.url, &e)),
        }
    }

    fn order_create(&mut self, order: &Order, authorizations: &[Authorization]) -> Result<bool, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let get = |e: postgres::Error| fail(&url, &e);
        let mut tx = self.client.transaction().map_err(get)?;
        // Insert-if-absent on the unique index of live orders' `replaces` (RFC 9773 §5): a
        // concurrent insert of the same `replaces` is waited for, then this one does nothing.
        let inserted = tx
            .query_opt(
                "INSERT INTO acme_orders (issuer, id, account_id, status, identifiers, authorizations, expires, \
             not_before, not_after, error, certificate, replaces, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (issuer, replaces) WHERE replaces IS NOT NULL AND status <> 'invalid' DO NOTHING \
             RETURNING id",
                &[
                    &issuer,
                    &order.id,
                    &order.account_id,
                    &sql::order_status(order.status),
                    &sql::identifiers_to_text(&order.identifiers),
                    &sql::ids_to_text(&order.authorizations),
                    &order.expires,
                    &order.not_before,
                    &order.not_after,
                    &order.error,
                    &order.certificate.as_ref().map(Serial::to_string),
                    &order.replaces,
                    &order.created,
                ],
            )
            .map_err(get)?;
        if inserted.is_none() {
            // Dropping the transaction rolls it back: nothing was written.
            return Ok(false);
        }
        for authorization in authorizations {
            tx.execute(
                "INSERT INTO acme_authorizations (issuer, id, order_id, account_id, kind, value, wildcard, status, \
                 expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &issuer,
                    &authorization.id,
                    &authorization.order_id,
                    &authorization.account_id,
                    &authorization.identifier.kind,
                    &authorization.identifier.value,
                    &authorization.wildcard,
                    &sql::authorization_status(authorization.status),
                    &authorization.expires,
                ],
            )
            .map_err(get)?;
            for (ordinal, challenge) in authorization.challenges.iter().enumerate() {
                tx.execute(
                    "INSERT INTO acme_challenges (issuer, id, authorization_id, ordinal, kind, token, status, \
                     validated, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &issuer,
                        &challenge.id,
                        &authorization.id,
                        &i64::try_from(ordinal).unwrap_or(i64::MAX),
                        &challenge.kind,
                        &challenge.token,
                        &sql::challenge_status(challenge.status),
                        &challenge.validated,
                        &challenge.error,
                    ],
                )
                .map_err(get)?;
            }
        }
        tx.commit().map_err(get)?;
        Ok(true)
    }

    fn order(&mut self, id: &str) -> Result<Option<Order>, CaError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {ORDER_COLUMNS} FROM acme_orders WHERE issuer = $1 AND id = $2"),
                &[&self.issuer, &id],
            )
            .map_err(|e| fail(&self.url, &e))?;
        row.map(|r| order_from(&r, &self.url)).transpose()
    }

    fn order_by_certificate(&mut self, serial: &Serial) -> Result<Option<Order>, CaError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM acme_orders WHERE issuer = $1 AND certificate = $2 \
                     AND certificate IS NOT NULL"
                ),
                &[&self.issuer, &serial.to_string()],
            )
            .map_err(|e| fail(&self.url, &e))?;
        row.map(|r| order_from(&r, &self.url)).transpose()
    }

    fn orders_of_account(
        &mut self,
        account_id: &str,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<Order>, CaError> {
        // Without a cursor, one past every (created, id): created is never i64::MAX.
        let (created, id) = after.unwrap_or((i64::MAX, ""));
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM acme_orders WHERE issuer = $1 AND account_id = $2 \
                     AND status <> 'invalid' AND (created, id) < ($3, $4) \
                     ORDER BY created DESC, id DESC LIMIT $5"
                ),
                &[&self.issuer, &account_id, &created, &id, &i64::from(limit)],
            )
            .map_err(|e| fail(&self.url, &e))?;
        rows.iter().map(|r| order_from(r, &self.url)).collect()
    }

    fn authorization(&mut self, id: &str) -> Result<Option<Authorization>, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        // REPEATABLE READ: the authorization and its challenges from one snapshot.
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| fail(&url, &e))?;
        let found = load_authorization(&mut tx, &issuer, id, &url)?;
        tx.commit().map_err(|e| fail(&url, &e))?;
        Ok(found)
    }

    fn authorization_deactivate(&mut self, id: &str) -> Result<bool, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let get = |e: postgres::Error| fail(&url, &e);
        let mut tx = self.client.transaction().map_err(get)?;
        let Some(order) = tx
            .query_opt(
                "SELECT order_id FROM acme_authorizations WHERE issuer = $1 AND id = $2",
                &[&issuer, &id],
            )
            .map_err(get)?
        else {
            return Ok(false);
        };
        let order: String = order.try_get(0).map_err(get)?;
        lock_order(&mut tx, &issuer, &order, &url)?;
        let changed = tx
            .execute(
                "UPDATE acme_authorizations SET status = 'deactivated' \
                 WHERE issuer = $1 AND id = $2 AND status IN ('pending', 'valid')",
                &[&issuer, &id],
            )
            .map_err(get)?;
        if changed == 1 {
            tx.execute(
                "UPDATE acme_orders SET status = 'invalid' \
                 WHERE issuer = $1 AND id = $2 AND status IN ('pending', 'ready')",
                &[&issuer, &order],
            )
            .map_err(get)?;
        }
        tx.commit().map_err(get)?;
        Ok(changed == 1)
    }

    fn challenge(&mut self, id: &str) -> Result<Option<(Challenge, Authorization)>, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let get = |e: postgres::Error| fail(&url, &e);
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(get)?;
        let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT {CHALLENGE_COLUMNS}, authorization_id FROM acme_challenges WHERE issuer = $1 AND id = $2"
                ),
                &[&issuer, &id],
            )
            .map_err(get)?
        else {
            return Ok(None);
        };
        let challenge = challenge_from(&row, &url)?;
        let authorization: String = row.try_get(6).map_err(get)?;
        let authorization = load_authorization(&mut tx, &issuer, &authorization, &url)?
            .ok_or_else(|| sql::damaged(&redact(&url), format_args!("challenge {id} has no authorization")))?;
        tx.commit().map_err(get)?;
        Ok(Some((challenge, authorization)))
    }

    fn challenge_claim(&mut self, id: &str, now: i64) -> Result<bool, CaError> {
        let claimed = self
            .client
            .query_opt(
                "UPDATE acme_challenges SET status = 'processing' \
                 WHERE issuer = $1 AND id = $2 AND status = 'pending' AND EXISTS ( \
                   SELECT 1 FROM acme_authorizations a WHERE a.issuer = $1 \
                   AND a.id = acme_challenges.authorization_id AND a.status = 'pending' AND a.expires > $3) \
                 RETURNING id",
                &[&self.issuer, &id, &now],
            )
            .map_err(|e| fail(&self.url, &e))?;
        Ok(claimed.is_some())
    }

    fn challenge_finish(&mut self, id: &str, valid: bool, error: Option<&str>, now: i64) -> Result<(), CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let get = |e: postgres::Error| fail(&url, &e);
        let status = if valid { "valid" } else { "invalid" };
        let mut tx = self.client.transaction().map_err(get)?;
        let Some(row) = tx
            .query_opt(
                "SELECT a.id, a.order_id FROM acme_challenges c JOIN acme_authorizations a \
                 ON a.issuer = c.issuer AND a.id = c.authorization_id WHERE c.issuer = $1 AND c.id = $2",
                &[&issuer, &id],
            )
            .map_err(get)?
        else {
            return Ok(());
        };
        let authorization: String = row.try_get(0).map_err(get)?;
        let order: String = row.try_get(1).map_err(get)?;
        // The order first: two challenges of one order finishing at once take turns, and the
        // second sees the first's authorization when it decides whether the order is ready.
        lock_order(&mut tx, &issuer, &order, &url)?;
        let validated = if valid { Some(now) } else { None };
        let problem = if valid { None } else { error };
        let finished = tx
            .execute(
                "UPDATE acme_challenges SET status = $3, validated = $4, error = $5 \
                 WHERE issuer = $1 AND id = $2 AND status = 'processing'",
                &[&issuer, &id, &status, &validated, &problem],
            )
            .map_err(get)?;
        if finished == 1 {
            let followed = tx
                .execute(
                    "UPDATE acme_authorizations SET status = $3 WHERE issuer = $1 AND id = $2 AND status = 'pending'",
                    &[&issuer, &authorization, &status],
                )
                .map_err(get)?;
            if followed == 1 && valid {
                tx.execute(
                    "UPDATE acme_orders SET status = 'ready' WHERE issuer = $1 AND id = $2 AND status = 'pending' \
                     AND NOT EXISTS (SELECT 1 FROM acme_authorizations a WHERE a.issuer = $1 AND a.order_id = $2 \
                     AND a.status <> 'valid')",
                    &[&issuer, &order],
                )
                .map_err(get)?;
            } else if followed == 1 {
                tx.execute(
                    "UPDATE acme_orders SET status = 'invalid', error = $3 \
                     WHERE issuer = $1 AND id = $2 AND status IN ('pending', 'ready')",
                    &[&issuer, &order, &error],
                )
                .map_err(get)?;
            }
        }
        tx.commit().map_err(get)
    }

    fn order_claim_finalize(&mut self, id: &str) -> Result<bool, CaError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claimed = self
            .client
            .query_opt(
                "UPDATE acme_orders SET status = 'processing', processing_since = $3 \
                 WHERE issuer = $1 AND id = $2 AND status = 'ready' RETURNING id",
                &[&self.issuer, &id, &now],
            )
            .map_err(|e| fail(&self.url, &e))?;
        Ok(claimed.is_some())
    }

    fn order_finish(&mut self, id: &str, record: &Record, _: WriteAccess) -> Result<bool, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let get = |e: postgres::Error| fail(&url, &e);
        let mut tx = self.client.transaction().map_err(get)?;
        if lock_order(&mut tx, &issuer, id, &url)?.as_deref() != Some("processing") {
            return Err(not_processing(&url, id));
        }
        if !insert_certificate(&mut tx, &issuer, record, &url)? {
            // Dropping the transaction rolls it back: nothing changed.
            return Ok(false);
        }
        tx.execute(
            "UPDATE acme_orders SET status = 'valid', certificate = $3, processing_since = NULL \
             WHERE issuer = $1 AND id = $2 AND status = 'processing'",
            &[&issuer, &id, &record.serial.to_string()],
        )
        .map_err(get)?;
        tx.commit().map_err(get)?;
        Ok(true)
    }

    fn order_fail(&mut self, id: &str, error: &str) -> Result<(), CaError> {
        self.client
            .execute(
                "UPDATE acme_orders SET status = 'invalid', error = $3, processing_since = NULL \
                 WHERE issuer = $1 AND id = $2 AND status = 'processing'",
                &[&self.issuer, &id, &error],
            )
            .map_err(|e| fail(&self.url, &e))?;
        Ok(())
    }

    fn expire(&mut self, now: i64, stuck_before: i64, lease: &Lease) -> Result<Option<Expired>, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let get = |e: postgres::Error| fail(&url, &e);
        let mut tx = self.client.transaction().map_err(get)?;
        if !lease_is_current(&mut tx, &issuer, lease, &url)? {
            return Ok(None);
        }
        let nonces = tx
            .execute(
                "DELETE FROM acme_nonces WHERE issuer = $1 AND expires <= $2",
                &[&issuer, &now],
            )
            .map_err(get)?;
        // Orders before authorizations, as every other transaction locks them.
        let expired_orders = tx
            .execute(
                "UPDATE acme_orders SET status = 'invalid' \
                 WHERE issuer = $1 AND status IN ('pending', 'ready') AND expires <= $2",
                &[&issuer, &now],
            )
            .map_err(get)?;
        let stuck_orders = tx
            .execute(
                "UPDATE acme_orders SET status = 'invalid', error = $3, processing_since = NULL \
                 WHERE issuer = $1 AND status = 'processing' AND processing_since < $2",
                &[&issuer, &stuck_before, &sql::STUCK_ERROR],
            )
            .map_err(get)?;
        let authorizations = tx
            .execute(
                "UPDATE acme_authorizations SET status = 'expired' \
                 WHERE issuer = $1 AND status = 'pending' AND expires <= $2",
                &[&issuer, &now],
            )
            .map_err(get)?;
        tx.commit().map_err(get)?;
        Ok(Some(Expired {
            nonces,
            orders: expired_orders.saturating_add(stuck_orders),
            authorizations,
        }))
    }

    fn lease_acquire(&mut self, name: &str, holder: &str, ttl: Duration, now: i64) -> Result<Option<Lease>, CaError> {
        let until = now.saturating_add(sql::ttl_seconds(ttl));
        let row = self
            .client
            .query_opt(
                "INSERT INTO acme_leases (issuer, name, holder, token, good_until) VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (issuer, name) DO UPDATE SET \
                   token = CASE WHEN acme_leases.holder = EXCLUDED.holder AND acme_leases.good_until > $5 \
                           THEN acme_leases.token ELSE acme_leases.token + 1 END, \
                   holder = EXCLUDED.holder, good_until = EXCLUDED.good_until \
                 WHERE acme_leases.holder = EXCLUDED.holder OR acme_leases.good_until <= $5 \
                 RETURNING holder, token, good_until",
                &[&self.issuer, &name, &holder, &until, &now],
            )
            .map_err(|e| fail(&self.url, &e))?;
        let get = |e: postgres::Error| fail(&self.url, &e);
        row.map(|row| {
            Ok(Lease {
                name: name.to_string(),
                holder: row.try_get(0).map_err(get)?,
                token: row.try_get(1).map_err(get)?,
                until: row.try_get(2).map_err(get)?,
            })
        })
        .transpose()
    }

    fn clock(&mut self) -> Result<i64, CaError> {
        let row = self
            .client
            .query_one("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint", &[])
            .map_err(|e| fail(&self.url, &e))?;
        row.try_get(0).map_err(|e| fail(&self.url, &e))
    }

    fn lease_release(&mut self, name: &str, holder: &str) -> Result<bool, CaError> {
        let changed = self
            .client
            .execute(
                "UPDATE acme_leases SET good_until = 0 WHERE issuer = $1 AND name = $2 AND holder = $3",
                &[&self.issuer, &name, &holder],
            )
            .map_err(|e| fail(&self.url, &e))?;
        Ok(changed == 1)
    }

    fn crl_publish(&mut self, crl: &PublishedCrl, lease: Option<&Lease>) -> Result<bool, CaError> {
        let url = self.url.clone();
        let issuer = self.issuer.clone();
        let number = sql::crl_number_to_db(crl.number, &redact(&url))?;
        let get = |e: postgres::Error| fail(&url, &e);
        let mut tx = self.client.transaction().map_err(get)?;
        if let Some(lease) = lease
            && !lease_is_current(&mut tx, &issuer, lease, &url)?
        {
            return Ok(false);
        }
        let stored = tx
            .query_opt(
                "INSERT INTO published_crls (issuer, number, der, this_update, next_update) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (issuer) DO UPDATE SET number = EXCLUDED.number, der = EXCLUDED.der, \
                   this_update = EXCLUDED.this_update, next_update = EXCLUDED.next_update \
                 WHERE EXCLUDED.number > published_crls.number \
                 RETURNING number",
                &[&issuer, &number, &crl.der, &crl.this_update, &crl.next_update],
            )
            .map_err(get)?;
        tx.commit().map_err(get)?;
        Ok(stored.is_some())
    }

    fn check_health(&mut self) -> Result<(), CaError> {
        // The published CRL's row: what /ocsp and /crl read, so a locked or stalled table shows.
        self.crl_published().map(drop)
    }

    fn crl_published(&mut self) -> Result<Option<PublishedCrl>, CaError> {
        let row = self
            .client
            .query_opt(
                "SELECT number, der, this_update, next_update FROM published_crls WHERE issuer = $1",
                &[&self.issuer],
            )
            .map_err(|e| fail(&self.url, &e))?;
        let get = |e: postgres::Error| fail(&self.url, &e);
        row.map(|row| {
            Ok(PublishedCrl {
                number: super::crl_number_from(row.try_get(0).map_err(get)?, &redact(&self.url))?,
                der: row.try_get(1).map_err(get)?,
                this_update: row.try_get(2).map_err(get)?,
                next_update: row.try_get(3).map_err(get)?,
            })
        })
        .transpose()
    }
}

fn not_processing(url: &str, id: &str) -> CaError {
    CaError::Store {
        store: redact(url),
        reason: format!("order {id} is not being finalized (not processing)"),
    }
}
