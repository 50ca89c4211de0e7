//! The relay: drives both directions of one client's traffic with its server
//! connection from a single task, forwarding the original bytes in batches
//! (one read, one write per direction when possible) and looking only at the
//! message headers plus the few bodies that matter: ReadyForQuery status,
//! ParameterStatus, ErrorResponse, CommandComplete tags, and query text for
//! dirtiness. Messages the relay does not inspect stream through with bounded
//! buffers, however large they are.
//!
//! A transaction ends when every Query/Sync/FunctionCall the client sent has
//! had its ReadyForQuery, nothing is half-sent, and the last status was Idle.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::ClientStream;
use crate::protocol::backend::{self, tag as btag, TxStatus};
use crate::protocol::frame::{read_header, FrameError, HEADER_LEN};
use crate::protocol::frontend::{self, tag as ftag};
use crate::server::dirty::{tag_is_dirty, text_is_dirty};
use crate::server::params::{is_tracked_reported, ParamSet};
use crate::server::ServerConn;

/// Largest message body the relay buffers whole to inspect; bigger ones are
/// streamed (and, for query text, counted as dirty).
pub const INSPECT_CAP: usize = 64 * 1024;
/// Read buffer size for a client while it is in a transaction.
pub const CLIENT_BUF: usize = 8 * 1024;
const MIN_READ_SPACE: usize = 2048;

/// How a relay run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction finished; the server is idle and can be released.
    Idle,
    /// The client closed or sent Terminate. `server_clean` tells whether the
    /// server was idle at that moment.
    ClientGone {
        /// Server idle with nothing in flight.
        server_clean: bool,
    },
    /// The server closed or sent FATAL; everything it sent was forwarded.
    ServerGone {
        /// The server's FATAL was forwarded to the client.
        told_client: bool,
    },
}

/// Errors that end the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The client broke the protocol.
    #[error("{0}")]
    ClientProtocol(String),
    /// Client socket error.
    #[error("client connection error: {0}")]
    ClientIo(io::Error),
    /// The server broke the protocol.
    #[error("server protocol error: {0}")]
    ServerProtocol(FrameError),
}

/// Per-direction scan position: bytes at the front of the buffer that are
/// scanned and ready to forward, and body bytes of a streamed message still
/// to come.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    ready: usize,
    skip: usize,
}

/// Counters a relay run accumulates, folded into stats by the session.
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayCounts {
    /// Queries (Query messages and Executes).
    pub queries: u64,
    /// Bytes read from the client.
    pub client_bytes: u64,
    /// Bytes read from the server.
    pub server_bytes: u64,
}

/// One relay run over a checked-out server connection.
pub struct Relay<'a> {
    client: &'a mut ClientStream,
    cbuf: &'a mut BytesMut,
    server: &'a mut ServerConn,
    wanted: &'a mut ParamSet,
    release_on_idle: bool,
    c: Scan,
    s: Scan,
    /// ReadyForQuery messages still owed to the client.
    pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Syncs since the last Execute/Query: ignored by a server in COPY IN.
    syncs_since_execute: u32,
    status: TxStatus,
    /// Stopped scanning the server side at an idle ReadyForQuery.
    parked: bool,
    client_terminated: bool,
    client_eof: bool,
    server_fatal: bool,
    server_eof: bool,
    /// Totals for stats.
    pub counts: RelayCounts,
}

impl<'a> Relay<'a> {
    /// Prepares a relay run. `release_on_idle` is false in session mode.
    pub fn new(
        client: &'a mut ClientStream,
        cbuf: &'a mut BytesMut,
        server: &'a mut ServerConn,
        wanted: &'a mut ParamSet,
        release_on_idle: bool,
    ) -> Self {
        Relay {
            client,
            cbuf,
            server,
            wanted,
            release_on_idle,
            c: Scan::default(),
            s: Scan::default(),
            pending: 0,
            unsynced: false,
            syncs_since_execute: 0,
            status: TxStatus::Idle,
            parked: false,
            client_terminated: false,
            client_eof: false,
            server_fatal: false,
            server_eof: false,
            counts: RelayCounts::default(),
        }
    }

    /// Runs until the transaction ends (transaction mode), or either side goes.
    pub async fn run(&mut self) -> Result<Outcome, RelayError> {
        self.scan_client()?;
        poll_fn(|cx| self.poll_relay(cx)).await
    }

