//! Issuing leaf certificates (`ca issue`): the request, the certificate's lifetime (clamped to
//! the issuer's), signing under a fresh unique serial and recording it, the output files
//! `PREFIX.pem`, `PREFIX.key`, `PREFIX.chain.pem` and the repair of an interrupted write.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, IsCa, SerialNumber};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::authority::{
    BACKDATE, EARLIEST_TIME, ISSUED, LATEST_TIME, check_name, common_name, end_of, serial_number, spki_of, x509_time,
};
use super::profile::san_to_rcgen;
use super::record::Record;
use super::store::{DirLock, ListFilter, WriteAccess};
use super::{CaError, CertificateAuthority, Profile, check, csr};
use crate::fsutil;
use crate::pki::{CertificateInfo, KeyAlgorithm, Passphrase, PkiError, PrivateKey, Serial, SubjectAltName, pem};

/// How to issue a leaf certificate (`ca issue`).
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Server, client or code-signing.
    pub profile: Profile,
    /// The subject's common name (for [`Profile::Server`] and an IP address, the subject is
    /// empty and the address is the subjectAltName, RFC 5280 §4.2.1.6).
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
    pub serial: Serial,
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

impl CertificateAuthority {
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
    ///   `_` and `-` replaced by `_`, leading dots and dashes and trailing dots removed (a file
    ///   name never starts with `-`);
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

    /// `ca issue` as one call: gets `PREFIX` ready ([`CertificateAuthority::clear_outputs`]:
    /// `PREFIX.pem` must not exist, and files an interrupted issue left there are removed, each
    /// reported to `on_leftover`) before anything is signed or recorded, then issues
    /// ([`CertificateAuthority::issue`]) and writes the files ([`Issued::write`], the key
    /// encrypted with `key_passphrase` when one is given). A certificate is thus never recorded
    /// for an output that was taken beforehand.
    ///
    /// # Errors
    /// [`CaError::OutputExists`] when a file at `PREFIX` is in the way before issuing; as
    /// [`CertificateAuthority::clear_outputs`], [`CertificateAuthority::issue`] and
    /// [`Issued::write`] otherwise.
    pub fn issue_to(
        &self,
        request: &IssueRequest,
        prefix: &Path,
        key_passphrase: Option<&Passphrase>,
        now: OffsetDateTime,
        on_leftover: &mut dyn FnMut(&Leftover),
    ) -> Result<(Issued, IssuedFiles), CaError> {
        let leftovers = self
            .clear_outputs(prefix, request.csr.is_none(), key_passphrase)
            .map_err(|e| match e {
                CaError::Pki(PkiError::AlreadyExists { path }) => CaError::OutputExists { path },
                other => other,
            })?;
        for leftover in &leftovers {
            on_leftover(leftover);
        }
        let issued = self.issue(request, now)?;
        let files = issued.write(prefix, key_passphrase)?;
        Ok((issued, files))
    }

