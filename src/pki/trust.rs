//! The one verification path: "is this certificate trusted for usage U at time T, given these
//! roots and CRLs?" Every trust decision in Tessera (`ca verify`, module signatures, TLS peers)
//! goes through [`TrustStore::verify`], which delegates path building to rustls-webpki.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeIdIter,
    OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::inspect::{CertificateInfo, hex, reason_name};
use super::policy::{self, Position};
use super::profile::{check_crl_profile, check_end_entity, check_extensions, check_issuer, check_root, subject_of};
use super::{KeyUsage, PkiError, pem};

/// DER value of id-kp-codeSigning (1.3.6.1.5.5.7.3.3).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Signature algorithms accepted in certificate chains and CRLs.
pub(crate) static SIGNATURE_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ED25519,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// What a certificate is to be trusted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// TLS server authentication (id-kp-serverAuth, required if the certificate lists EKUs).
    Server,
    /// TLS client authentication (id-kp-clientAuth, required if the certificate lists EKUs).
    Client,
    /// Code signing (id-kp-codeSigning, required on the end entity; on issuers if they list EKUs).
    CodeSigning,
    /// Any usage: the chain alone is checked.
    Any,
}

impl Usage {
    /// The name used on command lines: `server`, `client`, `code-signing`, `any`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::CodeSigning => "code-signing",
            Self::Any => "any",
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Usage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Self::Server),
            "client" => Ok(Self::Client),
            "code-signing" | "codesigning" => Ok(Self::CodeSigning),
            "any" => Ok(Self::Any),
            _ => Err(format!("unknown usage {s:?} (use server, client, code-signing or any)")),
        }
    }
}

/// The EKU policy rustls-webpki applies for a [`Usage`].
enum EkuPolicy {
    Webpki(webpki::KeyUsage),
    Any,
}

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self {
            Self::Webpki(usage) => usage.validate(iter),
            Self::Any => Ok(()),
        }
    }
}

impl From<Usage> for EkuPolicy {
    fn from(usage: Usage) -> Self {
        match usage {
            Usage::Server => Self::Webpki(webpki::KeyUsage::server_auth()),
            Usage::Client => Self::Webpki(webpki::KeyUsage::client_auth()),
            // webpki applies the validator to issuers too; CA certificates rarely carry EKUs, so
            // "if present" here, and the end entity's codeSigning EKU is required in `verify`.
            Usage::CodeSigning => Self::Webpki(webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING)),
            Usage::Any => Self::Any,
        }
    }
}

/// One verification question: usage, optional peer name, the time to check at, and optional
/// limits on the path (depth) and the end entity's key usage.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    /// The usage the end-entity certificate must allow.
    pub usage: Usage,
    /// A DNS name or IP address the certificate must be valid for.
    pub name: Option<String>,
    /// The time at which every certificate (and CRL) must be valid.
    pub time: OffsetDateTime,
    /// The most intermediate CA certificates allowed between the end entity and the root,
    /// self-issued ones not counted (RFC 5280 §6.1): `Some(0)` accepts only certificates issued
    /// directly by a root. `None`: no limit beyond webpki's own and the CAs' path lengths.
    pub max_depth: Option<usize>,
    /// Key usage bits the end entity must assert when it has a key usage extension
    /// (RFC 5280 §4.2.1.3; without the extension its key may be used for anything).
    pub key_usage: Vec<KeyUsage>,
}

impl VerifyRequest {
    /// A request for `usage` at `time`, without a name, depth limit or key usage.
    pub fn new(usage: Usage, time: OffsetDateTime) -> Self {
        Self {
            usage,
            name: None,
            time,
            max_depth: None,
            key_usage: Vec::new(),
        }
    }

    /// Also require the certificate to be valid for `name` (a DNS name or an IP address).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Also limit the path to `max_depth` intermediate CAs (see [`VerifyRequest::max_depth`]).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = Some(max_depth);
        self
    }

    /// Also require these key usage bits (see [`VerifyRequest::key_usage`]).
    pub fn with_key_usage(mut self, key_usage: impl IntoIterator<Item = KeyUsage>) -> Self {
        self.key_usage.extend(key_usage);
        self
    }
}

/// Proof that a chain was verified. Only [`TrustStore::verify`] builds one.
#[must_use]
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    path: Vec<CertificateDer<'static>>,
    end_entity: CertificateInfo,
    usage: Usage,
    time: OffsetDateTime,
}

impl VerifiedChain {
    /// The path from the end entity to the trusted root, both included.
    pub fn path(&self) -> &[CertificateDer<'static>] {
        &self.path
    }

    /// The end-entity certificate, inspected.
    pub fn end_entity(&self) -> &CertificateInfo {
        &self.end_entity
    }

    /// The usage the chain was verified for.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The time the chain was verified at.
    pub fn time(&self) -> OffsetDateTime {
        self.time
    }
}

