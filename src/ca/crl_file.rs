//! Reading the CA's own `crl.pem` cheaply: its header (issuer, thisUpdate, nextUpdate,
//! cRLNumber), and with [`Depth::Full`] whether the CA's key signed it.
//!
//! Every command that signs first checks that `crl.pem` is not behind the store, so that check
//! must not cost more as revocations accumulate: with [`Depth::Header`] only the octets of the
//! header and of the extensions are decoded from the PEM text (the file is laid out the way
//! Tessera writes it, 64 base64 characters a line, so a DER offset maps to a file offset), and
//! the entries are skipped by their DER length (RFC 5280 §5.1). A CRL of this CA whose number
//! equals the store's was made from the revoked set the store handed out with that number.
//! [`Depth::Full`] (`ca list`, `ca revoke`) decodes everything and verifies the signature over
//! `tbsCertList` (§5.1.1.3), which also finds a damaged entry.

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

/// How much of `crl.pem` to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Depth {
    /// The header and extensions only, when the file is laid out as Tessera writes it; the
    /// cost does not grow with the entries. Otherwise as [`Depth::Full`].
    Header,
    /// Everything, with the CA's signature checked, and the DER returned.
    Full,
}

/// `crl.pem` as found, when it is a readable CRL of the CA.
pub(super) struct CrlFile {
    /// The CRL (DER): with [`Depth::Full`], or when the header could not be read alone.
    pub(super) der: Option<CertificateRevocationListDer<'static>>,
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
    /// The file reads as this CA's CRL but its signature does not verify (damage that only
    /// [`Depth::Full`] finds).
    pub(super) unsigned: bool,
}

/// Reads `path` as the CRL of the CA whose certificate is `ca`, to `depth`.
///
/// # Errors
/// [`CaError::Io`] when the file exists but cannot be read; a missing, damaged, foreign or
/// (with [`Depth::Full`]) badly signed file is `Ok(Err(Unusable))`.
pub(super) fn read_crl_file(
    path: &Path,
    ca: &CertificateDer<'_>,
    depth: Depth,
) -> Result<Result<CrlFile, Unusable>, CaError> {
    let missing = || {
        Ok(Err(Unusable {
            reason: String::new(),
            lifetime: None,
            unsigned: false,
        }))
    };
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return missing(),
        Err(e) => return Err(CaError::io(path, e)),
    }
    let damaged = |why: &str, lifetime: Option<Duration>| {
        Ok(Err(Unusable {
            reason: format!("{} is damaged ({why})", path.display()),
            lifetime,
            unsigned: false,
        }))
    };
    let sparse = match depth {
        Depth::Header => sparse_fields(path),
        Depth::Full => None,
    };
    let (fields, signed) = match sparse {
        Some(fields) => (fields, None),
        None => {
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return missing(),
                Err(e) => return Err(CaError::io(path, e)),
            };
            // A PEM reader made for this one file: the `pem` crate, used for every other file,
            // takes about 80 instructions per byte, twelve times this, on 10,000 entries.
            let Some(der) = first_crl(&bytes) else {
                return damaged("no CRL can be read from it", None);
            };
            let Some(signed) = Signed::parse(&der) else {
                return damaged("no CRL can be read from it", None);
            };
            let fields = signed.fields.clone();
            let signed = (
                signed.tbs.to_vec(),
                signed.algorithm.to_vec(),
                signed.signature.to_vec(),
            );
            (fields, Some((der, signed)))
        }
    };
    let lifetime = fields
        .next_update
        .and_then(|next| Duration::try_from(next - fields.this_update).ok())
        .filter(|d| !d.is_zero());
    let Ok((_, ca_cert)) = X509Certificate::from_der(ca) else {
        return Err(crate::pki::PkiError::malformed("ca.pem", "not an X.509 certificate").into());
    };
    let issuer = match X509Name::from_der(&fields.issuer) {
        Ok((_, name)) => name.to_string(),
        Err(_) => return damaged("its issuer name cannot be read", lifetime),
    };
    if issuer != ca_cert.subject().to_string() {
        return Ok(Err(Unusable {
            reason: format!("{} was issued by {issuer}, not by this CA", path.display()),
            lifetime,
            unsigned: false,
        }));
    }
    let der = match signed {
        None => None,
        Some((der, (tbs, algorithm, signature))) => {
            match signed_by(&ca_cert, &tbs, &algorithm, &signature) {
                Some(true) => {}
                Some(false) => {
                    return Ok(Err(Unusable {
                        reason: format!(
                            "{} is damaged (its signature does not verify with the CA's key)",
                            path.display()
                        ),
                        lifetime,
                        unsigned: true,
                    }));
                }
                // A key or algorithm this check does not know: the header alone decides.
                None => tracing::debug!(path = %path.display(), "CRL signature algorithm not checked"),
            }
            Some(CertificateRevocationListDer::from(der))
        }
    };
    Ok(Ok(CrlFile {
        der,
        number: fields.number,
        lifetime,
    }))
}

