//! `ca serve` (ACME, RFC 8555) in process and as the `ca` tool: a real client (instant-acme)
//! through http-01 with a real responder, certificates checked by `openssl verify`, ARI, and
//! hand-signed JWS requests that must be refused, with rows counted in the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros,
    missing_docs
)]

mod pg_support;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use tessera::ca::serve::{BaseUrl, ServeConfig, ServeHandle};
use tessera::ca::{CertificateAuthority, InitRequest};
use tessera::pki::pem;

/// Every test's overall limit.
const LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The server under test

/// A CA (root, permitted DNS names under example.test and the address 127.0.0.1) served in
/// process on a free loopback port.
struct Server {
    tmp: TempDir,
    base: String,
    address: SocketAddr,
    /// The plain-HTTP listener (`/crl`, `/ocsp`, `/ca.pem`).
    http: SocketAddr,
    handle: ServeHandle,
    service: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let mut request = InitRequest::new("ACME Test Root");
        request.permitted_dns = vec!["example.test".into()];
        request.permitted_ip = vec![("127.0.0.1".parse().unwrap(), 32)];
        let ca = CertificateAuthority::init(&dir, &request, None, OffsetDateTime::now_utc()).unwrap();
        Self::start_with(tmp, ca, |config| {
            config.va.resolve = vec![("*".into(), "127.0.0.1".parse().unwrap())];
            configure(config);
        })
        .await
    }

    /// Serves `ca` (made in `tmp/ca`) on loopback, with its root written to `tmp/root.pem`.
    async fn start_with(tmp: TempDir, ca: CertificateAuthority, configure: impl FnOnce(&mut ServeConfig)) -> Self {
        std::fs::write(tmp.path().join("root.pem"), pem::to_pem(pem::CERTIFICATE, ca.root())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let base = format!("https://127.0.0.1:{}", address.port());
        let mut config = ServeConfig::new(BaseUrl::parse(&base).unwrap());
        configure(&mut config);
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let (handle, service) = tessera::ca::serve::serve(ca, config, listener, Some(http_listener))
            .await
            .unwrap();
        let service = tokio::spawn(service);
        Self {
            tmp,
            base,
            address,
            http,
            handle,
            service,
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    fn directory_url(&self) -> String {
        format!("{}/acme/directory", self.base)
    }

    /// One count from the SQLite store.
    fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.dir().join("ca.db")).unwrap();
        db.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    fn certificates(&self) -> i64 {
        self.count("SELECT count(*) FROM certificates")
    }

    async fn stop(self) {
        self.handle.shutdown("end of test");
        tokio::time::timeout(Duration::from_secs(30), self.service)
            .await
            .expect("the service stops after shutdown")
            .unwrap();
    }
}

/// Where an ACME server under test answers: an in-process [`Server`], or a `ca serve` process
/// ([`ServeProcess`]).
trait Endpoint: Sync {
    /// `--base-url`: what every ACME URL and each JWS `url` starts with.
    fn base(&self) -> &str;
    /// The HTTPS listener to connect to (behind a load balancer, not the base URL's).
    fn address(&self) -> SocketAddr;
    /// The root (PEM) the HTTPS certificate chains to.
    fn root_pem(&self) -> PathBuf;

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }
}

impl Endpoint for Server {
    fn base(&self) -> &str {
        &self.base
    }

    fn address(&self) -> SocketAddr {
        self.address
    }

    fn root_pem(&self) -> PathBuf {
        self.tmp.path().join("root.pem")
    }
}

// ---------------------------------------------------------------------------------------------
// An http-01 responder (RFC 8555 §8.3)

/// Serves `/.well-known/acme-challenge/TOKEN` from a map, on a free loopback port.
struct Responder {
    port: u16,
    answers: Arc<Mutex<HashMap<String, String>>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (map, seen) = (Arc::clone(&answers), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (map, seen) = (Arc::clone(&map), Arc::clone(&seen));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let path = request.uri().path().to_string();
                        seen.lock().unwrap().push(path.clone());
                        let answer = path
                            .strip_prefix("/.well-known/acme-challenge/")
                            .and_then(|token| map.lock().unwrap().get(token).cloned());
                        async move {
                            let response = match answer {
                                Some(body) => {
                                    hyper::Response::new(http_body_util::Full::new(axum::body::Bytes::from(body)))
                                }
                                None => {
                                    let mut r =
                                        hyper::Response::new(http_body_util::Full::new(axum::body::Bytes::new()));
                                    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    r
                                }
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            port,
            answers,
            requests,
            task,
        }
    }

    fn answer(&self, token: &str, key_authorization: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_string(), key_authorization.to_string());
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTPS client and hand-signed JWS (RFC 7515 flattened JSON, ES256)

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The problem type's last part (`badNonce`, …).
    fn problem(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "status {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let kind = self.json()["type"].as_str().unwrap().to_string();
        kind.strip_prefix("urn:ietf:params:acme:error:").unwrap().to_string()
    }
}

fn tls_client(root: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for der in pem::load_certificates(root).unwrap() {
        roots.add(der).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 request over a fresh TLS connection (`Connection: close`).
async fn request(
    server: &(impl Endpoint + ?Sized),
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    try_request(server.address(), &server.root_pem(), method, path, content_type, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`request`] to `address` (HTTPS, its certificate chaining to the PEM `root`), or why no
/// complete response came (the connection failed or closed early: a server killed meanwhile).
async fn try_request(
    address: SocketAddr,
    root: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Reply, String> {
    let connector = tls_client(root);
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("no TLS handshake: {e}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        address.port(),
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    // A server that refuses a large body may close before reading it all.
    let _ = tls.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let reply = try_parse_reply(&raw)?;
    // Cut off: fewer bytes than announced (a HEAD response announces a body it does not send).
    if let Some(length) = reply.header("content-length").and_then(|n| n.parse::<usize>().ok())
        && method != "HEAD"
        && length != reply.body.len()
    {
        return Err(format!("a body of {} bytes of {length}", reply.body.len()));
    }
    Ok(reply)
}

fn parse_reply(raw: &[u8]) -> Reply {
    try_parse_reply(raw).unwrap_or_else(|e| panic!("{e}"))
}

/// An HTTP/1.1 response (chunked bodies joined), or what is wrong with `raw`.
fn try_parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or("a chunked body cut off")?;
    }
    Ok(Reply { status, headers, body })
}

/// A chunked body joined; `None` when it is cut off before its last chunk.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(end + 2..end + 2 + size)?);
        data = data.get(end + 2 + size + 2..)?;
    }
}

/// An ES256 account key that signs requests by hand.
struct Signer {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        Self::from_pkcs8(pkcs8)
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Self {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        Self { pair, pkcs8, rng }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"crv": "P-256", "kty": "EC", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
    }

    /// A flattened JWS over `payload` (`None`: POST-as-GET) with this protected header.
    fn sign(&self, protected: &Value, payload: Option<&Value>) -> Vec<u8> {
        let protected = B64.encode(serde_json::to_vec(protected).unwrap());
        let payload = payload.map_or_else(String::new, |p| B64.encode(serde_json::to_vec(p).unwrap()));
        let signature = self
            .pair
            .sign(&self.rng, format!("{protected}.{payload}").as_bytes())
            .unwrap();
        serde_json::to_vec(&json!({
            "protected": protected,
            "payload": payload,
            "signature": B64.encode(signature.as_ref()),
        }))
        .unwrap()
    }
}

/// A hand-driven ACME client on one account.
struct Client<'a> {
    server: &'a dyn Endpoint,
    key: Signer,
    kid: Option<String>,
}

impl<'a> Client<'a> {
    async fn nonce(&self) -> String {
        let reply = request(self.server, "HEAD", "/acme/new-nonce", None, b"").await;
        assert_eq!(reply.status, 200);
        reply.header("replay-nonce").unwrap().to_string()
    }

    fn protected(&self, nonce: &str, path: &str) -> Value {
        let mut header = json!({"alg": "ES256", "nonce": nonce, "url": self.server.url(path)});
        match &self.kid {
            Some(kid) => header["kid"] = json!(kid),
            None => header["jwk"] = self.key.jwk(),
        }
        header
    }

    async fn post(&self, path: &str, payload: Option<&Value>) -> Reply {
        let nonce = self.nonce().await;
        let body = self.key.sign(&self.protected(&nonce, path), payload);
        request(self.server, "POST", path, Some("application/jose+json"), &body).await
    }

