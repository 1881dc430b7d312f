//! Listeners, TLS, connections and drain for `ca serve`, and the server's own certificate.
//!
//! One task per connection: the PROXY header when the peer is a listed proxy (read with
//! [`crate::channel::read_proxy_header`], the echo server's code), the TLS handshake (HTTPS
//! listener), both under the handshake timeout, then hyper's HTTP/1.1 server with axum's router.
//! A failure ends its connection only; the accept loops go on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::acme::{self, Acme, Shared};
use super::pool::StorePool;
use super::problem::Problem;
use super::{SERVER_CERTIFICATE_LIFETIME, ServeConfig};
use crate::ca::{CaError, CertificateAuthority, IssueRequest, Profile};
use crate::channel::{Credentials, provider, read_proxy_header};
use crate::pki::pem;

/// Controls a service started by [`serve`]. Cloning gives another handle to it.
#[derive(Clone, Debug)]
pub struct ServeHandle {
    stop: Arc<watch::Sender<bool>>,
}

impl ServeHandle {
    /// Stops accepting at once (the listeners close), lets in-flight requests finish for up to
    /// [`ServeConfig::drain_timeout`], then ends every connection; the service future then
    /// completes. `cause` names the request in the log (`ca serve` gives `"SIGTERM"`).
    pub fn shutdown(&self, cause: &'static str) {
        tracing::info!("{cause}: shutting down");
        let _ = self.stop.send(true);
    }
}

/// The server's certificate, swapped when renewed.
#[derive(Debug)]
struct ServerCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// Issues the server's own certificate for `host` from the CA (blocking), and says when it
/// should be renewed (at half its life).
fn issue_server_certificate(ca: &CertificateAuthority, host: &str) -> Result<(Credentials, OffsetDateTime), CaError> {
    let now = OffsetDateTime::now_utc();
    let left = Duration::try_from(ca.info().not_after - now - time::Duration::minutes(1)).unwrap_or(Duration::ZERO);
    let lifetime = SERVER_CERTIFICATE_LIFETIME.min(left);
    if lifetime < Duration::from_secs(120) {
        return Err(CaError::invalid(
            "--tls-cert",
            "the CA expires within minutes, too soon to issue the server's own certificate",
        ));
    }
    let issued = ca.issue(&server_certificate_request(host).with_lifetime(lifetime), now)?;
    let key = issued
        .key
        .as_ref()
        .ok_or_else(|| CaError::invalid("--tls-cert", "no key was made for the server's certificate"))?;
    let credentials =
        Credentials::new(issued.chain.clone(), key).map_err(|e| CaError::invalid("--tls-cert", e.to_string()))?;
    let renew_at = now + time::Duration::seconds(i64::try_from(lifetime.as_secs() / 2).unwrap_or(3600));
    tracing::info!(serial = %issued.info.serial, host, not_after = %crate::pki::rfc3339(issued.info.not_after), "issued the server's own certificate");
    Ok((credentials, renew_at))
}

/// The request for the server's own certificate for `host` (the host of `--base-url`). A DNS
/// name is the common name and the one dNSName. An address (IPv6 with or without brackets) is
/// the one subjectAltName, an iPAddress, under an empty subject (RFC 5280 §4.2.1.6; the
/// subjectAltName is then critical), as `ca issue` makes a server named by an address: a
/// common name or a dNSName holding the address would be read as a host name (OpenSSL checks
/// such a common name against the CA's DNS name constraints), and is not how RFC 6125 clients
/// match an address.
fn server_certificate_request(host: &str) -> IssueRequest {
    match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => IssueRequest::new(Profile::Server, ip.to_string()).with_sans([crate::pki::SubjectAltName::Ip(ip)]),
        Err(_) => IssueRequest::new(Profile::Server, host),
    }
}

