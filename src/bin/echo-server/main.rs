//! `echo-server`: a TLS 1.3 echo service with mutual TLS, an allow list, in-flight key rotation,
//! hot reload and timeouts on every phase.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use tessera::channel::{
    self, Authorization, ChannelError, EchoConfig, ProxySources, ReloadableServerConfig, ServerFiles, TlsOptions,
};
use tessera::cli::{CliError, Role};

fn main() -> ExitCode {
    // `echo-server: error: …` and exit 2 on a usage error (0 for --help), as every Tessera tool does.
    let args = match tessera::cli::parse_args::<cli::Args>("echo-server") {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    tessera::cli::init_logging(args.quiet, true);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let verdict = tessera::cli::verdict(err.as_ref(), Role::Judge, |e| {
                e.downcast_ref::<ChannelError>().and_then(hint)
            });
            tessera::cli::report("echo-server", err.as_ref(), &verdict)
        }
    }
}

/// What to do about a start-up failure (the exit code is [`tessera::cli::verdict`]'s; a load
/// error's [`tessera::pki::PkiError`] speaks for itself).
fn hint(error: &ChannelError) -> Option<String> {
    let hint = match error {
        ChannelError::UnsuitableCertificate { .. } => {
            "give a server certificate valid now, for server use (`ca issue --profile server --name HOST`), \
             with its own key"
        }
        ChannelError::UnusableKey { .. } => {
            "give the key that was issued with this certificate (PREFIX.key beside PREFIX.chain.pem)"
        }
        ChannelError::NotAFile { .. } => "give the path of a regular PEM file (not a pipe, device or directory)",
        ChannelError::FileTooLarge { .. } => "check the path: certificate, key and CRL files are far smaller",
        ChannelError::TicketKeys { .. } => {
            "give a file made by `echo-server --new-ticket-key FILE` (one base64 32-byte key per line, mode 0600)"
        }
        ChannelError::Timeout { .. } => {
            "a file did not answer in time (a hung network file system?); --reload-timeout sets the limit"
        }
        _ => return None,
    };
    Some(hint.into())
}

