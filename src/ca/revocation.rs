//! Revocation and CRLs (`ca revoke`, `ca crl`): recording a revocation, numbering and signing
//! CRLs (RFC 5280 §5), publishing `crl.pem`, and inspecting and repairing a `crl.pem` that an
//! interrupted command left behind the store (see [`CrlStatus`]).
//!
//! Every operation that changes the store first checks that `crl.pem` reflects it, and rewrites
//! the CRL when an interrupted command left it behind.

use std::path::Path;
use std::time::Duration;

use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use super::authority::{CRL, end_of, read_ca_certificates, serial_number, x509_time};
use super::crl_file::{Depth, Unusable, read_crl_file};
use super::record::Revocation;
use super::store::{CrlState, CrlSummary, DirLock, RevokeOutcome, Store, WriteAccess};
use super::{CaError, CertificateAuthority};
use crate::fsutil;
use crate::pki::{RevocationReason, Serial, pem};

/// The CRL lifetime used when an interrupted CRL write is repaired and the old CRL does not say
/// its own (`ca revoke` and `ca crl` default to it too).
pub const DEFAULT_CRL_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// How a CA's `crl.pem` stands against its issuance database.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlStatus {
    /// No CRL was written yet, and nothing is revoked: there is nothing to publish.
    NotYetWritten,
    /// `crl.pem` was made from the database as it is: it lists every recorded revocation.
    Current,
    /// `crl.pem` is missing, damaged, or older than the database (a command was interrupted
    /// between recording a revocation and writing the CRL). The next command that signs with
    /// the CA (`revoke`, `crl`, `issue`, `init --parent`) rewrites it; `reason` says what is
    /// wrong.
    Stale {
        /// What is wrong, for people.
        reason: String,
    },
    /// `crl.pem` reads as this CA's CRL, with the store's CRL number, but the CA's signature
    /// over it does not verify: it was damaged after it was written. Found only by a full read
    /// ([`crl_status`], `ca revoke`), not by the constant-cost check before each issuance; the
    /// next `ca crl` or `ca revoke` rewrites it.
    Damaged {
        /// What is wrong, for people.
        reason: String,
    },
    /// `crl.pem` is missing, older than the store or damaged, but the store holds the current
    /// CRL, which `ca serve` signed and published there (it serves it at `/crl`): the next
    /// command that signs copies it into `crl.pem` as it is, under the same number.
    Published {
        /// Its CRL number (RFC 5280 §5.2.3), the store's.
        number: u64,
    },
}

/// The outcome of [`CertificateAuthority::revoke_certificate`].
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The certificate's serial.
    pub serial: Serial,
    /// When and why it is revoked (the recorded revocation when it already was).
    pub revocation: Revocation,
    /// False when the certificate was already revoked and nothing changed.
    pub newly_revoked: bool,
    /// The CA's current CRL (as in `crl.pem`), which lists the certificate.
    pub crl: CertificateRevocationListDer<'static>,
}

/// Compares `DIR/crl.pem` with the store of the CA in `dir` (for tools that only read, such
/// as `ca list`; the CA repairs a stale CRL itself whenever it signs).
///
/// # Errors
/// [`CaError::DatabaseBehindCrl`] when the CRL is newer than the store, store and I/O errors.
pub fn crl_status(dir: &Path, store: &mut dyn Store) -> Result<CrlStatus, CaError> {
    let (certificate, _) = read_ca_certificates(dir)?;
    let status = inspect_crl(dir, store, &certificate, Depth::Full)?.status;
    with_published(status, store, &certificate)
}

/// `status`, or [`CrlStatus::Published`] when `crl.pem` is stale or damaged but the store holds
/// a CRL `ca serve` published that reflects it (see [`current_published`]).
fn with_published(status: CrlStatus, store: &mut dyn Store, ca: &CertificateDer<'_>) -> Result<CrlStatus, CaError> {
    match status {
        CrlStatus::Stale { .. } | CrlStatus::Damaged { .. } => {
            Ok(current_published(store, ca)?.map_or(status, |(number, _)| CrlStatus::Published { number }))
        }
        status => Ok(status),
    }
}

