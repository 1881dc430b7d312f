//! The signature bundle: the exact signed statement bytes, the Ed25519 signature, and the
//! signer's certificate chain (never the root), DER-encoded and PEM-armoured. Parsing is strict:
//! size capped before anything is allocated, canonical DER, canonical armour, no trailing bytes.

use std::io::Read;
use std::path::Path;

use rustls_pki_types::CertificateDer;

use super::SignError;
use super::der::{self, DerError, Reader};
use super::statement::Statement;
use crate::pki::pem;

/// PEM label of a bundle.
pub const BUNDLE_LABEL: &str = "TESSERA MODULE SIGNATURE";
/// The largest bundle accepted, in bytes of PEM text (64 KiB).
pub const MAX_BUNDLE_SIZE: usize = 64 * 1024;
/// The most certificates a bundle may carry (signer plus intermediates).
pub const MAX_CHAIN_LEN: usize = 8;
/// The bundle format version.
pub const BUNDLE_VERSION: u64 = 1;

/// A parsed signature bundle. Parsing proves only that it is well formed; trust comes from
/// [`super::Verifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    statement_der: Vec<u8>,
    statement: Statement,
    signature: [u8; 64],
    chain: Vec<CertificateDer<'static>>,
}

impl Bundle {
    /// Assembles a bundle from its parts (as a signer does). A bundle is untrusted data: only
    /// [`super::Verifier`] decides whether it vouches for a module.
    pub fn from_parts(statement: Statement, signature: [u8; 64], chain: Vec<CertificateDer<'static>>) -> Self {
        Self {
            statement_der: statement.to_der(),
            statement,
            signature,
            chain,
        }
    }

    /// The decoded statement (not yet verified).
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The exact bytes the signature covers.
    pub fn statement_der(&self) -> &[u8] {
        &self.statement_der
    }

    /// The Ed25519 signature over [`Bundle::statement_der`].
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The signer's certificate followed by intermediates; empty in raw-key mode.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The DER encoding:
    ///
    /// ```text
    /// SignatureBundle ::= SEQUENCE {
    ///   version      INTEGER,                        -- 1
    ///   statement    OCTET STRING,                   -- DER ModuleStatement: the signed bytes
    ///   signature    OCTET STRING (SIZE (64)),       -- Ed25519 (RFC 8032) over statement
    ///   certificates SEQUENCE SIZE (0..8) OF Certificate }  -- signer first; no root
    /// ```
    pub fn to_der(&self) -> Vec<u8> {
        let mut certs = Vec::new();
        for cert in &self.chain {
            certs.extend_from_slice(cert);
        }
        let mut body = Vec::with_capacity(self.statement_der.len() + certs.len() + 96);
        der::write_u64(&mut body, BUNDLE_VERSION);
        der::write(&mut body, der::OCTET_STRING, &self.statement_der);
        der::write(&mut body, der::OCTET_STRING, &self.signature);
        der::write(&mut body, der::SEQUENCE, &certs);
        let mut out = Vec::with_capacity(body.len() + 4);
        der::write(&mut out, der::SEQUENCE, &body);
        out
    }