    async fn register(server: &'a dyn Endpoint) -> Client<'a> {
        Self::register_with(server, Signer::new()).await
    }

    async fn register_with(server: &'a dyn Endpoint, key: Signer) -> Client<'a> {
        let mut client = Client { server, key, kid: None };
        let reply = client
            .post("/acme/new-account", Some(&json!({"termsOfServiceAgreed": true})))
            .await;
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
        client.kid = Some(reply.header("location").unwrap().to_string());
        client
    }

    /// newOrder for `names`; the reply.
    async fn order(&self, names: &[&str]) -> Reply {
        let identifiers: Vec<Value> = names.iter().map(|n| json!({"type": "dns", "value": n})).collect();
        self.post("/acme/new-order", Some(&json!({"identifiers": identifiers})))
            .await
    }

    fn path_of(&self, url: &str) -> String {
        url.strip_prefix(self.server.base()).unwrap().to_string()
    }

    /// Waits (bounded) until the resource at `url` leaves `processing`/`pending`.
    async fn settle(&self, url: &str) -> Value {
        for _ in 0..100 {
            let value = self.post(&self.path_of(url), None).await.json();
            let status = value["status"].as_str().unwrap().to_string();
            if status != "processing" && status != "pending" {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{url} did not settle");
    }
}

/// A CSR (DER) for `names` with no subject, from a new P-256 key; the key's PKCS#8.
fn csr(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let request = params.serialize_request(&key).unwrap();
    (request.der().to_vec(), key.serialize_der())
}

/// `openssl verify` accepts the leaf of `chain_pem` (leaf first) against the server's root, as
/// a TLS server for `name` (`-verify_ip` for an address, else `-verify_hostname`).
fn assert_openssl_verifies(server: &Server, chain_pem: &str, name: &str) {
    let chain = pem::parse_certificates(chain_pem.as_bytes(), "chain").unwrap();
    let chain_path = server.tmp.path().join(format!("{name}.chain.pem"));
    std::fs::write(&chain_path, chain_pem).unwrap();
    let leaf_path = server.tmp.path().join(format!("{name}.pem"));
    std::fs::write(&leaf_path, pem::to_pem(pem::CERTIFICATE, &chain[0])).unwrap();
    let check = if name.parse::<std::net::IpAddr>().is_ok() {
        "-verify_ip"
    } else {
        "-verify_hostname"
    };
    let out = support::openssl(&[
        "verify",
        "-CAfile",
        &support::s(&server.root_pem()),
        "-untrusted",
        &support::s(&chain_path),
        "-purpose",
        "sslserver",
        check,
        name,
        &support::s(&leaf_path),
    ]);
    assert!(out.status.success(), "{name}: {}", support::stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// A real client: instant-acme

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instant_acme_obtains_a_certificate_over_http_01_with_ari_and_revocation() {
    tokio::time::timeout(LIMIT, async {
        let responder = Responder::start().await;
        let port = responder.port;
        let server = Server::start(|config| config.va.http_port = port).await;
        let (account, _) = instant_acme::Account::builder_with_root(server.root_pem())
            .unwrap()
            .create(
                &instant_acme::NewAccount {
                    contact: &["mailto:ci@example.test"],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                server.directory_url(),
                None,
            )
            .await
            .unwrap();
        let identifiers = [instant_acme::Identifier::Dns("www.example.test".into())];
        let mut order = account
            .new_order(&instant_acme::NewOrder::new(&identifiers))
            .await
            .unwrap();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.unwrap();
            assert_eq!(authorization.status, instant_acme::AuthorizationStatus::Pending);
            let mut challenge = authorization.challenge(instant_acme::ChallengeType::Http01).unwrap();
            responder.answer(&challenge.token, challenge.key_authorization().as_str());
            challenge.set_ready().await.unwrap();
        }
        let retries = instant_acme::RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .timeout(Duration::from_secs(30));
        let status = order.poll_ready(&retries).await.unwrap();
        assert_eq!(status, instant_acme::OrderStatus::Ready);
        // The server's validation authority really fetched the key authorization.
        assert!(
            responder
                .requests
                .lock()
                .unwrap()
                .iter()
                .any(|p| p.starts_with("/.well-known/acme-challenge/")),
            "no http-01 request reached the responder"
        );
        let before = server.certificates();
        let (csr, _key) = csr(&["www.example.test"]);
        order.finalize_csr(&csr).await.unwrap();
        let chain_pem = order.poll_certificate(&retries).await.unwrap();
        assert_eq!(server.certificates(), before + 1, "one certificate recorded");

        // The chain verifies with openssl against the root, for the name, as a server.
        assert_openssl_verifies(&server, &chain_pem, "www.example.test");
        let chain = pem::parse_certificates(chain_pem.as_bytes(), "chain").unwrap();
        let info = tessera::pki::CertificateInfo::from_der(&chain[0]).unwrap();
        assert_eq!(
            info.sans,
            [tessera::pki::SubjectAltName::Dns("www.example.test".into())]
        );
        let life = info.not_after - OffsetDateTime::now_utc();
        assert!(
            life <= time::Duration::hours(24) && life > time::Duration::hours(23),
            "{life}"
        );

        // ARI (RFC 9773): a window inside the certificate's validity.
        let id = instant_acme::CertificateIdentifier::try_from(&chain[0]).unwrap();
        let (renewal, _) = account.renewal_info(&id).await.unwrap();
        let start = renewal.suggested_window.start;
        let end = renewal.suggested_window.end;
        assert!(start < end, "{start} < {end}");
        assert!(
            start > info.not_before && end < info.not_after,
            "{start}..{end} in {}..{}",
            info.not_before,
            info.not_after
        );

        // revokeCert by the account; the CRL at /crl lists it; a second is alreadyRevoked.
        account
            .revoke(&instant_acme::RevocationRequest {
                certificate: &chain[0],
                reason: Some(instant_acme::RevocationReason::Superseded),
            })
            .await
            .unwrap();
        let crl = request(&server, "GET", "/crl", None, b"").await;
        assert_eq!(crl.status, 200);
        assert_eq!(crl.header("content-type"), Some("application/pkix-crl"));
        let listed = tessera::pki::CrlInfo::from_der(&crl.body).unwrap();
        assert!(listed.revoked.iter().any(|r| r.serial == info.serial), "{listed:?}");
        let again = account
            .revoke(&instant_acme::RevocationRequest {
                certificate: &chain[0],
                reason: None,
            })
            .await
            .unwrap_err();
        assert!(
            again.to_string().contains("alreadyRevoked") || format!("{again:?}").contains("alreadyRevoked"),
            "{again:?}"
        );
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

/// RFC 8738: instant-acme orders a certificate for the IP address 127.0.0.1 (an ip identifier)
/// from a server started with --allow-ip; the VA fetches http-01 from the address itself, the
/// certificate's one subjectAltName is the iPAddress (critical, empty subject), and `openssl
/// verify -verify_ip` accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instant_acme_obtains_a_certificate_for_an_ip_address() {
    tokio::time::timeout(LIMIT, async {
        let responder = Responder::start().await;
        let port = responder.port;
        let server = Server::start(|config| {
            config.va.http_port = port;
            // --va-resolve sends every name elsewhere: the address is dialled as it is.
            config.va.resolve = vec![("*".into(), "192.0.2.1".parse().unwrap())];
            config.va.allow_ip = vec![tessera::channel::Cidr::parse("127.0.0.0/8").unwrap()];
        })
        .await;
        let (account, _) = instant_acme::Account::builder_with_root(server.root_pem())
            .unwrap()
            .create(
                &instant_acme::NewAccount {
                    contact: &[],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                server.directory_url(),
                None,
            )
            .await
            .unwrap();
        let identifiers = [instant_acme::Identifier::Ip("127.0.0.1".parse().unwrap())];
        let mut order = account
            .new_order(&instant_acme::NewOrder::new(&identifiers))
            .await
            .unwrap();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.unwrap();
            assert_eq!(
                authorization.identifier().identifier,
                &instant_acme::Identifier::Ip("127.0.0.1".parse().unwrap())
            );
            // http-01 and tls-alpn-01, never dns-01 (RFC 8738 §7).
            let kinds: Vec<_> = authorization.challenges.iter().map(|c| c.r#type.clone()).collect();
            assert_eq!(
                kinds,
                [
                    instant_acme::ChallengeType::Http01,
                    instant_acme::ChallengeType::TlsAlpn01
                ]
            );
            let mut challenge = authorization.challenge(instant_acme::ChallengeType::Http01).unwrap();
            responder.answer(&challenge.token, challenge.key_authorization().as_str());
            challenge.set_ready().await.unwrap();
        }
        let retries = instant_acme::RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .timeout(Duration::from_secs(30));
        assert_eq!(
            order.poll_ready(&retries).await.unwrap(),
            instant_acme::OrderStatus::Ready
        );
        let (csr, _key) = csr(&["127.0.0.1"]);
        order.finalize_csr(&csr).await.unwrap();
        let chain_pem = order.poll_certificate(&retries).await.unwrap();
        let chain = pem::parse_certificates(chain_pem.as_bytes(), "chain").unwrap();
        let info = tessera::pki::CertificateInfo::from_der(&chain[0]).unwrap();
        assert_eq!(
            info.sans,
            [tessera::pki::SubjectAltName::Ip("127.0.0.1".parse().unwrap())]
        );
        assert_eq!(
            info.subject, "",
            "the address only as an iPAddress, under an empty subject"
        );
        assert_eq!(
            info.subject, "",
            "an empty subject, the address in a critical subjectAltName"
        );
        assert_openssl_verifies(&server, &chain_pem, "127.0.0.1");
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

/// Which ip identifiers newOrder refuses, and why (RFC 8738 §3): none without --allow-ip; not
/// canonical (saying the canonical form); IPv4-mapped; special-purpose; outside --allow-ip;
/// outside the CA's name constraints; and an address as a dns identifier, in any spelling
/// (one hint). Several refusals: one problem whose type agrees with theirs. A CSR whose address
/// is a dNSName does not match an ip order, and is told so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ip_identifiers_are_refused_where_rfc_8738_or_the_server_says_no() {
    tokio::time::timeout(LIMIT, async {
        let refused = |reply: &Reply| -> String {
            assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
            let problem = reply.json();
            assert_eq!(
                problem["type"], "urn:ietf:params:acme:error:rejectedIdentifier",
                "{problem}"
            );
            problem["detail"].as_str().unwrap().to_string()
        };
        let ip_order = |value: &str| json!({"identifiers": [{"type": "ip", "value": value}]});
        let plain = Server::start(|config| config.va_always_valid = true).await;
        let client = Client::register(&plain).await;
        let detail = refused(&client.post("/acme/new-order", Some(&ip_order("127.0.0.1"))).await);
        assert!(detail.contains("without --allow-ip"), "{detail}");
        plain.stop().await;

        let server = Server::start(|config| {
            config.va_always_valid = true;
            config.va.allow_ip = vec![
                tessera::channel::Cidr::parse("127.0.0.0/8").unwrap(),
                tessera::channel::Cidr::parse("10.0.0.0/8").unwrap(),
            ];
        })
        .await;
        let client = Client::register(&server).await;
        for (value, expected) in [
            ("127.000.0.1", "write it 127.0.0.1"),
            ("127.1", "write it 127.0.0.1"),
            ("0x7f.0.0.1", "write it 127.0.0.1"),
            ("2130706433", "write it 127.0.0.1"),
            ("127.0.0.1.", "write it 127.0.0.1"),
            ("[::1]", "write it ::1"),
            // A leading 0 is octal to inet_aton and browsers, decimal to others: both said.
            (
                "0177.0.0.1",
                "octal to some software (127.0.0.1) and nothing to others (177.0.0.1)",
            ),
            ("::FFFF:7F00:1", "order the IPv4 address 127.0.0.1"),
            ("2001:DB8::1", "write it 2001:db8::1"),
            ("192.0.2.1", "outside every --allow-ip network"),
            ("10.0.0.1", "outside the name constraints of the CA"),
            ("localhost", "is not an IPv4 or IPv6 address"),
            // Special-purpose addresses, whatever --allow-ip says: never validated.
            ("0.0.0.0", "unspecified (0.0.0.0/8)"),
            ("169.254.169.254", "link-local (169.254.0.0/16)"),
            ("224.0.0.1", "multicast (224.0.0.0/4)"),
            ("255.255.255.255", "broadcast (255.255.255.255/32)"),
            ("240.0.0.1", "reserved (240.0.0.0/4)"),
            ("::", "unspecified (::/128)"),
            ("fe80::1", "link-local (fe80::/10)"),
            ("FE80::1", "link-local (fe80::/10)"),
            ("ff02::1", "multicast (ff00::/8)"),
            (
                "::ffff:169.254.169.254",
                "the IPv4-mapped form of 169.254.169.254, link-local",
            ),
            ("::7f00:1", "the IPv4-compatible form of 127.0.0.1, loopback"),
            ("64:ff9b::7f00:1", "the NAT64 form of 127.0.0.1, loopback"),
            ("64:ff9b::a9fe:a9fe", "the NAT64 form of 169.254.169.254, link-local"),
        ] {
            let detail = refused(&client.post("/acme/new-order", Some(&ip_order(value))).await);
            assert!(detail.contains(expected), "{value}: {detail}");
            let special = (expected.contains('(') || expected.contains(" form of ")) && !expected.contains("octal");
            assert_eq!(detail.contains("special-purpose"), special, "{value}: {detail}");
        }
        // An address as a dns identifier, however it is written: one hint, to order an ip
        // identifier, with its canonical form.
        for (value, canonical) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.000.0.1", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1 or 177.0.0.1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
        ] {
            let detail = refused(&client.order(&[value]).await);
            assert!(
                detail.contains(&format!("order it as an ip identifier, {canonical} ")),
                "{value}: {detail}"
            );
        }
        let detail = refused(&client.order(&["1.2.3.256"]).await);
        assert!(detail.contains("ordered as an ip identifier"), "{detail}");

        // Several identifiers: the problem's type is the subproblems' when they share one,
        // else compound; each subproblem keeps its hint, and so does the top-level detail.
        let reply = client.order(&["127.0.0.1", "10.0.0.1"]).await;
        let detail = refused(&reply);
        assert_eq!(detail.matches("order it as an ip identifier").count(), 2, "{detail}");
        let problem = reply.json();
        for subproblem in problem["subproblems"].as_array().unwrap() {
            assert_eq!(subproblem["type"], "urn:ietf:params:acme:error:rejectedIdentifier");
            let detail = subproblem["detail"].as_str().unwrap();
            assert!(detail.contains("order it as an ip identifier"), "{detail}");
        }
        let email = json!({"type": "email", "value": "a@example.test"});
        let reply = client
            .post("/acme/new-order", Some(&json!({"identifiers": [email]})))
            .await;
        assert_eq!(reply.status, 400);
        assert_eq!(
            reply.json()["type"],
            "urn:ietf:params:acme:error:unsupportedIdentifier",
            "one refusal: its own type"
        );
        let dns = json!({"type": "dns", "value": "127.0.0.1"});
        let reply = client
            .post("/acme/new-order", Some(&json!({"identifiers": [dns, email]})))
            .await;
        assert_eq!(reply.status, 400);
        let problem = reply.json();
        assert_eq!(problem["type"], "urn:ietf:params:acme:error:compound", "{problem}");
        let types: Vec<&str> = problem["subproblems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "urn:ietf:params:acme:error:rejectedIdentifier",
                "urn:ietf:params:acme:error:unsupportedIdentifier"
            ]
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("order it as an ip identifier"),
            "{problem}"
        );
        assert_eq!(server.count("SELECT count(*) FROM acme_orders"), 0);

        // An ip order is finalized only with a CSR that names the address as an iPAddress.
        let reply = client.post("/acme/new-order", Some(&ip_order("127.0.0.1"))).await;
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
        let order_url = reply.header("location").unwrap().to_string();
        let order = reply.json();
        let authz = client
            .post(&client.path_of(order["authorizations"][0].as_str().unwrap()), None)
            .await
            .json();
        assert_eq!(authz["identifier"], json!({"type": "ip", "value": "127.0.0.1"}));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::DnsName("127.0.0.1".try_into().unwrap())];
        params.distinguished_name = rcgen::DistinguishedName::new();
        let dns_csr = params.serialize_request(&key).unwrap().der().to_vec();
        for challenge in authz["challenges"].as_array().unwrap() {
            if challenge["type"] == "http-01" {
                let url = challenge["url"].as_str().unwrap();
                let reply = client.post(&client.path_of(url), Some(&json!({}))).await;
                assert_eq!(reply.status, 200);
            }
        }
        let ready = client.settle(&order_url).await;
        assert_eq!(ready["status"], "ready", "{ready}");
        let finalize = client.path_of(order["finalize"].as_str().unwrap());
        let reply = client
            .post(&finalize, Some(&json!({"csr": B64.encode(&dns_csr)})))
            .await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["type"], "urn:ietf:params:acme:error:badCSR");
        let detail = reply.json()["detail"].as_str().unwrap().to_string();
        assert!(
            detail.contains("\"127.0.0.1\" is an IP address written as a dNSName"),
            "{detail}"
        );
        let (good_csr, _) = csr(&["127.0.0.1"]);
        let reply = client
            .post(&finalize, Some(&json!({"csr": B64.encode(good_csr)})))
            .await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let done = client.settle(&order_url).await;
        assert_eq!(done["status"], "valid", "{done}");
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

// ---------------------------------------------------------------------------------------------
// Requests that must be refused (RFC 8555 §6)

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_replayed_and_malformed_requests_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| config.va_always_valid = true).await;
        let alice = Client::register(&server).await;
        let bob = Client::register(&server).await;
        let path = "/acme/new-order";
        let order = json!({"identifiers": [{"type": "dns", "value": "a.example.test"}]});

        // Every response, errors included, carries a fresh nonce and the directory link.
        let reply = alice.post(path, Some(&order)).await;
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
        assert!(reply.header("replay-nonce").is_some());
        assert!(reply.header("link").unwrap().contains("/acme/directory>;rel=\"index\""));
        let orders = server.count("SELECT count(*) FROM acme_orders");
        assert_eq!(orders, 1);

        // A url that is not the resource's.
        let nonce = alice.nonce().await;
        let mut header = alice.protected(&nonce, "/acme/new-account");
        let reply = request(
            &server,
            "POST",
            path,
            Some("application/jose+json"),
            &alice.key.sign(&header, Some(&order)),
        )
        .await;
        assert_eq!((reply.status, reply.problem()), (403, "unauthorized".into()));
        assert!(reply.header("replay-nonce").is_some(), "errors carry a nonce too");

        // A reused nonce (the one just used up) and an unknown one.
        header = alice.protected(&nonce, path);
        let reply = request(
            &server,
            "POST",
            path,
            Some("application/jose+json"),
            &alice.key.sign(&header, Some(&order)),
        )
        .await;
        assert_eq!((reply.status, reply.problem()), (400, "badNonce".into()));
        header = alice.protected("AAAAAAAAAAAAAAAAAAAAAA", path);
        let reply = request(
            &server,
            "POST",
            path,
            Some("application/jose+json"),
            &alice.key.sign(&header, Some(&order)),
        )
        .await;
        assert_eq!(reply.problem(), "badNonce");

        // bob's kid, signed with alice's key.
        let nonce = alice.nonce().await;
        let mut header = alice.protected(&nonce, path);
        header["kid"] = json!(bob.kid.clone().unwrap());
        let reply = request(
            &server,
            "POST",
            path,
            Some("application/jose+json"),
            &alice.key.sign(&header, Some(&order)),
        )
        .await;
        assert_eq!(
            (reply.status, reply.problem()),
            (400, "malformed".into()),
            "bob's key does not verify it"
        );

        // A tampered signature.
        let nonce = alice.nonce().await;
        let mut signed: Value =
            serde_json::from_slice(&alice.key.sign(&alice.protected(&nonce, path), Some(&order))).unwrap();
        let mut signature = B64.decode(signed["signature"].as_str().unwrap()).unwrap();
        signature[5] ^= 1;
        signed["signature"] = json!(B64.encode(signature));
        let reply = request(
            &server,
            "POST",
            path,
            Some("application/jose+json"),
            &serde_json::to_vec(&signed).unwrap(),
        )
        .await;
        assert_eq!((reply.status, reply.problem()), (400, "malformed".into()));

        // alg none (no signature) and HS256 (a MAC).
        for alg in ["none", "HS256"] {
            let nonce = alice.nonce().await;
            let mut header = alice.protected(&nonce, path);
            header["alg"] = json!(alg);
            let protected = B64.encode(serde_json::to_vec(&header).unwrap());
            let payload = B64.encode(serde_json::to_vec(&order).unwrap());
            let signature = if alg == "none" {
                String::new()
            } else {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"a shared secret");
                B64.encode(ring::hmac::sign(&key, format!("{protected}.{payload}").as_bytes()).as_ref())
            };
            let body = serde_json::to_vec(&json!({"protected": protected, "payload": payload, "signature": signature}))
                .unwrap();
            let reply = request(&server, "POST", path, Some("application/jose+json"), &body).await;
            assert_eq!(
                (reply.status, reply.problem()),
                (400, "badSignatureAlgorithm".into()),
                "{alg}"
            );
        }

        // Both jwk and kid.
        let nonce = alice.nonce().await;
        let mut header = alice.protected(&nonce, path);
        header["jwk"] = alice.key.jwk();
        let reply = request(
            &server,
            "POST",
            path,
            Some("application/jose+json"),
            &alice.key.sign(&header, Some(&order)),
        )
        .await;
        assert_eq!((reply.status, reply.problem()), (400, "malformed".into()));

        // The wrong media type.
        let nonce = alice.nonce().await;
        let body = alice.key.sign(&alice.protected(&nonce, path), Some(&order));
        let reply = request(&server, "POST", path, Some("application/json"), &body).await;
        assert_eq!(reply.problem(), "malformed");

        // An oversized body: refused, and the server goes on.
        let big = vec![b'a'; 200 * 1024];
        let reply = request(&server, "POST", path, Some("application/jose+json"), &big).await;
        assert!(reply.status == 413 || reply.status == 400, "{}", reply.status);
        let reply = request(&server, "GET", "/healthz", None, b"").await;
        assert_eq!(reply.status, 200);

        // None of them made an order.
        assert_eq!(server.count("SELECT count(*) FROM acme_orders"), orders);
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identifiers_outside_the_name_constraints_or_allow_dns_are_rejected() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| {
            config.va_always_valid = true;
            config.allow_dns = vec!["good.example.test".into(), "other.test".into()];
        })
        .await;
        let client = Client::register(&server).await;
        let reply = client.order(&["www.good.example.test"]).await;
        assert_eq!(reply.status, 201);
        for (name, why) in [
            ("www.other.test", "name constraints"),
            ("www.bad.example.test", "--allow-dns"),
            ("*.good.example.test", "wildcard"),
        ] {
            let reply = client.order(&["www.good.example.test", name]).await;
            assert_eq!(
                (reply.status, reply.problem()),
                (400, "rejectedIdentifier".into()),
                "{name}"
            );
            let body = reply.json();
            let subproblems = body["subproblems"].as_array().unwrap();
            assert_eq!(subproblems.len(), 1, "{body}");
            assert_eq!(subproblems[0]["identifier"]["value"], name, "{body}");
            assert!(
                body["detail"].as_str().unwrap().contains(why) || why == "wildcard",
                "{body}"
            );
        }
        assert_eq!(server.count("SELECT count(*) FROM acme_orders"), 1);
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

/// newOrder, every challenge answered (validation skipped), waits for `ready`: the order.
async fn ready_order(client: &Client<'_>, names: &[&str]) -> Value {
    let reply = client.order(names).await;
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    let order_url = reply.header("location").unwrap().to_string();
    let order = reply.json();
    for authz in order["authorizations"].as_array().unwrap() {
        let authz = client.post(&client.path_of(authz.as_str().unwrap()), None).await.json();
        let challenge = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "http-01")
            .unwrap()
            .clone();
        let reply = client
            .post(&client.path_of(challenge["url"].as_str().unwrap()), Some(&json!({})))
            .await;
        assert_eq!(reply.status, 200);
    }
    let order = client.settle(&order_url).await;
    assert_eq!(order["status"], "ready", "{order}");
    let mut order = order;
    order["url"] = json!(order_url);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_csr_must_name_exactly_the_orders_identifiers_and_a_double_finalize_issues_once() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| config.va_always_valid = true).await;
        let client = Client::register(&server).await;
        let order = ready_order(&client, &["a.example.test", "b.example.test"]).await;
        let finalize = client.path_of(order["finalize"].as_str().unwrap());
        for names in [
            &["a.example.test"][..],
            &["a.example.test", "b.example.test", "c.example.test"][..],
        ] {
            let (der, _) = csr(names);
            let reply = client.post(&finalize, Some(&json!({"csr": B64.encode(der)}))).await;
            assert_eq!((reply.status, reply.problem()), (400, "badCSR".into()), "{names:?}");
        }
        // The order is still ready: two finalizes at once issue one certificate.
        let before = server.certificates();
        let (der, _) = csr(&["b.example.test", "a.example.test"]);
        let payload = json!({"csr": B64.encode(der)});
        let (first, second) = tokio::join!(
            client.post(&finalize, Some(&payload)),
            client.post(&finalize, Some(&payload))
        );
        let statuses = [first.status, second.status];
        assert!(statuses.contains(&200), "{statuses:?}");
        for reply in [&first, &second] {
            if reply.status != 200 {
                assert_eq!(reply.problem(), "orderNotReady");
            }
        }
        let done = client.settle(order["url"].as_str().unwrap()).await;
        assert_eq!(done["status"], "valid", "{done}");
        assert_eq!(server.certificates(), before + 1, "issued once");
        // A third finalize changes nothing.
        let reply = client.post(&finalize, Some(&payload)).await;
        assert!(reply.status == 200 || reply.status == 403);
        assert_eq!(server.certificates(), before + 1);
        // The certificate: leaf first, for both names.
        let reply = client
            .post(&client.path_of(done["certificate"].as_str().unwrap()), None)
            .await;
        assert_eq!(reply.header("content-type"), Some("application/pem-certificate-chain"));
        let chain = pem::parse_certificates(&reply.body, "chain").unwrap();
        // The CA is a root: it follows the leaf (certbot wants an issuer in the chain).
        assert_eq!(chain.len(), 2);
        assert_eq!(
            std::fs::read_to_string(server.dir().join("ca.pem")).unwrap(),
            pem::to_pem(pem::CERTIFICATE, &chain[1])
        );
        let info = tessera::pki::CertificateInfo::from_der(&chain[0]).unwrap();
        let names: BTreeSet<String> = info.sans.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            BTreeSet::from(["dns:a.example.test".to_string(), "dns:b.example.test".to_string()])
        );
        // Another account may not download it.
        let other = Client::register(&server).await;
        let reply = other
            .post(&client.path_of(done["certificate"].as_str().unwrap()), None)
            .await;
        assert_eq!((reply.status, reply.problem()), (403, "unauthorized".into()));
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

// ---------------------------------------------------------------------------------------------
// A refused CSR leaves the order ready (RFC 8555 §7.4); the account key is no certificate key
// (§11.1)

/// A CSR (DER) for `names` signed by the key in `pkcs8` (an ES256 account key, say).
fn csr_with_key(names: &[&str], pkcs8: &[u8]) -> Vec<u8> {
    let key = rcgen::KeyPair::try_from(pkcs8).unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(&key).unwrap().der().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_csr_check_comes_before_the_claim_and_the_account_key_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| config.va_always_valid = true).await;
        let client = Client::register(&server).await;
        let order = ready_order(&client, &["a.example.test"]).await;
        let order_path = client.path_of(order["url"].as_str().unwrap());
        let finalize = client.path_of(order["finalize"].as_str().unwrap());
        let before = server.certificates();

        // An RSA-1024 key (too weak: 2048 to 8192 bits are issued for).
        let key = server.tmp.path().join("weak.key");
        let weak = server.tmp.path().join("weak.csr");
        let out = support::openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            &support::s(&key),
            "-subj",
            "/CN=a.example.test",
            "-addext",
            "subjectAltName=DNS:a.example.test",
            "-outform",
            "DER",
            "-out",
            &support::s(&weak),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let weak = std::fs::read(&weak).unwrap();
        // A self-signature that does not verify.
        let (mut forged, _) = csr(&["a.example.test"]);
        let last = forged.len() - 1;
        forged[last] ^= 0x01;
        // Names other than the order's.
        let (wrong_names, _) = csr(&["b.example.test"]);
        // The account's own key (RFC 8555 §11.1).
        let account_key = csr_with_key(&["a.example.test"], &client.key.pkcs8);
        for (what, der, detail) in [
            ("RSA-1024", &weak, "RSA"),
            ("bad signature", &forged, "signature"),
            ("wrong names", &wrong_names, "identifiers"),
            ("account key", &account_key, "account key"),
        ] {
            let reply = client.post(&finalize, Some(&json!({"csr": B64.encode(der)}))).await;
            assert_eq!((reply.status, reply.problem()), (400, "badCSR".into()), "{what}");
            let text = reply.json()["detail"].as_str().unwrap().to_string();
            assert!(text.contains(detail), "{what}: {text}");
            let now = client.post(&order_path, None).await.json();
            assert_eq!(now["status"], "ready", "{what}: the order stays ready: {now}");
            assert_eq!(server.certificates(), before, "{what}: nothing issued");
        }

        // A good CSR still finalizes the order.
        let (good, _) = csr(&["a.example.test"]);
        let reply = client.post(&finalize, Some(&json!({"csr": B64.encode(good)}))).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let done = client.settle(order["url"].as_str().unwrap()).await;
        assert_eq!(done["status"], "valid", "{done}");
        assert_eq!(server.certificates(), before + 1);
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_authorization_makes_the_challenge_and_order_invalid() {
    tokio::time::timeout(LIMIT, async {
        let responder = Responder::start().await;
        let port = responder.port;
        let server = Server::start(|config| config.va.http_port = port).await;
        let client = Client::register(&server).await;
        let reply = client.order(&["wrong.example.test"]).await;
        let order_url = reply.header("location").unwrap().to_string();
        let order = reply.json();
        let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
        let authz = client.post(&client.path_of(&authz_url), None).await.json();
        let challenge = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "http-01")
            .unwrap()
            .clone();
        let token = challenge["token"].as_str().unwrap();
        // Another key's thumbprint: not this account's key authorization.
        responder.answer(token, &format!("{token}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        let reply = client
            .post(&client.path_of(challenge["url"].as_str().unwrap()), Some(&json!({})))
            .await;
        assert_eq!(reply.status, 200);
        let challenge = client.settle(challenge["url"].as_str().unwrap()).await;
        assert_eq!(challenge["status"], "invalid", "{challenge}");
        assert!(
            challenge["error"]["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:ietf:params:acme:error:")
        );
        let order = client.settle(&order_url).await;
        assert_eq!(order["status"], "invalid", "{order}");
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_by_the_certificates_own_key_and_reasons() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| config.va_always_valid = true).await;
        let client = Client::register(&server).await;
        let order = ready_order(&client, &["r.example.test"]).await;
        let (der, key) = csr(&["r.example.test"]);
        let reply = client
            .post(
                &client.path_of(order["finalize"].as_str().unwrap()),
                Some(&json!({"csr": B64.encode(der)})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let done = client.settle(order["url"].as_str().unwrap()).await;
        let chain = client
            .post(&client.path_of(done["certificate"].as_str().unwrap()), None)
            .await;
        let certificate = pem::parse_certificates(&chain.body, "chain").unwrap().remove(0);
        let payload = |reason: u8| json!({"certificate": B64.encode(certificate.as_ref()), "reason": reason});

        // Another account may not revoke it; a reason a subscriber may not give is refused.
        let stranger = Client::register(&server).await;
        let reply = stranger.post("/acme/revoke-cert", Some(&payload(1))).await;
        assert_eq!((reply.status, reply.problem()), (403, "unauthorized".into()));
        let holder = Client {
            server: &server,
            key: Signer::from_pkcs8(key),
            kid: None,
        };
        let reply = holder.post("/acme/revoke-cert", Some(&payload(2))).await;
        assert_eq!(reply.problem(), "badRevocationReason");
        // Signed with the certificate's key (jwk).
        let reply = holder.post("/acme/revoke-cert", Some(&payload(1))).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(
            server.count("SELECT count(*) FROM certificates WHERE status = 'revoked'"),
            1
        );
        let reply = client.post("/acme/revoke-cert", Some(&payload(1))).await;
        assert_eq!((reply.status, reply.problem()), (400, "alreadyRevoked".into()));
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nonces_and_orders_are_neither_lost_nor_duplicated() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let server = Arc::new(
            Server::start(|config| {
                config.va_always_valid = true;
                config.rate_per_account = tessera::ca::serve::ratelimit::Limit::new(1000.0, 1000);
                config.rate_per_client = tessera::ca::serve::ratelimit::Limit::new(1000.0, 2000);
            })
            .await,
        );
        let client = Client::register(&*server).await;
        let key = Arc::new(client.key.pkcs8.clone());
        let kid = client.kid.clone().unwrap();
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        // 1,000 newNonce requests, 32 at a time: 1,000 distinct nonces.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (server, limit) = (Arc::clone(&server), Arc::clone(&limit));
            tasks.spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let reply = request(&*server, "HEAD", "/acme/new-nonce", None, b"").await;
                assert_eq!(reply.status, 200);
                reply.header("replay-nonce").unwrap().to_string()
            });
        }
        let mut nonces = BTreeSet::new();
        while let Some(nonce) = tasks.join_next().await {
            nonces.insert(nonce.unwrap());
        }
        assert_eq!(nonces.len(), 1000);
        // 200 newOrder requests, 32 at a time: 200 orders with distinct locations.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (server, limit, key, kid) = (Arc::clone(&server), Arc::clone(&limit), Arc::clone(&key), kid.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let client = Client {
                    server: &*server,
                    key: Signer::from_pkcs8(key.to_vec()),
                    kid: Some(kid),
                };
                let reply = client.order(&[&format!("n{i}.example.test")]).await;
                assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
                reply.header("location").unwrap().to_string()
            });
        }
        let mut locations = BTreeSet::new();
        while let Some(location) = tasks.join_next().await {
            locations.insert(location.unwrap());
        }
        assert_eq!(locations.len(), 200);
        assert_eq!(server.count("SELECT count(*) FROM acme_orders"), 200);
        assert_eq!(server.count("SELECT count(DISTINCT id) FROM acme_orders"), 200);
        assert_eq!(server.count("SELECT count(*) FROM acme_authorizations"), 200);
        let server = Arc::try_unwrap(server).ok().unwrap();
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_past_its_rate_limit_is_told_to_retry_later() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| {
            config.va_always_valid = true;
            config.rate_per_account = tessera::ca::serve::ratelimit::Limit::new(0.01, 3);
            config.rate_per_client = tessera::ca::serve::ratelimit::Limit::new(0.01, 30);
        })
        .await;
        let client = Client::register(&server).await;
        let other = Client::register(&server).await;
        for i in 0..3 {
            let reply = client.order(&[&format!("l{i}.example.test")]).await;
            assert_eq!(reply.status, 201, "request {i}");
        }
        let reply = client.order(&["l3.example.test"]).await;
        assert_eq!((reply.status, reply.problem()), (429, "rateLimited".into()));
        let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=100).contains(&wait), "{wait}");
        assert!(reply.header("replay-nonce").is_some());
        // Another account is not affected.
        assert_eq!(other.order(&["m.example.test"]).await.status, 201);
        assert_eq!(server.count("SELECT count(*) FROM acme_orders"), 4);
        // Requests of no account are limited per client address: this one's burst is 20.
        let mut limited = None;
        for i in 0..40 {
            let reply = request(&server, "GET", "/acme/new-nonce", None, b"").await;
            if reply.status == 429 {
                limited = Some((i, reply.problem(), reply.header("retry-after").map(str::to_string)));
                break;
            }
            assert_eq!(reply.status, 204);
            assert_eq!(reply.header("cache-control"), Some("no-store"));
        }
        let (i, problem, retry_after) = limited.expect("newNonce is limited per client");
        assert!(i >= 10, "limited after {i}");
        assert_eq!(problem, "rateLimited");
        assert!(retry_after.is_some());
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

/// One plain-HTTP request to `address` that starts with `prefix` (a PROXY header, say); the
/// raw answer (empty when the server closed without one).
async fn plain_http(address: SocketAddr, prefix: &[u8], path: &str) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let _ = tcp.write_all(&bytes).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw)).await;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_proxy_the_header_is_required_and_crl_ocsp_ca_pem_are_served_over_http() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| {
            config.proxy = Some(tessera::channel::ProxySources::loopback());
        })
        .await;
        // A PROXY v1 header from a listed proxy (loopback): the request is answered.
        let raw = plain_http(server.http, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n", "/ca.pem").await;
        let reply = parse_reply(&raw);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, std::fs::read(server.dir().join("ca.pem")).unwrap());
        // Without the header, the request line is taken for one and refused: no answer.
        let raw = plain_http(server.http, b"", "/ca.pem").await;
        assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
        // The periodic work publishes a CRL soon after the start: /crl serves it (DER).
        let mut crl = Vec::new();
        for _ in 0..100 {
            let reply = parse_reply(&plain_http(server.http, b"PROXY UNKNOWN\r\n", "/crl").await);
            if reply.status == 200 {
                assert_eq!(reply.header("content-type"), Some("application/pkix-crl"));
                crl = reply.body;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let info = tessera::pki::CrlInfo::from_der(&crl).unwrap();
        assert!(info.issuer.contains("ACME Test Root"), "{info:?}");
        // /ocsp answers a malformed request with an OCSP error response (malformedRequest = 1).
        let raw = plain_http(server.http, b"PROXY UNKNOWN\r\n", "/ocsp/AAAA").await;
        let reply = parse_reply(&raw);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/ocsp-response"));
        assert_eq!(reply.body, [0x30, 0x03, 0x0a, 0x01, 0x01]);
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_accepting_and_lets_the_request_in_flight_finish() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|_| {}).await;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tcp = tokio::net::TcpStream::connect(server.address).await.unwrap();
        let mut tls = tls_client(&server.root_pem()).connect(name, tcp).await.unwrap();
        let head = format!(
            "POST /acme/new-account HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/jose+json\r\nContent-Length: 20\r\n\r\n",
            server.address.port()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(b"{\"protected\":").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.handle.shutdown("test");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // No new connection is accepted.
        assert!(tokio::net::TcpStream::connect(server.address).await.is_err(), "the listener is closed");
        // The request in flight gets its answer.
        tls.write_all(b"\"x\"}   ").await.unwrap();
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let reply = parse_reply(&raw);
        assert_eq!((reply.status, reply.problem()), (400, "malformed".into()));
        tokio::time::timeout(Duration::from_secs(30), server.service)
            .await
            .expect("the service ends after the drain")
            .unwrap();
    })
    .await
    .expect("within the time limit");
}

