//! Fixtures for the unit tests of `pki`: CAs and leaves made with rcgen at fixed times, and the
//! trust store questions asked of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SigningKey,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use time::macros::datetime;

use super::{PkiError, ProfileRule, TrustStore, Usage, VerifiedChain, VerifyRequest};

pub(crate) const NOW: OffsetDateTime = datetime!(2030-06-01 0:00 UTC);

/// A CA (root or intermediate) made with rcgen.
pub(crate) struct Ca {
    pub(crate) params: CertificateParams,
    pub(crate) key: KeyPair,
    pub(crate) der: CertificateDer<'static>,
}

impl Ca {
    pub(crate) fn root(params: CertificateParams) -> Self {
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Self { params, key, der }
    }

    pub(crate) fn issue(&self, params: &CertificateParams, public: &impl PublicKeyData) -> CertificateDer<'static> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(public, &issuer).unwrap().der().clone()
    }

    pub(crate) fn intermediate(&self, params: CertificateParams) -> Self {
        let key = KeyPair::generate().unwrap();
        let der = self.issue(&params, &key);
        Self { params, key, der }
    }

    pub(crate) fn leaf(&self, params: &CertificateParams) -> CertificateDer<'static> {
        self.issue(params, &KeyPair::generate().unwrap())
    }

    pub(crate) fn subject(&self) -> Vec<u8> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.der).unwrap();
        cert.subject().as_raw().to_vec()
    }
}

pub(crate) fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

pub(crate) fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = datetime!(2030-01-01 0:00 UTC);
    params.not_after = datetime!(2031-01-01 0:00 UTC);
    params
}

pub(crate) fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::new(vec!["example.com".to_string()]).unwrap();
    params.distinguished_name = name("example.com");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from(vec![0x01, 0x02, 0x03]));
    params.not_before = datetime!(2030-01-01 0:00 UTC);
    params.not_after = datetime!(2030-12-01 0:00 UTC);
    params
}

pub(crate) fn extension(oid: &[u64], content: &[u8], critical: bool) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(oid, content.to_vec());
    ext.set_criticality(critical);
    ext
}

pub(crate) fn store(root: &CertificateDer<'static>) -> TrustStore {
    let mut store = TrustStore::new();
    store.add_root(root.clone(), "root").unwrap();
    store
}

pub(crate) fn verify_at(
    store: &TrustStore,
    leaf: &CertificateDer<'_>,
    chain: &[CertificateDer<'_>],
    time: OffsetDateTime,
) -> Result<VerifiedChain, PkiError> {
    store.verify(
        leaf,
        chain,
        &VerifyRequest::new(Usage::Server, time).with_name("example.com"),
    )
}

pub(crate) fn verify(
    root: &Ca,
    leaf: &CertificateDer<'_>,
    chain: &[CertificateDer<'_>],
) -> Result<VerifiedChain, PkiError> {
    verify_at(&store(&root.der), leaf, chain, NOW)
}

#[track_caller]
pub(crate) fn assert_accepted(result: Result<VerifiedChain, PkiError>) {
    if let Err(e) = result {
        panic!("expected the chain to be accepted, got: {e}");
    }
}

#[track_caller]
pub(crate) fn assert_violation(result: Result<VerifiedChain, PkiError>, expected: ProfileRule) {
    match result {
        Err(PkiError::ProfileViolation { rule, .. }) => assert_eq!(rule, expected),
        other => panic!("expected the profile violation {expected:?}, got {other:?}"),
    }
}

/// A DER TLV (lengths up to 65535).
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A v2 CRL by `ca`, revoking nothing, with the CRL number extension as given (`None`:
/// absent; `Some(critical)`). rcgen always writes a proper one, so this is built by hand.
pub(crate) fn hand_made_crl(ca: &Ca, crl_number: Option<bool>) -> CertificateRevocationListDer<'static> {
    let ecdsa_sha256 = tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
    let mut tbs = tlv(0x02, &[0x01]);
    tbs.extend(&ecdsa_sha256);
    tbs.extend(ca.subject());
    tbs.extend(tlv(0x17, b"300101000000Z"));
    tbs.extend(tlv(0x17, b"310101000000Z"));
    // An authority key identifier, then the CRL number if wanted.
    let mut key_id = tlv(0x06, &[0x55, 0x1d, 0x23]);
    key_id.extend(tlv(0x04, &tlv(0x30, &tlv(0x80, &[0x11; 20]))));
    let mut extensions = tlv(0x30, &key_id);
    if let Some(critical) = crl_number {
        let mut number = tlv(0x06, &[0x55, 0x1d, 0x14]);
        if critical {
            number.extend(tlv(0x01, &[0xff]));
        }
        number.extend(tlv(0x04, &tlv(0x02, &[0x07])));
        extensions.extend(tlv(0x30, &number));
    }
    tbs.extend(tlv(0xa0, &tlv(0x30, &extensions)));
    let tbs = tlv(0x30, &tbs);
    let signature = ca.key.sign(&tbs).unwrap();
    let mut bits = vec![0x00];
    bits.extend(signature);
    let mut list = tbs;
    list.extend(ecdsa_sha256);
    list.extend(tlv(0x03, &bits));
    CertificateRevocationListDer::from(tlv(0x30, &list))
}

/// An RSA public key with a made-up modulus of `bits` bits (never used to verify anything).
pub(crate) struct RsaKey(Vec<u8>);

impl RsaKey {
    pub(crate) fn with_bits(bits: usize) -> Self {
        // DER: a leading zero only before a top bit that is set.
        let mut modulus = if bits.is_multiple_of(8) {
            vec![0x00]
        } else {
            vec![0xff >> (8 - bits % 8)]
        };
        modulus.extend(vec![0xc5; bits / 8]);
        let mut seq = tlv(0x02, &modulus);
        seq.extend(tlv(0x02, &[0x01, 0x00, 0x01]));
        Self(tlv(0x30, &seq))
    }
}

impl PublicKeyData for RsaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}
