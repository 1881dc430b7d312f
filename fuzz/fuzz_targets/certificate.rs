//! cargo-fuzz target `certificate`: see `tessera_fuzz::certificate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::certificate(data));
