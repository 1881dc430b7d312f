//! The one error type of the `pki` module, and the translation of rustls-webpki's reasons into it.
//!
//! # Classification
//!
//! Every error of Tessera's library falls in one of two classes, told apart by an exhaustive
//! `is_rejection()` on each error enum ([`PkiError::is_rejection`], `CaError`, `SignError`,
//! `ChannelError`):
//!
//! - a **rejection**: the check ran and its answer is "no" (not trusted, tampered, revoked,
//!   expired, against a rule of the profile). The tools exit with code 1.
//! - **could not run**: the question could not be asked (a file missing or unreadable, bytes
//!   that are no certificate, a wrong passphrase, no root given). The tools exit with code 3.
//!
//! `tessera::cli::verdict` turns an error into the exit code and hint a tool reports; it is the
//! only place that does.
//!
//! # rustls-webpki's reasons
//!
//! [`TrustStore::verify`](super::TrustStore::verify) delegates path building to
//! rustls-webpki. Each of webpki's errors maps to a [`RejectionReason`] (one arm per webpki
//! variant; webpki's enum is `#[non_exhaustive]`, so a variant added by a later webpki becomes
//! [`RejectionReason::Other`]), and each reason to the [`PkiError`] variant that says it best,
//! with the context webpki gives (an expiry's `not_after`) and what Tessera finds around it (the
//! subject of the expired certificate, the serial and reason of a revoked one). No webpki type
//! or `Debug` form appears in a `PkiError` or its message.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use super::inspect::CertificateInfo;
use super::policy::key_usage_list;
use super::profile::{ProfileRule, name_contents, subject_of};
use super::x509::{RevocationReason, Serial};
use super::{KeyUsage, PolicyViolation, Usage, VerifyRequest, rfc3339};

/// Why a PKI operation failed: unusable input, or a trust decision that said no.
///
/// [`PkiError::is_rejection`] tells the two apart: a rejection means the check ran and the
/// answer was "not trusted" (exit code 1 in the tools), anything else means the check could not
/// run (exit code 3).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Input that should hold PEM (or DER) data is not usable.
    #[error("{what} is not valid: {reason}")]
    Malformed {
        /// What was being read (usually a file name).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A PEM file held no object of the expected kind.
    #[error("{what} contains no {expected}")]
    Missing {
        /// What was being read.
        what: String,
        /// The PEM label that was looked for, e.g. `CERTIFICATE`.
        expected: &'static str,
    },
    /// A private key is encrypted and no passphrase was given.
    #[error("{what} is encrypted and no passphrase was given")]
    PassphraseRequired {
        /// The key file.
        what: String,
    },
    /// Decryption proved the passphrase wrong: the padding of the decrypted data is wrong, or
    /// the decrypted data is not a PKCS#8 key (a damaged file gives the same result).
    #[error("cannot decrypt {what}: wrong passphrase or damaged key")]
    WrongPassphrase {
        /// The key file.
        what: String,
    },
    /// An encrypted key is protected by a scheme Tessera does not read (PBES1, PKCS#12 PBE,
    /// or PBES2 with another cipher or PRF): the passphrase was not tried.
    #[error("{what} is encrypted with {scheme}, which Tessera cannot read: {reason}; convert it with `{conversion}`")]
    UnsupportedEncryption {
        /// The key file.
        what: String,
        /// The scheme, e.g. `PKCS#12 PBE pbeWithSHAAnd3-KeyTripleDES-CBC`.
        scheme: String,
        /// What in it Tessera does not read.
        reason: String,
        /// The OpenSSL command that re-encrypts it with PBES2 and AES-256-CBC.
        conversion: &'static str,
    },
    /// The key's algorithm is not one Tessera supports (Ed25519, ECDSA P-256, ECDSA P-384).
    #[error(
        "the key in {what} is {algorithm}, which Tessera does not use (supported: Ed25519, ECDSA P-256, ECDSA P-384)"
    )]
    UnsupportedKey {
        /// The key file.
        what: String,
        /// The key's algorithm, e.g. `EC P-521` or `RSA`.
        algorithm: String,
    },
    /// A key or data file exists and will not be overwritten.
    #[error("{path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A trust store holds no root certificate.
    #[error("no trusted root certificate was given")]
    NoRoots,
    /// A certificate's validity period had ended at the verification time.
    #[error("certificate {} expired at {} (checked at {})", in_the_chain(subject), rfc3339(*not_after), rfc3339(*time))]
    Expired {
        /// Subject of the certificate whose notAfter is `not_after`; `None` when no certificate
        /// presented has it (shown as `in the chain`).
        subject: Option<String>,
        /// When it stopped being valid.
        not_after: OffsetDateTime,
        /// The verification time.
        time: OffsetDateTime,
    },
    /// A certificate's validity period had not started at the verification time.
    #[error("certificate {} is not valid before {} (checked at {})", in_the_chain(subject), rfc3339(*not_before), rfc3339(*time))]
    NotYetValid {
        /// Subject of the certificate whose notBefore is `not_before`; `None` when no
        /// certificate presented has it (shown as `in the chain`).
        subject: Option<String>,
        /// When it becomes valid.
        not_before: OffsetDateTime,
        /// The verification time.
        time: OffsetDateTime,
    },
    /// A certificate on the path is revoked by a CRL.
    #[error("certificate {serial} is revoked ({reason})")]
    Revoked {
        /// Serial number of the revoked certificate (shown as lowercase hex).
        serial: Serial,
        /// The CRL entry's reason (RFC 5280 §5.3.1; `unspecified` when the CRL gives none).
        reason: RevocationReason,
    },
    /// The end-entity certificate is not valid for the requested usage.
    #[error("certificate is not valid for {usage} use (wrong extended key usage)")]
    WrongUsage {
        /// The usage asked for.
        usage: Usage,
    },
    /// The certificate is not valid for the requested name.
    #[error("certificate is not valid for the name {name}")]
    NameMismatch {
        /// The DNS name or IP address asked for.
        name: String,
    },
    /// No path from the certificate to a trusted root could be built.
    #[error("certificate was not issued by a trusted root (unknown issuer)")]
    UnknownIssuer,
    /// The end entity is itself a CA certificate, or an issuer on the path is not a CA.
    #[error("certificate chain misuses a CA certificate: {reason}")]
    BadCaUse {
        /// What was misused.
        reason: &'static str,
    },
    /// A name in the chain is outside an issuer's name constraints.
    #[error("certificate violates its issuer's name constraints")]
    NameConstraintViolation,
    /// An issuer's name constraints restrict a name form that rustls-webpki does not evaluate
    /// (e-mail addresses, URIs, directory names, otherName, …), and the chain holds a name of
    /// that form: webpki refuses every such certificate, whatever the name.
    #[error(
        "the name constraints of {issuer} restrict {form}, which Tessera's verifier does not evaluate: it refuses \
         every certificate below that CA holding one, and this chain holds {name}"
    )]
    UnsupportedNameConstraint {
        /// Subject of the constraining CA.
        issuer: String,
        /// The name form, e.g. `e-mail addresses (rfc822Name)`.
        form: &'static str,
        /// The name of that form in the chain, e.g. `email:carol@example.test`.
        name: String,
    },
    /// An issuer's path-length constraint is exceeded.
    #[error("certificate chain is longer than an issuer's path length constraint allows")]
    PathLenExceeded,
    /// A signature on the path does not verify.
    #[error("bad signature in certificate chain")]
    BadSignature,
    /// A CRL for an issuer on the path could not be used (expired, or not signed by the issuer).
    #[error("revocation status could not be determined: {reason}")]
    RevocationUnknown {
        /// Why.
        reason: String,
    },
    /// A certificate on an otherwise valid path breaks a rule of the RFC 5280 profile (or of
    /// Tessera's key policy) that rustls-webpki does not check itself.
    #[error("certificate {subject} is not acceptable: {rule}")]
    ProfileViolation {
        /// Subject of the offending certificate (`(empty subject)` when it has none).
        subject: String,
        /// The rule it breaks; its message cites the section of RFC 5280 it comes from.
        rule: ProfileRule,
    },
    /// A certificate on an otherwise valid path breaks one of the rules Tessera adds to
    /// rustls-webpki ([`PolicyViolation`], each citing its source).
    #[error("certificate {subject} is not acceptable: {violation}")]
    Policy {
        /// Subject of the offending certificate (`(empty subject)` when it has none).
        subject: String,
        /// The rule it breaks.
        violation: PolicyViolation,
    },
    /// Every path to a root needs more intermediate CA certificates than
    /// [`super::VerifyRequest::max_depth`] allows (RFC 5280 §6.1; self-issued certificates are
    /// not counted).
    #[error(
        "certificate chain has {depth} intermediate CA certificate(s), more than the maximum depth of {max} \
         (RFC 5280 §6.1, not counting self-issued certificates)"
    )]
    ChainTooDeep {
        /// Intermediates on the shortest path found, self-issued ones not counted.
        depth: usize,
        /// The maximum asked for.
        max: usize,
    },
    /// The end entity's key usage extension lacks bits the request requires
    /// ([`super::VerifyRequest::key_usage`]).
    #[error(
        "certificate {subject} does not allow {} (its key usage extension lacks it; RFC 5280 §4.2.1.3)",
        key_usage_list(missing)
    )]
    KeyUsageNotAllowed {
        /// Subject of the end entity.
        subject: String,
        /// The required bits it does not assert.
        missing: Vec<KeyUsage>,
    },
    /// A certificate that parses as X.509 but that rustls-webpki refuses as it stands: a version
    /// other than 3, an extension twice or with an invalid value, mismatched signature
    /// algorithms, invalid DER inside a field. It was read; it cannot be trusted.
    #[error("certificate {subject} cannot be trusted: {}", describe_certificate_error(reason))]
    UnacceptableCertificate {
        /// Subject of the certificate (`(empty subject)` when it has none).
        subject: String,
        /// rustls-webpki's reason.
        reason: RejectionReason,
    },
    /// A CRL that parses but cannot be used as it stands (RFC 5280 §5.2.3: no CRL number, or a
    /// critical one; or a kind of CRL rustls-webpki does not evaluate, such as a delta CRL).
    /// The revocation status it would give cannot be known, so nothing it covers is trusted.
    #[error("{what} cannot be used: {reason}")]
    UnacceptableCrl {
        /// The CRL (usually a file name).
        what: String,
        /// Why, citing the rule.
        reason: String,
    },
    /// Any other reason rustls-webpki gives for rejecting a chain (never one of the reasons
    /// with a variant of their own above, such as an expiry or an unknown issuer).
    #[error("certificate chain rejected: {0}")]
    Rejected(RejectionReason),
}

