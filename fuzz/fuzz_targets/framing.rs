//! cargo-fuzz target `framing`: see `tessera_fuzz::framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera_fuzz::framing(data));