/// The certificate chain a TLS server at `address` presents (trusting `root`).
async fn served_chain(address: SocketAddr, root: &Path) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tls_client(root).connect(name, tcp).await.unwrap();
    let (_, connection) = tls.get_ref();
    assert_eq!(connection.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    connection.peer_certificates().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_tls_cert_the_server_certificate_is_short_lived_from_the_ca_and_recorded() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|_| {}).await;
        let chain = served_chain(server.address, &server.root_pem()).await;
        let info = tessera::pki::CertificateInfo::from_der(&chain[0]).unwrap();
        assert_eq!(
            info.sans,
            [tessera::pki::SubjectAltName::Ip("127.0.0.1".parse().unwrap())]
        );
        assert_eq!(
            info.subject, "",
            "the address only as an iPAddress, under an empty subject"
        );
        assert!(
            info.not_after - info.not_before <= time::Duration::hours(25),
            "{info:?}"
        );
        assert_eq!(
            server.count(&format!(
                "SELECT count(*) FROM certificates WHERE serial = '{}'",
                info.serial
            )),
            1,
            "recorded in the store like any certificate"
        );
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

// ---------------------------------------------------------------------------------------------
// Several instances on one PostgreSQL store

/// One count from PostgreSQL, on a thread of its own (the blocking client may not run on the
/// test's runtime).
fn pg_count(url: &str, sql: &str) -> i64 {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client.query_one(sql.as_str(), &[]).unwrap().get::<_, i64>(0)
    })
    .join()
    .unwrap()
}

