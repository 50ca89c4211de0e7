//! Wiring: the shared state every session sees (config snapshot, pools,
//! cancel keys, stats, shutdown signal), the listener, signals, and the drain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::Database;
use crate::error::{sqlstate, ClientError};
use crate::observe::GlobalStats;
use crate::pool::{Pool, PoolKey, PoolSettings, Registry};
use crate::server::cancel::CancelRegistry;
use crate::server::hosts::HostSet;
use crate::server::{ConnectTarget, ServerCredential};
use crate::snapshot::Snapshot;

/// State shared by all tasks.
#[derive(Debug)]
pub struct Shared {
    snapshot: ArcSwap<Snapshot>,
    /// Live pools.
    pub registry: Registry,
    /// Client cancel keys.
    pub cancels: CancelRegistry,
    /// Pooler-wide counters.
    pub stats: GlobalStats,
    /// Flips to true when the pooler starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// The config file (for RELOAD and SIGHUP).
    pub config_path: std::path::PathBuf,
    /// When the pooler started (for per-second averages).
    pub started: std::time::Instant,
    /// Notified by the admin SHUTDOWN command.
    pub stop: tokio::sync::Notify,
    /// Database entries whose server has answered at least once (sticky);
    /// `/health/ready` needs every writer entry in it.
    pub reached: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Failed logins per client address (see [`crate::session::throttle`]).
    pub login_throttle: crate::session::throttle::LoginThrottle,
    /// The client listen address in force; the accept loop re-binds when a
    /// reload changes it.
    pub listen_addr: watch::Sender<std::net::SocketAddr>,
    /// The HTTP address in force (`None`: no HTTP); the HTTP server re-binds
    /// when a reload changes it.
    pub http_addr: watch::Sender<Option<std::net::SocketAddr>>,
    /// Databases held by the admin PAUSE.
    paused: std::sync::Mutex<Paused>,
    /// Each database entry's hosts (roles, set-aside state), shared by its pools.
    host_sets: std::sync::Mutex<std::collections::HashMap<String, Arc<HostSet>>>,
}

/// What the admin PAUSE holds: everything, or some databases.
#[derive(Debug, Default)]
struct Paused {
    all: bool,
    databases: std::collections::BTreeSet<String>,
}

/// Why RESUME could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Nothing (or not that database) is paused.
    #[error("{0} is not paused")]
    NotPaused(String),
    /// The whole pooler is paused; one database cannot be resumed alone.
    #[error("the whole pooler is paused; use RESUME without a database")]
    AllPaused,
}

impl Shared {
    /// Shared state around a first snapshot.
    pub fn new(snapshot: Snapshot, shutdown: watch::Receiver<bool>) -> Self {
        Shared {
            config_path: snapshot.config.path.clone(),
            started: std::time::Instant::now(),
            stop: tokio::sync::Notify::new(),
            reached: Default::default(),
            paused: Default::default(),
            host_sets: Default::default(),
            listen_addr: watch::Sender::new(snapshot.config.listen.addr),
            http_addr: watch::Sender::new(snapshot.config.listen.http_addr),
            login_throttle: Default::default(),
            snapshot: ArcSwap::from_pointee(snapshot),
            registry: Registry::new(),
            cancels: CancelRegistry::default(),
            stats: GlobalStats::default(),
            shutdown,
        }
    }

    /// True once `database`'s server has answered (probe or login).
    pub fn is_reached(&self, database: &str) -> bool {
        self.reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(database)
    }

    /// Records that `database`'s server answered.
    pub fn mark_reached(&self, database: &str) {
        let mut r = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        if !r.contains(database) {
            r.insert(database.to_owned());
        }
    }

    /// True while the admin PAUSE holds `database`.
    pub fn is_paused(&self, database: &str) -> bool {
        let p = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        p.all || p.databases.contains(database)
    }

