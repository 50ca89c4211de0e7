//! No session state leaks from one client to the next, for every kind of session state
//! PostgreSQL has, with the default `server_reset_query_always = false` — so the pooler
//! itself must notice each kind and run the reset query (issue 4).
//!
//! Table-driven: each row is one kind of state (a GUC via SET or set_config, SET ROLE,
//! SET SESSION AUTHORIZATION, temporary objects, advisory locks, LISTEN, SQL PREPARE,
//! WITH HOLD cursors, sequence currval/lastval, search_path, ...). For each row and each
//! way of sending it — `simple::` (simple Query), `extended::` (extended protocol, unnamed
//! statement) and `prepared::` (a named statement prepared in one transaction and executed
//! in the next) — the test
//! 1. proves on a direct connection that the probe does see the state (control), then
//! 2. through a pooler with one server connection, lets client A create the state and
//!    checks that client B, on the same backend (same pid), gets the clean answer.
//!
//! `no_reset::` is the other direction: transactions that change nothing must not cost a
//! reset. Observable through a pooler-managed prepared statement, which DISCARD ALL would
//! deallocate on the server (checked by a positive control at the end of each test).

mod common;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use tokio_postgres::{Client, Statement};

/// How A sends the statements that create the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Simple Query messages.
    Simple,
    /// Parse/Bind/Execute/Sync with the unnamed statement (`query_typed`).
    Extended,
    /// A named statement: Parse/Describe/Sync, then Bind/Execute/Sync (`prepare` + `query`).
    Prepared,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Simple => "simple",
            Mode::Extended => "extended",
            Mode::Prepared => "prepared",
        }
    }

    /// A digit per mode, so that concurrent tests use distinct advisory lock keys.
    fn digit(self) -> &'static str {
        match self {
            Mode::Simple => "1",
            Mode::Extended => "2",
            Mode::Prepared => "3",
        }
    }
}

/// What B's probe must give when nothing leaked.
#[derive(Debug, Clone, Copy)]
enum Clean {
    /// The first column of the first row (simple protocol text).
    Value(&'static str),
    /// An error with this SQLSTATE.
    Error(&'static str),
}

/// One kind of session state. In the SQL, `{m}` becomes the mode's name (unique object
/// names per test) and `{k}` its digit (unique advisory lock keys).
struct Row {
    /// The server-side user: "app" (database entry `app`), or "postgres" (entry `app_su`,
    /// which logs in to the server as the superuser for every client: trust on 127.0.0.1).
    server_user: &'static str,
    /// Objects the row needs, created once (on the control connection, as `server_user`).
    before: &'static [&'static str],
    /// What client A runs to create the state, one statement per step.
    setup: &'static [&'static str],
    /// What client B runs (simple protocol) to look for it.
    probe: &'static str,
    /// The answer when there is no trace of A's state.
    clean: Clean,
    /// Optionally, checked from a separate direct session after B's probe: `(sql, value)`.
    outside: Option<(&'static str, &'static str)>,
}

const APP: Row = Row {
    server_user: "app",
    before: &[],
    setup: &[],
    probe: "",
    clean: Clean::Value(""),
    outside: None,
};

/// Objects in this session's temporary schema (0 when it has none or it is empty).
const TEMP_OBJECTS: &str = "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()";
/// Advisory locks held by this session.
const OWN_ADVISORY_LOCKS: &str =
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()";

/// Fails a test whose replies stop coming instead of hanging the suite.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(45), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 45 s"))
}

/// A role `app` may SET ROLE to, created once per cluster.
fn member_role() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        cluster()
            .psql(
                "app",
                "DO $$ BEGIN CREATE ROLE ss_member NOLOGIN; \
                 EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
                 GRANT ss_member TO app",
            )
            .expect("create role ss_member");
    });
}

/// A direct connection (no pooler) to database `app` as `user`.
async fn direct(user: &str) -> Client {
    if user == "postgres" {
        return superuser(cluster(), "app").await;
    }
    let pg = cluster();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(pg.port())
        .user(user)
        .password(password_of(user))
        .dbname("app")
        .connect_timeout(Duration::from_secs(10));
    connect_with(&cfg).await.expect("direct connection")
}