/// Starts `ca serve` on bound listeners: `https` (ACME, `/crl`, `/ca.pem`, `/healthz`) and,
/// if given, `http` (`/crl`, `/ca.pem`). Opens [`ServeConfig::pool_size`] store connections,
/// issues the server's own certificate unless [`ServeConfig::tls`] is given, and returns the
/// handle and the service: a future that runs until [`ServeHandle::shutdown`] and the drain,
/// spawning its tasks on the current Tokio runtime.
///
/// # Errors
/// [`CaError::Store`] (and the other errors of [`crate::ca::store::open`]) when the store
/// cannot be opened; the errors of [`CertificateAuthority::issue`] when the server's own
/// certificate cannot be issued (a host outside the CA's name constraints: give
/// [`ServeConfig::tls`]).
pub async fn serve(
    ca: CertificateAuthority,
    config: ServeConfig,
    https: TcpListener,
    http: Option<TcpListener>,
) -> Result<(ServeHandle, impl Future<Output = ()> + Send + 'static), CaError> {
    let ca = Arc::new(ca);
    match start(Arc::clone(&ca), config, https, http).await {
        Ok(started) => Ok(started),
        Err(error) => {
            drop_off_runtime(ca);
            Err(error)
        }
    }
}

/// Drops `value` on a thread of its own when called on a runtime: the blocking PostgreSQL client
/// (in a CA's store, or a [`StorePool`]) may not be closed on a runtime's thread.
pub(crate) fn drop_off_runtime<T: Send + 'static>(value: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::spawn(move || drop(value));
    } else {
        drop(value);
    }
}

/// A value dropped off the runtime ([`drop_off_runtime`]) unless taken back: the store
/// connections opened by [`start`] when a later step fails, the periodic work's store.
pub(crate) struct OffRuntime<T: Send + 'static>(pub(crate) Option<T>);

impl<T: Send + 'static> OffRuntime<T> {
    fn take(mut self) -> Option<T> {
        self.0.take()
    }
}

impl<T: Send + 'static> Drop for OffRuntime<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            drop_off_runtime(value);
        }
    }
}

