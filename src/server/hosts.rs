//! The servers of one database entry (`host` or `hosts`): which one a new
//! server connection goes to, what role each has, which are set aside.
//!
//! - **Choice**: among hosts that are not set aside and whose known role
//!   suits the entry, the one with the fewest open connections. A `reader`
//!   entry prefers standbys and falls back to a primary (when
//!   `fallback_to_writer`) only if no standby can be used.
//! - **Role**: learned at every login (`in_hot_standby`, else
//!   `pg_is_in_recovery()`), and kept up to date by what connections report
//!   afterwards (a ParameterStatus change, or SQLSTATE 25006 on a writer).
//!   A role verdict is only trusted for [`ROLE_RECHECK`]: a standby may be
//!   promoted at any moment, so a writer entry looks again.
//! - **Set aside**: a host that refuses connections or fails the check query
//!   is not used until the background task's probe (an SSLRequest, no login)
//!   sees it answer again; probes back off from [`MIN_BACKOFF`] to
//!   [`MAX_BACKOFF`].
//! - **DNS**: names are resolved when first needed and again every
//!   `dns_max_ttl` in the background; never on a client's path. When a name's
//!   addresses change, the host's generation moves on and connections of the
//!   old generation are retired as they are released — except for `reader`
//!   entries, whose endpoint (Aurora's) answers each lookup with a different
//!   replica: there the role check alone decides.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::resolve::{Resolve, SystemResolver};
use crate::config::Role;

/// How long a host's known role is trusted before a writer entry re-checks it.
pub const ROLE_RECHECK: Duration = Duration::from_millis(500);
/// First delay before a set-aside host is probed again.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between probes of a set-aside host.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the background task looks at the hosts.
const TICK: Duration = Duration::from_millis(100);

/// What a server is, as it reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// Accepts writes (not in recovery).
    Primary,
    /// A hot standby (in recovery, read-only).
    Standby,
}

impl ServerRole {
    /// From "is it a standby?".
    pub fn from_standby(standby: bool) -> ServerRole {
        if standby {
            ServerRole::Standby
        } else {
            ServerRole::Primary
        }
    }

    /// `primary` or `standby`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Primary => "primary",
            ServerRole::Standby => "standby",
        }
    }
}

/// A host as the admin console and metrics show it.
#[derive(Debug, Clone)]
pub struct HostView {
    /// Host name or address as configured.
    pub name: String,
    /// Port.
    pub port: u16,
    /// The address connections go to (first resolved one), if resolved.
    pub addr: Option<SocketAddr>,
    /// False while set aside.
    pub up: bool,
    /// Last known role.
    pub role: Option<ServerRole>,
    /// Server connections open to it.
    pub connections: u32,
    /// When its state last changed.
    pub last_change: SystemTime,
    /// Why it was last set aside.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct HostState {
    addrs: Vec<SocketAddr>,
    resolved_at: Option<Instant>,
    role: Option<ServerRole>,
    role_seen: Option<Instant>,
    aside_until: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
    last_change: SystemTime,
}

/// One configured server.
#[derive(Debug)]
pub struct Host {
    /// Host name or address as configured.
    pub name: String,
    /// Port.
    pub port: u16,
    literal: Option<IpAddr>,
    open: AtomicU32,
    generation: AtomicU64,
    state: Mutex<HostState>,
}

impl Host {
    fn lock(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current generation; connections opened under an older one are retired.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }
}

/// A connection attempt's plan: which host, at which address, in which generation.
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    /// Index into [`HostSet::hosts`].
    pub index: usize,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The host's generation at the time.
    pub generation: u64,
}

/// The hosts of one database entry, shared by its pools.
#[derive(Debug)]
pub struct HostSet {
    /// The database entry.
    pub database: String,
    /// What the entry needs its servers to be.
    pub role: Role,
    /// A reader entry may use a primary while no standby is usable.
    pub fallback_to_writer: bool,
    /// The hosts, in configuration order.
    pub hosts: Vec<Host>,
    dns_max_ttl: Duration,
    /// Times a different host became the primary (writer entries).
    pub failovers: AtomicU64,
    /// Times a host's role was seen to change.
    pub role_changes: AtomicU64,
    last_primary: Mutex<Option<usize>>,
    background: AtomicBool,
    resolver: Arc<dyn Resolve>,
}

