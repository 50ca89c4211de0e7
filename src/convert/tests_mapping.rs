//! Unit tests of the mapping: whole pgbouncer.ini files converted, the output read back
//! with `Config::parse`, and the values and comments checked.

use std::path::Path;
use std::time::Duration;

use super::tests::files;
use super::{convert_file, Conversion};
use crate::config::{AuthType, ClientTls, Config, HostPort, PoolMode, Role, ServerTls};

/// Converts `ini` and parses the result (panicking with the text if it does not parse).
fn convert(ini: &str) -> (Conversion, Config) {
    let dir = files(&[("pgbouncer.ini", ini)]);
    let done = convert_file(&dir.path().join("pgbouncer.ini")).expect("converts");
    let config = Config::parse(&done.toml, Path::new("/etc/pgpool/pool.toml"))
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", done.toml));
    (done, config)
}

/// The comment lines of `text` joined back into one string per comment (continuations
/// `#   ...` appended), for matching a comment regardless of wrapping.
fn comments(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(more) = line.strip_prefix("#   ") {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(more);
                continue;
            }
        }
        if let Some(c) = line.strip_prefix("# ") {
            out.push(c.to_owned());
        }
    }
    out
}

fn has_comment(text: &str, starts: &str) -> bool {
    comments(text).iter().any(|c| c.starts_with(starts))
}

fn error_of(ini: &str) -> String {
    let dir = files(&[("pgbouncer.ini", ini)]);
    convert_file(&dir.path().join("pgbouncer.ini"))
        .map(|c| c.toml)
        .expect_err("should not convert")
        .to_string()
}

const USERS_TODAY: &str = "\
[databases]
skillswap = host=aurora-cluster.cluster-abc.eu-west-1.rds.amazonaws.com port=5432 dbname=skillswap

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 5432
auth_type = md5
auth_file = /etc/pgbouncer/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 100
max_db_connections = 100
server_idle_timeout = 600
server_lifetime = 3600
server_reset_query = DISCARD ALL
";

#[test]
fn the_config_our_users_run_today() {
    let (done, c) = convert(USERS_TODAY);
    assert_eq!(c.listen.addr.to_string(), "0.0.0.0:5432");
    assert_eq!(c.listen.max_client_conn, 1000);
    assert_eq!(c.auth.auth_type, AuthType::Md5);
    assert_eq!(
        c.auth.file.as_deref(),
        Some(Path::new("/etc/pgbouncer/userlist.txt"))
    );
    assert_eq!(c.pool.mode, PoolMode::Transaction);
    assert_eq!(c.pool.default_pool_size, 100);
    assert_eq!(c.pool.max_db_connections, 100);
    assert_eq!(c.pool.server_idle_timeout, Duration::from_secs(600));
    assert_eq!(c.pool.server_lifetime, Duration::from_secs(3600));
    assert_eq!(c.pool.server_reset_query, "DISCARD ALL");
    assert!(!c.pool.server_reset_query_always);
    // PgBouncer's 15 s default, not ours (5 s).
    assert_eq!(c.pool.server_connect_timeout, Duration::from_secs(15));
    let db = &c.databases["skillswap"];
    assert_eq!(
        db.hosts,
        vec![HostPort {
            host: "aurora-cluster.cluster-abc.eu-west-1.rds.amazonaws.com".into(),
            port: 5432
        }]
    );
    assert_eq!(db.dbname, "skillswap");
    assert_eq!(db.role, Role::Writer);
    assert!(
        has_comment(&done.toml, "note: role inferred"),
        "{}",
        done.toml
    );
    assert_eq!(done.not_carried, 0);
    assert_eq!(done.disabled_databases, 0);
}

#[test]
fn pgbouncer_defaults_are_written_where_they_differ_from_ours() {
    let (done, c) = convert("[databases]\napp = host=127.0.0.1\n");
    assert_eq!(c.pool.mode, PoolMode::Session);
    assert_eq!(c.listen.max_client_conn, 100);
    assert_eq!(c.pool.max_db_connections, 0);
    assert_eq!(c.pool.server_connect_timeout, Duration::from_secs(15));
    assert_eq!(c.auth.auth_type, AuthType::Md5);
    // No listen_addr: PgBouncer took Unix-socket clients only; loopback is the closest.
    assert_eq!(c.listen.addr.to_string(), "127.0.0.1:6432");
    assert!(has_comment(
        &done.toml,
        "note: PgBouncer had no listen_addr"
    ));
    assert!(has_comment(
        &done.toml,
        "note: pgbouncer.ini sets no auth_file"
    ));
    assert!(has_comment(
        &done.toml,
        "note: not set in pgbouncer.ini: PgBouncer's default session"
    ));
    let db = &c.databases["app"];
    assert_eq!(db.dbname, "app");
    assert_eq!(db.role, Role::Any);
    assert_eq!(db.hosts[0].port, 5432);
}

