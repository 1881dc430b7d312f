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
//! connections are open at once on the HTTPS listener and [`ServeConfig::max_http_connections`]
//! on the plain-HTTP one (each its own cap). A plain-HTTP connection has no handshake: the
//! header timeout starts at accept, so an idle one is closed after it.
//!
//! One concept per file: `server.rs` (listeners, TLS, connections, drain, the server's own
//! certificate), `acme.rs` (the ACME resources), `pool.rs` (the stores the handlers use, on the
//! blocking pool), `jws.rs` (JWS in flattened JSON, JWKs and their RFC 7638 thumbprints,
//! RFC 8555 §6.2), `problem.rs` (RFC 7807 problem documents with RFC 8555 §6.7's error types),
//! `ari.rs` (renewal information, RFC 9773), `ratelimit.rs` (per-account and global request
//! limits), `va.rs` (http-01 and tls-alpn-01 validation, RFC 8555 §8.3 and RFC 8737),
//! `periodic.rs` (CRL regeneration and clean-up under leases in the store), `address.rs` (the
//! special-purpose addresses the VA never dials, newOrder refuses and `--allow-ip` cannot
//! name; how an address's text is read).

mod acme;
pub mod address;
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
use crate::pki::{CertificateInfo, CrlInfo};

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
    /// The validation authority's settings (`--va-http-port`, `--va-tls-port`, `--va-resolve`),
    /// and the networks whose addresses may be ordered as ip identifiers (`--allow-ip`,
    /// [`va::VaConfig::allow_ip`]; RFC 8738), besides lying within the CA's name constraints.
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
    /// 10 s). On the plain-HTTP listener it counts from the accept: a connection that sends
    /// nothing is closed after it.
    pub header_timeout: Duration,
    /// Time to answer a whole request, body included (default 30 s); then 503.
    pub request_timeout: Duration,
    /// The largest request body (default [`DEFAULT_BODY_LIMIT`]); larger ones get 413.
    pub body_limit: usize,
    /// Most connections open at once on the HTTPS (ACME) listener (default 1024); more are
    /// closed at once. The plain-HTTP listener has its own cap, [`Self::max_http_connections`],
    /// so that connections held open on one listener never shut the other out.
    pub max_connections: usize,
    /// Most connections open at once on the plain-HTTP (`/crl`, `/ocsp`, `/ca.pem`) listener
    /// (default 1024); more are closed at once.
    pub max_http_connections: usize,
    /// After [`ServeHandle::shutdown`], time in-flight requests have to finish (default 10 s).
    pub drain_timeout: Duration,
    /// The nextUpdate of the CRLs published after a revocation (default 7 days).
    pub crl_lifetime: Duration,
    /// `nextUpdate` − `thisUpdate` of `/ocsp` answers (default
    /// [`crate::ca::ocsp::RESPONSE_LIFETIME`], one hour; `--ocsp-hours`), cut short so that
    /// `nextUpdate` is never after the CA certificate's `notAfter`.
    pub ocsp_lifetime: Duration,
    /// An order left in `processing` longer than this (its finalization was cut off: the
    /// instance died between claiming the order and recording its certificate) becomes
    /// `invalid` with a `serverInternal` problem at the periodic clean-up, so that its client
    /// orders again (default 5 minutes, as in [`periodic::PeriodicSettings`]; `--stuck-after`,
    /// a hidden test flag, in whole seconds). The instance that holds the `expire` lease does
    /// the clean-up, so the time an abandoned order waits is this plus up to one lease time.
    pub stuck_after: Duration,
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
            max_http_connections: 1024,
            drain_timeout: Duration::from_secs(10),
            crl_lifetime: crate::ca::DEFAULT_CRL_LIFETIME,
            ocsp_lifetime: crate::ca::ocsp::RESPONSE_LIFETIME,
            stuck_after: periodic::PeriodicSettings::default().stuck_after,
            rate_per_account: ratelimit::DEFAULT_PER_KEY,
            rate_per_client: ratelimit::Limit::new(50.0, 500),
            rate_global: ratelimit::DEFAULT_GLOBAL,
        }
    }
}

/// `--base-url`: `https://HOST[:PORT]`, without a path, query, fragment or user (a trailing `/`
/// is dropped). HOST is a DNS name (no wildcard, no trailing dot, a last label that is not all
/// digits), an IPv4 address or a bracketed IPv6 address (neither unspecified, multicast nor
/// broadcast); PORT is 1 to 65535 in digits. The CA issues the server's own certificate for
/// HOST unless `--tls-cert` is given, so HOST must be one name a TLS client can match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    url: String,
    host: String,
}

