//! Interoperability with an independent TLS 1.3 implementation: `openssl s_client` against
//! echo-server (counting the KeyUpdates it sees while the server rotates), and echo-client
//! against `openssl s_server`. These tests need the `openssl` command (3.0 or later).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use channel_common::{Pki, STEP, Server, run};

fn os(args: &[std::ffi::OsString]) -> Vec<&OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn openssl() -> Command {
    let probe = Command::new("openssl").arg("version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "the openssl command is required for the interoperability tests"
    );
    Command::new("openssl")
}

fn s_client(server: &Server, pki: &Pki, extra: &[&OsStr]) -> Command {
    let mut command = openssl();
    command
        .args(["s_client", "-connect"])
        .arg(server.addr.to_string())
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&pki.root)
        .args(["-verify_return_error", "-msg", "-quiet"])
        .args(extra);
    command
}

#[test]
fn openssl_s_client_sees_the_server_rotate() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend([
        "--rotate-bytes".into(),
        "1024".into(),
        "--idle-timeout".into(),
        "1".into(),
    ]);
    let server = Server::start(pki.dir.path(), &os(&args));
    // `z` appears in no -msg header, so counting it counts echoed bytes.
    let line = format!("{}\n", "z".repeat(99));
    let input = line.repeat(100); // 10,000 bytes
    let out = run(
        &mut s_client(
            &server,
            &pki,
            &[
                OsStr::new("-cert"),
                pki.client1.chain.as_os_str(),
                OsStr::new("-key"),
                pki.client1.key.as_os_str(),
            ],
        ),
        input.as_bytes(),
        STEP,
    );
    let stdout = text(&out.stdout);
    let from_server = stdout
        .lines()
        .filter(|l| l.starts_with("<<<") && l.contains("KeyUpdate"))
        .count();
    // 10,000 bytes echoed with a KeyUpdate every 1024 bytes.
    assert!(
        from_server >= 9,
        "s_client saw {from_server} KeyUpdates:\n{}",
        text(&out.stderr)
    );
    assert_eq!(stdout.matches('z').count(), 9900, "everything echoed");
    let log = server.wait_for_log("connection closed");
    assert!(log.contains("peer_identity=\"client1\""), "{log}");
}

#[test]
fn openssl_s_client_refusals() {
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    // No client certificate: the refusal arrives after the handshake, on the first read.
    let out = run(&mut s_client(&server, &pki, &[]), b"hello\n", STEP);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("certificate required"), "{all}");
    assert!(!text(&out.stdout).contains("\nhello"), "{all}");
    // TLS 1.2 is refused at the handshake.
    let out = run(
        &mut s_client(
            &server,
            &pki,
            &[
                OsStr::new("-tls1_2"),
                OsStr::new("-cert"),
                pki.client1.chain.as_os_str(),
                OsStr::new("-key"),
                pki.client1.key.as_os_str(),
            ],
        ),
        b"hello\n",
        STEP,
    );
    assert!(!out.status.success());
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("protocol version"), "{all}");
}

