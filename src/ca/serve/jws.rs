//! JWS in the flattened JSON serialization, JWKs and their RFC 7638 thumbprints, as ACME uses
//! them (RFC 8555 §6.2).
//!
//! Every ACME POST body is a JWS ([`parse`]): a JSON object with exactly `protected`, `payload`
//! and `signature` (RFC 7515 §7.2.2; no unprotected `header`, no `signatures` array), each
//! base64url without padding. The protected header holds `alg`, `nonce`, `url` and exactly one of
//! `jwk` (the account key itself: newAccount, revokeCert with the certificate's key) or `kid`
//! (the account URL). Parsing checks the shape and refuses what RFC 8555 §6.2 forbids (`alg:
//! none`, MACs, the unencoded payload option, unknown `crit` extensions); it does not check the
//! signature, which needs the account's key: [`Jws::verify`] does, after the server has looked up
//! `kid`, or with the embedded [`Jwk`].
//!
//! Accepted algorithms ([`ALGORITHMS`]): RS256 (RSA PKCS#1 v1.5 with SHA-256, 2048 to 8192-bit
//! keys), ES256 (P-256), ES384 (P-384) and EdDSA (Ed25519). ECDSA signatures are the fixed-size
//! `r || s` of RFC 7518 §3.4, never DER. The algorithm must fit the key (ES256 needs a P-256 key,
//! and so on).
//!
//! Errors are [`Problem`]s with RFC 8555's types: `malformed` for a body that is not such a JWS,
//! `badSignatureAlgorithm` (with the accepted `algorithms`) for a refused or unfitting `alg`,
//! `badPublicKey` for an unsupported or invalid key, `badNonce` for a missing or malformed
//! `nonce`. The checks of the `nonce` value against the server's store and of `url` against
//! the request URL (§6.4, §6.5) are the server's.
//!
//! Ring verifies every signature. [`Jwk::thumbprint`] is the RFC 7638 SHA-256 thumbprint
//! (accounts are keyed by it; [`key_authorization`] of RFC 8555 §8.1 uses it).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::problem::Problem;

/// The largest JWS body accepted, in bytes (a finalize request with an 8192-bit RSA CSR, or a
/// revokeCert request with a large certificate, fits many times over). A larger body is refused
/// as `malformed` with HTTP status 413.
pub const MAX_JWS_BYTES: usize = 64 * 1024;

/// The accepted JWS `alg` values (RFC 8555 §6.2), as sent in `badSignatureAlgorithm`'s
/// `algorithms`.
pub const ALGORITHMS: [&str; 4] = ["RS256", "ES256", "ES384", "EdDSA"];

/// The smallest and largest RSA moduli accepted, in bits (ring's `RSA_PKCS1_2048_8192_SHA256`).
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A JWS signature algorithm (RFC 7518 §3.1, RFC 8037 §3.1) that ACME requests may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of 2048 to 8192 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256; the signature is `r || s`, 64 octets.
    Es256,
    /// ECDSA on P-384 with SHA-384; the signature is `r || s`, 96 octets.
    Es384,
    /// EdDSA with Ed25519 (RFC 8037); the signature is 64 octets.
    EdDsa,
}

impl Algorithm {
    /// Every accepted algorithm, in the order of [`ALGORITHMS`].
    pub const ALL: [Algorithm; 4] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::Es384, Algorithm::EdDsa];

    /// The `alg` value (`ES256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm an `alg` value names (exact case), if it is accepted.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a request names its signing key (RFC 8555 §6.2): exactly one of the two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// The key itself (`jwk`): newAccount, and revokeCert signed with the certificate's key.
    Jwk(Jwk),
    /// The account URL (`kid`): every other request.
    Kid(String),
}

/// A parsed ACME request JWS (RFC 8555 §6.2), its signature not yet checked ([`Jws::verify`]).
#[derive(Clone, Debug)]
pub struct Jws {
    /// The protected header's `alg`.
    pub alg: Algorithm,
    /// The protected header's `nonce`: always present in a request body ([`parse`]), absent in
    /// the inner JWS of a key change ([`parse_inner`]). Checked to be base64url here; whether the
    /// server issued it and it is unused is the server's check (§6.5).
    pub nonce: Option<String>,
    /// The protected header's `url` (the server compares it with the request URL, §6.4).
    pub url: String,
    /// The signing key or the account URL.
    pub key: KeyRef,
    /// The payload, base64url-decoded: the request's JSON, or empty for POST-as-GET (§6.3).
    pub payload: Vec<u8>,
    /// What the signature covers: `protected "." payload`, as sent (RFC 7515 §5.2).
    signing_input: Vec<u8>,
    /// The decoded signature.
    signature: Vec<u8>,
}

impl Jws {
    /// Checks the signature with `key` (the account's key for a `kid`, or the embedded
    /// [`Jwk`]).
    ///
    /// # Errors
    /// `badSignatureAlgorithm` (listing the algorithms that fit the key) if `alg` does not fit
    /// `key`; `malformed` if the signature has the wrong length for `alg` (a DER-encoded ECDSA
    /// signature, say) or does not verify.
    ///
    /// # Security
    /// Authenticates the protected header and the payload as sent by the holder of `key`'s
    /// private key; says nothing about whether the nonce is fresh or the URL is this request's.
    pub fn verify(&self, key: &Jwk) -> Result<(), Problem> {
        key.verify_signature(self.alg, &self.signing_input, &self.signature)
    }

    /// The embedded key when the request is signed with `jwk` (newAccount, revokeCert by the
    /// certificate's key), after checking the signature with it.
    ///
    /// # Errors
    /// `malformed` if the request names its key with `kid`; as [`Jws::verify`] otherwise.
    pub fn verify_embedded(&self) -> Result<&Jwk, Problem> {
        match &self.key {
            KeyRef::Jwk(jwk) => self.verify(jwk).map(|()| jwk),
            KeyRef::Kid(_) => Err(Problem::malformed(
                "this request must carry its key in `jwk`, not an account URL in `kid` (RFC 8555 §6.2)",
            )),
        }
    }

    /// The embedded key, if the request carries one (`jwk`).
    pub fn jwk(&self) -> Option<&Jwk> {
        match &self.key {
            KeyRef::Jwk(jwk) => Some(jwk),
            KeyRef::Kid(_) => None,
        }
    }

    /// The account URL, if the request names one (`kid`).
    pub fn kid(&self) -> Option<&str> {
        match &self.key {
            KeyRef::Kid(kid) => Some(kid),
            KeyRef::Jwk(_) => None,
        }
    }

    /// Whether this is a POST-as-GET request: the payload is the empty string (§6.3).
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// The payload as JSON of type `T`.
    ///
    /// # Errors
    /// `malformed` if the payload is empty (POST-as-GET where a request object was expected) or
    /// is not JSON of that shape.
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if self.payload.is_empty() {
            return Err(Problem::malformed(
                "the payload is empty (POST-as-GET) where a JSON object was expected (RFC 8555 §6.3)",
            ));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| Problem::malformed(format!("the payload is not the JSON object this resource takes: {e}")))
    }
}

/// Parses an ACME request body: a JWS in the flattened JSON serialization (RFC 8555 §6.2) whose
/// protected header has `alg`, `nonce`, `url` and exactly one of `jwk` and `kid`.
///
/// # Errors
/// - `malformed` (413) if `body` is longer than [`MAX_JWS_BYTES`];
/// - `malformed` if it is not a JSON object with exactly `protected`, `payload` and `signature`
///   (an unprotected `header`, a `signatures` array, a duplicate or unknown member), if a part is
///   not base64url without padding, if the protected header is not a JSON object, lacks `url`,
///   has both or neither of `jwk` and `kid`, uses `b64` (RFC 7797) or `crit`;
/// - `badSignatureAlgorithm` (with [`ALGORITHMS`]) for `alg` `none`, an HMAC or anything not
///   accepted, or an `alg` that does not fit the `jwk`;
/// - `badPublicKey` for a `jwk` of an unsupported type, size or curve, or not a valid key;
/// - `badNonce` if `nonce` is missing or not base64url.
pub fn parse(body: &[u8]) -> Result<Jws, Problem> {
    parse_with(body, Role::Request)
}

