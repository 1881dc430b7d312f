//! Fleet-wide session tickets (`ServerFiles::ticket_keys`, `echo-server --ticket-keys`): a
//! ticket from one server resumes on another holding the same key file, rotation keeps old
//! tickets working, a dropped key falls back to a full handshake, and resumption never bypasses
//! client authentication (a revocation, another client CA, another allow list).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use channel_common::{Leaf, Pki, STEP, Server};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use tessera::ca::{CertificateAuthority, RevocationReason};
use tessera::channel::{
    self, Authorization, ChannelError, ChannelStream, EchoConfig, EchoHandle, ReloadableServerConfig, RotationPolicy,
    ServerFiles, TlsOptions, serve_echo,
};
use tessera::pki::pem;

/// An in-process echo service built from files, as `echo-server` builds it.
struct Service {
    addr: SocketAddr,
    handle: EchoHandle,
    task: JoinHandle<()>,
    tls: Arc<ReloadableServerConfig>,
}

fn files(pki: &Pki, client_ca: &Path, allow: &[&str], keys: &Path) -> ServerFiles {
    let mut files = ServerFiles::new(&pki.server.chain, &pki.server.key);
    files.client_ca = Some(client_ca.to_path_buf());
    files.crls = if client_ca == pki.root {
        vec![pki.crl.clone()]
    } else {
        Vec::new()
    };
    files.authorization = Authorization::only(allow.iter().map(ToString::to_string));
    files.ticket_keys = Some(keys.to_path_buf());
    files
}

impl Service {
    async fn start(files: ServerFiles) -> Self {
        let first = files.load(time::OffsetDateTime::now_utc()).unwrap();
        let tls = Arc::new(ReloadableServerConfig::from_files(first, files));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (handle, service) = serve_echo(listener, Arc::clone(&tls), EchoConfig::default());
        Self {
            addr,
            handle,
            task: tokio::spawn(service),
            tls,
        }
    }

    async fn reload(&self) {
        let before = self.tls.generation();
        let generation = self.tls.reload_async(STEP).await.unwrap();
        assert_eq!(generation, before + 1);
    }

    async fn stop(self) {
        self.handle.shutdown("test");
        timeout(STEP, self.task).await.unwrap().unwrap();
    }
}

/// A client configuration that keeps its session tickets.
fn resuming_client(pki: &Pki, leaf: &Leaf) -> Arc<rustls::ClientConfig> {
    let mut settings = pki.client_settings(Some(leaf));
    settings.options = TlsOptions {
        resumption: true,
        ..TlsOptions::default()
    };
    Arc::new(channel::client_config(&settings).unwrap())
}

