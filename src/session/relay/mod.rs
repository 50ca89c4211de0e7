//! The relay: drives both directions of one client's traffic with its server
//! connection from a single task, forwarding bytes in batches (one read, one
//! write per direction when possible) and looking only at message headers
//! plus the few bodies that matter: ReadyForQuery status, ParameterStatus,
//! ErrorResponse, CommandComplete tags, query text for dirtiness, and the
//! statement names of Parse/Bind/Describe/Close for pooler-managed prepared
//! statements. Messages the relay does not need stream through with bounded
//! buffers, however large they are.
//!
//! A transaction ends when every Query/Sync/FunctionCall the client sent has
//! had its ReadyForQuery, nothing is half-sent, and the last status was Idle.
//!
//! `client.rs` scans what the client sends (into the server connection's
//! `out` buffer, rewritten where needed); `server.rs` scans what the server
//! sends (forwarded in place from its read buffer, with pooler-owed replies
//! inserted and replies to injected messages removed).
//!
//! Flushing: over TLS, a write may leave bytes inside rustls when the socket is
//! full, so each direction whose write buffer is empty is also polled with
//! `poll_flush` (a no-op for plain TCP), and the run reports the end of a
//! transaction only once the client's side is flushed.

mod client;
mod server;
mod timeouts;

use timeouts::Deadline;
pub use timeouts::{Timeouts, Waiting};

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::prepared::{ClientStatements, ExpectQueue};
use crate::net::{ClientStream, ReadInterest};
use crate::protocol::backend::TxStatus;
use crate::protocol::frame::FrameError;
use crate::server::params::ParamSet;
use crate::server::ServerConn;

/// Largest message body the relay buffers whole to inspect; bigger ones are
/// streamed (and, for query text, counted as dirty).
pub const INSPECT_CAP: usize = 64 * 1024;
/// First read buffer of a client starting a transaction: small enough for
/// the allocator's per-thread cache, big enough for most transactions.
pub const CLIENT_BUF_FIRST: usize = 1024;
/// Growth step once a client (or server) sends more than fits.
const READ_GROWTH: usize = 8 * 1024;
/// A read is attempted only with at least this much free space.
const MIN_READ_SPACE: usize = 512;

// Backpressure: the relay stops taking client messages (they stay in the
// socket) while any of these is reached, so a client that pipelines without
// reading results cannot grow the pooler's memory, and resumes as soon as the
// backlog drains below the mark.
/// Bytes waiting to be written to the server (an injected Parse can make a
/// small Bind large).
const SERVER_OUT_HIGH: usize = 256 * 1024;
/// Bytes waiting for the client: replies the pooler answers itself (Close,
/// an already-prepared Parse) never reach the server to be held up there.
const CLIENT_OUT_HIGH: usize = 256 * 1024;
/// Replies outstanding. On reaching it the relay sends the server a Flush, so
/// that replies it holds back until a Sync (and the pooler's own replies queued
/// behind them) come through and the pause ends.
pub const MAX_IN_FLIGHT: usize = 8192;

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
    /// A wait ran past its limit (see [`Timeouts`]).
    TimedOut(Waiting),
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
    /// The client went over a per-connection limit (SQLSTATE 54000).
    #[error("{0}")]
    ClientLimit(String),
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
    /// Prepared statements found on the serving connection.
    pub prepared_hits: u64,
    /// Prepared statements that had to be (re-)prepared on it.
    pub prepared_misses: u64,
    /// Prepared statements closed to stay within the per-connection bound.
    pub prepared_evictions: u64,
}

/// Per-client state the relay works with.
pub struct ClientSide<'a> {
    /// The client's socket.
    pub stream: &'a mut ClientStream,
    /// Bytes read from the client and not yet scanned.
    pub buf: &'a mut BytesMut,
    /// Parameters the client expects in force.
    pub wanted: &'a mut ParamSet,
    /// The client's named prepared statements.
    pub statements: &'a mut ClientStatements,
    /// Expected replies; kept by the session so its allocation is reused.
    pub expect: &'a mut ExpectQueue,
    /// Whether the task's waker is registered for the client's reads.
    pub read_interest: &'a mut ReadInterest,
}

