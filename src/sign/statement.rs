//! The signed statement: what a module is (hash algorithm, digest, length, logical name), when it
//! was signed, and by whom, under the fixed context `tessera/module-signature/v1`. Its DER
//! encoding is canonical: decoding re-encodes and compares, so one statement has one byte string.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::SignError;
use super::der::{self, DerError, Reader};
use super::digest::HashAlgorithm;
use super::keys::KeyId;
use crate::pki::hex;

/// The domain-separation context, the first field of every statement (inside the signed bytes).
pub const CONTEXT: &str = "tessera/module-signature/v1";
/// The statement format version.
pub const STATEMENT_VERSION: u64 = 1;
/// The longest logical module name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;
/// The largest module length a statement may state (2^63 - 1, so it fits an `i64` file offset).
pub const MAX_MODULE_LEN: u64 = i64::MAX as u64;

/// Who signed: the SHA-256 of the signer's DER certificate, or a raw Ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerId {
    /// SHA-256 of the signer's certificate (DER), as `ca show` prints its fingerprint.
    Certificate([u8; 32]),
    /// The 32-byte Ed25519 public key of a raw-key signer.
    RawKey([u8; 32]),
}

impl SignerId {
    /// A short description: `certificate sha256:…` or `key id …`.
    pub fn describe(&self) -> String {
        match self {
            Self::Certificate(hash) => format!("certificate sha256:{}", hex(hash)),
            Self::RawKey(key) => format!("key id {}", KeyId::of(key)),
        }
    }
}

/// The statement a signer signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The hash algorithm of `digest`.
    pub hash: HashAlgorithm,
    /// The digest of the module's bytes.
    pub digest: Vec<u8>,
    /// The module's length in bytes.
    pub length: u64,
    /// The module's logical name.
    pub name: String,
    /// The signing time (whole seconds, UTC).
    pub signed_at: OffsetDateTime,
    /// The signer.
    pub signer: SignerId,
}

/// Checks a logical module name: 1 to 255 bytes of UTF-8, no control characters.
///
/// # Errors
/// [`SignError::InvalidName`] saying what is wrong.
pub fn check_name(name: &str) -> Result<(), SignError> {
    let invalid = |reason| SignError::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 255 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    Ok(())
}

impl Statement {
    /// The canonical DER encoding: the exact bytes that are signed.
    ///
    /// ```text
    /// ModuleStatement ::= SEQUENCE {
    ///   context    UTF8String,          -- "tessera/module-signature/v1"
    ///   version    INTEGER,             -- 1
    ///   hash       OBJECT IDENTIFIER,   -- id-sha3-256 or id-sha3-512
    ///   digest     OCTET STRING,
    ///   length     INTEGER,             -- 0 .. 2^63-1
    ///   name       UTF8String,          -- 1..255 bytes, no control characters
    ///   signedAt   GeneralizedTime,     -- YYYYMMDDHHMMSSZ
    ///   signer     CHOICE { certificateSha256 [0] IMPLICIT OCTET STRING (32),
    ///                       rawEd25519Key     [1] IMPLICIT OCTET STRING (32) } }
    /// ```
    pub fn to_der(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(160 + self.name.len());
        der::write(&mut body, der::UTF8_STRING, CONTEXT.as_bytes());
        der::write_u64(&mut body, STATEMENT_VERSION);
        der::write(&mut body, der::OID, self.hash.oid());
        der::write(&mut body, der::OCTET_STRING, &self.digest);
        der::write_u64(&mut body, self.length);
        der::write(&mut body, der::UTF8_STRING, self.name.as_bytes());
        der::write(
            &mut body,
            der::GENERALIZED_TIME,
            generalized_time(self.signed_at).as_bytes(),
        );
        match &self.signer {
            SignerId::Certificate(hash) => der::write(&mut body, 0x80, hash),
            SignerId::RawKey(key) => der::write(&mut body, 0x81, key),
        }
        let mut out = Vec::with_capacity(body.len() + 4);
        der::write(&mut out, der::SEQUENCE, &body);
        out
    }

