//! The validation authority: http-01 (RFC 8555 §8.3) and tls-alpn-01 (RFC 8737).
//!
//! [`validate`] answers one question: does whoever controls `identifier` (a DNS name, or an IP
//! address: RFC 8738) hold the account key whose key authorization (RFC 8555 §8.1) it was given?
//! It connects to the name as the RFCs say, and maps every failure to an RFC 8555 §6.7 problem
//! type:
//!
//! | failure | problem type |
//! |---|---|
//! | the name does not resolve, or only to addresses the VA refuses | `dns` |
//! | connection refused or reset, a timeout in any phase, a malformed HTTP response, a redirect the VA does not follow | `connection` |
//! | an HTTP status other than 200 | `unauthorized` |
//! | a body other than the key authorization, a body over [`MAX_BODY`] bytes | `incorrectResponse` |
//! | the TLS handshake fails, or ALPN `acme-tls/1` is not negotiated | `tls` |
//! | the tls-alpn-01 certificate is not the one RFC 8737 §3 describes | `incorrectResponse` |
//! | an identifier that is neither a DNS name nor an IP address, a token that is not base64url | `malformed` |
//!
//! Names are resolved through [`VaConfig::resolve`] (`--va-resolve NAME=IP`, `*` for every
//! name, for tests and closed networks, as Pebble does) and otherwise through the system
//! resolver.
//!
//! Every address the VA dials — an ip identifier, a `--va-resolve` answer, the resolver's
//! answer for the identifier or for a redirect's host — passes one check first
//! (`dial::Dialable::check`, the only way to a connection): no special-purpose address
//! ([`address`](super::address): unspecified, link-local, multicast, broadcast, reserved, and
//! the IPv4-mapped, IPv4-compatible and NAT64 forms of any of these or of loopback), and
//! loopback written as such (`127.0.0.0/8`, `::1`) only when the operator named it: an ip
//! identifier inside `--allow-ip`, or a `--va-resolve` answer. Nobody can make the CA probe
//! itself or a metadata service by publishing `127.0.0.1` or `169.254.169.254`.
//!
//! http-01 redirects: at most [`MAX_REDIRECTS`] are followed, only to `http://` URLs on the
//! http-01 port (an absent port, or port 80, or [`VaConfig::http_port`]) whose host is a DNS
//! name, resolved on the same rules. A redirect to `https://`, to an IP literal or to another
//! port is refused (`connection`): following those would need a second TLS client that accepts
//! any certificate, for no gain to an ACME client that controls the name. For an ip identifier
//! only redirects on its own address are followed (a path, or a URL whose host is the
//! address): a redirect to another host is refused (`connection`). Once a redirect has led to
//! a host other than the identifier's, a failure is reported without anything that host
//! answered ([`VaError::Elsewhere`]: no body, no `Location`, not where it led): only the
//! kind of failure, its problem type, and the first URL on the other host.
//!
//! IP identifiers (RFC 8738): `ca serve` admits only addresses inside its `--allow-ip` networks,
//! and the VA dials the address itself (no resolution, no `--va-resolve`). http-01 asks
//! `http://ADDRESS/…` (`[ADDRESS]` for IPv6) with that `Host`; tls-alpn-01 sends as SNI the
//! address's reverse DNS name (`4.3.2.1.in-addr.arpa`, nibbles under `ip6.arpa`; RFC 8738 §6)
//! and wants a certificate whose one subjectAltName is the iPAddress.
//!
//! Every validation runs under one deadline, [`VaConfig::timeout`], covering resolution,
//! connecting, the TLS handshake, the response head and the body, and every redirect.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature_with_raw_key};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use crate::ca::serve::problem::{Problem, ProblemType};

/// The ALPN protocol of tls-alpn-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The OID of the id-pe-acmeIdentifier extension (RFC 8737 §6.1), dotted.
pub const ID_PE_ACME_IDENTIFIER: &str = "1.3.6.1.5.5.7.1.31";

/// The largest http-01 response body read, in bytes. A key authorization is 87 bytes (two
/// 43-character base64url strings and a dot); a body over this is refused, not truncated.
pub const MAX_BODY: usize = 4096;

/// The most http-01 redirects followed in one validation.
pub const MAX_REDIRECTS: usize = 3;

/// The largest HTTP response head accepted, in bytes.
const MAX_HEAD: usize = 16 * 1024;

/// At most this many characters of a peer's unexpected answer are quoted in a problem detail.
const QUOTE_CHARS: usize = 100;

/// At most this many resolved addresses are tried, in the resolver's order.
const MAX_ADDRESSES: usize = 4;

/// The `User-Agent` of http-01 requests.
const VA_USER_AGENT: &str = concat!("tessera-va/", env!("CARGO_PKG_VERSION"));

/// How the validation authority reaches the names it validates (`ca serve`'s `--va-*` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaConfig {
    /// The port http-01 connects to (`--va-http-port`; RFC 8555 §8.3 says 80).
    pub http_port: u16,
    /// The port tls-alpn-01 connects to (`--va-tls-port`; RFC 8737 §3 says 443).
    pub tls_port: u16,
    /// Fixed answers to name resolution (`--va-resolve NAME=IP`), looked up before the system
    /// resolver: an entry whose name equals the identifier (ASCII case-insensitive) first, else
    /// an entry named `*`. Addresses given here are used as they are, loopback included, but
    /// no other special-purpose address is dialled (module docs).
    pub resolve: Vec<(String, IpAddr)>,
    /// The networks whose addresses may be validated as ip identifiers (RFC 8738;
    /// `--allow-ip`): `ca serve` orders only those, and the VA dials no other address
    /// (`malformed` otherwise). Empty: no ip identifier.
    pub allow_ip: Vec<crate::channel::Cidr>,
    /// The deadline of one whole validation: resolution, connect, handshake, response, body and
    /// redirects together.
    pub timeout: Duration,
}

impl Default for VaConfig {
    /// Ports 80 and 443, the system resolver, a 10-second deadline.
    fn default() -> Self {
        VaConfig {
            http_port: 80,
            tls_port: 443,
            resolve: Vec::new(),
            allow_ip: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl VaConfig {
    /// Parses one `--va-resolve` value, `NAME=IP` (`*=IP` for every name).
    ///
    /// # Errors
    /// A message naming what is wrong when there is no `=`, the name is neither `*` nor a DNS
    /// name, or the address is not an IPv4 or IPv6 address or is one the VA never dials
    /// (special-purpose other than plain loopback, module docs).
    pub fn parse_resolve(value: &str) -> Result<(String, IpAddr), String> {
        let Some((name, ip)) = value.split_once('=') else {
            return Err(format!("--va-resolve {value:?}: expected NAME=IP (or *=IP)"));
        };
        if name != "*" && check_dns_name(name).is_err() {
            return Err(format!("--va-resolve {value:?}: {name:?} is neither * nor a DNS name"));
        }
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("--va-resolve {value:?}: {ip:?} is not an IP address"))?;
        if let Some(special) = super::address::special_purpose(ip).filter(|s| !s.is_plain_loopback()) {
            return Err(format!(
                "--va-resolve {value:?}: {ip} is {special}, which the validation authority never dials"
            ));
        }
        Ok((name.to_ascii_lowercase(), ip))
    }
}

/// A challenge type the validation authority performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// `http-01` (RFC 8555 §8.3).
    Http01,
    /// `tls-alpn-01` (RFC 8737).
    TlsAlpn01,
}

impl ChallengeKind {
    /// Every kind, in the order they are offered in an authorization.
    pub const ALL: [ChallengeKind; 2] = [ChallengeKind::Http01, ChallengeKind::TlsAlpn01];

