//! `client_idle_timeout`, `idle_transaction_timeout` and `query_timeout`: the client
//! gets a FATAL with PostgreSQL's SQLSTATE for the case, its server connection is closed
//! when it was inside a transaction (never handed on), other clients are unaffected, and
//! with the limits off (the default) an idle client stays.

mod common;

use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::*;

/// `pgpool_errors_total{kind="<kind>"}` from `/metrics`.
async fn timeouts_counted(pooler: &Pooler, kind: &str) -> f64 {
    let metrics = http::get(pooler, "/metrics").await.body;
    let series = format!("pgpool_errors_total{{kind=\"{kind}\"}}");
    http::sample(&metrics, &series).unwrap_or_else(|| panic!("no {series} in /metrics"))
}

const APP_PASS: &str = "app-pass";

/// A raw client logged in to `app` through `pooler`.
async fn raw_client(pooler: &Pooler) -> RawConn {
    let mut c = RawConn::connect(pooler.port()).await;
    c.login("app", "app", APP_PASS, &[]).await;
    c
}

/// Reads the FATAL the pooler sends and checks that the connection then closes.
async fn expect_fatal(c: &mut RawConn, within: Duration) -> raw::ErrorFields {
    let e = tokio::time::timeout(within, c.expect_error())
        .await
        .expect("an ErrorResponse in time");
    assert_eq!(e.severity, "FATAL", "{e:?}");
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "connection closed"
    );
    e
}

#[tokio::test]
async fn client_idle_timeout_closes_an_idle_client_only() {
    if PoolerKind::is_pgbouncer() {
        return; // PgBouncer's message and code differ (08P01 "client_idle_timeout").
    }
    let pooler = Pooler::builder(cluster())
        .set("pool.client_idle_timeout", "1")
        .start();
    let mut idle = raw_client(&pooler).await;
    idle.simple_query("SELECT 1").await;
    let busy = pooler.connect_app().await;
    let started = Instant::now();
    // The busy client keeps working past the limit: activity restarts its clock.
    while started.elapsed() < Duration::from_millis(1800) {
        assert_eq!(simple_value(&busy, "SELECT 1").await, "1");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = expect_fatal(&mut idle, Duration::from_secs(2)).await;
    assert_eq!(e.code, "57P05", "{e:?}");
    assert!(e.message.contains("client_idle_timeout"), "{e:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the limit"
    );
    assert_eq!(simple_value(&busy, "SELECT 2").await, "2");
    assert_eq!(timeouts_counted(&pooler, "client_idle_timeout").await, 1.0);
    assert_eq!(timeouts_counted(&pooler, "query_timeout").await, 0.0);
}

#[tokio::test]
async fn idle_transaction_timeout_ends_the_client_and_its_server_connection() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .set("pool.idle_transaction_timeout", "1")
        .start();
    let table = format!("idle_tx_{}", std::process::id());
    let setup = pooler.connect_app().await;
    setup
        .batch_execute(&format!("CREATE TABLE {table} (v int)"))
        .await
        .expect("create");
    drop(setup);

    let mut c = raw_client(&pooler).await;
    c.simple_query("BEGIN").await;
    c.simple_query(&format!("INSERT INTO {table} VALUES (1)"))
        .await;
    let pid_before = backend_pids(cluster(), "app", "app").await;
    // Silent inside the transaction past the limit.
    let e = expect_fatal(&mut c, Duration::from_secs(3)).await;
    assert_eq!(e.code, "25P03", "{e:?}");
    assert!(e.message.contains("idle_transaction_timeout"), "{e:?}");
    assert_eq!(
        timeouts_counted(&pooler, "idle_transaction_timeout").await,
        1.0
    );

    // The next client gets a working connection, a new one (the old one was closed,
    // not handed on mid-transaction), and the insert was rolled back.
    let next = pooler.connect_app().await;
    let count = simple_value(&next, &format!("SELECT count(*) FROM {table}")).await;
    assert_eq!(
        count, "0",
        "the abandoned transaction must not be committed"
    );
    let pid_now = simple_value(&next, "SELECT pg_backend_pid()").await;
    assert!(
        !pid_before.iter().any(|p| p.to_string() == pid_now),
        "the server connection of the timed-out transaction was reused"
    );
    // Idle between transactions is not limited by it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(simple_value(&next, "SELECT 1").await, "1");
    next.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop");
}

#[tokio::test]
async fn query_timeout_ends_a_query_that_runs_too_long() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("pool.query_timeout", "1")
        .start();
    let mut c = raw_client(&pooler).await;
    let started = Instant::now();
    c.send(&raw::query("SELECT pg_sleep(5)")).await;
    let e = expect_fatal(&mut c, Duration::from_secs(4)).await;
    assert_eq!(e.code, "57014", "{e:?}");
    assert!(e.message.contains("query_timeout"), "{e:?}");
    assert_eq!(timeouts_counted(&pooler, "query_timeout").await, 1.0);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered before the query finished"
    );
    // A quick query is unaffected, and so is an idle client.
    let other = pooler.connect_app().await;
    assert_eq!(simple_value(&other, "SELECT 1").await, "1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(simple_value(&other, "SELECT pg_sleep(0.2)::text").await, "");
}

#[tokio::test]
async fn session_mode_client_idle_timeout_releases_a_clean_server() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_mode", "\"session\"")
        .set("databases.app.pool_size", "1")
        .set("pool.client_idle_timeout", "1")
        .start();
    let mut c = raw_client(&pooler).await;
    c.simple_query("SELECT 1").await;
    let e = expect_fatal(&mut c, Duration::from_secs(3)).await;
    assert_eq!(e.code, "57P05", "{e:?}");
    assert_eq!(timeouts_counted(&pooler, "client_idle_timeout").await, 1.0);
    // The one server connection is free again for the next client.
    let next = pooler.connect_app().await;
    assert_eq!(simple_value(&next, "SELECT 1").await, "1");
}

#[tokio::test]
async fn without_limits_an_idle_client_and_an_idle_transaction_stay() {
    let pooler = Pooler::start(cluster());
    let c = pooler.connect_app().await;
    c.batch_execute("BEGIN").await.expect("begin");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(simple_value(&c, "SELECT 1").await, "1");
    c.batch_execute("COMMIT").await.expect("commit");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(simple_value(&c, "SELECT 1").await, "1");
}
