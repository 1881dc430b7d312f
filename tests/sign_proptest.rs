//! Property tests: every single-bit flip in a module, its detached bundle (armoured or DER), or
//! a file with an embedded signature is rejected; signing and verifying round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use support::{Pki, now};
use tessera::sign::{Bundle, SignRequest, Signer, Verifier, embed};

struct Fixture {
    _pki: Pki,
    verifier: Verifier,
    signer: Signer,
    module: Vec<u8>,
    bundle: Bundle,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pki = Pki::new(now() - time::Duration::days(10));
        let (key, chain, _) = pki.code_signer(now() - time::Duration::days(5));
        let signer = Signer::with_certificate(&key, chain).unwrap();
        let module: Vec<u8> = (0..777u32).map(|i| (i * 31 % 256) as u8).collect();
        let bundle = signer
            .sign_bytes(&module, &SignRequest::new("m.so", now() - time::Duration::hours(1)))
            .unwrap();
        let verifier = Verifier::new(pki.trust()).at(now()).require_name("m.so");
        Fixture {
            _pki: pki,
            verifier,
            signer,
            module,
            bundle,
        }
    })
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let index = bit % (out.len() * 8);
    out[index / 8] ^= 1 << (index % 8);
    out
}

/// Parses and verifies an armoured bundle against a module; true when accepted.
fn accepts(pem: &[u8], module: &[u8]) -> bool {
    let f = fixture();
    match Bundle::from_pem(pem, "sig") {
        Ok(bundle) => f.verifier.verify_reader(&bundle, module, "m").is_ok(),
        Err(_) => false,
    }
}

#[test]
fn the_unmodified_inputs_are_accepted() {
    let f = fixture();
    assert!(accepts(f.bundle.to_pem().as_bytes(), &f.module));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bit_flip_in_the_module_is_rejected(bit in any::<usize>()) {
        let f = fixture();
        prop_assert!(!accepts(f.bundle.to_pem().as_bytes(), &flip(&f.module, bit)));
    }

    #[test]
    fn any_bit_flip_in_the_armoured_bundle_is_rejected(bit in any::<usize>()) {
        let f = fixture();
        prop_assert!(!accepts(&flip(f.bundle.to_pem().as_bytes(), bit), &f.module));
    }

    #[test]
    fn any_bit_flip_in_the_bundle_der_is_rejected(bit in any::<usize>()) {
        let f = fixture();
        let flipped = flip(&f.bundle.to_der(), bit);
        let accepted = Bundle::from_der(&flipped, "sig")
            .map(|b| f.verifier.verify_reader(&b, &f.module[..], "m").is_ok())
            .unwrap_or(false);
        prop_assert!(!accepted);
    }

    #[test]
    fn any_bit_flip_in_an_embedded_file_is_rejected(bit in any::<usize>()) {
        let f = fixture();
        let mut file = f.module.clone();
        file.extend_from_slice(&embed::trailer(&f.bundle).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.so");
        std::fs::write(&path, flip(&file, bit)).unwrap();
        prop_assert!(f.verifier.load_verified(&path, None).is_err());
    }

    #[test]
    fn sign_then_verify_round_trips(module in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let f = fixture();
        let bundle = f.signer
            .sign_bytes(&module, &SignRequest::new("m.so", now() - time::Duration::hours(1)))
            .unwrap();
        let parsed = Bundle::from_pem(bundle.to_pem().as_bytes(), "sig").unwrap();
        prop_assert_eq!(&parsed, &bundle);
        let verified = f.verifier.verify_reader(&parsed, &module[..], "m").unwrap();
        prop_assert_eq!(verified.bytes(), &module[..]);
    }
}
