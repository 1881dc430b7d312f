//! The OCSP responder (`tessera::ca::ocsp`) against OpenSSL: `openssl ocsp -reqout` makes the
//! requests, the library answers them, and `openssl ocsp -respin … -reqin …` verifies each
//! answer (signature by the CA, nonce echoed, times) and says what it says: good, revoked (with
//! the reason and time), unknown. Malformed requests get `malformedRequest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::{Path, PathBuf};

use support::{ToolPki, ca, ok, openssl, openssl_output, require_tool, s, stderr, stdout};
use tessera::ca::CertificateAuthority;
use tessera::ca::ocsp::{self, CertStatus, GetPathError, ResponseStatus};
use time::OffsetDateTime;

/// A root, an intermediate that issues, and its OCSP answers.
struct Fixture {
    pki: ToolPki,
}

impl Fixture {
    fn new() -> Self {
        Self {
            pki: ToolPki::new("OCSP Root", "OCSP Issuing", &[]),
        }
    }

    fn issue(&self, name: &str) -> (PathBuf, String) {
        let prefix = self.pki.issue("server", name, &["--json"]);
        let serial = self
            .pki
            .list()
            .into_iter()
            .find(|r| r["subject"] == format!("CN={name}"))
            .unwrap()["serial"]
            .as_str()
            .unwrap()
            .to_string();
        (support::with(&prefix, ".pem"), serial)
    }

    fn ca(&self) -> CertificateAuthority {
        CertificateAuthority::open(&self.pki.inter(), None).unwrap()
    }

    /// `openssl ocsp -issuer inter/ca.pem -cert CERT… EXTRA… -reqout FILE`: the request's DER.
    fn request(&self, certs: &[&Path], extra: &[&str], name: &str) -> PathBuf {
        let out = self.pki.path(name);
        let issuer = self.pki.inter().join("ca.pem");
        let mut args = vec!["ocsp".to_string(), "-issuer".into(), s(&issuer)];
        args.extend(extra.iter().map(ToString::to_string));
        for cert in certs {
            args.push("-cert".into());
            args.push(s(cert));
        }
        args.push("-reqout".into());
        args.push(s(&out));
        openssl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        out
    }

    /// Answers the request in `request` now; writes the DER to `NAME.resp`.
    fn answer(&self, request: &Path) -> (PathBuf, ocsp::Answer) {
        let answer = ocsp::respond(&self.ca(), &std::fs::read(request).unwrap(), OffsetDateTime::now_utc());
        let out = request.with_extension("resp");
        std::fs::write(&out, &answer.der).unwrap();
        (out, answer)
    }

    /// `openssl ocsp -respin RESP -issuer inter -CAfile root (-reqin REQ | -no_nonce -cert
    /// CERT…) EXTRA…`: whether OpenSSL accepted the response (signed by the issuer, which
    /// chains to the root; with `-reqin`, carrying the request's nonce), and what it printed
    /// (stdout, stderr). OpenSSL prints each certificate's status only for `-cert` (with which
    /// it makes a request of its own, so the nonce is checked with `-reqin` alone).
    fn check(
        &self,
        response: &Path,
        request: Option<&Path>,
        certs: &[&Path],
        extra: &[&str],
    ) -> (bool, String, String) {
        let issuer = self.pki.inter().join("ca.pem");
        let root = self.pki.root().join("ca.pem");
        let mut args = vec![
            "ocsp".to_string(),
            "-respin".into(),
            s(response),
            "-issuer".into(),
            s(&issuer),
            "-CAfile".into(),
            s(&root),
        ];
        match request {
            Some(request) => args.extend(["-reqin".to_string(), s(request)]),
            None => args.push("-no_nonce".into()),
        }
        args.extend(extra.iter().map(ToString::to_string));
        for cert in certs {
            args.push("-cert".into());
            args.push(s(cert));
        }
        let out = openssl_output(&args.iter().map(String::as_str).collect::<Vec<_>>());
        (out.status.success(), stdout(&out), stderr(&out))
    }

    /// [`Fixture::check`] with the request (the signature and the nonce), then with the
    /// certificates (their statuses): what OpenSSL printed for the latter.
    fn verified(&self, response: &Path, request: &Path, certs: &[&Path], extra: &[&str]) -> String {
        let (success, out, err) = self.check(response, Some(request), &[], &[]);
        assert!(success, "{out}\n{err}");
        assert!(err.contains("Response verify OK") && !err.contains("WARNING"), "{err}");
        let (success, out, err) = self.check(response, None, certs, extra);
        assert!(success, "{out}\n{err}");
        assert!(err.contains("Response verify OK"), "{err}");
        out
    }
}

