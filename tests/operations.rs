//! Operations: the graceful drain (SIGTERM), reloads by file change, re-binding the
//! listener, `max_client_conn` on reload, a reload storm under load, and what the info
//! log may contain.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::console::*;
use common::*;

fn edit_config(pooler: &Pooler, edit: impl FnOnce(&mut toml::Table)) {
    let path = pooler.config_path();
    let mut table: toml::Table = std::fs::read_to_string(path)
        .expect("read pool.toml")
        .parse()
        .expect("pool.toml parses");
    edit(&mut table);
    std::fs::write(path, toml::to_string(&table).expect("serialize")).expect("write pool.toml");
}

fn section<'a>(table: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    let mut t = table;
    for p in path {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table");
    }
    t
}

fn write_userlist(pooler: &Pooler, users: &[&str]) {
    let text: String = users
        .iter()
        .map(|u| format!("\"{u}\" \"{}\"\n", password_of(u)))
        .collect();
    std::fs::write(pooler.dir().join("userlist.txt"), text).expect("write userlist");
}

/// A raw client logged in to `app` and idle.
async fn idle_raw_client(pooler: &Pooler) -> raw::RawConn {
    let mut conn = raw::RawConn::connect(pooler.port()).await;
    conn.login("app", "app", password_of("app"), &[]).await;
    let rows = conn.simple_query("SELECT 1").await;
    assert!(raw::first_row(&rows).is_some(), "idle client works");
    conn
}

// ---- graceful drain ----

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_open_transactions_commit_and_closes_idle_clients_with_57p01() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let table = format!("drain_{}", std::process::id());
    let admin = superuser(cluster(), "app").await;
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int); GRANT ALL ON {table} TO app"
        ))
        .await
        .expect("create table");
    let mut pooler = Pooler::builder(cluster())
        .set("pool.shutdown_timeout", "20")
        .start();
    let busy = pooler.connect_app().await;
    busy.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .expect("insert");
    let mut idle = idle_raw_client(&pooler).await;

    pooler.send_signal("TERM");
    let e = tokio::time::timeout(Duration::from_secs(5), idle.expect_error())
        .await
        .expect("the idle client is told at once");
    assert_eq!(e.code, "57P01", "{e:?}");
    assert!(e.message.contains("shutting down"), "{e:?}");
    assert!(idle.closed_within(Duration::from_secs(2)).await);

    // The listener is closed: a new client cannot connect.
    wait_until(Duration::from_secs(5), "listener closed", || async {
        pooler
            .try_connect("app", "app", password_of("app"))
            .await
            .is_err()
    })
    .await;
    assert!(!pooler.has_exited(), "the open transaction holds the drain");

    busy.batch_execute("COMMIT")
        .await
        .expect("COMMIT during the drain");
    let count = simple_value(&admin, &format!("SELECT count(*) FROM {table}")).await;
    assert_eq!(count, "1", "the commit is durable");
    assert!(
        busy.simple_query("SELECT 1").await.is_err(),
        "after its transaction the client is closed"
    );
    let status = tokio::task::block_in_place(|| pooler.wait_exit(Duration::from_secs(5)))
        .expect("exits once drained, well within shutdown_timeout");
    assert!(status.success(), "clean drain exits 0: {status}");
    assert!(pooler.log().contains("all clients drained"));
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop");
}

#[tokio::test(flavor = "multi_thread")]
async fn second_sigterm_closes_at_once_and_timeout_bounds_the_drain() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let mut pooler = Pooler::builder(cluster())
        .set("pool.shutdown_timeout", "60")
        .start();
    let client = pooler.connect_app().await;
    client.batch_execute("BEGIN").await.expect("begin");
    pooler.send_signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pooler.has_exited(), "draining while a transaction is open");
    pooler.send_signal("TERM");
    tokio::task::block_in_place(|| pooler.wait_exit(Duration::from_secs(3)))
        .expect("a second SIGTERM closes at once");
    assert!(pooler.log().contains("second stop signal"));

    // And without a second signal, shutdown_timeout ends the drain.
    let mut pooler = Pooler::builder(cluster())
        .set("pool.shutdown_timeout", "1")
        .start();
    let client = pooler.connect_app().await;
    client.batch_execute("BEGIN").await.expect("begin");
    pooler.send_signal("TERM");
    tokio::task::block_in_place(|| pooler.wait_exit(Duration::from_secs(4)))
        .expect("exits after shutdown_timeout");
    assert!(pooler.log().contains("shutdown_timeout reached"));
}

