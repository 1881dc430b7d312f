//! Real ACME clients against `ca serve` run as the `ca` tool, as DESIGN.md ("`ca serve`") and
//! PEERS.md give their command lines: lego (http-01, tls-alpn-01, renew, revoke) and certbot
//! (http-01 standalone, revoke). Every certificate obtained is checked by `openssl verify`
//! against the root; after revocation `openssl ocsp` asks the server's `/ocsp` and `openssl
//! verify -crl_check -crl_download` fetches the CRL through the certificate's CRL Distribution
//! Point. Two instances on one PostgreSQL behind HAProxy keep serving while one is killed with
//! SIGKILL; Pebble, the reference ACME server, is the differential oracle of one lego flow.
//!
//! These tests fail, never skip, under TESSERA_REQUIRE_TOOLS=1 when a client is missing. Every
//! process is started on 127.0.0.1, waited for with a limit and stopped by its PID on drop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros,
    missing_docs
)]

mod pg_support;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use support::{s, stderr, stdout};

/// How long one client run (lego, certbot) may take before it is killed and the test fails.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// How long a server may take to print its `listening on` lines.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The lifetime of ACME certificates in these tests (`--acme-hours`).
const ACME_HOURS: u32 = 24;

/// A free loopback port (bound, then released for the process that takes it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed (SIGKILL, by its PID) and reaped when dropped.
struct Running {
    child: Child,
    what: String,
}

impl Running {
    /// `kill -9`, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// The CA and `ca serve`

/// A root CA and below it the issuing CA that `ca serve` runs, made by `ca init` (the usual
/// deployment: the root stays offline), limited to the names under example.test and the address
/// 127.0.0.1 (the server's own HTTPS certificate). Its certificates point to
/// `http://127.0.0.1:HTTP/crl` and `…/ocsp`. Everything is in a fresh temporary directory.
struct Ca {
    tmp: TempDir,
    /// The port `ca serve --http-listen` will take (fixed before init: the CDP names it).
    http_port: u16,
    /// `--db`, when the store is PostgreSQL.
    db: Option<String>,
}

impl Ca {
    fn new(db: Option<String>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let ca = Ca { tmp, http_port, db };
        // `--db` is global: with PostgreSQL, the root's records are there too.
        support::ok(
            ca.cmd(&ca.path("root"))
                .args(["init", "--name", "ACME Clients Root", "--no-passphrase"]),
        );
        let mut init = ca.cmd(&ca.dir());
        init.args([
            "init",
            "--parent",
            &s(&ca.path("root")),
            "--name",
            "ACME Clients Issuing CA",
            "--no-passphrase",
            "--permit-dns",
            "example.test",
            "--permit-ip",
            "127.0.0.1/32",
            "--crl-url",
            &ca.crl_url(),
            "--ocsp-url",
            &ca.ocsp_url(),
        ]);
        support::ok(&mut init);
        ca
    }

