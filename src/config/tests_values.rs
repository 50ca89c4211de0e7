//! (Test-only module: its parent declares it under `#[cfg(test)]`.)
//! Tests of value checks and `[databases.*]` entries: ranges, hosts, cross-key rules.

use std::path::Path;

use super::tests::{only_problem, parse, problems};
use super::*;

#[test]
fn bad_values_are_reported_with_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[pool]\ndefault_pool_size = 0", "pool.toml:2: pool.default_pool_size: must be at least 1, got 0"),
        ("[pool]\nmin_pool_size = -3", "pool.toml:2: pool.min_pool_size: must not be negative, got -3"),
        ("[pool]\nmax_prepared_statements = 5000000000", "pool.toml:2: pool.max_prepared_statements: must be at most 4294967295, got 5000000000"),
        ("[listen]\nmax_client_conn = 0", "pool.toml:2: listen.max_client_conn: must be at least 1, got 0"),
        ("[listen]\naddr = \"6432\"", "pool.toml:2: listen.addr: expected an IP address and port such as \"0.0.0.0:6432\" or \"[::]:6432\", got \"6432\""),
        ("[listen]\nclient_tls = \"always\"", "pool.toml:2: listen.client_tls: invalid value \"always\" (expected one of disable, allow, prefer, require)"),
        ("[pool]\nserver_tls = \"verify-ca\"", "pool.toml:2: pool.server_tls: invalid value \"verify-ca\" (expected one of disable, prefer, require, verify-full)"),
        ("[auth]\ntype = \"password\"", "pool.toml:2: auth.type: invalid value \"password\" (expected one of scram-sha-256, md5, trust)"),
        ("[auth]\nadmin_users = [\"\"]", "pool.toml:2: auth.admin_users: user names must not be empty"),
        ("[auth]\nfile = \"\"", "pool.toml:2: auth.file: a userlist is required unless type = \"trust\" (type is \"scram-sha-256\")"),
        ("[pool]\nmin_pool_size = 30", "pool.toml:2: pool.min_pool_size: must not exceed default_pool_size (20), got 30"),
        ("[pool]\nmin_pool_size = 10\nmax_db_connections = 5", "pool.toml:2: pool.min_pool_size: must not exceed max_db_connections (5), got 10"),
    ];
    for (text, expected) in cases {
        assert_eq!(only_problem(text), *expected, "{text:?}");
    }
    // file = "" is fine with trust, and means "no userlist".
    let c = parse("[auth]\ntype = \"trust\"\nfile = \"\"").unwrap();
    assert_eq!(c.auth.file, None);
    // max_db_connections = 0 is "unlimited", not a bound on min_pool_size.
    assert!(parse("[pool]\nmin_pool_size = 10\nmax_db_connections = 0").is_ok());
}

#[test]
fn client_tls_needs_a_certificate_and_key() {
    let p = problems("# tls\n[listen]\nclient_tls = \"prefer\"\n");
    let shown: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "pool.toml:2: listen.tls_cert: required when client_tls = \"prefer\"",
            "pool.toml:2: listen.tls_key: required when client_tls = \"prefer\"",
        ]
    );
    let text = "[listen]\nclient_tls = \"require\"\ntls_cert = \"c.pem\"\ntls_key = \"\"\n";
    assert_eq!(
        only_problem(text),
        "pool.toml:4: listen.tls_key: required when client_tls = \"require\""
    );
    assert!(parse("[listen]\nclient_tls = \"allow\"\ntls_cert = \"c\"\ntls_key = \"k\"").is_ok());
}

#[test]
fn database_entry_defaults_and_overrides() {
    let c = parse("[databases.app]\nhost = \"db1\"\n").unwrap();
    let app = &c.databases["app"];
    assert_eq!(app.name, "app");
    assert_eq!(app.dbname, "app");
    assert_eq!(app.role, Role::Any);
    assert_eq!(
        app.hosts,
        [HostPort {
            host: "db1".into(),
            port: 5432
        }]
    );
    assert_eq!(
        (app.pool_size, app.min_pool_size, app.max_db_connections),
        (None, None, None)
    );
    assert_eq!(
        (app.pool_mode, app.user.as_deref(), app.password.as_deref()),
        (None, None, None)
    );
    assert_eq!(app.effective_pool_size(&c.pool), 20);
    assert_eq!(app.effective_min_pool_size(&c.pool), 0);
    assert_eq!(app.effective_max_db_connections(&c.pool), 100);
    assert_eq!(app.effective_pool_mode(&c.pool), PoolMode::Transaction);

    let text = "[pool]\nmode = \"session\"\n[databases.app]\nhost = \"db1\"\nport = 6543\n\
                dbname = \"real\"\nrole = \"writer\"\npool_size = 7\nmin_pool_size = 2\n\
                max_db_connections = 0\npool_mode = \"transaction\"\nuser = \"u\"\npassword = \"p\"\n";
    let c = parse(text).unwrap();
    let app = &c.databases["app"];
    assert_eq!(
        app.hosts,
        [HostPort {
            host: "db1".into(),
            port: 6543
        }]
    );
    assert_eq!((app.dbname.as_str(), app.role), ("real", Role::Writer));
    assert_eq!(app.effective_pool_size(&c.pool), 7);
    assert_eq!(app.effective_min_pool_size(&c.pool), 2);
    assert_eq!(app.effective_max_db_connections(&c.pool), 0);
    assert_eq!(app.effective_pool_mode(&c.pool), PoolMode::Transaction);
    assert_eq!(
        (app.user.as_deref(), app.password.as_deref()),
        (Some("u"), Some("p"))
    );
}

