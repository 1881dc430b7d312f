//! The channel through the library API: mutual-TLS echo, proof that keys rotate, refusals,
//! message limits and hot reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::sync::{Arc, Mutex};

use channel_common::{Pki, STEP};
use rustls::{ConnectionTrafficSecrets, KeyLog};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use tessera::channel::{
    self, Authorization, ChannelError, ChannelStats, ChannelStream, ReloadableServerConfig, RotationPolicy, TlsOptions,
    TrustStoreServerVerifier,
};

/// A server that accepts one connection and echoes framed messages until the client closes.
/// Resolves to the handshake outcome and the server-side stats.
async fn one_shot_server(
    config: rustls::ServerConfig,
    policy: RotationPolicy,
) -> (
    std::net::SocketAddr,
    JoinHandle<Result<(Option<String>, ChannelStats), ChannelError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(config);
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = ChannelStream::accept(config, tcp, policy).await?;
        let identity = stream.peer_identity().and_then(|p| p.common_name.clone());
        while let Some(message) = stream.recv_message().await? {
            stream.send_message(&message).await?;
        }
        stream.close().await?;
        Ok((identity, stream.stats()))
    });
    (addr, task)
}

async fn connect(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
    policy: RotationPolicy,
) -> Result<ChannelStream<TcpStream>, ChannelError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    ChannelStream::connect(Arc::new(config), "localhost", tcp, policy).await
}

#[tokio::test]
async fn mutual_tls_echo_with_identities() {
    timeout(STEP, async {
        let pki = Pki::new();
        let server_config = channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap();
        let (addr, server) = one_shot_server(server_config, RotationPolicy::default()).await;
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
        let mut stream = connect(addr, client_config, RotationPolicy::default()).await.unwrap();
        assert_eq!(stream.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let server_identity = stream.peer_identity().unwrap().clone();
        assert_eq!(server_identity.common_name.as_deref(), Some("localhost"));
        // Made afresh from the certificate rustls keeps: the same identity.
        assert_eq!(stream.describe_peer().as_ref(), Some(&server_identity));
        assert!(
            server_identity
                .sans
                .contains(&tessera::pki::SubjectAltName::Ip("127.0.0.1".parse().unwrap()))
        );
        for message in [&b"hello"[..], b"", &[0u8; 70_000][..]] {
            stream.send_message(message).await.unwrap();
            assert_eq!(stream.recv_message().await.unwrap().unwrap(), message);
        }
        stream.close().await.unwrap();
        assert_eq!(
            stream.recv_message().await.unwrap(),
            None,
            "clean close after close_notify"
        );
        let (client_name, stats) = server.await.unwrap().unwrap();
        assert_eq!(client_name.as_deref(), Some("client1"));
        assert_eq!(stats.messages_received, 3);
        assert_eq!(stats.bytes_received, 3 * 4 + 5 + 70_000);
    })
    .await
    .unwrap();
}

/// Records the generation-0 traffic secrets of each connection.
#[derive(Debug, Default)]
struct Secrets(Mutex<Vec<(String, Vec<u8>)>>);

impl KeyLog for Secrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0.lock().unwrap().push((label.to_string(), secret.to_vec()));
    }
}

impl Secrets {
    fn get(&self, label: &str) -> Vec<u8> {
        let secrets = self.0.lock().unwrap();
        secrets.iter().find(|(l, _)| l == label).unwrap().1.clone()
    }
}

