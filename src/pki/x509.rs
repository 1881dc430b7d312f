//! The X.509 vocabulary every part of Tessera speaks: serial numbers ([`Serial`]), subject
//! alternative names ([`SubjectAltName`]), revocation reasons ([`RevocationReason`]), and the
//! two text forms facts are shown in ([`hex`], [`rfc3339`]).
//!
//! A leaf module: it depends on nothing else in the crate, so `pki`, `ca`, `sign`, `channel` and
//! the file utilities can all use it without a cycle.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use time::OffsetDateTime;

/// Lowercase hex without separators (`[0x0a, 0xff]` → `0aff`).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of an even number of hex digits (either case); `None` for anything else (an odd
/// count, any other character). Strict: never drops a digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 == 1 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

/// RFC 3339 form of a time (`2030-01-31T12:00:00Z`; falls back to `time`'s default format, which
/// cannot fail, for a time RFC 3339 cannot express).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A certificate serial number (RFC 5280 §4.1.2.2): the content octets of the serial INTEGER,
/// big-endian, without leading zero octets (one zero octet for the serial 0).
///
/// - [`Display`](fmt::Display): lowercase hex of those octets, as `ca list` and `ca show` print
///   it and `ca revoke` takes it (`0a1b…`, always an even number of digits).
/// - [`FromStr`]: hex digits in either case, optionally separated by colons (`3F:9A:0C`), with
///   any number of leading zeros and an odd number of digits (`a1b` is `0a1b`). Refused: an
///   empty serial, any other character, more than 20 octets once leading zeros are dropped.
/// - serde: the same hex string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The most octets a serial may have (RFC 5280 §4.1.2.2).
    pub const MAX_OCTETS: usize = 20;

    /// The serial whose INTEGER has these content octets (leading zero octets are dropped; no
    /// length limit, so a certificate from elsewhere can always be shown).
    pub fn from_octets(octets: &[u8]) -> Self {
        let start = octets
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(octets.len().saturating_sub(1));
        let significant = octets.get(start..).unwrap_or_default();
        if significant.is_empty() {
            Self(vec![0])
        } else {
            Self(significant.to_vec())
        }
    }

    /// A fresh random serial for a new certificate: 16 octets, at least 120 bits of entropy,
    /// positive (first octet 0x01..=0x7f, so it never needs a sign octet and is never shortened).
    ///
    /// # Errors
    /// [`RandomFailed`] when the system random source fails.
    pub fn random() -> Result<Self, RandomFailed> {
        let mut octets = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut octets).map_err(|_| RandomFailed)?;
        octets[0] = (octets[0] & 0x7f).max(1);
        Ok(Self(octets.to_vec()))
    }

    /// The serial's octets, big-endian, without leading zero octets.
    pub fn as_octets(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl PartialEq<str> for Serial {
    fn eq(&self, other: &str) -> bool {
        other.parse::<Self>().is_ok_and(|o| o == *self)
    }
}

impl PartialEq<&str> for Serial {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Serial {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

/// The system random source failed (no serial could be drawn).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomFailed;

/// Why a text is not a serial number (see [`Serial`]'s [`FromStr`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SerialError {
    /// No digits at all.
    #[error("the serial number is empty")]
    Empty,
    /// A character other than a hex digit or a colon.
    #[error("\"{text}\" is not a serial number: {} is not a hex digit", describe(*character))]
    NotHex {
        /// The text given.
        text: String,
        /// The first offending character.
        character: char,
    },
    /// More than [`Serial::MAX_OCTETS`] octets once leading zeros are dropped.
    #[error("\"{text}\" is not a serial number: it is longer than 20 octets (40 hex digits)")]
    TooLong {
        /// The text given.
        text: String,
    },
}

impl FromStr for Serial {
    type Err = SerialError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() {
            return Err(SerialError::Empty);
        }
        if let Some(character) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(SerialError::NotHex {
                text: text.into(),
                character,
            });
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 2 * Self::MAX_OCTETS {
            return Err(SerialError::TooLong { text: text.into() });
        }
        let padded = if significant.len() % 2 == 1 {
            format!("0{significant}")
        } else {
            significant.to_string()
        };
        // Every character was checked to be a hex digit above.
        let octets = from_hex(&padded).unwrap_or_default();
        Ok(Self::from_octets(&octets))
    }
}

impl serde::Serialize for Serial {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Serial {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A character as messages name it: `'x'` when it is visible ASCII, else its code point
/// (`U+001B`), never raw.
fn describe(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// Why a certificate is revoked: the CRLReason codes of RFC 5280 §5.3.1, named as `ca revoke
/// --reason` takes them and CRL listings show them (`key-compromise`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given (code 0; a CRL omits the reason code then).
    Unspecified,
    /// The subject's private key is (suspected) compromised (1).
    KeyCompromise,
    /// The CA's key is (suspected) compromised (2).
    CaCompromise,
    /// The subject's name or affiliation changed (3).
    AffiliationChanged,
    /// A new certificate replaces this one (4).
    Superseded,
    /// The certificate is no longer needed (5).
    CessationOfOperation,
    /// Temporarily on hold (6).
    CertificateHold,
    /// A delta CRL's removal of a held certificate (8); only ever read from CRLs.
    RemoveFromCrl,
    /// The privilege granted by the certificate was withdrawn (9).
    PrivilegeWithdrawn,
    /// An attribute authority's key is compromised (10); only ever read from CRLs.
    AaCompromise,
}

impl RevocationReason {
    /// Every reason a CA may give (`ca revoke --reason`), in RFC 5280 order. `remove-from-crl`
    /// and `aa-compromise` are not among them: they are only read from CRLs.
    pub const ALL: [Self; 8] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 §5.3.1 reason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::RemoveFromCrl => 8,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }

    /// The reason with this code; `None` for the unassigned 7 and codes above 10.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Unspecified,
            1 => Self::KeyCompromise,
            2 => Self::CaCompromise,
            3 => Self::AffiliationChanged,
            4 => Self::Superseded,
            5 => Self::CessationOfOperation,
            6 => Self::CertificateHold,
            8 => Self::RemoveFromCrl,
            9 => Self::PrivilegeWithdrawn,
            10 => Self::AaCompromise,
            _ => return None,
        })
    }

    /// The reason a CRL entry's code stands for, as listings show it: an absent, unassigned or
    /// unknown code is [`RevocationReason::Unspecified`].
    pub fn from_crl_code(code: Option<u8>) -> Self {
        code.and_then(Self::from_code).unwrap_or(Self::Unspecified)
    }

    /// The name (`key-compromise`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::CaCompromise => "ca-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::CertificateHold => "certificate-hold",
            Self::RemoveFromCrl => "remove-from-crl",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
            Self::AaCompromise => "aa-compromise",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One of [`RevocationReason::ALL`] by name, ignoring case and punctuation (`key-compromise`,
/// `keyCompromise`, `KEY_COMPROMISE`); the error lists the names.
impl FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|r| r.name().replace('-', "") == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.name()).collect();
                format!("unknown revocation reason {s:?} (use one of: {})", names.join(", "))
            })
    }
}