/// Why rustls-webpki refused a certificate, a CRL or a path, in Tessera's words: one variant
/// per reason webpki gives (its deprecated variants and their `…Context` successors share one),
/// with the times webpki reports. [`PkiError`] carries it where no variant of its own says more
/// ([`PkiError::Rejected`], [`PkiError::UnacceptableCertificate`]). `Display` says what it
/// means, never webpki's identifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectionReason {
    /// Some DER item is not valid DER (ITU-T X.690).
    #[error("a certificate or CRL is not valid DER")]
    BadDer,
    /// A DER time (UTCTime or GeneralizedTime, RFC 5280 §4.1.2.5) is malformed.
    #[error("a certificate or CRL holds a malformed time")]
    BadTime,
    /// A CA certificate was presented as the end entity.
    #[error("a CA certificate was presented as the end entity")]
    CaUsedAsEndEntity,
    /// A certificate's public key is explicitly distrusted.
    #[error("a certificate on the path is distrusted")]
    Distrusted,
    /// A certificate's validity ended before the verification time (RFC 5280 §4.1.2.5).
    #[error("a certificate on the path has expired")]
    Expired {
        /// The verification time, whole seconds.
        time: OffsetDateTime,
        /// The certificate's notAfter.
        not_after: OffsetDateTime,
    },
    /// The certificate is not valid for the name asked for (RFC 6125).
    #[error("the certificate is not valid for the requested name")]
    NotValidForName,
    /// A certificate's validity starts after the verification time (RFC 5280 §4.1.2.5).
    #[error("a certificate on the path is not valid yet")]
    NotValidYet {
        /// The verification time, whole seconds.
        time: OffsetDateTime,
        /// The certificate's notBefore.
        not_before: OffsetDateTime,
    },
    /// A CRL revokes a certificate on the path.
    #[error("a certificate on the path is revoked")]
    Revoked,
    /// A CRL is past its nextUpdate (RFC 5280 §5.1.2.5).
    #[error("a CRL is past its nextUpdate")]
    CrlExpired {
        /// The verification time, whole seconds.
        time: OffsetDateTime,
        /// The CRL's nextUpdate.
        next_update: OffsetDateTime,
    },
    /// The extended key usage extension lists no purpose (RFC 5280 §4.2.1.12).
    #[error("the extended key usage extension is empty")]
    EmptyExtendedKeyUsage,
    /// An end-entity certificate was used as an issuer (RFC 5280 §4.2.1.9).
    #[error("an end-entity certificate was used as an issuer")]
    EndEntityUsedAsCa,
    /// An extension holds an invalid value, or appears twice (RFC 5280 §4.2).
    #[error("a certificate extension holds an invalid value")]
    ExtensionValueInvalid,
    /// A certificate's notAfter is before its notBefore (RFC 5280 §4.1.2.5).
    #[error("a certificate's notAfter is before its notBefore")]
    InvalidValidity,
    /// A CRL number is mis-encoded, negative or too long (RFC 5280 §5.2.3).
    #[error("a CRL number is invalid (RFC 5280 §5.2.3)")]
    InvalidCrlNumber,
    /// An iPAddress name constraint has a mask that is not a CIDR prefix (RFC 5280 §4.2.1.10).
    #[error("an IP address name constraint has an invalid mask")]
    InvalidNetworkMask,
    /// A serial number is mis-encoded, negative or too long (RFC 5280 §4.1.2.2).
    #[error("a serial number is invalid (RFC 5280 §4.1.2.2)")]
    InvalidSerialNumber,
    /// A CRL's signature does not verify with its issuer's key.
    #[error("a CRL's signature does not verify with its issuer's key")]
    BadCrlSignature,
    /// A certificate's signature does not verify with its issuer's key.
    #[error("a signature on the path does not verify with its issuer's key")]
    BadSignature,
    /// A CRL's issuer has a key usage without cRLSign (RFC 5280 §4.2.1.3).
    #[error("a CRL's issuer may not sign CRLs (no cRLSign key usage)")]
    IssuerNotCrlSigner,
    /// A DNS name, presented or asked for, is malformed.
    #[error("a DNS name in a certificate is malformed")]
    MalformedDnsName,
    /// The extensions are malformed (RFC 5280 §4.2).
    #[error("a certificate's extensions are malformed (RFC 5280 §4.2)")]
    MalformedExtensions,
    /// A name constraint is malformed (RFC 5280 §4.2.1.10).
    #[error("a name constraint is malformed")]
    MalformedNameConstraint,
    /// Checking name constraints took more comparisons than webpki allows.
    #[error("checking name constraints took too many comparisons (a denial-of-service guard)")]
    TooManyNameConstraintComparisons,
    /// Building the path took more steps than webpki allows.
    #[error("building the path took too many steps (a denial-of-service guard)")]
    TooManyPathBuildCalls,
    /// Building the path took more signature checks than webpki allows.
    #[error("building the path took too many steps (a denial-of-service guard)")]
    TooManySignatureChecks,
    /// The path is longer than webpki allows.
    #[error("the path is longer than allowed")]
    PathTooDeep,
    /// A name is outside an issuer's name constraints (RFC 5280 §4.2.1.10).
    #[error("a name is outside its issuer's name constraints")]
    NameConstraintViolation,
    /// A CA's path length constraint is exceeded (RFC 5280 §4.2.1.9).
    #[error("a CA's path length constraint is exceeded")]
    PathLenExceeded,
    /// The certificate lacks the extended key usage asked for (RFC 5280 §4.2.1.12).
    #[error("the certificate lacks the required extended key usage")]
    RequiredEkuNotFound,
    /// A certificate's two signature algorithm fields differ (RFC 5280 §4.1.1.2).
    #[error("a certificate's two signature algorithm fields differ")]
    SignatureAlgorithmMismatch,
    /// Bytes follow a DER item.
    #[error("a certificate or CRL has trailing data after its DER")]
    TrailingData,
    /// No path leads to a trusted root.
    #[error("no path leads to a trusted root")]
    UnknownIssuer,
    /// No CRL covers a certificate on the path (never given by Tessera's verifier, which lets
    /// such certificates through).
    #[error("the revocation status is unknown (no CRL covers a certificate)")]
    UnknownRevocationStatus,
    /// A certificate is not X.509 version 3 (RFC 5280 §4.1.2.1).
    #[error("a certificate is not X.509 version 3")]
    UnsupportedCertVersion,
    /// A critical extension is not understood (RFC 5280 §4.2: such a certificate is rejected).
    #[error("a certificate has a critical extension that is not understood")]
    UnsupportedCriticalExtension,
    /// A CRL's issuing distribution point has no name, or a name relative to its issuer.
    #[error("a CRL's issuing distribution point is not supported")]
    UnsupportedCrlIssuingDistributionPoint,
    /// A CRL is not version 2 (RFC 5280 §5.1.2.1).
    #[error("a CRL is not version 2")]
    UnsupportedCrlVersion,
    /// A delta CRL (RFC 5280 §5.2.4).
    #[error("delta CRLs are not supported")]
    UnsupportedDeltaCrl,
    /// An indirect CRL (RFC 5280 §5.2.5).
    #[error("indirect CRLs are not supported")]
    UnsupportedIndirectCrl,
    /// A name of a type webpki does not check was asked for.
    #[error("a name of an unsupported type was asked for")]
    UnsupportedNameType,
    /// A CRL entry's reason code is not one of RFC 5280 §5.3.1's.
    #[error("a CRL entry has an unsupported revocation reason")]
    UnsupportedRevocationReason,
    /// CRLs partitioned by reason (RFC 5280 §5.2.5 onlySomeReasons).
    #[error("CRLs partitioned by reason are not supported")]
    UnsupportedRevocationReasonsPartitioning,
    /// A CRL is signed with an algorithm Tessera does not verify, or one that does not fit its
    /// issuer's key.
    #[error("a CRL is signed with an algorithm that is not supported")]
    UnsupportedCrlSignatureAlgorithm,
    /// A certificate is signed with an algorithm Tessera does not verify, or one that does not
    /// fit its issuer's key.
    #[error("a certificate is signed with an algorithm that is not supported")]
    UnsupportedSignatureAlgorithm,
    /// A reason a later rustls-webpki added, that this Tessera does not know by name.
    #[error("{description}")]
    Other {
        /// What it means, as far as Tessera can say.
        description: String,
    },
}

