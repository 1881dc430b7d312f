//! The verified identity of a TLS peer and authorization by identity (`--allow NAME`).

use std::fmt;

use rustls_pki_types::CertificateDer;
use serde::Serialize;

use super::text::escape;
use crate::pki::{CertificateInfo, Serial, SubjectAltName, VerifiedChain};

/// Who the peer is, as stated by its certificate. Only meaningful once the certificate has been
/// verified (the channel's verifiers run [`crate::pki::TrustStore::verify`] before a handshake
/// completes, so every identity a [`super::ChannelStream`] reports comes from a verified chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// Subject distinguished name.
    pub subject: String,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// Subject alternative names (shown and serialised as `dns:…`, `ip:…`, `email:…`, `uri:…`).
    pub sans: Vec<SubjectAltName>,
    /// Serial number (shown and serialised as lowercase hex).
    pub serial: Serial,
    /// SHA-256 fingerprint of the certificate, hex.
    pub sha256_fingerprint: String,
}

impl PeerIdentity {
    /// The identity stated by an end-entity certificate (DER).
    ///
    /// The common name is the exact string value of the subject's one `CN` attribute (none when
    /// the subject has no `CN`, or several, or one that is not a string).
    ///
    /// Returns `None` when the certificate cannot be parsed.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Option<Self> {
        let (info, common_name) = CertificateInfo::with_common_name(der).ok()?;
        Some(Self::from_info(info, common_name))
    }

    /// The identity of a verified chain's end entity, from what [`TrustStore::verify`] read
    /// (no second parse).
    ///
    /// [`TrustStore::verify`]: crate::pki::TrustStore::verify
    pub(crate) fn from_verified(chain: &VerifiedChain) -> Self {
        Self::from_info(chain.end_entity().clone(), chain.common_name().map(str::to_string))
    }

    fn from_info(info: CertificateInfo, common_name: Option<String>) -> Self {
        Self {
            common_name,
            subject: info.subject,
            sans: info.sans,
            serial: info.serial,
            sha256_fingerprint: info.sha256_fingerprint,
        }
    }

    /// Does this identity answer to the allow-list entry `entry`? A typed entry (`dns:…`,
    /// `ip:…`, `email:…`, `uri:…`) matches only a SAN of that type; a bare entry matches the
    /// common name or a DNS SAN. DNS names ignore ASCII case; everything else is compared
    /// exactly.
    pub fn answers_to(&self, entry: &str) -> bool {
        let typed = entry
            .split_once(':')
            .map(|(kind, value)| (kind.to_ascii_lowercase(), value))
            .filter(|(kind, _)| SAN_TYPES.contains(&kind.as_str()));
        match typed {
            Some((kind, value)) => self.sans.iter().any(|san| same_value(san, &kind, value)),
            None => {
                self.common_name.as_deref() == Some(entry)
                    || self
                        .sans
                        .iter()
                        .any(|san| matches!(san, SubjectAltName::Dns(d) if d.eq_ignore_ascii_case(entry)))
            }
        }
    }
}

/// The SAN types an allow-list entry may name.
const SAN_TYPES: &[&str] = &["dns", "ip", "email", "uri"];

/// Is `san` the name `wanted` of type `kind` (`dns`, `ip`, `email`, `uri`)? DNS names ignore
/// ASCII case; IP addresses compare as addresses; everything else exactly.
fn same_value(san: &SubjectAltName, kind: &str, wanted: &str) -> bool {
    match (san, kind) {
        (SubjectAltName::Dns(d), "dns") => d.eq_ignore_ascii_case(wanted),
        (SubjectAltName::Ip(ip), "ip") => match wanted.parse::<std::net::IpAddr>() {
            Ok(wanted) => *ip == wanted,
            Err(_) => ip.to_string() == wanted,
        },
        (SubjectAltName::Email(e), "email") => e == wanted,
        (SubjectAltName::Uri(u), "uri") => u == wanted,
        (other @ SubjectAltName::Other(_), kind) => other.to_string().split_once(':') == Some((kind, wanted)),
        _ => false,
    }
}

impl PeerIdentity {
    /// The name to show for the peer: its common name, else its subject. Untrusted text, not
    /// escaped (see [`super::escape`]).
    pub fn name(&self) -> &str {
        self.common_name.as_deref().unwrap_or(&self.subject)
    }
}

