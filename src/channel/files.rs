//! Loading what a server or client needs from files, safely for a long-running service:
//!
//! - only regular files are read (a FIFO or a device could block a reload forever), at most
//!   [`MAX_PEM_FILE`] bytes each;
//! - a server's own certificate is checked before it is served ([`super::Credentials::check_usable`]):
//!   one every client would refuse is an error, not a running server;
//! - CRLs past their nextUpdate are reported as [`LoadWarning`]s (they make every certificate
//!   they cover be refused);
//! - the async forms run the blocking work (file I/O, scrypt key decryption) on Tokio's
//!   blocking pool under a deadline, so they never stall the runtime's worker threads.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::ChannelError;
use super::config::{ServerSettings, TlsOptions, server_config};
use super::identity::Authorization;
use super::text::escape;
use super::tickets::{DEFAULT_TICKET_LIFETIME, SessionTickets, TicketKeys};
use crate::pki::pem::{self, MAX_PEM_FILE};
use crate::pki::{CrlInfo, Passphrase, PkiError, PrivateKey, TrustStore, Usage, rfc3339};

/// The default deadline for loading a server's files: 10 seconds.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that `path` is a regular file of at most [`MAX_PEM_FILE`] bytes, without opening it
/// (opening a FIFO blocks until a writer comes). `what` names the file in errors
/// (`certificate chain`, `private key`, `CRL`, …). Returns its size.
///
/// # Errors
/// [`ChannelError::Load`] (with [`PkiError::Io`]) when it cannot be examined,
/// [`ChannelError::NotAFile`], [`ChannelError::FileTooLarge`].
pub fn check_regular_file(path: &Path, what: &str) -> Result<u64, ChannelError> {
    if pem::is_stdin(path) {
        // `-`: standard input, read once and kept (see `pki::pem::read_file`).
        return Ok(0);
    }
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, what, e))?;
    check_metadata(path, what, &meta)
}

fn check_metadata(path: &Path, what: &str, meta: &std::fs::Metadata) -> Result<u64, ChannelError> {
    if !meta.is_file() {
        return Err(ChannelError::NotAFile {
            what: what.into(),
            path: path.into(),
            kind: kind_of(&meta.file_type()),
        });
    }
    if meta.len() > MAX_PEM_FILE {
        return Err(ChannelError::FileTooLarge {
            what: what.into(),
            path: path.into(),
            size: meta.len(),
            max: MAX_PEM_FILE,
        });
    }
    Ok(meta.len())
}

fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

fn io_error(path: &Path, what: &str, error: std::io::Error) -> ChannelError {
    ChannelError::Load {
        what: format!("{what} {}", path.display()),
        source: PkiError::Io {
            path: path.into(),
            source: error,
        },
    }
}

/// Reads a regular file of at most [`MAX_PEM_FILE`] bytes (checked before opening, and again on
/// the opened file). Also returns the opened file's metadata. `-` reads standard input once;
/// later reads of `-` (a reload) get the same bytes, and no metadata.
fn read_regular(path: &Path, what: &str) -> Result<(Zeroizing<Vec<u8>>, Option<std::fs::Metadata>), ChannelError> {
    if pem::is_stdin(path) {
        let bytes = pem::read_file(path).map_err(|source| ChannelError::Load {
            what: format!("{what} (standard input)"),
            source,
        })?;
        return Ok((Zeroizing::new(bytes), None));
    }
    check_regular_file(path, what)?;
    let file = std::fs::File::open(path).map_err(|e| io_error(path, what, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, what, e))?;
    check_metadata(path, what, &meta)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, what, e))?;
    let size = bytes.len() as u64;
    if size > MAX_PEM_FILE {
        return Err(ChannelError::FileTooLarge {
            what: what.into(),
            path: path.into(),
            size,
            max: MAX_PEM_FILE,
        });
    }
    Ok((bytes, Some(meta)))
}

/// Reads a PEM certificate chain (end entity first).
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ChannelError> {
    let what = "certificate chain";
    let (bytes, _) = read_regular(path, what)?;
    let certificates =
        pem::parse_certificates(&bytes, &path.display().to_string()).map_err(|source| ChannelError::Load {
            what: format!("{what} {}", path.display()),
            source,
        })?;
    if certificates.is_empty() {
        return Err(ChannelError::EmptyChain { path: path.into() });
    }
    Ok(certificates)
}

