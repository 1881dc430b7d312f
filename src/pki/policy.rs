//! The verification options and policy rules Tessera adds on top of rustls-webpki, applied by
//! [`super::TrustStore::verify`] to every candidate path webpki has verified up to a trust
//! anchor (webpki's `verify_path` hook), so that a path refused here lets webpki try the next
//! one. Each rule, with its reason and the x509-limbo cases it closes, is in
//! `docs/conformance.md`; so are the rules Tessera deliberately does not enforce.
//!
//! - Asked for by the caller ([`super::VerifyRequest`]): a maximum chain depth (RFC 5280 §6.1,
//!   self-issued intermediates not counted) and key usage bits the end entity must allow
//!   (RFC 5280 §4.2.1.3).
//! - Always: the rules of [`PolicyViolation`].

use std::fmt;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::PkiError;
use super::profile::{modulus_bits, subject_of};

/// The most octets a serial number may have (RFC 5280 §4.1.2.2), not counting a leading zero
/// octet that only keeps a value with its top bit set positive.
pub const MAX_SERIAL_OCTETS: usize = 20;

/// A bit of the key usage extension (RFC 5280 §4.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyUsage {
    /// digitalSignature (0): signatures other than on certificates and CRLs (TLS, code).
    DigitalSignature,
    /// contentCommitment (1), formerly nonRepudiation.
    ContentCommitment,
    /// keyEncipherment (2): RSA key transport.
    KeyEncipherment,
    /// dataEncipherment (3).
    DataEncipherment,
    /// keyAgreement (4): (EC)DH.
    KeyAgreement,
    /// keyCertSign (5): signing certificates.
    KeyCertSign,
    /// cRLSign (6): signing CRLs.
    CrlSign,
    /// encipherOnly (7), with keyAgreement.
    EncipherOnly,
    /// decipherOnly (8), with keyAgreement.
    DecipherOnly,
}

impl KeyUsage {
    /// Every bit, in the order of RFC 5280.
    pub const ALL: [Self; 9] = [
        Self::DigitalSignature,
        Self::ContentCommitment,
        Self::KeyEncipherment,
        Self::DataEncipherment,
        Self::KeyAgreement,
        Self::KeyCertSign,
        Self::CrlSign,
        Self::EncipherOnly,
        Self::DecipherOnly,
    ];

    /// The name used on command lines: `digital-signature`, `key-encipherment`, …
    pub fn name(self) -> &'static str {
        match self {
            Self::DigitalSignature => "digital-signature",
            Self::ContentCommitment => "content-commitment",
            Self::KeyEncipherment => "key-encipherment",
            Self::DataEncipherment => "data-encipherment",
            Self::KeyAgreement => "key-agreement",
            Self::KeyCertSign => "key-cert-sign",
            Self::CrlSign => "crl-sign",
            Self::EncipherOnly => "encipher-only",
            Self::DecipherOnly => "decipher-only",
        }
    }

    /// The name in RFC 5280's ASN.1 module: `digitalSignature`, `keyEncipherment`, …
    pub fn rfc_name(self) -> &'static str {
        match self {
            Self::DigitalSignature => "digitalSignature",
            Self::ContentCommitment => "contentCommitment",
            Self::KeyEncipherment => "keyEncipherment",
            Self::DataEncipherment => "dataEncipherment",
            Self::KeyAgreement => "keyAgreement",
            Self::KeyCertSign => "keyCertSign",
            Self::CrlSign => "cRLSign",
            Self::EncipherOnly => "encipherOnly",
            Self::DecipherOnly => "decipherOnly",
        }
    }

    fn is_set(self, usage: &x509_parser::extensions::KeyUsage) -> bool {
        match self {
            Self::DigitalSignature => usage.digital_signature(),
            Self::ContentCommitment => usage.non_repudiation(),
            Self::KeyEncipherment => usage.key_encipherment(),
            Self::DataEncipherment => usage.data_encipherment(),
            Self::KeyAgreement => usage.key_agreement(),
            Self::KeyCertSign => usage.key_cert_sign(),
            Self::CrlSign => usage.crl_sign(),
            Self::EncipherOnly => usage.encipher_only(),
            Self::DecipherOnly => usage.decipher_only(),
        }
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyUsage {
    type Err = String;

    /// Accepts the command-line names (`digital-signature`) and RFC 5280's (`digitalSignature`),
    /// and the old name of contentCommitment (`non-repudiation`, `nonRepudiation`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if matches!(s, "non-repudiation" | "nonRepudiation") {
            return Ok(Self::ContentCommitment);
        }
        Self::ALL
            .into_iter()
            .find(|usage| usage.name() == s || usage.rfc_name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|u| u.name()).collect();
                format!("unknown key usage {s:?} (use one of {})", names.join(", "))
            })
    }
}

