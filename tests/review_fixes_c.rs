//! Review fixes (c): echo-client streams large inputs without deadlock, bulk traffic survives
//! key rotation every few KiB on both sides, a short transfer is an error, and bad values of
//! the echo tools' flags, allow-lists and signature bundles are explained in words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;
mod support;

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
            // Keep draining (bounded) so the socket is not reset under the client before it
            // has read the close.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
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

/// Runs `echo-server` with `args` (no listening expected) and returns (exit code, stderr).
fn server_usage(pki: &Pki, args: &[&str]) -> (Option<i32>, String) {
    let out = run(
        support::command("echo-server")
            .args(["--cert"])
            .arg(&pki.server.chain)
            .arg("--key")
            .arg(&pki.server.key)
            .arg("--client-ca")
            .arg(&pki.root)
            .args(args),
        b"",
        Duration::from_secs(20),
    );
    assert!(
        out.stdout.is_empty(),
        "echo-server {args:?} must not listen: {}",
        text(&out.stdout)
    );
    (out.status.code(), text(&out.stderr))
}

fn client_usage(args: &[&str]) -> (Option<i32>, String) {
    let out = run(
        support::command("echo-client")
            .args(["--ca", "/nonexistent/root.pem"])
            .args(args)
            .env_remove("SSLKEYLOGFILE"),
        b"",
        Duration::from_secs(20),
    );
    (out.status.code(), text(&out.stderr))
}

/// Rust's own parse messages, which say nothing about the flag or its range.
fn assert_no_library_text(stderr: &str) {
    for raw in ["invalid digit", "invalid float", "number too large", "cannot parse"] {
        assert!(!stderr.contains(raw), "library text {raw:?} in {stderr}");
    }
}

#[test]
fn numeric_flags_say_their_range_for_values_that_are_no_number() {
    let pki = Pki::new();
    let server_flags: &[(&str, &str)] = &[
        ("--max-conns", "expected a whole number from 1 to 1000000"),
        ("--max-handshakes", "expected a whole number from 1 to 1000000"),
        ("--rotate-messages", "expected a whole number 0 (never) or more"),
        ("--handshake-timeout", "expected a number of seconds from 0.01 to 3600"),
        ("--shutdown-timeout", "expected a number of seconds from 0.01 to 3600"),
        ("--reload-timeout", "expected a number of seconds from 0.01 to 3600"),
        ("--idle-timeout", "expected a number of seconds from 0.01 to 315360000"),
        (
            "--rotate-secs",
            "expected 0 (never) or a number of seconds from 0.001 to 315360000",
        ),
        (
            "--rotate-min-interval",
            "expected 0 (never) or a number of seconds from 0.001",
        ),
    ];
    for (flag, message) in server_flags {
        let bad: &[&str] = if message.contains("whole") {
            &["-5", "abc", "1.5", "99999999999999999999"]
        } else {
            &["abc", "1,5", "ten"]
        };
        for value in bad {
            let (code, stderr) = server_usage(&pki, &["--listen", "127.0.0.1:0", flag, value]);
            assert_eq!(code, Some(2), "echo-server {flag} {value}: {stderr}");
            assert!(stderr.starts_with("echo-server: error: "), "{stderr}");
            assert!(
                stderr.contains(flag) && stderr.contains(message),
                "echo-server {flag} {value}: {stderr}"
            );
            assert!(stderr.contains(&format!("not \"{value}\"")), "{stderr}");
            assert_no_library_text(&stderr);
        }
    }
    let client_flags: &[(&[&str], &str, &str)] = &[
        (
            &["--bench", "--conns"],
            "-5",
            "expected a whole number from 1 to 100000",
        ),
        (
            &["--bench", "--concurrency"],
            "x",
            "expected a whole number from 1 to 100000",
        ),
        (
            &["--timeout"],
            "soon",
            "expected a number of seconds from 0.01 to 315360000",
        ),
        (
            &["--connect-timeout"],
            "1s",
            "expected a number of seconds from 0.01 to 3600",
        ),
        (
            &["--rotate-messages"],
            "-1",
            "expected a whole number 0 (never) or more",
        ),
    ];
    for (flags, value, message) in client_flags {
        let mut args = vec!["--connect", "127.0.0.1:9"];
        args.extend_from_slice(flags);
        args.push(value);
        let (code, stderr) = client_usage(&args);
        assert_eq!(code, Some(2), "echo-client {args:?}: {stderr}");
        assert!(stderr.contains(message), "echo-client {args:?}: {stderr}");
        assert_no_library_text(&stderr);
    }
}

#[test]
fn bad_addresses_are_usage_errors_with_the_expected_form() {
    let pki = Pki::new();
    for address in [
        "127.0.0.1:99999",
        "garbage",
        "127.0.0.1:",
        ":4433",
        "[::1:4433",
        "bad host:1",
        "1.2.3.4:-1",
    ] {
        let (code, stderr) = server_usage(&pki, &["--listen", address]);
        assert_eq!(code, Some(2), "--listen {address}: {stderr}");
        assert!(
            stderr.contains("expected HOST:PORT such as 127.0.0.1:4433") && stderr.contains("port from 0 to 65535"),
            "--listen {address}: {stderr}"
        );
    }
    for address in ["127.0.0.1:0", "127.0.0.1:70000", "nohost"] {
        let (code, stderr) = client_usage(&["--server-name", "localhost", "--connect", address, "hi"]);
        assert_eq!(code, Some(2), "--connect {address}: {stderr}");
        assert!(stderr.contains("port from 1 to 65535"), "--connect {address}: {stderr}");
    }
}

