//! `echo-client`: talks to an echo service over TLS 1.3 (mutual TLS optional), rotating its
//! traffic keys by policy; sends messages, streams stdin, or runs a load test.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};

use tessera::channel::{
    self, ChannelError, ChannelStats, ChannelStream, ClientSettings, Credentials, RotationPolicy, TlsOptions,
};
use tessera::cli::CliError;
use tessera::pki::TrustStore;

fn main() -> ExitCode {
    // `echo-client: error: …` and exit 2 on a usage error (0 for --help), as every Tessera tool does.
    let args = match tessera::cli::parse_args::<cli::Args>("echo-client") {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    tessera::cli::init_logging(args.quiet, args.verbose);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tessera::cli::report("echo-client", err.as_ref(), |e| {
            e.downcast_ref::<ChannelError>().map(|ce| {
                if ce.is_rejection() {
                    (tessera::cli::exit::REJECTED, Some(refusal_hint(ce).into()))
                } else {
                    (tessera::cli::exit::FAILURE, None)
                }
            })
        }),
    }
}

/// What to do about a refusal, by the alert the server sent or our own verdict.
fn refusal_hint(error: &ChannelError) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match error.tls_error() {
        Some(E::AlertReceived(A::CertificateRequired)) => {
            "the server requires a client certificate: pass --cert and --key"
        }
        Some(E::AlertReceived(A::UnknownCA | A::BadCertificate)) => {
            "the server does not trust the issuer of your certificate (its --client-ca)"
        }
        Some(E::AlertReceived(A::CertificateRevoked)) => "your certificate is revoked: get a new one issued",
        Some(E::AlertReceived(A::CertificateExpired)) => "your certificate is expired or not yet valid",
        Some(E::AlertReceived(A::AccessDenied)) => {
            "your certificate is trusted but not admitted: the server's --allow list does not name it"
        }
        Some(E::AlertReceived(A::ProtocolVersion) | E::PeerIncompatible(_)) => {
            "the peer does not speak TLS 1.3 (--insecure-allow-tls12 accepts TLS 1.2)"
        }
        Some(E::InvalidCertificate(C::UnknownIssuer)) => "the server's certificate does not chain to --ca",
        Some(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
            "the server's certificate does not hold the name asked for: check --server-name"
        }
        Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => "the server's certificate has expired",
        Some(E::InvalidCertificate(C::Revoked)) => "the server's certificate is revoked (by a --crl)",
        _ => {
            "the TLS peer refused the connection or its certificate was not trusted: check --ca, --cert/--key, \
             --server-name, and the server's --client-ca/--allow"
        }
    }
}

/// Logs (with -v) whom we are talking to and how.
fn log_connected(stream: &ChannelStream<TcpStream>) {
    if let Some(peer) = stream.peer_identity() {
        tracing::info!(
            server = ?peer.common_name.as_deref().unwrap_or(&peer.subject),
            serial = %peer.serial,
            sans = ?peer.sans,
            version = ?stream.protocol_version(),
            suite = ?stream.cipher_suite().map(|s| s.suite()),
            "connected"
        );
    }
}

/// Everything needed to open a connection.
struct Target {
    address: String,
    server_name: String,
    config: Arc<rustls::ClientConfig>,
    policy: RotationPolicy,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Target {
    async fn open(&self) -> Result<ChannelStream<TcpStream>, anyhow::Error> {
        let seconds = self.connect_timeout.as_secs_f64();
        let attempt = async {
            let tcp = TcpStream::connect(&self.address)
                .await
                .map_err(|e| CliError::failure(format!("cannot connect to {}: {e}", self.address)))?;
            let _ = tcp.set_nodelay(true);
            Ok::<_, anyhow::Error>(
                ChannelStream::connect(Arc::clone(&self.config), &self.server_name, tcp, self.policy).await?,
            )
        };
        timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| ChannelError::Timeout {
                phase: "connect and handshake",
                seconds,
            })?
    }
}

