//! cargo-fuzz target `embedded`: see `tessera_fuzz::embedded`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::embedded(data));
