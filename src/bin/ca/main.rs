//! `ca`: the Tessera certificate authority tool. Parses the command line, calls
//! `tessera::ca` / `tessera::pki`, renders the result.
#![forbid(unsafe_code)]

mod cli;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use cli::{
    BackupArgs, Cli, Command, CrlArgs, ExportArgs, InitArgs, IssueArgs, ListArgs, ListStatus, RenewArgs, RevokeArgs,
    SetArgs, ShowArgs, VerifyArgs,
};
use tessera::ca::json::{Created, ListEntry, PathEntry, RevokeOutput, VerifyOutput, whole_seconds};
use tessera::ca::{
    CaError, CertificateAuthority, CrlStatus, DistributionUrls, InitRequest, IssueRequest, IssuedFiles, ListFilter,
    Location, RevocationReason, Status, SubjectAltName,
};
use tessera::cli::{CliError, Role, exit, read_passphrase};
use tessera::pki::{
    self, CertificateInfo, CrlInfo, Inspected, Passphrase, PkiError, Serial, TrustStore, VerifyRequest, rfc3339,
};

const TOOL: &str = "ca";

fn main() -> ExitCode {
    let mut cli = match tessera::cli::parse_args::<Cli>(TOOL) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli.resolve_dir();
    if matches!(cli.command, Command::Serve(_)) {
        // A service: timestamped lines, its events (info) shown unless --quiet.
        tessera::cli::init_logging_as(None, cli.quiet, !cli.quiet);
    } else {
        tessera::cli::init_logging(cli.quiet, cli.verbose);
        // One-shot commands; `ca serve` drains on SIGTERM instead.
        tessera::cli::remove_temporaries_on_signal();
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let verdict = tessera::cli::verdict(err.as_ref(), Role::Judge, |e| {
                e.downcast_ref::<CaError>().and_then(hint)
            });
            tessera::cli::report(TOOL, err.as_ref(), &verdict)
        }
    }
}

/// What to do about a [`CaError`] in `ca`'s words (the exit code is [`tessera::cli::verdict`]'s).
fn hint(error: &CaError) -> Option<String> {
    let hint = match error {
        CaError::NotACa { .. } => "create one with `ca init`, or point --dir (or TESSERA_CA_DIR) at an existing CA",
        CaError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            "run as the user that owns the CA directory, or give this user access to it (it is not \
             missing: the operating system refused access)"
        }
        CaError::AlreadyInitialised { .. } => "choose another --dir",
        CaError::OutlivesIssuer { .. } => "ask for fewer --days/--hours, or omit them to end with the CA",
        CaError::Refused(PkiError::NameConstraintViolation) => {
            "every --san must lie inside the CA's permitted names (see `ca show DIR/ca.pem`)"
        }
        CaError::Refused(PkiError::UnsupportedNameConstraint { .. }) => {
            "Tessera cannot issue such names below this CA (see docs/ca.md, \"Name constraints\")"
        }
        CaError::UnsupportedCsr { fix, .. } => return Some(fix.clone()),
        CaError::UnknownSerial { .. } => "`ca list` shows the serials this CA issued",
        CaError::BadCsr { .. } => "make a request with e.g. `openssl req -new -key KEY -subj /CN=NAME -out REQ.csr`",
        CaError::Database { .. } => {
            "restore the store from a backup (`ca backup` makes one); the certificates themselves are unaffected"
        }
        CaError::MissingDatabase { .. } => {
            "restore the store from a backup (`ca backup` makes one); a CA never starts afresh without it, as \
             a new store would forget every revocation (certificates and keys are unaffected)"
        }
        CaError::WrongStore { fix, .. } => return Some(fix.clone()),
        CaError::StoreMoved { unfinished: true, .. } => {
            "run `ca move-store` again with the same --db (or TESSERA_DB) to finish the move; nothing was changed"
        }
        CaError::StoreMoved { .. } => {
            "give this CA's ca commands --db (or TESSERA_DB) naming the PostgreSQL store it moved to, and \
             restart a ca serve still running on the SQLite store; nothing was changed"
        }
        CaError::Store { reason, .. } if reason.contains("newer than this Tessera") => {
            "run a Tessera at least as new as the one that last wrote this store (a newer version's \
             store is never changed by an older one); nothing was changed"
        }
        CaError::Store { reason, .. } if reason.contains("no schema") => {
            "check that --db (or TESSERA_DB) names this CA's database; nothing was changed"
        }
        CaError::Store { .. } => {
            "check that the database is running and reachable, and that --db (or TESSERA_DB) names this \
             CA's store; nothing was changed"
        }
        CaError::DatabaseBehindCrl { .. } => {
            "restore the newest backup of the store (its CRL number must be at least the CRL's); nothing was written"
        }
        CaError::UnfinishedInit { .. } => {
            "if nothing was issued from it, remove the directory and run `ca init` again; if ca.pem \
             was deleted, restore it from a backup"
        }
        CaError::UnfinishedOutput { .. } => {
            "if an earlier `ca issue` of this name was interrupted, remove the file (or give its \
             --key-passphrase-file); otherwise choose another --out"
        }
        CaError::OutputExists { .. } => "choose another --out PREFIX or remove the old files",
        CaError::AlreadyRevoked { .. } => {
            "a revocation is final: its time and reason stay as recorded (`ca list` shows them)"
        }
        CaError::InvalidRequest { field: "urls.json", .. } => {
            "fix or remove urls.json in the CA directory (no file: no URLs), or replace it with \
             `ca set --crl-url URL|none --ocsp-url URL|none --ca-issuers-url URL|none`"
        }
        CaError::InvalidRequest { field: "--out", .. } => {
            "give --out PREFIX, e.g. --out certs/www or a directory ending in /"
        }
        _ => return None,
    };
    Some(hint.into())
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    match &cli.command {
        Command::Init(args) => init(cli, args, now),
        Command::Issue(args) => issue(cli, args, now),
        Command::Set(args) => set(cli, args),
        Command::Export(args) => export(cli, args),
        Command::Renew(args) => renew(cli, args, now),
        Command::Revoke(args) => revoke(cli, args, now),
        Command::Crl(args) => crl(cli, args, now),
        Command::List(args) => list(cli, args, now),
        Command::Backup(args) => backup(cli, args),
        Command::MoveStore => move_store(cli),
        Command::Show(args) => show(args),
        Command::Verify(args) => verify(cli, args, now),
        Command::Serve(args) => {
            let ca = open_ca(cli, &cli.dir)?;
            serve::run(ca, args, location(cli)?)
        }
    }
}

