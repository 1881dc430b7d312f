//! Three echo-servers behind a real HAProxy (Debian `haproxy`, installed by `make deps`):
//! `mode tcp`, `balance leastconn`, health checks every 500 ms with `send-proxy-v2`, and a
//! `check-ssl` variant. These tests fail, never skip, when HAProxy cannot start. Everything is
//! on 127.0.0.1; every process is stopped by its PID when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use channel_common::{Pki, STEP, Server, echo_session, free_port};
use tessera::channel;

fn haproxy_binary() -> PathBuf {
    for candidate in ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"] {
        if Path::new(candidate).is_file() {
            return candidate.into();
        }
    }
    panic!("haproxy is not installed: run `make deps` (apt-get install haproxy)");
}

/// A running HAProxy, stopped by PID when dropped.
struct HaProxy {
    child: std::process::Child,
    frontend: SocketAddr,
    stats: PathBuf,
    log: PathBuf,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HaProxy {
    /// Starts HAProxy in front of `servers` with `server_options` on `default-server`, and
    /// waits until every server is UP.
    fn start(dir: &Path, servers: &[SocketAddr], server_options: &str) -> Self {
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats = dir.join("haproxy.sock");
        let mut config = format!(
            "global\n  stats socket {} level admin\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  \
             retries 2\n  option redispatch\n\
             frontend echo\n  bind {frontend}\n  default_backend fleet\n\
             backend fleet\n  balance leastconn\n  default-server {server_options}\n",
            stats.display()
        );
        for (i, server) in servers.iter().enumerate() {
            config.push_str(&format!("  server b{} {server}\n", i + 1));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &config).unwrap();
        let log = dir.join("haproxy.log");
        let check = std::process::Command::new(haproxy_binary())
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c refused the configuration:\n{config}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = std::process::Command::new(haproxy_binary())
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.err")).unwrap())
            .spawn()
            .expect("haproxy must start");
        let mut haproxy = Self {
            child,
            frontend,
            stats,
            log,
        };
        haproxy.wait_until(|rows| rows.len() == servers.len() && rows.iter().all(|r| r.status == "UP"));
        haproxy
    }

    /// `show stat` for the backend's servers.
    fn servers(&mut self) -> Vec<Row> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "haproxy exited ({status}): {}",
                std::fs::read_to_string(self.log.with_file_name("haproxy.err")).unwrap_or_default()
            );
        }
        let Ok(mut socket) = std::os::unix::net::UnixStream::connect(&self.stats) else {
            return Vec::new();
        };
        socket.set_read_timeout(Some(STEP)).unwrap();
        socket.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        socket.read_to_string(&mut csv).unwrap();
        csv.lines()
            .filter(|line| line.starts_with("fleet,b"))
            .map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                Row {
                    name: fields[1].to_string(),
                    sessions_total: fields[7].parse().unwrap_or(0),
                    status: fields[17].to_string(),
                }
            })
            .collect()
    }

    /// Polls the stats (bounded) until `done` holds.
    fn wait_until(&mut self, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rows = self.servers();
            if done(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy never reached the state wanted: {rows:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One server's row of `show stat`, as printed in failures.
#[derive(Debug)]
#[allow(dead_code)]
struct Row {
    name: String,
    sessions_total: u64,
    status: String,
}

fn start_servers(pki: &Pki, count: usize) -> Vec<Server> {
    (0..count)
        .map(|_| {
            let mut args = pki.server_args();
            args.push(OsString::from("--proxy-protocol"));
            let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
            Server::start(pki.dir.path(), &args)
        })
        .collect()
}

fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

const CHECKS: &str = "check inter 500ms fall 2 rise 2 send-proxy-v2";

#[test]
fn sessions_spread_over_three_servers_that_see_the_real_clients_with_mutual_tls_end_to_end() {
    let pki = Pki::new();
    let servers = start_servers(&pki, 3);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let mut haproxy = HaProxy::start(pki.dir.path(), &addrs, CHECKS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Six long sessions, opened one after the other and kept open: leastconn gives two each.
    let mut open = Vec::new();
    for _ in 0..6 {
        let (stream, local) = rt
            .block_on(async {
                tokio::time::timeout(STEP, echo_session(&pki, haproxy.frontend, Some(&pki.client1))).await
            })
            .unwrap()
            .unwrap();
        open.push((stream, local));
    }
    let rows = haproxy.servers();
    let counts: Vec<u64> = rows.iter().map(|r| r.sessions_total).collect();
    assert_eq!(counts, vec![2, 2, 2], "leastconn with long sessions: {rows:?}");
    // Each session is logged by a server with the client's own address (from the PROXY
    // header), not HAProxy's.
    let logs: Vec<String> = servers.iter().map(Server::log).collect();
    for (_, local) in &open {
        let needle = format!("client={local}");
        let holders = logs.iter().filter(|log| log.contains(&needle)).count();
        assert_eq!(holders, 1, "{needle} in exactly one server log:\n{logs:#?}");
    }
    // Mutual TLS is end to end: without a certificate, the backend refuses (HAProxy only
    // passes bytes).
    let refused = rt
        .block_on(async { tokio::time::timeout(STEP, echo_session(&pki, haproxy.frontend, None)).await })
        .unwrap();
    let error = refused.expect_err("a client without a certificate must be refused");
    assert!(
        error.contains("CertificateRequired") || error.contains("certificate_required"),
        "{error}"
    );
    let deadline = Instant::now() + STEP;
    while !servers
        .iter()
        .any(|s| s.log().contains("reason=no certificate was presented"))
    {
        assert!(Instant::now() < deadline, "no backend logged the refusal");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (mut stream, _) in open {
        rt.block_on(async {
            let _ = stream.close().await;
        });
    }
    // Health checks (a LOCAL header every 500 ms, then a close) leave no warning: only the
    // refusal above may be one.
    std::thread::sleep(Duration::from_millis(1500));
    for server in &servers {
        let log = server.log();
        let unexpected: Vec<&str> = warnings(&log)
            .into_iter()
            .filter(|line| !line.contains("no certificate was presented"))
            .collect();
        assert!(unexpected.is_empty(), "health checks were logged as problems:\n{log}");
    }
    assert!(haproxy.servers().iter().all(|r| r.status == "UP"));
}

#[test]
fn check_ssl_health_checks_send_local_then_a_handshake_and_keep_every_server_up() {
    let pki = Pki::new();
    let servers = start_servers(&pki, 3);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    // HAProxy presents a client certificate for its checks: the servers require one.
    let pem = pki.dir.path().join("haproxy-check.pem");
    let mut bundle = std::fs::read(&pki.client2.chain).unwrap();
    bundle.extend(std::fs::read(&pki.client2.key).unwrap());
    std::fs::write(&pem, bundle).unwrap();
    let options = format!(
        "check check-ssl verify none crt {} inter 500ms fall 2 rise 2 send-proxy-v2",
        pem.display()
    );
    let mut haproxy = HaProxy::start(pki.dir.path(), &addrs, &options);
    // A few check rounds: the servers saw LOCAL headers followed by TLS handshakes.
    std::thread::sleep(Duration::from_millis(1500));
    let rows = haproxy.servers();
    assert!(rows.iter().all(|r| r.status == "UP"), "{rows:?}");
    for server in &servers {
        let log = server.wait_for_log("client=local");
        assert!(log.contains("connected peer_identity=\"client2\""), "{log}");
        assert!(
            warnings(&log).is_empty(),
            "check-ssl health checks were logged as problems:\n{log}"
        );
    }
    // And the fleet serves clients.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut stream, local) = rt
        .block_on(async { tokio::time::timeout(STEP, echo_session(&pki, haproxy.frontend, Some(&pki.client1))).await })
        .unwrap()
        .unwrap();
    rt.block_on(async {
        let _ = stream.close().await;
    });
    let needle = format!("client={local}");
    let deadline = Instant::now() + STEP;
    while !servers.iter().any(|s| s.log().contains(&needle)) {
        assert!(Instant::now() < deadline, "no server logged {needle}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(haproxy);
}

/// `show stat` polled until `name` is DOWN; how long that took.
fn time_until_down(haproxy: &mut HaProxy, name: &str, since: Instant) -> Duration {
    haproxy.wait_until(|rows| rows.iter().any(|r| r.name == name && r.status.starts_with("DOWN")));
    since.elapsed()
}

#[test]
fn kill_9_of_a_server_mid_stream_loses_no_message_and_the_client_resumes_on_another() {
    let pki = Pki::new();
    let keys = pki.dir.path().join("fleet.keys");
    channel::new_ticket_key(&keys).unwrap();
    let mut server_args = pki.server_args();
    server_args.extend([
        OsString::from("--proxy-protocol"),
        OsString::from("--ticket-keys"),
        keys.clone().into(),
    ]);
    let args: Vec<&std::ffi::OsStr> = server_args.iter().map(OsString::as_os_str).collect();
    let mut servers: Vec<Server> = (0..3).map(|_| Server::start(pki.dir.path(), &args)).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let mut haproxy = HaProxy::start(pki.dir.path(), &addrs, CHECKS);

    // A numbered stream of messages, one at a time over one connection, with --retry.
    let messages: Vec<String> = (1..=4000).map(|n| format!("m{n:05}")).collect();
    let mut command = pki.client(haproxy.frontend, Some(&pki.client1));
    command
        .args(["--retry", "20", "--retry-backoff", "50"])
        .args(&messages)
        .env("RUST_LOG", "off");
    let client = std::thread::spawn(move || channel_common::run(&mut command, b"", Duration::from_secs(60)));

    // The server that took the client's session is killed as soon as it has it.
    let deadline = Instant::now() + STEP;
    let victim = loop {
        if let Some(index) = servers
            .iter()
            .position(|s| s.log().contains("connected peer_identity=\"client1\""))
        {
            break index;
        }
        assert!(Instant::now() < deadline, "no server got the client's session");
        std::thread::sleep(Duration::from_millis(5));
    };
    let killed_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &servers[victim].child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let victim_name = format!("b{}", victim + 1);
    let down_after = time_until_down(&mut haproxy, &victim_name, killed_at);
    // fall 2 × inter 500 ms, plus a check in flight and the polling.
    assert!(down_after < Duration::from_secs(5), "marked down after {down_after:?}");

    let out = client.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Every message echoed exactly once, in order.
    let expected: String = messages.iter().map(|m| format!("{m}\n")).collect();
    assert!(
        String::from_utf8_lossy(&out.stdout) == expected,
        "the output is not every message once, in order; stderr: {stderr}"
    );
    // The client reconnected, and the reconnect resumed its session on another server (the
    // key file is shared).
    let summary = channel_common::RetrySummary::parse(&stderr);
    assert!(summary.reconnects >= 1, "{summary:?}");
    assert!(summary.attempts >= summary.reconnects, "{summary:?}");
    assert!(summary.resumed >= 1, "the reconnect did not resume: {summary:?}");
    assert!(summary.resent <= summary.reconnects, "{summary:?}");
    let resumed_on_others = servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, s)| s.log().matches("resumed=true").count())
        .sum::<usize>();
    assert!(resumed_on_others >= 1, "no other server logged a resumed session");

    // The killed process is gone (reaped here), and a restarted server is back and serves.
    let killed = servers[victim].child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.signal(), Some(9));
    let restarted = Server::start_listening(pki.dir.path(), &addrs[victim].to_string(), &args);
    servers[victim] = restarted;
    haproxy.wait_until(|rows| rows.len() == 3 && rows.iter().all(|r| r.status == "UP"));
    let before = haproxy.servers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..3 {
        let (stream, _) = rt
            .block_on(async {
                tokio::time::timeout(STEP, echo_session(&pki, haproxy.frontend, Some(&pki.client2))).await
            })
            .unwrap()
            .unwrap();
        open.push(stream);
    }
    let after = haproxy.servers();
    let gained = |name: &str| {
        let total = |rows: &[Row]| rows.iter().find(|r| r.name == name).map_or(0, |r| r.sessions_total);
        total(&after) - total(&before)
    };
    assert_eq!(
        gained(&victim_name),
        1,
        "leastconn gives the restarted server its share: {after:?}"
    );
    for mut stream in open {
        rt.block_on(async {
            let _ = stream.close().await;
        });
    }
    // Every process this test started is stopped by its PID when dropped.
    let pids: Vec<u32> = servers
        .iter()
        .map(|s| s.child.id())
        .chain([haproxy.child.id()])
        .collect();
    drop(servers);
    drop(haproxy);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} was left behind"
        );
    }
}
