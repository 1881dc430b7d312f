//! Streaming output files that appear whole or not at all: written to a temporary file in the
//! target's directory, fsynced, then renamed into place (or linked, to refuse overwriting).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// A file being written under a temporary name. Dropped without [`AtomicFile::commit`], the
/// temporary file is removed and the target is untouched.
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
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
            .map_err(|_| io::Error::other("no randomness for a temporary file name"))?;
        let temp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), crate::pki::hex(&suffix)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(fsutil::PUBLIC_MODE)
            .open(&temp)?;
        Ok(Self {
            target: target.to_path_buf(),
            temp,
            file,
            done: false,
        })
    }

    /// Flushes to disk and moves the file into place: replacing the target when `overwrite`,
    /// else failing with `AlreadyExists` if it is there.
    ///
    /// # Errors
    /// The I/O error; the temporary file is then removed and the target untouched.
    pub fn commit(mut self, overwrite: bool) -> io::Result<()> {
        self.file.sync_all()?;
        if overwrite {
            std::fs::rename(&self.temp, &self.target)?;
        } else {
            std::fs::hard_link(&self.temp, &self.target)?;
            let _ = std::fs::remove_file(&self.temp);
        }
        self.done = true;
        fsutil::sync_parent(&self.target)
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

#[cfg(test)]
mod tests {
    use super::*;

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
