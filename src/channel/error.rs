//! The one error type of the `channel` module.

use std::path::PathBuf;

use crate::pki::PkiError;

/// Why a channel operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A certificate, key or CRL file could not be loaded.
    #[error("cannot load {what}")]
    Load {
        /// What was being loaded (`certificate chain /path`, `private key /path`, …).
        what: String,
        /// The reason.
        #[source]
        source: PkiError,
    },
    /// A certificate chain file held no certificate.
    #[error("certificate chain {path} holds no certificate")]
    EmptyChain {
        /// The chain file.
        path: PathBuf,
    },
    /// The private key does not belong to the first certificate of the chain, or rustls cannot
    /// use it.
    #[error("private key cannot be used with certificate chain: {reason}")]
    UnusableKey {
        /// What rustls said.
        reason: String,
    },
    /// rustls refused to build a configuration (e.g. no protocol version left).
    #[error("cannot build the TLS configuration: {source}")]
    Config {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// A server was given an allow list but no trust store for client certificates: without
    /// client authentication nobody could be checked against the list.
    #[error("an allow list of {allowed} names needs client authentication: give a client trust store")]
    AllowListWithoutClientTrust {
        /// How many names the allow list holds.
        allowed: usize,
    },
    /// The server name given to a client is neither a DNS name nor an IP address.
    #[error("server name {name:?} is not a valid DNS name or IP address")]
    BadServerName {
        /// The name given.
        name: String,
    },
    /// The TLS handshake failed (certificate refused, protocol mismatch, peer closed, …).
    #[error("TLS handshake failed")]
    Handshake {
        /// The underlying error (usually wraps a [`rustls::Error`]).
        #[source]
        source: std::io::Error,
    },
    /// A phase did not complete within its time limit.
    #[error("{phase} timed out after {seconds} s")]
    Timeout {
        /// The phase: `handshake`, `read`, `write`, `shutdown`.
        phase: &'static str,
        /// The limit.
        seconds: f64,
    },
    /// An I/O error on an established channel.
    #[error("channel {operation} failed")]
    Io {
        /// `read`, `write`, `flush`, `shutdown`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// rustls could not rotate the traffic keys.
    #[error("key rotation failed: {source}")]
    Rotation {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// A framed message is larger than the maximum size allowed.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The size announced or given.
        size: u64,
        /// The limit in force.
        max: u64,
    },
    /// The peer closed the connection in the middle of a framed message.
    #[error("connection closed in the middle of a message ({received} of {expected} bytes)")]
    TruncatedMessage {
        /// Bytes of the message (header included) received.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
}

impl ChannelError {
    /// The rustls error underneath a handshake or I/O failure, if any (e.g. the alert the peer
    /// sent).
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match self {
            Self::Handshake { source } | Self::Io { source, .. } => {
                source.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
            }
            Self::Rotation { source } | Self::Config { source } => Some(source),
            _ => None,
        }
    }

    /// True when the peer was refused for a trust or authorization reason (exit 1 in the tools),
    /// as opposed to a failure to run.
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Handshake { source } | Self::Io { source, .. } => is_tls_refusal(source),
            _ => false,
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
fn is_refusal_alert(alert: rustls::AlertDescription) -> bool {
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
