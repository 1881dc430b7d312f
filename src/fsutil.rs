//! Crash-safe file writes: nothing half-written is ever visible under the final name.
//!
//! Everything goes through [`AtomicFile`]: a temporary file in the target's directory, written,
//! fsynced, then renamed over the target (or hard-linked, to refuse overwriting), and the
//! directory fsynced.
//!
//! A temporary file is named `.<target name>.tmp-<pid>-<16 hex digits>`. A process killed while
//! writing leaves it behind; [`remove_stale_temporaries`] removes such leftovers (only names of
//! this exact shape, and only when the process that made them is gone or they are old), and the
//! CA calls it on its directories whenever it takes its lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
        let temp = parent_dir(target).join(format!(
            ".{}{TEMP_MARK}{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            crate::pki::hex(&suffix)
        ));
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
        self.place(overwrite)?;
        sync_parent(&self.target)
    }

    /// Moves the (already fsynced) temporary file into place, without syncing the directory.
    fn place(&mut self, overwrite: bool) -> io::Result<()> {
        if overwrite {
            std::fs::rename(&self.temp, &self.target)?;
        } else {
            let linked = std::fs::hard_link(&self.temp, &self.target);
            let _ = std::fs::remove_file(&self.temp);
            linked?;
        }
        self.done = true;
        Ok(())
    }
}

/// Creates several new files that belong together (a key and its certificate), refusing any
/// that exists. Every file is first written and fsynced under a temporary name; only then are
/// they linked into place, one right after the other, in the order given, and the directories
/// fsynced. So a crash leaves at most the first few of them, never a torn one, and the window
/// for even that is a few system calls: put the file whose presence means "complete" last.
/// On an error, the files already placed are removed again.
///
/// # Errors
/// The file concerned and the I/O error: `AlreadyExists` when a target is there (nothing is then
/// created).
pub(crate) fn create_new_group(files: &[(&Path, &[u8], u32)]) -> Result<(), (PathBuf, io::Error)> {
    if let Some((path, _, _)) = files.iter().find(|(path, _, _)| path.symlink_metadata().is_ok()) {
        return Err((path.to_path_buf(), io::Error::from(io::ErrorKind::AlreadyExists)));
    }
    let mut pending = Vec::with_capacity(files.len());
    for (path, bytes, mode) in files {
        let at = |e| (path.to_path_buf(), e);
        let mut file = AtomicFile::create_with_mode(path, *mode).map_err(at)?;
        file.write_all(bytes).map_err(at)?;
        file.file.sync_all().map_err(at)?;
        pending.push(file);
    }
    let mut placed: Vec<PathBuf> = Vec::with_capacity(files.len());
    for file in &mut pending {
        if let Err(e) = file.place(false) {
            for path in &placed {
                let _ = std::fs::remove_file(path);
            }
            return Err((file.target.clone(), e));
        }
        placed.push(file.target.clone());
    }
    let mut synced: Vec<&Path> = Vec::new();
    for path in &placed {
        let dir = parent_dir(path);
        if !synced.contains(&dir) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| (dir.to_path_buf(), e))?;
            synced.push(dir);
        }
    }
    Ok(())
}

/// What marks a temporary file name: `.<target>` + this + `<pid>-<hex>`.
const TEMP_MARK: &str = ".tmp-";

/// A temporary file whose process may still be alive is left alone for this long.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Removes the temporary files that interrupted writes left in `dir`: regular files named
/// `.<name>.tmp-<pid>-<16 hex>` (or `.<name>.tmp-<16 hex>`, as older versions named them) whose
/// process is gone, or which have not been touched for [`STALE_AFTER`]. Nothing else is
/// touched, and a file of a live writer is never removed (unless it is older than that, which no
/// write of a CA file takes). Returns how many were removed. A missing `dir` is not an error.
///
/// # Errors
/// The I/O error reading `dir`; files that cannot be removed are skipped.
pub(crate) fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(temporary_owner) else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= STALE_AFTER);
        let orphaned = match owner {
            Some(pid) => pid != std::process::id() && !process_alive(pid),
            None => false,
        };
        if (old || orphaned) && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(path = %entry.path().display(), "removed a temporary file left by an interrupted write");
            removed += 1;
        }
    }
    Ok(removed)
}

/// For a temporary file name of ours, `Some(Some(pid))` (or `Some(None)` for the older,
/// PID-less form); `None` for any other name.
fn temporary_owner(name: &str) -> Option<Option<u32>> {
    let rest = name.strip_prefix('.')?;
    let at = rest.rfind(TEMP_MARK)?;
    if at == 0 {
        return None;
    }
    let tail = rest.get(at + TEMP_MARK.len()..)?;
    let is_hex16 = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match tail.split_once('-') {
        Some((pid, random)) if is_hex16(random) && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
            pid.parse().ok().map(Some)
        }
        None if is_hex16(tail) => Some(None),
        _ => None,
    }
}

/// Whether process `pid` is running, as far as `/proc` tells (a zombie is not running). Without
/// a `/proc`, every process counts as alive, so only age makes a temporary file stale.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        // `pid (comm) S …`: the state follows the last ')'.
        Ok(stat) => !matches!(
            stat.rfind(')')
                .and_then(|i| stat.get(i + 1..))
                .map(str::trim_start)
                .and_then(|s| s.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
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
    fn only_our_temporaries_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let live = std::process::id();
        // A PID that cannot be running: beyond the kernel's pid_max.
        let dead = 4_194_305u32;
        let names = [
            format!(".db.json.tmp-{dead}-0123456789abcdef"),
            format!(".x.pem.tmp-{live}-0123456789abcdef"),
            ".db.json.tmp-0123456789abcdef".to_string(),
            format!(".db.json.tmp-{dead}-0123456789ABCDEF"),
            format!("db.json.tmp-{dead}-0123456789abcdef"),
            format!(".tmp-{dead}-0123456789abcdef"),
            "notes.txt".to_string(),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(format!(".d.tmp-{dead}-0123456789abcdef"))).unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(!dir.path().join(&names[0]).exists());
        for name in &names[1..] {
            assert!(dir.path().join(name).exists(), "{name} must stay");
        }
        // An old PID-less one goes once it is old enough.
        let old = std::fs::File::options()
            .write(true)
            .open(dir.path().join(&names[2]))
            .unwrap();
        old.set_modified(SystemTime::now() - STALE_AFTER - Duration::from_secs(1))
            .unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(!dir.path().join(&names[2]).exists());
        assert_eq!(remove_stale_temporaries(&dir.path().join("absent")).unwrap(), 0);
    }

    #[test]
    fn a_group_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.key"), dir.path().join("a.pem"));
        create_new_group(&[(&a, b"key", PRIVATE_MODE), (&b, b"cert", PUBLIC_MODE)]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"key");
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&b).unwrap(), b"cert");
        // One target exists: nothing is created, nothing is changed.
        let c = dir.path().join("c.key");
        let (path, err) = create_new_group(&[(&c, b"k2", PRIVATE_MODE), (&b, b"c2", PUBLIC_MODE)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(path, b);
        assert!(!c.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"cert");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn temporary_names_carry_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&dir.path().join("out.pem")).unwrap();
        let name = f.temp.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(temporary_owner(&name), Some(Some(std::process::id())), "{name}");
        assert_eq!(temporary_owner("out.pem"), None);
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
