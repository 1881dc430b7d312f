//! Shared plumbing for Tessera's binaries: exit codes, error reports with hints, secret input,
//! atomic output files, JSON output and logging. The library proper never prints or exits; this
//! module is what the binaries use to do both consistently.
//!
//! Output: the tools never use `println!`/`eprintln!` (they panic on a closed or full stream;
//! clippy forbids them), but [`outln!`](crate::outln), [`out!`](crate::out) (stdout, returning
//! `Result<(), CliError>` for `?`; a reader that went away ends the tool quietly with exit 0,
//! another write error exits 3) and [`errln!`](crate::errln) (stderr, never fails). Arguments:
//! [`parse_args`] (`tool: error: …` usage errors, exit 2; help that keeps examples on one line).
//!
//! | exit code | meaning |
//! |---|---|
//! | [`exit::OK`] (0) | success |
//! | [`exit::REJECTED`] (1) | the check ran and said no (untrusted, tampered, revoked, expired) |
//! | [`exit::USAGE`] (2) | bad command line |
//! | [`exit::FAILURE`] (3) | could not run (I/O, missing file, wrong passphrase, bad input) |
//!
//! One function decides a tool's exit code and hint from its error, [`verdict`] (by the
//! library's `is_rejection()`; a tool adds only its own hints and its [`Role`]); [`report`]
//! prints it as `tool: error: …` (the causes joined by [`error_chain`]) and `tool: hint: …`,
//! both through [`printable`].

mod args;
mod input;
mod output;
mod passphrase;
mod report;
mod rotation;
mod signals;

use std::path::Path;

pub use crate::fsutil::AtomicFile;
pub use crate::fsutil::{FileArg, SameFileError, ensure_distinct, find_same_file, is_standard_output};

pub use args::{parse_args, parse_args_from};
pub use input::ensure_one_stdin;
pub use output::{counted, write_stderr, write_stdout, write_stdout_bytes};
pub use passphrase::{
    PASSPHRASE_ENV, PassphraseSource, passphrase_for_key, passphrase_for_key_given_by, passphrase_from_file,
    read_passphrase, read_passphrase_given_by,
};
pub use report::{CliError, Role, Verdict, error_chain, printable, report, verdict};
pub use rotation::{
    MAX_PHASE_SECONDS, MAX_SECONDS, MIN_ROTATE_INTERVAL, MIN_TIMEOUT, RotationArgs, count, host_port, seconds,
    seconds_value, timeout_seconds, whole_number,
};
pub use signals::{die_if_signalled, remove_temporaries_on_signal};

/// Process exit codes shared by every tool.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The check ran and said no.
    pub const REJECTED: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
    /// Could not run.
    pub const FAILURE: u8 = 3;
}

/// The EXIT CODES paragraph every `--help` ends with.
pub const EXIT_CODES_HELP: &str = "EXIT CODES:
  0  success
  1  the check ran and said no (untrusted, tampered, revoked, expired)
  2  usage error
  3  could not run (I/O error, missing file, wrong passphrase, unusable input)";

/// Replaces `path` atomically (temp file in the same directory, fsync, rename, fsync directory).
/// Public files get mode 0644.
///
/// # Errors
/// The underlying I/O error; the target is then untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, bytes, crate::fsutil::PUBLIC_MODE)
}

/// Creates `path` (mode 0644) atomically, refusing to overwrite an existing file.
///
/// # Errors
/// `AlreadyExists` when the file is there; other I/O errors.
pub fn create_new_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::create_new_atomic(path, bytes, crate::fsutil::PUBLIC_MODE)
}

/// Prints a value as pretty JSON on stdout, followed by a newline.
///
/// # Errors
/// [`CliError`] (exit 3) if the value cannot be serialised or stdout cannot be written; a quiet
/// [`CliError`] (exit 0, see [`CliError::stdout`]) when the reader of stdout went away.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| CliError::failure(format!("cannot encode JSON: {e}")))?;
    crate::outln!("{text}")
}

