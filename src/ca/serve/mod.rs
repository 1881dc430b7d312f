//! `ca serve`: the CA as a network service (DESIGN.md, "`ca serve`"): ACME (RFC 8555) for real
//! clients, the CRL and OCSP over HTTP, several instances on one PostgreSQL store.
//!
//! [`serve`] takes an opened [`CertificateAuthority`](crate::ca::CertificateAuthority), a [`ServeConfig`] and bound listeners,
//! and returns a [`ServeHandle`] (shut down, drain) and the service, a future that ends once
//! it has stopped. `ca serve` is a thin layer over it: it parses flags, binds, prints
//! `listening on …`, and maps SIGTERM to [`ServeHandle::shutdown`].
//!
//! What is served:
//! - HTTPS (`--listen`): ACME at `/acme/directory` and the resources it lists (`acme.rs`);
//!   `/crl` (the published CRL, DER, `application/pkix-crl`), `/ca.pem` (the CA's chain) and
//!   `/healthz`.
//! - plain HTTP (`--http-listen`): `/crl` and `/ca.pem` (CRLs travel over HTTP by
//!   convention).
//!
//! Limits on every phase: the PROXY header and TLS handshake share a handshake timeout, request
//! headers must arrive within [`ServeConfig::header_timeout`], a whole request is answered
//! within [`ServeConfig::request_timeout`] (else 503), bodies are at most
//! [`ServeConfig::body_limit`] bytes (else 413), at most [`ServeConfig::max_connections`]
//! connections are open at once.
//!
//! One concept per file: `server.rs` (listeners, TLS, connections, drain, the server's own
//! certificate), `acme.rs` (the ACME resources), `pool.rs` (the stores the handlers use, on the
//! blocking pool), `jws.rs` (JWS in flattened JSON, JWKs and their RFC 7638 thumbprints,
//! RFC 8555 §6.2), `problem.rs` (RFC 7807 problem documents with RFC 8555 §6.7's error types),
//! `ari.rs` (renewal information, RFC 9773), `ratelimit.rs` (per-account and global request
//! limits), `va.rs` (http-01 and tls-alpn-01 validation, RFC 8555 §8.3 and RFC 8737),
//! `periodic.rs` (CRL regeneration and clean-up under leases in the store).

mod acme;
pub mod ari;
pub mod jws;
pub mod periodic;
mod pool;
pub mod problem;
pub mod ratelimit;
mod server;
pub mod va;

use std::time::Duration;

use rustls_pki_types::CertificateRevocationListDer;

pub use server::{ServeHandle, serve};

use crate::ca::store::acme::{AcmeStore, PublishedCrl};
use crate::ca::{CaError, Location};
use crate::channel::{Credentials, ProxySources};
use crate::pki::CrlInfo;

/// The default lifetime of ACME certificates (`--acme-hours`): 24 hours, short enough that
/// revocation matters little, long enough that a client renewing at two thirds of it has
/// hours to spare.
pub const DEFAULT_ACME_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The lifetime of the server's own certificate when `--tls-cert` is not given (renewed at half
/// of it).
pub const SERVER_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The largest request body accepted (64 KiB): every ACME request is far smaller.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// `ca serve`'s settings. [`ServeConfig::new`] gives the defaults for a `--base-url`.
#[derive(Debug)]
pub struct ServeConfig {
    /// The external HTTPS URL clients use (`--base-url`), as [`BaseUrl::parse`] checked it:
    /// every ACME URL is built from it, and each JWS `url` is compared with it (RFC 8555 §6.4).
    pub base_url: BaseUrl,
    /// The lifetime of certificates issued over ACME (`--acme-hours`; default
    /// [`DEFAULT_ACME_LIFETIME`]), shortened to end before the CA.
    pub acme_lifetime: Duration,
    /// DNS suffixes (`--allow-dns`): when any is given, every identifier must be one of them or
    /// below one, besides lying within the CA's name constraints.
    pub allow_dns: Vec<String>,
    /// The validation authority's settings (`--va-http-port`, `--va-tls-port`, `--va-resolve`).
    pub va: va::VaConfig,
    /// Skip validation (`--va-always-valid`): every challenge succeeds. Tests only.
    pub va_always_valid: bool,
    /// The peers that start their connections with a PROXY protocol header (`--proxy-protocol`,
    /// `--proxy-from`); `None`: no PROXY protocol.
    pub proxy: Option<ProxySources>,
    /// The HTTPS certificate and key (`--tls-cert`, `--tls-key`); `None`: a certificate for
    /// the host of `base_url` is issued by the CA itself and renewed at half its lifetime.
    pub tls: Option<Credentials>,
    /// The store (`--db`); `None`: the one the CA directory records.
    pub store: Option<Location>,
    /// Store connections for the handlers (default 4).
    pub pool_size: usize,
    /// Time for a PROXY header and a TLS handshake together (default 10 s).
    pub handshake_timeout: Duration,
    /// Time for a request's headers to arrive, and for an idle keep-alive connection (default
    /// 10 s).
    pub header_timeout: Duration,
    /// Time to answer a whole request, body included (default 30 s); then 503.
    pub request_timeout: Duration,
    /// The largest request body (default [`DEFAULT_BODY_LIMIT`]); larger ones get 413.
    pub body_limit: usize,
    /// Most connections open at once over both listeners (default 1024); more are closed at once.
    pub max_connections: usize,
    /// After [`ServeHandle::shutdown`], time in-flight requests have to finish (default 10 s).
    pub drain_timeout: Duration,
    /// The nextUpdate of the CRLs published after a revocation (default 7 days).
    pub crl_lifetime: Duration,
    /// Requests per account, after the signature is checked (default
    /// [`ratelimit::DEFAULT_PER_KEY`]); past it, `rateLimited` with `Retry-After`.
    pub rate_per_account: ratelimit::Limit,
    /// Requests per client address that belong to no account (newNonce, newAccount, revokeCert
    /// by the certificate's key): 50 a second, bursts of 500 by default.
    pub rate_per_client: ratelimit::Limit,
    /// Requests of this instance as a whole: every account request, and those that belong to
    /// no account yet (newNonce, newAccount, revokeCert by the certificate's key) (default
    /// [`ratelimit::DEFAULT_GLOBAL`]).
    pub rate_global: ratelimit::Limit,
}

