//! The fuzz harness: one function per cargo-fuzz target, each feeding outside bytes to the same
//! library functions the tools use. The targets in `fuzz/fuzz_targets/` are one line each; the
//! stable test `tests/fuzz_regressions.rs` includes this file (`#[path]`) and replays every
//! saved crash input in `tests/fuzz_regressions/<target>/` through the same function, so CI
//! guards every fixed crash without the nightly toolchain.
//!
//! A target must never panic: any panic (or libFuzzer-detected crash, leak, timeout or
//! out-of-memory) is a bug in Tessera. The `assert!`s below are properties the library promises
//! (a decoded bundle re-encodes to itself, framed messages are the bytes sent).
//!
//! The fixtures (a root, an intermediate, a leaf, a module-signing key) are derived from fixed
//! Ed25519 seeds, and Ed25519 signatures are deterministic, so every run (and the regression
//! test) sees byte-identical certificates: a saved input means the same thing everywhere. These
//! keys are throwaway values written in this file; they protect nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use time::macros::datetime;

use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile};
use tessera::channel::{self, ChannelStream, ClientSettings, Credentials, RotationPolicy, ServerSettings};
use tessera::pki::{CertificateInfo, CrlInfo, KeyUsage, Passphrase, PrivateKey, TrustStore, Usage, VerifyRequest, pem};
use tessera::sign::{Bundle, SignRequest, Signer, Statement, Verifier};

/// A target's harness function.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the files in `fuzz/fuzz_targets/` and the folders of
/// `tests/fuzz_regressions/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("certificate", certificate),
    ("crl", crl),
    ("csr", csr),
    ("verify", verify),
    ("bundle", bundle),
    ("statement", statement),
    ("embedded", embedded),
    ("pkcs8", pkcs8),
    ("framing", framing),
    ("jws", jws),
];

/// The time every verification in the harness is made at (inside every fixture's validity).
pub const NOW: OffsetDateTime = datetime!(2030-06-01 0:00 UTC);

/// The passphrase the `pkcs8` target decrypts with (and its seeds are encrypted with).
pub const PASSPHRASE: &str = "fuzz passphrase";

/// `ca show FILE`: certificates (PEM or DER) rendered as text and JSON, with the same fallback
/// to CRLs as the tool; every certificate is also offered to a trust store as a root.
pub fn certificate(data: &[u8]) {
    show(data);
    if let Ok(certs) = pem::parse_certificates(data, "input") {
        let mut store = TrustStore::new();
        for cert in certs {
            let _ = store.add_root(cert, "input");
        }
    }
}

/// CRLs (PEM or DER): rendered as `ca show` does, then loaded into a trust store
/// ([`TrustStore::add_crl`]) and consulted by a verification.
pub fn crl(data: &[u8]) {
    let Ok(crls) = pem::parse_crls(data, "input") else {
        return;
    };
    let mut store = fixtures().store.clone();
    for der in &crls {
        if let Ok(info) = CrlInfo::from_der(der) {
            render(&info.to_text());
            let _ = serde_json::to_string(&info);
        }
        let _ = store.add_crl(der, "input");
    }
    let f = fixtures();
    let _ = store.verify(
        &f.leaf,
        std::slice::from_ref(&f.intermediate),
        &VerifyRequest::new(Usage::Any, NOW),
    );
}

/// `ca issue --csr`: a certificate signing request (PEM or DER) taken by a CA, which parses it,
/// checks its self-signature and key, and issues from it when it is acceptable.
pub fn csr(data: &[u8]) {
    let ca = &fixtures().ca;
    let mut request = IssueRequest::new(Profile::Client, "fuzz.example");
    request.csr = Some(data.to_vec());
    if let Ok(issued) = ca.authority.issue(&request, NOW) {
        let _ = CertificateInfo::from_der(&issued.certificate).map(|i| i.to_text());
    }
}

/// [`TrustStore::verify`] on a fuzzed end entity and intermediates against the fixed root.
///
/// Input: one options byte, then DER certificates, each preceded by its length (2 bytes,
/// big-endian): the end entity first, then up to 8 intermediates. The options byte picks the
/// usage (bits 0-1), whether to ask for the name `fuzz.example` (bit 2), and a maximum chain
/// depth (bits 3-4: 0 = none, else the value minus one) and a required key usage (bits 5-7: 0 =
/// none, else the n-th of [`KeyUsage::ALL`]).
pub fn verify(data: &[u8]) {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let certs = split_certificates(rest, 9);
    let Some((leaf, intermediates)) = certs.split_first() else {
        return;
    };
    let request = verify_request(options);
    if let Ok(chain) = fixtures().store.verify(leaf, intermediates, &request) {
        let _ = chain.end_entity().to_text();
        assert!(!chain.path().is_empty(), "a verified path holds the end entity");
    }
}

