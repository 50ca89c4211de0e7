//! The login throttle: failed logins counted per client address, to slow down
//! password guessing.
//!
//! Per address (an IPv4 address; an IPv6 /64, which one host can fill at will),
//! failures are counted in a window that starts at the first failure
//! (`auth.login_failure_window`). Up to `auth.login_failure_limit` failures nothing
//! happens; each further failure's error is answered late, 0.25 s doubling up to 2 s.
//! A login with the right password is never delayed and does not reset the count (an
//! attacker with one valid account could otherwise reset it between guesses). From
//! `auth.login_failure_block` failures on, new connections from the address are refused
//! with 53300 before authentication, until the window ends.
//!
//! The table is bounded ([`MAX_ADDRESSES`]): when full, expired entries go first, then
//! the oldest. It is touched under a mutex only when a login fails, or, for the
//! refusal check, when a login starts while any address is being counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Auth;
use crate::error::{sqlstate, ClientError};

/// Addresses tracked at most; many more distinct addresses than this failing at once
/// makes the throttle forget the oldest (it cannot stop a distributed guesser anyway).
pub const MAX_ADDRESSES: usize = 10_000;
/// Delay of the first failure over the limit; it doubles with each further failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest delay of a failure's answer.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// The failed-login counts of recent addresses (one per pooler, in `Shared`).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// False while the table is empty: lets a login skip the lock.
    any: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The first failure of the current window.
    since: Instant,
    failures: u32,
}

/// What a failed login should do before its error is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Failures from the address in the current window, this one included.
    pub failures: u32,
    /// How long to hold the error back.
    pub delay: Duration,
}

