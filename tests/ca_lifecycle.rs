//! The lifecycle commands: `ca export PREFIX --pkcs12 OUT` (read back by `openssl pkcs12`) and
//! `ca renew CERT` (a new certificate like CERT, checked against the store).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::{ToolPki, ca, code, json, ok, openssl, openssl_output, output, require_tool, s, stderr, stdout, with};
use tessera::pki::pem;

/// The DER certificates in a PEM text.
fn certificates(text: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_certificates(text, "test")
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

/// `openssl pkey -pubout` of a key file (PEM text of its public key).
fn public_key_of_key(key: &Path, passin: Option<&Path>) -> String {
    let mut args = vec!["pkey".to_string(), "-in".into(), s(key), "-pubout".into()];
    if let Some(pass) = passin {
        args.extend(["-passin".to_string(), format!("file:{}", s(pass))]);
    }
    stdout(&openssl(&args.iter().map(String::as_str).collect::<Vec<_>>()))
}

fn public_key_of_cert(cert: &Path) -> String {
    stdout(&openssl(&["x509", "-in", &s(cert), "-noout", "-pubkey"]))
}

fn pass_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path
}

#[test]
fn export_writes_pkcs12_that_openssl_reads_in_both_profiles() {
    if !require_tool("openssl") {
        return;
    }
    let pki = ToolPki::new("P12 Root", "P12 Issuing", &[]);
    let key_pass = pass_file(pki.tmp.path(), "key.pass", "leaf key secret");
    let p12_pass = pass_file(pki.tmp.path(), "p12.pass", "pkcs12 secret");
    let prefix = pki.issue("client", "alice", &["--key-passphrase-file", &s(&key_pass)]);
    let chain = certificates(&std::fs::read(with(&prefix, ".chain.pem")).unwrap());
    assert_eq!(chain.len(), 2, "leaf and intermediate");

    for (legacy, name) in [(false, "alice.p12"), (true, "alice-legacy.p12")] {
        let out_path = pki.path(name);
        let mut cmd = ca(&pki.inter());
        cmd.arg("export")
            .arg(with(&prefix, ".pem"))
            .arg("--pkcs12")
            .arg(&out_path)
            .args([
                "--passphrase-file",
                &s(&p12_pass),
                "--key-passphrase-file",
                &s(&key_pass),
            ]);
        if legacy {
            cmd.arg("--legacy");
        }
        let said = ok(&mut cmd);
        assert!(said.contains(&format!("wrote {}", s(&out_path))), "{said}");
        let mode = std::fs::metadata(&out_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let passin = format!("file:{}", s(&p12_pass));
        let out_text = s(&out_path);
        let mut info = vec!["pkcs12", "-info", "-in", &out_text, "-passin", &passin, "-noout"];
        if legacy {
            info.push("-legacy");
        }
        let out = openssl_output(&info);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stderr(&out) + &stdout(&out);
        if legacy {
            assert!(text.contains("MAC: sha1"), "{text}");
            assert!(text.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{text}");
        } else {
            assert!(text.contains("MAC: sha256, Iteration 600000"), "{text}");
            assert!(
                text.contains("PBES2, PBKDF2, AES-256-CBC, Iteration 600000, PRF hmacWithSHA256"),
                "{text}"
            );
            assert!(!text.contains("TripleDES") && !text.contains("RC2"), "{text}");
        }

        // The certificates inside are the chain, leaf first; the key is the leaf's.
        let certs = openssl(&["pkcs12", "-in", &s(&out_path), "-passin", &passin, "-nokeys"]);
        assert_eq!(certificates(&certs.stdout), chain);
        let key_out = pki.path(&format!("{name}.key.pem"));
        openssl(&[
            "pkcs12",
            "-in",
            &s(&out_path),
            "-passin",
            &passin,
            "-nocerts",
            "-nodes",
            "-out",
            &s(&key_out),
        ]);
        assert_eq!(
            public_key_of_key(&key_out, None),
            public_key_of_cert(&with(&prefix, ".pem"))
        );

        // A wrong passphrase is refused by the MAC.
        let wrong = pass_file(pki.tmp.path(), "wrong.pass", "not it");
        let out = openssl_output(&[
            "pkcs12",
            "-in",
            &s(&out_path),
            "-passin",
            &format!("file:{}", s(&wrong)),
            "-noout",
        ]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("Mac verify error"), "{}", stderr(&out));
    }

    // To stdout with `-`: the same kind of file.
    let out = support::run(
        ca(&pki.inter()).arg("export").arg(&prefix).args([
            "--pkcs12",
            "-",
            "--passphrase-file",
            &s(&p12_pass),
            "--key-passphrase-file",
            &s(&key_pass),
        ]),
        None,
        support::TIMEOUT,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let piped = pki.path("piped.p12");
    std::fs::write(&piped, &out.stdout).unwrap();
    let certs = openssl(&[
        "pkcs12",
        "-in",
        &s(&piped),
        "-passin",
        &format!("file:{}", s(&p12_pass)),
        "-nokeys",
    ]);
    assert_eq!(certificates(&certs.stdout), chain);
}

#[test]
fn export_refuses_what_it_cannot_do_with_the_documented_codes() {
    let pki = ToolPki::new("P12 Root", "P12 Issuing", &[]);
    let p12_pass = pass_file(pki.tmp.path(), "p12.pass", "pkcs12 secret");
    let prefix = pki.issue("server", "www.test", &[]);
    let export = |prefix: &Path, out: &Path, extra: &[&str]| {
        output(
            ca(&pki.inter())
                .arg("export")
                .arg(prefix)
                .arg("--pkcs12")
                .arg(out)
                .args(["--passphrase-file", &s(&p12_pass)])
                .args(extra),
        )
    };
    // Missing files: exit 3, naming the file.
    let out = export(&pki.path("nobody"), &pki.path("x.p12"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("nobody.pem"), "{}", stderr(&out));
    assert!(!pki.path("x.p12").exists());
    let copy = pki.path("nochain");
    std::fs::copy(with(&prefix, ".pem"), with(&copy, ".pem")).unwrap();
    std::fs::copy(with(&prefix, ".key"), with(&copy, ".key")).unwrap();
    let out = export(&copy, &pki.path("x.p12"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("nochain.chain.pem"), "{}", stderr(&out));
    // A key that is not the certificate's: exit 3.
    let other = pki.issue("server", "other.test", &[]);
    std::fs::copy(with(&prefix, ".chain.pem"), with(&copy, ".chain.pem")).unwrap();
    std::fs::copy(with(&other, ".key"), with(&copy, ".key")).unwrap();
    let out = export(&copy, &pki.path("x.p12"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not the key of"), "{}", stderr(&out));
    // OUT exists: exit 3, untouched.
    std::fs::write(pki.path("taken.p12"), b"keep").unwrap();
    let out = export(&prefix, &pki.path("taken.p12"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(std::fs::read(pki.path("taken.p12")).unwrap(), b"keep");
    // OUT is an input: exit 2, untouched.
    let key = with(&prefix, ".key");
    let before = std::fs::read(&key).unwrap();
    let out = export(&prefix, &key, &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // No --pkcs12: usage.
    let out = output(ca(&pki.inter()).arg("export").arg(&prefix));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // An encrypted key and no way to ask for its passphrase: exit 3, nothing written.
    let key_pass = pass_file(pki.tmp.path(), "key.pass", "leaf key secret");
    let locked = pki.issue("client", "locked", &["--key-passphrase-file", &s(&key_pass)]);
    let out = export(&locked, &pki.path("locked.p12"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ca: hint: use --key-passphrase-file FILE or set TESSERA_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    assert!(!pki.path("locked.p12").exists());
    let wrong = pass_file(pki.tmp.path(), "wrong.pass", "not it");
    let out = export(&locked, &pki.path("locked.p12"), &["--key-passphrase-file", &s(&wrong)]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(!pki.path("locked.p12").exists());
}

/// `ca list --json`'s record of `serial`.
fn record(pki: &ToolPki, serial: &str) -> serde_json::Value {
    pki.list().into_iter().find(|r| r["serial"] == serial).unwrap()
}

fn seconds(record: &serde_json::Value, field: &str) -> i64 {
    time::OffsetDateTime::parse(
        record[field].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp()
}

#[test]
fn renew_issues_the_same_names_profile_and_lifetime_from_a_new_key() {
    let pki = ToolPki::new("Renew Root", "Renew Issuing", &[]);
    let old = pki.issue(
        "server",
        "www.test",
        &[
            "--san",
            "dns:alt.test",
            "--san",
            "ip:127.0.0.1",
            "--hours",
            "30",
            "--key-type",
            "p384",
        ],
    );
    let old_cert = with(&old, ".pem");
    let old_serial = json(&ok(ca(&pki.inter()).args(["list", "--json"])))[0]["serial"]
        .as_str()
        .unwrap()
        .to_string();

    let out = json(&ok(ca(&pki.inter())
        .arg("renew")
        .arg(&old_cert)
        .args(["--json", "--out"])
        .arg(pki.path("www-new"))));
    assert_eq!(out["renewed"], old_serial.as_str());
    let new_serial = out["certificate"]["serial"].as_str().unwrap().to_string();
    assert_ne!(new_serial, old_serial);
    let (old_record, new_record) = (record(&pki, &old_serial), record(&pki, &new_serial));
    for field in ["subject", "sans", "profile"] {
        assert_eq!(old_record[field], new_record[field], "{field}");
    }
    assert_eq!(
        new_record["sans"],
        serde_json::json!(["dns:www.test", "dns:alt.test", "ip:127.0.0.1"])
    );
    assert_eq!(
        seconds(&new_record, "not_after") - seconds(&new_record, "issued_at"),
        30 * 3600,
        "the old lifetime"
    );
    // A new key of the same type, written 0600 like `ca issue`'s.
    let new_prefix = pki.path("www-new");
    let new_key = with(&new_prefix, ".key");
    assert_eq!(std::fs::metadata(&new_key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_ne!(
        std::fs::read(&new_key).unwrap(),
        std::fs::read(with(&old, ".key")).unwrap()
    );
    if require_tool("openssl") {
        assert_eq!(
            public_key_of_key(&new_key, None),
            public_key_of_cert(&with(&new_prefix, ".pem"))
        );
        let text = stdout(&openssl(&[
            "x509",
            "-in",
            &s(&with(&new_prefix, ".pem")),
            "-noout",
            "-text",
        ]));
        assert!(text.contains("NIST CURVE: P-384"), "{text}");
        openssl(&[
            "verify",
            "-CAfile",
            &s(&pki.root().join("ca.pem")),
            "-untrusted",
            &s(&with(&new_prefix, ".chain.pem")),
            &s(&with(&new_prefix, ".pem")),
        ]);
    }
    // The default prefix sits beside CERT; the old files stay.
    let said = ok(ca(&pki.inter()).arg("renew").arg(&old_cert));
    assert!(
        said.contains(&format!("renewed {old_serial} as server certificate \"CN=www.test\"")),
        "{said}"
    );
    let renewed: Vec<_> = std::fs::read_dir(pki.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("www.test-renewed-") && n.ends_with(".chain.pem"))
        .collect();
    assert_eq!(renewed.len(), 1, "{renewed:?}");
    assert!(old_cert.exists() && with(&old, ".key").exists());
    assert_eq!(pki.list().len(), 3);
}

#[test]
fn renew_with_reuse_key_keeps_the_key_and_writes_none() {
    let pki = ToolPki::new("Renew Root", "Renew Issuing", &[]);
    let key_pass = pass_file(pki.tmp.path(), "key.pass", "leaf key secret");
    let old = pki.issue(
        "client",
        "alice",
        &["--key-passphrase-file", &s(&key_pass), "--days", "10"],
    );
    let other = pki.issue("client", "bob", &[]);
    // Another certificate's key is refused (exit 3) before anything is issued.
    let out = output(
        ca(&pki.inter())
            .arg("renew")
            .arg(with(&old, ".pem"))
            .arg("--reuse-key")
            .arg(with(&other, ".key"))
            .arg("--out")
            .arg(pki.path("alice-bad")),
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "ca: error: the key to reuse (--reuse-key) {} is not the key of the certificate {}\n",
            s(&with(&other, ".key")),
            s(&with(&old, ".pem"))
        )) && stderr(&out).contains("ca: hint: give the key the certificate was issued for"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pki.list().len(), 2);
    // Its own key, decrypted with --key-passphrase-file.
    let said = ok(ca(&pki.inter())
        .arg("renew")
        .arg(with(&old, ".pem"))
        .arg("--reuse-key")
        .arg(with(&old, ".key"))
        .args(["--key-passphrase-file", &s(&key_pass), "--out"])
        .arg(pki.path("alice-new")));
    assert!(said.contains("(reused)"), "{said}");
    let new = pki.path("alice-new");
    assert!(with(&new, ".pem").exists() && with(&new, ".chain.pem").exists());
    assert!(!with(&new, ".key").exists());
    let old_info =
        tessera::pki::CertificateInfo::from_der(&pem::load_certificates(&with(&old, ".pem")).unwrap()[0]).unwrap();
    let new_info =
        tessera::pki::CertificateInfo::from_der(&pem::load_certificates(&with(&new, ".pem")).unwrap()[0]).unwrap();
    assert_eq!(new_info.subject, old_info.subject);
    assert_eq!(
        new_info.not_after - new_info.not_before,
        old_info.not_after - old_info.not_before
    );
    let spki = |path: &Path| {
        let der = pem::load_certificates(path).unwrap()[0].to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.public_key().raw.to_vec()
    };
    assert_eq!(spki(&with(&new, ".pem")), spki(&with(&old, ".pem")));
}

#[test]
fn renew_refuses_revoked_foreign_and_unknown_certificates() {
    let pki = ToolPki::new("Renew Root", "Renew Issuing", &[]);
    let revoked = pki.issue("server", "gone.test", &[]);
    let serial = pki.list()[0]["serial"].as_str().unwrap().to_string();
    ok(ca(&pki.inter()).args(["revoke", &serial, "--reason", "superseded"]));
    let out = output(ca(&pki.inter()).arg("renew").arg(with(&revoked, ".pem")));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was revoked on") && stderr(&out).contains("superseded"),
        "{}",
        stderr(&out)
    );

    // Issued by another CA (the root): refused, exit 1.
    let other = ToolPki::new("Other Root", "Other Issuing", &[]);
    let foreign = other.issue("server", "foreign.test", &[]);
    let out = output(ca(&pki.inter()).arg("renew").arg(with(&foreign, ".pem")));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was issued by CN=Other Issuing, not by this CA"),
        "{}",
        stderr(&out)
    );

    // Same issuer name, but not in this CA's store: exit 3.
    let twin = ToolPki::new("Renew Root", "Renew Issuing", &[]);
    let unknown = twin.issue("server", "twin.test", &[]);
    let out = output(ca(&pki.inter()).arg("renew").arg(with(&unknown, ".pem")));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("was issued by this CA"), "{}", stderr(&out));

    // An intermediate CA is not renewed, and a missing CERT is exit 3.
    let out = output(ca(&pki.root()).arg("renew").arg(pki.inter().join("ca.pem")));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it is an intermediate certificate; only leaves are renewed"),
        "{}",
        stderr(&out)
    );
    let out = output(ca(&pki.inter()).arg("renew").arg(pki.path("missing.pem")));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // An output that exists is refused before anything is issued.
    let good = pki.issue("server", "kept.test", &[]);
    let before = pki.list().len();
    let out = output(
        ca(&pki.inter())
            .arg("renew")
            .arg(with(&good, ".pem"))
            .arg("--out")
            .arg(&good),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    std::fs::write(pki.path("taken.pem"), b"x").unwrap();
    let out = output(
        ca(&pki.inter())
            .arg("renew")
            .arg(with(&good, ".pem"))
            .arg("--out")
            .arg(pki.path("taken")),
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(pki.list().len(), before);
}

#[test]
fn renew_from_stdin_names_its_files_after_the_subject_never_with_a_leading_dash() {
    let pki = ToolPki::new("Renew Root", "Renew Issuing", &[]);
    let old = pki.issue("server", "www.test", &[]);
    let work = pki.path("work");
    std::fs::create_dir(&work).unwrap();
    let pem_text = std::fs::read(with(&old, ".pem")).unwrap();
    let out = support::output_with_stdin(ca(&pki.inter()).current_dir(&work).args(["renew", "-"]), &pem_text);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Nothing in the working directory (no `--renewed-…`), the files in DIR/issued.
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    let issued: Vec<String> = std::fs::read_dir(pki.inter().join("issued"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(issued.len(), 3, "{issued:?}");
    for name in &issued {
        assert!(name.starts_with("www.test-renewed-"), "{name}");
    }
    assert!(issued.iter().any(|n| n.ends_with(".key")), "{issued:?}");

    // A CERT named `-x.pem` gets files named after the subject beside it.
    let dashed = pki.path("-x.pem");
    std::fs::write(&dashed, &pem_text).unwrap();
    let said = ok(ca(&pki.inter()).arg("renew").arg(&dashed));
    let names: Vec<String> = std::fs::read_dir(pki.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("renewed"))
        .collect();
    assert_eq!(names.len(), 3, "{names:?} {said}");
    assert!(names.iter().all(|n| n.starts_with("www.test-renewed-")), "{names:?}");
}

#[test]
fn export_writes_into_a_fifo_as_readme_says() {
    if !require_tool("openssl") {
        return;
    }
    let pki = ToolPki::new("P12 Root", "P12 Issuing", &[]);
    let p12_pass = pass_file(pki.tmp.path(), "p12.pass", "pkcs12 secret");
    let prefix = pki.issue("server", "www.test", &[]);
    let fifo = pki.path("out.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The reader: opening a FIFO for reading waits for the writer.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let said = ok(ca(&pki.inter())
        .arg("export")
        .arg(&prefix)
        .arg("--pkcs12")
        .arg(&fifo)
        .args(["--passphrase-file", &s(&p12_pass)]));
    assert!(said.contains(&format!("wrote {}", s(&fifo))), "{said}");
    let bytes = reader.join().unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let got = pki.path("got.p12");
    std::fs::write(&got, &bytes).unwrap();
    let passin = format!("file:{}", s(&p12_pass));
    let out = openssl_output(&["pkcs12", "-in", &s(&got), "-passin", &passin, "-nokeys", "-clcerts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).replace(' ', "").contains("subject=CN=www.test"),
        "{}",
        stdout(&out)
    );
    // A regular file is still never overwritten.
    std::fs::write(pki.path("taken.p12"), b"keep").unwrap();
    let out = output(
        ca(&pki.inter())
            .arg("export")
            .arg(&prefix)
            .arg("--pkcs12")
            .arg(pki.path("taken.p12"))
            .args(["--passphrase-file", &s(&p12_pass)]),
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(std::fs::read(pki.path("taken.p12")).unwrap(), b"keep");
}

#[test]
fn export_into_standard_output_by_path_keeps_the_status_line_out_of_the_data() {
    if !require_tool("openssl") {
        return;
    }
    let pki = ToolPki::new("P12 Root", "P12 Issuing", &[]);
    let p12_pass = pass_file(pki.tmp.path(), "p12.pass", "pkcs12 secret");
    let prefix = pki.issue("server", "www.test", &[]);
    let passin = format!("file:{}", s(&p12_pass));
    for path in ["/dev/stdout", "/dev/fd/1"] {
        // Standard output is a pipe here (the test reads it).
        let out = output(ca(&pki.inter()).arg("export").arg(&prefix).args([
            "--pkcs12",
            path,
            "--passphrase-file",
            &s(&p12_pass),
        ]));
        assert_eq!(code(&out), 0, "{path}: {}", stderr(&out));
        assert!(
            !out.stdout.windows(5).any(|w| w == b"wrote"),
            "{path}: the status line is inside the PKCS#12 data"
        );
        assert!(
            stderr(&out).contains(&format!("wrote {path} (PKCS#12")),
            "{path}: {}",
            stderr(&out)
        );
        let got = pki.path("stdout.p12");
        std::fs::write(&got, &out.stdout).unwrap();
        let read = openssl_output(&["pkcs12", "-in", &s(&got), "-passin", &passin, "-nokeys", "-clcerts"]);
        assert!(read.status.success(), "{path}: {}", stderr(&read));
        // Exactly one DER structure: nothing follows it.
        let length = usize::from(out.stdout[2]) << 8 | usize::from(out.stdout[3]);
        assert_eq!((out.stdout[0], out.stdout[1]), (0x30, 0x82), "{path}");
        assert_eq!(
            out.stdout.len(),
            4 + length,
            "{path}: bytes after the PKCS#12 structure"
        );
        std::fs::remove_file(&got).unwrap();
    }
}
