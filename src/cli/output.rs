//! Output that never panics: stdout and stderr writes for the binaries.
//!
//! `println!` panics ("failed printing to stdout", exit 101) when stdout is a pipe whose reader
//! went away (`ca list | head -1`) or a full disk (`ca list > /dev/full`). The tools use these
//! helpers instead (clippy's `disallowed-macros` forbids the std print macros):
//!
//! - [`outln!`](crate::outln) / [`out!`](crate::out) / [`write_stdout`] / [`write_stdout_bytes`]
//!   write to stdout, flush, and return `Result<(), CliError>`. Propagate it with `?` to
//!   [`report`](super::report): a reader that went away (`EPIPE`) becomes a *quiet* error (exit 0,
//!   nothing printed, see [`CliError::is_quiet`]); any other write error becomes
//!   `tool: error: cannot write to stdout: …` with exit 3.
//! - [`errln!`](crate::errln) / [`write_stderr`] write to stderr and ignore failures: a full or
//!   closed stderr never panics and never changes the exit code.

use std::fmt;
use std::io::{self, Write};

use super::CliError;

/// Writes formatted text to stdout and flushes it.
///
/// # Errors
/// A [`CliError`] from [`CliError::stdout`]: quiet (exit 0) when the reader went away,
/// exit 3 for any other write error.
pub fn write_stdout(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.flush()).map_err(CliError::stdout)
}

/// Writes bytes to stdout and flushes them.
///
/// # Errors
/// As [`write_stdout`].
pub fn write_stdout_bytes(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)
}

/// Writes formatted text to stderr; a write error is ignored (there is nowhere left to report
/// it), so it can neither panic nor change the exit code.
pub fn write_stderr(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// `println!` for the tools: formats a line to stdout, flushes, and evaluates to
/// `Result<(), tessera::cli::CliError>` (quiet exit 0 when the reader went away, exit 3 for any
/// other write error). Use it with `?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::write_stdout(::core::format_args!("\n"))
    };
    ($($arg:tt)+) => {
        $crate::cli::write_stdout(::core::format_args!("{}\n", ::core::format_args!($($arg)+)))
    };
}

/// `print!` for the tools: like [`outln!`](crate::outln) without the newline.
#[macro_export]
macro_rules! out {
    ($($arg:tt)+) => {
        $crate::cli::write_stdout(::core::format_args!($($arg)+))
    };
}

/// `eprintln!` for the tools: formats a line to stderr and ignores write errors (evaluates to
/// `()`), so a full or closed stderr never panics and never changes the exit code.
#[macro_export]
macro_rules! errln {
    () => {
        $crate::cli::write_stderr(::core::format_args!("\n"))
    };
    ($($arg:tt)+) => {
        $crate::cli::write_stderr(::core::format_args!("{}\n", ::core::format_args!($($arg)+)))
    };
}

impl CliError {
    /// The error for a failed write to stdout: when the reader went away (`BrokenPipe`), a quiet
    /// error that ends the tool with exit 0 and prints nothing; otherwise
    /// `cannot write to stdout: …` (exit 3).
    pub fn stdout(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Self::quiet("stdout was closed by its reader")
        } else {
            Self::failure(format!("cannot write to stdout: {error}"))
        }
    }
}

/// `count` and the noun that agrees with it: `1 key`, `0 keys`, `3 keys` (`one` for exactly 1,
/// `many` otherwise).
pub fn counted(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn the_noun_agrees_with_the_count() {
        assert_eq!(counted(1, "key", "keys"), "1 key");
        assert_eq!(counted(0, "key", "keys"), "0 keys");
        assert_eq!(
            counted(3, "message sent again", "messages sent again"),
            "3 messages sent again"
        );
    }
}
