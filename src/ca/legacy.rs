//! The JSON database (`db.json`) that CA directories held before the store: read once, to be
//! imported (see [`super::store::open`]). Crate-internal: nothing outside the crate can append a
//! record without issuing. [`write_legacy_database`] makes such a directory for tests (through
//! `tessera::internal`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CaError;
use super::record::Record;
use crate::fsutil;

/// The database file's name inside a CA directory.
pub(crate) const DATABASE_FILE: &str = "db.json";
const FORMAT_VERSION: u32 = 1;

/// The whole database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Database {
    version: u32,
    /// SHA-256 fingerprint (hex) of the certificate of the CA this database belongs to, so that
    /// another CA's `db.json` is not taken for this one's. Absent in databases written before it
    /// was recorded; filled in by the next change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_fingerprint: Option<String>,
    /// The number of the last CRL made from this database (0: none yet). Every change to a
    /// revocation advances it in the same atomic write, so `crl.pem` reflects the database
    /// exactly when its CRL number equals this one.
    pub(crate) crl_number: u64,
    /// Every certificate issued, in issuance order.
    pub(crate) records: Vec<Record>,
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
    pub(crate) fn load(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(DATABASE_FILE);
        Self::parse(&read(&path)?, &path)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self, CaError> {
        let damaged = |reason: String| CaError::Database {
            path: path.to_path_buf(),
            reason,
        };
        let db: Self = parse_json(bytes, path)?;
        check_version(db.version, path)?;
        // Serials as written: each must be in the form Tessera wrote (lowercase hex, even
        // length, no extra leading zeros), as the parsed `Serial` no longer shows another.
        let written: Written = parse_json(bytes, path)?;
        let mut seen = std::collections::HashSet::new();
        for (record, text) in db.records.iter().zip(written.records.iter().map(|r| &r.serial)) {
            let canonical = record.serial.to_string();
            if canonical != *text {
                return Err(damaged(format!("serial {text:?} is not in canonical form")));
            }
            if !seen.insert(&record.serial) {
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
    pub(crate) fn from_parts(ca_fingerprint: &str, crl_number: u64, records: Vec<Record>) -> Self {
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
    pub(crate) fn write_legacy(&self, dir: &Path) -> Result<(), CaError> {
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

    fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, CaError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| CaError::Database {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// The serials of a database as written (every other field ignored).
#[derive(Deserialize)]
struct Written {
    records: Vec<WrittenSerial>,
}

#[derive(Deserialize)]
struct WrittenSerial {
    serial: String,
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

/// Writes `DIR/db.json` with these records and CRL number, as a Tessera release before the
/// store did, for the CA whose certificate has this SHA-256 fingerprint (hex): for tests of the
/// one-time import. Tessera itself never writes db.json.
///
/// # Errors
/// I/O errors.
#[doc(hidden)]
pub fn write_legacy_database(
    dir: &Path,
    ca_fingerprint: &str,
    crl_number: u64,
    records: Vec<Record>,
) -> Result<(), CaError> {
    Database::from_parts(ca_fingerprint, crl_number, records).write_legacy(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_bad_serial_in_a_legacy_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"version":1,"crl_number":0,"records":[{"serial":"0a1g","subject":"CN=x","sans":[],
            "profile":"client","not_before":"2030-01-01T00:00:00Z","not_after":"2030-01-01T00:00:00Z",
            "issued_at":"2030-01-01T00:00:00Z","revoked":null,"certificate":""}]}"#;
        std::fs::write(dir.path().join(DATABASE_FILE), json).unwrap();
        let err = Database::load(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::Database { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("db.json") && text.contains("'g' is not a hex digit"),
            "{text}"
        );
    }

    #[test]
    fn a_serial_not_in_canonical_form_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (serial, refused) in [("0a1b", false), ("0A1B", true), ("a1b", true), ("000a1b", true)] {
            let json = format!(
                r#"{{"version":1,"crl_number":0,"records":[{{"serial":"{serial}","subject":"CN=x","sans":["dns:x.test"],
                "profile":"client","not_before":"2030-01-01T00:00:00Z","not_after":"2030-01-01T00:00:00Z",
                "issued_at":"2030-01-01T00:00:00Z","revoked":null,"certificate":""}}]}}"#
            );
            std::fs::write(dir.path().join(DATABASE_FILE), json).unwrap();
            match Database::load(dir.path()) {
                Ok(db) => {
                    assert!(!refused, "{serial}");
                    assert_eq!(db.records[0].serial.to_string(), serial);
                }
                Err(err) => {
                    assert!(refused, "{serial}: {err}");
                    assert!(err.to_string().contains("is not in canonical form"), "{err}");
                }
            }
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
