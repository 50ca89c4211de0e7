//! Transaction pooling through real clients: many clients on few server connections,
//! pipelining, errors inside transactions, COPY both ways, notices, large results,
//! LISTEN/NOTIFY (session mode), and clients or servers that vanish mid-transaction.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::raw::RawConn;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

const CLIENTS: usize = 1000;
const POOL_SIZE: i64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_share_five_server_connections() {
    let pg = cluster();
    let password = create_role(pg, "crowd");
    let pooler = Pooler::builder(pg)
        .set("listen.max_client_conn", "1100")
        .set("pool.default_pool_size", &POOL_SIZE.to_string())
        // md5 keeps 1000 client logins cheap (SCRAM costs 4096 HMACs per login in a
        // debug build); this test is about pooling, auth has its own tests.
        .set("auth.type", "\"md5\"")
        .userlist_line(&userlist_entry("crowd"))
        .start();

    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let done = done.clone();
        tokio::spawn(async move {
            let client = superuser(pg, "postgres").await;
            let mut max = 0;
            while !done.load(Ordering::Relaxed) {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = 'app' AND usename = 'crowd'",
                        &[],
                    )
                    .await
                    .unwrap();
                max = max.max(row.get::<_, i64>(0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    };

    let cfg = pooler.config("app", "crowd", &password);
    let all_connected = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let connecting = Arc::new(tokio::sync::Semaphore::new(50));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (cfg, all_connected, connecting, ok) = (
            cfg.clone(),
            all_connected.clone(),
            connecting.clone(),
            ok.clone(),
        );
        tasks.spawn(async move {
            let client = {
                let _permit = connecting.acquire().await.unwrap();
                connect_with(&cfg).await
            };
            // Everyone waits here, so all 1000 clients are connected at the same time.
            all_connected.wait().await;
            let client = client.map_err(|e| format!("client {i} connect: {e}"))?;
            for round in 0..3 {
                let run = async {
                    client.simple_query("SELECT 1").await?;
                    client.batch_execute("BEGIN").await?;
                    let got = first_value(&client.simple_query(&format!("SELECT {i}")).await?);
                    assert_eq!(got.as_deref(), Some(i.to_string().as_str()));
                    if i % 4 == round {
                        // Hold the server connection across a pause inside the transaction.
                        client.simple_query("SELECT pg_sleep(0.01)").await?;
                    }
                    client.batch_execute("COMMIT").await
                };
                run.await
                    .map_err(|e| format!("client {i} round {round}: {e}"))?;
            }
            ok.fetch_add(1, Ordering::Relaxed);
            Ok::<(), String>(())
        });
    }
    let mut errors = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result.unwrap() {
                errors.push(e);
            }
        }
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let max = monitor.await.unwrap();
    assert!(joined.is_ok(), "clients did not finish in 180 s");
    assert!(
        errors.is_empty(),
        "{} clients failed, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(ok.load(Ordering::Relaxed), CLIENTS);
    assert!(max >= 1, "the monitor never saw a server connection");
    assert!(
        max <= POOL_SIZE,
        "{max} server connections for a pool of {POOL_SIZE}"
    );
}

#[tokio::test]
async fn pipelined_queries_come_back_in_order() {
    let pooler = Pooler::start(cluster());
    let client = pooler.connect_app().await;
    let queries = (0..20i32).map(|i| {
        let client = &client;
        async move {
            let rows = client
                .query_typed("SELECT $1::int4 * 2", &[(&i, Type::INT4)])
                .await?;
            Ok::<i32, tokio_postgres::Error>(rows[0].get(0))
        }
    });
    let results = futures_util::future::join_all(queries).await;
    for (i, result) in (0..).zip(results) {
        assert_eq!(result.unwrap(), i * 2);
    }

    // A failing query in the middle of a pipeline fails alone.
    let (a, b, c) = tokio::join!(
        client.query_typed("SELECT 1::int4", &[]),
        client.query_typed("SELECT 1/0", &[]),
        client.simple_query("SELECT 3"),
    );
    assert_eq!(a.unwrap()[0].get::<_, i32>(0), 1);
    assert_eq!(sqlstate(&b.unwrap_err()).as_deref(), Some("22012"));
    assert_eq!(first_value(&c.unwrap()).as_deref(), Some("3"));

    // A whole transaction sent without waiting for the answers.
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS pipe_t (x int)")
        .await
        .unwrap();
    let (begin, insert, commit) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query_typed(
            "INSERT INTO pipe_t VALUES ($1) RETURNING x",
            &[(&7i32, Type::INT4)]
        ),
        client.batch_execute("COMMIT"),
    );
    begin.unwrap();
    assert_eq!(insert.unwrap()[0].get::<_, i32>(0), 7);
    commit.unwrap();
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM pipe_t").await,
        "1"
    );
}