impl HostSet {
    /// A host set for `hosts` (name, port).
    pub fn new(
        database: &str,
        role: Role,
        fallback_to_writer: bool,
        hosts: &[(String, u16)],
        dns_max_ttl: Duration,
    ) -> Arc<HostSet> {
        Arc::new(HostSet {
            database: database.to_owned(),
            role,
            fallback_to_writer,
            hosts: hosts
                .iter()
                .map(|(name, port)| Host {
                    name: name.clone(),
                    port: *port,
                    literal: name.parse().ok(),
                    open: AtomicU32::new(0),
                    generation: AtomicU64::new(0),
                    state: Mutex::new(HostState {
                        addrs: Vec::new(),
                        resolved_at: None,
                        role: None,
                        role_seen: None,
                        aside_until: None,
                        backoff: MIN_BACKOFF,
                        last_error: None,
                        last_change: SystemTime::now(),
                    }),
                })
                .collect(),
            dns_max_ttl,
            failovers: AtomicU64::new(0),
            role_changes: AtomicU64::new(0),
            last_primary: Mutex::new(None),
            background: AtomicBool::new(false),
            resolver: Arc::new(SystemResolver),
        })
    }

    /// The same set, resolving names with `resolver` (tests). Call before sharing it.
    pub fn with_resolver(mut self: Arc<Self>, resolver: Arc<dyn Resolve>) -> Arc<HostSet> {
        if let Some(set) = Arc::get_mut(&mut self) {
            set.resolver = resolver;
        }
        self
    }

    /// True if two sets describe the same servers and rules (reload keeps the old one,
    /// with what it learned).
    pub fn same_as(
        &self,
        role: Role,
        fallback: bool,
        hosts: &[(String, u16)],
        ttl: Duration,
    ) -> bool {
        self.role == role
            && self.fallback_to_writer == fallback
            && self.dns_max_ttl == ttl
            && self.hosts.len() == hosts.len()
            && self
                .hosts
                .iter()
                .zip(hosts)
                .all(|(h, (name, port))| h.name == *name && h.port == *port)
    }

    /// Starts the background task (probes and DNS) once; it ends with the set.
    pub fn start_background(self: &Arc<Self>, probe_timeout: Duration) {
        if self.background.swap(true, Relaxed) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(background(Arc::downgrade(self), probe_timeout));
    }

    /// Chooses a host for a new connection, skipping `tried` ones, and resolves
    /// it if needed. `None` when no host can be used now.
    pub async fn pick(&self, tried: &[bool]) -> Option<Result<Pick, (usize, String)>> {
        let now = Instant::now();
        let mut best: Option<(u8, u32, usize)> = None;
        for (i, host) in self.hosts.iter().enumerate() {
            if tried.get(i).copied().unwrap_or(false) {
                continue;
            }
            let st = host.lock();
            if st.aside_until.is_some_and(|t| t > now) {
                continue;
            }
            let fresh = st
                .role_seen
                .is_some_and(|t| now.duration_since(t) < ROLE_RECHECK);
            let known = if fresh { st.role } else { None };
            let rank = match (self.role, known) {
                (Role::Any, _) => 0,
                (Role::Writer, Some(ServerRole::Standby)) => continue,
                (Role::Writer, _) => 0,
                (Role::Reader, Some(ServerRole::Primary)) if !self.fallback_to_writer => continue,
                (Role::Reader, Some(ServerRole::Primary)) => 1,
                (Role::Reader, _) => 0,
            };
            let open = host.open.load(Relaxed);
            if best.is_none_or(|(r, o, _)| (rank, open) < (r, o)) {
                best = Some((rank, open, i));
            }
        }
        let (_, _, index) = best?;
        Some(self.address(index).await.map_err(|e| (index, e)))
    }

    /// The address to connect to for host `index`, resolving its name when
    /// it has never been resolved or the last answer is older than `dns_max_ttl`.
    async fn address(&self, index: usize) -> Result<Pick, String> {
        let host = &self.hosts[index];
        if let Some(ip) = host.literal {
            return Ok(Pick {
                index,
                addr: SocketAddr::new(ip, host.port),
                generation: host.generation(),
            });
        }
        let cached = {
            let st = host.lock();
            let stale = st
                .resolved_at
                .is_none_or(|t| t.elapsed() >= self.dns_max_ttl);
            (!stale).then(|| st.addrs.first().copied()).flatten()
        };
        let addr = match cached {
            Some(a) => a,
            None => self.resolve(index).await?,
        };
        Ok(Pick {
            index,
            addr,
            generation: host.generation(),
        })
    }

