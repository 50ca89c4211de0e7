//! `max_db_connections`: one cap shared by every pool of a database entry.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, Weak};

use super::pool::Pool;

/// The shared connection count of one database entry.
#[derive(Debug, Default)]
pub struct DbLimit {
    open: AtomicU32,
    max: AtomicU32,
    /// Pools that wanted a connection while the cap was reached.
    wanting: Mutex<Vec<Weak<Pool>>>,
    /// `wanting` is not empty (read on every checkin without locking).
    any_wanting: AtomicBool,
}

impl DbLimit {
    /// A limit of `max` connections; 0 = unlimited.
    pub fn new(max: u32) -> Self {
        DbLimit {
            open: AtomicU32::new(0),
            max: AtomicU32::new(max),
            wanting: Mutex::default(),
            any_wanting: AtomicBool::new(false),
        }
    }

    /// Changes the cap (on reload).
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Server connections open (or opening) for this database entry.
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a slot for a new connection if the cap allows.
    pub fn try_acquire(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back and lets one waiting pool try again.
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if !self.any_wanting.load(Ordering::Acquire) {
            return;
        }
        let next = self.wanting.lock().ok().and_then(|mut w| {
            let mut found = None;
            while let Some(p) = w.pop() {
                if let Some(p) = p.upgrade() {
                    found = Some(p);
                    break;
                }
            }
            self.any_wanting.store(!w.is_empty(), Ordering::Release);
            found
        });
        if let Some(pool) = next {
            pool.wake_for_db_slot();
        }
    }

    /// Records that `pool` wants a slot when one frees up.
    pub fn want(&self, pool: Weak<Pool>) {
        if let Ok(mut w) = self.wanting.lock() {
            if !w.iter().any(|p| p.ptr_eq(&pool)) {
                w.insert(0, pool);
            }
            self.any_wanting.store(true, Ordering::Release);
        }
    }

    /// True if some pool is waiting for a slot.
    pub fn has_wanting(&self) -> bool {
        self.any_wanting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_unlimited() {
        let l = DbLimit::new(2);
        assert!(l.try_acquire());
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        l.release();
        assert!(l.try_acquire());
        let u = DbLimit::new(0);
        for _ in 0..1000 {
            assert!(u.try_acquire());
        }
        assert_eq!(u.open(), 1000);
    }
}
