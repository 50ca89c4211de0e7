//! TLS on both sides, through real clients: psql with sslmode=require / verify-full /
//! channel_binding=require, a raw rustls client for direct TLS and long-lived sessions,
//! and a PostgreSQL cluster with `ssl = on` behind the pooler (server_tls).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::tls::{client_config, psql_tls, tls_cluster, Start, TestCa, TlsConn};
use common::*;

/// A pooler whose client side uses `ca`'s certificate for localhost, with `mode`.
struct TlsPooler {
    pooler: Pooler,
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn start_tls_pooler(ca: &TestCa, mode: &str, builder: PoolerBuilder) -> TlsPooler {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue_localhost().write(dir.path(), "pooler");
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let pooler = builder
        .set("listen.client_tls", &format!("\"{mode}\""))
        .set("listen.tls_cert", &quoted(&cert))
        .set("listen.tls_key", &quoted(&key))
        .start();
    TlsPooler {
        pooler,
        dir,
        cert,
        key,
    }
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn psql_require_and_verify_full_and_wrong_ca() {
    let ca = TestCa::new("pgpool-rs test CA");
    let other = TestCa::new("some other CA");
    let p = start_tls_pooler(&ca, "prefer", Pooler::builder(cluster()));
    let port = p.pooler.port();
    let ca_file = ca.write(p.dir.path(), "ca.crt");
    let other_file = other.write(p.dir.path(), "other.crt");

    let out = psql_tls(port, "app", "sslmode=require", "\\conninfo");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        text(&out).contains("SSL connection (protocol: TLSv1.3"),
        "{}",
        text(&out)
    );

    let verify = format!(
        "sslmode=verify-full sslrootcert={} host=localhost hostaddr=127.0.0.1",
        ca_file.display()
    );
    let out = psql_tls(port, "app", &verify, "SELECT 40 + 2");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(text(&out), "42");

    // prefer still serves plaintext clients.
    let out = psql_tls(port, "app", "sslmode=disable", "SELECT 1");
    assert!(out.status.success(), "{}", output_text(&out));

    // A client that trusts another CA refuses our certificate, clearly.
    let wrong = format!(
        "sslmode=verify-full sslrootcert={} host=localhost hostaddr=127.0.0.1",
        other_file.display()
    );
    let out = psql_tls(port, "app", &wrong, "SELECT 1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate verify failed"), "{err}");

    // Both outcomes are counted on /metrics.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = rt.block_on(metrics(p.pooler.http_port()));
    let ok = sample(&metrics, "pgpool_tls_handshakes_total{result=\"ok\"}");
    let failed = sample(&metrics, "pgpool_tls_handshakes_total{result=\"failed\"}");
    assert!(ok >= 2.0 && failed >= 1.0, "{metrics}");
}

