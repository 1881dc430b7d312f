//! The ACME (RFC 8555) resources under `/acme/`: directory (§7.1.1), newNonce (§7.2),
//! newAccount and account updates (§7.3), an account's orders list (§7.1.2.1), account key
//! rollover (§7.3.5), newOrder (§7.4, with `replaces` of RFC 9773 §5), authorizations and
//! challenges (§7.5), finalize and certificate download (§7.4, §7.4.2), revokeCert (§7.6) and
//! renewal information (RFC 9773).
//!
//! Handlers are thin: authenticate the JWS ([`Acme::authenticate`]), call the store (through
//! the [`StorePool`], on the blocking pool) or the CA, render JSON. Every rule of a resource
//! cites its RFC section. A fresh `Replay-Nonce` goes on every response under `/acme/` (errors
//! included) and the `Link: <…/directory>;rel="index"` header with it (added by
//! [`acme_headers`]), except a 503 `serverInternal` when the store cannot record a nonce (the
//! request is then not handled) and a 503 for a request past the request timeout. Every error
//! under `/acme/` is a problem document (§6.7), axum's own 404, 405 and 413 included.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ServeConfig;
use super::jws::{self, Jwk, Jws, KeyRef};
use super::pool::StorePool;
use super::problem::{Problem, ProblemType, Subproblem};
use super::ratelimit::{RateLimiter, retry_after_seconds};
use crate::ca::store::acme::{
    Account, AccountStatus, Authorization, AuthorizationStatus, Challenge, ChallengeStatus, Identifier, Order,
    OrderStatus, Rekeyed,
};
use crate::ca::store::{Store, WriteAccess};
use crate::ca::{CaError, CertificateAuthority, IssueRequest, Profile, RevocationReason, SubjectAltName};
use crate::pki::{CertificateInfo, PkiError, Serial, pem};

/// How long a nonce stays good (§7.2 leaves it to the server).
pub(crate) const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a pending order and its authorizations stay good.
pub(crate) const ORDER_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The most identifiers in one order.
pub(crate) const MAX_IDENTIFIERS: usize = 100;
/// The `Retry-After` (seconds) on processing orders and challenges.
const RETRY_AFTER: &str = "1";
/// The most order URLs on one page of an account's orders list (§7.1.2.1).
pub(crate) const ORDERS_PAGE: u32 = 100;

/// The media type of every ACME POST body (§6.2).
const JOSE_JSON: &str = "application/jose+json";

/// What every ACME handler shares.
pub(crate) struct Acme {
    /// The CA that signs.
    pub(crate) ca: Arc<CertificateAuthority>,
    /// The OCSP responder for `/ocsp` (`None`: one is made per request, and fails the same way).
    pub(crate) ocsp: Option<crate::ca::ocsp::Responder>,
    /// The store's ACME state.
    pub(crate) pool: StorePool,
    /// The service's settings.
    pub(crate) config: Arc<ServeConfig>,
    /// `--base-url` without a trailing slash.
    pub(crate) base: String,
    /// Per-account and global request limits.
    pub(crate) limiter: RateLimiter,
    /// Per-client-address limits of the requests that belong to no account (its global limit
    /// is not used: `limiter` has the global one).
    pub(crate) client_limiter: RateLimiter,
    /// The DNS name constraints of the CA's chain, read once.
    pub(crate) constraints: super::NameConstraints,
}

tokio::task_local! {
    /// The `Retry-After` (seconds) a handler asks [`acme_headers`] to send with its answer (a
    /// `rateLimited` problem).
    static RATE_LIMIT_WAIT: Arc<AtomicU64>;
}

/// A `rateLimited` problem (RFC 8555 §6.7) that is sent with `Retry-After: wait`.
fn rate_limited(wait: Duration, whose: &str) -> Problem {
    let seconds = retry_after_seconds(wait);
    let _ = RATE_LIMIT_WAIT.try_with(|slot| slot.store(seconds, Ordering::Relaxed));
    tracing::info!(limit = whose, retry_after = seconds, "rate limited");
    Problem::rate_limited(format!("too many requests ({whose} limit); retry after {seconds} s"))
}

/// A handler's result: a response, or a problem document (§6.7).
type Answer = Result<Response, Problem>;

