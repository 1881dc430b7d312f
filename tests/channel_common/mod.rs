//! Shared fixtures for the channel tests: a fresh PKI per test, issued by Tessera's own CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile, RevocationReason, SubjectAltName};
use tessera::channel::{Authorization, ClientSettings, Credentials, ServerSettings, TlsOptions};
use tessera::pki::{TrustStore, pem};

/// A time limit for every network step in the tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Files of one issued leaf.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub chain: PathBuf,
    pub key: PathBuf,
    pub serial: String,
}

impl Leaf {
    pub fn credentials(&self) -> Credentials {
        Credentials::load(&self.chain, &self.key, None).unwrap()
    }
}

/// A root CA with a server certificate and several client certificates, and a foreign CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub crl: PathBuf,
    pub server: Leaf,
    /// A second server certificate, for reload tests.
    pub server2: Leaf,
    pub client1: Leaf,
    pub client2: Leaf,
    pub revoked: Leaf,
    pub expired: Leaf,
    /// A client certificate from another CA.
    pub foreign_client: Leaf,
    /// A client whose one common name is "client1, mallory" (not client1).
    pub comma: Leaf,
    /// A server certificate from another CA.
    pub foreign_server: Leaf,
    pub foreign_root: PathBuf,
    /// A CRL of the root whose nextUpdate has passed (issued three days ago, for one day).
    pub stale_crl: PathBuf,
    /// A server certificate that expired yesterday.
    pub expired_server: Leaf,
    /// A server certificate valid from tomorrow.
    pub future_server: Leaf,
    /// A client whose common name holds a right-to-left override: "evil\u{202e}gnp.exe".
    pub bidi: Leaf,
}

/// The common name of [`Pki::bidi`].
pub const BIDI_NAME: &str = "evil\u{202e}gnp.exe";

fn issue(ca: &CertificateAuthority, request: IssueRequest, now: OffsetDateTime, prefix: &Path) -> Leaf {
    let issued = ca.issue(&request, now).unwrap();
    let files = issued.write(prefix, None).unwrap();
    Leaf {
        chain: files.chain,
        key: files.key.unwrap(),
        serial: issued.info.serial.to_string(),
    }
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let start = now - time::Duration::days(10);
        let ca =
            CertificateAuthority::init(&dir.path().join("ca"), &InitRequest::new("Test Root"), None, start).unwrap();
        let server_request = || {
            IssueRequest::new(Profile::Server, "localhost").with_sans([
                SubjectAltName::Dns("localhost".into()),
                SubjectAltName::Ip("127.0.0.1".parse::<IpAddr>().unwrap()),
            ])
        };
        let server = issue(&ca, server_request(), now, &dir.path().join("server"));
        let server2 = issue(&ca, server_request(), now, &dir.path().join("server2"));
        let client = |name: &str| IssueRequest::new(Profile::Client, name);
        let client1 = issue(&ca, client("client1"), now, &dir.path().join("client1"));
        let client2 = issue(&ca, client("client2"), now, &dir.path().join("client2"));
        let comma = issue(&ca, client("client1, mallory"), now, &dir.path().join("comma"));
        // Any serial: one whose first octet is below 0x10 is revoked like any other (the
        // database's serial lookup keeps its leading zero nibble; see `ca::database`'s tests).
        let revoked = issue(&ca, client("revoked"), now, &dir.path().join("revoked"));
        let expired = issue(
            &ca,
            client("expired").with_lifetime(Duration::from_secs(3600)),
            now - time::Duration::days(2),
            &dir.path().join("expired"),
        );
        let crl_der = ca
            .revoke(
                &revoked.serial.parse().unwrap(),
                RevocationReason::KeyCompromise,
                now,
                Duration::from_secs(86_400),
            )
            .unwrap();
        let crl = dir.path().join("crl.pem");
        std::fs::write(&crl, pem::to_pem("X509 CRL", &crl_der)).unwrap();
        let root = dir.path().join("root.pem");
        std::fs::write(&root, pem::to_pem(pem::CERTIFICATE, ca.root())).unwrap();

        let foreign = CertificateAuthority::init(
            &dir.path().join("foreign"),
            &InitRequest::new("Foreign Root"),
            None,
            start,
        )
        .unwrap();
        let foreign_client = issue(&foreign, client("client1"), now, &dir.path().join("foreign-client"));
        let foreign_server = issue(&foreign, server_request(), now, &dir.path().join("foreign-server"));
        let foreign_root = dir.path().join("foreign-root.pem");
        std::fs::write(&foreign_root, pem::to_pem(pem::CERTIFICATE, foreign.root())).unwrap();

        let expired_server = issue(
            &ca,
            server_request().with_lifetime(Duration::from_secs(3600)),
            now - time::Duration::days(2),
            &dir.path().join("expired-server"),
        );
        let future_server = issue(
            &ca,
            server_request().with_lifetime(Duration::from_secs(86_400 * 7)),
            now + time::Duration::days(1),
            &dir.path().join("future-server"),
        );
        let bidi = issue(&ca, client(BIDI_NAME), now, &dir.path().join("bidi"));
        let stale_der = ca
            .write_crl(now - time::Duration::days(3), Duration::from_secs(86_400))
            .unwrap();
        let stale_crl = dir.path().join("stale-crl.pem");
        std::fs::write(&stale_crl, pem::to_pem("X509 CRL", &stale_der)).unwrap();
        Self {
            dir,
            root,
            crl,
            server,
            server2,
            client1,
            client2,
            revoked,
            expired,
            foreign_client,
            comma,
            foreign_server,
            foreign_root,
            stale_crl,
            expired_server,
            future_server,
            bidi,
        }
    }

    /// Roots plus the CRL.
    pub fn trust(&self) -> Arc<TrustStore> {
        let mut store = TrustStore::from_root_file(&self.root).unwrap();
        store.add_crl_file(&self.crl).unwrap();
        Arc::new(store)
    }

    pub fn server_settings(&self, authorization: Authorization) -> ServerSettings {
        ServerSettings {
            credentials: self.server.credentials(),
            client_trust: Some(self.trust()),
            authorization,
            crl_next_update: None,
            options: TlsOptions::default(),
            session_tickets: None,
        }
    }

    pub fn client_settings(&self, leaf: Option<&Leaf>) -> ClientSettings {
        ClientSettings {
            server_trust: self.trust(),
            credentials: leaf.map(Leaf::credentials),
            options: TlsOptions::default(),
        }
    }
}