#[test]
fn openssl_verifies_good_revoked_and_unknown_answers_with_the_nonce_echoed() {
    if !require_tool("openssl") {
        return;
    }
    let f = Fixture::new();
    let (good, good_serial) = f.issue("good.test");
    let (revoked, revoked_serial) = f.issue("revoked.test");
    ok(ca(&f.pki.inter()).args(["revoke", &revoked_serial, "--reason", "key-compromise"]));

    // One CertID each, SHA-1 (OpenSSL's default), with a nonce (also OpenSSL's default).
    let request = f.request(&[&good], &[], "good.req");
    let (response, answer) = f.answer(&request);
    assert_eq!(answer.status, ResponseStatus::Successful);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].status, CertStatus::Good);
    assert_eq!(answer.answers[0].serial.as_ref().unwrap().to_string(), good_serial);
    let lifetime = answer.next_update.unwrap() - answer.this_update.unwrap();
    assert_eq!(lifetime, time::Duration::HOUR);
    let out = f.verified(&response, &request, &[&good], &[]);
    assert!(out.contains(&format!("{}: good", s(&good))), "{out}");
    assert!(out.contains("This Update:") && out.contains("Next Update:"), "{out}");

    let request = f.request(&[&revoked], &[], "revoked.req");
    let (response, answer) = f.answer(&request);
    let CertStatus::Revoked { at, reason } = answer.answers[0].status.clone() else {
        panic!("{answer:?}");
    };
    assert_eq!(reason.name(), "key-compromise");
    let out = f.verified(&response, &request, &[&revoked], &[]);
    assert!(out.contains(&format!("{}: revoked", s(&revoked))), "{out}");
    assert!(out.contains("Reason: keyCompromise"), "{out}");
    let listed = f.pki.list();
    let record = listed.iter().find(|r| r["serial"] == revoked_serial.as_str()).unwrap();
    let recorded = OffsetDateTime::parse(
        record["revoked_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(at, recorded);
    // OpenSSL prints the revocation time as e.g. "Dec  1 01:45:12 2026 GMT".
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][usize::from(u8::from(at.month())) - 1];
    let shown = format!(
        "Revocation Time: {month} {:>2} {:02}:{:02}:{:02} {} GMT",
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.year()
    );
    assert!(out.contains(&shown), "{shown:?} in {out}");

    // Two CertIDs in one request, SHA-256 this time: both answered, in order.
    let request = f.request(&[&good, &revoked], &["-sha256"], "both.req");
    let (response, answer) = f.answer(&request);
    assert_eq!(answer.answers.len(), 2);
    assert_eq!(answer.answers[0].status, CertStatus::Good);
    assert!(matches!(answer.answers[1].status, CertStatus::Revoked { .. }));
    let out = f.verified(&response, &request, &[&good, &revoked], &["-sha256"]);
    assert!(out.contains(&format!("{}: good", s(&good))), "{out}");
    assert!(out.contains(&format!("{}: revoked", s(&revoked))), "{out}");

    // The nonce is checked: the answer to another request (another nonce) is refused.
    let other = f.request(&[&good], &[], "other.req");
    let (success, out, err) = f.check(&response, Some(&other), &[], &[]);
    assert!(!success && err.contains("Nonce Verify error"), "{out}\n{err}");
    // A response to a request without a nonce has none, which OpenSSL notes when it expected
    // one (so the absence of that warning above says the nonce was there).
    let plain = f.request(&[&good], &["-no_nonce"], "plain.req");
    let (response, _) = f.answer(&plain);
    let (_, out, err) = f.check(&response, Some(&request), &[], &[]);
    assert!(err.contains("WARNING: no nonce in response"), "{out}\n{err}");
}

