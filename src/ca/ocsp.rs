//! The OCSP responder (RFC 6960, within the lightweight profile of RFC 5019): answers an
//! `OCSPRequest` about certificates of one CA from that CA's store, signed by the CA's own key.
//!
//! Which API: [`respond`] for one request (it builds a [`Responder`] each time), or a
//! [`Responder`] made once with [`Responder::new`] and shared between threads (it holds the
//! parsed signing key and the CA's name and key hashes) when answering many; [`decode_get_path`]
//! turns the path of an HTTP GET request (RFC 6960 Appendix A.1) into the request's DER.
//!
//! What the answer says, per `CertID` of the request (RFC 6960 §2.2, §4.2.1):
//! - the CertID names this CA (its `issuerNameHash` and `issuerKeyHash` are the hashes of this
//!   CA's subject name and public key under the CertID's `hashAlgorithm`: SHA-1, SHA-256,
//!   SHA-384 or SHA-512) and its serial is in the store: `good`, or `revoked` with the time and
//!   reason recorded (no reason for `unspecified`, as in CRLs, RFC 5280 §5.3.1);
//! - anything else (another issuer, a hash algorithm not listed, a serial the store does not
//!   know, a negative serial): `unknown`.
//!
//! Every `SingleResponse` has `thisUpdate` = the time of the answer and `nextUpdate` =
//! `thisUpdate` + the responder's lifetime ([`RESPONSE_LIFETIME`], one hour, unless
//! [`Responder::with_lifetime`] says otherwise; `ca serve --ocsp-hours`), but never later than
//! the CA certificate's `notAfter`: the CA cannot vouch for anything past its own end, and a
//! client caching the answer until `nextUpdate` would rely on a signature no longer valid;
//! `producedAt` is the same time as `thisUpdate`.
//!
//! A CA whose certificate is not valid at the time of the request (expired, or not yet valid)
//! signs nothing: every request that parses is answered `unauthorized` (RFC 6960 §2.3: the
//! responder cannot answer authoritatively), with no `responseBytes`.
//!
//! The
//! response is a `BasicOCSPResponse` whose `responderID` is `byKey` (SHA-1 of the CA's public
//! key, RFC 6960 §4.2.2.3), signed by the CA's key (ECDSA P-256 with SHA-256, ECDSA P-384 with
//! SHA-384, or Ed25519, as the CA's certificate), with no `certs`: the CA signs for itself, so
//! a client that knows the issuer needs nothing else (RFC 6960 §4.2.2.2).
//!
//! The nonce extension (RFC 8954, `id-pkix-ocsp-nonce`) of a request is echoed in the
//! response's `responseExtensions` when its value is an OCTET STRING of 1 to 32 octets; any
//! other nonce is a `malformedRequest`, as is an unknown critical request extension. A request
//! signature (`optionalSignature`) is ignored: the answers are public.
//!
//! Failures are answered as RFC 6960 §4.2.1 says, never with a panic: bytes that are not a DER
//! `OCSPRequest` (empty, truncated, trailing bytes, more than [`MAX_REQUEST_BYTES`] or
//! [`MAX_CERT_IDS`] CertIDs) → `malformedRequest`; a store that cannot be read → `tryLater`;
//! a response that cannot be signed → `internalError`. Those three carry no `responseBytes`.
//!
//! Nothing here writes a file or blocks on anything but the store's lock and one lookup per
//! CertID; a [`Responder`] is `Send + Sync`.

use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use ring::digest;
use time::OffsetDateTime;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::{CaError, CertificateAuthority};
use crate::pki::{KeyAlgorithm, PkiError, RevocationReason, Serial};

/// How long an answer may be relied on by default: `nextUpdate` − `thisUpdate`.
pub const RESPONSE_LIFETIME: Duration = Duration::from_secs(3600);

/// The largest request [`Responder::respond`] reads (larger ones are `malformedRequest`).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The most CertIDs one request may ask about (more are `malformedRequest`).
pub const MAX_CERT_IDS: usize = 64;

/// The longest GET path [`decode_get_path`] takes, in bytes.
pub const MAX_GET_PATH: usize = 4 * 1024;

/// The largest nonce echoed (RFC 8954 §2.1).
pub const MAX_NONCE_OCTETS: usize = 32;

/// `OCSPResponseStatus` (RFC 6960 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, der::Enumerated)]
#[repr(u8)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// The response has valid confirmations.
    Successful = 0,
    /// The request was not a well-formed OCSPRequest.
    MalformedRequest = 1,
    /// The responder failed inside (here: it could not sign).
    InternalError = 2,
    /// The responder cannot answer now (here: the store could not be read).
    TryLater = 3,
    /// The request must be signed (never sent by Tessera).
    SigRequired = 5,
    /// The responder cannot answer authoritatively (here: the CA's certificate is expired or
    /// not yet valid, RFC 6960 §2.3).
    Unauthorized = 6,
}

