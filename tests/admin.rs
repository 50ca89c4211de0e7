//! The admin console (virtual database `pgbouncer`, alias `pgpool`): SHOW commands with
//! PgBouncer 1.21's columns, access control (admin_users / stats_users), errors, and the
//! admin commands RELOAD, KILL, RECONNECT and SHUTDOWN; through tokio-postgres'
//! simple query protocol and through psql.

mod common;

use std::time::Duration;

use common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

/// `app` is an admin, `md5_user` a stats user; `plain_user` is neither.
fn console_pooler() -> PoolerBuilder {
    Pooler::builder(cluster())
        .set("auth.admin_users", "[\"app\"]")
        .set("auth.stats_users", "[\"md5_user\"]")
}

/// A console session as `user` on the admin database `db` (`pgbouncer` or `pgpool`).
async fn console_on(pooler: &Pooler, db: &str, user: &str) -> Client {
    pooler.connect(db, user, password_of(user)).await
}

async fn console(pooler: &Pooler, user: &str) -> Client {
    console_on(pooler, "pgbouncer", user).await
}

/// A SHOW result: column names and rows (NULL = `None`).
struct Shown {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Shown {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// The rows whose `key` column equals `value`.
    fn rows_where<'a>(&'a self, key: &str, value: &'a str) -> Vec<&'a Vec<Option<String>>> {
        let i = self.col(key);
        self.rows
            .iter()
            .filter(|r| r[i].as_deref() == Some(value))
            .collect()
    }

    /// The value of `column` in `row`.
    fn get<'a>(&self, row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        row[self.col(column)].as_deref()
    }

    /// `column` of `row` as an integer.
    fn int(&self, row: &[Option<String>], column: &str) -> i64 {
        let v = self.get(row, column);
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{column} is not an integer: {v:?}"))
    }

    /// The single row of POOLS for (database, user).
    fn pool_row(&self, database: &str, user: &str) -> Option<&Vec<Option<String>>> {
        let (d, u) = (self.col("database"), self.col("user"));
        self.rows
            .iter()
            .find(|r| r[d].as_deref() == Some(database) && r[u].as_deref() == Some(user))
    }

    /// SHOW CONFIG's value for `key`.
    fn config_value(&self, key: &str) -> String {
        let rows = self.rows_where("key", key);
        assert_eq!(rows.len(), 1, "config key {key} once in SHOW CONFIG");
        self.get(rows[0], "value")
            .unwrap_or_else(|| panic!("config {key} is NULL"))
            .to_string()
    }
}

async fn try_show(client: &Client, sql: &str) -> Result<Shown, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    let mut shown = Shown {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in &messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                shown.columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if shown.columns.is_empty() {
                    shown.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                shown.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok(shown)
}

async fn show(client: &Client, sql: &str) -> Shown {
    try_show(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} ({:?})", sqlstate(&e)))
}

/// Runs a command that must fail; returns its SQLSTATE.
async fn fails_with(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(m) => panic!("{sql} succeeded ({} messages) but should fail", m.len()),
        Err(e) => sqlstate(&e).unwrap_or_else(|| panic!("{sql}: error without SQLSTATE: {e}")),
    }
}

/// The command tag of a command that must succeed.
async fn command_ok(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} ({:?})", sqlstate(&e)));
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(_))),
        "{sql} completed"
    );
    sql.to_string()
}

const POOLS_COLUMNS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
];

const STATS_COLUMNS: &[&str] = &[
    "database",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
];

const DATABASES_COLUMNS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
];

/// Runs `n` one-statement transactions as `app` through the pooler.
async fn run_app_queries(pooler: &Pooler, n: usize) -> Client {
    let client = pooler.connect_app().await;
    for i in 0..n {
        assert_eq!(
            simple_value(&client, &format!("SELECT {i}")).await,
            i.to_string()
        );
    }
    client
}

