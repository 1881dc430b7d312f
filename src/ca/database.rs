//! Records of issued certificates, and the JSON database of earlier Tessera releases.
//!
//! [`Record`], [`Revocation`] and [`Status`] are what the store (see [`super::store`]) reads
//! and writes. [`Database`] is the `db.json` that CA directories held before the store: it is
//! read once, to be imported (see [`super::store::open`]), and written only to make such a
//! directory in tests ([`Database::write_legacy`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CaError;
use crate::fsutil;

/// The database file's name inside a CA directory.
pub const DATABASE_FILE: &str = "db.json";
const FORMAT_VERSION: u32 = 1;

/// The state of an issued certificate at some time.
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

/// A revocation: when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When the CA recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The RFC 5280 reason, in words (`key-compromise`, …).
    pub reason: String,
}

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Subject distinguished name.
    pub subject: String,
    /// Subject alternative names (`dns:…`, `ip:…`, …).
    pub sans: Vec<String>,
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

/// The whole database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    version: u32,
    /// SHA-256 fingerprint (hex) of the certificate of the CA this database belongs to, so that
    /// another CA's `db.json` is not taken for this one's. Absent in databases written before it
    /// was recorded; filled in by the next change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_fingerprint: Option<String>,
    /// The number of the last CRL made from this database (0: none yet). Every change to a
    /// revocation advances it in the same atomic write, so `crl.pem` reflects the database
    /// exactly when its CRL number equals this one.
    pub crl_number: u64,
    /// Every certificate issued, in issuance order.
    pub records: Vec<Record>,
}

impl Database {
    /// An empty database for the CA whose certificate has this SHA-256 fingerprint (hex).
    pub(crate) fn new(ca_fingerprint: &str) -> Self {
        Self {
            version: FORMAT_VERSION,
            ca_fingerprint: Some(ca_fingerprint.to_string()),
            crl_number: 0,
            records: Vec::new(),
        }
    }

    /// Reads the database of the CA in `dir`.
    ///
    /// # Errors
    /// [`CaError::MissingDatabase`] when there is no `db.json` (every CA directory has one from
    /// `ca init` on), [`CaError::Database`] when it is empty, truncated or does not parse,
    /// [`CaError::Io`].
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(DATABASE_FILE);
        Self::parse(&read(&path)?, &path)
    }

    /// Reads the database of the CA in `dir` and checks that it is that CA's (the one whose
    /// certificate is `DIR/ca.pem`), as every command that uses a CA does.
    ///
    /// # Errors
    /// As [`Database::load`], [`CaError::NotACa`], and [`CaError::Database`] for another CA's
    /// database.
    pub fn load_checked(dir: &Path) -> Result<Self, CaError> {
        let fingerprint = ca_fingerprint(dir)?;
        let db = Self::load(dir)?;
        db.check_owner(dir, &fingerprint)?;
        Ok(db)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self, CaError> {
        let damaged = |reason: String| CaError::Database {
            path: path.to_path_buf(),
            reason,
        };
        let db: Self = parse_json(bytes, path)?;
        check_version(db.version, path)?;
        let mut seen = std::collections::HashSet::new();
        for record in &db.records {
            if normalise_serial(&record.serial) != record.serial {
                return Err(damaged(format!("serial {:?} is not in canonical form", record.serial)));
            }
            if !seen.insert(record.serial.as_str()) {
                return Err(damaged(format!("serial {} is recorded twice", record.serial)));
            }
            // Times are written to CRLs in UTC: each must have a UTC form.
            let times = [record.not_before, record.not_after, record.issued_at]
                .into_iter()
                .chain(record.revoked.as_ref().map(|r| r.at));
            for time in times {
                if time.checked_to_offset(time::UtcOffset::UTC).is_none() {
                    return Err(damaged(format!("certificate {} has an impossible time", record.serial)));
                }
            }
        }
        Ok(db)
    }

    /// A legacy database with these records, as an earlier Tessera wrote it.
    #[doc(hidden)]
    pub fn from_parts(ca_fingerprint: &str, crl_number: u64, records: Vec<Record>) -> Self {
        Self {
            crl_number,
            records,
            ..Self::new(ca_fingerprint)
        }
    }

    /// Writes this database as `DIR/db.json`, in the format of the releases before the store
    /// (to make such a CA directory in tests; Tessera itself never writes db.json).
    ///
    /// # Errors
    /// I/O errors.
    #[doc(hidden)]
    pub fn write_legacy(&self, dir: &Path) -> Result<(), CaError> {
        let path = dir.join(DATABASE_FILE);
        let bytes = self.to_bytes(&path)?;
        fsutil::write_atomic(&path, &bytes, fsutil::PRIVATE_MODE).map_err(|e| CaError::io(path, e))
    }

    /// Refuses a database that belongs to another CA (whose certificate has another
    /// fingerprint).
    pub(crate) fn check_owner(&self, dir: &Path, ca_fingerprint: &str) -> Result<(), CaError> {
        match &self.ca_fingerprint {
            Some(recorded) if !recorded.eq_ignore_ascii_case(ca_fingerprint) => Err(CaError::Database {
                path: dir.join(DATABASE_FILE),
                reason: format!(
                    "it belongs to another CA (certificate fingerprint {recorded}, but ca.pem has {ca_fingerprint})"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The serials of every revoked certificate.
    pub fn revoked_serials(&self) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .filter(|r| r.revoked.is_some())
            .map(|r| r.serial.as_str())
    }

    fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, CaError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| CaError::Database {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Finds a record by serial (hex, case-insensitive, leading zeros and colons ignored).
    pub fn find(&self, serial: &str) -> Option<&Record> {
        let wanted = normalise_serial(serial);
        self.records.iter().find(|r| r.serial == wanted)
    }

    /// True if a certificate with this serial exists.
    pub fn contains(&self, serial: &str) -> bool {
        self.find(serial).is_some()
    }
}

/// The database file's bytes; a missing file is [`CaError::MissingDatabase`].
fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CaError::MissingDatabase { path: path.into() }),
        Err(e) => Err(CaError::io(path, e)),
    }
}

/// Parses the database's JSON, saying whether it is empty, truncated or otherwise broken.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<T, CaError> {
    let damaged = |reason: String| CaError::Database {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(damaged("the file is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        damaged(if e.is_eof() {
            format!("the file is truncated ({e})")
        } else {
            format!("the file does not parse ({e})")
        })
    })
}

