//! echo-server and echo-client hardened (issue 7): the server stays in control (reloads with a
//! deadline, regular files only, no certificate it cannot serve with, no zero or absurd limits,
//! slow handshakes cannot lock clients out), a stale CRL is reported and explained, and every
//! message is in Tessera's own words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_common;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use channel_common::{BIDI_NAME, Leaf, Pki, STEP, Server, run};

fn os(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn server_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"));
    command.args(["--listen", "127.0.0.1:0"]).env_remove("SSLKEYLOGFILE");
    command
}

/// Copies a leaf's chain and key to `live.chain.pem` / `live.key` (the files a server is
/// started with and reloads).
fn install(pki: &Pki, chain: &Path, key: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let live_chain = pki.dir.path().join("live.chain.pem");
    let live_key = pki.dir.path().join("live.key");
    let _ = std::fs::remove_file(&live_chain);
    let _ = std::fs::remove_file(&live_key);
    std::fs::copy(chain, &live_chain).unwrap();
    std::fs::copy(key, &live_key).unwrap();
    (live_chain, live_key)
}

/// Waits until `needle` occurs at least `times` times in the server's log.
fn wait_for_count(server: &Server, needle: &str, times: usize) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let log = server.log();
        if log.matches(needle).count() >= times {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "log never showed {needle:?} {times} times:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The serial of the server certificate a client sees (with -v), after a successful echo.
fn serial_seen(pki: &Pki, server: &Server) -> String {
    let out = run(
        pki.client(server.addr, Some(&pki.client1)).args(["-v", "ping"]),
        b"",
        STEP,
    );
    assert_eq!(text(&out.stdout), "ping\n", "{}", text(&out.stderr));
    text(&out.stderr)
}

/// echo-client for `addr` with client1's certificate and nothing else set (no --server-name,
/// no --timeout), for tests that give those flags themselves.
fn bare_client(pki: &Pki, addr: std::net::SocketAddr) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_echo-client"));
    command
        .arg("--connect")
        .arg(addr.to_string())
        .arg("--ca")
        .arg(&pki.root)
        .arg("--cert")
        .arg(&pki.client1.chain)
        .arg("--key")
        .arg(&pki.client1.key)
        .env_remove("SSLKEYLOGFILE");
    command
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo failed");
}

#[test]
fn a_fifo_is_refused_at_reload_and_sigterm_still_stops_the_server() {
    let pki = Pki::new();
    let (chain, key) = install(&pki, &pki.server.chain, &pki.server.key);
    let mut args: Vec<OsString> = vec![
        "--cert".into(),
        chain.clone().into(),
        "--key".into(),
        key.clone().into(),
    ];
    args.extend([
        "--client-ca".into(),
        pki.root.clone().into(),
        "--reload-timeout".into(),
        "2".into(),
    ]);
    let mut server = Server::start(pki.dir.path(), &os(&args));
    assert!(serial_seen(&pki, &server).contains(&pki.server.serial));

    // The certificate becomes a FIFO that nobody writes: the reload must end, not hang.
    std::fs::remove_file(&chain).unwrap();
    mkfifo(&chain);
    server.signal("HUP");
    let log = wait_for_count(&server, "keeping the previous configuration", 1);
    assert!(
        log.contains("live.chain.pem is a FIFO (named pipe), not a regular file"),
        "{log}"
    );
    // Later reloads still run (each ends and says why), and the server still serves.
    server.signal("HUP");
    wait_for_count(&server, "keeping the previous configuration", 2);
    assert!(serial_seen(&pki, &server).contains(&pki.server.serial));

    // The key as a FIFO too: same answer.
    std::fs::remove_file(&key).unwrap();
    mkfifo(&key);
    server.signal("HUP");
    wait_for_count(&server, "keeping the previous configuration", 3);

    let asked = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.log());
    assert!(asked.elapsed() < STEP, "SIGTERM took {:?}", asked.elapsed());
}

