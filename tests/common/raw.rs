//! A raw-bytes protocol client for what no driver sends: SSLRequest, GSSENCRequest,
//! CancelRequest, odd protocol versions, `_pq_.` options, garbage and oversized messages.
//! Logs in itself (cleartext, md5 or SCRAM via `postgres-protocol`) when a test needs an
//! authenticated raw connection.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Protocol 3.0 as a startup version code.
pub const PROTOCOL_3_0: i32 = 196608;
/// SSLRequest's magic version code.
pub const SSL_REQUEST: i32 = 80877103;
/// GSSENCRequest's magic version code.
pub const GSSENC_REQUEST: i32 = 80877104;
/// CancelRequest's magic version code.
pub const CANCEL_REQUEST: i32 = 80877102;
/// How long a read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields of an ErrorResponse or NoticeResponse that tests look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// 'S' (localized severity; 'V' when present, which is never localized).
    pub severity: String,
    /// 'C': the SQLSTATE.
    pub code: String,
    /// 'M': the primary message.
    pub message: String,
}

/// Parses the body of an ErrorResponse/NoticeResponse.
pub fn parse_error(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'V' => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    fields
}

/// A failed login: the authentication request codes answered before the error
/// (10 = SASL, 11 = SASL continue, 5 = md5, 3 = cleartext) and the error.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    /// Codes of the AuthenticationRequest messages received, in order.
    pub codes: Vec<i32>,
    /// The ErrorResponse.
    pub error: ErrorFields,
}

/// A startup-phase packet: length, version code, then `key\0value\0` pairs and a final 0.
pub fn startup_packet(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(version);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    if !params.is_empty() || version == PROTOCOL_3_0 {
        body.put_u8(0);
    }
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(body.len() + 4).expect("small packet"));
    out.put_slice(&body);
    out.to_vec()
}

/// A CancelRequest for a backend key.
pub fn cancel_packet(pid: i32, secret: i32) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST);
    out.put_i32(pid);
    out.put_i32(secret);
    out.to_vec()
}