/// The request an options byte of the `verify` target stands for.
pub fn verify_request(options: u8) -> VerifyRequest {
    let usage = match options & 0b11 {
        0 => Usage::Server,
        1 => Usage::Client,
        2 => Usage::CodeSigning,
        _ => Usage::Any,
    };
    let mut request = VerifyRequest::new(usage, NOW);
    if options & 0b100 != 0 {
        request = request.with_name("fuzz.example");
    }
    let depth = (options >> 3) & 0b11;
    if depth != 0 {
        request = request.with_max_depth(usize::from(depth - 1));
    }
    let key_usage = usize::from(options >> 5);
    if let Some(usage) = key_usage.checked_sub(1).and_then(|i| KeyUsage::ALL.get(i)) {
        request = request.with_key_usage([*usage]);
    }
    request
}

/// Splits `length (2 bytes) ‖ DER` records, at most `max` of them.
pub fn split_certificates(mut data: &[u8], max: usize) -> Vec<CertificateDer<'static>> {
    let mut out = Vec::new();
    while out.len() < max {
        let Some((len, rest)) = data.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (der, rest) = rest.split_at(len);
        out.push(CertificateDer::from(der.to_vec()));
        data = rest;
    }
    out
}

/// Joins certificates as the `verify` target reads them.
pub fn join_certificates(options: u8, certs: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![options];
    for der in certs {
        let len = u16::try_from(der.len()).expect("certificates in seeds are small");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(der);
    }
    out
}

/// A signature bundle (PEM or DER), decoded, re-encoded, and checked by a verifier that trusts
/// the fixed root (code signing) and by one that pins the fixed raw key.
pub fn bundle(data: &[u8]) {
    let parsed = if data.windows(11).any(|w| w == b"-----BEGIN ") {
        Bundle::from_pem(data, "input")
    } else {
        Bundle::from_der(data, "input")
    };
    let Ok(bundle) = parsed else {
        return;
    };
    let der = bundle.to_der();
    let again = Bundle::from_der(&der, "re-encoded").expect("a decoded bundle re-encodes to a valid bundle");
    assert_eq!(again.to_der(), der, "a bundle re-encodes to itself");
    let reread = Bundle::from_pem(bundle.to_pem().as_bytes(), "re-armoured");
    assert!(reread.is_ok(), "a decoded bundle re-armours to a valid bundle");
    let _ = bundle.statement().signer.describe();
    let f = fixtures();
    let _ = f.by_root.check_bundle(&bundle);
    let _ = f.by_key.check_bundle(&bundle);
}

/// A signed statement (DER): decoded, and re-encoded to exactly the same bytes (the decoder
/// accepts only the canonical encoding).
pub fn statement(data: &[u8]) {
    if let Ok(statement) = Statement::from_der(data, "input") {
        assert_eq!(statement.to_der(), data, "a decoded statement re-encodes to itself");
        let _ = statement.signer.describe();
    }
}

/// A module file with an embedded signature (`payload ‖ bundle ‖ footer`), verified from disk
/// by a verifier that pins the fixed raw key and by one that trusts the fixed root.
pub fn embedded(data: &[u8]) {
    let f = fixtures();
    let path = &f.module_path;
    if std::fs::write(path, data).is_err() {
        return;
    }
    for verifier in [&f.by_key, &f.by_root] {
        let _ = verifier.verify_file(path, None, &mut |_| Ok(()), &mut |_, _| {});
        if let Ok(module) = verifier.load_verified(path, None) {
            assert!(data.starts_with(module.bytes()), "the verified bytes are the payload");
        }
    }
}

/// A private key file (PEM, possibly encrypted with [`PASSPHRASE`]) as `ca`, `sign` and the
/// channel load it, and the same bytes as unencrypted PKCS#8 DER.
pub fn pkcs8(data: &[u8]) {
    let passphrase = Passphrase::new(PASSPHRASE.into());
    if let Ok(key) = PrivateKey::from_pem(data, Some(&passphrase), "input") {
        let _ = key.public_key_spki();
    }
    let _ = PrivateKey::from_pem(data, None, "input");
    if let Ok(key) = PrivateKey::from_pkcs8_der(data, "input") {
        let _ = key.public_key_spki();
    }
}

