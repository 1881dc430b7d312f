//! Every command that signs checks that `crl.pem` is the CRL the store last handed out. Before an
//! issuance the check reads only the header and the extensions (its cost must not grow with the
//! revocations): a damaged header, a cut file or an unreadable one is rewritten there and then.
//! A full read (`ca list`, `ca revoke`) also verifies the CA's signature, which finds a damaged
//! entry or another CA's CRL with the same name and number: `ca list` says so, and `ca revoke`
//! or `ca crl` rewrites it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::{ca, ok_output};

use tessera::pki::{CrlInfo, pem};

fn crl(dir: &Path) -> (Vec<u8>, CrlInfo) {
    let der = pem::parse_crls(&std::fs::read(dir.join("crl.pem")).unwrap(), "crl.pem").unwrap()[0].to_vec();
    let info = CrlInfo::from_der(&der).unwrap();
    (der, info)
}

fn serials(info: &CrlInfo) -> BTreeSet<String> {
    info.revoked.iter().map(|r| r.serial.to_string()).collect()
}

fn write_crl(dir: &Path, der: &[u8]) {
    std::fs::write(dir.join("crl.pem"), pem::to_pem(pem::X509_CRL, der)).unwrap();
}

/// A CA with three certificates, two of them revoked; returns (dir, revoked serials as listed,
/// the third serial).
fn setup(tmp: &Path, name: &str) -> (PathBuf, BTreeSet<String>, String) {
    let dir = tmp.join(name);
    ok_output(ca(&dir).args(["init", "--name", "Check Root", "--no-passphrase"]));
    let mut revoked = BTreeSet::new();
    let mut good = String::new();
    for i in 0..3 {
        let out = ok_output(
            ca(&dir)
                .args([
                    "issue",
                    "--profile",
                    "client",
                    "--name",
                    &format!("c{i}"),
                    "--json",
                    "--out",
                ])
                .arg(tmp.join(format!("{name}-c{i}"))),
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let serial = json["certificate"]["serial"].as_str().unwrap().to_string();
        if i < 2 {
            ok_output(ca(&dir).args(["revoke", &serial]));
            revoked.insert(serial);
        } else {
            good = serial;
        }
    }
    let (_, info) = crl(&dir);
    assert_eq!(serials(&info), revoked);
    (dir, revoked, good)
}

/// Runs `ca issue` on a damaged CRL: it must warn with `why` and leave a CRL that lists exactly
/// the revoked serials under a higher number, signed by the CA.
fn repaired(tmp: &Path, dir: &Path, revoked: &BTreeSet<String>, before: u64, why: &str) {
    let out = ok_output(
        ca(dir)
            .args(["issue", "--profile", "client", "--name", "after", "--out"])
            .arg(tmp.join(format!("after-{}", before))),
    );
    check_repair(tmp, dir, revoked, before, why, &out);
}

/// `ca list` finds the damage that only a full read finds; `ca revoke` of `next` repairs it.
fn repaired_by_revoke(tmp: &Path, dir: &Path, revoked: &mut BTreeSet<String>, before: u64, next: &str) {
    let why = "signature does not verify with the CA's key";
    let out = ok_output(ca(dir).args(["list"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{why}); the next `ca crl` or `ca revoke` rewrites it")),
        "{stderr}"
    );
    let out = ok_output(ca(dir).args(["revoke", next]));
    revoked.insert(next.to_string());
    check_repair(tmp, dir, revoked, before, why, &out);
}

fn check_repair(tmp: &Path, dir: &Path, revoked: &BTreeSet<String>, before: u64, why: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(why), "expected {why:?} in: {stderr}");
    assert!(stderr.contains("rewrote it from the store as CRL number"), "{stderr}");
    let (der, info) = crl(dir);
    assert_eq!(serials(&info), *revoked);
    let number: u64 = info.crl_number.as_deref().unwrap().parse().unwrap();
    assert!(number > before, "CRL number {number} after {before}");
    // openssl agrees the rewritten CRL is the CA's.
    let crl_file = tmp.join("check.crl.der");
    std::fs::write(&crl_file, der).unwrap();
    let verified = support::openssl_output(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-in",
        &support::s(&crl_file),
        "-CAfile",
        &support::s(&dir.join("ca.pem")),
    ]);
    assert!(
        String::from_utf8_lossy(&verified.stderr).contains("verify OK"),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // And the next command finds it current: no warning.
    let out = ok_output(
        ca(dir)
            .args(["issue", "--profile", "client", "--name", "quiet", "--out"])
            .arg(tmp.join(format!("quiet-{}", before))),
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn number(info: &CrlInfo) -> u64 {
    info.crl_number.as_deref().unwrap().parse().unwrap()
}

#[test]
fn a_flipped_bit_in_an_entry_is_found_and_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut revoked, good) = setup(tmp.path(), "flip");
    let (mut der, info) = crl(&dir);
    // The last octet of the first revoked serial, as encoded in the CRL: well-framed DER that
    // parses as a CRL listing a serial the CA never revoked.
    let serial = hex(&info.revoked[0].serial.to_string());
    let at = der.windows(serial.len()).position(|w| w == serial).unwrap() + serial.len() - 1;
    der[at] ^= 0x01;
    let damaged = CrlInfo::from_der(&der).expect("still parses");
    assert_ne!(serials(&damaged), revoked);
    write_crl(&dir, &der);
    repaired_by_revoke(tmp.path(), &dir, &mut revoked, number(&info), &good);
}

#[test]
fn a_damaged_signature_or_header_is_found_and_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut revoked, good) = setup(tmp.path(), "sig");
    let (mut der, info) = crl(&dir);
    let last = der.len() - 1;
    der[last] ^= 0x80;
    write_crl(&dir, &der);
    repaired_by_revoke(tmp.path(), &dir, &mut revoked, number(&info), &good);

    let (mut der, info) = crl(&dir);
    // The outer SEQUENCE's length: the framing no longer holds.
    der[2] ^= 0x01;
    write_crl(&dir, &der);
    repaired(tmp.path(), &dir, &revoked, number(&info), "no CRL can be read from it");

    let (der, info) = crl(&dir);
    write_crl(&dir, &der[..der.len() / 2]);
    repaired(tmp.path(), &dir, &revoked, number(&info), "no CRL can be read from it");
}

#[test]
fn a_crl_of_another_ca_with_the_same_name_and_number_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut revoked, good) = setup(tmp.path(), "mine");
    // Another CA named alike, brought to the same CRL number with other revocations.
    let (other, _, _) = setup(tmp.path(), "other");
    let (_, mine) = crl(&dir);
    let (_, mut info) = crl(&other);
    while number(&info) < number(&mine) {
        ok_output(ca(&other).args(["crl"]));
        (_, info) = crl(&other);
    }
    assert_eq!(number(&info), number(&mine));
    assert_eq!(info.issuer, mine.issuer);
    std::fs::copy(other.join("crl.pem"), dir.join("crl.pem")).unwrap();
    repaired_by_revoke(tmp.path(), &dir, &mut revoked, number(&mine), &good);
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}
