//! The `ca` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tessera::ca::{Profile, RevocationReason};
use tessera::pki::{KeyAlgorithm, Usage};

const EXAMPLES: &str = "EXAMPLES:
  ca init --name 'Example Root' --no-passphrase --dir certs/root
  ca init --parent certs/root --name 'Example Issuing CA' --dir certs/issuing
  ca issue --profile server --name www.example.org --san 127.0.0.1 --dir certs/issuing
  ca list --dir certs/issuing
  ca revoke 3f9a0c... --reason key-compromise --dir certs/issuing
  ca verify www.pem --chain www.chain.pem --root certs/root/ca.pem --usage server

Each subcommand's --help has its own examples and exit codes.";

/// `ca --help`'s EXIT CODES: the causes of every subcommand, and only theirs.
const EXIT_CODES: &str = "EXIT CODES:
  0  success
  1  refused or not trusted: a name outside the CA's name constraints, a
     lifetime past the CA's, a revocation already made for another reason, a
     certificate to renew that is revoked or another CA's;
     `verify`: not trusted (unknown issuer, expired, revoked, wrong usage or name)
  2  usage error (unknown flag, bad or out-of-range value, a serial that is not hex,
     a URL that is not http or https)
  3  could not run (no CA or a damaged one in DIR, unknown serial, unusable CSR,
     certificate or CRL, missing files to export, wrong passphrase, I/O error,
     an address `serve` cannot bind)";

const INIT_EXAMPLES: &str = "EXAMPLES:
  ca init --name 'Example Root' --no-passphrase --dir certs/root
  ca init --name 'Example Root' --days 7300 --passphrase-file root.pass --dir certs/root
  ca init --parent certs/root --name 'Issuing CA' --permit-dns example.org --dir certs/issuing
  ca init --name Root --crl-url http://ca.example.org/crl --ocsp-url http://ca.example.org/ocsp";

const INIT_EXIT_CODES: &str = "EXIT CODES:
  0  the CA was created
  1  refused: the parent's path length allows no further CA, or --days outlives the parent
  2  usage error (unknown flag, bad or out-of-range value, a URL that is not http or https)
  3  could not run (DIR already holds a CA or an unfinished one, the parent's state is
     missing or damaged, wrong passphrase, I/O error)";

const ISSUE_EXAMPLES: &str = "EXAMPLES:
  ca issue --profile server --name www.example.org --san 127.0.0.1 --dir certs/issuing
  ca issue --profile code-signing --name 'Release signer' --dir certs/issuing
  ca issue --profile client --name alice --csr alice.csr --out alice --dir certs/issuing
  ca issue --profile client --name bob --hours 12 --out certs/short/ --dir certs/issuing
  openssl req -new -key k.pem -subj /CN=a.test | ca issue --profile server --name a.test --csr -";

