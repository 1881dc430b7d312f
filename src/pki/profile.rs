//! The RFC 5280 profile rules that rustls-webpki leaves out, applied by
//! [`super::TrustStore::verify`] to a path webpki has already accepted. Each rule is a MUST of
//! RFC 5280 that Tessera's own CA meets; `docs/conformance.md` lists them with the x509-limbo
//! cases they close.

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use webpki::EndEntityCert;

use super::PkiError;

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

fn has_empty_subject(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    cert.subject().iter_rdn().next().is_none()
}

/// Rules for every certificate on the path (RFC 5280 §4.2).
pub(super) fn check_extensions(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), String> {
    use x509_parser::extensions::ParsedExtension as P;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            P::AuthorityKeyIdentifier(_) if ext.critical => {
                return Err("its authority key identifier is critical (RFC 5280 4.2.1.1: it must not be)".into());
            }
            P::SubjectKeyIdentifier(_) if ext.critical => {
                return Err("its subject key identifier is critical (RFC 5280 4.2.1.2: it must not be)".into());
            }
            P::PolicyConstraints(_) if !ext.critical => {
                return Err("its policy constraints are not critical (RFC 5280 4.2.1.11: they must be)".into());
            }
            P::NameConstraints(nc)
                if nc.permitted_subtrees.as_ref().is_none_or(Vec::is_empty)
                    && nc.excluded_subtrees.as_ref().is_none_or(Vec::is_empty) =>
            {
                return Err(
                    "its name constraints hold no subtree (RFC 5280 4.2.1.10: at least one is required)".into(),
                );
            }
            P::NameConstraints(nc)
                if nc.permitted_subtrees.as_ref().is_some_and(Vec::is_empty)
                    || nc.excluded_subtrees.as_ref().is_some_and(Vec::is_empty) =>
            {
                return Err("its name constraints hold an empty list of subtrees (RFC 5280 4.2.1.10)".into());
            }
            P::AuthorityInfoAccess(aia) if aia.accessdescs.is_empty() => {
                return Err("its authority information access is empty (RFC 5280 4.2.2.1)".into());
            }
            P::ParseError { .. } if is_structural(&ext.oid) => {
                return Err(format!("its extension {} is malformed", ext.oid));
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
pub(super) fn check_end_entity(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), String> {
    let duplicate = |_| "an extension appears twice (RFC 5280 4.2)".to_string();
    if cert.name_constraints().map_err(duplicate)?.is_some() {
        return Err("it is an end entity with name constraints (RFC 5280 4.2.1.10: only CAs may have them)".into());
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
        return Err("its key usage asserts keyCertSign without cA (RFC 5280 4.2.1.9)".into());
    }
    if has_empty_subject(cert)
        && !cert
            .subject_alternative_name()
            .map_err(duplicate)?
            .is_some_and(|san| san.critical)
    {
        return Err("its subject is empty and its subject alternative name is not critical (RFC 5280 4.2.1.6)".into());
    }
    check_public_key(cert)
}

/// Rules for every issuer on the path, the root included.
pub(super) fn check_issuer(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), String> {
    let duplicate = |_| "an extension appears twice (RFC 5280 4.2)".to_string();
    if has_empty_subject(cert) {
        return Err("it is a CA with an empty subject (RFC 5280 4.1.2.6)".into());
    }
    match cert.basic_constraints().map_err(duplicate)? {
        None => return Err("it issues certificates but has no basic constraints (RFC 5280 4.2.1.9)".into()),
        Some(bc) if !bc.value.ca => {
            return Err("it issues certificates but its basic constraints do not assert cA (RFC 5280 4.2.1.9)".into());
        }
        Some(bc) if !bc.critical => {
            return Err("its basic constraints are not critical (RFC 5280 4.2.1.9: a CA's must be)".into());
        }
        Some(_) => {}
    }
    if cert
        .key_usage()
        .map_err(duplicate)?
        .is_some_and(|ku| !ku.value.key_cert_sign())
    {
        return Err("it issues certificates but its key usage lacks keyCertSign (RFC 5280 4.2.1.3)".into());
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
            subject: subject_of(cert),
            not_before,
            time,
        });
    }
    if let Some(not_after) = at(&validity.not_after).filter(|_| validity.not_after.timestamp() < now) {
        return Err(PkiError::Expired {
            subject: subject_of(cert),
            not_after,
            time,
        });
    }
    match EndEntityCert::try_from(der) {
        Ok(_) => Ok(()),
        Err(webpki::Error::UnsupportedCriticalExtension) => Err(PkiError::ProfileViolation {
            subject: subject_of(cert),
            rule: "it has a critical extension Tessera does not recognise (RFC 5280 4.2)".into(),
        }),
        Err(e) => Err(PkiError::ProfileViolation {
            subject: subject_of(cert),
            rule: format!("it cannot be parsed as a certificate ({e:?})"),
        }),
    }
}

/// Tessera's key policy for end entities: a key one of [`SIGNATURE_ALGORITHMS`] can verify
/// with (rustls would fail the handshake, and `verify` the signature, with any other).
fn check_public_key(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), String> {
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
        Err(
            "its public key is not one Tessera accepts (Ed25519, ECDSA P-256 or P-384, RSA of 2048 to 8192 bits)"
                .into(),
        )
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
pub(super) fn check_crl_profile(crl: &CertificateRevocationListDer<'_>) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl)
        .map_err(|e| format!("unusable CRL: {}", super::error::describe_x509(&e)))?;
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
    use super::*;

    #[test]
    fn modulus_bits_ignores_sign_padding() {
        assert_eq!(modulus_bits(&[0x00, 0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x00]), 0);
    }
}
