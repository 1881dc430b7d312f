//! Private keys at rest: PKCS#8 PEM, optionally encrypted. Tessera writes PBES2 with scrypt and
//! AES-256-CBC, and reads every PBES2 variant OpenSSL 3 writes (see [`super::pbe`]).

use std::fmt;
use std::path::Path;

use pkcs8::der::pem::LineEnding;
use zeroize::Zeroizing;

use super::PkiError;
use super::pem::read_file;
use crate::fsutil;

/// PEM label of an unencrypted PKCS#8 key.
pub const PRIVATE_KEY: &str = "PRIVATE KEY";
/// PEM label of an encrypted PKCS#8 key.
pub const ENCRYPTED_PRIVATE_KEY: &str = "ENCRYPTED PRIVATE KEY";

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Public-key algorithms by OID, for naming the ones Tessera does not use.
const ALGORITHMS: &[(&str, &str)] = &[
    ("1.2.840.113549.1.1.1", "RSA"),
    ("1.2.840.113549.1.1.10", "RSA-PSS"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.10046.2.1", "DH"),
    ("1.2.840.113549.1.3.1", "DH"),
    ("1.3.101.110", "X25519"),
    ("1.3.101.111", "X448"),
    (OID_ED25519, "Ed25519"),
    ("1.3.101.113", "Ed448"),
    ("1.2.156.10197.1.301", "SM2"),
    ("2.16.840.1.101.3.4.3.17", "ML-DSA-44"),
    ("2.16.840.1.101.3.4.3.18", "ML-DSA-65"),
    ("2.16.840.1.101.3.4.3.19", "ML-DSA-87"),
    ("1.2.643.7.1.1.1.1", "GOST R 34.10-2012 (256 bit)"),
    ("1.2.643.7.1.1.1.2", "GOST R 34.10-2012 (512 bit)"),
];

/// Named elliptic curves by OID.
const CURVES: &[(&str, &str)] = &[
    (OID_P256, "P-256"),
    (OID_P384, "P-384"),
    ("1.3.132.0.35", "P-521"),
    ("1.2.840.10045.3.1.1", "P-192"),
    ("1.3.132.0.33", "P-224"),
    ("1.3.132.0.10", "secp256k1"),
    ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
    ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"),
    ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"),
    ("1.2.156.10197.1.301", "SM2"),
];

/// A person's name for a public-key algorithm (`RSA`, `EC P-521`, `Ed448`, …), from the OID of
/// an AlgorithmIdentifier and, for elliptic-curve keys, the OID of the named curve (`None` for
/// explicit curve parameters).
pub(crate) fn algorithm_name(oid: &str, curve: Option<&str>) -> String {
    if oid == OID_EC_PUBLIC_KEY {
        return match curve {
            Some(curve) => CURVES
                .iter()
                .find(|(o, _)| *o == curve)
                .map_or_else(|| format!("EC (curve OID {curve})"), |(_, name)| format!("EC {name}")),
            None => "EC with explicit curve parameters".into(),
        };
    }
    ALGORITHMS.iter().find(|(o, _)| *o == oid).map_or_else(
        || format!("unknown (algorithm OID {oid})"),
        |(_, name)| (*name).to_string(),
    )
}

/// A passphrase for an encrypted key. Zeroized on drop; its `Debug` output is redacted.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase. A trailing newline (as left by `echo` into a file) is removed.
    pub fn new(mut text: String) -> Self {
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        Self(Zeroizing::new(text))
    }

    /// Wraps a passphrase exactly as given (no line ending removed): for passphrase files,
    /// whose one trailing line ending the reader strips.
    pub fn exact(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// Reads a passphrase file (`-`: standard input, read once and kept, see
    /// [`super::pem::read_file`]): its whole content less exactly one trailing line ending
    /// (`\n` or `\r\n`, as `echo pw > f` leaves). Any other whitespace, further newlines
    /// included, is part of the passphrase.
    ///
    /// # Errors
    /// [`PkiError::Io`] when the file cannot be read; [`PkiError::Malformed`] when it is not
    /// UTF-8 or holds no passphrase (`passphrase file F is not valid: it is empty`).
    pub fn from_file(path: &Path) -> Result<Self, PkiError> {
        let what = format!("passphrase file {}", super::pem::display_name(path));
        let bytes = Zeroizing::new(read_file(path)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| PkiError::malformed(&what, "it is not UTF-8 text"))?;
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        if text.is_empty() {
            return Err(PkiError::malformed(&what, "it is empty"));
        }
        Ok(Self::exact(text.to_string()))
    }

    /// The passphrase's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// True for the empty passphrase.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The key algorithms Tessera issues and signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032). Required for module signing.
    Ed25519,
    /// ECDSA on NIST P-256 with SHA-256: the default, accepted by every TLS stack.
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
}

impl KeyAlgorithm {
    /// The name used on command lines and in JSON: `ed25519`, `p256`, `p384`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::P256 => "p256",
            Self::P384 => "p384",
        }
    }

    /// The rcgen signature algorithm for this key type.
    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Self::Ed25519),
            "p256" | "p-256" | "ecdsa-p256" => Ok(Self::P256),
            "p384" | "p-384" | "ecdsa-p384" => Ok(Self::P384),
            _ => Err(format!("unknown key type {s:?} (use ed25519, p256 or p384)")),
        }
    }
}