    /// Decodes a statement, accepting only its canonical encoding and in-range fields.
    ///
    /// # Errors
    /// [`SignError::MalformedBundle`] naming the first problem.
    pub fn from_der(bytes: &[u8], what: &str) -> Result<Self, SignError> {
        let bad = |reason: String| SignError::malformed(what, format!("statement: {reason}"));
        let malformed = |error: DerError| bad(error.to_string());
        let mut outer = Reader::new(bytes);
        let body = outer.read(der::SEQUENCE).map_err(malformed)?;
        outer.finish().map_err(malformed)?;
        let mut r = Reader::new(body);
        let context = r.read(der::UTF8_STRING).map_err(malformed)?;
        if context != CONTEXT.as_bytes() {
            return Err(bad("not a tessera module statement (wrong context)".into()));
        }
        let version = r.read_u64().map_err(malformed)?;
        if version != STATEMENT_VERSION {
            return Err(bad(format!("unsupported version {version}")));
        }
        let oid = r.read(der::OID).map_err(malformed)?;
        let hash = HashAlgorithm::from_oid(oid).ok_or_else(|| bad("unsupported hash algorithm".into()))?;
        let digest = r.read(der::OCTET_STRING).map_err(malformed)?;
        if digest.len() != hash.output_len() {
            return Err(bad(format!(
                "digest is {} bytes, {hash} needs {}",
                digest.len(),
                hash.output_len()
            )));
        }
        let length = r.read_u64().map_err(malformed)?;
        if length > MAX_MODULE_LEN {
            return Err(bad(format!("module length {length} is out of range")));
        }
        let name = r.read(der::UTF8_STRING).map_err(malformed)?;
        let name = std::str::from_utf8(name).map_err(|_| bad("name is not UTF-8".into()))?;
        check_name(name).map_err(|e| bad(e.to_string()))?;
        let time = r.read(der::GENERALIZED_TIME).map_err(malformed)?;
        let signed_at = parse_generalized_time(time).ok_or_else(|| bad("bad signing time".into()))?;
        let signer = match r.peek() {
            Some(0x80) => SignerId::Certificate(
                fixed32(r.read(0x80).map_err(malformed)?)
                    .ok_or_else(|| bad("certificate hash is not 32 bytes".into()))?,
            ),
            Some(0x81) => SignerId::RawKey(
                fixed32(r.read(0x81).map_err(malformed)?).ok_or_else(|| bad("public key is not 32 bytes".into()))?,
            ),
            _ => return Err(bad("missing or unknown signer".into())),
        };
        r.finish().map_err(malformed)?;
        let statement = Self {
            hash,
            digest: digest.to_vec(),
            length,
            name: name.to_string(),
            signed_at,
            signer,
        };
        if statement.to_der() != bytes {
            return Err(bad("not in canonical DER form".into()));
        }
        Ok(statement)
    }
}

fn fixed32(bytes: &[u8]) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).ok()
}

/// `YYYYMMDDHHMMSSZ` in UTC, whole seconds.
pub(crate) fn generalized_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_generalized_time(bytes: &[u8]) -> Option<OffsetDateTime> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.len() != 15 || !text.ends_with('Z') || !text.get(..14)?.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(num(6..8)?).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(num(8..10)?).ok()?,
        u8::try_from(num(10..12)?).ok()?,
        u8::try_from(num(12..14)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Truncates a time to whole seconds in UTC (what a statement can hold).
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Statement {
        Statement {
            hash: HashAlgorithm::Sha3_256,
            digest: vec![0xab; 32],
            length: 1234,
            name: "firmware.bin".into(),
            signed_at: time::macros::datetime!(2030-01-02 03:04:05 UTC),
            signer: SignerId::Certificate([7; 32]),
        }
    }

    #[test]
    fn round_trips_and_is_canonical() {
        let s = sample();
        let der = s.to_der();
        assert_eq!(Statement::from_der(&der, "t").unwrap(), s);
        assert!(der.windows(CONTEXT.len()).any(|w| w == CONTEXT.as_bytes()));
        let mut raw = s.clone();
        raw.signer = SignerId::RawKey([9; 32]);
        raw.hash = HashAlgorithm::Sha3_512;
        raw.digest = vec![1; 64];
        assert_eq!(Statement::from_der(&raw.to_der(), "t").unwrap(), raw);
    }

    #[test]
    fn wrong_context_digest_length_and_trailing_bytes_are_refused() {
        let mut der = sample().to_der();
        der.push(0);
        assert!(Statement::from_der(&der, "t").is_err());
        let mut s = sample();
        s.digest = vec![0; 31];
        assert!(Statement::from_der(&s.to_der(), "t").is_err());
        let good = sample().to_der();
        let pos = good.windows(7).position(|w| w == b"tessera").unwrap();
        let mut other = good.clone();
        other[pos] = b'T';
        assert!(
            Statement::from_der(&other, "t")
                .unwrap_err()
                .to_string()
                .contains("wrong context")
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("lib/mod.so").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn generalized_time_round_trips() {
        let t = time::macros::datetime!(1999-12-31 23:59:59 UTC);
        assert_eq!(generalized_time(t), "19991231235959Z");
        assert_eq!(parse_generalized_time(b"19991231235959Z"), Some(t));
        assert_eq!(parse_generalized_time(b"19991331235959Z"), None);
        assert_eq!(parse_generalized_time(b"1999123123595Z"), None);
    }
}
