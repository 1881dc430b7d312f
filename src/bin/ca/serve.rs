//! `ca serve`: flags, binding, `listening on …`, signals. The service is `tessera::ca::serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use tessera::ca::CaError;
use tessera::ca::serve::{BaseUrl, ServeConfig, va::VaConfig};
use tessera::channel::{Cidr, Credentials, ProxySources};
use tessera::cli::{CliError, exit};
use tessera::pki::PkiError;

pub const SERVE_EXAMPLES: &str = "EXAMPLES:
  ca serve --listen 127.0.0.1:14000 --base-url https://127.0.0.1:14000 --dir certs/issuing
  ca serve --listen 0.0.0.0:443 --http-listen 0.0.0.0:80 --base-url https://acme.example.org \\
      --allow-dns example.org --acme-hours 72 --dir certs/issuing
  ca serve --listen 127.0.0.1:14000 --base-url https://127.0.0.1:14000 \\
      --va-http-port 5002 --va-resolve '*=127.0.0.1' --dir certs/issuing      # tests
  TESSERA_DB=postgres://ca@db:5432/ca ca serve --listen 10.0.0.5:8443 \\
      --base-url https://acme.example.org --proxy-protocol --proxy-from 10.0.0.2 --dir certs/issuing
  lego --server https://127.0.0.1:14000/acme/directory --accept-tos --email a@example.org \\
      --domains www.example.org --http --http.port :5002 run

The ACME directory is BASE-URL/acme/directory. Certificates issued over ACME live --acme-hours
(default 24); notBefore/notAfter in an order are refused. See docs/serve.md.";

pub const SERVE_SIGNALS: &str = "SIGNALS:
  SIGTERM, SIGINT  stop accepting, let in-flight requests finish (up to 10 s), release the
                   leases, log \"stopped\", exit 0
  SIGHUP           nothing is reloaded (flags, files and the CA are read once at start): a
                   warning is logged and serving goes on; restart to pick up changes";

pub const SERVE_EXIT_CODES: &str = "EXIT CODES:
  0  stopped by SIGTERM or SIGINT (after letting in-flight requests finish)
  2  usage error (unknown flag, bad --base-url, --listen or --http-listen, a port out of range,
     --va-resolve without NAME=IP or to a special-purpose address, a bad --proxy-from network,
     --tls-cert without --tls-key, an --allow-dns suffix or --allow-ip network the CA's name
     constraints leave nothing in, an --allow-ip network that is IPv4-mapped or of only
     special-purpose addresses)
  3  could not run (no CA or a damaged one in DIR, a CA directory this user may not read, the
     store cannot be opened, an address cannot be bound, unusable --tls-cert/--tls-key, the
     server's own certificate cannot be issued for the host of --base-url (outside the CA's
     name constraints: give --tls-cert and --tls-key), wrong passphrase)";

