//! Accepting clients. `max_client_conn` is read from the config in force
//! at each accept (a reload changes it at once): a client past it is told
//! FATAL 53300 (after its startup packet, so drivers show the message) and
//! counted. A reload that changes `listen.addr` re-binds: the new socket
//! replaces the old one, accepted clients stay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::app::Shared;
use crate::error::{sqlstate, ClientError};
use crate::net::ClientStream;
use crate::session;

/// Accepts clients until the task is aborted; `addr` announces re-binds.
pub async fn accept_loop(
    mut listener: TcpListener,
    shared: Arc<Shared>,
    mut addr: watch::Receiver<SocketAddr>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Ok(()) = addr.changed() => {
                let want = *addr.borrow_and_update();
                if let Some(l) = rebind(&listener, want).await {
                    listener = l;
                }
                continue;
            }
        };
        let (stream, _peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let max = u64::from(shared.snapshot().config.listen.max_client_conn);
        if shared.stats.clients_now.load(Ordering::Relaxed) >= max {
            shared.stats.clients_refused.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream, shared.clone()));
            continue;
        }
        // Counted here, before the task runs, so a burst of accepts cannot
        // overshoot the limit.
        shared.stats.clients_now.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            session::run(stream, shared.clone()).await;
            shared.stats.clients_now.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Binds `want` for a reload that changed `listen.addr`; `None` (keep the
/// old socket, logged) if it is the same address or cannot be bound.
async fn rebind(current: &TcpListener, want: SocketAddr) -> Option<TcpListener> {
    if current.local_addr().ok() == Some(want) {
        return None;
    }
    bind_for_reload(want, "client").await
}

/// Binds `want` for a reload that changed the address of the `which`
/// listener (client, http), logging the outcome; `None` if it cannot be
/// bound (the caller keeps its old socket).
pub async fn bind_for_reload(want: SocketAddr, which: &str) -> Option<TcpListener> {
    match TcpListener::bind(want).await {
        Ok(l) => {
            tracing::info!(addr = %want, listener = which, "listening on the new address; the old one is closed");
            Some(l)
        }
        Err(e) => {
            tracing::error!(addr = %want, listener = which, error = %e, "cannot listen on the new address; still on the old one");
            None
        }
    }
}

async fn refuse(stream: TcpStream, shared: Arc<Shared>) {
    let mut client = ClientStream::Plain(stream);
    let tls = shared.snapshot().client_tls.clone();
    let _ = tokio::time::timeout(
        session::startup::REFUSE_GRACE,
        session::startup::read_startup(&mut client, tls.as_deref(), &shared.stats),
    )
    .await;
    let e = ClientError::fatal(
        sqlstate::TOO_MANY_CONNECTIONS,
        "no more connections allowed (max_client_conn)",
    );
    session::send_error(&mut client, &e).await;
}
