//! cargo-fuzz target `statement`: see `tessera_fuzz::statement`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::statement(data));
