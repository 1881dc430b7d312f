//! Single-core throughput of each instruction set against one SHAKE128 at a time (the `cshake`
//! crate): `cargo run --release -p tessera-keccak --example speed`.
#![allow(clippy::disallowed_macros)]
use cshake::CShake128;
use cshake::digest::{ExtendableOutput, Update, XofReader};
use std::time::Instant;
use tessera_keccak::{Isa, Shake128x4};

fn main() {
    const LEAF: usize = 8192;
    const LEAVES: usize = 8192; // 64 MiB
    let data: Vec<u8> = (0..LEAF * LEAVES).map(|i| (i * 31 + i / 7) as u8).collect();
    let mb = data.len() as f64 / 1e6;
    let start = Instant::now();
    let mut sink = 0u8;
    for leaf in data.chunks(LEAF) {
        let mut h = CShake128::default();
        h.update(leaf);
        let mut out = [0u8; 32];
        h.finalize_xof().read(&mut out);
        sink ^= out[0];
    }
    let scalar = mb / start.elapsed().as_secs_f64();
    println!("portable (cshake crate): {scalar:7.1} MB/s");
    for isa in [Isa::Avx2, Isa::Avx512Vl] {
        let Some(h) = Shake128x4::with_isa(isa) else {
            println!("{}: not on this CPU", isa.name());
            continue;
        };
        let start = Instant::now();
        for four in data.chunks(4 * LEAF) {
            let out = h.hash_256([
                &four[..LEAF],
                &four[LEAF..2 * LEAF],
                &four[2 * LEAF..3 * LEAF],
                &four[3 * LEAF..],
            ]);
            sink ^= out[3][0];
        }
        let speed = mb / start.elapsed().as_secs_f64();
        println!("{:8}: {speed:7.1} MB/s ({:.2}x portable)", isa.name(), speed / scalar);
    }
    println!("(checksum {sink})");
}
