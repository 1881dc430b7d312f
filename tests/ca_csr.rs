//! CSR intake: every request `openssl req` makes for a supported key is issued as docs/ca.md
//! says (the request's SubjectPublicKeyInfo byte for byte, its SANs unless --san is given,
//! nothing else it asks for), or refused with the precise reason. Requests are made by OpenSSL;
//! every issued certificate is checked by `openssl verify`, `ca verify` and `ca show`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{ToolPki, ca, ok, openssl, s, stderr, with};
use x509_parser::prelude::FromDer;

support::newtype!(
    /// A root and an intermediate (no passphrases) in a fresh directory.
    Pki(ToolPki)
);

impl Pki {
    fn new() -> Self {
        Self(ToolPki::new("CSR Root", "CSR Issuing CA", &[]))
    }

    /// `openssl req -new -newkey NEWKEY… -nodes -keyout NAME.key -out NAME.csr EXTRA…`.
    fn csr(&self, name: &str, newkey: &[&str], extra: &[&str]) -> PathBuf {
        let (key, csr) = (self.path(&format!("{name}.key")), self.path(&format!("{name}.csr")));
        let (key_s, csr_s) = (s(&key), s(&csr));
        let mut args = vec!["req", "-new"];
        args.extend_from_slice(newkey);
        args.extend(["-nodes", "-keyout", &key_s, "-out", &csr_s]);
        if !extra.iter().any(|a| *a == "-subj" || *a == "-config") {
            args.extend(["-subj", "/CN=requester.example.test"]);
        }
        args.extend_from_slice(extra);
        openssl(&args);
        csr
    }

    fn issue(&self, profile: &str, name: &str, csr: &Path, extra: &[&str]) -> Output {
        ca(&self.inter())
            .args(["issue", "--profile", profile, "--name", name, "--csr"])
            .arg(csr)
            .arg("--out")
            .arg(self.path(name))
            .args(extra)
            .output()
            .unwrap()
    }

    /// Issues and checks the certificate: the request's exact SPKI, `openssl verify`,
    /// `ca verify`, `ca show`'s key type. Returns the certificate's DER.
    #[track_caller]
    fn issue_ok(&self, profile: &str, name: &str, csr: &Path, extra: &[&str], key_type: &str) -> Vec<u8> {
        let out = self.issue(profile, name, csr, extra);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let prefix = self.path(name);
        let cert = with(&prefix, ".pem");
        let der = pem::parse(std::fs::read(&cert).unwrap()).unwrap().into_contents();
        let csr_der = csr_der(csr);
        let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&csr_der).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            parsed.public_key().raw,
            request.certification_request_info.subject_pki.raw,
            "{name}: the certificate must carry the request's SubjectPublicKeyInfo exactly"
        );

        let purpose = match profile {
            "server" => "sslserver",
            "client" => "sslclient",
            _ => "any",
        };
        let out = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(self.root().join("ca.pem"))
            .arg("-untrusted")
            .arg(self.inter().join("ca.pem"))
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: openssl verify: {}",
            String::from_utf8_lossy(&out.stdout)
        );

        ok(ca(&self.inter())
            .arg("verify")
            .arg(with(&prefix, ".chain.pem"))
            .arg("--root")
            .arg(self.root().join("ca.pem"))
            .args(["--usage", profile]));

        let show: serde_json::Value =
            serde_json::from_str(&ok(ca(&self.inter()).arg("show").arg(&cert).arg("--json"))).unwrap();
        assert_eq!(show["key_algorithm"], key_type, "{name}");
        assert!(!with(&prefix, ".key").exists() || std::fs::read(with(&prefix, ".key")).is_ok());
        der
    }

    /// Asserts the request is refused with exit 3, a message holding `needle`, and nothing
    /// written or recorded.
    #[track_caller]
    fn refused(&self, profile: &str, name: &str, csr: &Path, extra: &[&str], needle: &str) -> String {
        let before = self.records();
        let out = self.issue(profile, name, csr, extra);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
        assert!(err.contains("ca: hint: "), "{name}: {err}");
        for suffix in [".pem", ".chain.pem"] {
            assert!(!with(&self.path(name), suffix).exists(), "{name}{suffix} was written");
        }
        assert_eq!(self.records(), before, "{name}: something was recorded");
        err
    }

    fn records(&self) -> usize {
        let out = ok(ca(&self.inter()).args(["list", "--json"]));
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    }
}

