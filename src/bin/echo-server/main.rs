//! `echo-server`: a TLS 1.3 echo service with mutual TLS, an allow list, in-flight key rotation,
//! hot reload and timeouts on every phase.

mod cli;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use time::OffsetDateTime;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tracing::Instrument;

use tessera::channel::{
    self, Authorization, ChannelError, ChannelStream, CrlFacts, ProxyHeader, ProxyProblem, ProxySources,
    ReloadableServerConfig, RotationPolicy, ServerFiles, TlsOptions,
};
use tessera::cli::CliError;

fn main() -> ExitCode {
    // `echo-server: error: …` and exit 2 on a usage error (0 for --help), as every Tessera tool does.
    let args = match tessera::cli::parse_args::<cli::Args>("echo-server") {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    tessera::cli::init_logging(args.quiet, true);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tessera::cli::report("echo-server", err.as_ref(), |e| {
            e.downcast_ref::<ChannelError>().and_then(classify)
        }),
    }
}

/// Exit code and hint for a start-up failure; `None` lets a [`tessera::pki::PkiError`]
/// underneath (a load error) speak for itself.
fn classify(error: &ChannelError) -> Option<(u8, Option<String>)> {
    let failure = tessera::cli::exit::FAILURE;
    let hint = match error {
        ChannelError::Load { .. } => return None,
        ChannelError::UnsuitableCertificate { .. } => {
            "give a server certificate valid now, for server use (`ca issue --profile server --name HOST`), \
             with its own key"
        }
        ChannelError::UnusableKey { .. } => {
            "give the key that was issued with this certificate (PREFIX.key beside PREFIX.chain.pem)"
        }
        ChannelError::NotAFile { .. } => "give the path of a regular PEM file (not a pipe, device or directory)",
        ChannelError::FileTooLarge { .. } => "check the path: certificate, key and CRL files are far smaller",
        ChannelError::Timeout { .. } => {
            "a file did not answer in time (a hung network file system?); --reload-timeout sets the limit"
        }
        _ => return Some((failure, None)),
    };
    Some((failure, Some(hint.into())))
}

/// Per-connection settings and limits.
struct Limits {
    policy: RotationPolicy,
    handshake: Duration,
    idle: Duration,
    shutdown: Duration,
    reload: Duration,
    max_conns: usize,
    max_handshakes: usize,
    drain: Duration,
    /// With --proxy-protocol: the peers that must send a PROXY header.
    proxy: Option<ProxySources>,
}

/// The largest --max-conns and --max-handshakes.
const MAX_CONNECTIONS: u64 = 1_000_000;

impl Limits {
    fn from_args(args: &cli::Args) -> Result<Self, CliError> {
        use tessera::cli::{MAX_PHASE_SECONDS, MAX_SECONDS, count, timeout_seconds};
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Self {
            policy: args.rotation.policy().map_err(CliError::usage)?,
            handshake: timeout_seconds(args.handshake_timeout, "--handshake-timeout", MAX_PHASE_SECONDS)
                .map_err(CliError::usage)?,
            idle: timeout_seconds(args.idle_timeout, "--idle-timeout", MAX_SECONDS).map_err(CliError::usage)?,
            shutdown: timeout_seconds(args.shutdown_timeout, "--shutdown-timeout", MAX_PHASE_SECONDS)
                .map_err(CliError::usage)?,
            reload: timeout_seconds(args.reload_timeout, "--reload-timeout", MAX_PHASE_SECONDS)
                .map_err(CliError::usage)?,
            max_conns: to_usize(count(args.max_conns, "--max-conns", MAX_CONNECTIONS).map_err(CliError::usage)?),
            max_handshakes: to_usize(
                count(args.max_handshakes, "--max-handshakes", MAX_CONNECTIONS).map_err(CliError::usage)?,
            ),
            // 0 closes sessions at once, as before draining existed.
            drain: if args.drain_timeout == 0.0 {
                Duration::ZERO
            } else {
                timeout_seconds(args.drain_timeout, "--drain-timeout", MAX_PHASE_SECONDS).map_err(CliError::usage)?
            },
            proxy: args.proxy_protocol.then(|| {
                if args.proxy_from.is_empty() {
                    ProxySources::loopback()
                } else {
                    ProxySources::new(args.proxy_from.clone())
                }
            }),
        })
    }
}

