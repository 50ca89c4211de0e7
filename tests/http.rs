//! The HTTP endpoints on `listen.http_addr`, spoken to over plain TCP:
//! `/health/live`, `/health/ready` (writer entries reached, 503 during the drain)
//! and `/metrics` (Prometheus text that moves with real traffic).
//!
//! PgBouncer has no HTTP side: under `PGPOOL_TEST_POOLER=pgbouncer` these tests skip.

mod common;

use std::time::Duration;

use common::http::{get, request, sample};
use common::*;

/// A pooler whose `app` entry is a writer.
fn start_writer_pooler() -> PoolerBuilder {
    Pooler::builder(cluster()).set("databases.app.role", "\"writer\"")
}

#[tokio::test]
async fn unreachable_writer_keeps_ready_503() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    // A port nothing listens on: the writer entry `down` is never reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pooler = start_writer_pooler()
        .set("databases.down.host", "\"127.0.0.1\"")
        .set("databases.down.port", &port.to_string())
        .set("databases.down.role", "\"writer\"")
        .start();
    wait_until(Duration::from_secs(10), "app probed, down not", || async {
        let r = get(&pooler, "/health/ready").await;
        r.status == 503 && r.body.contains("down") && !r.body.contains("app")
    })
    .await;
    let ready = get(&pooler, "/health/ready").await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(
        !ready.body.contains("bench"),
        "bench is not a writer: {ready:?}"
    );
}

