//! Crash-safe file writes: nothing half-written is ever visible under the final name.
//!
//! Everything goes through [`AtomicFile`]: a temporary file in the target's directory, written,
//! fsynced, then renamed over the target (or hard-linked, to refuse overwriting), and the
//! directory fsynced.
//!
//! What an existing target is decides how it is replaced (following symbolic links):
//! - a regular file, or nothing: replaced atomically as above;
//! - a symbolic link to a regular file (or a dangling one): the file it points to is replaced
//!   atomically (the temporary file is made in the resolved file's directory and renamed onto
//!   the resolved path); the link itself stays a link;
//! - a FIFO, character or block device, socket, or `/dev/fd/N` pipe: written through directly
//!   (opened for writing, neither created nor truncated nor renamed). Atomicity does not apply
//!   to such targets: a reader may see part of the output if the write fails;
//! - a directory: an error (`IsADirectory`).
//!
//! Files created new ([`create_new_atomic`], [`create_new_group`]: keys, certificates) never
//! follow a link nor write into anything that exists.
//!
//! A temporary file is named `.<target name>.tmp-<pid>-<16 hex digits>`. A process killed while
//! writing leaves it behind; [`remove_stale_temporaries`] removes such leftovers (only names of
//! this exact shape, and only when the process that made them is gone or they are old), and the
//! CA calls it on its directories whenever it takes its lock; [`remove_stale_temporaries_of`]
//! does the same for one file's leftovers (a session ticket key file, under [`lock_dir_of`]),
//! and every replacement ([`AtomicFile::create`], [`write_atomic`]) first removes its own
//! target's stale leftovers, so repeated interrupted writes of one file never pile up. A process
//! ended by SIGINT, SIGTERM, SIGHUP, SIGQUIT or SIGXFSZ removes its temporary files at once when
//! its binary asked for it (`cli::remove_temporaries_on_signal`, which calls
//! [`remove_temporaries_in_progress`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The temporary files this process is writing (made and not yet placed or removed), for
/// [`remove_temporaries_in_progress`].
static IN_PROGRESS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn track(temp: &Path) {
    if let Ok(mut list) = IN_PROGRESS.lock() {
        list.push(temp.to_path_buf());
    }
}

fn untrack(temp: &Path) {
    if let Ok(mut list) = IN_PROGRESS.lock() {
        list.retain(|p| p != temp);
    }
}

/// Removes the temporary files this process is writing right now, so that a process about to
/// end on a signal leaves none behind (the targets are untouched: nothing half-written ever
/// has their names). Afterwards a write still under way fails. Returns how many were removed.
pub(crate) fn remove_temporaries_in_progress() -> usize {
    let list = match IN_PROGRESS.lock() {
        Ok(list) => list.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    list.iter().filter(|temp| std::fs::remove_file(temp).is_ok()).count()
}

/// The largest file this process may write (its soft `RLIMIT_FSIZE`, `ulimit -f`), as
/// `/proc/self/limits` says; `None` when unlimited or unknown.
pub(crate) fn file_size_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max file size"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// Permission bits for files holding secrets.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Permission bits for public files (certificates, CRLs).
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
    if path.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
    }
    let mut file = AtomicFile::create_new_with_mode(path, mode)?;
    file.write_all(bytes)?;
    file.commit(false)
}

/// A file being written under a temporary name in its target's directory. Dropped without
/// [`AtomicFile::commit`], the temporary file is removed and the target is untouched.
///
/// When the target (after following symbolic links) is a FIFO, a device, a socket or a pipe, it
/// is written through directly and nothing is atomic; see the module documentation.
#[derive(Debug)]
pub struct AtomicFile {
    /// Where the file goes: the path given, or what its symbolic links resolve to.
    target: PathBuf,
    /// The temporary file; `None` when writing straight into a non-regular target.
    temp: Option<PathBuf>,
    /// Files SQLite may make beside the temporary one (see [`AtomicFile::with_sqlite_companions`]).
    companions: Vec<PathBuf>,
    file: File,
    done: bool,
}