#[test]
fn another_cas_certificate_is_unknown_and_garbage_is_malformed() {
    if !require_tool("openssl") {
        return;
    }
    let f = Fixture::new();
    let (good, _) = f.issue("mine.test");
    // A certificate of another CA (same name, other key), and one of this CA's root.
    let other = ToolPki::new("OCSP Root", "OCSP Issuing", &[]);
    let stranger = support::with(&other.issue("server", "stranger.test", &[]), ".pem");
    let out = f.pki.path("stranger.req");
    openssl(&[
        "ocsp",
        "-issuer",
        &s(&other.inter().join("ca.pem")),
        "-cert",
        &s(&stranger),
        "-reqout",
        &s(&out),
    ]);
    let (_, answer) = f.answer(&out);
    assert_eq!(answer.status, ResponseStatus::Successful);
    assert_eq!(answer.answers[0].status, CertStatus::Unknown);

    // A serial this CA never issued, under this CA's name and key: unknown too, and OpenSSL
    // agrees after checking the signature.
    let request = f.pki.path("unknown.req");
    openssl(&[
        "ocsp",
        "-issuer",
        &s(&f.pki.inter().join("ca.pem")),
        "-serial",
        "0x7f0102030405060708",
        "-reqout",
        &s(&request),
    ]);
    let (response, answer) = f.answer(&request);
    assert_eq!(answer.answers[0].status, CertStatus::Unknown);
    let out = f.verified(&response, &request, &[], &["-serial", "0x7f0102030405060708"]);
    assert!(out.contains("0x7f0102030405060708: unknown"), "{out}");

    // Empty, garbage, truncated, trailing bytes: malformedRequest (RFC 6960 §4.2.1), DER
    // `30 03 0a 01 01`, which OpenSSL reads as such.
    let good_request = std::fs::read(f.request(&[&good], &[], "ok.req")).unwrap();
    let mut trailing = good_request.clone();
    trailing.push(0);
    let ca = f.ca();
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("truncated", good_request[..good_request.len() - 5].to_vec()),
        ("trailing", trailing),
        ("not a request", std::fs::read(&good).unwrap()),
    ] {
        let answer = ocsp::respond(&ca, &bytes, OffsetDateTime::now_utc());
        assert_eq!(answer.status, ResponseStatus::MalformedRequest, "{name}");
        assert_eq!(answer.der, [0x30, 0x03, 0x0a, 0x01, 0x01], "{name}");
        assert!(answer.answers.is_empty());
    }
    let path = f.pki.path("malformed.resp");
    std::fs::write(&path, [0x30, 0x03, 0x0a, 0x01, 0x01]).unwrap();
    let out = openssl_output(&["ocsp", "-respin", &s(&path), "-resp_text", "-noverify"]);
    assert!(stdout(&out).contains("malformedrequest"), "{}", stdout(&out));
}

#[test]
fn get_paths_decode_as_rfc_6960_appendix_a_says() {
    // base64 of 30 03 02 01 01 is MAMCAQE=; with the padding percent-encoded or left out.
    for path in ["MAMCAQE=", "MAMCAQE%3D", "MAMCAQE%3d", "MAMCAQE", "/MAMCAQE="] {
        assert_eq!(
            ocsp::decode_get_path(path).unwrap(),
            [0x30, 0x03, 0x02, 0x01, 0x01],
            "{path}"
        );
    }
    // `/` and `+` of base64, raw or percent-encoded (0xfb 0xff 0xbf is "+/+/").
    for path in ["+/+/", "%2B%2F%2b%2f", "+%2F+/"] {
        assert_eq!(ocsp::decode_get_path(path).unwrap(), [0xfb, 0xff, 0xbf], "{path}");
    }
    assert_eq!(ocsp::decode_get_path(""), Err(GetPathError::Empty));
    assert_eq!(ocsp::decode_get_path("MA%3"), Err(GetPathError::BadPercentEncoding));
    assert_eq!(ocsp::decode_get_path("MA%zz"), Err(GetPathError::BadPercentEncoding));
    assert_eq!(ocsp::decode_get_path("M*AA"), Err(GetPathError::NotBase64));
    assert_eq!(
        ocsp::decode_get_path(&"A".repeat(ocsp::MAX_GET_PATH + 1)),
        Err(GetPathError::TooLong)
    );
}

#[test]
fn a_get_request_made_by_openssl_is_answered() {
    if !require_tool("openssl") {
        return;
    }
    let f = Fixture::new();
    let (good, _) = f.issue("get.test");
    let request = std::fs::read(f.request(&[&good], &["-no_nonce"], "get.req")).unwrap();
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(&request);
    let encoded = text.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let der = ocsp::decode_get_path(&encoded).unwrap();
    assert_eq!(der, request);
    let answer = ocsp::respond(&f.ca(), &der, OffsetDateTime::now_utc());
    assert_eq!(answer.answers[0].status, CertStatus::Good);
}

