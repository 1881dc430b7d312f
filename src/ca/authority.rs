//! A certificate authority: a directory holding the CA's certificate, key, chain and CRL, its
//! state store, and the operations on it (init, issue, revoke, CRL).
//!
//! ```text
//! DIR/            0700
//!   ca.pem        this CA's certificate
//!   ca.key        its private key, PKCS#8 (encrypted unless --no-passphrase), 0600
//!   chain.pem     this CA's certificate followed by its issuers, up to and including the root
//!   store.json    which store holds the CA's state (sqlite or postgres), written by `init`
//!   ca.db         the SQLite store (see `store`), written by `init` before ca.pem
//!   crl.pem       the current CRL
//!   issued/       default home of issued certificates and keys
//! ```
//!
//! `ca.pem` is written last by `init`: its presence marks a complete CA, whose store must then
//! exist. Every operation that changes the store first checks that `crl.pem` reflects it, and
//! rewrites the CRL when an interrupted command left it behind (see [`CrlStatus`]).

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CidrSubnet, DistinguishedName, DnType,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use time::macros::datetime;

use super::crl_file::{Depth, Unusable, read_crl_file};
use super::database::{DATABASE_FILE, Record, Revocation, normalise_serial};
use super::revocation::RevocationReason;
use super::store::{
    self, CrlState, CrlSummary, DirLock, ListFilter, Location, RevokeOutcome, SQLITE_FILE, STORE_FILE, Store,
};
use super::{CaError, Profile, SubjectAltName, check, csr};
use crate::fsutil;
use crate::pki::{self, CertificateInfo, KeyAlgorithm, Passphrase, PkiError, PrivateKey, pem};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CHAIN: &str = "chain.pem";
const CRL: &str = "crl.pem";
const ISSUED: &str = "issued";

/// Certificates start this long before the moment of issuance, to tolerate clock skew.
const BACKDATE: time::Duration = time::Duration::seconds(60);

/// The CRL lifetime used when an interrupted CRL write is repaired and the old CRL does not say
/// its own (`ca revoke` and `ca crl` default to it too).
pub const DEFAULT_CRL_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// The earliest time a certificate or CRL can carry (GeneralizedTime has four year digits,
/// RFC 5280 §4.1.2.5.2).
pub const EARLIEST_TIME: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
/// The latest time a certificate or CRL can carry (RFC 5280 §4.1.2.5.2).
pub const LATEST_TIME: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

/// `now` as a certificate carries it: UTC, whole seconds, within [`EARLIEST_TIME`] (plus the
/// backdating) and [`LATEST_TIME`].
fn x509_time(now: OffsetDateTime) -> Result<OffsetDateTime, CaError> {
    let utc = now
        .checked_to_offset(time::UtcOffset::UTC)
        .and_then(|t| t.replace_nanosecond(0).ok())
        .filter(|t| *t >= EARLIEST_TIME + BACKDATE && *t <= LATEST_TIME)
        .ok_or_else(|| {
            CaError::invalid(
                "time",
                format!(
                    "{} is outside the times a certificate can carry ({} to {})",
                    pki::rfc3339(now),
                    pki::rfc3339(EARLIEST_TIME),
                    pki::rfc3339(LATEST_TIME)
                ),
            )
        })?;
    Ok(utc)
}

/// `start + lifetime`, refused (never a panic) when it passes [`LATEST_TIME`]. `field` names the
/// parameter in the error.
fn end_of(start: OffsetDateTime, lifetime: Duration, field: &'static str) -> Result<OffsetDateTime, CaError> {
    time::Duration::try_from(lifetime)
        .ok()
        .and_then(|d| start.checked_add(d))
        .filter(|end| *end <= LATEST_TIME)
        .ok_or_else(|| {
            CaError::invalid(
                field,
                format!(
                    "{} days from {} is too long: it would end after {}, the latest time X.509 can express",
                    lifetime.as_secs() / 86_400,
                    pki::rfc3339(start),
                    pki::rfc3339(LATEST_TIME)
                ),
            )
        })
}

/// How a CA's `crl.pem` stands against its issuance database.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlStatus {
    /// No CRL was written yet, and nothing is revoked: there is nothing to publish.
    NotYetWritten,
    /// `crl.pem` was made from the database as it is: it lists every recorded revocation.
    Current,
    /// `crl.pem` is missing, damaged, or older than the database (a command was interrupted
    /// between recording a revocation and writing the CRL). The next command that signs with
    /// the CA (`revoke`, `crl`, `issue`, `init --parent`) rewrites it; `reason` says what is
    /// wrong.
    Stale {
        /// What is wrong, for people.
        reason: String,
    },
    /// `crl.pem` reads as this CA's CRL, with the store's CRL number, but the CA's signature
    /// over it does not verify: it was damaged after it was written. Found only by a full read
    /// ([`crl_status`], `ca revoke`), not by the constant-cost check before each issuance; the
    /// next `ca crl` or `ca revoke` rewrites it.
    Damaged {
        /// What is wrong, for people.
        reason: String,
    },
}

/// Compares `DIR/crl.pem` with the store of the CA in `dir` (for tools that only read, such
/// as `ca list`; the CA repairs a stale CRL itself whenever it signs).
///
/// # Errors
/// [`CaError::DatabaseBehindCrl`] when the CRL is newer than the store, store and I/O errors.
pub fn crl_status(dir: &Path, store: &mut dyn Store) -> Result<CrlStatus, CaError> {
    let (certificate, _) = read_ca_certificates(dir)?;
    Ok(inspect_crl(dir, store, &certificate, Depth::Full)?.status)
}

/// What [`inspect_crl`] found.
struct CrlInspection {
    status: CrlStatus,
    /// The current CRL (DER), when it is [`CrlStatus::Current`].
    der: Option<CertificateRevocationListDer<'static>>,
    /// The lifetime (nextUpdate − thisUpdate) of the CRL found, if it could be read.
    lifetime: Option<Duration>,
    /// True when the CRL is whole but has a lower number than the store handed out.
    behind: bool,
}

/// Compares `crl.pem` with the store. The file is read before the store, so a CRL that another
/// process publishes meanwhile (always after its number was committed) is never taken for one
/// ahead of the store.
fn inspect_crl(
    dir: &Path,
    store: &mut dyn Store,
    ca: &CertificateDer<'_>,
    depth: Depth,
) -> Result<CrlInspection, CaError> {
    let path = dir.join(CRL);
    let file = read_crl_file(&path, ca, depth)?;
    // Counting the revoked rows is only needed when there is no CRL to compare with.
    let (db_number, revoked) = match &file {
        Ok(_) => (store.crl_number()?, 0),
        Err(_) => {
            let CrlSummary { number, revoked } = store.crl_summary()?;
            (number, revoked)
        }
    };
    let stale = |reason: String, lifetime: Option<Duration>| CrlInspection {
        status: CrlStatus::Stale { reason },
        der: None,
        lifetime,
        behind: false,
    };
    let file = match file {
        Ok(file) => file,
        Err(Unusable {
            reason,
            lifetime,
            unsigned: true,
        }) => {
            return Ok(CrlInspection {
                status: CrlStatus::Damaged { reason },
                der: None,
                lifetime,
                behind: false,
            });
        }
        Err(Unusable { reason, lifetime, .. }) if !reason.is_empty() => return Ok(stale(reason, lifetime)),
        Err(_) if db_number == 0 && revoked == 0 => {
            return Ok(CrlInspection {
                status: CrlStatus::NotYetWritten,
                der: None,
                lifetime: None,
                behind: false,
            });
        }
        Err(_) => {
            return Ok(stale(
                format!(
                    "{} is missing, though the database records CRL number {db_number} and {revoked} revocation(s)",
                    path.display()
                ),
                None,
            ));
        }
    };
    let Some(number) = file.number else {
        return Ok(stale(
            format!("{} has no usable CRL number", path.display()),
            file.lifetime,
        ));
    };
    if number > db_number {
        return Err(CaError::DatabaseBehindCrl {
            crl: path,
            crl_number: number,
            database_crl_number: db_number,
        });
    }
    if number < db_number {
        return Ok(CrlInspection {
            behind: true,
            ..stale(
                format!(
                    "{} is CRL number {number}, but the store has handed out CRL number {db_number} (an earlier command was interrupted)",
                    path.display()
                ),
                file.lifetime,
            )
        });
    }
    // Every revocation advances the CRL number in the transaction that reads the revoked set,
    // and the CA's signature shows the file is the CRL it made: under the store's number it
    // lists exactly what the store holds.
    Ok(CrlInspection {
        status: CrlStatus::Current,
        der: file.der,
        lifetime: file.lifetime,
        behind: false,
    })
}