#[test]
fn special_files_are_refused_at_start_with_exit_3() {
    let pki = Pki::new();
    let fifo = pki.dir.path().join("pipe.pem");
    mkfifo(&fifo);
    let dir = pki.dir.path().to_path_buf();
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (
            vec![
                "--cert".into(),
                fifo.clone().into(),
                "--key".into(),
                pki.server.key.clone().into(),
            ],
            "certificate chain",
        ),
        (
            vec![
                "--cert".into(),
                pki.server.chain.clone().into(),
                "--key".into(),
                fifo.clone().into(),
            ],
            "private key",
        ),
        (
            vec![
                "--cert".into(),
                pki.server.chain.clone().into(),
                "--key".into(),
                pki.server.key.clone().into(),
                "--client-ca".into(),
                fifo.clone().into(),
            ],
            "root certificates",
        ),
    ];
    for (args, what) in cases {
        let out = run(server_command().args(&args), b"", STEP);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains(&format!("echo-server: error: {what} {}", fifo.display()))
                && stderr.contains("is a FIFO (named pipe), not a regular file"),
            "{stderr}"
        );
        assert!(
            stderr.contains("echo-server: hint: give the path of a regular PEM file"),
            "{stderr}"
        );
    }
    // A device and a directory as a CRL.
    for (crl, kind) in [
        (Path::new("/dev/zero"), "a character device"),
        (dir.as_path(), "a directory"),
    ] {
        let out = run(
            server_command()
                .arg("--cert")
                .arg(&pki.server.chain)
                .arg("--key")
                .arg(&pki.server.key)
                .arg("--client-ca")
                .arg(&pki.root)
                .arg("--crl")
                .arg(crl),
            b"",
            STEP,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(&format!("CRL {} is {kind}", crl.display())), "{stderr}");
    }
    // echo-client too, before it connects anywhere.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(pki.client(closed, None).arg("--crl").arg(&fifo).arg("hello"), b"", STEP);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is a FIFO"), "{}", text(&out.stderr));
}

/// The certificates a server cannot serve with, and what the error must say.
fn unservable(pki: &Pki) -> Vec<(&'static str, Leaf, &'static str)> {
    let mismatched = Leaf {
        chain: pki.server.chain.clone(),
        key: pki.server2.key.clone(),
        serial: pki.server.serial.clone(),
    };
    vec![
        ("expired", pki.expired_server.clone(), "cannot be used: it expired at "),
        (
            "not yet valid",
            pki.future_server.clone(),
            "cannot be used: it is not valid before ",
        ),
        (
            "client certificate",
            pki.client1.clone(),
            "cannot be used: it is not for server use (its extended key usage is clientAuth)",
        ),
        (
            "key not matching",
            mismatched,
            "the key does not belong to the first certificate",
        ),
    ]
}

