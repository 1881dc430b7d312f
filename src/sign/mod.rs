//! Signed load modules: sign a module's SHA-3 digest with an Ed25519 code-signing key, verify it
//! offline against a pinned root, and load exactly the bytes that were verified.
//!
//! Which API do I use?
//! - To sign: [`Signer::with_certificate`] (a key and its code-signing chain) or
//!   [`Signer::with_raw_key`], then [`Signer::sign_reader`] / [`Signer::sign_bytes`]; write
//!   [`Bundle::to_pem`] next to the module, or append [`embed::trailer`] to it.
//! - To load a module: [`load_verified`] / [`Verifier::load_verified`], which returns a
//!   [`VerifiedModule`] holding the verified bytes.
//! - To check a stream without keeping it: [`Verifier::verify_stream`] (detached signature),
//!   [`Verifier::verify_open_file`] (an open file, embedded or detached signature), or
//!   [`Verifier::verify_embedded_stream`] (a pipe ending in an embedded signature).
//!
//! A [`Verifier`] reads the time at each verification (the system clock, unless
//! [`Verifier::at`] fixes it or [`Verifier::with_clock`] supplies another clock), so one verifier
//! can live as long as the program.
//!
//! The normative format is in `docs/FORMAT.md`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile};
//! use tessera::pki::{KeyAlgorithm, TrustStore};
//! use tessera::sign::{Bundle, SignRequest, Signer, Verifier};
//!
//! let now = time::macros::datetime!(2030-01-01 00:00 UTC);
//! // A CA and a code-signing certificate with an Ed25519 key.
//! let dir = tempfile::tempdir()?;
//! let ca = CertificateAuthority::init(&dir.path().join("ca"), &InitRequest::new("Root"), None, now)?;
//! let request = IssueRequest::new(Profile::CodeSigning, "Signer").with_key_algorithm(KeyAlgorithm::Ed25519);
//! let issued = ca.issue(&request, now)?;
//! let key = issued.key.ok_or("no key")?;
//!
//! // Sign: a detached bundle, PEM text to store as `module.so.sig`.
//! let signer = Signer::with_certificate(&key, issued.chain)?;
//! let module = b"\x7fELF... a loadable module";
//! let pem = signer.sign_bytes(module, &SignRequest::new("module.so", now))?.to_pem();
//!
//! // Verify, pinning the root, and get the verified bytes back.
//! let mut trust = TrustStore::new();
//! trust.add_root(ca.root().clone(), "root")?;
//! // `at(now)` fixes the verification time; without it, each verification reads the clock.
//! let verifier = Verifier::new(trust).at(now).require_name("module.so");
//! let bundle = Bundle::from_pem(pem.as_bytes(), "module.so.sig")?;
//! let verified = verifier.verify_reader(&bundle, &module[..], "module.so")?;
//! assert_eq!(verified.bytes(), module);
//!
//! // One changed bit is refused.
//! let mut tampered = module.to_vec();
//! tampered[0] ^= 1;
//! assert!(verifier.verify_reader(&bundle, &tampered[..], "module.so").is_err());
//! # Ok(()) }
//! ```

mod bundle;
mod der;
// Hashing internals: reached from outside only through `tessera::internal`.
pub(crate) mod digest;
pub mod embed;
mod error;
mod keys;
pub(crate) mod parallelhash;
mod signer;
mod statement;
mod verifier;

pub use bundle::{BUNDLE_LABEL, BUNDLE_VERSION, Bundle, MAX_BUNDLE_SIZE, MAX_CHAIN_LEN};
pub use digest::HashAlgorithm;
pub use error::{CheckTime, SignError};
pub use keys::{GeneratedKeyPair, KeyId, PUBLIC_KEY, PublicKey, generate_key_pair};
pub use signer::{SignRequest, Signer};
pub use statement::{CONTEXT, MAX_MODULE_LEN, MAX_NAME_LEN, STATEMENT_VERSION, SignerId, Statement, check_name};
pub use verifier::{
    MAX_CLOCK_SKEW, SignerInfo, Verification, VerifiedModule, Verifier, default_signature_path, load_verified,
};
