//! Forwarding a client's CancelRequest to the server connection serving it.
//!
//! Each client has a [`CancelSlot`]: the session writes the key of the server
//! it holds at checkout and clears it at release. A cancel reads the key and
//! marks the slot; a connection whose slot was marked is closed at release
//! instead of being reused, so a late cancel can never hit another client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// `CancelSlot::state`: set while a server serves the client.
const SERVING: u64 = 0b01;
/// `CancelSlot::state`: set once a cancel was forwarded to that server.
const CANCELLED: u64 = 0b10;
/// `CancelSlot::state`: one step of the generation in the upper bits.
const GENERATION: u64 = 0b100;

/// The per-client record of which server, if any, is serving it now, and
/// the client's own wake-up for being told to go (shutdown, admin KILL).
///
/// Lock-free on the transaction path: the session's `serve` and `release`
/// are a store and a read-modify-write on `state`. A cancel reads the key
/// and marks `state` with one compare-and-swap against the value it read,
/// which fails if the client released (and perhaps took another server)
/// meanwhile; every `serve` starts a new generation, so a key read for an
/// earlier serving can never be confirmed against a later one.
#[derive(Debug, Default)]
pub struct CancelSlot {
    /// Generation (upper bits) | CANCELLED | SERVING.
    state: AtomicU64,
    /// pid << 32 | secret of the serving server (valid for `state`'s generation).
    key: AtomicU64,
    /// Its address; written only when it differs from the last one.
    addr: Mutex<Option<SocketAddr>>,
    /// [`addr_code`] of `addr`, to skip the lock when the address is unchanged.
    addr_code: AtomicU64,
    /// Notified when the client must close at its next idle moment.
    pub kill: tokio::sync::Notify,
    /// What `SHOW CLIENTS` shows of the client.
    pub card: crate::observe::cards::ClientCard,
}

/// An IPv4 address and port as a nonzero number; 0 for IPv6 (compared under
/// the lock instead).
fn addr_code(addr: SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(a) => 1 << 48 | u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()),
        SocketAddr::V6(_) => 0,
    }
}

impl CancelSlot {
    /// Records the server that now serves the client. Called by the client's
    /// own task only, between `release`s.
    pub fn serve(&self, key: ServerKey) {
        let code = addr_code(key.addr);
        if code == 0 || code != self.addr_code.load(Ordering::Relaxed) {
            *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.addr);
            self.addr_code.store(code, Ordering::Relaxed);
        }
        self.key.store(
            u64::from(key.pid) << 32 | u64::from(key.secret),
            Ordering::Relaxed,
        );
        // Not serving now, so no cancel can change `state` concurrently.
        let generation = self.state.load(Ordering::Relaxed) & !(SERVING | CANCELLED);
        self.state.store(
            generation.wrapping_add(GENERATION) | SERVING,
            Ordering::Release,
        );
    }

    /// Clears the record at release; true if a cancel was forwarded to that
    /// server meanwhile (the connection must then not be reused).
    pub fn release(&self) -> bool {
        let before = self
            .state
            .fetch_and(!(SERVING | CANCELLED), Ordering::AcqRel);
        before & CANCELLED != 0
    }

    /// Tells the client to close at its next idle moment (now, if idle).
    pub fn close_when_idle(&self) {
        self.card
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// Takes the key to cancel, marking the connection as cancelled; `None`
    /// when no server serves the client.
    pub fn take_for_cancel(&self) -> Option<ServerKey> {
        let mut seen = self.state.load(Ordering::Acquire);
        loop {
            if seen & SERVING == 0 {
                return None;
            }
            // Written before `state` by the `serve` that `seen` came from; a
            // later `serve` changes the generation and fails the swap below.
            let key = self.key.load(Ordering::Relaxed);
            let addr = (*self.addr.lock().unwrap_or_else(|p| p.into_inner()))?;
            match self.state.compare_exchange(
                seen,
                seen | CANCELLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(ServerKey {
                        addr,
                        pid: (key >> 32) as u32,
                        secret: key as u32,
                    })
                }
                Err(now) => seen = now,
            }
        }
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
        // A new serving starts unmarked, on another address too.
        let v6 = ServerKey {
            addr: "[::1]:5433".parse().unwrap(),
            pid: 7,
            secret: u32::MAX,
        };
        slot.serve(v6);
        assert_eq!(slot.take_for_cancel(), Some(v6));
        assert!(slot.release());
        slot.serve(key);
        assert!(!slot.release());
    }

    /// A cancel racing with release-and-serve: every key a cancel took was
    /// the key of a serving whose release saw the mark (so that connection
    /// was closed, never handed to another client with a cancel in flight).
    #[test]
    fn a_cancel_never_marks_a_later_serving() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let slot = Arc::new(CancelSlot::default());
        let done = Arc::new(AtomicBool::new(false));
        let takes = Arc::new(AtomicU64::new(0));
        let canceller = {
            let (slot, done, takes) = (slot.clone(), done.clone(), takes.clone());
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    if let Some(k) = slot.take_for_cancel() {
                        taken.push(k);
                        takes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                taken
            })
        };
        // Serve and release until the canceller has raced with us many times
        // (however the threads get scheduled), or 10 s.
        let started = Instant::now();
        let mut marked = std::collections::HashSet::new();
        let mut pid = 0u32;
        while takes.load(Ordering::Relaxed) < 2_000 && started.elapsed() < Duration::from_secs(10) {
            pid += 1;
            let port = if pid.is_multiple_of(3) { 5432 } else { 5433 };
            slot.serve(ServerKey {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                pid,
                secret: pid.wrapping_mul(2_654_435_761),
            });
            if slot.release() {
                marked.insert(pid);
            }
        }
        done.store(true, Ordering::Relaxed);
        let taken = canceller.join().unwrap();
        assert!(!taken.is_empty(), "the canceller never saw a serving");
        for k in &taken {
            // The key is whole: pid, secret and address of one serving.
            assert_eq!(k.secret, k.pid.wrapping_mul(2_654_435_761), "{k:?}");
            assert_eq!(
                k.addr.port(),
                if k.pid.is_multiple_of(3) { 5432 } else { 5433 },
                "{k:?}"
            );
            assert!(
                marked.contains(&k.pid),
                "cancel took {k:?}, its release saw no mark"
            );
        }
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
