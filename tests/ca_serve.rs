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

use std::collections::{BTreeSet, HashMap};
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
        std::fs::write(tmp.path().join("root.pem"), pem::to_pem(pem::CERTIFICATE, ca.root())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let base = format!("https://127.0.0.1:{}", address.port());
        let mut config = ServeConfig::new(BaseUrl::parse(&base).unwrap());
        config.va.resolve = vec![("*".into(), "127.0.0.1".parse().unwrap())];
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

    fn root_pem(&self) -> PathBuf {
        self.tmp.path().join("root.pem")
    }

    fn directory_url(&self) -> String {
        format!("{}/acme/directory", self.base)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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
async fn request(server: &Server, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    let connector = tls_client(&server.root_pem());
    let tcp = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.address.port(),
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    // A server that refuses a large body may close before reading it all.
    let _ = tls.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
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
        body = dechunk(&body);
    }
    Reply { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
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
    server: &'a Server,
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

    async fn register(server: &'a Server) -> Client<'a> {
        Self::register_with(server, Signer::new()).await
    }

    async fn register_with(server: &'a Server, key: Signer) -> Client<'a> {
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
        url.strip_prefix(&self.server.base).unwrap().to_string()
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
        let chain_path = server.tmp.path().join("www.chain.pem");
        std::fs::write(&chain_path, &chain_pem).unwrap();
        let chain = pem::parse_certificates(chain_pem.as_bytes(), "chain").unwrap();
        let leaf_path = server.tmp.path().join("www.pem");
        std::fs::write(&leaf_path, pem::to_pem(pem::CERTIFICATE, &chain[0])).unwrap();
        let out = support::openssl(&[
            "verify",
            "-CAfile",
            &support::s(&server.root_pem()),
            "-untrusted",
            &support::s(&chain_path),
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "www.example.test",
            &support::s(&leaf_path),
        ]);
        assert!(out.status.success(), "{}", support::stderr(&out));
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
        let client = Client::register(&server).await;
        let key = Arc::new(client.key.pkcs8.clone());
        let kid = client.kid.clone().unwrap();
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        // 1,000 newNonce requests, 32 at a time: 1,000 distinct nonces.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (server, limit) = (Arc::clone(&server), Arc::clone(&limit));
            tasks.spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let reply = request(&server, "HEAD", "/acme/new-nonce", None, b"").await;
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
                    server: &server,
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
    for needle in ["EXAMPLES:", "EXIT CODES:", "--base-url", "--va-resolve", "--acme-hours"] {
        assert!(help.contains(needle), "{needle}");
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