/// Runs `steps` on `client` the way `mode` says; keeps the named statements alive (a
/// driver's statement cache would) and returns them.
async fn run_steps(
    client: &Client,
    steps: &[String],
    mode: Mode,
) -> Result<Vec<Statement>, String> {
    let mut kept = Vec::new();
    for step in steps {
        let result = match mode {
            Mode::Simple => client.simple_query(step).await.map(drop),
            Mode::Extended => client.query_typed(step, &[]).await.map(drop),
            Mode::Prepared => match client.prepare(step).await {
                Ok(st) => {
                    let r = client.query(&st, &[]).await.map(drop);
                    kept.push(st);
                    r
                }
                Err(e) => Err(e),
            },
        };
        result.map_err(|e| format!("`{step}` ({}): {}", mode.name(), error_message(&e)))?;
    }
    Ok(kept)
}

/// The probe's answer: `Ok(first value)` or `Err(SQLSTATE)`.
async fn probe(client: &Client, sql: &str) -> Result<String, String> {
    match client.simple_query(sql).await {
        Ok(messages) => Ok(first_value(&messages).unwrap_or_else(|| "<no row>".into())),
        Err(e) => Err(sqlstate(&e).unwrap_or_else(|| e.to_string())),
    }
}

fn is_clean(clean: Clean, answer: &Result<String, String>) -> bool {
    match (clean, answer) {
        (Clean::Value(v), Ok(got)) => got == v,
        (Clean::Error(code), Err(got)) => got == code,
        _ => false,
    }
}

async fn check(row: Row, mode: Mode) {
    within(mode.name(), check_inner(row, mode)).await;
}

async fn check_inner(row: Row, mode: Mode) {
    let fill = |s: &str| s.replace("{m}", mode.name()).replace("{k}", mode.digit());
    let setup: Vec<String> = row.setup.iter().map(|s| fill(s)).collect();
    let probe_sql = fill(row.probe);
    if setup.iter().any(|s| s.contains("ss_member")) {
        member_role();
    }

    // 1. Control: on a session of its own, the probe sees the state.
    let control = direct(row.server_user).await;
    for sql in row.before {
        control
            .batch_execute(&fill(sql))
            .await
            .unwrap_or_else(|e| panic!("before: {sql}: {e}"));
    }
    let kept = run_steps(&control, &setup, mode)
        .await
        .unwrap_or_else(|e| panic!("control setup failed: {e}"));
    let seen = probe(&control, &probe_sql).await;
    assert!(
        !is_clean(row.clean, &seen),
        "control: after {setup:?} on one direct session, `{probe_sql}` still answers {seen:?}: \
         this probe cannot see the state (a test bug)"
    );
    drop(kept);
    control
        .batch_execute("DISCARD ALL")
        .await
        .expect("control cleanup");
    drop(control);

    // 2. Through the pooler: A creates it, B on the same backend must not see it.
    let mut builder = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .database("app_su", cluster(), "app")
        .set("databases.app_su.user", "\"postgres\"")
        .set("databases.app_su.pool_size", "1");
    if PoolerKind::is_pgbouncer() {
        // PgBouncer resets in transaction mode only when told to do it always.
        builder = builder.set("pool.server_reset_query_always", "true");
    }
    let pooler = builder.start();
    let db = if row.server_user == "postgres" {
        "app_su"
    } else {
        "app"
    };
    let a = pooler.connect(db, "app", password_of("app")).await;
    let pid_a = simple_value(&a, "SELECT pg_backend_pid()").await;
    let kept = run_steps(&a, &setup, mode)
        .await
        .unwrap_or_else(|e| panic!("client A's setup through the pooler failed: {e}"));
    // A stays connected (idle, between transactions) while B works.
    let b = pooler.connect(db, "app", password_of("app")).await;
    let pid_b = simple_value(&b, "SELECT pg_backend_pid()").await;
    assert_eq!(pid_a, pid_b, "A and B must share the one server connection");
    let answer = probe(&b, &probe_sql).await;
    assert!(
        is_clean(row.clean, &answer),
        "LEAK: after client A ran {setup:?} ({} protocol), client B on the same server \
         connection got {answer:?} from `{probe_sql}`; clean is {:?}",
        mode.name(),
        row.clean
    );
    if let Some((sql, want)) = row.outside {
        let other = superuser(cluster(), "app").await;
        let sql = fill(sql);
        assert_eq!(
            simple_value(&other, &sql).await,
            want,
            "LEAK: after client A ran {setup:?}, a separate session got the wrong answer from `{sql}`"
        );
    }
    // The pool still works for A.
    assert_eq!(simple_value(&a, "SELECT 1").await, "1");
    drop(kept);
}

