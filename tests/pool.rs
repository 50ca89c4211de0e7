//! Pool behaviour seen from the server and from waiting clients: min_pool_size,
//! server_idle_timeout, server_lifetime, query_wait_timeout, the reserve pool, FIFO
//! waiters, max_db_connections across users, and dead idle connections.
//!
//! Tests that count server connections use a role of their own (the cluster is shared).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn min_pool_size_is_kept_warm() {
    let pg = cluster();
    let password = create_role(pg, "warm");
    let pooler = Pooler::builder(pg)
        .set("pool.min_pool_size", "3")
        .userlist_line(&userlist_entry("warm"))
        .start();
    // The first client creates the pool; the pooler then fills it up to 3 while the
    // client sits idle (PgBouncer tops up only pools that have a client).
    let client = pooler.connect("app", "warm", &password).await;
    simple_value(&client, "SELECT 1").await;
    wait_until(
        Duration::from_secs(15),
        "3 warm server connections",
        || async { server_conn_count(pg, "app", "warm").await == 3 },
    )
    .await;
    // Kill one: the pool refills it.
    let pids = backend_pids(pg, "app", "warm").await;
    terminate_backend(pg, pids[0]).await;
    wait_until(Duration::from_secs(15), "the pool to refill", || async {
        let pids_now = backend_pids(pg, "app", "warm").await;
        pids_now.len() == 3 && !pids_now.contains(&pids[0])
    })
    .await;
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
}

#[tokio::test]
async fn server_idle_timeout_closes_idle_connections() {
    let pg = cluster();
    let password = create_role(pg, "idler");
    let pooler = Pooler::builder(pg)
        .set("pool.server_idle_timeout", "1")
        .userlist_line(&userlist_entry("idler"))
        .start();
    let client = pooler.connect("app", "idler", &password).await;
    simple_value(&client, "SELECT 1").await;
    assert_eq!(server_conn_count(pg, "app", "idler").await, 1);
    wait_until(
        Duration::from_secs(10),
        "the idle server connection to close",
        || async { server_conn_count(pg, "app", "idler").await == 0 },
    )
    .await;
    // The client (connected all along) still works: a new server connection is made.
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
}