impl BaseUrl {
    /// Parses and checks a base URL; the scheme and host are lower-cased, an IPv6 address
    /// and the port are written in their canonical forms.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `--base-url`) saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, CaError> {
        let bad = |why: &str| CaError::invalid("--base-url", format!("{text:?} {why}"));
        let rest = text
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .and_then(|_| text.get(8..))
            .ok_or_else(|| bad("is not an https:// URL"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@', '\\']) || rest.is_empty() {
            return Err(bad(
                "must be https://HOST[:PORT], without a path, query, fragment or user",
            ));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("has something other than :PORT after the IPv6 address's ]"))?,
                ),
            };
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(port) => Some(
                Some(port)
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("has a port that is not 1 to 65535"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let (shown, host) = if rest.starts_with('[') {
            let ip = host
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("has no IPv6 address between [ and ]"))?;
            check_ip(std::net::IpAddr::V6(ip)).map_err(|why| bad(&why))?;
            let canonical = ip.to_string();
            (format!("[{canonical}]"), canonical)
        } else if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            check_ip(std::net::IpAddr::V4(ip)).map_err(|why| bad(&why))?;
            (ip.to_string(), ip.to_string())
        } else {
            check_host_name(&host).map_err(|why| bad(&why))?;
            (host.clone(), host)
        };
        let url = match port {
            Some(port) => format!("https://{shown}:{port}"),
            None => format!("https://{shown}"),
        };
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

/// Why no name equal to or below the DNS suffix `suffix` (an `--allow-dns` value, lower case,
/// without a leading dot) can ever be issued by the CA whose chain is `chain` (its certificate
/// first, DER): a CA of the chain permits DNS names (RFC 5280 §4.2.1.10) and none of its
/// permitted domains overlaps `suffix`, or `suffix` lies inside a domain a CA excludes.
/// `None` when some name below `suffix` may be issued. Certificates that cannot be read are
/// skipped (the CA checks every issuance anyway).
pub fn allow_dns_refusal(chain: &[rustls_pki_types::CertificateDer<'_>], suffix: &str) -> Option<String> {
    let suffix = suffix
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    for ca in &NameConstraints::of_chain(chain).0 {
        // Two domains share a name when one lies within the other ("a.test" and ".test" share
        // "x.a.test"; ".a.test" and "a.test" share "x.a.test").
        let overlaps = |domain: &String| {
            let base = domain.trim_start_matches('.');
            acme::dns_within(&suffix, base) || acme::dns_within(base, &suffix)
        };
        if !ca.permitted.is_empty() && !ca.permitted.iter().any(overlaps) {
            return Some(format!(
                "no name under {suffix} lies inside the name constraints of the CA \"{}\" (it permits {})",
                ca.subject,
                ca.permitted.join(", ")
            ));
        }
        if let Some(domain) = ca.excluded.iter().find(|domain| acme::dns_within(&suffix, domain)) {
            return Some(format!(
                "every name under {suffix} is excluded by the CA \"{}\" (it excludes {domain})",
                ca.subject
            ));
        }
    }
    None
}

/// Why no address of the network `network` (an `--allow-ip` value) can ever be issued by the CA
/// whose chain is `chain` (its certificate first, DER): a CA of the chain permits IP addresses
/// (RFC 5280 §4.2.1.10) and none of its permitted networks overlaps `network`, or `network`
/// lies inside a network a CA excludes. `None` when some address of it may be issued.
pub fn allow_ip_refusal(
    chain: &[rustls_pki_types::CertificateDer<'_>],
    network: &crate::channel::Cidr,
) -> Option<String> {
    for ca in &NameConstraints::of_chain(chain).0 {
        if !ca.permitted_ip.is_empty() && !ca.permitted_ip.iter().any(|permitted| permitted.overlaps(network)) {
            let permitted: Vec<String> = ca.permitted_ip.iter().map(ToString::to_string).collect();
            return Some(format!(
                "no address of it lies inside the name constraints of the CA \"{}\" (it permits {})",
                ca.subject,
                permitted.join(", ")
            ));
        }
        if let Some(excluded) = ca.excluded_ip.iter().find(|excluded| excluded.covers(network)) {
            return Some(format!(
                "every address of it is excluded by the CA \"{}\" (it excludes {excluded})",
                ca.subject
            ));
        }
    }
    None
}

/// The DNS and IP address name constraints (RFC 5280 §4.2.1.10) of each CA of a chain, read
/// once (`ca serve` checks every identifier of every new order against them). Certificates
/// that cannot be read, and subtrees that are not networks (a mask that is not a prefix), are
/// skipped: the CA checks every issuance anyway.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameConstraints(Vec<CaNameConstraints>);

/// One CA's DNS and IP address name constraints.
#[derive(Clone, Debug)]
pub(crate) struct CaNameConstraints {
    /// The CA's subject, for messages.
    pub(crate) subject: String,
    /// Permitted DNS domains (none: DNS names are not constrained).
    pub(crate) permitted: Vec<String>,
    /// Excluded DNS domains.
    pub(crate) excluded: Vec<String>,
    /// Permitted IP networks (none: IP addresses are not constrained).
    pub(crate) permitted_ip: Vec<crate::channel::Cidr>,
    /// Excluded IP networks.
    pub(crate) excluded_ip: Vec<crate::channel::Cidr>,
}

impl NameConstraints {
    /// The constraints of `chain` (DER, leaf-side CA first).
    pub(crate) fn of_chain(chain: &[rustls_pki_types::CertificateDer<'_>]) -> Self {
        let dns = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter_map(|name| name.strip_prefix("dns:"))
                .map(str::to_string)
                .collect()
        };
        let ip = |names: &[String]| -> Vec<crate::channel::Cidr> {
            names
                .iter()
                .filter_map(|name| name.strip_prefix("ip:"))
                .filter_map(|network| crate::channel::Cidr::parse(network).ok())
                .collect()
        };
        Self(
            chain
                .iter()
                .filter_map(|der| CertificateInfo::from_der(der).ok())
                .map(|info| CaNameConstraints {
                    permitted: dns(&info.permitted_names),
                    excluded: dns(&info.excluded_names),
                    permitted_ip: ip(&info.permitted_names),
                    excluded_ip: ip(&info.excluded_names),
                    subject: info.subject,
                })
                .collect(),
        )
    }

    /// Each CA's constraints.
    pub(crate) fn cas(&self) -> &[CaNameConstraints] {
        &self.0
    }
}

/// A DNS name the server's own certificate can be issued for, or why not.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.ends_with('.') {
        return Err(format!(
            "has a host ending in a dot: give it without the dot (https://{})",
            host.trim_end_matches('.')
        ));
    }
    if host.split('.').any(|label| label.contains('*')) {
        return Err(
            "has a wildcard host: the server's certificate is for one name, the one clients connect to \
             (e.g. https://acme.example.org)"
                .into(),
        );
    }
    if host.contains(':') {
        return Err("has an IPv6 address without brackets: write https://[ADDRESS]:PORT".into());
    }
    match crate::pki::SubjectAltName::check("dns", host) {
        Ok(crate::pki::SubjectAltName::Dns(_)) => {}
        Ok(_) | Err(_) => return Err("has a host that is neither a DNS name nor an IP address".into()),
    }
    // "1.2.3" or "127.000.0.1" is read as an IPv4 address by browsers' URL parsers (WHATWG),
    // never as a name: a top-level label is never all digits.
    if host
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("has a host that is neither a DNS name (its last label is all digits) nor an IPv4 address".into());
    }
    Ok(())
}

