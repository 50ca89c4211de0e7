//! The SHOW commands: each builds a table from read-only state (pools and
//! their counters, the config snapshot), with PgBouncer 1.21's column names,
//! order and types so exporters that parse them work unchanged.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::app::Shared;

/// PostgreSQL type OIDs used in admin tables.
pub(super) const TEXT: u32 = 25;
pub(super) const INT4: u32 = 23;
/// PgBouncer's STATS counters are NUMERIC.
pub(super) const NUMERIC: u32 = 1700;

/// A result table: column names with type OIDs, and text rows.
#[derive(Debug, Default)]
pub struct Table {
    /// Column names and type OIDs.
    pub columns: Vec<(&'static str, u32)>,
    /// Rows; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub(super) fn new(columns: &[(&'static str, u32)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row.into_iter().map(Some).collect());
    }
}

/// The pooler's version string, with the PgBouncer version whose admin
/// console it mirrors (exporters look for "PgBouncer x.y.z").
pub fn version() -> Table {
    let mut t = Table::new(&[("version", TEXT)]);
    t.push(vec![format!(
        "pgpool-rs {} (admin console compatible with PgBouncer 1.21.0)",
        env!("CARGO_PKG_VERSION")
    )]);
    t
}

/// SHOW POOLS.
pub fn pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT4),
        ("cl_waiting", INT4),
        ("cl_active_cancel_req", INT4),
        ("cl_waiting_cancel_req", INT4),
        ("sv_active", INT4),
        ("sv_active_cancel", INT4),
        ("sv_being_canceled", INT4),
        ("sv_idle", INT4),
        ("sv_used", INT4),
        ("sv_tested", INT4),
        ("sv_login", INT4),
        ("maxwait", INT4),
        ("maxwait_us", INT4),
        ("pool_mode", TEXT),
    ]);
    for pool in shared.registry.pools() {
        let c = pool.counts();
        let clients = pool.stats.clients.load(Relaxed);
        let waited = pool.oldest_wait();
        let active_servers = c.open.saturating_sub(c.idle + c.connecting);
        t.push(vec![
            pool.key.database.clone(),
            pool.key.user.clone(),
            clients.saturating_sub(u64::from(c.waiting)).to_string(),
            c.waiting.to_string(),
            "0".into(),
            "0".into(),
            active_servers.to_string(),
            "0".into(),
            "0".into(),
            c.idle.to_string(),
            "0".into(),
            "0".into(),
            c.connecting.to_string(),
            waited.as_secs().to_string(),
            waited.subsec_micros().to_string(),
            pool.settings().mode.as_str().to_owned(),
        ]);
    }
    t
}

/// SHOW STATS: totals per database since start; averages are per second
/// over the pooler's uptime. Query time is not measured yet (0).
pub fn stats(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", TEXT),
        ("total_xact_count", NUMERIC),
        ("total_query_count", NUMERIC),
        ("total_received", NUMERIC),
        ("total_sent", NUMERIC),
        ("total_xact_time", NUMERIC),
        ("total_query_time", NUMERIC),
        ("total_wait_time", NUMERIC),
        ("avg_xact_count", NUMERIC),
        ("avg_query_count", NUMERIC),
        ("avg_recv", NUMERIC),
        ("avg_sent", NUMERIC),
        ("avg_xact_time", NUMERIC),
        ("avg_query_time", NUMERIC),
        ("avg_wait_time", NUMERIC),
    ]);
    // [xacts, queries, received, sent, xact_us, wait_us, waits]
    let mut per_db: BTreeMap<String, [u64; 7]> = BTreeMap::new();
    for pool in shared.registry.pools() {
        let s = &pool.stats;
        let e = per_db.entry(pool.key.database.clone()).or_default();
        e[0] += s.xact_count.load(Relaxed);
        e[1] += s.query_count.load(Relaxed);
        e[2] += s.bytes_in.load(Relaxed);
        e[3] += s.bytes_out.load(Relaxed);
        e[4] += s.xact_us.load(Relaxed);
        e[5] += s.wait_us.load(Relaxed);
        e[6] += s.waits.load(Relaxed);
    }
    let uptime = shared.started.elapsed().as_secs().max(1);
    for (db, v) in per_db {
        let avg_xact_time = v[4].checked_div(v[0]).unwrap_or(0);
        let avg_wait = v[5].checked_div(v[6]).unwrap_or(0);
        t.push(vec![
            db,
            v[0].to_string(),
            v[1].to_string(),
            v[2].to_string(),
            v[3].to_string(),
            v[4].to_string(),
            "0".into(),
            v[5].to_string(),
            (v[0] / uptime).to_string(),
            (v[1] / uptime).to_string(),
            (v[2] / uptime).to_string(),
            (v[3] / uptime).to_string(),
            avg_xact_time.to_string(),
            "0".into(),
            avg_wait.to_string(),
        ]);
    }
    t
}