impl serde::Serialize for RevocationReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for RevocationReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One subject alternative name (RFC 5280 §4.2.1.6), shown as `dns:…`, `ip:…`, `email:…`,
/// `uri:…` (and, for names only read from certificates from elsewhere, `dirname:…`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// A DNS name (`dns:host.example`), possibly a wildcard (`*.example`).
    Dns(String),
    /// An IP address (`ip:127.0.0.1`, `ip:::1`).
    Ip(IpAddr),
    /// An e-mail address (`email:a@example.org`).
    Email(String),
    /// A URI (`uri:spiffe://example.org/svc`).
    Uri(String),
    /// A name Tessera only reads, never issues, held as shown: a directory name
    /// (`dirname:CN=…`), or an iPAddress of a length no address has (`ip:` and its octets,
    /// as a name constraint shows them). [`SubjectAltName::parse`] never makes one.
    Other(String),
}

/// A subject alternative name that [`SubjectAltName::parse`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidSan {
    /// What is wrong, naming the text: `"dns:a..b" is not a valid DNS name: label 2 is empty`.
    pub reason: String,
}

impl SubjectAltName {
    /// Parses `dns:…`, `ip:…`, `email:…`, `uri:…` (the type prefix in any case), or a bare
    /// value classified by its shape (an IP address, something with `://`, something with `@`,
    /// else a DNS name), and checks that the value is valid for its type (see
    /// [`SubjectAltName::check`]).
    ///
    /// # Errors
    /// [`InvalidSan`] for an empty value or one that is not valid for its type, saying why:
    /// `"dns:a..b" is not a valid DNS name: label 2 is empty`.
    pub fn parse(text: &str) -> Result<Self, InvalidSan> {
        let text = text.trim();
        let (kind, value) = match text.split_once(':') {
            Some((k, v)) if ["dns", "ip", "email", "uri"].contains(&k.to_ascii_lowercase().as_str()) => {
                (Some(k.to_ascii_lowercase()), v)
            }
            _ => (None, text),
        };
        if value.is_empty() {
            return Err(InvalidSan {
                reason: format!("\"{text}\" has no value"),
            });
        }
        let kind = kind.unwrap_or_else(|| {
            if value.parse::<IpAddr>().is_ok() {
                "ip".into()
            } else if value.contains("://") {
                "uri".into()
            } else if value.contains('@') {
                "email".into()
            } else {
                "dns".into()
            }
        });
        Self::check(&kind, value).map_err(|why| InvalidSan {
            reason: format!("\"{text}\" {why}"),
        })
    }

