//! The timeouts a relay run enforces (PgBouncer's `query_timeout`,
//! `idle_transaction_timeout`, and `client_idle_timeout` for a client that
//! holds its server between transactions in session mode). Off by default;
//! when all are off no timer exists and the relay reads no clock.
//!
//! One timer serves them all: each time the relay is about to wait, it works
//! out which wait it is in ([`Waiting`]); a new kind of wait restarts the
//! timer, the same kind keeps it running (a large result streaming in is
//! still the same query).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Limits on how long a relay run may wait, each 0 = off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Replies to a query outstanding this long: `query_timeout`.
    pub query: Duration,
    /// Client silent inside a transaction this long: `idle_transaction_timeout`.
    pub idle_in_transaction: Duration,
    /// Client silent outside a transaction (session mode) this long:
    /// `client_idle_timeout`.
    pub client_idle: Duration,
}

impl Timeouts {
    fn any(&self) -> bool {
        !(self.query.is_zero() && self.idle_in_transaction.is_zero() && self.client_idle.is_zero())
    }

    fn limit(&self, waiting: Waiting) -> Duration {
        match waiting {
            Waiting::Query => self.query,
            Waiting::IdleInTransaction => self.idle_in_transaction,
            Waiting::ClientIdle => self.client_idle,
        }
    }
}

/// What the relay is waiting for when it goes to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Replies from the server.
    Query,
    /// The client, with a transaction open.
    IdleInTransaction,
    /// The client, outside a transaction (session mode).
    ClientIdle,
}

/// The timer of one relay run.
#[derive(Debug, Default)]
pub struct Deadline {
    limits: Timeouts,
    timer: Option<Pin<Box<Sleep>>>,
    current: Option<Waiting>,
}

impl Deadline {
    /// A deadline enforcing `limits`.
    pub fn new(limits: Timeouts) -> Deadline {
        Deadline {
            limits,
            timer: None,
            current: None,
        }
    }

    /// Called when the relay is about to return Pending in state `waiting`:
    /// Ready with the kind of wait that ran out.
    pub fn poll(&mut self, waiting: Option<Waiting>, cx: &mut Context<'_>) -> Poll<Waiting> {
        if !self.limits.any() {
            return Poll::Pending;
        }
        let waiting = waiting.filter(|w| !self.limits.limit(*w).is_zero());
        if waiting != self.current {
            self.current = waiting;
            if let Some(w) = waiting {
                let at = Instant::now() + self.limits.limit(w);
                match &mut self.timer {
                    Some(t) => t.as_mut().reset(at),
                    None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
        }
        if let (Some(w), Some(t)) = (self.current, &mut self.timer) {
            if t.as_mut().poll(cx).is_ready() {
                return Poll::Ready(w);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_new_kind_of_wait_restarts_the_timer_and_the_same_kind_keeps_it() {
        let limits = Timeouts {
            query: 200 * MS,
            idle_in_transaction: 150 * MS,
            client_idle: Duration::ZERO,
        };
        let mut d = Deadline::new(limits);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(d.poll(Some(Waiting::Query), &mut cx).is_pending());
        tokio::time::sleep(120 * MS).await;
        assert!(d.poll(Some(Waiting::Query), &mut cx).is_pending());
        // Replies done; now the client idles inside the transaction: a fresh
        // 150 ms, though the query's 200 ms will have passed meanwhile.
        assert!(d
            .poll(Some(Waiting::IdleInTransaction), &mut cx)
            .is_pending());
        tokio::time::sleep(100 * MS).await;
        assert!(d
            .poll(Some(Waiting::IdleInTransaction), &mut cx)
            .is_pending());
        tokio::time::sleep(80 * MS).await;
        assert_eq!(
            d.poll(Some(Waiting::IdleInTransaction), &mut cx),
            Poll::Ready(Waiting::IdleInTransaction)
        );
        // A wait whose limit is off never fires.
        assert!(d.poll(Some(Waiting::ClientIdle), &mut cx).is_pending());
        tokio::time::sleep(250 * MS).await;
        assert!(d.poll(Some(Waiting::ClientIdle), &mut cx).is_pending());
        assert!(d.poll(None, &mut cx).is_pending());
    }

    #[tokio::test]
    async fn a_query_limit_counts_from_the_start_of_the_wait() {
        let mut d = Deadline::new(Timeouts {
            query: 150 * MS,
            ..Timeouts::default()
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(d.poll(Some(Waiting::Query), &mut cx).is_pending());
        tokio::time::sleep(60 * MS).await;
        assert!(d.poll(Some(Waiting::Query), &mut cx).is_pending());
        tokio::time::sleep(100 * MS).await;
        assert_eq!(
            d.poll(Some(Waiting::Query), &mut cx),
            Poll::Ready(Waiting::Query)
        );
    }
}
