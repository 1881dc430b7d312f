//! The mini certificate authority: CA directories, profiles, issuing from new keys or CSRs,
//! the crash- and concurrency-safe state store (SQLite or PostgreSQL), revocation and CRLs.
//!
//! Every certificate is checked through [`crate::pki::TrustStore::verify`] against the CA's own
//! chain before it is handed out, so name constraints and path lengths are enforced at issuance
//! by the same code that enforces them at verification.

mod authority;
mod check;
mod crl_file;
mod csr;
mod database;
mod error;
mod profile;
mod revocation;
pub mod store;

pub use authority::{
    CertificateAuthority, CrlStatus, DEFAULT_CRL_LIFETIME, EARLIEST_TIME, InitRequest, IssueRequest, Issued,
    IssuedFiles, LATEST_TIME, Leftover, Revoked, crl_status, read_ca_certificates,
};
pub use database::{DATABASE_FILE, Database, Record, Revocation, Status, normalise_serial};
pub use error::CaError;
pub use profile::{Profile, SubjectAltName};
pub use revocation::RevocationReason;
pub use store::{ListFilter, Location, Store};
