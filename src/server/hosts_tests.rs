//! Unit tests of [`super::hosts`]: choice, roles, failovers, DNS changes.
use super::hosts::*;
use super::resolve::FixedResolver;
use crate::config::Role;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn set(role: Role, fallback: bool, n: usize) -> Arc<HostSet> {
    let hosts: Vec<(String, u16)> = (0..n)
        .map(|i| ("127.0.0.1".to_owned(), 5000 + i as u16))
        .collect();
    HostSet::new("db", role, fallback, &hosts, Duration::from_secs(5))
}

async fn pick(s: &HostSet) -> Option<usize> {
    let tried = vec![false; s.hosts.len()];
    s.pick(&tried).await.map(|p| p.expect("resolves").index)
}

#[tokio::test]
async fn least_connections_wins() {
    let s = set(Role::Any, true, 3);
    s.opened(0);
    s.opened(0);
    s.opened(2);
    assert_eq!(pick(&s).await, Some(1));
    s.opened(1);
    s.opened(1);
    assert_eq!(pick(&s).await, Some(2));
    s.closed(0);
    s.closed(0);
    assert_eq!(pick(&s).await, Some(0));
}

#[tokio::test]
async fn writer_skips_known_standbys_and_set_aside_hosts() {
    let s = set(Role::Writer, true, 2);
    assert!(!s.accepts(0, ServerRole::Standby));
    assert_eq!(pick(&s).await, Some(1));
    s.set_aside(1, "refused");
    assert_eq!(
        pick(&s).await,
        None,
        "standby known fresh, primary set aside"
    );
    assert!(s.accepts(1, ServerRole::Primary));
    assert_eq!(s.failovers.load(Relaxed), 0);
    assert!(!s.views()[1].up);
    s.opened(1);
    assert!(s.views()[1].up, "a successful connection brings it back");
}

#[tokio::test]
async fn reader_prefers_standbys_and_falls_back_to_the_writer() {
    let s = set(Role::Reader, true, 2);
    assert!(
        s.accepts(0, ServerRole::Primary),
        "no standby known: fallback"
    );
    assert!(s.accepts(1, ServerRole::Standby));
    assert_eq!(pick(&s).await, Some(1), "the standby ranks first");
    assert!(!s.still_accepts(0, Some(false)), "a standby is usable now");
    s.set_aside(1, "down");
    assert!(s.still_accepts(0, Some(false)));
    assert_eq!(pick(&s).await, Some(0));
    let strict = set(Role::Reader, false, 1);
    assert!(!strict.accepts(0, ServerRole::Primary));
}

#[tokio::test]
async fn role_changes_and_failovers_are_counted_and_retire_connections() {
    let s = set(Role::Writer, true, 2);
    s.note_role(0, ServerRole::Primary);
    s.note_role(1, ServerRole::Standby);
    let g0 = s.hosts[0].generation();
    assert!(s.is_current(0, g0));
    s.note_role(0, ServerRole::Standby);
    s.note_role(1, ServerRole::Primary);
    assert!(
        !s.is_current(0, g0),
        "the demoted host's connections retire"
    );
    assert_eq!(s.role_changes.load(Relaxed), 2);
    assert_eq!(s.failovers.load(Relaxed), 1);
}

#[tokio::test]
async fn a_changed_dns_answer_retires_old_connections_except_for_readers() {
    let answer = Arc::new(FixedResolver::default());
    for (role, retires) in [
        (Role::Writer, true),
        (Role::Any, true),
        (Role::Reader, false),
    ] {
        *answer.0.lock().expect("lock") = vec!["127.0.0.1:5432".parse().expect("addr")];
        let hosts = [("db.example".to_owned(), 5432)];
        let s = HostSet::new("db", role, true, &hosts, Duration::from_secs(5))
            .with_resolver(answer.clone());
        let first = pick(&s).await.expect("a host");
        let generation = s.hosts[first].generation();
        assert_eq!(
            s.views()[0].addr,
            Some("127.0.0.1:5432".parse().expect("addr"))
        );
        // Same answer: nothing changes.
        s.resolve(0).await.expect("resolves");
        assert!(s.is_current(0, generation));
        *answer.0.lock().expect("lock") = vec!["127.0.0.2:5432".parse().expect("addr")];
        s.resolve(0).await.expect("resolves");
        assert_eq!(
            s.views()[0].addr,
            Some("127.0.0.2:5432".parse().expect("addr"))
        );
        assert_eq!(!s.is_current(0, generation), retires, "{role:?}");
    }
}

#[tokio::test]
async fn names_are_cached_for_dns_max_ttl() {
    let answer = Arc::new(FixedResolver(Mutex::new(vec!["127.0.0.1:1"
        .parse()
        .expect("addr")])));
    let hosts = [("db.example".to_owned(), 1)];
    let s = HostSet::new("db", Role::Any, true, &hosts, Duration::from_secs(60))
        .with_resolver(answer.clone());
    let tried = [false];
    let first = s.pick(&tried).await.expect("host").expect("resolves");
    *answer.0.lock().expect("lock") = vec!["127.0.0.9:1".parse().expect("addr")];
    let second = s.pick(&tried).await.expect("host").expect("resolves");
    assert_eq!(
        first.addr, second.addr,
        "within the TTL the cached answer is used"
    );
    s.set_aside(0, "refused");
    s.opened(0);
    let third = s.pick(&tried).await.expect("host").expect("resolves");
    assert_eq!(
        third.addr,
        "127.0.0.9:1".parse().expect("addr"),
        "a failure forces a fresh lookup"
    );
}

#[test]
fn same_as_compares_hosts_and_rules() {
    let s = set(Role::Writer, true, 1);
    let hosts = vec![("127.0.0.1".to_owned(), 5000)];
    assert!(s.same_as(Role::Writer, true, &hosts, Duration::from_secs(5)));
    assert!(!s.same_as(Role::Reader, true, &hosts, Duration::from_secs(5)));
    assert!(!s.same_as(Role::Writer, true, &[], Duration::from_secs(5)));
}
