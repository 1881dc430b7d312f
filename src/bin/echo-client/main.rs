//! `echo-client`: talks to an echo service over TLS 1.3 (mutual TLS optional), rotating its
//! traffic keys by policy; sends messages, streams stdin, or runs a load test.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};

use tessera::channel::{
    self, ChannelError, ChannelStats, ChannelStream, ClientSettings, Credentials, Refusal, RotationPolicy, TlsOptions,
};
use tessera::cli::{CliError, Role};
use tessera::pki::Usage;

fn main() -> ExitCode {
    // `echo-client: error: …` and exit 2 on a usage error (0 for --help), as every Tessera tool does.
    let args = match tessera::cli::parse_args::<cli::Args>("echo-client") {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    tessera::cli::init_logging(args.quiet, args.verbose);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let verdict = tessera::cli::verdict(err.as_ref(), Role::Judge, |e| {
                e.downcast_ref::<ChannelError>().and_then(hint)
            });
            tessera::cli::report("echo-client", err.as_ref(), &verdict)
        }
    }
}

/// What to do about a channel error (the exit code is [`tessera::cli::verdict`]'s; a load
/// error's [`tessera::pki::PkiError`] speaks for itself).
fn hint(error: &ChannelError) -> Option<String> {
    if error.is_rejection() {
        return Some(refusal_hint(error).into());
    }
    let hint = match error {
        ChannelError::TruncatedMessage { .. } => Some(
            "the server closed the connection before echoing everything: it may have reached its --max-conns \
             limit, be shutting down, or have dropped an idle connection",
        ),
        ChannelError::Timeout { .. } => Some("the server did not answer in time: check it is running and reachable"),
        ChannelError::Handshake { .. } => Some(
            "the server ended the handshake: it may be at its --max-conns limit, shutting down, or not a TLS 1.3 \
             service",
        ),
        ChannelError::NotAFile { .. } => Some("give the path of a regular PEM file (not a pipe, device or directory)"),
        ChannelError::UnusableKey { .. } => {
            Some("give the key that was issued with this certificate (PREFIX.key beside PREFIX.chain.pem)")
        }
        _ => None,
    };
    hint.map(Into::into)
}

/// What to do about a refusal: ours of the server's certificate (by why we refused it), or the
/// server's of ours (by the alert it sent).
fn refusal_hint(error: &ChannelError) -> &'static str {
    use rustls::AlertDescription as A;
    if let Some(refusal) = error.refusal() {
        return match refusal {
            Refusal::UnknownIssuer => "the server's certificate does not chain to --ca: pass the root that issued it",
            Refusal::NameMismatch { .. } => {
                "the server's certificate does not hold the name asked for: check --server-name"
            }
            Refusal::Expired { .. } | Refusal::NotYetValid { .. } => {
                "the server's certificate is expired or not yet valid: check the clocks, or ask its operator for a \
                 fresh certificate"
            }
            Refusal::Revoked { .. } => "the server's certificate is revoked by a --crl: its operator needs a new one",
            Refusal::RevocationUnknown { .. } => {
                "a --crl you gave is out of date (past its nextUpdate) or not signed by its issuer: fetch a fresh \
                 CRL (`ca crl` on the CA) and try again"
            }
            Refusal::WrongUsage { .. } => "the server's certificate is not for server use (extended key usage)",
            Refusal::NoCertificate => "the server presented no certificate",
            _ => "the server's certificate is not acceptable: check it with `ca verify --usage server`",
        };
    }
    match error.peer_alert() {
        Some(A::CertificateRequired) => "the server requires a client certificate: pass --cert and --key",
        Some(A::UnknownCA) => {
            "the server does not trust the issuer of your certificate (check it was issued under the server's \
             --client-ca), or it could not check its revocation: some servers send unknown_ca for a CRL past its \
             nextUpdate"
        }
        Some(A::CertificateUnknown) => {
            "the server could not decide on your certificate, most likely because its CRL is out of date (past its \
             nextUpdate): its operator must install a fresh CRL (`ca crl`) and reload it (SIGHUP)"
        }
        Some(A::BadCertificate) => {
            "the server found your certificate unacceptable (malformed, or against a rule of the certificate \
             profile): check it with `ca verify --usage client`"
        }
        Some(A::UnsupportedCertificate) => {
            "your certificate is not for client use: issue one with `ca issue --profile client`"
        }
        Some(A::CertificateRevoked) => "your certificate is revoked: get a new one issued",
        Some(A::CertificateExpired) => {
            "your certificate is expired or not yet valid: check the clocks, or get a new one issued"
        }
        Some(A::AccessDenied) => {
            "your certificate is trusted but not admitted: the server's --allow list does not name it"
        }
        Some(A::ProtocolVersion) => "the server does not speak TLS 1.3 (--insecure-allow-tls12 accepts TLS 1.2)",
        _ => match error.tls_error() {
            Some(rustls::Error::PeerIncompatible(_)) => {
                "the server does not speak TLS 1.3 (--insecure-allow-tls12 accepts TLS 1.2)"
            }
            _ => {
                "the TLS peer refused the connection: check --ca, --cert/--key, --server-name, and the server's \
                 --client-ca/--allow"
            }
        },
    }
}