/// `ca serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address for ACME, /crl, /ocsp, /ca.pem and /healthz: IP:PORT (port 0: any free one;
    /// the bound address is printed).
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    pub listen: SocketAddr,
    /// The external HTTPS URL that clients use, https://HOST or https://HOST:PORT (a load balancer's, say):
    /// every ACME URL is built from it, and each request's JWS url is checked against it. HOST is
    /// the one name clients connect to (no wildcard, no trailing dot) or an IP address.
    #[arg(long, value_name = "URL", value_parser = parse_base_url)]
    pub base_url: BaseUrl,
    /// Plain-HTTP address for /crl, /ocsp and /ca.pem (CRLs and OCSP travel over HTTP).
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    pub http_listen: Option<SocketAddr>,
    /// The HTTPS certificate chain, PEM (default: a short-lived certificate for the host of
    /// --base-url, issued by the CA itself and renewed at half its life).
    #[arg(long, value_name = "CHAIN", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The HTTPS certificate's key (PKCS#8 PEM, unencrypted).
    #[arg(long, value_name = "KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Lifetime of certificates issued over ACME, in hours, 1 to 8760, shortened to end before
    /// the CA.
    #[arg(long, value_name = "N", default_value_t = 24, value_parser = parse_acme_hours)]
    pub acme_hours: u32,
    /// How long /ocsp answers may be relied on (nextUpdate − thisUpdate), in hours, 1 to 240,
    /// never past the CA's own end (an expired CA answers `unauthorized`). A client that caches
    /// an answer may miss a revocation for up to this long.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_ocsp_hours)]
    pub ocsp_hours: u32,
    /// Issue only for names equal to or below this DNS suffix (repeatable), besides the CA's
    /// own name constraints (a suffix they leave no name under is refused).
    #[arg(long, value_name = "SUFFIX", value_parser = parse_suffix)]
    pub allow_dns: Vec<String>,
    /// Issue for IP addresses (RFC 8738 ip identifiers) in this network, as CIDR (repeatable),
    /// inside the CA's own name constraints; without it, ip identifiers are refused. The
    /// validation authority connects to these addresses. Loopback (127.0.0.0/8, ::1) may be
    /// given; an IPv4-mapped network (::ffff:…, give the IPv4 one) or one of only
    /// special-purpose addresses (link-local, multicast, unspecified, reserved) may not.
    #[arg(long, value_name = "CIDR", value_parser = parse_allow_ip)]
    pub allow_ip: Vec<Cidr>,
    /// Port the validation authority connects to for http-01 (default 80).
    #[arg(long, value_name = "N", value_parser = parse_port)]
    pub va_http_port: Option<u16>,
    /// Port the validation authority connects to for tls-alpn-01 (default 443).
    #[arg(long, value_name = "N", value_parser = parse_port)]
    pub va_tls_port: Option<u16>,
    /// Resolve NAME to IP for validation instead of DNS (repeatable; `*=IP` for every name).
    /// IP may be loopback, but no other special-purpose address.
    #[arg(long, value_name = "NAME=IP", value_parser = parse_resolve)]
    pub va_resolve: Vec<(String, IpAddr)>,
    /// Skip validation: every challenge succeeds (tests only; logged loudly).
    #[arg(long)]
    pub va_always_valid: bool,
    /// Seconds after which an order left in `processing` by a crashed instance becomes invalid
    /// (default 300; tests only, hidden).
    #[arg(long, value_name = "SECONDS", hide = true, value_parser = parse_stuck_after)]
    pub stuck_after: Option<u64>,
    /// Connections from --proxy-from peers start with a PROXY protocol v1 or v2 header
    /// (HAProxy's send-proxy-v2); the client address in it is the one logged.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Peers that send a PROXY header, as CIDR (repeatable; default: loopback).
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol", value_parser = Cidr::parse)]
    pub proxy_from: Vec<Cidr>,
}

fn parse_address(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not IP:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:14000, [::1]:0)"))
}

fn parse_base_url(text: &str) -> Result<BaseUrl, String> {
    BaseUrl::parse(text).map_err(|e| match e {
        tessera::ca::CaError::InvalidRequest { reason, .. } => reason,
        other => other.to_string(),
    })
}

fn parse_acme_hours(text: &str) -> Result<u32, String> {
    crate::cli::parse_count(text, "hours", 8760)
}

fn parse_ocsp_hours(text: &str) -> Result<u32, String> {
    crate::cli::parse_count(text, "hours", 240)
}

fn parse_stuck_after(text: &str) -> Result<u64, String> {
    crate::cli::parse_count(text, "seconds", 86_400).map(u64::from)
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(port) if (1..=65_535).contains(&port) => Ok(u16::try_from(port).unwrap_or(u16::MAX)),
        _ => Err(format!("{text:?} is not a port from 1 to 65535")),
    }
}

fn parse_suffix(text: &str) -> Result<String, String> {
    match tessera::pki::SubjectAltName::check("dns", text.trim().trim_start_matches('.')) {
        Ok(tessera::pki::SubjectAltName::Dns(name)) if !name.starts_with('*') => Ok(name),
        _ => Err(format!("{text:?} is not a DNS suffix such as example.org")),
    }
}