const ISSUE_EXIT_CODES: &str = "EXIT CODES:
  0  the certificate was issued and written
  1  refused: a name is outside the CA's name constraints, or the lifetime outlives the CA
  2  usage error (unknown flag, bad or out-of-range value, a --san not valid for
     its type, no usable output name)
  3  could not run (an output file exists, unusable CSR or a name in it not valid
     for its type, the CA's state is missing or damaged, wrong passphrase, I/O error)";

const SET_EXAMPLES: &str = "EXAMPLES:
  ca set --dir certs/issuing
  ca set --crl-url http://ca.example.org/crl --ocsp-url http://ca.example.org/ocsp
  ca set --ocsp-url none --json --dir certs/issuing";

const SET_EXIT_CODES: &str = "EXIT CODES:
  0  the URLs were shown (and changed when asked); certificates issued before keep theirs
  2  usage error (unknown flag, a URL that is not http or https, or not a valid URI)
  3  could not run (no CA in DIR, an unreadable urls.json, I/O error)";

const RENEW_EXAMPLES: &str = "EXAMPLES:
  ca renew certs/issuing/issued/www.example.org.pem --dir certs/issuing
  ca renew www.pem --out www-2031 --dir certs/issuing
  ca renew alice.pem --reuse-key alice.key --key-passphrase-file alice.pass --dir certs/issuing";

const RENEW_EXIT_CODES: &str = "EXIT CODES:
  0  the new certificate was issued and written
  1  refused: CERT was issued by another CA, is revoked or is a CA; a name is now outside
     the CA's name constraints
  2  usage error (unknown flag, no usable output name)
  3  could not run (CERT unreadable or not in the store, --reuse-key not CERT's key, an
     output file exists, the CA's state is missing or damaged, wrong passphrase, I/O error)";

const EXPORT_EXAMPLES: &str = "EXAMPLES:
  ca export certs/issuing/issued/www.example.org --pkcs12 www.p12
  ca export alice --pkcs12 alice.p12 --passphrase-file p12.pass --key-passphrase-file alice.pass
  ca export old-client --pkcs12 old-client.p12 --legacy
  ca export www --pkcs12 - | openssl pkcs12 -info -noout";

const EXPORT_EXIT_CODES: &str = "EXIT CODES:
  0  the PKCS#12 file was written
  2  usage error (unknown flag, OUT is one of the inputs)
  3  could not run (PREFIX.pem, PREFIX.key or PREFIX.chain.pem missing or not matching,
     OUT exists, wrong passphrase, I/O error)";

const REVOKE_EXAMPLES: &str = "EXAMPLES:
  ca revoke 3f9a0c... --reason key-compromise --dir certs/issuing
  ca revoke 3f:9a:0c:... --reason superseded --crl-days 1 --dir certs/issuing
  ca revoke 3f9a0c... --json --dir certs/issuing";

const REVOKE_EXIT_CODES: &str = "EXIT CODES:
  0  revoked, and crl.pem rewritten; also when it already was revoked for that reason (or
     no --reason was given): nothing changes, and crl.pem lists it
  1  refused: it is already revoked for another reason (a revocation is final)
  2  usage error (unknown flag, unknown reason, out-of-range --crl-days, a serial that is
     not hex)
  3  could not run (unknown serial, the CA's state is missing or damaged, wrong
     passphrase, I/O error)";

const CRL_EXAMPLES: &str = "EXAMPLES:
  ca crl --dir certs/issuing
  ca crl --crl-days 1 --out /srv/www/issuing.crl --dir certs/issuing
  ca crl --out - --dir certs/issuing | openssl crl -noout -text";

const CRL_EXIT_CODES: &str = "EXIT CODES:
  0  the CRL was written
  2  usage error (unknown flag, out-of-range --crl-days, --json with --out -)
  3  could not run (the CA's state is missing or damaged, wrong passphrase, I/O error)";

const LIST_EXAMPLES: &str = "EXAMPLES:
  ca list --dir certs/issuing
  ca list --status revoked --limit 20 --dir certs/issuing
  ca list --expiring-within 7d --json --dir certs/issuing | jq -r '.[].serial'";

const LIST_EXIT_CODES: &str = "EXIT CODES:
  0  the list was printed
  2  usage error
  3  could not run (no CA in DIR, its store is missing, damaged or unreachable, I/O error)";

const BACKUP_EXAMPLES: &str = "EXAMPLES:
  ca backup --out /var/backups/issuing-$(date +%F).db --dir certs/issuing
  (PostgreSQL stores: pg_dump, see docs/ca.md)";

const BACKUP_EXIT_CODES: &str = "EXIT CODES:
  0  the copy was written
  2  usage error
  3  could not run (FILE exists, the store is missing, damaged or PostgreSQL, I/O error)";

const MOVE_STORE_EXAMPLES: &str = "EXAMPLES:
  ca move-store --dir certs/issuing --db postgres://ca@db.internal:5432/ca
  TESSERA_DB=postgres://ca@%2Frun%2Fpostgresql:5432/ca ca move-store --dir certs/issuing
Then give every ca command of this CA the same --db (or TESSERA_DB). DIR/ca.db stays as it was,
read-only (a write to it fails). A move cut short is finished by running it again. See
docs/ca.md, \"ca move-store\".";

const MOVE_STORE_EXIT_CODES: &str = "EXIT CODES:
  0  moved (or a move cut short was finished)
  2  usage error (no --db, or --db is not a PostgreSQL URL)
  3  could not run (the CA is already on PostgreSQL, PostgreSQL cannot be reached or already
     holds this CA with other records, the SQLite store is missing or damaged); nothing changed";

const SHOW_EXAMPLES: &str = "EXAMPLES:
  ca show certs/issuing/ca.pem
  ca show --json certs/issuing/crl.pem
  openssl s_client -connect example.org:443 </dev/null | ca show -";

const SHOW_EXIT_CODES: &str = "EXIT CODES:
  0  shown
  2  usage error
  3  could not run (missing file, no certificate or CRL in it, I/O error)";

const VERIFY_EXAMPLES: &str = "EXAMPLES:
  ca verify www.pem --chain www.chain.pem --root root.pem --usage server --name www.example.org
  ca verify alice.pem --root root.pem --crl certs/issuing/crl.pem --usage client
  ca verify - --root root.pem --at 2030-01-01T00:00:00Z < www.chain.pem
  ca verify www.pem --root root.pem --max-depth 1 --key-usage digital-signature";

const VERIFY_EXIT_CODES: &str = "EXIT CODES:
  0  trusted
  1  not trusted (unknown issuer, expired, revoked, wrong usage or name, chain too deep, key usage
     missing, a certificate or CRL that was read but breaks RFC 5280, ...)
  2  usage error (unknown flag, bad time, more than one input read from stdin)
  3  could not run (missing file, no certificate in it, a root or CRL that cannot be read, I/O error)";

/// The most days any lifetime may be asked for: 100 years.
pub const MAX_DAYS: u32 = 36_500;
/// The most hours a lifetime may be asked for: 100 years.
pub const MAX_HOURS: u32 = MAX_DAYS * 24;
/// The most days a CRL may be valid: 10 years.
pub const MAX_CRL_DAYS: u32 = 3_650;

/// A whole number in `1..=max`, or a message that names the allowed range.
pub fn parse_count(text: &str, unit: &str, max: u32) -> Result<u32, String> {
    let digits = text.trim();
    let range = || format!("use a whole number of {unit} from 1 to {max}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a whole number of {unit}: {}", range()));
    }
    match digits.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{digits} {unit} is out of range: {}", range())),
    }
}