/// The service's limits from the flags (each checked against its range).
fn echo_config(args: &cli::Args) -> Result<EchoConfig, CliError> {
    use cli::MAX_CONNECTIONS;
    use tessera::cli::{MAX_PHASE_SECONDS, MAX_SECONDS, count, timeout_seconds};
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(EchoConfig {
        policy: args.rotation.policy().map_err(CliError::usage)?,
        handshake_timeout: timeout_seconds(args.handshake_timeout, "--handshake-timeout", MAX_PHASE_SECONDS)
            .map_err(CliError::usage)?,
        idle_timeout: timeout_seconds(args.idle_timeout, "--idle-timeout", MAX_SECONDS).map_err(CliError::usage)?,
        shutdown_timeout: timeout_seconds(args.shutdown_timeout, "--shutdown-timeout", MAX_PHASE_SECONDS)
            .map_err(CliError::usage)?,
        reload_timeout: timeout_seconds(args.reload_timeout, "--reload-timeout", MAX_PHASE_SECONDS)
            .map_err(CliError::usage)?,
        max_connections: to_usize(count(args.max_conns, "--max-conns", MAX_CONNECTIONS).map_err(CliError::usage)?),
        max_handshakes: to_usize(
            count(args.max_handshakes, "--max-handshakes", MAX_CONNECTIONS).map_err(CliError::usage)?,
        ),
        // 0 closes sessions at once, as before draining existed.
        drain_timeout: if args.drain_timeout == 0.0 {
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
        echo_delay: Duration::from_millis(args.bench_echo_delay_ms),
    })
}

fn run(args: cli::Args) -> anyhow::Result<()> {
    if let Some(path) = &args.new_ticket_key {
        return rotate_ticket_keys(path);
    }
    // clap requires them without --new-ticket-key.
    let (Some(listen), Some(cert), Some(key)) = (args.listen.clone(), args.cert.clone(), args.key.clone()) else {
        return Err(CliError::usage("--listen, --cert and --key are required").into());
    };
    refuse_key_log_over_inputs(&args, &cert, &key)?;
    // `-` is read once at start; a reload (SIGHUP) reuses those bytes and re-reads the rest.
    let mut dashes = vec![
        ("--cert", Some(cert.as_path())),
        ("--key", Some(key.as_path())),
        ("--passphrase-file", args.passphrase_file.as_deref()),
        ("--client-ca", args.client_ca.as_deref()),
    ];
    dashes.extend(args.crl.iter().map(|crl| ("--crl", Some(crl.as_path()))));
    tessera::cli::ensure_one_stdin(&dashes)?;
    let limits = echo_config(&args)?;
    let mut options = TlsOptions::with_sslkeylogfile();
    options.allow_tls12 = args.insecure_allow_tls12;
    let mut files = ServerFiles {
        cert,
        key: key.clone(),
        passphrase: None,
        passphrase_file: args.passphrase_file.clone(),
        client_ca: args.client_ca.clone(),
        crls: args.crl.clone(),
        authorization: Authorization::only(args.allow.clone()),
        options,
        ticket_keys: args.ticket_keys.clone(),
        ticket_lifetime: Duration::from_secs(args.ticket_lifetime),
    };
    // Before anything opens a file (the passphrase step reads the key): a FIFO would block.
    for (what, path) in files.paths() {
        tessera::internal::check_regular_file(path, what)?;
    }
    files.passphrase =
        tessera::cli::passphrase_for_key(&key, args.passphrase_file.as_deref(), &format!("key {}", key.display()))?
            .map(Arc::new);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let first = files.load_async(limits.reload_timeout).await?;
        for warning in &first.warnings {
            tracing::warn!("{warning}; then send SIGHUP");
        }
        if files.client_ca.is_none() {
            tracing::warn!("no --client-ca: clients are not authenticated");
        }
        if let Some(tickets) = &first.session_tickets {
            // The key names, never the keys.
            tracing::info!(
                keys = tickets.keys.len(),
                sealing_key = %tickets.keys.names().first().map_or("", String::as_str),
                lifetime_seconds = tickets.lifetime.as_secs(),
                "session tickets on"
            );
        }
        let config = Arc::new(ReloadableServerConfig::from_files(first, files));
        serve(&listen, config, limits).await
    });
    // A reload abandoned on a file that never answered must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// Binds `listen`, prints `listening on IP:PORT`, and runs the echo service until it stops:
/// SIGHUP reloads, SIGINT and SIGTERM shut down (a second one closes every connection at once).
async fn serve(listen: &str, config: Arc<ReloadableServerConfig>, limits: EchoConfig) -> anyhow::Result<()> {
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
    let (service, running) = channel::serve_echo(listener, config, limits);
    tokio::pin!(running);
    loop {
        tokio::select! {
            () = &mut running => return Ok(()),
            _ = sighup.recv() => service.reload("SIGHUP"),
            _ = sigint.recv() => service.shutdown("SIGINT"),
            _ = sigterm.recv() => service.shutdown("SIGTERM"),
        }
    }
}

/// `--new-ticket-key FILE`: a fresh key first, at most three kept; prints the key names.
fn rotate_ticket_keys(path: &std::path::Path) -> anyhow::Result<()> {
    let names = channel::new_ticket_key(path)?;
    tessera::outln!(
        "{}: {} keys, new sealing key {} (copy the file to every server, then send each SIGHUP)",
        path.display(),
        names.len(),
        names.first().map_or("", String::as_str)
    )?;
    Ok(())
}

/// `SSLKEYLOGFILE` is appended to: refuse (exit 2) when it names one of the input files.
fn refuse_key_log_over_inputs(args: &cli::Args, cert: &std::path::Path, key: &std::path::Path) -> Result<(), CliError> {
    let Some(key_log) = std::env::var_os("SSLKEYLOGFILE").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let key_log = std::path::PathBuf::from(key_log);
    let mut inputs = vec![
        tessera::cli::FileArg::new("the certificate chain (--cert)", cert),
        tessera::cli::FileArg::new("the key (--key)", key),
    ];
    if let Some(path) = args.ticket_keys.as_ref() {
        inputs.push(tessera::cli::FileArg::new("the ticket keys (--ticket-keys)", path));
    }
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
