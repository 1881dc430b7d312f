//! Library-level behaviour of `tessera::sign`: round trips, every rejection the issue lists, and
//! limits checked before allocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use ed25519_dalek::Signer as _;
use support::{Pki, large_certificate, now, seed};
use tessera::ca::{Profile, RevocationReason};
use tessera::pki::{KeyAlgorithm, PkiError, PrivateKey};
use tessera::sign::{
    Bundle, CheckTime, HashAlgorithm, MAX_BUNDLE_SIZE, SignError, SignRequest, Signer, SignerId, Statement, Verifier,
    embed, generate_key_pair, load_verified,
};

fn module() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn request() -> SignRequest {
    SignRequest::new("module.so", now() - time::Duration::hours(1))
}

#[test]
fn detached_round_trip_through_files() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, serial) = pki.code_signer(now() - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let data = module();
    let bundle = signer.sign_bytes(&data, &request()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("module.so");
    std::fs::write(&path, &data).unwrap();
    std::fs::write(dir.path().join("module.so.sig"), bundle.to_pem()).unwrap();

    let verifier = Verifier::new(pki.trust()).at(now()).require_name("module.so");
    let loaded = load_verified(&path, &verifier).unwrap();
    assert_eq!(loaded.bytes(), &data[..]);
    let v = loaded.verification();
    assert_eq!(v.name, "module.so");
    assert_eq!(v.length, data.len() as u64);
    assert_eq!(v.signer.serial.as_deref(), Some(serial.as_str()));
    assert_eq!(v.signer.chain.len(), 2);
    assert!(!v.embedded);
    assert_eq!(v.digest, tessera::pki::hex(&HashAlgorithm::Sha3_256.digest(&data)));
}

#[test]
fn embedded_round_trip_gives_back_the_exact_payload() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let data = module();
    let req = request().with_hash(HashAlgorithm::Sha3_512);
    let bundle = signer.sign_bytes(&data, &req).unwrap();
    let mut file = data.clone();
    file.extend_from_slice(&embed::trailer(&bundle).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("module.so.signed");
    std::fs::write(&path, &file).unwrap();
    let verifier = Verifier::new(pki.trust()).at(now());
    let loaded = verifier.load_verified(&path, None).unwrap();
    assert_eq!(loaded.bytes(), &data[..]);
    assert!(loaded.verification().embedded);
    assert_eq!(loaded.verification().hash, HashAlgorithm::Sha3_512);

    // One byte appended after the footer breaks the layout: no signature is found then, so a
    // detached one is looked for and is absent.
    let mut longer = file.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(matches!(
        verifier.load_verified(&path, None),
        Err(SignError::NoSignature { .. })
    ));
    // A byte inserted into the payload: the payload is longer than signed.
    let mut inserted = data.clone();
    inserted.insert(10, 0);
    inserted.extend_from_slice(&embed::trailer(&bundle).unwrap());
    std::fs::write(&path, &inserted).unwrap();
    assert!(matches!(
        verifier.load_verified(&path, None),
        Err(SignError::Extended { .. })
    ));
    // A byte removed from the payload.
    let mut removed = data[1..].to_vec();
    removed.extend_from_slice(&embed::trailer(&bundle).unwrap());
    std::fs::write(&path, &removed).unwrap();
    assert!(matches!(
        verifier.load_verified(&path, None),
        Err(SignError::Truncated { .. })
    ));
}

#[test]
fn truncated_extended_and_tampered_streams_are_rejected() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let data = module();
    let bundle = signer.sign_bytes(&data, &request()).unwrap();
    let verifier = Verifier::new(pki.trust()).at(now());
    let r = verifier.verify_reader(&bundle, &data[..data.len() - 1], "m");
    assert!(matches!(r, Err(SignError::Truncated { expected, actual }) if expected == 200_000 && actual == 199_999));
    let mut longer = data.clone();
    longer.push(b'!');
    let r = verifier.verify_reader(&bundle, &longer[..], "m");
    assert!(matches!(r, Err(SignError::Extended { expected: 200_000 })));
    let mut changed = data.clone();
    changed[123_456] ^= 0x40;
    let r = verifier.verify_reader(&bundle, &changed[..], "m");
    assert!(matches!(r, Err(SignError::DigestMismatch)));
    assert!(r.unwrap_err().is_rejection());
    // Detached file that grew after signing: refused before it is read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    std::fs::write(&path, &longer).unwrap();
    std::fs::write(dir.path().join("m.sig"), bundle.to_pem()).unwrap();
    assert!(matches!(
        verifier.load_verified(&path, None),
        Err(SignError::Extended { .. })
    ));
}

