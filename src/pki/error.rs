//! The one error type of the `pki` module.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::{Usage, rfc3339};

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
    #[error("certificate {subject} expired at {} (checked at {})", rfc3339(*not_after), rfc3339(*time))]
    Expired {
        /// Subject of the expired certificate (in the chain) or of the end entity.
        subject: String,
        /// When it stopped being valid.
        not_after: OffsetDateTime,
        /// The verification time.
        time: OffsetDateTime,
    },
    /// A certificate's validity period had not started at the verification time.
    #[error("certificate {subject} is not valid before {} (checked at {})", rfc3339(*not_before), rfc3339(*time))]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// When it becomes valid.
        not_before: OffsetDateTime,
        /// The verification time.
        time: OffsetDateTime,
    },
    /// A certificate on the path is revoked by a CRL.
    #[error("certificate {serial} is revoked ({reason})")]
    Revoked {
        /// Serial number of the revoked certificate, lowercase hex.
        serial: String,
        /// The CRL's reason code, in words (`unspecified` when the CRL gives none).
        reason: String,
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
        /// The rule it breaks, citing its source.
        rule: String,
    },
    /// Any other reason rustls-webpki gives for rejecting a chain.
    #[error("certificate chain rejected: {0:?}")]
    Rejected(webpki::Error),
}

impl PkiError {
    /// True when the check ran and said "not trusted" (as opposed to unusable input).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
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
                | Self::Rejected(_)
        )
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