impl ResponseStatus {
    /// The RFC's name: `successful`, `malformedRequest`, …
    pub fn name(self) -> &'static str {
        match self {
            Self::Successful => "successful",
            Self::MalformedRequest => "malformedRequest",
            Self::InternalError => "internalError",
            Self::TryLater => "tryLater",
            Self::SigRequired => "sigRequired",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// What one CertID was answered (RFC 6960 §2.2), for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at this time for this reason.
    Revoked {
        /// When the CA recorded the revocation.
        at: OffsetDateTime,
        /// Why.
        reason: RevocationReason,
    },
    /// Not a certificate this responder knows.
    Unknown,
}

/// One answered CertID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleAnswer {
    /// The serial asked about (`None` for a negative one, which no CA issues).
    pub serial: Option<Serial>,
    /// The answer.
    pub status: CertStatus,
}

/// A DER `OCSPResponse` and what it says.
#[derive(Clone, Debug)]
#[must_use]
pub struct Answer {
    /// The DER `OCSPResponse`, to send as `application/ocsp-response`.
    pub der: Vec<u8>,
    /// Its `responseStatus`.
    pub status: ResponseStatus,
    /// One per CertID, in the request's order (empty unless `status` is `Successful`).
    pub answers: Vec<SingleAnswer>,
    /// `thisUpdate` (and `producedAt`) of a successful response.
    pub this_update: Option<OffsetDateTime>,
    /// `nextUpdate` of a successful response (for HTTP caching, RFC 5019 §6.2).
    pub next_update: Option<OffsetDateTime>,
}

/// Why a GET path is not an OCSP request (see [`decode_get_path`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetPathError {
    /// Longer than [`MAX_GET_PATH`].
    #[error("the OCSP GET path is longer than {MAX_GET_PATH} bytes")]
    TooLong,
    /// A `%` not followed by two hex digits.
    #[error("the OCSP GET path has a broken percent-encoding")]
    BadPercentEncoding,
    /// Not base64 once percent-decoded.
    #[error("the OCSP GET path is not base64")]
    NotBase64,
    /// Nothing in it.
    #[error("the OCSP GET path is empty")]
    Empty,
}

/// The request of an HTTP GET (RFC 6960 Appendix A.1: `{url}/{url-encoding of base-64 encoding
/// of the DER encoding of the OCSPRequest}`): `path` is what follows the responder's own path
/// and its slash (`MEIw…%3D` in `/ocsp/MEIw…%3D`), possibly spanning several path segments,
/// as base64's `/` need not be percent-encoded. Percent-encodings are decoded first (`%2B`,
/// `%2F`, `%3D`, in either case); `+` stays `+` (a path, not a form); padding is optional.
///
/// # Errors
/// [`GetPathError`]: too long, empty, a bad `%` escape, or not base64. Whether the bytes are an
/// OCSPRequest is [`respond`]'s question (it answers `malformedRequest`).
pub fn decode_get_path(path: &str) -> Result<Vec<u8>, GetPathError> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

    if path.len() > MAX_GET_PATH {
        return Err(GetPathError::TooLong);
    }
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Err(GetPathError::Empty);
    }
    let mut text = Vec::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|h| char::from(h).to_digit(16));
            let lo = bytes.next().and_then(|l| char::from(l).to_digit(16));
            match (hi, lo) {
                // Two hex digits make one octet.
                (Some(hi), Some(lo)) => {
                    text.push(u8::try_from(hi * 16 + lo).map_err(|_| GetPathError::BadPercentEncoding)?)
                }
                _ => return Err(GetPathError::BadPercentEncoding),
            }
        } else {
            text.push(b);
        }
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let der = engine.decode(&text).map_err(|_| GetPathError::NotBase64)?;
    if der.is_empty() {
        return Err(GetPathError::Empty);
    }
    Ok(der)
}

/// Answers `request_der` (a DER `OCSPRequest`) for `ca` at `now`: a [`Responder`] made for this
/// one call. See the module documentation for what the answer says.
pub fn respond(ca: &CertificateAuthority, request_der: &[u8], now: OffsetDateTime) -> Answer {
    match Responder::new(ca) {
        Ok(responder) => responder.respond(ca, request_der, now),
        Err(e) => {
            tracing::error!(error = %e, "OCSP: the CA cannot sign responses");
            Answer::failed(ResponseStatus::InternalError)
        }
    }
}