/// The CRL number of `der` when it is a whole CRL (RFC 5280 §5.1) issued by the CA whose
/// certificate is `ca`, with a cRLNumber (§5.2.3), and the CA's signature over it verifies
/// (§5.1.1.3); `None` otherwise. For a CRL from elsewhere than `crl.pem`: the one `ca serve`
/// published in the store.
pub(super) fn signed_crl_number(der: &[u8], ca: &CertificateDer<'_>) -> Option<u64> {
    let signed = Signed::parse(der)?;
    let (_, ca_cert) = X509Certificate::from_der(ca).ok()?;
    let (_, issuer) = X509Name::from_der(&signed.fields.issuer).ok()?;
    if issuer.to_string() != ca_cert.subject().to_string() {
        return None;
    }
    signed_by(&ca_cert, signed.tbs, signed.algorithm, signed.signature)
        .unwrap_or(false)
        .then_some(signed.fields.number)
        .flatten()
}

/// The first `X509 CRL` block of PEM bytes (RFC 7468 §5: base64 between the BEGIN and END
/// lines, line breaks ignored), or the bytes themselves when they are DER.
fn first_crl(bytes: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    const BEGIN: &[u8] = b"-----BEGIN X509 CRL-----";
    const END: &[u8] = b"-----END X509 CRL-----";
    if bytes.first() == Some(&SEQUENCE) {
        return Some(bytes.to_vec());
    }
    let start = bytes.windows(BEGIN.len()).position(|w| w == BEGIN)? + BEGIN.len();
    let body = bytes.get(start..)?;
    let mut encoded = Vec::with_capacity(body.len());
    let mut ended = false;
    for line in body.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.starts_with(END) {
            ended = true;
            break;
        }
        encoded.extend_from_slice(line);
    }
    if !ended {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(encoded).ok()
}

/// What the checks need from a CRL's tbsCertList (RFC 5280 §5.1.2).
#[derive(Clone)]
struct Fields {
    /// The issuer Name, as its DER TLV.
    issuer: Vec<u8>,
    this_update: time::OffsetDateTime,
    next_update: Option<time::OffsetDateTime>,
    number: Option<u64>,
}

/// A whole CertificateList (RFC 5280 §5.1), borrowed from its DER.
struct Signed<'a> {
    fields: Fields,
    tbs: &'a [u8],
    /// The signatureAlgorithm's OID (content octets).
    algorithm: &'a [u8],
    /// The signature value, without the BIT STRING's unused-bits octet.
    signature: &'a [u8],
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
    let (tag, header, length) = tlv_header(input)?;
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

/// A TLV's tag, header length and content length, from its first octets alone.
fn tlv_header(input: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *input.get(1)?;
    if first < 0x80 {
        return Some((tag, 2, usize::from(first)));
    }
    let octets = usize::from(first & 0x7f);
    if octets == 0 || octets > 4 {
        return None;
    }
    let mut length = 0usize;
    for &b in input.get(2..2 + octets)? {
        length = length.checked_mul(256)?.checked_add(usize::from(b))?;
    }
    Some((tag, 2 + octets, length))
}

/// tbsCertList from its start up to the revoked certificates: (version,) signature, issuer,
/// thisUpdate, nextUpdate. Returns the fields (without the number) and what follows.
fn tbs_start(input: &[u8]) -> Option<(Fields, &[u8])> {
    let mut input = input;
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
    let fields = Fields {
        issuer: issuer.to_vec(),
        this_update,
        next_update,
        number: None,
    };
    Some((fields, input))
}

/// tbsCertList's crlExtensions, if any, to its end: the cRLNumber (outer `None`: malformed).
fn tbs_end(input: &[u8]) -> Option<Option<u64>> {
    if input.is_empty() {
        return Some(None);
    }
    let (extensions, _, rest) = expect(input, EXTENSIONS)?;
    if !rest.is_empty() {
        return None;
    }
    let (mut list, _, after) = expect(extensions, SEQUENCE)?;
    if !after.is_empty() {
        return None;
    }
    let mut number = None;
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
    Some(number)
}