/// The `-` that stands for standard input or output.
fn is_stdio(path: &Path) -> bool {
    path == Path::new("-")
}

/// A lifetime of `n` days. The parsers keep `n` in range; a zero still says so.
fn days(n: u32) -> Result<Duration, CliError> {
    if n == 0 {
        return Err(CliError::usage("the lifetime must be at least one day"));
    }
    Ok(Duration::from_secs(u64::from(n) * 86_400))
}

/// Text from a certificate, CSR, CRL or the database, as text output shows it: control, bidi
/// and invisible characters escaped (`--json` output keeps it raw).
fn shown(text: &str) -> String {
    tessera::cli::printable(text)
}

/// A subject as printed: `(empty subject)` for a server certificate named by an IP address,
/// which carries its name in the subjectAltName only.
fn subject_shown(subject: &str) -> String {
    if subject.is_empty() {
        "(empty subject)".into()
    } else {
        shown(subject)
    }
}

/// A serial number as `ca revoke` takes it (see [`Serial`]'s `FromStr`: hex digits, optionally
/// separated by colons, at most 20 octets, RFC 5280 §4.1.2.2); a usage error otherwise.
fn parse_serial(text: &str) -> Result<Serial, CliError> {
    text.parse().map_err(|e: pki::SerialError| {
        CliError::usage(e.to_string())
            .with_hint("give the serial in hex as `ca list` prints it, e.g. 3f9a0c… or 3f:9a:0c:…")
    })
}

/// The files that hold a CA's state. Each must be a regular file (or a link to one): reading a
/// FIFO or a device would block or never end.
const STATE_FILES: [&str; 8] = [
    "ca.pem",
    "ca.key",
    "chain.pem",
    "crl.pem",
    "db.json",
    "ca.db",
    "store.json",
    "urls.json",
];

/// Refuses a CA directory whose state files include something other than a regular file.
fn check_state_files(dir: &Path) -> Result<(), CliError> {
    for name in STATE_FILES {
        let path = dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            continue;
        }
        let kind = file_kind(&meta);
        return Err(CliError::failure(format!(
            "{} is {kind}, not a regular file; refusing to read it",
            path.display()
        ))
        .with_hint("a CA's state files are plain files: restore this one from a backup"));
    }
    Ok(())
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// A warning on stderr, unless `--quiet`.
fn warn(cli: &Cli, message: &str) {
    if !cli.quiet {
        tessera::errln!("{TOOL}: warning: {}", tessera::cli::printable(message));
    }
}

/// A success summary on stdout, unless `--quiet`.
fn summary(cli: &Cli, message: &str) -> Result<(), CliError> {
    if !cli.quiet {
        tessera::outln!("{message}")?;
    }
    Ok(())
}

