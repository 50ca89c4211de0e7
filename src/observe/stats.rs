//! Counters. Writers use relaxed atomic adds; readers take a consistent-enough
//! snapshot. Nothing here locks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Set when one thread runs every client session (the current-thread runtime).
static ONE_WRITER: AtomicBool = AtomicBool::new(false);

/// Declares whether one thread runs every client session. The counters a
/// transaction moves are then added with a plain load and store instead of a
/// locked read-modify-write (a full memory barrier each, six per
/// transaction); readers on other threads still see whole values. Call it
/// before serving; the default (false) is right for any runtime.
pub fn set_one_writer(one: bool) {
    ONE_WRITER.store(one, Relaxed);
}

/// Adds `v` to a per-transaction counter (see [`set_one_writer`]).
#[inline]
fn add(counter: &AtomicU64, v: u64) {
    if ONE_WRITER.load(Relaxed) {
        counter.store(counter.load(Relaxed).wrapping_add(v), Relaxed);
    } else {
        counter.fetch_add(v, Relaxed);
    }
}

/// Per-pool counters.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Clients logged in to this pool now.
    pub clients: AtomicU64,
    /// Longest single wait for a server so far, in microseconds.
    pub max_wait_us: AtomicU64,
    /// Transactions completed (server released at Idle).
    pub xact_count: AtomicU64,
    /// Queries (Query messages and Executes).
    pub query_count: AtomicU64,
    /// Total microseconds server connections were held by transactions.
    pub xact_us: AtomicU64,
    /// How long server connections were held, per checkout (sum: `xact_us`).
    pub xact_times: LatencyBuckets,
    /// How long clients queued for a server (sum: `wait_us`).
    pub wait_times: LatencyBuckets,
    /// Bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Bytes received from servers.
    pub bytes_out: AtomicU64,
    /// Total microseconds clients spent waiting for a server.
    pub wait_us: AtomicU64,
    /// Number of waits.
    pub waits: AtomicU64,
    /// Clients waiting right now.
    pub waiting_now: AtomicU64,
    /// Server connections opened.
    pub server_connects: AtomicU64,
    /// Server connections closed.
    pub server_closes: AtomicU64,
    /// Reset queries run.
    pub resets: AtomicU64,
    /// Prepared statements found on the serving connection.
    pub prepared_hits: AtomicU64,
    /// Prepared statements (re-)prepared on a connection that lacked them.
    pub prepared_misses: AtomicU64,
    /// Prepared statements closed to stay within `max_prepared_statements`.
    pub prepared_evictions: AtomicU64,
    /// Clients failed after `query_wait_timeout`.
    pub wait_timeouts: AtomicU64,
    /// Server connections that could not be opened.
    pub connect_failures: AtomicU64,
    /// Server connections lost in the middle of a transaction.
    pub servers_lost: AtomicU64,
    /// Clients closed by `query_timeout`.
    pub query_timeouts: AtomicU64,
    /// Clients closed by `idle_transaction_timeout`.
    pub idle_transaction_timeouts: AtomicU64,
    /// Clients closed by `client_idle_timeout`.
    pub client_idle_timeouts: AtomicU64,
}

impl PoolStats {
    /// A client logged in to the pool.
    pub fn client_joined(&self) {
        self.clients.fetch_add(1, Relaxed);
    }

    /// A client of the pool disconnected.
    pub fn client_left(&self) {
        self.clients.fetch_sub(1, Relaxed);
    }

    /// A client started waiting for a server.
    pub fn waiting_started(&self) {
        self.waiting_now.fetch_add(1, Relaxed);
    }

    /// A client stopped waiting after `waited`.
    pub fn waiting_ended(&self, waited: Duration) {
        self.waiting_now.fetch_sub(1, Relaxed);
        self.waits.fetch_add(1, Relaxed);
        let us = waited.as_micros() as u64;
        self.wait_us.fetch_add(us, Relaxed);
        self.max_wait_us.fetch_max(us, Relaxed);
        self.wait_times.observe_us(us);
    }

    /// A server connection logged in.
    pub fn server_connected(&self) {
        self.server_connects.fetch_add(1, Relaxed);
    }

    /// A server connection was closed.
    pub fn server_closed(&self) {
        self.server_closes.fetch_add(1, Relaxed);
    }

    /// A reset query completed.
    pub fn reset_done(&self) {
        self.resets.fetch_add(1, Relaxed);
    }