/// How to create a CA (`ca init`).
#[derive(Clone, Debug)]
pub struct InitRequest {
    /// The CA's common name.
    pub name: String,
    /// The key type (P-256 by default).
    pub key_algorithm: KeyAlgorithm,
    /// How long the CA certificate is valid. `None`: 10 years for a root, 5 for an
    /// intermediate (clamped to the parent's lifetime).
    pub lifetime: Option<Duration>,
    /// The path length constraint (`None`: unlimited for a root, parent's minus one below).
    pub path_len: Option<u8>,
    /// Permitted DNS subtrees (name constraints).
    pub permitted_dns: Vec<String>,
    /// Permitted IP ranges (name constraints), address and prefix length.
    pub permitted_ip: Vec<(IpAddr, u8)>,
    /// Permitted e-mail domains or addresses (name constraints). Always refused: Tessera's
    /// verifier (rustls-webpki) refuses every e-mail address below a CA with e-mail name
    /// constraints, so such a CA could never issue an e-mail certificate.
    pub permitted_email: Vec<String>,
    /// Excluded DNS subtrees (name constraints).
    pub excluded_dns: Vec<String>,
    /// Where the new CA keeps its state (SQLite in `DIR/ca.db` by default).
    pub store: Location,
}

impl InitRequest {
    /// A request with the defaults: P-256, default lifetime, no constraints.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key_algorithm: KeyAlgorithm::P256,
            lifetime: None,
            path_len: None,
            permitted_dns: Vec::new(),
            permitted_ip: Vec::new(),
            permitted_email: Vec::new(),
            excluded_dns: Vec::new(),
            store: Location::Sqlite,
        }
    }

    /// Checks the request before any key is made: names, e-mail constraints (refused: see
    /// [`InitRequest::permitted_email`]), wildcards and host bits in constraints, a permitted
    /// DNS subtree that an excluded one covers. [`CertificateAuthority::init`] and
    /// [`CertificateAuthority::init_intermediate`] call it too.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] naming the parameter and what is wrong.
    pub fn validate(&self) -> Result<(), CaError> {
        check_name(&self.name)?;
        check::init_request(self)
    }

    fn name_constraints(&self) -> Option<NameConstraints> {
        let mut permitted: Vec<GeneralSubtree> = self
            .permitted_dns
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.trim_start_matches('.').to_ascii_lowercase()))
            .collect();
        permitted.extend(
            self.permitted_ip
                .iter()
                .map(|(ip, prefix)| GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, *prefix))),
        );
        permitted.extend(
            self.permitted_email
                .iter()
                .map(|e| GeneralSubtree::Rfc822Name(e.clone())),
        );
        let excluded: Vec<GeneralSubtree> = self
            .excluded_dns
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.trim_start_matches('.').to_ascii_lowercase()))
            .collect();
        if permitted.is_empty() && excluded.is_empty() {
            None
        } else {
            Some(NameConstraints {
                permitted_subtrees: permitted,
                excluded_subtrees: excluded,
            })
        }
    }
}

/// How to issue a leaf certificate (`ca issue`).
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Server, client or code-signing.
    pub profile: Profile,
    /// The subject's common name.
    pub name: String,
    /// Subject alternative names. A server certificate with none gets `dns:<name>`.
    pub sans: Vec<SubjectAltName>,
    /// Requested lifetime; `None` means the profile's default, shortened to the issuer's notAfter
    /// if need be. An explicit lifetime past the issuer's notAfter is refused.
    pub lifetime: Option<Duration>,
    /// Key type for a new key (`None`: Ed25519 for code signing, P-256 otherwise). Ignored
    /// with a CSR.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// A PKCS#10 request (PEM or DER). The requester's key never touches the CA; only the
    /// subject's public key is taken from it, after checking its self-signature.
    pub csr: Option<Vec<u8>>,
}

impl IssueRequest {
    /// A request for `profile` and common name `name`, everything else by default.
    pub fn new(profile: Profile, name: impl Into<String>) -> Self {
        Self {
            profile,
            name: name.into(),
            sans: Vec::new(),
            lifetime: None,
            key_algorithm: None,
            csr: None,
        }
    }

    /// Adds subject alternative names.
    pub fn with_sans(mut self, sans: impl IntoIterator<Item = SubjectAltName>) -> Self {
        self.sans.extend(sans);
        self
    }

    /// Sets the key type.
    pub fn with_key_algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.key_algorithm = Some(algorithm);
        self
    }

    /// Sets the lifetime.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }
}

/// A freshly issued certificate (already recorded in the CA's database).
#[derive(Debug)]
pub struct Issued {
    /// The certificate.
    pub certificate: CertificateDer<'static>,
    /// The certificate followed by the issuing CA and its intermediates (not the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The new private key (absent when issued from a CSR).
    pub key: Option<PrivateKey>,
    /// The certificate's facts.
    pub info: CertificateInfo,
    /// True when the default lifetime was shortened to end with the issuer's.
    pub clamped: bool,
    /// The issuing CA's directory (its lock serialises writing the files).
    ca_dir: PathBuf,
}

/// Where [`Issued::write`] put the files.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IssuedFiles {
    /// `PREFIX.pem`: the certificate.
    pub certificate: PathBuf,
    /// `PREFIX.key`: the private key (0600), if one was generated.
    pub key: Option<PathBuf>,
    /// `PREFIX.chain.pem`: certificate + intermediates.
    pub chain: PathBuf,
}

impl IssuedFiles {
    /// The files for `prefix`: `PREFIX.pem`, `PREFIX.chain.pem`, and `PREFIX.key` when
    /// `with_key`.
    pub fn for_prefix(prefix: &Path, with_key: bool) -> Self {
        let with_suffix = |suffix: &str| {
            let mut name = prefix.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Self {
            certificate: with_suffix(".pem"),
            key: with_key.then(|| with_suffix(".key")),
            chain: with_suffix(".chain.pem"),
        }
    }
}

/// A file that an interrupted `ca issue` left and [`CertificateAuthority::clear_outputs`]
/// removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// The file removed (`PREFIX.key` or `PREFIX.chain.pem`).
    pub path: PathBuf,
    /// The serial of the certificate it belonged to: recorded in the database, but its
    /// `PREFIX.pem` never written.
    pub serial: String,
}