/// `ca serve`'s ACME request bodies (RFC 8555 §6.2): parsed as a request JWS and as a key
/// change's inner JWS, verified with the embedded key and with the harness's account key
/// ([`jws_account`]), the payload read as JSON. The same bytes are also offered as a JWK, a
/// SubjectPublicKeyInfo, an ARI certificate identifier and a problem document. Properties: a JWK
/// read back from its canonical JSON is the same key with the same thumbprint; a CertID and a
/// problem document re-encode to what was read.
pub fn jws(data: &[u8]) {
    use tessera::ca::serve::ari::CertId;
    use tessera::ca::serve::jws::{self as acme_jws, Jwk};
    use tessera::ca::serve::problem::Problem;

    let canonical = |jwk: &Jwk| {
        let again = Jwk::from_json(jwk.to_json().as_bytes()).expect("a JWK's canonical JSON reads back");
        assert_eq!(&again, jwk, "a JWK's canonical JSON is the same key");
        assert_eq!(again.thumbprint(), jwk.thumbprint());
    };
    for parsed in [acme_jws::parse(data), acme_jws::parse_inner(data)] {
        let Ok(request) = parsed else {
            continue;
        };
        let _ = request.verify(&jws_account().1);
        if let Ok(jwk) = request.verify_embedded() {
            canonical(jwk);
            let _ = acme_jws::key_authorization("token", jwk);
        }
        let _ = request.payload_json::<serde_json::Value>();
        let _ = request.is_post_as_get();
    }
    if let Ok(jwk) = Jwk::from_json(data) {
        canonical(&jwk);
    }
    if let Ok(jwk) = Jwk::from_spki(data) {
        canonical(&jwk);
        assert!(jwk.matches_spki(data));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = CertId::parse(text)
    {
        assert_eq!(id.to_string(), text, "a CertID re-encodes to itself");
    }
    if let Some(problem) = Problem::from_json(data) {
        assert_eq!(
            Problem::from_json(&problem.to_json()),
            Some(problem),
            "a problem document reads back"
        );
    }
}

/// The ACME account key the `jws` target verifies `kid` requests with: Ed25519 from a fixed
/// seed (so seeds signed with it verify on every run), and its JWK.
pub fn jws_account() -> &'static (ring::signature::Ed25519KeyPair, tessera::ca::serve::jws::Jwk) {
    static ACCOUNT: OnceLock<(ring::signature::Ed25519KeyPair, tessera::ca::serve::jws::Jwk)> = OnceLock::new();
    ACCOUNT.get_or_init(|| {
        use ring::signature::KeyPair as _;
        let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[0x42; 32]).expect("seed");
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64url(key.public_key().as_ref())
        );
        let jwk = tessera::ca::serve::jws::Jwk::from_json(jwk.as_bytes()).expect("jwk");
        (key, jwk)
    })
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Seeds for the `jws` target: requests signed with each algorithm (with `jwk` and with `kid`),
/// POST-as-GET, a key change's inner JWS, the refusals of RFC 8555 §6.2 (`alg: none`, a MAC,
/// both `jwk` and `kid`, a DER ECDSA signature, padded base64), JWKs, SubjectPublicKeyInfos,
/// CertIDs and problem documents.
fn jws_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
    use serde_json::{Value, json};

    const URL: &str = "https://127.0.0.1:14000/acme/new-order";
    const KID: &str = "https://127.0.0.1:14000/acme/account/fuzz";
    const NONCE: &str = "oFvnlFP1wIhRlYS2jTaXbA";
    let rng = SystemRandom::new();
    let sign_with = |protected: &Value, payload: &[u8], sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        let protected = b64url(protected.to_string().as_bytes());
        let payload = b64url(payload);
        let signature = sign(format!("{protected}.{payload}").as_bytes());
        json!({"protected": protected, "payload": payload, "signature": b64url(&signature)})
    };
    let mut out = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| out.push(("jws", name.to_string(), bytes));

    // The account key: kid requests (verified by the harness), and the key itself.
    let (account, account_jwk) = jws_account();
    let ed = |m: &[u8]| account.sign(m).as_ref().to_vec();
    let kid = |alg: &str| json!({"alg": alg, "nonce": NONCE, "url": URL, "kid": KID});
    let order = br#"{"identifiers":[{"type":"dns","value":"a.example.test"}]}"#;
    add(
        "eddsa-kid-new-order.json",
        sign_with(&kid("EdDSA"), order, &ed).to_string().into_bytes(),
    );
    add(
        "eddsa-kid-post-as-get.json",
        sign_with(&kid("EdDSA"), b"", &ed).to_string().into_bytes(),
    );
    let jwk_json: Value = serde_json::from_str(&account_jwk.to_json()).expect("json");
    let with_jwk = json!({"alg": "EdDSA", "nonce": NONCE, "url": URL, "jwk": jwk_json});
    let account_body = br#"{"termsOfServiceAgreed":true,"contact":["mailto:ci@example.test"]}"#;
    add(
        "eddsa-jwk-new-account.json",
        sign_with(&with_jwk, account_body, &ed).to_string().into_bytes(),
    );
    let inner = json!({"alg": "EdDSA", "url": URL, "jwk": jwk_json});
    add(
        "eddsa-key-change-inner.json",
        sign_with(&inner, format!(r#"{{"account":"{KID}"}}"#).as_bytes(), &ed)
            .to_string()
            .into_bytes(),
    );
    add("jwk-ed25519.json", account_jwk.to_json().into_bytes());

    // ECDSA (fixed r || s, and the refused DER form) and RSA, with `jwk`.
    for (name, fixed, der, crv) in [
        (
            "es256",
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            "P-256",
        ),
        (
            "es384",
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            "P-384",
        ),
    ] {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(fixed, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(fixed, pkcs8.as_ref(), &rng).expect("key");
        let der_key = EcdsaKeyPair::from_pkcs8(der, pkcs8.as_ref(), &rng).expect("key");
        let point = &key.public_key().as_ref()[1..];
        let (x, y) = point.split_at(point.len() / 2);
        let jwk = json!({"kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y)});
        let header = json!({"alg": name.to_uppercase(), "nonce": NONCE, "url": URL, "jwk": jwk});
        let fixed_sign = |m: &[u8]| key.sign(&rng, m).expect("sign").as_ref().to_vec();
        let der_sign = |m: &[u8]| der_key.sign(&rng, m).expect("sign").as_ref().to_vec();
        add(
            &format!("{name}-jwk.json"),
            sign_with(&header, order, &fixed_sign).to_string().into_bytes(),
        );
        add(
            &format!("{name}-der-signature.json"),
            sign_with(&header, order, &der_sign).to_string().into_bytes(),
        );
        add(&format!("jwk-{name}.json"), jwk.to_string().into_bytes());
    }
    let rsa = RsaKeyPair::from_pkcs8(include_bytes!("../../tests/vectors/jws/rsa-2048.pk8")).expect("rsa");
    let parts = signature::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let jwk = json!({"kty": "RSA", "n": b64url(&parts.n), "e": b64url(&parts.e)});
    let header = json!({"alg": "RS256", "nonce": NONCE, "url": URL, "jwk": jwk});
    let rsa_sign = |m: &[u8]| {
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig).expect("sign");
        sig
    };
    add(
        "rs256-jwk.json",
        sign_with(&header, order, &rsa_sign).to_string().into_bytes(),
    );
    add("jwk-rsa.json", jwk.to_string().into_bytes());

    // Refusals.
    let mut none = sign_with(&kid("none"), order, &|_| Vec::new());
    none["signature"] = json!("");
    add("alg-none.json", none.to_string().into_bytes());
    let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"fuzz");
    let hs256 = |m: &[u8]| ring::hmac::sign(&mac, m).as_ref().to_vec();
    add(
        "hs256.json",
        sign_with(&kid("HS256"), order, &hs256).to_string().into_bytes(),
    );
    let mut both = with_jwk.clone();
    both["kid"] = json!(KID);
    add(
        "jwk-and-kid.json",
        sign_with(&both, order, &ed).to_string().into_bytes(),
    );
    let mut padded = sign_with(&kid("EdDSA"), order, &ed);
    padded["signature"] = json!(format!("{}==", padded["signature"].as_str().expect("str")));
    add("padded.json", padded.to_string().into_bytes());
    let good = sign_with(&kid("EdDSA"), order, &ed);
    add(
        "general-serialization.json",
        json!({"payload": good["payload"], "signatures": [{"protected": good["protected"], "signature": good["signature"]}]})
            .to_string()
            .into_bytes(),
    );

    // SubjectPublicKeyInfos, CertIDs, problem documents.
    for (name, algorithm) in [
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        use rcgen::PublicKeyData as _;
        let key = KeyPair::generate_for(algorithm).expect("key");
        add(&format!("spki-{name}.der"), key.subject_public_key_info());
    }
    add(
        "spki-rsa-1024.der",
        include_bytes!("../../tests/vectors/jws/rsa-1024.spki.der").to_vec(),
    );
    add("certid-rfc9773.txt", b"aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".to_vec());
    if let Ok(id) = tessera::ca::serve::ari::CertId::from_certificate(&fixtures().leaf) {
        add("certid-leaf.txt", id.to_string().into_bytes());
    }
    add(
        "problem-compound.json",
        br#"{"type":"urn:ietf:params:acme:error:compound","detail":"2 refused","status":400,"subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no","identifier":{"type":"dns","value":"a.example.test"}}]}"#.to_vec(),
    );
    out
}

/// The channel's message framing: a TLS 1.3 connection (fresh per input) whose server sends
/// the input's bytes raw; the client reads messages with
/// [`ChannelStream::recv_message`] until the end. The first byte sets the client's maximum
/// message size (2^(b mod 25) bytes) and, by its top bit, whether the server closes with
/// close_notify or just drops the connection. Every message received is a prefix of what was
/// sent, framed as the documentation says.
pub fn framing(data: &[u8]) {
    let Some((&options, stream)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    let runtime = &f.runtime;
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_config = Arc::clone(&f.server_config);
        let payload = stream.to_vec();
        let clean = options & 0x80 != 0;
        let server = tokio::spawn(async move {
            let Ok(mut server) = ChannelStream::accept(server_config, server_io, RotationPolicy::never()).await else {
                return;
            };
            use tokio::io::AsyncWriteExt;
            if server.write_all(&payload).await.is_err() || server.flush().await.is_err() {
                return;
            }
            if clean {
                let _ = server.close().await;
            }
        });
        let client = ChannelStream::connect(
            Arc::clone(&f.client_config),
            "localhost",
            client_io,
            RotationPolicy::never(),
        )
        .await;
        let Ok(mut client) = client else {
            let _ = server.await;
            return;
        };
        client.set_max_message_size(1usize << (options % 25));
        let mut offset = 0usize;
        // Every message costs at least 4 bytes, so this bounds the loop.
        for _ in 0..=stream.len() / channel::HEADER_LEN {
            match client.recv_message().await {
                Ok(Some(message)) => {
                    let header = stream
                        .get(offset..offset + channel::HEADER_LEN)
                        .expect("a header was sent");
                    let len = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
                    assert_eq!(len, message.len(), "a message has the announced length");
                    let start = offset + channel::HEADER_LEN;
                    assert_eq!(
                        stream.get(start..start + len),
                        Some(message.as_slice()),
                        "a message is what was sent"
                    );
                    offset = start + len;
                }
                Ok(None) | Err(_) => break,
            }
        }
        drop(client);
        let _ = server.await;
    });
}

/// What `ca show` does with a file: CRLs when it holds a CRL label, else certificates, else
/// (DER) a CRL; rendered as text (escaped for the terminal) and as JSON.
fn show(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if text.contains("-----BEGIN X509 CRL-----") {
        if let Ok(crls) = pem::parse_crls(data, "input") {
            for der in crls {
                if let Ok(info) = CrlInfo::from_der(&der) {
                    render(&info.to_text());
                    let _ = serde_json::to_string(&info);
                }
            }
        }
        return;
    }
    match pem::parse_certificates(data, "input") {
        Ok(certs) => {
            for der in certs {
                if let Ok(info) = CertificateInfo::from_der(&der) {
                    render(&info.to_text());
                    let _ = serde_json::to_string(&info);
                }
            }
        }
        Err(_) => {
            if let Ok(crls) = pem::parse_crls(data, "input") {
                for der in crls {
                    if let Ok(info) = CrlInfo::from_der(&der) {
                        render(&info.to_text());
                    }
                }
            }
        }
    }
}

fn render(text: &str) {
    for line in text.lines() {
        let _ = tessera::cli::printable(line);
    }
}

/// Everything the targets share, built once per process.
pub struct Fixtures {
    /// The fixed root (Ed25519, `CN=Tessera Fuzz Root`), DER.
    pub root: CertificateDer<'static>,
    /// An intermediate CA under the root.
    pub intermediate: CertificateDer<'static>,
    /// A leaf under the intermediate: `fuzz.example`, `localhost`, 127.0.0.1; server, client
    /// and code-signing usages.
    pub leaf: CertificateDer<'static>,
    /// The leaf's key.
    pub leaf_key: PrivateKey,
    /// The intermediate's rcgen issuer (to sign seeds).
    pub intermediate_issuer: Issuer<'static, KeyPair>,
    /// The root's rcgen issuer (to sign seeds).
    pub root_issuer: Issuer<'static, KeyPair>,
    /// The raw module-signing key.
    pub raw_key: PrivateKey,
    /// A trust store holding the root.
    pub store: TrustStore,
    by_root: Verifier,
    by_key: Verifier,
    ca: TempCa,
    module_path: PathBuf,
    runtime: tokio::runtime::Runtime,
    server_config: Arc<rustls::ServerConfig>,
    client_config: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

struct TempCa {
    authority: CertificateAuthority,
}

/// The shared fixtures.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(build_fixtures)
}

/// A PKCS#8 v1 Ed25519 key from a 32-byte seed.
pub fn ed25519_pkcs8(seed: u8) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend([seed; 32]);
    der
}

