//! cargo-fuzz target `crl`: see `tessera_fuzz::crl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::crl(data));
