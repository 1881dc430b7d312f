//! Inputs read from files or standard input (`-`).
//!
//! Every file a command reads goes through [`crate::pki::pem::read_file`], where `-` means
//! standard input. Standard input can feed only one of them: a command checks its inputs with
//! [`ensure_one_stdin`] before reading anything.

use std::path::Path;

use super::CliError;
use crate::pki::pem;

/// Refuses a command line that reads more than one input from standard input (`-`).
///
/// `inputs` are (what the command calls the input, e.g. `"--key"`; the path if given).
///
/// # Errors
/// A usage error (exit 2) naming the first two inputs given as `-`.
pub fn ensure_one_stdin(inputs: &[(&str, Option<&Path>)]) -> Result<(), CliError> {
    let mut dashes = inputs
        .iter()
        .filter(|(_, path)| path.is_some_and(pem::is_stdin))
        .map(|(role, _)| *role);
    if let (Some(first), Some(second)) = (dashes.next(), dashes.next()) {
        return Err(CliError::usage(format!(
            "only one input can be read from stdin (-): {first} and {second} both are"
        ))
        .with_hint("give all but one of them as files (a file named - is ./-)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dash_at_most() {
        let dash = Path::new("-");
        let file = Path::new("f.pem");
        ensure_one_stdin(&[("FILE", Some(file)), ("--key", Some(dash)), ("--cert", None)]).unwrap();
        let err = ensure_one_stdin(&[("FILE", Some(dash)), ("--cert", Some(file)), ("--key", Some(dash))]).unwrap_err();
        assert_eq!(err.code, crate::cli::exit::USAGE);
        assert!(err.message.contains("FILE and --key"), "{err}");
    }
}
