//! echo-client's verdicts in `--bench` and `--retry` (reviewer's findings): a handshake-only
//! bench hears the server's refusal, a refusal hidden behind a failed write is still a refusal
//! (exit 1, never retried), and a `--retry` that runs out says so with its summary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::ffi::{OsStr, OsString};

use channel_common::{Pki, RetrySummary, STEP, Server, run};

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

/// A loopback port nothing listens on.
fn closed_port() -> std::net::SocketAddr {
    format!("127.0.0.1:{}", channel_common::free_port()).parse().unwrap()
}

#[test]
fn a_handshake_only_bench_reports_the_servers_refusal() {
    let pki = Pki::new();
    let server = start_allowing_client1(&pki);
    for (leaf, alert, hint) in [
        (
            Some(&pki.client2),
            "access_denied",
            "the server's --allow list does not name it",
        ),
        (None, "certificate_required", "pass --cert and --key"),
    ] {
        for extra in [&[][..], &["--retry", "3", "--retry-backoff", "10"][..], &["--json"][..]] {
            let out = run(
                pki.client(server.addr, leaf)
                    .args(["--bench", "--bytes", "0", "--conns", "3"])
                    .args(extra),
                b"",
                STEP,
            );
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{alert} {extra:?}: {stderr}");
            assert!(
                stderr.contains("echo-client: error:") && stderr.contains(alert),
                "{alert} {extra:?}: {stderr}"
            );
            assert!(
                stderr.contains("echo-client: hint: ") && stderr.contains(hint),
                "{stderr}"
            );
            assert!(!stderr.contains("reconnecting"), "{stderr}");
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
    for (leaf, alert, hint) in [
        (
            Some(&pki.client2),
            "access_denied",
            "the server's --allow list does not name it",
        ),
        (None, "certificate_required", "pass --cert and --key"),
    ] {
        for extra in [&[][..], &["--retry", "5", "--retry-backoff", "10"][..]] {
            let out = run(
                pki.client(server.addr, leaf)
                    .args(["--bench", "--bytes", "64M", "--conns", "2"])
                    .args(extra),
                b"",
                STEP,
            );
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{alert} {extra:?}: {stderr}");
            assert!(stderr.contains(alert), "{alert} {extra:?}: {stderr}");
            assert!(
                stderr.contains("echo-client: hint:") && stderr.contains(hint),
                "{stderr}"
            );
            assert!(!stderr.contains("reconnecting"), "a refusal was retried: {stderr}");
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
