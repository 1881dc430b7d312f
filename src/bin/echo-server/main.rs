//! `echo-server`: a TLS 1.3 echo service with mutual TLS, an allow list, in-flight key rotation,
//! hot reload and timeouts on every phase.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;

use tessera::channel::{
    self, Authorization, ChannelError, ChannelStream, Credentials, ReloadableServerConfig, RotationPolicy,
    ServerSettings, TlsOptions,
};
use tessera::cli::CliError;
use tessera::pki::{Passphrase, TrustStore};

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
            e.downcast_ref::<ChannelError>().map(|ce| {
                let code = if ce.is_rejection() {
                    tessera::cli::exit::REJECTED
                } else {
                    tessera::cli::exit::FAILURE
                };
                (code, None)
            })
        }),
    }
}

/// Per-connection settings.
struct Limits {
    policy: RotationPolicy,
    handshake: Duration,
    idle: Duration,
    shutdown: Duration,
}

fn run(args: cli::Args) -> anyhow::Result<()> {
    refuse_key_log_over_inputs(&args)?;
    let policy = args.rotation.policy().map_err(CliError::usage)?;
    let limits = Arc::new(Limits {
        policy,
        handshake: cli::seconds(args.handshake_timeout, "--handshake-timeout").map_err(CliError::usage)?,
        idle: cli::seconds(args.idle_timeout, "--idle-timeout").map_err(CliError::usage)?,
        shutdown: cli::seconds(args.shutdown_timeout, "--shutdown-timeout").map_err(CliError::usage)?,
    });
    if args.max_conns == 0 {
        return Err(CliError::usage("--max-conns must be at least 1").into());
    }
    let passphrase = tessera::cli::passphrase_for_key(
        &args.key,
        args.passphrase_file.as_deref(),
        &format!("key {}", args.key.display()),
    )?
    .map(Arc::new);
    let sources = Sources {
        cert: args.cert.clone(),
        key: args.key.clone(),
        passphrase,
        client_ca: args.client_ca.clone(),
        crls: args.crl.clone(),
        authorization: Authorization::only(args.allow.clone()),
        allow_tls12: args.insecure_allow_tls12,
    };
    let config = ReloadableServerConfig::new(move || sources.load())?;
    if args.client_ca.is_none() {
        tracing::warn!("no --client-ca: clients are not authenticated");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, Arc::new(config), limits))
}

/// Where the configuration comes from, so that SIGHUP can rebuild it.
struct Sources {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    passphrase: Option<Arc<Passphrase>>,
    client_ca: Option<std::path::PathBuf>,
    crls: Vec<std::path::PathBuf>,
    authorization: Authorization,
    allow_tls12: bool,
}

impl Sources {
    fn load(&self) -> Result<rustls::ServerConfig, ChannelError> {
        let credentials = Credentials::load(&self.cert, &self.key, self.passphrase.as_deref())?;
        let client_trust = match &self.client_ca {
            Some(path) => {
                let mut store = TrustStore::from_root_file(path).map_err(|source| ChannelError::Load {
                    what: format!("client CA {}", path.display()),
                    source,
                })?;
                for crl in &self.crls {
                    store.add_crl_file(crl).map_err(|source| ChannelError::Load {
                        what: format!("CRL {}", crl.display()),
                        source,
                    })?;
                }
                Some(Arc::new(store))
            }
            None => None,
        };
        let mut options = TlsOptions::with_sslkeylogfile();
        options.allow_tls12 = self.allow_tls12;
        channel::server_config(&ServerSettings {
            credentials,
            client_trust,
            authorization: self.authorization.clone(),
            options,
        })
    }
}

async fn serve(args: cli::Args, config: Arc<ReloadableServerConfig>, limits: Arc<Limits>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    tessera::outln!("listening on {local}")?;
    tracing::info!(address = %local, policy = ?limits.policy, max_conns = args.max_conns, "listening");

    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(args.max_conns));
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    next_id += 1;
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(%peer, max = args.max_conns, "connection refused: --max-conns reached");
                        drop(tcp);
                        continue;
                    };
                    let span = tracing::info_span!("conn", id = next_id, %peer);
                    let task = handle(tcp, config.current(), Arc::clone(&limits), stop_rx.clone());
                    tasks.spawn(async move {
                        task.await;
                        drop(permit);
                    }.instrument(span));
                }
                Err(error) => {
                    // E.g. out of file descriptors: wait a moment rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading certificates and CRLs");
                // Reading files (and decrypting a key) blocks: keep it off the accept loop.
                let config = Arc::clone(&config);
                tokio::task::spawn_blocking(move || config.reload());
            }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let open = tasks.len();
    let drained = timeout(limits.shutdown + limits.shutdown, async {
        while tasks.join_next().await.is_some() {}
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

/// Why an echo loop ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    Idle,
    Shutdown,
    Failed(std::io::Error),
}

async fn handle(tcp: TcpStream, config: Arc<rustls::ServerConfig>, limits: Arc<Limits>, stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let mut stream = match timeout(limits.handshake, ChannelStream::accept(config, tcp, limits.policy)).await {
        Err(_) => {
            tracing::warn!(seconds = limits.handshake.as_secs_f64(), "handshake timed out");
            return;
        }
        Ok(Err(error)) => {
            tracing::warn!(reason = %chain(&error), "handshake failed");
            return;
        }
        Ok(Ok(stream)) => stream,
    };
    // The peer's name (common name, else subject) and serial, as separate log fields.
    let (identity, serial, sans) = stream.peer_identity().map_or_else(
        || ("anonymous".to_string(), String::new(), Vec::new()),
        |peer| {
            (
                peer.common_name.clone().unwrap_or_else(|| peer.subject.clone()),
                peer.serial.clone(),
                peer.sans.clone(),
            )
        },
    );
    tracing::info!(
        peer_identity = ?identity,
        peer_serial = %serial,
        peer_sans = ?sans,
        version = ?stream.protocol_version(),
        suite = ?stream.cipher_suite().map(|s| s.suite()),
        "connected"
    );
    let end = echo(&mut stream, &limits, stop).await;
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
        End::Failed(error) => format!("error: {}", chain(error)),
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

/// Echoes until the peer closes, the connection idles out, or the server stops. Holds no
/// buffer while waiting: data is read from rustls' own plaintext buffer.
async fn echo(stream: &mut ChannelStream<TcpStream>, limits: &Limits, mut stop: watch::Receiver<bool>) -> End {
    let mut batch = Vec::new();
    let mut idle_at = Instant::now() + limits.idle;
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
                    Ok(Err(error)) => return End::Failed(std::io::Error::other(error)),
                    Err(_) => return End::Idle,
                }
            }
        };
        match chunk {
            Ok(true) => {}
            Ok(false) => return End::PeerClosed,
            Err(error) => return End::Failed(error),
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
                idle_at = Instant::now() + limits.idle;
            }
            Ok(Err(error)) => return End::Failed(error),
            Err(_) => return End::Idle,
        }
    }
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

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
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