    /// Checks `value` as a name of `kind` (`dns`, `ip`, `email` or `uri`) and returns it
    /// normalised: DNS names and e-mail domains in lower case without a trailing dot, URI
    /// schemes in lower case.
    ///
    /// - dNSName (RFC 5280 §4.2.1.6, RFC 1034 §3.5, RFC 5890): ASCII letters, digits and
    ///   hyphens in labels of 1 to 63 characters that neither start nor end with a hyphen, at
    ///   most 253 characters; a wildcard `*` only as the whole leftmost label, before at least
    ///   one other. Internationalised names are given as A-labels (`xn--…`).
    /// - rfc822Name: an RFC 5322 addr-spec in ASCII, `local@domain`: a dot-atom local part
    ///   (letters, digits, ``!#$%&'*+-/=?^_`{|}~`` and single dots inside), a DNS domain.
    /// - uniformResourceIdentifier: an absolute RFC 3986 URI (`scheme:rest`), only the
    ///   characters RFC 3986 §2 allows (percent-encode others), `%` followed by two hex digits.
    /// - iPAddress: an IPv4 or IPv6 address.
    ///
    /// # Errors
    /// Why it is not valid, as the end of a sentence that names it: `is not a valid DNS name:
    /// label 2 is empty`. Characters are named by code point (`U+001B`), never quoted raw.
    pub fn check(kind: &str, value: &str) -> Result<Self, String> {
        match kind {
            "ip" => value
                .parse()
                .map(Self::Ip)
                .map_err(|_| "is not an IP address".to_string()),
            "email" => check_email(value)
                .map(Self::Email)
                .map_err(|why| format!("is not a valid e-mail address: {why}")),
            "uri" => check_uri(value)
                .map(Self::Uri)
                .map_err(|why| format!("is not a valid URI: {why}")),
            _ => check_dns(value, true)
                .map(Self::Dns)
                .map_err(|why| format!("is not a valid DNS name: {why}")),
        }
    }