    /// Folds one relay run's prepared statement counts in.
    pub fn add_prepared(&self, hits: u64, misses: u64, evictions: u64) {
        if hits > 0 {
            self.prepared_hits.fetch_add(hits, Relaxed);
        }
        if misses > 0 {
            self.prepared_misses.fetch_add(misses, Relaxed);
        }
        if evictions > 0 {
            self.prepared_evictions.fetch_add(evictions, Relaxed);
        }
    }

    /// Adds the time a transaction held its server connection.
    pub fn add_xact_time(&self, held: Duration) {
        let us = held.as_micros() as u64;
        add(&self.xact_us, us);
        self.xact_times.observe_us(us);
    }

    /// Folds one relay run's totals in.
    pub fn add_traffic(&self, xacts: u64, queries: u64, bytes_in: u64, bytes_out: u64) {
        if xacts > 0 {
            add(&self.xact_count, xacts);
        }
        add(&self.query_count, queries);
        add(&self.bytes_in, bytes_in);
        add(&self.bytes_out, bytes_out);
    }
}

/// Pooler-wide counters.
#[derive(Debug, Default)]
pub struct GlobalStats {
    /// Clients connected now (past the listener's limit check).
    pub clients_now: AtomicU64,
    /// Clients refused because `max_client_conn` was reached.
    pub clients_refused: AtomicU64,
    /// Logins that failed authentication.
    pub login_failures: AtomicU64,
    /// Clients ended for protocol violations.
    pub protocol_errors: AtomicU64,
    /// Cancel requests forwarded.
    pub cancels_forwarded: AtomicU64,
    /// Config reloads applied.
    pub reloads_ok: AtomicU64,
    /// Config reloads rejected (the old config stayed in force).
    pub reloads_failed: AtomicU64,
    /// Client TLS handshakes completed.
    pub tls_handshakes_ok: AtomicU64,
    /// Client TLS handshakes that failed (bad ClientHello, no common version or
    /// cipher, the client rejected our certificate, direct TLS without ALPN, ...).
    pub tls_handshakes_failed: AtomicU64,
    /// True while the client listener accepts connections (`/health/ready`).
    pub listening: AtomicBool,
}

/// Upper bounds, in microseconds, of the [`LatencyBuckets`] buckets: 100 µs to
/// 10 s, roughly 1-2.5-5 per decade (the last bucket catches everything above).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram as plain counters, one per bucket (not cumulative), so
/// recording costs a short search and one relaxed add. The sum is kept by
/// the caller's own total (`xact_us`, `wait_us`); the count is the sum of
/// the buckets, so a reader never sees a count below the buckets' total.
#[derive(Debug, Default)]
pub struct LatencyBuckets {
    counts: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
}

impl LatencyBuckets {
    /// Counts one observation of `us` microseconds.
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        add(&self.counts[i], 1);
    }

    /// Per-bucket counts, in the order of [`LATENCY_BOUNDS_US`], then the
    /// count above the last bound.
    pub fn counts(&self) -> [u64; LATENCY_BOUNDS_US.len() + 1] {
        std::array::from_fn(|i| self.counts[i].load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_inclusive_upper_bounds_with_an_overflow_bucket() {
        let b = LatencyBuckets::default();
        for us in [0, 100, 101, 10_000_000, 10_000_001, u64::MAX] {
            b.observe_us(us);
        }
        let c = b.counts();
        assert_eq!(c[0], 2, "0 and 100 are <= 100 µs");
        assert_eq!(c[1], 1, "101 µs goes to le=250");
        assert_eq!(c[LATENCY_BOUNDS_US.len() - 1], 1, "10 s exactly is <= 10 s");
        assert_eq!(
            c[LATENCY_BOUNDS_US.len()],
            2,
            "above 10 s: the overflow bucket"
        );
        assert_eq!(c.iter().sum::<u64>(), 6);
    }

    #[test]
    fn waits_and_transactions_feed_their_histograms() {
        let s = PoolStats::default();
        s.waiting_started();
        s.waiting_ended(Duration::from_millis(3));
        s.add_xact_time(Duration::from_micros(80));
        s.add_xact_time(Duration::from_micros(700));
        assert_eq!(s.wait_times.counts()[5], 1, "3 ms is in le=5 ms");
        assert_eq!((s.xact_times.counts()[0], s.xact_times.counts()[3]), (1, 1));
        assert_eq!(s.xact_us.load(Relaxed), 780);
    }
}
