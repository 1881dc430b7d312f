//! ACME (RFC 8555) state, leases and the published CRL in the CA's store, for `ca serve`.
//!
//! Every piece of service state lives here, so that several `ca serve` instances on one
//! PostgreSQL store answer any request (DESIGN.md, "`ca serve`"): nonces (§7.2), accounts
//! (§7.1.2, keyed by their RFC 7638 JWK thumbprint), orders (§7.1.3), authorizations (§7.1.4)
//! and challenges (§8). Every method is one transaction. The state changes that must happen once
//! although several instances may try at the same moment are conditional updates that exactly
//! one caller wins: [`AcmeStore::nonce_take`], [`AcmeStore::challenge_claim`],
//! [`AcmeStore::order_claim_finalize`], [`AcmeStore::order_finish`].
//!
//! Periodic work (regenerating the CRL before its nextUpdate, expiring nonces and orders) is
//! done by one instance at a time under a [`Lease`]: a row with a holder, a good-until time and
//! a fencing token that grows with every grant. Work done under a token that is no longer the
//! current one is refused by the store (a holder that stalled past its lease cannot overwrite the
//! work of the instance that took over).
//!
//! Times are Unix seconds (UTC). Identifiers of accounts, orders, authorizations and challenges
//! are random URL-safe strings made by the caller (at least 128 bits).

use std::time::Duration;

use super::WriteAccess;
use crate::ca::{CaError, Record};
use crate::pki::Serial;

/// An account's status (RFC 8555 §7.1.2, §7.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    /// Usable.
    Valid,
    /// Deactivated by its holder (§7.3.6); refused from then on.
    Deactivated,
    /// Revoked by the server.
    Revoked,
}

/// An ACME account (RFC 8555 §7.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Random identifier; the account URL is `BASE/acme/account/ID`.
    pub id: String,
    /// RFC 7638 SHA-256 thumbprint of the account key, base64url without padding: unique.
    pub thumbprint: String,
    /// The account's public key as the JWK JSON the client sent.
    pub jwk: String,
    /// `contact` URLs (`mailto:…`).
    pub contact: Vec<String>,
    /// Status.
    pub status: AccountStatus,
    /// When it was created.
    pub created: i64,
}

/// An identifier of an order or authorization (RFC 8555 §9.7.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identifier {
    /// `dns` (or `ip`, RFC 8738).
    pub kind: String,
    /// The name (lower case A-labels, `*.` kept for a wildcard order) or address.
    pub value: String,
}

/// An order's status (RFC 8555 §7.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    /// Some authorization is not yet valid.
    Pending,
    /// Every authorization is valid: may be finalized.
    Ready,
    /// Claimed by one finalize request (§7.4), being issued.
    Processing,
    /// Issued: the certificate is recorded.
    Valid,
    /// Failed (an authorization failed or expired, or issuance was refused).
    Invalid,
}

/// An order (RFC 8555 §7.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Random identifier.
    pub id: String,
    /// The account that placed it.
    pub account_id: String,
    /// Status.
    pub status: OrderStatus,
    /// What it asks for, in the order given.
    pub identifiers: Vec<Identifier>,
    /// Its authorizations' identifiers, one per identifier, in the same order.
    pub authorizations: Vec<String>,
    /// When a pending or ready order expires.
    pub expires: i64,
    /// `notBefore` / `notAfter` the client asked for, if any.
    pub not_before: Option<i64>,
    /// See `not_before`.
    pub not_after: Option<i64>,
    /// Why it is invalid: an RFC 7807 problem document (JSON).
    pub error: Option<String>,
    /// The issued certificate's serial, once valid.
    pub certificate: Option<Serial>,
    /// The ARI certificate identifier this order replaces (RFC 9773 §5), if any.
    pub replaces: Option<String>,
    /// When it was created.
    pub created: i64,
}

/// An authorization's status (RFC 8555 §7.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationStatus {
    /// Waiting for a challenge.
    Pending,
    /// A challenge succeeded.
    Valid,
    /// A challenge failed.
    Invalid,
    /// Deactivated by the client (§7.5.2).
    Deactivated,
    /// Expired before it became valid.
    Expired,
    /// Revoked by the server.
    Revoked,
}

/// A challenge's status (RFC 8555 §7.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeStatus {
    /// Not yet answered.
    Pending,
    /// Claimed by one instance, being validated.
    Processing,
    /// Validated.
    Valid,
    /// Validation failed.
    Invalid,
}

/// A challenge (RFC 8555 §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Random identifier.
    pub id: String,
    /// `http-01` or `tls-alpn-01`.
    pub kind: String,
    /// The token (§8.1: base64url, at least 128 bits of entropy).
    pub token: String,
    /// Status.
    pub status: ChallengeStatus,
    /// When it was validated.
    pub validated: Option<i64>,
    /// Why it failed: an RFC 7807 problem document (JSON).
    pub error: Option<String>,
}