fn check_version(version: u32, path: &Path) -> Result<(), CaError> {
    if version == FORMAT_VERSION {
        return Ok(());
    }
    Err(CaError::Database {
        path: path.to_path_buf(),
        reason: format!(
            "unsupported format version {version} (this version of Tessera reads version {FORMAT_VERSION})"
        ),
    })
}

/// The SHA-256 fingerprint (hex) of the certificate of the CA in `dir`.
fn ca_fingerprint(dir: &Path) -> Result<String, CaError> {
    let (certificate, _) = super::read_ca_certificates(dir)?;
    Ok(crate::pki::CertificateInfo::from_der(&certificate)?.sha256_fingerprint)
}

/// Canonical form of a serial typed by a person: lowercase hex of the serial's octets without
/// leading zero octets (as `ca list` and `ca show` print it); `:`, `0x` and extra leading zeros
/// are ignored, so `0A1B`, `a1b` and `00:0a:1b` all name the serial `0a1b`.
pub fn normalise_serial(serial: &str) -> String {
    let digits: String = serial
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let significant = digits.trim_start_matches('0');
    match significant.len() {
        0 => "00".into(),
        n if n % 2 == 1 => format!("0{significant}"),
        _ => significant.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalised() {
        assert_eq!(normalise_serial("0x00:AB:cd"), "abcd");
        assert_eq!(normalise_serial("000"), "00");
        // A first octet below 0x10 prints with its leading zero, and is found either way.
        assert_eq!(normalise_serial("a1b"), "0a1b");
        assert_eq!(normalise_serial("0a1b"), "0a1b");
        assert_eq!(normalise_serial("00:0a:1b"), "0a1b");
    }

    #[test]
    fn a_serial_with_a_small_first_octet_is_found_however_it_is_typed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let db = Database {
            records: vec![Record {
                serial: "0a1b".into(),
                subject: "CN=x".into(),
                sans: vec![],
                profile: "client".into(),
                not_before: now,
                not_after: now,
                issued_at: now,
                revoked: None,
                certificate: String::new(),
            }],
            ..Database::new("00")
        };
        for typed in ["0a1b", "a1b", "0A:1B", "0x000a1b"] {
            assert!(db.contains(typed), "{typed}");
        }
        assert!(!db.contains("a1"));
    }

    #[test]
    fn a_missing_or_damaged_legacy_database_is_an_error_never_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Database::load(dir.path()),
            Err(CaError::MissingDatabase { .. })
        ));
        Database::new("00").write_legacy(dir.path()).unwrap();
        let whole = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty"),
            (b"\n  \n", "empty"),
            (&whole[..whole.len() / 2], "truncated"),
            (b"\x00\x01garbage", "does not parse"),
            (
                b"{\"version\": 2, \"crl_number\": 0, \"records\": []}",
                "unsupported format version 2",
            ),
        ];
        for (bytes, words) in cases {
            std::fs::write(dir.path().join(DATABASE_FILE), bytes).unwrap();
            let err = Database::load(dir.path()).unwrap_err();
            assert!(matches!(err, CaError::Database { .. }), "{err}");
            assert!(err.to_string().contains(words), "{err}");
        }
    }

    #[test]
    fn another_cas_database_is_refused() {
        let db = Database::new("aa");
        assert!(db.check_owner(Path::new("d"), "AA").is_ok());
        let err = db.check_owner(Path::new("d"), "bb").unwrap_err();
        assert!(err.to_string().contains("belongs to another CA"), "{err}");
        // Databases from before the fingerprint was recorded are adopted.
        let old: Database = serde_json::from_str(r#"{"version":1,"crl_number":3,"records":[]}"#).unwrap();
        assert!(old.check_owner(Path::new("d"), "bb").is_ok());
    }
}