    /// A name as [`Display`](fmt::Display) showed it (`dns:…`, `ip:…`, `email:…`, `uri:…`,
    /// `dirname:…`), taken back as it is: no normalisation, no check beyond the type prefix and
    /// an IP address's syntax. For names read back from a store; people's input goes through
    /// [`SubjectAltName::parse`].
    ///
    /// # Errors
    /// [`InvalidSan`] for a text without one of those type prefixes.
    pub fn from_shown(text: &str) -> Result<Self, InvalidSan> {
        let bad = || InvalidSan {
            reason: format!("\"{text}\" is not a subject alternative name as Tessera shows one"),
        };
        let (kind, value) = text.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "dns" => Self::Dns(value.into()),
            "ip" => value.parse().map_or_else(|_| Self::Other(text.into()), Self::Ip),
            "email" => Self::Email(value.into()),
            "uri" => Self::Uri(value.into()),
            "dirname" => Self::Other(text.into()),
            _ => return Err(bad()),
        })
    }

    /// The type prefix: `dns`, `ip`, `email`, `uri` or `dirname`.
    pub fn kind(&self) -> &str {
        match self {
            Self::Dns(_) => "dns",
            Self::Ip(_) => "ip",
            Self::Email(_) => "email",
            Self::Uri(_) => "uri",
            Self::Other(shown) => shown.split_once(':').map_or("", |(kind, _)| kind),
        }
    }

    /// `names` in their order, without the repeats (after normalisation, see
    /// [`SubjectAltName::check`]); the second list holds each name that was repeated.
    pub fn dedup(names: impl IntoIterator<Item = Self>) -> (Vec<Self>, Vec<Self>) {
        let mut unique: Vec<Self> = Vec::new();
        let mut repeated: Vec<Self> = Vec::new();
        for name in names {
            if unique.contains(&name) {
                if !repeated.contains(&name) {
                    repeated.push(name);
                }
            } else {
                unique.push(name);
            }
        }
        (unique, repeated)
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(d) => write!(f, "dns:{d}"),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Email(e) => write!(f, "email:{e}"),
            Self::Uri(u) => write!(f, "uri:{u}"),
            Self::Other(shown) => f.write_str(shown),
        }
    }
}

/// Compares with a name as shown (`dns:a.test`), exactly: `Dns("a.test") == "dns:a.test"`.
impl PartialEq<str> for SubjectAltName {
    fn eq(&self, other: &str) -> bool {
        match (self, other.split_once(':')) {
            (Self::Other(shown), _) => shown == other,
            (Self::Ip(ip), Some(("ip", value))) => ip.to_string() == value,
            (Self::Dns(v), Some(("dns", value)))
            | (Self::Email(v), Some(("email", value)))
            | (Self::Uri(v), Some(("uri", value))) => v == value,
            _ => false,
        }
    }
}

impl PartialEq<&str> for SubjectAltName {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl serde::Serialize for SubjectAltName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// As [`SubjectAltName::from_shown`]: what was serialised comes back unchanged.
impl<'de> serde::Deserialize<'de> for SubjectAltName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_shown(&text).map_err(serde::de::Error::custom)
    }
}

/// A DNS name (see [`SubjectAltName::check`]), lower case, without its trailing dot.
fn check_dns(value: &str, wildcard: bool) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "character {} is not ASCII (give an internationalised name as its A-label, xn--…)",
            describe(c)
        ));
    }
    let name = value.strip_suffix('.').unwrap_or(value).to_ascii_lowercase();
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err(format!("it is {} characters long, more than 253", name.len()));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (index, label) in labels.iter().enumerate() {
        let number = index + 1;
        if *label == "*" {
            if index != 0 || !wildcard {
                return Err("a wildcard * may only be the whole leftmost label".into());
            }
            if labels.len() < 2 {
                return Err("a wildcard * must be followed by a domain (*.example.org)".into());
            }
            continue;
        }
        if label.is_empty() {
            return Err(format!("label {number} is empty"));
        }
        if label.len() > 63 {
            return Err(format!(
                "label {number} is {} characters long, more than 63",
                label.len()
            ));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!(
                "character {} is not a letter, digit or hyphen (RFC 1034 §3.5)",
                describe(c)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {number} starts or ends with a hyphen"));
        }
    }
    Ok(name)
}