/// An OCSP responder for one CA: its signing key (parsed once), the hashes of its name and key
/// that a CertID must carry, and its `responderID`. `Send + Sync`.
pub struct Responder {
    key_pair: rcgen::KeyPair,
    signature_algorithm: AlgorithmIdentifierOwned,
    subject_der: Vec<u8>,
    public_key_bits: Vec<u8>,
    responder_key_hash: Vec<u8>,
    lifetime: Duration,
    /// The CA certificate's validity: answers are signed only inside it, and never said to
    /// hold past its end.
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// Whether the `unauthorized` answers of an expired CA have been logged as a warning (once;
    /// then at debug level, so a flood of requests does not flood the log).
    warned_invalid: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder for `ca` (which must be the CA whose store [`Responder::respond`] is given).
    ///
    /// # Errors
    /// [`CaError::Pki`] when the CA's certificate cannot be parsed or ring refuses its key.
    pub fn new(ca: &CertificateAuthority) -> Result<Self, CaError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(ca.certificate()).map_err(|e| {
            PkiError::malformed("ca.pem", format!("cannot be parsed: {}", crate::pki::describe_x509(&e)))
        })?;
        let validity = parsed.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        let subject_der = parsed.tbs_certificate.subject.as_raw().to_vec();
        let public_key_bits = parsed.public_key().subject_public_key.data.to_vec();
        let responder_key_hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &public_key_bits)
            .as_ref()
            .to_vec();
        let key_pair = ca.key.to_key_pair()?;
        Ok(Self {
            key_pair,
            signature_algorithm: signature_algorithm(ca.key.algorithm()),
            subject_der,
            public_key_bits,
            responder_key_hash,
            lifetime: RESPONSE_LIFETIME,
            not_before,
            not_after,
            warned_invalid: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Answers that may be relied on for `lifetime` (`nextUpdate` − `thisUpdate`, RFC 6960
    /// §4.2.2.1) instead of [`RESPONSE_LIFETIME`]; whole seconds, at least one.
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Duration::from_secs(lifetime.as_secs().max(1));
        self
    }

    /// `nextUpdate` − `thisUpdate` of this responder's answers (less for answers given within
    /// that time of the CA certificate's end: `nextUpdate` is never after its `notAfter`).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Whether the CA's certificate is valid at `now` (RFC 5280 §4.1.2.5: both ends included),
    /// so that the CA may sign answers.
    fn ca_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Answers `request_der` from `ca`'s store at `now` (see the module documentation). Never
    /// fails: failures are OCSP response statuses.
    pub fn respond(&self, ca: &CertificateAuthority, request_der: &[u8], now: OffsetDateTime) -> Answer {
        let request = match parse_request(request_der) {
            Ok(request) => request,
            Err(reason) => {
                tracing::info!(reason, "OCSP: malformed request");
                return Answer::failed(ResponseStatus::MalformedRequest);
            }
        };
        let Some(now) = whole_seconds(now) else {
            tracing::error!("OCSP: the clock is outside the times a response can carry");
            return Answer::failed(ResponseStatus::InternalError);
        };
        if !self.ca_valid_at(now) {
            let first = !self.warned_invalid.swap(true, std::sync::atomic::Ordering::Relaxed);
            let (not_before, not_after) = (self.not_before, self.not_after);
            if first {
                tracing::warn!(%not_before, %not_after, "OCSP: the CA's certificate is not valid now; answering unauthorized");
            } else {
                tracing::debug!(%not_before, %not_after, "OCSP: the CA's certificate is not valid now; answering unauthorized");
            }
            return Answer::failed(ResponseStatus::Unauthorized);
        }
        // Never past the CA's own end (its notAfter is at least `now`, checked above).
        let next_update = time::Duration::try_from(self.lifetime)
            .ok()
            .and_then(|lifetime| now.checked_add(lifetime))
            .map(|next| next.min(self.not_after));
        let Some(next_update) = next_update else {
            tracing::error!("OCSP: nextUpdate would be outside the times a response can carry");
            return Answer::failed(ResponseStatus::InternalError);
        };
        let (Some(this_update_der), Some(next_update_der)) = (generalized(now), generalized(next_update)) else {
            return Answer::failed(ResponseStatus::InternalError);
        };
        let mut answers = Vec::with_capacity(request.cert_ids.len());
        let mut responses = Vec::with_capacity(request.cert_ids.len());
        for cert_id in request.cert_ids {
            let (serial, status) = match self.answer(ca, &cert_id) {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!(error = %e, "OCSP: the store cannot be read");
                    return Answer::failed(ResponseStatus::TryLater);
                }
            };
            let cert_status = match &status {
                CertStatus::Good => CertStatusDer::Good(Null),
                CertStatus::Unknown => CertStatusDer::Unknown(Null),
                CertStatus::Revoked { at, reason } => {
                    let Some(revocation_time) = whole_seconds(*at).and_then(generalized) else {
                        return Answer::failed(ResponseStatus::InternalError);
                    };
                    CertStatusDer::Revoked(RevokedInfo {
                        revocation_time,
                        revocation_reason: crl_reason(*reason),
                    })
                }
            };
            responses.push(SingleResponse {
                cert_id,
                cert_status,
                this_update: this_update_der,
                next_update: Some(next_update_der),
            });
            answers.push(SingleAnswer { serial, status });
        }
        let Ok(responder_id) = OctetString::new(self.responder_key_hash.clone()) else {
            return Answer::failed(ResponseStatus::InternalError);
        };
        let data = ResponseData {
            responder_id: ResponderId::ByKey(responder_id),
            produced_at: this_update_der,
            responses,
            response_extensions: request.nonce.map(|nonce| vec![nonce]),
        };
        match self.sign(&data) {
            Ok(der) => Answer {
                der,
                status: ResponseStatus::Successful,
                answers,
                this_update: Some(now),
                next_update: Some(next_update),
            },
            Err(reason) => {
                tracing::error!(reason, "OCSP: cannot sign the response");
                Answer::failed(ResponseStatus::InternalError)
            }
        }
    }

    /// What the store says about one CertID.
    fn answer(&self, ca: &CertificateAuthority, cert_id: &CertId) -> Result<(Option<Serial>, CertStatus), CaError> {
        let serial_octets = cert_id.serial_number.as_bytes();
        let serial = match serial_octets.first() {
            Some(first) if first & 0x80 == 0 => Some(Serial::from_octets(serial_octets)),
            _ => None,
        };
        let Some(serial) = serial else {
            return Ok((None, CertStatus::Unknown));
        };
        if !self.names_this_ca(cert_id) {
            return Ok((Some(serial), CertStatus::Unknown));
        }
        let record = ca.with_store(|store| store.find(&serial))?;
        let status = match record {
            None => CertStatus::Unknown,
            Some(record) => match record.revoked {
                Some(revocation) => CertStatus::Revoked {
                    at: revocation.at,
                    reason: revocation.reason,
                },
                None => CertStatus::Good,
            },
        };
        Ok((Some(serial), status))
    }

    /// Whether the CertID's issuer hashes are this CA's under its hash algorithm.
    fn names_this_ca(&self, cert_id: &CertId) -> bool {
        let algorithm = match cert_id.hash_algorithm.oid {
            ID_SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ID_SHA256 => &digest::SHA256,
            ID_SHA384 => &digest::SHA384,
            ID_SHA512 => &digest::SHA512,
            _ => return false,
        };
        // Parameters, when present, must be NULL (RFC 5754 §2 allows both forms).
        if let Some(parameters) = &cert_id.hash_algorithm.parameters
            && parameters.to_der().ok().as_deref() != Some(&[0x05, 0x00][..])
        {
            return false;
        }
        let name_hash = digest::digest(algorithm, &self.subject_der);
        let key_hash = digest::digest(algorithm, &self.public_key_bits);
        cert_id.issuer_name_hash.as_bytes() == name_hash.as_ref()
            && cert_id.issuer_key_hash.as_bytes() == key_hash.as_ref()
    }

    /// The DER OCSPResponse with `data` signed by the CA.
    fn sign(&self, data: &ResponseData) -> Result<Vec<u8>, &'static str> {
        use rcgen::SigningKey;
        let tbs = data.to_der().map_err(|_| "cannot encode the response data")?;
        let signature = self.key_pair.sign(&tbs).map_err(|_| "the key refused to sign")?;
        let basic = BasicOcspResponse {
            tbs_response_data: der::asn1::AnyRef::try_from(tbs.as_slice())
                .map_err(|_| "cannot re-read the response data")?
                .into(),
            signature_algorithm: self.signature_algorithm.clone(),
            signature: BitString::from_bytes(&signature).map_err(|_| "cannot encode the signature")?,
        };
        let basic_der = basic.to_der().map_err(|_| "cannot encode the basic response")?;
        OcspResponse {
            response_status: ResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: ID_PKIX_OCSP_BASIC,
                response: OctetString::new(basic_der).map_err(|_| "cannot encode the response bytes")?,
            }),
        }
        .to_der()
        .map_err(|_| "cannot encode the response")
    }
}

