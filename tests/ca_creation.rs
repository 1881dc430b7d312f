//! Nothing `ca` creates is something Tessera itself will then refuse: every cause is refused at
//! creation with the reason (exit code and message pinned) and nothing is written or recorded;
//! what is created is accepted by `ca verify`, `openssl verify` and the TLS tools.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::{ca, ok, openssl, s, stderr};

struct Scratch {
    tmp: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `ca init --no-passphrase` in `name`, under `parent` if given.
    fn init(&self, name: &str, parent: Option<&str>, flags: &[&str]) -> Output {
        let mut cmd = ca(&self.path(name));
        cmd.args(["init", "--no-passphrase", "--name", name]);
        if let Some(parent) = parent {
            cmd.arg("--parent").arg(self.path(parent));
        }
        cmd.args(flags).output().unwrap()
    }

    #[track_caller]
    fn init_ok(&self, name: &str, parent: Option<&str>, flags: &[&str]) {
        let out = self.init(name, parent, flags);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    }

    /// Asserts `ca init` is refused with `code` and `needle`, and nothing is created: no CA in
    /// the directory, nothing recorded by the parent.
    #[track_caller]
    fn init_refused(&self, name: &str, parent: Option<&str>, flags: &[&str], code: i32, needle: &str) -> String {
        let before = parent.map(|p| self.records(p));
        let out = self.init(name, parent, flags);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{name} {flags:?}: {err}");
        assert!(err.contains(needle), "{name} {flags:?}: {err:?} lacks {needle:?}");
        assert!(err.starts_with("ca: error: "), "{err}");
        for file in ["ca.pem", "ca.key", "chain.pem"] {
            assert!(!self.path(name).join(file).exists(), "{name}/{file} was written");
        }
        if let Some(parent) = parent {
            assert_eq!(Some(self.records(parent)), before, "{parent} recorded something");
        }
        err
    }

    fn issue(&self, ca_name: &str, profile: &str, name: &str, flags: &[&str]) -> Output {
        ca(&self.path(ca_name))
            .args(["issue", "--profile", profile, "--name", name, "--out"])
            .arg(self.path(name))
            .args(flags)
            .output()
            .unwrap()
    }

    #[track_caller]
    fn issue_refused(&self, ca_name: &str, profile: &str, name: &str, flags: &[&str], code: i32, needle: &str) {
        let before = self.records(ca_name);
        let out = self.issue(ca_name, profile, name, flags);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{name} {flags:?}: {err}");
        assert!(err.contains(needle), "{name} {flags:?}: {err:?} lacks {needle:?}");
        for suffix in [".pem", ".key", ".chain.pem"] {
            assert!(
                !self.path(&format!("{name}{suffix}")).exists(),
                "{name}{suffix} was written"
            );
        }
        assert_eq!(self.records(ca_name), before, "{ca_name} recorded something");
    }

    fn records(&self, ca_name: &str) -> usize {
        let out = ok(ca(&self.path(ca_name)).args(["list", "--json"]));
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    }

    /// `ca verify` of an issued chain against `root`'s certificate.
    fn verify(&self, chain: &Path, root: &Path, usage: &str, name: Option<&str>) -> Output {
        let mut cmd = ca(&self.path("unused"));
        cmd.arg("verify")
            .arg(chain)
            .arg("--root")
            .arg(root)
            .args(["--usage", usage]);
        if let Some(name) = name {
            cmd.args(["--name", name]);
        }
        cmd.output().unwrap()
    }
}