#[test]
fn a_certificate_the_server_cannot_serve_with_is_refused_at_start() {
    let pki = Pki::new();
    for (case, leaf, message) in unservable(&pki) {
        let out = run(
            server_command()
                .arg("--cert")
                .arg(&leaf.chain)
                .arg("--key")
                .arg(&leaf.key),
            b"",
            STEP,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{case}: {stderr}");
        assert!(stderr.starts_with("echo-server: error: "), "{case}: {stderr}");
        assert!(stderr.contains(message), "{case}: {stderr}");
        assert!(stderr.contains("echo-server: hint: "), "{case}: {stderr}");
        assert!(out.stdout.is_empty(), "{case}: nothing listens");
    }
}

#[test]
fn sighup_with_a_certificate_it_cannot_serve_with_keeps_the_old_one() {
    let pki = Pki::new();
    let (chain, key) = install(&pki, &pki.server.chain, &pki.server.key);
    let server = Server::start(
        pki.dir.path(),
        &os(&[
            "--cert".into(),
            chain.clone().into(),
            "--key".into(),
            key.clone().into(),
        ]),
    );
    for (round, (case, leaf, message)) in unservable(&pki).into_iter().enumerate() {
        std::fs::copy(&leaf.chain, &chain).unwrap();
        std::fs::copy(&leaf.key, &key).unwrap();
        server.signal("HUP");
        let log = wait_for_count(&server, "reload failed; keeping the previous configuration", round + 1);
        let line = log
            .lines()
            .filter(|l| l.contains("reload failed"))
            .nth(round)
            .unwrap()
            .to_string();
        assert!(line.contains(message), "{case}: {line}");
        assert!(
            serial_seen(&pki, &server).contains(&pki.server.serial),
            "{case}: the old certificate is still served"
        );
    }
    assert!(!server.log().contains("configuration reloaded"), "{}", server.log());
    // A good pair is then taken.
    std::fs::copy(&pki.server2.chain, &chain).unwrap();
    std::fs::copy(&pki.server2.key, &key).unwrap();
    server.signal("HUP");
    server.wait_for_log("configuration reloaded");
    assert!(serial_seen(&pki, &server).contains(&pki.server2.serial));
}

#[test]
fn zero_and_absurd_numbers_are_usage_errors() {
    let pki = Pki::new();
    let server_cases: &[(&[&str], &str)] = &[
        (
            &["--handshake-timeout", "0"],
            "--handshake-timeout takes a number of seconds from 0.01 to 3600, not 0",
        ),
        (
            &["--handshake-timeout", "0.001"],
            "--handshake-timeout takes a number of seconds",
        ),
        (
            &["--handshake-timeout", "86400"],
            "--handshake-timeout takes a number of seconds",
        ),
        (&["--handshake-timeout=-1"], "--handshake-timeout takes"),
        (&["--handshake-timeout", "NaN"], "--handshake-timeout takes"),
        (&["--idle-timeout", "0"], "--idle-timeout takes a number of seconds"),
        (&["--idle-timeout", "1e19"], "--idle-timeout takes a number of seconds"),
        (
            &["--shutdown-timeout", "0"],
            "--shutdown-timeout takes a number of seconds",
        ),
        (&["--reload-timeout", "0"], "--reload-timeout takes a number of seconds"),
        (
            &["--max-conns", "0"],
            "invalid value '0' for '--max-conns <N>': expected a whole number from 1 to 1000000, not \"0\"",
        ),
        (
            &["--max-conns", "18446744073709551615"],
            "invalid value '18446744073709551615' for '--max-conns <N>': expected a whole number from 1 to 1000000",
        ),
        (
            &["--max-handshakes", "0"],
            "invalid value '0' for '--max-handshakes <N>': expected a whole number from 1 to 1000000, not \"0\"",
        ),
        (
            &["--rotate-secs", "1e-9"],
            "--rotate-secs is 0 (never) or at least 0.001 seconds",
        ),
        (&["--rotate-secs", "1e19"], "--rotate-secs is at most"),
        (
            &["--rotate-min-interval", "1e-12"],
            "--rotate-min-interval is 0 (never) or at least",
        ),
    ];
    for (flags, message) in server_cases {
        let out = run(
            server_command()
                .args(*flags)
                .arg("--cert")
                .arg(&pki.server.chain)
                .arg("--key")
                .arg(&pki.server.key),
            b"",
            STEP,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "echo-server {flags:?}: {stderr}");
        assert!(
            stderr.contains(&format!("echo-server: error: {message}")),
            "echo-server {flags:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "echo-server {flags:?} must not listen");
    }
    // Nothing listens there: a usage error must come before any connection attempt.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client_cases: &[(&[&str], &str)] = &[
        (&["--timeout", "0", "hello"], "--timeout takes a number of seconds"),
        (
            &["--connect-timeout", "0", "hello"],
            "--connect-timeout takes a number of seconds",
        ),
        (
            &["--connect-timeout", "1e9", "hello"],
            "--connect-timeout takes a number of seconds",
        ),
        (
            &["--bench", "--conns", "0"],
            "invalid value '0' for '--conns <N>': expected a whole number from 1 to 100000, not \"0\"",
        ),
        (
            &["--bench", "--conns", "1000000000000"],
            "invalid value '1000000000000' for '--conns <N>': expected a whole number from 1 to 100000",
        ),
        (
            &["--bench", "--conns", "4", "--concurrency", "0"],
            "invalid value '0' for '--concurrency <N>': expected a whole number from 1 to 100000, not \"0\"",
        ),
        (
            &["--bench", "--write-size", "0"],
            "--write-size takes a number from 1 to 16777216, not 0",
        ),
        (
            &["--rotate-secs", "1e-9", "hello"],
            "--rotate-secs is 0 (never) or at least",
        ),
        (
            &["--server-name", "a..b", "hello"],
            "server name \"a..b\" is not a valid DNS name or IP address",
        ),
    ];
    for (flags, message) in client_cases {
        let out = run(bare_client(&pki, closed).args(*flags), b"", STEP);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "echo-client {flags:?}: {stderr}");
        assert!(
            stderr.contains(&format!("echo-client: error: {message}")),
            "echo-client {flags:?}: {stderr}"
        );
    }
}

/// Opens `count` connections that start a handshake and stall: silent ones, and ones that
/// send the first bytes of a ClientHello and nothing more.
fn stalled_connections(addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut tcp = TcpStream::connect(addr).unwrap();
            if i % 2 == 1 {
                // A TLS record header announcing a 512-byte handshake record, then 5 bytes of it.
                tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
                    .unwrap();
            }
            tcp
        })
        .collect()
}

