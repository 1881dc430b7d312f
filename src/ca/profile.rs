//! Certificate profiles: what each kind of certificate may do, and the subject alternative
//! names a request may carry.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};

use super::CaError;
use crate::pki::Usage;

/// The kinds of leaf certificate `ca issue` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// TLS server: digitalSignature, serverAuth.
    Server,
    /// TLS client: digitalSignature, clientAuth.
    Client,
    /// Module signing: digitalSignature, codeSigning only.
    CodeSigning,
}

impl Profile {
    /// The name used on command lines and in the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::CodeSigning => "code-signing",
        }
    }

    /// The verification usage that matches this profile.
    pub fn usage(self) -> Usage {
        match self {
            Self::Server => Usage::Server,
            Self::Client => Usage::Client,
            Self::CodeSigning => Usage::CodeSigning,
        }
    }

    /// The default lifetime: 90 days for TLS certificates, one year for code signing.
    pub fn default_lifetime(self) -> Duration {
        match self {
            Self::Server | Self::Client => Duration::from_secs(90 * 86_400),
            Self::CodeSigning => Duration::from_secs(365 * 86_400),
        }
    }

    pub(crate) fn key_usages(self) -> Vec<KeyUsagePurpose> {
        vec![KeyUsagePurpose::DigitalSignature]
    }

    pub(crate) fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Self::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Self::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Self::CodeSigning => vec![ExtendedKeyUsagePurpose::CodeSigning],
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Self::Server),
            "client" => Ok(Self::Client),
            "code-signing" | "codesigning" => Ok(Self::CodeSigning),
            _ => Err(format!("unknown profile \"{s}\" (use server, client or code-signing)")),
        }
    }
}

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// A DNS name (`dns:host.example`), possibly a wildcard (`*.example`).
    Dns(String),
    /// An IP address (`ip:127.0.0.1`, `ip:::1`).
    Ip(IpAddr),
    /// An e-mail address (`email:a@example.org`).
    Email(String),
    /// A URI (`uri:spiffe://example.org/svc`).
    Uri(String),
}

impl SubjectAltName {
    /// Parses `dns:…`, `ip:…`, `email:…`, `uri:…` (the type prefix in any case), or a bare
    /// value classified by its shape (an IP address, something with `://`, something with `@`,
    /// else a DNS name), and checks that the value is valid for its type (see
    /// [`SubjectAltName::check`]).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `san`) for an empty value or one that is not valid
    /// for its type, saying why: `"dns:a..b" is not a valid DNS name: label 2 is empty`.
    pub fn parse(text: &str) -> Result<Self, CaError> {
        let text = text.trim();
        let (kind, value) = match text.split_once(':') {
            Some((k, v)) if ["dns", "ip", "email", "uri"].contains(&k.to_ascii_lowercase().as_str()) => {
                (Some(k.to_ascii_lowercase()), v)
            }
            _ => (None, text),
        };
        if value.is_empty() {
            return Err(CaError::invalid("san", format!("\"{text}\" has no value")));
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
        Self::check(&kind, value).map_err(|why| CaError::invalid("san", format!("\"{text}\" {why}")))
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

    pub(crate) fn to_rcgen(&self) -> Result<SanType, CaError> {
        let ia5 = |s: &str| {
            s.to_string()
                .try_into()
                .map_err(|_| CaError::invalid("san", format!("\"{s}\" is not ASCII")))
        };
        Ok(match self {
            Self::Dns(d) => SanType::DnsName(ia5(d)?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
            Self::Email(e) => SanType::Rfc822Name(ia5(e)?),
            Self::Uri(u) => SanType::URI(ia5(u)?),
        })
    }
}

/// A character as messages name it: `'x'` when it is visible ASCII, else its code point.
fn describe(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", u32::from(c))
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

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(d) => write!(f, "dns:{d}"),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Email(e) => write!(f, "email:{e}"),
            Self::Uri(u) => write!(f, "uri:{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

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
        match SubjectAltName::parse("uri:x://a\u{1b}b") {
            Err(CaError::InvalidRequest { reason, .. }) => assert_eq!(
                reason,
                "\"uri:x://a\u{1b}b\" is not a valid URI: character U+001B is not allowed in a URI (RFC 3986 §2: \
                 percent-encode it)"
            ),
            other => panic!("{other:?}"),
        }
    }
}