/// Trusted roots plus the CRLs to consult. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<Arc<CertRevocationList<'static>>>,
}

impl TrustStore {
    /// An empty store (it trusts nothing until roots are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with the roots in a PEM file (a file may hold several roots). Blocking file
    /// I/O: from async code use [`TrustStore::from_root_file_async`].
    ///
    /// # Errors
    /// [`PkiError::Io`], [`PkiError::Malformed`], [`PkiError::Missing`].
    pub fn from_root_file(path: &Path) -> Result<Self, PkiError> {
        let mut store = Self::new();
        for cert in pem::load_certificates(path)? {
            store.add_root(cert, &path.display().to_string())?;
        }
        Ok(store)
    }

    /// [`TrustStore::from_root_file`] on Tokio's blocking pool, so that reading the file never
    /// stalls the runtime's worker threads (on the calling thread outside a Tokio runtime).
    ///
    /// # Errors
    /// As [`TrustStore::from_root_file`]; [`PkiError::Io`] if the blocking task could not
    /// finish (the runtime is shutting down).
    pub async fn from_root_file_async(path: std::path::PathBuf) -> Result<Self, PkiError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::from_root_file(&path);
        };
        let shown = path.clone();
        runtime
            .spawn_blocking(move || Self::from_root_file(&path))
            .await
            .map_err(|_| PkiError::io(shown, std::io::Error::other("the loading task did not finish")))?
    }

    /// Adds a trusted root certificate. `what` names it in errors.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when the certificate cannot serve as a trust anchor.
    pub fn add_root(&mut self, cert: CertificateDer<'static>, what: &str) -> Result<(), PkiError> {
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| {
                PkiError::malformed(
                    what,
                    format!("cannot be used as a root: {}", super::error::describe_webpki(&e)),
                )
            })?
            .to_owned();
        self.anchors.push(anchor);
        self.roots.push(cert);
        Ok(())
    }

    /// Adds a CRL (DER).
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when it is not a CRL at all; [`PkiError::UnacceptableCrl`] (a
    /// rejection) when it is one but rustls-webpki cannot use it, or it breaks RFC 5280 §5.2.3
    /// (no CRL number, or a critical one: such a CRL cannot be ordered against others).
    pub fn add_crl(&mut self, crl: &CertificateRevocationListDer<'_>, what: &str) -> Result<(), PkiError> {
        // A CRL that x509-parser reads was read fine; what webpki or RFC 5280 then refuse is a
        // "no" (nothing it covers can be trusted), not unusable input.
        let readable = x509_parser::parse_x509_crl(crl).is_ok();
        let refused = |reason: String| {
            if readable {
                PkiError::UnacceptableCrl {
                    what: what.into(),
                    reason,
                }
            } else {
                PkiError::malformed(what, reason)
            }
        };
        let owned = OwnedCertRevocationList::from_der(crl)
            .map_err(|e| refused(format!("unusable CRL: {}", super::error::describe_webpki(&e))))?;
        check_crl_profile(crl).map_err(refused)?;
        self.crls.push(Arc::new(CertRevocationList::Owned(owned)));
        Ok(())
    }

    /// Adds every CRL in a PEM (or DER) file.
    ///
    /// # Errors
    /// As [`pem::load_crls`] and [`TrustStore::add_crl`].
    pub fn add_crl_file(&mut self, path: &Path) -> Result<(), PkiError> {
        let what = path.display().to_string();
        for crl in pem::load_crls(path)? {
            self.add_crl(&crl, &what)?;
        }
        Ok(())
    }

    /// Removes every CRL (e.g. before loading fresh ones).
    pub fn clear_crls(&mut self) {
        self.crls.clear();
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The trust anchors (for rustls).
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The number of CRLs held.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Verifies `end_entity` (with candidate `intermediates`) against the roots: a path to a
    /// root, signatures, validity of every certificate at `request.time`, the usage, name
    /// constraints and path lengths, revocation by the CRLs held (for every certificate on the
    /// path that a CRL covers; a stale CRL is an error), and the name if one is given.
    ///
    /// On top of rustls-webpki (which implements the Web PKI's subset of RFC 5280), the path is
    /// held to the RFC 5280 profile rules listed in `docs/conformance.md`: the root must be
    /// valid at `request.time`, carry no unknown critical extension and, if it signed a CRL
    /// held here, allow cRLSign; every issuer (root included) has a non-empty subject, critical
    /// basic constraints with cA, and keyCertSign if it has a key usage; key identifiers are
    /// not critical, policy constraints are; name constraints appear only in CA certificates
    /// and are not empty; and the end entity's key is one Tessera can use (Ed25519, ECDSA
    /// P-256/P-384, RSA 2048–8192 bits). A self-signed certificate trusted as its own root
    /// (pinned) is exempt from the issuer and root rules. Then the request's
    /// [`VerifyRequest::max_depth`] and [`VerifyRequest::key_usage`], and the policy rules of
    /// [`super::PolicyViolation`] (serial length, SAN criticality, DNS constraints, RSA modulus
    /// length, anyExtendedKeyUsage, a root's key identifier). These checks run on every
    /// candidate path webpki has verified, so a path that breaks one lets webpki try another.
    ///
    /// # Errors
    /// A rejection ([`PkiError::is_rejection`]) says why the certificate is not trusted
    /// ([`PkiError::ProfileViolation`] for the profile rules, [`PkiError::Policy`],
    /// [`PkiError::ChainTooDeep`], [`PkiError::KeyUsageNotAllowed`],
    /// [`PkiError::UnacceptableCertificate`] for an end entity webpki refuses as written);
    /// [`PkiError::NoRoots`] or [`PkiError::Malformed`] (bytes that are no certificate) mean
    /// the question could not be asked.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> Result<VerifiedChain, PkiError> {
        if self.anchors.is_empty() {
            return Err(PkiError::NoRoots);
        }
        let ee = EndEntityCert::try_from(end_entity).map_err(|e| unacceptable_certificate(end_entity, e))?;
        let time = unix_time(request.time);
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().map(|c| c.as_ref()).collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|builder| {
            builder
                .with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Enforce)
                .build()
        });
        let intermediates: Vec<CertificateDer<'_>> = intermediates.to_vec();
        // webpki calls this for every path it has verified up to a trust anchor; a path refused
        // here lets it try the next one. The first refusal is kept to explain a failure.
        let refusal: RefCell<Option<PkiError>> = RefCell::new(None);
        let check_path = |candidate: &webpki::VerifiedPath<'_>| {
            let mut path = vec![end_entity.clone().into_owned()];
            path.extend(
                candidate
                    .intermediate_certificates()
                    .map(|c| CertificateDer::from(c.der().to_vec())),
            );
            let root = self.root_of(candidate.anchor());
            self.check_profile(&path, root, request).map_err(|e| {
                let mut kept = refusal.borrow_mut();
                // Of several paths too deep, report the shortest.
                let shorter = matches!((&*kept, &e), (
                    Some(PkiError::ChainTooDeep { depth: old, .. }),
                    PkiError::ChainTooDeep { depth: new, .. },
                ) if new < old);
                if kept.is_none() || shorter {
                    *kept = Some(e);
                }
                webpki::Error::UnknownIssuer
            })
        };
        let verified = ee
            .verify_for_usage(
                SIGNATURE_ALGORITHMS,
                &self.anchors,
                &intermediates,
                time,
                EkuPolicy::from(request.usage),
                revocation,
                Some(&check_path),
            )
            .map_err(|e| {
                refusal
                    .take()
                    .unwrap_or_else(|| self.explain(e, end_entity, &intermediates, request))
            })?;

        let mut path = vec![end_entity.clone().into_owned()];
        path.extend(
            verified
                .intermediate_certificates()
                .map(|c| CertificateDer::from(c.der().to_vec())),
        );
        if let Some(root) = self.root_of(verified.anchor()) {
            path.push(root.clone());
        }

        if let Some(name) = &request.name {
            let server_name =
                ServerName::try_from(name.as_str()).map_err(|_| PkiError::NameMismatch { name: name.clone() })?;
            ee.verify_is_valid_for_subject_name(&server_name)
                .map_err(|_| PkiError::NameMismatch { name: name.clone() })?;
        }

        let info = CertificateInfo::from_der(end_entity)?;
        if request.usage == Usage::CodeSigning && !info.extended_key_usage.iter().any(|e| e == "codeSigning") {
            return Err(PkiError::WrongUsage { usage: request.usage });
        }
        Ok(VerifiedChain {
            path,
            end_entity: info,
            usage: request.usage,
            time: request.time,
        })
    }

    /// The trusted root certificate behind a trust anchor.
    fn root_of(&self, anchor: &TrustAnchor<'_>) -> Option<&CertificateDer<'static>> {
        self.anchors
            .iter()
            .zip(&self.roots)
            .find(|(a, _)| a.subject == anchor.subject && a.subject_public_key_info == anchor.subject_public_key_info)
            .map(|(_, r)| r)
    }

    /// The rules rustls-webpki leaves out, on a path it has verified: the RFC 5280 profile
    /// (`profile.rs`), the request's depth and key usage and the policy rules (`policy.rs`).
    /// `path` is the end entity then the intermediates, `root` the trusted certificate it
    /// chains to.
    fn check_profile(
        &self,
        path: &[CertificateDer<'_>],
        root: Option<&CertificateDer<'_>>,
        request: &VerifyRequest,
    ) -> Result<(), PkiError> {
        // A self-signed certificate trusted as its own root is a pinned end entity, not a CA.
        let pinned = root.is_some() && path.len() == 1 && path.first() == root;
        let root = root.filter(|_| !pinned);
        let mut parsed = Vec::with_capacity(path.len() + 1);
        for der in path.iter().chain(root) {
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| PkiError::ProfileViolation {
                subject: "on the path".into(),
                rule: "it cannot be parsed as an X.509 certificate".into(),
            })?;
            parsed.push(cert);
        }
        for (index, (der, cert)) in path.iter().chain(root).zip(&parsed).enumerate() {
            let violation = |rule: String| PkiError::ProfileViolation {
                subject: subject_of(cert),
                rule,
            };
            check_extensions(cert).map_err(violation)?;
            let position = if index == 0 {
                check_end_entity(cert).map_err(violation)?;
                Position::EndEntity
            } else {
                check_issuer(cert).map_err(violation)?;
                if index == path.len() {
                    Position::Root
                } else {
                    Position::Intermediate
                }
            };
            if position == Position::Root {
                check_root(der, cert, request.time)?;
                self.check_crl_signer(cert)?;
            }
            policy::check_certificate(cert, position)?;
        }
        if let Some((end_entity, rest)) = parsed.split_first() {
            policy::check_key_usage(end_entity, &request.key_usage)?;
            if let Some(max) = request.max_depth {
                let intermediates = rest.get(..path.len().saturating_sub(1)).unwrap_or_default();
                policy::check_depth(intermediates, max)?;
            }
        }
        Ok(())
    }

    /// rustls-webpki checks that an intermediate CA may sign the CRLs it issues (cRLSign), but
    /// it never sees the root's key usage (a trust anchor is only a name and a key): do it here.
    fn check_crl_signer(&self, root: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), PkiError> {
        let may_sign_crls = match root.key_usage() {
            Ok(Some(usage)) => usage.value.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        let subject = name_contents(root.subject().as_raw());
        if !may_sign_crls && self.crls.iter().any(|crl| crl.issuer() == subject) {
            return Err(PkiError::RevocationUnknown {
                reason: format!(
                    "a CRL is signed by {}, whose key usage does not include cRLSign (RFC 5280 4.2.1.3)",
                    subject_of(root)
                ),
            });
        }
        Ok(())
    }

    /// Turns a webpki error into a precise, human-meaningful reason.
    fn explain(
        &self,
        error: webpki::Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> PkiError {
        use webpki::Error as E;
        let chain = || {
            std::iter::once(end_entity)
                .chain(intermediates.iter())
                .filter_map(|c| CertificateInfo::from_der(c).ok())
        };
        match error {
            E::CertExpired { .. } => {
                let expired = chain().find(|c| c.not_after < request.time);
                let (subject, not_after) = expired
                    .map(|c| (c.subject, c.not_after))
                    .unwrap_or_else(|| ("in the chain".into(), request.time));
                PkiError::Expired {
                    subject,
                    not_after,
                    time: request.time,
                }
            }
            E::CertNotValidYet { .. } => {
                let early = chain().find(|c| c.not_before > request.time);
                let (subject, not_before) = early
                    .map(|c| (c.subject, c.not_before))
                    .unwrap_or_else(|| ("in the chain".into(), request.time));
                PkiError::NotYetValid {
                    subject,
                    not_before,
                    time: request.time,
                }
            }
            E::CertRevoked => self.revoked_entry(end_entity, intermediates),
            E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => PkiError::WrongUsage { usage: request.usage },
            E::UnknownIssuer => PkiError::UnknownIssuer,
            E::CaUsedAsEndEntity => PkiError::BadCaUse {
                reason: "a CA certificate was presented as the end entity",
            },
            E::EndEntityUsedAsCa => PkiError::BadCaUse {
                reason: "an end-entity certificate was used as an issuer",
            },
            E::NameConstraintViolation => self
                .unevaluated_constraint(end_entity, intermediates)
                .unwrap_or(PkiError::NameConstraintViolation),
            E::PathLenConstraintViolated => PkiError::PathLenExceeded,
            E::InvalidSignatureForPublicKey => PkiError::BadSignature,
            E::CrlExpired { next_update, .. } => PkiError::RevocationUnknown {
                reason: format!(
                    "a CRL expired at {}; fetch or regenerate a fresh one (`ca crl`)",
                    rfc3339_unix(next_update.as_secs())
                ),
            },
            E::InvalidCrlSignatureForPublicKey | E::IssuerNotCrlSigner => PkiError::RevocationUnknown {
                reason: "a CRL is not validly signed by its issuer".into(),
            },
            other => PkiError::Rejected(other),
        }
    }

    /// rustls-webpki evaluates DNS and IP address constraints only: a subtree of any other form
    /// (e-mail address, URI, directory name, …) makes every name of that form below it a
    /// violation. When that is why a chain failed, say so, naming the CA and the name.
    fn unevaluated_constraint(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<PkiError> {
        use x509_parser::extensions::GeneralName;
        fn form(name: &GeneralName<'_>) -> Option<&'static str> {
            match name {
                GeneralName::RFC822Name(_) => Some("e-mail addresses (rfc822Name)"),
                GeneralName::URI(_) => Some("URIs"),
                GeneralName::DirectoryName(_) => Some("directory names"),
                GeneralName::OtherName(..) => Some("otherName names"),
                GeneralName::X400Address(_) => Some("x400Address names"),
                GeneralName::EDIPartyName(_) => Some("ediPartyName names"),
                GeneralName::RegisteredID(_) => Some("registeredID names"),
                GeneralName::DNSName(_) | GeneralName::IPAddress(_) | GeneralName::Invalid(..) => None,
            }
        }
        let parsed: Vec<_> = std::iter::once(end_entity)
            .chain(intermediates.iter())
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c))
            .collect();
        // Only roots that issued something in the chain.
        let roots: Vec<_> = self
            .roots
            .iter()
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c))
            .filter(|root| parsed.iter().any(|c| c.issuer() == root.subject()))
            .collect();
        // The names of a form held by the certificates below an issuer.
        let held = |wanted: &'static str, issuer: &x509_parser::certificate::X509Certificate<'_>| {
            parsed.iter().filter(|c| c.subject() != issuer.subject()).find_map(|c| {
                if wanted == "directory names" {
                    return Some(format!("the subject {}", subject_of(c)));
                }
                let san = c.subject_alternative_name().ok().flatten()?;
                san.value
                    .general_names
                    .iter()
                    .find(|n| form(n) == Some(wanted))
                    .map(|n| match n {
                        GeneralName::RFC822Name(e) => format!("email:{e}"),
                        GeneralName::URI(u) => format!("uri:{u}"),
                        other => format!("{other}"),
                    })
            })
        };
        for issuer in parsed.iter().skip(1).chain(roots.iter()) {
            let Ok(Some(constraints)) = issuer.name_constraints() else {
                continue;
            };
            let subtrees = constraints
                .value
                .permitted_subtrees
                .iter()
                .flatten()
                .chain(constraints.value.excluded_subtrees.iter().flatten());
            for subtree in subtrees {
                if let Some(wanted) = form(&subtree.base)
                    && let Some(name) = held(wanted, issuer)
                {
                    return Some(PkiError::UnsupportedNameConstraint {
                        issuer: subject_of(issuer),
                        form: wanted,
                        name,
                    });
                }
            }
        }
        None
    }

    /// Finds which certificate on the chain a CRL revokes, for the message.
    fn revoked_entry(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> PkiError {
        for cert in std::iter::once(end_entity).chain(intermediates.iter()) {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
                continue;
            };
            for crl in &self.crls {
                if crl.issuer() != name_contents(parsed.issuer().as_raw()) {
                    continue;
                }
                if let Ok(Some(entry)) = crl.find_serial(parsed.raw_serial()) {
                    return PkiError::Revoked {
                        serial: hex(trim_serial(parsed.raw_serial())),
                        reason: reason_name(entry.reason_code.map_or(0, |r| r as u8)).to_string(),
                    };
                }
            }
        }
        PkiError::Revoked {
            serial: "in the chain".into(),
            reason: "unspecified".into(),
        }
    }
}