#[test]
fn slow_handshakes_cannot_lock_out_a_client() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend([
        "--max-conns".into(),
        "50".into(),
        "--handshake-timeout".into(),
        "60".into(),
    ]);
    let server = Server::start(pki.dir.path(), &os(&args));
    let stalled = stalled_connections(server.addr, 60);
    std::thread::sleep(Duration::from_millis(200));
    // Far sooner than the 60 s handshake timeout that would free the slots.
    let started = Instant::now();
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("served"), b"", STEP);
    assert_eq!(text(&out.stdout), "served\n", "{}\n{}", text(&out.stderr), server.log());
    assert!(started.elapsed() < STEP);
    assert!(!server.log().contains("--max-conns reached"), "{}", server.log());
    drop(stalled);
}

#[test]
fn beyond_max_handshakes_the_oldest_pending_handshake_gives_way() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend([
        "--max-conns".into(),
        "50".into(),
        "--max-handshakes".into(),
        "10".into(),
        "--handshake-timeout".into(),
        "60".into(),
    ]);
    let server = Server::start(pki.dir.path(), &os(&args));
    let stalled = stalled_connections(server.addr, 60);
    wait_for_count(&server, "handshake abandoned", 50);
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("served"), b"", STEP);
    assert_eq!(text(&out.stdout), "served\n", "{}\n{}", text(&out.stderr), server.log());
    drop(stalled);
}

#[test]
fn established_sessions_count_against_max_conns() {
    use std::process::Stdio;
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--max-conns".into(), "1".into()]);
    let server = Server::start(pki.dir.path(), &os(&args));
    // Pending handshakes do not take the one session slot...
    let _silent = stalled_connections(server.addr, 5);
    std::thread::sleep(Duration::from_millis(100));
    // ...an established session does: a client streaming stdin, left open.
    let mut holder = pki
        .client(server.addr, Some(&pki.client1))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut holder_in = holder.stdin.take().unwrap();
    holder_in.write_all(b"hold\n").unwrap();
    server.wait_for_log("connected");
    let out = run(pki.client(server.addr, Some(&pki.client2)).arg("refused"), b"", STEP);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    server.wait_for_log("--max-conns reached");
}

#[test]
fn a_stale_crl_is_reported_and_clients_are_told_why() {
    let pki = Pki::new();
    let mut args: Vec<OsString> = vec![
        "--cert".into(),
        pki.server.chain.clone().into(),
        "--key".into(),
        pki.server.key.clone().into(),
        "--client-ca".into(),
        pki.root.clone().into(),
        "--crl".into(),
        pki.stale_crl.clone().into(),
    ];
    let server = Server::start(pki.dir.path(), &os(&args));
    let log = server.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("is out of date"))
        .unwrap_or_else(|| panic!("no stale-CRL warning at start:\n{log}"))
        .to_string();
    assert!(warning.contains(&pki.stale_crl.display().to_string()), "{warning}");
    assert!(warning.contains("issuer CN=Test Root"), "{warning}");
    assert!(warning.contains("its nextUpdate 20"), "{warning}");

    // Every client is refused, with an alert that does not blame its issuer.
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("hello"), b"", STEP);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the peer sent the TLS alert certificate_unknown"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("unknown_ca") && !stderr.contains("issuer of your certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("echo-client: hint: the server could not decide on your certificate, most likely because its CRL is out of date"),
        "{stderr}"
    );
    let log = server.wait_for_log("client certificate refused");
    assert!(
        log.contains("its revocation status could not be determined: a CRL expired at"),
        "{log}"
    );

    // The warning comes again at each reload.
    server.signal("HUP");
    wait_for_count(&server, "is out of date", 2);

    // The mirror: a client whose own --crl is stale warns at start and refuses the server.
    args.truncate(4);
    let open = Server::start(pki.dir.path(), &os(&args));
    let out = run(
        pki.client(open.addr, None)
            .arg("--crl")
            .arg(&pki.stale_crl)
            .arg("hello"),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "echo-client: warning: CRL {} (issuer CN=Test Root) is out of date",
            pki.stale_crl.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "echo-client: error: the peer's certificate was refused: its revocation status could not be determined"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("echo-client: hint: a --crl you gave is out of date"),
        "{stderr}"
    );
    let log = open.wait_for_log("handshake failed");
    assert!(log.contains("the peer sent the TLS alert certificate_unknown"), "{log}");
    // -q: errors only.
    let out = run(
        pki.client(open.addr, None)
            .args(["-q", "--crl"])
            .arg(&pki.stale_crl)
            .arg("hello"),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("echo-client: error:"), "{stderr}");
}

