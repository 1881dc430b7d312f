//! The verified identity of a TLS peer and authorization by identity (`--allow NAME`).

use std::fmt;

use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::pki::CertificateInfo;

/// Who the peer is, as stated by its certificate. Only meaningful once the certificate has been
/// verified (the channel's verifiers run [`crate::pki::TrustStore::verify`] before a handshake
/// completes, so every identity a [`super::ChannelStream`] reports comes from a verified chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// Subject distinguished name.
    pub subject: String,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// Subject alternative names as `dns:…`, `ip:…`, `email:…`, `uri:…`.
    pub sans: Vec<String>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// SHA-256 fingerprint of the certificate, hex.
    pub sha256_fingerprint: String,
}

impl PeerIdentity {
    /// The identity stated by an end-entity certificate (DER).
    ///
    /// Returns `None` when the certificate cannot be parsed.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Option<Self> {
        CertificateInfo::from_der(der).ok().map(|info| Self::from_info(&info))
    }

    /// The identity stated by an inspected certificate.
    pub fn from_info(info: &CertificateInfo) -> Self {
        Self {
            common_name: common_name(&info.subject),
            subject: info.subject.clone(),
            sans: info.sans.clone(),
            serial: info.serial.clone(),
            sha256_fingerprint: info.sha256_fingerprint.clone(),
        }
    }

    /// The names this identity answers to for [`Authorization`]: the common name, every SAN
    /// value (`client1.example`) and every SAN in typed form (`dns:client1.example`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.common_name.as_deref().into_iter().chain(
            self.sans
                .iter()
                .flat_map(|san| [san.as_str(), san.split_once(':').map_or(san.as_str(), |(_, v)| v)]),
        )
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.common_name {
            Some(cn) => write!(f, "{cn}")?,
            None => write!(f, "{}", self.subject)?,
        }
        if !self.sans.is_empty() {
            write!(f, " [{}]", self.sans.join(", "))?;
        }
        write!(f, " serial {}", self.serial)
    }
}

/// Which verified peers may use the service: a list of names (common name or SAN, see
/// [`PeerIdentity::names`]). An empty list allows every peer whose certificate verifies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorization {
    allowed: Vec<String>,
}

impl Authorization {
    /// Allows every verified peer.
    pub fn any_verified() -> Self {
        Self::default()
    }

    /// Allows only peers that answer to one of `names` (compared exactly; DNS names ignore ASCII
    /// case).
    pub fn only(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            allowed: names.into_iter().map(Into::into).collect(),
        }
    }

    /// True when no allow list is in force.
    pub fn is_open(&self) -> bool {
        self.allowed.is_empty()
    }

    /// The names allowed.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Is this (verified) peer allowed?
    pub fn permits(&self, identity: &PeerIdentity) -> bool {
        self.is_open()
            || identity
                .names()
                .any(|name| self.allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(name)))
    }
}

/// The `CN=` value of an RFC 4514 style distinguished name.
fn common_name(subject: &str) -> Option<String> {
    subject
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("CN=").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> PeerIdentity {
        PeerIdentity {
            subject: "O=Tessera, CN=client1".into(),
            common_name: common_name("O=Tessera, CN=client1"),
            sans: vec!["dns:client1.example".into(), "email:ops@example.org".into()],
            serial: "01".into(),
            sha256_fingerprint: "00".into(),
        }
    }

    #[test]
    fn open_authorization_allows_any_verified_peer() {
        assert!(Authorization::any_verified().permits(&identity()));
    }

    #[test]
    fn allow_list_matches_common_name_and_sans() {
        let id = identity();
        assert_eq!(id.common_name.as_deref(), Some("client1"));
        assert!(Authorization::only(["client1"]).permits(&id));
        assert!(Authorization::only(["CLIENT1.example"]).permits(&id));
        assert!(Authorization::only(["dns:client1.example"]).permits(&id));
        assert!(Authorization::only(["ops@example.org"]).permits(&id));
        assert!(!Authorization::only(["client2"]).permits(&id));
        assert!(!Authorization::only(["client"]).permits(&id));
        assert!(!Authorization::only(["O=Tessera"]).permits(&id));
    }
}
