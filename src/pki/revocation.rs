//! Revocation by CRLs at O(log n) per certificate (RFC 5280 §6.3, as rustls-webpki 0.103
//! decides it).
//!
//! rustls-webpki verifies a CRL's signature, hashing the whole CRL, every time it consults it:
//! on every path it validates (rustls/webpki#81). Here a [`Crl`] is parsed once (by webpki itself,
//! so that exactly the CRLs webpki accepts are accepted), its entries are kept as a sorted index
//! of serial numbers into the CRL's own bytes, and the verdict on its signature is remembered per
//! issuer key. [`check_path`] then applies webpki's rules to a path webpki has verified without
//! revocation: for every certificate on it, the first CRL held that is authoritative for it
//! (same issuer name; the issuing distribution point's scope and URIs, as
//! `CertRevocationList::authoritative` in webpki), signed by the path's issuer key, not past
//! its nextUpdate, from an issuer whose key usage allows cRLSign, and the serial looked up by
//! binary search. No authoritative CRL: status unknown, allowed (webpki's
//! `UnknownStatusPolicy::Allow`, as `TrustStore` configured it).
//!
//! A store keeps each `Crl` behind an `Arc`: reloading CRLs builds new ones and replaces the
//! store, so a handshake sees either the old set or the new one, never a mix.

use std::fmt;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use rustls_pki_types::{SignatureVerificationAlgorithm, UnixTime};
use webpki::{BorrowedCertRevocationList, CertRevocationList, RevocationReason};

/// How many issuer keys a CRL remembers its signature verdict for (a CRL has one issuer; a
/// re-keyed CA with the same name makes two). Beyond that, verdicts are computed, not kept.
const REMEMBERED_KEYS: usize = 8;

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// [0] constructed: a DistributionPoint's distributionPoint, a DistributionPointName's fullName.
const CONTEXT_0: u8 = 0xa0;
/// [1] primitive: a DistributionPoint's reasons; an IDP's onlyContainsUserCerts.
const CONTEXT_1: u8 = 0x81;
/// [2] primitive: an IDP's onlyContainsCACerts.
const CONTEXT_2: u8 = 0x82;
/// [2] constructed: a DistributionPoint's cRLIssuer.
const CONTEXT_2_CONSTRUCTED: u8 = 0xa2;
/// [3] constructed: a TBSCertificate's extensions.
const CONTEXT_3: u8 = 0xa3;
/// GeneralName uniformResourceIdentifier, [6] IA5String.
const URI: u8 = 0x86;
/// id-ce-cRLDistributionPoints (2.5.29.31) and id-ce-keyUsage (2.5.29.15), OID contents.
const OID_CRL_DISTRIBUTION_POINTS: &[u8] = &[0x55, 0x1d, 0x1f];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// The cRLSign bit of KeyUsage (RFC 5280 §4.2.1.3).
const CRL_SIGN_BIT: usize = 6;

/// One CRL, parsed once: its bytes, where its parts are, its entries sorted by serial number,
/// and the verdicts on its signature by the issuer keys it was checked against.
pub(crate) struct Crl {
    der: Vec<u8>,
    /// The issuer Name's contents (no SEQUENCE header), as webpki compares it.
    issuer: Range<usize>,
    scope: Option<Scope>,
    next_update: UnixTime,
    /// tbsCertList (whole TLV), the signature AlgorithmIdentifier's contents, the signature bits.
    tbs: Range<usize>,
    algorithm: Range<usize>,
    signature: Range<usize>,
    /// Sorted by serial octets (stable: of two equal serials the later entry is found, as in
    /// webpki's map).
    entries: Vec<Entry>,
    verdicts: Mutex<Vec<Verdict>>,
}

/// The verdict on a CRL's signature by one issuer key (SubjectPublicKeyInfo contents).
type Verdict = (Box<[u8]>, Result<(), webpki::Error>);

/// A revoked certificate: where its serial's octets are in the CRL, and the reason.
#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    reason: Option<RevocationReason>,
}

/// An issuing distribution point (RFC 5280 §5.2.5) in the subset webpki accepts: a full name
/// (its URIs kept), onlyContainsUserCerts, onlyContainsCACerts.
struct Scope {
    only_user_certs: bool,
    only_ca_certs: bool,
    uris: Vec<Range<usize>>,
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("bytes", &self.der.len())
            .field("entries", &self.entries.len())
            .field("next_update", &self.next_update)
            .finish_non_exhaustive()
    }
}

/// A certificate on a path, as the revocation check needs it.
pub(crate) struct PathCert<'a> {
    /// The whole certificate.
    pub(crate) der: &'a [u8],
    /// Its issuer Name's contents (webpki's `Cert::issuer`).
    pub(crate) issuer: &'a [u8],
    /// Its serial number's octets (webpki's `Cert::serial`).
    pub(crate) serial: &'a [u8],
}

