//! Verification, in the one order that is safe: parse the bundle → chain the signer to a pinned
//! root with the code-signing usage, at the signing time and now, CRLs applied → the statement
//! names that certificate → `verify_strict` over the statement → only then read the module once,
//! stop at the signed length, hash, compare. The result is a [`Verification`] (facts) or a
//! [`VerifiedModule`] holding exactly the bytes that were hashed.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::SignError;
use super::bundle::{Bundle, MAX_BUNDLE_SIZE};
use super::digest::{HashAlgorithm, hash_stream};
use super::digest::{Hasher, pump};
use super::embed::{FOOTER_LEN, parse_footer, read_embedded};
use super::error::CheckTime;
use super::keys::{KeyId, PublicKey, certificate_key};
use super::statement::{SignerId, Statement, whole_seconds};
use crate::pki::{TrustStore, Usage, VerifyRequest, hex};

/// How far in the future a signing time may lie before it is refused (clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Who signed a verified module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SignerInfo {
    /// `certificate` or `raw-key`.
    pub kind: &'static str,
    /// The signer certificate's subject (certificate mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The signer certificate's serial, lowercase hex (certificate mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The signer certificate's SHA-256 fingerprint, hex (certificate mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
    /// Subjects on the verified path, signer first, root last (certificate mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The key id of the signing key (both modes).
    pub key_id: String,
}

impl SignerInfo {
    /// One line for people: the subject, or the key id in raw-key mode.
    pub fn describe(&self) -> String {
        match &self.subject {
            Some(subject) => format!("{subject} (serial {})", self.serial.as_deref().unwrap_or("?")),
            None => format!("raw key {}", self.key_id),
        }
    }
}

/// The facts of a successful verification. Only a [`Verifier`] builds one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Verification {
    /// The module's logical name, as signed.
    pub name: String,
    /// The signed length in bytes (= the bytes verified).
    pub length: u64,
    /// The hash algorithm.
    pub hash: HashAlgorithm,
    /// The digest, lowercase hex.
    pub digest: String,
    /// The signing time.
    #[serde(with = "time::serde::rfc3339")]
    pub signed_at: OffsetDateTime,
    /// The verification time ("now"), in UTC, in whole seconds.
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    /// The signer.
    pub signer: SignerInfo,
    /// True when the signature was embedded in the module file.
    pub embedded: bool,
}

/// Proof that a module verified, holding exactly the bytes that were hashed and compared.
/// Load these bytes, never the file again by its path.
#[must_use]
#[derive(Clone, Debug)]
pub struct VerifiedModule {
    bytes: Vec<u8>,
    verification: Verification,
}

impl VerifiedModule {
    /// The verified bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The verified bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// What was verified and who signed it.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }
}

/// What the verifier trusts.
#[derive(Clone, Debug)]
enum Anchor {
    Roots(TrustStore),
    PublicKey(PublicKey),
}

/// Where a verifier takes "now" from, once per verification.
#[derive(Clone)]
enum Clock {
    System,
    Fixed(OffsetDateTime),
    Custom(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>),
}

