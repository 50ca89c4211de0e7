//! Frontend (client → server) messages: tags, the few decoders the pooler
//! needs (password/SASL payloads, Parse names, query text) and encoders for
//! what the pooler sends to servers itself.

use bytes::{BufMut, BytesMut};

use super::frame::read_cstr;

/// Frontend message tags the pooler cares about.
pub mod tag {
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Close (statement or portal).
    pub const CLOSE: u8 = b'C';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse and SASLResponse all share 'p'.
    pub const PASSWORD: u8 = b'p';
    /// Query (simple protocol).
    pub const QUERY: u8 = b'Q';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
}

/// True for tags a client may legitimately send after login.
#[inline]
pub fn is_known_tag(t: u8) -> bool {
    matches!(
        t,
        b'B' | b'C'
            | b'd'
            | b'c'
            | b'f'
            | b'D'
            | b'E'
            | b'H'
            | b'F'
            | b'P'
            | b'p'
            | b'Q'
            | b'S'
            | b'X'
    )
}

/// The body of a SASLInitialResponse: mechanism name and initial data.
pub fn parse_sasl_initial(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mechanism, rest) = read_cstr(body)?;
    if rest.len() < 4 {
        return None;
    }
    let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let data = &rest[4..];
    if len < 0 {
        return Some((mechanism, &[]));
    }
    let len = len as usize;
    if data.len() < len {
        return None;
    }
    Some((mechanism, &data[..len]))
}

/// The password from a PasswordMessage body (NUL-terminated string).
pub fn parse_password(body: &[u8]) -> Option<&[u8]> {
    read_cstr(body).map(|(p, _)| p)
}

/// The statement name of a Parse body (empty = unnamed statement).
pub fn parse_statement_name(body: &[u8]) -> Option<&[u8]> {
    read_cstr(body).map(|(name, _)| name)
}

/// The portal and statement names at the front of a Bind body, and the rest
/// (parameter formats, values, result formats) as it is.
pub fn bind_names(body: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (portal, rest) = read_cstr(body)?;
    let (statement, after) = read_cstr(rest)?;
    Some((portal, statement, after))
}

/// The target of a Describe or Close body: the kind byte (`S`tatement or
/// `P`ortal), the name, and anything after the name (nothing, when valid).
pub fn target(body: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, rest) = body.split_first()?;
    let (name, after) = read_cstr(rest)?;
    Some((kind, name, after))
}

/// The query text of a Query body, or of a Parse body after its name.
pub fn query_text(tag_byte: u8, body: &[u8]) -> Option<&[u8]> {
    match tag_byte {
        tag::QUERY => read_cstr(body).map(|(q, _)| q),
        tag::PARSE => {
            let (_, rest) = read_cstr(body)?;
            read_cstr(rest).map(|(q, _)| q)
        }
        _ => None,
    }
}

/// Appends a simple Query message.
pub fn query(buf: &mut BytesMut, sql: &str) {
    buf.put_u8(tag::QUERY);
    buf.put_u32((4 + sql.len() + 1) as u32);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
}

/// Appends Terminate.
pub fn terminate(buf: &mut BytesMut) {
    buf.put_u8(tag::TERMINATE);
    buf.put_u32(4);
}

/// Appends a PasswordMessage carrying `data` (cleartext, md5 or SASL response bytes).
pub fn password_message(buf: &mut BytesMut, data: &[u8], nul_terminated: bool) {
    buf.put_u8(tag::PASSWORD);
    let len = 4 + data.len() + usize::from(nul_terminated);
    buf.put_u32(len as u32);
    buf.put_slice(data);
    if nul_terminated {
        buf.put_u8(0);
    }
}

/// Appends a SASLInitialResponse.
pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    buf.put_u8(tag::PASSWORD);
    buf.put_u32((4 + mechanism.len() + 1 + 4 + data.len()) as u32);
    buf.put_slice(mechanism.as_bytes());
    buf.put_u8(0);
    buf.put_u32(data.len() as u32);
    buf.put_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::split_message;

    #[test]
    fn sasl_initial_round_trip() {
        let mut buf = BytesMut::new();
        sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let (h, body) = split_message(&buf).unwrap().unwrap();
        assert_eq!(h.tag, b'p');
        let (mech, data) = parse_sasl_initial(body).unwrap();
        assert_eq!(mech, b"SCRAM-SHA-256");
        assert_eq!(data, b"n,,n=,r=abc");
    }

    #[test]
    fn truncated_sasl_initial_is_rejected() {
        assert_eq!(parse_sasl_initial(b"SCRAM\0\0\0\0\x09abc"), None);
        assert_eq!(parse_sasl_initial(b"SCRAM"), None);
    }

    #[test]
    fn bind_and_target_names() {
        assert_eq!(
            bind_names(b"p\0s1\0\0\0\0\0\0\0"),
            Some((&b"p"[..], &b"s1"[..], &b"\0\0\0\0\0\0"[..]))
        );
        assert_eq!(bind_names(b"p\0s1"), None);
        assert_eq!(target(b"Ss1\0"), Some((b'S', &b"s1"[..], &b""[..])));
        assert_eq!(target(b"P\0"), Some((b'P', &b""[..], &b""[..])));
        assert_eq!(target(b"S"), None);
        assert_eq!(target(b""), None);
    }

    #[test]
    fn query_and_parse_text() {
        let mut buf = BytesMut::new();
        query(&mut buf, "SELECT 1");
        let (h, body) = split_message(&buf).unwrap().unwrap();
        assert_eq!(query_text(h.tag, body), Some(&b"SELECT 1"[..]));
        let parse = b"s1\0SELECT $1\0\0\0";
        assert_eq!(parse_statement_name(parse), Some(&b"s1"[..]));
        assert_eq!(query_text(b'P', parse), Some(&b"SELECT $1"[..]));
    }
}
