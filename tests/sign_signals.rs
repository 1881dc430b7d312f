//! An interrupted write leaves nothing behind: `sign --embed -o OUT` and `verify --extract OUT`
//! stopped by SIGTERM, SIGINT, SIGHUP or SIGQUIT mid-write remove their hidden temporary file
//! and never create OUT, and so do `sign` and `ca backup` that pass the file size limit
//! (SIGXFSZ); one stopped by SIGKILL (which nothing can catch) leaves it, and the next write of
//! the same OUT removes it. A signal the tool inherited as ignored (`nohup`, `trap '' HUP`)
//! stays ignored: the tool finishes its work; with SIGXFSZ ignored, a write past the limit is
//! an error with a hint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The hidden temporary files of writes of `out` (`.NAME.tmp-…` beside it).
fn temporaries(out: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.tmp-", out.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .collect()
}

/// Waits (at most 20 s) until a temporary file of `out` exists.
fn wait_for_temporary(out: &Path, child: &mut Child) {
    let start = Instant::now();
    while temporaries(out).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the writer ended early");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no temporary file of {}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `cmd` reading its input from standard input, feeds it `head` and keeps the pipe open
/// (the process waits for the rest, mid-write); returns the child and the pipe.
fn start_fed(cmd: &mut std::process::Command, head: &[u8]) -> (Child, std::process::ChildStdin) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(head).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for `child` to end; its status.
fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the process did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interrupted_writes_remove_their_temporary_files_and_never_create_out() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::generate_sign_key(d);
    let head = vec![7u8; 2 * 1024 * 1024];

    // sign --embed -o OUT from standard input, stopped mid-write (no core file for SIGQUIT).
    let signed = d.join("module.signed");
    for (sig, number) in [("TERM", 15), ("INT", 2), ("HUP", 1), ("QUIT", 3)] {
        let (mut child, pipe) = start_fed(
            support::command_under_shell("ulimit -c 0", "sign")
                .current_dir(d)
                .args([
                    "-",
                    "--name",
                    "module",
                    "--key",
                    "k.key",
                    "--hash",
                    "parallelhash128",
                    "--embed",
                    "-o",
                    "module.signed",
                    "-q",
                ]),
            &head,
        );
        wait_for_temporary(&signed, &mut child);
        signal(&child, sig);
        let status = wait_bounded(&mut child);
        drop(pipe);
        assert_eq!(status.signal(), Some(number), "sign ended by SIG{sig}: {status:?}");
        assert!(temporaries(&signed).is_empty(), "SIG{sig}: {:?}", temporaries(&signed));
        assert!(!signed.exists(), "SIG{sig}: OUT was created");
    }

    // SIGKILL cannot be caught: its temporary file stays until the next write of OUT.
    let (mut child, pipe) = start_fed(
        support::command("sign").current_dir(d).args([
            "-",
            "--name",
            "module",
            "--key",
            "k.key",
            "--embed",
            "-o",
            "module.signed",
            "-q",
        ]),
        &head,
    );
    wait_for_temporary(&signed, &mut child);
    signal(&child, "KILL");
    wait_bounded(&mut child);
    drop(pipe);
    let left = temporaries(&signed);
    assert_eq!(left.len(), 1, "{left:?}");
    let mut module = head.clone();
    module.extend_from_slice(b"the end");
    std::fs::write(d.join("module"), &module).unwrap();
    let out = support::output(support::command("sign").current_dir(d).args([
        "module",
        "--key",
        "k.key",
        "--embed",
        "-o",
        "module.signed",
        "-q",
    ]));
    assert!(out.status.success(), "{out:?}");
    assert!(temporaries(&signed).is_empty(), "{:?}", temporaries(&signed));
    assert!(signed.exists());

    // verify --extract OUT from standard input, stopped mid-write: no unverified bytes stay.
    let bytes = std::fs::read(&signed).unwrap();
    let extracted = d.join("extracted.bin");
    let (mut child, pipe) = start_fed(
        support::command("verify")
            .current_dir(d)
            .args(["-", "--pubkey", "k.pub", "--extract", "extracted.bin", "-q"]),
        &bytes[..bytes.len() / 2],
    );
    wait_for_temporary(&extracted, &mut child);
    signal(&child, "TERM");
    let status = wait_bounded(&mut child);
    drop(pipe);
    assert_eq!(status.signal(), Some(15), "{status:?}");
    assert!(temporaries(&extracted).is_empty(), "{:?}", temporaries(&extracted));
    assert!(!extracted.exists());
}

