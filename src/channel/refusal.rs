//! Why this side refused its peer's certificate, as a value.
//!
//! The verifiers ([`super::TrustStoreClientVerifier`], [`super::TrustStoreServerVerifier`]) give
//! rustls the error that selects the TLS alert, and also record the full reason for the
//! handshake in progress; [`super::ChannelStream::accept`] and [`super::ChannelStream::connect`]
//! hand it back as [`super::ChannelError::Refused`]. So a server learns why a client was refused
//! (not on the allow list, revoked, expired, unknown issuer, CRL out of date, …) without reading
//! its log.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::CertificateError;
use time::OffsetDateTime;

use super::identity::PeerIdentity;
use super::text::escape;
use crate::pki::{PkiError, RejectionReason, RevocationReason, Serial, Usage, in_the_chain, rfc3339};

/// Why a peer's certificate was refused by this side.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer presented no certificate (a client, when the server requires one). Alert
    /// `certificate_required`.
    NoCertificate,
    /// No path from the certificate to a trusted root. Alert `unknown_ca`.
    UnknownIssuer,
    /// A certificate on the path had expired. Alert `certificate_expired`.
    Expired {
        /// Subject of the expired certificate (untrusted text, escaped when displayed; `None`
        /// when only rustls' error is known: shown as `in the chain`).
        subject: Option<String>,
        /// When it stopped being valid (`None` when rustls, not Tessera, refused it).
        not_after: Option<OffsetDateTime>,
    },
    /// A certificate on the path was not yet valid. Alert `certificate_expired` (RFC 8446:
    /// "expired or not currently valid").
    NotYetValid {
        /// Subject of the certificate (`None` when only rustls' error is known: shown as
        /// `in the chain`).
        subject: Option<String>,
        /// When it becomes valid (`None` when rustls refused it).
        not_before: Option<OffsetDateTime>,
    },
    /// A CRL revokes a certificate on the path. Alert `certificate_revoked`.
    Revoked {
        /// Serial number of the revoked certificate (`None` when only rustls' error is known:
        /// shown as `in the chain`).
        serial: Option<Serial>,
        /// The CRL's reason (`unspecified` when it gives none or is not known).
        reason: RevocationReason,
    },
    /// The revocation status could not be determined: a CRL that covers the certificate is
    /// past its nextUpdate (stale), or is not validly signed by its issuer. The refusal is
    /// right (a stale CRL cannot vouch for anything), and the fix is on the refusing side: a
    /// fresh CRL (`ca crl`), then a reload. Alert `certificate_unknown`, which blames no issuer.
    RevocationUnknown {
        /// Why, naming the CRL's nextUpdate when it is stale.
        reason: String,
    },
    /// The certificate is trusted but its holder is not on the allow list. Alert
    /// `access_denied`.
    NotAllowed {
        /// Who was refused.
        peer: PeerIdentity,
    },
    /// The certificate is not valid for the usage (extended key usage). Alert
    /// `unsupported_certificate`.
    WrongUsage {
        /// The usage required.
        usage: Usage,
    },
    /// The server's certificate does not hold the name the client asked for. Alert
    /// `bad_certificate`.
    NameMismatch {
        /// The DNS name or IP address asked for.
        name: String,
    },
    /// Any other reason the chain is not trusted (a bad signature, a name constraint or path
    /// length exceeded, a rule of the RFC 5280 profile, a malformed certificate). Alert
    /// `bad_certificate` ("contained signatures that did not verify correctly, etc.", RFC 8446
    /// §6.2).
    Untrusted {
        /// Why, in words.
        reason: String,
    },
}