/// Parses an RFC 3339 time such as `2030-01-01T00:00:00Z` (for `--at`).
///
/// # Errors
/// A message saying what form is expected.
pub fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2030-01-31T12:00:00Z ({e})"))
}

/// Sends `tracing` events to stderr: warnings and errors by default, `--verbose` for info,
/// `RUST_LOG` to override; `quiet` shows errors only. A full or closed stderr loses the events
/// but never panics.
///
/// The short-lived tools (every tool but the long-running `echo-server` and `echo-client`,
/// told apart by the program's file name) write each event as one line in the form of their
/// other diagnostics, `ca: warning: the CRL was rewritten …` (`error`, `warning`, `info`,
/// `debug`, `trace`), its text passed through [`printable`]; the long-running tools keep
/// tracing's timestamped lines (`2030-01-31T12:00:00.000000Z  WARN …`).
pub fn init_logging(quiet: bool, verbose: bool) {
    let program = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match program.as_str() {
        "echo-server" | "echo-client" => init_logging_as(None, quiet, verbose),
        _ => init_logging_as(Some(&program), quiet, verbose),
    }
}

/// [`init_logging`] with the line format chosen by the caller: `Some(tool)` for the short
/// `tool: warning: …` lines, `None` for tracing's timestamped lines.
pub fn init_logging_as(tool: Option<&str>, quiet: bool, verbose: bool) {
    let default = if quiet {
        "error"
    } else if verbose {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour())
        .with_target(false)
        // Otherwise a failed write is reported with `eprintln!`, which panics on a full stderr.
        .log_internal_errors(false);
    let _ = match tool {
        Some(tool) => builder
            .with_ansi(false)
            .event_format(ToolLines { tool: tool.to_string() })
            .try_init(),
        None => builder.try_init(),
    };
}

/// `tool: warning: message key=value` lines for [`init_logging_as`].
struct ToolLines {
    tool: String,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for ToolLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let mut text = String::new();
        ctx.field_format()
            .format_fields(tracing_subscriber::fmt::format::Writer::new(&mut text), event)?;
        writeln!(writer, "{}: {level}: {}", self.tool, printable(&text))
    }
}

/// Modules this large or larger get a progress bar while they are hashed.
pub const PROGRESS_THRESHOLD: u64 = 64 * 1024 * 1024;

/// A progress bar on stderr for work on `size` bytes, shown only when stderr is a terminal, the
/// work is large ([`PROGRESS_THRESHOLD`]) and the user did not ask for `quiet` output (`--quiet`,
/// `--json`); hidden otherwise.
pub fn progress_bar(quiet: bool, size: u64, message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() || size < PROGRESS_THRESHOLD {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(size), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

/// Colour only on a terminal and never with `NO_COLOR`.
pub fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn times_parse() {
        let t = parse_time("2030-01-31T12:00:00Z").expect("valid");
        assert_eq!(t.unix_timestamp(), 1_896_091_200);
        assert!(parse_time("2030-01-31").is_err());
        assert!(parse_time("10000-01-01T00:00:00Z").is_err());
        assert!(parse_time("2030-02-30T00:00:00Z").is_err());
    }

    proptest! {
        #[test]
        fn parse_time_never_panics(text in "\\PC*") {
            let _ = parse_time(&text);
        }

        #[test]
        fn parse_time_never_panics_on_near_misses(
            y in 0u32..20000, mo in 0u32..15, d in 0u32..40, h in 0u32..30, mi in 0u32..70, s in 0u32..70,
            offset in prop_oneof![Just("Z".to_string()), "[+-][0-9]{2}:[0-9]{2}"],
            fraction in prop_oneof![Just(String::new()), "\\.[0-9]{1,12}"],
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{offset}");
            match parse_time(&text) {
                Ok(_) => prop_assert!(
                    y <= 9999 && (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s <= 60,
                    "accepted {}", text
                ),
                Err(message) => prop_assert!(message.contains("RFC 3339"), "{}", message),
            }
        }
    }
}
