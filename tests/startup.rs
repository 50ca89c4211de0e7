//! The startup phase and connection-level protocol: max_client_conn, unknown databases,
//! SSLRequest/GSSENCRequest, login timeout, malformed and oversized packets, protocol
//! negotiation, and CancelRequest.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawConn};
use common::*;
use tokio_postgres::NoTls;

/// Expects a FATAL with `code` and then the connection to be closed.
async fn expect_fatal(conn: &mut RawConn, code: &str) -> raw::ErrorFields {
    let err = conn.expect_error().await;
    assert_eq!(err.severity, "FATAL", "{err:?}");
    assert_eq!(err.code, code, "{err:?}");
    assert!(
        conn.closed_within(Duration::from_secs(5)).await,
        "connection left open after {err:?}"
    );
    err
}

#[tokio::test]
async fn client_over_max_client_conn_gets_53300() {
    let pooler = Pooler::builder(cluster())
        .set("listen.max_client_conn", "3")
        .start();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(pooler.connect_app().await);
    }
    let err = pooler
        .try_connect("app", "app", password_of("app"))
        .await
        .expect_err("the 4th client must be refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    assert_eq!(
        err.as_db_error().map(|e| e.severity()),
        Some("FATAL"),
        "{err}"
    );

    // A freed slot can be used again; the others were not disturbed.
    drop(clients.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let fourth = loop {
        match pooler.try_connect("app", "app", password_of("app")).await {
            Ok(client) => break client,
            Err(e) if Instant::now() > deadline => panic!("slot not freed: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(simple_value(&fourth, "SELECT 1").await, "1");
    for client in &clients {
        assert_eq!(simple_value(client, "SELECT 1").await, "1");
    }
}

#[tokio::test]
async fn unknown_database_is_3d000() {
    let pooler = Pooler::start(cluster());
    let err = pooler
        .try_connect("no_such_db", "app", password_of("app"))
        .await
        .expect_err("unknown database must be refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err}");
}

#[tokio::test]
async fn ssl_and_gssenc_requests_are_declined_then_login_works() {
    let pooler = Pooler::start(cluster());
    for code in [raw::SSL_REQUEST, raw::GSSENC_REQUEST] {
        let mut conn = RawConn::connect(pooler.port()).await;
        conn.send(&raw::startup_packet(code, &[])).await;
        assert_eq!(conn.read_byte().await, Some(b'N'), "answer to {code}");
        let messages = conn.login("app", "app", password_of("app"), &[]).await;
        assert_eq!(messages.last().map(|m| m.0), Some(b'Z'));
        let result = conn.simple_query("SELECT 41 + 1").await;
        assert!(result.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"42")));
    }
}

#[tokio::test]
async fn silent_client_hits_client_login_timeout() {
    let pooler = Pooler::builder(cluster())
        .set("pool.client_login_timeout", "1")
        .start();
    let started = Instant::now();
    let mut conn = RawConn::connect(pooler.port()).await;
    let err = expect_fatal(&mut conn, "08P01").await;
    assert!(err.message.contains("client_login_timeout"), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        simple_value(&pooler.connect_app().await, "SELECT 1").await,
        "1"
    );
}

#[tokio::test]
async fn malformed_startup_packets_get_08p01() {
    let pooler = Pooler::start(cluster());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "http request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("length below 8", vec![0, 0, 0, 4, 0, 3, 0, 0]),
        ("length over 10000", {
            let mut p = 10001i32.to_be_bytes().to_vec();
            p.extend_from_slice(&raw::PROTOCOL_3_0.to_be_bytes());
            p
        }),
        (
            "protocol 2.0",
            raw::startup_packet(2 << 16, &[("user", "app")]),
        ),
        (
            "protocol 4.0",
            raw::startup_packet(4 << 16, &[("user", "app")]),
        ),
        (
            "unknown request code",
            raw::startup_packet(1234 << 16 | 5678, &[]),
        ),
    ];
    for (what, packet) in cases {
        let mut conn = RawConn::connect(pooler.port()).await;
        conn.send(&packet).await;
        let err = conn.expect_error().await;
        assert_eq!(
            (err.severity.as_str(), err.code.as_str()),
            ("FATAL", "08P01"),
            "{what}: {err:?}"
        );
        assert!(
            conn.closed_within(Duration::from_secs(5)).await,
            "{what}: left open"
        );
    }
    // Nothing else was affected.
    assert_eq!(
        simple_value(&pooler.connect_app().await, "SELECT 1").await,
        "1"
    );
}

#[tokio::test]
async fn message_over_1_gib_after_login_gets_08p01() {
    let pooler = Pooler::start(cluster());
    let bystander = pooler.connect_app().await;
    let mut conn = RawConn::connect(pooler.port()).await;
    conn.login("app", "app", password_of("app"), &[]).await;
    let mut header = vec![b'Q'];
    header.extend_from_slice(&((1i32 << 30) + 5).to_be_bytes());
    header.extend_from_slice(b"SELECT 1");
    conn.send(&header).await;
    expect_fatal(&mut conn, "08P01").await;
    assert_eq!(simple_value(&bystander, "SELECT 1").await, "1");
    assert_eq!(
        simple_value(&pooler.connect_app().await, "SELECT 2").await,
        "2"
    );
}

