//! A client's copy of its pool's settings. Loading from the pool's `ArcSwap`
//! costs a few atomic read-modify-writes; a client reads the settings
//! several times per transaction, so it keeps an `Arc` and only reloads when
//! the pool's generation counter says a reload replaced them.

use std::sync::Arc;

use super::pool::{Pool, PoolSettings};

/// Settings of one pool, refreshed when a reload replaced them.
#[derive(Debug)]
pub struct SettingsCache {
    generation: u64,
    settings: Arc<PoolSettings>,
}

impl SettingsCache {
    /// The pool's settings now.
    pub fn new(pool: &Pool) -> Self {
        // Generation first: a reload between the two loads makes the next
        // `get` reload again, never keep stale settings.
        let generation = pool.settings_generation();
        SettingsCache {
            generation,
            settings: pool.settings_full(),
        }
    }

    /// The settings in force: one atomic load when nothing changed.
    pub fn get(&mut self, pool: &Pool) -> &Arc<PoolSettings> {
        let now = pool.settings_generation();
        if now != self.generation {
            self.generation = now;
            self.settings = pool.settings_full();
        }
        &self.settings
    }
}
