//! Password-based decryption of PKCS#8 keys (`ENCRYPTED PRIVATE KEY`, RFC 5958 §3).
//!
//! Tessera reads every PBES2 variant (RFC 8018 §6.2) OpenSSL 3 writes with `openssl pkcs8 -topk8`:
//! PBKDF2 with HMAC-SHA-1, -SHA-224, -SHA-256, -SHA-384 or -SHA-512, or scrypt (RFC 7914), each
//! with AES-128-, AES-192- or AES-256-CBC. Anything else (PBES1, PKCS#12 PBE, other ciphers or
//! PRFs) is named and refused with the command that converts it: it is never reported as a wrong
//! passphrase. A wrong passphrase is reported only when decryption proves it: the CBC padding is
//! wrong, or the decrypted bytes are not a PKCS#8 key.

use pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode, Reader, SliceReader, Tag, Tagged};

type DerResult<T> = Result<T, pkcs8::der::Error>;
use pkcs8::spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use super::PkiError;

/// The command that re-encrypts a key in a scheme Tessera reads.
pub(crate) const CONVERSION: &str = "openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW";

/// The same, for keys whose scheme OpenSSL 3 keeps in its legacy provider (DES, RC2, RC4, MD5 …).
pub(crate) const LEGACY_CONVERSION: &str =
    "openssl pkcs8 -topk8 -v2 aes-256-cbc -provider legacy -provider default -in OLD -out NEW";

/// Whether Tessera reads a scheme's part, and if not, whether OpenSSL 3 needs its legacy
/// provider to read it for conversion.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Support {
    Yes,
    No,
    Legacy,
}
use Support::{Legacy, No, Yes};

/// The most memory scrypt parameters may ask for (128·r·N bytes): 1 GiB. OpenSSL writes
/// N = 16384, r = 8 (16 MiB); Tessera itself writes the same.
const SCRYPT_MAX_MEMORY: u128 = 1 << 30;

/// The most work scrypt parameters may ask for (128·r·N·p bytes mixed): 4 GiB, four passes of
/// the largest memory allowed; the parallelization parameter p multiplies the time, not the
/// memory, so without this bound a 16 MiB key file could ask for hours of work.
const SCRYPT_MAX_WORK: u128 = 1 << 32;

/// The most PBKDF2 iterations a key may ask for: ten million, far above what any tool writes
/// (OpenSSL 2048, OWASP's 2023 advice 600,000 for HMAC-SHA-256) and a few seconds of work;
/// without a bound a key file could ask for 2^64 − 1 iterations and hang whoever loads it.
/// Found by the `pkcs8` fuzz target (`tests/fuzz_regressions/pkcs8/`).
const PBKDF2_MAX_ITERATIONS: u64 = 10_000_000;

const PBES2: &str = "1.2.840.113549.1.5.13";
const PBKDF2: &str = "1.2.840.113549.1.5.12";
const SCRYPT: &str = "1.3.6.1.4.1.11591.4.11";
const HMAC_WITH_SHA1: &str = "1.2.840.113549.2.7";

/// PBKDF2 pseudo-random functions (RFC 8018 B.1) and whether Tessera reads them.
const PRFS: &[(&str, &str, Support)] = &[
    (HMAC_WITH_SHA1, "HMAC-SHA-1", Yes),
    ("1.2.840.113549.2.8", "HMAC-SHA-224", Yes),
    ("1.2.840.113549.2.9", "HMAC-SHA-256", Yes),
    ("1.2.840.113549.2.10", "HMAC-SHA-384", Yes),
    ("1.2.840.113549.2.11", "HMAC-SHA-512", Yes),
    ("1.2.840.113549.2.12", "HMAC-SHA-512/224", No),
    ("1.2.840.113549.2.13", "HMAC-SHA-512/256", No),
    ("1.2.840.113549.2.6", "HMAC-MD5", No),
    ("2.16.840.1.101.3.4.2.13", "HMAC-SHA3-224", No),
    ("2.16.840.1.101.3.4.2.14", "HMAC-SHA3-256", No),
    ("2.16.840.1.101.3.4.2.15", "HMAC-SHA3-384", No),
    ("2.16.840.1.101.3.4.2.16", "HMAC-SHA3-512", No),
    ("1.2.156.10197.1.401.2", "HMAC-SM3", No),
    ("1.2.643.7.1.1.4.1", "HMAC-GOST R 34.11-2012 (256 bit)", No),
    ("1.2.643.7.1.1.4.2", "HMAC-GOST R 34.11-2012 (512 bit)", No),
];

