//! All pools, by (database entry, user), created on first login and shared by
//! every session of that pair, plus the per-database connection caps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::db_limit::DbLimit;
use super::pool::{Pool, PoolKey, PoolSettings};

/// The set of live pools.
#[derive(Debug, Default)]
pub struct Registry {
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    limits: Mutex<HashMap<String, Arc<DbLimit>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pool for `key`, created with `settings()` if it does not exist yet.
    pub fn get_or_create(
        &self,
        key: &PoolKey,
        db_max_connections: u32,
        settings: impl FnOnce() -> PoolSettings,
    ) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(key) {
            if !p.is_closed() {
                return p.clone();
            }
        }
        let limit = {
            let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            limits
                .entry(key.database.clone())
                .or_insert_with(|| Arc::new(DbLimit::new(db_max_connections)))
                .clone()
        };
        let pool = Pool::new(key.clone(), settings(), limit);
        tracing::info!(db = %key.database, user = %key.user, "pool created");
        pools.insert(key.clone(), pool.clone());
        pool
    }

    /// Every pool, for observation.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = pools.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Closes every pool (shutdown); returns the tasks saying goodbye to
    /// the idle server connections.
    pub fn close_all(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.pools().iter().flat_map(|p| p.close()).collect()
    }
}
