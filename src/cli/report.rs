//! `tool: error: …` / `tool: hint: …` reports and the exit code that goes with them.

use std::error::Error;
use std::process::ExitCode;

use super::exit;
use crate::pki::PkiError;

/// An error raised by a binary itself, with its exit code and an optional hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The exit code (see [`super::exit`]).
    pub code: u8,
}

impl CliError {
    /// A "the check said no" error (exit 1).
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(message, exit::REJECTED)
    }

    /// A command-line usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(message, exit::USAGE)
    }

    /// A "could not run" error (exit 3).
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(message, exit::FAILURE)
    }

    fn new(message: impl Into<String>, code: u8) -> Self {
        Self {
            message: message.into(),
            hint: None,
            code,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Exit code and hint for a [`PkiError`].
pub fn classify_pki(error: &PkiError) -> (u8, Option<String>) {
    let code = if error.is_rejection() {
        exit::REJECTED
    } else {
        exit::FAILURE
    };
    let hint = match error {
        PkiError::PassphraseRequired { .. } => Some(
            "give the passphrase with --passphrase-file FILE or the TESSERA_PASSPHRASE environment variable".into(),
        ),
        PkiError::WrongPassphrase { .. } => {
            Some("check the passphrase file or TESSERA_PASSPHRASE; the key file itself is unchanged".into())
        }
        PkiError::Missing { expected, .. } if *expected == crate::pki::PRIVATE_KEY => {
            Some("pass the PKCS#8 private key file (-----BEGIN PRIVATE KEY-----), not a certificate".into())
        }
        PkiError::Missing { expected, .. } if *expected == crate::pki::pem::CERTIFICATE => {
            Some("pass a PEM certificate file (-----BEGIN CERTIFICATE-----)".into())
        }
        PkiError::AlreadyExists { .. } => Some("choose another output path or remove the file first".into()),
        PkiError::UnknownIssuer => {
            Some("pass the issuing CA's root with --root and any intermediates with --chain".into())
        }
        PkiError::Expired { .. } => Some("issue a fresh certificate, or check the time with --at".into()),
        PkiError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Some("check the path".into()),
        _ => None,
    };
    (code, hint)
}

/// Prints `tool: error: …` (with the chain of causes) and any hint to stderr, and returns the
/// exit code. `classify` gives the code and hint for the tool's own library error types; a
/// [`CliError`] or [`PkiError`] anywhere in the chain is recognised without it.
pub fn report(
    tool: &str,
    error: &(dyn Error + 'static),
    classify: impl Fn(&(dyn Error + 'static)) -> Option<(u8, Option<String>)>,
) -> ExitCode {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let mut verdict = None;
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(cli) = e.downcast_ref::<CliError>() {
            verdict = Some((cli.code, cli.hint.clone()));
        } else if let Some(found) = classify(e) {
            verdict = Some(found);
        } else if let Some(pki) = e.downcast_ref::<PkiError>() {
            verdict = Some(classify_pki(pki));
        }
        if verdict.is_some() {
            break;
        }
        current = e.source();
    }
    let (code, hint) = verdict.unwrap_or((exit::FAILURE, None));
    eprintln!("{tool}: error: {}", printable(&message));
    if let Some(hint) = hint {
        eprintln!("{tool}: hint: {}", printable(&hint));
    }
    ExitCode::from(code)
}

/// Replaces control characters with `?`: error messages quote untrusted text (certificate
/// subjects, file names), which must not be able to move the cursor or rewrite the terminal.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(
            printable("CN=evil\u{1b}[2K\rmodule.so: OK"),
            "CN=evil?[2K?module.so: OK"
        );
        assert_eq!(printable("plain text, ünïcode"), "plain text, ünïcode");
    }
}