/// The outcome of [`CertificateAuthority::revoke_certificate`].
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The certificate's serial, lowercase hex.
    pub serial: String,
    /// When and why it is revoked (the recorded revocation when it already was).
    pub revocation: Revocation,
    /// False when the certificate was already revoked and nothing changed.
    pub newly_revoked: bool,
    /// The CA's current CRL (as in `crl.pem`), which lists the certificate.
    pub crl: CertificateRevocationListDer<'static>,
}

impl Issued {
    /// Writes `PREFIX.key` (0600, encrypted if a passphrase is given), `PREFIX.chain.pem` and
    /// `PREFIX.pem`. Existing files are never overwritten. All three are written and fsynced
    /// under temporary names first and then put in place together, the certificate last, so a
    /// crash leaves either nothing, or (in a window of a few system calls) a key and chain
    /// without their certificate, which [`CertificateAuthority::clear_outputs`] recognises and
    /// removes. On failure nothing is left. Temporary files that killed processes left in the
    /// target directory are removed first.
    ///
    /// # Errors
    /// [`CaError::Pki`] with [`PkiError::AlreadyExists`] when a target exists, or I/O errors.
    pub fn write(&self, prefix: &Path, key_passphrase: Option<&Passphrase>) -> Result<IssuedFiles, CaError> {
        let files = IssuedFiles::for_prefix(prefix, self.key.is_some());
        let parent = match files.certificate.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| CaError::io(parent, e))?;
        for path in std::iter::once(&files.certificate)
            .chain(files.key.iter())
            .chain([&files.chain])
        {
            if path.symlink_metadata().is_ok() {
                return Err(PkiError::AlreadyExists { path: path.clone() }.into());
            }
        }
        // Encrypting the key (scrypt) takes a while: before taking the lock.
        let key_pem = self.key.as_ref().map(|k| k.to_pem(key_passphrase)).transpose()?;
        let certificate_pem = pem::to_pem(pem::CERTIFICATE, &self.certificate);
        let chain_pem = pem::certificates_to_pem(&self.chain);
        let mut group: Vec<(&Path, &[u8], u32)> = Vec::with_capacity(3);
        if let (Some(pem), Some(path)) = (&key_pem, &files.key) {
            group.push((path, pem.as_bytes(), fsutil::PRIVATE_MODE));
        }
        group.push((&files.chain, chain_pem.as_bytes(), fsutil::PUBLIC_MODE));
        group.push((&files.certificate, certificate_pem.as_bytes(), fsutil::PUBLIC_MODE));
        let _lock = DirLock::acquire(&self.ca_dir)?;
        if let Err(e) = fsutil::remove_stale_temporaries(parent) {
            tracing::warn!(dir = %parent.display(), error = %e, "cannot look for leftover temporary files");
        }
        fsutil::create_new_group(&group).map_err(|(path, e)| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::AlreadyExists { path }.into()
            } else {
                CaError::io(path, e)
            }
        })?;
        Ok(files)
    }
}

fn create_public(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    fsutil::create_new_atomic(path, bytes, fsutil::PUBLIC_MODE).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::AlreadyExists { path: path.into() }.into()
        } else {
            CaError::io(path, e)
        }
    })
}

/// An opened CA, ready to sign.
pub struct CertificateAuthority {
    dir: PathBuf,
    certificate: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    info: CertificateInfo,
    key: PrivateKey,
    store: std::sync::Mutex<Box<dyn Store>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("subject", &self.info.subject)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed root CA in `dir` (created 0700 if absent). The key is encrypted
    /// with `passphrase` when one is given. The CA's certificate, chain, key and (empty)
    /// issuance database are written, `ca.pem` last.
    ///
    /// # Errors
    /// [`CaError::AlreadyInitialised`], [`CaError::UnfinishedInit`],
    /// [`CaError::InvalidRequest`] (see [`InitRequest::validate`]; also when `now` or the
    /// lifetime cannot be expressed in a certificate, e.g. [`Duration::MAX`]),
    /// [`CaError::Unusable`] when Tessera's verifier would refuse what the CA issues, I/O errors.
    pub fn init(
        dir: &Path,
        request: &InitRequest,
        passphrase: Option<&Passphrase>,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        check_name(&request.name)?;
        let now = x509_time(now)?;
        check_free(dir)?;
        check::init_request(request)?;
        let lifetime = request.lifetime.unwrap_or(Duration::from_secs(10 * 365 * 86_400));
        if lifetime.is_zero() {
            return Err(CaError::invalid("lifetime", "must be positive"));
        }
        let not_after = end_of(now, lifetime, "lifetime")?;
        let key = PrivateKey::generate(request.key_algorithm)?;
        let key_pair = key.to_key_pair()?;
        let mut params = ca_params(request, now, not_after)?;
        params.is_ca = IsCa::Ca(match request.path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| CaError::build("CA certificate", e))?;
        let certificate = cert.der().clone();
        check::new_ca(std::slice::from_ref(&certificate), &key, request, now)?;
        Self::create(
            dir,
            certificate.clone(),
            vec![certificate],
            key,
            passphrase,
            &request.store,
        )
    }

