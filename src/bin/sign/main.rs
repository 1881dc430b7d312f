//! `sign`: signs a load module with an Ed25519 code-signing key (or a raw key), writing a
//! detached `FILE.sig` or a copy of the module with the signature appended.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use time::OffsetDateTime;

use tessera::cli::AtomicFile;
use tessera::cli::{CliError, exit, read_passphrase};
use tessera::pki::{PrivateKey, hex, pem, rfc3339};
use tessera::sign::{Bundle, HashAlgorithm, SignError, SignRequest, Signer, embed, generate_key_pair};

const TOOL: &str = "sign";

const EXAMPLES: &str = "EXAMPLES:
  # sign with a code-signing certificate (from `ca issue --profile code-signing --key-type ed25519`)
  sign module.so --key signer.key --cert signer.chain.pem            # writes module.so.sig
  sign module.so --key signer.key --cert signer.chain.pem --embed    # writes module.so.signed
  sign module.so --key signer.key --cert signer.chain.pem --name plugins/module.so --hash sha3-512

  # raw-key mode (no CA): make a key pair once, then sign with it
  sign --generate me                 # writes me.key (0600, encrypted) and me.pub
  sign module.so --key me.key        # verify with: verify module.so --pubkey me.pub";

/// Sign a load module.
#[derive(Debug, Parser)]
#[command(name = "sign", version, after_help = format!("{EXAMPLES}\n\n{}", tessera::cli::EXIT_CODES_HELP))]
struct Cli {
    /// The module to sign (`-` reads standard input; then --name is required and the
    /// signature goes to stdout unless -o is given).
    #[arg(required_unless_present = "generate")]
    file: Option<PathBuf>,
    /// The signer's Ed25519 private key (PKCS#8 PEM, possibly encrypted).
    #[arg(long, value_name = "KEY", required_unless_present = "generate")]
    key: Option<PathBuf>,
    /// The signer's certificate followed by intermediates (PEM). Without it, signs in raw-key mode.
    #[arg(long, value_name = "CHAIN")]
    cert: Option<PathBuf>,
    /// Where to write: default FILE.sig, or FILE.signed with --embed. Replaced atomically.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Write a copy of FILE with the signature appended instead of a detached signature.
    #[arg(long)]
    embed: bool,
    /// The module's logical name, bound into the signature (default: FILE's base name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Hash algorithm.
    #[arg(long, value_name = "ALG", default_value = "sha3-256", value_parser = ["sha3-256", "sha3-512", "parallelhash128"])]
    hash: String,
    /// Read the key's passphrase from this file (else TESSERA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "F")]
    passphrase_file: Option<PathBuf>,
    /// Generate a raw Ed25519 key pair: PREFIX.key (0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["file", "key", "cert", "embed", "output"])]
    generate: Option<PathBuf>,
    /// With --generate: store the private key unencrypted.
    #[arg(long, requires = "generate")]
    no_passphrase: bool,
    /// Print the result as JSON on stdout (with `-` as FILE, only together with -o).
    #[arg(long)]
    json: bool,
    /// Print nothing on success and no progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = match tessera::cli::parse_args::<Cli>(TOOL) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    tessera::cli::init_logging(cli.quiet, false);
    match run(&cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => tessera::cli::report(TOOL, err.as_ref(), |e| e.downcast_ref::<SignError>().map(classify)),
    }
}

