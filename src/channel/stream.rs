//! A TLS stream that rotates its traffic keys by policy.
//!
//! [`ChannelStream`] owns a tokio-rustls [`TlsStream`] and counts what passes through it. When
//! the [`RotationPolicy`] says so it calls rustls' `refresh_traffic_keys()`, which sends a TLS 1.3
//! `KeyUpdate` asking the peer to update too. One task owns the stream: after
//! `tokio::io::split` rustls would be out of reach, so the stream offers a single-task
//! [`exchange`] for full-duplex transfers instead.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use rustls::{ClientConfig, ProtocolVersion, ServerConfig};
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_rustls::TlsStream;

use super::ChannelError;
use super::framing::{self, DEFAULT_MAX_MESSAGE};
use super::identity::PeerIdentity;
use super::refusal::{Refusal, capture};
use super::rotation::{RotationPolicy, RotationState, RotationStats, RotationTrigger};

/// Traffic counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChannelStats {
    /// Application bytes sent.
    pub bytes_sent: u64,
    /// Application bytes received.
    pub bytes_received: u64,
    /// Messages sent (frames, or marks by the application).
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Key rotations, by cause.
    pub rotations: RotationStats,
}

/// The most plaintext [`ChannelStream::alert_after_failure`] reads (and drops) while it looks
/// for the peer's alert.
pub const MAX_DRAINED_AFTER_FAILURE: usize = 1024 * 1024;

/// A TLS connection (client or server side) that applies a [`RotationPolicy`].
pub struct ChannelStream<IO> {
    inner: TlsStream<IO>,
    rotation: RotationState,
    stats: ChannelStats,
    /// The peer's identity, made from rustls' copy of its certificate on first use (rustls
    /// keeps the certificate anyway): a connection nobody asks about holds none, and the
    /// boxed form keeps the stream small.
    peer: OnceLock<Option<Box<PeerIdentity>>>,
    can_rotate: bool,
    flush_pending: bool,
    max_message: usize,
}

impl<IO> std::fmt::Debug for ChannelStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelStream")
            .field("peer", &self.peer_identity())
            .field("stats", &self.stats)
            .field("policy", self.rotation.policy())
            .finish_non_exhaustive()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ChannelStream<IO> {
    /// Runs the server side of a handshake on `io`.
    ///
    /// # Errors
    /// [`ChannelError::Refused`] when the client's certificate was refused (or it sent none):
    /// [`ChannelError::refusal`] says why, as a [`super::Refusal`]; [`ChannelError::Handshake`]
    /// for any other failure. The caller sets the time limit (`tokio::time::timeout`).
    pub async fn accept(config: Arc<ServerConfig>, io: IO, policy: RotationPolicy) -> Result<Self, ChannelError> {
        let (result, refusal) = capture(tokio_rustls::TlsAcceptor::from(config).accept(io)).await;
        let stream = result.map_err(|source| handshake_error(source, refusal))?;
        Ok(Self::new(TlsStream::Server(stream), policy))
    }

    /// Runs the client side of a handshake on `io` for `server_name` (a DNS name or an IP
    /// address, which the server's certificate must match).
    ///
    /// # Errors
    /// [`ChannelError::BadServerName`]; [`ChannelError::Refused`] when the server's certificate
    /// was refused ([`ChannelError::refusal`] says why); [`ChannelError::Handshake`] for any
    /// other failure (a server that refuses our certificate does so after the handshake, in
    /// TLS 1.3: the first read reports it).
    pub async fn connect(
        config: Arc<ClientConfig>,
        server_name: &str,
        io: IO,
        policy: RotationPolicy,
    ) -> Result<Self, ChannelError> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| ChannelError::BadServerName {
            name: server_name.to_string(),
        })?;
        let (result, refusal) = capture(tokio_rustls::TlsConnector::from(config).connect(name, io)).await;
        let stream = result.map_err(|source| handshake_error(source, refusal))?;
        Ok(Self::new(TlsStream::Client(stream), policy))
    }
}

/// A failed handshake as an error: [`ChannelError::Refused`] when this side refused the peer's
/// certificate (with the verifier's reason, else the one the rustls error implies).
fn handshake_error(source: io::Error, recorded: Option<Refusal>) -> ChannelError {
    let implied = || {
        source
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .and_then(Refusal::from_tls)
    };
    match recorded.or_else(implied) {
        Some(refusal) => ChannelError::Refused {
            refusal: Box::new(refusal),
            source,
        },
        None => ChannelError::Handshake { source },
    }
}

