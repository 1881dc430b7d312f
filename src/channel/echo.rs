//! The echo service behind `echo-server`, as a library: an accept loop with one task per
//! connection, a time limit on every phase (PROXY header and handshake, idle, `close_notify`,
//! drain), caps on sessions and on pending handshakes, key rotation by policy, hot reload and a
//! graceful drain.
//!
//! [`serve_echo`] takes a bound listener, the server's [`ReloadableServerConfig`] and an
//! [`EchoConfig`], and returns an [`EchoHandle`] (reload, shut down, read the counters) and the
//! service itself, a future that ends once the service has stopped. The caller decides what
//! drives the handle: `echo-server` maps SIGHUP to [`EchoHandle::reload`] and SIGINT / SIGTERM
//! to [`EchoHandle::shutdown`]; a test or benchmark calls them directly.
//!
//! ```no_run
//! # async fn demo(tls: std::sync::Arc<tessera::channel::ReloadableServerConfig>) -> std::io::Result<()> {
//! use tessera::channel::{EchoConfig, serve_echo};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (handle, service) = serve_echo(listener, tls, EchoConfig::default());
//! let service = tokio::spawn(service);
//! // … clients connect and are echoed …
//! handle.shutdown("end of demo");
//! let _ = service.await;
//! println!("{} sessions", handle.stats().sessions_started);
//! # Ok(()) }
//! ```
//!
//! The service logs structured `tracing` events (`listening`, `connected`, `connection closed`,
//! refusals, drain and stop) in a span `conn` per connection (`id`, `peer`, and `client` from a
//! PROXY header); it never prints.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tracing::Instrument;

use super::ChannelError;
use super::files::{CrlFacts, LoadWarning};
use super::proxy::{ProxyHeader, ProxyProblem, ProxySources, read_proxy_header, starts_proxy_header};
use super::reload::ReloadableServerConfig;
use super::rotation::{RotationPolicy, RotationStats};
use super::stream::ChannelStream;
use super::text::version_name;

/// The limits and policy of an echo service. Every duration is a wall-clock time limit;
/// [`EchoConfig::default`] gives `echo-server`'s defaults.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// The key rotation policy of every session.
    pub policy: RotationPolicy,
    /// Time a client has for its PROXY header (if any) and its TLS handshake together
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// Time a session may go without traffic, and the limit on each write of an echo and each
    /// `KeyUpdate` sent (default 300 s).
    pub idle_timeout: Duration,
    /// Time for each `close_notify`, and (twice this) for the sessions to end once told to at
    /// shutdown (default 5 s).
    pub shutdown_timeout: Duration,
    /// Time allowed for each reload of the certificate files (default 10 s).
    pub reload_timeout: Duration,
    /// Most established sessions at once (default 1024); a client that completes its
    /// handshake beyond it is closed at once, and while it is reached new TCP connections are
    /// closed unread.
    pub max_connections: usize,
    /// Most connections in their handshake at once (default 256); past it the oldest pending
    /// handshake is abandoned, so connections that never complete one cannot lock clients out.
    pub max_handshakes: usize,
    /// After [`EchoHandle::shutdown`], time open sessions (and handshakes) may go on before
    /// they are closed (default zero: closed at once).
    pub drain_timeout: Duration,
    /// The peers that must start with a PROXY protocol header (v1 or v2); `None` (the default):
    /// no PROXY protocol. Other peers connect directly, and a header from them is refused.
    pub proxy: Option<ProxySources>,
    /// A wait before each echo (default zero), so that each session holds its slot for a
    /// known time: for capacity benchmarks only (`scripts/fleet-bench.sh`), never in service.
    pub echo_delay: Duration,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            policy: RotationPolicy::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(5),
            reload_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_handshakes: 256,
            drain_timeout: Duration::ZERO,
            proxy: None,
            echo_delay: Duration::ZERO,
        }
    }
}

/// Counters of an echo service since it started. Traffic and rotations are those of the
/// sessions that have ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EchoStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections closed because [`EchoConfig::max_connections`] sessions were open (before
    /// or right after their handshake).
    pub refused_at_capacity: u64,
    /// Connections that ended before a session: handshake failed, refused, timed out or
    /// abandoned for a newer one, a bad PROXY header, a health check, or cut short by a
    /// shutdown.
    pub handshakes_failed: u64,
    /// Sessions established (handshake done, session slot taken).
    pub sessions_started: u64,
    /// Of those, sessions resumed from a session ticket (no certificate exchange).
    pub sessions_resumed: u64,
    /// Sessions that have ended (a session aborted by a second [`EchoHandle::shutdown`], or
    /// dropped when the sessions do not close in time, is not counted).
    pub sessions_ended: u64,
    /// Application bytes received by the sessions that ended.
    pub bytes_received: u64,
    /// Application bytes sent (echoed) by the sessions that ended.
    pub bytes_sent: u64,
    /// `KeyUpdate`s the server sent in the sessions that ended, by cause.
    pub rotations: RotationStats,
}

