//! Codec hot path: what the relay does to every server response and client
//! query, measured without sockets.
//!
//! The inputs are realistic: the exact response batch a `pgbench -S`
//! transaction gets (RowDescription, one DataRow, CommandComplete
//! `SELECT 1`, ReadyForQuery `I`), a 1000-row `pgbench_accounts` result,
//! pgbench's own query text and a 2 KB reporting query. Byte throughput is
//! reported where the cost grows with the input, so the numbers can be set
//! against a transaction's budget (PgBouncer spends about 9–11 µs of CPU per
//! `pgbench -S` transaction on this kind of machine; see DESIGN.md §5).

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgpool_rs::protocol::backend::{self, ErrorFields, TxStatus};
use pgpool_rs::protocol::frame::{read_header, split_message, HEADER_LEN};
use pgpool_rs::server::dirty::{tag_is_dirty, text_is_dirty};
use pgpool_rs::server::params::{ParamSet, ServerParams};

/// pgbench's `-S` query (simple protocol), with a typical account id.
const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";

/// Appends one backend message: tag, length (counting itself), body.
fn put_message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let len_at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - len_at) as u32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// One RowDescription field: name, table oid, column number, type oid,
/// type length, type modifier, format (text).
fn put_field(buf: &mut BytesMut, name: &str, attnum: i16, type_oid: u32, typlen: i16, typmod: i32) {
    buf.put_slice(name.as_bytes());
    buf.put_u8(0);
    buf.put_u32(16_397); // pgbench_accounts' oid in a fresh database
    buf.put_i16(attnum);
    buf.put_u32(type_oid);
    buf.put_i16(typlen);
    buf.put_i32(typmod);
    buf.put_i16(0);
}

/// The whole server reply to one `pgbench -S` transaction, as one read
/// would see it.
fn pgbench_select_reply() -> BytesMut {
    let mut buf = BytesMut::new();
    put_message(&mut buf, b'T', |b| {
        b.put_i16(1);
        put_field(b, "abalance", 3, 23, 4, -1);
    });
    put_message(&mut buf, b'D', |b| {
        b.put_i16(1);
        b.put_i32(4);
        b.put_slice(b"-812");
    });
    put_message(&mut buf, b'C', |b| b.put_slice(b"SELECT 1\0"));
    backend::ready_for_query(&mut buf, TxStatus::Idle);
    buf
}

/// The reply to `SELECT * FROM pgbench_accounts LIMIT 1000`: four columns,
/// 84-character filler, about 112 KB.
fn thousand_row_reply() -> BytesMut {
    let mut buf = BytesMut::new();
    put_message(&mut buf, b'T', |b| {
        b.put_i16(4);
        put_field(b, "aid", 1, 23, 4, -1);
        put_field(b, "bid", 2, 23, 4, -1);
        put_field(b, "abalance", 3, 23, 4, -1);
        put_field(b, "filler", 4, 1042, -1, 88);
    });
    let filler = " ".repeat(84);
    for aid in 1..=1000u32 {
        put_message(&mut buf, b'D', |b| {
            b.put_i16(4);
            for value in [aid.to_string(), "1".to_owned(), "0".to_owned()] {
                b.put_i32(value.len() as i32);
                b.put_slice(value.as_bytes());
            }
            b.put_i32(filler.len() as i32);
            b.put_slice(filler.as_bytes());
        });
    }
    put_message(&mut buf, b'C', |b| b.put_slice(b"SELECT 1000\0"));
    backend::ready_for_query(&mut buf, TxStatus::Idle);
    buf
}

/// A clean 2 KB reporting query: joins, many columns and a long IN list, so
/// the dirtiness scan meets plenty of `s`, `t`, `a`, `n` and `d` first letters.
fn two_kb_query() -> String {
    let mut q = String::from(
        "SELECT o.order_id, o.status, o.created_at, o.updated_at, o.total_amount, \
         o.currency, c.customer_id, c.display_name, c.email, c.country, a.street, \
         a.city, a.postal_code, a.state, s.shipment_id, s.carrier, s.tracking_number, \
         s.shipped_at, s.delivered_at, d.discount_code, d.amount AS discount_amount \
         FROM orders o JOIN customers c ON c.customer_id = o.customer_id \
         LEFT JOIN addresses a ON a.address_id = o.shipping_address_id \
         LEFT JOIN shipments s ON s.order_id = o.order_id \
         LEFT JOIN discounts d ON d.discount_id = o.discount_id \
         WHERE o.status IN ('paid', 'shipped', 'delivered') \
         AND o.created_at >= now() - interval '30 days' AND o.order_id IN (",
    );
    let mut id = 100_000u32;
    while q.len() < 2000 {
        q.push_str(&id.to_string());
        q.push_str(", ");
        id += 7;
    }
    q.push_str("1) ORDER BY o.created_at DESC, o.order_id LIMIT 500;");
    q
}

/// A unique-violation ErrorResponse body as PostgreSQL 16 sends it.
fn unique_violation_body() -> Vec<u8> {
    let fields: &[(u8, &str)] = &[
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "23505"),
        (
            b'M',
            "duplicate key value violates unique constraint \"pgbench_accounts_pkey\"",
        ),
        (b'D', "Key (aid)=(48213) already exists."),
        (b's', "public"),
        (b't', "pgbench_accounts"),
        (b'n', "pgbench_accounts_pkey"),
        (b'F', "nbtinsert.c"),
        (b'L', "666"),
        (b'R', "_bt_check_unique"),
    ];
    let mut body = Vec::new();
    for (kind, value) in fields {
        body.push(*kind);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    body
}