fn classify(error: &SignError) -> (u8, Option<String>) {
    let hint = match error {
        SignError::Pki(pki) => return tessera::cli::classify_pki(pki),
        SignError::KeyMismatch { .. } => {
            Some("pass the key issued with this certificate (PREFIX.key next to PREFIX.chain.pem)".into())
        }
        SignError::NotCodeSigning { .. } | SignError::NotEd25519 { .. } => Some(
            "issue a code-signing certificate: `ca issue --profile code-signing --key-type ed25519 --name NAME`".into(),
        ),
        SignError::CertificateNotValid { .. } => Some("issue a fresh code-signing certificate".into()),
        SignError::InvalidName { .. } => Some("give a printable name of at most 255 bytes with --name".into()),
        SignError::BundleTooLarge { .. } => Some(
            "CHAIN is too large to fit in a signature: pass only the signer's certificate and its intermediates".into(),
        ),
        SignError::RootInChain { .. } => {
            Some("CHAIN is the signer's certificate and intermediates, not the root (verifiers pin it)".into())
        }
        _ => None,
    };
    // A refusal to sign is a usage problem of the inputs, not a verdict on a module.
    (exit::FAILURE, hint)
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

fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Some(prefix) = &cli.generate {
        return generate(cli, prefix);
    }
    let (Some(file), Some(key_path)) = (&cli.file, &cli.key) else {
        return Err(CliError::usage("FILE and --key are required").into());
    };
    let stdin = file.as_os_str() == "-";
    let name = match (&cli.name, stdin) {
        (Some(n), _) => n.clone(),
        (None, true) => return Err(CliError::usage("--name is required when signing standard input").into()),
        (None, false) => file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| CliError::usage(format!("cannot take a name from {}; give --name", file.display())))?,
    };
    if stdin && cli.embed {
        return Err(CliError::usage("--embed needs a file, not standard input").into());
    }
    if stdin && cli.json && cli.output.is_none() {
        return Err(
            CliError::usage("--json with standard input needs -o: the signature would go to stdout too")
                .with_hint("write the signature to a file with -o OUT; --json then prints only the report")
                .into(),
        );
    }
    let hash: HashAlgorithm = cli.hash.parse().map_err(CliError::usage)?;
    let passphrase = tessera::cli::passphrase_for_key(
        key_path,
        cli.passphrase_file.as_deref(),
        &key_path.display().to_string(),
    )?;
    let key = PrivateKey::load(key_path, passphrase.as_ref())?;
    let signer = match &cli.cert {
        Some(chain) => Signer::with_certificate(&key, pem::load_certificates(chain)?)?,
        None => Signer::with_raw_key(&key)?,
    };
    drop(key);
    let request = SignRequest::new(name.clone(), OffsetDateTime::now_utc()).with_hash(hash);
    let output = cli.output.clone().unwrap_or_else(|| {
        let mut out = file.as_os_str().to_owned();
        out.push(if cli.embed { ".signed" } else { ".sig" });
        PathBuf::from(out)
    });

    let bundle = if stdin {
        let what = "standard input".to_string();
        signer.sign_reader(std::io::stdin(), &what, &request, &mut |_| Ok(()), &mut |_| {})?
    } else {
        let input = std::fs::File::open(file).map_err(|e| SignError::Io {
            path: file.clone(),
            source: e,
        })?;
        let size = input.metadata().map(|m| m.len()).unwrap_or(0);
        let bar = progress_bar(cli, size);
        let what = file.display().to_string();
        if cli.embed {
            let mut out = AtomicFile::create(&output).map_err(|e| io_error(&output, e))?;
            let mut write_error = None;
            let bundle = signer.sign_reader(
                &input,
                &what,
                &request,
                &mut |chunk| out.write_all(chunk).inspect_err(|e| write_error = Some(e.kind())),
                &mut |done| bar.set_position(done),
            );
            let bundle = match (bundle, write_error) {
                (Err(SignError::Io { source, .. }), Some(_)) => return Err(io_error(&output, source).into()),
                (result, _) => result?,
            };
            let trailer = embed::trailer(&bundle)?;
            out.write_all(&trailer).map_err(|e| io_error(&output, e))?;
            out.commit(true).map_err(|e| io_error(&output, e))?;
            bar.finish_and_clear();
            bundle
        } else {
            let bundle = signer.sign_reader(&input, &what, &request, &mut |_| Ok(()), &mut |d| bar.set_position(d))?;
            bar.finish_and_clear();
            bundle
        }
    };
    if !cli.embed {
        write_detached(cli, stdin, &output, &bundle)?;
    }
    let statement = bundle.statement();
    let out_name = if stdin && cli.output.is_none() {
        "-".to_string()
    } else {
        output.display().to_string()
    };
    let (signer_text, key_id) = match signer.certificate() {
        Some(info) => (
            format!("{} (serial {})", info.subject, info.serial),
            signer.public_key().key_id().to_string(),
        ),
        None => {
            let id = signer.public_key().key_id().to_string();
            (format!("raw key {id}"), id)
        }
    };
    let report = Report {
        output: out_name,
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
    } else if !cli.quiet {
        tessera::errln!(
            "{TOOL}: signed {:?} ({} bytes, {} {}) as {} at {}; wrote {}",
            report.name,
            report.length,
            report.hash,
            report.digest,
            report.signer,
            rfc3339(report.signed_at),
            report.output
        );
    }
    Ok(())
}

fn write_detached(cli: &Cli, stdin: bool, output: &Path, bundle: &Bundle) -> anyhow::Result<()> {
    let pem = bundle.to_pem();
    if stdin && cli.output.is_none() {
        tessera::cli::write_stdout_bytes(pem.as_bytes())?;
        return Ok(());
    }
    tessera::cli::write_atomic(output, pem.as_bytes()).map_err(|e| io_error(output, e))?;
    Ok(())
}

fn generate(cli: &Cli, prefix: &Path) -> anyhow::Result<()> {
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
        tessera::errln!(
            "{TOOL}: wrote {} (private, keep it secret) and {} (key id {})",
            report.private_key,
            report.public_key,
            report.key_id
        );
    }
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> SignError {
    SignError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn progress_bar(cli: &Cli, size: u64) -> indicatif::ProgressBar {
    tessera::cli::progress_bar(cli.quiet || cli.json, size, "hashing")
}
