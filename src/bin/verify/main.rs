//! `verify`: checks a load module against its detached or embedded signature, offline, trusting
//! only a pinned root (or a pinned raw public key), and can hand back the verified bytes.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use time::OffsetDateTime;

use tessera::cli::AtomicFile;
use tessera::cli::{CliError, exit};
use tessera::pki::{PkiError, TrustStore, rfc3339};
use tessera::sign::{PublicKey, SignError, Verification, Verifier};

const TOOL: &str = "verify";

const EXAMPLES: &str = "EXAMPLES:
  verify module.so --root ca/ca.pem                      # uses module.so.sig, or an embedded signature
  verify module.so --root ca/ca.pem --crl ca/crl.pem --name module.so
  verify module.so.signed --root ca/ca.pem --extract module.so   # writes only the verified bytes
  verify module.so --pubkey me.pub                       # raw-key mode
  verify module.so --root ca/ca.pem --json | jq .signer.subject";

/// Verify a signed load module.
#[derive(Debug, Parser)]
#[command(name = "verify", version, after_help = format!("{EXAMPLES}\n\n{}", tessera::cli::EXIT_CODES_HELP))]
#[command(group = clap::ArgGroup::new("trust").required(true).args(["root", "pubkey"]))]
struct Cli {
    /// The module (a plain file with FILE.sig next to it, or a file with an embedded signature).
    file: PathBuf,
    /// The pinned root CA certificate(s) (PEM). The signer must chain to one of them with the
    /// code-signing usage, both at the signing time and now.
    #[arg(long, value_name = "ROOT")]
    root: Option<PathBuf>,
    /// Raw-key mode: the signer's public key (from `sign --generate`).
    #[arg(long, value_name = "PUB", conflicts_with_all = ["root", "crl"])]
    pubkey: Option<PathBuf>,
    /// The detached signature (default FILE.sig, unless FILE has an embedded signature).
    #[arg(long, value_name = "SIG")]
    sig: Option<PathBuf>,
    /// A CRL to apply (repeatable); a revoked signer or intermediate is rejected.
    #[arg(long, value_name = "CRL")]
    crl: Vec<PathBuf>,
    /// Require the signed logical name to be NAME.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Write the verified module bytes to OUT (atomically, and only when verification succeeds).
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
    match run(&cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let code = tessera::cli::report(TOOL, err.as_ref(), |e| e.downcast_ref::<SignError>().map(classify));
            if cli.json {
                let mut message = err.to_string();
                let mut source = err.source();
                while let Some(cause) = source {
                    let text = cause.to_string();
                    if !message.contains(&text) {
                        message = format!("{message}: {text}");
                    }
                    source = cause.source();
                }
                let exit_code = exit_code_of(err.as_ref());
                let _ = tessera::cli::print_json(&Failure {
                    valid: false,
                    file: cli.file.display().to_string(),
                    exit_code,
                    error: message,
                });
            }
            code
        }
    }
}

fn exit_code_of(err: &(dyn std::error::Error + 'static)) -> u8 {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(cli) = e.downcast_ref::<CliError>() {
            return cli.code;
        }
        if let Some(sign) = e.downcast_ref::<SignError>() {
            return classify(sign).0;
        }
        if let Some(pki) = e.downcast_ref::<PkiError>() {
            return tessera::cli::classify_pki(pki).0;
        }
        current = e.source();
    }
    exit::FAILURE
}

