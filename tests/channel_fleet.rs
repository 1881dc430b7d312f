//! echo-server in a fleet (issue 11): the PROXY protocol from a load balancer, and draining on
//! SIGTERM. The clients here are real TLS peers (the library's client) that write what a proxy
//! writes before their handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use channel_common::{Pki, STEP, Server};
use tessera::channel::{self, ChannelStream, RotationPolicy};

fn os(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(OsString::as_os_str).collect()
}

fn start(pki: &Pki, extra: &[&str]) -> Server {
    let mut args = pki.server_args();
    args.extend(extra.iter().map(OsString::from));
    Server::start(pki.dir.path(), &os(&args))
}

/// A v2 PROXY header for TCP over IPv4 (`command` 1) or LOCAL (`command` 0).
fn v2_header(command: u8, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    bytes.push(0x20 | command);
    match (command, source, destination) {
        (1, SocketAddr::V4(source), SocketAddr::V4(destination)) => {
            bytes.extend_from_slice(&[0x11, 0, 12]);
            bytes.extend_from_slice(&source.ip().octets());
            bytes.extend_from_slice(&destination.ip().octets());
            bytes.extend_from_slice(&source.port().to_be_bytes());
            bytes.extend_from_slice(&destination.port().to_be_bytes());
        }
        (1, SocketAddr::V6(source), SocketAddr::V6(destination)) => {
            bytes.extend_from_slice(&[0x21, 0, 36]);
            bytes.extend_from_slice(&source.ip().octets());
            bytes.extend_from_slice(&destination.ip().octets());
            bytes.extend_from_slice(&source.port().to_be_bytes());
            bytes.extend_from_slice(&destination.port().to_be_bytes());
        }
        _ => bytes.extend_from_slice(&[0x00, 0, 0]),
    }
    bytes
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Connects, writes `preamble`, then runs a TLS handshake as `client1` and echoes `message`.
/// Returns the echo, or the error as text.
async fn echo_after(pki: &Pki, addr: SocketAddr, preamble: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    let config = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(preamble).await.unwrap();
    let mut stream = ChannelStream::connect(config, "localhost", tcp, RotationPolicy::default())
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(message).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).await.map_err(|e| e.to_string())?;
    let _ = stream.close().await;
    Ok(echoed)
}

fn echo_after_blocking(pki: &Pki, addr: SocketAddr, preamble: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    runtime().block_on(async {
        tokio::time::timeout(STEP, echo_after(pki, addr, preamble, message))
            .await
            .unwrap()
    })
}

fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

#[test]
fn the_client_address_from_a_proxy_header_is_the_one_logged() {
    let pki = Pki::new();
    let server = start(&pki, &["--proxy-protocol"]);
    let frontend: SocketAddr = "127.0.0.1:443".parse().unwrap();
    // v2 (HAProxy), TCP over IPv4 and IPv6.
    let header = v2_header(1, "192.0.2.7:40001".parse().unwrap(), frontend);
    assert_eq!(
        echo_after_blocking(&pki, server.addr, &header, b"v2 hello").unwrap(),
        b"v2 hello"
    );
    server.wait_for_log("client=192.0.2.7:40001");
    let header = v2_header(1, "[2001:db8::7]:40002".parse().unwrap(), "[::1]:443".parse().unwrap());
    assert_eq!(
        echo_after_blocking(&pki, server.addr, &header, b"v2 six").unwrap(),
        b"v2 six"
    );
    server.wait_for_log("client=[2001:db8::7]:40002");
    // v1 (nginx's stream module).
    let line = b"PROXY TCP4 198.51.100.9 127.0.0.1 40003 443\r\n";
    assert_eq!(
        echo_after_blocking(&pki, server.addr, line, b"v1 hello").unwrap(),
        b"v1 hello"
    );
    let log = server.wait_for_log("client=198.51.100.9:40003");
    // The address is on the connection's lines, the identity check included.
    let connected: Vec<&str> = log.lines().filter(|l| l.contains("connected")).collect();
    assert_eq!(connected.len(), 3, "{log}");
    assert!(connected.iter().all(|l| l.contains("client=")), "{log}");
    assert!(warnings(&log).is_empty(), "{log}");
}

