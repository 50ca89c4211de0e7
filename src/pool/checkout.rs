//! The RAII handle on a checked-out server connection. Dropping it without an
//! explicit release (a client vanished, a task was cancelled) never hands a
//! connection on in an unknown state: unused ones go back, used ones close.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::{Pool, PoolSettings};
use crate::server::ServerConn;

/// How a transaction left its server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Idle and clean: reusable at once.
    Clean,
    /// Idle but session state may have changed: run the reset query first.
    Dirty,
    /// Idle, only sequence state may have changed: `DISCARD SEQUENCES` when
    /// the reset query is `DISCARD ALL` (cheaper, keeps prepared statements),
    /// else the reset query.
    Sequences,
    /// Broken, mid-transaction or cancelled: close it.
    Close,
}

/// A server connection on loan from a pool.
#[derive(Debug)]
pub struct Checkout {
    pool: Option<Arc<Pool>>,
    conn: Option<Box<ServerConn>>,
    used: bool,
    /// When the connection was handed over.
    at: Instant,
}

impl Checkout {
    pub(super) fn new(pool: Arc<Pool>, conn: Box<ServerConn>, at: Instant) -> Self {
        Checkout {
            pool: Some(pool),
            conn: Some(conn),
            used: false,
            at,
        }
    }

    pub(super) fn detached(conn: Box<ServerConn>, at: Instant) -> Self {
        Checkout {
            pool: None,
            conn: Some(conn),
            used: false,
            at,
        }
    }

    /// When the connection was handed over (the start of the transaction).
    pub fn handed_over_at(&self) -> Instant {
        self.at
    }

    /// Takes the connection out without returning it anywhere.
    pub(super) fn into_conn(mut self) -> Option<Box<ServerConn>> {
        self.pool = None;
        self.conn.take()
    }

    /// The connection. Marks it used: from now on dropping the guard closes it.
    pub fn conn(&mut self) -> &mut ServerConn {
        self.used = true;
        // Invariant: `conn` is Some until release or drop.
        self.conn
            .get_or_insert_with(|| unreachable!("checkout used after release"))
    }

    /// The pool it came from.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.pool.as_ref()
    }

    /// Hands the connection back, resetting it first (in a background task,
    /// so the releasing client does not wait) when it is dirty.
    pub fn release(self, how: Release) {
        self.release_at(how, Instant::now());
    }

    /// [`Self::release`] by a caller that read the clock at `now`.
    pub fn release_at(self, how: Release, now: Instant) {
        let Some(settings) = self.pool.as_ref().map(|p| p.settings_full()) else {
            return;
        };
        self.release_with(how, now, &settings);
    }

    /// [`Self::release_at`] under `settings` (the caller's cached copy of the
    /// pool's settings).
    pub fn release_with(mut self, how: Release, now: Instant, settings: &PoolSettings) {
        let (Some(pool), Some(conn)) = (self.pool.take(), self.conn.take()) else {
            return;
        };
        match how {
            Release::Clean => pool.checkin_with(conn, now, settings),
            Release::Close => pool.forget(conn, false),
            Release::Dirty | Release::Sequences => {
                let mut query = settings.reset_query.clone();
                if how == Release::Sequences && resets_everything(&query) {
                    query = "DISCARD SEQUENCES".to_owned();
                }
                if query.is_empty() {
                    pool.checkin(conn);
                } else {
                    tokio::spawn(reset(pool, conn, query));
                }
            }
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let (Some(pool), Some(conn)) = (self.pool.take(), self.conn.take()) {
            if self.used {
                pool.forget(conn, false);
            } else {
                pool.checkin(conn);
            }
        }
    }
}

/// True if the reset query is known to return every setting to its default.
pub fn resets_everything(query: &str) -> bool {
    let q = query.trim().trim_end_matches(';').trim();
    q.eq_ignore_ascii_case("DISCARD ALL") || q.eq_ignore_ascii_case("RESET ALL")
}

/// True if the reset query drops prepared statements (DISCARD ALL,
/// DEALLOCATE ALL), so the pooler must forget what the connection had.
pub fn deallocates_statements(query: &str) -> bool {
    let q = query.to_ascii_lowercase();
    let q: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
    q.contains("discard all") || q.contains("deallocate all")
}

async fn reset(pool: Arc<Pool>, mut conn: Box<ServerConn>, query: String) {
    let timeout = pool
        .settings()
        .target
        .connect_timeout
        .max(Duration::from_secs(1));
    match tokio::time::timeout(timeout, conn.run_control_query(&query)).await {
        Ok(Ok(None)) => {
            if !query.eq_ignore_ascii_case("DISCARD SEQUENCES") {
                conn.params.after_reset(resets_everything(&query));
                if deallocates_statements(&query) {
                    conn.statements.clear();
                }
                conn.dirty = false;
            }
            conn.sequences_dirty = false;
            pool.stats.reset_done();
            pool.checkin(conn);
        }
        Ok(Ok(Some(err))) => {
            tracing::warn!(pool = %pool.key.database, code = %err.code, message = %err.message, "reset query failed; closing server connection");
            pool.forget(conn, true);
        }
        _ => pool.forget(conn, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_full_resets() {
        assert!(resets_everything("DISCARD ALL"));
        assert!(resets_everything(" discard all; "));
        assert!(resets_everything("RESET ALL"));
        assert!(!resets_everything("DEALLOCATE ALL"));
    }
}
