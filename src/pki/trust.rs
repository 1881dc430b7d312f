//! The one verification path: "is this certificate trusted for usage U at time T, given these
//! roots and CRLs?" Every trust decision in Tessera (`ca verify`, module signatures, TLS peers)
//! goes through [`TrustStore::verify`], which delegates path building to rustls-webpki.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeIdIter,
    OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::error::{Presented, RejectionReason, unacceptable_certificate};
use super::inspect::{CertificateInfo, common_name};
use super::policy::{self, Position};
use super::profile::{
    ProfileRule, check_crl_number, check_end_entity, check_extensions, check_issuer, check_root, name_contents,
    subject_of,
};
use super::revocation::{self, Crl, PathCert};
use super::x509::{RevocationReason, Serial};
use super::{KeyUsage, PkiError, pem};

/// DER value of id-kp-codeSigning (1.3.6.1.5.5.7.3.3).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Signature algorithms accepted in certificate chains and CRLs.
pub(crate) static SIGNATURE_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ED25519,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// What a certificate is to be trusted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// TLS server authentication (id-kp-serverAuth, required if the certificate lists EKUs).
    Server,
    /// TLS client authentication (id-kp-clientAuth, required if the certificate lists EKUs).
    Client,
    /// Code signing (id-kp-codeSigning, required on the end entity; on issuers if they list EKUs).
    CodeSigning,
    /// Any usage: the chain alone is checked.
    Any,
}

impl Usage {
    /// The name used on command lines: `server`, `client`, `code-signing`, `any`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::CodeSigning => "code-signing",
            Self::Any => "any",
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Usage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Self::Server),
            "client" => Ok(Self::Client),
            "code-signing" | "codesigning" => Ok(Self::CodeSigning),
            "any" => Ok(Self::Any),
            _ => Err(format!("unknown usage {s:?} (use server, client, code-signing or any)")),
        }
    }
}

/// The EKU policy rustls-webpki applies for a [`Usage`].
enum EkuPolicy {
    Webpki(webpki::KeyUsage),
    Any,
}

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self {
            Self::Webpki(usage) => usage.validate(iter),
            Self::Any => Ok(()),
        }
    }
}

impl From<Usage> for EkuPolicy {
    fn from(usage: Usage) -> Self {
        match usage {
            Usage::Server => Self::Webpki(webpki::KeyUsage::server_auth()),
            Usage::Client => Self::Webpki(webpki::KeyUsage::client_auth()),
            // webpki applies the validator to issuers too; CA certificates rarely carry EKUs, so
            // "if present" here, and the end entity's codeSigning EKU is required in `verify`.
            Usage::CodeSigning => Self::Webpki(webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING)),
            Usage::Any => Self::Any,
        }
    }
}

/// One verification question: usage, optional peer name, the time to check at, and optional
/// limits on the path (depth) and the end entity's key usage.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    /// The usage the end-entity certificate must allow.
    pub usage: Usage,
    /// A DNS name or IP address the certificate must be valid for.
    pub name: Option<String>,
    /// The time at which every certificate (and CRL) must be valid.
    pub time: OffsetDateTime,
    /// The most intermediate CA certificates allowed between the end entity and the root,
    /// self-issued ones not counted (RFC 5280 §6.1): `Some(0)` accepts only certificates issued
    /// directly by a root. `None`: no limit beyond webpki's own and the CAs' path lengths.
    pub max_depth: Option<usize>,
    /// Key usage bits the end entity must assert when it has a key usage extension
    /// (RFC 5280 §4.2.1.3; without the extension its key may be used for anything).
    pub key_usage: Vec<KeyUsage>,
}

impl VerifyRequest {
    /// A request for `usage` at `time`, without a name, depth limit or key usage.
    pub fn new(usage: Usage, time: OffsetDateTime) -> Self {
        Self {
            usage,
            name: None,
            time,
            max_depth: None,
            key_usage: Vec::new(),
        }
    }