fn key_pair(seed: u8) -> KeyPair {
    KeyPair::try_from(ed25519_pkcs8(seed).as_slice()).expect("a valid Ed25519 PKCS#8 key")
}

fn ca_params(name: &str, serial: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from(vec![serial]));
    params.not_before = datetime!(2020-01-01 0:00 UTC);
    params.not_after = datetime!(2099-12-31 0:00 UTC);
    params.use_authority_key_identifier_extension = true;
    params
}

/// The leaf's parameters (also used to make seed variants).
pub fn leaf_params() -> CertificateParams {
    let mut params =
        CertificateParams::new(vec!["fuzz.example".to_string(), "localhost".to_string()]).expect("valid names");
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params.distinguished_name.push(DnType::CommonName, "fuzz.example");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::CodeSigning,
    ];
    params.serial_number = Some(SerialNumber::from(vec![0x10, 0x20, 0x30]));
    params.not_before = datetime!(2020-01-01 0:00 UTC);
    params.not_after = datetime!(2099-12-31 0:00 UTC);
    params.use_authority_key_identifier_extension = true;
    params
}

fn build_fixtures() -> Fixtures {
    let root_params = ca_params("Tessera Fuzz Root", 1);
    let root_key = key_pair(0x01);
    let root = root_params.self_signed(&root_key).expect("root").der().clone();
    let root_issuer = Issuer::new(root_params, root_key);

    let intermediate_params = ca_params("Tessera Fuzz Intermediate", 2);
    let intermediate_key = key_pair(0x02);
    let intermediate = intermediate_params
        .signed_by(&intermediate_key, &root_issuer)
        .expect("intermediate")
        .der()
        .clone();
    let intermediate_issuer = Issuer::new(intermediate_params, intermediate_key);

    let leaf_key = key_pair(0x03);
    let leaf = leaf_params()
        .signed_by(&leaf_key, &intermediate_issuer)
        .expect("leaf")
        .der()
        .clone();
    let leaf_key = PrivateKey::from_pkcs8_der(&ed25519_pkcs8(0x03), "leaf key").expect("leaf key");
    let raw_key = PrivateKey::from_pkcs8_der(&ed25519_pkcs8(0x04), "raw key").expect("raw key");

    let mut store = TrustStore::new();
    store.add_root(root.clone(), "fuzz root").expect("root");
    let by_root = Verifier::new(store.clone()).at(NOW);
    let by_key = Verifier::with_public_key(Signer::with_raw_key(&raw_key).expect("raw signer").public_key()).at(NOW);

    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let authority = CertificateAuthority::init(
        &dir.path().join("ca"),
        &InitRequest::new("Tessera Fuzz CA"),
        None,
        datetime!(2030-01-01 0:00 UTC),
    )
    .expect("a CA");
    let module_path = dir.path().join("module.bin");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let credentials = Credentials::new(vec![leaf.clone(), intermediate.clone()], &leaf_key).expect("credentials");
    let server_config = Arc::new(
        channel::server_config(&ServerSettings {
            credentials,
            client_trust: None,
            authorization: channel::Authorization::any_verified(),
            crl_next_update: None,
            options: channel::TlsOptions::default(),
            session_tickets: None,
        })
        .expect("server config"),
    );
    let client_config = Arc::new(
        channel::client_config(&ClientSettings {
            server_trust: Arc::new(store.clone()),
            credentials: None,
            options: channel::TlsOptions::default(),
        })
        .expect("client config"),
    );

    Fixtures {
        root,
        intermediate,
        leaf,
        leaf_key,
        intermediate_issuer,
        root_issuer,
        raw_key,
        store,
        by_root,
        by_key,
        ca: TempCa { authority },
        module_path,
        runtime,
        server_config,
        client_config,
        _dir: dir,
    }
}