#[test]
fn every_setting_without_an_equivalent_gets_a_comment_naming_it() {
    let unsupported = [
        ("logfile", "/var/log/pgbouncer/pgbouncer.log"),
        ("pidfile", "/run/pgbouncer.pid"),
        ("unix_socket_dir", "/tmp"),
        ("stats_period", "60"),
        ("ignore_startup_parameters", "extra_float_digits, options"),
        (
            "auth_query",
            "SELECT usename, passwd FROM pg_shadow WHERE usename=$1",
        ),
        ("tcp_keepalive", "1"),
        ("so_reuseport", "1"),
        ("suspend_timeout", "10"),
        ("transaction_timeout", "30"),
        ("no_such_setting", "42"),
    ];
    let mut ini = String::from("[pgbouncer]\nlisten_addr = 127.0.0.1\n");
    for (key, value) in unsupported {
        ini.push_str(&format!("{key} = {value}\n"));
    }
    ini.push_str("[users]\nalice = pool_mode=session pool_size=5\n");
    ini.push_str("[peers]\n1 = host=/tmp/pgbouncer1\n");
    ini.push_str("[databases]\n* = host=fallback port=5433 password=topsecret\n");
    let (done, _) = convert(&ini);
    for (key, value) in unsupported {
        let expected = format!("not carried over: {key} = {value} — ");
        assert!(
            has_comment(&done.toml, &expected),
            "{expected}\n{}",
            done.toml
        );
    }
    assert!(has_comment(
        &done.toml,
        "not carried over: [users] alice = pool_mode=session pool_size=5 — pgpool-rs has no per-user"
    ));
    assert!(has_comment(&done.toml, "not carried over: [peers] 1 = "));
    assert!(has_comment(
        &done.toml,
        "not carried over: [databases] * = host=fallback port=5433 password=<redacted> — "
    ));
    assert!(!done.toml.contains("topsecret"));
    assert_eq!(done.not_carried, unsupported.len() + 3);
    // In file order, each with its line.
    let logfile = done.toml.find("logfile =").expect("test input");
    let pidfile = done.toml.find("pidfile =").expect("test input");
    assert!(logfile < pidfile);
    assert!(done.toml.contains("[pgbouncer.ini:3]"), "{}", done.toml);
}

#[test]
fn statement_mode_and_unsupported_auth_types_are_approximated_with_comments() {
    let (done, c) = convert("[pgbouncer]\npool_mode = Statement\nauth_type = hba\n");
    assert_eq!(c.pool.mode, PoolMode::Transaction);
    assert!(has_comment(&done.toml, "note: PgBouncer's statement mode"));
    assert_eq!(c.auth.auth_type, AuthType::ScramSha256);
    assert!(has_comment(
        &done.toml,
        "not carried over: auth_type = hba — "
    ));
    for other in ["cert", "plain", "any", "pam", "ldap"] {
        let (done, c) = convert(&format!("[pgbouncer]\nauth_type = {other}\n"));
        assert_eq!(c.auth.auth_type, AuthType::ScramSha256, "{other}");
        let expected = format!("not carried over: auth_type = {other} — ");
        assert!(has_comment(&done.toml, &expected), "{}", done.toml);
    }
    assert!(
        error_of("[pgbouncer]\nauth_type = sometimes\n").contains("pgbouncer.ini:2: auth_type:")
    );
}

#[test]
fn trust_from_anywhere_is_kept_explicitly() {
    let (done, c) = convert("[pgbouncer]\nauth_type = trust\nlisten_addr = *\n");
    assert_eq!(c.auth.auth_type, AuthType::Trust);
    assert!(c.auth.trust_remote);
    assert!(has_comment(
        &done.toml,
        "note: PgBouncer's trust accepts clients from anywhere"
    ));
    let (_, local) = convert("[pgbouncer]\nauth_type = trust\nlisten_addr = 127.0.0.1\n");
    assert!(!local.auth.trust_remote);
}