#[test]
fn hosts_lists_take_ports_per_entry_and_ipv6_in_brackets() {
    let text = "[databases.app]\nport = 6000\nhosts = [\"h1\", \"h2:5433\", \"[::1]:5434\", \"[fe80::1]\", \"10.0.0.9\"]\n";
    let c = parse(text).unwrap();
    let shown: Vec<String> = c.databases["app"]
        .hosts
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert_eq!(
        shown,
        [
            "h1:6000",
            "h2:5433",
            "[::1]:5434",
            "[fe80::1]:6000",
            "10.0.0.9:6000"
        ]
    );
    assert_eq!(c.databases["app"].hosts[2].host, "::1");
    let c = parse("[databases.app]\nhost = \"::1\"\n").unwrap();
    assert_eq!(
        c.databases["app"].hosts,
        [HostPort {
            host: "::1".into(),
            port: 5432
        }]
    );
}

#[test]
fn host_and_hosts_are_exclusive_and_one_is_required() {
    let text = "[databases.app]\nhost = \"a\"\nhosts = [\"b\"]\n";
    assert_eq!(
        only_problem(text),
        "pool.toml:3: databases.app.hosts: set either host or hosts, not both"
    );
    let text = "[pool]\n\n[databases.app]\ndbname = \"x\"\n";
    assert_eq!(
        only_problem(text),
        "pool.toml:3: databases.app: missing host (set host = \"...\" or hosts = [\"h1:5432\", ...])"
    );
    let text = "[databases]\n\nother = { host = \"h\" }\napp = { dbname = \"x\" }\n";
    assert!(only_problem(text).starts_with("pool.toml:4: databases.app: missing host"));
}

#[test]
fn bad_hosts_and_ports_are_reported() {
    let cases: &[(&str, &str)] = &[
        ("host = \"\"", "pool.toml:2: databases.app.host: empty host"),
        ("host = \"h:5432\"", "pool.toml:2: databases.app.host: must not include a port (use port = N, or hosts = [\"host:port\"])"),
        ("host = \"bad host\"", "pool.toml:2: databases.app.host: \"bad host\" is not a valid host name or IP address"),
        ("hosts = []", "pool.toml:2: databases.app.hosts: must list at least one host"),
        ("hosts = [\"a\", \"b:0\"]", "pool.toml:2: databases.app.hosts: entry 2: \"b:0\": port must be a number from 1 to 65535, got \"0\""),
        ("hosts = [\"a\", \"\"]", "pool.toml:2: databases.app.hosts: entry 2: empty host"),
        ("hosts = [\"::1:5432\"]", "pool.toml:2: databases.app.hosts: entry 1: \"::1:5432\": write an IPv6 address in brackets, as [addr] or [addr]:port"),
        ("hosts = [\"a:5432\", \"a\"]", "pool.toml:2: databases.app.hosts: entry 2: a:5432 is listed twice"),
        ("host = \"h\"\nport = 0", "pool.toml:3: databases.app.port: must be at least 1, got 0"),
        ("host = \"h\"\nport = 65536", "pool.toml:3: databases.app.port: must be at most 65535, got 65536"),
    ];
    for (body, expected) in cases {
        let text = format!("[databases.app]\n{body}\n");
        assert_eq!(only_problem(&text), *expected, "{body:?}");
    }
}

#[test]
fn database_entry_values_are_checked() {
    let entry = |body: &str| format!("[databases.app]\nhost = \"h\"\n{body}\n");
    let cases: &[(&str, &str)] = &[
        ("pool_size = 0", "pool.toml:3: databases.app.pool_size: must be at least 1, got 0"),
        ("role = \"primary\"", "pool.toml:3: databases.app.role: invalid value \"primary\" (expected one of writer, reader, any)"),
        ("pool_mode = \"statement\"", "pool.toml:3: databases.app.pool_mode: invalid value \"statement\" (expected one of transaction, session)"),
        ("dbname = \"\"", "pool.toml:3: databases.app.dbname: must not be empty"),
        ("user = \"\"", "pool.toml:3: databases.app.user: must not be empty"),
        ("password = \"secret\"", "pool.toml:3: databases.app.password: password is set but user is not (set the server user it belongs to)"),
        ("user = \"u\"\npassword = \"\"", "pool.toml:4: databases.app.password: must not be empty (omit it to use the userlist's password for user)"),
        ("pool_size = 5\nmin_pool_size = 6", "pool.toml:4: databases.app.min_pool_size: must not exceed the pool size (5), got 6"),
        ("min_pool_size = 21", "pool.toml:3: databases.app.min_pool_size: must not exceed the pool size (20), got 21"),
        ("max_db_connections = 3\nmin_pool_size = 4\npool_size = 10", "pool.toml:4: databases.app.min_pool_size: must not exceed max_db_connections (3), got 4"),
    ];
    for (body, expected) in cases {
        assert_eq!(only_problem(&entry(body)), *expected, "{body:?}");
    }
    let long = "d".repeat(64);
    assert!(only_problem(&entry(&format!("dbname = \"{long}\"")))
        .ends_with("databases.app.dbname: must be at most 63 bytes long"));
    // A global min_pool_size that an entry's smaller limits cannot hold blames the entry's key.
    let text = "[pool]\nmin_pool_size = 8\n[databases.app]\nhost = \"h\"\npool_size = 4\n";
    assert_eq!(
        only_problem(text),
        "pool.toml:5: databases.app.pool_size: must be at least min_pool_size (8), got 4"
    );
    let text = "[pool]\nmin_pool_size = 8\n[databases.app]\nhost = \"h\"\nmax_db_connections = 4\n";
    assert_eq!(
        only_problem(text),
        "pool.toml:5: databases.app.max_db_connections: must be 0 (unlimited) or at least min_pool_size (8), got 4"
    );
}