/// The live counters behind [`EchoStats`].
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_at_capacity: AtomicU64,
    handshakes_failed: AtomicU64,
    sessions_started: AtomicU64,
    sessions_resumed: AtomicU64,
    sessions_ended: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    rotations_by_sent: AtomicU64,
    rotations_by_received: AtomicU64,
    rotations_by_interval: AtomicU64,
    rotations_requested: AtomicU64,
    rotations_postponed: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> EchoStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EchoStats {
            accepted: get(&self.accepted),
            refused_at_capacity: get(&self.refused_at_capacity),
            handshakes_failed: get(&self.handshakes_failed),
            sessions_started: get(&self.sessions_started),
            sessions_resumed: get(&self.sessions_resumed),
            sessions_ended: get(&self.sessions_ended),
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            rotations: RotationStats {
                by_sent: get(&self.rotations_by_sent),
                by_received: get(&self.rotations_by_received),
                by_interval: get(&self.rotations_by_interval),
                requested: get(&self.rotations_requested),
                postponed: get(&self.rotations_postponed),
            },
        }
    }

    fn session_ended(&self, stats: &super::ChannelStats) {
        bump(&self.sessions_ended, 1);
        bump(&self.bytes_received, stats.bytes_received);
        bump(&self.bytes_sent, stats.bytes_sent);
        bump(&self.rotations_by_sent, stats.rotations.by_sent);
        bump(&self.rotations_by_received, stats.rotations.by_received);
        bump(&self.rotations_by_interval, stats.rotations.by_interval);
        bump(&self.rotations_requested, stats.rotations.requested);
        bump(&self.rotations_postponed, stats.rotations.postponed);
    }
}

