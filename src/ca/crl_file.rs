//! Reading the CA's own `crl.pem` cheaply: its header (issuer, thisUpdate, nextUpdate,
//! cRLNumber), how many entries it lists, and whether the CA's key signed it.
//!
//! Every command that signs first checks that `crl.pem` reflects the store, so this check must
//! not cost more as revocations accumulate. A full parse of a CRL with 10,000 entries takes tens
//! of milliseconds; here the entries are only counted by their DER framing (RFC 5280 §5.1), and
//! the signature over `tbsCertList` (one hash of the file's bytes, §5.1.1.3) proves that the
//! entries are the ones the CA signed. A CRL of this CA whose number equals the store's was made
//! from the revoked set the store handed out with that number, so nothing else needs comparing.

use std::path::Path;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::time::ASN1Time;

use super::CaError;
use crate::pki::pem;

/// `crl.pem` as found, when it is a readable CRL signed by the CA.
pub(super) struct CrlFile {
    /// The CRL (DER).
    pub(super) der: CertificateRevocationListDer<'static>,
    /// Its cRLNumber (RFC 5280 §5.2.3), if it has one that fits in 64 bits.
    pub(super) number: Option<u64>,
    /// nextUpdate − thisUpdate, if both are there and nextUpdate is later.
    pub(super) lifetime: Option<Duration>,
}

/// Why `crl.pem` cannot be used: `reason` is empty when the file does not exist; `lifetime` is
/// the damaged CRL's lifetime when it could still be read (a rewrite keeps it).
pub(super) struct Unusable {
    pub(super) reason: String,
    pub(super) lifetime: Option<Duration>,
}

/// Reads `path` as the CRL of the CA whose certificate is `ca`.
///
/// # Errors
/// [`CaError::Io`] when the file exists but cannot be read; a missing, damaged, foreign or
/// badly signed file is `Ok(Err(Unusable))`.
pub(super) fn read_crl_file(path: &Path, ca: &CertificateDer<'_>) -> Result<Result<CrlFile, Unusable>, CaError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(Unusable {
                reason: String::new(),
                lifetime: None,
            }));
        }
        Err(e) => return Err(CaError::io(path, e)),
    };
    let damaged = |why: &str, lifetime: Option<Duration>| {
        Ok(Err(Unusable {
            reason: format!("{} is damaged ({why})", path.display()),
            lifetime,
        }))
    };
    let Some(der) = pem::parse_blocks(&bytes, pem::X509_CRL, "crl.pem")
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
    else {
        return damaged("no CRL can be read from it", None);
    };
    let Some(header) = CrlHeader::parse(&der) else {
        return damaged("no CRL can be read from it", None);
    };
    let lifetime = header
        .next_update
        .and_then(|next| Duration::try_from(next - header.this_update).ok())
        .filter(|d| !d.is_zero());
    let Ok((_, ca_cert)) = X509Certificate::from_der(ca) else {
        return Err(crate::pki::PkiError::malformed("ca.pem", "not an X.509 certificate").into());
    };
    let issuer = match X509Name::from_der(header.issuer) {
        Ok((_, name)) => name.to_string(),
        Err(_) => return damaged("its issuer name cannot be read", lifetime),
    };
    if issuer != ca_cert.subject().to_string() {
        return Ok(Err(Unusable {
            reason: format!("{} was issued by {issuer}, not by this CA", path.display()),
            lifetime,
        }));
    }
    match header.signed_by(&ca_cert) {
        Some(true) => {}
        Some(false) => return damaged("its signature does not verify with the CA's key", lifetime),
        // A key or algorithm this check does not know: the header alone decides, as before.
        None => tracing::debug!(path = %path.display(), "CRL signature algorithm not checked"),
    }
    let number = header.number;
    Ok(Ok(CrlFile {
        der: CertificateRevocationListDer::from(der),
        number,
        lifetime,
    }))
}

/// The parts of a CertificateList (RFC 5280 §5.1) this module needs, borrowed from its DER.
struct CrlHeader<'a> {
    tbs: &'a [u8],
    signature_algorithm: &'a [u8],
    signature: &'a [u8],
    issuer: &'a [u8],
    this_update: time::OffsetDateTime,
    next_update: Option<time::OffsetDateTime>,
    number: Option<u64>,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXTENSIONS: u8 = 0xa0;
/// id-ce-cRLNumber, 2.5.29.20 (RFC 5280 §5.2.3), as DER content octets.
const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];

/// One DER TLV as (tag, content, the whole TLV, what follows).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// One DER TLV: (tag, content, the whole TLV, what follows). Single-octet tags and definite
/// lengths of up to four octets; `None` when the input is cut short.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *input.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let mut length = 0usize;
        for &b in input.get(2..2 + octets)? {
            length = length.checked_mul(256)?.checked_add(usize::from(b))?;
        }
        (length, 2 + octets)
    };
    let end = header.checked_add(length)?;
    let whole = input.get(..end)?;
    Some((tag, whole.get(header..)?, whole, input.get(end..)?))
}

/// Reads one TLV with the expected tag.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8], &[u8])> {
    let (found, content, whole, rest) = tlv(input)?;
    (found == tag).then_some((content, whole, rest))
}

fn read_time(input: &[u8]) -> Option<(time::OffsetDateTime, &[u8])> {
    let (tag, _, whole, rest) = tlv(input)?;
    if tag != UTC_TIME && tag != GENERALIZED_TIME {
        return None;
    }
    let (_, time) = ASN1Time::from_der(whole).ok()?;
    Some((time.to_datetime(), rest))
}

