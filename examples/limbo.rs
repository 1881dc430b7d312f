//! x509-limbo conformance harness: feeds every case of the C2SP x509-limbo suite through
//! Tessera's one verification path ([`tessera::pki::TrustStore::verify`], the path `ca verify`
//! uses) and reports, per family, how often Tessera agrees with the suite's expected result.
//!
//! ```text
//! cargo run --release --example limbo -- ../shared/conformance/limbo.json.xz
//! cargo run --release --example limbo -- limbo.json.xz --verbose --min-agreement 99.4
//! cargo run --release --example limbo -- limbo.json.xz --json
//! ```
//!
//! A `.xz` file is decompressed by piping it through `xz -dc` (a child process); any other file
//! is read as JSON. With `--cli`, every case is also run through the `ca verify` command line
//! (`ca` is looked for next to this example's folder, or given with `--ca`), whose exit code must
//! say what the library said: 0 trusted, 1 not trusted, 3 input it could not use. See
//! `docs/conformance.md` for the figures and what each difference means.
// A developer harness, not a shipped tool: plain print macros are fine here.
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use clap::Parser;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use tessera::cli::{self, CliError, exit};
use tessera::pki::{KeyUsage, PkiError, TrustStore, Usage, VerifyRequest, pem};

/// Agreement of rustls-webpki 0.103.16 alone with the suite (9702 / 9762), in percent.
const REFERENCE_AGREEMENT: f64 = 99.4;

/// The order (and names) of the families in the table.
const FAMILIES: &[&str] = &[
    "bettertls",
    "rfc5280",
    "webpki",
    "pathlen",
    "crl",
    "pathological, online, cve, invalid",
];

#[derive(Parser, Debug)]
#[command(
    name = "limbo",
    about = "Run the x509-limbo path-validation suite through Tessera's verifier and report agreement per family",
    after_help = concat!(
        "EXAMPLES:\n",
        "  cargo run --release --example limbo -- ../shared/conformance/limbo.json.xz\n",
        "  cargo run --release --example limbo -- limbo.json.xz --verbose\n",
        "  cargo run --release --example limbo -- limbo.json.xz --json --min-agreement 99.5\n",
        "  cargo build --bin ca && cargo run --example limbo -- limbo.json.xz --cli\n\n",
        "EXIT CODES:\n",
        "  0  agreement is at least --min-agreement (and, with --cli, ca verify said what the library said)\n",
        "  1  agreement fell below --min-agreement, or ca verify and the library disagreed\n",
        "  2  usage error\n",
        "  3  could not run (missing file, no xz, unreadable JSON)"
    )
)]
struct Args {
    /// The suite: `limbo.json.xz` (decompressed with `xz -dc`) or plain `limbo.json`.
    path: PathBuf,
    /// Also list every differing case with Tessera's reason.
    #[arg(long, short)]
    verbose: bool,
    /// Print the summary (and the differing cases) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) when total agreement, in percent, is below this.
    #[arg(long, default_value_t = REFERENCE_AGREEMENT, value_name = "PERCENT")]
    min_agreement: f64,
    /// Only run cases whose id contains this text (for investigating one family or case).
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Also run each case through bare rustls-webpki (no Tessera wrapper) and list the cases
    /// where the two verdicts differ: anything listed is something the wrapper adds or loses.
    #[arg(long)]
    compare_webpki: bool,
    /// Also run every case (or only the native ones, see --cli-cases) through `ca verify`, and
    /// fail unless its exit code says what the library said (0 trusted, 1 not, 3 unusable input).
    #[arg(long)]
    cli: bool,
    /// Which cases go through `ca verify` with --cli: `all` or `native` (all but BetterTLS).
    #[arg(long, value_name = "all|native", default_value = "all", value_parser = ["all", "native"])]
    cli_cases: String,
    /// The `ca` binary for --cli (default: `ca` in the folder above this example's, as cargo
    /// builds them: `cargo build --bin ca`).
    #[arg(long, value_name = "PATH")]
    ca: Option<PathBuf>,
    /// Parallel `ca verify` processes for --cli (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

/// The suite file.
#[derive(Deserialize)]
struct Suite {
    testcases: Vec<Case>,
}

/// One x509-limbo test case (fields Tessera does not use are ignored).
#[derive(Deserialize)]
struct Case {
    id: String,
    validation_kind: ValidationKind,
    trusted_certs: Vec<String>,
    untrusted_intermediates: Vec<String>,
    peer_certificate: String,
    validation_time: Option<String>,
    #[serde(default)]
    extended_key_usage: Vec<String>,
    #[serde(default)]
    key_usage: Vec<String>,
    #[serde(default)]
    signature_algorithms: Vec<String>,
    expected_peer_name: Option<PeerName>,
    #[serde(default)]
    expected_peer_names: Vec<PeerName>,
    max_chain_depth: Option<u64>,
    #[serde(default)]
    crls: Vec<String>,
    expected_result: Expected,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
enum ValidationKind {
    Server,
    Client,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Expected {
    Success,
    Failure,
}

#[derive(Deserialize)]
struct PeerName {
    kind: String,
    value: String,
}

/// What Tessera said about a case.
enum Verdict {
    /// The case asks for something Tessera's verifier has no knob for.
    Skipped(&'static str),
    /// The verifier ran: `Ok` accepted, `Err` not accepted.
    Ran(Result<(), Failure>),
}

/// Why a case was not accepted.
#[derive(Clone)]
struct Failure {
    reason: String,
    /// True when the verifier said "not trusted" (`ca verify` exits 1); false when the input
    /// could not be used (exit 3). Either way the certificate is not trusted.
    rejection: bool,
}

impl Failure {
    fn unusable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            rejection: false,
        }
    }
}

impl From<PkiError> for Failure {
    fn from(error: PkiError) -> Self {
        Self {
            rejection: error.is_rejection(),
            reason: error.to_string(),
        }
    }
}

/// The exit code `ca verify` must give for a library verdict.
fn expected_exit(result: &Result<(), Failure>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(failure) if failure.rejection => 1,
        Err(_) => 3,
    }
}

/// Counts for one family.
#[derive(Default, Serialize, Clone, Copy)]
struct Tally {
    agree: usize,
    differ: usize,
    skipped: usize,
}

impl Tally {
    fn ran(&self) -> usize {
        self.agree + self.differ
    }

