//! What a pool shows of itself: the open connections for `SHOW SERVERS`, the
//! longest wait, and the counts for `SHOW POOLS` and `/metrics`.

use std::time::Duration;

use super::Pool;
use crate::observe::cards::ServerCard;

impl Pool {
    /// The open connections (`SHOW SERVERS`), each with when it went idle
    /// (`None`: in use).
    pub fn server_cards(&self) -> Vec<(ServerCard, Option<std::time::SystemTime>)> {
        let now = std::time::SystemTime::now();
        let st = self.lock();
        st.cards
            .values()
            .map(|c| {
                let idle = st.idle.iter().find(|i| i.id == c.id);
                (c.clone(), idle.map(|i| now - i.last_used.elapsed()))
            })
            .collect()
    }

    /// How long the longest-waiting client has waited (zero if none waits).
    pub fn oldest_wait(&self) -> Duration {
        let st = self.lock();
        st.waiters
            .iter()
            .find(|w| w.is_live())
            .map_or(Duration::ZERO, |w| w.since.elapsed())
    }

    /// A snapshot of the counts, for observation.
    pub fn counts(&self) -> PoolCounts {
        let st = self.lock();
        PoolCounts {
            idle: st.idle.len() as u32,
            open: st.open,
            connecting: st.connecting,
            waiting: st.waiters.iter().filter(|w| w.is_live()).count() as u32,
        }
    }
}

/// Connection counts of a pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// Idle in the pool.
    pub idle: u32,
    /// Open in total (idle + in use + resetting + opening).
    pub open: u32,
    /// Being opened.
    pub connecting: u32,
    /// Clients waiting.
    pub waiting: u32,
}
