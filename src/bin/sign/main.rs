//! `sign`: signs a load module with an Ed25519 code-signing key (or a raw key), writing a
//! detached `FILE.sig` or a copy of the module with the signature appended.
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use time::OffsetDateTime;

use tessera::cli::{AtomicFile, CliError, FileArg, Role, exit, printable, read_passphrase};
use tessera::pki::{PrivateKey, hex, pem, rfc3339};
use tessera::sign::{HashAlgorithm, SignError, SignRequest, Signer, embed, generate_key_pair};

const TOOL: &str = "sign";

const EXAMPLES: &str = "EXAMPLES:
  # sign with a code-signing certificate (from `ca issue --profile code-signing --key-type ed25519`)
  sign module.so --key signer.key --cert signer.chain.pem            # writes module.so.sig
  sign module.so --key signer.key --cert signer.chain.pem --embed    # writes module.so.signed
  sign module.so --key signer.key --cert signer.chain.pem --name plugins/module.so --hash sha3-512

  # standard input and output
  build | sign - --name module.so --key signer.key --cert signer.chain.pem > module.so.sig
  sign module.so --key signer.key --cert signer.chain.pem -o - | ssh host 'cat > module.so.sig'

  # raw-key mode (no CA): make a key pair once, then sign with it
  sign --generate me                 # writes me.key (0600, encrypted) and me.pub
  sign module.so --key me.key        # verify with: verify module.so --pubkey me.pub";

const EXIT_CODES: &str = "EXIT CODES:
  0  signed (or key pair generated)
  2  usage error, including an output that is one of the inputs and a --name that is empty,
     over 255 bytes or holds control characters (nothing is written)
  3  could not sign: unreadable input, wrong passphrase, a key or certificate unfit for
     signing, an output that exists (--generate) or cannot be written";

/// Sign a load module.
#[derive(Debug, Parser)]
#[command(name = "sign", version, after_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"))]
struct Cli {
    /// The module to sign (`-` reads standard input; then --name is required and the signature
    /// goes to standard output unless -o is given).
    #[arg(required_unless_present = "generate")]
    file: Option<PathBuf>,
    /// The signer's Ed25519 private key (PKCS#8 PEM, possibly encrypted; `-` reads standard input).
    #[arg(long, value_name = "KEY", required_unless_present = "generate")]
    key: Option<PathBuf>,
    /// The signer's certificate followed by intermediates (PEM; `-` reads standard input).
    /// Without it, signs in raw-key mode.
    #[arg(long, value_name = "CHAIN")]
    cert: Option<PathBuf>,
    /// The root CA certificate(s) `verify` will pin (PEM; `-` reads standard input): the chain is
    /// then checked through to it, with the code-signing usage, before anything is signed.
    #[arg(long, value_name = "ROOT", requires = "cert")]
    root: Option<PathBuf>,
    /// Where to write: default FILE.sig, or FILE.signed with --embed; `-` is standard output.
    /// A file is replaced atomically; it may not be one of the inputs.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Write a copy of FILE with the signature appended instead of a detached signature.
    #[arg(long)]
    embed: bool,
    /// The module's logical name, bound into the signature (default: FILE's base name): 1 to
    /// 255 bytes, no control characters.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    name: Option<String>,
    /// Hash algorithm.
    #[arg(long, value_name = "ALG", default_value = "sha3-256", value_parser = ["sha3-256", "sha3-512", "parallelhash128"])]
    hash: String,
    /// Read the key's passphrase from this file (`-`: standard input; one trailing newline is
    /// removed), else TESSERA_PASSPHRASE, else a prompt.
    #[arg(long, value_name = "F")]
    passphrase_file: Option<PathBuf>,
    /// Generate a raw Ed25519 key pair: PREFIX.key (0600) and PREFIX.pub (not `-`).
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["file", "key", "cert", "embed", "output"])]
    generate: Option<PathBuf>,
    /// With --generate: store the private key unencrypted.
    #[arg(long, requires = "generate")]
    no_passphrase: bool,
    /// Print the result as JSON on stdout (not with the signature on stdout).
    #[arg(long)]
    json: bool,
    /// Print only errors; no progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// `--name`: checked as the signature will check it, so that a bad one is a usage error.