/// `sign --embed -o module.signed -` under `sh -c 'PRELUDE; exec sign …'`, fed `head` and
/// waiting for the rest, with its temporary file made.
fn start_sign_under(prelude: &str, d: &Path, head: &[u8]) -> (Child, std::process::ChildStdin) {
    let (mut child, pipe) = start_fed(
        support::command_under_shell(prelude, "sign").current_dir(d).args([
            "-",
            "--name",
            "module",
            "--key",
            "k.key",
            "--embed",
            "-o",
            "module.signed",
            "-q",
        ]),
        head,
    );
    wait_for_temporary(&d.join("module.signed"), &mut child);
    (child, pipe)
}

/// Started with SIGHUP ignored (as `nohup` starts it), `sign` keeps it ignored: a SIGHUP
/// mid-write changes nothing and the signature is written; SIGTERM still ends it cleanly.
#[test]
fn a_signal_inherited_as_ignored_stays_ignored() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::generate_sign_key(d);
    let head = vec![7u8; 2 * 1024 * 1024];
    let signed = d.join("module.signed");

    let (mut child, mut pipe) = start_sign_under("trap '' HUP", d, &head);
    signal(&child, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "sign ended on an ignored SIGHUP");
    pipe.write_all(b"the end").unwrap();
    drop(pipe);
    let status = wait_bounded(&mut child);
    assert!(status.success(), "{status:?}");
    assert!(signed.exists());
    assert!(temporaries(&signed).is_empty(), "{:?}", temporaries(&signed));
    let mut bytes = head.clone();
    bytes.extend_from_slice(b"the end");
    let out = support::output(support::command("verify").current_dir(d).args([
        "module.signed",
        "--pubkey",
        "k.pub",
        "--extract",
        "extracted",
        "-q",
    ]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(d.join("extracted")).unwrap(), bytes);
    std::fs::remove_file(&signed).unwrap();

    let (mut child, pipe) = start_sign_under("trap '' HUP", d, &head);
    signal(&child, "HUP");
    signal(&child, "TERM");
    let status = wait_bounded(&mut child);
    drop(pipe);
    assert_eq!(status.signal(), Some(15), "{status:?}");
    assert!(temporaries(&signed).is_empty(), "{:?}", temporaries(&signed));
    assert!(!signed.exists());
}

/// Past the file size limit (`ulimit -f 128`: 64 KiB), `sign` dies of SIGXFSZ as it would
/// without a handler, its temporary file removed; with SIGXFSZ ignored, the write fails with
/// EFBIG: exit 3, a hint naming the limit, nothing left.
#[test]
fn a_write_past_the_file_size_limit_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::generate_sign_key(d);
    let module = vec![7u8; 1024 * 1024];
    std::fs::write(d.join("module"), &module).unwrap();
    let signed = d.join("module.signed");
    let sign = |prelude: &str| {
        support::output(support::command_under_shell(prelude, "sign").current_dir(d).args([
            "module",
            "--key",
            "k.key",
            "--embed",
            "-o",
            "module.signed",
        ]))
    };

    let out = sign("ulimit -c 0; ulimit -f 128");
    assert_eq!(out.status.signal(), Some(25), "died of SIGXFSZ: {out:?}");
    assert!(temporaries(&signed).is_empty(), "{:?}", temporaries(&signed));
    assert!(!signed.exists());

    let out = sign("trap '' XFSZ; ulimit -f 128");
    let err = support::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("sign: error:") && err.contains("File too large"), "{err}");
    assert!(err.contains("sign: hint:") && err.contains("`ulimit -f`"), "{err}");
    assert!(temporaries(&signed).is_empty(), "{:?}", temporaries(&signed));
    assert!(!signed.exists());
}

/// `ca backup` past the file size limit dies of SIGXFSZ with neither its temporary copy nor
/// SQLite's files beside it left.
#[test]
fn a_backup_past_the_file_size_limit_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    support::ok(support::ca(&dir).args(["init", "--no-passphrase"]));
    support::ok(support::ca(&dir).args(["issue", "--profile", "client", "--name", "c"]));
    let out = tmp.path().join("copy.db");
    let run = support::output(
        support::command_under_shell("ulimit -c 0; ulimit -f 128", "ca")
            .arg("--dir")
            .arg(&dir)
            .args(["backup", "--out"])
            .arg(&out),
    );
    assert_eq!(run.status.signal(), Some(25), "died of SIGXFSZ: {run:?}");
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    assert!(!out.exists());
}
