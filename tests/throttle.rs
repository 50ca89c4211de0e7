//! The login throttle (`auth.login_failure_*`): failed logins from one address are
//! answered later and later once over the limit, then refused (53300) from the block
//! count on, while a correct password is never delayed and other addresses (a second
//! loopback address, 127.0.0.2) are not affected.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::raw::{AuthFailure, RawConn};
use common::*;

const A: [u8; 4] = [127, 0, 0, 1];
const B: [u8; 4] = [127, 0, 0, 2];

/// One md5 login of `app` from `source`: the connection or the failure, and how long
/// the answer took.
async fn attempt(
    pooler: &Pooler,
    source: [u8; 4],
    password: &str,
) -> (Result<RawConn, AuthFailure>, Duration) {
    let mut conn = RawConn::connect_from(pooler.port(), IpAddr::from(source)).await;
    let start = Instant::now();
    conn.send_startup(&[("user", "app"), ("database", "app")])
        .await;
    let result = conn.try_authenticate("app", password).await;
    (result.map(|_| conn), start.elapsed())
}

/// A wrong password from `source`: checks it is 28P01, returns how long it took.
async fn fail(pooler: &Pooler, source: [u8; 4]) -> Duration {
    let (result, took) = attempt(pooler, source, "wrong").await;
    let failure = result.expect_err("a wrong password must fail");
    assert_eq!(failure.error.code, "28P01", "{failure:?}");
    took
}

/// A correct login from `source` that serves a query; returns how long login took.
async fn succeed(pooler: &Pooler, source: [u8; 4]) -> Duration {
    let (result, took) = attempt(pooler, source, password_of("app")).await;
    let mut conn = result.unwrap_or_else(|f| panic!("login from {source:?} failed: {f:?}"));
    let rows = conn.simple_query("SELECT 1").await;
    assert_eq!(common::raw::first_row(&rows), Some(vec![Some("1".into())]));
    took
}

#[tokio::test]
async fn failures_from_one_address_are_slowed_then_refused() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("auth.type", "\"md5\"")
        .set("auth.login_failure_limit", "2")
        .set("auth.login_failure_window", "60")
        .set("auth.login_failure_block", "8")
        .start();
    // Warm up: the first login opens the pool's server connection.
    succeed(&pooler, A).await;

    // Up to the limit: answered at once.
    for n in 1..=2 {
        let took = fail(&pooler, A).await;
        assert!(took < Duration::from_secs(1), "failure {n} took {took:?}");
    }
    // Over it: held back 0.25 s, 0.5 s, 1 s, then 2 s.
    for (n, at_least_ms) in [(3, 250), (4, 500), (5, 1000), (6, 2000), (7, 2000)] {
        let took = fail(&pooler, A).await;
        assert!(
            took >= Duration::from_millis(at_least_ms),
            "failure {n} took only {took:?}"
        );
        assert!(
            took < Duration::from_millis(at_least_ms + 1500),
            "failure {n} took {took:?}"
        );
    }
    // The right password is not delayed, and another address is not throttled.
    let took = succeed(&pooler, A).await;
    assert!(took < Duration::from_secs(1), "correct login took {took:?}");
    let took = fail(&pooler, B).await;
    assert!(
        took < Duration::from_secs(1),
        "127.0.0.2's first failure took {took:?}"
    );
    succeed(&pooler, B).await;

    // The 8th failure reaches the block: even the right password is refused now,
    // before any password exchange.
    fail(&pooler, A).await;
    let (result, took) = attempt(&pooler, A, password_of("app")).await;
    let failure = result.expect_err("a blocked address must be refused");
    assert_eq!(failure.error.code, "53300", "{failure:?}");
    assert_eq!(failure.error.severity, "FATAL", "{failure:?}");
    assert!(
        failure.error.message.contains("too many failed logins"),
        "{failure:?}"
    );
    assert!(failure.codes.is_empty(), "auth requested: {failure:?}");
    assert!(took < Duration::from_secs(1), "refusal took {took:?}");
    // 127.0.0.2 still gets in.
    succeed(&pooler, B).await;
    assert!(
        pooler.log().contains("repeated failed logins"),
        "no warning logged"
    );
}

#[tokio::test]
async fn login_failure_limit_0_turns_the_throttle_off() {
    if PoolerKind::is_pgbouncer() {
        return;
    }
    let pooler = Pooler::builder(cluster())
        .set("auth.type", "\"md5\"")
        .set("auth.login_failure_limit", "0")
        .start();
    let start = Instant::now();
    for _ in 0..12 {
        fail(&pooler, A).await;
    }
    // With the defaults (limit 5) the last 7 alone would have waited 0.25+0.5+1+2+2+2+2 s.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "12 failures took {:?}",
        start.elapsed()
    );
    succeed(&pooler, A).await;
}