fn csr_der(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    match pem::parse(&bytes) {
        Ok(block) => block.into_contents(),
        Err(_) => bytes,
    }
}

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
const ED25519: &[&str] = &["-newkey", "ed25519"];
const RSA2048: &[&str] = &["-newkey", "rsa:2048"];
const RSA3072: &[&str] = &["-newkey", "rsa:3072"];

#[test]
fn the_issue_example_a_p256_key_signed_with_sha384_keeps_its_key() {
    let pki = Pki::new();
    let key = pki.path("p256.key");
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &s(&key)]);
    let csr = pki.path("m.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        &s(&key),
        "-sha384",
        "-subj",
        "/CN=mix.example.test",
        "-out",
        &s(&csr),
    ]);
    let der = pki.issue_ok("server", "mix.example.test", &csr, &[], "p256");
    // And OpenSSL can use it with the key: the certificate's key is the private key's.
    let cert = pki.path("mix.example.test.pem");
    std::fs::write(&cert, pem::encode(&pem::Pem::new("CERTIFICATE", der))).unwrap();
    let from_cert = openssl(&["x509", "-in", &s(&cert), "-noout", "-pubkey"]).stdout;
    let from_key = openssl(&["pkey", "-in", &s(&key), "-pubout"]).stdout;
    assert_eq!(from_cert, from_key);
    let text = String::from_utf8(openssl(&["x509", "-in", &s(&cert), "-noout", "-text"]).stdout).unwrap();
    assert!(
        text.contains("NIST CURVE: P-256") || text.contains("prime256v1"),
        "{text}"
    );
}

#[test]
fn every_supported_key_and_digest_is_issued_with_the_exact_key() {
    let pki = Pki::new();
    let cases: &[(&str, &[&str], &[&str], &str)] = &[
        ("p256-sha256", P256, &["-sha256"], "p256"),
        ("p256-sha384", P256, &["-sha384"], "p256"),
        ("p384-sha256", P384, &["-sha256"], "p384"),
        ("p384-sha384", P384, &["-sha384"], "p384"),
        ("ed25519", ED25519, &[], "ed25519"),
        ("rsa2048-sha256", RSA2048, &["-sha256"], "rsa-2048"),
        ("rsa2048-sha384", RSA2048, &["-sha384"], "rsa-2048"),
        ("rsa2048-sha512", RSA2048, &["-sha512"], "rsa-2048"),
        ("rsa3072-sha256", RSA3072, &["-sha256"], "rsa-3072"),
        (
            "rsa2048-pss-sha256",
            RSA2048,
            &[
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ],
            "rsa-2048",
        ),
        (
            "rsa2048-pss-sha512",
            RSA2048,
            &[
                "-sha512",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ],
            "rsa-2048",
        ),
    ];
    for (i, (name, newkey, extra, key_type)) in cases.iter().enumerate() {
        let csr = pki.csr(name, newkey, extra);
        let profile = if i % 2 == 0 { "server" } else { "client" };
        pki.issue_ok(profile, &format!("{name}.example.test"), &csr, &[], key_type);
    }
}