#[test]
fn local_and_unknown_headers_keep_the_socket_address_and_the_handshake_goes_on() {
    let pki = Pki::new();
    let server = start(&pki, &["--proxy-protocol"]);
    // HAProxy's check-ssl: LOCAL, then a TLS handshake.
    let local = v2_header(0, "0.0.0.0:0".parse().unwrap(), "0.0.0.0:0".parse().unwrap());
    assert_eq!(
        echo_after_blocking(&pki, server.addr, &local, b"checked").unwrap(),
        b"checked"
    );
    assert_eq!(
        echo_after_blocking(&pki, server.addr, b"PROXY UNKNOWN\r\n", b"unknown").unwrap(),
        b"unknown"
    );
    let log = server.wait_for_log("client=local");
    assert_eq!(log.matches("connected").count(), 2, "{log}");
    assert!(warnings(&log).is_empty(), "{log}");
}

#[test]
fn health_checks_that_close_after_the_header_or_at_once_leave_no_warning() {
    let pki = Pki::new();
    let server = start(&pki, &["--proxy-protocol", "--handshake-timeout", "5"]);
    runtime().block_on(async {
        // HAProxy's plain `check` with send-proxy-v2: LOCAL, then close; a TCP check: connect
        // and close; either may end with a reset.
        for preamble in [
            v2_header(0, "0.0.0.0:0".parse().unwrap(), "0.0.0.0:0".parse().unwrap()),
            Vec::new(),
            b"PROXY UNKNOWN\r\n".to_vec(),
        ] {
            for reset in [false, true] {
                let mut tcp = TcpStream::connect(server.addr).await.unwrap();
                tcp.write_all(&preamble).await.unwrap();
                if reset {
                    // SO_LINGER 0: the close sends a reset (a test, where blocking on drop is moot).
                    #[allow(deprecated)]
                    tcp.set_linger(Some(Duration::ZERO)).unwrap();
                } else {
                    tcp.shutdown().await.unwrap();
                    let mut rest = Vec::new();
                    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut rest)).await.unwrap();
                }
                drop(tcp);
            }
        }
    });
    // A real session afterwards proves the checks were handled (and gives the log a line).
    let header = v2_header(1, "192.0.2.8:40010".parse().unwrap(), "127.0.0.1:443".parse().unwrap());
    assert_eq!(
        echo_after_blocking(&pki, server.addr, &header, b"after").unwrap(),
        b"after"
    );
    let log = server.wait_for_log("connection closed");
    assert!(
        warnings(&log).is_empty(),
        "health checks must not be logged as errors:\n{log}"
    );
}

#[test]
fn a_listed_proxy_must_send_a_header() {
    let pki = Pki::new();
    let server = start(&pki, &["--proxy-protocol", "--proxy-from", "127.0.0.0/8"]);
    // A plain ClientHello from loopback: refused, in words.
    let error = echo_after_blocking(&pki, server.addr, b"", b"direct").unwrap_err();
    assert!(!error.is_empty());
    server.wait_for_log("no PROXY protocol header: the connection starts with a TLS handshake");
    // Malformed and oversized headers.
    let _ = echo_after_blocking(&pki, server.addr, b"PROXY TCP4 bogus 127.0.0.1 1 2\r\n", b"x").unwrap_err();
    server.wait_for_log("the PROXY protocol v1 header is malformed: the source address is missing or invalid");
    let mut huge = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let _ = echo_after_blocking(&pki, server.addr, &huge, b"x").unwrap_err();
    let log = server.wait_for_log("longer than the 2064 bytes accepted");
    assert!(!log.contains("connected"), "{log}");
}