#[test]
fn refusals_are_explained_in_the_projects_words() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--allow".into(), "client1".into()]);
    let server = Server::start(pki.dir.path(), &os(&args));
    for (leaf, alert, hint) in [
        (None, "certificate_required", "pass --cert and --key"),
        (
            Some(&pki.foreign_client),
            "unknown_ca",
            "does not trust the issuer of your certificate",
        ),
        (Some(&pki.revoked), "certificate_revoked", "your certificate is revoked"),
        (Some(&pki.expired), "certificate_expired", "expired or not yet valid"),
        (Some(&pki.client2), "access_denied", "--allow list does not name it"),
        (Some(&pki.bidi), "access_denied", "--allow list does not name it"),
    ] {
        let out = run(pki.client(server.addr, leaf).arg("hello"), b"", STEP);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{alert}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "echo-client: error: channel read failed: the peer sent the TLS alert {alert}: "
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("echo-client: hint: ") && stderr.contains(hint),
            "{stderr}"
        );
        for raw in ["AlertReceived", "CertificateRequired", "UnknownCA", "docs.rs", "Some("] {
            assert!(!stderr.contains(raw), "{raw} in {stderr}");
        }
    }
    // The server's log says why in words, and shows the untrusted name escaped.
    let log = wait_for_count(&server, "client certificate refused", 6);
    for reason in [
        "reason=no certificate was presented",
        "reason=the certificate was not issued by a trusted root (unknown issuer)",
        &format!("reason=certificate {} is revoked (key-compromise)", pki.revoked.serial),
        "reason=certificate CN=expired has expired (at 20",
        "reason=client2 serial",
        "reason=evil\\u{202e}gnp.exe serial",
    ] {
        assert!(log.contains(reason), "server log lacks {reason:?}:\n{log}");
    }
    assert!(
        !log.contains(BIDI_NAME),
        "raw right-to-left override in the log:\n{log}"
    );

    // A server the client does not trust, and a name it does not hold.
    let out = run(
        bare_client(&pki, server.addr).args(["--server-name", "elsewhere.example", "hello"]),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the peer's certificate was refused: the certificate is not valid for the name elsewhere.example"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("check --server-name"), "{stderr}");
    for raw in ["NotValidForName", "MalformedDnsIdentifier", "InvalidCertificate"] {
        assert!(!stderr.contains(raw), "{raw} in {stderr}");
    }
    let log = server.wait_for_log("handshake failed");
    assert!(log.contains("the peer sent the TLS alert bad_certificate"), "{log}");
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("admitted"), b"", STEP);
    assert_eq!(text(&out.stdout), "admitted\n", "{}", text(&out.stderr));
    let log = server.wait_for_log("connection closed");
    for raw in [
        "docs.rs",
        "Some(",
        "RotationPolicy",
        "TLSv1_3",
        "BadCertificate",
        "AlertReceived",
    ] {
        assert!(!log.contains(raw), "{raw} in the server log:\n{log}");
    }
    assert!(log.contains("rotation=every 64 MiB or 600 s of use"), "{log}");
    assert!(log.contains("version=TLS 1.3"), "{log}");
}

/// A TLS server (library) that reads one line and echoes only `echo` bytes of it, then closes
/// (with close_notify, or by dropping TCP).
fn partial_echo_server(
    pki: &Pki,
    echo: usize,
    close_notify: bool,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use tessera::channel::{self, Authorization, ChannelStream, RotationPolicy};
    let config =
        std::sync::Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = tokio::time::timeout(STEP, listener.accept()).await.unwrap().unwrap();
            let mut stream = ChannelStream::accept(config, tcp, RotationPolicy::never())
                .await
                .unwrap();
            let mut line = [0u8; 6];
            stream.read_exact(&mut line).await.unwrap();
            stream.write_all(&line[..echo]).await.unwrap();
            stream.flush().await.unwrap();
            if close_notify {
                stream.close().await.unwrap();
            }
        });
    });
    (addr, thread)
}

