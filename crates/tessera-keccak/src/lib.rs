//! SHAKE128 (FIPS 202 §6.2) of four equal-length inputs at once, with a 256-bit output: the
//! leaf function of ParallelHash128 (NIST SP 800-185 §6.3, step 3.1: cSHAKE128(X, 256, "", ""),
//! which is SHAKE128(X, 256) by §3.3).
//!
//! The four sponges are independent, so each 64-bit lane of a 256-bit vector register holds one
//! of them and every step of Keccak-f\[1600\] (FIPS 202 §3.3) runs four-wide: this is the
//! "times4" layout of the Keccak team's XKCP. Two builds of the same code are chosen at run
//! time, never at compile time, so one binary runs on any x86-64:
//!
//! - **AVX-512VL** (with AVX-512F): 32 vector registers hold the whole state, and the compiler
//!   turns each rotation into one `vprolq` and each χ step into one `vpternlogq`;
//! - **AVX2**: 16 registers, rotations as two shifts and an OR;
//! - anything else (and other architectures): [`Shake128x4::detect`] returns `None` and the
//!   caller uses its portable SHAKE128.
//!
//! # Safety
//!
//! The intrinsics are safe to call inside `#[target_feature]` functions (Rust 1.87+). The one
//! `unsafe` operation is the call from ordinary code into such a function, and it happens only
//! through a [`Shake128x4`], which exists only after `is_x86_feature_detected!` said the CPU has
//! the features that function was compiled for.
//!
//! ```
//! use tessera_keccak::Shake128x4;
//! if let Some(shake) = Shake128x4::detect() {
//!     let leaves = shake.hash_256([b"a".as_slice(), b"b", b"c", b"d"]);
//!     assert_ne!(leaves[0], leaves[1]);
//! }
//! ```

/// Bytes absorbed per permutation by SHAKE128: the rate r = 1600 − 2·128 bits (FIPS 202 §6.2).
pub const SHAKE128_RATE: usize = 168;

/// Length of [`Shake128x4::hash_256`]'s outputs: 256 bits.
pub const OUTPUT_LEN: usize = 32;

/// The instruction set a [`Shake128x4`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 (256-bit registers, 16 of them).
    Avx2,
    /// AVX-512F with AVX-512VL on 256-bit registers (32 of them, rotate and ternary-logic
    /// instructions).
    Avx512Vl,
}

impl Isa {
    /// The name used in logs and benchmark output: `avx2` or `avx512vl`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx2 => "avx2",
            Self::Avx512Vl => "avx512vl",
        }
    }

    /// Whether this CPU runs code built for this instruction set (checked at run time).
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
                Self::Avx512Vl => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512vl")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// Four SHAKE128 sponges in one set of vector registers. Exists only on a CPU that runs its
/// [`Isa`]: the constructors check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shake128x4 {
    // Private: a value of this type is the proof that `isa` was detected on this CPU.
    isa: Isa,
}

impl Shake128x4 {
    /// The fastest instruction set this CPU has (AVX-512VL, then AVX2), or `None` when it has
    /// neither (or is not x86-64): the caller then hashes one input at a time.
    pub fn detect() -> Option<Self> {
        [Isa::Avx512Vl, Isa::Avx2].into_iter().find_map(Self::with_isa)
    }

