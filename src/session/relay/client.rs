//! Client → server: each client message is passed on with an expectation
//! queued for its reply. Messages passed on unchanged while nothing else
//! waits for the server are written straight from the client's buffer (the
//! relay's `c_fwd` prefix); anything rewritten (where the pooler manages
//! named prepared statements) or queued behind rewritten bytes goes through
//! the server connection's `out` buffer, which first takes that prefix over
//! so the order holds.

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};

use super::{Relay, RelayError, INSPECT_CAP};
use crate::protocol::frame::{read_cstr, read_header, Header, HEADER_LEN};
use crate::protocol::frontend::{self, tag as ftag};
use crate::server::dirty::text_is_dirty;
use crate::session::prepared::{Expect, ManagedParse, Statement};

/// Appends a message with `tag` whose body is the concatenation of `parts`.
fn put_message(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.put_u8(tag);
    out.put_u32((len + 4) as u32);
    for p in parts {
        out.put_slice(p);
    }
}

impl Relay<'_> {
    /// Moves every whole client message (and the available part of a large
    /// one) from the client buffer to the server's `out` buffer.
    pub(super) fn scan_client(&mut self) -> Result<(), RelayError> {
        self.c_paused = false;
        loop {
            if self.c_skip > 0 {
                let n = self.c_skip.min(self.unscanned().len());
                if n == 0 {
                    return Ok(());
                }
                self.copy_front(n);
                self.c_skip -= n;
                continue;
            }
            if self.backlogged() {
                self.c_paused = true;
                if self.client.expect.len() >= super::MAX_IN_FLIGHT && !self.flushed {
                    // Extended-protocol replies wait in the server's buffer for a
                    // Sync the client has not sent yet: ask for them now. (At a
                    // message boundary: nothing is half-copied here.)
                    self.take_over_forwarded();
                    put_message(&mut self.server.out, ftag::FLUSH, &[]);
                    self.flushed = true;
                }
                break;
            }
            self.flushed = false;
            let h = match read_header(self.unscanned()) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(RelayError::ClientProtocol(e.to_string())),
            };
            if !frontend::is_known_tag(h.tag) || h.tag == ftag::PASSWORD {
                return Err(RelayError::ClientProtocol(format!(
                    "invalid frontend message type {}",
                    h.tag
                )));
            }
            if h.tag == ftag::TERMINATE {
                self.client_terminated = true;
                self.take_over_forwarded();
                self.client.buf.clear();
                break;
            }
            self.parked = false;
            let whole = self.unscanned().len() >= h.total();
            let needs_body = matches!(
                h.tag,
                ftag::QUERY | ftag::PARSE | ftag::BIND | ftag::DESCRIBE | ftag::CLOSE
            );
            if whole || !needs_body {
                self.client_message(h, whole)?;
            } else if h.body_len() <= INSPECT_CAP {
                let missing = h.total() - self.unscanned().len();
                self.client.buf.reserve(missing);
                break;
            } else if !self.large_message(h) {
                break;
            }
        }
        self.emit_owed_replies();
        Ok(())
    }

    /// Handles one message: whole, or (for messages the relay does not look
    /// into) just its header, with the body streamed.
    fn client_message(&mut self, h: Header, whole: bool) -> Result<(), RelayError> {
        let prepared = self.max_prepared > 0 && !self.client.expect.skipping;
        match h.tag {
            ftag::QUERY => {
                self.pending += 1;
                self.syncs_since_execute = 0;
                self.counts.queries += 1;
                let body = h.body_in(self.client.buf, self.c_fwd);
                if !self.server.dirty && text_is_dirty(body) {
                    self.server.dirty = true;
                }
                self.client.expect.push(Expect::Query);
                self.copy_whole(h);
            }
            ftag::PARSE => {
                self.unsynced = true;
                let body = h.body_in(self.client.buf, self.c_fwd);
                let (name, text) = read_cstr(body).unwrap_or_default();
                let named = !name.is_empty();
                if !self.server.dirty && text_is_dirty(text) {
                    self.server.dirty = true;
                }
                match (named && prepared)
                    .then(|| Statement::from_parse(body))
                    .flatten()
                {
                    Some((client_name, stmt)) => {
                        let client_name = client_name.to_vec();
                        self.take_over_forwarded();
                        let client_name = &client_name[..];
                        let stmt = Arc::new(stmt);
                        self.client
                            .statements
                            .insert(client_name, stmt.clone())
                            .map_err(|e| RelayError::ClientLimit(e.to_string()))?;
                        self.client.buf.advance(h.total());
                        if self.prepare_on_server(&stmt) {
                            self.client.expect.push(Expect::Synthetic(b'1'));
                        } else {
                            self.client.expect.push(Expect::Parse(Some(ManagedParse {
                                name: stmt.name.clone(),
                                client_name: client_name.into(),
                            })));
                        }
                    }
                    None => {
                        if named {
                            // Not managed: the statement outlives the transaction.
                            self.server.dirty = true;
                        }
                        self.client.expect.push(Expect::Parse(None));
                        self.copy_whole(h);
                    }
                }
            }
            ftag::BIND | ftag::DESCRIBE => {
                self.unsynced = true;
                let expect = if h.tag == ftag::BIND {
                    Expect::Bind
                } else {
                    Expect::Describe
                };
                let body = h.body_in(self.client.buf, self.c_fwd);
                let target = if h.tag == ftag::BIND {
                    frontend::bind_names(body)
                } else {
                    frontend::target(body)
                        .filter(|(kind, _, _)| *kind == b'S')
                        .map(|(_, stmt, after)| (&b"S"[..], stmt, after))
                };
                let managed = target
                    .filter(|(_, stmt, _)| prepared && !stmt.is_empty())
                    .and_then(|(lead, stmt, after)| {
                        Some((lead, self.client.statements.get(stmt)?.clone(), after))
                    });
                match managed {
                    Some((lead, stmt, after)) => {
                        // The portal (Bind) is a prefix of the body and the
                        // rest a suffix: kept as lengths, the body is borrowed
                        // again once `ensure_prepared` has queued any Parse
                        // (no copy per message).
                        let (lead_len, after_len) = (lead.len(), after.len());
                        self.take_over_forwarded();
                        self.ensure_prepared(&stmt);
                        let body = h.body_in(self.client.buf, 0);
                        let after = &body[body.len() - after_len..];
                        if h.tag == ftag::BIND {
                            put_message(
                                &mut self.server.out,
                                h.tag,
                                &[&body[..lead_len], b"\0", stmt.name.as_bytes(), b"\0", after],
                            );
                        } else {
                            put_message(
                                &mut self.server.out,
                                h.tag,
                                &[b"S", stmt.name.as_bytes(), b"\0", after],
                            );
                        }
                        self.client.buf.advance(h.total());
                    }
                    None => self.copy_whole(h),
                }
                self.client.expect.push(expect);
            }
            ftag::CLOSE => {
                self.unsynced = true;
                let body = h.body_in(self.client.buf, self.c_fwd);
                let statement = frontend::target(body)
                    .filter(|(kind, name, _)| *kind == b'S' && !name.is_empty())
                    .map(|(_, name, _)| name);
                match statement.filter(|_| prepared) {
                    Some(name) => {
                        // Answered by the pooler: the server keeps the statement
                        // for other clients that share it.
                        self.client.statements.remove(name);
                        self.take_over_forwarded();
                        self.client.buf.advance(h.total());
                        self.client.expect.push(Expect::Synthetic(b'3'));
                    }
                    None => {
                        self.client.expect.push(Expect::Close);
                        self.copy_whole(h);
                    }
                }
            }
            _ => {
                match h.tag {
                    ftag::SYNC => {
                        self.pending += 1;
                        self.unsynced = false;
                        self.syncs_since_execute += 1;
                        self.client.expect.push(Expect::Sync);
                    }
                    ftag::FUNCTION_CALL => {
                        self.pending += 1;
                        self.server.dirty = true;
                        self.client.expect.push(Expect::FunctionCall);
                    }
                    ftag::EXECUTE => {
                        self.unsynced = true;
                        self.syncs_since_execute = 0;
                        self.counts.queries += 1;
                        self.client.expect.push(Expect::Execute);
                    }
                    ftag::COPY_DONE | ftag::COPY_FAIL => {
                        // A server in COPY IN ignores Syncs sent since the
                        // Execute that started it: they get no ReadyForQuery.
                        let ignored = self.syncs_since_execute;
                        self.pending = self.pending.saturating_sub(ignored);
                        self.client.expect.drop_last_syncs(ignored);
                        self.syncs_since_execute = 0;
                    }
                    ftag::COPY_DATA => {}
                    _ => self.unsynced = true,
                }
                if whole {
                    self.copy_whole(h);
                } else {
                    let n = self.unscanned().len();
                    self.copy_front(n);
                    self.c_skip = h.total() - n;
                }
            }
        }
        Ok(())
    }

    /// A message too large to buffer whole whose body the relay would look
    /// into: Query/Parse stream through (counted as dirty; a large named
    /// Parse is passed through unmanaged); Bind/Describe/Close need only
    /// their names, rewritten from the buffered prefix. False if more bytes
    /// are needed first.
    fn large_message(&mut self, h: Header) -> bool {
        self.take_over_forwarded();
        let prepared = self.max_prepared > 0 && !self.client.expect.skipping;
        let body = &self.client.buf[HEADER_LEN..];
        let (expect, prefix) = match h.tag {
            ftag::QUERY => {
                self.pending += 1;
                self.syncs_since_execute = 0;
                self.counts.queries += 1;
                self.server.dirty = true;
                (Expect::Query, None)
            }
            ftag::PARSE => {
                self.unsynced = true;
                self.server.dirty = true;
                (Expect::Parse(None), None)
            }
            ftag::BIND => {
                let Some((portal, stmt, _)) = frontend::bind_names(body) else {
                    return self.need_names(h);
                };
                self.unsynced = true;
                let managed = if prepared && !stmt.is_empty() {
                    self.client.statements.get(stmt).cloned()
                } else {
                    None
                };
                (
                    Expect::Bind,
                    managed.map(|s| (portal.to_vec(), stmt.len(), s)),
                )
            }
            _ => {
                // Describe/Close bodies are a kind byte and a name: never large.
                return self.need_names(h);
            }
        };
        self.client.expect.push(expect);
        match prefix {
            Some((portal, client_name_len, stmt)) => {
                self.ensure_prepared(&stmt);
                let old_prefix = portal.len() + 1 + client_name_len + 1;
                let new_prefix = portal.len() + 1 + stmt.name.len() + 1;
                let new_len = h.len - old_prefix + new_prefix;
                self.server.out.put_u8(h.tag);
                self.server.out.put_u32(new_len as u32);
                self.server.out.put_slice(&portal);
                self.server.out.put_u8(0);
                self.server.out.put_slice(stmt.name.as_bytes());
                self.server.out.put_u8(0);
                self.client.buf.advance(HEADER_LEN + old_prefix);
                self.c_skip = h.total() - HEADER_LEN - old_prefix;
            }
            None => {
                let n = self.client.buf.len();
                self.copy_front(n);
                self.c_skip = h.total() - n;
            }
        }
        true
    }

    /// Waits for a large message's leading names; a message whose names do
    /// not fit the inspection cap is a protocol violation caught later.
    fn need_names(&mut self, h: Header) -> bool {
        self.take_over_forwarded();
        let want = (HEADER_LEN + 256).min(h.total());
        if self.client.buf.len() < want {
            self.client.buf.reserve(want - self.client.buf.len());
            return false;
        }
        // Names longer than that: pass the message through unmanaged.
        self.unsynced = true;
        self.client.expect.push(match h.tag {
            ftag::BIND => Expect::Bind,
            ftag::DESCRIBE => Expect::Describe,
            _ => Expect::Close,
        });
        let n = self.client.buf.len();
        self.copy_front(n);
        self.c_skip = h.total() - n;
        true
    }

    /// Passes one whole message on unchanged: straight from the client's
    /// buffer while nothing else waits for the server, else copied behind
    /// what does.
    fn copy_whole(&mut self, h: Header) {
        if self.server.out.is_empty() {
            self.c_fwd += h.total();
        } else {
            self.copy_front(h.total());
        }
    }

    /// The client bytes after those already passed on.
    #[inline]
    fn unscanned(&self) -> &[u8] {
        &self.client.buf[self.c_fwd..]
    }

    /// Moves the bytes passed on straight from the client's buffer into the
    /// server's `out` buffer, before anything is added there or the client's
    /// buffer is consumed otherwise: `out` then holds everything in order and
    /// the next message is at the front of the client's buffer.
    fn take_over_forwarded(&mut self) {
        if self.c_fwd > 0 {
            self.copy_front(0);
        }
    }

    /// Copies the next `n` unscanned client bytes into the server's `out`
    /// buffer and consumes them, taking over the bytes passed on straight
    /// from the client's buffer first (they go ahead of them).
    fn copy_front(&mut self, n: usize) {
        let n = self.c_fwd + n;
        self.c_fwd = 0;
        self.server.out.extend_from_slice(&self.client.buf[..n]);
        self.client.buf.advance(n);
    }

    /// Makes sure the serving connection has `stmt`, injecting its Parse.
    fn ensure_prepared(&mut self, stmt: &Statement) {
        if stmt.dirty {
            self.server.dirty = true;
        }
        if !self.prepare_on_server(stmt) {
            self.client
                .expect
                .push(Expect::InjectedParse(stmt.name.clone()));
        }
    }

    /// True if the serving connection already has `stmt`; otherwise sends
    /// its Parse (closing the least recently used statement first if needed)
    /// and returns false — the caller queues what its reply means.
    fn prepare_on_server(&mut self, stmt: &Statement) -> bool {
        if self.server.statements.touch(&stmt.name) {
            self.counts.prepared_hits += 1;
            return true;
        }
        self.counts.prepared_misses += 1;
        self.make_room_for(&stmt.name);
        put_message(
            &mut self.server.out,
            ftag::PARSE,
            &[stmt.name.as_bytes(), b"\0", &stmt.tail],
        );
        false
    }

    /// Records `name` as prepared on the server, closing the least recently
    /// used statement first if the connection is at `max_prepared_statements`.
    fn make_room_for(&mut self, name: &Arc<str>) {
        if let Some(victim) = self
            .server
            .statements
            .insert(name.clone(), self.max_prepared)
        {
            self.counts.prepared_evictions += 1;
            put_message(
                &mut self.server.out,
                ftag::CLOSE,
                &[b"S", victim.as_bytes(), b"\0"],
            );
            self.client.expect.push(Expect::InjectedClose(victim));
        }
    }
}
