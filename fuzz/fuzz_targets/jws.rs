//! cargo-fuzz target `jws`: see `tessera_fuzz::jws`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::jws(data));