/// Reads a PKCS#8 private key (decrypting it with `passphrase`), warning when the file is
/// readable by group or others.
pub(crate) fn read_key(path: &Path, passphrase: Option<&Passphrase>) -> Result<PrivateKey, ChannelError> {
    use std::os::unix::fs::PermissionsExt;
    let what = "private key";
    let (bytes, meta) = read_regular(path, what)?;
    if meta.is_some_and(|meta| meta.permissions().mode() & 0o077 != 0) {
        tracing::warn!(
            path = %path.display(),
            "private key file is readable by group or others; `chmod 600` it"
        );
    }
    PrivateKey::from_pem(&bytes, passphrase, &path.display().to_string()).map_err(|source| ChannelError::Load {
        what: format!("{what} {}", path.display()),
        source,
    })
}

/// The facts of one CRL file that matter to a running service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlFacts {
    /// The file.
    pub path: PathBuf,
    /// The issuing CA's distinguished name (untrusted text until the CRL is used; escaped when
    /// displayed).
    pub issuer: String,
    /// When the next CRL is due; past it, the CRL is stale and every certificate it covers is
    /// refused.
    pub next_update: Option<OffsetDateTime>,
}

/// Something loaded that works but deserves the operator's attention.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadWarning {
    /// A CRL is past its nextUpdate: every certificate it covers is refused (alert
    /// `certificate_unknown` to a refused client) until a fresh CRL is installed.
    StaleCrl(CrlFacts),
    /// A reload could not read the session ticket key file: the keys loaded before stay in
    /// force (tickets keep resuming), and the next reload tries the file again.
    TicketKeysKept {
        /// Why the file was not used (never a key).
        reason: String,
    },
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StaleCrl(crl) => write!(
                f,
                "CRL {} (issuer {}) is out of date: its nextUpdate {} has passed, so every certificate it covers \
                 is refused until a fresh CRL replaces it (`ca crl`)",
                crl.path.display(),
                escape(&crl.issuer),
                crl.next_update.map_or_else(|| "-".into(), rfc3339),
            ),
            Self::TicketKeysKept { reason } => {
                write!(f, "session ticket keys kept from before: {reason}")
            }
        }
    }
}

/// Roots and CRLs loaded from files, with warnings about them.
#[derive(Clone, Debug)]
pub struct LoadedTrust {
    /// The trust store.
    pub store: TrustStore,
    /// Every CRL loaded.
    pub crls: Vec<CrlFacts>,
    /// Stale CRLs.
    pub warnings: Vec<LoadWarning>,
}

/// Loads the roots in `roots` (PEM) and the CRLs in `crls`, and reports the CRLs that are past
/// their nextUpdate at `now` (as [`LoadWarning::StaleCrl`]). Blocking: from async
/// code use [`load_trust_async`].
///
/// # Errors
/// [`ChannelError::Load`], [`ChannelError::NotAFile`], [`ChannelError::FileTooLarge`].
pub fn load_trust(roots: &Path, crls: &[PathBuf], now: OffsetDateTime) -> Result<LoadedTrust, ChannelError> {
    let what = "root certificates";
    let (bytes, _) = read_regular(roots, what)?;
    let load_error = |source| ChannelError::Load {
        what: format!("{what} {}", roots.display()),
        source,
    };
    let mut store = TrustStore::new();
    for root in pem::parse_certificates(&bytes, &roots.display().to_string()).map_err(load_error)? {
        store.add_root(root, &roots.display().to_string()).map_err(load_error)?;
    }
    let mut facts = Vec::new();
    let mut warnings = Vec::new();
    for path in crls {
        let what = "CRL";
        let (bytes, _) = read_regular(path, what)?;
        let name = path.display().to_string();
        let crl_error = |source| ChannelError::Load {
            what: format!("{what} {}", path.display()),
            source,
        };
        for crl in pem::parse_crls(&bytes, &name).map_err(crl_error)? {
            store.add_crl(&crl, &name).map_err(crl_error)?;
            let info = CrlInfo::from_der(crl.as_ref()).map_err(crl_error)?;
            let crl = CrlFacts {
                path: path.clone(),
                issuer: info.issuer,
                next_update: info.next_update,
            };
            if crl.next_update.is_some_and(|next| next <= now) {
                warnings.push(LoadWarning::StaleCrl(crl.clone()));
            }
            facts.push(crl);
        }
    }
    Ok(LoadedTrust {
        store,
        crls: facts,
        warnings,
    })
}