/// A private key held as PKCS#8 DER, zeroized on drop. `Debug` shows only the algorithm.
pub struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    algorithm: KeyAlgorithm,
}

/// True when PEM text holds a private key block (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`,
/// `EC PRIVATE KEY`, `RSA PRIVATE KEY`, `OPENSSH PRIVATE KEY`, …).
fn holds_private_key(pem_bytes: &[u8]) -> bool {
    const MARK: &[u8] = b"PRIVATE KEY-----";
    pem_bytes.windows(MARK.len()).any(|w| w == MARK)
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh key from the operating system's random source.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] if the random source fails.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, PkiError> {
        let pair =
            rcgen::KeyPair::generate_for(algorithm.rcgen()).map_err(|e| PkiError::malformed("key generation", e))?;
        let der = Zeroizing::new(pair.serialize_der());
        let der = match algorithm {
            // ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key), which
            // OpenSSL 3.0 cannot read; the v1 form (RFC 8410 §7) is read everywhere.
            KeyAlgorithm::Ed25519 => {
                let info = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
                    .map_err(|e| PkiError::malformed("key generation", e))?;
                let v1 = pkcs8::PrivateKeyInfoRef::new(info.algorithm, info.private_key);
                Zeroizing::new(pkcs8::der::Encode::to_der(&v1).map_err(|e| PkiError::malformed("key generation", e))?)
            }
            KeyAlgorithm::P256 | KeyAlgorithm::P384 => der,
        };
        Ok(Self { der, algorithm })
    }

    /// Takes an unencrypted PKCS#8 DER key. `what` names it in errors.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] or [`PkiError::UnsupportedKey`].
    pub fn from_pkcs8_der(der: &[u8], what: &str) -> Result<Self, PkiError> {
        let info = pkcs8::PrivateKeyInfoRef::try_from(der)
            .map_err(|e| PkiError::malformed(what, format!("not a PKCS#8 private key: {e}")))?;
        let oid = info.algorithm.oid.to_string();
        let curve = info.algorithm.parameters_oid().ok().map(|o| o.to_string());
        let algorithm = match (oid.as_str(), curve.as_deref()) {
            (OID_ED25519, _) => KeyAlgorithm::Ed25519,
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => KeyAlgorithm::P256,
            (OID_EC_PUBLIC_KEY, Some(OID_P384)) => KeyAlgorithm::P384,
            _ => {
                return Err(PkiError::UnsupportedKey {
                    what: what.into(),
                    algorithm: algorithm_name(&oid, curve.as_deref()),
                });
            }
        };
        let key = Self {
            der: Zeroizing::new(der.to_vec()),
            algorithm,
        };
        // Make sure ring accepts it too, so failures surface at load time.
        key.to_key_pair_named(what)?;
        Ok(key)
    }

    /// Parses a PEM private key (`PRIVATE KEY` or `ENCRYPTED PRIVATE KEY`).
    ///
    /// An encrypted key may use any PBES2 variant OpenSSL 3 writes: PBKDF2 with HMAC-SHA-1,
    /// -SHA-224, -SHA-256, -SHA-384 or -SHA-512, or scrypt; AES-128-, AES-192- or AES-256-CBC.
    ///
    /// # Errors
    /// [`PkiError::PassphraseRequired`] for an encrypted key without a passphrase,
    /// [`PkiError::WrongPassphrase`] when decryption proves the passphrase wrong,
    /// [`PkiError::UnsupportedEncryption`] for another scheme (PBES1, PKCS#12 PBE, other PBES2
    /// ciphers or PRFs, and OpenSSL's traditional encrypted PEM), [`PkiError::Missing`] when
    /// the PEM holds no key (e.g. a certificate was given), [`PkiError::Malformed`],
    /// [`PkiError::UnsupportedKey`].
    pub fn from_pem(pem_bytes: &[u8], passphrase: Option<&Passphrase>, what: &str) -> Result<Self, PkiError> {
        let blocks =
            ::pem::parse_many(pem_bytes).map_err(|e| PkiError::malformed(what, crate::pki::pem::describe_pem(&e)))?;
        for block in blocks {
            match block.tag() {
                PRIVATE_KEY => return Self::from_pkcs8_der(&Zeroizing::new(block.into_contents()), what),
                ENCRYPTED_PRIVATE_KEY => {
                    let Some(passphrase) = passphrase else {
                        return Err(PkiError::PassphraseRequired { what: what.into() });
                    };
                    let plain = super::pbe::decrypt(block.contents(), passphrase.expose(), what)?;
                    return Self::from_pkcs8_der(&plain, what);
                }
                tag @ ("EC PRIVATE KEY" | "RSA PRIVATE KEY" | "DSA PRIVATE KEY")
                    if block
                        .headers()
                        .get("Proc-Type")
                        .is_some_and(|v| v.contains("ENCRYPTED")) =>
                {
                    let cipher = block.headers().get("DEK-Info").unwrap_or("unknown");
                    let cipher = cipher.split(',').next().unwrap_or(cipher);
                    return Err(PkiError::UnsupportedEncryption {
                        what: what.into(),
                        scheme: format!("OpenSSL's traditional PEM encryption ({tag}, {cipher})"),
                        reason: "only encrypted PKCS#8 keys are supported".into(),
                        conversion: super::pbe::CONVERSION,
                    });
                }
                "EC PRIVATE KEY" | "RSA PRIVATE KEY" | "DSA PRIVATE KEY" | "OPENSSH PRIVATE KEY" => {
                    return Err(PkiError::malformed(
                        what,
                        format!(
                            "{} is not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY`",
                            block.tag()
                        ),
                    ));
                }
                _ => {}
            }
        }
        Err(PkiError::Missing {
            what: what.into(),
            expected: PRIVATE_KEY,
        })
    }

    /// Reads a PEM key file. Logs a warning when the file holds private key material (a
    /// `… PRIVATE KEY` block) and group or others have any access to it; a public key or a
    /// certificate given by mistake gets no such warning, only the error that it holds no key.
    ///
    /// # Errors
    /// As [`PrivateKey::from_pem`], and [`PkiError::Io`].
    pub fn load(path: &Path, passphrase: Option<&Passphrase>) -> Result<Self, PkiError> {
        use std::os::unix::fs::PermissionsExt;
        let bytes = Zeroizing::new(read_file(path)?);
        if holds_private_key(&bytes)
            && let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{:04o}", meta.permissions().mode() & 0o7777),
                "private key file is accessible to group or others; `chmod 600` it"
            );
        }
        Self::from_pem(&bytes, passphrase, &path.display().to_string())
    }

    /// True if the PEM file at `path` holds an encrypted key (so a passphrase will be needed).
    pub fn is_encrypted_file(path: &Path) -> bool {
        read_file(path)
            .map(|b| {
                zeroize::Zeroizing::new(b)
                    .windows(27)
                    .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY")
            })
            .unwrap_or(false)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The PKCS#8 DER encoding. Secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.der
    }

    /// The key as PEM (`PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` when a passphrase is given), in a
    /// buffer zeroized on drop: the PEM text is encoded once, straight into it, so no other copy
    /// of the key is left behind (see [`super::pem`]).
    ///
    /// # Errors
    /// [`PkiError::Malformed`] if encryption fails.
    pub fn to_pem(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>, PkiError> {
        match passphrase {
            Some(p) => {
                let info = pkcs8::PrivateKeyInfoRef::try_from(self.der.as_slice())
                    .map_err(|e| PkiError::malformed("private key", e))?;
                let doc = info
                    .encrypt(p.expose())
                    .map_err(|e| PkiError::malformed("private key encryption", e))?;
                doc.to_pem(ENCRYPTED_PRIVATE_KEY, LineEnding::LF)
                    .map_err(|e| PkiError::malformed("private key encryption", e))
            }
            None => super::pem::to_pem_zeroizing(PRIVATE_KEY, &self.der),
        }
    }

    /// Writes the key to a new file with mode 0600; never overwrites an existing file.
    ///
    /// # Errors
    /// [`PkiError::AlreadyExists`], [`PkiError::Io`].
    pub fn save(&self, path: &Path, passphrase: Option<&Passphrase>) -> Result<(), PkiError> {
        let pem = self.to_pem(passphrase)?;
        fsutil::create_new_atomic(path, pem.as_bytes(), fsutil::PRIVATE_MODE).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::AlreadyExists { path: path.into() }
            } else {
                PkiError::io(path, e)
            }
        })
    }

    /// An rcgen key pair for signing certificates and CRLs.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] if ring rejects the key.
    pub fn to_key_pair(&self) -> Result<rcgen::KeyPair, PkiError> {
        self.to_key_pair_named("private key")
    }

    fn to_key_pair_named(&self, what: &str) -> Result<rcgen::KeyPair, PkiError> {
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(self.der.as_slice());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, self.algorithm.rcgen())
            .map_err(|e| PkiError::malformed(what, format!("unusable private key: {e}")))
    }

    /// The DER SubjectPublicKeyInfo of the matching public key.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] if ring rejects the key.
    pub fn public_key_spki(&self) -> Result<Vec<u8>, PkiError> {
        use rcgen::PublicKeyData;
        Ok(self.to_key_pair()?.subject_public_key_info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_round_trip_and_wrong_passphrase() {
        let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
        let pass = Passphrase::new("correct horse\n".into());
        let pem = key.to_pem(Some(&pass)).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = PrivateKey::from_pem(pem.as_bytes(), Some(&pass), "k").unwrap();
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
        let wrong = Passphrase::new("battery".into());
        assert!(matches!(
            PrivateKey::from_pem(pem.as_bytes(), Some(&wrong), "k"),
            Err(PkiError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            PrivateKey::from_pem(pem.as_bytes(), None, "k"),
            Err(PkiError::PassphraseRequired { .. })
        ));
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256, KeyAlgorithm::P384] {
            let key = PrivateKey::generate(alg).unwrap();
            let pem = key.to_pem(None).unwrap();
            let back = PrivateKey::from_pem(pem.as_bytes(), None, "k").unwrap();
            assert_eq!(back.algorithm(), alg);
        }
    }

    #[test]
    fn ed25519_keys_are_written_as_pkcs8_v1() {
        // RFC 8410 §7: version 0, no public key; OpenSSL 3.0 reads nothing else.
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(key.pkcs8_der().len(), 48);
        assert_eq!(key.pkcs8_der().get(..5), Some(&[0x30, 0x2e, 0x02, 0x01, 0x00][..]));
        key.to_key_pair().unwrap();
    }

    #[test]
    fn pem_of_a_key_is_zeroizing_and_round_trips() {
        let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
        // The type is the point: both forms come in a buffer that is zeroized on drop.
        let plain: Zeroizing<String> = key.to_pem(None).unwrap();
        assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(plain.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(plain.lines().all(|l| l.len() <= 64));
        assert_eq!(*plain, super::super::pem::to_pem(PRIVATE_KEY, key.pkcs8_der()));
        let back = PrivateKey::from_pem(plain.as_bytes(), None, "k").unwrap();
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
        let encrypted: Zeroizing<String> = key.to_pem(Some(&Passphrase::new("pw".into()))).unwrap();
        assert!(encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    }

    #[test]
    fn debug_is_redacted() {
        let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey { algorithm: Ed25519, .. }");
        assert_eq!(format!("{:?}", Passphrase::new("x".into())), "Passphrase(<redacted>)");
    }
}
