//! `verify`: checks a load module against its detached or embedded signature, offline, trusting
//! only a pinned root (or a pinned raw public key), and can hand back the verified bytes.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use time::OffsetDateTime;

use tessera::cli::{AtomicFile, CliError, FileArg, Role, exit, printable};
use tessera::pki::{PkiError, TrustStore, rfc3339};
use tessera::sign::{Bundle, PublicKey, SignError, Verification, Verifier, default_signature_path};

const TOOL: &str = "verify";

const EXAMPLES: &str = "EXAMPLES:
  verify module.so --root ca/ca.pem                      # uses module.so.sig, or an embedded signature
  verify module.so --root ca/ca.pem --crl ca/crl.pem --name module.so
  verify module.so.signed --root ca/ca.pem --extract module.so   # writes only the verified bytes
  verify module.so --pubkey me.pub                       # raw-key mode
  verify module.so --root ca/ca.pem --json | jq .signer.subject
  curl -s https://example.test/m.so | verify - --sig m.so.sig --root ca/ca.pem
  verify m.so.signed --root ca/ca.pem --extract - | sha256sum   # verified bytes only, to stdout
  verify m.so --sig - --root ca/ca.pem < m.so.sig";

const EXIT_CODES: &str = "EXIT CODES:
  0  valid: signed by a trusted signer, and the module is intact
  1  rejected: tampered, truncated or extended module; untrusted, expired or revoked signer;
     wrong --name or --pubkey; signature from the future
  2  usage error, including an output that is one of the inputs (nothing is written)
  3  could not run: module, signature, root or CRL missing or unreadable; malformed
     signature; --extract OUT not writable";

/// Verify a signed load module.
#[derive(Debug, Parser)]
#[command(name = "verify", version, after_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"))]
#[command(group = clap::ArgGroup::new("trust").required(true).args(["root", "pubkey"]))]
struct Cli {
    /// The module (a plain file with FILE.sig next to it, or a file with an embedded signature;
    /// `-` reads standard input, which then needs --sig unless the signature is embedded).
    file: PathBuf,
    /// The pinned root CA certificate(s) (PEM; `-` reads standard input). The signer must chain
    /// to one of them with the code-signing usage, both at the signing time and now.
    #[arg(long, value_name = "ROOT")]
    root: Option<PathBuf>,
    /// Raw-key mode: the signer's public key (from `sign --generate`; `-` reads standard input).
    #[arg(long, value_name = "PUB", conflicts_with_all = ["root", "crl"])]
    pubkey: Option<PathBuf>,
    /// The detached signature (default FILE.sig, unless FILE has an embedded signature; `-` reads
    /// standard input).
    #[arg(long, value_name = "SIG")]
    sig: Option<PathBuf>,
    /// A CRL to apply (repeatable; `-` reads standard input); a revoked signer or intermediate
    /// is rejected.
    #[arg(long, value_name = "CRL")]
    crl: Vec<PathBuf>,
    /// Require the signed logical name to be NAME.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Write the verified module bytes to OUT, only when verification succeeds (a file is
    /// replaced atomically; `-` writes them to standard output).
    #[arg(long, value_name = "OUT")]
    extract: Option<PathBuf>,
    /// Check as if now were TIME (RFC 3339), e.g. to audit an old decision.
    #[arg(long, value_name = "TIME", value_parser = tessera::cli::parse_time)]
    at: Option<OffsetDateTime>,
    /// Print the result (or the failure) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing but errors; no progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl Cli {
    fn module_from_stdin(&self) -> bool {
        is_dash(&self.file)
    }

    fn extract_to_stdout(&self) -> bool {
        self.extract.as_deref().is_some_and(is_dash)
    }
}

fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Whether `path` is an existing FIFO, device, socket or pipe (following links): an output
/// written into directly, not replaced.
fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

#[derive(Serialize)]
struct Success<'a> {
    valid: bool,
    file: String,
    #[serde(flatten)]
    verification: &'a Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    extracted: Option<String>,
}

#[derive(Serialize)]
struct Failure {
    valid: bool,
    file: String,
    exit_code: u8,
    error: String,
}