/// A request to a running service.
#[derive(Debug)]
enum Control {
    Reload { cause: &'static str },
    Shutdown { cause: &'static str },
}

/// Controls a service started by [`serve_echo`] and reads its counters. Cloning it gives another
/// handle to the same service; requests to a service that has stopped are ignored.
#[derive(Clone, Debug)]
pub struct EchoHandle {
    control: mpsc::UnboundedSender<Control>,
    counters: Arc<Counters>,
}

impl EchoHandle {
    /// Reloads the server's files ([`ReloadableServerConfig::reload_async`] within
    /// [`EchoConfig::reload_timeout`]) for the handshakes that follow; open sessions keep
    /// their configuration. One reload runs at a time: a request during one starts another
    /// when it ends. `cause` names the request in the log (`echo-server` gives `"SIGHUP"`).
    pub fn reload(&self, cause: &'static str) {
        let _ = self.control.send(Control::Reload { cause });
    }

    /// The first call stops accepting (the listener is closed at once), lets open sessions
    /// and handshakes go on for up to [`EchoConfig::drain_timeout`], then closes them with
    /// `close_notify` (each within [`EchoConfig::shutdown_timeout`], all within twice that).
    /// A second call closes every connection at once, without `close_notify`. `cause` names
    /// the request in the log (`echo-server` gives `"SIGTERM"` or `"SIGINT"`).
    pub fn shutdown(&self, cause: &'static str) {
        let _ = self.control.send(Control::Shutdown { cause });
    }

    /// The counters so far.
    pub fn stats(&self) -> EchoStats {
        self.counters.snapshot()
    }
}

/// Starts an echo service on `listener`; every byte a client sends on its TLS session comes
/// back. Handshakes use [`ReloadableServerConfig::current`] at the time of the accept, so the
/// server configuration (client CA, CRLs, allow list, TLS versions) is the caller's.
///
/// Returns the handle and the service: a future that runs the accept loop (spawning one task
/// per connection on the current Tokio runtime) until [`EchoHandle::shutdown`], and completes
/// once every connection has ended. A failure never stops the accept loop: an accept error (out
/// of file descriptors) waits 50 ms, a connection's error ends that connection and is logged.
pub fn serve_echo(
    listener: TcpListener,
    tls: Arc<ReloadableServerConfig>,
    config: EchoConfig,
) -> (EchoHandle, impl Future<Output = ()> + Send + 'static) {
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let handle = EchoHandle {
        control: control_tx,
        counters: Arc::clone(&counters),
    };
    let service = run(listener, tls, Arc::new(config), counters, control_rx);
    (handle, service)
}

/// How long [`echo_round_trip`] reads, after a failed write, for the alert that explains it.
const ALERT_READ_LIMIT: Duration = Duration::from_secs(1);

/// The client's side of one echo (what `echo-client MESSAGE…` does per message): writes
/// `payload`, flushes, and reads back exactly `payload.len()` bytes. Each direction counts as
/// one message for [`RotationPolicy::with_messages`].
///
/// There is no time limit: wrap the call in `tokio::time::timeout`.
///
/// # Errors
/// [`ChannelError::TruncatedMessage`] when the server closes before the whole echo came back,
/// cleanly or without `close_notify` (`received` and `expected` count echoed bytes);
/// [`ChannelError::Io`] (`write` or `read`) for any other failure, including a TLS alert (a
/// write that fails because the server refused us and closed is reported with the server's
/// alert, read for up to a second after the failure, as a `read` error).
pub async fn echo_round_trip<IO>(stream: &mut ChannelStream<IO>, payload: &[u8]) -> Result<Vec<u8>, ChannelError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let io = |operation| move |source| ChannelError::Io { operation, source };
    let written = match stream.write_all(payload).await {
        Ok(()) => stream.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = written {
        // A server that refused our certificate sent its alert and closed: the write fails
        // first (broken pipe, reset), and the alert is still to be read.
        if error.get_ref().is_none_or(|inner| !inner.is::<rustls::Error>())
            && let Some(alert) = stream.alert_after_failure(ALERT_READ_LIMIT).await
        {
            return Err(io("read")(alert));
        }
        return Err(io("write")(error));
    }
    stream.mark_message_sent();
    let expected = payload.len() as u64;
    let mut echoed = vec![0u8; payload.len()];
    let mut received = 0usize;
    while received < echoed.len() {
        let slot = echoed.get_mut(received..).unwrap_or_default();
        let truncated = ChannelError::TruncatedMessage {
            received: received as u64,
            expected,
        };
        let n = stream.read(slot).await.map_err(|error| {
            // Closed without close_notify: as truncated as a clean close.
            if error.kind() == std::io::ErrorKind::UnexpectedEof
                && error.get_ref().is_none_or(|inner| !inner.is::<rustls::Error>())
            {
                truncated
            } else {
                io("read")(error)
            }
        })?;
        if n == 0 {
            return Err(ChannelError::TruncatedMessage {
                received: received as u64,
                expected,
            });
        }
        received += n;
    }
    stream.mark_message_received();
    Ok(echoed)
}

/// Handshakes in progress, oldest first, each with the means to abandon it.
#[derive(Default)]
struct Pending {
    queue: Mutex<VecDeque<(u64, Arc<Notify>)>>,
}

impl Pending {
    /// Registers handshake `id`; when `max` are already pending, the oldest is told to give up.
    fn add(&self, id: u64, max: usize) -> Arc<Notify> {
        let evict = Arc::new(Notify::new());
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while queue.len() >= max {
            match queue.pop_front() {
                // notify_one keeps the notification if the task is not waiting yet.
                Some((_, oldest)) => oldest.notify_one(),
                None => break,
            }
        }
        queue.push_back((id, Arc::clone(&evict)));
        evict
    }

    fn remove(&self, id: u64) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = queue.iter().position(|(pending, _)| *pending == id) {
            queue.remove(index);
        }
    }
}

/// What a connection task needs besides its socket.
struct Shared {
    limits: Arc<EchoConfig>,
    sessions: Arc<Semaphore>,
    pending: Pending,
    counters: Arc<Counters>,
}

/// The next shutdown request (reloads are ignored from now on); never, if every handle is gone.
async fn next_shutdown(control: &mut mpsc::UnboundedReceiver<Control>) -> &'static str {
    loop {
        match control.recv().await {
            Some(Control::Shutdown { cause }) => return cause,
            Some(Control::Reload { .. }) => {}
            None => std::future::pending::<()>().await,
        }
    }
}

