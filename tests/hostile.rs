//! Hostile clients: lengths far over the limits at every stage (startup, login, after
//! login, admin console), near-limit messages that must stream, pipelines and result
//! streams a client never reads, replies the pooler answers itself piling up, and too
//! many prepared statements. The pooler's memory is read from /proc/<pid>/status:
//! it must stay bounded, and other clients must not notice.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawConn};
use common::*;
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1024 * 1024;

/// A field of /proc/<pid>/status in bytes (`VmRSS`, `VmHWM`, `VmPeak`).
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// Expects a FATAL with `code`, then the connection to be closed.
async fn expect_fatal(conn: &mut RawConn, code: &str) -> raw::ErrorFields {
    let err = conn.expect_error().await;
    assert_eq!(
        (err.severity.as_str(), err.code.as_str()),
        ("FATAL", code),
        "{err:?}"
    );
    assert!(
        conn.closed_within(Duration::from_secs(5)).await,
        "connection left open after {err:?}"
    );
    err
}

/// A message header with an arbitrary length field (no body).
fn header(tag: u8, len: u32) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_be_bytes());
    out
}

async fn logged_in(pooler: &Pooler) -> RawConn {
    let mut conn = RawConn::connect(pooler.port()).await;
    conn.login("app", "app", password_of("app"), &[]).await;
    conn
}

/// Writes `chunk` over and over for at most `limit` bytes or `time`, never reading;
/// returns the bytes written (the last chunk may be cut anywhere).
async fn flood(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    chunk: Vec<u8>,
    limit: u64,
    time: Duration,
) -> u64 {
    let deadline = Instant::now() + time;
    let mut written = 0u64;
    while written < limit {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, write.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len() as u64,
            _ => break,
        }
    }
    written
}