    fn percent(&self) -> f64 {
        if self.ran() == 0 {
            100.0
        } else {
            self.agree as f64 * 100.0 / self.ran() as f64
        }
    }

    fn add(&mut self, other: &Tally) {
        self.agree += other.agree;
        self.differ += other.differ;
        self.skipped += other.skipped;
    }
}

/// A case where Tessera and the suite disagree.
#[derive(Serialize)]
struct Difference {
    id: String,
    expected: Expected,
    tessera: &'static str,
    reason: Option<String>,
}

/// A case where Tessera and bare rustls-webpki disagree (`--compare-webpki`).
#[derive(Serialize)]
struct WrapperDifference {
    id: String,
    expected: Expected,
    tessera: Option<String>,
    webpki: Option<String>,
}

/// The `--json` document.
#[derive(Serialize)]
struct Summary {
    suite: String,
    families: BTreeMap<&'static str, Tally>,
    total: Totals,
    native: Totals,
    skipped: BTreeMap<&'static str, usize>,
    min_agreement: f64,
    passed: bool,
    differences: Vec<Difference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrapper_differences: Option<Vec<WrapperDifference>>,
    /// Per family, bare rustls-webpki's agreement (`--compare-webpki`).
    #[serde(skip_serializing_if = "Option::is_none")]
    webpki_alone: Option<BTreeMap<&'static str, Tally>>,
    /// The library's verdicts by exit code they map to (0 trusted, 1 not trusted, 3 unusable
    /// input), over the native cases.
    native_exit_codes: BTreeMap<i32, usize>,
    /// With `--cli`: what `ca verify` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    cli: Option<CliSummary>,
    /// Tessera's revocation layer against rustls-webpki's own CRL checking, on every case with
    /// CRLs: any disagreement fails the run.
    crl_differential: CrlDifferential,
}

/// The cases with CRLs verified both by Tessera's revocation layer and by rustls-webpki's CRL
/// checking, and the ids of those where the two decided differently.
#[derive(Serialize)]
struct CrlDifferential {
    compared: usize,
    disagreements: Vec<String>,
}

/// What `--cli` found.
#[derive(Serialize)]
struct CliSummary {
    /// Cases run through `ca verify`.
    cases: usize,
    /// Its agreement with the suite, over the cases it ran (skipped cases excluded).
    total: Totals,
    native: Totals,
    /// Cases where its exit code is not the one the library's verdict calls for.
    mismatches: Vec<CliMismatch>,
}

/// A case where `ca verify` and the library disagree.
#[derive(Serialize, Clone)]
struct CliMismatch {
    id: String,
    library_exit: i32,
    library_reason: Option<String>,
    cli_exit: Option<i32>,
    cli_stderr: String,
}

#[derive(Serialize)]
struct Totals {
    agree: usize,
    cases: usize,
    skipped: usize,
    agreement_percent: f64,
}

impl From<Tally> for Totals {
    fn from(t: Tally) -> Self {
        Self {
            agree: t.agree,
            cases: t.ran(),
            skipped: t.skipped,
            agreement_percent: (t.percent() * 100.0).round() / 100.0,
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(err) => cli::report(
            "limbo",
            err.as_ref(),
            &cli::verdict(err.as_ref(), cli::Role::Judge, |_| None),
        ),
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if !(0.0..=100.0).contains(&args.min_agreement) {
        return Err(CliError::usage(format!(
            "--min-agreement {} is not a percentage between 0 and 100",
            args.min_agreement
        ))
        .into());
    }
    let suite = load_suite(&args.path)?;
    let now = OffsetDateTime::now_utc();

    let Outcome {
        families,
        skipped,
        differences,
        wrapper_differences,
        reference,
        verdicts,
    } = evaluate(&suite.testcases, args.only.as_deref(), args.compare_webpki, now);

    let mut native_exit_codes: BTreeMap<i32, usize> = BTreeMap::new();
    for (index, result) in &verdicts {
        if let Some(case) = suite.testcases.get(*index)
            && family(&case.id) != "bettertls"
        {
            *native_exit_codes.entry(expected_exit(result)).or_default() += 1;
        }
    }
    let cli = if args.cli {
        let ca = match &args.ca {
            Some(ca) => ca.clone(),
            None => default_ca()?,
        };
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let native_only = args.cli_cases == "native";
        Some(run_cli(&ca, &suite.testcases, &verdicts, native_only, jobs, now)?)
    } else {
        None
    };

    let (crl_compared, crl_disagreements) = crl_differential(&suite.testcases, args.only.as_deref(), now);

    let mut total = Tally::default();
    let mut native = Tally::default();
    for (name, tally) in &families {
        total.add(tally);
        if *name != "bettertls" {
            native.add(tally);
        }
    }
    // The command line agrees with the library case for case, so its agreement is the same.
    let cli_passed = cli.as_ref().is_none_or(|c| c.mismatches.is_empty());
    let passed = total.percent() >= args.min_agreement && cli_passed && crl_disagreements.is_empty();

    if args.json {
        let summary = Summary {
            suite: args.path.display().to_string(),
            families: families.clone(),
            total: total.into(),
            native: native.into(),
            skipped,
            min_agreement: args.min_agreement,
            passed,
            differences,
            wrapper_differences,
            webpki_alone: reference,
            native_exit_codes,
            cli,
            crl_differential: CrlDifferential {
                compared: crl_compared,
                disagreements: crl_disagreements.clone(),
            },
        };
        cli::print_json(&summary)?;
    } else {
        print_table(&families, &total, &native, reference.as_ref());
        println!(
            "revocation layer vs rustls-webpki's CRL checking: {crl_compared} cases with CRLs, {} decided differently{}",
            crl_disagreements.len(),
            if crl_disagreements.is_empty() {
                String::new()
            } else {
                format!(": {}", crl_disagreements.join(", "))
            }
        );
        if !skipped.is_empty() {
            let reasons: Vec<String> = skipped.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
            println!("skipped (no such knob in Tessera's verifier): {}", reasons.join(", "));
        }
        if args.verbose {
            println!();
            println!("differing cases ({}):", differences.len());
            for d in &differences {
                let expected = match d.expected {
                    Expected::Success => "SUCCESS",
                    Expected::Failure => "FAILURE",
                };
                match &d.reason {
                    Some(reason) => println!("  {}: expected {expected}, Tessera {}: {reason}", d.id, d.tessera),
                    None => println!("  {}: expected {expected}, Tessera {}", d.id, d.tessera),
                }
            }
        }
        let codes: Vec<String> = native_exit_codes
            .iter()
            .map(|(code, n)| format!("exit {code}: {n}"))
            .collect();
        println!("native verdicts as `ca verify` exit codes: {}", codes.join(", "));
        if args.verbose {
            for (index, result) in &verdicts {
                if let (Some(case), Err(failure)) = (suite.testcases.get(*index), result)
                    && !failure.rejection
                    && family(&case.id) != "bettertls"
                {
                    println!("  exit 3 (unusable input): {}: {}", case.id, failure.reason);
                }
            }
        }
        if let Some(cli) = &cli {
            println!(
                "through `ca verify` ({} cases): total {} / {} ({:.2}%), native {} / {} ({:.2}%), {} exit-code mismatches",
                cli.cases,
                cli.total.agree,
                cli.total.cases,
                cli.total.agreement_percent,
                cli.native.agree,
                cli.native.cases,
                cli.native.agreement_percent,
                cli.mismatches.len()
            );
            for m in &cli.mismatches {
                println!(
                    "  {}: library exit {} ({}), ca verify exit {}: {}",
                    m.id,
                    m.library_exit,
                    m.library_reason.as_deref().unwrap_or("trusted"),
                    m.cli_exit
                        .map_or_else(|| "none (killed)".to_string(), |c| c.to_string()),
                    m.cli_stderr.trim()
                );
            }
        }
        if let Some(wrapper_differences) = &wrapper_differences {
            println!();
            println!("Tessera vs bare rustls-webpki ({} differ):", wrapper_differences.len());
            for d in wrapper_differences {
                println!(
                    "  {} (expected {:?}): Tessera {}, webpki {}",
                    d.id,
                    d.expected,
                    d.tessera.as_deref().unwrap_or("accepted"),
                    d.webpki.as_deref().unwrap_or("accepted")
                );
            }
        }
    }

    if passed {
        Ok(ExitCode::from(exit::OK))
    } else if !cli_passed {
        eprintln!("limbo: error: `ca verify` did not say what the library said (see the mismatches above)");
        eprintln!("limbo: hint: the command line loses information or classifies an error wrongly");
        Ok(ExitCode::from(exit::REJECTED))
    } else {
        eprintln!(
            "limbo: error: total agreement {:.2}% is below the required {:.2}%",
            total.percent(),
            args.min_agreement
        );
        eprintln!("limbo: hint: run with --verbose to list the differing cases and Tessera's reasons");
        Ok(ExitCode::from(exit::REJECTED))
    }
}

/// Everything a run found.
struct Outcome {
    families: BTreeMap<&'static str, Tally>,
    skipped: BTreeMap<&'static str, usize>,
    differences: Vec<Difference>,
    /// With `--compare-webpki`: where Tessera and bare webpki disagree.
    wrapper_differences: Option<Vec<WrapperDifference>>,
    /// With `--compare-webpki`: bare webpki's agreement per family.
    reference: Option<BTreeMap<&'static str, Tally>>,
    /// The library's verdict on every case it ran, by index into the suite.
    verdicts: Vec<(usize, Result<(), Failure>)>,
}

/// Runs every case (whose id contains `only`, if given) through Tessera, and through bare
/// rustls-webpki too when `compare_webpki` is set.
fn evaluate(cases: &[Case], only: Option<&str>, compare_webpki: bool, now: OffsetDateTime) -> Outcome {
    let mut families: BTreeMap<&'static str, Tally> = FAMILIES.iter().map(|f| (*f, Tally::default())).collect();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut differences = Vec::new();
    let mut wrapper_differences = Vec::new();
    let mut reference: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut verdicts = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        if only.is_some_and(|only| !case.id.contains(only)) {
            continue;
        }
        let verdict = run_case(case, now);
        let tally = families.entry(family(&case.id)).or_default();
        let accepted = match &verdict {
            Verdict::Skipped(reason) => {
                tally.skipped += 1;
                *skipped.entry(reason).or_default() += 1;
                continue;
            }
            Verdict::Ran(result) => result.is_ok(),
        };
        if accepted == (case.expected_result == Expected::Success) {
            tally.agree += 1;
        } else {
            tally.differ += 1;
            differences.push(Difference {
                id: case.id.clone(),
                expected: case.expected_result,
                tessera: if accepted { "accepted" } else { "rejected" },
                reason: match &verdict {
                    Verdict::Ran(Err(failure)) => Some(failure.reason.clone()),
                    _ => None,
                },
            });
        }
        if compare_webpki {
            let tessera = match &verdict {
                Verdict::Ran(Err(failure)) => Some(failure.reason.clone()),
                _ => None,
            };
            let webpki = bare_webpki(case, now).err();
            let bare = reference.entry(family(&case.id)).or_default();
            if webpki.is_none() == (case.expected_result == Expected::Success) {
                bare.agree += 1;
            } else {
                bare.differ += 1;
            }
            if tessera.is_some() != webpki.is_some() {
                wrapper_differences.push(WrapperDifference {
                    id: case.id.clone(),
                    expected: case.expected_result,
                    tessera,
                    webpki,
                });
            }
        }
        if let Verdict::Ran(result) = verdict {
            verdicts.push((index, result));
        }
    }

    Outcome {
        families,
        skipped,
        differences,
        wrapper_differences: compare_webpki.then_some(wrapper_differences),
        reference: compare_webpki.then_some(reference),
        verdicts,
    }
}

fn print_table(
    families: &BTreeMap<&'static str, Tally>,
    total: &Tally,
    native: &Tally,
    reference: Option<&BTreeMap<&'static str, Tally>>,
) {
    let bare = |name: &str| {
        reference.map_or_else(String::new, |r| {
            let t = r.get(name).copied().unwrap_or_default();
            format!("   {:>5} / {}", t.agree, t.differ)
        })
    };
    let header = if reference.is_some() { "   webpki alone" } else { "" };
    println!(
        "{:<36} {:>6} {:>7} {:>8}{header}",
        "family", "agree", "differ", "skipped"
    );
    let ordered = FAMILIES
        .iter()
        .filter_map(|name| families.get(name).map(|t| (*name, t)))
        .chain(
            families
                .iter()
                .filter(|(n, _)| !FAMILIES.contains(n))
                .map(|(n, t)| (*n, t)),
        );
    for (name, tally) in ordered {
        println!(
            "{name:<36} {:>6} {:>7} {:>8}{}",
            tally.agree,
            tally.differ,
            tally.skipped,
            bare(name)
        );
    }
    println!(
        "{:<36} {:>6} / {} ({:.2}%), {} skipped",
        "total",
        total.agree,
        total.ran(),
        total.percent(),
        total.skipped
    );
    println!(
        "{:<36} {:>6} / {} ({:.2}%)",
        "native (all but bettertls)",
        native.agree,
        native.ran(),
        native.percent()
    );
    if let Some(reference) = reference {
        let mut bare_total = Tally::default();
        let mut bare_native = Tally::default();
        for (name, tally) in reference {
            bare_total.add(tally);
            if *name != "bettertls" {
                bare_native.add(tally);
            }
        }
        println!(
            "{:<36} {:>6} / {} ({:.2}%), native {} / {} ({:.2}%)",
            "webpki alone: total",
            bare_total.agree,
            bare_total.ran(),
            bare_total.percent(),
            bare_native.agree,
            bare_native.ran(),
            bare_native.percent()
        );
    }
}

/// The family a case belongs to: the first `::` component of its id, with the small families
/// grouped as the suite's README groups them.
fn family(id: &str) -> &'static str {
    let head = id.split("::").next().unwrap_or(id);
    match head {
        "bettertls" => "bettertls",
        "rfc5280" => "rfc5280",
        "webpki" => "webpki",
        "pathlen" => "pathlen",
        "crl" => "crl",
        _ => "pathological, online, cve, invalid",
    }
}

/// Reads the suite, through `xz -dc` when the file name ends in `.xz`.
fn load_suite(path: &Path) -> anyhow::Result<Suite> {
    if !path.is_file() {
        return Err(
            CliError::failure(format!("{} does not exist or is not a file", path.display()))
                .with_hint("pass the path of limbo.json.xz, e.g. ../shared/conformance/limbo.json.xz")
                .into(),
        );
    }
    let is_xz = path.extension().is_some_and(|e| e == "xz");
    if !is_xz {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        return parse_suite(BufReader::new(file), path);
    }
    let mut child = Command::new("xz")
        .arg("-dc")
        .arg("--")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CliError::failure(format!("cannot run `xz -dc {}`: {e}", path.display()))
                .with_hint("install xz (apt-get install xz-utils), or pass an already decompressed limbo.json")
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::failure("xz gave no output stream"))?;
    let parsed = parse_suite(BufReader::new(stdout), path);
    let status = child.wait().context("waiting for xz")?;
    if !status.success() {
        return Err(CliError::failure(format!("`xz -dc {}` failed ({status})", path.display())).into());
    }
    parsed
}