/// `ca renew CERT`: a new certificate like CERT, written as `ca issue` writes one.
fn renew(cli: &Cli, args: &RenewArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    use tessera::cli::FileArg;

    let certificate = pki::pem::parse_certificates(&read_input(&args.cert)?, &display_name(&args.cert))?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::failure(format!("{} holds no certificate", display_name(&args.cert))))?;
    let common_name = || CertificateInfo::from_der(&certificate).map(|info| info.name());
    let prefix = match &args.out {
        Some(out) if is_stdio(out) => {
            return Err(CliError::usage(
                "--out takes a file prefix: `ca renew` writes several files, so - cannot stand for stdout",
            )
            .into());
        }
        Some(out) => CertificateAuthority::output_prefix(&cli.dir, Some(out), &common_name()?)?,
        None => CertificateAuthority::renewal_prefix(&cli.dir, &args.cert, &common_name()?, now)?,
    };
    let outputs: Vec<PathBuf> = [".pem", ".key", ".chain.pem"]
        .iter()
        .map(|suffix| {
            let mut path = prefix.as_os_str().to_owned();
            path.push(suffix);
            PathBuf::from(path)
        })
        .collect();
    let mut inputs = vec![FileArg::new("the certificate (CERT)", &args.cert)];
    if let Some(key) = &args.reuse_key {
        inputs.push(FileArg::new("the key (--reuse-key)", key));
    }
    if let Some(file) = &args.key_passphrase_file {
        inputs.push(FileArg::new("the key passphrase file (--key-passphrase-file)", file));
    }
    if let Some(file) = &cli.passphrase_file {
        inputs.push(FileArg::new("the passphrase file (--passphrase-file)", file));
    }
    let output_args: Vec<FileArg<'_>> = outputs
        .iter()
        .map(|path| FileArg::new("an output (PREFIX.pem, PREFIX.key, PREFIX.chain.pem)", path))
        .collect();
    tessera::cli::ensure_distinct(&inputs, &output_args)?;
    tessera::cli::ensure_one_stdin(&[
        ("CERT", Some(args.cert.as_path())),
        ("--passphrase-file", cli.passphrase_file.as_deref()),
        ("--key-passphrase-file", args.key_passphrase_file.as_deref()),
    ])?;
    let reuse_key = match &args.reuse_key {
        Some(path) => {
            let passphrase = tessera::cli::passphrase_for_key_given_by(
                path,
                args.key_passphrase_file.as_deref(),
                "--key-passphrase-file",
                &format!("the key {}", path.display()),
            )?;
            Some(pki::PrivateKey::load(path, passphrase.as_ref())?)
        }
        None => None,
    };
    let key_passphrase = match (&args.reuse_key, &args.key_passphrase_file) {
        (None, Some(file)) => Some(read_passphrase(Some(file), "the new key", false)?.0),
        _ => None,
    };
    let ca = open_ca(cli, &cli.dir)?;
    let renewed = ca.renew_to(
        &certificate,
        reuse_key.as_ref(),
        &prefix,
        key_passphrase.as_ref(),
        now,
        &mut |leftover| {
            warn(
                cli,
                &format!(
                    "removed {}, left by an interrupted `ca issue` (certificate {} was recorded but never written)",
                    leftover.path.display(),
                    leftover.serial
                ),
            );
        },
    );
    let (renewal, issued, files) = match (renewed, &args.reuse_key) {
        (Err(CaError::Pki(PkiError::Malformed { what, .. })), Some(path)) if what == tessera::ca::REUSED_KEY => {
            return Err(CliError::failure(format!(
                "the key to reuse (--reuse-key) {} is not the key of the certificate {}",
                path.display(),
                display_name(&args.cert)
            ))
            .with_hint(
                "give the key the certificate was issued for (PREFIX.key beside PREFIX.pem), or leave out \
                 --reuse-key to renew with a new key",
            )
            .into());
        }
        (renewed, _) => renewed?,
    };
    if renewal.shortened {
        warn(
            cli,
            &format!(
                "lifetime shortened to end with the CA certificate ({})",
                rfc3339(issued.info.not_after)
            ),
        );
    }
    if args.json {
        #[derive(Serialize)]
        struct Renewed<'a> {
            #[serde(flatten)]
            created: Created<'a>,
            renewed: &'a Serial,
        }
        tessera::cli::print_json(&Renewed {
            created: Created {
                certificate: &issued.info,
                files: &files,
                encrypted_key: files.key.is_some() && key_passphrase.is_some(),
                clamped: renewal.shortened,
            },
            renewed: &renewal.record.serial,
        })?;
    } else {
        tessera::outln!(
            "renewed {} as {} certificate \"{}\" serial {}",
            renewal.record.serial,
            renewal.record.profile,
            subject_shown(&issued.info.subject),
            issued.info.serial
        )?;
        if !issued.info.sans.is_empty() {
            tessera::outln!("  names:       {}", shown(&join(&issued.info.sans)))?;
        }
        tessera::outln!("  valid until: {}", rfc3339(issued.info.not_after))?;
        tessera::outln!("  certificate: {}", files.certificate.display())?;
        match (&files.key, &args.reuse_key) {
            (Some(key), _) => tessera::outln!("  key:         {}", key.display())?,
            (None, Some(reused)) => tessera::outln!("  key:         {} (reused)", reused.display())?,
            (None, None) => {}
        }
        tessera::outln!("  chain:       {}", files.chain.display())?;
    }
    Ok(exit::OK)
}

/// `ca export PREFIX --pkcs12 OUT`: the certificate, chain and key as PKCS#12.
fn export(cli: &Cli, args: &ExportArgs) -> anyhow::Result<u8> {
    use tessera::ca::pkcs12::{Exportable, Pkcs12Profile, prefix_files};
    use tessera::cli::FileArg;

    let to_stdout = is_stdio(&args.pkcs12);
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(CliError::usage("--pkcs12 - would write a binary file to the terminal")
            .with_hint("redirect stdout to a file or a pipe, or give --pkcs12 OUT")
            .into());
    }
    let (cert, key, chain) = prefix_files(&args.prefix);
    let mut inputs = vec![
        FileArg::new("the certificate (PREFIX.pem)", &cert),
        FileArg::new("the key (PREFIX.key)", &key),
        FileArg::new("the chain (PREFIX.chain.pem)", &chain),
    ];
    if let Some(file) = &cli.passphrase_file {
        inputs.push(FileArg::new("the passphrase file (--passphrase-file)", file));
    }
    if let Some(file) = &args.key_passphrase_file {
        inputs.push(FileArg::new("the key passphrase file (--key-passphrase-file)", file));
    }
    if !to_stdout {
        tessera::cli::ensure_distinct(&inputs, &[FileArg::new("the output (--pkcs12)", &args.pkcs12)])?;
        if args.pkcs12.symlink_metadata().is_ok() && !tessera::ca::pkcs12::writes_directly(&args.pkcs12) {
            return Err(PkiError::AlreadyExists {
                path: args.pkcs12.clone(),
            }
            .into());
        }
        if let Some(parent) = args.pkcs12.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(CliError::failure(format!(
                "cannot write {}: the directory {} does not exist",
                args.pkcs12.display(),
                parent.display()
            ))
            .with_hint("create the directory first (mkdir -p), or give --pkcs12 a file in an existing directory")
            .into());
        }
    }
    tessera::cli::ensure_one_stdin(&[
        ("--passphrase-file", cli.passphrase_file.as_deref()),
        ("--key-passphrase-file", args.key_passphrase_file.as_deref()),
    ])?;
    let key_passphrase = tessera::cli::passphrase_for_key_given_by(
        &key,
        args.key_passphrase_file.as_deref(),
        "--key-passphrase-file",
        &format!("the key {}", key.display()),
    )?;
    let exportable = Exportable::load(&args.prefix, key_passphrase.as_ref())?;
    let (passphrase, _) = read_passphrase(cli.passphrase_file.as_deref(), "the PKCS#12 file", true)?;
    let profile = if args.legacy {
        Pkcs12Profile::Legacy
    } else {
        Pkcs12Profile::Modern
    };
    let der = exportable.to_pkcs12(&passphrase, profile)?;
    if to_stdout {
        tessera::cli::write_stdout_bytes(&der)?;
        return Ok(exit::OK);
    }
    tessera::ca::pkcs12::create_private(&args.pkcs12, &der)?;
    // Written into standard output (`/dev/stdout`, `/dev/fd/1`): the status line goes to
    // standard error, never into the PKCS#12 data.
    let into_stdout = tessera::cli::is_standard_output(&args.pkcs12);
    let report = |message: &str| -> Result<(), CliError> {
        if into_stdout {
            if !cli.quiet {
                tessera::cli::write_stderr(format_args!("{message}\n"));
            }
            Ok(())
        } else {
            summary(cli, message)
        }
    };
    report(&format!(
        "wrote {} ({}, {} certificate(s) and the key of \"{}\")",
        args.pkcs12.display(),
        if args.legacy {
            "PKCS#12, legacy 3DES and SHA-1 MAC"
        } else {
            "PKCS#12, AES-256 and PBKDF2-SHA-256, SHA-256 MAC"
        },
        exportable.chain.len(),
        subject_shown(&exportable.info.subject)
    ))?;
    Ok(exit::OK)
}

