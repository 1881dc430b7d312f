//! Certificate signing requests (PKCS#10, RFC 2986) as `ca issue --csr` takes them.
//!
//! What Tessera takes from a request: its SubjectPublicKeyInfo, byte for byte, after checking
//! the request's self-signature with ring; and its subjectAltName, when the command line gives
//! no names. Everything else it asks for (subject, keyUsage, extendedKeyUsage, basicConstraints,
//! any other extension or attribute) is ignored: the profile and the command line decide.
//!
//! Keys Tessera issues for: Ed25519, ECDSA P-256 and P-384 (uncompressed points), RSA of 2048
//! to 8192 bits (`rsaEncryption`): the keys Tessera's verifier accepts in an end-entity
//! certificate. Self-signatures it verifies: Ed25519; ECDSA with SHA-256 or SHA-384 (ring has
//! no ECDSA with SHA-512); RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512; RSASSA-PSS with
//! SHA-256, SHA-384 or SHA-512, MGF1 with the same hash and a salt as long as the hash.

use std::fmt;
use std::net::IpAddr;

use ring::signature::{self, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{CaError, SubjectAltName};

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// What the supported keys are, for messages.
pub(crate) const SUPPORTED_KEYS: &str = "Ed25519, ECDSA P-256 or P-384, RSA of 2048 to 8192 bits";

/// Signature algorithms by OID: (OID, name, family, hash).
const SIGNATURE_ALGORITHMS: &[(&str, &str, Family, Hash)] = &[
    ("1.3.101.112", "Ed25519", Family::Ed25519, Hash::None),
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1", Family::Ecdsa, Hash::Sha1),
    ("1.2.840.10045.4.3.1", "ecdsa-with-SHA224", Family::Ecdsa, Hash::Sha224),
    ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256", Family::Ecdsa, Hash::Sha256),
    ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384", Family::Ecdsa, Hash::Sha384),
    ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512", Family::Ecdsa, Hash::Sha512),
    (
        "2.16.840.1.101.3.4.3.9",
        "ecdsa-with-SHA3-224",
        Family::Ecdsa,
        Hash::Other,
    ),
    (
        "2.16.840.1.101.3.4.3.10",
        "ecdsa-with-SHA3-256",
        Family::Ecdsa,
        Hash::Other,
    ),
    (
        "2.16.840.1.101.3.4.3.11",
        "ecdsa-with-SHA3-384",
        Family::Ecdsa,
        Hash::Other,
    ),
    (
        "2.16.840.1.101.3.4.3.12",
        "ecdsa-with-SHA3-512",
        Family::Ecdsa,
        Hash::Other,
    ),
    ("1.2.840.113549.1.1.4", "md5WithRSAEncryption", Family::Rsa, Hash::Other),
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption", Family::Rsa, Hash::Sha1),
    (
        "1.2.840.113549.1.1.14",
        "sha224WithRSAEncryption",
        Family::Rsa,
        Hash::Sha224,
    ),
    (
        "1.2.840.113549.1.1.11",
        "sha256WithRSAEncryption",
        Family::Rsa,
        Hash::Sha256,
    ),
    (
        "1.2.840.113549.1.1.12",
        "sha384WithRSAEncryption",
        Family::Rsa,
        Hash::Sha384,
    ),
    (
        "1.2.840.113549.1.1.13",
        "sha512WithRSAEncryption",
        Family::Rsa,
        Hash::Sha512,
    ),
    (OID_RSASSA_PSS, "RSASSA-PSS", Family::RsaPss, Hash::None),
    ("1.3.101.113", "Ed448", Family::Other, Hash::None),
    ("1.2.840.10040.4.3", "dsa-with-SHA1", Family::Other, Hash::None),
    ("2.16.840.1.101.3.4.3.2", "dsa-with-SHA256", Family::Other, Hash::None),
    ("1.2.156.10197.1.501", "SM2-with-SM3", Family::Other, Hash::None),
];

/// Hash algorithms by OID (for RSASSA-PSS parameters).
const HASHES: &[(&str, Hash)] = &[
    ("1.3.14.3.2.26", Hash::Sha1),
    ("2.16.840.1.101.3.4.2.4", Hash::Sha224),
    ("2.16.840.1.101.3.4.2.1", Hash::Sha256),
    ("2.16.840.1.101.3.4.2.2", Hash::Sha384),
    ("2.16.840.1.101.3.4.2.3", Hash::Sha512),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Ed25519,
    Ecdsa,
    Rsa,
    RsaPss,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hash {
    None,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Other,
}

impl Hash {
    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha224 => "SHA-224",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
            Self::None | Self::Other => "another hash",
        }
    }

    fn output_len(self) -> Option<u32> {
        match self {
            Self::Sha1 => Some(20),
            Self::Sha224 => Some(28),
            Self::Sha256 => Some(32),
            Self::Sha384 => Some(48),
            Self::Sha512 => Some(64),
            Self::None | Self::Other => None,
        }
    }
}

