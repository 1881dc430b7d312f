//! The one error type of the `ca` module.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::pki::{PkiError, RevocationReason, Serial, rfc3339};

/// Why a CA operation failed. Nothing is written when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file of the CA directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no CA (no `ca.pem`).
    #[error("{dir} is not a CA directory (no ca.pem)")]
    NotACa {
        /// The directory.
        dir: PathBuf,
    },
    /// `init` was asked to create a CA where one already exists.
    #[error("{dir} already holds a CA; refusing to overwrite it")]
    AlreadyInitialised {
        /// The directory.
        dir: PathBuf,
    },
    /// An output file of `ca issue` exists before anything was issued (see
    /// [`super::CertificateAuthority::issue_to`]); nothing was issued or recorded.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    OutputExists {
        /// The file in the way.
        path: PathBuf,
    },
    /// A request parameter is unusable.
    #[error("invalid {field}: {reason}")]
    InvalidRequest {
        /// The parameter (`name`, `san`, `days`, …).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The requested lifetime would outlive the issuing CA.
    #[error(
        "the certificate would expire at {}, after its issuer (which expires at {})",
        rfc3339(*requested),
        rfc3339(*issuer_not_after)
    )]
    OutlivesIssuer {
        /// The notAfter asked for.
        requested: OffsetDateTime,
        /// The issuer's notAfter.
        issuer_not_after: OffsetDateTime,
    },
    /// The issuing CA is not valid now.
    #[error(
        "the CA certificate is not valid at {} (valid from {} to {})",
        rfc3339(*time),
        rfc3339(*not_before),
        rfc3339(*not_after)
    )]
    IssuerNotValid {
        /// The time of issuance.
        time: OffsetDateTime,
        /// Issuer notBefore.
        not_before: OffsetDateTime,
        /// Issuer notAfter.
        not_after: OffsetDateTime,
    },
    /// The new certificate would not verify under the CA's chain (name constraints, path
    /// length, …): the CA refuses to issue it.
    #[error("refusing to issue: {0}")]
    Refused(#[source] PkiError),
    /// What a command would create (a CA, a certificate) would be refused by Tessera's own
    /// verifier, so it is not created. Nothing was written or recorded.
    #[error("refusing to create {what}: {reason}")]
    Unusable {
        /// What would have been created (`the CA`).
        what: String,
        /// Why Tessera would refuse it, naming the cause.
        reason: String,
    },
    /// A CSR could not be parsed, or its self-signature does not verify.
    #[error("certificate signing request {what} is unusable: {reason}")]
    BadCsr {
        /// The CSR's source.
        what: String,
        /// Why.
        reason: String,
    },
    /// A well-formed CSR that Tessera will not issue for: its key type, a signature algorithm
    /// it cannot verify, or a name it cannot put in a certificate. Nothing was issued.
    #[error("cannot issue for the certificate signing request: {reason}")]
    UnsupportedCsr {
        /// What is not supported, named (e.g. `the request's key is EC P-521, …`).
        reason: String,
        /// What to do instead.
        fix: String,
    },
    /// The database names no certificate with this serial.
    #[error("no certificate with serial {serial} was issued by this CA")]
    UnknownSerial {
        /// The serial asked for.
        serial: Serial,
    },
    /// The certificate is already revoked, for another reason than the one asked for. A
    /// revocation is final: its time and reason are not changed. (Revoking again for the same
    /// reason, or without one, succeeds and changes nothing.)
    #[error("certificate {serial} is already revoked, since {} ({reason})", rfc3339(*at))]
    AlreadyRevoked {
        /// Its serial.
        serial: Serial,
        /// When it was revoked.
        at: OffsetDateTime,
        /// The recorded reason.
        reason: RevocationReason,
    },
    /// The issuance database is missing although the directory holds a CA. The CA refuses to
    /// run without it rather than start afresh: a new database would forget every revocation.
    #[error("the issuance database {path} is missing")]
    MissingDatabase {
        /// Where the database should be.
        path: PathBuf,
    },
    /// The issuance database cannot be used: empty, truncated, unparseable, of an unknown
    /// format version, or belonging to another CA.
    #[error("issuance database {path} is damaged: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA's store cannot be used right now: PostgreSQL unreachable, a busy SQLite store
    /// past its timeout, a full disk, or `--db` contradicting what the CA directory records.
    /// Nothing was changed.
    #[error("cannot use the CA's store {store}: {reason}")]
    Store {
        /// The store: a path, or a URL without its password.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// The store asked for (`--db`/`TESSERA_DB`, or none for `DIR/ca.db`) is not the one
    /// `DIR/store.json` records for this CA, or `ca move-store` was asked to move a CA that
    /// already keeps its state in PostgreSQL. No database was contacted and nothing was changed;
    /// `fix` says what to give instead.
    #[error("cannot use the CA's store {store}: {reason}")]
    WrongStore {
        /// The store: `DIR/store.json`, or a URL without its password.
        store: String,
        /// What contradicts what.
        reason: String,
        /// What to do: which option to give or leave out.
        fix: String,
    },
    /// `DIR/ca.db` is fenced off by `ca move-store`: the CA's state was moved (or is being
    /// moved) to PostgreSQL, and the SQLite store takes no more writes. When `DIR/store.json`
    /// still says `sqlite`, a move was cut short: running `ca move-store` again finishes it.
    /// Nothing was changed.
    #[error(
        "{path} was moved to PostgreSQL by ca move-store and takes no more writes{}",
        .unfinished.then_some(", but the move was cut short (store.json still names it)").unwrap_or("")
    )]
    StoreMoved {
        /// The fenced SQLite file.
        path: PathBuf,
        /// `store.json` still names the SQLite store: the move did not finish.
        unfinished: bool,
    },
    /// `crl.pem` is newer than the issuance database: the database was replaced by an older
    /// copy, which may lack revocations that the CRL has. Nothing is written until that is
    /// resolved, so no revocation is undone.
    #[error(
        "{crl} has CRL number {crl_number}, but the issuance database has only reached \
         {database_crl_number}: the database is older than the CRL"
    )]
    DatabaseBehindCrl {
        /// The CRL file.
        crl: PathBuf,
        /// Its CRL number.
        crl_number: u64,
        /// The last CRL number the database recorded.
        database_crl_number: u64,
    },
    /// A previous `ca init` in this directory did not finish: there is a CA key (or chain or
    /// database) but no `ca.pem`.
    #[error("{dir} holds an unfinished CA ({found} exists but ca.pem does not): an earlier `ca init` was interrupted")]
    UnfinishedInit {
        /// The directory.
        dir: PathBuf,
        /// The file found.
        found: String,
    },
    /// An output file of an earlier issuance is there without its certificate (`PREFIX.key`
    /// without `PREFIX.pem`), and cannot be shown to be the leftover of an interrupted issue.
    #[error("{path} exists without {certificate}: {reason}")]
    UnfinishedOutput {
        /// The file found.
        path: PathBuf,
        /// The certificate that is missing beside it.
        certificate: PathBuf,
        /// What is known about it.
        reason: String,
    },
    /// Key, certificate or PEM trouble.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rcgen refused to build a certificate or CRL.
    #[error("cannot build {what}: {reason}")]
    Build {
        /// The object being built.
        what: &'static str,
        /// rcgen's reason.
        reason: String,
    },
}

