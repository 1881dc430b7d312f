//! The issuance database: every certificate a CA hands out, and its revocation state.
//!
//! One JSON file (`db.json`) per CA directory, changed only under an exclusive lock on
//! `db.lock` and replaced atomically (temp file, fsync, rename, fsync directory), so concurrent
//! `ca issue` processes never lose an entry and a crash at any moment leaves either the old or
//! the new database, never a torn one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CaError;
use crate::fsutil;

/// The database file's name inside a CA directory.
pub const DATABASE_FILE: &str = "db.json";
const LOCK_FILE: &str = "db.lock";
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
    /// The number of the last CRL written (0: none yet).
    pub crl_number: u64,
    /// Every certificate issued, in issuance order.
    pub records: Vec<Record>,
}

impl Database {
    /// Reads the database of the CA in `dir` (an absent file is an empty database).
    ///
    /// # Errors
    /// [`CaError::Io`], or [`CaError::Database`] when the file does not parse.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(DATABASE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let db: Self = serde_json::from_slice(&bytes).map_err(|e| CaError::Database {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if db.version != FORMAT_VERSION {
                    return Err(CaError::Database {
                        path,
                        reason: format!("unsupported format version {}", db.version),
                    });
                }
                Ok(db)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                version: FORMAT_VERSION,
                ..Self::default()
            }),
            Err(e) => Err(CaError::io(path, e)),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), CaError> {
        let path = dir.join(DATABASE_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| CaError::Database {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        fsutil::write_atomic(&path, &bytes, fsutil::PUBLIC_MODE).map_err(|e| CaError::io(path, e))
    }

    /// Locks the database of the CA in `dir` (waiting for other processes) and loads it. Change
    /// it through the returned guard and [`LockedDatabase::commit`]; the lock is held until the
    /// guard is dropped, so work that must follow the commit (writing the CRL) stays serialised.
    ///
    /// # Errors
    /// [`CaError::Io`] or [`CaError::Database`].
    pub fn lock(dir: &Path) -> Result<LockedDatabase, CaError> {
        let lock = Lock::acquire(dir)?;
        let db = Self::load(dir)?;
        Ok(LockedDatabase {
            db,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Finds a record by serial (hex, case-insensitive, leading zeros and colons ignored).
    pub fn find(&self, serial: &str) -> Option<&Record> {
        let wanted = normalise_serial(serial);
        self.records.iter().find(|r| r.serial == wanted)
    }

    pub(crate) fn find_mut(&mut self, serial: &str) -> Option<&mut Record> {
        let wanted = normalise_serial(serial);
        self.records.iter_mut().find(|r| r.serial == wanted)
    }

    /// True if a certificate with this serial exists.
    pub fn contains(&self, serial: &str) -> bool {
        self.find(serial).is_some()
    }
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

/// A database loaded under the CA's exclusive lock.
pub struct LockedDatabase {
    /// The database; change it, then [`LockedDatabase::commit`].
    pub db: Database,
    dir: PathBuf,
    _lock: Lock,
}

impl LockedDatabase {
    /// Saves the database atomically. The lock stays held.
    ///
    /// # Errors
    /// [`CaError::Io`]; the file on disk is then unchanged.
    pub fn commit(&self) -> Result<(), CaError> {
        self.db.save(&self.dir)
    }
}

/// An exclusive advisory lock on the CA's `db.lock`, released on drop.
struct Lock {
    _file: File,
}

impl Lock {
    fn acquire(dir: &Path) -> Result<Self, CaError> {
        let path: PathBuf = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CaError::io(&path, e))?;
        file.lock().map_err(|e| CaError::io(&path, e))?;
        Ok(Self { _file: file })
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
            version: FORMAT_VERSION,
            crl_number: 0,
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
        };
        for typed in ["0a1b", "a1b", "0A:1B", "0x000a1b"] {
            assert!(db.contains(typed), "{typed}");
        }
        assert!(!db.contains("a1"));
    }

    #[test]
    fn a_stray_temp_file_does_not_damage_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut locked = Database::lock(dir.path()).unwrap();
        locked.db.crl_number = 7;
        locked.commit().unwrap();
        drop(locked);
        // What an interrupted write leaves behind: a partial temp file beside the database.
        std::fs::write(dir.path().join(".db.json.tmp-deadbeef"), b"{\"version\": 1, \"crl_num").unwrap();
        assert_eq!(Database::load(dir.path()).unwrap().crl_number, 7);
    }

    #[test]
    fn nothing_is_written_without_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut locked = Database::lock(dir.path()).unwrap();
        locked.db.crl_number = 9;
        drop(locked);
        assert!(!dir.path().join(DATABASE_FILE).exists());
    }
}