/// SHOW DATABASES.
pub fn databases(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT4),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT4),
        ("min_pool_size", INT4),
        ("reserve_pool", INT4),
        ("pool_mode", TEXT),
        ("max_connections", INT4),
        ("current_connections", INT4),
        ("paused", INT4),
        ("disabled", INT4),
    ]);
    let snapshot = shared.snapshot();
    let cfg = &snapshot.config;
    let pools = shared.registry.pools();
    for (name, db) in &cfg.databases {
        let host = db.hosts.first();
        let current: u32 = pools
            .iter()
            .filter(|p| &p.key.database == name && !p.is_closed())
            .map(|p| p.counts().open)
            .sum();
        t.rows.push(vec![
            Some(name.clone()),
            host.map(|h| h.host.clone()),
            host.map(|h| h.port.to_string()),
            Some(db.dbname.clone()),
            db.user.clone(),
            Some(db.effective_pool_size(&cfg.pool).to_string()),
            Some(db.effective_min_pool_size(&cfg.pool).to_string()),
            Some(cfg.pool.reserve_pool_size.to_string()),
            Some(db.effective_pool_mode(&cfg.pool).as_str().to_owned()),
            Some(db.effective_max_db_connections(&cfg.pool).to_string()),
            Some(current.to_string()),
            Some(u8::from(shared.is_paused(name)).to_string()),
            Some("0".into()),
        ]);
    }
    t
}

/// SHOW USERS: userlist entries.
pub fn users(shared: &Shared) -> Table {
    let mut t = Table::new(&[("name", TEXT), ("pool_mode", TEXT)]);
    let snapshot = shared.snapshot();
    let mut names: Vec<&String> = snapshot.users.keys().collect();
    names.sort();
    for n in names {
        t.rows.push(vec![Some(n.clone()), None]);
    }
    t
}