/// rustls-webpki refuses `der` as an end entity: a rejection when x509-parser reads it (the
/// input was read; its contents break a rule), unusable input otherwise.
fn unacceptable_certificate(der: &CertificateDer<'_>, error: webpki::Error) -> PkiError {
    match x509_parser::parse_x509_certificate(der) {
        // RFC 5280 4.2: a certificate with a critical extension the verifier does not know must
        // be rejected.
        Ok((_, cert)) if error == webpki::Error::UnsupportedCriticalExtension => PkiError::ProfileViolation {
            subject: subject_of(&cert),
            rule: "it has a critical extension Tessera does not recognise (RFC 5280 4.2)".into(),
        },
        Ok((_, cert)) => PkiError::UnacceptableCertificate {
            subject: subject_of(&cert),
            error,
        },
        Err(_) => PkiError::malformed(
            "certificate",
            format!("cannot be parsed: {}", super::error::describe_webpki(&error)),
        ),
    }
}

/// The contents of a DER `Name` (without its SEQUENCE header), as rustls-webpki holds names.
fn name_contents(raw: &[u8]) -> &[u8] {
    use x509_parser::prelude::FromDer;
    match x509_parser::asn1_rs::Any::from_der(raw) {
        Ok((_, any)) => any.data,
        Err(_) => raw,
    }
}