/// PBES2 ciphers and whether Tessera reads them.
const CIPHERS: &[(&str, &str, Support)] = &[
    ("2.16.840.1.101.3.4.1.2", "AES-128-CBC", Yes),
    ("2.16.840.1.101.3.4.1.22", "AES-192-CBC", Yes),
    ("2.16.840.1.101.3.4.1.42", "AES-256-CBC", Yes),
    ("2.16.840.1.101.3.4.1.6", "AES-128-GCM", No),
    ("2.16.840.1.101.3.4.1.26", "AES-192-GCM", No),
    ("2.16.840.1.101.3.4.1.46", "AES-256-GCM", No),
    ("1.2.840.113549.3.7", "DES-EDE3-CBC (triple DES)", No),
    ("1.3.14.3.2.7", "DES-CBC", Legacy),
    ("1.2.840.113549.3.2", "RC2-CBC", Legacy),
    ("1.2.840.113549.3.9", "RC5-CBC", Legacy),
    ("1.3.6.1.4.1.188.7.1.1.2", "IDEA-CBC", Legacy),
    ("1.3.6.1.4.1.3029.1.2", "Blowfish-CBC", Legacy),
    ("1.2.840.113533.7.66.10", "CAST5-CBC", Legacy),
    ("1.2.392.200011.61.1.1.1.2", "Camellia-128-CBC", No),
    ("1.2.392.200011.61.1.1.1.3", "Camellia-192-CBC", No),
    ("1.2.392.200011.61.1.1.1.4", "Camellia-256-CBC", No),
    ("1.2.410.200046.1.1.2", "ARIA-128-CBC", No),
    ("1.2.410.200046.1.1.7", "ARIA-192-CBC", No),
    ("1.2.410.200046.1.1.12", "ARIA-256-CBC", No),
    ("1.2.156.10197.1.104.2", "SM4-CBC", No),
    ("1.2.410.200004.1.4", "SEED-CBC", Legacy),
];

/// Password-based schemes other than PBES2 (RFC 8018 §6.1 PBES1; RFC 7292 App. C PKCS#12 PBE).
const OTHER_SCHEMES: &[(&str, &str, Support)] = &[
    ("1.2.840.113549.1.5.1", "PBES1 pbeWithMD2AndDES-CBC", Legacy),
    ("1.2.840.113549.1.5.3", "PBES1 pbeWithMD5AndDES-CBC", Legacy),
    ("1.2.840.113549.1.5.4", "PBES1 pbeWithMD2AndRC2-CBC", Legacy),
    ("1.2.840.113549.1.5.6", "PBES1 pbeWithMD5AndRC2-CBC", Legacy),
    ("1.2.840.113549.1.5.10", "PBES1 pbeWithSHA1AndDES-CBC", Legacy),
    ("1.2.840.113549.1.5.11", "PBES1 pbeWithSHA1AndRC2-CBC", Legacy),
    ("1.2.840.113549.1.12.1.1", "PKCS#12 PBE pbeWithSHAAnd128BitRC4", Legacy),
    ("1.2.840.113549.1.12.1.2", "PKCS#12 PBE pbeWithSHAAnd40BitRC4", Legacy),
    (
        "1.2.840.113549.1.12.1.3",
        "PKCS#12 PBE pbeWithSHAAnd3-KeyTripleDES-CBC",
        No,
    ),
    (
        "1.2.840.113549.1.12.1.4",
        "PKCS#12 PBE pbeWithSHAAnd2-KeyTripleDES-CBC",
        No,
    ),
    (
        "1.2.840.113549.1.12.1.5",
        "PKCS#12 PBE pbeWithSHAAnd128BitRC2-CBC",
        Legacy,
    ),
    (
        "1.2.840.113549.1.12.1.6",
        "PKCS#12 PBE pbeWithSHAAnd40BitRC2-CBC",
        Legacy,
    ),
];

