//! rustls configurations built from a [`TrustStore`], with the ring provider passed explicitly.
//! TLS 1.3 only, unless [`TlsOptions::allow_tls12`] says otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, KeyLog, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::error::{CertificateProblem, ChannelError};
use super::files::{blocking, check_regular_file, read_chain, read_key};
use super::identity::Authorization;
use super::tickets::{ResumptionCheck, SessionTickets, Ticketer};
use super::verifier::{TrustStoreClientVerifier, TrustStoreServerVerifier};
use crate::pki::{CertificateInfo, Passphrase, PrivateKey, TrustStore, Usage};

/// Sessions a client configuration with [`TlsOptions::resumption`] remembers.
const CLIENT_SESSIONS: usize = 256;

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The one crypto provider the channel uses: rustls' ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain (end entity first, then intermediates) with its private key, checked to
/// belong together. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Credentials {
    key: Arc<CertifiedKey>,
}

impl Credentials {
    /// Loads a PEM chain and a PKCS#8 key (encrypted keys need `passphrase`). Only regular
    /// files of at most [`crate::pki::pem::MAX_PEM_FILE`] bytes are read. Blocking (file I/O,
    /// and scrypt for an encrypted key): from async code use [`Credentials::load_async`].
    ///
    /// # Errors
    /// [`ChannelError::Load`], [`ChannelError::NotAFile`], [`ChannelError::FileTooLarge`],
    /// [`ChannelError::EmptyChain`], [`ChannelError::UnusableKey`].
    pub fn load(chain: &Path, key: &Path, passphrase: Option<&Passphrase>) -> Result<Self, ChannelError> {
        check_regular_file(chain, "certificate chain")?;
        check_regular_file(key, "private key")?;
        let certificates = read_chain(chain)?;
        let private_key = read_key(key, passphrase)?;
        Self::new(certificates, &private_key)
    }

    /// [`Credentials::load`] on Tokio's blocking pool, so that reading the files and deriving
    /// the key of an encrypted one never stall the runtime's worker threads. Outside a Tokio
    /// runtime it runs on the calling thread.
    ///
    /// # Errors
    /// As [`Credentials::load`]; [`ChannelError::TaskFailed`] if the blocking task could not
    /// finish.
    pub async fn load_async(
        chain: PathBuf,
        key: PathBuf,
        passphrase: Option<Passphrase>,
    ) -> Result<Self, ChannelError> {
        blocking("loading the certificate and key", move || {
            Self::load(&chain, &key, passphrase.as_ref())
        })
        .await
    }