#[test]
fn a_header_from_a_peer_that_is_not_a_listed_proxy_is_refused() {
    let pki = Pki::new();
    // Loopback is not listed: clients here connect directly.
    let server = start(&pki, &["--proxy-protocol", "--proxy-from", "10.0.0.0/8"]);
    assert_eq!(
        echo_after_blocking(&pki, server.addr, b"", b"direct").unwrap(),
        b"direct"
    );
    let header = v2_header(1, "192.0.2.66:1".parse().unwrap(), "127.0.0.1:443".parse().unwrap());
    assert!(echo_after_blocking(&pki, server.addr, &header, b"spoofed").is_err());
    let log = server.wait_for_log("a PROXY protocol header from 127.0.0.1, which is not a listed proxy (--proxy-from)");
    assert!(!log.contains("192.0.2.66"), "{log}");
    assert_eq!(log.matches("connected").count(), 1, "{log}");
}

#[test]
fn without_proxy_protocol_a_header_is_not_accepted() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let header = v2_header(1, "192.0.2.66:1".parse().unwrap(), "127.0.0.1:443".parse().unwrap());
    assert!(echo_after_blocking(&pki, server.addr, &header, b"spoofed").is_err());
    let log = server.wait_for_log("handshake failed");
    assert!(!log.contains("192.0.2.66"), "{log}");
}

#[test]
fn proxy_from_needs_proxy_protocol_and_a_network() {
    let pki = Pki::new();
    for (args, expected) in [
        (vec!["--proxy-from", "127.0.0.1"], "--proxy-protocol"),
        (
            vec!["--proxy-protocol", "--proxy-from", "loopback"],
            "is not an IPv4 or IPv6 address",
        ),
        (
            vec!["--proxy-protocol", "--proxy-from", "10.0.0.0/40"],
            "prefix length \"40\" is not 0 to 32",
        ),
        (vec!["--drain-timeout=-1"], "--drain-timeout"),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(pki.server_args())
            .args(&args);
        let out = channel_common::run(&mut command, b"", STEP);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A session that streams for a while: SIGTERM during it lets it finish (the drain), the port
/// closes at once, and the client reads every byte and then close_notify.
#[test]
fn sigterm_drains_open_sessions_and_closes_the_port_at_once() {
    let pki = Pki::new();
    let mut server = start(&pki, &["--drain-timeout", "20"]);
    let addr = server.addr;
    let rt = runtime();
    let config = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
    let mut stream = rt.block_on(async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        ChannelStream::connect(Arc::clone(&config), "localhost", tcp, RotationPolicy::default())
            .await
            .unwrap()
    });
    // A second connection still in its handshake (nothing sent yet) when the signal comes.
    let pending = rt.block_on(TcpStream::connect(addr)).unwrap();
    // Let the server accept it (a connection still in the listen queue would be reset when the
    // port closes).
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(async {
        stream.write_all(b"before ").await.unwrap();
        stream.flush().await.unwrap();
        let mut echoed = [0u8; 7];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"before ");
    });
    server.signal("TERM");
    server.wait_for_log("draining");
    // The port is closed: new connections are refused.
    let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(refused.is_err(), "the port must close at once on SIGTERM");
    // The handshake in progress may complete.
    let late = rt.block_on(async {
        ChannelStream::connect(Arc::clone(&config), "localhost", pending, RotationPolicy::default()).await
    });
    let mut late = late.expect("a connection accepted before SIGTERM completes its handshake while draining");
    let total: usize = 256 * 1024;
    let received = rt.block_on(async {
        let mut received = Vec::new();
        // Stream for a while after the signal, in pieces.
        for i in 0..16u8 {
            let piece = vec![i; total / 16];
            stream.write_all(&piece).await.unwrap();
            stream.flush().await.unwrap();
            let mut echoed = vec![0u8; piece.len()];
            stream.read_exact(&mut echoed).await.unwrap();
            received.extend_from_slice(&echoed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        late.write_all(b"late").await.unwrap();
        late.flush().await.unwrap();
        let mut echoed = [0u8; 4];
        late.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"late");
        late.close().await.unwrap();
        // Half-close: the server sends what is left, then close_notify.
        stream.write_all(b"last").await.unwrap();
        stream.close().await.unwrap();
        let mut rest = Vec::new();
        // read_to_end ends cleanly only on close_notify (rustls reports a bare EOF as an error).
        stream
            .read_to_end(&mut rest)
            .await
            .expect("close_notify from the server");
        received.extend_from_slice(&rest);
        received
    });
    let expected: Vec<u8> = (0..16u8).flat_map(|i| vec![i; total / 16]).chain(*b"last").collect();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "the echo was cut or altered");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains("drain timeout: closing"),
        "sessions ended on their own:\n{log}"
    );
}

