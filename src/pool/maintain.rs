//! The per-pool maintenance task: closes idle connections past
//! `server_idle_timeout` (down to `min_pool_size`) or `server_lifetime`, and
//! opens connections up to `min_pool_size`.

use std::sync::Weak;
use std::time::Duration;

use super::pool::Pool;

/// How often waiters are checked for `query_wait_timeout`.
const TICK: Duration = Duration::from_millis(100);
/// Every how many ticks the idle connections are tidied.
const TIDY_EVERY: u32 = 5;

/// Starts maintenance for `pool`; the task ends when the pool is dropped or closed.
pub fn spawn(pool: Weak<Pool>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u32;
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            if pool.is_closed() {
                return;
            }
            pool.expire_waiters();
            pool.retry_growth();
            n = n.wrapping_add(1);
            if n.is_multiple_of(TIDY_EVERY) {
                run_once(&pool);
            }
        }
    });
}

/// One maintenance pass.
pub fn run_once(pool: &Pool) {
    let s = pool.settings();
    let min = s.min_size.min(s.size);
    let stale = pool.take_idle_where(|conn, staying| {
        let too_old =
            conn.epoch != s.epoch || !s.lifetime.is_zero() && conn.created.elapsed() >= s.lifetime;
        let too_idle = !s.idle_timeout.is_zero()
            && conn.last_used.elapsed() >= s.idle_timeout
            && staying > min;
        too_old || too_idle || !conn.is_healthy_when_idle()
    });
    for conn in stale {
        tracing::debug!(pool = %pool.key.database, id = conn.id, "closing idle server connection");
        pool.forget(conn, true);
    }
    pool.fill_to_min();
}