impl<IO> ChannelStream<IO> {
    /// Wraps an established TLS stream. Rotation only happens on TLS 1.3 connections.
    pub fn new(inner: TlsStream<IO>, policy: RotationPolicy) -> Self {
        let (_, state) = inner.get_ref();
        let can_rotate = state.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        if !can_rotate && !policy.is_never() {
            tracing::warn!("the connection is not TLS 1.3: its keys cannot be rotated");
        }
        Self {
            inner,
            rotation: RotationState::new(policy, Instant::now()),
            stats: ChannelStats::default(),
            peer: OnceLock::new(),
            can_rotate,
            flush_pending: false,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// The peer's identity from its (verified) certificate; `None` when it sent none. Made on
    /// the first call and kept; [`ChannelStream::describe_peer`] makes one without keeping it.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.get_or_init(|| self.describe_peer().map(Box::new)).as_deref()
    }

    /// The peer's identity made afresh from its (verified) certificate, not kept by the stream:
    /// for a long-lived connection that needs it only now and then (e.g. for a log line), so
    /// that it holds no copy while idle. `None` when the peer sent no certificate.
    pub fn describe_peer(&self) -> Option<PeerIdentity> {
        self.inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(PeerIdentity::from_certificate)
    }

    /// Traffic and rotation counters so far.
    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            rotations: self.rotation.stats,
            ..self.stats
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RotationPolicy {
        self.rotation.policy()
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.get_ref().1.protocol_version()
    }

    /// True when the handshake resumed an earlier session (a TLS 1.3 ticket) instead of a full
    /// handshake.
    pub fn resumed(&self) -> bool {
        self.inner.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.inner.get_ref().1.negotiated_cipher_suite()
    }

    /// Counts one message sent, for [`RotationPolicy::messages`] (the message API does this
    /// itself; raw-stream users mark their own message boundaries).
    pub fn mark_message_sent(&mut self) {
        self.stats.messages_sent = self.stats.messages_sent.saturating_add(1);
        self.rotation.record_message_sent();
    }

    /// Counts one message received.
    pub fn mark_message_received(&mut self) {
        self.stats.messages_received = self.stats.messages_received.saturating_add(1);
        self.rotation.record_message_received();
        self.rotate_if_due_silently();
    }

    /// When a time-based rotation will be due if no traffic comes first; the owner of the stream
    /// should call [`ChannelStream::maintain`] then.
    pub fn next_rotation_deadline(&self) -> Option<Instant> {
        if self.can_rotate {
            self.rotation.next_deadline()
        } else {
            None
        }
    }

    /// The TLS stream underneath (e.g. to extract secrets in tests).
    pub fn get_ref(&self) -> &TlsStream<IO> {
        &self.inner
    }

    /// Unwraps the TLS stream.
    pub fn into_inner(self) -> TlsStream<IO> {
        self.inner
    }

    /// Sets the largest message [`ChannelStream::recv_message`] accepts (and `send_message`
    /// sends).
    pub fn set_max_message_size(&mut self, max: usize) {
        self.max_message = max;
    }

    /// Rotates now if the policy says so; returns whether it did. The `KeyUpdate` is queued
    /// and goes out with the next write or flush.
    ///
    /// # Errors
    /// [`ChannelError::Rotation`] when rustls cannot update the keys.
    pub fn rotate_if_due(&mut self) -> Result<bool, ChannelError> {
        self.rotate_if_due_when(false)
    }

    /// [`ChannelStream::rotate_if_due`]; `sending`: application data follows the `KeyUpdate`
    /// at once (the write path), so the cap on rotations without sending does not apply.
    fn rotate_if_due_when(&mut self, sending: bool) -> Result<bool, ChannelError> {
        if !self.can_rotate {
            return Ok(false);
        }
        let now = Instant::now();
        match self.rotation.due(now, sending) {
            Some(trigger) => self.rotate(trigger, now).map(|()| true),
            None => Ok(false),
        }
    }

    /// Rotates now, whatever the policy says (queued like [`ChannelStream::rotate_if_due`]).
    ///
    /// # Errors
    /// [`ChannelError::Rotation`], e.g. on a TLS 1.2 connection.
    pub fn rotate_now(&mut self) -> Result<(), ChannelError> {
        self.rotate(RotationTrigger::Requested, Instant::now())
    }

    fn rotate(&mut self, trigger: RotationTrigger, now: Instant) -> Result<(), ChannelError> {
        let result = match &mut self.inner {
            TlsStream::Client(s) => s.get_mut().1.refresh_traffic_keys(),
            TlsStream::Server(s) => s.get_mut().1.refresh_traffic_keys(),
        };
        result.map_err(|source| ChannelError::Rotation { source })?;
        self.rotation.rotated(trigger, now);
        self.flush_pending = true;
        tracing::debug!(%trigger, total = self.rotation.stats.total(), "traffic keys rotated");
        Ok(())
    }

    /// Rotation from the receive path: a failure there is reported by the next write.
    fn rotate_if_due_silently(&mut self) {
        if let Err(error) = self.rotate_if_due() {
            tracing::warn!("key rotation failed: {error}");
            self.can_rotate = false;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ChannelStream<IO> {
    /// Applies a due time-based rotation and sends any queued `KeyUpdate`.
    ///
    /// # Errors
    /// [`ChannelError::Rotation`] or [`ChannelError::Io`].
    pub async fn maintain(&mut self) -> Result<(), ChannelError> {
        self.rotate_if_due()?;
        self.flush().await.map_err(|source| ChannelError::Io {
            operation: "flush",
            source,
        })
    }

    /// Sends `close_notify` and shuts the transport's write side.
    ///
    /// # Errors
    /// [`ChannelError::Io`].
    pub async fn close(&mut self) -> Result<(), ChannelError> {
        self.shutdown().await.map_err(|source| ChannelError::Io {
            operation: "shutdown",
            source,
        })
    }

    /// After a write (or flush) failed with a broken pipe or a reset: reads what the peer sent
    /// before the connection broke, for at most `within` and [`MAX_DRAINED_AFTER_FAILURE`]
    /// bytes (plaintext read is dropped), and returns the TLS error found there as the read
    /// error rustls reported, e.g. the alert by which a TLS 1.3 server refuses our certificate
    /// after our side of the handshake ended. A peer that sends the alert and closes makes our
    /// next write fail before anything reads the alert, so without this a refusal would pass
    /// for a lost connection. `None` when nothing the peer sent explains the failure (it
    /// closed, reset, or `within` passed).
    pub async fn alert_after_failure(&mut self, within: std::time::Duration) -> Option<io::Error> {
        use tokio::io::AsyncReadExt;
        let drain = async {
            let mut buf = vec![0u8; 16 * 1024];
            let mut drained = 0usize;
            loop {
                match self.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(n) => {
                        drained = drained.saturating_add(n);
                        if drained >= MAX_DRAINED_AFTER_FAILURE {
                            return None;
                        }
                    }
                    Err(error) => {
                        return error
                            .get_ref()
                            .is_some_and(|e| e.is::<rustls::Error>())
                            .then_some(error);
                    }
                }
            }
        };
        tokio::time::timeout(within, drain).await.ok().flatten()
    }

    /// Sends one message (a frame of [`framing::write_frame`]) and flushes it.
    ///
    /// # Errors
    /// [`ChannelError::MessageTooLarge`] when `message` is longer than the stream's maximum
    /// ([`ChannelStream::set_max_message_size`], 16 MiB by default; nothing is sent),
    /// [`ChannelError::Io`].
    pub async fn send_message(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        if message.len() > self.max_message {
            return Err(ChannelError::MessageTooLarge {
                size: message.len() as u64,
                max: self.max_message as u64,
            });
        }
        framing::write_frame(self, message).await?;
        self.flush().await.map_err(|source| ChannelError::Io {
            operation: "write",
            source,
        })?;
        self.mark_message_sent();
        Ok(())
    }

    /// Receives one message (a frame of [`framing::read_frame`]); `None` when the peer closed
    /// cleanly between messages.
    ///
    /// # Errors
    /// [`ChannelError::MessageTooLarge`] when the announced length exceeds the maximum (the
    /// body is not read; the connection should be closed), [`ChannelError::TruncatedMessage`],
    /// [`ChannelError::Io`]: see [`framing::read_frame`].
    pub async fn recv_message(&mut self) -> Result<Option<Vec<u8>>, ChannelError> {
        let max = self.max_message;
        let mut body = Vec::new();
        if !framing::read_frame(self, max, &mut body).await? {
            return Ok(None);
        }
        self.mark_message_received();
        Ok(Some(body))
    }

    fn poll_pending_flush(&mut self, cx: &mut Context<'_>) {
        if self.flush_pending {
            match Pin::new(&mut self.inner).poll_flush(cx) {
                Poll::Ready(_) => self.flush_pending = false,
                Poll::Pending => {}
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ChannelStream<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poll_pending_flush(cx);
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let n = buf.filled().len().saturating_sub(before) as u64;
        this.stats.bytes_received = this.stats.bytes_received.saturating_add(n);
        this.rotation.record_received(n);
        this.rotate_if_due_silently();
        this.poll_pending_flush(cx);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncBufRead for ChannelStream<IO> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.poll_pending_flush(cx);
        Pin::new(&mut this.inner).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        Pin::new(&mut this.inner).consume(amount);
        this.stats.bytes_received = this.stats.bytes_received.saturating_add(amount as u64);
        this.rotation.record_received(amount as u64);
        this.rotate_if_due_silently();
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ChannelStream<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Hand rustls plaintext only once its TLS output is out. rustls attaches a queued
        // `KeyUpdate` answer to every write attempt, even one it accepts no byte of (its output
        // buffer full), and a peer closes the connection after 32 `KeyUpdate`s without
        // application data in between (RFC 8446 section 4.6.3 allows it to limit them;
        // rustls and BoringSSL do: `PeerMisbehaved::TooManyKeyUpdateRequests`). With the
        // buffer drained the write below is accepted, so every `KeyUpdate` we send (an answer,
        // or our own request just below) is followed by application data.
        if this.inner.get_ref().1.wants_write() {
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            this.flush_pending = false;
        }
        this.rotate_if_due_when(true).map_err(io::Error::other)?;
        let mut len = buf.len();
        if this.can_rotate {
            let budget = this.rotation.send_budget();
            // A budget of 0 here means a rotation is due but postponed by min_interval.
            if budget > 0 {
                len = len.min(usize::try_from(budget).unwrap_or(usize::MAX));
            }
        }
        let chunk = buf.get(..len).unwrap_or(buf);
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, chunk))?;
        this.stats.bytes_sent = this.stats.bytes_sent.saturating_add(n as u64);
        this.rotation.record_sent(n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.flush_pending = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Result of an [`exchange`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exchanged {
    /// Bytes written.
    pub sent: u64,
    /// Bytes read back.
    pub received: u64,
}

/// Writes `total` bytes in writes of `write_size` (a repeating pattern) while reading the echo,
/// in one task, until as many bytes came back as were sent or the peer closed. For echo
/// services; works on any stream (plain TCP too, for comparisons).
///
/// # Errors
/// The first I/O error.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    total: u64,
    write_size: usize,
) -> io::Result<Exchanged> {
    let pattern: Vec<u8> = (0..write_size.max(1)).map(|i| (i % 251) as u8).collect();
    let mut read_buf = vec![0u8; 64 * 1024];
    let mut done = Exchanged::default();
    let mut offset = 0usize;
    let mut flushed = true;
    poll_fn(|cx| {
        loop {
            let mut progress = false;
            if done.sent < total {
                let left = usize::try_from(total.saturating_sub(done.sent)).unwrap_or(usize::MAX);
                let end = pattern.len().min(offset.saturating_add(left));
                let chunk = pattern.get(offset..end).unwrap_or(&[]);
                if let Poll::Ready(n) = Pin::new(&mut *stream).poll_write(cx, chunk)? {
                    if n == 0 {
                        return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
                    }
                    done.sent = done.sent.saturating_add(n as u64);
                    offset = offset.saturating_add(n) % pattern.len().max(1);
                    flushed = false;
                    progress = true;
                }
            } else if !flushed && Pin::new(&mut *stream).poll_flush(cx)?.is_ready() {
                flushed = true;
            }
            let mut rb = ReadBuf::new(&mut read_buf);
            if let Poll::Ready(()) = Pin::new(&mut *stream).poll_read(cx, &mut rb)? {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
                done.received = done.received.saturating_add(n as u64);
                progress = true;
            }
            if done.sent >= total && done.received >= total && flushed {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await?;
    Ok(done)
}
