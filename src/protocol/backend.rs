//! Backend (server → client) messages: encoders for what the pooler says to
//! clients itself, and cheap inspectors for the few server messages the relay
//! looks into. Tags here mean what they mean coming from a server.

use bytes::{BufMut, BytesMut};

use super::frame::read_cstr;

/// Backend message tags the pooler cares about.
pub mod tag {
    /// Authentication request / result.
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData (cancel key).
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// CopyInResponse.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// CopyBothResponse.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// NotificationResponse (LISTEN/NOTIFY).
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// 'I': not in a transaction block.
    Idle,
    /// 'T': in a transaction block.
    InTransaction,
    /// 'E': in a failed transaction block.
    Failed,
}

impl TxStatus {
    /// Decodes the status byte; unknown bytes are treated as "in a transaction"
    /// so the pooler never releases a connection it does not understand.
    #[inline]
    pub fn from_byte(b: u8) -> TxStatus {
        match b {
            b'I' => TxStatus::Idle,
            b'E' => TxStatus::Failed,
            _ => TxStatus::InTransaction,
        }
    }

    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// Error or notice severity as the pooler sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Ends the statement; the session goes on.
    Error,
    /// Ends the session.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

fn put_message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let len_at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - len_at) as u32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Appends AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    put_message(buf, tag::AUTHENTICATION, |b| b.put_u32(0));
}

/// Appends AuthenticationCleartextPassword.
pub fn auth_cleartext(buf: &mut BytesMut) {
    put_message(buf, tag::AUTHENTICATION, |b| b.put_u32(3));
}

/// Appends AuthenticationMD5Password with the given salt.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_u32(5);
        b.put_slice(&salt);
    });
}

/// Appends AuthenticationSASL offering the given mechanisms.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_u32(10);
        for m in mechanisms {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}

/// Appends AuthenticationSASLContinue.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_u32(11);
        b.put_slice(data);
    });
}

/// Appends AuthenticationSASLFinal.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, tag::AUTHENTICATION, |b| {
        b.put_u32(12);
        b.put_slice(data);
    });
}

/// Appends ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put_message(buf, tag::PARAMETER_STATUS, |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    });
}

/// Appends BackendKeyData.
pub fn backend_key_data(buf: &mut BytesMut, pid: u32, secret: u32) {
    put_message(buf, tag::BACKEND_KEY_DATA, |b| {
        b.put_u32(pid);
        b.put_u32(secret);
    });
}

/// Appends ReadyForQuery.
pub fn ready_for_query(buf: &mut BytesMut, status: TxStatus) {
    put_message(buf, tag::READY_FOR_QUERY, |b| b.put_u8(status.byte()));
}

/// Appends RowDescription for text-format columns of the given type OIDs.
pub fn row_description(buf: &mut BytesMut, columns: &[(&str, u32)]) {
    put_message(buf, b'T', |b| {
        b.put_u16(columns.len() as u16);
        for (name, oid) in columns {
            put_cstr(b, name.as_bytes());
            b.put_u32(0); // table oid
            b.put_u16(0); // column number
            b.put_u32(*oid);
            b.put_i16(if *oid == 20 {
                8
            } else if *oid == 23 {
                4
            } else {
                -1
            });
            b.put_i32(-1); // type modifier
            b.put_u16(0); // text format
        }
    });
}

/// Appends a DataRow of text values (`None` = NULL).
pub fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
    put_message(buf, b'D', |b| {
        b.put_u16(values.len() as u16);
        for v in values {
            match v {
                Some(v) => {
                    b.put_u32(v.len() as u32);
                    b.put_slice(v.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

/// Appends CommandComplete with `tag`.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put_message(buf, tag::COMMAND_COMPLETE, |b| put_cstr(b, tag.as_bytes()));
}

/// Appends EmptyQueryResponse.
pub fn empty_query(buf: &mut BytesMut) {
    put_message(buf, b'I', |_| {});
}

/// Appends NegotiateProtocolVersion: the newest protocol version we support
/// for major version 3 (sent as the full code, `3 << 16 | minor`, as
/// PostgreSQL does) and the `_pq_.` options we did not recognise.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: u32, unrecognized: &[String]) {
    put_message(buf, tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_u32((3 << 16) | minor);
        b.put_u32(unrecognized.len() as u32);
        for o in unrecognized {
            put_cstr(b, o.as_bytes());
        }
    });
}

/// Appends an ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(buf: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    put_message(buf, tag::ERROR_RESPONSE, |b| {
        b.put_u8(b'S');
        put_cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'V');
        put_cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'C');
        put_cstr(b, code.as_bytes());
        b.put_u8(b'M');
        put_cstr(b, message.as_bytes());
        b.put_u8(0);
    });
}

