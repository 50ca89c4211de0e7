//! Protocol-level named prepared statements in transaction mode.
//!
//! A client's statement name maps to a pooler-wide name derived from a
//! SHA-256 of the query text and parameter types (two different statements
//! can never share one). The relay rewrites Bind/Describe to that name, and
//! where the serving connection lacks it, injects the Parse first. Replies
//! are kept in step with what the client sent through an [`Expect`] queue:
//! injected messages' replies are swallowed, and replies the pooler owes
//! without asking the server (ParseComplete for a statement the server
//! already has, CloseComplete) are inserted at their place in the stream.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::protocol::frame::read_cstr;

/// Prefix of pooler statement names.
const PREFIX: &str = "pgpool_";

/// A statement as the pooler prepares it on servers.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// The pooler-wide name (prefix + 128 bits of SHA-256, hex).
    pub name: Arc<str>,
    /// The Parse body after the name: query text, NUL, parameter types.
    pub tail: Bytes,
    /// The query text may change session state (see [`crate::server::dirty`]):
    /// every execution marks the connection for a reset.
    pub dirty: bool,
}

impl Statement {
    /// Builds the statement of a Parse body; returns the client's name too.
    pub fn from_parse(body: &[u8]) -> Option<(&[u8], Statement)> {
        let (client_name, tail) = read_cstr(body)?;
        let digest = Sha256::digest(tail);
        let mut name = String::with_capacity(PREFIX.len() + 32);
        name.push_str(PREFIX);
        for b in &digest[..16] {
            let _ = write!(name, "{b:02x}");
        }
        let text = read_cstr(tail).map(|(q, _)| q).unwrap_or(tail);
        Some((
            client_name,
            Statement {
                name: name.into(),
                tail: Bytes::copy_from_slice(tail),
                dirty: crate::server::dirty::text_is_dirty(text),
            },
        ))
    }
}

/// Named statements one client may hold at once: far above the statement
/// caches of common drivers (pgx 512, JDBC 256, Rails 1000), low enough that a
/// client cannot grow the pooler's memory without bound.
pub const MAX_CLIENT_STATEMENTS: usize = 10_000;
/// Bytes of statement names, text and parameter types one client may hold.
pub const MAX_CLIENT_STATEMENT_BYTES: usize = 32 << 20;

/// A client tried to hold more named statements than [`MAX_CLIENT_STATEMENTS`]
/// or [`MAX_CLIENT_STATEMENT_BYTES`] allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many prepared statements on this connection (limit {MAX_CLIENT_STATEMENTS} \
     statements, {} MiB of text): close unused ones (Close, DEALLOCATE) before preparing more",
    MAX_CLIENT_STATEMENT_BYTES >> 20
)]
pub struct StatementLimit;

/// A client's named statements.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<Statement>>,
    /// Names plus statement bodies held, against [`MAX_CLIENT_STATEMENT_BYTES`].
    bytes: usize,
}

/// What an entry counts against [`MAX_CLIENT_STATEMENT_BYTES`].
fn cost(name: &[u8], stmt: &Statement) -> usize {
    name.len() + stmt.tail.len()
}

impl ClientStatements {
    /// Registers (or replaces) `name`; refuses when that would go over a limit
    /// (the client's statements are then unchanged).
    pub fn insert(&mut self, name: &[u8], stmt: Arc<Statement>) -> Result<(), StatementLimit> {
        let old = self.by_name.get(name).map(|s| cost(name, s));
        let count = self.by_name.len() + usize::from(old.is_none());
        let bytes = self.bytes - old.unwrap_or(0) + cost(name, &stmt);
        if count > MAX_CLIENT_STATEMENTS || bytes > MAX_CLIENT_STATEMENT_BYTES {
            return Err(StatementLimit);
        }
        self.by_name.insert(name.into(), stmt);
        self.bytes = bytes;
        Ok(())
    }

    /// Number of statements held.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when the client holds no named statement.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The statement a client name refers to.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    /// Forgets `name` (client Close).
    pub fn remove(&mut self, name: &[u8]) {
        if let Some(s) = self.by_name.remove(name) {
            self.bytes -= cost(name, &s);
        }
    }