/// The CRL `ca serve` published in the store (migration 0002, `published_crls`), with its
/// number, when it reflects the store as it is: its number is the last one the store handed
/// out (every revocation hands out a new one), and it is this CA's CRL, signed by its key.
fn current_published(
    store: &mut dyn Store,
    ca: &CertificateDer<'_>,
) -> Result<Option<(u64, CertificateRevocationListDer<'static>)>, CaError> {
    let Some(published) = store.acme().crl_published()? else {
        return Ok(None);
    };
    if published.number != store.crl_number()? {
        return Ok(None);
    }
    match super::crl_file::signed_crl_number(&published.der, ca) {
        Some(number) if number == published.number => {
            Ok(Some((number, CertificateRevocationListDer::from(published.der))))
        }
        _ => {
            tracing::warn!(
                number = published.number,
                "the CRL published in the store is not a CRL of this CA with that number; not used"
            );
            Ok(None)
        }
    }
}

impl CertificateAuthority {
    /// The current CRL, rewritten first (under a fresh CRL number) if it does not reflect the
    /// store; `None` when no CRL was ever written and nothing is revoked.
    pub(super) fn ensure_crl(
        &self,
        now: OffsetDateTime,
        depth: Depth,
    ) -> Result<Option<CertificateRevocationListDer<'static>>, CaError> {
        if let Err(e) = fsutil::remove_stale_temporaries(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot look for leftover temporary files");
        }
        let mut found = self.with_store(|store| inspect_crl(&self.dir, store, &self.certificate, depth))?;
        if matches!(found.status, CrlStatus::Stale { .. } | CrlStatus::Damaged { .. })
            && let Some(der) = self.adopt_published_crl()?
        {
            return Ok(Some(der));
        }
        // A CRL number handed out but not yet in crl.pem is usually another process between its
        // commit and its publication (a few milliseconds): give it that time before taking the
        // CRL for one left behind by a crash.
        for _ in 0..10 {
            if !found.behind {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            found = self.with_store(|store| inspect_crl(&self.dir, store, &self.certificate, depth))?;
        }
        match found.status {
            CrlStatus::NotYetWritten => Ok(None),
            CrlStatus::Current => Ok(found.der),
            status @ (CrlStatus::Stale { .. } | CrlStatus::Damaged { .. } | CrlStatus::Published { .. }) => {
                let reason = match status {
                    CrlStatus::Stale { reason } | CrlStatus::Damaged { reason } => reason,
                    _ => format!("{} is not current", self.crl_path().display()),
                };
                let lifetime = found.lifetime.unwrap_or(DEFAULT_CRL_LIFETIME);
                let state = self.with_store(|store| store.advance_crl_number(WriteAccess::granted()))?;
                let number = state.number;
                let der = self.publish_crl(&state, now, lifetime)?;
                tracing::warn!("{reason}; rewrote it from the store as CRL number {number}");
                Ok(Some(der))
            }
        }
    }