/// A tiny HTTP/1.0 server on 127.0.0.1 that answers every GET with the CA's current CRL in DER
/// (read from DIR/crl.pem on each request) and counts the requests; it stops when dropped.
struct CrlServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrlServer {
    fn start(dir: PathBuf) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                requests2.fetch_add(1, Ordering::SeqCst);
                let Ok(pem) = std::fs::read(dir.join("crl.pem")) else {
                    let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                };
                let der = tessera::pki::pem::parse_crls(&pem, "crl.pem").unwrap()[0].to_vec();
                let header = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    der.len()
                );
                let _ = stream.write_all(header.as_bytes());
                let _ = stream.write_all(&der);
            }
        });
        Self {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CrlServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn issued_certificates_carry_the_urls_and_openssl_follows_the_crl_distribution_point() {
    if !require_tool("openssl") {
        return;
    }
    let root = support::ToolCa::new("CDP Root", &[]);
    let server = CrlServer::start(root.dir());
    let crl_url = format!("http://127.0.0.1:{}/crl", server.port);
    let ocsp_url = format!("http://127.0.0.1:{}/ocsp", server.port);
    let issuers_url = format!("http://127.0.0.1:{}/ca.der", server.port);

    // Before any URL: no extensions.
    let before = support::with(&root.path("before"), ".pem");
    ok(root
        .cmd()
        .args(["issue", "--profile", "server", "--name", "before.test", "--out"])
        .arg(root.path("before")));
    let text = stdout(&openssl(&["x509", "-in", &s(&before), "-noout", "-text"]));
    assert!(
        !text.contains("CRL Distribution Points") && !text.contains("Authority Information Access"),
        "{text}"
    );

    // `ca set` records them (urls.json, 0644) and shows them.
    let out = ok(root.cmd().args([
        "set",
        "--crl-url",
        &crl_url,
        "--ocsp-url",
        &ocsp_url,
        "--ca-issuers-url",
        &issuers_url,
        "--json",
    ]));
    let urls = support::json(&out);
    assert_eq!(urls["crl"], crl_url.as_str());
    assert_eq!(urls["ocsp"], ocsp_url.as_str());
    assert_eq!(urls["ca_issuers"], issuers_url.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.dir().join("urls.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);

    let (good, bad) = (root.path("good"), root.path("bad"));
    ok(root
        .cmd()
        .args(["issue", "--profile", "server", "--name", "good.test", "--out"])
        .arg(&good));
    let bad_json = support::json(&ok(root
        .cmd()
        .args(["issue", "--profile", "client", "--name", "bad", "--json", "--out"])
        .arg(&bad)));
    let (good, bad) = (support::with(&good, ".pem"), support::with(&bad, ".pem"));
    let text = stdout(&openssl(&["x509", "-in", &s(&good), "-noout", "-text"]));
    assert!(text.contains("X509v3 CRL Distribution Points"), "{text}");
    assert!(text.contains(&format!("URI:{crl_url}")), "{text}");
    assert!(text.contains("Authority Information Access"), "{text}");
    assert!(text.contains(&format!("OCSP - URI:{ocsp_url}")), "{text}");
    assert!(text.contains(&format!("CA Issuers - URI:{issuers_url}")), "{text}");
    // openssl ocsp finds the responder in the certificate.
    let uri = stdout(&openssl(&["x509", "-in", &s(&good), "-noout", "-ocsp_uri"]));
    assert_eq!(uri.trim(), ocsp_url);

    // openssl verify fetches the CRL through the distribution point: both good before the
    // revocation, the revoked one refused after it.
    ok(root.cmd().arg("crl"));
    let serial = bad_json["certificate"]["serial"].as_str().unwrap().to_string();
    let root_pem = s(&root.dir().join("ca.pem"));
    let verify =
        |cert: &Path| openssl_output(&["verify", "-crl_check", "-crl_download", "-CAfile", &root_pem, &s(cert)]);
    for cert in [&good, &bad] {
        let out = verify(cert);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    let fetched = server.requests();
    assert!(fetched >= 2, "openssl fetched the CRL {fetched} times");
    ok(root.cmd().args(["revoke", &serial, "--reason", "key-compromise"]));
    let out = verify(&bad);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("certificate revoked") || stderr(&out).contains("certificate revoked"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(verify(&good).status.success());
    assert!(server.requests() > fetched);

    // `none` clears a URL: later certificates carry only the others.
    let out = ok(root.cmd().args(["set", "--crl-url", "none"]));
    assert!(out.contains("crl-url:        (none)"), "{out}");
    let later = root.path("later");
    ok(root
        .cmd()
        .args(["issue", "--profile", "server", "--name", "later.test", "--out"])
        .arg(&later));
    let text = stdout(&openssl(&[
        "x509",
        "-in",
        &s(&support::with(&later, ".pem")),
        "-noout",
        "-text",
    ]));
    assert!(
        !text.contains("CRL Distribution Points") && text.contains(&format!("OCSP - URI:{ocsp_url}")),
        "{text}"
    );
}

#[test]
fn init_takes_the_urls_and_refuses_bad_ones_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    for (flag, bad) in [
        ("--crl-url", "ftp://ca.example/crl"),
        ("--ocsp-url", "ca.example/ocsp"),
        ("--ca-issuers-url", "http://ca example/"),
        ("--crl-url", "http://user@ca.example/"),
    ] {
        let out = support::output(ca(&dir).args(["init", "--no-passphrase", flag, bad]));
        assert_eq!(support::code(&out), 2, "{flag} {bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(bad), "{}", stderr(&out));
        assert!(!dir.join("ca.pem").exists());
        let out = support::output(ca(&dir).args(["set", flag, bad]));
        assert_eq!(support::code(&out), 2, "{}", stderr(&out));
    }
    // `ca set` needs a CA.
    let out = support::output(ca(&dir).args(["set", "--crl-url", "http://ca.example/crl"]));
    assert_eq!(support::code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a CA directory") && stderr(&out).contains("ca: hint: create one with `ca init`"),
        "{}",
        stderr(&out)
    );
    ok(ca(&dir).args([
        "init",
        "--no-passphrase",
        "--name",
        "URL Root",
        "--crl-url",
        "http://ca.example/crl",
        "--ocsp-url",
        "http://ca.example/ocsp",
    ]));
    let urls = support::json(&ok(ca(&dir).args(["set", "--json"])));
    assert_eq!(
        urls,
        serde_json::json!({"crl": "http://ca.example/crl", "ocsp": "http://ca.example/ocsp", "ca_issuers": null})
    );
    // An intermediate issued by it carries them too (its CRL is the root's).
    let inter = tmp.path().join("inter");
    ok(ca(&inter)
        .args(["init", "--no-passphrase", "--name", "URL Inter", "--parent"])
        .arg(&dir));
    if require_tool("openssl") {
        let text = stdout(&openssl(&["x509", "-in", &s(&inter.join("ca.pem")), "-noout", "-text"]));
        assert!(
            text.contains("URI:http://ca.example/crl") && text.contains("OCSP - URI:http://ca.example/ocsp"),
            "{text}"
        );
    }
    // A certificate issued for a CSR (the path ACME's finalize takes) carries them as well.
    if require_tool("openssl") {
        let (key, csr) = (tmp.path().join("csr.key"), tmp.path().join("req.csr"));
        support::openssl_p256_csr(&key, &csr, &["-subj", "/CN=csr.test"]);
        ok(ca(&dir)
            .args(["issue", "--profile", "server", "--name", "csr.test", "--csr"])
            .arg(&csr)
            .arg("--out")
            .arg(tmp.path().join("csr")));
        let text = stdout(&openssl(&[
            "x509",
            "-in",
            &s(&tmp.path().join("csr.pem")),
            "-noout",
            "-text",
        ]));
        assert!(
            text.contains("URI:http://ca.example/crl") && text.contains("OCSP - URI:http://ca.example/ocsp"),
            "{text}"
        );
        assert!(!text.contains("CA Issuers"), "{text}");
    }
    // A damaged urls.json stops issuing (exit 3) rather than issuing without the URLs.
    std::fs::write(dir.join("urls.json"), "{").unwrap();
    let out = support::output(ca(&dir).args(["issue", "--profile", "client", "--name", "x"]));
    assert_eq!(support::code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("urls.json"), "{}", stderr(&out));
}

#[test]
fn openssl_verifies_responses_signed_by_ed25519_and_p384_cas() {
    if !require_tool("openssl") {
        return;
    }
    for key_type in ["ed25519", "p384"] {
        let root = support::ToolCa::new(&format!("OCSP {key_type} Root"), &["--key-type", key_type]);
        let json = root.issue_json("client", "c.test");
        let cert = PathBuf::from(json["files"]["certificate"].as_str().unwrap());
        let issuer = s(&root.dir().join("ca.pem"));
        let request = root.path("req.der");
        openssl(&["ocsp", "-issuer", &issuer, "-cert", &s(&cert), "-reqout", &s(&request)]);
        let ca = CertificateAuthority::open(&root.dir(), None).unwrap();
        let answer = ocsp::respond(&ca, &std::fs::read(&request).unwrap(), OffsetDateTime::now_utc());
        let response = root.path("resp.der");
        std::fs::write(&response, &answer.der).unwrap();
        let out = openssl_output(&[
            "ocsp",
            "-respin",
            &s(&response),
            "-reqin",
            &s(&request),
            "-issuer",
            &issuer,
            "-CAfile",
            &issuer,
        ]);
        assert!(out.status.success(), "{key_type}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("Response verify OK") && !stderr(&out).contains("WARNING"),
            "{}",
            stderr(&out)
        );
        let out = openssl_ocsp_of_root(&response, &issuer, &cert);
        assert!(
            stdout(&out).contains(": good"),
            "{key_type}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&openssl(&["ocsp", "-respin", &s(&response), "-resp_text", "-noverify"]));
        let algorithm = if key_type == "ed25519" {
            "ED25519"
        } else {
            "ecdsa-with-SHA384"
        };
        assert!(text.contains(&format!("Signature Algorithm: {algorithm}")), "{text}");
    }
}

/// A root CA made by the library that was created at `start` and is valid for `lifetime`, with
/// one client certificate `DIR/c.pem` issued at `start`: (temporary directory, CA directory,
/// certificate).
fn dated_ca(start: OffsetDateTime, lifetime: time::Duration) -> (tempfile::TempDir, PathBuf, PathBuf) {
    use tessera::ca::{InitRequest, IssueRequest, Profile};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let mut init = InitRequest::new("Dated OCSP Root");
    init.lifetime = Some(lifetime.try_into().unwrap());
    let authority = CertificateAuthority::init(&dir, &init, None, start).unwrap();
    let issued = authority
        .issue(&IssueRequest::new(Profile::Client, "c.test"), start)
        .unwrap();
    let files = issued.write(&tmp.path().join("c"), None).unwrap();
    (tmp, dir, files.certificate)
}

/// `openssl x509 -enddate`'s time, as `openssl ocsp` prints times (`Jan  2 03:04:05 2030 GMT`).
fn not_after_text(certificate: &Path) -> String {
    let out = stdout(&openssl(&["x509", "-noout", "-enddate", "-in", &s(certificate)]));
    out.trim().strip_prefix("notAfter=").unwrap().to_string()
}

/// A CA that ends in ten minutes answers with nextUpdate = its notAfter (not an hour later),
/// and OpenSSL verifies that answer now; `ca serve --ocsp-hours` cannot move it further.
#[test]
fn next_update_is_never_after_the_cas_not_after() {
    if !require_tool("openssl") {
        return;
    }
    let now = OffsetDateTime::now_utc();
    let lifetime = time::Duration::days(1);
    let (_tmp, dir, cert) = dated_ca(now - lifetime + time::Duration::minutes(10), lifetime);
    let issuer = s(&dir.join("ca.pem"));
    let request = dir.join("req.der");
    openssl(&["ocsp", "-issuer", &issuer, "-cert", &s(&cert), "-reqout", &s(&request)]);
    let authority = CertificateAuthority::open(&dir, None).unwrap();
    let request_der = std::fs::read(&request).unwrap();
    for lifetime in [ocsp::RESPONSE_LIFETIME, std::time::Duration::from_secs(240 * 3600)] {
        let responder = ocsp::Responder::new(&authority).unwrap().with_lifetime(lifetime);
        let answer = responder.respond(&authority, &request_der, OffsetDateTime::now_utc());
        assert_eq!(answer.status, ResponseStatus::Successful);
        let next = answer.next_update.unwrap();
        assert!(
            next - answer.this_update.unwrap() <= time::Duration::minutes(10),
            "{next}"
        );
        let response = dir.join("resp.der");
        std::fs::write(&response, &answer.der).unwrap();
        let out = openssl_ocsp_of_root(&response, &issuer, &cert);
        let (out_text, err_text) = (stdout(&out), stderr(&out));
        assert!(out.status.success(), "{out_text}{err_text}");
        assert!(err_text.contains("Response verify OK"), "{err_text}");
        assert!(out_text.contains(": good"), "{out_text}");
        // What OpenSSL read from the signed bytes: the CA's own notAfter.
        let text = stdout(&openssl(&["ocsp", "-respin", &s(&response), "-resp_text", "-noverify"]));
        let next_update = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Next Update: "))
            .unwrap_or_else(|| panic!("no Next Update in {text}"));
        assert_eq!(next_update, not_after_text(&PathBuf::from(&issuer)), "{text}");
    }
}

/// A CA whose certificate has expired signs nothing: OpenSSL reads the response status
/// `unauthorized` (6) and no response bytes, for a request it made itself.
#[test]
fn an_expired_ca_answers_unauthorized() {
    if !require_tool("openssl") {
        return;
    }
    let lifetime = time::Duration::days(1);
    let (_tmp, dir, cert) = dated_ca(OffsetDateTime::now_utc() - lifetime * 2, lifetime);
    let issuer = s(&dir.join("ca.pem"));
    let request = dir.join("req.der");
    openssl(&["ocsp", "-issuer", &issuer, "-cert", &s(&cert), "-reqout", &s(&request)]);
    let authority = CertificateAuthority::open(&dir, None).unwrap();
    let answer = ocsp::respond(&authority, &std::fs::read(&request).unwrap(), OffsetDateTime::now_utc());
    assert_eq!(answer.status, ResponseStatus::Unauthorized);
    assert!(answer.answers.is_empty());
    let response = dir.join("resp.der");
    std::fs::write(&response, &answer.der).unwrap();
    let out = openssl_output(&["ocsp", "-respin", &s(&response), "-resp_text", "-noverify"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("unauthorized (6)"), "{text}");
    assert!(
        !text.contains("Response Type") && !text.contains("Cert Status"),
        "{text}"
    );
}

/// A CA made with `ca init --no-passphrase` in a fresh directory.
fn url_ca(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    ok(ca(&dir).args(["init", "--no-passphrase", "--name", name]));
    (tmp, dir)
}

#[test]
fn concurrent_sets_of_different_urls_all_survive() {
    let (_tmp, dir) = url_ca("Set Race Root");
    // Each round starts one `ca set` per URL at once; without the directory lock one process's
    // read-modify-write undoes another's, leaving a URL of the round before.
    for round in 0..8 {
        let children: Vec<_> = [("--crl-url", "crl"), ("--ocsp-url", "ocsp"), ("--ca-issuers-url", "ca")]
            .iter()
            .flat_map(|(flag, name)| {
                // Two writers per field, with the same value, make the race more likely.
                (0..2).map(move |_| (flag, format!("http://ca.example/{name}/{round}")))
            })
            .map(|(flag, url)| {
                ca(&dir)
                    .args(["set", flag, &url])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = support::finish(child, None, support::TIMEOUT, "ca set");
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let urls = support::json(&ok(ca(&dir).args(["set", "--json"])));
        assert_eq!(
            urls,
            serde_json::json!({
                "crl": format!("http://ca.example/crl/{round}"),
                "ocsp": format!("http://ca.example/ocsp/{round}"),
                "ca_issuers": format!("http://ca.example/ca/{round}"),
            }),
            "round {round}"
        );
    }
}

#[test]
fn a_damaged_or_oversized_urls_json_is_named_and_set_replaces_it() {
    let (_tmp, dir) = url_ca("Damaged URLs Root");
    let file = dir.join("urls.json");
    let huge = format!("{{\"crl\": null{}}}", " ".repeat(70 * 1024));
    for (bytes, why) in [
        ("{\"crl\": ".to_string(), "is not readable"),
        ("{\"crl\": \"ftp://x/\"}".to_string(), "is not an http or https URL"),
        (huge, "is larger than 65536 bytes"),
    ] {
        std::fs::write(&file, &bytes).unwrap();
        for args in [&["set"][..], &["set", "--crl-url", "http://ca.example/crl"]] {
            let out = support::output(ca(&dir).args(args));
            assert_eq!(support::code(&out), 3, "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains(&s(&file)) && err.contains(why), "{err}");
            assert!(
                err.contains("ca: hint: fix or remove urls.json")
                    && err.contains("`ca set --crl-url URL|none --ocsp-url URL|none --ca-issuers-url URL|none`"),
                "{err}"
            );
        }
        // Issuing refuses too, rather than leave the URLs out.
        let out = support::output(ca(&dir).args(["issue", "--profile", "server", "--name", "x.test"]));
        assert_eq!(support::code(&out), 3, "{}", stderr(&out));
        assert!(stderr(&out).contains("fix or remove urls.json"), "{}", stderr(&out));
        // Every URL given: the damaged file is replaced.
        let said = ok(ca(&dir).args([
            "set",
            "--crl-url",
            "http://ca.example/crl",
            "--ocsp-url",
            "none",
            "--ca-issuers-url",
            "none",
        ]));
        assert!(said.contains("crl-url:        http://ca.example/crl"), "{said}");
        let urls = support::json(&std::fs::read_to_string(&file).unwrap());
        assert_eq!(
            urls,
            serde_json::json!({"crl": "http://ca.example/crl", "ocsp": null, "ca_issuers": null})
        );
    }
}

#[test]
fn a_linked_urls_json_is_written_through_and_stays_a_link() {
    let (tmp, dir) = url_ca("Linked URLs Root");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let target = shared.join("urls.json");
    std::fs::write(&target, "{\"crl\": \"http://old.example/crl\"}\n").unwrap();
    let link = dir.join("urls.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok(ca(&dir).args(["set", "--ocsp-url", "http://ca.example/ocsp"]));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(
        support::json(&std::fs::read_to_string(&target).unwrap()),
        serde_json::json!({"crl": "http://old.example/crl", "ocsp": "http://ca.example/ocsp", "ca_issuers": null})
    );
    // Clearing every URL keeps the link too: the file it points to says none.
    ok(ca(&dir).args(["set", "--crl-url", "none", "--ocsp-url", "none"]));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(
        support::json(&std::fs::read_to_string(&target).unwrap()),
        serde_json::json!({"crl": null, "ocsp": null, "ca_issuers": null})
    );
    // A dangling link is refused with the file named, and left alone.
    std::fs::remove_file(&target).unwrap();
    std::fs::remove_dir(&shared).unwrap();
    let out = support::output(ca(&dir).args(["set", "--crl-url", "http://ca.example/crl"]));
    assert_eq!(support::code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("urls.json"), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[test]
fn url_checks_refuse_empty_ports_and_bad_hosts_and_lower_the_scheme() {
    let (_tmp, dir) = url_ca("URL Check Root");
    for bad in [
        "http://h:/",
        "http://-/",
        "http://ca.example:/crl",
        "http://-ca.example/",
    ] {
        let out = support::output(ca(&dir).args(["set", "--crl-url", bad]));
        assert_eq!(support::code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("empty port") || stderr(&out).contains("malformed host"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    // Control characters in the value are shown escaped, never raw.
    let out = support::output(ca(&dir).args(["set", "--crl-url", "http://ca.example/\u{1b}[2J"]));
    assert_eq!(support::code(&out), 2, "{}", stderr(&out));
    assert!(!out.stderr.contains(&0x1b), "{:?}", stderr(&out));
    assert!(stderr(&out).contains("contains U+001B"), "{}", stderr(&out));
    // An upper-case scheme is taken, and kept in lower case (as certificates then carry it).
    ok(ca(&dir).args([
        "set",
        "--crl-url",
        "HTTP://ca.example/Crl",
        "--ocsp-url",
        "HTTPS://ca.example/",
    ]));
    let urls = support::json(&ok(ca(&dir).args(["set", "--json"])));
    assert_eq!(
        urls,
        serde_json::json!({"crl": "http://ca.example/Crl", "ocsp": "https://ca.example/", "ca_issuers": null})
    );
    let out = support::output(ca(&dir).args(["init", "--no-passphrase", "--crl-url", "http://h:/"]));
    assert_eq!(support::code(&out), 2, "{}", stderr(&out));
}

/// `openssl ocsp -respin RESPONSE -issuer ROOT -CAfile ROOT -no_nonce -cert CERT`: OpenSSL's
/// reading of a response signed by the root `root_pem` itself (not a delegated responder) about
/// `cert`, which it prints as `CERT: good` (or revoked, unknown) on stdout.
fn openssl_ocsp_of_root(response: &Path, root_pem: &str, cert: &Path) -> std::process::Output {
    openssl_output(&[
        "ocsp",
        "-respin",
        &s(response),
        "-issuer",
        root_pem,
        "-CAfile",
        root_pem,
        "-no_nonce",
        "-cert",
        &s(cert),
    ])
}