/// Parses the inner JWS of an account key change (RFC 8555 §7.3.5): as [`parse`], but the
/// header must carry the new key as `jwk` and no `nonce`.
///
/// # Errors
/// As [`parse`]; `malformed` if the header has a `nonce` or a `kid`.
pub fn parse_inner(body: &[u8]) -> Result<Jws, Problem> {
    parse_with(body, Role::KeyChangeInner)
}

/// The key authorization of a challenge (RFC 8555 §8.1): `token "." thumbprint(accountKey)`.
pub fn key_authorization(token: &str, key: &Jwk) -> String {
    format!("{token}.{}", key.thumbprint())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Request,
    KeyChangeInner,
}

impl Role {
    /// What the JWS being parsed is, for messages.
    fn what(self) -> &'static str {
        match self {
            Self::Request => "the request body",
            Self::KeyChangeInner => "the key change's payload (the inner JWS, RFC 8555 §7.3.5)",
        }
    }
}

/// The flattened JSON serialization (RFC 7515 §7.2.2) as ACME allows it: these three members
/// only (duplicates are refused by serde's derive).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

/// The protected header's members that this server reads; others are ignored (RFC 7515 §4).
#[derive(Deserialize)]
struct Header {
    alg: String,
    nonce: Option<String>,
    url: Option<String>,
    jwk: Option<RawJwk>,
    kid: Option<String>,
    b64: Option<IgnoredAny>,
    crit: Option<IgnoredAny>,
}

fn parse_with(body: &[u8], role: Role) -> Result<Jws, Problem> {
    if body.len() > MAX_JWS_BYTES {
        return Err(Problem::malformed(format!(
            "{} is {} bytes; at most {MAX_JWS_BYTES} are accepted",
            role.what(),
            body.len()
        ))
        .with_status(413));
    }
    if !is_json_object(body) {
        return Err(Problem::malformed(format!(
            "{} is not a JSON object (a JWS in the flattened JSON serialization, RFC 8555 §6.2)",
            role.what()
        )));
    }
    let flat: Flattened = serde_json::from_slice(body).map_err(|e| outer_shape_problem(body, role, &e))?;

    let header_bytes = decode_part("protected", &flat.protected)?;
    if flat.protected.is_empty() || !is_json_object(&header_bytes) {
        return Err(Problem::malformed(
            "the protected header is not a JSON object (RFC 7515 §4)",
        ));
    }
    // The jwk member too must be an object (serde's derive would take an array by position).
    let header_value: serde_json::Value = serde_json::from_slice(&header_bytes)
        .map_err(|e| Problem::malformed(format!("the protected header is not valid JSON: {e}")))?;
    if header_value.get("jwk").is_some_and(|jwk| !jwk.is_object()) {
        return Err(Problem::malformed(
            "the protected header's `jwk` is not a JSON object (RFC 7517 §4)",
        ));
    }
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| Problem::malformed(format!("the protected header is not one ACME accepts: {e}")))?;

    let alg = algorithm(&header.alg)?;
    if header.b64.is_some() {
        return Err(Problem::malformed(
            "the protected header uses `b64` (RFC 7797's unencoded payload), which ACME forbids (RFC 8555 §6.2)",
        ));
    }
    if header.crit.is_some() {
        return Err(Problem::malformed(
            "the protected header has `crit`, naming extensions this server does not understand (RFC 7515 §4.1.11)",
        ));
    }
    let key = match (header.jwk, header.kid) {
        (Some(_), Some(_)) => {
            return Err(Problem::malformed(
                "the protected header has both `jwk` and `kid`; exactly one is allowed (RFC 8555 §6.2)",
            ));
        }
        (None, None) => {
            return Err(Problem::malformed(
                "the protected header has neither `jwk` nor `kid`; exactly one is required (RFC 8555 §6.2)",
            ));
        }
        (Some(raw), None) => {
            let (jwk, jwk_alg) = Jwk::from_raw(raw)?;
            if let Some(jwk_alg) = jwk_alg.filter(|a| a != alg.name()) {
                return Err(Problem::bad_signature_algorithm(
                    format!("the header's alg {alg} differs from the jwk's alg {jwk_alg}"),
                    jwk.algorithm_names(),
                ));
            }
            jwk.check_fits(alg)?;
            KeyRef::Jwk(jwk)
        }
        (None, Some(kid)) if kid.is_empty() => {
            return Err(Problem::malformed(
                "the protected header's `kid` is empty (RFC 8555 §6.2)",
            ));
        }
        (None, Some(kid)) => KeyRef::Kid(kid),
    };
    let url = match header.url {
        Some(url) if !url.is_empty() => url,
        _ => return Err(Problem::malformed("the protected header has no `url` (RFC 8555 §6.4)")),
    };
    let nonce = match (role, header.nonce) {
        (Role::Request, None) => {
            return Err(Problem::bad_nonce(
                "the protected header has no `nonce` (RFC 8555 §6.5)",
            ));
        }
        (Role::Request, Some(nonce)) => {
            if nonce.is_empty() || URL_SAFE_NO_PAD.decode(&nonce).is_err() {
                return Err(Problem::bad_nonce(
                    "the protected header's `nonce` is not base64url without padding (RFC 8555 §6.5.1)",
                ));
            }
            Some(nonce)
        }
        (Role::KeyChangeInner, Some(_)) => {
            return Err(Problem::malformed(
                "the inner JWS of a key change must not have a `nonce` (RFC 8555 §7.3.5)",
            ));
        }
        (Role::KeyChangeInner, None) => None,
    };
    if role == Role::KeyChangeInner && matches!(key, KeyRef::Kid(_)) {
        return Err(Problem::malformed(
            "the inner JWS of a key change must carry the new key in `jwk` (RFC 8555 §7.3.5)",
        ));
    }

    let payload = decode_part("payload", &flat.payload)?;
    let signature = decode_part("signature", &flat.signature)?;
    if signature.is_empty() {
        return Err(Problem::malformed("the JWS signature is empty"));
    }
    let mut signing_input = Vec::with_capacity(flat.protected.len() + 1 + flat.payload.len());
    signing_input.extend_from_slice(flat.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(flat.payload.as_bytes());
    Ok(Jws {
        alg,
        nonce,
        url,
        key,
        payload,
        signing_input,
        signature,
    })
}

/// Explains why the body is not a flattened JWS, naming the forbidden shapes of RFC 8555 §6.2.
fn outer_shape_problem(body: &[u8], role: Role, error: &serde_json::Error) -> Problem {
    let members = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body).ok();
    let has = |name: &str| members.as_ref().is_some_and(|m| m.contains_key(name));
    if has("signatures") {
        Problem::malformed(
            "the JWS uses the general JSON serialization (`signatures`); ACME takes the flattened one (RFC 8555 §6.2)",
        )
    } else if has("header") {
        Problem::malformed("the JWS has an unprotected `header`, which ACME forbids (RFC 8555 §6.2)")
    } else {
        Problem::malformed(format!(
            "{} is not a JWS in the flattened JSON serialization with `protected`, `payload` and \
             `signature` (RFC 8555 §6.2): {error}",
            role.what()
        ))
    }
}

/// The accepted algorithm `name` names, or why it is refused.
fn algorithm(name: &str) -> Result<Algorithm, Problem> {
    if let Some(alg) = Algorithm::from_name(name) {
        return Ok(alg);
    }
    let detail = match name {
        "none" => "alg none is refused: every ACME request is signed (RFC 8555 §6.2)".to_string(),
        "HS256" | "HS384" | "HS512" => {
            format!("alg {name} is a MAC, which ACME refuses (RFC 8555 §6.2)")
        }
        _ => format!("alg {:?} is not supported", truncate(name, 32)),
    };
    Err(Problem::bad_signature_algorithm(detail, ALGORITHMS))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// Whether `bytes` is, after JSON whitespace, an object (serde's derive also reads structs from
/// arrays, by position).
fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

/// Decodes one base64url part strictly (RFC 7515 §2: no padding, no other characters, no
/// non-zero trailing bits).
fn decode_part(name: &str, text: &str) -> Result<Vec<u8>, Problem> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| {
        Problem::malformed(format!(
            "the JWS `{name}` is not base64url without padding (RFC 7515 §2): {e}"
        ))
    })
}