/// The key of an address: IPv4 (also IPv4-mapped IPv6) as is, other IPv6 by /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl LoginThrottle {
    /// Refuses a login from `ip` that is over `auth.login_failure_block`, before any
    /// password is exchanged.
    pub fn admit(&self, ip: IpAddr, auth: &Auth, now: Instant) -> Result<(), ClientError> {
        if auth.login_failure_limit == 0
            || auth.login_failure_block == 0
            || !self.any.load(Ordering::Relaxed)
        {
            return Ok(());
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = entries.get(&key_of(ip)) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(e.since);
        if e.failures < auth.login_failure_block || elapsed >= auth.login_failure_window {
            return Ok(());
        }
        let retry = (auth.login_failure_window - elapsed).as_secs() + 1;
        Err(ClientError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("too many failed logins from this address: try again in {retry} s"),
        ))
    }

    /// Counts a failed login from `ip` and says how long to hold back its error.
    pub fn failed(&self, ip: IpAddr, auth: &Auth, now: Instant) -> Verdict {
        if auth.login_failure_limit == 0 {
            return Verdict {
                failures: 0,
                delay: Duration::ZERO,
            };
        }
        let key = key_of(ip);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(&key) && entries.len() >= MAX_ADDRESSES {
            let window = auth.login_failure_window;
            entries.retain(|_, e| now.saturating_duration_since(e.since) < window);
            if entries.len() >= MAX_ADDRESSES {
                let oldest = entries.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        let e = entries.entry(key).or_insert(Entry {
            since: now,
            failures: 0,
        });
        if now.saturating_duration_since(e.since) >= auth.login_failure_window {
            *e = Entry {
                since: now,
                failures: 0,
            };
        }
        e.failures = e.failures.saturating_add(1);
        let failures = e.failures;
        self.any.store(true, Ordering::Relaxed);
        drop(entries);
        let over = failures.saturating_sub(auth.login_failure_limit);
        let delay = if over == 0 {
            Duration::ZERO
        } else {
            FIRST_DELAY
                .saturating_mul(1u32 << (over - 1).min(16))
                .min(MAX_DELAY)
        };
        if over == 1 || failures == auth.login_failure_block {
            tracing::warn!(
                client = %ip,
                failures,
                refusing = failures == auth.login_failure_block,
                "repeated failed logins from one address: throttling"
            );
        }
        Verdict { failures, delay }
    }

    /// Addresses currently tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `authenticate` for a client at `peer` under the throttle: refused up front
/// when the address is blocked; a wrong password (28P01) is counted and its error
/// held back as the throttle says. Other outcomes pass through untouched.
pub async fn guard<T>(
    throttle: &LoginThrottle,
    peer: Option<std::net::SocketAddr>,
    auth: &Auth,
    authenticate: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let Some(ip) = peer.map(|p| p.ip()) else {
        return authenticate.await;
    };
    throttle.admit(ip, auth, Instant::now())?;
    let result = authenticate.await;
    if let Err(e) = &result {
        if e.code == sqlstate::INVALID_PASSWORD {
            let verdict = throttle.failed(ip, auth, Instant::now());
            if !verdict.delay.is_zero() {
                tokio::time::sleep(verdict.delay).await;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(limit: u32, window: u64, block: u32) -> Auth {
        Auth {
            login_failure_limit: limit,
            login_failure_window: Duration::from_secs(window),
            login_failure_block: block,
            ..Auth::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_over_the_limit_back_off_up_to_the_cap() {
        let t = LoginThrottle::default();
        let a = auth(3, 60, 0);
        let now = Instant::now();
        let delays: Vec<u64> = (0..8)
            .map(|_| t.failed(ip("10.0.0.1"), &a, now).delay.as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 0, 0, 250, 500, 1000, 2000, 2000]);
        // Another address is not affected.
        assert_eq!(t.failed(ip("10.0.0.2"), &a, now).delay, Duration::ZERO);
        // block = 0: never refused.
        assert!(t.admit(ip("10.0.0.1"), &a, now).is_ok());
    }

    #[test]
    fn the_window_restarts_the_count() {
        let t = LoginThrottle::default();
        let a = auth(1, 10, 0);
        let start = Instant::now();
        t.failed(ip("10.0.0.1"), &a, start);
        assert_eq!(t.failed(ip("10.0.0.1"), &a, start).failures, 2);
        let later = start + Duration::from_secs(10);
        let v = t.failed(ip("10.0.0.1"), &a, later);
        assert_eq!((v.failures, v.delay), (1, Duration::ZERO));
    }

    #[test]
    fn blocked_until_the_window_ends() {
        let t = LoginThrottle::default();
        let a = auth(2, 30, 4);
        let start = Instant::now();
        for _ in 0..3 {
            t.failed(ip("10.0.0.1"), &a, start);
        }
        assert!(t.admit(ip("10.0.0.1"), &a, start).is_ok());
        t.failed(ip("10.0.0.1"), &a, start);
        let e = t
            .admit(ip("10.0.0.1"), &a, start + Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(e.code, "53300");
        assert!(e.message.contains("try again in 26 s"), "{}", e.message);
        assert!(t.admit(ip("10.0.0.9"), &a, start).is_ok());
        assert!(t
            .admit(ip("10.0.0.1"), &a, start + Duration::from_secs(30))
            .is_ok());
        // Turning the throttle off lifts it at once (config reload).
        assert!(t.admit(ip("10.0.0.1"), &auth(0, 30, 4), start).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = LoginThrottle::default();
        let a = auth(1, 60, 0);
        let now = Instant::now();
        t.failed(ip("2001:db8:1:2::1"), &a, now);
        assert_eq!(t.failed(ip("2001:db8:1:2:ffff::9"), &a, now).failures, 2);
        assert_eq!(t.failed(ip("2001:db8:1:3::1"), &a, now).failures, 1);
        t.failed(ip("192.0.2.7"), &a, now);
        assert_eq!(t.failed(ip("::ffff:192.0.2.7"), &a, now).failures, 2);
    }

    #[test]
    fn the_table_is_bounded() {
        let t = LoginThrottle::default();
        let a = auth(5, 60, 0);
        let start = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 {
            let at = start + Duration::from_millis(u64::from(i));
            t.failed(IpAddr::V4(i.into()), &a, at);
        }
        assert_eq!(t.len(), MAX_ADDRESSES);
        // Full: the oldest entry (address 0) makes room.
        let late = start + Duration::from_secs(30);
        t.failed(ip("203.0.113.1"), &a, late);
        assert_eq!(t.len(), MAX_ADDRESSES);
        assert_eq!(t.failed(IpAddr::V4(0.into()), &a, late).failures, 1);
        // Once their window is over, expired entries are all dropped at once.
        t.failed(ip("203.0.113.2"), &a, start + Duration::from_secs(120));
        assert!(t.len() < 10, "{}", t.len());
    }

    #[test]
    fn off_means_off() {
        let t = LoginThrottle::default();
        let a = auth(0, 60, 1);
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.failed(ip("10.0.0.1"), &a, now).delay, Duration::ZERO);
        }
        assert!(t.admit(ip("10.0.0.1"), &a, now).is_ok());
        assert!(t.is_empty());
    }
}
