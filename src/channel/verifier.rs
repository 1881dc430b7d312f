//! rustls certificate verifiers whose chain decision is [`TrustStore::verify`]: the one trust
//! path of Tessera, CRLs included. Handshake signatures are checked with the crypto provider's
//! helpers.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::identity::{Authorization, PeerIdentity};
use super::refusal::{Refusal, record};
use super::text::escape;
use crate::pki::{PkiError, TrustStore, Usage, VerifyRequest};

/// Verifies a server's certificate chain for [`Usage::Server`] and the name the client asked
/// for, through [`TrustStore::verify`].
#[derive(Debug)]
pub struct TrustStoreServerVerifier {
    store: Arc<TrustStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl TrustStoreServerVerifier {
    /// A verifier trusting `store`'s roots and consulting its CRLs; handshake signatures are
    /// checked with `provider`'s algorithms.
    pub fn new(store: Arc<TrustStore>, provider: &CryptoProvider) -> Self {
        Self {
            store,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for TrustStoreServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let request = VerifyRequest::new(Usage::Server, to_time(now)).with_name(server_name.to_str().into_owned());
        match self.store.verify(end_entity, intermediates, &request) {
            Ok(_chain) => Ok(ServerCertVerified::assertion()),
            Err(error) => {
                let refusal = Refusal::from_pki(&error);
                tracing::debug!(server = %escape(&server_name.to_str()), reason = %refusal, "server certificate refused");
                Err(refuse(refusal, error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Requires a client certificate, verifies its chain for [`Usage::Client`] through
/// [`TrustStore::verify`], then checks the verified identity against an [`Authorization`].
#[derive(Debug)]
pub struct TrustStoreClientVerifier {
    store: Arc<TrustStore>,
    authorization: Authorization,
    algorithms: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl TrustStoreClientVerifier {
    /// A verifier trusting `store`'s roots (sent as hints to clients) and consulting its CRLs,
    /// admitting only peers `authorization` permits.
    pub fn new(store: Arc<TrustStore>, authorization: Authorization, provider: &CryptoProvider) -> Self {
        let hints = store
            .anchors()
            .iter()
            .map(|anchor| DistinguishedName::in_sequence(anchor.subject.as_ref()))
            .collect();
        Self {
            store,
            authorization,
            algorithms: provider.signature_verification_algorithms,
            hints,
        }
    }
}

impl ClientCertVerifier for TrustStoreClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let request = VerifyRequest::new(Usage::Client, to_time(now));
        let chain = match self.store.verify(end_entity, intermediates, &request) {
            Ok(chain) => chain,
            Err(error) => {
                let refusal = Refusal::from_pki(&error);
                tracing::debug!(reason = %refusal, "client certificate refused");
                return Err(refuse(refusal, error));
            }
        };
        if self.authorization.is_open() {
            return Ok(ClientCertVerified::assertion());
        }
        let identity = PeerIdentity::from_verified(&chain);
        if !self.authorization.permits(&identity) {
            let refusal = Refusal::NotAllowed { peer: identity };
            tracing::debug!(reason = %refusal, "client refused");
            record(&refusal);
            return Err(refusal.to_rustls(None));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn to_time(now: UnixTime) -> OffsetDateTime {
    i64::try_from(now.as_secs())
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Records `refusal` for the handshake in progress and returns the rustls error that sends its
/// alert (see [`Refusal`]). An expiry keeps its times in rustls' context variants
/// (`ExpiredContext`, `NotValidYetContext`: the same `certificate_expired` alert).
fn refuse(refusal: Refusal, error: PkiError) -> rustls::Error {
    record(&refusal);
    match error {
        PkiError::Expired { not_after, time, .. } => {
            rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
                time: to_unix(time),
                not_after: to_unix(not_after),
            })
        }
        PkiError::NotYetValid { not_before, time, .. } => {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYetContext {
                time: to_unix(time),
                not_before: to_unix(not_before),
            })
        }
        error => refusal.to_rustls(Some(error)),
    }
}

/// Whole seconds since the epoch (times before it become the epoch).
fn to_unix(time: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(time.unix_timestamp()).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use time::macros::datetime;

    use super::*;

    /// rustls' context variants carry the times; the alert stays `certificate_expired`.
    #[test]
    fn expiry_keeps_its_times_for_rustls() {
        let time = datetime!(2031-01-01 0:00 UTC);
        let not_after = datetime!(2030-12-01 0:00 UTC);
        let expired = PkiError::Expired {
            subject: Some("CN=x".into()),
            not_after,
            time,
        };
        match refuse(Refusal::from_pki(&expired), expired) {
            rustls::Error::InvalidCertificate(
                error @ rustls::CertificateError::ExpiredContext {
                    time: at,
                    not_after: end,
                },
            ) => {
                assert_eq!(at.as_secs(), u64::try_from(time.unix_timestamp()).unwrap());
                assert_eq!(end.as_secs(), u64::try_from(not_after.unix_timestamp()).unwrap());
                assert_eq!(
                    rustls::AlertDescription::from(error),
                    rustls::AlertDescription::CertificateExpired
                );
            }
            other => panic!("expected ExpiredContext, got {other:?}"),
        }
        let early = PkiError::NotYetValid {
            subject: Some("CN=x".into()),
            not_before: time,
            time: not_after,
        };
        match refuse(Refusal::from_pki(&early), early) {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYetContext {
                time: at,
                not_before,
            }) => {
                assert_eq!(at.as_secs(), u64::try_from(not_after.unix_timestamp()).unwrap());
                assert_eq!(not_before.as_secs(), u64::try_from(time.unix_timestamp()).unwrap());
            }
            other => panic!("expected NotValidYetContext, got {other:?}"),
        }
    }
}