    /// Creates an intermediate CA in `dir`, issued (and recorded) by `self`.
    ///
    /// # Errors
    /// As [`CertificateAuthority::init`]; also [`CaError::Unusable`] when `self`'s path length
    /// forbids another CA below it or a permitted subtree lies outside `self`'s constraints,
    /// [`CaError::OutlivesIssuer`].
    pub fn init_intermediate(
        &self,
        dir: &Path,
        request: &InitRequest,
        passphrase: Option<&Passphrase>,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        check_name(&request.name)?;
        let now = x509_time(now)?;
        check::init_request(request)?;
        if self.info.path_len == Some(0) {
            return Err(CaError::Unusable {
                what: "the intermediate CA".into(),
                reason: format!(
                    "the parent CA {} has path length 0: no CA may follow it, so Tessera's verifier would refuse \
                     everything the new CA issued",
                    self.info.subject
                ),
            });
        }
        let path_len = match (request.path_len, self.info.path_len) {
            (Some(want), Some(parent)) if u32::from(want) >= parent => {
                return Err(CaError::invalid(
                    "path-len",
                    format!("must be below the parent's path length {parent}"),
                ));
            }
            (Some(want), _) => Some(want),
            (None, Some(parent)) => u8::try_from(parent.saturating_sub(1)).ok(),
            (None, None) => None,
        };
        check_free(dir)?;
        let (not_after, _) = self.lifetime_end(now, request.lifetime, Duration::from_secs(5 * 365 * 86_400))?;
        let key = PrivateKey::generate(request.key_algorithm)?;
        let key_pair = key.to_key_pair()?;
        let mut params = ca_params(request, now, not_after)?;
        params.not_before = params.not_before.max(self.info.not_before);
        params.is_ca = IsCa::Ca(match path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        params.use_authority_key_identifier_extension = true;
        self.ensure_crl(now, Depth::Header)?;
        let issuer = self.issuer()?;
        let certificate = self.sign_and_record("intermediate", now, |serial| {
            params.serial_number = Some(serial);
            let cert = params
                .signed_by(&key_pair, &issuer)
                .map_err(|e| CaError::build("intermediate CA certificate", e))?;
            let certificate = cert.der().clone();
            // Checked before it is recorded: a CA Tessera would refuse is never made.
            let mut chain = vec![certificate.clone()];
            chain.extend(self.chain.iter().cloned());
            check::new_ca(&chain, &key, request, now)?;
            Ok(certificate)
        })?;
        let mut chain = vec![certificate.clone()];
        chain.extend(self.chain.iter().cloned());
        Self::create(dir, certificate, chain, key, passphrase, &request.store)
    }

    fn create(
        dir: &Path,
        certificate: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKey,
        passphrase: Option<&Passphrase>,
        location: &Location,
    ) -> Result<Self, CaError> {
        check_free(dir)?;
        let existed = dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CaError::io(dir, e))?;
        make_private_dir(dir, existed)?;
        if let Err(e) = fsutil::remove_stale_temporaries(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot look for leftover temporary files");
        }
        let info = CertificateInfo::from_der(&certificate)?;
        let key_path = dir.join(CA_KEY);
        key.save(&key_path, passphrase)?;
        let mut written = vec![key_path];
        let result = (|| {
            create_public(&dir.join(CHAIN), pem::certificates_to_pem(&chain).as_bytes())?;
            written.push(dir.join(CHAIN));
            // The store before ca.pem: a CA directory always has one.
            written.extend(store::create(dir, &info.sha256_fingerprint, location)?);
            // ca.pem last: its presence marks a complete CA directory.
            create_public(
                &dir.join(CA_CERT),
                pem::to_pem(pem::CERTIFICATE, &certificate).as_bytes(),
            )
        })();
        if let Err(e) = result {
            for path in written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        let store = store::open(dir, &info.sha256_fingerprint, Some(location))?;
        Ok(Self {
            dir: dir.into(),
            certificate,
            chain,
            info,
            key,
            store: std::sync::Mutex::new(store),
        })
    }

    /// Opens the CA in `dir`, decrypting its key with `passphrase` if it is encrypted.
    /// The CA's store must be there and be its own: a CA whose state is missing or damaged is
    /// refused, never taken for a new one. See [`CertificateAuthority::open_with_store`].
    ///
    /// # Errors
    /// [`CaError::NotACa`], [`CaError::MissingDatabase`], [`CaError::Database`],
    /// [`CaError::Store`], [`PkiError::PassphraseRequired`], [`PkiError::WrongPassphrase`], …
    pub fn open(dir: &Path, passphrase: Option<&Passphrase>) -> Result<Self, CaError> {
        Self::open_with_store(dir, passphrase, None)
    }

    /// Opens the CA in `dir` with its state in `location` (`None`: the store `DIR/store.json`
    /// records, which must then be SQLite). A `db.json` of an earlier Tessera is imported
    /// first (see [`store::open`]).
    ///
    /// # Errors
    /// As [`CertificateAuthority::open`].
    pub fn open_with_store(
        dir: &Path,
        passphrase: Option<&Passphrase>,
        location: Option<&Location>,
    ) -> Result<Self, CaError> {
        let (certificate, _) = read_ca_certificates(dir)?;
        let info = CertificateInfo::from_der(&certificate)?;
        let store = store::open(dir, &info.sha256_fingerprint, location)?;
        Self::open_with(dir, passphrase, store)
    }

    /// Opens the CA in `dir` with its already opened `store` (see [`store::open_dir`]), so a
    /// command can check the store before it asks for the key's passphrase.
    ///
    /// # Errors
    /// As [`CertificateAuthority::open`].
    pub fn open_with(dir: &Path, passphrase: Option<&Passphrase>, store: Box<dyn Store>) -> Result<Self, CaError> {
        let (certificate, chain) = read_ca_certificates(dir)?;
        let info = CertificateInfo::from_der(&certificate)?;
        let key = PrivateKey::load(&dir.join(CA_KEY), passphrase)?;
        if key.public_key_spki()? != spki_of(&certificate)? {
            return Err(CaError::Pki(PkiError::malformed(
                dir.join(CA_KEY).display().to_string(),
                "does not match ca.pem",
            )));
        }
        Ok(Self {
            dir: dir.into(),
            certificate,
            chain,
            info,
            key,
            store: std::sync::Mutex::new(store),
        })
    }

    /// Runs `f` with this CA's store.
    fn with_store<T>(&self, f: impl FnOnce(&mut dyn Store) -> Result<T, CaError>) -> Result<T, CaError> {
        let mut guard = self.store.lock().map_err(|_| CaError::Store {
            store: self.dir.display().to_string(),
            reason: "an earlier operation on the store failed midway".into(),
        })?;
        f(guard.as_mut())
    }

    /// Calls `each` with every record of this CA that matches `filter`, newest first.
    ///
    /// # Errors
    /// Store errors, or `each`'s.
    pub fn list(
        &self,
        filter: &ListFilter,
        each: &mut dyn FnMut(Record) -> Result<(), CaError>,
    ) -> Result<(), CaError> {
        self.with_store(|store| store.list(filter, each))
    }

    /// The path of the key of the CA in `dir` (`DIR/ca.key`).
    pub fn key_path(dir: &Path) -> PathBuf {
        dir.join(CA_KEY)
    }

    /// The CA's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA's certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// This CA's certificate followed by its issuers, up to and including the root.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The root at the top of this CA's chain.
    pub fn root(&self) -> &CertificateDer<'static> {
        self.chain.last().unwrap_or(&self.certificate)
    }