struct Len(usize);
impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(algorithm: ring::hkdf::Algorithm, secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    let full = format!("tls13 {label}");
    let length = (len as u16).to_be_bytes();
    let label_len = [full.len() as u8];
    let info: [&[u8]; 4] = [&length, &label_len, full.as_bytes(), &[0u8]];
    let prk = ring::hkdf::Prk::new_less_safe(algorithm, secret);
    let mut out = vec![0u8; len];
    prk.expand(&info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

/// The generation of `secret_0` (0, 1, 2, …) whose traffic key is `key`, if any up to `max`.
fn generation_of(key: &ConnectionTrafficSecrets, secret_0: &[u8], max: usize) -> Option<usize> {
    let (algorithm, hash_len, key_bytes) = match key {
        ConnectionTrafficSecrets::Aes256Gcm { key, .. } => (ring::hkdf::HKDF_SHA384, 48, key.as_ref().to_vec()),
        ConnectionTrafficSecrets::Aes128Gcm { key, .. } => (ring::hkdf::HKDF_SHA256, 32, key.as_ref().to_vec()),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, .. } => (ring::hkdf::HKDF_SHA256, 32, key.as_ref().to_vec()),
        _ => panic!("unexpected cipher suite"),
    };
    let mut secret = secret_0.to_vec();
    for generation in 0..=max {
        if expand_label(algorithm, &secret, "key", key_bytes.len()) == key_bytes {
            return Some(generation);
        }
        secret = expand_label(algorithm, &secret, "traffic upd", hash_len);
    }
    None
}

/// Runs an echo of `messages` × `size` bytes and returns, for the client side, the generation
/// of its sending and receiving keys at the end, and the client's stats.
async fn key_generations(policy: RotationPolicy, messages: usize, size: usize) -> (usize, usize, u64, ChannelStats) {
    let pki = Pki::new();
    let mut server_settings = pki.server_settings(Authorization::any_verified());
    server_settings.options.enable_secret_extraction = true;
    let (addr, server) = one_shot_server(channel::server_config(&server_settings).unwrap(), policy).await;
    let secrets = Arc::new(Secrets::default());
    let mut client_settings = pki.client_settings(Some(&pki.client1));
    client_settings.options = TlsOptions {
        key_log: Some(Arc::clone(&secrets) as Arc<dyn KeyLog>),
        enable_secret_extraction: true,
        ..TlsOptions::default()
    };
    let mut stream = connect(addr, channel::client_config(&client_settings).unwrap(), policy)
        .await
        .unwrap();
    let payload = vec![7u8; size];
    for _ in 0..messages {
        stream.send_message(&payload).await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), payload);
    }
    // A rotation triggered by the last read is queued; send it so nothing is left buffered.
    tokio::io::AsyncWriteExt::flush(&mut stream).await.unwrap();
    let stats = stream.stats();
    let tokio_rustls::TlsStream::Client(tls) = stream.into_inner() else {
        panic!("client stream expected");
    };
    let (tcp, connection) = tls.into_inner();
    let extracted = connection.dangerous_extract_secrets().unwrap();
    drop(tcp);
    let _ = server.await;
    let client_0 = secrets.get("CLIENT_TRAFFIC_SECRET_0");
    let server_0 = secrets.get("SERVER_TRAFFIC_SECRET_0");
    let tx = generation_of(&extracted.tx.1, &client_0, 10_000).expect("client sending key derives from its secret");
    let rx = generation_of(&extracted.rx.1, &server_0, 10_000).expect("client receiving key derives from server's");
    (tx, rx, extracted.tx.0, stats)
}

