//! PKCS#12 (RFC 7292) export of an issued certificate, its chain and its key (`ca export
//! PREFIX --pkcs12 OUT`), for the programs that import nothing else (Windows, macOS Keychain,
//! Java key stores, browsers).
//!
//! The encoding is p12-keystore's (on the same RustCrypto generation as the rest of Tessera).
//! Two profiles:
//! - [`Pkcs12Profile::Modern`] (the default): the key in a shrouded key bag and the
//!   certificates in an encrypted bag, both PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC
//!   (RFC 8018), [`ITERATIONS`] iterations; the integrity MAC is HMAC-SHA-256 with the PKCS#12
//!   key derivation (RFC 7292 Appendix B), also [`ITERATIONS`] iterations (a lower MAC count
//!   would let a guesser test passphrases against the MAC faster than against the encryption).
//!   OpenSSL 1.1.1 and later, Windows 10 1709 and later, macOS 12 and later, Java 8u301 and
//!   later read it.
//! - [`Pkcs12Profile::Legacy`] (`--legacy`): pbeWithSHAAnd3-KeyTripleDES-CBC for the key and
//!   the certificates and an HMAC-SHA-1 MAC (the PKCS#12 KDF), [`LEGACY_ITERATIONS`]
//!   iterations, for older readers (OpenSSL 1.0, Windows 7, older macOS and Java); 3DES and
//!   SHA-1 are weak, so use it only for them. OpenSSL 3 reads it with `-legacy`.
//!
//! The bags hold the certificate (with the key's localKeyId, the SHA-1 of the certificate, and
//! its subject as friendlyName), then the rest of `PREFIX.chain.pem` (intermediates; the root is
//! not there, as relying parties pin it), and the key (PKCS#8) with the same localKeyId.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use super::CaError;
use super::authority::spki_of;
use crate::pki::{CertificateInfo, Passphrase, PkiError, PrivateKey, pem};

/// PBKDF2 (and MAC) iterations of the modern profile: OWASP's 2023 figure for
/// PBKDF2-HMAC-SHA256.
pub const ITERATIONS: u32 = 600_000;

/// Iterations of the legacy profile: the same count (3DES readers accept it; a lower one would
/// only make guessing cheaper).
pub const LEGACY_ITERATIONS: u32 = ITERATIONS;

/// How a PKCS#12 file is protected (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pkcs12Profile {
    /// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an HMAC-SHA-256 MAC.
    #[default]
    Modern,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC and an HMAC-SHA-1 MAC, for old readers.
    Legacy,
}

/// What `ca export` reads from `PREFIX`: the files `ca issue` wrote.
#[derive(Debug)]
pub struct Exportable {
    /// `PREFIX.pem`'s certificate.
    pub certificate: CertificateDer<'static>,
    /// `PREFIX.chain.pem`: the certificate followed by its intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// `PREFIX.key`, decrypted.
    pub key: PrivateKey,
    /// The certificate's facts.
    pub info: CertificateInfo,
}

/// The files of `prefix`: `PREFIX.pem`, `PREFIX.key`, `PREFIX.chain.pem`. A prefix given with
/// one of those endings (`www.pem`, `www.key`, `www.chain.pem`) stands for `www`.
pub fn prefix_files(prefix: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let text = prefix.as_os_str().to_string_lossy();
    let stem = [".chain.pem", ".pem", ".key"]
        .iter()
        .find_map(|ending| text.strip_suffix(ending))
        .map_or_else(|| prefix.as_os_str().to_owned(), std::ffi::OsString::from);
    let with = |suffix: &str| {
        let mut name = stem.clone();
        name.push(suffix);
        PathBuf::from(name)
    };
    (with(".pem"), with(".key"), with(".chain.pem"))
}