#[test]
fn the_drain_timeout_ends_sessions_with_close_notify_and_a_second_signal_at_once() {
    let pki = Pki::new();
    let rt = runtime();
    let config = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
    let connect = |addr| {
        rt.block_on(async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut stream = ChannelStream::connect(Arc::clone(&config), "localhost", tcp, RotationPolicy::default())
                .await
                .unwrap();
            stream.write_all(b"hi").await.unwrap();
            stream.flush().await.unwrap();
            let mut echoed = [0u8; 2];
            stream.read_exact(&mut echoed).await.unwrap();
            stream
        })
    };
    // The deadline passes: close_notify, exit 0.
    let mut server = start(&pki, &["--drain-timeout", "1"]);
    let mut stream = connect(server.addr);
    let started = Instant::now();
    server.signal("TERM");
    let rest = rt.block_on(async {
        let mut rest = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut rest))
            .await
            .unwrap()
            .map(|_| rest)
    });
    assert_eq!(rest.expect("close_notify at the drain deadline"), b"");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the drain timeout"
    );
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(
        server
            .log()
            .contains("drain timeout: closing the remaining connections")
    );

    // A second signal: out at once, well before the deadline.
    let mut server = start(&pki, &["--drain-timeout", "60"]);
    let _stream = connect(server.addr);
    server.signal("TERM");
    server.wait_for_log("draining");
    let started = Instant::now();
    server.signal("INT");
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.log().contains("second SIGINT: closing every connection at once"));
}

/// `echo-server --listen 127.0.0.1:PORT`, killed when dropped.
struct FixedServer(std::process::Child);

impl Drop for FixedServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_on(pki: &Pki, port: u16) -> FixedServer {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(pki.server_args())
        .env_remove("SSLKEYLOGFILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on"), "{line:?}");
    FixedServer(child)
}

#[test]
fn retry_waits_for_a_server_that_is_not_up_yet() {
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut command = pki.client(addr, Some(&pki.client1));
    command.args(["--retry", "40", "--retry-backoff", "50", "one", "two", "three"]);
    let client = std::thread::spawn(move || channel_common::run(&mut command, b"", Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(400));
    let _server = start_on(&pki, port);
    let out = client.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    assert!(stderr.contains("reconnecting in"), "{stderr}");
    assert!(stderr.contains("every message was echoed once"), "{stderr}");
    // Every refused attempt is an attempt; only the one that connected is a reconnect, and
    // nothing had been sent before it.
    let summary = channel_common::RetrySummary::parse(&stderr);
    let warnings = stderr.matches("reconnecting in").count() as u64;
    assert_eq!(summary.attempts, warnings, "{stderr}");
    assert_eq!(summary.reconnects, 1, "{stderr}");
    assert_eq!(summary.resent, 0, "{stderr}");
    assert!(stderr.contains(&format!("(attempt {warnings} of 40)")), "{stderr}");
}

#[test]
fn a_bench_connection_refused_at_first_counts_attempts_not_exchanges_sent_again() {
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut command = pki.client(addr, Some(&pki.client1));
    command.args([
        "--bench",
        "--bytes",
        "1K",
        "--conns",
        "1",
        "--retry",
        "40",
        "--retry-backoff",
        "50",
        "--json",
    ]);
    let client = std::thread::spawn(move || channel_common::run(&mut command, b"", Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(400));
    let _server = start_on(&pki, port);
    let out = client.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let field = |name: &str| report[name].as_u64().unwrap_or_else(|| panic!("no {name}: {report}"));
    // Each refused connection was an attempt; the one that connected is the one reconnect; no
    // exchange had begun before it, so nothing was sent again.
    let warnings = stderr.matches("reconnecting in").count() as u64;
    assert!(warnings >= 1, "{stderr}");
    assert_eq!(field("attempts"), warnings, "{report}");
    assert_eq!(field("reconnects"), 1, "{report}");
    assert_eq!(field("resent"), 0, "{report}");
    assert_eq!(field("bytes_received"), 1024, "{report}");
}

/// A TLS echo server (the library's) that drops its first connection after reading the
/// second message without echoing it, and echoes everything on later connections. Returns
/// its address and every line it received, in order.
fn flaky_server(pki: &Pki) -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    use tokio::io::AsyncBufReadExt;
    let config = Arc::new(
        channel::server_config(&pki.server_settings(tessera::channel::Authorization::any_verified())).unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            for connection in 0..3 {
                let Ok(Ok((tcp, _))) = tokio::time::timeout(STEP, listener.accept()).await else {
                    return;
                };
                let Ok(mut stream) = ChannelStream::accept(Arc::clone(&config), tcp, RotationPolicy::default()).await
                else {
                    return;
                };
                let mut lines = 0;
                loop {
                    let mut line = Vec::new();
                    match stream.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let _ = tx.send(line.clone());
                    lines += 1;
                    if connection == 0 && lines == 2 {
                        break; // dropped: no echo, no close_notify
                    }
                    if stream.write_all(&line).await.is_err() || stream.flush().await.is_err() {
                        break;
                    }
                }
                if connection > 0 {
                    let _ = stream.close().await;
                }
            }
        });
    });
    (addr, rx)
}