impl ServeConfig {
    /// The defaults for `base_url`.
    pub fn new(base_url: BaseUrl) -> Self {
        Self {
            base_url,
            acme_lifetime: DEFAULT_ACME_LIFETIME,
            allow_dns: Vec::new(),
            va: va::VaConfig::default(),
            va_always_valid: false,
            proxy: None,
            tls: None,
            store: None,
            pool_size: 4,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            body_limit: DEFAULT_BODY_LIMIT,
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
            crl_lifetime: crate::ca::DEFAULT_CRL_LIFETIME,
            rate_per_account: ratelimit::DEFAULT_PER_KEY,
            rate_per_client: ratelimit::Limit::new(50.0, 500),
            rate_global: ratelimit::DEFAULT_GLOBAL,
        }
    }
}

/// `--base-url`: `https://HOST[:PORT]`, without a path, query or fragment (a trailing `/` is
/// dropped). HOST is a DNS name, an IPv4 address or a bracketed IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    url: String,
    host: String,
}

impl BaseUrl {
    /// Parses and checks a base URL.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `--base-url`) saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, CaError> {
        let bad = |why: &str| CaError::invalid("--base-url", format!("{text:?} {why}"));
        let rest = text
            .strip_prefix("https://")
            .ok_or_else(|| bad("is not an https:// URL"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(bad(
                "must be https://HOST[:PORT], without a path, query, fragment or user",
            ));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("has no IPv6 address between [ and ]"))?;
            (host.to_string(), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (rest.to_string(), None),
            }
        };
        if let Some(port) = port
            && port.parse::<u16>().ok().filter(|p| *p > 0).is_none()
        {
            return Err(bad("has a port that is not 1 to 65535"));
        }
        let host = host.to_ascii_lowercase();
        if host.parse::<std::net::IpAddr>().is_err()
            && !matches!(
                crate::pki::SubjectAltName::check("dns", &host),
                Ok(crate::pki::SubjectAltName::Dns(_))
            )
        {
            return Err(bad("has a host that is neither a DNS name nor an IP address"));
        }
        let url = format!("https://{}", rest.to_ascii_lowercase());
        Ok(Self { url, host })
    }

    /// The URL, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host (without brackets for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Publishes a CRL the CA just wrote to the store, for every instance's `/crl`.
fn publish_crl(store: &mut dyn AcmeStore, der: &CertificateRevocationListDer<'_>) -> Result<bool, CaError> {
    let info = CrlInfo::from_der(der)?;
    let number = info
        .crl_number
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let crl = PublishedCrl {
        der: der.to_vec(),
        number,
        this_update: info.this_update.unix_timestamp(),
        next_update: info.next_update.map_or(i64::MAX, |t| t.unix_timestamp()),
    };
    store.crl_publish(&crl, None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base_urls_are_https_hosts_with_ports() {
        let url = BaseUrl::parse("https://127.0.0.1:14000/").unwrap();
        assert_eq!(url.as_str(), "https://127.0.0.1:14000");
        assert_eq!(url.host(), "127.0.0.1");
        let url = BaseUrl::parse("https://ACME.Example.test").unwrap();
        assert_eq!(
            (url.as_str(), url.host()),
            ("https://acme.example.test", "acme.example.test")
        );
        assert_eq!(BaseUrl::parse("https://[::1]:443").unwrap().host(), "::1");
        for bad in [
            "http://127.0.0.1:1",
            "https://",
            "https://a.test/acme",
            "https://a.test:0",
            "https://a.test:70000",
            "https://u@a.test",
            "https://a..test",
            "https://[zz]:1",
            "127.0.0.1:14000",
        ] {
            assert!(
                matches!(
                    BaseUrl::parse(bad),
                    Err(CaError::InvalidRequest {
                        field: "--base-url",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