#[tokio::test]
async fn show_commands_have_pgbouncer_columns_and_rows() {
    let pooler = console_pooler().start();
    let _app = run_app_queries(&pooler, 1).await;
    let admin = console(&pooler, "app").await;

    let pools = show(&admin, "SHOW POOLS").await;
    assert_eq!(pools.columns, POOLS_COLUMNS);
    assert!(!pools.rows.is_empty(), "SHOW POOLS has rows");

    let stats = show(&admin, "SHOW STATS;").await;
    assert_eq!(stats.columns, STATS_COLUMNS);
    assert_eq!(
        stats.rows_where("database", "app").len(),
        1,
        "one STATS row for app"
    );

    let dbs = show(&admin, "show databases").await;
    assert_eq!(dbs.columns, DATABASES_COLUMNS);
    let app_db = dbs.rows_where("name", "app");
    assert_eq!(app_db.len(), 1, "DATABASES has app");
    assert_eq!(dbs.get(app_db[0], "database"), Some("app"));
    assert_eq!(
        dbs.get(app_db[0], "port"),
        Some(cluster().port().to_string().as_str())
    );
    assert_eq!(dbs.get(app_db[0], "pool_size"), Some("20"));
    assert_eq!(dbs.get(app_db[0], "pool_mode"), Some("transaction"));
    assert_eq!(
        dbs.rows_where("name", "bench").len(),
        1,
        "DATABASES has bench"
    );

    let lists = show(&admin, "SHOW LISTS").await;
    assert_eq!(lists.columns, ["list", "items"]);
    let databases = lists.rows_where("list", "databases");
    assert_eq!(databases.len(), 1);
    assert_eq!(
        lists.int(databases[0], "items"),
        2,
        "two databases configured"
    );

    let config = show(&admin, "SHOW CONFIG").await;
    assert_eq!(config.columns, ["key", "value", "default", "changeable"]);
    assert_eq!(config.config_value("default_pool_size"), "20");
    assert_eq!(config.config_value("pool_mode"), "transaction");
    assert_eq!(config.config_value("shutdown_timeout"), "2");

    let version = show(&admin, "SHOW VERSION").await;
    assert_eq!(version.rows.len(), 1);
    let v = version.rows[0][0].clone().unwrap_or_default();
    assert!(v.contains("PgBouncer"), "version mentions PgBouncer: {v}");

    let users = show(&admin, "SHOW USERS").await;
    for (user, _, _) in USERS {
        assert_eq!(
            users.rows_where("name", user).len(),
            1,
            "SHOW USERS lists {user}"
        );
    }

    // The alias database works the same way.
    let alias = console_on(&pooler, "pgpool", "app").await;
    let pools = show(&alias, "SHOW POOLS").await;
    assert_eq!(pools.columns, POOLS_COLUMNS);
    assert!(
        pools.pool_row("app", "app").is_some(),
        "pool (app, app) via pgpool"
    );

    // An empty query is fine too.
    admin.simple_query("").await.expect("empty query");
}

#[tokio::test]
async fn stats_and_pools_count_transactions() {
    let pooler = console_pooler().start();
    let stats_user = console(&pooler, "md5_user").await;
    let before = show(&stats_user, "SHOW STATS").await;
    assert!(
        before.rows_where("database", "app").is_empty(),
        "no app stats before any app client"
    );

    let _app = run_app_queries(&pooler, 5).await;
    let stats = show(&stats_user, "SHOW STATS").await;
    let app = stats.rows_where("database", "app");
    assert_eq!(app.len(), 1, "one STATS row for app");
    assert!(stats.int(app[0], "total_xact_count") >= 5, "xacts counted");
    assert!(
        stats.int(app[0], "total_query_count") >= 5,
        "queries counted"
    );
    assert!(
        stats.int(app[0], "total_received") > 0,
        "bytes received counted"
    );
    assert!(stats.int(app[0], "total_sent") > 0, "bytes sent counted");

    let pools = show(&stats_user, "SHOW POOLS").await;
    let row = pools.pool_row("app", "app").expect("pool (app, app)");
    assert_eq!(pools.get(row, "pool_mode"), Some("transaction"));
    assert_eq!(pools.int(row, "cl_active"), 1, "one app client");
    assert_eq!(pools.int(row, "cl_waiting"), 0);
    assert_eq!(
        pools.int(row, "sv_active"),
        0,
        "server released after each xact"
    );
    assert_eq!(pools.int(row, "sv_idle"), 1, "the one server is idle");
}