#[test]
fn empty_module_signs_and_verifies_and_cannot_be_padded() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let bundle = signer.sign_bytes(&[], &request()).unwrap();
    assert_eq!(bundle.statement().length, 0);
    let verifier = Verifier::new(pki.trust()).at(now());
    let loaded = verifier.verify_reader(&bundle, &[][..], "empty").unwrap();
    assert!(loaded.bytes().is_empty());
    assert!(matches!(
        verifier.verify_reader(&bundle, &[0u8][..], "empty"),
        Err(SignError::Extended { expected: 0 })
    ));
}

#[test]
fn wrong_root_is_untrusted() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let other = Pki::named("Other Root", now() - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let bundle = Signer::with_certificate(&key, chain)
        .unwrap()
        .sign_bytes(b"abc", &request())
        .unwrap();
    let err = Verifier::new(other.trust())
        .at(now())
        .verify_reader(&bundle, &b"abc"[..], "m")
        .unwrap_err();
    assert!(
        matches!(
            err,
            SignError::Untrusted {
                when: CheckTime::SigningTime,
                source: PkiError::UnknownIssuer
            }
        ),
        "{err:?}"
    );
    assert!(err.is_rejection());
}

#[test]
fn server_certificate_is_refused_by_signer_and_verifier() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, _) = pki.issue(
        Profile::Server,
        "www.example.com",
        KeyAlgorithm::Ed25519,
        now() - time::Duration::days(5),
        None,
    );
    let err = Signer::with_certificate(&key, chain.clone()).unwrap_err();
    assert!(
        matches!(err, SignError::NotCodeSigning { ref usages, .. } if usages.contains("serverAuth")),
        "{err:?}"
    );

    // Forge a bundle by hand with the server key: the verifier must still say no.
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed(&key));
    let hash = ring::digest::digest(&ring::digest::SHA256, &chain[0]);
    let statement = Statement {
        hash: HashAlgorithm::Sha3_256,
        digest: HashAlgorithm::Sha3_256.digest(b"abc"),
        length: 3,
        name: "m".into(),
        signed_at: now() - time::Duration::hours(1),
        signer: SignerId::Certificate(hash.as_ref().try_into().unwrap()),
    };
    let signature = signing.sign(&statement.to_der()).to_bytes();
    let bundle = Bundle::from_parts(statement, signature, chain);
    let err = Verifier::new(pki.trust())
        .at(now())
        .verify_reader(&bundle, &b"abc"[..], "m")
        .unwrap_err();
    assert!(
        matches!(
            err,
            SignError::Untrusted {
                source: PkiError::WrongUsage { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn revoked_signer_is_rejected_with_a_crl() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, serial) = pki.code_signer(now() - time::Duration::days(5));
    let bundle = Signer::with_certificate(&key, chain)
        .unwrap()
        .sign_bytes(b"abc", &request())
        .unwrap();
    let crl = pki
        .ca
        .revoke(
            &serial.parse().unwrap(),
            RevocationReason::KeyCompromise,
            now() - time::Duration::minutes(30),
            Duration::from_secs(7 * 86_400),
        )
        .unwrap();
    // Without the CRL the module still verifies; with it, it does not.
    assert!(
        Verifier::new(pki.trust())
            .at(now())
            .verify_reader(&bundle, &b"abc"[..], "m")
            .is_ok()
    );
    let mut trust = pki.trust();
    trust.add_crl(&crl, "crl").unwrap();
    let err = Verifier::new(trust)
        .at(now())
        .verify_reader(&bundle, &b"abc"[..], "m")
        .unwrap_err();
    match err {
        SignError::Untrusted {
            source: PkiError::Revoked { serial: s, reason },
            ..
        } => {
            assert_eq!(s, serial);
            assert_eq!(reason, RevocationReason::KeyCompromise);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn key_certificate_mismatch_and_wrong_key_types_are_refused() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (_, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let other = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
    assert!(matches!(
        Signer::with_certificate(&other, chain.clone()),
        Err(SignError::KeyMismatch { .. })
    ));
    let p256 = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
    assert!(matches!(
        Signer::with_certificate(&p256, chain),
        Err(SignError::NotEd25519 { .. })
    ));
    // The CA no longer issues a P-256 code-signing certificate (it could never sign a module);
    // a certificate with a P-256 key is still refused by the signer.
    assert!(matches!(
        pki.ca.issue(
            &tessera::ca::IssueRequest::new(Profile::CodeSigning, "P256 Signer").with_key_algorithm(KeyAlgorithm::P256),
            now() - time::Duration::days(5)
        ),
        Err(tessera::ca::CaError::InvalidRequest { field: "key-type", .. })
    ));
    let (p_key, p_chain, _) = pki.issue(
        Profile::Client,
        "P256 Signer",
        KeyAlgorithm::P256,
        now() - time::Duration::days(5),
        None,
    );
    assert!(matches!(
        Signer::with_certificate(&p_key, p_chain),
        Err(SignError::NotEd25519 { .. })
    ));
}

#[test]
fn expired_certificate_is_refused_at_sign_time_and_at_verify_time() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let issued_at = now() - time::Duration::days(5);
    let (key, chain, _) = pki.issue(
        Profile::CodeSigning,
        "Short Lived",
        KeyAlgorithm::Ed25519,
        issued_at,
        Some(Duration::from_secs(86_400)),
    );
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let err = signer.sign_bytes(b"abc", &request()).unwrap_err();
    assert!(matches!(err, SignError::CertificateNotValid { .. }), "{err:?}");
    // Signed while valid, verified after expiry: refused "now".
    let bundle = signer
        .sign_bytes(b"abc", &SignRequest::new("m", issued_at + time::Duration::hours(1)))
        .unwrap();
    let err = Verifier::new(pki.trust())
        .at(now())
        .verify_reader(&bundle, &b"abc"[..], "m")
        .unwrap_err();
    assert!(
        matches!(
            err,
            SignError::Untrusted {
                when: CheckTime::Now,
                source: PkiError::Expired { .. }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn wrong_name_and_future_signatures_are_rejected() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain).unwrap();
    let bundle = signer.sign_bytes(b"abc", &request()).unwrap();
    let err = Verifier::new(pki.trust())
        .at(now())
        .require_name("other.so")
        .verify_reader(&bundle, &b"abc"[..], "m")
        .unwrap_err();
    assert!(matches!(err, SignError::WrongName { ref actual, .. } if actual == "module.so"));
    let future = signer
        .sign_bytes(b"abc", &SignRequest::new("m", now() + time::Duration::hours(1)))
        .unwrap();
    let err = Verifier::new(pki.trust())
        .at(now())
        .verify_reader(&future, &b"abc"[..], "m")
        .unwrap_err();
    assert!(matches!(err, SignError::SignedInFuture { .. }), "{err:?}");
}

#[test]
fn raw_key_mode_round_trip_and_cross_mode_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(&dir.path().join("me"), None).unwrap();
    let key = PrivateKey::load(&pair.private_key, None).unwrap();
    let signer = Signer::with_raw_key(&key).unwrap();
    assert_eq!(signer.public_key(), pair.public_key);
    let bundle = signer.sign_bytes(b"raw module", &request()).unwrap();
    assert!(bundle.chain().is_empty());
    let verifier = Verifier::with_public_key(pair.public_key).at(now());
    let ok = verifier.verify_reader(&bundle, &b"raw module"[..], "m").unwrap();
    assert_eq!(ok.verification().signer.key_id, pair.public_key.key_id().to_string());

    let stranger = generate_key_pair(&dir.path().join("other"), None).unwrap();
    let err = Verifier::with_public_key(stranger.public_key)
        .at(now())
        .verify_reader(&bundle, &b"raw module"[..], "m")
        .unwrap_err();
    assert!(matches!(err, SignError::WrongKey { .. }));

    let pki = Pki::new(now() - time::Duration::days(10));
    let err = Verifier::new(pki.trust())
        .at(now())
        .verify_reader(&bundle, &b"raw module"[..], "m")
        .unwrap_err();
    assert!(matches!(err, SignError::RawKeySignature { .. }));
    let (ckey, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let cert_bundle = Signer::with_certificate(&ckey, chain)
        .unwrap()
        .sign_bytes(b"x", &request())
        .unwrap();
    let err = verifier.verify_reader(&cert_bundle, &b"x"[..], "m").unwrap_err();
    assert!(matches!(err, SignError::CertificateSignature { .. }));
}

#[test]
fn absurd_sizes_are_rejected_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    // A detached signature file far over the cap (sparse, so the test stays cheap).
    let sig = dir.path().join("m.sig");
    let f = std::fs::File::create(&sig).unwrap();
    f.set_len(1 << 40).unwrap();
    assert!(matches!(Bundle::load(&sig), Err(SignError::BundleTooLarge { size, .. }) if size == 1 << 40));
    // An embedded footer claiming a 4 GiB bundle.
    let path = dir.path().join("e");
    let mut bytes = b"payload".to_vec();
    bytes.extend_from_slice(&embed::footer(0).unwrap());
    let n = bytes.len();
    bytes[n - 32..n - 28].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let v = Verifier::with_public_key(generate_key_pair(&dir.path().join("k"), None).unwrap().public_key).at(now());
    assert!(matches!(
        v.load_verified(&path, None),
        Err(SignError::BundleTooLarge { .. })
    ));
    // A bundle over 64 KiB in memory.
    let big = vec![b'A'; MAX_BUNDLE_SIZE + 1];
    assert!(matches!(
        Bundle::from_pem(&big, "b"),
        Err(SignError::BundleTooLarge { .. })
    ));
    // DER claiming a huge inner length.
    assert!(Bundle::from_der(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff], "b").is_err());
    // A statement with an absurd length field is refused at parse time.
    let mut s = Statement {
        hash: HashAlgorithm::Sha3_256,
        digest: vec![0; 32],
        length: u64::MAX,
        name: "m".into(),
        signed_at: now(),
        signer: SignerId::RawKey([1; 32]),
    };
    assert!(Statement::from_der(&s.to_der(), "s").is_err());
    s.length = tessera::sign::MAX_MODULE_LEN;
    assert!(Statement::from_der(&s.to_der(), "s").is_ok());
}

#[test]
fn signed_huge_length_is_not_allocated() {
    // A genuine signature over an enormous stated length: the verifier checks the file's size
    // and refuses before allocating or reading.
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(&dir.path().join("k"), None).unwrap();
    let key = PrivateKey::load(&pair.private_key, None).unwrap();
    let signer = Signer::with_raw_key(&key).unwrap();
    let bundle = signer.sign_digest(&[0; 32], 1 << 62, &request()).unwrap();
    let path = dir.path().join("m");
    std::fs::write(&path, b"tiny").unwrap();
    std::fs::write(dir.path().join("m.sig"), bundle.to_pem()).unwrap();
    let v = Verifier::with_public_key(pair.public_key).at(now());
    assert!(
        matches!(v.load_verified(&path, None), Err(SignError::Truncated { expected, actual: 4 }) if expected == 1 << 62)
    );
}

/// DER `SEQUENCE` around `content` (any length up to 64 KiB).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => {
            out.push(0x82);
            out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

#[test]
fn a_chain_entry_that_only_holds_a_certificate_as_pem_text_is_malformed() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
    let signer = Signer::with_certificate(&key, chain.clone()).unwrap();
    let good = signer.sign_bytes(b"module", &request()).unwrap();
    // SEQUENCE { "junk" ‖ PEM of the genuine signer certificate }: not a certificate.
    let mut content = b"junk".to_vec();
    content.extend_from_slice(tessera::pki::pem::to_pem(tessera::pki::pem::CERTIFICATE, &chain[0]).as_bytes());
    let crafted = der_sequence(&content);
    let bad = Bundle::from_parts(good.statement().clone(), *good.signature(), vec![crafted.into()]);
    for result in [
        Bundle::from_der(&bad.to_der(), "crafted.sig"),
        Bundle::from_pem(bad.to_pem().as_bytes(), "crafted.sig"),
    ] {
        match result {
            Err(SignError::MalformedBundle { what, reason }) => {
                assert_eq!(what, "crafted.sig");
                assert!(
                    reason.starts_with("certificate 1 is not a well-formed X.509 certificate"),
                    "{reason}"
                );
            }
            other => panic!("crafted chain entry accepted or misreported: {other:?}"),
        }
    }
    // The genuine chain still parses.
    assert_eq!(Bundle::from_pem(good.to_pem().as_bytes(), "good.sig").unwrap(), good);
}

#[test]
fn a_bundle_over_the_size_limit_is_never_produced() {
    let pki = Pki::new(now() - time::Duration::days(10));
    let (key, mut chain, _) = pki.code_signer(now() - time::Duration::days(5));
    for i in 0..6 {
        chain.push(large_certificate(&format!("Filler {i}"), 9000));
    }
    let signer = Signer::with_certificate(&key, chain.clone()).unwrap();
    match signer.sign_bytes(b"module", &request()) {
        Err(SignError::BundleTooLarge { what, size, max }) => {
            assert_eq!(what, "for \"module.so\"");
            assert!(size > MAX_BUNDLE_SIZE as u64, "{size}");
            assert_eq!(max, MAX_BUNDLE_SIZE as u64);
        }
        other => panic!("oversized bundle not refused: {other:?}"),
    }
    // Assembled by hand, such a bundle cannot be embedded either: no clamped footer.
    let statement = Statement {
        hash: HashAlgorithm::Sha3_256,
        digest: vec![0; 32],
        length: 6,
        name: "module.so".into(),
        signed_at: now(),
        signer: SignerId::RawKey([1; 32]),
    };
    let big = Bundle::from_parts(statement, [0; 64], chain);
    assert!(big.to_pem().len() > MAX_BUNDLE_SIZE);
    assert!(matches!(
        embed::trailer(&big),
        Err(SignError::BundleTooLarge { size, .. }) if size == big.to_pem().len() as u64
    ));
}

#[test]
fn a_root_after_the_signer_certificate_is_refused() {
    let at = now() - time::Duration::days(10);
    let pki = Pki::new(at);
    let (key, mut chain, _) = pki.code_signer(now() - time::Duration::days(5));
    chain.push(pki.root());
    match Signer::with_certificate(&key, chain) {
        Err(SignError::RootInChain { subject, position }) => {
            assert_eq!(subject, "CN=Test Root");
            assert_eq!(position, 2);
        }
        other => panic!("root in chain accepted: {other:?}"),
    }

    // Intermediates are fine; the root above them is not.
    let mut request = tessera::ca::InitRequest::new("Test Intermediate");
    request.key_algorithm = KeyAlgorithm::Ed25519;
    let intermediate = pki
        .ca
        .init_intermediate(&pki.dir.path().join("intermediate"), &request, None, at)
        .unwrap();
    let issued = intermediate
        .issue(
            &tessera::ca::IssueRequest::new(Profile::CodeSigning, "Deep Signer")
                .with_key_algorithm(KeyAlgorithm::Ed25519),
            at,
        )
        .unwrap();
    let key = issued.key.unwrap();
    assert_eq!(issued.chain.len(), 2);
    let signer = Signer::with_certificate(&key, issued.chain.clone()).unwrap();
    let bundle = signer.sign_bytes(b"deep", &request_for("deep.so")).unwrap();
    let verifier = Verifier::new(pki.trust()).at(now());
    assert!(verifier.verify_reader(&bundle, &b"deep"[..], "deep.so").is_ok());
    let mut with_root = issued.chain;
    with_root.push(pki.root());
    assert!(matches!(
        Signer::with_certificate(&key, with_root),
        Err(SignError::RootInChain { position: 3, .. })
    ));
}

fn request_for(name: &str) -> SignRequest {
    SignRequest::new(name, now() - time::Duration::hours(1))
}