fn parse_suite(reader: impl Read, path: &Path) -> anyhow::Result<Suite> {
    serde_json::from_reader(reader).map_err(|e| {
        CliError::failure(format!("{} is not an x509-limbo suite: {e}", path.display()))
            .with_hint("expected {\"version\": 1, \"testcases\": [...]} as published by C2SP x509-limbo")
            .into()
    })
}

/// Why a case cannot be asked of Tessera's verifier, as the reference run skipped them.
fn skip_reason(case: &Case) -> Option<&'static str> {
    if key_usage(case).is_err() {
        return Some("key_usage Tessera has no name for");
    }
    if case
        .max_chain_depth
        .is_some_and(|depth| usize::try_from(depth).is_err())
    {
        return Some("max_chain_depth out of range");
    }
    if !case.signature_algorithms.is_empty() {
        return Some("signature_algorithms");
    }
    let rfc822 = case
        .expected_peer_name
        .iter()
        .chain(&case.expected_peer_names)
        .any(|n| n.kind == "RFC822");
    if rfc822 {
        return Some("RFC822 peer name");
    }
    None
}

/// The key usage bits a case requires (x509-limbo writes RFC 5280's names: `digitalSignature`).
fn key_usage(case: &Case) -> Result<Vec<KeyUsage>, String> {
    case.key_usage.iter().map(|name| name.parse::<KeyUsage>()).collect()
}

