//! Integration-test harness: a shared throwaway PostgreSQL cluster with one user per auth
//! method, the pooler binary under test on its own port ([`Pooler`]), direct server-side
//! queries (connection counts, backend pids), psql/pgbench runners and polling helpers.
//!
//! Tests in one binary run concurrently on threads: every [`Pooler`] gets its own port and
//! temporary directory; the cluster from [`cluster`] is shared, so tests that change or
//! kill the server use [`fresh_cluster`].
//!
//! `PGPOOL_TEST_POOLER=pgbouncer` runs PgBouncer instead of pgpool-rs (local use, to
//! check the tests themselves against a known pooler).
#![allow(dead_code)] // each test binary uses a different subset

pub mod console;
pub mod extended;
pub mod http;
pub mod pgbouncer;
mod pooler;
pub mod raw;
pub mod tls;

use std::future::Future;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgpool_rs::localpg::{LocalPgOptions, LocalPostgres, PasswordMethod};
#[allow(unused_imports)]
pub use pooler::{connect_with, Pooler, PoolerBuilder, PoolerKind};
use tokio_postgres::{Client, NoTls};

/// `(user, password, how pg_authid stores it)` of the login roles every cluster has.
/// `trust_user` has no server password (hba trust); the pooler's userlist gives it one.
pub const USERS: &[(&str, Option<&str>, PasswordMethod)] = &[
    ("app", Some("app-pass"), PasswordMethod::Scram),
    ("md5_user", Some("md5-pass"), PasswordMethod::Md5),
    ("plain_user", Some("plain-pass"), PasswordMethod::Scram),
    ("trust_user", None, PasswordMethod::Scram),
    ("bench", Some("bench-pass"), PasswordMethod::Scram),
    ("other", Some("other-pass"), PasswordMethod::Scram),
];

/// The password clients give the pooler for `user` (as in the default userlist).
pub fn password_of(user: &str) -> &'static str {
    match user {
        "app" => "app-pass",
        "md5_user" => "md5-pass",
        "plain_user" => "plain-pass",
        "trust_user" => "trust-pass",
        "bench" => "bench-pass",
        "other" => "other-pass",
        _ => panic!("no test password for user {user}"),
    }
}

/// The cluster shared by all tests of this test binary (never dropped; its watchdog
/// removes it when the process exits). Do not stop or reconfigure it.
pub fn cluster() -> &'static LocalPostgres {
    static CLUSTER: OnceLock<LocalPostgres> = OnceLock::new();
    CLUSTER.get_or_init(fresh_cluster)
}

/// A cluster of one's own (same users and databases), for tests that kill or restart it.
pub fn fresh_cluster() -> LocalPostgres {
    let mut opts = LocalPgOptions::for_tests();
    opts.max_connections = 300;
    let pg = LocalPostgres::start(opts).expect("start a local PostgreSQL");
    for (user, password, method) in USERS {
        pg.create_user(user, *password, *method)
            .expect("create user");
    }
    pg.create_database("app", "app")
        .expect("create database app");
    pg.create_database("bench", "bench")
        .expect("create database bench");
    // Everybody may create tables in app's public schema (tests use unique names).
    pg.psql("app", "GRANT ALL ON SCHEMA public TO PUBLIC")
        .expect("grant on public schema");
    pg
}

/// A direct superuser connection to `db` of `pg` (bypassing the pooler).
pub async fn superuser(pg: &LocalPostgres, db: &str) -> Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(pg.host())
        .port(pg.port())
        .user("postgres")
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .expect("direct superuser connection");
    tokio::spawn(conn);
    client
}

/// Server connections of `user` to `db` (from `pg_stat_activity`, not counting ours).
pub async fn server_conn_count(pg: &LocalPostgres, db: &str, user: &str) -> i64 {
    let client = superuser(pg, "postgres").await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()",
            &[&db, &user],
        )
        .await
        .expect("count server connections");
    row.get(0)
}

