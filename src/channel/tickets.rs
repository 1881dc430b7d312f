//! Fleet-wide TLS 1.3 session tickets: tickets sealed with keys read from a file, so that a
//! client resumes on any server that holds the same file (nginx's `ssl_session_ticket_key`,
//! HAProxy's `tls-ticket-keys`).
//!
//! # The key file
//!
//! One key per line: the standard base64 encoding (RFC 4648 §4, padded) of 32 random bytes.
//! Blank lines and lines starting with `#` are ignored. The **first** key seals new tickets;
//! **every** key listed opens them, so keys can be rotated across a fleet without a failed
//! resumption. The file must be a regular file that neither group nor others may read or write
//! (mode 0600 or 0400), of at most [`MAX_TICKET_KEY_FILE`] bytes, with 1 to [`MAX_TICKET_KEYS`]
//! distinct keys. [`new_ticket_key`] writes it (`echo-server --new-ticket-key FILE`): a fresh
//! key first, at most [`KEPT_TICKET_KEYS`] keys kept.
//!
//! # Tickets
//!
//! `version (1) ‖ key name (16) ‖ issued at (8, Unix seconds, big-endian) ‖ nonce (12) ‖
//! AES-256-GCM(plaintext) ‖ tag (16)`, with the first 25 bytes as associated data. The key name
//! is the first 16 bytes of SHA-256(`"tessera session ticket key name"` ‖ key), so it names the
//! key without revealing it. A ticket whose key is not in the file, that does not authenticate,
//! or that is older than the lifetime is not opened: the client gets a full handshake, never a
//! failed one.
//!
//! # Lifetime
//!
//! The lifetime sent to clients (RFC 8446 §4.6.1, at most seven days) is also enforced when a
//! ticket is opened. With keys rotated no more often than once per lifetime and
//! [`KEPT_TICKET_KEYS`] keys kept, the key that sealed a ticket is still in the file for at least
//! one more full lifetime after it stopped sealing, so every ticket a client holds can be opened
//! for as long as the client is told it may use it.
//!
//! # Security
//!
//! Whoever holds the keys can open every ticket sealed with them, and a ticket holds the
//! resumption secret from which the traffic keys of every session resumed with it derive: the
//! keys must stay secret (never logged, 0600) and be rotated, and a key that has left the file
//! no longer opens anything. Keys are zeroized when dropped. Each ticket's nonce is random
//! (96 bits): far below the 2^32 tickets per key AES-GCM allows with random nonces, at any
//! realistic rotation period.
//!
//! A resumed session inherits the authentication of the handshake that minted its ticket
//! (RFC 8446 §2.2), so before a ticket is honoured the client certificate chain it carries is
//! verified again with the server's current trust store (anchors and CRLs, as reloaded) and
//! allow list ([`ResumptionCheck`]); a chain that fails gets a full handshake, in which the
//! server's verifier refuses it with the alert that says why.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

use super::ChannelError;
use super::identity::{Authorization, PeerIdentity};
use super::refusal::Refusal;
use crate::pki::{TrustStore, Usage, VerifyRequest};

/// Bytes of one ticket key.
pub const TICKET_KEY_LEN: usize = 32;
/// Most keys a key file may list.
pub const MAX_TICKET_KEYS: usize = 8;
/// Keys [`new_ticket_key`] keeps (the new one included).
pub const KEPT_TICKET_KEYS: usize = 3;
/// Largest key file read, in bytes.
pub const MAX_TICKET_KEY_FILE: u64 = 4096;
/// The default ticket lifetime: one hour.
pub const DEFAULT_TICKET_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest ticket lifetime (RFC 8446 §4.6.1: seven days).
pub const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

const VERSION: u8 = 1;
const NAME_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NAME_LEN + 8;
const TAG_LEN: usize = 16;
/// Tickets issued this far in the future (clock differences across a fleet) are still opened.
const CLOCK_SKEW: u64 = 60;

/// One key, wiped when dropped.
struct TicketKey {
    name: [u8; NAME_LEN],
    secret: Zeroizing<[u8; TICKET_KEY_LEN]>,
}

