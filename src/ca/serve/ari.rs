//! ACME Renewal Information (ARI, RFC 9773): the identifier of a certificate, the window in
//! which its holder should renew it, and the `renewalInfo` response.
//!
//! A client asks `GET {renewalInfo}/{CertID}` ([`CertId`]: the certificate's Authority Key
//! Identifier and serial number, §4.1) and gets `{"suggestedWindow":{"start","end"}}` with a
//! `Retry-After` saying when to ask again (§4.2, §4.3). A new order may name the certificate it
//! `replaces` by the same identifier (§5).
//!
//! The window ([`suggested_window`]) follows one rule, from the certificate alone:
//! - a certificate in good standing: from 2/3 to 5/6 of its lifetime (`notBefore` to
//!   `notAfter`), so a client renews with a sixth of the lifetime left at the latest, and clients
//!   spread their renewals over a sixth of it;
//! - a revoked certificate: a window that ended an hour before `now` (two hours long), so a
//!   client renews at once (§4.2: a window in the past means "renew now").

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::ParsedExtension;

use super::problem::Problem;
use crate::pki::Serial;

/// The longest Authority Key Identifier accepted in a [`CertId`], in octets (SHA-1 identifiers
/// are 20, SHA-256 ones 32).
pub const MAX_KEY_IDENTIFIER_OCTETS: usize = 64;

/// The longest serial accepted in a [`CertId`], in octets: RFC 5280's 20 plus a leading zero.
pub const MAX_SERIAL_OCTETS: usize = Serial::MAX_OCTETS + 1;

/// The shortest and longest `Retry-After` that [`RenewalInfo::retry_after`] suggests.
pub const RETRY_AFTER_BOUNDS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(6 * 3600));

/// A certificate's ARI identifier (RFC 9773 §4.1): `base64url(keyIdentifier) "."
/// base64url(serial)`, where keyIdentifier is the octets of the certificate's Authority Key
/// Identifier extension and serial the content octets of its serialNumber INTEGER (a leading
/// zero octet kept), both base64url without padding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertId {
    /// The Authority Key Identifier's keyIdentifier octets (the issuing CA's key identifier).
    pub key_identifier: Vec<u8>,
    /// The serialNumber's DER content octets (minimal two's complement, positive).
    pub serial_octets: Vec<u8>,
}

impl CertId {
    /// Parses a CertID as it appears in a `renewalInfo` URL or a `replaces` field.
    ///
    /// # Errors
    /// `malformed` if it is not two non-empty base64url parts (no padding) joined by one `.`, the
    /// key identifier is longer than [`MAX_KEY_IDENTIFIER_OCTETS`], or the serial is not a
    /// minimally encoded positive INTEGER of at most [`MAX_SERIAL_OCTETS`].
    pub fn parse(text: &str) -> Result<CertId, Problem> {
        let bad = |what: &str| Problem::malformed(format!("the ARI certificate identifier {what} (RFC 9773 §4.1)"));
        let Some((key_identifier, serial)) = text.split_once('.') else {
            return Err(bad("has no `.` between its key identifier and serial"));
        };
        if key_identifier.is_empty() || serial.is_empty() {
            return Err(bad("has an empty part"));
        }
        let decode = |part: &str, name: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| bad(&format!("has a {name} that is not base64url without padding")))
        };
        let key_identifier = decode(key_identifier, "key identifier")?;
        let serial_octets = decode(serial, "serial")?;
        if key_identifier.len() > MAX_KEY_IDENTIFIER_OCTETS {
            return Err(bad(&format!(
                "has a key identifier longer than {MAX_KEY_IDENTIFIER_OCTETS} octets"
            )));
        }
        check_serial(&serial_octets).map_err(|why| bad(&format!("has a serial that {why}")))?;
        Ok(CertId {
            key_identifier,
            serial_octets,
        })
    }

    /// The identifier of a DER certificate.
    ///
    /// # Errors
    /// `malformed` if `der` is not a certificate, has no Authority Key Identifier with a
    /// keyIdentifier, or a serial [`CertId::parse`] would refuse.
    pub fn from_certificate(der: &[u8]) -> Result<CertId, Problem> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| Problem::malformed("the certificate is not valid DER"))?;
        let key_identifier = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| {
                Problem::malformed("the certificate has no Authority Key Identifier, which ARI needs (RFC 9773 §4.1)")
            })?;
        let serial_octets = cert.raw_serial().to_vec();
        check_serial(&serial_octets)
            .map_err(|why| Problem::malformed(format!("the certificate's serial {why} (RFC 9773 §4.1)")))?;
        Ok(CertId {
            key_identifier,
            serial_octets,
        })
    }

    /// The serial number, as the store keys certificates.
    pub fn serial(&self) -> Serial {
        Serial::from_octets(&self.serial_octets)
    }
}

