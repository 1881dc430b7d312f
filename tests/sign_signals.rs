//! An interrupted write leaves nothing behind: `sign --embed -o OUT` and `verify --extract OUT`
//! stopped by SIGTERM or SIGINT mid-write remove their hidden temporary file and never create
//! OUT; one stopped by SIGKILL (which nothing can catch) leaves it, and the next write of the
//! same OUT removes it.
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
    let out = support::output(
        support::command("sign")
            .current_dir(d)
            .args(["--generate", "k", "--no-passphrase"]),
    );
    assert!(out.status.success(), "{out:?}");
    let head = vec![7u8; 2 * 1024 * 1024];

    // sign --embed -o OUT from standard input, stopped mid-write.
    let signed = d.join("module.signed");
    for (sig, number) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let (mut child, pipe) = start_fed(
            support::command("sign").current_dir(d).args([
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