/// Logs (with -v) whom we are talking to and how.
fn log_connected(stream: &ChannelStream<TcpStream>) {
    if let Some(peer) = stream.peer_identity() {
        // Names from the certificate are untrusted: `?` prints them quoted and escaped.
        tracing::info!(
            server = ?peer.name(),
            serial = %peer.serial,
            sans = ?peer.sans.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            version = %stream.protocol_version().map_or_else(|| "unknown".into(), channel::version_name),
            suite = %stream.cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown"),
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
    retry: Retry,
    quiet: bool,
    counters: RetryCounters,
}

/// What --retry did: connection attempts, reconnects, resumed handshakes, messages sent again.
#[derive(Debug, Default)]
struct RetryCounters {
    /// Handshakes that resumed a session (the first connection's included).
    resumed: AtomicU64,
    /// Connection attempts made after a failure (a connection lost, or an attempt that failed):
    /// the ones `--retry N` allows, successful or not.
    attempts: AtomicU64,
    /// Of those, the ones that opened a connection (TCP connected, TLS handshake done).
    reconnects: AtomicU64,
    /// Of those, the ones whose handshake resumed a session.
    reconnects_resumed: AtomicU64,
    /// Messages (with --bench: connections' exchanges) sent again.
    resent: AtomicU64,
}

impl RetryCounters {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `A connection attempts after a failure, R reconnects (S resumed their TLS session), M
    /// messages sent again` (singular nouns for 1; `what` names what is sent again).
    fn summary(&self, what: (&str, &str)) -> String {
        use tessera::cli::counted;
        format!(
            "{} after a failure, {} ({} resumed {} TLS session), {} sent again",
            counted(Self::get(&self.attempts), "connection attempt", "connection attempts"),
            counted(Self::get(&self.reconnects), "reconnect", "reconnects"),
            Self::get(&self.reconnects_resumed),
            if Self::get(&self.reconnects_resumed) == 1 {
                "its"
            } else {
                "their"
            },
            counted(Self::get(&self.resent), what.0, what.1),
        )
    }
}

/// `--retry N --retry-backoff MS`.
#[derive(Clone, Copy, Debug)]
struct Retry {
    attempts: u64,
    backoff: Duration,
}

/// The longest wait between two reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Retry {
    /// The wait before connection attempt number `attempt` after a failure (1, 2, …): the backoff doubled at each
    /// attempt, at most [`MAX_BACKOFF`], less a random part of up to half (jitter, so that
    /// clients cut off together do not come back together).
    fn delay(&self, attempt: u64) -> Duration {
        let shift = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(20);
        let full = self.backoff.saturating_mul(1 << shift).min(MAX_BACKOFF);
        let mut random = [0u8; 4];
        let fraction = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random) {
            Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        full.mul_f64(1.0 - fraction / 2.0)
    }
}

impl Target {
    /// Opens a connection; `reconnect` when it replaces a lost one (for the counters).
    async fn open(&self, reconnect: bool) -> Result<ChannelStream<TcpStream>, anyhow::Error> {
        let stream = self.open_once().await?;
        if reconnect {
            RetryCounters::bump(&self.counters.reconnects);
        }
        if stream.resumed() {
            RetryCounters::bump(&self.counters.resumed);
            if reconnect {
                RetryCounters::bump(&self.counters.reconnects_resumed);
            }
        }
        Ok(stream)
    }

    async fn open_once(&self) -> Result<ChannelStream<TcpStream>, anyhow::Error> {
        let seconds = self.connect_timeout.as_secs_f64();
        let attempt = async {
            let tcp = TcpStream::connect(&self.address).await.map_err(|e| {
                CliError::failure(format!("cannot connect to {}: {e}", self.address))
                    .with_hint("check that the server is running and listening at --connect")
            })?;
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

/// Writes `echo-client: warning: …` on stderr (nothing with -q).
fn warn(quiet: bool, message: &str) {
    if !quiet {
        tessera::errln!("echo-client: warning: {}", tessera::cli::printable(message));
    }
}

/// The largest --write-size.
const MAX_WRITE_SIZE: u64 = 16 * 1024 * 1024;

fn run(args: cli::Args) -> anyhow::Result<()> {
    use tessera::cli::{MAX_PHASE_SECONDS, MAX_SECONDS, count, timeout_seconds};
    refuse_key_log_over_inputs(&args)?;
    let mut dashes = vec![
        ("--ca", Some(args.ca.as_path())),
        ("--cert", args.cert.as_deref()),
        ("--key", args.key.as_deref()),
        ("--passphrase-file", args.passphrase_file.as_deref()),
    ];
    dashes.extend(args.crl.iter().map(|crl| ("--crl", Some(crl.as_path()))));
    tessera::cli::ensure_one_stdin(&dashes)?;
    if let Some((flag, _)) = dashes
        .iter()
        .find(|(_, path)| path.is_some_and(tessera::pki::pem::is_stdin))
        && args.messages.is_empty()
        && !args.bench
    {
        return Err(CliError::usage(format!(
            "{flag} - reads standard input, which without MESSAGE arguments is the stream to send"
        ))
        .with_hint("give the messages as arguments, or the file by name")
        .into());
    }
    let policy = args.rotation.policy().map_err(CliError::usage)?;
    let connect_timeout =
        timeout_seconds(args.connect_timeout, "--connect-timeout", MAX_PHASE_SECONDS).map_err(CliError::usage)?;
    let io_timeout = timeout_seconds(args.timeout, "--timeout", MAX_SECONDS).map_err(CliError::usage)?;
    if args.bench {
        count(args.conns, "--conns", cli::MAX_CONNS).map_err(CliError::usage)?;
        if let Some(concurrency) = args.concurrency {
            count(concurrency, "--concurrency", args.conns).map_err(CliError::usage)?;
        }
        count(args.write_size, "--write-size", MAX_WRITE_SIZE).map_err(CliError::usage)?;
    }
    let retry = Retry {
        // Both in range: their value parsers checked them.
        attempts: args.retry.unwrap_or(0),
        backoff: Duration::from_millis(args.retry_backoff),
    };
    if retry.attempts > 0 && args.messages.is_empty() && !args.bench {
        return Err(CliError::usage("--retry needs MESSAGE arguments")
            .with_hint(
                "when stdin is streamed, a lost connection ends the run with exit 3 (what came back before it is on \
                 stdout, the rest is not): streamed bytes cannot be sent again without being echoed twice",
            )
            .into());
    }
    let server_name = match &args.server_name {
        Some(name) => name.clone(),
        None => host_of(&args.connect).ok_or_else(|| {
            CliError::usage(format!(
                "--connect \"{}\" is not HOST:PORT",
                tessera::cli::printable(&args.connect)
            ))
        })?,
    };
    if rustls_pki_types::ServerName::try_from(server_name.as_str()).is_err() {
        return Err(CliError::usage(format!(
            "server name \"{}\" is not a valid DNS name or IP address",
            tessera::cli::printable(&server_name)
        ))
        .with_hint("give the name the server's certificate holds with --server-name")
        .into());
    }
    // Before anything opens a file (the passphrase step reads the key): a FIFO would block.
    let mut paths: Vec<(&str, &std::path::Path)> = vec![("root certificates", args.ca.as_path())];
    paths.extend(args.crl.iter().map(|crl| ("CRL", crl.as_path())));
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        paths.extend([("certificate chain", cert.as_path()), ("private key", key.as_path())]);
    }
    for (what, path) in paths {
        tessera::internal::check_regular_file(path, what)?;
    }
    let now = time::OffsetDateTime::now_utc();
    let trust = channel::load_trust(&args.ca, &args.crl, now)?;
    for warning in &trust.warnings {
        warn(args.quiet, &warning.to_string());
    }
    let credentials = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let passphrase = tessera::cli::passphrase_for_key(
                key,
                args.passphrase_file.as_deref(),
                &format!("key {}", key.display()),
            )?;
            let credentials = Credentials::load(cert, key, passphrase.as_ref())?;
            if let Err(problem) =
                credentials.check_usable(Usage::Client, now, &format!("certificate chain {}", cert.display()))
            {
                warn(args.quiet, &format!("{problem}; the server will refuse it"));
            }
            Some(credentials)
        }
        _ => None,
    };
    let mut options = TlsOptions::with_sslkeylogfile();
    options.allow_tls12 = args.insecure_allow_tls12;
    // One configuration for every connection: its session cache lets reconnects resume.
    options.resumption = retry.attempts > 0;
    let config = channel::client_config(&ClientSettings {
        server_trust: Arc::new(trust.store),
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
        retry,
        quiet: args.quiet,
        counters: RetryCounters::default(),
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

/// True when an error is a lost or refused connection that a reconnect may cure (never a
/// refusal of a certificate, or the server's refusal of ours).
fn retryable(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<ChannelError>() {
        Some(channel) => {
            !channel.is_rejection()
                && matches!(
                    channel,
                    ChannelError::Io { .. }
                        | ChannelError::TruncatedMessage { .. }
                        | ChannelError::Handshake { .. }
                        | ChannelError::Timeout { .. }
                )
        }
        // The one other error of `Target::open`: the TCP connection failed.
        None => error.downcast_ref::<CliError>().is_some(),
    }
}

/// After a failure: waits and returns the number of connection attempts used (counting the
/// one about to be made), or gives the error back when it is not retryable or the `--retry`
/// budget is spent.
async fn retry_or_fail(target: &Target, error: anyhow::Error, used: u64, pending: &str) -> anyhow::Result<u64> {
    if target.retry.attempts == 0 || !retryable(&error) {
        return Err(error);
    }
    if used >= target.retry.attempts {
        return Err(error.context(format!(
            "gave up after {} (--retry {}); the last one failed",
            tessera::cli::counted(used, "connection attempt", "connection attempts"),
            target.retry.attempts
        )));
    }
    let used = used + 1;
    RetryCounters::bump(&target.counters.attempts);
    let wait = target.retry.delay(used);
    warn(
        target.quiet,
        &format!(
            "{error}; reconnecting in {} ms (attempt {used} of {}); {pending}",
            wait.as_millis(),
            target.retry.attempts,
        ),
    );
    tokio::time::sleep(wait).await;
    Ok(used)
}

/// On a failed run with `--retry`: the retry summary on stderr (nothing with -q), then
/// `unfinished` (what was not done), so that a run that gave up says what its attempts did.
fn retry_summary_on_failure(target: &Target, what: (&str, &str), unfinished: &str) {
    if target.retry.attempts > 0 && !target.quiet {
        tessera::errln!("echo-client: retry: {}; {unfinished}", target.counters.summary(what));
    }
}

/// `messages N to TOTAL were not echoed` (N counted from 0 in `next`).
fn not_echoed(next: usize, total: usize) -> String {
    if next + 1 >= total {
        format!("message {total} was not echoed")
    } else {
        format!("messages {} to {total} were not echoed", next + 1)
    }
}

/// `messages N to TOTAL will be sent` (N counted from 0 in `next`).
fn pending(next: usize, total: usize) -> String {
    format!("messages {} to {total} will be sent", next + 1)
}

/// Sends each message and prints its echo once it is complete. With --retry, a connection
/// lost (or refused) before a message was echoed is opened again and the message sent again:
/// echo is idempotent, and nothing of an incomplete echo has been printed, so every message
/// is printed exactly once, in order.
async fn send_messages(target: &Target, messages: &[String]) -> anyhow::Result<ChannelStats> {
    let mut stream: Option<ChannelStream<TcpStream>> = None;
    // Connection attempts made after a failure, of the --retry budget.
    let mut attempts = 0u64;
    let mut next = 0usize;
    while let Some(message) = messages.get(next) {
        if stream.is_none() {
            match target.open(attempts > 0).await {
                Ok(opened) => {
                    log_connected(&opened);
                    stream = Some(opened);
                }
                Err(error) => {
                    attempts = match retry_or_fail(target, error, attempts, &pending(next, messages.len())).await {
                        Ok(attempts) => attempts,
                        Err(error) => {
                            retry_summary_on_failure(
                                target,
                                ("message", "messages"),
                                &not_echoed(next, messages.len()),
                            );
                            return Err(error);
                        }
                    };
                    continue;
                }
            }
        }
        let Some(current) = stream.as_mut() else { continue };
        match exchange_message(target, current, message).await {
            Ok(echoed) => {
                tessera::cli::write_stdout_bytes(&echoed)?;
                next += 1;
            }
            Err(error) => {
                stream = None;
                attempts = match retry_or_fail(target, error.into(), attempts, &pending(next, messages.len())).await {
                    Ok(attempts) => attempts,
                    Err(error) => {
                        retry_summary_on_failure(target, ("message", "messages"), &not_echoed(next, messages.len()));
                        return Err(error);
                    }
                };
                // Sent (at least in part) and not echoed: it goes again on the next connection.
                RetryCounters::bump(&target.counters.resent);
            }
        }
    }
    if target.retry.attempts > 0 && !target.quiet {
        tessera::errln!(
            "echo-client: retry: {}; every message was echoed once, in order",
            target.counters.summary(("message", "messages"))
        );
    }
    let Some(mut stream) = stream else {
        return Ok(ChannelStats::default());
    };
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

/// Sends one message (and a newline) and reads its whole echo.
async fn exchange_message(
    target: &Target,
    stream: &mut ChannelStream<TcpStream>,
    message: &str,
) -> Result<Vec<u8>, ChannelError> {
    let seconds = target.io_timeout.as_secs_f64();
    let mut line = message.as_bytes().to_vec();
    line.push(b'\n');
    timeout(target.io_timeout, channel::echo_round_trip(stream, &line))
        .await
        .map_err(|_| ChannelError::Timeout { phase: "read", seconds })?
}

/// Bytes held at most in each direction of the stream mode (stdin to the server, the echo to
/// stdout).
const STREAM_BUFFER: usize = 64 * 1024;

/// The stream mode's buffers and progress (one task drives both directions, so neither waits
/// for the other: a server whose echo we do not read stops reading what we send).
struct Pump {
    input: Vec<u8>,
    input_len: usize,
    input_sent: usize,
    output: Vec<u8>,
    output_len: usize,
    output_written: usize,
    stdin_open: bool,
    unflushed: bool,
    closed: bool,
    server_done: bool,
}

impl Pump {
    fn new() -> Self {
        Self {
            input: vec![0u8; STREAM_BUFFER],
            input_len: 0,
            input_sent: 0,
            output: vec![0u8; STREAM_BUFFER],
            output_len: 0,
            output_written: 0,
            stdin_open: true,
            unflushed: false,
            closed: false,
            server_done: false,
        }
    }

    /// Does the server owe us something (an echo, taking our data, or its close after ours)?
    fn waiting_for_server(&self, stats: &ChannelStats) -> bool {
        !self.stdin_open || self.input_sent < self.input_len || stats.bytes_sent > stats.bytes_received
    }

    /// Moves whatever can move now without waiting; `Ready(true)` after any progress,
    /// `Ready(false)` when all is done, `Pending` when everything waits.
    fn poll_step(
        &mut self,
        cx: &mut std::task::Context<'_>,
        stream: &mut ChannelStream<TcpStream>,
        stdin: &mut tokio::io::Stdin,
        stdout: &mut tokio::io::Stdout,
    ) -> std::task::Poll<anyhow::Result<bool>> {
        use std::pin::Pin;
        use std::task::Poll;
        use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
        let mut progress = false;
        // stdin -> server
        if self.stdin_open && self.input_len == 0 {
            let mut buf = ReadBuf::new(&mut self.input);
            if let Poll::Ready(read) = Pin::new(&mut *stdin).poll_read(cx, &mut buf) {
                read.context("cannot read stdin")?;
                let n = buf.filled().len();
                if n == 0 {
                    self.stdin_open = false;
                } else {
                    self.input_len = n;
                    self.input_sent = 0;
                }
                progress = true;
            }
        }
        if self.input_sent < self.input_len {
            let data = self.input.get(self.input_sent..self.input_len).unwrap_or_default();
            if let Poll::Ready(written) = Pin::new(&mut *stream).poll_write(cx, data) {
                let n = written.map_err(io_error("write"))?;
                if n == 0 {
                    return Poll::Ready(Err(io_error("write")(std::io::ErrorKind::WriteZero.into()).into()));
                }
                self.input_sent += n;
                self.unflushed = true;
                progress = true;
                if self.input_sent == self.input_len {
                    self.input_len = 0;
                    self.input_sent = 0;
                    stream.mark_message_sent();
                }
            }
        }
        if self.input_len == 0
            && self.unflushed
            && let Poll::Ready(flushed) = Pin::new(&mut *stream).poll_flush(cx)
        {
            flushed.map_err(io_error("write"))?;
            self.unflushed = false;
            progress = true;
        }
        if !self.stdin_open
            && self.input_len == 0
            && !self.unflushed
            && !self.closed
            && let Poll::Ready(closed) = Pin::new(&mut *stream).poll_shutdown(cx)
        {
            closed.map_err(io_error("shutdown"))?;
            self.closed = true;
            progress = true;
        }
        // server -> stdout
        if !self.server_done && self.output_len == 0 {
            let mut buf = ReadBuf::new(&mut self.output);
            if let Poll::Ready(read) = Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                read.map_err(io_error("read"))?;
                let n = buf.filled().len();
                if n == 0 {
                    self.server_done = true;
                } else {
                    self.output_len = n;
                    self.output_written = 0;
                    stream.mark_message_received();
                }
                progress = true;
            }
        }
        if self.output_written < self.output_len {
            let data = self
                .output
                .get(self.output_written..self.output_len)
                .unwrap_or_default();
            if let Poll::Ready(written) = Pin::new(&mut *stdout).poll_write(cx, data) {
                let n = written.map_err(CliError::stdout)?;
                if n == 0 {
                    return Poll::Ready(Err(CliError::stdout(std::io::ErrorKind::WriteZero.into()).into()));
                }
                self.output_written += n;
                progress = true;
                if self.output_written == self.output_len {
                    self.output_len = 0;
                    self.output_written = 0;
                }
            }
        }
        if self.server_done && self.output_len == 0 {
            return Poll::Ready(Ok(false));
        }
        if progress { Poll::Ready(Ok(true)) } else { Poll::Pending }
    }
}

/// Streams stdin to the server and its echo to stdout, both at once, with at most
/// [`STREAM_BUFFER`] bytes held each way.
async fn stream_stdin(target: &Target) -> anyhow::Result<ChannelStats> {
    let mut stream = target.open(false).await?;
    log_connected(&stream);
    let seconds = target.io_timeout.as_secs_f64();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut pump = Pump::new();
    loop {
        // --timeout bounds the wait for the server only while it owes us something (an echo,
        // taking our data, or its close after ours); waiting for stdin is not limited.
        let outstanding = pump.waiting_for_server(&stream.stats());
        let writing = pump.input_len > 0;
        let step = std::future::poll_fn(|cx| pump.poll_step(cx, &mut stream, &mut stdin, &mut stdout));
        let stepped = if outstanding {
            match timeout(target.io_timeout, step).await {
                Ok(stepped) => stepped,
                Err(_) => Err(ChannelError::Timeout {
                    phase: if writing { "write" } else { "read" },
                    seconds,
                }
                .into()),
            }
        } else {
            step.await
        };
        let progress = match stepped {
            Ok(progress) => progress,
            Err(error) => return Err(explain_stream_failure(target, &mut stream, error).await),
        };
        if !progress {
            break;
        }
    }
    stdout.flush().await.map_err(tessera::cli::CliError::stdout)?;
    if pump.stdin_open || !pump.closed {
        let stats = stream.stats();
        return Err(CliError::failure(format!(
            "the server closed the connection before the input ended: {} bytes sent, {} echoed (on stdout); the \
             rest of the input was not sent",
            stats.bytes_sent, stats.bytes_received
        ))
        .with_hint("a stream is not sent again (part of it would be echoed twice): send it again whole, or use MESSAGEs with --retry")
        .into());
    }
    Ok(stream.stats())
}

/// A stream mode failure. A refusal is said as one, also when a write broke before its alert
/// was read (as in message mode, [`explain_failure`]); anything else is a lost connection, with
/// how far the stream got (stdout holds exactly the echoed bytes).
async fn explain_stream_failure(
    target: &Target,
    stream: &mut ChannelStream<TcpStream>,
    error: anyhow::Error,
) -> anyhow::Error {
    let error = match error.downcast::<ChannelError>() {
        Ok(ChannelError::Io { operation, source }) => explain_failure(target, stream, operation, source).await.into(),
        Ok(other) => other.into(),
        Err(other) => other,
    };
    if error
        .downcast_ref::<ChannelError>()
        .is_some_and(ChannelError::is_rejection)
    {
        return error;
    }
    lost_stream(error, &stream.stats())
}

/// A lost stream, with how far it got.
fn lost_stream(error: anyhow::Error, stats: &ChannelStats) -> anyhow::Error {
    // The stdout side's own errors (a closed pipe) are not a lost connection.
    if error.downcast_ref::<CliError>().is_some() {
        return error;
    }
    error.context(format!(
        "connection lost after {} bytes sent, {} echoed (on stdout); the rest of the input was not echoed and is not \
         sent again",
        stats.bytes_sent, stats.bytes_received
    ))
}

/// The `--bench --json` report.
#[derive(Debug, Serialize)]
struct BenchReport {
    connections: usize,
    concurrency: u64,
    write_size: u64,
    bytes_sent: u64,
    bytes_received: u64,
    seconds: f64,
    mib_per_second: f64,
    handshakes_per_second: f64,
    handshake_ms: Percentiles,
    rotations: u64,
    policy: RotationPolicy,
    /// Handshakes that resumed a TLS session (with --retry, which keeps session tickets).
    resumed: u64,
    /// Connection attempts made after a failure (--retry), successful or not.
    attempts: u64,
    /// Of those, the ones that opened a connection.
    reconnects: u64,
    /// Of those, the ones that resumed their session.
    reconnects_resumed: u64,
    /// Connections whose exchange was started again from the beginning after a loss.
    resent: u64,
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
    // --conns, --concurrency and --write-size were checked in `run`.
    let conns = args.conns.max(1);
    let concurrency = args.concurrency.unwrap_or(conns).clamp(1, conns);
    let write_size = usize::try_from(args.write_size.max(1)).unwrap_or(64 * 1024);
    let per_conn = args.bytes / conns;
    let extra = args.bytes % conns;
    let slots = Arc::new(Semaphore::new(usize::try_from(concurrency).unwrap_or(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..conns {
        let bytes = per_conn + u64::from(index < extra);
        let target = Arc::clone(&target);
        let slots = Arc::clone(&slots);
        tasks.spawn(async move {
            let _permit = slots.acquire_owned().await?;
            let mut used = 0u64;
            loop {
                let mut opened = false;
                match bench_connection(&target, bytes, write_size, used > 0, &mut opened).await {
                    Ok(result) => return Ok::<_, anyhow::Error>(result),
                    Err(error) => {
                        used =
                            retry_or_fail(&target, error, used, "this connection's bytes will be echoed again").await?;
                        if opened {
                            // Its exchange had begun: it starts again from the beginning.
                            RetryCounters::bump(&target.counters.resent);
                        }
                    }
                }
            }
        });
    }
    let mut results = Vec::with_capacity(usize::try_from(conns).unwrap_or(0));
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a benchmark task failed")? {
            Ok(result) => results.push(result),
            Err(error) => {
                retry_summary_on_failure(
                    &target,
                    ("connection's exchange", "connections' exchanges"),
                    "the benchmark did not complete",
                );
                return Err(error);
            }
        }
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
        resumed: RetryCounters::get(&target.counters.resumed),
        attempts: RetryCounters::get(&target.counters.attempts),
        reconnects: RetryCounters::get(&target.counters.reconnects),
        reconnects_resumed: RetryCounters::get(&target.counters.reconnects_resumed),
        resent: RetryCounters::get(&target.counters.resent),
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
        if target.retry.attempts > 0 {
            tessera::outln!(
                "{} resumed a TLS session; retry: {}",
                tessera::cli::counted(report.resumed, "handshake", "handshakes"),
                target
                    .counters
                    .summary(("connection's exchange", "connections' exchanges"))
            )?;
        }
    }
    Ok(())
}

/// One benchmark connection: a handshake, then `bytes` echoed in writes of `write_size`.
async fn bench_connection(
    target: &Target,
    bytes: u64,
    write_size: usize,
    reconnect: bool,
    opened: &mut bool,
) -> anyhow::Result<ConnResult> {
    let begin = Instant::now();
    let mut stream = target.open(reconnect).await?;
    *opened = true;
    let handshake = begin.elapsed();
    let seconds = target.io_timeout.as_secs_f64();
    if bytes == 0 {
        await_verdict(target, &mut stream).await?;
        return Ok(ConnResult {
            handshake,
            sent: 0,
            received: 0,
            rotations: stream.stats().rotations.total(),
        });
    }
    let exchanged = timeout(
        target.io_timeout.max(Duration::from_secs(1)).saturating_mul(100),
        channel::exchange(&mut stream, bytes, write_size),
    )
    .await
    .map_err(|_| ChannelError::Timeout { phase: "echo", seconds })?;
    let done = match exchanged {
        Ok(done) => done,
        Err(error) => return Err(explain_failure(target, &mut stream, "echo", error).await.into()),
    };
    // A connection that ends early is a failed run, not a short report.
    if done.sent != bytes || done.received != bytes {
        return Err(ChannelError::TruncatedMessage {
            received: done.received,
            expected: bytes,
        }
        .into());
    }
    let _ = timeout(target.io_timeout, stream.close()).await;
    if target.retry.attempts > 0 {
        // Read up to the server's close_notify: the session tickets it sent after the handshake
        // come first, and the next connection resumes with one (a handshake-only connection
        // reads them in `await_verdict`).
        let mut rest = Vec::new();
        let _ = timeout(
            target.io_timeout,
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
        )
        .await;
    }
    Ok(ConnResult {
        handshake,
        sent: done.sent,
        received: done.received,
        rotations: stream.stats().rotations.total(),
    })
}

/// The longest wait, after a failed write, for the alert that explains it.
const ALERT_READ_LIMIT: Duration = Duration::from_secs(2);

/// A failed exchange as an error. A server that refuses our certificate sends its alert and
/// closes, so a write often fails first (broken pipe, reset) with the alert unread: read it
/// (bounded) before calling the failure a lost connection, which `--retry` would retry.
async fn explain_failure(
    target: &Target,
    stream: &mut ChannelStream<TcpStream>,
    operation: &'static str,
    error: std::io::Error,
) -> ChannelError {
    if error.get_ref().is_none_or(|inner| !inner.is::<rustls::Error>())
        && let Some(alert) = stream
            .alert_after_failure(target.io_timeout.min(ALERT_READ_LIMIT))
            .await
    {
        return io_error("read")(alert);
    }
    io_error(operation)(error)
}

/// A handshake-only connection (`--bench --bytes 0`): waits for the server's verdict on our
/// certificate. In TLS 1.3 our side of the handshake ends with our Finished, before the server
/// has judged the certificate that came with it; a refusal is an alert we only see by reading.
/// So we send `close_notify` and read until the server's own `close_notify` (or the end of the
/// connection): the server handles our records in order, so anything it sends in answer to our
/// `close_notify` comes after its verdict, and a refusal is what we read first. Two other ways
/// would not do: waiting for a session ticket (a server without ticket keys sends none, so we
/// could not tell its silence from its consent), and a zero-length probe (rustls sends no empty
/// application-data record, and the peer owes it no answer). Bounded by `--timeout`.
async fn await_verdict(target: &Target, stream: &mut ChannelStream<TcpStream>) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let seconds = target.io_timeout.as_secs_f64();
    // A failure to send it (the server already closed) leaves its alert to read.
    let _ = timeout(target.io_timeout, stream.close()).await;
    let verdict = async {
        // Session tickets come first, and are kept for the next connection with --retry.
        let mut rest = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut rest).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                // An alert (a refusal, or another TLS failure).
                Err(error) if error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
                    return Err(io_error("read")(error));
                }
                // Closed or reset without a TLS alert: the server did not refuse us.
                Err(_) => return Ok(()),
            }
        }
    };
    timeout(target.io_timeout, verdict)
        .await
        .map_err(|_| ChannelError::Timeout {
            phase: "wait for the server's verdict on the handshake",
            seconds,
        })??;
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