impl Refusal {
    /// The refusal a [`PkiError`] from [`crate::pki::TrustStore::verify`] stands for.
    pub fn from_pki(error: &PkiError) -> Self {
        match error {
            PkiError::UnknownIssuer => Self::UnknownIssuer,
            PkiError::Expired { subject, not_after, .. } => Self::Expired {
                subject: subject.clone(),
                not_after: Some(*not_after),
            },
            PkiError::NotYetValid {
                subject, not_before, ..
            } => Self::NotYetValid {
                subject: subject.clone(),
                not_before: Some(*not_before),
            },
            PkiError::Revoked { serial, reason } => Self::Revoked {
                serial: Some(serial.clone()),
                reason: *reason,
            },
            PkiError::RevocationUnknown { reason } => Self::RevocationUnknown { reason: reason.clone() },
            PkiError::WrongUsage { usage } => Self::WrongUsage { usage: *usage },
            PkiError::NameMismatch { name } => Self::NameMismatch { name: name.clone() },
            PkiError::Rejected(reason) => Self::Untrusted {
                reason: webpki_reason(reason).into(),
            },
            other => Self::Untrusted {
                reason: other.to_string(),
            },
        }
    }

    /// The refusal a rustls error stands for, when only the error is known (the verifier's
    /// record is richer; see the module documentation). `None` when the error is not a
    /// refusal of the peer's certificate.
    pub fn from_tls(error: &rustls::Error) -> Option<Self> {
        use CertificateError as C;
        let certificate = match error {
            rustls::Error::NoCertificatesPresented => return Some(Self::NoCertificate),
            rustls::Error::InvalidCertificate(certificate) => certificate,
            _ => return None,
        };
        Some(match certificate {
            C::UnknownIssuer => Self::UnknownIssuer,
            C::Expired => Self::Expired {
                subject: None,
                not_after: None,
            },
            C::ExpiredContext { not_after, .. } => Self::Expired {
                subject: None,
                not_after: unix_to_time(not_after.as_secs()),
            },
            C::NotValidYet => Self::NotYetValid {
                subject: None,
                not_before: None,
            },
            C::NotValidYetContext { not_before, .. } => Self::NotYetValid {
                subject: None,
                not_before: unix_to_time(not_before.as_secs()),
            },
            C::Revoked => Self::Revoked {
                serial: None,
                reason: RevocationReason::Unspecified,
            },
            C::UnknownRevocationStatus | C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                Self::RevocationUnknown {
                    reason: "a CRL is past its nextUpdate or not validly signed".into(),
                }
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => Self::Untrusted {
                reason: "the certificate is not valid for this use (extended key usage)".into(),
            },
            C::NotValidForName | C::NotValidForNameContext { .. } => Self::NameMismatch {
                name: "asked for".into(),
            },
            C::Other(other) => match other.0.downcast_ref::<PkiError>() {
                Some(pki) => Self::from_pki(pki),
                None => Self::Untrusted {
                    reason: super::text::certificate_error(certificate),
                },
            },
            other => Self::Untrusted {
                reason: super::text::certificate_error(other),
            },
        })
    }

    /// The rustls error that makes rustls send the alert documented on each variant.
    pub(crate) fn to_rustls(&self, pki: Option<PkiError>) -> rustls::Error {
        // rustls picks the alert from the `CertificateError` (`From<CertificateError> for
        // AlertDescription`); the test below pins each choice.
        let certificate_error = match self {
            Self::NoCertificate => return rustls::Error::NoCertificatesPresented,
            Self::UnknownIssuer => CertificateError::UnknownIssuer,
            Self::Expired { .. } => CertificateError::Expired,
            Self::NotYetValid { .. } => CertificateError::NotValidYet,
            Self::Revoked { .. } => CertificateError::Revoked,
            // rustls maps UnknownRevocationStatus and ExpiredRevocationList to `unknown_ca`,
            // as OpenSSL does, which tells the peer its issuer is not trusted: wrong advice for
            // a CRL that is out of date here. `Other` gives `certificate_unknown` ("some other
            // issue … rendering it unacceptable", RFC 8446 §6.2).
            Self::RevocationUnknown { .. } => CertificateError::Other(rustls::OtherError(Arc::new(pki.unwrap_or(
                PkiError::RevocationUnknown {
                    reason: "a CRL is out of date".into(),
                },
            )))),
            Self::NotAllowed { .. } => CertificateError::ApplicationVerificationFailure,
            Self::WrongUsage { .. } => CertificateError::InvalidPurpose,
            Self::NameMismatch { .. } => CertificateError::NotValidForName,
            // rustls would send `decrypt_error` for `BadSignature`, which peers do not read as a
            // refusal of the certificate.
            Self::Untrusted { .. } => CertificateError::BadEncoding,
        };
        rustls::Error::InvalidCertificate(certificate_error)
    }