/// One test per (row, mode): `simple::<row>`, `extended::<row>`, `prepared::<row>`.
macro_rules! rows {
    ($($name:ident => $row:expr;)*) => {
        mod simple {
            use super::*;
            $( #[tokio::test] async fn $name() { check($row, Mode::Simple).await } )*
        }
        mod extended {
            use super::*;
            $( #[tokio::test] async fn $name() { check($row, Mode::Extended).await } )*
        }
        mod prepared {
            use super::*;
            $( #[tokio::test] async fn $name() { check($row, Mode::Prepared).await } )*
        }
    };
}

rows! {
    guc_set => Row {
        setup: &["SET statement_timeout = '1234ms'"],
        probe: GUC_STATEMENT_TIMEOUT,
        clean: Clean::Value("t"),
        ..APP
    };
    guc_set_config => Row {
        setup: &["SELECT set_config('work_mem', '7MB', false)"],
        probe: GUC_WORK_MEM,
        clean: Clean::Value("t"),
        ..APP
    };
    guc_reported_by_parameter_status => Row {
        // TimeZone and application_name are reported (ParameterStatus) GUCs.
        setup: &["SET TimeZone = 'Pacific/Chatham'", "SET application_name = 'leaky_a'"],
        probe: "SELECT current_setting('TimeZone') = 'Pacific/Chatham' \
                OR current_setting('application_name') = 'leaky_a'",
        clean: Clean::Value("f"),
        ..APP
    };
    custom_guc_set => Row {
        setup: &["SET myapp.tenant = '42'"],
        probe: "SELECT coalesce(current_setting('myapp.tenant', true), '')",
        clean: Clean::Value(""),
        ..APP
    };
    custom_guc_set_config => Row {
        // The row-level-security tenant pattern.
        setup: &["SELECT set_config('myapp.tenant_id', '42', false)"],
        probe: "SELECT coalesce(current_setting('myapp.tenant_id', true), '')",
        clean: Clean::Value(""),
        ..APP
    };
    session_characteristics => Row {
        setup: &["SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
        probe: GUC_DEFAULT_ISOLATION,
        clean: Clean::Value("t"),
        ..APP
    };
    set_inside_do_block => Row {
        setup: &["DO $$ BEGIN EXECUTE 'SET work_mem = ''9MB'''; END $$"],
        probe: GUC_WORK_MEM,
        clean: Clean::Value("t"),
        ..APP
    };
    search_path_set => Row {
        setup: &["SET search_path = pg_catalog"],
        probe: GUC_SEARCH_PATH,
        clean: Clean::Value("t"),
        ..APP
    };
    search_path_set_config => Row {
        setup: &["SELECT set_config('search_path', 'pg_catalog', false)"],
        probe: GUC_SEARCH_PATH,
        clean: Clean::Value("t"),
        ..APP
    };
    set_role => Row {
        setup: &["SET ROLE ss_member"],
        probe: "SELECT current_user",
        clean: Clean::Value("app"),
        ..APP
    };
    set_session_authorization => Row {
        // Needs a superuser server login: entry `app_su` logs in as postgres (trust).
        server_user: "postgres",
        setup: &["SET SESSION AUTHORIZATION app"],
        probe: "SELECT session_user || '/' || current_user",
        clean: Clean::Value("postgres/postgres"),
        ..APP
    };
    temp_table => Row {
        setup: &["CREATE TEMP TABLE ss_temp_t (x int)"],
        probe: TEMP_OBJECTS,
        clean: Clean::Value("0"),
        ..APP
    };
    temp_table_as => Row {
        // Command tag "SELECT 1".
        setup: &["CREATE TEMPORARY TABLE ss_temp_as AS SELECT 1 AS x"],
        probe: TEMP_OBJECTS,
        clean: Clean::Value("0"),
        ..APP
    };
    temp_table_select_into => Row {
        // Command tag "SELECT 1".
        setup: &["SELECT 1 AS x INTO TEMP TABLE ss_temp_into"],
        probe: TEMP_OBJECTS,
        clean: Clean::Value("0"),
        ..APP
    };
    temp_table_in_pg_temp => Row {
        setup: &["CREATE TABLE pg_temp.ss_temp_schema (x int)"],
        probe: TEMP_OBJECTS,
        clean: Clean::Value("0"),
        ..APP
    };
    temp_view => Row {
        setup: &["CREATE TEMP VIEW ss_temp_v AS SELECT 1 AS x"],
        probe: TEMP_OBJECTS,
        clean: Clean::Value("0"),
        ..APP
    };
    temp_sequence => Row {
        setup: &["CREATE TEMP SEQUENCE ss_temp_s"],
        probe: TEMP_OBJECTS,
        clean: Clean::Value("0"),
        ..APP
    };
    advisory_lock => Row {
        setup: &["SELECT pg_advisory_lock(771010{k})"],
        probe: OWN_ADVISORY_LOCKS,
        clean: Clean::Value("0"),
        outside: Some((
            "SELECT pg_try_advisory_lock(771010{k}) AND pg_advisory_unlock(771010{k})",
            "t",
        )),
        ..APP
    };
    advisory_lock_shared => Row {
        setup: &["SELECT pg_advisory_lock_shared(771020{k})"],
        probe: OWN_ADVISORY_LOCKS,
        clean: Clean::Value("0"),
        outside: Some((
            "SELECT pg_try_advisory_lock(771020{k}) AND pg_advisory_unlock(771020{k})",
            "t",
        )),
        ..APP
    };
    advisory_try_lock_two_keys => Row {
        setup: &["SELECT pg_try_advisory_lock(77, 1030{k})"],
        probe: OWN_ADVISORY_LOCKS,
        clean: Clean::Value("0"),
        outside: Some((
            "SELECT pg_try_advisory_lock(77, 1030{k}) AND pg_advisory_unlock(77, 1030{k})",
            "t",
        )),
        ..APP
    };
    listen => Row {
        setup: &["LISTEN ss_chan_{m}"],
        probe: "SELECT count(*) FROM pg_listening_channels()",
        clean: Clean::Value("0"),
        ..APP
    };
    sql_prepare => Row {
        setup: &["PREPARE ss_prep_{m} AS SELECT 1"],
        probe: "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
        clean: Clean::Value("0"),
        ..APP
    };
    cursor_with_hold => Row {
        setup: &[
            "BEGIN",
            "DECLARE ss_cur CURSOR WITH HOLD FOR SELECT 1",
            "COMMIT",
        ],
        probe: "SELECT count(*) FROM pg_cursors WHERE name = 'ss_cur'",
        clean: Clean::Value("0"),
        ..APP
    };
    cursor_with_hold_autocommit => Row {
        setup: &["DECLARE ss_cur2 CURSOR WITH HOLD FOR SELECT 1"],
        probe: "SELECT count(*) FROM pg_cursors WHERE name = 'ss_cur2'",
        clean: Clean::Value("0"),
        ..APP
    };
    sequence_currval => Row {
        before: &["CREATE SEQUENCE IF NOT EXISTS ss_seq_cur_{m}"],
        setup: &["SELECT nextval('ss_seq_cur_{m}')"],
        probe: "SELECT currval('ss_seq_cur_{m}')",
        clean: Clean::Error("55000"),
        ..APP
    };
    sequence_lastval => Row {
        before: &["CREATE SEQUENCE IF NOT EXISTS ss_seq_last_{m}"],
        setup: &["SELECT nextval('ss_seq_last_{m}')"],
        probe: "SELECT lastval()",
        clean: Clean::Error("55000"),
        ..APP
    };
    sequence_setval => Row {
        before: &["CREATE SEQUENCE IF NOT EXISTS ss_seq_set_{m}"],
        setup: &["SELECT setval('ss_seq_set_{m}', 10)"],
        probe: "SELECT currval('ss_seq_set_{m}')",
        clean: Clean::Error("55000"),
        ..APP
    };
    sequence_via_serial_insert => Row {
        // nextval() called by a column default: only the INSERT tag tells.
        before: &["CREATE TABLE IF NOT EXISTS ss_serial_{m} (id serial)"],
        setup: &["INSERT INTO ss_serial_{m} DEFAULT VALUES"],
        probe: "SELECT lastval()",
        clean: Clean::Error("55000"),
        ..APP
    };
}

const GUC_STATEMENT_TIMEOUT: &str =
    "SELECT setting = reset_val FROM pg_settings WHERE name = 'statement_timeout'";
const GUC_WORK_MEM: &str = "SELECT setting = reset_val FROM pg_settings WHERE name = 'work_mem'";
const GUC_DEFAULT_ISOLATION: &str =
    "SELECT setting = reset_val FROM pg_settings WHERE name = 'default_transaction_isolation'";
const GUC_SEARCH_PATH: &str =
    "SELECT setting = reset_val FROM pg_settings WHERE name = 'search_path'";

// ---------------------------------------------------------------------------------------
// The other direction: a transaction that changes nothing must not cost a reset.

/// A prepares and runs a statement (pooler-managed: on the server, not dirt), then runs
/// `steps`; B, on the same server connection, must still find a protocol-level statement
/// there (a reset, DISCARD ALL, would have deallocated it). Then a positive control: after
/// A's SET, the reset does run and the statement is gone from the server.
async fn check_no_reset(steps: &[&str], mode: Mode) {
    if PoolerKind::is_pgbouncer() {
        return; // PgBouncer 1.18 has no protocol-level prepared statements in this mode
    }
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .start();
    within(mode.name(), async {
        let steps: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        let on_server = "SELECT count(*) > 0 FROM pg_prepared_statements WHERE NOT from_sql";
        let a = pooler.connect_app().await;
        let pid_a = simple_value(&a, "SELECT pg_backend_pid()").await;
        let marker = a
            .prepare("SELECT $1::int AS marker")
            .await
            .expect("A prepares");
        let row = a.query_one(&marker, &[&1]).await.expect("A executes");
        assert_eq!(row.get::<_, i32>(0), 1);
        let _kept = run_steps(&a, &steps, mode)
            .await
            .unwrap_or_else(|e| panic!("A's clean steps failed: {e}"));
        let b = pooler.connect_app().await;
        assert_eq!(
            simple_value(&b, "SELECT pg_backend_pid()").await,
            pid_a,
            "A and B must share the one server connection"
        );
        assert_eq!(
            simple_value(&b, on_server).await,
            "t",
            "after A's prepared statement and {steps:?} ({} protocol) the server connection \
             was reset (the statement is gone): transactions that change nothing must not \
             pay for a reset",
            mode.name()
        );
        let row = a.query_one(&marker, &[&2]).await.expect("A executes again");
        assert_eq!(row.get::<_, i32>(0), 2);

        // Positive control: the observable does show a reset when one is due.
        a.batch_execute("SET work_mem = '5MB'").await.unwrap();
        assert_eq!(
            simple_value(&b, on_server).await,
            "f",
            "control: after A's SET the reset query must have run (DISCARD ALL deallocates)"
        );
        let row = a
            .query_one(&marker, &[&3])
            .await
            .expect("A after the reset");
        assert_eq!(row.get::<_, i32>(0), 3);
    })
    .await;
}

/// One test per (clean statement list, mode): `no_reset::<name>_<mode>`.
macro_rules! clean_rows {
    ($($name:ident => $steps:expr;)*) => {
        mod no_reset {
            use super::*;
            mod simple {
                use super::*;
                $( #[tokio::test] async fn $name() { check_no_reset($steps, Mode::Simple).await } )*
            }
            mod extended {
                use super::*;
                $( #[tokio::test] async fn $name() { check_no_reset($steps, Mode::Extended).await } )*
            }
            mod prepared {
                use super::*;
                $( #[tokio::test] async fn $name() { check_no_reset($steps, Mode::Prepared).await } )*
            }
        }
    };
}

clean_rows! {
    prepared_statement_only => &[];
    select_1 => &["SELECT 1"];
    select_now_and_catalog => &["SELECT now()", "SELECT count(*) FROM pg_class"];
    show => &["SHOW work_mem"];
    transaction_committed => &["BEGIN", "SELECT 2", "COMMIT"];
    transaction_rolled_back => &["BEGIN", "SELECT 2", "ROLLBACK"];
}