impl Clock {
    fn now(&self) -> OffsetDateTime {
        match self {
            Self::System => OffsetDateTime::now_utc(),
            Self::Fixed(time) => *time,
            Self::Custom(clock) => clock(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("System"),
            Self::Fixed(time) => f.debug_tuple("Fixed").field(time).finish(),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// A module verifier: a trust store (roots and CRLs) or a pinned raw public key, an optional
/// required module name, and a clock.
///
/// The verification time ("now": the signer's chain must be valid then, and the signature may
/// not be from later) is read from the clock once at the start of each verification, so one
/// long-lived verifier stays correct: by default the system clock, or a fixed time
/// ([`Verifier::at`], for audits and tests), or any clock ([`Verifier::with_clock`]).
#[derive(Clone, Debug)]
pub struct Verifier {
    anchor: Anchor,
    name: Option<String>,
    clock: Clock,
}

/// How much of a file is the module, and what signs it.
struct Located {
    bundle: Bundle,
    payload_len: u64,
    embedded: bool,
}

impl Verifier {
    /// Trusts signers whose certificate chains to a root in `trust` with the code-signing
    /// usage (CRLs in `trust` are applied), checking at the system time of each verification.
    pub fn new(trust: TrustStore) -> Self {
        Self {
            anchor: Anchor::Roots(trust),
            name: None,
            clock: Clock::System,
        }
    }

    /// Trusts raw-key signatures made by `key` only, checking at the system time of each
    /// verification.
    pub fn with_public_key(key: PublicKey) -> Self {
        Self {
            anchor: Anchor::PublicKey(key),
            name: None,
            clock: Clock::System,
        }
    }

    /// Checks as if now were `time`, for every verification: to audit an old decision, or for
    /// deterministic tests.
    pub fn at(mut self, time: OffsetDateTime) -> Self {
        self.clock = Clock::Fixed(time);
        self
    }

    /// Reads the verification time from `clock`, once at the start of each verification.
    pub fn with_clock(mut self, clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        self.clock = Clock::Custom(Arc::new(clock));
        self
    }

    /// Also requires the signed logical name to be `name`.
    pub fn require_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks everything but the module's bytes: the signer's trust, the statement's binding to
    /// the signer, the signature, the name and the signing time.
    ///
    /// # Errors
    /// [`SignError::Untrusted`], [`SignError::RawKeySignature`],
    /// [`SignError::CertificateSignature`], [`SignError::WrongKey`], [`SignError::SignerMismatch`],
    /// [`SignError::BadSignature`], [`SignError::WrongName`], [`SignError::SignedInFuture`].
    ///
    /// # Security
    /// The statement is authentic after this, the module is not yet checked: use
    /// [`Verifier::verify_stream`] or [`Verifier::verify_reader`] for that.
    pub fn check_bundle(&self, bundle: &Bundle) -> Result<SignerInfo, SignError> {
        self.check_bundle_at(bundle, self.clock.now())
    }

    fn check_bundle_at(&self, bundle: &Bundle, now: OffsetDateTime) -> Result<SignerInfo, SignError> {
        let statement = bundle.statement();
        let (key, info) = match (&self.anchor, statement.signer) {
            (Anchor::Roots(_), SignerId::RawKey(key)) => {
                return Err(SignError::RawKeySignature {
                    key_id: KeyId::of(&key),
                });
            }
            (Anchor::PublicKey(_), SignerId::Certificate(_)) => {
                let subject = bundle
                    .chain()
                    .first()
                    .and_then(|c| crate::pki::CertificateInfo::from_der(c).ok())
                    .map_or_else(|| "(unreadable)".to_string(), |c| printable(&c.subject));
                return Err(SignError::CertificateSignature { subject });
            }
            (Anchor::Roots(store), SignerId::Certificate(cert_hash)) => {
                Self::check_chain(store, bundle, statement, &cert_hash, now)?
            }
            (Anchor::PublicKey(trusted), SignerId::RawKey(key)) => {
                if key != trusted.to_bytes() {
                    return Err(SignError::WrongKey {
                        expected: trusted.key_id(),
                        actual: KeyId::of(&key),
                    });
                }
                if !bundle.chain().is_empty() {
                    return Err(SignError::malformed(
                        "signature bundle",
                        "a raw-key bundle carries certificates",
                    ));
                }
                let info = SignerInfo {
                    kind: "raw-key",
                    subject: None,
                    serial: None,
                    certificate_sha256: None,
                    chain: Vec::new(),
                    key_id: trusted.key_id().to_string(),
                };
                (key, info)
            }
        };
        let verifying = VerifyingKey::from_bytes(&key).map_err(|_| SignError::BadSignature)?;
        verifying
            .verify_strict(bundle.statement_der(), &Signature::from_bytes(bundle.signature()))
            .map_err(|_| SignError::BadSignature)?;
        if let Some(expected) = &self.name
            && *expected != statement.name
        {
            return Err(SignError::WrongName {
                expected: expected.clone(),
                actual: statement.name.clone(),
            });
        }
        if statement.signed_at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(SignError::SignedInFuture {
                signed_at: statement.signed_at,
                now,
            });
        }
        Ok(info)
    }

    fn check_chain(
        store: &TrustStore,
        bundle: &Bundle,
        statement: &Statement,
        cert_hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<([u8; 32], SignerInfo), SignError> {
        let (leaf, intermediates) = bundle
            .chain()
            .split_first()
            .ok_or_else(|| SignError::malformed("signature bundle", "no signer certificate"))?;
        let at_signing = VerifyRequest::new(Usage::CodeSigning, statement.signed_at);
        let _valid_when_signed =
            store
                .verify(leaf, intermediates, &at_signing)
                .map_err(|source| SignError::Untrusted {
                    when: CheckTime::SigningTime,
                    source,
                })?;
        let at_now = VerifyRequest::new(Usage::CodeSigning, now);
        let chain = store
            .verify(leaf, intermediates, &at_now)
            .map_err(|source| SignError::Untrusted {
                when: CheckTime::Now,
                source,
            })?;
        let actual = ring::digest::digest(&ring::digest::SHA256, leaf);
        if actual.as_ref() != cert_hash {
            return Err(SignError::SignerMismatch);
        }
        let key = certificate_key(leaf, "signer certificate")?;
        let ee = chain.end_entity();
        let info = SignerInfo {
            kind: "certificate",
            subject: Some(ee.subject.clone()),
            serial: Some(ee.serial.to_string()),
            certificate_sha256: Some(ee.sha256_fingerprint.clone()),
            chain: chain
                .path()
                .iter()
                .filter_map(|c| crate::pki::CertificateInfo::from_der(c).ok())
                .map(|c| c.subject)
                .collect(),
            key_id: KeyId::of(&key).to_string(),
        };
        Ok((key, info))
    }

    /// Verifies a module read from `reader` against `bundle`: checks the bundle first
    /// ([`Verifier::check_bundle`]), then reads at most the signed length (plus one byte to
    /// detect an extended module), hashing as it reads. `sink` receives every chunk as it is
    /// hashed and `progress` the bytes done and the total; `what` names the input in errors.
    ///
    /// # Errors
    /// As [`Verifier::check_bundle`]; [`SignError::Truncated`], [`SignError::Extended`],
    /// [`SignError::DigestMismatch`]; [`SignError::Io`].
    ///
    /// # Security
    /// Bytes given to `sink` are not verified until this returns `Ok`: discard them on error
    /// (as `verify --extract` does by writing to a temporary file it renames only on success).
    pub fn verify_stream<R: Read + Send>(
        &self,
        bundle: &Bundle,
        reader: R,
        what: &str,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Verification, SignError> {
        let now = self.clock.now();
        let signer = self.check_bundle_at(bundle, now)?;
        Self::check_content(bundle, signer, now, reader, what, false, sink, progress)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_content<R: Read + Send>(
        bundle: &Bundle,
        signer: SignerInfo,
        now: OffsetDateTime,
        reader: R,
        what: &str,
        embedded: bool,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Verification, SignError> {
        let statement = bundle.statement();
        let expected = statement.length;
        let out = hash_stream(statement.hash, reader, Some(expected), sink, &mut |done| {
            progress(done, expected)
        })
        .map_err(|e| SignError::io(what, e))?;
        if out.length < expected {
            return Err(SignError::Truncated {
                expected,
                actual: out.length,
            });
        }
        if out.extended {
            return Err(SignError::Extended { expected });
        }
        if out.digest != statement.digest {
            return Err(SignError::DigestMismatch);
        }
        Ok(Self::verification(statement, signer, now, embedded))
    }

    fn verification(statement: &Statement, signer: SignerInfo, now: OffsetDateTime, embedded: bool) -> Verification {
        Verification {
            name: statement.name.clone(),
            length: statement.length,
            hash: statement.hash,
            digest: hex(&statement.digest),
            signed_at: statement.signed_at,
            verified_at: whole_seconds(now),
            signer,
            embedded,
        }
    }

    /// Verifies a module read from `reader` and returns its bytes.
    ///
    /// # Errors
    /// As [`Verifier::verify_stream`], and [`SignError::TooLargeToLoad`] when the signed length
    /// cannot be held in memory (checked after the signature, before allocating).
    pub fn verify_reader<R: Read + Send>(
        &self,
        bundle: &Bundle,
        reader: R,
        what: &str,
    ) -> Result<VerifiedModule, SignError> {
        let now = self.clock.now();
        let signer = self.check_bundle_at(bundle, now)?;
        Self::load_content(bundle, signer, now, reader, what, false)
    }

    /// Verifies the module file at `path`, opened once. The signature is `signature` when
    /// given, else the one embedded in the file, else `PATH.sig`. Chunks go to `sink` as in
    /// [`Verifier::verify_stream`].
    ///
    /// A path that is not a regular file (a named pipe, `/dev/fd/N` from a shell's process
    /// substitution) is read as a stream: against `signature` or `PATH.sig` when either is
    /// there, else as in [`Verifier::verify_embedded_stream`].
    ///
    /// # Errors
    /// [`SignError::NoSignature`], bundle errors, then as [`Verifier::verify_stream`].
    pub fn verify_file(
        &self,
        path: &Path,
        signature: Option<&Path>,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Verification, SignError> {
        let what = path.display().to_string();
        match locate(path, signature)? {
            Found::Regular(file, located) => self.verify_located(&file, located, &what, sink, progress),
            Found::Stream(file, bundle) => self.verify_unseekable(&file, &what, bundle.as_ref(), sink, progress),
        }
    }

    /// A module that can be read only once: against `bundle`, or its embedded signature.
    fn verify_unseekable(
        &self,
        file: &File,
        what: &str,
        bundle: Option<&Bundle>,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Verification, SignError> {
        match bundle {
            Some(bundle) => self.verify_stream(bundle, file, what, sink, progress),
            None => self.verify_embedded_stream(file, what, sink, &mut |done| progress(done, 0)),
        }
    }

    /// Verifies a module in a file that is already open (standard input redirected from a
    /// file, say), read from its start whatever its cursor: against `bundle` when given (the
    /// whole file is the module), else against the signature embedded in it. `what` names the
    /// file in errors; chunks go to `sink` as in [`Verifier::verify_stream`]. A file that is not
    /// a regular file (a pipe) is read once from where it stands, as a stream.
    ///
    /// # Errors
    /// [`SignError::NoEmbeddedSignature`] without `bundle` when the file has no embedded
    /// signature; then as [`Verifier::verify_file`].
    pub fn verify_open_file(
        &self,
        file: &File,
        what: &str,
        bundle: Option<&Bundle>,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Verification, SignError> {
        if !is_regular(file, what)? {
            return self.verify_unseekable(file, what, bundle, sink, progress);
        }
        let located = locate_in(file, what, bundle.cloned())?
            .ok_or_else(|| SignError::NoEmbeddedSignature { what: what.to_string() })?;
        self.verify_located(file, located, what, sink, progress)
    }

    fn verify_located(
        &self,
        file: &File,
        located: Located,
        what: &str,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Verification, SignError> {
        let now = self.clock.now();
        let signer = self.check_bundle_at(&located.bundle, now)?;
        check_length(&located.bundle, located.payload_len)?;
        let reader = ReadFromStart::new(file).take(located.payload_len);
        Self::check_content(
            &located.bundle,
            signer,
            now,
            reader,
            what,
            located.embedded,
            sink,
            progress,
        )
    }

    /// Verifies a module with an embedded signature arriving on a stream that cannot be read
    /// twice (a pipe), in one pass: the signature comes last, so the stream is read to its end,
    /// its payload hashed with every algorithm a statement may name while the last
    /// [`MAX_BUNDLE_SIZE`] + [`FOOTER_LEN`] bytes are held back; then the held-back bundle is
    /// checked ([`Verifier::check_bundle`]), and the payload's length and digest compared.
    /// `sink` receives the payload (never the signature), `progress` the bytes read.
    ///
    /// # Errors
    /// [`SignError::NoEmbeddedSignature`] when the stream does not end in an embedded signature;
    /// then as [`Verifier::verify_stream`].
    ///
    /// # Security
    /// As with [`Verifier::verify_stream`], bytes given to `sink` are not verified until this
    /// returns `Ok`. Unlike the other methods, the module is read before its signer is known to
    /// be trusted; given a file, prefer [`Verifier::verify_open_file`], which checks first.
    pub fn verify_embedded_stream<R: Read + Send>(
        &self,
        reader: R,
        what: &str,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Verification, SignError> {
        const WINDOW: usize = MAX_BUNDLE_SIZE + FOOTER_LEN;
        let mut hashers: Vec<(HashAlgorithm, Hasher)> = HashAlgorithm::ALL.iter().map(|a| (*a, a.hasher())).collect();
        let mut tail: Vec<u8> = Vec::with_capacity(WINDOW);
        let mut total = 0u64;
        pump(reader, None, &mut |chunk| {
            total += chunk.len() as u64;
            progress(total);
            tail.extend_from_slice(chunk);
            if let Some(excess) = tail.len().checked_sub(WINDOW).filter(|&n| n > 0) {
                let head = tail.get(..excess).unwrap_or_default();
                for (_, hasher) in &mut hashers {
                    hasher.update(head);
                }
                sink(head)?;
                tail.drain(..excess);
            }
            Ok(())
        })
        .map_err(|e| SignError::io(what, e))?;

        let none = || SignError::NoEmbeddedSignature { what: what.to_string() };
        let footer_at = tail.len().checked_sub(FOOTER_LEN).ok_or_else(none)?;
        let footer = tail
            .get(footer_at..)
            .and_then(|f| <[u8; FOOTER_LEN]>::try_from(f).ok())
            .ok_or_else(none)?;
        let layout = parse_footer(total, &footer, what)?.ok_or_else(none)?;
        // parse_footer checked bundle_len against the stream's length, and the window holds the
        // whole footer and the largest bundle, so the bundle lies inside `tail`.
        let bundle_at = usize::try_from(layout.bundle_len)
            .ok()
            .and_then(|len| footer_at.checked_sub(len))
            .ok_or_else(|| SignError::malformed(what, "embedded signature length exceeds the stream"))?;
        let bundle = Bundle::from_pem(
            tail.get(bundle_at..footer_at).unwrap_or_default(),
            &format!("{what} (embedded)"),
        )?;
        let now = self.clock.now();
        let signer = self.check_bundle_at(&bundle, now)?;
        check_length(&bundle, layout.payload_len)?;
        let statement = bundle.statement();
        let payload_tail = tail.get(..bundle_at).unwrap_or_default();
        let mut hasher = hashers
            .into_iter()
            .find(|(algorithm, _)| *algorithm == statement.hash)
            .map(|(_, hasher)| hasher)
            .ok_or_else(|| SignError::malformed(what, "unknown hash algorithm"))?;
        hasher.update(payload_tail);
        sink(payload_tail).map_err(|e| SignError::io(what, e))?;
        if hasher.finalize() != statement.digest {
            return Err(SignError::DigestMismatch);
        }
        Ok(Self::verification(statement, signer, now, true))
    }

    /// Verifies the module file at `path` (signature found as in [`Verifier::verify_file`]) and
    /// returns exactly the bytes that were verified, read through one open file handle.
    ///
    /// # Errors
    /// As [`Verifier::verify_file`] and [`Verifier::verify_reader`].
    ///
    /// # Security
    /// Use the returned bytes; opening `path` again would reopen the window for a swap.
    pub fn load_verified(&self, path: &Path, signature: Option<&Path>) -> Result<VerifiedModule, SignError> {
        let what = path.display().to_string();
        let (file, located) = match locate(path, signature)? {
            Found::Regular(file, located) => (file, located),
            Found::Stream(file, Some(bundle)) => return self.verify_reader(&bundle, &file, &what),
            Found::Stream(file, None) => {
                let mut bytes = Vec::new();
                let verification = self.verify_embedded_stream(
                    &file,
                    &what,
                    &mut |chunk| {
                        bytes
                            .try_reserve(chunk.len())
                            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                        bytes.extend_from_slice(chunk);
                        Ok(())
                    },
                    &mut |_| {},
                )?;
                return Ok(VerifiedModule { bytes, verification });
            }
        };
        let now = self.clock.now();
        let signer = self.check_bundle_at(&located.bundle, now)?;
        check_length(&located.bundle, located.payload_len)?;
        let reader = ReadFromStart::new(&file).take(located.payload_len);
        Self::load_content(&located.bundle, signer, now, reader, &what, located.embedded)
    }

    /// Reads, hashes and keeps the module once its bundle has been checked: the bytes returned
    /// are the bytes hashed. Memory for the signed length is reserved before reading.
    fn load_content<R: Read + Send>(
        bundle: &Bundle,
        signer: SignerInfo,
        now: OffsetDateTime,
        reader: R,
        what: &str,
        embedded: bool,
    ) -> Result<VerifiedModule, SignError> {
        let mut bytes = allocate(bundle.statement().length)?;
        let verification = Self::check_content(
            bundle,
            signer,
            now,
            reader,
            what,
            embedded,
            &mut |chunk| {
                bytes.extend_from_slice(chunk);
                Ok(())
            },
            &mut |_, _| {},
        )?;
        Ok(VerifiedModule { bytes, verification })
    }
}

/// Compares the payload's size with the signed length before reading anything.
fn check_length(bundle: &Bundle, payload_len: u64) -> Result<(), SignError> {
    let expected = bundle.statement().length;
    if payload_len < expected {
        return Err(SignError::Truncated {
            expected,
            actual: payload_len,
        });
    }
    if payload_len > expected {
        return Err(SignError::Extended { expected });
    }
    Ok(())
}

/// Reads an open file from its start with positioned reads, leaving its cursor alone.
struct ReadFromStart<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> ReadFromStart<'a> {
    fn new(file: &'a File) -> Self {
        Self { file, offset: 0 }
    }
}

impl Read for ReadFromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Loads the module at `path` if `verifier` accepts it (signature: embedded or `PATH.sig`),
/// returning exactly the verified bytes. Shorthand for [`Verifier::load_verified`].
///
/// # Errors
/// As [`Verifier::load_verified`].
pub fn load_verified(path: &Path, verifier: &Verifier) -> Result<VerifiedModule, SignError> {
    verifier.load_verified(path, None)
}

/// The default detached signature path: `FILE.sig`.
pub fn default_signature_path(module: &Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// An opened module and where its signature is.
enum Found {
    /// A regular file: its signature located (read from the file, or given).
    Regular(File, Located),
    /// Something that can be read only once (a pipe): the detached signature, if there is one.
    Stream(File, Option<Bundle>),
}

/// Opens the module at `path` and finds its signature: `signature` when given, else the one
/// embedded in the file, else `PATH.sig`. For a path that is not a regular file, `signature`
/// or `PATH.sig` when either is there, else none (it must then be embedded).
fn locate(path: &Path, signature: Option<&Path>) -> Result<Found, SignError> {
    let what = path.display().to_string();
    let file = File::open(path).map_err(|e| SignError::io(path, e))?;
    let bundle = signature.map(Bundle::load).transpose()?;
    let sig = default_signature_path(path);
    if !is_regular(&file, &what)? {
        let bundle = match bundle {
            Some(bundle) => Some(bundle),
            None if sig.exists() => Some(Bundle::load(&sig)?),
            None => None,
        };
        return Ok(Found::Stream(file, bundle));
    }
    if let Some(located) = locate_in(&file, &what, bundle)? {
        return Ok(Found::Regular(file, located));
    }
    if !sig.exists() {
        return Err(SignError::NoSignature { path: path.into(), sig });
    }
    let located = locate_in(&file, &what, Some(Bundle::load(&sig)?))?.ok_or_else(|| SignError::NoSignature {
        path: path.into(),
        sig: sig.clone(),
    })?;
    Ok(Found::Regular(file, located))
}

fn is_regular(file: &File, what: &str) -> Result<bool, SignError> {
    Ok(file.metadata().map_err(|e| SignError::io(what, e))?.is_file())
}

/// With `bundle`, the whole file is the module; without, the signature embedded in the file
/// (`None` when there is none).
fn locate_in(file: &File, what: &str, bundle: Option<Bundle>) -> Result<Option<Located>, SignError> {
    let file_len = file.metadata().map_err(|e| SignError::io(what, e))?.len();
    if let Some(bundle) = bundle {
        return Ok(Some(Located {
            bundle,
            payload_len: file_len,
            embedded: false,
        }));
    }
    Ok(read_embedded(file, file_len, what)?.map(|(bundle, layout)| Located {
        bundle,
        payload_len: layout.payload_len,
        embedded: true,
    }))
}

/// Untrusted text, safe to show: control characters become `?`.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn allocate(length: u64) -> Result<Vec<u8>, SignError> {
    let size = usize::try_from(length).map_err(|_| SignError::TooLargeToLoad { length })?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(size)
        .map_err(|_| SignError::TooLargeToLoad { length })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_made_printable() {
        assert_eq!(printable("CN=a\u{1b}[31mb\n"), "CN=a?[31mb?");
        assert_eq!(
            default_signature_path(Path::new("dir/m.so")),
            PathBuf::from("dir/m.so.sig")
        );
    }
}