    /// Pairs a chain with its key.
    ///
    /// # Errors
    /// [`ChannelError::UnusableKey`] when the key does not match the first certificate or
    /// rustls cannot sign with it.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: &PrivateKey) -> Result<Self, ChannelError> {
        let Some(end_entity) = chain.first() else {
            return Err(ChannelError::UnusableKey {
                reason: "the certificate chain is empty".into(),
            });
        };
        // Compare the public keys ourselves: rustls skips the check for keys whose public half
        // it cannot derive.
        let key_spki = key.public_key_spki().map_err(|e| ChannelError::UnusableKey {
            reason: format!("its public key cannot be derived: {e}"),
        })?;
        let certificate_spki = x509_parser::parse_x509_certificate(end_entity)
            .map(|(_, certificate)| certificate.public_key().raw.to_vec())
            .map_err(|_| ChannelError::UnusableKey {
                reason: "the first certificate of the chain cannot be parsed".into(),
            })?;
        if key_spki != certificate_spki {
            return Err(ChannelError::UnusableKey {
                reason: "the key does not belong to the first certificate".into(),
            });
        }
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
        let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| ChannelError::UnusableKey {
            reason: match e {
                rustls::Error::InconsistentKeys(_) => "the key does not belong to the first certificate".into(),
                other => super::text::tls_error(&other),
            },
        })?;
        Ok(Self {
            key: Arc::new(certified),
        })
    }

    /// Checks that these credentials can be used for `usage` at `now`, as a peer will judge
    /// them: every certificate of the chain valid at `now`; the end entity not a CA, with an
    /// extended key usage (if it lists any) that includes `usage`, and a key usage (if any)
    /// that allows digital signatures. `what` names the chain in the error.
    ///
    /// # Errors
    /// [`ChannelError::UnsuitableCertificate`].
    pub fn check_usable(&self, usage: Usage, now: OffsetDateTime, what: &str) -> Result<(), ChannelError> {
        let unsuitable = |subject: &str, problem| ChannelError::UnsuitableCertificate {
            what: what.into(),
            subject: subject.into(),
            problem,
        };
        for (index, der) in self.chain().iter().enumerate() {
            let info = CertificateInfo::from_der(der).map_err(|source| ChannelError::Load {
                what: what.into(),
                source,
            })?;
            if now > info.not_after {
                return Err(unsuitable(
                    &info.subject,
                    CertificateProblem::Expired {
                        not_after: info.not_after,
                    },
                ));
            }
            if now < info.not_before {
                return Err(unsuitable(
                    &info.subject,
                    CertificateProblem::NotYetValid {
                        not_before: info.not_before,
                    },
                ));
            }
            if index > 0 {
                continue;
            }
            if info.is_ca {
                return Err(unsuitable(&info.subject, CertificateProblem::CaCertificate));
            }
            let wanted = match usage {
                Usage::Server => Some("serverAuth"),
                Usage::Client => Some("clientAuth"),
                Usage::CodeSigning => Some("codeSigning"),
                Usage::Any => None,
            };
            if let Some(wanted) = wanted
                && !info.extended_key_usage.is_empty()
                && !info.extended_key_usage.iter().any(|eku| eku == wanted)
            {
                return Err(unsuitable(
                    &info.subject,
                    CertificateProblem::WrongUsage {
                        usage,
                        extended_key_usage: info.extended_key_usage,
                    },
                ));
            }
            if !info.key_usage.is_empty() && !info.key_usage.iter().any(|ku| ku == "digitalSignature") {
                return Err(unsuitable(
                    &info.subject,
                    CertificateProblem::NoDigitalSignature {
                        key_usage: info.key_usage,
                    },
                ));
            }
        }
        Ok(())
    }

    /// The chain, end entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// The rustls form.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.key)
    }
}

/// Options shared by servers and clients.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Also accept TLS 1.2 (no key rotation is possible on such connections). Off by default.
    pub allow_tls12: bool,
    /// Where to log session secrets (e.g. [`rustls::KeyLogFile`], which honours
    /// `SSLKEYLOGFILE`). `None` logs nothing.
    pub key_log: Option<Arc<dyn KeyLog>>,
    /// Allow the secrets of established connections to be extracted (tests, kTLS). Off by
    /// default.
    pub enable_secret_extraction: bool,
    /// Client side: keep the session tickets servers send (in memory, per configuration), so
    /// that the next connection made with the same configuration resumes its session instead
    /// of a full handshake. Off by default. Servers issue tickets only with
    /// [`ServerSettings::session_tickets`].
    pub resumption: bool,
}

impl TlsOptions {
    /// Default options plus the standard `SSLKEYLOGFILE` convention (nothing is written when the
    /// variable is unset).
    pub fn with_sslkeylogfile() -> Self {
        Self {
            key_log: Some(Arc::new(rustls::KeyLogFile::new())),
            ..Self::default()
        }
    }

    fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        if self.allow_tls12 {
            rustls::ALL_VERSIONS
        } else {
            TLS13_ONLY
        }
    }
}

/// What a server needs: its credentials, and for mutual TLS the store that client certificates
/// must verify against (with its CRLs) and who among them is allowed.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The server's certificate chain and key.
    pub credentials: Credentials,
    /// Roots (and CRLs) for client certificates; `None` means no client authentication.
    pub client_trust: Option<Arc<TrustStore>>,
    /// Which verified clients may connect (an allow list requires `client_trust`).
    pub authorization: Authorization,
    /// The earliest nextUpdate of the CRLs in `client_trust` ([`ServerFiles::load`] sets it).
    /// With session tickets, verdicts of the [`ResumptionCheck`] are cached no later than it;
    /// `None` with CRLs in the store: verdicts are not cached (every resumption verifies the
    /// chain in full).
    ///
    /// [`ServerFiles::load`]: super::ServerFiles::load
    pub crl_next_update: Option<time::OffsetDateTime>,
    /// Protocol options.
    pub options: TlsOptions,
    /// TLS 1.3 session tickets sealed with these keys; `None` (the default): no tickets, no
    /// resumption, every connection is a full handshake.
    pub session_tickets: Option<SessionTickets>,
}

