//! Tessera: a mini certificate authority, signed load modules and a rotating mutual-TLS channel
//! that share one trust model.
//!
//! A *tessera* was the Roman token split between two parties to prove who is who. This crate
//! does that job for people who run their own PKI, ship signed code, or need a hardened TLS
//! channel.
//!
//! # Which API do I use?
//!
//! | I want to… | use |
//! |---|---|
//! | create a CA, issue, revoke, write CRLs | [`ca::CertificateAuthority`] |
//! | run the CA as an ACME (RFC 8555) server with the CRL and OCSP over HTTP | [`ca::serve::serve`] with a [`ca::serve::ServeConfig`] |
//! | decide whether a certificate is trusted for a usage at a time | [`pki::TrustStore::verify`] |
//! | read certificates, CRLs, keys; inspect a certificate | [`pki::pem`], [`pki::PrivateKey`], [`pki::CertificateInfo`] |
//! | sign a module (detached or embedded) | [`sign::Signer`] |
//! | load a module only if it is signed by someone I trust | [`sign::load_verified`] → [`sign::VerifiedModule`] |
//! | a mutual-TLS connection whose keys rotate by policy | [`channel::server_config`] / [`channel::client_config`] + [`channel::ChannelStream`] with a [`channel::RotationPolicy`] |
//! | length-prefixed messages over it | [`channel::ChannelStream::send_message`] / [`channel::ChannelStream::recv_message`] |
//! | reload certificates and CRLs without a restart | [`channel::ReloadableServerConfig`] |
//! | write a tool with Tessera's exit codes and messages | `cli` (the `cli` feature) |
//! | name a certificate, a CRL, a time or a rustls config in my own signatures | [`types`] |
//!
//! Every trust decision (`ca verify`, issuance self-checks, module signatures, TLS peers) goes
//! through [`pki::TrustStore::verify`], which builds and checks paths with rustls-webpki.
//!
//! # Example: create a CA and issue a certificate
//!
//! ```
//! use std::time::Duration;
//! use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile, SubjectAltName};
//! use tessera::pki::{TrustStore, Usage, VerifyRequest};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let now = tessera::types::OffsetDateTime::now_utc();
//!
//! // A root CA (key unencrypted here; pass a Passphrase to encrypt it) and an intermediate.
//! let root = CertificateAuthority::init(&dir.path().join("root"), &InitRequest::new("Example Root"), None, now)?;
//! let mut constrained = InitRequest::new("Example Issuing CA");
//! constrained.permitted_dns = vec!["example.org".into()];
//! let issuing = root.init_intermediate(&dir.path().join("issuing"), &constrained, None, now)?;
//!
//! // A server certificate, from a fresh P-256 key.
//! let request = IssueRequest::new(Profile::Server, "www.example.org")
//!     .with_sans([SubjectAltName::parse("ip:127.0.0.1")?])
//!     .with_lifetime(Duration::from_secs(7 * 86_400));
//! let issued = issuing.issue(&request, now)?;
//! assert_eq!(issued.info.sans, ["dns:www.example.org", "ip:127.0.0.1"]);
//!
//! // Anyone holding the root can now verify it, for a usage, a name and a time.
//! let mut trust = TrustStore::new();
//! trust.add_root(root.certificate().clone(), "root")?;
//! let verified = trust.verify(
//!     &issued.certificate,
//!     &issued.chain[1..],
//!     &VerifyRequest::new(Usage::Server, now).with_name("www.example.org"),
//! )?;
//! assert_eq!(verified.path().len(), 3);
//!
//! // Outside the name constraints: refused, nothing recorded.
//! let outside = IssueRequest::new(Profile::Server, "www.example.com");
//! assert!(issuing.issue(&outside, now).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! Module signing and the TLS channel have their own doctested examples in [`sign`] and
//! [`channel`].
//!
//! # Dependencies
//!
//! rustls (ring provider only; no aws-lc) and tokio-rustls for TLS; rustls-webpki for every path
//! validation and CRL check; rcgen to issue; x509-parser to inspect; ring, sha3 and
//! ed25519-dalek (`verify_strict`) for the primitives; pkcs8 (PBES2) for encrypted keys.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | on | `tessera::cli` (exit codes, `tool: error:` reports, argument parsing, passphrase prompts, logging, progress bars) and the binaries `ca`, `sign`, `verify`, `echo-server`, `echo-client`; pulls in clap, anyhow, tracing-subscriber, indicatif, rpassword and terminal_size |
//!
//! Everything else (`pki`, `ca`, `sign`, `channel`) is always built. A library user who needs no
//! command-line plumbing writes
//!
//! ```toml
//! [dependencies]
//! tessera = { version = "0.1", default-features = false }
//! ```
//!
//! and names the outside types of Tessera's signatures through [`types`] (no direct dependency
//! on rustls-pki-types, time, rustls or tokio-rustls needed).
//!
//! # Fast debug builds of a dependent crate
//!
//! Key derivation (scrypt, PBKDF2), SHA-3 and Ed25519 are tens of times slower unoptimised: an
//! encrypted key takes seconds to open and a large module minutes to hash in a debug build.
//! Cargo applies a dependency's `[profile]` settings only in that dependency's own workspace,
//! so a crate that depends on Tessera copies these stanzas into its own `Cargo.toml` (its tests
//! and `cargo run` then hash and derive keys at release speed; its own code stays unoptimised):
//!
//! ```toml
//! [profile.dev.package.scrypt]
//! opt-level = 3
//! [profile.dev.package.pbkdf2]
//! opt-level = 3
//! [profile.dev.package.salsa20]
//! opt-level = 3
//! [profile.dev.package.sha1]
//! opt-level = 3
//! [profile.dev.package.sha2]
//! opt-level = 3
//! [profile.dev.package.sha3]
//! opt-level = 3
//! [profile.dev.package.keccak]
//! opt-level = 3
//! [profile.dev.package.cshake]
//! opt-level = 3
//! [profile.dev.package.aes]
//! opt-level = 3
//! [profile.dev.package.cbc]
//! opt-level = 3
//! [profile.dev.package.curve25519-dalek]
//! opt-level = 3
//! [profile.dev.package.ed25519-dalek]
//! opt-level = 3
//! ```
//!
//! # What Tessera does not do
//!
//! - No OCSP stapling, no dns-01 (so no wildcard certificates over ACME), no ACME key change
//!   or external account binding; the online CA ([`ca::serve`]) speaks ACME, CRL and OCSP only.
//! - No RSA key generation (it verifies RSA chains issued elsewhere).
//! - No TLS below 1.2, and TLS 1.2 only when asked for explicitly.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Every `pub` item is reachable from the crate root (the API or `internal`); the rest is
// `pub(crate)`.
#![warn(unreachable_pub)]