#[tokio::test]
async fn error_inside_transaction_then_rollback() {
    let pooler = Pooler::start(cluster());
    let client = pooler.connect_app().await;
    client.batch_execute("BEGIN").await.unwrap();
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22012"));
    // Status E: everything fails until the transaction ends.
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
    // And the same through the extended protocol.
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    assert!(tx.query_typed("SELECT 1/0", &[]).await.is_err());
    let err = tx.query_typed("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    tx.rollback().await.unwrap();
    assert_eq!(simple_value(&client, "SELECT 3").await, "3");
}

#[tokio::test]
async fn copy_in_and_out_inside_a_transaction() {
    let pooler = Pooler::start(cluster());
    let mut client = pooler.connect_app().await;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS copy_t (id int, name text)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let sink = tx.copy_in("COPY copy_t FROM STDIN").await.unwrap();
    let mut sink = std::pin::pin!(sink);
    let data: String = (1..=1000).map(|i| format!("{i}\tname {i}\n")).collect();
    sink.send(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 1000);

    let stream = tx.copy_out("COPY copy_t TO STDOUT").await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(out).unwrap(), data);
    tx.commit().await.unwrap();
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM copy_t").await,
        "1000"
    );
}

#[tokio::test]
async fn copy_in_and_out_with_simple_query() {
    let pooler = Pooler::start(cluster());
    let mut raw = RawConn::connect(pooler.port()).await;
    raw.login("app", "app", password_of("app"), &[]).await;
    raw.simple_query("CREATE TABLE IF NOT EXISTS copy_raw (id int, name text)")
        .await;

    raw.send(&common::raw::query("COPY copy_raw FROM STDIN"))
        .await;
    let (tag, _) = raw.read_message().await.unwrap();
    assert_eq!(tag, b'G', "CopyInResponse");
    raw.send(&common::raw::message(b'd', b"1\tone\n2\ttwo\n"))
        .await;
    raw.send(&common::raw::message(b'd', b"3\tthree\n")).await;
    raw.send(&common::raw::message(b'c', b"")).await;
    let messages = raw.read_until_ready().await;
    assert!(messages
        .iter()
        .any(|(t, b)| *t == b'C' && b.starts_with(b"COPY 3")));

    let messages = raw.simple_query("COPY copy_raw TO STDOUT").await;
    let tags: Vec<u8> = messages.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags.first(), Some(&b'H'), "CopyOutResponse first: {tags:?}");
    let data: Vec<u8> = messages
        .iter()
        .filter(|(t, _)| *t == b'd')
        .flat_map(|(_, b)| b.to_vec())
        .collect();
    assert_eq!(data, b"1\tone\n2\ttwo\n3\tthree\n");
    assert!(tags.ends_with(b"cCZ"), "{tags:?}");
}

#[tokio::test]
async fn notices_reach_the_client() {
    let pooler = Pooler::start(cluster());
    let cfg = pooler.config("app", "app", password_of("app"));
    let (client, mut messages) = connect_with_messages(&cfg).await;
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$")
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .expect("a notice within 5 s")
        .unwrap();
    match message {
        AsyncMessage::Notice(notice) => assert_eq!(notice.message(), "hello from plpgsql"),
        other => panic!("expected a notice, got {other:?}"),
    }
}