#[test]
fn listen_addresses() {
    let addr = |ini: &str| convert(ini).1.listen.addr.to_string();
    assert_eq!(addr("[pgbouncer]\nlisten_addr = *\n"), "0.0.0.0:6432");
    assert_eq!(
        addr("[pgbouncer]\nlisten_addr = localhost\nlisten_port = 7000\n"),
        "127.0.0.1:7000"
    );
    assert_eq!(addr("[pgbouncer]\nlisten_addr = ::1\n"), "[::1]:6432");
    let (done, c) = convert("[pgbouncer]\nlisten_addr = 10.1.2.3, 10.1.2.4\n");
    assert_eq!(c.listen.addr.to_string(), "10.1.2.3:6432");
    assert!(has_comment(
        &done.toml,
        "note: pgpool-rs listens on one address; PgBouncer also listened on 10.1.2.4"
    ));
    let (done, c) = convert("[pgbouncer]\nlisten_addr = pooler.internal\n");
    assert_eq!(c.listen.addr.to_string(), "0.0.0.0:6432");
    assert!(has_comment(
        &done.toml,
        "note: listen_addr names a host (pooler.internal)"
    ));
    assert!(error_of("[pgbouncer]\nlisten_port = 0\n").contains("pgbouncer.ini:2: listen_port:"));
}

#[test]
fn tls_modes_map_to_the_nearest_with_notes() {
    let (done, c) = convert(
        "[pgbouncer]\nserver_tls_sslmode = verify-ca\nclient_tls_sslmode = verify-full\n\
         client_tls_cert_file = /etc/tls/server.crt\nclient_tls_key_file = server.key\n\
         server_tls_ca_file = /etc/ssl/rds-ca.pem\n",
    );
    assert_eq!(c.pool.server_tls, ServerTls::VerifyFull);
    assert_eq!(
        c.pool.server_tls_ca_file.as_deref(),
        Some(Path::new("/etc/ssl/rds-ca.pem"))
    );
    let (done_no_ca, no_ca) = convert("[pgbouncer]\nserver_tls_sslmode = verify-full\n");
    assert_eq!(no_ca.pool.server_tls, ServerTls::Require);
    assert!(has_comment(&done_no_ca.toml, "note: no server_tls_ca_file"));
    assert!(has_comment(
        &done.toml,
        "note: PgBouncer's verify-ca does not check the host name"
    ));
    assert_eq!(c.listen.client_tls, ClientTls::Require);
    assert!(has_comment(
        &done.toml,
        "note: PgBouncer's verify-full also verified client certificates"
    ));
    assert_eq!(
        c.listen.tls_cert.as_deref(),
        Some(Path::new("/etc/tls/server.crt"))
    );
    // Relative paths resolve against the pool.toml's directory; the note says so.
    assert_eq!(
        c.listen.tls_key.as_deref(),
        Some(Path::new("/etc/pgpool/server.key"))
    );
    assert!(has_comment(
        &done.toml,
        "note: relative: PgBouncer read it from its working directory"
    ));

    let (done, _) = convert("[pgbouncer]\nauth_file = ~/userlist.txt\n");
    assert!(has_comment(
        &done.toml,
        "note: PgBouncer expanded ~ to a home directory"
    ));

    let (_, c) = convert("[pgbouncer]\nserver_tls_sslmode = allow\n");
    assert_eq!(c.pool.server_tls, ServerTls::Prefer);
    let (_, c) = convert("[pgbouncer]\nserver_tls_sslmode = disable\n");
    assert_eq!(c.pool.server_tls, ServerTls::Disable);

    // TLS without a certificate cannot be carried over; it stays off, with a comment.
    let (done, c) = convert("[pgbouncer]\nclient_tls_sslmode = require\n");
    assert_eq!(c.listen.client_tls, ClientTls::Disable);
    assert!(has_comment(
        &done.toml,
        "not carried over: client_tls_sslmode = require — "
    ));
}