/// A JWK as sent: the members this server reads. Private-key members are detected so that such a
/// key is refused, never stored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    alg: Option<String>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

/// An elliptic curve of ECDSA keys (RFC 7518 §6.2.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// The length of a coordinate, in octets.
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::Es256,
            Curve::P384 => Algorithm::Es384,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum KeyMaterial {
    /// Modulus and public exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed point on the curve: coordinates of the curve's full length.
    Ec { curve: Curve, x: Vec<u8>, y: Vec<u8> },
    /// An Ed25519 public key (RFC 8037 §2).
    Ed25519 { x: [u8; 32] },
}

/// A public key in JWK form (RFC 7517) that ACME accounts may use: RSA (2048 to 8192 bits), EC
/// P-256 or P-384, or OKP Ed25519. Always a valid key: EC points are on their curve, Ed25519
/// points decode and are not of small order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Jwk {
    key: KeyMaterial,
}

impl Jwk {
    /// Reads a JWK from its JSON (as a client sent it, or as [`Jwk::to_json`] wrote it). Members
    /// other than the key's are ignored, except that a private key (`d`, `p`, `k`…) is refused.
    ///
    /// # Errors
    /// `malformed` if it is not a JSON object with string members where the key's are;
    /// `badPublicKey` for an unsupported key type, curve or size, a member missing or of the
    /// wrong length, a point not on its curve, or private key members.
    pub fn from_json(json: &[u8]) -> Result<Jwk, Problem> {
        if !is_json_object(json) {
            return Err(Problem::malformed("the JWK is not a JSON object (RFC 7517 §4)"));
        }
        let raw: RawJwk =
            serde_json::from_slice(json).map_err(|e| Problem::malformed(format!("the JWK is not valid: {e}")))?;
        Jwk::from_raw(raw).map(|(jwk, _)| jwk)
    }

    /// The key and the `alg` member, if any.
    fn from_raw(raw: RawJwk) -> Result<(Jwk, Option<String>), Problem> {
        let private = [
            ("d", raw.d.is_some()),
            ("p", raw.p.is_some()),
            ("q", raw.q.is_some()),
            ("dp", raw.dp.is_some()),
            ("dq", raw.dq.is_some()),
            ("qi", raw.qi.is_some()),
            ("oth", raw.oth.is_some()),
            ("k", raw.k.is_some()),
        ];
        if let Some((name, _)) = private.iter().find(|(_, present)| *present) {
            let detail = if raw.kty == "oct" {
                "the JWK is a symmetric key (kty oct); ACME accounts use public keys (RFC 8555 §6.2)".to_string()
            } else {
                format!("the JWK holds private key material (`{name}`); send the public key only")
            };
            return Err(Problem::bad_public_key(detail));
        }
        let member = |name: &str, value: Option<String>| -> Result<Vec<u8>, Problem> {
            let value = value.ok_or_else(|| Problem::bad_public_key(format!("the {} JWK has no `{name}`", raw.kty)))?;
            URL_SAFE_NO_PAD.decode(&value).map_err(|e| {
                Problem::bad_public_key(format!("the JWK's `{name}` is not base64url without padding: {e}"))
            })
        };
        let key = match raw.kty.as_str() {
            "RSA" => {
                let n = member("n", raw.n)?;
                let e = member("e", raw.e)?;
                rsa_key(n, e)?
            }
            "EC" => {
                let curve = match raw.crv.as_deref() {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    Some(other) => {
                        return Err(Problem::bad_public_key(format!(
                            "EC curve {:?} is not supported (P-256, P-384)",
                            truncate(other, 32)
                        )));
                    }
                    None => return Err(Problem::bad_public_key("the EC JWK has no `crv`")),
                };
                let x = member("x", raw.x)?;
                let y = member("y", raw.y)?;
                ec_key(curve, x, y)?
            }
            "OKP" => {
                match raw.crv.as_deref() {
                    Some("Ed25519") => {}
                    Some(other) => {
                        return Err(Problem::bad_public_key(format!(
                            "OKP curve {:?} is not supported (Ed25519)",
                            truncate(other, 32)
                        )));
                    }
                    None => return Err(Problem::bad_public_key("the OKP JWK has no `crv`")),
                }
                ed25519_key(&member("x", raw.x)?)?
            }
            other => {
                return Err(Problem::bad_public_key(format!(
                    "key type {:?} is not supported (RSA, EC P-256 or P-384, OKP Ed25519)",
                    truncate(other, 32)
                )));
            }
        };
        Ok((Jwk { key }, raw.alg))
    }

