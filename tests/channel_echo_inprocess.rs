//! The echo service run in-process (`tessera::channel::serve_echo`), talked to with the
//! library client: echo, counters, rotation, refusals, limits, idle timeout, reload, PROXY
//! protocol and shutdown with and without a drain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod channel_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use channel_common::{Leaf, Pki, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use tessera::channel::{
    self, Authorization, ChannelError, ChannelStream, EchoConfig, EchoHandle, EchoStats, ProxySources,
    ReloadableServerConfig, RotationPolicy, serve_echo,
};

/// A running in-process echo service.
struct Service {
    addr: SocketAddr,
    handle: EchoHandle,
    task: JoinHandle<()>,
    tls: Arc<ReloadableServerConfig>,
}

impl Service {
    async fn start(pki: &Pki, authorization: Authorization, config: EchoConfig) -> Self {
        let settings = pki.server_settings(authorization);
        let tls = Arc::new(ReloadableServerConfig::new(move || channel::server_config(&settings)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (handle, service) = serve_echo(listener, Arc::clone(&tls), config);
        Self {
            addr,
            handle,
            task: tokio::spawn(service),
            tls,
        }
    }

    /// Waits until the counters satisfy `done`, and returns them.
    async fn stats_when(&self, done: impl Fn(&EchoStats) -> bool) -> EchoStats {
        timeout(STEP, async {
            loop {
                let stats = self.handle.stats();
                if done(&stats) {
                    return stats;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("counters never got there: {:?}", self.handle.stats()))
    }

    /// Shuts the service down and waits for it to stop.
    async fn stop(self) -> EchoStats {
        self.handle.shutdown("test");
        timeout(STEP, self.task).await.unwrap().unwrap();
        self.handle.stats()
    }
}

async fn connect(pki: &Pki, addr: SocketAddr, leaf: Option<&Leaf>) -> Result<ChannelStream<TcpStream>, ChannelError> {
    let config = Arc::new(channel::client_config(&pki.client_settings(leaf)).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    ChannelStream::connect(config, "localhost", tcp, RotationPolicy::never()).await
}

/// Reads until the end of the stream; the error if it ends in one.
async fn read_to_end(stream: &mut ChannelStream<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.map(|_| rest)
}

#[tokio::test]
async fn echoes_counts_and_rotates_by_the_servers_policy() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = EchoConfig {
            policy: RotationPolicy::never().with_bytes(64 * 1024),
            ..EchoConfig::default()
        };
        let service = Service::start(&pki, Authorization::any_verified(), config).await;
        let mut stream = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();

        // Framed messages come back whole: the echo is byte for byte.
        stream.send_message(b"hello").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"hello");
        stream.send_message(b"").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"");
        // What the client sent so far: two frames, each a 4-byte length and its bytes.
        let framed: u64 = (4 + 5) + 4;

        const BULK: u64 = 1024 * 1024;
        let done = channel::exchange(&mut stream, BULK, 16 * 1024).await.unwrap();
        assert_eq!((done.sent, done.received), (BULK, BULK));
        stream.close().await.unwrap();
        assert_eq!(read_to_end(&mut stream).await.unwrap(), b"");

        let stats = service.stats_when(|s| s.sessions_ended == 1).await;
        let total = BULK + framed;
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.sessions_started, 1);
        assert_eq!(stats.handshakes_failed, 0);
        assert_eq!(stats.refused_at_capacity, 0);
        assert_eq!(stats.bytes_received, total);
        assert_eq!(stats.bytes_sent, total);
        // A KeyUpdate every 64 KiB sent or received: at least 1 MiB / 64 KiB of them, and the
        // client (whose policy is never) answered each without being torn down.
        let rotated = stats.rotations.by_sent + stats.rotations.by_received;
        assert!(rotated >= BULK / (64 * 1024), "{stats:?}");
        assert_eq!(stats.rotations.by_interval, 0, "{stats:?}");
        assert_eq!(
            stream.stats().rotations.total(),
            0,
            "the client never rotates on its own"
        );

        let stopped = service.stop().await;
        assert_eq!(stopped, stats, "nothing happened after the session ended");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_client_counts_as_a_failed_handshake_and_gets_no_session() {
    timeout(STEP, async {
        let pki = Pki::new();
        let service = Service::start(&pki, Authorization::any_verified(), EchoConfig::default()).await;
        for leaf in [&pki.revoked, &pki.foreign_client] {
            // TLS 1.3: the client's handshake ends before the server has judged its certificate;
            // the first read reports the refusal.
            let outcome = match connect(&pki, service.addr, Some(leaf)).await {
                Ok(mut stream) => {
                    let _ = stream.write_all(b"x").await;
                    let _ = stream.flush().await;
                    read_to_end(&mut stream).await.map(|_| ())
                }
                Err(error) => Err(std::io::Error::other(error)),
            };
            assert!(outcome.is_err(), "{leaf:?} must be refused");
        }
        let stats = service.stats_when(|s| s.handshakes_failed == 2).await;
        assert_eq!(stats.accepted, 2);
        assert_eq!(stats.sessions_started, 0);
        assert_eq!(stats.bytes_received, 0);
        service.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn past_max_connections_a_new_client_is_closed_unread() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = EchoConfig {
            max_connections: 1,
            ..EchoConfig::default()
        };
        let service = Service::start(&pki, Authorization::any_verified(), config).await;
        let mut first = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();
        first.send_message(b"one").await.unwrap();
        assert_eq!(first.recv_message().await.unwrap().unwrap(), b"one");
        service.stats_when(|s| s.sessions_started == 1).await;

        // The slot is taken: the second connection is closed before its handshake.
        let second = connect(&pki, service.addr, Some(&pki.client2)).await;
        assert!(
            second.is_err(),
            "the handshake of a client past the limit cannot complete"
        );
        let stats = service.stats_when(|s| s.refused_at_capacity == 1).await;
        assert_eq!(stats.accepted, 2);
        assert_eq!(stats.sessions_started, 1);

        // The first session is not disturbed.
        first.send_message(b"two").await.unwrap();
        assert_eq!(first.recv_message().await.unwrap().unwrap(), b"two");
        first.close().await.unwrap();
        service.stats_when(|s| s.sessions_ended == 1).await;
        service.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_idle_session_is_closed_with_close_notify() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = EchoConfig {
            idle_timeout: Duration::from_millis(200),
            ..EchoConfig::default()
        };
        let service = Service::start(&pki, Authorization::any_verified(), config).await;
        let mut stream = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();
        stream.send_message(b"ping").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"ping");
        // Then nothing: the server ends the session with close_notify, a clean end of stream.
        assert_eq!(stream.recv_message().await.unwrap(), None);
        let stats = service.stats_when(|s| s.sessions_ended == 1).await;
        assert_eq!(stats.bytes_received, 8);
        service.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_drains_open_sessions_and_a_second_one_stops_at_once() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = EchoConfig {
            drain_timeout: Duration::from_secs(60),
            ..EchoConfig::default()
        };
        let service = Service::start(&pki, Authorization::any_verified(), config).await;
        let mut stream = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();
        stream.send_message(b"before").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"before");

        service.handle.shutdown("first");
        // The port closes at once…
        let deadline = tokio::time::Instant::now() + STEP;
        while TcpStream::connect(service.addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "the listener must close");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // …while the open session goes on.
        stream.send_message(b"during").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"during");
        assert!(!service.task.is_finished(), "the drain waits for the session");

        // A second request ends it now, without close_notify.
        service.handle.shutdown("second");
        timeout(Duration::from_secs(2), service.task).await.unwrap().unwrap();
        assert!(
            read_to_end(&mut stream).await.is_err(),
            "no close_notify after a second shutdown"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_without_drain_closes_sessions_with_close_notify() {
    timeout(STEP, async {
        let pki = Pki::new();
        let service = Service::start(&pki, Authorization::any_verified(), EchoConfig::default()).await;
        let mut stream = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();
        stream.send_message(b"x").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"x");
        let stats = service.stop().await;
        assert_eq!(stats.sessions_ended, 1);
        assert_eq!(stream.recv_message().await.unwrap(), None, "a clean close_notify");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reload_installs_a_new_configuration_for_new_handshakes() {
    timeout(STEP, async {
        let pki = Pki::new();
        let service = Service::start(&pki, Authorization::any_verified(), EchoConfig::default()).await;
        assert_eq!(service.tls.generation(), 0);
        service.handle.reload("test");
        let deadline = tokio::time::Instant::now() + STEP;
        while service.tls.generation() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the reload never installed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut stream = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();
        stream.send_message(b"after").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"after");
        stream.close().await.unwrap();
        service.stats_when(|s| s.sessions_ended == 1).await;
        service.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn proxy_protocol_peers_must_send_a_header() {
    timeout(STEP, async {
        let pki = Pki::new();
        let config = EchoConfig {
            proxy: Some(ProxySources::loopback()),
            ..EchoConfig::default()
        };
        let service = Service::start(&pki, Authorization::any_verified(), config).await;
        let client_config = Arc::new(channel::client_config(&pki.client_settings(Some(&pki.client1))).unwrap());

        // A header, then the TLS handshake of the client it names.
        let mut tcp = TcpStream::connect(service.addr).await.unwrap();
        tcp.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 443\r\n")
            .await
            .unwrap();
        let mut stream = ChannelStream::connect(Arc::clone(&client_config), "localhost", tcp, RotationPolicy::never())
            .await
            .unwrap();
        stream.send_message(b"proxied").await.unwrap();
        assert_eq!(stream.recv_message().await.unwrap().unwrap(), b"proxied");
        stream.close().await.unwrap();
        service.stats_when(|s| s.sessions_ended == 1).await;

        // A loopback peer without one is refused before any TLS.
        let tcp = TcpStream::connect(service.addr).await.unwrap();
        let direct = ChannelStream::connect(client_config, "localhost", tcp, RotationPolicy::never()).await;
        assert!(direct.is_err(), "a listed proxy must send a PROXY header");
        let stats = service.stats_when(|s| s.handshakes_failed == 1).await;
        assert_eq!(stats.sessions_started, 1);
        service.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn echo_round_trip_reads_back_exactly_what_it_sent() {
    timeout(STEP, async {
        let pki = Pki::new();
        // The server rotates every 2 messages: the client answers KeyUpdates mid-echo.
        let config = EchoConfig {
            policy: RotationPolicy::never().with_messages(2),
            ..EchoConfig::default()
        };
        let service = Service::start(&pki, Authorization::any_verified(), config).await;
        let mut stream = connect(&pki, service.addr, Some(&pki.client1)).await.unwrap();
        for message in [&b"one\n"[..], b"two\n", &[0x5a; 100_000][..]] {
            assert_eq!(channel::echo_round_trip(&mut stream, message).await.unwrap(), message);
        }
        let client = stream.stats();
        assert_eq!((client.messages_sent, client.messages_received), (3, 3));
        stream.close().await.unwrap();
        let stats = service.stats_when(|s| s.sessions_ended == 1).await;
        assert_eq!(stats.bytes_received, 100_008);
        service.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_echo_cut_short_is_a_truncated_message() {
    timeout(STEP, async {
        let pki = Pki::new();
        let settings = pki.server_settings(Authorization::any_verified());
        let server_config = Arc::new(channel::server_config(&settings).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for clean in [true, false] {
            // Echoes 2 of the 5 bytes, then closes: with close_notify, or by dropping the socket.
            let serve = async {
                let (tcp, _) = listener.accept().await.unwrap();
                let config = Arc::clone(&server_config);
                let mut stream = ChannelStream::accept(config, tcp, RotationPolicy::never())
                    .await
                    .unwrap();
                let mut got = [0u8; 5];
                stream.read_exact(&mut got).await.unwrap();
                stream.write_all(&got[..2]).await.unwrap();
                stream.flush().await.unwrap();
                if clean {
                    stream.close().await.unwrap();
                }
            };
            let client = async {
                let mut stream = connect(&pki, addr, Some(&pki.client1)).await.unwrap();
                channel::echo_round_trip(&mut stream, b"hello").await.unwrap_err()
            };
            let ((), error) = tokio::join!(serve, client);
            assert!(
                matches!(
                    error,
                    ChannelError::TruncatedMessage {
                        received: 2,
                        expected: 5
                    }
                ),
                "clean close {clean}: {error:?}"
            );
        }
    })
    .await
    .unwrap();
}