    /// True when the refusal comes from a CRL that is out of date (or badly signed) on the
    /// refusing side, not from the certificate itself.
    pub fn is_revocation_unknown(&self) -> bool {
        matches!(self, Self::RevocationUnknown { .. })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCertificate => f.write_str("no certificate was presented"),
            Self::UnknownIssuer => f.write_str("the certificate was not issued by a trusted root (unknown issuer)"),
            Self::Expired { subject, not_after } => {
                write!(f, "certificate {} has expired", escape(in_the_chain(subject)))?;
                if let Some(at) = not_after {
                    write!(f, " (at {})", rfc3339(*at))?;
                }
                Ok(())
            }
            Self::NotYetValid { subject, not_before } => {
                write!(f, "certificate {} is not yet valid", escape(in_the_chain(subject)))?;
                if let Some(at) = not_before {
                    write!(f, " (from {})", rfc3339(*at))?;
                }
                Ok(())
            }
            Self::Revoked {
                serial: Some(serial),
                reason,
            } => write!(f, "certificate {serial} is revoked ({reason})"),
            Self::Revoked { serial: None, reason } => write!(f, "certificate in the chain is revoked ({reason})"),
            Self::RevocationUnknown { reason } => {
                write!(f, "its revocation status could not be determined: {}", escape(reason))
            }
            Self::NotAllowed { peer } => write!(f, "{peer} is trusted but not on the allow list"),
            Self::WrongUsage { usage } => {
                write!(f, "the certificate is not valid for {usage} use (extended key usage)")
            }
            Self::NameMismatch { name } => write!(f, "the certificate is not valid for the name {}", escape(name)),
            Self::Untrusted { reason } => write!(f, "the certificate is not trusted: {}", escape(reason)),
        }
    }
}

/// rustls-webpki's reasons as a TLS peer's refusal puts them.
fn webpki_reason(reason: &RejectionReason) -> &'static str {
    use RejectionReason as R;
    match reason {
        R::MalformedDnsName => "a DNS name in the certificate is malformed",
        R::MalformedNameConstraint => "a name constraint on the path is malformed",
        R::MalformedExtensions => "the certificate's extensions are malformed",
        R::BadDer | R::BadTime | R::TrailingData => "the certificate is not valid DER",
        R::UnsupportedSignatureAlgorithm => {
            "a certificate on the path is signed with an algorithm Tessera does not accept"
        }
        R::SignatureAlgorithmMismatch => "a certificate's signature algorithms disagree",
        R::BadSignature => "a signature on the path does not verify",
        R::PathTooDeep | R::TooManyPathBuildCalls => "the certificate chain is too long",
        R::TooManySignatureChecks => "the certificate chain needs too many signature checks",
        R::UnsupportedCertVersion => "a certificate on the path is not X.509 version 3",
        R::InvalidNetworkMask => "a name constraint holds an invalid network mask",
        R::UnsupportedNameType => "a certificate holds a kind of name Tessera cannot check",
        R::ExtensionValueInvalid => "a certificate extension holds an invalid value",
        R::NotValidForName => "the certificate is not valid for the name asked for",
        R::InvalidValidity => "the certificate's validity period is invalid",
        R::InvalidSerialNumber => "the certificate's serial number is invalid",
        R::TooManyNameConstraintComparisons => "checking the name constraints took too many comparisons",
        _ => "the certificate chain breaks a rule of RFC 5280 that rustls-webpki enforces",
    }
}