/// The kind of key a request carries, among those Tessera issues for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsrKey {
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// ECDSA on P-256.
    P256,
    /// ECDSA on P-384.
    P384,
    /// RSA (`rsaEncryption`) with a modulus of this many bits.
    Rsa {
        /// The modulus size.
        bits: usize,
    },
}

impl CsrKey {
    /// The rcgen algorithm whose SubjectPublicKeyInfo header is this key's (the signature part
    /// of it is never used: the CA signs).
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl fmt::Display for CsrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::P256 => f.write_str("EC P-256"),
            Self::P384 => f.write_str("EC P-384"),
            Self::Rsa { bits } => write!(f, "RSA {bits}-bit"),
        }
    }
}

/// A request whose self-signature verified, reduced to what Tessera takes from it.
#[derive(Clone, Debug)]
pub(crate) struct Csr {
    spki: Vec<u8>,
    key: CsrKey,
    key_bits: Vec<u8>,
    names: Vec<Result<SubjectAltName, String>>,
}

impl Csr {
    /// The request's SubjectPublicKeyInfo, DER, exactly as it came.
    pub(crate) fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The kind of key.
    pub(crate) fn key(&self) -> CsrKey {
        self.key
    }

    /// The public key, for rcgen to put into a certificate.
    pub(crate) fn public_key(&self) -> CsrPublicKey<'_> {
        CsrPublicKey {
            bits: &self.key_bits,
            algorithm: self.key.rcgen(),
        }
    }

    /// The subject alternative names the request asks for.
    ///
    /// # Errors
    /// [`CaError::UnsupportedCsr`] when it asks for a name Tessera cannot put in a certificate
    /// (otherName, directoryName, registeredID, …, or one not valid for its type, see
    /// [`SubjectAltName::check`]). Repeated names are given once.
    pub(crate) fn sans(&self) -> Result<Vec<SubjectAltName>, CaError> {
        let names = self
            .names
            .iter()
            .map(|name| {
                name.clone().map_err(|reason| CaError::UnsupportedCsr {
                    reason,
                    fix: "give the certificate's names with --san (the request's names are then ignored)".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A name asked for twice (in any case, with or without a trailing dot) is written once.
        Ok(SubjectAltName::dedup(names).0)
    }
}

/// A request's public key as rcgen wants it: the BIT STRING of the SubjectPublicKeyInfo and the
/// algorithm that writes its header.
pub(crate) struct CsrPublicKey<'a> {
    bits: &'a [u8],
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for CsrPublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

fn bad(reason: impl Into<String>) -> CaError {
    CaError::BadCsr {
        what: "input".into(),
        reason: reason.into(),
    }
}

fn unsupported(reason: impl Into<String>, fix: impl Into<String>) -> CaError {
    CaError::UnsupportedCsr {
        reason: reason.into(),
        fix: fix.into(),
    }
}

/// Reads one PKCS#10 request (PEM `CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST`, or DER),
/// checks its key is one Tessera issues for, and verifies its self-signature.
///
/// # Errors
/// [`CaError::BadCsr`] for input that is not one well-formed request, or whose self-signature
/// does not verify; [`CaError::UnsupportedCsr`] for a well-formed request Tessera will not
/// issue for (its key type, or a signature algorithm it cannot verify), naming what and why.
pub(crate) fn parse(bytes: &[u8]) -> Result<Csr, CaError> {
    let der = der_of(bytes)?;
    let (rest, request) = X509CertificationRequest::from_der(&der)
        .map_err(|e| bad(format!("it is not a PKCS#10 certificate request: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes follow the request", rest.len())));
    }
    let info = &request.certification_request_info;
    if info.version.0 != 0 {
        return Err(bad(format!(
            "its version is {}, not 1 (RFC 2986 knows only version 1)",
            u64::from(info.version.0) + 1
        )));
    }
    let key = key_of(&info.subject_pki)?;
    verify_self_signature(&request, key)?;
    Ok(Csr {
        spki: info.subject_pki.raw.to_vec(),
        key,
        key_bits: info.subject_pki.subject_public_key.data.to_vec(),
        names: requested_names(&request)?,
    })
}

fn der_of(bytes: &[u8]) -> Result<Vec<u8>, CaError> {
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return if bytes.first() == Some(&0x30) {
            Ok(bytes.to_vec())
        } else {
            Err(bad("it is neither PEM nor DER"))
        };
    }
    let blocks = ::pem::parse_many(bytes).map_err(|e| bad(crate::pki::pem::describe_pem(&e)))?;
    let mut requests: Vec<Vec<u8>> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    for block in blocks {
        match block.tag() {
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => requests.push(block.into_contents()),
            other => others.push(other.to_string()),
        }
    }
    match requests.len() {
        1 => Ok(requests.remove(0)),
        0 if others.is_empty() => Err(bad("no -----BEGIN CERTIFICATE REQUEST----- block was found")),
        0 => Err(bad(format!(
            "it holds {}, not a certificate request (-----BEGIN CERTIFICATE REQUEST-----)",
            others.join(", ")
        ))),
        n => Err(bad(format!("it holds {n} certificate requests; give one"))),
    }
}

/// Classifies the request's key: one Tessera issues for, or a precise refusal.
fn key_of(spki: &SubjectPublicKeyInfo<'_>) -> Result<CsrKey, CaError> {
    let oid = spki.algorithm.algorithm.to_id_string();
    let data = &spki.subject_public_key.data;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let fix = "make the request with a supported key, e.g. \
               `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout KEY -out REQ.csr`";
    let refuse = |name: String| {
        unsupported(
            format!(
                "the request's key is {name}, which Tessera does not issue certificates for (supported: {SUPPORTED_KEYS})"
            ),
            fix,
        )
    };
    if spki.subject_public_key.unused_bits != 0 {
        return Err(bad("its public key is not a whole number of bytes"));
    }
    let ec_point = |key: CsrKey, len: usize| match data.first() {
        Some(0x04) if data.len() == len => Ok(key),
        Some(0x02 | 0x03) => Err(unsupported(
            format!("the request's {key} key is a compressed point; Tessera issues for uncompressed points only"),
            "make the request with an uncompressed key (OpenSSL's default; drop `ec_point_format:compressed`)",
        )),
        _ => Err(bad(format!("its {key} public key is not a valid point"))),
    };
    match (oid.as_str(), curve.as_deref()) {
        (OID_ED25519, _) if spki.algorithm.parameters.is_none() && data.len() == 32 => Ok(CsrKey::Ed25519),
        (OID_ED25519, _) => Err(bad("its Ed25519 public key is malformed")),
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => ec_point(CsrKey::P256, 65),
        (OID_EC_PUBLIC_KEY, Some(OID_P384)) => ec_point(CsrKey::P384, 97),
        (OID_RSA, _) => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
                _ => return Err(bad("its RSA public key is malformed")),
            };
            if (2048..=8192).contains(&bits) {
                Ok(CsrKey::Rsa { bits })
            } else {
                Err(refuse(format!("RSA {bits}-bit")))
            }
        }
        (oid, curve) => Err(refuse(crate::pki::algorithm_name(oid, curve))),
    }
}