    /// The challenge's `type` in ACME objects: `http-01` or `tls-alpn-01`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    /// The kind whose `type` is `name`, if the VA performs it.
    pub fn parse(name: &str) -> Option<ChallengeKind> {
        ChallengeKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a validation failed. [`VaError::problem_type`] gives its RFC 8555 §6.7 type; the
/// `Display` text is the problem's `detail`. Peer-controlled text is quoted escaped and cut to
/// 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaError {
    /// The identifier or the token cannot be validated at all (a caller's mistake).
    #[error("{0}")]
    Malformed(String),
    /// The name did not resolve.
    #[error("cannot resolve {name}: {reason}")]
    Dns {
        /// The name looked up.
        name: String,
        /// The resolver's answer.
        reason: String,
    },
    /// The name resolved only to addresses the VA does not connect to (module docs).
    #[error("{name} resolves only to addresses the validation authority does not connect to: {addresses}")]
    RefusedAddress {
        /// The name looked up.
        name: String,
        /// The addresses found, each with why it is refused (`169.254.169.254 is link-local
        /// (169.254.0.0/16)`), comma-separated.
        addresses: String,
    },
    /// No connection could be made.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// What was dialled (`NAME (IP:PORT)`).
        target: String,
        /// The operating system's answer.
        reason: String,
    },
    /// The deadline passed.
    #[error("timeout after {after:?} while {phase} ({target})")]
    Timeout {
        /// What was being done: `resolving`, `connecting`, `waiting for the response` …
        phase: &'static str,
        /// The URL or address concerned.
        target: String,
        /// The configured deadline.
        after: Duration,
    },
    /// The HTTP exchange failed below the status line.
    #[error("{url}: {reason}")]
    Http {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A redirect that is not followed.
    #[error("{url}: redirect to {location} not followed: {reason}")]
    Redirect {
        /// The URL that answered with the redirect.
        url: String,
        /// The `Location` it gave, quoted.
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// An HTTP status other than 200.
    #[error("{url}: HTTP status {status}, expected 200")]
    Status {
        /// The URL fetched.
        url: String,
        /// The status received.
        status: u16,
    },
    /// A response body over [`MAX_BODY`] bytes.
    #[error("{url}: response body over {limit} bytes")]
    BodyTooLarge {
        /// The URL fetched.
        url: String,
        /// [`MAX_BODY`].
        limit: usize,
    },
    /// A body other than the key authorization.
    #[error("{url}: the body is {got}, expected the key authorization {expected:?}")]
    WrongBody {
        /// The URL fetched.
        url: String,
        /// The key authorization.
        expected: String,
        /// The body received (whitespace-trimmed), quoted.
        got: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {target} failed: {reason}")]
    Tls {
        /// What was dialled.
        target: String,
        /// rustls's answer.
        reason: String,
    },
    /// The server did not negotiate ALPN `acme-tls/1` (RFC 8737 §3).
    #[error("{target} did not negotiate ALPN \"acme-tls/1\" (negotiated: {negotiated})")]
    Alpn {
        /// What was dialled.
        target: String,
        /// The protocol it chose, quoted, or `none`.
        negotiated: String,
    },
    /// The tls-alpn-01 certificate is not the one RFC 8737 §3 describes.
    #[error("{target}: the tls-alpn-01 certificate {reason}")]
    Certificate {
        /// What was dialled.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An http-01 validation failed after a redirect to another host. Nothing that host (or
    /// one it led to) answered is shown: not its body, its `Location`, nor where that led.
    #[error(
        "{url}: redirected to another host, {via}, where the validation failed with {what} (its answer is not shown)"
    )]
    Elsewhere {
        /// The identifier's own URL, where the validation started.
        url: String,
        /// The first URL on another host (the `Location` the identifier's host gave).
        via: String,
        /// The kind of failure, in words, without the peer's text.
        what: String,
        /// The problem type of the failure itself.
        kind: ProblemType,
    },
}

impl VaError {
    /// The RFC 8555 §6.7 problem type this failure is reported with (the table in the module
    /// docs).
    pub fn problem_type(&self) -> ProblemType {
        match self {
            VaError::Malformed(_) => ProblemType::Malformed,
            VaError::Dns { .. } | VaError::RefusedAddress { .. } => ProblemType::Dns,
            VaError::Connect { .. } | VaError::Timeout { .. } | VaError::Http { .. } | VaError::Redirect { .. } => {
                ProblemType::Connection
            }
            VaError::Status { .. } => ProblemType::Unauthorized,
            VaError::BodyTooLarge { .. } | VaError::WrongBody { .. } | VaError::Certificate { .. } => {
                ProblemType::IncorrectResponse
            }
            VaError::Tls { .. } | VaError::Alpn { .. } => ProblemType::Tls,
            VaError::Elsewhere { kind, .. } => *kind,
        }
    }
}

impl From<VaError> for Problem {
    fn from(error: VaError) -> Problem {
        Problem::new(error.problem_type(), error.to_string())
    }
}

/// Validates one challenge: `kind` for `identifier` (a DNS name, not a wildcard), whose token
/// is `token` and whose expected key authorization (RFC 8555 §8.1, `token.thumbprint`) is
/// `key_authorization`.
///
/// # Errors
/// A [`Problem`] of the type the module docs' table gives, whose detail says what was
/// expected and what was found.
///
/// # Security
/// This authenticates control of the name as seen from the CA's network (RFC 8555 §10.2): an
/// attacker on the path between the CA and the name can pass it. tls-alpn-01 proves nothing
/// about the peer's certificate beyond its contents: any certificate is accepted for the
/// handshake, as RFC 8737 §3 requires.
pub async fn validate(
    cfg: &VaConfig,
    kind: ChallengeKind,
    identifier: &str,
    token: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    check(cfg, kind, identifier, token, key_authorization)
        .await
        .map_err(Problem::from)
}

/// [`validate`] with the failure as a [`VaError`] (its fields, for logs and tests).
///
/// # Errors
/// See [`validate`].
pub async fn check(
    cfg: &VaConfig,
    kind: ChallengeKind,
    identifier: &str,
    token: &str,
    key_authorization: &str,
) -> Result<(), VaError> {
    // ca serve's orders hold canonical addresses (RFC 8738 §3) and DNS names that never parse
    // as one (a numeric last label is refused).
    match identifier.parse::<IpAddr>() {
        Ok(ip) => {
            let refusal = if ip.to_string() != identifier {
                Some(format!("it is not in canonical form (RFC 8738 §3): write it {ip}"))
            } else {
                dial::refusal(cfg, dial::Source::Identifier, ip).map(|why| format!("{ip} is {why}"))
            };
            if let Some(why) = refusal {
                return Err(VaError::Malformed(format!(
                    "identifier {} cannot be validated: {why}",
                    quote(identifier)
                )));
            }
        }
        Err(_) => check_dns_name(identifier)?,
    }
    let deadline = Instant::now() + cfg.timeout;
    match kind {
        ChallengeKind::Http01 => {
            check_token(token)?;
            http01(cfg, deadline, identifier, token, key_authorization).await
        }
        ChallengeKind::TlsAlpn01 => tls_alpn01(cfg, deadline, identifier, key_authorization).await,
    }
}

/// A DNS name the VA can dial: 1–253 characters, labels of 1–63 letters, digits and hyphens
/// not starting or ending with a hyphen, not all digits in the last label (so not an IP
/// address), no wildcard.
fn check_dns_name(name: &str) -> Result<(), VaError> {
    let bad = |why: &str| {
        VaError::Malformed(format!(
            "identifier {} is not a DNS name the validation authority can check: {why}",
            quote(name)
        ))
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("length must be 1 to 253"));
    }
    if name.starts_with("*.") {
        return Err(bad("wildcards are validated through their base name"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must be 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad("only letters, digits, hyphens and dots are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with a hyphen"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "the last label is numeric, as in an IP address (an address is validated as an ip identifier)",
        ));
    }
    Ok(())
}

/// A challenge token (RFC 8555 §8.3: base64url, no padding), so it is safe in a URL path.
fn check_token(token: &str) -> Result<(), VaError> {
    if token.is_empty()
        || token.len() > 256
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(VaError::Malformed(format!("token {} is not base64url", quote(token))));
    }
    Ok(())
}

/// `text` escaped (control characters, quotes) and cut to [`QUOTE_CHARS`] characters, in
/// double quotes: peer-controlled text is shown only this way.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = text.chars();
    for c in chars.by_ref().take(QUOTE_CHARS) {
        out.extend(c.escape_debug());
    }
    out.push('"');
    if chars.next().is_some() {
        out.push_str(" (truncated)");
    }
    out
}

/// The addresses to dial for `name`, each passed by [`dial::Dialable::check`]: an ip
/// identifier's own address, else the answer of [`VaConfig::resolve`], else the system
/// resolver's answers without the refused ones, at most [`MAX_ADDRESSES`].
async fn resolve(cfg: &VaConfig, deadline: Instant, name: &str, port: u16) -> Result<Vec<dial::Dialable>, VaError> {
    let refused = |addresses: String| VaError::RefusedAddress {
        name: name.to_string(),
        addresses,
    };
    // An IP identifier is dialled as it is, if the operator admitted it (--allow-ip).
    if let Ok(ip) = name.parse::<IpAddr>() {
        let address = SocketAddr::new(ip, port);
        return dial::Dialable::check(cfg, dial::Source::Identifier, address)
            .map(|dialable| vec![dialable])
            .map_err(|why| refused(format!("{ip} is {why}")));
    }
    let fixed = cfg
        .resolve
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .or_else(|| cfg.resolve.iter().find(|(n, _)| n == "*"));
    if let Some((_, ip)) = fixed {
        return dial::Dialable::check(cfg, dial::Source::Fixed, SocketAddr::new(*ip, port))
            .map(|dialable| vec![dialable])
            .map_err(|why| refused(format!("{ip} is {why} (--va-resolve)")));
    }
    let found: Vec<SocketAddr> = match timeout_at(deadline, tokio::net::lookup_host((name, port))).await {
        Err(_) => {
            return Err(VaError::Timeout {
                phase: "resolving",
                target: name.to_string(),
                after: cfg.timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(VaError::Dns {
                name: name.to_string(),
                reason: e.to_string(),
            });
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if found.is_empty() {
        return Err(VaError::Dns {
            name: name.to_string(),
            reason: "no address".to_string(),
        });
    }
    let mut allowed = Vec::new();
    let mut refusals = Vec::new();
    for address in found {
        match dial::Dialable::check(cfg, dial::Source::Resolver, address) {
            Ok(dialable) => allowed.push(dialable),
            Err(why) => refusals.push(format!("{} is {why}", address.ip())),
        }
    }
    if allowed.is_empty() {
        return Err(refused(refusals.join(", ")));
    }
    allowed.truncate(MAX_ADDRESSES);
    Ok(allowed)
}

/// The one check of every address the VA dials (module docs), and the type that proves it was
/// made: a [`Dialable`](dial::Dialable) is made only by [`Dialable::check`](dial::Dialable::check),
/// and [`connect`] dials nothing else.
mod dial {
    use std::net::{IpAddr, SocketAddr};

    use super::VaConfig;
    use crate::ca::serve::address;

    /// Where an address to dial came from, which decides whether loopback may be dialled.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Source {
        /// An ip identifier's own address (RFC 8738): only inside an `--allow-ip` network,
        /// where plain loopback may be named.
        Identifier,
        /// The operator's `--va-resolve` answer: plain loopback allowed.
        Fixed,
        /// The system resolver's answer: no special-purpose address at all.
        Resolver,
    }

    /// An address that passed [`Dialable::check`].
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Dialable(SocketAddr);

    impl Dialable {
        /// `address` if the VA may dial it, coming from `source`; else why not, worded to
        /// follow "ADDRESS is …".
        pub(super) fn check(cfg: &VaConfig, source: Source, address: SocketAddr) -> Result<Dialable, String> {
            match refusal(cfg, source, address.ip()) {
                None => Ok(Dialable(address)),
                Some(why) => Err(why),
            }
        }

        /// The address.
        pub(super) fn address(&self) -> SocketAddr {
            self.0
        }
    }

    /// Why `ip`, coming from `source`, may not be dialled (worded to follow "ADDRESS is …"),
    /// or `None`.
    pub(super) fn refusal(cfg: &VaConfig, source: Source, ip: IpAddr) -> Option<String> {
        if let Some(special) = address::special_purpose(ip)
            && !(special.is_plain_loopback() && source != Source::Resolver)
        {
            return Some(format!("{special}, which the validation authority never dials"));
        }
        if source == Source::Identifier {
            if ip.to_canonical() != ip {
                return Some(format!("IPv4-mapped: the address is {}", ip.to_canonical()));
            }
            if !cfg.allow_ip.iter().any(|network| network.contains(ip)) {
                return Some("outside every --allow-ip network".to_string());
            }
        }
        None
    }
}

/// A TCP connection to the first of `addrs` that answers, before `deadline`.
async fn connect(
    cfg: &VaConfig,
    deadline: Instant,
    name: &str,
    addrs: &[dial::Dialable],
) -> Result<(TcpStream, String), VaError> {
    let mut last = None;
    for addr in addrs.iter().map(dial::Dialable::address) {
        let target = format!("{name} ({addr})");
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(VaError::Timeout {
                    phase: "connecting",
                    target,
                    after: cfg.timeout,
                });
            }
            Ok(Ok(stream)) => return Ok((stream, target)),
            Ok(Err(e)) => {
                last = Some(VaError::Connect {
                    target,
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| VaError::Dns {
        name: name.to_string(),
        reason: "no address".to_string(),
    }))
}

/// Aborts a spawned task when dropped (the HTTP connection driver of one request).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One http-01 URL: `http://host:port/path`.
#[derive(Debug)]
struct HttpTarget {
    host: String,
    port: u16,
    path: String,
}

impl HttpTarget {
    /// The host as a URL and the `Host` header write it: an IPv6 address in brackets.
    fn host_in_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == 80 {
            write!(f, "http://{}{}", self.host_in_url(), self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host_in_url(), self.port, self.path)
        }
    }
}

/// What one http-01 request got back.
enum Fetched {
    /// A 200 with its body (at most [`MAX_BODY`] bytes).
    Body(Vec<u8>),
    /// A 301, 302, 303, 307 or 308 with its `Location`.
    Redirect(String),
}

/// RFC 8555 §8.3: GET `http://NAME/.well-known/acme-challenge/TOKEN`, following redirects as
/// the module docs say; the whitespace-trimmed body must equal the key authorization.
async fn http01(
    cfg: &VaConfig,
    deadline: Instant,
    name: &str,
    token: &str,
    key_authorization: &str,
) -> Result<(), VaError> {
    let mut target = HttpTarget {
        host: name.to_ascii_lowercase(),
        port: cfg.http_port,
        path: format!("/.well-known/acme-challenge/{token}"),
    };
    let first = target.to_string();
    let own_host = target.host.clone();
    // An ip identifier's redirects stay on its address (module docs).
    let same_host_only = name.parse::<IpAddr>().is_ok();
    // The first URL on a host other than the identifier's, once a redirect went there: from
    // then on, nothing any host answers is quoted (hide_elsewhere).
    let mut elsewhere: Option<String> = None;
    let mut redirects = 0;
    loop {
        let url = target.to_string();
        if elsewhere.is_none() && target.host != own_host {
            elsewhere = Some(url.clone());
        }
        let hide = |error: VaError| match &elsewhere {
            Some(via) => hide_elsewhere(error, &first, via),
            None => error,
        };
        match fetch(cfg, deadline, &target).await.map_err(hide)? {
            Fetched::Body(body) if elsewhere.is_some() => {
                let text = std::str::from_utf8(&body).unwrap_or_default();
                if text.trim_matches(|c: char| c.is_ascii_whitespace()) != key_authorization {
                    return Err(hide(VaError::WrongBody {
                        url,
                        expected: key_authorization.to_string(),
                        got: format!("{} bytes", body.len()),
                    }));
                }
                return Ok(());
            }
            Fetched::Body(body) => {
                let text = std::str::from_utf8(&body).map_err(|_| VaError::WrongBody {
                    url: url.clone(),
                    expected: key_authorization.to_string(),
                    got: format!("{} bytes that are not UTF-8", body.len()),
                })?;
                let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
                if trimmed != key_authorization {
                    return Err(VaError::WrongBody {
                        url,
                        expected: key_authorization.to_string(),
                        got: quote(trimmed),
                    });
                }
                return Ok(());
            }
            Fetched::Redirect(location) => {
                if redirects == MAX_REDIRECTS {
                    return Err(hide(VaError::Redirect {
                        url,
                        location: quote(&location),
                        reason: format!("more than {MAX_REDIRECTS} redirects"),
                    }));
                }
                redirects += 1;
                target = follow(cfg, &target, &url, &location, same_host_only).map_err(hide)?;
            }
        }
    }
}

/// `error`, met after a redirect took the validation from the identifier's URL `first` to
/// another host at `via`, without anything the hosts answered from there on (a body, a
/// `Location`, the URLs and names they led to, the addresses found for those): the other host
/// may be one the ACME client cannot reach itself, and the VA is no proxy for reading it. The
/// problem type stays the same.
fn hide_elsewhere(error: VaError, first: &str, via: &str) -> VaError {
    let what = match &error {
        VaError::Malformed(_) => "a malformed request".to_string(),
        VaError::Dns { .. } => "a name that does not resolve".to_string(),
        VaError::RefusedAddress { .. } => {
            "a name that resolves only to addresses the validation authority does not connect to".to_string()
        }
        VaError::Connect { .. } => "no connection".to_string(),
        VaError::Timeout { phase, after, .. } => format!("a timeout after {after:?} while {phase}"),
        VaError::Http { .. } => "an HTTP exchange that failed".to_string(),
        VaError::Redirect { reason, .. } => format!("a redirect that is not followed: {reason}"),
        VaError::Status { status, .. } => format!("HTTP status {status}, expected 200"),
        VaError::BodyTooLarge { limit, .. } => format!("a response body over {limit} bytes"),
        VaError::WrongBody { got, .. } => format!("a body ({got}) other than the key authorization"),
        VaError::Tls { .. } | VaError::Alpn { .. } | VaError::Certificate { .. } => "a TLS failure".to_string(),
        VaError::Elsewhere { .. } => return error,
    };
    VaError::Elsewhere {
        url: first.to_string(),
        via: via.to_string(),
        what,
        kind: error.problem_type(),
    }
}

/// The target a `Location` header points to, if the VA follows it (module docs); for an ip
/// identifier (`same_host_only`), only on the host it was sent from.
fn follow(
    cfg: &VaConfig,
    from: &HttpTarget,
    url: &str,
    location: &str,
    same_host_only: bool,
) -> Result<HttpTarget, VaError> {
    let refuse = |reason: &str| VaError::Redirect {
        url: url.to_string(),
        location: quote(location),
        reason: reason.to_string(),
    };
    let uri: Uri = location.parse().map_err(|_| refuse("not a valid URL"))?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| "/".to_string());
    let Some(authority) = uri.authority() else {
        if !location.starts_with('/') || location.starts_with("//") {
            return Err(refuse("only absolute URLs and absolute paths are followed"));
        }
        return Ok(HttpTarget {
            host: from.host.clone(),
            port: from.port,
            path,
        });
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(refuse("redirects to https are not followed")),
        _ => return Err(refuse("only http redirects are followed")),
    }
    if authority.as_str().contains('@') {
        return Err(refuse("credentials in a URL are not followed"));
    }
    let host = authority.host();
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse::<IpAddr>();
    let cross_host = "an ip identifier is validated on its own address: a redirect to another host is not followed";
    let host = match (literal, same_host_only) {
        // An IP literal is followed only as the ip identifier's own address.
        (Ok(ip), true) if ip.to_string() == from.host => from.host.clone(),
        (_, true) => return Err(refuse(cross_host)),
        (Ok(_), false) => return Err(refuse("the host is not a DNS name")),
        (Err(_), false) => {
            check_dns_name(host).map_err(|_| refuse("the host is not a DNS name"))?;
            host.to_ascii_lowercase()
        }
    };
    match authority.port_u16() {
        None | Some(80) => {}
        Some(p) if p == cfg.http_port => {}
        Some(_) => return Err(refuse("only the http-01 port is followed")),
    }
    Ok(HttpTarget {
        host,
        port: cfg.http_port,
        path,
    })
}

/// One GET of `target` before `deadline`, body bounded by [`MAX_BODY`].
async fn fetch(cfg: &VaConfig, deadline: Instant, target: &HttpTarget) -> Result<Fetched, VaError> {
    let url = target.to_string();
    let timeout = |phase| VaError::Timeout {
        phase,
        target: url.clone(),
        after: cfg.timeout,
    };
    let http_error = |e: hyper::Error| VaError::Http {
        url: url.clone(),
        reason: e.to_string(),
    };
    let addrs = resolve(cfg, deadline, &target.host, target.port).await?;
    let (stream, _) = connect(cfg, deadline, &target.host, &addrs).await?;
    let (mut sender, connection) = timeout_at(
        deadline,
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| timeout("connecting"))?
    .map_err(http_error)?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        // The connection's own error is the request's error, seen through `send_request`.
        let _ = connection.await;
    }));
    let host = if target.port == 80 {
        target.host_in_url()
    } else {
        format!("{}:{}", target.host_in_url(), target.port)
    };
    let request = Request::get(target.path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, VA_USER_AGENT)
        .body(Empty::<Bytes>::new())
        .map_err(|e| VaError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let response = timeout_at(deadline, sender.send_request(request))
        .await
        .map_err(|_| timeout("waiting for the response"))?
        .map_err(http_error)?;
    let status = response.status();
    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| VaError::Http {
                url: url.clone(),
                reason: format!("HTTP status {} without a readable Location", status.as_u16()),
            })?;
        return Ok(Fetched::Redirect(location.to_string()));
    }
    if status != StatusCode::OK {
        return Err(VaError::Status {
            url,
            status: status.as_u16(),
        });
    }
    let too_large = || VaError::BodyTooLarge {
        url: url.clone(),
        limit: MAX_BODY,
    };
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    loop {
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(timeout("reading the body")),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(http_error)?,
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Fetched::Body(bytes))
}

