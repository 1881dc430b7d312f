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
            _ => Err(format!("unknown profile {s:?} (use server, client or code-signing)")),
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
    /// Parses `dns:…`, `ip:…`, `email:…`, `uri:…`, or a bare value classified by its shape
    /// (an IP address, something with `@`, something with `://`, else a DNS name).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] for an empty or malformed value.
    pub fn parse(text: &str) -> Result<Self, CaError> {
        let text = text.trim();
        let (kind, value) = match text.split_once(':') {
            Some((k @ ("dns" | "ip" | "email" | "uri" | "DNS" | "IP"), v)) => (Some(k.to_ascii_lowercase()), v),
            _ => (None, text),
        };
        if value.is_empty() {
            return Err(CaError::invalid("san", format!("{text:?} has no value")));
        }
        let bad = |why: &str| CaError::invalid("san", format!("{text:?} {why}"));
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
        match kind.as_str() {
            "ip" => value.parse().map(Self::Ip).map_err(|_| bad("is not an IP address")),
            "email" if value.contains('@') && !value.contains(char::is_whitespace) => Ok(Self::Email(value.into())),
            "email" => Err(bad("is not an e-mail address")),
            "uri" if value.contains(':') && !value.contains(char::is_whitespace) => Ok(Self::Uri(value.into())),
            "uri" => Err(bad("is not a URI")),
            _ => {
                let name = value.trim_end_matches('.').to_ascii_lowercase();
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name.split('.').enumerate().all(|(i, label)| {
                        (i == 0 && label == "*")
                            || (!label.is_empty()
                                && label.len() <= 63
                                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                                && !label.starts_with('-')
                                && !label.ends_with('-'))
                    });
                if ok {
                    Ok(Self::Dns(name))
                } else {
                    Err(bad("is not a valid DNS name"))
                }
            }
        }
    }

    pub(crate) fn to_rcgen(&self) -> Result<SanType, CaError> {
        let ia5 = |s: &str| {
            s.to_string()
                .try_into()
                .map_err(|_| CaError::invalid("san", format!("{s:?} is not ASCII")))
        };
        Ok(match self {
            Self::Dns(d) => SanType::DnsName(ia5(d)?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
            Self::Email(e) => SanType::Rfc822Name(ia5(e)?),
            Self::Uri(u) => SanType::URI(ia5(u)?),
        })
    }
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
        ] {
            assert!(SubjectAltName::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