fn run(args: cli::Args) -> anyhow::Result<()> {
    refuse_key_log_over_inputs(&args)?;
    // `-` is read once at start; a reload (SIGHUP) reuses those bytes and re-reads the rest.
    let mut dashes = vec![
        ("--cert", Some(args.cert.as_path())),
        ("--key", Some(args.key.as_path())),
        ("--passphrase-file", args.passphrase_file.as_deref()),
        ("--client-ca", args.client_ca.as_deref()),
    ];
    dashes.extend(args.crl.iter().map(|crl| ("--crl", Some(crl.as_path()))));
    tessera::cli::ensure_one_stdin(&dashes)?;
    let limits = Arc::new(Limits::from_args(&args)?);
    let mut options = TlsOptions::with_sslkeylogfile();
    options.allow_tls12 = args.insecure_allow_tls12;
    let mut files = ServerFiles {
        cert: args.cert.clone(),
        key: args.key.clone(),
        passphrase: None,
        passphrase_file: args.passphrase_file.clone(),
        client_ca: args.client_ca.clone(),
        crls: args.crl.clone(),
        authorization: Authorization::only(args.allow.clone()),
        options,
    };
    // Before anything opens a file (the passphrase step reads the key): a FIFO would block.
    for (what, path) in files.paths() {
        channel::check_regular_file(path, what)?;
    }
    files.passphrase = tessera::cli::passphrase_for_key(
        &args.key,
        args.passphrase_file.as_deref(),
        &format!("key {}", args.key.display()),
    )?
    .map(Arc::new);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let first = files.load_async(limits.reload).await?;
        for warning in &first.warnings {
            tracing::warn!("{warning}; then send SIGHUP");
        }
        if files.client_ca.is_none() {
            tracing::warn!("no --client-ca: clients are not authenticated");
        }
        let config = Arc::new(ReloadableServerConfig::from_files(first, files));
        serve(&args.listen, config, limits).await
    });
    // A reload abandoned on a file that never answered must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
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
    limits: Arc<Limits>,
    sessions: Arc<Semaphore>,
    pending: Pending,
}

