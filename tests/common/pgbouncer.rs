//! `PGPOOL_TEST_POOLER=pgbouncer`: translates a test's pool.toml into a pgbouncer.ini so
//! the same tests can be pointed at PgBouncer, to check the tests themselves. Local use
//! only; keys PgBouncer lacks are dropped.

use std::fmt::Write as _;
use std::path::Path;

/// The pgbouncer.ini equivalent of a pool.toml (the userlist file is shared as is).
pub fn ini_from_pool_toml(config: &toml::Table, dir: &Path) -> String {
    let mut out = String::from("[pgbouncer]\n");
    let _ = writeln!(out, "unix_socket_dir = {}", dir.display());
    out.push_str("ignore_startup_parameters = extra_float_digits,options\n");
    for (section, table) in config {
        let Some(table) = table.as_table() else {
            continue;
        };
        if section == "databases" {
            continue;
        }
        for (key, value) in table {
            if let Some(line) = setting(section, key, value) {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out.push_str("\n[databases]\n");
    if let Some(dbs) = config.get("databases").and_then(|d| d.as_table()) {
        for (name, entry) in dbs {
            let Some(entry) = entry.as_table() else {
                continue;
            };
            let mut line = format!("{name} =");
            for (key, value) in entry {
                let key = match key.as_str() {
                    "host" | "port" | "dbname" | "user" | "password" | "pool_size"
                    | "max_db_connections" | "pool_mode" | "min_pool_size" => key.as_str(),
                    "mode" => "pool_mode",
                    _ => continue,
                };
                let _ = write!(line, " {key}={}", plain(value));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// One `[pgbouncer]` line for a pool.toml key, or `None` when PgBouncer has no equivalent.
fn setting(section: &str, key: &str, value: &toml::Value) -> Option<String> {
    let v = plain(value);
    let line = match (section, key) {
        ("listen", "addr") => {
            let (host, port) = v.rsplit_once(':')?;
            format!("listen_addr = {host}\nlisten_port = {port}")
        }
        ("listen", "max_client_conn") => format!("max_client_conn = {v}"),
        ("listen", "client_tls") => format!("client_tls_sslmode = {v}"),
        ("listen", "tls_cert") => format!("client_tls_cert_file = {v}"),
        ("listen", "tls_key") => format!("client_tls_key_file = {v}"),
        ("auth", "type") => format!("auth_type = {v}"),
        ("auth", "file") => format!("auth_file = {v}"),
        ("auth", "admin_users") | ("auth", "stats_users") => format!("{key} = {v}"),
        ("pool", "mode") => format!("pool_mode = {v}"),
        ("pool", "server_tls") => format!("server_tls_sslmode = {v}"),
        ("pool", "reserve_pool_timeout_ms") => {
            let ms = value.as_integer()?;
            format!("reserve_pool_timeout = {}", ms as f64 / 1000.0)
        }
        ("pool", "shutdown_timeout") | ("pool", "max_prepared_statements") => return None,
        ("pool", _) => format!("{key} = {v}"),
        _ => return None,
    };
    Some(line)
}

/// A TOML value as PgBouncer writes it: strings bare, booleans 0/1, arrays comma-joined.
fn plain(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
        toml::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}
