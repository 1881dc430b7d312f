//! echo-server and echo-client as users run them: mutual TLS with rotation, refusals and exit
//! codes, abuse, reload on SIGHUP, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use channel_common::{Pki, STEP, Server, run};

fn os(args: &[std::ffi::OsString]) -> Vec<&OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The number after `key` in a log line such as `rotations=12`.
fn field(log: &str, line_marker: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains(line_marker))
        .unwrap_or_else(|| panic!("no {line_marker:?} in {log}"));
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn echo_over_mutual_tls_with_rotation_then_graceful_stop() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--rotate-bytes".into(), "16".into(), "--allow".into(), "client1".into()]);
    let mut server = Server::start(pki.dir.path(), &os(&args));
    let out = run(
        pki.client(server.addr, Some(&pki.client1)).args([
            "--rotate-bytes",
            "8",
            "-v",
            "hello",
            "a message longer than the limits",
        ]),
        b"",
        STEP,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\na message longer than the limits\n");
    let summary = text(&out.stderr);
    let updates: u64 = summary
        .split(" key updates sent")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {summary}"));
    assert!(updates >= 4, "{summary}");

    let log = server.wait_for_log("connection closed");
    assert!(log.contains("peer_identity=\"client1\""), "{log}");
    assert_eq!(field(&log, "connection closed", "bytes_in"), 6 + 33);
    assert!(field(&log, "connection closed", "rotations") >= 2, "{log}");
    assert!(log.contains("close_notify sent"), "{log}");

    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(server.log().contains("SIGTERM"));
}

#[test]
fn stdin_streams_through_unchanged() {
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let out = run(
        pki.client(server.addr, Some(&pki.client1))
            .args(["--rotate-bytes", "4K"]),
        &data,
        STEP,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == data, "echo differs ({} bytes back)", out.stdout.len());
}

#[test]
fn refusals_exit_1_with_the_reason() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--allow".into(), "client1".into(), "--allow".into(), "revoked".into()]);
    let server = Server::start(pki.dir.path(), &os(&args));
    for (leaf, reason, hint) in [
        (None, "certificate_required", "pass --cert and --key"),
        (Some(&pki.foreign_client), "unknown_ca", "does not trust the issuer"),
        (Some(&pki.revoked), "certificate_revoked", "revoked"),
        (Some(&pki.expired), "certificate_expired", "expired"),
        (Some(&pki.client2), "access_denied", "--allow list"),
        (Some(&pki.comma), "access_denied", "--allow list"),
    ] {
        let out = run(pki.client(server.addr, leaf).arg("hello"), b"", STEP);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{reason}: {stderr}");
        assert!(
            stderr.contains("echo-client: error:") && stderr.contains(reason),
            "{reason}: {stderr}"
        );
        assert!(
            stderr.contains("echo-client: hint:") && stderr.contains(hint),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    let log = server.log();
    for reason in ["no certificate was presented", "revoked", "expired", "allow list"] {
        assert!(log.contains(reason), "server log lacks {reason:?}: {log}");
    }
    // The server is still serving.
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("still here"), b"", STEP);
    assert_eq!(text(&out.stdout), "still here\n", "{}", text(&out.stderr));
}

#[test]
fn client_refuses_a_server_it_does_not_trust() {
    let pki = Pki::new();
    let server = Server::start(
        pki.dir.path(),
        &os(&[
            "--cert".into(),
            pki.foreign_server.chain.clone().into(),
            "--key".into(),
            pki.foreign_server.key.clone().into(),
        ]),
    );
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("hello"), b"", STEP);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unknown issuer"), "{}", text(&out.stderr));
}

#[test]
fn abuse_leaves_the_server_serving() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend([
        "--handshake-timeout".into(),
        "1".into(),
        "--idle-timeout".into(),
        "2".into(),
    ]);
    let server = Server::start(pki.dir.path(), &os(&args));
    let closed_by_server = |mut tcp: TcpStream| {
        tcp.set_read_timeout(Some(STEP)).unwrap();
        let mut sink = Vec::new();
        // EOF (or a reset) rather than a timeout: the server hung up.
        match tcp.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "server did not close"),
        }
        sink
    };

    // Random bytes.
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 13) as u8)
        .collect();
    let _ = tcp.write_all(&noise);
    closed_by_server(tcp);

    // An HTTP request to the TLS port: answered with at most a TLS alert, then closed.
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let reply = closed_by_server(tcp);
    assert!(!reply.starts_with(b"HTTP"), "{reply:?}");

    // 100 silent connections, held open while a legitimate client is served.
    let silent: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("served"), b"", STEP);
    assert_eq!(text(&out.stdout), "served\n", "{}", text(&out.stderr));
    // The handshake timeout closes every silent connection.
    for tcp in silent {
        closed_by_server(tcp);
    }
    let deadline = std::time::Instant::now() + STEP;
    while server.log().matches("handshake timed out").count() < 100 {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // Still serving after all that.
    let out = run(
        pki.client(server.addr, Some(&pki.client1)).arg("after abuse"),
        b"",
        STEP,
    );
    assert_eq!(text(&out.stdout), "after abuse\n");
}

