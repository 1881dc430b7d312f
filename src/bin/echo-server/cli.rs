//! The `echo-server` command line.

use std::path::PathBuf;

use clap::Parser;
pub use tessera::cli::RotationArgs;

const AFTER_HELP: &str = "EXAMPLES:
  # mutual TLS, keys rotated every MiB, only client1 and client2 admitted
  echo-server --listen 127.0.0.1:4433 --cert server.chain.pem --key server.key \\
      --client-ca root.pem --crl ca/crl.pem --allow client1 --allow client2 --rotate-bytes 1M

  # any port; the chosen one is printed as `listening on 127.0.0.1:PORT`
  echo-server --listen 127.0.0.1:0 --cert server.chain.pem --key server.key --client-ca root.pem

  # behind HAProxy (send-proxy-v2) on this machine: the log shows each client's own address
  echo-server --listen 127.0.0.1:4433 --cert server.chain.pem --key server.key --client-ca root.pem \
      --proxy-protocol --proxy-from 127.0.0.1 --drain-timeout 30

  # a fleet sharing session tickets: make the key file once, copy it to every server
  echo-server --new-ticket-key tickets.keys
  echo-server --listen 127.0.0.1:4433 --cert server.chain.pem --key server.key --client-ca root.pem \\
      --ticket-keys tickets.keys

  # many clients: 10000 sessions, at most 512 handshakes in progress, 5 s to complete one
  echo-server --listen 0.0.0.0:4433 --cert server.chain.pem --key server.key --client-ca root.pem \\
      --max-conns 10000 --max-handshakes 512 --handshake-timeout 5

SIGNALS:
  SIGHUP            reload --cert, --key, --client-ca, --crl and --ticket-keys within --reload-timeout
                    (a bad or unreadable file keeps the configuration in force, and the log says why;
                    an unusable --ticket-keys keeps the keys in force and installs the rest)
  SIGINT, SIGTERM   stop accepting at once (the port closes); let connections (handshakes too) go on
                    for up to --drain-timeout seconds, then close them with close_notify; exit 0.
                    A second SIGINT or SIGTERM closes every connection at once

ENVIRONMENT:
  SSLKEYLOGFILE     append TLS secrets to this file (for Wireshark); unset: nothing is written
  RUST_LOG          log filter (default: info)

EXIT CODES:
  0  stopped by SIGINT or SIGTERM; --new-ticket-key wrote the file
  2  usage error (unknown flag, a value out of range such as --handshake-timeout 0)
  3  could not start: a file missing, unreadable, not a regular file or not PEM; wrong passphrase;
     a certificate it cannot serve with (expired, not yet valid, not for server use, key not
     matching); a --ticket-keys file unreadable, open to group or others, or not base64 keys;
     cannot listen on --listen";

