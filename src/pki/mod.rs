//! Trust decisions and the certificate plumbing they need.
//!
//! - [`TrustStore`]: trusted roots plus CRLs; [`TrustStore::verify`] answers "is this
//!   certificate trusted for [`Usage`] U at time T?" through rustls-webpki and returns a
//!   [`VerifiedChain`]. It is the only place in Tessera where a chain is judged. A
//!   [`VerifyRequest`] can also limit the chain's depth and require [`KeyUsage`] bits; the rules
//!   Tessera adds to rustls-webpki are reported as [`PolicyViolation`]s, the RFC 5280 profile rules
//!   it leaves out as [`ProfileRule`]s, and webpki's own reasons as [`RejectionReason`]s.
//! - [`pem`]: reading certificates and CRLs from PEM/DER files.
//! - [`PrivateKey`] and [`Passphrase`]: PKCS#8 keys at rest, optionally encrypted.
//! - [`CertificateInfo`] and [`CrlInfo`]: inspection for people and JSON; [`read_certificates_or_crls`]
//!   tells which of the two some bytes hold.
//! - The X.509 vocabulary (`x509.rs`, a leaf module): [`Serial`], [`SubjectAltName`],
//!   [`RevocationReason`], [`hex`] and [`rfc3339`].

mod error;
mod inspect;
mod key;
mod pbe;
pub mod pem;
mod policy;
mod profile;
mod revocation;
#[cfg(test)]
mod testing;
mod trust;
mod x509;

pub(crate) use error::in_the_chain;
pub use error::{PkiError, RejectionReason};
pub(crate) use error::{describe_x509, error_chain};
pub use inspect::{CertificateInfo, CrlInfo, Inspected, RevokedEntry, read_certificates_or_crls};
pub(crate) use key::algorithm_name;
pub use key::{ENCRYPTED_PRIVATE_KEY, KeyAlgorithm, PRIVATE_KEY, Passphrase, PrivateKey};
pub use policy::{KeyUsage, MAX_SERIAL_OCTETS, PolicyViolation};
pub use profile::ProfileRule;
pub use trust::{TrustStore, Usage, VerifiedChain, VerifyRequest};
pub use x509::{
    InvalidSan, RandomFailed, RevocationReason, Serial, SerialError, SubjectAltName, from_hex, hex, rfc3339,
};
