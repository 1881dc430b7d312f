//! The one error type of the `sign` module.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::keys::KeyId;
use crate::pki::PkiError;

/// When a signer's chain was checked: at the signing time recorded in the statement, or now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckTime {
    /// At the signing time recorded in the signed statement.
    SigningTime,
    /// At the verification time.
    Now,
}

impl std::fmt::Display for CheckTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SigningTime => "at the signing time",
            Self::Now => "now",
        })
    }
}

/// Why signing or verifying a module failed.
///
/// [`SignError::is_rejection`] separates "the check ran and said no" (a tampered, truncated,
/// extended, untrusted, revoked or misnamed module: exit code 1 in `verify`) from "the check could
/// not run" (unreadable or malformed input, a wrong passphrase: exit code 3).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A file or stream could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file concerned (`-` for standard input or output).
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A signature bundle is not well formed (bad armour, bad DER, a field out of range).
    #[error("signature bundle {what} is malformed: {reason}")]
    MalformedBundle {
        /// Where the bundle came from.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A signature bundle is larger than [`super::MAX_BUNDLE_SIZE`]; nothing was allocated for it.
    #[error("signature bundle {what} is {size} bytes, more than the {max} allowed")]
    BundleTooLarge {
        /// Where the bundle came from.
        what: String,
        /// Its stated or actual size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Neither a detached signature file nor an embedded signature was found.
    #[error("no signature found for {path}: no {sig} and no embedded signature")]
    NoSignature {
        /// The module.
        path: PathBuf,
        /// The detached signature file that was looked for.
        sig: PathBuf,
    },
    /// A module given without a detached signature does not end in an embedded one.
    #[error("{what} has no embedded signature, and no detached signature was given")]
    NoEmbeddedSignature {
        /// The module (`standard input`, say).
        what: String,
    },
    /// A public key file is not an Ed25519 public key.
    #[error("{what} is not an Ed25519 public key: {reason}")]
    MalformedPublicKey {
        /// The key file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The signing key, or the key of a signer's certificate, is not Ed25519.
    #[error("{what} is not an Ed25519 key; module signatures need Ed25519 (`ca issue --key-type ed25519`)")]
    NotEd25519 {
        /// The key or certificate.
        what: String,
    },
    /// A certificate after the signer's in the chain is self-signed: a root, which bundles never
    /// carry (verifiers pin it).
    #[error(
        "certificate chain holds the self-signed certificate {subject} (a root) at position {position}; signatures never carry the root"
    )]
    RootInChain {
        /// The self-signed certificate's subject.
        subject: String,
        /// Its position in the chain, counting from 1 (the signer's certificate).
        position: usize,
    },
    /// The private key does not belong to the certificate it is to sign with.
    #[error("the private key does not match certificate {subject}")]
    KeyMismatch {
        /// Subject of the first certificate of the chain.
        subject: String,
    },
    /// The signer's certificate lacks the code-signing extended key usage, or is a CA.
    #[error("certificate {subject} is not a code-signing certificate (extended key usage: {usages})")]
    NotCodeSigning {
        /// The certificate's subject.
        subject: String,
        /// Its extended key usages, comma separated (`none` when absent).
        usages: String,
    },
    /// The signer's certificate is not valid at the signing time.
    #[error("certificate {subject} is not valid at {time} (valid {not_before} to {not_after})")]
    CertificateNotValid {
        /// The certificate's subject.
        subject: String,
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
        /// The signing time.
        time: OffsetDateTime,
    },
    /// A logical module name is empty, too long, or holds control characters.
    #[error("module name {name:?} is not acceptable: {reason}")]
    InvalidName {
        /// The name given (escaped when shown).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The signer's certificate chain is not trusted (unknown issuer, expired, revoked, wrong
    /// usage) at one of the times it must be valid.
    #[error("signer is not trusted{}: {source}", when_phrase(*when, source))]
    Untrusted {
        /// Which check failed.
        when: CheckTime,
        /// The trust store's reason.
        #[source]
        source: PkiError,
    },
    /// The bundle holds no certificate but a raw-key signature, and a trust store was given.
    #[error("module is signed with a raw key (key id {key_id}), not a certificate; verify it with --pubkey")]
    RawKeySignature {
        /// The key id of the signing key.
        key_id: KeyId,
    },
    /// The bundle is certificate-signed but only a public key was given.
    #[error("module is signed with certificate {subject}; verify it with --root")]
    CertificateSignature {
        /// Subject of the signer's certificate, if it could be read.
        subject: String,
    },
    /// A raw-key signature was made by another key than the one trusted.
    #[error("module is signed by key {actual}, not by the trusted key {expected}")]
    WrongKey {
        /// Key id of the trusted key.
        expected: KeyId,
        /// Key id named in the signature.
        actual: KeyId,
    },
    /// The certificate in the bundle is not the one the statement names.
    #[error("the signer certificate in the bundle is not the one the signed statement names")]
    SignerMismatch,
    /// The signature over the statement does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The statement says the module was signed after the verification time.
    #[error("signature claims to be made at {signed_at}, after the verification time {now}")]
    SignedInFuture {
        /// The signing time in the statement.
        signed_at: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },
    /// The module's logical name differs from the one required.
    #[error("module is signed as \"{actual}\", not \"{expected}\"")]
    WrongName {
        /// The name required by the verifier.
        expected: String,
        /// The name in the signed statement.
        actual: String,
    },
    /// The module is shorter than the signed length.
    #[error("module is truncated: {actual} bytes, signed length {expected}")]
    Truncated {
        /// The signed length.
        expected: u64,
        /// The bytes available.
        actual: u64,
    },
    /// The module has bytes beyond the signed length.
    #[error("module is extended: more than the signed length of {expected} bytes")]
    Extended {
        /// The signed length.
        expected: u64,
    },
    /// The module's digest differs from the signed digest.
    #[error("module content does not match its signature (tampered)")]
    DigestMismatch,
    /// A signed length too large to hold in memory was asked to be loaded.
    #[error("module of {length} bytes is too large to load into memory")]
    TooLargeToLoad {
        /// The signed length.
        length: u64,
    },
    /// A key or certificate could not be loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// " at the signing time" / " now" for time-dependent reasons (expiry, validity, stale CRLs);
/// nothing for reasons that hold at any time (unknown issuer, revocation, wrong usage).
fn when_phrase(when: CheckTime, source: &PkiError) -> String {
    match source {
        PkiError::Expired { .. } | PkiError::NotYetValid { .. } | PkiError::RevocationUnknown { .. } => {
            format!(" {when}")
        }
        _ => String::new(),
    }
}

impl SignError {
    /// True when the check ran and said no: the module or its signer is not to be trusted.
    /// False when the check could not run (I/O, malformed or unsupported input).
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Untrusted { source, .. } => source.is_rejection(),
            Self::RawKeySignature { .. }
            | Self::CertificateSignature { .. }
            | Self::WrongKey { .. }
            | Self::SignerMismatch
            | Self::BadSignature
            | Self::SignedInFuture { .. }
            | Self::WrongName { .. }
            | Self::Truncated { .. }
            | Self::Extended { .. }
            | Self::DigestMismatch => true,
            Self::Pki(e) => e.is_rejection(),
            Self::Io { .. }
            | Self::MalformedBundle { .. }
            | Self::BundleTooLarge { .. }
            | Self::NoSignature { .. }
            | Self::NoEmbeddedSignature { .. }
            | Self::MalformedPublicKey { .. }
            | Self::NotEd25519 { .. }
            | Self::RootInChain { .. }
            | Self::KeyMismatch { .. }
            | Self::NotCodeSigning { .. }
            | Self::CertificateNotValid { .. }
            | Self::InvalidName { .. }
            | Self::TooLargeToLoad { .. } => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::MalformedBundle {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