/// Backend pids of `user`'s connections to `db`, sorted.
pub async fn backend_pids(pg: &LocalPostgres, db: &str, user: &str) -> Vec<i32> {
    let client = superuser(pg, "postgres").await;
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid() ORDER BY pid",
            &[&db, &user],
        )
        .await
        .expect("list backend pids");
    rows.iter().map(|r| r.get(0)).collect()
}

/// `pg_terminate_backend(pid)` from a direct superuser connection.
pub async fn terminate_backend(pg: &LocalPostgres, pid: i32) {
    let client = superuser(pg, "postgres").await;
    client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate backend");
}

/// Polls `check` every 50 ms until it returns true; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first value of the first row of a `simple_query` result.
pub async fn simple_value(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.expect("simple query");
    first_value(&messages).unwrap_or_else(|| panic!("no value returned by {sql}"))
}

/// The first value of the first row in `simple_query` messages, if any.
pub fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    })
}

/// The SQLSTATE of an error from the server (or pooler), if it carried one.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<String> {
    err.code().map(|c| c.code().to_string())
}

/// The message of an ErrorResponse, or the error's Display for other errors.
pub fn error_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => db.message().to_string(),
        None => err.to_string(),
    }
}

/// A `psql` command against 127.0.0.1:`port` (`-X`, no password prompt, libpq env cleared).
pub fn psql_cmd(port: u16, db: &str, user: &str, password: &str) -> Command {
    let mut cmd = Command::new(cluster().bin("psql"));
    libpq_env(&mut cmd, password);
    cmd.args(["-X", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", user, "-d", db]);
    cmd
}

/// A `pgbench` command against 127.0.0.1:`port`; append options, then the database name.
pub fn pgbench_cmd(port: u16, user: &str, password: &str) -> Command {
    let mut cmd = Command::new(cluster().bin("pgbench"));
    libpq_env(&mut cmd, password);
    cmd.args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", user]);
    cmd
}

fn libpq_env(cmd: &mut Command, password: &str) {
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSERVICE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null());
}

/// Runs psql through `pooler` with extra arguments; returns its output (not checked).
pub fn psql_through(pooler: &Pooler, db: &str, user: &str, args: &[&str]) -> Output {
    psql_cmd(pooler.port(), db, user, password_of(user))
        .args(args)
        .output()
        .expect("run psql")
}

/// Runs pgbench through `pooler` on database `bench` as user `bench`.
pub fn pgbench(pooler: &Pooler, args: &[&str]) -> Output {
    pgbench_cmd(pooler.port(), "bench", password_of("bench"))
        .args(args)
        .arg("bench")
        .output()
        .expect("run pgbench")
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Connects and forwards the connection's notices and notifications to a channel.
pub async fn connect_with_messages(
    cfg: &tokio_postgres::Config,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    let (client, mut conn) = cfg.connect(NoTls).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            let _ = tx.send(message);
        }
    });
    (client, rx)
}

/// Creates a SCRAM login role `name` with password `<name>-pass` on `pg` (for tests that
/// count server connections of a user nobody else uses); add it to the pooler with
/// `.userlist_line(&userlist_entry(name))`.
pub fn create_role(pg: &LocalPostgres, name: &str) -> String {
    let password = format!("{name}-pass");
    pg.create_user(name, Some(&password), PasswordMethod::Scram)
        .expect("create role");
    password
}

/// The plaintext userlist line for a role made by [`create_role`].
pub fn userlist_entry(name: &str) -> String {
    format!("\"{name}\" \"{name}-pass\"")
}

/// The shared cluster after `pgbench -i -s 1` on database `bench`, directly against the cluster, once.
pub fn pgbench_initialized() -> &'static pgpool_rs::localpg::LocalPostgres {
    static INIT: OnceLock<()> = OnceLock::new();
    let pg = cluster();
    INIT.get_or_init(|| {
        let out = pgbench_cmd(pg.port(), "bench", password_of("bench"))
            .args(["-i", "-s", "1", "-q", "bench"])
            .output()
            .expect("run pgbench -i");
        assert!(out.status.success(), "pgbench -i: {}", output_text(&out));
    });
    pg
}
