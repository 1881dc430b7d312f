//! echo-client's verdicts in `--bench` and `--retry` (reviewer's findings): a handshake-only
//! bench hears the server's refusal, a refusal hidden behind a failed write is still a refusal
//! (exit 1, never retried), and a `--retry` that runs out says so with its summary. Also
//! echo-server's smaller ones: the ticket keys logged on SIGHUP, an empty key file path and a
//! `--proxy-from` with host bits set as usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::ffi::{OsStr, OsString};

use channel_common::{Leaf, Pki, RetrySummary, STEP, Server, run};

fn os(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(OsString::as_os_str).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// echo-server admitting `client1` only.
fn start_allowing_client1(pki: &Pki) -> Server {
    let mut args = pki.server_args();
    args.extend(["--allow".into(), "client1".into()]);
    Server::start(pki.dir.path(), &os(&args))
}

/// The two refusals of [`start_allowing_client1`]'s server: a client certificate not on the
/// allow list, and none at all; each with the alert and the hint echo-client shows.
fn refusals(pki: &Pki) -> [(Option<&Leaf>, &'static str, &'static str); 2] {
    [
        (
            Some(&pki.client2),
            "access_denied",
            "the server's --allow list does not name it",
        ),
        (None, "certificate_required", "pass --cert and --key"),
    ]
}

/// A refused run: exit 1, the alert and its hint on stderr, and no retry.
#[track_caller]
fn assert_refused(stderr: &str, code: Option<i32>, alert: &str, hint: &str, what: &str) {
    assert_eq!(code, Some(1), "{what}: {stderr}");
    assert!(
        stderr.contains("echo-client: error:") && stderr.contains(alert),
        "{what}: {stderr}"
    );
    assert!(
        stderr.contains("echo-client: hint: ") && stderr.contains(hint),
        "{what}: {stderr}"
    );
    assert!(
        !stderr.contains("reconnecting"),
        "a refusal was retried ({what}): {stderr}"
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> std::net::SocketAddr {
    format!("127.0.0.1:{}", channel_common::free_port()).parse().unwrap()
}

#[test]
fn a_handshake_only_bench_reports_the_servers_refusal() {
    let pki = Pki::new();
    let server = start_allowing_client1(&pki);
    for (leaf, alert, hint) in refusals(&pki) {
        for extra in [&[][..], &["--retry", "3", "--retry-backoff", "10"][..], &["--json"][..]] {
            let out = run(
                pki.client(server.addr, leaf)
                    .args(["--bench", "--bytes", "0", "--conns", "3"])
                    .args(extra),
                b"",
                STEP,
            );
            let stderr = text(&out.stderr);
            assert_refused(&stderr, out.status.code(), alert, hint, &format!("{alert} {extra:?}"));
            assert!(
                out.stdout.is_empty(),
                "no report for a refused run: {}",
                text(&out.stdout)
            );
        }
    }
    // An admitted client still benchmarks its handshakes, and the server saw each close.
    let out = run(
        pki.client(server.addr, Some(&pki.client1))
            .args(["--bench", "--bytes", "0", "--conns", "3", "--json"]),
        b"",
        STEP,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["connections"].as_u64(), Some(3), "{report}");
    assert_eq!(report["bytes_received"].as_u64(), Some(0), "{report}");
}

#[test]
fn a_refusal_behind_a_failed_write_is_a_refusal_and_never_retried() {
    let pki = Pki::new();
    let server = start_allowing_client1(&pki);
    for (leaf, alert, hint) in refusals(&pki) {
        for extra in [&[][..], &["--retry", "5", "--retry-backoff", "10"][..]] {
            let out = run(
                pki.client(server.addr, leaf)
                    .args(["--bench", "--bytes", "64M", "--conns", "2"])
                    .args(extra),
                b"",
                STEP,
            );
            let stderr = text(&out.stderr);
            assert_refused(&stderr, out.status.code(), alert, hint, &format!("{alert} {extra:?}"));
            if !extra.is_empty() {
                assert_eq!(RetrySummary::parse(&stderr).attempts, 0, "{stderr}");
            }
        }
    }
    // Message mode, with large messages (an argument holds at most 128 KiB).
    let big = "x".repeat(120 * 1024);
    let out = run(
        pki.client(server.addr, Some(&pki.client2))
            .args(["--retry", "5", "--retry-backoff", "10"])
            .args(std::iter::repeat_n(&big, 8)),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("access_denied"), "{stderr}");
    assert!(!stderr.contains("reconnecting"), "{stderr}");
}

/// Stdin streaming mode: a refused client whose write breaks first still exits 1 with the
/// server's alert, and says nothing of a lost connection; an admitted one gets its bytes back.
#[test]
fn a_refusal_behind_a_failed_write_in_stream_mode_is_a_refusal() {
    let pki = Pki::new();
    let server = start_allowing_client1(&pki);
    let input: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for (leaf, alert, hint) in refusals(&pki) {
        for round in 0..3 {
            let out = run(&mut pki.client(server.addr, leaf), &input, STEP);
            let stderr = text(&out.stderr);
            assert_refused(
                &stderr,
                out.status.code(),
                alert,
                hint,
                &format!("{alert} round {round}"),
            );
            assert!(!stderr.contains("connection lost"), "{alert} round {round}: {stderr}");
            assert!(out.stdout.is_empty(), "{alert}: nothing is echoed to a refused client");
        }
    }
    let out = run(&mut pki.client(server.addr, Some(&pki.client1)), &input, STEP);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == input, "the admitted stream came back whole");
}

#[test]
fn a_retry_that_runs_out_says_so_with_its_summary() {
    let pki = Pki::new();
    let addr = closed_port();
    let out = run(
        pki.client(addr, Some(&pki.client1))
            .args(["--retry", "3", "--retry-backoff", "10", "a", "b"]),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "echo-client: error: gave up after 3 connection attempts (--retry 3); the last one failed: cannot connect"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("reconnecting in").count(), 3, "{stderr}");
    let summary = RetrySummary::parse(&stderr);
    assert_eq!(
        (summary.attempts, summary.reconnects, summary.resent),
        (3, 0, 0),
        "{stderr}"
    );
    assert!(stderr.contains("; messages 1 to 2 were not echoed"), "{stderr}");
    assert!(out.stdout.is_empty());

    // The same for a benchmark; its report would have been on stdout.
    let out = run(
        pki.client(addr, Some(&pki.client1)).args([
            "--bench",
            "--bytes",
            "1K",
            "--retry",
            "2",
            "--retry-backoff",
            "10",
            "--json",
        ]),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("gave up after 2 connection attempts (--retry 2)"),
        "{stderr}"
    );
    assert_eq!(RetrySummary::parse(&stderr).attempts, 2, "{stderr}");
    assert!(stderr.contains("the benchmark did not complete"), "{stderr}");
    assert!(out.stdout.is_empty());

    // -q: the error, no summary.
    let out = run(
        pki.client(addr, Some(&pki.client1))
            .args(["-q", "--retry", "1", "--retry-backoff", "10", "a"]),
        b"",
        STEP,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("gave up after 1 connection attempt (--retry 1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("echo-client: retry:"), "{stderr}");
}

fn echo_server(args: &[&str]) -> std::process::Output {
    run(
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server")).args(args),
        b"",
        STEP,
    )
}

/// `echo-server --new-ticket-key FILE`: the new sealing key's name.
fn new_ticket_key(path: &std::path::Path) -> String {
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .arg("--new-ticket-key")
            .arg(path),
        b"",
        STEP,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let name = stdout
        .split("new sealing key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key name: {stdout}"));
    name.to_string()
}

#[test]
fn sighup_logs_the_ticket_keys_in_force() {
    let pki = Pki::new();
    let keys = pki.dir.path().join("tickets.keys");
    let first = new_ticket_key(&keys);
    let mut args = pki.server_args();
    args.extend(["--ticket-keys".into(), keys.clone().into()]);
    let server = Server::start(pki.dir.path(), &os(&args));
    let log = server.wait_for_log("session tickets on");
    assert!(log.contains(&format!("keys=1 sealing_key={first}")), "{log}");
    let second = new_ticket_key(&keys);
    assert_ne!(first, second);
    server.signal("HUP");
    let log = server.wait_for_log("configuration reloaded");
    let line = log
        .lines()
        .find(|line| line.contains("configuration reloaded"))
        .unwrap();
    assert!(line.contains("generation=1"), "{line}");
    assert!(line.contains(&format!("keys=2 sealing_key={second}")), "{line}");
    let secret = std::fs::read_to_string(&keys).unwrap();
    for key in secret.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        assert!(!log.contains(key.trim()), "a key reached the log: {log}");
    }
}

#[test]
fn an_empty_key_file_path_and_a_network_with_host_bits_are_usage_errors() {
    for flag in ["--new-ticket-key", "--ticket-keys"] {
        let out = echo_server(&[flag, "", "--listen", "127.0.0.1:0", "--cert", "c.pem", "--key", "k.pem"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("an empty path cannot be a ticket key file"), "{stderr}");
    }
    let out = echo_server(&["--new-ticket-key", ""]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = echo_server(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "c.pem",
        "--key",
        "k.pem",
        "--proxy-protocol",
        "--proxy-from",
        "10.0.0.1/8",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--proxy-from") && stderr.contains("host bits set") && stderr.contains("10.0.0.0/8"),
        "{stderr}"
    );
}
