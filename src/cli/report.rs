//! `tool: error: …` / `tool: hint: …` reports and the exit code that goes with them.

use std::error::Error;
use std::process::ExitCode;

use super::exit;
use crate::ca::CaError;
use crate::channel::ChannelError;
use crate::pki::PkiError;
use crate::sign::SignError;
pub use crate::text::printable;

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

    /// A quiet end (exit 0, nothing printed by [`report`]): the tool must stop, but nothing went
    /// wrong that the user needs to hear about (the reader of stdout went away, as in
    /// `ca list | head -1`). `message` is for logs and debugging only.
    pub fn quiet(message: impl Into<String>) -> Self {
        Self::new(message, exit::OK)
    }

    /// Whether this is a quiet end (see [`CliError::quiet`]).
    pub fn is_quiet(&self) -> bool {
        self.code == exit::OK
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

/// How a tool reads a "no" from Tessera's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The check is the tool's answer (`verify`, `ca`, `echo-client`, `echo-server`): a
    /// rejection exits with [`exit::REJECTED`] (1).
    Judge,
    /// The tool makes something and checks its inputs first (`sign`): a rejection means the
    /// inputs are unfit for it, not a verdict on anything, and exits with [`exit::FAILURE`] (3).
    Producer,
}

/// What a tool reports for an error: its exit code and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The exit code (see [`super::exit`]).
    pub code: u8,
    /// What to do about it, for a `tool: hint: …` line.
    pub hint: Option<String>,
}

