//! cargo-fuzz target `csr`: see `tessera_fuzz::csr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::csr(data));