#[test]
fn two_instances_on_one_postgresql_store_share_nonces_orders_and_issue_once() {
    let pg = pg_support::Postgres::start();
    pg.create_db("acme");
    let url = pg.url("acme");
    let location = tessera::ca::Location::Postgres(url.clone());
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut init = InitRequest::new("Shared Root");
    init.store = location.clone();
    let ca_a = CertificateAuthority::init(&tmp_a.path().join("ca"), &init, None, OffsetDateTime::now_utc()).unwrap();
    // The second instance has a copy of the CA directory.
    std::fs::create_dir(tmp_b.path().join("ca")).unwrap();
    for entry in std::fs::read_dir(tmp_a.path().join("ca")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), tmp_b.path().join("ca").join(entry.file_name())).unwrap();
        }
    }
    let ca_b = CertificateAuthority::open_with_store(&tmp_b.path().join("ca"), None, Some(&location)).unwrap();
    for tmp in [&tmp_a, &tmp_b] {
        std::fs::write(tmp.path().join("root.pem"), pem::to_pem(pem::CERTIFICATE, ca_a.root())).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let listener_a = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let listener_b = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (address_a, address_b) = (listener_a.local_addr().unwrap(), listener_b.local_addr().unwrap());
            // One base URL for both, as behind a load balancer.
            let base = format!("https://127.0.0.1:{}", address_a.port());
            let mut servers = Vec::new();
            for (tmp, ca, listener, address) in [
                (tmp_a, ca_a, listener_a, address_a),
                (tmp_b, ca_b, listener_b, address_b),
            ] {
                let mut config = ServeConfig::new(BaseUrl::parse(&base).unwrap());
                config.store = Some(location.clone());
                config.va_always_valid = true;
                let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let http = http_listener.local_addr().unwrap();
                let (handle, service) = tessera::ca::serve::serve(ca, config, listener, Some(http_listener))
                    .await
                    .unwrap();
                servers.push(Server {
                    tmp,
                    base: base.clone(),
                    address,
                    http,
                    handle,
                    service: tokio::spawn(service),
                });
            }
            let (a, b) = (&servers[0], &servers[1]);
            let alice_a = Client::register(a).await;
            let alice_b = Client {
                server: b,
                key: Signer::from_pkcs8(alice_a.key.pkcs8.clone()),
                kid: alice_a.kid.clone(),
            };
            // A nonce from one instance is good at the other, once.
            let nonce = alice_a.nonce().await;
            let order = json!({"identifiers": [{"type": "dns", "value": "shared.example.test"}]});
            let body = alice_b
                .key
                .sign(&alice_b.protected(&nonce, "/acme/new-order"), Some(&order));
            let reply = request(b, "POST", "/acme/new-order", Some("application/jose+json"), &body).await;
            assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
            let reply = request(a, "POST", "/acme/new-order", Some("application/jose+json"), &body).await;
            assert_eq!(reply.problem(), "badNonce");
            // An order made at one instance is read and finalized at both: issued once.
            let order = ready_order(&alice_b, &["both.example.test"]).await;
            let finalize = alice_a.path_of(order["finalize"].as_str().unwrap());
            let before = pg_count(&url, "SELECT count(*) FROM certificates");
            let (der, _) = csr(&["both.example.test"]);
            let payload = json!({"csr": B64.encode(der)});
            let (first, second) = tokio::join!(
                alice_a.post(&finalize, Some(&payload)),
                alice_b.post(&finalize, Some(&payload))
            );
            assert!(
                [first.status, second.status].contains(&200),
                "{} {}",
                first.status,
                second.status
            );
            let done = alice_a.settle(order["url"].as_str().unwrap()).await;
            assert_eq!(done["status"], "valid", "{done}");
            assert_eq!(
                pg_count(&url, "SELECT count(*) FROM certificates"),
                before + 1,
                "issued once"
            );
            assert_eq!(
                pg_count(&url, "SELECT count(*) FROM acme_orders WHERE status = 'valid'"),
                1
            );
            for server in servers {
                server.stop().await;
            }
        })
        .await
        .expect("within the time limit");
    });
}

/// `POST path` over plain HTTP with a body; the reply.
async fn plain_post(address: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw)).await;
    parse_reply(&raw)
}

/// A root made at `start`, valid for `lifetime`, served (with an HTTPS certificate of its own
/// issued at `start`, so that an expired CA starts too) with `/ocsp` answers said to hold for
/// 240 hours (`--ocsp-hours 240`); `tmp/leaf.pem` is a certificate it issued at `start`, and
/// `tmp/leaf.req` an `openssl ocsp` request about it.
async fn dated_ocsp_server(start: OffsetDateTime, lifetime: time::Duration) -> Server {
    use tessera::ca::{IssueRequest, Profile};
    let tmp = tempfile::tempdir().unwrap();
    let mut request = InitRequest::new("Dated OCSP Root");
    request.lifetime = Some(lifetime.try_into().unwrap());
    let ca = CertificateAuthority::init(&tmp.path().join("ca"), &request, None, start).unwrap();
    let tls = ca
        .issue(
            &IssueRequest::new(Profile::Server, "ca serve 127.0.0.1")
                .with_sans([tessera::pki::SubjectAltName::Ip("127.0.0.1".parse().unwrap())]),
            start,
        )
        .unwrap();
    let credentials = tessera::channel::Credentials::new(tls.chain.clone(), tls.key.as_ref().unwrap()).unwrap();
    let leaf = ca
        .issue(&IssueRequest::new(Profile::Client, "leaf.test"), start)
        .unwrap();
    let leaf_pem = tmp.path().join("leaf.pem");
    std::fs::write(&leaf_pem, pem::to_pem(pem::CERTIFICATE, &leaf.certificate)).unwrap();
    let request_file = tmp.path().join("leaf.req");
    let ca_pem = tmp.path().join("ca").join("ca.pem");
    let out = std::process::Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(&ca_pem)
        .arg("-cert")
        .arg(&leaf_pem)
        .arg("-no_nonce")
        .arg("-reqout")
        .arg(&request_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Server::start_with(tmp, ca, |config| {
        config.tls = Some(credentials);
        config.ocsp_lifetime = Duration::from_secs(240 * 3600);
    })
    .await
}

/// `openssl ocsp -resp_text -noverify` on a response: what it printed.
fn openssl_response_text(server: &Server, der: &[u8]) -> String {
    let file = server.tmp.path().join("leaf.resp");
    std::fs::write(&file, der).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("ocsp")
        .arg("-respin")
        .arg(&file)
        .args(["-resp_text", "-noverify"])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `/ocsp` of `ca serve --ocsp-hours 240` for a CA that ends in ten minutes says nextUpdate =
/// the CA's notAfter (OpenSSL reads it from the response); for a CA that has expired it answers
/// `unauthorized` (6) and signs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ocsp_answers_end_with_the_ca_and_an_expired_ca_answers_unauthorized() {
    if !support::require_tool("openssl") {
        return;
    }
    tokio::time::timeout(LIMIT, async {
        let day = time::Duration::days(1);
        let now = OffsetDateTime::now_utc();
        let ending = dated_ocsp_server(now - day + time::Duration::minutes(10), day).await;
        let body = std::fs::read(ending.tmp.path().join("leaf.req")).unwrap();
        let reply = plain_post(ending.http, "/ocsp", "application/ocsp-request", &body).await;
        assert_eq!(reply.status, 200);
        assert_eq!(ocsp_response_status(&reply.body), 0, "successful");
        let text = openssl_response_text(&ending, &reply.body);
        assert!(text.contains("Cert Status: good"), "{text}");
        let next_update = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Next Update: "))
            .unwrap_or_else(|| panic!("no Next Update: {text}"))
            .to_string();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(ending.dir().join("ca.pem"))
            .output()
            .unwrap();
        let not_after = String::from_utf8_lossy(&out.stdout).trim().replace("notAfter=", "");
        assert_eq!(next_update, not_after, "{text}");
        ending.stop().await;

        let expired = dated_ocsp_server(now - day * 2, day).await;
        let body = std::fs::read(expired.tmp.path().join("leaf.req")).unwrap();
        let reply = plain_post(expired.http, "/ocsp", "application/ocsp-request", &body).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            [0x30, 0x03, 0x0a, 0x01, 0x06],
            "unauthorized, nothing signed"
        );
        let text = openssl_response_text(&expired, &reply.body);
        assert!(text.contains("unauthorized (6)"), "{text}");
        expired.stop().await;
    })
    .await
    .expect("within the time limit");
}

/// The responseStatus of a DER OCSPResponse (RFC 6960 §4.2.1: 0 successful, 3 tryLater).
fn ocsp_response_status(der: &[u8]) -> u8 {
    assert_eq!(der.first(), Some(&0x30), "not an OCSPResponse: {der:02x?}");
    let length = usize::from(der[1]);
    let start = if length < 0x80 { 2 } else { 2 + (length & 0x7f) };
    assert_eq!(&der[start..start + 2], [0x0a, 0x01], "no responseStatus: {der:02x?}");
    der[start + 2]
}

/// Orders, validates (va_always_valid) and finalizes a certificate for `name`, downloads it,
/// and asks `/ocsp` (plain HTTP) about it with `openssl ocsp`: the answer says good.
async fn issue_and_ask_ocsp(server: &Server, client: &Client<'_>, name: &str) {
    let order = ready_order(client, &[name]).await;
    let (der, _) = csr(&[name]);
    let reply = client
        .post(
            &client.path_of(order["finalize"].as_str().unwrap()),
            Some(&json!({"csr": B64.encode(der)})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let done = client.settle(order["url"].as_str().unwrap()).await;
    assert_eq!(done["status"], "valid", "{done}");
    let reply = client
        .post(&client.path_of(done["certificate"].as_str().unwrap()), None)
        .await;
    assert_eq!(reply.status, 200);
    let chain = pem::parse_certificates(&reply.body, "chain").unwrap();
    let cert = server.tmp.path().join(format!("{name}.pem"));
    std::fs::write(&cert, pem::to_pem(pem::CERTIFICATE, &chain[0])).unwrap();
    let request_file = server.tmp.path().join(format!("{name}.req"));
    let out = std::process::Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(server.root_pem())
        .arg("-cert")
        .arg(&cert)
        .arg("-no_nonce")
        .arg("-reqout")
        .arg(&request_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply = plain_post(
        server.http,
        "/ocsp",
        "application/ocsp-request",
        &std::fs::read(&request_file).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(ocsp_response_status(&reply.body), 0, "successful");
    let response_file = server.tmp.path().join(format!("{name}.resp"));
    std::fs::write(&response_file, &reply.body).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("ocsp")
        .arg("-respin")
        .arg(&response_file)
        .args(["-resp_text", "-noverify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Cert Status: good"), "{text}");
}

/// Polls `GET /healthz` (bounded) until it answers 200; how many attempts failed first.
async fn healthy_within(server: &Server, limit: Duration) -> usize {
    let start = std::time::Instant::now();
    let mut failed = 0;
    loop {
        let reply = request(server, "GET", "/healthz", None, b"").await;
        if reply.status == 200 {
            return failed;
        }
        assert_eq!(reply.status, 503);
        failed += 1;
        assert!(
            start.elapsed() < limit,
            "/healthz still {} after {limit:?}",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn serve_reconnects_after_its_postgresql_backends_are_terminated_and_after_a_restart() {
    let mut pg = pg_support::Postgres::start();
    let url = pg.url("ca");
    let location = tessera::ca::Location::Postgres(url.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut init = InitRequest::new("Reconnecting Root");
    init.store = location.clone();
    let ca = CertificateAuthority::init(&tmp.path().join("ca"), &init, None, OffsetDateTime::now_utc()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let server = Server::start_with(tmp, ca, |config| {
                config.store = Some(location.clone());
                config.va_always_valid = true;
                config.pool_size = 2;
            })
            .await;
            let alice = Client::register(&server).await;
            let lease_end = || pg_count(&url, "SELECT coalesce(max(good_until), 0) FROM acme_leases");
            for _ in 0..100 {
                if lease_end() > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(lease_end() > 0, "the periodic work holds its leases");

            // Every connection of the instance is terminated: the pool's two, the periodic
            // work's and the CA's own (OCSP, issuance).
            let terminated = pg.terminate_backends("tessera-ca");
            assert!(terminated >= 4, "{terminated} connections terminated");
            // Idle for over 100 ms, each connection is checked before use and replaced: not one
            // request fails.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let reply = request(&server, "GET", "/healthz", None, b"").await;
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            issue_and_ask_ocsp(&server, &alice, "after-terminate.example.test").await;

            // The cluster stops: the store is unreachable, and every answer says so.
            pg.stop_fast();
            let reply = request(&server, "GET", "/healthz", None, b"").await;
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("retry-after"), Some("1"));
            let reply = request(&server, "HEAD", "/acme/new-nonce", None, b"").await;
            assert_eq!(reply.status, 503, "no nonce without the store");
            assert!(reply.header("replay-nonce").is_none());
            assert_eq!(reply.header("retry-after"), Some("1"));
            let reply = request(&server, "GET", "/acme/new-nonce", None, b"").await;
            assert_eq!((reply.status, reply.problem()), (503, "serverInternal".into()));
            assert_eq!(reply.json()["status"], 503);
            assert!(reply.header("replay-nonce").is_none());
            assert_eq!(reply.header("retry-after"), Some("1"));
            let reply = parse_reply(&plain_http(server.http, b"", "/crl").await);
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("retry-after"), Some("1"));

            // It starts again on the same port: the instance reconnects (with a backoff of at
            // most 5 s between attempts), then serves orders, OCSP, the CRL and its leases.
            pg.start_again();
            healthy_within(&server, Duration::from_secs(30)).await;
            let renewed_after = lease_end();
            issue_and_ask_ocsp(&server, &alice, "after-restart.example.test").await;
            let reply = parse_reply(&plain_http(server.http, b"", "/crl").await);
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("content-type"), Some("application/pkix-crl"));
            let mut renewed = false;
            for _ in 0..200 {
                if lease_end() > renewed_after {
                    renewed = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(renewed, "the periodic work renews its leases after the restart");
            server.stop().await;
        })
        .await
        .expect("within the time limit");
    });
}

#[test]
fn a_serve_on_an_sqlite_store_moved_away_says_unhealthy_and_writes_nothing() {
    // `ca move-store` while an instance still serves the SQLite store: that instance must leave
    // the balancer (/healthz 503) and refuse writes (503) rather than write where nobody reads.
    let pg = pg_support::Postgres::start();
    pg.create_db("moved");
    let url = pg.url("moved");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let server = Server::start(|_| {}).await;
            let _client = Client::register(&server).await;
            assert_eq!(request(&server, "GET", "/healthz", None, b"").await.status, 200);
            let accounts = server.count("SELECT count(*) FROM acme_accounts");
            let nonces = server.count("SELECT count(*) FROM acme_nonces");

            let dir = server.dir();
            let out = tokio::task::spawn_blocking(move || {
                support::output(support::ca(&dir).args(["--db", &url, "move-store"]))
            })
            .await
            .unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));

            let reply = request(&server, "GET", "/healthz", None, b"").await;
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("retry-after"), Some("1"));
            // A new nonce is a write: refused with 503, nothing stored.
            let reply = request(&server, "HEAD", "/acme/new-nonce", None, b"").await;
            assert_eq!(reply.status, 503);
            assert_eq!(server.count("SELECT count(*) FROM acme_nonces"), nonces);
            assert_eq!(server.count("SELECT count(*) FROM acme_accounts"), accounts);
            server.stop().await;
        })
        .await
        .expect("within the time limit");
    });
}

