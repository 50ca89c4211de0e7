//! Whole-message reads for the slow paths (login, reset, health checks) where
//! an allocation per message does not matter.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::frame::{read_header, FrameError};

/// A message read whole: its tag and body.
#[derive(Debug)]
pub struct Message {
    /// The tag byte.
    pub tag: u8,
    /// The body, without tag and length.
    pub body: BytesMut,
}

/// Errors reading a whole message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a bad length.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// Reads one whole message, using `buf` for bytes read ahead. Messages longer
/// than `cap` are refused before their body is buffered.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cap: usize,
) -> Result<Message, ReadError> {
    loop {
        if let Some(h) = read_header(buf)? {
            if h.len > cap {
                return Err(FrameError::TooLong {
                    tag: h.tag,
                    len: h.len,
                }
                .into());
            }
            if buf.len() >= h.total() {
                let mut msg = buf.split_to(h.total());
                let body = msg.split_off(5);
                return Ok(Message { tag: h.tag, body });
            }
            buf.reserve(h.total() - buf.len());
        } else {
            buf.reserve(512);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            )
            .into());
        }
    }
}
