//! Crash-safe file writes: nothing half-written is ever visible under the final name.
//!
//! Everything goes through [`AtomicFile`]: a temporary file in the target's directory, written,
//! fsynced, then renamed over the target (or hard-linked, to refuse overwriting), and the
//! directory fsynced.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Permission bits for files holding secrets.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Permission bits for public files (certificates, CRLs, the database).
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// Replaces `path` atomically with `bytes`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::create_with_mode(path, mode)?;
    file.write_all(bytes)?;
    file.commit(true)
}

/// Creates `path` with `bytes`, failing with `AlreadyExists` if it is there. The content appears
/// whole or not at all.
pub(crate) fn create_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if path.exists() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
    }
    let mut file = AtomicFile::create_with_mode(path, mode)?;
    file.write_all(bytes)?;
    file.commit(false)
}

/// A file being written under a temporary name in its target's directory. Dropped without
/// [`AtomicFile::commit`], the temporary file is removed and the target is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: File,
    done: bool,
}

impl AtomicFile {
    /// Starts writing what will become `target` (mode 0644).
    ///
    /// # Errors
    /// The I/O error creating the temporary file.
    pub fn create(target: &Path) -> io::Result<Self> {
        Self::create_with_mode(target, PUBLIC_MODE)
    }

    pub(crate) fn create_with_mode(target: &Path, mode: u32) -> io::Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
            .map_err(|_| io::Error::other("no randomness for a temporary file name"))?;
        let temp = parent_dir(target).join(format!(".{}.tmp-{}", name.to_string_lossy(), crate::pki::hex(&suffix)));
        let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        Ok(Self {
            target: target.to_path_buf(),
            temp,
            file,
            done: false,
        })
    }

    /// Flushes to disk and moves the file into place: replacing the target when `overwrite`,
    /// else failing with `AlreadyExists` if it is there. Then the directory is fsynced.
    ///
    /// # Errors
    /// The I/O error; the temporary file is then removed and the target untouched.
    pub fn commit(mut self, overwrite: bool) -> io::Result<()> {
        self.file.sync_all()?;
        if overwrite {
            std::fs::rename(&self.temp, &self.target)?;
        } else {
            let linked = std::fs::hard_link(&self.temp, &self.target);
            let _ = std::fs::remove_file(&self.temp);
            linked?;
        }
        self.done = true;
        sync_parent(&self.target)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_replace_and_no_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", PUBLIC_MODE).unwrap();
        write_atomic(&p, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let err = create_new_atomic(&p, b"three", PRIVATE_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let k = dir.path().join("k");
        create_new_atomic(&k, b"secret", PRIVATE_MODE).unwrap();
        assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
        // no temporary files are left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn nothing_appears_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"whole").unwrap();
        f.commit(false).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        let mut g = AtomicFile::create(&target).unwrap();
        g.write_all(b"again").unwrap();
        assert_eq!(g.commit(false).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