/// A TLS 1.3 echo service with mutual TLS and in-flight key rotation.
///
/// Every byte a client sends comes back. Without --client-ca any client may connect; with it,
/// clients must present a certificate for client use that chains to ROOT (and is not revoked by
/// any --crl), and with --allow their certificate's common name or a SAN must be listed.
#[derive(Debug, Parser)]
#[command(
    name = "echo-server",
    version,
    after_help = AFTER_HELP,
    override_usage = "echo-server [OPTIONS] --listen <ADDR> --cert <CHAIN> --key <KEY>\n       echo-server --new-ticket-key <FILE>"
)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", value_parser = listen_address, required_unless_present = "new_ticket_key")]
    pub listen: Option<String>,
    /// The server's certificate chain (PEM: certificate, then intermediates); a regular file.
    #[arg(long, value_name = "CHAIN", required_unless_present = "new_ticket_key")]
    pub cert: Option<PathBuf>,
    /// The server's private key (PKCS#8 PEM, possibly encrypted); a regular file.
    #[arg(long, value_name = "KEY", required_unless_present = "new_ticket_key")]
    pub key: Option<PathBuf>,
    /// File holding the passphrase of an encrypted --key (else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Require client certificates chaining to a root in this PEM file.
    #[arg(long, value_name = "ROOT")]
    pub client_ca: Option<PathBuf>,
    /// A CRL to check client certificates against (repeatable). One past its nextUpdate is
    /// reported at start and reload: it makes every client it covers be refused.
    #[arg(long, value_name = "FILE", requires = "client_ca")]
    pub crl: Vec<PathBuf>,
    /// Admit only clients whose certificate answers to NAME (repeatable): a bare NAME is the
    /// exact common name or a DNS SAN; dns:, ip:, email:, uri: NAME only a SAN of that type.
    #[arg(long, value_name = "NAME", requires = "client_ca", value_parser = allow_entry)]
    pub allow: Vec<String>,
    #[command(flatten)]
    pub rotation: RotationArgs,
    /// Seconds a client has to complete the TLS handshake (0.01 to 3600).
    #[arg(long, value_name = "S", value_parser = phase_seconds, allow_negative_numbers = true, default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Seconds a connection may stay without traffic (reads and writes) before it is closed
    /// (0.01 to ten years).
    #[arg(long, value_name = "S", value_parser = long_seconds, allow_negative_numbers = true, default_value_t = 300.0)]
    pub idle_timeout: f64,
    /// Seconds allowed for close_notify and for connections to finish at shutdown (0.01 to 3600).
    #[arg(long, value_name = "S", value_parser = phase_seconds, allow_negative_numbers = true, default_value_t = 5.0)]
    pub shutdown_timeout: f64,
    /// Seconds allowed for reading the files at start and at each reload (0.01 to 3600).
    #[arg(long, value_name = "S", value_parser = phase_seconds, allow_negative_numbers = true, default_value_t = 10.0)]
    pub reload_timeout: f64,
    /// Most established sessions at once (1 to 1000000); a client that completes its
    /// handshake beyond it is closed at once.
    #[arg(long, value_name = "N", value_parser = connection_count, allow_negative_numbers = true, default_value_t = 1024)]
    pub max_conns: u64,
    /// Most connections still in their handshake at once (1 to 1000000). They do not count
    /// against --max-conns; when the limit is reached the oldest pending handshake is dropped,
    /// so connections that never complete one cannot lock clients out.
    #[arg(long, value_name = "N", value_parser = connection_count, allow_negative_numbers = true, default_value_t = 256)]
    pub max_handshakes: u64,
    /// Connections from a --proxy-from peer start with a PROXY protocol v1 or v2 header (as
    /// HAProxy's send-proxy-v2 and nginx's proxy_protocol send), read before the TLS handshake
    /// within --handshake-timeout; the client address it states is the one logged. Other peers
    /// connect directly, and a header from them is refused.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// With --proxy-protocol: a network (CIDR, or one address) whose peers are proxies that
    /// must send a header (repeatable; default: loopback, 127.0.0.0/8 and ::1).
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol", value_parser = tessera::channel::Cidr::parse)]
    pub proxy_from: Vec<tessera::channel::Cidr>,
    /// Seconds that sessions may go on after SIGTERM or SIGINT (0 to 3600; 0: close them at
    /// once). The port closes at once; a second signal ends every connection at once.
    #[arg(long, value_name = "S", value_parser = drain_seconds, allow_negative_numbers = true, default_value_t = 0.0)]
    pub drain_timeout: f64,
    /// Send TLS 1.3 session tickets sealed with the keys in FILE (one base64 32-byte key per
    /// line; the first seals, all open; a regular file of mode 0600 or 0400, never -), so that
    /// clients resume on any server holding the same file. Re-read on SIGHUP. A resumed client's
    /// certificate is verified again (trust anchors, CRLs, --allow). Without it: no tickets.
    #[arg(long, value_name = "FILE", value_parser = key_file)]
    pub ticket_keys: Option<PathBuf>,
    /// With --ticket-keys: seconds a client may use a ticket (1 to 604800, i.e. at most 7 days:
    /// RFC 8446 §4.6.1), sent to clients and enforced; rotate the keys no more often than this.
    #[arg(long, value_name = "S", requires = "ticket_keys", value_parser = ticket_lifetime, default_value_t = 3600)]
    pub ticket_lifetime: u64,
    /// Put a fresh random key first in the ticket key FILE (created 0600 if absent), keep at
    /// most three keys, print the key count and the new key's name, and exit: the rotation step
    /// (then copy FILE to every server and send each SIGHUP). Safe to run concurrently on one
    /// FILE (a lock on its directory); removes temporary copies a killed run left.
    #[arg(long, value_name = "FILE", exclusive = true, value_parser = key_file)]
    pub new_ticket_key: Option<PathBuf>,
    /// Also accept TLS 1.2 (such connections cannot rotate keys).
    #[arg(long)]
    pub insecure_allow_tls12: bool,
    /// Benchmarks only (hidden): wait this many milliseconds (0 to 10000) before each echo, so
    /// that a session holds its --max-conns slot for a known time (scripts/fleet-bench.sh).
    #[arg(long, value_name = "MS", hide = true, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub bench_echo_delay_ms: u64,
    /// Log errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The largest --max-conns and --max-handshakes.
