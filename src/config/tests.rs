//! (Test-only module: its parent declares it under `#[cfg(test)]`.)
//! Tests of `pool.toml` parsing: defaults, the shipped example, and every class of problem
//! with its line and key. Value-range and database-entry tests are in `tests_values.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("pool.toml"))
}

pub(super) fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(e) => e.problems,
    }
}

/// The only problem of `text`, as its Display line.
pub(super) fn only_problem(text: &str) -> String {
    let problems = problems(text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    problems[0].to_string()
}

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.path, PathBuf::from("pool.toml"));
    assert_eq!(c.listen.addr, addr("0.0.0.0:6432"));
    assert_eq!(c.listen.max_client_conn, 1000);
    assert_eq!(c.listen.client_tls, ClientTls::Disable);
    assert_eq!(c.listen.tls_cert, None);
    assert_eq!(c.listen.tls_key, None);
    assert_eq!(c.listen.http_addr, Some(addr("127.0.0.1:9930")));
    assert_eq!(c.auth.auth_type, AuthType::ScramSha256);
    assert_eq!(c.auth.file, Some(PathBuf::from("userlist.txt")));
    assert!(c.auth.admin_users.is_empty() && c.auth.stats_users.is_empty());
    assert!(!c.auth.trust_remote);
    let p = &c.pool;
    assert_eq!(p.mode, PoolMode::Transaction);
    assert_eq!(
        (p.default_pool_size, p.min_pool_size, p.reserve_pool_size),
        (20, 0, 0)
    );
    assert_eq!(p.reserve_pool_timeout, Duration::from_millis(5000));
    assert_eq!(p.max_db_connections, 100);
    assert_eq!(p.server_reset_query, "DISCARD ALL");
    assert!(!p.server_reset_query_always);
    assert_eq!(p.server_check_query, "SELECT 1");
    let secs = Duration::from_secs;
    assert_eq!(p.server_check_delay, secs(30));
    assert_eq!(p.server_idle_timeout, secs(600));
    assert_eq!(p.server_lifetime, secs(3600));
    assert_eq!(p.server_connect_timeout, secs(5));
    assert_eq!(p.server_tls, ServerTls::Prefer);
    assert_eq!(p.query_wait_timeout, secs(120));
    assert_eq!(p.query_timeout, Duration::ZERO);
    assert_eq!(p.idle_transaction_timeout, Duration::ZERO);
    assert_eq!(p.client_idle_timeout, Duration::ZERO);
    assert_eq!(p.client_login_timeout, secs(60));
    assert_eq!(p.shutdown_timeout, secs(30));
    assert_eq!(p.max_prepared_statements, 200);
    assert!(c.databases.is_empty());
    // The Default impls are the same values.
    assert_eq!(c.listen, Listen::default());
    assert_eq!(c.auth, Auth::default());
    assert_eq!(c.pool, PoolSettings::default());
    let d = Auth::default();
    assert_eq!(
        (
            c.auth.login_failure_limit,
            c.auth.login_failure_window,
            c.auth.login_failure_block
        ),
        (
            d.login_failure_limit,
            d.login_failure_window,
            d.login_failure_block
        )
    );
}

#[test]
fn empty_sections_and_other_table_forms_are_accepted() {
    let c = parse("[listen]\n[auth]\n[pool]\n[databases]\n").unwrap();
    assert_eq!(c.pool, PoolSettings::default());
    let c = parse("listen.addr = \"127.0.0.1:7000\"\npool = { mode = \"session\" }\n").unwrap();
    assert_eq!(c.listen.addr, addr("127.0.0.1:7000"));
    assert_eq!(c.pool.mode, PoolMode::Session);
    let c = parse("[databases]\napp = { host = \"h\", pool_size = 3 }\n").unwrap();
    assert_eq!(c.databases["app"].pool_size, Some(3));
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pool.toml")
}

#[test]
fn the_shipped_example_parses_with_its_documented_values() {
    let c = Config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    let dir = example_path().parent().unwrap().to_path_buf();
    assert_eq!(c.auth.file, Some(dir.join("userlist.txt")));
    assert_eq!(c.listen.tls_cert, Some(dir.join("server.crt")));
    assert_eq!(c.auth.admin_users, ["admin"]);
    assert_eq!(c.auth.stats_users, ["monitor"]);
    // The example restates every default.
    assert_eq!(
        c.listen,
        Listen {
            tls_cert: c.listen.tls_cert.clone(),
            tls_key: c.listen.tls_key.clone(),
            ..Listen::default()
        }
    );
    assert_eq!(c.pool, PoolSettings::default());
    assert_eq!(c.databases.len(), 3);
    let w = &c.databases["skillswap"];
    assert_eq!(w.role, Role::Writer);
    assert_eq!(w.hosts.len(), 1);
    assert_eq!(w.hosts[0].port, 5432);
    assert_eq!(w.effective_pool_size(&c.pool), 100);
    assert_eq!(w.effective_min_pool_size(&c.pool), 5);
    assert_eq!(w.effective_max_db_connections(&c.pool), 150);
    let r = &c.databases["skillswap_ro"];
    assert_eq!(r.role, Role::Reader);
    assert_eq!(r.dbname, "skillswap");
    assert_eq!(r.hosts.len(), 2);
    assert!(r.hosts.iter().all(|h| h.port == 5432));
    let m = &c.databases["skillswap_migrate"];
    assert_eq!(m.effective_pool_mode(&c.pool), PoolMode::Session);
    assert_eq!(m.user.as_deref(), Some("migrator"));
}

