//! The `--json` output of the `ca` tool, in one place: each command's schema is the
//! serialisation of one type here (docs/ca.md points to this file). These are a stable contract:
//! fields are only ever added.
//!
//! | command | prints |
//! |---|---|
//! | `ca init --json`, `ca issue --json` | a [`Created`] object |
//! | `ca revoke --json` | a [`RevokeOutput`] object |
//! | `ca crl --json` | a [`CrlInfo`] object |
//! | `ca list --json` | an array of [`ListEntry`] objects, streamed (see [`ListEntry::to_json_item`]) |
//! | `ca show --json` | a [`CertificateInfo`] or [`CrlInfo`] object, or an array of them when the file holds several |
//! | `ca verify --json` | a [`VerifyOutput`] object |
//!
//! Times are RFC 3339 in UTC with whole seconds (`2030-01-31T12:00:00Z`), serials lowercase hex
//! (the form `ca revoke` takes), names of SANs `dns:…`, `ip:…`, `email:…`, `uri:…`.

use serde::Serialize;
use time::OffsetDateTime;

use super::{IssuedFiles, Record, Status};
use crate::pki::{CertificateInfo, CrlInfo, RevocationReason, Serial, SubjectAltName};

/// A time as every `--json` shows it: UTC, whole seconds (`2030-01-31T12:00:00Z`).
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

/// What `ca init --json` and `ca issue --json` print: the same shape for both.
#[derive(Debug, Serialize)]
pub struct Created<'a> {
    /// The new certificate's facts.
    pub certificate: &'a CertificateInfo,
    /// The files written (for `init`: `ca.pem`, `ca.key`, `chain.pem`).
    pub files: &'a IssuedFiles,
    /// True when the key file is encrypted.
    pub encrypted_key: bool,
    /// True when the default lifetime was shortened to end with the issuer's.
    pub clamped: bool,
}

/// What `ca revoke --json` prints.
#[derive(Debug, Serialize)]
pub struct RevokeOutput<'a> {
    /// The revoked certificate's serial.
    pub serial: &'a Serial,
    /// When it was revoked (the recorded time when it already was).
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Why (the recorded reason when it already was).
    pub reason: RevocationReason,
    /// True when it was revoked before and nothing changed.
    pub already_revoked: bool,
    /// The CA's current CRL, which lists it.
    pub crl: &'a CrlInfo,
}

/// One element of `ca list --json`'s array.
#[derive(Debug, Serialize)]
pub struct ListEntry<'a> {
    /// Serial number.
    pub serial: &'a Serial,
    /// Subject distinguished name (raw: `--json` output is not escaped).
    pub subject: &'a str,
    /// Subject alternative names.
    pub sans: &'a [SubjectAltName],
    /// `server`, `client`, `code-signing` or `intermediate`.
    pub profile: &'a str,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When the CA issued it.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// `valid`, `revoked` or `expired` at the time of listing.
    pub status: Status,
    /// When it was revoked, or `null`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked, or `null`.
    pub revocation_reason: Option<RevocationReason>,
}

impl<'a> ListEntry<'a> {
    /// The entry for `record`, its status taken at `now`.
    pub fn new(record: &'a Record, now: OffsetDateTime) -> Self {
        Self {
            serial: &record.serial,
            subject: &record.subject,
            sans: &record.sans,
            profile: &record.profile,
            not_before: whole_seconds(record.not_before),
            not_after: whole_seconds(record.not_after),
            issued_at: whole_seconds(record.issued_at),
            status: record.status(now),
            revoked_at: record.revoked.as_ref().map(|x| whole_seconds(x.at)),
            revocation_reason: record.revoked.as_ref().map(|x| x.reason),
        }
    }

    /// This entry as one element of the streamed array: pretty-printed, indented by two spaces,
    /// preceded by `,` unless it is the `first` (the array's `[` and `]` are lines of their own).
    ///
    /// # Errors
    /// A serialisation error (none is expected for these types).
    pub fn to_json_item(&self, first: bool) -> Result<String, serde_json::Error> {
        let text = serde_json::to_string_pretty(self)?;
        let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
        Ok(format!("{}{}", if first { "" } else { "," }, indented.join("\n")))
    }
}

/// What `ca verify --json` prints.
#[derive(Debug, Serialize)]
pub struct VerifyOutput {
    /// True when the chain is trusted for the usage at the time.
    pub trusted: bool,
    /// The usage checked (`server`, `client`, `code-signing`, `any`).
    pub usage: String,
    /// The DNS name or IP address checked, if any.
    pub name: Option<String>,
    /// The verification time.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Why it is not trusted, or `null`.
    pub reason: Option<String>,
    /// The verified path, end entity first, root last (empty when not trusted).
    pub path: Vec<PathEntry>,
}

/// One certificate of [`VerifyOutput::path`].
#[derive(Debug, Serialize)]
pub struct PathEntry {
    /// Subject distinguished name.
    pub subject: String,
    /// Serial number.
    pub serial: Serial,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use time::macros::datetime;

    use super::*;
    use crate::ca::Revocation;

    #[test]
    fn a_list_entry_keeps_its_documented_shape() {
        let record = Record {
            serial: "0a1b".parse().unwrap(),
            subject: "CN=a".into(),
            sans: vec![SubjectAltName::Dns("a.test".into())],
            profile: "server".into(),
            not_before: datetime!(2030-01-01 00:00:00.5 UTC),
            not_after: datetime!(2030-02-01 00:00:00 +01:00),
            issued_at: datetime!(2030-01-01 00:00:00 UTC),
            revoked: Some(Revocation {
                at: datetime!(2030-01-02 00:00:00 UTC),
                reason: RevocationReason::KeyCompromise,
            }),
            certificate: String::new(),
        };
        let entry = ListEntry::new(&record, datetime!(2030-01-03 00:00:00 UTC));
        let json: serde_json::Value = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "serial": "0a1b",
                "subject": "CN=a",
                "sans": ["dns:a.test"],
                "profile": "server",
                "not_before": "2030-01-01T00:00:00Z",
                "not_after": "2030-01-31T23:00:00Z",
                "issued_at": "2030-01-01T00:00:00Z",
                "status": "revoked",
                "revoked_at": "2030-01-02T00:00:00Z",
                "revocation_reason": "key-compromise",
            })
        );
        let item = entry.to_json_item(false).unwrap();
        assert!(item.starts_with(",  {\n    \"serial\": \"0a1b\""), "{item}");
    }
}
