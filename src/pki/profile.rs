//! The RFC 5280 profile rules that rustls-webpki leaves out, applied by
//! [`super::TrustStore::verify`] to a path webpki has already accepted. Each rule is a MUST of
//! RFC 5280 that Tessera's own CA meets; `docs/conformance.md` lists them with the x509-limbo
//! cases they close.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use webpki::EndEntityCert;

use super::PkiError;
use super::error::RejectionReason;

/// A rule of the RFC 5280 profile (or of Tessera's key policy) that a certificate on an
/// otherwise valid path breaks, among those rustls-webpki leaves out. Carried by
/// [`PkiError::ProfileViolation`], a rejection. The message of each rule cites the section of
/// RFC 5280 it comes from ([`ProfileRule::citation`]), except four whose messages predate the
/// citations and are part of the command-line contract: [`ProfileRule::MalformedExtension`]
/// (§4.2), [`ProfileRule::UnacceptablePublicKey`] (Tessera's key policy),
/// [`ProfileRule::NotX509`] and [`ProfileRule::Unparsable`] (§4.1). `docs/conformance.md` lists
/// each rule with the x509-limbo cases it closes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileRule {
    /// The authority key identifier is marked critical (RFC 5280 §4.2.1.1).
    #[error("its authority key identifier is critical (RFC 5280 4.2.1.1: it must not be)")]
    CriticalAuthorityKeyId,
    /// The subject key identifier is marked critical (RFC 5280 §4.2.1.2).
    #[error("its subject key identifier is critical (RFC 5280 4.2.1.2: it must not be)")]
    CriticalSubjectKeyId,
    /// The policy constraints are not marked critical (RFC 5280 §4.2.1.11).
    #[error("its policy constraints are not critical (RFC 5280 4.2.1.11: they must be)")]
    NonCriticalPolicyConstraints,
    /// The name constraints hold neither permitted nor excluded subtrees (RFC 5280 §4.2.1.10).
    #[error("its name constraints hold no subtree (RFC 5280 4.2.1.10: at least one is required)")]
    NameConstraintsWithoutSubtrees,
    /// The name constraints hold an empty list of permitted or excluded subtrees
    /// (RFC 5280 §4.2.1.10).
    #[error("its name constraints hold an empty list of subtrees (RFC 5280 4.2.1.10)")]
    EmptySubtreeList,
    /// The authority information access extension is empty (RFC 5280 §4.2.2.1).
    #[error("its authority information access is empty (RFC 5280 4.2.2.1)")]
    EmptyAuthorityInfoAccess,
    /// An extension that matters to path validation or revocation cannot be decoded
    /// (RFC 5280 §4.2).
    #[error("its extension {oid} is malformed")]
    MalformedExtension {
        /// The extension's OID, dotted (`1.3.6.1.5.5.7.1.1`).
        oid: String,
    },
    /// An extension appears twice (RFC 5280 §4.2).
    #[error("an extension appears twice (RFC 5280 4.2)")]
    DuplicateExtension,
    /// An end entity carries name constraints (RFC 5280 §4.2.1.10).
    #[error("it is an end entity with name constraints (RFC 5280 4.2.1.10: only CAs may have them)")]
    EndEntityNameConstraints,
    /// An end entity's key usage asserts keyCertSign (RFC 5280 §4.2.1.9).
    #[error("its key usage asserts keyCertSign without cA (RFC 5280 4.2.1.9)")]
    KeyCertSignWithoutCa,
    /// An end entity with an empty subject has a subjectAltName that is not critical
    /// (RFC 5280 §4.2.1.6).
    #[error("its subject is empty and its subject alternative name is not critical (RFC 5280 4.2.1.6)")]
    EmptySubjectNonCriticalAltName,
    /// The end entity's key is not one Tessera verifies with (Tessera's key policy: the keys
    /// of `SIGNATURE_ALGORITHMS`).
    #[error("its public key is not one Tessera accepts (Ed25519, ECDSA P-256 or P-384, RSA of 2048 to 8192 bits)")]
    UnacceptablePublicKey,
    /// An issuer has an empty subject (RFC 5280 §4.1.2.6).
    #[error("it is a CA with an empty subject (RFC 5280 4.1.2.6)")]
    IssuerWithEmptySubject,
    /// An issuer has no basic constraints (RFC 5280 §4.2.1.9).
    #[error("it issues certificates but has no basic constraints (RFC 5280 4.2.1.9)")]
    IssuerWithoutBasicConstraints,
    /// An issuer's basic constraints do not assert cA (RFC 5280 §4.2.1.9).
    #[error("it issues certificates but its basic constraints do not assert cA (RFC 5280 4.2.1.9)")]
    IssuerNotCa,
    /// An issuer's basic constraints are not critical (RFC 5280 §4.2.1.9).
    #[error("its basic constraints are not critical (RFC 5280 4.2.1.9: a CA's must be)")]
    NonCriticalBasicConstraints,
    /// An issuer's key usage lacks keyCertSign (RFC 5280 §4.2.1.3).
    #[error("it issues certificates but its key usage lacks keyCertSign (RFC 5280 4.2.1.3)")]
    IssuerWithoutKeyCertSign,
    /// A critical extension Tessera does not know (RFC 5280 §4.2: the certificate must then be
    /// rejected).
    #[error("it has a critical extension Tessera does not recognise (RFC 5280 4.2)")]
    UnknownCriticalExtension,
    /// A certificate on the path cannot be parsed as X.509 (RFC 5280 §4.1).
    #[error("it cannot be parsed as an X.509 certificate")]
    NotX509,
    /// The trusted root parses as X.509 but rustls-webpki cannot read it as a certificate
    /// (RFC 5280 §4.1).
    #[error("it cannot be parsed as a certificate ({reason})")]
    Unparsable {
        /// rustls-webpki's reason.
        reason: RejectionReason,
    },
}