#[test]
fn keys_tessera_does_not_issue_for_are_named() {
    let pki = Pki::new();
    let dsa_params = pki.path("dsa.params");
    openssl(&[
        "genpkey",
        "-genparam",
        "-algorithm",
        "DSA",
        "-pkeyopt",
        "dsa_paramgen_bits:2048",
        "-out",
        &s(&dsa_params),
    ]);
    let dsa_newkey = format!("param:{}", s(&dsa_params));
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "p521",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "the request's key is EC P-521",
        ),
        (
            "secp256k1",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
            "the request's key is EC secp256k1",
        ),
        (
            "brainpool",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1"],
            "the request's key is EC brainpoolP256r1",
        ),
        ("ed448", vec!["-newkey", "ed448"], "the request's key is Ed448"),
        (
            "rsa1024",
            vec!["-newkey", "rsa:1024"],
            "the request's key is RSA 1024-bit",
        ),
        (
            "rsapss",
            vec!["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"],
            "the request's key is RSA-PSS",
        ),
        ("dsa", vec!["-newkey", &dsa_newkey], "the request's key is DSA"),
    ];
    for (name, newkey, needle) in &cases {
        let csr = pki.csr(name, newkey, &[]);
        let err = pki.refused("client", name, &csr, &[], needle);
        assert!(err.contains("which Tessera does not issue certificates for (supported: Ed25519, ECDSA P-256 or P-384, RSA of 2048 to 8192 bits)"), "{err}");
        assert!(!err.contains("self-signature"), "{err}");
    }
}

#[test]
fn signature_algorithms_ring_cannot_verify_are_named_not_called_forged() {
    let pki = Pki::new();
    let cases: &[(&str, &[&str], &[&str], &str)] = &[
        (
            "p256-sha512",
            P256,
            &["-sha512"],
            "signed with ecdsa-with-SHA512, which Tessera cannot verify for an EC P-256 key",
        ),
        (
            "p384-sha512",
            P384,
            &["-sha512"],
            "signed with ecdsa-with-SHA512, which Tessera cannot verify for an EC P-384 key",
        ),
        ("p256-sha1", P256, &["-sha1"], "signed with ecdsa-with-SHA1"),
        ("rsa-sha1", RSA2048, &["-sha1"], "signed with sha1WithRSAEncryption"),
        (
            "rsa-sha224",
            RSA2048,
            &["-sha224"],
            "signed with sha224WithRSAEncryption",
        ),
        // OpenSSL's default PSS salt is as long as possible; ring verifies a salt as long as the hash.
        (
            "rsa-pss-maxsalt",
            RSA2048,
            &["-sigopt", "rsa_padding_mode:pss"],
            "salt of 222 bytes",
        ),
    ];
    for (name, newkey, extra, needle) in cases {
        let csr = pki.csr(name, newkey, extra);
        let err = pki.refused("client", name, &csr, &[], needle);
        assert!(!err.contains("does not verify"), "{err}");
    }
}

