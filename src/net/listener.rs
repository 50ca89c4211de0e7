//! Accepting clients: `max_client_conn` is a semaphore; a client past it is
//! told FATAL 53300 (after its startup packet, so drivers show the message)
//! and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::app::Shared;
use crate::error::{sqlstate, ClientError};
use crate::net::ClientStream;
use crate::session;

/// Accepts clients until the task is aborted.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, max_clients: u32) {
    let permits = Arc::new(Semaphore::new(max_clients as usize));
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    shared.stats.clients_now.fetch_add(1, Ordering::Relaxed);
                    session::run(stream, shared.clone()).await;
                    shared.stats.clients_now.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(_) => {
                shared.stats.clients_refused.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(refuse(stream, shared.clone()));
            }
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