fn parse_days(text: &str) -> Result<u32, String> {
    parse_count(text, "days", MAX_DAYS)
}

fn parse_hours(text: &str) -> Result<u32, String> {
    parse_count(text, "hours", MAX_HOURS)
}

fn parse_crl_days(text: &str) -> Result<u32, String> {
    parse_count(text, "days", MAX_CRL_DAYS)
}

/// A small certificate authority: create root and intermediate CAs, issue server, client and
/// code-signing certificates, revoke them, and verify chains.
#[derive(Debug, Parser)]
#[command(
    name = "ca",
    version,
    after_help = help(EXAMPLES, EXIT_CODES),
    disable_help_subcommand = true
)]
pub struct Cli {
    /// The CA directory (default: $TESSERA_CA_DIR when set and not empty, else certs/ca;
    /// not used by `show`, `verify` and `export`).
    #[arg(long = "dir", global = true, value_name = "DIR", value_parser = parse_dir)]
    pub dir_flag: Option<PathBuf>,

    /// The CA directory in effect: --dir, else $TESSERA_CA_DIR unless empty, else certs/ca
    /// (see [`Cli::resolve_dir`]).
    #[arg(skip)]
    pub dir: PathBuf,

    /// The CA's store (default: $TESSERA_DB, else DIR/ca.db): a PostgreSQL URL such as
    /// postgres://USER@HOST:PORT/DB, shared by several CA instances (no TLS: loopback, a Unix
    /// socket or a trusted network); not used by `show` and `verify`.
    #[arg(long, global = true, env = "TESSERA_DB", hide_env = true, value_name = "URL")]
    pub db: Option<String>,