/// `ca set`: shows the CA's URLs, after changing those given (no key needed).
fn set(cli: &Cli, args: &SetArgs) -> anyhow::Result<u8> {
    check_state_files(&cli.dir)?;
    tessera::ca::read_ca_certificates(&cli.dir)?;
    let changed = args.crl_url.is_some() || args.ocsp_url.is_some() || args.ca_issuers_url.is_some();
    // Every URL given: the file as found does not matter (a damaged one is replaced).
    let replace = args.crl_url.is_some() && args.ocsp_url.is_some() && args.ca_issuers_url.is_some();
    let urls = DistributionUrls::update(&cli.dir, replace, |urls| {
        for (new, old) in [
            (&args.crl_url, &mut urls.crl),
            (&args.ocsp_url, &mut urls.ocsp),
            (&args.ca_issuers_url, &mut urls.ca_issuers),
        ] {
            if let Some(new) = new {
                old.clone_from(&new.0);
            }
        }
        changed
    })?;
    if args.json {
        tessera::cli::print_json(&urls)?;
    } else {
        if changed {
            summary(
                cli,
                &format!(
                    "changed the URLs of {}; certificates issued from now on carry them",
                    cli.dir.display()
                ),
            )?;
        }
        let show = |url: &Option<String>| url.clone().unwrap_or_else(|| "(none)".into());
        tessera::outln!("crl-url:        {}", show(&urls.crl))?;
        tessera::outln!("ocsp-url:       {}", show(&urls.ocsp))?;
        tessera::outln!("ca-issuers-url: {}", show(&urls.ca_issuers))?;
    }
    Ok(exit::OK)
}

fn revoke(cli: &Cli, args: &RevokeArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    let serial = parse_serial(&args.serial)?;
    let lifetime = days(args.crl_days)?;
    let ca = open_ca(cli, &cli.dir)?;
    let reason = args.reason.unwrap_or(RevocationReason::Unspecified);
    let revoked = ca.revoke_certificate(&serial, reason, now, lifetime)?;
    let info = CrlInfo::from_der(&revoked.crl)?;
    if args.json {
        tessera::cli::print_json(&RevokeOutput {
            serial: &revoked.serial,
            revoked_at: revoked.revocation.at,
            reason: revoked.revocation.reason,
            already_revoked: !revoked.newly_revoked,
            crl: &info,
        })?;
    } else if revoked.newly_revoked {
        summary(
            cli,
            &format!(
                "revoked {} ({}); wrote {} (CRL number {}, {} revoked)",
                revoked.serial,
                revoked.revocation.reason,
                ca.crl_path().display(),
                info.crl_number.as_deref().unwrap_or("-"),
                info.revoked.len()
            ),
        )?;
    } else {
        summary(
            cli,
            &format!(
                "{} was already revoked on {} ({}); nothing changed, and {} lists it",
                revoked.serial,
                rfc3339(revoked.revocation.at),
                revoked.revocation.reason,
                ca.crl_path().display()
            ),
        )?;
    }
    Ok(exit::OK)
}

fn crl(cli: &Cli, args: &CrlArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    let to_stdout = args.out.as_deref().is_some_and(is_stdio);
    if to_stdout && args.json {
        return Err(CliError::usage("--json and --out - both write to stdout; choose one").into());
    }
    let lifetime = days(args.crl_days)?;
    if let Some(out) = &args.out {
        same_file::crl(cli, out)?;
    }
    let ca = open_ca(cli, &cli.dir)?;
    let der = ca.write_crl(now, lifetime)?;
    let pem = pki::pem::to_pem(pki::pem::X509_CRL, &der);
    let info = CrlInfo::from_der(&der)?;
    match &args.out {
        Some(_) if to_stdout => {
            tessera::cli::write_stdout_bytes(pem.as_bytes())?;
            return Ok(exit::OK);
        }
        Some(out) => tessera::cli::write_atomic(out, pem.as_bytes())
            .with_context(|| format!("cannot write {}", out.display()))?,
        None => {}
    }
    if args.json {
        tessera::cli::print_json(&info)?;
    } else {
        let also = args
            .out
            .as_ref()
            .map(|out| format!(" and {}", out.display()))
            .unwrap_or_default();
        summary(
            cli,
            &format!(
                "wrote CRL number {} with {} revoked certificate(s) to {}{also}",
                info.crl_number.as_deref().unwrap_or("-"),
                info.revoked.len(),
                ca.crl_path().display()
            ),
        )?;
    }
    Ok(exit::OK)
}

/// Opens a CA, asking for its passphrase only if its key is encrypted.
fn open_ca(cli: &Cli, dir: &Path) -> anyhow::Result<CertificateAuthority> {
    open_ca_with(cli, dir, cli.passphrase_file.as_deref())
}

