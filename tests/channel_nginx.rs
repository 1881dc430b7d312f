//! Two echo-servers behind a real nginx (Debian `nginx` with `libnginx-mod-stream`, installed by
//! `make deps`), configured as docs/channel.md ("Running a fleet") shows: the `stream` module,
//! `least_conn`, `proxy_protocol on` (PROXY v1, the only version nginx sends). The test fails,
//! never skips, when nginx cannot start. Everything is on 127.0.0.1; nginx and the servers are
//! stopped by their PIDs when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use channel_common::{Pki, STEP, Server, echo_session, free_port};

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(candidate).is_file() {
            return candidate.into();
        }
    }
    panic!("nginx is not installed: run `make deps` (apt-get install nginx libnginx-mod-stream)");
}

/// Debian's dynamic `stream` module.
fn stream_module() -> PathBuf {
    let module = PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so");
    assert!(
        module.is_file(),
        "nginx's stream module is missing: run `make deps` (apt-get install libnginx-mod-stream)"
    );
    module
}

/// A running nginx (master in the foreground), stopped by PID when dropped.
struct Nginx {
    child: std::process::Child,
    frontend: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master stops its workers, waits for them and
        // exits. A SIGKILL to the master alone would leave the workers running, as init's.
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Not gone in time: the workers by their parent (still the master), then the master.
        let _ = std::process::Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx with the configuration of docs/channel.md in front of `servers`, and waits
    /// (bounded) until its frontend accepts connections.
    fn start(dir: &Path, servers: &[SocketAddr]) -> Self {
        let frontend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut upstream = String::new();
        for server in servers {
            upstream.push_str(&format!("    server {server} max_fails=2 fail_timeout=5s;\n"));
        }
        let config = format!(
            "load_module {module};\n\
             daemon off;\nmaster_process on;\nworker_processes 1;\n\
             pid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log info;\n\
             events {{ worker_connections 64; }}\n\
             stream {{\n  upstream fleet {{\n    least_conn;\n{upstream}  }}\n\
             \x20 server {{\n    listen {frontend};\n    proxy_pass fleet;\n    proxy_protocol on;\n  }}\n}}\n",
            module = stream_module().display(),
            dir = dir.display(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, &config).unwrap();
        let nginx = |args: &[&str]| {
            let mut command = std::process::Command::new(nginx_binary());
            command
                .args(["-e", "stderr", "-p"])
                .arg(dir)
                .arg("-c")
                .arg(&path)
                .args(args);
            command
        };
        let check = nginx(&["-t"]).output().unwrap();
        assert!(
            check.status.success(),
            "nginx -t refused the configuration:\n{config}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = nginx(&[])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("nginx.err")).unwrap())
            .spawn()
            .expect("nginx must start");
        let mut nginx = Self { child, frontend };
        let deadline = Instant::now() + STEP;
        while std::net::TcpStream::connect(frontend).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(dir.join("nginx.err")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "nginx never listened on {frontend}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // That probe connection reached a backend as an empty PROXY v1 connection; wait until
        // it is over so that least_conn starts from zero.
        std::thread::sleep(Duration::from_millis(300));
        nginx.frontend = frontend;
        nginx
    }
}

#[test]
fn behind_nginx_stream_with_proxy_protocol_servers_see_the_real_clients_and_mutual_tls_is_end_to_end() {
    let pki = Pki::new();
    let servers: Vec<Server> = (0..2)
        .map(|_| {
            let mut args = pki.server_args();
            args.extend([
                OsString::from("--proxy-protocol"),
                OsString::from("--proxy-from"),
                OsString::from("127.0.0.1"),
            ]);
            let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
            Server::start(pki.dir.path(), &args)
        })
        .collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let nginx = Nginx::start(pki.dir.path(), &addrs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Four long sessions, one after the other, kept open.
    let mut open = Vec::new();
    for _ in 0..4 {
        let (stream, local) = rt
            .block_on(async {
                tokio::time::timeout(STEP, echo_session(&pki, nginx.frontend, Some(&pki.client1))).await
            })
            .unwrap()
            .unwrap();
        open.push((stream, local));
    }
    // Each session is logged by exactly one server with the client's own address and port
    // (from nginx's PROXY v1 header; nginx's own connection has another port), and
    // least_conn gives each server two.
    let logs: Vec<String> = servers.iter().map(Server::log).collect();
    let mut per_server = vec![0usize; servers.len()];
    for (_, local) in &open {
        let needle = format!("client={local}");
        let holders: Vec<usize> = (0..logs.len()).filter(|&i| logs[i].contains(&needle)).collect();
        assert_eq!(holders.len(), 1, "{needle} in exactly one server log:\n{logs:#?}");
        per_server[holders[0]] += 1;
    }
    assert_eq!(per_server, vec![2, 2], "least_conn with long sessions:\n{logs:#?}");
    // Without a client certificate the backend refuses: nginx only passes bytes.
    let refused = rt
        .block_on(async { tokio::time::timeout(STEP, echo_session(&pki, nginx.frontend, None)).await })
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
    drop(nginx);
}

#[test]
fn a_server_that_requires_the_header_refuses_a_client_that_bypasses_nginx() {
    let pki = Pki::new();
    let mut args = pki.server_args();
    args.push(OsString::from("--proxy-protocol"));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    let server = Server::start(pki.dir.path(), &args);
    let nginx = Nginx::start(pki.dir.path(), &[server.addr]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Through nginx: served.
    let (mut stream, local) = rt
        .block_on(async { tokio::time::timeout(STEP, echo_session(&pki, nginx.frontend, Some(&pki.client1))).await })
        .unwrap()
        .unwrap();
    rt.block_on(async {
        let _ = stream.close().await;
    });
    server.wait_for_log(&format!("client={local}"));
    // Straight to the server, no header: refused before any TLS.
    let direct = rt
        .block_on(async { tokio::time::timeout(STEP, echo_session(&pki, server.addr, Some(&pki.client1))).await })
        .unwrap();
    assert!(direct.is_err(), "a connection without a PROXY header must be refused");
    server
        .wait_for_log("connection refused reason=no PROXY protocol header: the connection starts with a TLS handshake");
    drop(nginx);
}