impl fmt::Display for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&self.key_identifier),
            URL_SAFE_NO_PAD.encode(&self.serial_octets)
        )
    }
}

/// Why `octets` is not the content of a positive, minimally encoded DER INTEGER that fits a
/// serial number.
fn check_serial(octets: &[u8]) -> Result<(), String> {
    match octets {
        [] => Err("is empty".into()),
        [first, ..] if first & 0x80 != 0 => Err("is negative".into()),
        [0x00, second, ..] if second & 0x80 == 0 => Err("has a superfluous leading zero octet".into()),
        [0x00] => Err("is zero".into()),
        _ if octets.len() > MAX_SERIAL_OCTETS => Err(format!("is longer than {MAX_SERIAL_OCTETS} octets")),
        _ => Ok(()),
    }
}

/// A suggested renewal window (RFC 9773 §4.2): renew at a time picked at random in
/// `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Start of the window (whole seconds, UTC).
    pub start: OffsetDateTime,
    /// End of the window: after `start`.
    pub end: OffsetDateTime,
}

/// The window in which the holder of a certificate valid from `not_before` to `not_after`
/// should renew it (the rule in the module docs): 2/3 to 5/6 of the lifetime, or, if
/// `revoked`, from two hours to one hour before `now`. Times are truncated to whole seconds;
/// the end is always at least a second after the start.
pub fn suggested_window(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    revoked: bool,
    now: OffsetDateTime,
) -> RenewalWindow {
    let (start, end) = if revoked {
        (now - time::Duration::hours(2), now - time::Duration::hours(1))
    } else {
        let lifetime = (not_after - not_before).max(time::Duration::ZERO);
        (not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6)
    };
    let start = whole_seconds(start);
    let end = whole_seconds(end).max(start + time::Duration::SECOND);
    RenewalWindow { start, end }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t)
}

/// A `renewalInfo` response (RFC 9773 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalInfo {
    /// The suggested window.
    pub window: RenewalWindow,
    /// A page explaining the window (`explanationURL`), if the server has one.
    pub explanation_url: Option<String>,
}