impl From<&webpki::Error> for RejectionReason {
    /// One arm per rustls-webpki reason; `_` only for variants a later webpki may add (its
    /// enum is `#[non_exhaustive]`). Deprecated variants are still matched: webpki may return
    /// them.
    #[allow(deprecated)]
    fn from(error: &webpki::Error) -> Self {
        use webpki::Error as E;
        match error {
            E::BadDer => Self::BadDer,
            E::BadDerTime => Self::BadTime,
            E::CaUsedAsEndEntity => Self::CaUsedAsEndEntity,
            E::CertDistrusted => Self::Distrusted,
            E::CertExpired { time, not_after } => Self::Expired {
                time: unix_to_time(*time),
                not_after: unix_to_time(*not_after),
            },
            E::CertNotValidForName(_) => Self::NotValidForName,
            E::CertNotValidYet { time, not_before } => Self::NotValidYet {
                time: unix_to_time(*time),
                not_before: unix_to_time(*not_before),
            },
            E::CertRevoked => Self::Revoked,
            E::CrlExpired { time, next_update } => Self::CrlExpired {
                time: unix_to_time(*time),
                next_update: unix_to_time(*next_update),
            },
            E::EmptyEkuExtension => Self::EmptyExtendedKeyUsage,
            E::EndEntityUsedAsCa => Self::EndEntityUsedAsCa,
            E::ExtensionValueInvalid => Self::ExtensionValueInvalid,
            E::InvalidCertValidity => Self::InvalidValidity,
            E::InvalidCrlNumber => Self::InvalidCrlNumber,
            E::InvalidNetworkMaskConstraint => Self::InvalidNetworkMask,
            E::InvalidSerialNumber => Self::InvalidSerialNumber,
            E::InvalidCrlSignatureForPublicKey => Self::BadCrlSignature,
            E::InvalidSignatureForPublicKey => Self::BadSignature,
            E::IssuerNotCrlSigner => Self::IssuerNotCrlSigner,
            E::MalformedDnsIdentifier => Self::MalformedDnsName,
            E::MalformedExtensions => Self::MalformedExtensions,
            E::MalformedNameConstraint => Self::MalformedNameConstraint,
            E::MaximumNameConstraintComparisonsExceeded => Self::TooManyNameConstraintComparisons,
            E::MaximumPathBuildCallsExceeded => Self::TooManyPathBuildCalls,
            E::MaximumPathDepthExceeded => Self::PathTooDeep,
            E::MaximumSignatureChecksExceeded => Self::TooManySignatureChecks,
            E::NameConstraintViolation => Self::NameConstraintViolation,
            E::PathLenConstraintViolated => Self::PathLenExceeded,
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => Self::RequiredEkuNotFound,
            E::SignatureAlgorithmMismatch => Self::SignatureAlgorithmMismatch,
            E::TrailingData(_) => Self::TrailingData,
            E::UnknownIssuer => Self::UnknownIssuer,
            E::UnknownRevocationStatus => Self::UnknownRevocationStatus,
            E::UnsupportedCertVersion => Self::UnsupportedCertVersion,
            E::UnsupportedCriticalExtension => Self::UnsupportedCriticalExtension,
            E::UnsupportedCrlIssuingDistributionPoint => Self::UnsupportedCrlIssuingDistributionPoint,
            E::UnsupportedCrlVersion => Self::UnsupportedCrlVersion,
            E::UnsupportedDeltaCrl => Self::UnsupportedDeltaCrl,
            E::UnsupportedIndirectCrl => Self::UnsupportedIndirectCrl,
            E::UnsupportedNameType => Self::UnsupportedNameType,
            E::UnsupportedRevocationReason => Self::UnsupportedRevocationReason,
            E::UnsupportedRevocationReasonsPartitioning => Self::UnsupportedRevocationReasonsPartitioning,
            E::UnsupportedCrlSignatureAlgorithm
            | E::UnsupportedCrlSignatureAlgorithmContext(_)
            | E::UnsupportedCrlSignatureAlgorithmForPublicKey
            | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => Self::UnsupportedCrlSignatureAlgorithm,
            E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => Self::UnsupportedSignatureAlgorithm,
            _ => Self::Other {
                description: "the chain breaks a rule of rustls-webpki's RFC 5280 profile".into(),
            },
        }
    }
}

