//! Writer/reader roles, several hosts, and failover, against a real primary and real
//! streaming replicas (`pg_basebackup -R`), as Aurora's writer and reader endpoints
//! behave: the pooler learns each server's role at login and follows a promotion.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::console::*;
use common::*;
use pgpool_rs::localpg::LocalPostgres;

fn hosts_literal(servers: &[&LocalPostgres]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|pg| format!("\"127.0.0.1:{}\"", pg.port()))
        .collect();
    format!("[{}]", list.join(", "))
}

/// A pooler whose `app` entry points at `servers` with `role`; `app` is an admin.
fn pooler_on(servers: &[&LocalPostgres], role: &str) -> PoolerBuilder {
    Pooler::builder(servers[0])
        .remove("databases.app.host")
        .remove("databases.app.port")
        .set("databases.app.hosts", &hosts_literal(servers))
        .set("databases.app.role", &format!("\"{role}\""))
        .set("auth.admin_users", "[\"app\"]")
}

fn create_table(pg: &LocalPostgres, table: &str) {
    pg.psql(
        "app",
        &format!("CREATE TABLE {table} (v int); GRANT ALL ON {table} TO app"),
    )
    .expect("create table");
}

/// Server ports of the pooler's connections for database `app`, with counts.
async fn server_ports(console: &tokio_postgres::Client) -> BTreeMap<i64, usize> {
    let servers = show(console, "SHOW SERVERS").await;
    let mut ports = BTreeMap::new();
    for row in servers.rows_where("database", "app") {
        *ports.entry(servers.int(row, "port")).or_default() += 1;
    }
    ports
}

#[tokio::test(flavor = "multi_thread")]
async fn writer_entry_listing_the_replica_first_only_writes_to_the_primary() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let primary = fresh_cluster();
    create_table(&primary, "w");
    let replica = primary.start_replica().expect("replica");
    let pooler = pooler_on(&[&replica, &primary], "writer").start();
    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(pooler.connect_app().await);
    }
    // All four inside a transaction at once: four server connections.
    for c in &clients {
        c.batch_execute("BEGIN; INSERT INTO w VALUES (1)")
            .await
            .expect("insert on the writer");
    }
    let ports = server_ports(&console).await;
    assert_eq!(
        ports,
        BTreeMap::from([(i64::from(primary.port()), 4)]),
        "every connection on the primary"
    );
    for c in &clients {
        c.batch_execute("COMMIT").await.expect("commit");
    }
    assert_eq!(
        primary
            .psql("app", "SELECT count(*) FROM w")
            .expect("count"),
        "4"
    );

    let hosts = show(&console, "SHOW HOSTS").await;
    let replica_port = replica.port().to_string();
    let replica_row = hosts.rows_where("port", &replica_port);
    assert_eq!(hosts.get(replica_row[0], "role"), Some("standby"));
    let primary_port = primary.port().to_string();
    let primary_row = hosts.rows_where("port", &primary_port);
    assert_eq!(hosts.get(primary_row[0], "role"), Some("primary"));
    assert_eq!(hosts.int(primary_row[0], "connections"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_entry_balances_between_two_replicas() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let primary = fresh_cluster();
    let first = primary.start_replica().expect("replica 1");
    let second = primary.start_replica().expect("replica 2");
    let pooler = pooler_on(&[&first, &second], "reader").start();
    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = pooler.connect_app().await;
        c.batch_execute("BEGIN; SELECT 1").await.expect("read");
        clients.push(c);
    }
    let ports = server_ports(&console).await;
    assert_eq!(
        ports,
        BTreeMap::from([(i64::from(first.port()), 4), (i64::from(second.port()), 4)]),
        "least connections: four each"
    );
    let err = clients[0]
        .batch_execute("CREATE TABLE nope (v int)")
        .await
        .expect_err("a replica refuses writes");
    assert_eq!(sqlstate(&err).as_deref(), Some("25006"));
}

