//! `/metrics`: the pooler's counters in the Prometheus text format (0.0.4),
//! rendered at scrape time. Pools and sessions only bump their atomics
//! ([`crate::observe`]); this file reads them when Prometheus asks, so the
//! per-message path gains no lock, allocation or registry lookup.
//!
//! prometheus-client does the text format (escaping, `_total` suffixes,
//! cumulative histogram buckets); a [`Collector`] hands it our values on each
//! scrape, so pools that come and go need no registration, and a closed pool
//! simply stops being listed.
//!
//! Per pool (labels `database`, `user`):
//! - gauges `pgpool_clients_active`, `_clients_waiting`, `_clients_oldest_wait_seconds`,
//!   `_servers_active`, `_servers_idle`, `_servers_used`, `_servers_connecting`;
//! - counters `pgpool_transactions_total`, `_queries_total`,
//!   `_client_received_bytes_total`, `_server_received_bytes_total`,
//!   `_server_connects_total`, `_server_closes_total`, `_server_resets_total`,
//!   `_prepared_statement_{hits,misses,evictions}_total`;
//! - histograms `pgpool_client_wait_seconds`, `pgpool_transaction_seconds`.
//!
//! Pooler-wide: `pgpool_clients_connected`, `pgpool_clients_refused_total`,
//! `pgpool_login_failures_total`, `pgpool_protocol_errors_total`,
//! `pgpool_cancels_forwarded_total`, `pgpool_reloads_total{result="ok|failed"}`,
//! `pgpool_errors_total{kind="refused|login|protocol|wait_timeout|server_connect|server_lost|`
//! `query_timeout|idle_transaction_timeout|client_idle_timeout"}`,
//! `pgpool_tls_handshakes_total{result="ok|failed"}` (client side),
//! `pgpool_build_info{version}`.
//!
//! Per host (labels `database`, `host`, `port`): `pgpool_host_up`,
//! `pgpool_host_primary` (1 primary, 0 standby, -1 unknown),
//! `pgpool_host_connections`; per entry: `pgpool_failovers_total`,
//! `pgpool_role_changes_total`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::app::Shared;
use crate::observe::stats::{LatencyBuckets, LATENCY_BOUNDS_US};
use crate::pool::pool::PoolCounts;
use crate::pool::Pool;

/// The `Content-Type` of a `/metrics` answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Renders `/metrics` from the pooler's state.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A renderer reading `shared` on every call.
    pub fn new(shared: Arc<Shared>) -> Metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape { shared }));
        Metrics { registry }
    }

    /// The exposition text, as of now.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Gauge or counter (the suffix `_total` is added to counters' names).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// One per-pool metric read from a pool and its counts.
struct PoolMetric {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    value: fn(&Pool, &PoolCounts) -> u64,
}

const POOL_METRICS: &[PoolMetric] = &[
    PoolMetric {
        name: "pgpool_clients_active",
        help: "Clients logged in to the pool and not waiting for a server connection",
        kind: Kind::Gauge,
        value: |p, c| {
            p.stats
                .clients
                .load(Relaxed)
                .saturating_sub(u64::from(c.waiting))
        },
    },
    PoolMetric {
        name: "pgpool_clients_waiting",
        help: "Clients queued for a server connection",
        kind: Kind::Gauge,
        value: |_, c| u64::from(c.waiting),
    },
    PoolMetric {
        name: "pgpool_servers_active",
        help: "Server connections handed to clients or being reset",
        kind: Kind::Gauge,
        value: |_, c| u64::from(c.open.saturating_sub(c.idle).saturating_sub(c.connecting)),
    },
    PoolMetric {
        name: "pgpool_servers_idle",
        help: "Server connections idle in the pool, ready for a client",
        kind: Kind::Gauge,
        value: |_, c| u64::from(c.idle),
    },
    PoolMetric {
        name: "pgpool_servers_used",
        help: "Idle server connections that may need a check before use; not tracked \
               separately yet, so equal to pgpool_servers_idle (do not add the two)",
        kind: Kind::Gauge,
        value: |_, c| u64::from(c.idle),
    },
    PoolMetric {
        name: "pgpool_servers_connecting",
        help: "Server connections being opened (connect, TLS, login)",
        kind: Kind::Gauge,
        value: |_, c| u64::from(c.connecting),
    },
    PoolMetric {
        name: "pgpool_transactions",
        help: "Transactions completed (server connection released at ReadyForQuery idle)",
        kind: Kind::Counter,
        value: |p, _| p.stats.xact_count.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_queries",
        help: "Queries run (simple Query messages and extended-protocol Executes)",
        kind: Kind::Counter,
        value: |p, _| p.stats.query_count.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_client_received_bytes",
        help: "Bytes received from clients and relayed to servers",
        kind: Kind::Counter,
        value: |p, _| p.stats.bytes_in.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_server_received_bytes",
        help: "Bytes received from servers and relayed to clients",
        kind: Kind::Counter,
        value: |p, _| p.stats.bytes_out.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_server_connects",
        help: "Server connections opened and logged in",
        kind: Kind::Counter,
        value: |p, _| p.stats.server_connects.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_server_closes",
        help: "Server connections closed",
        kind: Kind::Counter,
        value: |p, _| p.stats.server_closes.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_server_resets",
        help: "Reset queries run on released server connections",
        kind: Kind::Counter,
        value: |p, _| p.stats.resets.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_prepared_statement_hits",
        help: "Prepared statements already present on the serving connection",
        kind: Kind::Counter,
        value: |p, _| p.stats.prepared_hits.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_prepared_statement_misses",
        help: "Prepared statements prepared on a connection that lacked them",
        kind: Kind::Counter,
        value: |p, _| p.stats.prepared_misses.load(Relaxed),
    },
    PoolMetric {
        name: "pgpool_prepared_statement_evictions",
        help: "Prepared statements closed to stay within max_prepared_statements",
        kind: Kind::Counter,
        value: |p, _| p.stats.prepared_evictions.load(Relaxed),
    },
];

