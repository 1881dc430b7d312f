//! Records of issued certificates: what the store (see [`super::store`]) reads and writes.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::pki::{RevocationReason, Serial, SubjectAltName};

/// The state of an issued certificate at some time. Shown (and serialised) as `valid`,
/// `revoked` or `expired`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Within its validity period and not revoked.
    Valid,
    /// Revoked by the CA.
    Revoked,
    /// Past its notAfter.
    Expired,
}

impl Status {
    /// The name `ca list` shows and `--status` takes: `valid`, `revoked` or `expired`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A revocation: when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When the CA recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The RFC 5280 §5.3.1 reason (serialised by name, `key-compromise`, …).
    pub reason: RevocationReason,
}

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Serial number (serialised as lowercase hex).
    pub serial: Serial,
    /// Subject distinguished name.
    pub subject: String,
    /// Subject alternative names (serialised as `dns:…`, `ip:…`, …).
    pub sans: Vec<SubjectAltName>,
    /// `server`, `client`, `code-signing` or `intermediate`.
    pub profile: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When the CA issued it.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// Set once the certificate is revoked.
    pub revoked: Option<Revocation>,
    /// The certificate, PEM.
    pub certificate: String,
}

impl Record {
    /// The certificate's status at `now`.
    pub fn status(&self, now: OffsetDateTime) -> Status {
        if self.revoked.is_some() {
            Status::Revoked
        } else if self.not_after < now {
            Status::Expired
        } else {
            Status::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_show_as_list_prints_them() {
        for (status, name) in [
            (Status::Valid, "valid"),
            (Status::Revoked, "revoked"),
            (Status::Expired, "expired"),
        ] {
            assert_eq!(status.to_string(), name);
            assert_eq!(serde_json::to_value(status).unwrap(), name);
        }
    }
}