impl Answer {
    /// A response with this (unsuccessful) status and no `responseBytes`.
    pub(crate) fn failed(status: ResponseStatus) -> Self {
        let der = OcspResponse {
            response_status: status,
            response_bytes: None,
        }
        .to_der()
        // Three octets of ENUMERATED in a SEQUENCE: always encodable; the fallback is the
        // same bytes written out.
        .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, status as u8]);
        Self {
            der,
            status,
            answers: Vec::new(),
            this_update: None,
            next_update: None,
        }
    }
}

/// A parsed request: its CertIDs and the nonce extension to echo.
struct ParsedRequest {
    cert_ids: Vec<CertId>,
    nonce: Option<Extension>,
}

fn parse_request(der: &[u8]) -> Result<ParsedRequest, &'static str> {
    if der.is_empty() {
        return Err("empty request");
    }
    if der.len() > MAX_REQUEST_BYTES {
        return Err("request too large");
    }
    let request = OcspRequest::from_der(der).map_err(|_| "not a DER OCSPRequest")?;
    let tbs = request.tbs_request;
    if tbs.version != Version::V1 {
        return Err("unknown version");
    }
    if tbs.request_list.is_empty() {
        return Err("no CertID");
    }
    if tbs.request_list.len() > MAX_CERT_IDS {
        return Err("too many CertIDs");
    }
    let mut nonce = None;
    for extension in tbs.request_extensions.unwrap_or_default() {
        if extension.extn_id == ID_PKIX_OCSP_NONCE {
            let value = OctetString::from_der(extension.extn_value.as_bytes())
                .map_err(|_| "the nonce is not an OCTET STRING")?;
            if value.as_bytes().is_empty() || value.as_bytes().len() > MAX_NONCE_OCTETS {
                return Err("the nonce is not 1 to 32 octets");
            }
            if nonce.is_some() {
                return Err("two nonces");
            }
            nonce = Some(extension);
        } else if extension.critical {
            return Err("an unknown critical request extension");
        }
    }
    for request in &tbs.request_list {
        if request
            .single_request_extensions
            .as_ref()
            .is_some_and(|extensions| extensions.iter().any(|e| e.critical))
        {
            return Err("an unknown critical single request extension");
        }
    }
    Ok(ParsedRequest {
        cert_ids: tbs.request_list.into_iter().map(|r| r.req_cert).collect(),
        nonce,
    })
}