impl Exportable {
    /// Reads `PREFIX.pem`, `PREFIX.chain.pem` (which must start with that certificate) and
    /// `PREFIX.key` (decrypted with `key_passphrase` when it is encrypted; it must be the key
    /// of the certificate).
    ///
    /// # Errors
    /// [`CaError::Pki`]: a missing or unreadable file ([`PkiError::Io`]), no certificate in
    /// it, a chain that does not start with the certificate or a key that is not its key
    /// ([`PkiError::Malformed`]), [`PkiError::PassphraseRequired`],
    /// [`PkiError::WrongPassphrase`].
    pub fn load(prefix: &Path, key_passphrase: Option<&Passphrase>) -> Result<Self, CaError> {
        let (cert_path, key_path, chain_path) = prefix_files(prefix);
        let certificate = pem::load_certificates(&cert_path)?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::malformed(cert_path.display().to_string(), "it holds no certificate"))?;
        let chain = pem::load_certificates(&chain_path)?;
        if chain.first() != Some(&certificate) {
            return Err(PkiError::malformed(
                chain_path.display().to_string(),
                format!("it does not start with the certificate of {}", cert_path.display()),
            )
            .into());
        }
        let key = PrivateKey::load(&key_path, key_passphrase)?;
        if key.public_key_spki()? != spki_of(&certificate)? {
            return Err(PkiError::malformed(
                key_path.display().to_string(),
                format!("it is not the key of {}", cert_path.display()),
            )
            .into());
        }
        let info = CertificateInfo::from_der(&certificate)?;
        Ok(Self {
            certificate,
            chain,
            key,
            info,
        })
    }

    /// The PKCS#12 file (DER `PFX`) protected by `passphrase` as `profile` says.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `passphrase`) when the passphrase is not UTF-8 (PKCS#12
    /// passwords are BMPStrings, RFC 7292 Appendix B.1); [`CaError::Pki`] when the encoding
    /// fails.
    ///
    /// # Security
    /// The key is encrypted and the whole file authenticated under `passphrase` alone: its
    /// strength is the file's.
    pub fn to_pkcs12(&self, passphrase: &Passphrase, profile: Pkcs12Profile) -> Result<Zeroizing<Vec<u8>>, CaError> {
        use p12_keystore::{EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKeyChain};

        let password = std::str::from_utf8(passphrase.expose())
            .map_err(|_| CaError::invalid("passphrase", "a PKCS#12 passphrase must be UTF-8 text"))?;
        let failed =
            |e: p12_keystore::error::Error| PkiError::malformed("the PKCS#12 file", format!("cannot be made: {e}"));
        let certs = self
            .chain
            .iter()
            .map(|c| p12_keystore::Certificate::from_der(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let key = p12_keystore::PrivateKey::from_der(self.key.pkcs8_der()).map_err(failed)?;
        let local_key_id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.certificate)
            .as_ref()
            .to_vec();
        let alias = self.info.name();
        let mut store = KeyStore::new();
        store.add_entry(
            &alias,
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
        );
        let writer = store.writer(password);
        let writer = match profile {
            Pkcs12Profile::Modern => writer
                .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
                .encryption_iterations(ITERATIONS)
                .mac_algorithm(MacAlgorithm::HmacSha256)
                .mac_iterations(ITERATIONS),
            Pkcs12Profile::Legacy => writer
                .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
                .encryption_iterations(LEGACY_ITERATIONS)
                .mac_algorithm(MacAlgorithm::HmacSha1)
                .mac_iterations(LEGACY_ITERATIONS),
        };
        Ok(Zeroizing::new(writer.write().map_err(failed)?))
    }
}

/// Whether `path` (following symbolic links) is a FIFO, a device, a socket or a pipe such as
/// `/dev/fd/63` (`--pkcs12 >(cmd)`): an output [`create_private`] writes into directly.
pub fn writes_directly(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| !meta.is_file() && !meta.is_dir())
}

/// Writes `bytes` to `path` as a new file, mode 0600 (never over an existing one, nor through a
/// link), atomically: a crash leaves no partial file. A FIFO, device or pipe
/// ([`writes_directly`]) is written into directly instead, without atomicity, as every Tessera
/// output is.
///
/// # Errors
/// [`PkiError::AlreadyExists`] when `path` exists (and is not such a target); [`CaError::Io`]
/// otherwise.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    if writes_directly(path) {
        use std::io::Write;
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut out| {
                out.write_all(bytes)?;
                out.flush()
            })
            .map_err(|e| CaError::io(path, e));
    }
    crate::fsutil::create_new_atomic(path, bytes, crate::fsutil::PRIVATE_MODE).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::AlreadyExists { path: path.into() }.into()
        } else {
            CaError::io(path, e)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixes_may_name_any_of_their_files() {
        for given in ["d/www", "d/www.pem", "d/www.key", "d/www.chain.pem"] {
            let (cert, key, chain) = prefix_files(Path::new(given));
            assert_eq!(
                (cert, key, chain),
                (
                    PathBuf::from("d/www.pem"),
                    PathBuf::from("d/www.key"),
                    PathBuf::from("d/www.chain.pem")
                ),
                "{given}"
            );
        }
        assert_eq!(
            prefix_files(Path::new("www.example.org")).0,
            PathBuf::from("www.example.org.pem")
        );
    }
}