/// Builds a server configuration.
///
/// With [`ServerSettings::session_tickets`] the server sends two tickets per handshake, sealed
/// with the first key; a ticket is honoured only if its key is listed, it is within its
/// lifetime, and (with `client_trust`) the client certificate chain it carries passes
/// [`ResumptionCheck`] with `client_trust` and `authorization` now; otherwise the client gets a
/// full handshake.
///
/// # Errors
/// [`ChannelError::AllowListWithoutClientTrust`] when `authorization` names peers but there is
/// no `client_trust` (anonymous clients would be admitted); [`ChannelError::Config`] if rustls
/// refuses the combination.
pub fn server_config(settings: &ServerSettings) -> Result<ServerConfig, ChannelError> {
    if settings.client_trust.is_none() && !settings.authorization.is_open() {
        return Err(ChannelError::AllowListWithoutClientTrust {
            allowed: settings.authorization.allowed().len(),
        });
    }
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(settings.options.versions())
        .map_err(|source| ChannelError::Config { source })?;
    let builder = match &settings.client_trust {
        Some(store) => builder.with_client_cert_verifier(Arc::new(TrustStoreClientVerifier::new(
            Arc::clone(store),
            settings.authorization.clone(),
            &provider,
        ))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
        settings.credentials.certified_key(),
    )));
    if let Some(key_log) = &settings.options.key_log {
        config.key_log = Arc::clone(key_log);
    }
    config.enable_secret_extraction = settings.options.enable_secret_extraction;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    match &settings.session_tickets {
        Some(tickets) => {
            // A resumed session skips the client's certificate: the ticketer verifies the
            // chain in the ticket again against the current store and allow list.
            let check = settings.client_trust.as_ref().map(|store| {
                let check = ResumptionCheck::new(Arc::clone(store), settings.authorization.clone());
                match settings.crl_next_update {
                    Some(next_update) => check.with_crl_next_update(Some(next_update)),
                    None => check,
                }
            });
            config.ticketer = Arc::new(Ticketer::new(tickets, check));
            // Two, as rustls' default: a client that spends one on an attempt that fails
            // (a server killed under it) still has one to resume with.
            config.send_tls13_tickets = 2;
        }
        None => config.send_tls13_tickets = 0,
    }
    Ok(config)
}

/// What a client needs: the roots (and CRLs) the server's certificate must verify against, and
/// optionally its own credentials for mutual TLS.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Roots and CRLs for the server's certificate.
    pub server_trust: Arc<TrustStore>,
    /// The client's certificate chain and key, if it authenticates.
    pub credentials: Option<Credentials>,
    /// Protocol options.
    pub options: TlsOptions,
}

/// Builds a client configuration.
///
/// # Errors
/// [`ChannelError::Config`] if rustls refuses the combination.
pub fn client_config(settings: &ClientSettings) -> Result<ClientConfig, ChannelError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(settings.options.versions())
        .map_err(|source| ChannelError::Config { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustStoreServerVerifier::new(
            Arc::clone(&settings.server_trust),
            &provider,
        )));
    let mut config = match &settings.credentials {
        Some(credentials) => builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            credentials.certified_key(),
        ))),
        None => builder.with_no_client_auth(),
    };
    if let Some(key_log) = &settings.options.key_log {
        config.key_log = Arc::clone(key_log);
    }
    config.enable_secret_extraction = settings.options.enable_secret_extraction;
    config.resumption = if settings.options.resumption {
        rustls::client::Resumption::in_memory_sessions(CLIENT_SESSIONS)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(config)
}
