//! Signing: a digest of the module, a statement about it, an Ed25519 signature over the
//! statement, and a bundle that carries all three with the signer's chain.

use std::io::{self, Read};

use ed25519_dalek::{Signer as _, SigningKey};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::SignError;
use super::bundle::{Bundle, MAX_BUNDLE_SIZE, MAX_CHAIN_LEN};
use super::digest::{HashAlgorithm, hash_stream};
use super::keys::{PublicKey, certificate_key, signing_key};
use super::statement::{MAX_MODULE_LEN, SignerId, Statement, check_name, whole_seconds};
use crate::pki::{CertificateInfo, PkiError, PrivateKey, pem};

/// Refuses a CHAIN whose certificates are not each issued by the next: the next one must be a
/// CA whose subject is the previous one's issuer (and whose subject key identifier is its
/// authority key identifier, when both are given; RFC 5280 4.2.1.1).
fn check_chain_order(chain: &[CertificateDer<'static>]) -> Result<(), PkiError> {
    let infos = chain
        .iter()
        .map(|c| CertificateInfo::from_der(c))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, pair) in infos.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        let (n, m) = (index + 1, index + 2);
        let key_ids_differ = matches!(
            (&child.authority_key_id, &parent.subject_key_id),
            (Some(aki), Some(ski)) if !aki.eq_ignore_ascii_case(ski)
        );
        if child.issuer != parent.subject || key_ids_differ {
            return Err(PkiError::malformed(
                "certificate chain",
                format!(
                    "certificate {m} ({}) did not issue certificate {n} ({}, issued by {}): CHAIN must be the \
                     signer's certificate followed by each issuer in turn, without the root",
                    parent.subject, child.subject, child.issuer
                ),
            ));
        }
        if !parent.is_ca {
            return Err(PkiError::malformed(
                "certificate chain",
                format!(
                    "certificate {m} ({}) is not a CA certificate, so it cannot issue certificate {n}",
                    parent.subject
                ),
            ));
        }
    }
    Ok(())
}

/// What to sign a module as.
#[derive(Clone, Debug)]
pub struct SignRequest {
    /// The module's logical name (1 to 255 bytes, no control characters), e.g. its file name.
    pub name: String,
    /// The hash algorithm (SHA3-256 by default).
    pub hash: HashAlgorithm,
    /// The signing time (kept to whole seconds); the certificate must be valid then.
    pub time: OffsetDateTime,
}

impl SignRequest {
    /// A request with SHA3-256.
    pub fn new(name: impl Into<String>, time: OffsetDateTime) -> Self {
        Self {
            name: name.into(),
            hash: HashAlgorithm::default(),
            time,
        }
    }

    /// Uses another hash algorithm.
    pub fn with_hash(mut self, hash: HashAlgorithm) -> Self {
        self.hash = hash;
        self
    }
}

