//! The one error type of the `pki` module.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::policy::key_usage_list;
use super::{KeyUsage, PolicyViolation, Usage, rfc3339};

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
    #[error("certificate {subject} cannot be trusted: {}", describe_certificate_error(error))]
    UnacceptableCertificate {
        /// Subject of the certificate (`(empty subject)` when it has none).
        subject: String,
        /// rustls-webpki's reason.
        error: webpki::Error,
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
    /// Any other reason rustls-webpki gives for rejecting a chain.
    #[error("certificate chain rejected: {}", describe_webpki(.0))]
    Rejected(webpki::Error),
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

/// What a rustls-webpki error means, in words (for messages: its `Debug` form is a Rust
/// identifier, not an explanation). Deprecated variants are still matched: webpki may return them.
#[allow(deprecated, clippy::unneeded_struct_pattern)] // `{ .. }` keeps every arm alike
pub(crate) fn describe_webpki(error: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match error {
        E::BadDer { .. } => "a certificate or CRL is not valid DER",
        E::BadDerTime { .. } => "a certificate or CRL holds a malformed time",
        E::CaUsedAsEndEntity { .. } => "a CA certificate was presented as the end entity",
        E::CertDistrusted { .. } => "a certificate on the path is distrusted",
        E::CertExpired { .. } => "a certificate on the path has expired",
        E::CertNotValidForName { .. } => "the certificate is not valid for the requested name",
        E::CertNotValidYet { .. } => "a certificate on the path is not valid yet",
        E::CertRevoked { .. } => "a certificate on the path is revoked",
        E::CrlExpired { .. } => "a CRL is past its nextUpdate",
        E::EmptyEkuExtension { .. } => "the extended key usage extension is empty",
        E::EndEntityUsedAsCa { .. } => "an end-entity certificate was used as an issuer",
        E::ExtensionValueInvalid { .. } => "a certificate extension holds an invalid value",
        E::InvalidCertValidity { .. } => "a certificate's notAfter is before its notBefore",
        E::InvalidCrlNumber { .. } => "a CRL number is invalid (RFC 5280 §5.2.3)",
        E::InvalidNetworkMaskConstraint { .. } => "an IP address name constraint has an invalid mask",
        E::InvalidSerialNumber { .. } => "a serial number is invalid (RFC 5280 §4.1.2.2)",
        E::InvalidCrlSignatureForPublicKey { .. } => "a CRL's signature does not verify with its issuer's key",
        E::InvalidSignatureForPublicKey { .. } => "a signature on the path does not verify with its issuer's key",
        E::IssuerNotCrlSigner { .. } => "a CRL's issuer may not sign CRLs (no cRLSign key usage)",
        E::MalformedDnsIdentifier { .. } => "a DNS name in a certificate is malformed",
        E::MalformedExtensions { .. } => "a certificate's extensions are malformed (RFC 5280 §4.2)",
        E::MalformedNameConstraint { .. } => "a name constraint is malformed",
        E::MaximumNameConstraintComparisonsExceeded { .. } => {
            "checking name constraints took too many comparisons (a denial-of-service guard)"
        }
        E::MaximumPathBuildCallsExceeded { .. } | E::MaximumSignatureChecksExceeded { .. } => {
            "building the path took too many steps (a denial-of-service guard)"
        }
        E::MaximumPathDepthExceeded { .. } => "the path is longer than allowed",
        E::NameConstraintViolation { .. } => "a name is outside its issuer's name constraints",
        E::PathLenConstraintViolated { .. } => "a CA's path length constraint is exceeded",
        E::RequiredEkuNotFound { .. } | E::RequiredEkuNotFoundContext { .. } => {
            "the certificate lacks the required extended key usage"
        }
        E::SignatureAlgorithmMismatch { .. } => "a certificate's two signature algorithm fields differ",
        E::TrailingData { .. } => "a certificate or CRL has trailing data after its DER",
        E::UnknownIssuer { .. } => "no path leads to a trusted root",
        E::UnknownRevocationStatus { .. } => "the revocation status is unknown (no CRL covers a certificate)",
        E::UnsupportedCertVersion { .. } => "a certificate is not X.509 version 3",
        E::UnsupportedCriticalExtension { .. } => "a certificate has a critical extension that is not understood",
        E::UnsupportedCrlIssuingDistributionPoint { .. } => "a CRL's issuing distribution point is not supported",
        E::UnsupportedCrlVersion { .. } => "a CRL is not version 2",
        E::UnsupportedDeltaCrl { .. } => "delta CRLs are not supported",
        E::UnsupportedIndirectCrl { .. } => "indirect CRLs are not supported",
        E::UnsupportedNameType { .. } => "a name of an unsupported type was asked for",
        E::UnsupportedRevocationReason { .. } => "a CRL entry has an unsupported revocation reason",
        E::UnsupportedRevocationReasonsPartitioning { .. } => "CRLs partitioned by reason are not supported",
        E::UnsupportedCrlSignatureAlgorithm { .. }
        | E::UnsupportedCrlSignatureAlgorithmContext { .. }
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey { .. }
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext { .. } => {
            "a CRL is signed with an algorithm that is not supported"
        }
        E::UnsupportedSignatureAlgorithm { .. }
        | E::UnsupportedSignatureAlgorithmContext { .. }
        | E::UnsupportedSignatureAlgorithmForPublicKey { .. }
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "a certificate is signed with an algorithm that is not supported"
        }
        _ => "the chain breaks a rule of rustls-webpki's RFC 5280 profile",
    }
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
                | Self::Policy { .. }
                | Self::ChainTooDeep { .. }
                | Self::KeyUsageNotAllowed { .. }
                | Self::UnacceptableCertificate { .. }
                | Self::UnacceptableCrl { .. }
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

/// Why rustls-webpki refuses a certificate it was given to parse, in words.
fn describe_certificate_error(error: &webpki::Error) -> String {
    use webpki::Error as E;
    match error {
        E::UnsupportedCertVersion => "it is not an X.509 version 3 certificate (RFC 5280 §4.1.2.1)".into(),
        E::ExtensionValueInvalid => {
            "an extension appears twice or holds an invalid value (RFC 5280 §4.2: each extension at most once)".into()
        }
        E::MalformedExtensions => "its extensions are malformed (RFC 5280 §4.2)".into(),
        E::SignatureAlgorithmMismatch => {
            "its two signature algorithm fields differ (RFC 5280 §4.1.1.2: they must be identical)".into()
        }
        E::UnsupportedCriticalExtension => {
            "it has a critical extension Tessera does not recognise (RFC 5280 §4.2)".into()
        }
        E::InvalidSerialNumber => "its serial number is not a positive integer (RFC 5280 §4.1.2.2)".into(),
        E::BadDer | E::BadDerTime | E::TrailingData(_) => {
            format!("{} (RFC 5280 §4.1, ITU-T X.690)", describe_webpki(error))
        }
        other => describe_webpki(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kind 9 of issue 7: webpki's identifiers (`MalformedDnsIdentifier`, `BadDer`) never reach
    /// a message; its reasons are said in words.
    #[test]
    fn webpki_reasons_are_words() {
        let message = PkiError::Rejected(webpki::Error::MalformedDnsIdentifier).to_string();
        assert_eq!(
            message,
            "certificate chain rejected: a DNS name in a certificate is malformed"
        );
        for error in [
            webpki::Error::BadDer,
            webpki::Error::UnsupportedCertVersion,
            webpki::Error::UnknownIssuer,
        ] {
            let text = describe_webpki(&error);
            assert!(!text.contains(&format!("{error:?}")), "{text}");
            assert!(text.chars().next().is_some_and(char::is_lowercase), "{text}");
        }
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
