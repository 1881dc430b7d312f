//! The quick starts work as written (issue 7, "command-line conventions"): every ```sh block
//! marked `<!-- quickstart -->` in README.md and docs/*.md runs, in a fresh directory, under
//! `bash -euo pipefail`, without a terminal (a new session, stdin from /dev/null), with the
//! freshly built tools first on PATH. A block that fails, hangs, or leaves its example port busy
//! fails the test with the block's output.
//!
//! The blocks share TCP port 4433 (the documented example), so they run one after another in a
//! single test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one block may run (it issues a handful of certificates and echoes two messages).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);

struct Block {
    source: String,
    line: usize,
    script: String,
}

/// The ```sh blocks preceded by a `<!-- quickstart -->` line.
fn quickstart_blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "<!-- quickstart -->" {
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```sh"),
                "{}:{}: marker not followed by ```sh",
                path.display(),
                i + 1
            );
            let start = i + 2;
            let end = (start..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or_else(|| panic!("{}:{}: unterminated block", path.display(), start));
            blocks.push(Block {
                source: path.display().to_string(),
                line: start + 1,
                script: lines[start..end].join("\n"),
            });
            i = end;
        }
        i += 1;
    }
    blocks
}

fn run_block(block: &Block) {
    let dir = tempfile::tempdir().unwrap();
    // The README's first line builds the tools; here they are built already, and PATH points at
    // them, so `cargo build` is skipped and everything else runs verbatim.
    let body: Vec<&str> = block
        .script
        .lines()
        .map(|l| if l.starts_with("cargo build") { "true" } else { l })
        .collect();
    let script = format!(
        "set -euo pipefail\nexport PATH=\"{}:$PATH\"\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}\n",
        support::bin_dir().display(),
        body.join("\n")
    );
    let path = dir.path().join("quickstart.sh");
    std::fs::write(&path, script).unwrap();
    // In its own session, so the trap can end what a block started in the background.
    let mut cmd = support::command_path("setsid");
    cmd.arg("bash").arg(&path).current_dir(dir.path());
    // Both pipes are drained while it runs; past BLOCK_TIMEOUT it is killed and the test fails.
    let out = support::run(&mut cmd, None, BLOCK_TIMEOUT);
    let (stdout, stderr) = (support::stdout(&out), support::stderr(&out));
    let context = format!(
        "{} (block at line {})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        block.source, block.line
    );
    assert!(out.status.success(), "exit {}: {context}", out.status);
    // What the blocks claim in their comments.
    if block.script.contains("refused: exit") {
        assert!(
            stdout.contains("refused: exit 1"),
            "the out-of-constraints issue was not refused with exit 1: {context}"
        );
    }
    if block.script.contains("revoked: exit") {
        assert!(
            stdout.contains("revoked: exit 1"),
            "the revoked certificate was not rejected with exit 1: {context}"
        );
    }
    if block.script.contains("echo-client") {
        assert!(
            stdout.contains("hello") && stdout.contains("world"),
            "the echo did not come back: {context}"
        );
    }
    if block.script.contains("\nverify ") {
        assert!(
            dir.path()
                .read_dir()
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".sig"))
        );
    }
}

#[test]
fn every_quickstart_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut blocks = quickstart_blocks(&root.join("README.md"));
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for doc in &docs {
        blocks.extend(quickstart_blocks(doc));
    }
    let sources: Vec<&str> = blocks.iter().map(|b| b.source.as_str()).collect();
    for expected in ["README.md", "docs/ca.md", "docs/sign.md", "docs/channel.md"] {
        assert!(
            sources.iter().any(|s| s.ends_with(expected)),
            "no quickstart block found in {expected}: {sources:?}"
        );
    }
    for block in &blocks {
        run_block(block);
    }
}