/// SHOW LISTS.
pub fn lists(shared: &Shared) -> Table {
    let mut t = Table::new(&[("list", TEXT), ("items", INT4)]);
    let snapshot = shared.snapshot();
    let pools = shared.registry.pools();
    let (mut open, mut clients) = (0u64, 0u64);
    for p in &pools {
        open += u64::from(p.counts().open);
        clients += p.stats.clients.load(Relaxed);
    }
    let logged_in = shared.stats.clients_now.load(Relaxed);
    let rows: [(&str, u64); 12] = [
        ("databases", snapshot.config.databases.len() as u64),
        ("users", snapshot.users.len() as u64),
        ("pools", pools.len() as u64),
        ("free_clients", 0),
        ("used_clients", clients),
        ("login_clients", logged_in.saturating_sub(clients)),
        ("free_servers", 0),
        ("used_servers", open),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    for (name, n) in rows {
        t.push(vec![name.to_owned(), n.to_string()]);
    }
    t
}

/// SHOW CONFIG: the settings in force.
pub fn config(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("key", TEXT),
        ("value", TEXT),
        ("default", TEXT),
        ("changeable", TEXT),
    ]);
    let snapshot = shared.snapshot();
    let c = &snapshot.config;
    let d = crate::config::PoolSettings::default();
    let secs = |v: std::time::Duration| v.as_secs().to_string();
    let rows: Vec<(&str, String, String, bool)> = vec![
        (
            "listen_addr",
            c.listen.addr.to_string(),
            "0.0.0.0:6432".into(),
            true,
        ),
        (
            "max_client_conn",
            c.listen.max_client_conn.to_string(),
            "1000".into(),
            true,
        ),
        (
            "auth_type",
            c.auth.auth_type.as_str().to_owned(),
            "scram-sha-256".into(),
            true,
        ),
        (
            "pool_mode",
            c.pool.mode.as_str().to_owned(),
            d.mode.as_str().to_owned(),
            true,
        ),
        (
            "default_pool_size",
            c.pool.default_pool_size.to_string(),
            d.default_pool_size.to_string(),
            true,
        ),
        (
            "min_pool_size",
            c.pool.min_pool_size.to_string(),
            d.min_pool_size.to_string(),
            true,
        ),
        (
            "reserve_pool_size",
            c.pool.reserve_pool_size.to_string(),
            d.reserve_pool_size.to_string(),
            true,
        ),
        (
            "max_db_connections",
            c.pool.max_db_connections.to_string(),
            d.max_db_connections.to_string(),
            true,
        ),
        (
            "server_reset_query",
            c.pool.server_reset_query.clone(),
            d.server_reset_query.clone(),
            true,
        ),
        (
            "server_reset_query_always",
            c.pool.server_reset_query_always.to_string(),
            d.server_reset_query_always.to_string(),
            true,
        ),
        (
            "server_check_query",
            c.pool.server_check_query.clone(),
            d.server_check_query.clone(),
            true,
        ),
        (
            "server_check_delay",
            secs(c.pool.server_check_delay),
            secs(d.server_check_delay),
            true,
        ),
        (
            "server_idle_timeout",
            secs(c.pool.server_idle_timeout),
            secs(d.server_idle_timeout),
            true,
        ),
        (
            "server_lifetime",
            secs(c.pool.server_lifetime),
            secs(d.server_lifetime),
            true,
        ),
        (
            "server_connect_timeout",
            secs(c.pool.server_connect_timeout),
            secs(d.server_connect_timeout),
            true,
        ),
        (
            "query_wait_timeout",
            secs(c.pool.query_wait_timeout),
            secs(d.query_wait_timeout),
            true,
        ),
        (
            "client_login_timeout",
            secs(c.pool.client_login_timeout),
            secs(d.client_login_timeout),
            true,
        ),
        (
            "shutdown_timeout",
            secs(c.pool.shutdown_timeout),
            secs(d.shutdown_timeout),
            true,
        ),
        (
            "max_prepared_statements",
            c.pool.max_prepared_statements.to_string(),
            d.max_prepared_statements.to_string(),
            true,
        ),
        (
            "dns_max_ttl",
            secs(c.pool.dns_max_ttl),
            secs(d.dns_max_ttl),
            true,
        ),
        (
            "client_tls_sslmode",
            c.listen.client_tls.as_str().to_owned(),
            "disable".into(),
            true,
        ),
        (
            "server_tls_sslmode",
            c.pool.server_tls.as_str().to_owned(),
            d.server_tls.as_str().to_owned(),
            true,
        ),
        (
            "server_tls_ca_file",
            c.pool
                .server_tls_ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            String::new(),
            true,
        ),
    ];
    for (k, v, def, changeable) in rows {
        t.push(vec![
            k.to_owned(),
            v,
            def,
            if changeable { "yes" } else { "no" }.to_owned(),
        ]);
    }
    t
}
