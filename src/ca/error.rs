//! The one error type of the `ca` module.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::pki::{PkiError, rfc3339};

/// Why a CA operation failed. Nothing is written when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file of the CA directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no CA (no `ca.pem`).
    #[error("{dir} is not a CA directory (no ca.pem)")]
    NotACa {
        /// The directory.
        dir: PathBuf,
    },
    /// `init` was asked to create a CA where one already exists.
    #[error("{dir} already holds a CA; refusing to overwrite it")]
    AlreadyInitialised {
        /// The directory.
        dir: PathBuf,
    },
    /// A request parameter is unusable.
    #[error("invalid {field}: {reason}")]
    InvalidRequest {
        /// The parameter (`name`, `san`, `days`, …).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The requested lifetime would outlive the issuing CA.
    #[error(
        "the certificate would expire at {}, after its issuer (which expires at {})",
        rfc3339(*requested),
        rfc3339(*issuer_not_after)
    )]
    OutlivesIssuer {
        /// The notAfter asked for.
        requested: OffsetDateTime,
        /// The issuer's notAfter.
        issuer_not_after: OffsetDateTime,
    },
    /// The issuing CA is not valid now.
    #[error(
        "the CA certificate is not valid at {} (valid from {} to {})",
        rfc3339(*time),
        rfc3339(*not_before),
        rfc3339(*not_after)
    )]
    IssuerNotValid {
        /// The time of issuance.
        time: OffsetDateTime,
        /// Issuer notBefore.
        not_before: OffsetDateTime,
        /// Issuer notAfter.
        not_after: OffsetDateTime,
    },
    /// The new certificate would not verify under the CA's chain (name constraints, path
    /// length, …): the CA refuses to issue it.
    #[error("refusing to issue: {0}")]
    Refused(#[source] PkiError),
    /// A CSR could not be parsed, or its self-signature does not verify.
    #[error("certificate signing request {what} is unusable: {reason}")]
    BadCsr {
        /// The CSR's source.
        what: String,
        /// Why.
        reason: String,
    },
    /// The database names no certificate with this serial.
    #[error("no certificate with serial {serial} was issued by this CA")]
    UnknownSerial {
        /// The serial asked for.
        serial: String,
    },
    /// The certificate is already revoked.
    #[error("certificate {serial} is already revoked")]
    AlreadyRevoked {
        /// Its serial.
        serial: String,
    },
    /// The issuance database cannot be parsed.
    #[error("issuance database {path} is damaged: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// Key, certificate or PEM trouble.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rcgen refused to build a certificate or CRL.
    #[error("cannot build {what}: {reason}")]
    Build {
        /// The object being built.
        what: &'static str,
        /// rcgen's reason.
        reason: String,
    },
}

impl CaError {
    /// True when the CA ran and refused on policy (name constraints, lifetime), as opposed to
    /// unusable input or I/O trouble.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::OutlivesIssuer { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn build(what: &'static str, e: rcgen::Error) -> Self {
        Self::Build {
            what,
            reason: e.to_string(),
        }
    }
}