/// webpki's times are whole seconds since the epoch, taken from X.509 times (years up to 9999),
/// so they always fit; the epoch stands in for one that would not.
fn unix_to_time(time: UnixTime) -> OffsetDateTime {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What an x509-parser error means, in words: "it ends too early (truncated)" rather than
/// `Parsing Error: NomError(Eof)`.
pub(crate) fn describe_x509(error: &x509_parser::nom::Err<x509_parser::error::X509Error>) -> String {
    use x509_parser::error::X509Error;
    use x509_parser::nom::{Err, error::ErrorKind};
    match error {
        Err::Incomplete(_)
        | Err::Error(X509Error::NomError(ErrorKind::Eof))
        | Err::Failure(X509Error::NomError(ErrorKind::Eof)) => "it ends too early (truncated or cut short)".into(),
        Err::Error(X509Error::NomError(_) | X509Error::Der(_))
        | Err::Failure(X509Error::NomError(_) | X509Error::Der(_)) => "its DER encoding is malformed".into(),
        Err::Error(e) | Err::Failure(e) => format!("it is malformed ({e})"),
    }
}

impl PkiError {
    /// True when the check ran and said "not trusted" (exit code 1 in the tools); false when it
    /// could not run: unreadable or unusable input, a wrong passphrase, no root (exit code 3).
    /// See the module documentation.
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Io { .. }
            | Self::Malformed { .. }
            | Self::Missing { .. }
            | Self::PassphraseRequired { .. }
            | Self::WrongPassphrase { .. }
            | Self::UnsupportedEncryption { .. }
            | Self::UnsupportedKey { .. }
            | Self::AlreadyExists { .. }
            | Self::NoRoots => false,
            Self::Expired { .. }
            | Self::NotYetValid { .. }
            | Self::Revoked { .. }
            | Self::WrongUsage { .. }
            | Self::NameMismatch { .. }
            | Self::UnknownIssuer
            | Self::BadCaUse { .. }
            | Self::NameConstraintViolation
            | Self::UnsupportedNameConstraint { .. }
            | Self::PathLenExceeded
            | Self::BadSignature
            | Self::RevocationUnknown { .. }
            | Self::ProfileViolation { .. }
            | Self::Policy { .. }
            | Self::ChainTooDeep { .. }
            | Self::KeyUsageNotAllowed { .. }
            | Self::UnacceptableCertificate { .. }
            | Self::UnacceptableCrl { .. }
            | Self::Rejected(_) => true,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Why rustls-webpki refuses a certificate it was given to parse, in words.
fn describe_certificate_error(reason: &RejectionReason) -> String {
    use RejectionReason as R;
    match reason {
        R::UnsupportedCertVersion => "it is not an X.509 version 3 certificate (RFC 5280 §4.1.2.1)".into(),
        R::ExtensionValueInvalid => {
            "an extension appears twice or holds an invalid value (RFC 5280 §4.2: each extension at most once)".into()
        }
        R::MalformedExtensions => "its extensions are malformed (RFC 5280 §4.2)".into(),
        R::SignatureAlgorithmMismatch => {
            "its two signature algorithm fields differ (RFC 5280 §4.1.1.2: they must be identical)".into()
        }
        R::UnsupportedCriticalExtension => {
            "it has a critical extension Tessera does not recognise (RFC 5280 §4.2)".into()
        }
        R::InvalidSerialNumber => "its serial number is not a positive integer (RFC 5280 §4.1.2.2)".into(),
        R::BadDer | R::BadTime | R::TrailingData => format!("{reason} (RFC 5280 §4.1, ITU-T X.690)"),
        other => other.to_string(),
    }
}

/// An error and its causes on one line, `error: cause: cause's cause`, leaving out a cause whose
/// text the line already holds (a wrapper that repeats its source's message). The one joiner of
/// Tessera: the tools' `error:` lines and `--json` failures (`tessera::cli::error_chain`) and the
/// channel's reload log use it.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// What the translation of a rustls-webpki error may look at to say more than webpki does: the
/// chain as presented, the trust store's roots and CRLs, and the question asked.
pub(super) struct Presented<'a> {
    /// The end-entity certificate.
    pub(super) end_entity: &'a CertificateDer<'a>,
    /// The candidate intermediates, as given.
    pub(super) intermediates: &'a [CertificateDer<'a>],
    /// The trusted roots.
    pub(super) roots: &'a [CertificateDer<'static>],
    /// The CRLs held.
    pub(super) crls: &'a [Arc<super::revocation::Crl>],
    /// The question asked.
    pub(super) request: &'a VerifyRequest,
}