#[test]
fn max_conns_refuses_the_excess() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend([
        "--max-conns".into(),
        "1".into(),
        "--handshake-timeout".into(),
        "30".into(),
    ]);
    let server = Server::start(pki.dir.path(), &os(&args));
    // --max-conns counts established sessions (a pending handshake does not take a slot; see
    // tests/channel_hardening.rs): hold one open.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _held = runtime
        .block_on(async { tokio::time::timeout(STEP, library_client(&pki, server.addr)).await })
        .unwrap();
    let out = run(pki.client(server.addr, Some(&pki.client1)).arg("refused"), b"", STEP);
    assert_ne!(out.status.code(), Some(0));
    server.wait_for_log("--max-conns reached");
}

#[test]
fn sighup_reloads_certificates_and_survives_a_bad_file() {
    let pki = Pki::new();
    let chain = pki.dir.path().join("live.chain.pem");
    let key = pki.dir.path().join("live.key");
    std::fs::copy(&pki.server.chain, &chain).unwrap();
    std::fs::copy(&pki.server.key, &key).unwrap();
    let server = Server::start(
        pki.dir.path(),
        &os(&[
            "--cert".into(),
            chain.clone().into(),
            "--key".into(),
            key.clone().into(),
        ]),
    );
    let serial_seen = || {
        let out = run(pki.client(server.addr, None).args(["-v", "ping"]), b"", STEP);
        assert_eq!(text(&out.stdout), "ping\n", "{}", text(&out.stderr));
        text(&out.stderr)
    };
    assert!(serial_seen().contains(&pki.server.serial));

    std::fs::copy(&pki.server2.chain, &chain).unwrap();
    std::fs::copy(&pki.server2.key, &key).unwrap();
    server.signal("HUP");
    server.wait_for_log("configuration reloaded");
    assert!(serial_seen().contains(&pki.server2.serial));

    std::fs::write(&chain, "garbage").unwrap();
    server.signal("HUP");
    let log = server.wait_for_log("keeping the previous configuration");
    assert!(log.contains("live.chain.pem"), "{log}");
    assert!(serial_seen().contains(&pki.server2.serial));
}

#[test]
fn help_and_usage_errors() {
    for tool in [env!("CARGO_BIN_EXE_echo-server"), env!("CARGO_BIN_EXE_echo-client")] {
        let out = run(std::process::Command::new(tool).arg("--help"), b"", STEP);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(
            help.contains("EXIT CODES") && help.contains("EXAMPLES") && help.contains("SSLKEYLOGFILE"),
            "{help}"
        );
        let out = run(std::process::Command::new(tool).arg("--bogus"), b"", STEP);
        assert_eq!(out.status.code(), Some(2));
    }
    let pki = Pki::new();
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .args(["--listen", "127.0.0.1:0", "--allow", "x", "--cert"])
            .arg(&pki.server.chain)
            .arg("--key")
            .arg(&pki.server.key),
        b"",
        STEP,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--allow needs --client-ca: {}",
        text(&out.stderr)
    );
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .args(["--listen", "127.0.0.1:0", "--cert"])
            .arg(&pki.server.chain)
            .arg("--key")
            .arg(&pki.client1.key),
        b"",
        STEP,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("does not belong"), "{}", text(&out.stderr));
}

#[test]
fn huge_durations_are_usage_errors() {
    let pki = Pki::new();
    for flag in ["--rotate-secs", "--rotate-min-interval"] {
        let out = run(
            std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
                .args(["--listen", "127.0.0.1:0", flag, "1e19", "--cert"])
                .arg(&pki.server.chain)
                .arg("--key")
                .arg(&pki.server.key),
            b"",
            STEP,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "echo-server {flag}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains("at most"), "{stderr}");
    }
    for flag in ["--shutdown-timeout", "--idle-timeout", "--handshake-timeout"] {
        let out = run(
            std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
                .args(["--listen", "127.0.0.1:0", flag, "1e19", "--cert"])
                .arg(&pki.server.chain)
                .arg("--key")
                .arg(&pki.server.key),
            b"",
            STEP,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "echo-server {flag}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} takes a number of seconds from 0.01 to ")),
            "{stderr}"
        );
    }
    // Nothing listens on the address: a usage error must come first.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for flag in ["--rotate-secs", "--rotate-min-interval", "--connect-timeout"] {
        let out = run(pki.client(closed, None).args([flag, "1e19", "hello"]), b"", STEP);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "echo-client {flag}: {stderr}");
        assert!(
            stderr.contains(flag) && (stderr.contains("at most") || stderr.contains("takes a number of seconds")),
            "{stderr}"
        );
    }
}