#[tokio::test]
async fn live_ready_and_unknown_routes() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = start_writer_pooler().start();
    let live = get(&pooler, "/health/live").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));

    // No client has logged in, but the startup probe reaches the writer's
    // server, so the pooler becomes ready on its own.
    wait_until(
        Duration::from_secs(10),
        "ready without any client",
        || async { get(&pooler, "/health/ready").await.status == 200 },
    )
    .await;
    let ready = get(&pooler, "/health/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let client = pooler.connect_app().await;
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    assert_eq!(get(&pooler, "/health/ready").await.status, 200);

    assert_eq!(get(&pooler, "/nope").await.status, 404);
    assert_eq!(get(&pooler, "/health").await.status, 404);
    let post = request(pooler.http_port(), "POST", "/metrics").await;
    assert_eq!(post.status, 405, "{post:?}");
    assert!(post.head.to_lowercase().contains("allow: get"), "{post:?}");
    assert_eq!(
        request(pooler.http_port(), "DELETE", "/health/ready")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn metrics_follow_real_traffic() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::start(cluster());
    let client = pooler.connect_app().await;
    let pool = r#"{database="app",user="app"}"#;
    let before = get(&pooler, "/metrics").await;
    assert_eq!(before.status, 200);
    assert!(
        before
            .head
            .to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        before.head
    );
    let xacts_before = sample(&before.body, &format!("pgpool_transactions_total{pool}"))
        .unwrap_or_else(|| panic!("no transactions_total for app/app in\n{}", before.body));
    assert_eq!(
        sample(&before.body, &format!("pgpool_clients_active{pool}")),
        Some(1.0),
        "{}",
        before.body
    );

    for i in 0..5 {
        assert_eq!(
            simple_value(&client, &format!("SELECT {i}")).await,
            i.to_string()
        );
    }
    // Stats are folded in after the relay hands the answer over: poll briefly.
    let series = format!("pgpool_transactions_total{pool}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let after = loop {
        let m = get(&pooler, "/metrics").await.body;
        if sample(&m, &series) == Some(xacts_before + 5.0) {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} did not reach {} (from {xacts_before}):\n{m}",
            xacts_before + 5.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let value =
        |series: &str| sample(&after, series).unwrap_or_else(|| panic!("no {series} in\n{after}"));
    assert!(value(&format!("pgpool_queries_total{pool}")) >= 5.0);
    assert!(value(&format!("pgpool_client_received_bytes_total{pool}")) > 0.0);
    assert!(value(&format!("pgpool_server_received_bytes_total{pool}")) > 0.0);
    assert!(value(&format!("pgpool_server_connects_total{pool}")) >= 1.0);
    assert_eq!(value(&format!("pgpool_servers_idle{pool}")), 1.0);
    assert_eq!(value(&format!("pgpool_servers_active{pool}")), 0.0);
    assert_eq!(value(&format!("pgpool_clients_waiting{pool}")), 0.0);
    assert!(value(&format!("pgpool_transaction_seconds_count{pool}")) >= 5.0);
    assert!(
        value(r#"pgpool_transaction_seconds_bucket{database="app",user="app",le="+Inf"}"#) >= 5.0
    );
    assert_eq!(value("pgpool_clients_connected"), 1.0);
    assert_eq!(value(r#"pgpool_reloads_total{result="ok"}"#), 0.0);
    for name in [
        "pgpool_client_wait_seconds_count",
        "pgpool_prepared_statement_hits_total",
        "pgpool_server_resets_total",
    ] {
        value(&format!("{name}{pool}"));
    }
    for name in [
        "pgpool_clients_refused_total",
        "pgpool_login_failures_total",
        "pgpool_protocol_errors_total",
        "pgpool_cancels_forwarded_total",
    ] {
        value(name);
    }

    // A failed login and a reload show up too.
    assert!(pooler.try_connect("app", "app", "wrong").await.is_err());
    pooler.send_signal("HUP");
    wait_until(
        Duration::from_secs(5),
        "login failure and reload counted",
        || async {
            let m = get(&pooler, "/metrics").await.body;
            sample(&m, "pgpool_login_failures_total") == Some(1.0)
                && sample(&m, r#"pgpool_errors_total{kind="login"}"#) == Some(1.0)
                && sample(&m, r#"pgpool_reloads_total{result="ok"}"#) == Some(1.0)
        },
    )
    .await;
    let m = get(&pooler, "/metrics").await.body;
    for kind in [
        "refused",
        "protocol",
        "wait_timeout",
        "server_connect",
        "server_lost",
    ] {
        assert_eq!(
            sample(&m, &format!("pgpool_errors_total{{kind=\"{kind}\"}}")),
            Some(0.0),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn sigterm_turns_ready_503_during_the_drain() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let mut pooler = start_writer_pooler()
        .set("pool.shutdown_timeout", "20")
        .start();
    let client = pooler.connect_app().await;
    client.simple_query("BEGIN").await.expect("BEGIN");
    assert_eq!(get(&pooler, "/health/ready").await.status, 200);

    // The open transaction keeps the drain going; meanwhile ready says 503.
    pooler.send_signal("TERM");
    wait_until(Duration::from_secs(5), "ready to turn 503", || async {
        get(&pooler, "/health/ready").await.status == 503
    })
    .await;
    let ready = get(&pooler, "/health/ready").await;
    assert!(ready.body.contains("shutting down"), "{ready:?}");
    assert_eq!(
        get(&pooler, "/health/live").await.status,
        200,
        "still serving"
    );
    assert!(!pooler.has_exited(), "the drain must still be going on");
    assert_eq!(
        simple_value(&client, "SELECT 7").await,
        "7",
        "the client is served"
    );

    client.simple_query("COMMIT").await.expect("COMMIT");
    drop(client);
    let status = pooler.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "the pooler exits once the client has gone"
    );
}

#[tokio::test]
async fn http_bind_failure_stops_startup() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool.toml");
    let client_port = pgpool_rs::localpg::free_port().expect("free port");
    let text = Pooler::builder(cluster())
        .set("listen.http_addr", &format!("\"127.0.0.1:{port}\""))
        .set("auth.type", "\"trust\"")
        .config_text(client_port, port, dir.path());
    std::fs::write(&path, text).expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgpool-rs"))
        .arg("--config")
        .arg(&path)
        .env_remove("PGPOOL_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the pooler");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running with its HTTP port taken:\n{}",
                output_text(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().expect("output");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.to_lowercase().contains("in use"), "{text}");
    drop(taken);
}
