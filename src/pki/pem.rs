//! Reading certificates and CRLs from PEM (or DER) files, and writing them as PEM.
//!
//! One PEM codec per direction:
//! - **Reading**: the `pem` crate ([`parse_blocks`], and every other reader in Tessera: keys,
//!   public keys, bundles, CSRs). It reads the RFC 7468 "lax" form files come in (CRLF line
//!   ends, text before and between blocks, RFC 1421 headers such as OpenSSL's `Proc-Type` and
//!   `DEK-Info`, which is how an OpenSSL-encrypted traditional key is recognised), and its
//!   errors are worded for people by [`describe_pem`].
//! - **Writing**: RFC 7468's strict form (64-column base64, LF line ends, no headers), through
//!   `pem-rfc7468` (the encoder of the `pkcs8` / `der` crates, which also writes encrypted
//!   keys): [`to_pem`] for public objects. It encodes into a buffer of the exact size, so a
//!   private key is written through a [`Zeroizing`] buffer and leaves no unzeroized copy
//!   ([`crate::pki::PrivateKey::to_pem`]).

use std::path::Path;

use pkcs8::der::pem::LineEnding;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use zeroize::Zeroizing;

use super::PkiError;

/// What is wrong with PEM text, in words, with what to do (the `pem` crate's own texts read
/// `malformedframing` or `Invalid symbol 33, offset 0.`).
pub fn describe_pem(error: &pem::PemError) -> String {
    use pem::PemError as E;
    const DAMAGED: &str = "the file is damaged or was edited: use an intact copy";
    match error {
        E::MismatchedTags(begin, end) => format!(
            "its BEGIN line names \"{}\" but its END line \"{}\": {DAMAGED}",
            crate::text::printable(begin),
            crate::text::printable(end)
        ),
        E::MalformedFraming => format!(
            "its PEM armour is broken (the -----BEGIN …----- and -----END …----- lines are damaged or out of \
             place): {DAMAGED}"
        ),
        E::MissingBeginTag => format!("it has no -----BEGIN …----- line: {DAMAGED}"),
        E::MissingEndTag => "it has no -----END …----- line: the file is cut short; use a complete copy".into(),
        E::MissingData => format!("its PEM block holds no data: {DAMAGED}"),
        E::InvalidData(base64) => {
            // base64's text is `Invalid symbol 33, offset 0.`: say which character.
            let text = base64.to_string();
            let symbol = text
                .strip_prefix("Invalid symbol ")
                .and_then(|rest| rest.split_once(", offset "))
                .and_then(|(byte, offset)| {
                    let byte = byte.parse::<u8>().ok()?;
                    let offset = offset.trim_end_matches('.').parse::<usize>().ok()?;
                    Some(format!(
                        " (it holds {} at character {} of the block)",
                        crate::text::printable(&format!("{:?}", char::from(byte))),
                        offset + 1
                    ))
                })
                .unwrap_or_default();
            format!("the text between its BEGIN and END lines is not valid base64{symbol}: {DAMAGED}")
        }
        E::InvalidHeader(_) => format!("its PEM block has a malformed header line: {DAMAGED}"),
        E::NotUtf8(_) => format!("its PEM text is not valid UTF-8 (binary bytes in it): {DAMAGED}"),
    }
}

/// The largest PEM/DER file Tessera reads (certificates, chains, CRLs, keys): 16 MiB.
pub const MAX_PEM_FILE: u64 = 16 * 1024 * 1024;

/// PEM label of a certificate.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of a certificate revocation list.
pub const X509_CRL: &str = "X509 CRL";
/// PEM label of a certificate signing request.
pub const CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";

/// The path that stands for standard input wherever a file is read.
pub const STDIN: &str = "-";

/// Whether `path` is `-` (standard input). A file really named `-` is `./-`.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// How messages name an input path: `standard input` for `-`, else the path.
pub fn display_name(path: &Path) -> String {
    if is_stdin(path) {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads a whole file, refusing files larger than [`MAX_PEM_FILE`]. The path `-` reads
/// standard input to its end, and the bytes are kept in memory for the life of the process, so
/// that reading `-` again (a key file examined for encryption, then loaded; a server reloading
/// its files) gives the same bytes. They are not zeroized: a key read from standard input stays
/// in memory until exit. Commands accept at most one `-` among their inputs (see
/// `tessera::cli::ensure_one_stdin`).
///
/// # Errors
/// [`PkiError::Io`] when the file cannot be read, [`PkiError::Malformed`] when it is too large.
pub fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    use std::io::Read;
    if is_stdin(path) {
        return read_stdin();
    }
    let file = std::fs::File::open(path).map_err(|e| PkiError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PkiError::io(path, e))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(PkiError::malformed(
            path.display().to_string(),
            format!("larger than {MAX_PEM_FILE} bytes"),
        ));
    }
    Ok(bytes)
}

