//! The channel's errors in Tessera's own words: TLS alerts by their RFC 8446 names, rustls and
//! I/O failures described for people (never a library's debug form or a documentation URL), and
//! untrusted text (names from certificates) escaped before it is shown or logged.

use std::fmt::Write as _;

use rustls::{AlertDescription, CertificateError, PeerIncompatible, ProtocolVersion};

/// The RFC 8446 §6 name of an alert (`unknown_ca`, `certificate_expired`, …); an alert number
/// for codes without a name.
pub fn alert_name(alert: AlertDescription) -> String {
    use AlertDescription as A;
    let name = match alert {
        A::CloseNotify => "close_notify",
        A::UnexpectedMessage => "unexpected_message",
        A::BadRecordMac => "bad_record_mac",
        A::DecryptionFailed => "decryption_failed",
        A::RecordOverflow => "record_overflow",
        A::DecompressionFailure => "decompression_failure",
        A::HandshakeFailure => "handshake_failure",
        A::NoCertificate => "no_certificate",
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::IllegalParameter => "illegal_parameter",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        A::DecodeError => "decode_error",
        A::DecryptError => "decrypt_error",
        A::ExportRestriction => "export_restriction",
        A::ProtocolVersion => "protocol_version",
        A::InsufficientSecurity => "insufficient_security",
        A::InternalError => "internal_error",
        A::InappropriateFallback => "inappropriate_fallback",
        A::UserCanceled => "user_canceled",
        A::NoRenegotiation => "no_renegotiation",
        A::MissingExtension => "missing_extension",
        A::UnsupportedExtension => "unsupported_extension",
        A::CertificateUnobtainable => "certificate_unobtainable",
        A::UnrecognisedName => "unrecognized_name",
        A::BadCertificateStatusResponse => "bad_certificate_status_response",
        A::BadCertificateHashValue => "bad_certificate_hash_value",
        A::UnknownPSKIdentity => "unknown_psk_identity",
        A::CertificateRequired => "certificate_required",
        A::NoApplicationProtocol => "no_application_protocol",
        A::EncryptedClientHelloRequired => "encrypted_client_hello_required",
        other => return format!("alert {}", u8::from(other)),
    };
    name.to_string()
}

/// What an alert received from the peer means for us, in a few words.
fn alert_meaning(alert: AlertDescription) -> &'static str {
    use AlertDescription as A;
    match alert {
        A::CertificateRequired => "it requires a certificate from us",
        A::UnknownCA => "it does not trust the issuer of our certificate, or could not check its revocation",
        A::BadCertificate => "it found our certificate unacceptable",
        A::UnsupportedCertificate => "our certificate is not valid for this use",
        A::CertificateRevoked => "our certificate is revoked",
        A::CertificateExpired => "our certificate is expired or not yet valid",
        A::CertificateUnknown => "it could not decide on our certificate (for example its CRL is out of date)",
        A::AccessDenied => "our certificate is trusted but not admitted",
        A::ProtocolVersion => "it does not accept our TLS version",
        A::HandshakeFailure => "it found no parameters in common with us",
        A::DecryptError => "a handshake signature did not verify",
        A::InternalError => "it failed internally",
        A::UnrecognisedName => "it does not serve the name we asked for",
        A::DecodeError | A::IllegalParameter | A::UnexpectedMessage => "it could not understand what we sent",
        _ => "the connection was refused or broken",
    }
}

/// Which protocol rule a misbehaving peer broke, in words (the variant name as a fallback).
fn misbehaviour(rule: &rustls::PeerMisbehaved) -> String {
    use rustls::PeerMisbehaved as M;
    match rule {
        M::TooManyKeyUpdateRequests => "it sent more than 32 KeyUpdate messages without application data in between \
             (rustls, like BoringSSL, allows no more; RFC 8446 section 4.6.3)"
            .into(),
        M::TooManyWarningAlertsReceived => "it sent more than 4 warning alerts".into(),
        M::TooManyRenegotiationRequests => "it asked for renegotiation more than once".into(),
        M::IllegalMiddleboxChangeCipherSpec => "it sent a ChangeCipherSpec where TLS 1.3 allows none".into(),
        M::KeyUpdateReceivedInQuicConnection => "it sent a KeyUpdate on a QUIC connection".into(),
        other => format!("{other:?}"),
    }
}

/// The version in TLS terms: `TLS 1.3`.
pub fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        ProtocolVersion::TLSv1_1 => "TLS 1.1".into(),
        ProtocolVersion::TLSv1_0 => "TLS 1.0".into(),
        other => format!("protocol 0x{:04x}", u16::from(other)),
    }
}

/// A certificate problem found by rustls (not by Tessera's verifier, whose refusals are
/// [`super::Refusal`]s).
pub(crate) fn certificate_error(error: &CertificateError) -> String {
    use CertificateError as C;
    match error {
        C::BadEncoding => "the certificate is malformed".into(),
        C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "the certificate is not yet valid".into(),
        C::Revoked => "the certificate is revoked".into(),
        C::UnhandledCriticalExtension => "the certificate has a critical extension that is not understood".into(),
        C::UnknownIssuer => "the certificate was not issued by a trusted root (unknown issuer)".into(),
        C::UnknownRevocationStatus | C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            "the certificate's revocation status could not be determined (a CRL may be out of date)".into()
        }
        C::BadSignature => "a signature in the certificate chain does not verify".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the certificate is not valid for the name asked for".into()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "the certificate is not valid for this use (extended key usage)".into()
        }
        C::ApplicationVerificationFailure => "the certificate is trusted but not admitted".into(),
        C::Other(other) => match other.0.downcast_ref::<crate::pki::PkiError>() {
            Some(pki) => super::Refusal::from_pki(pki).to_string(),
            None => "the certificate was refused".into(),
        },
        _ => "the certificate was refused".into(),
    }
}

