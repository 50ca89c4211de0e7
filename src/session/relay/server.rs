//! Server → client: messages are forwarded in place from the server
//! connection's read buffer. The relay looks at each header to keep the
//! expectation queue in step, inspects the few bodies it needs, removes the
//! replies to messages it injected, and inserts the replies it owes itself.

use super::Relay;
use crate::protocol::backend::{self, tag as btag, TxStatus};
use crate::protocol::frame::{read_header, FrameError, HEADER_LEN};
use crate::server::dirty::{tag_dirt, Dirt};
use crate::server::params::is_tracked_reported;
use crate::session::prepared::Expect;

/// What to do with one server message.
enum Action {
    Forward,
    Swallow,
}

impl Relay<'_> {
    /// Scans server bytes after `s_ready`.
    pub(super) fn scan_server(&mut self) -> Result<(), FrameError> {
        loop {
            let avail = self.server.buf.len() - self.s_ready;
            if self.s_skip > 0 {
                let n = self.s_skip.min(avail);
                self.s_ready += n;
                self.s_skip -= n;
                if self.s_skip > 0 {
                    return Ok(());
                }
                continue;
            }
            self.emit_owed_replies();
            if self.parked {
                return Ok(());
            }
            let avail = self.server.buf.len() - self.s_ready;
            let Some(h) = read_header(&self.server.buf[self.s_ready..])? else {
                return Ok(());
            };
            let inspect = matches!(
                h.tag,
                btag::READY_FOR_QUERY
                    | btag::PARAMETER_STATUS
                    | btag::ERROR_RESPONSE
                    | btag::COMMAND_COMPLETE
                    | b'1'
                    | b'3'
            ) && h.body_len() <= super::INSPECT_CAP;
            if inspect && avail < h.total() {
                self.server.buf.reserve(h.total() - avail);
                return Ok(());
            }
            match self.expectation(h.tag) {
                Action::Swallow => {
                    let start = self.s_ready;
                    let len = self.server.buf.len();
                    self.server.buf.copy_within(start + h.total()..len, start);
                    self.server.buf.truncate(len - h.total());
                    continue;
                }
                Action::Forward => {}
            }
            if !inspect {
                let total = h.total();
                let n = total.min(avail);
                self.s_ready += n;
                self.s_skip = total - n;
                continue;
            }
            let start = self.s_ready + HEADER_LEN;
            let end = self.s_ready + h.total();
            self.s_ready = end;
            match h.tag {
                btag::READY_FOR_QUERY => {
                    let status = self.server.buf.get(start).copied().unwrap_or(b'T');
                    self.status = TxStatus::from_byte(status);
                    self.pending = self.pending.saturating_sub(1);
                    if self.release_on_idle && self.server_clean() {
                        self.parked = true;
                    }
                }
                btag::COMMAND_COMPLETE => {
                    let tag = &self.server.buf[start..end];
                    match tag_dirt(tag) {
                        Dirt::Clean => {}
                        Dirt::Sequences => self.server.sequences_dirty = true,
                        Dirt::Full => self.server.dirty = true,
                    }
                    if self.max_prepared > 0 && tag_drops_statements(tag) {
                        self.server.statements.clear();
                        self.client.statements.clear();
                    }
                }
                btag::ERROR_RESPONSE if backend::is_fatal(&self.server.buf[start..end]) => {
                    tracing::debug!("server sent FATAL");
                    self.server_fatal = true;
                }
                // "cannot execute ... in a read-only transaction": on a
                // writer this may be an old primary, now a replica.
                btag::ERROR_RESPONSE
                    if backend::error_code(&self.server.buf[start..end]) == Some(b"25006") =>
                {
                    self.server.read_only_refusal = true;
                }
                btag::PARAMETER_STATUS => {
                    let body = self.server.buf[start..end].to_vec();
                    self.server.note_parameter(&body);
                    if let Some((name, value)) = backend::parse_parameter_status(&body) {
                        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                        if is_tracked_reported(&name) {
                            self.client
                                .wanted
                                .set(&name, &String::from_utf8_lossy(value));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Matches a server message to the oldest expectation.
    fn expectation(&mut self, tag: u8) -> Action {
        let front = self.client.expect.front();
        let completes = match (tag, front) {
            (b'1', Some(Expect::InjectedParse(_))) => {
                self.client.expect.pop();
                return Action::Swallow;
            }
            (b'3', Some(Expect::InjectedClose(_))) => {
                self.client.expect.pop();
                return Action::Swallow;
            }
            (b'1', Some(Expect::Parse(_)))
            | (b'2', Some(Expect::Bind))
            | (b'3', Some(Expect::Close))
            | (b'T' | b'n', Some(Expect::Describe))
            | (b'C' | b'I' | b's', Some(Expect::Execute)) => true,
            (btag::READY_FOR_QUERY, Some(_)) => {
                // Pop through the entry this ReadyForQuery answers.
                while let Some(e) = self.client.expect.pop() {
                    if e.ends_with_ready() {
                        break;
                    }
                }
                return Action::Forward;
            }
            (btag::ERROR_RESPONSE, Some(Expect::Query | Expect::FunctionCall)) => false,
            (btag::ERROR_RESPONSE, Some(_)) => {
                for dropped in self.client.expect.error_skip() {
                    match dropped {
                        Expect::Parse(Some(m)) => {
                            self.server.statements.remove(&m.name);
                            self.client.statements.remove_if(&m.client_name, &m.name);
                        }
                        Expect::InjectedParse(name) => {
                            self.server.statements.remove(&name);
                        }
                        Expect::InjectedClose(name) => {
                            // Skipped: the server still has it.
                            self.server.statements.insert(name, usize::MAX);
                        }
                        _ => {}
                    }
                }
                false
            }
            _ => false,
        };
        if completes {
            self.client.expect.pop();
        }
        Action::Forward
    }

    /// Inserts the replies the pooler owes (ParseComplete for a statement the
    /// server already had, CloseComplete for a client Close) once everything
    /// before them has been answered.
    #[inline(always)]
    pub(super) fn emit_owed_replies(&mut self) {
        if self.client.expect.owes()
            && self.s_skip == 0
            && matches!(self.client.expect.front(), Some(Expect::Synthetic(_)))
        {
            self.insert_owed_replies();
        }
    }

    /// The body of [`Self::emit_owed_replies`], when something is owed.
    #[cold]
    #[inline(never)]
    fn insert_owed_replies(&mut self) {
        while let Some(Expect::Synthetic(tag)) = self.client.expect.front() {
            let tag = *tag;
            self.client.expect.pop();
            let at = self.s_ready;
            let len = self.server.buf.len();
            self.server.buf.extend_from_slice(&[0; HEADER_LEN]);
            self.server.buf.copy_within(at..len, at + HEADER_LEN);
            self.server.buf[at..at + HEADER_LEN].copy_from_slice(&[tag, 0, 0, 0, 4]);
            self.s_ready += HEADER_LEN;
        }
    }
}

/// CommandComplete tags after which the server has no prepared statements.
/// (Tags are the server's canonical upper-case words: no allocation needed.)
fn tag_drops_statements(tag: &[u8]) -> bool {
    let tag = tag.strip_suffix(b"\0").unwrap_or(tag);
    tag == b"DISCARD ALL" || tag == b"DEALLOCATE ALL"
}