/// Standard input, read once and kept (see [`read_file`]).
fn read_stdin() -> Result<Vec<u8>, PkiError> {
    use std::io::Read;
    static STDIN_BYTES: std::sync::Mutex<Option<zeroize::Zeroizing<Vec<u8>>>> = std::sync::Mutex::new(None);
    let mut kept = STDIN_BYTES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(bytes) = kept.as_ref() {
        return Ok(bytes.to_vec());
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PkiError::io("standard input", e))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(PkiError::malformed(
            "standard input",
            format!("larger than {MAX_PEM_FILE} bytes"),
        ));
    }
    let copy = bytes.to_vec();
    *kept = Some(bytes);
    Ok(copy)
}

/// Splits PEM text into its blocks with the given label; other labels are skipped.
///
/// Input that is not PEM at all is taken as one DER object. `what` names the input in errors.
///
/// # Errors
/// [`PkiError::Malformed`] for broken PEM, [`PkiError::Missing`] when no block has the label.
pub fn parse_blocks(bytes: &[u8], label: &'static str, what: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    if !looks_like_pem(bytes) {
        if bytes.first() == Some(&0x30) {
            return Ok(vec![bytes.to_vec()]);
        }
        return Err(PkiError::malformed(what, "neither PEM nor DER"));
    }
    let blocks = pem::parse_many(bytes).map_err(|e| PkiError::malformed(what, describe_pem(&e)))?;
    let found: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == label)
        .map(|b| b.into_contents())
        .collect();
    if found.is_empty() {
        return Err(PkiError::Missing {
            what: what.to_string(),
            expected: label,
        });
    }
    Ok(found)
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Parses every certificate in PEM (or DER) bytes, in order.
///
/// # Errors
/// As [`parse_blocks`]; also when a block is not a well-formed X.509 certificate.
pub fn parse_certificates(bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let blocks = parse_blocks(bytes, CERTIFICATE, what)?;
    blocks
        .into_iter()
        .map(|der| {
            x509_parser::parse_x509_certificate(&der)
                .map_err(|e| {
                    PkiError::malformed(
                        what,
                        format!("not an X.509 certificate: {}", crate::pki::describe_x509(&e)),
                    )
                })
                .and_then(|(rest, _)| {
                    if rest.is_empty() {
                        Ok(())
                    } else {
                        Err(PkiError::malformed(what, "trailing bytes after a certificate"))
                    }
                })?;
            Ok(CertificateDer::from(der))
        })
        .collect()
}

/// Reads every certificate in a PEM (or DER) file.
///
/// # Errors
/// As [`read_file`] and [`parse_certificates`].
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    parse_certificates(&read_file(path)?, &display_name(path))
}

/// Parses every CRL in PEM (or DER) bytes.
///
/// # Errors
/// As [`parse_blocks`]; also when a block is not a well-formed CRL.
pub fn parse_crls(bytes: &[u8], what: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let blocks = parse_blocks(bytes, X509_CRL, what)?;
    blocks
        .into_iter()
        .map(|der| {
            x509_parser::parse_x509_crl(&der).map_err(|e| {
                PkiError::malformed(what, format!("not an X.509 CRL: {}", crate::pki::describe_x509(&e)))
            })?;
            Ok(CertificateRevocationListDer::from(der))
        })
        .collect()
}

/// Reads every CRL in a PEM (or DER) file.
///
/// # Errors
/// As [`read_file`] and [`parse_crls`].
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    parse_crls(&read_file(path)?, &display_name(path))
}