    /// Admin PAUSE of one database or (`None`) all: its pools stop handing
    /// out servers; returns them so the caller can wait for them to drain.
    pub fn pause(&self, database: Option<&str>) -> Vec<Arc<Pool>> {
        {
            let mut p = self.paused.lock().unwrap_or_else(|p| p.into_inner());
            match database {
                Some(db) => p.databases.insert(db.to_owned()),
                None => std::mem::replace(&mut p.all, true),
            };
        }
        tracing::info!(db = database.unwrap_or("*"), "paused");
        let pools: Vec<_> = self
            .registry
            .pools()
            .into_iter()
            .filter(|pool| database.is_none_or(|d| d == pool.key.database))
            .collect();
        for pool in &pools {
            pool.pause();
        }
        pools
    }

    /// Admin RESUME of one database or (`None`) all.
    pub fn resume(&self, database: Option<&str>) -> Result<(), ResumeError> {
        {
            let mut p = self.paused.lock().unwrap_or_else(|p| p.into_inner());
            match database {
                None if !p.all && p.databases.is_empty() => {
                    return Err(ResumeError::NotPaused("the pooler".into()))
                }
                None => {
                    p.all = false;
                    p.databases.clear();
                }
                Some(_) if p.all => return Err(ResumeError::AllPaused),
                Some(db) => {
                    if !p.databases.remove(db) {
                        return Err(ResumeError::NotPaused(format!("database \"{db}\"")));
                    }
                }
            }
        }
        tracing::info!(db = database.unwrap_or("*"), "resumed");
        for pool in self.registry.pools() {
            if pool.is_paused() && !self.is_paused(&pool.key.database) {
                pool.resume();
            }
        }
        Ok(())
    }

    /// The config snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The pool for a logged-in client, created on first use.
    pub fn pool_for(
        &self,
        snapshot: &Snapshot,
        key: &PoolKey,
        db: &Database,
        client_credential: ServerCredential,
    ) -> Result<Arc<Pool>, ClientError> {
        let settings = self
            .settings_for(snapshot, db, &key.user, client_credential, 0)
            .ok_or_else(|| {
                ClientError::fatal(sqlstate::INTERNAL_ERROR, "database entry has no host")
            })?;
        let db_max = db.effective_max_db_connections(&snapshot.config.pool);
        let pool = self.registry.get_or_create(key, db_max, || settings);
        if !pool.is_paused() && self.is_paused(&key.database) {
            pool.pause();
        }
        Ok(pool)
    }

    /// Derives a pool's settings from the config: the entry's own `user` and
    /// `password` win over the client's credentials. `None` if the entry has no host.
    pub fn settings_for(
        &self,
        snapshot: &Snapshot,
        db: &Database,
        client_user: &str,
        client_credential: ServerCredential,
        epoch: u64,
    ) -> Option<PoolSettings> {
        let pool_cfg = &snapshot.config.pool;
        let (server_user, credential) = match &db.user {
            Some(u) => {
                let cred = match (&db.password, snapshot.user(u)) {
                    (Some(p), _) => ServerCredential::Password(p.clone()),
                    (None, Some(e)) => match (&e.password, &e.md5) {
                        (Some(p), _) => ServerCredential::Password(p.clone()),
                        (None, Some(m)) => ServerCredential::Md5Secret(m.clone()),
                        _ => ServerCredential::None,
                    },
                    (None, None) => ServerCredential::None,
                };
                (u.clone(), cred)
            }
            None => (client_user.to_owned(), client_credential),
        };
        let host = db.hosts.first()?;
        let hosts = self.host_set(db, pool_cfg);
        Some(PoolSettings {
            size: db.effective_pool_size(pool_cfg),
            reserve_size: pool_cfg.reserve_pool_size,
            reserve_timeout: pool_cfg.reserve_pool_timeout,
            min_size: db.effective_min_pool_size(pool_cfg),
            mode: db.effective_pool_mode(pool_cfg),
            reset_query: pool_cfg.server_reset_query.clone(),
            reset_always: pool_cfg.server_reset_query_always,
            check_query: pool_cfg.server_check_query.clone(),
            check_delay: pool_cfg.server_check_delay,
            idle_timeout: pool_cfg.server_idle_timeout,
            lifetime: pool_cfg.server_lifetime,
            query_wait_timeout: pool_cfg.query_wait_timeout,
            query_timeout: pool_cfg.query_timeout,
            idle_transaction_timeout: pool_cfg.idle_transaction_timeout,
            client_idle_timeout: pool_cfg.client_idle_timeout,
            target: ConnectTarget {
                host: host.host.clone(),
                port: host.port,
                user: server_user,
                database: db.dbname.clone(),
                credential,
                connect_timeout: pool_cfg.server_connect_timeout,
                tls: snapshot.server_tls.clone(),
            },
            hosts,
            epoch,
            max_prepared: pool_cfg.max_prepared_statements,
        })
    }