/// One pool-wide latency histogram: its buckets and its sum in microseconds.
struct PoolHistogram {
    name: &'static str,
    help: &'static str,
    buckets: fn(&Pool) -> &LatencyBuckets,
    sum_us: fn(&Pool) -> u64,
}

const POOL_HISTOGRAMS: &[PoolHistogram] = &[
    PoolHistogram {
        name: "pgpool_client_wait_seconds",
        help: "Time clients queued for a server connection (checkouts that had to wait)",
        buckets: |p| &p.stats.wait_times,
        sum_us: |p| p.stats.wait_us.load(Relaxed),
    },
    PoolHistogram {
        name: "pgpool_transaction_seconds",
        help: "Time a client held a server connection, per checkout (a transaction in \
               transaction mode)",
        buckets: |p| &p.stats.xact_times,
        sum_us: |p| p.stats.xact_us.load(Relaxed),
    },
];

/// Reads the pooler's state on each scrape.
#[derive(Debug)]
struct Scrape {
    shared: Arc<Shared>,
}

/// The labels of a pool's samples.
fn labels(p: &Pool) -> [(&'static str, &str); 2] {
    [
        ("database", p.key.database.as_str()),
        ("user", p.key.user.as_str()),
    ]
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools: Vec<(Arc<Pool>, PoolCounts)> = self
            .shared
            .registry
            .pools()
            .into_iter()
            .filter(|p| !p.is_closed())
            .map(|p| {
                let counts = p.counts();
                (p, counts)
            })
            .collect();
        for m in POOL_METRICS {
            let mut family = enc.encode_descriptor(m.name, m.help, None, m.kind.into())?;
            for (pool, counts) in &pools {
                let value = (m.value)(pool, counts);
                encode_value(m.kind, value, family.encode_family(&labels(pool))?)?;
            }
        }
        let mut family = enc.encode_descriptor(
            "pgpool_clients_oldest_wait_seconds",
            "How long the longest-waiting client of the pool has waited (0 if none waits)",
            None,
            MetricType::Gauge,
        )?;
        for (pool, _) in &pools {
            ConstGauge::new(pool.oldest_wait().as_secs_f64())
                .encode(family.encode_family(&labels(pool))?)?;
        }
        for h in POOL_HISTOGRAMS {
            let mut family = enc.encode_descriptor(h.name, h.help, None, MetricType::Histogram)?;
            for (pool, _) in &pools {
                let counts = (h.buckets)(pool).counts();
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_US
                    .iter()
                    .zip(counts)
                    .map(|(&bound, n)| (bound as f64 / 1e6, n))
                    .collect();
                let total = counts.iter().sum();
                let sum = (h.sum_us)(pool) as f64 / 1e6;
                family
                    .encode_family(&labels(pool))?
                    .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)?;
            }
        }
        self.encode_global(&mut enc)
    }
}