#[test]
fn permit_email_is_refused_before_anything_is_made() {
    let scratch = Scratch::new();
    let err = scratch.init_refused(
        "mail-root",
        None,
        &["--permit-email", "example.test"],
        2,
        "--permit-email: \"example.test\": e-mail name constraints cannot be used",
    );
    assert!(err.contains("could never issue an e-mail certificate"), "{err}");
    assert!(err.contains("ca: hint: leave out --permit-email"), "{err}");
    assert!(!scratch.path("mail-root").exists());

    // Below a parent too, before its key is even opened.
    scratch.init_ok("root", None, &[]);
    scratch.init_refused(
        "mail-inter",
        Some("root"),
        &["--permit-email", "example.test", "--permit-dns", "example.test"],
        2,
        "e-mail name constraints cannot be used",
    );

    // Without the flag, e-mail certificates are issued and verified.
    scratch.init_ok("inter", Some("root"), &["--permit-dns", "example.test"]);
    let out = scratch.issue("inter", "client", "carol", &["--san", "email:carol@example.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = scratch.verify(
        &scratch.path("carol.chain.pem"),
        &scratch.path("root/ca.pem"),
        "client",
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A root made by OpenSSL with name constraints of a form rustls-webpki does not evaluate, and a
/// leaf under it that `openssl verify` accepts.
fn openssl_constrained_pki(scratch: &Scratch, constraint: &str, san: &str) -> (PathBuf, PathBuf) {
    let (root_key, root) = (scratch.path("os-root.key"), scratch.path("os-root.pem"));
    support::openssl_p256_self_signed(
        &root_key,
        &root,
        &[
            "-subj",
            "/CN=OpenSSL Mail Root",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            &format!("nameConstraints=critical,{constraint}"),
        ],
    );
    let (key, csr, leaf) = (
        scratch.path("os-leaf.key"),
        scratch.path("os-leaf.csr"),
        scratch.path("os-leaf.pem"),
    );
    support::openssl_p256_csr(&key, &csr, &["-subj", "/CN=carol"]);
    let ext = scratch.path("leaf.ext");
    std::fs::write(
        &ext,
        format!(
            "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\nsubjectAltName={san}\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&root),
        "-CAkey",
        &s(&root_key),
        "-set_serial",
        "4660",
        "-days",
        "10",
        "-extfile",
        &s(&ext),
        "-extensions",
        "v3",
        "-out",
        &s(&leaf),
    ]);
    let out = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&root)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (root, leaf)
}

#[test]
fn ca_verify_says_why_an_e_mail_or_uri_constraint_refuses_a_chain() {
    for (constraint, san, form, name) in [
        (
            "permitted;email:example.test",
            "email:carol@example.test",
            "e-mail addresses (rfc822Name)",
            "email:carol@example.test",
        ),
        (
            "excluded;email:evil.test",
            "email:carol@example.test",
            "e-mail addresses (rfc822Name)",
            "email:carol@example.test",
        ),
        (
            "permitted;URI:example.test",
            "URI:https://example.test/carol",
            "URIs",
            "uri:https://example.test/carol",
        ),
    ] {
        let scratch = Scratch::new();
        let (root, leaf) = openssl_constrained_pki(&scratch, constraint, san);
        let out = scratch.verify(&leaf, &root, "client", None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "the name constraints of CN=OpenSSL Mail Root restrict {form}, which Tessera's verifier does not evaluate"
            )),
            "{err}"
        );
        assert!(err.contains(&format!("this chain holds {name}")), "{err}");
        assert!(
            !err.contains("certificate violates its issuer's name constraints"),
            "{err}"
        );
    }

    // A name of another form under the same root is verified as usual.
    let scratch = Scratch::new();
    let (root, leaf) = openssl_constrained_pki(&scratch, "permitted;email:example.test", "DNS:carol.example.test");
    let out = scratch.verify(&leaf, &root, "client", None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn constraints_that_leave_nothing_to_issue_are_usage_errors() {
    let scratch = Scratch::new();
    for (flags, needle) in [
        (
            &["--permit-dns", "example.test", "--exclude-dns", "example.test"][..],
            "--exclude-dns: example.test excludes all of --permit-dns example.test",
        ),
        (
            &["--permit-dns", "a.example.test", "--exclude-dns", "example.test"][..],
            "--exclude-dns: example.test excludes all of --permit-dns a.example.test",
        ),
        (
            &["--permit-dns", "*.example.test"][..],
            "--permit-dns: \"*.example.test\" is a wildcard",
        ),
        (
            &["--exclude-dns", "*.example.test"][..],
            "--exclude-dns: \"*.example.test\" is a wildcard",
        ),
        (
            &["--permit-dns", "not a domain"][..],
            "--permit-dns: \"not a domain\" is not a DNS name or domain",
        ),
        (
            &["--permit-dns", "192.0.2.1"][..],
            "--permit-dns: \"192.0.2.1\" is an IP address, not a domain; constrain addresses with --permit-ip 192.0.2.1/32",
        ),
        (
            &["--permit-ip", "10.1.2.3/8"][..],
            "--permit-ip: 10.1.2.3/8 has host bits set; write the network address, 10.0.0.0/8",
        ),
    ] {
        scratch.init_refused("bad", None, flags, 2, needle);
        assert!(!scratch.path("bad").exists());
    }
    // An exclusion inside a permission is fine.
    scratch.init_ok(
        "fine",
        None,
        &["--permit-dns", "example.test", "--exclude-dns", "secret.example.test"],
    );
    let out = scratch.issue("fine", "server", "www.example.test", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    scratch.issue_refused(
        "fine",
        "server",
        "db.secret.example.test",
        &[],
        1,
        "refusing to issue: certificate violates its issuer's name constraints",
    );
}

#[test]
fn a_child_ca_must_stay_inside_its_parents_constraints() {
    let scratch = Scratch::new();
    scratch.init_ok("root", None, &[]);
    scratch.init_ok(
        "parent",
        Some("root"),
        &["--permit-dns", "example.test", "--permit-ip", "10.0.0.0/8"],
    );

    for (flags, needle) in [
        (
            &["--permit-dns", "other.test"][..],
            "refusing to create the intermediate CA: --permit-dns other.test is not inside what its parent CA permits",
        ),
        // Wider than the parent's: example.test is permitted, test is not.
        (
            &["--permit-dns", "test"][..],
            "--permit-dns test is not inside what its parent CA permits",
        ),
        (
            &["--permit-ip", "192.168.0.0/16"][..],
            "--permit-ip 192.168.0.0/16 is not inside what its parent CA permits (192.168.0.0 is outside)",
        ),
        (
            &["--permit-ip", "10.0.0.0/7"][..],
            "--permit-ip 10.0.0.0/7 is not inside what its parent CA permits (11.255.255.255 is outside)",
        ),
    ] {
        scratch.init_refused("child", Some("parent"), flags, 1, needle);
    }

    // Inside: created, and it issues inside.
    scratch.init_ok(
        "child",
        Some("parent"),
        &["--permit-dns", "svc.example.test", "--permit-ip", "10.1.0.0/16"],
    );
    let out = scratch.issue("child", "server", "api.svc.example.test", &["--san", "ip:10.1.2.3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = scratch.verify(
        &scratch.path("api.svc.example.test.chain.pem"),
        &scratch.path("root/ca.pem"),
        "server",
        Some("10.1.2.3"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn path_lengths_that_forbid_a_new_ca_refuse_it() {
    let scratch = Scratch::new();
    scratch.init_ok("root0", None, &["--path-len", "0"]);
    scratch.init_refused(
        "inter",
        Some("root0"),
        &[],
        1,
        "refusing to create the intermediate CA: the parent CA CN=root0 has path length 0",
    );

    // Two levels down: root allows one CA, which allows none.
    scratch.init_ok("root1", None, &["--path-len", "1"]);
    scratch.init_ok("inter1", Some("root1"), &[]);
    scratch.init_refused(
        "inter2",
        Some("inter1"),
        &[],
        1,
        "the parent CA CN=inter1 has path length 0",
    );
    scratch.init_refused(
        "inter2",
        Some("root1"),
        &["--path-len", "1"],
        3,
        "invalid path-len: must be below the parent's path length 1",
    );
}

#[test]
fn leaves_tessera_would_refuse_are_not_issued() {
    let scratch = Scratch::new();
    scratch.init_ok("root", None, &[]);
    scratch.init_ok("inter", Some("root"), &[]);
    // A server certificate no TLS client could match.
    scratch.issue_refused(
        "inter",
        "server",
        "Web Server",
        &["--san", "email:web@example.test", "--san", "uri:https://example.test/"],
        3,
        "a server certificate needs a DNS name or IP address, and \"Web Server\" is neither",
    );
    scratch.issue_refused(
        "inter",
        "server",
        "numeric",
        &["--san", "dns:192.0.2.7"],
        3,
        "dns:192.0.2.7 is not a name TLS clients can match: Tessera's verifier refuses a client asking for \"192.0.2.7\"; for an address write ip:192.0.2.7",
    );
    // Module signatures are Ed25519: a code-signing certificate for another key could never sign.
    for key_type in ["p256", "p384"] {
        scratch.issue_refused(
            "inter",
            "code-signing",
            &format!("signer-{key_type}"),
            &["--key-type", key_type],
            3,
            &format!("a code-signing certificate needs an Ed25519 key (module signatures are Ed25519), not {key_type}"),
        );
    }
    let out = scratch.issue("inter", "code-signing", "signer", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // E-mail and URI names are fine beside a DNS name on a server.
    let out = scratch.issue(
        "inter",
        "server",
        "www.example.test",
        &[
            "--san",
            "email:web@example.test",
            "--san",
            "uri:https://www.example.test/",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = scratch.verify(
        &scratch.path("www.example.test.chain.pem"),
        &scratch.path("root/ca.pem"),
        "server",
        Some("www.example.test"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// An `echo-server`, killed when dropped.
struct EchoServer {
    child: Child,
    addr: String,
}

impl EchoServer {
    fn start(args: &[&std::ffi::OsStr]) -> Self {
        let mut child = support::command("echo-server")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove("SSLKEYLOGFILE")
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echo-server did not start: {line:?}");
        };
        let addr = addr.split_whitespace().next().unwrap_or_default().to_string();
        Self { child, addr }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_key_type_ca_issues_serves_and_authenticates_over_tls() {
    for key_type in ["ed25519", "p256", "p384"] {
        let scratch = Scratch::new();
        scratch.init_ok("root", None, &["--key-type", key_type]);
        scratch.init_ok("inter", Some("root"), &["--key-type", key_type]);
        for (profile, name) in [("server", "localhost"), ("client", "client1")] {
            let out = scratch.issue("inter", profile, name, &["--key-type", key_type]);
            assert_eq!(out.status.code(), Some(0), "{key_type}: {}", stderr(&out));
        }
        let root = scratch.path("root/ca.pem");
        let server = EchoServer::start(&[
            "--cert".as_ref(),
            scratch.path("localhost.chain.pem").as_os_str(),
            "--key".as_ref(),
            scratch.path("localhost.key").as_os_str(),
            "--client-ca".as_ref(),
            root.as_os_str(),
        ]);
        let out = support::run(
            support::command("echo-client")
                .args([
                    "--connect",
                    &server.addr,
                    "--server-name",
                    "localhost",
                    "--timeout",
                    "5",
                    "--ca",
                ])
                .arg(&root)
                .arg("--cert")
                .arg(scratch.path("client1.chain.pem"))
                .arg("--key")
                .arg(scratch.path("client1.key"))
                .arg("hello")
                .env_remove("SSLKEYLOGFILE"),
            None,
            Duration::from_secs(20),
        );
        assert_eq!(out.status.code(), Some(0), "{key_type}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
        drop(server);

        // And OpenSSL agrees with every certificate made.
        for name in ["localhost", "client1"] {
            let out = Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&root)
                .arg("-untrusted")
                .arg(scratch.path("inter/ca.pem"))
                .arg(scratch.path(&format!("{name}.pem")))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{key_type} {name}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