/// The fields of an ErrorResponse or NoticeResponse that the pooler uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Non-localized severity ('V'), falling back to 'S'.
    pub severity: String,
    /// SQLSTATE ('C').
    pub code: String,
    /// Primary message ('M').
    pub message: String,
}

impl ErrorFields {
    /// Parses an ErrorResponse / NoticeResponse body. Malformed bodies give
    /// whatever fields could be read.
    pub fn parse(mut body: &[u8]) -> ErrorFields {
        let mut f = ErrorFields::default();
        while let Some((&kind, rest)) = body.split_first() {
            if kind == 0 {
                break;
            }
            let Some((value, rest)) = read_cstr(rest) else {
                break;
            };
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'V' => f.severity = value,
                b'S' if f.severity.is_empty() => f.severity = value,
                b'C' => f.code = value,
                b'M' => f.message = value,
                _ => {}
            }
            body = rest;
        }
        f
    }

    /// True for FATAL and PANIC: the server ends the session after it.
    pub fn is_fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }
}

/// True if an ErrorResponse body has severity FATAL or PANIC (no
/// allocation). The non-localized 'V' field decides; 'S' is the fallback.
pub fn is_fatal(mut body: &[u8]) -> bool {
    let fatal = |v: &[u8]| v == b"FATAL" || v == b"PANIC";
    let mut localized = false;
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            break;
        }
        let Some((value, rest)) = read_cstr(rest) else {
            break;
        };
        match kind {
            b'V' => return fatal(value),
            b'S' => localized = fatal(value),
            _ => {}
        }
        body = rest;
    }
    localized
}

/// Finds just the SQLSTATE of an ErrorResponse body without allocating.
pub fn error_code(mut body: &[u8]) -> Option<&[u8]> {
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            return None;
        }
        let (value, rest) = read_cstr(rest)?;
        if kind == b'C' {
            return Some(value);
        }
        body = rest;
    }
    None
}

/// The first column of a DataRow body; `None` if NULL or malformed.
pub fn first_column(body: &[u8]) -> Option<&[u8]> {
    let count = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    if count == 0 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    body.get(6..6 + len)
}

/// Splits a ParameterStatus body into name and value.
pub fn parse_parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, rest) = read_cstr(body)?;
    let (value, _) = read_cstr(rest)?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::split_message;

    #[test]
    fn error_round_trip() {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Fatal, "53300", "too many clients");
        let (h, body) = split_message(&buf).unwrap().unwrap();
        assert_eq!(h.tag, b'E');
        let f = ErrorFields::parse(body);
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "53300");
        assert_eq!(f.message, "too many clients");
        assert!(f.is_fatal());
        assert!(is_fatal(body));
        let mut e = BytesMut::new();
        error_response(&mut e, Severity::Error, "22012", "division by zero");
        assert!(!is_fatal(&e[5..]));
        assert_eq!(error_code(body), Some(&b"53300"[..]));
    }

    #[test]
    fn parameter_status_round_trip() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "TimeZone", "UTC");
        let (_, body) = split_message(&buf).unwrap().unwrap();
        assert_eq!(
            parse_parameter_status(body),
            Some((&b"TimeZone"[..], &b"UTC"[..]))
        );
    }

    #[test]
    fn ready_for_query_bytes() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, TxStatus::Idle);
        assert_eq!(&buf[..], b"Z\0\0\0\x05I");
        assert_eq!(TxStatus::from_byte(b'?'), TxStatus::InTransaction);
    }
}
