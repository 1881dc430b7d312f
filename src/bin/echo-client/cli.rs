//! The `echo-client` command line.

use std::path::PathBuf;

use clap::Parser;
use tessera::channel::parse_byte_size;
pub use tessera::cli::RotationArgs;

const AFTER_HELP: &str = "EXAMPLES:
  # send two messages over mutual TLS, rotating keys every 16 bytes, and print the echoes
  echo-client --connect 127.0.0.1:4433 --server-name localhost --ca root.pem \\
      --cert client.chain.pem --key client.key --rotate-bytes 16 hello world

  # stream stdin to the server and its echo to stdout
  echo-client --connect localhost:4433 --ca root.pem --cert client.chain.pem --key client.key < file

  # survive a server restart or a failover behind a load balancer: up to 10 connection attempts
  echo-client --connect lb:4433 --ca root.pem --cert c.chain.pem --key c.key --retry 10 \\
      --retry-backoff 100 one two three

  # load test: 1 GiB over 4 connections, JSON report
  echo-client --connect localhost:4433 --ca root.pem --cert c.chain.pem --key c.key \\
      --bench --bytes 1G --conns 4 --json

OUTPUT:
  Messages: each MESSAGE is sent followed by a newline; what comes back is printed as is.
  With --retry, stderr ends with `echo-client: retry: A connection attempts after a failure,
  R reconnects (S resumed their TLS session), M messages sent again; …` (nothing with -q): A
  counts every attempt --retry made, R those that opened a connection (singular nouns for 1);
  a run that fails ends it with what was not done, and says when the attempts ran out.
  Stdin: streamed as it comes. A lost connection ends the run with exit 3 and an error saying
  how many bytes were sent and how many came back (those are on stdout; nothing else is): a
  stream cannot be sent again without echoing some of it twice, so --retry needs MESSAGEs.
  --bench: a summary (text, or with --json an object with connections, bytes_sent,
  bytes_received, seconds, mib_per_second, handshakes_per_second, handshake_ms {p50, p99, max},
  rotations, resumed, attempts, reconnects, reconnects_resumed, resent). With --retry a
  connection lost mid-way reconnects and echoes its bytes again from the start (counted in
  resent). --bytes 0: each connection closes at once and waits for the server's close, so a
  server that refuses the certificate after the handshake fails the run (exit 1).

ENVIRONMENT:
  SSLKEYLOGFILE     append TLS secrets to this file (for Wireshark); unset: nothing is written

EXIT CODES:
  0  every message was echoed (or the benchmark ran to its end)
  1  refused: the server's certificate is not trusted (by --ca, --server-name, a --crl), or the
     server refused ours (no certificate, unknown issuer, revoked, expired, not on its allow
     list, its CRL out of date); the hint names the cause
  2  usage error (unknown flag, a value out of range such as --timeout 0, a bad --server-name)
  3  could not run: a file missing, unreadable or not PEM; wrong passphrase; connection refused
     or lost; timeout; a TLS failure that is not a refusal";