#[tokio::test]
async fn keys_rotate_as_the_policy_says() {
    timeout(STEP, async {
        // Control: without rotation the keys in use at the end are the handshake's generation 0.
        let (tx, rx, _, stats) = key_generations(RotationPolicy::never(), 8, 1000).await;
        assert_eq!((tx, rx), (0, 0));
        assert_eq!(stats.rotations.total(), 0);

        // Every 1 KiB: 8 round trips of 1004 bytes rotate both directions many times.
        let policy = RotationPolicy::never().with_bytes(1024);
        let (tx, rx, tx_sequence, stats) = key_generations(policy, 8, 1000).await;
        eprintln!("client keys: sending generation {tx}, receiving generation {rx}, {stats:?}");
        assert!(
            stats.rotations.total() >= 7,
            "client sent {} KeyUpdates",
            stats.rotations.total()
        );
        assert!(tx >= 7, "client sending key is generation {tx}");
        assert!(rx >= 7, "client receiving key is generation {rx}");
        // Sequence numbers restart at each update: far fewer records under the last key than sent.
        assert!(tx_sequence < 8, "sequence number {tx_sequence} under the last key");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn message_limit_rotates_exactly() {
    timeout(STEP, async {
        let policy = RotationPolicy::never().with_messages(2);
        let (_, _, _, stats) = key_generations(policy, 6, 10).await;
        // 6 sent and 6 received messages, every 2nd message in either direction rotates.
        assert!(stats.rotations.total() >= 3, "{stats:?}");
        assert_eq!(stats.messages_sent, 6);
    })
    .await
    .unwrap();
}

/// Connects with `client` and reports how the server refused: the client's error on its first
/// read (TLS 1.3 client authentication finishes on the client before the server decides).
async fn refused(pki: &Pki, authorization: Authorization, client: Option<&channel_common::Leaf>) -> (String, String) {
    let server_config = channel::server_config(&pki.server_settings(authorization)).unwrap();
    let (addr, server) = one_shot_server(server_config, RotationPolicy::default()).await;
    let client_config = channel::client_config(&pki.client_settings(client)).unwrap();
    let mut stream = connect(addr, client_config, RotationPolicy::default())
        .await
        .expect("the client's side of the handshake completes");
    let _ = stream.send_message(b"hello").await;
    let error = stream.recv_message().await.expect_err("refused on first read");
    assert!(error.is_rejection(), "{error:?}");
    let server_error = server.await.unwrap().expect_err("server refused");
    assert!(server_error.is_rejection(), "{server_error:?}");
    (format!("{:?}", error.tls_error()), format!("{server_error:?}"))
}

#[tokio::test]
async fn refusals_seen_on_first_read() {
    timeout(STEP, async {
        let pki = Pki::new();
        let (client, server) = refused(&pki, Authorization::any_verified(), None).await;
        assert!(client.contains("CertificateRequired"), "{client}");
        assert!(server.contains("NoCertificatesPresented"), "{server}");

        let (client, server) = refused(&pki, Authorization::any_verified(), Some(&pki.foreign_client)).await;
        assert!(client.contains("UnknownCA"), "{client}");
        assert!(server.contains("UnknownIssuer"), "{server}");

        let (client, server) = refused(&pki, Authorization::any_verified(), Some(&pki.revoked)).await;
        assert!(client.contains("CertificateRevoked"), "{client}");
        assert!(server.contains("Revoked"), "{server}");

        let (client, server) = refused(&pki, Authorization::any_verified(), Some(&pki.expired)).await;
        assert!(client.contains("CertificateExpired"), "{client}");
        assert!(server.contains("Expired"), "{server}");

        let (client, server) = refused(&pki, Authorization::only(["client1"]), Some(&pki.client2)).await;
        assert!(client.contains("AccessDenied"), "{client}");
        assert!(server.contains("ApplicationVerificationFailure"), "{server}");

        // The common name "client1, mallory" is not client1.
        let (client, server) = refused(&pki, Authorization::only(["client1"]), Some(&pki.comma)).await;
        assert!(client.contains("AccessDenied"), "{client}");
        assert!(server.contains("ApplicationVerificationFailure"), "{server}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn allow_list_admits_listed_client() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = channel::server_config(&pki.server_settings(Authorization::only(["client2"]))).unwrap();
        let (addr, server) = one_shot_server(config, RotationPolicy::default()).await;
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client2))).unwrap();
        let mut stream = connect(addr, client_config, RotationPolicy::default()).await.unwrap();
        stream.send_message(b"ok").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"ok");
        stream.close().await.unwrap();
        assert_eq!(server.await.unwrap().unwrap().0.as_deref(), Some("client2"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn client_refuses_untrusted_or_misnamed_server() {
    timeout(STEP, async {
        let pki = Pki::new();
        // A server certificate from a CA the client does not trust.
        let mut settings = pki.server_settings(Authorization::any_verified());
        settings.credentials = pki.foreign_server.credentials();
        let (addr, _server) =
            one_shot_server(channel::server_config(&settings).unwrap(), RotationPolicy::default()).await;
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
        let error = connect(addr, client_config.clone(), RotationPolicy::default())
            .await
            .unwrap_err();
        assert!(error.is_rejection());
        assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");

        // The right CA but another name.
        let config = channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap();
        let (addr, _server) = one_shot_server(config, RotationPolicy::default()).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let error = ChannelStream::connect(Arc::new(client_config), "other.example", tcp, RotationPolicy::default())
            .await
            .unwrap_err();
        assert!(format!("{error:?}").contains("NotValidForName"), "{error:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tls12_client_is_refused() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap();
        let (addr, server) = one_shot_server(config, RotationPolicy::default()).await;
        let provider = channel::provider();
        let tls12 = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustStoreServerVerifier::new(pki.trust(), &provider)))
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                pki.client1.credentials().certified_key(),
            )));
        let error = connect(addr, tls12, RotationPolicy::default()).await.unwrap_err();
        assert!(format!("{error:?}").contains("ProtocolVersion"), "{error:?}");
        let server_error = server.await.unwrap().unwrap_err();
        assert!(
            format!("{server_error:?}").contains("Tls12NotOffered")
                || format!("{server_error:?}").contains("Incompatible"),
            "{server_error:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn oversized_messages_are_refused_with_a_clear_error() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = ChannelStream::accept(Arc::new(config), tcp, RotationPolicy::default()).await?;
            stream.set_max_message_size(100);
            let first = stream.recv_message().await?;
            let second = stream.recv_message().await;
            Ok::<_, ChannelError>((first, second))
        });
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
        let mut stream = connect(addr, client_config, RotationPolicy::default()).await.unwrap();
        stream.set_max_message_size(1000);
        let error = stream.send_message(&[0u8; 1001]).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "message of 1001 bytes exceeds the maximum of 1000 bytes"
        );
        stream.send_message(&[1u8; 100]).await.unwrap();
        stream.send_message(&[2u8; 101]).await.unwrap();
        let (first, second) = server.await.unwrap().unwrap();
        assert_eq!(first.unwrap(), vec![1u8; 100]);
        let error = second.unwrap_err();
        assert!(
            matches!(error, ChannelError::MessageTooLarge { size: 101, max: 100 }),
            "{error:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reload_swaps_certificates_and_keeps_old_on_error() {
    timeout(STEP, async {
        let pki = Pki::new();
        let live_chain = pki.dir.path().join("live.chain.pem");
        let live_key = pki.dir.path().join("live.key");
        std::fs::copy(&pki.server.chain, &live_chain).unwrap();
        std::fs::copy(&pki.server.key, &live_key).unwrap();
        let base = pki.server_settings(Authorization::any_verified());
        let (chain, key) = (live_chain.clone(), live_key.clone());
        let reloadable = ReloadableServerConfig::new(move || {
            let mut settings = base.clone();
            settings.credentials = channel::Credentials::load(&chain, &key, None)?;
            channel::server_config(&settings)
        })
        .unwrap();
        let serial_seen = |config: Arc<rustls::ServerConfig>| {
            let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
            async move {
                let (addr, _server) = one_shot_server((*config).clone(), RotationPolicy::default()).await;
                let stream = connect(addr, client_config, RotationPolicy::default()).await.unwrap();
                stream.peer_identity().unwrap().serial.clone()
            }
        };
        assert_eq!(serial_seen(reloadable.current()).await, pki.server.serial);

        // A broken file: the reload fails and the old configuration stays.
        std::fs::write(&live_chain, "not a certificate").unwrap();
        assert!(reloadable.reload().is_err());
        assert_eq!(reloadable.generation(), 0);
        assert_eq!(serial_seen(reloadable.current()).await, pki.server.serial);

        // A key that does not match the chain: refused too.
        std::fs::copy(&pki.server2.chain, &live_chain).unwrap();
        let error = reloadable.reload().unwrap_err();
        assert!(matches!(error, ChannelError::UnusableKey { .. }), "{error:?}");

        // The new pair: new handshakes get the new certificate.
        std::fs::copy(&pki.server2.key, &live_key).unwrap();
        assert_eq!(reloadable.reload().unwrap(), 1);
        assert_eq!(serial_seen(reloadable.current()).await, pki.server2.serial);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn interval_rotation_only_rotates_keys_that_carried_traffic() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap();
        let (addr, server) = one_shot_server(config, RotationPolicy::never()).await;
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
        let policy = RotationPolicy::never().with_interval(std::time::Duration::from_millis(150));
        let mut stream = connect(addr, client_config, policy).await.unwrap();
        assert_eq!(stream.next_rotation_deadline(), None, "no traffic yet");
        stream.send_message(b"tick").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"tick");
        let due = stream.next_rotation_deadline().expect("keys carried traffic");
        tokio::time::sleep_until(due).await;
        stream.maintain().await.unwrap();
        assert_eq!(stream.stats().rotations.by_interval, 1);
        // Idle since: the new keys protected nothing, so they are left alone.
        assert_eq!(stream.next_rotation_deadline(), None);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        stream.maintain().await.unwrap();
        assert_eq!(stream.stats().rotations.by_interval, 1);
        // The connection still works under the rotated keys.
        stream.send_message(b"tock").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"tock");
        stream.close().await.unwrap();
        server.await.unwrap().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn explicit_byte_limit_is_honoured_exactly() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = ChannelStream::accept(config, tcp, RotationPolicy::never())
                .await
                .unwrap();
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut all)
                .await
                .unwrap();
            all.len()
        });
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
        let mut stream = connect(addr, client_config, RotationPolicy::never().with_bytes(1024))
            .await
            .unwrap();
        // One 10 KiB write: cut at every 1024 bytes, a KeyUpdate before each following KiB.
        tokio::io::AsyncWriteExt::write_all(&mut stream, &[5u8; 10 * 1024])
            .await
            .unwrap();
        stream.close().await.unwrap();
        let stats = stream.stats();
        assert_eq!(stats.rotations.by_sent, 9, "{stats:?}");
        assert_eq!(stats.rotations.total(), 9, "{stats:?}");
        assert_eq!(server.await.unwrap(), 10 * 1024);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stream_that_only_receives_survives_many_rotations() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = Arc::new(channel::server_config(&pki.server_settings(Authorization::any_verified())).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The server only reads, rotating after every KiB received: KeyUpdates with no data sent.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = ChannelStream::accept(config, tcp, RotationPolicy::never().with_bytes(1024))
                .await
                .map_err(std::io::Error::other)?;
            let mut all = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await?;
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            stream.close().await.map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>((all, stream.stats()))
        });
        let client_config = channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap();
        let mut stream = connect(addr, client_config, RotationPolicy::never()).await.unwrap();
        // The client only writes (100 x 1 KiB), then reads what the server sent: its KeyUpdates.
        let sent: Vec<u8> = (0..100 * 1024u32).map(|i| (i % 253) as u8).collect();
        for chunk in sent.chunks(1024) {
            tokio::io::AsyncWriteExt::write_all(&mut stream, chunk).await.unwrap();
            tokio::io::AsyncWriteExt::flush(&mut stream).await.unwrap();
        }
        stream.close().await.unwrap();
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest)
            .await
            .expect("the server's KeyUpdates are acceptable");
        assert!(rest.is_empty());
        let (received, stats) = server.await.unwrap().expect("the receiving side ends without error");
        assert!(received == sent, "{} of {} bytes arrived", received.len(), sent.len());
        assert_eq!(
            stats.rotations.by_received,
            u64::from(channel::MAX_ROTATIONS_WITHOUT_SENDING),
            "{stats:?}"
        );
        assert!(stats.rotations.postponed > 0, "{stats:?}");
    })
    .await
    .unwrap();
}