impl ProfileRule {
    /// The section of RFC 5280 the message cites (`RFC 5280 4.2.1.9`), as written in it; `None`
    /// for the four rules whose messages cite none (see the type's documentation).
    pub fn citation(&self) -> Option<&'static str> {
        Some(match self {
            Self::CriticalAuthorityKeyId => "RFC 5280 4.2.1.1",
            Self::CriticalSubjectKeyId => "RFC 5280 4.2.1.2",
            Self::NonCriticalPolicyConstraints => "RFC 5280 4.2.1.11",
            Self::NameConstraintsWithoutSubtrees | Self::EmptySubtreeList | Self::EndEntityNameConstraints => {
                "RFC 5280 4.2.1.10"
            }
            Self::EmptyAuthorityInfoAccess => "RFC 5280 4.2.2.1",
            Self::DuplicateExtension | Self::UnknownCriticalExtension => "RFC 5280 4.2",
            Self::KeyCertSignWithoutCa
            | Self::IssuerWithoutBasicConstraints
            | Self::IssuerNotCa
            | Self::NonCriticalBasicConstraints => "RFC 5280 4.2.1.9",
            Self::EmptySubjectNonCriticalAltName => "RFC 5280 4.2.1.6",
            Self::IssuerWithEmptySubject => "RFC 5280 4.1.2.6",
            Self::IssuerWithoutKeyCertSign => "RFC 5280 4.2.1.3",
            Self::MalformedExtension { .. } | Self::UnacceptablePublicKey | Self::NotX509 | Self::Unparsable { .. } => {
                return None;
            }
        })
    }
}