/// The bit length of a big-endian unsigned integer.
fn modulus_bits(modulus: &[u8]) -> usize {
    let Some(start) = modulus.iter().position(|b| *b != 0) else {
        return 0;
    };
    let top = modulus.get(start).copied().unwrap_or(0);
    (modulus.len() - start - 1) * 8 + (8 - top.leading_zeros() as usize)
}

/// Verifies the self-signature with ring, for every (key, signature algorithm) ring supports;
/// any other combination is refused by name, never reported as a bad signature.
fn verify_self_signature(request: &X509CertificationRequest<'_>, key: CsrKey) -> Result<(), CaError> {
    let oid = request.signature_algorithm.algorithm.to_id_string();
    let (name, family, hash) = SIGNATURE_ALGORITHMS.iter().find(|(o, ..)| *o == oid).map_or(
        (
            format!("the signature algorithm with OID {oid}"),
            Family::Other,
            Hash::Other,
        ),
        |(_, n, f, h)| ((*n).to_string(), *f, *h),
    );
    let sign_fix = match key {
        CsrKey::Ed25519 => "make the request again with `openssl req -new -key KEY -out REQ.csr`",
        CsrKey::P256 | CsrKey::P384 => {
            "sign the request with SHA-256 or SHA-384: `openssl req -new -key KEY -sha256 -out REQ.csr`"
        }
        CsrKey::Rsa { .. } => "sign the request with SHA-256: `openssl req -new -key KEY -sha256 -out REQ.csr`",
    };
    let cannot_verify = |why: String| unsupported(format!("the request is signed with {name}, {why}"), sign_fix);
    let algorithm: &dyn VerificationAlgorithm = match (key, family, hash) {
        (CsrKey::Ed25519, Family::Ed25519, _) => &signature::ED25519,
        (CsrKey::P256, Family::Ecdsa, Hash::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (CsrKey::P256, Family::Ecdsa, Hash::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (CsrKey::P384, Family::Ecdsa, Hash::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (CsrKey::P384, Family::Ecdsa, Hash::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (CsrKey::P256 | CsrKey::P384, Family::Ecdsa, _) => {
            return Err(cannot_verify(format!(
                "which Tessera cannot verify for an {key} key (it verifies ECDSA with SHA-256 or SHA-384)"
            )));
        }
        (CsrKey::Rsa { .. }, Family::Rsa, Hash::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (CsrKey::Rsa { .. }, Family::Rsa, Hash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (CsrKey::Rsa { .. }, Family::Rsa, Hash::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (CsrKey::Rsa { .. }, Family::Rsa, _) => {
            return Err(cannot_verify(
                "which Tessera does not accept (it verifies RSA signatures with SHA-256, SHA-384 or SHA-512)".into(),
            ));
        }
        (CsrKey::Rsa { .. }, Family::RsaPss, _) => pss_algorithm(request, &name)?,
        (_, Family::Other, _) if !SIGNATURE_ALGORITHMS.iter().any(|(o, ..)| *o == oid) => {
            return Err(cannot_verify("which Tessera does not know".into()));
        }
        _ => {
            return Err(bad(format!(
                "it is signed with {name}, which does not match its {key} key"
            )));
        }
    };
    let signature_value = &request.signature_value;
    if signature_value.unused_bits != 0 {
        return Err(bad("its signature is not a whole number of bytes"));
    }
    let spki = &request.certification_request_info.subject_pki;
    signature::UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
        .verify(request.certification_request_info.raw, &signature_value.data)
        .map_err(|_| bad("its self-signature does not verify (the request was altered, or not signed by its key)"))
}

/// ring verifies RSASSA-PSS with one hash for the message and MGF1, and a salt as long as the
/// hash (RFC 8446's rsa_pss_rsae_*): other parameters are refused by name.
fn pss_algorithm(
    request: &X509CertificationRequest<'_>,
    name: &str,
) -> Result<&'static dyn VerificationAlgorithm, CaError> {
    let fix = "sign the request with PKCS#1 v1.5 (OpenSSL's default: drop `-sigopt rsa_padding_mode:pss`), \
               or add `-sigopt rsa_pss_saltlen:digest`";
    let params = match x509_parser::signature_algorithm::SignatureAlgorithm::try_from(&request.signature_algorithm) {
        Ok(x509_parser::signature_algorithm::SignatureAlgorithm::RSASSA_PSS(params)) => params,
        _ => return Err(bad(format!("its {name} parameters are malformed"))),
    };
    let hash_of = |oid: String| HASHES.iter().find(|(o, _)| *o == oid).map_or(Hash::Other, |(_, h)| *h);
    let hash = hash_of(params.hash_algorithm_oid().to_id_string());
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| bad(format!("its {name} mask generation parameters are malformed")))?;
    let mgf_hash = if mgf.mgf.to_id_string() == OID_MGF1 {
        hash_of(mgf.hash.to_id_string())
    } else {
        Hash::Other
    };
    let salt = params.salt_length();
    let refuse = |why: String| {
        unsupported(
            format!("the request is signed with {name} ({why}), which Tessera cannot verify"),
            fix,
        )
    };
    if params.trailer_field() != 1 {
        return Err(bad(format!("its {name} trailer field is not 1 (RFC 4055)")));
    }
    if hash != mgf_hash {
        return Err(refuse(format!(
            "hash {}, MGF1 with {}: they must be the same",
            hash.name(),
            mgf_hash.name()
        )));
    }
    if hash.output_len() != Some(salt) {
        return Err(refuse(format!(
            "hash {}, salt of {salt} bytes: the salt must be as long as the hash",
            hash.name()
        )));
    }
    match hash {
        Hash::Sha256 => Ok(&signature::RSA_PSS_2048_8192_SHA256),
        Hash::Sha384 => Ok(&signature::RSA_PSS_2048_8192_SHA384),
        Hash::Sha512 => Ok(&signature::RSA_PSS_2048_8192_SHA512),
        other => Err(refuse(format!(
            "hash {}: SHA-256, SHA-384 or SHA-512 is required",
            other.name()
        ))),
    }
}

/// The subject alternative names asked for in the extensionRequest attribute (RFC 2985 §5.4.2),
/// each a name Tessera can issue or the reason it cannot.
fn requested_names(request: &X509CertificationRequest<'_>) -> Result<Vec<Result<SubjectAltName, String>>, CaError> {
    let mut names = Vec::new();
    let mut seen = false;
    for attribute in request.certification_request_info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(requested) = attribute.parsed_attribute() else {
            continue;
        };
        for extension in &requested.extensions {
            if extension.oid.to_id_string() != OID_SUBJECT_ALT_NAME {
                continue;
            }
            if seen {
                return Err(bad("it asks for subjectAltName twice"));
            }
            seen = true;
            let ParsedExtension::SubjectAlternativeName(san) = extension.parsed_extension() else {
                return Err(bad("the subjectAltName it asks for is malformed"));
            };
            names.extend(san.general_names.iter().map(san_of));
        }
    }
    Ok(names)
}

fn san_of(name: &GeneralName<'_>) -> Result<SubjectAltName, String> {
    let parse = |kind: &str, what: &str, value: &str| {
        SubjectAltName::check(kind, value)
            .map_err(|why| format!("the request asks for the {what} \"{value}\", which {why}"))
    };
    let cannot = |what: String| {
        Err(format!(
            "the request asks for {what}, which Tessera cannot put in a certificate"
        ))
    };
    match name {
        GeneralName::DNSName(d) => parse("dns", "DNS name", d),
        GeneralName::RFC822Name(e) => parse("email", "e-mail address", e),
        GeneralName::URI(u) => parse("uri", "URI", u),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => Ok(SubjectAltName::Ip(IpAddr::from(
                <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
            ))),
            16 => Ok(SubjectAltName::Ip(IpAddr::from(
                <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
            ))),
            n => Err(format!(
                "the request asks for an IP address of {n} bytes, which is neither IPv4 nor IPv6"
            )),
        },
        GeneralName::OtherName(oid, _) => cannot(format!("an otherName ({oid}) subject alternative name")),
        GeneralName::DirectoryName(dn) => cannot(format!("a directoryName ({dn}) subject alternative name")),
        GeneralName::RegisteredID(oid) => cannot(format!("a registeredID ({oid}) subject alternative name")),
        GeneralName::X400Address(_) => cannot("an x400Address subject alternative name".into()),
        GeneralName::EDIPartyName(_) => cannot("an ediPartyName subject alternative name".into()),
        GeneralName::Invalid(..) => Err("the request asks for a malformed subject alternative name".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_sign_padding() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[]), 0);
    }

    /// A P-256 key that presents its public key as a compressed point (OpenSSL never writes
    /// one into a request, but hand-made requests may).
    struct Compressed {
        pair: rcgen::KeyPair,
        point: Vec<u8>,
    }

    impl rcgen::PublicKeyData for Compressed {
        fn der_bytes(&self) -> &[u8] {
            &self.point
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P256_SHA256
        }
    }

    impl rcgen::SigningKey for Compressed {
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
            self.pair.sign(msg)
        }
    }

    #[test]
    fn a_compressed_point_is_named() {
        #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
        use rcgen::PublicKeyData;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let full = pair.der_bytes().to_vec();
        let mut point = vec![0x02 | (full[64] & 1)];
        point.extend_from_slice(&full[1..33]);
        let key = Compressed { pair, point };
        let request = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
        match parse(request.der()) {
            Err(CaError::UnsupportedCsr { reason, .. }) => assert!(reason.contains("compressed point"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn garbage_and_other_pem_are_bad_requests() {
        for input in [
            &b"hello"[..],
            b"\x30\x00",
            b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(parse(input), Err(CaError::BadCsr { .. })), "{input:?}");
        }
    }
}