#[test]
fn an_allow_list_without_client_trust_is_a_config_error() {
    let pki = Pki::new();
    let mut settings = pki.server_settings(Authorization::only(["client1"]));
    settings.client_trust = None;
    let error = channel::server_config(&settings).expect_err("anonymous clients would pass the allow list");
    assert!(
        matches!(error, ChannelError::AllowListWithoutClientTrust { allowed: 1 }),
        "{error:?}"
    );
    let mut open = pki.server_settings(Authorization::any_verified());
    open.client_trust = None;
    channel::server_config(&open).expect("no client authentication and no allow list");
}

#[test]
fn overlapping_reloads_install_the_newest_files() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    let pki = Pki::new();
    let settings = pki.server_settings(Authorization::any_verified());
    // The "files": a version number the loader reads; the load of version 1 is slow.
    let version = Arc::new(AtomicU32::new(0));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let loader_version = Arc::clone(&version);
    let reloadable = Arc::new(
        ReloadableServerConfig::new(move || {
            let seen = loader_version.load(Ordering::SeqCst);
            if seen == 1 {
                let _ = release_rx.lock().unwrap().recv_timeout(STEP);
            }
            let mut config = channel::server_config(&settings)?;
            config.send_tls13_tickets = seen as usize;
            Ok(config)
        })
        .unwrap(),
    );
    version.store(1, Ordering::SeqCst);
    let first = {
        let reloadable = Arc::clone(&reloadable);
        std::thread::spawn(move || reloadable.reload())
    };
    // Let the first reload start reading version 1, then change the files and reload again.
    std::thread::sleep(Duration::from_millis(100));
    version.store(2, Ordering::SeqCst);
    let (done_tx, done_rx) = mpsc::channel();
    let second = {
        let reloadable = Arc::clone(&reloadable);
        std::thread::spawn(move || {
            let result = reloadable.reload();
            let _ = done_tx.send(());
            result
        })
    };
    // Unserialised, the second reload would finish now, before the first.
    let _ = done_rx.recv_timeout(Duration::from_millis(300));
    release_tx.send(()).unwrap();
    first.join().unwrap().unwrap();
    second.join().unwrap().unwrap();
    // The second reload installed the newest files; the first, finishing later, was dropped.
    assert_eq!(reloadable.generation(), 1);
    assert_eq!(
        reloadable.current().send_tls13_tickets,
        2,
        "the configuration in force comes from the newest files"
    );
}

