//! The one verification path: "is this certificate trusted for usage U at time T, given these
//! roots and CRLs?" Every trust decision in Tessera (`ca verify`, module signatures, TLS peers)
//! goes through [`TrustStore::verify`], which delegates path building to rustls-webpki.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeIdIter, KeyUsage,
    OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::inspect::{CertificateInfo, hex};
use super::{PkiError, pem};

/// DER value of id-kp-codeSigning (1.3.6.1.5.5.7.3.3).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Signature algorithms accepted in certificate chains and CRLs.
pub(crate) static SIGNATURE_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ED25519,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// What a certificate is to be trusted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// TLS server authentication (id-kp-serverAuth, required if the certificate lists EKUs).
    Server,
    /// TLS client authentication (id-kp-clientAuth, required if the certificate lists EKUs).
    Client,
    /// Code signing (id-kp-codeSigning, required on the end entity; on issuers if they list EKUs).
    CodeSigning,
    /// Any usage: the chain alone is checked.
    Any,
}

impl Usage {
    /// The name used on command lines: `server`, `client`, `code-signing`, `any`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::CodeSigning => "code-signing",
            Self::Any => "any",
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Usage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Self::Server),
            "client" => Ok(Self::Client),
            "code-signing" | "codesigning" => Ok(Self::CodeSigning),
            "any" => Ok(Self::Any),
            _ => Err(format!("unknown usage {s:?} (use server, client, code-signing or any)")),
        }
    }
}

/// The EKU policy rustls-webpki applies for a [`Usage`].
enum EkuPolicy {
    Webpki(KeyUsage),
    Any,
}

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self {
            Self::Webpki(usage) => usage.validate(iter),
            Self::Any => Ok(()),
        }
    }
}

impl From<Usage> for EkuPolicy {
    fn from(usage: Usage) -> Self {
        match usage {
            Usage::Server => Self::Webpki(KeyUsage::server_auth()),
            Usage::Client => Self::Webpki(KeyUsage::client_auth()),
            // webpki applies the validator to issuers too; CA certificates rarely carry EKUs, so
            // "if present" here, and the end entity's codeSigning EKU is required in `verify`.
            Usage::CodeSigning => Self::Webpki(KeyUsage::required_if_present(EKU_CODE_SIGNING)),
            Usage::Any => Self::Any,
        }
    }
}

/// One verification question: usage, optional peer name, and the time to check at.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    /// The usage the end-entity certificate must allow.
    pub usage: Usage,
    /// A DNS name or IP address the certificate must be valid for.
    pub name: Option<String>,
    /// The time at which every certificate (and CRL) must be valid.
    pub time: OffsetDateTime,
}

impl VerifyRequest {
    /// A request for `usage` at `time`, without a name.
    pub fn new(usage: Usage, time: OffsetDateTime) -> Self {
        Self {
            usage,
            name: None,
            time,
        }
    }

    /// Also require the certificate to be valid for `name` (a DNS name or an IP address).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Proof that a chain was verified. Only [`TrustStore::verify`] builds one.
#[must_use]
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    path: Vec<CertificateDer<'static>>,
    end_entity: CertificateInfo,
    usage: Usage,
    time: OffsetDateTime,
}

impl VerifiedChain {
    /// The path from the end entity to the trusted root, both included.
    pub fn path(&self) -> &[CertificateDer<'static>] {
        &self.path
    }

    /// The end-entity certificate, inspected.
    pub fn end_entity(&self) -> &CertificateInfo {
        &self.end_entity
    }

    /// The usage the chain was verified for.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The time the chain was verified at.
    pub fn time(&self) -> OffsetDateTime {
        self.time
    }
}

/// Trusted roots plus the CRLs to consult. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<Arc<CertRevocationList<'static>>>,
}

impl TrustStore {
    /// An empty store (it trusts nothing until roots are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with the roots in a PEM file (a file may hold several roots).
    ///
    /// # Errors
    /// [`PkiError::Io`], [`PkiError::Malformed`], [`PkiError::Missing`].
    pub fn from_root_file(path: &Path) -> Result<Self, PkiError> {
        let mut store = Self::new();
        for cert in pem::load_certificates(path)? {
            store.add_root(cert, &path.display().to_string())?;
        }
        Ok(store)
    }