    /// Decodes the DER form. `what` names the bundle in errors.
    ///
    /// # Errors
    /// [`SignError::BundleTooLarge`], [`SignError::MalformedBundle`].
    pub fn from_der(bytes: &[u8], what: &str) -> Result<Self, SignError> {
        if bytes.len() > MAX_BUNDLE_SIZE {
            return Err(SignError::BundleTooLarge {
                what: what.into(),
                size: bytes.len() as u64,
                max: MAX_BUNDLE_SIZE as u64,
            });
        }
        let bad = |reason: String| SignError::malformed(what, reason);
        let malformed = |error: DerError| bad(error.to_string());
        let mut outer = Reader::new(bytes);
        let body = outer.read(der::SEQUENCE).map_err(malformed)?;
        outer.finish().map_err(malformed)?;
        let mut r = Reader::new(body);
        let version = r.read_u64().map_err(malformed)?;
        if version != BUNDLE_VERSION {
            return Err(bad(format!("unsupported bundle version {version}")));
        }
        let statement_der = r.read(der::OCTET_STRING).map_err(malformed)?;
        let statement = Statement::from_der(statement_der, what)?;
        let signature = <[u8; 64]>::try_from(r.read(der::OCTET_STRING).map_err(malformed)?)
            .map_err(|_| bad("signature is not 64 bytes".into()))?;
        let mut certs = Reader::new(r.read(der::SEQUENCE).map_err(malformed)?);
        r.finish().map_err(malformed)?;
        let mut chain = Vec::new();
        while !certs.is_empty() {
            if chain.len() == MAX_CHAIN_LEN {
                return Err(bad(format!("more than {MAX_CHAIN_LEN} certificates")));
            }
            let (cert, _) = certs.read_raw(der::SEQUENCE).map_err(malformed)?;
            match x509_parser::parse_x509_certificate(cert) {
                Ok(([], _)) => {}
                Ok(_) => return Err(bad(format!("certificate {} has trailing bytes", chain.len() + 1))),
                Err(e) => {
                    return Err(bad(format!(
                        "certificate {} is not a well-formed X.509 certificate ({})",
                        chain.len() + 1,
                        crate::pki::describe_x509(&e)
                    )));
                }
            }
            chain.push(CertificateDer::from(cert.to_vec()));
        }
        let bundle = Self {
            statement_der: statement_der.to_vec(),
            statement,
            signature,
            chain,
        };
        if bundle.to_der() != bytes {
            return Err(bad("not in canonical DER form".into()));
        }
        Ok(bundle)
    }

    /// The PEM armour (`-----BEGIN TESSERA MODULE SIGNATURE-----`, 64-column base64, LF).
    pub fn to_pem(&self) -> String {
        pem::to_pem(BUNDLE_LABEL, &self.to_der())
    }

    /// Parses the PEM armour strictly: exactly one block with the bundle label, in the canonical
    /// layout [`Bundle::to_pem`] writes, and nothing before or after it.
    ///
    /// # Errors
    /// [`SignError::BundleTooLarge`] (checked first), [`SignError::MalformedBundle`].
    pub fn from_pem(bytes: &[u8], what: &str) -> Result<Self, SignError> {
        if bytes.len() > MAX_BUNDLE_SIZE {
            return Err(SignError::BundleTooLarge {
                what: what.into(),
                size: bytes.len() as u64,
                max: MAX_BUNDLE_SIZE as u64,
            });
        }
        let block = ::pem::parse(bytes).map_err(|e| SignError::malformed(what, crate::pki::pem::describe_pem(&e)))?;
        if block.tag() != BUNDLE_LABEL {
            return Err(SignError::malformed(
                what,
                format!("holds a {} block, not a {BUNDLE_LABEL}", block.tag()),
            ));
        }
        let bundle = Self::from_der(block.contents(), what)?;
        if bundle.to_pem().as_bytes() != bytes {
            return Err(SignError::malformed(
                what,
                "armour is not in canonical form (extra text, headers, line breaks or padding)",
            ));
        }
        Ok(bundle)
    }

    /// Reads a bundle from a stream, never holding more than [`MAX_BUNDLE_SIZE`] + 1 bytes.
    ///
    /// # Errors
    /// As [`Bundle::from_pem`], and [`SignError::Io`].
    pub fn read_from<R: Read>(reader: R, what: &str) -> Result<Self, SignError> {
        let mut bytes = Vec::new();
        reader
            .take(MAX_BUNDLE_SIZE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SignError::io(what, e))?;
        Self::from_pem(&bytes, what)
    }

    /// Reads a detached bundle file, checking its size before reading it.
    ///
    /// # Errors
    /// As [`Bundle::read_from`].
    pub fn load(path: &Path) -> Result<Self, SignError> {
        let what = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| SignError::io(path, e))?;
        let size = file.metadata().map_err(|e| SignError::io(path, e))?.len();
        if size > MAX_BUNDLE_SIZE as u64 {
            return Err(SignError::BundleTooLarge {
                what,
                size,
                max: MAX_BUNDLE_SIZE as u64,
            });
        }
        Self::read_from(file, &what)
    }
}