/// Encodes DER as one PEM block with the given label: RFC 7468 §2's strict form, base64 in
/// lines of 64 characters, LF line ends, no headers.
///
/// `label` must follow RFC 7468 §3's grammar as the encoder implements it (printable ASCII
/// without `-`, single spaces between words); all of Tessera's labels ([`CERTIFICATE`],
/// [`X509_CRL`], [`CERTIFICATE_REQUEST`], `PUBLIC KEY`, `TESSERA MODULE SIGNATURE`) do. Another
/// label gives an empty string. For private keys use [`crate::pki::PrivateKey::to_pem`], which
/// leaves no copy of the key behind.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    encode(label, der)
        .map(|mut pem| std::mem::take(&mut *pem))
        .unwrap_or_default()
}

/// [`to_pem`] through a buffer that is zeroized on drop: for secret DER (private keys). The
/// PEM text is written once, into a buffer of its exact size, so no other copy is left.
///
/// # Errors
/// [`PkiError::Malformed`] when the label is outside RFC 7468's grammar.
pub(crate) fn to_pem_zeroizing(label: &str, der: &[u8]) -> Result<Zeroizing<String>, PkiError> {
    encode(label, der).map_err(|e| PkiError::malformed(format!("a {label} PEM block"), e))
}

fn encode(label: &str, der: &[u8]) -> Result<Zeroizing<String>, pkcs8::der::pem::Error> {
    let length = pkcs8::der::pem::encoded_len(label, LineEnding::LF, der)?;
    let mut buffer = Zeroizing::new(vec![0u8; length]);
    let written = pkcs8::der::pem::encode(label, LineEnding::LF, der, &mut buffer)?.len();
    buffer.truncate(written);
    // The encoder writes ASCII only, so this takes the buffer over without copying it.
    String::from_utf8(std::mem::take(&mut *buffer))
        .map(Zeroizing::new)
        .map_err(|e| {
            Zeroizing::new(e.into_bytes());
            pkcs8::der::pem::Error::CharacterEncoding
        })
}

/// Encodes certificates as concatenated PEM blocks.
pub fn certificates_to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs.into_iter().map(|c| to_pem(CERTIFICATE, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let err = parse_certificates(b"hello world", "x.pem").unwrap_err();
        assert!(err.to_string().contains("neither PEM nor DER"), "{err}");
        let err = parse_certificates(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "x.pem",
        )
        .unwrap_err();
        assert!(err.to_string().contains("not an X.509 certificate"), "{err}");
    }

    #[test]
    fn pem_is_written_in_rfc_7468_strict_form() {
        // 100 bytes: 136 base64 characters, two full 64-column lines and one of 8.
        let der: Vec<u8> = (0..100).collect();
        let pem = to_pem(CERTIFICATE, &der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        assert_eq!(lines.iter().map(|l| l.len()).collect::<Vec<_>>(), [27, 64, 64, 8, 25]);
        assert!(pem.ends_with("-----\n") && !pem.contains('\r'));
        assert_eq!(
            parse_blocks(pem.as_bytes(), CERTIFICATE, "x").unwrap(),
            vec![der.clone()]
        );
        // Byte for byte what Tessera wrote before (the `pem` crate's LF form).
        let before = ::pem::encode_config(
            &::pem::Pem::new(CERTIFICATE, der.clone()),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        );
        assert_eq!(pem, before);
        for label in [
            CERTIFICATE,
            X509_CRL,
            CERTIFICATE_REQUEST,
            "PUBLIC KEY",
            "TESSERA MODULE SIGNATURE",
        ] {
            assert!(to_pem(label, &der).starts_with(&format!("-----BEGIN {label}-----\n")));
        }
        // A label outside the grammar: nothing, rather than a block no reader accepts.
        assert_eq!(to_pem("BAD-LABEL", &der), "");
        assert!(to_pem_zeroizing("BAD\nLABEL", &der).is_err());
    }

    #[test]
    fn secret_pem_comes_in_a_zeroizing_buffer() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x00];
        let pem: Zeroizing<String> = to_pem_zeroizing("PRIVATE KEY", &der).unwrap();
        assert_eq!(*pem, to_pem("PRIVATE KEY", &der));
    }

    #[test]
    fn missing_label_is_named() {
        let pem = to_pem("PRIVATE KEY", &[0x30, 0x00]);
        let err = parse_certificates(pem.as_bytes(), "k.pem").unwrap_err();
        assert_eq!(err.to_string(), "k.pem contains no CERTIFICATE");
    }
}
