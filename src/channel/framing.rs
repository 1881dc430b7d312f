//! Length-prefixed frames over any byte stream: each frame is a 4-byte big-endian length
//! followed by that many bytes (a zero-length frame is allowed).
//!
//! [`read_frame`] and [`write_frame`] work on any Tokio [`AsyncRead`] / [`AsyncWrite`]: a TLS
//! [`super::ChannelStream`] (whose [`super::ChannelStream::send_message`] and
//! [`super::ChannelStream::recv_message`] call them), a TCP stream, or an in-memory
//! `tokio::io::duplex` pipe in tests. They know nothing of TLS, and the stream knows nothing
//! of their format beyond calling them.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ChannelError;

/// The default maximum message size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The length prefix: 4 bytes, big-endian.
pub const HEADER_LEN: usize = 4;

/// A frame body is read (and its buffer grown) at most this much at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame into `buf` (cleared first), accepting bodies of at most `max` bytes.
///
/// Returns `true` when a whole frame is in `buf`, and `false` when the stream ended cleanly
/// *between* frames (no byte of a next frame had arrived). `buf` grows with the bytes that
/// arrive, never with the length announced, by at most 64 KiB at a time: a peer that announces
/// 16 MiB and sends nothing costs nothing.
///
/// # Errors
/// - [`ChannelError::MessageTooLarge`] when the announced length exceeds `max` (`size` is the
///   announced length; nothing of the body is read, and the stream is then out of step: close
///   it);
/// - [`ChannelError::TruncatedMessage`] when the stream ends inside a frame: in the length
///   prefix (`received` 1 to 3, `expected` [`HEADER_LEN`]) or in the body (both counts
///   include the 4-byte prefix);
/// - [`ChannelError::Io`] (`operation` `read`) for any error of the stream itself.
///
/// On an error `buf` holds whatever part of the body arrived.
pub async fn read_frame<R>(reader: &mut R, max: usize, buf: &mut Vec<u8>) -> Result<bool, ChannelError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    buf.clear();
    let io = |source| ChannelError::Io {
        operation: "read",
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0usize;
    while got < HEADER_LEN {
        let slot = header.get_mut(got..).unwrap_or_default();
        let n = reader.read(slot).await.map_err(io)?;
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(ChannelError::TruncatedMessage {
                received: got as u64,
                expected: HEADER_LEN as u64,
            });
        }
        got += n;
    }
    let announced = u32::from_be_bytes(header);
    let len = usize::try_from(announced).unwrap_or(usize::MAX);
    if len > max {
        return Err(ChannelError::MessageTooLarge {
            size: u64::from(announced),
            max: max as u64,
        });
    }
    buf.reserve(len.min(READ_CHUNK));
    while buf.len() < len {
        let start = buf.len();
        let want = (len - start).min(READ_CHUNK);
        buf.resize(start.saturating_add(want), 0);
        let slot = buf.get_mut(start..).unwrap_or_default();
        let read = reader.read(slot).await;
        let n = *read.as_ref().unwrap_or(&0);
        buf.truncate(start.saturating_add(n));
        read.map_err(io)?;
        if n == 0 {
            return Err(ChannelError::TruncatedMessage {
                received: (HEADER_LEN + start) as u64,
                expected: (HEADER_LEN as u64).saturating_add(len as u64),
            });
        }
    }
    Ok(true)
}