#[test]
fn database_names_are_checked() {
    for reserved in ["pgbouncer", "pgpool"] {
        let text = format!("\n[databases.{reserved}]\nhost = \"h\"\n");
        assert_eq!(
            only_problem(&text),
            format!("pool.toml:2: databases.{reserved}: the name \"{reserved}\" is reserved for the admin console")
        );
    }
    assert_eq!(
        only_problem("[databases.\"\"]\nhost = \"h\"\n"),
        "pool.toml:1: databases.\"\": database name must not be empty"
    );
    let long = "n".repeat(64);
    assert!(only_problem(&format!("[databases.{long}]\nhost = \"h\"\n"))
        .ends_with("database name must be at most 63 bytes long"));
    // Names are case-sensitive, as in PostgreSQL: only the exact admin names are reserved.
    assert!(parse("[databases.PgBouncer]\nhost = \"h\"\n").is_ok());
}

#[test]
fn semantic_problems_are_all_collected() {
    let text = "\
[listen]
client_tls = \"require\"
[pool]
min_pool_size = 50
[databases.pgpool]
host = \"h\"
password = \"x\"
[databases.app]
dbname = \"app\"
";
    let p = problems(text);
    let keys: Vec<&str> = p.iter().filter_map(|p| p.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "listen.tls_cert",
            "listen.tls_key",
            "pool.min_pool_size",
            "databases.pgpool",
            "databases.pgpool.password",
            "databases.app",
        ],
        "{p:#?}"
    );
    assert!(p
        .iter()
        .all(|p| p.file == Path::new("pool.toml") && p.line.is_some()));
}

#[test]
fn verify_full_needs_a_ca_file_resolved_next_to_the_config() {
    assert_eq!(
        only_problem("[pool]\nserver_tls = \"verify-full\"\n"),
        "pool.toml:1: pool.server_tls_ca_file: required when server_tls = \"verify-full\" \
         (a PEM bundle of the CA certificates that signed the servers' certificates)"
    );
    let text = "[pool]\nserver_tls = \"verify-full\"\nserver_tls_ca_file = \"rds.pem\"\n";
    let c = Config::parse(text, Path::new("/etc/pgpool/pool.toml")).unwrap();
    assert_eq!(
        c.pool.server_tls_ca_file.as_deref(),
        Some(Path::new("/etc/pgpool/rds.pem"))
    );
    // Other modes do not need one.
    assert!(parse("[pool]\nserver_tls = \"require\"\n").is_ok());
}

#[test]
fn login_throttle_keys() {
    let d = parse("").unwrap().auth;
    assert_eq!(
        (
            d.login_failure_limit,
            d.login_failure_window,
            d.login_failure_block
        ),
        (5, std::time::Duration::from_secs(60), 50)
    );
    let c = parse(
        "[auth]\nlogin_failure_limit = 3\nlogin_failure_window = 10\nlogin_failure_block = 4",
    )
    .unwrap()
    .auth;
    assert_eq!(
        (
            c.login_failure_limit,
            c.login_failure_window,
            c.login_failure_block
        ),
        (3, std::time::Duration::from_secs(10), 4)
    );
    // Off, and "never refuse", are 0.
    parse("[auth]\nlogin_failure_limit = 0\nlogin_failure_block = 1").unwrap();
    parse("[auth]\nlogin_failure_block = 0").unwrap();
    let cases: &[(&str, &str)] = &[
        ("[auth]\nlogin_failure_block = 5", "pool.toml:2: auth.login_failure_block: must be greater than login_failure_limit (5), or 0 to never refuse, got 5"),
        ("[auth]\nlogin_failure_window = 0", "pool.toml:2: auth.login_failure_window: must be at least 1, got 0"),
        ("[auth]\nlogin_failure_limit = -1", "pool.toml:2: auth.login_failure_limit: must not be negative, got -1"),
    ];
    for (text, expected) in cases {
        assert_eq!(only_problem(text), *expected, "{text:?}");
    }
}
