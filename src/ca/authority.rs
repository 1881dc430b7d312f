//! A certificate authority: a directory holding the CA's certificate, key, chain, issuance
//! database and CRL, and the operations on it (init, issue, revoke, CRL).
//!
//! ```text
//! DIR/            0700
//!   ca.pem        this CA's certificate
//!   ca.key        its private key, PKCS#8 (encrypted unless --no-passphrase), 0600
//!   chain.pem     this CA's certificate followed by its issuers, up to and including the root
//!   db.json       the issuance database (see `Database`)
//!   db.lock       the lock that serialises changes to db.json
//!   crl.pem       the current CRL
//!   issued/       default home of issued certificates and keys
//! ```

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams, CidrSubnet,
    DistinguishedName, DnType, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer};
use time::OffsetDateTime;

use super::database::{Database, Record, Revocation, normalise_serial};
use super::revocation::RevocationReason;
use super::{CaError, Profile, SubjectAltName};
use crate::fsutil;
use crate::pki::{
    self, CertificateInfo, KeyAlgorithm, Passphrase, PkiError, PrivateKey, TrustStore, VerifyRequest, pem,
};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CHAIN: &str = "chain.pem";
const CRL: &str = "crl.pem";
const ISSUED: &str = "issued";

/// Certificates start this long before the moment of issuance, to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(60);

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
    /// Permitted e-mail domains or addresses (name constraints).
    pub permitted_email: Vec<String>,
    /// Excluded DNS subtrees (name constraints).
    pub excluded_dns: Vec<String>,
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
        }
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