/// What protects an encrypted key, as read from its AlgorithmIdentifier.
struct Scheme {
    /// For messages, e.g. `PBES2 (PBKDF2 with HMAC-SHA-1, AES-256-CBC)`.
    description: String,
    /// Why Tessera cannot read it, if it cannot.
    unsupported: Option<String>,
    /// OpenSSL 3 needs its legacy provider to read it.
    legacy: bool,
}

/// Decrypts the DER of an `EncryptedPrivateKeyInfo` into PKCS#8 `PrivateKeyInfo` DER.
///
/// # Errors
/// [`PkiError::UnsupportedEncryption`] for a scheme Tessera does not read (named, with the
/// conversion command), [`PkiError::WrongPassphrase`] when decryption proves the passphrase
/// wrong (bad padding, or the result is not a PKCS#8 key), [`PkiError::Malformed`] for a
/// damaged structure.
pub(super) fn decrypt(der: &[u8], passphrase: &[u8], what: &str) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    let malformed = |reason: String| PkiError::malformed(what, reason);
    let (algorithm, ciphertext) = outer(der).map_err(|e| malformed(format!("not an encrypted PKCS#8 key: {e}")))?;
    let scheme = describe(&algorithm).map_err(malformed)?;
    if let Some(reason) = scheme.unsupported {
        return Err(PkiError::UnsupportedEncryption {
            what: what.into(),
            scheme: scheme.description,
            reason,
            conversion: if scheme.legacy { LEGACY_CONVERSION } else { CONVERSION },
        });
    }
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
        .map_err(|e| malformed(format!("its {} parameters are not valid: {e}", scheme.description)))?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(malformed(format!(
            "its encrypted data is {} bytes, not a whole number of AES blocks: the file is damaged",
            ciphertext.len()
        )));
    }
    match info.encryption_algorithm.decrypt(passphrase, ciphertext) {
        Ok(plain) => {
            let plain = Zeroizing::new(plain);
            // CBC padding comes out right by chance about once in 256 wrong passphrases: the
            // result must also be a PKCS#8 key.
            if pkcs8::PrivateKeyInfoRef::try_from(plain.as_slice()).is_err() {
                return Err(PkiError::WrongPassphrase { what: what.into() });
            }
            Ok(plain)
        }
        Err(pkcs8::pkcs5::Error::DecryptFailed) => Err(PkiError::WrongPassphrase { what: what.into() }),
        Err(e) => Err(malformed(format!("cannot decrypt its {}: {e}", scheme.description))),
    }
}

/// `EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm AlgorithmIdentifier,
/// encryptedData OCTET STRING }`, nothing after it.
fn outer(der: &[u8]) -> Result<(AlgorithmIdentifierRef<'_>, &[u8]), pkcs8::der::Error> {
    let any = AnyRef::from_der(der)?;
    any.sequence(|reader: &mut SliceReader<'_>| {
        let algorithm: AlgorithmIdentifierRef<'_> = reader.decode()?;
        let data: &OctetStringRef = reader.decode()?;
        DerResult::Ok((algorithm, data.as_bytes()))
    })
}

