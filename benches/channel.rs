//! Channel benchmark (`cargo bench --bench channel`, run by `make bench`; never by `cargo test`).
//!
//! In one run on loopback, with fresh certificates from Tessera's CA:
//! 1. echo throughput (default 1 GiB in 64 KiB writes, one connection) against a plain TCP echo,
//!    a minimal rustls echo (tokio-rustls + a 64 KiB copy buffer), echo-server without policy
//!    rotation, and echo-server and client both rotating every 1 MiB;
//! 2. mutual-TLS handshakes per second from this process with several in flight, against the
//!    minimal rustls echo and echo-server, and with `openssl s_time -new` against echo-server
//!    and `openssl s_server` (when openssl is installed);
//! 3. memory: N idle mutual-TLS connections (default 10,000) that each echoed 64 KiB once:
//!    server RSS per connection, for echo-server and the minimal rustls echo, and the echo
//!    latency of an active client with and without them;
//! 4. rotation: echo-server's CPU time per GiB echoed without rotation and with
//!    `--rotate-bytes` 1M and 64K;
//! 5. callgrind: instructions per server handshake (valgrind) for the minimal rustls server,
//!    echo-server, and echo-server with a large CRL;
//! 6. revocation: server CPU per handshake with a large CRL (`TESSERA_BENCH_CRL_ENTRIES`
//!    [200000]) against none, for echo-server and for the minimal server with rustls' own CRL
//!    checking, and the CRL's load time.
//!
//! Server costs are CPU time of the server process (`/proc/PID/task/*/schedstat`) or
//! instructions, so that the load of the shared machine does not decide them. The figures are
//! written to `target/bench/channel.json`.
//!
//! Sizes come from environment variables (defaults in brackets):
//! `TESSERA_BENCH_BYTES` [1G], `TESSERA_BENCH_WRITE` [64K], `TESSERA_BENCH_ROTATE` [1M],
//! `TESSERA_BENCH_HANDSHAKES` [2000], `TESSERA_BENCH_INFLIGHT` [8], `TESSERA_BENCH_STIME_SECS`
//! [5, 0 skips s_time], `TESSERA_BENCH_IDLE_CONNS` [10000, 0 skips], `TESSERA_BENCH_PINGS` [2000],
//! `TESSERA_BENCH_ROUNDS` [3: throughput is the best of this many rounds],
//! `TESSERA_BENCH_BASELINE_ECHO_SERVER` [unset: the path of another `echo-server` build whose idle
//! memory is measured in the same run, e.g. one of the previous commit].
//! `TESSERA_BENCH_CALLGRIND_HANDSHAKES` [200].
//! Arguments select parts: `cargo bench --bench channel -- throughput handshakes memory rotation
//! callgrind revocation`.
//! The server processes inherit the file-descriptor limit: raise it first (`ulimit -n 20000`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![allow(clippy::disallowed_macros)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile, SubjectAltName};
use tessera::channel::{self, ChannelStream, ClientSettings, Credentials, RotationPolicy, TlsOptions, parse_byte_size};
use tessera::pki::{TrustStore, pem};

#[path = "support/results.rs"]
mod results;
use results::Results;

const SERVE_ENV: &str = "TESSERA_BENCH_SERVE";

fn env_size(name: &str, default: &str) -> u64 {
    parse_byte_size(&std::env::var(name).unwrap_or_else(|_| default.into())).unwrap_or_else(|e| panic!("{name}: {e}"))
}

struct Files {
    _dir: tempfile::TempDir,
    ca_dir: PathBuf,
    root: PathBuf,
    server_chain: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_chain: PathBuf,
    client_key: PathBuf,
}

fn pki() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let ca = CertificateAuthority::init(&dir.path().join("ca"), &InitRequest::new("Bench Root"), None, now).unwrap();
    let server = ca
        .issue(
            &IssueRequest::new(Profile::Server, "localhost")
                .with_sans([SubjectAltName::Ip("127.0.0.1".parse().unwrap())]),
            now,
        )
        .unwrap();
    let server_files = server.write(&dir.path().join("server"), None).unwrap();
    let client = ca
        .issue(&IssueRequest::new(Profile::Client, "bench-client"), now)
        .unwrap();
    let client_files = client.write(&dir.path().join("client"), None).unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, pem::to_pem(pem::CERTIFICATE, ca.root())).unwrap();
    Files {
        ca_dir: dir.path().join("ca"),
        root,
        server_chain: server_files.chain,
        server_cert: server_files.certificate,
        server_key: server_files.key.unwrap(),
        client_chain: client_files.chain,
        client_key: client_files.key.unwrap(),
        _dir: dir,
    }
}