#[test]
fn numeric_flags_out_of_range_are_usage_errors_naming_flag_range_and_value() {
    let pki = Pki::new();
    let keys = pki.dir.path().join("fleet.keys");
    // (flag, value, the range as the error states it); each on an otherwise good command line.
    let server_cases = [
        ("--ticket-lifetime", "0", "from 1 to 604800"),
        // RFC 8446 §4.6.1: a ticket lifetime is at most 7 days.
        ("--ticket-lifetime", "604801", "from 1 to 604800"),
        ("--max-conns", "0", "from 1 to 1000000"),
        ("--max-conns", "1000001", "from 1 to 1000000"),
        ("--max-handshakes", "0", "from 1 to 1000000"),
        ("--drain-timeout", "3601", "from 0.01 to 3600"),
        ("--drain-timeout", "soon", "from 0.01 to 3600"),
    ];
    for (flag, value, range) in server_cases {
        let out = run(
            std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
                .args(["--listen", "127.0.0.1:0", "--ticket-keys"])
                .arg(&keys)
                .args([flag, value, "--cert"])
                .arg(&pki.server.chain)
                .arg("--key")
                .arg(&pki.server.key),
            b"",
            STEP,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "echo-server {flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(range) && stderr.contains(value),
            "echo-server {flag} {value}: {stderr}"
        );
    }
    // Nothing listens on the address: a usage error must come first.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client_cases: [&[&str]; 7] = [
        &["--retry", "0", "m"],
        &["--retry", "1001", "m"],
        &["--retry", "1", "--retry-backoff", "0", "m"],
        &["--retry", "1", "--retry-backoff", "60001", "m"],
        &["--bench", "--conns", "0"],
        &["--bench", "--conns", "100001"],
        &["--bench", "--concurrency", "0"],
    ];
    let ranges = [
        "from 1 to 1000",
        "from 1 to 1000",
        "from 1 to 60000",
        "from 1 to 60000",
        "from 1 to 100000",
        "from 1 to 100000",
        "from 1 to 100000",
    ];
    for (args, range) in client_cases.iter().zip(ranges) {
        let out = run(pki.client(closed, None).args(*args), b"", STEP);
        let stderr = text(&out.stderr);
        let (flag, value) = args
            .windows(2)
            .rev()
            .find(|pair| pair[0].starts_with("--") && pair[1].bytes().all(|b| b.is_ascii_digit()))
            .map(|pair| (pair[0], pair[1]))
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "echo-client {args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(range) && stderr.contains(&format!("\"{value}\"")),
            "echo-client {args:?}: {stderr}"
        );
        assert!(!stderr.contains("cannot connect"), "{stderr}");
    }
    // --retry-backoff means nothing without --retry: a usage error, not silently ignored.
    let out = run(pki.client(closed, None).args(["--retry-backoff", "5", "m"]), b"", STEP);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--retry <N>"), "{stderr}");
    assert!(!stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn bench_reports_json() {
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    let out = run(
        pki.client(server.addr, Some(&pki.client1)).args([
            "--bench",
            "--bytes",
            "1M",
            "--conns",
            "4",
            "--json",
            "--rotate-bytes",
            "64K",
        ]),
        b"",
        STEP,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["connections"], 4);
    assert_eq!(report["bytes_received"], 1 << 20);
    assert!(report["rotations"].as_u64().unwrap() >= 8, "{report}");
    assert!(report["handshake_ms"]["p99"].as_f64().unwrap() > 0.0);
}

#[test]
fn encrypted_server_key_and_sslkeylogfile() {
    use tessera::pki::{Passphrase, PrivateKey};
    let pki = Pki::new();
    let key = PrivateKey::load(&pki.server.key, None).unwrap();
    let encrypted = pki.dir.path().join("server-encrypted.key");
    key.save(&encrypted, Some(&Passphrase::new("correct horse".into())))
        .unwrap();
    let good = pki.dir.path().join("pass");
    std::fs::write(&good, "correct horse").unwrap();
    let bad = pki.dir.path().join("wrong");
    std::fs::write(&bad, "wrong horse").unwrap();
    let server_args = |pass: &std::path::Path| -> Vec<std::ffi::OsString> {
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--cert".into(),
            pki.server.chain.clone().into(),
            "--key".into(),
            encrypted.clone().into(),
            "--passphrase-file".into(),
            pass.into(),
        ]
    };
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server")).args(server_args(&bad)),
        b"",
        STEP,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("wrong passphrase"), "{}", text(&out.stderr));

    let args = server_args(&good);
    let server = Server::start(pki.dir.path(), &os(&args[2..]));
    let keylog = pki.dir.path().join("keys.log");
    let out = run(
        pki.client(server.addr, None)
            .env("SSLKEYLOGFILE", &keylog)
            .arg("secret"),
        b"",
        STEP,
    );
    assert_eq!(text(&out.stdout), "secret\n", "{}", text(&out.stderr));
    let log = std::fs::read_to_string(&keylog).unwrap();
    assert!(
        log.contains("CLIENT_TRAFFIC_SECRET_0 ") && log.contains("SERVER_HANDSHAKE_TRAFFIC_SECRET "),
        "{log}"
    );
    // Nothing secret in the client's or server's output.
    let secret_hex = log.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    assert!(!text(&out.stderr).contains(&secret_hex) && !server.log().contains(&secret_hex));
}