/// An authorization (RFC 8555 §7.1.4), one per identifier of one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// Random identifier.
    pub id: String,
    /// The order it belongs to.
    pub order_id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// The identifier (without `*.` for a wildcard).
    pub identifier: Identifier,
    /// Whether the order asked for `*.` + the identifier.
    pub wildcard: bool,
    /// Status.
    pub status: AuthorizationStatus,
    /// When it expires.
    pub expires: i64,
    /// Its challenges.
    pub challenges: Vec<Challenge>,
}

/// A lease on one kind of periodic work (`crl`, `expire`): while `until` has not passed, only
/// `holder` does that work. `token` grows by one with every grant (a renewal by the same holder
/// before `until` keeps it), so work stamped with an older token is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The work it is for.
    pub name: String,
    /// The instance that holds it (a random identifier per `ca serve` process).
    pub holder: String,
    /// The fencing token.
    pub token: i64,
    /// Good until (Unix seconds).
    pub until: i64,
}

/// The CRL every instance serves at `/crl`: the one with the highest number published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedCrl {
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// Its CRL number (RFC 5280 §5.2.3).
    pub number: u64,
    /// Its thisUpdate.
    pub this_update: i64,
    /// Its nextUpdate.
    pub next_update: i64,
}

/// What [`AcmeStore::account_rekey`] did (RFC 8555 §7.3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rekeyed {
    /// The account now has the new key.
    Done,
    /// Another account (this identifier) has the new key already: nothing changed (§7.3.5: 409
    /// with its URL).
    KeyInUse(String),
    /// The account does not exist or no longer has the old key (a concurrent key change won):
    /// nothing changed.
    Stale,
}

/// What one round of [`AcmeStore::expire`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Nonces deleted.
    pub nonces: u64,
    /// Orders that became invalid (expired, or stuck in processing longer than allowed).
    pub orders: u64,
    /// Authorizations that became expired.
    pub authorizations: u64,
}

/// ACME state, leases and the published CRL (see the module docs). Reached from a store with
/// `Store::acme`.
pub trait AcmeStore {
    /// Records a fresh nonce good until `expires`.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn nonce_put(&mut self, nonce: &str, expires: i64) -> Result<(), CaError>;

    /// Uses up a nonce (`DELETE … RETURNING`): true exactly once for a nonce that was put and
    /// has not expired at `now`; false for an unknown, used or expired one (`badNonce`, §6.5).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn nonce_take(&mut self, nonce: &str, now: i64) -> Result<bool, CaError>;

    /// newAccount (§7.3): records `account` unless an account with its thumbprint exists, and
    /// returns the account that holds the thumbprint afterwards with whether it is new. Two
    /// instances creating an account for one key at once end with one account.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn account_create(&mut self, account: &Account) -> Result<(Account, bool), CaError>;

    /// The account with this thumbprint (`onlyReturnExisting`, `jwk`-signed requests).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn account_by_thumbprint(&mut self, thumbprint: &str) -> Result<Option<Account>, CaError>;

    /// The account with this identifier (`kid`-signed requests).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn account(&mut self, id: &str) -> Result<Option<Account>, CaError>;

    /// Updates an account's contact and status (§7.3.2, §7.3.6).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn account_update(&mut self, account: &Account) -> Result<(), CaError>;

    /// Account key rollover (RFC 8555 §7.3.5), one conditional change: the account `id` gets
    /// `new_thumbprint` and `new_jwk` if its thumbprint is still `old_thumbprint` and no account
    /// has `new_thumbprint` (thumbprints are unique, so of two accounts rolling over to one key
    /// at once, one wins and the other sees [`Rekeyed::KeyInUse`]).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn account_rekey(
        &mut self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<Rekeyed, CaError>;

    /// newOrder (§7.4): records the order, its authorizations and their challenges in one
    /// transaction, and returns true. When `order.replaces` is set and another order that is
    /// not `invalid` replaces the same certificate already (RFC 9773 §5, `alreadyReplaced`),
    /// records nothing and returns false; of several such orders created at once, exactly one is
    /// recorded (a unique index on live orders' `replaces`).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn order_create(&mut self, order: &Order, authorizations: &[Authorization]) -> Result<bool, CaError>;

    /// The order with this identifier.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn order(&mut self, id: &str) -> Result<Option<Order>, CaError>;

    /// The order whose certificate has this serial.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn order_by_certificate(&mut self, serial: &Serial) -> Result<Option<Order>, CaError>;