    /// Read the CA key's passphrase from this file (`-`: standard input; one trailing line
    /// ending is removed), else TESSERA_PASSPHRASE, else a prompt; for `export`, the PKCS#12
    /// file's passphrase; not used by `list`, `show`, `verify` and `set`.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Print errors only (`init` and `issue` still print what they created; --json output is
    /// printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Log what is done on stderr.
    #[arg(long, short, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The environment variable that names the CA directory when --dir is not given.
pub const DIR_ENV: &str = "TESSERA_CA_DIR";

/// The CA directory when neither --dir nor TESSERA_CA_DIR names one.
pub const DEFAULT_DIR: &str = "certs/ca";

impl Cli {
    /// Sets [`Cli::dir`]: --dir, else TESSERA_CA_DIR (an empty one counts as unset), else
    /// [`DEFAULT_DIR`].
    pub fn resolve_dir(&mut self) {
        self.dir = match (&self.dir_flag, std::env::var_os(DIR_ENV)) {
            (Some(dir), _) => dir.clone(),
            (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
            (None, _) => PathBuf::from(DEFAULT_DIR),
        };
    }
}

fn parse_dir(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err(format!(
            "the directory must not be empty (leave out --dir for ${DIR_ENV} or {DEFAULT_DIR})"
        ));
    }
    Ok(PathBuf::from(text))
}

fn help(examples: &str, exit_codes: &str) -> String {
    format!("{examples}\n\n{exit_codes}")
}

/// The `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a root CA, or with --parent an intermediate CA issued by the CA in that directory.
    #[command(after_help = help(INIT_EXAMPLES, INIT_EXIT_CODES))]
    Init(InitArgs),
    /// Issue a server, client or code-signing certificate, from a new key or a CSR.
    #[command(after_help = help(ISSUE_EXAMPLES, ISSUE_EXIT_CODES))]
    Issue(IssueArgs),
    /// Show or change the CRL, OCSP and CA-certificate URLs that issued certificates carry.
    #[command(after_help = help(SET_EXAMPLES, SET_EXIT_CODES))]
    Set(SetArgs),
    /// Issue a new certificate like one this CA issued (same names, profile and lifetime).
    #[command(after_help = help(RENEW_EXAMPLES, RENEW_EXIT_CODES))]
    Renew(RenewArgs),
    /// Write an issued certificate, its chain and its key as one PKCS#12 file.
    #[command(after_help = help(EXPORT_EXAMPLES, EXPORT_EXIT_CODES))]
    Export(ExportArgs),
    /// Revoke a certificate by serial number and write a fresh CRL.
    #[command(after_help = help(REVOKE_EXAMPLES, REVOKE_EXIT_CODES))]
    Revoke(RevokeArgs),
    /// (Re)write the CA's CRL.
    #[command(after_help = help(CRL_EXAMPLES, CRL_EXIT_CODES))]
    Crl(CrlArgs),
    /// List the certificates the CA issued, newest first.
    #[command(after_help = help(LIST_EXAMPLES, LIST_EXIT_CODES))]
    List(ListArgs),
    /// Write a consistent copy of the CA's SQLite store, while other `ca` commands run.
    #[command(after_help = help(BACKUP_EXAMPLES, BACKUP_EXIT_CODES))]
    Backup(BackupArgs),
    /// Move the CA's state from its SQLite store into PostgreSQL (named by --db or TESSERA_DB),
    /// for several instances; stop the CA's other commands and `ca serve` first.
    #[command(name = "move-store", after_help = help(MOVE_STORE_EXAMPLES, MOVE_STORE_EXIT_CODES))]
    MoveStore,
    /// Show a certificate, a chain or a CRL.
    #[command(after_help = help(SHOW_EXAMPLES, SHOW_EXIT_CODES))]
    Show(ShowArgs),
    /// Verify a certificate's chain to a trusted root, for a usage, a name and a time.
    #[command(after_help = help(VERIFY_EXAMPLES, VERIFY_EXIT_CODES))]
    Verify(VerifyArgs),
    /// Run the CA as a network service: ACME (RFC 8555) for certbot, lego and others, the CRL
    /// over HTTP, several instances on one PostgreSQL store.
    #[command(after_help = help(&format!("{}\n\n{}", crate::serve::SERVE_EXAMPLES, crate::serve::SERVE_SIGNALS), crate::serve::SERVE_EXIT_CODES))]
    Serve(crate::serve::ServeArgs),
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
    /// Lifetime in days, 1 to 36500 (default: 3650 for a root; 1825 for an intermediate,
    /// shortened to end with the parent). An explicit value past the parent's end is refused.
    #[arg(long, value_parser = parse_days)]
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
    /// Refused (a usage error that says why): Tessera's verifier cannot evaluate e-mail name
    /// constraints, so such a CA could never issue an e-mail certificate (docs/ca.md).
    #[arg(long, value_name = "DOMAIN", hide = true)]
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
    /// Every certificate this CA issues names this http(s) URL of its CRL (DER) in a CRL
    /// Distribution Point (kept in DIR/urls.json; `ca set` changes it).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub crl_url: Option<String>,
    /// Every certificate this CA issues names this http(s) URL of its OCSP responder in an
    /// Authority Information Access extension (id-ad-ocsp).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub ocsp_url: Option<String>,
    /// Every certificate this CA issues names this http(s) URL of the CA's certificate (DER) in
    /// an Authority Information Access extension (id-ad-caIssuers).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub ca_issuers_url: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An http or https URL for a certificate extension (see `tessera::ca::check_url`).
fn parse_url(text: &str) -> Result<String, String> {
    // The usage error that quotes it passes through `printable` (tessera::cli::parse_args).
    tessera::ca::normalize_url(text).map_err(|reason| format!("\"{text}\" {reason}"))
}

/// A new value for one of the URLs `ca set` changes: `Some` URL, or `None` to remove it.
#[derive(Clone, Debug)]
pub struct UrlChange(pub Option<String>);

/// A URL for `ca set`, or `none` to clear it.
fn parse_url_or_none(text: &str) -> Result<UrlChange, String> {
    if text == "none" {
        return Ok(UrlChange(None));
    }
    parse_url(text)
        .map(|url| UrlChange(Some(url)))
        .map_err(|e| format!("{e} (or give `none` to remove it)"))
}

/// `ca set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The CRL's URL for the certificates issued from now on, or `none`.
    #[arg(long, value_name = "URL|none", value_parser = parse_url_or_none)]
    pub crl_url: Option<UrlChange>,
    /// The OCSP responder's URL, or `none`.
    #[arg(long, value_name = "URL|none", value_parser = parse_url_or_none)]
    pub ocsp_url: Option<UrlChange>,
    /// The URL of the CA's certificate (DER), or `none`.
    #[arg(long, value_name = "URL|none", value_parser = parse_url_or_none)]
    pub ca_issuers_url: Option<UrlChange>,
    /// Print the settings (after any change) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ca renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The certificate to renew (PEM or DER; a chain file's first certificate), one this CA
    /// issued and did not revoke.
    #[arg(value_name = "CERT")]
    pub cert: PathBuf,
    /// Output prefix: PREFIX.pem, PREFIX.key, PREFIX.chain.pem, as for `ca issue` (default:
    /// beside CERT, CERT's name less .pem followed by -renewed-YYYYMMDDTHHMMSSZ).
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Keep CERT's key: certify this key (which must be CERT's) instead of a new one; no
    /// PREFIX.key is written.
    #[arg(long, value_name = "KEY")]
    pub reuse_key: Option<PathBuf>,
    /// The passphrase of the new key (encrypting it), or with --reuse-key of that key
    /// (decrypting it; else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Print the result as JSON (as `ca issue --json`, with `renewed`: the old serial).
    #[arg(long)]
    pub json: bool,
}