impl Issued {
    /// Writes `PREFIX.pem`, `PREFIX.key` (0600, encrypted if a passphrase is given) and
    /// `PREFIX.chain.pem`. Existing files are never overwritten; on failure nothing is left.
    ///
    /// # Errors
    /// [`CaError::Pki`] with [`PkiError::AlreadyExists`] when a target exists, or I/O errors.
    pub fn write(&self, prefix: &Path, key_passphrase: Option<&Passphrase>) -> Result<IssuedFiles, CaError> {
        let with_suffix = |suffix: &str| {
            let mut name = prefix.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let files = IssuedFiles {
            certificate: with_suffix(".pem"),
            key: self.key.as_ref().map(|_| with_suffix(".key")),
            chain: with_suffix(".chain.pem"),
        };
        if let Some(parent) = files.certificate.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CaError::io(parent, e))?;
        }
        for path in std::iter::once(&files.certificate)
            .chain(files.key.iter())
            .chain([&files.chain])
        {
            if path.exists() {
                return Err(PkiError::AlreadyExists { path: path.clone() }.into());
            }
        }
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            if let (Some(key), Some(path)) = (&self.key, &files.key) {
                key.save(path, key_passphrase)?;
                written.push(path.clone());
            }
            create_public(
                &files.certificate,
                pem::to_pem(pem::CERTIFICATE, &self.certificate).as_bytes(),
            )?;
            written.push(files.certificate.clone());
            create_public(&files.chain, pem::certificates_to_pem(&self.chain).as_bytes())?;
            Ok(())
        })();
        if let Err(e) = result {
            for path in written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
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
#[derive(Debug)]
pub struct CertificateAuthority {
    dir: PathBuf,
    certificate: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    info: CertificateInfo,
    key: PrivateKey,
}

impl CertificateAuthority {
    /// Creates a self-signed root CA in `dir` (created 0700 if absent). The key is encrypted
    /// with `passphrase` when one is given.
    ///
    /// # Errors
    /// [`CaError::AlreadyInitialised`], [`CaError::InvalidRequest`], I/O errors.
    pub fn init(
        dir: &Path,
        request: &InitRequest,
        passphrase: Option<&Passphrase>,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        check_name(&request.name)?;
        let lifetime = request.lifetime.unwrap_or(Duration::from_secs(10 * 365 * 86_400));
        let key = PrivateKey::generate(request.key_algorithm)?;
        let key_pair = key.to_key_pair()?;
        let mut params = ca_params(request, now, now + lifetime)?;
        params.is_ca = IsCa::Ca(match request.path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| CaError::build("CA certificate", e))?;
        let certificate = cert.der().clone();
        Self::create(dir, certificate.clone(), vec![certificate], key, passphrase)
    }

    /// Creates an intermediate CA in `dir`, issued (and recorded) by `self`.
    ///
    /// # Errors
    /// As [`CertificateAuthority::init`]; also [`CaError::Refused`] when `self`'s path length
    /// forbids another CA below it, [`CaError::OutlivesIssuer`].
    pub fn init_intermediate(
        &self,
        dir: &Path,
        request: &InitRequest,
        passphrase: Option<&Passphrase>,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        check_name(&request.name)?;
        if self.info.path_len == Some(0) {
            return Err(CaError::Refused(PkiError::PathLenExceeded));
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
        if dir.join(CA_CERT).exists() {
            return Err(CaError::AlreadyInitialised { dir: dir.into() });
        }
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
        let mut locked = Database::lock(&self.dir)?;
        params.serial_number = Some(unique_serial(&locked.db)?);
        let cert = params
            .signed_by(&key_pair, &self.issuer()?)
            .map_err(|e| CaError::build("intermediate CA certificate", e))?;
        let certificate = cert.der().clone();
        let info = CertificateInfo::from_der(&certificate)?;
        locked.db.records.push(record(&info, "intermediate", &certificate, now));
        locked.commit()?;
        drop(locked);
        let mut chain = vec![certificate.clone()];
        chain.extend(self.chain.iter().cloned());
        Self::create(dir, certificate, chain, key, passphrase)
    }

    fn create(
        dir: &Path,
        certificate: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKey,
        passphrase: Option<&Passphrase>,
    ) -> Result<Self, CaError> {
        if dir.join(CA_CERT).exists() {
            return Err(CaError::AlreadyInitialised { dir: dir.into() });
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CaError::io(dir, e))?;
        let key_path = dir.join(CA_KEY);
        key.save(&key_path, passphrase)?;
        let result = (|| {
            fsutil::write_atomic(
                &dir.join(CHAIN),
                pem::certificates_to_pem(&chain).as_bytes(),
                fsutil::PUBLIC_MODE,
            )
            .map_err(|e| CaError::io(dir.join(CHAIN), e))?;
            // ca.pem last: its presence marks a complete CA directory.
            create_public(
                &dir.join(CA_CERT),
                pem::to_pem(pem::CERTIFICATE, &certificate).as_bytes(),
            )
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&key_path);
            let _ = std::fs::remove_file(dir.join(CHAIN));
            return Err(e);
        }
        let info = CertificateInfo::from_der(&certificate)?;
        Ok(Self {
            dir: dir.into(),
            certificate,
            chain,
            info,
            key,
        })
    }

    /// Opens the CA in `dir`, decrypting its key with `passphrase` if it is encrypted.
    ///
    /// # Errors
    /// [`CaError::NotACa`], [`PkiError::PassphraseRequired`], [`PkiError::WrongPassphrase`], …
    pub fn open(dir: &Path, passphrase: Option<&Passphrase>) -> Result<Self, CaError> {
        let (certificate, chain) = read_ca_certificates(dir)?;
        let key = PrivateKey::load(&dir.join(CA_KEY), passphrase)?;
        let info = CertificateInfo::from_der(&certificate)?;
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
        })
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

    /// The default output prefix for a certificate with this common name: `DIR/issued/<name>`.
    pub fn default_prefix(&self, name: &str) -> PathBuf {
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
        self.dir.join(ISSUED).join(safe.trim_start_matches('.'))
    }

    /// Issues a leaf certificate. Before anything is handed out, the new certificate is checked
    /// through [`TrustStore::verify`] against this CA's own chain for the profile's usage, so a
    /// certificate that breaks a name constraint or a path length is refused; then it is
    /// recorded in the database (under its lock, with a fresh unique serial).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`], [`CaError::BadCsr`], [`CaError::OutlivesIssuer`],
    /// [`CaError::IssuerNotValid`], [`CaError::Refused`], I/O errors.
    pub fn issue(&self, request: &IssueRequest, now: OffsetDateTime) -> Result<Issued, CaError> {
        check_name(&request.name)?;
        let csr = request.csr.as_deref().map(parse_csr).transpose()?;
        let mut sans = request.sans.clone();
        if sans.is_empty()
            && let Some(csr) = &csr
        {
            sans = csr_sans(csr);
        }
        if request.profile == Profile::Server {
            // A server's common name is also one of its names, as TLS clients only look at SANs.
            match SubjectAltName::parse(&request.name) {
                Ok(san @ (SubjectAltName::Dns(_) | SubjectAltName::Ip(_))) if !sans.contains(&san) => {
                    sans.insert(0, san);
                }
                Ok(SubjectAltName::Dns(_) | SubjectAltName::Ip(_)) => {}
                _ if sans.is_empty() => {
                    return Err(CaError::invalid(
                        "san",
                        format!(
                            "a server certificate needs a DNS name or IP address, and {:?} is neither; add --san",
                            request.name
                        ),
                    ));
                }
                _ => {}
            }
        }
        let default_lifetime = request.profile.default_lifetime();
        let (not_after, clamped) = self.lifetime_end(now, request.lifetime, default_lifetime)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&request.name);
        params.not_before = (now - BACKDATE).max(self.info.not_before);
        params.not_after = not_after;
        params.subject_alt_names = sans.iter().map(SubjectAltName::to_rcgen).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = request.profile.key_usages();
        params.extended_key_usages = request.profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;

        let issuer = self.issuer()?;
        let mut locked = Database::lock(&self.dir)?;
        params.serial_number = Some(unique_serial(&locked.db)?);
        let (cert, key) = match &csr {
            Some(csr) => (
                params
                    .signed_by(&csr.public_key, &issuer)
                    .map_err(|e| CaError::build("certificate", e))?,
                None,
            ),
            None => {
                let algorithm = request.key_algorithm.unwrap_or(match request.profile {
                    Profile::CodeSigning => KeyAlgorithm::Ed25519,
                    Profile::Server | Profile::Client => KeyAlgorithm::P256,
                });
                let key = PrivateKey::generate(algorithm)?;
                let cert = params
                    .signed_by(&key.to_key_pair()?, &issuer)
                    .map_err(|e| CaError::build("certificate", e))?;
                (cert, Some(key))
            }
        };
        let certificate = cert.der().clone();
        let mut chain = vec![certificate.clone()];
        chain.extend(self.chain.iter().take(self.chain.len().saturating_sub(1)).cloned());
        self.self_check(&certificate, request.profile, now)?;

        let info = CertificateInfo::from_der(&certificate)?;
        locked
            .db
            .records
            .push(record(&info, request.profile.name(), &certificate, now));
        locked.commit()?;
        tracing::info!(serial = %info.serial, subject = %info.subject, profile = %request.profile, "issued");
        Ok(Issued {
            certificate,
            chain,
            key,
            info,
            clamped,
        })
    }

    /// The one trust path, applied to our own work before it leaves the CA.
    fn self_check(
        &self,
        certificate: &CertificateDer<'_>,
        profile: Profile,
        now: OffsetDateTime,
    ) -> Result<(), CaError> {
        let mut store = TrustStore::new();
        store.add_root(self.root().clone(), "root")?;
        let intermediates: Vec<CertificateDer<'_>> = self.chain.to_vec();
        match store.verify(certificate, &intermediates, &VerifyRequest::new(profile.usage(), now)) {
            Ok(_) => Ok(()),
            Err(e) if e.is_rejection() => Err(CaError::Refused(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the certificate with `serial` revoked and writes a fresh CRL.
    ///
    /// # Errors
    /// [`CaError::UnknownSerial`], [`CaError::AlreadyRevoked`], I/O errors.
    pub fn revoke(
        &self,
        serial: &str,
        reason: RevocationReason,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let mut locked = Database::lock(&self.dir)?;
        let record = locked.db.find_mut(serial).ok_or_else(|| CaError::UnknownSerial {
            serial: normalise_serial(serial),
        })?;
        if record.revoked.is_some() {
            return Err(CaError::AlreadyRevoked {
                serial: record.serial.clone(),
            });
        }
        record.revoked = Some(Revocation {
            at: now,
            reason: reason.name().into(),
        });
        tracing::info!(serial = %record.serial, reason = reason.name(), "revoked");
        self.write_crl_locked(&mut locked, now, crl_lifetime)
    }

    /// Writes a fresh CRL (next CRL number, every revoked certificate) to `crl.pem`.
    ///
    /// # Errors
    /// I/O errors, or [`CaError::Build`].
    pub fn write_crl(
        &self,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let mut locked = Database::lock(&self.dir)?;
        self.write_crl_locked(&mut locked, now, crl_lifetime)
    }

    fn write_crl_locked(
        &self,
        locked: &mut super::database::LockedDatabase,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        if crl_lifetime.is_zero() {
            return Err(CaError::invalid("crl-days", "the CRL lifetime must be positive"));
        }
        locked.db.crl_number += 1;
        let revoked_certs = locked
            .db
            .records
            .iter()
            .filter_map(|r| {
                let revocation = r.revoked.as_ref()?;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex_decode(&r.serial)),
                    revocation_time: revocation.at,
                    reason_code: revocation
                        .reason
                        .parse::<RevocationReason>()
                        .ok()
                        .and_then(|r| r.to_rcgen()),
                    invalidity_date: None,
                })
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + crl_lifetime,
            crl_number: SerialNumber::from_slice(&positive_integer(locked.db.crl_number)),
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
        locked.commit()?;
        let path = self.crl_path();
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
        if now < self.info.not_before || now > self.info.not_after {
            return Err(CaError::IssuerNotValid {
                time: now,
                not_before: self.info.not_before,
                not_after: self.info.not_after,
            });
        }
        match requested {
            Some(lifetime) if lifetime.is_zero() => Err(CaError::invalid("lifetime", "must be positive")),
            Some(lifetime) => {
                let end = now + lifetime;
                if end > self.info.not_after {
                    Err(CaError::OutlivesIssuer {
                        requested: end,
                        issuer_not_after: self.info.not_after,
                    })
                } else {
                    Ok((end, false))
                }
            }
            None => {
                let end = now + default;
                if end > self.info.not_after {
                    Ok((self.info.not_after, true))
                } else {
                    Ok((end, false))
                }
            }
        }
    }
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
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = request.name_constraints();
    for dns in request.permitted_dns.iter().chain(&request.excluded_dns) {
        SubjectAltName::parse(&format!("dns:{}", dns.trim_start_matches('.')))
            .map_err(|_| CaError::invalid("permit-dns", format!("{dns:?} is not a DNS name or domain")))?;
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

fn unique_serial(db: &Database) -> Result<SerialNumber, CaError> {
    loop {
        let mut serial = [0u8; 16];
        random_serial(&mut serial)?;
        if !db.contains(&pki::hex(&serial)) {
            return Ok(SerialNumber::from_slice(&serial));
        }
    }
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

fn parse_csr(bytes: &[u8]) -> Result<CertificateSigningRequestParams, CaError> {
    let der = pem::parse_blocks(bytes, pem::CERTIFICATE_REQUEST, "CSR")
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
        .ok_or_else(|| CaError::BadCsr {
            what: "input".into(),
            reason: "no -----BEGIN CERTIFICATE REQUEST----- block or DER request found".into(),
        })?;
    CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der)).map_err(|e| CaError::BadCsr {
        what: "input".into(),
        reason: match e {
            rcgen::Error::InvalidCertificationRequestSignature => "its self-signature does not verify".into(),
            other => other.to_string(),
        },
    })
}

fn csr_sans(csr: &CertificateSigningRequestParams) -> Vec<SubjectAltName> {
    csr.params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            rcgen::SanType::DnsName(d) => Some(SubjectAltName::Dns(d.as_str().to_string())),
            rcgen::SanType::IpAddress(ip) => Some(SubjectAltName::Ip(*ip)),
            rcgen::SanType::Rfc822Name(e) => Some(SubjectAltName::Email(e.as_str().to_string())),
            rcgen::SanType::URI(u) => Some(SubjectAltName::Uri(u.as_str().to_string())),
            _ => None,
        })
        .collect()
}

fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, CaError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::malformed("ca.pem", format!("cannot be parsed: {e}")))?;
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