    /// The entry's host set: the one its pools already share when its hosts
    /// and role rules are unchanged (keeping what it learned), else a new one.
    pub fn host_set(&self, db: &Database, pool_cfg: &crate::config::PoolSettings) -> Arc<HostSet> {
        let hosts: Vec<(String, u16)> = db.hosts.iter().map(|h| (h.host.clone(), h.port)).collect();
        let ttl = pool_cfg.dns_max_ttl;
        let mut sets = self.host_sets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = sets.get(&db.name) {
            if set.same_as(db.role, db.fallback_to_writer, &hosts, ttl) {
                return set.clone();
            }
        }
        let set = HostSet::new(&db.name, db.role, db.fallback_to_writer, &hosts, ttl);
        set.start_background(pool_cfg.server_connect_timeout);
        sets.insert(db.name.clone(), set.clone());
        set
    }

    /// Every database entry's host set, by name (admin console, metrics).
    pub fn host_sets(&self) -> Vec<Arc<HostSet>> {
        let sets = self.host_sets.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = sets.values().cloned().collect();
        v.sort_by(|a, b| a.database.cmp(&b.database));
        v
    }

    /// Applies a new snapshot: new logins see it at once; existing pools get
    /// their new sizes and timeouts in place, retire connections whose target
    /// changed as they are released, and close if their database is gone.
    pub fn apply(&self, snapshot: Snapshot) {
        for pool in self.registry.pools() {
            let Some(db) = snapshot.config.databases.get(&pool.key.database) else {
                tracing::info!(db = %pool.key.database, "database removed from config; closing its pool");
                pool.close();
                continue;
            };
            let old = pool.settings();
            let credential = old.target.credential.clone();
            let Some(mut new) =
                self.settings_for(&snapshot, db, &pool.key.user, credential, old.epoch)
            else {
                pool.close();
                continue;
            };
            let t = (&new.target, &old.target);
            if t.0.host != t.1.host
                || t.0.port != t.1.port
                || t.0.user != t.1.user
                || t.0.database != t.1.database
                || t.0.credential != t.1.credential
                || !Arc::ptr_eq(&new.hosts, &old.hosts)
                || t.0.tls != t.1.tls
            {
                new.epoch = old.epoch + 1;
            }
            drop(old);
            pool.set_settings(new);
            pool.set_db_max(db.effective_max_db_connections(&snapshot.config.pool));
        }
        self.host_sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| snapshot.config.databases.contains_key(name));
        self.listen_addr.send_if_modified(|addr| {
            let changed = *addr != snapshot.config.listen.addr;
            *addr = snapshot.config.listen.addr;
            changed
        });
        self.http_addr.send_if_modified(|addr| {
            let changed = *addr != snapshot.config.listen.http_addr;
            *addr = snapshot.config.listen.http_addr;
            changed
        });
        self.snapshot.store(Arc::new(snapshot));
    }
}