/// An `--allow-ip` network: CIDR (`Cidr::parse`), neither IPv4-mapped nor made only of
/// special-purpose addresses (`tessera::ca::serve::address::allow_ip_network_refusal`); an
/// address written in another form (`127.1`, `[::1]`) is told its canonical one.
fn parse_allow_ip(text: &str) -> Result<Cidr, String> {
    let network = Cidr::parse(text).map_err(|why| {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        match tessera::ca::serve::address::read_address(address) {
            // Written canonically already: what is wrong is the prefix, which `why` names.
            Some(tessera::ca::serve::address::Reading::Address(ip)) if ip.to_string() == address => why,
            // Another spelling: its canonical form, with the prefix only where that makes a
            // network (never the wrong prefix, or a network with host bits set, again).
            Some(tessera::ca::serve::address::Reading::Address(ip)) => match prefix {
                Some(prefix)
                    if !prefix.is_empty()
                        && prefix.bytes().all(|b| b.is_ascii_digit())
                        && Cidr::parse(&format!("{ip}/{prefix}")).is_ok() =>
                {
                    format!("{why}: write it {ip}/{prefix}")
                }
                _ => format!("{why}: write the address {ip}"),
            },
            Some(ambiguous) => format!("{why}: {}", ambiguous.advice()),
            None => why,
        }
    })?;
    match tessera::ca::serve::address::allow_ip_network_refusal(&network) {
        Some(why) => Err(why),
        None => Ok(network),
    }
}

