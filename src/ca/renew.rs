//! Renewing a certificate (`ca renew CERT`): a new certificate with the same subject, names,
//! profile and lifetime as one this CA issued, from a new key (or the same key on request),
//! issued, checked and recorded exactly as `ca issue` would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::issue::{IssueRequest, Issued, IssuedFiles, Leftover};
use super::{CaError, CertificateAuthority, Profile, Record};
use crate::pki::{self, CertificateInfo, Passphrase, PkiError, PrivateKey, pem};

/// What a renewal of a certificate asks for (see [`CertificateAuthority::renewal`]).
#[derive(Clone, Debug)]
#[must_use]
pub struct Renewal {
    /// The request that issues the new certificate: the old one's common name, names and
    /// profile, and its lifetime (`notAfter` − time of issuance).
    pub request: IssueRequest,
    /// The old certificate's record.
    pub record: Record,
    /// True when the old lifetime from now would outlive the CA, so the new certificate ends
    /// with the CA instead.
    pub shortened: bool,
}

impl CertificateAuthority {
    /// The renewal of `certificate` (DER), at `now`: checks that this CA issued it (its issuer
    /// is this CA's subject, and the store holds exactly this certificate under its serial) and
    /// that it is not revoked, and makes the [`IssueRequest`] for a certificate like it: the
    /// same common name, subject alternative names and profile, the same lifetime (time of
    /// issuance to notAfter, as recorded), ending with the CA when that lifetime would outlive
    /// it. An expired certificate may be renewed.
    ///
    /// With `reuse_key`, the request is for that key (which must be the certificate's): a
    /// certificate signing request made and signed with it, so the new certificate is issued
    /// as `ca issue --csr` would, and no key is written.
    ///
    /// # Errors
    /// [`CaError::Unusable`] (a refusal, exit 1) when another CA issued it, the store holds
    /// another certificate under its serial, it is revoked, or it is an intermediate CA;
    /// [`CaError::UnknownSerial`] when the store does not know it; [`CaError::Pki`] for a
    /// certificate that cannot be read or a `reuse_key` that is not its key; store errors.
    pub fn renewal(
        &self,
        certificate: &CertificateDer<'_>,
        reuse_key: Option<&PrivateKey>,
        now: OffsetDateTime,
    ) -> Result<Renewal, CaError> {
        let info = CertificateInfo::from_der(certificate)?;
        let refuse = |reason: String| CaError::Unusable {
            what: format!("a renewal of certificate {}", info.serial),
            reason,
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate).map_err(|e| {
            PkiError::malformed(
                "the certificate",
                format!("cannot be parsed: {}", pki::describe_x509(&e)),
            )
        })?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.certificate)
            .map_err(|e| PkiError::malformed("ca.pem", format!("cannot be parsed: {}", pki::describe_x509(&e))))?;
        if parsed.issuer().as_raw() != ca.subject().as_raw() {
            return Err(refuse(format!(
                "it was issued by {}, not by this CA ({})",
                parsed.issuer(),
                self.info.subject
            )));
        }
        let record = self
            .with_store(|store| store.find(&info.serial))?
            .ok_or_else(|| CaError::UnknownSerial {
                serial: info.serial.clone(),
            })?;
        if pem::parse_certificates(record.certificate.as_bytes(), "the store")?.first() != Some(certificate) {
            return Err(refuse(
                "the CA's store holds another certificate under its serial: this CA did not issue it".into(),
            ));
        }
        if let Some(revoked) = &record.revoked {
            return Err(refuse(format!(
                "it was revoked on {} ({}); issue a new certificate with `ca issue` if one is still wanted",
                pki::rfc3339(revoked.at),
                revoked.reason
            )));
        }
        let profile: Profile = record.profile.parse().map_err(|_| {
            refuse(format!(
                "it is a {} certificate; only leaves are renewed",
                record.profile
            ))
        })?;
        let name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| refuse("its subject has no common name".into()))?
            .to_string();
        let lifetime = Duration::try_from(record.not_after - record.issued_at)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| refuse("its recorded lifetime is not positive".into()))?;
        let now = super::authority::x509_time(now)?;
        let (lifetime, shortened) = match Duration::try_from(self.info.not_after - now) {
            Ok(left) if left < lifetime && !left.is_zero() => (left, true),
            _ => (lifetime, false),
        };
        let mut request = IssueRequest::new(profile, name).with_sans(record.sans.iter().cloned());
        request.lifetime = Some(lifetime);
        request.key_algorithm = Some(key_algorithm(&parsed)?);
        if let Some(key) = reuse_key {
            if key.public_key_spki()? != super::authority::spki_of(certificate)? {
                return Err(
                    PkiError::malformed("the key to reuse (--reuse-key)", "is not the certificate's key").into(),
                );
            }
            let key_pair = key.to_key_pair()?;
            let csr = rcgen::CertificateParams::default()
                .serialize_request(&key_pair)
                .map_err(|e| CaError::build("certificate signing request for the reused key", e))?;
            request.csr = Some(csr.der().to_vec());
            request.key_algorithm = None;
        }
        Ok(Renewal {
            request,
            record,
            shortened,
        })
    }

    /// `ca renew` as one call: [`CertificateAuthority::renewal`], then
    /// [`CertificateAuthority::issue_to`] with its request (the outputs at `prefix` made ready
    /// before anything is signed; a new key encrypted with `key_passphrase` when one is given).
    ///
    /// # Errors
    /// As those two.
    pub fn renew_to(
        &self,
        certificate: &CertificateDer<'_>,
        reuse_key: Option<&PrivateKey>,
        prefix: &Path,
        key_passphrase: Option<&Passphrase>,
        now: OffsetDateTime,
        on_leftover: &mut dyn FnMut(&Leftover),
    ) -> Result<(Renewal, Issued, IssuedFiles), CaError> {
        let renewal = self.renewal(certificate, reuse_key, now)?;
        let (issued, files) = self.issue_to(&renewal.request, prefix, key_passphrase, now, on_leftover)?;
        Ok((renewal, issued, files))
    }

    /// The default output prefix of `ca renew CERT` at `now`: beside CERT, its name less `.pem`
    /// (or `.chain.pem`), then `-renewed-YYYYMMDDTHHMMSSZ` (`www.pem` → `www-renewed-20301201T120000Z`),
    /// so the old files stay where they are.
    pub fn renewal_prefix(certificate_path: &Path, now: OffsetDateTime) -> PathBuf {
        let text = certificate_path.as_os_str().to_string_lossy();
        let stem = [".chain.pem", ".pem", ".crt", ".der"]
            .iter()
            .find_map(|ending| text.strip_suffix(ending))
            .unwrap_or(&text);
        let utc = now.to_offset(time::UtcOffset::UTC);
        PathBuf::from(format!(
            "{stem}-renewed-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        ))
    }
}

/// The key type of a certificate Tessera issued (for a new key of the same type).
fn key_algorithm(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Result<pki::KeyAlgorithm, CaError> {
    use x509_parser::public_key::{ECPoint, PublicKey};
    match parsed.public_key().parsed() {
        Ok(PublicKey::EC(ECPoint { .. })) => {
            let curve = parsed
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok(pki::KeyAlgorithm::P256),
                Some("1.3.132.0.34") => Ok(pki::KeyAlgorithm::P384),
                _ => Err(
                    PkiError::malformed("the certificate", "has an elliptic curve key Tessera does not issue").into(),
                ),
            }
        }
        _ if parsed.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => Ok(pki::KeyAlgorithm::Ed25519),
        _ => Err(PkiError::malformed("the certificate", "has a key type Tessera does not issue").into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_default_prefix_sits_beside_the_old_certificate() {
        let now = datetime!(2030-12-01 12:00:05 UTC);
        for (cert, prefix) in [
            ("issued/www.pem", "issued/www-renewed-20301201T120005Z"),
            ("www.chain.pem", "www-renewed-20301201T120005Z"),
            ("www", "www-renewed-20301201T120005Z"),
        ] {
            assert_eq!(
                CertificateAuthority::renewal_prefix(Path::new(cert), now),
                PathBuf::from(prefix)
            );
        }
    }
}