    /// The CA certificate's facts.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The path of the CA's current CRL.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL)
    }

    /// The default output prefix for a certificate with this common name: `DIR/issued/<name>`
    /// (see [`CertificateAuthority::output_prefix`]; a name that yields no file name gives
    /// `DIR/issued/_`).
    pub fn default_prefix(&self, name: &str) -> PathBuf {
        self.dir
            .join(ISSUED)
            .join(file_name_for(name).unwrap_or_else(|| "_".into()))
    }

    /// The output prefix `ca issue` writes `PREFIX.pem`, `PREFIX.key` and `PREFIX.chain.pem`
    /// to, for the CA in `dir`, an `--out` value and the common name `name`:
    ///
    /// - no `out`: `DIR/issued/<name>`, the name's characters other than letters, digits, `.`,
    ///   `_` and `-` replaced by `_`, leading and trailing dots removed;
    /// - `out` ending in `/`, or naming an existing directory: `OUT/<name>` likewise;
    /// - else `out`, less trailing dots and a `.pem`, `.chain.pem` or `.key` ending (so
    ///   `--out www.pem` writes `www.pem`, `www.key` and `www.chain.pem`).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `--out`) when no file name is left (`--out ''`,
    /// `--out dir/...`, or a common name such as `...` with no `--out`).
    pub fn output_prefix(dir: &Path, out: Option<&Path>, name: &str) -> Result<PathBuf, CaError> {
        let from_name = |base: &Path| {
            file_name_for(name).map(|file| base.join(file)).ok_or_else(|| {
                CaError::invalid(
                    "--out",
                    format!("no file name can be made from the name \"{name}\"; give --out PREFIX"),
                )
            })
        };
        let Some(out) = out else {
            return from_name(&dir.join(ISSUED));
        };
        let text = out.as_os_str().as_encoded_bytes();
        if text.is_empty() {
            return Err(CaError::invalid(
                "--out",
                "the output prefix is empty; give --out PREFIX",
            ));
        }
        if text.ends_with(b"/") || out.is_dir() {
            return from_name(out);
        }
        let Some(file) = out.file_name().and_then(|f| f.to_str()) else {
            return match out.file_name() {
                // Not UTF-8: used as given.
                Some(_) => Ok(out.to_path_buf()),
                // `..` or `/`: a directory.
                None => from_name(out),
            };
        };
        let mut stem = file.trim_end_matches('.');
        for ending in [".chain.pem", ".pem", ".key"] {
            if let Some(shorter) = stem.strip_suffix(ending) {
                stem = shorter.trim_end_matches('.');
                break;
            }
        }
        if stem.is_empty() || stem.chars().all(|c| c == '.') {
            return Err(CaError::invalid(
                "--out",
                format!(
                    "\"{}\" leaves no file name for the certificate; give a prefix such as {}",
                    out.display(),
                    out.with_file_name("www").display()
                ),
            ));
        }
        Ok(out.with_file_name(stem))
    }

    /// Gets `PREFIX` ready for [`Issued::write`] before anything is issued. `PREFIX.pem` must
    /// not exist. A `PREFIX.chain.pem` or (when `with_key`) `PREFIX.key` without `PREFIX.pem`
    /// is what an interrupted `ca issue` leaves: when it belongs to a certificate in this CA's
    /// database (the same certificate, or the key of one; an encrypted key is checked with
    /// `key_passphrase`), it is removed and reported; any other file there is refused.
    ///
    /// # Errors
    /// [`PkiError::AlreadyExists`] for a file that is not such a leftover,
    /// [`CaError::UnfinishedOutput`] for an encrypted key that cannot be checked, I/O errors.
    pub fn clear_outputs(
        &self,
        prefix: &Path,
        with_key: bool,
        key_passphrase: Option<&Passphrase>,
    ) -> Result<Vec<Leftover>, CaError> {
        let files = IssuedFiles::for_prefix(prefix, with_key);
        if files.certificate.symlink_metadata().is_ok() {
            return Err(PkiError::AlreadyExists {
                path: files.certificate,
            }
            .into());
        }
        let present: Vec<&PathBuf> = std::iter::once(&files.chain)
            .chain(files.key.iter())
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        if present.is_empty() {
            return Ok(Vec::new());
        }
        // Under the lock, so a leftover is never a file another `ca issue` is still writing.
        let _lock = DirLock::acquire(&self.dir)?;
        let mut leftovers = Vec::new();
        for path in present {
            let not_ours = || CaError::from(PkiError::AlreadyExists { path: path.clone() });
            let meta = path.symlink_metadata().map_err(|e| CaError::io(path, e))?;
            if !meta.file_type().is_file() {
                return Err(not_ours());
            }
            let bytes = zeroize::Zeroizing::new(pem::read_file(path)?);
            let serial = if Some(path) == files.key.as_ref() {
                let key = match PrivateKey::from_pem(&bytes, key_passphrase, &path.display().to_string()) {
                    Ok(key) => key,
                    Err(PkiError::PassphraseRequired { .. } | PkiError::WrongPassphrase { .. }) => {
                        return Err(CaError::UnfinishedOutput {
                            path: path.clone(),
                            certificate: files.certificate.clone(),
                            reason: "it is encrypted, and without its passphrase it cannot be told apart from a \
                                     key that must be kept"
                                .into(),
                        });
                    }
                    Err(_) => return Err(not_ours()),
                };
                let spki = key.public_key_spki()?;
                let mut found = None;
                self.list(&ListFilter::all(OffsetDateTime::now_utc()), &mut |r| {
                    if found.is_none()
                        && let Some(first) = pem::parse_certificates(r.certificate.as_bytes(), "store")
                            .ok()
                            .and_then(|der| der.into_iter().next())
                        && spki_of(&first).ok().as_ref() == Some(&spki)
                    {
                        found = Some(r.serial);
                    }
                    Ok(())
                })?;
                found
            } else {
                pem::parse_certificates(&bytes, &path.display().to_string())
                    .ok()
                    .and_then(|certs| certs.into_iter().next())
                    .and_then(|first| {
                        let info = CertificateInfo::from_der(&first).ok()?;
                        let record = self.with_store(|store| store.find(&info.serial)).ok()??;
                        (record.certificate == pem::to_pem(pem::CERTIFICATE, &first)).then(|| record.serial.clone())
                    })
            };
            match serial {
                Some(serial) => leftovers.push(Leftover {
                    path: path.clone(),
                    serial,
                }),
                None => return Err(not_ours()),
            }
        }
        for leftover in &leftovers {
            std::fs::remove_file(&leftover.path).map_err(|e| CaError::io(&leftover.path, e))?;
            tracing::info!(path = %leftover.path.display(), serial = %leftover.serial, "removed a file left by an interrupted issue");
        }
        Ok(leftovers)
    }

    /// The current CRL, rewritten first (under a fresh CRL number) if it does not reflect the
    /// store; `None` when no CRL was ever written and nothing is revoked.
    fn ensure_crl(
        &self,
        now: OffsetDateTime,
        depth: Depth,
    ) -> Result<Option<CertificateRevocationListDer<'static>>, CaError> {
        if let Err(e) = fsutil::remove_stale_temporaries(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot look for leftover temporary files");
        }
        let mut found = self.with_store(|store| inspect_crl(&self.dir, store, &self.certificate, depth))?;
        // A CRL number handed out but not yet in crl.pem is usually another process between its
        // commit and its publication (a few milliseconds): give it that time before taking the
        // CRL for one left behind by a crash.
        for _ in 0..10 {
            if !found.behind {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            found = self.with_store(|store| inspect_crl(&self.dir, store, &self.certificate, depth))?;
        }
        match found.status {
            CrlStatus::NotYetWritten => Ok(None),
            CrlStatus::Current => Ok(found.der),
            CrlStatus::Stale { reason } | CrlStatus::Damaged { reason } => {
                let lifetime = found.lifetime.unwrap_or(DEFAULT_CRL_LIFETIME);
                let state = self.with_store(|store| store.advance_crl_number())?;
                let number = state.number;
                let der = self.publish_crl(&state, now, lifetime)?;
                tracing::warn!("{reason}; rewrote it from the store as CRL number {number}");
                Ok(Some(der))
            }
        }
    }

    /// How this CA's `crl.pem` stands against its store (see [`crl_status`]).
    ///
    /// # Errors
    /// [`CaError::DatabaseBehindCrl`], store and I/O errors.
    pub fn crl_status(&self) -> Result<CrlStatus, CaError> {
        Ok(self
            .with_store(|store| inspect_crl(&self.dir, store, &self.certificate, Depth::Full))?
            .status)
    }

    /// Signs a certificate with a fresh random serial and records it (`issue`); on the rare
    /// serial already taken, signs again with another.
    fn sign_and_record(
        &self,
        profile: &str,
        now: OffsetDateTime,
        mut sign: impl FnMut(SerialNumber) -> Result<CertificateDer<'static>, CaError>,
    ) -> Result<CertificateDer<'static>, CaError> {
        for _ in 0..16 {
            let mut serial = [0u8; 16];
            random_serial(&mut serial)?;
            let certificate = sign(SerialNumber::from_slice(&serial))?;
            let info = CertificateInfo::from_der(&certificate)?;
            let record = record(&info, profile, &certificate, now);
            if self.with_store(|store| store.issue(&record))? {
                return Ok(certificate);
            }
            tracing::info!(serial = %info.serial, "serial already taken; signing again with another");
        }
        Err(CaError::invalid(
            "serial",
            "16 random serials in a row were taken: the random source is broken",
        ))
    }

    /// Issues a leaf certificate. Before anything is handed out, the new certificate is checked
    /// through [`TrustStore::verify`](crate::pki::TrustStore::verify) against this CA's own
    /// chain for the profile's usage (a server's once more per DNS name and IP address), so a
    /// certificate that breaks a name constraint or a path length is refused; then it is
    /// recorded in the database (under its lock, with a fresh unique serial). With a CSR, the
    /// certificate carries the request's SubjectPublicKeyInfo byte for byte, and its names
    /// when `sans` is empty; nothing else the request asks for is used.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (also for a `now` or lifetime a certificate cannot carry),
    /// [`CaError::BadCsr`], [`CaError::UnsupportedCsr`], [`CaError::OutlivesIssuer`],
    /// [`CaError::IssuerNotValid`], [`CaError::Refused`], database and I/O errors.
    pub fn issue(&self, request: &IssueRequest, now: OffsetDateTime) -> Result<Issued, CaError> {
        check_name(&request.name)?;
        let now = x509_time(now)?;
        let csr = request.csr.as_deref().map(csr::parse).transpose()?;
        let algorithm = request.key_algorithm.unwrap_or(match request.profile {
            Profile::CodeSigning => KeyAlgorithm::Ed25519,
            Profile::Server | Profile::Client => KeyAlgorithm::P256,
        });
        match &csr {
            Some(csr) => check::profile_csr_key(request.profile, csr.key())?,
            None => check::profile_key(request.profile, algorithm)?,
        }
        let mut sans = request.sans.clone();
        if sans.is_empty()
            && let Some(csr) = &csr
        {
            sans = csr.sans()?;
        }
        if request.profile == Profile::Server {
            // A server's common name is also one of its names, as TLS clients only look at SANs.
            if let Ok(san @ (SubjectAltName::Dns(_) | SubjectAltName::Ip(_))) = SubjectAltName::parse(&request.name)
                && !sans.contains(&san)
            {
                sans.insert(0, san);
            }
        }
        check::server_names(request.profile, &request.name, &sans)?;
        let default_lifetime = request.profile.default_lifetime();
        let (not_after, clamped) = self.lifetime_end(now, request.lifetime, default_lifetime)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&request.name);
        params.not_before = now
            .checked_sub(BACKDATE)
            .unwrap_or(EARLIEST_TIME)
            .max(self.info.not_before);
        params.not_after = not_after;
        params.subject_alt_names = sans.iter().map(SubjectAltName::to_rcgen).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = request.profile.key_usages();
        params.extended_key_usages = request.profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;

        let issuer = self.issuer()?;
        self.ensure_crl(now, Depth::Header)?;
        let key = match &csr {
            Some(_) => None,
            None => Some(PrivateKey::generate(algorithm)?),
        };
        let key_pair = key.as_ref().map(PrivateKey::to_key_pair).transpose()?;
        let certificate = self.sign_and_record(request.profile.name(), now, |serial| {
            params.serial_number = Some(serial);
            let cert = match (&csr, &key_pair) {
                (Some(csr), _) => {
                    let cert = params
                        .signed_by(&csr.public_key(), &issuer)
                        .map_err(|e| CaError::build("certificate", e))?;
                    // The certificate must carry the request's SubjectPublicKeyInfo exactly.
                    if spki_of(cert.der())? != csr.spki() {
                        return Err(CaError::UnsupportedCsr {
                            reason: format!(
                                "its {} public key is not encoded the usual way, and Tessera copies keys only byte for byte",
                                csr.key()
                            ),
                            fix: "make the request with OpenSSL (`openssl req -new -key KEY -out REQ.csr`)".into(),
                        });
                    }
                    cert
                }
                (None, Some(key_pair)) => params
                    .signed_by(key_pair, &issuer)
                    .map_err(|e| CaError::build("certificate", e))?,
                (None, None) => return Err(CaError::invalid("key", "no key to certify")),
            };
            let certificate = cert.der().clone();
            // Checked before it is recorded: a refused certificate is never handed out.
            check::leaf(self.root(), &self.chain, &certificate, request.profile, &sans, now)?;
            Ok(certificate)
        })?;
        let mut chain = vec![certificate.clone()];
        chain.extend(self.chain.iter().take(self.chain.len().saturating_sub(1)).cloned());
        let info = CertificateInfo::from_der(&certificate)?;
        tracing::info!(serial = %info.serial, subject = %info.subject, profile = %request.profile, "issued");
        Ok(Issued {
            certificate,
            chain,
            key,
            info,
            clamped,
            ca_dir: self.dir.clone(),
        })
    }

    /// Marks the certificate with `serial` revoked and writes a fresh CRL; returns the CRL.
    /// See [`CertificateAuthority::revoke_certificate`], which also says whether anything
    /// changed.
    ///
    /// # Errors
    /// As [`CertificateAuthority::revoke_certificate`].
    pub fn revoke(
        &self,
        serial: &str,
        reason: RevocationReason,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        self.revoke_certificate(serial, reason, now, crl_lifetime)
            .map(|revoked| revoked.crl)
    }

    /// Marks the certificate with `serial` revoked and writes a fresh CRL (`DIR/crl.pem`, valid
    /// for `crl_lifetime`), the database first, so that an interruption in between is repaired
    /// by the next command.
    ///
    /// Revoking an already revoked certificate again, for the same reason or with
    /// [`RevocationReason::Unspecified`], changes nothing and succeeds
    /// ([`Revoked::newly_revoked`] is false): a retry after a crash is safe, and the CRL returned
    /// lists the certificate. Another reason is refused: a revocation is final.
    ///
    /// # Errors
    /// [`CaError::UnknownSerial`], [`CaError::AlreadyRevoked`] (another reason),
    /// [`CaError::InvalidRequest`] (a zero or too long CRL lifetime, a `now` a CRL cannot
    /// carry), [`CaError::DatabaseBehindCrl`], database and I/O errors.
    pub fn revoke_certificate(
        &self,
        serial: &str,
        reason: RevocationReason,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<Revoked, CaError> {
        let now = x509_time(now)?;
        crl_next_update(now, crl_lifetime)?;
        // Repairs a CRL left behind, and refuses a store older than the CRL, before any change.
        self.ensure_crl(now, Depth::Full)?;
        match self.with_store(|store| store.revoke_once(serial, now, reason.name()))? {
            RevokeOutcome::Unknown => Err(CaError::UnknownSerial {
                serial: normalise_serial(serial),
            }),
            RevokeOutcome::AlreadyRevoked(revocation) => {
                let serial = normalise_serial(serial);
                if reason != RevocationReason::Unspecified && revocation.reason != reason.name() {
                    return Err(CaError::AlreadyRevoked {
                        serial,
                        at: revocation.at,
                        reason: revocation.reason,
                    });
                }
                // Another process may have revoked it and not yet published its CRL: then
                // this one is stale, and is rewritten.
                let crl = match self.ensure_crl(now, Depth::Full)? {
                    Some(crl) => crl,
                    None => {
                        let state = self.with_store(|store| store.advance_crl_number())?;
                        self.publish_crl(&state, now, crl_lifetime)?
                    }
                };
                Ok(Revoked {
                    serial,
                    revocation,
                    newly_revoked: false,
                    crl,
                })
            }
            RevokeOutcome::Revoked(state) => {
                let serial = normalise_serial(serial);
                let crl = self.publish_crl(&state, now, crl_lifetime)?;
                tracing::info!(serial = %serial, reason = reason.name(), "revoked");
                Ok(Revoked {
                    serial,
                    revocation: Revocation {
                        at: now,
                        reason: reason.name().into(),
                    },
                    newly_revoked: true,
                    crl,
                })
            }
        }
    }

    /// Writes a fresh CRL (next CRL number, every revoked certificate) to `crl.pem`.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (a zero or too long CRL lifetime), [`CaError::DatabaseBehindCrl`],
    /// database and I/O errors, or [`CaError::Build`].
    pub fn write_crl(
        &self,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let now = x509_time(now)?;
        crl_next_update(now, crl_lifetime)?;
        // Refuses a store older than the CRL before handing out a number.
        self.with_store(|store| inspect_crl(&self.dir, store, &self.certificate, Depth::Header))?;
        let state = self.with_store(|store| store.advance_crl_number())?;
        self.publish_crl(&state, now, crl_lifetime)
    }

    /// Signs the CRL for `state` (its number, handed out by the store together with the revoked
    /// set) and puts it in `crl.pem`, unless a CRL with a higher number is already there (it
    /// lists everything this one does): under the directory lock, so `crl.pem` never goes back.
    /// Returns the CRL now in `crl.pem`. The store was committed first, so a crash here leaves
    /// `crl.pem` behind the store, which the next command repairs.
    fn publish_crl(
        &self,
        state: &CrlState,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let next_update = crl_next_update(now, crl_lifetime)?;
        let revoked_certs = state
            .revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&hex_decode(&r.serial)),
                revocation_time: r.at,
                reason_code: r.reason.parse::<RevocationReason>().ok().and_then(|r| r.to_rcgen()),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update,
            crl_number: SerialNumber::from_slice(&positive_integer(state.number)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::PreSpecified(
                self.info.subject_key_id.as_deref().map(hex_decode).unwrap_or_default(),
            ),
        };
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(|e| CaError::build("CRL", e))?;
        let der = crl.der().clone();
        let path = self.crl_path();
        let _lock = DirLock::acquire(&self.dir)?;
        if let Err(e) = fsutil::remove_stale_temporaries(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot look for leftover temporary files");
        }
        if let Ok(newer) = read_crl_file(&path, &self.certificate, Depth::Header)?
            && newer.number.is_some_and(|n| n > state.number)
            && let Ok(newer) = read_crl_file(&path, &self.certificate, Depth::Full)?
            && newer.number.is_some_and(|n| n > state.number)
            && let Some(der) = newer.der
        {
            tracing::info!(number = state.number, "crl.pem already holds a newer CRL; kept it");
            return Ok(der);
        }
        fsutil::write_atomic(&path, pem::to_pem(pem::X509_CRL, &der).as_bytes(), fsutil::PUBLIC_MODE)
            .map_err(|e| CaError::io(path, e))?;
        Ok(der)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&self.certificate, self.key.to_key_pair()?)
            .map_err(|e| CaError::build("issuer from ca.pem", e))
    }

    /// The notAfter for a new certificate: the requested lifetime (refused past the issuer's
    /// notAfter) or the default (clamped to it). Also checks the issuer is valid now.
    fn lifetime_end(
        &self,
        now: OffsetDateTime,
        requested: Option<Duration>,
        default: Duration,
    ) -> Result<(OffsetDateTime, bool), CaError> {
        lifetime_end(now, requested, default, self.info.not_before, self.info.not_after)
    }
}