fn lookup<'a>(table: &'a [(&str, &'a str, Support)], oid: &ObjectIdentifier) -> Option<(&'a str, Support)> {
    let oid = oid.to_string();
    table
        .iter()
        .find(|(o, _, _)| *o == oid)
        .map(|(_, name, ok)| (*name, *ok))
}

/// Names the scheme of an `EncryptedPrivateKeyInfo`; `Err` when its PBES2 parameters are
/// malformed (a damaged file, not an unsupported scheme).
fn describe(algorithm: &AlgorithmIdentifierRef<'_>) -> Result<Scheme, String> {
    let oid = algorithm.oid.to_string();
    if oid == PBES2 {
        return match algorithm.parameters.map(pbes2_parts) {
            Some(Ok(scheme)) => Ok(scheme),
            Some(Err(e)) => Err(format!("its PBES2 parameters are malformed: {e}")),
            None => Err("its PBES2 parameters are missing".into()),
        };
    }
    let known = OTHER_SCHEMES.iter().find(|(o, _, _)| *o == oid);
    Ok(Scheme {
        description: known.map_or_else(
            || format!("an unknown scheme (OID {oid})"),
            |(_, name, _)| (*name).to_string(),
        ),
        unsupported: Some("only PBES2 (RFC 8018) is supported".into()),
        legacy: known.is_some_and(|(_, _, support)| *support == Legacy),
    })
}

/// `PBES2-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier, encryptionScheme
/// AlgorithmIdentifier }` (RFC 8018 A.4), named.
fn pbes2_parts(params: AnyRef<'_>) -> Result<Scheme, pkcs8::der::Error> {
    let (kdf, cipher) = params.sequence(|reader: &mut SliceReader<'_>| {
        let kdf: AlgorithmIdentifierRef<'_> = reader.decode()?;
        let cipher: AlgorithmIdentifierRef<'_> = reader.decode()?;
        DerResult::Ok((kdf, cipher))
    })?;
    let mut unsupported = Vec::new();
    let mut legacy = false;
    let kdf_name = match kdf.oid.to_string().as_str() {
        PBKDF2 => {
            let (iterations, prf) = kdf
                .parameters
                .map(pbkdf2_parameters)
                .transpose()?
                .ok_or_else(|| Tag::Sequence.value_error())?;
            if iterations > PBKDF2_MAX_ITERATIONS {
                unsupported.push(format!(
                    "PBKDF2 with {iterations} iterations (at most {PBKDF2_MAX_ITERATIONS})"
                ));
            }
            let prf = prf.unwrap_or(ObjectIdentifier::new_unwrap(HMAC_WITH_SHA1));
            match lookup(PRFS, &prf) {
                Some((name, Yes)) => format!("PBKDF2 with {name}"),
                Some((name, support)) => {
                    legacy |= support == Legacy;
                    unsupported.push(format!("the PBKDF2 function {name}"));
                    format!("PBKDF2 with {name}")
                }
                None => {
                    unsupported.push(format!("the PBKDF2 function with OID {prf}"));
                    format!("PBKDF2 with OID {prf}")
                }
            }
        }
        SCRYPT => {
            let (n, r, p) = kdf
                .parameters
                .map(scrypt_cost)
                .transpose()?
                .ok_or_else(|| Tag::Sequence.value_error())?;
            let memory = 128u128 * u128::from(r) * u128::from(n);
            let work = memory * u128::from(p);
            if memory > SCRYPT_MAX_MEMORY {
                unsupported.push(format!(
                    "scrypt parameters that need {} MiB of memory (N={n}, r={r}, p={p}; at most {} MiB)",
                    memory >> 20,
                    SCRYPT_MAX_MEMORY >> 20
                ));
            } else if work > SCRYPT_MAX_WORK {
                unsupported.push(format!(
                    "scrypt parameters that mix {} MiB (N={n}, r={r}, p={p}; at most {} MiB)",
                    work >> 20,
                    SCRYPT_MAX_WORK >> 20
                ));
            }
            "scrypt".to_string()
        }
        other => {
            unsupported.push(format!("the key derivation function with OID {other}"));
            format!("key derivation OID {other}")
        }
    };
    let cipher_name = match lookup(CIPHERS, &cipher.oid) {
        Some((name, support)) => {
            if support != Yes {
                unsupported.push(format!("the cipher {name}"));
            }
            legacy |= support == Legacy;
            name.to_string()
        }
        None => {
            unsupported.push(format!("the cipher with OID {}", cipher.oid));
            format!("cipher OID {}", cipher.oid)
        }
    };
    let description = format!("PBES2 ({kdf_name}, {cipher_name})");
    let unsupported = (!unsupported.is_empty()).then(|| {
        format!(
            "{} is not supported (PBES2 keys may use PBKDF2 with HMAC-SHA-1/224/256/384/512 or \
             scrypt, with AES-128/192/256-CBC)",
            unsupported.join(" and ")
        )
    });
    Ok(Scheme {
        description,
        unsupported,
        legacy,
    })
}