fn parse_name(text: &str) -> Result<String, String> {
    tessera::sign::check_name(text).map_err(|e| match e {
        SignError::InvalidName { reason, .. } => {
            format!("not a module name: {reason} (give 1 to 255 bytes, no control characters)")
        }
        other => other.to_string(),
    })?;
    Ok(text.to_string())
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
            // `sign` never judges a module: a certificate the PKI rules refuse is unfit for
            // signing (exit 3), not a rejection (exit 1).
            let verdict = tessera::cli::verdict(err.as_ref(), Role::Producer, |e| {
                e.downcast_ref::<SignError>().and_then(hint)
            });
            tessera::cli::report(TOOL, err.as_ref(), &verdict)
        }
    }
}

/// What to do about a [`SignError`] in `sign`'s words (the exit code is
/// [`tessera::cli::verdict`]'s).
fn hint(error: &SignError) -> Option<String> {
    let hint = match error {
        SignError::KeyMismatch { .. } => {
            "pass the key issued with this certificate (PREFIX.key next to PREFIX.chain.pem)"
        }
        SignError::NotCodeSigning { .. } | SignError::NotEd25519 { .. } => {
            "issue a code-signing certificate: `ca issue --profile code-signing --key-type ed25519 --name NAME`"
        }
        SignError::CertificateNotValid { .. } => "issue a fresh code-signing certificate",
        SignError::InvalidName { .. } => "give a printable name of at most 255 bytes with --name",
        SignError::BundleTooLarge { .. } => {
            "CHAIN is too large to fit in a signature: pass only the signer's certificate and its intermediates"
        }
        SignError::RootInChain { .. } => {
            "CHAIN is the signer's certificate and intermediates, not the root (verifiers pin it)"
        }
        _ => return None,
    };
    Some(hint.into())
}

#[derive(Serialize)]
struct Report<'a> {
    output: String,
    mode: &'static str,
    embedded: bool,
    name: &'a str,
    length: u64,
    hash: HashAlgorithm,
    digest: String,
    #[serde(with = "time::serde::rfc3339")]
    signed_at: OffsetDateTime,
    signer: String,
    key_id: String,
}

/// Where the signature (or signed copy) goes.
enum Output {
    Stdout,
    File(PathBuf),
}

impl Output {
    fn path(&self) -> &Path {
        match self {
            Self::Stdout => Path::new("-"),
            Self::File(path) => path,
        }
    }
}

fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Some(prefix) = &cli.generate {
        return generate(cli, prefix);
    }
    let (Some(file), Some(key_path)) = (&cli.file, &cli.key) else {
        return Err(CliError::usage("FILE and --key are required").into());
    };
    tessera::cli::ensure_one_stdin(&[
        ("the module (FILE)", Some(file.as_path())),
        ("--key", Some(key_path.as_path())),
        ("--cert", cli.cert.as_deref()),
        ("--passphrase-file", cli.passphrase_file.as_deref()),
        ("--root", cli.root.as_deref()),
    ])?;
    let stdin = is_dash(file);
    let name = match (&cli.name, stdin) {
        (Some(n), _) => n.clone(),
        (None, true) => return Err(CliError::usage("--name is required when signing standard input").into()),
        (None, false) => file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| CliError::usage(format!("cannot take a name from {}; give --name", file.display())))?,
    };
    let output = match &cli.output {
        Some(path) if is_dash(path) => Output::Stdout,
        Some(path) => Output::File(path.clone()),
        None if stdin => Output::Stdout,
        None => {
            let mut out = file.as_os_str().to_owned();
            out.push(if cli.embed { ".signed" } else { ".sig" });
            Output::File(PathBuf::from(out))
        }
    };
    if cli.json && matches!(output, Output::Stdout) {
        let message = if cli.output.is_none() {
            "--json with standard input needs -o: the signature would go to stdout too"
        } else {
            "--json and -o - would both write to standard output"
        };
        return Err(CliError::usage(message)
            .with_hint("write the signature to a file with -o OUT; --json then prints only the report")
            .into());
    }
    let mut inputs = vec![
        FileArg::new("the module", file),
        FileArg::new("the key (--key)", key_path),
    ];
    if let Some(chain) = &cli.cert {
        inputs.push(FileArg::new("the chain (--cert)", chain));
    }
    if let Some(pass) = &cli.passphrase_file {
        inputs.push(FileArg::new("the passphrase file", pass));
    }
    if let Some(root) = &cli.root {
        inputs.push(FileArg::new("the root (--root)", root));
    }
    let role = if cli.output.is_some() {
        "the output (-o)"
    } else {
        "the output"
    };
    tessera::cli::ensure_distinct(&inputs, &[FileArg::new(role, output.path())])?;

    let hash: HashAlgorithm = cli.hash.parse().map_err(CliError::usage)?;
    let passphrase =
        tessera::cli::passphrase_for_key(key_path, cli.passphrase_file.as_deref(), &pem::display_name(key_path))?;
    let key = PrivateKey::load(key_path, passphrase.as_ref())?;
    let signer = match &cli.cert {
        Some(chain) => Signer::with_certificate(&key, pem::load_certificates(chain)?)?,
        None => Signer::with_raw_key(&key)?,
    };
    drop(key);
    let request = SignRequest::new(name, OffsetDateTime::now_utc()).with_hash(hash);
    let unchecked_chain = check_chain(cli, &signer, request.time)?;

    let bundle = if stdin {
        sign_to(cli, &signer, &request, io::stdin(), "standard input", 0, &output)?
    } else {
        let input = std::fs::File::open(file).map_err(|e| io_error(file, e))?;
        let size = input.metadata().map(|m| m.len()).unwrap_or(0);
        sign_to(
            cli,
            &signer,
            &request,
            &input,
            &file.display().to_string(),
            size,
            &output,
        )?
    };

    if unchecked_chain && !cli.quiet {
        tessera::errln!(
            "{TOOL}: warning: without --root, CHAIN was checked for order only: if it lacks an \
             intermediate CA certificate, `verify` will refuse the signature (unknown issuer)"
        );
        tessera::errln!("{TOOL}: hint: pass the root that verifiers pin with --root ROOT to check CHAIN up to it");
    }
    if matches!(output, Output::Stdout) || (cli.quiet && !cli.json) {
        return Ok(());
    }
    let statement = bundle.statement();
    let key_id = signer.public_key().key_id().to_string();
    let signer_text = match signer.certificate() {
        Some(info) => format!("{} (serial {})", info.subject, info.serial),
        None => format!("raw key {key_id}"),
    };
    let report = Report {
        output: output.path().display().to_string(),
        mode: if signer.certificate().is_some() {
            "certificate"
        } else {
            "raw-key"
        },
        embedded: cli.embed,
        name: &statement.name,
        length: statement.length,
        hash: statement.hash,
        digest: hex(&statement.digest),
        signed_at: statement.signed_at,
        signer: signer_text,
        key_id,
    };
    if cli.json {
        tessera::cli::print_json(&report)?;
    } else {
        tessera::cli::write_stdout_bytes(
            format!(
                "signed {} ({} bytes, {} {})\n  signer:    {}\n  signed at: {}\n  wrote:     {}\n",
                printable(report.name),
                report.length,
                report.hash,
                report.digest,
                printable(&report.signer),
                rfc3339(report.signed_at),
                printable(&report.output)
            )
            .as_bytes(),
        )?;
    }
    Ok(())
}

/// With `--root`: refuses (exit 3) a chain that `verify --root` would refuse, so nothing is
/// signed that Tessera then rejects. Returns whether a chain went unchecked (certificate mode
/// without --root: the caller warns once the signature is written).
fn check_chain(cli: &Cli, signer: &Signer, time: OffsetDateTime) -> anyhow::Result<bool> {
    let Some(chain) = &cli.cert else {
        return Ok(false);
    };
    let Some(root) = &cli.root else {
        return Ok(true);
    };
    let trust = tessera::pki::TrustStore::from_root_file(root)?;
    let _verified = signer.check_trust(&trust, time).map_err(|e| {
        let message = format!(
            "the chain {} does not verify against {} for code signing: {e}; nothing was signed",
            printable(&pem::display_name(chain)),
            printable(&pem::display_name(root))
        );
        if e.is_rejection() {
            CliError::failure(message).with_hint(
                "CHAIN must hold the signer's certificate and every intermediate CA certificate up to \
                 (not including) the root: e.g. the PREFIX.chain.pem that `ca issue` wrote",
            )
        } else {
            CliError::failure(message)
        }
    })?;
    Ok(false)
}

