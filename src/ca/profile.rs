//! Certificate profiles: what each kind of certificate may do, and how the names a request
//! carries ([`SubjectAltName`], see `pki::x509`) go into a certificate.

use std::fmt;
use std::time::Duration;

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};

use super::CaError;
use crate::pki::{SubjectAltName, Usage};

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

/// The rcgen form of a name the CA puts in a certificate.
///
/// # Errors
/// [`CaError::InvalidRequest`] (field `san`) for a name that is not ASCII, or a directory name
/// (which Tessera never issues).
pub(crate) fn san_to_rcgen(name: &SubjectAltName) -> Result<SanType, CaError> {
    let ia5 = |s: &str| {
        s.to_string()
            .try_into()
            .map_err(|_| CaError::invalid("san", format!("\"{s}\" is not ASCII")))
    };
    Ok(match name {
        SubjectAltName::Dns(d) => SanType::DnsName(ia5(d)?),
        SubjectAltName::Ip(ip) => SanType::IpAddress(*ip),
        SubjectAltName::Email(e) => SanType::Rfc822Name(ia5(e)?),
        SubjectAltName::Uri(u) => SanType::URI(ia5(u)?),
        other => return Err(CaError::invalid("san", format!("Tessera does not issue {other}"))),
    })
}

impl From<crate::pki::InvalidSan> for CaError {
    fn from(e: crate::pki::InvalidSan) -> Self {
        Self::invalid("san", e.reason)
    }
}