/// Key usage bits joined for messages: `digital-signature, key-encipherment`.
pub(crate) fn key_usage_list(usages: &[KeyUsage]) -> String {
    let names: Vec<&str> = usages.iter().map(|u| u.name()).collect();
    names.join(", ")
}

/// A rule a certificate on an otherwise valid path breaks, among those Tessera adds to
/// rustls-webpki (see `docs/conformance.md` for why each is enforced). Carried by
/// [`PkiError::Policy`], a rejection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// The end entity has a subject and a critical subjectAltName: the SAN must then be
    /// non-critical, so that a verifier that does not process it still sees the subject.
    #[error(
        "its subject alternative name is critical although its subject is not empty (RFC 5280 §4.2.1.6: it is \
         critical only when the subject is empty)"
    )]
    CriticalSubjectAltName,
    /// The serial number's value is longer than [`MAX_SERIAL_OCTETS`].
    #[error("its serial number is {octets} octets long (RFC 5280 §4.1.2.2: at most 20)")]
    SerialNumberTooLong {
        /// The length of the value, without a leading sign octet.
        octets: usize,
    },
    /// A DNS name constraint begins with a period: RFC 5280 allows that form only for URIs and
    /// e-mail addresses, and verifiers disagree on what it means for DNS names.
    #[error(
        "its name constraints hold the DNS name {constraint:?}, which begins with a period (RFC 5280 §4.2.1.10: a \
         DNS constraint is a domain name, and already covers its subdomains)"
    )]
    LeadingPeriodInDnsConstraint {
        /// The constraint as written.
        constraint: String,
    },
    /// An RSA modulus whose length is not a whole number of octets.
    #[error("its RSA modulus is {bits} bits long, not a multiple of 8 (CA/Browser Forum Baseline Requirements §6.1.5)")]
    RsaModulusNotWholeOctets {
        /// The modulus length in bits.
        bits: usize,
    },
    /// The end entity allows anyExtendedKeyUsage: a usage every verifier reads differently
    /// (some as "any usage"), which no end-entity profile needs.
    #[error(
        "it is an end entity asserting anyExtendedKeyUsage (RFC 5280 §4.2.1.12 reserves it for applications that \
         accept any purpose; CA/Browser Forum Baseline Requirements §7.1.2.7.10 forbid it)"
    )]
    AnyExtendedKeyUsage,
    /// A self-signed root has an authority key identifier without its keyIdentifier field.
    #[error(
        "it is a self-signed root whose authority key identifier has no keyIdentifier (RFC 5280 §4.2.1.1: when \
         present, the extension must carry it)"
    )]
    RootAuthorityKeyIdWithoutKeyId,
    /// The end entity names a wildcard directly under a registry-controlled public suffix
    /// (`*.com`, `*.co.uk`): one certificate for every domain registered under it.
    #[error(
        "it is an end entity with the wildcard name {name:?}, directly under the public suffix {suffix:?} (CA/Browser \
         Forum Baseline Requirements §3.2.2.6: no wildcard for a registry-controlled or public suffix; RFC 9525 §7.1)"
    )]
    WildcardOnPublicSuffix {
        /// The SAN as written.
        name: String,
        /// The public suffix it covers, as listed in the Public Suffix List.
        suffix: String,
    },
}

/// Where a certificate sits on the path being checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    /// The end entity (also when it is pinned: trusted as its own root).
    EndEntity,
    /// An intermediate CA.
    Intermediate,
    /// The trusted root the path ends at.
    Root,
}

