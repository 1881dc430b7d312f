//! ParallelHash128 (NIST SP 800-185 §6), the SHA-3 family's parallel mode: the input is cut into
//! blocks of `B` bytes, each block is hashed on its own with cSHAKE128 (a 256-bit leaf value),
//! and the leaf values are absorbed in order by an outer cSHAKE128 with the function name
//! `"ParallelHash"`. Leaves are independent, so they are hashed on every core while the input is
//! read once.
//!
//! Built on the RustCrypto `cshake` crate (the same generation as `sha3`) for the outer function
//! and single leaves, and on `tessera-keccak` (this workspace) for leaves four at a time in
//! AVX2 or AVX-512VL registers when the CPU has them (chosen at run time; the values are the
//! same either way). This file only frames the input as §6.3 says.

use cshake::CShake128;
use cshake::digest::{ExtendableOutput, Update, XofReader};
use tessera_keccak::Shake128x4;

/// The block size `B` of Tessera's signed statements, in bytes (`docs/FORMAT.md`). Fixed by the
/// format: the digest depends on it.
pub const PARALLELHASH_BLOCK_SIZE: usize = 8192;

/// Length of one leaf value: cSHAKE128 with a 256-bit output (SP 800-185 §6.3, step 3.1), the
/// vector kernel's output.
const LEAF_LEN: usize = tessera_keccak::OUTPUT_LEN;

/// Below this many whole blocks in one update, leaves are hashed on the calling thread (spawning
/// helpers would cost more than it saves).
const PARALLEL_MIN_BLOCKS: usize = 16;

/// How many leaves a hashing thread claims at a time (32 KiB of input with the 8 KiB block): the
/// four the vector kernel hashes side by side.
const LEAVES_PER_CLAIM: usize = 4;

/// An incremental ParallelHash128 with a fixed block size, customization string and output
/// length.
///
/// ```
/// use tessera::internal::ParallelHash128;
/// // SP 800-185, ParallelHash sample #1: X = 00..07 10..17 20..27, B = 8, L = 256, S = "".
/// let x: Vec<u8> = (0u8..3).flat_map(|k| (0u8..8).map(move |i| 0x10 * k + i)).collect();
/// let mut hasher = ParallelHash128::new(8, b"", 32);
/// hasher.update(&x);
/// assert_eq!(hasher.finalize()[..4], [0xba, 0x8d, 0xc1, 0xd1]);
/// ```
#[derive(Clone)]
pub struct ParallelHash128 {
    /// The outer cSHAKE128 ("ParallelHash", S), already holding left_encode(B) and the leaves
    /// hashed so far.
    outer: CShake128,
    block_size: usize,
    output_len: usize,
    /// The start of a block not yet complete (shorter than `block_size`).
    pending: Vec<u8>,
    /// Leaves absorbed so far (`n` of §6.3 once finalized).
    blocks: u64,
    threads: usize,
    /// The four-way leaf kernel, when this CPU has one and it is not turned off.
    simd: Option<Shake128x4>,
}

impl std::fmt::Debug for ParallelHash128 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelHash128")
            .field("block_size", &self.block_size)
            .field("output_len", &self.output_len)
            .field("blocks", &self.blocks)
            .field("threads", &self.threads)
            .field("simd", &self.simd.map(|kernel| kernel.isa().name()))
            .finish_non_exhaustive()
    }
}

