//! ParallelHash128 against an independent implementation (the `tiny-keccak` crate), over sizes
//! around block boundaries, several customization strings, output lengths and thread counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use proptest::prelude::*;
use tessera::internal::{PARALLELHASH_BLOCK_SIZE, ParallelHash128};
use tiny_keccak::{Hasher as _, ParallelHash};

fn independent(data: &[u8], block_size: usize, custom: &[u8], len: usize) -> Vec<u8> {
    let mut h = ParallelHash::v128(custom, block_size);
    h.update(data);
    let mut out = vec![0u8; len];
    h.finalize(&mut out);
    out
}

/// Ours, with the vector leaf kernel where the CPU has one unless `portable`.
fn ours(
    data: &[u8],
    block_size: usize,
    custom: &[u8],
    len: usize,
    threads: usize,
    step: usize,
    portable: bool,
) -> Vec<u8> {
    let mut h = ParallelHash128::new(block_size, custom, len).with_threads(threads);
    if portable {
        h = h.portable();
    }
    for chunk in data.chunks(step.max(1)) {
        h.update(chunk);
    }
    h.finalize()
}

#[test]
fn format_block_size_around_boundaries() {
    let b = PARALLELHASH_BLOCK_SIZE;
    let data: Vec<u8> = (0..(40 * b + 3)).map(|i| (i * 31 % 251) as u8).collect();
    let isa = ParallelHash128::new(b, b"", 32).vector_isa();
    eprintln!("vector leaf kernel on this CPU: {isa:?}");
    for size in [
        0,
        1,
        b - 1,
        b,
        b + 1,
        2 * b,
        4 * b,
        17 * b - 1,
        17 * b,
        17 * b + 1,
        40 * b + 3,
    ] {
        let x = &data[..size];
        let expected = independent(x, b, b"", 32);
        for portable in [false, true] {
            assert_eq!(
                ours(x, b, b"", 32, 1, 1 << 20, portable),
                expected,
                "size {size}, one thread, portable {portable}"
            );
            assert_eq!(
                ours(x, b, b"", 32, 2, 1 << 20, portable),
                expected,
                "size {size}, portable {portable}"
            );
            assert_eq!(
                ours(x, b, b"", 32, 4, 5000, portable),
                expected,
                "size {size}, split, portable {portable}"
            );
        }
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
        portable in any::<bool>(),
    ) {
        prop_assert_eq!(ours(&data, block_size, &custom, len, threads, step, portable), independent(&data, block_size, &custom, len));
    }
}

/// `sign --hash parallelhash128` end to end, for a module of fewer leaves than a vector group
/// and for one of many (the binaries then hash four leaves at a time on several threads): the
/// digest `verify --json` reports is the independent implementation's ParallelHash128(module,
/// B = 8192, L = 256, S = ""), and one changed byte is refused (exit 1).
#[test]
fn sign_and_verify_with_parallelhash128() {
    for size in [3 * PARALLELHASH_BLOCK_SIZE + 1234, 67 * PARALLELHASH_BLOCK_SIZE + 4321] {
        sign_and_verify_with_parallelhash128_of(size);
    }
}

fn sign_and_verify_with_parallelhash128_of(size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::generate_sign_key(d);
    let module: Vec<u8> = (0..size).map(|i| ((i * 7) ^ (i >> 13)) as u8).collect();
    std::fs::write(d.join("m.bin"), &module).unwrap();
    let out = support::output(support::command("sign").current_dir(d).args([
        "m.bin",
        "--key",
        "k.key",
        "--hash",
        "parallelhash128",
    ]));
    assert!(out.status.success(), "{out:?}");
    let out = support::output(
        support::command("verify")
            .current_dir(d)
            .args(["m.bin", "--pubkey", "k.pub", "--json"]),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["hash"], "parallelhash128");
    let expected: String = independent(&module, PARALLELHASH_BLOCK_SIZE, b"", 32)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(report["digest"], expected.as_str(), "{size} bytes");

    let mut tampered = module.clone();
    tampered[size - PARALLELHASH_BLOCK_SIZE - 5] ^= 0x01;
    std::fs::write(d.join("m.bin"), &tampered).unwrap();
    let out = support::output(
        support::command("verify")
            .current_dir(d)
            .args(["m.bin", "--pubkey", "k.pub"]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// `sign --name` is checked as a module name when the command line is read: empty, over 255
/// bytes or with a control character is a usage error (exit 2) and nothing is written.
#[test]
fn a_bad_module_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::generate_sign_key(d);
    std::fs::write(d.join("m.bin"), b"module").unwrap();
    let long = "n".repeat(256);
    for (name, reason) in [
        ("", "it is empty"),
        (long.as_str(), "longer than 255 bytes"),
        ("a\u{7}b", "control characters"),
    ] {
        let out = support::output(
            support::command("sign")
                .current_dir(d)
                .args(["m.bin", "--key", "k.key", "-o", "m.sig", "--name", name]),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {stderr}");
        assert!(stderr.contains(reason), "{name:?}: {stderr}");
        assert!(!d.join("m.sig").exists());
    }
    let name = "n".repeat(255);
    let out = support::output(
        support::command("sign")
            .current_dir(d)
            .args(["m.bin", "--key", "k.key", "-o", "m.sig", "--name", &name]),
    );
    assert!(out.status.success(), "{out:?}");
}