/// `now` to whole seconds, UTC, within GeneralizedTime's years.
fn whole_seconds(t: OffsetDateTime) -> Option<OffsetDateTime> {
    super::authority::x509_time(t).ok()
}

fn generalized(t: OffsetDateTime) -> Option<GeneralizedTime> {
    let seconds = u64::try_from(t.unix_timestamp()).ok()?;
    GeneralizedTime::from_unix_duration(Duration::from_secs(seconds)).ok()
}

fn crl_reason(reason: RevocationReason) -> Option<CrlReason> {
    Some(match reason {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => CrlReason::AaCompromise,
    })
}

fn signature_algorithm(key: KeyAlgorithm) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: match key {
            KeyAlgorithm::Ed25519 => ID_ED25519,
            KeyAlgorithm::P256 => ECDSA_WITH_SHA256,
            KeyAlgorithm::P384 => ECDSA_WITH_SHA384,
        },
        // RFC 5758 §3.2 and RFC 8410 §3: the parameters are absent.
        parameters: None,
    }
}

// Object identifiers (RFC 6960 §4.4.1 and Appendix B, RFC 5758, RFC 8410, RFC 3279/5754).
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

// The ASN.1 of RFC 6960 §4.1.1 and §4.2.1 (module OCSP-2013-88, EXPLICIT TAGS), on der 0.8
// and x509-cert 0.3 types. No published x509-ocsp release is built on der 0.8 (0.2 needs der
// 0.7, a second generation of the RustCrypto crates), so the few structures the responder
// reads and writes are declared here with der's derive macros: der does the encoding and the
// strict DER parsing, this file only names the fields.

/// `Version ::= INTEGER { v1(0) }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, der::Enumerated)]
#[asn1(type = "INTEGER")]
#[repr(u8)]
enum Version {
    #[default]
    V1 = 0,
}

/// `OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }`.
#[derive(Clone, Debug, der::Sequence)]
struct OcspRequest {
    tbs_request: TbsRequest,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    optional_signature: Option<der::Any>,
}

/// `TBSRequest` (RFC 6960 §4.1.1).
#[derive(Clone, Debug, der::Sequence)]
struct TbsRequest {
    #[asn1(context_specific = "0", default = "Default::default", tag_mode = "EXPLICIT")]
    version: Version,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    requestor_name: Option<der::Any>,
    request_list: Vec<Request>,
    #[asn1(context_specific = "2", optional = "true", tag_mode = "EXPLICIT")]
    request_extensions: Option<Vec<Extension>>,
}

/// `Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }`.
#[derive(Clone, Debug, der::Sequence)]
struct Request {
    req_cert: CertId,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    single_request_extensions: Option<Vec<Extension>>,
}

/// `CertID` (RFC 6960 §4.1.1); echoed as received (DER re-encodes to the same bytes).
#[derive(Clone, Debug, der::Sequence)]
struct CertId {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    serial_number: Int,
}

/// `OCSPResponse ::= SEQUENCE { responseStatus, responseBytes [0] EXPLICIT ResponseBytes OPTIONAL }`.
#[derive(Clone, Debug, der::Sequence)]
struct OcspResponse {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    response_bytes: Option<ResponseBytes>,
}