#[test]
fn the_shipped_example_mentions_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let doc = toml_edit::ImDocument::parse(text.as_str()).unwrap();
    let top = doc.as_table();
    for (section, keys) in [
        ("listen", sections::LISTEN_KEYS),
        ("auth", sections::AUTH_KEYS),
        ("pool", sections::POOL_KEYS),
    ] {
        let table = top[section].as_table().unwrap();
        for key in keys {
            assert!(
                table.contains_key(key),
                "{section}.{key} missing from the example"
            );
        }
    }
    let databases = top["databases"].as_table().unwrap();
    for key in sections::DATABASE_KEYS {
        let used = databases
            .iter()
            .any(|(_, entry)| entry.as_table().is_some_and(|t| t.contains_key(key)));
        assert!(used, "databases.*.{key} missing from the example");
    }
}

#[test]
fn the_shipped_userlist_parses() {
    let path = example_path().with_file_name("userlist.txt");
    let users = Userlist::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(users.len(), 4);
    assert!(matches!(users.get("admin"), Some(Secret::Plain(_))));
    assert!(matches!(users.get("monitor"), Some(Secret::Md5(_))));
    assert!(matches!(users.get("app"), Some(Secret::Scram(_))));
    assert_eq!(users.get("say\"hi"), Some(&Secret::Plain("pa\"ss".into())));
}

#[test]
fn unknown_keys_are_reported_with_line_and_dotted_key() {
    assert_eq!(
        only_problem("[listen]\naddr = \"0.0.0.0:6432\"\nmax_clients = 5\n"),
        "pool.toml:3: listen.max_clients: unknown key (expected one of addr, max_client_conn, \
         client_tls, tls_cert, tls_key, http_addr)"
    );
    assert_eq!(
        only_problem("\nverbose = true\n"),
        "pool.toml:2: verbose: unknown key (expected one of listen, auth, pool, databases)"
    );
    assert!(
        only_problem("[listen]\n[server]\nx = 1\n").starts_with("pool.toml:2: server: unknown key")
    );
    assert!(only_problem("[pool]\npool_mode = \"session\"\n")
        .starts_with("pool.toml:2: pool.pool_mode: unknown key (expected one of mode,"));
    let text = "[databases.app]\nhost = \"h\"\n\npoolsize = 5\n";
    assert!(only_problem(text).starts_with("pool.toml:4: databases.app.poolsize: unknown key"));
    let text = "[databases.\"a.b\"]\nhost = \"h\"\nuser_name = \"x\"\n";
    assert!(only_problem(text).starts_with("pool.toml:3: databases.\"a.b\".user_name: unknown key"));
    let text = "[databases]\napp = { host = \"h\", size = 1 }\n";
    assert!(only_problem(text).starts_with("pool.toml:2: databases.app.size: unknown key"));
}