/// The characters of an RFC 5322 `atext`, besides letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// An e-mail address (see [`SubjectAltName::check`]), its domain in lower case.
fn check_email(value: &str) -> Result<String, String> {
    let Some((local, domain)) = value.split_once('@') else {
        return Err("it has no @ (give local@domain)".into());
    };
    if local.starts_with('"') {
        return Err("a quoted local part is not supported".into());
    }
    if local.is_empty() {
        return Err("the part before @ is empty".into());
    }
    if local.len() > 64 {
        return Err(format!(
            "the part before @ is {} characters long, more than 64",
            local.len()
        ));
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || ATEXT_SPECIALS.contains(*c)))
    {
        return Err(format!(
            "character {} is not allowed before @ (RFC 5322 §3.2.3: letters, digits, dots and {ATEXT_SPECIALS})",
            describe(c)
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before @ starts or ends with a dot, or has two in a row".into());
    }
    if domain.starts_with('[') {
        return Err("a domain literal ([…]) is not supported".into());
    }
    let domain = check_dns(domain, false).map_err(|why| format!("the domain after @: {why}"))?;
    Ok(format!("{local}@{domain}"))
}

/// The characters RFC 3986 §2 allows in a URI, besides letters, digits and `%`.
const URI_SPECIALS: &str = "-._~:/?#[]@!$&'()*+,;=";

/// An absolute URI (see [`SubjectAltName::check`]), its scheme in lower case.
fn check_uri(value: &str) -> Result<String, String> {
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '%' || URI_SPECIALS.contains(*c)))
    {
        return Err(format!(
            "character {} is not allowed in a URI (RFC 3986 §2: percent-encode it)",
            describe(c)
        ));
    }
    let bytes = value.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'%' {
            let hex = bytes.get(at + 1..at + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Err("a % is not followed by two hex digits (RFC 3986 §2.1)".into());
            }
        }
    }
    let Some((scheme, rest)) = value.split_once(':') else {
        return Err("it has no scheme (an absolute URI such as https://host/path, RFC 5280 §4.2.1.6)".into());
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!(
            "the scheme \"{scheme}\" is not a letter followed by letters, digits, +, - or . (RFC 3986 §3.1)"
        ));
    }
    if rest.is_empty() {
        return Err("nothing follows the scheme".into());
    }
    Ok(format!("{}:{rest}", scheme.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn hex_and_rfc3339() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x0a, 0xff, 0x00]), "0aff00");
        assert_eq!(from_hex("0aFF00"), Some(vec![0x0a, 0xff, 0x00]));
        assert_eq!(from_hex(""), Some(vec![]));
        for bad in ["0", "0g", "0a1", " 0a", "0a:ff", "é0"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
        assert_eq!(
            rfc3339(time::macros::datetime!(2030-01-31 12:00:00 UTC)),
            "2030-01-31T12:00:00Z"
        );
    }

    #[test]
    fn serials_parse_as_the_cli_always_took_them() {
        for (typed, shown) in [
            ("0a1b", "0a1b"),
            ("a1b", "0a1b"),
            ("0A:1B", "0a1b"),
            ("00:0a:1b", "0a1b"),
            ("000", "00"),
            ("0", "00"),
            ("3:f9a", "3f9a"),
            ("80ff", "80ff"),
            ("0080ff", "80ff"),
        ] {
            let serial: Serial = typed.parse().unwrap();
            assert_eq!(serial.to_string(), shown, "{typed}");
            // Display round-trips.
            assert_eq!(shown.parse::<Serial>().unwrap(), serial);
            assert!(serial == typed && serial == shown, "{typed}");
        }
        let twenty = "7f".repeat(20);
        assert_eq!(twenty.parse::<Serial>().unwrap().as_octets().len(), 20);
        // Leading zeros do not count towards the 20 octets.
        assert!(format!("0000{twenty}").parse::<Serial>().is_ok());
    }

    #[test]
    fn every_bad_serial_is_refused_with_the_cli_message() {
        for (typed, message) in [
            ("", "the serial number is empty"),
            (":", "the serial number is empty"),
            ("0x1f", "\"0x1f\" is not a serial number: 'x' is not a hex digit"),
            ("1f 2e", "\"1f 2e\" is not a serial number: U+0020 is not a hex digit"),
            ("1g", "\"1g\" is not a serial number: 'g' is not a hex digit"),
            (
                "ab\u{1b}",
                "\"ab\u{1b}\" is not a serial number: U+001B is not a hex digit",
            ),
            ("é", "\"é\" is not a serial number: U+00E9 is not a hex digit"),
        ] {
            let err = typed.parse::<Serial>().unwrap_err();
            assert_eq!(err.to_string(), message, "{typed:?}");
        }
        let long = format!("1{}", "00".repeat(20));
        assert!(matches!(long.parse::<Serial>(), Err(SerialError::TooLong { .. })));
        assert_eq!(
            long.parse::<Serial>().unwrap_err().to_string(),
            format!("\"{long}\" is not a serial number: it is longer than 20 octets (40 hex digits)")
        );
    }

    #[test]
    fn serials_from_octets_drop_leading_zeros_and_serde_as_hex() {
        assert_eq!(Serial::from_octets(&[0, 0, 0x0a]).as_octets(), [0x0a]);
        assert_eq!(Serial::from_octets(&[0, 0]).as_octets(), [0]);
        assert_eq!(Serial::from_octets(&[]).as_octets(), [0]);
        assert_eq!(Serial::from_octets(&[0, 0x80]).to_string(), "80");
        let serial: Serial = "0a1b".parse().unwrap();
        let json = serde_json::to_string(&serial).unwrap();
        assert_eq!(json, "\"0a1b\"");
        assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), serial);
        assert!(serde_json::from_str::<Serial>("\"0a1z\"").is_err());
        assert!(serde_json::from_str::<Serial>("\"\"").is_err());
    }

    #[test]
    fn random_serials_are_positive_16_octets_and_distinct() {
        let a = Serial::random().unwrap();
        let b = Serial::random().unwrap();
        assert_ne!(a, b);
        for serial in [a, b] {
            assert_eq!(serial.as_octets().len(), 16);
            assert!((0x01..=0x7f).contains(&serial.as_octets()[0]));
            assert_eq!(serial.to_string().parse::<Serial>().unwrap(), serial);
        }
    }

    #[test]
    fn reasons_round_trip_by_name_code_and_serde() {
        for reason in RevocationReason::ALL {
            assert_eq!(reason.name().parse::<RevocationReason>().unwrap(), reason);
            assert_eq!(RevocationReason::from_code(reason.code()), Some(reason));
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.name()));
            assert_eq!(serde_json::from_str::<RevocationReason>(&json).unwrap(), reason);
        }
        assert_eq!(
            "keyCompromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        let err = "stolen".parse::<RevocationReason>().unwrap_err();
        assert!(err.starts_with("unknown revocation reason \"stolen\" (use one of: unspecified, key-compromise"));
        // Read from CRLs, never given by a CA.
        for (code, name) in [(8, "remove-from-crl"), (10, "aa-compromise")] {
            let reason = RevocationReason::from_code(code).unwrap();
            assert_eq!(reason.name(), name);
            assert!(name.parse::<RevocationReason>().is_err());
        }
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(RevocationReason::from_crl_code(Some(7)), RevocationReason::Unspecified);
        assert_eq!(RevocationReason::from_crl_code(None), RevocationReason::Unspecified);
        assert_eq!(
            RevocationReason::from_crl_code(Some(200)),
            RevocationReason::Unspecified
        );
    }

    #[test]
    fn bare_values_are_classified() {
        assert_eq!(
            SubjectAltName::parse("example.org").unwrap(),
            SubjectAltName::Dns("example.org".into())
        );
        assert_eq!(
            SubjectAltName::parse("127.0.0.1").unwrap(),
            SubjectAltName::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            SubjectAltName::parse("::1").unwrap(),
            SubjectAltName::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            SubjectAltName::parse("a@b.org").unwrap(),
            SubjectAltName::Email("a@b.org".into())
        );
        assert_eq!(
            SubjectAltName::parse("spiffe://x/y").unwrap(),
            SubjectAltName::Uri("spiffe://x/y".into())
        );
        assert_eq!(SubjectAltName::parse("ip:::1").unwrap().to_string(), "ip:::1");
        assert_eq!(
            SubjectAltName::parse("dns:*.Example.org").unwrap().to_string(),
            "dns:*.example.org"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "dns:",
            "ip:300.1.1.1",
            "dns:a..b",
            "dns:-a.b",
            "email:nobody",
            "dns:a b",
            "dns:a_b.test",
            "dns:*",
            "dns:a.*.b",
            "dns:b\u{fc}cher.de",
            "dns:a\u{1b}.test",
            &format!("dns:{}.test", "a".repeat(64)),
            &format!("dns:{}", ["a"; 127].join(".") + ".ab"),
            "email:a\u{1b}b@x.org",
            "email:a b@x.org",
            "email:.a@x.org",
            "email:a@",
            "email:\"a\"@x.org",
            "email:a@[10.0.0.1]",
            "email:a@b_c.org",
            "uri:x://a\u{1b}[2Jb",
            "uri:x://a\u{202e}b",
            "uri:https://a b",
            "uri:https://a/%g0",
            "uri:https://a/%",
            "uri:1a:b",
            "uri:x:",
            "uri:no-scheme",
            "dirname:CN=x",
        ] {
            assert!(SubjectAltName::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn good_values_are_normalised() {
        for (good, shown) in [
            ("dns:WWW.Example.ORG.", "dns:www.example.org"),
            ("dns:xn--bcher-kva.example", "dns:xn--bcher-kva.example"),
            ("email:First.Last+tag@Example.ORG", "email:First.Last+tag@example.org"),
            ("email:a!#$%&'*+-/=?^_`{|}~@x.org", "email:a!#$%&'*+-/=?^_`{|}~@x.org"),
            (
                "uri:HTTPS://Example.org/a%20b?q=1#f",
                "uri:https://Example.org/a%20b?q=1#f",
            ),
            (
                "URI:urn:uuid:123e4567-e89b-12d3-a456-426614174000",
                "uri:urn:uuid:123e4567-e89b-12d3-a456-426614174000",
            ),
            ("DNS:a.test", "dns:a.test"),
            ("Email:a@b.test", "email:a@b.test"),
        ] {
            assert_eq!(SubjectAltName::parse(good).unwrap().to_string(), shown, "{good}");
        }
    }

    #[test]
    fn shown_names_round_trip_unchanged() {
        for shown in [
            "dns:Odd.Case.example",
            "ip:::1",
            "ip:10.0.0.1",
            "email:A@B.example",
            "uri:x:y",
            "dirname:CN=a, O=b",
            "ip:10.0.0.0/8",
        ] {
            let name = SubjectAltName::from_shown(shown).unwrap();
            assert_eq!(name.to_string(), shown);
            assert!(name == shown);
            assert!(name != "dns:elsewhere.test" && name != "");
            let json = serde_json::to_string(&name).unwrap();
            assert_eq!(serde_json::from_str::<SubjectAltName>(&json).unwrap(), name);
        }
        assert_eq!(SubjectAltName::from_shown("dirname:CN=a").unwrap().kind(), "dirname");
        for bad in ["", "dns", "ftp:x", "DNS:a.test", "dirname"] {
            assert!(SubjectAltName::from_shown(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeats_are_dropped_after_normalisation() {
        let names = [
            "a.test",
            "A.TEST",
            "dns:a.test.",
            "ip:::1",
            "ip:0:0::1",
            "email:x@B.test",
            "email:x@b.test",
        ]
        .map(|n| SubjectAltName::parse(n).unwrap());
        let (unique, repeated) = SubjectAltName::dedup(names);
        let shown: Vec<String> = unique.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["dns:a.test", "ip:::1", "email:x@b.test"]);
        assert_eq!(repeated.len(), 3);
    }

    #[test]
    fn messages_name_characters_by_code_point() {
        assert_eq!(
            SubjectAltName::parse("uri:x://a\u{1b}b").unwrap_err().reason,
            "\"uri:x://a\u{1b}b\" is not a valid URI: character U+001B is not allowed in a URI (RFC 3986 §2: \
             percent-encode it)"
        );
    }
}
