//! `ca serve` under load: complete ACME orders per second (a new account, newOrder, http-01
//! with real validation, finalize, certificate download) from the in-process instant-acme
//! client, 1 and 8 orders in flight, on SQLite and on PostgreSQL (a private cluster started
//! here), beside Pebble (the reference server, state in memory) under the same client and
//! settings; then OCSP responses per second from `ca serve`'s `/ocsp` beside `openssl ocsp
//! -index … -port` as a responder, 8 requests in flight. p50/p99 latency of each.
//! `cargo bench --bench acme` (or `make bench`); never part of `cargo test`.
//!
//! The service runs in process (`tessera::ca::serve::serve`) with its rate limits raised out of
//! the way (the bench measures the service, not the limiter), validation on, and every name
//! resolved to 127.0.0.1 where one in-process responder answers the http-01 challenges of
//! both servers.
//!
//! Sizes: `TESSERA_BENCH_ACME_ORDERS` (orders per case, default 40),
//! `TESSERA_BENCH_OCSP_REQUESTS` (requests per responder, default 2000).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tokio::net::{TcpListener, TcpStream};

use tessera::ca::serve::ratelimit::Limit;
use tessera::ca::serve::{BaseUrl, ServeConfig, ServeHandle, serve};
use tessera::ca::{CertificateAuthority, Location};

const CA: &str = env!("CARGO_BIN_EXE_ca");

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed by its PID when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ca(dir: &Path, db: Option<&str>) -> Command {
    let mut cmd = Command::new(CA);
    cmd.arg("--dir").arg(dir).arg("-q");
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    cmd.env_remove("TESSERA_DB").env_remove("RUST_LOG");
    cmd
}