impl RenewalInfo {
    /// The response for a certificate ([`suggested_window`]).
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime, revoked: bool, now: OffsetDateTime) -> Self {
        RenewalInfo {
            window: suggested_window(not_before, not_after, revoked, now),
            explanation_url: None,
        }
    }

    /// The JSON body: `{"suggestedWindow":{"start":"…","end":"…"}[,"explanationURL":"…"]}`,
    /// times in RFC 3339 (UTC, `Z`).
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Window {
            start: String,
            end: String,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "suggestedWindow")]
            suggested_window: Window,
            #[serde(rename = "explanationURL", skip_serializing_if = "Option::is_none")]
            explanation_url: Option<&'a str>,
        }
        let rfc3339 = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let body = Body {
            suggested_window: Window {
                start: rfc3339(self.window.start),
                end: rfc3339(self.window.end),
            },
            explanation_url: self.explanation_url.as_deref(),
        };
        // Strings only: serializing cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// How long the client should wait before asking again (the `Retry-After` header, §4.3): a
    /// quarter of the window, so that a client polling at that pace asks several times within
    /// it, bounded by [`RETRY_AFTER_BOUNDS`] (a minute to six hours).
    pub fn retry_after(&self) -> Duration {
        let quarter = (self.window.end - self.window.start) / 4;
        let quarter = Duration::try_from(quarter).unwrap_or(Duration::ZERO);
        quarter.clamp(RETRY_AFTER_BOUNDS.0, RETRY_AFTER_BOUNDS.1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair, SerialNumber};
    use time::macros::datetime;

    use super::*;
    use crate::ca::serve::problem::ProblemType;

    #[test]
    fn rfc_9773_example_identifier() {
        // RFC 9773 §4.1: AKI 69:88:5B:…:D4, serial 00:87:65:43:21.
        let id = CertId::parse("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(
            id.key_identifier,
            [
                0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE,
                0x01, 0xC8, 0xD4
            ]
        );
        assert_eq!(id.serial_octets, [0x00, 0x87, 0x65, 0x43, 0x21]);
        assert_eq!(id.to_string(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        assert_eq!(id.serial(), Serial::from_octets(&[0x87, 0x65, 0x43, 0x21]));
    }

    fn issued(serial: &[u8], aki: bool) -> (Vec<u8>, Vec<u8>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_identifier_method = KeyIdMethod::PreSpecified(vec![0xAB; 20]);
        let issuer = Issuer::from_params(&ca, &ca_key);
        let mut leaf = CertificateParams::new(vec!["a.example.test".to_string()]).unwrap();
        leaf.serial_number = Some(SerialNumber::from(serial.to_vec()));
        leaf.use_authority_key_identifier_extension = aki;
        let der = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap()
            .der()
            .to_vec();
        (der, vec![0xAB; 20])
    }

    #[test]
    fn identifier_of_a_certificate() {
        let (der, ski) = issued(&[0x87, 0x65, 0x43, 0x21], true);
        let id = CertId::from_certificate(&der).unwrap();
        assert_eq!(id.key_identifier, ski);
        // The DER INTEGER needs a leading zero before 0x87: it is part of the identifier.
        assert_eq!(id.serial_octets, [0x00, 0x87, 0x65, 0x43, 0x21]);
        assert_eq!(
            id.to_string(),
            format!("{}.AIdlQyE", URL_SAFE_NO_PAD.encode([0xAB; 20]))
        );
        assert_eq!(CertId::parse(&id.to_string()).unwrap(), id);

        let (der, _) = issued(&[0x01, 0x02], true);
        assert_eq!(CertId::from_certificate(&der).unwrap().serial_octets, [0x01, 0x02]);

        let (der, _) = issued(&[0x01, 0x02], false);
        let problem = CertId::from_certificate(&der).unwrap_err();
        assert!(problem.detail.contains("no Authority Key Identifier"), "{problem}");
        assert_eq!(
            CertId::from_certificate(b"junk").unwrap_err().kind,
            ProblemType::Malformed
        );
    }

    #[test]
    fn malformed_identifiers_are_refused() {
        let cases = [
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQAIdlQyE", "no `.`"),
            ("", "no `.`"),
            (".AIdlQyE", "empty part"),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.", "empty part"),
            (".", "empty part"),
            (
                "aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE",
                "key identifier that is not base64url",
            ),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE=", "serial that is not base64url"),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdl+yE", "serial that is not base64url"),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE.AA", "serial that is not base64url"),
            ("a/hb.AIdlQyE", "key identifier that is not base64url"),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.h2VDIQ", "serial that is negative"),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AAE", "superfluous leading zero"),
            ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AA", "is zero"),
        ];
        for (text, needle) in cases {
            let problem = CertId::parse(text).unwrap_err();
            assert_eq!(problem.kind, ProblemType::Malformed);
            assert!(problem.detail.contains(needle), "{text:?}: {problem}");
        }
        let long_serial = URL_SAFE_NO_PAD.encode([0x01; 22]);
        assert!(
            CertId::parse(&format!("AQ.{long_serial}"))
                .unwrap_err()
                .detail
                .contains("longer than 21 octets")
        );
        let long_key = URL_SAFE_NO_PAD.encode([0x01; 65]);
        assert!(
            CertId::parse(&format!("{long_key}.AQ"))
                .unwrap_err()
                .detail
                .contains("longer than 64 octets")
        );
        assert!(CertId::parse(&format!("{}.AQ", URL_SAFE_NO_PAD.encode([0x01; 64]))).is_ok());
    }

    #[test]
    fn the_window_is_two_thirds_to_five_sixths_of_the_lifetime() {
        let not_before = datetime!(2030-01-01 0:00 UTC);
        let not_after = datetime!(2030-01-31 0:00 UTC); // 30 days
        let now = datetime!(2030-01-02 12:34:56.789 UTC);
        let window = suggested_window(not_before, not_after, false, now);
        assert_eq!(window.start, datetime!(2030-01-21 0:00 UTC));
        assert_eq!(window.end, datetime!(2030-01-26 0:00 UTC));
        // A one-day ACME certificate: from 16 h to 20 h.
        let day = suggested_window(not_before, not_before + time::Duration::DAY, false, now);
        assert_eq!(day.start, datetime!(2030-01-01 16:00 UTC));
        assert_eq!(day.end, datetime!(2030-01-01 20:00 UTC));
        // Whole seconds, and never empty, even for a lifetime of a few seconds or a negative one.
        let odd = suggested_window(not_before, not_before + time::Duration::seconds(7), false, now);
        assert_eq!(
            (odd.start, odd.end),
            (
                not_before + time::Duration::seconds(4),
                not_before + time::Duration::seconds(5)
            )
        );
        let backwards = suggested_window(not_after, not_before, false, now);
        assert!(backwards.end > backwards.start);
    }

    #[test]
    fn a_revoked_certificate_should_be_renewed_now() {
        let now = datetime!(2030-01-02 12:34:56.789 UTC);
        let window = suggested_window(
            datetime!(2030-01-01 0:00 UTC),
            datetime!(2030-03-01 0:00 UTC),
            true,
            now,
        );
        assert_eq!(window.start, datetime!(2030-01-02 10:34:56 UTC));
        assert_eq!(window.end, datetime!(2030-01-02 11:34:56 UTC));
        assert!(window.end < now);
    }

    #[test]
    fn the_response_body_and_retry_after() {
        let now = datetime!(2030-01-02 0:00 UTC);
        let mut info = RenewalInfo::new(
            datetime!(2030-01-01 0:00 UTC),
            datetime!(2030-01-31 0:00 UTC),
            false,
            now,
        );
        assert_eq!(
            String::from_utf8(info.to_json()).unwrap(),
            r#"{"suggestedWindow":{"start":"2030-01-21T00:00:00Z","end":"2030-01-26T00:00:00Z"}}"#
        );
        // A five-day window: a quarter is capped at six hours.
        assert_eq!(info.retry_after(), Duration::from_secs(6 * 3600));
        info.explanation_url = Some("https://ca.example.test/ari".into());
        let value: serde_json::Value = serde_json::from_slice(&info.to_json()).unwrap();
        assert_eq!(value["explanationURL"], "https://ca.example.test/ari");
        // A one-day certificate: a four-hour window, polled every hour.
        let day = RenewalInfo::new(
            datetime!(2030-01-01 0:00 UTC),
            datetime!(2030-01-02 0:00 UTC),
            false,
            now,
        );
        assert_eq!(day.retry_after(), Duration::from_secs(3600));
        // A tiny window: at least a minute.
        let tiny = RenewalInfo::new(
            datetime!(2030-01-01 0:00 UTC),
            datetime!(2030-01-01 0:01 UTC),
            false,
            now,
        );
        assert_eq!(tiny.retry_after(), Duration::from_secs(60));
    }
}
