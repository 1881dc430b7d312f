//! cargo-fuzz target `verify`: see `tessera_fuzz::verify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::verify(data));
