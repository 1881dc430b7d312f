//! ParallelHash128 against an independent implementation (the `tiny-keccak` crate), over sizes
//! around block boundaries, several customization strings, output lengths and thread counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

use proptest::prelude::*;
use tessera::sign::{PARALLELHASH_BLOCK_SIZE, ParallelHash128};
use tiny_keccak::{Hasher as _, ParallelHash};

fn independent(data: &[u8], block_size: usize, custom: &[u8], len: usize) -> Vec<u8> {
    let mut h = ParallelHash::v128(custom, block_size);
    h.update(data);
    let mut out = vec![0u8; len];
    h.finalize(&mut out);
    out
}

fn ours(data: &[u8], block_size: usize, custom: &[u8], len: usize, threads: usize, step: usize) -> Vec<u8> {
    let mut h = ParallelHash128::new(block_size, custom, len).with_threads(threads);
    for chunk in data.chunks(step.max(1)) {
        h.update(chunk);
    }
    h.finalize()
}

#[test]
fn format_block_size_around_boundaries() {
    let b = PARALLELHASH_BLOCK_SIZE;
    let data: Vec<u8> = (0..(40 * b + 3)).map(|i| (i * 31 % 251) as u8).collect();
    for size in [0, 1, b - 1, b, b + 1, 2 * b, 17 * b - 1, 17 * b, 17 * b + 1, 40 * b + 3] {
        let x = &data[..size];
        assert_eq!(
            ours(x, b, b"", 32, 2, 1 << 20),
            independent(x, b, b"", 32),
            "size {size}"
        );
        assert_eq!(
            ours(x, b, b"", 32, 4, 5000),
            independent(x, b, b"", 32),
            "size {size}, split"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_input_any_split(
        data in proptest::collection::vec(any::<u8>(), 0..6000),
        block_size in 1usize..300,
        custom in proptest::collection::vec(any::<u8>(), 0..40),
        len in 1usize..100,
        threads in 1usize..5,
        step in 1usize..2000,
    ) {
        prop_assert_eq!(ours(&data, block_size, &custom, len, threads, step), independent(&data, block_size, &custom, len));
    }
}
