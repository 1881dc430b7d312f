//! Tessera: a mini certificate authority, signed load modules and a rotating mutual-TLS channel
//! that share one trust model.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ca;
pub mod pki;

pub mod channel;

pub mod cli;
mod fsutil;
