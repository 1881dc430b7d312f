//! The `ca` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tessera::ca::{Profile, RevocationReason};
use tessera::pki::{KeyAlgorithm, Usage};

const EXAMPLES: &str = "EXAMPLES:
  ca init --name 'Example Root' --no-passphrase --dir certs/root
  ca init --parent certs/root --name 'Example Issuing CA' --permit-dns example.org --dir certs/issuing
  ca issue --profile server --name www.example.org --san 127.0.0.1 --dir certs/issuing
  ca issue --profile code-signing --name 'Release signer' --dir certs/issuing
  ca issue --profile client --name alice --csr alice.csr --out alice --dir certs/issuing
  ca list --json --dir certs/issuing
  ca revoke 3f9a0c… --reason key-compromise --dir certs/issuing
  ca verify www.pem --chain certs/issuing/issued/www.example.org.chain.pem --root certs/root/ca.pem --usage server --name www.example.org";

/// A small certificate authority: create root and intermediate CAs, issue server, client and
/// code-signing certificates, revoke them, and verify chains.
#[derive(Debug, Parser)]
#[command(name = "ca", version, after_help = after_help(), disable_help_subcommand = true)]
pub struct Cli {
    /// The CA directory.
    #[arg(
        long,
        global = true,
        env = "TESSERA_CA_DIR",
        default_value = "certs/ca",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Read the CA key's passphrase from this file (else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Print only errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Log what is done on stderr.
    #[arg(long, short, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

fn after_help() -> String {
    format!("{EXAMPLES}\n\n{}", tessera::cli::EXIT_CODES_HELP)
}

/// The `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a root CA, or with --parent an intermediate CA issued by the CA in that directory.
    #[command(after_help = after_help())]
    Init(InitArgs),
    /// Issue a server, client or code-signing certificate, from a new key or a CSR.
    #[command(after_help = after_help())]
    Issue(IssueArgs),
    /// Revoke a certificate by serial number and write a fresh CRL.
    #[command(after_help = after_help())]
    Revoke(RevokeArgs),
    /// (Re)write the CA's CRL.
    #[command(after_help = after_help())]
    Crl(CrlArgs),
    /// List every certificate the CA issued.
    #[command(after_help = after_help())]
    List(ListArgs),
    /// Show a certificate, a chain or a CRL.
    #[command(after_help = after_help())]
    Show(ShowArgs),
    /// Verify a certificate's chain to a trusted root, for a usage, a name and a time.
    #[command(after_help = after_help())]
    Verify(VerifyArgs),
}

/// `ca init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The CA's common name.
    #[arg(long)]
    pub name: Option<String>,
    /// Key type.
    #[arg(long, default_value = "p256", value_name = "ed25519|p256|p384")]
    pub key_type: KeyAlgorithm,
    /// Lifetime in days (default: 3650 for a root, 1825 for an intermediate, never past the parent).
    #[arg(long)]
    pub days: Option<u32>,
    /// Path length constraint: how many CAs may follow below this one.
    #[arg(long)]
    pub path_len: Option<u8>,
    /// Permit only names in this DNS subtree (repeatable; a name constraint, written critical).
    #[arg(long, value_name = "DOMAIN")]
    pub permit_dns: Vec<String>,
    /// Permit only IP addresses in this range (repeatable), e.g. 10.0.0.0/8.
    #[arg(long, value_name = "CIDR")]
    pub permit_ip: Vec<String>,
    /// Permit only e-mail addresses at this domain or address (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    pub permit_email: Vec<String>,
    /// Exclude this DNS subtree (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    pub exclude_dns: Vec<String>,
    /// Issue this CA from the CA in DIR (making it an intermediate).
    #[arg(long, value_name = "DIR")]
    pub parent: Option<PathBuf>,
    /// The parent CA's passphrase file (default: the same source as this CA's).
    #[arg(long, value_name = "FILE", requires = "parent")]
    pub parent_passphrase_file: Option<PathBuf>,
    /// Store the CA key unencrypted.
    #[arg(long)]
    pub no_passphrase: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ca issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Certificate profile.
    #[arg(long, value_name = "server|client|code-signing")]
    pub profile: Profile,
    /// The subject's common name.
    #[arg(long)]
    pub name: String,
    /// Subject alternative name: dns:HOST, ip:ADDR, email:ADDR, uri:URI, or a bare value (repeatable).
    #[arg(long, value_name = "SAN")]
    pub san: Vec<String>,
    /// Lifetime in days (default: 90 for TLS, 365 for code signing, clamped to the CA's lifetime).
    #[arg(long, conflicts_with = "hours")]
    pub days: Option<u32>,
    /// Lifetime in hours, for short-lived certificates.
    #[arg(long)]
    pub hours: Option<u32>,
    /// Key type for a new key (default: ed25519 for code signing, p256 otherwise).
    #[arg(long, value_name = "ed25519|p256|p384", conflicts_with = "csr")]
    pub key_type: Option<KeyAlgorithm>,
    /// Issue for the public key in this PKCS#10 request; no key is written.
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// Output prefix: PREFIX.pem, PREFIX.key, PREFIX.chain.pem (default: DIR/issued/NAME).
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Encrypt the new key with the passphrase in this file.
    #[arg(long, value_name = "FILE", conflicts_with = "csr")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ca revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The certificate's serial number, hex (as `ca list` prints it).
    pub serial: String,
    /// Why: unspecified, key-compromise, ca-compromise, affiliation-changed, superseded,
    /// cessation-of-operation, certificate-hold, privilege-withdrawn.
    #[arg(long, default_value = "unspecified")]
    pub reason: RevocationReason,
    /// Days until the new CRL's nextUpdate.
    #[arg(long, default_value_t = 7)]
    pub crl_days: u32,
    /// Print the new CRL as JSON (as `ca show --json` does).
    #[arg(long)]
    pub json: bool,
}

/// `ca crl`.
#[derive(Debug, Args)]
pub struct CrlArgs {
    /// Also write the CRL to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Days until the CRL's nextUpdate.
    #[arg(long, default_value_t = 7)]
    pub crl_days: u32,
    /// Print the new CRL as JSON (as `ca show --json` does).
    #[arg(long)]
    pub json: bool,
}

/// `ca list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `ca show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A PEM or DER certificate, chain or CRL ("-" for stdin).
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ca verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate to verify (PEM or DER; a chain file's first certificate).
    pub cert: PathBuf,
    /// Trusted root certificate(s), PEM.
    #[arg(long, value_name = "FILE")]
    pub root: PathBuf,
    /// Intermediate certificates, PEM (may be a PREFIX.chain.pem).
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// The usage to check.
    #[arg(long, default_value = "any", value_name = "server|client|code-signing|any")]
    pub usage: Usage,
    /// A DNS name or IP address the certificate must be valid for.
    #[arg(long, value_name = "DNS-OR-IP")]
    pub name: Option<String>,
    /// A CRL to consult (repeatable).
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Verify at this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = tessera::cli::parse_time)]
    pub at: Option<time::OffsetDateTime>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}
