//! What the SQLite and PostgreSQL implementations of [`AcmeStore`](super::acme::AcmeStore) share:
//! the words statuses are stored as (RFC 8555 §7.1.6's), the JSON columns, and the problem
//! documents the clean-up writes.

use super::acme::{AccountStatus, AuthorizationStatus, ChallengeStatus, Identifier, OrderStatus};
use crate::ca::CaError;
use crate::pki::Serial;

/// The `error` of an order that stayed in `processing` longer than allowed (RFC 8555 §6.7).
pub(super) const STUCK_ERROR: &str = r#"{"type":"urn:ietf:params:acme:error:serverInternal","detail":"the order was being finalized for too long and was abandoned","status":500}"#;

/// A damaged ACME row: an error naming the store and what is wrong.
pub(super) fn damaged(store: &str, what: impl std::fmt::Display) -> CaError {
    CaError::Store {
        store: store.into(),
        reason: format!("the ACME state is damaged: {what}"),
    }
}

pub(super) fn account_status(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Valid => "valid",
        AccountStatus::Deactivated => "deactivated",
        AccountStatus::Revoked => "revoked",
    }
}

pub(super) fn account_status_from(text: &str, store: &str) -> Result<AccountStatus, CaError> {
    match text {
        "valid" => Ok(AccountStatus::Valid),
        "deactivated" => Ok(AccountStatus::Deactivated),
        "revoked" => Ok(AccountStatus::Revoked),
        other => Err(damaged(store, format_args!("unknown account status {other:?}"))),
    }
}

pub(super) fn order_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
    }
}

pub(super) fn order_status_from(text: &str, store: &str) -> Result<OrderStatus, CaError> {
    match text {
        "pending" => Ok(OrderStatus::Pending),
        "ready" => Ok(OrderStatus::Ready),
        "processing" => Ok(OrderStatus::Processing),
        "valid" => Ok(OrderStatus::Valid),
        "invalid" => Ok(OrderStatus::Invalid),
        other => Err(damaged(store, format_args!("unknown order status {other:?}"))),
    }
}

pub(super) fn authorization_status(status: AuthorizationStatus) -> &'static str {
    match status {
        AuthorizationStatus::Pending => "pending",
        AuthorizationStatus::Valid => "valid",
        AuthorizationStatus::Invalid => "invalid",
        AuthorizationStatus::Deactivated => "deactivated",
        AuthorizationStatus::Expired => "expired",
        AuthorizationStatus::Revoked => "revoked",
    }
}

pub(super) fn authorization_status_from(text: &str, store: &str) -> Result<AuthorizationStatus, CaError> {
    match text {
        "pending" => Ok(AuthorizationStatus::Pending),
        "valid" => Ok(AuthorizationStatus::Valid),
        "invalid" => Ok(AuthorizationStatus::Invalid),
        "deactivated" => Ok(AuthorizationStatus::Deactivated),
        "expired" => Ok(AuthorizationStatus::Expired),
        "revoked" => Ok(AuthorizationStatus::Revoked),
        other => Err(damaged(store, format_args!("unknown authorization status {other:?}"))),
    }
}

pub(super) fn challenge_status(status: ChallengeStatus) -> &'static str {
    match status {
        ChallengeStatus::Pending => "pending",
        ChallengeStatus::Processing => "processing",
        ChallengeStatus::Valid => "valid",
        ChallengeStatus::Invalid => "invalid",
    }
}

pub(super) fn challenge_status_from(text: &str, store: &str) -> Result<ChallengeStatus, CaError> {
    match text {
        "pending" => Ok(ChallengeStatus::Pending),
        "processing" => Ok(ChallengeStatus::Processing),
        "valid" => Ok(ChallengeStatus::Valid),
        "invalid" => Ok(ChallengeStatus::Invalid),
        other => Err(damaged(store, format_args!("unknown challenge status {other:?}"))),
    }
}

/// The `contact` column: a JSON array of strings.
pub(super) fn contact_to_text(contact: &[String]) -> String {
    serde_json::to_string(contact).unwrap_or_else(|_| "[]".into())
}

pub(super) fn contact_from_text(text: &str, store: &str) -> Result<Vec<String>, CaError> {
    serde_json::from_str(text).map_err(|e| damaged(store, format_args!("an account's contact does not parse ({e})")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdentifierJson {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// The `identifiers` column: a JSON array of `{"type", "value"}` (RFC 8555 §9.7.7's shape).
pub(super) fn identifiers_to_text(identifiers: &[Identifier]) -> String {
    let list: Vec<IdentifierJson> = identifiers
        .iter()
        .map(|i| IdentifierJson {
            kind: i.kind.clone(),
            value: i.value.clone(),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

pub(super) fn identifiers_from_text(text: &str, store: &str) -> Result<Vec<Identifier>, CaError> {
    let list: Vec<IdentifierJson> = serde_json::from_str(text)
        .map_err(|e| damaged(store, format_args!("an order's identifiers do not parse ({e})")))?;
    Ok(list
        .into_iter()
        .map(|i| Identifier {
            kind: i.kind,
            value: i.value,
        })
        .collect())
}

/// The `authorizations` column of an order: a JSON array of identifiers.
pub(super) fn ids_to_text(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

pub(super) fn ids_from_text(text: &str, store: &str) -> Result<Vec<String>, CaError> {
    serde_json::from_str(text).map_err(|e| damaged(store, format_args!("an order's authorizations do not parse ({e})")))
}

/// An order's `certificate` column.
pub(super) fn serial_from(text: Option<String>, store: &str) -> Result<Option<Serial>, CaError> {
    text.map(|t| super::serial_from(&t, store)).transpose()
}

/// `ttl` in whole seconds, at least one (times in the store are Unix seconds).
pub(super) fn ttl_seconds(ttl: std::time::Duration) -> i64 {
    let mut secs = ttl.as_secs();
    if ttl.subsec_nanos() > 0 {
        secs = secs.saturating_add(1);
    }
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// A CRL number as stored.
pub(super) fn crl_number_to_db(number: u64, store: &str) -> Result<i64, CaError> {
    i64::try_from(number).map_err(|_| CaError::Store {
        store: store.into(),
        reason: format!("the CRL number {number} is too large to store"),
    })
}