/// The iteration count and PRF of `PBKDF2-params ::= SEQUENCE { salt, iterationCount,
/// keyLength OPTIONAL, prf AlgorithmIdentifier DEFAULT hmacWithSHA1 }` (RFC 8018 A.2); the PRF
/// is `None` when absent. An iteration count too large for 64 bits reads as `u64::MAX`.
fn pbkdf2_parameters(params: AnyRef<'_>) -> Result<(u64, Option<ObjectIdentifier>), pkcs8::der::Error> {
    params.sequence(|reader: &mut SliceReader<'_>| {
        // The salt: an OCTET STRING, or a SEQUENCE (the `otherSource` choice).
        let _salt: AnyRef<'_> = reader.decode()?;
        let count: AnyRef<'_> = reader.decode()?;
        let iterations = match count.decode_as::<u64>() {
            Ok(n) => n,
            Err(_) if count.tag() == Tag::Integer => u64::MAX,
            Err(e) => return Err(e),
        };
        let mut prf = None;
        while !reader.is_finished() {
            let item: AnyRef<'_> = reader.decode()?;
            if item.tag() == Tag::Sequence
                && prf.is_none()
                && let Ok(algorithm) = item.decode_as::<AlgorithmIdentifierRef<'_>>()
            {
                prf = Some(algorithm.oid);
            }
        }
        DerResult::Ok((iterations, prf))
    })
}