/// A regular (tagged) message.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&i32::try_from(body.len() + 4).expect("small").to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A Query ('Q') message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// A raw connection to the pooler.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawConn {
    /// Connects to 127.0.0.1:`port`.
    pub async fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects to 127.0.0.1:`port` from the local address `source` (any 127.x.y.z
    /// works on Linux loopback: a second client address for per-address behaviour).
    pub async fn connect_from(port: u16, source: std::net::IpAddr) -> RawConn {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(source, 0))
            .expect("bind the source address");
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Splits off the write half (for a writer task that must not wait for reads)
    /// and the read side with what is already buffered.
    pub fn into_split(self) -> (RawReader, tokio::net::tcp::OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        (
            RawReader {
                stream: read,
                buf: self.buf,
            },
            write,
        )
    }

    /// Writes bytes (ignores errors: the peer may already have hung up on us).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends a StartupMessage with protocol 3.0.
    pub async fn send_startup(&mut self, params: &[(&str, &str)]) {
        self.send(&startup_packet(PROTOCOL_3_0, params)).await;
    }

    /// Reads one byte (SSLRequest/GSSENCRequest answer); `None` on EOF.
    pub async fn read_byte(&mut self) -> Option<u8> {
        if !self.fill(1).await {
            return None;
        }
        Some(self.buf.get_u8())
    }

    /// Reads one backend message `(tag, body)`; `None` on EOF (or a reset connection).
    pub async fn read_message(&mut self) -> Option<(u8, Bytes)> {
        if !self.fill(5).await {
            return None;
        }
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = usize::try_from(len).expect("non-negative length");
        assert!(
            (4..=64 << 20).contains(&len),
            "implausible backend length {len}"
        );
        if !self.fill(1 + len).await {
            return None;
        }
        let tag = self.buf.get_u8();
        self.buf.advance(4);
        Some((tag, self.buf.split_to(len - 4).freeze()))
    }

    /// Reads messages until an ErrorResponse and returns its fields (panics on EOF first).
    pub async fn expect_error(&mut self) -> ErrorFields {
        loop {
            match self.read_message().await {
                Some((b'E', body)) => return parse_error(&body),
                Some(_) => continue,
                None => panic!("connection closed without an ErrorResponse"),
            }
        }
    }

    /// True if the peer closes the connection within `timeout` (messages are skipped).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            while self.read_message().await.is_some() {}
        })
        .await
        .is_ok()
    }

    /// Answers the authentication request(s) after a StartupMessage and reads up to and
    /// including ReadyForQuery. Returns every message but the authentication requests
    /// (NegotiateProtocolVersion, notices, ParameterStatus, BackendKeyData, ...).
    /// Panics on an ErrorResponse.
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Vec<(u8, Bytes)> {
        match self.try_authenticate(user, password).await {
            Ok(messages) => messages,
            Err(failure) => panic!("login failed: {failure:?}"),
        }
    }

    /// [`RawConn::authenticate`], returning the auth request codes seen and the error
    /// instead of panicking on an ErrorResponse.
    pub async fn try_authenticate(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<Vec<(u8, Bytes)>, AuthFailure> {
        let mut scram: Option<sasl::ScramSha256> = None;
        let mut messages = Vec::new();
        let mut codes = Vec::new();
        let mut authenticated = false;
        loop {
            let (tag, body) = self.read_message().await.expect("message during login");
            if authenticated {
                let done = tag == b'Z';
                messages.push((tag, body));
                if done {
                    return Ok(messages);
                }
                continue;
            }
            match tag {
                b'R' => {}
                b'E' => {
                    let error = parse_error(&body);
                    return Err(AuthFailure { codes, error });
                }
                b'v' | b'N' => {
                    messages.push((tag, body));
                    continue;
                }
                other => panic!("unexpected message {:?} during login", char::from(other)),
            }
            let code = i32::from_be_bytes(body[..4].try_into().expect("auth code"));
            codes.push(code);
            let mut out = BytesMut::new();
            match code {
                0 => authenticated = true,
                3 => frontend::password_message(password.as_bytes(), &mut out).expect("pw"),
                5 => {
                    let salt: [u8; 4] = body[4..8].try_into().expect("salt");
                    let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                    frontend::password_message(hash.as_bytes(), &mut out).expect("md5");
                }
                10 => {
                    let s = sasl::ScramSha256::new(
                        password.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut out)
                        .expect("sasl initial");
                    scram = Some(s);
                }
                11 => {
                    let s = scram.as_mut().expect("SASL started");
                    s.update(&body[4..]).expect("server-first-message");
                    frontend::sasl_response(s.message(), &mut out).expect("sasl response");
                }
                12 => {
                    let s = scram.as_mut().expect("SASL started");
                    s.finish(&body[4..]).expect("server signature verifies");
                }
                other => panic!("unsupported auth request {other}"),
            }
            if !out.is_empty() {
                self.send(&out).await;
            }
        }
    }

    /// Sends a StartupMessage for `user`/`db` and logs in (see [`RawConn::authenticate`]).
    pub async fn login(
        &mut self,
        db: &str,
        user: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(u8, Bytes)> {
        let mut params = vec![("user", user), ("database", db)];
        params.extend_from_slice(extra);
        self.send_startup(&params).await;
        self.authenticate(user, password).await
    }

    /// Sends a simple Query and returns every message up to and including ReadyForQuery.
    pub async fn simple_query(&mut self, sql: &str) -> Vec<(u8, Bytes)> {
        self.send(&query(sql)).await;
        self.read_until_ready().await
    }

    /// Reads messages up to and including ReadyForQuery (panics on EOF).
    pub async fn read_until_ready(&mut self) -> Vec<(u8, Bytes)> {
        let mut out = Vec::new();
        loop {
            let (tag, body) = self
                .read_message()
                .await
                .expect("message before ReadyForQuery");
            out.push((tag, body));
            if tag == b'Z' {
                return out;
            }
        }
    }

    /// Reads until `n` more bytes are buffered; false on EOF/reset. Panics on timeout.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("read timed out");
            match read {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    }
}

/// The read half of a [`RawConn`] split by [`RawConn::into_split`].
#[derive(Debug)]
pub struct RawReader {
    stream: tokio::net::tcp::OwnedReadHalf,
    buf: BytesMut,
}

impl RawReader {
    /// Reads one backend message `(tag, body)`; `None` on EOF or after `timeout`.
    pub async fn read_message(&mut self, timeout: Duration) -> Option<(u8, Bytes)> {
        tokio::time::timeout(timeout, async {
            loop {
                if self.buf.len() >= 5 {
                    let len =
                        i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                    let len = usize::try_from(len).expect("non-negative length");
                    if self.buf.len() > len {
                        let tag = self.buf.get_u8();
                        self.buf.advance(4);
                        return Some((tag, self.buf.split_to(len - 4).freeze()));
                    }
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

/// The BackendKeyData `(pid, secret)` among login messages, if any.
pub fn backend_key(messages: &[(u8, Bytes)]) -> Option<(i32, i32)> {
    messages.iter().find(|(t, _)| *t == b'K').map(|(_, body)| {
        let pid = i32::from_be_bytes(body[0..4].try_into().expect("pid"));
        let key = i32::from_be_bytes(body[4..8].try_into().expect("key"));
        (pid, key)
    })
}

/// The columns of a DataRow body (NULL = `None`).
pub fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let count = u16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    let mut values = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes(rest[..4].try_into().expect("column length"));
        rest = &rest[4..];
        if len < 0 {
            values.push(None);
        } else {
            let len = usize::try_from(len).expect("length");
            values.push(Some(String::from_utf8_lossy(&rest[..len]).into_owned()));
            rest = &rest[len..];
        }
    }
    values
}

/// The first DataRow among messages.
pub fn first_row(messages: &[(u8, Bytes)]) -> Option<Vec<Option<String>>> {
    messages
        .iter()
        .find(|(t, _)| *t == b'D')
        .map(|(_, body)| data_row(body))
}

/// ParameterStatus messages as `(name, value)`, in order.
pub fn parameter_statuses(messages: &[(u8, Bytes)]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|(t, _)| *t == b'S')
        .filter_map(|(_, body)| {
            let mut parts = body.split(|&b| b == 0);
            let name = String::from_utf8_lossy(parts.next()?).into_owned();
            let value = String::from_utf8_lossy(parts.next()?).into_owned();
            Some((name, value))
        })
        .collect()
}

/// Column names and type OIDs of a RowDescription body.
pub fn row_description(body: &[u8]) -> Vec<(String, u32)> {
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let end = at
            + body[at..]
                .iter()
                .position(|b| *b == 0)
                .expect("NUL-terminated name");
        let name = String::from_utf8_lossy(&body[at..end]).into_owned();
        // table oid (4), column number (2), then the type oid.
        let t = end + 1 + 4 + 2;
        let oid = u32::from_be_bytes([body[t], body[t + 1], body[t + 2], body[t + 3]]);
        columns.push((name, oid));
        // type oid (4), type size (2), type modifier (4), format (2).
        at = t + 4 + 2 + 4 + 2;
    }
    columns
}