impl TicketKey {
    fn new(secret: [u8; TICKET_KEY_LEN]) -> Self {
        let secret = Zeroizing::new(secret);
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"tessera session ticket key name");
        context.update(secret.as_ref());
        let digest = context.finish();
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(digest.as_ref().get(..NAME_LEN).unwrap_or(&[0u8; NAME_LEN]));
        Self { name, secret }
    }

    /// The AEAD key (ring keeps no copy beyond this value's life).
    fn aead(&self) -> Option<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, self.secret.as_ref())
            .ok()
            .map(LessSafeKey::new)
    }
}

/// The keys of a ticket key file, first (sealing) key first. Never shown: its `Debug` form
/// gives only the count.
pub struct TicketKeys {
    keys: Vec<TicketKey>,
    path: PathBuf,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl TicketKeys {
    /// Reads a key file (format in the module documentation). Blocking file I/O.
    ///
    /// # Errors
    /// [`ChannelError::TicketKeys`] when the file cannot be read, is not a regular file, is
    /// open to group or others, is too large, or does not hold 1 to [`MAX_TICKET_KEYS`] distinct
    /// base64 keys of [`TICKET_KEY_LEN`] bytes (the message names the line, never its content).
    pub fn load(path: &Path) -> Result<Self, ChannelError> {
        let text = read_key_file(path)?;
        let keys = parse_keys(path, &text)?;
        if keys.is_empty() {
            return Err(problem(path, "it holds no key".into()));
        }
        Ok(Self {
            keys,
            path: path.to_path_buf(),
        })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a key set holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file the keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key names (hex), sealing key first: what a log may say about the keys.
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(|key| hex(&key.name)).collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn problem(path: &Path, reason: String) -> ChannelError {
    ChannelError::TicketKeys {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads the key file after checking it is a private regular file.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, ChannelError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| problem(path, format!("cannot read it: {e}"));
    // Before opening: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(problem(path, "it is not a regular file".into()));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(problem(path, "it is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(problem(
            path,
            format!("its mode is {mode:04o}: group and others may access it (make it 0600)"),
        ));
    }
    if meta.len() > MAX_TICKET_KEY_FILE {
        return Err(problem(
            path,
            format!(
                "it is {} bytes, more than the {MAX_TICKET_KEY_FILE} a key file may hold",
                meta.len()
            ),
        ));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_TICKET_KEY_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_TICKET_KEY_FILE {
        return Err(problem(path, "it grew past the size a key file may hold".into()));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| problem(path, "it is not text".into()))?
        .to_string();
    Ok(Zeroizing::new(text))
}

/// The keys in a key file's text, in order.
fn parse_keys(path: &Path, text: &str) -> Result<Vec<TicketKey>, ChannelError> {
    let mut keys: Vec<TicketKey> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|_| problem(path, format!("line {number} is not base64")))?,
        );
        let mut secret = [0u8; TICKET_KEY_LEN];
        if decoded.len() != TICKET_KEY_LEN {
            return Err(problem(
                path,
                format!(
                    "line {number} holds {} bytes, not a {TICKET_KEY_LEN}-byte key",
                    decoded.len()
                ),
            ));
        }
        secret.copy_from_slice(&decoded);
        let key = TicketKey::new(secret);
        secret.zeroize();
        if keys.iter().any(|k| k.name == key.name) {
            return Err(problem(path, format!("line {number} repeats an earlier key")));
        }
        if keys.len() == MAX_TICKET_KEYS {
            return Err(problem(path, format!("it holds more than {MAX_TICKET_KEYS} keys")));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Puts a fresh random key first in the key file at `path` and keeps at most
/// [`KEPT_TICKET_KEYS`] keys: the file is created (0600, never over anything) when absent, else
/// checked as [`TicketKeys::load`] does and replaced atomically, keeping its mode (0600 or
/// 0400). Returns the key names now in the file, new key first.
///
/// # Errors
/// [`ChannelError::TicketKeys`]: an existing file that [`TicketKeys::load`] refuses, no
/// randomness, or the write failing (the file is then unchanged).
pub fn new_ticket_key(path: &Path) -> Result<Vec<String>, ChannelError> {
    let existing = match path.symlink_metadata() {
        Ok(_) => Some(TicketKeys::load(path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(problem(path, format!("cannot examine it: {e}"))),
    };
    let mut secret = Zeroizing::new([0u8; TICKET_KEY_LEN]);
    SystemRandom::new()
        .fill(secret.as_mut())
        .map_err(|_| problem(path, "no randomness for a new key".into()))?;
    let mut text = Zeroizing::new(String::from(
        "# Tessera session ticket keys: the first seals, all open. Secret: keep 0600.\n",
    ));
    let mut names = vec![hex(&TicketKey::new(*secret).name)];
    text.push_str(&base64::engine::general_purpose::STANDARD.encode(secret.as_ref()));
    text.push('\n');
    for key in existing
        .iter()
        .flat_map(|keys| keys.keys.iter())
        .take(KEPT_TICKET_KEYS - 1)
    {
        text.push_str(&base64::engine::general_purpose::STANDARD.encode(key.secret.as_ref()));
        text.push('\n');
        names.push(hex(&key.name));
    }
    let written = if existing.is_some() {
        // 0600 or 0400, as `load` checked: kept.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(crate::fsutil::PRIVATE_MODE, |m| m.permissions().mode() & 0o777);
        crate::fsutil::write_atomic(path, text.as_bytes(), mode)
    } else {
        crate::fsutil::create_new_atomic(path, text.as_bytes(), crate::fsutil::PRIVATE_MODE)
    };
    written.map_err(|e| problem(path, format!("cannot write it: {e}")))?;
    Ok(names)
}

/// How many verdicts a [`ResumptionCheck`] remembers at most; past it, expired verdicts are
/// dropped first, then the oldest.
pub const MAX_CACHED_VERDICTS: usize = 1024;

/// Verifies, again, the client certificate chain a session ticket carries before the ticket is
/// honoured: [`TrustStore::verify`] for [`Usage::Client`] at the current time with the server's
/// current trust anchors and CRLs, then the allow list (RFC 8446 §2.2: a resumed session
/// inherits the original handshake's authentication, which must still hold).
///
/// # The verdict cache
///
/// A chain that passed is remembered (by the SHA-256 of its certificates, each length-prefixed)
/// with the instant its verdict stops holding: the earliest notAfter on the verified path (end
/// entity, intermediates, root) and, when the store holds CRLs, the earliest CRL nextUpdate
/// (past it a stale CRL refuses what it covers, RFC 5280 §5.1.2.5). A later ticket with the same
/// chain is admitted without verifying again only while `verified at ≤ now < that instant`;
/// otherwise the chain is verified in full. The cache belongs to this check, and a check to one
/// server configuration: a reload (SIGHUP: new roots, CRLs or allow list) builds a new
/// configuration with a new, empty cache, so a revocation reloaded is in force for the next
/// resumption. Refusals are not cached. At most [`MAX_CACHED_VERDICTS`] verdicts are kept.
#[derive(Clone, Debug)]
pub struct ResumptionCheck {
    store: Arc<TrustStore>,
    authorization: Authorization,
    /// `Some`: verdicts may be cached, bounded by this CRL nextUpdate (`Some(None)`: the store
    /// holds no CRL). `None`: the store holds CRLs whose nextUpdate is unknown; no caching.
    crl_bound: Option<Option<OffsetDateTime>>,
    cache: Arc<Mutex<VerdictCache>>,
}

/// A verdict that held: who the chain names, and the span in which it holds.
#[derive(Clone, Debug)]
struct Verdict {
    identity: PeerIdentity,
    verified_at: OffsetDateTime,
    valid_until: OffsetDateTime,
    /// Insertion order, for eviction.
    order: u64,
}

#[derive(Debug, Default)]
struct VerdictCache {
    entries: HashMap<[u8; 32], Verdict>,
    next_order: u64,
}

impl VerdictCache {
    fn insert(&mut self, key: [u8; 32], mut verdict: Verdict, now: OffsetDateTime) {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_CACHED_VERDICTS {
            self.entries.retain(|_, v| v.verified_at <= now && now < v.valid_until);
            while self.entries.len() >= MAX_CACHED_VERDICTS {
                let Some(oldest) = self.entries.iter().min_by_key(|(_, v)| v.order).map(|(k, _)| *k) else {
                    break;
                };
                self.entries.remove(&oldest);
            }
        }
        verdict.order = self.next_order;
        self.next_order = self.next_order.wrapping_add(1);
        self.entries.insert(key, verdict);
    }
}

/// SHA-256 over the chain, each certificate prefixed with its length (8 bytes, big-endian), so
/// two different chains never share a key.
fn chain_key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for certificate in chain {
        context.update(&(certificate.len() as u64).to_be_bytes());
        context.update(certificate.as_ref());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

impl ResumptionCheck {
    /// Checks against `store` and `authorization` (those of the server configuration in force).
    /// If `store` holds CRLs, verdicts are not cached unless [`ResumptionCheck::with_crl_next_update`]
    /// says when the CRLs go stale.
    pub fn new(store: Arc<TrustStore>, authorization: Authorization) -> Self {
        let crl_bound = (store.crl_count() == 0).then_some(None);
        Self {
            store,
            authorization,
            crl_bound,
            cache: Arc::new(Mutex::new(VerdictCache::default())),
        }
    }

    /// The earliest nextUpdate of the CRLs in the store (`None`: none has one, or there are
    /// none), so that cached verdicts stop at it.
    #[must_use]
    pub fn with_crl_next_update(mut self, next_update: Option<OffsetDateTime>) -> Self {
        self.crl_bound = Some(next_update);
        self
    }

    /// How many verdicts are cached now.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }

    /// Verifies `chain` (end entity first) at `now`, from the cache when a verdict for the same
    /// chain holds at `now`.
    ///
    /// # Errors
    /// The [`Refusal`] a full handshake would give the same chain: no certificate, not trusted,
    /// revoked, expired, wrong usage, not on the allow list.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: OffsetDateTime) -> Result<PeerIdentity, Refusal> {
        let Some(crl_bound) = self.crl_bound else {
            return self.verify_fully(chain, now).map(|(identity, _)| identity);
        };
        let key = chain_key(chain);
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(verdict) = cache.entries.get(&key)
                && verdict.verified_at <= now
                && now < verdict.valid_until
            {
                return Ok(verdict.identity.clone());
            }
        }
        let (identity, not_after) = self.verify_fully(chain, now)?;
        let valid_until = match crl_bound {
            Some(next_update) => not_after.min(next_update),
            None => not_after,
        };
        if now < valid_until {
            let verdict = Verdict {
                identity: identity.clone(),
                verified_at: now,
                valid_until,
                order: 0,
            };
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, verdict, now);
        }
        Ok(identity)
    }

    /// The full check; with the identity, the earliest notAfter on the verified path.
    fn verify_fully(
        &self,
        chain: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<(PeerIdentity, OffsetDateTime), Refusal> {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err(Refusal::NoCertificate);
        };
        let request = VerifyRequest::new(Usage::Client, now);
        let verified = self
            .store
            .verify(end_entity, intermediates, &request)
            .map_err(|error| Refusal::from_pki(&error))?;
        let identity = PeerIdentity::from_certificate(end_entity).ok_or_else(|| Refusal::Untrusted {
            reason: "the certificate cannot be parsed".into(),
        })?;
        if !self.authorization.permits(&identity) {
            return Err(Refusal::NotAllowed { peer: identity });
        }
        // A certificate that cannot be read here gives no bound: the verdict is then not kept.
        let not_after = verified
            .path()
            .iter()
            .map(|certificate| {
                x509_parser::parse_x509_certificate(certificate.as_ref())
                    .ok()
                    .map_or(now, |(_, parsed)| parsed.validity().not_after.to_datetime())
            })
            .min()
            .unwrap_or(now);
        Ok((identity, not_after))
    }
}

/// Session tickets for a server configuration: the keys and the lifetime.
#[derive(Clone, Debug)]
pub struct SessionTickets {
    /// The keys (shared by every configuration built from the same file contents).
    pub keys: Arc<TicketKeys>,
    /// How long a ticket may be used: sent to clients and enforced on opening (at most
    /// [`MAX_TICKET_LIFETIME`]; rotate the keys no more often than once per lifetime).
    pub lifetime: Duration,
}

/// rustls' ticket interface over [`TicketKeys`], with the [`ResumptionCheck`] of the
/// configuration it belongs to.
pub(crate) struct Ticketer {
    keys: Arc<TicketKeys>,
    lifetime: u32,
    check: Option<ResumptionCheck>,
    random: SystemRandom,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer")
            .field("keys", &self.keys)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Ticketer {
    /// Tickets sealed with `tickets.keys`; `check` (when the server authenticates clients)
    /// decides whether a ticket's client chain may still resume.
    pub(crate) fn new(tickets: &SessionTickets, check: Option<ResumptionCheck>) -> Self {
        let lifetime = tickets.lifetime.min(MAX_TICKET_LIFETIME).as_secs();
        Self {
            keys: Arc::clone(&tickets.keys),
            lifetime: u32::try_from(lifetime).unwrap_or(u32::MAX),
            check,
            random: SystemRandom::new(),
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn seal(&self, plain: &[u8], issued: u64) -> Option<Vec<u8>> {
        let key = self.keys.keys.first()?;
        let aead = key.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        ticket.push(VERSION);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&issued.to_be_bytes());
        let mut sealed = plain.to_vec();
        aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ticket.as_slice()),
            &mut sealed,
        )
        .ok()?;
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        sealed.zeroize();
        Some(ticket)
    }

    /// Opens a ticket: `None` for a ticket of another format, an unknown key, a bad tag, or
    /// past its lifetime.
    fn open(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        let (header, rest) = ticket.split_at_checked(HEADER_LEN)?;
        let (&version, header_rest) = header.split_first()?;
        if version != VERSION {
            return None;
        }
        let (name, issued) = header_rest.split_at_checked(NAME_LEN)?;
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        if issued > now.saturating_add(CLOCK_SKEW) || now.saturating_sub(issued) > u64::from(self.lifetime) {
            return None;
        }
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        if sealed.len() < TAG_LEN {
            return None;
        }
        let key = self.keys.keys.iter().find(|key| key.name == name)?;
        let aead = key.aead()?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut opened = sealed.to_vec();
        let plain = match aead.open_in_place(nonce, Aad::from(header), &mut opened) {
            Ok(plain) => plain.to_vec(),
            Err(_) => return None,
        };
        opened.zeroize();
        Some(plain)
    }

    /// May the session in `plain` (rustls' encoding) resume? Only when the check admits its
    /// client chain; a chain that cannot be found is not admitted.
    fn admits(&self, plain: &[u8]) -> bool {
        let Some(check) = &self.check else {
            return true;
        };
        let Some(chain) = client_chain(plain) else {
            tracing::debug!("session ticket not honoured (its client certificate cannot be read): full handshake");
            return false;
        };
        match check.verify(&chain, OffsetDateTime::now_utc()) {
            Ok(_) => true,
            Err(refusal) => {
                tracing::info!(reason = %refusal, "session ticket not honoured: its client certificate no longer passes; full handshake");
                false
            }
        }
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(plain, Self::now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = Zeroizing::new(self.open(cipher, Self::now())?);
        self.admits(&plain).then(|| plain.to_vec())
    }
}

/// The client certificate chain of a session as rustls 0.23 encodes it in a ticket
/// (`ServerSessionValue`: SNI option, version, suite, master secret, EMS flag, then the client
/// chain option as a TLS `Certificate` list). `None` when there is no chain or the bytes do not
/// parse: the ticket is then not honoured (a full handshake verifies the client instead), so a
/// change of this encoding can cost resumption but never skip a check.
fn client_chain(plain: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let mut reader = Reader(plain);
    match reader.u8()? {
        0 => {}
        1 => {
            let len = usize::from(reader.u8()?);
            reader.take(len)?;
        }
        _ => return None,
    }
    reader.take(2)?; // version
    reader.take(2)?; // cipher suite
    let secret = usize::from(reader.u8()?);
    reader.take(secret)?;
    if reader.u8()? > 1 {
        return None;
    }
    if reader.u8()? != 1 {
        return None;
    }
    let list = reader.u24()?;
    let mut certificates = Reader(reader.take(list)?);
    let mut chain = Vec::new();
    while !certificates.0.is_empty() {
        let len = certificates.u24()?;
        chain.push(CertificateDer::from(certificates.take(len)?.to_vec()));
    }
    (!chain.is_empty()).then_some(chain)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u24(&mut self) -> Option<usize> {
        let bytes = self.take(3)?;
        Some(bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::os::unix::fs::PermissionsExt;

    use rustls::server::ProducesTickets as _;

    use super::*;

    fn key_line(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; TICKET_KEY_LEN])
    }

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("keys");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn ticketer(keys: &str, dir: &Path, lifetime: u64) -> Ticketer {
        let path = write(dir, keys, 0o600);
        let keys = Arc::new(TicketKeys::load(&path).unwrap());
        Ticketer::new(
            &SessionTickets {
                keys,
                lifetime: Duration::from_secs(lifetime),
            },
            None,
        )
    }

    #[test]
    fn the_first_key_seals_every_key_opens_and_a_dropped_key_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let old = ticketer(&format!("{}\n", key_line(1)), dir.path(), 3600);
        let ticket = old.encrypt(b"session").unwrap();
        assert_eq!(old.decrypt(&ticket).unwrap(), b"session");
        // Rotated: a new key first, the old one kept.
        let rotated = ticketer(&format!("# c\n\n{}\n{}\n", key_line(2), key_line(1)), dir.path(), 3600);
        assert_eq!(rotated.decrypt(&ticket).unwrap(), b"session");
        let new_ticket = rotated.encrypt(b"again").unwrap();
        assert_eq!(new_ticket.get(1..17), Some(&TicketKey::new([2; 32]).name[..]));
        assert!(old.decrypt(&new_ticket).is_none(), "the old set lacks the new key");
        // The old key dropped.
        let dropped = ticketer(&format!("{}\n", key_line(2)), dir.path(), 3600);
        assert!(dropped.decrypt(&ticket).is_none());
        assert_eq!(dropped.decrypt(&new_ticket).unwrap(), b"again");
    }

    #[test]
    fn tampered_truncated_expired_and_future_tickets_do_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let t = ticketer(&key_line(7), dir.path(), 100);
        let now = Ticketer::now();
        let ticket = t.seal(b"plain", now).unwrap();
        assert_eq!(t.open(&ticket, now).unwrap(), b"plain");
        for index in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[index] ^= 1;
            assert!(t.open(&bad, now).is_none(), "bit flip at {index}");
        }
        for len in 0..ticket.len() {
            assert!(t.open(&ticket[..len], now).is_none(), "cut at {len}");
        }
        assert!(t.open(&ticket, now + 100).is_some());
        assert!(t.open(&ticket, now + 101).is_none(), "past its lifetime");
        let future = t.seal(b"plain", now + 3600).unwrap();
        assert!(t.open(&future, now).is_none(), "issued in the future");
        assert_eq!(t.lifetime(), 100);
        let long = ticketer(&key_line(7), dir.path(), 30 * 24 * 3600);
        assert_eq!(long.lifetime(), 7 * 24 * 3600, "at most seven days");
    }

