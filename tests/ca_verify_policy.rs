//! `ca verify --max-depth` and `--key-usage`, and its exit codes for certificates and CRLs that
//! are read fine but not trusted (exit 1, with the reason) versus unreadable input (exit 3).
//! Certificates are made with rcgen at fixed times and checked at a fixed `--at`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use tessera::pki::pem;
use time::macros::datetime;

const AT: &str = "2030-06-01T00:00:00Z";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn root(cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    fn intermediate(&self, cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate().unwrap();
        let pem = params.signed_by(&key, &self.issuer).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    fn leaf(&self, params: &CertificateParams) -> String {
        params
            .signed_by(&KeyPair::generate().unwrap(), &self.issuer)
            .unwrap()
            .pem()
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = datetime!(2030-01-01 0:00 UTC);
    params.not_after = datetime!(2031-01-01 0:00 UTC);
    params
}

fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::new(vec!["example.com".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "example.com");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(SerialNumber::from(vec![0x0a, 0x0b]));
    params.not_before = datetime!(2030-01-01 0:00 UTC);
    params.not_after = datetime!(2030-12-01 0:00 UTC);
    params
}

/// root → first → second → leaf, written to files.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> (Self, Ca) {
        let dir = tempfile::tempdir().unwrap();
        let root = Ca::root("Policy Root");
        let first = root.intermediate("Policy First");
        let second = first.intermediate("Policy Second");
        let files = Self { dir };
        files.write("root.pem", &root.pem);
        files.write("chain.pem", &format!("{}{}", second.pem, first.pem));
        files.write("leaf.pem", &second.leaf(&leaf_params()));
        (files, root)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn verify(files: &Files, leaf: &str, extra: &[&str]) -> Output {
    verify_in(files.dir.path(), leaf, extra)
}

fn verify_in(dir: &Path, leaf: &str, extra: &[&str]) -> Output {
    support::output(
        support::command("ca")
            .current_dir(dir)
            .args(["verify", leaf, "--root", "root.pem", "--usage", "server", "--at", AT])
            .args(extra),
    )
}

#[track_caller]
fn assert_exit(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(needle) || stdout.contains(needle),
        "expected {needle:?} in\nstdout: {stdout}\nstderr: {stderr}"
    );
}

#[test]
fn max_depth_limits_the_intermediates() {
    let (files, _) = Files::new();
    let chain = ["--chain", "chain.pem"];
    let out = verify(&files, "leaf.pem", &[&chain[..], &["--max-depth", "2"]].concat());
    assert_exit(&out, 0, "trusted for server use");
    for max in ["1", "0"] {
        let out = verify(&files, "leaf.pem", &[&chain[..], &["--max-depth", max]].concat());
        assert_exit(
            &out,
            1,
            &format!(
                "certificate chain has 2 intermediate CA certificate(s), more than the maximum depth of {max} \
                 (RFC 5280 §6.1, not counting self-issued certificates)"
            ),
        );
    }
    let json = verify(
        &files,
        "leaf.pem",
        &[&chain[..], &["--max-depth", "0", "--json"]].concat(),
    );
    assert_eq!(json.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["trusted"], false);
    assert!(
        value["reason"].as_str().unwrap().contains("maximum depth of 0"),
        "{value}"
    );

    let out = verify(&files, "leaf.pem", &["--max-depth", "-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn key_usage_is_required_when_the_certificate_has_the_extension() {
    let (files, _) = Files::new();
    let chain = ["--chain", "chain.pem"];
    let out = verify(
        &files,
        "leaf.pem",
        &[&chain[..], &["--key-usage", "digital-signature"]].concat(),
    );
    assert_exit(&out, 0, "trusted");
    // RFC 5280's spelling is accepted too.
    let out = verify(
        &files,
        "leaf.pem",
        &[&chain[..], &["--key-usage", "digitalSignature"]].concat(),
    );
    assert_exit(&out, 0, "trusted");
    let out = verify(
        &files,
        "leaf.pem",
        &[
            &chain[..],
            &["--key-usage", "digital-signature", "--key-usage", "key-encipherment"],
        ]
        .concat(),
    );
    assert_exit(
        &out,
        1,
        "does not allow key-encipherment (its key usage extension lacks it; RFC 5280 §4.2.1.3)",
    );
    let out = verify(&files, "leaf.pem", &[&chain[..], &["--key-usage", "signing"]].concat());
    assert_exit(&out, 2, "unknown key usage \"signing\"");
}

#[test]
fn certificates_read_fine_but_refused_exit_1_and_unreadable_input_exits_3() {
    let (files, root) = Files::new();
    // An extension twice: rustls-webpki refuses it; the file was read fine.
    let mut params = leaf_params();
    let mut san = vec![0x30, 0x0d, 0x82, 0x0b];
    san.extend(b"example.com");
    params.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], san)];
    files.write("duplicate.pem", &root.leaf(&params));
    let out = verify(&files, "duplicate.pem", &[]);
    assert_exit(
        &out,
        1,
        "an extension appears twice or holds an invalid value (RFC 5280 §4.2",
    );

    // A policy rule: 21 octets of serial number.
    let mut params = leaf_params();
    params.serial_number = Some(SerialNumber::from(vec![0x11; 21]));
    files.write("serial.pem", &root.leaf(&params));
    let out = verify(&files, "serial.pem", &[]);
    assert_exit(
        &out,
        1,
        "its serial number is 21 octets long (RFC 5280 §4.1.2.2: at most 20)",
    );

    // Not a certificate at all: exit 3.
    files.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let out = verify(&files, "garbage.pem", &[]);
    assert_exit(&out, 3, "not an X.509 certificate");
}