/// A certificate's subject as a message shows it: `in the chain` when it is not known.
pub(crate) fn in_the_chain(subject: &Option<String>) -> &str {
    subject.as_deref().unwrap_or("in the chain")
}

impl Presented<'_> {
    /// Turns a rustls-webpki error from path building into a precise, human-meaningful reason:
    /// the [`PkiError`] variant for its [`RejectionReason`], with what the chain says around it.
    pub(super) fn explain(&self, error: &webpki::Error) -> PkiError {
        use RejectionReason as R;
        let time = self.request.time;
        let reason = R::from(error);
        match reason {
            R::Expired { not_after, .. } => PkiError::Expired {
                subject: self.subject_where(|c| c.not_after == not_after, |c| c.not_after < time),
                not_after,
                time,
            },
            R::NotValidYet { not_before, .. } => PkiError::NotYetValid {
                subject: self.subject_where(|c| c.not_before == not_before, |c| c.not_before > time),
                not_before,
                time,
            },
            R::Revoked => self.revoked_entry(),
            R::RequiredEkuNotFound | R::EmptyExtendedKeyUsage => PkiError::WrongUsage {
                usage: self.request.usage,
            },
            R::UnknownIssuer => PkiError::UnknownIssuer,
            R::CaUsedAsEndEntity => PkiError::BadCaUse {
                reason: "a CA certificate was presented as the end entity",
            },
            R::EndEntityUsedAsCa => PkiError::BadCaUse {
                reason: "an end-entity certificate was used as an issuer",
            },
            R::NameConstraintViolation => self
                .unevaluated_constraint()
                .unwrap_or(PkiError::NameConstraintViolation),
            R::PathLenExceeded => PkiError::PathLenExceeded,
            R::BadSignature => PkiError::BadSignature,
            R::CrlExpired { next_update, .. } => PkiError::RevocationUnknown {
                reason: format!(
                    "a CRL expired at {}; fetch or regenerate a fresh one (`ca crl`)",
                    rfc3339(next_update)
                ),
            },
            R::BadCrlSignature | R::IssuerNotCrlSigner => PkiError::RevocationUnknown {
                reason: "a CRL is not validly signed by its issuer".into(),
            },
            R::BadDer
            | R::BadTime
            | R::Distrusted
            | R::NotValidForName
            | R::ExtensionValueInvalid
            | R::InvalidValidity
            | R::InvalidCrlNumber
            | R::InvalidNetworkMask
            | R::InvalidSerialNumber
            | R::MalformedDnsName
            | R::MalformedExtensions
            | R::MalformedNameConstraint
            | R::TooManyNameConstraintComparisons
            | R::TooManyPathBuildCalls
            | R::TooManySignatureChecks
            | R::PathTooDeep
            | R::SignatureAlgorithmMismatch
            | R::TrailingData
            | R::UnknownRevocationStatus
            | R::UnsupportedCertVersion
            | R::UnsupportedCriticalExtension
            | R::UnsupportedCrlIssuingDistributionPoint
            | R::UnsupportedCrlVersion
            | R::UnsupportedDeltaCrl
            | R::UnsupportedIndirectCrl
            | R::UnsupportedNameType
            | R::UnsupportedRevocationReason
            | R::UnsupportedRevocationReasonsPartitioning
            | R::UnsupportedCrlSignatureAlgorithm
            | R::UnsupportedSignatureAlgorithm
            | R::Other { .. } => PkiError::Rejected(reason),
        }
    }

    /// The subject of the first certificate presented (end entity, then intermediates) that
    /// `exact` picks, else that `loose` picks.
    fn subject_where(
        &self,
        exact: impl Fn(&CertificateInfo) -> bool,
        loose: impl Fn(&CertificateInfo) -> bool,
    ) -> Option<String> {
        let chain: Vec<CertificateInfo> = std::iter::once(self.end_entity)
            .chain(self.intermediates.iter())
            .filter_map(|c| CertificateInfo::from_der(c).ok())
            .collect();
        let found = chain
            .iter()
            .find(|c| exact(c))
            .or_else(|| chain.iter().find(|c| loose(c)));
        found.map(|c| c.subject.clone())
    }

    /// rustls-webpki evaluates DNS and IP address constraints only: a subtree of any other form
    /// (e-mail address, URI, directory name, …) makes every name of that form below it a
    /// violation. When that is why a chain failed, say so, naming the CA and the name.
    fn unevaluated_constraint(&self) -> Option<PkiError> {
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
        let parsed: Vec<_> = std::iter::once(self.end_entity)
            .chain(self.intermediates.iter())
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

    /// Finds which certificate on the chain a CRL revokes, and why (RFC 5280 §5.3.1), for the
    /// message. rustls-webpki found one; should it be unreadable here, the revocation status is
    /// reported as unknown (still a refusal) rather than a serial made up.
    fn revoked_entry(&self) -> PkiError {
        for cert in std::iter::once(self.end_entity).chain(self.intermediates.iter()) {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
                continue;
            };
            for crl in self.crls {
                if crl.issuer() != name_contents(parsed.issuer().as_raw()) {
                    continue;
                }
                if let Some(reason) = crl.find(parsed.raw_serial()) {
                    return PkiError::Revoked {
                        serial: Serial::from_octets(parsed.raw_serial()),
                        reason: RevocationReason::from_crl_code(reason.map(|r| r as u8)),
                    };
                }
            }
        }
        PkiError::RevocationUnknown {
            reason: "a CRL revokes a certificate on the path, but which one cannot be read".into(),
        }
    }
}