pub const MAX_CONNECTIONS: u64 = 1_000_000;

/// `--ticket-lifetime`: 1 second to 7 days (RFC 8446 §4.6.1).
fn ticket_lifetime(text: &str) -> Result<u64, String> {
    tessera::cli::whole_number(text, 1, tessera::channel::MAX_TICKET_LIFETIME.as_secs())
}

/// `--ticket-keys`, `--new-ticket-key`: a path, never empty nor `-` (key files hold secrets: a
/// 0600 regular file, not stdin).
fn key_file(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("an empty path cannot be a ticket key file: give the path of a regular file of mode 0600".into());
    }
    if text == "-" {
        return Err(
            "\"-\" (standard input or output) cannot be a ticket key file: give the path of a regular file of mode \
             0600 (the server reads it again on SIGHUP)"
                .into(),
        );
    }
    Ok(PathBuf::from(text))
}

/// `--max-conns`, `--max-handshakes`: 1 to [`MAX_CONNECTIONS`].
fn connection_count(text: &str) -> Result<u64, String> {
    tessera::cli::whole_number(text, 1, MAX_CONNECTIONS)
}

/// Time limits of one phase: 0.01 to 3600 seconds.
fn phase_seconds(text: &str) -> Result<f64, String> {
    use tessera::cli::{MAX_PHASE_SECONDS, MIN_TIMEOUT, seconds_value};
    seconds_value(text, MIN_TIMEOUT.as_secs_f64(), MAX_PHASE_SECONDS, false)
}

/// `--drain-timeout`: 0 (close sessions at once), or 0.01 to 3600 seconds (the range is
/// checked in `run`, which names the flag).
fn drain_seconds(text: &str) -> Result<f64, String> {
    use tessera::cli::{MAX_PHASE_SECONDS, MIN_TIMEOUT};
    text.trim().parse::<f64>().map_err(|_| {
        format!(
            "expected 0 (close sessions at once) or a number of seconds from {} to {MAX_PHASE_SECONDS}, not \"{}\"",
            MIN_TIMEOUT.as_secs_f64(),
            tessera::cli::printable(text)
        )
    })
}

/// `--idle-timeout`: 0.01 seconds to ten years.
fn long_seconds(text: &str) -> Result<f64, String> {
    use tessera::cli::{MAX_SECONDS, MIN_TIMEOUT, seconds_value};
    seconds_value(text, MIN_TIMEOUT.as_secs_f64(), MAX_SECONDS, false)
}

/// `--listen`: HOST:PORT, port 0 to 65535 (0: any free port).
fn listen_address(text: &str) -> Result<String, String> {
    tessera::cli::host_port(text, 0)
}

/// An `--allow` entry: a bare NAME (a common name or DNS SAN, any printable text), or
/// `dns:`, `ip:`, `email:`, `uri:` and a value in the grammar `ca issue --san` takes. Control,
/// bidi and invisible characters are refused everywhere: no certificate name the server admits
/// should hide what it is.
pub fn allow_entry(text: &str) -> Result<String, String> {
    let shown = tessera::cli::printable(text);
    if text.trim().is_empty() {
        return Err(
            "an --allow entry is empty: give a common name, or dns:NAME, ip:ADDRESS, email:ADDRESS or uri:URI".into(),
        );
    }
    if shown != text {
        return Err(format!(
            "\"{shown}\" contains control, bidi or invisible characters (shown as \\u{{…}}): give the name as printable text"
        ));
    }
    let typed = text
        .split_once(':')
        .filter(|(kind, _)| ["dns", "ip", "email", "uri"].contains(&kind.to_ascii_lowercase().as_str()));
    let Some((kind, value)) = typed else {
        return Ok(text.to_string());
    };
    let kind = kind.to_ascii_lowercase();
    let form = match kind.as_str() {
        "dns" => "a DNS name such as client1.example",
        "ip" => "an IP address such as 10.0.0.7 or ::1",
        "email" => "an e-mail address such as alice@example.org",
        _ => "a URI such as spiffe://example.org/svc",
    };
    if value.trim().is_empty() {
        return Err(format!("\"{shown}\" names nothing after \"{kind}:\": give {form}"));
    }
    tessera::ca::SubjectAltName::parse(&format!("{kind}:{value}"))
        .map_err(|_| format!(
                "\"{shown}\" is not a valid allow-list entry: after \"{kind}:\" give {form} (the forms `ca issue --san` takes)"
            ))?;
    Ok(text.to_string())
}