impl ParallelHash128 {
    /// A hasher with block size `block_size` bytes (`B`; at least 1, a 0 is taken as 1),
    /// customization string `customization` (`S`) and an output of `output_len` bytes (`L / 8`),
    /// using every available core and, on x86-64 with AVX2 or AVX-512VL, four leaves per core
    /// at a time.
    pub fn new(block_size: usize, customization: &[u8], output_len: usize) -> Self {
        let block_size = block_size.max(1);
        let mut outer = CShake128::new_with_function_name(b"ParallelHash", customization);
        outer.update(&left_encode(block_size as u64));
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            outer,
            block_size,
            output_len,
            pending: Vec::with_capacity(block_size),
            blocks: 0,
            threads,
            simd: Shake128x4::detect(),
        }
    }

    /// Hashes leaves one at a time with the portable code even where the CPU has vector
    /// instructions (tests and benchmarks compare the two; the value is the same).
    #[must_use]
    pub fn portable(mut self) -> Self {
        self.simd = None;
        self
    }

    /// The vector instruction set leaves are hashed with (`"avx512vl"`, `"avx2"`), or `None`
    /// when they are hashed one at a time.
    pub fn vector_isa(&self) -> Option<&'static str> {
        self.simd.map(|kernel| kernel.isa().name())
    }

    /// Limits the leaves hashed at once to `threads` threads (the calling thread included);
    /// 0 and 1 both mean "on the calling thread only".
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Absorbs bytes. Whole blocks in `data` are hashed in parallel when there are enough of
    /// them; the tail waits for the next update.
    pub fn update(&mut self, mut data: &[u8]) {
        if !self.pending.is_empty() {
            let take = (self.block_size - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if self.pending.len() < self.block_size {
                return;
            }
            let block = std::mem::take(&mut self.pending);
            self.absorb_leaf(&leaf(&block));
            self.pending = block;
            self.pending.clear();
        }
        let whole = data.len() / self.block_size * self.block_size;
        let (blocks, tail) = data.split_at(whole);
        self.absorb_blocks(blocks);
        self.pending.extend_from_slice(tail);
    }

    /// The ParallelHash128 value of everything absorbed: `output_len` bytes.
    pub fn finalize(mut self) -> Vec<u8> {
        if !self.pending.is_empty() {
            let block = std::mem::take(&mut self.pending);
            self.absorb_leaf(&leaf(&block));
        }
        self.outer.update(&right_encode(self.blocks));
        self.outer
            .update(&right_encode((self.output_len as u64).saturating_mul(8)));
        let mut out = vec![0u8; self.output_len];
        self.outer.finalize_xof().read(&mut out);
        out
    }

    fn absorb_leaf(&mut self, value: &[u8; LEAF_LEN]) {
        self.outer.update(value);
        self.blocks += 1;
    }

    /// Hashes whole blocks (`blocks.len()` is a multiple of the block size) and absorbs their
    /// leaves in order.
    fn absorb_blocks(&mut self, blocks: &[u8]) {
        let count = blocks.len() / self.block_size;
        if count == 0 {
            return;
        }
        let (block_size, simd) = (self.block_size, self.simd);
        if self.threads <= 1 || count < PARALLEL_MIN_BLOCKS {
            let mut leaves = Vec::with_capacity(count);
            for group in blocks.chunks(LEAVES_PER_CLAIM * block_size) {
                hash_leaves(simd, group, block_size, &mut |value| leaves.push(value));
            }
            for value in &leaves {
                self.absorb_leaf(value);
            }
            return;
        }
        // Leaves are handed out a few at a time from a shared counter rather than cut into one
        // share per thread: a thread that the scheduler holds back (the file reader runs beside
        // the hashers) then simply hashes fewer leaves, and the others never wait long for it.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = |found: &mut Vec<(usize, [u8; LEAF_LEN])>| loop {
            let first = next.fetch_add(LEAVES_PER_CLAIM, std::sync::atomic::Ordering::Relaxed);
            if first >= count {
                break;
            }
            let end = (first + LEAVES_PER_CLAIM).min(count);
            let mut index = first;
            hash_leaves(
                simd,
                &blocks[first * block_size..end * block_size],
                block_size,
                &mut |value| {
                    found.push((index, value));
                    index += 1;
                },
            );
        };
        let mut leaves = vec![[0u8; LEAF_LEN]; count];
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..self.threads.min(count))
                .map(|_| {
                    scope.spawn(|| {
                        let mut found = Vec::with_capacity(count);
                        work(&mut found);
                        found
                    })
                })
                .collect();
            // The calling thread hashes too.
            let mut found = Vec::with_capacity(count);
            work(&mut found);
            for helper in helpers {
                match helper.join() {
                    Ok(theirs) => found.extend(theirs),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            for (index, value) in found {
                leaves[index] = value;
            }
        });
        for value in &leaves {
            self.absorb_leaf(value);
        }
    }
}

/// The leaf values of `group` (at most [`LEAVES_PER_CLAIM`] whole blocks of `block_size` bytes),
/// handed to `emit` in order: four side by side with the vector kernel when there is one and
/// the group is whole, else one at a time.
fn hash_leaves(simd: Option<Shake128x4>, group: &[u8], block_size: usize, emit: &mut impl FnMut([u8; LEAF_LEN])) {
    if let Some(kernel) = simd
        && group.len() == LEAVES_PER_CLAIM * block_size
    {
        let (first, rest) = group.split_at(block_size);
        let (second, rest) = rest.split_at(block_size);
        let (third, fourth) = rest.split_at(block_size);
        kernel
            .hash_256([first, second, third, fourth])
            .into_iter()
            .for_each(&mut *emit);
        return;
    }
    for block in group.chunks(block_size) {
        emit(leaf(block));
    }
}

