//! The `echo-server` command line.

use std::path::PathBuf;

use clap::Parser;
pub use tessera::cli::{RotationArgs, seconds};

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
    /// Admit only clients whose certificate answers to NAME (repeatable): a bare NAME is the
    /// exact common name or a DNS SAN; dns:, ip:, email:, uri: NAME only a SAN of that type.
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
