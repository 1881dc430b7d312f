//! The channel library hardened (issue 7): a server learns why a client was refused as a typed
//! value; async callers have loaders that never block the runtime; reloads have a deadline;
//! caller values such as `Duration::MAX` never panic; peer-controlled lengths are safe.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod channel_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use channel_common::{Leaf, Pki, STEP};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use tessera::channel::{
    self, Authorization, CertificateProblem, ChannelError, ChannelStream, Credentials, LoadWarning,
    MAX_RUNNING_RELOADS, Refusal, ReloadableServerConfig, RotationPolicy, ServerFiles,
};
use tessera::pki::{Passphrase, PrivateKey, TrustStore, Usage};

/// Runs one handshake: the server (with `authorization` and `crl`) accepts, the client (with
/// `leaf`) connects and reads. Returns the server's accept result and the client's error.
async fn handshake(
    pki: &Pki,
    authorization: Authorization,
    crl: &std::path::Path,
    leaf: Option<&Leaf>,
) -> (Result<ChannelStream<TcpStream>, ChannelError>, Option<ChannelError>) {
    let mut trust = TrustStore::from_root_file(&pki.root).unwrap();
    trust.add_crl_file(crl).unwrap();
    let mut settings = pki.server_settings(authorization);
    settings.client_trust = Some(Arc::new(trust));
    let server_config = Arc::new(channel::server_config(&settings).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ChannelStream::accept(server_config, tcp, RotationPolicy::default()).await
    });
    let client_config = Arc::new(channel::client_config(&pki.client_settings(leaf)).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client_error = match ChannelStream::connect(client_config, "localhost", tcp, RotationPolicy::default()).await {
        Ok(mut stream) => {
            let _ = stream.send_message(b"hello").await;
            stream.recv_message().await.err()
        }
        Err(error) => Some(error),
    };
    (server.await.unwrap(), client_error)
}

/// The server's refusal, checked to be a rejection that carries the typed reason.
fn refusal(accepted: Result<ChannelStream<TcpStream>, ChannelError>) -> Refusal {
    let error = accepted.expect_err("the server refused the client");
    assert!(error.is_rejection(), "{error:?}");
    assert!(matches!(error, ChannelError::Refused { .. }), "{error:?}");
    error.refusal().cloned().unwrap()
}