/// Why a path fails revocation: the certificate (index on the path, end entity 0) and webpki's
/// error for it; for a revocation, the CRL entry's reason code.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) index: usize,
    pub(crate) error: webpki::Error,
    pub(crate) reason: Option<RevocationReason>,
}

impl Crl {
    /// Parses a CRL (DER) as rustls-webpki does (`BorrowedCertRevocationList::from_der`, then
    /// every entry, as `to_owned` does), and indexes its entries.
    ///
    /// # Errors
    /// webpki's error for a CRL it would refuse (unsupported version, delta or indirect CRL, an
    /// unknown critical extension, a malformed entry, …).
    pub(crate) fn from_der(der: Vec<u8>) -> Result<Self, webpki::Error> {
        let base = der.as_ptr() as usize;
        let offset = |part: &[u8]| {
            let start = (part.as_ptr() as usize).wrapping_sub(base);
            start..start + part.len()
        };
        let parsed = BorrowedCertRevocationList::from_der(&der)?;
        let mut entries = Vec::new();
        for entry in &parsed {
            let entry = entry?;
            let at = offset(entry.serial_number);
            let (Ok(start), Ok(len)) = (u32::try_from(at.start), u32::try_from(at.len())) else {
                return Err(webpki::Error::BadDer);
            };
            entries.push(Entry {
                start,
                len,
                reason: entry.reason_code,
            });
        }
        let parsed = CertRevocationList::Borrowed(parsed);
        let issuer = offset(parsed.issuer());
        let idp = parsed.issuing_distribution_point().map(offset);
        drop(parsed);

        let mut outer = Reader::new(&der, 0..der.len());
        let list = outer.expect(SEQUENCE).ok_or(webpki::Error::BadDer)?;
        let mut list = Reader::new(&der, list);
        let tbs_start = list.pos;
        let tbs_value = list.expect(SEQUENCE).ok_or(webpki::Error::BadDer)?;
        let tbs = tbs_start..tbs_value.end;
        let algorithm = list.expect(SEQUENCE).ok_or(webpki::Error::BadDer)?;
        let bits = list.expect(BIT_STRING).ok_or(webpki::Error::BadDer)?;
        // webpki accepted it: the first octet (unused bits) is 0.
        let signature = bits.start.saturating_add(1).min(bits.end)..bits.end;

        let mut fields = Reader::new(&der, tbs_value);
        let _version = fields.any();
        let _signature = fields.any();
        let _issuer = fields.any();
        let _this_update = fields.any();
        let next_update = fields
            .any()
            .and_then(|(tag, value)| parse_time(tag, der.get(value)?))
            .ok_or(webpki::Error::BadDer)?;

        let scope = match idp {
            Some(idp) => Some(Scope::parse(&der, idp).ok_or(webpki::Error::MalformedExtensions)?),
            None => None,
        };
        let mut crl = Self {
            der,
            issuer,
            scope,
            next_update,
            tbs,
            algorithm,
            signature,
            entries,
            verdicts: Mutex::new(Vec::new()),
        };
        let der = &crl.der;
        crl.entries
            .sort_by(|a, b| entry_serial(der, a).cmp(entry_serial(der, b)));
        Ok(crl)
    }

    /// The issuer Name's contents (without its SEQUENCE header).
    pub(crate) fn issuer(&self) -> &[u8] {
        self.der.get(self.issuer.clone()).unwrap_or_default()
    }

    /// The CRL as given (DER).
    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// Looks a serial number (its INTEGER octets, compared exactly as webpki does) up by binary
    /// search: `Some(reason)` when the CRL lists it.
    pub(crate) fn find(&self, serial: &[u8]) -> Option<Option<RevocationReason>> {
        let after = self.entries.partition_point(|e| entry_serial(&self.der, e) <= serial);
        let entry = self.entries.get(after.checked_sub(1)?)?;
        (entry_serial(&self.der, entry) == serial).then_some(entry.reason)
    }

    /// Is this CRL authoritative for `cert` (webpki's `CertRevocationList::authoritative`)? The
    /// same issuer name, and when the CRL has an issuing distribution point: its scope admits
    /// the certificate's role, and if the certificate names CRL distribution points, one of
    /// them (without cRLIssuer or reasons) has a full-name URI the IDP lists too.
    fn authoritative(&self, cert: &PathCert<'_>, end_entity: bool) -> bool {
        if self.issuer() != cert.issuer {
            return false;
        }
        let Some(scope) = &self.scope else {
            return true;
        };
        if scope.only_ca_certs && end_entity || scope.only_user_certs && !end_entity {
            return false;
        }
        let Some(points) = extension(cert.der, OID_CRL_DISTRIBUTION_POINTS) else {
            return true;
        };
        let mut points = Reader::whole(points);
        let Some(list) = points.expect(SEQUENCE) else {
            return false;
        };
        let mut list = Reader::new(points.data, list);
        while let Some((tag, point)) = list.any() {
            if tag != SEQUENCE {
                continue;
            }
            let Some(uris) = full_name_uris(list.data, point) else {
                continue;
            };
            for uri in uris {
                if scope.uris.iter().any(|idp| self.der.get(idp.clone()) == Some(uri)) {
                    return true;
                }
            }
        }
        false
    }