/// What an output path is, following symbolic links.
enum Target {
    /// A regular file or nothing: replace (or create) this path atomically.
    Replace(PathBuf),
    /// A FIFO, device, socket or pipe: write into it.
    Direct,
}

/// Classifies an output path (see the module documentation).
fn classify(target: &Path) -> io::Result<Target> {
    match std::fs::metadata(target) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory; give a file name",
        )),
        Ok(meta) if meta.is_file() => Ok(Target::Replace(resolve_links(target)?)),
        Ok(_) => Ok(Target::Direct),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match dangling_target(target) {
            Some(resolved) => Ok(Target::Replace(resolved)),
            None if target.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "is a symbolic link that cannot be resolved",
            )),
            None => Ok(Target::Replace(target.to_path_buf())),
        },
        Err(e) => Err(e),
    }
}

/// `path` with every symbolic link in its last component followed (the directories are left as
/// given when the path is not a link: a rename in them is what the caller asked for).
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    if !path.symlink_metadata()?.file_type().is_symlink() {
        return Ok(path.to_path_buf());
    }
    std::fs::canonicalize(path)
}

impl AtomicFile {
    /// Starts writing what will become `target` (mode 0644).
    ///
    /// # Errors
    /// The I/O error creating the temporary file.
    pub fn create(target: &Path) -> io::Result<Self> {
        Self::create_with_mode(target, PUBLIC_MODE)
    }

    /// Starts replacing `target` (see the module documentation for links, FIFOs and devices);
    /// a new file gets `mode`.
    pub(crate) fn create_with_mode(target: &Path, mode: u32) -> io::Result<Self> {
        match classify(target)? {
            Target::Replace(resolved) => {
                // What a killed earlier write of this target left (its process gone): removed
                // first. Only here, where a file is replaced: files created new (a CA's issued
                // certificates, in a directory that grows) are not worth a directory scan each.
                let _ = remove_stale_temporaries_of(&resolved);
                Self::create_new_with_mode(&resolved, mode)
            }
            Target::Direct => {
                let file = OpenOptions::new().write(true).open(target)?;
                Ok(Self {
                    target: target.to_path_buf(),
                    temp: None,
                    companions: Vec::new(),
                    file,
                    done: false,
                })
            }
        }
    }

    /// Starts writing the new file `target`, which must not exist (nor be a link, dangling or
    /// not): a temporary file in its directory, created with exactly `mode` (`create_new`, so
    /// never readable by anyone else for a moment when `mode` is 0600, whatever the umask),
    /// that [`AtomicFile::commit`]`(false)` links into place. What killed earlier writes of
    /// `target` left is removed first (for files written now and then, such as a backup; a CA
    /// issuing into a growing directory uses [`create_new_atomic`], which does not scan it).
    ///
    /// # Errors
    /// `AlreadyExists` when `target` is there; the I/O error creating the temporary file.
    pub(crate) fn create_new(target: &Path, mode: u32) -> io::Result<Self> {
        if target.symlink_metadata().is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let _ = remove_stale_temporaries_of(target);
        Self::create_new_with_mode(target, mode)
    }

    /// Makes the files SQLite keeps beside a database (`-journal`, `-wal`, `-shm`) part of the
    /// temporary file: removed with it when the write fails, is dropped, or a signal ends the
    /// process (their names are the temporary file's own, so nothing else has them). For a
    /// temporary file that SQLite writes, such as `ca backup`'s copy.
    #[must_use]
    pub(crate) fn with_sqlite_companions(mut self) -> Self {
        if let Some(temp) = &self.temp {
            for companion in sqlite_companions(temp) {
                track(&companion);
                self.companions.push(companion);
            }
        }
        self
    }

    /// The temporary file's path (`None` when writing straight into a FIFO or device), for a
    /// writer that opens it by name (SQLite's `VACUUM INTO`).
    pub(crate) fn temporary_path(&self) -> Option<&Path> {
        self.temp.as_deref()
    }