#[test]
fn require_refuses_plaintext_with_28000() {
    let ca = TestCa::new("pgpool-rs test CA");
    let p = start_tls_pooler(&ca, "require", Pooler::builder(cluster()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(p.pooler.try_connect("app", "app", "app-pass"))
        .expect_err("plaintext login must be refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err}");
    assert!(error_message(&err).contains("TLS is required"), "{err}");

    let out = psql_tls(p.pooler.port(), "app", "sslmode=disable", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS is required"),
        "{}",
        output_text(&out)
    );
    let out = psql_tls(p.pooler.port(), "app", "sslmode=require", "SELECT 1");
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn client_channel_binding_with_psql() {
    let ca = TestCa::new("pgpool-rs test CA");
    let p = start_tls_pooler(&ca, "prefer", Pooler::builder(cluster()));
    let out = psql_tls(
        p.pooler.port(),
        "app",
        "sslmode=require channel_binding=require",
        "SELECT 'bound'",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(text(&out), "bound");
    // Over plaintext there is nothing to bind to: libpq refuses, as it should.
    let out = psql_tls(
        p.pooler.port(),
        "app",
        "sslmode=disable channel_binding=require",
        "SELECT 1",
    );
    assert!(!out.status.success(), "{}", output_text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_and_binds_scram() {
    let ca = TestCa::new("pgpool-rs test CA");
    let p = start_tls_pooler(
        &ca,
        "require",
        Pooler::builder(cluster()).set("auth.admin_users", "[\"app\"]"),
    );
    let port = p.pooler.port();

    let mut conn = TlsConn::connect(port, client_config(&ca.pem(), b"postgresql"), Start::Direct)
        .await
        .expect("direct TLS handshake");
    assert_eq!(conn.login("app", "app-pass").await, "SCRAM-SHA-256-PLUS");
    assert_eq!(conn.query("SELECT 'direct'").await, ["direct"]);

    // Many transactions pipelined in one TLS write: none is stalled in rustls's buffer.
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend_from_slice(&common::raw::query(&format!("SELECT {i}")));
    }
    conn.send(&batch).await;
    let values = conn.read_results(300).await;
    assert_eq!(values.len(), 300);
    assert_eq!(values[299], "299");

    // Direct TLS without ALPN "postgresql" is refused after the handshake.
    let mut conn = TlsConn::connect(port, client_config(&ca.pem(), b""), Start::Direct)
        .await
        .expect("handshake without ALPN");
    let (tag, body) = conn.read_message().await.expect("an error");
    assert_eq!(tag, b'E');
    let e = common::raw::parse_error(&body);
    assert!(e.message.contains("ALPN"), "{e:?}");

    // After an SSLRequest, no ALPN is fine.
    let mut conn = TlsConn::connect(port, client_config(&ca.pem(), b""), Start::SslRequest)
        .await
        .expect("SSLRequest handshake");
    conn.login("app", "app-pass").await;
    assert_eq!(conn.query("SELECT 7").await, ["7"]);

    // SHOW CLIENTS tells how that client's connection is encrypted, as PgBouncer does.
    let out = psql_tls(
        port,
        "app",
        "sslmode=require dbname=pgbouncer",
        "SHOW CLIENTS",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(text(&out).contains("|TLSv1.3/TLS_"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timeout_covers_the_tls_handshake() {
    let ca = TestCa::new("pgpool-rs test CA");
    let p = start_tls_pooler(
        &ca,
        "require",
        Pooler::builder(cluster()).set("pool.client_login_timeout", "1"),
    );
    let mut raw = common::raw::RawConn::connect(p.pooler.port()).await;
    raw.send(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await;
    assert_eq!(raw.read_byte().await, Some(b'S'));
    // No ClientHello follows: the pooler must hang up on its own.
    assert!(raw.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_tls_clients() {
    let ca = TestCa::new("first CA");
    let next = TestCa::new("second CA");
    let p = start_tls_pooler(&ca, "require", Pooler::builder(cluster()));
    let port = p.pooler.port();
    let mut held = TlsConn::connect(port, client_config(&ca.pem(), b""), Start::SslRequest)
        .await
        .expect("first handshake");
    held.login("app", "app-pass").await;

    next.issue_localhost().write(p.dir.path(), "pooler");
    assert!(p.cert.exists() && p.key.exists());
    p.pooler.send_signal("HUP");
    let next_cfg = client_config(&next.pem(), b"");
    wait_until(Duration::from_secs(10), "the new certificate", || {
        let cfg = next_cfg.clone();
        async move { TlsConn::connect(port, cfg, Start::SslRequest).await.is_ok() }
    })
    .await;
    // The old certificate is gone for new handshakes...
    assert!(
        TlsConn::connect(port, client_config(&ca.pem(), b""), Start::SslRequest)
            .await
            .is_err()
    );
    // ...and the client connected before the reload still works, on its old session.
    assert_eq!(held.query("SELECT 'still here'").await, ["still here"]);

    // A broken certificate file is rejected; the one in force stays.
    std::fs::write(&p.cert, "not a certificate").unwrap();
    p.pooler.send_signal("HUP");
    wait_until(Duration::from_secs(10), "the rejected reload", || async {
        p.pooler.log().contains("reload rejected")
    })
    .await;
    assert!(
        p.pooler.log().contains("listen.tls_cert"),
        "{}",
        p.pooler.log()
    );
    let mut conn = TlsConn::connect(port, client_config(&next.pem(), b""), Start::SslRequest)
        .await
        .expect("the previous certificate still serves");
    conn.login("app", "app-pass").await;
    assert_eq!(held.query("SELECT 1").await, ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_verify_full_with_channel_binding() {
    let ca = TestCa::new("server CA");
    let other = TestCa::new("unrelated CA");
    let pg = tls_cluster(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path(), "ca.crt");
    let other_file = other.write(dir.path(), "other.crt");
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let builder = |ca: &Path| {
        Pooler::builder(&pg)
            .set("pool.server_tls", "\"verify-full\"")
            .set("pool.server_tls_ca_file", &quoted(ca))
            .set("databases.app.host", "\"localhost\"")
            .set("auth.admin_users", "[\"app\"]")
            .env("RUST_LOG", "info,pgpool_rs::server=debug")
    };

    let pooler = builder(&ca_file).start();
    let client = pooler.connect_app().await;
    assert_eq!(simple_value(&client, "SELECT 'over tls'").await, "over tls");
    let admin = superuser(&pg, "postgres").await;
    let row = admin
        .query_one(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'app' AND a.datname = 'app'",
            &[],
        )
        .await
        .unwrap();
    let (count, all_tls): (i64, Option<bool>) = (row.get(0), row.get(1));
    assert!(count >= 1 && all_tls == Some(true), "{count} {all_tls:?}");
    // The login bound SCRAM to the server's certificate (Postgres verified the binding).
    assert!(
        pooler.log().contains("SCRAM-SHA-256-PLUS"),
        "{}",
        pooler.log()
    );
    // SHOW SERVERS tells how each server connection is encrypted, as PgBouncer does.
    let console = pooler.connect("pgbouncer", "app", "app-pass").await;
    let servers = common::console::show(&console, "SHOW SERVERS").await;
    let row = servers.rows_where("database", "app");
    let tls = servers.get(row[0], "tls").unwrap_or_default();
    assert!(
        tls.starts_with("TLSv1.") && tls.contains("/TLS_") && tls.contains("/ECDH="),
        "SHOW SERVERS tls: {tls:?}"
    );

    // A CA that did not sign the server's certificate: the client hears why.
    let pooler = builder(&other_file).start();
    let err = pooler
        .try_connect("app", "app", "app-pass")
        .await
        .expect_err("untrusted server certificate");
    let msg = error_message(&err);
    assert!(msg.contains("TLS") && msg.contains("certificate"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_require_refuses_a_plaintext_server() {
    let pooler = Pooler::builder(cluster())
        .set("pool.server_tls", "\"require\"")
        .start();
    let err = pooler
        .try_connect("app", "app", "app-pass")
        .await
        .expect_err("server without TLS");
    assert!(
        error_message(&err).contains("does not support TLS"),
        "{err}"
    );
    // prefer falls back to plaintext with the same server.
    let pooler = Pooler::builder(cluster())
        .set("pool.server_tls", "\"prefer\"")
        .start();
    let client = pooler.connect_app().await;
    assert_eq!(simple_value(&client, "SELECT 'plain'").await, "plain");
}

async fn metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    raw
}

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(-1.0)
}