fn ok(cmd: &mut Command) {
    let out = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Latency figures

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, wall: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        per_second: latencies.len() as f64 / wall.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn show(f: &Figures, unit: &str) -> String {
    format!(
        "{:8.1} {unit}/s   p50 {:7.1} ms   p99 {:7.1} ms",
        f.per_second,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3
    )
}

// ---------------------------------------------------------------------------------------------
// The http-01 responder and the ACME client

type Answers = Arc<Mutex<HashMap<String, String>>>;

/// Serves `/.well-known/acme-challenge/TOKEN` from `answers` on 127.0.0.1:`port`.
async fn responder(answers: Answers) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let answer = request
                        .uri()
                        .path()
                        .strip_prefix("/.well-known/acme-challenge/")
                        .and_then(|token| answers.lock().unwrap().get(token).cloned());
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(answer.clone().unwrap_or_default())));
                        if answer.is_none() {
                            *response.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// One complete order for `name` by a new account; its latency.
async fn one_order(directory: &str, root: &Path, name: String, answers: &Answers) -> Duration {
    let start = Instant::now();
    let (account, _) = Account::builder_with_root(root)
        .unwrap()
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await
        .unwrap();
    let identifiers = [Identifier::Dns(name.clone())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await.unwrap();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.unwrap();
        if authorization.status != AuthorizationStatus::Pending {
            continue;
        }
        let mut challenge = authorization.challenge(ChallengeType::Http01).unwrap();
        answers.lock().unwrap().insert(
            challenge.token.clone(),
            challenge.key_authorization().as_str().to_string(),
        );
        challenge.set_ready().await.unwrap();
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(10))
        .backoff(1.5)
        .timeout(Duration::from_secs(60));
    assert_eq!(order.poll_ready(&retries).await.unwrap(), OrderStatus::Ready, "{name}");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap();
    order.finalize_csr(csr.der()).await.unwrap();
    let chain = order.poll_certificate(&retries).await.unwrap();
    assert!(chain.contains("BEGIN CERTIFICATE"));
    start.elapsed()
}

/// `orders` complete orders, `in_flight` at a time, against `directory`.
async fn orders(
    directory: &str,
    root: &Path,
    answers: &Answers,
    tag: &str,
    orders: usize,
    in_flight: usize,
) -> Figures {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (directory, root, answers, next, tag) = (
            directory.to_string(),
            root.to_path_buf(),
            answers.clone(),
            next.clone(),
            tag.to_string(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= orders {
                    return latencies;
                }
                let name = format!("o{i}.{tag}.bench.test");
                latencies.push(one_order(&directory, &root, name, &answers).await);
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    figures(latencies, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// The servers

/// A root CA for bench.test and 127.0.0.1 (made by `ca init`, unencrypted key), in `dir`.
fn init_ca(dir: &Path, db: Option<&str>, http_port: u16) {
    ok(ca(dir, db).args([
        "init",
        "--name",
        "ACME Bench CA",
        "--no-passphrase",
        "--permit-dns",
        "bench.test",
        "--permit-ip",
        "127.0.0.1/32",
        "--ocsp-url",
        &format!("http://127.0.0.1:{http_port}/ocsp"),
    ]));
}

/// `ca serve` in process on the CA in `dir`; returns its HTTPS and HTTP addresses and the
/// handle that keeps it running.
async fn start_serve(
    dir: &Path,
    db: Option<&str>,
    va_http_port: u16,
    http_port: u16,
) -> (SocketAddr, SocketAddr, ServeHandle) {
    let location = db.map(|url| Location::parse(url).unwrap());
    // The PostgreSQL client is synchronous (it runs its own runtime): open on the blocking pool.
    let (owned_dir, owned_location) = (dir.to_path_buf(), location.clone());
    let authority = tokio::task::spawn_blocking(move || {
        CertificateAuthority::open_with_store(&owned_dir, None, owned_location.as_ref()).unwrap()
    })
    .await
    .unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind(("127.0.0.1", http_port)).await.unwrap();
    let (https_address, http_address) = (https.local_addr().unwrap(), http.local_addr().unwrap());
    let base = format!("https://127.0.0.1:{}", https_address.port());
    let mut config = ServeConfig::new(BaseUrl::parse(&base).unwrap());
    config.store = location;
    config.va.http_port = va_http_port;
    config.va.resolve = vec![("*".into(), "127.0.0.1".parse().unwrap())];
    config.rate_per_account = Limit::new(1e6, 1_000_000);
    config.rate_global = Limit::new(1e6, 1_000_000);
    config.pool_size = 8;
    let (handle, service) = serve(authority, config, https, Some(http)).await.unwrap();
    tokio::spawn(service);
    (https_address, http_address, handle)
}

/// Pebble with pebble-challtestsrv as its DNS (every name: 127.0.0.1), its HTTPS certificate
/// issued by the CA in `dir`, its VA dialling `va_http_port`. Returns its directory URL.
fn start_pebble(dir: &Path, work: &Path, va_http_port: u16) -> (String, Running, Running) {
    ok(ca(dir, None)
        .args([
            "issue",
            "--profile",
            "server",
            "--name",
            "pebble.bench.test",
            "--san",
            "ip:127.0.0.1",
            "--out",
        ])
        .arg(work.join("pebble")));
    let (port, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": work.join("pebble.chain.pem"),
        "privateKey": work.join("pebble.key"),
        "httpPort": va_http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(work.join("pebble.json"), config.to_string()).unwrap();
    let quiet = |cmd: &mut Command| {
        Running(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let dns_server = quiet(Command::new("pebble-challtestsrv").args([
        "-dns01",
        &format!("127.0.0.1:{dns}"),
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-management",
        &format!("127.0.0.1:{dns_management}"),
        "-defaultIPv4",
        "127.0.0.1",
        "-defaultIPv6",
        "",
    ]));
    let pebble = quiet(
        Command::new("pebble")
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .arg("-config")
            .arg(work.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")]),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "Pebble did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (format!("https://127.0.0.1:{port}/dir"), dns_server, pebble)
}

// ---------------------------------------------------------------------------------------------
// OCSP

/// `requests` OCSP POSTs of `request` (DER) to `address` `path`, 8 in flight, one connection
/// each (as `openssl ocsp -port` serves one request per connection).
async fn ocsp_load(address: SocketAddr, path: &str, request: Vec<u8>, requests: usize) -> Figures {
    let request = Bytes::from(request);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (request, next, path) = (request.clone(), next.clone(), path.to_string());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < requests {
                let begun = Instant::now();
                let stream = TcpStream::connect(address).await.unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let post = Request::post(path.as_str())
                    .header("host", address.to_string())
                    .header("content-type", "application/ocsp-request")
                    // One request per connection at both responders (openssl would keep it
                    // open and serve no one else meanwhile).
                    .header("connection", "close")
                    .body(Full::new(request.clone()))
                    .unwrap();
                let response = sender.send_request(post).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert!(body.len() > 100, "an OCSP response");
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    figures(latencies, start.elapsed())
}

/// `openssl ocsp -index` as a responder for the certificate at `cert`, issued by the CA in
/// `dir`; returns its address.
fn start_openssl_ocsp(dir: &Path, work: &Path, cert: &Path) -> (SocketAddr, Running) {
    let text = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let serial = text(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=").to_string();
    let subject = text(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "compat",
    ]);
    let subject = subject.trim().trim_start_matches("subject=").to_string();
    let index = work.join("index.txt");
    std::fs::write(&index, format!("V\t391231235959Z\t\t{serial}\tunknown\t{subject}\n")).unwrap();
    let port = free_port();
    let log = work.join("openssl-ocsp.log");
    let responder = Running(
        Command::new("openssl")
            .args(["ocsp", "-index"])
            .arg(&index)
            .args(["-port", &port.to_string(), "-rsigner"])
            .arg(dir.join("ca.pem"))
            .arg("-rkey")
            .arg(dir.join("ca.key"))
            .arg("-CA")
            .arg(dir.join("ca.pem"))
            .args(["-ignore_err"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Not probed with a bare connection: the single-threaded responder would wait on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("waiting for OCSP client connections")
    {
        assert!(Instant::now() < deadline, "openssl ocsp did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (SocketAddr::from(([127, 0, 0, 1], port)), responder)
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let n_orders = env_number("TESSERA_BENCH_ACME_ORDERS", 40);
    let n_ocsp = env_number("TESSERA_BENCH_OCSP_REQUESTS", 2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let answers: Answers = Arc::default();
    let va_port = runtime.block_on(responder(answers.clone()));

    println!(
        "ACME: complete orders (new account, http-01 validated for real, finalize, download), {n_orders} per case"
    );
    let pg = pg_support::Postgres::start();
    let backends: [(&str, Option<String>); 2] = [("SQLite", None), ("PostgreSQL", Some(pg.url("ca")))];
    let mut sqlite_dir = None;
    let mut sqlite_http = None;
    let mut handles = Vec::new();
    for (backend, db) in &backends {
        let dir = work.path().join(backend.to_ascii_lowercase());
        let http_port = free_port();
        init_ca(&dir, db.as_deref(), http_port);
        let (https, http, handle) = runtime.block_on(start_serve(&dir, db.as_deref(), va_port, http_port));
        let directory = format!("https://{https}/acme/directory");
        for in_flight in [1, 8] {
            let tag = format!("{}{in_flight}", backend.to_ascii_lowercase());
            let f = runtime.block_on(orders(
                &directory,
                &dir.join("ca.pem"),
                &answers,
                &tag,
                n_orders,
                in_flight,
            ));
            println!(
                "  ca serve ({backend:10}) {in_flight} in flight: {}",
                show(&f, "orders")
            );
        }
        handles.push(handle);
        if db.is_none() {
            sqlite_dir = Some(dir.clone());
            sqlite_http = Some(http);
        }
    }
    let sqlite_dir: PathBuf = sqlite_dir.unwrap();
    let (pebble_directory, dns, pebble) = start_pebble(&sqlite_dir, work.path(), va_port);
    for in_flight in [1, 8] {
        let tag = format!("pebble{in_flight}");
        let f = runtime.block_on(orders(
            &pebble_directory,
            &sqlite_dir.join("ca.pem"),
            &answers,
            &tag,
            n_orders,
            in_flight,
        ));
        println!("  Pebble (memory)       {in_flight} in flight: {}", show(&f, "orders"));
    }

    println!("OCSP: {n_ocsp} POSTs per responder, 8 in flight, one connection each");
    ok(ca(&sqlite_dir, None)
        .args(["issue", "--profile", "server", "--name", "ocsp.bench.test", "--out"])
        .arg(work.path().join("leaf")));
    let leaf = work.path().join("leaf.pem");
    let request_path = work.path().join("request.der");
    let out = Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(sqlite_dir.join("ca.pem"))
        .arg("-cert")
        .arg(&leaf)
        .arg("-reqout")
        .arg(&request_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl ocsp -reqout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request = std::fs::read(&request_path).unwrap();
    let ours = runtime.block_on(ocsp_load(sqlite_http.unwrap(), "/ocsp", request.clone(), n_ocsp));
    println!("  ca serve /ocsp            {}", show(&ours, "responses"));
    let (address, openssl) = start_openssl_ocsp(&sqlite_dir, work.path(), &leaf);
    let theirs = runtime.block_on(ocsp_load(address, "/", request, n_ocsp));
    println!("  openssl ocsp -index       {}", show(&theirs, "responses"));
    println!(
        "  ratio ca serve / openssl: {:.2}x responses per second",
        ours.per_second / theirs.per_second
    );
    // Stop the outside processes by PID and the PostgreSQL cluster, then exit without dropping
    // the services or the runtime: dropping a service drops its synchronous PostgreSQL
    // connections on a runtime thread, which panics (a known issue of `ca serve`'s drain with
    // PostgreSQL; see the report of issue 10).
    drop((openssl, pebble, dns));
    drop(pg);
    drop(work);
    std::mem::forget(handles);
    std::process::exit(0);
}