/// The RFC 3339 form of a Unix time.
fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn lifetime_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// A random URL-safe identifier of 128 bits (§8.1: tokens have at least that much entropy).
pub(crate) fn random_id() -> Result<String, Problem> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Problem::server_internal("the random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A store failure as a problem: logged in full, told to the client as serverInternal (500;
/// 503 with `Retry-After: 1` when the store failed, e.g. its connection was lost and is being
/// replaced).
fn internal(error: CaError) -> Problem {
    internal_ref(&error)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn with_header(mut response: Response, name: header::HeaderName, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Who signed a request.
enum Signer {
    /// An existing account, by `kid` (§6.2).
    Account(Account, Jwk),
    /// A bare key, by `jwk` (newAccount, revokeCert with the certificate's key).
    Key(Jwk),
}

/// Which key forms a resource accepts (§6.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyForm {
    /// `kid` only: everything but the two below.
    Kid,
    /// `jwk` only: newAccount.
    Jwk,
    /// Either: revokeCert.
    Either,
}

impl Acme {
    /// A resource's absolute URL.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn account_url(&self, id: &str) -> String {
        self.url(&format!("/acme/account/{id}"))
    }

    /// Checks and authenticates one POST (§6.2–§6.5): the media type, the JWS, its `url`
    /// against `--base-url` and the path, its nonce (used up), its key form, the account's
    /// status, and the signature.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
        form: KeyForm,
    ) -> Result<(Jws, Signer), Problem> {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if !media.eq_ignore_ascii_case(JOSE_JSON) {
            return Err(
                Problem::malformed(format!("the Content-Type must be {JOSE_JSON} (RFC 8555 §6.2)")).with_status(415),
            );
        }
        let jws = jws::parse(body)?;
        // §6.5: every nonce is good once; taken first, so that no request replays it.
        let nonce = jws
            .nonce
            .clone()
            .ok_or_else(|| Problem::bad_nonce("the JWS has no nonce (RFC 8555 §6.5)"))?;
        let taken = self
            .pool
            .acme(move |store| store.nonce_take(&nonce, now_unix()))
            .await
            .map_err(internal)?;
        if !taken {
            return Err(Problem::bad_nonce(
                "the nonce is unknown, used or expired; get a new one (RFC 8555 §6.5)",
            ));
        }

        // §6.4: the url in the protected header must be the URL the request was sent to (its
        // nonce is used up all the same).
        if jws.url != self.url(path) {
            return Err(Problem::unauthorized(
                "the JWS url is not the URL of this resource (RFC 8555 §6.4)",
            ));
        }
        let signer = match (&jws.key, form) {
            (KeyRef::Jwk(jwk), KeyForm::Jwk | KeyForm::Either) => Signer::Key(jwk.clone()),
            (KeyRef::Kid(kid), KeyForm::Kid | KeyForm::Either) => {
                let prefix = self.account_url("");
                let Some(id) = kid
                    .strip_prefix(&prefix)
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                else {
                    return Err(Problem::account_does_not_exist(
                        "the kid is not an account URL of this server",
                    ));
                };
                let id = id.to_string();
                let account = self
                    .pool
                    .acme(move |store| store.account(&id))
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| Problem::account_does_not_exist("no such account"))?;
                if account.status != AccountStatus::Valid {
                    return Err(Problem::unauthorized(
                        "the account is deactivated or revoked (RFC 8555 §7.3.6)",
                    ));
                }
                let jwk = Jwk::from_json(account.jwk.as_bytes()).map_err(|_| {
                    tracing::error!(account = %account.id, "the stored account key does not parse");
                    Problem::server_internal("the account's key cannot be read")
                })?;
                Signer::Account(account, jwk)
            }
            (KeyRef::Jwk(_), KeyForm::Kid) => {
                return Err(Problem::malformed(
                    "this resource takes a kid, not a jwk (RFC 8555 §6.2)",
                ));
            }
            (KeyRef::Kid(_), KeyForm::Jwk) => {
                return Err(Problem::malformed("newAccount takes a jwk, not a kid (RFC 8555 §7.3)"));
            }
        };
        let key = match &signer {
            Signer::Account(_, jwk) | Signer::Key(jwk) => jwk,
        };
        jws.verify(key)?;
        // After the signature: nobody can spend another account's allowance.
        let now = std::time::Instant::now();
        match &signer {
            Signer::Account(account, _) => self
                .limiter
                .check(&account.id, now)
                .map_err(|wait| rate_limited(wait, "per-account"))?,
            Signer::Key(_) => self.limit_unauthenticated()?,
        }
        Ok((jws, signer))
    }

    /// The limits of a request that belongs to no account: its client address's
    /// ([`ServeConfig::rate_per_client`], the address a PROXY header names behind a balancer)
    /// and the global one.
    fn limit_unauthenticated(&self) -> Result<(), Problem> {
        let now = std::time::Instant::now();
        if let Ok(Some(ip)) = super::server::CLIENT.try_with(|client| *client) {
            self.client_limiter
                .check(&ip.to_string(), now)
                .map_err(|wait| rate_limited(wait, "per-client"))?;
        }
        self.limiter
            .check_global(now)
            .map_err(|wait| rate_limited(wait, "global"))
    }

    /// As [`Acme::authenticate`] for `kid`-signed requests: the account.
    async fn account_request(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<(Jws, Account, Jwk), Problem> {
        match self.authenticate(headers, path, body, KeyForm::Kid).await? {
            (jws, Signer::Account(account, jwk)) => Ok((jws, account, jwk)),
            (_, Signer::Key(_)) => Err(Problem::malformed("this resource takes a kid")),
        }
    }

    fn account_json(&self, account: &Account) -> Value {
        json!({
            "status": account_status(account.status),
            "contact": account.contact,
            "orders": self.url(&format!("/acme/account/{}/orders", account.id)),
        })
    }

    fn order_json(&self, order: &Order) -> Value {
        let mut value = json!({
            "status": order_status(order.status),
            "expires": rfc3339(order.expires),
            "identifiers": order.identifiers.iter().map(identifier_json).collect::<Vec<_>>(),
            "authorizations": order.authorizations.iter().map(|a| self.url(&format!("/acme/authz/{a}"))).collect::<Vec<_>>(),
            "finalize": self.url(&format!("/acme/order/{}/finalize", order.id)),
        });
        if let Some(map) = value.as_object_mut() {
            if let Some(serial) = &order.certificate {
                map.insert("certificate".into(), json!(self.url(&format!("/acme/cert/{serial}"))));
            }
            if let Some(error) = order
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str::<Value>(e).ok())
            {
                map.insert("error".into(), error);
            }
            if let Some(replaces) = &order.replaces {
                map.insert("replaces".into(), json!(replaces));
            }
        }
        value
    }

    fn challenge_json(&self, challenge: &Challenge) -> Value {
        let mut value = json!({
            "type": challenge.kind,
            "url": self.url(&format!("/acme/chall/{}", challenge.id)),
            "status": challenge_status(challenge.status),
            "token": challenge.token,
        });
        if let Some(map) = value.as_object_mut() {
            if let Some(at) = challenge.validated {
                map.insert("validated".into(), json!(rfc3339(at)));
            }
            if let Some(error) = challenge
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str::<Value>(e).ok())
            {
                map.insert("error".into(), error);
            }
        }
        value
    }

    fn authorization_json(&self, authz: &Authorization) -> Value {
        let mut value = json!({
            "status": authorization_status(authz.status),
            "expires": rfc3339(authz.expires),
            "identifier": identifier_json(&authz.identifier),
            "challenges": authz.challenges.iter().map(|c| self.challenge_json(c)).collect::<Vec<_>>(),
        });
        if authz.wildcard
            && let Some(map) = value.as_object_mut()
        {
            map.insert("wildcard".into(), json!(true));
        }
        value
    }

    fn order_response(&self, status: StatusCode, order: &Order) -> Response {
        let mut response = json_response(status, &self.order_json(order));
        response = with_header(
            response,
            header::LOCATION,
            &self.url(&format!("/acme/order/{}", order.id)),
        );
        if order.status == OrderStatus::Processing {
            response = with_header(response, header::RETRY_AFTER, RETRY_AFTER);
        }
        response
    }

    /// The names a dns identifier may not have: outside the CA's name constraints (every CA of
    /// its chain), or outside every `--allow-dns` suffix when some are given.
    fn identifier_refusal(&self, name: &str) -> Option<String> {
        if !self.config.allow_dns.is_empty() && !self.config.allow_dns.iter().any(|suffix| dns_within(name, suffix)) {
            return Some(format!("{name} is outside every --allow-dns suffix of this server"));
        }
        for ca in self.constraints.cas() {
            if !ca.permitted.is_empty() && !ca.permitted.iter().any(|domain| dns_within(name, domain)) {
                return Some(format!(
                    "{name} is outside the name constraints of the CA \"{}\"",
                    ca.subject
                ));
            }
            if let Some(domain) = ca.excluded.iter().find(|domain| dns_within(name, domain)) {
                return Some(format!(
                    "{name} is excluded by the CA \"{}\" (under {domain})",
                    ca.subject
                ));
            }
        }
        None
    }
}

impl Acme {
    /// An `ip` identifier's address (RFC 8738 §3): the canonical text of an IPv4 or IPv6
    /// address (RFC 1123 §2.1, RFC 5952 §4), not IPv4-mapped, not special-purpose (other than
    /// plain loopback; [`super::address`]), inside an `--allow-ip` network and the CA's IP name
    /// constraints (every CA of its chain). The error says why not, and for a text that is an
    /// address in another form (`127.000.0.1`, `127.1`, `0x7f.0.0.1`) what the canonical form
    /// is (both readings for `0177.0.0.1`, whose leading 0 means octal to some software only).
    fn ip_identifier(&self, value: &str) -> Result<std::net::IpAddr, String> {
        let shown = crate::text::printable(value);
        let ip: std::net::IpAddr = match value.parse() {
            Ok(ip) => ip,
            Err(_) => {
                return Err(match super::address::read_address(value) {
                    Some(reading) => format!(
                        "\"{shown}\" is not an address in canonical form (RFC 8738 §3: for IPv4, RFC 1123 §2.1's four \
                         decimal numbers without leading zeros): {}",
                        reading.advice()
                    ),
                    None => format!("\"{shown}\" is not an IPv4 or IPv6 address"),
                });
            }
        };
        let special = super::address::special_purpose(ip).filter(|special| !special.is_plain_loopback());
        if let std::net::IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
            && special.is_none_or(|special| special.kind == super::address::SpecialPurpose::Loopback)
        {
            return Err(format!(
                "{ip} is an IPv4-mapped IPv6 address: order the IPv4 address {v4}"
            ));
        }
        if let Some(special) = special {
            return Err(format!(
                "{ip} is a special-purpose address, {special}: the validation authority never dials it, so no \
                 certificate is issued for it"
            ));
        }
        if ip.to_string() != value {
            return Err(format!(
                "\"{shown}\" is not written in canonical form (RFC 8738 §3): write it {ip}"
            ));
        }
        if self.config.va.allow_ip.is_empty() {
            return Err("this server issues for no IP address (it was started without --allow-ip)".into());
        }
        if !self.config.va.allow_ip.iter().any(|network| network.contains(ip)) {
            return Err(format!("{ip} is outside every --allow-ip network of this server"));
        }
        for ca in self.constraints.cas() {
            if !ca.permitted_ip.is_empty() && !ca.permitted_ip.iter().any(|network| network.contains(ip)) {
                return Err(format!(
                    "{ip} is outside the name constraints of the CA \"{}\"",
                    ca.subject
                ));
            }
            if ca.excluded_ip.iter().any(|network| network.contains(ip)) {
                return Err(format!("{ip} is excluded by the CA \"{}\"", ca.subject));
            }
        }
        Ok(ip)
    }
}

