//! A certificate authority: the directory holding the CA's certificate, key, chain and CRL, its
//! state store, and opening or creating one (`ca init`, `ca init --parent`).
//!
//! ```text
//! DIR/            0700
//!   ca.pem        this CA's certificate
//!   ca.key        its private key, PKCS#8 (encrypted unless --no-passphrase), 0600
//!   chain.pem     this CA's certificate followed by its issuers, up to and including the root
//!   store.json    which store holds the CA's state (sqlite or postgres), written by `init`
//!   ca.db         the SQLite store (see `store`), written by `init` before ca.pem
//!   crl.pem       the current CRL
//!   urls.json     the CRL, OCSP and caIssuers URLs issued certificates carry (optional; see
//!                 `distribution`)
//!   issued/       default home of issued certificates and keys
//! ```
//!
//! `ca.pem` is written last by `init`: its presence marks a complete CA, whose store must then
//! exist. Issuing leaves is in `issue.rs`, revocation and CRLs in `revocation.rs`, CSRs in
//! `csr.rs`.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, NameConstraints, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use time::macros::datetime;

use super::distribution::{DistributionUrls, URLS_FILE};
use super::legacy::DATABASE_FILE;
use super::record::Record;
use super::store::{self, ListFilter, Location, SQLITE_FILE, STORE_FILE, Store};
use super::{CaError, check};
use crate::fsutil;
use crate::pki::{self, CertificateInfo, KeyAlgorithm, Passphrase, PkiError, PrivateKey, Serial, SubjectAltName, pem};

pub(super) const CA_CERT: &str = "ca.pem";
pub(super) const CA_KEY: &str = "ca.key";
pub(super) const CHAIN: &str = "chain.pem";
pub(super) const CRL: &str = "crl.pem";
pub(super) const ISSUED: &str = "issued";

/// Certificates start this long before the moment of issuance, to tolerate clock skew.
pub(super) const BACKDATE: time::Duration = time::Duration::seconds(60);

/// The earliest time a certificate or CRL can carry (GeneralizedTime has four year digits,
/// RFC 5280 §4.1.2.5.2).
pub const EARLIEST_TIME: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
/// The latest time a certificate or CRL can carry (RFC 5280 §4.1.2.5.2).
pub const LATEST_TIME: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

/// `now` as a certificate carries it: UTC, whole seconds, within [`EARLIEST_TIME`] (plus the
/// backdating) and [`LATEST_TIME`].
pub(super) fn x509_time(now: OffsetDateTime) -> Result<OffsetDateTime, CaError> {
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
pub(super) fn end_of(
    start: OffsetDateTime,
    lifetime: Duration,
    field: &'static str,
) -> Result<OffsetDateTime, CaError> {
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
    /// The URLs the certificates the new CA issues will carry (none by default; see
    /// [`DistributionUrls`]).
    pub urls: DistributionUrls,
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
            urls: DistributionUrls::default(),
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
        self.urls.validate()?;
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

/// An opened CA, ready to sign.
pub struct CertificateAuthority {
    pub(super) dir: PathBuf,
    pub(super) certificate: CertificateDer<'static>,
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) info: CertificateInfo,
    pub(super) key: PrivateKey,
    pub(super) store: std::sync::Mutex<Box<dyn Store>>,
    pub(super) urls: DistributionUrls,
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
        request.urls.validate()?;
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
        Self::create(dir, certificate.clone(), vec![certificate], key, passphrase, request)
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
        request.urls.validate()?;
        let now = x509_time(now)?;
        check::init_request(request)?;
        let path_len = child_path_len(request.path_len, self.info.path_len, &self.info.subject)?;
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
        self.urls.apply(&mut params)?;
        self.ensure_crl(now, super::crl_file::Depth::Header)?;
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
        Self::create(dir, certificate, chain, key, passphrase, request)
    }

    fn create(
        dir: &Path,
        certificate: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKey,
        passphrase: Option<&Passphrase>,
        request: &InitRequest,
    ) -> Result<Self, CaError> {
        let location = &request.store;
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
            if !request.urls.is_empty() {
                request.urls.save(dir)?;
                written.push(dir.join(URLS_FILE));
            }
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
            urls: request.urls.clone(),
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
        let urls = DistributionUrls::load(dir)?;
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
            urls,
        })
    }

    /// Runs `f` with this CA's store.
    pub(super) fn with_store<T>(&self, f: impl FnOnce(&mut dyn Store) -> Result<T, CaError>) -> Result<T, CaError> {
        let mut guard = self.store.lock().map_err(|_| CaError::Store {
            store: self.dir.display().to_string(),
            reason: "an earlier operation on the store failed midway".into(),
        })?;
        // A lost PostgreSQL connection (server restarted, backend terminated) is replaced first.
        guard.ensure_connected()?;
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

    /// The URLs the certificates this CA issues carry (read from `DIR/urls.json` when it was
    /// opened; [`DistributionUrls::save`] changes them for the CAs opened afterwards).
    pub fn urls(&self) -> &DistributionUrls {
        &self.urls
    }

    /// The path of the CA's current CRL.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL)
    }

    /// The CA's subject key identifier (RFC 5280 §4.2.1.2), empty when its certificate has none.
    pub(super) fn subject_key_id(&self) -> Result<Vec<u8>, CaError> {
        match &self.info.subject_key_id {
            None => Ok(Vec::new()),
            Some(text) => pki::from_hex(text).ok_or_else(|| {
                CaError::Pki(PkiError::malformed(
                    self.dir.join(CA_CERT).display().to_string(),
                    "has an unreadable subject key identifier",
                ))
            }),
        }
    }

    pub(super) fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&self.certificate, self.key.to_key_pair()?)
            .map_err(|e| CaError::build("issuer from ca.pem", e))
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
    for name in [CA_KEY, CHAIN, DATABASE_FILE, SQLITE_FILE, STORE_FILE, CRL, URLS_FILE] {
        if dir.join(name).symlink_metadata().is_ok() {
            return Err(CaError::UnfinishedInit {
                dir: dir.into(),
                found: name.into(),
            });
        }
    }
    Ok(())
}

