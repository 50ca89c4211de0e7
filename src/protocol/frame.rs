//! Message framing: a one-byte tag, a four-byte big-endian length that counts
//! itself, then the body. Sizes are checked before anything is allocated.

use thiserror::Error;

/// The largest message (length field value) the pooler accepts from a peer.
/// PostgreSQL itself refuses most messages over 1 GiB; so do we.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Size of a message header: tag + length.
pub const HEADER_LEN: usize = 5;

/// A framing violation: the peer sent a length the protocol does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length field is smaller than the four bytes it occupies.
    #[error("invalid message length {len} for message type '{tag}'", tag = char::from(*.tag))]
    TooShort {
        /// The message's tag byte.
        tag: u8,
        /// The length field as sent.
        len: usize,
    },
    /// The length field exceeds [`MAX_MESSAGE_LEN`].
    #[error("message of type '{tag}' is {len} bytes, over the limit of {MAX_MESSAGE_LEN}", tag = char::from(*.tag))]
    TooLong {
        /// The message's tag byte.
        tag: u8,
        /// The length field as sent.
        len: usize,
    },
}

/// A decoded message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type byte.
    pub tag: u8,
    /// The length field: body length plus four.
    pub len: usize,
}

impl Header {
    /// Total bytes on the wire: tag + length field + body.
    #[inline]
    pub fn total(&self) -> usize {
        1 + self.len
    }

    /// Length of the body alone.
    #[inline]
    pub fn body_len(&self) -> usize {
        self.len - 4
    }

    /// The body of this message, whose header starts at `at` in `buf` (which
    /// must hold the whole message).
    #[inline]
    pub fn body_in<'b>(&self, buf: &'b [u8], at: usize) -> &'b [u8] {
        &buf[at + HEADER_LEN..at + self.total()]
    }
}

/// Reads a header from the front of `buf`: `Ok(None)` if fewer than five bytes
/// are there, an error if the length is out of bounds.
#[inline]
pub fn read_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(FrameError::TooShort { tag, len });
    }
    if len > MAX_MESSAGE_LEN {
        return Err(FrameError::TooLong { tag, len });
    }
    Ok(Some(Header { tag, len }))
}

/// Splits the first whole message off `buf`: `Ok(Some((header, body)))` when
/// it is complete, `Ok(None)` when more bytes are needed.
#[inline]
pub fn split_message(buf: &[u8]) -> Result<Option<(Header, &[u8])>, FrameError> {
    match read_header(buf)? {
        Some(h) if buf.len() >= h.total() => Ok(Some((h, &buf[HEADER_LEN..h.total()]))),
        _ => Ok(None),
    }
}

/// Reads a NUL-terminated string from the front of `buf`, returning it and the rest.
#[inline]
pub fn read_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    // The standard library's NUL search reads a word at a time; a byte-wise
    // `position` costs about three instructions per byte of query text.
    let end = std::ffi::CStr::from_bytes_until_nul(buf)
        .ok()?
        .to_bytes()
        .len();
    Some((&buf[..end], &buf[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(read_header(b"Z\0\0\0").unwrap(), None);
        let h = read_header(b"Z\0\0\0\x05I").unwrap().unwrap();
        assert_eq!(h, Header { tag: b'Z', len: 5 });
        assert_eq!(h.total(), 6);
        assert_eq!(h.body_len(), 1);
    }

    #[test]
    fn rejects_bad_lengths_before_allocating() {
        assert_eq!(
            read_header(b"Q\0\0\0\x03").unwrap_err(),
            FrameError::TooShort { tag: b'Q', len: 3 }
        );
        let huge = [b'Q', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_header(&huge),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn split_waits_for_whole_message() {
        let msg = b"Q\0\0\0\x0dSELECT 1\0";
        assert_eq!(split_message(&msg[..8]).unwrap(), None);
        let (h, body) = split_message(msg).unwrap().unwrap();
        assert_eq!(h.tag, b'Q');
        assert_eq!(body, b"SELECT 1\0");
    }

    #[test]
    fn cstr() {
        assert_eq!(read_cstr(b"ab\0cd"), Some((&b"ab"[..], &b"cd"[..])));
        assert_eq!(read_cstr(b"ab"), None);
        assert_eq!(read_cstr(b"\0"), Some((&b""[..], &b""[..])));
        // Past the word-at-a-time search's block size: the first NUL wins.
        let long = [&[b'x'; 40][..], b"\0y\0"].concat();
        assert_eq!(read_cstr(&long), Some((&long[..40], &b"y\0"[..])));
    }
}