/// Seed inputs for every target, made at run time the way the test suites make their inputs
/// (rcgen chains and CRLs, `sign` bundles, encrypted keys, framed messages), plus CSRs and keys
/// from `openssl` when it is installed. `(target, name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let f = fixtures();
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| out.push((target, name.to_string(), bytes));

    // Certificates, PEM and DER, single and chains.
    for (name, der) in [("root", &f.root), ("intermediate", &f.intermediate), ("leaf", &f.leaf)] {
        add("certificate", &format!("{name}.der"), der.to_vec());
        add(
            "certificate",
            &format!("{name}.pem"),
            pem::to_pem(pem::CERTIFICATE, der).into_bytes(),
        );
    }
    add(
        "certificate",
        "chain.pem",
        pem::certificates_to_pem([&f.leaf, &f.intermediate, &f.root]).into_bytes(),
    );

    // CRLs: empty, with reasons, from the root and the intermediate.
    let crl = |issuer: &Issuer<'static, KeyPair>, serials: &[(u8, Option<RevocationReason>)]| {
        CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update: datetime!(2031-01-01 0:00 UTC),
            crl_number: SerialNumber::from(vec![0x07]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|(serial, reason)| RevokedCertParams {
                    serial_number: SerialNumber::from(vec![*serial, 0x20, 0x30]),
                    revocation_time: datetime!(2030-02-01 0:00 UTC),
                    reason_code: *reason,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .expect("crl")
    };
    let crls: [(&str, CertificateRevocationListDer<'static>); 3] = [
        ("empty-root", crl(&f.root_issuer, &[]).der().clone()),
        (
            "revoked-leaf",
            crl(&f.intermediate_issuer, &[(0x10, Some(RevocationReason::KeyCompromise))])
                .der()
                .clone(),
        ),
        (
            "several",
            crl(
                &f.intermediate_issuer,
                &[(0x01, None), (0x02, Some(RevocationReason::Superseded))],
            )
            .der()
            .clone(),
        ),
    ];
    for (name, der) in &crls {
        add("crl", &format!("{name}.der"), der.to_vec());
        add(
            "crl",
            &format!("{name}.pem"),
            pem::to_pem(pem::X509_CRL, der).into_bytes(),
        );
        add(
            "certificate",
            &format!("crl-{name}.pem"),
            pem::to_pem(pem::X509_CRL, der).into_bytes(),
        );
    }

    // Verify: the good chain under each usage, and variants the profile rules look at.
    for options in [0u8, 1, 2, 3, 4, 0b0000_1100, 0b1110_0100] {
        add(
            "verify",
            &format!("chain-{options:08b}"),
            join_certificates(options, &[&f.leaf, &f.intermediate]),
        );
    }
    add(
        "verify",
        "intermediate-as-leaf",
        join_certificates(3, &[&f.intermediate]),
    );
    for (name, edit) in variants() {
        let mut params = leaf_params();
        edit(&mut params);
        if let Ok(cert) = params.signed_by(&key_pair(0x05), &f.intermediate_issuer) {
            add(
                "verify",
                &format!("leaf-{name}"),
                join_certificates(4, &[cert.der(), &f.intermediate]),
            );
            add("certificate", &format!("leaf-{name}.der"), cert.der().to_vec());
        }
    }

    // Signatures: bundles, statements, embedded signatures, by certificate and by raw key.
    let module = b"a module's bytes\n".to_vec();
    let signers = [
        (
            "certificate",
            Signer::with_certificate(&f.leaf_key, vec![f.leaf.clone(), f.intermediate.clone()]).expect("signer"),
        ),
        ("raw-key", Signer::with_raw_key(&f.raw_key).expect("signer")),
    ];
    for (name, signer) in &signers {
        for hash in [
            tessera::sign::HashAlgorithm::Sha3_256,
            tessera::sign::HashAlgorithm::Sha3_512,
        ] {
            let request = SignRequest::new("module.bin", datetime!(2030-03-01 0:00 UTC)).with_hash(hash);
            let bundle = signer.sign_bytes(&module, &request).expect("bundle");
            let name = format!("{name}-{hash}");
            add("bundle", &format!("{name}.pem"), bundle.to_pem().into_bytes());
            add("bundle", &format!("{name}.der"), bundle.to_der());
            add("statement", &name, bundle.statement_der().to_vec());
            let mut file = module.clone();
            file.extend(tessera::sign::embed::trailer(&bundle).expect("trailer"));
            add("embedded", &name, file);
        }
    }
    add("embedded", "unsigned", module.clone());

    // Keys: unencrypted and encrypted PKCS#8, as Tessera writes them.
    let passphrase = Passphrase::new(PASSPHRASE.into());
    for algorithm in [
        tessera::pki::KeyAlgorithm::Ed25519,
        tessera::pki::KeyAlgorithm::P256,
        tessera::pki::KeyAlgorithm::P384,
    ] {
        let key = PrivateKey::generate(algorithm).expect("key");
        add("pkcs8", &format!("{algorithm:?}.der"), key.pkcs8_der().to_vec());
        add(
            "pkcs8",
            &format!("{algorithm:?}.pem"),
            key.to_pem(None).expect("pem").as_bytes().to_vec(),
        );
        add(
            "pkcs8",
            &format!("{algorithm:?}-encrypted.pem"),
            key.to_pem(Some(&passphrase)).expect("pem").as_bytes().to_vec(),
        );
    }

    // Framing: zero, one and several messages, an oversized header, a truncated body.
    let frame = |messages: &[&[u8]]| {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    };
    for (name, options, body) in [
        ("empty", 0x98u8, Vec::new()),
        ("one", 0x98, frame(&[b"hello"])),
        ("several", 0x98, frame(&[b"a", b"", b"three messages"])),
        ("too-large", 0x84, frame(&[&[0x55; 64]])),
        ("truncated", 0x18, frame(&[b"hello"])[..6].to_vec()),
        ("abrupt", 0x18, frame(&[b"hello", b"world"])),
    ] {
        let mut input = vec![options];
        input.extend(body);
        add("framing", name, input);
    }

    // CSRs made by rcgen (the ones OpenSSL makes are added by `openssl_seeds`).
    for (name, algorithm) in [
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let key = KeyPair::generate_for(algorithm).expect("key");
        let mut params = CertificateParams::new(vec!["csr.fuzz.example".to_string()]).expect("names");
        params.distinguished_name.push(DnType::CommonName, "csr.fuzz.example");
        let csr = params.serialize_request(&key).expect("csr");
        add("csr", &format!("{name}.der"), csr.der().to_vec());
        add("csr", &format!("{name}.pem"), csr.pem().expect("pem").into_bytes());
    }
    out.extend(openssl_seeds());
    out.extend(jws_seeds());
    out
}

/// Leaf variants for the `verify` seeds: shapes the profile rules and policy checks look at.
type Edit = fn(&mut CertificateParams);

fn variants() -> Vec<(&'static str, Edit)> {
    vec![
        ("plain", |_| {}),
        ("no-eku", |p| p.extended_key_usages.clear()),
        ("no-key-usage", |p| p.key_usages.clear()),
        ("key-encipherment", |p| {
            p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
        }),
        ("long-serial", |p| {
            p.serial_number = Some(SerialNumber::from(vec![0x7f; 20]))
        }),
        ("longest-serial", |p| {
            let mut serial = vec![0x00];
            serial.extend([0x80; 20]);
            p.serial_number = Some(SerialNumber::from(serial));
        }),
        ("any-eku", |p| p.extended_key_usages.push(ExtendedKeyUsagePurpose::Any)),
        ("empty-subject", |p| {
            p.distinguished_name = rcgen::DistinguishedName::new()
        }),
        ("expired", |p| p.not_after = datetime!(2025-01-01 0:00 UTC)),
        ("ca", |p| p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))),
    ]
}

