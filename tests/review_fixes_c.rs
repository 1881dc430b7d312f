//! Review fixes (c): echo-client streams large inputs without deadlock, bulk traffic survives
//! key rotation every few KiB on both sides, a short transfer is an error, and bad values of
//! the echo tools' flags, allow-lists and signature bundles are explained in words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use channel_common::{Pki, Server, run};
use sha3::{Digest, Sha3_256};

fn os(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Deterministic bytes that do not repeat with a short period (a lost or reordered block shows).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The number after `key=` on the server's `connection closed` line(s), summed.
fn closed_field(log: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("connection closed"))
        .map(|line| {
            let start = line
                .find(&format!("{key}="))
                .unwrap_or_else(|| panic!("no {key} in {line}"))
                + key.len()
                + 1;
            line[start..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// Waits (bounded) for the server to log `count` closed connections.
fn wait_closed(server: &Server, count: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if log.matches("connection closed").count() >= count {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server never closed {count} connections:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const BULK: usize = 64 * 1024 * 1024;

#[test]
fn stream_mode_echoes_64_mib_of_stdin_exactly() {
    let pki = Pki::new();
    let server = Server::start(pki.dir.path(), &os(&pki.server_args()));
    let input = noise(BULK);
    let started = std::time::Instant::now();
    let out = run(
        &mut pki.client(server.addr, Some(&pki.client1)),
        &input,
        Duration::from_secs(240),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), BULK, "stderr: {}", text(&out.stderr));
    assert_eq!(
        Sha3_256::digest(&out.stdout),
        Sha3_256::digest(&input),
        "the echo differs from the input"
    );
    assert!(started.elapsed() < Duration::from_secs(240));
    let log = wait_closed(&server, 1);
    assert!(log.contains("ended=\"peer closed\""), "{log}");
}

/// 64 MiB through `--bench` with rotation every `server` bytes on the server and every `client`
/// bytes on the client: everything comes back, both sides rotate, nobody breaks the protocol.
fn bulk_with_rotation(server_bytes: &str, client_bytes: Option<&str>) {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.extend(["--rotate-bytes".into(), server_bytes.into()]);
    let server = Server::start(pki.dir.path(), &os(&args));
    let mut client = pki.client(server.addr, Some(&pki.client1));
    client.args(["--bench", "--bytes", "64M", "--json"]);
    if let Some(bytes) = client_bytes {
        client.args(["--rotate-bytes", bytes]);
    }
    let out = run(&mut client, b"", Duration::from_secs(240));
    let log = wait_closed(&server, 1);
    assert_eq!(
        out.status.code(),
        Some(0),
        "server {server_bytes}, client {client_bytes:?}: stderr {}\nserver log: {log}",
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes_sent"], BULK as u64, "{report}");
    assert_eq!(report["bytes_received"], BULK as u64, "{report}");
    if client_bytes.is_some() {
        assert!(report["rotations"].as_u64().unwrap() > 0, "{report}");
    }
    assert!(log.contains("ended=\"peer closed\""), "{log}");
    assert!(!log.contains("broke the TLS protocol"), "{log}");
    assert_eq!(closed_field(&log, "bytes_in"), BULK as u64, "{log}");
    assert_eq!(closed_field(&log, "bytes_out"), BULK as u64, "{log}");
    assert!(closed_field(&log, "rotations") > 0, "{log}");
}

#[test]
fn bulk_survives_server_rotation_every_4k() {
    bulk_with_rotation("4K", None);
}

#[test]
fn bulk_survives_rotation_every_4k_on_both_sides() {
    bulk_with_rotation("4K", Some("4K"));
}

#[test]
fn bulk_survives_rotation_every_16k_on_both_sides() {
    bulk_with_rotation("16K", Some("16K"));
}

#[test]
fn bulk_survives_rotation_every_64k_on_both_sides() {
    bulk_with_rotation("65536", Some("64K"));
}

#[test]
fn bulk_survives_client_rotation_every_4k() {
    bulk_with_rotation("64M", Some("4K"));
}

/// A TLS server that echoes `limit` bytes, then closes cleanly (close_notify): the client sees
/// a short echo that is no transport error.
fn short_echo_server(pki: &Pki, limit: u64) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use tessera::channel::{self, Authorization, ChannelStream, RotationPolicy};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config =
        std::sync::Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut stream = ChannelStream::accept(config, tcp, RotationPolicy::never())
                .await
                .unwrap();
            let mut echoed = 0u64;
            let mut buf = vec![0u8; 16 * 1024];
            while echoed < limit {
                let want = usize::try_from(limit - echoed).unwrap().min(buf.len());
                let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf[..want]))
                    .await
                    .unwrap()
                    .unwrap();
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).await.unwrap();
                echoed += n as u64;
            }
            let _ = stream.close().await;
            // Give the client time to read the close before the socket goes.
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
    });
    (addr, handle)
}

#[test]
fn a_short_bench_transfer_is_an_error_with_the_counts() {
    let pki = Pki::new();
    let (addr, handle) = short_echo_server(&pki, 1 << 20);
    let out = run(
        pki.client(addr, Some(&pki.client1))
            .args(["--bench", "--bytes", "4M", "--json"]),
        b"",
        Duration::from_secs(60),
    );
    handle.join().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout {} stderr {stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains("after 1048576 of the 4194304 bytes expected"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no report for a failed run: {}",
        text(&out.stdout)
    );
}

#[test]
fn a_short_stream_echo_is_an_error_with_the_counts() {
    let pki = Pki::new();
    let (addr, handle) = short_echo_server(&pki, 1000);
    let out = run(
        &mut pki.client(addr, Some(&pki.client1)),
        &noise(5000),
        Duration::from_secs(60),
    );
    handle.join().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr {stderr}");
    assert_eq!(out.stdout.len(), 1000);
}
