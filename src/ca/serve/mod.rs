//! `ca serve`: the CA as a network service (DESIGN.md, "`ca serve`"): ACME (RFC 8555) for real
//! clients, the CRL and OCSP over HTTP, several instances on one PostgreSQL store.
//!
//! One concept per file: `jws.rs` (JWS in flattened JSON, JWKs and their RFC 7638
//! thumbprints, RFC 8555 §6.2), `problem.rs` (RFC 7807 problem documents with RFC 8555 §6.7's
//! error types), `ari.rs` (renewal information, RFC 9773), `ratelimit.rs` (per-account and
//! global request limits), `va.rs` (http-01 and tls-alpn-01 validation, RFC 8555 §8.3 and
//! RFC 8737), `periodic.rs` (CRL regeneration and clean-up under leases in the store).

pub mod ari;
pub mod jws;
pub mod periodic;
pub mod problem;
pub mod ratelimit;
pub mod va;