/// The notAfter for a certificate issued at `now` by an issuer valid from `issuer_not_before` to
/// `issuer_not_after`, and whether it was clamped: the `requested` lifetime (refused past the
/// issuer's notAfter) or the `default` (clamped to it). Never panics, whatever the durations.
fn lifetime_end(
    now: OffsetDateTime,
    requested: Option<Duration>,
    default: Duration,
    issuer_not_before: OffsetDateTime,
    issuer_not_after: OffsetDateTime,
) -> Result<(OffsetDateTime, bool), CaError> {
    if now < issuer_not_before || now > issuer_not_after {
        return Err(CaError::IssuerNotValid {
            time: now,
            not_before: issuer_not_before,
            not_after: issuer_not_after,
        });
    }
    match requested {
        Some(lifetime) if lifetime.is_zero() => Err(CaError::invalid("lifetime", "must be positive")),
        Some(lifetime) => {
            let outlives = |requested| CaError::OutlivesIssuer {
                requested,
                issuer_not_after,
            };
            match end_of(now, lifetime, "lifetime") {
                Ok(end) if end > issuer_not_after => Err(outlives(end)),
                Ok(end) => Ok((end, false)),
                // Past the end of X.509 time: certainly past the issuer's end too.
                Err(_) => Err(outlives(LATEST_TIME)),
            }
        }
        None => match end_of(now, default, "lifetime") {
            Ok(end) if end <= issuer_not_after => Ok((end, false)),
            _ => Ok((issuer_not_after, true)),
        },
    }
}