    /// Forgets `name` if it still refers to the statement `pooler_name`
    /// (its Parse failed).
    pub fn remove_if(&mut self, name: &[u8], pooler_name: &str) {
        if self
            .by_name
            .get(name)
            .is_some_and(|s| &*s.name == pooler_name)
        {
            self.remove(name);
        }
    }

    /// Forgets all (client ran DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.by_name.clear();
        self.bytes = 0;
    }
}

/// A client Parse of a named statement that the pooler manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedParse {
    /// The pooler-wide name.
    pub name: Arc<str>,
    /// The client's name for it.
    pub client_name: Box<[u8]>,
}

/// What the relay expects back for each message it sent to the server (or
/// owes the client itself), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A client Parse: its ParseComplete goes to the client. If it fails, the
    /// named statement exists neither on the server nor for the client.
    Parse(Option<ManagedParse>),
    /// A Parse the pooler injected: its ParseComplete is swallowed.
    InjectedParse(Arc<str>),
    /// Bind → BindComplete.
    Bind,
    /// Describe → [ParameterDescription] RowDescription | NoData.
    Describe,
    /// Execute → CommandComplete | EmptyQueryResponse | PortalSuspended.
    Execute,
    /// A client Close of a portal → CloseComplete.
    Close,
    /// A Close the pooler injected to evict a statement: swallowed.
    InjectedClose(Arc<str>),
    /// A reply the pooler gives itself: a bodiless message with this tag.
    Synthetic(u8),
    /// Sync → ReadyForQuery.
    Sync,
    /// Query → ... ReadyForQuery.
    Query,
    /// FunctionCall → FunctionCallResponse, ReadyForQuery.
    FunctionCall,
}

impl Expect {
    /// True for entries that end with ReadyForQuery.
    pub fn ends_with_ready(&self) -> bool {
        matches!(self, Expect::Sync | Expect::Query | Expect::FunctionCall)
    }
}

/// The queue of expected replies.
#[derive(Debug, Default)]
pub struct ExpectQueue {
    q: VecDeque<Expect>,
    /// How many entries are [`Expect::Synthetic`]: the relay asks after
    /// every server message whether it owes a reply, almost always in vain.
    owed: usize,
    /// After an error in an extended-protocol batch the server skips to the
    /// next Sync: messages sent meanwhile get no replies.
    pub skipping: bool,
}

impl ExpectQueue {
    /// Adds an expectation (ignored while the server skips to Sync, except Sync).
    pub fn push(&mut self, e: Expect) {
        if self.skipping {
            if e != Expect::Sync {
                return;
            }
            self.skipping = false;
        }
        self.owed += usize::from(matches!(e, Expect::Synthetic(_)));
        self.q.push_back(e);
    }

    /// True when a reply the pooler gives itself is queued (not necessarily
    /// at the front).
    #[inline]
    pub fn owes(&self) -> bool {
        self.owed > 0
    }

    /// The oldest expectation.
    pub fn front(&self) -> Option<&Expect> {
        self.q.front()
    }

    /// Removes the oldest expectation.
    pub fn pop(&mut self) -> Option<Expect> {
        let e = self.q.pop_front();
        self.owed -= usize::from(matches!(e, Some(Expect::Synthetic(_))));
        e
    }

    /// An extended-protocol error: drops what the server will skip (up to
    /// the next Sync), returning it so side effects can be undone.
    pub fn error_skip(&mut self) -> Vec<Expect> {
        let mut dropped = Vec::new();
        while let Some(e) = self.q.front() {
            if *e == Expect::Sync {
                return dropped;
            }
            if let Some(e) = self.pop() {
                dropped.push(e);
            }
        }
        self.skipping = true;
        dropped
    }