/// RFC 8737 §3: a TLS handshake with SNI `name` (for an address, its reverse name: RFC 8738
/// §6) offering only ALPN `acme-tls/1`, then the certificate checks of
/// [`check_acme_certificate`].
async fn tls_alpn01(cfg: &VaConfig, deadline: Instant, name: &str, key_authorization: &str) -> Result<(), VaError> {
    let addrs = resolve(cfg, deadline, name, cfg.tls_port).await?;
    let (stream, target) = connect(cfg, deadline, name, &addrs).await?;
    let tls_error = |reason: String| VaError::Tls {
        target: target.clone(),
        reason,
    };
    let config = alpn_client_config().map_err(|e| tls_error(e.to_string()))?;
    let sni = match name.parse::<IpAddr>() {
        Ok(ip) => reverse_name(ip),
        Err(_) => name.to_ascii_lowercase(),
    };
    let server_name = ServerName::try_from(sni).map_err(|e| tls_error(e.to_string()))?;
    let tls = timeout_at(deadline, TlsConnector::from(config).connect(server_name, stream))
        .await
        .map_err(|_| VaError::Timeout {
            phase: "in the TLS handshake",
            target: target.clone(),
            after: cfg.timeout,
        })?
        .map_err(|e| tls_error(e.to_string()))?;
    let (_, connection) = tls.get_ref();
    if connection.alpn_protocol() != Some(ACME_TLS_ALPN) {
        return Err(VaError::Alpn {
            target: target.clone(),
            negotiated: connection
                .alpn_protocol()
                .map(|p| quote(&String::from_utf8_lossy(p)))
                .unwrap_or_else(|| "none".to_string()),
        });
    }
    let Some(leaf) = connection.peer_certificates().and_then(|c| c.first()) else {
        return Err(tls_error("no certificate".to_string()));
    };
    check_acme_certificate(leaf.as_ref(), name, key_authorization).map_err(|reason| VaError::Certificate {
        target: target.clone(),
        reason,
    })
}

