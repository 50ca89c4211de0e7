//! Routing, readiness and the metrics text, over a `Shared` built from a
//! config text (no sockets, no database: pools are created but never connect).

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::sync::watch;

use super::*;
use crate::config::Config;
use crate::pool::{Pool, PoolKey};
use crate::server::ServerCredential;
use crate::snapshot::Snapshot;

const CONFIG: &str = r#"
[auth]
type = "trust"
file = "/nonexistent/userlist.txt"

[databases.app]
host = "127.0.0.1"
role = "writer"

[databases.reports]
host = "127.0.0.1"
role = "reader"
"#;

fn setup() -> (Http, watch::Sender<bool>) {
    let config = Config::parse(CONFIG, Path::new("pool.toml")).expect("config parses");
    let snapshot = Snapshot::from_config(config).expect("snapshot");
    let (tx, rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(snapshot, rx));
    shared.stats.listening.store(true, Relaxed);
    (Http::new(shared), tx)
}

fn pool(http: &Http, database: &str, user: &str) -> Arc<Pool> {
    let snapshot = http.shared.snapshot();
    let db = &snapshot.config.databases[database];
    let key = PoolKey {
        database: database.into(),
        user: user.into(),
    };
    http.shared.registry.get_or_create(&key, 0, || {
        http.shared
            .settings_for(&snapshot, db, user, ServerCredential::None, 0)
            .expect("entry has a host")
    })
}

fn get(http: &Http, method: Method, path: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .expect("request");
    let resp = http.respond(&req);
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = futures_body(resp.into_body());
    (status, ctype, body)
}

fn futures_body(body: Full<Bytes>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let bytes = rt
        .block_on(body.collect())
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

#[test]
fn live_is_ok_unknown_paths_are_404_and_other_methods_405() {
    let (http, _tx) = setup();
    assert_eq!(get(&http, Method::GET, "/health/live").0, StatusCode::OK);
    assert_eq!(
        get(&http, Method::GET, "/health/live?x=1").0,
        StatusCode::OK
    );
    assert_eq!(get(&http, Method::GET, "/").0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&http, Method::GET, "/metrics/x").0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&http, Method::POST, "/nope").0, StatusCode::NOT_FOUND);
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
        let req = Request::builder()
            .method(m.clone())
            .uri("/metrics")
            .body(())
            .expect("request");
        let resp = http.respond(&req);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(
            resp.headers().get(ALLOW).map(|v| v.as_bytes()),
            Some(&b"GET"[..])
        );
    }
}

#[test]
fn ready_needs_every_writer_entry_to_have_reached_its_server() {
    let (http, _tx) = setup();
    let (status, _, body) = get(&http, Method::GET, "/health/ready");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("app") && !body.contains("reports"), "{body}");

    // A pool exists but has not connected yet: still not ready.
    let p = pool(&http, "app", "alice");
    assert_eq!(
        get(&http, Method::GET, "/health/ready").0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The reader entry does not count; the writer's first server login does.
    pool(&http, "reports", "bob").stats.server_connected();
    assert_eq!(
        get(&http, Method::GET, "/health/ready").0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    p.stats.server_connected();
    assert_eq!(
        get(&http, Method::GET, "/health/ready"),
        (StatusCode::OK, TEXT.into(), "ready\n".into())
    );

    // Sticky: closing the pool (KILL, reload) does not make it unready again.
    p.close();
    drop(p);
    assert_eq!(get(&http, Method::GET, "/health/ready").0, StatusCode::OK);
}

#[test]
fn ready_is_503_while_shutting_down_or_not_listening() {
    let (http, tx) = setup();
    pool(&http, "app", "alice").stats.server_connected();
    assert_eq!(get(&http, Method::GET, "/health/ready").0, StatusCode::OK);

    http.shared.stats.listening.store(false, Relaxed);
    let (status, _, body) = get(&http, Method::GET, "/health/ready");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("listener"), "{body}");
    http.shared.stats.listening.store(true, Relaxed);

    tx.send(true).expect("receiver alive");
    let (status, _, body) = get(&http, Method::GET, "/health/ready");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(
        get(&http, Method::GET, "/health/live").0,
        StatusCode::OK,
        "live during drain"
    );
}

#[test]
fn metrics_render_pool_and_global_values_in_prometheus_text() {
    let (http, _tx) = setup();
    let p = pool(&http, "app", "al\"ice");
    p.stats.client_joined();
    p.stats.client_joined();
    p.stats.add_traffic(3, 7, 100, 2000);
    p.stats.add_xact_time(Duration::from_micros(300));
    p.stats.add_xact_time(Duration::from_secs(20));
    p.stats.add_prepared(4, 5, 6);
    http.shared.stats.reloads_failed.fetch_add(2, Relaxed);
    http.shared.stats.clients_now.fetch_add(9, Relaxed);

    let (status, ctype, body) = get(&http, Method::GET, "/metrics");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let labels = r#"{database="app",user="al\"ice"}"#;
    for line in [
        format!("pgpool_clients_active{labels} 2"),
        format!("pgpool_clients_waiting{labels} 0"),
        format!("pgpool_servers_idle{labels} 0"),
        format!("pgpool_transactions_total{labels} 3"),
        format!("pgpool_queries_total{labels} 7"),
        format!("pgpool_client_received_bytes_total{labels} 100"),
        format!("pgpool_server_received_bytes_total{labels} 2000"),
        format!("pgpool_prepared_statement_hits_total{labels} 4"),
        format!("pgpool_prepared_statement_misses_total{labels} 5"),
        format!("pgpool_prepared_statement_evictions_total{labels} 6"),
        r#"pgpool_transaction_seconds_bucket{database="app",user="al\"ice",le="0.0005"} 1"#.into(),
        r#"pgpool_transaction_seconds_bucket{database="app",user="al\"ice",le="10"} 1"#.into(),
        r#"pgpool_transaction_seconds_bucket{database="app",user="al\"ice",le="+Inf"} 2"#.into(),
        format!("pgpool_transaction_seconds_count{labels} 2"),
        format!("pgpool_transaction_seconds_sum{labels} 20.0003"),
        format!("pgpool_client_wait_seconds_count{labels} 0"),
        "# TYPE pgpool_transactions_total counter".into(),
        "# TYPE pgpool_transaction_seconds histogram".into(),
        "pgpool_clients_connected 9".into(),
        r#"pgpool_reloads_total{result="failed"} 2"#.into(),
        r#"pgpool_reloads_total{result="ok"} 0"#.into(),
        "pgpool_login_failures_total 0".into(),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    // Every sample line is `name{labels} value` with a number for a value.
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }
}

#[test]
fn metrics_leave_out_closed_pools() {
    let (http, _tx) = setup();
    let p = pool(&http, "reports", "bob");
    let series = r#"pgpool_clients_active{database="reports""#;
    assert!(get(&http, Method::GET, "/metrics").2.contains(series));
    p.close();
    assert!(!get(&http, Method::GET, "/metrics").2.contains(series));
}
