//! Shared helpers for the `sign_*` tests: a fresh CA per test, at a fixed time.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tempfile::TempDir;
use time::OffsetDateTime;

use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile};
use tessera::pki::{KeyAlgorithm, PrivateKey, TrustStore};

/// The fixed "now" of library tests.
pub fn now() -> OffsetDateTime {
    time::macros::datetime!(2030-06-01 12:00:00 UTC)
}

pub struct Pki {
    pub dir: TempDir,
    pub ca: CertificateAuthority,
}

impl Pki {
    /// A fresh Ed25519 root CA created at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self::named("Test Root", at)
    }

    /// A fresh Ed25519 root CA with the given common name.
    pub fn named(name: &str, at: OffsetDateTime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut request = InitRequest::new(name);
        request.key_algorithm = KeyAlgorithm::Ed25519;
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &request, None, at).unwrap();
        Self { dir, ca }
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.ca.root().clone()
    }

    pub fn trust(&self) -> TrustStore {
        let mut store = TrustStore::new();
        store.add_root(self.root(), "root").unwrap();
        store
    }

    /// Issues a leaf with a fresh key; returns (key, chain without the root, serial).
    pub fn issue(
        &self,
        profile: Profile,
        name: &str,
        algorithm: KeyAlgorithm,
        at: OffsetDateTime,
        lifetime: Option<Duration>,
    ) -> (PrivateKey, Vec<CertificateDer<'static>>, String) {
        let mut request = IssueRequest::new(profile, name).with_key_algorithm(algorithm);
        if let Some(l) = lifetime {
            request = request.with_lifetime(l);
        }
        let issued = self.ca.issue(&request, at).unwrap();
        (issued.key.unwrap(), issued.chain, issued.info.serial)
    }

    pub fn code_signer(&self, at: OffsetDateTime) -> (PrivateKey, Vec<CertificateDer<'static>>, String) {
        self.issue(Profile::CodeSigning, "Module Signer", KeyAlgorithm::Ed25519, at, None)
    }
}

/// The 32-byte seed of an Ed25519 PKCS#8 key (RFC 8410 layout: the last 32 bytes of the
/// inner OCTET STRING that starts at offset 16).
pub fn seed(key: &PrivateKey) -> [u8; 32] {
    key.pkcs8_der()[16..48].try_into().unwrap()
}

/// A certificate of more than `size` bytes of DER (a large private extension), issued by a
/// throwaway CA: not self-signed, not a code-signing certificate. Filler for oversized chains.
pub fn large_certificate(subject: &str, size: usize) -> CertificateDer<'static> {
    let issuer_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut issuer_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    issuer_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Filler Issuer");
    let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, subject);
    let mut content = vec![0x04, 0x82];
    content.extend_from_slice(&u16::try_from(size).unwrap().to_be_bytes());
    content.resize(size + 4, 0x5a);
    params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 55555, 1],
        content,
    ));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let der = cert.der().clone();
    assert!(der.len() > size);
    der
}