    /// Copies the CRL `ca serve` published in the store into `crl.pem` when it reflects the
    /// store (see [`current_published`]): the file is then current without a new CRL number.
    /// Under the directory lock; a `crl.pem` that meanwhile got a number as high is kept.
    /// `None` when there is no such CRL in the store.
    fn adopt_published_crl(&self) -> Result<Option<CertificateRevocationListDer<'static>>, CaError> {
        let Some((number, der)) = self.with_store(|store| current_published(store, &self.certificate))? else {
            return Ok(None);
        };
        let path = self.crl_path();
        let _lock = DirLock::acquire(&self.dir)?;
        if let Ok(file) = read_crl_file(&path, &self.certificate, Depth::Full)?
            && file.number.is_some_and(|n| n >= number)
            && let Some(der) = file.der
        {
            return Ok(Some(der));
        }
        fsutil::write_atomic(&path, pem::to_pem(pem::X509_CRL, &der).as_bytes(), fsutil::PUBLIC_MODE)
            .map_err(|e| CaError::io(&path, e))?;
        tracing::info!(number, "crl.pem updated from the CRL `ca serve` published in the store");
        Ok(Some(der))
    }

    /// How this CA's `crl.pem` stands against its store (see [`crl_status`]).
    ///
    /// # Errors
    /// [`CaError::DatabaseBehindCrl`], store and I/O errors.
    pub fn crl_status(&self) -> Result<CrlStatus, CaError> {
        self.with_store(|store| {
            let status = inspect_crl(&self.dir, store, &self.certificate, Depth::Full)?.status;
            with_published(status, store, &self.certificate)
        })
    }

    /// Marks the certificate with `serial` revoked and writes a fresh CRL; returns the CRL.
    /// See [`CertificateAuthority::revoke_certificate`], which also says whether anything
    /// changed.
    ///
    /// # Errors
    /// As [`CertificateAuthority::revoke_certificate`].
    pub fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        self.revoke_certificate(serial, reason, now, crl_lifetime)
            .map(|revoked| revoked.crl)
    }

    /// Marks the certificate with `serial` revoked and writes a fresh CRL (`DIR/crl.pem`, valid
    /// for `crl_lifetime`), the database first, so that an interruption in between is repaired
    /// by the next command.
    ///
    /// Revoking an already revoked certificate again, for the same reason or with
    /// [`RevocationReason::Unspecified`], changes nothing and succeeds
    /// ([`Revoked::newly_revoked`] is false): a retry after a crash is safe, and the CRL returned
    /// lists the certificate. Another reason is refused: a revocation is final.
    ///
    /// # Errors
    /// [`CaError::UnknownSerial`], [`CaError::AlreadyRevoked`] (another reason),
    /// [`CaError::InvalidRequest`] (a zero or too long CRL lifetime, a `now` a CRL cannot
    /// carry), [`CaError::DatabaseBehindCrl`], database and I/O errors.
    pub fn revoke_certificate(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<Revoked, CaError> {
        let now = x509_time(now)?;
        crl_next_update(now, crl_lifetime)?;
        // Repairs a CRL left behind, and refuses a store older than the CRL, before any change.
        self.ensure_crl(now, Depth::Full)?;
        match self.with_store(|store| store.revoke_once(serial, now, reason, WriteAccess::granted()))? {
            RevokeOutcome::Unknown => Err(CaError::UnknownSerial { serial: serial.clone() }),
            RevokeOutcome::AlreadyRevoked(revocation) => {
                if reason != RevocationReason::Unspecified && revocation.reason != reason {
                    return Err(CaError::AlreadyRevoked {
                        serial: serial.clone(),
                        at: revocation.at,
                        reason: revocation.reason,
                    });
                }
                // Another process may have revoked it and not yet published its CRL: then
                // this one is stale, and is rewritten.
                let crl = match self.ensure_crl(now, Depth::Full)? {
                    Some(crl) => crl,
                    None => {
                        let state = self.with_store(|store| store.advance_crl_number(WriteAccess::granted()))?;
                        self.publish_crl(&state, now, crl_lifetime)?
                    }
                };
                Ok(Revoked {
                    serial: serial.clone(),
                    revocation,
                    newly_revoked: false,
                    crl,
                })
            }
            RevokeOutcome::Revoked(state) => {
                let crl = self.publish_crl(&state, now, crl_lifetime)?;
                tracing::info!(serial = %serial, reason = reason.name(), "revoked");
                Ok(Revoked {
                    serial: serial.clone(),
                    revocation: Revocation { at: now, reason },
                    newly_revoked: true,
                    crl,
                })
            }
        }
    }

    /// Writes a fresh CRL (next CRL number, every revoked certificate) to `crl.pem`.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (a zero or too long CRL lifetime), [`CaError::DatabaseBehindCrl`],
    /// database and I/O errors, or [`CaError::Build`].
    pub fn write_crl(
        &self,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let now = x509_time(now)?;
        crl_next_update(now, crl_lifetime)?;
        // Refuses a store older than the CRL before handing out a number.
        self.with_store(|store| inspect_crl(&self.dir, store, &self.certificate, Depth::Header))?;
        let state = self.with_store(|store| store.advance_crl_number(WriteAccess::granted()))?;
        self.publish_crl(&state, now, crl_lifetime)
    }

    /// Signs the CRL for `state` (its number, handed out by the store together with the revoked
    /// set), issued at `now` (whole seconds, UTC) and due again `crl_lifetime` later, without
    /// writing it anywhere: `ca serve` publishes it in the store (see `ca::serve::periodic`).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (a time or lifetime a CRL cannot carry), [`CaError::Build`].
    pub(crate) fn sign_crl(
        &self,
        state: &CrlState,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let now = x509_time(now)?;
        let next_update = crl_next_update(now, crl_lifetime)?;
        let params = crl_params(state, now, next_update, self.subject_key_id()?);
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(|e| CaError::build("CRL", e))?;
        Ok(crl.der().clone())
    }

    /// Signs the CRL for `state` (its number, handed out by the store together with the revoked
    /// set) and puts it in `crl.pem`, unless a CRL with a higher number is already there (it
    /// lists everything this one does): under the directory lock, so `crl.pem` never goes back.
    /// Returns the CRL now in `crl.pem`. The store was committed first, so a crash here leaves
    /// `crl.pem` behind the store, which the next command repairs.
    fn publish_crl(
        &self,
        state: &CrlState,
        now: OffsetDateTime,
        crl_lifetime: Duration,
    ) -> Result<CertificateRevocationListDer<'static>, CaError> {
        let der = self.sign_crl(state, now, crl_lifetime)?;
        let path = self.crl_path();
        let _lock = DirLock::acquire(&self.dir)?;
        if let Err(e) = fsutil::remove_stale_temporaries(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot look for leftover temporary files");
        }
        if let Ok(newer) = read_crl_file(&path, &self.certificate, Depth::Header)?
            && newer.number.is_some_and(|n| n > state.number)
            && let Ok(newer) = read_crl_file(&path, &self.certificate, Depth::Full)?
            && newer.number.is_some_and(|n| n > state.number)
            && let Some(der) = newer.der
        {
            tracing::info!(number = state.number, "crl.pem already holds a newer CRL; kept it");
            return Ok(der);
        }
        fsutil::write_atomic(&path, pem::to_pem(pem::X509_CRL, &der).as_bytes(), fsutil::PUBLIC_MODE)
            .map_err(|e| CaError::io(path, e))?;
        Ok(der)
    }
}

