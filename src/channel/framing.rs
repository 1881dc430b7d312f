//! A message API over [`ChannelStream`]: each message is a 4-byte big-endian length followed by
//! that many bytes. Messages larger than the stream's maximum (16 MiB by default, see
//! [`ChannelStream::set_max_message_size`]) are refused on both sides with
//! [`ChannelError::MessageTooLarge`], before anything is sent or buffered.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ChannelError;
use super::stream::ChannelStream;

/// The default maximum message size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The length prefix: 4 bytes, big-endian.
pub const HEADER_LEN: usize = 4;

/// A message body is read (and its buffer grown) at most this much at a time.
const READ_CHUNK: usize = 64 * 1024;

impl<IO: AsyncRead + AsyncWrite + Unpin> ChannelStream<IO> {
    /// Sends one message and flushes it.
    ///
    /// # Errors
    /// [`ChannelError::MessageTooLarge`] (nothing is sent), [`ChannelError::Io`].
    pub async fn send_message(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        let too_large = || ChannelError::MessageTooLarge {
            size: message.len() as u64,
            max: self.max_message as u64,
        };
        if message.len() > self.max_message {
            return Err(too_large());
        }
        let len = u32::try_from(message.len()).map_err(|_| too_large())?;
        let io = |source| ChannelError::Io {
            operation: "write",
            source,
        };
        self.write_all(&len.to_be_bytes()).await.map_err(io)?;
        self.write_all(message).await.map_err(io)?;
        self.flush().await.map_err(io)?;
        self.mark_message_sent();
        Ok(())
    }

    /// Receives one message; `None` when the peer closed cleanly between messages.
    ///
    /// # Errors
    /// [`ChannelError::MessageTooLarge`] when the announced length exceeds the maximum (the
    /// body is not read; the connection should be closed), [`ChannelError::TruncatedMessage`],
    /// [`ChannelError::Io`].
    pub async fn recv_message(&mut self) -> Result<Option<Vec<u8>>, ChannelError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0usize;
        while got < HEADER_LEN {
            let slot = header.get_mut(got..).unwrap_or_default();
            let n = self.read(slot).await.map_err(|source| ChannelError::Io {
                operation: "read",
                source,
            })?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(ChannelError::TruncatedMessage {
                    received: got as u64,
                    expected: HEADER_LEN as u64,
                });
            }
            got += n;
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > self.max_message {
            return Err(ChannelError::MessageTooLarge {
                size: len as u64,
                max: self.max_message as u64,
            });
        }
        // The buffer grows with the data received, not with the length announced: a peer that
        // announces 16 MiB and sends nothing costs nothing.
        let mut body = Vec::with_capacity(len.min(READ_CHUNK));
        while body.len() < len {
            let start = body.len();
            let want = (len - start).min(READ_CHUNK);
            body.resize(start.saturating_add(want), 0);
            let slot = body.get_mut(start..).unwrap_or_default();
            let n = self.read(slot).await.map_err(|source| ChannelError::Io {
                operation: "read",
                source,
            })?;
            body.truncate(start.saturating_add(n));
            if n == 0 {
                return Err(ChannelError::TruncatedMessage {
                    received: (HEADER_LEN + start) as u64,
                    expected: (HEADER_LEN as u64).saturating_add(len as u64),
                });
            }
        }
        self.mark_message_received();
        Ok(Some(body))
    }
}