async fn start(
    ca: Arc<CertificateAuthority>,
    config: ServeConfig,
    https: TcpListener,
    http: Option<TcpListener>,
) -> Result<(ServeHandle, impl Future<Output = ()> + Send + 'static), CaError> {
    let config = Arc::new(config);
    let blocking_failed = |what: &str| CaError::Store {
        store: ca.dir().display().to_string(),
        reason: format!("{what} failed midway"),
    };
    let pool = {
        let dir = ca.dir().to_path_buf();
        let issuer = ca.info().sha256_fingerprint.clone();
        let location = config.store.clone();
        let size = config.pool_size;
        tokio::task::spawn_blocking(move || {
            let pool = StorePool::open(&dir, &issuer, location.as_ref(), size)?;
            // The periodic work (CRL, clean-up) has a connection of its own.
            let periodic = crate::ca::store::open(&dir, &issuer, location.as_ref())?;
            Ok::<_, CaError>((pool, periodic))
        })
        .await
        .map_err(|_| blocking_failed("opening the store"))??
    };
    // Until the service owns them, a failure below drops the connections off the runtime.
    let stores = OffRuntime(Some(pool));
    let (credentials, renew_at) = match &config.tls {
        Some(credentials) => (credentials.clone(), None),
        None => {
            let task_ca = Arc::clone(&ca);
            let host = config.base_url.host().to_string();
            let (credentials, renew_at) =
                tokio::task::spawn_blocking(move || issue_server_certificate(&task_ca, &host))
                    .await
                    .map_err(|_| blocking_failed("issuing the server's certificate"))??;
            (credentials, Some(renew_at))
        }
    };
    let certificate = Arc::new(ServerCertificate {
        current: RwLock::new(credentials.certified_key()),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CaError::invalid("--tls-cert", e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (pool, periodic_store) = stores.take().ok_or_else(|| blocking_failed("opening the store"))?;

    let ocsp = match crate::ca::ocsp::Responder::new(&ca) {
        Ok(responder) => Some(responder.with_lifetime(config.ocsp_lifetime)),
        Err(error) => {
            tracing::error!(error = %error, "the CA cannot sign OCSP responses; /ocsp answers internalError");
            None
        }
    };
    let acme = Arc::new(Acme {
        constraints: super::NameConstraints::of_chain(ca.chain()),
        ocsp,
        ca: Arc::clone(&ca),
        pool,
        config: Arc::clone(&config),
        base: config.base_url.as_str().to_string(),
        limiter: super::ratelimit::RateLimiter::new(
            config.rate_per_account,
            config.rate_global,
            super::ratelimit::DEFAULT_MAX_KEYS,
            std::time::Instant::now(),
        ),
        client_limiter: super::ratelimit::RateLimiter::new(
            config.rate_per_client,
            super::ratelimit::Limit::new(f64::from(u32::MAX), u32::MAX),
            super::ratelimit::DEFAULT_MAX_KEYS,
            std::time::Instant::now(),
        ),
    });
    let (https_router, http_router) = routers(&acme);
    let (stop_tx, stop_rx) = watch::channel(false);
    let handle = ServeHandle {
        stop: Arc::new(stop_tx),
    };

    // The service keeps a sender of its own: dropping every handle leaves it running.
    let keep_stop = Arc::clone(&handle.stop);
    let keep_acme = Arc::clone(&acme);
    let service = async move {
        let _keep_stop = keep_stop;
        let mut tasks = JoinSet::new();
        let mut accepts = JoinSet::new();
        // Each listener has its own cap: idle connections on one never shut the other out.
        accepts.spawn(accept_loop(
            https,
            Some(acceptor),
            https_router,
            Arc::clone(&config),
            config.max_connections.max(1),
            stop_rx.clone(),
        ));
        // The plain-HTTP router holds the service's state too: without a listener it is kept
        // here and closed off the runtime with the rest (below).
        let mut http_router = Some(http_router);
        if let (Some(http), Some(router)) = (http, http_router.take()) {
            accepts.spawn(accept_loop(
                http,
                None,
                router,
                Arc::clone(&config),
                config.max_http_connections.max(1),
                stop_rx.clone(),
            ));
        }
        if let Some(renew_at) = renew_at {
            tasks.spawn(renew_server_certificate(
                Arc::clone(&ca),
                config.base_url.host().to_string(),
                certificate,
                renew_at,
                stop_rx.clone(),
            ));
        }
        let holder = acme::random_id().unwrap_or_else(|_| format!("pid-{}", std::process::id()));
        tracing::info!(holder = %holder, "periodic work (CRL, clean-up) runs under leases as this holder");
        let mut periodic_stop = stop_rx.clone();
        let periodic = tokio::spawn(super::periodic::run(
            Arc::clone(&ca),
            periodic_store,
            holder,
            super::periodic::PeriodicSettings {
                crl_lifetime: config.crl_lifetime,
                stuck_after: config.stuck_after,
                ..super::periodic::PeriodicSettings::default()
            },
            async move {
                let _ = periodic_stop.changed().await;
            },
        ));
        // Each accept loop drains its own connections after the stop.
        while accepts.join_next().await.is_some() {}
        if tokio::time::timeout(Duration::from_secs(5), periodic).await.is_err() {
            tracing::warn!("the periodic work did not stop in time");
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // The last references to the CA and the store pool: closed off the runtime.
        drop_off_runtime((ca, keep_acme, http_router));
        tracing::info!("stopped");
    };
    Ok((handle, service))
}

/// Renews the server's own certificate at half its life, for as long as the service runs.
async fn renew_server_certificate(
    ca: Arc<CertificateAuthority>,
    host: String,
    certificate: Arc<ServerCertificate>,
    mut renew_at: OffsetDateTime,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let wait = Duration::try_from(renew_at - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let task_ca = Arc::clone(&ca);
        let task_host = host.clone();
        match tokio::task::spawn_blocking(move || issue_server_certificate(&task_ca, &task_host)).await {
            Ok(Ok((credentials, next))) => {
                *certificate.current.write().unwrap_or_else(PoisonError::into_inner) = credentials.certified_key();
                renew_at = next;
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "cannot renew the server's certificate; trying again in a minute");
                renew_at = OffsetDateTime::now_utc() + time::Duration::minutes(1);
            }
            Err(_) => {
                tracing::error!("renewing the server's certificate failed midway; trying again in a minute");
                renew_at = OffsetDateTime::now_utc() + time::Duration::minutes(1);
            }
        }
    }
}

/// The HTTPS and the plain-HTTP routers.
fn routers(acme: &Shared) -> (Router, Router) {
    let acme_routes = Router::new()
        .route("/directory", get(acme::directory))
        .route("/new-nonce", get(acme::new_nonce).head(acme::new_nonce))
        .route("/new-account", post(acme::new_account))
        .route("/account/{id}", post(acme::account))
        .route("/account/{id}/orders", post(acme::account_orders))
        .route("/key-change", post(acme::key_change))
        .route("/new-order", post(acme::new_order))
        .route("/order/{id}", post(acme::order))
        .route("/order/{id}/finalize", post(acme::finalize))
        .route("/authz/{id}", post(acme::authorization))
        .route("/chall/{id}", post(acme::challenge))
        .route("/cert/{serial}", post(acme::certificate))
        .route("/revoke-cert", post(acme::revoke_cert))
        .route("/renewal-info/{id}", get(acme::renewal_info))
        .fallback(acme_not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(acme),
            acme::acme_headers,
        ));
    let public = Router::new()
        .route("/crl", get(crl))
        .route("/ocsp", post(ocsp_post))
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/ca.pem", get(ca_pem));
    let limits = |router: Router<Shared>| {
        router
            .layer(DefaultBodyLimit::max(acme.config.body_limit))
            .layer(axum::middleware::from_fn_with_state(Arc::clone(acme), request_timeout))
            .with_state(Arc::clone(acme))
    };
    // `/acme/` itself is outside the nest's match: it goes to the ACME router too, whose
    // fallback answers with a problem document.
    let acme_root = acme_routes.clone().with_state(Arc::clone(acme));
    let https = limits(
        Router::new()
            .merge(public.clone())
            .route("/healthz", get(healthz))
            .nest("/acme", acme_routes)
            .route_service("/acme/", acme_root),
    );
    let http = limits(public);
    (https, http)
}

async fn acme_not_found() -> Problem {
    Problem::not_found("no such ACME resource")
}

/// Answers 503 when a request takes longer than [`ServeConfig::request_timeout`], and
/// Logs each request (client, method, path, status; never bodies or headers).
async fn request_timeout(State(acme): State<Shared>, request: Request, next: axum::middleware::Next) -> Response {
    let client = request.extensions().get::<ClientAddress>().map(|c| c.0);
    let method = request.method().clone();
    let path = request.uri().path().chars().take(200).collect::<String>();
    let limited = tokio::time::timeout(acme.config.request_timeout, next.run(request));
    let response = match CLIENT.scope(client.map(|c| c.ip()), limited).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?client, %method, path = ?path, "a request took longer than the request timeout");
            Problem::server_internal("the request took too long")
                .with_status(503)
                .into_response()
        }
    };
    tracing::debug!(?client, %method, path = ?path, status = response.status().as_u16(), "request");
    response
}