/// The one place where an error becomes an exit code and a hint.
///
/// - A quiet [`CliError`] anywhere in the chain (the reader of stdout went away): exit 0, no
///   hint.
/// - Otherwise the first error in the chain that Tessera knows decides: a [`CliError`] by its
///   own code and hint; a library error ([`PkiError`], [`CaError`], [`SignError`],
///   [`ChannelError`]; a wrapper that only carries a [`PkiError`], such as `CaError::Pki`, lets
///   it speak) by its exhaustive `is_rejection()`: a rejection exits 1 ([`Role::Judge`]) or 3
///   ([`Role::Producer`]), anything else 3. The one usage error a library reports,
///   `CaError::InvalidRequest` for `--out`, exits 2.
/// - Its hint is `hint`'s (the tool's own words for its flags), else Tessera's generic one (how
///   to give a passphrase, a root, a path), else none.
/// - An error Tessera does not know (anything else, e.g. a bare I/O error): exit 3, no hint.
/// - With no other hint, a write that failed because the file grew too large (`EFBIG`: the
///   process's file size limit, `ulimit -f`, with SIGXFSZ ignored, or the file system's
///   largest file) gets one saying so.
pub fn verdict(
    error: &(dyn Error + 'static),
    role: Role,
    hint: impl Fn(&(dyn Error + 'static)) -> Option<String>,
) -> Verdict {
    if chain(error).any(|e| e.downcast_ref::<CliError>().is_some_and(CliError::is_quiet)) {
        return Verdict {
            code: exit::OK,
            hint: None,
        };
    }
    let mut verdict = classify(error, role, hint);
    if verdict.hint.is_none() && chain(error).any(is_file_too_large) {
        verdict.hint = Some(FILE_TOO_LARGE_HINT.into());
    }
    verdict
}

/// What to do when a file grew too large to be written.
pub(crate) const FILE_TOO_LARGE_HINT: &str = "a file grew past the largest size this process may write: the \
     file size limit (`ulimit -f`, RLIMIT_FSIZE) or the file system's largest file; raise the limit, or \
     write to another file system";

/// An I/O error `EFBIG` ("File too large").
fn is_file_too_large(e: &(dyn Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::FileTooLarge)
}

/// [`verdict`] without the file-size hint.
fn classify(
    error: &(dyn Error + 'static),
    role: Role,
    hint: impl Fn(&(dyn Error + 'static)) -> Option<String>,
) -> Verdict {
    for e in chain(error) {
        if let Some(cli) = e.downcast_ref::<CliError>() {
            return Verdict {
                code: cli.code,
                hint: cli.hint.clone(),
            };
        }
        if let Some(known) = Known::of(e) {
            let code = match known.code() {
                exit::REJECTED if role == Role::Producer => exit::FAILURE,
                code => code,
            };
            let decisive = known.as_error();
            return Verdict {
                code,
                hint: hint(decisive).or_else(|| known.generic_hint()),
            };
        }
    }
    Verdict {
        code: exit::FAILURE,
        hint: None,
    }
}

/// An error and its causes.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// A library error [`verdict`] classifies.
enum Known<'a> {
    Pki(&'a PkiError),
    Ca(&'a CaError),
    Sign(&'a SignError),
    Channel(&'a ChannelError),
}

impl<'a> Known<'a> {
    /// `e` as a library error; a wrapper that only carries a [`PkiError`] (`CaError::Pki`,
    /// `SignError::Pki`, `ChannelError::Load`) as that error.
    fn of(e: &'a (dyn Error + 'static)) -> Option<Self> {
        if let Some(pki) = e.downcast_ref::<PkiError>() {
            return Some(Self::Pki(pki));
        }
        if let Some(ca) = e.downcast_ref::<CaError>() {
            return Some(match ca {
                CaError::Pki(pki) => Self::Pki(pki),
                other => Self::Ca(other),
            });
        }
        if let Some(sign) = e.downcast_ref::<SignError>() {
            return Some(match sign {
                SignError::Pki(pki) => Self::Pki(pki),
                other => Self::Sign(other),
            });
        }
        if let Some(channel) = e.downcast_ref::<ChannelError>() {
            return Some(match channel {
                ChannelError::Load { source, .. } => Self::Pki(source),
                other => Self::Channel(other),
            });
        }
        None
    }

    fn code(&self) -> u8 {
        let rejection = match self {
            Self::Ca(CaError::InvalidRequest { field: "--out", .. }) => return exit::USAGE,
            Self::Pki(e) => e.is_rejection(),
            Self::Ca(e) => e.is_rejection(),
            Self::Sign(e) => e.is_rejection(),
            Self::Channel(e) => e.is_rejection(),
        };
        if rejection { exit::REJECTED } else { exit::FAILURE }
    }

    fn as_error(&self) -> &'a (dyn Error + 'static) {
        match *self {
            Self::Pki(e) => e,
            Self::Ca(e) => e,
            Self::Sign(e) => e,
            Self::Channel(e) => e,
        }
    }

    /// What to do, in words every tool can use.
    fn generic_hint(&self) -> Option<String> {
        let Self::Pki(error) = self else {
            return None;
        };
        let hint = match error {
            PkiError::PassphraseRequired { .. } => {
                "give the passphrase with --passphrase-file FILE or the TESSERA_PASSPHRASE environment variable"
            }
            PkiError::WrongPassphrase { .. } => {
                "check the passphrase file or TESSERA_PASSPHRASE; the key file itself is unchanged"
            }
            PkiError::Missing { expected, .. } if *expected == crate::pki::PRIVATE_KEY => {
                "pass the PKCS#8 private key file (-----BEGIN PRIVATE KEY-----), not a certificate"
            }
            PkiError::Missing { expected, .. } if *expected == crate::pki::pem::CERTIFICATE => {
                "pass a PEM certificate file (-----BEGIN CERTIFICATE-----)"
            }
            PkiError::AlreadyExists { .. } => "choose another output path or remove the file first",
            PkiError::UnknownIssuer => "pass the issuing CA's root with --root and any intermediates with --chain",
            PkiError::Expired { .. } => "issue a fresh certificate, or check the time with --at",
            PkiError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "check the path",
            _ => return None,
        };
        Some(hint.into())
    }
}

/// An error and its causes on one line, `error: cause: cause's cause`, leaving out a cause whose
/// text the line already holds: the `error:` line of [`report`] and the `error` of a tool's
/// `--json` failure. (The library's own logs, such as a failed reload's, use the same joiner.)
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    crate::pki::error_chain(error)
}

/// Prints `tool: error: …` (the error with its chain of causes, [`error_chain`]) and the
/// verdict's hint to stderr, through [`printable`], and returns the verdict's exit code. A
/// quiet verdict (exit 0, see [`CliError::quiet`]) prints nothing. A failing stderr is ignored:
/// the exit code stays the same.
pub fn report(tool: &str, error: &(dyn Error + 'static), verdict: &Verdict) -> ExitCode {
    // An error a handled signal caused (a write past the file size limit after SIGXFSZ, a
    // temporary file removed by the signal thread): the process ends by the signal instead.
    super::die_if_signalled();
    if verdict.code == exit::OK {
        return ExitCode::from(exit::OK);
    }
    crate::errln!("{tool}: error: {}", printable(&error_chain(error)));
    if let Some(hint) = &verdict.hint {
        crate::errln!("{tool}: hint: {}", printable(hint));
    }
    ExitCode::from(verdict.code)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::sign::CheckTime;

    /// A tool's wrapper around a library error (as `anyhow` contexts are).
    #[derive(Debug, thiserror::Error)]
    #[error("{what}")]
    struct Context {
        what: &'static str,
        #[source]
        source: Box<dyn Error + 'static>,
    }

    fn wrapped(error: impl Error + 'static) -> Context {
        Context {
            what: "cannot run",
            source: Box::new(error),
        }
    }

    fn judge(error: &(dyn Error + 'static)) -> Verdict {
        verdict(error, Role::Judge, |_| None)
    }

    fn code(error: &(dyn Error + 'static)) -> u8 {
        judge(error).code
    }

    fn rejected() -> PkiError {
        PkiError::UnknownIssuer
    }

    fn unusable() -> PkiError {
        PkiError::malformed("ca.pem", "it ends too early")
    }

    #[test]
    fn a_cli_error_keeps_its_code_and_hint_and_a_quiet_one_is_silent() {
        let usage = CliError::usage("two inputs on stdin").with_hint("give one as a file");
        assert_eq!(
            judge(&wrapped(usage)),
            Verdict {
                code: exit::USAGE,
                hint: Some("give one as a file".into()),
            }
        );
        assert_eq!(code(&CliError::rejected("no")), exit::REJECTED);
        assert_eq!(code(&CliError::failure("no")), exit::FAILURE);
        // A quiet end anywhere in the chain wins, whatever is above it.
        assert_eq!(
            judge(&wrapped(CliError::quiet("stdout closed"))),
            Verdict {
                code: exit::OK,
                hint: None,
            }
        );
    }

    /// A write refused with EFBIG (the file size limit with SIGXFSZ ignored) says so in a hint,
    /// wherever it is in the chain, unless the tool has a hint of its own.
    #[test]
    fn a_file_grown_too_large_gets_a_hint() {
        let efbig = || std::io::Error::from_raw_os_error(27);
        assert_eq!(
            judge(&wrapped(efbig())),
            Verdict {
                code: exit::FAILURE,
                hint: Some(FILE_TOO_LARGE_HINT.into()),
            }
        );
        let in_ca = CaError::Io {
            path: "out.pem".into(),
            source: efbig(),
        };
        assert_eq!(judge(&in_ca).hint.as_deref(), Some(FILE_TOO_LARGE_HINT));
        let own = verdict(&in_ca, Role::Judge, |_| Some("the tool's own".into()));
        assert_eq!(own.hint.as_deref(), Some("the tool's own"));
        assert_eq!(judge(&wrapped(std::io::Error::from_raw_os_error(28))).hint, None);
        assert!(FILE_TOO_LARGE_HINT.contains("`ulimit -f`"));
    }

    #[test]
    fn pki_errors_exit_by_their_class() {
        assert_eq!(code(&rejected()), exit::REJECTED);
        assert_eq!(code(&wrapped(rejected())), exit::REJECTED);
        assert_eq!(code(&unusable()), exit::FAILURE);
        assert_eq!(code(&PkiError::NoRoots), exit::FAILURE);
        // `sign` makes signatures: a "no" about its inputs means they are unfit (exit 3).
        assert_eq!(verdict(&rejected(), Role::Producer, |_| None).code, exit::FAILURE);
        assert_eq!(verdict(&unusable(), Role::Producer, |_| None).code, exit::FAILURE);
        // Tessera's generic hints.
        assert_eq!(
            judge(&PkiError::PassphraseRequired { what: "ca.key".into() })
                .hint
                .as_deref(),
            Some("give the passphrase with --passphrase-file FILE or the TESSERA_PASSPHRASE environment variable")
        );
        assert_eq!(
            judge(&rejected()).hint.as_deref(),
            Some("pass the issuing CA's root with --root and any intermediates with --chain")
        );
    }

    #[test]
    fn ca_errors_exit_by_their_class() {
        let time = datetime!(2030-01-01 0:00 UTC);
        let rejections = [
            CaError::Refused(PkiError::NameConstraintViolation),
            CaError::OutlivesIssuer {
                requested: time,
                issuer_not_after: time,
            },
            CaError::Unusable {
                what: "the CA".into(),
                reason: "r".into(),
            },
            CaError::Pki(rejected()),
        ];
        for error in rejections {
            assert!(error.is_rejection(), "{error:?}");
            assert_eq!(code(&error), exit::REJECTED, "{error:?}");
        }
        let failures = [
            CaError::NotACa { dir: "ca".into() },
            CaError::invalid("days", "too many"),
            CaError::IssuerNotValid {
                time,
                not_before: time,
                not_after: time,
            },
            CaError::Pki(unusable()),
        ];
        for error in failures {
            assert!(!error.is_rejection(), "{error:?}");
            assert_eq!(code(&error), exit::FAILURE, "{error:?}");
        }
        // The one usage error the library reports.
        assert_eq!(code(&CaError::invalid("--out", "the path must be UTF-8")), exit::USAGE);
        // A wrapped PkiError speaks for itself: its code and its hint.
        assert_eq!(
            judge(&CaError::Pki(PkiError::WrongPassphrase { what: "ca.key".into() })),
            Verdict {
                code: exit::FAILURE,
                hint: Some("check the passphrase file or TESSERA_PASSPHRASE; the key file itself is unchanged".into()),
            }
        );
    }

    #[test]
    fn sign_errors_exit_by_their_class_and_role() {
        let untrusted = || SignError::Untrusted {
            when: CheckTime::Now,
            source: rejected(),
        };
        for error in [SignError::DigestMismatch, untrusted(), SignError::Pki(rejected())] {
            assert!(error.is_rejection(), "{error:?}");
            assert_eq!(code(&error), exit::REJECTED, "{error:?}");
            assert_eq!(
                verdict(&error, Role::Producer, |_| None).code,
                exit::FAILURE,
                "{error:?}"
            );
        }
        let failures = [
            SignError::io("m.so", std::io::Error::from(std::io::ErrorKind::NotFound)),
            SignError::NoSignature {
                path: "m.so".into(),
                sig: "m.so.sig".into(),
            },
            SignError::Untrusted {
                when: CheckTime::Now,
                source: unusable(),
            },
            SignError::Pki(unusable()),
        ];
        for error in failures {
            assert!(!error.is_rejection(), "{error:?}");
            assert_eq!(code(&error), exit::FAILURE, "{error:?}");
        }
        // The tool's hint comes first; Untrusted is not a bare wrapper, so no generic hint.
        let hinted = verdict(&untrusted(), Role::Judge, |e| {
            e.downcast_ref::<SignError>().map(|_| "pass the root".to_string())
        });
        assert_eq!(hinted.hint.as_deref(), Some("pass the root"));
        assert_eq!(judge(&untrusted()).hint, None);
    }

    #[test]
    fn channel_errors_exit_by_their_class() {
        let refused = ChannelError::Io {
            operation: "read",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        };
        let load = |source| ChannelError::Load {
            what: "trust store ca.pem".into(),
            source,
        };
        for error in [refused, load(rejected())] {
            assert!(error.is_rejection(), "{error:?}");
            assert_eq!(code(&error), exit::REJECTED, "{error:?}");
        }
        for error in [
            ChannelError::Timeout {
                phase: "handshake",
                seconds: 1.0,
            },
            load(unusable()),
        ] {
            assert!(!error.is_rejection(), "{error:?}");
            assert_eq!(code(&error), exit::FAILURE, "{error:?}");
        }
    }

    #[test]
    fn an_error_tessera_does_not_know_could_not_run() {
        let io = std::io::Error::other("disk on fire");
        assert_eq!(
            judge(&wrapped(io)),
            Verdict {
                code: exit::FAILURE,
                hint: None,
            }
        );
    }

    #[test]
    fn error_chain_is_the_report_line() {
        assert_eq!(
            error_chain(&wrapped(unusable())),
            "cannot run: ca.pem is not valid: it ends too early"
        );
    }
}
