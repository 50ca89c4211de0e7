//! Protocol-level named prepared statements in transaction mode (`max_prepared_statements`,
//! issue 4): a client prepares once and executes on whatever server connection serves it;
//! names are private to a client; Close, errors at Parse time, pipelines, errors that skip
//! to Sync, eviction (a bounded number per server connection) and resets that deallocate
//! everything are all invisible to the client, which sees exactly the replies PostgreSQL
//! would have sent, in order. Through tokio-postgres, pgbench `-M prepared` and raw bytes.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use common::extended::{
    bind, close_statement, column0, describe, describe_portal, describe_statement, errors,
    exchange, execute, parse, run, sync, tags,
};
use common::raw::RawConn;
use common::*;
use tokio_postgres::Client;

/// Fails a test whose replies stop coming (a lost or swallowed message) instead of hanging.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(45), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 45 s (a reply went missing?)"))
}

/// A transaction-mode pooler with `pool_size` server connections for database `app`.
fn pool_of(pool_size: u32) -> Pooler {
    Pooler::builder(cluster())
        .set("databases.app.pool_size", &pool_size.to_string())
        .start()
}

/// The backend pid serving `client`'s next transaction.
async fn pid_of(client: &Client) -> i32 {
    simple_value(client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .expect("a pid")
}

/// The backend pid serving a raw client's next transaction.
async fn raw_pid(raw: &mut RawConn) -> i32 {
    let messages = raw.simple_query("SELECT pg_backend_pid()").await;
    column0(&messages)
        .first()
        .unwrap_or_else(|| panic!("no pid: {}", describe(&messages)))
        .parse()
        .expect("a pid")
}

/// A transaction by another client that leaves session state behind, so the pooler runs
/// its reset query (DISCARD ALL) on release, and that deallocates every statement on the
/// server itself too (DEALLOCATE ALL; so even with no reset, nothing survives): whatever
/// a client prepared before must be prepared again on this server connection.
async fn dirty_the_connection(other: &Client) {
    other
        .batch_execute("SET work_mem = '5MB'; DEALLOCATE ALL")
        .await
        .expect("SET + DEALLOCATE ALL by the other client");
}

/// Sends `parts` (one write) and asserts the reply tags through `syncs` ReadyForQuery.
async fn expect_tags(
    raw: &mut RawConn,
    parts: &[Vec<u8>],
    syncs: usize,
    expected: &str,
    what: &str,
) -> Vec<(u8, bytes::Bytes)> {
    let messages = exchange(raw, parts, syncs).await;
    assert_eq!(
        tags(&messages),
        expected,
        "{what}: wrong replies: {}",
        describe(&messages)
    );
    messages
}

// ---------------------------------------------------------------------------------------
// tokio-postgres: prepare once, execute anywhere

#[tokio::test]
async fn statement_follows_its_client_to_another_server_connection() {
    let pooler = pool_of(2);
    within("follow", async {
        let x = pooler.connect_app().await;
        let y = pooler.connect_app().await;
        let z = pooler.connect_app().await;
        let stmt = x
            .prepare("SELECT $1::int + 1, pg_backend_pid()")
            .await
            .expect("prepare");
        let exec = |i: i32| {
            let (x, stmt) = (&x, &stmt);
            async move {
                let row = x
                    .query_one(stmt, &[&i])
                    .await
                    .unwrap_or_else(|e| panic!("execution {i} of the prepared statement: {e}"));
                assert_eq!(row.get::<_, i32>(0), i + 1);
                row.get::<_, i32>(1)
            }
        };
        exec(0).await;

        // Y and Z each hold one of the two server connections inside a transaction.
        y.batch_execute("BEGIN").await.unwrap();
        let py = pid_of(&y).await;
        z.batch_execute("BEGIN").await.unwrap();
        let pz = pid_of(&z).await;
        assert_ne!(py, pz, "two open transactions on a pool of 2");

        // Free only Y's connection: X's next execution can only run there.
        y.batch_execute("COMMIT").await.unwrap();
        assert_eq!(exec(1).await, py, "X must run on the only idle connection");
        // Now hold that one and free Z's: X must move over.
        y.batch_execute("BEGIN").await.unwrap();
        assert_eq!(pid_of(&y).await, py);
        z.batch_execute("COMMIT").await.unwrap();
        assert_eq!(exec(2).await, pz, "X must run on the only idle connection");
        y.batch_execute("COMMIT").await.unwrap();

        // And back and forth a few more times with both free.
        for i in 3..20 {
            exec(i).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_on_two_server_connections() {
    const CLIENTS: i32 = 20;
    const ROUNDS: i32 = 30;
    let pooler = pool_of(2);
    let cfg = pooler.config("app", "app", password_of("app"));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let client = connect_with(&cfg)
                .await
                .map_err(|e| format!("client {c} connect: {e}"))?;
            // Even clients share one text; odd clients each have their own.
            let add = if c % 2 == 0 { 1000 } else { c };
            let sql = format!("SELECT $1::int + {add}, pg_backend_pid()");
            let stmt = client
                .prepare(&sql)
                .await
                .map_err(|e| format!("client {c} prepare: {e}"))?;
            let mut pids = BTreeSet::new();
            for r in 0..ROUNDS {
                let row = client
                    .query_one(&stmt, &[&r])
                    .await
                    .map_err(|e| format!("client {c} round {r}: {e}"))?;
                let got: i32 = row.get(0);
                if got != r + add {
                    return Err(format!("client {c} round {r}: got {got}, want {}", r + add));
                }
                pids.insert(row.get::<_, i32>(1));
                if r % 10 == 5 {
                    // Some simple-protocol traffic in between.
                    client
                        .simple_query("SELECT 1")
                        .await
                        .map_err(|e| format!("client {c} simple: {e}"))?;
                }
            }
            Ok::<BTreeSet<i32>, String>(pids)
        });
    }
    let mut per_client = Vec::new();
    let mut errors = Vec::new();
    within("twenty clients", async {
        while let Some(result) = tasks.join_next().await {
            match result.expect("task") {
                Ok(pids) => per_client.push(pids),
                Err(e) => errors.push(e),
            }
        }
    })
    .await;
    assert!(
        errors.is_empty(),
        "{} of {CLIENTS} clients failed, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let all: BTreeSet<i32> = per_client.iter().flatten().copied().collect();
    assert!(all.len() <= 2, "{} backends for a pool of 2", all.len());
    assert!(
        per_client.iter().any(|pids| pids.len() > 1),
        "no client's statement ever ran on a second server connection: {per_client:?}"
    );
}

#[tokio::test]
async fn one_shot_statements_from_two_clients_on_one_server_connection() {
    // `client.query(sql, ..)` prepares a new named statement, executes it in a second
    // round trip, then closes it: three transactions per query, interleaved by two clients.
    let pooler = pool_of(1);
    within("one-shot statements", async {
        let a = pooler.connect_app().await;
        let b = pooler.connect_app().await;
        let work = |client: Client, k: i32| async move {
            for i in 0..40i32 {
                // A text of its own for this client, then one both clients use.
                let sql = if i % 3 == 0 {
                    "SELECT $1::int * 1".to_string()
                } else {
                    format!("SELECT $1::int * {k}")
                };
                let want = if i % 3 == 0 { i } else { i * k };
                let rows = client
                    .query(sql.as_str(), &[&i])
                    .await
                    .map_err(|e| format!("k={k} i={i}: {}", error_message(&e)))?;
                let got: i32 = rows[0].get(0);
                if got != want {
                    return Err(format!("k={k} i={i}: got {got}, want {want}"));
                }
            }
            Ok::<Client, String>(client)
        };
        let (ra, rb) = tokio::join!(work(a, 3), work(b, 7));
        let a = ra.unwrap();
        let b = rb.unwrap();
        assert_eq!(pid_of(&a).await, pid_of(&b).await, "one server connection");
    })
    .await;
}

#[tokio::test]
async fn two_clients_prepare_the_same_text() {
    let pooler = pool_of(1);
    within("same text", async {
        let a = pooler.connect_app().await;
        let b = pooler.connect_app().await;
        let sql = "SELECT $1::text || '-same'";
        let sa = a.prepare(sql).await.expect("A prepares");
        let sb = b.prepare(sql).await.expect("B prepares");
        let c = pooler.connect_app().await;
        for i in 0..10 {
            if i == 5 {
                dirty_the_connection(&c).await;
            }
            let va = format!("a{i}");
            let vb = format!("b{i}");
            let ra: String = a.query_one(&sa, &[&va]).await.unwrap().get(0);
            let rb: String = b.query_one(&sb, &[&vb]).await.unwrap().get(0);
            assert_eq!(ra, format!("a{i}-same"));
            assert_eq!(rb, format!("b{i}-same"));
        }
        // A closes its statement (tokio-postgres sends Close on drop): B's is unaffected.
        drop(sa);
        for i in 0..5 {
            let vb = format!("b{i}");
            let rb: String = b
                .query_one(&sb, &[&vb])
                .await
                .expect("B's statement after A closed the same text")
                .get(0);
            assert_eq!(rb, format!("b{i}-same"));
        }
        // And A can prepare it again.
        let sa = a.prepare(sql).await.expect("A prepares again");
        let ra: String = a.query_one(&sa, &[&"again"]).await.unwrap().get(0);
        assert_eq!(ra, "again-same");
    })
    .await;
}

#[tokio::test]
async fn statements_survive_the_reset_query() {
    // A's statement is deallocated on the server by every reset (DISCARD ALL) and by
    // client-issued DEALLOCATE ALL / DISCARD ALL; the pooler re-prepares it.
    let pooler = pool_of(1);
    within("reset", async {
        let a = pooler.connect_app().await;
        let b = pooler.connect_app().await;
        let st = a.prepare("SELECT $1::int + 7").await.expect("prepare");
        let check = |i: i32, after: &'static str| {
            let (a, st) = (&a, &st);
            async move {
                let row = a
                    .query_one(st, &[&i])
                    .await
                    .unwrap_or_else(|e| panic!("execute after {after}: {e}"));
                assert_eq!(row.get::<_, i32>(0), i + 7, "after {after}");
            }
        };
        check(0, "prepare").await;
        a.batch_execute("SET work_mem = '5MB'").await.unwrap();
        check(1, "A's own dirty transaction").await;
        dirty_the_connection(&b).await;
        check(2, "B's dirty transaction").await;
        b.batch_execute("DEALLOCATE ALL").await.unwrap();
        check(3, "B's DEALLOCATE ALL").await;
        b.batch_execute("DISCARD ALL").await.unwrap();
        check(4, "B's DISCARD ALL").await;
    })
    .await;
}

#[tokio::test]
async fn client_deallocate_all_is_noticed_without_a_reset_query() {
    // With no reset query, only the pooler's own bookkeeping can notice that a client's
    // DEALLOCATE ALL / DISCARD ALL dropped every statement on that server connection.
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .set("pool.server_reset_query", "\"\"")
        .start();
    within("deallocate all", async {
        let a = pooler.connect_app().await;
        let b = pooler.connect_app().await;
        let st = a.prepare("SELECT $1::int * 11").await.expect("prepare");
        let row = a.query_one(&st, &[&1]).await.expect("first execution");
        assert_eq!(row.get::<_, i32>(0), 11);
        for (i, sql) in (2..).zip(["DEALLOCATE ALL", "DISCARD ALL", "DEALLOCATE ALL"]) {
            b.batch_execute(sql).await.unwrap();
            let row = a
                .query_one(&st, &[&i])
                .await
                .unwrap_or_else(|e| panic!("execute after B's {sql}: {e}"));
            assert_eq!(row.get::<_, i32>(0), i * 11, "after B's {sql}");
        }
    })
    .await;
}

#[tokio::test]
async fn statements_work_when_every_transaction_resets() {
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .set("pool.server_reset_query_always", "true")
        .start();
    within("reset always", async {
        let a = pooler.connect_app().await;
        let b = pooler.connect_app().await;
        let sa = a.prepare("SELECT $1::int - 1").await.expect("A prepares");
        let sb = b.prepare("SELECT $1::int - 2").await.expect("B prepares");
        for i in 0..15 {
            let ra: i32 = a.query_one(&sa, &[&i]).await.unwrap().get(0);
            let rb: i32 = b.query_one(&sb, &[&i]).await.unwrap().get(0);
            assert_eq!((ra, rb), (i - 1, i - 2));
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Errors and pipelines through tokio-postgres

#[tokio::test]
async fn parse_error_reaches_the_client_and_the_connection_stays_usable() {
    let pooler = pool_of(1);
    within("parse error", async {
        let c = pooler.connect_app().await;
        let err = c.prepare("SELEC 1").await.expect_err("a syntax error");
        assert_eq!(sqlstate(&err).as_deref(), Some("42601"), "{err}");
        let err = c
            .prepare("SELECT * FROM prepared_no_such_table")
            .await
            .expect_err("an unknown table");
        assert_eq!(sqlstate(&err).as_deref(), Some("42P01"), "{err}");
        let st = c
            .prepare("SELECT $1::int + 2")
            .await
            .expect("valid prepare");
        let row = c.query_one(&st, &[&40]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
        assert_eq!(simple_value(&c, "SELECT 'still fine'").await, "still fine");
    })
    .await;
}

#[tokio::test]
async fn pipelined_executions_on_one_server_connection() {
    let pooler = pool_of(1);
    within("pipeline", async {
        let a = pooler.connect_app().await;
        let b = pooler.connect_app().await;
        let s1 = a.prepare("SELECT $1::int * 2").await.unwrap();
        let s2 = a.prepare("SELECT $1::text || '!'").await.unwrap();

        // 40 executions sent without waiting, one Sync each.
        let queries = (0..40i32).map(|i| {
            let (a, s1, s2) = (&a, &s1, &s2);
            async move {
                if i % 2 == 0 {
                    let row = a.query_one(s1, &[&i]).await?;
                    Ok::<String, tokio_postgres::Error>(row.get::<_, i32>(0).to_string())
                } else {
                    let row = a.query_one(s2, &[&i.to_string()]).await?;
                    Ok(row.get::<_, String>(0))
                }
            }
        });
        // Meanwhile B keeps making the server connection dirty, so A's statements must
        // be prepared again, in the middle of A's pipeline.
        let noisy = async {
            for i in 0..20 {
                b.batch_execute(&format!("SET work_mem = '{}MB'; DEALLOCATE ALL", 4 + i % 3))
                    .await
                    .expect("B's SET");
            }
        };
        dirty_the_connection(&b).await; // at least once before the pipeline starts
        let (results, ()) = tokio::join!(futures_util::future::join_all(queries), noisy);
        for (i, result) in (0i32..).zip(results) {
            let want = if i % 2 == 0 {
                (i * 2).to_string()
            } else {
                format!("{i}!")
            };
            assert_eq!(
                result.unwrap_or_else(|e| panic!("pipelined query {i}: {e}")),
                want
            );
        }

        // Prepares pipelined too, then their executions.
        let texts: Vec<String> = (0..5).map(|k| format!("SELECT $1::int + {k}0")).collect();
        let prepares = texts.iter().map(|t| a.prepare(t));
        let stmts: Vec<_> = futures_util::future::join_all(prepares)
            .await
            .into_iter()
            .map(|r| r.expect("pipelined prepare"))
            .collect();
        dirty_the_connection(&b).await;
        let runs = (0..20i32).map(|i| {
            let (a, st) = (&a, &stmts[(i % 5) as usize]);
            async move { a.query_one(st, &[&i]).await }
        });
        for (i, r) in (0i32..).zip(futures_util::future::join_all(runs).await) {
            assert_eq!(r.unwrap().get::<_, i32>(0), i + (i % 5) * 10);
        }
    })
    .await;
}

#[tokio::test]
async fn error_in_the_middle_of_a_pipeline() {
    let pooler = pool_of(1);
    within("pipeline error", async {
        let c = pooler.connect_app().await;
        let other = pooler.connect_app().await;
        let div = c.prepare("SELECT 10 / $1::int").await.unwrap();
        dirty_the_connection(&other).await;
        let (r1, r2, r3, r4) = tokio::join!(
            c.query_one(&div, &[&1]),
            c.query_one(&div, &[&0]),
            c.query_one(&div, &[&2]),
            c.simple_query("SELECT 3"),
        );
        assert_eq!(r1.unwrap().get::<_, i32>(0), 10);
        assert_eq!(sqlstate(&r2.unwrap_err()).as_deref(), Some("22012"));
        assert_eq!(r3.unwrap().get::<_, i32>(0), 5, "own Sync: unaffected");
        assert_eq!(first_value(&r4.unwrap()).as_deref(), Some("3"));

        // Inside a transaction the error aborts the rest until COMMIT (which rolls back).
        dirty_the_connection(&other).await;
        let (begin, e1, e2, commit) = tokio::join!(
            c.batch_execute("BEGIN"),
            c.query_one(&div, &[&0]),
            c.query_one(&div, &[&1]),
            c.batch_execute("COMMIT"),
        );
        begin.unwrap();
        assert_eq!(sqlstate(&e1.unwrap_err()).as_deref(), Some("22012"));
        assert_eq!(sqlstate(&e2.unwrap_err()).as_deref(), Some("25P02"));
        commit.unwrap();

        // A prepare that fails, pipelined with an execution that works.
        dirty_the_connection(&other).await;
        let (bad, good) = tokio::join!(c.prepare("SELECT 1 +"), c.query_one(&div, &[&10]));
        assert_eq!(sqlstate(&bad.unwrap_err()).as_deref(), Some("42601"));
        assert_eq!(good.unwrap().get::<_, i32>(0), 1);

        // Usable afterwards, statement included.
        assert_eq!(c.query_one(&div, &[&5]).await.unwrap().get::<_, i32>(0), 2);
        assert_eq!(simple_value(&c, "SELECT 'ok'").await, "ok");
    })
    .await;
}

/// One write mixing messages the pooler passes on unchanged (written to the server
/// straight from the client's buffer) with ones it rewrites or answers itself: the
/// server must still get them, and the client their replies, in the order sent.
#[tokio::test]
async fn unchanged_and_rewritten_messages_in_one_write_keep_their_order() {
    let pooler = pool_of(1);
    within("mixed write", async {
        let mut raw = RawConn::connect(pooler.port()).await;
        raw.login("app", "app", password_of("app"), &[]).await;
        let messages = exchange(
            &mut raw,
            &[
                common::raw::query("SELECT 7"),
                parse("mixed_s1", "SELECT $1::int + 1", &[]),
                bind("", "mixed_s1", &[Some("41")]),
                execute(""),
                sync(),
                parse("", "SELECT 'x'", &[]),
                bind("", "", &[]),
                execute(""),
                close_statement("mixed_s1"),
                sync(),
                common::raw::query("SELECT 8"),
            ],
            3,
        )
        .await;
        assert_eq!(
            tags(&messages),
            "TDCZ12DCZ12DC3Z",
            "{}",
            describe(&messages)
        );
        assert_eq!(column0(&messages), ["7", "42", "x"]);
        let last = raw.read_until_ready().await;
        assert_eq!(tags(&last), "TDCZ", "{}", describe(&last));
        assert_eq!(column0(&last), ["8"]);

        // The statement was closed for this client only: executing it fails.
        let after = exchange(&mut raw, &[bind("", "mixed_s1", &[Some("1")]), sync()], 1).await;
        assert_eq!(errors(&after).len(), 1, "{}", describe(&after));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Configuration: passthrough and eviction

#[tokio::test]
async fn passthrough_when_max_prepared_statements_is_zero() {
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .set("pool.max_prepared_statements", "0")
        .start();
    within("passthrough", async {
        let mut c = pooler.connect_app().await;
        let other = pooler.connect_app().await;
        for round in 0..3 {
            let tx = c.transaction().await.unwrap();
            let st = tx
                .prepare("SELECT $1::int * 3")
                .await
                .expect("prepare in a transaction");
            for i in 0..5i32 {
                let row = tx
                    .query_one(&st, &[&i])
                    .await
                    .expect("execute in the transaction");
                assert_eq!(row.get::<_, i32>(0), i * 3, "round {round}");
            }
            drop(st);
            tx.commit().await.unwrap();
            // Someone else's transaction on the one server connection in between.
            assert_eq!(simple_value(&other, "SELECT 'other'").await, "other");
        }
        let rows = c
            .query_typed(
                "SELECT $1::int4",
                &[(&9i32, tokio_postgres::types::Type::INT4)],
            )
            .await
            .expect("unnamed statement");
        assert_eq!(rows[0].get::<_, i32>(0), 9);
    })
    .await;
}

#[tokio::test]
async fn eviction_keeps_the_server_within_max_prepared_statements() {
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .set("pool.max_prepared_statements", "2")
        .start();
    within("eviction", async {
        let c = pooler.connect_app().await;
        let mut stmts = Vec::new();
        for k in 0..5i32 {
            let st = c
                .prepare(&format!("SELECT $1::int + {k}00"))
                .await
                .unwrap_or_else(|e| panic!("prepare {k}: {e}"));
            stmts.push(st);
        }
        let on_server = "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql";
        for round in 0..8i32 {
            for (k, st) in (0i32..).zip(&stmts) {
                let row = c
                    .query_one(st, &[&round])
                    .await
                    .unwrap_or_else(|e| panic!("round {round} statement {k}: {e}"));
                assert_eq!(row.get::<_, i32>(0), round + k * 100);
            }
            let held: i64 = simple_value(&c, on_server).await.parse().unwrap();
            assert!(
                held <= 2,
                "round {round}: the server holds {held} protocol-level statements, max 2"
            );
        }
        // Round robin over all five inside one pipeline.
        let runs = (0..25i32).map(|i| {
            let (c, st) = (&c, &stmts[(i % 5) as usize]);
            async move { c.query_one(st, &[&i]).await }
        });
        for (i, r) in (0i32..).zip(futures_util::future::join_all(runs).await) {
            let row = r.unwrap_or_else(|e| panic!("pipelined execution {i}: {e}"));
            assert_eq!(row.get::<_, i32>(0), i + (i % 5) * 100);
        }
        let held: i64 = simple_value(&c, on_server).await.parse().unwrap();
        assert!(held <= 2, "after the pipeline: {held} statements, max 2");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_begin_and_end_with_more_clients_than_servers() {
    // The shape of pgbench -M prepared's TPC-B script: BEGIN, UPDATE, SELECT and END are
    // all prepared statements; five clients contend for two server connections and for
    // one row, so transactions wait on each other's locks.
    const CLIENTS: i32 = 5;
    const ROUNDS: i32 = 30;
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "2")
        .set("pool.query_wait_timeout", "10")
        .start();
    let setup = pooler.connect_app().await;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS prep_counter; \
             CREATE TABLE prep_counter (id int PRIMARY KEY, n int NOT NULL); \
             INSERT INTO prep_counter VALUES (1, 0)",
        )
        .await
        .expect("create prep_counter");
    let cfg = pooler.config("app", "app", password_of("app"));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let fail = |what: &str, e: tokio_postgres::Error| format!("client {c} {what}: {e}");
            let client = connect_with(&cfg).await.map_err(|e| fail("connect", e))?;
            // Like pgbench: each statement is prepared at its first use, so all but
            // BEGIN are prepared inside the first transaction.
            let begin = client
                .prepare("BEGIN")
                .await
                .map_err(|e| fail("prepare", e))?;
            let mut stmts = None;
            for r in 0..ROUNDS {
                client
                    .execute(&begin, &[])
                    .await
                    .map_err(|e| fail(&format!("BEGIN {r}"), e))?;
                if stmts.is_none() {
                    let mut prepared = Vec::new();
                    for sql in [
                        "UPDATE prep_counter SET n = n + 1 WHERE id = 1",
                        "SELECT n FROM prep_counter WHERE id = 1",
                        "END",
                    ] {
                        prepared.push(client.prepare(sql).await.map_err(|e| fail(sql, e))?);
                    }
                    stmts = Some(prepared);
                }
                let [update, select, end] = stmts.as_deref().expect("prepared") else {
                    unreachable!()
                };
                let n = client
                    .execute(update, &[])
                    .await
                    .map_err(|e| fail(&format!("UPDATE {r}"), e))?;
                if n != 1 {
                    return Err(format!("client {c} round {r}: UPDATE {n}"));
                }
                client
                    .query_one(select, &[])
                    .await
                    .map_err(|e| fail(&format!("SELECT {r}"), e))?;
                // And a one-shot statement (prepare, execute, close) inside the transaction.
                let rows = client
                    .query("SELECT $1::int + 1", &[&r])
                    .await
                    .map_err(|e| fail(&format!("one-shot {r}"), e))?;
                if rows[0].get::<_, i32>(0) != r + 1 {
                    return Err(format!("client {c} round {r}: one-shot gave a wrong value"));
                }
                client
                    .execute(end, &[])
                    .await
                    .map_err(|e| fail(&format!("END {r}"), e))?;
            }
            Ok::<(), String>(())
        });
    }
    let mut errors = Vec::new();
    within("BEGIN/END clients", async {
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result.expect("task") {
                errors.push(e);
            }
        }
    })
    .await;
    assert!(
        errors.is_empty(),
        "{} clients failed: {errors:?}",
        errors.len()
    );
    assert_eq!(
        simple_value(&setup, "SELECT n FROM prep_counter WHERE id = 1").await,
        (CLIENTS * ROUNDS).to_string()
    );
}

// ---------------------------------------------------------------------------------------
// pgbench -M prepared

/// Runs `pgbench -M prepared <args>` through a pool of 2 and checks that every
/// transaction was processed, none failed; a pgbench still running after 60 s is killed
/// (stuck clients) and the test fails with what it printed.
fn pgbench_prepared(args: &[&str], expected_transactions: u32) {
    let pooler = Pooler::builder(pgbench_initialized())
        .set("databases.bench.pool_size", "2")
        .set("pool.query_wait_timeout", "20")
        .start();
    let out_path = pooler.dir().join("pgbench.stdout");
    let err_path = pooler.dir().join("pgbench.stderr");
    let mut child = pgbench_cmd(pooler.port(), "bench", password_of("bench"))
        .args(["-M", "prepared"])
        .args(args)
        .arg("bench")
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run pgbench");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            // What the server connections are doing, for the failure message.
            let activity = pgbench_initialized()
                .psql(
                    "postgres",
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 70) \
                     FROM pg_stat_activity WHERE datname = 'bench'",
                )
                .unwrap_or_else(|e| e.to_string());
            std::fs::write(err_path.with_extension("activity"), activity).ok();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let activity = std::fs::read_to_string(err_path.with_extension("activity")).unwrap_or_default();
    let text = format!(
        "status {status:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n\
         --- pg_stat_activity at the deadline\n{activity}"
    );
    let status = status.unwrap_or_else(|| panic!("pgbench still running after 60 s:\n{text}"));
    assert!(status.success(), "pgbench failed:\n{text}");
    let processed = format!(
        "number of transactions actually processed: {expected_transactions}/{expected_transactions}"
    );
    assert!(
        stdout.contains(&processed),
        "expected `{processed}`:\n{text}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0 "),
        "failed transactions:\n{text}"
    );
    assert!(!text.contains("aborted"), "aborted clients:\n{text}");
    // pgbench only logs a failed PQprepare (e.g. "prepared statement already exists")
    // and carries on, so its errors must be looked for in stderr.
    assert!(
        !stderr.contains("error"),
        "pgbench reported errors:\n{text}"
    );
}

#[test]
fn pgbench_prepared_select_only() {
    pgbench_prepared(&["-c", "10", "-j", "2", "-t", "200", "-S"], 2000);
}

#[test]
fn pgbench_prepared_tpcb_like() {
    // One thread per client: pgbench prepares with the synchronous PQprepare() at a
    // statement's first use, which blocks the whole pgbench thread. With several clients
    // per thread and fewer server connections than clients, a client waiting for a server
    // for its PQprepare blocks the thread, so the clients holding the servers inside their
    // transactions can never send their next statement: a deadlock in pgbench itself,
    // through any transaction pooler that needs a server to answer Parse.
    pgbench_prepared(&["-c", "10", "-j", "10", "-t", "50"], 500);
}

// ---------------------------------------------------------------------------------------
// Raw protocol: exact replies, in order.
//
// Each conversation runs through a pool of one server connection, with another client of
// that pool making the connection dirty at chosen points (the reset deallocates every
// statement, so the pooler must prepare them again, invisibly); and once more directly
// against PostgreSQL (`raw_expectations_are_postgresqls_own`), which proves the expected
// replies are exactly PostgreSQL's own.

/// Where a raw conversation runs.
struct Target<'a> {
    /// The port raw clients connect to (pooler or PostgreSQL).
    port: u16,
    /// Another client of the same pool; `None` when talking to PostgreSQL directly.
    other: Option<&'a Client>,
    /// Distinguishes object names of concurrent runs.
    tag: &'static str,
}

impl Target<'_> {
    /// A raw connection logged in to database `app` as `app`.
    async fn raw(&self) -> RawConn {
        let mut raw = RawConn::connect(self.port).await;
        raw.login("app", "app", password_of("app"), &[]).await;
        raw
    }

    /// Makes the pooled server connection dirty (so it gets reset); nothing when direct.
    async fn dirty(&self) {
        if let Some(other) = self.other {
            dirty_the_connection(other).await;
        }
    }

    /// A transaction by the other client that changes nothing; nothing when direct.
    async fn other_select(&self) {
        if let Some(other) = self.other {
            assert_eq!(simple_value(other, "SELECT 1").await, "1");
        }
    }

    /// Asserts `raw` and the other client share one server connection (pooled only).
    async fn same_backend(&self, raw: &mut RawConn) {
        if let Some(other) = self.other {
            assert_eq!(
                raw_pid(raw).await,
                pid_of(other).await,
                "one server connection"
            );
        }
    }
}

/// One `#[tokio::test]` per conversation through the pooler, and one test running them
/// all directly against PostgreSQL.
macro_rules! raw_conversations {
    ($($name:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let pooler = pool_of(1);
                let other = pooler.connect_app().await;
                let target = Target { port: pooler.port(), other: Some(&other), tag: "pooled" };
                within(stringify!($name), conversations::$name(&target)).await;
            }
        )*

        #[tokio::test]
        async fn raw_expectations_are_postgresqls_own() {
            let target = Target { port: cluster().port(), other: None, tag: "direct" };
            $(
                within(stringify!($name), conversations::$name(&target)).await;
            )*
        }
    };
}

raw_conversations! {
    close_then_execute_fails_with_replies_in_protocol_order;
    same_statement_name_on_two_clients;
    name_reused_after_close_runs_the_new_sql;
    parse_error_then_the_same_name_works;
    describe_of_a_statement_the_server_lacks;
    error_skips_to_sync_past_injected_parses;
    injected_parse_that_fails_is_reported_in_order;
    parse_and_sync_inside_a_transaction;
}

/// The transaction status of the last ReadyForQuery: 'I', 'T' or 'E'.
fn tx_status(messages: &[(u8, bytes::Bytes)]) -> char {
    let (_, body) = messages
        .iter()
        .rev()
        .find(|(t, _)| *t == b'Z')
        .expect("a ReadyForQuery");
    char::from(body[0])
}

mod conversations {
    use super::*;

    pub async fn close_then_execute_fails_with_replies_in_protocol_order(t: &Target<'_>) {
        let mut a = t.raw().await;
        t.same_backend(&mut a).await;
        expect_tags(
            &mut a,
            &[parse("s1", "SELECT 1", &[]), sync()],
            1,
            "1Z",
            "Parse",
        )
        .await;
        t.dirty().await; // the server forgets s1: it must be prepared again
        let m = expect_tags(&mut a, &[run("s1", &[]), sync()], 1, "2DCZ", "Bind/Execute").await;
        assert_eq!(column0(&m), ["1"]);
        t.other_select().await;
        expect_tags(&mut a, &[close_statement("s1"), sync()], 1, "3Z", "Close").await;
        t.dirty().await;
        let m = expect_tags(
            &mut a,
            &[run("s1", &[]), sync()],
            1,
            "EZ",
            "Bind after Close",
        )
        .await;
        let err = &errors(&m)[0];
        assert_eq!(err.code, "26000", "{err:?}");
        assert!(
            err.message.contains("\"s1\""),
            "names the client's statement: {err:?}"
        );
        assert_eq!(
            column0(&a.simple_query("SELECT 'usable'").await),
            ["usable"]
        );

        // The same conversation as one pipeline (four Syncs, one write).
        let m = expect_tags(
            &mut a,
            &[
                parse("s1", "SELECT 1", &[]),
                sync(),
                run("s1", &[]),
                sync(),
                close_statement("s1"),
                sync(),
                run("s1", &[]),
                sync(),
            ],
            4,
            "1Z2DCZ3ZEZ",
            "pipelined",
        )
        .await;
        assert_eq!(errors(&m)[0].code, "26000");

        // Closing a name that was never prepared is not an error.
        expect_tags(
            &mut a,
            &[close_statement("never"), sync()],
            1,
            "3Z",
            "Close unknown",
        )
        .await;
        // The unnamed statement passes through.
        let m = expect_tags(
            &mut a,
            &[parse("", "SELECT 'unnamed'", &[]), run("", &[]), sync()],
            1,
            "12DCZ",
            "unnamed",
        )
        .await;
        assert_eq!(column0(&m), ["unnamed"]);
    }

    pub async fn same_statement_name_on_two_clients(t: &Target<'_>) {
        let mut a = t.raw().await;
        let mut b = t.raw().await;
        expect_tags(
            &mut a,
            &[parse("s0", "SELECT 'from a'", &[]), sync()],
            1,
            "1Z",
            "A",
        )
        .await;
        // No "prepared statement already exists" for B's own s0.
        expect_tags(
            &mut b,
            &[parse("s0", "SELECT 'from b'", &[]), sync()],
            1,
            "1Z",
            "B",
        )
        .await;
        for round in 0..3 {
            let m = expect_tags(&mut a, &[run("s0", &[]), sync()], 1, "2DCZ", "A runs").await;
            assert_eq!(column0(&m), ["from a"], "round {round}");
            let m = expect_tags(&mut b, &[run("s0", &[]), sync()], 1, "2DCZ", "B runs").await;
            assert_eq!(column0(&m), ["from b"], "round {round}");
            if round == 1 {
                t.dirty().await;
            }
        }
        // A client's statements are its own: B cannot run A's.
        expect_tags(
            &mut a,
            &[parse("only_a", "SELECT 1", &[]), sync()],
            1,
            "1Z",
            "A",
        )
        .await;
        let m = expect_tags(&mut b, &[run("only_a", &[]), sync()], 1, "EZ", "B runs A's").await;
        assert_eq!(errors(&m)[0].code, "26000");
        let m = expect_tags(&mut a, &[run("only_a", &[]), sync()], 1, "2DCZ", "A runs").await;
        assert_eq!(column0(&m), ["1"]);
    }

    pub async fn name_reused_after_close_runs_the_new_sql(t: &Target<'_>) {
        let mut a = t.raw().await;
        expect_tags(
            &mut a,
            &[parse("s1", "SELECT 'first'", &[]), sync()],
            1,
            "1Z",
            "P1",
        )
        .await;
        let m = expect_tags(&mut a, &[run("s1", &[]), sync()], 1, "2DCZ", "run 1").await;
        assert_eq!(column0(&m), ["first"]);
        expect_tags(&mut a, &[close_statement("s1"), sync()], 1, "3Z", "Close").await;
        t.other_select().await;
        expect_tags(
            &mut a,
            &[parse("s1", "SELECT 'second'", &[]), sync()],
            1,
            "1Z",
            "P2",
        )
        .await;
        let m = expect_tags(&mut a, &[run("s1", &[]), sync()], 1, "2DCZ", "run 2").await;
        assert_eq!(column0(&m), ["second"]);
        // Prepared again after a reset: must be the new text.
        t.dirty().await;
        let m = expect_tags(&mut a, &[run("s1", &[]), sync()], 1, "2DCZ", "run 2 again").await;
        assert_eq!(column0(&m), ["second"]);
        // Close, Parse with a new text and run, in one message group.
        let m = expect_tags(
            &mut a,
            &[
                close_statement("s1"),
                parse("s1", "SELECT 'third'", &[]),
                run("s1", &[]),
                sync(),
            ],
            1,
            "312DCZ",
            "close+parse+run",
        )
        .await;
        assert_eq!(column0(&m), ["third"]);
    }

    pub async fn parse_error_then_the_same_name_works(t: &Target<'_>) {
        let mut a = t.raw().await;
        let m = expect_tags(
            &mut a,
            &[parse("sx", "SELEC 1", &[]), sync()],
            1,
            "EZ",
            "bad",
        )
        .await;
        assert_eq!(errors(&m)[0].code, "42601");
        expect_tags(
            &mut a,
            &[parse("sx", "SELECT 'fixed'", &[]), sync()],
            1,
            "1Z",
            "good",
        )
        .await;
        t.dirty().await;
        let m = expect_tags(&mut a, &[run("sx", &[]), sync()], 1, "2DCZ", "run").await;
        assert_eq!(column0(&m), ["fixed"]);

        // A Parse error in a pipeline: Bind and Execute are skipped up to Sync.
        let m = expect_tags(
            &mut a,
            &[parse("sy", "SELECT 1 +", &[]), run("sy", &[]), sync()],
            1,
            "EZ",
            "bad in a pipeline",
        )
        .await;
        assert_eq!(errors(&m)[0].code, "42601");
        // The failed Parse created nothing (asked right away, and after a reset).
        for _ in 0..2 {
            let m = expect_tags(&mut a, &[run("sy", &[]), sync()], 1, "EZ", "never prepared").await;
            assert_eq!(
                errors(&m)[0].code,
                "26000",
                "a statement whose Parse failed does not exist: {:?}",
                errors(&m)
            );
            t.dirty().await;
        }
        let m = expect_tags(
            &mut a,
            &[parse("sy", "SELECT 'y'", &[]), run("sy", &[]), sync()],
            1,
            "12DCZ",
            "sy for real",
        )
        .await;
        assert_eq!(column0(&m), ["y"]);
    }

    pub async fn describe_of_a_statement_the_server_lacks(t: &Target<'_>) {
        let mut a = t.raw().await;
        expect_tags(
            &mut a,
            &[parse("sd", "SELECT $1::int * 2 AS doubled", &[]), sync()],
            1,
            "1Z",
            "Parse",
        )
        .await;
        t.dirty().await;
        let m = expect_tags(
            &mut a,
            &[describe_statement("sd"), sync()],
            1,
            "tTZ",
            "Describe S",
        )
        .await;
        let row_description = &m.iter().find(|(t, _)| *t == b'T').expect("T").1;
        assert!(
            row_description.windows(7).any(|w| w == b"doubled"),
            "RowDescription names the column"
        );
        t.dirty().await;
        let m = expect_tags(
            &mut a,
            &[
                bind("p1", "sd", &[Some("21")]),
                describe_portal("p1"),
                execute("p1"),
                sync(),
            ],
            1,
            "2TDCZ",
            "named portal",
        )
        .await;
        assert_eq!(column0(&m), ["42"]);
    }

    pub async fn error_skips_to_sync_past_injected_parses(t: &Target<'_>) {
        let mut a = t.raw().await;
        // random() keeps the planner from folding 10 / 0 at Bind: it fails at Execute.
        let div = "SELECT 10 / (CASE WHEN random() >= 0 THEN $1::int END)";
        expect_tags(
            &mut a,
            &[
                parse("sdiv", div, &[]),
                parse("sok", "SELECT 'ok'", &[]),
                sync(),
            ],
            1,
            "11Z",
            "two Parses",
        )
        .await;
        t.dirty().await; // neither is on the server now
                         // sdiv fails at Execute; sok's Bind (and any Parse the pooler puts before it) is
                         // skipped by the server up to Sync.
        let m = expect_tags(
            &mut a,
            &[run("sdiv", &[Some("0")]), run("sok", &[]), sync()],
            1,
            "2EZ",
            "error, then skipped",
        )
        .await;
        assert_eq!(errors(&m)[0].code, "22012");
        // The pooler must not believe sok was prepared by a Parse the server skipped.
        let m = expect_tags(&mut a, &[run("sok", &[]), sync()], 1, "2DCZ", "sok").await;
        assert_eq!(column0(&m), ["ok"]);
        let m = expect_tags(
            &mut a,
            &[run("sdiv", &[Some("5")]), sync()],
            1,
            "2DCZ",
            "sdiv",
        )
        .await;
        assert_eq!(column0(&m), ["2"]);

        // Several Syncs in one write: the error ends only its own group.
        t.dirty().await;
        let m = expect_tags(
            &mut a,
            &[
                run("sdiv", &[Some("0")]),
                sync(),
                run("sok", &[]),
                sync(),
                run("sdiv", &[Some("2")]),
                sync(),
            ],
            3,
            "2EZ2DCZ2DCZ",
            "three groups",
        )
        .await;
        assert_eq!(column0(&m), ["ok", "5"]);

        // Inside an explicit transaction: skipped up to Sync, then the transaction stays
        // failed until ROLLBACK.
        t.dirty().await;
        let m = expect_tags(
            &mut a,
            &[
                parse("", "BEGIN", &[]),
                run("", &[]),
                run("sdiv", &[Some("0")]),
                run("sok", &[]),
                sync(),
            ],
            1,
            "12C2EZ",
            "in a transaction",
        )
        .await;
        assert_eq!(
            m.last().expect("Z").1.as_ref(),
            b"E",
            "ReadyForQuery: failed"
        );
        let m = expect_tags(&mut a, &[run("sok", &[]), sync()], 1, "EZ", "aborted").await;
        assert_eq!(errors(&m)[0].code, "25P02");
        a.simple_query("ROLLBACK").await;
        let m = expect_tags(
            &mut a,
            &[run("sok", &[]), sync()],
            1,
            "2DCZ",
            "after ROLLBACK",
        )
        .await;
        assert_eq!(column0(&m), ["ok"]);
    }

    pub async fn injected_parse_that_fails_is_reported_in_order(t: &Target<'_>) {
        let mut a = t.raw().await;
        let table = format!("prep_gone_{}", t.tag);
        let no_error = |m: &[(u8, bytes::Bytes)]| {
            assert!(errors(m).is_empty(), "{}", describe(m));
        };
        no_error(
            &a.simple_query(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int)"
            ))
            .await,
        );
        let select = format!("SELECT count(*) FROM {table}");
        expect_tags(
            &mut a,
            &[parse("sg", &select, &[]), sync()],
            1,
            "1Z",
            "Parse",
        )
        .await;
        no_error(&a.simple_query(&format!("DROP TABLE {table}")).await);
        t.dirty().await;
        // Preparing sg again fails now: the client sees that error for its Bind and
        // nothing else (no ParseComplete it did not ask for, no BindComplete).
        let m = expect_tags(&mut a, &[run("sg", &[]), sync()], 1, "EZ", "table gone").await;
        assert_eq!(errors(&m)[0].code, "42P01");
        // Followed by a good group in the same write.
        let m = expect_tags(
            &mut a,
            &[
                run("sg", &[]),
                sync(),
                parse("", "SELECT 'after'", &[]),
                run("", &[]),
                sync(),
            ],
            2,
            "EZ12DCZ",
            "failed, then good",
        )
        .await;
        assert_eq!(column0(&m), ["after"]);
        // Once the table is back, the statement works again.
        no_error(
            &a.simple_query(&format!("CREATE TABLE {table} (x int)"))
                .await,
        );
        let m = expect_tags(&mut a, &[run("sg", &[]), sync()], 1, "2DCZ", "table back").await;
        assert_eq!(column0(&m), ["0"]);
        no_error(&a.simple_query(&format!("DROP TABLE {table}")).await);
    }

    pub async fn parse_and_sync_inside_a_transaction(t: &Target<'_>) {
        // What pgbench -M prepared does: PQprepare (Parse + Sync, no Describe) of each
        // statement at its first use, which for all but BEGIN is inside a transaction.
        let mut a = t.raw().await;
        let mut b = t.raw().await;
        let m = expect_tags(
            &mut a,
            &[parse("known", "SELECT 'k'", &[]), sync()],
            1,
            "1Z",
            "A",
        )
        .await;
        assert_eq!(tx_status(&m), 'I');
        for round in 0..3 {
            let m = b.simple_query("BEGIN").await;
            assert_eq!(tx_status(&m), 'T', "round {round}: {}", describe(&m));
            if round == 0 {
                // The same text A prepared, and a new one, both inside the transaction.
                for (name, sql) in [("in_tx", "SELECT 'k'"), ("in_tx_new", "SELECT 'new'")] {
                    let m =
                        expect_tags(&mut b, &[parse(name, sql, &[]), sync()], 1, "1Z", name).await;
                    assert_eq!(tx_status(&m), 'T', "after Parse+Sync of {name}");
                }
            }
            let m = expect_tags(&mut b, &[run("in_tx", &[]), sync()], 1, "2DCZ", "in_tx").await;
            assert_eq!((column0(&m), tx_status(&m)), (vec!["k".to_string()], 'T'));
            let m = expect_tags(
                &mut b,
                &[
                    bind("", "in_tx_new", &[]),
                    describe_portal(""),
                    execute(""),
                    sync(),
                ],
                1,
                "2TDCZ",
                "in_tx_new with Describe portal (as libpq sends it)",
            )
            .await;
            assert_eq!((column0(&m), tx_status(&m)), (vec!["new".to_string()], 'T'));
            let m = b.simple_query("COMMIT").await;
            assert_eq!(tx_status(&m), 'I', "round {round}: {}", describe(&m));
            // The server connection was released: the other client gets it.
            t.other_select().await;
            if round == 1 {
                t.dirty().await;
            }
        }
        let m = expect_tags(&mut a, &[run("known", &[]), sync()], 1, "2DCZ", "A's").await;
        assert_eq!(column0(&m), ["k"]);
    }
}
