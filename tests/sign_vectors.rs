//! Known-answer tests: SHA-3 (FIPS 202) through the streaming hasher the verifier uses, and
//! Ed25519 (RFC 8032) through the signing and `verify_strict` path module signatures use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use tessera::internal::hash_stream;
use tessera::sign::HashAlgorithm;

/// Parses `KEY = hex` blocks separated by blank lines; `#` starts a comment line.
fn blocks(text: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut current = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY = value");
        current.insert(key.trim().to_string(), value.trim().to_string());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn sha3_fips202_vectors() {
    let vectors = blocks(include_str!("vectors/sha3.txt"));
    assert_eq!(vectors.len(), 8);
    for v in vectors {
        let alg: HashAlgorithm = v["ALG"].parse().unwrap();
        let repeat: usize = v.get("REPEAT").map_or(1, |r| r.parse().unwrap());
        let msg = unhex(&v["MSG"]).repeat(repeat);
        let expected = unhex(&v["MD"]);
        assert_eq!(alg.digest(&msg), expected, "{alg} one-shot, {} bytes", msg.len());
        let streamed = hash_stream(alg, &msg[..], Some(msg.len() as u64), &mut |_| Ok(()), &mut |_| {}).unwrap();
        assert_eq!(streamed.digest, expected, "{alg} streamed");
        assert!(!streamed.extended);
    }
}

#[test]
fn ed25519_rfc8032_vectors() {
    let vectors = blocks(include_str!("vectors/ed25519.txt"));
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let seed: [u8; 32] = unhex(&v["SECRET"]).try_into().unwrap();
        let public: [u8; 32] = unhex(&v["PUBLIC"]).try_into().unwrap();
        let msg = unhex(&v["MSG"]);
        let sig: [u8; 64] = unhex(&v["SIG"]).try_into().unwrap();
        let signing = SigningKey::from_bytes(&seed);
        assert_eq!(signing.verifying_key().to_bytes(), public);
        assert_eq!(signing.sign(&msg).to_bytes(), sig);
        let verifying = VerifyingKey::from_bytes(&public).unwrap();
        verifying.verify_strict(&msg, &Signature::from_bytes(&sig)).unwrap();
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(verifying.verify_strict(&msg, &Signature::from_bytes(&bad)).is_err());
    }
}