fn main() -> ExitCode {
    let cli = match tessera::cli::parse_args::<Cli>(TOOL) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    tessera::cli::init_logging(cli.quiet, false);
    tessera::cli::remove_temporaries_on_signal();
    match run(&cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let verdict = tessera::cli::verdict(err.as_ref(), Role::Judge, |e| {
                e.downcast_ref::<SignError>().and_then(hint)
            });
            let code = tessera::cli::report(TOOL, err.as_ref(), &verdict);
            // A quiet end (the reader of stdout went away) has nothing to report.
            if cli.json && verdict.code != exit::OK {
                let _ = tessera::cli::print_json(&Failure {
                    valid: false,
                    file: cli.file.display().to_string(),
                    exit_code: verdict.code,
                    error: tessera::cli::error_chain(err.as_ref()),
                });
            }
            code
        }
    }
}

/// What to do about a [`SignError`] in `verify`'s words (the exit code is
/// [`tessera::cli::verdict`]'s).
fn hint(error: &SignError) -> Option<String> {
    let hint = match error {
        SignError::Untrusted {
            source: PkiError::UnknownIssuer,
            ..
        } => "the signer does not chain to --root; pass the root CA that issued the signer",
        SignError::Untrusted {
            source: PkiError::BadSignature,
            ..
        } => "the signer's chain does not verify against --root (another CA with the same name?)",
        SignError::Untrusted {
            source: PkiError::WrongUsage { .. },
            ..
        } => "only certificates issued with `ca issue --profile code-signing` may sign modules",
        SignError::Untrusted {
            source: PkiError::RevocationUnknown { .. },
            ..
        } => "pass a current CRL (`ca crl`)",
        SignError::NoSignature { .. } => "sign the module first, or pass its signature with --sig",
        SignError::NoEmbeddedSignature { .. } => {
            "pass the detached signature with --sig SIG (a module read from a pipe has no FILE.sig beside it)"
        }
        SignError::RawKeySignature { .. } => "pass the signer's public key with --pubkey",
        SignError::CertificateSignature { .. } => "pass the signer's root CA with --root",
        SignError::DigestMismatch | SignError::Truncated { .. } | SignError::Extended { .. } => {
            "the module was changed after it was signed; do not load it"
        }
        SignError::WrongName { .. } => "the signature is for another module; check which file you load",
        SignError::MalformedBundle { .. } | SignError::BundleTooLarge { .. } => {
            "the signature is damaged or not a tessera signature; re-sign the module"
        }
        _ => return None,
    };
    Some(hint.into())
}