/// The fixture once re-issued its revoked client until the serial's first octet was 0x10 or
/// more, to dodge a lookup that stripped the leading zero nibble. Such a serial is revoked like
/// any other, however it is typed, and the server refuses the certificate.
#[tokio::test]
async fn a_revoked_client_whose_serial_starts_below_0x10_is_refused() {
    use tessera::ca::{CertificateAuthority, IssueRequest, Profile, RevocationReason};
    timeout(STEP, async {
        let pki = Pki::new();
        let ca = CertificateAuthority::open(&pki.dir.path().join("ca"), None).unwrap();
        let now = time::OffsetDateTime::now_utc();
        // The first octet is 0x01..=0x7f: one serial in about eight starts with a zero digit.
        let low = (0..500)
            .find_map(|attempt| {
                let prefix = pki.dir.path().join(format!("low{attempt}"));
                let issued = ca.issue(&IssueRequest::new(Profile::Client, "low"), now).unwrap();
                let serial = issued.info.serial.to_string();
                serial.starts_with('0').then(|| {
                    let files = issued.write(&prefix, None).unwrap();
                    channel_common::Leaf {
                        chain: files.chain,
                        key: files.key.unwrap(),
                        serial,
                    }
                })
            })
            .expect("a serial below 0x10.. within 500 issues");
        // Typed without its leading zero, as `ca list` once failed to find it.
        let typed = low.serial.trim_start_matches('0');
        let crl = ca
            .revoke(
                &typed.parse().unwrap(),
                RevocationReason::KeyCompromise,
                now,
                std::time::Duration::from_secs(86_400),
            )
            .unwrap();
        std::fs::write(&pki.crl, tessera::pki::pem::to_pem("X509 CRL", &crl)).unwrap();
        let (client, server) = refused(&pki, Authorization::any_verified(), Some(&low)).await;
        assert!(client.contains("CertificateRevoked"), "{client}");
        assert!(server.contains("Revoked"), "{server}");
    })
    .await
    .unwrap();
}
