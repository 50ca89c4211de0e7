//! Client startup parameters (application_name, TimeZone, DateStyle, search_path via
//! `options`) are in force for that client on every transaction, whichever client used
//! the server connection before (`pool_size = 1`: they all share one), and are reported
//! to the client as ParameterStatus.

mod common;

use common::raw::{self, RawConn};
use common::*;
use tokio_postgres::NoTls;

const SETTINGS: &str = "SELECT current_setting('TimeZone'), current_setting('DateStyle'), \
                        current_setting('application_name'), pg_backend_pid()::text";

struct RawClient {
    conn: RawConn,
    expect: [&'static str; 3],
}

impl RawClient {
    /// Logs in with TimeZone, DateStyle and application_name as startup parameters and
    /// checks they are reported back.
    async fn login(pooler: &Pooler, expect: [&'static str; 3], datestyle_sent: &str) -> RawClient {
        let mut conn = RawConn::connect(pooler.port()).await;
        let messages = conn
            .login(
                "app",
                "app",
                password_of("app"),
                &[
                    ("TimeZone", expect[0]),
                    ("DateStyle", datestyle_sent),
                    ("application_name", expect[2]),
                ],
            )
            .await;
        let reported = raw::parameter_statuses(&messages);
        for (name, want) in [
            ("TimeZone", expect[0]),
            ("DateStyle", expect[1]),
            ("application_name", expect[2]),
        ] {
            let got = reported
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str());
            assert_eq!(got, Some(want), "ParameterStatus {name} for {}", expect[2]);
        }
        RawClient { conn, expect }
    }

    /// Checks the settings in force (in a transaction or not); returns the backend pid.
    async fn check(&mut self, in_transaction: bool) -> String {
        let sql = if in_transaction {
            format!("BEGIN; {SETTINGS}; COMMIT")
        } else {
            SETTINGS.to_string()
        };
        let messages = self.conn.simple_query(&sql).await;
        assert!(
            !messages.iter().any(|(t, _)| *t == b'E'),
            "{:?}",
            raw::parse_error(&messages.iter().find(|(t, _)| *t == b'E').unwrap().1)
        );
        let row = raw::first_row(&messages).expect("a row");
        let row: Vec<String> = row.into_iter().map(Option::unwrap_or_default).collect();
        assert_eq!(
            row[..3],
            self.expect.map(String::from),
            "settings of {}",
            self.expect[2]
        );
        row[3].clone()
    }
}

#[tokio::test]
async fn startup_parameters_follow_the_client() {
    let pooler = Pooler::builder(cluster())
        .set("databases.app.pool_size", "1")
        .start();
    let mut a = RawClient::login(
        &pooler,
        ["America/New_York", "SQL, DMY", "params_a"],
        "SQL, DMY",
    )
    .await;
    let mut b = RawClient::login(
        &pooler,
        ["Asia/Tokyo", "Postgres, YMD", "params_b"],
        "Postgres, YMD",
    )
    .await;
    let mut pids = Vec::new();
    for round in 0..3 {
        pids.push(a.check(round % 2 == 0).await);
        pids.push(b.check(round % 2 == 1).await);
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "all on the one server connection: {pids:?}");
}

#[tokio::test]
async fn search_path_from_options_follows_the_client() {
    let pg = cluster();
    pg.psql(
        "app",
        "CREATE SCHEMA IF NOT EXISTS params_a AUTHORIZATION app; \
                    CREATE SCHEMA IF NOT EXISTS params_b AUTHORIZATION app",
    )
    .unwrap();
    let pooler = Pooler::builder(pg)
        .set("databases.app.pool_size", "1")
        .start();
    let mut clients = Vec::new();
    for name in ["params_a", "params_b"] {
        let mut cfg = pooler.config("app", "app", password_of("app"));
        cfg.options(format!("-c search_path={name},public"));
        cfg.application_name(name);
        clients.push((name, connect_with(&cfg).await.unwrap()));
    }
    let mut pids = Vec::new();
    for _ in 0..3 {
        for (name, client) in &clients {
            let messages = client
                .simple_query(
                    "SELECT current_setting('search_path'), current_schema(), pg_backend_pid()",
                )
                .await
                .unwrap();
            let row = messages
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .unwrap();
            // PostgreSQL keeps `-c` values as given ("a,public"); a SET reports "a, public".
            let search_path = row.get(0).unwrap().replace(' ', "");
            assert_eq!(
                search_path,
                format!("{name},public"),
                "search_path of {name}"
            );
            assert_eq!(row.get(1), Some(*name), "current_schema() of {name}");
            pids.push(row.get(2).unwrap().to_string());
        }
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "all on the one server connection: {pids:?}");
}

#[tokio::test]
async fn parameter_status_reaches_tokio_postgres() {
    let pooler = Pooler::start(cluster());
    let mut cfg = pooler.config("app", "app", password_of("app"));
    cfg.application_name("tp_app");
    let (client, conn) = cfg.connect(NoTls).await.unwrap();
    assert_eq!(conn.parameter("application_name"), Some("tp_app"));
    assert_eq!(conn.parameter("client_encoding"), Some("UTF8"));
    assert_eq!(conn.parameter("integer_datetimes"), Some("on"));
    assert!(conn
        .parameter("server_version")
        .is_some_and(|v| v.starts_with(char::is_numeric)));
    assert!(conn.parameter("TimeZone").is_some());
    tokio::spawn(conn);
    assert_eq!(
        simple_value(&client, "SHOW application_name").await,
        "tp_app"
    );
}
