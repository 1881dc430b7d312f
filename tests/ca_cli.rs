//! The `ca` tool end to end: every certificate it issues is checked by independent verifiers
//! (`openssl verify`, rustls-webpki directly and through the library), and bad input is pinned by exit code
//! and message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustls_pki_types::UnixTime;
use support::{ToolPki, ca, ok, openssl_output, output, s, stderr, with};
use tessera::pki::{CertificateInfo, TrustStore, Usage, VerifyRequest, pem};

/// A root and an intermediate CA (no passphrases) under a fresh temporary directory.
fn pki(intermediate_flags: &[&str]) -> ToolPki {
    ToolPki::new("Test Root", "Test Issuing CA", intermediate_flags)
}

#[test]
fn every_profile_is_accepted_by_openssl_and_webpki() {
    // id-kp-codeSigning (RFC 5280 section 4.2.1.12), 1.3.6.1.5.5.7.3.3, as DER content octets.
    const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
    let pki = pki(&[]);
    let root = s(&pki.root().join("ca.pem"));
    let inter = s(&pki.inter().join("ca.pem"));
    let cases = [
        (
            "server",
            "www.example.org",
            "sslserver",
            Usage::Server,
            "TLS Web Server Authentication",
        ),
        (
            "client",
            "alice",
            "sslclient",
            Usage::Client,
            "TLS Web Client Authentication",
        ),
        (
            "code-signing",
            "release-signer",
            "any",
            Usage::CodeSigning,
            "Code Signing",
        ),
    ];
    for (profile, name, purpose, usage, eku_text) in cases {
        let prefix = pki.issue(profile, name, &["--san", "127.0.0.1"]);
        let cert = s(&with(&prefix, ".pem"));
        let out = openssl_output(&[
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            &root,
            "-untrusted",
            &inter,
            &cert,
        ]);
        assert!(out.status.success(), "openssl rejects {profile}: {}", stderr(&out));
        let text = openssl_output(&[
            "x509",
            "-in",
            &cert,
            "-noout",
            "-ext",
            "extendedKeyUsage,basicConstraints,keyUsage",
        ]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(eku_text), "{profile}: {text}");
        assert!(
            text.contains("CA:FALSE") && text.contains("Digital Signature"),
            "{profile}: {text}"
        );

        // webpki at a fixed time (one day after issuance), through the library's one path.
        let certs = pem::load_certificates(&with(&prefix, ".chain.pem")).unwrap();
        let info = CertificateInfo::from_der(&certs[0]).unwrap();
        let at = info.not_before + time::Duration::days(1);
        let store = TrustStore::from_root_file(&pki.root().join("ca.pem")).unwrap();
        let chain = store
            .verify(&certs[0], &certs[1..], &VerifyRequest::new(usage, at))
            .unwrap();
        assert_eq!(chain.path().len(), 3, "{profile}: leaf, intermediate, root");
        // rustls-webpki itself at the same time, independent of `TrustStore::verify`.
        let root_der = pem::load_certificates(&pki.root().join("ca.pem")).unwrap().remove(0);
        let anchors = [webpki::anchor_from_trusted_cert(&root_der).unwrap()];
        let leaf = webpki::EndEntityCert::try_from(&certs[0]).unwrap();
        let webpki_time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at.unix_timestamp()).unwrap(),
        ));
        let webpki_usage = |usage: Usage| match usage {
            Usage::Server => webpki::KeyUsage::server_auth(),
            Usage::Client => webpki::KeyUsage::client_auth(),
            // webpki applies the EKU rule to every certificate of the path, and the CAs list
            // none: "if present" (the leaf's own codeSigning EKU is asserted above).
            _ => webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
        };
        let webpki_verify = |usage: Usage| {
            leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &certs[1..],
                webpki_time,
                webpki_usage(usage),
                None,
                None,
            )
            .map(|path| path.intermediate_certificates().count())
        };
        assert_eq!(
            webpki_verify(usage),
            Ok(1),
            "{profile}: webpki accepts it through the intermediate"
        );
        // and for no other TLS usage
        let other = if usage == Usage::Server {
            Usage::Client
        } else {
            Usage::Server
        };
        if usage != Usage::CodeSigning {
            assert!(
                store
                    .verify(&certs[0], &certs[1..], &VerifyRequest::new(other, at))
                    .is_err()
            );
            assert!(
                webpki_verify(other).is_err(),
                "{profile}: webpki refuses it for {other:?}"
            );
        }
    }
    // The code-signing key is Ed25519 by default; TLS keys are P-256.
    let shown = ok(ca(&pki.inter())
        .args(["show", "--json"])
        .arg(pki.path("release-signer.pem")));
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(json["key_algorithm"], "ed25519");
    assert_eq!(json["extended_key_usage"], serde_json::json!(["codeSigning"]));
    let shown = ok(ca(&pki.inter())
        .args(["show", "--json"])
        .arg(pki.path("www.example.org.pem")));
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(json["key_algorithm"], "p256");
    assert_eq!(json["sans"], serde_json::json!(["dns:www.example.org", "ip:127.0.0.1"]));
    assert!(json["subject_key_id"].is_string() && json["authority_key_id"].is_string());
}