    /// Adds a trusted root certificate. `what` names it in errors.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when the certificate cannot serve as a trust anchor.
    pub fn add_root(&mut self, cert: CertificateDer<'static>, what: &str) -> Result<(), PkiError> {
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| PkiError::malformed(what, format!("cannot be used as a root: {e:?}")))?
            .to_owned();
        self.anchors.push(anchor);
        self.roots.push(cert);
        Ok(())
    }

    /// Adds a CRL (DER).
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when rustls-webpki cannot parse it.
    pub fn add_crl(&mut self, crl: &CertificateRevocationListDer<'_>, what: &str) -> Result<(), PkiError> {
        let owned = OwnedCertRevocationList::from_der(crl)
            .map_err(|e| PkiError::malformed(what, format!("unusable CRL: {e:?}")))?;
        self.crls.push(Arc::new(CertRevocationList::Owned(owned)));
        Ok(())
    }

    /// Adds every CRL in a PEM (or DER) file.
    ///
    /// # Errors
    /// As [`pem::load_crls`] and [`TrustStore::add_crl`].
    pub fn add_crl_file(&mut self, path: &Path) -> Result<(), PkiError> {
        let what = path.display().to_string();
        for crl in pem::load_crls(path)? {
            self.add_crl(&crl, &what)?;
        }
        Ok(())
    }

    /// Removes every CRL (e.g. before loading fresh ones).
    pub fn clear_crls(&mut self) {
        self.crls.clear();
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The trust anchors (for rustls).
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The number of CRLs held.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Verifies `end_entity` (with candidate `intermediates`) against the roots: a path to a
    /// root, signatures, validity of every certificate at `request.time`, the usage, name
    /// constraints and path lengths, revocation by the CRLs held (for every certificate on the
    /// path that a CRL covers; a stale CRL is an error), and the name if one is given.
    ///
    /// # Errors
    /// A rejection ([`PkiError::is_rejection`]) says why the certificate is not trusted;
    /// [`PkiError::NoRoots`] or [`PkiError::Malformed`] mean the question could not be asked.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> Result<VerifiedChain, PkiError> {
        if self.anchors.is_empty() {
            return Err(PkiError::NoRoots);
        }
        let ee = EndEntityCert::try_from(end_entity)
            .map_err(|e| PkiError::malformed("certificate", format!("cannot be parsed: {e:?}")))?;
        let time = unix_time(request.time);
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().map(|c| c.as_ref()).collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|builder| {
            builder
                .with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Enforce)
                .build()
        });
        let intermediates: Vec<CertificateDer<'_>> = intermediates.to_vec();
        let verified = ee
            .verify_for_usage(
                SIGNATURE_ALGORITHMS,
                &self.anchors,
                &intermediates,
                time,
                EkuPolicy::from(request.usage),
                revocation,
                None,
            )
            .map_err(|e| self.explain(e, end_entity, &intermediates, request))?;

        if let Some(name) = &request.name {
            let server_name =
                ServerName::try_from(name.as_str()).map_err(|_| PkiError::NameMismatch { name: name.clone() })?;
            ee.verify_is_valid_for_subject_name(&server_name)
                .map_err(|_| PkiError::NameMismatch { name: name.clone() })?;
        }

        let mut path = vec![end_entity.clone().into_owned()];
        path.extend(
            verified
                .intermediate_certificates()
                .map(|c| CertificateDer::from(c.der().to_vec())),
        );
        let anchor = verified.anchor();
        if let Some(root) = self
            .anchors
            .iter()
            .zip(&self.roots)
            .find(|(a, _)| a.subject == anchor.subject && a.subject_public_key_info == anchor.subject_public_key_info)
            .map(|(_, r)| r.clone())
        {
            path.push(root);
        }
        let info = CertificateInfo::from_der(end_entity)?;
        if request.usage == Usage::CodeSigning && !info.extended_key_usage.iter().any(|e| e == "codeSigning") {
            return Err(PkiError::WrongUsage { usage: request.usage });
        }
        Ok(VerifiedChain {
            path,
            end_entity: info,
            usage: request.usage,
            time: request.time,
        })
    }

    /// Turns a webpki error into a precise, human-meaningful reason.
    fn explain(
        &self,
        error: webpki::Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> PkiError {
        use webpki::Error as E;
        let chain = || {
            std::iter::once(end_entity)
                .chain(intermediates.iter())
                .filter_map(|c| CertificateInfo::from_der(c).ok())
        };
        match error {
            E::CertExpired { .. } => {
                let expired = chain().find(|c| c.not_after < request.time);
                let (subject, not_after) = expired
                    .map(|c| (c.subject, c.not_after))
                    .unwrap_or_else(|| ("in the chain".into(), request.time));
                PkiError::Expired {
                    subject,
                    not_after,
                    time: request.time,
                }
            }
            E::CertNotValidYet { .. } => {
                let early = chain().find(|c| c.not_before > request.time);
                let (subject, not_before) = early
                    .map(|c| (c.subject, c.not_before))
                    .unwrap_or_else(|| ("in the chain".into(), request.time));
                PkiError::NotYetValid {
                    subject,
                    not_before,
                    time: request.time,
                }
            }
            E::CertRevoked => self.revoked_entry(end_entity, intermediates),
            E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => PkiError::WrongUsage { usage: request.usage },
            E::UnknownIssuer => PkiError::UnknownIssuer,
            E::CaUsedAsEndEntity => PkiError::BadCaUse {
                reason: "a CA certificate was presented as the end entity",
            },
            E::EndEntityUsedAsCa => PkiError::BadCaUse {
                reason: "an end-entity certificate was used as an issuer",
            },
            E::NameConstraintViolation => PkiError::NameConstraintViolation,
            E::PathLenConstraintViolated => PkiError::PathLenExceeded,
            E::InvalidSignatureForPublicKey => PkiError::BadSignature,
            E::CrlExpired { next_update, .. } => PkiError::RevocationUnknown {
                reason: format!(
                    "a CRL expired at {}; fetch or regenerate a fresh one (`ca crl`)",
                    rfc3339_unix(next_update.as_secs())
                ),
            },
            E::InvalidCrlSignatureForPublicKey | E::IssuerNotCrlSigner => PkiError::RevocationUnknown {
                reason: "a CRL is not validly signed by its issuer".into(),
            },
            other => PkiError::Rejected(other),
        }
    }

    /// Finds which certificate on the chain a CRL revokes, for the message.
    fn revoked_entry(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> PkiError {
        for cert in std::iter::once(end_entity).chain(intermediates.iter()) {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
                continue;
            };
            for crl in &self.crls {
                // webpki gives the issuer Name's contents; x509-parser the whole TLV.
                let issuer = parsed.issuer().as_raw();
                if crl.issuer() != issuer && !(issuer.ends_with(crl.issuer()) && issuer.len() - crl.issuer().len() <= 4)
                {
                    continue;
                }
                if let Ok(Some(entry)) = crl.find_serial(parsed.raw_serial()) {
                    return PkiError::Revoked {
                        serial: hex(trim_serial(parsed.raw_serial())),
                        reason: entry.reason_code.map(reason_name).unwrap_or("unspecified").to_string(),
                    };
                }
            }
        }
        PkiError::Revoked {
            serial: "in the chain".into(),
            reason: "unspecified".into(),
        }
    }
}

/// Strips the sign-padding zero bytes of a DER serial number.
pub(crate) fn trim_serial(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    serial.get(start..).unwrap_or(serial)
}

/// RFC 5280 reason code names, as `ca revoke --reason` takes them.
pub fn reason_name(reason: webpki::RevocationReason) -> &'static str {
    use webpki::RevocationReason as R;
    match reason {
        R::Unspecified => "unspecified",
        R::KeyCompromise => "key-compromise",
        R::CaCompromise => "ca-compromise",
        R::AffiliationChanged => "affiliation-changed",
        R::Superseded => "superseded",
        R::CessationOfOperation => "cessation-of-operation",
        R::CertificateHold => "certificate-hold",
        R::RemoveFromCrl => "remove-from-crl",
        R::PrivilegeWithdrawn => "privilege-withdrawn",
        R::AaCompromise => "aa-compromise",
    }
}

/// Converts a time to rustls' representation (times before 1970 become the epoch).
pub(crate) fn unix_time(time: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(time.unix_timestamp()).unwrap_or(0)))
}

fn rfc3339_unix(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}
