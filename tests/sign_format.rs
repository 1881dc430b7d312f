//! The example in `docs/FORMAT.md` is reproduced byte for byte from a fixed key, module and
//! time: the statement (hex), the armoured bundle, and the embedded footer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

use tessera::pki::{PrivateKey, hex};
use tessera::sign::{Bundle, HashAlgorithm, PublicKey, SignRequest, Signer, Verifier, embed};

const FORMAT: &str = include_str!("../docs/FORMAT.md");

/// RFC 8032 section 7.1 TEST 1 secret key, as the example's signing key.
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn example_key() -> PrivateKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend((0..32).map(|i| u8::from_str_radix(&SEED[2 * i..2 * i + 2], 16).unwrap()));
    PrivateKey::from_pkcs8_der(&der, "example key").unwrap()
}

fn example_bundle() -> Bundle {
    let signer = Signer::with_raw_key(&example_key()).unwrap();
    let request = SignRequest::new("hello.txt", time::macros::datetime!(2030-01-01 00:00:00 UTC))
        .with_hash(HashAlgorithm::Sha3_256);
    signer.sign_bytes(b"Hello, Tessera!\n", &request).unwrap()
}

/// The text between `<!-- begin NAME -->` + a code fence line and the closing fence.
fn section(name: &str) -> String {
    let begin = format!("<!-- begin {name} -->");
    let start = FORMAT.find(&begin).unwrap_or_else(|| panic!("FORMAT.md lacks {begin}"));
    let after = &FORMAT[start + begin.len()..];
    let fence = after.find("```").unwrap();
    let body_start = fence + after[fence..].find('\n').unwrap() + 1;
    let body_end = body_start + after[body_start..].find("```").unwrap();
    after[body_start..body_end].to_string()
}

fn wrap_hex(bytes: &[u8]) -> String {
    hex(bytes)
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect()
}

#[test]
fn example_statement_bundle_and_footer_match_the_spec() {
    let bundle = example_bundle();
    if std::env::var_os("TESSERA_PRINT_EXAMPLE").is_some() {
        println!("STATEMENT\n{}", wrap_hex(bundle.statement_der()));
        println!("BUNDLE\n{}", bundle.to_pem());
        println!("FOOTER\n{}", wrap_hex(&embed::footer(bundle.to_pem().len()).unwrap()));
        println!(
            "PUBKEY\n{}",
            Signer::with_raw_key(&example_key()).unwrap().public_key().to_pem()
        );
        println!(
            "KEYID {}",
            Signer::with_raw_key(&example_key()).unwrap().public_key().key_id()
        );
    }
    assert_eq!(section("example-statement"), wrap_hex(bundle.statement_der()));
    assert_eq!(section("example-bundle"), bundle.to_pem());
    assert_eq!(
        section("example-footer"),
        wrap_hex(&embed::footer(bundle.to_pem().len()).unwrap())
    );
    let public = Signer::with_raw_key(&example_key()).unwrap().public_key();
    assert_eq!(section("example-public-key"), public.to_pem());
    assert!(FORMAT.contains(&format!("key id `{}`", public.key_id())));
}

#[test]
fn example_bundle_in_the_spec_verifies() {
    let bundle = Bundle::from_pem(section("example-bundle").as_bytes(), "FORMAT.md").unwrap();
    let public = PublicKey::from_pem(section("example-public-key").as_bytes(), "FORMAT.md").unwrap();
    let verifier = Verifier::with_public_key(public)
        .at(time::macros::datetime!(2030-01-02 00:00:00 UTC))
        .require_name("hello.txt");
    let verified = verifier
        .verify_reader(&bundle, &b"Hello, Tessera!\n"[..], "hello.txt")
        .unwrap();
    assert_eq!(verified.bytes(), b"Hello, Tessera!\n");
}