async fn run(
    listener: TcpListener,
    config: Arc<ReloadableServerConfig>,
    limits: Arc<EchoConfig>,
    counters: Arc<Counters>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let local = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_string(), |address| address.to_string());
    let proxy_from = limits.proxy.as_ref().map_or_else(String::new, |sources| {
        sources
            .networks()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    });
    tracing::info!(
        address = %local,
        rotation = %limits.policy,
        max_conns = limits.max_connections,
        max_handshakes = limits.max_handshakes,
        drain_seconds = limits.drain_timeout.as_secs_f64(),
        proxy_from = %proxy_from,
        "listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        limits: Arc::clone(&limits),
        sessions: Arc::new(Semaphore::new(limits.max_connections)),
        pending: Pending::default(),
        counters,
    });
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    // One reload at a time; a request during one asks for another when it ends.
    let mut reload: Option<JoinHandle<()>> = None;
    let mut reload_again: Option<&'static str> = None;
    let mut crl_watch = CrlWatch::new(&config.crls());
    let mut control_open = true;

    loop {
        let crl_due = crl_watch.next_deadline();
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    next_id = next_id.wrapping_add(1);
                    bump(&shared.counters.accepted, 1);
                    if shared.sessions.available_permits() == 0 {
                        bump(&shared.counters.refused_at_capacity, 1);
                        tracing::warn!(%peer, max = limits.max_connections, "connection refused: --max-conns reached");
                        drop(tcp);
                        continue;
                    }
                    let evict = shared.pending.add(next_id, limits.max_handshakes);
                    let span = tracing::info_span!("conn", id = next_id, %peer, client = tracing::field::Empty);
                    let task = handle(tcp, peer, next_id, evict, config.current(), Arc::clone(&shared), stop_rx.clone());
                    tasks.spawn(task.instrument(span));
                }
                Err(error) => {
                    // E.g. out of file descriptors: wait a moment rather than spin.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            request = control.recv(), if control_open => match request {
                Some(Control::Reload { cause }) => {
                    if reload.is_some() {
                        tracing::info!("{cause}: a reload is running; another follows when it ends");
                        reload_again = Some(cause);
                    } else {
                        tracing::info!("{cause}: reloading certificates and CRLs");
                        reload = Some(start_reload(&config, limits.reload_timeout));
                    }
                }
                Some(Control::Shutdown { cause }) => {
                    tracing::info!("{cause}: shutting down");
                    break;
                }
                // Every handle is gone: the service runs on, uncontrolled.
                None => control_open = false,
            },
            _ = async { if let Some(task) = reload.as_mut() { let _ = task.await; } }, if reload.is_some() => {
                reload = None;
                crl_watch = CrlWatch::new(&config.crls());
                if let Some(cause) = reload_again.take() {
                    tracing::info!("reloading again for a {cause} received during the last reload");
                    reload = Some(start_reload(&config, limits.reload_timeout));
                }
            }
            _ = sleep_until(crl_due.unwrap_or_else(Instant::now)), if crl_due.is_some() => {
                crl_watch.warn_stale();
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }

    if let Some(task) = reload.take() {
        task.abort();
    }
    // The port closes at once: a balancer sees it and sends new clients elsewhere.
    drop(listener);
    let open = tasks.len();
    if !limits.drain_timeout.is_zero() && !tasks.is_empty() {
        tracing::info!(
            connections = open,
            seconds = limits.drain_timeout.as_secs_f64(),
            "draining: no new connections; open ones go on until they end or the drain timeout passes"
        );
        let deadline = deadline_after(limits.drain_timeout);
        loop {
            tokio::select! {
                joined = tasks.join_next() => if joined.is_none() { break },
                _ = sleep_until(deadline) => {
                    tracing::info!(remaining = tasks.len(), "drain timeout: closing the remaining connections");
                    break;
                }
                cause = next_shutdown(&mut control) => {
                    stop_at_once(&mut tasks, cause);
                    return;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let drained = timeout(limits.shutdown_timeout.saturating_mul(2), async {
        loop {
            tokio::select! {
                joined = tasks.join_next() => if joined.is_none() { break },
                cause = next_shutdown(&mut control) => { stop_at_once(&mut tasks, cause); break; }
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            "connections did not close in time; dropping them"
        );
        tasks.abort_all();
    }
    tracing::info!(connections = open, "stopped");
}

/// A second shutdown request: every connection ends now, without close_notify.
fn stop_at_once(tasks: &mut JoinSet<()>, cause: &str) {
    tracing::info!(
        remaining = tasks.len(),
        "second {cause}: closing every connection at once"
    );
    tasks.abort_all();
}

/// Runs one reload in its own task (the library logs its outcome).
fn start_reload(config: &Arc<ReloadableServerConfig>, deadline: Duration) -> JoinHandle<()> {
    let config = Arc::clone(config);
    tokio::spawn(async move {
        let _ = config.reload_async(deadline).await;
    })
}

/// Warns when a CRL in force passes its nextUpdate while the server runs (from then on every
/// client it covers is refused).
struct CrlWatch {
    pending: Vec<CrlFacts>,
}

impl CrlWatch {
    /// Watches the CRLs that are still fresh (the stale ones were reported by the load).
    fn new(crls: &[CrlFacts]) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            pending: crls
                .iter()
                .filter(|crl| crl.next_update.is_some_and(|next| next > now))
                .cloned()
                .collect(),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let next = self.pending.iter().filter_map(|crl| crl.next_update).min()?;
        let wait = Duration::try_from(next - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
        // A timer more than a year away wakes early and is set again.
        Instant::now().checked_add(wait.min(Duration::from_secs(365 * 24 * 3600)))
    }

    fn warn_stale(&mut self) {
        let now = OffsetDateTime::now_utc();
        self.pending.retain(|crl| {
            let stale = crl.next_update.is_some_and(|next| next <= now);
            if stale {
                tracing::warn!("{}; then send SIGHUP", LoadWarning::StaleCrl(crl.clone()));
            }
            !stale
        });
    }
}

/// Why an echo loop ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    Idle,
    Shutdown,
    Failed(String),
}

/// One connection: the handshake (abandoned for a newer one when
/// [`EchoConfig::max_handshakes`] are pending), a session slot, then the echo.
///
/// A plain function that returns the connection's task: the handshake's future is made and
/// boxed here, so the task holds a pointer to it and what the session needs, not the socket,
/// the peer's address and the server's configuration (an `async fn` would keep its arguments,
/// and copies of them, in every idle connection's task for the life of the session).
fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    evict: Arc<Notify>,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = tcp.set_nodelay(true);
    // The PROXY header and the TLS handshake share the handshake timeout.
    let deadline = deadline_after(shared.limits.handshake_timeout);
    let handshake = timeout_at(deadline, start(tcp, peer, config, Arc::clone(&shared.limits)));
    // The start, boxed: its state (rustls' handshake, the PROXY reader, the eviction signal) is
    // freed once it ends instead of staying in the task's future for the life of the session.
    let starting = {
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        Box::pin(async move {
            let outcome = tokio::select! {
                outcome = handshake => Some(outcome),
                _ = evict.notified() => None,
                _ = stop.changed() => {
                    shared.pending.remove(id);
                    bump(&shared.counters.handshakes_failed, 1);
                    return None;
                }
            };
            shared.pending.remove(id);
            session_of(outcome, &shared)
        })
    };
    async move {
        // Kept boxed: the task's future holds a pointer, not the stream.
        if let Some(stream) = starting.await {
            serve_session(stream, &shared, stop).await;
        }
    }
}

/// What the start of a connection came to: `None` when it was abandoned for a newer
/// handshake, `Some(Err(_))` on the handshake timeout, else [`start`]'s result.
type StartOutcome = Option<Result<(Result<Established, ChannelError>, bool), tokio::time::error::Elapsed>>;

/// The session a connection's start established; otherwise counts and logs why there is none.
/// Takes the outcome by value, so that nothing of it stays in the task during the session.
fn session_of(outcome: StartOutcome, shared: &Shared) -> Option<Box<ChannelStream<TcpStream>>> {
    match outcome {
        Some(Ok((Ok(Established::Session(stream)), _))) => Some(stream),
        failed => {
            bump(&shared.counters.handshakes_failed, 1);
            log_failed_start(failed, &shared.limits);
            None
        }
    }
}

/// An established session: a session slot, the echo, then `close_notify` and the closing log
/// line.
async fn serve_session(mut stream: Box<ChannelStream<TcpStream>>, shared: &Shared, stop: watch::Receiver<bool>) {
    let limits = &shared.limits;
    let counters = &shared.counters;
    let Ok(_session) = Arc::clone(&shared.sessions).try_acquire_owned() else {
        bump(&counters.refused_at_capacity, 1);
        tracing::warn!(
            max = limits.max_connections,
            "connection refused after its handshake: --max-conns reached"
        );
        let _ = timeout(limits.shutdown_timeout, stream.close()).await;
        return;
    };
    bump(&counters.sessions_started, 1);
    let resumed = stream.resumed();
    if resumed {
        bump(&counters.sessions_resumed, 1);
    }
    if tracing::enabled!(tracing::Level::INFO) {
        // Made for the log line and dropped: an idle session keeps no copy of the peer's
        // identity (rustls keeps its certificate; the closing line makes it again).
        let (identity, serial, sans) = describe_peer(&stream);
        let version = stream.protocol_version().map_or_else(|| "unknown".into(), version_name);
        let suite = stream
            .cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        // Names from the certificate are untrusted: `?` prints them quoted and escaped.
        tracing::info!(
            peer_identity = ?identity,
            peer_serial = %serial,
            peer_sans = ?sans,
            version = %version,
            suite = %suite,
            resumed,
            "connected"
        );
    }
    let end = echo(&mut stream, limits, stop).await;
    let closed = match timeout(limits.shutdown_timeout, stream.close()).await {
        Ok(Ok(())) => "close_notify sent",
        Ok(Err(_)) => "close failed",
        Err(_) => "close timed out",
    };
    let stats = stream.stats();
    counters.session_ended(&stats);
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let ended = match &end {
        End::PeerClosed => "peer closed".to_string(),
        End::Idle => format!("idle for {} s", limits.idle_timeout.as_secs_f64()),
        End::Shutdown => "server shutdown".to_string(),
        End::Failed(error) => format!("error: {error}"),
    };
    let (identity, serial, _) = describe_peer(&stream);
    tracing::info!(
        peer_identity = ?identity,
        peer_serial = %serial,
        bytes_in = stats.bytes_received,
        bytes_out = stats.bytes_sent,
        rotations = stats.rotations.total(),
        rotations_by_sent = stats.rotations.by_sent,
        rotations_by_received = stats.rotations.by_received,
        rotations_by_interval = stats.rotations.by_interval,
        ended = ?ended,
        close = closed,
        "connection closed"
    );
}

/// The peer's name, serial and SANs for the log (empty for a client without a certificate),
/// made afresh from its certificate: the stream keeps no copy.
fn describe_peer(stream: &ChannelStream<TcpStream>) -> (String, String, String) {
    stream.describe_peer().map_or_else(
        || ("anonymous".to_string(), String::new(), String::new()),
        |peer| {
            let sans: Vec<String> = peer.sans.iter().map(ToString::to_string).collect();
            (peer.name().to_string(), peer.serial.to_string(), sans.join(", "))
        },
    )
}

/// Logs why a connection ended before its session: `None` when it was abandoned for a newer
/// handshake, `Some(Err(_))` on the handshake timeout.
fn log_failed_start(outcome: StartOutcome, limits: &EchoConfig) {
    // The proxy's own connection (a PROXY header saying LOCAL).
    let local = matches!(outcome, Some(Ok((_, true))));
    match outcome {
        None => tracing::warn!(
            max = limits.max_handshakes,
            "handshake abandoned: --max-handshakes handshakes were pending and this one was the oldest"
        ),
        Some(Err(_)) => tracing::warn!(seconds = limits.handshake_timeout.as_secs_f64(), "handshake timed out"),
        Some(Ok((Err(error), _))) => match &error {
            ChannelError::ProxyHeader { problem } if problem.is_silent_close() => {
                tracing::debug!("closed before sending anything (a TCP health check)");
            }
            ChannelError::ProxyHeader { problem } => tracing::warn!(reason = %problem, "connection refused"),
            // The proxy's own connection (LOCAL) ending in its handshake: HAProxy's
            // check-ssl resets once its side of the handshake is done.
            _ if local && error.refusal().is_none() && ended_by_peer(&error) => {
                tracing::debug!(reason = %error, "health check ended during its handshake");
            }
            _ => match error.refusal() {
                Some(refusal) => tracing::warn!(reason = %refusal, "client certificate refused"),
                None => tracing::warn!(reason = %error, "handshake failed"),
            },
        },
        Some(Ok((Ok(Established::HealthCheck), _))) => {
            tracing::debug!("closed right after its PROXY header (a health check)");
        }
        Some(Ok((Ok(Established::Session(_)), _))) => {}
    }
}

/// How the start of a connection ended.
enum Established {
    /// A TLS session.
    Session(Box<ChannelStream<TcpStream>>),
    /// The peer closed the connection right after its PROXY header.
    HealthCheck,
}

/// [`establish`] with its own reference to the limits (so that the future can be made before
/// the task runs); also returns whether the peer was the proxy's own connection (LOCAL).
async fn start(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    limits: Arc<EchoConfig>,
) -> (Result<Established, ChannelError>, bool) {
    let mut local = false;
    let result = establish(tcp, peer, config, &limits, &mut local).await;
    (result, local)
}

/// The PROXY header (when the peer is a listed proxy), then the TLS handshake. With
/// [`EchoConfig::proxy`], the client address from the header is recorded in the connection's
/// span, so that every line logged about the connection names it.
async fn establish(
    mut tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    limits: &EchoConfig,
    local: &mut bool,
) -> Result<Established, ChannelError> {
    if let Some(sources) = &limits.proxy {
        if sources.contains(peer.ip()) {
            let header = read_proxy_header(&mut tcp).await?;
            record_client(&header);
            *local = header.is_local();
            if closed_now(&tcp).await {
                return Ok(Established::HealthCheck);
            }
        } else {
            // A direct client: its stream must be a TLS handshake, not a claim of another address.
            let mut first = [0u8; 1];
            let seen = tcp.peek(&mut first).await.map_err(|source| ChannelError::Io {
                operation: "read",
                source,
            })?;
            if seen == 1 && first.iter().all(|b| starts_proxy_header(*b)) {
                return Err(ChannelError::ProxyHeader {
                    problem: ProxyProblem::Unexpected { peer: peer.ip() },
                });
            }
        }
    }
    let stream = ChannelStream::accept(config, tcp, limits.policy).await?;
    Ok(Established::Session(Box::new(stream)))
}

/// Logs the PROXY header and records the client it names in the connection's span.
fn record_client(header: &ProxyHeader) {
    let span = tracing::Span::current();
    match header.addresses {
        Some(addresses) => {
            span.record("client", tracing::field::display(addresses.source));
            tracing::debug!(version = %header.version, destination = %addresses.destination, "PROXY header");
        }
        None => {
            span.record("client", tracing::field::display("local"));
            tracing::debug!(version = %header.version, "PROXY header: LOCAL (the proxy's own connection)");
        }
    }
}

/// True when the error is the peer closing or resetting the connection.
fn ended_by_peer(error: &ChannelError) -> bool {
    use std::io::ErrorKind as K;
    error.io_error().is_some_and(|e| {
        matches!(
            e.kind(),
            K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe
        )
    })
}

/// True when the peer has closed (or reset) the connection without sending another byte.
async fn closed_now(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
    }
}

/// `now + duration`, or a day from now if that cannot be represented.
fn deadline_after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// Echoes until the peer closes, the connection idles out, or the server stops. Holds no
/// buffer while waiting: data is read from rustls' own plaintext buffer.
async fn echo(stream: &mut ChannelStream<TcpStream>, limits: &EchoConfig, mut stop: watch::Receiver<bool>) -> End {
    let mut batch = Vec::new();
    let mut idle_at = deadline_after(limits.idle_timeout);
    loop {
        // One timer for the idle limit and a time-based rotation, whichever comes first (a
        // timer is part of every idle connection's task; the idle limit wins a tie).
        let rotation_due = stream.next_rotation_deadline();
        let wake_at = rotation_due.map_or(idle_at, |due| due.min(idle_at));
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => return End::Shutdown,
            read = read_chunk(stream, &mut batch) => read,
            () = sleep_until(wake_at) => {
                if wake_at >= idle_at {
                    return End::Idle;
                }
                // Sending the KeyUpdate waits for a peer that reads: bounded like any write, and
                // abandoned on shutdown.
                let maintained = tokio::select! {
                    biased;
                    _ = stop.changed() => return End::Shutdown,
                    maintained = timeout(limits.idle_timeout, stream.maintain()) => maintained,
                };
                match maintained {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => return End::Failed(error.to_string()),
                    Err(_) => return End::Idle,
                }
            }
        };
        match chunk {
            Ok(true) => {}
            Ok(false) => return End::PeerClosed,
            Err(error) => return End::Failed(io_failure("read", error)),
        }
        stream.mark_message_received();
        if !limits.echo_delay.is_zero() {
            tokio::select! {
                biased;
                _ = stop.changed() => return End::Shutdown,
                () = tokio::time::sleep(limits.echo_delay) => {}
            }
        }
        let write = async {
            stream.write_all(&batch).await?;
            stream.flush().await
        };
        let written = tokio::select! {
            biased;
            _ = stop.changed() => return End::Shutdown,
            written = timeout(limits.idle_timeout, write) => written,
        };
        match written {
            Ok(Ok(())) => {
                stream.mark_message_sent();
                idle_at = deadline_after(limits.idle_timeout);
            }
            Ok(Err(error)) => return End::Failed(io_failure("write", error)),
            Err(_) => return End::Idle,
        }
    }
}

/// An I/O error of the echo, in the words of [`ChannelError::Io`].
fn io_failure(operation: &'static str, source: std::io::Error) -> String {
    ChannelError::Io { operation, source }.to_string()
}

/// Up to this much plaintext is echoed with one write.
const ECHO_BATCH: usize = 64 * 1024;

/// The plaintext available now, copied out of rustls' buffer into `batch` (up to
/// [`ECHO_BATCH`]); false at end of stream. While data keeps coming `batch` is reused; before
/// waiting for more it is freed, so an idle connection holds no buffer of its own.
async fn read_chunk(stream: &mut ChannelStream<TcpStream>, batch: &mut Vec<u8>) -> std::io::Result<bool> {
    batch.clear();
    if take_available(stream, batch) == 0 {
        *batch = Vec::new();
        let first = stream.fill_buf().await?;
        if first.is_empty() {
            return Ok(false);
        }
        batch.reserve_exact(ECHO_BATCH.max(first.len()));
        batch.extend_from_slice(first);
        let taken = batch.len();
        stream.consume(taken);
    }
    while batch.len() < ECHO_BATCH && take_available(stream, batch) > 0 {}
    Ok(true)
}

/// Appends plaintext that is already there (without waiting) to `batch`; returns how much.
/// Errors are left for the next waiting read to report.
fn take_available(stream: &mut ChannelStream<TcpStream>, batch: &mut Vec<u8>) -> usize {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let taken = match std::pin::Pin::new(&mut *stream).poll_fill_buf(&mut cx) {
        std::task::Poll::Ready(Ok(available)) if !available.is_empty() => {
            let take = available.len().min(ECHO_BATCH.saturating_sub(batch.len()));
            batch.extend_from_slice(available.get(..take).unwrap_or_default());
            take
        }
        _ => 0,
    };
    std::pin::Pin::new(&mut *stream).consume(taken);
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_max_pending_handshakes_the_oldest_is_told_to_give_up() {
        let pending = Pending::default();
        let first = pending.add(1, 2);
        let second = pending.add(2, 2);
        let third = pending.add(3, 2);
        let given_up = |notify: &Arc<Notify>| {
            // notify_one stores a permit: `notified()` completes at once if one was sent.
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let notified = notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().poll(&mut cx).is_ready()
        };
        assert!(given_up(&first), "the oldest of three with room for two");
        assert!(!given_up(&second));
        assert!(!given_up(&third));
        // A handshake that ended leaves room: the next one evicts nobody.
        pending.remove(2);
        let fourth = pending.add(4, 2);
        assert!(!given_up(&third));
        assert!(!given_up(&fourth));
        // Removing an id that is not pending changes nothing.
        pending.remove(99);
        let _fifth = pending.add(5, 2);
        assert!(given_up(&third));
        assert!(!given_up(&fourth));
    }

    #[test]
    fn a_deadline_too_far_away_is_a_day_away() {
        let now = Instant::now();
        let far = deadline_after(Duration::MAX);
        assert!(far >= now + Duration::from_secs(86_399) && far <= Instant::now() + Duration::from_secs(86_400));
        assert!(deadline_after(Duration::from_secs(1)) <= Instant::now() + Duration::from_secs(1));
    }

    #[test]
    fn the_crl_watch_follows_only_fresh_crls() {
        let now = OffsetDateTime::now_utc();
        let crl = |next_update: Option<OffsetDateTime>| CrlFacts {
            path: "crl.pem".into(),
            issuer: "CN=Test".into(),
            next_update,
        };
        let watch = CrlWatch::new(&[crl(Some(now - time::Duration::hours(1))), crl(None)]);
        assert!(
            watch.next_deadline().is_none(),
            "stale and open-ended CRLs are not watched"
        );
        let watch = CrlWatch::new(&[
            crl(Some(now + time::Duration::hours(2))),
            crl(Some(now + time::Duration::hours(1))),
        ]);
        let due = watch.next_deadline().unwrap();
        let in_an_hour = Instant::now() + Duration::from_secs(3600);
        assert!(
            due <= in_an_hour && due + Duration::from_secs(5) >= in_an_hour,
            "the earliest nextUpdate"
        );
        let watch = CrlWatch::new(&[crl(Some(now + time::Duration::days(3 * 365)))]);
        let due = watch.next_deadline().unwrap();
        assert!(
            due <= Instant::now() + Duration::from_secs(365 * 24 * 3600),
            "a far timer wakes within a year"
        );
    }

    /// What every idle connection's task holds inline: the session (`ChannelStream`, more than
    /// 1 KiB with rustls' connection inside) is boxed, the handshake's state is boxed and freed
    /// once it ends, and the handshake's arguments are not kept (`handle` is a plain function
    /// that makes the handshake's future), so the future stays far below the 5.2 KiB it was
    /// when the stream and the handshake sat in it (840 bytes with the handshake's arguments
    /// kept, 616 with them and the eviction signal in the boxed start, as measured by this
    /// test; tokio rounds a task to 128 bytes, and 616 makes it 768).
    #[test]
    fn the_connection_task_holds_neither_the_handshake_nor_the_stream_inline() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let peer = tcp.peer_addr().unwrap();
            let shared = Arc::new(Shared {
                limits: Arc::new(EchoConfig::default()),
                sessions: Arc::new(Semaphore::new(1)),
                pending: Pending::default(),
                counters: Arc::default(),
            });
            let (_stop_tx, stop) = watch::channel(false);
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
            let task = handle(tcp, peer, 1, Arc::default(), Arc::new(config), shared, stop);
            let stream = std::mem::size_of::<ChannelStream<TcpStream>>();
            let held = std::mem::size_of_val(&task);
            assert!(stream > 1024, "the stream is {stream} bytes");
            assert!(
                held < stream / 2,
                "the connection's future is {held} bytes: it holds the stream ({stream} bytes), the handshake or its arguments inline"
            );
        });
    }
}