fn classify(error: &SignError) -> (u8, Option<String>) {
    let code = if error.is_rejection() {
        exit::REJECTED
    } else {
        exit::FAILURE
    };
    let hint = match error {
        SignError::Pki(pki) => return tessera::cli::classify_pki(pki),
        SignError::Untrusted {
            source: PkiError::UnknownIssuer,
            ..
        } => Some("the signer does not chain to --root; pass the root CA that issued the signer".into()),
        SignError::Untrusted {
            source: PkiError::BadSignature,
            ..
        } => Some("the signer's chain does not verify against --root (another CA with the same name?)".into()),
        SignError::Untrusted {
            source: PkiError::WrongUsage { .. },
            ..
        } => Some("only certificates issued with `ca issue --profile code-signing` may sign modules".into()),
        SignError::Untrusted {
            source: PkiError::RevocationUnknown { .. },
            ..
        } => Some("pass a current CRL (`ca crl`)".into()),
        SignError::NoSignature { .. } => Some("sign the module first, or pass its signature with --sig".into()),
        SignError::RawKeySignature { .. } => Some("pass the signer's public key with --pubkey".into()),
        SignError::CertificateSignature { .. } => Some("pass the signer's root CA with --root".into()),
        SignError::DigestMismatch | SignError::Truncated { .. } | SignError::Extended { .. } => {
            Some("the module was changed after it was signed; do not load it".into())
        }
        SignError::WrongName { .. } => Some("the signature is for another module; check which file you load".into()),
        SignError::MalformedBundle { .. } | SignError::BundleTooLarge { .. } => {
            Some("the signature is damaged or not a tessera signature; re-sign the module".into())
        }
        _ => None,
    };
    (code, hint)
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let now = cli.at.unwrap_or_else(OffsetDateTime::now_utc);
    let mut verifier = match (&cli.root, &cli.pubkey) {
        (Some(root), _) => {
            let mut trust = TrustStore::from_root_file(root)?;
            for crl in &cli.crl {
                trust.add_crl_file(crl)?;
            }
            Verifier::new(trust, now)
        }
        (None, Some(pubkey)) => Verifier::with_public_key(PublicKey::load(pubkey)?, now),
        (None, None) => return Err(CliError::usage("give --root ROOT or --pubkey PUB").into()),
    };
    if let Some(name) = &cli.name {
        verifier = verifier.require_name(name.clone());
    }
    let size = std::fs::metadata(&cli.file).map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(cli, size);
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let verification = match &cli.extract {
        Some(out_path) => {
            let mut out = AtomicFile::create(out_path).map_err(|e| SignError::Io {
                path: out_path.clone(),
                source: e,
            })?;
            // A failed write to OUT comes back as an I/O error on the module: name OUT instead.
            let mut write_failed = false;
            let verification = verifier.verify_file(
                &cli.file,
                cli.sig.as_deref(),
                &mut |chunk| out.write_all(chunk).inspect_err(|_| write_failed = true),
                &mut progress,
            );
            let verification = match verification {
                Err(SignError::Io { source, .. }) if write_failed => {
                    return Err(SignError::Io {
                        path: out_path.clone(),
                        source,
                    }
                    .into());
                }
                result => result?,
            };
            out.commit(true).map_err(|e| SignError::Io {
                path: out_path.clone(),
                source: e,
            })?;
            verification
        }
        None => verifier.verify_file(&cli.file, cli.sig.as_deref(), &mut |_| Ok(()), &mut progress)?,
    };
    bar.finish_and_clear();
    if cli.json {
        tessera::cli::print_json(&Success {
            valid: true,
            file: cli.file.display().to_string(),
            verification: &verification,
            extracted: cli.extract.as_ref().map(|p| p.display().to_string()),
        })?;
    } else if !cli.quiet {
        let v = &verification;
        let mode = if v.embedded { "embedded" } else { "detached" };
        let mut text = format!(
            "{}: OK\n  name:      {}\n  signer:    {}\n",
            cli.file.display(),
            v.name,
            v.signer.describe()
        );
        if !v.signer.chain.is_empty() {
            text.push_str(&format!("  chain:     {}\n", v.signer.chain.join(" <- ")));
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
            text.push_str(&format!("  extracted: {}\n", path.display()));
        }
        // The module name and signer come from the signature: shown escaped (bidi controls too).
        for line in text.lines() {
            tessera::outln!("{}", tessera::cli::printable(line))?;
        }
    }
    Ok(())
}

fn progress_bar(cli: &Cli, size: u64) -> indicatif::ProgressBar {
    tessera::cli::progress_bar(cli.quiet || cli.json, size, "verifying")
}
