//! Streaming SHA-3 (FIPS 202) over any reader: big reads into a small pool of reused buffers, a
//! reader thread that fills the next buffer while the current one is hashed, and a hard stop at
//! a stated length (with a one-byte probe to tell "exactly this long" from "longer").

use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc;

use sha3::Digest as _;

use super::parallelhash::{PARALLELHASH_BLOCK_SIZE, ParallelHash128};

/// Bytes asked of the reader at a time.
pub const READ_CHUNK: usize = 1 << 20;
/// Buffers in flight between the reader thread and the hasher.
const BUFFERS: usize = 3;

/// The hash algorithms a statement may name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithm {
    /// SHA3-256 (FIPS 202), the default.
    #[default]
    #[serde(rename = "sha3-256")]
    Sha3_256,
    /// SHA3-512 (FIPS 202).
    #[serde(rename = "sha3-512")]
    Sha3_512,
    /// ParallelHash128 (NIST SP 800-185 §6) with a 256-bit output, block size
    /// B = 8192 bytes (8 KiB, the format's `tessera-parallelhash128-b8192`) and an empty customization
    /// string: 128-bit security like Ed25519, and leaves hashed on every core.
    #[serde(rename = "parallelhash128")]
    ParallelHash128,
}

impl HashAlgorithm {
    /// Every algorithm a statement may name, the default first.
    pub const ALL: [Self; 3] = [Self::Sha3_256, Self::Sha3_512, Self::ParallelHash128];

    /// The name used on command lines and in JSON: `sha3-256`, `sha3-512`, `parallelhash128`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha3_256 => "sha3-256",
            Self::Sha3_512 => "sha3-512",
            Self::ParallelHash128 => "parallelhash128",
        }
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha3_256 | Self::ParallelHash128 => 32,
            Self::Sha3_512 => 64,
        }
    }

    /// The DER contents of the algorithm's object identifier: NIST's 2.16.840.1.101.3.4.2.8 and
    /// 2.16.840.1.101.3.4.2.10 for SHA3-256 and SHA3-512; NIST assigns none to ParallelHash, so
    /// Tessera's ParallelHash128/256-bit/B=8192 has a UUID-based one (ITU-T X.667, arc 2.25):
    /// 2.25.320669733960937005484730021054341035432 (docs/FORMAT.md).
    pub(crate) fn oid(self) -> &'static [u8] {
        match self {
            Self::Sha3_256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x08],
            Self::Sha3_512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x0a],
            Self::ParallelHash128 => &[
                0x69, 0x83, 0xe2, 0xbe, 0xdf, 0xa2, 0xb8, 0x82, 0x82, 0xac, 0xdb, 0x96, 0xab, 0xd2, 0xba, 0x95, 0x8d,
                0xf6, 0xeb, 0x28,
            ],
        }
    }

    pub(crate) fn from_oid(oid: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == oid)
    }

    /// A fresh incremental hasher.
    pub(crate) fn hasher(self) -> Hasher {
        match self {
            Self::Sha3_256 => Hasher::Sha3_256(sha3::Sha3_256::new()),
            Self::Sha3_512 => Hasher::Sha3_512(sha3::Sha3_512::new()),
            Self::ParallelHash128 => Hasher::ParallelHash128(Box::new(ParallelHash128::new(
                PARALLELHASH_BLOCK_SIZE,
                b"",
                self.output_len(),
            ))),
        }
    }

    /// Hashes a byte string in one go.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finalize()
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HashAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown hash {s:?} (use sha3-256, sha3-512 or parallelhash128)"))
    }
}

/// An incremental hasher for one of the [`HashAlgorithm`]s.
#[derive(Clone, Debug)]
pub enum Hasher {
    /// SHA3-256.
    Sha3_256(sha3::Sha3_256),
    /// SHA3-512.
    Sha3_512(sha3::Sha3_512),
    /// ParallelHash128 with Tessera's block size and a 256-bit output.
    ParallelHash128(Box<ParallelHash128>),
}

impl Hasher {
    /// Absorbs bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha3_256(h) => h.update(data),
            Self::Sha3_512(h) => h.update(data),
            Self::ParallelHash128(h) => h.update(data),
        }
    }

    /// The digest of everything absorbed.
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Self::Sha3_256(h) => h.finalize().to_vec(),
            Self::Sha3_512(h) => h.finalize().to_vec(),
            Self::ParallelHash128(h) => h.finalize(),
        }
    }
}

/// What [`hash_stream`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDigest {
    /// The digest of the bytes read (at most the limit).
    pub digest: Vec<u8>,
    /// How many bytes were hashed.
    pub length: u64,
    /// True when a limit was given and at least one more byte followed it.
    pub extended: bool,
}

enum Message {
    Chunk(Vec<u8>, usize),
    End { extended: bool },
    Failed(io::Error),
}