/// The usage a case asks for: its validation kind, narrowed by its `extended_key_usage`.
fn usage(case: &Case) -> Result<Usage, &'static str> {
    let from_kind = match case.validation_kind {
        ValidationKind::Server => Usage::Server,
        ValidationKind::Client => Usage::Client,
    };
    let mut usage = from_kind;
    for eku in &case.extended_key_usage {
        let wanted = match eku.as_str() {
            "serverAuth" => Usage::Server,
            "clientAuth" => Usage::Client,
            "codeSigning" => Usage::CodeSigning,
            _ => return Err("extended_key_usage Tessera has no usage for"),
        };
        if wanted != from_kind && case.extended_key_usage.len() > 1 {
            return Err("several extended key usages");
        }
        usage = wanted;
    }
    Ok(usage)
}

/// The validation time: the case's, or `now` when it has none.
fn validation_time(case: &Case, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    match &case.validation_time {
        None => Ok(now),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("bad validation_time {text:?}: {e}")),
    }
}

/// The DNS name or IP address to check, if the case gives one.
fn peer_name(case: &Case) -> Option<&str> {
    case.expected_peer_name
        .as_ref()
        .filter(|n| n.kind == "DNS" || n.kind == "IP")
        .map(|n| n.value.as_str())
}

fn certificates(pems: &[String], what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut out = Vec::new();
    for text in pems {
        out.extend(pem::parse_certificates(text.as_bytes(), what)?);
    }
    Ok(out)
}