    /// Checks the CRL's signature with the issuer key `spki` (SubjectPublicKeyInfo contents),
    /// once per key: the verdict is remembered. Errors as webpki's (its CRL variants).
    fn verify_signature(
        &self,
        algorithms: &[&dyn SignatureVerificationAlgorithm],
        spki: &[u8],
    ) -> Result<(), webpki::Error> {
        let remembered =
            |verdicts: &Vec<Verdict>| verdicts.iter().find(|(key, _)| **key == *spki).map(|(_, v)| v.clone());
        if let Some(verdict) = remembered(&self.verdicts.lock().unwrap_or_else(PoisonError::into_inner)) {
            return verdict;
        }
        // Hashed outside the lock: other handshakes go on meanwhile.
        let verdict = verify_signed_data(
            algorithms,
            spki,
            self.der.get(self.tbs.clone()).unwrap_or_default(),
            self.der.get(self.algorithm.clone()).unwrap_or_default(),
            self.der.get(self.signature.clone()).unwrap_or_default(),
        );
        let mut verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered(&verdicts).is_none() && verdicts.len() < REMEMBERED_KEYS {
            verdicts.push((spki.into(), verdict.clone()));
        }
        verdict
    }

    /// Checks the signature now with `spki` (e.g. a root's, when the CRL is loaded), so that no
    /// handshake pays for it.
    pub(crate) fn precheck(&self, algorithms: &[&dyn SignatureVerificationAlgorithm], spki: &[u8]) {
        let _verdict = self.verify_signature(algorithms, spki);
    }
}

impl Scope {
    /// An IssuingDistributionPoint (the extension's value) webpki has already accepted.
    fn parse(der: &[u8], idp: Range<usize>) -> Option<Self> {
        let mut outer = Reader::new(der, idp);
        let fields = outer.expect(SEQUENCE)?;
        let mut fields = Reader::new(der, fields);
        let mut scope = Self {
            only_user_certs: false,
            only_ca_certs: false,
            uris: Vec::new(),
        };
        while let Some((tag, value)) = fields.any() {
            match tag {
                CONTEXT_0 => {
                    let mut name = Reader::new(der, value);
                    if let Some((CONTEXT_0, names)) = name.any() {
                        let mut names = Reader::new(der, names);
                        while let Some((tag, value)) = names.any() {
                            if tag == URI {
                                scope.uris.push(value);
                            }
                        }
                    }
                }
                CONTEXT_1 => scope.only_user_certs = der.get(value) == Some(&[0xff][..]),
                CONTEXT_2 => scope.only_ca_certs = der.get(value) == Some(&[0xff][..]),
                _ => {}
            }
        }
        Some(scope)
    }
}

