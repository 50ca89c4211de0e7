//! Whether a server connection is fit to use: the checks on an idle one
//! before it is handed out, and the expiry and role checks shared with
//! check-in.

use std::time::Instant;

use super::{Pool, PoolSettings};
use crate::observe::clock::has_elapsed;
use crate::server::hosts::{HostSet, ServerRole};
use crate::server::ServerConn;

/// What the synchronous checks make of an idle connection.
pub(super) enum Vetted {
    /// Fit to hand out.
    Ready(Box<ServerConn>),
    /// Broken or expired: already closed.
    Closed,
    /// Idle longer than `server_check_delay`: run `server_check_query` first.
    CheckDue(Box<ServerConn>),
}

impl Pool {
    /// Checks an idle connection before handing it out, without a round trip:
    /// closes it if broken or expired, or says the check query is due.
    pub(super) fn vet_idle(&self, conn: Box<ServerConn>, s: &PoolSettings, now: Instant) -> Vetted {
        if !conn.is_healthy_when_idle() || expired(&conn, s, now) {
            self.forget(conn, false);
            return Vetted::Closed;
        }
        if !s.check_query.is_empty() && has_elapsed(now, conn.last_used, s.check_delay) {
            return Vetted::CheckDue(conn);
        }
        Vetted::Ready(conn)
    }

    /// Runs `server_check_query`; the connection back if it answered cleanly,
    /// otherwise closed (and its host set aside).
    pub(super) async fn run_check_query(
        &self,
        mut conn: Box<ServerConn>,
        s: &PoolSettings,
    ) -> Option<Box<ServerConn>> {
        let check = tokio::time::timeout(
            s.target.connect_timeout,
            conn.run_control_query(&s.check_query),
        );
        match check.await {
            Ok(Ok(None)) => Some(conn),
            _ => {
                s.hosts.set_aside(conn.host, "server_check_query failed");
                self.forget(conn, false);
                None
            }
        }
    }
}

/// True if the connection outlived `server_lifetime`, its host left the set,
/// or a reload changed how connections are made (the epoch).
pub(super) fn expired(conn: &ServerConn, s: &PoolSettings, now: Instant) -> bool {
    !s.hosts.is_current(conn.host, conn.host_generation)
        || conn.epoch != s.epoch
        || !s.lifetime.is_zero() && has_elapsed(now, conn.created, s.lifetime)
}

/// False if the connection's server is no longer of the role the entry
/// needs (it reported a change, or refused a write as read-only); the host
/// set learns of it, so its other connections retire too.
pub(super) fn fits_role(conn: &ServerConn, hosts: &HostSet) -> bool {
    if conn.read_only_refusal && hosts.role == crate::config::Role::Writer {
        hosts.role_in_doubt(conn.host);
        return false;
    }
    match conn.standby {
        Some(standby) if !hosts.still_accepts(conn.host, Some(standby)) => {
            hosts.note_role(conn.host, ServerRole::from_standby(standby));
            false
        }
        _ => true,
    }
}
