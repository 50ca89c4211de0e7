//! The admin console (virtual database `pgbouncer`, alias `pgpool`): SHOW commands with
//! PgBouncer 1.21's columns, access control (admin_users / stats_users), errors, and the
//! admin commands RELOAD, KILL, RECONNECT and SHUTDOWN; through tokio-postgres'
//! simple query protocol and through psql.

mod common;

use std::time::Duration;

use common::console::*;
use common::*;
use tokio_postgres::Client;

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

    // No client is connected now (psql left): the header alone.
    for sql in ["SHOW CLIENTS", "SHOW SERVERS"] {
        let out = psql_admin(&pooler, "pgbouncer", "md5_user", sql);
        assert!(out.status.success(), "{sql}: {}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            text.lines().next(),
            Some(CONN_COLUMNS.join(",").as_str()),
            "{sql}"
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

    for (sql, tag) in [
        ("RELOAD", "RELOAD"),
        ("PAUSE app", "PAUSE"),
        ("RESUME app", "RESUME"),
        ("RECONNECT app", "RECONNECT"),
        ("KILL bench", "KILL"),
    ] {
        let out = psql_admin(&pooler, "pgbouncer", "app", sql);
        assert!(out.status.success(), "admin {sql}: {}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(tag),
            "{sql}: {}",
            output_text(&out)
        );
    }
    let out = psql_admin(&pooler, "pgbouncer", "app", "RESUME app");
    assert!(
        !out.status.success(),
        "RESUME of a database not paused fails"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not paused"),
        "{}",
        output_text(&out)
    );
}

// ---- SHOW CLIENTS / SHOW SERVERS ----

const CONN_COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
];

/// The one row of `table` for database `app`.
fn app_row(shown: &Shown) -> &Vec<Option<String>> {
    let rows = shown.rows_where("database", "app");
    assert_eq!(rows.len(), 1, "one app row in {:?}", shown.rows);
    rows[0]
}