fn run(args: cli::Args) -> anyhow::Result<()> {
    refuse_key_log_over_inputs(&args)?;
    let policy = args.rotation.policy().map_err(CliError::usage)?;
    let connect_timeout = cli::seconds(args.connect_timeout, "--connect-timeout").map_err(CliError::usage)?;
    let io_timeout = cli::seconds(args.timeout, "--timeout").map_err(CliError::usage)?;
    let server_name = match &args.server_name {
        Some(name) => name.clone(),
        None => host_of(&args.connect)
            .ok_or_else(|| CliError::usage(format!("--connect {:?} is not HOST:PORT", args.connect)))?,
    };
    let mut store = TrustStore::from_root_file(&args.ca).map_err(|source| ChannelError::Load {
        what: format!("root {}", args.ca.display()),
        source,
    })?;
    for crl in &args.crl {
        store.add_crl_file(crl).map_err(|source| ChannelError::Load {
            what: format!("CRL {}", crl.display()),
            source,
        })?;
    }
    let credentials = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let passphrase = tessera::cli::passphrase_for_key(
                key,
                args.passphrase_file.as_deref(),
                &format!("key {}", key.display()),
            )?;
            Some(Credentials::load(cert, key, passphrase.as_ref())?)
        }
        _ => None,
    };
    let mut options = TlsOptions::with_sslkeylogfile();
    options.allow_tls12 = args.insecure_allow_tls12;
    let config = channel::client_config(&ClientSettings {
        server_trust: Arc::new(store),
        credentials,
        options,
    })?;
    let target = Arc::new(Target {
        address: args.connect.clone(),
        server_name,
        config: Arc::new(config),
        policy,
        connect_timeout,
        io_timeout,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if args.bench {
            bench(&args, target).await
        } else {
            let stats = if args.messages.is_empty() {
                stream_stdin(&target).await?
            } else {
                send_messages(&target, &args.messages).await?
            };
            if args.verbose {
                tessera::errln!(
                    "echo-client: {} bytes sent, {} received, {} key updates sent ({} for sent data, {} for \
                     received data, {} by interval)",
                    stats.bytes_sent,
                    stats.bytes_received,
                    stats.rotations.total(),
                    stats.rotations.by_sent,
                    stats.rotations.by_received,
                    stats.rotations.by_interval
                );
            }
            Ok(())
        }
    })
}

/// The host part of `HOST:PORT` or `[V6]:PORT`.
fn host_of(address: &str) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then(|| host.to_string())
}

fn io_error(operation: &'static str) -> impl Fn(std::io::Error) -> ChannelError {
    move |source| ChannelError::Io { operation, source }
}

async fn send_messages(target: &Target, messages: &[String]) -> anyhow::Result<ChannelStats> {
    let mut stream = target.open().await?;
    log_connected(&stream);
    let seconds = target.io_timeout.as_secs_f64();
    for message in messages {
        let mut line = message.clone().into_bytes();
        line.push(b'\n');
        let exchange = async {
            stream.write_all(&line).await.map_err(io_error("write"))?;
            stream.flush().await.map_err(io_error("write"))?;
            stream.mark_message_sent();
            let mut echoed = vec![0u8; line.len()];
            stream.read_exact(&mut echoed).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    ChannelError::TruncatedMessage {
                        received: 0,
                        expected: line.len() as u64,
                    }
                } else {
                    ChannelError::Io {
                        operation: "read",
                        source: e,
                    }
                }
            })?;
            stream.mark_message_received();
            Ok::<_, ChannelError>(echoed)
        };
        let echoed = timeout(target.io_timeout, exchange)
            .await
            .map_err(|_| ChannelError::Timeout { phase: "read", seconds })??;
        tessera::cli::write_stdout_bytes(&echoed)?;
    }
    // Every echo is in: send close_notify without waiting for the server's.
    let seconds = target.io_timeout.as_secs_f64();
    timeout(target.io_timeout, stream.close())
        .await
        .map_err(|_| ChannelError::Timeout {
            phase: "shutdown",
            seconds,
        })??;
    Ok(stream.stats())
}

async fn stream_stdin(target: &Target) -> anyhow::Result<ChannelStats> {
    let mut stream = target.open().await?;
    log_connected(&stream);
    let seconds = target.io_timeout.as_secs_f64();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut input = vec![0u8; 64 * 1024];
    let mut stdin_open = true;
    loop {
        // --timeout bounds the wait for the server only while it owes us something (an echo,
        // or its close after ours); waiting for stdin is not limited.
        let stats = stream.stats();
        let outstanding = !stdin_open || stats.bytes_sent > stats.bytes_received;
        let step = async {
            tokio::select! {
                read = stdin.read(&mut input), if stdin_open => {
                    let n = read.context("cannot read stdin")?;
                    let send = async {
                        if n == 0 {
                            stdin_open = false;
                            stream.close().await?;
                        } else {
                            let data = input.get(..n).unwrap_or_default();
                            stream.write_all(data).await.map_err(io_error("write"))?;
                            stream.flush().await.map_err(io_error("write"))?;
                            stream.mark_message_sent();
                        }
                        Ok::<(), anyhow::Error>(())
                    };
                    timeout(target.io_timeout, send)
                        .await
                        .map_err(|_| ChannelError::Timeout { phase: "write", seconds })??;
                    Ok::<bool, anyhow::Error>(true)
                }
                chunk = stream.fill_buf() => {
                    let chunk = chunk.map_err(io_error("read"))?;
                    if chunk.is_empty() {
                        return Ok(false);
                    }
                    let n = chunk.len();
                    stdout.write_all(chunk).await.map_err(tessera::cli::CliError::stdout)?;
                    stream.consume(n);
                    stream.mark_message_received();
                    Ok(true)
                }
            }
        };
        let progress = if outstanding {
            timeout(target.io_timeout, step)
                .await
                .map_err(|_| ChannelError::Timeout { phase: "read", seconds })??
        } else {
            step.await?
        };
        if !progress {
            break;
        }
    }
    stdout.flush().await.map_err(tessera::cli::CliError::stdout)?;
    if stdin_open {
        return Err(CliError::failure("the server closed the connection before the input ended").into());
    }
    Ok(stream.stats())
}