    /// Signs a certificate with a fresh random serial and records it (`issue`); on the rare
    /// serial already taken, signs again with another.
    pub(super) fn sign_and_record(
        &self,
        profile: &str,
        now: OffsetDateTime,
        sign: impl FnMut(SerialNumber) -> Result<CertificateDer<'static>, CaError>,
    ) -> Result<CertificateDer<'static>, CaError> {
        self.sign_and_record_with(profile, now, sign, &mut |record| {
            self.with_store(|store| store.issue(record, WriteAccess::granted()))
        })
    }

    /// As [`CertificateAuthority::sign_and_record`], recording through `record_with` (false: the
    /// serial is taken).
    fn sign_and_record_with(
        &self,
        profile: &str,
        now: OffsetDateTime,
        mut sign: impl FnMut(SerialNumber) -> Result<CertificateDer<'static>, CaError>,
        record_with: &mut dyn FnMut(&Record) -> Result<bool, CaError>,
    ) -> Result<CertificateDer<'static>, CaError> {
        for _ in 0..16 {
            let certificate = sign(serial_number(&Serial::random()?))?;
            let info = CertificateInfo::from_der(&certificate)?;
            let record = record(&info, profile, &certificate, now);
            if record_with(&record)? {
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
        self.issue_recorded(request, now, &mut |record| {
            self.with_store(|store| store.issue(record, WriteAccess::granted()))
        })
    }

    /// [`CertificateAuthority::issue`], recording the certificate through `record_with` instead
    /// of the CA's own store (`ca serve`: `AcmeStore::order_finish` records it and makes its
    /// order valid in one transaction). `record_with` returns false when the serial is taken
    /// (the certificate is then signed again with another).
    pub(crate) fn issue_recorded(
        &self,
        request: &IssueRequest,
        now: OffsetDateTime,
        record_with: &mut dyn FnMut(&Record) -> Result<bool, CaError>,
    ) -> Result<Issued, CaError> {
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
        params.distinguished_name = if request.profile == Profile::Server && request.name.parse::<IpAddr>().is_ok() {
            // An IP address goes in the subjectAltName only, with an empty subject (rcgen then
            // marks the subjectAltName critical, RFC 5280 §4.2.1.6): OpenSSL reads a common name
            // such as `127.0.0.1` as a host name and checks it against the CA's DNS name
            // constraints, so it would refuse the certificate under `--permit-dns`.
            DistinguishedName::new()
        } else {
            common_name(&request.name)
        };
        params.not_before = now
            .checked_sub(BACKDATE)
            .unwrap_or(EARLIEST_TIME)
            .max(self.info.not_before);
        params.not_after = not_after;
        params.subject_alt_names = sans.iter().map(san_to_rcgen).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = request.profile.key_usages();
        params.extended_key_usages = request.profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;
        self.urls.apply(&mut params)?;

        let issuer = self.issuer()?;
        self.ensure_crl(now, super::crl_file::Depth::Header)?;
        let key = match &csr {
            Some(_) => None,
            None => Some(PrivateKey::generate(algorithm)?),
        };
        let key_pair = key.as_ref().map(PrivateKey::to_key_pair).transpose()?;
        let sign = |serial| {
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
        };
        let certificate = self.sign_and_record_with(request.profile.name(), now, sign, record_with)?;
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

    /// The notAfter for a new certificate: the requested lifetime (refused past the issuer's
    /// notAfter) or the default (clamped to it). Also checks the issuer is valid now.
    pub(super) fn lifetime_end(
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

/// A file name made from a common name: characters other than ASCII letters, digits, `.`, `_`
/// and `-` become `_`; leading and trailing dots are dropped. `None` if nothing is left.
pub(super) fn file_name_for(name: &str) -> Option<String> {
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
    // No leading `-` either: a file named `-x` reads as an option (or stdin) to most tools.
    let trimmed = safe.trim_start_matches(['.', '-']).trim_end_matches('.');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    #![allow(clippy::panic)]
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
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
    fn lifetimes_are_clamped_to_the_issuer_at_a_fixed_time() {
        let issuer_start = datetime!(2030-01-01 00:00:00 UTC);
        let issuer_end = datetime!(2030-12-31 00:00:00 UTC);
        let now = datetime!(2030-12-01 00:00:00 UTC);
        let days = |n: u64| Duration::from_secs(n * 86_400);
        let end = |requested, default| lifetime_end(now, requested, default, issuer_start, issuer_end);
        // The default fits: granted as is.
        assert_eq!(end(None, days(10)).unwrap(), (now + time::Duration::days(10), false));
        // The default does not fit: shortened to end with the issuer, and said so.
        assert_eq!(end(None, days(90)).unwrap(), (issuer_end, true));
        // A requested lifetime that fits, exactly to the issuer's end.
        assert_eq!(end(Some(days(30)), days(90)).unwrap(), (issuer_end, false));
        // One that does not is refused, never shortened.
        match end(Some(days(31)), days(90)) {
            Err(CaError::OutlivesIssuer {
                requested,
                issuer_not_after,
            }) => {
                assert_eq!(requested, now + time::Duration::days(31));
                assert_eq!(issuer_not_after, issuer_end);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            end(Some(Duration::ZERO), days(90)),
            Err(CaError::InvalidRequest { field: "lifetime", .. })
        ));
        // Outside the issuer's validity nothing is issued.
        for at in [
            issuer_start - time::Duration::seconds(1),
            issuer_end + time::Duration::seconds(1),
        ] {
            assert!(matches!(
                lifetime_end(at, None, days(1), issuer_start, issuer_end),
                Err(CaError::IssuerNotValid { .. })
            ));
        }
    }

    #[test]
    fn an_issued_leaf_ends_with_its_ca_when_the_default_would_outlive_it() {
        let start = datetime!(2030-01-01 00:00:00 UTC);
        let dir = tempfile::tempdir().unwrap();
        let mut request = crate::ca::InitRequest::new("Short Root");
        request.lifetime = Some(Duration::from_secs(30 * 86_400));
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &request, None, start).unwrap();
        let now = start + time::Duration::days(1);
        let issued = ca.issue(&IssueRequest::new(Profile::Server, "www.test"), now).unwrap();
        assert!(issued.clamped);
        assert_eq!(issued.info.not_after, ca.info().not_after);
        assert_eq!(issued.info.not_before, now - BACKDATE);
        assert_eq!(issued.info.sans, [SubjectAltName::Dns("www.test".into())]);
        let err = ca
            .issue(
                &IssueRequest::new(Profile::Client, "c").with_lifetime(Duration::from_secs(60 * 86_400)),
                now,
            )
            .unwrap_err();
        assert!(matches!(err, CaError::OutlivesIssuer { .. }), "{err}");
    }

    #[test]
    fn issue_to_reserves_the_outputs_before_recording() {
        let now = datetime!(2030-01-01 00:00:00 UTC);
        let dir = tempfile::tempdir().unwrap();
        let ca =
            CertificateAuthority::init(&dir.path().join("ca"), &crate::ca::InitRequest::new("R"), None, now).unwrap();
        let count = |ca: &CertificateAuthority| {
            let mut n = 0;
            ca.list(&ListFilter::all(now), &mut |_| {
                n += 1;
                Ok(())
            })
            .unwrap();
            n
        };
        let prefix = dir.path().join("out/www");
        let request = IssueRequest::new(Profile::Server, "www.test");
        let mut leftovers = Vec::new();
        let (issued, files) = ca
            .issue_to(&request, &prefix, None, now, &mut |l| leftovers.push(l.clone()))
            .unwrap();
        assert!(leftovers.is_empty());
        assert_eq!(files.certificate, dir.path().join("out/www.pem"));
        assert!(files.key.as_ref().is_some_and(|k| k.exists()) && files.chain.exists());
        assert_eq!(issued.info.subject, "CN=www.test");
        assert_eq!(count(&ca), 1);
        // PREFIX.pem is taken: refused before anything is signed or recorded.
        let err = ca.issue_to(&request, &prefix, None, now, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, CaError::OutputExists { path } if *path == files.certificate),
            "{err}"
        );
        assert_eq!(count(&ca), 1, "nothing recorded");
        // A key and chain an interrupted issue left are removed, reported, and issuing goes on.
        std::fs::remove_file(&files.certificate).unwrap();
        let (_, again) = ca
            .issue_to(&request, &prefix, None, now, &mut |l| leftovers.push(l.clone()))
            .unwrap();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        assert!(leftovers.iter().all(|l| l.serial == issued.info.serial));
        assert!(again.certificate.exists());
        assert_eq!(count(&ca), 2);
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
