//! One pool: an idle stack (most recently used first, so warm connections are
//! reused and surplus ones age out), a FIFO queue of waiters, and the count of
//! open connections bounded by the pool size and the database-wide cap.
//!
//! New connections are opened by background tasks and handed to the first
//! waiter, so the order clients are served in is the order they asked in.

mod counts;
mod vet;

pub use counts::PoolCounts;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::checkout::Checkout;
use super::db_limit::DbLimit;
use super::handoff::{WaitGuard, WaitSlot, Waiter};
use crate::config::PoolMode;
use crate::observe::cards::ServerCard;
use crate::observe::stats::PoolStats;
use crate::server::hosts::HostSet;
use crate::server::{ConnectError, ConnectTarget, ServerConn};
use vet::{expired, fits_role, Vetted};

/// Identifies a pool: the database entry clients name, and the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// Database entry name (what clients connect to).
    pub database: String,
    /// Client user name.
    pub user: String,
}

/// A pool's settings, derived from the config snapshot; swapped on reload.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Maximum server connections.
    pub size: u32,
    /// Connections allowed beyond `size` once the longest-waiting client has
    /// waited `reserve_timeout` (0 = none).
    pub reserve_size: u32,
    /// How long a client waits before the reserve may be used.
    pub reserve_timeout: Duration,
    /// Connections kept open even when idle.
    pub min_size: u32,
    /// Transaction or session pooling.
    pub mode: PoolMode,
    /// Query run on release when needed ("" = none).
    pub reset_query: String,
    /// Run the reset query after every transaction.
    pub reset_always: bool,
    /// Health check for connections idle longer than `check_delay`.
    pub check_query: String,
    /// Idle time after which a connection is checked before use.
    pub check_delay: Duration,
    /// Idle connections beyond `min_size` older than this are closed (0 = never).
    pub idle_timeout: Duration,
    /// Connections older than this are closed when idle (0 = never).
    pub lifetime: Duration,
    /// How long a client waits for a connection (0 = forever).
    pub query_wait_timeout: Duration,
    /// Replies to a query outstanding this long end the client and close
    /// the server connection (0 = off).
    pub query_timeout: Duration,
    /// A client silent this long inside a transaction is closed, and so is
    /// its server connection (0 = off).
    pub idle_transaction_timeout: Duration,
    /// A client silent this long between transactions is closed (0 = off).
    pub client_idle_timeout: Duration,
    /// Where and how to connect (`target.host`/`port`: the first host, for
    /// messages; connections go where `hosts` says).
    pub target: ConnectTarget,
    /// The entry's hosts: choice, roles, set-aside hosts.
    pub hosts: Arc<HostSet>,
    /// Bumped when `target` changes; older connections are retired.
    pub epoch: u64,
    /// Protocol-level prepared statements kept per server connection
    /// (0 = the pooler passes named statements through untouched).
    pub max_prepared: u32,
}

/// Why a checkout failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckoutError {
    /// No connection within `query_wait_timeout`; with the last reason a
    /// connection could not be opened, if any.
    #[error("query_wait_timeout: no server connection became available within {0} s{last}", last = last_attempt(.1))]
    WaitTimeout(u64, Option<Arc<str>>),
    /// Opening a connection failed.
    #[error("{0}")]
    Connect(Arc<ConnectError>),
    /// The pool was closed (its database was removed or the pooler is stopping).
    #[error("pool for database \"{0}\" is closed")]
    Closed(String),
}

fn last_attempt(failure: &Option<Arc<str>>) -> String {
    failure
        .as_ref()
        .map(|e| format!(" (last connection attempt: {e})"))
        .unwrap_or_default()
}

/// Parameter name/value pairs a server reported at login, told to clients.
pub type Welcome = Arc<Vec<(String, String)>>;