#[test]
fn allow_entries_follow_the_san_grammar() {
    let pki = Pki::new();
    let cases: &[(&str, &str)] = &[
        ("dns:", "names nothing after \"dns:\""),
        ("ip:", "names nothing after \"ip:\""),
        ("ip:999.1.1.1", "after \"ip:\" give an IP address"),
        ("IP:1.2.3", "after \"ip:\" give an IP address"),
        ("dns:bad..name", "after \"dns:\" give a DNS name"),
        ("dns:under score", "after \"dns:\" give a DNS name"),
        ("email:nobody", "after \"email:\" give an e-mail address"),
        ("uri:no-scheme", "after \"uri:\" give a URI"),
        ("client\u{7}1", "contains control, bidi or invisible characters"),
        ("client1\n", "contains control, bidi or invisible characters"),
        ("evil\u{202e}gnp.exe", "contains control, bidi or invisible characters"),
        ("", "an --allow entry is empty"),
        ("   ", "an --allow entry is empty"),
    ];
    for (entry, message) in cases {
        let (code, stderr) = server_usage(&pki, &["--listen", "127.0.0.1:0", "--allow", entry]);
        assert_eq!(code, Some(2), "--allow {entry:?}: {stderr}");
        assert!(stderr.contains(message), "--allow {entry:?}: {stderr}");
    }
    // Good entries of every kind are still accepted (the server starts).
    let mut args = pki.server_args();
    for entry in [
        "client1",
        "client1, mallory",
        "dns:client2",
        "DNS:Client2.Example",
        "ip:127.0.0.1",
        "ip:::1",
        "email:a@example.org",
        "uri:spiffe://example.org/svc",
    ] {
        args.extend(["--allow".into(), entry.into()]);
    }
    let server = Server::start(pki.dir.path(), &os(&args));
    let out = run(
        &mut pki.client(server.addr, Some(&pki.client1)),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "client1 is allowed: {}", text(&out.stderr));
}

/// A signed module in `dir`: returns the path of its `.sig`.
fn signed_module(pki: &Pki) -> std::path::PathBuf {
    let dir = pki.dir.path();
    let ca_dir = dir.join("ca");
    let out = run(
        support::command("ca")
            .arg("--dir")
            .arg(ca_dir)
            .args([
                "issue",
                "--profile",
                "code-signing",
                "--key-type",
                "ed25519",
                "--name",
                "signer",
                "-q",
                "--out",
            ])
            .arg(dir.join("signer")),
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "ca issue: {}", text(&out.stderr));
    std::fs::write(dir.join("m.so"), b"module bytes\n").unwrap();
    let out = run(
        support::command("sign")
            .arg(dir.join("m.so"))
            .arg("--key")
            .arg(dir.join("signer.key"))
            .arg("--cert")
            .arg(dir.join("signer.chain.pem"))
            .arg("-q"),
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "sign: {}", text(&out.stderr));
    dir.join("m.so.sig")
}

fn verify_with(pki: &Pki, sig: &std::path::Path) -> (Option<i32>, String) {
    let out = run(
        support::command("verify")
            .arg(pki.dir.path().join("m.so"))
            .arg("--sig")
            .arg(sig)
            .arg("--root")
            .arg(&pki.root),
        b"",
        Duration::from_secs(60),
    );
    (out.status.code(), text(&out.stderr))
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let symbols: Vec<u32> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .map(|b| ALPHABET.iter().position(|a| *a == b).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for group in symbols.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, s)| acc | s << (18 - 6 * i));
        for i in 0..group.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn damaged_signature_bundles_are_described_in_words() {
    let pki = Pki::new();
    let sig = signed_module(&pki);
    let good = std::fs::read_to_string(&sig).unwrap();
    let (code, stderr) = verify_with(&pki, &sig);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = good.lines().collect();
    let (first, last) = (lines[0], lines[lines.len() - 1]);
    let body = base64_decode(&lines[1..lines.len() - 1].concat());
    // The last certificate's outer length byte claims a short form: the certificate is cut.
    let mut cut = body.clone();
    let at = (0..cut.len() - 200)
        .rev()
        .find(|&i| cut[i] == 0x30 && cut[i + 1] == 0x82)
        .unwrap();
    cut[at + 1] = 0x81;
    let reencoded = base64_encode(&cut);
    let rewrapped: Vec<String> = reencoded
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "framing",
            good.replace("-----END", "----END"),
            "its PEM armour is broken",
        ),
        (
            "no end",
            lines[..lines.len() - 1].join("\n"),
            "its PEM armour is broken",
        ),
        (
            "base64",
            format!("{first}\n!{}\n{last}\n", &lines[1..lines.len() - 1].join("\n")[1..]),
            "is not valid base64 (it holds '!' at character 1 of the block)",
        ),
        (
            "certificate",
            format!("{first}\n{}\n{last}\n", rewrapped.join("\n")),
            "is not a well-formed X.509 certificate (",
        ),
    ];
    for (name, damaged, message) in cases {
        let path = pki.dir.path().join(format!("{name}.sig"));
        std::fs::write(&path, damaged).unwrap();
        let (code, stderr) = verify_with(&pki, &path);
        assert_eq!(code, Some(3), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        for raw in [
            "malformedframing",
            "Invalid symbol",
            "Parsing requires",
            "bad PEM armour",
            "Mismatch",
            "missing END tag",
        ] {
            assert!(!stderr.contains(raw), "{name}: library text {raw:?} in {stderr}");
        }
    }
}