impl Scrape {
    fn encode_global(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.shared.stats;
        let globals: [(&str, &str, Kind, u64); 5] = [
            (
                "pgpool_clients_connected",
                "Client connections open now (admin console included)",
                Kind::Gauge,
                s.clients_now.load(Relaxed),
            ),
            (
                "pgpool_clients_refused",
                "Client connections refused because max_client_conn was reached",
                Kind::Counter,
                s.clients_refused.load(Relaxed),
            ),
            (
                "pgpool_login_failures",
                "Client logins that failed authentication",
                Kind::Counter,
                s.login_failures.load(Relaxed),
            ),
            (
                "pgpool_protocol_errors",
                "Clients disconnected for breaking the protocol",
                Kind::Counter,
                s.protocol_errors.load(Relaxed),
            ),
            (
                "pgpool_cancels_forwarded",
                "Cancel requests forwarded to a server",
                Kind::Counter,
                s.cancels_forwarded.load(Relaxed),
            ),
        ];
        for (name, help, kind, value) in globals {
            let family = enc.encode_descriptor(name, help, None, kind.into())?;
            encode_value(kind, value, family)?;
        }
        let mut family = enc.encode_descriptor(
            "pgpool_errors",
            "Errors by kind: refused (max_client_conn), login, protocol, wait_timeout \
             (query_wait_timeout), server_connect (a server connection could not be opened), \
             server_lost (a server connection died mid-transaction), query_timeout, \
             idle_transaction_timeout, client_idle_timeout (clients closed by those limits)",
            None,
            MetricType::Counter,
        )?;
        let pools = self.shared.registry.pools();
        let per_pool = |f: fn(&crate::observe::PoolStats) -> &std::sync::atomic::AtomicU64| {
            pools.iter().map(|p| f(&p.stats).load(Relaxed)).sum::<u64>()
        };
        for (kind, n) in [
            ("refused", s.clients_refused.load(Relaxed)),
            ("login", s.login_failures.load(Relaxed)),
            ("protocol", s.protocol_errors.load(Relaxed)),
            ("wait_timeout", per_pool(|p| &p.wait_timeouts)),
            ("server_connect", per_pool(|p| &p.connect_failures)),
            ("server_lost", per_pool(|p| &p.servers_lost)),
            ("query_timeout", per_pool(|p| &p.query_timeouts)),
            (
                "idle_transaction_timeout",
                per_pool(|p| &p.idle_transaction_timeouts),
            ),
            ("client_idle_timeout", per_pool(|p| &p.client_idle_timeouts)),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        let mut family = enc.encode_descriptor(
            "pgpool_reloads",
            "Configuration reloads, by result (failed: the old configuration stayed in force)",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("ok", s.reloads_ok.load(Relaxed)),
            ("failed", s.reloads_failed.load(Relaxed)),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("result", result)])?)?;
        }
        self.encode_hosts(enc)?;
        let mut family = enc.encode_descriptor(
            "pgpool_tls_handshakes",
            "Client TLS handshakes, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("ok", s.tls_handshakes_ok.load(Relaxed)),
            ("failed", s.tls_handshakes_failed.load(Relaxed)),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("result", result)])?)?;
        }
        let mut family = enc.encode_descriptor(
            "pgpool_build_info",
            "The running version of pgpool-rs (always 1)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(family.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)
    }
}

impl Scrape {
    /// Per host: up, primary, connections; per database entry: failovers and role changes.
    fn encode_hosts(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sets = self.shared.host_sets();
        let views: Vec<_> = sets.iter().map(|s| (s.clone(), s.views())).collect();
        type HostValue = fn(&crate::server::hosts::HostView) -> i64;
        let gauges: [(&str, &str, HostValue); 3] = [
            (
                "pgpool_host_up",
                "1 while the host is in use, 0 while set aside after a failure",
                |h| i64::from(h.up),
            ),
            (
                "pgpool_host_primary",
                "1 if the host last reported it is a primary, 0 if a standby, -1 if unknown",
                |h| match h.role {
                    Some(crate::server::hosts::ServerRole::Primary) => 1,
                    Some(crate::server::hosts::ServerRole::Standby) => 0,
                    None => -1,
                },
            ),
            (
                "pgpool_host_connections",
                "Server connections open to the host",
                |h| i64::from(h.connections),
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (set, hosts) in &views {
                for h in hosts {
                    let port = h.port.to_string();
                    let labels = [
                        ("database", set.database.as_str()),
                        ("host", h.name.as_str()),
                        ("port", port.as_str()),
                    ];
                    ConstGauge::new(value(h)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        type SetCounter = fn(&crate::server::hosts::HostSet) -> u64;
        let counters: [(&str, &str, SetCounter); 2] = [
            (
                "pgpool_failovers",
                "Times a different host became the primary of a database entry",
                |s| s.failovers.load(Relaxed),
            ),
            (
                "pgpool_role_changes",
                "Times a host was seen to change role (primary/standby)",
                |s| s.role_changes.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (set, _) in &views {
                ConstCounter::new(value(set))
                    .encode(family.encode_family(&[("database", set.database.as_str())])?)?;
            }
        }
        Ok(())
    }
}

impl From<Kind> for MetricType {
    fn from(k: Kind) -> MetricType {
        match k {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
        }
    }
}

fn encode_value(
    kind: Kind,
    value: u64,
    enc: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match kind {
        Kind::Gauge => ConstGauge::new(value).encode(enc),
        Kind::Counter => ConstCounter::new(value).encode(enc),
    }
}