#[tokio::test]
async fn lengths_over_the_limits_are_refused_before_allocating() {
    let pooler = Pooler::builder(cluster())
        .set("auth.admin_users", "[\"app\"]")
        .start();
    let bystander = pooler.connect_app().await;
    let pid = pooler.pid();
    let peak_before = proc_status(pid, "VmPeak");
    let rss_before = proc_status(pid, "VmRSS");
    let two_gib = 0x8000_0000u32;

    // A startup packet claiming 2 GiB.
    let mut conn = RawConn::connect(pooler.port()).await;
    let mut packet = two_gib.to_be_bytes().to_vec();
    packet.extend_from_slice(&raw::PROTOCOL_3_0.to_be_bytes());
    conn.send(&packet).await;
    expect_fatal(&mut conn, "08P01").await;

    // A SASLInitialResponse claiming 2 GiB.
    let mut conn = RawConn::connect(pooler.port()).await;
    conn.send_startup(&[("user", "app"), ("database", "app")])
        .await;
    let (tag, body) = conn.read_message().await.expect("auth request");
    assert_eq!((tag, &body[..4]), (b'R', &10i32.to_be_bytes()[..]));
    let mut msg = header(b'p', two_gib);
    msg.extend_from_slice(b"SCRAM-SHA-256\0");
    conn.send(&msg).await;
    expect_fatal(&mut conn, "08P01").await;

    // A Query claiming 2 GiB, after login, and on the admin console.
    for db in ["app", "pgbouncer"] {
        let mut conn = RawConn::connect(pooler.port()).await;
        conn.login(db, "app", password_of("app"), &[]).await;
        let mut msg = header(b'Q', two_gib);
        msg.extend_from_slice(b"SELECT 1");
        conn.send(&msg).await;
        let err = expect_fatal(&mut conn, "08P01").await;
        assert!(err.message.contains("over the limit"), "{db}: {err:?}");
    }

    // Just under the limit is allowed: streamed to the server, not buffered.
    for tag in [b'Q', b'B'] {
        let mut conn = logged_in(&pooler).await;
        let mut msg = header(tag, (1 << 30) - 1);
        if tag == b'B' {
            msg.extend_from_slice(b"\0\0");
        }
        conn.send(&msg).await;
        let body = vec![b' '; 8 << 20];
        for _ in 0..4 {
            conn.send(&body).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hwm = proc_status(pid, "VmHWM");
        assert!(
            hwm < rss_before + 48 * MIB,
            "a {} message with 32 MiB sent so far took the pooler from {} to {} MiB",
            char::from(tag),
            rss_before / MIB,
            hwm / MIB
        );
    }

    let peak_after = proc_status(pid, "VmPeak");
    assert!(
        peak_after < peak_before + 512 * MIB,
        "virtual memory went from {} to {} MiB",
        peak_before / MIB,
        peak_after / MIB
    );
    assert_eq!(simple_value(&bystander, "SELECT 1").await, "1");
}

#[tokio::test]
async fn a_pipeline_never_read_keeps_memory_bounded() {
    let pooler = Pooler::start(cluster());
    let bystander = pooler.connect_app().await;
    let pid = pooler.pid();
    let conn = logged_in(&pooler).await;
    let rss_before = proc_status(pid, "VmRSS");
    let (mut reader, mut write) = conn.into_split();
    // Syncs: the smallest message with a reply (5 bytes in, 6 out).
    let chunk = [b'S', 0, 0, 0, 4].repeat(64 * 1024 / 5);
    let written = flood(&mut write, chunk, 1 << 30, Duration::from_secs(8)).await;
    let rss_after = proc_status(pid, "VmRSS");
    eprintln!(
        "{} MiB of Syncs written; pooler RSS {} -> {} MiB",
        written / MIB,
        rss_before / MIB,
        rss_after / MIB
    );
    assert!(
        written < 1 << 30,
        "the pooler took 1 GiB of unread pipeline"
    );
    assert!(
        rss_after < rss_before + 16 * MIB,
        "pooler RSS grew from {} to {} MiB",
        rss_before / MIB,
        rss_after / MIB
    );
    // The pipeline still flows once the client reads.
    for i in 0..20_000 {
        match reader.read_message(Duration::from_secs(10)).await {
            Some((b'Z', _)) => {}
            other => panic!("reply {i}: {other:?}"),
        }
    }
    assert_eq!(simple_value(&bystander, "SELECT 1").await, "1");
}

#[tokio::test]
async fn replies_the_pooler_owes_do_not_pile_up() {
    // Close of a statement is answered by the pooler without the server: a client that
    // never reads must still be held back.
    let pooler = Pooler::start(cluster());
    let pid = pooler.pid();
    let conn = logged_in(&pooler).await;
    let rss_before = proc_status(pid, "VmRSS");
    let (mut reader, mut write) = conn.into_split();
    let close = raw::message(b'C', b"Sx\0");
    let chunk = close.repeat(64 * 1024 / close.len());
    let written = flood(&mut write, chunk, 1 << 30, Duration::from_secs(8)).await;
    let rss_after = proc_status(pid, "VmRSS");
    eprintln!(
        "{} MiB of Close written; pooler RSS {} -> {} MiB",
        written / MIB,
        rss_before / MIB,
        rss_after / MIB
    );
    assert!(written < 1 << 30, "the pooler took 1 GiB of Close");
    assert!(
        rss_after < rss_before + 16 * MIB,
        "pooler RSS grew from {} to {} MiB",
        rss_before / MIB,
        rss_after / MIB
    );
    match reader.read_message(Duration::from_secs(10)).await {
        Some((b'3', _)) => {}
        other => panic!("expected CloseComplete, got {other:?}"),
    }
}

#[tokio::test]
async fn results_never_read_are_not_buffered() {
    let pooler = Pooler::start(cluster());
    let pid = pooler.pid();
    let mut conn = logged_in(&pooler).await;
    let rss_before = proc_status(pid, "VmRSS");
    let rows = 200_000;
    // About 200 MiB of DataRows.
    conn.send(&raw::query(&format!(
        "SELECT repeat('x', 1000) FROM generate_series(1, {rows})"
    )))
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = proc_status(pid, "VmRSS");
    assert!(
        rss_after < rss_before + 32 * MIB,
        "pooler RSS grew from {} to {} MiB while the client did not read",
        rss_before / MIB,
        rss_after / MIB
    );
    // Everything arrives once the client reads.
    let messages = conn.read_until_ready().await;
    let data_rows = messages.iter().filter(|(t, _)| *t == b'D').count();
    assert_eq!(data_rows, rows);
}

#[tokio::test]
async fn a_long_extended_pipeline_without_sync_completes() {
    // More Bind/Execute pairs than the relay keeps in flight, with no Sync or Flush
    // until the end: the server holds some replies back in its output buffer, and the
    // relay's pause must still end.
    let pooler = Pooler::start(cluster());
    let conn = logged_in(&pooler).await;
    let (mut reader, mut write) = conn.into_split();
    let pairs = 20_000;
    let reading = tokio::spawn(async move {
        let mut seen = [0usize; 256];
        loop {
            match reader.read_message(Duration::from_secs(20)).await {
                Some((b'Z', _)) => return seen,
                Some((b'E', body)) => panic!("error: {:?}", raw::parse_error(&body)),
                Some((tag, _)) => seen[usize::from(tag)] += 1,
                None => panic!(
                    "no ReadyForQuery; so far {:?}",
                    (seen[b'2' as usize], seen[b'C' as usize])
                ),
            }
        }
    });
    let mut out = raw::message(b'P', b"\0SELECT 1\0\0\0");
    let bind = raw::message(b'B', b"\0\0\0\0\0\0\0\0");
    let execute = raw::message(b'E', b"\0\0\0\0\0");
    for _ in 0..pairs {
        out.extend_from_slice(&bind);
        out.extend_from_slice(&execute);
    }
    out.extend_from_slice(&raw::message(b'S', b""));
    write.write_all(&out).await.expect("write the pipeline");
    let seen = reading.await.expect("reader");
    assert_eq!(seen[usize::from(b'1')], 1);
    assert_eq!(seen[usize::from(b'2')], pairs);
    assert_eq!(seen[usize::from(b'C')], pairs);
}

#[tokio::test]
async fn too_many_prepared_statements_is_54000() {
    if PoolerKind::is_pgbouncer() {
        return; // our own limit
    }
    let pooler = Pooler::start(cluster());
    let bystander = pooler.connect_app().await;
    let mut conn = logged_in(&pooler).await;
    let limit = 10_000;
    let mut batch = Vec::new();
    for i in 0..limit {
        batch.extend_from_slice(&raw::message(
            b'P',
            format!("s{i}\0SELECT {}\0\0\0", i % 7).as_bytes(),
        ));
    }
    batch.extend_from_slice(&raw::message(b'S', b""));
    conn.send(&batch).await;
    let replies = conn.read_until_ready().await;
    let parsed = replies.iter().filter(|(t, _)| *t == b'1').count();
    assert_eq!(parsed, limit);
    // Replacing one is fine; a new one is over the limit.
    let mut more = raw::message(b'P', b"s0\0SELECT 1\0\0\0");
    more.extend_from_slice(&raw::message(b'S', b""));
    conn.send(&more).await;
    conn.read_until_ready().await;
    let mut more = raw::message(b'P', b"one_too_many\0SELECT 1\0\0\0");
    more.extend_from_slice(&raw::message(b'S', b""));
    conn.send(&more).await;
    let err = expect_fatal(&mut conn, "54000").await;
    assert!(
        err.message.contains("too many prepared statements"),
        "{err:?}"
    );
    assert_eq!(simple_value(&bystander, "SELECT 1").await, "1");
}