#[tokio::test]
async fn large_result_streams_completely() {
    let pooler = Pooler::start(cluster());
    let client = pooler.connect_app().await;
    let stream = client
        .simple_query_raw("SELECT i, repeat('x', 1000) FROM generate_series(1, 200000) i")
        .await
        .unwrap();
    let mut stream = std::pin::pin!(stream);
    let (mut rows, mut bytes) = (0i64, 0usize);
    while let Some(message) = stream.next().await {
        if let SimpleQueryMessage::Row(row) = message.unwrap() {
            rows += 1;
            assert_eq!(row.get(0).unwrap().parse::<i64>().unwrap(), rows);
            bytes += row.get(1).unwrap().len();
        }
    }
    assert_eq!(rows, 200_000);
    assert_eq!(bytes, 200_000 * 1000);
    assert_eq!(simple_value(&client, "SELECT 'after'").await, "after");
}

#[tokio::test]
async fn listen_notify_in_session_mode() {
    let pooler = Pooler::builder(cluster())
        .set("pool.mode", "\"session\"")
        .start();
    let cfg = pooler.config("app", "app", password_of("app"));
    let (listener, mut messages) = connect_with_messages(&cfg).await;
    listener.batch_execute("LISTEN tm_chan").await.unwrap();
    let notifier = pooler.connect_app().await;
    notifier
        .batch_execute("NOTIFY tm_chan, 'payload 1'")
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .expect("a notification within 5 s")
        .unwrap();
    match message {
        AsyncMessage::Notification(n) => {
            assert_eq!(n.channel(), "tm_chan");
            assert_eq!(n.payload(), "payload 1");
        }
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test]
async fn client_gone_mid_transaction_is_rolled_back() {
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .start();
    let a = pooler.connect_app().await;
    a.batch_execute("CREATE TABLE IF NOT EXISTS disc_t (x int)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; INSERT INTO disc_t VALUES (1)")
        .await
        .unwrap();
    drop(a);

    // B gets the only server connection: A's, rolled back (or a new one if the pooler
    // chose to close A's), but never inside A's transaction.
    let b = pooler.connect_app().await;
    assert_eq!(simple_value(&b, "SELECT count(*) FROM disc_t").await, "0");
    // Inside A's transaction this would be A's xid (its INSERT assigned one).
    let xid = "SELECT pg_current_xact_id_if_assigned() IS NULL";
    assert_eq!(simple_value(&b, xid).await, "t");
    let direct = superuser(cluster(), "app").await;
    let row = direct
        .query_one("SELECT count(*) FROM disc_t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "the INSERT must not be committed");
}

#[tokio::test]
async fn server_dying_mid_transaction_ends_only_that_client() {
    let pg = cluster();
    let pooler = Pooler::builder(pg)
        .set("databases.app.pool_size", "3")
        .start();
    let a = pooler.connect_app().await;
    let b = pooler.connect_app().await;
    a.batch_execute("BEGIN").await.unwrap();
    let pid: i32 = simple_value(&a, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();
    terminate_backend(pg, pid).await;

    let err = a
        .simple_query("SELECT 1")
        .await
        .expect_err("the server is gone");
    if let Some(code) = sqlstate(&err) {
        assert!(
            ["57P01", "08006", "08P01", "08003"].contains(&code.as_str()),
            "{err}"
        );
    }
    wait_until(
        Duration::from_secs(5),
        "client A's connection to end",
        || async { a.is_closed() },
    )
    .await;

    assert_eq!(simple_value(&b, "SELECT 1").await, "1");
    let c = pooler.connect_app().await;
    assert_eq!(simple_value(&c, "SELECT 2").await, "2");
    assert_eq!(simple_value(&b, "SELECT 3").await, "3");
}