/// `NAME [SAN, …] serial HEX`, with the names (untrusted text from the certificate) escaped by
/// [`super::escape`]: no control or bidirectional character reaches a terminal or a log.
impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.name()))?;
        if !self.sans.is_empty() {
            let sans: Vec<String> = self.sans.iter().map(ToString::to_string).collect();
            write!(f, " [{}]", escape(&sans.join(", ")))?;
        }
        write!(f, " serial {}", self.serial)
    }
}

/// Which verified peers may use the service: a list of names (see [`PeerIdentity::answers_to`]:
/// `alice` is a common name or DNS SAN, `dns:…`, `ip:…`, `email:…`, `uri:…` a SAN of that type). An empty list allows every peer whose certificate verifies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorization {
    allowed: Vec<String>,
}

impl Authorization {
    /// Allows every verified peer.
    pub fn any_verified() -> Self {
        Self::default()
    }

    /// Allows only peers that answer to one of `names` (see [`PeerIdentity::answers_to`]).
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
        self.is_open() || self.allowed.iter().any(|entry| identity.answers_to(entry))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn identity() -> PeerIdentity {
        PeerIdentity {
            subject: "O=Tessera, CN=client1".into(),
            common_name: Some("client1".into()),
            sans: vec![
                SubjectAltName::Dns("client1.example".into()),
                SubjectAltName::Email("ops@example.org".into()),
                SubjectAltName::Uri("admin".into()),
                SubjectAltName::Ip("10.0.0.1".parse().unwrap()),
            ],
            serial: "01".parse().unwrap(),
            sha256_fingerprint: "00".into(),
        }
    }

    fn certificate(common_name: Option<&str>, sans: Vec<SanType>) -> PeerIdentity {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        PeerIdentity::from_certificate(cert.der()).unwrap()
    }

    #[test]
    fn open_authorization_allows_any_verified_peer() {
        assert!(Authorization::any_verified().permits(&identity()));
    }

    #[test]
    fn allow_list_matches_common_name_and_sans() {
        let id = identity();
        assert!(Authorization::only(["client1"]).permits(&id));
        assert!(Authorization::only(["CLIENT1.example"]).permits(&id));
        assert!(Authorization::only(["dns:client1.example"]).permits(&id));
        assert!(Authorization::only(["email:ops@example.org"]).permits(&id));
        assert!(Authorization::only(["ip:10.0.0.1"]).permits(&id));
        assert!(!Authorization::only(["client2"]).permits(&id));
        assert!(!Authorization::only(["client"]).permits(&id));
        assert!(!Authorization::only(["O=Tessera"]).permits(&id));
        assert!(
            !Authorization::only(["CLIENT1"]).permits(&id),
            "a common name is compared exactly"
        );
    }

    #[test]
    fn bare_entries_match_only_the_common_name_or_a_dns_san() {
        let id = identity();
        assert!(
            !Authorization::only(["admin"]).permits(&id),
            "uri:admin is not the name admin"
        );
        assert!(Authorization::only(["uri:admin"]).permits(&id));
        assert!(!Authorization::only(["ops@example.org"]).permits(&id));
        assert!(!Authorization::only(["10.0.0.1"]).permits(&id));
        assert!(
            !Authorization::only(["dns:client1"]).permits(&id),
            "typed entries match SANs only"
        );
        assert!(!Authorization::only(["uri:client1.example"]).permits(&id));
        assert!(Authorization::only(["IP:10.0.0.1", "Dns:CLIENT1.EXAMPLE"]).permits(&id));
    }

    #[test]
    fn identities_show_and_serialise_as_before() {
        let id = identity();
        assert_eq!(
            id.to_string(),
            "client1 [dns:client1.example, email:ops@example.org, uri:admin, ip:10.0.0.1] serial 01"
        );
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(
            json["sans"],
            serde_json::json!([
                "dns:client1.example",
                "email:ops@example.org",
                "uri:admin",
                "ip:10.0.0.1"
            ])
        );
        assert_eq!(json["serial"], "01");
    }

    #[test]
    fn common_name_is_the_exact_attribute_value() {
        let id = certificate(Some("alice, mallory"), Vec::new());
        assert_eq!(id.common_name.as_deref(), Some("alice, mallory"));
        assert!(!Authorization::only(["alice"]).permits(&id));
        assert!(!Authorization::only(["mallory"]).permits(&id));
        assert!(Authorization::only(["alice, mallory"]).permits(&id));

        let id = certificate(None, vec![SanType::URI("admin".try_into().unwrap())]);
        assert_eq!(id.common_name, None);
        assert!(!Authorization::only(["admin"]).permits(&id));
        assert!(Authorization::only(["uri:admin"]).permits(&id));
    }
}