/// The nextUpdate of a CRL made at `now` that lives `lifetime`.
fn crl_next_update(now: OffsetDateTime, lifetime: Duration) -> Result<OffsetDateTime, CaError> {
    if lifetime.is_zero() {
        return Err(CaError::invalid("crl-lifetime", "the CRL lifetime must be positive"));
    }
    end_of(now, lifetime, "crl-lifetime")
}

/// Refuses a directory that holds a CA, or what an interrupted `init` left of one.
/// Makes a CA directory mode 0700, whatever the umask or the mode of a directory that was
/// already there (a `mkdir`ed 0755 or 0777 one); the change of an existing mode is logged as a
/// warning (on stderr in the CLI).
fn make_private_dir(dir: &Path, existed: bool) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir).map_err(|e| CaError::io(dir, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| CaError::io(dir, e))?;
        if existed {
            tracing::warn!(
                dir = %dir.display(),
                "note: the CA directory had mode {mode:04o}; it is now 0700 (only its owner may read the CA's state)"
            );
        }
    }
    Ok(())
}

fn check_free(dir: &Path) -> Result<(), CaError> {
    if dir.join(CA_CERT).symlink_metadata().is_ok() {
        return Err(CaError::AlreadyInitialised { dir: dir.into() });
    }
    for name in [CA_KEY, CHAIN, DATABASE_FILE, SQLITE_FILE, STORE_FILE, CRL] {
        if dir.join(name).symlink_metadata().is_ok() {
            return Err(CaError::UnfinishedInit {
                dir: dir.into(),
                found: name.into(),
            });
        }
    }
    Ok(())
}

/// A file name made from a common name: characters other than ASCII letters, digits, `.`, `_`
/// and `-` become `_`; leading and trailing dots are dropped. `None` if nothing is left.
fn file_name_for(name: &str) -> Option<String> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = safe.trim_matches('.');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Reads `ca.pem` and `chain.pem` of the CA in `dir` (no key needed).
///
/// # Errors
/// [`CaError::NotACa`] or PEM errors.
pub fn read_ca_certificates(dir: &Path) -> Result<(CertificateDer<'static>, Vec<CertificateDer<'static>>), CaError> {
    let cert_path = dir.join(CA_CERT);
    if !cert_path.exists() {
        return Err(CaError::NotACa { dir: dir.into() });
    }
    let certificate = pem::load_certificates(&cert_path)?
        .into_iter()
        .next()
        .ok_or_else(|| CaError::NotACa { dir: dir.into() })?;
    let chain = pem::load_certificates(&dir.join(CHAIN))?;
    Ok((certificate, chain))
}