fn crls(pems: &[String]) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let mut out = Vec::new();
    for text in pems {
        let blocks = pem::parse_blocks(text.as_bytes(), pem::X509_CRL, "crl")?;
        out.extend(blocks.into_iter().map(CertificateRevocationListDer::from));
    }
    Ok(out)
}

/// Asks Tessera's verifier about one case. Input Tessera cannot load is not trusted either; it
/// is what `ca verify` reports with exit code 3.
fn run_case(case: &Case, now: OffsetDateTime) -> Verdict {
    if let Some(reason) = skip_reason(case) {
        return Verdict::Skipped(reason);
    }
    let usage = match usage(case) {
        Ok(usage) => usage,
        Err(reason) => return Verdict::Skipped(reason),
    };
    Verdict::Ran(verify_case(case, usage, now))
}

/// The request `ca verify` builds from its command line, built from a case.
fn request(case: &Case, usage: Usage, time: OffsetDateTime) -> Result<VerifyRequest, Failure> {
    let mut request = VerifyRequest::new(usage, time).with_key_usage(key_usage(case).map_err(Failure::unusable)?);
    if let Some(name) = peer_name(case) {
        request = request.with_name(name);
    }
    if let Some(depth) = case.max_chain_depth {
        request = request.with_max_depth(usize::try_from(depth).map_err(|e| Failure::unusable(e.to_string()))?);
    }
    Ok(request)
}

fn verify_case(case: &Case, usage: Usage, now: OffsetDateTime) -> Result<(), Failure> {
    let (store, request, intermediates, peer) = prepare(case, usage, now)?;
    let _chain = store.verify(&peer, &intermediates, &request)?;
    Ok(())
}

/// A case's trust store (roots and CRLs), request, intermediates and peer certificate.
fn prepare(
    case: &Case,
    usage: Usage,
    now: OffsetDateTime,
) -> Result<
    (
        TrustStore,
        VerifyRequest,
        Vec<CertificateDer<'static>>,
        CertificateDer<'static>,
    ),
    Failure,
> {
    let time = validation_time(case, now).map_err(Failure::unusable)?;
    let request = request(case, usage, time)?;
    let mut store = TrustStore::new();
    for (index, root) in certificates(&case.trusted_certs, "trusted certificate")?
        .into_iter()
        .enumerate()
    {
        store.add_root(root, &format!("trusted certificate {index}"))?;
    }
    for crl in crls(&case.crls)? {
        store.add_crl(&crl, "crl")?;
    }
    let intermediates = certificates(&case.untrusted_intermediates, "untrusted intermediate")?;
    let peer = certificates(std::slice::from_ref(&case.peer_certificate), "peer certificate")?;
    let Some(peer) = peer.into_iter().next() else {
        return Err(Failure::unusable("no peer certificate"));
    };
    Ok((store, request, intermediates, peer))
}

/// Tessera's revocation layer against rustls-webpki's own CRL checking: every case that has CRLs
/// (and runs) is verified both ways; the ids of the cases where the two decide differently
/// (one trusts, the other does not), and the number of cases compared.
fn crl_differential(cases: &[Case], only: Option<&str>, now: OffsetDateTime) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut disagreements = Vec::new();
    for case in cases {
        if case.crls.is_empty() || only.is_some_and(|o| !case.id.contains(o)) || skip_reason(case).is_some() {
            continue;
        }
        let Ok(usage) = usage(case) else { continue };
        let Ok((store, request, intermediates, peer)) = prepare(case, usage, now) else {
            continue;
        };
        compared += 1;
        let layer = store.verify(&peer, &intermediates, &request);
        let webpki = store.verify_with_webpki_revocation(&peer, &intermediates, &request);
        if layer.is_ok() != webpki.is_ok() {
            disagreements.push(case.id.clone());
        }
    }
    (compared, disagreements)
}

