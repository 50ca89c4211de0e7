//! `pgpool-rs convert pgbouncer.ini`: the binary prints a pool.toml that our own
//! `--check` and `Config::load` accept with the expected values, a comment for every
//! setting it cannot carry over, errors naming file and line; and a converted config runs
//! a pooler that serves queries against a real PostgreSQL.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pgpool_rs::config::{AuthType, Config, PoolMode, Role};
use pgpool_rs::localpg;

const BIN: &str = env!("CARGO_BIN_EXE_pgpool-rs");

/// Runs `pgpool-rs convert <ini>`.
fn convert(ini: &Path) -> Output {
    Command::new(BIN)
        .arg("convert")
        .arg(ini)
        .env_remove("PGPOOL_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run convert")
}

/// Converts `ini` (exit 0 expected), writes the result to `<dir>/pool.toml` and returns
/// its text and path.
fn convert_ok(ini: &Path) -> (String, PathBuf) {
    let out = convert(ini);
    assert!(
        out.status.success(),
        "convert failed:\n{}",
        output_text(&out)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let path = ini.with_file_name("pool.toml");
    std::fs::write(&path, &text).expect("write pool.toml");
    (text, path)
}

/// `pgpool-rs --config <path> --check`: exit code and output.
fn check(path: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .arg("--check")
        .env_remove("PGPOOL_CONFIG")
        .output()
        .expect("run --check");
    (out.status.code().unwrap_or(-1), output_text(&out))
}

/// Comments with their wrapped continuation lines (`#   ...`) joined.
fn comments(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        match (line.strip_prefix("#   "), out.last_mut()) {
            (Some(more), Some(last)) => {
                last.push(' ');
                last.push_str(more);
            }
            _ => {
                if let Some(c) = line.strip_prefix("# ") {
                    out.push(c.to_owned());
                }
            }
        }
    }
    out
}

fn assert_comment(text: &str, starts: &str) {
    assert!(
        comments(text).iter().any(|c| c.starts_with(starts)),
        "no comment starting with {starts:?} in:\n{text}"
    );
}

/// The settings our users' PgBouncer runs with today.
const USERS_TODAY: &str = "\
;; pgbouncer.ini of the skillswap deployment
[databases]
skillswap = host=aurora-cluster.cluster-abc.eu-west-1.rds.amazonaws.com port=5432 dbname=skillswap

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 5432
auth_type = md5
auth_file = userlist.txt
admin_users = admin
stats_users = datadog, monitor
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 100
max_db_connections = 100
server_idle_timeout = 600
server_lifetime = 3600
server_reset_query = DISCARD ALL
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
";

#[test]
fn converts_the_config_our_users_run_today() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(&ini, USERS_TODAY).unwrap();
    std::fs::write(dir.path().join("userlist.txt"), "\"admin\" \"pw\"\n").unwrap();
    let (text, path) = convert_ok(&ini);

    let (code, output) = check(&path);
    assert_eq!(code, 0, "--check:\n{output}\n---\n{text}");
    let c = Config::load(&path).expect("loads");
    assert_eq!(c.listen.addr.to_string(), "0.0.0.0:5432");
    assert_eq!(c.listen.max_client_conn, 1000);
    assert_eq!(c.auth.auth_type, AuthType::Md5);
    assert_eq!(
        c.auth.file.as_deref(),
        Some(dir.path().join("userlist.txt").as_path())
    );
    assert_eq!(c.auth.admin_users, vec!["admin"]);
    assert_eq!(c.auth.stats_users, vec!["datadog", "monitor"]);
    assert_eq!(c.pool.mode, PoolMode::Transaction);
    assert_eq!(c.pool.default_pool_size, 100);
    assert_eq!(c.pool.max_db_connections, 100);
    assert_eq!(c.pool.server_idle_timeout, Duration::from_secs(600));
    assert_eq!(c.pool.server_lifetime, Duration::from_secs(3600));
    assert_eq!(c.pool.server_reset_query, "DISCARD ALL");
    let db = &c.databases["skillswap"];
    assert_eq!(
        db.hosts[0].host,
        "aurora-cluster.cluster-abc.eu-west-1.rds.amazonaws.com"
    );
    assert_eq!(db.hosts[0].port, 5432);
    assert_eq!(db.dbname, "skillswap");
    assert_eq!(db.role, Role::Writer);
    assert_comment(
        &text,
        "note: role inferred: the host is an Aurora cluster (writer) endpoint",
    );
    assert_comment(
        &text,
        "not carried over: logfile = /var/log/pgbouncer/pgbouncer.log — ",
    );
    assert_comment(
        &text,
        "not carried over: pidfile = /var/run/pgbouncer/pgbouncer.pid — ",
    );
}