/// Errors that stop the pooler from starting.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The config could not be loaded.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the pooler with the config at `path` until SIGINT/SIGTERM.
pub async fn run(path: &Path) -> Result<(), AppError> {
    let snapshot = Snapshot::load(path)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let addr = snapshot.config.listen.addr;
    let drain_timeout = snapshot.config.pool.shutdown_timeout;
    let http_addr = snapshot.config.listen.http_addr;
    let shared = Arc::new(Shared::new(snapshot, shutdown_rx));
    // HTTP first: if it cannot bind, the client port never starts listening.
    let http_listener = match http_addr {
        Some(addr) => Some(
            crate::http::bind(addr)
                .await
                .map_err(|source| AppError::Bind { addr, source })?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    tracing::info!(%addr, config = %path.display(), "pgpool-rs listening");
    shared
        .stats
        .listening
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let http = tokio::spawn(crate::http::serve(
        http_listener,
        shared.clone(),
        shared.http_addr.subscribe(),
    ));
    let probes = tokio::spawn(probe_writers(shared.clone()));
    let watcher = tokio::spawn(crate::file_watch::run(shared.clone()));
    let accept = tokio::spawn(crate::net::listener::accept_loop(
        listener,
        shared.clone(),
        shared.listen_addr.subscribe(),
    ));
    tokio::select! {
        _ = crate::reload::run_until_shutdown(path, &shared) => {}
        _ = shared.stop.notified() => tracing::info!("SHUTDOWN from the admin console"),
    }
    watcher.abort();
    drain(&shared, shutdown_tx, accept, drain_timeout).await;
    probes.abort();
    http.abort();
    Ok(())
}

/// The graceful shutdown: readiness turns 503 and the listener closes at
/// once; idle clients are closed with FATAL 57P01, clients inside a
/// transaction finish it first; after `timeout` (or a second SIGTERM/SIGINT)
/// the rest are dropped. Idle server connections get a Terminate.
async fn drain(
    shared: &Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    timeout: Duration,
) {
    use std::sync::atomic::Ordering::Relaxed;
    // Armed before anything else, so a second signal is never missed.
    let second_signal = crate::reload::wait_for_stop_signal();
    tokio::pin!(second_signal);
    let _ = shutdown_tx.send(true);
    accept.abort();
    shared.stats.listening.store(false, Relaxed);
    let at_start = shared.stats.clients_now.load(Relaxed);
    tracing::info!(
        clients = at_start,
        timeout_s = timeout.as_secs(),
        "shutting down: listener closed, draining clients"
    );
    shared.cancels.kill_all();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let forced = loop {
        if shared.stats.clients_now.load(Relaxed) == 0 {
            break None;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => break Some("shutdown_timeout reached"),
            _ = &mut second_signal => break Some("second stop signal"),
        }
    };
    match forced {
        None => tracing::info!("all clients drained"),
        Some(why) => tracing::warn!(
            clients = shared.stats.clients_now.load(Relaxed),
            "{why}: closing the remaining clients"
        ),
    }
    // Idle server connections are told goodbye; a bounded wait so a stuck
    // server cannot hold the exit.
    let goodbyes = shared.registry.close_all();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for g in goodbyes {
            let _ = g.await;
        }
    })
    .await;
}

/// Until every writer entry's server has answered once, probes each one that
/// has not (SSLRequest, no login) every second, so a fresh pooler becomes
/// ready without waiting for a client to log in.
async fn probe_writers(shared: Arc<Shared>) {
    use crate::config::Role;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let snapshot = shared.snapshot();
        let timeout = snapshot.config.pool.server_connect_timeout;
        for (name, db) in &snapshot.config.databases {
            if db.role != Role::Writer || shared.is_reached(name) {
                continue;
            }
            if let Some(h) = db.hosts.first() {
                if crate::server::probe::answers(&h.host, h.port, timeout).await {
                    tracing::info!(db = %name, host = %h.host, port = h.port, "writer database reachable");
                    shared.mark_reached(name);
                }
            }
        }
    }
}