/// `ca` next to the folder this example runs from (`target/debug/examples/limbo` →
/// `target/debug/ca`).
fn default_ca() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let ca = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("ca"))
        .filter(|ca| ca.is_file())
        .ok_or_else(|| {
            CliError::failure("--cli needs the ca binary, and there is none next to this example's folder").with_hint(
                "build it first (`cargo build --bin ca`, with --release for a release run) or pass --ca PATH",
            )
        })?;
    Ok(ca)
}

/// Runs the cases the library ran through `ca verify` (`jobs` at a time) and compares each
/// exit code with the library's verdict.
fn run_cli(
    ca: &Path,
    cases: &[Case],
    verdicts: &[(usize, Result<(), Failure>)],
    native_only: bool,
    jobs: usize,
    now: OffsetDateTime,
) -> anyhow::Result<CliSummary> {
    let work: Vec<&(usize, Result<(), Failure>)> = verdicts
        .iter()
        .filter(|(index, _)| !native_only || cases.get(*index).is_some_and(|c| family(&c.id) != "bettertls"))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, CliOutcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut workers = Vec::new();
        for _ in 0..jobs.min(work.len().max(1)) {
            workers.push(scope.spawn(|| -> anyhow::Result<()> {
                let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((index, _)) = work.get(n) else {
                        return Ok(());
                    };
                    let Some(case) = cases.get(*index) else {
                        continue;
                    };
                    let outcome = ca_verify(ca, case, dir.path(), now);
                    if let Ok(mut results) = results.lock() {
                        results.push((*index, outcome));
                    }
                }
            }));
        }
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a ca verify worker panicked"))??;
        }
        Ok(())
    })?;
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a ca verify worker panicked"))?;
    let by_index: BTreeMap<usize, &Result<(), Failure>> = verdicts.iter().map(|(i, r)| (*i, r)).collect();
    let mut total = Tally::default();
    let mut native = Tally::default();
    let mut mismatches = Vec::new();
    for (index, outcome) in results {
        let (Some(case), Some(library)) = (cases.get(index), by_index.get(&index)) else {
            continue;
        };
        let (code, stderr) = match outcome {
            Ok((code, stderr)) => (Some(code), stderr),
            Err(error) => (None, error),
        };
        let trusted = code == Some(0);
        let tally = if trusted == (case.expected_result == Expected::Success) {
            Tally {
                agree: 1,
                ..Tally::default()
            }
        } else {
            Tally {
                differ: 1,
                ..Tally::default()
            }
        };
        total.add(&tally);
        if family(&case.id) != "bettertls" {
            native.add(&tally);
        }
        let library_exit = expected_exit(library);
        if code != Some(library_exit) {
            mismatches.push(CliMismatch {
                id: case.id.clone(),
                library_exit,
                library_reason: library.as_ref().err().map(|f| f.reason.clone()),
                cli_exit: code,
                cli_stderr: stderr,
            });
        }
    }
    mismatches.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(CliSummary {
        cases: work.len(),
        total: total.into(),
        native: native.into(),
        mismatches,
    })
}

/// What running `ca verify` gave: its exit code and stderr, or why it could not be run.
type CliOutcome = Result<(i32, String), String>;

