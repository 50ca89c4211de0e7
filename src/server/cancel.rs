//! Forwarding a client's CancelRequest to the server connection serving it.
//!
//! Each client has a [`CancelSlot`]: the session writes the key of the server
//! it holds at checkout and clears it at release. A cancel reads the key and
//! marks the slot; a connection whose slot was marked is closed at release
//! instead of being reused, so a late cancel can never hit another client.

use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::protocol::startup::encode_cancel;

/// A server connection's cancel key and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKey {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// Its backend pid.
    pub pid: u32,
    /// Its cancel secret.
    pub secret: u32,
}

#[derive(Debug, Default)]
struct SlotState {
    serving: Option<ServerKey>,
    cancelled: bool,
}

/// The per-client record of which server, if any, is serving it now, and
/// the client's own wake-up for being told to go (shutdown, admin KILL).
#[derive(Debug, Default)]
pub struct CancelSlot {
    state: Mutex<SlotState>,
    /// Notified when the client must close at its next idle moment.
    pub kill: tokio::sync::Notify,
    /// What `SHOW CLIENTS` shows of the client.
    pub card: crate::observe::cards::ClientCard,
}

impl CancelSlot {
    /// Records the server that now serves the client.
    pub fn serve(&self, key: ServerKey) {
        if let Ok(mut s) = self.state.lock() {
            s.serving = Some(key);
            s.cancelled = false;
        }
    }

    /// Clears the record at release; true if a cancel was forwarded to that
    /// server meanwhile (the connection must then not be reused).
    pub fn release(&self) -> bool {
        match self.state.lock() {
            Ok(mut s) => {
                s.serving = None;
                std::mem::take(&mut s.cancelled)
            }
            Err(_) => true,
        }
    }

    /// Tells the client to close at its next idle moment (now, if idle).
    pub fn close_when_idle(&self) {
        self.card
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// Takes the key to cancel, marking the connection as cancelled.
    pub fn take_for_cancel(&self) -> Option<ServerKey> {
        let mut s = self.state.lock().ok()?;
        let key = s.serving?;
        s.cancelled = true;
        Some(key)
    }
}

/// Sends a CancelRequest for `key` on a new connection to its server.
pub async fn send_cancel(key: ServerKey) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(key.addr).await?;
    let mut buf = BytesMut::with_capacity(16);
    encode_cancel(&mut buf, key.pid, key.secret);
    stream.write_all(&buf).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_marks_the_connection() {
        let slot = CancelSlot::default();
        assert_eq!(slot.take_for_cancel(), None);
        let key = ServerKey {
            addr: "127.0.0.1:5432".parse().unwrap(),
            pid: 1,
            secret: 2,
        };
        slot.serve(key);
        assert!(!slot.release());
        slot.serve(key);
        assert_eq!(slot.take_for_cancel(), Some(key));
        assert!(slot.release());
        assert_eq!(slot.take_for_cancel(), None);
    }
}

/// Pooler-issued cancel keys of connected clients.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    clients: Mutex<std::collections::HashMap<u32, (u32, std::sync::Arc<CancelSlot>)>>,
}

impl CancelRegistry {
    /// Issues a fresh (pid, secret) key for a new client.
    pub fn register(&self) -> (u32, u32, std::sync::Arc<CancelSlot>) {
        let slot = std::sync::Arc::new(CancelSlot::default());
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let pid = rand::random::<u32>() & 0x7fff_ffff;
            if pid == 0 || map.contains_key(&pid) {
                continue;
            }
            let secret = rand::random::<u32>();
            map.insert(pid, (secret, slot.clone()));
            return (pid, secret, slot);
        }
    }

    /// Forgets a client's key (at disconnect).
    pub fn remove(&self, pid: u32) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
    }

    /// Handles a CancelRequest: forwards it to the serving server, if the key
    /// matches and the client is in a transaction.
    pub fn cancel(&self, pid: u32, secret: u32, stats: &crate::observe::GlobalStats) {
        let slot = {
            let map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&pid) {
                Some((s, slot)) if *s == secret => slot.clone(),
                _ => return,
            }
        };
        if let Some(key) = slot.take_for_cancel() {
            stats
                .cancels_forwarded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                if let Err(e) = send_cancel(key).await {
                    tracing::warn!(error = %e, "forwarding cancel request failed");
                }
            });
        }
    }

    /// Tells every client to close at its next idle moment.
    pub fn kill_all(&self) {
        let map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for (_, slot) in map.values() {
            slot.close_when_idle();
        }
    }

    /// Every connected client's pid and slot, by pid.
    pub fn slots(&self) -> Vec<(u32, std::sync::Arc<CancelSlot>)> {
        let map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(pid, (_, s))| (*pid, s.clone())).collect();
        v.sort_by_key(|(pid, _)| *pid);
        v
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