    /// The public key of a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): RSA, id-ecPublicKey on
    /// P-256 or P-384 (uncompressed point), or Ed25519 (RFC 8410).
    ///
    /// # Errors
    /// `badPublicKey` if it is not such a key, or not valid (as for [`Jwk::from_json`]).
    pub fn from_spki(der: &[u8]) -> Result<Jwk, Problem> {
        let bad = || Problem::bad_public_key("the SubjectPublicKeyInfo is not valid DER");
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| bad())?;
        if !rest.is_empty() {
            return Err(bad());
        }
        Jwk::from_parsed_spki(&spki)
    }

    /// The public key of a DER certificate (its SubjectPublicKeyInfo, [`Jwk::from_spki`]).
    ///
    /// # Errors
    /// `malformed` if `der` is not a certificate; as [`Jwk::from_spki`] for its key.
    pub fn from_certificate(der: &[u8]) -> Result<Jwk, Problem> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| Problem::malformed("the certificate is not valid DER"))?;
        Jwk::from_parsed_spki(cert.public_key())
    }

    fn from_parsed_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Jwk, Problem> {
        const RSA: &str = "1.2.840.113549.1.1.1";
        const EC: &str = "1.2.840.10045.2.1";
        const P256: &str = "1.2.840.10045.3.1.7";
        const P384: &str = "1.3.132.0.34";
        const ED25519: &str = "1.3.101.112";
        if spki.subject_public_key.unused_bits != 0 {
            return Err(Problem::bad_public_key(
                "the public key is not a whole number of octets",
            ));
        }
        let data: &[u8] = &spki.subject_public_key.data;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let key = match (spki.algorithm.algorithm.to_id_string().as_str(), curve.as_deref()) {
            (RSA, _) => match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                    rsa_key(strip_zeros(rsa.modulus).to_vec(), strip_zeros(rsa.exponent).to_vec())?
                }
                _ => return Err(Problem::bad_public_key("the RSA public key is not valid DER")),
            },
            (EC, Some(oid @ (P256 | P384))) => {
                let curve = if oid == P256 { Curve::P256 } else { Curve::P384 };
                let len = curve.coordinate_len();
                match data.split_first() {
                    Some((0x04, point)) if point.len() == 2 * len => {
                        let (x, y) = point.split_at(len);
                        ec_key(curve, x.to_vec(), y.to_vec())?
                    }
                    _ => {
                        return Err(Problem::bad_public_key(format!(
                            "the {} public key is not an uncompressed point",
                            curve.name()
                        )));
                    }
                }
            }
            (ED25519, _) if spki.algorithm.parameters.is_none() => ed25519_key(data)?,
            _ => {
                return Err(Problem::bad_public_key(
                    "the public key is not of a supported type (RSA, EC P-256 or P-384, Ed25519)",
                ));
            }
        };
        Ok(Jwk { key })
    }

    /// Whether a DER SubjectPublicKeyInfo holds this very key (RFC 8555 §7.6: a revokeCert
    /// request signed with the certificate's key). `false` for anything unreadable.
    pub fn matches_spki(&self, der: &[u8]) -> bool {
        Jwk::from_spki(der).is_ok_and(|other| other == *self)
    }

    /// The key type (`kty`): `RSA`, `EC` or `OKP`.
    pub fn key_type(&self) -> &'static str {
        match self.key {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec { .. } => "EC",
            KeyMaterial::Ed25519 { .. } => "OKP",
        }
    }

    /// The one algorithm that signs with this key.
    pub fn algorithm(&self) -> Algorithm {
        match &self.key {
            KeyMaterial::Rsa { .. } => Algorithm::Rs256,
            KeyMaterial::Ec { curve, .. } => curve.algorithm(),
            KeyMaterial::Ed25519 { .. } => Algorithm::EdDsa,
        }
    }

    fn algorithm_names(&self) -> [&'static str; 1] {
        [self.algorithm().name()]
    }

    /// A short description for messages: `RSA 2048-bit`, `EC P-256`, `OKP Ed25519`.
    fn describe(&self) -> String {
        match &self.key {
            KeyMaterial::Rsa { n, .. } => format!("RSA {}-bit", bit_length(n)),
            KeyMaterial::Ec { curve, .. } => format!("EC {}", curve.name()),
            KeyMaterial::Ed25519 { .. } => "OKP Ed25519".to_string(),
        }
    }

    fn check_fits(&self, alg: Algorithm) -> Result<(), Problem> {
        let fits = self.algorithm();
        if alg == fits {
            return Ok(());
        }
        Err(Problem::bad_signature_algorithm(
            format!(
                "alg {alg} does not fit the {} key; it signs with {fits}",
                self.describe()
            ),
            self.algorithm_names(),
        ))
    }

    /// The RFC 7638 members of the key in lexicographic order, without whitespace: the input
    /// of [`Jwk::thumbprint`] and the JSON [`Jwk::to_json`] writes.
    fn canonical_json(&self) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.key {
            KeyMaterial::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
            KeyMaterial::Ec { curve, x, y } => {
                format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    curve.name(),
                    b64(x),
                    b64(y)
                )
            }
            KeyMaterial::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
        }
    }

    /// The key as a JWK JSON object with its required members only, in RFC 7638's canonical
    /// form (what the store keeps; [`Jwk::from_json`] reads it back).
    pub fn to_json(&self) -> String {
        self.canonical_json()
    }

    /// The RFC 7638 thumbprint: base64url (no padding) of SHA-256 over the canonical JSON of the
    /// required members. Accounts are keyed by it.
    pub fn thumbprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.canonical_json().as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// Checks `signature` over `message` with this key under `alg`.
    ///
    /// # Errors
    /// `badSignatureAlgorithm` if `alg` does not fit the key; `malformed` if the signature has
    /// the wrong length for `alg` or does not verify (one opaque message).
    ///
    /// # Security
    /// A pure signature check: binds `message` to the holder of the private key, nothing more.
    pub fn verify_signature(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), Problem> {
        self.check_fits(alg)?;
        let expected = match &self.key {
            KeyMaterial::Rsa { n, .. } => n.len(),
            KeyMaterial::Ec { curve, .. } => 2 * curve.coordinate_len(),
            KeyMaterial::Ed25519 { .. } => 64,
        };
        if signature.len() != expected {
            let hint = match self.key {
                KeyMaterial::Ec { .. } => " (r || s, RFC 7518 §3.4; not DER)",
                _ => "",
            };
            return Err(Problem::malformed(format!(
                "an {alg} signature with this key is {expected} octets{hint}, not {}",
                signature.len()
            )));
        }
        let verified = match &self.key {
            KeyMaterial::Rsa { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
            }
            KeyMaterial::Ec { curve, x, y } => {
                let algorithm = match curve {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                };
                UnparsedPublicKey::new(algorithm, uncompressed_point(x, y)).verify(message, signature)
            }
            KeyMaterial::Ed25519 { x } => UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature),
        };
        verified.map_err(|_| Problem::malformed("the JWS signature does not verify"))
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jwk({}, thumbprint {})", self.describe(), self.thumbprint())
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The bit length of a big-endian unsigned integer without leading zero octets.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// An RSA key as RFC 7518 §6.3.1 and ring accept it: minimal encodings, an odd modulus of
/// [`RSA_BITS`], an odd exponent from 3 to 2^33 - 1.
fn rsa_key(n: Vec<u8>, e: Vec<u8>) -> Result<KeyMaterial, Problem> {
    if n.first() == Some(&0) || e.first() == Some(&0) {
        return Err(Problem::bad_public_key(
            "the RSA key's `n` or `e` has a leading zero octet (RFC 7518 §6.3.1 wants the minimal encoding)",
        ));
    }
    let bits = bit_length(&n);
    if !RSA_BITS.contains(&bits) {
        return Err(Problem::bad_public_key(format!(
            "the RSA modulus is {bits} bits; {} to {} bits are accepted",
            RSA_BITS.start(),
            RSA_BITS.end()
        )));
    }
    if n.last().is_none_or(|b| b & 1 == 0) {
        return Err(Problem::bad_public_key("the RSA modulus is even"));
    }
    let exponent = if e.len() <= 5 {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        0
    };
    if !(3..=(1 << 33) - 1).contains(&exponent) || exponent & 1 == 0 {
        return Err(Problem::bad_public_key(
            "the RSA public exponent is not an odd number from 3 to 2^33 - 1",
        ));
    }
    Ok(KeyMaterial::Rsa { n, e })
}

fn uncompressed_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// An ECDSA key whose coordinates have the curve's full length (RFC 7518 §6.2.1.2-3) and whose
/// point is on the curve (checked by ring's public key validation, as for ECDH).
fn ec_key(curve: Curve, x: Vec<u8>, y: Vec<u8>) -> Result<KeyMaterial, Problem> {
    let len = curve.coordinate_len();
    for (name, value) in [("x", &x), ("y", &y)] {
        if value.len() != len {
            return Err(Problem::bad_public_key(format!(
                "the {} key's `{name}` is {} octets; it must be {len} (RFC 7518 §6.2.1.2)",
                curve.name(),
                value.len()
            )));
        }
    }
    let agreement = match curve {
        Curve::P256 => &ring::agreement::ECDH_P256,
        Curve::P384 => &ring::agreement::ECDH_P384,
    };
    let rng = ring::rand::SystemRandom::new();
    let ephemeral = ring::agreement::EphemeralPrivateKey::generate(agreement, &rng)
        .map_err(|_| Problem::server_internal("could not check the public key"))?;
    let peer = ring::agreement::UnparsedPublicKey::new(agreement, uncompressed_point(&x, &y));
    ring::agreement::agree_ephemeral(ephemeral, &peer, |_| ())
        .map_err(|_| Problem::bad_public_key(format!("the {} key's point (x, y) is not on the curve", curve.name())))?;
    Ok(KeyMaterial::Ec { curve, x, y })
}