#[tokio::test]
async fn pools_show_a_waiting_client() {
    let pooler = console_pooler().set("pool.default_pool_size", "1").start();
    let admin = console(&pooler, "app").await;
    let holder = pooler.connect_app().await;
    holder.simple_query("BEGIN").await.expect("begin");
    holder
        .simple_query("SELECT 1")
        .await
        .expect("select in xact");

    let waiter = pooler.connect_app().await;
    let waiting = tokio::spawn(async move { simple_value(&waiter, "SELECT 42").await });

    wait_until(
        Duration::from_secs(10),
        "cl_waiting >= 1 and sv_active = 1",
        || {
            let admin = &admin;
            async move {
                let pools = show(admin, "SHOW POOLS").await;
                pools.pool_row("app", "app").is_some_and(|r| {
                    pools.int(r, "cl_waiting") >= 1 && pools.int(r, "sv_active") == 1
                })
            }
        },
    )
    .await;
    let pools = show(&admin, "SHOW POOLS").await;
    let row = pools.pool_row("app", "app").expect("pool (app, app)");
    assert_eq!(pools.int(row, "cl_active"), 1, "the holder is active");
    assert_eq!(pools.int(row, "sv_idle"), 0);
    assert!(!waiting.is_finished(), "the waiter still waits");

    holder.simple_query("COMMIT").await.expect("commit");
    let v = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("waiter served after COMMIT")
        .expect("waiter task");
    assert_eq!(v, "42");
    wait_until(Duration::from_secs(5), "cl_waiting back to 0", || {
        let admin = &admin;
        async move {
            let pools = show(admin, "SHOW POOLS").await;
            pools
                .pool_row("app", "app")
                .is_some_and(|r| pools.int(r, "cl_waiting") == 0 && pools.int(r, "sv_active") == 0)
        }
    })
    .await;
}

#[tokio::test]
async fn stats_user_may_only_show() {
    let pooler = console_pooler().start();
    let stats_user = console(&pooler, "md5_user").await;
    for sql in [
        "RELOAD",
        "SHUTDOWN",
        "KILL app",
        "RECONNECT",
        "RECONNECT app",
    ] {
        assert_eq!(
            fails_with(&stats_user, sql).await,
            "42501",
            "{sql} as stats user"
        );
    }
    // Still usable, and nothing happened: the pooler still serves.
    assert!(!show(&stats_user, "SHOW VERSION").await.rows.is_empty());
    let app = pooler.connect_app().await;
    assert_eq!(simple_value(&app, "SELECT 1").await, "1");
    let config = show(&stats_user, "SHOW CONFIG").await;
    assert_eq!(config.config_value("default_pool_size"), "20");
}

#[tokio::test]
async fn console_login_is_restricted() {
    let pooler = console_pooler().start();
    // A valid user in neither list.
    let err = pooler
        .try_connect("pgbouncer", "plain_user", password_of("plain_user"))
        .await
        .err()
        .unwrap_or_else(|| panic!("plain_user must not log in to the console"));
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err}");
    assert_eq!(err.as_db_error().map(|d| d.severity()), Some("FATAL"));
    let err = pooler
        .try_connect("pgpool", "plain_user", password_of("plain_user"))
        .await
        .err()
        .unwrap_or_else(|| panic!("plain_user must not log in to the alias either"));
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err}");
    // plain_user is otherwise fine.
    let plain = pooler
        .connect("app", "plain_user", password_of("plain_user"))
        .await;
    assert_eq!(simple_value(&plain, "SELECT 1").await, "1");

    // Wrong passwords, for an admin and a stats user.
    for user in ["app", "md5_user"] {
        let err = pooler
            .try_connect("pgbouncer", user, "wrong-password")
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} with a wrong password logged in"));
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{user}: {err}");
    }
}

