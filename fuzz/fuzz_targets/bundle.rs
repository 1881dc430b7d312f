//! cargo-fuzz target `bundle`: see `tessera_fuzz::bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::bundle(data));