    /// Removes the newest `n` Sync entries (Syncs a server in COPY IN ignores).
    pub fn drop_last_syncs(&mut self, mut n: u32) {
        let mut i = self.q.len();
        while n > 0 && i > 0 {
            i -= 1;
            if self.q[i] == Expect::Sync {
                self.q.remove(i);
                n -= 1;
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// True when nothing is expected.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Forgets everything (a new relay run starts in step).
    pub fn clear(&mut self) {
        self.q.clear();
        self.owed = 0;
        self.skipping = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_depend_on_text_and_types() {
        let (n1, a) = Statement::from_parse(b"s1\0SELECT $1\0\0\x01\0\0\0\x17").unwrap();
        let (n2, b) = Statement::from_parse(b"other\0SELECT $1\0\0\x01\0\0\0\x17").unwrap();
        let (_, c) = Statement::from_parse(b"s1\0SELECT $1\0\0\x01\0\0\0\x19").unwrap();
        assert_eq!(n1, b"s1");
        assert_eq!(n2, b"other");
        assert_eq!(a.name, b.name);
        assert_ne!(a.name, c.name);
        assert!(a.name.starts_with(PREFIX));
        assert_eq!(a.name.len(), PREFIX.len() + 32);
        assert_eq!(&a.tail[..], b"SELECT $1\0\0\x01\0\0\0\x17");
    }

    #[test]
    fn owes_counts_queued_synthetic_replies() {
        let mut q = ExpectQueue::default();
        assert!(!q.owes());
        q.push(Expect::Bind);
        q.push(Expect::Synthetic(b'3'));
        q.push(Expect::Synthetic(b'1'));
        assert!(q.owes(), "owed behind a Bind");
        q.pop();
        q.pop();
        assert!(q.owes(), "one still queued");
        q.pop();
        assert!(!q.owes());
        q.push(Expect::Synthetic(b'1'));
        q.push(Expect::Sync);
        assert_eq!(q.error_skip(), vec![Expect::Synthetic(b'1')]);
        assert!(!q.owes(), "dropped by an error skip");
        q.push(Expect::Synthetic(b'3'));
        q.clear();
        assert!(!q.owes());
    }

    #[test]
    fn error_skips_to_sync_and_then_until_next_sync() {
        let mut q = ExpectQueue::default();
        q.push(Expect::Bind);
        q.push(Expect::Execute);
        q.push(Expect::Sync);
        assert_eq!(q.error_skip(), vec![Expect::Bind, Expect::Execute]);
        assert_eq!(q.front(), Some(&Expect::Sync));
        q.pop();
        q.push(Expect::Bind);
        assert_eq!(q.error_skip(), vec![Expect::Bind]);
        assert!(q.skipping);
        q.push(Expect::Execute);
        assert!(q.is_empty());
        q.push(Expect::Sync);
        assert_eq!(q.len(), 1);
        assert!(!q.skipping);
    }

    fn stmt(text: &str) -> Arc<Statement> {
        let body = format!("x\0{text}\0\0\0");
        Arc::new(Statement::from_parse(body.as_bytes()).unwrap().1)
    }

    #[test]
    fn client_statements_are_capped_by_count() {
        let mut c = ClientStatements::default();
        for i in 0..MAX_CLIENT_STATEMENTS {
            c.insert(format!("s{i}").as_bytes(), stmt("SELECT 1"))
                .unwrap();
        }
        let extra = stmt("SELECT 2");
        assert_eq!(
            c.insert(b"one too many", extra.clone()),
            Err(StatementLimit)
        );
        // Replacing an existing name is not a new statement.
        c.insert(b"s0", extra.clone()).unwrap();
        assert_eq!(c.len(), MAX_CLIENT_STATEMENTS);
        // Closing one makes room again.
        c.remove(b"s1");
        c.insert(b"one too many", extra).unwrap();
        assert_eq!(c.len(), MAX_CLIENT_STATEMENTS);
        assert!(StatementLimit.to_string().contains("10000 statements"));
    }

    #[test]
    fn client_statements_are_capped_by_bytes() {
        let mut c = ClientStatements::default();
        let big = stmt(&"x".repeat(60 * 1024));
        let fit = MAX_CLIENT_STATEMENT_BYTES / (big.tail.len() + 8);
        for i in 0..fit {
            c.insert(format!("big{i:05}").as_bytes(), big.clone())
                .unwrap();
        }
        assert_eq!(c.insert(b"big-extra", big.clone()), Err(StatementLimit));
        c.remove_if(b"big00000", &big.name);
        c.insert(b"big-extra", big).unwrap();
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn copy_in_syncs_are_dropped_from_the_back() {
        let mut q = ExpectQueue::default();
        q.push(Expect::Sync);
        q.push(Expect::Execute);
        q.push(Expect::Sync);
        q.drop_last_syncs(1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(Expect::Sync));
        assert_eq!(q.pop(), Some(Expect::Execute));
    }
}
