//! No session state leaks between clients: with `pool_size = 1` two clients share one
//! server connection (same backend pid), and what client A leaves behind — SET,
//! set_config, temp tables, advisory locks, LISTEN, PREPARE, WITH HOLD cursors — is gone
//! when client B gets that connection, while A is still connected.

mod common;

use common::*;

/// Client A runs `setup`; then client B, on the same server connection, must get
/// `clean` from `probe`.
async fn no_leak(setup: &str, probe: &str, clean: &str) {
    let mut builder = Pooler::builder(cluster()).set("databases.app.pool_size", "1");
    if PoolerKind::is_pgbouncer() {
        // PgBouncer only resets in transaction mode when told to do it always.
        builder = builder.set("pool.server_reset_query_always", "true");
    }
    let pooler = builder.start();
    let a = pooler.connect_app().await;
    let pid_a = simple_value(&a, "SELECT pg_backend_pid()").await;
    a.batch_execute(setup)
        .await
        .unwrap_or_else(|e| panic!("setup {setup}: {e}"));
    // A stays connected (idle, between transactions) while B works.
    let b = pooler.connect_app().await;
    let pid_b = simple_value(&b, "SELECT pg_backend_pid()").await;
    assert_eq!(pid_a, pid_b, "A and B must share the one server connection");
    assert_eq!(
        simple_value(&b, probe).await,
        clean,
        "after A ran `{setup}`, B saw it through `{probe}`"
    );
    // The pool still works for A afterwards.
    assert_eq!(simple_value(&a, "SELECT 1").await, "1");
}

#[tokio::test]
async fn set_does_not_leak() {
    no_leak(
        "SET statement_timeout = '1234ms'",
        "SHOW statement_timeout",
        "0",
    )
    .await;
}

#[tokio::test]
async fn set_config_does_not_leak() {
    no_leak(
        "SELECT set_config('work_mem', '7MB', false)",
        "SHOW work_mem",
        "4MB",
    )
    .await;
}

#[tokio::test]
async fn temp_table_does_not_leak() {
    no_leak(
        "CREATE TEMP TABLE reset_tmp (x int)",
        "SELECT to_regclass('pg_temp.reset_tmp') IS NULL",
        "t",
    )
    .await;
}

#[tokio::test]
async fn advisory_lock_does_not_leak() {
    no_leak(
        "SELECT pg_advisory_lock(424242)",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242",
        "0",
    )
    .await;
}

#[tokio::test]
async fn listen_does_not_leak() {
    no_leak(
        "LISTEN reset_chan",
        "SELECT count(*) FROM pg_listening_channels()",
        "0",
    )
    .await;
}

#[tokio::test]
async fn sql_prepare_does_not_leak() {
    no_leak(
        "PREPARE reset_stmt AS SELECT 1",
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'reset_stmt'",
        "0",
    )
    .await;
}

#[tokio::test]
async fn cursor_with_hold_does_not_leak() {
    no_leak(
        "BEGIN; DECLARE reset_cur CURSOR WITH HOLD FOR SELECT 1; COMMIT",
        "SELECT count(*) FROM pg_cursors WHERE name = 'reset_cur'",
        "0",
    )
    .await;
}