fn open_ca_with(cli: &Cli, dir: &Path, passphrase_file: Option<&Path>) -> anyhow::Result<CertificateAuthority> {
    check_state_files(dir)?;
    let location = location(cli)?;
    // A CA whose state is missing is refused before anyone is asked for a passphrase.
    let store = tessera::ca::store::open_dir(dir, location.as_ref())?;
    let passphrase = tessera::cli::passphrase_for_key(
        &CertificateAuthority::key_path(dir),
        passphrase_file,
        &format!("the CA key in {}", dir.display()),
    )?;
    Ok(CertificateAuthority::open_with(dir, passphrase.as_ref(), store)?)
}

/// The store `--db` (or `TESSERA_DB`) names, if any.
fn location(cli: &Cli) -> Result<Option<Location>, CliError> {
    cli.db
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .map(Location::parse)
        .transpose()
        .map_err(|e| {
            CliError::usage(e.to_string())
                .with_hint("use --db postgres://USER@HOST:PORT/DB, or leave it out for DIR/ca.db")
        })
}

fn init(cli: &Cli, args: &InitArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    tessera::cli::ensure_one_stdin(&[
        ("--passphrase-file", cli.passphrase_file.as_deref()),
        ("--parent-passphrase-file", args.parent_passphrase_file.as_deref()),
    ])?;
    let mut request = InitRequest::new(args.name.clone().unwrap_or_else(|| {
        if args.parent.is_some() {
            "Tessera Intermediate CA"
        } else {
            "Tessera Root CA"
        }
        .to_string()
    }));
    request.key_algorithm = args.key_type;
    request.lifetime = args.days.map(days).transpose()?;
    request.path_len = args.path_len;
    request.permitted_dns = args.permit_dns.clone();
    request.permitted_email = args.permit_email.clone();
    request.excluded_dns = args.exclude_dns.clone();
    request.urls = DistributionUrls {
        crl: args.crl_url.clone(),
        ocsp: args.ocsp_url.clone(),
        ca_issuers: args.ca_issuers_url.clone(),
    };
    if let Some(location) = location(cli)? {
        request.store = location;
    }
    for cidr in &args.permit_ip {
        request.permitted_ip.push(parse_cidr(cidr)?);
    }
    same_file::init(cli, args)?;
    // Flag values that can never make a usable CA are usage errors, found before any prompt.
    request.validate().map_err(|e| match e {
        CaError::InvalidRequest { field, reason } => {
            let error = CliError::usage(format!("--{field}: {reason}"));
            match field {
                "permit-email" => error.with_hint(
                    "leave out --permit-email; constrain DNS names and addresses with --permit-dns and --permit-ip",
                ),
                _ => error,
            }
            .into()
        }
        other => anyhow::Error::from(other),
    })?;
    if cli.dir.exists() && !cli.dir.is_dir() {
        return Err(
            CliError::failure(format!("{} exists and is not a directory", cli.dir.display()))
                .with_hint("choose another --dir (a new or empty directory)")
                .into(),
        );
    }
    if cli.dir.join("ca.pem").exists() {
        return Err(CaError::AlreadyInitialised { dir: cli.dir.clone() }.into());
    }
    let parent = match &args.parent {
        Some(dir) => Some(open_ca_with(
            cli,
            dir,
            args.parent_passphrase_file
                .as_deref()
                .or(cli.passphrase_file.as_deref()),
        )?),
        None => None,
    };
    let passphrase: Option<Passphrase> = if args.no_passphrase {
        None
    } else {
        Some(read_passphrase(cli.passphrase_file.as_deref(), "the new CA key", true)?.0)
    };
    let ca = match &parent {
        Some(parent) => parent.init_intermediate(&cli.dir, &request, passphrase.as_ref(), now)?,
        None => CertificateAuthority::init(&cli.dir, &request, passphrase.as_ref(), now)?,
    };
    if args.json {
        let clamped = match &parent {
            Some(parent) => args.days.is_none() && ca.info().not_after == parent.info().not_after,
            None => false,
        };
        tessera::cli::print_json(&Created {
            certificate: ca.info(),
            files: &IssuedFiles {
                certificate: ca.dir().join("ca.pem"),
                key: Some(CertificateAuthority::key_path(ca.dir())),
                chain: ca.dir().join("chain.pem"),
            },
            encrypted_key: passphrase.is_some(),
            clamped,
        })?;
    } else {
        let kind = if parent.is_some() { "intermediate" } else { "root" };
        tessera::outln!(
            "created {kind} CA \"{}\" in {}",
            shown(&ca.info().subject),
            ca.dir().display()
        )?;
        tessera::outln!("  certificate: {}", ca.dir().join("ca.pem").display())?;
        tessera::outln!(
            "  key:         {} ({})",
            ca.dir().join("ca.key").display(),
            if passphrase.is_some() {
                "encrypted"
            } else {
                "NOT encrypted"
            }
        )?;
        tessera::outln!("  valid until: {}", rfc3339(ca.info().not_after))?;
        if let Some(parent) = &parent {
            tessera::outln!("  issued by:   {} (recorded in its database)", parent.dir().display())?;
        }
    }
    Ok(exit::OK)
}

fn parse_cidr(text: &str) -> Result<(std::net::IpAddr, u8), CliError> {
    let bad = || {
        CliError::usage(format!(
            "--permit-ip \"{text}\" is not an address range like 10.0.0.0/8"
        ))
    };
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((addr, prefix))
}