/// Signs the module read from `input` and writes the detached signature, or with --embed the
/// module followed by its signature, to `output`.
fn sign_to<R: io::Read + Send>(
    cli: &Cli,
    signer: &Signer,
    request: &SignRequest,
    input: R,
    what: &str,
    size: u64,
    output: &Output,
) -> anyhow::Result<tessera::sign::Bundle> {
    let bar = tessera::cli::progress_bar(cli.quiet || cli.json, size, "hashing");
    let mut progress = |done| bar.set_position(done);
    if !cli.embed {
        let bundle = signer.sign_reader(input, what, request, &mut |_| Ok(()), &mut progress)?;
        bar.finish_and_clear();
        let pem = bundle.to_pem();
        match output {
            Output::Stdout => tessera::cli::write_stdout_bytes(pem.as_bytes())?,
            Output::File(path) => tessera::cli::write_atomic(path, pem.as_bytes()).map_err(|e| io_error(path, e))?,
        }
        return Ok(bundle);
    }
    // Embedded: the payload is copied while it is hashed, then the signature follows.
    let mut sink = match output {
        Output::Stdout => Sink::Stdout(io::stdout().lock()),
        Output::File(path) => Sink::File(AtomicFile::create(path).map_err(|e| io_error(path, e))?),
    };
    let mut write_error = None;
    let bundle = signer.sign_reader(
        input,
        what,
        request,
        &mut |chunk| sink.write_all(chunk).inspect_err(|e| write_error = Some(e.kind())),
        &mut progress,
    );
    let bundle = match (bundle, write_error) {
        (Err(SignError::Io { source, .. }), Some(_)) => return Err(write_failed(output, source)),
        (result, _) => result?,
    };
    let trailer = embed::trailer(&bundle)?;
    sink.write_all(&trailer).map_err(|e| write_failed(output, e))?;
    sink.finish().map_err(|e| write_failed(output, e))?;
    bar.finish_and_clear();
    Ok(bundle)
}

/// Where an embedded copy is written as it is made.
enum Sink<'a> {
    Stdout(io::StdoutLock<'a>),
    /// Renamed into place only once complete.
    File(AtomicFile),
}

impl Sink<'_> {
    fn finish(self) -> io::Result<()> {
        match self {
            Self::Stdout(mut out) => out.flush(),
            Self::File(file) => file.commit(true),
        }
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::File(file) => file.flush(),
        }
    }
}

fn write_failed(output: &Output, source: io::Error) -> anyhow::Error {
    match output {
        Output::Stdout => CliError::stdout(source).into(),
        Output::File(path) => io_error(path, source).into(),
    }
}

fn generate(cli: &Cli, prefix: &Path) -> anyhow::Result<()> {
    // A key pair is two files, PREFIX.key and PREFIX.pub: `-` (standard output) cannot hold
    // them, and a directory (`keys/`) is no prefix.
    let text = prefix.as_os_str().as_encoded_bytes();
    if is_dash(prefix) || text.is_empty() || text.ends_with(b"/") || prefix.file_name().is_none() {
        return Err(CliError::usage(format!(
            "--generate needs a file name prefix, not {}",
            if is_dash(prefix) {
                "- (a key pair is two files, PREFIX.key and PREFIX.pub)".to_string()
            } else {
                format!("the directory {}", printable(&prefix.display().to_string()))
            }
        ))
        .with_hint("e.g. `sign --generate keys/me` writes keys/me.key and keys/me.pub")
        .into());
    }
    let with_ext = |ext: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let (key_out, pub_out) = (with_ext(".key"), with_ext(".pub"));
    if let Some(pass) = &cli.passphrase_file {
        tessera::cli::ensure_distinct(
            &[FileArg::new("the passphrase file", pass)],
            &[
                FileArg::new("the private key", &key_out),
                FileArg::new("the public key", &pub_out),
            ],
        )?;
    }
    let passphrase = if cli.no_passphrase {
        None
    } else {
        Some(read_passphrase(cli.passphrase_file.as_deref(), "the new signing key", true)?.0)
    };
    let pair = generate_key_pair(prefix, passphrase.as_ref())?;
    #[derive(Serialize)]
    struct Generated {
        private_key: String,
        public_key: String,
        key_id: String,
        encrypted: bool,
    }
    let report = Generated {
        private_key: pair.private_key.display().to_string(),
        public_key: pair.public_key_file.display().to_string(),
        key_id: pair.public_key.key_id().to_string(),
        encrypted: passphrase.is_some(),
    };
    if cli.json {
        tessera::cli::print_json(&report)?;
    } else if !cli.quiet {
        tessera::cli::write_stdout_bytes(
            format!(
                "wrote {} (private, keep it secret) and {} (key id {})\n",
                printable(&report.private_key),
                printable(&report.public_key),
                report.key_id
            )
            .as_bytes(),
        )?;
    }
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> SignError {
    SignError::Io {
        path: path.to_path_buf(),
        source,
    }
}