    /// A hasher on `isa`, or `None` when this CPU does not have it. Tests and benchmarks use it
    /// to run every instruction set the machine has.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        isa.is_supported().then_some(Self { isa })
    }

    /// The instruction set in use.
    pub fn isa(self) -> Isa {
        self.isa
    }

    /// SHAKE128(`inputs[k]`, 256) for k = 0..4: four 32-byte outputs, in the order of the
    /// inputs.
    ///
    /// The four inputs are hashed side by side when they have the same length (ParallelHash's
    /// leaves of one block size); inputs of different lengths are correct too, each hashed on
    /// its own (four times the work).
    pub fn hash_256(self, inputs: [&[u8]; 4]) -> [[u8; OUTPUT_LEN]; 4] {
        let len = inputs[0].len();
        if inputs.iter().all(|input| input.len() == len) {
            return self.hash_equal(inputs);
        }
        inputs.map(|input| self.hash_equal([input; 4])[0])
    }

    /// Keccak-f\[1600\] (FIPS 202 §3.3, 24 rounds) applied to four states, lanes in the order
    /// of §3.1.2 (lane (x, y) at index x + 5y). For tests against other implementations.
    pub fn f1600(self, states: &mut [[u64; 25]; 4]) {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        match self.isa {
            // SAFETY: a `Shake128x4` is only built after `Isa::is_supported` returned true for
            // its `isa`, so the CPU has the target features the called function enables.
            Isa::Avx2 => unsafe { x86::f1600_avx2(states) },
            // SAFETY: as above.
            Isa::Avx512Vl => unsafe { x86::f1600_avx512vl(states) },
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = states;
    }

    fn hash_equal(self, inputs: [&[u8]; 4]) -> [[u8; OUTPUT_LEN]; 4] {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        match self.isa {
            // SAFETY: a `Shake128x4` is only built after `Isa::is_supported` returned true for
            // its `isa`, so the CPU has the target features the called function enables.
            // `shake128_*` rely on nothing else (safe code; equal lengths are checked there).
            Isa::Avx2 => unsafe { x86::shake128_avx2(inputs) },
            // SAFETY: as above.
            Isa::Avx512Vl => unsafe { x86::shake128_avx512vl(inputs) },
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = inputs;
            [[0; OUTPUT_LEN]; 4]
        }
    }
}