impl<'a> Signed<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (list, _, rest) = expect(der, SEQUENCE)?;
        if !rest.is_empty() {
            return None;
        }
        let (tbs_content, tbs, rest) = expect(list, SEQUENCE)?;
        let (algorithm, _, rest) = expect(rest, SEQUENCE)?;
        let (algorithm, _, _) = expect(algorithm, OID)?;
        let (signature, _, rest) = expect(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return None;
        }
        let (mut fields, mut input) = tbs_start(tbs_content)?;
        if let Some((entries, _, rest)) = expect(input, SEQUENCE) {
            // Only the framing of each entry: the signature covers their content.
            let mut entries = entries;
            while !entries.is_empty() {
                let (_, _, rest) = expect(entries, SEQUENCE)?;
                entries = rest;
            }
            input = rest;
        }
        fields.number = tbs_end(input)?;
        // A BIT STRING's first content octet counts the unused bits: none in a signature.
        let (_, signature) = signature.split_first().filter(|(unused, _)| **unused == 0)?;
        Some(Self {
            fields,
            tbs,
            algorithm,
            signature,
        })
    }
}

/// The header fields of a PEM CRL file laid out as Tessera writes it (`-----BEGIN X509 CRL-----`,
/// 64 base64 characters a line, LF, `-----END X509 CRL-----`), reading and decoding only the
/// octets they are in and skipping the entries by their length; `None` for any other layout
/// (or when the file cannot be read that way: the caller then reads it whole).
fn sparse_fields(path: &Path) -> Option<Fields> {
    use base64::Engine as _;
    use std::os::unix::fs::FileExt as _;
    const HEADER: &[u8] = b"-----BEGIN X509 CRL-----\n";
    const FOOTER: &[u8] = b"-----END X509 CRL-----\n";
    const LINE: usize = 64;
    let file = std::fs::File::open(path).ok()?;
    let size = usize::try_from(file.metadata().ok()?.len()).ok()?;
    let read = |at: usize, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, u64::try_from(at).ok()?).ok()?;
        Some(buf)
    };
    let body_len = size.checked_sub(HEADER.len() + FOOTER.len())?;
    if read(0, HEADER.len())? != HEADER || read(size - FOOTER.len(), FOOTER.len())? != FOOTER {
        return None;
    }
    let lines = body_len.div_ceil(LINE + 1);
    let chars = body_len.checked_sub(lines)?;
    if chars == 0 || !chars.is_multiple_of(4) || chars.div_ceil(LINE) != lines {
        return None;
    }
    let groups = chars / 4;
    // The file offset of base64 character `c`: 64 characters and a line feed a line.
    let offset = |c: usize| HEADER.len() + c + c / LINE;
    // The DER octets from..to, decoded from the base64 groups that hold them.
    let decode = |from: usize, to: usize| -> Option<Vec<u8>> {
        let (first, last) = (from / 3, to.div_ceil(3).min(groups));
        if first >= last {
            return Some(Vec::new());
        }
        let span_start = offset(first * 4);
        let span = read(span_start, offset(last * 4 - 1) + 1 - span_start)?;
        let mut text = Vec::with_capacity((last - first) * 4);
        for c in first * 4..last * 4 {
            // A line feed anywhere else, or a character where one belongs, fails the decoding.
            text.push(*span.get(offset(c) - span_start)?);
        }
        for (i, b) in span.iter().enumerate() {
            if (span_start - HEADER.len() + i + 1).is_multiple_of(LINE + 1) && *b != b'\n' {
                return None;
            }
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(&text).ok()?;
        let start = from - first * 3;
        raw.get(start..(to - first * 3).min(raw.len())).map(<[u8]>::to_vec)
    };
    let opening = decode(0, 6)?;
    let (tag, outer_header, outer_length) = tlv_header(&opening)?;
    let total = outer_header.checked_add(outer_length)?;
    if tag != SEQUENCE || total.div_ceil(3) != groups {
        return None;
    }
    let head = decode(0, total.min(4096))?;
    let (tag, tbs_header, tbs_length) = tlv_header(head.get(outer_header..)?)?;
    if tag != SEQUENCE {
        return None;
    }
    let tbs_from = outer_header + tbs_header;
    let tbs_to = tbs_from.checked_add(tbs_length)?;
    let start = head.get(tbs_from..tbs_to.min(head.len()))?;
    let (mut fields, rest) = tbs_start(start)?;
    let mut at = tbs_from + (start.len() - rest.len());
    if at < tbs_to {
        let (tag, header, length) = tlv_header(rest)?;
        if tag == SEQUENCE {
            at = at.checked_add(header)?.checked_add(length)?;
        }
    }
    if at > tbs_to || tbs_to > total {
        return None;
    }
    fields.number = tbs_end(&decode(at, tbs_to)?)?;
    Some(fields)
}