#[test]
fn retry_sends_again_a_message_lost_mid_stream_and_prints_each_once() {
    let pki = Pki::new();
    let (addr, received) = flaky_server(&pki);
    let mut command = pki.client(addr, Some(&pki.client1));
    command.args(["--retry", "3", "--retry-backoff", "10", "one", "two", "three"]);
    let out = channel_common::run(&mut command, b"", STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    let lines: Vec<Vec<u8>> = received.try_iter().collect();
    // "two" reached the server twice (lost, then sent again); the output has it once.
    assert_eq!(
        lines,
        vec![
            b"one\n".to_vec(),
            b"two\n".to_vec(),
            b"two\n".to_vec(),
            b"three\n".to_vec()
        ]
    );
    assert!(stderr.contains("messages 2 to 3 will be sent"), "{stderr}");
    assert!(
        stderr.contains(
            "retry: 1 connection attempt after a failure, 1 reconnect (0 resumed their TLS session), 1 message \
             sent again; every message was echoed once, in order"
        ),
        "{stderr}"
    );

    // Without --retry the same loss is an error (exit 3), and nothing is printed twice.
    let (addr, _received) = flaky_server(&pki);
    let out = channel_common::run(
        pki.client(addr, Some(&pki.client1)).args(["one", "two", "three"]),
        b"",
        STEP,
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
}

#[test]
fn a_stream_cut_short_says_how_much_was_echoed() {
    let pki = Pki::new();
    let (addr, _received) = flaky_server(&pki);
    let out = channel_common::run(&mut pki.client(addr, Some(&pki.client1)), b"one\ntwo\nthree\n", STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
    assert!(
        stderr.contains("connection lost after 14 bytes sent, 4 echoed (on stdout)"),
        "{stderr}"
    );
}

#[test]
fn refusals_are_not_retried_and_retry_needs_messages() {
    let pki = Pki::new();
    let server = start(&pki, &[]);
    let started = Instant::now();
    // No client certificate: the server refuses; retrying would not change that.
    let out = channel_common::run(pki.client(server.addr, None).args(["--retry", "5", "hello"]), b"", STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("reconnecting"), "{stderr}");
    assert!(started.elapsed() < STEP);
    let out = channel_common::run(
        pki.client(server.addr, Some(&pki.client1)).args(["--retry", "5"]),
        b"x",
        STEP,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retry needs MESSAGE arguments"));
    for bad in [["--retry", "1001"], ["--retry-backoff", "0"]] {
        let out = channel_common::run(
            pki.client(server.addr, Some(&pki.client1)).args(bad).arg("m"),
            b"",
            STEP,
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}