    /// Starts writing a temporary file for exactly `target` (no link followed).
    fn create_new_with_mode(target: &Path, mode: u32) -> io::Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
            .map_err(|_| io::Error::other("no randomness for a temporary file name"))?;
        let temp = parent_dir(target).join(format!(
            ".{}{TEMP_MARK}{}-{:016x}",
            name.to_string_lossy(),
            std::process::id(),
            u64::from_be_bytes(suffix)
        ));
        let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        track(&temp);
        // Exactly `mode`, whatever the umask (0644 stays 0644 under umask 077; 0600 under 000).
        let chmod = {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
        };
        if let Err(e) = chmod {
            let _ = std::fs::remove_file(&temp);
            untrack(&temp);
            return Err(e);
        }
        Ok(Self {
            target: target.to_path_buf(),
            temp: Some(temp),
            companions: Vec::new(),
            file,
            done: false,
        })
    }

    /// Flushes to disk and moves the file into place: replacing the target when `overwrite`,
    /// else failing with `AlreadyExists` if it is there. Then the directory is fsynced.
    ///
    /// # Errors
    /// The I/O error; the temporary file is then removed and the target untouched.
    /// Written straight into a FIFO, device or pipe, there is nothing to move: the data is
    /// flushed (and `overwrite == false` fails with `AlreadyExists`, as the target existed).
    pub fn commit(mut self, overwrite: bool) -> io::Result<()> {
        if self.temp.is_none() {
            self.done = true;
            self.file.flush()?;
            if !overwrite {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            return Ok(());
        }
        self.file.sync_all()?;
        self.place(overwrite)?;
        sync_parent(&self.target)
    }

    /// Moves the (already fsynced) temporary file into place, without syncing the directory.
    fn place(&mut self, overwrite: bool) -> io::Result<()> {
        let Some(temp) = &self.temp else {
            self.done = true;
            return Ok(());
        };
        let placed = if overwrite {
            std::fs::rename(temp, &self.target)
        } else {
            let linked = std::fs::hard_link(temp, &self.target);
            let _ = std::fs::remove_file(temp);
            linked
        };
        if placed.is_ok() {
            untrack(temp);
            for companion in &self.companions {
                untrack(companion);
            }
            self.done = true;
        }
        placed
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
        let mut file = AtomicFile::create_new_with_mode(path, *mode).map_err(at)?;
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

/// What SQLite adds to a database's name for the files it keeps beside it.
const SQLITE_COMPANIONS: [&str; 3] = ["-journal", "-wal", "-shm"];

/// The files SQLite may keep beside the database `path`: `path-journal`, `path-wal`,
/// `path-shm`.
pub(crate) fn sqlite_companions(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    SQLITE_COMPANIONS.iter().map(move |suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// A temporary file whose process may still be alive is left alone for this long.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Removes the temporary files that interrupted writes left in `dir`: regular files named
/// `.<name>.tmp-<pid>-<16 hex>` (or `.<name>.tmp-<16 hex>`, as older versions named them; either
/// followed by `-journal`, `-wal` or `-shm`, SQLite's files beside a temporary database) whose
/// process is gone, or which have not been touched for [`STALE_AFTER`]. Nothing else is
/// touched, and a file of a live writer is never removed (unless it is older than that, which no
/// write of a CA file takes). Returns how many were removed. A missing `dir` is not an error.
///
/// # Errors
/// The I/O error reading `dir`; files that cannot be removed are skipped.
pub(crate) fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    remove_stale(dir, None)
}

/// [`remove_stale_temporaries`] for the temporary files of one target only: those named
/// `.<file name of target>.tmp-…` in the directory where a write of `target` makes them (the
/// directory of the file a symbolic link `target` points to).
///
/// # Errors
/// The I/O error reading the directory.
pub(crate) fn remove_stale_temporaries_of(target: &Path) -> io::Result<usize> {
    let target = written_path(target);
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let prefix = format!(".{}{TEMP_MARK}", name.to_string_lossy());
    remove_stale(parent_dir(&target), Some(&prefix))
}

/// An exclusive `flock` on a directory itself (no lock file of ours): held until the returned
/// [`File`] is dropped; waits while another process (or another open of the directory) holds
/// it. Serialises read-modify-write cycles of the files in `dir` between processes that all
/// take it (the CA on its directory, `echo-server --new-ticket-key` on the key file's).
///
/// # Errors
/// The I/O error opening or locking `dir`.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    let file = File::open(dir)?;
    file.lock()?;
    Ok(file)
}

/// [`lock_dir`] on the directory where a write of `target` happens (that of the file a
/// symbolic link `target` points to), for a read-modify-write of `target`.
///
/// # Errors
/// As [`lock_dir`].
pub(crate) fn lock_dir_of(target: &Path) -> io::Result<File> {
    lock_dir(parent_dir(&written_path(target)))
}

/// The path a write of `target` replaces: `target`, or the file a symbolic link `target`
/// points to (as [`AtomicFile`] resolves it).
fn written_path(target: &Path) -> PathBuf {
    resolve_links(target).unwrap_or_else(|_| target.to_path_buf())
}

/// Removes the stale temporary files in `dir`, only those whose name starts with `prefix` when
/// one is given.
fn remove_stale(dir: &Path, prefix: Option<&str>) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .filter(|name| prefix.is_none_or(|prefix| name.starts_with(prefix)))
            .and_then(temporary_owner)
        else {
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
    // A temporary SQLite database's companions are as much ours as the database.
    let tail = SQLITE_COMPANIONS
        .iter()
        .find_map(|suffix| tail.strip_suffix(suffix))
        .unwrap_or(tail);
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
        if !self.done
            && let Some(temp) = &self.temp
        {
            let _ = std::fs::remove_file(temp);
            untrack(temp);
            for companion in &self.companions {
                let _ = std::fs::remove_file(companion);
                untrack(companion);
            }
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

/// One file a command reads or writes: the path as the user gave it, and what the command calls
/// it in messages (`"the module (FILE)"`, `"--extract"`). The path `-` stands for standard input
/// (among inputs) or standard output (among outputs).
#[derive(Clone, Copy, Debug)]
pub struct FileArg<'a> {
    /// How messages name it: a flag or a short description.
    pub role: &'a str,
    /// The path as given.
    pub path: &'a Path,
}

impl<'a> FileArg<'a> {
    /// A file named `role` in messages.
    pub fn new(role: &'a str, path: &'a Path) -> Self {
        Self { role, path }
    }
}

/// An output that is the same file as an input: writing it would destroy the input.
///
/// Shown as `the output (-o) m.bin is the same file as the module m.bin; refusing to overwrite
/// an input`; `-` is shown as `standard output` or `standard input`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is the same file as {}; refusing to overwrite an input",
    describe(output_role, output, "standard output"),
    describe(input_role, input, "standard input")
)]
#[non_exhaustive]
pub struct SameFileError {
    /// What the command calls the output.
    pub output_role: String,
    /// The output path as given.
    pub output: PathBuf,
    /// What the command calls the input.
    pub input_role: String,
    /// The input path as given.
    pub input: PathBuf,
}

fn describe(role: &str, path: &Path, stdio: &str) -> String {
    if is_stdio(path) {
        stdio.to_string()
    } else {
        format!("{role} {}", path.display())
    }
}

#[cfg(feature = "cli")]
impl From<SameFileError> for crate::cli::CliError {
    fn from(error: SameFileError) -> Self {
        Self::usage(error.to_string()).with_hint("write the output to another path; the input was left as it is")
    }
}

/// Refuses a command whose output would be one of its inputs: what binaries call before
/// anything is read or written. As [`find_same_file`], as a usage error (exit 2) with a hint.
///
/// # Errors
/// A [`crate::cli::CliError`] (exit 2) naming both paths.
#[cfg(feature = "cli")]
pub fn ensure_distinct(inputs: &[FileArg<'_>], outputs: &[FileArg<'_>]) -> Result<(), crate::cli::CliError> {
    Ok(find_same_file(inputs, outputs)?)
}

/// Finds an output that would be one of the inputs.
///
/// An output and an input are the same file when both exist and have the same device and inode
/// (whatever the path: `./m`, an absolute path, a symbolic link, a hard link), when `-` output
/// (standard output) is redirected to an input file, when `-` input (standard input) is
/// redirected from an output file, or when the output is a dangling symbolic link that resolves
/// to an input's path (writing through it would create the input). Only regular-file inputs are
/// compared: reading `/dev/null` or a pipe and writing there loses nothing.
///
/// # Errors
/// [`SameFileError`] naming the first output and input that coincide.
pub fn find_same_file(inputs: &[FileArg<'_>], outputs: &[FileArg<'_>]) -> Result<(), SameFileError> {
    let inputs: Vec<(FileArg<'_>, Option<FileId>, Option<PathBuf>)> = inputs
        .iter()
        .map(|arg| {
            let id = if is_stdio(arg.path) {
                stdio_id(Stdio::In)
            } else {
                regular_file_id(arg.path)
            };
            let location = (!is_stdio(arg.path)).then(|| resolved_location(arg.path)).flatten();
            (*arg, id, location)
        })
        .collect();
    for output in outputs {
        let (id, dangling) = if is_stdio(output.path) {
            (stdio_id(Stdio::Out), None)
        } else {
            match std::fs::metadata(output.path) {
                Ok(meta) => (Some(FileId::of(&meta)), None),
                Err(_) => (None, dangling_target(output.path)),
            }
        };
        for (input, input_id, input_location) in &inputs {
            let same_inode = id.is_some() && id == *input_id;
            let through_dangling_link = dangling.is_some() && dangling == *input_location;
            if same_inode || through_dangling_link {
                return Err(SameFileError {
                    output_role: output.role.to_string(),
                    output: output.path.to_path_buf(),
                    input_role: input.role.to_string(),
                    input: input.path.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

/// A file's identity: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

enum Stdio {
    In,
    Out,
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The identity of a regular file at `path` (following symbolic links); `None` for anything
/// else or nothing at all.
fn regular_file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| FileId::of(&m))
}

/// Whether `path` names the very file, pipe or terminal that standard output is (`/dev/stdout`,
/// `/dev/fd/1`, or a path to the file stdout is redirected to): the same device and inode,
/// whatever its type. A tool that writes its data to such a path prints its own status lines to
/// standard error instead, so that they do not end up inside the data.
#[must_use]
pub fn is_standard_output(path: &Path) -> bool {
    use std::os::fd::AsFd;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    File::from(fd)
        .metadata()
        .is_ok_and(|out| FileId::of(&out) == FileId::of(&meta))
}

/// The identity of the regular file behind standard input or output, if it is one.
fn stdio_id(which: Stdio) -> Option<FileId> {
    use std::os::fd::AsFd;
    let fd = match which {
        Stdio::In => std::io::stdin().as_fd().try_clone_to_owned(),
        Stdio::Out => std::io::stdout().as_fd().try_clone_to_owned(),
    }
    .ok()?;
    File::from(fd)
        .metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| FileId::of(&m))
}

/// Where a path points: its canonical form when it exists, else its canonical directory joined
/// with its file name.
fn resolved_location(path: &Path) -> Option<PathBuf> {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return Some(canonical);
    }
    let absolute = std::path::absolute(path).ok()?;
    let name = absolute.file_name()?;
    let dir = std::fs::canonicalize(parent_dir(&absolute)).ok()?;
    Some(dir.join(name))
}

/// For a dangling symbolic link, the path that writing through it would create; `None` for
/// anything else (including a link loop).
fn dangling_target(path: &Path) -> Option<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut current = std::path::absolute(path).ok()?;
    let mut followed = false;
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).ok()?;
                current = parent_dir(&current).join(target);
                followed = true;
            }
            Ok(_) => return None,
            Err(_) => return if followed { resolved_location(&current) } else { None },
        }
    }
    None
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

    /// `create_new` refuses what exists, makes its temporary file 0600 (never more, whatever
    /// the umask), sweeps a killed write's leftovers of the same target (SQLite's companions
    /// included), and takes the SQLite companions with the temporary file when dropped.
    #[test]
    fn create_new_is_private_sweeps_leftovers_and_takes_sqlite_companions_along() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ca.db.bak");
        std::fs::write(&target, b"x").unwrap();
        let err = AtomicFile::create_new(&target, PRIVATE_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&target).unwrap();
        std::os::unix::fs::symlink("nowhere", &target).unwrap();
        let err = AtomicFile::create_new(&target, PRIVATE_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_file(&target).unwrap();

        let dead = 4_194_305u32;
        let leftovers: Vec<PathBuf> = ["", "-journal", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                dir.path()
                    .join(format!(".ca.db.bak.tmp-{dead}-0123456789abcdef{suffix}"))
            })
            .collect();
        let other = dir.path().join(format!(".ca.db.bak.tmp-{dead}-0123456789abcdef-other"));
        for path in leftovers.iter().chain([&other]) {
            std::fs::write(path, b"x").unwrap();
        }
        let f = AtomicFile::create_new(&target, PRIVATE_MODE)
            .unwrap()
            .with_sqlite_companions();
        for path in &leftovers {
            assert!(!path.exists(), "{} was not swept", path.display());
        }
        assert!(other.exists(), "not a name of ours");
        let temp = f.temporary_path().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&temp).unwrap().permissions().mode() & 0o777, 0o600);
        let companions: Vec<PathBuf> = ["-journal", "-wal", "-shm"]
            .iter()
            .map(|suffix| PathBuf::from(format!("{}{suffix}", temp.display())))
            .collect();
        for path in &companions {
            std::fs::write(path, b"x").unwrap();
        }
        drop(f);
        assert!(!temp.exists());
        for path in &companions {
            assert!(!path.exists(), "{} stayed", path.display());
        }
        assert!(!target.exists());
        // Committed, it is linked into place with its mode.
        let mut f = AtomicFile::create_new(&target, PRIVATE_MODE).unwrap();
        f.write_all(b"copy").unwrap();
        f.commit(false).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
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
        let name = f
            .temp
            .as_ref()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(temporary_owner(&name), Some(Some(std::process::id())), "{name}");
        assert_eq!(temporary_owner("out.pem"), None);
    }

    #[test]
    fn a_private_temporary_is_0600_from_its_creation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("tickets.keys");
        let mut f = AtomicFile::create_with_mode(&target, PRIVATE_MODE).unwrap();
        f.write_all(b"secret").unwrap();
        let temp = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap();
        assert!(temp.file_name().to_string_lossy().starts_with(".tickets.keys.tmp-"));
        assert_eq!(temp.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        f.commit(true).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_sweep_of_one_target_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.keys");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let ours = dir.path().join(format!(".a.keys.tmp-{dead}-00000000000000aa"));
        let other = dir.path().join(format!(".b.keys.tmp-{dead}-00000000000000aa"));
        let prefix_only = dir.path().join(format!(".a.keys.more.tmp-{dead}-00000000000000aa"));
        for path in [&ours, &other, &prefix_only] {
            std::fs::write(path, b"k").unwrap();
        }
        assert_eq!(remove_stale_temporaries_of(&target).unwrap(), 1);
        assert!(!ours.exists() && other.exists() && prefix_only.exists());
    }

    #[test]
    fn a_directory_lock_excludes_another_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir_of(&dir.path().join("tickets.keys")).unwrap();
        let other = File::open(dir.path()).unwrap();
        assert!(other.try_lock().is_err(), "a second lock was granted");
        drop(held);
        other.try_lock().unwrap();
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

    fn check(inputs: &[&Path], output: &Path) -> Result<(), SameFileError> {
        let inputs: Vec<FileArg<'_>> = inputs.iter().map(|p| FileArg::new("the input", p)).collect();
        find_same_file(&inputs, &[FileArg::new("the output", output)])
    }

    #[test]
    fn same_file_by_any_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("m.bin");
        std::fs::write(&input, b"module").unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"other").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("m.bin", &link).unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&input, &hard).unwrap();
        let dotted = dir.path().join(".").join("m.bin");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let roundabout = sub.join("..").join("m.bin");
        let link_dir = dir.path().join("linkdir");
        std::os::unix::fs::symlink(dir.path(), &link_dir).unwrap();
        let through_dir = link_dir.join("m.bin");
        for output in [&input, &link, &hard, &dotted, &roundabout, &through_dir] {
            let err = check(&[&other, &input], output).unwrap_err();
            assert_eq!(err.output, *output);
            assert_eq!(err.input, input);
            assert_eq!(
                err.to_string(),
                format!(
                    "the output {} is the same file as the input {}; refusing to overwrite an input",
                    output.display(),
                    input.display()
                )
            );
        }
        // The input given through a link is found the same way.
        assert_eq!(check(&[&link], &input).unwrap_err().input, link);
        assert_eq!(check(&[&hard], &input).unwrap_err().input, hard);
        // Distinct files, and outputs that do not exist yet, pass.
        check(&[&input], &other).unwrap();
        check(&[&input], &dir.path().join("new.sig")).unwrap();
        // A missing input cannot be destroyed.
        check(&[&dir.path().join("missing")], &other).unwrap();
        assert_eq!(std::fs::read(&input).unwrap(), b"module");
    }

    #[test]
    fn dangling_links_to_an_input_path_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("later.pem");
        let link = dir.path().join("out");
        std::os::unix::fs::symlink("later.pem", &link).unwrap();
        // Writing through `out` would create `later.pem`, the input path.
        let err = check(&[&input], &link).unwrap_err();
        assert_eq!(
            (err.output.as_path(), err.input.as_path()),
            (link.as_path(), input.as_path())
        );
        // A chain of links, relative to each link's own directory.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let chained = sub.join("chained");
        std::os::unix::fs::symlink("../out", &chained).unwrap();
        assert!(check(&[&input], &chained).is_err());
        // A dangling link elsewhere, and a link loop, are not the input.
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink("nowhere.pem", &elsewhere).unwrap();
        check(&[&input], &elsewhere).unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", &b).unwrap();
        check(&[&input], &a).unwrap();
    }

    #[test]
    fn only_regular_files_count() {
        // Reading and writing /dev/null destroys nothing.
        check(&[Path::new("/dev/null")], Path::new("/dev/null")).unwrap();
    }
}

#[cfg(test)]
mod special_targets {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_fifo_is_written_through_and_stays_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe", PUBLIC_MODE).unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A key is never written into anything that exists.
        assert_eq!(
            create_new_atomic(&fifo, b"secret", PRIVATE_MODE).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn links_are_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let real = sub.join("real.crl");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.crl");
        std::os::unix::fs::symlink("sub/real.crl", &link).unwrap();
        write_atomic(&link, b"new", PUBLIC_MODE).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 1);
        // A dangling link: the file it names is created, the link stays.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("sub/later.pem", &dangling).unwrap();
        write_atomic(&dangling, b"later", PUBLIC_MODE).unwrap();
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(sub.join("later.pem")).unwrap(), b"later");
        // New files never follow a link.
        let other = dir.path().join("other");
        std::os::unix::fs::symlink("sub/never.key", &other).unwrap();
        assert_eq!(
            create_new_atomic(&other, b"secret", PRIVATE_MODE).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(!sub.join("never.key").exists());
        let (path, _) = create_new_group(&[(&other, b"secret", PRIVATE_MODE)]).unwrap_err();
        assert_eq!(path, other);
        assert!(!sub.join("never.key").exists());
    }

    #[test]
    fn a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x", PUBLIC_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