#[test]
fn a_forged_or_broken_request_is_said_not_to_verify() {
    let pki = Pki::new();
    for (name, newkey) in [("p256", P256), ("ed25519", ED25519), ("rsa", RSA2048)] {
        let csr = pki.csr(name, newkey, &["-addext", "subjectAltName=DNS:forged.example.test"]);
        let der = csr_der(&csr);
        // Flip a byte of the signature, then one of the subject name.
        let mut signature = der.clone();
        let n = signature.len();
        signature[n - 5] ^= 0x01;
        let mut subject = der.clone();
        let at = subject.windows(9).position(|w| w == b"requester").unwrap();
        subject[at] = b'R';
        for (kind, bytes) in [("signature", signature), ("subject", subject)] {
            let forged = pki.path(&format!("{name}-{kind}.csr"));
            std::fs::write(&forged, pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", bytes))).unwrap();
            pki.refused(
                "server",
                &format!("{name}-{kind}"),
                &forged,
                &[],
                "its self-signature does not verify",
            );
        }
    }
}

#[test]
fn what_a_request_asks_for_besides_its_key_and_names_changes_nothing() {
    let pki = Pki::new();
    let config = pki.path("req.cnf");
    std::fs::write(
        &config,
        "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n\
         [dn]\nC = XX\nO = Evil Corp\nOU = Ops\nCN = other.example.test\nemailAddress = root@example.test\n\
         [attrs]\nchallengePassword = secret1234\nunstructuredName = Evil\n",
    )
    .unwrap();
    let config_s = s(&config);
    let asks: &[&str] = &[
        "-config",
        &config_s,
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:5",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature,keyEncipherment",
        "-addext",
        "extendedKeyUsage=clientAuth,emailProtection,codeSigning,1.2.3.4.5",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-addext",
        "certificatePolicies=1.2.3.4",
        "-addext",
        "nsComment=please make me a CA",
        "-addext",
        "tlsfeature=status_request",
        "-addext",
        "1.3.6.1.4.1.55738.1=critical,DER:05:00",
        "-addext",
        "subjectAltName=DNS:asked.example.test,IP:10.0.0.7",
    ];
    let csr = pki.csr("asks", P256, asks);
    let der = pki.issue_ok("server", "www.example.test", &csr, &[], "p256");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=www.example.test");
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca && bc.path_len_constraint.is_none());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign() && !ku.key_encipherment());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth && !eku.email_protection && !eku.code_signing);
    assert!(eku.other.is_empty());
    let oids: Vec<String> = cert.extensions().iter().map(|e| e.oid.to_id_string()).collect();
    let mut sorted = oids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "2.5.29.14",
            "2.5.29.15",
            "2.5.29.17",
            "2.5.29.19",
            "2.5.29.35",
            "2.5.29.37"
        ],
        "only the profile's extensions: {oids:?}"
    );
    // The names are the request's (plus the server's --name).
    let show: serde_json::Value = serde_json::from_str(&ok(ca(&pki.inter())
        .arg("show")
        .arg(pki.path("www.example.test.pem"))
        .arg("--json")))
    .unwrap();
    assert_eq!(
        show["sans"],
        serde_json::json!(["dns:www.example.test", "dns:asked.example.test", "ip:10.0.0.7"])
    );
}