#[tokio::test]
async fn protocol_3_1_is_negotiated_down() {
    let pooler = Pooler::start(cluster());
    let mut conn = RawConn::connect(pooler.port()).await;
    conn.send(&raw::startup_packet(
        raw::PROTOCOL_3_0 + 1,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    let messages = conn.authenticate("app", password_of("app")).await;
    let (_, body) = messages
        .iter()
        .find(|(t, _)| *t == b'v')
        .expect("NegotiateProtocolVersion");
    // PostgreSQL sends PG_PROTOCOL_LATEST (3.0 as a full version code), not a bare minor
    // number; libpq 18 checks the major number of this field.
    assert_eq!(
        i32::from_be_bytes(body[..4].try_into().unwrap()),
        raw::PROTOCOL_3_0
    );
    let result = conn.simple_query("SELECT 1").await;
    assert!(result.iter().any(|(t, _)| *t == b'D'));
}

#[tokio::test]
async fn pq_startup_option_is_reported_unrecognized() {
    let pooler = Pooler::start(cluster());
    let mut conn = RawConn::connect(pooler.port()).await;
    let messages = conn
        .login("app", "app", password_of("app"), &[("_pq_.foo", "bar")])
        .await;
    let (_, body) = messages
        .iter()
        .find(|(t, _)| *t == b'v')
        .expect("NegotiateProtocolVersion");
    assert_eq!(
        i32::from_be_bytes(body[..4].try_into().unwrap()),
        raw::PROTOCOL_3_0,
        "newest version, as PostgreSQL sends it"
    );
    assert_eq!(
        i32::from_be_bytes(body[4..8].try_into().unwrap()),
        1,
        "one option"
    );
    assert_eq!(&body[8..], b"_pq_.foo\0");
    let result = conn.simple_query("SELECT 1").await;
    assert!(result.iter().any(|(t, _)| *t == b'D'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_cancels_only_that_query() {
    let pg = cluster();
    let pooler = Pooler::start(pg);
    let a = pooler.connect_app().await;
    let b = pooler.connect_app().await;
    let a_token = a.cancel_token();
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let result = a.simple_query("SELECT pg_sleep(30) /* cancel-me */").await;
        (result, started.elapsed())
    });
    let steady =
        tokio::spawn(async move { b.simple_query("SELECT pg_sleep(2) /* keep-me */").await });
    let direct = superuser(pg, "postgres").await;
    wait_until(Duration::from_secs(10), "both sleeps to run", || async {
        let row = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND (query LIKE '%cancel-me%' OR query LIKE '%keep-me%') \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) == 2
    })
    .await;

    // A CancelRequest with a key nobody has cancels nothing.
    let mut bogus = RawConn::connect(pooler.port()).await;
    bogus.send(&raw::cancel_packet(12345, 67890)).await;
    assert!(bogus.closed_within(Duration::from_secs(5)).await);

    a_token.cancel_query(NoTls).await.unwrap();
    let (result, elapsed) = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the cancelled query must end within 10 s")
        .unwrap();
    let err = result.expect_err("the sleep must be cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(elapsed < Duration::from_secs(10), "cancel took {elapsed:?}");
    steady
        .await
        .unwrap()
        .expect("the other client's query must not be cancelled");
}

/// The same with raw sockets: the key from BackendKeyData, and a cancel connection that
/// stays open until the pooler closes it (PgBouncer before 1.21 drops a cancel whose
/// sender half-closes early, as tokio-postgres does, so this variant also runs there).
#[tokio::test]
async fn raw_cancel_request_with_the_login_key() {
    let pooler = Pooler::start(cluster());
    let mut a = RawConn::connect(pooler.port()).await;
    let login = a.login("app", "app", password_of("app"), &[]).await;
    let (pid, secret) = raw::backend_key(&login).expect("BackendKeyData");
    a.send(&raw::query("SELECT pg_sleep(30)")).await;
    // The query must have reached a server before the cancel can hit it.
    let direct = superuser(cluster(), "postgres").await;
    wait_until(Duration::from_secs(10), "the sleep to run", || async {
        let row = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query = 'SELECT pg_sleep(30)'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) >= 1
    })
    .await;
    let started = Instant::now();
    let mut cancel = RawConn::connect(pooler.port()).await;
    cancel.send(&raw::cancel_packet(pid, secret)).await;
    let err = a.expect_error().await;
    assert_eq!(err.code, "57014", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(cancel.closed_within(Duration::from_secs(5)).await);
    let rest = a.read_until_ready().await;
    assert_eq!(rest.last().map(|m| m.0), Some(b'Z'));
}
