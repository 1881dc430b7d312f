//! Ed25519 keys for module signing: the signer's key from a PKCS#8 file, raw public keys
//! (SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` writes) and their key ids.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::SignError;
use crate::fsutil;
use crate::pki::{KeyAlgorithm, Passphrase, PkiError, PrivateKey, hex, pem};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// PEM label of a public key.
pub const PUBLIC_KEY: &str = "PUBLIC KEY";

/// A short name for an Ed25519 public key: the first 8 bytes of SHA-256 over its 32 bytes,
/// shown as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// The key id of a raw Ed25519 public key.
    pub fn of(public_key: &[u8; 32]) -> Self {
        let hash = ring::digest::digest(&ring::digest::SHA256, public_key);
        let mut id = [0u8; 8];
        id.copy_from_slice(hash.as_ref().get(..8).unwrap_or(&[0; 8]));
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A raw Ed25519 public key, for raw-key mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Takes 32 public key bytes.
    ///
    /// # Errors
    /// [`SignError::MalformedPublicKey`] when they are not a valid Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SignError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| SignError::MalformedPublicKey {
                what: "public key".into(),
                reason: "not a valid Ed25519 point".into(),
            })
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(self.0.as_bytes())
    }

    /// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), which OpenSSL reads.
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem::to_pem(PUBLIC_KEY, &der)
    }

    /// Parses a `PUBLIC KEY` PEM holding an Ed25519 key. `what` names it in errors.
    ///
    /// # Errors
    /// [`SignError::MalformedPublicKey`].
    pub fn from_pem(bytes: &[u8], what: &str) -> Result<Self, SignError> {
        let bad = |reason: &str| SignError::MalformedPublicKey {
            what: what.into(),
            reason: reason.into(),
        };
        let block = ::pem::parse(bytes).map_err(|e| bad(&crate::pki::pem::describe_pem(&e)))?;
        if block.tag() != PUBLIC_KEY {
            return Err(bad(&format!("holds a {} block, not a PUBLIC KEY", block.tag())));
        }
        let key = block
            .contents()
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| bad("not an Ed25519 SubjectPublicKeyInfo"))?;
        Self::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 point"))
    }

    /// Reads a public key file.
    ///
    /// # Errors
    /// [`SignError::Pki`] when it cannot be read, [`SignError::MalformedPublicKey`].
    pub fn load(path: &Path) -> Result<Self, SignError> {
        Self::from_pem(&pem::read_file(path)?, &path.display().to_string())
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key)
    }
}

/// Extracts the Ed25519 signing key from a PKCS#8 private key. `what` names it in errors.
///
/// # Errors
/// [`SignError::NotEd25519`] for other algorithms, [`SignError::Pki`] for a damaged key.
pub(crate) fn signing_key(key: &PrivateKey, what: &str) -> Result<SigningKey, SignError> {
    if key.algorithm() != KeyAlgorithm::Ed25519 {
        return Err(SignError::NotEd25519 { what: what.into() });
    }
    let info = pkcs8::PrivateKeyInfoRef::try_from(key.pkcs8_der())
        .map_err(|e| PkiError::malformed(what, format!("not a PKCS#8 private key: {e}")))?;
    // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        info.private_key
            .as_bytes()
            .strip_prefix(&[0x04, 0x20][..])
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| PkiError::malformed(what, "Ed25519 private key is not a 32-byte seed"))?,
    );
    let signing = SigningKey::from_bytes(&seed);
    if let Some(public) = info.public_key.and_then(|p| p.as_bytes())
        && public != signing.verifying_key().as_bytes()
    {
        return Err(PkiError::malformed(what, "the public key stored in the key file does not match its seed").into());
    }
    Ok(signing)
}

/// The Ed25519 public key of a DER certificate. `what` names it in errors.
///
/// # Errors
/// [`SignError::NotEd25519`] when the certificate's key is of another kind,
/// [`SignError::Pki`] when it cannot be parsed.
pub(crate) fn certificate_key(cert: &[u8], what: &str) -> Result<[u8; 32], SignError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| {
        PkiError::malformed(
            what,
            format!("not an X.509 certificate: {}", crate::pki::describe_x509(&e)),
        )
    })?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return Err(SignError::NotEd25519 { what: what.into() });
    }
    <[u8; 32]>::try_from(&*spki.subject_public_key.data).map_err(|_| SignError::NotEd25519 { what: what.into() })
}

/// The files written by [`generate_key_pair`].
#[derive(Clone, Debug)]
pub struct GeneratedKeyPair {
    /// The private key file (`PREFIX.key`, mode 0600).
    pub private_key: PathBuf,
    /// The public key file (`PREFIX.pub`).
    pub public_key_file: PathBuf,
    /// The public key.
    pub public_key: PublicKey,
}

/// Generates an Ed25519 key pair for raw-key signing: `PREFIX.key` (PKCS#8, encrypted when a
/// passphrase is given, mode 0600, never overwriting) and `PREFIX.pub` (SPKI PEM).
///
/// # Errors
/// [`SignError::Pki`] with [`PkiError::AlreadyExists`] when either file exists (nothing is
/// written then), or an I/O error.
///
/// # Security
/// The seed comes from the operating system's random source and is zeroized after use.
pub fn generate_key_pair(prefix: &Path, passphrase: Option<&Passphrase>) -> Result<GeneratedKeyPair, SignError> {
    let with_ext = |ext: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let (key_path, pub_path) = (with_ext(".key"), with_ext(".pub"));
    for path in [&key_path, &pub_path] {
        if path.exists() {
            return Err(PkiError::AlreadyExists { path: path.clone() }.into());
        }
    }
    let key = PrivateKey::generate(KeyAlgorithm::Ed25519)?;
    let public = PublicKey(signing_key(&key, "generated key")?.verifying_key());
    key.save(&key_path, passphrase)?;
    if let Err(e) = fsutil::create_new_atomic(&pub_path, public.to_pem().as_bytes(), fsutil::PUBLIC_MODE) {
        // Leave nothing half done: the key we just created goes again.
        let _ = std::fs::remove_file(&key_path);
        return Err(SignError::io(&pub_path, e));
    }
    Ok(GeneratedKeyPair {
        private_key: key_path,
        public_key_file: pub_path,
        public_key: public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_pem_round_trips_and_is_strict() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let public = PublicKey(signing_key(&key, "k").unwrap().verifying_key());
        let pem = public.to_pem();
        assert_eq!(PublicKey::from_pem(pem.as_bytes(), "p").unwrap(), public);
        assert_eq!(public.key_id().to_string().len(), 16);
        let p256 = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
        let spki = pem::to_pem(PUBLIC_KEY, &p256.public_key_spki().unwrap());
        assert!(PublicKey::from_pem(spki.as_bytes(), "p").is_err());
        assert!(matches!(signing_key(&p256, "k"), Err(SignError::NotEd25519 { .. })));
    }

    #[test]
    fn signing_key_matches_ring_public_key() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let signing = signing_key(&key, "k").unwrap();
        let spki = key.public_key_spki().unwrap();
        assert_eq!(&spki[12..], signing.verifying_key().as_bytes());
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("me");
        let pair = generate_key_pair(&prefix, None).unwrap();
        assert_eq!(PublicKey::load(&pair.public_key_file).unwrap(), pair.public_key);
        assert!(generate_key_pair(&prefix, None).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pair.private_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
