//! `ca`: the Tessera certificate authority tool. Parses the command line, calls
//! `tessera::ca` / `tessera::pki`, renders the result.
#![forbid(unsafe_code)]

mod cli;

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

use cli::{Cli, Command, InitArgs, IssueArgs, ShowArgs, VerifyArgs};
use tessera::ca::{CaError, CertificateAuthority, Database, InitRequest, IssueRequest, SubjectAltName};
use tessera::cli::{CliError, exit, read_passphrase};
use tessera::pki::{self, CertificateInfo, CrlInfo, Passphrase, PkiError, TrustStore, VerifyRequest, rfc3339};

const TOOL: &str = "ca";

fn main() -> ExitCode {
    let cli = match tessera::cli::parse_args::<Cli>(TOOL) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    tessera::cli::init_logging(cli.quiet, cli.verbose);
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => tessera::cli::report(TOOL, err.as_ref(), |e| e.downcast_ref::<CaError>().map(classify_ca)),
    }
}

fn classify_ca(error: &CaError) -> (u8, Option<String>) {
    match error {
        CaError::Pki(pki) => tessera::cli::classify_pki(pki),
        CaError::NotACa { .. } => (
            exit::FAILURE,
            Some("create one with `ca init`, or point --dir (or TESSERA_CA_DIR) at an existing CA".into()),
        ),
        CaError::AlreadyInitialised { .. } => (exit::FAILURE, Some("choose another --dir".into())),
        CaError::OutlivesIssuer { .. } => (
            exit::REJECTED,
            Some("ask for fewer --days/--hours, or omit them to end with the CA".into()),
        ),
        CaError::Refused(PkiError::NameConstraintViolation) => (
            exit::REJECTED,
            Some("every --san must lie inside the CA's permitted names (see `ca show DIR/ca.pem`)".into()),
        ),
        CaError::Refused(_) => (exit::REJECTED, None),
        CaError::UnknownSerial { .. } => (exit::FAILURE, Some("`ca list` shows the serials this CA issued".into())),
        CaError::BadCsr { .. } => (
            exit::FAILURE,
            Some("make a request with e.g. `openssl req -new -key KEY -subj /CN=NAME -out REQ.csr`".into()),
        ),
        CaError::Database { .. } => (
            exit::FAILURE,
            Some("restore db.json from a backup; the certificates themselves are unaffected".into()),
        ),
        _ => (exit::FAILURE, None),
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    match &cli.command {
        Command::Init(args) => init(cli, args, now),
        Command::Issue(args) => issue(cli, args, now),
        Command::Revoke(args) => {
            let ca = open_ca(cli, &cli.dir)?;
            let der = ca.revoke(&args.serial, args.reason, now, days(args.crl_days)?)?;
            if !cli.quiet {
                tessera::errln!(
                    "{TOOL}: revoked {} ({}); wrote {}",
                    tessera::ca::normalise_serial(&args.serial),
                    args.reason,
                    ca.crl_path().display()
                );
            }
            if args.json {
                tessera::cli::print_json(&CrlInfo::from_der(&der)?)?;
            }
            Ok(exit::OK)
        }
        Command::Crl(args) => {
            let ca = open_ca(cli, &cli.dir)?;
            let der = ca.write_crl(now, days(args.crl_days)?)?;
            if let Some(out) = &args.out {
                tessera::cli::write_atomic(out, pki::pem::to_pem(pki::pem::X509_CRL, &der).as_bytes())
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            let info = CrlInfo::from_der(&der)?;
            if !cli.quiet {
                tessera::errln!(
                    "{TOOL}: wrote CRL number {} with {} revoked certificate(s) to {}",
                    info.crl_number.as_deref().unwrap_or("?"),
                    info.revoked.len(),
                    ca.crl_path().display()
                );
            }
            if args.json {
                tessera::cli::print_json(&info)?;
            }
            Ok(exit::OK)
        }
        Command::List(args) => list(cli, args.json, now),
        Command::Show(args) => show(args),
        Command::Verify(args) => verify(args, now),
    }
}

fn days(n: u32) -> Result<Duration, CliError> {
    if n == 0 {
        return Err(CliError::usage("the lifetime must be at least one day"));
    }
    Ok(Duration::from_secs(u64::from(n) * 86_400))
}

/// Opens a CA, asking for its passphrase only if its key is encrypted.
fn open_ca(cli: &Cli, dir: &Path) -> anyhow::Result<CertificateAuthority> {
    open_ca_with(dir, cli.passphrase_file.as_deref())
}

fn open_ca_with(dir: &Path, passphrase_file: Option<&Path>) -> anyhow::Result<CertificateAuthority> {
    tessera::ca::read_ca_certificates(dir)?;
    let passphrase = tessera::cli::passphrase_for_key(
        &CertificateAuthority::key_path(dir),
        passphrase_file,
        &format!("the CA key in {}", dir.display()),
    )?;
    Ok(CertificateAuthority::open(dir, passphrase.as_ref())?)
}

#[derive(Serialize)]
struct InitOutput<'a> {
    dir: &'a Path,
    certificate: &'a CertificateInfo,
    encrypted_key: bool,
}

fn init(cli: &Cli, args: &InitArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
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
    for cidr in &args.permit_ip {
        request.permitted_ip.push(parse_cidr(cidr)?);
    }
    if cli.dir.join("ca.pem").exists() {
        return Err(CaError::AlreadyInitialised { dir: cli.dir.clone() }.into());
    }
    let parent = match &args.parent {
        Some(dir) => Some(open_ca_with(
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
        tessera::cli::print_json(&InitOutput {
            dir: ca.dir(),
            certificate: ca.info(),
            encrypted_key: passphrase.is_some(),
        })?;
    } else {
        let kind = if parent.is_some() { "intermediate" } else { "root" };
        tessera::outln!("created {kind} CA {:?} in {}", ca.info().subject, ca.dir().display())?;
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
    let bad = || CliError::usage(format!("--permit-ip {text:?} is not an address range like 10.0.0.0/8"));
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((addr, prefix))
}

#[derive(Serialize)]
struct IssueOutput<'a> {
    #[serde(flatten)]
    certificate: &'a CertificateInfo,
    files: &'a tessera::ca::IssuedFiles,
    clamped: bool,
}

fn issue(cli: &Cli, args: &IssueArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    let mut request = IssueRequest::new(args.profile, args.name.clone());
    for san in &args.san {
        request.sans.push(SubjectAltName::parse(san)?);
    }
    request.lifetime = match (args.days, args.hours) {
        (Some(d), _) => Some(days(d)?),
        (None, Some(0)) => return Err(CliError::usage("--hours must be at least 1").into()),
        (None, Some(h)) => Some(Duration::from_secs(u64::from(h) * 3600)),
        (None, None) => None,
    };
    request.key_algorithm = args.key_type;
    if let Some(csr) = &args.csr {
        request.csr = Some(read_input(csr)?);
    }
    let key_passphrase = match &args.key_passphrase_file {
        Some(file) => Some(read_passphrase(Some(file), "the new key", false)?.0),
        None => None,
    };
    let ca = open_ca(cli, &cli.dir)?;
    let prefix = args.out.clone().unwrap_or_else(|| ca.default_prefix(&args.name));
    for suffix in [".pem", ".key", ".chain.pem"] {
        let mut p = prefix.as_os_str().to_owned();
        p.push(suffix);
        if Path::new(&p).exists() {
            return Err(CliError::failure(format!(
                "{} already exists; refusing to overwrite it",
                Path::new(&p).display()
            ))
            .with_hint("choose another --out PREFIX or remove the old files")
            .into());
        }
    }
    let issued = ca.issue(&request, now)?;
    let files = issued.write(&prefix, key_passphrase.as_ref())?;
    if issued.clamped && !cli.quiet {
        tessera::errln!(
            "{TOOL}: warning: lifetime shortened to end with the CA certificate ({})",
            rfc3339(issued.info.not_after)
        );
    }
    if args.json {
        tessera::cli::print_json(&IssueOutput {
            certificate: &issued.info,
            files: &files,
            clamped: issued.clamped,
        })?;
    } else {
        tessera::outln!(
            "issued {} certificate {:?} serial {}",
            args.profile,
            issued.info.subject,
            issued.info.serial
        )?;
        if !issued.info.sans.is_empty() {
            tessera::outln!("  names:       {}", issued.info.sans.join(", "))?;
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

#[derive(Serialize)]
struct ListEntry<'a> {
    serial: &'a str,
    subject: &'a str,
    sans: &'a [String],
    profile: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    issued_at: OffsetDateTime,
    status: tessera::ca::Status,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    revocation_reason: Option<&'a str>,
}

fn list(cli: &Cli, json: bool, now: OffsetDateTime) -> anyhow::Result<u8> {
    tessera::ca::read_ca_certificates(&cli.dir)?;
    let db = Database::load(&cli.dir)?;
    let entries: Vec<ListEntry<'_>> = db
        .records
        .iter()
        .map(|r| ListEntry {
            serial: &r.serial,
            subject: &r.subject,
            sans: &r.sans,
            profile: &r.profile,
            not_before: r.not_before,
            not_after: r.not_after,
            issued_at: r.issued_at,
            status: r.status(now),
            revoked_at: r.revoked.as_ref().map(|x| x.at),
            revocation_reason: r.revoked.as_ref().map(|x| x.reason.as_str()),
        })
        .collect();
    if json {
        tessera::cli::print_json(&entries)?;
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        tessera::outln!("no certificates issued yet")?;
        return Ok(exit::OK);
    }
    tessera::outln!(
        "{:<32}  {:<12}  {:<8}  {:<20}  SUBJECT / NAMES",
        "SERIAL",
        "PROFILE",
        "STATUS",
        "NOT AFTER"
    )?;
    for e in &entries {
        let status = serde_json::to_value(e.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let names = if e.sans.is_empty() {
            String::new()
        } else {
            format!(" [{}]", e.sans.join(", "))
        };
        tessera::outln!(
            "{:<32}  {:<12}  {:<8}  {:<20}  {}{}",
            e.serial,
            e.profile,
            status,
            rfc3339(e.not_after),
            e.subject,
            names
        )?;
    }
    Ok(exit::OK)
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(pki::pem::MAX_PEM_FILE + 1)
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        if bytes.len() as u64 > pki::pem::MAX_PEM_FILE {
            return Err(CliError::failure("stdin is larger than 16 MiB").into());
        }
        return Ok(bytes);
    }
    Ok(pki::pem::read_file(path)?)
}

fn show(args: &ShowArgs) -> anyhow::Result<u8> {
    let bytes = read_input(&args.file)?;
    let what = args.file.display().to_string();
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("-----BEGIN X509 CRL-----") {
        let crls: Vec<CrlInfo> = pki::pem::parse_crls(&bytes, &what)?
            .iter()
            .map(|der| CrlInfo::from_der(der))
            .collect::<Result<_, _>>()?;
        return render(args.json, &crls, CrlInfo::to_text);
    }
    let certs = match pki::pem::parse_certificates(&bytes, &what) {
        Ok(certs) => certs,
        Err(cert_err) => match pki::pem::parse_crls(&bytes, &what) {
            // DER input: maybe a CRL.
            Ok(crls) => {
                let crls: Vec<CrlInfo> = crls.iter().map(|d| CrlInfo::from_der(d)).collect::<Result<_, _>>()?;
                return render(args.json, &crls, CrlInfo::to_text);
            }
            Err(_) => return Err(cert_err.into()),
        },
    };
    let infos: Vec<CertificateInfo> = certs
        .iter()
        .map(|der| CertificateInfo::from_der(der))
        .collect::<Result<_, _>>()?;
    render(args.json, &infos, CertificateInfo::to_text)
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

#[derive(Serialize)]
struct VerifyOutput {
    trusted: bool,
    usage: String,
    name: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    reason: Option<String>,
    path: Vec<PathEntry>,
}

#[derive(Serialize)]
struct PathEntry {
    subject: String,
    serial: String,
    #[serde(with = "time::serde::rfc3339")]
    not_after: OffsetDateTime,
}

fn verify(args: &VerifyArgs, now: OffsetDateTime) -> anyhow::Result<u8> {
    let time = args.at.unwrap_or(now);
    let mut certs = pki::pem::load_certificates(&args.cert)?;
    let end_entity = certs.remove(0);
    let mut intermediates = certs;
    if let Some(chain) = &args.chain {
        intermediates.extend(pki::pem::load_certificates(chain)?);
    }
    let mut store = TrustStore::from_root_file(&args.root)?;
    for crl in &args.crl {
        store.add_crl_file(crl)?;
    }
    let mut request = VerifyRequest::new(args.usage, time);
    request.name = args.name.clone();
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
            } else {
                tessera::outln!(
                    "{}: trusted for {} use at {}",
                    args.cert.display(),
                    args.usage,
                    rfc3339(time)
                )?;
                for (depth, entry) in output.path.iter().enumerate() {
                    tessera::outln!(
                        "  {depth}: {} (serial {}, until {})",
                        entry.subject,
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
                Ok(exit::REJECTED)
            } else {
                Err(anyhow::Error::new(err).context(format!("{} is not trusted", args.cert.display())))
            }
        }
        Err(err) => Err(err.into()),
    }
}