fn ca_params(
    request: &InitRequest,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(&request.name);
    // `now` comes from x509_time, which leaves room for the backdating.
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(EARLIEST_TIME);
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = request.name_constraints();
    for dns in request.permitted_dns.iter().chain(&request.excluded_dns) {
        SubjectAltName::parse(&format!("dns:{}", dns.trim_start_matches('.')))
            .map_err(|_| CaError::invalid("permit-dns", format!("\"{dns}\" is not a DNS name or domain")))?;
    }
    let mut serial = [0u8; 16];
    random_serial(&mut serial)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn check_name(name: &str) -> Result<(), CaError> {
    if name.trim().is_empty() {
        return Err(CaError::invalid("name", "the common name must not be empty"));
    }
    if name.len() > 64 {
        return Err(CaError::invalid(
            "name",
            "the common name must be at most 64 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CaError::invalid(
            "name",
            "the common name must not contain control characters",
        ));
    }
    Ok(())
}

/// A random positive serial of 16 octets (at least 120 bits of entropy), first octet 0x01..=0x7f.
fn random_serial(out: &mut [u8; 16]) -> Result<(), CaError> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), out)
        .map_err(|_| CaError::invalid("serial", "the system random source failed"))?;
    out[0] = (out[0] & 0x7f).max(1);
    Ok(())
}

fn record(info: &CertificateInfo, profile: &str, certificate: &CertificateDer<'_>, now: OffsetDateTime) -> Record {
    Record {
        serial: info.serial.clone(),
        subject: info.subject.clone(),
        sans: info.sans.clone(),
        profile: profile.into(),
        not_before: info.not_before,
        not_after: info.not_after,
        issued_at: now,
        revoked: None,
        certificate: pem::to_pem(pem::CERTIFICATE, certificate),
    }
}

fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, CaError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::malformed("ca.pem", format!("cannot be parsed: {}", crate::pki::describe_x509(&e))))?;
    Ok(parsed.public_key().raw.to_vec())
}

/// The minimal big-endian content octets of a positive DER INTEGER.
fn positive_integer(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
    let mut out = bytes.get(start..).unwrap_or(&bytes).to_vec();
    if out.first().is_some_and(|b| b & 0x80 != 0) {
        out.insert(0, 0);
    }
    out
}

fn hex_decode(text: &str) -> Vec<u8> {
    let padded = if text.len() % 2 == 1 {
        format!("0{text}")
    } else {
        text.to_string()
    };
    (0..padded.len() / 2)
        .filter_map(|i| {
            padded
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn times_a_certificate_cannot_carry_are_errors_not_panics() {
        for now in [
            OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT),
            datetime!(9999-12-31 23:00:00 -05:00),
            EARLIEST_TIME,
        ] {
            assert!(
                matches!(x509_time(now), Err(CaError::InvalidRequest { field: "time", .. })),
                "{now}"
            );
        }
        assert_eq!(
            x509_time(datetime!(2030-01-01 12:00:00.75 +02:00)).unwrap(),
            datetime!(2030-01-01 10:00:00 UTC)
        );
        let now = at(1_900_000_000);
        for lifetime in [
            Duration::MAX,
            Duration::from_secs(u64::MAX / 2),
            Duration::from_secs(9_000 * 365 * 86_400),
        ] {
            let err = end_of(now, lifetime, "lifetime").unwrap_err();
            assert!(err.to_string().contains("the latest time X.509 can express"), "{err}");
        }
        assert!(crl_next_update(now, Duration::MAX).is_err());
        assert!(crl_next_update(now, Duration::ZERO).is_err());
    }

    proptest! {
        #[test]
        fn a_lifetime_is_granted_clamped_or_refused_never_a_panic(
            now in -62_000_000_000i64..253_402_300_000,
            requested in proptest::option::of(any::<u64>()),
            nanos in 0u32..1_000_000_000,
            default in any::<u64>(),
            issuer_start in 0i64..4_000_000_000,
            issuer_life in 0i64..8_000_000_000,
        ) {
            let Ok(now) = OffsetDateTime::from_unix_timestamp(now) else { return Ok(()) };
            let requested = requested.map(|s| Duration::new(s, nanos));
            let not_before = at(issuer_start);
            let not_after = at(issuer_start + issuer_life);
            match lifetime_end(now, requested, Duration::from_secs(default), not_before, not_after) {
                Ok((end, clamped)) => {
                    prop_assert!(end <= not_after && end >= now);
                    prop_assert!(!clamped || requested.is_none());
                    if let Some(lifetime) = requested {
                        prop_assert_eq!(Duration::try_from(end - now).ok(), Some(lifetime));
                    }
                }
                Err(CaError::IssuerNotValid { .. }) => prop_assert!(now < not_before || now > not_after),
                Err(CaError::OutlivesIssuer { .. }) => prop_assert!(requested.is_some()),
                Err(CaError::InvalidRequest { field: "lifetime", .. }) => {
                    prop_assert_eq!(requested, Some(Duration::ZERO))
                }
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }

        #[test]
        fn a_crl_lifetime_is_granted_or_refused(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let now = at(1_900_000_000);
            let lifetime = Duration::new(secs, nanos);
            match crl_next_update(now, lifetime) {
                Ok(next) => prop_assert!(next > now && next <= LATEST_TIME),
                Err(CaError::InvalidRequest { field: "crl-lifetime", .. }) => {}
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }

        #[test]
        fn output_names_are_never_empty(out in "[a-z./]{0,12}", name in "[ -~]{0,12}") {
            let dir = Path::new("/nonexistent-ca");
            let outs = [None, Some(Path::new(&out))];
            for out in outs {
                if let Ok(prefix) = CertificateAuthority::output_prefix(dir, out, &name) {
                    let file = prefix.file_name().and_then(|f| f.to_str()).unwrap_or("");
                    prop_assert!(!file.is_empty() && !file.ends_with('.') && file != "..", "{prefix:?}");
                }
            }
        }
    }

    #[test]
    fn output_prefixes_are_derived_sensibly() {
        let dir = Path::new("/ca");
        let prefix = |out: Option<&str>, name: &str| {
            CertificateAuthority::output_prefix(dir, out.map(Path::new), name).map(|p| p.display().to_string())
        };
        assert_eq!(prefix(None, "www.example.org").unwrap(), "/ca/issued/www.example.org");
        assert_eq!(prefix(None, "www.example.org.").unwrap(), "/ca/issued/www.example.org");
        assert_eq!(prefix(None, "Release signer").unwrap(), "/ca/issued/Release_signer");
        assert_eq!(prefix(None, ".hidden").unwrap(), "/ca/issued/hidden");
        assert_eq!(prefix(Some("out/"), "alice").unwrap(), "out/alice");
        assert_eq!(prefix(Some("name."), "alice").unwrap(), "name");
        assert_eq!(prefix(Some("d/name.."), "alice").unwrap(), "d/name");
        assert_eq!(prefix(Some("www.pem"), "alice").unwrap(), "www");
        assert_eq!(prefix(Some("www.chain.pem"), "alice").unwrap(), "www");
        assert_eq!(prefix(Some("www.key"), "alice").unwrap(), "www");
        assert_eq!(prefix(Some("www.example.org"), "alice").unwrap(), "www.example.org");
        assert_eq!(prefix(Some("/"), "alice").unwrap(), "/alice");
        for (out, name) in [
            (None, "..."),
            (None, "."),
            (Some(""), "a"),
            (Some("d/..."), "a"),
            (Some(".pem"), "a"),
            (Some("out/"), ".."),
        ] {
            let err = prefix(out, name).unwrap_err();
            assert!(
                matches!(err, CaError::InvalidRequest { field: "--out", .. }),
                "{out:?} {name:?}: {err}"
            );
        }
    }
}