#[test]
fn names_come_from_the_request_unless_san_is_given() {
    let pki = Pki::new();
    let csr = pki.csr(
        "names",
        P256,
        &["-addext", "subjectAltName=DNS:a.example.test,IP:192.0.2.1,IP:2001:db8::1,email:a@example.test,URI:spiffe://example.test/a"],
    );
    pki.issue_ok("client", "names", &csr, &[], "p256");
    let sans = |name: &str| -> serde_json::Value {
        let show: serde_json::Value = serde_json::from_str(&ok(ca(&pki.inter())
            .arg("show")
            .arg(pki.path(&format!("{name}.pem")))
            .arg("--json")))
        .unwrap();
        show["sans"].clone()
    };
    assert_eq!(
        sans("names"),
        serde_json::json!([
            "dns:a.example.test",
            "ip:192.0.2.1",
            "ip:2001:db8::1",
            "email:a@example.test",
            "uri:spiffe://example.test/a"
        ])
    );
    // --san replaces them all.
    pki.issue_ok("client", "override", &csr, &["--san", "dns:b.example.test"], "p256");
    assert_eq!(sans("override"), serde_json::json!(["dns:b.example.test"]));

    // Names Tessera cannot put in a certificate are refused by name, unless --san is given.
    for (name, san, needle) in [
        (
            "other",
            "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:user@example.test",
            "an otherName (1.3.6.1.4.1.311.20.2.3)",
        ),
        ("dirname", "dirName:dir_sect", "a directoryName"),
        ("rid", "RID:1.2.3.4", "a registeredID (1.2.3.4)"),
        ("badname", "DNS:bad..name.example", "not a valid DNS name"),
    ] {
        let mut extra = vec!["-addext".to_string(), format!("subjectAltName={san}")];
        if name == "dirname" {
            let config = pki.path("dir.cnf");
            std::fs::write(
                &config,
                "[req]\ndistinguished_name = dn\n[dn]\n[dir_sect]\nCN = Some Directory Name\n",
            )
            .unwrap();
            extra.extend(["-config".into(), s(&config), "-subj".into(), "/CN=dir".into()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let csr = pki.csr(name, P256, &extra);
        let err = pki.refused("client", name, &csr, &[], needle);
        assert!(
            err.contains("ca: hint: give the certificate's names with --san"),
            "{err}"
        );
        pki.issue_ok(
            "client",
            &format!("{name}-with-san"),
            &csr,
            &["--san", "dns:c.example.test"],
            "p256",
        );
    }
}

#[test]
fn a_key_left_beside_the_request_by_openssl_does_not_block_it() {
    let pki = Pki::new();
    // openssl req -keyout PREFIX.key, then ca issue --out PREFIX.
    let prefix = pki.path("svc");
    let (key, csr) = (with(&prefix, ".key"), with(&prefix, ".csr"));
    support::openssl_p256_csr(&key, &csr, &["-subj", "/CN=svc.example.test"]);
    let key_before = std::fs::read(&key).unwrap();
    pki.issue_ok("server", "svc", &csr, &["--san", "dns:svc.example.test"], "p256");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        key_before,
        "the requester's key is untouched"
    );
    // Without --csr, an existing PREFIX.key still blocks a new key.
    let out = ca(&pki.inter())
        .args(["issue", "--profile", "server", "--name", "svc.example.test", "--out"])
        .arg(pki.path("svc"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn code_signing_needs_an_ed25519_request_and_then_signs_modules() {
    let pki = Pki::new();
    let csr = pki.csr("p256-signer", P256, &[]);
    let err = pki.refused(
        "code-signing",
        "p256-signer",
        &csr,
        &[],
        "a code-signing certificate needs an Ed25519 key",
    );
    assert!(err.contains("the request's key is EC P-256"), "{err}");

    let csr = pki.csr("signer", ED25519, &[]);
    pki.issue_ok("code-signing", "signer", &csr, &[], "ed25519");
    let module = pki.path("module.bin");
    std::fs::write(&module, b"module bytes").unwrap();
    let out = support::command("sign")
        .arg(&module)
        .arg("--key")
        .arg(pki.path("signer.key"))
        .arg("--cert")
        .arg(pki.path("signer.chain.pem"))
        .env_remove("TESSERA_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = support::command("verify")
        .arg(&module)
        .arg("--root")
        .arg(pki.root().join("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn request_encodings_and_wrong_inputs() {
    let pki = Pki::new();
    let csr = pki.csr("pem", P256, &[]);
    let der = csr_der(&csr);
    // DER, and the label older tools write.
    let der_path = pki.path("req.der");
    std::fs::write(&der_path, &der).unwrap();
    pki.issue_ok("client", "from-der", &der_path, &[], "p256");
    let new_label = pki.path("new.csr");
    std::fs::write(
        &new_label,
        pem::encode(&pem::Pem::new("NEW CERTIFICATE REQUEST", der.clone())),
    )
    .unwrap();
    pki.issue_ok("client", "new-label", &new_label, &[], "p256");

    // Two requests, a certificate, garbage, trailing bytes.
    let two = pki.path("two.csr");
    let text = std::fs::read_to_string(&csr).unwrap();
    std::fs::write(&two, format!("{text}{text}")).unwrap();
    pki.refused("client", "two", &two, &[], "it holds 2 certificate requests");
    pki.refused(
        "client",
        "cert",
        &pki.root().join("ca.pem"),
        &[],
        "it holds CERTIFICATE, not a certificate request",
    );
    let garbage = pki.path("garbage.csr");
    std::fs::write(&garbage, "hello").unwrap();
    pki.refused("client", "garbage", &garbage, &[], "neither PEM nor DER");
    let mut trailing = der.clone();
    trailing.extend([0, 0]);
    let trailing_path = pki.path("trailing.csr");
    std::fs::write(&trailing_path, &trailing).unwrap();
    pki.refused("client", "trailing", &trailing_path, &[], "2 bytes follow the request");
}