/// One relay run over a checked-out server connection.
pub struct Relay<'a> {
    client: ClientSide<'a>,
    server: &'a mut ServerConn,
    release_on_idle: bool,
    /// Per-connection prepared statement bound; 0 = pass names through.
    max_prepared: usize,
    /// Body bytes of a streamed client message still to copy.
    c_skip: usize,
    /// Client bytes at the front of its buffer, scanned and passed on
    /// unchanged, still to be written to the server straight from there (no
    /// copy). Only while `server.out` is empty, so they keep their order.
    c_fwd: usize,
    /// Scanning of client messages stopped at a backlog (see [`MAX_IN_FLIGHT`]).
    c_paused: bool,
    /// A Flush was injected for the current backlog.
    flushed: bool,
    /// Server bytes at the front of its buffer scanned and ready to forward.
    s_ready: usize,
    /// Body bytes of a streamed server message still to come.
    s_skip: usize,
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
    deadline: Deadline,
    /// Totals for stats.
    pub counts: RelayCounts,
}

impl<'a> Relay<'a> {
    /// Prepares a relay run. `release_on_idle` is false in session mode.
    pub fn new(
        client: ClientSide<'a>,
        server: &'a mut ServerConn,
        release_on_idle: bool,
        max_prepared: u32,
        timeouts: Timeouts,
    ) -> Self {
        // A run starts in step: nothing is outstanding between transactions.
        client.expect.clear();
        Relay {
            client,
            server,
            release_on_idle,
            max_prepared: max_prepared as usize,
            c_skip: 0,
            c_fwd: 0,
            c_paused: false,
            flushed: false,
            s_ready: 0,
            s_skip: 0,
            pending: 0,
            unsynced: false,
            syncs_since_execute: 0,
            status: TxStatus::Idle,
            parked: false,
            client_terminated: false,
            client_eof: false,
            server_fatal: false,
            server_eof: false,
            deadline: Deadline::new(timeouts),
            counts: RelayCounts::default(),
        }
    }

    /// Runs until the transaction ends (transaction mode), or either side goes.
    pub async fn run(&mut self) -> Result<Outcome, RelayError> {
        // Bytes read while waiting for the transaction to start count too.
        self.counts.client_bytes += self.client.buf.len() as u64;
        self.scan_client()?;
        poll_fn(|cx| self.poll_relay(cx)).await
    }

    /// True while client messages must wait for the server or the client to
    /// catch up.
    fn backlogged(&self) -> bool {
        self.server.out.len() + self.c_fwd >= SERVER_OUT_HIGH
            || self.s_ready >= CLIENT_OUT_HIGH
            || self.client.expect.len() >= MAX_IN_FLIGHT
    }

    /// What the run waits for when it goes to sleep, for the timeouts.
    fn waiting(&self) -> Option<Waiting> {
        if self.pending > 0 {
            Some(Waiting::Query)
        } else if self.status != TxStatus::Idle || self.unsynced || !self.client.expect.is_empty() {
            Some(Waiting::IdleInTransaction)
        } else if !self.release_on_idle {
            Some(Waiting::ClientIdle)
        } else {
            None
        }
    }

    /// True when nothing waits to be written to the server.
    #[inline]
    fn to_server_empty(&self) -> bool {
        self.server.out.is_empty() && self.c_fwd == 0
    }

    fn server_clean(&self) -> bool {
        self.pending == 0
            && !self.unsynced
            && self.status == TxStatus::Idle
            && self.s_skip == 0
            && self.client.expect.is_empty()
    }