async fn serve(listen: &str, config: Arc<ReloadableServerConfig>, limits: Arc<Limits>) -> anyhow::Result<()> {
    // Before `listening on`: from then on a script may signal us, and an unhandled SIGHUP would
    // end the process.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {listen}: {e}")))?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    tessera::outln!("listening on {local}")?;
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
        max_conns = limits.max_conns,
        max_handshakes = limits.max_handshakes,
        drain_seconds = limits.drain.as_secs_f64(),
        proxy_from = %proxy_from,
        "listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        limits: Arc::clone(&limits),
        sessions: Arc::new(Semaphore::new(limits.max_conns)),
        pending: Pending::default(),
    });
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    // One reload at a time; a SIGHUP during one asks for another when it ends.
    let mut reload: Option<JoinHandle<()>> = None;
    let mut reload_again = false;
    let mut crl_watch = CrlWatch::new(&config.crls());

    loop {
        let crl_due = crl_watch.next_deadline();
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    next_id = next_id.wrapping_add(1);
                    if shared.sessions.available_permits() == 0 {
                        tracing::warn!(%peer, max = limits.max_conns, "connection refused: --max-conns reached");
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
            _ = sighup.recv() => {
                if reload.is_some() {
                    tracing::info!("SIGHUP: a reload is running; another follows when it ends");
                    reload_again = true;
                } else {
                    tracing::info!("SIGHUP: reloading certificates and CRLs");
                    reload = Some(start_reload(&config, limits.reload));
                }
            }
            _ = async { if let Some(task) = reload.as_mut() { let _ = task.await; } }, if reload.is_some() => {
                reload = None;
                crl_watch = CrlWatch::new(&config.crls());
                if reload_again {
                    reload_again = false;
                    tracing::info!("reloading again for a SIGHUP received during the last reload");
                    reload = Some(start_reload(&config, limits.reload));
                }
            }
            _ = sleep_until(crl_due.unwrap_or_else(Instant::now)), if crl_due.is_some() => {
                crl_watch.warn_stale();
            }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }

    if let Some(task) = reload.take() {
        task.abort();
    }
    // The port closes at once: a balancer sees it and sends new clients elsewhere.
    drop(listener);
    let open = tasks.len();
    if !limits.drain.is_zero() && !tasks.is_empty() {
        tracing::info!(
            connections = open,
            seconds = limits.drain.as_secs_f64(),
            "draining: no new connections; open ones go on until they end or the drain timeout passes"
        );
        let deadline = deadline_after(limits.drain);
        loop {
            tokio::select! {
                joined = tasks.join_next() => if joined.is_none() { break },
                _ = sleep_until(deadline) => {
                    tracing::info!(remaining = tasks.len(), "drain timeout: closing the remaining connections");
                    break;
                }
                _ = sigint.recv() => { stop_at_once(&mut tasks, "SIGINT"); return Ok(()); }
                _ = sigterm.recv() => { stop_at_once(&mut tasks, "SIGTERM"); return Ok(()); }
            }
        }
    }
    let _ = stop_tx.send(true);
    let drained = timeout(limits.shutdown.saturating_mul(2), async {
        loop {
            tokio::select! {
                joined = tasks.join_next() => if joined.is_none() { break },
                _ = sigint.recv() => { stop_at_once(&mut tasks, "SIGINT"); break; }
                _ = sigterm.recv() => { stop_at_once(&mut tasks, "SIGTERM"); break; }
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
    Ok(())
}

/// A second signal: every connection ends now, without close_notify.
fn stop_at_once(tasks: &mut JoinSet<()>, signal: &str) {
    tracing::info!(
        remaining = tasks.len(),
        "second {signal}: closing every connection at once"
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
                tracing::warn!("{}; then send SIGHUP", channel::LoadWarning::StaleCrl(crl.clone()));
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

/// One connection: the handshake (abandoned for a newer one when --max-handshakes are
/// pending), a session slot, then the echo.
async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    evict: Arc<Notify>,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &shared.limits;
    let _ = tcp.set_nodelay(true);
    // The PROXY header and the TLS handshake share the handshake timeout.
    let deadline = deadline_after(limits.handshake);
    let mut local = false;
    let handshake = timeout_at(deadline, establish(tcp, peer, config, limits, &mut local));
    let outcome = tokio::select! {
        outcome = handshake => Some(outcome),
        _ = evict.notified() => None,
        _ = stop.changed() => {
            shared.pending.remove(id);
            return;
        }
    };
    shared.pending.remove(id);
    let mut stream = match outcome {
        None => {
            tracing::warn!(
                max = limits.max_handshakes,
                "handshake abandoned: --max-handshakes handshakes were pending and this one was the oldest"
            );
            return;
        }
        Some(Err(_)) => {
            tracing::warn!(seconds = limits.handshake.as_secs_f64(), "handshake timed out");
            return;
        }
        Some(Ok(Err(error))) => {
            match &error {
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
            }
            return;
        }
        Some(Ok(Ok(Established::HealthCheck))) => {
            tracing::debug!("closed right after its PROXY header (a health check)");
            return;
        }
        Some(Ok(Ok(Established::Session(stream)))) => *stream,
    };
    let Ok(_session) = Arc::clone(&shared.sessions).try_acquire_owned() else {
        tracing::warn!(
            max = limits.max_conns,
            "connection refused after its handshake: --max-conns reached"
        );
        let _ = timeout(limits.shutdown, stream.close()).await;
        return;
    };
    let (identity, serial, sans) = stream.peer_identity().map_or_else(
        || ("anonymous".to_string(), String::new(), String::new()),
        |peer| (peer.name().to_string(), peer.serial.clone(), peer.sans.join(", ")),
    );
    let version = stream
        .protocol_version()
        .map_or_else(|| "unknown".into(), channel::version_name);
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
        "connected"
    );
    let end = echo(&mut stream, limits, stop).await;
    let closed = match timeout(limits.shutdown, stream.close()).await {
        Ok(Ok(())) => "close_notify sent",
        Ok(Err(_)) => "close failed",
        Err(_) => "close timed out",
    };
    let stats = stream.stats();
    let ended = match &end {
        End::PeerClosed => "peer closed".to_string(),
        End::Idle => format!("idle for {} s", limits.idle.as_secs_f64()),
        End::Shutdown => "server shutdown".to_string(),
        End::Failed(error) => format!("error: {error}"),
    };
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

/// How the start of a connection ended.
enum Established {
    /// A TLS session.
    Session(Box<ChannelStream<TcpStream>>),
    /// The peer closed the connection right after its PROXY header.
    HealthCheck,
}

/// The PROXY header (when the peer is a listed proxy), then the TLS handshake. With
/// --proxy-protocol, the client address from the header is recorded in the connection's span,
/// so that every line logged about the connection names it.
async fn establish(
    mut tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    limits: &Limits,
    local: &mut bool,
) -> Result<Established, ChannelError> {
    if let Some(sources) = &limits.proxy {
        if sources.contains(peer.ip()) {
            let header = channel::read_proxy_header(&mut tcp).await?;
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
            if seen == 1 && first.iter().all(|b| channel::starts_proxy_header(*b)) {
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
async fn echo(stream: &mut ChannelStream<TcpStream>, limits: &Limits, mut stop: watch::Receiver<bool>) -> End {
    let mut batch = Vec::new();
    let mut idle_at = deadline_after(limits.idle);
    loop {
        let rotation_due = stream.next_rotation_deadline();
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => return End::Shutdown,
            read = read_chunk(stream, &mut batch) => read,
            _ = sleep_until(idle_at) => return End::Idle,
            _ = sleep_until(rotation_due.unwrap_or(idle_at)), if rotation_due.is_some() => {
                // Sending the KeyUpdate waits for a peer that reads: bounded like any write, and
                // abandoned on shutdown.
                let maintained = tokio::select! {
                    biased;
                    _ = stop.changed() => return End::Shutdown,
                    maintained = timeout(limits.idle, stream.maintain()) => maintained,
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
            Err(error) => return End::Failed(describe_read(error)),
        }
        stream.mark_message_received();
        let write = async {
            stream.write_all(&batch).await?;
            stream.flush().await
        };
        let written = tokio::select! {
            biased;
            _ = stop.changed() => return End::Shutdown,
            written = timeout(limits.idle, write) => written,
        };
        match written {
            Ok(Ok(())) => {
                stream.mark_message_sent();
                idle_at = deadline_after(limits.idle);
            }
            Ok(Err(error)) => {
                return End::Failed(
                    ChannelError::Io {
                        operation: "write",
                        source: error,
                    }
                    .to_string(),
                );
            }
            Err(_) => return End::Idle,
        }
    }
}

fn describe_read(error: std::io::Error) -> String {
    ChannelError::Io {
        operation: "read",
        source: error,
    }
    .to_string()
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

/// `SSLKEYLOGFILE` is appended to: refuse (exit 2) when it names one of the input files.
fn refuse_key_log_over_inputs(args: &cli::Args) -> Result<(), CliError> {
    let Some(key_log) = std::env::var_os("SSLKEYLOGFILE").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let key_log = std::path::PathBuf::from(key_log);
    let mut inputs = vec![
        tessera::cli::FileArg::new("the certificate chain (--cert)", &args.cert),
        tessera::cli::FileArg::new("the key (--key)", &args.key),
    ];
    if let Some(path) = args.passphrase_file.as_ref() {
        inputs.push(tessera::cli::FileArg::new(
            "the passphrase file (--passphrase-file)",
            path,
        ));
    }
    if let Some(path) = args.client_ca.as_ref() {
        inputs.push(tessera::cli::FileArg::new("the client CA (--client-ca)", path));
    }
    for crl in &args.crl {
        inputs.push(tessera::cli::FileArg::new("the CRL (--crl)", crl));
    }
    tessera::cli::ensure_distinct(
        &inputs,
        &[tessera::cli::FileArg::new("the key log (SSLKEYLOGFILE)", &key_log)],
    )
}