/// Checks the command line for conflicts and for outputs that are inputs, before anything is
/// read or written.
fn check_usage(cli: &Cli) -> Result<(), CliError> {
    if cli.module_from_stdin() && cli.sig.as_deref().is_some_and(is_dash) {
        return Err(CliError::usage(
            "standard input can carry the module (FILE -) or its signature (--sig -), not both",
        )
        .with_hint("give one of them as a file"));
    }
    let mut dashes = vec![
        ("the module (FILE)", Some(cli.file.as_path())),
        ("--sig", cli.sig.as_deref()),
        ("--root", cli.root.as_deref()),
        ("--pubkey", cli.pubkey.as_deref()),
    ];
    dashes.extend(cli.crl.iter().map(|crl| ("--crl", Some(crl.as_path()))));
    tessera::cli::ensure_one_stdin(&dashes)?;
    if cli.json && cli.extract_to_stdout() {
        return Err(
            CliError::usage("--json and --extract - would both write to standard output")
                .with_hint("extract to a file with --extract OUT, or drop --json"),
        );
    }
    let default_sig = (!cli.module_from_stdin() && cli.sig.is_none())
        .then(|| default_signature_path(&cli.file))
        .filter(|p| p.exists());
    let mut inputs = vec![FileArg::new("the module", &cli.file)];
    if let Some(sig) = &cli.sig {
        inputs.push(FileArg::new("the signature (--sig)", sig));
    }
    if let Some(sig) = &default_sig {
        inputs.push(FileArg::new("the signature", sig));
    }
    if let Some(root) = &cli.root {
        inputs.push(FileArg::new("the root (--root)", root));
    }
    if let Some(key) = &cli.pubkey {
        inputs.push(FileArg::new("the public key (--pubkey)", key));
    }
    for crl in &cli.crl {
        inputs.push(FileArg::new("the CRL (--crl)", crl));
    }
    if let Some(out) = &cli.extract {
        tessera::cli::ensure_distinct(&inputs, &[FileArg::new("the output (--extract)", out)])?;
    }
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    check_usage(cli)?;
    let mut verifier = match (&cli.root, &cli.pubkey) {
        (Some(root), _) => Verifier::new(TrustStore::load(root, &cli.crl)?),
        (None, Some(pubkey)) => Verifier::with_public_key(PublicKey::load(pubkey)?),
        (None, None) => return Err(CliError::usage("give --root ROOT or --pubkey PUB").into()),
    };
    if let Some(at) = cli.at {
        verifier = verifier.at(at);
    }
    if let Some(name) = &cli.name {
        verifier = verifier.require_name(name.clone());
    }
    let bundle = match cli.sig.as_deref() {
        Some(sig) if is_dash(sig) => Some(Bundle::read_from(io::stdin().lock(), "standard input (--sig -)")?),
        _ => None,
    };

    let (verification, extracted) = match &cli.extract {
        Some(out) if is_dash(out) => {
            // Nothing unverified may reach standard output: spool, and copy once verified.
            let (verification, spool) = check_spooled(cli, &verifier, bundle.as_ref())?;
            spool.copy_to_stdout()?;
            (verification, Some("-".to_string()))
        }
        Some(out) if is_stream(out) => {
            // A FIFO, device or pipe is written into directly: nothing unverified may reach it
            // either, so spool as for standard output.
            let (verification, spool) = check_spooled(cli, &verifier, bundle.as_ref())?;
            spool.copy_to_file(out)?;
            (verification, Some(out.display().to_string()))
        }
        Some(out) => {
            let mut file = AtomicFile::create(out).map_err(|e| SignError::Io {
                path: out.clone(),
                source: e,
            })?;
            // A failed write to OUT comes back as an I/O error on the module: name OUT instead.
            let mut write_failed = false;
            let verification = check(cli, &verifier, bundle.as_ref(), &mut |chunk| {
                file.write_all(chunk).inspect_err(|_| write_failed = true)
            });
            let verification = match verification {
                Err(SignError::Io { source, .. }) if write_failed => {
                    return Err(SignError::Io {
                        path: out.clone(),
                        source,
                    }
                    .into());
                }
                result => result?,
            };
            file.commit(true).map_err(|e| SignError::Io {
                path: out.clone(),
                source: e,
            })?;
            (verification, Some(out.display().to_string()))
        }
        None => (check(cli, &verifier, bundle.as_ref(), &mut |_| Ok(()))?, None),
    };
    if cli.json {
        tessera::cli::print_json(&Success {
            valid: true,
            file: cli.file.display().to_string(),
            verification: &verification,
            extracted,
        })?;
    } else if !cli.quiet && !cli.extract_to_stdout() {
        tessera::cli::write_stdout_bytes(summary(cli, &verification).as_bytes())?;
    }
    Ok(())
}

/// Verifies the module wherever it comes from, handing its bytes to `sink`.
/// [`check`], with the verified bytes held in a temporary file until the verdict is known; a
/// failed write to that file is reported as such, not as an error reading the module.
fn check_spooled(cli: &Cli, verifier: &Verifier, bundle: Option<&Bundle>) -> anyhow::Result<(Verification, Spool)> {
    let mut spool = Spool::new()?;
    let mut write_failed = false;
    let verification = check(cli, verifier, bundle, &mut |chunk| {
        spool.file.write_all(chunk).inspect_err(|_| write_failed = true)
    });
    let verification = match verification {
        Err(SignError::Io { source, .. }) if write_failed => return Err(spool_error(&source).into()),
        result => result?,
    };
    Ok((verification, spool))
}

fn check(
    cli: &Cli,
    verifier: &Verifier,
    bundle: Option<&Bundle>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Verification, SignError> {
    let size = if cli.module_from_stdin() {
        0
    } else {
        std::fs::metadata(&cli.file).map(|m| m.len()).unwrap_or(0)
    };
    let bar = tessera::cli::progress_bar(cli.quiet || cli.json, size, "verifying");
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = if cli.module_from_stdin() {
        let what = "standard input";
        let bundle = bundle_for_stdin(cli, bundle)?;
        match stdin_file() {
            // Redirected from a file: check the signature before reading the module.
            Some(file) => verifier.verify_open_file(&file, what, bundle.as_deref(), sink, &mut progress),
            None => match bundle.as_deref() {
                Some(bundle) => verifier.verify_stream(bundle, io::stdin(), what, sink, &mut progress),
                None => verifier.verify_embedded_stream(io::stdin(), what, sink, &mut |done| bar.set_position(done)),
            },
        }
    } else if let Some(bundle) = bundle {
        let file = File::open(&cli.file).map_err(|e| SignError::Io {
            path: cli.file.clone(),
            source: e,
        })?;
        verifier.verify_open_file(
            &file,
            &cli.file.display().to_string(),
            Some(bundle),
            sink,
            &mut progress,
        )
    } else {
        verifier.verify_file(&cli.file, cli.sig.as_deref(), sink, &mut progress)
    };
    bar.finish_and_clear();
    result
}

/// The detached signature for a module on standard input: `--sig FILE` (read now), or none
/// (the signature must then be embedded).
fn bundle_for_stdin<'a>(
    cli: &Cli,
    bundle: Option<&'a Bundle>,
) -> Result<Option<std::borrow::Cow<'a, Bundle>>, SignError> {
    match (&cli.sig, bundle) {
        (_, Some(bundle)) => Ok(Some(std::borrow::Cow::Borrowed(bundle))),
        (Some(path), None) => Ok(Some(std::borrow::Cow::Owned(Bundle::load(path)?))),
        (None, None) => Ok(None),
    }
}