impl<'a> CrlHeader<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (list, _, rest) = expect(der, SEQUENCE)?;
        if !rest.is_empty() {
            return None;
        }
        let (tbs_content, tbs, rest) = expect(list, SEQUENCE)?;
        let (signature_algorithm, _, rest) = expect(rest, SEQUENCE)?;
        let (signature, _, rest) = expect(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return None;
        }
        let mut input = tbs_content;
        if let Some((_, _, rest)) = expect(input, INTEGER) {
            input = rest;
        }
        let (_, _, rest) = expect(input, SEQUENCE)?;
        let (_, issuer, rest) = expect(rest, SEQUENCE)?;
        let (this_update, mut input) = read_time(rest)?;
        let mut next_update = None;
        if let Some((time, rest)) = read_time(input) {
            next_update = Some(time);
            input = rest;
        }
        if let Some((entries, _, rest)) = expect(input, SEQUENCE) {
            // Only the framing of each entry: the signature covers their content.
            let mut entries = entries;
            while !entries.is_empty() {
                let (_, _, rest) = expect(entries, SEQUENCE)?;
                entries = rest;
            }
            input = rest;
        }
        let mut number = None;
        if let Some((extensions, _, rest)) = expect(input, EXTENSIONS) {
            let (mut list, _, after) = expect(extensions, SEQUENCE)?;
            if !after.is_empty() {
                return None;
            }
            while !list.is_empty() {
                let (extension, _, rest) = expect(list, SEQUENCE)?;
                list = rest;
                let (oid, _, mut fields) = expect(extension, OID)?;
                if let Some((_, _, rest)) = expect(fields, BOOLEAN) {
                    fields = rest;
                }
                let (value, _, _) = expect(fields, OCTET_STRING)?;
                if oid == CRL_NUMBER {
                    let (integer, _, _) = expect(value, INTEGER)?;
                    number = small_unsigned(integer);
                }
            }
            input = rest;
        }
        if !input.is_empty() {
            return None;
        }
        // A BIT STRING's first content octet counts the unused bits: none in a signature.
        let (_, signature) = signature.split_first().filter(|(unused, _)| **unused == 0)?;
        Some(Self {
            tbs,
            signature_algorithm,
            signature,
            issuer,
            this_update,
            next_update,
            number,
        })
    }

    /// Whether `ca`'s key signed `tbsCertList`; `None` for a key or algorithm not checked here
    /// (Tessera makes CAs with Ed25519, P-256 and P-384 keys only).
    fn signed_by(&self, ca: &X509Certificate<'_>) -> Option<bool> {
        use ring::signature;
        let key = ca.public_key();
        let (algorithm_oid, _, _) = expect(self.signature_algorithm, OID)?;
        let curve = key.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        let algorithm: &dyn signature::VerificationAlgorithm =
            if key.algorithm.algorithm == OID_SIG_ED25519 && algorithm_oid == OID_SIG_ED25519.as_bytes() {
                &signature::ED25519
            } else if key.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
                match (curve, algorithm_oid) {
                    (Some(c), a) if c == OID_EC_P256 && a == OID_SIG_ECDSA_WITH_SHA256.as_bytes() => {
                        &signature::ECDSA_P256_SHA256_ASN1
                    }
                    (Some(c), a) if c == OID_EC_P256 && a == OID_SIG_ECDSA_WITH_SHA384.as_bytes() => {
                        &signature::ECDSA_P256_SHA384_ASN1
                    }
                    (Some(c), a) if c == OID_NIST_EC_P384 && a == OID_SIG_ECDSA_WITH_SHA384.as_bytes() => {
                        &signature::ECDSA_P384_SHA384_ASN1
                    }
                    (Some(c), a) if c == OID_NIST_EC_P384 && a == OID_SIG_ECDSA_WITH_SHA256.as_bytes() => {
                        &signature::ECDSA_P384_SHA256_ASN1
                    }
                    _ => return None,
                }
            } else {
                return None;
            };
        let public_key = signature::UnparsedPublicKey::new(algorithm, key.subject_public_key.data.as_ref());
        Some(public_key.verify(self.tbs, self.signature).is_ok())
    }
}

/// A non-negative INTEGER's value when it fits in 64 bits.
fn small_unsigned(content: &[u8]) -> Option<u64> {
    let (first, _) = content.split_first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let digits = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => content,
    };
    if digits.len() > 8 {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_truncation() {
        assert_eq!(tlv(&[0x30, 0x00]).map(|t| t.1.len()), Some(0));
        assert_eq!(tlv(&[0x04, 0x81, 0x01, 0xaa]).map(|t| t.1.to_vec()), Some(vec![0xaa]));
        assert!(tlv(&[0x04, 0x02, 0xaa]).is_none(), "content cut short");
        assert!(tlv(&[0x04, 0x80]).is_none(), "indefinite length");
        assert!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_none(), "length of five octets");
        assert!(tlv(&[0x1f, 0x01, 0x00]).is_none(), "multi-octet tag");
        assert!(tlv(&[]).is_none());
    }

    #[test]
    fn crl_numbers() {
        assert_eq!(small_unsigned(&[0x00]), Some(0));
        assert_eq!(small_unsigned(&[0x01, 0x00]), Some(256));
        assert_eq!(small_unsigned(&[0x00, 0xff]), Some(255));
        assert_eq!(small_unsigned(&[0x80]), None, "negative");
        assert_eq!(small_unsigned(&[0x01; 9]), None, "over 64 bits");
        assert_eq!(small_unsigned(&[]), None);
    }
}