#[derive(Debug, Default)]
struct State {
    /// Boxed: connections move between the stack, waiters and sessions on
    /// every transaction, and a box moves as one pointer.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    waiters: VecDeque<Waiter>,
    /// Connections open, opening, in use, or being reset.
    open: u32,
    /// Of which still opening.
    connecting: u32,
    /// Why the last connection attempt failed (cleared by a success); while
    /// set, new attempts wait for the maintenance tick instead of looping.
    last_failure: Option<Arc<str>>,
    /// Every logged-in connection, for `SHOW SERVERS`; changes only when
    /// one opens or closes.
    cards: std::collections::BTreeMap<u64, ServerCard>,
}

/// A pool of server connections for one (database entry, user).
#[derive(Debug)]
pub struct Pool {
    /// Which pool this is.
    pub key: PoolKey,
    settings: ArcSwap<PoolSettings>,
    /// Bumped after each settings replacement (see [`SettingsCache`]).
    generation: AtomicU64,
    state: Mutex<State>,
    db: Arc<DbLimit>,
    closed: AtomicBool,
    /// Admin PAUSE: no new transaction gets a server; released connections close.
    paused: AtomicBool,
    welcome: Mutex<Option<Welcome>>,
    /// Counters read by the admin console and metrics.
    pub stats: PoolStats,
    me: Weak<Pool>,
}

