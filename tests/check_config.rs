//! `pgpool-rs --config x --check`: exit 0 on a good config; exit 1 on a bad one, naming
//! the file, the line and the key.

mod common;

use common::Pooler;

/// Every key of SPEC.md's pool.toml (TLS off, so no certificate files are needed).
const GOOD: &str = r#"
[listen]
addr = "127.0.0.1:6432"
max_client_conn = 1000
client_tls = "disable"
http_addr = "127.0.0.1:9930"

[auth]
type = "scram-sha-256"
file = "{dir}/userlist.txt"
admin_users = ["admin"]
stats_users = ["monitor"]

[pool]
mode = "transaction"
default_pool_size = 20
min_pool_size = 0
reserve_pool_size = 0
reserve_pool_timeout_ms = 5000
max_db_connections = 100
server_reset_query = "DISCARD ALL"
server_reset_query_always = false
server_check_query = "SELECT 1"
server_check_delay = 30
server_idle_timeout = 600
server_lifetime = 3600
server_connect_timeout = 5
server_tls = "disable"
query_wait_timeout = 120
query_timeout = 0
idle_transaction_timeout = 0
client_idle_timeout = 0
client_login_timeout = 60
shutdown_timeout = 30
max_prepared_statements = 200

[databases.app]
host = "127.0.0.1"
port = 5432
dbname = "app"
role = "writer"
pool_size = 100

[databases.app_ro]
hosts = ["127.0.0.1:5433", "127.0.0.1:5434"]
dbname = "app"
role = "reader"
user = "app"
password = "secret"
"#;

/// `GOOD` with the first line containing `find` replaced by `replace`; also returns
/// that line's 1-based number.
fn with_line(find: &str, replace: &str) -> (String, usize) {
    let lines: Vec<&str> = GOOD.lines().collect();
    let index = lines
        .iter()
        .position(|l| l.starts_with(find))
        .unwrap_or_else(|| panic!("{find} not in the good config"));
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[index] = replace.to_string();
    (out.join("\n"), index + 1)
}

/// Checks a bad config: exit 1, and the output names `pool.toml:<line>` and `key`.
fn assert_rejected(text: &str, line: usize, key: &str) {
    let (code, output) = Pooler::check(text);
    assert_eq!(code, 1, "exit code; output:\n{output}");
    assert!(
        output.contains(&format!("pool.toml:{line}")),
        "no pool.toml:{line} in:\n{output}"
    );
    assert!(output.contains(key), "no `{key}` in:\n{output}");
}

#[test]
fn good_config_passes() {
    let (code, output) = Pooler::check(GOOD);
    assert_eq!(code, 0, "output:\n{output}");
}

#[test]
fn unknown_key_is_an_error_with_file_line_and_key() {
    let (text, line) = with_line("default_pool_size", "default_pool_sise = 20");
    assert_rejected(&text, line, "default_pool_sise");
}

#[test]
fn unknown_key_in_a_database_entry() {
    let (text, line) = with_line("pool_size = 100", "pool_sizes = 100");
    assert_rejected(&text, line, "pool_sizes");
}

#[test]
fn unknown_section() {
    let (text, line) = with_line("[listen]", "[listener]");
    assert_rejected(&text, line, "listener");
}

#[test]
fn wrong_type_is_an_error_with_file_line_and_key() {
    let (text, line) = with_line("max_client_conn", "max_client_conn = \"many\"");
    assert_rejected(&text, line, "max_client_conn");
}

#[test]
fn bad_enum_value() {
    let (text, line) = with_line("mode = ", "mode = \"statement\"");
    assert_rejected(&text, line, "mode");
}

#[test]
fn toml_syntax_error() {
    let (text, line) = with_line("server_lifetime", "server_lifetime = = 3");
    let (code, output) = Pooler::check(&text);
    assert_eq!(code, 1, "output:\n{output}");
    assert!(
        output.contains(&format!("pool.toml:{line}")),
        "no pool.toml:{line} in:\n{output}"
    );
}