#[tokio::test]
async fn unknown_commands_and_extended_protocol_are_errors() {
    let pooler = console_pooler().start();
    let admin = console(&pooler, "app").await;
    for sql in [
        "SHOW NOTHING",
        "SELECT 1",
        "SHOW POOLS extra",
        "KILL",
        "FROB",
    ] {
        assert_eq!(fails_with(&admin, sql).await, "42601", "{sql}");
    }
    assert!(!show(&admin, "SHOW POOLS").await.columns.is_empty());

    // The extended protocol (Parse/Describe/Sync) is refused...
    let err = admin
        .query("SHOW POOLS", &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("extended protocol must fail on the console"));
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    let err = admin
        .prepare("SHOW STATS")
        .await
        .err()
        .unwrap_or_else(|| panic!("prepare must fail on the console"));
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    // ...and the session stays usable for simple queries.
    let pools = show(&admin, "SHOW POOLS").await;
    assert_eq!(pools.columns, POOLS_COLUMNS);
    assert_eq!(show(&admin, "SHOW VERSION").await.rows.len(), 1);
}

/// Rewrites `pool.toml` of `pooler` with `pool.default_pool_size` set to `size`.
fn rewrite_pool_size(pooler: &Pooler, size: i64) {
    let text = std::fs::read_to_string(pooler.config_path()).expect("read pool.toml");
    let mut table: toml::Table = toml::from_str(&text).expect("pool.toml parses");
    table["pool"]
        .as_table_mut()
        .expect("[pool]")
        .insert("default_pool_size".into(), toml::Value::Integer(size));
    std::fs::write(pooler.config_path(), toml::to_string(&table).unwrap()).expect("write");
}

#[tokio::test]
async fn reload_applies_a_new_config_and_keeps_the_old_on_error() {
    let pooler = console_pooler().start();
    let admin = console(&pooler, "app").await;
    assert_eq!(
        show(&admin, "SHOW CONFIG")
            .await
            .config_value("default_pool_size"),
        "20"
    );

    rewrite_pool_size(&pooler, 7);
    command_ok(&admin, "RELOAD").await;
    assert_eq!(
        show(&admin, "SHOW CONFIG")
            .await
            .config_value("default_pool_size"),
        "7"
    );
    let dbs = show(&admin, "SHOW DATABASES").await;
    let app = dbs.rows_where("name", "app");
    assert_eq!(dbs.get(app[0], "pool_size"), Some("7"), "DATABASES follows");

    // A broken file: RELOAD fails, the old config stays.
    let good = std::fs::read_to_string(pooler.config_path()).unwrap();
    std::fs::write(
        pooler.config_path(),
        good.replace(
            "default_pool_size = 7",
            "default_pool_size = \"lots\"\n[[[broken",
        ),
    )
    .unwrap();
    let err = admin
        .simple_query("RELOAD")
        .await
        .err()
        .unwrap_or_else(|| panic!("RELOAD of a broken config must fail"));
    assert!(err.as_db_error().is_some(), "an ErrorResponse: {err}");
    assert_eq!(
        show(&admin, "SHOW CONFIG")
            .await
            .config_value("default_pool_size"),
        "7"
    );
    // Clients are still served.
    let app = pooler.connect_app().await;
    assert_eq!(simple_value(&app, "SELECT 1").await, "1");
}

#[tokio::test]
async fn kill_closes_the_pool_and_new_clients_get_a_new_one() {
    let pooler = console_pooler().start();
    let admin = console(&pooler, "app").await;
    let victim = run_app_queries(&pooler, 1).await;
    let bench = pooler.connect("bench", "bench", password_of("bench")).await;
    assert_eq!(simple_value(&bench, "SELECT 1").await, "1");

    command_ok(&admin, "KILL app").await;
    let err = victim
        .simple_query("SELECT 1")
        .await
        .err()
        .unwrap_or_else(|| panic!("a killed pool's client must fail its next query"));
    assert!(
        sqlstate(&err).is_some(),
        "an ErrorResponse, not just EOF: {err}"
    );
    // Only app's pool was killed.
    assert_eq!(simple_value(&bench, "SELECT 2").await, "2");

    let fresh = pooler.connect_app().await;
    assert_eq!(simple_value(&fresh, "SELECT 3").await, "3");
    let pools = show(&admin, "SHOW POOLS").await;
    let (d, u) = (pools.col("database"), pools.col("user"));
    let app_rows = pools
        .rows
        .iter()
        .filter(|r| r[d].as_deref() == Some("app") && r[u].as_deref() == Some("app"))
        .count();
    assert_eq!(
        app_rows, 1,
        "one (app, app) pool after KILL: {:?}",
        pools.rows
    );
    let row = pools
        .pool_row("app", "app")
        .expect("pool (app, app) recreated");
    assert_eq!(
        pools.int(row, "cl_active"),
        1,
        "only the new client: {:?}",
        row
    );

    assert_eq!(fails_with(&admin, "KILL nosuchdb").await, "3D000");
}