/// An IP address clients can connect to, or why not.
fn check_ip(ip: std::net::IpAddr) -> Result<(), String> {
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(format!(
            "has the address {ip}, which clients cannot connect to (unspecified, multicast or broadcast): \
             give the address they use"
        ));
    }
    Ok(())
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
        let url = BaseUrl::parse("HTTPS://[0:0::0:1]:0443/").unwrap();
        assert_eq!((url.as_str(), url.host()), ("https://[::1]:443", "::1"));
        assert_eq!(
            BaseUrl::parse("https://a1.test:1").unwrap().as_str(),
            "https://a1.test:1"
        );
        for (bad, why) in [
            ("https://*.example.test", "wildcard"),
            ("https://example.test.", "without the dot (https://example.test)"),
            ("https://0.0.0.0:1", "cannot connect"),
            ("https://[::1]x", "other than :PORT"),
        ] {
            let error = BaseUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
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
            "https://*.example.test",
            "https://*.example.test:14000",
            "https://a*.example.test",
            "https://example.test.",
            "https://example.test.:443",
            "https://a.test?x=1",
            "https://a.test#f",
            "https://a.test/?x",
            "https://user:pw@a.test",
            "https://a.test:+443",
            "https://a.test:",
            "https://[::1]junk",
            "https://[::1]:",
            "https://::1",
            "https://[::]:443",
            "https://0.0.0.0:443",
            "https://224.0.0.1",
            "https://255.255.255.255",
            "https://1.2.3",
            "https://127.000.0.1",
            "https://a\\b.test",
            "https://a%2eb.test",
            "https://a.test :1",
            "ftp://a.test",
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