fn issue(cli: &Cli, args: &IssueArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    let mut request = IssueRequest::new(args.profile, args.name.clone());
    let mut sans = Vec::new();
    for san in &args.san {
        sans.push(SubjectAltName::parse(san).map_err(|e| {
            CliError::usage(format!("--san {}", e.reason)).with_hint(
                "give dns:HOST (ASCII, xn-- for internationalised names), ip:ADDR, email:LOCAL@DOMAIN or uri:SCHEME:…",
            )
        })?);
    }
    let (sans, repeated) = SubjectAltName::dedup(sans);
    for name in &repeated {
        warn(
            cli,
            &format!("--san {name} is given more than once; the certificate names it once"),
        );
    }
    request.sans = sans;
    request.lifetime = match (args.days, args.hours) {
        (Some(d), _) => Some(days(d)?),
        (None, Some(0)) => return Err(CliError::usage("--hours must be at least 1").into()),
        (None, Some(h)) => Some(Duration::from_secs(u64::from(h) * 3600)),
        (None, None) => None,
    };
    request.key_algorithm = args.key_type;
    if args.out.as_deref().is_some_and(is_stdio) {
        return Err(CliError::usage(
            "--out takes a file prefix: `ca issue` writes three files, so - cannot stand for stdout",
        )
        .with_hint("give --out PREFIX, e.g. --out certs/www or a directory ending in /")
        .into());
    }
    // The output names, before anything is asked or issued.
    let prefix = CertificateAuthority::output_prefix(&cli.dir, args.out.as_deref(), &args.name)?;
    same_file::issue(cli, args, &prefix)?;
    tessera::cli::ensure_one_stdin(&[
        ("--csr", args.csr.as_deref()),
        ("--passphrase-file", cli.passphrase_file.as_deref()),
        ("--key-passphrase-file", args.key_passphrase_file.as_deref()),
    ])?;
    if let Some(csr) = &args.csr {
        request.csr = Some(read_input(csr)?);
    }
    let key_passphrase = match &args.key_passphrase_file {
        Some(file) => Some(read_passphrase(Some(file), "the new key", false)?.0),
        None => None,
    };
    let ca = open_ca(cli, &cli.dir)?;
    let (issued, files) = ca.issue_to(&request, &prefix, key_passphrase.as_ref(), now, &mut |leftover| {
        warn(
            cli,
            &format!(
                "removed {}, left by an interrupted `ca issue` (certificate {} was recorded but never written)",
                leftover.path.display(),
                leftover.serial
            ),
        );
    })?;
    if issued.clamped {
        warn(
            cli,
            &format!(
                "lifetime shortened to end with the CA certificate ({})",
                rfc3339(issued.info.not_after)
            ),
        );
    }
    if args.json {
        tessera::cli::print_json(&Created {
            certificate: &issued.info,
            files: &files,
            encrypted_key: files.key.is_some() && key_passphrase.is_some(),
            clamped: issued.clamped,
        })?;
    } else {
        tessera::outln!(
            "issued {} certificate \"{}\" serial {}",
            args.profile,
            subject_shown(&issued.info.subject),
            issued.info.serial
        )?;
        if !issued.info.sans.is_empty() {
            tessera::outln!("  names:       {}", shown(&join(&issued.info.sans)))?;
        }
        tessera::outln!("  valid until: {}", rfc3339(issued.info.not_after))?;
        tessera::outln!("  certificate: {}", files.certificate.display())?;
        if let Some(key) = &files.key {
            tessera::outln!("  key:         {}", key.display())?;
        }
        tessera::outln!("  chain:       {}", files.chain.display())?;
    }
    Ok(exit::OK)
}