pub mod ca;
pub mod channel;
#[cfg(feature = "cli")]
pub mod cli;
pub mod pki;
pub mod sign;

pub mod types {
    //! The outside types that appear in Tessera's public signatures, re-exported so that a dependent
    //! crate can name them without depending on rustls-pki-types, time, rustls or tokio-rustls
    //! itself (and without having to match their versions to Tessera's).
    //!
    //! | type | from | where Tessera uses it |
    //! |---|---|---|
    //! | [`CertificateDer`] | rustls-pki-types | a DER certificate: chains, roots, issued certificates, signer certificates |
    //! | [`CertificateRevocationListDer`] | rustls-pki-types | a DER CRL: [`crate::pki::TrustStore`], [`crate::pki::pem::parse_crls`] |
    //! | [`OffsetDateTime`] | time | every "at this time" parameter (`now`), validity bounds |
    //! | [`ServerConfig`], [`ClientConfig`] | rustls | [`crate::channel::server_config`], [`crate::channel::client_config`], [`crate::channel::ChannelStream::accept`] / [`crate::channel::ChannelStream::connect`] |
    //! | [`SupportedCipherSuite`], [`ProtocolVersion`], [`AlertDescription`] | rustls | what [`crate::channel::ChannelStream`] and [`crate::channel::ChannelError`] report about a connection |
    //! | [`TlsStream`] | tokio-rustls | the stream inside a [`crate::channel::ChannelStream`] |
    //!
    //! Durations (certificate lifetimes, rotation intervals, deadlines) are [`std::time::Duration`].
    //!
    //! ```
    //! use tessera::pki::{TrustStore, Usage, VerifyRequest};
    //! use tessera::types::{CertificateDer, OffsetDateTime};
    //!
    //! /// Whether `leaf` (with its intermediates) is trusted for TLS client authentication.
    //! fn trusted_client(store: &TrustStore, leaf: &CertificateDer<'_>, chain: &[CertificateDer<'_>], now: OffsetDateTime) -> bool {
    //!     store.verify(leaf, chain, &VerifyRequest::new(Usage::Client, now)).is_ok()
    //! }
    //! # assert!(!trusted_client(&TrustStore::new(), &CertificateDer::from(vec![0x30, 0]), &[], OffsetDateTime::UNIX_EPOCH));
    //! ```

    pub use rustls::{AlertDescription, ClientConfig, ProtocolVersion, ServerConfig, SupportedCipherSuite};
    pub use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
    pub use time::OffsetDateTime;
    pub use tokio_rustls::TlsStream;
}

/// Not part of Tessera's API: what its own binaries, benchmarks, tests and fuzz targets reach
/// into below the paved path. Anything here may change or go in any release.
#[doc(hidden)]
pub mod internal {
    /// The streaming hashers behind [`crate::sign::HashAlgorithm`] (benchmarks and the
    /// independent ParallelHash128 and streaming test vectors use them).
    pub use crate::sign::digest::{Hasher, READ_CHUNK, StreamDigest, hash_stream};
    pub use crate::sign::parallelhash::{PARALLELHASH_BLOCK_SIZE, ParallelHash128};

    /// The regular-file check the echo tools run on their inputs before loading them.
    pub use crate::channel::files::check_regular_file;

    /// A pre-store `db.json` CA directory, for the import tests.
    pub use crate::ca::legacy::write_legacy_database;

    /// The key to [`crate::ca::Store`]'s write transactions, for the store suite that runs them
    /// directly against every backend. Everywhere else only the CA's issuance, revocation and
    /// CRL code holds one.
    pub const STORE_WRITE_ACCESS: crate::ca::store::WriteAccess = crate::ca::store::WriteAccess::granted();
}

// Files the binaries compare and replace (`AtomicFile::create`, `find_same_file`) are used only
// by `cli` (which re-exports them) when it is built.
#[cfg_attr(not(feature = "cli"), allow(dead_code, unreachable_pub))]
mod fsutil;
// `printable` is public through `cli` (one function for every tool and message).
#[cfg_attr(not(feature = "cli"), allow(unreachable_pub))]
mod text;