/// Connects to `server` with the library and returns the stream, after one echo.
async fn library_client(
    pki: &Pki,
    addr: std::net::SocketAddr,
) -> tessera::channel::ChannelStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config =
        std::sync::Arc::new(tessera::channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tessera::channel::ChannelStream::connect(config, "localhost", tcp, Default::default())
        .await
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    stream.flush().await.unwrap();
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    stream
}

/// Reads until the server ends the connection; true when it did so with close_notify.
async fn closed_cleanly(stream: &mut tessera::channel::ChannelStream<tokio::net::TcpStream>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    // rustls reports a close without close_notify as an UnexpectedEof error.
    stream.read_to_end(&mut rest).await.is_ok() && rest.is_empty()
}

#[test]
fn idle_timeout_and_shutdown_close_with_close_notify() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--idle-timeout".into(), "1".into()]);
    let mut server = Server::start(pki.dir.path(), &os(&args));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(STEP, async {
            // An idle client is closed after --idle-timeout, cleanly.
            let mut idle = library_client(&pki, server.addr).await;
            assert!(
                closed_cleanly(&mut idle).await,
                "no close_notify after the idle timeout"
            );

            // At SIGTERM an open connection gets close_notify and the server exits 0.
            let mut open = library_client(&pki, server.addr).await;
            server.signal("TERM");
            assert!(closed_cleanly(&mut open).await, "no close_notify at shutdown");
        })
        .await
        .unwrap();
    });
    assert_eq!(server.wait_exit().code(), Some(0));
    let log = server.log();
    assert!(log.contains("ended=\"idle for 1 s\""), "{log}");
    assert!(log.contains("ended=\"server shutdown\""), "{log}");
}

#[test]
fn shutdown_does_not_wait_for_a_client_that_stops_reading() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--shutdown-timeout".into(), "2".into()]);
    let mut server = Server::start(pki.dir.path(), &os(&args));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stuck = runtime.block_on(async {
        tokio::time::timeout(STEP, async {
            use tokio::io::AsyncWriteExt;
            // Write without reading until the writes stall: the server is then stuck sending
            // the echo to a client that does not read.
            let mut stuck = library_client(&pki, server.addr).await;
            let chunk = vec![7u8; 64 * 1024];
            loop {
                let write = async {
                    stuck.write_all(&chunk).await?;
                    stuck.flush().await
                };
                match tokio::time::timeout(std::time::Duration::from_millis(500), write).await {
                    Ok(result) => result.unwrap(),
                    Err(_) => break,
                }
            }
            stuck
        })
        .await
        .unwrap()
    });
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    drop(stuck);
    let log = server.log();
    // The connection ends for the shutdown (its close_notify cannot be delivered), rather than
    // being dropped when the drain time is up.
    assert!(log.contains("ended=\"server shutdown\""), "{log}");
    assert!(!log.contains("did not close in time"), "{log}");
}

#[test]
fn stdin_may_pause_longer_than_the_timeout() {
    use std::process::Stdio;
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_echo-client"))
        .arg("--connect")
        .arg(server.addr.to_string())
        .args(["--server-name", "localhost", "--timeout", "0.3", "--ca"])
        .arg(&pki.root)
        .arg("--cert")
        .arg(&pki.client1.chain)
        .arg("--key")
        .arg(&pki.client1.key)
        .env_remove("SSLKEYLOGFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    // The user pauses for longer than --timeout: nothing is owed by the server meanwhile.
    std::thread::sleep(Duration::from_millis(1200));
    stdin.write_all(b"second\n").unwrap();
    drop(stdin);
    let deadline = std::time::Instant::now() + STEP;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("echo-client did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "first\nsecond\n");
}