fn unix_to_time(secs: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()
}

/// Where a verifier records its refusal for the handshake being driven by the current task.
pub(crate) type Slot = Arc<Mutex<Option<Refusal>>>;

tokio::task_local! {
    static CURRENT: Slot;
}

/// Runs `handshake` with a slot for the verifier's refusal, and returns the refusal with the
/// handshake's result. The verifiers run inside rustls' processing of received records, which
/// tokio-rustls does while this task polls the handshake, so they see the slot.
pub(crate) async fn capture<F: std::future::Future>(handshake: F) -> (F::Output, Option<Refusal>) {
    let slot = Slot::default();
    let output = CURRENT.scope(Arc::clone(&slot), handshake).await;
    let refusal = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    (output, refusal)
}

/// Records a refusal for the handshake in progress (nothing happens outside [`capture`]).
pub(crate) fn record(refusal: &Refusal) {
    let _ = CURRENT.try_with(|slot| {
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(refusal.clone());
    });
}

#[cfg(test)]
mod tests {
    use rustls::AlertDescription as A;

    use super::*;

    fn alert(refusal: &Refusal) -> A {
        match refusal.to_rustls(None) {
            rustls::Error::InvalidCertificate(error) => A::from(error),
            rustls::Error::NoCertificatesPresented => A::CertificateRequired,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_refusal_sends_the_alert_it_documents() {
        let peer = PeerIdentity {
            subject: "CN=x".into(),
            common_name: Some("x".into()),
            sans: Vec::new(),
            serial: "01".parse().unwrap(),
            sha256_fingerprint: "00".into(),
        };
        let subject = String::from("CN=x");
        for (refusal, expected) in [
            (Refusal::NoCertificate, A::CertificateRequired),
            (Refusal::UnknownIssuer, A::UnknownCA),
            (
                Refusal::Expired {
                    subject: Some(subject.clone()),
                    not_after: None,
                },
                A::CertificateExpired,
            ),
            (
                Refusal::NotYetValid {
                    subject: Some(subject),
                    not_before: None,
                },
                A::CertificateExpired,
            ),
            (
                Refusal::Revoked {
                    serial: Some("01".parse().unwrap()),
                    reason: RevocationReason::Superseded,
                },
                A::CertificateRevoked,
            ),
            // Not `unknown_ca`: the peer's issuer is not the problem.
            (
                Refusal::RevocationUnknown { reason: "stale".into() },
                A::CertificateUnknown,
            ),
            (Refusal::NotAllowed { peer }, A::AccessDenied),
            (Refusal::WrongUsage { usage: Usage::Client }, A::UnsupportedCertificate),
            (Refusal::NameMismatch { name: "x".into() }, A::BadCertificate),
            (Refusal::Untrusted { reason: "x".into() }, A::BadCertificate),
        ] {
            assert_eq!(alert(&refusal), expected, "{refusal:?}");
            assert!(
                crate::channel::error::is_refusal_alert(expected),
                "{expected:?} must read as a refusal on the other side"
            );
        }
    }

    #[test]
    fn a_stale_crl_round_trips_through_rustls() {
        let pki = PkiError::RevocationUnknown {
            reason: "a CRL expired at 2030-01-01T00:00:00Z".into(),
        };
        let refusal = Refusal::from_pki(&pki);
        let error = refusal.to_rustls(Some(pki));
        assert_eq!(Refusal::from_tls(&error), Some(refusal));
    }

    #[test]
    fn webpki_reasons_are_words() {
        let refusal = Refusal::from_pki(&PkiError::Rejected(RejectionReason::MalformedDnsName));
        assert_eq!(
            refusal.to_string(),
            "the certificate is not trusted: a DNS name in the certificate is malformed"
        );
    }
}
