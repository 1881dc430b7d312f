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

/// What the error of a `reuse_key` that is not the certificate's key names
/// ([`PkiError::Malformed`]'s `what`; see [`CertificateAuthority::renewal`]).
pub const REUSED_KEY: &str = "the key to reuse (--reuse-key)";

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
                format!("it cannot be parsed: {}", pki::describe_x509(&e)),
            )
        })?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.certificate)
            .map_err(|e| PkiError::malformed("ca.pem", format!("it cannot be parsed: {}", pki::describe_x509(&e))))?;
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
            let article = if record.profile.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            refuse(format!(
                "it is {article} {} certificate; only leaves are renewed",
                record.profile
            ))
        })?;
        let name = match parsed.subject().iter_common_name().next() {
            Some(cn) => cn.as_str().ok().map(str::to_string),
            // A server certificate named by an IP address has an empty subject.
            None if info.subject.is_empty() => Some(info.name()).filter(|name| !name.is_empty()),
            None => None,
        }
        .ok_or_else(|| refuse("its subject has no common name".into()))?;
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
                return Err(PkiError::malformed(REUSED_KEY, "it is not the certificate's key").into());
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

    /// The default output prefix of `ca renew CERT` at `now`, for the CA in `dir` and the
    /// certificate's common name `name`: beside CERT, its name less `.pem` (or `.chain.pem`,
    /// `.crt`, `.der`), then `-renewed-YYYYMMDDTHHMMSSZ` (`www.pem` →
    /// `www-renewed-20301201T120000Z`), so the old files stay where they are. When that file
    /// name would start with `-` (CERT is `-`, standard input, or a name such as `-x.pem`), the
    /// name is made from `name` instead, as `ca issue` makes it ([`CertificateAuthority::output_prefix`]):
    /// `DIR/issued/<name>-renewed-…` for standard input, `<CERT's directory>/<name>-renewed-…`
    /// otherwise. A default file name never starts with `-`.
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `--out`) when no file name can be made from `name`.
    pub fn renewal_prefix(
        dir: &Path,
        certificate_path: &Path,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<PathBuf, CaError> {
        let utc = now.to_offset(time::UtcOffset::UTC);
        let stamp = format!(
            "-renewed-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        );
        let beside = certificate_path.file_name().and_then(|f| f.to_str()).and_then(|file| {
            let stem = [".chain.pem", ".pem", ".crt", ".der"]
                .iter()
                .find_map(|ending| file.strip_suffix(ending))
                .unwrap_or(file);
            (!stem.is_empty() && !stem.starts_with('-')).then(|| format!("{stem}{stamp}"))
        });
        let stdin = certificate_path == Path::new("-");
        match beside {
            Some(file) if !stdin => Ok(certificate_path.with_file_name(file)),
            _ => {
                let base = if stdin {
                    dir.join(super::authority::ISSUED)
                } else {
                    certificate_path.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                let file = super::issue::file_name_for(name).ok_or_else(|| {
                    CaError::invalid(
                        "--out",
                        format!("no file name can be made from the name \"{name}\"; give --out PREFIX"),
                    )
                })?;
                Ok(base.join(format!("{file}{stamp}")))
            }
        }
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
                    PkiError::malformed("the certificate", "it has an elliptic curve key Tessera does not issue")
                        .into(),
                ),
            }
        }
        _ if parsed.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => Ok(pki::KeyAlgorithm::Ed25519),
        _ => Err(PkiError::malformed("the certificate", "it has a key type Tessera does not issue").into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_default_prefix_sits_beside_the_old_certificate_and_never_starts_with_a_dash() {
        let now = datetime!(2030-12-01 12:00:05 UTC);
        let dir = Path::new("ca");
        for (cert, name, prefix) in [
            ("issued/www.pem", "www.test", "issued/www-renewed-20301201T120005Z"),
            ("www.chain.pem", "www.test", "www-renewed-20301201T120005Z"),
            ("www", "www.test", "www-renewed-20301201T120005Z"),
            ("-", "www.test", "ca/issued/www.test-renewed-20301201T120005Z"),
            ("d/-x.pem", "www.test", "d/www.test-renewed-20301201T120005Z"),
            ("-x.pem", "--a b", "a_b-renewed-20301201T120005Z"),
        ] {
            assert_eq!(
                CertificateAuthority::renewal_prefix(dir, Path::new(cert), name, now).unwrap(),
                PathBuf::from(prefix),
                "{cert}"
            );
        }
        assert!(CertificateAuthority::renewal_prefix(dir, Path::new("-"), "--", now).is_err());
    }
}