    /// An account's orders list (RFC 8555 §7.1.2.1): its orders that are not `invalid`, newest
    /// first (by `created`, then by identifier, descending), at most `limit` of them, starting
    /// after the order whose `(created, id)` is `after` (the last one of the previous page).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn orders_of_account(
        &mut self,
        account_id: &str,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<Order>, CaError>;

    /// The authorization with this identifier, with its challenges.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn authorization(&mut self, id: &str) -> Result<Option<Authorization>, CaError>;

    /// Deactivates a pending or valid authorization (§7.5.2) and makes its order invalid (when
    /// the order is pending or ready: one being finalized or issued keeps its status); false
    /// when it was neither.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn authorization_deactivate(&mut self, id: &str) -> Result<bool, CaError>;

    /// The challenge with this identifier and the authorization it belongs to.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn challenge(&mut self, id: &str) -> Result<Option<(Challenge, Authorization)>, CaError>;

    /// Claims a challenge for validation: `pending` → `processing`, while its authorization is
    /// pending and unexpired at `now`. True for exactly one caller (§7.5.1: a challenge is
    /// validated once, whichever instance gets the request).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn challenge_claim(&mut self, id: &str, now: i64) -> Result<bool, CaError>;

    /// Ends a claimed challenge, in one transaction: `processing` → `valid` (with `now` as
    /// validated) or `invalid` (with `error`, a problem document); the authorization follows;
    /// the order becomes `ready` when all its authorizations are valid, `invalid` (with `error`)
    /// when one is invalid. A challenge that is not `processing` is left as it is (nothing
    /// changes: a second finish, or a finish after the clean-up, is harmless).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn challenge_finish(&mut self, id: &str, valid: bool, error: Option<&str>, now: i64) -> Result<(), CaError>;

    /// Claims an order for finalization: `ready` → `processing`, stamped with the store
    /// machine's clock (what [`AcmeStore::expire`]'s `stuck_before` compares). True for exactly
    /// one caller, so a double finalize issues once.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn order_claim_finalize(&mut self, id: &str) -> Result<bool, CaError>;

    /// Ends a finalization in one transaction: records the certificate (`record`, as
    /// `Store::issue`: false when its serial is taken, then sign again) and moves the order from
    /// `processing` to `valid` with that serial. A crash before it leaves no certificate; after
    /// it, a valid order with its certificate.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails or the order is not `processing`.
    fn order_finish(&mut self, id: &str, record: &Record, access: WriteAccess) -> Result<bool, CaError>;

    /// Ends a finalization that failed: `processing` → `invalid` with `error` (a problem
    /// document).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn order_fail(&mut self, id: &str, error: &str) -> Result<(), CaError>;

    /// Periodic clean-up, under `lease` (refused with `Ok(None)` when its token is no longer
    /// current): deletes expired nonces; pending/ready orders past `expires` and orders in
    /// `processing` since before `stuck_before` become invalid; pending authorizations past
    /// `expires` become expired.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn expire(&mut self, now: i64, stuck_before: i64, lease: &Lease) -> Result<Option<Expired>, CaError>;

    /// Takes or renews the lease `name` for `holder` for `ttl` from `now`: granted when nobody
    /// holds it, its holder's time has passed (a new token, one higher), or `holder` holds it
    /// already (same token, later `until`). `None` while another holder's lease runs.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn lease_acquire(&mut self, name: &str, holder: &str, ttl: Duration, now: i64) -> Result<Option<Lease>, CaError>;

    /// The store's clock, Unix seconds: PostgreSQL's `clock_timestamp()`, the one clock every
    /// instance sharing the database sees (`ca serve` compares its own with it before it takes
    /// a lease); an SQLite store is on this machine, so its clock is this machine's.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn clock(&mut self) -> Result<i64, CaError>;

    /// Gives up the lease `name` if `holder` holds it (a clean shutdown): its good-until time
    /// becomes 0, so that any instance takes it at its next try, with the next token. False
    /// when `holder` does not hold it (nothing changes).
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn lease_release(&mut self, name: &str, holder: &str) -> Result<bool, CaError>;

    /// Publishes a CRL: stored when its number is higher than the published one's and, when
    /// `lease` is given, the lease's token is still the current one. False when refused.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn crl_publish(&mut self, crl: &PublishedCrl, lease: Option<&Lease>) -> Result<bool, CaError>;

    /// The published CRL with the highest number.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails.
    fn crl_published(&mut self) -> Result<Option<PublishedCrl>, CaError>;

    /// Whether the store can serve this CA now (`/healthz`): one small query of the published
    /// CRL (what `/ocsp` and `/crl` read), and for SQLite, that `ca move-store` has not fenced
    /// the store off.
    ///
    /// # Errors
    /// [`CaError::Store`] when the database fails; [`CaError::StoreMoved`] for a moved SQLite
    /// store.
    fn check_health(&mut self) -> Result<(), CaError>;
}