/// A server process, killed on drop.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts a command that prints `listening on ADDR` (or `ACCEPT ADDR` for s_server).
    fn start(mut command: Command) -> Self {
        use std::io::BufRead;
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                let addr = line
                    .strip_prefix("listening on ")
                    .or_else(|| line.strip_prefix("ACCEPT "));
                if let Some(addr) = addr {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server did not start");
        Self {
            child,
            addr: addr.parse().unwrap(),
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

fn self_server(kind: &str, files: &Files) -> Proc {
    self_server_with(kind, files, None)
}

/// A comparison server; `crl`: rustls-webpki checks client certificates against it.
fn self_server_with(kind: &str, files: &Files, crl: Option<&Path>) -> Proc {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Some(crl) = crl {
        command.env("BENCH_CRL", crl);
    }
    command
        .env(SERVE_ENV, kind)
        .env("BENCH_ROOT", &files.root)
        .env("BENCH_CHAIN", &files.server_chain)
        .env("BENCH_KEY", &files.server_key);
    Proc::start(command)
}

fn echo_server(files: &Files, extra: &[&str]) -> Proc {
    echo_server_at(Path::new(env!("CARGO_BIN_EXE_echo-server")), files, extra)
}

/// `echo-server` from `binary` (this build's, or another build to compare with).
fn echo_server_at(binary: &Path, files: &Files, extra: &[&str]) -> Proc {
    let mut command = Command::new(binary);
    command
        .args(["--listen", "127.0.0.1:0", "--quiet", "--cert"])
        .arg(&files.server_chain)
        .arg("--key")
        .arg(&files.server_key)
        .arg("--client-ca")
        .arg(&files.root)
        .args(["--max-conns", "30000", "--idle-timeout", "3600"])
        .args(extra)
        .env_remove("SSLKEYLOGFILE");
    Proc::start(command)
}

// ---------------------------------------------------------------------------------------------
// The comparison servers, run in a child process of this benchmark.

fn serve(kind: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        let tls = kind.starts_with("rustls").then(minimal_rustls_config);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                match tls {
                    None => copy_loop(tcp, &mut buf).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            copy_loop(stream, &mut buf).await;
                        }
                    }
                }
            });
        }
    });
}

async fn copy_loop<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, buf: &mut [u8]) {
    loop {
        match stream.read(buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() || stream.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// rustls' own WebPKI client verifier, TLS 1.3 only, ring: what a minimal mTLS echo would use.
fn minimal_rustls_config() -> tokio_rustls::TlsAcceptor {
    let provider = channel::provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem::load_certificates(Path::new(&std::env::var("BENCH_ROOT").unwrap())).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    // With BENCH_CRL: rustls' own CRL checking (rustls-webpki, which verifies the CRL's
    // signature on every handshake), as Tessera's settings: unknown status allowed, the whole
    // chain, nextUpdate enforced.
    if let Ok(crl) = std::env::var("BENCH_CRL") {
        let crls = pem::load_crls(Path::new(&crl)).unwrap();
        verifier = verifier
            .with_crls(crls)
            .allow_unknown_revocation_status()
            .enforce_revocation_expiration();
    }
    let verifier = verifier.build().unwrap();
    let credentials = Credentials::load(
        Path::new(&std::env::var("BENCH_CHAIN").unwrap()),
        Path::new(&std::env::var("BENCH_KEY").unwrap()),
        None,
    )
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            credentials.certified_key(),
        )));
    config.send_tls13_tickets = 0;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------------------
// Client side.

fn client_config(files: &Files) -> Arc<rustls::ClientConfig> {
    let store = TrustStore::from_root_file(&files.root).unwrap();
    Arc::new(
        channel::client_config(&ClientSettings {
            server_trust: Arc::new(store),
            credentials: Some(Credentials::load(&files.client_chain, &files.client_key, None).unwrap()),
            options: TlsOptions::default(),
        })
        .unwrap(),
    )
}

async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    policy: RotationPolicy,
) -> ChannelStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    ChannelStream::connect(Arc::clone(config), "127.0.0.1", tcp, policy)
        .await
        .unwrap()
}

