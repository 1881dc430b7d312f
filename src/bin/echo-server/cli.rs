//! The `echo-server` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tessera::channel::{RotationPolicy, parse_byte_size};

const AFTER_HELP: &str = "EXAMPLES:
  # mutual TLS, keys rotated every MiB, only client1 and client2 admitted
  echo-server --listen 127.0.0.1:4433 --cert server.chain.pem --key server.key \\
      --client-ca root.pem --crl ca/crl.pem --allow client1 --allow client2 --rotate-bytes 1M

  # any port; the chosen one is printed as `listening on 127.0.0.1:PORT`
  echo-server --listen 127.0.0.1:0 --cert server.chain.pem --key server.key --client-ca root.pem

SIGNALS:
  SIGHUP            reload --cert, --key, --client-ca and --crl (a bad file keeps the old ones)
  SIGINT, SIGTERM   stop accepting, close connections with close_notify, exit 0

ENVIRONMENT:
  SSLKEYLOGFILE     append TLS secrets to this file (for Wireshark); unset: nothing is written
  RUST_LOG          log filter (default: info)
";

/// A TLS 1.3 echo service with mutual TLS and in-flight key rotation.
///
/// Every byte a client sends comes back. Without --client-ca any client may connect; with it,
/// clients must present a certificate for client use that chains to ROOT (and is not revoked by
/// any --crl), and with --allow their certificate's common name or a SAN must be listed.
#[derive(Debug, Parser)]
#[command(name = "echo-server", version, after_help = format!("{AFTER_HELP}\n{}", tessera::cli::EXIT_CODES_HELP))]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The server's certificate chain (PEM: certificate, then intermediates).
    #[arg(long, value_name = "CHAIN")]
    pub cert: PathBuf,
    /// The server's private key (PKCS#8 PEM, possibly encrypted).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// File holding the passphrase of an encrypted --key (else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Require client certificates chaining to a root in this PEM file.
    #[arg(long, value_name = "ROOT")]
    pub client_ca: Option<PathBuf>,
    /// A CRL to check client certificates against (repeatable).
    #[arg(long, value_name = "FILE", requires = "client_ca")]
    pub crl: Vec<PathBuf>,
    /// Admit only clients whose certificate names NAME as common name or SAN (repeatable).
    #[arg(long, value_name = "NAME", requires = "client_ca")]
    pub allow: Vec<String>,
    #[command(flatten)]
    pub rotation: RotationArgs,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Seconds a connection may stay without traffic (reads and writes) before it is closed.
    #[arg(long, value_name = "S", default_value_t = 300.0)]
    pub idle_timeout: f64,
    /// Seconds allowed for close_notify and for connections to finish at shutdown.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub shutdown_timeout: f64,
    /// Most connections served at once; more are refused (closed at once).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_conns: usize,
    /// Also accept TLS 1.2 (such connections cannot rotate keys).
    #[arg(long)]
    pub insecure_allow_tls12: bool,
    /// Log errors only.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The `--rotate-…` options.
#[derive(Debug, clap::Args)]
pub struct RotationArgs {
    /// Rotate the traffic keys after this many bytes in one direction (65536, 64K, 1M; 0: never).
    /// Default 64M.
    #[arg(long, value_name = "N", value_parser = parse_byte_size)]
    pub rotate_bytes: Option<u64>,
    /// Rotate after this many messages in one direction (0: never). Off by default.
    #[arg(long, value_name = "N")]
    pub rotate_messages: Option<u64>,
    /// Rotate keys that have carried traffic after this many seconds (0: never). Default 600.
    #[arg(long, value_name = "S")]
    pub rotate_secs: Option<f64>,
    /// Never rotate twice within this many seconds. Off by default.
    #[arg(long, value_name = "S")]
    pub rotate_min_interval: Option<f64>,
    /// No policy rotation at all.
    #[arg(long, conflicts_with_all = ["rotate_bytes", "rotate_messages", "rotate_secs"])]
    pub no_rotate: bool,
}

impl RotationArgs {
    /// The policy: defaults, with each given option replacing its own default.
    pub fn policy(&self) -> Result<RotationPolicy, String> {
        if self.no_rotate {
            return Ok(RotationPolicy::never());
        }
        let mut policy = RotationPolicy::default();
        if let Some(bytes) = self.rotate_bytes {
            policy = policy.with_bytes(bytes);
        }
        if let Some(messages) = self.rotate_messages {
            policy = policy.with_messages(messages);
        }
        if let Some(secs) = self.rotate_secs {
            policy = policy.with_interval(seconds(secs, "--rotate-secs")?);
        }
        if let Some(secs) = self.rotate_min_interval {
            policy = policy.with_min_interval(seconds(secs, "--rotate-min-interval")?);
        }
        Ok(policy)
    }
}

/// A non-negative, finite number of seconds.
pub fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} needs a non-negative number of seconds, not {value}"))
}