#[test]
fn a_partial_echo_reports_the_bytes_received() {
    let pki = Pki::new();
    for (echo, close_notify, message) in [
        (
            3,
            true,
            "the peer closed the connection after 3 of the 6 bytes expected",
        ),
        (
            2,
            false,
            "the peer closed the connection after 2 of the 6 bytes expected",
        ),
        (
            0,
            true,
            "the peer closed the connection before sending any of the 6 bytes expected",
        ),
    ] {
        let (addr, thread) = partial_echo_server(&pki, echo, close_notify);
        let out = run(pki.client(addr, Some(&pki.client1)).arg("hello"), b"", STEP);
        thread.join().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(&format!("echo-client: error: {message}")), "{stderr}");
        assert!(
            stderr.contains("echo-client: hint: the server closed the connection"),
            "{stderr}"
        );
        assert_eq!(out.stdout, b"", "nothing half-printed");
    }
}

#[test]
fn a_client_that_drops_tcp_is_logged_without_library_text() {
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config =
            std::sync::Arc::new(tessera::channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut stream = tessera::channel::ChannelStream::connect(config, "localhost", tcp, Default::default())
            .await
            .unwrap();
        stream.write_all(b"ping").await.unwrap();
        stream.flush().await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(STEP, stream.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        // Drop the TCP connection without close_notify.
        drop(stream.into_inner());
    });
    let log = server.wait_for_log("connection closed");
    assert!(
        log.contains("ended=\"error: channel read failed: the peer closed the connection without TLS close_notify\""),
        "{log}"
    );
    assert!(!log.contains("docs.rs") && !log.contains("https://"), "{log}");
}

#[test]
fn bench_json_durations_are_seconds() {
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    let out = run(
        pki.client(server.addr, Some(&pki.client1)).args([
            "--bench",
            "--bytes",
            "64K",
            "--conns",
            "2",
            "--json",
            "--rotate-bytes",
            "16K",
            "--rotate-min-interval",
            "0.5",
        ]),
        b"",
        STEP,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "diagnostics only: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["policy"]["interval"], serde_json::json!(600));
    assert_eq!(report["policy"]["min_interval"], serde_json::json!(0.5));
    assert_eq!(report["policy"]["bytes"], serde_json::json!(16384));
    assert_eq!(report["policy"]["messages"], serde_json::Value::Null);
    assert_eq!(report["connections"], serde_json::json!(2));
    assert!(report["seconds"].is_f64(), "{report}");
}

#[test]
fn each_tool_documents_its_own_examples_and_exit_codes() {
    let help = |tool: &str| {
        let out = run(std::process::Command::new(tool).arg("--help"), b"", STEP);
        assert!(out.status.success());
        text(&out.stdout)
    };
    let server = help(env!("CARGO_BIN_EXE_echo-server"));
    let exit_codes = server.split("EXIT CODES:").nth(1).unwrap();
    assert!(exit_codes.contains("0  stopped by SIGINT or SIGTERM"), "{server}");
    assert!(
        exit_codes.contains("2  usage error") && exit_codes.contains("3  could not start"),
        "{server}"
    );
    assert!(!exit_codes.contains("\n  1 "), "echo-server never exits 1: {server}");
    assert!(
        server.contains("EXAMPLES:\n  # mutual TLS") && server.contains("--max-handshakes"),
        "{server}"
    );
    let client = help(env!("CARGO_BIN_EXE_echo-client"));
    let exit_codes = client.split("EXIT CODES:").nth(1).unwrap();
    for code in [
        "0  every message was echoed",
        "1  refused",
        "2  usage error",
        "3  could not run",
    ] {
        assert!(exit_codes.contains(code), "{code}: {client}");
    }
    assert!(client.contains("EXAMPLES:\n  # send two messages"), "{client}");
    assert_eq!(client.matches("EXIT CODES:").count(), 1, "{client}");
}

#[test]
fn a_signal_right_after_listening_on_is_handled() {
    let pki = Pki::new();
    for _ in 0..5 {
        let mut server = Server::start(pki.dir.path(), &os(&pki.server_args()));
        // `listening on` promises that signals are handled from then on.
        server.signal("HUP");
        server.wait_for_log("configuration reloaded");
        assert!(server.child.try_wait().unwrap().is_none(), "{}", server.log());
        server.signal("TERM");
        assert_eq!(server.wait_exit().code(), Some(0), "{}", server.log());
    }
}