/// rustls-webpki refuses `der` as an end entity: a rejection when x509-parser reads it (the
/// input was read; its contents break a rule), unusable input otherwise.
pub(super) fn unacceptable_certificate(der: &CertificateDer<'_>, error: &webpki::Error) -> PkiError {
    let reason = RejectionReason::from(error);
    match x509_parser::parse_x509_certificate(der) {
        // RFC 5280 4.2: a certificate with a critical extension the verifier does not know must
        // be rejected.
        Ok((_, cert)) if reason == RejectionReason::UnsupportedCriticalExtension => PkiError::ProfileViolation {
            subject: subject_of(&cert),
            rule: ProfileRule::UnknownCriticalExtension,
        },
        Ok((_, cert)) => PkiError::UnacceptableCertificate {
            subject: subject_of(&cert),
            reason,
        },
        Err(_) => PkiError::malformed("certificate", format!("cannot be parsed: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2030-06-01 0:00 UTC);

    fn unix(time: OffsetDateTime) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            time.unix_timestamp().try_into().unwrap(),
        ))
    }

    /// Which [`PkiError`] variant a reason must become (the chain in [`translate`] is empty).
    #[derive(Debug, PartialEq)]
    enum Becomes {
        Expired,
        NotYetValid,
        Revoked,
        WrongUsage,
        UnknownIssuer,
        BadCaUse,
        NameConstraintViolation,
        PathLenExceeded,
        BadSignature,
        RevocationUnknown,
        Rejected,
    }

    fn becomes(error: &PkiError) -> Becomes {
        match error {
            PkiError::Expired { .. } => Becomes::Expired,
            PkiError::NotYetValid { .. } => Becomes::NotYetValid,
            PkiError::Revoked { .. } => Becomes::Revoked,
            PkiError::WrongUsage { .. } => Becomes::WrongUsage,
            PkiError::UnknownIssuer => Becomes::UnknownIssuer,
            PkiError::BadCaUse { .. } => Becomes::BadCaUse,
            PkiError::NameConstraintViolation => Becomes::NameConstraintViolation,
            PkiError::PathLenExceeded => Becomes::PathLenExceeded,
            PkiError::BadSignature => Becomes::BadSignature,
            PkiError::RevocationUnknown { .. } => Becomes::RevocationUnknown,
            PkiError::Rejected(_) => Becomes::Rejected,
            other => panic!("no webpki reason becomes {other:?}"),
        }
    }

    /// [`Presented::explain`] on an end entity that is no certificate, with no roots or CRLs.
    fn translate(error: &webpki::Error) -> PkiError {
        let garbage = CertificateDer::from(vec![0x30, 0x00]);
        let request = VerifyRequest::new(Usage::Server, NOW);
        Presented {
            end_entity: &garbage,
            intermediates: &[],
            roots: &[],
            crls: &[],
            request: &request,
        }
        .explain(error)
    }

    /// Every reason rustls-webpki 0.103 gives, the [`RejectionReason`] it maps to, and the
    /// [`PkiError`] variant `verify` reports for it.
    #[allow(deprecated)]
    fn every_webpki_reason() -> Vec<(webpki::Error, RejectionReason, Becomes)> {
        use webpki::Error as E;
        use {Becomes as B, RejectionReason as R};
        let then = datetime!(2030-01-01 0:00 UTC);
        let eku = webpki::RequiredEkuNotFoundContext {
            required: webpki::KeyUsage::server_auth(),
            present: Vec::new(),
        };
        let algorithm = webpki::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: vec![0x06],
            supported_algorithms: Vec::new(),
        };
        let for_key = webpki::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id: vec![0x06],
            public_key_algorithm_id: vec![0x06],
        };
        let name = webpki::InvalidNameContext {
            expected: rustls_pki_types::ServerName::try_from("example.com").unwrap(),
            presented: Vec::new(),
        };
        vec![
            (E::BadDer, R::BadDer, B::Rejected),
            (E::BadDerTime, R::BadTime, B::Rejected),
            (E::CaUsedAsEndEntity, R::CaUsedAsEndEntity, B::BadCaUse),
            (E::CertDistrusted, R::Distrusted, B::Rejected),
            (
                E::CertExpired {
                    time: unix(NOW),
                    not_after: unix(then),
                },
                R::Expired {
                    time: NOW,
                    not_after: then,
                },
                B::Expired,
            ),
            (E::CertNotValidForName(name), R::NotValidForName, B::Rejected),
            (
                E::CertNotValidYet {
                    time: unix(then),
                    not_before: unix(NOW),
                },
                R::NotValidYet {
                    time: then,
                    not_before: NOW,
                },
                B::NotYetValid,
            ),
            // `translate` presents an unreadable chain: which certificate is revoked cannot be
            // said, so no serial is made up (a readable one gives `Revoked { serial, reason }`,
            // see trust.rs `a_revocation_names_the_serial_and_reason`).
            (E::CertRevoked, R::Revoked, B::RevocationUnknown),
            (
                E::CrlExpired {
                    time: unix(NOW),
                    next_update: unix(then),
                },
                R::CrlExpired {
                    time: NOW,
                    next_update: then,
                },
                B::RevocationUnknown,
            ),
            (E::EmptyEkuExtension, R::EmptyExtendedKeyUsage, B::WrongUsage),
            (E::EndEntityUsedAsCa, R::EndEntityUsedAsCa, B::BadCaUse),
            (E::ExtensionValueInvalid, R::ExtensionValueInvalid, B::Rejected),
            (E::InvalidCertValidity, R::InvalidValidity, B::Rejected),
            (E::InvalidCrlNumber, R::InvalidCrlNumber, B::Rejected),
            (E::InvalidNetworkMaskConstraint, R::InvalidNetworkMask, B::Rejected),
            (E::InvalidSerialNumber, R::InvalidSerialNumber, B::Rejected),
            (
                E::InvalidCrlSignatureForPublicKey,
                R::BadCrlSignature,
                B::RevocationUnknown,
            ),
            (E::InvalidSignatureForPublicKey, R::BadSignature, B::BadSignature),
            (E::IssuerNotCrlSigner, R::IssuerNotCrlSigner, B::RevocationUnknown),
            (E::MalformedDnsIdentifier, R::MalformedDnsName, B::Rejected),
            (E::MalformedExtensions, R::MalformedExtensions, B::Rejected),
            (E::MalformedNameConstraint, R::MalformedNameConstraint, B::Rejected),
            (
                E::MaximumNameConstraintComparisonsExceeded,
                R::TooManyNameConstraintComparisons,
                B::Rejected,
            ),
            (E::MaximumPathBuildCallsExceeded, R::TooManyPathBuildCalls, B::Rejected),
            (E::MaximumPathDepthExceeded, R::PathTooDeep, B::Rejected),
            (
                E::MaximumSignatureChecksExceeded,
                R::TooManySignatureChecks,
                B::Rejected,
            ),
            (
                E::NameConstraintViolation,
                R::NameConstraintViolation,
                B::NameConstraintViolation,
            ),
            (E::PathLenConstraintViolated, R::PathLenExceeded, B::PathLenExceeded),
            (E::RequiredEkuNotFound, R::RequiredEkuNotFound, B::WrongUsage),
            (
                E::RequiredEkuNotFoundContext(eku),
                R::RequiredEkuNotFound,
                B::WrongUsage,
            ),
            (
                E::SignatureAlgorithmMismatch,
                R::SignatureAlgorithmMismatch,
                B::Rejected,
            ),
            (
                E::TrailingData(webpki::DerTypeId::Certificate),
                R::TrailingData,
                B::Rejected,
            ),
            (E::UnknownIssuer, R::UnknownIssuer, B::UnknownIssuer),
            (E::UnknownRevocationStatus, R::UnknownRevocationStatus, B::Rejected),
            (E::UnsupportedCertVersion, R::UnsupportedCertVersion, B::Rejected),
            (
                E::UnsupportedCriticalExtension,
                R::UnsupportedCriticalExtension,
                B::Rejected,
            ),
            (
                E::UnsupportedCrlIssuingDistributionPoint,
                R::UnsupportedCrlIssuingDistributionPoint,
                B::Rejected,
            ),
            (E::UnsupportedCrlVersion, R::UnsupportedCrlVersion, B::Rejected),
            (E::UnsupportedDeltaCrl, R::UnsupportedDeltaCrl, B::Rejected),
            (E::UnsupportedIndirectCrl, R::UnsupportedIndirectCrl, B::Rejected),
            (E::UnsupportedNameType, R::UnsupportedNameType, B::Rejected),
            (
                E::UnsupportedRevocationReason,
                R::UnsupportedRevocationReason,
                B::Rejected,
            ),
            (
                E::UnsupportedRevocationReasonsPartitioning,
                R::UnsupportedRevocationReasonsPartitioning,
                B::Rejected,
            ),
            (
                E::UnsupportedCrlSignatureAlgorithm,
                R::UnsupportedCrlSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedCrlSignatureAlgorithmContext(algorithm.clone()),
                R::UnsupportedCrlSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedCrlSignatureAlgorithmForPublicKey,
                R::UnsupportedCrlSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(for_key.clone()),
                R::UnsupportedCrlSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedSignatureAlgorithm,
                R::UnsupportedSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedSignatureAlgorithmContext(algorithm),
                R::UnsupportedSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedSignatureAlgorithmForPublicKey,
                R::UnsupportedSignatureAlgorithm,
                B::Rejected,
            ),
            (
                E::UnsupportedSignatureAlgorithmForPublicKeyContext(for_key),
                R::UnsupportedSignatureAlgorithm,
                B::Rejected,
            ),
        ]
    }

    /// Every webpki reason maps to the Tessera reason and `PkiError` variant of the table, is a
    /// rejection, and is said in words: no webpki identifier (`MalformedDnsIdentifier`) or
    /// `Debug` form reaches a message.
    #[test]
    fn every_webpki_reason_has_a_tessera_variant() {
        let table = every_webpki_reason();
        // The 51 variants of rustls-webpki 0.103's `Error`, deprecated ones included.
        assert_eq!(table.len(), 51);
        for (webpki, reason, variant) in table {
            assert_eq!(RejectionReason::from(&webpki), reason, "{webpki:?}");
            let error = translate(&webpki);
            assert_eq!(becomes(&error), variant, "{webpki:?} became {error:?}");
            assert!(error.is_rejection(), "{error:?}");
            let debug = format!("{webpki:?}");
            let identifier = debug.split(['(', ' ', '{']).next().unwrap_or_default();
            for text in [reason.to_string(), error.to_string()] {
                assert!(!text.contains(identifier), "{identifier} in {text:?}");
                // Lowercase, as every message; an acronym may lead.
                let first_word = text.split(' ').next().unwrap_or_default();
                assert!(
                    first_word == "CRLs" || first_word.chars().next().is_some_and(char::is_lowercase),
                    "{text:?}"
                );
            }
        }
    }

    /// webpki's context is kept: the expiry's `not_after` (not the verification time), and the
    /// time asked about.
    #[test]
    fn an_expiry_keeps_its_times() {
        let then = datetime!(2030-01-01 0:00 UTC);
        let error = translate(&webpki::Error::CertExpired {
            time: unix(NOW),
            not_after: unix(then),
        });
        match &error {
            PkiError::Expired { not_after, time, .. } => assert_eq!((*not_after, *time), (then, NOW)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "certificate in the chain expired at 2030-01-01T00:00:00Z (checked at 2030-06-01T00:00:00Z)"
        );
        let error = translate(&webpki::Error::CrlExpired {
            time: unix(NOW),
            next_update: unix(then),
        });
        assert_eq!(
            error.to_string(),
            "revocation status could not be determined: a CRL expired at 2030-01-01T00:00:00Z; fetch or \
             regenerate a fresh one (`ca crl`)"
        );
    }

    /// Kind 9 of issue 7: webpki's reasons are words, in the messages they always had.
    #[test]
    fn webpki_reasons_are_words() {
        let message = PkiError::Rejected(RejectionReason::MalformedDnsName).to_string();
        assert_eq!(
            message,
            "certificate chain rejected: a DNS name in a certificate is malformed"
        );
        let unacceptable = PkiError::UnacceptableCertificate {
            subject: "CN=x".into(),
            reason: RejectionReason::TrailingData,
        };
        assert_eq!(
            unacceptable.to_string(),
            "certificate CN=x cannot be trusted: a certificate or CRL has trailing data after its DER (RFC 5280 \
             §4.1, ITU-T X.690)"
        );
        let other = RejectionReason::Other {
            description: "the chain breaks a rule of rustls-webpki's RFC 5280 profile".into(),
        };
        assert_eq!(
            PkiError::Rejected(other).to_string(),
            "certificate chain rejected: the chain breaks a rule of rustls-webpki's RFC 5280 profile"
        );
    }

    /// One variant of each class: a rejection (the check said no) or not (it could not run).
    #[test]
    fn is_rejection_separates_no_from_could_not_run() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let could_not_run = [
            PkiError::io("f", io()),
            PkiError::malformed("f", "x"),
            PkiError::Missing {
                what: "f".into(),
                expected: "CERTIFICATE",
            },
            PkiError::PassphraseRequired { what: "f".into() },
            PkiError::WrongPassphrase { what: "f".into() },
            PkiError::UnsupportedEncryption {
                what: "f".into(),
                scheme: "s".into(),
                reason: "r".into(),
                conversion: "c",
            },
            PkiError::UnsupportedKey {
                what: "f".into(),
                algorithm: "RSA".into(),
            },
            PkiError::AlreadyExists { path: "f".into() },
            PkiError::NoRoots,
        ];
        for error in could_not_run {
            assert!(!error.is_rejection(), "{error:?}");
        }
        let rejections = [
            translate(&webpki::Error::CertExpired {
                time: unix(NOW),
                not_after: unix(NOW),
            }),
            PkiError::Revoked {
                serial: "01".parse().unwrap(),
                reason: RevocationReason::Unspecified,
            },
            PkiError::NameMismatch { name: "x".into() },
            PkiError::UnsupportedNameConstraint {
                issuer: "CN=ca".into(),
                form: "URIs",
                name: "uri:x".into(),
            },
            PkiError::ProfileViolation {
                subject: "CN=x".into(),
                rule: ProfileRule::NotX509,
            },
            PkiError::Policy {
                subject: "CN=x".into(),
                violation: PolicyViolation::AnyExtendedKeyUsage,
            },
            PkiError::ChainTooDeep { depth: 2, max: 1 },
            PkiError::KeyUsageNotAllowed {
                subject: "CN=x".into(),
                missing: vec![KeyUsage::KeyAgreement],
            },
            PkiError::UnacceptableCertificate {
                subject: "CN=x".into(),
                reason: RejectionReason::BadDer,
            },
            PkiError::UnacceptableCrl {
                what: "crl".into(),
                reason: "r".into(),
            },
            PkiError::Rejected(RejectionReason::BadDer),
        ];
        for error in rejections {
            assert!(error.is_rejection(), "{error:?}");
        }
    }

    /// One joiner: causes follow the message, and a cause the message already holds is left out.
    #[test]
    fn the_error_chain_is_one_line_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot load the roots: {0}")]
        struct Repeats(#[source] PkiError);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot load the roots")]
        struct Wraps(#[source] PkiError);
        let cause = || PkiError::malformed("ca.pem", "it ends too early");
        assert_eq!(
            error_chain(&Repeats(cause())),
            "cannot load the roots: ca.pem is not valid: it ends too early"
        );
        assert_eq!(
            error_chain(&Wraps(cause())),
            "cannot load the roots: ca.pem is not valid: it ends too early"
        );
    }

    /// x509-parser's `Parsing Error: NomError(Eof)` becomes words too.
    #[test]
    fn x509_parser_reasons_are_words() {
        for bytes in [
            &[0x30u8, 0x82, 0x01, 0x00, 0x00][..],
            &[0x30, 0x03, 0x02, 0x01][..],
            &[0x04, 0x00][..],
        ] {
            let error = x509_parser::parse_x509_certificate(bytes)
                .err()
                .map(|e| describe_x509(&e));
            let text = error.unwrap_or_default();
            assert!(text.starts_with("it") && text.len() > 10, "{bytes:?}: {text}");
            assert!(!text.contains("Nom") && !text.contains("Parsing Error"), "{text}");
        }
    }
}