/// One connection with one echo; whether it resumed, or the error of the handshake or echo.
async fn echo_once(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<bool, ChannelError> {
    timeout(STEP, async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut stream = ChannelStream::connect(Arc::clone(config), "localhost", tcp, RotationPolicy::never()).await?;
        // The echo comes after the server's NewSessionTicket: reading it stores the ticket.
        let echoed = channel::echo_round_trip(&mut stream, b"ping\n").await?;
        assert_eq!(echoed, b"ping\n");
        let resumed = stream.resumed();
        stream.close().await?;
        Ok(resumed)
    })
    .await
    .unwrap()
}

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("tickets.keys");
    channel::new_ticket_key(&path).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_one_server_resumes_on_another_holding_the_same_keys() {
    let pki = Pki::new();
    let keys = key_file(pki.dir.path());
    let a = Service::start(files(&pki, &pki.root, &[], &keys)).await;
    let b = Service::start(files(&pki, &pki.root, &[], &keys)).await;
    let other_keys = pki.dir.path().join("other.keys");
    channel::new_ticket_key(&other_keys).unwrap();
    let c = Service::start(files(&pki, &pki.root, &[], &other_keys)).await;
    let client = resuming_client(&pki, &pki.client1);
    assert!(
        !echo_once(&client, a.addr).await.unwrap(),
        "the first handshake is full"
    );
    assert!(echo_once(&client, b.addr).await.unwrap(), "B opens A's ticket");
    assert_eq!(b.handle.stats().sessions_resumed, 1);
    assert!(
        !echo_once(&client, c.addr).await.unwrap(),
        "other keys: a full handshake, which succeeds"
    );
    assert_eq!(c.handle.stats().sessions_resumed, 0);
    assert_eq!(c.handle.stats().sessions_started, 1);
    // A client that keeps no tickets never resumes.
    let forgetful = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
    assert!(!echo_once(&forgetful, a.addr).await.unwrap());
    assert!(!echo_once(&forgetful, a.addr).await.unwrap());
    for service in [a, b, c] {
        service.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_old_tickets_and_a_dropped_key_falls_back_to_a_full_handshake() {
    let pki = Pki::new();
    let keys = key_file(pki.dir.path());
    let a = Service::start(files(&pki, &pki.root, &[], &keys)).await;
    let client = resuming_client(&pki, &pki.client1);
    assert!(!echo_once(&client, a.addr).await.unwrap());
    // Rotated: a new key first, the old one kept; the ticket the client holds is the old key's.
    assert_eq!(channel::new_ticket_key(&keys).unwrap().len(), 2);
    a.reload().await;
    assert!(
        echo_once(&client, a.addr).await.unwrap(),
        "sealed with the old key, still opened"
    );
    assert!(echo_once(&client, a.addr).await.unwrap(), "sealed with the new key");
    // Every key the client's tickets were sealed with is gone: a full handshake, not a failure.
    std::fs::remove_file(&keys).unwrap();
    channel::new_ticket_key(&keys).unwrap();
    a.reload().await;
    assert!(
        !echo_once(&client, a.addr).await.unwrap(),
        "no key opens it: full handshake"
    );
    assert!(echo_once(&client, a.addr).await.unwrap(), "and the new ticket resumes");
    let stats = a.handle.stats();
    assert_eq!(
        (stats.sessions_started, stats.sessions_resumed, stats.handshakes_failed),
        (5, 3, 0)
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_an_unusable_key_file_keeps_the_keys_and_installs_the_rest() {
    let pki = Pki::new();
    let keys = key_file(pki.dir.path());
    let a = Service::start(files(&pki, &pki.root, &[], &keys)).await;
    let client = resuming_client(&pki, &pki.client1);
    assert!(!echo_once(&client, a.addr).await.unwrap());
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    a.reload().await;
    assert!(echo_once(&client, a.addr).await.unwrap(), "the keys in force were kept");
    std::fs::write(&keys, "garbage\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    a.reload().await;
    assert!(echo_once(&client, a.addr).await.unwrap());
    a.stop().await;
}

/// Revokes `leaf` in the fixture's CA and writes the new CRL over the one the servers read.
fn revoke(pki: &Pki, leaf: &Leaf) {
    let ca = CertificateAuthority::open(&pki.dir.path().join("ca"), None).unwrap();
    let crl = ca
        .revoke(
            &leaf.serial.parse().unwrap(),
            RevocationReason::KeyCompromise,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(86_400),
        )
        .unwrap();
    std::fs::write(&pki.crl, pem::to_pem("X509 CRL", &crl)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_minted_before_a_revocation_gets_no_session() {
    let pki = Pki::new();
    let keys = key_file(pki.dir.path());
    let a = Service::start(files(&pki, &pki.root, &[], &keys)).await;
    let client = resuming_client(&pki, &pki.client1);
    assert!(!echo_once(&client, a.addr).await.unwrap());
    assert!(
        echo_once(&client, a.addr).await.unwrap(),
        "resumes before the revocation"
    );
    revoke(&pki, &pki.client1);
    a.reload().await;
    let error = echo_once(&client, a.addr).await.unwrap_err();
    assert_eq!(
        error.peer_alert(),
        Some(rustls::AlertDescription::CertificateRevoked),
        "{error}"
    );
    let stats = a.handle.stats();
    assert_eq!((stats.sessions_started, stats.sessions_resumed), (2, 1), "{stats:?}");
    // Another client is not affected.
    let other = resuming_client(&pki, &pki.client2);
    assert!(!echo_once(&other, a.addr).await.unwrap());
    assert!(echo_once(&other, a.addr).await.unwrap());
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_minted_under_another_client_ca_or_allow_list_gets_no_session() {
    let pki = Pki::new();
    let keys = key_file(pki.dir.path());
    let a = Service::start(files(&pki, &pki.root, &[], &keys)).await;
    // Same keys, but clients of the foreign CA only.
    let foreign = Service::start(files(&pki, &pki.foreign_root, &[], &keys)).await;
    // Same keys and CA, but only client2 admitted.
    let strict = Service::start(files(&pki, &pki.root, &["client2"], &keys)).await;
    let client = resuming_client(&pki, &pki.client1);
    assert!(!echo_once(&client, a.addr).await.unwrap());
    let error = echo_once(&client, foreign.addr).await.unwrap_err();
    assert_eq!(error.peer_alert(), Some(rustls::AlertDescription::UnknownCA), "{error}");
    assert_eq!(foreign.handle.stats().sessions_started, 0);
    // A fresh ticket from A, presented to the server with another allow list.
    echo_once(&client, a.addr).await.unwrap();
    let error = echo_once(&client, strict.addr).await.unwrap_err();
    assert_eq!(
        error.peer_alert(),
        Some(rustls::AlertDescription::AccessDenied),
        "{error}"
    );
    assert_eq!(strict.handle.stats().sessions_started, 0);
    // client2 resumes there with a ticket from A.
    let admitted = resuming_client(&pki, &pki.client2);
    assert!(!echo_once(&admitted, a.addr).await.unwrap());
    assert!(echo_once(&admitted, strict.addr).await.unwrap());
    for service in [a, foreign, strict] {
        service.stop().await;
    }
}

#[test]
fn echo_server_refuses_a_key_file_open_to_others_and_makes_one_with_new_ticket_key() {
    let pki = Pki::new();
    let keys = pki.dir.path().join("fleet.keys");
    let make = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--new-ticket-key")
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(make.status.code(), Some(0), "{}", String::from_utf8_lossy(&make.stderr));
    let stdout = String::from_utf8_lossy(&make.stdout);
    assert!(stdout.contains(": 1 key, new sealing key "), "{stdout}");
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read_to_string(&keys).unwrap();
    let secret = secret.lines().find(|l| !l.starts_with('#')).unwrap().to_string();
    assert!(!stdout.contains(&secret));
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--new-ticket-key")
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains(": 2 keys, new sealing key "));
    assert_eq!(channel::TicketKeys::load(&keys).unwrap().len(), 2);
    // --new-ticket-key goes alone.
    let mixed = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--new-ticket-key", "x", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(mixed.status.code(), Some(2));

    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut args: Vec<std::ffi::OsString> = pki.server_args();
    args.extend(["--ticket-keys".into(), keys.clone().into()]);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(&args)
        .env_remove("SSLKEYLOGFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("mode is 0644"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");

    // 0600: starts; a reload with the file made 0644 keeps the keys and says so.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsString::as_os_str).collect();
    let server = Server::start(pki.dir.path(), &refs);
    server.wait_for_log("session tickets on");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.signal("HUP");
    let log = server.wait_for_log("session ticket keys kept from before");
    assert!(log.contains("mode is 0644"), "{log}");
    assert!(!log.contains(&secret), "{log}");
}

/// `echo-server --new-ticket-key FILE`, run to its end.
fn new_ticket_key_cli(file: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--new-ticket-key")
        .arg(file)
        .env_remove("SSLKEYLOGFILE")
        .output()
        .unwrap()
}

/// The sealing key `--new-ticket-key` announced on stdout.
fn announced_key(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split("new sealing key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key name in {stdout}"))
        .to_string()
}

/// The PID of a process that has ended (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn new_ticket_key_sweeps_the_temporary_files_of_a_killed_rotation() {
    let pki = Pki::new();
    let keys = pki.dir.path().join("fleet.keys");
    announced_key(&new_ticket_key_cli(&keys));
    // What `kill -9` during a rotation leaves: a full copy of the keys beside the file.
    let stale = pki
        .dir
        .path()
        .join(format!(".fleet.keys.tmp-{}-00112233445566ff", dead_pid()));
    std::fs::copy(&keys, &stale).unwrap();
    // A rotation still running (this test process is alive), and another file's leftover.
    let live = pki
        .dir
        .path()
        .join(format!(".fleet.keys.tmp-{}-0123456789abcdef", std::process::id()));
    std::fs::copy(&keys, &live).unwrap();
    let other = pki
        .dir
        .path()
        .join(format!(".other.keys.tmp-{}-00112233445566ff", dead_pid()));
    std::fs::write(&other, "x").unwrap();

    let out = new_ticket_key_cli(&keys);
    announced_key(&out);
    assert!(!stale.exists(), "the dead rotation's copy of the keys is still there");
    assert!(live.exists(), "a live rotation's temporary file was removed");
    assert!(other.exists(), "another file's temporary file was removed");
    assert_eq!(channel::TicketKeys::load(&keys).unwrap().len(), 2);
    // No temporary file of ours is left by a rotation that ends, and the file stays 0600.
    let leftovers: Vec<String> = std::fs::read_dir(pki.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".fleet.keys.tmp-") && !live.ends_with(name))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn concurrent_new_ticket_key_runs_keep_every_new_key() {
    let pki = Pki::new();
    // As many concurrent runs as the file keeps keys: every one's key must be in it at the end.
    let runs = channel::KEPT_TICKET_KEYS;
    for round in 0..6 {
        let keys = pki.dir.path().join(format!("round{round}.keys"));
        let first = announced_key(&new_ticket_key_cli(&keys));
        let barrier = Arc::new(std::sync::Barrier::new(runs));
        let threads: Vec<_> = (0..runs)
            .map(|_| {
                let (keys, barrier) = (keys.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    new_ticket_key_cli(&keys)
                })
            })
            .collect();
        let mut announced: Vec<String> = threads.into_iter().map(|t| announced_key(&t.join().unwrap())).collect();
        let mut in_file = channel::TicketKeys::load(&keys).unwrap().names();
        announced.sort();
        in_file.sort();
        assert_eq!(in_file, announced, "round {round}: a rotation lost another's key");
        assert!(!in_file.contains(&first), "round {round}: the oldest key was kept");
    }
}

#[test]
fn concurrent_rotations_are_serialised_each_on_the_file_the_previous_one_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("fleet.keys");
    let first = channel::new_ticket_key(&keys).unwrap().remove(0);
    let runs = 8;
    let barrier = Arc::new(std::sync::Barrier::new(runs));
    let threads: Vec<_> = (0..runs)
        .map(|_| {
            let (keys, barrier) = (keys.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                channel::new_ticket_key(&keys).unwrap()
            })
        })
        .collect();
    // Each rotation's list: its own key, then the keys of the file it started from.
    let lists: Vec<Vec<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let before: std::collections::HashMap<&str, &str> = lists
        .iter()
        .map(|names| (names[0].as_str(), names[1].as_str()))
        .collect();
    assert_eq!(before.len(), runs, "two rotations made the same key");
    // From the file's sealing key back through every rotation to the first key: none skipped.
    let in_file = channel::TicketKeys::load(&keys).unwrap().names();
    assert_eq!(in_file.len(), channel::KEPT_TICKET_KEYS);
    let mut key = in_file[0].as_str();
    for _ in 0..runs {
        key = before
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not a rotation's key: {lists:?}"));
    }
    assert_eq!(
        key, first,
        "a rotation started from a file another had replaced: {lists:?}"
    );
}

#[test]
fn new_ticket_key_refuses_stdin_and_says_how_to_fix_its_file() {
    let pki = Pki::new();
    // "-" is no key file, for --ticket-keys (it is read again on SIGHUP) or --new-ticket-key.
    let mut args: Vec<std::ffi::OsString> = pki.server_args();
    args.extend([
        "--ticket-keys".into(),
        "-".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]);
    for command in [
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .args(&args)
            .output()
            .unwrap(),
        new_ticket_key_cli(Path::new("-")),
    ] {
        let stderr = String::from_utf8_lossy(&command.stderr);
        assert_eq!(command.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("cannot be a ticket key file") && stderr.contains("0600"),
            "{stderr}"
        );
    }

    // Each problem gets its own hint, never "give a file made by --new-ticket-key".
    let dir = pki.dir.path();
    let open = dir.join("open.keys");
    announced_key(&new_ticket_key_cli(&open));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let garbage = dir.join("garbage.keys");
    std::fs::write(&garbage, "not base64!\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dangling = dir.join("dangling.keys");
    std::os::unix::fs::symlink(dir.join("nowhere.keys"), &dangling).unwrap();
    let cases = [
        (open.clone(), "chmod 600"),
        (garbage.clone(), "base64 32-byte keys, one per line"),
        (dir.join("missing").join("fleet.keys"), "does not exist: create it"),
        (dir.to_path_buf(), "is not a regular file"),
        (dangling.clone(), "is a symbolic link to a file that does not exist"),
    ];
    for (path, hint) in cases {
        let out = new_ticket_key_cli(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", path.display());
        let hint_line = stderr
            .lines()
            .find(|l| l.starts_with("echo-server: hint: "))
            .unwrap_or_else(|| panic!("no hint: {stderr}"));
        assert!(hint_line.contains(hint), "{}: {stderr}", path.display());
        assert!(!hint_line.contains("made by"), "{stderr}");
    }
    // The refused files are untouched.
    assert_eq!(std::fs::read_to_string(&garbage).unwrap(), "not base64!\n");
    assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o644);
}