/// Why the value of a dns identifier is not a DNS name because it is an IP address, in any
/// spelling software reads as one (`127.0.0.1`, `127.1`, `0177.0.0.1`, `[::1]`, `1.2.3.4.`), or
/// ends in an all-digit label as addresses do: one message, with the hint to order an ip
/// identifier (RFC 8738 §3) and its canonical value. `None` for any other value.
pub(super) fn address_as_dns_name(value: &str) -> Option<String> {
    let shown = crate::text::printable(value);
    if let Some(reading) = super::address::read_address(value) {
        return Some(format!(
            "\"{shown}\" is an IP address, not a DNS name: order it as an ip identifier, {reading} (RFC 8738 §3)"
        ));
    }
    value
        .strip_suffix('.')
        .unwrap_or(value)
        .rsplit('.')
        .next()
        .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        .then(|| {
            format!(
                "\"{shown}\" is not a DNS name: its last label is all digits, as in an IP address (an address is \
                 ordered as an ip identifier, in canonical form: RFC 8738 §3)"
            )
        })
}

/// True when DNS name `name` is `domain` or below it (whole labels; a leading dot in `domain`
/// means below it only).
pub(super) fn dns_within(name: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some(below) = domain.strip_prefix('.') {
        return name.strip_suffix(below).is_some_and(|head| head.ends_with('.'));
    }
    name == domain
        || name
            .strip_suffix(domain.as_str())
            .is_some_and(|head| head.ends_with('.'))
}

fn identifier_json(identifier: &Identifier) -> Value {
    json!({"type": identifier.kind, "value": identifier.value})
}

fn account_status(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Valid => "valid",
        AccountStatus::Deactivated => "deactivated",
        AccountStatus::Revoked => "revoked",
    }
}

fn order_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
    }
}

fn authorization_status(status: AuthorizationStatus) -> &'static str {
    match status {
        AuthorizationStatus::Pending => "pending",
        AuthorizationStatus::Valid => "valid",
        AuthorizationStatus::Invalid => "invalid",
        AuthorizationStatus::Deactivated => "deactivated",
        AuthorizationStatus::Expired => "expired",
        AuthorizationStatus::Revoked => "revoked",
    }
}

fn challenge_status(status: ChallengeStatus) -> &'static str {
    match status {
        ChallengeStatus::Pending => "pending",
        ChallengeStatus::Processing => "processing",
        ChallengeStatus::Valid => "valid",
        ChallengeStatus::Invalid => "invalid",
    }
}

/// Shared state of the handlers.
pub(crate) type Shared = Arc<Acme>;

/// `GET /acme/directory` (§7.1.1).
pub(crate) async fn directory(State(acme): State<Shared>) -> Response {
    let body = json!({
        "newNonce": acme.url("/acme/new-nonce"),
        "newAccount": acme.url("/acme/new-account"),
        "newOrder": acme.url("/acme/new-order"),
        "revokeCert": acme.url("/acme/revoke-cert"),
        "keyChange": acme.url("/acme/key-change"),
        "renewalInfo": acme.url("/acme/renewal-info"),
        "meta": {
            "externalAccountRequired": false,
        },
    });
    json_response(StatusCode::OK, &body)
}