/// `ca export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The files `ca issue` wrote: PREFIX.pem, PREFIX.key, PREFIX.chain.pem (PREFIX.pem and the
    /// like stand for PREFIX).
    #[arg(value_name = "PREFIX")]
    pub prefix: PathBuf,
    /// Write the PKCS#12 file here (created 0600, never overwritten; - for stdout). Its
    /// passphrase comes from --passphrase-file, else TESSERA_PASSPHRASE, else a prompt.
    #[arg(long, value_name = "OUT")]
    pub pkcs12: PathBuf,
    /// Encrypt with 3DES and a SHA-1 MAC for old readers (OpenSSL 1.0, Windows 7, Java 8 before
    /// 8u301) instead of AES-256 and PBKDF2-SHA-256 with a SHA-256 MAC.
    #[arg(long)]
    pub legacy: bool,
    /// The passphrase of PREFIX.key when it is encrypted (else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub key_passphrase_file: Option<PathBuf>,
}

/// `ca issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Certificate profile.
    #[arg(long, value_name = "server|client|code-signing")]
    pub profile: Profile,
    /// The subject's common name (a server named by an IP address gets an empty subject and
    /// the address as its subjectAltName only).
    #[arg(long)]
    pub name: String,
    /// Subject alternative name: dns:HOST, ip:ADDR, email:ADDR, uri:URI, or a bare value (repeatable).
    #[arg(long, value_name = "SAN")]
    pub san: Vec<String>,
    /// Lifetime in days, 1 to 36500. Default: 90 for TLS, 365 for code signing, shortened (with
    /// a warning) to end with the CA's certificate; an explicit value past the CA's end is
    /// refused (exit 1).
    #[arg(long, conflicts_with = "hours", value_parser = parse_days)]
    pub days: Option<u32>,
    /// Lifetime in hours, 1 to 876000, for short-lived certificates (refused past the CA's end,
    /// like --days).
    #[arg(long, value_parser = parse_hours)]
    pub hours: Option<u32>,
    /// Key type for a new key (default: ed25519 for code signing, p256 otherwise).
    #[arg(long, value_name = "ed25519|p256|p384", conflicts_with = "csr")]
    pub key_type: Option<KeyAlgorithm>,
    /// Issue for the key (and, without --san, the names) in this PKCS#10 request (PEM, DER or
    /// -); nothing else it asks for is used, and no key is written.
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// Output prefix: PREFIX.pem, PREFIX.key, PREFIX.chain.pem (default: DIR/issued/NAME). A
    /// directory (ending in /) gets DIR/NAME.*; a trailing dot or .pem/.key is dropped.
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
    /// cessation-of-operation, certificate-hold, privilege-withdrawn (default: unspecified).
    #[arg(long)]
    pub reason: Option<RevocationReason>,
    /// Days until the new CRL's nextUpdate, 1 to 3650.
    #[arg(long, default_value_t = 7, value_parser = parse_crl_days)]
    pub crl_days: u32,
    /// Print the revocation and the new CRL as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ca crl`.