/// Standard input as a file, when it is a regular file read from its start (`verify - < FILE`).
fn stdin_file() -> Option<File> {
    use std::os::fd::AsFd;
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let mut file = File::from(fd);
    let regular = file.metadata().ok()?.is_file();
    (regular && file.stream_position().ok()? == 0).then_some(file)
}

/// The text report: untrusted text (the signed name, certificate subjects) and paths escaped.
fn summary(cli: &Cli, v: &Verification) -> String {
    let mode = if v.embedded { "embedded" } else { "detached" };
    let file = if cli.module_from_stdin() {
        "standard input".to_string()
    } else {
        cli.file.display().to_string()
    };
    let mut text = format!(
        "{}: OK\n  name:      {}\n  signer:    {}\n",
        printable(&file),
        printable(&v.name),
        printable(&v.signer.describe())
    );
    if !v.signer.chain.is_empty() {
        let chain: Vec<String> = v.signer.chain.iter().map(|s| printable(s)).collect();
        text.push_str(&format!("  chain:     {}\n", chain.join(" <- ")));
    }
    text.push_str(&format!(
        "  key id:    {}\n  signed at: {}\n  {:<9}  {}\n  length:    {} bytes ({mode} signature)\n",
        v.signer.key_id,
        rfc3339(v.signed_at),
        format!("{}:", v.hash),
        v.digest,
        v.length
    ));
    if let Some(path) = &cli.extract {
        text.push_str(&format!("  extracted: {}\n", printable(&path.display().to_string())));
    }
    text
}

/// An unnamed temporary file holding the module's bytes until they are verified.
struct Spool {
    file: File,
}

fn spool_error(source: &io::Error) -> CliError {
    CliError::failure(format!(
        "cannot hold the module in a temporary file in {}: {source}",
        std::env::temp_dir().display()
    ))
    .with_hint("set TMPDIR to a directory with room for the module, or extract to a file with --extract OUT")
}

impl Spool {
    /// Creates a file in the temporary directory (`TMPDIR`) and unlinks it at once, so nothing
    /// is left behind whatever happens.
    fn new() -> Result<Self, SignError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix).map_err(|_| SignError::Io {
            path: dir.clone(),
            source: io::Error::other("no randomness for a temporary file name"),
        })?;
        let path = dir.join(format!(".tessera-verify-{}", tessera::pki::hex(&suffix)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| SignError::Io {
                path: path.clone(),
                source: e,
            })?;
        let _ = std::fs::remove_file(&path);
        Ok(Self { file })
    }

    /// Copies the spooled bytes into `out` (a FIFO, device or pipe: written into directly).
    fn copy_to_file(mut self, out: &Path) -> anyhow::Result<()> {
        let io_error = |e| SignError::Io {
            path: out.to_path_buf(),
            source: e,
        };
        self.file
            .rewind()
            .map_err(|e| CliError::failure(format!("cannot read the spooled module: {e}")))?;
        let mut target = AtomicFile::create(out).map_err(io_error)?;
        io::copy(&mut self.file, &mut target).map_err(io_error)?;
        Ok(target.commit(true).map_err(io_error)?)
    }

    fn copy_to_stdout(mut self) -> anyhow::Result<()> {
        self.file
            .rewind()
            .map_err(|e| CliError::failure(format!("cannot read the spooled module: {e}")))?;
        let mut out = io::stdout().lock();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = match self.file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::failure(format!("cannot read the spooled module: {e}")).into()),
            };
            out.write_all(buffer.get(..n).unwrap_or_default())
                .map_err(CliError::stdout)?;
        }
        Ok(out.flush().map_err(CliError::stdout)?)
    }
}