/// Whether `ca`'s key made `signature` over `tbs` with `algorithm` (an OID's content octets);
/// `None` for a key or algorithm not checked here (Tessera makes CAs with Ed25519, P-256 and
/// P-384 keys only).
fn signed_by(ca: &X509Certificate<'_>, tbs: &[u8], algorithm: &[u8], signature: &[u8]) -> Option<bool> {
    use ring::signature;
    let key = ca.public_key();
    let curve = key.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
    let verification: &dyn signature::VerificationAlgorithm =
        if key.algorithm.algorithm == OID_SIG_ED25519 && algorithm == OID_SIG_ED25519.as_bytes() {
            &signature::ED25519
        } else if key.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let sha256 = algorithm == OID_SIG_ECDSA_WITH_SHA256.as_bytes();
            let sha384 = algorithm == OID_SIG_ECDSA_WITH_SHA384.as_bytes();
            match curve {
                Some(c) if c == OID_EC_P256 && sha256 => &signature::ECDSA_P256_SHA256_ASN1,
                Some(c) if c == OID_EC_P256 && sha384 => &signature::ECDSA_P256_SHA384_ASN1,
                Some(c) if c == OID_NIST_EC_P384 && sha384 => &signature::ECDSA_P384_SHA384_ASN1,
                Some(c) if c == OID_NIST_EC_P384 && sha256 => &signature::ECDSA_P384_SHA256_ASN1,
                _ => return None,
            }
        } else {
            return None;
        };
    let public_key = signature::UnparsedPublicKey::new(verification, key.subject_public_key.data.as_ref());
    Some(public_key.verify(tbs, signature).is_ok())
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
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer, KeyIdMethod, KeyPair,
        RevokedCertParams, SerialNumber,
    };
    use time::macros::datetime;

    /// A CA certificate and the DER of its CRL with `entries` revoked serials and `number`.
    fn ca_and_crl(entries: usize, number: u64) -> (CertificateDer<'static>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Sparse Root");
        let ca = params.self_signed(&key).unwrap();
        let issuer = Issuer::new(params, key);
        let crl = CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update: datetime!(2030-01-08 0:00 UTC),
            crl_number: SerialNumber::from(number.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: (0..entries)
                .map(|i| RevokedCertParams {
                    serial_number: SerialNumber::from(((i as u128) << 64 | 0x7e).to_be_bytes().to_vec()),
                    revocation_time: datetime!(2029-12-31 0:00 UTC),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::PreSpecified(vec![1; 20]),
        }
        .signed_by(&issuer)
        .unwrap();
        (ca.der().clone(), crl.der().to_vec())
    }

    #[test]
    fn the_header_read_alone_equals_the_whole_read() {
        let tmp = tempfile::tempdir().unwrap();
        // Sizes that put the entries' end on every offset within a base64 group and a line.
        for entries in [0, 1, 2, 3, 7, 64, 65, 200, 1000] {
            for number in [1, 255, 65_536, u64::MAX >> 1] {
                let (ca, der) = ca_and_crl(entries, number);
                let path = tmp.path().join(format!("crl-{entries}-{number}.pem"));
                std::fs::write(&path, crate::pki::pem::to_pem(crate::pki::pem::X509_CRL, &der)).unwrap();
                let sparse = sparse_fields(&path).expect("Tessera's own layout");
                let whole = Signed::parse(&der).unwrap().fields;
                assert_eq!(sparse.number, Some(number));
                assert_eq!(whole.number, Some(number));
                assert_eq!(sparse.issuer, whole.issuer);
                assert_eq!(sparse.this_update, whole.this_update);
                assert_eq!(sparse.next_update, whole.next_update);
                for depth in [Depth::Header, Depth::Full] {
                    let read = read_crl_file(&path, &ca, depth).unwrap().ok().unwrap();
                    assert_eq!(read.number, Some(number));
                    assert_eq!(read.der.is_some(), depth == Depth::Full);
                    assert_eq!(read.lifetime, Some(Duration::from_secs(7 * 86_400)));
                }
            }
        }
    }

    #[test]
    fn other_layouts_are_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, der) = ca_and_crl(100, 42);
        let pem = crate::pki::pem::to_pem(crate::pki::pem::X509_CRL, &der);
        let layouts = [
            ("crlf", pem.replace('\n', "\r\n")),
            (
                "joined",
                pem.replacen('\n', "", 3)
                    .replacen("-----BEGIN X509 CRL-----", "-----BEGIN X509 CRL-----\n", 1),
            ),
            ("text-before", format!("Certificate Revocation List\n{pem}")),
        ];
        for (name, text) in layouts {
            let path = tmp.path().join(name);
            std::fs::write(&path, &text).unwrap();
            assert!(sparse_fields(&path).is_none(), "{name}");
            // Still this CA's CRL, read whole.
            let read = read_crl_file(&path, &ca, Depth::Header).unwrap();
            assert_eq!(read.ok().map(|r| r.number), Some(Some(42)), "{name}");
        }
        let path = tmp.path().join("der");
        std::fs::write(&path, &der).unwrap();
        assert!(sparse_fields(&path).is_none());
        assert_eq!(
            read_crl_file(&path, &ca, Depth::Header).unwrap().ok().map(|r| r.number),
            Some(Some(42))
        );
    }

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