    /// Looks the host's name up; a changed answer starts a new generation
    /// (except for reader entries, see the module docs).
    pub(super) async fn resolve(&self, index: usize) -> Result<SocketAddr, String> {
        let host = &self.hosts[index];
        let found = self
            .resolver
            .resolve(&host.name, host.port)
            .await
            .map_err(|e| format!("could not resolve {}: {e}", host.name))?;
        let first = *found
            .first()
            .ok_or_else(|| format!("{} resolved to no address", host.name))?;
        let mut st = host.lock();
        let changed = !st.addrs.is_empty() && !same_addrs(&st.addrs, &found);
        st.addrs = found;
        st.resolved_at = Some(Instant::now());
        if changed {
            st.last_change = SystemTime::now();
            if self.role != Role::Reader {
                host.generation.fetch_add(1, Relaxed);
                tracing::info!(db = %self.database, host = %host.name, addr = %first, "host address changed; connections to the old address retire when released");
            }
        }
        Ok(first)
    }

    /// A connection to host `index` logged in and reported `role`: true if
    /// the entry may use it. Records the role (and counts changes, failovers).
    pub fn accepts(&self, index: usize, role: ServerRole) -> bool {
        self.note_role(index, role);
        match (self.role, role) {
            (Role::Any, _) | (Role::Writer, ServerRole::Primary) => true,
            (Role::Writer, ServerRole::Standby) => false,
            (Role::Reader, ServerRole::Standby) => true,
            (Role::Reader, ServerRole::Primary) => {
                self.fallback_to_writer && !self.standby_usable(index)
            }
        }
    }

    /// True if a role the entry does not want is still acceptable on an
    /// existing connection (a reader entry that fell back to the writer keeps
    /// using it only while no standby is usable).
    pub fn still_accepts(&self, index: usize, standby: Option<bool>) -> bool {
        match (self.role, standby) {
            (Role::Any, _) | (_, None) => true,
            (Role::Writer, Some(s)) => !s,
            (Role::Reader, Some(true)) => true,
            (Role::Reader, Some(false)) => self.fallback_to_writer && !self.standby_usable(index),
        }
    }

    fn standby_usable(&self, except: usize) -> bool {
        let now = Instant::now();
        self.hosts.iter().enumerate().any(|(i, h)| {
            let st = h.lock();
            i != except
                && st.role == Some(ServerRole::Standby)
                && st.aside_until.is_none_or(|t| t <= now)
        })
    }