/// `HEAD` / `GET /acme/new-nonce` (§7.2): 200 / 204, the nonce itself added by
/// [`acme_headers`].
pub(crate) async fn new_nonce(State(acme): State<Shared>, method: Method) -> Answer {
    acme.limit_unauthenticated()?;
    let status = if method == Method::HEAD {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    Ok((status, [(header::CACHE_CONTROL, "no-store")]).into_response())
}

/// Adds a fresh `Replay-Nonce` (§6.5) and the directory `Link` (§7.1) to every response under
/// `/acme/`, errors included, and makes every error a problem document (§6.7).
///
/// The nonce is made and recorded before the request is handled: when the store cannot record
/// one, the request is not handled and the answer is `serverInternal` with status 503 and
/// `Retry-After: 1`, the one response without a `Replay-Nonce` (a success without one would
/// leave the client unable to send its next request).
pub(crate) async fn acme_headers(
    State(acme): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let nonce = match random_id() {
        Ok(nonce) => {
            let stored = nonce.clone();
            let expires = now_unix().saturating_add(lifetime_secs(NONCE_LIFETIME));
            match acme.pool.acme(move |store| store.nonce_put(&stored, expires)).await {
                Ok(()) => HeaderValue::from_str(&nonce).ok(),
                Err(error) => {
                    tracing::error!(error = %error, "cannot record a nonce; answering 503");
                    None
                }
            }
        }
        Err(problem) => {
            tracing::error!(%problem, "cannot make a nonce; answering 503");
            None
        }
    };
    let mut response = match &nonce {
        Some(_) => {
            let retry_after = Arc::new(AtomicU64::new(0));
            let response = RATE_LIMIT_WAIT.scope(Arc::clone(&retry_after), next.run(request)).await;
            let mut response = problem_for_plain_error(response);
            let wait = retry_after.load(Ordering::Relaxed);
            if wait > 0
                && let Ok(value) = HeaderValue::from_str(&wait.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        None => {
            let mut response = Problem::server_internal(
                "the server cannot make a nonce now (its store does not answer); try again later",
            )
            .with_status(503)
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    };
    if let Some(nonce) = nonce {
        response.headers_mut().insert("replay-nonce", nonce);
    }
    let link = format!("<{}>;rel=\"index\"", acme.url("/acme/directory"));
    if let Ok(value) = HeaderValue::from_str(&link) {
        response.headers_mut().append(header::LINK, value);
    }
    response
}

/// An error response that is not a problem document (axum's own answers: 413 when the body
/// is over [`ServeConfig::body_limit`], 405 for a method a resource does not take, 400 or 415
/// from an extractor) as a `malformed` problem (RFC 8555 §6.7) with the same status; the
/// `Allow` header of a 405 is added afterwards by axum's method router (see
/// [`name_allowed_methods`]). Problem documents and successes pass unchanged.
fn problem_for_plain_error(response: Response) -> Response {
    let status = response.status();
    let is_problem = is_problem(&response);
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than this server accepts".to_string(),
        // axum's method router sets `Allow` after this middleware has run:
        // [`name_allowed_methods`], outside it, adds the methods to the detail.
        StatusCode::METHOD_NOT_ALLOWED => "this resource does not take that method".to_string(),
        StatusCode::NOT_FOUND => "no such ACME resource".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "the request's Content-Type is not accepted here".to_string(),
        other => format!("the request was refused ({other})"),
    };
    let kind = if status.is_server_error() {
        ProblemType::ServerInternal
    } else {
        ProblemType::Malformed
    };
    Problem::new(kind, detail).with_status(status.as_u16()).into_response()
}

/// Whether `response` is a problem document (RFC 7807 `application/problem+json`).
fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(super::problem::CONTENT_TYPE.as_bytes()))
}

/// Names the methods a resource takes in the detail of a 405 problem document, from the
/// `Allow` header (RFC 9110 §15.5.6) that axum's method router adds once the ACME middleware
/// has answered; applied around the whole router (server.rs), since a layer on its routes runs
/// before the header is set. Other responses pass unchanged.
pub(crate) fn name_allowed_methods(response: Response) -> Response {
    let is_problem = is_problem(&response);
    let allowed = response
        .headers()
        .get(header::ALLOW)
        .and_then(|value| value.to_str().ok())
        .map(|methods| methods.split(',').map(str::trim).collect::<Vec<_>>().join(", "));
    let (true, true, Some(allowed)) = (response.status() == StatusCode::METHOD_NOT_ALLOWED, is_problem, allowed) else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let body = Problem::new(
        ProblemType::Malformed,
        format!("this resource does not take that method (allowed: {allowed})"),
    )
    .with_status(405)
    .to_json();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NewAccountPayload {
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    only_return_existing: bool,
}

/// Checks contact URLs (§7.3): `mailto:` only, at most a few, printable.
fn check_contacts(contact: &[String]) -> Result<(), Problem> {
    if contact.len() > 8 {
        return Err(Problem::new(ProblemType::InvalidContact, "at most 8 contact URLs"));
    }
    for c in contact {
        let Some(address) = c.strip_prefix("mailto:") else {
            return Err(Problem::new(
                ProblemType::UnsupportedContact,
                "only mailto: contacts are supported",
            ));
        };
        if address.is_empty()
            || address.len() > 254
            || !address.contains('@')
            || address
                .chars()
                .any(|ch| ch.is_control() || ch.is_whitespace() || ch == ',')
        {
            return Err(Problem::new(
                ProblemType::InvalidContact,
                "a contact is not a single e-mail address",
            ));
        }
    }
    Ok(())
}

/// `POST /acme/new-account` (§7.3): signed with `jwk`; an existing account for the key is
/// returned with 200, a new one is made with 201; `onlyReturnExisting` never makes one.
pub(crate) async fn new_account(State(acme): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    let (jws, signer) = acme
        .authenticate(&headers, "/acme/new-account", &body, KeyForm::Jwk)
        .await?;
    let Signer::Key(jwk) = signer else {
        return Err(Problem::malformed("newAccount takes a jwk"));
    };
    let payload: NewAccountPayload = jws.payload_json()?;
    let thumbprint = jwk.thumbprint();
    let lookup = thumbprint.clone();
    let existing = acme
        .pool
        .acme(move |store| store.account_by_thumbprint(&lookup))
        .await
        .map_err(internal)?;
    if let Some(account) = existing {
        let response = json_response(StatusCode::OK, &acme.account_json(&account));
        return Ok(with_header(response, header::LOCATION, &acme.account_url(&account.id)));
    }
    if payload.only_return_existing {
        return Err(Problem::account_does_not_exist(
            "no account has this key (onlyReturnExisting)",
        ));
    }
    check_contacts(&payload.contact)?;
    let account = Account {
        id: random_id()?,
        thumbprint,
        jwk: jwk.to_json(),
        contact: payload.contact,
        status: AccountStatus::Valid,
        created: now_unix(),
    };
    let (account, created) = acme
        .pool
        .acme(move |store| store.account_create(&account))
        .await
        .map_err(internal)?;
    if created {
        tracing::info!(account = %account.id, "account created");
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let response = json_response(status, &acme.account_json(&account));
    Ok(with_header(response, header::LOCATION, &acme.account_url(&account.id)))
}

#[derive(Deserialize, Default)]
struct AccountUpdatePayload {
    contact: Option<Vec<String>>,
    status: Option<String>,
}

/// `POST /acme/account/{id}` (§7.3.2, §7.3.6): POST-as-GET reads the account; `contact`
/// replaces its contacts; `status: deactivated` deactivates it. Only the account itself may.
pub(crate) async fn account(
    State(acme): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let path = format!("/acme/account/{id}");
    let (jws, mut account, _) = acme.account_request(&headers, &path, &body).await?;
    if account.id != id {
        return Err(Problem::unauthorized("an account may only read or change itself"));
    }
    if !jws.is_post_as_get() {
        let update: AccountUpdatePayload = jws.payload_json()?;
        if let Some(contact) = update.contact {
            check_contacts(&contact)?;
            account.contact = contact;
        }
        match update.status.as_deref() {
            None => {}
            Some("deactivated") => account.status = AccountStatus::Deactivated,
            Some(_) => return Err(Problem::malformed("an account's status may only be set to deactivated")),
        }
        let stored = account.clone();
        acme.pool
            .acme(move |store| store.account_update(&stored))
            .await
            .map_err(internal)?;
        tracing::info!(account = %account.id, status = account_status(account.status), "account updated");
    }
    let response = json_response(StatusCode::OK, &acme.account_json(&account));
    Ok(with_header(response, header::LOCATION, &acme.account_url(&account.id)))
}

/// `POST /acme/account/{id}/orders[?cursor=CREATED.ORDER]` (§7.1.2.1, POST-as-GET by that
/// account only, else `unauthorized`): `{"orders": [order URLs]}`, the account's orders that
/// are not invalid, newest first, at most [`ORDERS_PAGE`] of them; when there may be more, a
/// `Link: <…?cursor=…>;rel="next"` header names the next page (the cursor is the last order's
/// creation time and identifier). A cursor that does not parse is `malformed`.
pub(crate) async fn account_orders(
    State(acme): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut path = format!("/acme/account/{id}/orders");
    if let Some(query) = &query {
        path = format!("{path}?{query}");
    }
    let (jws, account, _) = acme.account_request(&headers, &path, &body).await?;
    if account.id != id {
        return Err(Problem::unauthorized(
            "an account's orders may only be read by that account",
        ));
    }
    if !jws.is_post_as_get() {
        return Err(Problem::malformed(
            "the orders list is read with POST-as-GET (an empty payload)",
        ));
    }
    let after = match query.as_deref() {
        None => None,
        Some(query) => Some(parse_cursor(query)?),
    };
    let account_id = account.id.clone();
    let orders = acme
        .pool
        .acme(move |store| {
            let after = after.as_ref().map(|(created, id)| (*created, id.as_str()));
            store.orders_of_account(&account_id, after, ORDERS_PAGE)
        })
        .await
        .map_err(internal)?;
    let urls: Vec<String> = orders
        .iter()
        .map(|o| acme.url(&format!("/acme/order/{}", o.id)))
        .collect();
    let mut response = json_response(StatusCode::OK, &json!({ "orders": urls }));
    let full = u32::try_from(orders.len()).is_ok_and(|n| n >= ORDERS_PAGE);
    if let (true, Some(last)) = (full, orders.last()) {
        let next = acme.url(&format!(
            "/acme/account/{}/orders?cursor={}.{}",
            account.id, last.created, last.id
        ));
        response = with_header(response, header::LINK, &format!("<{next}>;rel=\"next\""));
    }
    Ok(response)
}

/// The `cursor=CREATED.ORDER` query of an orders-list page.
fn parse_cursor(query: &str) -> Result<(i64, String), Problem> {
    let bad = || Problem::malformed("the orders list takes one query parameter, cursor=CREATED.ORDER");
    let cursor = query.strip_prefix("cursor=").ok_or_else(bad)?;
    let (created, id) = cursor.split_once('.').ok_or_else(bad)?;
    let created: i64 = created.parse().map_err(|_| bad())?;
    let well_formed = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(bad());
    }
    Ok((created, id.to_string()))
}

/// The inner payload of a key change (RFC 8555 §7.3.5).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyChangePayload {
    account: String,
    old_key: Value,
}

/// `POST /acme/key-change` (RFC 8555 §7.3.5): account key rollover. The outer JWS is signed by
/// the account's current key (`kid`); its payload is the inner JWS, signed by the new key
/// carried as `jwk`, with no nonce, the same `url` (else `malformed`), and the payload
/// `{"account": account URL, "oldKey": current key}`: `account` must be the outer `kid` (else
/// `unauthorized`), `oldKey` the account's current key (else `unauthorized`). A new key that
/// another account has is refused with 409 (`malformed`) and that account's URL in `Location`;
/// the new key equal to the current one is `malformed`. The store changes the key in one
/// conditional statement (thumbprints are unique). Answers the account object.
pub(crate) async fn key_change(State(acme): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    let (outer, account, _) = acme.account_request(&headers, "/acme/key-change", &body).await?;
    if outer.is_post_as_get() {
        return Err(Problem::malformed(
            "a key change carries the inner JWS as its payload (RFC 8555 §7.3.5)",
        ));
    }
    let inner = jws::parse_inner(&outer.payload)?;
    // The inner JWS is signed by the new key, which it carries (§7.3.5).
    let new_key = inner.verify_embedded()?.clone();
    if inner.url != outer.url {
        return Err(Problem::malformed(
            "the inner JWS's url differs from the outer JWS's (RFC 8555 §7.3.5)",
        ));
    }
    let change: KeyChangePayload = inner.payload_json()?;
    if change.account != acme.account_url(&account.id) {
        return Err(Problem::unauthorized(
            "the key change's account is not the account that signed the request (RFC 8555 §7.3.5)",
        ));
    }
    let old_key = serde_json::to_vec(&change.old_key)
        .ok()
        .and_then(|json| Jwk::from_json(&json).ok())
        .ok_or_else(|| Problem::malformed("the key change's oldKey is not a JWK this server accepts"))?;
    if old_key.thumbprint() != account.thumbprint {
        return Err(Problem::unauthorized(
            "the key change's oldKey is not the account's current key (RFC 8555 §7.3.5)",
        ));
    }
    let new_thumbprint = new_key.thumbprint();
    if new_thumbprint == account.thumbprint {
        return Err(Problem::malformed("the new key is the account's current key"));
    }
    let (id, old, new, jwk) = (
        account.id.clone(),
        account.thumbprint.clone(),
        new_thumbprint.clone(),
        new_key.to_json(),
    );
    let rekeyed = acme
        .pool
        .acme(move |store| store.account_rekey(&id, &old, &new, &jwk))
        .await
        .map_err(internal)?;
    match rekeyed {
        Rekeyed::Done => {}
        Rekeyed::KeyInUse(holder) => {
            let response = Problem::malformed("the new key is the key of another account (RFC 8555 §7.3.5)")
                .with_status(409)
                .into_response();
            return Ok(with_header(response, header::LOCATION, &acme.account_url(&holder)));
        }
        Rekeyed::Stale => {
            return Err(Problem::unauthorized(
                "the account's key changed while this request was handled; sign with its current key",
            ));
        }
    }
    tracing::info!(account = %account.id, "account key changed");
    let account = Account {
        thumbprint: new_thumbprint,
        jwk: new_key.to_json(),
        ..account
    };
    let response = json_response(StatusCode::OK, &acme.account_json(&account));
    Ok(with_header(response, header::LOCATION, &acme.account_url(&account.id)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrderPayload {
    identifiers: Vec<IdentifierPayload>,
    not_before: Option<String>,
    not_after: Option<String>,
    replaces: Option<String>,
}

#[derive(Deserialize)]
struct IdentifierPayload {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// `POST /acme/new-order` (§7.4): dns identifiers, each valid, within the CA's name
/// constraints and `--allow-dns`, and ip identifiers ([`Acme::ip_identifier`]); one
/// authorization per identifier with an http-01 and a tls-alpn-01 challenge. Refused
/// identifiers are answered together ([`Problem::for_identifiers`]). `notBefore` / `notAfter` are refused (the lifetime is
/// `--acme-hours`). `replaces` (RFC 9773 §5) must name a certificate of this account
/// (`malformed`) that no other order that is not invalid replaces (`alreadyReplaced`, 409,
/// decided by the store: of two such orders at once, one is created).
pub(crate) async fn new_order(State(acme): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    let (jws, account, _) = acme.account_request(&headers, "/acme/new-order", &body).await?;
    let payload: NewOrderPayload = jws.payload_json()?;
    if payload.not_before.is_some() || payload.not_after.is_some() {
        return Err(Problem::malformed(
            "notBefore and notAfter are not supported: certificates live --acme-hours from issuance",
        ));
    }
    if payload.identifiers.is_empty() {
        return Err(Problem::malformed("an order needs at least one identifier"));
    }
    if payload.identifiers.len() > MAX_IDENTIFIERS {
        return Err(Problem::malformed(format!(
            "an order has at most {MAX_IDENTIFIERS} identifiers"
        )));
    }
    let mut identifiers: Vec<Identifier> = Vec::new();
    let mut refused = Vec::new();
    for requested in &payload.identifiers {
        let shown = Identifier {
            kind: requested.kind.clone(),
            value: requested.value.clone(),
        };
        if requested.kind == "ip" {
            match acme.ip_identifier(&requested.value) {
                Ok(ip) => {
                    let value = ip.to_string();
                    if !identifiers.iter().any(|i| i.kind == "ip" && i.value == value) {
                        identifiers.push(Identifier {
                            kind: "ip".into(),
                            value,
                        });
                    }
                }
                Err(reason) => refused.push(Subproblem::new(ProblemType::RejectedIdentifier, reason, Some(shown))),
            }
            continue;
        }
        if requested.kind != "dns" {
            refused.push(Subproblem::new(
                ProblemType::UnsupportedIdentifier,
                "only dns and ip identifiers are supported",
                Some(shown),
            ));
            continue;
        }
        if let Some(reason) = address_as_dns_name(&requested.value) {
            refused.push(Subproblem::new(ProblemType::RejectedIdentifier, reason, Some(shown)));
            continue;
        }
        if requested.value.starts_with("*.") {
            refused.push(Subproblem::new(
                ProblemType::RejectedIdentifier,
                "wildcard names need dns-01, which this server does not offer",
                Some(shown),
            ));
            continue;
        }
        let name = match SubjectAltName::check("dns", &requested.value) {
            Ok(SubjectAltName::Dns(name)) if name == requested.value.to_ascii_lowercase() => name,
            Ok(_) | Err(_) => {
                refused.push(Subproblem::new(
                    ProblemType::RejectedIdentifier,
                    "not a valid DNS name (lower-case A-labels, no trailing dot)",
                    Some(shown),
                ));
                continue;
            }
        };
        if let Some(reason) = acme.identifier_refusal(&name) {
            refused.push(Subproblem::new(ProblemType::RejectedIdentifier, reason, Some(shown)));
            continue;
        }
        if !identifiers.iter().any(|i| i.value == name) {
            identifiers.push(Identifier {
                kind: "dns".into(),
                value: name,
            });
        }
    }
    if !refused.is_empty() {
        return Err(Problem::for_identifiers(refused));
    }
    if let Some(replaces) = &payload.replaces {
        acme.check_replaces(&account, replaces, &identifiers).await?;
    }
    let now = now_unix();
    let expires = now.saturating_add(lifetime_secs(ORDER_LIFETIME));
    let order_id = random_id()?;
    let mut authorizations = Vec::with_capacity(identifiers.len());
    for identifier in &identifiers {
        let mut challenges = Vec::with_capacity(2);
        for kind in ["http-01", "tls-alpn-01"] {
            challenges.push(Challenge {
                id: random_id()?,
                kind: kind.into(),
                token: random_id()?,
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
            });
        }
        authorizations.push(Authorization {
            id: random_id()?,
            order_id: order_id.clone(),
            account_id: account.id.clone(),
            identifier: identifier.clone(),
            wildcard: false,
            status: AuthorizationStatus::Pending,
            expires,
            challenges,
        });
    }
    let order = Order {
        id: order_id,
        account_id: account.id.clone(),
        status: OrderStatus::Pending,
        identifiers,
        authorizations: authorizations.iter().map(|a| a.id.clone()).collect(),
        expires,
        not_before: None,
        not_after: None,
        error: None,
        certificate: None,
        replaces: payload.replaces.clone(),
        created: now,
    };
    let stored = order.clone();
    let created = acme
        .pool
        .acme(move |store| store.order_create(&stored, &authorizations))
        .await
        .map_err(internal)?;
    if !created {
        return Err(Problem::new(
            ProblemType::AlreadyReplaced,
            "the certificate named in replaces is already replaced by another order that is not invalid \
             (RFC 9773 §5); renew without replaces, or finish that order",
        ));
    }
    let names: Vec<&str> = order.identifiers.iter().map(|i| i.value.as_str()).collect();
    tracing::info!(account = %account.id, order = %order.id, identifiers = ?names, "order created");
    Ok(acme.order_response(StatusCode::CREATED, &order))
}

impl Acme {
    /// RFC 9773 §5: the certificate an order replaces must be one of this account's and share
    /// at least one identifier with the new order (`malformed` otherwise).
    async fn check_replaces(
        &self,
        account: &Account,
        replaces: &str,
        identifiers: &[Identifier],
    ) -> Result<(), Problem> {
        let id = super::ari::CertId::parse(replaces)?;
        let serial = id.serial();
        let order = self
            .pool
            .acme(move |store| store.order_by_certificate(&serial))
            .await
            .map_err(internal)?;
        match order {
            Some(order) if order.account_id == account.id => {
                if order.identifiers.iter().any(|old| identifiers.contains(old)) {
                    Ok(())
                } else {
                    Err(Problem::malformed(
                        "the certificate named in replaces shares no identifier with this order (RFC 9773 §5); \
                         order without replaces for other names",
                    ))
                }
            }
            _ => Err(Problem::malformed(
                "replaces names no certificate issued to this account (RFC 9773 §5)",
            )),
        }
    }

    /// The order `id` if it belongs to `account`.
    async fn own_order(&self, account: &Account, id: String) -> Result<Order, Problem> {
        let order = self.pool.acme(move |store| store.order(&id)).await.map_err(internal)?;
        match order {
            Some(order) if order.account_id == account.id => Ok(order),
            Some(_) => Err(Problem::unauthorized("the order belongs to another account")),
            None => Err(Problem::not_found("no such order")),
        }
    }
}

/// `POST /acme/order/{id}` (POST-as-GET, §7.4).
pub(crate) async fn order(
    State(acme): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (jws, account, _) = acme
        .account_request(&headers, &format!("/acme/order/{id}"), &body)
        .await?;
    if !jws.is_post_as_get() {
        return Err(Problem::malformed(
            "an order is read with POST-as-GET (an empty payload)",
        ));
    }
    let order = acme.own_order(&account, id).await?;
    Ok(acme.order_response(StatusCode::OK, &order))
}

/// `POST /acme/authz/{id}` (§7.5): POST-as-GET reads it; `{"status": "deactivated"}`
/// deactivates it (§7.5.2).
pub(crate) async fn authorization(
    State(acme): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (jws, account, _) = acme
        .account_request(&headers, &format!("/acme/authz/{id}"), &body)
        .await?;
    let lookup = id.clone();
    let authz = acme
        .pool
        .acme(move |store| store.authorization(&lookup))
        .await
        .map_err(internal)?;
    let mut authz = match authz {
        Some(authz) if authz.account_id == account.id => authz,
        Some(_) => return Err(Problem::unauthorized("the authorization belongs to another account")),
        None => return Err(Problem::not_found("no such authorization")),
    };
    if !jws.is_post_as_get() {
        #[derive(Deserialize)]
        struct Deactivate {
            status: String,
        }
        let request: Deactivate = jws.payload_json()?;
        if request.status != "deactivated" {
            return Err(Problem::malformed(
                "an authorization's status may only be set to deactivated",
            ));
        }
        let target = id.clone();
        let changed = acme
            .pool
            .acme(move |store| store.authorization_deactivate(&target))
            .await
            .map_err(internal)?;
        if !changed {
            return Err(Problem::malformed(
                "only a pending or valid authorization can be deactivated",
            ));
        }
        authz.status = AuthorizationStatus::Deactivated;
        tracing::info!(account = %account.id, authorization = %id, "authorization deactivated");
    }
    let mut response = json_response(StatusCode::OK, &acme.authorization_json(&authz));
    if authz.challenges.iter().any(|c| c.status == ChallengeStatus::Processing) {
        response = with_header(response, header::RETRY_AFTER, RETRY_AFTER);
    }
    Ok(response)
}

/// `POST /acme/chall/{id}` (§7.5.1): POST-as-GET reads it; `{}` asks for validation, claimed
/// once in the store (whichever instance gets the request) and done in the background by the
/// validation authority; the challenge is returned as `processing`.
pub(crate) async fn challenge(
    State(acme): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (jws, account, jwk) = acme
        .account_request(&headers, &format!("/acme/chall/{id}"), &body)
        .await?;
    let lookup = id.clone();
    let found = acme
        .pool
        .acme(move |store| store.challenge(&lookup))
        .await
        .map_err(internal)?;
    let (mut challenge, authz) = match found {
        Some((challenge, authz)) if authz.account_id == account.id => (challenge, authz),
        Some(_) => return Err(Problem::unauthorized("the challenge belongs to another account")),
        None => return Err(Problem::not_found("no such challenge")),
    };
    if !jws.is_post_as_get() {
        // §7.5.1: the payload is an empty object.
        let _: serde_json::Map<String, Value> = jws.payload_json()?;
        let target = id.clone();
        let now = now_unix();
        let claimed = acme
            .pool
            .acme(move |store| store.challenge_claim(&target, now))
            .await
            .map_err(internal)?;
        if claimed {
            challenge.status = ChallengeStatus::Processing;
            tracing::info!(
                account = %account.id,
                order = %authz.order_id,
                identifier = %authz.identifier.value,
                challenge = %challenge.kind,
                "validation started"
            );
            let task_acme = Arc::clone(&acme);
            let key_authorization = jws::key_authorization(&challenge.token, &jwk);
            let kind = challenge.kind.clone();
            let token = challenge.token.clone();
            let identifier = authz.identifier.value.clone();
            let order_id = authz.order_id.clone();
            tokio::spawn(async move {
                task_acme
                    .validate(id, kind, identifier, token, key_authorization, order_id)
                    .await;
            });
        } else if challenge.status == ChallengeStatus::Pending {
            // The authorization is no longer pending (valid through another challenge, or
            // expired): this one cannot start.
            let reread = challenge.id.clone();
            if let Some((now_challenge, _)) = acme
                .pool
                .acme(move |store| store.challenge(&reread))
                .await
                .map_err(internal)?
            {
                challenge = now_challenge;
            }
        }
    }
    let mut response = json_response(StatusCode::OK, &acme.challenge_json(&challenge));
    response = with_header(
        response,
        header::LINK,
        &format!("<{}>;rel=\"up\"", acme.url(&format!("/acme/authz/{}", authz.id))),
    );
    if challenge.status == ChallengeStatus::Processing {
        response = with_header(response, header::RETRY_AFTER, RETRY_AFTER);
    }
    Ok(response)
}

impl Acme {
    /// Validates one claimed challenge and records the outcome (`challenge_finish`).
    async fn validate(
        &self,
        id: String,
        kind: String,
        identifier: String,
        token: String,
        key_authorization: String,
        order_id: String,
    ) {
        let outcome = match super::va::ChallengeKind::parse(&kind) {
            _ if self.config.va_always_valid => Ok(()),
            Some(challenge_kind) => {
                super::va::validate(&self.config.va, challenge_kind, &identifier, &token, &key_authorization).await
            }
            None => Err(Problem::malformed(format!(
                "{kind} is not a challenge this server validates"
            ))),
        };
        let (valid, error) = match &outcome {
            Ok(()) => (true, None),
            Err(problem) => (false, Some(String::from_utf8_lossy(&problem.to_json()).into_owned())),
        };
        match &outcome {
            Ok(()) => tracing::info!(order = %order_id, identifier = %identifier, challenge = %kind, "validated"),
            Err(problem) => tracing::info!(
                order = %order_id,
                identifier = %identifier,
                challenge = %kind,
                problem = %problem,
                "validation failed"
            ),
        }
        let now = now_unix();
        if let Err(error) = self
            .pool
            .acme(move |store| store.challenge_finish(&id, valid, error.as_deref(), now))
            .await
        {
            tracing::error!(order = %order_id, error = %error, "cannot record a validation");
        }
    }
}

#[derive(Deserialize)]
struct FinalizePayload {
    csr: String,
}

fn base64url(text: &str) -> Result<Vec<u8>, Problem> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| Problem::malformed("a value is not base64url"))
}

/// An identifier as finalize compares it: its type (`dns`, `ip`) and canonical value.
type TypedName = (String, String);

/// The names a CSR asks for, typed: its dNSName SANs (lower case), its iPAddress SANs
/// (canonical text), and its common name (an address if it parses as one, else a DNS name);
/// and the common name alone.
fn csr_names(der: &[u8]) -> Result<(BTreeSet<TypedName>, Option<TypedName>), Problem> {
    use x509_parser::prelude::FromDer as _;
    let bad = |why: &str| Problem::new(ProblemType::BadCsr, why.to_string());
    let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|_| bad("the CSR is not a PKCS#10 request"))?;
    let mut names = BTreeSet::new();
    // A common name is an IP address (canonical text) or a DNS name (lower case).
    let common_name = request
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(|cn| match cn.parse::<std::net::IpAddr>() {
            Ok(ip) => ("ip".to_string(), ip.to_string()),
            Err(_) => ("dns".to_string(), cn.to_ascii_lowercase()),
        });
    if let Some(cn) = &common_name {
        names.insert(cn.clone());
    }
    if let Some(extensions) = request.requested_extensions() {
        for extension in extensions {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            names.insert(("dns".to_string(), dns.to_ascii_lowercase()));
                        }
                        x509_parser::extensions::GeneralName::IPAddress(octets) => {
                            let ip = match octets.len() {
                                4 => <[u8; 4]>::try_from(*octets).ok().map(std::net::IpAddr::from),
                                16 => <[u8; 16]>::try_from(*octets).ok().map(std::net::IpAddr::from),
                                _ => None,
                            }
                            .ok_or_else(|| bad("the CSR has an iPAddress of neither 4 nor 16 octets"))?;
                            names.insert(("ip".to_string(), ip.to_string()));
                        }
                        _ => {
                            return Err(bad(
                                "the CSR asks for a name that is neither a DNS name nor an IP address",
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok((names, common_name))
}

/// The checks of a finalize request's CSR (DER), made before the order is claimed so that a
/// refused CSR leaves the order `ready` (RFC 8555 §7.4): the request is well formed, its key is
/// one the CA issues for (Ed25519, ECDSA P-256 or P-384, RSA of 2048 to 8192 bits) and its
/// self-signature verifies; its names (dNSName and iPAddress SANs and a common name, typed) are
/// exactly `wanted`;
/// and its key is not the account's key (RFC 8555 §11.1: account keys and certificate keys are
/// kept apart). Returns the CSR's common name (typed, as in the set), if any.
///
/// # Errors
/// `badCSR` saying which check failed.
fn check_csr(der: &[u8], wanted: &BTreeSet<TypedName>, account_key: &Jwk) -> Result<Option<TypedName>, Problem> {
    let csr = crate::ca::csr::parse(der).map_err(|error| issue_problem(&error))?;
    let (names, common_name) = csr_names(der)?;
    if names != *wanted {
        let mut detail =
            "the CSR's names (subjectAltName and common name) differ from the order's identifiers".to_string();
        // An address written as a dNSName: say where it goes.
        if let Some((_, address)) = names
            .iter()
            .find(|(kind, value)| kind == "dns" && super::address::read_address(value).is_some())
        {
            detail.push_str(&format!(
                ": \"{}\" is an IP address written as a dNSName; an address goes in an iPAddress subjectAltName \
                 (and is ordered as an ip identifier)",
                crate::text::printable(address)
            ));
        }
        return Err(Problem::new(ProblemType::BadCsr, detail));
    }
    if account_key.matches_spki(csr.spki()) {
        return Err(Problem::new(
            ProblemType::BadCsr,
            "the CSR's key is the account key: make the certificate's key a different one (RFC 8555 §11.1)",
        ));
    }
    Ok(common_name)
}

/// A CA refusal as the problem finalize answers with.
fn issue_problem(error: &CaError) -> Problem {
    match error {
        CaError::BadCsr { reason, .. } => Problem::new(ProblemType::BadCsr, format!("the CSR is unusable: {reason}")),
        CaError::UnsupportedCsr { reason, .. } => {
            Problem::new(ProblemType::BadCsr, format!("cannot issue for the CSR: {reason}"))
        }
        CaError::Refused(_) => Problem::new(ProblemType::RejectedIdentifier, format!("{error}")),
        CaError::InvalidRequest { .. } | CaError::OutlivesIssuer { .. } | CaError::IssuerNotValid { .. } => {
            Problem::server_internal(format!("cannot issue: {error}"))
        }
        CaError::Pki(PkiError::NameConstraintViolation) => {
            Problem::new(ProblemType::RejectedIdentifier, format!("{error}"))
        }
        _ => internal_ref(error),
    }
}

fn internal_ref(error: &CaError) -> Problem {
    tracing::error!(error = %error, "store or CA failure");
    let problem = Problem::server_internal("the server could not complete the request; try again later");
    if matches!(error, CaError::Store { .. } | CaError::StoreMoved { .. }) {
        let _ = RATE_LIMIT_WAIT.try_with(|slot| slot.store(1, Ordering::Relaxed));
        return problem.with_status(503);
    }
    problem
}

/// `POST /acme/order/{id}/finalize` (§7.4): claims the ready order once (a second finalize
/// sees it processing or valid, or gets orderNotReady), checks the CSR's names equal the
/// order's identifiers (badCSR), issues through the CA (name constraints, lifetime
/// `--acme-hours`), and records the certificate and the valid order in one transaction.
pub(crate) async fn finalize(
    State(acme): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (jws, account, account_key) = acme
        .account_request(&headers, &format!("/acme/order/{id}/finalize"), &body)
        .await?;
    let payload: FinalizePayload = jws.payload_json()?;
    let order = acme.own_order(&account, id.clone()).await?;
    if order.status != OrderStatus::Ready {
        return match order.status {
            OrderStatus::Processing | OrderStatus::Valid => Ok(acme.order_response(StatusCode::OK, &order)),
            _ => Err(Problem::new(
                ProblemType::OrderNotReady,
                format!("the order is {}, not ready", order_status(order.status)),
            )),
        };
    }
    let der = base64url(&payload.csr)?;
    // Every check of the CSR comes before the claim: a bad CSR leaves the order ready for a
    // good one (§7.4).
    let wanted: BTreeSet<TypedName> = order
        .identifiers
        .iter()
        .map(|i| (i.kind.clone(), i.value.clone()))
        .collect();
    let common_name = check_csr(&der, &wanted, &account_key)?;
    let claim = id.clone();
    let claimed = acme
        .pool
        .acme(move |store| store.order_claim_finalize(&claim))
        .await
        .map_err(internal)?;
    if !claimed {
        let again = acme.own_order(&account, id.clone()).await?;
        return match again.status {
            OrderStatus::Processing | OrderStatus::Valid => Ok(acme.order_response(StatusCode::OK, &again)),
            _ => Err(Problem::new(
                ProblemType::OrderNotReady,
                "the order is being finalized by another request",
            )),
        };
    }
    // The subject names the CSR's common name, or the first identifier; an IP address there
    // gives an empty subject and a critical subjectAltName, as `ca issue` does (RFC 5280 §4.2.1.6).
    let name = common_name
        .filter(|cn| wanted.contains(cn))
        .map(|(_, value)| value)
        .or_else(|| order.identifiers.first().map(|i| i.value.clone()))
        .unwrap_or_default();
    let sans: Vec<SubjectAltName> = order
        .identifiers
        .iter()
        .map(|i| match i.value.parse::<std::net::IpAddr>() {
            Ok(ip) if i.kind == "ip" => SubjectAltName::Ip(ip),
            _ => SubjectAltName::Dns(i.value.clone()),
        })
        .collect();
    let mut request = IssueRequest::new(Profile::Server, name).with_sans(sans);
    request.csr = Some(der);
    request.lifetime = Some(acme.acme_lifetime());
    let ca = Arc::clone(&acme.ca);
    let order_id = id.clone();
    let issued = acme
        .pool
        .store(move |store: &mut dyn Store| {
            let now = OffsetDateTime::now_utc();
            let result = ca.issue_recorded(&request, now, &mut |record| {
                store.acme().order_finish(&order_id, record, WriteAccess::granted())
            });
            match result {
                Ok(issued) => Ok(Ok(issued.info.serial)),
                Err(error) => {
                    let problem = issue_problem(&error);
                    let json = String::from_utf8_lossy(&problem.to_json()).into_owned();
                    store.acme().order_fail(&order_id, &json)?;
                    Ok(Err(problem))
                }
            }
        })
        .await
        .map_err(internal)?;
    match issued {
        Ok(serial) => {
            let names: Vec<&String> = wanted.iter().map(|(_, value)| value).collect();
            tracing::info!(account = %account.id, order = %id, serial = %serial, identifiers = ?names, "certificate issued");
        }
        Err(problem) => {
            tracing::info!(account = %account.id, order = %id, problem = %problem, "finalize refused");
            return Err(problem);
        }
    }
    let order = acme.own_order(&account, id).await?;
    Ok(acme.order_response(StatusCode::OK, &order))
}

impl Acme {
    /// `--acme-hours`, shortened to end a minute before the CA's own notAfter.
    fn acme_lifetime(&self) -> Duration {
        let left = self.ca.info().not_after - OffsetDateTime::now_utc() - time::Duration::minutes(1);
        let left = Duration::try_from(left).unwrap_or(Duration::from_secs(60));
        self.config.acme_lifetime.min(left).max(Duration::from_secs(60))
    }

    /// The PEM chain of a certificate record: the leaf, then the CA's chain without its root
    /// (what `ca issue` writes to `PREFIX.chain.pem`); when the CA is itself the root, the root
    /// follows the leaf, as clients such as certbot want at least one issuer certificate.
    fn chain_pem(&self, leaf_pem: &str) -> String {
        let chain = self.ca.chain();
        let issuers = chain.len().saturating_sub(1).max(1);
        let mut out = leaf_pem.to_string();
        out.push_str(&pem::certificates_to_pem(chain.iter().take(issuers)));
        out
    }
}

/// `POST /acme/cert/{serial}` (POST-as-GET, §7.4.2): `application/pem-certificate-chain`, the
/// leaf first, for the account whose order it was issued for.
pub(crate) async fn certificate(
    State(acme): State<Shared>,
    Path(serial): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (jws, account, _) = acme
        .account_request(&headers, &format!("/acme/cert/{serial}"), &body)
        .await?;
    if !jws.is_post_as_get() {
        return Err(Problem::malformed("a certificate is downloaded with POST-as-GET"));
    }
    let serial: Serial = serial.parse().map_err(|_| Problem::not_found("no such certificate"))?;
    let lookup = serial.clone();
    let (order, record) = acme
        .pool
        .store(move |store: &mut dyn Store| {
            let order = store.acme().order_by_certificate(&lookup)?;
            let record = store.find(&lookup)?;
            Ok((order, record))
        })
        .await
        .map_err(internal)?;
    let record = match (order, record) {
        (Some(order), Some(record)) if order.account_id == account.id => record,
        (Some(_), Some(_)) => return Err(Problem::unauthorized("the certificate was issued to another account")),
        _ => return Err(Problem::not_found("no such certificate")),
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        acme.chain_pem(&record.certificate),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RevokePayload {
    certificate: String,
    reason: Option<u8>,
}

/// The reasons a subscriber may give (RFC 8555 §7.6, RFC 5280 §5.3.1): not cACompromise,
/// certificateHold, removeFromCRL or aACompromise.
fn revocation_reason(code: Option<u8>) -> Result<RevocationReason, Problem> {
    Ok(match code {
        None | Some(0) => RevocationReason::Unspecified,
        Some(1) => RevocationReason::KeyCompromise,
        Some(3) => RevocationReason::AffiliationChanged,
        Some(4) => RevocationReason::Superseded,
        Some(5) => RevocationReason::CessationOfOperation,
        Some(9) => RevocationReason::PrivilegeWithdrawn,
        Some(other) => {
            return Err(Problem::new(
                ProblemType::BadRevocationReason,
                format!("reason code {other} is not one a subscriber may give (0, 1, 3, 4, 5 or 9)"),
            ));
        }
    })
}

/// `POST /acme/revoke-cert` (§7.6): signed by the account the certificate was issued to
/// (`kid`) or by the certificate's own key (`jwk`); revoked through the CA (a fresh CRL,
/// published to the store for `/crl`); `alreadyRevoked` when it was.
pub(crate) async fn revoke_cert(State(acme): State<Shared>, headers: HeaderMap, body: Bytes) -> Answer {
    let (jws, signer) = acme
        .authenticate(&headers, "/acme/revoke-cert", &body, KeyForm::Either)
        .await?;
    let payload: RevokePayload = jws.payload_json()?;
    let reason = revocation_reason(payload.reason)?;
    let der = base64url(&payload.certificate)?;
    let info = CertificateInfo::from_der(&der).map_err(|_| Problem::malformed("the certificate does not parse"))?;
    let serial = info.serial.clone();
    let lookup = serial.clone();
    let (order, record) = acme
        .pool
        .store(move |store: &mut dyn Store| {
            let order = store.acme().order_by_certificate(&lookup)?;
            let record = store.find(&lookup)?;
            Ok((order, record))
        })
        .await
        .map_err(internal)?;
    let Some(record) = record.filter(|r| r.certificate == pem::to_pem(pem::CERTIFICATE, &der)) else {
        return Err(Problem::not_found("this CA issued no such certificate"));
    };
    let who = match &signer {
        Signer::Account(account, _) => {
            if order.as_ref().is_none_or(|o| o.account_id != account.id) {
                return Err(Problem::unauthorized("the certificate was not issued to this account"));
            }
            format!("account {}", account.id)
        }
        Signer::Key(jwk) => {
            let spki = crate::ca::authority::spki_of(&rustls_pki_types::CertificateDer::from(der.as_slice()))
                .map_err(|_| Problem::malformed("the certificate does not parse"))?;
            if !jwk.matches_spki(&spki) {
                return Err(Problem::unauthorized("the jwk is not the certificate's key"));
            }
            "the certificate's key".to_string()
        }
    };
    if record.revoked.is_some() {
        return Err(Problem::new(
            ProblemType::AlreadyRevoked,
            "the certificate is already revoked",
        ));
    }
    let ca = Arc::clone(&acme.ca);
    let revoked_serial = serial.clone();
    let crl_lifetime = acme.config.crl_lifetime;
    acme.pool
        .store(move |store: &mut dyn Store| {
            let now = OffsetDateTime::now_utc();
            match ca.revoke_certificate(&revoked_serial, reason, now, crl_lifetime) {
                Ok(revoked) if revoked.newly_revoked => {
                    super::publish_crl(store.acme(), &revoked.crl)?;
                    Ok(Ok(()))
                }
                Ok(_) | Err(CaError::AlreadyRevoked { .. }) => Ok(Err(Problem::new(
                    ProblemType::AlreadyRevoked,
                    "the certificate is already revoked",
                ))),
                Err(other) => Err(other),
            }
        })
        .await
        .map_err(internal)??;
    tracing::info!(serial = %serial, reason = reason.name(), by = %who, "certificate revoked");
    Ok(StatusCode::OK.into_response())
}

/// `GET /acme/renewal-info/{id}` (RFC 9773 §4.2): the suggested renewal window of a
/// certificate this CA issued (its identifier's key identifier must be this CA's), with
/// `Retry-After`.
pub(crate) async fn renewal_info(State(acme): State<Shared>, Path(id): Path<String>) -> Answer {
    let cert_id = super::ari::CertId::parse(&id)?;
    let serial = cert_id.serial();
    let record = acme
        .pool
        .store(move |store: &mut dyn Store| store.find(&serial))
        .await
        .map_err(internal)?;
    let record = record
        .filter(|record| {
            pem::parse_certificates(record.certificate.as_bytes(), "record")
                .ok()
                .and_then(|certs| certs.into_iter().next())
                .and_then(|der| super::ari::CertId::from_certificate(&der).ok())
                .is_some_and(|issued| issued == cert_id)
        })
        .ok_or_else(|| Problem::not_found("this CA issued no such certificate"))?;
    let info = super::ari::RenewalInfo::new(
        record.not_before,
        record.not_after,
        record.revoked.is_some(),
        OffsetDateTime::now_utc(),
    );
    let response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        info.to_json(),
    )
        .into_response();
    Ok(with_header(
        response,
        header::RETRY_AFTER,
        &info.retry_after().as_secs().to_string(),
    ))
}