// ---- reload by file change, listener, max_client_conn ----

#[tokio::test(flavor = "multi_thread")]
async fn changed_config_and_auth_files_are_reloaded_without_a_signal() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("auth.admin_users", "[\"app\"]")
        .userlist(&[
            "\"app\" \"app-pass\"",
            // `other` is not listed yet.
        ])
        .start();
    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    let client = pooler.connect_app().await;
    assert!(pooler
        .try_connect("app", "other", password_of("other"))
        .await
        .is_err());

    edit_config(&pooler, |t| {
        section(t, &["databases", "app"]).insert("pool_size".into(), 7.into());
    });
    wait_until(Duration::from_secs(5), "pool_size 7 in force", || async {
        let dbs = show(&console, "SHOW DATABASES").await;
        let row = dbs.rows_where("name", "app");
        dbs.int(row[0], "pool_size") == 7
    })
    .await;

    write_userlist(&pooler, &["app", "other"]);
    wait_until(Duration::from_secs(5), "new user accepted", || async {
        pooler
            .try_connect("app", "other", password_of("other"))
            .await
            .is_ok()
    })
    .await;
    assert_eq!(simple_value(&client, "SELECT 5").await, "5", "client kept");
    assert!(pooler.log().contains("file changed; reloading"));
}

#[tokio::test(flavor = "multi_thread")]
async fn new_listen_addr_is_bound_on_reload_and_clients_stay() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::start(cluster());
    let client = pooler.connect_app().await;
    let new_port = pgpool_rs::localpg::free_port().expect("free port");
    edit_config(&pooler, |t| {
        section(t, &["listen"]).insert("addr".into(), format!("127.0.0.1:{new_port}").into());
    });
    pooler.send_signal("HUP");
    let mut moved = tokio_postgres::Config::new();
    moved
        .host("127.0.0.1")
        .port(new_port)
        .user("app")
        .password(password_of("app"))
        .dbname("app");
    wait_until(Duration::from_secs(5), "the new port accepts", || async {
        connect_with(&moved).await.is_ok()
    })
    .await;
    let fresh = connect_with(&moved).await.expect("connect on the new port");
    assert_eq!(simple_value(&fresh, "SELECT 1").await, "1");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pooler.port())).is_err(),
        "the old port is closed"
    );
    assert_eq!(
        simple_value(&client, "SELECT 2").await,
        "2",
        "a client accepted on the old port stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_http_addr_is_bound_on_reload_and_empty_stops_it() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::start(cluster());
    let old_port = pooler.http_port();
    let live = common::http::request(old_port, "GET", "/health/live").await;
    assert_eq!(live.status, 200, "{live:?}");
    let new_port = pgpool_rs::localpg::free_port().expect("free port");
    edit_config(&pooler, |t| {
        section(t, &["listen"]).insert("http_addr".into(), format!("127.0.0.1:{new_port}").into());
    });
    pooler.send_signal("HUP");
    wait_until(
        Duration::from_secs(5),
        "the new http port accepts",
        || async { std::net::TcpStream::connect(("127.0.0.1", new_port)).is_ok() },
    )
    .await;
    let live = common::http::request(new_port, "GET", "/health/live").await;
    assert_eq!(live.status, 200, "{live:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", old_port)).is_err(),
        "the old http port is closed"
    );

    edit_config(&pooler, |t| {
        section(t, &["listen"]).insert("http_addr".into(), "".into());
    });
    pooler.send_signal("HUP");
    wait_until(Duration::from_secs(5), "http stops", || async {
        std::net::TcpStream::connect(("127.0.0.1", new_port)).is_err()
    })
    .await;
    assert!(pooler.log().contains("HTTP endpoints stopped"));
    let client = pooler.connect_app().await;
    assert_eq!(
        simple_value(&client, "SELECT 1").await,
        "1",
        "clients unaffected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_client_conn_follows_reload() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("listen.max_client_conn", "2")
        .start();
    let _a = pooler.connect_app().await;
    let _b = pooler.connect_app().await;
    let err = pooler
        .try_connect("app", "app", password_of("app"))
        .await
        .map(|_| ())
        .expect_err("third client refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));

    edit_config(&pooler, |t| {
        section(t, &["listen"]).insert("max_client_conn".into(), 3.into());
    });
    pooler.send_signal("HUP");
    wait_until(Duration::from_secs(5), "third client accepted", || async {
        pooler
            .try_connect("app", "app", password_of("app"))
            .await
            .is_ok()
    })
    .await;
}

/// A client connected before a reload works under the new settings from its next
/// transaction: clients keep a copy of their pool's settings, refreshed when a reload
/// replaced them.
#[tokio::test]
async fn a_reload_applies_to_clients_already_connected() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::start(cluster());
    let mut c = idle_raw_client(&pooler).await;
    c.simple_query("SELECT pg_sleep(1.5)").await; // no query_timeout yet
    let reloads = || async {
        let m = http::get(&pooler, "/metrics").await.body;
        http::sample(&m, "pgpool_reloads_total{result=\"ok\"}").unwrap_or(0.0)
    };
    let before = reloads().await;
    edit_config(&pooler, |t| {
        section(t, &["pool"]).insert("query_timeout".into(), 1.into());
    });
    pooler.send_signal("HUP");
    wait_until(Duration::from_secs(5), "reload applied", || async {
        reloads().await > before
    })
    .await;
    c.send(&raw::query("SELECT pg_sleep(5)")).await;
    let e = tokio::time::timeout(Duration::from_secs(4), c.expect_error())
        .await
        .expect("query_timeout from the reloaded config");
    assert_eq!(e.code, "57014", "{e:?}");
}