/// The reverse DNS name of `ip` (RFC 8738 §6, after RFC 1035 §3.5 and RFC 3596 §2.5):
/// `4.3.2.1.in-addr.arpa` for 1.2.3.4, 32 nibbles under `ip6.arpa` for IPv6.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The rustls client of tls-alpn-01: ring, TLS 1.2 and 1.3, ALPN `acme-tls/1` only, any
/// certificate accepted (its contents are checked afterwards).
fn alpn_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    config.enable_sni = true;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A verifier that accepts any server certificate (RFC 8737 §3: the certificate is
/// self-signed and only its contents matter) but checks the handshake signatures against the
/// certificate's public key, so the peer holds that key. The key is taken from the certificate
/// with x509-parser: webpki refuses to parse a certificate with an unknown critical extension,
/// which every tls-alpn-01 certificate has.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AnyCertificate {
    /// Verifies `dss` over `message` with the key of `cert`, trying every algorithm the
    /// provider maps the scheme to (TLS 1.2's ECDSA schemes do not fix the curve).
    fn verify_with_certificate_key(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = certificate_key(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let algorithms = self
            .provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
        if algorithms
            .iter()
            .any(|alg| key.verify_signature(*alg, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ))
        }
    }
}

/// The SubjectPublicKeyInfo of `cert`, read with x509-parser.
fn certificate_key(cert: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    use x509_parser::prelude::{FromDer, X509Certificate};

    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(SubjectPublicKeyInfoDer::from(
        parsed.tbs_certificate.subject_pki.raw.to_vec(),
    ))
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_with_certificate_key(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature_with_raw_key(
            message,
            &certificate_key(cert)?,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// RFC 8737 §3's checks of a tls-alpn-01 certificate (`der`) for `name`: exactly one
/// subjectAltName extension holding exactly one entry, a dNSName equal to `name` (ASCII
/// case-insensitive), or for an address (RFC 8738 §6) the iPAddress equal to it; exactly one id-pe-acmeIdentifier extension, critical, whose value is the
/// DER OCTET STRING of SHA-256(`key_authorization`).
///
/// # Errors
/// What is wrong, worded to follow "the tls-alpn-01 certificate …".
pub fn check_acme_certificate(der: &[u8], name: &str, key_authorization: &str) -> Result<(), String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("cannot be parsed: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("has an unreadable subjectAltName: {e}"))?
        .ok_or("has no subjectAltName extension")?;
    if let Ok(ip) = name.parse::<IpAddr>() {
        // RFC 8738 §6: the one subjectAltName is the iPAddress.
        let octets = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        match san.value.general_names.as_slice() {
            [GeneralName::IPAddress(found)] if *found == octets.as_slice() => {}
            [other] => return Err(format!("names {other} instead of the iPAddress {ip}")),
            names => {
                return Err(format!(
                    "has {} subjectAltName entries, expected exactly one (the iPAddress {ip})",
                    names.len()
                ));
            }
        }
        return check_acme_identifier(&cert, key_authorization);
    }
    match san.value.general_names.as_slice() {
        [GeneralName::DNSName(dns)] if dns.eq_ignore_ascii_case(name) => {}
        [GeneralName::DNSName(dns)] => return Err(format!("names {}, expected {name}", quote(dns))),
        [other] => return Err(format!("names {other} instead of the dNSName {name}")),
        names => {
            return Err(format!(
                "has {} subjectAltName entries, expected exactly one (the dNSName {name})",
                names.len()
            ));
        }
    }
    check_acme_identifier(&cert, key_authorization)
}

/// RFC 8737 §3: exactly one id-pe-acmeIdentifier extension, critical, whose value is the DER
/// OCTET STRING of SHA-256(`key_authorization`).
fn check_acme_identifier(
    cert: &x509_parser::prelude::X509Certificate<'_>,
    key_authorization: &str,
) -> Result<(), String> {
    let mut acme = cert
        .extensions()
        .iter()
        .filter(|ext| ext.oid.to_id_string() == ID_PE_ACME_IDENTIFIER);
    let extension = acme
        .next()
        .ok_or("has no id-pe-acmeIdentifier extension (1.3.6.1.5.5.7.1.31)")?;
    if acme.next().is_some() {
        return Err("has more than one id-pe-acmeIdentifier extension".to_string());
    }
    if !extension.critical {
        return Err("has an id-pe-acmeIdentifier extension not marked critical".to_string());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(digest.as_ref());
    if extension.value != expected.as_slice() {
        return Err(format!(
            "has an id-pe-acmeIdentifier of {}, expected the OCTET STRING of SHA-256 of the key \
             authorization ({})",
            hex(extension.value),
            hex(&expected)
        ));
    }
    Ok(())
}

/// Lower-case hex, at most 40 bytes shown.
fn hex(bytes: &[u8]) -> String {
    let mut out: String = bytes.iter().take(40).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::Ipv4Addr;

    use http_body_util::Full;
    use hyper::Response;
    use hyper::service::service_fn;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const NAME: &str = "a.example.test";
    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    const KEY_AUTHORIZATION: &str =
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nysa1-kHjSSR-gWw0bHh0SYvmgsbfqf4mb-qvD3rrOY";

    /// What the test HTTP responder answers.
    #[derive(Clone)]
    enum Reply {
        Body(String),
        Status(u16),
        Redirect(String),
        Slow,
    }

    /// A hyper HTTP/1.1 server on 127.0.0.1 answering every request with `reply(path, host)`.
    async fn http_responder(reply: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(reply);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get(HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let answer = reply(req.uri().path(), &host);
                        async move {
                            let mut response = Response::builder();
                            let body = match answer {
                                Reply::Body(body) => body,
                                Reply::Status(code) => {
                                    response = response.status(code);
                                    "nothing here".to_string()
                                }
                                Reply::Redirect(location) => {
                                    response = response.status(302).header(LOCATION, location);
                                    String::new()
                                }
                                Reply::Slow => {
                                    tokio::time::sleep(Duration::from_secs(20)).await;
                                    String::new()
                                }
                            };
                            Ok::<_, Infallible>(response.body(Full::new(Bytes::from(body))).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }

    /// A raw TCP server on 127.0.0.1 that writes `bytes` to every connection, then closes it.
    async fn raw_responder(bytes: Vec<u8>) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        port
    }

    /// A port on 127.0.0.1 where nothing listens.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn config(http_port: u16, tls_port: u16) -> VaConfig {
        VaConfig {
            http_port,
            tls_port,
            resolve: vec![("*".to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST))],
            allow_ip: vec![crate::channel::Cidr::parse("127.0.0.0/8").unwrap()],
            timeout: Duration::from_secs(5),
        }
    }

    async fn run(cfg: &VaConfig, kind: ChallengeKind, name: &str, ka: &str) -> Result<(), VaError> {
        tokio::time::timeout(Duration::from_secs(30), check(cfg, kind, name, TOKEN, ka))
            .await
            .expect("validation bounded by its own deadline")
    }

    fn serves_key_authorization() -> impl Fn(&str, &str) -> Reply + Send + Sync + 'static {
        |path, _| {
            if path == format!("/.well-known/acme-challenge/{TOKEN}") {
                Reply::Body(format!("{KEY_AUTHORIZATION}\r\n"))
            } else {
                Reply::Status(404)
            }
        }
    }

    #[tokio::test]
    async fn http01_accepts_the_key_authorization_with_the_name_as_host() {
        let port = http_responder(|path, host| {
            if path == format!("/.well-known/acme-challenge/{TOKEN}") && host.starts_with("a.example.test:") {
                Reply::Body(format!(" {KEY_AUTHORIZATION}\n"))
            } else {
                Reply::Status(404)
            }
        })
        .await;
        let cfg = config(port, 1);
        run(&cfg, ChallengeKind::Http01, "A.Example.Test", KEY_AUTHORIZATION)
            .await
            .unwrap();
        validate(&cfg, ChallengeKind::Http01, NAME, TOKEN, KEY_AUTHORIZATION)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn http01_wrong_key_authorization_is_incorrect_response_saying_both() {
        let port = http_responder(serves_key_authorization()).await;
        let cfg = config(port, 1);
        let expected = format!("{TOKEN}.other-thumbprint");
        let err = run(&cfg, ChallengeKind::Http01, NAME, &expected).await.unwrap_err();
        assert!(matches!(err, VaError::WrongBody { .. }), "{err:?}");
        assert_eq!(err.problem_type(), ProblemType::IncorrectResponse);
        let detail = err.to_string();
        assert!(detail.contains(&expected), "{detail}");
        assert!(detail.contains(&format!("{KEY_AUTHORIZATION:?}")), "{detail}");
        let problem = Problem::from(err);
        assert_eq!(problem.kind, ProblemType::IncorrectResponse);
    }

    #[tokio::test]
    async fn http01_404_is_unauthorized() {
        let port = http_responder(|_, _| Reply::Status(404)).await;
        let err = run(&config(port, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            VaError::Status {
                url: format!("http://a.example.test:{port}/.well-known/acme-challenge/{TOKEN}"),
                status: 404
            }
        );
        assert_eq!(err.problem_type(), ProblemType::Unauthorized);
    }

    #[tokio::test]
    async fn refused_port_is_connection() {
        let port = closed_port().await;
        for kind in ChallengeKind::ALL {
            let err = run(&config(port, port), kind, NAME, KEY_AUTHORIZATION)
                .await
                .unwrap_err();
            assert!(matches!(err, VaError::Connect { .. }), "{kind}: {err:?}");
            assert_eq!(err.problem_type(), ProblemType::Connection);
            assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
        }
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let port = http_responder(|_, _| Reply::Slow).await;
        let mut cfg = config(port, 1);
        cfg.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let err = run(&cfg, ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                VaError::Timeout {
                    phase: "waiting for the response",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.problem_type(), ProblemType::Connection);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        // Declared by Content-Length.
        let big = "x".repeat(MAX_BODY + 1);
        let port = http_responder(move |_, _| Reply::Body(big.clone())).await;
        let err = run(&config(port, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(matches!(err, VaError::BodyTooLarge { limit: MAX_BODY, .. }), "{err:?}");
        assert_eq!(err.problem_type(), ProblemType::IncorrectResponse);
        // Streamed until the connection closes, no length given.
        let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'y', MAX_BODY * 3));
        let port = raw_responder(raw).await;
        let err = run(&config(port, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(matches!(err, VaError::BodyTooLarge { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn long_or_binary_wrong_bodies_are_quoted_truncated() {
        let body = format!("\u{1b}[31m{}", "z".repeat(500));
        let port = http_responder(move |_, _| Reply::Body(body.clone())).await;
        let err = run(&config(port, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        let detail = err.to_string();
        assert!(detail.contains("\\u{1b}[31m"), "{detail}");
        assert!(detail.contains("(truncated)"), "{detail}");
        assert!(!detail.contains(&"z".repeat(200)), "{detail}");
    }

    #[tokio::test]
    async fn not_http_is_connection() {
        let port = raw_responder(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()).await;
        let err = run(&config(port, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(matches!(err, VaError::Http { .. }), "{err:?}");
        assert_eq!(err.problem_type(), ProblemType::Connection);
    }

    #[tokio::test]
    async fn http01_follows_http_redirects_on_the_same_port_and_refuses_others() {
        let port = http_responder(move |path, _| match path {
            p if p.starts_with("/.well-known/") => Reply::Redirect("/moved".into()),
            "/moved" => Reply::Redirect("http://b.example.test/final".into()),
            "/final" => Reply::Body(KEY_AUTHORIZATION.into()),
            "/loop" => Reply::Redirect("/loop".into()),
            "/tls" => Reply::Redirect("https://a.example.test/x".into()),
            "/port" => Reply::Redirect("http://a.example.test:1/x".into()),
            "/ip" => Reply::Redirect("http://127.0.0.1/x".into()),
            _ => Reply::Status(404),
        })
        .await;
        let cfg = config(port, 1);
        run(&cfg, ChallengeKind::Http01, NAME, KEY_AUTHORIZATION).await.unwrap();
        let from = HttpTarget {
            host: NAME.into(),
            port,
            path: "/".into(),
        };
        for (location, reason) in [
            ("https://a.example.test/x", "https"),
            ("http://a.example.test:1/x", "port"),
            ("http://127.0.0.1/x", "DNS name"),
            ("ftp://a.example.test/x", "only http"),
            ("relative/path", "not a valid URL"),
            ("http://user@a.example.test/x", "credentials"),
        ] {
            let err = follow(&cfg, &from, "u", location, false).unwrap_err();
            assert!(err.to_string().contains(reason), "{location}: {err}");
            assert_eq!(err.problem_type(), ProblemType::Connection);
        }
        // A loop ends after MAX_REDIRECTS.
        let loop_port = http_responder(|_, _| Reply::Redirect("/loop".into())).await;
        let err = run(&config(loop_port, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("more than 3 redirects"), "{err}");
    }

    /// RFC 8738 ip identifiers: http-01 follows redirects only on the address itself (a path,
    /// or a URL whose host is the address); a redirect to another host, by name or address,
    /// is refused.
    #[tokio::test]
    async fn an_ip_identifiers_redirects_stay_on_its_address() {
        let port = http_responder(|path, host| {
            let token = path.rsplit('/').next().unwrap_or_default();
            match (path, token) {
                ("/final", _) => Reply::Body(KEY_AUTHORIZATION.into()),
                (_, "path") => Reply::Redirect("/final".into()),
                (_, "same") => Reply::Redirect(format!("http://{}/final", host.split(':').next().unwrap())),
                (_, "byname") => Reply::Redirect("http://a.example.test/final".into()),
                (_, "otherip") => Reply::Redirect("http://127.0.0.2/final".into()),
                _ => Reply::Status(404),
            }
        })
        .await;
        let cfg = config(port, 1);
        for token in ["byname", "otherip"] {
            let err = check(&cfg, ChallengeKind::Http01, "127.0.0.1", token, KEY_AUTHORIZATION)
                .await
                .unwrap_err();
            assert!(matches!(err, VaError::Redirect { .. }), "{token}: {err:?}");
            assert!(
                err.to_string().contains("another host is not followed"),
                "{token}: {err}"
            );
            assert_eq!(err.problem_type(), ProblemType::Connection);
        }
        for token in ["path", "same"] {
            check(&cfg, ChallengeKind::Http01, "127.0.0.1", token, KEY_AUTHORIZATION)
                .await
                .unwrap_or_else(|err| panic!("{token}: {err}"));
        }
        // The same redirect by name is followed for a dns identifier.
        check(&cfg, ChallengeKind::Http01, NAME, "byname", KEY_AUTHORIZATION)
            .await
            .unwrap();
    }

    /// After a redirect to another host, a failure says what kind it was and where the
    /// redirect went, and quotes nothing that host answered: not its body, not its Location,
    /// not the URL it sent the VA on to.
    #[tokio::test]
    async fn after_a_cross_host_redirect_nothing_the_other_host_said_is_shown() {
        let port = http_responder(|path, host| {
            let last = path.rsplit('/').next().unwrap_or_default().to_string();
            if host.starts_with("a.example.test") {
                // The identifier's own host sends the VA to b.example.test (token = path there).
                return Reply::Redirect(format!("http://b.example.test/{last}"));
            }
            match last.as_str() {
                "good" => Reply::Body(KEY_AUTHORIZATION.into()),
                "body" => Reply::Body("SECRET internal page".into()),
                "hop" => Reply::Redirect("/SECRET-path".into()),
                "away" => Reply::Redirect("https://SECRET.example/".into()),
                _ => Reply::Status(404),
            }
        })
        .await;
        let cfg = config(port, 1);
        check(&cfg, ChallengeKind::Http01, NAME, "good", KEY_AUTHORIZATION)
            .await
            .unwrap();
        for (token, kind) in [
            ("body", ProblemType::IncorrectResponse),
            ("hop", ProblemType::Unauthorized),
            ("away", ProblemType::Connection),
        ] {
            let problem = validate(&cfg, ChallengeKind::Http01, NAME, token, KEY_AUTHORIZATION)
                .await
                .unwrap_err();
            assert_eq!(problem.kind, kind, "{token}: {problem}");
            assert!(!problem.detail.contains("SECRET"), "{token}: {problem}");
            assert!(
                problem
                    .detail
                    .contains(&format!("http://b.example.test:{port}/{token}")),
                "{token}: {problem}"
            );
            assert!(problem.detail.contains("not shown"), "{token}: {problem}");
        }
        // On the identifier's own host, a wrong body is still quoted (the client's own server).
        let own = http_responder(|_, _| Reply::Body("own page".into())).await;
        let err = run(&config(own, 1), ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("own page"), "{err}");
    }

    /// The one check before every dial: which addresses each source may give. Loopback only
    /// from the operator (an ip identifier inside --allow-ip, --va-resolve) and only written as
    /// loopback; every other special-purpose address, and the IPv4-mapped, IPv4-compatible and
    /// NAT64 forms of special-purpose IPv4 addresses, from no source.
    #[test]
    fn every_dialled_address_passes_one_check() {
        use dial::Source::{Fixed, Identifier, Resolver};
        let mut cfg = config(1, 1);
        cfg.allow_ip = vec![
            crate::channel::Cidr::parse("0.0.0.0/0").unwrap(),
            crate::channel::Cidr::parse("::/0").unwrap(),
        ];
        let never = [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "169.254.169.254",
            "fe80::1",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "240.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::e000:1",
        ];
        for text in never {
            let ip: IpAddr = text.parse().unwrap();
            for source in [Identifier, Fixed, Resolver] {
                let why = dial::refusal(&cfg, source, ip);
                assert!(why.is_some(), "{text} from {source:?} would be dialled");
            }
        }
        for text in ["127.0.0.1", "127.1.2.3", "::1"] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(
                dial::refusal(&cfg, Resolver, ip).unwrap().contains("loopback"),
                "{text}"
            );
            assert_eq!(dial::refusal(&cfg, Fixed, ip), None, "{text}");
            assert_eq!(dial::refusal(&cfg, Identifier, ip), None, "{text}");
        }
        for text in [
            "192.0.2.1",
            "10.0.0.1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "64:ff9b::c000:201",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(dial::refusal(&cfg, Resolver, ip), None, "{text}");
            assert_eq!(dial::refusal(&cfg, Fixed, ip), None, "{text}");
        }
        // An identifier must also lie inside --allow-ip, and be written as itself.
        cfg.allow_ip = vec![crate::channel::Cidr::parse("127.0.0.0/8").unwrap()];
        assert!(
            dial::refusal(&cfg, Identifier, "10.0.0.1".parse().unwrap())
                .unwrap()
                .contains("--allow-ip")
        );
        assert!(dial::refusal(&cfg, Identifier, "::ffff:127.0.0.1".parse().unwrap()).is_some());
    }

    /// `0.0.0.0` reaches the local machine when dialled (Linux): neither --va-resolve, nor an
    /// ip identifier inside a wide --allow-ip, nor a redirect's host makes the VA dial it or
    /// another special-purpose address.
    #[tokio::test]
    async fn special_purpose_addresses_are_dialled_from_no_source() {
        let port = http_responder(|path, _| match path {
            "/final" => Reply::Body(KEY_AUTHORIZATION.into()),
            _ => Reply::Redirect("http://b.example.test/final".into()),
        })
        .await;
        for address in ["0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "64:ff9b::7f00:1"] {
            let mut cfg = config(port, port);
            cfg.resolve = vec![("*".to_string(), address.parse().unwrap())];
            for kind in ChallengeKind::ALL {
                let err = run(&cfg, kind, NAME, KEY_AUTHORIZATION).await.unwrap_err();
                assert!(
                    matches!(err, VaError::RefusedAddress { .. }),
                    "{address} {kind}: {err:?}"
                );
                assert!(err.to_string().contains("never dials"), "{err}");
            }
        }
        // An ip identifier: refused before anything is dialled, whatever --allow-ip admits.
        let mut cfg = config(port, port);
        cfg.allow_ip = vec![
            crate::channel::Cidr::parse("0.0.0.0/0").unwrap(),
            crate::channel::Cidr::parse("::/0").unwrap(),
        ];
        for address in [
            "0.0.0.0",
            "::",
            "169.254.169.254",
            "224.0.0.1",
            "64:ff9b::7f00:1",
            "::7f00:1",
        ] {
            for kind in ChallengeKind::ALL {
                let err = run(&cfg, kind, address, KEY_AUTHORIZATION).await.unwrap_err();
                assert_eq!(err.problem_type(), ProblemType::Malformed, "{address} {kind}: {err:?}");
                assert!(err.to_string().contains("never dials"), "{address}: {err}");
            }
        }
        // A redirect to a name whose answer is special-purpose.
        let mut cfg = config(port, 1);
        cfg.resolve = vec![
            (NAME.to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ("b.example.test".to_string(), IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ];
        let err = run(&cfg, ChallengeKind::Http01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert_eq!(err.problem_type(), ProblemType::Dns, "{err:?}");
        assert!(err.to_string().contains("does not connect to"), "{err}");
        // The same redirect to a name on loopback through --va-resolve is followed.
        cfg.resolve[1].1 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        run(&cfg, ChallengeKind::Http01, NAME, KEY_AUTHORIZATION).await.unwrap();
    }

    #[tokio::test]
    async fn loopback_only_through_va_resolve() {
        let port = http_responder(serves_key_authorization()).await;
        let mut cfg = config(port, 1);
        cfg.resolve.clear();
        let err = run(&cfg, ChallengeKind::Http01, "localhost", KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(matches!(err, VaError::RefusedAddress { .. }), "{err:?}");
        assert_eq!(err.problem_type(), ProblemType::Dns);
        // Named explicitly, it is used; another name's entry is not.
        cfg.resolve = vec![("localhost".into(), IpAddr::V4(Ipv4Addr::LOCALHOST))];
        run(&cfg, ChallengeKind::Http01, "LOCALHOST", KEY_AUTHORIZATION)
            .await
            .unwrap();
        cfg.resolve = vec![("b.invalid".into(), IpAddr::V4(Ipv4Addr::LOCALHOST))];
        let err = run(&cfg, ChallengeKind::Http01, "a.invalid", KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert_eq!(err.problem_type(), ProblemType::Dns, "{err:?}");
    }

    #[tokio::test]
    async fn bad_identifiers_and_tokens_are_malformed_before_any_connection() {
        let cfg = config(closed_port().await, 1);
        for name in [
            "",
            "*.example.test",
            "a..b",
            "a/b.test",
            "10.0.0.1",
            "127.000.0.1",
            "::ffff:127.0.0.1",
            "-a.test",
            "a.test:80",
        ] {
            let err = run(&cfg, ChallengeKind::Http01, name, KEY_AUTHORIZATION)
                .await
                .unwrap_err();
            assert_eq!(err.problem_type(), ProblemType::Malformed, "{name}: {err:?}");
        }
        for token in ["", "../x", "a b", "a?b"] {
            let err = check(&cfg, ChallengeKind::Http01, NAME, token, KEY_AUTHORIZATION)
                .await
                .unwrap_err();
            assert_eq!(err.problem_type(), ProblemType::Malformed, "{token}: {err:?}");
        }
    }

    #[test]
    fn va_resolve_values_parse() {
        assert_eq!(
            VaConfig::parse_resolve("*=127.0.0.1").unwrap(),
            ("*".to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            VaConfig::parse_resolve("A.Example.Test=::1").unwrap(),
            ("a.example.test".to_string(), "::1".parse().unwrap())
        );
        for bad in ["a.example.test", "a.example.test=x", "a b=1.2.3.4", "=1.2.3.4"] {
            assert!(VaConfig::parse_resolve(bad).is_err(), "{bad}");
        }
        for special in [
            "*=0.0.0.0",
            "*=169.254.169.254",
            "a.example.test=::ffff:127.0.0.1",
            "*=::",
        ] {
            let why = VaConfig::parse_resolve(special).unwrap_err();
            assert!(why.contains("never dials"), "{special}: {why}");
        }
        assert_eq!(ChallengeKind::parse("tls-alpn-01"), Some(ChallengeKind::TlsAlpn01));
        assert_eq!(ChallengeKind::parse("dns-01"), None);
    }

    /// How the test tls-alpn-01 certificate's acmeIdentifier extension is made.
    enum Acme {
        Good,
        Digest(&'static str),
        NotCritical,
        Missing,
        Twice,
    }

    fn octet_string_of_digest(key_authorization: &str) -> Vec<u8> {
        let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
        let mut value = vec![0x04, 0x20];
        value.extend_from_slice(digest.as_ref());
        value
    }

    /// A self-signed rcgen certificate for `names` and its PKCS#8 key.
    fn acme_certificate(names: &[&str], acme: Acme) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let extension = |ka: &str, critical: bool| {
            let mut ext =
                rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 31], octet_string_of_digest(ka));
            ext.set_criticality(critical);
            ext
        };
        match acme {
            // rcgen's own encoding of the extension, an independent one.
            Acme::Good => params
                .custom_extensions
                .push(rcgen::CustomExtension::new_acme_identifier(
                    &octet_string_of_digest(KEY_AUTHORIZATION)[2..],
                )),
            Acme::Digest(ka) => params.custom_extensions.push(extension(ka, true)),
            Acme::NotCritical => params.custom_extensions.push(extension(KEY_AUTHORIZATION, false)),
            Acme::Missing => {}
            Acme::Twice => {
                params.custom_extensions.push(extension(KEY_AUTHORIZATION, true));
                params.custom_extensions.push(extension(KEY_AUTHORIZATION, true));
            }
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    }

    /// A rustls server on 127.0.0.1 presenting `certificate`, choosing ALPN `alpn` if the
    /// client offers it; records the SNI it saw.
    async fn tls_responder(
        certificate: (CertificateDer<'static>, PrivateKeyDer<'static>),
        alpn: Option<&'static [u8]>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Not `with_single_cert`: it refuses the critical acmeIdentifier extension.
        let key = provider.key_provider.load_private_key(certificate.1).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![certificate.0], key);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        if let Some(alpn) = alpn {
            config.alpn_protocols = vec![alpn.to_vec()];
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    if let Ok(Ok(mut tls)) = handshake.await {
                        if let Some(sni) = tls.get_ref().1.server_name() {
                            record.lock().unwrap().push(sni.to_string());
                        }
                        let mut buf = [0u8; 64];
                        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await;
                    }
                });
            }
        });
        (port, seen)
    }

    /// The SNI values [`tls_responder`] recorded, once there is one (it records the SNI when
    /// its side of the handshake ends, which may be after ours); waits at most 5 s.
    async fn sni_seen(seen: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
        for _ in 0..100 {
            if !seen.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen.lock().unwrap().clone()
    }

    async fn tls_alpn(
        certificate: (CertificateDer<'static>, PrivateKeyDer<'static>),
        alpn: Option<&'static [u8]>,
    ) -> Result<(), VaError> {
        let (port, _) = tls_responder(certificate, alpn, rustls::ALL_VERSIONS).await;
        run(&config(1, port), ChallengeKind::TlsAlpn01, NAME, KEY_AUTHORIZATION).await
    }

    #[tokio::test]
    async fn tls_alpn01_accepts_the_rfc8737_certificate_with_sni() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (port, seen) =
                tls_responder(acme_certificate(&[NAME], Acme::Good), Some(ACME_TLS_ALPN), &[version]).await;
            let cfg = config(1, port);
            run(&cfg, ChallengeKind::TlsAlpn01, "A.EXAMPLE.test", KEY_AUTHORIZATION)
                .await
                .unwrap();
            assert_eq!(sni_seen(&seen).await, [NAME.to_string()]);
            // The same certificate does not prove another key authorization.
            let err = run(&cfg, ChallengeKind::TlsAlpn01, NAME, "other.thumbprint")
                .await
                .unwrap_err();
            assert!(matches!(err, VaError::Certificate { .. }), "{err:?}");
        }
    }

    /// RFC 8738: an ip identifier is dialled as it is (not through --va-resolve), with the
    /// address as Host for http-01, and its reverse name as SNI and the address as the one
    /// iPAddress for tls-alpn-01.
    #[tokio::test]
    async fn ip_identifiers_are_dialled_directly_with_the_address_as_host_and_reverse_name_as_sni() {
        let port = http_responder(|path, host| {
            if path == format!("/.well-known/acme-challenge/{TOKEN}") && host.starts_with("127.0.0.1:") {
                Reply::Body(KEY_AUTHORIZATION.to_string())
            } else {
                Reply::Status(404)
            }
        })
        .await;
        // --va-resolve points every name elsewhere: an address is not a name.
        let mut cfg = config(port, 1);
        cfg.resolve = vec![("*".to_string(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))];
        run(&cfg, ChallengeKind::Http01, "127.0.0.1", KEY_AUTHORIZATION)
            .await
            .unwrap();

        let (port, seen) = tls_responder(
            acme_certificate(&["127.0.0.1"], Acme::Good),
            Some(ACME_TLS_ALPN),
            rustls::ALL_VERSIONS,
        )
        .await;
        let mut cfg = config(1, port);
        cfg.resolve.clear();
        run(&cfg, ChallengeKind::TlsAlpn01, "127.0.0.1", KEY_AUTHORIZATION)
            .await
            .unwrap();
        assert_eq!(sni_seen(&seen).await, ["1.0.0.127.in-addr.arpa".to_string()]);
        // A certificate for a DNS name, or for another address, does not prove the address.
        for names in [
            &["a.example.test"][..],
            &["127.0.0.2"][..],
            &["127.0.0.1", "a.example.test"][..],
        ] {
            let (port, _) = tls_responder(
                acme_certificate(names, Acme::Good),
                Some(ACME_TLS_ALPN),
                rustls::ALL_VERSIONS,
            )
            .await;
            let err = run(
                &config(1, port),
                ChallengeKind::TlsAlpn01,
                "127.0.0.1",
                KEY_AUTHORIZATION,
            )
            .await
            .unwrap_err();
            match &err {
                VaError::Certificate { reason, .. } => {
                    assert!(reason.contains("iPAddress 127.0.0.1"), "{names:?}: {reason}");
                }
                other => panic!("{names:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn reverse_names_follow_rfc_1035_and_3596() {
        assert_eq!(reverse_name("192.0.2.10".parse().unwrap()), "10.2.0.192.in-addr.arpa");
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[tokio::test]
    async fn tls_alpn01_refuses_every_wrong_certificate() {
        let cases: [(&[&str], Acme, &str); 6] = [
            (
                &[NAME],
                Acme::Digest("wrong.key-authorization"),
                "expected the OCTET STRING",
            ),
            (&[NAME], Acme::NotCritical, "not marked critical"),
            (&[NAME], Acme::Missing, "no id-pe-acmeIdentifier"),
            (&[NAME], Acme::Twice, "more than one"),
            (&[NAME, "b.example.test"], Acme::Good, "2 subjectAltName entries"),
            (
                &["b.example.test"],
                Acme::Good,
                "\"b.example.test\", expected a.example.test",
            ),
        ];
        for (names, acme, says) in cases {
            let err = tls_alpn(acme_certificate(names, acme), Some(ACME_TLS_ALPN))
                .await
                .unwrap_err();
            assert!(matches!(err, VaError::Certificate { .. }), "{says}: {err:?}");
            assert!(err.to_string().contains(says), "{says}: {err}");
            assert_eq!(err.problem_type(), ProblemType::IncorrectResponse);
        }
    }

    #[tokio::test]
    async fn tls_alpn01_needs_the_acme_tls_1_protocol() {
        let err = tls_alpn(acme_certificate(&[NAME], Acme::Good), None).await.unwrap_err();
        assert_eq!(
            err,
            VaError::Alpn {
                target: err_target(&err),
                negotiated: "none".into()
            }
        );
        assert_eq!(err.problem_type(), ProblemType::Tls);
        // A server that only speaks another protocol fails the handshake.
        let err = tls_alpn(acme_certificate(&[NAME], Acme::Good), Some(b"h2"))
            .await
            .unwrap_err();
        assert!(matches!(err, VaError::Tls { .. }), "{err:?}");
        assert_eq!(err.problem_type(), ProblemType::Tls);
    }

    #[tokio::test]
    async fn tls_alpn01_peer_must_hold_the_certificate_key() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (certificate, _) = acme_certificate(&[NAME], Acme::Good);
            let (_, other_key) = acme_certificate(&[NAME], Acme::Good);
            let (port, _) = tls_responder((certificate, other_key), Some(ACME_TLS_ALPN), &[version]).await;
            let err = run(&config(1, port), ChallengeKind::TlsAlpn01, NAME, KEY_AUTHORIZATION)
                .await
                .unwrap_err();
            assert!(matches!(err, VaError::Tls { .. }), "{version:?}: {err:?}");
            assert!(err.to_string().contains("BadSignature"), "{err}");
        }
    }

    #[tokio::test]
    async fn tls_alpn01_on_a_plain_http_port_is_tls() {
        let port = http_responder(serves_key_authorization()).await;
        let err = run(&config(1, port), ChallengeKind::TlsAlpn01, NAME, KEY_AUTHORIZATION)
            .await
            .unwrap_err();
        assert!(matches!(err, VaError::Tls { .. }), "{err:?}");
    }

    fn err_target(err: &VaError) -> String {
        match err {
            VaError::Alpn { target, .. } => target.clone(),
            _ => String::new(),
        }
    }

    #[test]
    fn certificate_checks_name_other_san_kinds() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(
                &octet_string_of_digest(KEY_AUTHORIZATION)[2..],
            ));
        let cert = params.self_signed(&key).unwrap();
        let err = check_acme_certificate(cert.der(), NAME, KEY_AUTHORIZATION).unwrap_err();
        assert!(err.contains("instead of the dNSName"), "{err}");
        assert!(
            check_acme_certificate(b"\x30\x03junk", NAME, KEY_AUTHORIZATION)
                .unwrap_err()
                .contains("cannot be parsed")
        );
        let (der, _) = acme_certificate(&[NAME], Acme::Good);
        check_acme_certificate(&der, NAME, KEY_AUTHORIZATION).unwrap();
        check_acme_certificate(&der, "a.example.test.other", KEY_AUTHORIZATION).unwrap_err();
    }
}
