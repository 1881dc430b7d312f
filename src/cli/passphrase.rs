//! Passphrases come from a file, the environment or the terminal; never from argv.

use std::path::Path;

use super::CliError;
use crate::pki::{Passphrase, PkiError, PrivateKey};

/// The environment variable holding a passphrase.
pub const PASSPHRASE_ENV: &str = "TESSERA_PASSPHRASE";

/// Where a passphrase came from (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassphraseSource {
    /// `--passphrase-file`.
    File,
    /// The `TESSERA_PASSPHRASE` environment variable.
    Environment,
    /// Typed at the terminal.
    Terminal,
}

/// Gets a passphrase: from `file` if given, else `TESSERA_PASSPHRASE`, else a prompt on the
/// terminal (twice when `confirm`), else an error that says how to give one.
///
/// # Errors
/// [`CliError`] (exit 3) when the file cannot be read, the passphrase is empty, the two
/// entries differ, or there is no terminal to ask.
pub fn read_passphrase(
    file: Option<&Path>,
    purpose: &str,
    confirm: bool,
) -> Result<(Passphrase, PassphraseSource), CliError> {
    read_passphrase_given_by(file, "--passphrase-file", purpose, confirm)
}

/// [`read_passphrase`] for a passphrase whose file is given with the option `flag`
/// (`--key-passphrase-file`): the hint names that option.
///
/// # Errors
/// As [`read_passphrase`].
pub fn read_passphrase_given_by(
    file: Option<&Path>,
    flag: &str,
    purpose: &str,
    confirm: bool,
) -> Result<(Passphrase, PassphraseSource), CliError> {
    if let Some(path) = file {
        return Ok((passphrase_from_file(path)?, PassphraseSource::File));
    }
    if let Ok(text) = std::env::var(PASSPHRASE_ENV) {
        let pass = Passphrase::new(text);
        if pass.is_empty() {
            return Err(CliError::failure(format!("{PASSPHRASE_ENV} is set but empty")));
        }
        return Ok((pass, PassphraseSource::Environment));
    }
    let no_terminal = || {
        CliError::failure(format!(
            "a passphrase is needed for {purpose} and there is no terminal to ask"
        ))
        .with_hint(format!("use {flag} FILE or set {PASSPHRASE_ENV}"))
    };
    let first = rpassword::prompt_password(format!("passphrase for {purpose}: ")).map_err(|_| no_terminal())?;
    let first = Passphrase::new(first);
    if first.is_empty() {
        return Err(CliError::failure("empty passphrase"));
    }
    if confirm {
        let again = rpassword::prompt_password("repeat the passphrase: ").map_err(|_| no_terminal())?;
        if Passphrase::new(again).expose() != first.expose() {
            return Err(CliError::failure("the two passphrases differ; nothing was written"));
        }
    }
    Ok((first, PassphraseSource::Terminal))
}

/// Reads a passphrase file (`-`: standard input): its whole content, less exactly one
/// trailing line ending (`\n` or `\r\n`), as `echo pw > f` leaves. Any other whitespace,
/// further newlines included, is part of the passphrase.
///
/// # Errors
/// [`CliError`] (exit 3) when the file cannot be read, is not UTF-8, or holds no passphrase.
pub fn passphrase_from_file(path: &Path) -> Result<Passphrase, CliError> {
    Passphrase::from_file(path).map_err(|e| match e {
        PkiError::Malformed { what, reason } if reason == "it is empty" => {
            CliError::failure(format!("{what} is empty")).with_hint(
                "write the passphrase on the file's first line (`printf '%s\\n' PASSPHRASE > FILE`); only one trailing \
                 line ending is removed",
            )
        }
        PkiError::Malformed { what, reason } => CliError::failure(format!("{what}: {reason}")),
        other => CliError::failure(other.to_string()),
    })
}

/// The passphrase for the key file `key`: `None` when the key is not encrypted, else read as
/// [`read_passphrase`] does (`file`, then `TESSERA_PASSPHRASE`, then the terminal), naming
/// `purpose` in the prompt.
///
/// # Errors
/// As [`read_passphrase`].
pub fn passphrase_for_key(key: &Path, file: Option<&Path>, purpose: &str) -> Result<Option<Passphrase>, CliError> {
    if !PrivateKey::is_encrypted_file(key) {
        return Ok(None);
    }
    Ok(Some(read_passphrase(file, purpose, false)?.0))
}

/// [`passphrase_for_key`] for a key whose passphrase file is given with the option `flag`
/// (`--key-passphrase-file`): the hint names that option.
///
/// # Errors
/// As [`read_passphrase`].
pub fn passphrase_for_key_given_by(
    key: &Path,
    file: Option<&Path>,
    flag: &str,
    purpose: &str,
) -> Result<Option<Passphrase>, CliError> {
    if !PrivateKey::is_encrypted_file(key) {
        return Ok(None);
    }
    Ok(Some(read_passphrase_given_by(file, flag, purpose, false)?.0))
}