    /// Also require the certificate to be valid for `name` (a DNS name or an IP address).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Also limit the path to `max_depth` intermediate CAs (see [`VerifyRequest::max_depth`]).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = Some(max_depth);
        self
    }

    /// Also require these key usage bits (see [`VerifyRequest::key_usage`]).
    pub fn with_key_usage(mut self, key_usage: impl IntoIterator<Item = KeyUsage>) -> Self {
        self.key_usage.extend(key_usage);
        self
    }
}

/// Proof that a chain was verified. Only [`TrustStore::verify`] builds one.
#[must_use]
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    path: Vec<CertificateDer<'static>>,
    end_entity: CertificateInfo,
    common_name: Option<String>,
    usage: Usage,
    time: OffsetDateTime,
}

impl VerifiedChain {
    /// The path from the end entity to the trusted root, both included.
    pub fn path(&self) -> &[CertificateDer<'static>] {
        &self.path
    }

    /// The end-entity certificate, inspected.
    pub fn end_entity(&self) -> &CertificateInfo {
        &self.end_entity
    }

    /// The exact value of the end entity's one subject `CN` attribute (none when it has none,
    /// several, or one that is not a string).
    pub(crate) fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The usage the chain was verified for.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The time the chain was verified at.
    pub fn time(&self) -> OffsetDateTime {
        self.time
    }
}

/// Trusted roots plus the CRLs to consult. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    /// What the profile rules say of each root, worked out once (`RootFacts`).
    root_facts: Vec<Arc<RootFacts>>,
    crls: Vec<Arc<Crl>>,
}

/// What `TrustStore::check_profile` needs to know of a root on every path, from one parse when
/// the root is added: whether the rules that do not depend on the time or the CRLs pass, its
/// validity in Unix seconds, whether it may sign CRLs, and its subject (contents). When the
/// fast answer is not "passes", the root is parsed and checked in full to say why.
#[derive(Debug)]
struct RootFacts {
    timeless_ok: bool,
    not_before: i64,
    not_after: i64,
    may_sign_crls: bool,
    subject: Vec<u8>,
}

impl RootFacts {
    fn of(der: &CertificateDer<'_>) -> Self {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Self {
                timeless_ok: false,
                not_before: i64::MAX,
                not_after: i64::MIN,
                may_sign_crls: false,
                subject: Vec::new(),
            };
        };
        let validity = cert.validity();
        let timeless_ok = check_extensions(&cert).is_ok()
            && check_issuer(&cert).is_ok()
            && EndEntityCert::try_from(der).is_ok()
            && policy::check_certificate(&cert, Position::Root).is_ok();
        Self {
            timeless_ok,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            may_sign_crls: may_sign_crls(&cert),
            subject: name_contents(cert.subject().as_raw()).to_vec(),
        }
    }
}