    /// Records a host's role as a connection reported it.
    pub fn note_role(&self, index: usize, role: ServerRole) {
        let Some(host) = self.hosts.get(index) else {
            return;
        };
        {
            let mut st = host.lock();
            st.role_seen = Some(Instant::now());
            if st.role == Some(role) {
                return;
            }
            let before = st.role.replace(role);
            st.last_change = SystemTime::now();
            if before.is_some() {
                self.role_changes.fetch_add(1, Relaxed);
                // Connections that still think of it in its old role retire.
                host.generation.fetch_add(1, Relaxed);
                tracing::info!(db = %self.database, host = %host.name, port = host.port, from = before.map_or("unknown", ServerRole::as_str), to = role.as_str(), "host role changed");
            }
        }
        if role == ServerRole::Primary {
            let mut last = self.last_primary.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|l| l != index) {
                self.failovers.fetch_add(1, Relaxed);
                tracing::info!(db = %self.database, host = %host.name, port = host.port, "failover: a different host is now the primary");
            }
            *last = Some(index);
        }
    }

    /// A connection said its server may no longer be what we thought (SQLSTATE
    /// 25006 on a writer): that connection is closed, and the role forgotten
    /// so the next connection learns it. The host's other connections stay
    /// unless that login finds a standby (a read-only transaction on a true
    /// primary must not churn the whole pool).
    pub fn role_in_doubt(&self, index: usize) {
        if let Some(host) = self.hosts.get(index) {
            let mut st = host.lock();
            st.role_seen = None;
            st.resolved_at = None;
        }
    }

    /// The host refused, timed out or failed its check: set it aside.
    pub fn set_aside(&self, index: usize, why: &str) {
        let Some(host) = self.hosts.get(index) else {
            return;
        };
        let mut st = host.lock();
        let was_up = st.aside_until.is_none();
        st.aside_until = Some(Instant::now() + st.backoff);
        st.last_error = Some(why.to_owned());
        // A name may point elsewhere by now.
        st.resolved_at = None;
        if was_up {
            st.last_change = SystemTime::now();
            host.generation.fetch_add(1, Relaxed);
            tracing::info!(db = %self.database, host = %host.name, port = host.port, reason = why, "host set aside");
        }
    }

    /// A connection to host `index` was opened.
    pub fn opened(&self, index: usize) {
        if let Some(h) = self.hosts.get(index) {
            h.open.fetch_add(1, Relaxed);
            let mut st = h.lock();
            if st.aside_until.take().is_some() {
                st.backoff = MIN_BACKOFF;
                st.last_change = SystemTime::now();
                tracing::info!(db = %self.database, host = %h.name, port = h.port, "host back in use");
            }
        }
    }

    /// A connection to host `index` was closed.
    pub fn closed(&self, index: usize) {
        if let Some(h) = self.hosts.get(index) {
            let _ = h
                .open
                .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }

    /// True if a connection opened under `generation` to host `index` is still current.
    pub fn is_current(&self, index: usize, generation: u64) -> bool {
        self.hosts
            .get(index)
            .is_none_or(|h| h.generation() == generation)
    }

    /// Why no host can be used, for error messages: each host's state.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .views()
            .iter()
            .map(|h| {
                let state = match (h.up, h.role) {
                    (false, _) => format!(
                        "set aside ({})",
                        h.last_error.as_deref().unwrap_or("failed")
                    ),
                    (true, Some(role)) => format!("a {}", role.as_str()),
                    (true, None) => "not reached yet".to_owned(),
                };
                format!("{}:{} is {state}", h.name, h.port)
            })
            .collect();
        format!(
            "no usable server for database \"{}\", which needs {}: {}",
            self.database,
            match (self.role, self.fallback_to_writer) {
                (Role::Writer, _) => "a primary",
                (Role::Reader, true) => "a standby, or the primary",
                (Role::Reader, false) => "a standby (fallback_to_writer = false)",
                (Role::Any, _) => "any server",
            },
            hosts.join("; ")
        )
    }

    /// Every host's state, for `SHOW HOSTS` and metrics.
    pub fn views(&self) -> Vec<HostView> {
        let now = Instant::now();
        self.hosts
            .iter()
            .map(|h| {
                let st = h.lock();
                HostView {
                    name: h.name.clone(),
                    port: h.port,
                    addr: h
                        .literal
                        .map(|ip| SocketAddr::new(ip, h.port))
                        .or_else(|| st.addrs.first().copied()),
                    up: st.aside_until.is_none_or(|t| t <= now),
                    role: st.role,
                    connections: h.open.load(Relaxed),
                    last_change: st.last_change,
                    last_error: st.last_error.clone(),
                }
            })
            .collect()
    }
}

fn same_addrs(a: &[SocketAddr], b: &[SocketAddr]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Probes set-aside hosts whose backoff has passed, and re-resolves names
/// every `dns_max_ttl`, until the set is dropped.
async fn background(set: Weak<HostSet>, probe_timeout: Duration) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(set) = set.upgrade() else { return };
        let now = Instant::now();
        for (i, host) in set.hosts.iter().enumerate() {
            let (probe, resolve) = {
                let st = host.lock();
                let probe = st.aside_until.is_some_and(|t| t <= now);
                let resolve = host.literal.is_none()
                    && !set.dns_max_ttl.is_zero()
                    && st
                        .resolved_at
                        .is_some_and(|t| t.elapsed() >= set.dns_max_ttl);
                (probe, resolve)
            };
            if resolve {
                let _ = set.resolve(i).await;
            }
            if probe {
                let target = set.address(i).await.map(|p| p.addr);
                let answers = match target {
                    Ok(addr) => {
                        super::probe::answers(&addr.ip().to_string(), addr.port(), probe_timeout)
                            .await
                    }
                    Err(_) => false,
                };
                let mut st = host.lock();
                if answers {
                    st.aside_until = None;
                    st.backoff = MIN_BACKOFF;
                    st.last_change = SystemTime::now();
                    tracing::info!(db = %set.database, host = %host.name, port = host.port, "host answers again; back in use");
                } else {
                    st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
                    st.aside_until = Some(Instant::now() + st.backoff);
                }
            }
        }
    }
}