/// `ResponseBytes ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING }`.
#[derive(Clone, Debug, der::Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

/// `BasicOCSPResponse` without `certs` (never sent): the signed `tbsResponseData` is carried as
/// the exact bytes that were signed.
#[derive(Clone, Debug, der::Sequence)]
struct BasicOcspResponse {
    tbs_response_data: der::Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// `ResponseData` (RFC 6960 §4.2.1). `version [0] EXPLICIT DEFAULT v1` is left out: DER never
/// encodes a default value (X.690 §11.5).
#[derive(Clone, Debug, der::Sequence)]
struct ResponseData {
    responder_id: ResponderId,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    response_extensions: Option<Vec<Extension>>,
}

/// `ResponderID ::= CHOICE { byName [1] Name, byKey [2] KeyHash }` (EXPLICIT tags); only
/// `byKey` is sent.
#[derive(Clone, Debug, der::Choice)]
enum ResponderId {
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

/// `SingleResponse` (RFC 6960 §4.2.1); no `singleExtensions`.
#[derive(Clone, Debug, der::Sequence)]
struct SingleResponse {
    cert_id: CertId,
    cert_status: CertStatusDer,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    next_update: Option<GeneralizedTime>,
}

/// `CertStatus ::= CHOICE { good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo,
/// unknown [2] IMPLICIT UnknownInfo }`.
#[derive(Clone, Debug, der::Choice)]
enum CertStatusDer {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

/// `RevokedInfo ::= SEQUENCE { revocationTime GeneralizedTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL }`.
#[derive(Clone, Debug, der::Sequence)]
struct RevokedInfo {
    revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    revocation_reason: Option<CrlReason>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::ca::{InitRequest, IssueRequest, Profile};

    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<Responder>();

    fn ca(algorithm: KeyAlgorithm) -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let mut request = InitRequest::new("Unit Root");
        request.key_algorithm = algorithm;
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &request, None, OffsetDateTime::now_utc()).unwrap();
        (dir, ca)
    }