/// Console sessions are clients too, as in PgBouncer: listed on the admin
/// database, active, gone once they disconnect.
#[tokio::test(flavor = "multi_thread")]
async fn clients_list_console_sessions() {
    let pooler = console_pooler().start();
    let mut config = pooler.config("pgpool", "md5_user", password_of("md5_user"));
    config.application_name("watcher");
    let watcher = connect_with(&config)
        .await
        .expect("stats user on the console");
    let admin = console(&pooler, "app").await;

    let clients = show(&admin, "SHOW CLIENTS").await;
    let on_pgpool = clients.rows_where("database", "pgpool");
    assert_eq!(on_pgpool.len(), 1, "{:?}", clients.rows);
    let row = on_pgpool[0];
    assert_eq!(clients.get(row, "type"), Some("C"));
    assert_eq!(clients.get(row, "user"), Some("md5_user"));
    assert_eq!(clients.get(row, "state"), Some("active"));
    assert_eq!(clients.get(row, "application_name"), Some("watcher"));
    assert_eq!(clients.get(row, "link"), Some(""), "no server behind it");
    assert_eq!(clients.int(row, "local_port"), i64::from(pooler.port()));
    let me = clients.rows_where("user", "app");
    assert_eq!(
        me.len(),
        1,
        "the asking session lists itself: {:?}",
        clients.rows
    );
    assert_eq!(clients.get(me[0], "database"), Some("pgbouncer"));

    drop(watcher);
    wait_until(
        Duration::from_secs(5),
        "the closed session leaves the list",
        || async {
            show(&admin, "SHOW CLIENTS")
                .await
                .rows_where("database", "pgpool")
                .is_empty()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_and_servers_list_each_connection_and_its_state() {
    let pooler = console_pooler().set("databases.app.pool_size", "1").start();
    let admin = console(&pooler, "app").await;
    let mut config = pooler.config("app", "app", password_of("app"));
    config.application_name("listed-app");
    let app = connect_with(&config).await.expect("connect");
    app.simple_query("SELECT 1").await.expect("query");

    let clients = show(&admin, "SHOW CLIENTS").await;
    assert_eq!(clients.columns, CONN_COLUMNS);
    let row = app_row(&clients);
    assert_eq!(clients.get(row, "type"), Some("C"));
    assert_eq!(clients.get(row, "user"), Some("app"));
    assert_eq!(clients.get(row, "state"), Some("idle"));
    assert_eq!(clients.get(row, "addr"), Some("127.0.0.1"));
    assert!(clients.int(row, "port") > 0);
    assert_eq!(clients.int(row, "local_port"), i64::from(pooler.port()));
    assert_eq!(clients.get(row, "application_name"), Some("listed-app"));
    let connect_time = clients.get(row, "connect_time").expect("connect_time");
    assert!(
        connect_time.ends_with(" UTC") && connect_time.len() == 23,
        "{connect_time}"
    );

    assert_eq!(
        clients.get(row, "link"),
        Some(""),
        "an idle client has no server"
    );
    assert_eq!(clients.get(row, "tls"), Some(""), "a plain connection");

    let servers = show(&admin, "SHOW SERVERS").await;
    assert_eq!(servers.columns, CONN_COLUMNS);
    let row = app_row(&servers);
    assert_eq!(servers.get(row, "type"), Some("S"));
    assert_eq!(servers.get(row, "state"), Some("idle"));
    assert_eq!(
        servers.get(row, "link"),
        Some(""),
        "an idle server serves no client"
    );
    assert_eq!(servers.int(row, "port"), i64::from(cluster().port()));
    let pid = servers.int(row, "remote_pid");
    assert!(
        backend_pids(cluster(), "app", "app")
            .await
            .contains(&(pid as i32)),
        "remote_pid {pid} is a backend of the app database"
    );

    // Inside a transaction both sides are active; a second client waits.
    app.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    let other = pooler.connect_app().await;
    let waiting = tokio::spawn(async move { other.simple_query("SELECT 2").await.map(|_| other) });
    wait_until(Duration::from_secs(5), "second client waiting", || async {
        show(&admin, "SHOW CLIENTS")
            .await
            .rows_where("state", "waiting")
            .len()
            == 1
    })
    .await;
    let clients = show(&admin, "SHOW CLIENTS").await;
    let active: Vec<_> = clients
        .rows_where("state", "active")
        .into_iter()
        .filter(|r| clients.get(r, "database") == Some("app"))
        .collect();
    assert_eq!(active.len(), 1);
    let servers = show(&admin, "SHOW SERVERS").await;
    let server = app_row(&servers);
    assert_eq!(servers.get(server, "state"), Some("active"));
    // `link` pairs them: the client's points at the server's ptr and back.
    assert_eq!(
        clients.get(active[0], "link"),
        servers.get(server, "ptr"),
        "client link"
    );
    assert_eq!(
        servers.get(server, "link"),
        clients.get(active[0], "ptr"),
        "server link"
    );
    let waiter = clients.rows_where("state", "waiting");
    assert_eq!(
        clients.get(waiter[0], "link"),
        Some(""),
        "a waiting client has no server"
    );
    app.batch_execute("COMMIT").await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("waiting client served after COMMIT")
        .expect("task")
        .expect("query");
}

// ---- PAUSE / RESUME ----

#[tokio::test(flavor = "multi_thread")]
async fn pause_waits_for_transactions_then_holds_new_ones_until_resume() {
    let pooler = console_pooler().start();
    let admin = console(&pooler, "app").await;
    let first = pooler.connect_app().await;
    first.batch_execute("BEGIN; SELECT 1").await.expect("begin");

    let pausing = console(&pooler, "app").await;
    let pause = tokio::spawn(async move { pausing.simple_query("PAUSE app").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pause.is_finished(), "PAUSE waits for the open transaction");
    first
        .batch_execute("COMMIT")
        .await
        .expect("commit during PAUSE");
    tokio::time::timeout(Duration::from_secs(5), pause)
        .await
        .expect("PAUSE returns once the transaction ended")
        .expect("task")
        .expect("PAUSE succeeds");

    let dbs = show(&admin, "SHOW DATABASES").await;
    let app = dbs.rows_where("name", "app");
    assert_eq!(dbs.int(app[0], "paused"), 1);
    let bench = dbs.rows_where("name", "bench");
    assert_eq!(dbs.int(bench[0], "paused"), 0, "only app is paused");
    assert!(
        show(&admin, "SHOW SERVERS")
            .await
            .rows_where("database", "app")
            .is_empty(),
        "PAUSE closed app's server connections"
    );

    let held = tokio::spawn(async move { simple_value(&first, "SELECT 42").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a new transaction waits while paused");
    let pools = show(&admin, "SHOW POOLS").await;
    let row = pools.pool_row("app", "app").expect("app pool");
    assert_eq!(pools.int(row, "cl_waiting"), 1);

    command_ok(&admin, "RESUME app").await;
    let value = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("served after RESUME")
        .expect("task");
    assert_eq!(value, "42");

    assert_eq!(fails_with(&admin, "RESUME app").await, "55000");
    assert_eq!(fails_with(&admin, "PAUSE nosuchdb").await, "3D000");
    // PAUSE of everything with nothing running returns at once.
    command_ok(&admin, "PAUSE").await;
    assert_eq!(fails_with(&admin, "RESUME app").await, "55000");
    command_ok(&admin, "RESUME").await;
    let after = pooler.connect_app().await;
    assert_eq!(simple_value(&after, "SELECT 7").await, "7");
}

// ---- compatibility with PgBouncer's console ----

/// Column names and type OIDs of `sql` on a console, through the raw protocol.
async fn columns_of(port: u16, sql: &str) -> Vec<(String, u32)> {
    let mut conn = raw::RawConn::connect(port).await;
    conn.login("pgbouncer", "app", password_of("app"), &[])
        .await;
    let messages = conn.simple_query(sql).await;
    let (_, body) = messages
        .iter()
        .find(|(tag, _)| *tag == b'T')
        .unwrap_or_else(|| panic!("{sql}: no RowDescription in {messages:?}"));
    raw::row_description(body)
}

/// Every column the installed PgBouncer (Debian's package) shows is shown by pgpool-rs,
/// with the same name, position and type; pgpool-rs may add columns at the end, as
/// newer PgBouncer versions do. `.ci/run` installs PgBouncer.
#[tokio::test(flavor = "multi_thread")]
async fn console_columns_match_the_installed_pgbouncer() {
    if PoolerKind::is_pgbouncer() {
        return; // comparing PgBouncer with itself says nothing
    }
    let found = std::process::Command::new("pgbouncer")
        .arg("--version")
        .output();
    assert!(
        found.is_ok(),
        "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does it)"
    );
    let ours = console_pooler().start();
    let theirs = console_pooler().kind(PoolerKind::PgBouncer).start();
    let mut mismatches = Vec::new();
    for sql in [
        "SHOW POOLS",
        "SHOW STATS",
        "SHOW DATABASES",
        "SHOW CLIENTS",
        "SHOW SERVERS",
        "SHOW LISTS",
        "SHOW USERS",
        "SHOW VERSION",
        "SHOW CONFIG",
    ] {
        let reference = columns_of(theirs.port(), sql).await;
        let mine = columns_of(ours.port(), sql).await;
        if mine.len() < reference.len() || mine[..reference.len()] != reference[..] {
            mismatches.push(format!(
                "{sql}:\n  PgBouncer has {reference:?}\n  pgpool-rs has {mine:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