#[test]
fn a_stalled_postgresql_gets_prompt_answers_from_healthz_and_ocsp() {
    // A table locked by someone else (a stalled store) must not hold /healthz or /ocsp until the
    // request timeout: they answer 503 and tryLater after a third of it.
    let pg = pg_support::Postgres::start();
    let url = pg.url("ca");
    let location = tessera::ca::Location::Postgres(url.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut init = InitRequest::new("Stalled Root");
    init.store = location.clone();
    init.permitted_dns = vec!["example.test".into()];
    let ca = CertificateAuthority::init(&tmp.path().join("ca"), &init, None, OffsetDateTime::now_utc()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let server = Server::start_with(tmp, ca, |config| {
                config.store = Some(location.clone());
                config.va_always_valid = true;
                config.request_timeout = Duration::from_secs(6);
            })
            .await;
            let alice = Client::register(&server).await;
            issue_and_ask_ocsp(&server, &alice, "stalled.example.test").await;
            let ocsp_request = std::fs::read(server.tmp.path().join("stalled.example.test.req")).unwrap();

            let url_for_lock = url.clone();
            let (locked_tx, locked_rx) = std::sync::mpsc::channel();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let holder = std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url_for_lock, postgres::NoTls).unwrap();
                let mut tx = client.transaction().unwrap();
                tx.batch_execute("LOCK TABLE certificates, published_crls IN ACCESS EXCLUSIVE MODE")
                    .unwrap();
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
                tx.rollback().unwrap();
            });
            locked_rx.recv_timeout(Duration::from_secs(30)).unwrap();

            let started = std::time::Instant::now();
            let reply = request(&server, "GET", "/healthz", None, b"").await;
            let waited = started.elapsed();
            assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
            assert!(waited < Duration::from_secs(5), "/healthz took {waited:?}");
            let started = std::time::Instant::now();
            let reply = plain_post(server.http, "/ocsp", "application/ocsp-request", &ocsp_request).await;
            let waited = started.elapsed();
            assert_eq!(reply.status, 200);
            assert_eq!(ocsp_response_status(&reply.body), 3, "tryLater");
            assert!(waited < Duration::from_secs(5), "/ocsp took {waited:?}");

            release_tx.send(()).unwrap();
            holder.join().unwrap();
            healthy_within(&server, Duration::from_secs(30)).await;
            let reply = plain_post(server.http, "/ocsp", "application/ocsp-request", &ocsp_request).await;
            assert_eq!(ocsp_response_status(&reply.body), 0, "successful once the lock is gone");
            server.stop().await;
        })
        .await
        .expect("within the time limit");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_listener_has_its_own_connection_cap_and_idle_connections_time_out() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| {
            config.max_connections = 4;
            config.max_http_connections = 3;
            config.handshake_timeout = Duration::from_secs(2);
            config.header_timeout = Duration::from_secs(2);
        })
        .await;
        // Wait for the first CRL.
        for _ in 0..100 {
            if parse_reply(&plain_http(server.http, b"", "/crl").await).status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let closed_at_once = |mut tcp: tokio::net::TcpStream| async move {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(1000), tcp.read(&mut byte)).await;
            matches!(read, Ok(Ok(0) | Err(_)))
        };
        // The HTTPS listener's cap taken by idle sockets (no TLS handshake).
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(tokio::net::TcpStream::connect(server.address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let extra = tokio::net::TcpStream::connect(server.address).await.unwrap();
        assert!(
            closed_at_once(extra).await,
            "a fifth HTTPS connection is closed at once"
        );
        // The plain-HTTP listener still answers.
        let reply = parse_reply(&plain_http(server.http, b"", "/crl").await);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/pkix-crl"));
        assert!(
            started.elapsed() < Duration::from_millis(1800),
            "checked within the handshake timeout"
        );
        // The idle sockets are closed after the handshake timeout, freeing the cap.
        for mut tcp in idle {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte))
                .await
                .expect("an idle HTTPS connection is closed after the handshake timeout");
            assert!(matches!(read, Ok(0) | Err(_)));
        }
        let reply = request(&server, "GET", "/healthz", None, b"").await;
        assert_eq!(reply.status, 200);

        // The plain-HTTP listener's cap taken by idle sockets (nothing sent) and one that sends
        // half a request line: HTTPS still answers.
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(tokio::net::TcpStream::connect(server.http).await.unwrap());
        }
        let mut partial = tokio::net::TcpStream::connect(server.http).await.unwrap();
        partial.write_all(b"GET /crl HT").await.unwrap();
        idle.push(partial);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let extra = tokio::net::TcpStream::connect(server.http).await.unwrap();
        assert!(
            closed_at_once(extra).await,
            "a fourth HTTP connection is closed at once"
        );
        let reply = request(&server, "GET", "/healthz", None, b"").await;
        assert_eq!(reply.status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(1800),
            "checked within the header timeout"
        );
        // They are closed after the header timeout (no complete request), freeing the cap.
        for mut tcp in idle {
            let mut raw = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
                .await
                .expect("an idle HTTP connection is closed after the header timeout")
                .ok();
        }
        let reply = parse_reply(&plain_http(server.http, b"", "/crl").await);
        assert_eq!(reply.status, 200);
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_under_acme_are_problem_documents_with_a_nonce() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| config.body_limit = 1024).await;
        // An oversized body (axum's body limit): 413.
        let big = vec![b'a'; 4096];
        let reply = request(&server, "POST", "/acme/new-order", Some("application/jose+json"), &big).await;
        assert_eq!((reply.status, reply.problem()), (413, "malformed".into()));
        assert_eq!(reply.json()["status"], 413);
        assert!(reply.header("replay-nonce").is_some());
        // Methods a resource does not take: 405, with Allow.
        for (method, path, allowed) in [
            ("PUT", "/acme/new-order", "POST"),
            ("GET", "/acme/new-account", "POST"),
            ("GET", "/acme/order/abc", "POST"),
            ("DELETE", "/acme/new-nonce", "GET"),
            ("POST", "/acme/directory", "GET"),
        ] {
            let reply = request(&server, method, path, Some("application/jose+json"), b"{}").await;
            assert_eq!(
                (reply.status, reply.problem()),
                (405, "malformed".into()),
                "{method} {path}"
            );
            assert_eq!(reply.json()["status"], 405);
            assert!(reply.header("allow").unwrap().contains(allowed), "{method} {path}");
            let detail = reply.json()["detail"].as_str().unwrap().to_string();
            assert!(
                detail.starts_with("this resource does not take that method (allowed: ") && detail.contains(allowed),
                "{method} {path}: {detail}"
            );
            assert!(reply.header("replay-nonce").is_some(), "{method} {path}");
        }
        // Unknown resources: 404.
        for path in ["/acme/nothing", "/acme/order/abc/nothing", "/acme/"] {
            let reply = request(&server, "GET", path, None, b"").await;
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(reply.problem(), "malformed", "{path}");
            assert!(reply.header("replay-nonce").is_some(), "{path}");
        }
        // Successes carry a nonce: newNonce answers 200 (HEAD) and 204 (GET) with one.
        let reply = request(&server, "GET", "/acme/new-nonce", None, b"").await;
        assert_eq!(reply.status, 204);
        assert!(reply.header("replay-nonce").is_some());
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

// ---------------------------------------------------------------------------------------------
// The `ca serve` command

#[test]
fn ca_serve_refuses_bad_flags_with_exit_2() {
    let ca = support::ToolCa::new("Serve Root", &[]);
    for (flags, message) in [
        (
            &["--listen", "127.0.0.1:0", "--base-url", "http://127.0.0.1:1"][..],
            "https://",
        ),
        (
            &["--listen", "127.0.0.1:0", "--base-url", "https://a.test/acme"][..],
            "path",
        ),
        (
            &["--listen", "127.0.0.1:70000", "--base-url", "https://a.test"][..],
            "IP:PORT",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--base-url",
                "https://a.test",
                "--va-resolve",
                "a.test",
            ][..],
            "NAME=IP",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--base-url",
                "https://a.test",
                "--va-http-port",
                "0",
            ][..],
            "port",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--base-url",
                "https://a.test",
                "--tls-cert",
                "x.pem",
            ][..],
            "--tls-key",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--base-url",
                "https://a.test",
                "--ocsp-hours",
                "0",
            ][..],
            "0 hours is out of range: use a whole number of hours from 1 to 240",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--base-url",
                "https://a.test",
                "--ocsp-hours",
                "241",
            ][..],
            "241 hours is out of range",
        ),
    ] {
        let out = support::output(ca.cmd().arg("serve").args(flags));
        assert_eq!(support::code(&out), 2, "{flags:?}: {}", support::stderr(&out));
        assert!(
            support::stderr(&out).contains(message),
            "{flags:?}: {}",
            support::stderr(&out)
        );
    }
    let help = support::ok(ca.cmd().args(["serve", "--help"]));
    for needle in [
        "EXAMPLES:",
        "EXIT CODES:",
        "--base-url",
        "--va-resolve",
        "--acme-hours",
        "--ocsp-hours",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
}

#[test]
fn ca_serve_says_which_tls_file_is_missing_or_unusable_with_exit_3() {
    let ca = support::ToolCa::new("Serve Root", &[]);
    let prefix = ca.path("srv");
    support::ok(
        ca.cmd()
            .args(["issue", "--profile", "server", "--name", "127.0.0.1", "--out"])
            .arg(&prefix),
    );
    let not_a_key = ca.path("not-a-key.pem");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let missing = ca.path("missing.key");
    for (key, message, hint) in [
        (
            &missing,
            "No such file or directory",
            "ca: hint: check the paths given to --tls-cert and --tls-key\n",
        ),
        (
            &not_a_key,
            "cannot use --tls-cert/--tls-key: cannot load private key",
            "ca: hint: give a PEM chain (leaf first) and its unencrypted PKCS#8 key\n",
        ),
    ] {
        let out = support::output(
            ca.cmd()
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--base-url",
                    "https://127.0.0.1:1",
                    "--tls-cert",
                ])
                .arg(support::with(&prefix, ".chain.pem"))
                .arg("--tls-key")
                .arg(key),
        );
        let stderr = support::stderr(&out);
        assert_eq!(support::code(&out), 3, "{stderr}");
        assert!(
            stderr.contains(message) && stderr.contains(&key.display().to_string()),
            "{stderr}"
        );
        assert!(stderr.ends_with(hint), "{stderr}");
    }
}

