//! `pgpool-rs health`, the container health check: the real binary run against a
//! running pooler (exit 0 on 200), a pooler that is not ready (503, exit 1), a closed
//! port and a port that never answers (exit 1), with the URL given or taken from the
//! pooler's config.
//!
//! PgBouncer has no HTTP side: under `PGPOOL_TEST_POOLER=pgbouncer` these tests skip.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const PGPOOL_BIN: &str = env!("CARGO_BIN_EXE_pgpool-rs");

/// Runs `pgpool-rs [--config config] health [args]` without `PGPOOL_CONFIG` from outside.
fn health(config: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(PGPOOL_BIN);
    cmd.env_remove("PGPOOL_CONFIG").env("RUST_LOG", "warn");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("health")
        .args(args)
        .output()
        .expect("run pgpool-rs health")
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test]
async fn ready_pooler_exits_0_with_url_and_from_config() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("databases.app.role", "\"writer\"")
        .start();
    let ready = url(pooler.http_port(), "/health/ready");
    wait_until(Duration::from_secs(10), "health exits 0", || {
        let ready = ready.clone();
        async move { health(None, &["--url", &ready]).status.success() }
    })
    .await;

    let out = health(None, &["--url", &ready]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("200 OK: ready"), "{}", output_text(&out));

    // No --url: /health/ready on the config's listen.http_addr.
    let out = health(Some(pooler.config_path()), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&ready),
        "asked the config's address: {}",
        output_text(&out)
    );

    let live = health(None, &["--url", &url(pooler.http_port(), "/health/live")]);
    assert_eq!(live.status.code(), Some(0), "{}", output_text(&live));
    // A 404 is not healthy either.
    let nope = health(None, &["--url", &url(pooler.http_port(), "/nope")]);
    assert_eq!(nope.status.code(), Some(1), "{}", output_text(&nope));
    assert!(output_text(&nope).contains("404"), "{}", output_text(&nope));
}

#[tokio::test]
async fn not_ready_pooler_exits_1_with_503() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    // A writer entry whose server is never reached keeps /health/ready at 503.
    let pooler = Pooler::builder(cluster())
        .set("databases.down.host", "\"127.0.0.1\"")
        .set("databases.down.port", &closed_port().to_string())
        .set("databases.down.role", "\"writer\"")
        .start();
    let out = health(Some(pooler.config_path()), &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("503 Service Unavailable"), "{text}");
    assert!(text.contains("down"), "the reason names the entry: {text}");
    // The process itself is fine.
    let live = health(None, &["--url", &url(pooler.http_port(), "/health/live")]);
    assert_eq!(live.status.code(), Some(0), "{}", output_text(&live));
}

#[test]
fn closed_port_exits_1() {
    let out = health(None, &["--url", &url(closed_port(), "/health/ready")]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}

#[test]
fn silent_server_times_out_with_exit_1() {
    // Accepts (the kernel does, via the backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let started = Instant::now();
    let out = health(
        None,
        &["--url", &url(port, "/health/ready"), "--timeout", "1"],
    );
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no answer within 1 s"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10), "{text}");
    drop(listener);
}

#[test]
fn bad_url_and_http_off_are_clear_errors() {
    let out = health(None, &["--url", "https://127.0.0.1:9930/health/ready"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("only http:// URLs"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pool.toml");
    std::fs::write(&config, "[listen]\nhttp_addr = \"\"\n").expect("write");
    let out = health(Some(&config), &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("HTTP is off"), "{text}");
}
