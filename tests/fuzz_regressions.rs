//! Every input a fuzzer ever crashed Tessera with, replayed on stable Rust: each file in
//! `tests/fuzz_regressions/<target>/` goes through the same harness function as the cargo-fuzz
//! target of that name (`fuzz/src/lib.rs`, included here), which must not panic. Also runs the
//! harness on every seed it generates, and writes the seeds for `make fuzz` when
//! `TESSERA_FUZZ_SEEDS` names a folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;
mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tessera::pki::{Usage, VerifyRequest};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

/// How long one input may take (libFuzzer's `-timeout` in `make fuzz` is 10 s, in an optimised
/// build): an input that once hung (a key asking for 2^31 KDF iterations) fails instead.
const TIME_LIMIT: Duration = Duration::from_secs(30);

/// Runs `input` through `target`'s harness function; `Err(message)` if it panicked or took
/// longer than [`TIME_LIMIT`] (the thread is then left behind; the test fails anyway).
fn replay(target: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    let input = input.to_vec();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(|| target(&input))).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "a panic".into())
        });
        let _ = done.send(result);
    });
    match outcome.recv_timeout(TIME_LIMIT) {
        Ok(result) => result,
        Err(_) => Err(format!("still running after {} s", TIME_LIMIT.as_secs())),
    }
}

#[test]
fn every_saved_crash_input_is_handled() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for entry in std::fs::read_dir(regressions()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, target)) = harness::TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!(
                "tests/fuzz_regressions/{name} is not a fuzz target (expected one of {:?})",
                harness::TARGETS
            );
        };
        for input in std::fs::read_dir(entry.path()).unwrap() {
            let path = input.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            replayed += 1;
            if let Err(message) = replay(*target, &bytes) {
                failures.push(format!("{}: {message}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz regressions panic again:\n{}",
        failures.join("\n")
    );
    eprintln!("replayed {replayed} saved fuzz inputs");
}

#[test]
fn seeds_reach_past_the_parsers_and_never_panic() {
    let seeds = harness::seeds();
    for (target, _) in harness::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| t == target),
            "no seed for the {target} target"
        );
    }
    for (target, name, bytes) in &seeds {
        let (_, function) = harness::TARGETS.iter().find(|(t, _)| t == target).unwrap();
        if let Err(message) = replay(*function, bytes) {
            panic!("seed {target}/{name} panics: {message}");
        }
    }
    if let Some(dir) = std::env::var_os("TESSERA_FUZZ_SEEDS") {
        // The x509-limbo suite's certificates too, when it is there (make fuzz passes LIMBO).
        let limbo = std::env::var_os("TESSERA_FUZZ_LIMBO").map(PathBuf::from);
        let limbo = limbo.filter(|p| {
            support::require(
                &format!("the conformance suite {}", p.display()),
                p.is_file(),
                "make fuzz passes LIMBO=../shared/conformance/limbo.json.xz",
            )
        });
        let written = harness::write_seeds(Path::new(&dir), limbo.as_deref()).unwrap();
        eprintln!("wrote {written} seeds to {}", Path::new(&dir).display());
    }
}

/// The fixed root's fingerprint (Ed25519 signatures are deterministic).
const ROOT_SHA256: &str = "8e99f4f97c1245fa64a90fed9d96c8de363d5a48cf89ba5e2483256b67a4297a";

#[test]
fn the_fixtures_verify_so_the_fuzzer_starts_from_accepted_inputs() {
    let f = harness::fixtures();
    // The verify target's main seed is an accepted chain, under every usage.
    for options in 0..4 {
        let request = harness::verify_request(options | 0b100);
        let chain = f.store.verify(&f.leaf, std::slice::from_ref(&f.intermediate), &request);
        assert!(chain.is_ok(), "{:?}: {:?}", request.usage, chain.err());
    }
    let joined = harness::join_certificates(4, &[&f.leaf, &f.intermediate]);
    let split = harness::split_certificates(&joined[1..], 9);
    assert_eq!(split, vec![f.leaf.clone(), f.intermediate.clone()]);
    // A leaf from a root outside the store is not.
    let request = VerifyRequest::new(Usage::Any, harness::NOW);
    assert!(f.store.verify(&f.intermediate, &[], &request).is_err());
    // The fixtures are the same in every process: a saved input means the same thing.
    let fingerprint = tessera::pki::CertificateInfo::from_der(&f.root)
        .unwrap()
        .sha256_fingerprint;
    assert_eq!(
        fingerprint, ROOT_SHA256,
        "the fixed root changed: saved verify inputs no longer chain to it"
    );
}

#[test]
fn the_jws_seeds_that_should_verify_do() {
    use tessera::ca::serve::jws;
    let seeds = harness::seeds();
    let seed = |name: &str| &seeds.iter().find(|(t, n, _)| *t == "jws" && n == name).unwrap().2;
    for name in ["eddsa-kid-new-order.json", "eddsa-kid-post-as-get.json"] {
        jws::parse(seed(name))
            .unwrap()
            .verify(&harness::jws_account().1)
            .unwrap();
    }
    for name in [
        "eddsa-jwk-new-account.json",
        "es256-jwk.json",
        "es384-jwk.json",
        "rs256-jwk.json",
    ] {
        jws::parse(seed(name)).unwrap().verify_embedded().unwrap();
    }
    jws::parse_inner(seed("eddsa-key-change-inner.json"))
        .unwrap()
        .verify_embedded()
        .unwrap();
    for name in [
        "alg-none.json",
        "hs256.json",
        "jwk-and-kid.json",
        "padded.json",
        "general-serialization.json",
    ] {
        assert!(jws::parse(seed(name)).is_err(), "{name}");
    }
    for name in ["es256-der-signature.json", "es384-der-signature.json"] {
        assert!(jws::parse(seed(name)).unwrap().verify_embedded().is_err(), "{name}");
    }
}