    /// `ca --dir DIR [--db URL]`.
    fn cmd(&self, dir: &Path) -> Command {
        let mut cmd = support::ca(dir);
        if let Some(db) = &self.db {
            cmd.arg("--db").arg(db);
        }
        cmd
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    /// A path beside the CA's directory.
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The root: what clients trust.
    fn root(&self) -> PathBuf {
        self.path("root").join("ca.pem")
    }

    /// The issuing CA's certificate.
    fn issuer(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    fn crl_url(&self) -> String {
        format!("http://127.0.0.1:{}/crl", self.http_port)
    }

    fn ocsp_url(&self) -> String {
        format!("http://127.0.0.1:{}/ocsp", self.http_port)
    }

    /// A copy of the CA directory (certificate, key, chain, store settings; not the SQLite
    /// file), as a second instance's machine would hold.
    fn copy_dir(&self, name: &str) -> PathBuf {
        let copy = self.path(name);
        std::fs::create_dir(&copy).unwrap();
        for entry in std::fs::read_dir(self.dir()).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name();
            if file.to_string_lossy().starts_with("ca.db") {
                continue;
            }
            std::fs::copy(entry.path(), copy.join(&file)).unwrap();
        }
        copy
    }
}

/// What one `ca serve` is started with.
struct ServeOptions {
    /// The CA directory it serves.
    dir: PathBuf,
    /// `--base-url https://127.0.0.1:PORT`: its own port, or a load balancer's.
    base_port: u16,
    /// `--listen 127.0.0.1:PORT` (0: any).
    listen_port: u16,
    /// `--http-listen 127.0.0.1:PORT`.
    http_port: Option<u16>,
    /// `--va-http-port`, `--va-tls-port`.
    va_http_port: u16,
    va_tls_port: u16,
    /// More flags.
    extra: Vec<String>,
}

/// A running `ca serve`.
struct Serve {
    process: Running,
    https: SocketAddr,
    http: Option<SocketAddr>,
    log: PathBuf,
}

impl Serve {
    /// Starts `ca serve` and waits for its `listening on` lines; stderr goes to `log`.
    fn start(ca: &Ca, options: &ServeOptions, log: PathBuf) -> Serve {
        let mut cmd = ca.cmd(&options.dir);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", options.listen_port),
            "--base-url",
            &format!("https://127.0.0.1:{}", options.base_port),
            "--acme-hours",
            &ACME_HOURS.to_string(),
            "--va-http-port",
            &options.va_http_port.to_string(),
            "--va-tls-port",
            &options.va_tls_port.to_string(),
            "--va-resolve",
            "*=127.0.0.1",
        ]);
        if let Some(port) = options.http_port {
            cmd.args(["--http-listen", &format!("127.0.0.1:{port}")]);
        }
        cmd.args(&options.extra);
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
        let stdout = child.stdout.take().unwrap();
        let process = Running {
            child,
            what: format!("{cmd:?}"),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        let (mut https, mut http) = (None, None);
        while https.is_none() || (options.http_port.is_some() && http.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{} printed no `listening on` lines within {START_LIMIT:?}\nstderr: {}",
                    process.what,
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
            let address = |kind: &str| {
                line.strip_prefix("listening on ")
                    .and_then(|rest| rest.strip_suffix(kind))
                    .map(|a| a.trim().parse::<SocketAddr>().unwrap())
            };
            if let Some(a) = address("(https)") {
                https = Some(a);
            } else if let Some(a) = address("(http)") {
                http = Some(a);
            }
        }
        Serve {
            process,
            https: https.unwrap(),
            http,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One `ca serve` on its own ports, with `/crl` and `/ocsp` on the CA's HTTP port.
struct Single {
    ca: Ca,
    serve: Serve,
    va_http_port: u16,
    va_tls_port: u16,
}

impl Single {
    fn start() -> Single {
        Self::start_with(&[])
    }

    /// One instance with more flags.
    fn start_with(extra: &[&str]) -> Single {
        let ca = Ca::new(None);
        let (va_http_port, va_tls_port) = (free_port(), free_port());
        let port = free_port();
        let options = ServeOptions {
            dir: ca.dir(),
            base_port: port,
            listen_port: port,
            http_port: Some(ca.http_port),
            va_http_port,
            va_tls_port,
            extra: extra.iter().map(|flag| flag.to_string()).collect(),
        };
        let serve = Serve::start(&ca, &options, ca.path("serve.log"));
        assert_eq!(serve.https.port(), port);
        assert_eq!(serve.http.map(|a| a.port()), Some(ca.http_port));
        Single {
            ca,
            serve,
            va_http_port,
            va_tls_port,
        }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/acme/directory", self.serve.https.port())
    }

    /// Stops the instance (kill -9) and starts it again on the same ports, with the CA's
    /// current `--db`; its stderr goes to `log`.
    fn restart(&mut self, log: &str) {
        self.serve.process.kill();
        let port = self.serve.https.port();
        let options = ServeOptions {
            dir: self.ca.dir(),
            base_port: port,
            listen_port: port,
            http_port: Some(self.ca.http_port),
            va_http_port: self.va_http_port,
            va_tls_port: self.va_tls_port,
            extra: Vec::new(),
        };
        self.serve = Serve::start(&self.ca, &options, self.ca.path(log));
    }

    /// How many certificate rows the SQLite store holds for names under example.test, and how
    /// many orders point to a certificate.
    fn issued_and_orders(&self) -> (i64, i64) {
        let db = rusqlite::Connection::open(self.ca.dir().join("ca.db")).unwrap();
        let issued = db
            .query_row(
                "SELECT count(*) FROM certificates WHERE sans LIKE '%example.test%'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        let orders = db
            .query_row(
                "SELECT count(*) FROM acme_orders WHERE certificate IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .unwrap();
        (issued, orders)
    }
}

// ---------------------------------------------------------------------------------------------
// The clients

/// lego (Debian `lego`, 4.9) with `LEGO_CA_CERTIFICATES=ROOT`, its state in `path`.
fn lego(directory: &str, root: &Path, path: &Path, domain: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("lego");
    cmd.env("LEGO_CA_CERTIFICATES", root)
        .args(["--server", directory, "--accept-tos", "--email", "ci@example.test"])
        .arg("--path")
        .arg(path)
        .args(["--domains", domain])
        .args(args);
    support::run(&mut cmd, None, CLIENT_LIMIT)
}

/// lego's certificate for `domain` (leaf first, then the chain).
fn lego_certificate(path: &Path, domain: &str) -> PathBuf {
    path.join("certificates").join(format!("{domain}.crt"))
}

/// certbot (Debian `certbot`, 2.1) with `REQUESTS_CA_BUNDLE=ROOT`, its state in `dir`.
fn certbot(directory: &str, root: &Path, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("certbot");
    cmd.env("REQUESTS_CA_BUNDLE", root)
        .args(args)
        .args(["--server", directory, "--non-interactive"])
        .arg("--config-dir")
        .arg(dir.join("c"))
        .arg("--work-dir")
        .arg(dir.join("w"))
        .arg("--logs-dir")
        .arg(dir.join("l"));
    support::run(&mut cmd, None, CLIENT_LIMIT)
}

/// `certbot certonly --standalone` for `domain` on the http-01 port `port`.
fn certbot_certonly(directory: &str, root: &Path, dir: &Path, domain: &str, port: u16) -> Output {
    certbot(
        directory,
        root,
        dir,
        &[
            "certonly",
            "--standalone",
            "--http-01-port",
            &port.to_string(),
            "--http-01-address",
            "127.0.0.1",
            "--agree-tos",
            "--register-unsafely-without-email",
            "-d",
            domain,
        ],
    )
}

#[track_caller]
fn assert_ran(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

// ---------------------------------------------------------------------------------------------
// Independent checks of what the clients got

/// The first certificate of a PEM file, DER.
fn first_certificate(pem_file: &Path) -> Vec<u8> {
    let text = std::fs::read(pem_file).unwrap();
    let block = pem::parse_many(text)
        .unwrap()
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .unwrap_or_else(|| panic!("no certificate in {}", pem_file.display()));
    block.into_contents()
}

/// The leaf of `chain` written alone to `out` (PEM), for `openssl ocsp -cert`.
fn leaf_alone(chain: &Path, out: &Path) -> PathBuf {
    let der = first_certificate(chain);
    std::fs::write(out, pem::encode(&pem::Pem::new("CERTIFICATE", der))).unwrap();
    out.to_path_buf()
}

/// The serial (lowercase hex) of the leaf in `chain`, after checking it names exactly
/// `domain` and lives at most `--acme-hours`.
fn check_leaf(chain: &Path, domain: &str) -> String {
    let der = first_certificate(chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("a subjectAltName");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, [domain.to_string()], "{}", chain.display());
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        life <= i64::from(ACME_HOURS) * 3600 + 600,
        "{}: lives {life} s, longer than --acme-hours {ACME_HOURS}",
        chain.display()
    );
    cert.raw_serial_as_string().replace(':', "").to_ascii_lowercase()
}

/// `openssl verify -CAfile ROOT -untrusted CHAIN -purpose sslserver -verify_hostname DOMAIN`
/// succeeds for the leaf of `chain` (which must hold the issuing CA after the leaf).
fn assert_verifies(root: &Path, chain: &Path, domain: &str) {
    let leaf = leaf_alone(chain, &chain.with_extension("leaf.pem"));
    let out = support::openssl_output(&[
        "verify",
        "-CAfile",
        &s(root),
        "-untrusted",
        &s(chain),
        "-purpose",
        "sslserver",
        "-verify_hostname",
        domain,
        &s(&leaf),
    ]);
    assert_ran("openssl verify", &out);
    assert_eq!(stdout(&out).trim(), format!("{}: OK", s(&leaf)));
}

/// What `openssl ocsp` says about the leaf of `chain`: `good`, `revoked` or `unknown`.
fn ocsp_status(ca: &Ca, chain: &Path) -> String {
    ocsp_answer(ca, chain).0
}

/// `openssl ocsp`'s answer about the leaf of `chain`: its status, and how long it may be relied
/// on (its Next Update − This Update).
fn ocsp_answer(ca: &Ca, chain: &Path) -> (String, time::Duration) {
    let leaf = leaf_alone(chain, &chain.with_extension("ocsp.pem"));
    let out = support::openssl_output(&[
        "ocsp",
        "-url",
        &ca.ocsp_url(),
        "-issuer",
        &s(&ca.issuer()),
        "-CAfile",
        &s(&ca.root()),
        "-cert",
        &s(&leaf),
    ]);
    assert_ran("openssl ocsp", &out);
    assert!(
        stderr(&out).contains("Response verify OK"),
        "the OCSP response does not verify against the root: {}",
        stderr(&out)
    );
    let prefix = format!("{}: ", s(&leaf));
    let text = stdout(&out);
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|status| status.trim().to_string()))
        .unwrap_or_else(|| panic!("no status line in {text}"));
    let time_of = |label: &str| {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {text}"));
        openssl_time(line.trim())
    };
    (status, time_of("Next Update:") - time_of("This Update:"))
}

/// A time as openssl prints it: `Dec  1 09:00:00 2026 GMT`.
fn openssl_time(text: &str) -> time::OffsetDateTime {
    let format =
        time::macros::format_description!("[month repr:short] [day padding:none] [hour]:[minute]:[second] [year] GMT");
    let single_spaced = text.split_whitespace().collect::<Vec<_>>().join(" ");
    time::PrimitiveDateTime::parse(&single_spaced, format)
        .unwrap_or_else(|e| panic!("{text:?} is not openssl's time: {e}"))
        .assume_utc()
}

/// `openssl verify -crl_check -crl_download`: the CRL is fetched through the certificate's
/// CRL Distribution Point. Returns whether it verified, and what openssl said.
fn crl_verify(ca: &Ca, chain: &Path) -> (bool, String) {
    let leaf = leaf_alone(chain, &chain.with_extension("crl.pem"));
    let out = support::openssl_output(&[
        "verify",
        "-crl_check",
        "-crl_download",
        "-CAfile",
        &s(&ca.root()),
        "-untrusted",
        &s(&ca.issuer()),
        &s(&leaf),
    ]);
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

/// Polls `check` every 200 ms for at most `limit` (the server regenerates its CRL after a
/// revocation, which may take a moment).
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// After a revocation: OCSP says revoked and the CRL (downloaded) rejects the certificate.
fn assert_revoked(ca: &Ca, chain: &Path) {
    eventually(Duration::from_secs(20), "OCSP says revoked", || {
        match ocsp_status(ca, chain).as_str() {
            "revoked" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    eventually(
        Duration::from_secs(20),
        "the downloaded CRL rejects the certificate",
        || match crl_verify(ca, chain) {
            (false, said) if said.contains("certificate revoked") => Ok(()),
            (_, said) => Err(said),
        },
    );
}

/// Before a revocation: OCSP says good and the CRL check passes.
fn assert_good(ca: &Ca, chain: &Path) {
    assert_good_for(ca, chain, time::Duration::HOUR);
}

/// [`assert_good`], with answers that may be relied on for `lifetime` (`--ocsp-hours`).
fn assert_good_for(ca: &Ca, chain: &Path, lifetime: time::Duration) {
    assert_eq!(ocsp_answer(ca, chain), ("good".to_string(), lifetime));
    let (verified, said) = crl_verify(ca, chain);
    assert!(verified, "openssl verify -crl_check -crl_download: {said}");
}

// ---------------------------------------------------------------------------------------------
// lego and certbot against one instance

#[test]
fn lego_http01_tls_alpn01_renew_and_revoke() {
    if !support::require_tool("lego") {
        return;
    }
    let server = Single::start();
    let root = server.ca.root();
    let path = server.ca.path("lego");
    let http = format!("127.0.0.1:{}", server.va_http_port);
    let tls = format!("127.0.0.1:{}", server.va_tls_port);

    // http-01
    let out = lego(
        &server.directory(),
        &root,
        &path,
        "a.example.test",
        &["--http", "--http.port", &http, "run"],
    );
    assert_ran("lego run (http-01)", &out);
    let a = lego_certificate(&path, "a.example.test");
    let first_serial = check_leaf(&a, "a.example.test");
    assert_verifies(&root, &a, "a.example.test");
    assert_good(&server.ca, &a);

    // tls-alpn-01
    let out = lego(
        &server.directory(),
        &root,
        &path,
        "b.example.test",
        &["--tls", "--tls.port", &tls, "run"],
    );
    assert_ran("lego run (tls-alpn-01)", &out);
    let b = lego_certificate(&path, "b.example.test");
    check_leaf(&b, "b.example.test");
    assert_verifies(&root, &b, "b.example.test");

    // renew: a 24-hour certificate is within lego's 30 days
    let out = lego(
        &server.directory(),
        &root,
        &path,
        "a.example.test",
        &[
            "--http",
            "--http.port",
            &http,
            "renew",
            "--days",
            "30",
            "--no-random-sleep",
        ],
    );
    assert_ran("lego renew", &out);
    let renewed_serial = check_leaf(&a, "a.example.test");
    assert_ne!(renewed_serial, first_serial, "lego renew got the same certificate");
    assert_verifies(&root, &a, "a.example.test");

    // revoke (lego moves the files to archives/: keep a copy)
    let kept = server.ca.path("a-renewed.crt");
    std::fs::copy(&a, &kept).unwrap();
    let out = lego(&server.directory(), &root, &path, "a.example.test", &["revoke"]);
    assert_ran("lego revoke", &out);
    assert_revoked(&server.ca, &kept);
    // b is still good
    assert_good(&server.ca, &b);

    // Three orders, three certificates for example.test: nothing issued twice.
    assert_eq!(server.issued_and_orders(), (3, 3), "{}", server.serve.log());
}

/// An SQLite CA that served lego moves into PostgreSQL (`ca move-store`); after a restart on
/// PostgreSQL lego renews with the same account (it would be `accountDoesNotExist` if the
/// account had not moved) and revokes the new certificate; OCSP from PostgreSQL knows the one
/// issued before the move.
#[test]
fn lego_keeps_its_account_and_certificates_when_the_store_moves_to_postgresql() {
    if !support::require_tool("lego") {
        return;
    }
    let pg = pg_support::Postgres::start();
    let url = pg.url("ca");
    let mut server = Single::start();
    let root = server.ca.root();
    let path = server.ca.path("lego");
    let http = format!("127.0.0.1:{}", server.va_http_port);
    let out = lego(
        &server.directory(),
        &root,
        &path,
        "m.example.test",
        &["--http", "--http.port", &http, "run"],
    );
    assert_ran("lego run (before the move)", &out);
    let m = lego_certificate(&path, "m.example.test");
    let first_serial = check_leaf(&m, "m.example.test");
    let kept = server.ca.path("m-before-the-move.crt");
    std::fs::copy(&m, &kept).unwrap();

    // Stop the instance, move its store, start it again on PostgreSQL.
    server.serve.process.kill();
    server.ca.db = Some(url);
    let moved = support::ok(server.ca.cmd(&server.ca.dir()).arg("move-store"));
    assert!(moved.contains("1 acme accounts"), "{moved}");
    server.restart("serve-postgresql.log");

    let out = lego(
        &server.directory(),
        &root,
        &path,
        "m.example.test",
        &[
            "--http",
            "--http.port",
            &http,
            "renew",
            "--days",
            "30",
            "--no-random-sleep",
        ],
    );
    assert_ran("lego renew (after the move)", &out);
    let renewed_serial = check_leaf(&m, "m.example.test");
    assert_ne!(renewed_serial, first_serial);
    assert_verifies(&root, &m, "m.example.test");
    // lego revokes the renewed certificate (and moves its files to archives/: keep a copy);
    // the one issued before the move is known to PostgreSQL and still good.
    let renewed = server.ca.path("m-renewed.crt");
    std::fs::copy(&m, &renewed).unwrap();
    let out = lego(&server.directory(), &root, &path, "m.example.test", &["revoke"]);
    assert_ran("lego revoke (after the move)", &out);
    assert_revoked(&server.ca, &renewed);
    assert_good(&server.ca, &kept);
    let mut db = pg.client("ca");
    let count = |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM acme_accounts"),
        1,
        "one account, moved and reused"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM acme_orders WHERE certificate IS NOT NULL"
        ),
        2,
        "{}",
        server.serve.log()
    );
}

/// lego 4.9 (Debian) orders an IP address as a dns identifier, which RFC 8738 §3 does not
/// allow: the order is refused with a problem that says to use an ip identifier, even from an
/// instance that issues for the address (`--allow-ip`; instant-acme's ip identifiers get
/// certificates there, tests/ca_serve.rs).
#[test]
fn lego_is_told_that_an_ip_address_is_an_ip_identifier() {
    if !support::require_tool("lego") {
        return;
    }
    let server = Single::start_with(&["--allow-ip", "127.0.0.0/8"]);
    let path = server.ca.path("lego-ip");
    let http = format!("127.0.0.1:{}", server.va_http_port);
    let out = lego(
        &server.directory(),
        &server.ca.root(),
        &path,
        "127.0.0.1",
        &["--http", "--http.port", &http, "run"],
    );
    assert!(
        !out.status.success(),
        "lego got a certificate for a dns identifier 127.0.0.1"
    );
    assert!(
        stderr(&out).contains("rejectedIdentifier") && stderr(&out).contains("order it as an ip identifier"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.issued_and_orders(), (0, 0));
}

#[test]
fn certbot_certonly_standalone_then_revoke() {
    if !support::require_tool("certbot") {
        return;
    }
    // Also: OCSP answers that may be relied on for 8 hours (lego's test sees the default 1).
    let server = Single::start_with(&["--ocsp-hours", "8"]);
    let root = server.ca.root();
    let dir = server.ca.path("certbot");
    let out = certbot_certonly(&server.directory(), &root, &dir, "c.example.test", server.va_http_port);
    assert_ran("certbot certonly", &out);
    let live = dir.join("c/live/c.example.test");
    let cert = live.join("cert.pem");
    check_leaf(&cert, "c.example.test");
    assert_verifies(&root, &live.join("fullchain.pem"), "c.example.test");
    assert_good_for(&server.ca, &cert, time::Duration::hours(8));

    let out = certbot(
        &server.directory(),
        &root,
        &dir,
        &[
            "revoke",
            "--cert-path",
            &s(&cert),
            "--reason",
            "keycompromise",
            "--no-delete-after-revoke",
        ],
    );
    assert_ran("certbot revoke", &out);
    assert_revoked(&server.ca, &cert);
    assert_eq!(server.issued_and_orders(), (1, 1), "{}", server.serve.log());
}

#[test]
fn lego_is_refused_a_name_outside_the_name_constraints() {
    if !support::require_tool("lego") {
        return;
    }
    let server = Single::start();
    let path = server.ca.path("lego");
    let http = format!("127.0.0.1:{}", server.va_http_port);
    let out = lego(
        &server.directory(),
        &server.ca.root(),
        &path,
        "www.example.org",
        &["--http", "--http.port", &http, "run"],
    );
    assert!(!out.status.success(), "lego got a certificate for www.example.org");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("urn:ietf:params:acme:error:rejectedIdentifier"),
        "lego did not report rejectedIdentifier: {said}"
    );
    assert_eq!(server.issued_and_orders(), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Pebble, the reference ACME server, as a differential oracle

/// Pebble (Debian `pebble`) with its DNS from pebble-challtestsrv answering 127.0.0.1 for every
/// name, its HTTPS certificate issued by `ca`, its VA on `va_http_port` / `va_tls_port`.
struct Pebble {
    _dns: Running,
    _pebble: Running,
    port: u16,
    log: PathBuf,
}

impl Pebble {
    fn start(ca: &Ca, va_http_port: u16, va_tls_port: u16) -> Pebble {
        let dir = ca.path("pebble");
        std::fs::create_dir(&dir).unwrap();
        let prefix = dir.join("srv");
        support::ok(ca.cmd(&ca.dir()).args([
            "issue",
            "--profile",
            "server",
            "--name",
            "pebble.example.test",
            "--san",
            "ip:127.0.0.1",
            "--out",
            &s(&prefix),
        ]));
        let (port, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": s(&dir.join("srv.chain.pem")),
            "privateKey": s(&dir.join("srv.key")),
            "httpPort": va_http_port,
            "tlsPort": va_tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let spawn = |cmd: &mut Command, log: &Path| {
            cmd.stdin(Stdio::null())
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(Stdio::from(std::fs::File::options().append(true).open(log).unwrap()));
            Running {
                child: cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}")),
                what: format!("{cmd:?}"),
            }
        };
        let dns_process = spawn(
            Command::new("pebble-challtestsrv").args([
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
            ]),
            &dir.join("challtestsrv.log"),
        );
        let log = dir.join("pebble.log");
        let pebble = spawn(
            Command::new("pebble")
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")]),
            &log,
        );
        eventually(START_LIMIT, "Pebble listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| format!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()))
        });
        Pebble {
            _dns: dns_process,
            _pebble: pebble,
            port,
            log,
        }
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }
}

/// How one lego flow ended: `ok` with the names of the certificate, or the ACME error type
/// lego reported.
fn outcome(out: &Output, certificate: &Path, domain: &str) -> String {
    if out.status.success() {
        check_leaf_names(certificate, domain);
        return "ok".to_string();
    }
    let said = format!("{}{}", stdout(out), stderr(out));
    said.split("urn:ietf:params:acme:error:")
        .nth(1)
        .map(|rest| {
            let kind: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            format!("error:{kind}")
        })
        .unwrap_or_else(|| format!("failed without an ACME error: {said}"))
}

/// The leaf of `chain` names exactly `domain`.
fn check_leaf_names(chain: &Path, domain: &str) {
    let der = first_certificate(chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("a subjectAltName");
    assert!(
        matches!(san.value.general_names.as_slice(), [GeneralName::DNSName(d)] if *d == domain),
        "{}: {:?}",
        chain.display(),
        san.value.general_names
    );
}

/// The same lego flows against Pebble and against `ca serve`: http-01 and tls-alpn-01 succeed,
/// revoke succeeds, and an http-01 answer on a port the VA does not dial fails with the
/// `connection` error type at both.
fn lego_flows(directory: &str, root: &Path, path: &Path, va_http_port: u16, va_tls_port: u16) -> Vec<String> {
    let http = format!("127.0.0.1:{va_http_port}");
    let tls = format!("127.0.0.1:{va_tls_port}");
    let wrong = format!("127.0.0.1:{}", free_port());
    let mut ends = Vec::new();
    let flows: [(&str, Vec<&str>); 4] = [
        ("d.example.test", vec!["--http", "--http.port", &http, "run"]),
        ("e.example.test", vec!["--tls", "--tls.port", &tls, "run"]),
        ("d.example.test", vec!["revoke"]),
        ("f.example.test", vec!["--http", "--http.port", &wrong, "run"]),
    ];
    for (domain, args) in flows {
        let certificate = lego_certificate(path, domain);
        let out = lego(directory, root, path, domain, &args);
        let end = if args == ["revoke"] {
            if out.status.success() {
                "ok".to_string()
            } else {
                outcome(&out, &certificate, domain)
            }
        } else {
            outcome(&out, &certificate, domain)
        };
        ends.push(format!("{domain} {}: {end}", args.last().unwrap()));
    }
    ends
}

#[test]
fn lego_ends_the_same_way_against_pebble_and_ca_serve() {
    if !support::require_tool("lego") || !support::require_tool("pebble") {
        return;
    }
    let server = Single::start();
    let ours = lego_flows(
        &server.directory(),
        &server.ca.root(),
        &server.ca.path("lego-ours"),
        server.va_http_port,
        server.va_tls_port,
    );
    let (va_http_port, va_tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(&server.ca, va_http_port, va_tls_port);
    let theirs = lego_flows(
        &pebble.directory(),
        &server.ca.root(),
        &server.ca.path("lego-pebble"),
        va_http_port,
        va_tls_port,
    );
    assert_eq!(
        theirs,
        [
            "d.example.test run: ok",
            "e.example.test run: ok",
            "d.example.test revoke: ok",
            "f.example.test run: error:connection",
        ],
        "Pebble did not end as expected (the oracle itself): {}",
        std::fs::read_to_string(&pebble.log).unwrap_or_default()
    );
    assert_eq!(ours, theirs, "ca serve log: {}", server.serve.log());
}

// ---------------------------------------------------------------------------------------------
// Two instances on one PostgreSQL behind HAProxy

/// HAProxy (Debian `haproxy`) in `mode tcp` in front of `servers`, health checks every 500 ms
/// with `send-proxy-v2` (PEERS.md's configuration); stopped by PID on drop.
struct HaProxy {
    _process: Running,
    stats: PathBuf,
}

impl HaProxy {
    /// One frontend per `(port, servers)`: ACME over HTTPS, and the CRL and OCSP over HTTP.
    fn start(dir: &Path, frontends: &[(u16, &[SocketAddr])]) -> HaProxy {
        let stats = dir.join("haproxy.sock");
        let mut config = format!(
            "global\n  stats socket {} level admin\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 35s\n  timeout server 35s\n  \
             retries 2\n  option redispatch\n",
            stats.display()
        );
        for (f, (port, servers)) in frontends.iter().enumerate() {
            config.push_str(&format!(
                "frontend f{f}\n  bind 127.0.0.1:{port}\n  default_backend serve{f}\n\
                 backend serve{f}\n  balance leastconn\n  \
                 default-server check inter 500ms fall 2 rise 2 send-proxy-v2\n"
            ));
            for (i, server) in servers.iter().enumerate() {
                config.push_str(&format!("  server b{} {server}\n", i + 1));
            }
        }
        let servers: Vec<SocketAddr> = frontends.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &config).unwrap();
        let check = Command::new("haproxy").arg("-c").arg("-f").arg(&path).output().unwrap();
        assert!(check.status.success(), "haproxy -c: {}\n{config}", stderr(&check));
        let log = dir.join("haproxy.log");
        let mut cmd = Command::new("haproxy");
        cmd.arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()));
        let process = Running {
            child: cmd.spawn().expect("haproxy starts"),
            what: "haproxy".into(),
        };
        let haproxy = HaProxy {
            _process: process,
            stats,
        };
        eventually(Duration::from_secs(30), "every server is UP in HAProxy", || {
            let up = haproxy.statuses();
            if up.len() == servers.len() && up.iter().all(|s| s == "UP") {
                Ok(())
            } else {
                Err(format!("{up:?}: {}", std::fs::read_to_string(&log).unwrap_or_default()))
            }
        });
        haproxy
    }

    /// The status column of every backend server (`show stat` on the stats socket).
    fn statuses(&self) -> Vec<String> {
        use std::io::{Read, Write};
        let Ok(mut socket) = std::os::unix::net::UnixStream::connect(&self.stats) else {
            return Vec::new();
        };
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if socket.write_all(b"show stat\n").is_err() {
            return Vec::new();
        }
        let mut csv = String::new();
        let _ = socket.read_to_string(&mut csv);
        csv.lines()
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|row| {
                row.first().is_some_and(|b| b.starts_with("serve")) && row.get(1).is_some_and(|n| n.starts_with('b'))
            })
            .filter_map(|row| row.get(17).map(|s| s.to_string()))
            .collect()
    }
}

/// One lease row: (holder, fencing token, good until).
fn leases(db: &mut postgres::Client) -> Vec<(String, String, i64, i64)> {
    db.query(
        "SELECT name, holder, token, good_until FROM acme_leases ORDER BY name",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
    .collect()
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Runs `attempt` up to three times until it succeeds (a request in flight on the instance
/// that was killed is lost; the client's next run goes through the survivor).
fn with_retries(what: &str, mut attempt: impl FnMut() -> Output) -> Output {
    let mut tries = Vec::new();
    for n in 1..=3 {
        let out = attempt();
        if out.status.success() {
            eprintln!("{what}: succeeded at attempt {n}");
            return out;
        }
        tries.push(format!("stdout: {}\nstderr: {}", stdout(&out), stderr(&out)));
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{what} failed three times:\n{}", tries.join("\n---\n"));
}

#[test]
fn two_instances_on_postgresql_behind_haproxy_survive_a_kill_9() {
    if !support::require_tool("haproxy") || !support::require_tool("lego") || !support::require_tool("certbot") {
        return;
    }
    let pg = pg_support::Postgres::start();
    let ca = Ca::new(Some(pg.url("ca")));
    let second_dir = ca.copy_dir("ca2");
    let frontend = free_port();
    let (va_http_port, va_tls_port) = (free_port(), free_port());
    let ports = [free_port(), free_port()];
    let options = |dir: PathBuf, port: u16, http_port: u16| ServeOptions {
        dir,
        base_port: frontend,
        listen_port: port,
        http_port: Some(http_port),
        va_http_port,
        va_tls_port,
        extra: vec!["--proxy-protocol".into()],
    };
    let mut db = pg.client("ca");

    // The first instance starts alone and takes the leases; the second joins it. HAProxy takes
    // the ACME port (--base-url) and the port of the certificates' CRL and OCSP URLs.
    let mut first = Serve::start(&ca, &options(ca.dir(), ports[0], free_port()), ca.path("serve1.log"));
    eventually(Duration::from_secs(30), "the first instance holds a lease", || {
        if leases(&mut db).is_empty() {
            Err("no lease row".into())
        } else {
            Ok(())
        }
    });
    let before_kill = leases(&mut db);
    let second = Serve::start(&ca, &options(second_dir, ports[1], free_port()), ca.path("serve2.log"));
    let servers = [first.https, second.https];
    let http_servers = [first.http.unwrap(), second.http.unwrap()];
    let haproxy = HaProxy::start(ca.tmp.path(), &[(frontend, &servers), (ca.http_port, &http_servers)]);
    let directory = format!("https://127.0.0.1:{frontend}/acme/directory");

    // lego (tls-alpn-01) and certbot (http-01) at once; the first instance is killed once an
    // order exists.
    let root = ca.root();
    let lego_path = ca.path("lego");
    let certbot_dir = ca.path("certbot");
    let clients = std::thread::scope(|scope| {
        let lego_run = scope.spawn(|| {
            with_retries("lego through HAProxy", || {
                lego(
                    &directory,
                    &root,
                    &lego_path,
                    "g.example.test",
                    &["--tls", "--tls.port", &format!("127.0.0.1:{va_tls_port}"), "run"],
                )
            })
        });
        let certbot_run = scope.spawn(|| {
            with_retries("certbot through HAProxy", || {
                certbot_certonly(&directory, &root, &certbot_dir, "h.example.test", va_http_port)
            })
        });
        eventually(Duration::from_secs(60), "an order exists", || {
            let orders: i64 = db.query_one("SELECT count(*) FROM acme_orders", &[]).unwrap().get(0);
            if orders > 0 { Ok(()) } else { Err("no order yet".into()) }
        });
        // Mid-run: an order exists and the clients have not finished.
        let running = [!lego_run.is_finished(), !certbot_run.is_finished()];
        first.process.kill();
        (running, lego_run.join().unwrap(), certbot_run.join().unwrap())
    });
    eprintln!(
        "clients still running when the first instance was killed (lego, certbot): {:?}",
        clients.0
    );
    assert!(
        clients.0.iter().any(|r| *r),
        "both clients had finished before the kill"
    );

    let lego_chain = lego_certificate(&lego_path, "g.example.test");
    check_leaf(&lego_chain, "g.example.test");
    assert_verifies(&root, &lego_chain, "g.example.test");
    let certbot_chain = certbot_dir.join("c/live/h.example.test/fullchain.pem");
    check_leaf(&certbot_chain, "h.example.test");
    assert_verifies(&root, &certbot_chain, "h.example.test");

    // The leases pass to the survivor once the dead holder's run out: a new holder, a higher
    // fencing token, renewed after the kill.
    let expiry = before_kill.iter().map(|l| l.3).max().unwrap();
    let wait = u64::try_from((expiry - unix_now()).max(0)).unwrap() + 30;
    eventually(Duration::from_secs(wait), "the leases pass to the survivor", || {
        let now = leases(&mut db);
        for (name, holder, token, good_until) in &before_kill {
            let Some(after) = now.iter().find(|l| &l.0 == name) else {
                return Err(format!("lease {name} disappeared"));
            };
            if after.1 == *holder || after.2 <= *token || after.3 <= *good_until {
                return Err(format!(
                    "lease {name}: before {holder} {token} {good_until}, now {after:?}"
                ));
            }
        }
        eprintln!("leases before the kill: {before_kill:?}\nleases after: {now:?}");
        Ok(())
    });

    // Revocation through the survivor: its CRL (regenerated under the lease it now holds) and
    // its OCSP say revoked.
    let kept = ca.path("g.crt");
    std::fs::copy(&lego_chain, &kept).unwrap();
    let out = lego(&directory, &root, &lego_path, "g.example.test", &["revoke"]);
    assert_ran("lego revoke through HAProxy", &out);
    assert_revoked(&ca, &kept);

    // No order issued twice: one certificate per order that has one, and no certificate for
    // example.test without an order.
    let issued: i64 = db
        .query_one(
            "SELECT count(*) FROM certificates WHERE sans LIKE '%example.test%'",
            &[],
        )
        .unwrap()
        .get(0);
    let orders: i64 = db
        .query_one(
            "SELECT count(DISTINCT certificate) FROM acme_orders WHERE certificate IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    let twice: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT certificate FROM acme_orders WHERE certificate IS NOT NULL \
             GROUP BY certificate HAVING count(*) > 1) AS t",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!((issued, orders, twice), (issued, issued, 0), "{}", second.log());
    assert!(issued >= 2, "{issued} certificates for two clients");
    drop(haproxy);
}