fn mib_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / (1024.0 * 1024.0)
}

async fn echo_rate<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    total: u64,
    write: usize,
) -> f64 {
    let start = Instant::now();
    let done = channel::exchange(stream, total, write).await.unwrap();
    assert_eq!(done.received, total);
    mib_s(done.received, start.elapsed())
}

async fn throughput(files: &Files, total: u64, write: usize, rotate: u64, rounds: usize, out: &mut Results) {
    println!(
        "\n## Echo throughput: {} MiB in {} KiB writes, one connection, each way (best of {rounds} rounds)",
        total >> 20,
        write >> 10
    );
    let config = client_config(files);
    let plain = self_server("plain", files);
    let minimal = self_server("rustls", files);
    let unrotated = echo_server(files, &["--no-rotate"]);
    let rotate_text = rotate.to_string();
    let rotating = echo_server(files, &["--rotate-bytes", &rotate_text]);
    let policy = RotationPolicy::never().with_bytes(rotate);
    let mut best = [0f64; 4];
    let mut key_updates = 0;
    for _ in 0..rounds.max(1) {
        let mut tcp = TcpStream::connect(plain.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        best[0] = best[0].max(echo_rate(&mut tcp, total, write).await);
        let mut stream = tls_connect(minimal.addr, &config, RotationPolicy::never()).await;
        best[1] = best[1].max(echo_rate(&mut stream, total, write).await);
        let mut stream = tls_connect(unrotated.addr, &config, RotationPolicy::never()).await;
        best[2] = best[2].max(echo_rate(&mut stream, total, write).await);
        let mut stream = tls_connect(rotating.addr, &config, policy).await;
        best[3] = best[3].max(echo_rate(&mut stream, total, write).await);
        key_updates = stream.stats().rotations.total();
    }
    let [plain_rate, minimal_rate, tessera_rate, rotating_rate] = best;
    out.add("throughput.plain_tcp_mib_s", plain_rate, "MiB/s");
    out.add("throughput.minimal_rustls_mib_s", minimal_rate, "MiB/s");
    out.add("throughput.echo_server_mib_s", tessera_rate, "MiB/s");
    out.add(
        "ratio.minimal_rustls_vs_tcp_throughput",
        minimal_rate / plain_rate,
        "ratio",
    );
    out.add(
        "ratio.echo_server_vs_minimal_rustls_throughput",
        tessera_rate / minimal_rate,
        "ratio",
    );
    println!("plain TCP echo                             {plain_rate:8.1} MiB/s");
    println!("minimal rustls echo (tokio-rustls)         {minimal_rate:8.1} MiB/s");
    println!(
        "echo-server, no rotation                   {tessera_rate:8.1} MiB/s  ({:.3} of minimal rustls)",
        tessera_rate / minimal_rate
    );
    println!(
        "echo-server + client rotating every {:>4} KiB {rotating_rate:6.1} MiB/s  ({:+.1}% vs no rotation; client sent {key_updates} KeyUpdates per run)",
        rotate >> 10,
        (rotating_rate / tessera_rate - 1.0) * 100.0,
    );
}

async fn handshakes(files: &Files, count: usize, in_flight: usize, stime_secs: u64, out: &mut Results) {
    println!("\n## Mutual-TLS handshakes ({count} from this process, {in_flight} in flight)");
    let config = client_config(files);
    let measure = |addr: SocketAddr| {
        let config = Arc::clone(&config);
        async move {
            let start = Instant::now();
            run_handshakes(addr, &config, count, in_flight).await;
            count as f64 / start.elapsed().as_secs_f64()
        }
    };
    let minimal = self_server("rustls", files);
    println!(
        "minimal rustls echo      {:8.0} handshakes/s",
        measure(minimal.addr).await
    );
    let server = echo_server(files, &[]);
    println!(
        "echo-server              {:8.0} handshakes/s",
        measure(server.addr).await
    );

    if stime_secs == 0 || Command::new("openssl").arg("version").output().is_err() {
        println!("(openssl s_time skipped)");
        return;
    }
    // openssl s_time as the client: full handshakes (-new) for `stime_secs`; the server's CPU
    // time per connection, as openssl counts them.
    let s_time = |server: &Proc| {
        let pid = server.child.id();
        let before = cpu_ns(pid);
        let out = Command::new("openssl")
            .args([
                "s_time",
                "-new",
                "-connect",
                &server.addr.to_string(),
                "-time",
                &stime_secs.to_string(),
            ])
            .arg("-CAfile")
            .arg(&files.root)
            .arg("-cert")
            .arg(&files.client_chain)
            .arg("-key")
            .arg(&files.client_key)
            .output()
            .unwrap();
        let used = cpu_ns(pid).saturating_sub(before);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "1234 connections in 5.00s; 246.80 connections/user sec, bytes read 0"
        let connections: u64 = text
            .lines()
            .find(|l| l.contains("connections in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(connections > 0, "openssl s_time made no connection: {text}");
        (connections, used as f64 / 1000.0 / connections as f64)
    };
    let minimal = self_server("rustls", files);
    let (n_minimal, cpu_minimal) = s_time(&minimal);
    drop(minimal);
    let (n_echo, cpu_echo) = s_time(&server);
    drop(server);
    let mut command = Command::new("openssl");
    command
        .args(["s_server", "-accept", "127.0.0.1:0", "-tls1_3", "-cert"])
        .arg(&files.server_cert)
        .arg("-cert_chain")
        .arg(&files.server_chain)
        .arg("-key")
        .arg(&files.server_key)
        .arg("-CAfile")
        .arg(&files.root)
        .args(["-Verify", "2", "-verify_return_error"])
        // s_server stops at end of input: keep its stdin open (the pipe lives as long as Proc).
        .stdin(Stdio::piped());
    let s_server = Proc::start(command);
    let (n_openssl, cpu_openssl) = s_time(&s_server);
    println!("openssl s_time -new, {stime_secs} s each: server CPU per full mutual-TLS handshake");
    println!("minimal rustls   {cpu_minimal:8.1} µs  ({n_minimal} connections)");
    println!(
        "echo-server      {cpu_echo:8.1} µs  ({n_echo} connections)  {:.3} of minimal rustls (goal <= 1.05)",
        cpu_echo / cpu_minimal
    );
    println!(
        "openssl s_server {cpu_openssl:8.1} µs  ({n_openssl} connections)  {:.2}x echo-server's",
        cpu_openssl / cpu_echo
    );
    out.add("s_time.minimal_rustls_cpu_us", cpu_minimal, "µs");
    out.add("s_time.echo_server_cpu_us", cpu_echo, "µs");
    out.add("s_time.s_server_cpu_us", cpu_openssl, "µs");
    out.add(
        "ratio.echo_server_vs_minimal_rustls_s_time_cpu",
        cpu_echo / cpu_minimal,
        "ratio",
    );
    out.add(
        "ratio.s_server_vs_echo_server_s_time_cpu",
        cpu_openssl / cpu_echo,
        "ratio",
    );
}

/// `count` mutual-TLS handshakes (each connection closed at once), `in_flight` at a time.
async fn run_handshakes(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, count: usize, in_flight: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = Arc::clone(&slots).acquire_owned().await.unwrap();
        let config = Arc::clone(config);
        tasks.spawn(async move {
            let mut stream = tls_connect(addr, &config, RotationPolicy::never()).await;
            let _ = stream.close().await;
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// CPU time (user + system) every live thread of process `pid` has used, in ns: the sum of the
/// first field of `/proc/PID/task/*/schedstat`. Independent of what else runs on the machine.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Server CPU per handshake, µs, over `count` handshakes.
async fn server_cpu_per_handshake(
    server: &Proc,
    config: &Arc<rustls::ClientConfig>,
    count: usize,
    in_flight: usize,
) -> f64 {
    let pid = server.child.id();
    let before = cpu_ns(pid);
    run_handshakes(server.addr, config, count, in_flight).await;
    let used = cpu_ns(pid).saturating_sub(before);
    used as f64 / 1000.0 / count as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A CRL by the bench CA listing `entries` serial numbers (none of them the client's), written
/// as DER next to the CA.
fn big_crl(files: &Files, entries: usize) -> PathBuf {
    use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber};
    let key = tessera::pki::PrivateKey::load(&files.ca_dir.join("ca.key"), None)
        .unwrap()
        .to_key_pair()
        .unwrap();
    let root = pem::load_certificates(&files.root).unwrap().remove(0);
    let issuer = Issuer::from_ca_cert_der(&root, key).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let revoked_certs = (0..entries as u64)
        .map(|n| {
            // 16-octet positive serials, as Tessera's CA makes them.
            let mut serial = [0u8; 16];
            serial[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            serial[8..].copy_from_slice(&n.to_be_bytes());
            serial[0] = (serial[0] & 0x7f) | 0x01;
            RevokedCertParams {
                serial_number: SerialNumber::from(serial.to_vec()),
                revocation_time: now - Duration::from_secs(3600),
                reason_code: None,
                invalidity_date: None,
            }
        })
        .collect();
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::from_secs(3600),
        next_update: now + Duration::from_secs(86_400),
        crl_number: SerialNumber::from(vec![0x01]),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let der = crl.der().to_vec();
    // The CRL must be the one consulted: same issuer name octets as the root's subject.
    let (_, parsed) = x509_parser::parse_x509_crl(&der).unwrap();
    let (_, root_cert) = x509_parser::parse_x509_certificate(&root).unwrap();
    assert_eq!(parsed.issuer().as_raw(), root_cert.subject().as_raw());
    let path = files.ca_dir.join("big.crl");
    std::fs::write(&path, &der).unwrap();
    path
}

/// Revocation cost: server CPU per mutual-TLS handshake with a large CRL against none, for
/// echo-server and for the minimal rustls server (rustls-webpki's CRL checking), and the time
/// to load the CRL.
async fn revocation(
    files: &Files,
    crl: &Path,
    entries: usize,
    count: usize,
    in_flight: usize,
    rounds: usize,
    out: &mut Results,
) {
    println!("\n## Revocation: server CPU per mutual-TLS handshake with a {entries}-entry CRL");
    let size = std::fs::metadata(crl).unwrap().len();
    let crls = pem::load_crls(crl).unwrap();
    let mut store = TrustStore::from_root_file(&files.root).unwrap();
    let mut load_ms = Vec::new();
    let mut webpki_ms = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        store.clear_crls();
        store.add_crl(&crls[0], "crl").unwrap();
        load_ms.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let owned = webpki::OwnedCertRevocationList::from_der(&crls[0]).unwrap();
        webpki_ms.push(start.elapsed().as_secs_f64() * 1e3);
        drop(owned);
    }
    let (load_ms, webpki_ms) = (median(load_ms), median(webpki_ms));
    println!("CRL load (TrustStore::add_crl: parse, index, verify signature)  {load_ms:8.1} ms");
    println!("rustls-webpki OwnedCertRevocationList::from_der alone            {webpki_ms:8.1} ms");
    out.add("revocation.crl_entries", entries as f64, "entries");
    out.add("revocation.crl_bytes", size as f64, "bytes");
    out.add("revocation.crl_load_ms", load_ms, "ms");
    out.add("revocation.webpki_crl_parse_ms", webpki_ms, "ms");

    let config = client_config(files);
    let crl_arg = crl.display().to_string();
    let servers = [
        ("minimal rustls", self_server("rustls", files)),
        (
            "minimal rustls + CRL (webpki)",
            self_server_with("rustls-crl", files, Some(crl)),
        ),
        ("echo-server", echo_server(files, &[])),
        ("echo-server + CRL", echo_server(files, &["--crl", &crl_arg])),
    ];
    for (_, server) in &servers {
        run_handshakes(server.addr, &config, 50, in_flight).await;
    }
    let mut samples = vec![Vec::new(); servers.len()];
    for _ in 0..rounds.max(1) {
        for (index, (_, server)) in servers.iter().enumerate() {
            samples[index].push(server_cpu_per_handshake(server, &config, count, in_flight).await);
        }
    }
    let shown: Vec<String> = samples
        .iter()
        .map(|s| s.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(" "))
        .collect();
    let cpu: Vec<f64> = samples.into_iter().map(median).collect();
    for (((name, _), us), all) in servers.iter().zip(&cpu).zip(&shown) {
        println!("{name:<32} {us:8.1} µs server CPU per handshake (median of {all})");
    }
    let with_crl = cpu[3] / cpu[2];
    println!(
        "echo-server with the CRL / without: {with_crl:.3} (goal <= 1.1); minimal rustls with / without: {:.3}",
        cpu[1] / cpu[0]
    );
    println!(
        "echo-server / minimal rustls, no CRL: {:.3} (goal <= 1.05)",
        cpu[2] / cpu[0]
    );
    out.add("handshake.minimal_rustls_cpu_us", cpu[0], "µs");
    out.add("handshake.minimal_rustls_crl_cpu_us", cpu[1], "µs");
    out.add("handshake.echo_server_cpu_us", cpu[2], "µs");
    out.add("handshake.echo_server_crl_cpu_us", cpu[3], "µs");
    out.add("ratio.echo_server_crl_vs_no_crl", with_crl, "ratio");
    out.add("ratio.minimal_rustls_crl_vs_no_crl", cpu[1] / cpu[0], "ratio");
    out.add(
        "ratio.echo_server_vs_minimal_rustls_handshake_cpu",
        cpu[2] / cpu[0],
        "ratio",
    );
}

/// Rotation cost as server CPU time per GiB echoed (both directions through the server),
/// without rotation and with `--rotate-bytes` 1M and 64K: CPU time does not depend on what else
/// the shared machine runs, unlike throughput. Rounds interleave the three servers; medians.
async fn rotation_cpu(files: &Files, total: u64, write: usize, rounds: usize, out: &mut Results) {
    println!(
        "\n## Rotation cost: echo-server CPU per GiB echoed ({} MiB per run, {} KiB writes, median of {rounds})",
        total >> 20,
        write >> 10
    );
    let config = client_config(files);
    let servers = [
        ("no rotation", "none", echo_server(files, &["--no-rotate"])),
        ("--rotate-bytes 1M", "1m", echo_server(files, &["--rotate-bytes", "1M"])),
        (
            "--rotate-bytes 64K",
            "64k",
            echo_server(files, &["--rotate-bytes", "64K"]),
        ),
    ];
    let mut samples = vec![Vec::new(); servers.len()];
    for _ in 0..rounds.max(1) {
        for (index, (_, _, server)) in servers.iter().enumerate() {
            let mut stream = tls_connect(server.addr, &config, RotationPolicy::never()).await;
            let pid = server.child.id();
            let before = cpu_ns(pid);
            let done = channel::exchange(&mut stream, total, write).await.unwrap();
            assert_eq!(done.received, total);
            let used = cpu_ns(pid).saturating_sub(before);
            let _ = stream.close().await;
            samples[index].push(used as f64 / 1e9 / (total as f64 / f64::from(1u32 << 30)));
        }
    }
    let cpu: Vec<f64> = samples.into_iter().map(median).collect();
    for ((name, key, _), seconds) in servers.iter().zip(&cpu) {
        let ratio = seconds / cpu[0];
        println!(
            "{name:<20} {seconds:7.3} s CPU per GiB  ({:+.1}% vs no rotation)",
            (ratio - 1.0) * 100.0
        );
        out.add(&format!("rotation.cpu_s_per_gib.{key}"), *seconds, "s");
        if *key != "none" {
            out.add(&format!("ratio.rotation_{key}_vs_none_cpu"), ratio, "ratio");
        }
    }
}

/// Instructions per server handshake, counted by callgrind (repeatable, unlike time on a shared
/// machine): the server runs under `valgrind --tool=callgrind`; after a warm-up the counters are
/// zeroed (`callgrind_control -z`), `count` handshakes run, and the counters are dumped
/// (`callgrind_control -d`). The dumps stay in `target/bench/callgrind/` for
/// `callgrind_annotate --inclusive=yes FILE`.
async fn callgrind(files: &Files, count: usize, crl: &Path, out: &mut Results) {
    println!("\n## Instructions per mutual-TLS handshake, server side (callgrind, {count} handshakes)");
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("(valgrind is not installed: skipped; apt-get install valgrind)");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/callgrind");
    std::fs::create_dir_all(&dir).unwrap();
    let config = client_config(files);
    let mut counts = Vec::new();
    for name in ["minimal-rustls", "echo-server", "echo-server-crl"] {
        let base = dir.join(format!("{name}.out"));
        let mut command = Command::new("valgrind");
        command
            .args(["--tool=callgrind", "--quiet"])
            .arg(format!("--callgrind-out-file={}", base.display()));
        if name.starts_with("echo-server") {
            command
                .arg(env!("CARGO_BIN_EXE_echo-server"))
                .args(["--listen", "127.0.0.1:0", "--quiet", "--cert"])
                .arg(&files.server_chain)
                .arg("--key")
                .arg(&files.server_key)
                .arg("--client-ca")
                .arg(&files.root)
                .env_remove("SSLKEYLOGFILE");
            if name == "echo-server-crl" {
                // Loading 7 MB under valgrind takes longer than the default 10 s.
                command.arg("--crl").arg(crl).args(["--reload-timeout", "600"]);
            }
        } else {
            command
                .arg(std::env::current_exe().unwrap())
                .env(SERVE_ENV, "rustls")
                .env("BENCH_ROOT", &files.root)
                .env("BENCH_CHAIN", &files.server_chain)
                .env("BENCH_KEY", &files.server_key);
        }
        let server = Proc::start(command);
        run_handshakes(server.addr, &config, 20, 1).await;
        let control = |flag: &str| {
            let status = Command::new("callgrind_control")
                .arg(flag)
                .arg(server.child.id().to_string())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "callgrind_control {flag} failed");
        };
        control("-z");
        run_handshakes(server.addr, &config, count, 1).await;
        control("-d");
        // The dump is written as BASE.N next to BASE.
        let dump = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}.out.")))
            })
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .expect("no callgrind dump");
        let text = std::fs::read_to_string(&dump).unwrap();
        let total: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("no totals in the callgrind dump");
        let per = total as f64 / count as f64;
        println!(
            "{name:<16} {:10.0} instructions per handshake   ({})",
            per,
            dump.display()
        );
        counts.push(per);
        drop(server);
    }
    println!(
        "echo-server / minimal rustls: {:.3} (goal <= 1.05)",
        counts[1] / counts[0]
    );
    println!(
        "echo-server with the CRL / without: {:.4} (goal <= 1.1)",
        counts[2] / counts[1]
    );
    out.add("callgrind.echo_server_crl_instructions", counts[2], "instructions");
    out.add(
        "ratio.echo_server_crl_vs_no_crl_instructions",
        counts[2] / counts[1],
        "ratio",
    );
    out.add("callgrind.minimal_rustls_instructions", counts[0], "instructions");
    out.add("callgrind.echo_server_instructions", counts[1], "instructions");
    out.add(
        "ratio.echo_server_vs_minimal_rustls_instructions",
        counts[1] / counts[0],
        "ratio",
    );
}

/// Median round trip of 64-byte pings on one connection, in µs.
async fn ping_p50(stream: &mut ChannelStream<TcpStream>, pings: usize) -> f64 {
    let mut samples = Vec::with_capacity(pings);
    let mut buf = [0u8; 64];
    for _ in 0..pings {
        let start = Instant::now();
        stream.write_all(&buf).await.unwrap();
        stream.flush().await.unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Starts one of the servers compared.
type Starter<'a> = Box<dyn Fn() -> Proc + 'a>;

async fn idle_memory(files: &Files, conns: usize, pings: usize, out: &mut Results) {
    println!("\n## Memory: {conns} idle mutual-TLS connections, each after echoing 64 KiB once");
    let config = client_config(files);
    // Another build of echo-server (e.g. of the previous commit) measured in the same run.
    let baseline = std::env::var_os("TESSERA_BENCH_BASELINE_ECHO_SERVER").map(PathBuf::from);
    let mut servers: Vec<(&str, Starter<'_>)> = vec![
        ("echo-server", Box::new(|| echo_server(files, &[]))),
        ("minimal rustls echo", Box::new(|| self_server("rustls", files))),
    ];
    if let Some(binary) = baseline {
        println!("(baseline echo-server: {})", binary.display());
        servers.push((
            "baseline echo-server",
            Box::new(move || echo_server_at(&binary, files, &[])),
        ));
    }
    for (name, start) in servers {
        let server = start();
        let mut active = tls_connect(server.addr, &config, RotationPolicy::never()).await;
        let quiet_p50 = ping_p50(&mut active, pings).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = server.rss_kib();
        let mut held = Vec::with_capacity(conns);
        let mut tasks = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(64));
        for _ in 0..conns {
            let permit = Arc::clone(&slots).acquire_owned().await.unwrap();
            let config = Arc::clone(&config);
            let addr = server.addr;
            tasks.spawn(async move {
                let mut stream = tls_connect(addr, &config, RotationPolicy::never()).await;
                channel::exchange(&mut stream, 64 * 1024, 64 * 1024).await.unwrap();
                drop(permit);
                stream
            });
        }
        while let Some(stream) = tasks.join_next().await {
            held.push(stream.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = server.rss_kib();
        let loaded_p50 = ping_p50(&mut active, pings).await;
        let per = after.saturating_sub(before) as f64 / held.len() as f64;
        println!(
            "{name:<20} RSS {before} KiB -> {after} KiB: {per:.1} KiB per idle connection; active echo p50 {quiet_p50:.1} µs alone, {loaded_p50:.1} µs with them",
        );
        let key = name.replace(' ', "_");
        out.add(&format!("memory.{key}_kib_per_idle_conn"), per, "KiB");
        out.add(&format!("memory.{key}_p50_alone_us"), quiet_p50, "µs");
        out.add(&format!("memory.{key}_p50_loaded_us"), loaded_p50, "µs");
        drop(held);
    }
}

fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

fn main() {
    if let Ok(kind) = std::env::var(SERVE_ENV) {
        serve(&kind);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument selects parts: throughput, handshakes, memory.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    let files = pki();
    let total = env_size("TESSERA_BENCH_BYTES", "1G");
    let write = env_size("TESSERA_BENCH_WRITE", "64K") as usize;
    let rotate = env_size("TESSERA_BENCH_ROTATE", "1M");
    let handshake_count = env_size("TESSERA_BENCH_HANDSHAKES", "2000") as usize;
    let in_flight = env_size("TESSERA_BENCH_INFLIGHT", "8") as usize;
    let stime_secs = env_size("TESSERA_BENCH_STIME_SECS", "5");
    let mut idle = env_size("TESSERA_BENCH_IDLE_CONNS", "10000") as usize;
    let pings = env_size("TESSERA_BENCH_PINGS", "2000") as usize;
    let rounds = env_size("TESSERA_BENCH_ROUNDS", "3") as usize;
    let crl_entries = env_size("TESSERA_BENCH_CRL_ENTRIES", "200000") as usize;
    let mut results = Results::default();
    let limit = fd_limit();
    if idle > 0 && idle as u64 + 200 > limit {
        let fit = limit.saturating_sub(200) as usize;
        println!(
            "(file descriptor limit {limit}: idle connections reduced from {idle} to {fit}; run `ulimit -n 20000` first)"
        );
        idle = fit;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "# Tessera channel benchmark (loopback, {} CPUs)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        if wanted("throughput") {
            throughput(&files, total, write, rotate, rounds, &mut results).await;
        }
        if wanted("handshakes") {
            handshakes(&files, handshake_count, in_flight, stime_secs, &mut results).await;
        }
        if wanted("memory") && idle > 0 {
            idle_memory(&files, idle, pings, &mut results).await;
        }
        if wanted("rotation") {
            rotation_cpu(&files, total, write, rounds, &mut results).await;
        }
        // One large CRL (none of its serials the client's) for the revocation parts.
        let crl = (wanted("callgrind") || wanted("revocation")).then(|| {
            let start = Instant::now();
            let crl = big_crl(&files, crl_entries);
            println!(
                "\n(a CRL of {crl_entries} entries, {:.1} MB, made in {:.1} s)",
                std::fs::metadata(&crl).unwrap().len() as f64 / 1e6,
                start.elapsed().as_secs_f64()
            );
            crl
        });
        if let Some(crl) = &crl
            && wanted("callgrind")
        {
            let count = env_size("TESSERA_BENCH_CALLGRIND_HANDSHAKES", "200") as usize;
            callgrind(&files, count, crl, &mut results).await;
        }
        if let Some(crl) = &crl
            && wanted("revocation")
        {
            revocation(
                &files,
                crl,
                crl_entries,
                handshake_count,
                in_flight,
                rounds,
                &mut results,
            )
            .await;
        }
    });
    results.write("channel");
}