#[test]
fn includes_fallback_users_and_unsupported_settings_each_get_a_comment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("pgbouncer.ini"),
        "[pgbouncer]\nlisten_addr = 127.0.0.1\nauth_type = scram-sha-256\n\
         auth_file = userlist.txt\n%include conf.d/tuning.ini\n\
         [databases]\n%include conf.d/databases.ini\n\
         [users]\nreporting = pool_mode=session max_user_connections=5\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/tuning.ini"),
        "; tuning\nstats_period = 30\nunix_socket_dir = /var/run/postgresql\n\
         tcp_keepalive = 1\nignore_startup_parameters = extra_float_digits\n\
         query_wait_timeout = 2.5\npool_mode = statement\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("conf.d/databases.ini"),
        "app = host=db1.internal,db2.internal port=5433 dbname=app_prod user=svc password='p w'\n\
         * = host=fallback.internal\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("userlist.txt"), "\"svc\" \"x\"\n").unwrap();
    let (text, path) = convert_ok(&dir.path().join("pgbouncer.ini"));
    let (code, output) = check(&path);
    assert_eq!(code, 0, "--check:\n{output}\n---\n{text}");

    let c = Config::load(&path).unwrap();
    let app = &c.databases["app"];
    let hosts: Vec<String> = app.hosts.iter().map(|h| h.to_string()).collect();
    assert_eq!(hosts, vec!["db1.internal:5433", "db2.internal:5433"]);
    assert_eq!(app.dbname, "app_prod");
    assert_eq!(app.user.as_deref(), Some("svc"));
    assert_eq!(app.password.as_deref(), Some("p w"));
    assert_eq!(c.databases.len(), 1, "the * entry is not a database");
    assert_eq!(c.pool.mode, PoolMode::Transaction);
    assert_eq!(c.pool.query_wait_timeout, Duration::from_secs(3));
    assert_comment(&text, "note: PgBouncer's statement mode is not supported");
    assert_comment(&text, "note: \"2.5\" rounded to 3 s");
    for (setting, file_line) in [
        ("stats_period = 30", "tuning.ini:2"),
        ("unix_socket_dir = /var/run/postgresql", "tuning.ini:3"),
        ("tcp_keepalive = 1", "tuning.ini:4"),
        (
            "ignore_startup_parameters = extra_float_digits",
            "tuning.ini:5",
        ),
        ("[databases] * = host=fallback.internal", "databases.ini:2"),
        (
            "[users] reporting = pool_mode=session max_user_connections=5",
            "pgbouncer.ini:9",
        ),
    ] {
        let comment = comments(&text)
            .into_iter()
            .find(|c| c.starts_with(&format!("not carried over: {setting} — ")))
            .unwrap_or_else(|| panic!("no comment for {setting}:\n{text}"));
        assert!(comment.ends_with(&format!("[{file_line}]")), "{comment}");
    }
    let stderr =
        String::from_utf8_lossy(&convert(&dir.path().join("pgbouncer.ini")).stderr).into_owned();
    assert!(stderr.contains("6 setting(s) not carried over"), "{stderr}");
}

#[test]
fn errors_name_the_file_and_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.ini");
    let out = convert(&missing);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!("{}: cannot read", missing.display())),
        "{err}"
    );

    let cases = [
        (
            "[pgbouncer]\nlisten_port = 6432\nmax_client_conn 100\n",
            3,
            "expected \"key = value\"",
        ),
        (
            "[pgbouncer]\npool_mode = sometimes\n",
            2,
            "pool_mode: expected session",
        ),
        (
            "[databases]\n\napp = host='unclosed\n",
            3,
            "app: host: the quoted value has no closing quote",
        ),
        (
            "[pgbouncer]\n%include gone.ini\n",
            2,
            "%include gone.ini: cannot read",
        ),
    ];
    for (text, line, what) in cases {
        let ini = dir.path().join("bad.ini");
        std::fs::write(&ini, text).unwrap();
        let out = convert(&ini);
        assert_eq!(out.status.code(), Some(1), "{text:?}");
        assert!(out.stdout.is_empty(), "{text:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let located = format!("{}:{line}: ", ini.display());
        assert!(
            err.contains(&located) && err.contains(what),
            "{text:?}:\n{err}"
        );
    }
}

/// A pooler process started from a converted config; killed on drop.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- pooler log ----\n{log}\n---- end ----");
        }
    }
}

/// Starts the pooler on `config` and waits until `port` accepts; `None` if it exited
/// (the port was taken by someone else, typically).
fn start(config: &Path, port: u16) -> Option<Running> {
    let log = config.with_file_name("pooler.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .env_remove("PGPOOL_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("spawn pgpool-rs");
    let mut running = Running { child, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if running.child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Some(running);
        }
        assert!(Instant::now() < deadline, "pooler not listening on {port}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[tokio::test]
async fn a_converted_config_serves_queries() {
    let pg = cluster();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("userlist.txt"), "\"app\" \"app-pass\"\n").unwrap();
    let mut running = None;
    let mut port = 0;
    for _attempt in 0..3 {
        port = localpg::free_port().unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\nshop = host=127.0.0.1 port={pg_port} dbname=app pool_size=3\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 auth_type = md5\nauth_file = userlist.txt\npool_mode = transaction\n\
                 server_tls_sslmode = disable\nserver_reset_query = DISCARD ALL\n\
                 max_client_conn = 50\nlogfile = /var/log/pgbouncer.log\n",
                pg_port = pg.port()
            ),
        )
        .unwrap();
        let (text, path) = convert_ok(&ini);
        // The one adjustment: our HTTP port must not collide with other test runs.
        let mut doc: toml_edit::DocumentMut = text.parse().expect("the output is TOML");
        let http = format!("127.0.0.1:{}", localpg::free_port().unwrap());
        doc["listen"]["http_addr"] = toml_edit::value(http);
        std::fs::write(&path, doc.to_string()).unwrap();
        running = start(&path, port);
        if running.is_some() {
            break;
        }
    }
    let _running = running.expect("the pooler starts with the converted config");
    let client = connect_with(
        tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("app")
            .password("app-pass")
            .dbname("shop")
            .connect_timeout(Duration::from_secs(10)),
    )
    .await
    .expect("connect through the converted pooler");
    let row = client
        .query_one(
            "SELECT current_database(), current_user, $1::int + 1",
            &[&41i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert_eq!(row.get::<_, String>(1), "app");
    assert_eq!(row.get::<_, i32>(2), 42);
    assert_eq!(
        simple_value(&client, "SHOW server_version_num").await.len(),
        6
    );
}
