//! The throwaway cluster itself (`pgpool_rs::localpg`) and the harness's users: every
//! user logs in directly with the server-side auth method the tests rely on, and a
//! cluster whose owner process is killed is cleaned up by its watchdog.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::{parse_error, RawConn};
use common::{cluster, password_of};
use pgpool_rs::localpg::{LocalPgOptions, LocalPostgres};

/// The first authentication request code Postgres sends `user` (0 = trust/ok,
/// 3 = cleartext, 5 = md5, 10 = SASL).
async fn auth_request_code(port: u16, user: &str) -> i32 {
    let mut conn = RawConn::connect(port).await;
    conn.send_startup(&[("user", user), ("database", "app")])
        .await;
    let (tag, body) = conn.read_message().await.expect("auth request");
    assert_eq!(
        tag,
        b'R',
        "{user}: expected an auth request, got {:?}",
        parse_error(&body)
    );
    i32::from_be_bytes(body[..4].try_into().unwrap())
}

#[tokio::test]
async fn each_user_meets_its_hba_method() {
    let pg = cluster();
    assert_eq!(auth_request_code(pg.port(), "app").await, 10);
    assert_eq!(auth_request_code(pg.port(), "md5_user").await, 5);
    assert_eq!(auth_request_code(pg.port(), "plain_user").await, 3);
    assert_eq!(auth_request_code(pg.port(), "trust_user").await, 0);
    assert_eq!(auth_request_code(pg.port(), "postgres").await, 0);
}

#[tokio::test]
async fn each_user_logs_in_directly_with_its_password() {
    let pg = cluster();
    for user in ["app", "md5_user", "plain_user", "bench", "other"] {
        let mut conn = RawConn::connect(pg.port()).await;
        conn.login("app", user, password_of(user), &[]).await;
        let uri = pg.conn_string("app", user, password_of(user));
        let (client, connection) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        tokio::spawn(connection);
        assert_eq!(
            common::simple_value(&client, "SELECT current_user").await,
            user
        );
    }
    let uri = pg.conn_string("app", "trust_user", "");
    let (client, connection) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    assert_eq!(common::simple_value(&client, "SELECT 1").await, "1");
}

#[tokio::test]
async fn wrong_password_is_28p01() {
    let pg = cluster();
    let uri = pg.conn_string("app", "app", "wrong");
    let Err(err) = tokio_postgres::connect(&uri, tokio_postgres::NoTls).await else {
        panic!("login must fail");
    };
    assert_eq!(common::sqlstate(&err).as_deref(), Some("28P01"));
}

#[test]
fn stored_secrets_match_the_methods() {
    let pg = cluster();
    assert!(pg
        .scram_secret("app")
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    assert!(pg
        .scram_secret("plain_user")
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    assert!(pg.scram_secret("md5_user").unwrap().starts_with("md5"));
    assert_eq!(pg.scram_secret("trust_user").unwrap(), "");
}

#[test]
fn psql_helper_reports_sql_errors() {
    let pg = cluster();
    assert_eq!(pg.psql("app", "SELECT 40 + 2").unwrap(), "42");
    let err = pg.psql("app", "SELECT nope").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn drop_stops_the_server_and_removes_the_directory() {
    let pg = LocalPostgres::start(LocalPgOptions::demo()).unwrap();
    let dir = pg.base_dir().to_path_buf();
    let pid = pg.postmaster_pid().unwrap();
    assert!(dir.join("data/PG_VERSION").exists());
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!process_alive(pid), "postmaster {pid} still running");
}

#[test]
fn restart_keeps_port_and_data() {
    let mut pg = LocalPostgres::start(LocalPgOptions::demo()).unwrap();
    pg.psql(
        "postgres",
        "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)",
    )
    .unwrap();
    let port = pg.port();
    let old = pg.postmaster_pid().unwrap();
    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_ne!(pg.postmaster_pid().unwrap(), old);
    assert_eq!(pg.psql("postgres", "SELECT x FROM kept").unwrap(), "7");
}

#[test]
fn clusters_started_concurrently_get_distinct_ports() {
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| LocalPostgres::start(LocalPgOptions::demo()).unwrap()))
        .collect();
    let clusters: Vec<LocalPostgres> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ports: Vec<u16> = clusters.iter().map(|c| c.port()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for c in &clusters {
        assert_eq!(c.psql("postgres", "SELECT 1").unwrap(), "1");
    }
}

/// Run by `watchdog_cleans_up_after_a_killed_process` in a child process: start a
/// cluster, report it, and wait to be killed.
#[test]
fn watchdog_child_helper() {
    if std::env::var_os("PGPOOL_WATCHDOG_CHILD").is_none() {
        return;
    }
    let pg = LocalPostgres::start(LocalPgOptions::demo()).unwrap();
    println!(
        "CLUSTER {} {}",
        pg.postmaster_pid().unwrap(),
        pg.base_dir().display()
    );
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn watchdog_cleans_up_after_a_killed_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PGPOOL_WATCHDOG_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(|l| l.unwrap())
        .find_map(|l| Some(l.split_once("CLUSTER ")?.1.to_string()))
        .expect("child reports its cluster");
    let mut parts = line.split_whitespace();
    let pid: u32 = parts.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(parts.next().unwrap());
    assert!(process_alive(pid) && dir.exists());

    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (process_alive(pid) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!process_alive(pid), "postmaster {pid} survived its owner");
    assert!(!dir.exists(), "{} survived its owner", dir.display());
}

/// True while a process exists (and is not a zombie).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn replica_streams_from_the_primary_and_can_be_promoted() {
    let primary = common::fresh_cluster();
    primary
        .psql(
            "app",
            "CREATE TABLE replicated (v int); INSERT INTO replicated VALUES (42)",
        )
        .expect("write on the primary");
    let replica = primary.start_replica().expect("start a replica");
    assert!(!primary.is_in_recovery().expect("primary role"));
    assert!(replica.is_in_recovery().expect("replica role"));
    assert_eq!(
        replica
            .psql("app", "SELECT v FROM replicated")
            .expect("read"),
        "42"
    );
    assert!(
        replica
            .psql("app", "INSERT INTO replicated VALUES (1)")
            .is_err(),
        "a standby refuses writes"
    );
    replica.promote().expect("promote");
    assert!(!replica.is_in_recovery().expect("promoted role"));
    replica
        .psql("app", "INSERT INTO replicated VALUES (1)")
        .expect("the promoted server takes writes");
}