/// The URIs of a DistributionPoint's full name (`point`, the SEQUENCE's contents), or `None`
/// when webpki would skip the point: malformed, a cRLIssuer or reasons present, or no full name.
fn full_name_uris(data: &[u8], point: Range<usize>) -> Option<Vec<&[u8]>> {
    let mut fields = Reader::new(data, point);
    let (mut name, mut reasons, mut crl_issuer) = (None, None, None);
    while !fields.at_end() {
        let (tag, value) = fields.any()?;
        let slot = match tag {
            CONTEXT_0 => &mut name,
            CONTEXT_1 => &mut reasons,
            CONTEXT_2_CONSTRUCTED => &mut crl_issuer,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    if let Some(bits) = &reasons {
        bit_string_flags(data.get(bits.clone())?)?;
    }
    if reasons.is_some() || crl_issuer.is_some() {
        return None;
    }
    let mut name = Reader::new(data, name?);
    let (CONTEXT_0, names) = name.any()? else {
        return None;
    };
    let mut names = Reader::new(data, names);
    let mut uris = Vec::new();
    while let Some((tag, value)) = names.any() {
        if tag == URI {
            uris.push(data.get(value)?);
        }
    }
    Some(uris)
}

/// Checks revocation for a path webpki has verified (end entity first, then the intermediates;
/// `anchor_spki` is the trust anchor's SubjectPublicKeyInfo contents), as webpki's
/// `RevocationOptions::check` with depth `Chain`, unknown status allowed and nextUpdate
/// enforced: for each certificate, the first authoritative CRL, its signature by the
/// certificate's issuer, its nextUpdate, the issuer's cRLSign, then the serial.
///
/// # Errors
/// The first certificate that fails, with webpki's error (`CertRevoked`,
/// `InvalidCrlSignatureForPublicKey`, `CrlExpired`, `IssuerNotCrlSigner`, …).
pub(crate) fn check_path(
    crls: &[std::sync::Arc<Crl>],
    path: &[PathCert<'_>],
    anchor_spki: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    time: UnixTime,
) -> Result<(), Refused> {
    if crls.is_empty() {
        return Ok(());
    }
    for (index, cert) in path.iter().enumerate() {
        let refuse = |error| Refused {
            index,
            error,
            reason: None,
        };
        let Some(crl) = crls.iter().find(|crl| crl.authoritative(cert, index == 0)) else {
            continue;
        };
        let issuer = path.get(index + 1);
        let spki = match issuer {
            Some(issuer) => subject_public_key_info(issuer.der).ok_or_else(|| refuse(webpki::Error::BadDer))?,
            None => anchor_spki,
        };
        crl.verify_signature(algorithms, spki).map_err(refuse)?;
        if time >= crl.next_update {
            return Err(refuse(webpki::Error::CrlExpired {
                time,
                next_update: crl.next_update,
            }));
        }
        if let Some(issuer) = issuer {
            may_sign_crls(issuer.der).map_err(refuse)?;
        }
        if let Some(reason) = crl.find(cert.serial) {
            return Err(Refused {
                index,
                error: webpki::Error::CertRevoked,
                reason,
            });
        }
    }
    Ok(())
}

/// webpki's `KeyUsageMode::CrlSign.check`: without a key usage extension any use is allowed.
fn may_sign_crls(cert: &[u8]) -> Result<(), webpki::Error> {
    let Some(value) = extension(cert, OID_KEY_USAGE) else {
        return Ok(());
    };
    let mut value = Reader::whole(value);
    let bits = value.expect(BIT_STRING).ok_or(webpki::Error::BadDer)?;
    let raw = bit_string_flags(value.data.get(bits).unwrap_or_default()).ok_or(webpki::Error::BadDer)?;
    match raw.get(CRL_SIGN_BIT / 8) {
        Some(byte) if byte & (0x80 >> (CRL_SIGN_BIT % 8)) != 0 => Ok(()),
        _ => Err(webpki::Error::IssuerNotCrlSigner),
    }
}

/// A BIT STRING's contents checked as webpki's `der::bit_string_flags` does; the flag octets.
fn bit_string_flags(bits: &[u8]) -> Option<&[u8]> {
    let (&padding, raw) = bits.split_first()?;
    match (padding, raw.last()) {
        (8.., _) => None,
        (0, None) => Some(raw),
        (_, None) => None,
        (1..=7, Some(last)) if last & ((1u8 << padding) - 1) != 0 => None,
        (_, Some(_)) => Some(raw),
    }
}

/// webpki's `verify_signed_data` for a CRL: the algorithms whose signature identifier is the
/// CRL's, the first whose public-key identifier matches the key; errors mapped to the CRL
/// variants (`crl_signature_err`).
fn verify_signed_data(
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    spki: &[u8],
    data: &[u8],
    algorithm: &[u8],
    signature: &[u8],
) -> Result<(), webpki::Error> {
    let mut fields = Reader::whole(spki);
    let key_algorithm = fields.expect(SEQUENCE).ok_or(webpki::Error::BadDer)?;
    let key_bits = fields.expect(BIT_STRING).ok_or(webpki::Error::BadDer)?;
    let key_algorithm = spki.get(key_algorithm).unwrap_or_default();
    let key = match spki.get(key_bits).unwrap_or_default().split_first() {
        Some((0, key)) => key,
        _ => return Err(webpki::Error::BadDer),
    };
    let mut mismatched_key = false;
    for candidate in algorithms.iter().filter(|a| a.signature_alg_id().as_ref() == algorithm) {
        if candidate.public_key_alg_id().as_ref() != key_algorithm {
            mismatched_key = true;
            continue;
        }
        return candidate
            .verify_signature(key, data, signature)
            .map_err(|_| webpki::Error::InvalidCrlSignatureForPublicKey);
    }
    #[allow(deprecated)]
    Err(if mismatched_key {
        webpki::Error::UnsupportedCrlSignatureAlgorithmForPublicKey
    } else {
        webpki::Error::UnsupportedCrlSignatureAlgorithm
    })
}

/// The value (OCTET STRING contents) of a certificate's extension `oid` (an id-ce OID's contents),
/// if it has one.
pub(crate) fn extension<'a>(cert: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    let mut outer = Reader::whole(cert);
    let certificate = outer.expect(SEQUENCE)?;
    let mut certificate = Reader::new(cert, certificate);
    let tbs = certificate.expect(SEQUENCE)?;
    let mut fields = Reader::new(cert, tbs);
    while let Some((tag, value)) = fields.any() {
        if tag != CONTEXT_3 {
            continue;
        }
        let mut wrapper = Reader::new(cert, value);
        let list = wrapper.expect(SEQUENCE)?;
        let mut list = Reader::new(cert, list);
        while let Some((tag, value)) = list.any() {
            if tag != SEQUENCE {
                return None;
            }
            let mut ext = Reader::new(cert, value);
            let id = ext.expect(OID)?;
            if cert.get(id)? != oid {
                continue;
            }
            let mut next = ext.any()?;
            if next.0 == BOOLEAN {
                next = ext.any()?;
            }
            return (next.0 == OCTET_STRING).then(|| cert.get(next.1)).flatten();
        }
    }
    None
}

/// The SubjectPublicKeyInfo's contents (no SEQUENCE header) of a certificate (DER).
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let mut outer = Reader::whole(cert);
    let certificate = outer.expect(SEQUENCE)?;
    let mut certificate = Reader::new(cert, certificate);
    let tbs = certificate.expect(SEQUENCE)?;
    let mut fields = Reader::new(cert, tbs);
    // [0] version (absent in v1), serialNumber, signature, issuer, validity, subject.
    let (first, _) = fields.any()?;
    let before = if first == CONTEXT_0 { 5 } else { 4 };
    for _ in 0..before {
        fields.any()?;
    }
    let spki = fields.expect(SEQUENCE)?;
    cert.get(spki)
}

/// The octets of an entry's serial number.
fn entry_serial<'a>(der: &'a [u8], entry: &Entry) -> &'a [u8] {
    let start = entry.start as usize;
    der.get(start..start + entry.len as usize).unwrap_or_default()
}

