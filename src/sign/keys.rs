//! Ed25519 keys for module signing: the signer's key from a PKCS#8 file, raw public keys
//! (SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` writes) and their key ids.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey, PublicKeyBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use pkcs8::der::Decode;
use pkcs8::der::asn1::OctetStringRef;
use zeroize::Zeroizing;

use super::SignError;
use crate::fsutil;
use crate::pki::{KeyAlgorithm, Passphrase, PkiError, PrivateKey, hex, pem};

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

    /// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, RFC 8410 §4), which
    /// OpenSSL reads.
    pub fn to_pem(&self) -> String {
        // Encoding a 32-byte key in its fixed 44-byte SubjectPublicKeyInfo cannot fail (the
        // encoder's errors are lengths beyond what DER can express).
        self.0
            .to_public_key_der()
            .map(|der| pem::to_pem(PUBLIC_KEY, der.as_bytes()))
            .unwrap_or_default()
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
        // RFC 8410 §4: the id-Ed25519 OID, no parameters, the 32 key bytes; DER, nothing after.
        let key = PublicKeyBytes::from_public_key_der(block.contents())
            .map_err(|_| bad("not an Ed25519 SubjectPublicKeyInfo"))?;
        Self::from_bytes(&key.to_bytes()).map_err(|_| bad("not a valid Ed25519 point"))
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
    // RFC 8410 §7: the privateKey OCTET STRING holds a CurvePrivateKey, itself an OCTET STRING
    // of the 32-byte seed. Decoded here rather than through ed25519's KeypairBytes, which
    // would hold a copy of the seed that is not zeroized.
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        <&OctetStringRef>::from_der(info.private_key.as_bytes())
            .ok()
            .and_then(|inner| <[u8; 32]>::try_from(inner.as_bytes()).ok())
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
    fn public_key_der_is_rfc_8410_byte_for_byte_and_read_strictly() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let public = PublicKey(signing_key(&key, "k").unwrap().verifying_key());
        // ring's SubjectPublicKeyInfo for the same key (RFC 8410 §4: 44 bytes).
        let spki = key.public_key_spki().unwrap();
        assert_eq!(spki.len(), 44);
        assert_eq!(public.to_pem(), pem::to_pem(PUBLIC_KEY, &spki));
        let refused = |der: &[u8]| {
            PublicKey::from_pem(pem::to_pem(PUBLIC_KEY, der).as_bytes(), "p.pub")
                .unwrap_err()
                .to_string()
        };
        let not_spki = "p.pub is not an Ed25519 public key: not an Ed25519 SubjectPublicKeyInfo";
        let mut trailing = spki.clone();
        trailing.push(0);
        assert_eq!(refused(&trailing), not_spki);
        assert_eq!(refused(&spki[..43]), not_spki);
        // NULL parameters after the OID (RFC 8410 §3: absent).
        let mut with_null = vec![0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00];
        with_null.extend_from_slice(&spki[9..]);
        assert_eq!(refused(&with_null), not_spki);
        // Thirty-two bytes that are no point on the curve.
        let off_curve = (0u8..=255)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .unwrap();
        let mut der = spki[..12].to_vec();
        der.extend_from_slice(&off_curve);
        assert_eq!(
            refused(&der),
            "p.pub is not an Ed25519 public key: not a valid Ed25519 point"
        );
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