/// Reads `ca.pem` and `chain.pem` of the CA in `dir` (no key needed).
///
/// # Errors
/// [`CaError::NotACa`] when `DIR/ca.pem` does not exist; [`CaError::Io`] when it cannot be
/// looked at (permission denied on the directory, say: that is not "no CA"); PEM errors.
pub fn read_ca_certificates(dir: &Path) -> Result<(CertificateDer<'static>, Vec<CertificateDer<'static>>), CaError> {
    let cert_path = dir.join(CA_CERT);
    match std::fs::metadata(&cert_path) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(CaError::NotACa { dir: dir.into() });
        }
        Err(e) => return Err(CaError::io(cert_path, e)),
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
    params.serial_number = Some(serial_number(&Serial::random()?));
    Ok(params)
}

pub(super) fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

pub(super) fn check_name(name: &str) -> Result<(), CaError> {
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

pub(super) fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, CaError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::malformed("ca.pem", format!("cannot be parsed: {}", crate::pki::describe_x509(&e))))?;
    Ok(parsed.public_key().raw.to_vec())
}

/// The path length constraint of a CA below a parent with path length `parent` (`None`:
/// unlimited): the `requested` one, which must be below the parent's, or else the parent's minus
/// one (RFC 5280 §4.2.1.9).
///
/// # Errors
/// [`CaError::Unusable`] when the parent has path length 0 (no CA may follow it),
/// [`CaError::InvalidRequest`] (field `path-len`) for a request not below the parent's.
fn child_path_len(requested: Option<u8>, parent: Option<u32>, parent_subject: &str) -> Result<Option<u8>, CaError> {
    if parent == Some(0) {
        return Err(CaError::Unusable {
            what: "the intermediate CA".into(),
            reason: format!(
                "the parent CA {parent_subject} has path length 0: no CA may follow it, so Tessera's verifier would \
                 refuse everything the new CA issued"
            ),
        });
    }
    match (requested, parent) {
        (Some(want), Some(parent)) if u32::from(want) >= parent => Err(CaError::invalid(
            "path-len",
            format!("must be below the parent's path length {parent}"),
        )),
        (Some(want), _) => Ok(Some(want)),
        (None, Some(parent)) => Ok(u8::try_from(parent.saturating_sub(1)).ok()),
        (None, None) => Ok(None),
    }
}

/// The rcgen form of a serial.
pub(super) fn serial_number(serial: &Serial) -> SerialNumber {
    SerialNumber::from_slice(serial.as_octets())
}

impl From<pki::RandomFailed> for CaError {
    fn from(_: pki::RandomFailed) -> Self {
        Self::invalid("serial", "the system random source failed")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    }

    #[test]
    fn path_lengths_are_inherited_or_must_shrink() {
        // Unlimited parent: as requested, or unlimited.
        assert_eq!(child_path_len(None, None, "CN=p").unwrap(), None);
        assert_eq!(child_path_len(Some(3), None, "CN=p").unwrap(), Some(3));
        // Limited parent: one less by default, or a smaller request.
        assert_eq!(child_path_len(None, Some(2), "CN=p").unwrap(), Some(1));
        assert_eq!(child_path_len(None, Some(1), "CN=p").unwrap(), Some(0));
        assert_eq!(child_path_len(Some(0), Some(2), "CN=p").unwrap(), Some(0));
        // A parent constraint too large for u8 still inherits (unlimited beyond u8).
        assert_eq!(child_path_len(None, Some(300), "CN=p").unwrap(), None);
        for (want, parent) in [(2, 2), (5, 2)] {
            let err = child_path_len(Some(want), Some(parent), "CN=p").unwrap_err();
            assert!(
                matches!(&err, CaError::InvalidRequest { field: "path-len", reason } if reason == &format!("must be below the parent's path length {parent}")),
                "{err}"
            );
        }
        for want in [None, Some(0)] {
            let err = child_path_len(want, Some(0), "CN=Root").unwrap_err();
            assert!(matches!(err, CaError::Unusable { .. }), "{err}");
            assert!(
                err.to_string().contains("the parent CA CN=Root has path length 0"),
                "{err}"
            );
        }
    }

    #[test]
    fn an_intermediate_inherits_its_parents_path_length_at_a_fixed_time() {
        let now = datetime!(2030-06-01 12:00:00 UTC);
        let dir = tempfile::tempdir().unwrap();
        let mut request = InitRequest::new("Root");
        request.path_len = Some(2);
        let root = CertificateAuthority::init(&dir.path().join("root"), &request, None, now).unwrap();
        assert_eq!(root.info().path_len, Some(2));
        assert_eq!(root.info().not_before, now - BACKDATE);
        let middle = root
            .init_intermediate(&dir.path().join("mid"), &InitRequest::new("Mid"), None, now)
            .unwrap();
        assert_eq!(middle.info().path_len, Some(1));
        // 5 years by default, well inside the root's 10.
        assert_eq!(middle.info().not_after, now + time::Duration::days(5 * 365));
        let low = middle
            .init_intermediate(&dir.path().join("low"), &InitRequest::new("Low"), None, now)
            .unwrap();
        assert_eq!(low.info().path_len, Some(0));
        let err = low
            .init_intermediate(&dir.path().join("none"), &InitRequest::new("None"), None, now)
            .unwrap_err();
        assert!(matches!(err, CaError::Unusable { .. }), "{err}");
    }
}