    #[test]
    fn bad_key_files_are_refused_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let secret = key_line(9);
        let refused = |text: &str, mode: u32| {
            let path = write(dir.path(), text, mode);
            TicketKeys::load(&path).unwrap_err().to_string()
        };
        let open = refused(&secret, 0o644);
        assert!(open.contains("mode is 0644") && !open.contains(&secret), "{open}");
        assert!(refused(&secret, 0o640).contains("0640"));
        assert!(refused("", 0o600).contains("holds no key"));
        assert!(refused("# only a comment\n", 0o600).contains("holds no key"));
        assert!(refused("not base64!\n", 0o600).contains("line 1 is not base64"));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(refused(&format!("{secret}\n{short}\n"), 0o600).contains("line 2 holds 16 bytes"));
        assert!(refused(&format!("{secret}\n{secret}\n"), 0o600).contains("line 2 repeats"));
        let many: String = (0..=8u8).map(|b| format!("{}\n", key_line(b))).collect();
        assert!(refused(&many, 0o600).contains("more than 8 keys"));
        assert!(!format!("{:?}", TicketKeys::load(&write(dir.path(), &secret, 0o400)).unwrap()).contains(&secret));
        let error = TicketKeys::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[test]
    fn new_ticket_key_creates_0600_then_rotates_keeping_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.keys");
        let first = new_ticket_key(&path).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut all = first.clone();
        for round in 2..=4 {
            let names = new_ticket_key(&path).unwrap();
            assert_eq!(names.len(), round.min(KEPT_TICKET_KEYS));
            assert_eq!(
                &names[1..],
                &all[..names.len() - 1],
                "the new key first, the others in order"
            );
            assert_eq!(TicketKeys::load(&path).unwrap().names(), names);
            all = names;
        }
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        new_ticket_key(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400,
            "mode kept"
        );
        // A file open to others is refused, and left as it was.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(new_ticket_key(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn the_client_chain_is_read_from_the_session_encoding() {
        // sni "a", TLS 1.3, a suite, a 2-byte secret, EMS, two certificates, then the rest.
        let mut plain = vec![1, 1, b'a', 0x03, 0x04, 0x13, 0x01, 2, 9, 9, 0, 1];
        plain.extend_from_slice(&[0, 0, 9, 0, 0, 2, 0xaa, 0xbb, 0, 0, 1, 0xcc]);
        plain.extend_from_slice(&[0, 0, 0]);
        let chain = client_chain(&plain).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), &[0xaa, 0xbb]);
        assert_eq!(chain[1].as_ref(), &[0xcc]);
        // No chain, or bytes cut short: none.
        let mut none = plain[..11].to_vec();
        none.push(0);
        assert!(client_chain(&none).is_none());
        for len in 0..20 {
            assert!(client_chain(&plain[..len]).is_none(), "cut at {len}");
        }
    }

    mod verdicts {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        use time::macros::datetime;

        use super::*;

        const NOW: OffsetDateTime = datetime!(2030-06-01 0:00 UTC);
        const LEAF_NOT_AFTER: OffsetDateTime = datetime!(2030-12-01 0:00 UTC);

        struct Root {
            params: CertificateParams,
            key: KeyPair,
            der: CertificateDer<'static>,
        }

        fn root(cn: &str) -> Root {
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = datetime!(2030-01-01 0:00 UTC);
            params.not_after = datetime!(2031-01-01 0:00 UTC);
            let key = KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().clone();
            Root { params, key, der }
        }

        fn client(root: &Root, cn: &str) -> CertificateDer<'static> {
            let mut params = CertificateParams::new(vec![format!("{cn}.example")]).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.use_authority_key_identifier_extension = true;
            params.not_before = datetime!(2030-01-01 0:00 UTC);
            params.not_after = LEAF_NOT_AFTER;
            let issuer = Issuer::from_params(&root.params, &root.key);
            params
                .signed_by(&KeyPair::generate().unwrap(), &issuer)
                .unwrap()
                .der()
                .clone()
        }

        fn check(root: &Root) -> ResumptionCheck {
            let mut store = TrustStore::new();
            store.add_root(root.der.clone(), "root").unwrap();
            ResumptionCheck::new(Arc::new(store), Authorization::any_verified())
        }

        fn valid_until(check: &ResumptionCheck, chain: &[CertificateDer<'_>]) -> Option<OffsetDateTime> {
            let cache = check.cache.lock().unwrap();
            cache.entries.get(&chain_key(chain)).map(|v| v.valid_until)
        }

        #[test]
        fn a_cached_verdict_ends_at_the_earliest_not_after_and_is_not_used_past_it() {
            let ca = root("root");
            let check = check(&ca);
            let chain = [client(&ca, "alice")];
            assert_eq!(check.verify(&chain, NOW).unwrap().common_name.as_deref(), Some("alice"));
            assert_eq!(check.cached(), 1);
            assert_eq!(valid_until(&check, &chain), Some(LEAF_NOT_AFTER));
            // A hit within the span.
            assert!(check.verify(&chain, LEAF_NOT_AFTER - time::Duration::SECOND).is_ok());
            // At and past notAfter the chain is verified in full, and refused as expired.
            for at in [LEAF_NOT_AFTER + time::Duration::SECOND, datetime!(2030-12-02 0:00 UTC)] {
                let refusal = check.verify(&chain, at).unwrap_err();
                assert!(matches!(refusal, Refusal::Expired { .. }), "{at}: {refusal:?}");
            }
            // A clock set back before the verdict was made: verified in full (not yet valid).
            assert!(check.verify(&chain, datetime!(2029-12-01 0:00 UTC)).is_err());
        }

        #[test]
        fn a_different_chain_never_hits_another_chains_verdict() {
            let ca = root("root");
            let other = root("other root");
            let check = check(&ca);
            let alice = client(&ca, "alice");
            assert!(check.verify(std::slice::from_ref(&alice), NOW).is_ok());
            // Same subject, untrusted issuer; the trusted leaf with an extra certificate; the
            // trusted leaf's bytes split differently.
            assert!(check.verify(&[client(&other, "alice")], NOW).is_err());
            let longer = [alice.clone(), other.der.clone()];
            assert_ne!(chain_key(&longer), chain_key(std::slice::from_ref(&alice)));
            let (head, tail) = alice.as_ref().split_at(10);
            let split = [CertificateDer::from(head.to_vec()), CertificateDer::from(tail.to_vec())];
            assert_ne!(chain_key(&split), chain_key(std::slice::from_ref(&alice)));
            assert!(check.verify(&split, NOW).is_err());
            assert_eq!(check.cached(), 1, "refusals are not cached");
            // A chain not on the allow list of a configuration that excludes it.
            let store = Arc::clone(&check.store);
            let strict = ResumptionCheck::new(store, Authorization::only(["bob"]));
            assert!(matches!(
                strict.verify(std::slice::from_ref(&alice), NOW),
                Err(Refusal::NotAllowed { .. })
            ));
            assert_eq!(strict.cached(), 0, "a new configuration starts with an empty cache");
        }

        #[test]
        fn crls_bound_the_verdict_and_unknown_crl_times_disable_the_cache() {
            let ca = root("root");
            let check = check(&ca).with_crl_next_update(Some(NOW + time::Duration::HOUR));
            let chain = [client(&ca, "alice")];
            assert!(check.verify(&chain, NOW).is_ok());
            assert_eq!(valid_until(&check, &chain), Some(NOW + time::Duration::HOUR));
            // A store with CRLs whose nextUpdate nobody gave: nothing cached.
            let mut store = TrustStore::clone(&check.store);
            let crl = rcgen::CertificateRevocationListParams {
                this_update: datetime!(2030-05-01 0:00 UTC),
                next_update: datetime!(2030-07-01 0:00 UTC),
                crl_number: rcgen::SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            }
            .signed_by(&Issuer::from_params(&ca.params, &ca.key))
            .unwrap();
            store.add_crl(crl.der(), "crl").unwrap();
            let unbounded = ResumptionCheck::new(Arc::new(store), Authorization::any_verified());
            assert!(unbounded.verify(&chain, NOW).is_ok());
            assert_eq!(unbounded.cached(), 0);
        }

        #[test]
        fn the_cache_stays_within_its_bound_dropping_expired_then_oldest() {
            let identity = PeerIdentity::from_certificate(&root("x").der).unwrap();
            let verdict = |until: OffsetDateTime| Verdict {
                identity: identity.clone(),
                verified_at: NOW,
                valid_until: until,
                order: 0,
            };
            let mut cache = VerdictCache::default();
            let later = NOW + time::Duration::DAY;
            for index in 0..MAX_CACHED_VERDICTS + 50 {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&(index as u64).to_be_bytes());
                // Every tenth verdict has expired by the time the cache is full.
                let until = if index % 10 == 0 {
                    NOW + time::Duration::SECOND
                } else {
                    later
                };
                cache.insert(key, verdict(until), NOW + time::Duration::MINUTE);
                assert!(cache.entries.len() <= MAX_CACHED_VERDICTS, "{index}");
            }
            // When it first filled up (1024), its 103 expired verdicts went, nothing else: 921,
            // then 50 more.
            assert_eq!(cache.entries.len(), MAX_CACHED_VERDICTS - 103 + 50);
            let key_of = |index: u64| {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&index.to_be_bytes());
                key
            };
            assert!(!cache.entries.contains_key(&key_of(0)) && !cache.entries.contains_key(&key_of(1020)));
            let first = key_of(1);
            assert!(cache.entries.contains_key(&first));
            // Filled with live verdicts: then the oldest goes, one per insertion.
            for index in 0..(103 - 50 + 1) {
                let mut key = [0xff; 32];
                key[..8].copy_from_slice(&(index as u64).to_be_bytes());
                cache.insert(key, verdict(later), NOW);
            }
            assert_eq!(cache.entries.len(), MAX_CACHED_VERDICTS);
            assert!(cache.entries.contains_key(&key_of(1074 - 1)));
            assert!(!cache.entries.contains_key(&first), "the oldest was evicted");
        }
    }
}