/// [`load_trust`] on Tokio's blocking pool, at the current time, under `deadline`.
///
/// # Errors
/// As [`load_trust`]; [`ChannelError::Timeout`] when the files took longer than `deadline`
/// (the reading thread is abandoned); [`ChannelError::TaskFailed`].
pub async fn load_trust_async(
    roots: PathBuf,
    crls: Vec<PathBuf>,
    deadline: Duration,
) -> Result<LoadedTrust, ChannelError> {
    blocking_within("reading the trust files", deadline, move || {
        load_trust(&roots, &crls, OffsetDateTime::now_utc())
    })
    .await
}

/// Where a server's configuration comes from, so that it can be built again (on SIGHUP) from
/// the same files.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    /// The server's certificate chain (PEM: certificate, then intermediates).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8 PEM, possibly encrypted).
    pub key: PathBuf,
    /// The passphrase of an encrypted key, kept for reloads.
    pub passphrase: Option<Arc<Passphrase>>,
    /// A passphrase file (`--passphrase-file`), read again ([`Passphrase::from_file`]) on
    /// every load that finds the key encrypted: a key re-encrypted (or encrypted for the first
    /// time) before a reload is decrypted with the file's current content. Takes precedence over
    /// `passphrase`.
    pub passphrase_file: Option<PathBuf>,
    /// Roots for client certificates; `None`: no client authentication.
    pub client_ca: Option<PathBuf>,
    /// CRLs for client certificates.
    pub crls: Vec<PathBuf>,
    /// Which verified clients may connect.
    pub authorization: Authorization,
    /// Protocol options.
    pub options: TlsOptions,
    /// A session ticket key file ([`TicketKeys`]; `None`: no session tickets). Read at every
    /// load; on a reload that cannot read it the keys in force are kept
    /// ([`LoadWarning::TicketKeysKept`]).
    pub ticket_keys: Option<PathBuf>,
    /// The lifetime of session tickets ([`SessionTickets::lifetime`]).
    pub ticket_lifetime: Duration,
}

/// A server configuration built from [`ServerFiles`], with what the operator should know.
#[derive(Debug)]
pub struct LoadedServerConfig {
    /// The configuration.
    pub config: ServerConfig,
    /// Every CRL loaded (for a warning when the earliest nextUpdate passes).
    pub crls: Vec<CrlFacts>,
    /// Stale CRLs, keys kept (the caller reports them; [`super::ReloadableServerConfig`] logs
    /// those of reloads).
    pub warnings: Vec<LoadWarning>,
    /// The session tickets in the configuration, if any.
    pub session_tickets: Option<SessionTickets>,
}