/// What [`inspect_crl`] found.
struct CrlInspection {
    status: CrlStatus,
    /// The current CRL (DER), when it is [`CrlStatus::Current`].
    der: Option<CertificateRevocationListDer<'static>>,
    /// The lifetime (nextUpdate − thisUpdate) of the CRL found, if it could be read.
    lifetime: Option<Duration>,
    /// True when the CRL is whole but has a lower number than the store handed out.
    behind: bool,
}

/// Compares `crl.pem` with the store. The file is read before the store, so a CRL that another
/// process publishes meanwhile (always after its number was committed) is never taken for one
/// ahead of the store.
fn inspect_crl(
    dir: &Path,
    store: &mut dyn Store,
    ca: &CertificateDer<'_>,
    depth: Depth,
) -> Result<CrlInspection, CaError> {
    let path = dir.join(CRL);
    let file = read_crl_file(&path, ca, depth)?;
    // Counting the revoked rows is only needed when there is no CRL to compare with.
    let (db_number, revoked) = match &file {
        Ok(_) => (store.crl_number()?, 0),
        Err(_) => {
            let CrlSummary { number, revoked } = store.crl_summary()?;
            (number, revoked)
        }
    };
    let stale = |reason: String, lifetime: Option<Duration>| CrlInspection {
        status: CrlStatus::Stale { reason },
        der: None,
        lifetime,
        behind: false,
    };
    let file = match file {
        Ok(file) => file,
        Err(Unusable {
            reason,
            lifetime,
            unsigned: true,
        }) => {
            return Ok(CrlInspection {
                status: CrlStatus::Damaged { reason },
                der: None,
                lifetime,
                behind: false,
            });
        }
        Err(Unusable { reason, lifetime, .. }) if !reason.is_empty() => return Ok(stale(reason, lifetime)),
        Err(_) if db_number == 0 && revoked == 0 => {
            return Ok(CrlInspection {
                status: CrlStatus::NotYetWritten,
                der: None,
                lifetime: None,
                behind: false,
            });
        }
        Err(_) => {
            return Ok(stale(
                format!(
                    "{} is missing, though the database records CRL number {db_number} and {revoked} revocation(s)",
                    path.display()
                ),
                None,
            ));
        }
    };
    let Some(number) = file.number else {
        return Ok(stale(
            format!("{} has no usable CRL number", path.display()),
            file.lifetime,
        ));
    };
    if number > db_number {
        return Err(CaError::DatabaseBehindCrl {
            crl: path,
            crl_number: number,
            database_crl_number: db_number,
        });
    }
    if number < db_number {
        return Ok(CrlInspection {
            behind: true,
            ..stale(
                format!(
                    "{} is CRL number {number}, but the store has handed out CRL number {db_number} (an earlier command was interrupted)",
                    path.display()
                ),
                file.lifetime,
            )
        });
    }
    // Every revocation advances the CRL number in the transaction that reads the revoked set,
    // and the CA's signature shows the file is the CRL it made: under the store's number it
    // lists exactly what the store holds.
    Ok(CrlInspection {
        status: CrlStatus::Current,
        der: file.der,
        lifetime: file.lifetime,
        behind: false,
    })
}