/// Runs a command with optional stdin, killing it (and failing the test) after `limit`.
pub fn run(command: &mut std::process::Command, stdin: &[u8], limit: Duration) -> std::process::Output {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    std::process::Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// The figures of echo-client's `echo-client: retry: …` summary line on stderr, each read
/// from its label (so a reworded or reordered line fails the test, not a guess).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySummary {
    /// `A connection attempt(s) after a failure`.
    pub attempts: u64,
    /// `R reconnect(s)`.
    pub reconnects: u64,
    /// `(S resumed its/their TLS session)`.
    pub resumed: u64,
    /// `M message(s) sent again` (with --bench, `M connection's exchange(s) sent again`).
    pub resent: u64,
}

impl RetrySummary {
    /// Finds and parses the summary line in `stderr`; panics (failing the test) without one.
    pub fn parse(stderr: &str) -> Self {
        let line = stderr
            .lines()
            .find_map(|line| line.strip_prefix("echo-client: retry: "))
            .unwrap_or_else(|| panic!("no retry summary: {stderr}"));
        let figure = |labels: &[&str]| -> u64 {
            labels
                .iter()
                .find_map(|label| {
                    let at = line.find(label)?;
                    let digits: String = line[..at]
                        .trim_end()
                        .chars()
                        .rev()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    digits.chars().rev().collect::<String>().parse().ok()
                })
                .unwrap_or_else(|| panic!("no {labels:?} in the retry summary: {line}"))
        };
        Self {
            attempts: figure(&[
                " connection attempts after a failure",
                " connection attempt after a failure",
            ]),
            reconnects: figure(&[" reconnects (", " reconnect ("]),
            resumed: figure(&[" resumed their TLS session", " resumed its TLS session"]),
            resent: figure(&[
                " messages sent again",
                " message sent again",
                " connections' exchanges sent again",
                " connection's exchange sent again",
            ]),
        }
    }
}

/// A running `echo-server`, killed when dropped. Its log goes to a file.
pub struct Server {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// Starts `echo-server --listen 127.0.0.1:0` with `args` and waits for `listening on`.
    pub fn start(dir: &Path, args: &[&std::ffi::OsStr]) -> Self {
        Self::start_listening(dir, "127.0.0.1:0", args)
    }

    /// Starts `echo-server --listen LISTEN` with `args` and waits for `listening on`.
    pub fn start_listening(dir: &Path, listen: &str, args: &[&std::ffi::OsStr]) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        let log = dir.join(format!("server-{}.log", std::process::id() ^ rand_suffix()));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .arg("--listen")
            .arg(listen)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("SSLKEYLOGFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(STEP) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "echo-server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unexpected first line {line:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Self {
            addr: addr.parse().unwrap(),
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`HUP`, `TERM`, `INT`) to the server.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the log contains `needle` (or fails after the time limit).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "log never showed {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "echo-server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) << 20
}

impl Pki {
    /// `--cert --key --client-ca --crl` for echo-server.
    pub fn server_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--cert".into(),
            self.server.chain.clone().into(),
            "--key".into(),
            self.server.key.clone().into(),
            "--client-ca".into(),
            self.root.clone().into(),
            "--crl".into(),
            self.crl.clone().into(),
        ]
    }

    /// An echo-client command for `addr` with `leaf`'s certificate.
    pub fn client(&self, addr: std::net::SocketAddr, leaf: Option<&Leaf>) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_echo-client"));
        command
            .arg("--connect")
            .arg(addr.to_string())
            .arg("--server-name")
            .arg("localhost")
            .arg("--ca")
            .arg(&self.root)
            .arg("--timeout")
            .arg("5")
            .env_remove("SSLKEYLOGFILE");
        if let Some(leaf) = leaf {
            command.arg("--cert").arg(&leaf.chain).arg("--key").arg(&leaf.key);
        }
        command
    }
}

/// A free loopback port (bound, then released for a proxy to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mutual-TLS session (`leaf`'s certificate, none for `None`) through `addr`, with one message
/// echoed: the open session and the client's own address (what a server behind a proxy should
/// log from the PROXY header).
pub async fn echo_session(
    pki: &Pki,
    addr: std::net::SocketAddr,
    leaf: Option<&Leaf>,
) -> Result<
    (
        tessera::channel::ChannelStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    ),
    String,
> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Arc::new(tessera::channel::client_config(&pki.client_settings(leaf)).unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let local = tcp.local_addr().unwrap();
    let mut stream =
        tessera::channel::ChannelStream::connect(config, "localhost", tcp, tessera::channel::RotationPolicy::default())
            .await
            .map_err(|e| e.to_string())?;
    let message = format!("hello from {local}");
    stream.write_all(message.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).await.map_err(|e| e.to_string())?;
    if echoed != message.as_bytes() {
        return Err(format!("echoed {echoed:?}, not {message:?}"));
    }
    Ok((stream, local))
}