// ---- reload storm under load ----

/// 200 clients run short transactions on `app` while the config is reloaded 20 times
/// (pool size 5/10, database `extra` added/removed, `other` added to/removed from the
/// userlist), by SIGHUP, admin RELOAD and file change. Not one `app` transaction fails.
/// Then an invalid config: rejected, logged with its line, the old one stays in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_storm_under_load_fails_no_transaction() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("auth.admin_users", "[\"app\"]")
        .set("databases.app.pool_size", "10")
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 0..200 {
        let client = pooler.connect_app().await;
        let (stop, done) = (stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sql = format!("BEGIN; SELECT {i}; COMMIT");
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failures.push(format!("{e} ({:?})", sqlstate(&e)));
                        break;
                    }
                }
            }
            failures
        }));
    }
    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    for round in 0..20 {
        let even = round % 2 == 0;
        edit_config(&pooler, |t| {
            let size = if even { 5 } else { 10 };
            section(t, &["databases", "app"]).insert("pool_size".into(), size.into());
            let dbs = section(t, &["databases"]);
            if even {
                let extra = dbs.get("bench").cloned().expect("bench entry");
                dbs.insert("extra".into(), extra);
            } else {
                dbs.remove("extra");
            }
        });
        if even {
            write_userlist(
                &pooler,
                &["app", "md5_user", "plain_user", "bench", "other"],
            );
        } else {
            write_userlist(&pooler, &["app", "md5_user", "plain_user", "bench"]);
        }
        match round % 3 {
            0 => pooler.send_signal("HUP"),
            1 => {
                command_ok(&console, "RELOAD").await;
            }
            _ => {} // the file watcher picks it up
        }
        if even {
            // The added database becomes reachable (SIGHUP is asynchronous; the
            // watcher polls every 0.5 s).
            wait_until(Duration::from_secs(5), "extra reachable", || async {
                match pooler.try_connect("extra", "app", password_of("app")).await {
                    Ok(extra) => extra.simple_query("SELECT 3").await.is_ok(),
                    Err(_) => false,
                }
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before_invalid = done.load(Ordering::Relaxed);

    // An invalid config is rejected; the old one stays in force.
    edit_config(&pooler, |t| {
        section(t, &["pool"]).insert("default_pool_size".into(), "many".into());
    });
    pooler.send_signal("HUP");
    wait_until(
        Duration::from_secs(5),
        "the rejection is logged",
        || async { pooler.log().contains("configuration reload rejected") },
    )
    .await;
    let log = pooler.log();
    assert!(
        log.lines()
            .any(|l| l.contains("pool.toml:") && l.contains("default_pool_size")),
        "the error names file, line and key:\n{}",
        pooler.log_tail(10)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.expect("worker"));
    }
    assert!(
        failures.is_empty(),
        "{} failed transactions on app, first: {:?}",
        failures.len(),
        failures.first()
    );
    let total = done.load(Ordering::Relaxed);
    assert!(
        total > before_invalid && before_invalid > 1000,
        "load kept flowing: {before_invalid} before the invalid config, {total} in all"
    );
    // Still serving, with the last good config (round 19: pool_size 10, no extra).
    let dbs = show(&console, "SHOW DATABASES").await;
    let row = dbs.rows_where("name", "app");
    assert_eq!(
        dbs.int(row[0], "pool_size"),
        10,
        "last good config in force"
    );
    assert!(
        dbs.rows_where("name", "extra").is_empty(),
        "extra removed last"
    );
}

// ---- logs ----

#[tokio::test(flavor = "multi_thread")]
async fn info_log_has_login_failures_but_no_passwords_or_query_text() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("auth.admin_users", "[\"app\"]")
        .env("RUST_LOG", "info")
        .start();
    let client = pooler.connect_app().await;
    simple_value(&client, "SELECT 'needle-select-4711'").await;
    let err = client
        .simple_query("SELECT * FROM needle_missing_table_4711")
        .await
        .expect_err("no such table");
    assert_eq!(sqlstate(&err).as_deref(), Some("42P01"));
    let prepared = client
        .prepare("SELECT $1::text || 'needle-prepared-4711'")
        .await
        .expect("prepare");
    client.query(&prepared, &[&"x"]).await.expect("execute");
    assert!(pooler
        .try_connect("app", "app", "wrong-secret-4711")
        .await
        .is_err());
    assert!(pooler
        .try_connect("app", "md5_user", "wrong-md5-secret-4711")
        .await
        .is_err());
    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    command_ok(&console, "RELOAD").await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = pooler.log();
    for secret in [
        "app-pass",
        "md5-pass",
        "wrong-secret-4711",
        "wrong-md5-secret-4711",
        "needle-select-4711",
        "needle_missing_table_4711",
        "needle-prepared-4711",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    assert_eq!(failures.len(), 2, "one info line per failed login:\n{log}");
    assert!(
        failures[0].contains("app")
            && failures[0].contains("127.0.0.1")
            && failures[0].contains("28P01"),
        "user, peer and reason: {}",
        failures[0]
    );
    assert!(log.contains("configuration reloaded"));
    assert!(
        !log.contains("client logged in"),
        "connects are logged at debug, not info"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_pauses_and_sigusr2_resumes_like_pgbouncer() {
    let pooler = Pooler::builder(cluster())
        .set("auth.admin_users", "[\"app\"]")
        .start();
    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    let client = pooler.connect_app().await;
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    pooler.send_signal("USR1");
    wait_until(Duration::from_secs(5), "app paused", || async {
        let dbs = show(&console, "SHOW DATABASES").await;
        let row = dbs.rows_where("name", "app");
        dbs.int(row[0], "paused") == 1
    })
    .await;
    let held = tokio::spawn(async move { simple_value(&client, "SELECT 2").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "paused: the query waits");
    pooler.send_signal("USR2");
    let value = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("resumed")
        .expect("task");
    assert_eq!(value, "2");
}