/// A TLS 1.3 echo client with mutual TLS and in-flight key rotation.
#[derive(Debug, Parser)]
#[command(name = "echo-client", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The server's address (HOST:PORT).
    #[arg(long, value_name = "ADDR", value_parser = connect_address)]
    pub connect: String,
    /// Root certificate(s) the server's certificate must chain to (PEM).
    #[arg(long, value_name = "ROOT")]
    pub ca: PathBuf,
    /// A CRL to check the server's certificate against (repeatable).
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Client certificate chain for mutual TLS (PEM: certificate, then intermediates).
    #[arg(long, value_name = "CHAIN", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PKCS#8 PEM, possibly encrypted).
    #[arg(long, value_name = "KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// File holding the passphrase of an encrypted --key (else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The name the server's certificate must hold (default: the host part of --connect).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    #[command(flatten)]
    pub rotation: RotationArgs,
    /// Seconds allowed for the TCP connection and the TLS handshake (0.01 to 3600).
    #[arg(long, value_name = "S", value_parser = phase_seconds, allow_negative_numbers = true, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds without progress before giving up on the server (0.01 to ten years).
    #[arg(long, value_name = "S", value_parser = long_seconds, allow_negative_numbers = true, default_value_t = 30.0)]
    pub timeout: f64,
    /// Also accept TLS 1.2 (such connections cannot rotate keys).
    #[arg(long)]
    pub insecure_allow_tls12: bool,
    /// When the connection is refused, reset or lost before a message was echoed, make up to N
    /// more connection attempts in all (1 to 1000; with --bench, per connection; without the
    /// flag, none), resuming the TLS session where the server allows it (session tickets are
    /// kept across reconnects), and send again every message not yet echoed; each is printed
    /// once, in order. Refusals (certificates, allow list) are never retried. A summary goes to
    /// stderr (and into the --bench report): connection attempts after a failure, reconnects
    /// (the attempts that opened a connection), how many of those resumed, messages sent
    /// again. Not for stdin streaming: see OUTPUT.
    #[arg(long, value_name = "N", value_parser = retry_count)]
    pub retry: Option<u64>,
    /// The first wait before reconnecting, in milliseconds (1 to 60000); it doubles at each
    /// attempt (at most 10 s) and a random part (up to half) is taken off. Only with --retry.
    #[arg(long, value_name = "MS", value_parser = retry_backoff_ms, default_value_t = 100, requires = "retry")]
    pub retry_backoff: u64,
    /// Run a load test instead of sending messages.
    #[arg(long)]
    pub bench: bool,
    /// --bench: total bytes to echo, spread over the connections (0: handshakes only).
    #[arg(long, value_name = "N", default_value = "64M", value_parser = parse_byte_size, requires = "bench")]
    pub bytes: u64,
    /// --bench: number of connections (1 to 100000).
    #[arg(long, value_name = "N", value_parser = connection_count, allow_negative_numbers = true, default_value_t = 1, requires = "bench")]
    pub conns: u64,
    /// --bench: connections in flight at once (1 to --conns; default: all).
    #[arg(long, value_name = "N", value_parser = connection_count, allow_negative_numbers = true, requires = "bench")]
    pub concurrency: Option<u64>,
    /// --bench: size of each write (1 to 16M).
    #[arg(long, value_name = "N", default_value = "64K", value_parser = parse_byte_size, requires = "bench")]
    pub write_size: u64,
    /// --bench: print the report as JSON.
    #[arg(long, requires = "bench")]
    pub json: bool,
    /// Log errors only and print no summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Log connection details and print a traffic and rotation summary on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Messages to send (none: stream stdin to the server and the echo to stdout).
    #[arg(value_name = "MESSAGE", conflicts_with = "bench")]
    pub messages: Vec<String>,
}

/// The largest --conns (and --concurrency).
pub const MAX_CONNS: u64 = 100_000;

/// The largest --retry.
pub const MAX_RETRY: u64 = 1000;
/// The largest --retry-backoff, in milliseconds.
pub const MAX_RETRY_BACKOFF_MS: u64 = 60_000;

/// `--retry`: 1 to [`MAX_RETRY`] connection attempts after a failure (without the flag: none).
fn retry_count(text: &str) -> Result<u64, String> {
    tessera::cli::whole_number(text, 1, MAX_RETRY)
}

/// `--retry-backoff`: 1 to [`MAX_RETRY_BACKOFF_MS`] milliseconds.
fn retry_backoff_ms(text: &str) -> Result<u64, String> {
    tessera::cli::whole_number(text, 1, MAX_RETRY_BACKOFF_MS)
}

/// `--conns`, `--concurrency`: 1 to [`MAX_CONNS`] (--concurrency at most --conns, checked later).
fn connection_count(text: &str) -> Result<u64, String> {
    tessera::cli::whole_number(text, 1, MAX_CONNS)
}

/// `--connect-timeout`: 0.01 to 3600 seconds.
fn phase_seconds(text: &str) -> Result<f64, String> {
    use tessera::cli::{MAX_PHASE_SECONDS, MIN_TIMEOUT, seconds_value};
    seconds_value(text, MIN_TIMEOUT.as_secs_f64(), MAX_PHASE_SECONDS, false)
}

/// `--timeout`: 0.01 seconds to ten years.
fn long_seconds(text: &str) -> Result<f64, String> {
    use tessera::cli::{MAX_SECONDS, MIN_TIMEOUT, seconds_value};
    seconds_value(text, MIN_TIMEOUT.as_secs_f64(), MAX_SECONDS, false)
}

/// `--connect`: HOST:PORT, port 1 to 65535.
fn connect_address(text: &str) -> Result<String, String> {
    tessera::cli::host_port(text, 1)
}