/// A rustls error in the project's words.
pub(crate) fn tls_error(error: &rustls::Error) -> String {
    use rustls::Error as E;
    match error {
        E::AlertReceived(alert) => format!(
            "the peer sent the TLS alert {}: {}",
            alert_name(*alert),
            alert_meaning(*alert)
        ),
        E::InvalidCertificate(certificate) => {
            format!("the peer's certificate was refused: {}", certificate_error(certificate))
        }
        E::NoCertificatesPresented => "the peer presented no certificate".into(),
        E::PeerIncompatible(incompatible) => match incompatible {
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::ServerDoesNotSupportTls12Or13 => "the peer does not speak TLS 1.3".into(),
            PeerIncompatible::NoCipherSuitesInCommon => "the peer shares no cipher suite with us".into(),
            PeerIncompatible::NoKxGroupsInCommon | PeerIncompatible::KeyShareExtensionRequired => {
                "the peer shares no key exchange group with us".into()
            }
            PeerIncompatible::NoSignatureSchemesInCommon
            | PeerIncompatible::NoCertificateRequestSignatureSchemesInCommon => {
                "the peer shares no signature scheme with us".into()
            }
            _ => "the peer does not support what TLS 1.3 with Tessera requires".into(),
        },
        E::PeerMisbehaved(rule) => format!("the peer broke the TLS protocol: {}", misbehaviour(rule)),
        E::InvalidMessage(_) => "the peer sent data that is not TLS, or a damaged TLS record".into(),
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the peer sent a TLS message out of order".into()
        }
        E::DecryptError => "a TLS record could not be decrypted (damaged or tampered with in transit)".into(),
        E::PeerSentOversizedRecord => "the peer sent a TLS record larger than the protocol allows".into(),
        E::NoApplicationProtocol => "the peer shares no application protocol (ALPN) with us".into(),
        E::InconsistentKeys(_) => "the private key does not belong to the certificate".into(),
        E::HandshakeNotComplete => "the TLS handshake is not complete".into(),
        E::FailedToGetCurrentTime => "the system clock could not be read".into(),
        E::FailedToGetRandomBytes => "the system random number generator failed".into(),
        E::General(text) => format!("TLS failure: {}", escape(text)),
        _ => "TLS failure".into(),
    }
}

/// An I/O error from a TLS stream in the project's words: the rustls error it carries, or the
/// way the connection ended.
pub(crate) fn io_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return tls_error(tls);
    }
    match error.kind() {
        K::UnexpectedEof => "the peer closed the connection without TLS close_notify".into(),
        K::ConnectionReset => "the peer reset the connection".into(),
        K::ConnectionAborted => "the connection was aborted".into(),
        K::BrokenPipe => "the peer closed the connection while we were writing".into(),
        K::ConnectionRefused => "the connection was refused".into(),
        K::TimedOut => "the connection timed out".into(),
        K::InvalidData => "the peer sent data that is not TLS".into(),
        _ => escape(&error.to_string()),
    }
}

/// An I/O error that ended a handshake: as [`io_error`], except that a connection closed
/// before the handshake completed is said so.
pub(crate) fn handshake_io_error(error: &std::io::Error) -> String {
    let tls = error.get_ref().is_some_and(|e| e.is::<rustls::Error>());
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof if !tls => {
            "the peer closed the connection before the handshake completed".into()
        }
        _ => io_error(error),
    }
}

/// True for the Unicode controls that reorder text (bidirectional overrides, embeddings and
/// isolates, marks): shown raw, they can make a name read as another.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Untrusted text (a name from a certificate, a peer's message) made safe to show or log:
/// control characters and bidirectional controls are written as `\u{…}` escapes, and a
/// backslash as `\\`, so the escaped form cannot be mistaken for the original.
pub fn escape(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() || is_bidi_control(c) || c == '\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || is_bidi_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_protocol_rule_is_named() {
        let text = tls_error(&rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::TooManyKeyUpdateRequests,
        ));
        assert!(
            text.starts_with(
                "the peer broke the TLS protocol: it sent more than 32 KeyUpdate messages without application data"
            ),
            "{text}"
        );
        let other = tls_error(&rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare));
        assert_eq!(other, "the peer broke the TLS protocol: InvalidKeyShare");
    }

    #[test]
    fn untrusted_text_is_escaped() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(escape("a\nb\u{1b}[2K"), "a\\u{a}b\\u{1b}[2K");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn alerts_have_their_rfc_names() {
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(alert_name(AlertDescription::CertificateUnknown), "certificate_unknown");
        assert_eq!(alert_name(AlertDescription::Unknown(0xfe)), "alert 254");
    }

    #[test]
    fn no_library_text_in_descriptions() {
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest",
        );
        let text = io_error(&eof);
        assert!(!text.contains("docs.rs"), "{text}");
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert_eq!(
            io_error(&alert),
            "the peer sent the TLS alert certificate_required: it requires a certificate from us"
        );
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), "TLS 1.3");
    }
}
