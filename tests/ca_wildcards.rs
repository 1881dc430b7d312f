//! `ca issue` refuses a wildcard directly under a registry-controlled public suffix (`*.com`,
//! `*.co.uk`: CA/Browser Forum BR §3.2.2.6), through the same verification every certificate
//! passes before it is written; wildcards below a registrable domain or under a private PKI's own
//! top-level label are issued.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod support;

use std::path::Path;
use std::process::Output;

/// `ca --dir DIR ARGS…`, run to its end.
fn ca(dir: &Path, args: &[&str]) -> Output {
    support::output(support::ca(dir).args(args))
}

/// `ca issue --profile server --name web --san SAN --out PREFIX`.
fn issue(dir: &Path, san: &str, out_prefix: &Path) -> Output {
    let prefix = out_prefix.to_str().unwrap();
    ca(
        dir,
        &[
            "issue",
            "--profile",
            "server",
            "--name",
            "web",
            "--san",
            san,
            "--out",
            prefix,
        ],
    )
}

#[test]
fn wildcards_on_public_suffixes_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    assert!(
        ca(&dir, &["init", "--name", "Wildcard Root", "--no-passphrase"])
            .status
            .success()
    );
    for (i, (san, suffix)) in [("*.com", "com"), ("dns:*.co.uk", "co.uk"), ("*.Org.", "org")]
        .into_iter()
        .enumerate()
    {
        let out_prefix = tmp.path().join(format!("refused{i}"));
        let out = issue(&dir, san, &out_prefix);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{san}: {stderr}");
        assert!(
            stderr.contains(&format!("directly under the public suffix \"{suffix}\"")) && stderr.contains("§3.2.2.6"),
            "{san}: {stderr}"
        );
        for ext in [".pem", ".key", ".chain.pem"] {
            assert!(
                !tmp.path().join(format!("refused{i}{ext}")).exists(),
                "{san}: {ext} written"
            );
        }
    }
    let listed = ca(&dir, &["list", "--json"]);
    let records: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(records.as_array().map(Vec::len), Some(0), "nothing recorded: {records}");

    for (i, san) in ["*.example.com", "*.example.co.uk", "*.corp.lan", "*.s3.amazonaws.com"]
        .into_iter()
        .enumerate()
    {
        let out_prefix = tmp.path().join(format!("issued{i}"));
        let out = issue(&dir, san, &out_prefix);
        assert!(out.status.success(), "{san}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
