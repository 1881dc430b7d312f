//! The four-way kernel against the RustCrypto `keccak` and `cshake` crates, on every instruction
//! set this CPU has.
#![allow(clippy::unwrap_used, clippy::disallowed_macros)]

use cshake::CShake128;
use cshake::digest::{ExtendableOutput, Update, XofReader};
use tessera_keccak::{Isa, OUTPUT_LEN, SHAKE128_RATE, Shake128x4};

/// Every instruction set of this CPU. An x86-64 without AVX2 (pre-2013) runs none, and says so.
fn hashers() -> Vec<Shake128x4> {
    let found: Vec<_> = [Isa::Avx2, Isa::Avx512Vl]
        .into_iter()
        .filter_map(Shake128x4::with_isa)
        .collect();
    eprintln!(
        "instruction sets tested: {:?}",
        found.iter().map(|h| h.isa().name()).collect::<Vec<_>>()
    );
    found
}

/// Deterministic bytes, different for each seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn shake128_256(input: &[u8]) -> [u8; OUTPUT_LEN] {
    let mut hasher = CShake128::default(); // cSHAKE128 with N = S = "" is SHAKE128 (SP 800-185 §3.3)
    hasher.update(input);
    let mut out = [0u8; OUTPUT_LEN];
    hasher.finalize_xof().read(&mut out);
    out
}

#[test]
fn detection_matches_cpuinfo() {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return;
    };
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|line| line.starts_with("flags"))
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    let has = |flag: &str| flags.contains(&flag);
    assert_eq!(Isa::Avx2.is_supported(), has("avx2"));
    assert_eq!(
        Isa::Avx512Vl.is_supported(),
        has("avx2") && has("avx512f") && has("avx512vl")
    );
    let best = Shake128x4::detect().map(Shake128x4::isa);
    let expected = if Isa::Avx512Vl.is_supported() {
        Some(Isa::Avx512Vl)
    } else if Isa::Avx2.is_supported() {
        Some(Isa::Avx2)
    } else {
        None
    };
    assert_eq!(best, expected);
}

#[test]
fn permutation_matches_keccak_crate() {
    let keccak = keccak::Keccak::new();
    for hasher in hashers() {
        for round in 0..64u64 {
            let mut states = [[0u64; 25]; 4];
            for (k, state) in states.iter_mut().enumerate() {
                for (i, lane) in state.iter_mut().enumerate() {
                    let b = bytes(round * 1000 + k as u64 * 100 + i as u64, 8);
                    *lane = u64::from_le_bytes(b.try_into().unwrap());
                }
            }
            if round == 0 {
                states[0] = [0; 25];
                states[1] = [u64::MAX; 25];
            }
            let mut expected = states;
            for state in &mut expected {
                keccak.with_f1600(|f1600| f1600(state));
            }
            hasher.f1600(&mut states);
            assert_eq!(states, expected, "{} round {round}", hasher.isa().name());
        }
    }
}

#[test]
fn shake128_matches_cshake_crate_at_every_length_around_the_rate() {
    let lengths = (0..=3 * SHAKE128_RATE + 2).chain([8191, 8192, 8193, 65_536]);
    for hasher in hashers() {
        for len in lengths.clone() {
            let inputs: Vec<Vec<u8>> = (0..4).map(|k| bytes(len as u64 * 4 + k, len)).collect();
            let got = hasher.hash_256([&inputs[0], &inputs[1], &inputs[2], &inputs[3]]);
            for k in 0..4 {
                assert_eq!(
                    got[k],
                    shake128_256(&inputs[k]),
                    "{} length {len} input {k}",
                    hasher.isa().name()
                );
            }
        }
    }
}

#[test]
fn inputs_of_different_lengths_are_each_hashed_right() {
    for hasher in hashers() {
        let inputs = [bytes(1, 0), bytes(2, 167), bytes(3, 168), bytes(4, 8192)];
        let got = hasher.hash_256([&inputs[0], &inputs[1], &inputs[2], &inputs[3]]);
        for k in 0..4 {
            assert_eq!(got[k], shake128_256(&inputs[k]), "{} input {k}", hasher.isa().name());
        }
    }
}

/// FIPS 202 example value: SHAKE128 of the empty string, first 32 bytes.
#[test]
fn known_answer_empty_input() {
    let expected = [
        0x7f, 0x9c, 0x2b, 0xa4, 0xe8, 0x8f, 0x82, 0x7d, 0x61, 0x60, 0x45, 0x50, 0x76, 0x05, 0x85, 0x3e, 0xd7, 0x3b,
        0x80, 0x93, 0xf6, 0xef, 0xbc, 0x88, 0xeb, 0x1a, 0x6e, 0xac, 0xfa, 0x66, 0xef, 0x26,
    ];
    for hasher in hashers() {
        assert_eq!(hasher.hash_256([b"".as_slice(); 4]), [expected; 4]);
    }
}
