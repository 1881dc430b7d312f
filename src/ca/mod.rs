//! The mini certificate authority: CA directories, profiles, issuing from new keys or CSRs,
//! the crash- and concurrency-safe state store (SQLite or PostgreSQL), revocation and CRLs.
//!
//! Every certificate is checked through [`crate::pki::TrustStore::verify`] against the CA's own
//! chain before it is handed out, so name constraints and path lengths are enforced at issuance
//! by the same code that enforces them at verification.
//!
//! One concept per file: `authority.rs` (the CA directory: create, open, facts), `issue.rs`
//! (issuing leaves and writing their files), `revocation.rs` (revocations, CRLs, `crl.pem`'s
//! repair), `crl_file.rs` (reading `crl.pem`'s header and checking the CA's signature on it), `csr.rs` (PKCS#10 intake),
//! `distribution.rs` (the CRL, OCSP and caIssuers URLs in issued certificates), `ocsp.rs` (the OCSP
//! responder), `pkcs12.rs` (`ca export --pkcs12`), `renew.rs`
//! (`ca renew`), `profile.rs` (what each kind of certificate may do),
//! `check.rs` (the checks made before anything is signed), `record.rs` (what the store keeps),
//! `store/` (SQLite and PostgreSQL), `legacy.rs` (the `db.json` of earlier releases, imported
//! once), `json.rs` (the `--json` output of the `ca` tool).

mod authority;
mod check;
mod crl_file;
mod csr;
mod distribution;
mod error;
mod issue;
pub mod json;
pub(crate) mod legacy;
pub mod ocsp;
pub mod pkcs12;
mod profile;
mod record;
mod renew;
mod revocation;
pub mod serve;
pub mod store;

pub use authority::{CertificateAuthority, EARLIEST_TIME, InitRequest, LATEST_TIME, read_ca_certificates};
pub use distribution::{DistributionUrls, MAX_URL_LENGTH, MAX_URLS_FILE_SIZE, URLS_FILE, check_url, normalize_url};
pub use error::CaError;
pub use issue::{IssueRequest, Issued, IssuedFiles, Leftover};
pub use profile::Profile;
pub use record::{Record, Revocation, Status};
pub use renew::{REUSED_KEY, Renewal};
pub use revocation::{CrlStatus, DEFAULT_CRL_LIFETIME, Revoked, crl_status};
pub use store::{ListFilter, Location, Store};

pub use crate::pki::{RevocationReason, SubjectAltName};