#[derive(Debug, Args)]
pub struct CrlArgs {
    /// Also write the CRL (PEM) to this file; "-" writes it to stdout instead of a summary.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Days until the CRL's nextUpdate, 1 to 3650.
    #[arg(long, default_value_t = 7, value_parser = parse_crl_days)]
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
    /// Only certificates with this status now.
    #[arg(long, value_enum)]
    pub status: Option<ListStatus>,
    /// Only unrevoked certificates that expire within DUR from now (30d, 12h, 90m, 45s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub expiring_within: Option<std::time::Duration>,
    /// At most N certificates (the newest).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `ca list --status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListStatus {
    /// Not revoked and not expired.
    Valid,
    /// Revoked.
    Revoked,
    /// Past notAfter, not revoked.
    Expired,
}

/// `ca backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// The most a duration may be: 100 years.
const MAX_DURATION_SECS: u64 = 36_500 * 86_400;

/// A duration such as `30d`, `12h`, `90m` or `45s` (a bare number is days).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "d"),
    };
    let bad = || format!("{text:?} is not a duration: use a whole number with d, h, m or s, e.g. 30d or 12h");
    let n: u64 = if digits.is_empty() {
        return Err(bad());
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let scale = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(secs) if secs <= MAX_DURATION_SECS => Ok(std::time::Duration::from_secs(secs)),
        _ => Err(format!("{text:?} is out of range: at most 36500d")),
    }
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
    /// The certificate to verify (PEM or DER; a chain file's first certificate; "-" for stdin).
    pub cert: PathBuf,
    /// Trusted root certificate(s), PEM ("-" for stdin).
    #[arg(long, value_name = "FILE")]
    pub root: PathBuf,
    /// Intermediate certificates, PEM (may be a PREFIX.chain.pem; "-" for stdin).
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// The usage to check.
    #[arg(long, default_value = "any", value_name = "server|client|code-signing|any")]
    pub usage: Usage,
    /// A DNS name or IP address the certificate must be valid for.
    #[arg(long, value_name = "DNS-OR-IP")]
    pub name: Option<String>,
    /// A CRL to consult (repeatable; "-" for stdin).
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Verify at this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = tessera::cli::parse_time)]
    pub at: Option<time::OffsetDateTime>,
    /// Allow at most N intermediate CAs between the certificate and the root, not counting
    /// self-issued ones (RFC 5280 §6.1); 0 accepts only certificates issued by a root.
    #[arg(long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// A key usage the certificate must allow if it has a key usage extension (repeatable):
    /// digital-signature, content-commitment, key-encipherment, data-encipherment,
    /// key-agreement, key-cert-sign, crl-sign, encipher-only, decipher-only.
    #[arg(long, value_name = "USAGE")]
    pub key_usage: Vec<tessera::pki::KeyUsage>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;
    use proptest::prelude::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_outside_their_range_name_it() {
        assert_eq!(parse_days("90"), Ok(90));
        assert_eq!(parse_days(" 36500 "), Ok(36_500));
        for bad in [
            "0",
            "36501",
            "3000000",
            "4000000",
            "4294967295",
            "99999999999999999999999",
        ] {
            let err = parse_days(bad).unwrap_err();
            assert!(
                err.contains("out of range: use a whole number of days from 1 to 36500"),
                "{bad}: {err}"
            );
        }
        for bad in ["", "-1", "+5", "1e3", "ten", "1.5"] {
            let err = parse_days(bad).unwrap_err();
            assert!(err.contains("is not a whole number of days"), "{bad}: {err}");
        }
        assert!(parse_hours("4294967295").unwrap_err().contains("from 1 to 876000"));
        assert!(parse_crl_days("4000000").unwrap_err().contains("from 1 to 3650"));
    }

    proptest! {
        #[test]
        fn any_text_parses_to_a_count_in_range_or_a_message(text in ".{0,24}", max in 1u32..=u32::MAX) {
            match parse_count(&text, "days", max) {
                Ok(n) => prop_assert!((1..=max).contains(&n)),
                Err(message) => {
                    let range = format!("from 1 to {max}");
                    prop_assert!(message.contains(&range), "{}", message);
                }
            }
        }

        #[test]
        fn every_number_is_accepted_exactly_when_in_range(n in any::<u64>()) {
            let parsed = parse_count(&n.to_string(), "hours", MAX_HOURS);
            prop_assert_eq!(parsed.is_ok(), (1..=u64::from(MAX_HOURS)).contains(&n));
        }

        #[test]
        fn the_command_line_never_panics_on_lifetimes(days in any::<u64>(), hours in any::<u64>(), crl in any::<i64>()) {
            for args in [
                vec!["ca".to_string(), "init".into(), "--days".into(), days.to_string()],
                vec!["ca".to_string(), "issue".into(), "--profile".into(), "server".into(), "--name".into(), "x".into(), "--hours".into(), hours.to_string()],
                vec!["ca".to_string(), "crl".into(), "--crl-days".into(), crl.to_string()],
                vec!["ca".to_string(), "revoke".into(), "ab".into(), "--crl-days".into(), crl.to_string()],
            ] {
                match Cli::try_parse_from(&args) {
                    Ok(cli) => {
                        let n = match cli.command {
                            Command::Init(a) => a.days.unwrap(),
                            Command::Issue(a) => a.hours.unwrap(),
                            Command::Crl(a) => a.crl_days,
                            Command::Revoke(a) => a.crl_days,
                            _ => unreachable!(),
                        };
                        prop_assert!((1..=MAX_HOURS).contains(&n));
                    }
                    Err(e) => prop_assert_eq!(e.exit_code(), 2),
                }
            }
        }
    }
}
