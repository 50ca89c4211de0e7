//! pgbench through the pooler (pool_size 5, 20 clients): select-only with the simple and
//! extended protocols, and the default TPC-B-like script; no failed transactions and the
//! full count processed.

mod common;

use common::*;

/// Runs pgbench with `args` through a pool of 5 and checks the outcome.
fn run_through_pooler(args: &[&str], expected_transactions: u32) {
    let pooler = Pooler::builder(pgbench_initialized())
        .set("databases.bench.pool_size", "5")
        .start();
    let out = pgbench(&pooler, args);
    let text = output_text(&out);
    assert!(out.status.success(), "pgbench failed:\n{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let processed = format!(
        "number of transactions actually processed: {expected_transactions}/{expected_transactions}"
    );
    assert!(
        stdout.contains(&processed),
        "expected `{processed}`:\n{text}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0 "),
        "failed transactions:\n{text}"
    );
    assert!(!text.contains("aborted"), "aborted clients:\n{text}");
}

#[test]
fn select_only_simple_protocol() {
    run_through_pooler(
        &["-c", "20", "-j", "2", "-t", "200", "-S", "-M", "simple"],
        4000,
    );
}

#[test]
fn select_only_extended_protocol() {
    run_through_pooler(
        &["-c", "20", "-j", "2", "-t", "200", "-S", "-M", "extended"],
        4000,
    );
}

#[test]
fn tpcb_like_simple_protocol() {
    run_through_pooler(&["-c", "20", "-j", "2", "-t", "100", "-M", "simple"], 2000);
}