#[tokio::test]
async fn reconnect_moves_clients_to_new_server_connections() {
    let pooler = console_pooler().start();
    let admin = console(&pooler, "app").await;
    let client = pooler.connect_app().await;
    let pid = || async { simple_value(&client, "SELECT pg_backend_pid()").await };
    let first = pid().await;
    assert_eq!(pid().await, first, "same server while nothing changes");

    command_ok(&admin, "RECONNECT").await;
    let second = pid().await;
    assert_ne!(second, first, "RECONNECT retires the server connection");
    assert_eq!(pid().await, second);

    command_ok(&admin, "RECONNECT app").await;
    let third = pid().await;
    assert_ne!(
        third, second,
        "RECONNECT app retires app's server connection"
    );
    assert_ne!(third, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_the_pooler() {
    let mut pooler = console_pooler().start();
    let admin = console(&pooler, "app").await;
    let app = run_app_queries(&pooler, 1).await;
    assert!(!pooler.has_exited());

    command_ok(&admin, "SHUTDOWN").await;
    // shutdown_timeout = 2 in the test config.
    let status = tokio::task::block_in_place(|| pooler.wait_exit(Duration::from_secs(2 + 5)))
        .expect("pooler exits within shutdown_timeout + 5 s after SHUTDOWN");
    assert!(status.success(), "graceful exit: {status}");
    // The app client is gone with it.
    assert!(app.simple_query("SELECT 1").await.is_err());
}

// ---- psql ----

fn psql_admin(pooler: &Pooler, db: &str, user: &str, sql: &str) -> std::process::Output {
    psql_through(
        pooler,
        db,
        user,
        &["-A", "-F", ",", "-P", "footer=off", "-c", sql],
    )
}

#[test]
fn psql_show_pools_and_version() {
    let pooler = console_pooler().start();
    let app = psql_through(&pooler, "app", "app", &["-A", "-t", "-c", "SELECT 1"]);
    assert!(app.status.success(), "{}", output_text(&app));

    let out = psql_admin(&pooler, "pgbouncer", "app", "SHOW POOLS");
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(POOLS_COLUMNS.join(",").as_str()),
        "{text}"
    );
    assert!(
        lines.any(|l| l.starts_with("app,app,") && l.ends_with(",transaction")),
        "a transaction-mode (app, app) row: {text}"
    );

    for sql in [
        "SHOW STATS",
        "SHOW DATABASES",
        "SHOW LISTS",
        "SHOW CONFIG",
        "SHOW USERS",
    ] {
        let out = psql_admin(&pooler, "pgbouncer", "md5_user", sql);
        assert!(out.status.success(), "{sql}: {}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).lines().count() >= 2,
            "{sql}: rows"
        );
    }

    let out = psql_admin(&pooler, "pgpool", "app", "SHOW VERSION");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PgBouncer 1.21"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn psql_errors_are_reported() {
    let pooler = console_pooler().start();
    let out = psql_admin(&pooler, "pgbouncer", "md5_user", "RELOAD");
    assert!(
        !out.status.success(),
        "stats user RELOAD: {}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin"),
        "{}",
        output_text(&out)
    );

    let out = psql_admin(&pooler, "pgbouncer", "plain_user", "SHOW POOLS");
    assert!(
        !out.status.success(),
        "plain_user login: {}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not allowed"),
        "{}",
        output_text(&out)
    );

    let out = psql_admin(&pooler, "pgbouncer", "app", "RELOAD");
    assert!(out.status.success(), "admin RELOAD: {}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("RELOAD"),
        "{}",
        output_text(&out)
    );
}