#[test]
fn all_problems_are_reported_in_line_order() {
    let text = "\
[pool]
default_pool_size = 0
bogus = 1

[listen]
max_client_conn = \"many\"

[databases.app]
hosts = [\"a\", \"b:0\"]
";
    let lines: Vec<String> = problems(text).iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(
        lines[0],
        "pool.toml:2: pool.default_pool_size: must be at least 1, got 0"
    );
    assert!(lines[1].starts_with("pool.toml:3: pool.bogus: unknown key"));
    assert_eq!(
        lines[2],
        "pool.toml:6: listen.max_client_conn: expected an integer, got a string"
    );
    assert!(
        lines[3].starts_with("pool.toml:9: databases.app.hosts: entry 2:"),
        "{}",
        lines[3]
    );
    // ConfigError's Display is the same, one per line.
    let shown = parse(text).unwrap_err().to_string();
    assert_eq!(shown, lines.join("\n"));
}

#[test]
fn wrong_types_are_reported() {
    let cases: &[(&str, &str)] = &[
        (
            "[auth]\ntrust_remote = \"yes\"",
            "auth.trust_remote: expected a boolean (true or false), got a string",
        ),
        (
            "[auth]\nadmin_users = \"admin\"",
            "auth.admin_users: expected an array of strings, got a string",
        ),
        (
            "[auth]\nstats_users = [\"a\", 1]",
            "auth.stats_users: expected an array of strings, but element 2 is an integer",
        ),
        (
            "[pool]\nquery_timeout = 1.5",
            "pool.query_timeout: expected an integer, got a float",
        ),
        (
            "[pool]\nmode = 1979-05-27",
            "pool.mode: expected a string, got a date-time",
        ),
        (
            "[pool.mode]\nx = 1",
            "pool.mode: expected a string, got a table",
        ),
        (
            "[pool]\nserver_reset_query = [\"DISCARD ALL\"]",
            "pool.server_reset_query: expected a string, got an array",
        ),
        ("listen = 5", "listen: expected a table, got an integer"),
        (
            "[[pool]]\nmode = \"session\"",
            "pool: expected a table, got an array of tables",
        ),
        (
            "[databases]\napp = \"h\"",
            "databases.app: expected a table, got a string",
        ),
        (
            "[databases.app]\nhost = [\"h\"]",
            "databases.app.host: expected a string, got an array",
        ),
        (
            "[databases.app]\nhost = \"h\"\nport = \"5432\"",
            "databases.app.port: expected an integer, got a string",
        ),
    ];
    for (text, expected) in cases {
        let shown = only_problem(text);
        assert!(shown.ends_with(expected), "{text:?}: {shown}");
        assert!(shown.starts_with("pool.toml:"), "{shown}");
    }
    // Line of a wrong-typed key is that key's line.
    assert!(only_problem("[auth]\n\n\ntrust_remote = 1").starts_with("pool.toml:4: "));
}

#[test]
fn syntax_errors_name_the_line() {
    let p = problems("[listen]\naddr = \"0.0.0.0:6432\"\nmax_client_conn = = 3\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(3));
    assert_eq!(p[0].key, None);
    assert!(p[0].message.starts_with("invalid TOML"), "{}", p[0].message);
    assert_eq!(
        only_problem("\n[listen\naddr = 1\n"),
        "pool.toml:2: invalid TOML: invalid table header; expected `.`, `]`"
    );
    let p = problems("[pool]\nmode = \"session\"\nmode = \"transaction\"\n");
    assert_eq!(p[0].line, Some(3), "{p:?}");
    assert!(p[0].message.contains("duplicate"), "{}", p[0].message);
}

#[test]
fn durations_are_seconds_or_milliseconds_and_never_negative() {
    let c = parse(
        "[pool]\nserver_idle_timeout = 45\nreserve_pool_timeout_ms = 250\nquery_timeout = 0\n",
    )
    .unwrap();
    assert_eq!(c.pool.server_idle_timeout, Duration::from_secs(45));
    assert_eq!(c.pool.reserve_pool_timeout, Duration::from_millis(250));
    assert_eq!(c.pool.query_timeout, Duration::ZERO);
    assert_eq!(
        only_problem("[pool]\nquery_wait_timeout = -1"),
        "pool.toml:2: pool.query_wait_timeout: must not be negative, got -1"
    );
    assert_eq!(
        only_problem("[pool]\nreserve_pool_timeout_ms = -5"),
        "pool.toml:2: pool.reserve_pool_timeout_ms: must not be negative, got -5"
    );
    assert_eq!(
        only_problem("[pool]\nserver_connect_timeout = 0"),
        "pool.toml:2: pool.server_connect_timeout: must be at least 1, got 0"
    );
    assert!(only_problem("[pool]\nserver_lifetime = 0").contains("must be at least 1, got 0"));
    assert!(only_problem("[pool]\nshutdown_timeout = 999999999999")
        .ends_with("pool.shutdown_timeout: must be at most 315360000, got 999999999999"));
    let c = parse("[pool]\nreserve_pool_timeout_ms = 315360000000").unwrap();
    assert_eq!(
        c.pool.reserve_pool_timeout,
        Duration::from_secs(315_360_000)
    );
}

#[test]
fn http_addr_empty_string_disables_http() {
    let c = parse("[listen]\nhttp_addr = \"\"").unwrap();
    assert_eq!(c.listen.http_addr, None);
    let c = parse("[listen]\nhttp_addr = \"[::1]:9000\"\naddr = \"[::]:6432\"").unwrap();
    assert_eq!(c.listen.http_addr, Some(addr("[::1]:9000")));
    assert_eq!(c.listen.addr, addr("[::]:6432"));
    assert!(only_problem("[listen]\nhttp_addr = \"localhost:9930\"")
        .starts_with("pool.toml:2: listen.http_addr: expected an IP address and port"));
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = "[listen]\nclient_tls = \"require\"\ntls_cert = \"certs/server.crt\"\n\
                tls_key = \"/secure/server.key\"\n[auth]\nfile = \"users.txt\"\n";
    let c = Config::parse(text, Path::new("/etc/pgpool/pool.toml")).unwrap();
    assert_eq!(
        c.listen.tls_cert,
        Some(PathBuf::from("/etc/pgpool/certs/server.crt"))
    );
    assert_eq!(c.listen.tls_key, Some(PathBuf::from("/secure/server.key")));
    assert_eq!(c.auth.file, Some(PathBuf::from("/etc/pgpool/users.txt")));
    // The default userlist is resolved the same way.
    let c = Config::parse("", Path::new("conf/pool.toml")).unwrap();
    assert_eq!(c.auth.file, Some(PathBuf::from("conf/userlist.txt")));
}

#[test]
fn problem_display_omits_unknown_parts() {
    let p = |line, key: Option<&str>| Problem::new(Path::new("f.toml"), line, key, "bad");
    assert_eq!(p(Some(3), Some("a.b")).to_string(), "f.toml:3: a.b: bad");
    assert_eq!(p(None, Some("a.b")).to_string(), "f.toml: a.b: bad");
    assert_eq!(p(Some(3), None).to_string(), "f.toml:3: bad");
    assert_eq!(p(None, None).to_string(), "f.toml: bad");
    let multi = Problem::new(Path::new("f"), None, Some("k\n"), "a\nb\tc\u{7}");
    assert_eq!(multi.to_string(), "f: k\\n: a\\nb\\tc\\u{7}");
    let e = ConfigError::new(vec![p(Some(9), None), p(None, None), p(Some(2), None)]);
    assert_eq!(e.to_string(), "f.toml: bad\nf.toml:2: bad\nf.toml:9: bad");
    let _: &dyn std::error::Error = &e;
}

#[test]
fn enums_round_trip_through_their_spellings() {
    for (value, text) in ServerTls::ALL {
        assert_eq!(value.to_string(), *text);
        assert_eq!(text.parse::<ServerTls>(), Ok(*value));
    }
    assert_eq!("verify-full".parse(), Ok(ServerTls::VerifyFull));
    assert_eq!("scram-sha-256".parse(), Ok(AuthType::ScramSha256));
    let err = "Session".parse::<PoolMode>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value \"Session\" (expected one of transaction, session)"
    );
    assert_eq!(Role::default(), Role::Any);
    assert_eq!(ClientTls::ALL.len(), 4);
}

#[test]
fn load_reports_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].line, None);
    assert!(e.problems[0].message.starts_with("cannot read file"), "{e}");
    assert!(e.to_string().starts_with(&missing.display().to_string()));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_report_loads_the_userlist_and_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "pool.toml",
        "[databases.app]\nhost = \"localhost\"\n",
    );
    // No userlist yet: the default userlist.txt next to pool.toml is required.
    let (ok, text) = check_report(&cfg);
    assert!(!ok);
    assert!(text.contains("userlist.txt: cannot read file"), "{text}");

    write(dir.path(), "userlist.txt", "\"app\" \"pw\"\n");
    assert_eq!(
        check_report(&cfg),
        (true, format!("configuration OK: {}", cfg.display()))
    );

    write(
        dir.path(),
        "userlist.txt",
        "\"app\" \"pw\"\n\"bad\" SCRAM\n",
    );
    let (ok, text) = check_report(&cfg);
    assert!(!ok);
    assert!(
        text.ends_with("userlist.txt:2: bad: password field must be double-quoted"),
        "{text}"
    );

    let trust = write(
        dir.path(),
        "trust.toml",
        "[auth]\ntype = \"trust\"\nfile = \"missing.txt\"\n",
    );
    assert!(check_report(&trust).0);

    let tls = "[listen]\nclient_tls = \"require\"\ntls_cert = \"a.crt\"\ntls_key = \"a.key\"\n\
               [auth]\ntype = \"trust\"\n";
    let tls = write(dir.path(), "tls.toml", tls);
    let (ok, text) = check_report(&tls);
    assert!(!ok);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("tls.toml:3: listen.tls_cert: cannot read"),
        "{text}"
    );
    assert!(
        lines[1].contains("tls.toml:4: listen.tls_key: cannot read"),
        "{text}"
    );

    let bad = write(dir.path(), "bad.toml", "[pool]\nmode = \"statement\"\n");
    let (ok, text) = check_report(&bad);
    assert!(!ok);
    assert!(text.ends_with("bad.toml:2: pool.mode: invalid value \"statement\" (expected one of transaction, session)"), "{text}");
}

#[test]
fn debug_output_never_shows_passwords() {
    let text = "[databases.app]\nhost = \"h\"\nuser = \"u\"\npassword = \"hunter2\"\n";
    let c = parse(text).unwrap();
    assert_eq!(c.databases["app"].password.as_deref(), Some("hunter2"));
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>"));
}