#[test]
fn a_crl_that_breaks_rfc_5280_exits_1() {
    let (files, root) = Files::new();
    files.write("direct.pem", &root.leaf(&leaf_params()));
    let out = verify(&files, "direct.pem", &[]);
    assert_exit(&out, 0, "trusted");
    // A v2 CRL by the root with no CRL number (RFC 5280 §5.2.3): read fine, not usable. The
    // rule is checked when the CRL is loaded, before its signature, so the signature is a dummy.
    let root_der = pem::parse_certificates(root.pem.as_bytes(), "root").unwrap().remove(0);
    let (_, root_cert) = x509_parser::parse_x509_certificate(&root_der).unwrap();
    files.write(
        "crl.pem",
        &pem::to_pem(pem::X509_CRL, &crl_without_number(root_cert.subject().as_raw())),
    );
    let out = verify(&files, "direct.pem", &["--crl", "crl.pem"]);
    assert_exit(&out, 1, "the CRL has no CRL number (RFC 5280 5.2.3 requires one)");
    files.write(
        "bad-crl.pem",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    );
    let out = verify(&files, "direct.pem", &["--crl", "bad-crl.pem"]);
    assert_exit(&out, 3, "not an X.509 CRL");
}

/// A DER TLV (lengths up to 65535).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A v2 CRL issued by `issuer` (a DER Name) with an authority key identifier and no CRL number.
fn crl_without_number(issuer: &[u8]) -> Vec<u8> {
    let ecdsa_sha256 = tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
    let mut tbs = tlv(0x02, &[0x01]);
    tbs.extend(&ecdsa_sha256);
    tbs.extend(issuer);
    tbs.extend(tlv(0x17, b"300101000000Z"));
    tbs.extend(tlv(0x17, b"310101000000Z"));
    let mut key_id = tlv(0x06, &[0x55, 0x1d, 0x23]);
    key_id.extend(tlv(0x04, &tlv(0x30, &tlv(0x80, &[0x11; 20]))));
    tbs.extend(tlv(0xa0, &tlv(0x30, &tlv(0x30, &key_id))));
    let mut list = tlv(0x30, &tbs);
    list.extend(ecdsa_sha256);
    list.extend(tlv(0x03, &[0x00, 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]));
    tlv(0x30, &list)
}