#[tokio::test]
async fn server_lifetime_recycles_connections() {
    let pooler = Pooler::builder(cluster())
        .set("pool.server_lifetime", "1")
        .set("databases.app.pool_size", "1")
        .start();
    let client = pooler.connect_app().await;
    let first = simple_value(&client, "SELECT pg_backend_pid()").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid = simple_value(&client, "SELECT pg_backend_pid()").await;
        if pid != first {
            break;
        }
        assert!(Instant::now() < deadline, "backend {first} never recycled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn query_wait_timeout_fails_the_waiting_client() {
    let pooler = Pooler::builder(cluster())
        .set("pool.query_wait_timeout", "1")
        .set("databases.app.pool_size", "1")
        .start();
    let holder = pooler.connect_app().await;
    holder.batch_execute("BEGIN").await.unwrap();
    simple_value(&holder, "SELECT 1").await;

    let waiter = pooler.connect_app().await;
    let started = Instant::now();
    let err = waiter
        .simple_query("SELECT 2")
        .await
        .expect_err("no server for the waiter");
    let waited = started.elapsed();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.severity(), "FATAL");
    assert!(
        db.message().contains("query_wait_timeout"),
        "{}",
        db.message()
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    wait_until(
        Duration::from_secs(5),
        "the waiter to be disconnected",
        || async { waiter.is_closed() },
    )
    .await;
    // The holder was not affected.
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(simple_value(&holder, "SELECT 3").await, "3");
}

#[tokio::test]
async fn reserve_pool_serves_a_client_that_waited_reserve_pool_timeout() {
    let pg = cluster();
    let password = create_role(pg, "reserve");
    let pooler = Pooler::builder(pg)
        .userlist_line(&userlist_entry("reserve"))
        .set("databases.app.pool_size", "1")
        .set("pool.reserve_pool_size", "1")
        .set("pool.reserve_pool_timeout_ms", "400")
        .set("pool.query_wait_timeout", "10")
        .start();
    let holder = pooler.connect("app", "reserve", &password).await;
    holder.batch_execute("BEGIN").await.unwrap();
    simple_value(&holder, "SELECT 1").await;

    // The pool's one connection is held: the waiter gets the reserve connection
    // once it has waited reserve_pool_timeout, not before, and not query_wait_timeout.
    let waiter = pooler.connect("app", "reserve", &password).await;
    let started = Instant::now();
    waiter.batch_execute("BEGIN").await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(simple_value(&waiter, "SELECT 2").await, "2");
    assert_eq!(server_conn_count(pg, "app", "reserve").await, 2);
    // No more than the reserve: a third client waits for a released connection.
    let third = pooler.connect("app", "reserve", &password).await;
    let third_query = tokio::spawn(async move {
        let started = Instant::now();
        let v = simple_value(&third, "SELECT 3").await;
        (v, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server_conn_count(pg, "app", "reserve").await, 2);
    holder.batch_execute("COMMIT").await.unwrap();
    let (v, waited) = third_query.await.unwrap();
    assert_eq!(v, "3");
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    // Released with nobody waiting, the connection beyond pool_size closes
    // (PgBouncer keeps it until server_idle_timeout).
    waiter.batch_execute("COMMIT").await.unwrap();
    if PoolerKind::is_pgbouncer() {
        return;
    }
    wait_until(
        Duration::from_secs(5),
        "the reserve connection to close",
        || async { server_conn_count(pg, "app", "reserve").await == 1 },
    )
    .await;
    assert_eq!(simple_value(&waiter, "SELECT 4").await, "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .start();
    let holder = pooler.connect_app().await;
    holder
        .batch_execute("CREATE SEQUENCE IF NOT EXISTS fifo_seq")
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..3 {
        waiters.push(Arc::new(pooler.connect_app().await));
    }
    holder.batch_execute("BEGIN").await.unwrap();
    simple_value(&holder, "SELECT 1").await;

    let mut tasks = Vec::new();
    for waiter in &waiters {
        let waiter = waiter.clone();
        tasks.push(tokio::spawn(async move {
            simple_value(&waiter, "SELECT nextval('fifo_seq')").await
        }));
        // Nothing observable tells us a waiter is queued in the pooler (the admin console
        // would); a pause makes the arrival order unambiguous.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap().parse::<i64>().unwrap());
    }
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "served out of order: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_caps_across_users() {
    let pg = cluster();
    let (pw_a, pw_b) = (create_role(pg, "cap_a"), create_role(pg, "cap_b"));
    let pooler = Pooler::builder(pg)
        .set("pool.max_db_connections", "2")
        .set("pool.default_pool_size", "5")
        .userlist_line(&userlist_entry("cap_a"))
        .userlist_line(&userlist_entry("cap_b"))
        .start();
    let count = || async {
        server_conn_count(pg, "app", "cap_a").await + server_conn_count(pg, "app", "cap_b").await
    };
    let a1 = pooler.connect("app", "cap_a", &pw_a).await;
    let b1 = pooler.connect("app", "cap_b", &pw_b).await;
    a1.batch_execute("BEGIN").await.unwrap();
    simple_value(&a1, "SELECT 1").await;
    b1.batch_execute("BEGIN").await.unwrap();
    simple_value(&b1, "SELECT 1").await;

    // A third transaction (either user) must wait for one of the two.
    let a2 = pooler.connect("app", "cap_a", &pw_a).await;
    let blocked = tokio::spawn(async move { simple_value(&a2, "SELECT 'a2'").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !blocked.is_finished(),
        "a third server connection was opened"
    );
    assert_eq!(count().await, 2);

    b1.batch_execute("COMMIT").await.unwrap();
    let value = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the waiter gets a connection once one is free")
        .unwrap();
    assert_eq!(value, "a2");
    assert!(count().await <= 2);
    a1.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn dead_idle_server_connection_is_not_handed_out() {
    let pg = cluster();
    let pooler = Pooler::builder(pg)
        .set("databases.app.pool_size", "1")
        .start();
    let client = pooler.connect_app().await;
    let pid: i32 = simple_value(&client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();
    terminate_backend(pg, pid).await;
    wait_until(Duration::from_secs(5), "the backend to exit", || async {
        !backend_pids(pg, "app", "app").await.contains(&pid)
    })
    .await;
    // Same client and a new one: both queries succeed on a fresh server connection.
    let new_pid = simple_value(&client, "SELECT pg_backend_pid()").await;
    assert_ne!(new_pid, pid.to_string());
    let other = pooler.connect_app().await;
    assert_eq!(simple_value(&other, "SELECT 1").await, "1");
}

#[tokio::test]
async fn pool_heals_after_a_server_restart() {
    let mut pg = fresh_cluster();
    let pooler = Pooler::builder(&pg)
        .set("databases.app.pool_size", "2")
        .start();
    let idle_client = pooler.connect_app().await;
    let before = simple_value(&idle_client, "SELECT pg_backend_pid()").await;
    // Fast shutdown: every server connection gets FATAL 57P01 and is closed.
    pg.restart().unwrap();
    // The client was idle between transactions, so it lost nothing: its next
    // transaction runs on a new server connection.
    let after = simple_value(&idle_client, "SELECT pg_backend_pid()").await;
    assert_ne!(before, after);
    let new_client = pooler.connect_app().await;
    assert_eq!(simple_value(&new_client, "SELECT 1").await, "1");
}
