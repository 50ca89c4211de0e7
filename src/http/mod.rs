//! The HTTP side on `listen.http_addr`: `/health/live`, `/health/ready` and
//! `/metrics` (Prometheus text). hyper serves HTTP/1.1 on the pooler's own
//! runtime; every answer is computed from read-only state ([`Shared`]: the
//! config snapshot, the pools' counts and the stats atomics), so nothing here
//! touches the per-message path.

mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::app::Shared;
use crate::config::Role;

/// HTTP connections served at once; more wait in the listen backlog. Probes
/// and scrapers need a handful; the cap keeps a flood from starving clients
/// of the (by default single-threaded) runtime.
const MAX_CONNECTIONS: usize = 64;
/// A connection that has not sent a complete request head within this time
/// is closed; this also closes idle keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection older than this is asked to close after its current request.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);
/// How long a connection asked to close may take to finish its response.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

const TEXT: &str = "text/plain; charset=utf-8";

/// Binds the HTTP listening address; done before anything is spawned so a
/// failure stops startup like a failure to bind the client port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves HTTP on `listener` (none when `http_addr = ""`) until the task is
/// aborted; `addr` announces a reload's new `http_addr`: the new socket
/// replaces the old one (kept, logged, if it cannot be bound), and `""`
/// stops serving.
pub async fn serve(
    mut listener: Option<TcpListener>,
    shared: Arc<Shared>,
    mut addr: watch::Receiver<Option<SocketAddr>>,
) {
    if let Some(a) = listener.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(addr = %a, "http listening (/metrics, /health/live, /health/ready)");
    }
    let state = Arc::new(Http::new(shared));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            r = accept(listener.as_ref()) => r,
            Ok(()) = addr.changed() => {
                let want = *addr.borrow_and_update();
                listener = rebind(listener, want).await;
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = state.respond(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "http connection ended with an error");
                    }
                }
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
                }
            }
            drop(permit);
        });
    }
}

/// The next connection on `listener`; never ready without one.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The listener after a reload set `http_addr` to `want`: the current one if
/// it is already there or `want` cannot be bound (logged), none for `""`.
async fn rebind(current: Option<TcpListener>, want: Option<SocketAddr>) -> Option<TcpListener> {
    let Some(want) = want else {
        tracing::info!("http_addr is empty: HTTP endpoints stopped");
        return None;
    };
    if current.as_ref().and_then(|l| l.local_addr().ok()) == Some(want) {
        return current;
    }
    crate::net::listener::bind_for_reload(want, "http")
        .await
        .or(current)
}

/// What the HTTP handlers share: the pooler's state, the metrics renderer,
/// and the writer databases seen reachable so far.
#[derive(Debug)]
struct Http {
    shared: Arc<Shared>,
    metrics: metrics::Metrics,
}

impl Http {
    fn new(shared: Arc<Shared>) -> Http {
        Http {
            metrics: metrics::Metrics::new(shared.clone()),
            shared,
        }
    }

    /// Routes one request. Only GET is served; the query string is ignored.
    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if !matches!(path, "/health/live" | "/health/ready" | "/metrics") {
            return text(StatusCode::NOT_FOUND, "not found\n".into());
        }
        if req.method() != Method::GET {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        match path {
            "/health/live" => text(StatusCode::OK, "ok\n".into()),
            "/health/ready" => match self.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            _ => match self.metrics.render() {
                Ok(body) => {
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(metrics::CONTENT_TYPE),
                    );
                    r
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rendering /metrics failed");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "metrics unavailable\n".into(),
                    )
                }
            },
        }
    }

    /// Ready = not shutting down, the client listener is up, and every
    /// `role = "writer"` entry has reached its server at least once: a server
    /// connection of one of its pools logged in, or the startup probe got an
    /// answer (see `app::probe_writers`). Sticky, so a pool closed by KILL or
    /// replaced by a reload does not make the pooler unready again.
    fn readiness(&self) -> Result<(), String> {
        if *self.shared.shutdown.borrow() {
            return Err("shutting down".into());
        }
        if !self.shared.stats.listening.load(Relaxed) {
            return Err("the client listener is not listening".into());
        }
        let snapshot = self.shared.snapshot();
        for pool in self.shared.registry.pools() {
            if pool.stats.server_connects.load(Relaxed) > 0 {
                self.shared.mark_reached(&pool.key.database);
            }
        }
        let missing: Vec<&str> = snapshot
            .config
            .databases
            .values()
            .filter(|db| db.role == Role::Writer && !self.shared.is_reached(&db.name))
            .map(|db| db.name.as_str())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "writer databases without a server connection yet: {}",
                missing.join(", ")
            ))
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    r
}

#[cfg(test)]
mod tests;