/// Hashes `reader` with `algorithm`, at most `limit` bytes when a limit is given, handing every
/// chunk to `sink` (in order, before the next is hashed) and the running byte count to
/// `progress`. Reading happens on a helper thread while the previous chunk is hashed; buffers
/// are allocated once and reused.
///
/// With a limit, one more byte is read after it to find out whether the input is longer
/// ([`StreamDigest::extended`]); that byte is neither hashed nor given to `sink`.
///
/// # Errors
/// The reader's I/O error, or the first error `sink` returns (reading then stops).
pub fn hash_stream<R: Read + Send>(
    algorithm: HashAlgorithm,
    reader: R,
    limit: Option<u64>,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<StreamDigest> {
    let mut hasher = algorithm.hasher();
    let mut length = 0u64;
    let extended = pump(reader, limit, &mut |data| {
        hasher.update(data);
        sink(data)?;
        length += data.len() as u64;
        progress(length);
        Ok(())
    })?;
    Ok(StreamDigest {
        digest: hasher.finalize(),
        length,
        extended,
    })
}

/// Reads `reader` (at most `limit` bytes when a limit is given) on a helper thread into a small
/// pool of reused buffers, handing each chunk to `consume` in order while the next is read.
/// Returns whether at least one byte followed the limit (always false without a limit); that
/// byte is not handed on.
///
/// # Errors
/// The reader's I/O error, or the first error `consume` returns (reading then stops).
pub(crate) fn pump<R: Read + Send>(
    mut reader: R,
    limit: Option<u64>,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    let buffer_size = match limit {
        Some(l) => usize::try_from(l).unwrap_or(READ_CHUNK).clamp(4096, READ_CHUNK),
        None => READ_CHUNK,
    };
    let (full_tx, full_rx) = mpsc::channel::<Message>();
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        free_tx
            .send(vec![0u8; buffer_size])
            .map_err(|_| io::Error::other("hashing pipeline closed"))?;
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut remaining = limit;
            loop {
                let Ok(mut buffer) = free_rx.recv() else { return };
                let want = match remaining {
                    Some(r) => usize::try_from(r).unwrap_or(usize::MAX).min(buffer.len()),
                    None => buffer.len(),
                };
                if want == 0 {
                    // At the limit: probe for one more byte.
                    let mut probe = [0u8; 1];
                    let extended = match read_full(&mut reader, &mut probe) {
                        Ok(n) => n > 0,
                        Err(e) => {
                            let _ = full_tx.send(Message::Failed(e));
                            return;
                        }
                    };
                    let _ = full_tx.send(Message::End { extended });
                    return;
                }
                let target = buffer.get_mut(..want).unwrap_or_default();
                match read_full(&mut reader, target) {
                    Ok(0) => {
                        let _ = full_tx.send(Message::End { extended: false });
                        return;
                    }
                    Ok(n) => {
                        if let Some(r) = remaining.as_mut() {
                            *r -= n as u64;
                        }
                        if full_tx.send(Message::Chunk(buffer, n)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = full_tx.send(Message::Failed(e));
                        return;
                    }
                }
            }
        });
        // `drain` owns the consumer's ends of both channels, so when it returns (also early, on
        // a consumer error) they close and the reader thread stops before the scope joins it.
        drain(full_rx, free_tx, consume)
    })
}

fn drain(
    full_rx: mpsc::Receiver<Message>,
    free_tx: mpsc::Sender<Vec<u8>>,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    loop {
        match full_rx.recv() {
            Ok(Message::Chunk(buffer, n)) => {
                consume(buffer.get(..n).unwrap_or_default())?;
                // The reader may already have finished; a closed pool is fine.
                let _ = free_tx.send(buffer);
            }
            Ok(Message::End { extended }) => return Ok(extended),
            Ok(Message::Failed(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("reader thread stopped unexpectedly")),
        }
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let Some(rest) = buffer.get_mut(filled..) else { break };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(alg: HashAlgorithm, data: &[u8], limit: Option<u64>) -> (StreamDigest, Vec<u8>) {
        let mut seen = Vec::new();
        let out = hash_stream(
            alg,
            data,
            limit,
            &mut |c| {
                seen.extend_from_slice(c);
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();
        (out, seen)
    }

    #[test]
    fn streaming_equals_one_shot_across_chunk_boundaries() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        for alg in [HashAlgorithm::Sha3_256, HashAlgorithm::Sha3_512] {
            let (out, seen) = stream(alg, &data, None);
            assert_eq!(out.digest, alg.digest(&data));
            assert_eq!(out.length, data.len() as u64);
            assert!(!out.extended);
            assert_eq!(seen, data);
        }
    }

    #[test]
    fn limit_stops_and_detects_extension() {
        let data = vec![5u8; 10_000];
        let (exact, _) = stream(HashAlgorithm::Sha3_256, &data, Some(10_000));
        assert!(!exact.extended);
        assert_eq!(exact.digest, HashAlgorithm::Sha3_256.digest(&data));
        let (short, seen) = stream(HashAlgorithm::Sha3_256, &data, Some(9_999));
        assert!(short.extended);
        assert_eq!(short.length, 9_999);
        assert_eq!(seen.len(), 9_999);
        let (long, _) = stream(HashAlgorithm::Sha3_256, &data, Some(20_000));
        assert_eq!(long.length, 10_000);
        assert!(!long.extended);
        let (empty, _) = stream(HashAlgorithm::Sha3_256, &[], Some(0));
        assert_eq!(empty.length, 0);
        assert!(!empty.extended);
    }

    #[test]
    fn sink_errors_stop_the_stream() {
        let data = vec![1u8; READ_CHUNK * 3];
        let err = hash_stream(
            HashAlgorithm::Sha3_256,
            &data[..],
            None,
            &mut |_| Err(io::Error::other("disk full")),
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
    }
}
