//! Pool checkout + release round trips, the per-transaction cost of the pool
//! itself, on both runtime shapes the binary can run: one current-thread
//! runtime (the default) and multi-thread work stealing (`PGPOOL_WORKERS=2`,
//! as many workers as the 2-vCPU bench machine has cores).
//!
//! No PostgreSQL is needed: each pooled connection is a loopback TCP socket
//! pair (the accepted side kept open and silent), wrapped with
//! `ServerConn::unauthenticated` and handed to the pool with `Pool::adopt`.
//! The pool's size equals the adopted count and the check and reset queries
//! are empty, so the pool never connects and nothing is ever sent; what is
//! measured is the lock, the idle stack, the FIFO waiter handoff (a oneshot
//! per waiter), the idle health probe and the RAII guard.
//!
//! * `uncontended`: one task, an idle connection always available.
//! * `contended`: 100 tasks share a pool of 20; each holds its connection
//!   across one `yield_now` (standing in for the relay's awaits), so most
//!   checkouts queue and are served by another task's release. The time per
//!   iteration is wall time divided by round trips completed by all tasks
//!   together, i.e. the inverse of the pool's round-trip throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgpool_rs::config::PoolMode;
use pgpool_rs::pool::checkout::Release;
use pgpool_rs::pool::db_limit::DbLimit;
use pgpool_rs::pool::{Pool, PoolKey, PoolSettings, WaitSlot};
use pgpool_rs::server::{ConnectTarget, ServerConn, ServerCredential};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};

/// Client tasks in the contended case.
const TASKS: u64 = 100;
/// Pool size in the contended case.
const POOL_SIZE: u32 = 20;

/// Settings under which the pool never opens, checks or resets anything.
fn settings(size: u32) -> PoolSettings {
    let long = Duration::from_secs(3600);
    PoolSettings {
        size,
        min_size: 0,
        mode: PoolMode::Transaction,
        reset_query: String::new(),
        reset_always: false,
        check_query: String::new(),
        check_delay: long,
        idle_timeout: long,
        lifetime: long,
        query_wait_timeout: Duration::from_secs(60),
        query_timeout: Duration::ZERO,
        reserve_size: 0,
        reserve_timeout: Duration::ZERO,
        idle_transaction_timeout: Duration::ZERO,
        client_idle_timeout: Duration::ZERO,
        // Never used: the pool is full from the start.
        target: ConnectTarget {
            host: "127.0.0.1".into(),
            port: 1,
            user: "bench".into(),
            database: "bench".into(),
            credential: ServerCredential::None,
            connect_timeout: Duration::from_secs(1),
            tls: pgpool_rs::tls::ServerTlsConnector::disabled(),
        },
        hosts: pgpool_rs::server::hosts::HostSet::new(
            "bench",
            pgpool_rs::config::Role::Any,
            true,
            &[("127.0.0.1".into(), 1)],
            Duration::from_secs(5),
        ),
        epoch: 0,
        max_prepared: 0,
    }
}

/// A pool of `size` loopback connections on `rt`, plus the accepted ends,
/// which must stay open for the connections to look healthy.
fn loopback_pool(rt: &Runtime, size: u32) -> (Arc<Pool>, Vec<TcpStream>) {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = PoolKey {
            database: "bench".into(),
            user: "bench".into(),
        };
        let pool = Pool::new(key, settings(size), Arc::new(DbLimit::new(0)));
        let mut peers = Vec::new();
        for _ in 0..size {
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            pool.adopt(ServerConn::unauthenticated(client.unwrap()).unwrap());
            peers.push(accepted.unwrap().0);
        }
        (pool, peers)
    })
}

fn runtimes() -> Vec<(&'static str, Runtime)> {
    let current = Builder::new_current_thread().enable_all().build().unwrap();
    let multi = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    vec![("current_thread", current), ("multi_thread_2", multi)]
}

/// Checks that every connection came back and none was closed.
fn assert_all_idle(pool: &Pool, size: u32) {
    let counts = pool.counts();
    assert_eq!((counts.idle, counts.open), (size, size), "{counts:?}");
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("checkout/uncontended");
    g.throughput(Throughput::Elements(1));
    for (name, rt) in runtimes() {
        let (pool, peers) = loopback_pool(&rt, POOL_SIZE);
        let p = &pool;
        let slot = &WaitSlot::new();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter(|| async move {
                let co = p.checkout(std::time::Instant::now(), slot).await.unwrap();
                co.release(Release::Clean);
            })
        });
        assert_all_idle(&pool, POOL_SIZE);
        drop((pool, peers));
    }
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("checkout/contended_{TASKS}_tasks_pool_{POOL_SIZE}"));
    g.throughput(Throughput::Elements(1));
    for (name, rt) in runtimes() {
        let (pool, peers) = loopback_pool(&rt, POOL_SIZE);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let pool = pool.clone();
                async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|i| {
                            // Spread `iters` round trips over the tasks.
                            let n = iters / TASKS + u64::from(i < iters % TASKS);
                            let pool = pool.clone();
                            tokio::spawn(async move {
                                let slot = WaitSlot::new();
                                for _ in 0..n {
                                    let co = pool
                                        .checkout(std::time::Instant::now(), &slot)
                                        .await
                                        .unwrap();
                                    tokio::task::yield_now().await;
                                    co.release(Release::Clean);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                }
            })
        });
        assert_all_idle(&pool, POOL_SIZE);
        drop((pool, peers));
    }
    g.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
