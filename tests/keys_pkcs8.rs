//! Keys at rest: every PBES2 variant `openssl pkcs8 -topk8` writes is read with the right
//! passphrase and usable; a wrong passphrase says so (exit 3); every other scheme is named, with
//! the conversion command, and is never called a wrong passphrase. Keys are made by OpenSSL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use support::{openssl, s, stderr};

use tessera::pki::{KeyAlgorithm, Passphrase, PkiError, PrivateKey};

const PASS: &str = "pw123";

struct Scratch {
    tmp: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let scratch = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::write(scratch.path("pw"), format!("{PASS}\n")).unwrap();
        std::fs::write(scratch.path("wrong"), "pw1234\n").unwrap();
        scratch
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A fresh unencrypted PKCS#8 key from `openssl genpkey`.
    fn genpkey(&self, algorithm: KeyAlgorithm) -> PathBuf {
        let out = self.path(&format!("{algorithm}.plain.key"));
        let mut args = vec!["genpkey"];
        match algorithm {
            KeyAlgorithm::Ed25519 => args.extend(["-algorithm", "ed25519"]),
            KeyAlgorithm::P256 => args.extend(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            KeyAlgorithm::P384 => args.extend(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        }
        let out_s = s(&out);
        args.extend(["-out", &out_s]);
        openssl(&args);
        out
    }

    /// `openssl pkcs8 -topk8 -in PLAIN … -passout pass:pw123 -out NAME`.
    fn encrypt(&self, plain: &Path, name: &str, options: &[&str]) -> PathBuf {
        let out = self.path(name);
        let (plain_s, out_s) = (s(plain), s(&out));
        let mut args = vec![
            "pkcs8",
            "-topk8",
            "-in",
            &plain_s,
            "-passout",
            "pass:pw123",
            "-out",
            &out_s,
        ];
        args.extend_from_slice(options);
        openssl(&args);
        out
    }
}

fn pass() -> Passphrase {
    Passphrase::new(PASS.into())
}

/// Every PBES2 variant OpenSSL 3 writes: the PRFs with AES-256-CBC, the AES key sizes with the
/// default PRF (HMAC-SHA-256), and scrypt.
const VARIANTS: &[(&str, &[&str])] = &[
    ("hmacWithSHA1", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA1"]),
    ("hmacWithSHA224", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA224"]),
    ("hmacWithSHA256", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256"]),
    ("hmacWithSHA384", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA384"]),
    ("hmacWithSHA512", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA512"]),
    ("aes-128-cbc", &["-v2", "aes-128-cbc"]),
    ("aes-192-cbc", &["-v2", "aes-192-cbc"]),
    ("aes-256-cbc", &["-v2", "aes-256-cbc"]),
    ("sha1-aes-128", &["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"]),
    ("scrypt", &["-scrypt"]),
    ("scrypt-aes-128-cbc", &["-scrypt", "-v2", "aes-128-cbc"]),
];

#[test]
fn every_pbes2_variant_openssl_writes_is_read_and_a_wrong_passphrase_is_named() {
    let scratch = Scratch::new();
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256, KeyAlgorithm::P384] {
        let plain_path = scratch.genpkey(algorithm);
        let plain = PrivateKey::load(&plain_path, None).unwrap();
        for (variant, options) in VARIANTS {
            let path = scratch.encrypt(&plain_path, &format!("{algorithm}-{variant}.key"), options);
            let key = PrivateKey::load(&path, Some(&pass())).unwrap_or_else(|e| panic!("{algorithm} {variant}: {e}"));
            assert_eq!(key.algorithm(), algorithm, "{variant}");
            assert_eq!(key.pkcs8_der(), plain.pkcs8_der(), "{algorithm} {variant}");
            // Usable: it signs a certificate whose key matches.
            assert_eq!(key.public_key_spki().unwrap(), plain.public_key_spki().unwrap());

            match PrivateKey::load(&path, Some(&Passphrase::new("pw1234".into()))) {
                Err(PkiError::WrongPassphrase { .. }) => {}
                other => panic!("{algorithm} {variant}: expected a wrong passphrase, got {other:?}"),
            }
            assert!(matches!(
                PrivateKey::load(&path, None),
                Err(PkiError::PassphraseRequired { .. })
            ));
        }
    }
}

#[test]
fn the_issue_example_signs_with_an_hmac_sha1_key() {
    let scratch = Scratch::new();
    let ed = scratch.genpkey(KeyAlgorithm::Ed25519);
    let key = scratch.encrypt(&ed, "e.key", &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA1"]);
    let module = scratch.path("m");
    std::fs::write(&module, "hi\n").unwrap();

    let out = support::command("sign")
        .arg(&module)
        .arg("--key")
        .arg(&key)
        .arg("--passphrase-file")
        .arg(scratch.path("pw"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sig = scratch.path("m.sig");
    assert!(sig.exists());

    // The signature verifies against the key's public half, as OpenSSL computes it.
    let public = scratch.path("e.pub");
    openssl(&["pkey", "-in", &s(&ed), "-pubout", "-out", &s(&public)]);
    let out = support::command("verify")
        .arg(&module)
        .arg("--pubkey")
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The wrong passphrase: exit 3, named as such, nothing written.
    std::fs::remove_file(&sig).unwrap();
    let out = support::command("sign")
        .arg(&module)
        .arg("--key")
        .arg(&key)
        .arg("--passphrase-file")
        .arg(scratch.path("wrong"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("wrong passphrase"), "{}", stderr(&out));
    assert!(!sig.exists());
}

#[test]
fn a_ca_key_reencrypted_by_openssl_still_opens_the_ca() {
    for (key_type, variant) in [
        ("p256", &["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"][..]),
        ("p384", &["-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512"][..]),
        ("ed25519", &["-scrypt"][..]),
    ] {
        let scratch = Scratch::new();
        let dir = scratch.path("ca");
        let out = support::command("ca")
            .arg("--dir")
            .arg(&dir)
            .args(["init", "--no-passphrase", "--key-type", key_type])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let plain = dir.join("ca.key");
        let encrypted = scratch.encrypt(&plain, "ca.key.enc", variant);
        std::fs::rename(&encrypted, &plain).unwrap();

        let issue = |pass_file: &str, name: &str| {
            support::command("ca")
                .arg("--dir")
                .arg(&dir)
                .arg("--passphrase-file")
                .arg(scratch.path(pass_file))
                .args(["issue", "--profile", "client", "--name", name, "--out"])
                .arg(scratch.path(name))
                .output()
                .unwrap()
        };
        let out = issue("pw", "alice");
        assert_eq!(out.status.code(), Some(0), "{key_type}: {}", stderr(&out));
        assert!(scratch.path("alice.pem").exists());

        let out = issue("wrong", "bob");
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(stderr(&out).contains("wrong passphrase"), "{}", stderr(&out));
        assert!(!scratch.path("bob.pem").exists());
    }
}

/// Schemes Tessera does not read: (openssl pkcs8 options, words the message must hold, needs
/// OpenSSL's legacy provider).
const UNSUPPORTED: &[(&[&str], &str, bool)] = &[
    (
        &["-v1", "PBE-SHA1-3DES"],
        "PKCS#12 PBE pbeWithSHAAnd3-KeyTripleDES-CBC",
        false,
    ),
    (
        &["-v1", "PBE-SHA1-2DES"],
        "PKCS#12 PBE pbeWithSHAAnd2-KeyTripleDES-CBC",
        false,
    ),
    (&["-v1", "PBE-MD5-DES"], "PBES1 pbeWithMD5AndDES-CBC", true),
    (&["-v1", "PBE-SHA1-DES"], "PBES1 pbeWithSHA1AndDES-CBC", true),
    (&["-v1", "PBE-SHA1-RC4-128"], "PKCS#12 PBE pbeWithSHAAnd128BitRC4", true),
    (
        &["-v1", "PBE-SHA1-RC2-40"],
        "PKCS#12 PBE pbeWithSHAAnd40BitRC2-CBC",
        true,
    ),
    (&["-v2", "des3"], "DES-EDE3-CBC", false),
    (&["-v2", "des"], "DES-CBC", true),
    (&["-v2", "camellia-256-cbc"], "Camellia-256-CBC", false),
    (&["-v2", "aria-128-cbc"], "ARIA-128-CBC", false),
    (&["-v2", "aes-256-cbc", "-v2prf", "hmacWithMD5"], "HMAC-MD5", false),
];

#[test]
fn unsupported_schemes_are_named_with_the_conversion_and_never_called_a_wrong_passphrase() {
    let scratch = Scratch::new();
    let ed = scratch.genpkey(KeyAlgorithm::Ed25519);
    let module = scratch.path("m");
    std::fs::write(&module, "hi\n").unwrap();
    for (i, (options, scheme, legacy)) in UNSUPPORTED.iter().enumerate() {
        let mut options = options.to_vec();
        if *legacy {
            options.extend(["-provider", "legacy", "-provider", "default"]);
        }
        let key = scratch.encrypt(&ed, &format!("old-{i}.key"), &options);

        match PrivateKey::load(&key, Some(&pass())) {
            Err(PkiError::UnsupportedEncryption {
                scheme: named,
                conversion,
                ..
            }) => {
                assert!(named.contains(scheme), "{named} does not name {scheme}");
                assert_eq!(conversion.contains("-provider legacy"), *legacy, "{conversion}");
            }
            other => panic!("{options:?}: expected an unsupported scheme, got {other:?}"),
        }

        // The tool: exit 3, the scheme and the command, not "wrong passphrase".
        let out = support::command("sign")
            .arg(&module)
            .arg("--key")
            .arg(&key)
            .arg("--passphrase-file")
            .arg(scratch.path("pw"))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains(scheme), "{err}");
        assert!(err.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"), "{err}");
        assert!(!err.contains("wrong passphrase"), "{err}");
        assert!(!scratch.path("m.sig").exists());

        // The command it gives works, and its result is read.
        let command = err
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("no command in {err}"))
            .replace("OLD", &s(&key))
            .replace("NEW", &s(&scratch.path(&format!("new-{i}.key"))));
        let mut words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words.remove(0), "openssl");
        words.extend(["-passin", "pass:pw123", "-passout", "pass:pw123"]);
        openssl(&words);
        let converted = PrivateKey::load(&scratch.path(&format!("new-{i}.key")), Some(&pass())).unwrap();
        assert_eq!(converted.algorithm(), KeyAlgorithm::Ed25519);
    }
}

#[test]
fn traditional_encrypted_pem_is_named_too() {
    let scratch = Scratch::new();
    let plain = scratch.genpkey(KeyAlgorithm::P256);
    let traditional = scratch.path("trad.key");
    openssl(&[
        "ec",
        "-in",
        &s(&plain),
        "-aes256",
        "-passout",
        "pass:pw123",
        "-out",
        &s(&traditional),
    ]);
    match PrivateKey::load(&traditional, Some(&pass())) {
        Err(e @ PkiError::UnsupportedEncryption { .. }) => {
            let message = e.to_string();
            assert!(message.contains("traditional PEM encryption"), "{message}");
            assert!(message.contains("AES-256-CBC"), "{message}");
            assert!(message.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"), "{message}");
        }
        other => panic!("expected an unsupported scheme, got {other:?}"),
    }
}

#[test]
fn an_unsupported_key_type_is_named() {
    let scratch = Scratch::new();
    for (args, name) in [
        (&["-algorithm", "ed448"][..], "Ed448"),
        (
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
            "EC P-521",
        ),
        (&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..], "RSA"),
    ] {
        let plain = scratch.path("other.key");
        let mut all = vec!["genpkey"];
        all.extend_from_slice(args);
        let plain_s = s(&plain);
        all.extend(["-out", &plain_s]);
        openssl(&all);
        let encrypted = scratch.encrypt(&plain, "other.enc.key", &["-v2", "aes-256-cbc"]);
        for (path, passphrase) in [(&plain, None), (&encrypted, Some(pass()))] {
            match PrivateKey::load(path, passphrase.as_ref()) {
                Err(PkiError::UnsupportedKey { algorithm, .. }) => assert_eq!(algorithm, name),
                other => panic!("expected {name} to be unsupported, got {other:?}"),
            }
        }
        std::fs::remove_file(&plain).unwrap();
        std::fs::remove_file(&encrypted).unwrap();
    }
}