/// One case through `ca verify`, with the case's files written to `dir`, at the case's time or
/// (for a case without one) the library run's `now`: the exit code and stderr, or why it could
/// not be run.
fn ca_verify(ca: &Path, case: &Case, dir: &Path, now: OffsetDateTime) -> CliOutcome {
    let write = |name: &str, texts: &[String]| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, texts.join("\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let usage = usage(case)?;
    let mut command = Command::new(ca);
    command
        .arg("verify")
        .arg(write("leaf.pem", std::slice::from_ref(&case.peer_certificate))?)
        .arg("--root")
        .arg(write("roots.pem", &case.trusted_certs)?)
        .args(["--usage", usage.name()]);
    if !case.untrusted_intermediates.is_empty() {
        command
            .arg("--chain")
            .arg(write("chain.pem", &case.untrusted_intermediates)?);
    }
    for (n, crl) in case.crls.iter().enumerate() {
        command
            .arg("--crl")
            .arg(write(&format!("crl{n}.pem"), std::slice::from_ref(crl))?);
    }
    if let Some(name) = peer_name(case) {
        command.args(["--name", name]);
    }
    match &case.validation_time {
        Some(time) => command.args(["--at", time]),
        None => command.args(["--at", &now.format(&Rfc3339).map_err(|e| e.to_string())?]),
    };
    if let Some(depth) = case.max_chain_depth {
        command.args(["--max-depth", &depth.to_string()]);
    }
    for usage in &case.key_usage {
        command.args(["--key-usage", usage]);
    }
    let output = command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ca.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    output.status.code().map(|code| (code, stderr.clone())).ok_or_else(|| {
        format!(
            "{} ended without an exit code ({}): {stderr}",
            ca.display(),
            output.status
        )
    })
}

/// The reference run: bare rustls-webpki, as the suite's README measured it (every verification
/// algorithm, `verify_for_usage` for the server or client usage with the case's CRLs under
/// webpki's default revocation options, then the peer name).
fn bare_webpki(case: &Case, now: OffsetDateTime) -> Result<(), String> {
    let usage = match usage(case).map_err(str::to_string)? {
        Usage::Client => webpki::KeyUsage::client_auth(),
        _ => webpki::KeyUsage::server_auth(),
    };
    let time = validation_time(case, now)?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(time.unix_timestamp()).unwrap_or(0),
    ));
    let roots = blocks(&case.trusted_certs, pem::CERTIFICATE)?;
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect();
    let intermediates = blocks(&case.untrusted_intermediates, pem::CERTIFICATE)?;
    let peer = blocks(std::slice::from_ref(&case.peer_certificate), pem::CERTIFICATE)?;
    let peer = peer.first().ok_or("no peer certificate")?;
    let ee = webpki::EndEntityCert::try_from(peer).map_err(|e| format!("{e:?}"))?;
    let crls = crls(&case.crls)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|der| webpki::OwnedCertRevocationList::from_der(der).map(webpki::CertRevocationList::Owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e:?}"))?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
        .ok()
        .map(webpki::RevocationOptionsBuilder::build);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        usage,
        revocation,
        None,
    )
    .map_err(|e| format!("{e:?}"))?;
    if let Some(name) = peer_name(case) {
        let name = ServerName::try_from(name).map_err(|e| format!("{e:?}"))?;
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

fn blocks(pems: &[String], label: &'static str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for text in pems {
        let found = pem::parse_blocks(text.as_bytes(), label, "certificate").map_err(|e| e.to_string())?;
        out.extend(found.into_iter().map(CertificateDer::from));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
    };
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2030-06-01 0:00 UTC);

    /// A root, a server leaf for example.com and 10.0.0.1, and a CRL revoking the leaf.
    fn pki() -> (String, String, String) {
        let mut root = CertificateParams::default();
        root.distinguished_name.push(DnType::CommonName, "root");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = datetime!(2030-01-01 0:00 UTC);
        root.not_after = datetime!(2031-01-01 0:00 UTC);
        let root_key = KeyPair::generate().unwrap();
        let root_pem = root.self_signed(&root_key).unwrap().pem();

        let mut leaf = CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress("10.0.0.1".parse().unwrap()));
        leaf.distinguished_name.push(DnType::CommonName, "example.com");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.serial_number = Some(SerialNumber::from(vec![0x42]));
        leaf.not_before = datetime!(2030-01-01 0:00 UTC);
        leaf.not_after = datetime!(2030-12-01 0:00 UTC);
        let issuer = Issuer::from_params(&root, &root_key);
        let leaf_pem = leaf.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap().pem();

        let crl = CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update: datetime!(2031-01-01 0:00 UTC),
            crl_number: SerialNumber::from(vec![0x01]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![0x42]),
                revocation_time: datetime!(2030-02-01 0:00 UTC),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl_pem = crl.signed_by(&issuer).unwrap().pem().unwrap();
        (root_pem, leaf_pem, crl_pem)
    }

    fn case(id: &str, root: &str, leaf: &str, expected: &str) -> serde_json::Value {
        json!({
            "id": id,
            "description": "",
            "validation_kind": "SERVER",
            "trusted_certs": [root],
            "untrusted_intermediates": [],
            "peer_certificate": leaf,
            "validation_time": "2030-06-01T00:00:00Z",
            "signature_algorithms": [],
            "key_usage": [],
            "extended_key_usage": [],
            "expected_result": expected,
            "expected_peer_name": {"kind": "DNS", "value": "example.com"},
            "expected_peer_names": [],
            "max_chain_depth": null,
            "crls": [],
            "features": [],
        })
    }

    fn suite() -> serde_json::Value {
        let (root, leaf, crl) = pki();
        let mut cases = vec![case("rfc5280::ok", &root, &leaf, "SUCCESS")];
        let mut wrong_name = case("rfc5280::wrong-name", &root, &leaf, "FAILURE");
        wrong_name["expected_peer_name"] = json!({"kind": "DNS", "value": "other.example"});
        cases.push(wrong_name);
        let mut ip = case("bettertls::ip", &root, &leaf, "SUCCESS");
        ip["expected_peer_name"] = json!({"kind": "IP", "value": "10.0.0.1"});
        cases.push(ip);
        let mut now = case("bettertls::null-time-is-now", &root, &leaf, "SUCCESS");
        now["validation_time"] = serde_json::Value::Null;
        cases.push(now);
        let mut client = case("webpki::client-usage", &root, &leaf, "FAILURE");
        client["validation_kind"] = json!("CLIENT");
        cases.push(client);
        let mut revoked = case("crl::revoked", &root, &leaf, "FAILURE");
        revoked["crls"] = json!([crl]);
        cases.push(revoked);
        let mut expired = case("webpki::wrongly-expects-success", &root, &leaf, "SUCCESS");
        expired["validation_time"] = json!("2032-01-01T00:00:00Z");
        cases.push(expired);
        let mut depth = case("pathlen::depth", &root, &leaf, "SUCCESS");
        depth["max_chain_depth"] = json!(0);
        cases.push(depth);
        let mut key_usage = case("webpki::key-usage", &root, &leaf, "SUCCESS");
        key_usage["key_usage"] = json!(["digitalSignature"]);
        cases.push(key_usage);
        let mut missing_key_usage = case("webpki::missing-key-usage", &root, &leaf, "FAILURE");
        missing_key_usage["key_usage"] = json!(["keyEncipherment"]);
        cases.push(missing_key_usage);
        let mut unknown_key_usage = case("webpki::unknown-key-usage", &root, &leaf, "SUCCESS");
        unknown_key_usage["key_usage"] = json!(["frobnicate"]);
        cases.push(unknown_key_usage);
        let mut unusable_crl = case("crl::not-a-crl", &root, &leaf, "FAILURE");
        unusable_crl["crls"] = json!(["-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"]);
        cases.push(unusable_crl);
        let mut email = case("rfc5280::nc::email", &root, &leaf, "SUCCESS");
        email["expected_peer_name"] = serde_json::Value::Null;
        email["expected_peer_names"] = json!([{"kind": "RFC822", "value": "a@example.com"}]);
        cases.push(email);
        json!({"version": 1, "testcases": cases})
    }

    #[test]
    fn families_group_like_the_readme() {
        assert_eq!(family("bettertls::nc::x"), "bettertls");
        assert_eq!(family("rfc5280::aki::critical-aki"), "rfc5280");
        assert_eq!(family("cve::cve-2024-0567"), "pathological, online, cve, invalid");
        assert_eq!(family("invalid::x"), "pathological, online, cve, invalid");
    }

    #[test]
    fn a_small_suite_is_mapped_tallied_and_skipped_as_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limbo.json");
        std::fs::write(&path, serde_json::to_vec(&suite()).unwrap()).unwrap();
        let suite = load_suite(&path).unwrap();
        let outcome = evaluate(&suite.testcases, None, true, NOW);

        let rfc5280 = outcome.families["rfc5280"];
        assert_eq!((rfc5280.agree, rfc5280.differ, rfc5280.skipped), (2, 0, 1));
        let bettertls = outcome.families["bettertls"];
        assert_eq!((bettertls.agree, bettertls.differ), (2, 0));
        let webpki = outcome.families["webpki"];
        assert_eq!((webpki.agree, webpki.differ, webpki.skipped), (3, 1, 1));
        assert_eq!(outcome.families["crl"].agree, 2);
        let pathlen = outcome.families["pathlen"];
        assert_eq!((pathlen.agree, pathlen.skipped), (1, 0));
        assert_eq!(outcome.skipped.get("key_usage Tessera has no name for"), Some(&1));
        assert_eq!(outcome.skipped.get("RFC822 peer name"), Some(&1));
        // The library's verdicts and the exit codes `ca verify` must give for them.
        let exit = |id: &str| {
            let index = suite.testcases.iter().position(|c| c.id == id).unwrap();
            let (_, result) = outcome.verdicts.iter().find(|(i, _)| *i == index).unwrap();
            expected_exit(result)
        };
        assert_eq!(exit("rfc5280::ok"), 0);
        assert_eq!(exit("crl::revoked"), 1);
        assert_eq!(exit("webpki::missing-key-usage"), 1);
        assert_eq!(exit("crl::not-a-crl"), 3);

        let [difference] = outcome.differences.as_slice() else {
            panic!("expected one difference");
        };
        assert_eq!(difference.id, "webpki::wrongly-expects-success");
        assert!(difference.reason.as_deref().unwrap().contains("expired"));
        // Bare webpki, given the same CRLs, agrees with Tessera on these well-formed chains,
        // except where Tessera's key usage option (which webpki lacks) refuses one, and on the
        // CRL webpki cannot read either (it reports it in its own words).
        let wrapper: Vec<&str> = outcome
            .wrapper_differences
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(wrapper, ["webpki::missing-key-usage"]);
    }

    /// The `ca` binary cargo built beside this test (`target/debug/ca`; `cargo test` builds it).
    fn built_ca() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let ca = exe.parent().unwrap().parent().unwrap().join("ca");
        assert!(
            ca.is_file(),
            "{} is missing: run `cargo build --bin ca` (cargo test builds it)",
            ca.display()
        );
        ca
    }

    #[test]
    fn ca_verify_says_what_the_library_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limbo.json");
        std::fs::write(&path, serde_json::to_vec(&suite()).unwrap()).unwrap();
        let suite = load_suite(&path).unwrap();
        let outcome = evaluate(&suite.testcases, None, false, NOW);
        let cli = run_cli(&built_ca(), &suite.testcases, &outcome.verdicts, false, 2, NOW).unwrap();
        assert_eq!(cli.cases, outcome.verdicts.len());
        assert!(
            cli.mismatches.is_empty(),
            "{:?}",
            cli.mismatches.iter().map(|m| &m.id).collect::<Vec<_>>()
        );
        // A case without a validation time is asked at the library run's "now" (--at).
        assert_eq!(
            cli.total.agree,
            outcome.families.values().map(|t| t.agree).sum::<usize>()
        );

        // A `ca` that answers differently is caught: /bin/false exits 1 for everything.
        let wrong = run_cli(
            Path::new("/bin/false"),
            &suite.testcases,
            &outcome.verdicts,
            true,
            1,
            NOW,
        )
        .unwrap();
        assert!(
            wrong
                .mismatches
                .iter()
                .any(|m| m.id == "rfc5280::ok" && m.cli_exit == Some(1))
        );
        assert!(
            wrong.mismatches.iter().all(|m| !m.id.starts_with("bettertls")),
            "native only"
        );
    }

    #[test]
    fn an_xz_suite_is_decompressed_through_xz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limbo.json");
        std::fs::write(&path, serde_json::to_vec(&suite()).unwrap()).unwrap();
        let Ok(status) = Command::new("xz").arg("-z").arg(&path).status() else {
            // TESSERA_REQUIRE_TOOLS=1 (make test, .ci/run): a missing tool fails, never skips.
            assert_ne!(
                std::env::var("TESSERA_REQUIRE_TOOLS").as_deref(),
                Ok("1"),
                "xz is missing and TESSERA_REQUIRE_TOOLS=1: `make deps` installs it"
            );
            eprintln!("skipped: xz is not installed; with TESSERA_REQUIRE_TOOLS=1 this test fails instead");
            return;
        };
        assert!(status.success());
        let suite = load_suite(&dir.path().join("limbo.json.xz")).unwrap();
        assert_eq!(suite.testcases.len(), 13);
    }

    #[test]
    fn garbage_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_suite(&dir.path().join("absent.json.xz")).err().unwrap();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, b"{\"version\": 1}").unwrap();
        let error = load_suite(&garbage).err().unwrap();
        assert!(error.to_string().contains("not an x509-limbo suite"), "{error}");
    }
}