/// Strips the sign-padding zero bytes of a DER serial number.
pub(crate) fn trim_serial(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    serial.get(start..).unwrap_or(serial)
}

/// Converts a time to rustls' representation (times before 1970 become the epoch).
pub(crate) fn unix_time(time: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(time.unix_timestamp()).unwrap_or(0)))
}

fn rfc3339_unix(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DistinguishedName,
        DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
        RevocationReason, RevokedCertParams, SerialNumber, SigningKey,
    };
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2030-06-01 0:00 UTC);

    /// A CA (root or intermediate) made with rcgen.
    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: CertificateDer<'static>,
    }

    impl Ca {
        fn root(params: CertificateParams) -> Self {
            let key = KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().clone();
            Self { params, key, der }
        }

        fn issue(&self, params: &CertificateParams, public: &impl PublicKeyData) -> CertificateDer<'static> {
            let issuer = Issuer::from_params(&self.params, &self.key);
            params.signed_by(public, &issuer).unwrap().der().clone()
        }

        fn intermediate(&self, params: CertificateParams) -> Self {
            let key = KeyPair::generate().unwrap();
            let der = self.issue(&params, &key);
            Self { params, key, der }
        }

        fn leaf(&self, params: &CertificateParams) -> CertificateDer<'static> {
            self.issue(params, &KeyPair::generate().unwrap())
        }

        fn subject(&self) -> Vec<u8> {
            let (_, cert) = x509_parser::parse_x509_certificate(&self.der).unwrap();
            cert.subject().as_raw().to_vec()
        }
    }

    fn name(cn: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = datetime!(2030-01-01 0:00 UTC);
        params.not_after = datetime!(2031-01-01 0:00 UTC);
        params
    }

    fn leaf_params() -> CertificateParams {
        let mut params = CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        params.distinguished_name = name("example.com");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from(vec![0x01, 0x02, 0x03]));
        params.not_before = datetime!(2030-01-01 0:00 UTC);
        params.not_after = datetime!(2030-12-01 0:00 UTC);
        params
    }

    fn extension(oid: &[u64], content: &[u8], critical: bool) -> CustomExtension {
        let mut ext = CustomExtension::from_oid_content(oid, content.to_vec());
        ext.set_criticality(critical);
        ext
    }

    fn store(root: &CertificateDer<'static>) -> TrustStore {
        let mut store = TrustStore::new();
        store.add_root(root.clone(), "root").unwrap();
        store
    }

    fn verify_at(
        store: &TrustStore,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        time: OffsetDateTime,
    ) -> Result<VerifiedChain, PkiError> {
        store.verify(
            leaf,
            chain,
            &VerifyRequest::new(Usage::Server, time).with_name("example.com"),
        )
    }

    fn verify(root: &Ca, leaf: &CertificateDer<'_>, chain: &[CertificateDer<'_>]) -> Result<VerifiedChain, PkiError> {
        verify_at(&store(&root.der), leaf, chain, NOW)
    }

    #[track_caller]
    fn assert_accepted(result: Result<VerifiedChain, PkiError>) {
        if let Err(e) = result {
            panic!("expected the chain to be accepted, got: {e}");
        }
    }

    #[track_caller]
    fn assert_violation(result: Result<VerifiedChain, PkiError>, needle: &str) {
        match result {
            Err(PkiError::ProfileViolation { rule, .. }) => assert!(rule.contains(needle), "{rule}"),
            other => panic!("expected a profile violation mentioning {needle:?}, got {other:?}"),
        }
    }

    /// A DER TLV (lengths up to 65535).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A v2 CRL by `ca`, revoking nothing, with the CRL number extension as given (`None`:
    /// absent; `Some(critical)`). rcgen always writes a proper one, so this is built by hand.
    fn hand_made_crl(ca: &Ca, crl_number: Option<bool>) -> CertificateRevocationListDer<'static> {
        let ecdsa_sha256 = tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
        let mut tbs = tlv(0x02, &[0x01]);
        tbs.extend(&ecdsa_sha256);
        tbs.extend(ca.subject());
        tbs.extend(tlv(0x17, b"300101000000Z"));
        tbs.extend(tlv(0x17, b"310101000000Z"));
        // An authority key identifier, then the CRL number if wanted.
        let mut key_id = tlv(0x06, &[0x55, 0x1d, 0x23]);
        key_id.extend(tlv(0x04, &tlv(0x30, &tlv(0x80, &[0x11; 20]))));
        let mut extensions = tlv(0x30, &key_id);
        if let Some(critical) = crl_number {
            let mut number = tlv(0x06, &[0x55, 0x1d, 0x14]);
            if critical {
                number.extend(tlv(0x01, &[0xff]));
            }
            number.extend(tlv(0x04, &tlv(0x02, &[0x07])));
            extensions.extend(tlv(0x30, &number));
        }
        tbs.extend(tlv(0xa0, &tlv(0x30, &extensions)));
        let tbs = tlv(0x30, &tbs);
        let signature = ca.key.sign(&tbs).unwrap();
        let mut bits = vec![0x00];
        bits.extend(signature);
        let mut list = tbs;
        list.extend(ecdsa_sha256);
        list.extend(tlv(0x03, &bits));
        CertificateRevocationListDer::from(tlv(0x30, &list))
    }

    /// An RSA public key with a made-up modulus of `bits` bits (never used to verify anything).
    struct RsaKey(Vec<u8>);

    impl RsaKey {
        fn with_bits(bits: usize) -> Self {
            let mut modulus = vec![0x00];
            modulus.extend(vec![0xc5; bits / 8]);
            let mut seq = tlv(0x02, &modulus);
            seq.extend(tlv(0x02, &[0x01, 0x00, 0x01]));
            Self(tlv(0x30, &seq))
        }
    }

    impl PublicKeyData for RsaKey {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }

        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_RSA_SHA256
        }
    }

    #[test]
    fn chains_shaped_like_ours_are_accepted() {
        let root = Ca::root(ca_params("root"));
        let mut intermediate = ca_params("intermediate");
        intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        intermediate.use_authority_key_identifier_extension = true;
        let intermediate = root.intermediate(intermediate);
        let leaf = intermediate.leaf(&leaf_params());
        let chain = verify(&root, &leaf, std::slice::from_ref(&intermediate.der)).unwrap();
        assert_eq!(chain.path().len(), 3);

        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_accepted(verify(&root, &root.issue(&leaf_params(), &ed25519), &[]));
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_accepted(verify(&root, &root.issue(&leaf_params(), &p384), &[]));
    }

    #[test]
    fn a_pinned_self_signed_end_entity_is_not_held_to_the_root_rules() {
        let key = KeyPair::generate().unwrap();
        let leaf = leaf_params().self_signed(&key).unwrap().der().clone();
        assert_accepted(verify_at(&store(&leaf), &leaf, &[], NOW));
    }

    #[test]
    fn the_root_must_be_valid_at_the_verification_time() {
        let mut params = ca_params("root");
        params.not_after = datetime!(2030-03-01 0:00 UTC);
        let expired = Ca::root(params);
        match verify(&expired, &expired.leaf(&leaf_params()), &[]) {
            Err(PkiError::Expired { subject, .. }) => assert!(subject.contains("root"), "{subject}"),
            other => panic!("expected an expired root, got {other:?}"),
        }

        let mut params = ca_params("root");
        params.not_before = datetime!(2030-07-01 0:00 UTC);
        let early = Ca::root(params);
        assert!(matches!(
            verify(&early, &early.leaf(&leaf_params()), &[]),
            Err(PkiError::NotYetValid { .. })
        ));

        // Whole seconds, as webpki compares: a root ending exactly now is still valid 5 ms later.
        let mut params = ca_params("root");
        params.not_after = NOW;
        let ending = Ca::root(params);
        let later = NOW + time::Duration::milliseconds(5);
        assert_accepted(verify_at(&store(&ending.der), &ending.leaf(&leaf_params()), &[], later));
    }

    #[test]
    fn the_root_must_be_a_proper_ca_certificate() {
        let mut params = ca_params("root");
        params.is_ca = IsCa::NoCa;
        let root = Ca::root(params);
        assert_violation(verify(&root, &root.leaf(&leaf_params()), &[]), "no basic constraints");

        let mut params = ca_params("root");
        params.is_ca = IsCa::NoCa;
        params.custom_extensions = vec![extension(&[2, 5, 29, 19], &[0x30, 0x03, 0x01, 0x01, 0xff], false)];
        let root = Ca::root(params);
        assert_violation(verify(&root, &root.leaf(&leaf_params()), &[]), "not critical");

        let mut params = ca_params("root");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let root = Ca::root(params);
        assert_violation(verify(&root, &root.leaf(&leaf_params()), &[]), "keyCertSign");

        let mut params = ca_params("root");
        params.custom_extensions = vec![extension(&[1, 3, 6, 1, 4, 1, 55738, 666, 1], &[0x05, 0x00], true)];
        let root = Ca::root(params);
        assert_violation(verify(&root, &root.leaf(&leaf_params()), &[]), "critical extension");
    }

    #[test]
    fn an_issuer_needs_a_subject() {
        let root = Ca::root(ca_params("root"));
        let mut params = ca_params("unused");
        params.distinguished_name = DistinguishedName::new();
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        assert_violation(
            verify(&root, &leaf, std::slice::from_ref(&intermediate.der)),
            "empty subject",
        );
    }

    #[test]
    fn key_identifiers_must_not_be_critical() {
        // On the root: webpki never parses it. (webpki refuses an end entity or intermediate
        // with a critical key identifier itself, as an unsupported critical extension.)
        let mut aki = vec![0x30, 0x16, 0x80, 0x14];
        aki.extend([0x11; 20]);
        let mut params = ca_params("root");
        params.custom_extensions = vec![extension(&[2, 5, 29, 35], &aki, true)];
        let root = Ca::root(params);
        assert_violation(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            "authority key identifier is critical",
        );

        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.use_authority_key_identifier_extension = false;
        params.custom_extensions = vec![extension(&[2, 5, 29, 35], &aki, true)];
        assert_violation(verify(&root, &root.leaf(&params), &[]), "critical extension");
    }

    #[test]
    fn name_constraints_belong_to_cas_and_are_never_empty() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        let mut permitted = vec![0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x82, 0x0b];
        permitted.extend(b"example.com");
        params.custom_extensions = vec![extension(&[2, 5, 29, 30], &permitted, true)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            "end entity with name constraints",
        );

        let mut params = ca_params("intermediate");
        params.custom_extensions = vec![extension(&[2, 5, 29, 30], &[0x30, 0x00], true)];
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        assert_violation(
            verify(&root, &leaf, std::slice::from_ref(&intermediate.der)),
            "no subtree",
        );
    }

    #[test]
    fn policy_constraints_must_be_critical() {
        let root = Ca::root(ca_params("root"));
        let mut params = ca_params("intermediate");
        params.custom_extensions = vec![extension(&[2, 5, 29, 36], &[0x30, 0x03, 0x80, 0x01, 0x00], false)];
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        assert_violation(
            verify(&root, &leaf, std::slice::from_ref(&intermediate.der)),
            "policy constraints",
        );
    }

    #[test]
    fn an_end_entity_may_not_assert_key_cert_sign() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        assert_violation(verify(&root, &root.leaf(&params), &[]), "keyCertSign without cA");
    }

    #[test]
    fn an_empty_subject_needs_a_critical_subject_alternative_name() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.distinguished_name = DistinguishedName::new();
        // rcgen marks the SAN critical when the subject is empty: accepted.
        assert_accepted(verify(&root, &root.leaf(&params), &[]));

        params.subject_alt_names = Vec::new();
        let mut san = vec![0x30, 0x0d, 0x82, 0x0b];
        san.extend(b"example.com");
        params.custom_extensions = vec![extension(&[2, 5, 29, 17], &san, false)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            "subject alternative name is not critical",
        );
    }

    #[test]
    fn a_malformed_structural_extension_is_refused() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.custom_extensions = vec![extension(&[1, 3, 6, 1, 5, 5, 7, 1, 1], b"malformed", false)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            "1.3.6.1.5.5.7.1.1 is malformed",
        );
    }

    #[test]
    fn the_end_entity_key_must_be_one_tessera_can_use() {
        let root = Ca::root(ca_params("root"));
        assert_violation(
            verify(&root, &root.issue(&leaf_params(), &RsaKey::with_bits(1024)), &[]),
            "public key",
        );
        assert_accepted(verify(
            &root,
            &root.issue(&leaf_params(), &RsaKey::with_bits(2048)),
            &[],
        ));
    }

    #[test]
    fn a_crl_needs_a_non_critical_crl_number() {
        let root = Ca::root(ca_params("root"));
        let mut store = store(&root.der);
        store.add_crl(&hand_made_crl(&root, Some(false)), "good").unwrap();
        for (crl, needle) in [(None, "no CRL number"), (Some(true), "critical")] {
            match store.add_crl(&hand_made_crl(&root, crl), "crl") {
                Err(error @ PkiError::UnacceptableCrl { .. }) => {
                    assert!(error.is_rejection());
                    assert!(error.to_string().contains(needle), "{error}");
                }
                other => panic!("expected the CRL to be refused, got {other:?}"),
            }
        }
        assert_eq!(store.crl_count(), 1);
        assert_accepted(verify_at(&store, &root.leaf(&leaf_params()), &[], NOW));
    }

    #[test]
    fn a_root_without_crl_sign_cannot_vouch_for_a_crl() {
        let mut params = ca_params("root");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let root = Ca::root(params);
        let leaf = root.leaf(&leaf_params());
        let mut store = store(&root.der);
        assert_accepted(verify_at(&store, &leaf, &[], NOW));
        store.add_crl(&hand_made_crl(&root, Some(false)), "crl").unwrap();
        match verify_at(&store, &leaf, &[], NOW) {
            Err(PkiError::RevocationUnknown { reason }) => assert!(reason.contains("cRLSign"), "{reason}"),
            other => panic!("expected the CRL to be unusable, got {other:?}"),
        }
    }

    #[test]
    fn a_revocation_names_the_serial_and_reason() {
        let root = Ca::root(ca_params("root"));
        let leaf = root.leaf(&leaf_params());
        let crl = CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update: datetime!(2031-01-01 0:00 UTC),
            crl_number: SerialNumber::from(vec![0x01]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![0x01, 0x02, 0x03]),
                revocation_time: datetime!(2030-02-01 0:00 UTC),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&root.params, &root.key))
        .unwrap();
        let mut store = store(&root.der);
        store.add_crl(crl.der(), "crl").unwrap();
        match verify_at(&store, &leaf, &[], NOW) {
            Err(PkiError::Revoked { serial, reason }) => {
                assert_eq!(serial, "010203");
                assert_eq!(reason, "key-compromise");
            }
            other => panic!("expected a revocation, got {other:?}"),
        }
    }
}