/// `GET /healthz`: 200 when the store answers, else 503 with `Retry-After: 1`.
/// How long `/healthz` and `/ocsp` wait for the store before they answer that it does not
/// (503, `tryLater`): a third of the request timeout (10 s by default), so that the answer
/// comes before the request timeout and a balancer's server timeout.
fn store_deadline(config: &ServeConfig) -> Duration {
    (config.request_timeout / 3).max(Duration::from_secs(1))
}

async fn healthz(State(acme): State<Shared>) -> Response {
    let deadline = store_deadline(&acme.config);
    let checked = tokio::time::timeout(deadline, acme.pool.acme(|store| store.check_health()))
        .await
        .unwrap_or_else(|_| {
            Err(CaError::Store {
                store: "the store".into(),
                reason: format!("no answer within {} s", deadline.as_secs()),
            })
        });
    match checked {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "the store does not answer\n",
            )
                .into_response()
        }
    }
}

/// `GET /crl`: the CRL published in the store (DER, `application/pkix-crl`); 404 before any.
async fn crl(State(acme): State<Shared>) -> Response {
    match acme.pool.acme(|store| store.crl_published()).await {
        Ok(Some(crl)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/pkix-crl"),
                (header::CACHE_CONTROL, "max-age=60"),
            ],
            crl.der,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no CRL has been published yet\n").into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot read the published CRL");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "the store does not answer\n",
            )
                .into_response()
        }
    }
}