/// The core of the relay's server-side scan per read: walk the headers,
/// inspect ReadyForQuery / CommandComplete / ErrorResponse bodies as
/// `session::relay` does, skip the rest. A lower bound for the real scan,
/// which also keeps its prepared-statement expectation queue in step.
/// Returns (messages, last status, dirty) so nothing is optimised away.
fn relay_scan(buf: &[u8]) -> (u32, u8, bool) {
    let mut at = 0;
    let mut messages = 0;
    let mut status = b'T';
    let mut dirty = false;
    while let Some(h) = read_header(&buf[at..]).unwrap() {
        let body = &buf[at + HEADER_LEN..at + h.total()];
        match h.tag {
            backend::tag::READY_FOR_QUERY => status = body[0],
            backend::tag::COMMAND_COMPLETE => dirty |= tag_is_dirty(body),
            backend::tag::ERROR_RESPONSE => dirty |= ErrorFields::parse(body).is_fatal(),
            _ => {}
        }
        at += h.total();
        messages += 1;
    }
    (messages, status, dirty)
}

/// Splits every message off the batch with `split_message`.
fn split_all(mut buf: &[u8]) -> u32 {
    let mut n = 0;
    while let Some((h, body)) = split_message(buf).unwrap() {
        black_box(body);
        buf = &buf[h.total()..];
        n += 1;
    }
    n
}

fn frame(c: &mut Criterion) {
    let header = pgbench_select_reply();
    c.bench_function("frame/read_header", |b| {
        b.iter(|| read_header(black_box(&header[..])).unwrap())
    });

    let batches = [
        ("pgbench_select", pgbench_select_reply()),
        ("rows_1000", thousand_row_reply()),
    ];
    let mut g = c.benchmark_group("frame/split_message_batch");
    for (name, batch) in &batches {
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &batch[..], |b, batch| {
            b.iter(|| split_all(black_box(batch)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("relay/scan_server_batch");
    for (name, batch) in &batches {
        assert!(matches!(relay_scan(batch), (_, b'I', false)));
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &batch[..], |b, batch| {
            b.iter(|| relay_scan(black_box(batch)))
        });
    }
    g.finish();
}

fn dirty(c: &mut Criterion) {
    let long = two_kb_query();
    let queries = [
        ("pgbench_select", PGBENCH_SELECT.as_bytes()),
        ("query_2k", long.as_bytes()),
    ];
    let mut g = c.benchmark_group("dirty/text_is_dirty");
    for (name, sql) in queries {
        assert!(!text_is_dirty(sql), "{name} must be clean to scan it whole");
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| text_is_dirty(black_box(sql)))
        });
    }
    g.finish();

    // SELECT is the first clean tag, COMMIT in the middle; INSERT is dirty
    // and so compared against every clean tag.
    let mut g = c.benchmark_group("dirty/tag_is_dirty");
    for tag in [&b"SELECT 1"[..], b"COMMIT", b"INSERT 0 1"] {
        let name = String::from_utf8_lossy(tag).into_owned();
        g.bench_with_input(BenchmarkId::from_parameter(name), tag, |b, tag| {
            b.iter(|| tag_is_dirty(black_box(tag)))
        });
    }
    g.finish();
}

/// A server connection as PostgreSQL 16 reports itself after login.
fn logged_in_server() -> ServerParams {
    let mut server = ServerParams::default();
    for (name, value) in [
        ("application_name", "pgbench"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_read_only", "off"),
        ("in_hot_standby", "off"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "off"),
        ("server_encoding", "UTF8"),
        ("server_version", "16.4"),
        ("session_authorization", "bench"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ] {
        server.reported_changed(name, value);
    }
    server
}

fn params(c: &mut Criterion) {
    let mut wanted = ParamSet::new();
    wanted.set("application_name", "pgbench");
    wanted.set("client_encoding", "UTF8");
    wanted.set("datestyle", "ISO, MDY");
    wanted.set("timezone", "UTC");

    let mut in_sync = logged_in_server();
    in_sync.synced_with = wanted.fingerprint();
    assert_eq!(in_sync.diff_sql(&wanted), None);

    // Same values, but a ParameterStatus since the last sync cleared the
    // fingerprint: every wanted entry is compared.
    let equal_unfingerprinted = logged_in_server();
    assert_eq!(equal_unfingerprinted.diff_sql(&wanted), None);

    let mut one_differs = logged_in_server();
    one_differs.reported_changed("TimeZone", "Europe/Berlin");
    assert!(one_differs.diff_sql(&wanted).is_some());

    let mut g = c.benchmark_group("params/diff_sql");
    for (name, server) in [
        ("in_sync_fingerprint", &in_sync),
        ("equal_no_fingerprint", &equal_unfingerprinted),
        ("one_differs", &one_differs),
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(name), server, |b, server| {
            b.iter(|| black_box(server).diff_sql(black_box(&wanted)))
        });
    }
    g.finish();
}

fn errors(c: &mut Criterion) {
    let body = unique_violation_body();
    let mut g = c.benchmark_group("backend/error_response");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("ErrorFields::parse", |b| {
        b.iter(|| ErrorFields::parse(black_box(&body)))
    });
    // The allocation-free lookup, for comparison.
    g.bench_function("error_code", |b| {
        b.iter(|| backend::error_code(black_box(&body)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Nanosecond-scale and stable: short windows keep a full run near a minute.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = frame, dirty, params, errors
}
criterion_main!(benches);