/// The rules of [`PolicyViolation`] for one certificate at `position`.
pub(super) fn check_certificate(cert: &X509Certificate<'_>, position: Position) -> Result<(), PkiError> {
    let violation = |violation| PkiError::Policy {
        subject: subject_of(cert),
        violation,
    };
    // The operator chose the root; its serial number is not something a verifier can hold
    // against it (public trust stores hold roots with long serial numbers).
    if position != Position::Root {
        let octets = serial_octets(cert.raw_serial());
        if octets > MAX_SERIAL_OCTETS {
            return Err(violation(PolicyViolation::SerialNumberTooLong { octets }));
        }
    }
    if let Some(bits) = rsa_modulus_bits(cert)
        && !bits.is_multiple_of(8)
    {
        return Err(violation(PolicyViolation::RsaModulusNotWholeOctets { bits }));
    }
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(_)
                if position == Position::EndEntity && ext.critical && !has_empty_subject(cert) =>
            {
                return Err(violation(PolicyViolation::CriticalSubjectAltName));
            }
            ParsedExtension::SubjectAlternativeName(san) if position == Position::EndEntity => {
                for name in &san.general_names {
                    if let GeneralName::DNSName(name) = name
                        && let Some(suffix) = wildcard_public_suffix(name)
                    {
                        return Err(violation(PolicyViolation::WildcardOnPublicSuffix {
                            name: name.to_string(),
                            suffix,
                        }));
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) if position == Position::EndEntity && eku.any => {
                return Err(violation(PolicyViolation::AnyExtendedKeyUsage));
            }
            ParsedExtension::AuthorityKeyIdentifier(aki)
                if position == Position::Root && is_self_issued(cert) && aki.key_identifier.is_none() =>
            {
                return Err(violation(PolicyViolation::RootAuthorityKeyIdWithoutKeyId));
            }
            ParsedExtension::NameConstraints(constraints) if position != Position::EndEntity => {
                let subtrees = constraints
                    .permitted_subtrees
                    .iter()
                    .flatten()
                    .chain(constraints.excluded_subtrees.iter().flatten());
                for subtree in subtrees {
                    if let GeneralName::DNSName(name) = subtree.base
                        && name.starts_with('.')
                    {
                        return Err(violation(PolicyViolation::LeadingPeriodInDnsConstraint {
                            constraint: name.to_string(),
                        }));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// RFC 5280 §6.1: the number of CA certificates between the end entity and the trust anchor,
/// not counting self-issued ones (subject and issuer names equal), must not exceed `max`.
/// `intermediates` are in path order, end entity excluded, root excluded.
pub(super) fn check_depth(intermediates: &[X509Certificate<'_>], max: usize) -> Result<(), PkiError> {
    let depth = intermediates.iter().filter(|cert| !is_self_issued(cert)).count();
    if depth > max {
        return Err(PkiError::ChainTooDeep { depth, max });
    }
    Ok(())
}

/// RFC 5280 §4.2.1.3: when the end entity has a key usage extension, it must assert every bit
/// in `required`. Without the extension, the key may be used for any purpose.
pub(super) fn check_key_usage(end_entity: &X509Certificate<'_>, required: &[KeyUsage]) -> Result<(), PkiError> {
    if required.is_empty() {
        return Ok(());
    }
    let usage = end_entity.key_usage().map_err(|_| PkiError::ProfileViolation {
        subject: subject_of(end_entity),
        rule: super::ProfileRule::DuplicateExtension,
    })?;
    let Some(usage) = usage else {
        return Ok(());
    };
    let mut missing: Vec<KeyUsage> = required
        .iter()
        .copied()
        .filter(|bit| !bit.is_set(usage.value))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PkiError::KeyUsageNotAllowed {
            subject: subject_of(end_entity),
            missing,
        })
    }
}

/// For a wildcard DNS name `*.REST` whose REST is a public suffix in the ICANN section of the
/// Public Suffix List (a registry-controlled name such as `com` or `co.uk`): REST.
///
/// Not counted: the list's private section (a suffix one company owns, which may rightly hold a
/// wildcard for it: Amazon's own certificate names `*.s3.amazonaws.com`), and the list's
/// implicit "any unknown top-level label" rule (a private PKI's `*.internal` or `*.lan`).
fn wildcard_public_suffix(name: &str) -> Option<String> {
    let rest = name.strip_prefix("*.")?.trim_end_matches('.');
    let lower = rest.to_ascii_lowercase();
    let suffix = psl::suffix(lower.as_bytes())?;
    let registry_controlled = suffix.is_known() && suffix.typ() == Some(psl::Type::Icann);
    (registry_controlled && suffix.as_bytes().len() == lower.len()).then_some(lower)
}

/// The length of a serial number's value: its DER contents without a leading zero octet.
fn serial_octets(raw: &[u8]) -> usize {
    match raw {
        [0x00, rest @ ..] if !rest.is_empty() => rest.len(),
        _ => raw.len(),
    }
}

/// The modulus length of an RSA public key, if the certificate has one.
fn rsa_modulus_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return None;
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => Some(modulus_bits(rsa.modulus)),
        _ => None,
    }
}

fn has_empty_subject(cert: &X509Certificate<'_>) -> bool {
    cert.subject().iter_rdn().next().is_none()
}

/// Subject and issuer are the same name (byte for byte, as rustls-webpki compares names).
fn is_self_issued(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{
        DistinguishedName, ExtendedKeyUsagePurpose, GeneralSubtree, KeyPair, NameConstraints, SanType, SerialNumber,
    };
    use rustls_pki_types::CertificateDer;

    use super::*;
    use crate::pki::testing::RsaKey;
    use crate::pki::{TrustStore, Usage, VerifiedChain, VerifyRequest};

    use crate::pki::testing::{Ca, NOW, assert_accepted, ca_params, extension, leaf_params, verify};

    fn verify_with(
        root: &Ca,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> Result<VerifiedChain, PkiError> {
        let mut store = TrustStore::new();
        store.add_root(root.der.clone(), "root").unwrap();
        store.verify(leaf, chain, request)
    }

    #[track_caller]
    fn accepted(result: Result<VerifiedChain, PkiError>) -> VerifiedChain {
        match result {
            Ok(chain) => chain,
            Err(e) => panic!("expected the chain to be accepted, got: {e}"),
        }
    }

    #[track_caller]
    fn assert_policy(result: Result<VerifiedChain, PkiError>, expected: &PolicyViolation, citation: &str) {
        match result {
            Err(error @ PkiError::Policy { .. }) => {
                let PkiError::Policy { violation, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(violation, expected);
                assert!(error.is_rejection());
                assert!(error.to_string().contains(citation), "{error}");
            }
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn max_depth_counts_intermediates_but_not_self_issued_ones() {
        let root = Ca::root(ca_params("root"));
        let first = root.intermediate(ca_params("first"));
        let second = first.intermediate(ca_params("second"));
        let leaf = second.leaf(&leaf_params());
        let chain = [second.der.clone(), first.der.clone()];
        let request = |depth| {
            VerifyRequest::new(Usage::Server, NOW)
                .with_name("example.com")
                .with_max_depth(depth)
        };
        assert_eq!(accepted(verify_with(&root, &leaf, &chain, &request(2))).path().len(), 4);
        for max in [0, 1] {
            match verify_with(&root, &leaf, &chain, &request(max)) {
                Err(error @ PkiError::ChainTooDeep { .. }) => {
                    assert!(matches!(error, PkiError::ChainTooDeep { depth: 2, max: m } if m == max));
                    assert!(error.is_rejection());
                    assert!(error.to_string().contains("RFC 5280 §6.1"), "{error}");
                }
                other => panic!("expected the chain to be too deep for {max}, got {other:?}"),
            }
        }
        // Directly under the root: depth 0.
        assert_accepted(verify_with(&root, &root.leaf(&leaf_params()), &[], &request(0)));

        // A self-issued intermediate (a key rollover: same name, new key) is not counted.
        let rollover = first.intermediate(ca_params("first"));
        let leaf = rollover.leaf(&leaf_params());
        let chain = [rollover.der.clone(), first.der.clone()];
        assert_eq!(accepted(verify_with(&root, &leaf, &chain, &request(1))).path().len(), 4);
        assert!(matches!(
            verify_with(&root, &leaf, &chain, &request(0)),
            Err(PkiError::ChainTooDeep { depth: 1, max: 0 })
        ));
    }

    #[test]
    fn a_path_too_deep_lets_webpki_find_a_shorter_one() {
        // The issuing CA is cross-certified: once by the root, once by another intermediate.
        let root = Ca::root(ca_params("root"));
        let other = root.intermediate(ca_params("other"));
        let key = KeyPair::generate().unwrap();
        let issuing_params = ca_params("issuing");
        let under_other = other.issue(&issuing_params, &key);
        let under_root = root.issue(&issuing_params, &key);
        let issuing = Ca {
            params: issuing_params,
            key,
            der: under_root.clone(),
        };
        let leaf = issuing.leaf(&leaf_params());
        // The long path is offered first; webpki takes it unless the depth check refuses it.
        let chain = [under_other, other.der.clone(), under_root];
        let unlimited = accepted(verify(&root, &leaf, &chain));
        assert_eq!(unlimited.path().len(), 4);
        let request = VerifyRequest::new(Usage::Server, NOW).with_max_depth(1);
        let short = accepted(verify_with(&root, &leaf, &chain, &request));
        assert_eq!(short.path().len(), 3);
    }

    #[test]
    fn required_key_usage_must_be_asserted_when_the_extension_is_there() {
        let root = Ca::root(ca_params("root"));
        let leaf = root.leaf(&leaf_params());
        let request =
            |usages: &[KeyUsage]| VerifyRequest::new(Usage::Server, NOW).with_key_usage(usages.iter().copied());
        assert_accepted(verify_with(&root, &leaf, &[], &request(&[KeyUsage::DigitalSignature])));
        match verify_with(
            &root,
            &leaf,
            &[],
            &request(&[
                KeyUsage::KeyEncipherment,
                KeyUsage::DigitalSignature,
                KeyUsage::KeyAgreement,
            ]),
        ) {
            Err(error @ PkiError::KeyUsageNotAllowed { .. }) => {
                let PkiError::KeyUsageNotAllowed { missing, subject } = &error else {
                    unreachable!()
                };
                assert_eq!(missing, &[KeyUsage::KeyEncipherment, KeyUsage::KeyAgreement]);
                assert!(subject.contains("example.com"), "{subject}");
                assert!(error.is_rejection());
                assert_eq!(
                    error.to_string(),
                    "certificate CN=example.com does not allow key-encipherment, key-agreement (its key usage \
                     extension lacks it; RFC 5280 §4.2.1.3)"
                );
            }
            other => panic!("expected a missing key usage, got {other:?}"),
        }
        // Without a key usage extension the key may be used for anything.
        let mut params = leaf_params();
        params.key_usages.clear();
        let leaf = root.leaf(&params);
        assert_accepted(verify_with(&root, &leaf, &[], &request(&KeyUsage::ALL)));
    }

    #[test]
    fn a_subject_alternative_name_is_critical_only_with_an_empty_subject() {
        let root = Ca::root(ca_params("root"));
        let mut san = vec![0x30, 0x0d, 0x82, 0x0b];
        san.extend(b"example.com");
        let mut params = leaf_params();
        params.subject_alt_names.clear();
        params.custom_extensions = vec![extension(&[2, 5, 29, 17], &san, true)];
        assert_policy(
            verify(&root, &root.leaf(&params), &[]),
            &PolicyViolation::CriticalSubjectAltName,
            "RFC 5280 §4.2.1.6",
        );
        params.custom_extensions = vec![extension(&[2, 5, 29, 17], &san, false)];
        assert_accepted(verify(&root, &root.leaf(&params), &[]));
        params.distinguished_name = DistinguishedName::new();
        params.custom_extensions = vec![extension(&[2, 5, 29, 17], &san, true)];
        assert_accepted(verify(&root, &root.leaf(&params), &[]));
    }

    #[test]
    fn serial_numbers_hold_at_most_twenty_octets_not_counting_the_sign_octet() {
        let root = Ca::root(ca_params("root"));
        // Twenty octets with the top bit set: a 21-octet encoding, accepted.
        let mut params = leaf_params();
        params.serial_number = Some(SerialNumber::from(vec![0x9c; 20]));
        let leaf = root.leaf(&params);
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        assert_eq!(parsed.raw_serial().len(), 21, "rcgen adds the sign octet");
        assert_accepted(verify(&root, &leaf, &[]));
        // Twenty-one octets of value: refused, in a leaf and in an intermediate.
        params.serial_number = Some(SerialNumber::from(vec![0x1c; 21]));
        assert_policy(
            verify(&root, &root.leaf(&params), &[]),
            &PolicyViolation::SerialNumberTooLong { octets: 21 },
            "RFC 5280 §4.1.2.2",
        );
        let mut intermediate = ca_params("intermediate");
        intermediate.serial_number = Some(SerialNumber::from(vec![0x1c; 22]));
        let intermediate = root.intermediate(intermediate);
        assert_policy(
            verify(
                &root,
                &intermediate.leaf(&leaf_params()),
                std::slice::from_ref(&intermediate.der),
            ),
            &PolicyViolation::SerialNumberTooLong { octets: 22 },
            "RFC 5280 §4.1.2.2",
        );
    }

    #[test]
    fn roots_with_long_serial_numbers_are_trusted() {
        // Shaped like roots in public trust stores: a 160-bit random serial whose top bit is
        // set, encoded in 21 octets with a leading zero.
        let mut params = ca_params("root");
        let mut serial = vec![0x00];
        serial.extend([
            0xd0, 0x1e, 0x40, 0x90, 0x00, 0x00, 0x46, 0x5f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x9b, 0x3f,
            0x6b, 0x61,
        ]);
        params.serial_number = Some(SerialNumber::from(serial));
        let root = Ca::root(params);
        let (_, parsed) = x509_parser::parse_x509_certificate(&root.der).unwrap();
        assert_eq!(parsed.raw_serial().len(), 21);
        assert_accepted(verify(&root, &root.leaf(&leaf_params()), &[]));
        // Even a root with 21 octets of value: the operator chose to trust it.
        let mut params = ca_params("root");
        params.serial_number = Some(SerialNumber::from(vec![0x42; 21]));
        let root = Ca::root(params);
        assert_accepted(verify(&root, &root.leaf(&leaf_params()), &[]));
    }

    #[test]
    fn dns_name_constraints_have_no_leading_period() {
        let root = Ca::root(ca_params("root"));
        // webpki reads ".example.com" as "below example.com", so a name below it passes webpki.
        let mut leaf = leaf_params();
        leaf.subject_alt_names = vec![SanType::DnsName("www.example.com".try_into().unwrap())];
        for (constraint, accepted) in [("example.com", true), (".example.com", false)] {
            let mut params = ca_params("intermediate");
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName(constraint.into())],
                excluded_subtrees: Vec::new(),
            });
            let intermediate = root.intermediate(params);
            let result = verify_with(
                &root,
                &intermediate.leaf(&leaf),
                std::slice::from_ref(&intermediate.der),
                &VerifyRequest::new(Usage::Server, NOW).with_name("www.example.com"),
            );
            if accepted {
                assert_accepted(result);
            } else {
                assert_policy(
                    result,
                    &PolicyViolation::LeadingPeriodInDnsConstraint {
                        constraint: constraint.into(),
                    },
                    "RFC 5280 §4.2.1.10",
                );
            }
        }
        // In an excluded subtree, and in the root.
        let mut params = ca_params("root");
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: Vec::new(),
            excluded_subtrees: vec![GeneralSubtree::DnsName(".invalid".into())],
        });
        let root = Ca::root(params);
        assert_policy(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            &PolicyViolation::LeadingPeriodInDnsConstraint {
                constraint: ".invalid".into(),
            },
            "§4.2.1.10",
        );
    }

    #[test]
    fn rsa_moduli_are_whole_octets() {
        let root = Ca::root(ca_params("root"));
        assert_accepted(verify(
            &root,
            &root.issue(&leaf_params(), &RsaKey::with_bits(2048)),
            &[],
        ));
        assert_accepted(verify(
            &root,
            &root.issue(&leaf_params(), &RsaKey::with_bits(3072)),
            &[],
        ));
        assert_policy(
            verify(&root, &root.issue(&leaf_params(), &RsaKey::with_bits(2052)), &[]),
            &PolicyViolation::RsaModulusNotWholeOctets { bits: 2052 },
            "§6.1.5",
        );
    }

    #[test]
    fn an_end_entity_may_not_assert_any_extended_key_usage() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::Any);
        assert_policy(
            verify(&root, &root.leaf(&params), &[]),
            &PolicyViolation::AnyExtendedKeyUsage,
            "RFC 5280 §4.2.1.12",
        );
        // A CA may (webpki looks at an issuer's EKU only for the usage asked for).
        let mut params = ca_params("intermediate");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::Any];
        let intermediate = root.intermediate(params);
        assert_accepted(verify(
            &root,
            &intermediate.leaf(&leaf_params()),
            std::slice::from_ref(&intermediate.der),
        ));
    }

    #[test]
    fn no_wildcard_directly_under_a_public_suffix() {
        let root = Ca::root(ca_params("root"));
        for (wildcard, suffix) in [("*.com", "com"), ("*.co.uk", "co.uk"), ("*.CO.UK", "co.uk")] {
            let mut params = leaf_params();
            params.subject_alt_names = vec![
                SanType::DnsName("example.com".try_into().unwrap()),
                SanType::DnsName(wildcard.try_into().unwrap()),
            ];
            let result = verify(&root, &root.leaf(&params), &[]);
            assert_policy(
                result,
                &PolicyViolation::WildcardOnPublicSuffix {
                    name: wildcard.to_string(),
                    suffix: suffix.to_string(),
                },
                "§3.2.2.6",
            );
        }
        // Below a registrable domain, under a suffix of the list's private section (owned by one
        // company, as Amazon's certificate for `*.s3.amazonaws.com`), or under a name the list
        // does not know (a private PKI's own top-level label): accepted.
        for wildcard in [
            "*.example.com",
            "*.example.co.uk",
            "*.s3.amazonaws.com",
            "*.internal",
            "*.corp.lan",
        ] {
            let mut params = leaf_params();
            params.subject_alt_names = vec![
                SanType::DnsName("example.com".try_into().unwrap()),
                SanType::DnsName(wildcard.try_into().unwrap()),
            ];
            assert_accepted(verify(&root, &root.leaf(&params), &[]));
        }
    }

    #[test]
    fn a_root_authority_key_identifier_carries_a_key_identifier() {
        // authorityCertSerialNumber only.
        let mut params = ca_params("root");
        params.custom_extensions = vec![extension(&[2, 5, 29, 35], &[0x30, 0x03, 0x82, 0x01, 0x01], false)];
        let root = Ca::root(params);
        assert_policy(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            &PolicyViolation::RootAuthorityKeyIdWithoutKeyId,
            "RFC 5280 §4.2.1.1",
        );
        // With a key identifier, or without the extension: accepted.
        let mut aki = vec![0x30, 0x16, 0x80, 0x14];
        aki.extend([0x11; 20]);
        let mut params = ca_params("root");
        params.custom_extensions = vec![extension(&[2, 5, 29, 35], &aki, false)];
        let root = Ca::root(params);
        assert_accepted(verify(&root, &root.leaf(&leaf_params()), &[]));
        let root = Ca::root(ca_params("root"));
        assert_accepted(verify(&root, &root.leaf(&leaf_params()), &[]));
    }

    #[test]
    fn a_certificate_webpki_refuses_as_written_is_a_rejection_not_unusable_input() {
        let root = Ca::root(ca_params("root"));
        // rcgen writes the SAN; a second one makes the extension appear twice.
        let mut san = vec![0x30, 0x0d, 0x82, 0x0b];
        san.extend(b"example.com");
        let mut params = leaf_params();
        params.custom_extensions = vec![extension(&[2, 5, 29, 17], &san, false)];
        match verify(&root, &root.leaf(&params), &[]) {
            Err(error @ PkiError::UnacceptableCertificate { .. }) => {
                assert!(error.is_rejection());
                assert!(error.to_string().contains("appears twice"), "{error}");
                assert!(error.to_string().contains("RFC 5280 §4.2"), "{error}");
            }
            other => panic!("expected an unacceptable certificate, got {other:?}"),
        }
        // Bytes that are no certificate at all are unusable input.
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        match verify(&root, &garbage, &[]) {
            Err(error @ PkiError::Malformed { .. }) => assert!(!error.is_rejection()),
            other => panic!("expected unusable input, got {other:?}"),
        }
    }

    #[test]
    fn serial_octets_do_not_count_the_sign_octet() {
        assert_eq!(serial_octets(&[0x01]), 1);
        assert_eq!(serial_octets(&[0x00]), 1);
        let mut twenty_with_sign = vec![0x00];
        twenty_with_sign.extend([0x80; 20]);
        assert_eq!(serial_octets(&twenty_with_sign), 20);
        assert_eq!(serial_octets(&[0x7f; 21]), 21);
        let mut twenty_one_with_sign = vec![0x00];
        twenty_one_with_sign.extend([0x80; 21]);
        assert_eq!(serial_octets(&twenty_one_with_sign), 21);
    }

    #[test]
    fn key_usage_names_round_trip() {
        for usage in KeyUsage::ALL {
            assert_eq!(usage.name().parse::<KeyUsage>(), Ok(usage));
            assert_eq!(usage.rfc_name().parse::<KeyUsage>(), Ok(usage));
        }
        assert_eq!("nonRepudiation".parse::<KeyUsage>(), Ok(KeyUsage::ContentCommitment));
        let err = "signing".parse::<KeyUsage>().unwrap_err();
        assert!(err.contains("digital-signature"), "{err}");
    }
}