    fn server_clean(&self) -> bool {
        self.pending == 0 && !self.unsynced && self.status == TxStatus::Idle && self.s.skip == 0
    }

    fn poll_relay(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outcome, RelayError>> {
        loop {
            let mut progress = false;

            // Client → server.
            if self.c.ready > 0 {
                match Pin::new(&mut self.server.stream).poll_write(cx, &self.cbuf[..self.c.ready]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        self.server_eof = true;
                        return Poll::Ready(Ok(Outcome::ServerGone { told_client: false }));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.cbuf.advance(n);
                        self.c.ready -= n;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            } else if self.client_terminated || self.client_eof {
                let clean = self.server_clean() && self.s.ready == 0 && self.c.skip == 0;
                return Poll::Ready(Ok(Outcome::ClientGone {
                    server_clean: clean,
                }));
            } else {
                match poll_read_into(self.client, cx, self.cbuf) {
                    Poll::Ready(Ok(0)) => {
                        self.client_eof = true;
                        progress = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.counts.client_bytes += n as u64;
                        self.scan_client()?;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(RelayError::ClientIo(e))),
                    Poll::Pending => {}
                }
            }

            // Server → client.
            if self.s.ready > 0 {
                match Pin::new(&mut *self.client).poll_write(cx, &self.server.buf[..self.s.ready]) {
                    Poll::Ready(Ok(0)) => {
                        self.client_eof = true;
                        return Poll::Ready(Ok(Outcome::ClientGone {
                            server_clean: false,
                        }));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(RelayError::ClientIo(e))),
                    Poll::Ready(Ok(n)) => {
                        self.server.buf.advance(n);
                        self.s.ready -= n;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            } else if self.server_fatal || self.server_eof {
                return Poll::Ready(Ok(Outcome::ServerGone {
                    told_client: self.server_fatal,
                }));
            } else if self.parked {
                if self.release_on_idle
                    && self.c.ready == 0
                    && self.c.skip == 0
                    && self.server_clean()
                {
                    return Poll::Ready(Ok(Outcome::Idle));
                }
            } else {
                match poll_read_into(&mut self.server.stream, cx, &mut self.server.buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        self.server_eof = true;
                        progress = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.counts.server_bytes += n as u64;
                        self.scan_server().map_err(RelayError::ServerProtocol)?;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Scans client bytes after `c.ready`, advancing it over whole messages
    /// (or the streamed part of a large one).
    fn scan_client(&mut self) -> Result<(), RelayError> {
        loop {
            let avail = self.cbuf.len() - self.c.ready;
            if self.c.skip > 0 {
                let n = self.c.skip.min(avail);
                self.c.ready += n;
                self.c.skip -= n;
                if self.c.skip > 0 {
                    return Ok(());
                }
                continue;
            }
            let rest = &self.cbuf[self.c.ready..];
            let h = match read_header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(e) => return Err(RelayError::ClientProtocol(e.to_string())),
            };
            if !frontend::is_known_tag(h.tag) || h.tag == ftag::PASSWORD {
                return Err(RelayError::ClientProtocol(format!(
                    "invalid frontend message type {}",
                    h.tag
                )));
            }
            match h.tag {
                ftag::TERMINATE => {
                    self.client_terminated = true;
                    // Drop the Terminate: the server connection stays ours.
                    self.cbuf.truncate(self.c.ready);
                    return Ok(());
                }
                ftag::QUERY | ftag::PARSE => {
                    let whole = avail >= h.total();
                    if !whole && h.body_len() <= INSPECT_CAP {
                        self.cbuf.reserve(h.total() - avail);
                        return Ok(());
                    }
                    if h.tag == ftag::QUERY {
                        self.pending += 1;
                        self.syncs_since_execute = 0;
                        self.counts.queries += 1;
                    } else {
                        self.unsynced = true;
                    }
                    self.parked = false;
                    if !whole {
                        // Too large to inspect: stream it, and assume the worst.
                        self.server.dirty = true;
                        self.stream_message(h.len, avail);
                        continue;
                    }
                    let body = &self.cbuf[self.c.ready + HEADER_LEN..self.c.ready + h.total()];
                    if !self.server.dirty {
                        let named = h.tag == ftag::PARSE
                            && frontend::parse_statement_name(body).is_some_and(|n| !n.is_empty());
                        let text = frontend::query_text(h.tag, body).unwrap_or_default();
                        if named || text_is_dirty(text) {
                            self.server.dirty = true;
                        }
                    }
                    self.c.ready += h.total();
                }
                _ => {
                    match h.tag {
                        ftag::SYNC => {
                            self.pending += 1;
                            self.unsynced = false;
                            self.syncs_since_execute += 1;
                        }
                        ftag::FUNCTION_CALL => {
                            self.pending += 1;
                            self.server.dirty = true;
                        }
                        ftag::EXECUTE => {
                            self.unsynced = true;
                            self.syncs_since_execute = 0;
                            self.counts.queries += 1;
                        }
                        ftag::COPY_DONE | ftag::COPY_FAIL => {
                            // A server in COPY IN ignores Syncs sent since the
                            // Execute that started it: they get no ReadyForQuery.
                            self.pending = self.pending.saturating_sub(self.syncs_since_execute);
                            self.syncs_since_execute = 0;
                        }
                        ftag::COPY_DATA => {}
                        _ => self.unsynced = true,
                    }
                    self.parked = false;
                    self.stream_message(h.len, avail);
                }
            }
        }
    }

    /// Marks the header and whatever body is buffered as ready, the rest as
    /// to be streamed.
    fn stream_message(&mut self, len: usize, avail: usize) {
        let total = 1 + len;
        let n = total.min(avail);
        self.c.ready += n;
        self.c.skip = total - n;
    }

    /// Scans server bytes after `s.ready`.
    fn scan_server(&mut self) -> Result<(), FrameError> {
        loop {
            let buf = &self.server.buf;
            let avail = buf.len() - self.s.ready;
            if self.s.skip > 0 {
                let n = self.s.skip.min(avail);
                self.s.ready += n;
                self.s.skip -= n;
                if self.s.skip > 0 {
                    return Ok(());
                }
                continue;
            }
            if self.parked {
                return Ok(());
            }
            let Some(h) = read_header(&buf[self.s.ready..])? else {
                return Ok(());
            };
            let inspect = matches!(
                h.tag,
                btag::READY_FOR_QUERY
                    | btag::PARAMETER_STATUS
                    | btag::ERROR_RESPONSE
                    | btag::COMMAND_COMPLETE
            ) && h.body_len() <= INSPECT_CAP;
            if !inspect {
                let total = h.total();
                let n = total.min(avail);
                self.s.ready += n;
                self.s.skip = total - n;
                continue;
            }
            if avail < h.total() {
                self.server.buf.reserve(h.total() - avail);
                return Ok(());
            }
            let start = self.s.ready + HEADER_LEN;
            let end = self.s.ready + h.total();
            self.s.ready = end;
            match h.tag {
                btag::READY_FOR_QUERY => {
                    let status = self.server.buf.get(start).copied().unwrap_or(b'T');
                    self.status = TxStatus::from_byte(status);
                    self.pending = self.pending.saturating_sub(1);
                    if self.release_on_idle && self.server_clean() {
                        self.parked = true;
                    }
                }
                btag::COMMAND_COMPLETE
                    if !self.server.dirty && tag_is_dirty(&self.server.buf[start..end]) =>
                {
                    self.server.dirty = true;
                }
                btag::ERROR_RESPONSE => {
                    let body = &self.server.buf[start..end];
                    if let Some(fields) = fatal_fields(body) {
                        tracing::debug!(code = %fields.code, "server sent FATAL");
                        self.server_fatal = true;
                    }
                }
                btag::PARAMETER_STATUS => {
                    let body = self.server.buf[start..end].to_vec();
                    self.server.note_parameter(&body);
                    if let Some((name, value)) = backend::parse_parameter_status(&body) {
                        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                        if is_tracked_reported(&name) {
                            self.wanted.set(&name, &String::from_utf8_lossy(value));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn fatal_fields(body: &[u8]) -> Option<backend::ErrorFields> {
    let f = backend::ErrorFields::parse(body);
    f.is_fatal().then_some(f)
}

/// Reads what is available into the spare capacity of `buf`, growing it to a
/// minimum free space first.
fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_READ_SPACE {
        buf.reserve(CLIENT_BUF.max(MIN_READ_SPACE));
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}