/// `scrypt-params ::= SEQUENCE { salt OCTET STRING, costParameter INTEGER, blockSize INTEGER,
/// parallelizationParameter INTEGER, keyLength INTEGER OPTIONAL }` (RFC 7914 §7).
fn scrypt_cost(params: AnyRef<'_>) -> Result<(u64, u64, u64), pkcs8::der::Error> {
    params.sequence(|reader: &mut SliceReader<'_>| {
        let _salt: &OctetStringRef = reader.decode()?;
        let n: u64 = reader.decode()?;
        let r: u64 = reader.decode()?;
        let p: u64 = reader.decode()?;
        while !reader.is_finished() {
            let _: AnyRef<'_> = reader.decode()?;
        }
        DerResult::Ok((n, r, p))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    use pkcs8::der::Encode;
    use pkcs8::pkcs5::EncryptionScheme;
    use pkcs8::pkcs5::pbes2::{self, Kdf, Salt, ScryptParams};

    /// An `EncryptedPrivateKeyInfo` holding `plain` encrypted under `scheme` with `password`.
    fn encrypted(scheme: &EncryptionScheme, password: &[u8], plain: &[u8]) -> Vec<u8> {
        let data = scheme.encrypt(password, plain).unwrap();
        pkcs8::EncryptedPrivateKeyInfoRef {
            encryption_algorithm: scheme.clone(),
            encrypted_data: OctetStringRef::new(&data).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    fn pbkdf2_scheme() -> EncryptionScheme {
        EncryptionScheme::Pbes2(pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(2048, &[7; 16], [9; 16]).unwrap())
    }

    #[test]
    fn a_right_passphrase_decrypts() {
        let key = super::super::PrivateKey::generate(super::super::KeyAlgorithm::P256).unwrap();
        let der = encrypted(&pbkdf2_scheme(), b"pw", key.pkcs8_der());
        assert_eq!(decrypt(&der, b"pw", "k").unwrap().as_slice(), key.pkcs8_der());
    }

    #[test]
    fn a_decryption_to_anything_but_pkcs8_is_a_wrong_passphrase() {
        // The padding comes out right, but the plaintext is not a key: what a wrong passphrase
        // gives about once in 256 tries.
        let der = encrypted(&pbkdf2_scheme(), b"pw", b"\x30\x03\x02\x01\x07 not a key");
        assert!(matches!(
            decrypt(&der, b"pw", "k"),
            Err(PkiError::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn a_damaged_ciphertext_length_is_malformed() {
        let mut der = encrypted(&pbkdf2_scheme(), b"pw", b"0123456789");
        // Drop the last ciphertext byte and fix the two lengths (outer SEQUENCE, OCTET STRING).
        der.pop();
        der[1] -= 1;
        let at = der.len() - 16;
        assert_eq!(der[at], 16, "the OCTET STRING's length");
        der[at] -= 1;
        match decrypt(&der, b"pw", "k") {
            Err(PkiError::Malformed { reason, .. }) => assert!(reason.contains("15 bytes"), "{reason}"),
            other => panic!("expected a damaged key, got {other:?}"),
        }
    }

    #[test]
    fn scrypt_parameters_that_would_exhaust_memory_are_refused_before_deriving() {
        // N = 2^24, r = 8: 16 GiB.
        let params = ScryptParams {
            salt: Salt::new([1; 16]).unwrap(),
            cost_parameter: 1 << 24,
            block_size: 8,
            parallelization: 1,
            key_length: None,
        };
        let scheme = EncryptionScheme::Pbes2(pbes2::Parameters {
            kdf: Kdf::from(params),
            encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [0; 16] },
        });
        let der = pkcs8::EncryptedPrivateKeyInfoRef {
            encryption_algorithm: scheme,
            encrypted_data: OctetStringRef::new(&[0; 48]).unwrap(),
        }
        .to_der()
        .unwrap();
        match decrypt(&der, b"pw", "k") {
            Err(PkiError::UnsupportedEncryption { reason, .. }) => {
                assert!(reason.contains("16384 MiB"), "{reason}");
            }
            other => panic!("expected the parameters to be refused, got {other:?}"),
        }
    }

    #[test]
    fn pbkdf2_iteration_counts_that_would_hang_are_refused_before_deriving() {
        for iterations in [PBKDF2_MAX_ITERATIONS + 1, u32::MAX.into()] {
            // pkcs5 refuses to build such parameters, but decodes them: set the count by hand.
            let mut parameters = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(2048, &[7; 16], [9; 16]).unwrap();
            if let Kdf::Pbkdf2(pbkdf2) = &mut parameters.kdf {
                pbkdf2.iteration_count = u32::try_from(iterations).unwrap();
            }
            let scheme = EncryptionScheme::Pbes2(parameters);
            let der = encrypted_without_deriving(scheme);
            let started = std::time::Instant::now();
            match decrypt(&der, b"pw", "k") {
                Err(PkiError::UnsupportedEncryption { reason, .. }) => {
                    assert!(
                        reason.contains(&format!("PBKDF2 with {iterations} iterations")),
                        "{reason}"
                    );
                }
                other => panic!("expected {iterations} iterations to be refused, got {other:?}"),
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "nothing was derived"
            );
        }
        // The most allowed still decrypts (with a cheap count, the same code path).
        let key = super::super::PrivateKey::generate(super::super::KeyAlgorithm::Ed25519).unwrap();
        let der = encrypted(&pbkdf2_scheme(), b"pw", key.pkcs8_der());
        assert!(decrypt(&der, b"pw", "k").is_ok());
    }

    #[test]
    fn scrypt_parameters_that_would_take_hours_are_refused_before_deriving() {
        // N = 2^14, r = 8: 16 MiB, fine; p = 2^10 makes it 16 GiB of mixing.
        let params = ScryptParams {
            salt: Salt::new([1; 16]).unwrap(),
            cost_parameter: 1 << 14,
            block_size: 8,
            parallelization: 1 << 10,
            key_length: None,
        };
        let der = encrypted_without_deriving(EncryptionScheme::Pbes2(pbes2::Parameters {
            kdf: Kdf::from(params),
            encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [0; 16] },
        }));
        match decrypt(&der, b"pw", "k") {
            Err(PkiError::UnsupportedEncryption { reason, .. }) => {
                assert!(reason.contains("mix 16384 MiB"), "{reason}");
            }
            other => panic!("expected the parameters to be refused, got {other:?}"),
        }
    }

    /// An `EncryptedPrivateKeyInfo` under `scheme` with dummy ciphertext (nothing is derived).
    fn encrypted_without_deriving(scheme: EncryptionScheme) -> Vec<u8> {
        pkcs8::EncryptedPrivateKeyInfoRef {
            encryption_algorithm: scheme,
            encrypted_data: OctetStringRef::new(&[0; 48]).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn garbage_is_malformed_not_a_wrong_passphrase() {
        for der in [&b""[..], b"\x30\x00", b"\x30\x03\x02\x01\x00", b"not der at all"] {
            assert!(matches!(decrypt(der, b"pw", "k"), Err(PkiError::Malformed { .. })));
        }
    }
}