#[tokio::test(flavor = "multi_thread")]
async fn writer_entry_on_a_replica_only_queues_then_fails_clearly() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let primary = fresh_cluster();
    let replica = primary.start_replica().expect("replica");
    let pooler = pooler_on(&[&replica], "writer")
        .set("pool.query_wait_timeout", "2")
        .start();
    let started = Instant::now();
    let err = pooler
        .try_connect("app", "app", password_of("app"))
        .await
        .map(|_| ())
        .expect_err("no writer: the client is not served");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "queued until query_wait_timeout, not failed at once ({waited:?})"
    );
    let message = error_message(&err);
    assert!(
        message.contains("query_wait_timeout") && message.contains("standby"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_entry_falls_back_to_the_writer_unless_told_not_to() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let primary = fresh_cluster();
    let pooler = pooler_on(&[&primary], "reader").start();
    let client = pooler.connect_app().await;
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");

    let strict = pooler_on(&[&primary], "reader")
        .set("databases.app.fallback_to_writer", "false")
        .set("pool.query_wait_timeout", "1")
        .start();
    let err = strict
        .try_connect("app", "app", password_of("app"))
        .await
        .map(|_| ())
        .expect_err("no reader, no fallback");
    assert!(
        error_message(&err).contains("primary"),
        "{}",
        error_message(&err)
    );
}

/// 50 clients write in a loop through a writer entry listing [primary, replica]. The
/// primary crashes, the replica is promoted: only clients whose transaction was running on
/// the primary get an error (a connection failure, never "read-only"); writes succeed
/// again within 2 s of the promoted server accepting connections; the failover is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_to_a_promoted_replica_keeps_idle_clients_and_resumes_writes() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let mut primary = fresh_cluster();
    create_table(&primary, "f");
    let replica = primary.start_replica().expect("replica");
    let pool_size = 10;
    let pooler = pooler_on(&[&primary, &replica], "writer")
        .set("databases.app.pool_size", &pool_size.to_string())
        .set("pool.query_wait_timeout", "30")
        .set("pool.server_connect_timeout", "1")
        .start();

    let stop = Arc::new(AtomicBool::new(false));
    let successes: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut workers = Vec::new();
    for i in 0..50 {
        let client = pooler.connect_app().await;
        let (stop, successes) = (stop.clone(), successes.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client
                    .batch_execute(&format!("INSERT INTO f VALUES ({i})"))
                    .await
                {
                    Ok(()) => successes.lock().expect("lock").push(Instant::now()),
                    Err(e) => return Some(e),
                }
            }
            None
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        successes.lock().expect("lock").len() > 50,
        "load is flowing"
    );

    primary.crash().expect("crash the primary");
    tokio::time::sleep(Duration::from_secs(1)).await;
    replica.promote().expect("promote");
    let promoted = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "writes after the promotion",
        || async {
            successes
                .lock()
                .expect("lock")
                .iter()
                .any(|t| *t > promoted)
        },
    )
    .await;
    let first_after = *successes
        .lock()
        .expect("lock")
        .iter()
        .find(|t| **t > promoted)
        .expect("a write after promotion");
    let recovery = first_after - promoted;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut failed = Vec::new();
    for w in workers {
        if let Some(e) = w.await.expect("worker") {
            failed.push(e);
        }
    }
    assert!(
        failed.len() <= pool_size,
        "{} clients failed; at most the {pool_size} mid-transaction may",
        failed.len()
    );
    for e in &failed {
        let code = sqlstate(e).unwrap_or_default();
        assert!(
            code.is_empty() || code.starts_with("08") || code.starts_with("57P"),
            "a lost transaction reports a connection failure, got {code}: {e}"
        );
    }
    assert!(
        recovery < Duration::from_secs(2),
        "writes resumed {recovery:?} after the promotion"
    );
    let count: i64 = replica
        .psql("app", "SELECT count(*) FROM f")
        .expect("count")
        .parse()
        .expect("number");
    assert!(count > 0);

    let console = pooler.connect("pgbouncer", "app", password_of("app")).await;
    let hosts = show(&console, "SHOW HOSTS").await;
    let replica_port = replica.port().to_string();
    let row = hosts.rows_where("port", &replica_port);
    assert_eq!(hosts.get(row[0], "role"), Some("primary"));
    assert_eq!(hosts.int(row[0], "failovers"), 1);
    let primary_port = primary.port().to_string();
    let row = hosts.rows_where("port", &primary_port);
    assert_eq!(
        hosts.get(row[0], "state"),
        Some("aside"),
        "the crashed host is set aside"
    );
    eprintln!(
        "failover: {} clients failed, writes resumed {recovery:?} after promotion",
        failed.len()
    );
}