/// Extensions whose contents matter to path validation or to finding revocation information:
/// if x509-parser cannot decode one of them, the certificate is malformed.
const STRUCTURAL_EXTENSIONS: &[&[u64]] = &[
    &[2, 5, 29, 14],              // subjectKeyIdentifier
    &[2, 5, 29, 15],              // keyUsage
    &[2, 5, 29, 17],              // subjectAltName
    &[2, 5, 29, 19],              // basicConstraints
    &[2, 5, 29, 30],              // nameConstraints
    &[2, 5, 29, 31],              // cRLDistributionPoints
    &[2, 5, 29, 33],              // policyMappings
    &[2, 5, 29, 35],              // authorityKeyIdentifier
    &[2, 5, 29, 36],              // policyConstraints
    &[2, 5, 29, 37],              // extKeyUsage
    &[2, 5, 29, 54],              // inhibitAnyPolicy
    &[1, 3, 6, 1, 5, 5, 7, 1, 1], // authorityInfoAccess
];

/// The subject of a certificate for messages.
pub(super) fn subject_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    if has_empty_subject(cert) {
        "(empty subject)".into()
    } else {
        cert.subject().to_string()
    }
}

/// The contents of a DER `Name` (without its SEQUENCE header), as rustls-webpki holds names.
pub(super) fn name_contents(raw: &[u8]) -> &[u8] {
    use x509_parser::prelude::FromDer;
    match x509_parser::asn1_rs::Any::from_der(raw) {
        Ok((_, any)) => any.data,
        Err(_) => raw,
    }
}

fn has_empty_subject(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    cert.subject().iter_rdn().next().is_none()
}