/// The nextUpdate of a CRL made at `now` that lives `lifetime`.
fn crl_next_update(now: OffsetDateTime, lifetime: Duration) -> Result<OffsetDateTime, CaError> {
    if lifetime.is_zero() {
        return Err(CaError::invalid("crl-lifetime", "the CRL lifetime must be positive"));
    }
    end_of(now, lifetime, "crl-lifetime")
}

/// The minimal big-endian content octets of a positive DER INTEGER.
fn positive_integer(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
    let mut out = bytes.get(start..).unwrap_or(&bytes).to_vec();
    if out.first().is_some_and(|b| b & 0x80 != 0) {
        out.insert(0, 0);
    }
    out
}

/// The CRL (RFC 5280 §5) for `state`: its number as the cRLNumber (§5.2.3), every revoked
/// certificate with its revocation time and reason code (left out for `unspecified`, §5.3.1),
/// issued at `now`, due again at `next_update`, naming the issuer's key `key_id` (§5.2.1).
fn crl_params(
    state: &CrlState,
    now: OffsetDateTime,
    next_update: OffsetDateTime,
    key_id: Vec<u8>,
) -> CertificateRevocationListParams {
    let revoked_certs = state
        .revoked
        .iter()
        .map(|r| RevokedCertParams {
            serial_number: serial_number(&r.serial),
            revocation_time: r.at,
            reason_code: reason_code(r.reason),
            invalidity_date: None,
        })
        .collect();
    CertificateRevocationListParams {
        this_update: now,
        next_update,
        crl_number: SerialNumber::from_slice(&positive_integer(state.number)),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::PreSpecified(key_id),
    }
}