/// Writes one frame: the 4-byte big-endian length of `payload`, then `payload`. It does not
/// flush (a buffered writer may gather several frames): call `flush` to send them.
///
/// # Errors
/// [`ChannelError::MessageTooLarge`] when `payload` is longer than a 4-byte length can say
/// (`max` is `u32::MAX`; nothing is written), [`ChannelError::Io`] (`operation` `write`).
/// A caller with a lower limit checks it first, as [`super::ChannelStream::send_message`] does.
pub async fn write_frame<W>(writer: &mut W, payload: &[u8]) -> Result<(), ChannelError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let len = u32::try_from(payload.len()).map_err(|_| ChannelError::MessageTooLarge {
        size: payload.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    let io = |source| ChannelError::Io {
        operation: "write",
        source,
    };
    writer.write_all(&len.to_be_bytes()).await.map_err(io)?;
    writer.write_all(payload).await.map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncWriteExt, ReadBuf, duplex};

    use super::*;

    /// Everything `write` puts on the wire, read back from the other end of a pipe.
    async fn wire(write: impl AsyncFnOnce(&mut tokio::io::DuplexStream)) -> Vec<u8> {
        let (mut a, mut b) = duplex(1 << 20);
        write(&mut a).await;
        drop(a);
        let mut bytes = Vec::new();
        b.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    /// Reads one frame from `bytes` followed by the end of the stream.
    async fn read_from(bytes: &[u8], max: usize) -> (Result<bool, ChannelError>, Vec<u8>) {
        let (mut a, mut b) = duplex(1 << 20);
        a.write_all(bytes).await.unwrap();
        drop(a);
        let mut buf = b"stale".to_vec();
        let result = read_frame(&mut b, max, &mut buf).await;
        (result, buf)
    }

    #[tokio::test]
    async fn a_frame_is_a_big_endian_length_then_the_bytes() {
        let bytes = wire(async |w| {
            write_frame(w, b"hello").await.unwrap();
            write_frame(w, b"").await.unwrap();
            write_frame(w, &[0xab; 258]).await.unwrap();
        })
        .await;
        let mut expected = vec![0, 0, 0, 5];
        expected.extend_from_slice(b"hello");
        expected.extend_from_slice(&[0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 0, 1, 2]);
        expected.extend_from_slice(&[0xab; 258]);
        assert_eq!(bytes, expected);
    }

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly_between_frames() {
        let (mut a, mut b) = duplex(64);
        let writer = tokio::spawn(async move {
            for payload in [&b"one"[..], b"", &[7u8; 200_000][..]] {
                write_frame(&mut a, payload).await.unwrap();
            }
            a.flush().await.unwrap();
        });
        let mut buf = Vec::new();
        assert!(read_frame(&mut b, DEFAULT_MAX_MESSAGE, &mut buf).await.unwrap());
        assert_eq!(buf, b"one");
        assert!(read_frame(&mut b, DEFAULT_MAX_MESSAGE, &mut buf).await.unwrap());
        assert!(buf.is_empty(), "a zero-length frame is an empty message");
        assert!(read_frame(&mut b, DEFAULT_MAX_MESSAGE, &mut buf).await.unwrap());
        assert_eq!(buf, vec![7u8; 200_000]);
        writer.await.unwrap();
        // EOF between frames: a clean end, not an error.
        assert!(!read_frame(&mut b, DEFAULT_MAX_MESSAGE, &mut buf).await.unwrap());
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn the_maximum_is_inclusive_and_one_more_is_refused_unread() {
        let at_limit = wire(async |w| write_frame(w, &[1u8; 10]).await.unwrap()).await;
        let (result, buf) = read_from(&at_limit, 10).await;
        assert!(result.unwrap());
        assert_eq!(buf, [1u8; 10]);

        let over = wire(async |w| write_frame(w, &[1u8; 11]).await.unwrap()).await;
        let (result, buf) = read_from(&over, 10).await;
        assert!(
            matches!(result, Err(ChannelError::MessageTooLarge { size: 11, max: 10 })),
            "{result:?}"
        );
        assert!(buf.is_empty(), "nothing of the body is read");

        // The largest length a prefix can announce, with no body behind it.
        let (result, _) = read_from(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_MESSAGE).await;
        assert!(
            matches!(
                result,
                Err(ChannelError::MessageTooLarge { size: 0xffff_ffff, max }) if max == DEFAULT_MAX_MESSAGE as u64
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_zero_length_frame_with_max_zero_is_accepted() {
        let (result, buf) = read_from(&[0, 0, 0, 0], 0).await;
        assert!(result.unwrap());
        assert!(buf.is_empty());
        let (result, _) = read_from(&[0, 0, 0, 1, 9], 0).await;
        assert!(
            matches!(result, Err(ChannelError::MessageTooLarge { size: 1, max: 0 })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_inside_the_length_prefix_is_truncated() {
        for cut in 1..HEADER_LEN {
            let (result, _) = read_from(&[0, 0, 0, 3][..cut], DEFAULT_MAX_MESSAGE).await;
            assert!(
                matches!(result, Err(ChannelError::TruncatedMessage { received, expected: 4 }) if received == cut as u64),
                "cut at {cut}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_stream_that_ends_inside_the_body_is_truncated() {
        let (result, buf) = read_from(&[0, 0, 0, 5, b'a', b'b'], DEFAULT_MAX_MESSAGE).await;
        assert!(
            matches!(
                result,
                Err(ChannelError::TruncatedMessage {
                    received: 6,
                    expected: 9
                })
            ),
            "{result:?}"
        );
        assert_eq!(buf, b"ab", "the part that arrived");
        // The prefix complete, no body at all.
        let (result, _) = read_from(&[0, 0, 0, 5], DEFAULT_MAX_MESSAGE).await;
        assert!(
            matches!(
                result,
                Err(ChannelError::TruncatedMessage {
                    received: 4,
                    expected: 9
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_stream_is_a_clean_end() {
        let (result, buf) = read_from(&[], DEFAULT_MAX_MESSAGE).await;
        assert!(!result.unwrap());
        assert!(buf.is_empty(), "the buffer is cleared");
    }

    /// A stream whose reads and writes fail.
    struct Broken;

    impl AsyncRead for Broken {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
    }

    impl AsyncWrite for Broken {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn stream_errors_are_io_errors_naming_the_operation() {
        let mut buf = Vec::new();
        let read = read_frame(&mut Broken, DEFAULT_MAX_MESSAGE, &mut buf).await;
        assert!(
            matches!(&read, Err(ChannelError::Io { operation: "read", source }) if source.kind() == io::ErrorKind::ConnectionReset),
            "{read:?}"
        );
        let written = write_frame(&mut Broken, b"x").await;
        assert!(
            matches!(&written, Err(ChannelError::Io { operation: "write", source }) if source.kind() == io::ErrorKind::BrokenPipe),
            "{written:?}"
        );
    }
}