/// cSHAKE128(block, 256, "", ""), which is SHAKE128 (SP 800-185 §3.3).
fn leaf(block: &[u8]) -> [u8; LEAF_LEN] {
    let mut hasher = CShake128::default();
    hasher.update(block);
    let mut value = [0u8; LEAF_LEN];
    hasher.finalize_xof().read(&mut value);
    value
}

/// left_encode(x) (SP 800-185 §2.3.1): the byte count, then x big-endian in as few bytes as
/// possible (at least one).
fn left_encode(x: u64) -> Vec<u8> {
    let bytes = x.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut out = Vec::with_capacity(9);
    out.push((8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// right_encode(x) (SP 800-185 §2.3.1): x big-endian in as few bytes as possible (at least
/// one), then the byte count.
fn right_encode(x: u64) -> Vec<u8> {
    let bytes = x.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut out = Vec::with_capacity(9);
    out.extend_from_slice(&bytes[skip..]);
    out.push((8 - skip) as u8);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    fn one_shot(data: &[u8], block_size: usize, custom: &[u8], len: usize) -> Vec<u8> {
        let mut h = ParallelHash128::new(block_size, custom, len);
        h.update(data);
        h.finalize()
    }

    #[test]
    fn encodings_follow_sp800_185() {
        assert_eq!(left_encode(0), [1, 0]);
        assert_eq!(left_encode(8192), [2, 0x20, 0x00]);
        assert_eq!(right_encode(0), [0, 1]);
        assert_eq!(right_encode(256), [1, 0, 2]);
        assert_eq!(
            right_encode(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 8]
        );
    }

    /// The three ParallelHash128 samples NIST publishes for SP 800-185.
    #[test]
    fn nist_samples() {
        // X = 00..07 10..17 20..27 (B = 8) and 00..0B 10..1B … 50..5B (B = 12).
        let x24: Vec<u8> = (0u8..3).flat_map(|k| (0u8..8).map(move |i| 0x10 * k + i)).collect();
        let x72: Vec<u8> = (0u8..6).flat_map(|k| (0u8..12).map(move |i| 0x10 * k + i)).collect();
        assert_eq!(
            one_shot(&x24, 8, b"", 32),
            hex("BA8DC1D1D979331D3F813603C67F72609AB5E44B94A0B8F9AF46514454A2B4F5")
        );
        assert_eq!(
            one_shot(&x24, 8, b"Parallel Data", 32),
            hex("FC484DCB3F84DCEEDC353438151BEE58157D6EFED0445A81F165E495795B7206")
        );
        assert_eq!(
            one_shot(&x72, 12, b"Parallel Data", 32),
            hex("F7FD5312896C6685C828AF7E2ADB97E393E7F8D54E3C2EA4B95E5ACA3796E8FC")
        );
    }

    /// However the input is split into updates and however many threads hash it, the value is
    /// the same.
    #[test]
    fn splits_and_threads_do_not_change_the_value() {
        let data: Vec<u8> = (0..200_003u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let reference = {
            let mut h = ParallelHash128::new(1024, b"", 32).with_threads(1).portable();
            h.update(&data);
            h.finalize()
        };
        for portable in [true, false] {
            for threads in [1, 2, 3, 8] {
                for step in [1usize, 7, 1023, 1024, 1025, 4096, 65_536, 200_003] {
                    let mut h = ParallelHash128::new(1024, b"", 32).with_threads(threads);
                    if portable {
                        h = h.portable();
                    }
                    let isa = h.vector_isa();
                    for chunk in data.chunks(step) {
                        h.update(chunk);
                    }
                    assert_eq!(
                        h.finalize(),
                        reference,
                        "threads {threads}, step {step}, vector kernel {isa:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_input_and_exact_blocks() {
        // n = 0: z = left_encode(B) || right_encode(0) || right_encode(L).
        let empty = one_shot(b"", 8192, b"", 32);
        assert_eq!(empty.len(), 32);
        assert_ne!(empty, one_shot(&[0], 8192, b"", 32));
        // A trailing empty block does not exist: 16 bytes with B = 8 are exactly two leaves.
        assert_ne!(one_shot(&[0; 16], 8, b"", 32), one_shot(&[0; 17], 8, b"", 32));
    }
}