impl Pool {
    /// Creates a pool and starts its maintenance task.
    pub fn new(key: PoolKey, settings: PoolSettings, db: Arc<DbLimit>) -> Arc<Pool> {
        let pool = Arc::new_cyclic(|me| Pool {
            key,
            settings: ArcSwap::from_pointee(settings),
            generation: AtomicU64::new(0),
            state: Mutex::default(),
            db,
            closed: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            welcome: Mutex::default(),
            stats: PoolStats::default(),
            me: me.clone(),
        });
        super::maintain::spawn(Arc::downgrade(&pool));
        pool
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent counters (no
        // partial updates span an unwind point), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings in force.
    pub fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    /// The settings in force, as an owned handle (for holding across waits).
    pub fn settings_full(&self) -> Arc<PoolSettings> {
        self.settings.load_full()
    }

    /// Replaces the settings (reload); surplus connections close as released.
    pub fn set_settings(&self, settings: PoolSettings) {
        self.settings.store(Arc::new(settings));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever the settings are replaced: a [`SettingsCache`] reloads
    /// only then.
    pub fn settings_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Retires every connection: idle ones close now, busy ones when
    /// released (admin RECONNECT); new ones are opened as needed.
    pub fn retire_connections(&self) {
        let s = self.settings();
        let mut next = (**s).clone();
        next.epoch += 1;
        drop(s);
        self.set_settings(next);
        for conn in self.take_idle_where(|_, _| true) {
            self.forget(conn, true);
        }
    }

    /// Changes the database-wide connection cap (reload).
    pub fn set_db_max(&self, max: u32) {
        self.db.set_max(max);
    }

    /// Marks the pool closed: waiters fail, idle connections close (the
    /// returned tasks send their Terminate), and released ones are closed.
    pub fn close(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.closed.store(true, Ordering::Release);
        let (idle, waiters) = {
            let mut st = self.lock();
            (
                std::mem::take(&mut st.idle),
                std::mem::take(&mut st.waiters),
            )
        };
        for w in waiters {
            let _ = w.deliver(Err(CheckoutError::Closed(self.key.database.clone())));
        }
        idle.into_iter()
            .filter_map(|conn| self.forget_with_goodbye(conn, true))
            .collect()
    }

    /// True once [`Self::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Parameters a new client is told at login (from a server of this pool).
    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome.lock().ok().and_then(|w| w.clone())
    }

    fn remember_welcome(&self, conn: &ServerConn) {
        if let Ok(mut w) = self.welcome.lock() {
            if w.is_none() {
                *w = Some(Arc::new(conn.reported_names.clone()));
            }
        }
    }

    /// Waits for a connection: an idle one at once, otherwise in FIFO order
    /// behind earlier waiters, up to `query_wait_timeout`. `asked` is when the
    /// client asked (the caller's clock reading, reused so the transaction
    /// path reads the clock as few times as it can); `slot` is the client's
    /// place to be handed a connection.
    pub async fn checkout(
        &self,
        asked: Instant,
        slot: &Arc<WaitSlot>,
    ) -> Result<Checkout, CheckoutError> {
        let settings = self.settings_full();
        self.checkout_with(asked, slot, &settings).await
    }

    /// [`Self::checkout`] under `settings` (the caller's cached copy of this
    /// pool's settings).
    pub async fn checkout_with(
        &self,
        asked: Instant,
        slot: &Arc<WaitSlot>,
        settings: &PoolSettings,
    ) -> Result<Checkout, CheckoutError> {
        let mut now = asked;
        loop {
            if self.is_closed() {
                return Err(CheckoutError::Closed(self.key.database.clone()));
            }
            let mut leftover = None;
            let idle = {
                let mut st = self.lock();
                // Invariant: idle connections exist only while no client waits
                // (checkin serves waiters first), so no pruning is needed here.
                let idle = if st.waiters.is_empty() && !self.is_paused() {
                    st.idle.pop()
                } else {
                    None
                };
                if idle.is_none() {
                    let (ticket, stale) = slot.begin();
                    leftover = stale;
                    st.waiters.push_back(Waiter {
                        slot: slot.clone(),
                        ticket,
                        since: now,
                    });
                    self.stats.waiting_started();
                    self.grow_locked(&mut st, settings);
                }
                idle
            };
            drop(leftover);
            let conn = match idle {
                Some(conn) => conn,
                None => {
                    let mut wait = WaitGuard {
                        slot,
                        stats: &self.stats,
                        since: now,
                        done: false,
                    };
                    let result = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
                    wait.done = true;
                    let waited = now;
                    now = Instant::now();
                    self.stats
                        .waiting_ended(now.saturating_duration_since(waited));
                    let Some(conn) = result?.into_conn() else {
                        continue;
                    };
                    conn
                }
            };
            // Synchronous unless the check query is due, so the common
            // checkout builds no extra future.
            let conn = match self.vet_idle(conn, settings, now) {
                Vetted::Ready(conn) => Some(conn),
                Vetted::Closed => None,
                Vetted::CheckDue(conn) => self.run_check_query(conn, settings).await,
            };
            if let Some(conn) = conn {
                return Ok(self.guard(conn, now));
            }
        }
    }

    fn guard(&self, conn: Box<ServerConn>, at: Instant) -> Checkout {
        match self.me.upgrade() {
            Some(pool) => Checkout::new(pool, conn, at),
            // Unreachable while `&self` is alive through an Arc.
            None => Checkout::detached(conn, at),
        }
    }

    /// Starts opening a connection if waiters outnumber connections being
    /// opened and the limits allow.
    fn grow_locked(&self, st: &mut State, s: &PoolSettings) {
        let waiting = st.waiters.len() as u32;
        if st.connecting >= waiting
            || st.open >= allowed_open(st, s)
            || self.is_paused()
            || st.last_failure.is_some() && st.connecting > 0
        {
            return;
        }
        if !self.db.try_acquire() {
            self.db.want(self.me.clone());
            return;
        }
        st.open += 1;
        st.connecting += 1;
        self.spawn_connect(s);
    }

    fn spawn_connect(&self, s: &PoolSettings) {
        let Some(pool) = self.me.upgrade() else {
            return;
        };
        let target = s.target.clone();
        let hosts = s.hosts.clone();
        let epoch = s.epoch;
        tokio::spawn(async move {
            let result = super::connect::open(&hosts, &target).await.map(|mut c| {
                c.epoch = epoch;
                c
            });
            pool.connect_finished(result);
        });
    }

    fn connect_finished(&self, result: Result<Box<ServerConn>, ConnectError>) {
        match result {
            Ok(conn) => {
                self.stats.server_connected();
                tracing::debug!(pool = %self.key.database, user = %self.key.user, id = conn.id, "server connection opened");
                self.remember_welcome(&conn);
                {
                    let mut st = self.lock();
                    st.connecting -= 1;
                    st.last_failure = None;
                    st.cards.insert(conn.id, conn.card());
                }
                self.checkin(conn);
            }
            Err(e) => {
                tracing::warn!(pool = %self.key.database, user = %self.key.user, error = %e, "server connection failed");
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                let transient = e.is_transient();
                let waiters = {
                    let mut st = self.lock();
                    st.connecting -= 1;
                    st.open -= 1;
                    st.last_failure = Some(e.to_string().into());
                    if transient {
                        // Clients keep waiting (up to query_wait_timeout);
                        // the maintenance tick tries again.
                        VecDeque::new()
                    } else {
                        std::mem::take(&mut st.waiters)
                    }
                };
                self.db.release();
                let e = CheckoutError::Connect(Arc::new(e));
                for w in waiters {
                    let _ = w.deliver(Err(e.clone()));
                }
            }
        }
    }

    /// Takes an already open connection into the pool's count and hands it
    /// out like a fresh one (benches, tests, and connections opened elsewhere).
    pub fn adopt(&self, conn: ServerConn) {
        let mut conn = Box::new(conn);
        conn.epoch = self.settings().epoch;
        {
            let mut st = self.lock();
            st.open += 1;
            st.cards.insert(conn.id, conn.card());
        }
        let _ = self.db.try_acquire();
        self.checkin(conn);
    }

    /// Returns a clean connection: to the first live waiter, else to the idle
    /// stack; closes it instead if the pool shrank, closed or it expired.
    pub fn checkin(&self, conn: Box<ServerConn>) {
        self.checkin_at(conn, Instant::now());
    }

    /// [`Self::checkin`] of a connection last used at `now`.
    pub fn checkin_at(&self, conn: Box<ServerConn>, now: Instant) {
        self.checkin_with(conn, now, &self.settings());
    }

    /// [`Self::checkin_at`] under `s` (the caller's cached copy of this pool's
    /// settings).
    pub fn checkin_with(&self, mut conn: Box<ServerConn>, now: Instant, s: &PoolSettings) {
        conn.last_used = now;
        let mut st = self.lock();
        if self.is_closed()
            || self.is_paused()
            || st.open > s.size && st.open > allowed_open(&st, s)
            || !fits_role(&conn, &s.hosts)
            || expired(&conn, s, now)
            || self.db.has_wanting() && st.waiters.is_empty()
        {
            drop(st);
            self.forget(conn, true);
            return;
        }
        while let Some(w) = st.waiters.pop_front() {
            match w.deliver(Ok(self.guard(conn, now))) {
                Ok(()) => return,
                Err(Ok(guard)) => match guard.into_conn() {
                    Some(c) => conn = c,
                    None => return,
                },
                Err(Err(_)) => return,
            }
        }
        st.idle.push(conn);
    }

    /// Drops a connection from the pool's count; `polite` sends Terminate.
    pub fn forget(&self, conn: Box<ServerConn>, polite: bool) {
        let _ = self.forget_with_goodbye(conn, polite);
    }

    /// [`Self::forget`], returning the task that sends the Terminate.
    fn forget_with_goodbye(
        &self,
        conn: Box<ServerConn>,
        polite: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.stats.server_closed();
        self.settings().hosts.closed(conn.host);
        {
            let mut st = self.lock();
            st.open -= 1;
            st.cards.remove(&conn.id);
            let s = self.settings();
            self.grow_locked(&mut st, &s);
        }
        self.db.release();
        if polite && tokio::runtime::Handle::try_current().is_ok() {
            return Some(tokio::spawn((*conn).terminate()));
        }
        None
    }

    /// A slot of the database-wide cap freed up: retry growing.
    pub fn wake_for_db_slot(&self) {
        let s = self.settings();
        let mut st = self.lock();
        self.grow_locked(&mut st, &s);
    }

    /// Removes idle connections matching `pred` (maintenance), returning them.
    /// `pred` gets each idle connection (least recently used first) and the
    /// number of connections that would stay open if it were not taken.
    pub fn take_idle_where(
        &self,
        mut pred: impl FnMut(&ServerConn, u32) -> bool,
    ) -> Vec<Box<ServerConn>> {
        let mut st = self.lock();
        let mut taken = Vec::new();
        let mut i = 0;
        while i < st.idle.len() {
            let staying = st.open - taken.len() as u32;
            if pred(&st.idle[i], staying) {
                taken.push(st.idle.remove(i));
            } else {
                i += 1;
            }
        }
        taken
    }

    /// Fails waiters that have waited `query_wait_timeout` or longer
    /// (maintenance). The queue is oldest-first, so this stops at the first
    /// waiter still in time.
    pub fn expire_waiters(&self) {
        let timeout = self.settings().query_wait_timeout;
        if timeout.is_zero() {
            return;
        }
        let mut expired = Vec::new();
        let last_failure = {
            let mut st = self.lock();
            while st
                .waiters
                .front()
                .is_some_and(|w| w.since.elapsed() >= timeout || !w.is_live())
            {
                if let Some(w) = st.waiters.pop_front() {
                    expired.push(w);
                }
            }
            st.last_failure.clone()
        };
        for w in expired {
            let e = CheckoutError::WaitTimeout(timeout.as_secs(), last_failure.clone());
            if w.deliver(Err(e)).is_ok() {
                self.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// After a failed connection attempt, tries again for the clients still
    /// waiting; once the longest-waiting client has waited
    /// `reserve_pool_timeout`, opens reserve connections for the waiters
    /// (maintenance tick).
    pub fn retry_growth(&self) {
        let s = self.settings();
        let mut st = self.lock();
        if st.waiters.is_empty() {
            return;
        }
        if st.last_failure.is_some() {
            if st.connecting == 0 {
                self.grow_locked(&mut st, &s);
            }
            return;
        }
        if s.reserve_size > 0 && st.open >= s.size {
            self.grow_for_all_waiters_locked(&mut st, &s);
        }
    }

    /// Starts one connection per waiter, as far as the limits allow.
    fn grow_for_all_waiters_locked(&self, st: &mut State, s: &PoolSettings) {
        loop {
            let before = st.connecting;
            self.grow_locked(st, s);
            if st.connecting == before {
                break;
            }
        }
    }

    /// Why the last connection attempt failed, while no attempt has succeeded since.
    pub fn last_failure(&self) -> Option<Arc<str>> {
        self.lock().last_failure.clone()
    }

    /// Opens connections until `min_size` are open (maintenance).
    pub fn fill_to_min(&self) {
        let s = self.settings();
        let mut st = self.lock();
        while st.open < s.min_size.min(s.size) && !self.is_closed() && !self.is_paused() {
            if !self.db.try_acquire() {
                break;
            }
            st.open += 1;
            st.connecting += 1;
            self.spawn_connect(&s);
        }
    }

    /// Admin PAUSE: new transactions wait, idle connections close now and
    /// busy ones when released. [`Self::is_drained`] tells when none is left.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        for conn in self.take_idle_where(|_, _| true) {
            self.forget(conn, true);
        }
    }

    /// Admin RESUME: waiting clients get servers again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        let s = self.settings();
        let mut st = self.lock();
        self.grow_for_all_waiters_locked(&mut st, &s);
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// True when no server connection is open (a PAUSE has taken effect).
    pub fn is_drained(&self) -> bool {
        self.lock().open == 0
    }
}

/// How many connections the pool may have open now: its size, plus the
/// reserve while the longest-waiting client has waited `reserve_timeout`.
/// (The clock is read only when the pool is full and has a reserve.)
fn allowed_open(st: &State, s: &PoolSettings) -> u32 {
    if s.reserve_size == 0 || st.open < s.size {
        return s.size;
    }
    let waited_long = st
        .waiters
        .iter()
        .find(|w| w.is_live())
        .is_some_and(|w| w.since.elapsed() >= s.reserve_timeout);
    if waited_long {
        s.size + s.reserve_size
    } else {
        s.size
    }
}