/// `POST /ocsp` (RFC 6960 Appendix A.1): the DER request in the body.
async fn ocsp_post(State(acme): State<Shared>, body: axum::body::Bytes) -> Response {
    ocsp_answer(&acme, body.to_vec()).await
}

/// `GET /ocsp/{base64}` (RFC 6960 Appendix A.1): the request, base64 and URL-encoded, in the
/// path.
async fn ocsp_get(State(acme): State<Shared>, uri: axum::extract::OriginalUri) -> Response {
    let path = uri.path().strip_prefix("/ocsp/").unwrap_or("");
    match crate::ca::ocsp::decode_get_path(path) {
        Ok(der) => ocsp_answer(&acme, der).await,
        // Not base64: the request is malformed (RFC 6960 §2.3), answered as the responder would.
        Err(_) => ocsp_answer(&acme, Vec::new()).await,
    }
}

async fn ocsp_answer(acme: &Shared, der: Vec<u8>) -> Response {
    let task = Arc::clone(acme);
    let answer = tokio::task::spawn_blocking(move || match &task.ocsp {
        Some(responder) => responder.respond(&task.ca, &der, OffsetDateTime::now_utc()),
        None => crate::ca::ocsp::respond(&task.ca, &der, OffsetDateTime::now_utc()),
    });
    let deadline = store_deadline(&acme.config);
    // A store that does not answer in time: tryLater (RFC 6960 §2.3), as when it fails.
    let answer = match tokio::time::timeout(deadline, answer).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(
                deadline_s = deadline.as_secs(),
                "OCSP: the store did not answer in time; tryLater"
            );
            Ok(crate::ca::ocsp::Answer::failed(
                crate::ca::ocsp::ResponseStatus::TryLater,
            ))
        }
    };
    match answer {
        Ok(answer) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/ocsp-response"),
                (header::CACHE_CONTROL, "max-age=60"),
            ],
            answer.der,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the OCSP responder failed\n").into_response(),
    }
}

/// `GET /ca.pem`: the CA's certificate and its issuers, PEM.
async fn ca_pem(State(acme): State<Shared>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        pem::certificates_to_pem(acme.ca.chain()),
    )
        .into_response()
}

/// Accepts connections until the stop (at most `max_connections` open at once; more are closed
/// unread), then drains them.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    config: Arc<ServeConfig>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(max_connections));
    let kind = if tls.is_some() { "https" } else { "http" };
    let local = listener
        .local_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    tracing::info!(address = %local, kind, "listening");
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                        tracing::warn!(%peer, kind, max = max_connections, "connection refused: too many open on this listener");
                        drop(tcp);
                        continue;
                    };
                    let task = connection(tcp, peer, tls.clone(), router.clone(), Arc::clone(&config), stop.clone());
                    tasks.spawn(async move {
                        task.await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let open = tasks.len();
    if open > 0 {
        tracing::info!(connections = open, kind, "draining");
    }
    let drained = tokio::time::timeout(config.drain_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            kind,
            "connections did not finish in time; closing them"
        );
        tasks.abort_all();
    }
}