#[test]
fn ca_certificates_have_the_right_extensions_and_files_the_right_modes() {
    let pki = pki(&["--path-len", "0", "--permit-dns", "example.org"]);
    let text = openssl_output(&["x509", "-in", &s(&pki.inter().join("ca.pem")), "-noout", "-text"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0"),
        "{text}"
    );
    assert!(
        text.contains("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"),
        "{text}"
    );
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    for dir in [pki.root(), pki.inter()] {
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
    }
    let prefix = pki.issue("server", "a.example.org", &[]);
    assert_eq!(
        std::fs::metadata(with(&prefix, ".key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The intermediate is recorded in the root's database.
    let out = ok(ca(&pki.root()).args(["list", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["profile"], "intermediate");
    assert_eq!(list[0]["subject"], "CN=Test Issuing CA");
    // path length 0: no CA below the intermediate
    let out = output(
        ca(&pki.path("sub"))
            .args(["init", "--no-passphrase", "--parent"])
            .arg(pki.inter()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!pki.path("sub").join("ca.pem").exists());
}

#[test]
fn name_constraints_are_enforced_at_issuance_and_nothing_is_written() {
    let pki = pki(&["--permit-dns", "example.org", "--permit-ip", "10.0.0.0/8"]);
    pki.issue("server", "api.example.org", &["--san", "10.1.2.3"]);
    for bad in [["--san", "evil.com"], ["--san", "192.168.1.1"]] {
        let prefix = pki.path("bad");
        let out = output(
            ca(&pki.inter())
                .args(["issue", "--profile", "server", "--name", "ok.example.org", "--out"])
                .arg(&prefix)
                .args(bad),
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            "ca: error: refusing to issue: certificate violates its issuer's name constraints\n\
             ca: hint: every --san must lie inside the CA's permitted names (see `ca show DIR/ca.pem`)\n"
        );
        assert!(!with(&prefix, ".pem").exists() && !with(&prefix, ".key").exists());
    }
    assert_eq!(pki.list().len(), 1, "refused certificates are not recorded");
}

#[test]
fn a_server_named_by_an_ip_address_passes_openssl_under_dns_name_constraints() {
    // OpenSSL reads a common name such as 127.0.0.1 as a host name and checks it against the
    // CA's DNS name constraints; Tessera puts an IP address in the subjectAltName only, with an
    // empty subject and a critical subjectAltName (RFC 5280 section 4.2.1.6).
    let pki = pki(&["--permit-dns", "example.org"]);
    let prefix = pki.path("ip-server");
    let out = ok(ca(&pki.inter())
        .args(["issue", "--profile", "server", "--name", "127.0.0.1", "--out"])
        .arg(&prefix));
    assert!(
        out.starts_with("issued server certificate \"(empty subject)\" serial "),
        "{out}"
    );
    assert!(out.contains("names:       ip:127.0.0.1"), "{out}");
    let (root, inter) = (s(&pki.root().join("ca.pem")), s(&pki.inter().join("ca.pem")));
    let verify = |cert: &str| {
        let out = openssl_output(&[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-verify_ip",
            "127.0.0.1",
            "-CAfile",
            &root,
            "-untrusted",
            &inter,
            cert,
        ]);
        assert_eq!(out.status.code(), Some(0), "openssl verify {cert}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{cert}: OK\n"));
    };
    let cert = s(&with(&prefix, ".pem"));
    verify(&cert);
    let text = openssl_output(&["x509", "-noout", "-text", "-in", &cert]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("X509v3 Subject Alternative Name: critical\n                IP Address:127.0.0.1\n"),
        "{text}"
    );
    let info = CertificateInfo::from_der(&pem::load_certificates(&with(&prefix, ".pem")).unwrap()[0]).unwrap();
    assert_eq!((info.subject.as_str(), info.name()), ("", "127.0.0.1".to_string()));

    // A DNS name under the same CA keeps its common name.
    let dns = pki.issue("server", "www.example.org", &[]);
    let dns = CertificateInfo::from_der(&pem::load_certificates(&with(&dns, ".pem")).unwrap()[0]).unwrap();
    assert_eq!(dns.subject, "CN=www.example.org");

    // Renewal keeps the name and the empty subject; the renewed certificate passes too.
    let renewed = pki.path("ip-server-renewed");
    ok(ca(&pki.inter())
        .args(["renew"])
        .arg(with(&prefix, ".pem"))
        .arg("--out")
        .arg(&renewed));
    let renewed_cert = s(&with(&renewed, ".pem"));
    verify(&renewed_cert);
    let info = CertificateInfo::from_der(&pem::load_certificates(&with(&renewed, ".pem")).unwrap()[0]).unwrap();
    assert_eq!((info.subject.as_str(), info.name()), ("", "127.0.0.1".to_string()));
    assert_eq!(
        info.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["ip:127.0.0.1"]
    );
    let listed = pki.list();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().filter(|r| r["subject"] == "").count() == 2, "{listed:?}");
}

#[test]
fn lifetimes_are_clamped_by_default_and_refused_when_explicit() {
    let pki = pki(&["--days", "10"]);
    let inter_after = CertificateInfo::from_der(&pem::load_certificates(&pki.inter().join("ca.pem")).unwrap()[0])
        .unwrap()
        .not_after;
    let prefix = pki.path("clamped");
    let out = output(
        ca(&pki.inter())
            .args(["issue", "--profile", "server", "--name", "c.example.org", "--out"])
            .arg(&prefix),
    );
    assert!(out.status.success());
    assert!(stderr(&out).contains("lifetime shortened"), "{}", stderr(&out));
    let info = CertificateInfo::from_der(&pem::load_certificates(&with(&prefix, ".pem")).unwrap()[0]).unwrap();
    assert_eq!(info.not_after, inter_after);

    let out = output(
        ca(&pki.inter())
            .args([
                "issue",
                "--profile",
                "server",
                "--name",
                "d.example.org",
                "--days",
                "11",
                "--out",
            ])
            .arg(pki.path("long")),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("after its issuer"), "{}", stderr(&out));
    assert!(!pki.path("long.pem").exists());

    pki.issue("client", "short", &["--hours", "1"]);
    let info = CertificateInfo::from_der(&pem::load_certificates(&pki.path("short.pem")).unwrap()[0]).unwrap();
    let lifetime = info.not_after - info.not_before;
    assert!(
        lifetime <= time::Duration::minutes(61) && lifetime >= time::Duration::minutes(60),
        "{lifetime}"
    );
}

#[test]
fn a_csr_made_by_openssl_is_issued_and_a_broken_one_refused() {
    let pki = pki(&[]);
    let key = s(&pki.path("req.key"));
    let csr = s(&pki.path("req.csr"));
    support::openssl_p256_csr(
        &pki.path("req.key"),
        &pki.path("req.csr"),
        &[
            "-subj",
            "/CN=csr.example.org",
            "-addext",
            "subjectAltName=DNS:csr.example.org",
        ],
    );
    let prefix = pki.issue("server", "csr.example.org", &["--csr", &csr]);
    assert!(!with(&prefix, ".key").exists(), "no key is written for a CSR");
    let cert = s(&with(&prefix, ".pem"));
    let out = openssl_output(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        &s(&pki.root().join("ca.pem")),
        "-untrusted",
        &s(&pki.inter().join("ca.pem")),
        &cert,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The certificate carries the requester's public key.
    let from_cert = openssl_output(&["x509", "-in", &cert, "-noout", "-pubkey"]).stdout;
    let from_key = openssl_output(&["pkey", "-in", &key, "-pubout"]).stdout;
    assert_eq!(from_cert, from_key);

    // Break the CSR's signature (last bytes of the DER) and re-armour it.
    let der = pem::parse_blocks(&std::fs::read(&csr).unwrap(), pem::CERTIFICATE_REQUEST, "csr").unwrap();
    let mut der = der[0].clone();
    let n = der.len();
    der[n - 3] ^= 0x55;
    let broken = pki.path("broken.csr");
    std::fs::write(&broken, pem::to_pem(pem::CERTIFICATE_REQUEST, &der)).unwrap();
    let out = output(
        ca(&pki.inter())
            .args(["issue", "--profile", "server", "--name", "csr.example.org", "--csr"])
            .arg(&broken)
            .arg("--out")
            .arg(pki.path("broken")),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("self-signature does not verify"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("ca: hint: make a request with"),
        "{}",
        stderr(&out)
    );
    assert!(!pki.path("broken.pem").exists());
}

#[test]
fn revocation_is_seen_by_openssl_and_by_ca_verify() {
    let pki = pki(&[]);
    let prefix = pki.issue("client", "mallory", &[]);
    let keep = pki.issue("client", "bob", &[]);
    let serial = pki.list().iter().find(|r| r["subject"] == "CN=mallory").unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    ok(ca(&pki.inter()).args(["revoke", &serial, "--reason", "key-compromise"]));
    let crl = s(&pki.inter().join("crl.pem"));
    let out = openssl_output(&[
        "crl",
        "-in",
        &crl,
        "-CAfile",
        &s(&pki.inter().join("chain.pem")),
        "-noout",
        "-verify",
    ]);
    assert!(
        out.status.success() && stderr(&out).contains("verify OK"),
        "{}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&openssl_output(&["crl", "-in", &crl, "-noout", "-text"]).stdout).into_owned();
    assert!(text.contains("Version 2") && text.contains("X509v3 CRL Number") && text.contains("Key Compromise"));
    assert!(text.contains("Next Update"));

    let root = s(&pki.root().join("ca.pem"));
    let inter = s(&pki.inter().join("ca.pem"));
    let verify = |cert: &str| {
        openssl_output(&[
            "verify",
            "-crl_check",
            "-CRLfile",
            &crl,
            "-CAfile",
            &root,
            "-untrusted",
            &inter,
            cert,
        ])
    };
    let out = verify(&s(&with(&prefix, ".pem")));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("certificate revoked")
            || stderr(&out).contains("certificate revoked")
    );
    assert!(verify(&s(&with(&keep, ".pem"))).status.success());

    let out = output(
        ca(&pki.inter())
            .arg("verify")
            .arg(with(&prefix, ".chain.pem"))
            .args(["--root", &root, "--usage", "client", "--crl", &crl]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("certificate {serial} is revoked (key-compromise)")),
        "{}",
        stderr(&out)
    );
    let out = output(
        ca(&pki.inter())
            .arg("verify")
            .arg(with(&keep, ".chain.pem"))
            .args(["--root", &root, "--usage", "client", "--crl", &crl]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let list = pki.list();
    let entry = list.iter().find(|r| r["serial"] == serial.as_str()).unwrap();
    assert_eq!(entry["status"], "revoked");
    for field in [
        "serial",
        "subject",
        "sans",
        "profile",
        "not_before",
        "not_after",
        "status",
    ] {
        assert!(entry.get(field).is_some(), "list --json lacks {field}");
    }
    // Revoking twice changes nothing: for the same (or no) reason it succeeds, for another one
    // it is refused (exit 1); an unknown serial is an error.
    let out = output(ca(&pki.inter()).args(["revoke", &serial]));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already revoked"));
    let out = output(ca(&pki.inter()).args(["revoke", &serial, "--reason", "superseded"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already revoked"));
    let out = output(ca(&pki.inter()).args(["revoke", "abcdef"]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        "ca: error: no certificate with serial abcdef was issued by this CA\nca: hint: `ca list` shows the serials this CA issued\n"
    );
    // A fresh CRL gets the next number; --json describes it, and so does `ca show`.
    let written: serde_json::Value = serde_json::from_str(&ok(ca(&pki.inter()).args(["crl", "--json"]))).unwrap();
    assert_eq!(written["crl_number"], 2);
    let shown = ok(ca(&pki.inter()).args(["show", "--json"]).arg(&crl));
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(json, written);
    assert_eq!(json["revoked"][0]["reason"], "key-compromise");
    assert_eq!(json["revoked"][0]["serial"], serial.as_str());
}

#[test]
fn ca_verify_says_why_not() {
    let pki = pki(&[]);
    let prefix = pki.issue("server", "www.example.org", &[]);
    let chain = with(&prefix, ".chain.pem");
    let root = s(&pki.root().join("ca.pem"));
    let verify = |extra: &[&str]| {
        output(
            ca(&pki.inter())
                .arg("verify")
                .arg(&chain)
                .args(["--root", &root])
                .args(extra),
        )
    };

    let out = verify(&["--usage", "server", "--name", "www.example.org", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["trusted"], true);
    assert_eq!(json["path"].as_array().unwrap().len(), 3);

    let cases: [(&[&str], &str); 4] = [
        (&["--usage", "client"], "not valid for client use"),
        (
            &["--usage", "server", "--name", "other.example.org"],
            "not valid for the name other.example.org",
        ),
        (&["--at", "2099-01-01T00:00:00Z"], "expired at"),
        (&["--at", "2001-01-01T00:00:00Z"], "is not valid before"),
    ];
    for (args, reason) in cases {
        let out = verify(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(reason), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("ca: error: "), "{}", stderr(&out));
    }
    // A foreign root: unknown issuer.
    let other = pki.path("other");
    ok(ca(&other).args(["init", "--no-passphrase"]));
    let out = output(
        ca(&pki.inter())
            .arg("verify")
            .arg(&chain)
            .arg("--root")
            .arg(other.join("ca.pem")),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown issuer"), "{}", stderr(&out));
    let out = output(
        ca(&pki.inter())
            .arg("verify")
            .arg(&chain)
            .arg("--root")
            .arg(other.join("ca.pem"))
            .arg("--json"),
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["trusted"], false);
    assert!(json["reason"].as_str().unwrap().contains("unknown issuer"));
}

#[test]
fn parallel_issuers_lose_nothing() {
    let pki = pki(&[]);
    let children: Vec<_> = (0..10)
        .map(|i| {
            ca(&pki.inter())
                .args([
                    "issue",
                    "--profile",
                    "client",
                    "--name",
                    &format!("client-{i}"),
                    "--out",
                ])
                .arg(pki.path(&format!("c{i}")))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let list = pki.list();
    assert_eq!(list.len(), 10);
    let mut serials: Vec<&str> = list.iter().map(|r| r["serial"].as_str().unwrap()).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 10, "serials are unique");
    for serial in serials {
        assert!(serial.len() >= 16, "at least 64 bits: {serial}");
    }
}

#[test]
fn a_killed_issuer_leaves_a_database_that_loads_and_holds_what_was_handed_out() {
    let pki = pki(&[]);
    let out_dir = pki.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    for i in 0..12u64 {
        let mut child = ca(&pki.inter())
            .args(["issue", "--profile", "client", "--name", &format!("k{i}"), "--out"])
            .arg(out_dir.join(format!("k{i}")))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill at varying moments: before, during and after the database write.
        std::thread::sleep(std::time::Duration::from_millis(3 * i));
        let _ = child.kill();
        let _ = child.wait();
    }
    let list = pki.list(); // parses, or the test fails
    let serials: Vec<&str> = list.iter().map(|r| r["serial"].as_str().unwrap()).collect();
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".chain.pem") {
            let cert = pem::load_certificates(&path).unwrap();
            let info = CertificateInfo::from_der(&cert[0]).unwrap();
            assert!(
                serials.contains(&info.serial.to_string().as_str()),
                "{} was handed out but not recorded",
                info.serial
            );
        }
    }
}

#[test]
fn encrypted_ca_keys_and_passphrase_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    ok(ca(&dir).args(["init", "--passphrase-file"]).arg(&pass));
    let key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    // openssl can decrypt it with the same passphrase (standard PBES2)
    let out = openssl_output(&[
        "pkey",
        "-in",
        &dir.join("ca.key").display().to_string(),
        "-passin",
        &format!("file:{}", pass.display()),
        "-noout",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Environment variable works too.
    let out = output(
        ca(&dir)
            .env("TESSERA_PASSPHRASE", "correct horse battery staple")
            .args(["issue", "--profile", "client", "--name", "envuser", "--out"])
            .arg(tmp.path().join("envuser")),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let out = output(
        ca(&dir)
            .args(["issue", "--profile", "client", "--name", "x", "--passphrase-file"])
            .arg(&wrong),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("wrong passphrase or damaged key"), "{err}");
    assert!(
        err.contains("ca: hint: check the passphrase file or TESSERA_PASSPHRASE"),
        "{err}"
    );

    // No passphrase source and no terminal.
    let out = output(
        ca(&dir)
            .args(["issue", "--profile", "client", "--name", "y"])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("hint: use --passphrase-file FILE or set TESSERA_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.key")).unwrap(),
        key,
        "key unchanged"
    );
    assert_eq!(
        std::fs::read_dir(dir.join("issued")).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing written by failed runs"
    );
}

#[test]
fn bad_input_gets_the_right_exit_code_and_message() {
    let pki = pki(&[]);
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate").unwrap();

    let out = output(ca(&pki.inter()).arg("show").arg(&garbage));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out),
        format!("ca: error: {} is not valid: neither PEM nor DER\n", garbage.display())
    );

    let out = output(ca(&pki.inter()).arg("show").arg(pki.path("missing.pem")));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("No such file or directory") && stderr(&out).contains("ca: hint: check the path"));

    let out = output(ca(&pki.path("nowhere")).args(["issue", "--profile", "server", "--name", "a.example"]));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("is not a CA directory (no ca.pem)"));
    assert!(stderr(&out).contains("ca: hint: create one with `ca init`"));

    // A certificate where the key should be.
    let broken = pki.path("broken-ca");
    std::fs::create_dir(&broken).unwrap();
    for f in ["ca.pem", "chain.pem", "ca.db", "store.json"] {
        std::fs::copy(pki.inter().join(f), broken.join(f)).unwrap();
    }
    std::fs::copy(pki.inter().join("ca.pem"), broken.join("ca.key")).unwrap();
    let out = output(ca(&broken).args(["issue", "--profile", "server", "--name", "a.example"]));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("ca.key contains no PRIVATE KEY"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("hint: pass the PKCS#8 private key file"),
        "{}",
        stderr(&out)
    );

    // Usage errors exit 2.
    for args in [
        vec!["issue", "--profile", "webmaster", "--name", "x"],
        vec!["issue", "--name", "x"],
        vec!["verify", "x.pem", "--root", "r.pem", "--at", "yesterday"],
        vec!["init", "--key-type", "rsa"],
    ] {
        let out = output(ca(&pki.inter()).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    // A --san not valid for its type is a usage error too.
    let out = output(ca(&pki.inter()).args(["issue", "--profile", "server", "--name", "x", "--san", "ip:999.1.1.1"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("\"ip:999.1.1.1\" is not an IP address"),
        "{}",
        stderr(&out)
    );

    // Nothing is overwritten.
    let prefix = pki.issue("server", "keep.example.org", &[]);
    let before = std::fs::read(with(&prefix, ".key")).unwrap();
    let out = output(
        ca(&pki.inter())
            .args(["issue", "--profile", "server", "--name", "keep.example.org", "--out"])
            .arg(&prefix),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("already exists; refusing to overwrite it"));
    assert_eq!(std::fs::read(with(&prefix, ".key")).unwrap(), before);
    let out = output(ca(&pki.root()).args(["init", "--no-passphrase"]));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("already holds a CA"));
}

#[test]
fn help_lists_examples_and_exit_codes() {
    for args in [vec!["--help"], vec!["issue", "--help"], vec!["verify", "--help"]] {
        let out = output(support::command("ca").args(&args));
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXAMPLES:") && text.contains("EXIT CODES:"), "{args:?}");
    }
}

/// A tmpfs of `size`, unmounted on drop. None where mounting is not permitted (not root).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf, size: &str) -> Option<Self> {
        std::fs::create_dir_all(&at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self(at))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for the CA and its SQLite store (40 KiB, more while its WAL is in use), then a few
    // issues.
    let disk = SmallDisk::mount(tmp.path().join("disk"), "384k");
    if !support::require("a tmpfs", disk.is_some(), "mounting one needs root; CI runs as root") {
        return;
    }
    let disk = disk.unwrap();
    let dir = disk.0.join("ca");
    ok(ca(&dir).args(["init", "--no-passphrase"]));
    let mut failure = None;
    for i in 0..200 {
        let out = output(ca(&dir).args(["issue", "--profile", "client", "--name", &format!("filler-{i}")]));
        if !out.status.success() {
            failure = Some(out);
            break;
        }
    }
    let out = failure.expect("the disk fills up");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device") || stderr(&out).contains("database or disk is full"),
        "{}",
        stderr(&out)
    );
    // The store still opens, and every certificate whose files exist is recorded.
    let list = ok(ca(&dir).args(["list", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let serials: Vec<&str> = list.iter().map(|r| r["serial"].as_str().unwrap()).collect();
    for entry in std::fs::read_dir(dir.join("issued")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left behind: {name}");
        if name.ends_with(".chain.pem") {
            let info = CertificateInfo::from_der(&pem::load_certificates(&path).unwrap()[0]).unwrap();
            assert!(serials.contains(&info.serial.to_string().as_str()));
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".db.json.tmp") && !name.starts_with(".ca.db.tmp"),
            "temporary database left behind: {name}"
        );
    }
    drop(disk);
}

/// Runs `ca ARGS` on a pseudo-terminal (util-linux `script`): waits for each prompt, then types
/// its answer. Returns everything the terminal showed.
fn ca_on_a_terminal(args: &str, answers: &[(&str, &str)]) -> Option<(std::process::ExitStatus, String)> {
    use std::io::{Read, Write};
    let script = Command::new("script").arg("--version").output().ok()?;
    if !script.status.success() {
        return None;
    }
    let command = format!("{} {args}", support::tool("ca").display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("TESSERA_PASSPHRASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut stdout = child.stdout.take()?;
    let mut shown = Vec::new();
    for (prompt, answer) in answers {
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&shown).contains(prompt) {
            if stdout.read(&mut byte).ok()? == 0 {
                break;
            }
            shown.push(byte[0]);
        }
        // The prompt is written just before the terminal's echo is turned off (rpassword), so
        // an answer typed at once could still be echoed by the terminal itself: a person types
        // after reading the prompt, and so does this test.
        std::thread::sleep(std::time::Duration::from_millis(500));
        writeln!(stdin, "{answer}").ok()?;
    }
    stdout.read_to_end(&mut shown).ok()?;
    let status = child.wait().ok()?;
    drop(stdin);
    Some((status, String::from_utf8_lossy(&shown).into_owned()))
}

#[test]
fn the_passphrase_can_be_typed_at_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let prompts = |first: &'static str, second: &'static str| {
        [
            ("passphrase for the new CA key:", first),
            ("repeat the passphrase:", second),
        ]
    };
    let Some((status, text)) = ca_on_a_terminal(
        &format!("init --dir {}", dir.display()),
        &prompts("typed secret", "typed secret"),
    ) else {
        panic!("`script` (util-linux) is needed to make a terminal for this test");
    };
    assert!(status.success(), "{text}");
    assert!(text.contains("created root CA"), "{text}");
    assert!(!text.contains("typed secret"), "the passphrase is not echoed: {text}");
    // The typed passphrase is the key's passphrase.
    let out = output(
        ca(&dir)
            .env("TESSERA_PASSPHRASE", "typed secret")
            .args(["issue", "--profile", "client", "--name", "t", "--out"])
            .arg(tmp.path().join("t")),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Two different entries: nothing is written.
    let other = tmp.path().join("other");
    let (status, text) = ca_on_a_terminal(&format!("init --dir {}", other.display()), &prompts("one", "two")).unwrap();
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(
        text.contains("the two passphrases differ; nothing was written"),
        "{text}"
    );
    assert!(!other.join("ca.key").exists() && !other.join("ca.pem").exists());
}