/// Round constants RC\[i\] of ι (FIPS 202 §3.2.5), i = 0..24.
#[cfg(target_arch = "x86_64")]
const ROUND_CONSTANTS: [u64; 24] = [
    0x0000_0000_0000_0001,
    0x0000_0000_0000_8082,
    0x8000_0000_0000_808a,
    0x8000_0000_8000_8000,
    0x0000_0000_0000_808b,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8009,
    0x0000_0000_0000_008a,
    0x0000_0000_0000_0088,
    0x0000_0000_8000_8009,
    0x0000_0000_8000_000a,
    0x0000_0000_8000_808b,
    0x8000_0000_0000_008b,
    0x8000_0000_0000_8089,
    0x8000_0000_0000_8003,
    0x8000_0000_0000_8002,
    0x8000_0000_0000_0080,
    0x0000_0000_0000_800a,
    0x8000_0000_8000_000a,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8080,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8008,
];

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{OUTPUT_LEN, ROUND_CONSTANTS, SHAKE128_RATE};
    use std::arch::x86_64::{
        __m256i, _mm256_andnot_si256, _mm256_extract_epi64, _mm256_or_si256, _mm256_set_epi64x, _mm256_set1_epi64x,
        _mm256_setzero_si256, _mm256_slli_epi64, _mm256_srli_epi64, _mm256_xor_si256,
    };

    /// Lanes absorbed per block: r / 64.
    const RATE_LANES: usize = SHAKE128_RATE / 8;

    macro_rules! xor {
        ($a:expr, $b:expr) => {
            _mm256_xor_si256($a, $b)
        };
    }

    /// Rotation left by a constant: two shifts and an OR, which the compiler emits as one
    /// `vprolq` where AVX-512VL is enabled.
    macro_rules! rol {
        ($v:expr, $n:literal) => {{
            let v = $v;
            _mm256_or_si256(_mm256_slli_epi64::<$n>(v), _mm256_srli_epi64::<{ 64 - $n }>(v))
        }};
    }

    /// χ for one lane (FIPS 202 §3.2.4): a ⊕ (¬b ∧ c).
    macro_rules! chi {
        ($a:expr, $b:expr, $c:expr) => {
            xor!($a, _mm256_andnot_si256($b, $c))
        };
    }

    /// The four-way sponge and permutation, built once per instruction set: `$features` is the
    /// `target_feature` list the functions are compiled for.
    macro_rules! keccak_x4 {
        ($features:literal, $f1600:ident, $permute:ident, $shake128:ident) => {
            /// Keccak-f[1600] on four states held lane-wise (state k in 64-bit element k).
            #[target_feature(enable = $features)]
            fn $permute(state: &mut [__m256i; 25]) {
                // A local copy the compiler keeps in registers across the rounds.
                let mut a = *state;
                for rc in ROUND_CONSTANTS {
                    // θ (§3.2.1)
                    let c0 = xor!(xor!(xor!(a[0], a[5]), xor!(a[10], a[15])), a[20]);
                    let c1 = xor!(xor!(xor!(a[1], a[6]), xor!(a[11], a[16])), a[21]);
                    let c2 = xor!(xor!(xor!(a[2], a[7]), xor!(a[12], a[17])), a[22]);
                    let c3 = xor!(xor!(xor!(a[3], a[8]), xor!(a[13], a[18])), a[23]);
                    let c4 = xor!(xor!(xor!(a[4], a[9]), xor!(a[14], a[19])), a[24]);
                    let d0 = xor!(c4, rol!(c1, 1));
                    let d1 = xor!(c0, rol!(c2, 1));
                    let d2 = xor!(c1, rol!(c3, 1));
                    let d3 = xor!(c2, rol!(c4, 1));
                    let d4 = xor!(c3, rol!(c0, 1));
                    // ρ and π (§3.2.2, §3.2.3): lane (x, y) rotated by its offset moves to
                    // (y, 2x + 3y).
                    let b0 = xor!(a[0], d0);
                    let b1 = rol!(xor!(a[6], d1), 44);
                    let b2 = rol!(xor!(a[12], d2), 43);
                    let b3 = rol!(xor!(a[18], d3), 21);
                    let b4 = rol!(xor!(a[24], d4), 14);
                    let b5 = rol!(xor!(a[3], d3), 28);
                    let b6 = rol!(xor!(a[9], d4), 20);
                    let b7 = rol!(xor!(a[10], d0), 3);
                    let b8 = rol!(xor!(a[16], d1), 45);
                    let b9 = rol!(xor!(a[22], d2), 61);
                    let b10 = rol!(xor!(a[1], d1), 1);
                    let b11 = rol!(xor!(a[7], d2), 6);
                    let b12 = rol!(xor!(a[13], d3), 25);
                    let b13 = rol!(xor!(a[19], d4), 8);
                    let b14 = rol!(xor!(a[20], d0), 18);
                    let b15 = rol!(xor!(a[4], d4), 27);
                    let b16 = rol!(xor!(a[5], d0), 36);
                    let b17 = rol!(xor!(a[11], d1), 10);
                    let b18 = rol!(xor!(a[17], d2), 15);
                    let b19 = rol!(xor!(a[23], d3), 56);
                    let b20 = rol!(xor!(a[2], d2), 62);
                    let b21 = rol!(xor!(a[8], d3), 55);
                    let b22 = rol!(xor!(a[14], d4), 39);
                    let b23 = rol!(xor!(a[15], d0), 41);
                    let b24 = rol!(xor!(a[21], d1), 2);
                    // χ (§3.2.4) row by row, then ι (§3.2.5) on lane (0, 0).
                    a[0] = xor!(chi!(b0, b1, b2), _mm256_set1_epi64x(rc as i64));
                    a[1] = chi!(b1, b2, b3);
                    a[2] = chi!(b2, b3, b4);
                    a[3] = chi!(b3, b4, b0);
                    a[4] = chi!(b4, b0, b1);
                    a[5] = chi!(b5, b6, b7);
                    a[6] = chi!(b6, b7, b8);
                    a[7] = chi!(b7, b8, b9);
                    a[8] = chi!(b8, b9, b5);
                    a[9] = chi!(b9, b5, b6);
                    a[10] = chi!(b10, b11, b12);
                    a[11] = chi!(b11, b12, b13);
                    a[12] = chi!(b12, b13, b14);
                    a[13] = chi!(b13, b14, b10);
                    a[14] = chi!(b14, b10, b11);
                    a[15] = chi!(b15, b16, b17);
                    a[16] = chi!(b16, b17, b18);
                    a[17] = chi!(b17, b18, b19);
                    a[18] = chi!(b18, b19, b15);
                    a[19] = chi!(b19, b15, b16);
                    a[20] = chi!(b20, b21, b22);
                    a[21] = chi!(b21, b22, b23);
                    a[22] = chi!(b22, b23, b24);
                    a[23] = chi!(b23, b24, b20);
                    a[24] = chi!(b24, b20, b21);
                }
                *state = a;
            }

            /// See `Shake128x4::f1600`.
            #[target_feature(enable = $features)]
            pub(super) fn $f1600(states: &mut [[u64; 25]; 4]) {
                let mut a = [_mm256_setzero_si256(); 25];
                for (i, lane) in a.iter_mut().enumerate() {
                    *lane = gather(states, i);
                }
                $permute(&mut a);
                for (i, lane) in a.iter().enumerate() {
                    scatter(*lane, states, i);
                }
            }

            /// SHAKE128(inputs[k], 256) for four inputs of one length (FIPS 202 §4, §6.2:
            /// pad10*1 after the suffix 1111).
            #[target_feature(enable = $features)]
            pub(super) fn $shake128(inputs: [&[u8]; 4]) -> [[u8; OUTPUT_LEN]; 4] {
                let mut a = [_mm256_setzero_si256(); 25];
                let split = inputs.map(<[u8]>::as_chunks::<SHAKE128_RATE>);
                let blocks = split.iter().map(|(whole, _)| whole.len()).min().unwrap_or(0);
                for j in 0..blocks {
                    absorb(
                        &mut a,
                        [&split[0].0[j], &split[1].0[j], &split[2].0[j], &split[3].0[j]],
                    );
                    $permute(&mut a);
                }
                // The last, padded block: the rest of each input, 0x1F, zeros, 0x80 (the two
                // padding bytes are one 0x9F when the rest is 167 bytes long).
                let last = split.map(|(_, rest)| {
                    let mut block = [0u8; SHAKE128_RATE];
                    let rest = &rest[..rest.len().min(SHAKE128_RATE - 1)];
                    block[..rest.len()].copy_from_slice(rest);
                    block[rest.len()] ^= 0x1f;
                    block[SHAKE128_RATE - 1] ^= 0x80;
                    block
                });
                absorb(&mut a, [&last[0], &last[1], &last[2], &last[3]]);
                $permute(&mut a);
                // 256 bits fit in the first rate block: four lanes of each state.
                let mut out = [[0u8; OUTPUT_LEN]; 4];
                for (i, lane) in a[..OUTPUT_LEN / 8].iter().enumerate() {
                    let values = [
                        _mm256_extract_epi64::<0>(*lane),
                        _mm256_extract_epi64::<1>(*lane),
                        _mm256_extract_epi64::<2>(*lane),
                        _mm256_extract_epi64::<3>(*lane),
                    ];
                    for (k, value) in values.into_iter().enumerate() {
                        out[k][8 * i..8 * i + 8].copy_from_slice(&value.to_le_bytes());
                    }
                }
                out
            }
        };
    }

    keccak_x4!("avx2", f1600_avx2, permute_avx2, shake128_avx2);
    keccak_x4!(
        "avx2,avx512f,avx512vl",
        f1600_avx512vl,
        permute_avx512vl,
        shake128_avx512vl
    );

    /// XORs one rate block of each of the four inputs into the state (lane i of input k into
    /// element k of lane i).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn absorb(a: &mut [__m256i; 25], blocks: [&[u8; SHAKE128_RATE]; 4]) {
        let lanes = blocks.map(|block| block.as_chunks::<8>().0);
        for i in 0..RATE_LANES {
            let word = |k: usize| i64::from_le_bytes(lanes[k][i]);
            a[i] = set(a[i], [word(0), word(1), word(2), word(3)]);
        }
    }

    /// `lane ^ [e0, e1, e2, e3]` (element k from input k).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn set(lane: __m256i, elements: [i64; 4]) -> __m256i {
        xor!(
            lane,
            _mm256_set_epi64x(elements[3], elements[2], elements[1], elements[0])
        )
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn gather(states: &[[u64; 25]; 4], i: usize) -> __m256i {
        _mm256_set_epi64x(
            states[3][i] as i64,
            states[2][i] as i64,
            states[1][i] as i64,
            states[0][i] as i64,
        )
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn scatter(lane: __m256i, states: &mut [[u64; 25]; 4], i: usize) {
        states[0][i] = _mm256_extract_epi64::<0>(lane) as u64;
        states[1][i] = _mm256_extract_epi64::<1>(lane) as u64;
        states[2][i] = _mm256_extract_epi64::<2>(lane) as u64;
        states[3][i] = _mm256_extract_epi64::<3>(lane) as u64;
    }
}