/// The `--bench --json` report.
#[derive(Debug, Serialize)]
struct BenchReport {
    connections: usize,
    concurrency: usize,
    write_size: u64,
    bytes_sent: u64,
    bytes_received: u64,
    seconds: f64,
    mib_per_second: f64,
    handshakes_per_second: f64,
    handshake_ms: Percentiles,
    rotations: u64,
    policy: RotationPolicy,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

struct ConnResult {
    handshake: Duration,
    sent: u64,
    received: u64,
    rotations: u64,
}

async fn bench(args: &cli::Args, target: Arc<Target>) -> anyhow::Result<()> {
    if args.conns == 0 {
        return Err(CliError::usage("--conns must be at least 1").into());
    }
    let concurrency = args.concurrency.unwrap_or(args.conns).clamp(1, args.conns);
    let write_size = usize::try_from(args.write_size.max(1)).unwrap_or(64 * 1024);
    let per_conn = args.bytes / args.conns as u64;
    let extra = args.bytes % args.conns as u64;
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.conns {
        let bytes = per_conn + u64::from((index as u64) < extra);
        let target = Arc::clone(&target);
        let slots = Arc::clone(&slots);
        tasks.spawn(async move {
            let _permit = slots.acquire_owned().await?;
            let begin = Instant::now();
            let mut stream = target.open().await?;
            let handshake = begin.elapsed();
            let seconds = target.io_timeout.as_secs_f64();
            let done = if bytes > 0 {
                timeout(
                    target.io_timeout.max(Duration::from_secs(1)) * 100,
                    channel::exchange(&mut stream, bytes, write_size),
                )
                .await
                .map_err(|_| ChannelError::Timeout { phase: "echo", seconds })?
                .map_err(io_error("echo"))?
            } else {
                channel::Exchanged::default()
            };
            let _ = timeout(target.io_timeout, stream.close()).await;
            Ok::<_, anyhow::Error>(ConnResult {
                handshake,
                sent: done.sent,
                received: done.received,
                rotations: stream.stats().rotations.total(),
            })
        });
    }
    let mut results = Vec::with_capacity(args.conns);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("a benchmark task failed")??);
    }
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let mut handshakes: Vec<f64> = results.iter().map(|r| r.handshake.as_secs_f64() * 1e3).collect();
    handshakes.sort_by(f64::total_cmp);
    let bytes_received: u64 = results.iter().map(|r| r.received).sum();
    let report = BenchReport {
        connections: results.len(),
        concurrency,
        write_size: args.write_size,
        bytes_sent: results.iter().map(|r| r.sent).sum(),
        bytes_received,
        seconds: elapsed,
        mib_per_second: bytes_received as f64 / elapsed / (1024.0 * 1024.0),
        handshakes_per_second: results.len() as f64 / elapsed,
        handshake_ms: Percentiles {
            p50: percentile(&handshakes, 0.50),
            p99: percentile(&handshakes, 0.99),
            max: handshakes.last().copied().unwrap_or(0.0),
        },
        rotations: results.iter().map(|r| r.rotations).sum(),
        policy: target.policy,
    };
    if args.json {
        tessera::cli::print_json(&report)?;
    } else {
        tessera::outln!(
            "{} connections ({} at once), {} bytes echoed in {:.3} s: {:.1} MiB/s each way, {:.1} handshakes/s",
            report.connections,
            report.concurrency,
            report.bytes_received,
            report.seconds,
            report.mib_per_second,
            report.handshakes_per_second
        )?;
        tessera::outln!(
            "handshake latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} key updates sent",
            report.handshake_ms.p50,
            report.handshake_ms.p99,
            report.handshake_ms.max,
            report.rotations
        )?;
    }
    Ok(())
}

/// The `q` quantile of sorted values (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// `SSLKEYLOGFILE` is appended to: refuse (exit 2) when it names one of the input files.
fn refuse_key_log_over_inputs(args: &cli::Args) -> Result<(), CliError> {
    let Some(key_log) = std::env::var_os("SSLKEYLOGFILE").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let key_log = std::path::PathBuf::from(key_log);
    let mut inputs = vec![tessera::cli::FileArg::new("the root (--ca)", &args.ca)];
    if let Some(path) = args.cert.as_ref() {
        inputs.push(tessera::cli::FileArg::new("the certificate chain (--cert)", path));
    }
    if let Some(path) = args.key.as_ref() {
        inputs.push(tessera::cli::FileArg::new("the key (--key)", path));
    }
    if let Some(path) = args.passphrase_file.as_ref() {
        inputs.push(tessera::cli::FileArg::new(
            "the passphrase file (--passphrase-file)",
            path,
        ));
    }
    for crl in &args.crl {
        inputs.push(tessera::cli::FileArg::new("the CRL (--crl)", crl));
    }
    tessera::cli::ensure_distinct(
        &inputs,
        &[tessera::cli::FileArg::new("the key log (SSLKEYLOGFILE)", &key_log)],
    )
}
