//! The transaction path allocates nothing per message (issue 3: "no per-message
//! allocation"). The pooler runs in this process, on a thread of its own, under a
//! global allocator that counts the allocations made on that thread; a client on
//! another thread runs a few thousand transactions through it, and the count may grow
//! by no more than the pooler's own background work (maintenance ticks, config-file
//! polling) could explain.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;

/// Counts allocations and reallocations made on threads that asked to be counted.
struct CountingAllocator;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note_allocation() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Transactions measured per protocol.
const TRANSACTIONS: u64 = 2_000;
/// Allowed allocations for all of them: background work only. (Measured: 0 and 1;
/// the code before this test made 108 for the simple protocol, a regrown client
/// buffer every few transactions, and 2,308 for prepared statements, a copy of
/// every Bind.)
const ALLOWED: u64 = 20;

/// Starts pgpool-rs in this process on a counted thread; returns its port.
fn start_in_process(builder: PoolerBuilder) -> (u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = pgpool_rs::localpg::free_port().expect("free port");
    let http_port = pgpool_rs::localpg::free_port().expect("free port");
    let (config, _) = builder.write_files(port, http_port, dir.path());
    std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        if let Err(e) = runtime.block_on(pgpool_rs::app::run(&config)) {
            panic!("in-process pooler failed: {e}");
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "in-process pooler did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (port, dir)
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user("app")
        .password(password_of("app"))
        .dbname("app");
    connect_with(&cfg)
        .await
        .expect("connect through the pooler")
}

/// Allocations on the pooler's thread while `run` executes.
async fn allocations_during<F: std::future::Future<Output = ()>>(run: F) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run.await;
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_allocate_nothing_per_message() {
    if PoolerKind::is_pgbouncer() {
        return; // in-process test of pgpool-rs itself
    }
    let builder = Pooler::builder(cluster())
        .set("databases.app.pool_size", "2")
        .set("pool.max_prepared_statements", "50");
    let (port, _dir) = start_in_process(builder);
    let client = connect(port).await;
    let statement = client.prepare("SELECT $1::int + 1").await.expect("prepare");
    // Warm up: buffers reach their working size, both server connections exist and
    // have the statement.
    for i in 0..200 {
        client.simple_query("SELECT 1").await.expect("simple");
        let row = client.query_one(&statement, &[&i]).await.expect("bind");
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }

    let simple = allocations_during(async {
        for _ in 0..TRANSACTIONS {
            let rows = client.simple_query("SELECT 1").await.expect("simple");
            assert_eq!(first_value(&rows).as_deref(), Some("1"));
        }
    })
    .await;
    let prepared = allocations_during(async {
        for i in 0..TRANSACTIONS as i32 {
            let row = client.query_one(&statement, &[&i]).await.expect("bind");
            assert_eq!(row.get::<_, i32>(0), i + 1);
        }
    })
    .await;
    assert!(
        simple <= ALLOWED,
        "{simple} allocations in {TRANSACTIONS} simple-protocol transactions"
    );
    assert!(
        prepared <= ALLOWED,
        "{prepared} allocations in {TRANSACTIONS} prepared-statement transactions"
    );
}