/// CSRs and encrypted keys in the shapes OpenSSL writes them (when `openssl` is installed).
fn openssl_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(dir) = tempfile::tempdir() else {
        return out;
    };
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let keys: &[(&str, &[&str])] = &[
        ("ed25519", &["genpkey", "-algorithm", "ed25519"]),
        (
            "p256",
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "p384",
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        (
            "rsa2048",
            &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
    ];
    for (name, generate) in keys {
        let key = format!("{name}.key");
        let mut args = generate.to_vec();
        args.extend(["-out", &key]);
        if !run(&args) {
            continue;
        }
        for digest in ["-sha256", "-sha384"] {
            let csr = format!("{name}{digest}.csr");
            let ok = run(&[
                "req",
                "-new",
                "-key",
                &key,
                digest,
                "-subj",
                "/CN=csr.fuzz.example",
                "-addext",
                "subjectAltName=DNS:csr.fuzz.example,IP:10.0.0.1,email:a@fuzz.example",
                "-out",
                &csr,
            ]);
            if let (true, Ok(bytes)) = (ok, std::fs::read(dir.path().join(&csr))) {
                out.push(("csr", format!("openssl-{name}{digest}.pem"), bytes));
            }
        }
        // Encrypted PKCS#8 in the PBES2 variants OpenSSL writes, with cheap KDF settings so
        // the fuzzer is not spending its time in the KDF.
        let variants: &[(&str, &[&str])] = &[
            ("sha1", &["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1", "-iter", "1"]),
            (
                "sha256",
                &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-iter", "2"],
            ),
            (
                "sha512",
                &["-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512", "-iter", "1"],
            ),
            (
                "scrypt",
                &[
                    "-v2",
                    "aes-256-cbc",
                    "-scrypt",
                    "-scrypt_N",
                    "2",
                    "-scrypt_r",
                    "1",
                    "-scrypt_p",
                    "1",
                ],
            ),
            ("pbes1", &["-v1", "PBE-SHA1-3DES", "-iter", "1"]),
        ];
        for (variant, options) in variants {
            let out_file = format!("{name}-{variant}.p8");
            let pass = format!("pass:{PASSPHRASE}");
            let mut args = vec!["pkcs8", "-topk8", "-in", key.as_str(), "-passout", pass.as_str()];
            args.extend_from_slice(options);
            args.extend(["-out", out_file.as_str()]);
            if run(&args)
                && let Ok(bytes) = std::fs::read(dir.path().join(&out_file))
            {
                out.push(("pkcs8", format!("openssl-{name}-{variant}.pem"), bytes));
            }
        }
    }
    out
}

/// Seeds from the x509-limbo suite (`limbo.json.xz` or `limbo.json`): the certificates and CRLs
/// of its native cases (all but BetterTLS), for the `certificate`, `crl` and `verify` targets.
/// They do not chain to the fixed root, but they are the oddest real inputs the project has.
/// Empty when the file cannot be read.
pub fn limbo_seeds(path: &Path) -> Vec<(&'static str, String, Vec<u8>)> {
    let text = if path.extension().is_some_and(|e| e == "xz") {
        std::process::Command::new("xz")
            .arg("-dc")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    } else {
        std::fs::read(path).ok()
    };
    let Some(suite) = text.and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let cases = suite["testcases"].as_array().cloned().unwrap_or_default();
    let pems = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    for case in &cases {
        let id = case["id"].as_str().unwrap_or_default();
        if id.starts_with("bettertls::") {
            continue;
        }
        let name = id.replace("::", "-");
        let leaf = case["peer_certificate"].as_str().unwrap_or_default().to_string();
        let intermediates = pems(&case["untrusted_intermediates"]);
        let mut all = vec![leaf.clone()];
        all.extend(intermediates.iter().cloned());
        all.extend(pems(&case["trusted_certs"]));
        out.push(("certificate", format!("limbo-{name}.pem"), all.concat().into_bytes()));
        for (n, crl) in pems(&case["crls"]).into_iter().enumerate() {
            out.push(("crl", format!("limbo-{name}-{n}.pem"), crl.into_bytes()));
        }
        let ders: Vec<Vec<u8>> = std::iter::once(&leaf)
            .chain(&intermediates)
            .filter_map(|p| pem::parse_certificates(p.as_bytes(), "limbo").ok())
            .flatten()
            .map(|c| c.to_vec())
            .filter(|d| d.len() <= usize::from(u16::MAX))
            .collect();
        if !ders.is_empty() {
            let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
            out.push(("verify", format!("limbo-{name}"), join_certificates(0b111, &refs)));
        }
    }
    out
}

/// Writes every seed to `dir/<target>/<name>` (creating the folders), and those of
/// [`limbo_seeds`] when `limbo` is given, returning how many.
///
/// # Errors
/// I/O errors.
pub fn write_seeds(dir: &Path, limbo: Option<&Path>) -> std::io::Result<usize> {
    let mut seeds = seeds();
    if let Some(limbo) = limbo {
        seeds.extend(limbo_seeds(limbo));
    }
    for (target, name, bytes) in &seeds {
        let folder = dir.join(target);
        std::fs::create_dir_all(&folder)?;
        let mut file = std::fs::File::create(folder.join(format!("seed-{name}")))?;
        file.write_all(bytes)?;
    }
    Ok(seeds.len())
}