/// A UTCTime or GeneralizedTime (`YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`; webpki has checked the form)
/// as a Unix time. UTCTime years below 50 are 20YY (RFC 5280 §4.1.2.5.1).
fn parse_time(tag: u8, value: &[u8]) -> Option<UnixTime> {
    let digits = |range: Range<usize>| -> Option<u32> {
        value
            .get(range)?
            .iter()
            .try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let (year, rest) = match tag {
        UTC_TIME => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        GENERALIZED_TIME => (digits(0..4)?, 4),
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(digits(rest..rest + 2)?).ok()?).ok()?;
    let day = u8::try_from(digits(rest + 2..rest + 4)?).ok()?;
    let hour = u8::try_from(digits(rest + 4..rest + 6)?).ok()?;
    let minute = u8::try_from(digits(rest + 6..rest + 8)?).ok()?;
    let second = u8::try_from(digits(rest + 8..rest + 10)?).ok()?;
    let at = time::Date::from_calendar_date(i32::try_from(year).ok()?, month, day)
        .ok()?
        .with_hms(hour, minute, second)
        .ok()?
        .assume_utc();
    Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at.unix_timestamp()).ok()?,
    )))
}

/// A DER reader over `data[range]` that hands out absolute ranges, with webpki's rules for
/// tags and lengths (no high tag numbers, definite minimal lengths of at most four octets).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], range: Range<usize>) -> Self {
        Self {
            data,
            pos: range.start,
            end: range.end.min(data.len()),
        }
    }

    fn whole(data: &'a [u8]) -> Self {
        Self::new(data, 0..data.len())
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn byte(&mut self) -> Option<u8> {
        if self.pos >= self.end {
            return None;
        }
        let byte = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    /// The next TLV: its tag and the range of its value.
    fn any(&mut self) -> Option<(u8, Range<usize>)> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let first = self.byte()?;
        let len = match first {
            n if n & 0x80 == 0 => usize::from(n),
            0x81..=0x84 => {
                let octets = usize::from(first & 0x7f);
                let mut len = 0usize;
                for _ in 0..octets {
                    len = (len << 8) | usize::from(self.byte()?);
                }
                let minimum = [0x80, 0x100, 0x1_0000, 0x100_0000].get(octets - 1).copied()?;
                if len < minimum {
                    return None;
                }
                len
            }
            _ => return None,
        };
        let start = self.pos;
        let end = start.checked_add(len).filter(|end| *end <= self.end)?;
        self.pos = end;
        Some((tag, start..end))
    }

    /// The next TLV if its tag is `tag`: the range of its value.
    fn expect(&mut self, tag: u8) -> Option<Range<usize>> {
        match self.any()? {
            (found, value) if found == tag => Some(value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Differential tests: every verification is asked twice, of Tessera's layer
    //! (`TrustStore::verify`) and of rustls-webpki's own CRL checking
    //! (`TrustStore::verify_with_webpki_revocation`), and the two answers must be identical.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use rcgen::{
        BasicConstraints, CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
        IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, RevocationReason as Reason, RevokedCertParams, SerialNumber,
    };
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::pki::testing::*;
    use crate::pki::{PkiError, TrustStore, Usage, VerifiedChain, VerifyRequest};

    const LEAF_DP: &str = "http://crl.example/leaf.crl";
    const OTHER_DP: &str = "http://crl.example/other.crl";

    /// A CRL by `ca` listing `serials` (key compromise), valid until `next_update`.
    fn crl(
        ca: &Ca,
        serials: &[&[u8]],
        idp: Option<CrlIssuingDistributionPoint>,
        next_update: OffsetDateTime,
    ) -> CertificateRevocationListDer<'static> {
        // rcgen signs CRLs only for issuers with cRLSign; the certificate is what verifiers see.
        let mut crl_signer = ca.params.clone();
        if !crl_signer.key_usages.contains(&KeyUsagePurpose::CrlSign) {
            crl_signer.key_usages.push(KeyUsagePurpose::CrlSign);
        }
        CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update,
            crl_number: SerialNumber::from(vec![0x01]),
            issuing_distribution_point: idp,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial.to_vec()),
                    revocation_time: datetime!(2030-02-01 0:00 UTC),
                    reason_code: Some(Reason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&crl_signer, &ca.key))
        .unwrap()
        .der()
        .clone()
    }

    /// Asks both ways; panics (naming `case`) unless the answers are identical.
    #[track_caller]
    fn both(
        store: &TrustStore,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        time: OffsetDateTime,
        case: &str,
    ) -> Result<VerifiedChain, PkiError> {
        let request = VerifyRequest::new(Usage::Server, time).with_name("example.com");
        let layer = store.verify(leaf, chain, &request);
        let webpki = store.verify_with_webpki_revocation(leaf, chain, &request);
        let shown = |r: &Result<VerifiedChain, PkiError>| format!("{:?}", r.as_ref().map(|c| c.path().to_vec()));
        assert_eq!(shown(&layer), shown(&webpki), "{case}: the layer and webpki differ");
        layer
    }

    fn idp(uri: &str, scope: Option<CrlScope>) -> CrlIssuingDistributionPoint {
        CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![uri.to_string()],
            },
            scope,
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Signer {
        Root,
        Intermediate,
    }

    #[derive(Clone, Copy, Debug)]
    enum Listed {
        Nothing,
        Leaf,
        Intermediate,
    }

    #[derive(Clone, Copy, Debug)]
    enum Idp {
        Absent,
        Matching,
        OtherUri,
        OnlyCa,
        OnlyUser,
    }

    /// Every combination of signer, entries, issuing distribution point, a distribution point
    /// in the certificates or not, the issuer's cRLSign, an expired CRL, a corrupted signature,
    /// and a second CRL of the same issuer before it: the layer decides as webpki does.
    #[test]
    fn the_layer_decides_as_webpki_on_generated_paths() {
        let root = Ca::root(ca_params("root"));
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        for with_dp in [false, true] {
            for crl_sign in [true, false] {
                let mut params = ca_params("intermediate");
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.serial_number = Some(SerialNumber::from(vec![0x42]));
                if !crl_sign {
                    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
                }
                if with_dp {
                    params.crl_distribution_points = vec![CrlDistributionPoint {
                        uris: vec![LEAF_DP.into()],
                    }];
                }
                let intermediate = root.intermediate(params);
                let mut leaf = leaf_params();
                if with_dp {
                    leaf.crl_distribution_points = vec![CrlDistributionPoint {
                        uris: vec![OTHER_DP.into(), LEAF_DP.into()],
                    }];
                }
                let leaf = intermediate.leaf(&leaf);
                let chain = [intermediate.der.clone()];
                for signer in [Signer::Root, Signer::Intermediate] {
                    for listed in [Listed::Nothing, Listed::Leaf, Listed::Intermediate] {
                        for scope in [Idp::Absent, Idp::Matching, Idp::OtherUri, Idp::OnlyCa, Idp::OnlyUser] {
                            for expired in [false, true] {
                                for corrupt in [false, true] {
                                    for shadowed in [false, true] {
                                        let ca = match signer {
                                            Signer::Root => &root,
                                            Signer::Intermediate => &intermediate,
                                        };
                                        let serials: &[&[u8]] = match listed {
                                            Listed::Nothing => &[&[0x07]],
                                            Listed::Leaf => &[&[0x07], &[0x01, 0x02, 0x03]],
                                            Listed::Intermediate => &[&[0x42]],
                                        };
                                        let idp = match scope {
                                            Idp::Absent => None,
                                            Idp::Matching => Some(idp(LEAF_DP, None)),
                                            Idp::OtherUri => Some(idp("http://crl.example/none.crl", None)),
                                            Idp::OnlyCa => Some(idp(LEAF_DP, Some(CrlScope::CaCertsOnly))),
                                            Idp::OnlyUser => Some(idp(LEAF_DP, Some(CrlScope::UserCertsOnly))),
                                        };
                                        let next_update = if expired {
                                            datetime!(2030-05-01 0:00 UTC)
                                        } else {
                                            datetime!(2030-12-01 0:00 UTC)
                                        };
                                        let mut der = crl(ca, serials, idp, next_update).to_vec();
                                        if corrupt {
                                            *der.last_mut().unwrap() ^= 0x01;
                                        }
                                        let mut store = store(&root.der);
                                        if shadowed {
                                            // webpki consults only the first authoritative CRL.
                                            store.add_crl(&crl(ca, &[], None, next_update), "first").unwrap();
                                        }
                                        store.add_crl(&CertificateRevocationListDer::from(der), "crl").unwrap();
                                        let case = format!(
                                            "dp {with_dp}, cRLSign {crl_sign}, {signer:?}, {listed:?}, {scope:?}, \
                                             expired {expired}, corrupt {corrupt}, shadowed {shadowed}"
                                        );
                                        let outcome = match both(&store, &leaf, &chain, NOW, &case) {
                                            Ok(_) => "trusted".to_string(),
                                            Err(e) => {
                                                format!("{e:?}").split([' ', '{', '(']).next().unwrap().to_string()
                                            }
                                        };
                                        *outcomes.entry(outcome).or_default() += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // The matrix reaches every kind of answer.
        for kind in ["trusted", "Revoked", "RevocationUnknown"] {
            assert!(outcomes.get(kind).copied().unwrap_or(0) > 10, "{outcomes:?}");
        }
    }

    #[test]
    fn a_revoked_leaf_and_a_revoked_intermediate_are_named() {
        let root = Ca::root(ca_params("root"));
        let mut params = ca_params("intermediate");
        params.serial_number = Some(SerialNumber::from(vec![0x42]));
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        let chain = [intermediate.der.clone()];
        let next = datetime!(2030-12-01 0:00 UTC);

        let mut by_root = store(&root.der);
        by_root.add_crl(&crl(&root, &[&[0x42]], None, next), "crl").unwrap();
        match both(&by_root, &leaf, &chain, NOW, "intermediate revoked") {
            Err(PkiError::Revoked { serial, reason }) => {
                assert_eq!(serial.to_string(), "42");
                assert_eq!(reason, crate::pki::RevocationReason::KeyCompromise);
            }
            other => panic!("expected the intermediate revoked, got {other:?}"),
        }
        let mut by_intermediate = store(&root.der);
        by_intermediate
            .add_crl(&crl(&intermediate, &[&[0x01, 0x02, 0x03]], None, next), "crl")
            .unwrap();
        match both(&by_intermediate, &leaf, &chain, NOW, "leaf revoked") {
            Err(PkiError::Revoked { serial, .. }) => assert_eq!(serial.to_string(), "010203"),
            other => panic!("expected the leaf revoked, got {other:?}"),
        }
    }

    /// Serial numbers are compared as the octets of their INTEGERs (leading zero octets
    /// included), as webpki does: revoked exactly when the CRL lists the certificate's octets.
    #[test]
    fn serials_compare_as_octets_leading_zeros_included() {
        let root = Ca::root(ca_params("root"));
        let next = datetime!(2030-12-01 0:00 UTC);
        let mut revocations = 0;
        for (cert_serial, listed) in [
            (&[0x00, 0x80, 0x01][..], &[0x00, 0x80, 0x01][..]),
            (&[0x00, 0x80, 0x01], &[0x80, 0x01]),
            (&[0x7f, 0x01], &[0x00, 0x7f, 0x01]),
            (&[0x01], &[0x01]),
            (&[0x01], &[0x00, 0x01]),
        ] {
            let mut params = leaf_params();
            params.serial_number = Some(SerialNumber::from(cert_serial.to_vec()));
            let leaf = root.leaf(&params);
            let list = crl(&root, &[&[0x05], listed, &[0xff, 0x01]], None, next);
            let mut store = store(&root.der);
            store.add_crl(&list, "crl").unwrap();
            let case = format!("certificate {cert_serial:02x?}, listed {listed:02x?}");
            let result = both(&store, &leaf, &[], NOW, &case);
            // What the DER says, read by x509-parser.
            let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
            let (_, parsed) = x509_parser::parse_x509_crl(&list).unwrap();
            let listed_octets = parsed
                .iter_revoked_certificates()
                .any(|r| r.raw_serial() == cert.raw_serial());
            assert_eq!(
                matches!(result, Err(PkiError::Revoked { .. })),
                listed_octets,
                "{case}: {result:?}"
            );
            revocations += usize::from(listed_octets);
        }
        assert!(revocations >= 2);
    }

    #[test]
    fn a_crl_of_another_issuer_or_key_is_not_taken() {
        let root = Ca::root(ca_params("root"));
        let other = Ca::root(ca_params("other root"));
        let impostor = Ca::root(ca_params("root"));
        let leaf = root.leaf(&leaf_params());
        let next = datetime!(2030-12-01 0:00 UTC);

        // Another issuer's CRL is not authoritative: the leaf it lists is still trusted.
        let mut store = store(&root.der);
        store
            .add_crl(&crl(&other, &[&[0x01, 0x02, 0x03]], None, next), "other")
            .unwrap();
        let _trusted = both(&store, &leaf, &[], NOW, "other issuer").unwrap();

        // The same name with another key: the signature fails, the status is unknown (refused).
        let mut store = crate::pki::testing::store(&root.der);
        store.add_crl(&crl(&impostor, &[], None, next), "impostor").unwrap();
        match both(&store, &leaf, &[], NOW, "impostor") {
            Err(PkiError::RevocationUnknown { reason }) => assert!(reason.contains("not validly signed"), "{reason}"),
            other => panic!("expected a bad CRL signature, got {other:?}"),
        }
        // The verdict on the signature is kept for the root's key (checked when loaded).
        assert_eq!(store.held_crls()[0].verdicts.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_expired_crl_is_refused_with_its_next_update() {
        let root = Ca::root(ca_params("root"));
        let leaf = root.leaf(&leaf_params());
        let mut store = store(&root.der);
        store
            .add_crl(&crl(&root, &[], None, datetime!(2030-05-31 0:00 UTC)), "crl")
            .unwrap();
        match both(&store, &leaf, &[], NOW, "expired") {
            Err(PkiError::RevocationUnknown { reason }) => assert!(reason.contains("2030-05-31"), "{reason}"),
            other => panic!("expected an expired CRL, got {other:?}"),
        }
        // One second before nextUpdate it is still good.
        let _trusted = both(&store, &leaf, &[], datetime!(2030-05-30 23:59:59 UTC), "fresh").unwrap();
    }

    #[test]
    fn signatures_are_checked_once_per_issuer_key() {
        let root = Ca::root(ca_params("root"));
        let intermediate = root.intermediate(ca_params("intermediate"));
        let leaf = intermediate.leaf(&leaf_params());
        let chain = [intermediate.der.clone()];
        let mut store = store(&root.der);
        store
            .add_crl(&crl(&intermediate, &[], None, datetime!(2030-12-01 0:00 UTC)), "crl")
            .unwrap();
        // Not a root's CRL: nothing known until its first use.
        assert!(store.held_crls()[0].verdicts.lock().unwrap().is_empty());
        for _ in 0..3 {
            let _trusted = both(&store, &leaf, &chain, NOW, "intermediate's CRL").unwrap();
        }
        let verdicts = store.held_crls()[0].verdicts.lock().unwrap();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(
            &*verdicts[0].0,
            subject_public_key_info(&intermediate.der).unwrap(),
            "kept for the intermediate's key"
        );
        assert_eq!(verdicts[0].1, Ok(()));
    }

    #[test]
    fn binary_search_finds_what_a_scan_finds() {
        let root = Ca::root(ca_params("root"));
        let serials: Vec<Vec<u8>> = (0u32..3000)
            .map(|n| {
                let n = n.wrapping_mul(2_654_435_761);
                let bytes = n.to_be_bytes();
                let mut serial = bytes[..1 + (n % 4) as usize].to_vec();
                serial[0] &= 0x7f;
                serial[0] |= 0x01;
                serial
            })
            .collect();
        let listed: Vec<&[u8]> = serials.iter().step_by(2).map(Vec::as_slice).collect();
        let der = crl(&root, &listed, None, datetime!(2030-12-01 0:00 UTC));
        let held = Crl::from_der(der.to_vec()).unwrap();
        let owned = webpki::OwnedCertRevocationList::from_der(&der).unwrap();
        let reference = webpki::CertRevocationList::Owned(owned);
        for serial in &serials {
            let expected = reference.find_serial(serial).unwrap().map(|e| e.reason_code);
            assert_eq!(held.find(serial), expected, "{serial:02x?}");
        }
        assert_eq!(held.find(&[]), None);
        assert_eq!(held.find(&[0xff; 30]), None);
    }

    #[test]
    fn times_read_as_webpki_reads_them() {
        let at = |tag, text: &str| parse_time(tag, text.as_bytes()).map(|t| t.as_secs());
        assert_eq!(at(UTC_TIME, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(at(UTC_TIME, "500101000000Z"), None, "1950: before the epoch");
        assert_eq!(at(UTC_TIME, "700101000000Z"), Some(0));
        assert_eq!(at(GENERALIZED_TIME, "20300601000000Z"), Some(1_906_502_400));
        assert_eq!(at(GENERALIZED_TIME, "2030060100000xZ"), None);
    }
}