#[tokio::test]
async fn a_server_learns_why_a_client_was_refused() {
    timeout(STEP, async {
        let pki = Pki::new();
        let open = Authorization::any_verified;

        let (accepted, _) = handshake(&pki, open(), &pki.crl, None).await;
        assert_eq!(refusal(accepted), Refusal::NoCertificate);

        let (accepted, _) = handshake(&pki, open(), &pki.crl, Some(&pki.foreign_client)).await;
        assert_eq!(refusal(accepted), Refusal::UnknownIssuer);

        let (accepted, client) = handshake(&pki, open(), &pki.crl, Some(&pki.revoked)).await;
        assert_eq!(
            refusal(accepted),
            Refusal::Revoked {
                serial: Some(pki.revoked.serial.parse().unwrap()),
                reason: tessera::pki::RevocationReason::KeyCompromise
            }
        );
        assert_eq!(
            client.unwrap().peer_alert(),
            Some(rustls::AlertDescription::CertificateRevoked)
        );

        let (accepted, client) = handshake(&pki, open(), &pki.crl, Some(&pki.expired)).await;
        match refusal(accepted) {
            Refusal::Expired { subject, not_after } => {
                assert_eq!(subject.as_deref(), Some("CN=expired"));
                assert!(not_after.unwrap() < time::OffsetDateTime::now_utc());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            client.unwrap().peer_alert(),
            Some(rustls::AlertDescription::CertificateExpired)
        );

        let (accepted, client) = handshake(&pki, Authorization::only(["client1"]), &pki.crl, Some(&pki.client2)).await;
        match refusal(accepted) {
            Refusal::NotAllowed { peer } => assert_eq!(peer.common_name.as_deref(), Some("client2")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            client.unwrap().peer_alert(),
            Some(rustls::AlertDescription::AccessDenied)
        );

        // A stale CRL: refused, and the alert does not blame the client's issuer.
        let (accepted, client) = handshake(&pki, open(), &pki.stale_crl, Some(&pki.client1)).await;
        let refused = refusal(accepted);
        assert!(refused.is_revocation_unknown(), "{refused:?}");
        assert!(refused.to_string().contains("a CRL expired at"), "{refused}");
        let client = client.unwrap();
        assert!(client.is_rejection());
        assert_eq!(client.peer_alert(), Some(rustls::AlertDescription::CertificateUnknown));

        // The displayed identity escapes what the certificate says.
        let (accepted, _) = handshake(&pki, Authorization::only(["client1"]), &pki.crl, Some(&pki.bidi)).await;
        let shown = refusal(accepted).to_string();
        assert!(shown.starts_with("evil\\u{202e}gnp.exe serial "), "{shown}");
        assert!(!shown.contains('\u{202e}'), "{shown}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_client_learns_why_it_refused_the_server() {
    timeout(STEP, async {
        let pki = Pki::new();
        let server_config =
            Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
        let connect = |client_settings: channel::ClientSettings, name: &'static str| {
            let server_config = Arc::clone(&server_config);
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let server = tokio::spawn(async move {
                    let (tcp, _) = listener.accept().await.unwrap();
                    ChannelStream::accept(server_config, tcp, RotationPolicy::default()).await
                });
                let tcp = TcpStream::connect(addr).await.unwrap();
                let config = Arc::new(channel::client_config(&client_settings).unwrap());
                let error = ChannelStream::connect(config, name, tcp, RotationPolicy::default())
                    .await
                    .expect_err("refused");
                (
                    error,
                    server.await.unwrap().expect_err("server sees the client's alert"),
                )
            }
        };
        let (error, _) = connect(pki.client_settings(Some(&pki.client1)), "elsewhere.example").await;
        assert_eq!(
            error.refusal(),
            Some(&Refusal::NameMismatch {
                name: "elsewhere.example".into()
            })
        );
        // A stale CRL on the client's side.
        let mut stale = pki.client_settings(Some(&pki.client1));
        let mut trust = TrustStore::from_root_file(&pki.root).unwrap();
        trust.add_crl_file(&pki.stale_crl).unwrap();
        stale.server_trust = Arc::new(trust);
        let (error, server_error) = connect(stale, "localhost").await;
        assert!(error.refusal().unwrap().is_revocation_unknown(), "{error:?}");
        assert_eq!(
            server_error.peer_alert(),
            Some(rustls::AlertDescription::CertificateUnknown)
        );
        assert!(
            server_error
                .to_string()
                .contains("the peer sent the TLS alert certificate_unknown"),
            "{server_error}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn duration_max_and_u64_max_never_panic() {
    timeout(STEP, async {
        let pki = Pki::new();
        let policy = RotationPolicy::never()
            .with_bytes(u64::MAX)
            .with_messages(u64::MAX)
            .with_interval(Duration::MAX)
            .with_min_interval(Duration::MAX);
        assert_eq!(policy.interval, Some(Duration::MAX));
        let shown = policy.to_string();
        assert!(shown.starts_with("every "), "{shown}");
        let json = serde_json::to_value(policy).unwrap();
        assert!(json["interval"].is_number(), "{json}");

        let server_config =
            Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = ChannelStream::accept(server_config, tcp, policy).await.unwrap();
            stream.set_max_message_size(usize::MAX);
            for _ in 0..3 {
                let message = stream.recv_message().await.unwrap().unwrap();
                stream.send_message(&message).await.unwrap();
            }
            // A peer that announces a 4 GiB message and closes: an error, no 4 GiB buffer.
            stream.recv_message().await
        });
        let config = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut stream = ChannelStream::connect(config, "localhost", tcp, policy).await.unwrap();
        for _ in 0..3 {
            stream.send_message(b"ping").await.unwrap();
            assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"ping");
            assert!(stream.next_rotation_deadline().is_none());
            stream.maintain().await.unwrap();
        }
        stream.write_all(&[0xff, 0xff, 0xff, 0xff, b'x']).await.unwrap();
        stream.close().await.unwrap();
        drop(stream);
        match server.await.unwrap() {
            Err(ChannelError::TruncatedMessage { received: 5, expected }) => {
                assert_eq!(expected, 4 + u64::from(u32::MAX));
            }
            other => panic!("unexpected {other:?}"),
        }

        // Deadlines of Duration::MAX: no overflow anywhere.
        let files = ServerFiles::new(&pki.server.chain, &pki.server.key);
        let loaded = files.load_async(Duration::MAX).await.unwrap();
        let reloadable = Arc::new(ReloadableServerConfig::from_files(loaded, files));
        assert_eq!(reloadable.reload_async(Duration::MAX).await.unwrap(), 1);
        let trust = channel::load_trust_async(pki.root.clone(), vec![pki.crl.clone()], Duration::MAX)
            .await
            .unwrap();
        assert_eq!(trust.store.roots().len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_framed_message_cut_short_reports_what_arrived() {
    timeout(STEP, async {
        let pki = Pki::new();
        let server_config =
            Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = ChannelStream::accept(server_config, tcp, RotationPolicy::default())
                .await
                .unwrap();
            stream.recv_message().await
        });
        let config = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut stream = ChannelStream::connect(config, "localhost", tcp, RotationPolicy::default())
            .await
            .unwrap();
        // Announce 100 bytes, send 10, close.
        stream.write_all(&[0, 0, 0, 100]).await.unwrap();
        stream.write_all(&[7; 10]).await.unwrap();
        stream.close().await.unwrap();
        let error = server.await.unwrap().unwrap_err();
        assert!(
            matches!(
                error,
                ChannelError::TruncatedMessage {
                    received: 14,
                    expected: 104
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the peer closed the connection after 14 of the 104 bytes expected"
        );
    })
    .await
    .unwrap();
}

/// Counts ticks of a task on a current-thread runtime while `work` runs: blocking work on that
/// one thread would starve it.
async fn ticks_during<F: std::future::Future>(work: F) -> (F::Output, u64) {
    let ticks = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&ticks);
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let output = work.await;
    ticker.abort();
    (output, ticks.load(Ordering::SeqCst))
}

#[test]
fn async_loaders_leave_the_runtime_free() {
    let pki = Pki::new();
    let key = PrivateKey::load(&pki.server.key, None).unwrap();
    let encrypted = pki.dir.path().join("server-encrypted.key");
    let passphrase = Passphrase::new("correct horse battery".into());
    key.save(&encrypted, Some(&passphrase)).unwrap();
    // How long decrypting takes here, done on this thread.
    let started = std::time::Instant::now();
    Credentials::load(&pki.server.chain, &encrypted, Some(&passphrase)).unwrap();
    let blocking_time = started.elapsed();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let chain = pki.server.chain.clone();
        let (loaded, ticks) = ticks_during(Credentials::load_async(
            chain,
            encrypted.clone(),
            Some(passphrase.clone()),
        ))
        .await;
        let credentials = loaded.unwrap();
        assert!(!credentials.chain().is_empty());
        // The only worker thread kept running tasks while scrypt ran elsewhere.
        if blocking_time > Duration::from_millis(20) {
            assert!(ticks > 0, "no tick in {blocking_time:?} of key derivation");
        }
        let error = Credentials::load_async(
            pki.server.chain.clone(),
            encrypted.clone(),
            Some(Passphrase::new("wrong".into())),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("cannot load private key"), "{error}");

        let store = TrustStore::from_root_file_async(pki.root.clone()).await.unwrap();
        assert_eq!(store.roots().len(), 1);
        assert!(
            TrustStore::from_root_file_async(pki.dir.path().join("missing.pem"))
                .await
                .is_err()
        );

        let mut files = ServerFiles::new(&pki.server.chain, &encrypted);
        files.passphrase = Some(Arc::new(passphrase.clone()));
        files.client_ca = Some(pki.root.clone());
        files.crls = vec![pki.stale_crl.clone()];
        let (loaded, _) = ticks_during(files.load_async(STEP)).await;
        let loaded = loaded.unwrap();
        match loaded.warnings.as_slice() {
            [LoadWarning::StaleCrl(crl)] => {
                assert_eq!(crl.path, pki.stale_crl);
                assert_eq!(crl.issuer, "CN=Test Root");
                assert!(crl.next_update.unwrap() < time::OffsetDateTime::now_utc());
            }
            other => panic!("{other:?}"),
        }
    });
    // Outside any runtime the async forms still work (on the calling thread).
    let plain = std::thread::spawn({
        let chain = pki.server.chain.clone();
        let key = pki.server.key.clone();
        move || {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut future = std::pin::pin!(Credentials::load_async(chain, key, None));
            match future.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(result) => result.is_ok(),
                std::task::Poll::Pending => false,
            }
        }
    });
    assert!(plain.join().unwrap(), "load_async outside a runtime");
}

#[test]
fn non_regular_files_are_refused_without_blocking() {
    let pki = Pki::new();
    let fifo = pki.dir.path().join("fifo.pem");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let error = Credentials::load(&fifo, &pki.server.key, None).unwrap_err();
    assert!(
        matches!(
            &error,
            ChannelError::NotAFile {
                kind: "a FIFO (named pipe)",
                ..
            }
        ),
        "{error:?}"
    );
    let error = Credentials::load(&pki.server.chain, std::path::Path::new("/dev/zero"), None).unwrap_err();
    assert!(
        matches!(
            &error,
            ChannelError::NotAFile {
                kind: "a character device",
                ..
            }
        ),
        "{error:?}"
    );
    let error = channel::load_trust(pki.dir.path(), &[], time::OffsetDateTime::now_utc()).unwrap_err();
    assert!(
        matches!(
            &error,
            ChannelError::NotAFile {
                kind: "a directory",
                ..
            }
        ),
        "{error:?}"
    );
    let big = pki.dir.path().join("big.pem");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(tessera::pki::pem::MAX_PEM_FILE + 1).unwrap();
    let error = Credentials::load(&big, &pki.server.key, None).unwrap_err();
    assert!(matches!(&error, ChannelError::FileTooLarge { .. }), "{error:?}");
}

#[test]
fn server_files_refuse_a_certificate_the_server_cannot_serve_with() {
    let pki = Pki::new();
    let now = time::OffsetDateTime::now_utc();
    let problem = |leaf: &Leaf| match ServerFiles::new(&leaf.chain, &leaf.key).load(now) {
        Err(ChannelError::UnsuitableCertificate { problem, .. }) => problem,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        problem(&pki.expired_server),
        CertificateProblem::Expired { .. }
    ));
    assert!(matches!(
        problem(&pki.future_server),
        CertificateProblem::NotYetValid { .. }
    ));
    assert_eq!(
        problem(&pki.client1),
        CertificateProblem::WrongUsage {
            usage: Usage::Server,
            extended_key_usage: vec!["clientAuth".into()]
        }
    );
    let error = ServerFiles::new(&pki.server.chain, &pki.server2.key)
        .load(now)
        .unwrap_err();
    assert!(matches!(error, ChannelError::UnusableKey { .. }), "{error:?}");
    // The same certificate is fine for the client side, and a server one at its own time.
    pki.client1
        .credentials()
        .check_usable(Usage::Client, now, "client1")
        .unwrap();
    ServerFiles::new(&pki.server.chain, &pki.server.key).load(now).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_hangs_is_abandoned_and_never_blocks_the_next() {
    let pki = Pki::new();
    let settings = pki.server_settings(Authorization::any_verified());
    let hang = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let loader_hang = Arc::clone(&hang);
    let version = Arc::new(AtomicU64::new(0));
    let loader_version = Arc::clone(&version);
    let reloadable = Arc::new(
        ReloadableServerConfig::new(move || {
            let seen = loader_version.load(Ordering::SeqCst);
            if loader_hang.load(Ordering::SeqCst) {
                // A file that never answers (until the test ends).
                let _ = release_rx.lock().unwrap().recv_timeout(STEP * 3);
            }
            let mut config = channel::server_config(&settings)?;
            config.send_tls13_tickets = usize::try_from(seen).unwrap();
            Ok(config)
        })
        .unwrap(),
    );
    timeout(STEP, async {
        hang.store(true, Ordering::SeqCst);
        version.store(1, Ordering::SeqCst);
        let error = reloadable.reload_async(Duration::from_millis(200)).await.unwrap_err();
        assert!(
            matches!(
                error,
                ChannelError::Timeout {
                    phase: "reading the certificate files",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(reloadable.generation(), 0);
        assert_eq!(reloadable.running(), 1, "the stuck load is still counted");

        // The next reload does not wait for the stuck one.
        hang.store(false, Ordering::SeqCst);
        version.store(2, Ordering::SeqCst);
        assert_eq!(reloadable.reload_async(Duration::from_secs(5)).await.unwrap(), 1);
        assert_eq!(reloadable.current().send_tls13_tickets, 2);

        // Stuck loads are bounded.
        hang.store(true, Ordering::SeqCst);
        for _ in 1..MAX_RUNNING_RELOADS {
            let error = reloadable.reload_async(Duration::from_millis(50)).await.unwrap_err();
            assert!(matches!(error, ChannelError::Timeout { .. }), "{error:?}");
        }
        assert_eq!(reloadable.running(), MAX_RUNNING_RELOADS);
        let error = reloadable.reload_async(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(error, ChannelError::ReloadBusy { running } if running == MAX_RUNNING_RELOADS),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("still reading files that do not answer"),
            "{error}"
        );

        // Released, the abandoned loads end without installing their (older) configurations.
        for _ in 0..MAX_RUNNING_RELOADS {
            release_tx.send(()).unwrap();
        }
        while reloadable.running() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(reloadable.generation(), 1);
        assert_eq!(reloadable.current().send_tls13_tickets, 2);
        hang.store(false, Ordering::SeqCst);
        assert_eq!(reloadable.reload_async(Duration::from_secs(5)).await.unwrap(), 2);
    })
    .await
    .unwrap();
}