/// A module signer: an Ed25519 key with either its code-signing certificate chain or no
/// certificate at all (raw-key mode). The key is zeroized when the signer is dropped.
pub struct Signer {
    key: SigningKey,
    chain: Vec<CertificateDer<'static>>,
    certificate: Option<CertificateInfo>,
    id: SignerId,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("signer", &self.id.describe())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with a code-signing certificate. `chain` is the signer's certificate followed
    /// by any intermediates (the root is not needed: verifiers pin it).
    ///
    /// # Errors
    /// [`SignError::NotEd25519`], [`SignError::KeyMismatch`] when the key is not the
    /// certificate's, [`SignError::NotCodeSigning`] without the code-signing extended key usage
    /// (or for a CA certificate), [`SignError::RootInChain`] when a certificate after the
    /// signer's is self-signed (subject = issuer: a root, which bundles never carry), PKI errors
    /// for unreadable certificates. Validity is checked when signing, at the signing time.
    ///
    /// Signing (before the module is read) refuses with [`PkiError::Malformed`] a chain that is
    /// not in order: each certificate after the first must be a CA certificate whose subject is
    /// the previous certificate's issuer (and whose subject key identifier is its authority key
    /// identifier, when both are present).
    ///
    /// # Security
    /// Only the chain's own facts are checked here; whether it reaches a trusted root — in
    /// particular whether an intermediate is missing after the last certificate — is the
    /// verifier's decision (`pki::TrustStore::verify`): check it before signing with
    /// [`Signer::check_trust`] when the root is at hand.
    pub fn with_certificate(key: &PrivateKey, chain: Vec<CertificateDer<'static>>) -> Result<Self, SignError> {
        let leaf = chain.first().ok_or_else(|| PkiError::Missing {
            what: "certificate chain".into(),
            expected: pem::CERTIFICATE,
        })?;
        if chain.len() > MAX_CHAIN_LEN {
            return Err(PkiError::malformed(
                "certificate chain",
                format!(
                    "holds {} certificates, at most {MAX_CHAIN_LEN} fit in a bundle",
                    chain.len()
                ),
            )
            .into());
        }
        for (index, cert) in chain.iter().enumerate().skip(1) {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| {
                PkiError::malformed(
                    "certificate chain",
                    format!("certificate {} is not a well-formed X.509 certificate: {e}", index + 1),
                )
            })?;
            if parsed.subject().as_raw() == parsed.issuer().as_raw() {
                return Err(SignError::RootInChain {
                    subject: parsed.subject().to_string(),
                    position: index + 1,
                });
            }
        }
        let info = CertificateInfo::from_der(leaf)?;
        let cert_key = certificate_key(leaf, &format!("certificate {}", info.subject))?;
        let signing = signing_key(key, "signing key")?;
        if signing.verifying_key().as_bytes() != &cert_key {
            return Err(SignError::KeyMismatch { subject: info.subject });
        }
        if info.is_ca || !info.extended_key_usage.iter().any(|u| u == "codeSigning") {
            let usages = if info.is_ca {
                "a CA certificate".to_string()
            } else if info.extended_key_usage.is_empty() {
                "none".to_string()
            } else {
                info.extended_key_usage.join(", ")
            };
            return Err(SignError::NotCodeSigning {
                subject: info.subject,
                usages,
            });
        }
        let hash = ring::digest::digest(&ring::digest::SHA256, leaf);
        let mut id = [0u8; 32];
        id.copy_from_slice(hash.as_ref());
        Ok(Self {
            key: signing,
            chain,
            certificate: Some(info),
            id: SignerId::Certificate(id),
        })
    }

    /// Checks that a verifier pinning a root of `trust` will accept this signer's chain at
    /// `time` with the code-signing usage (RFC 5280 6.1 path validation, through
    /// [`crate::pki::TrustStore::verify`], the check `verify` makes): so that nothing is signed
    /// that Tessera then refuses, e.g. for an intermediate missing from the chain. A raw-key
    /// signer has no chain: [`PkiError::Missing`].
    ///
    /// # Errors
    /// As [`crate::pki::TrustStore::verify`]: a rejection says why the chain is not trusted.
    pub fn check_trust(
        &self,
        trust: &crate::pki::TrustStore,
        time: OffsetDateTime,
    ) -> Result<crate::pki::VerifiedChain, PkiError> {
        let (leaf, intermediates) = self.chain.split_first().ok_or_else(|| PkiError::Missing {
            what: "raw-key signer".into(),
            expected: pem::CERTIFICATE,
        })?;
        trust.verify(
            leaf,
            intermediates,
            &crate::pki::VerifyRequest::new(crate::pki::Usage::CodeSigning, time),
        )
    }

    /// A raw-key signer: no certificate; verifiers pin its public key.
    ///
    /// # Errors
    /// [`SignError::NotEd25519`] and PKI errors for an unusable key.
    pub fn with_raw_key(key: &PrivateKey) -> Result<Self, SignError> {
        let signing = signing_key(key, "signing key")?;
        let id = SignerId::RawKey(signing.verifying_key().to_bytes());
        Ok(Self {
            key: signing,
            chain: Vec::new(),
            certificate: None,
            id,
        })
    }

    /// The public key that verifies this signer's signatures.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(self.key.verifying_key())
    }

    /// The signer's certificate, when it has one.
    pub fn certificate(&self) -> Option<&CertificateInfo> {
        self.certificate.as_ref()
    }

    /// Signs a module whose digest and length are already known.
    ///
    /// # Errors
    /// [`SignError::InvalidName`], [`SignError::CertificateNotValid`] when the certificate is
    /// not valid at `request.time`, [`SignError::MalformedBundle`] for a digest of the wrong
    /// size or an impossible length, [`SignError::BundleTooLarge`] when the armoured bundle
    /// would exceed [`MAX_BUNDLE_SIZE`] (a chain of large certificates), which no verifier
    /// accepts.
    ///
    /// # Security
    /// The signature covers the whole statement: context, hash algorithm, digest, length,
    /// name, time and the signer's certificate hash (or raw key).
    pub fn sign_digest(&self, digest: &[u8], length: u64, request: &SignRequest) -> Result<Bundle, SignError> {
        self.check_request(request)?;
        if digest.len() != request.hash.output_len() || length > MAX_MODULE_LEN {
            return Err(SignError::malformed(
                "new signature",
                "digest size or module length out of range",
            ));
        }
        let statement = self.statement(digest.to_vec(), length, request);
        let signature = self.key.sign(&statement.to_der()).to_bytes();
        let bundle = Bundle::from_parts(statement, signature, self.chain.clone());
        check_size(&bundle, request)?;
        Ok(bundle)
    }

    fn statement(&self, digest: Vec<u8>, length: u64, request: &SignRequest) -> Statement {
        Statement {
            hash: request.hash,
            digest,
            length,
            name: request.name.clone(),
            signed_at: whole_seconds(request.time),
            signer: self.id,
        }
    }

    /// Everything that can be checked before the module is read: the name, the certificate's
    /// validity at the signing time, and that a bundle for the smallest module fits.
    fn check_request(&self, request: &SignRequest) -> Result<(), SignError> {
        check_name(&request.name)?;
        let time = whole_seconds(request.time);
        if let Some(info) = &self.certificate
            && (time < info.not_before || time > info.not_after)
        {
            return Err(SignError::CertificateNotValid {
                subject: info.subject.clone(),
                not_before: info.not_before,
                not_after: info.not_after,
                time,
            });
        }
        let smallest = self.statement(vec![0; request.hash.output_len()], 0, request);
        check_size(&Bundle::from_parts(smallest, [0; 64], self.chain.clone()), request)?;
        Ok(check_chain_order(&self.chain)?)
    }

    /// Signs a module held in memory.
    ///
    /// # Errors
    /// As [`Signer::sign_digest`].
    pub fn sign_bytes(&self, module: &[u8], request: &SignRequest) -> Result<Bundle, SignError> {
        let digest = request.hash.digest(module);
        self.sign_digest(&digest, module.len() as u64, request)
    }

    /// Signs a module read from `reader` to its end, streaming. Every chunk is also handed to
    /// `sink` (e.g. to copy the payload while hashing it, for embedding); `progress` gets the
    /// running byte count. `what` names the input in errors.
    ///
    /// What can be refused without the module (the name, the certificate's validity at the
    /// signing time, a chain too large for any bundle) is refused before anything is read.
    ///
    /// # Errors
    /// [`SignError::Io`] for read or sink errors, then as [`Signer::sign_digest`].
    pub fn sign_reader<R: Read + Send>(
        &self,
        reader: R,
        what: &str,
        request: &SignRequest,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Bundle, SignError> {
        self.check_request(request)?;
        let out = hash_stream(request.hash, reader, None, sink, progress).map_err(|e| SignError::io(what, e))?;
        self.sign_digest(&out.digest, out.length, request)
    }
}

/// Refuses a bundle no verifier would accept.
fn check_size(bundle: &Bundle, request: &SignRequest) -> Result<(), SignError> {
    let size = bundle.to_pem().len();
    if size > MAX_BUNDLE_SIZE {
        return Err(SignError::BundleTooLarge {
            what: format!("for {:?}", request.name),
            size: size as u64,
            max: MAX_BUNDLE_SIZE as u64,
        });
    }
    Ok(())
}