/// An Ed25519 key (RFC 8037 §2): 32 octets that decode to a point not of small order.
fn ed25519_key(x: &[u8]) -> Result<KeyMaterial, Problem> {
    let x: [u8; 32] = x.try_into().map_err(|_| {
        Problem::bad_public_key(format!(
            "the Ed25519 key's `x` is {} octets; it must be 32 (RFC 8037 §2)",
            x.len()
        ))
    })?;
    match ed25519_dalek::VerifyingKey::from_bytes(&x) {
        Ok(point) if !point.is_weak() => Ok(KeyMaterial::Ed25519 { x }),
        Ok(_) => Err(Problem::bad_public_key("the Ed25519 key is a point of small order")),
        Err(_) => Err(Problem::bad_public_key(
            "the Ed25519 key's `x` is not a point on the curve",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::PublicKeyData as _;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
    use serde_json::{Value, json};

    use super::*;
    use crate::ca::serve::problem::ProblemType;

    const NONCE: &str = "oFvnlFP1wIhRlYS2jTaXbA";
    const URL: &str = "https://127.0.0.1:14000/acme/new-order";
    const KID: &str = "https://127.0.0.1:14000/acme/account/d4c1";

    /// RFC 8037 Appendix A.1: the Ed25519 key's `d` and `x`.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    static RSA_2048: &[u8] = include_bytes!("../../../tests/vectors/jws/rsa-2048.pk8");
    static RSA_4096: &[u8] = include_bytes!("../../../tests/vectors/jws/rsa-4096.pk8");
    static RSA_1024_SPKI: &[u8] = include_bytes!("../../../tests/vectors/jws/rsa-1024.spki.der");

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap()
    }

    /// A test key that signs as a client would.
    enum Signer {
        Ed25519(Ed25519KeyPair),
        Ecdsa(EcdsaKeyPair, Algorithm, &'static str),
        Rsa(RsaKeyPair),
    }

    impl Signer {
        fn ed25519() -> Signer {
            Signer::Ed25519(Ed25519KeyPair::from_seed_unchecked(&unb64(RFC8037_D)).unwrap())
        }

        fn ecdsa(alg: Algorithm) -> Signer {
            Signer::ecdsa_with(alg, false)
        }

        /// With `der`, the key makes DER-encoded ECDSA signatures (which ACME refuses).
        fn ecdsa_with(alg: Algorithm, der: bool) -> Signer {
            let rng = SystemRandom::new();
            let (signing, crv) = match (alg, der) {
                (Algorithm::Es256, false) => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
                (Algorithm::Es256, true) => (&signature::ECDSA_P256_SHA256_ASN1_SIGNING, "P-256"),
                (Algorithm::Es384, false) => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
                (Algorithm::Es384, true) => (&signature::ECDSA_P384_SHA384_ASN1_SIGNING, "P-384"),
                _ => unreachable!(),
            };
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap(),
                alg,
                crv,
            )
        }

        fn rsa(pkcs8: &[u8]) -> Signer {
            Signer::Rsa(RsaKeyPair::from_pkcs8(pkcs8).unwrap())
        }

        fn alg(&self) -> Algorithm {
            match self {
                Signer::Ed25519(_) => Algorithm::EdDsa,
                Signer::Ecdsa(_, alg, _) => *alg,
                Signer::Rsa(_) => Algorithm::Rs256,
            }
        }

        fn jwk_json(&self) -> Value {
            match self {
                Signer::Ed25519(key) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())})
                }
                Signer::Ecdsa(key, _, crv) => {
                    let point = &key.public_key().as_ref()[1..];
                    let (x, y) = point.split_at(point.len() / 2);
                    json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
                }
                Signer::Rsa(key) => {
                    let parts = RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
                    json!({"kty": "RSA", "n": b64(&parts.n), "e": b64(&parts.e)})
                }
            }
        }

        fn jwk(&self) -> Jwk {
            Jwk::from_json(self.jwk_json().to_string().as_bytes()).unwrap()
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                Signer::Ed25519(key) => key.sign(message).as_ref().to_vec(),
                Signer::Ecdsa(key, _, _) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
                Signer::Rsa(key) => {
                    let mut signature = vec![0; key.public().modulus_len()];
                    key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                        .unwrap();
                    signature
                }
            }
        }

        fn header_jwk(&self) -> Value {
            json!({"alg": self.alg().name(), "nonce": NONCE, "url": URL, "jwk": self.jwk_json()})
        }

        fn header_kid(&self) -> Value {
            json!({"alg": self.alg().name(), "nonce": NONCE, "url": URL, "kid": KID})
        }

        /// A flattened JWS of `payload` under `protected`, signed by this key.
        fn jws(&self, protected: &Value, payload: &[u8]) -> Value {
            let protected = b64(protected.to_string().as_bytes());
            let payload = b64(payload);
            let signature = self.sign(format!("{protected}.{payload}").as_bytes());
            json!({"protected": protected, "payload": payload, "signature": b64(&signature)})
        }
    }

    fn body(value: &Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn all_signers() -> Vec<Signer> {
        vec![
            Signer::ed25519(),
            Signer::ecdsa(Algorithm::Es256),
            Signer::ecdsa(Algorithm::Es384),
            Signer::rsa(RSA_2048),
            Signer::rsa(RSA_4096),
        ]
    }

    #[track_caller]
    fn assert_problem(result: Result<impl fmt::Debug, Problem>, kind: ProblemType, needle: &str) -> Problem {
        let problem = result.expect_err("refused");
        assert_eq!(problem.kind, kind, "{problem}");
        assert!(
            problem.detail.contains(needle),
            "{:?} does not say {needle:?}",
            problem.detail
        );
        problem
    }

    #[test]
    fn rfc_7638_thumbprint_example() {
        // RFC 7638 §3.1, with its non-required members (ignored).
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = Jwk::from_json(jwk.to_string().as_bytes()).unwrap();
        assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.key_type(), "RSA");
        assert_eq!(key.algorithm(), Algorithm::Rs256);
        let canonical = key.to_json();
        assert!(
            canonical.starts_with(r#"{"e":"AQAB","kty":"RSA","n":"0vx7agoe"#),
            "{canonical}"
        );
        assert_eq!(Jwk::from_json(canonical.as_bytes()).unwrap(), key);
    }

    #[test]
    fn rfc_8037_ed25519_key_thumbprint_and_signature() {
        // RFC 8037 Appendix A.1-A.4.
        let key = Jwk::from_json(format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#).as_bytes()).unwrap();
        assert_eq!(key.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(
            key.to_json(),
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{RFC8037_X}"}}"#)
        );
        assert_eq!(Signer::ed25519().jwk(), key);
        let signing_input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let expected = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        assert_eq!(b64(&Signer::ed25519().sign(signing_input)), expected);
        key.verify_signature(Algorithm::EdDsa, signing_input, &unb64(expected))
            .unwrap();
        assert_problem(
            key.verify_signature(
                Algorithm::EdDsa,
                b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmd",
                &unb64(expected),
            ),
            ProblemType::Malformed,
            "does not verify",
        );
        // The RFC's JWS itself is no ACME request: its header has only `alg`.
        let rfc = json!({"protected": "eyJhbGciOiJFZERTQSJ9", "payload": "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc", "signature": expected});
        assert_problem(parse(&body(&rfc)), ProblemType::Malformed, "neither `jwk` nor `kid`");
        assert_eq!(
            key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &key),
            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn every_algorithm_round_trips_with_jwk_and_kid() {
        for signer in all_signers() {
            let name = signer.alg().name();
            let payload = br#"{"identifiers":[{"type":"dns","value":"a.example.test"}]}"#;
            let jws = parse(&body(&signer.jws(&signer.header_jwk(), payload))).unwrap();
            assert_eq!(jws.alg, signer.alg());
            assert_eq!(jws.nonce.as_deref(), Some(NONCE));
            assert_eq!(jws.url, URL);
            assert_eq!(jws.payload, payload);
            assert!(!jws.is_post_as_get());
            assert_eq!(jws.jwk(), Some(&signer.jwk()), "{name}");
            assert_eq!(jws.verify_embedded().unwrap(), &signer.jwk());
            let value: Value = jws.payload_json().unwrap();
            assert_eq!(value["identifiers"][0]["value"], "a.example.test");

            let jws = parse(&body(&signer.jws(&signer.header_kid(), b""))).unwrap();
            assert_eq!(jws.kid(), Some(KID));
            assert!(jws.is_post_as_get());
            jws.verify(&signer.jwk()).unwrap_or_else(|p| panic!("{name}: {p}"));
            assert_problem(jws.verify_embedded(), ProblemType::Malformed, "`kid`");
            assert_problem(jws.payload_json::<Value>(), ProblemType::Malformed, "POST-as-GET");

            let key = signer.jwk();
            assert_eq!(Jwk::from_json(key.to_json().as_bytes()).unwrap(), key);
            assert_eq!(key.thumbprint().len(), 43);
        }
    }

    #[test]
    fn tampering_with_any_part_fails_verification() {
        for signer in all_signers() {
            let jws = signer.jws(&signer.header_kid(), br#"{"status":"deactivated"}"#);

            let mut payload = jws.clone();
            payload["payload"] = json!(b64(br#"{"status":"valid"}"#));
            let parsed = parse(&body(&payload)).unwrap();
            assert_problem(parsed.verify(&signer.jwk()), ProblemType::Malformed, "does not verify");

            let mut header = jws.clone();
            let mut changed = signer.header_kid();
            changed["url"] = json!("https://127.0.0.1:14000/acme/revoke-cert");
            header["protected"] = json!(b64(changed.to_string().as_bytes()));
            let parsed = parse(&body(&header)).unwrap();
            assert_problem(parsed.verify(&signer.jwk()), ProblemType::Malformed, "does not verify");

            let mut signature = jws.clone();
            let mut bytes = unb64(jws["signature"].as_str().unwrap());
            bytes[10] ^= 0x01;
            signature["signature"] = json!(b64(&bytes));
            let parsed = parse(&body(&signature)).unwrap();
            assert_problem(parsed.verify(&signer.jwk()), ProblemType::Malformed, "does not verify");

            // Another key of the same kind does not verify either.
            let other = match signer.alg() {
                Algorithm::Rs256 => continue,
                Algorithm::EdDsa => Signer::Ed25519(Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap()),
                alg => Signer::ecdsa(alg),
            };
            assert_problem(
                parse(&body(&jws)).unwrap().verify(&other.jwk()),
                ProblemType::Malformed,
                "does not verify",
            );
        }
    }

    #[test]
    fn alg_none_and_macs_are_refused() {
        let signer = Signer::ecdsa(Algorithm::Es256);
        let mut header = signer.header_kid();
        header["alg"] = json!("none");
        let mut jws = signer.jws(&header, b"{}");
        jws["signature"] = json!("");
        let problem = assert_problem(
            parse(&body(&jws)),
            ProblemType::BadSignatureAlgorithm,
            "alg none is refused",
        );
        assert_eq!(problem.algorithms, ALGORITHMS);

        for (alg, mac) in [
            ("HS256", ring::hmac::HMAC_SHA256),
            ("HS384", ring::hmac::HMAC_SHA384),
            ("HS512", ring::hmac::HMAC_SHA512),
        ] {
            let key = ring::hmac::Key::new(mac, b"a shared secret of the attacker");
            let mut header = signer.header_kid();
            header["alg"] = json!(alg);
            let protected = b64(header.to_string().as_bytes());
            let payload = b64(b"{}");
            let tag = ring::hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
            let jws = json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())});
            let problem = assert_problem(parse(&body(&jws)), ProblemType::BadSignatureAlgorithm, "is a MAC");
            assert_eq!(problem.algorithms, ALGORITHMS);
            assert_eq!(problem.status, 400);
        }

        for alg in ["PS256", "RS512", "ES512", "es256", "Ed25519", ""] {
            let mut header = signer.header_kid();
            header["alg"] = json!(alg);
            assert_problem(
                parse(&body(&signer.jws(&header, b"{}"))),
                ProblemType::BadSignatureAlgorithm,
                "not supported",
            );
        }
        // An `alg` that is not a string at all.
        let mut header = signer.header_kid();
        header["alg"] = json!(256);
        assert_problem(
            parse(&body(&signer.jws(&header, b"{}"))),
            ProblemType::Malformed,
            "protected header",
        );
    }

    #[test]
    fn exactly_one_of_jwk_and_kid() {
        let signer = Signer::ed25519();
        let mut both = signer.header_jwk();
        both["kid"] = json!(KID);
        assert_problem(
            parse(&body(&signer.jws(&both, b"{}"))),
            ProblemType::Malformed,
            "both `jwk` and `kid`",
        );
        let mut neither = signer.header_kid();
        neither.as_object_mut().unwrap().remove("kid");
        assert_problem(
            parse(&body(&signer.jws(&neither, b"{}"))),
            ProblemType::Malformed,
            "neither `jwk` nor `kid`",
        );
        let mut empty = signer.header_kid();
        empty["kid"] = json!("");
        assert_problem(
            parse(&body(&signer.jws(&empty, b"{}"))),
            ProblemType::Malformed,
            "`kid` is empty",
        );
    }

    #[test]
    fn the_algorithm_must_fit_the_key() {
        // ES256 with a P-384 key, in the header and at verification.
        let p384 = Signer::ecdsa(Algorithm::Es384);
        let mut header = p384.header_jwk();
        header["alg"] = json!("ES256");
        let problem = assert_problem(
            parse(&body(&p384.jws(&header, b"{}"))),
            ProblemType::BadSignatureAlgorithm,
            "alg ES256 does not fit the EC P-384 key",
        );
        assert_eq!(problem.algorithms, ["ES384"]);
        let p256 = Signer::ecdsa(Algorithm::Es256);
        let jws = parse(&body(&p256.jws(&p256.header_kid(), b"{}"))).unwrap();
        assert_problem(
            jws.verify(&p384.jwk()),
            ProblemType::BadSignatureAlgorithm,
            "does not fit",
        );

        // RS256 with an EC key.
        let mut header = p256.header_jwk();
        header["alg"] = json!("RS256");
        assert_problem(
            parse(&body(&p256.jws(&header, b"{}"))),
            ProblemType::BadSignatureAlgorithm,
            "RS256 does not fit the EC P-256 key",
        );
        // EdDSA with an RSA key.
        let rsa = Signer::rsa(RSA_2048);
        let mut header = rsa.header_jwk();
        header["alg"] = json!("EdDSA");
        let problem = assert_problem(
            parse(&body(&rsa.jws(&header, b"{}"))),
            ProblemType::BadSignatureAlgorithm,
            "RSA 2048-bit",
        );
        assert_eq!(problem.algorithms, ["RS256"]);
        // A jwk that names another alg than the header.
        let mut header = p256.header_jwk();
        header["jwk"]["alg"] = json!("ES384");
        assert_problem(
            parse(&body(&p256.jws(&header, b"{}"))),
            ProblemType::BadSignatureAlgorithm,
            "differs from the jwk's alg ES384",
        );
    }

    #[test]
    fn ecdsa_signatures_are_fixed_size_not_der() {
        for alg in [Algorithm::Es256, Algorithm::Es384] {
            let der = Signer::ecdsa_with(alg, true);
            let jws = parse(&body(&der.jws(&der.header_jwk(), b"{}"))).unwrap();
            assert_problem(
                jws.verify_embedded(),
                ProblemType::Malformed,
                "(r || s, RFC 7518 §3.4; not DER)",
            );
        }
        // An RSA signature shorter than the modulus.
        let rsa = Signer::rsa(RSA_2048);
        let mut jws = rsa.jws(&rsa.header_kid(), b"{}");
        jws["signature"] = json!(b64(&[1; 255]));
        assert_problem(
            parse(&body(&jws)).unwrap().verify(&rsa.jwk()),
            ProblemType::Malformed,
            "256 octets, not 255",
        );
    }

    #[test]
    fn base64url_is_strict() {
        let signer = Signer::ed25519();
        let jws = signer.jws(&signer.header_jwk(), b"{}");
        let good = |member: &str| jws[member].as_str().unwrap().to_string();
        // The 64-octet signature is 86 characters: padded, it would end in "==".
        let cases = [
            ("signature", format!("{}==", good("signature"))),
            ("payload", "e30=".to_string()),
            ("payload", "e3+/".to_string()),
            ("protected", format!("{}.", good("protected"))),
            ("payload", "e31".to_string()), // non-zero trailing bits
            ("payload", "e 30".to_string()),
            ("signature", format!("{}AAA", good("signature"))), // an impossible length
        ];
        for (member, value) in cases {
            let mut bad = jws.clone();
            bad[member] = json!(value);
            assert_problem(
                parse(&body(&bad)),
                ProblemType::Malformed,
                &format!("the JWS `{member}` is not base64url without padding"),
            );
        }
        let mut empty = jws.clone();
        empty["signature"] = json!("");
        assert_problem(parse(&body(&empty)), ProblemType::Malformed, "signature is empty");
        let mut empty = jws.clone();
        empty["protected"] = json!("");
        assert_problem(parse(&body(&empty)), ProblemType::Malformed, "not a JSON object");
    }

    #[test]
    fn only_the_flattened_serialization_with_exactly_three_members() {
        let signer = Signer::ed25519();
        let jws = signer.jws(&signer.header_jwk(), b"{}");
        let general = json!({"payload": jws["payload"], "signatures": [{"protected": jws["protected"], "signature": jws["signature"]}]});
        assert_problem(
            parse(&body(&general)),
            ProblemType::Malformed,
            "general JSON serialization (`signatures`)",
        );
        let mut unprotected = jws.clone();
        unprotected["header"] = json!({"kid": KID});
        assert_problem(
            parse(&body(&unprotected)),
            ProblemType::Malformed,
            "unprotected `header`",
        );
        let mut extra = jws.clone();
        extra["extra"] = json!(1);
        assert_problem(parse(&body(&extra)), ProblemType::Malformed, "unknown field `extra`");
        let mut missing = jws.clone();
        missing.as_object_mut().unwrap().remove("payload");
        assert_problem(
            parse(&body(&missing)),
            ProblemType::Malformed,
            "missing field `payload`",
        );
        // Compact serialization, an array (serde would read a struct from it by position), junk.
        let compact = format!(
            "{}.{}.{}",
            good(&jws, "protected"),
            good(&jws, "payload"),
            good(&jws, "signature")
        );
        for bad in [
            compact.into_bytes(),
            body(&json!([jws["protected"], jws["payload"], jws["signature"]])),
            b"".to_vec(),
            b"\xff{".to_vec(),
        ] {
            assert_problem(parse(&bad), ProblemType::Malformed, "not a JSON object");
        }
        fn good(jws: &Value, member: &str) -> String {
            jws[member].as_str().unwrap().to_string()
        }
    }

    #[test]
    fn duplicate_members_are_refused() {
        let signer = Signer::ed25519();
        let jws = signer.jws(&signer.header_jwk(), b"{}");
        let (p, pl, s) = (
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap(),
            jws["signature"].as_str().unwrap(),
        );
        let twice = format!(r#"{{"protected":"{p}","payload":"{pl}","payload":"e30","signature":"{s}"}}"#);
        assert_problem(
            parse(twice.as_bytes()),
            ProblemType::Malformed,
            "duplicate field `payload`",
        );

        let x = signer.jwk_json()["x"].as_str().unwrap().to_string();
        let headers = [
            format!(r#"{{"alg":"EdDSA","alg":"none","nonce":"{NONCE}","url":"{URL}","kid":"{KID}"}}"#),
            format!(r#"{{"alg":"EdDSA","nonce":"{NONCE}","url":"{URL}","url":"https://evil.test/","kid":"{KID}"}}"#),
            format!(
                r#"{{"alg":"EdDSA","nonce":"{NONCE}","url":"{URL}","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}","x":"{x}"}}}}"#
            ),
        ];
        for header in headers {
            let protected = b64(header.as_bytes());
            let signature = b64(&signer.sign(format!("{protected}.e30").as_bytes()));
            let jws = json!({"protected": protected, "payload": "e30", "signature": signature});
            assert_problem(parse(&body(&jws)), ProblemType::Malformed, "duplicate field");
        }
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let signer = Signer::ed25519();
        let payload = vec![b' '; MAX_JWS_BYTES];
        let jws = signer.jws(&signer.header_jwk(), &payload);
        let problem = assert_problem(parse(&body(&jws)), ProblemType::Malformed, "at most 65536");
        assert_eq!(problem.status, 413);
        // Just under the limit is fine.
        let payload = vec![b' '; MAX_JWS_BYTES / 2];
        parse(&body(&signer.jws(&signer.header_jwk(), &payload)))
            .unwrap()
            .verify_embedded()
            .unwrap();
    }

    #[test]
    fn nonce_url_b64_and_crit() {
        let signer = Signer::ecdsa(Algorithm::Es256);
        let check = |edit: &dyn Fn(&mut Value), kind: ProblemType, needle: &str| {
            let mut header = signer.header_kid();
            edit(&mut header);
            assert_problem(parse(&body(&signer.jws(&header, b"{}"))), kind, needle);
        };
        check(
            &|h| drop(h.as_object_mut().unwrap().remove("nonce")),
            ProblemType::BadNonce,
            "no `nonce`",
        );
        check(
            &|h| h["nonce"] = json!("not base64!"),
            ProblemType::BadNonce,
            "not base64url",
        );
        check(&|h| h["nonce"] = json!(""), ProblemType::BadNonce, "not base64url");
        check(&|h| h["nonce"] = json!(12), ProblemType::Malformed, "protected header");
        check(
            &|h| drop(h.as_object_mut().unwrap().remove("url")),
            ProblemType::Malformed,
            "no `url`",
        );
        check(&|h| h["url"] = json!(""), ProblemType::Malformed, "no `url`");
        check(&|h| h["b64"] = json!(false), ProblemType::Malformed, "`b64`");
        check(&|h| h["crit"] = json!(["b64"]), ProblemType::Malformed, "`crit`");
        check(&|h| h["crit"] = json!(["exp"]), ProblemType::Malformed, "`crit`");
        // Other header parameters are ignored (RFC 7515 §4).
        let mut header = signer.header_kid();
        header["typ"] = json!("JOSE");
        parse(&body(&signer.jws(&header, b"{}")))
            .unwrap()
            .verify(&signer.jwk())
            .unwrap();
        // A header that is JSON but not an object.
        for protected in ["[]", "\"alg\"", "null", "{"] {
            let jws = json!({"protected": b64(protected.as_bytes()), "payload": "", "signature": "AAAA"});
            assert_problem(parse(&body(&jws)), ProblemType::Malformed, "protected header");
        }
    }

    #[test]
    fn key_change_inner_jws() {
        let new_key = Signer::ecdsa(Algorithm::Es384);
        let payload = json!({"account": KID, "oldKey": Signer::ed25519().jwk_json()}).to_string();
        let mut header = new_key.header_jwk();
        header.as_object_mut().unwrap().remove("nonce");
        let inner = parse_inner(&body(&new_key.jws(&header, payload.as_bytes()))).unwrap();
        assert_eq!(inner.nonce, None);
        assert_eq!(inner.verify_embedded().unwrap(), &new_key.jwk());
        // A request body needs the nonce; the inner JWS must not have one, nor a kid.
        assert_problem(
            parse(&body(&new_key.jws(&header, b"{}"))),
            ProblemType::BadNonce,
            "no `nonce`",
        );
        assert_problem(
            parse_inner(&body(&new_key.jws(&new_key.header_jwk(), b"{}"))),
            ProblemType::Malformed,
            "must not have a `nonce`",
        );
        let mut kid = new_key.header_kid();
        kid.as_object_mut().unwrap().remove("nonce");
        assert_problem(
            parse_inner(&body(&new_key.jws(&kid, b"{}"))),
            ProblemType::Malformed,
            "new key in `jwk`",
        );
        // A payload that is not a JWS is named as the key change's payload, not the body.
        for (payload, needle) in [
            (
                &br#"{"x":1}"#[..],
                "the key change's payload (the inner JWS, RFC 8555 §7.3.5) is not a JWS",
            ),
            (
                &b"[1]"[..],
                "the key change's payload (the inner JWS, RFC 8555 §7.3.5) is not a JSON object",
            ),
        ] {
            let problem = assert_problem(parse_inner(payload), ProblemType::Malformed, needle);
            assert!(!problem.detail.contains("request body"), "{}", problem.detail);
        }
        assert_problem(
            parse(br#"{"x":1}"#),
            ProblemType::Malformed,
            "the request body is not a JWS",
        );
    }

    #[test]
    fn unsupported_and_invalid_keys_are_bad_public_keys() {
        let rsa = Signer::rsa(RSA_2048).jwk_json();
        let ec = Signer::ecdsa(Algorithm::Es256).jwk_json();
        let ed = Signer::ed25519().jwk_json();
        let check = |mut jwk: Value, edit: &dyn Fn(&mut Value), kind: ProblemType, needle: &str| {
            edit(&mut jwk);
            assert_problem(Jwk::from_json(jwk.to_string().as_bytes()), kind, needle);
        };
        // RSA: 1024 bits, leading zero, even modulus, bad exponents.
        let spki = x509_parser::x509::SubjectPublicKeyInfo::from_der(RSA_1024_SPKI)
            .unwrap()
            .1;
        let Ok(x509_parser::public_key::PublicKey::RSA(small)) = spki.parsed() else {
            panic!()
        };
        let small = json!({"kty": "RSA", "n": b64(strip_zeros(small.modulus)), "e": b64(small.exponent)});
        check(
            small.clone(),
            &|_| {},
            ProblemType::BadPublicKey,
            "the RSA modulus is 1024 bits; 2048 to 8192",
        );
        assert_problem(Jwk::from_spki(RSA_1024_SPKI), ProblemType::BadPublicKey, "1024 bits");
        let mut header = Signer::rsa(RSA_2048).header_jwk();
        header["jwk"] = small;
        let signer = Signer::rsa(RSA_2048);
        assert_problem(
            parse(&body(&signer.jws(&header, b"{}"))),
            ProblemType::BadPublicKey,
            "1024 bits",
        );
        let n = unb64(rsa["n"].as_str().unwrap());
        check(
            rsa.clone(),
            &|j| j["n"] = json!(b64(&[&[0][..], &n].concat())),
            ProblemType::BadPublicKey,
            "leading zero",
        );
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        check(
            rsa.clone(),
            &|j| j["n"] = json!(b64(&even)),
            ProblemType::BadPublicKey,
            "even",
        );
        check(
            rsa.clone(),
            &|j| j["n"] = json!(b64(&[0xff; 1025])),
            ProblemType::BadPublicKey,
            "8200 bits",
        );
        for e in [&[1][..], &[2], &[1, 0, 0], &[3, 0, 0, 0, 0, 1]] {
            check(
                rsa.clone(),
                &|j| j["e"] = json!(b64(e)),
                ProblemType::BadPublicKey,
                "exponent",
            );
        }
        check(
            rsa.clone(),
            &|j| drop(j.as_object_mut().unwrap().remove("e")),
            ProblemType::BadPublicKey,
            "no `e`",
        );
        check(
            rsa.clone(),
            &|j| j["n"] = json!("AQAB=="),
            ProblemType::BadPublicKey,
            "`n` is not base64url",
        );
        // EC: point off the curve, short coordinates, unknown curve.
        let mut y = unb64(ec["y"].as_str().unwrap());
        y[31] ^= 0x01;
        check(
            ec.clone(),
            &|j| j["y"] = json!(b64(&y)),
            ProblemType::BadPublicKey,
            "not on the curve",
        );
        check(
            ec.clone(),
            &|j| j["x"] = json!(b64(&[0; 32])),
            ProblemType::BadPublicKey,
            "not on the curve",
        );
        check(
            ec.clone(),
            &|j| j["x"] = json!(b64(&[1; 31])),
            ProblemType::BadPublicKey,
            "`x` is 31 octets; it must be 32",
        );
        check(
            ec.clone(),
            &|j| j["crv"] = json!("P-384"),
            ProblemType::BadPublicKey,
            "it must be 48",
        );
        check(
            ec.clone(),
            &|j| j["crv"] = json!("P-521"),
            ProblemType::BadPublicKey,
            "\"P-521\" is not supported",
        );
        check(
            ec.clone(),
            &|j| j["crv"] = json!("secp256k1"),
            ProblemType::BadPublicKey,
            "not supported",
        );
        check(
            ec.clone(),
            &|j| drop(j.as_object_mut().unwrap().remove("crv")),
            ProblemType::BadPublicKey,
            "no `crv`",
        );
        check(
            ec.clone(),
            &|j| j["x"] = json!(7),
            ProblemType::Malformed,
            "the JWK is not valid",
        );
        // OKP: Ed448, small-order and non-canonical points, wrong length.
        check(
            ed.clone(),
            &|j| j["crv"] = json!("Ed448"),
            ProblemType::BadPublicKey,
            "\"Ed448\" is not supported",
        );
        check(
            ed.clone(),
            &|j| j["crv"] = json!("X25519"),
            ProblemType::BadPublicKey,
            "not supported",
        );
        // The identity (y = 1) and the point of order 2 (y = -1), little-endian.
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        check(
            ed.clone(),
            &|j| j["x"] = json!(b64(&identity)),
            ProblemType::BadPublicKey,
            "small order",
        );
        check(
            ed.clone(),
            &|j| j["x"] = json!(b64(&minus_one)),
            ProblemType::BadPublicKey,
            "small order",
        );
        check(
            ed.clone(),
            &|j| j["x"] = json!(b64(&[1; 31])),
            ProblemType::BadPublicKey,
            "31 octets",
        );
        // Other key types; private keys.
        check(
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            &|_| {},
            ProblemType::BadPublicKey,
            "symmetric key",
        );
        check(
            json!({"kty": "DSA"}),
            &|_| {},
            ProblemType::BadPublicKey,
            "key type \"DSA\" is not supported",
        );
        check(
            json!({"crv": "P-256"}),
            &|_| {},
            ProblemType::Malformed,
            "missing field `kty`",
        );
        check(
            ed.clone(),
            &|j| j["d"] = json!(RFC8037_D),
            ProblemType::BadPublicKey,
            "private key material (`d`)",
        );
        check(
            rsa.clone(),
            &|j| j["p"] = json!("AQAB"),
            ProblemType::BadPublicKey,
            "(`p`)",
        );
        assert_problem(
            Jwk::from_json(b"[\"RSA\"]"),
            ProblemType::Malformed,
            "not a JSON object",
        );
        // A jwk member that is not an object, in a header.
        let signer = Signer::ed25519();
        let mut header = signer.header_jwk();
        header["jwk"] = json!(["OKP", "Ed25519", RFC8037_X]);
        assert_problem(
            parse(&body(&signer.jws(&header, b"{}"))),
            ProblemType::Malformed,
            "`jwk` is not a JSON object",
        );
    }

    #[test]
    fn keys_from_subject_public_key_infos() {
        let rsa = rcgen::KeyPair::try_from(RSA_2048).unwrap();
        let cases = [(rsa, Signer::rsa(RSA_2048).jwk())];
        for (key, jwk) in cases {
            assert_eq!(Jwk::from_spki(&key.subject_public_key_info()).unwrap(), jwk);
            assert!(jwk.matches_spki(&key.subject_public_key_info()));
        }
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let spki = key.subject_public_key_info();
            let jwk = Jwk::from_spki(&spki).unwrap();
            let raw = key.public_key_raw();
            let expected = match jwk.key_type() {
                "OKP" => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}),
                _ => {
                    let (x, y) = raw[1..].split_at((raw.len() - 1) / 2);
                    let crv = if x.len() == 32 { "P-256" } else { "P-384" };
                    json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
                }
            };
            assert_eq!(jwk, Jwk::from_json(expected.to_string().as_bytes()).unwrap());
            assert!(jwk.matches_spki(&spki));
            let other = rcgen::KeyPair::generate_for(alg).unwrap();
            assert!(!jwk.matches_spki(&other.subject_public_key_info()));
            // The certificate's key, as revokeCert reads it.
            let cert = rcgen::CertificateParams::new(vec!["a.example.test".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            assert_eq!(Jwk::from_certificate(cert.der()).unwrap(), jwk);
        }
        assert!(!Signer::ed25519().jwk().matches_spki(b"\x30\x00"));
        assert_problem(Jwk::from_spki(b"junk"), ProblemType::BadPublicKey, "not valid DER");
        assert_problem(Jwk::from_certificate(b"junk"), ProblemType::Malformed, "not valid DER");
        let mut trailing = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
        trailing.push(0);
        assert_problem(Jwk::from_spki(&trailing), ProblemType::BadPublicKey, "not valid DER");
    }

    #[test]
    fn payload_json_names_what_is_wrong() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Finalize {
            csr: String,
        }
        let signer = Signer::ed25519();
        let jws = parse(&body(&signer.jws(&signer.header_kid(), br#"{"csrr":"x"}"#))).unwrap();
        assert_problem(
            jws.payload_json::<Finalize>(),
            ProblemType::Malformed,
            "missing field `csr`",
        );
        let jws = parse(&body(&signer.jws(&signer.header_kid(), b"{}"))).unwrap();
        assert!(!jws.is_post_as_get());
        let _: Value = jws.payload_json().unwrap();
    }

    #[test]
    fn algorithm_names() {
        for (alg, name) in Algorithm::ALL.into_iter().zip(ALGORITHMS) {
            assert_eq!(alg.name(), name);
            assert_eq!(alg.to_string(), name);
            assert_eq!(Algorithm::from_name(name), Some(alg));
        }
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(
            format!("{:?}", Signer::ed25519().jwk()),
            "Jwk(OKP Ed25519, thumbprint kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k)"
        );
    }
}