    fn poll_relay(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outcome, RelayError>> {
        // An operation that returned Pending has registered this task's waker
        // and is not tried again in this call: nothing can have changed for it
        // without a wake-up, and each retry would re-register (a lock in the
        // reactor) for nothing.
        let mut blocked = Blocked::default();
        loop {
            let mut progress = false;

            // Client → server.
            if !self.to_server_empty() {
                // Skipped while waiting for the server's socket to drain.
                if !blocked.server_write {
                    debug_assert!(self.c_fwd == 0 || self.server.out.is_empty());
                    let out = if self.c_fwd > 0 {
                        &self.client.buf[..self.c_fwd]
                    } else {
                        &self.server.out[..]
                    };
                    match Pin::new(&mut self.server.stream).poll_write(cx, out) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            self.server_eof = true;
                            return Poll::Ready(Ok(Outcome::ServerGone { told_client: false }));
                        }
                        Poll::Ready(Ok(n)) => {
                            if self.c_fwd > 0 {
                                self.client.buf.advance(n);
                                self.c_fwd -= n;
                            } else {
                                self.server.out.advance(n);
                            }
                            progress = true;
                        }
                        Poll::Pending => blocked.server_write = true,
                    }
                }
            } else if self.client_terminated || self.client_eof {
                let clean = self.server_clean() && self.s_ready == 0 && self.c_skip == 0;
                return Poll::Ready(Ok(Outcome::ClientGone {
                    server_clean: clean,
                }));
            } else if self.c_paused {
                if !self.backlogged() {
                    self.scan_client()?;
                    progress = true;
                }
            } else if !blocked.client_read {
                // Waiting on the client again while its last wait is still
                // registered (the server woke this task) costs a readiness check.
                let buf = &mut *self.client.buf;
                let read = self
                    .client
                    .read_interest
                    .poll(self.client.stream, |s| poll_read_into(s, cx, buf));
                match read {
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
                    Poll::Pending => blocked.client_read = true,
                }
            }
            if self.to_server_empty() {
                // TLS: push out what rustls still holds (no-op for plain TCP).
                if let Poll::Ready(Err(_)) = Pin::new(&mut self.server.stream).poll_flush(cx) {
                    self.server_eof = true;
                    return Poll::Ready(Ok(Outcome::ServerGone { told_client: false }));
                }
            }

            // Server → client.
            if self.s_ready > 0 {
                // Skipped while waiting for the client's socket to drain.
                if !blocked.client_write {
                    let ready = &self.server.buf[..self.s_ready];
                    match Pin::new(&mut *self.client.stream).poll_write(cx, ready) {
                        Poll::Ready(Ok(0)) => {
                            self.client_eof = true;
                            return Poll::Ready(Ok(Outcome::ClientGone {
                                server_clean: false,
                            }));
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(RelayError::ClientIo(e))),
                        Poll::Ready(Ok(n)) => {
                            self.server.buf.advance(n);
                            self.s_ready -= n;
                            progress = true;
                        }
                        Poll::Pending => blocked.client_write = true,
                    }
                }
            } else if !self.client_flushed(cx)? {
                // TLS: the client's last bytes are still inside rustls; the flush
                // registered for write readiness.
            } else if self.server_fatal || self.server_eof {
                return Poll::Ready(Ok(Outcome::ServerGone {
                    told_client: self.server_fatal,
                }));
            } else if self.parked {
                if self.release_on_idle
                    && self.to_server_empty()
                    && self.c_skip == 0
                    && self.server_clean()
                {
                    return Poll::Ready(Ok(Outcome::Idle));
                }
            } else if !blocked.server_read {
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
                    Poll::Pending => blocked.server_read = true,
                }
            }

            if !progress {
                if let Poll::Ready(w) = self.deadline.poll(self.waiting(), cx) {
                    return Poll::Ready(Ok(Outcome::TimedOut(w)));
                }
                return Poll::Pending;
            }
        }
    }
}

/// The socket operations that returned Pending during one `poll_relay` call.
#[derive(Default)]
struct Blocked {
    client_read: bool,
    client_write: bool,
    server_read: bool,
    server_write: bool,
}

impl Relay<'_> {
    /// Flushes the client stream (a no-op for plain TCP); false while TLS bytes
    /// are still buffered.
    fn client_flushed(&mut self, cx: &mut Context<'_>) -> Result<bool, RelayError> {
        match Pin::new(&mut *self.client.stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(e)) => Err(RelayError::ClientIo(e)),
            Poll::Pending => Ok(false),
        }
    }
}

/// Reads what is available into the spare capacity of `buf`, growing it to a
/// minimum free space first.
fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_READ_SPACE {
        // An empty buffer only needs its consumed front back, which `reserve`
        // reclaims in place; growing it would allocate for nothing (and the
        // session drops a grown client buffer after the transaction).
        buf.reserve(if buf.is_empty() {
            MIN_READ_SPACE
        } else {
            READ_GROWTH
        });
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}
