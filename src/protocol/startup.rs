//! The untagged first packet of a connection: StartupMessage, SSLRequest,
//! GSSENCRequest or CancelRequest.

use thiserror::Error;

/// Largest startup packet accepted (PostgreSQL uses 10000 as well).
pub const MAX_STARTUP_LEN: usize = 10_000;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Why a startup packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartupError {
    /// Length field below 8 or above [`MAX_STARTUP_LEN`].
    #[error("invalid startup packet length {0}")]
    BadLength(usize),
    /// A protocol major version other than 3.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedVersion {
        /// Major version sent.
        major: u16,
        /// Minor version sent.
        minor: u16,
    },
    /// Parameters not NUL-terminated pairs, or not UTF-8.
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
}

/// A decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// A cancel request for a (pid, secret) key.
    Cancel {
        /// The process id from BackendKeyData.
        pid: u32,
        /// The secret from BackendKeyData.
        secret: u32,
    },
    /// A StartupMessage: protocol 3.x and its parameters in order.
    Startup {
        /// Minor protocol version requested.
        minor: u16,
        /// Name/value pairs (user, database, options, GUCs, `_pq_.` options).
        params: Vec<(String, String)>,
    },
}

/// Reads the length field of a startup packet, validating its bounds.
pub fn packet_len(header: [u8; 4]) -> Result<usize, StartupError> {
    let len = u32::from_be_bytes(header) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    Ok(len)
}

/// Decodes a startup packet's body (everything after the length field).
pub fn parse(body: &[u8]) -> Result<StartupPacket, StartupError> {
    if body.len() < 4 {
        return Err(StartupError::Malformed("too short"));
    }
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    match code {
        SSL_REQUEST => return Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => return Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            if rest.len() != 8 {
                return Err(StartupError::Malformed("cancel request length"));
            }
            let pid = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let secret = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            return Ok(StartupPacket::Cancel { pid, secret });
        }
        _ => {}
    }
    let major = (code >> 16) as u16;
    let minor = (code & 0xffff) as u16;
    if major != 3 {
        return Err(StartupError::UnsupportedVersion { major, minor });
    }
    let mut params = Vec::new();
    let mut parts = rest.split(|&b| b == 0);
    loop {
        let name = parts
            .next()
            .ok_or(StartupError::Malformed("missing terminator"))?;
        if name.is_empty() {
            break;
        }
        let value = parts
            .next()
            .ok_or(StartupError::Malformed("parameter without value"))?;
        let name =
            std::str::from_utf8(name).map_err(|_| StartupError::Malformed("name is not UTF-8"))?;
        let value = std::str::from_utf8(value)
            .map_err(|_| StartupError::Malformed("value is not UTF-8"))?;
        params.push((name.to_owned(), value.to_owned()));
    }
    Ok(StartupPacket::Startup { minor, params })
}

/// Encodes a StartupMessage for protocol 3.0 with the given parameters.
pub fn encode_startup(buf: &mut bytes::BytesMut, params: &[(&str, &str)]) {
    use bytes::BufMut;
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(196_608);
    for (k, v) in params {
        buf.put_slice(k.as_bytes());
        buf.put_u8(0);
        buf.put_slice(v.as_bytes());
        buf.put_u8(0);
    }
    buf.put_u8(0);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Encodes a CancelRequest.
pub fn encode_cancel(buf: &mut bytes::BytesMut, pid: u32, secret: u32) {
    use bytes::BufMut;
    buf.put_u32(16);
    buf.put_u32(CANCEL_REQUEST);
    buf.put_u32(pid);
    buf.put_u32(secret);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bounded() {
        assert_eq!(
            packet_len(7u32.to_be_bytes()),
            Err(StartupError::BadLength(7))
        );
        assert_eq!(
            packet_len(20_000u32.to_be_bytes()),
            Err(StartupError::BadLength(20_000))
        );
        assert_eq!(packet_len(8u32.to_be_bytes()), Ok(8));
    }

    #[test]
    fn parses_startup_and_special_codes() {
        let mut buf = bytes::BytesMut::new();
        encode_startup(&mut buf, &[("user", "app"), ("database", "db")]);
        let p = parse(&buf[4..]).unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "app".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
        assert_eq!(
            parse(&80_877_103u32.to_be_bytes()).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            parse(&80_877_104u32.to_be_bytes()).unwrap(),
            StartupPacket::GssEncRequest
        );
        let mut c = bytes::BytesMut::new();
        encode_cancel(&mut c, 7, 9);
        assert_eq!(
            parse(&c[4..]).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        assert!(matches!(
            parse(&0x0002_0000u32.to_be_bytes()),
            Err(StartupError::UnsupportedVersion { major: 2, .. })
        ));
        let mut body = 196_608u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0app");
        assert!(parse(&body).is_err());
    }
}