    /// A request for `serial` under `ca`'s SHA-256 hashes, with these request extensions.
    fn request(responder: &Responder, serial: &[u8], extensions: Option<Vec<Extension>>) -> Vec<u8> {
        let hash = |bytes: &[u8]| OctetString::new(digest::digest(&digest::SHA256, bytes).as_ref().to_vec()).unwrap();
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: CertId {
                        hash_algorithm: AlgorithmIdentifierOwned {
                            oid: ID_SHA256,
                            parameters: None,
                        },
                        issuer_name_hash: hash(&responder.subject_der),
                        issuer_key_hash: hash(&responder.public_key_bits),
                        serial_number: Int::new(serial).unwrap(),
                    },
                    single_request_extensions: None,
                }],
                request_extensions: extensions,
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    fn nonce(octets: usize, critical: bool) -> Extension {
        Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical,
            extn_value: OctetString::new(OctetString::new(vec![7; octets]).unwrap().to_der().unwrap()).unwrap(),
        }
    }

    #[test]
    fn every_key_type_signs_and_the_signature_verifies_with_ring() {
        for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256, KeyAlgorithm::P384] {
            let (_dir, ca) = ca(algorithm);
            let issued = ca
                .issue(&IssueRequest::new(Profile::Client, "c"), OffsetDateTime::now_utc())
                .unwrap();
            let responder = Responder::new(&ca).unwrap();
            let der = request(&responder, issued.info.serial.as_octets(), Some(vec![nonce(32, false)]));
            let answer = responder.respond(&ca, &der, OffsetDateTime::now_utc());
            assert_eq!(answer.status, ResponseStatus::Successful, "{algorithm}");
            assert_eq!(answer.answers[0].status, CertStatus::Good);
            let response = OcspResponse::from_der(&answer.der).unwrap();
            let bytes = response.response_bytes.unwrap();
            assert_eq!(bytes.response_type, ID_PKIX_OCSP_BASIC);
            let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
            let tbs = basic.tbs_response_data.to_der().unwrap();
            let verifier: &dyn ring::signature::VerificationAlgorithm = match algorithm {
                KeyAlgorithm::Ed25519 => &ring::signature::ED25519,
                KeyAlgorithm::P256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
                KeyAlgorithm::P384 => &ring::signature::ECDSA_P384_SHA384_ASN1,
            };
            ring::signature::UnparsedPublicKey::new(verifier, &responder.public_key_bits)
                .verify(&tbs, basic.signature.raw_bytes())
                .unwrap();
            let data = ResponseData::from_der(&tbs).unwrap();
            assert_eq!(data.response_extensions.unwrap(), vec![nonce(32, false)]);
            assert!(
                matches!(data.responder_id, ResponderId::ByKey(hash) if hash.as_bytes() == responder.responder_key_hash)
            );
        }
    }

    /// nextUpdate − thisUpdate is the responder's lifetime, in the answer and in the signed
    /// bytes: one hour by default, what `with_lifetime` says, at least one second.
    #[test]
    fn next_update_follows_the_responders_lifetime() {
        let (_dir, ca) = ca(KeyAlgorithm::P256);
        let issued = ca
            .issue(&IssueRequest::new(Profile::Client, "c"), OffsetDateTime::now_utc())
            .unwrap();
        let now = OffsetDateTime::now_utc();
        for (lifetime, expected) in [
            (None, 3600),
            (Some(Duration::from_secs(8 * 3600)), 8 * 3600),
            (Some(Duration::from_millis(10)), 1),
        ] {
            let mut responder = Responder::new(&ca).unwrap();
            if let Some(lifetime) = lifetime {
                responder = responder.with_lifetime(lifetime);
            }
            assert_eq!(responder.lifetime(), Duration::from_secs(expected));
            let der = request(&responder, issued.info.serial.as_octets(), None);
            let answer = responder.respond(&ca, &der, now);
            assert_eq!(answer.status, ResponseStatus::Successful);
            let (this, next) = (answer.this_update.unwrap(), answer.next_update.unwrap());
            assert_eq!((next - this).whole_seconds(), expected as i64, "{lifetime:?}");
            let response = OcspResponse::from_der(&answer.der).unwrap();
            let basic = BasicOcspResponse::from_der(response.response_bytes.unwrap().response.as_bytes()).unwrap();
            let data = ResponseData::from_der(&basic.tbs_response_data.to_der().unwrap()).unwrap();
            let single = &data.responses[0];
            let signed_this = single.this_update.to_unix_duration().as_secs();
            let signed_next = single.next_update.unwrap().to_unix_duration().as_secs();
            assert_eq!(signed_next - signed_this, expected, "{lifetime:?}");
        }
    }

    /// The signed nextUpdate of the one SingleResponse of a successful answer, in Unix seconds.
    fn signed_next_update(answer: &Answer) -> u64 {
        let response = OcspResponse::from_der(&answer.der).unwrap();
        let basic = BasicOcspResponse::from_der(response.response_bytes.unwrap().response.as_bytes()).unwrap();
        let data = ResponseData::from_der(&basic.tbs_response_data.to_der().unwrap()).unwrap();
        data.responses[0].next_update.unwrap().to_unix_duration().as_secs()
    }

    /// A CA that ends in ten minutes: an answer with a lifetime of an hour says nextUpdate =
    /// the CA's notAfter, in the answer and in the signed bytes; up to notAfter itself it
    /// answers, a second later it answers `unauthorized` without `responseBytes`, as it does
    /// before its notBefore.
    #[test]
    fn next_update_stops_at_the_cas_end_and_an_expired_ca_is_unauthorized() {
        let dir = tempfile::tempdir().unwrap();
        let start = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let mut init = InitRequest::new("Short Root");
        init.lifetime = Some(Duration::from_secs(3600));
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &init, None, start).unwrap();
        let issued = ca.issue(&IssueRequest::new(Profile::Client, "c"), start).unwrap();
        let responder = Responder::new(&ca).unwrap();
        let not_after = responder.not_after;
        assert!(
            not_after > start && not_after <= start + time::Duration::HOUR,
            "{not_after}"
        );
        let der = request(&responder, issued.info.serial.as_octets(), None);

        // Well inside: the full hour.
        let answer = responder.respond(&ca, &der, start);
        assert_eq!(answer.status, ResponseStatus::Successful);
        assert_eq!(
            answer.next_update,
            Some(start + time::Duration::HOUR).map(|t| t.min(not_after))
        );

        for before_end in [600, 1, 0] {
            let now = not_after - time::Duration::seconds(before_end);
            let answer = responder.respond(&ca, &der, now);
            assert_eq!(answer.status, ResponseStatus::Successful, "{before_end}");
            assert_eq!(answer.answers[0].status, CertStatus::Good);
            assert_eq!(answer.this_update, Some(now));
            assert_eq!(answer.next_update, Some(not_after), "{before_end}");
            assert_eq!(
                signed_next_update(&answer),
                not_after.unix_timestamp() as u64,
                "{before_end}"
            );
        }

        let not_before = responder.not_before;
        for now in [
            not_after + time::Duration::SECOND,
            not_after + time::Duration::days(400),
            not_before - time::Duration::SECOND,
        ] {
            let answer = responder.respond(&ca, &der, now);
            assert_eq!(answer.status, ResponseStatus::Unauthorized, "{now}");
            assert!(answer.answers.is_empty() && answer.next_update.is_none());
            let response = OcspResponse::from_der(&answer.der).unwrap();
            assert_eq!(response.response_status, ResponseStatus::Unauthorized);
            assert!(response.response_bytes.is_none(), "nothing signed");
            // The free function answers the same.
            assert_eq!(respond(&ca, &der, now).status, ResponseStatus::Unauthorized);
        }
        // A malformed request is still malformed.
        let answer = responder.respond(&ca, b"\x30\x00", not_after + time::Duration::SECOND);
        assert_eq!(answer.status, ResponseStatus::MalformedRequest);
    }

    #[test]
    fn nonces_outside_rfc_8954s_sizes_and_unknown_critical_extensions_are_malformed() {
        let (_dir, ca) = ca(KeyAlgorithm::P256);
        let responder = Responder::new(&ca).unwrap();
        let critical = Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.55555.9"),
            critical: true,
            extn_value: OctetString::new(vec![5, 0]).unwrap(),
        };
        let not_octets = Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(vec![1, 2, 3]).unwrap(),
        };
        for (name, extensions) in [
            ("33 octets", vec![nonce(33, false)]),
            ("empty", vec![nonce(0, false)]),
            ("two", vec![nonce(8, false), nonce(8, false)]),
            ("unknown critical", vec![critical]),
            ("not an OCTET STRING", vec![not_octets]),
        ] {
            let der = request(&responder, &[1], Some(extensions));
            let answer = responder.respond(&ca, &der, OffsetDateTime::now_utc());
            assert_eq!(answer.status, ResponseStatus::MalformedRequest, "{name}");
        }
        // 1 and 32 octets, and a nonce marked critical (understood), are echoed.
        for extension in [nonce(1, false), nonce(32, false), nonce(16, true)] {
            let der = request(&responder, &[1], Some(vec![extension]));
            let answer = responder.respond(&ca, &der, OffsetDateTime::now_utc());
            assert_eq!(answer.status, ResponseStatus::Successful);
            assert_eq!(answer.answers[0].status, CertStatus::Unknown);
        }
        // A negative serial (no CA issues one) is unknown, not an error.
        let der = request(&responder, &[0xff, 0x01], None);
        let answer = responder.respond(&ca, &der, OffsetDateTime::now_utc());
        assert_eq!(
            answer.answers[0],
            SingleAnswer {
                serial: None,
                status: CertStatus::Unknown
            }
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_bytes_or_bit_flip_get_an_answer_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            flip in 0usize..4096,
        ) {
            use std::sync::OnceLock;
            static FIXTURE: OnceLock<(tempfile::TempDir, CertificateAuthority, Vec<u8>)> = OnceLock::new();
            let (_, ca, valid) = FIXTURE.get_or_init(|| {
                let (dir, ca) = ca(KeyAlgorithm::P256);
                let responder = Responder::new(&ca).unwrap();
                let valid = request(&responder, &[1, 2, 3], Some(vec![nonce(16, false)]));
                (dir, ca, valid)
            });
            let responder = Responder::new(ca).unwrap();
            let answer = responder.respond(ca, &bytes, OffsetDateTime::now_utc());
            proptest::prop_assert!(matches!(answer.status, ResponseStatus::Successful | ResponseStatus::MalformedRequest));
            let mut flipped = valid.clone();
            let bit = flip % (flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            let answer = responder.respond(ca, &flipped, OffsetDateTime::now_utc());
            match answer.status {
                ResponseStatus::Successful => proptest::prop_assert_eq!(answer.answers.len(), 1),
                ResponseStatus::MalformedRequest => proptest::prop_assert!(answer.answers.is_empty()),
                other => proptest::prop_assert!(false, "{other:?}"),
            }
            proptest::prop_assert!(OcspResponse::from_der(&answer.der).is_ok());
        }
    }

    #[test]
    fn too_many_cert_ids_or_bytes_are_malformed() {
        let (_dir, ca) = ca(KeyAlgorithm::Ed25519);
        let responder = Responder::new(&ca).unwrap();
        let one = OcspRequest::from_der(&request(&responder, &[1], None)).unwrap();
        let mut many = one.clone();
        many.tbs_request.request_list = vec![one.tbs_request.request_list[0].clone(); MAX_CERT_IDS + 1];
        let answer = responder.respond(&ca, &many.to_der().unwrap(), OffsetDateTime::now_utc());
        assert_eq!(answer.status, ResponseStatus::MalformedRequest);
        many.tbs_request.request_list.truncate(MAX_CERT_IDS);
        let answer = responder.respond(&ca, &many.to_der().unwrap(), OffsetDateTime::now_utc());
        assert_eq!(answer.answers.len(), MAX_CERT_IDS);
        let answer = responder.respond(&ca, &vec![0x30; MAX_REQUEST_BYTES + 1], OffsetDateTime::now_utc());
        assert_eq!(answer.status, ResponseStatus::MalformedRequest);
    }
}
