//! cargo-fuzz target `pkcs8`: see `tessera_fuzz::pkcs8`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::pkcs8(data));