/// `openssl s_server` requiring a client certificate; with `-rev` it answers each line
/// reversed, without it prints what it receives.
struct SServer {
    child: std::process::Child,
    port: u16,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl SServer {
    fn start(pki: &Pki, cert: &std::path::Path, key: &std::path::Path, reverse: bool) -> Self {
        let mut child = openssl()
            .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-msg"])
            .args(reverse.then_some("-rev"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .arg("-CAfile")
            .arg(&pki.root)
            .args(["-Verify", "2", "-verify_return_error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("ACCEPT 127.0.0.1:") {
                    let _ = tx.send(port.trim().parse::<u16>().unwrap_or(0));
                }
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let port = rx.recv_timeout(STEP).expect("s_server did not start");
        Self { child, port, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn echo_client_talks_to_openssl_s_server() {
    let pki = Pki::new();
    let server_cert = pki.dir.path().join("server.pem");
    let s_server = SServer::start(&pki, &server_cert, &pki.server.key, true);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", s_server.port).parse().unwrap();
    let out = run(pki.client(addr, Some(&pki.client1)).arg("hello"), b"", STEP);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "olleh\n");
}

#[test]
fn echo_client_rotates_against_openssl_s_server() {
    // s_server -rev sleeps a second whenever a record holds no data (a KeyUpdate), so the
    // rotation test streams to a plain s_server, which prints what it receives.
    let pki = Pki::new();
    let server_cert = pki.dir.path().join("server.pem");
    let s_server = SServer::start(&pki, &server_cert, &pki.server.key, false);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", s_server.port).parse().unwrap();
    let out = run(
        pki.client(addr, Some(&pki.client1)).args(["--rotate-bytes", "4", "-v"]),
        b"abcdefghijklmnopqrstuvwxyz\n",
        STEP,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + STEP;
    let log = loop {
        let log = s_server.output();
        if log.contains("CONNECTION CLOSED") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let from_client = log
        .lines()
        .filter(|l| l.starts_with("<<<") && l.contains("KeyUpdate"))
        .count();
    // 27 bytes with a KeyUpdate every 4 bytes.
    assert!(from_client >= 6, "s_server saw {from_client} KeyUpdates:\n{log}");
    for chunk in ["abcd", "efgh", "uvwx"] {
        assert!(
            log.lines().any(|l| l.starts_with(chunk)),
            "{chunk} not received:\n{log}"
        );
    }
}

#[test]
fn echo_client_refuses_an_untrusted_openssl_server() {
    let pki = Pki::new();
    let foreign_cert = pki.dir.path().join("foreign-server.pem");
    let s_server = SServer::start(&pki, &foreign_cert, &pki.foreign_server.key, true);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", s_server.port).parse().unwrap();
    let out = run(pki.client(addr, Some(&pki.client1)).arg("hello"), b"", STEP);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unknown issuer"), "{}", text(&out.stderr));
}

#[test]
fn openssl_s_client_resumes_on_a_second_server_sharing_the_ticket_keys() {
    let pki = Pki::new();
    let keys = pki.dir.path().join("fleet.keys");
    tessera::channel::new_ticket_key(&keys).unwrap();
    let other = pki.dir.path().join("other.keys");
    tessera::channel::new_ticket_key(&other).unwrap();
    let start = |keys: &std::path::Path| {
        let mut args = pki.server_args();
        args.extend(["--idle-timeout".into(), "1".into(), "--ticket-keys".into(), keys.into()]);
        Server::start(pki.dir.path(), &os(&args))
    };
    let (a, b, c) = (start(&keys), start(&keys), start(&other));
    let session = pki.dir.path().join("session.pem");
    // A client with a certificate; the server closes it after 1 s idle, so the tickets
    // (sent after the handshake) have been read by then.
    let connect = |server: &Server, sess: &str| {
        let mut command = openssl();
        command
            .args(["s_client", "-connect"])
            .arg(server.addr.to_string())
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&pki.root)
            .arg("-cert")
            .arg(&pki.client1.chain)
            .arg("-key")
            .arg(&pki.client1.key)
            .args(["-verify_return_error", "-ign_eof", sess])
            .arg(&session);
        let out = run(&mut command, b"ping\n", STEP);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let first = connect(&a, "-sess_out");
    assert!(first.contains("New, TLSv1.3"), "{first}");
    let second = connect(&b, "-sess_in");
    assert!(second.contains("Reused, TLSv1.3"), "B resumes A's session:\n{second}");
    assert!(b.log().contains("resumed=true"), "{}", b.log());
    // A server with other keys cannot open the ticket: a full handshake, which succeeds.
    let third = connect(&c, "-sess_in");
    assert!(third.contains("New, TLSv1.3"), "{third}");
    assert!(c.log().contains("resumed=false"), "{}", c.log());
}

#[test]
fn a_session_minted_before_a_revocation_reloaded_by_sighup_does_not_resume() {
    use tessera::ca::{CertificateAuthority, RevocationReason};
    let pki = Pki::new();
    let keys = pki.dir.path().join("fleet.keys");
    tessera::channel::new_ticket_key(&keys).unwrap();
    let mut args = pki.server_args();
    args.extend(["--idle-timeout".into(), "1".into(), "--ticket-keys".into(), keys.into()]);
    let server = Server::start(pki.dir.path(), &os(&args));
    let session = pki.dir.path().join("session.pem");
    let connect = |sess: &str| {
        let mut command = openssl();
        command
            .args(["s_client", "-connect"])
            .arg(server.addr.to_string())
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&pki.root)
            .arg("-cert")
            .arg(&pki.client2.chain)
            .arg("-key")
            .arg(&pki.client2.key)
            .args(["-verify_return_error", "-ign_eof", sess])
            .arg(&session);
        run(&mut command, b"ping\n", STEP)
    };
    let first = connect("-sess_out");
    assert!(text(&first.stdout).contains("New, TLSv1.3"), "{}", text(&first.stdout));
    let before = connect("-sess_in");
    assert!(
        text(&before.stdout).contains("Reused, TLSv1.3"),
        "{}",
        text(&before.stdout)
    );
    // client2 is revoked; the server reloads its CRL on SIGHUP.
    let ca = CertificateAuthority::open(&pki.dir.path().join("ca"), None).unwrap();
    let crl = ca
        .revoke(
            &pki.client2.serial.parse().unwrap(),
            RevocationReason::KeyCompromise,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(86_400),
        )
        .unwrap();
    std::fs::write(&pki.crl, tessera::pki::pem::to_pem("X509 CRL", &crl)).unwrap();
    server.signal("HUP");
    server.wait_for_log("configuration reloaded");
    let after = connect("-sess_in");
    let output = format!("{}{}", text(&after.stdout), text(&after.stderr));
    assert!(!output.contains("Reused"), "{output}");
    assert!(output.contains("certificate revoked"), "{output}");
    let log = server.wait_for_log("session ticket not honoured");
    assert!(log.contains("client certificate refused"), "{log}");
    assert_eq!(log.matches("resumed=true").count(), 1, "{log}");
}