impl ServerFiles {
    /// A server with a certificate chain and key, no client authentication, default options.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            passphrase: None,
            passphrase_file: None,
            client_ca: None,
            crls: Vec::new(),
            authorization: Authorization::any_verified(),
            options: TlsOptions::default(),
            ticket_keys: None,
            ticket_lifetime: DEFAULT_TICKET_LIFETIME,
        }
    }

    /// Every file this reads, with what it holds (`certificate chain`, …), for up-front checks.
    pub fn paths(&self) -> Vec<(&'static str, &Path)> {
        let mut paths = vec![
            ("certificate chain", self.cert.as_path()),
            ("private key", self.key.as_path()),
        ];
        if let Some(ca) = &self.client_ca {
            paths.push(("root certificates", ca.as_path()));
        }
        paths.extend(self.crls.iter().map(|crl| ("CRL", crl.as_path())));
        paths
    }

    /// Reads the files and builds the configuration, checking that the server's certificate
    /// can serve at `now` ([`super::Credentials::check_usable`] for [`Usage::Server`]). Blocking (file
    /// I/O; scrypt for an encrypted key): from async code use [`ServerFiles::load_async`].
    ///
    /// # Errors
    /// [`ChannelError::Load`], [`ChannelError::NotAFile`], [`ChannelError::FileTooLarge`],
    /// [`ChannelError::EmptyChain`], [`ChannelError::UnusableKey`],
    /// [`ChannelError::UnsuitableCertificate`], [`ChannelError::TicketKeys`], and as
    /// [`server_config`].
    pub fn load(&self, now: OffsetDateTime) -> Result<LoadedServerConfig, ChannelError> {
        self.load_keeping(now, None)
    }

    /// [`ServerFiles::load`], except that a ticket key file that cannot be read leaves
    /// `previous` in force (with a [`LoadWarning::TicketKeysKept`]) when there is one.
    pub(crate) fn load_keeping(
        &self,
        now: OffsetDateTime,
        previous: Option<&SessionTickets>,
    ) -> Result<LoadedServerConfig, ChannelError> {
        for (what, path) in self.paths() {
            check_regular_file(path, what)?;
        }
        let chain = read_chain(&self.cert)?;
        let key = self.read_key()?;
        let credentials = super::Credentials::new(chain, &key)?;
        credentials.check_usable(
            Usage::Server,
            now,
            &format!("certificate chain {}", self.cert.display()),
        )?;
        let (client_trust, crls, warnings) = match &self.client_ca {
            Some(roots) => {
                let trust = load_trust(roots, &self.crls, now)?;
                (Some(Arc::new(trust.store)), trust.crls, trust.warnings)
            }
            None => (None, Vec::new(), Vec::new()),
        };
        let mut warnings = warnings;
        let session_tickets = match &self.ticket_keys {
            None => None,
            Some(path) => match (TicketKeys::load(path), previous) {
                (Ok(keys), _) => Some(SessionTickets {
                    keys: Arc::new(keys),
                    lifetime: self.ticket_lifetime,
                }),
                (Err(error), Some(previous)) => {
                    warnings.push(LoadWarning::TicketKeysKept {
                        reason: error.to_string(),
                    });
                    Some(SessionTickets {
                        keys: Arc::clone(&previous.keys),
                        lifetime: self.ticket_lifetime,
                    })
                }
                (Err(error), None) => return Err(error),
            },
        };
        let config = server_config(&ServerSettings {
            credentials,
            client_trust,
            authorization: self.authorization.clone(),
            crl_next_update: crls.iter().filter_map(|crl| crl.next_update).min(),
            options: self.options.clone(),
            session_tickets: session_tickets.clone(),
        })?;
        Ok(LoadedServerConfig {
            config,
            crls,
            warnings,
            session_tickets,
        })
    }

    /// The key, decrypted with the passphrase file's current content when there is a file and
    /// the key is encrypted, else with `passphrase`.
    fn read_key(&self) -> Result<PrivateKey, ChannelError> {
        let from_file = match &self.passphrase_file {
            Some(file) if PrivateKey::is_encrypted_file(&self.key) => {
                Some(Passphrase::from_file(file).map_err(|source| ChannelError::Load {
                    what: format!("the passphrase for private key {}", self.key.display()),
                    source,
                })?)
            }
            _ => None,
        };
        read_key(&self.key, from_file.as_ref().or(self.passphrase.as_deref()))
    }

    /// [`ServerFiles::load`] on Tokio's blocking pool at the current time, under `deadline`:
    /// the runtime's worker threads never wait for a file or for scrypt. Needs a Tokio runtime
    /// with timers (`enable_all`); outside any Tokio runtime it runs on the calling thread.
    ///
    /// # Errors
    /// As [`ServerFiles::load`]; [`ChannelError::Timeout`] when loading took longer than
    /// `deadline` (the reading thread is abandoned, its result discarded);
    /// [`ChannelError::TaskFailed`].
    pub async fn load_async(&self, deadline: Duration) -> Result<LoadedServerConfig, ChannelError> {
        let files = self.clone();
        blocking_within("reading the certificate files", deadline, move || {
            files.load(OffsetDateTime::now_utc())
        })
        .await
    }
}

/// Runs blocking `work` on Tokio's blocking pool (on the calling thread outside a Tokio
/// runtime).
pub(crate) async fn blocking<T: Send + 'static>(
    task: &'static str,
    work: impl FnOnce() -> Result<T, ChannelError> + Send + 'static,
) -> Result<T, ChannelError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .map_err(|_| ChannelError::TaskFailed { task })?,
        Err(_) => work(),
    }
}

/// [`blocking`] under a deadline: past it the caller gets [`ChannelError::Timeout`] and the
/// thread doing `work` is abandoned (its result is dropped when it ends).
pub(crate) async fn blocking_within<T: Send + 'static>(
    task: &'static str,
    deadline: Duration,
    work: impl FnOnce() -> Result<T, ChannelError> + Send + 'static,
) -> Result<T, ChannelError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    match tokio::time::timeout(deadline, blocking(task, work)).await {
        Ok(result) => result,
        Err(_) => Err(ChannelError::Timeout {
            phase: task,
            seconds: deadline.as_secs_f64(),
        }),
    }
}