/// Names (SANs) as text output lists them: `dns:a.test, ip:10.0.0.1`.
fn join(names: &[SubjectAltName]) -> String {
    names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn list(cli: &Cli, args: &ListArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    check_state_files(&cli.dir)?;
    let mut store = tessera::ca::store::open_dir(&cli.dir, location(cli)?.as_ref())?;
    match tessera::ca::crl_status(&cli.dir, store.as_mut()) {
        Ok(CrlStatus::Stale { reason }) => warn(
            cli,
            &format!("{reason}; the next `ca crl` (or any command that signs) rewrites it"),
        ),
        Ok(CrlStatus::Damaged { reason }) => {
            warn(cli, &format!("{reason}; the next `ca crl` or `ca revoke` rewrites it"))
        }
        Ok(_) => {}
        Err(e) => warn(cli, &e.to_string()),
    }
    let filter = ListFilter {
        status: args.status.map(|s| match s {
            ListStatus::Valid => Status::Valid,
            ListStatus::Revoked => Status::Revoked,
            ListStatus::Expired => Status::Expired,
        }),
        expiring_within: args.expiring_within,
        limit: args.limit,
        now,
    };
    // Streamed: one record at a time from the store to stdout.
    let mut printed = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    if args.json {
        tessera::outln!("[")?;
    }
    let result = store.list(&filter, &mut |r| {
        let entry = ListEntry::new(&r, now);
        let written = if args.json {
            list_json(&entry, printed == 0)
        } else {
            list_text(&entry, printed == 0)
        };
        printed += 1;
        written.map_err(|e| {
            failure = Some(e);
            CaError::InvalidRequest {
                field: "output",
                reason: "stopped".into(),
            }
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    result?;
    if args.json {
        tessera::outln!("]")?;
    } else if printed == 0 {
        tessera::outln!(
            "{}",
            if args.status.is_some() || args.expiring_within.is_some() {
                "no certificates match"
            } else {
                "no certificates issued yet"
            }
        )?;
    }
    Ok(exit::OK)
}

fn list_json(entry: &ListEntry<'_>, first: bool) -> anyhow::Result<()> {
    tessera::outln!("{}", entry.to_json_item(first)?)?;
    Ok(())
}

fn list_text(e: &ListEntry<'_>, first: bool) -> anyhow::Result<()> {
    if first {
        tessera::outln!(
            "{:<32}  {:<12}  {:<8}  {:<20}  SUBJECT / NAMES",
            "SERIAL",
            "PROFILE",
            "STATUS",
            "NOT AFTER"
        )?;
    }
    let names = if e.sans.is_empty() {
        String::new()
    } else {
        format!(" [{}]", join(e.sans))
    };
    tessera::outln!(
        "{:<32}  {:<12}  {:<8}  {:<20}  {}{}",
        e.serial,
        e.profile,
        e.status.name(),
        rfc3339(e.not_after),
        shown(e.subject),
        shown(&names)
    )?;
    Ok(())
}

fn backup(cli: &Cli, args: &BackupArgs) -> anyhow::Result<u8> {
    if is_stdio(&args.out) {
        return Err(CliError::usage("--out takes a file: an SQLite copy cannot go to stdout").into());
    }
    tessera::ca::store::backup(&cli.dir, location(cli)?.as_ref(), &args.out)?;
    summary(
        cli,
        &format!(
            "wrote a consistent copy of {} to {}",
            cli.dir.join("ca.db").display(),
            args.out.display()
        ),
    )?;
    Ok(exit::OK)
}

/// `ca move-store`: the SQLite store into the PostgreSQL store `--db` names.
fn move_store(cli: &Cli) -> anyhow::Result<u8> {
    let Some(Location::Postgres(url)) = location(cli)? else {
        return Err(CliError::usage("name the PostgreSQL store to move the CA's state into")
            .with_hint("use --db postgres://USER@HOST:PORT/DB (or TESSERA_DB)")
            .into());
    };
    let report = tessera::ca::store::move_to_postgres(&cli.dir, &url)?;
    let what = if report.resumed {
        "finished a move cut short: PostgreSQL already held exactly this store".to_string()
    } else {
        let rows: Vec<String> = report
            .copied
            .iter()
            .filter(|(table, _)| *table != "issuers")
            .map(|(table, rows)| format!("{rows} {}", table.replace('_', " ")))
            .collect();
        format!("copied {}", rows.join(", "))
    };
    summary(
        cli,
        &format!(
            "moved the state of the CA in {} to {}: {what}. Give its ca commands --db (or TESSERA_DB) from \
             now on; {} is kept, read-only",
            cli.dir.display(),
            report.target,
            cli.dir.join("ca.db").display()
        ),
    )?;
    Ok(exit::OK)
}

/// Reads a file, or standard input for `-` (read once and kept: see `pki::pem::read_file`).
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = pki::pem::read_file(path)?;
    if is_stdio(path) && bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CliError::failure("standard input is empty")
            .with_hint("pipe a PEM or DER certificate or CRL into it, or give a file name")
            .into());
    }
    Ok(bytes)
}

fn show(args: &ShowArgs) -> anyhow::Result<u8> {
    let bytes = read_input(&args.file)?;
    match pki::read_certificates_or_crls(&bytes, &args.file.display().to_string())? {
        Inspected::Crls(crls) => {
            let crls: Vec<CrlInfo> = crls.iter().map(|d| CrlInfo::from_der(d)).collect::<Result<_, _>>()?;
            render(args.json, &crls, CrlInfo::to_text)
        }
        Inspected::Certificates(certs) => {
            let infos: Vec<CertificateInfo> = certs
                .iter()
                .map(|der| CertificateInfo::from_der(der))
                .collect::<Result<_, _>>()?;
            render(args.json, &infos, CertificateInfo::to_text)
        }
    }
}

/// One item: an object (or text block); several: an array (or blocks separated by blank lines).
fn render<T: Serialize>(json: bool, items: &[T], text: fn(&T) -> String) -> anyhow::Result<u8> {
    if json {
        match items {
            [one] => tessera::cli::print_json(one)?,
            many => tessera::cli::print_json(&many)?,
        }
    } else {
        // Certificates from anywhere may carry control characters in their names.
        let blocks: Vec<String> = items.iter().map(text).collect();
        for line in blocks.join("\n").lines() {
            tessera::outln!("{}", tessera::cli::printable(line))?;
        }
    }
    Ok(exit::OK)
}

fn verify(cli: &Cli, args: &VerifyArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    let time = whole_seconds(args.at.unwrap_or(now));
    let inputs = std::iter::once(&args.cert)
        .chain([&args.root])
        .chain(args.chain.iter())
        .chain(args.crl.iter());
    if inputs.filter(|p| is_stdio(p)).count() > 1 {
        return Err(CliError::usage("only one input can be read from stdin (-)").into());
    }
    let certificates = |path: &Path| -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
        let bytes = read_input(path)?;
        Ok(pki::pem::parse_certificates(&bytes, &display_name(path))?)
    };
    let mut certs = certificates(&args.cert)?;
    if certs.is_empty() {
        return Err(CliError::failure(format!("{} holds no certificate", display_name(&args.cert))).into());
    }
    let end_entity = certs.remove(0);
    let mut intermediates = certs;
    if let Some(chain) = &args.chain {
        intermediates.extend(certificates(chain)?);
    }
    // Standard input is read once and kept (see `pki::pem::read_file`): an empty one is
    // refused here, before the trust store reads it again.
    for path in std::iter::once(&args.root).chain(&args.crl).filter(|p| is_stdio(p)) {
        read_input(path)?;
    }
    let store = TrustStore::load(&args.root, &args.crl)?;
    let mut request = VerifyRequest::new(args.usage, time).with_key_usage(args.key_usage.iter().copied());
    request.name = args.name.clone();
    request.max_depth = args.max_depth;
    let outcome = store.verify(&end_entity, &intermediates, &request);
    let mut output = VerifyOutput {
        trusted: outcome.is_ok(),
        usage: args.usage.to_string(),
        name: args.name.clone(),
        time,
        reason: None,
        path: Vec::new(),
    };
    match outcome {
        Ok(chain) => {
            for der in chain.path() {
                let info = CertificateInfo::from_der(der)?;
                output.path.push(PathEntry {
                    subject: info.subject,
                    serial: info.serial,
                    not_after: info.not_after,
                });
            }
            if args.json {
                tessera::cli::print_json(&output)?;
            } else if !cli.quiet {
                tessera::outln!(
                    "{}: trusted for {} use at {}",
                    display_name(&args.cert),
                    args.usage,
                    rfc3339(time)
                )?;
                for (depth, entry) in output.path.iter().enumerate() {
                    tessera::outln!(
                        "  {depth}: {} (serial {}, until {})",
                        subject_shown(&entry.subject),
                        entry.serial,
                        rfc3339(entry.not_after)
                    )?;
                }
            }
            Ok(exit::OK)
        }
        Err(err) if err.is_rejection() => {
            if args.json {
                output.reason = Some(err.to_string());
                tessera::cli::print_json(&output)?;
                Ok(tessera::cli::verdict(&err, Role::Judge, |_| None).code)
            } else {
                Err(anyhow::Error::new(err).context(format!("{} is not trusted", display_name(&args.cert))))
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// How an input is named in messages: `-` is standard input.
fn display_name(path: &Path) -> String {
    if is_stdio(path) {
        "standard input".into()
    } else {
        path.display().to_string()
    }
}

/// No output may be one of a command's inputs, or a file of a CA: refused (exit 2) before
/// anything is written.
mod same_file {
    use std::path::{Path, PathBuf};

    use tessera::cli::{CliError, FileArg, ensure_distinct};

    use crate::cli::{Cli, InitArgs, IssueArgs};

    /// The files of a CA directory.
    const CA_FILES: [&str; 8] = [
        "ca.pem",
        "ca.key",
        "chain.pem",
        "crl.pem",
        "db.json",
        "ca.db",
        "store.json",
        "urls.json",
    ];

    fn ca_files(dir: &Path) -> Vec<(String, PathBuf)> {
        let roles = [
            "certificate",
            "key",
            "chain",
            "CRL",
            "database",
            "database",
            "store record",
            "URLs",
        ];
        CA_FILES
            .iter()
            .zip(roles)
            .map(|(name, role)| (format!("the CA's {role}"), dir.join(name)))
            .collect()
    }

    fn file_args(files: &[(String, PathBuf)]) -> Vec<FileArg<'_>> {
        files.iter().map(|(role, path)| FileArg::new(role, path)).collect()
    }

    fn passphrase_files<'a>(cli: &'a Cli, extra: &[(&'a str, &'a Option<PathBuf>)]) -> Vec<FileArg<'a>> {
        let mut inputs = Vec::new();
        if let Some(file) = &cli.passphrase_file {
            inputs.push(FileArg::new("the passphrase file (--passphrase-file)", file));
        }
        for (role, file) in extra {
            if let Some(file) = file {
                inputs.push(FileArg::new(role, file));
            }
        }
        inputs
    }

    /// `ca init`: the new CA's files are outputs; passphrase files are inputs.
    pub(crate) fn init(cli: &Cli, args: &InitArgs) -> Result<(), CliError> {
        let inputs = passphrase_files(
            cli,
            &[(
                "the parent's passphrase file (--parent-passphrase-file)",
                &args.parent_passphrase_file,
            )],
        );
        let outputs = ca_files(&cli.dir);
        ensure_distinct(&inputs, &file_args(&outputs))
    }

    /// `ca issue`: PREFIX.pem, PREFIX.key and PREFIX.chain.pem are outputs; the CSR, passphrase
    /// files and the CA's own files are inputs.
    pub(crate) fn issue(cli: &Cli, issue: &IssueArgs, prefix: &Path) -> Result<(), CliError> {
        let mut inputs = passphrase_files(
            cli,
            &[
                ("the request (--csr)", &issue.csr),
                (
                    "the key passphrase file (--key-passphrase-file)",
                    &issue.key_passphrase_file,
                ),
            ],
        );
        let ca = ca_files(&cli.dir);
        inputs.extend(file_args(&ca));
        let outputs: Vec<(String, PathBuf)> = [".pem", ".key", ".chain.pem"]
            .iter()
            .map(|suffix| {
                let mut path = prefix.as_os_str().to_owned();
                path.push(suffix);
                (format!("the output PREFIX{suffix} (--out)"), PathBuf::from(path))
            })
            .collect();
        ensure_distinct(&inputs, &file_args(&outputs))
    }

    /// `ca crl --out FILE`: FILE may be the CA's own crl.pem (the same CRL), but no other file
    /// of this CA or of any other CA directory, and no passphrase file.
    pub(crate) fn crl(cli: &Cli, out: &Path) -> Result<(), CliError> {
        let mut inputs = passphrase_files(cli, &[]);
        let own: Vec<(String, PathBuf)> = ca_files(&cli.dir)
            .into_iter()
            .filter(|(_, path)| !path.ends_with("crl.pem"))
            .collect();
        inputs.extend(file_args(&own));
        let output = [FileArg::new("the output (--out)", out)];
        ensure_distinct(&inputs, &output)?;
        let Some(name) = out.file_name().and_then(|n| n.to_str()) else {
            return Ok(());
        };
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let is_ca_dir = dir.join("ca.pem").exists() && dir.join("ca.key").exists();
        let own_crl = name == "crl.pem"
            && std::fs::canonicalize(dir)
                .ok()
                .is_some_and(|d| std::fs::canonicalize(&cli.dir).ok() == Some(d));
        if CA_FILES.contains(&name) && is_ca_dir && !own_crl {
            return Err(CliError::usage(format!(
                "the output (--out) {} is a file of the CA in {}; refusing to replace it",
                out.display(),
                dir.display()
            ))
            .with_hint("write the CRL to another path; `ca crl` keeps this CA's own crl.pem up to date"));
        }
        Ok(())
    }
}