#[test]
fn durations_with_fractions_units_and_minimums() {
    let (done, c) = convert(
        "[pgbouncer]\nreserve_pool_size = 5\nreserve_pool_timeout = 2.5\nquery_wait_timeout = 0.4\n\
         server_check_delay = 10.6\nclient_idle_timeout = 5min\nserver_lifetime = 0\n\
         server_connect_timeout = 0\nserver_reset_query_always = 1\n",
    );
    assert_eq!(c.pool.reserve_pool_size, 5);
    assert_eq!(c.pool.reserve_pool_timeout, Duration::from_millis(2500));
    assert_eq!(c.pool.query_wait_timeout, Duration::from_secs(1));
    assert_eq!(c.pool.server_check_delay, Duration::from_secs(11));
    assert_eq!(c.pool.client_idle_timeout, Duration::from_secs(300));
    assert_eq!(c.pool.server_lifetime, Duration::from_secs(1));
    assert_eq!(c.pool.server_connect_timeout, Duration::from_secs(5));
    assert!(c.pool.server_reset_query_always);
    assert!(has_comment(&done.toml, "note: \"0.4\" rounded to 1 s"));
    assert!(has_comment(&done.toml, "note: \"10.6\" rounded to 11 s"));
    assert!(has_comment(
        &done.toml,
        "note: PgBouncer's 0 (use each server connection once)"
    ));
    assert!(has_comment(
        &done.toml,
        "not carried over: server_connect_timeout = 0 — "
    ));

    // reserve_pool_timeout = 0 disables PgBouncer's reserve pool.
    let (done, c) = convert("[pgbouncer]\nreserve_pool_size = 5\nreserve_pool_timeout = 0\n");
    assert_eq!(c.pool.reserve_pool_size, 0);
    assert!(has_comment(
        &done.toml,
        "note: was 5, but PgBouncer's reserve_pool_timeout = 0"
    ));

    let err = error_of("[pgbouncer]\n\nserver_idle_timeout = soon\n");
    assert!(
        err.contains("pgbouncer.ini:3: server_idle_timeout: "),
        "{err}"
    );
}

#[test]
fn min_pool_size_is_capped_like_pgbouncer_does() {
    let (done, c) = convert(
        "[pgbouncer]\ndefault_pool_size = 10\nmin_pool_size = 50\n\
         [databases]\nsmall = host=h pool_size=3\nbig = host=h pool_size=40 min_pool_size=60 max_db_connections=30\n",
    );
    assert_eq!(c.pool.min_pool_size, 10);
    assert_eq!(c.databases["small"].min_pool_size, Some(3));
    assert_eq!(c.databases["big"].min_pool_size, Some(30));
    assert!(has_comment(
        &done.toml,
        "note: 50 is more than the pool may hold"
    ));
}

#[test]
fn database_entries_carry_hosts_users_passwords_and_roles() {
    let (done, c) = convert(
        "[databases]\n\
         multi = host=10.0.0.1,10.0.0.2 port=5433 dbname=real pool_size=7 max_db_connections=9 pool_mode=session\n\
         v6 = host=2001:db8::1,10.0.0.3\n\
         forced = host=h user=svc password='it''s a \"pass\" \\ ü' min_pool_size=1\n\
         nouser = host=h password=secret42\n\
         ro = host=db.example.com target_session_attrs=read-only\n\
         custom = host=a.cluster-custom-xyz.eu-west-1.rds.amazonaws.com\n\
         reader = host=a.cluster-ro-xyz.eu-west-1.rds.amazonaws.com\n\
         \"my.db\" = host=h client_encoding=UTF8 connect_query='SELECT 1'\n",
    );
    let multi = &c.databases["multi"];
    assert_eq!(
        multi.hosts,
        vec![
            HostPort {
                host: "10.0.0.1".into(),
                port: 5433
            },
            HostPort {
                host: "10.0.0.2".into(),
                port: 5433
            }
        ]
    );
    assert_eq!(multi.dbname, "real");
    assert_eq!(multi.pool_size, Some(7));
    assert_eq!(multi.max_db_connections, Some(9));
    assert_eq!(multi.pool_mode, Some(PoolMode::Session));
    assert_eq!(c.databases["v6"].hosts[0].host, "2001:db8::1");
    let forced = &c.databases["forced"];
    assert_eq!(forced.user.as_deref(), Some("svc"));
    assert_eq!(forced.password.as_deref(), Some("it's a \"pass\" \\ ü"));
    assert_eq!(forced.min_pool_size, Some(1));
    assert_eq!(c.databases["nouser"].password, None);
    assert!(has_comment(
        &done.toml,
        "not carried over: [databases] nouser: password = <redacted> — "
    ));
    assert!(!done.toml.contains("secret42"));
    assert_eq!(c.databases["ro"].role, Role::Reader);
    assert!(has_comment(
        &done.toml,
        "note: role from target_session_attrs = read-only"
    ));
    assert_eq!(c.databases["custom"].role, Role::Any);
    assert_eq!(c.databases["reader"].role, Role::Reader);
    assert!(c.databases.contains_key("my.db"));
    assert!(has_comment(
        &done.toml,
        "not carried over: [databases] my.db: client_encoding = UTF8 — "
    ));
    assert!(has_comment(
        &done.toml,
        "not carried over: [databases] my.db: connect_query = 'SELECT 1' — "
    ));
}