tokio::task_local! {
    /// The client address of the request being answered (for per-client rate limits).
    pub(crate) static CLIENT: Option<std::net::IpAddr>;
}

/// The client's address, as the PROXY header (or the socket) gives it; in every request's
/// extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddress(pub(crate) SocketAddr);

/// One connection: PROXY header, TLS, then HTTP/1.1 until it ends or the service stops.
async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    config: Arc<ServeConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let start = async {
        let mut client = peer;
        if let Some(sources) = &config.proxy
            && sources.contains(peer.ip())
        {
            let header = read_proxy_header(&mut tcp).await.map_err(|e| e.to_string())?;
            if let Some(addresses) = header.addresses {
                client = addresses.source;
            }
        }
        let io = match &tls {
            Some(acceptor) => Io::Tls(Box::new(acceptor.accept(tcp).await.map_err(|e| e.to_string())?)),
            None => Io::Plain(tcp),
        };
        Ok::<_, String>((client, io))
    };
    let (client, io) = match tokio::time::timeout(config.handshake_timeout, start).await {
        Ok(Ok(started)) => started,
        Ok(Err(reason)) => {
            tracing::debug!(%peer, reason, "connection ended before its first request");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ClientAddress(client));
        let answer = router.clone().oneshot(request.map(axum::body::Body::new));
        // Outside the router: a 405's `Allow` header exists only once the router has answered.
        async move { Ok::<_, std::convert::Infallible>(acme::name_allowed_methods(answer.await?)) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.body_limit.max(16 * 1024) + 16 * 1024);
    match io {
        Io::Tls(stream) => serve_http(&builder, TokioIo::new(*stream), service, &config, &mut stop).await,
        Io::Plain(stream) => serve_http(&builder, TokioIo::new(stream), service, &config, &mut stop).await,
    }
}

/// A connection's stream after its start.
enum Io {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Plain(TcpStream),
}

async fn serve_http<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    config: &ServeConfig,
    stop: &mut watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let stopping = *stop.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(error = %error, "connection ended with an error");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    // Stopping: the request in flight finishes (within the drain timeout), then the
    // connection closes.
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(config.drain_timeout, connection.as_mut()).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::pki::SubjectAltName;

    /// The server's own certificate for an address base URL: the address as the one
    /// subjectAltName, an iPAddress, critical, under an empty subject; no common name, no
    /// dNSName. For a DNS name: the name as common name and the one dNSName.
    #[test]
    fn the_servers_own_certificate_names_an_address_as_an_ip_address_under_an_empty_subject() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &crate::ca::InitRequest::new("Root"), None, now)
            .unwrap();
        for (host, ip) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("[2001:db8::1]", "2001:db8::1"),
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let issued = ca.issue(&server_certificate_request(host), now).unwrap();
            assert_eq!(issued.info.subject, "", "{host}");
            assert_eq!(issued.info.sans, [SubjectAltName::Ip(ip)], "{host}");
            let (_, cert) = X509Certificate::from_der(issued.certificate.as_ref()).unwrap();
            assert_eq!(cert.subject().iter_common_name().count(), 0, "{host}");
            let san = cert.subject_alternative_name().unwrap().unwrap();
            assert!(
                san.critical,
                "{host}: an empty subject makes the subjectAltName critical"
            );
            assert!(
                !san.value
                    .general_names
                    .iter()
                    .any(|name| matches!(name, GeneralName::DNSName(_))),
                "{host}"
            );
        }
        let issued = ca.issue(&server_certificate_request("acme.example.test"), now).unwrap();
        assert_eq!(issued.info.sans, [SubjectAltName::Dns("acme.example.test".into())]);
        assert!(
            issued.info.subject.contains("acme.example.test"),
            "{}",
            issued.info.subject
        );
    }
}