fn parse_resolve(text: &str) -> Result<(String, IpAddr), String> {
    let Some((name, ip)) = text.split_once('=') else {
        return Err(format!(
            "{text:?} is not NAME=IP (e.g. a.example.test=127.0.0.1, or *=127.0.0.1)"
        ));
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{ip:?} in {text:?} is not an IP address"))?;
    if let Some(special) = tessera::ca::serve::address::special_purpose(ip).filter(|s| !s.is_plain_loopback()) {
        return Err(format!(
            "{ip} in {text:?} is {special}, which the validation authority never dials"
        ));
    }
    let name = name.trim().to_ascii_lowercase();
    if name != "*" {
        match tessera::pki::SubjectAltName::check("dns", &name) {
            Ok(tessera::pki::SubjectAltName::Dns(_)) => {}
            _ => return Err(format!("{name:?} in {text:?} is not a DNS name (or *)")),
        }
    }
    Ok((name, ip))
}

/// Runs `ca serve` until SIGTERM or SIGINT.
pub fn run(
    ca: tessera::ca::CertificateAuthority,
    args: &ServeArgs,
    store: Option<tessera::ca::Location>,
) -> anyhow::Result<u8> {
    // A suffix the CA can never issue below would make every order under it fail: refused.
    for suffix in &args.allow_dns {
        if let Some(why) = tessera::ca::serve::allow_dns_refusal(ca.chain(), suffix) {
            return Err(CliError::usage(format!("--allow-dns {suffix}: {why}"))
                .with_hint(
                    "give suffixes inside the CA's name constraints (see `ca show DIR/ca.pem`), or leave out \
                     --allow-dns to issue for every name the CA permits",
                )
                .into());
        }
    }
    for network in &args.allow_ip {
        if let Some(why) = tessera::ca::serve::allow_ip_refusal(ca.chain(), network) {
            return Err(CliError::usage(format!("--allow-ip {network}: {why}"))
                .with_hint("give networks inside the CA's name constraints (see `ca show DIR/ca.pem`)")
                .into());
        }
    }
    let mut config = ServeConfig::new(args.base_url.clone());
    config.acme_lifetime = Duration::from_secs(u64::from(args.acme_hours) * 3600);
    config.ocsp_lifetime = Duration::from_secs(u64::from(args.ocsp_hours) * 3600);
    config.allow_dns = args.allow_dns.clone();
    config.va = va_config(args);
    config.va_always_valid = args.va_always_valid;
    if let Some(seconds) = args.stuck_after {
        config.stuck_after = Duration::from_secs(seconds);
    }
    config.store = store;
    if args.proxy_protocol {
        config.proxy = Some(if args.proxy_from.is_empty() {
            ProxySources::loopback()
        } else {
            ProxySources::new(args.proxy_from.clone())
        });
    }
    if let (Some(chain), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let credentials = Credentials::load(chain, key, None).map_err(|e| {
            // The file's own problem (missing, unreadable) comes before its format.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut io_kind = None;
            while let Some(error) = cause {
                if let Some(io) = error.downcast_ref::<std::io::Error>() {
                    io_kind = Some(io.kind());
                }
                cause = error.source();
            }
            let hint = match io_kind {
                Some(std::io::ErrorKind::NotFound) => "check the paths given to --tls-cert and --tls-key",
                Some(std::io::ErrorKind::PermissionDenied) => "make the files readable by the user running `ca serve`",
                _ => "give a PEM chain (leaf first) and its unencrypted PKCS#8 key",
            };
            CliError::failure(format!(
                "cannot use --tls-cert/--tls-key: {}",
                tessera::cli::error_chain(&e)
            ))
            .with_hint(hint)
        })?;
        config.tls = Some(credentials);
    }
    if args.va_always_valid {
        tracing::warn!("--va-always-valid: challenges are NOT validated; every order can be issued. Tests only!");
        tessera::errln!("ca: warning: --va-always-valid: challenges are NOT validated (tests only)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The listeners and signal handlers come first, without the CA: on a failure here the CA
    // (and a PostgreSQL store's blocking client, which may not be closed on a runtime's thread)
    // is dropped after block_on has returned.
    let prepared = runtime.block_on(prepare(args));
    let result = match prepared {
        Ok(prepared) => runtime.block_on(serve(ca, config, prepared)),
        Err(error) => {
            drop(ca);
            Err(error)
        }
    };
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

/// What `ca serve` binds and handles before it starts.
struct Prepared {
    https: TcpListener,
    http: Option<TcpListener>,
    https_address: SocketAddr,
    http_address: Option<SocketAddr>,
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
    sighup: tokio::signal::unix::Signal,
}

async fn prepare(args: &ServeArgs) -> anyhow::Result<Prepared> {
    let sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // SIGHUP reloads other Tessera services (echo-server); its default action, ending the
    // process at once without the drain, would surprise. Nothing here can be reloaded safely.
    let sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let https = bind(args.listen, "--listen").await?;
    let http = match args.http_listen {
        Some(address) => Some(bind(address, "--http-listen").await?),
        None => None,
    };
    let https_address = https.local_addr().context("cannot read the bound address")?;
    let http_address = http
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .context("cannot read the bound address")?;
    Ok(Prepared {
        https,
        http,
        https_address,
        http_address,
        sigint,
        sigterm,
        sighup,
    })
}

fn va_config(args: &ServeArgs) -> VaConfig {
    let mut va = VaConfig::default();
    if let Some(port) = args.va_http_port {
        va.http_port = port;
    }
    if let Some(port) = args.va_tls_port {
        va.tls_port = port;
    }
    va.resolve = args.va_resolve.clone();
    va.allow_ip = args.allow_ip.clone();
    va
}

async fn bind(address: SocketAddr, flag: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {address} ({flag}): {e}")))
}

async fn serve(ca: tessera::ca::CertificateAuthority, config: ServeConfig, prepared: Prepared) -> anyhow::Result<u8> {
    let Prepared {
        https,
        http,
        https_address,
        http_address,
        mut sigint,
        mut sigterm,
        mut sighup,
    } = prepared;
    let own_certificate = config.tls.is_none();
    let host = config.base_url.host().to_string();
    let (handle, service) = tessera::ca::serve::serve(ca, config, https, http)
        .await
        .map_err(|error| own_certificate_error(error, own_certificate, &host))?;
    let said = tessera::outln!("listening on {https_address} (https)").and_then(|()| match http_address {
        Some(address) => tessera::outln!("listening on {address} (http)"),
        None => Ok(()),
    });
    tokio::pin!(service);
    if let Err(error) = said {
        // Stopped, not dropped: the service closes its store connections off the runtime.
        handle.shutdown("standard output failed");
        service.await;
        return Err(error.into());
    }
    loop {
        tokio::select! {
            () = &mut service => return Ok(exit::OK),
            _ = sigint.recv() => handle.shutdown("SIGINT"),
            _ = sigterm.recv() => handle.shutdown("SIGTERM"),
            _ = sighup.recv() => tracing::warn!(
                "SIGHUP: ca serve does not reload; restart it (SIGTERM drains) to pick up changes"
            ),
        }
    }
}

/// An error of [`tessera::ca::serve::serve`] in `ca serve`'s words: when the server's own
/// certificate cannot be issued for the host of --base-url (outside the CA's name constraints,
/// say), that is exit 3 with what to do instead; other errors are left as they are.
fn own_certificate_error(error: CaError, own_certificate: bool, host: &str) -> anyhow::Error {
    let issuing = matches!(
        &error,
        CaError::Refused(_)
            | CaError::OutlivesIssuer { .. }
            | CaError::IssuerNotValid { .. }
            | CaError::Pki(PkiError::NameConstraintViolation)
            | CaError::InvalidRequest {
                field: "--tls-cert",
                ..
            }
    );
    if !own_certificate || !issuing {
        return error.into();
    }
    CliError::failure(format!(
        "cannot issue the server's own certificate for {host} (the host of --base-url): {error}"
    ))
    .with_hint(
        "give the HTTPS certificate with --tls-cert CHAIN --tls-key KEY, or a --base-url whose host lies \
         inside the CA's name constraints (see `ca show DIR/ca.pem`)",
    )
    .into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flag_values_are_checked() {
        assert_eq!(
            parse_resolve("*=127.0.0.1").unwrap(),
            ("*".into(), "127.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_resolve("A.test=::1").unwrap().0, "a.test");
        assert!(parse_resolve("a.test").unwrap_err().contains("NAME=IP"));
        assert!(parse_resolve("a.test=nope").is_err());
        assert_eq!(parse_resolve("*=::1").unwrap().1, "::1".parse::<IpAddr>().unwrap());
        for special in ["*=0.0.0.0", "*=169.254.169.254", "a.test=::ffff:127.0.0.1", "*=ff02::1"] {
            assert!(parse_resolve(special).unwrap_err().contains("never dials"), "{special}");
        }
        assert_eq!(parse_allow_ip("127.0.0.0/8").unwrap().to_string(), "127.0.0.0/8");
        assert_eq!(parse_allow_ip("::1").unwrap().to_string(), "::1/128");
        for (bad, says) in [
            ("::ffff:127.0.0.1/128", "give 127.0.0.1/32"),
            ("::ffff:10.0.0.0/104", "give 10.0.0.0/8"),
            ("169.254.0.0/16", "link-local"),
            ("224.0.0.0/4", "multicast"),
            ("fe80::/10", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("64:ff9b::7f00:1", "give 127.0.0.1/32"),
            ("127.1/32", "write it 127.0.0.1/32"),
            ("[::1]", "write the address ::1"),
            ("0177.0.0.1", "octal"),
            ("10.0.0.1/8", "10.0.0.0/8"),
        ] {
            let why = parse_allow_ip(bad).unwrap_err();
            assert!(why.contains(says), "{bad}: {why}");
        }
        assert!(parse_port("0").is_err() && parse_port("65536").is_err() && parse_port("x").is_err());
        assert_eq!(parse_port("5002").unwrap(), 5002);
        assert_eq!(parse_stuck_after("3").unwrap(), 3);
        assert!(parse_stuck_after("0").is_err() && parse_stuck_after("-1").is_err());
        assert!(parse_address("127.0.0.1:70000").is_err());
        assert_eq!(parse_address("127.0.0.1:0").unwrap().port(), 0);
        assert_eq!(parse_suffix(".Example.test").unwrap(), "example.test");
        assert!(parse_base_url("http://a.test").is_err());
    }
}