/// May this certificate sign CRLs (RFC 5280 §4.2.1.3)? Without a key usage extension, yes.
fn may_sign_crls(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    match cert.key_usage() {
        Ok(Some(usage)) => usage.value.crl_sign(),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Who decides revocation on a candidate path.
#[derive(Clone, Copy)]
enum Revocation<'a> {
    /// Tessera's layer (`revocation.rs`): each CRL's signature checked once, serials by binary
    /// search.
    Layer,
    /// rustls-webpki's own CRL checking, over these CRLs (the reference the layer is tested
    /// against).
    Webpki(&'a [&'a CertRevocationList<'a>]),
}

impl TrustStore {
    /// An empty store (it trusts nothing until roots are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with the roots in a PEM file (a file may hold several roots). Blocking file
    /// I/O: from async code use [`TrustStore::from_root_file_async`].
    ///
    /// # Errors
    /// [`PkiError::Io`], [`PkiError::Malformed`], [`PkiError::Missing`].
    pub fn from_root_file(path: &Path) -> Result<Self, PkiError> {
        let mut store = Self::new();
        for cert in pem::load_certificates(path)? {
            store.add_root(cert, &path.display().to_string())?;
        }
        Ok(store)
    }

    /// A store with the roots in the file `roots` and every CRL in each of the files `crls` (PEM
    /// or DER; a file may hold several; `-` is standard input, see [`pem::read_file`]): what
    /// `ca verify` and `verify` read from their `--root` and `--crl` options.
    ///
    /// # Errors
    /// As [`pem::load_certificates`], [`TrustStore::add_root`], [`TrustStore::add_crl_file`].
    pub fn load(roots: &Path, crls: &[impl AsRef<Path>]) -> Result<Self, PkiError> {
        let mut store = Self::new();
        let what = pem::display_name(roots);
        for cert in pem::load_certificates(roots)? {
            store.add_root(cert, &what)?;
        }
        for crl in crls {
            store.add_crl_file(crl.as_ref())?;
        }
        Ok(store)
    }

    /// [`TrustStore::from_root_file`] on Tokio's blocking pool, so that reading the file never
    /// stalls the runtime's worker threads (on the calling thread outside a Tokio runtime).
    ///
    /// # Errors
    /// As [`TrustStore::from_root_file`]; [`PkiError::Io`] if the blocking task could not
    /// finish (the runtime is shutting down).
    pub async fn from_root_file_async(path: std::path::PathBuf) -> Result<Self, PkiError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::from_root_file(&path);
        };
        let shown = path.clone();
        runtime
            .spawn_blocking(move || Self::from_root_file(&path))
            .await
            .map_err(|_| PkiError::io(shown, std::io::Error::other("the loading task did not finish")))?
    }

    /// Adds a trusted root certificate. `what` names it in errors.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when the certificate cannot serve as a trust anchor.
    pub fn add_root(&mut self, cert: CertificateDer<'static>, what: &str) -> Result<(), PkiError> {
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| PkiError::malformed(what, format!("cannot be used as a root: {}", RejectionReason::from(&e))))?
            .to_owned();
        self.anchors.push(anchor);
        self.root_facts.push(Arc::new(RootFacts::of(&cert)));
        self.roots.push(cert);
        Ok(())
    }

    /// Adds a CRL (DER).
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when it is not a CRL at all; [`PkiError::UnacceptableCrl`] (a
    /// rejection) when it is one but rustls-webpki cannot use it, or it breaks RFC 5280 §5.2.3
    /// (no CRL number, or a critical one: such a CRL cannot be ordered against others).
    ///
    /// The CRL is parsed once, its entries indexed by serial number, and when a root held here
    /// issued it, its signature is checked now with the root's key, so that verifications only
    /// look serial numbers up (O(log n)); a CRL issued by an intermediate is checked at its first
    /// use with that intermediate's key, and the verdict kept.
    pub fn add_crl(&mut self, crl: &CertificateRevocationListDer<'_>, what: &str) -> Result<(), PkiError> {
        // A CRL that x509-parser reads was read fine; what webpki or RFC 5280 then refuse is a
        // "no" (nothing it covers can be trusted), not unusable input.
        let parsed = x509_parser::parse_x509_crl(crl);
        let readable = parsed.is_ok();
        let refused = |reason: String| {
            if readable {
                PkiError::UnacceptableCrl {
                    what: what.into(),
                    reason,
                }
            } else {
                PkiError::malformed(what, reason)
            }
        };
        let held =
            Crl::from_der(crl.to_vec()).map_err(|e| refused(format!("unusable CRL: {}", RejectionReason::from(&e))))?;
        check_crl_number(parsed.as_ref().map(|(_, parsed)| parsed)).map_err(refused)?;
        for anchor in self.anchors.iter().filter(|a| a.subject.as_ref() == held.issuer()) {
            held.precheck(SIGNATURE_ALGORITHMS, anchor.subject_public_key_info.as_ref());
        }
        self.crls.push(Arc::new(held));
        Ok(())
    }

    /// Adds every CRL in a PEM (or DER) file.
    ///
    /// # Errors
    /// As [`pem::load_crls`] and [`TrustStore::add_crl`].
    pub fn add_crl_file(&mut self, path: &Path) -> Result<(), PkiError> {
        let what = pem::display_name(path);
        for crl in pem::load_crls(path)? {
            self.add_crl(&crl, &what)?;
        }
        Ok(())
    }

    /// Removes every CRL (e.g. before loading fresh ones).
    pub fn clear_crls(&mut self) {
        self.crls.clear();
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The trust anchors (for rustls).
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The CRLs held (unit tests look at their signature verdicts).
    #[cfg(test)]
    pub(super) fn held_crls(&self) -> &[Arc<Crl>] {
        &self.crls
    }

    /// The number of CRLs held.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Verifies `end_entity` (with candidate `intermediates`) against the roots: a path to a
    /// root, signatures, validity of every certificate at `request.time`, the usage, name
    /// constraints and path lengths, revocation by the CRLs held (for every certificate on the
    /// path that a CRL covers; a stale CRL is an error), and the name if one is given.
    ///
    /// On top of rustls-webpki (which implements the Web PKI's subset of RFC 5280), the path is
    /// held to the RFC 5280 profile rules listed in `docs/conformance.md`: the root must be
    /// valid at `request.time`, carry no unknown critical extension and, if it signed a CRL
    /// held here, allow cRLSign; every issuer (root included) has a non-empty subject, critical
    /// basic constraints with cA, and keyCertSign if it has a key usage; key identifiers are
    /// not critical, policy constraints are; name constraints appear only in CA certificates
    /// and are not empty; and the end entity's key is one Tessera can use (Ed25519, ECDSA
    /// P-256/P-384, RSA 2048–8192 bits). A self-signed certificate trusted as its own root
    /// (pinned) is exempt from the issuer and root rules. Then the request's
    /// [`VerifyRequest::max_depth`] and [`VerifyRequest::key_usage`], and the policy rules of
    /// [`super::PolicyViolation`] (serial length, SAN criticality, DNS constraints, RSA modulus
    /// length, anyExtendedKeyUsage, a root's key identifier). These checks run on every
    /// candidate path webpki has verified, so a path that breaks one lets webpki try another.
    ///
    /// # Errors
    /// A rejection ([`PkiError::is_rejection`]) says why the certificate is not trusted
    /// ([`PkiError::ProfileViolation`] for the profile rules, [`PkiError::Policy`],
    /// [`PkiError::ChainTooDeep`], [`PkiError::KeyUsageNotAllowed`],
    /// [`PkiError::UnacceptableCertificate`] for an end entity webpki refuses as written);
    /// [`PkiError::NoRoots`] or [`PkiError::Malformed`] (bytes that are no certificate) mean
    /// the question could not be asked.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> Result<VerifiedChain, PkiError> {
        self.verify_with(end_entity, intermediates, request, Revocation::Layer)
    }

    /// [`TrustStore::verify`] with rustls-webpki's own CRL checking instead of Tessera's
    /// revocation layer: the reference the layer is tested against (differential tests, the
    /// conformance harness). Slow with large CRLs (each is re-parsed, and webpki hashes it for
    /// every path). Not part of the API.
    ///
    /// # Errors
    /// As [`TrustStore::verify`].
    #[doc(hidden)]
    pub fn verify_with_webpki_revocation(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
    ) -> Result<VerifiedChain, PkiError> {
        let crls = self
            .crls
            .iter()
            .map(|crl| OwnedCertRevocationList::from_der(crl.der()).map(CertRevocationList::Owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::malformed("CRL", RejectionReason::from(&e).to_string()))?;
        let refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        self.verify_with(end_entity, intermediates, request, Revocation::Webpki(&refs))
    }

    fn verify_with(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        request: &VerifyRequest,
        revocation: Revocation<'_>,
    ) -> Result<VerifiedChain, PkiError> {
        if self.anchors.is_empty() {
            return Err(PkiError::NoRoots);
        }
        let ee = EndEntityCert::try_from(end_entity).map_err(|e| unacceptable_certificate(end_entity, &e))?;
        let time = unix_time(request.time);
        let webpki_revocation = match revocation {
            Revocation::Layer => None,
            Revocation::Webpki(crls) => RevocationOptionsBuilder::new(crls).ok().map(|builder| {
                builder
                    .with_depth(RevocationCheckDepth::Chain)
                    .with_status_policy(UnknownStatusPolicy::Allow)
                    .with_expiration_policy(ExpirationPolicy::Enforce)
                    .build()
            }),
        };
        let presented = |intermediates| Presented {
            end_entity,
            intermediates,
            roots: &self.roots,
            crls: &self.crls,
            request,
        };
        // webpki calls this for every path it has verified up to a trust anchor; a path refused
        // here lets it try the next one. The first refusal is kept to explain a failure; the
        // end entity, inspected from the parse the profile rules made, is kept for the result.
        let refusal: RefCell<Option<PkiError>> = RefCell::new(None);
        let inspected: RefCell<Option<(CertificateInfo, Option<String>)>> = RefCell::new(None);
        let check_path = |candidate: &webpki::VerifiedPath<'_>| {
            let path: Vec<&webpki::Cert<'_>> = std::iter::once(&**candidate.end_entity())
                .chain(candidate.intermediate_certificates())
                .collect();
            let root = self.root_of(candidate.anchor());
            let checked = match revocation {
                Revocation::Layer => self.check_revocation(&path, candidate.anchor(), time, request),
                Revocation::Webpki(_) => Ok(()),
            }
            .and_then(|()| self.check_profile(&path, root, request));
            checked.map(|info| *inspected.borrow_mut() = info).map_err(|e| {
                let mut kept = refusal.borrow_mut();
                // Of several paths too deep, report the shortest.
                let shorter = matches!((&*kept, &e), (
                    Some(PkiError::ChainTooDeep { depth: old, .. }),
                    PkiError::ChainTooDeep { depth: new, .. },
                ) if new < old);
                if kept.is_none() || shorter {
                    *kept = Some(e);
                }
                webpki::Error::UnknownIssuer
            })
        };
        let verified = ee
            .verify_for_usage(
                SIGNATURE_ALGORITHMS,
                &self.anchors,
                intermediates,
                time,
                EkuPolicy::from(request.usage),
                webpki_revocation,
                Some(&check_path),
            )
            .map_err(|e| refusal.take().unwrap_or_else(|| presented(intermediates).explain(&e)))?;

        let mut path = vec![end_entity.clone().into_owned()];
        path.extend(
            verified
                .intermediate_certificates()
                .map(|c| CertificateDer::from(c.der().to_vec())),
        );
        if let Some(root) = self.root_of(verified.anchor()) {
            path.push(root.clone());
        }

        if let Some(name) = &request.name {
            let server_name =
                ServerName::try_from(name.as_str()).map_err(|_| PkiError::NameMismatch { name: name.clone() })?;
            ee.verify_is_valid_for_subject_name(&server_name)
                .map_err(|_| PkiError::NameMismatch { name: name.clone() })?;
        }

        let (info, common_name) = match inspected.take() {
            Some(inspected) => inspected,
            None => CertificateInfo::with_common_name(end_entity)?,
        };
        if request.usage == Usage::CodeSigning && !info.extended_key_usage.iter().any(|e| e == "codeSigning") {
            return Err(PkiError::WrongUsage { usage: request.usage });
        }
        Ok(VerifiedChain {
            path,
            end_entity: info,
            common_name,
            usage: request.usage,
            time: request.time,
        })
    }

    /// The trusted root certificate behind a trust anchor.
    fn root_of(&self, anchor: &TrustAnchor<'_>) -> Option<&CertificateDer<'static>> {
        self.root_index(anchor).and_then(|index| self.roots.get(index))
    }

    /// The index of the root behind a trust anchor.
    fn root_index(&self, anchor: &TrustAnchor<'_>) -> Option<usize> {
        self.anchors
            .iter()
            .position(|a| a.subject == anchor.subject && a.subject_public_key_info == anchor.subject_public_key_info)
    }

    /// Does the root `der` pass the root's profile rules at `time`, by what was worked out when
    /// it was added? `false` means "check it in full" (it may still pass).
    fn root_passes(&self, der: &CertificateDer<'_>, time: OffsetDateTime) -> bool {
        let Some(facts) = self
            .roots
            .iter()
            .position(|r| r == der)
            .and_then(|i| self.root_facts.get(i))
        else {
            return false;
        };
        let now = time.unix_timestamp();
        facts.timeless_ok
            && facts.not_before <= now
            && now <= facts.not_after
            && (facts.may_sign_crls || !self.crls.iter().any(|crl| crl.issuer() == facts.subject.as_slice()))
    }

    /// Revocation of every certificate on a path webpki has verified, by the CRLs held
    /// (`revocation.rs`, webpki's rules): `path` is the end entity then the intermediates,
    /// `anchor` the trust anchor they chain to.
    fn check_revocation(
        &self,
        path: &[&webpki::Cert<'_>],
        anchor: &TrustAnchor<'_>,
        time: UnixTime,
        request: &VerifyRequest,
    ) -> Result<(), PkiError> {
        if self.crls.is_empty() {
            return Ok(());
        }
        let ders: Vec<CertificateDer<'_>> = path.iter().map(|c| c.der()).collect();
        let certs: Vec<PathCert<'_>> = path
            .iter()
            .zip(&ders)
            .map(|(cert, der)| PathCert {
                der: der.as_ref(),
                issuer: cert.issuer(),
                serial: cert.serial(),
            })
            .collect();
        revocation::check_path(
            &self.crls,
            &certs,
            anchor.subject_public_key_info.as_ref(),
            SIGNATURE_ALGORITHMS,
            time,
        )
        .map_err(|refused| match refused.error {
            webpki::Error::CertRevoked => PkiError::Revoked {
                serial: Serial::from_octets(certs.get(refused.index).map_or(&[][..], |c| c.serial)),
                reason: RevocationReason::from_crl_code(refused.reason.map(|r| r as u8)),
            },
            error => {
                let end_entity = ders.first().cloned().unwrap_or_else(|| CertificateDer::from(&[][..]));
                Presented {
                    end_entity: &end_entity,
                    intermediates: ders.get(1..).unwrap_or_default(),
                    roots: &self.roots,
                    crls: &self.crls,
                    request,
                }
                .explain(&error)
            }
        })
    }

    /// The rules rustls-webpki leaves out, on a path it has verified: the RFC 5280 profile
    /// (`profile.rs`), the request's depth and key usage and the policy rules (`policy.rs`).
    /// `path` is the end entity then the intermediates, `root` the trusted certificate it
    /// chains to. Each certificate is parsed once; the end entity, inspected from that parse,
    /// is returned for the [`VerifiedChain`].
    fn check_profile(
        &self,
        path: &[&webpki::Cert<'_>],
        root: Option<&CertificateDer<'_>>,
        request: &VerifyRequest,
    ) -> Result<Option<(CertificateInfo, Option<String>)>, PkiError> {
        let ders: Vec<CertificateDer<'_>> = path.iter().map(|c| c.der()).collect();
        // A self-signed certificate trusted as its own root is a pinned end entity, not a CA.
        let pinned = root.is_some() && ders.len() == 1 && ders.first() == root;
        // A root whose rules were found to pass when it was added is not parsed again.
        let root = root.filter(|root| !pinned && !self.root_passes(root, request.time));
        let mut parsed = Vec::with_capacity(ders.len() + 1);
        for der in ders.iter().chain(root) {
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| PkiError::ProfileViolation {
                subject: "on the path".into(),
                rule: ProfileRule::NotX509,
            })?;
            parsed.push(cert);
        }
        for (index, (der, cert)) in ders.iter().chain(root).zip(&parsed).enumerate() {
            let violation = |rule: ProfileRule| PkiError::ProfileViolation {
                subject: subject_of(cert),
                rule,
            };
            check_extensions(cert).map_err(violation)?;
            let position = if index == 0 {
                check_end_entity(cert).map_err(violation)?;
                Position::EndEntity
            } else {
                check_issuer(cert).map_err(violation)?;
                if index == ders.len() {
                    Position::Root
                } else {
                    Position::Intermediate
                }
            };
            if position == Position::Root {
                check_root(der, cert, request.time)?;
                self.check_crl_signer(cert)?;
            }
            policy::check_certificate(cert, position)?;
        }
        let Some((end_entity, rest)) = parsed.split_first() else {
            return Ok(None);
        };
        policy::check_key_usage(end_entity, &request.key_usage)?;
        if let Some(max) = request.max_depth {
            let intermediates = rest.get(..ders.len().saturating_sub(1)).unwrap_or_default();
            policy::check_depth(intermediates, max)?;
        }
        Ok(ders.first().and_then(|der| {
            let info = CertificateInfo::from_parsed(end_entity, der).ok()?;
            Some((info, common_name(end_entity.subject())))
        }))
    }

    /// rustls-webpki checks that an intermediate CA may sign the CRLs it issues (cRLSign), but
    /// it never sees the root's key usage (a trust anchor is only a name and a key): do it here.
    fn check_crl_signer(&self, root: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), PkiError> {
        let may_sign_crls = may_sign_crls(root);
        let subject = name_contents(root.subject().as_raw());
        if !may_sign_crls && self.crls.iter().any(|crl| crl.issuer() == subject) {
            return Err(PkiError::RevocationUnknown {
                reason: format!(
                    "a CRL is signed by {}, whose key usage does not include cRLSign (RFC 5280 4.2.1.3)",
                    subject_of(root)
                ),
            });
        }
        Ok(())
    }
}

/// Converts a time to rustls' representation (times before 1970 become the epoch).
pub(crate) fn unix_time(time: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(time.unix_timestamp()).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rcgen::{
        BasicConstraints, CertificateRevocationListParams, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevocationReason, RevokedCertParams, SerialNumber,
    };
    use time::macros::datetime;

    use super::*;
    use crate::pki::testing::*;

    #[test]
    fn chains_shaped_like_ours_are_accepted() {
        let root = Ca::root(ca_params("root"));
        let mut intermediate = ca_params("intermediate");
        intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        intermediate.use_authority_key_identifier_extension = true;
        let intermediate = root.intermediate(intermediate);
        let leaf = intermediate.leaf(&leaf_params());
        let chain = verify(&root, &leaf, std::slice::from_ref(&intermediate.der)).unwrap();
        assert_eq!(chain.path().len(), 3);

        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_accepted(verify(&root, &root.issue(&leaf_params(), &ed25519), &[]));
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_accepted(verify(&root, &root.issue(&leaf_params(), &p384), &[]));
    }

    #[test]
    fn a_pinned_self_signed_end_entity_is_not_held_to_the_root_rules() {
        let key = KeyPair::generate().unwrap();
        let leaf = leaf_params().self_signed(&key).unwrap().der().clone();
        assert_accepted(verify_at(&store(&leaf), &leaf, &[], NOW));
    }
    #[test]
    fn a_root_without_crl_sign_cannot_vouch_for_a_crl() {
        let mut params = ca_params("root");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let root = Ca::root(params);
        let leaf = root.leaf(&leaf_params());
        let mut store = store(&root.der);
        assert_accepted(verify_at(&store, &leaf, &[], NOW));
        store.add_crl(&hand_made_crl(&root, Some(false)), "crl").unwrap();
        match verify_at(&store, &leaf, &[], NOW) {
            Err(PkiError::RevocationUnknown { reason }) => assert!(reason.contains("cRLSign"), "{reason}"),
            other => panic!("expected the CRL to be unusable, got {other:?}"),
        }
    }

    #[test]
    fn a_revocation_names_the_serial_and_reason() {
        let root = Ca::root(ca_params("root"));
        let leaf = root.leaf(&leaf_params());
        let crl = CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update: datetime!(2031-01-01 0:00 UTC),
            crl_number: SerialNumber::from(vec![0x01]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![0x01, 0x02, 0x03]),
                revocation_time: datetime!(2030-02-01 0:00 UTC),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&root.params, &root.key))
        .unwrap();
        let mut store = store(&root.der);
        store.add_crl(crl.der(), "crl").unwrap();
        match verify_at(&store, &leaf, &[], NOW) {
            Err(PkiError::Revoked { serial, reason }) => {
                assert_eq!(serial, "010203");
                assert_eq!(reason, crate::pki::RevocationReason::KeyCompromise);
            }
            other => panic!("expected a revocation, got {other:?}"),
        }
    }
}
