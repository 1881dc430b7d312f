//! The one error type of the `channel` module. Its messages are Tessera's own words: a TLS
//! alert by its RFC 8446 name and what it means, never a library's debug form or URL; the
//! rustls or I/O error underneath stays available ([`ChannelError::tls_error`],
//! [`ChannelError::io_error`]).

use std::fmt;
use std::path::PathBuf;

use time::OffsetDateTime;

use super::refusal::Refusal;
use super::text;
use crate::pki::{PkiError, Usage, rfc3339};

/// Why a channel operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelError {
    /// A certificate, key or CRL file could not be loaded.
    Load {
        /// What was being loaded (`certificate chain /path`, `private key /path`, …).
        what: String,
        /// The reason.
        source: PkiError,
    },
    /// A certificate chain file held no certificate.
    EmptyChain {
        /// The chain file.
        path: PathBuf,
    },
    /// The private key does not belong to the first certificate of the chain, or rustls cannot
    /// use it.
    UnusableKey {
        /// Why, in words.
        reason: String,
    },
    /// A certificate of our own cannot be used for what it is loaded for: a server certificate
    /// that is expired, not yet valid, or not for server use would make every client refuse
    /// the server.
    UnsuitableCertificate {
        /// The file it came from (`certificate chain /path`).
        what: String,
        /// The subject of the certificate concerned (untrusted text, escaped when displayed).
        subject: String,
        /// What is wrong with it.
        problem: CertificateProblem,
    },
    /// A file to read is not a regular file (a FIFO, a device, a directory, a socket): reading
    /// it could block forever or never end.
    NotAFile {
        /// What the file was to hold (`certificate chain`, `private key`, …).
        what: String,
        /// The path.
        path: PathBuf,
        /// What it is instead: `a FIFO`, `a directory`, `a character device`, …
        kind: &'static str,
    },
    /// A file to read is larger than any certificate, key or CRL file Tessera reads.
    FileTooLarge {
        /// What the file was to hold.
        what: String,
        /// The path.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes ([`crate::pki::pem::MAX_PEM_FILE`]).
        max: u64,
    },
    /// rustls refused to build a configuration (e.g. no protocol version left).
    Config {
        /// The rustls error.
        source: rustls::Error,
    },
    /// A server was given an allow list but no trust store for client certificates: without
    /// client authentication nobody could be checked against the list.
    AllowListWithoutClientTrust {
        /// How many names the allow list holds.
        allowed: usize,
    },
    /// The server name given to a client is neither a DNS name nor an IP address.
    BadServerName {
        /// The name given.
        name: String,
    },
    /// The TLS handshake failed (the peer refused us, protocol mismatch, peer closed, …).
    Handshake {
        /// The underlying error (usually wraps a [`rustls::Error`]).
        source: std::io::Error,
    },
    /// This side refused the peer's certificate during the handshake, for the reason given
    /// (the peer got the TLS alert [`Refusal`] documents).
    Refused {
        /// Why (boxed: a refusal can carry the peer's identity).
        refusal: Box<Refusal>,
        /// The handshake error (wraps the [`rustls::Error`] that selected the alert).
        source: std::io::Error,
    },
    /// A phase did not complete within its time limit.
    Timeout {
        /// The phase: `handshake`, `read`, `write`, `shutdown`, `reload`, ….
        phase: &'static str,
        /// The limit.
        seconds: f64,
    },
    /// An I/O error on an established channel.
    Io {
        /// `read`, `write`, `flush`, `shutdown`.
        operation: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// rustls could not rotate the traffic keys.
    Rotation {
        /// The rustls error.
        source: rustls::Error,
    },
    /// A framed message is larger than the maximum size allowed.
    MessageTooLarge {
        /// The size announced or given.
        size: u64,
        /// The limit in force.
        max: u64,
    },
    /// The peer closed the connection before a message (or an echo) was complete.
    TruncatedMessage {
        /// Bytes of the message received (for framed messages, header included).
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// Reloads already running (stuck on a file that does not answer) reached the limit
    /// ([`super::MAX_RUNNING_RELOADS`]); no new one was started.
    ReloadBusy {
        /// How many are running.
        running: usize,
    },
    /// A blocking task (file reading, key decryption) ended without a result: it panicked, or
    /// the runtime is shutting down.
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
    },
    /// The PROXY protocol header that starts a connection is missing, malformed, too large or
    /// cut short, or came from a peer that may not send one.
    ProxyHeader {
        /// What is wrong.
        problem: super::proxy::ProxyProblem,
    },
    /// A session ticket key file could not be used (unreadable, open to group or others, not
    /// base64 keys of the right size, …). The message names the file and the line, never a key.
    TicketKeys {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What is wrong with a certificate of our own (see [`ChannelError::UnsuitableCertificate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Its validity ended before now.
    Expired {
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// Its validity starts after now.
    NotYetValid {
        /// Start of validity.
        not_before: OffsetDateTime,
    },
    /// Its extended key usage does not include the usage (e.g. a client certificate given
    /// to a server).
    WrongUsage {
        /// The usage needed.
        usage: Usage,
        /// The extended key usages it has (`clientAuth`, `codeSigning`, an OID, …).
        extended_key_usage: Vec<String>,
    },
    /// Its key usage does not allow digital signatures, which every TLS 1.3 handshake needs
    /// (RFC 5280 §4.2.1.3, RFC 8446 §4.4.3).
    NoDigitalSignature {
        /// The key usages it has.
        key_usage: Vec<String>,
    },
    /// It is a CA certificate, which TLS peers refuse as an end entity.
    CaCertificate,
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired { not_after } => write!(f, "it expired at {}", rfc3339(*not_after)),
            Self::NotYetValid { not_before } => write!(f, "it is not valid before {}", rfc3339(*not_before)),
            Self::WrongUsage {
                usage,
                extended_key_usage,
            } => write!(
                f,
                "it is not for {usage} use (its extended key usage is {})",
                text::escape(&extended_key_usage.join(", "))
            ),
            Self::NoDigitalSignature { key_usage } => write!(
                f,
                "its key usage ({}) does not allow the digital signatures a TLS handshake needs",
                text::escape(&key_usage.join(", "))
            ),
            Self::CaCertificate => f.write_str("it is a CA certificate, not an end-entity certificate"),
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load { what, .. } => write!(f, "cannot load {what}"),
            Self::EmptyChain { path } => write!(f, "certificate chain {} holds no certificate", path.display()),
            Self::UnusableKey { reason } => {
                write!(f, "private key cannot be used with the certificate chain: {reason}")
            }
            Self::UnsuitableCertificate { what, subject, problem } => {
                write!(
                    f,
                    "{what}: certificate {} cannot be used: {problem}",
                    text::escape(subject)
                )
            }
            Self::NotAFile { what, path, kind } => {
                write!(f, "{what} {} is {kind}, not a regular file", path.display())
            }
            Self::FileTooLarge { what, path, size, max } => write!(
                f,
                "{what} {} is {size} bytes, more than the {max} bytes a certificate, key or CRL file may hold",
                path.display()
            ),
            Self::Config { source } => write!(f, "cannot build the TLS configuration: {}", text::tls_error(source)),
            Self::AllowListWithoutClientTrust { allowed } => write!(
                f,
                "an allow list of {allowed} names needs client authentication: give a client trust store"
            ),
            Self::BadServerName { name } => write!(
                f,
                "server name \"{}\" is not a valid DNS name or IP address",
                text::escape(name)
            ),
            Self::Handshake { source } => write!(f, "TLS handshake failed: {}", text::handshake_io_error(source)),
            Self::Refused { refusal, .. } => write!(f, "the peer's certificate was refused: {refusal}"),
            Self::Timeout { phase, seconds } => write!(f, "{phase} timed out after {seconds} s"),
            Self::Io { operation, source } => write!(f, "channel {operation} failed: {}", text::io_error(source)),
            Self::Rotation { source } => write!(f, "key rotation failed: {}", text::tls_error(source)),
            Self::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the maximum of {max} bytes")
            }
            Self::TruncatedMessage { received: 0, expected } => write!(
                f,
                "the peer closed the connection before sending any of the {expected} bytes expected"
            ),
            Self::TruncatedMessage { received, expected } => write!(
                f,
                "the peer closed the connection after {received} of the {expected} bytes expected"
            ),
            Self::ReloadBusy { running } => write!(
                f,
                "{running} earlier reloads are still reading files that do not answer; no new reload was started"
            ),
            Self::ProxyHeader { problem } => write!(f, "{problem}"),
            Self::TicketKeys { path, reason } => {
                write!(f, "session ticket key file {}: {reason}", path.display())
            }
            Self::TaskFailed { task } => {
                write!(
                    f,
                    "{task} ended without a result (it failed, or the program is stopping)"
                )
            }
        }
    }
}

impl std::error::Error for ChannelError {
    /// The cause, when its own message adds to this one: the [`PkiError`] of a load. The rustls
    /// and I/O errors of handshakes and connections are already described in this error's
    /// message (their own text is a library's); get them with [`ChannelError::tls_error`] and
    /// [`ChannelError::io_error`].
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Load { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ChannelError {
    /// The rustls error underneath a handshake or I/O failure, if any (e.g. the alert the peer
    /// sent).
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match self {
            Self::Handshake { source } | Self::Io { source, .. } | Self::Refused { source, .. } => {
                source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
            }
            Self::Rotation { source } | Self::Config { source } => Some(source),
            _ => None,
        }
    }

    /// The I/O error underneath a handshake or connection failure.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Self::Handshake { source } | Self::Io { source, .. } | Self::Refused { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Why this side refused the peer's certificate, when it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }

    /// The alert by which the peer refused us or ended the connection, if it sent one.
    pub fn peer_alert(&self) -> Option<rustls::AlertDescription> {
        match self.tls_error() {
            Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
            _ => None,
        }
    }

    /// True when one side refused the other for a trust or authorization reason, or a file
    /// loaded was refused by a trust rule (exit 1 in the tools), as opposed to a failure to run
    /// (exit 3). See [`crate::pki::PkiError::is_rejection`].
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Refused { .. } => true,
            Self::Handshake { source } | Self::Io { source, .. } => is_tls_refusal(source),
            Self::Load { source, .. } => source.is_rejection(),
            Self::EmptyChain { .. }
            | Self::UnusableKey { .. }
            | Self::UnsuitableCertificate { .. }
            | Self::NotAFile { .. }
            | Self::FileTooLarge { .. }
            | Self::Config { .. }
            | Self::AllowListWithoutClientTrust { .. }
            | Self::BadServerName { .. }
            | Self::Timeout { .. }
            | Self::Rotation { .. }
            | Self::MessageTooLarge { .. }
            | Self::TruncatedMessage { .. }
            | Self::ReloadBusy { .. }
            | Self::TaskFailed { .. }
            | Self::ProxyHeader { .. }
            | Self::TicketKeys { .. } => false,
        }
    }
}

/// True when an I/O error carries a rustls refusal: a certificate we did not trust, an alert
/// from the peer (which is how a TLS 1.3 server refuses a client certificate), or no common
/// protocol.
pub(crate) fn is_tls_refusal(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::PeerIncompatible(_)
                    | rustls::Error::NoCertificatesPresented
            ) || matches!(e, rustls::Error::AlertReceived(alert) if is_refusal_alert(*alert))
        })
}

/// Alerts by which a peer refuses us or our certificate (rather than failing).
pub(crate) fn is_refusal_alert(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::ProtocolVersion
    )
}

#[cfg(test)]
mod tests {
    use rustls::AlertDescription as A;

    use super::*;

    fn alert(description: A) -> ChannelError {
        ChannelError::Io {
            operation: "read",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::AlertReceived(description),
            ),
        }
    }

    #[test]
    fn only_certificate_access_and_version_alerts_are_refusals() {
        for refusal in [
            A::AccessDenied,
            A::UnknownCA,
            A::CertificateRevoked,
            A::CertificateRequired,
            A::ProtocolVersion,
        ] {
            assert!(alert(refusal).is_rejection(), "{refusal:?}");
        }
        for failure in [
            A::InternalError,
            A::DecodeError,
            A::BadRecordMac,
            A::DecryptError,
            A::UnexpectedMessage,
        ] {
            assert!(!alert(failure).is_rejection(), "{failure:?}");
        }
    }
}