#[test]
fn entries_pool_toml_cannot_hold_are_written_commented_out() {
    let long = "x".repeat(70);
    let (done, c) = convert(&format!(
        "[databases]\nsock = host=/var/run/postgresql\nnohost = dbname=x\npgpool = host=h\n\
         {long} = host=h\nbadhost = host='a b'\nok = host=h\n"
    ));
    assert_eq!(c.databases.keys().collect::<Vec<_>>(), vec!["ok"]);
    assert_eq!(done.disabled_databases, 5);
    assert!(has_comment(&done.toml, "not carried over as is: [databases.sock] from pgbouncer.ini:2 — host /var/run/postgresql is a Unix socket"));
    assert!(has_comment(
        &done.toml,
        "not carried over as is: [databases.nohost]"
    ));
    assert!(has_comment(
        &done.toml,
        "not carried over as is: [databases.pgpool]"
    ));
    assert!(has_comment(&done.toml, &format!("not carried over as is: [databases.{long}] from pgbouncer.ini:5 — pool.toml rejects it")));
    assert!(has_comment(
        &done.toml,
        "not carried over as is: [databases.badhost]"
    ));
    assert!(done
        .toml
        .contains("# [databases.sock]\n# host = \"/var/run/postgresql\"\n"));
}

#[test]
fn strings_round_trip_exactly() {
    let query = r#"SELECT 'a\b "c"' -- ü	tab"#;
    let (_, c) = convert(&format!(
        "[pgbouncer]\nserver_reset_query = {query}\nserver_check_query = <empty>\n\
         admin_users = adm\"in, o'ps\n"
    ));
    assert_eq!(c.pool.server_reset_query, query);
    assert_eq!(c.pool.server_check_query, "SELECT 1");
    assert_eq!(c.auth.admin_users, vec!["adm\"in", "o'ps"]);
    let (_, c) = convert("[pgbouncer]\nserver_reset_query =\n");
    assert_eq!(c.pool.server_reset_query, "");
}

#[test]
fn later_settings_win_and_bad_values_are_errors() {
    let (_, c) = convert(
        "[pgbouncer]\ndefault_pool_size = 5\ndefault_pool_size = 0x20\n\
         [databases]\napp = host=a\napp = host=b\n",
    );
    assert_eq!(c.pool.default_pool_size, 32);
    assert_eq!(c.databases["app"].hosts[0].host, "b");
    let err = error_of("[pgbouncer]\nmax_client_conn = lots\n");
    assert!(
        err.contains("pgbouncer.ini:2: max_client_conn: expected an integer"),
        "{err}"
    );
    let err = error_of("[databases]\napp = host=h port\n");
    assert!(err.contains("pgbouncer.ini:2: app: "), "{err}");
    let err = error_of("[pgbouncer]\nserver_reset_query_always = perhaps\n");
    assert!(
        err.contains("pgbouncer.ini:2: server_reset_query_always: "),
        "{err}"
    );
    // Out of pool.toml's range: not carried over rather than an error.
    let (done, c) = convert("[pgbouncer]\ndefault_pool_size = 0\n");
    assert_eq!(c.pool.default_pool_size, 20);
    assert!(has_comment(
        &done.toml,
        "not carried over: default_pool_size = 0 — out of range"
    ));
}