/// The reason code to put in a CRL entry (`None` for unspecified: RFC 5280 §5.3.1 says omit it).
fn reason_code(reason: RevocationReason) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    match reason {
        RevocationReason::KeyCompromise => Some(R::KeyCompromise),
        RevocationReason::CaCompromise => Some(R::CaCompromise),
        RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
        RevocationReason::Superseded => Some(R::Superseded),
        RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
        RevocationReason::CertificateHold => Some(R::CertificateHold),
        RevocationReason::RemoveFromCrl => Some(R::RemoveFromCrl),
        RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
        RevocationReason::AaCompromise => Some(R::AaCompromise),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use time::macros::datetime;

    use super::*;
    use crate::ca::LATEST_TIME;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn crl(ca: &CertificateAuthority) -> crate::pki::CrlInfo {
        let bytes = std::fs::read(ca.crl_path()).unwrap();
        crate::pki::CrlInfo::from_der(&pem::parse_crls(&bytes, "crl.pem").unwrap()[0]).unwrap()
    }

    fn new_ca(dir: &Path, now: OffsetDateTime) -> CertificateAuthority {
        CertificateAuthority::init(dir, &crate::ca::InitRequest::new("Root"), None, now).unwrap()
    }

    #[test]
    fn crl_numbers_count_up_from_one_at_a_fixed_time() {
        let now = datetime!(2031-03-01 08:00:00 UTC);
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(&dir.path().join("ca"), now);
        let week = DEFAULT_CRL_LIFETIME;
        assert_eq!(ca.crl_status().unwrap(), CrlStatus::NotYetWritten);
        ca.write_crl(now, week).unwrap();
        let first = crl(&ca);
        assert_eq!(first.crl_number.as_deref(), Some("1"));
        assert_eq!(first.this_update, now);
        assert_eq!(first.next_update, Some(now + time::Duration::days(7)));
        assert!(first.revoked.is_empty());

        let leaf = ca
            .issue(&crate::ca::IssueRequest::new(crate::ca::Profile::Client, "alice"), now)
            .unwrap();
        let later = now + time::Duration::hours(1);
        let revoked = ca
            .revoke_certificate(&leaf.info.serial, RevocationReason::KeyCompromise, later, week)
            .unwrap();
        assert!(revoked.newly_revoked);
        let second = crl(&ca);
        assert_eq!(second.crl_number.as_deref(), Some("2"));
        assert_eq!(second.revoked.len(), 1);
        assert_eq!(second.revoked[0].serial, leaf.info.serial);
        assert_eq!(second.revoked[0].reason, RevocationReason::KeyCompromise);
        assert_eq!(second.revoked[0].revoked_at, later);

        // Again for the same reason (or none): nothing changes, the CRL stays number 2.
        for reason in [RevocationReason::KeyCompromise, RevocationReason::Unspecified] {
            let again = ca.revoke_certificate(&leaf.info.serial, reason, later, week).unwrap();
            assert!(!again.newly_revoked);
            assert_eq!(again.revocation.reason, RevocationReason::KeyCompromise);
            assert_eq!(crl(&ca).crl_number.as_deref(), Some("2"));
        }
        // Another reason is refused: a revocation is final.
        let err = ca
            .revoke_certificate(&leaf.info.serial, RevocationReason::Superseded, later, week)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CaError::AlreadyRevoked {
                    reason: RevocationReason::KeyCompromise,
                    ..
                }
            ),
            "{err}"
        );
        // An unknown serial is named in the error.
        let unknown: Serial = "0a1b".parse().unwrap();
        let err = ca
            .revoke_certificate(&unknown, RevocationReason::Superseded, later, week)
            .unwrap_err();
        assert!(
            matches!(&err, CaError::UnknownSerial { serial } if *serial == unknown),
            "{err}"
        );

        ca.write_crl(later, week).unwrap();
        assert_eq!(crl(&ca).crl_number.as_deref(), Some("3"));
        assert_eq!(ca.crl_status().unwrap(), CrlStatus::Current);
    }

    #[test]
    fn crl_numbers_are_minimal_positive_integers() {
        assert_eq!(positive_integer(0), [0]);
        assert_eq!(positive_integer(1), [1]);
        assert_eq!(positive_integer(0x7f), [0x7f]);
        assert_eq!(positive_integer(0x80), [0, 0x80]);
        assert_eq!(positive_integer(0x0100), [1, 0]);
        assert_eq!(
            positive_integer(u64::MAX),
            [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn a_damaged_serial_in_the_store_is_an_error_never_another_serial_in_the_crl() {
        let now = datetime!(2031-03-01 08:00:00 UTC);
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = new_ca(&ca_dir, now);
        let leaf = ca
            .issue(&crate::ca::IssueRequest::new(crate::ca::Profile::Client, "bob"), now)
            .unwrap();
        ca.revoke_certificate(
            &leaf.info.serial,
            RevocationReason::Superseded,
            now,
            DEFAULT_CRL_LIFETIME,
        )
        .unwrap();
        let before = std::fs::read(ca.crl_path()).unwrap();
        // One digit of the stored serial replaced by a letter that is not hex.
        let stored = leaf.info.serial.to_string();
        let damaged = format!("{}g", &stored[..stored.len() - 1]);
        let db = rusqlite::Connection::open(ca_dir.join(super::super::store::SQLITE_FILE)).unwrap();
        let changed = db
            .execute(
                "UPDATE certificates SET serial = ?1 WHERE serial = ?2",
                rusqlite::params![damaged, stored],
            )
            .unwrap();
        assert_eq!(changed, 1);
        drop(db);
        let err = ca.write_crl(now, DEFAULT_CRL_LIFETIME).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CaError::Store { .. }), "{text}");
        assert!(text.contains("ca.db"), "names the store: {text}");
        assert!(
            text.contains(&format!("the record of certificate \"{damaged}\" is damaged"))
                && text.contains("'g' is not a hex digit"),
            "names the record: {text}"
        );
        assert_eq!(std::fs::read(ca.crl_path()).unwrap(), before, "crl.pem untouched");
        // Listing stops at the record too.
        let err = ca.list(&crate::ca::ListFilter::all(now), &mut |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
    }

    #[test]
    fn crl_lifetimes_past_x509_time_or_zero_are_errors() {
        let now = at(1_900_000_000);
        assert!(crl_next_update(now, Duration::MAX).is_err());
        assert!(crl_next_update(now, Duration::ZERO).is_err());
    }

    proptest! {
        #[test]
        fn a_crl_lifetime_is_granted_or_refused(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let now = at(1_900_000_000);
            let lifetime = Duration::new(secs, nanos);
            match crl_next_update(now, lifetime) {
                Ok(next) => prop_assert!(next > now && next <= LATEST_TIME),
                Err(CaError::InvalidRequest { field: "crl-lifetime", .. }) => {}
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }
}