/// Rules for every certificate on the path (RFC 5280 §4.2).
pub(super) fn check_extensions(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), ProfileRule> {
    use x509_parser::extensions::ParsedExtension as P;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            P::AuthorityKeyIdentifier(_) if ext.critical => {
                return Err(ProfileRule::CriticalAuthorityKeyId);
            }
            P::SubjectKeyIdentifier(_) if ext.critical => {
                return Err(ProfileRule::CriticalSubjectKeyId);
            }
            P::PolicyConstraints(_) if !ext.critical => {
                return Err(ProfileRule::NonCriticalPolicyConstraints);
            }
            P::NameConstraints(nc)
                if nc.permitted_subtrees.as_ref().is_none_or(Vec::is_empty)
                    && nc.excluded_subtrees.as_ref().is_none_or(Vec::is_empty) =>
            {
                return Err(ProfileRule::NameConstraintsWithoutSubtrees);
            }
            P::NameConstraints(nc)
                if nc.permitted_subtrees.as_ref().is_some_and(Vec::is_empty)
                    || nc.excluded_subtrees.as_ref().is_some_and(Vec::is_empty) =>
            {
                return Err(ProfileRule::EmptySubtreeList);
            }
            P::AuthorityInfoAccess(aia) if aia.accessdescs.is_empty() => {
                return Err(ProfileRule::EmptyAuthorityInfoAccess);
            }
            P::ParseError { .. } if is_structural(&ext.oid) => {
                return Err(ProfileRule::MalformedExtension {
                    oid: ext.oid.to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_structural(oid: &x509_parser::oid_registry::Oid<'_>) -> bool {
    let Some(arcs) = oid.iter() else {
        return false;
    };
    let arcs: Vec<u64> = arcs.collect();
    STRUCTURAL_EXTENSIONS.contains(&arcs.as_slice())
}

/// Rules for the end-entity certificate.
pub(super) fn check_end_entity(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), ProfileRule> {
    let duplicate = |_| ProfileRule::DuplicateExtension;
    if cert.name_constraints().map_err(duplicate)?.is_some() {
        return Err(ProfileRule::EndEntityNameConstraints);
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(duplicate)?
        .is_some_and(|bc| bc.value.ca);
    let cert_sign = cert
        .key_usage()
        .map_err(duplicate)?
        .is_some_and(|ku| ku.value.key_cert_sign());
    if cert_sign && !is_ca {
        return Err(ProfileRule::KeyCertSignWithoutCa);
    }
    if has_empty_subject(cert)
        && !cert
            .subject_alternative_name()
            .map_err(duplicate)?
            .is_some_and(|san| san.critical)
    {
        return Err(ProfileRule::EmptySubjectNonCriticalAltName);
    }
    check_public_key(cert)
}

/// Rules for every issuer on the path, the root included.
pub(super) fn check_issuer(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), ProfileRule> {
    let duplicate = |_| ProfileRule::DuplicateExtension;
    if has_empty_subject(cert) {
        return Err(ProfileRule::IssuerWithEmptySubject);
    }
    match cert.basic_constraints().map_err(duplicate)? {
        None => return Err(ProfileRule::IssuerWithoutBasicConstraints),
        Some(bc) if !bc.value.ca => return Err(ProfileRule::IssuerNotCa),
        Some(bc) if !bc.critical => return Err(ProfileRule::NonCriticalBasicConstraints),
        Some(_) => {}
    }
    if cert
        .key_usage()
        .map_err(duplicate)?
        .is_some_and(|ku| !ku.value.key_cert_sign())
    {
        return Err(ProfileRule::IssuerWithoutKeyCertSign);
    }
    Ok(())
}

/// Rules for the trusted root, which rustls-webpki reduces to a name and a key: it must be
/// valid at the verification time, and carry no critical extension webpki does not know.
pub(super) fn check_root(
    der: &CertificateDer<'_>,
    cert: &x509_parser::certificate::X509Certificate<'_>,
    time: OffsetDateTime,
) -> Result<(), PkiError> {
    // Whole seconds, as rustls-webpki compares the rest of the path.
    let validity = cert.validity();
    let now = time.unix_timestamp();
    let at = |t: &x509_parser::time::ASN1Time| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok();
    if let Some(not_before) = at(&validity.not_before).filter(|_| validity.not_before.timestamp() > now) {
        return Err(PkiError::NotYetValid {
            subject: Some(subject_of(cert)),
            not_before,
            time,
        });
    }
    if let Some(not_after) = at(&validity.not_after).filter(|_| validity.not_after.timestamp() < now) {
        return Err(PkiError::Expired {
            subject: Some(subject_of(cert)),
            not_after,
            time,
        });
    }
    match EndEntityCert::try_from(der) {
        Ok(_) => Ok(()),
        Err(webpki::Error::UnsupportedCriticalExtension) => Err(PkiError::ProfileViolation {
            subject: subject_of(cert),
            rule: ProfileRule::UnknownCriticalExtension,
        }),
        Err(e) => Err(PkiError::ProfileViolation {
            subject: subject_of(cert),
            rule: ProfileRule::Unparsable {
                reason: RejectionReason::from(&e),
            },
        }),
    }
}

/// Tessera's key policy for end entities: a key one of [`SIGNATURE_ALGORITHMS`] can verify
/// with (rustls would fail the handshake, and `verify` the signature, with any other).
fn check_public_key(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), ProfileRule> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    let acceptable = if *algorithm == OID_SIG_ED25519 {
        true
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().map(|p| p.data);
        curve == Some(OID_EC_P256.as_bytes()) || curve == Some(OID_NIST_EC_P384.as_bytes())
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        matches!(spki.parsed(), Ok(PublicKey::RSA(rsa)) if (2048..=8192).contains(&modulus_bits(rsa.modulus)))
    } else {
        false
    };
    if acceptable {
        Ok(())
    } else {
        Err(ProfileRule::UnacceptablePublicKey)
    }
}

/// The bit length of a big-endian unsigned integer.
pub(super) fn modulus_bits(modulus: &[u8]) -> usize {
    let Some(start) = modulus.iter().position(|b| *b != 0) else {
        return 0;
    };
    let significant = modulus.len() - start;
    let top = modulus.get(start).copied().unwrap_or(0);
    (significant - 1) * 8 + (8 - top.leading_zeros() as usize)
}

/// RFC 5280 §5.2.3: a CRL must carry a CRL number, and it must not be critical.
pub(super) fn check_crl_number(
    parsed: Result<
        &x509_parser::revocation_list::CertificateRevocationList<'_>,
        &x509_parser::nom::Err<x509_parser::error::X509Error>,
    >,
) -> Result<(), String> {
    let parsed = parsed.map_err(|e| format!("unusable CRL: {}", super::error::describe_x509(e)))?;
    let number = parsed
        .extensions()
        .iter()
        .find(|ext| ext.oid == x509_parser::oid_registry::OID_X509_EXT_CRL_NUMBER);
    match number {
        None => Err("the CRL has no CRL number (RFC 5280 5.2.3 requires one)".into()),
        Some(ext) if ext.critical => Err("the CRL marks its CRL number critical (RFC 5280 5.2.3: it must not)".into()),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{DistinguishedName, IsCa, KeyUsagePurpose};
    use time::macros::datetime;

    use super::*;
    use crate::pki::testing::*;

    #[test]
    fn modulus_bits_ignores_sign_padding() {
        assert_eq!(modulus_bits(&[0x00, 0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x00]), 0);
    }

    #[test]
    fn the_root_must_be_valid_at_the_verification_time() {
        let mut params = ca_params("root");
        params.not_after = datetime!(2030-03-01 0:00 UTC);
        let expired = Ca::root(params);
        match verify(&expired, &expired.leaf(&leaf_params()), &[]) {
            Err(PkiError::Expired {
                subject: Some(subject), ..
            }) => assert!(subject.contains("root"), "{subject}"),
            other => panic!("expected an expired root, got {other:?}"),
        }

        let mut params = ca_params("root");
        params.not_before = datetime!(2030-07-01 0:00 UTC);
        let early = Ca::root(params);
        assert!(matches!(
            verify(&early, &early.leaf(&leaf_params()), &[]),
            Err(PkiError::NotYetValid { .. })
        ));

        // Whole seconds, as webpki compares: a root ending exactly now is still valid 5 ms later.
        let mut params = ca_params("root");
        params.not_after = NOW;
        let ending = Ca::root(params);
        let later = NOW + time::Duration::milliseconds(5);
        assert_accepted(verify_at(&store(&ending.der), &ending.leaf(&leaf_params()), &[], later));
    }

    #[test]
    fn the_root_must_be_a_proper_ca_certificate() {
        let mut params = ca_params("root");
        params.is_ca = IsCa::NoCa;
        let root = Ca::root(params);
        assert_violation(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            ProfileRule::IssuerWithoutBasicConstraints,
        );

        let mut params = ca_params("root");
        params.is_ca = IsCa::NoCa;
        params.custom_extensions = vec![extension(&[2, 5, 29, 19], &[0x30, 0x03, 0x01, 0x01, 0xff], false)];
        let root = Ca::root(params);
        assert_violation(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            ProfileRule::NonCriticalBasicConstraints,
        );

        let mut params = ca_params("root");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let root = Ca::root(params);
        assert_violation(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            ProfileRule::IssuerWithoutKeyCertSign,
        );

        let mut params = ca_params("root");
        params.custom_extensions = vec![extension(&[1, 3, 6, 1, 4, 1, 55738, 666, 1], &[0x05, 0x00], true)];
        let root = Ca::root(params);
        assert_violation(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            ProfileRule::UnknownCriticalExtension,
        );
    }

    #[test]
    fn an_issuer_needs_a_subject() {
        let root = Ca::root(ca_params("root"));
        let mut params = ca_params("unused");
        params.distinguished_name = DistinguishedName::new();
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        assert_violation(
            verify(&root, &leaf, std::slice::from_ref(&intermediate.der)),
            ProfileRule::IssuerWithEmptySubject,
        );
    }

    #[test]
    fn key_identifiers_must_not_be_critical() {
        // On the root: webpki never parses it. (webpki refuses an end entity or intermediate
        // with a critical key identifier itself, as an unsupported critical extension.)
        let mut aki = vec![0x30, 0x16, 0x80, 0x14];
        aki.extend([0x11; 20]);
        let mut params = ca_params("root");
        params.custom_extensions = vec![extension(&[2, 5, 29, 35], &aki, true)];
        let root = Ca::root(params);
        assert_violation(
            verify(&root, &root.leaf(&leaf_params()), &[]),
            ProfileRule::CriticalAuthorityKeyId,
        );

        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.use_authority_key_identifier_extension = false;
        params.custom_extensions = vec![extension(&[2, 5, 29, 35], &aki, true)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            ProfileRule::UnknownCriticalExtension,
        );
    }

    #[test]
    fn name_constraints_belong_to_cas_and_are_never_empty() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        let mut permitted = vec![0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x82, 0x0b];
        permitted.extend(b"example.com");
        params.custom_extensions = vec![extension(&[2, 5, 29, 30], &permitted, true)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            ProfileRule::EndEntityNameConstraints,
        );

        let mut params = ca_params("intermediate");
        params.custom_extensions = vec![extension(&[2, 5, 29, 30], &[0x30, 0x00], true)];
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        assert_violation(
            verify(&root, &leaf, std::slice::from_ref(&intermediate.der)),
            ProfileRule::NameConstraintsWithoutSubtrees,
        );
    }

    #[test]
    fn policy_constraints_must_be_critical() {
        let root = Ca::root(ca_params("root"));
        let mut params = ca_params("intermediate");
        params.custom_extensions = vec![extension(&[2, 5, 29, 36], &[0x30, 0x03, 0x80, 0x01, 0x00], false)];
        let intermediate = root.intermediate(params);
        let leaf = intermediate.leaf(&leaf_params());
        assert_violation(
            verify(&root, &leaf, std::slice::from_ref(&intermediate.der)),
            ProfileRule::NonCriticalPolicyConstraints,
        );
    }

    #[test]
    fn an_end_entity_may_not_assert_key_cert_sign() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            ProfileRule::KeyCertSignWithoutCa,
        );
    }

    #[test]
    fn an_empty_subject_needs_a_critical_subject_alternative_name() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.distinguished_name = DistinguishedName::new();
        // rcgen marks the SAN critical when the subject is empty: accepted.
        assert_accepted(verify(&root, &root.leaf(&params), &[]));

        params.subject_alt_names = Vec::new();
        let mut san = vec![0x30, 0x0d, 0x82, 0x0b];
        san.extend(b"example.com");
        params.custom_extensions = vec![extension(&[2, 5, 29, 17], &san, false)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            ProfileRule::EmptySubjectNonCriticalAltName,
        );
    }

    #[test]
    fn a_malformed_structural_extension_is_refused() {
        let root = Ca::root(ca_params("root"));
        let mut params = leaf_params();
        params.custom_extensions = vec![extension(&[1, 3, 6, 1, 5, 5, 7, 1, 1], b"malformed", false)];
        assert_violation(
            verify(&root, &root.leaf(&params), &[]),
            ProfileRule::MalformedExtension {
                oid: "1.3.6.1.5.5.7.1.1".into(),
            },
        );
    }

    #[test]
    fn the_end_entity_key_must_be_one_tessera_can_use() {
        let root = Ca::root(ca_params("root"));
        assert_violation(
            verify(&root, &root.issue(&leaf_params(), &RsaKey::with_bits(1024)), &[]),
            ProfileRule::UnacceptablePublicKey,
        );
        assert_accepted(verify(
            &root,
            &root.issue(&leaf_params(), &RsaKey::with_bits(2048)),
            &[],
        ));
    }

    #[test]
    fn a_crl_needs_a_non_critical_crl_number() {
        let root = Ca::root(ca_params("root"));
        let mut store = store(&root.der);
        store.add_crl(&hand_made_crl(&root, Some(false)), "good").unwrap();
        for (crl, needle) in [(None, "no CRL number"), (Some(true), "critical")] {
            match store.add_crl(&hand_made_crl(&root, crl), "crl") {
                Err(error @ PkiError::UnacceptableCrl { .. }) => {
                    assert!(error.is_rejection());
                    assert!(error.to_string().contains(needle), "{error}");
                }
                other => panic!("expected the CRL to be refused, got {other:?}"),
            }
        }
        assert_eq!(store.crl_count(), 1);
        assert_accepted(verify_at(&store, &root.leaf(&leaf_params()), &[], NOW));
    }

    /// Every rule's message is the one Tessera has always printed, and cites the section of
    /// RFC 5280 it comes from ([`ProfileRule::citation`]); the four that cite none are named.
    #[test]
    fn every_profile_rule_cites_its_section() {
        use ProfileRule as P;
        let malformed = P::MalformedExtension {
            oid: "1.3.6.1.5.5.7.1.1".into(),
        };
        let unparsable = P::Unparsable {
            reason: RejectionReason::UnsupportedCertVersion,
        };
        let table = [
            (
                P::CriticalAuthorityKeyId,
                "its authority key identifier is critical (RFC 5280 4.2.1.1: it must not be)",
            ),
            (
                P::CriticalSubjectKeyId,
                "its subject key identifier is critical (RFC 5280 4.2.1.2: it must not be)",
            ),
            (
                P::NonCriticalPolicyConstraints,
                "its policy constraints are not critical (RFC 5280 4.2.1.11: they must be)",
            ),
            (
                P::NameConstraintsWithoutSubtrees,
                "its name constraints hold no subtree (RFC 5280 4.2.1.10: at least one is required)",
            ),
            (
                P::EmptySubtreeList,
                "its name constraints hold an empty list of subtrees (RFC 5280 4.2.1.10)",
            ),
            (
                P::EmptyAuthorityInfoAccess,
                "its authority information access is empty (RFC 5280 4.2.2.1)",
            ),
            (malformed.clone(), "its extension 1.3.6.1.5.5.7.1.1 is malformed"),
            (P::DuplicateExtension, "an extension appears twice (RFC 5280 4.2)"),
            (
                P::EndEntityNameConstraints,
                "it is an end entity with name constraints (RFC 5280 4.2.1.10: only CAs may have them)",
            ),
            (
                P::KeyCertSignWithoutCa,
                "its key usage asserts keyCertSign without cA (RFC 5280 4.2.1.9)",
            ),
            (
                P::EmptySubjectNonCriticalAltName,
                "its subject is empty and its subject alternative name is not critical (RFC 5280 4.2.1.6)",
            ),
            (
                P::UnacceptablePublicKey,
                "its public key is not one Tessera accepts (Ed25519, ECDSA P-256 or P-384, RSA of 2048 to 8192 bits)",
            ),
            (
                P::IssuerWithEmptySubject,
                "it is a CA with an empty subject (RFC 5280 4.1.2.6)",
            ),
            (
                P::IssuerWithoutBasicConstraints,
                "it issues certificates but has no basic constraints (RFC 5280 4.2.1.9)",
            ),
            (
                P::IssuerNotCa,
                "it issues certificates but its basic constraints do not assert cA (RFC 5280 4.2.1.9)",
            ),
            (
                P::NonCriticalBasicConstraints,
                "its basic constraints are not critical (RFC 5280 4.2.1.9: a CA's must be)",
            ),
            (
                P::IssuerWithoutKeyCertSign,
                "it issues certificates but its key usage lacks keyCertSign (RFC 5280 4.2.1.3)",
            ),
            (
                P::UnknownCriticalExtension,
                "it has a critical extension Tessera does not recognise (RFC 5280 4.2)",
            ),
            (P::NotX509, "it cannot be parsed as an X.509 certificate"),
            (
                unparsable.clone(),
                "it cannot be parsed as a certificate (a certificate is not X.509 version 3)",
            ),
        ];
        let mut uncited = Vec::new();
        for (rule, message) in table {
            assert_eq!(rule.to_string(), message);
            match rule.citation() {
                Some(citation) => {
                    assert!(citation.starts_with("RFC 5280 4."), "{citation}");
                    assert!(
                        message.contains(&format!("({citation})")) || message.contains(&format!("({citation}:")),
                        "{message} does not cite {citation}"
                    );
                }
                None => uncited.push(rule),
            }
        }
        assert_eq!(uncited, [malformed, P::UnacceptablePublicKey, P::NotX509, unparsable]);
    }
}