/// A `ca serve` process, killed on drop.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ca_serve_listens_serves_and_stops_on_sigterm_and_exits_3_when_it_cannot_bind() {
    use std::io::BufRead as _;
    let ca = support::ToolCa::new("Serve Root", &[]);
    let mut child = ca
        .cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--base-url",
            "https://127.0.0.1:1",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let https = lines.next().unwrap().unwrap();
    let http = lines.next().unwrap().unwrap();
    assert!(
        https.starts_with("listening on 127.0.0.1:") && https.ends_with(" (https)"),
        "{https}"
    );
    assert!(
        http.starts_with("listening on 127.0.0.1:") && http.ends_with(" (http)"),
        "{http}"
    );
    let http_address = http
        .trim_start_matches("listening on ")
        .trim_end_matches(" (http)")
        .to_string();
    let https_address = https
        .trim_start_matches("listening on ")
        .trim_end_matches(" (https)")
        .to_string();

    // /ca.pem over plain HTTP is the CA's certificate.
    let mut tcp = std::net::TcpStream::connect(&http_address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(
        &mut tcp,
        b"GET /ca.pem HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut tcp, &mut raw).unwrap();
    let reply = parse_reply(&raw);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, std::fs::read(ca.dir().join("ca.pem")).unwrap());

    // The port is taken: exit 3.
    let out =
        support::output(
            ca.cmd()
                .args(["serve", "--listen", &https_address, "--base-url", "https://127.0.0.1:1"]),
        );
    assert_eq!(support::code(&out), 3, "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("cannot listen on"),
        "{}",
        support::stderr(&out)
    );

    // With --tls-cert/--tls-key, that certificate is served.
    let prefix = ca.path("srv");
    support::ok(
        ca.cmd()
            .args(["issue", "--profile", "server", "--name", "127.0.0.1", "--out"])
            .arg(&prefix),
    );
    let mut second = ca
        .cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--base-url",
            "https://127.0.0.1:1",
            "--tls-cert",
        ])
        .arg(support::with(&prefix, ".chain.pem"))
        .arg("--tls-key")
        .arg(support::with(&prefix, ".key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let second_out = second.stdout.take().unwrap();
    let _second = Process(second);
    let line = std::io::BufReader::new(second_out).lines().next().unwrap().unwrap();
    let address: SocketAddr = line
        .trim_start_matches("listening on ")
        .trim_end_matches(" (https)")
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let chain = runtime.block_on(served_chain(address, &ca.dir().join("ca.pem")));
    let served = tessera::pki::CertificateInfo::from_der(&chain[0]).unwrap();
    let issued = pem::load_certificates(&support::with(&prefix, ".pem")).unwrap();
    assert_eq!(chain[0], issued[0], "{served:?}");

    // SIGTERM: exit 0.
    let pid = process.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut process = process;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ca serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// `ca serve`: SIGHUP, --base-url hosts the CA cannot certify, --allow-dns outside the name
// constraints, an unreadable CA directory

/// `GET path` over a fresh TLS connection to `address`, trusting `root` (PEM).
async fn https_get(address: SocketAddr, root: &Path, path: &str) -> Reply {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tls_client(root).connect(name, tcp).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

/// Waits (bounded, 20 s) until the file at `log` holds `needle`; its text.
fn wait_for_log(log: &Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ca_serve_keeps_serving_on_sighup_and_stops_with_exit_0_on_sigterm() {
    use std::io::BufRead as _;
    let ca = support::ToolCa::new("Serve Root", &[]);
    let log = ca.path("serve.log");
    let mut child = ca
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--base-url", "https://127.0.0.1:1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut process = Process(child);
    let line = std::io::BufReader::new(stdout).lines().next().unwrap().unwrap();
    let address: SocketAddr = line
        .trim_start_matches("listening on ")
        .trim_end_matches(" (https)")
        .parse()
        .unwrap();
    let root = ca.dir().join("ca.pem");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(runtime.block_on(https_get(address, &root, "/healthz")).status, 200);
    let pid = process.0.id().to_string();
    let signal = |name: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    };

    // SIGHUP: a warning, and the server goes on.
    signal("-HUP");
    let text = wait_for_log(
        &log,
        "SIGHUP: ca serve does not reload; restart it (SIGTERM drains) to pick up changes",
    );
    assert!(text.contains("WARN"), "{text}");
    assert!(process.0.try_wait().unwrap().is_none(), "ca serve ended on SIGHUP");
    assert_eq!(runtime.block_on(https_get(address, &root, "/healthz")).status, 200);
    signal("-HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(runtime.block_on(https_get(address, &root, "/healthz")).status, 200);

    // SIGTERM: the drain, "stopped", exit 0.
    signal("-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ca serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_log(&log, "stopped");
    let help = support::ok(ca.cmd().args(["serve", "--help"]));
    for needle in ["SIGNALS:", "SIGHUP", "nothing is reloaded"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

#[test]
fn ca_serve_refuses_hosts_and_suffixes_the_ca_cannot_certify() {
    let ca = support::ToolCa::new("Constrained Root", &["--permit-dns", "example.test"]);
    let serve = |flags: &[&str]| support::output(ca.cmd().args(["serve", "--listen", "127.0.0.1:0"]).args(flags));

    // Hosts no certificate should be issued for: usage errors, before anything starts.
    for (url, message) in [
        ("https://*.example.test", "wildcard"),
        ("https://*.example.test:8443", "wildcard"),
        (
            "https://acme.example.test.",
            "without the dot (https://acme.example.test)",
        ),
        ("https://[::1]x", "other than :PORT"),
        ("https://acme.example.test:+443", "port"),
        ("https://0.0.0.0:443", "cannot connect"),
        ("https://1.2.3", "all digits"),
        ("https://acme.example.test?x=1", "query"),
    ] {
        let out = serve(&["--base-url", url]);
        assert_eq!(support::code(&out), 2, "{url}: {}", support::stderr(&out));
        assert!(
            support::stderr(&out).contains(message),
            "{url}: {}",
            support::stderr(&out)
        );
    }

    // A host outside the name constraints: the server's own certificate cannot be issued (3),
    // and the hint names --tls-cert and --base-url, not ca issue's --san.
    let out = serve(&["--base-url", "https://acme.other.test"]);
    let stderr = support::stderr(&out);
    assert_eq!(support::code(&out), 3, "{stderr}");
    for needle in ["acme.other.test", "--base-url", "--tls-cert", "--tls-key"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!stderr.contains("--san"), "{stderr}");

    // An --allow-dns suffix no name of which the CA may certify: a usage error naming it.
    let out = serve(&[
        "--base-url",
        "https://acme.example.test",
        "--allow-dns",
        "example.test",
        "--allow-dns",
        "other.test",
    ]);
    let stderr = support::stderr(&out);
    assert_eq!(support::code(&out), 2, "{stderr}");
    assert!(stderr.contains("--allow-dns other.test"), "{stderr}");
    assert!(stderr.contains("example.test"), "{stderr}");

    // An --allow-ip value that is not a network (host bits set): a usage error naming the
    // network meant (networks the constraints leave no address of: the test below).
    let out = serve(&["--base-url", "https://acme.example.test", "--allow-ip", "10.0.0.1/8"]);
    let stderr = support::stderr(&out);
    assert_eq!(support::code(&out), 2, "{stderr}");
    assert!(
        stderr.contains("host bits set") && stderr.contains("10.0.0.0/8"),
        "{stderr}"
    );
    // Its advice never repeats the value refused (a wrong prefix, host bits set) as the
    // spelling to use instead.
    for (value, wrong) in [
        ("10.0.0.1/8", "write it 10.0.0.1/8"),
        ("127.0.0.1/33", "write it 127.0.0.1/33"),
        ("::1/129", "write it ::1/129"),
        ("127.1/33", "write it 127.0.0.1/33"),
        ("127.1/8", "write it 127.0.0.1/8"),
    ] {
        let out = serve(&["--base-url", "https://acme.example.test", "--allow-ip", value]);
        let stderr = support::stderr(&out);
        assert_eq!(support::code(&out), 2, "{value}: {stderr}");
        assert!(!stderr.contains(wrong), "{value}: {stderr}");
    }

    // An IPv4-mapped --allow-ip network, one of only special-purpose addresses, a
    // special-purpose --va-resolve answer: usage errors when the command line is read, saying
    // what to give instead.
    for (flag, value, message) in [
        ("--allow-ip", "::ffff:127.0.0.1/128", "give 127.0.0.1/32"),
        ("--allow-ip", "::ffff:10.0.0.0/104", "give 10.0.0.0/8"),
        ("--allow-ip", "169.254.0.0/16", "link-local"),
        ("--allow-ip", "169.254.169.254", "link-local"),
        ("--allow-ip", "224.0.0.0/4", "multicast"),
        ("--allow-ip", "0.0.0.0/8", "unspecified"),
        ("--allow-ip", "240.0.0.0/4", "reserved"),
        ("--allow-ip", "fe80::/10", "link-local"),
        ("--allow-ip", "ff00::/8", "multicast"),
        ("--allow-ip", "::", "unspecified"),
        ("--allow-ip", "64:ff9b::7f00:1", "give 127.0.0.1/32"),
        ("--allow-ip", "127.1", "write the address 127.0.0.1"),
        ("--va-resolve", "*=0.0.0.0", "never dials"),
        ("--va-resolve", "a.example.test=169.254.169.254", "never dials"),
        ("--va-resolve", "*=::ffff:127.0.0.1", "never dials"),
    ] {
        let out = serve(&["--base-url", "https://acme.example.test", flag, value]);
        let stderr = support::stderr(&out);
        assert_eq!(support::code(&out), 2, "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("for '{flag} ")) && stderr.contains(message),
            "{flag} {value}: {stderr}"
        );
    }
}

#[test]
fn allow_dns_suffixes_are_checked_against_every_name_constraint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut request = InitRequest::new("Constrained Root");
    request.permitted_dns = vec!["example.test".into(), ".corp.test".into()];
    request.excluded_dns = vec!["secret.example.test".into()];
    let ca = CertificateAuthority::init(&tmp.path().join("ca"), &request, None, OffsetDateTime::now_utc()).unwrap();
    for (suffix, issuable) in [
        ("example.test", true),
        ("a.example.test", true),
        ("test", true),
        ("corp.test", true),
        ("x.corp.test", true),
        ("other.test", false),
        ("example.test.evil", false),
        ("xexample.test", false),
        ("secret.example.test", false),
        ("a.secret.example.test", false),
        ("notsecret.example.test", true),
    ] {
        let refusal = tessera::ca::serve::allow_dns_refusal(ca.chain(), suffix);
        assert_eq!(refusal.is_none(), issuable, "{suffix}: {refusal:?}");
    }
    // A CA without name constraints may issue under every suffix.
    let free = CertificateAuthority::init(
        &tmp.path().join("free"),
        &InitRequest::new("Free Root"),
        None,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(
        tessera::ca::serve::allow_dns_refusal(free.chain(), "anything.test"),
        None
    );
}

#[test]
fn allow_ip_networks_are_checked_against_every_name_constraint() {
    let tmp = tempfile::tempdir().unwrap();
    let mut request = InitRequest::new("Constrained Root");
    request.permitted_ip = vec![("10.0.0.0".parse().unwrap(), 8), ("2001:db8::".parse().unwrap(), 32)];
    let ca = CertificateAuthority::init(&tmp.path().join("ca"), &request, None, OffsetDateTime::now_utc()).unwrap();
    let cidr = |text: &str| tessera::channel::Cidr::parse(text).unwrap();
    for (network, issuable) in [
        ("10.0.0.0/8", true),
        ("10.1.2.3", true),
        ("0.0.0.0/0", true),
        ("10.9.0.0/16", true),
        ("8.0.0.0/6", true),
        ("127.0.0.1", false),
        ("11.0.0.0/8", false),
        ("2001:db8::1", true),
        ("2001:db9::/32", false),
    ] {
        let refusal = tessera::ca::serve::allow_ip_refusal(ca.chain(), &cidr(network));
        assert_eq!(refusal.is_none(), issuable, "{network}: {refusal:?}");
    }
}

#[test]
fn an_unreadable_ca_directory_is_reported_as_permission_denied() {
    use std::os::unix::fs::PermissionsExt as _;
    let ca = support::ToolCa::new("Private Root", &[]);
    let root = support::output(std::process::Command::new("id").arg("-u"));
    let as_root = support::stdout(&root).trim() == "0";
    // Others may reach the directory (so only its own mode is in the way), not enter it.
    std::fs::set_permissions(ca.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(ca.dir(), std::fs::Permissions::from_mode(0o000)).unwrap();
    for args in [
        &["list"][..],
        &["serve", "--listen", "127.0.0.1:0", "--base-url", "https://127.0.0.1:1"][..],
    ] {
        // root reads any directory: as root, run it as nobody.
        let mut cmd = if as_root {
            let mut cmd = support::command_path("runuser");
            cmd.args(["-u", "nobody", "--"]).arg(support::tool("ca"));
            cmd
        } else {
            support::command("ca")
        };
        cmd.arg("--dir").arg(ca.dir()).args(args);
        let out = support::output(&mut cmd);
        let stderr = support::stderr(&out);
        assert_eq!(support::code(&out), 3, "{args:?}: {stderr}");
        assert!(stderr.contains("Permission denied"), "{args:?}: {stderr}");
        assert!(!stderr.contains("not a CA directory"), "{args:?}: {stderr}");
    }
    std::fs::set_permissions(ca.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The account's orders list, key rollover, ARI replaces

/// The `Link` header values of a reply.
fn links(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("link"))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The URL of the `rel="next"` link, if any.
fn next_link(reply: &Reply) -> Option<String> {
    links(reply)
        .iter()
        .find(|l| l.ends_with(";rel=\"next\""))
        .map(|l| l.trim_start_matches('<').split('>').next().unwrap().to_string())
}

fn order_urls(reply: &Reply) -> Vec<String> {
    reply.json()["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_orders_list_is_the_accounts_own_paged_with_a_next_link() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|_| {}).await;
        let alice = Client::register(&server).await;
        let bob = Client::register(&server).await;
        // The account object names its orders list (RFC 8555 §7.1.2: required).
        let kid = alice.kid.clone().unwrap();
        let account = alice.post(&alice.path_of(&kid), None).await;
        assert_eq!(account.status, 200);
        let orders_url = account.json()["orders"].as_str().unwrap().to_string();
        assert_eq!(orders_url, format!("{kid}/orders"));
        let orders_path = alice.path_of(&orders_url);

        // Empty at first, and no next page.
        let reply = alice.post(&orders_path, None).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert!(order_urls(&reply).is_empty());
        assert_eq!(next_link(&reply), None);

        // Two orders by HTTP, then 103 more rows in the store (older ones), one of them invalid.
        let first = alice.order(&["one.example.test"]).await;
        assert_eq!(first.status, 201);
        let second = alice.order(&["two.example.test"]).await;
        assert_eq!(second.status, 201);
        let bobs = bob.order(&["bob.example.test"]).await;
        assert_eq!(bobs.status, 201);
        let first_id = first
            .header("location")
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        {
            let db = rusqlite::Connection::open(server.dir().join("ca.db")).unwrap();
            db.busy_timeout(Duration::from_secs(10)).unwrap();
            for n in 0..103 {
                db.execute(
                    "INSERT INTO acme_orders SELECT issuer, id || '-' || ?2, account_id, \
                     CASE WHEN ?2 = 7 THEN 'invalid' ELSE status END, identifiers, '[]', expires, not_before, \
                     not_after, error, certificate, replaces, created - 10 - ?2, processing_since \
                     FROM acme_orders WHERE id = ?1",
                    rusqlite::params![first_id, n],
                )
                .unwrap();
            }
        }
        let mut expected: BTreeSet<String> = (0..103)
            .filter(|n| *n != 7)
            .map(|n| server.url(&format!("/acme/order/{first_id}-{n}")))
            .collect();
        expected.insert(first.header("location").unwrap().to_string());
        expected.insert(second.header("location").unwrap().to_string());
        assert_eq!(expected.len(), 104);

        // Page 1: 100 URLs, newest first, and a next link; page 2: the other 4, no next link.
        let page1 = alice.post(&orders_path, None).await;
        assert_eq!(page1.status, 200);
        let urls1 = order_urls(&page1);
        assert_eq!(urls1.len(), 100);
        assert!(
            urls1[..2].contains(&second.header("location").unwrap().to_string()),
            "{:?}",
            &urls1[..2]
        );
        assert_eq!(urls1[2], server.url(&format!("/acme/order/{first_id}-0")));
        let next = next_link(&page1).expect("a next link");
        assert!(next.starts_with(&format!("{orders_url}?cursor=")), "{next}");
        let page2 = alice.post(&alice.path_of(&next), None).await;
        assert_eq!(page2.status, 200, "{}", String::from_utf8_lossy(&page2.body));
        let urls2 = order_urls(&page2);
        assert_eq!(urls2.len(), 4, "{urls2:?}");
        assert_eq!(next_link(&page2), None);
        let all: Vec<String> = urls1.iter().chain(&urls2).cloned().collect();
        let unique: BTreeSet<String> = all.iter().cloned().collect();
        assert_eq!(unique.len(), all.len(), "no order twice");
        assert_eq!(unique, expected, "every live order, the invalid one left out");
        assert!(!unique.contains(bobs.header("location").unwrap()));

        // Another account may not read it; a cursor that does not parse is malformed; the list
        // is read with POST-as-GET only.
        let reply = bob.post(&orders_path, None).await;
        assert_eq!((reply.status, reply.problem().as_str()), (403, "unauthorized"));
        for query in [
            "?cursor=abc",
            "?cursor=12.",
            "?cursor=x.abc",
            "?other=1",
            "?cursor=1.a%2Fb",
        ] {
            let reply = alice.post(&format!("{orders_path}{query}"), None).await;
            assert_eq!((reply.status, reply.problem().as_str()), (400, "malformed"), "{query}");
        }
        let reply = alice.post(&orders_path, Some(&json!({}))).await;
        assert_eq!(reply.problem(), "malformed");
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

/// The inner JWS of a key change (RFC 8555 §7.3.5), signed by `new_key`.
fn key_change_inner(server: &Server, new_key: &Signer, url_path: &str, account: &str, old_key: &Value) -> Value {
    let protected = json!({"alg": "ES256", "jwk": new_key.jwk(), "url": server.url(url_path)});
    let body = new_key.sign(&protected, Some(&json!({"account": account, "oldKey": old_key})));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_key_rollover_moves_the_account_to_the_new_key_once() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|_| {}).await;
        let directory = request(&server, "GET", "/acme/directory", None, b"").await.json();
        assert_eq!(directory["keyChange"], server.url("/acme/key-change"));
        let alice = Client::register(&server).await;
        let bob = Client::register(&server).await;
        let kid = alice.kid.clone().unwrap();
        let new_key = Signer::new();
        let old_jwk = alice.key.jwk();

        // oldKey that is not the account's key: unauthorized.
        let inner = key_change_inner(&server, &new_key, "/acme/key-change", &kid, &Signer::new().jwk());
        let reply = alice.post("/acme/key-change", Some(&inner)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (403, "unauthorized"));
        // The inner url differs from the outer one: malformed.
        let inner = key_change_inner(&server, &new_key, "/acme/new-order", &kid, &old_jwk);
        let reply = alice.post("/acme/key-change", Some(&inner)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (400, "malformed"));
        // Another account in the inner payload: unauthorized.
        let inner = key_change_inner(
            &server,
            &new_key,
            "/acme/key-change",
            bob.kid.as_ref().unwrap(),
            &old_jwk,
        );
        let reply = alice.post("/acme/key-change", Some(&inner)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (403, "unauthorized"));
        // The inner JWS signed by another key than the one it carries: malformed.
        let mut inner = key_change_inner(&server, &new_key, "/acme/key-change", &kid, &old_jwk);
        let forged = key_change_inner(&server, &Signer::new(), "/acme/key-change", &kid, &old_jwk);
        inner["signature"] = forged["signature"].clone();
        let reply = alice.post("/acme/key-change", Some(&inner)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (400, "malformed"));
        // Bob's key as the new key: 409 with Bob's account URL.
        let inner = key_change_inner(&server, &bob.key, "/acme/key-change", &kid, &old_jwk);
        let reply = alice.post("/acme/key-change", Some(&inner)).await;
        assert_eq!(reply.status, 409, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.problem(), "malformed");
        assert_eq!(reply.header("location"), bob.kid.as_deref());
        // Nothing changed so far.
        let reply = alice.post(&alice.path_of(&kid), None).await;
        assert_eq!(reply.status, 200);

        // The rollover.
        let inner = key_change_inner(&server, &new_key, "/acme/key-change", &kid, &old_jwk);
        let reply = alice.post("/acme/key-change", Some(&inner)).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["status"], "valid");
        assert_eq!(reply.header("location"), Some(kid.as_str()));
        let x = new_key.jwk()["x"].as_str().unwrap().to_string();
        assert_eq!(
            server.count(&format!(
                "SELECT count(*) FROM acme_accounts WHERE id = '{}' AND jwk LIKE '%{x}%'",
                kid.rsplit('/').next().unwrap()
            )),
            1
        );

        // The new key works for the account; the old one does not (§7.3.5: the old key is no
        // longer the account's): with kid its signature does not verify, and newAccount with
        // onlyReturnExisting finds no account for it.
        let renewed = Client {
            server: &server,
            key: Signer::from_pkcs8(new_key.pkcs8.clone()),
            kid: Some(kid.clone()),
        };
        let reply = renewed.post(&renewed.path_of(&kid), None).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(renewed.order(&["rolled.example.test"]).await.status, 201);
        let reply = alice.post(&alice.path_of(&kid), None).await;
        assert_eq!((reply.status, reply.problem().as_str()), (400, "malformed"));
        let old = Client {
            server: &server,
            key: Signer::from_pkcs8(alice.key.pkcs8.clone()),
            kid: None,
        };
        let reply = old
            .post("/acme/new-account", Some(&json!({"onlyReturnExisting": true})))
            .await;
        assert_eq!(reply.problem(), "accountDoesNotExist");
        let fresh = Client {
            server: &server,
            key: Signer::from_pkcs8(new_key.pkcs8.clone()),
            kid: None,
        };
        let reply = fresh
            .post("/acme/new-account", Some(&json!({"onlyReturnExisting": true})))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("location"), Some(kid.as_str()));
        // Rolling over again with the stale old key as oldKey: unauthorized.
        let inner = key_change_inner(&server, &Signer::new(), "/acme/key-change", &kid, &old_jwk);
        let reply = renewed.post("/acme/key-change", Some(&inner)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (403, "unauthorized"));
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_is_replaced_by_one_live_order_at_a_time() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|config| config.va_always_valid = true).await;
        let alice = Client::register(&server).await;
        let bob = Client::register(&server).await;
        let order = ready_order(&alice, &["r.example.test"]).await;
        let (der, _) = csr(&["r.example.test"]);
        let reply = alice
            .post(
                &alice.path_of(order["finalize"].as_str().unwrap()),
                Some(&json!({"csr": B64.encode(der)})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let done = alice.settle(order["url"].as_str().unwrap()).await;
        assert_eq!(done["status"], "valid", "{done}");
        let chain = alice
            .post(&alice.path_of(done["certificate"].as_str().unwrap()), None)
            .await;
        assert_eq!(chain.status, 200);
        let leaf = pem::parse_certificates(&chain.body, "chain").unwrap().remove(0);
        let cert_id = tessera::ca::serve::ari::CertId::from_certificate(&leaf)
            .unwrap()
            .to_string();
        let replacing = json!({
            "identifiers": [{"type": "dns", "value": "r.example.test"}],
            "replaces": cert_id,
        });

        // Another account's order may not replace it.
        let reply = bob.post("/acme/new-order", Some(&replacing)).await;
        assert_eq!(reply.problem(), "malformed");
        // Nor an order that shares no identifier with it (RFC 9773 §5); one sharing one may.
        let unrelated = json!({
            "identifiers": [{"type": "dns", "value": "other.example.test"}],
            "replaces": cert_id,
        });
        let reply = alice.post("/acme/new-order", Some(&unrelated)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (400, "malformed"));
        assert!(
            reply.json()["detail"]
                .as_str()
                .unwrap()
                .contains("shares no identifier"),
            "{}",
            reply.json()
        );
        // Two at once: one is created, the other is alreadyReplaced (409).
        let (a, b) = tokio::join!(
            alice.post("/acme/new-order", Some(&replacing)),
            alice.post("/acme/new-order", Some(&replacing))
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 409],
            "{} {}",
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body)
        );
        let (winner, loser) = if a.status == 201 { (a, b) } else { (b, a) };
        assert_eq!(loser.problem(), "alreadyReplaced");
        assert_eq!(winner.json()["replaces"], json!(cert_id));
        // And later ones too, while that order lives.
        let reply = alice.post("/acme/new-order", Some(&replacing)).await;
        assert_eq!((reply.status, reply.problem().as_str()), (409, "alreadyReplaced"));
        assert_eq!(
            server.count(&format!(
                "SELECT count(*) FROM acme_orders WHERE replaces = '{cert_id}'"
            )),
            1
        );
        // Once that order is invalid (its authorization deactivated), another may replace it.
        let authz = winner.json()["authorizations"][0].as_str().unwrap().to_string();
        let reply = alice
            .post(&alice.path_of(&authz), Some(&json!({"status": "deactivated"})))
            .await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let reply = alice.post("/acme/new-order", Some(&replacing)).await;
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

#[test]
fn ca_serve_on_postgresql_that_cannot_start_exits_3_with_the_reason_never_a_panic() {
    // The blocking PostgreSQL client may not be closed on a runtime's thread: every way out
    // before serving (a port in use, a host outside the name constraints) must close it off
    // the runtime and say why, with exit 3.
    let pg = pg_support::Postgres::start();
    pg.create_db("start");
    let url = pg.url("start");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    support::ok(support::ca(&dir).arg("--db").arg(&url).args([
        "init",
        "--name",
        "PG Start Root",
        "--no-passphrase",
        "--permit-dns",
        "example.test",
    ]));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--listen", &taken, "--base-url", "https://acme.example.test"],
            "cannot listen on",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                &taken,
                "--base-url",
                "https://acme.example.test",
            ],
            "(--http-listen)",
        ),
        (
            &["--listen", "127.0.0.1:0", "--base-url", "https://acme.elsewhere.org"],
            "--tls-cert",
        ),
    ];
    for (flags, needle) in cases {
        let out = support::run(
            support::ca(&dir).arg("--db").arg(&url).arg("serve").args(flags),
            None,
            Duration::from_secs(60),
        );
        let stderr = support::stderr(&out);
        assert_eq!(support::code(&out), 3, "{flags:?}: {stderr}");
        assert!(
            stderr.contains("ca: error: ") && stderr.contains(needle),
            "{flags:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("runtime"),
            "{flags:?}: {stderr}"
        );
    }
}

#[test]
fn an_instance_whose_clock_is_ahead_of_postgresqls_takes_no_lease_and_says_so() {
    use std::io::BufRead as _;
    // libfaketime, preloaded into `ca` itself (the faketime wrapper would stand between the
    // test and the process it signals).
    let preload = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists());
    if !support::require(
        "libfaketime",
        preload.is_some(),
        "`make deps` installs the faketime package",
    ) {
        return;
    }
    let pg = pg_support::Postgres::start();
    pg.create_db("skew");
    let url = pg.url("skew");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    support::ok(
        support::ca(&dir)
            .arg("--db")
            .arg(&url)
            .args(["init", "--name", "Skewed Root", "--no-passphrase"]),
    );
    // The instance's clock (libfaketime) is 10 minutes ahead; the database's is right.
    let stderr_path = tmp.path().join("serve.err");
    let mut command = support::ca(&dir);
    command
        .env("LD_PRELOAD", preload.unwrap_or_default())
        .env("FAKETIME", "+10m")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .arg("--db")
        .arg(&url)
        .args(["serve", "--listen", "127.0.0.1:0", "--base-url", "https://127.0.0.1:1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut process = Process(command.spawn().unwrap());
    let stdout = process.0.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout).lines().next().unwrap().unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    let said = (0..300).any(|_| {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if log.contains("ahead of the database's") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(said, "no clock error logged: {log}");
    assert!(log.contains("fix its time (NTP)"), "{log}");
    // Two more rounds (5 s apart): still no lease, and the error was said once.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(pg_count(&url, "SELECT count(*) FROM acme_leases"), 0);
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert_eq!(log.matches("ahead of the database's").count(), 1, "{log}");
    let pid = process.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "ca serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
}

#[test]
fn ca_serve_on_postgresql_stops_on_sigterm_with_exit_0_and_releases_its_leases() {
    use std::io::BufRead as _;
    let pg = pg_support::Postgres::start();
    pg.create_db("serve");
    let url = pg.url("serve");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    support::ok(
        support::ca(&dir)
            .arg("--db")
            .arg(&url)
            .args(["init", "--name", "PG Serve Root", "--no-passphrase"]),
    );
    let stderr_path = tmp.path().join("serve.err");
    let child = support::ca(&dir)
        .arg("--db")
        .arg(&url)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--base-url",
            "https://127.0.0.1:1",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut process = Process(child);
    let stdout = process.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let _https = lines.next().unwrap().unwrap();
    let http = lines.next().unwrap().unwrap();
    let http_address = http
        .trim_start_matches("listening on ")
        .trim_end_matches(" (http)")
        .to_string();
    // The periodic work publishes a CRL under its lease; /crl serves it from the store.
    let mut served = false;
    for _ in 0..200 {
        let mut tcp = std::net::TcpStream::connect(&http_address).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut tcp, b"GET /crl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut tcp, &mut raw).unwrap();
        if parse_reply(&raw).status == 200 {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "no CRL at /crl");
    let leases = |sql: &str| pg_count(&url, sql);
    assert!(
        (0..100).any(|_| {
            let n = leases("SELECT count(*) FROM acme_leases WHERE good_until > 0");
            if n < 2 {
                std::thread::sleep(Duration::from_millis(100));
            }
            n == 2
        }),
        "the instance holds the crl and expire leases"
    );

    let pid = process.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "ca serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("released the lease"), "{stderr}");
    // Released: good until 0, so another instance takes them at its next round.
    assert_eq!(leases("SELECT count(*) FROM acme_leases WHERE good_until = 0"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instant_acme_rolls_its_account_key_over() {
    tokio::time::timeout(LIMIT, async {
        let server = Server::start(|_| {}).await;
        let new_account = instant_acme::NewAccount {
            contact: &[],
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (mut account, old_credentials) = instant_acme::Account::builder_with_root(server.root_pem())
            .unwrap()
            .create(&new_account, server.directory_url(), None)
            .await
            .unwrap();
        let id = account.id().to_string();
        let new_credentials = account.update_key().await.unwrap();
        let identifiers = [instant_acme::Identifier::Dns("rolled.example.test".into())];
        // The updated account (new key) orders; the same account from its new credentials too.
        account
            .new_order(&instant_acme::NewOrder::new(&identifiers))
            .await
            .unwrap();
        let reloaded = instant_acme::Account::builder_with_root(server.root_pem())
            .unwrap()
            .from_credentials(new_credentials)
            .await
            .unwrap();
        assert_eq!(reloaded.id(), id);
        reloaded
            .new_order(&instant_acme::NewOrder::new(&identifiers))
            .await
            .unwrap();
        // The old credentials (old key, same account URL) are refused.
        let stale = instant_acme::Account::builder_with_root(server.root_pem())
            .unwrap()
            .from_credentials(old_credentials)
            .await
            .unwrap();
        let refused = stale
            .new_order(&instant_acme::NewOrder::new(&identifiers))
            .await
            .err()
            .expect("the old key is no longer the account's");
        assert!(refused.to_string().contains("malformed"), "{refused}");
        assert_eq!(server.count("SELECT count(*) FROM acme_accounts"), 1);
        assert_eq!(server.count("SELECT count(*) FROM acme_orders"), 2);
        server.stop().await;
    })
    .await
    .expect("within the time limit");
}

// ---------------------------------------------------------------------------------------------
// `kill -9` mid-finalize: nothing half-issued (issue 10)

/// A `ca serve` seen from outside: the base URL it was given, the HTTPS address it printed, the
/// CA's root.
#[derive(Clone)]
struct Remote {
    base: String,
    address: SocketAddr,
    root: PathBuf,
}

impl Endpoint for Remote {
    fn base(&self) -> &str {
        &self.base
    }

    fn address(&self) -> SocketAddr {
        self.address
    }

    fn root_pem(&self) -> PathBuf {
        self.root.clone()
    }
}

/// A `ca serve` process (killed by its PID on drop) and where it answers.
struct ServeProcess {
    process: Process,
    remote: Remote,
    stderr: PathBuf,
}

impl ServeProcess {
    /// `ca --dir DIR [--db URL] serve --listen 127.0.0.1:0 --base-url BASE FLAGS…`, its stderr to
    /// `stderr`; waits (at most a minute) for its `listening on` line.
    fn start(dir: &Path, db: Option<&str>, base: &str, flags: &[&str], stderr: PathBuf) -> Self {
        use std::io::BufRead as _;
        let mut command = support::ca(dir);
        if let Some(url) = db {
            command.arg("--db").arg(url);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--base-url", base])
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let process = Process(child);
        // The first line, then the rest drained (the pipe stays open), on a thread of its own.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "ca serve did not say where it listens ({other:?}): {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ),
        };
        let address: SocketAddr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.strip_suffix(" (https)"))
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        Self {
            process,
            remote: Remote {
                base: base.to_string(),
                address,
                root: dir.join("ca.pem"),
            },
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// A connection to a test's store, read only: `DIR/ca.db` or a PostgreSQL database.
enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Db {
    fn open(dir: &Path, url: Option<&str>) -> Self {
        match url {
            None => Db::Sqlite(
                rusqlite::Connection::open_with_flags(dir.join("ca.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .unwrap(),
            ),
            Some(url) => Db::Postgres(postgres::Client::connect(url, postgres::NoTls).unwrap()),
        }
    }

    /// Waits (at most 30 s) until no other session is connected: on PostgreSQL, a statement a
    /// killed instance sent just before it died still runs, and commits, after its death.
    fn wait_until_alone(&mut self) {
        let Db::Postgres(db) = self else { return };
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND backend_type = 'client backend' AND pid <> pg_backend_pid()";
        for _ in 0..300 {
            if db.query_one(sql, &[]).unwrap().get::<_, i64>(0) == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the killed instance's sessions are still there after 30 s");
    }

    /// Every row of `sql`, whose columns are all text (NULL: `None`).
    fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Db::Sqlite(db) => {
                let mut statement = db.prepare(sql).unwrap();
                let columns = statement.column_count();
                statement
                    .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Postgres(db) => db
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
                .collect(),
        }
    }
}

/// The names of the files that interrupted atomic writes leave (`.NAME.tmp-PID-HEX`) in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect()
}

/// Checks that the store holds nothing half-issued for the orders in `names` (order id → its
/// one DNS name): every order's status is one of `allowed`; a valid order's certificate is in
/// the store and names the order's name; no other order has a certificate; every certificate
/// for these names belongs to exactly one valid order, so a name has as many certificates as
/// valid orders; an order in `processing` says since when. Returns the order ids by status.
fn assert_nothing_half_issued(
    db: &mut Db,
    names: &BTreeMap<String, String>,
    allowed: &[&str],
) -> BTreeMap<String, BTreeSet<String>> {
    let orders: BTreeMap<String, (String, Option<String>, Option<String>)> = db
        .rows("SELECT id, status, certificate, CAST(processing_since AS TEXT) FROM acme_orders")
        .into_iter()
        .map(|row| {
            let [id, status, certificate, since] = <[Option<String>; 4]>::try_from(row).unwrap();
            (id.unwrap(), (status.unwrap(), certificate, since))
        })
        .collect();
    let certificates: Vec<(String, String)> = db
        .rows("SELECT serial, sans FROM certificates WHERE sans LIKE '%kill.example.test%'")
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect();
    assert_eq!(
        orders.keys().collect::<BTreeSet<_>>(),
        names.keys().collect::<BTreeSet<_>>(),
        "the store holds the test's orders"
    );
    let mut by_status: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, (status, certificate, since)) in &orders {
        assert!(
            allowed.contains(&status.as_str()),
            "order {id} is {status}, not one of {allowed:?}"
        );
        by_status.entry(status.clone()).or_default().insert(id.clone());
        let name = &names[id];
        match (status.as_str(), certificate) {
            ("valid", Some(serial)) => {
                let found: Vec<_> = certificates.iter().filter(|(s, _)| s == serial).collect();
                assert_eq!(
                    found.len(),
                    1,
                    "valid order {id}: its certificate {serial} is in the store once"
                );
                assert!(
                    found[0].1.contains(&format!("\"dns:{name}\"")),
                    "order {id}'s certificate names {name}: {}",
                    found[0].1
                );
            }
            ("valid", None) => panic!("order {id} is valid without a certificate"),
            (_, Some(serial)) => panic!("order {id} is {status} but names certificate {serial}"),
            (_, None) => {}
        }
        assert_eq!(
            status == "processing",
            since.is_some(),
            "order {id} ({status}): processing_since {since:?}"
        );
    }
    for (serial, sans) in &certificates {
        let owners: Vec<_> = orders
            .iter()
            .filter(|(_, (_, certificate, _))| certificate.as_deref() == Some(serial.as_str()))
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "certificate {serial} ({sans}) belongs to exactly one order: {owners:?}"
        );
        assert_eq!(owners[0].1.0, "valid", "certificate {serial} belongs to a valid order");
    }
    for name in names.values().collect::<BTreeSet<_>>() {
        let issued = certificates
            .iter()
            .filter(|(_, sans)| sans.contains(&format!("\"dns:{name}\"")))
            .count();
        let valid = names
            .iter()
            .filter(|(id, n)| *n == name && orders[*id].0 == "valid")
            .count();
        assert_eq!(issued, valid, "{name}: {issued} certificates for {valid} valid orders");
    }
    by_status
}

/// An account's key and URL, to talk to another instance as the same account.
struct Account {
    pkcs8: Vec<u8>,
    kid: String,
}

impl Account {
    fn at<'a>(&self, server: &'a dyn Endpoint) -> Client<'a> {
        Client {
            server,
            key: Signer::from_pkcs8(self.pkcs8.clone()),
            kid: Some(self.kid.clone()),
        }
    }
}

/// The order's id (the last part of its URL).
fn order_id(order: &Value) -> String {
    order["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// A signed finalize request for `order` (one DNS name) with a new CSR, from `client`.
async fn finalize_body(client: &Client<'_>, order: &Value, name: &str) -> (String, Vec<u8>) {
    let path = client.path_of(order["finalize"].as_str().unwrap());
    let nonce = client.nonce().await;
    let (der, _) = csr(&[name]);
    let body = client
        .key
        .sign(&client.protected(&nonce, &path), Some(&json!({"csr": B64.encode(der)})));
    (path, body)
}

const KILL_ACCOUNTS: usize = 6;
const KILL_ORDERS_EACH: usize = 5;
/// What the clients think the server is (a load balancer's address); each instance listens on a
/// port of its own.
const KILL_BASE: &str = "https://127.0.0.1:1";

/// Issue 10: `kill -9` of a `ca serve` while it finalizes many orders at once leaves nothing
/// half-issued, and the next instance on the same directory and store finishes the job. `db`:
/// a PostgreSQL store (`None`: SQLite in DIR/ca.db).
fn kill_9_mid_finalize(db_url: Option<&str>) {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let mut init = support::ca(&dir);
    if let Some(url) = db_url {
        init.arg("--db").arg(url);
    }
    support::ok(init.args(["init", "--name", "Kill Root", "--no-passphrase"]));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let mut first = ServeProcess::start(
        &dir,
        db_url,
        KILL_BASE,
        &["--va-always-valid"],
        tmp.path().join("first.err"),
    );
    let remote = first.remote.clone();

    // Accounts, each with orders brought to ready, at once.
    let accounts: Vec<(Account, Vec<(Value, String)>)> = runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let mut tasks = tokio::task::JoinSet::new();
            for a in 0..KILL_ACCOUNTS {
                let remote = remote.clone();
                tasks.spawn(async move {
                    let client = Client::register(&remote).await;
                    let mut orders = Vec::new();
                    for i in 0..KILL_ORDERS_EACH {
                        let name = format!("o{a}-{i}.kill.example.test");
                        orders.push((ready_order(&client, &[name.as_str()]).await, name));
                    }
                    let account = Account {
                        pkcs8: client.key.pkcs8.clone(),
                        kid: client.kid.clone().unwrap(),
                    };
                    (a, account, orders)
                });
            }
            let mut accounts = Vec::new();
            while let Some(done) = tasks.join_next().await {
                accounts.push(done.unwrap());
            }
            accounts.sort_by_key(|(a, _, _)| *a);
            accounts
                .into_iter()
                .map(|(_, account, orders)| (account, orders))
                .collect()
        })
        .await
        .expect("the orders are ready within the time limit")
    });
    let names: BTreeMap<String, String> = accounts
        .iter()
        .flat_map(|(_, orders)| orders.iter().map(|(order, name)| (order_id(order), name.clone())))
        .collect();
    assert_eq!(names.len(), KILL_ACCOUNTS * KILL_ORDERS_EACH);
    let mut db = Db::open(&dir, db_url);
    assert_nothing_half_issued(&mut db, &names, &["ready"]);

    // Every finalize request signed beforehand, then all sent at once.
    let bodies: Vec<(String, String, Vec<u8>)> = runtime.block_on(async {
        let mut bodies = Vec::new();
        for (account, orders) in &accounts {
            let client = account.at(&remote);
            for (order, name) in orders {
                let (path, body) = finalize_body(&client, order, name).await;
                bodies.push((order_id(order), path, body));
            }
        }
        bodies
    });
    let mut in_flight = Vec::new();
    for (id, path, body) in bodies {
        let (address, root) = (remote.address, remote.root.clone());
        in_flight.push((
            id,
            runtime.spawn(async move {
                try_request(address, &root, "POST", &path, Some("application/jose+json"), &body).await
            }),
        ));
    }
    // kill -9 (Child::kill: SIGKILL to its PID) as soon as one order is valid while another is
    // being finalized.
    let pid = first.pid();
    // The killed instance holds the lease of the clean-up (taken at its start, renewed every
    // 5 s for 30 s), so no instance turns stuck orders invalid before it runs out.
    let expire_lease = |db: &mut Db| -> i64 {
        let rows = db.rows("SELECT holder, CAST(good_until AS TEXT) FROM acme_leases WHERE name = 'expire'");
        assert_eq!(rows.len(), 1, "the expire lease is held");
        rows[0][1].as_deref().unwrap().parse().unwrap()
    };
    expire_lease(&mut db);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts: BTreeMap<String, String> = db
            .rows("SELECT status, CAST(count(*) AS TEXT) FROM acme_orders GROUP BY status")
            .into_iter()
            .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
            .collect();
        if counts.contains_key("valid") && counts.contains_key("processing") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && counts.keys().any(|s| s == "ready" || s == "processing"),
            "never one order valid and one processing ({counts:?}): {}",
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    first.process.0.kill().unwrap();
    let status = first.process.0.wait().unwrap();
    db.wait_until_alone();
    let lease_until = expire_lease(&mut db);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}: {}",
        first.stderr()
    );
    let replies: Vec<(String, Result<Reply, String>)> = runtime.block_on(async {
        let mut replies = Vec::new();
        for (id, task) in in_flight {
            let reply = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a request to a killed server ends")
                .unwrap();
            replies.push((id, reply));
        }
        replies
    });

    // Nothing half-issued: ready, processing or valid, each valid order with its one certificate.
    let at_kill = assert_nothing_half_issued(&mut db, &names, &["ready", "processing", "valid"]);
    let count = |status: &str| at_kill.get(status).map_or(0, BTreeSet::len);
    let cut_off = replies.iter().filter(|(_, reply)| reply.is_err()).count();
    eprintln!(
        "kill -9 after {:?}: {} ready, {} processing, {} valid; {cut_off} of {} finalize requests cut off",
        started.elapsed(),
        count("ready"),
        count("processing"),
        count("valid"),
        replies.len()
    );
    assert!(cut_off > 0, "the kill came while requests were in flight");
    assert!(
        count("processing") > 0,
        "the kill left an order being finalized (ready {}, valid {})",
        count("ready"),
        count("valid")
    );
    // What a client was told is what the store holds.
    for (id, reply) in &replies {
        let Ok(reply) = reply else { continue };
        assert_eq!(reply.status, 200, "{id}: {}", String::from_utf8_lossy(&reply.body));
        let told = reply.json()["status"].as_str().unwrap().to_string();
        assert!(told == "valid" || told == "processing", "{id}: {told}");
        if told == "valid" {
            assert!(at_kill["valid"].contains(id), "{id} was answered valid");
        }
    }
    // A write cut off leaves at most the killed process's own temporary file.
    for name in temporaries(&dir) {
        assert!(name.contains(&format!(".tmp-{pid}-")), "{name} in {}", dir.display());
    }

    // The next instance, on the same directory and store, with a short time for stuck orders.
    let second = ServeProcess::start(
        &dir,
        db_url,
        KILL_BASE,
        &["--va-always-valid", "--stuck-after", "3"],
        tmp.path().join("second.err"),
    );
    let remote = second.remote.clone();
    let orders: BTreeMap<String, (usize, Value)> = accounts
        .iter()
        .enumerate()
        .flat_map(|(a, (_, orders))| {
            orders
                .iter()
                .map(move |(order, _)| (order_id(order), (a, order.clone())))
        })
        .collect();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let clients: Vec<Client<'_>> = accounts.iter().map(|(account, _)| account.at(&remote)).collect();
            // An order the killed instance was finalizing answers processing, and a second
            // finalize does not issue it again (checked right after the restart: the clean-up
            // cannot run before the killed instance's lease runs out, 25 s or more from now).
            for id in &at_kill["processing"] {
                let (a, order) = &orders[id];
                let client = &clients[*a];
                let now = client.post(&client.path_of(order["url"].as_str().unwrap()), None).await;
                assert_eq!(now.json()["status"], "processing", "{id}");
                let (path, body) = finalize_body(client, order, &names[id]).await;
                let reply = request(&remote, "POST", &path, Some("application/jose+json"), &body).await;
                assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
                assert_eq!(reply.json()["status"], "processing", "{id}");
                assert!(reply.header("retry-after").is_some(), "{id}");
            }
            assert!(
                OffsetDateTime::now_utc().unix_timestamp() < lease_until,
                "too slow: the killed instance's lease ran out (at {lease_until}) before the \
                 orders it left in processing were checked, so the clean-up may have run"
            );
            // The orders still ready are finalized: each becomes valid with its certificate.
            let mut tasks = tokio::task::JoinSet::new();
            for id in at_kill.get("ready").into_iter().flatten() {
                let (a, order) = &orders[id];
                let (path, body) = finalize_body(&clients[*a], order, &names[id]).await;
                let (address, root, id) = (remote.address, remote.root.clone(), id.clone());
                tasks.spawn(async move {
                    let reply = try_request(address, &root, "POST", &path, Some("application/jose+json"), &body).await;
                    (id, reply)
                });
            }
            while let Some(done) = tasks.join_next().await {
                let (id, reply) = done.unwrap();
                let reply = reply.unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(reply.status, 200, "{id}: {}", String::from_utf8_lossy(&reply.body));
            }
            // Every order valid before the kill or since: its certificate downloads, for its name.
            for (id, (a, order)) in &orders {
                if at_kill["processing"].contains(id) {
                    continue;
                }
                let client = &clients[*a];
                let done = client.settle(order["url"].as_str().unwrap()).await;
                assert_eq!(done["status"], "valid", "{id}: {done}");
                let chain = client
                    .post(&client.path_of(done["certificate"].as_str().unwrap()), None)
                    .await;
                assert_eq!(chain.status, 200, "{id}");
                let leaf = pem::parse_certificates(&chain.body, "chain").unwrap().remove(0);
                let info = tessera::pki::CertificateInfo::from_der(&leaf).unwrap();
                assert_eq!(
                    info.sans,
                    [tessera::pki::SubjectAltName::Dns(names[id].clone())],
                    "{id}"
                );
            }
        })
        .await
        .expect("the ready orders are finalized within the time limit");
    });
    let settled = assert_nothing_half_issued(&mut db, &names, &["processing", "valid"]);
    assert_eq!(settled.get("processing"), at_kill.get("processing"));

    // The clean-up (once the killed instance's lease has run out) turns the orders it left in
    // processing into invalid ones, with a serverInternal problem; the client orders again.
    let mut names = names;
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let clients: Vec<Client<'_>> = accounts.iter().map(|(account, _)| account.at(&remote)).collect();
            for id in &at_kill["processing"] {
                let (a, order) = &orders[id];
                let client = &clients[*a];
                let mut invalid = None;
                for _ in 0..180 {
                    let now = client
                        .post(&client.path_of(order["url"].as_str().unwrap()), None)
                        .await
                        .json();
                    if now["status"] == "invalid" {
                        invalid = Some(now);
                        break;
                    }
                    assert_eq!(now["status"], "processing", "{id}: {now}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let invalid = invalid.unwrap_or_else(|| panic!("{id} is still processing after 90 s"));
                assert_eq!(
                    invalid["error"]["type"], "urn:ietf:params:acme:error:serverInternal",
                    "{id}: {invalid}"
                );
                assert!(invalid.get("certificate").is_none(), "{id}: {invalid}");
            }
            let id = at_kill["processing"].first().unwrap();
            let (a, _) = &orders[id];
            let client = &clients[*a];
            let again = ready_order(client, &[names[id].as_str()]).await;
            let (path, body) = finalize_body(client, &again, &names[id]).await;
            let reply = request(&remote, "POST", &path, Some("application/jose+json"), &body).await;
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            let done = client.settle(again["url"].as_str().unwrap()).await;
            assert_eq!(done["status"], "valid", "{done}");
            names.insert(order_id(&again), names[id].clone());
        })
        .await
        .expect("the stuck orders become invalid within the time limit");
    });
    let end = assert_nothing_half_issued(&mut db, &names, &["valid", "invalid"]);
    assert_eq!(
        end["invalid"], at_kill["processing"],
        "only the orders cut off are invalid"
    );
    assert_eq!(temporaries(&dir), Vec::<String>::new(), "no temporary files are left");
    let stderr = second.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("done after {:?}", started.elapsed());
    // Dropped: killed by its PID.
    drop(second);
}

#[test]
fn kill_9_mid_finalize_leaves_nothing_half_issued_on_sqlite() {
    kill_9_mid_finalize(None);
}

#[test]
fn kill_9_mid_finalize_leaves_nothing_half_issued_on_postgresql() {
    let pg = pg_support::Postgres::start();
    pg.create_db("kill");
    kill_9_mid_finalize(Some(&pg.url("kill")));
}