impl CaError {
    /// True when the CA ran and refused on policy (name constraints, lifetime, a final
    /// revocation, a CA its own verifier would refuse) or a trust check said no (exit code 1);
    /// false for unusable input, I/O or store trouble (exit code 3). See
    /// [`crate::pki::PkiError::is_rejection`].
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Refused(_) | Self::OutlivesIssuer { .. } | Self::AlreadyRevoked { .. } | Self::Unusable { .. } => {
                true
            }
            Self::Pki(e) => e.is_rejection(),
            Self::Io { .. }
            | Self::NotACa { .. }
            | Self::AlreadyInitialised { .. }
            | Self::InvalidRequest { .. }
            | Self::IssuerNotValid { .. }
            | Self::BadCsr { .. }
            | Self::UnsupportedCsr { .. }
            | Self::UnknownSerial { .. }
            | Self::MissingDatabase { .. }
            | Self::Database { .. }
            | Self::Store { .. }
            | Self::WrongStore { .. }
            | Self::StoreMoved { .. }
            | Self::DatabaseBehindCrl { .. }
            | Self::UnfinishedInit { .. }
            | Self::UnfinishedOutput { .. }
            | Self::OutputExists { .. }
            | Self::Build { .. } => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn build(what: &'static str, e: rcgen::Error) -> Self {
        Self::Build {
            what,
            reason: e.to_string(),
        }
    }
}
