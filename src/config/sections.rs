//! The `pool.toml` schema: which keys each section has, their types, ranges and defaults.
//!
//! Each `read_*` function turns one TOML table into its typed section, recording every
//! unknown key, wrong type and out-of-range value and using the default in its place.
//! Checks that relate several keys are in `validate.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::hosts::{host_only, split_host_port};
use super::read::{Reader, Section};
use super::types::{
    Auth, AuthType, ClientTls, Database, HostPort, Listen, PoolMode, PoolSettings, Role, ServerTls,
};

/// Top-level sections.
pub(super) const TOP_KEYS: &[&str] = &["listen", "auth", "pool", "databases"];

/// The keys this section accepts, in the order `config/pool.toml` lists them.
pub const LISTEN_KEYS: &[&str] = &[
    "addr",
    "max_client_conn",
    "client_tls",
    "tls_cert",
    "tls_key",
    "http_addr",
];

/// The keys this section accepts, in the order `config/pool.toml` lists them.
pub const AUTH_KEYS: &[&str] = &[
    "type",
    "file",
    "admin_users",
    "stats_users",
    "trust_remote",
    "login_failure_limit",
    "login_failure_window",
    "login_failure_block",
];

/// The keys this section accepts, in the order `config/pool.toml` lists them.
pub const POOL_KEYS: &[&str] = &[
    "mode",
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "reserve_pool_timeout_ms",
    "max_db_connections",
    "server_reset_query",
    "server_reset_query_always",
    "server_check_query",
    "server_check_delay",
    "server_idle_timeout",
    "server_lifetime",
    "server_connect_timeout",
    "dns_max_ttl",
    "server_tls",
    "server_tls_ca_file",
    "query_wait_timeout",
    "query_timeout",
    "idle_transaction_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "shutdown_timeout",
    "max_prepared_statements",
];

/// The keys this section accepts, in the order `config/pool.toml` lists them.
pub const DATABASE_KEYS: &[&str] = &[
    "host",
    "hosts",
    "port",
    "dbname",
    "role",
    "fallback_to_writer",
    "pool_size",
    "min_pool_size",
    "max_db_connections",
    "pool_mode",
    "user",
    "password",
];

/// Default server port of a database entry.
const DEFAULT_PORT: u16 = 5432;

/// PostgreSQL truncates identifiers (database and user names) to this many bytes.
pub(super) const MAX_IDENTIFIER: usize = 63;

/// A socket address such as `0.0.0.0:6432` or `[::]:6432`.
fn socket_addr(rd: &mut Reader<'_>, sec: &Section<'_>, key: &str) -> Option<SocketAddr> {
    let text = sec.string(rd, key)?;
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let message = format!(
                "expected an IP address and port such as \"0.0.0.0:6432\" or \"[::]:6432\", got \"{text}\""
            );
            sec.report(rd, key, message);
            None
        }
    }
}

/// A file path; `""` means "not set". Relative paths are resolved later, in `mod.rs`.
fn path(rd: &mut Reader<'_>, sec: &Section<'_>, key: &str) -> Option<Option<PathBuf>> {
    let text = sec.string(rd, key)?;
    Some((!text.is_empty()).then(|| PathBuf::from(text)))
}

/// A list of user names, none empty.
fn user_names(rd: &mut Reader<'_>, sec: &Section<'_>, key: &str) -> Option<Vec<String>> {
    let names = sec.strings(rd, key)?;
    if names.iter().any(String::is_empty) {
        sec.report(rd, key, "user names must not be empty");
        return None;
    }
    Some(names)
}

/// A non-empty PostgreSQL identifier (user or database name).
fn identifier(rd: &mut Reader<'_>, sec: &Section<'_>, key: &str) -> Option<String> {
    let text = sec.string(rd, key)?;
    if text.is_empty() {
        sec.report(rd, key, "must not be empty");
        None
    } else if text.len() > MAX_IDENTIFIER {
        let message = format!("must be at most {MAX_IDENTIFIER} bytes long");
        sec.report(rd, key, message);
        None
    } else {
        Some(text)
    }
}

/// `[listen]`.
pub(super) fn read_listen(rd: &mut Reader<'_>, sec: &Section<'_>) -> Listen {
    sec.check_known(rd, LISTEN_KEYS);
    let d = Listen::default();
    let http_addr = match sec.string(rd, "http_addr") {
        Some(text) if text.is_empty() => None,
        Some(_) => socket_addr(rd, sec, "http_addr").or(d.http_addr),
        None => d.http_addr,
    };
    Listen {
        addr: socket_addr(rd, sec, "addr").unwrap_or(d.addr),
        max_client_conn: sec
            .count(rd, "max_client_conn", 1)
            .unwrap_or(d.max_client_conn),
        client_tls: sec
            .choice(rd, "client_tls", ClientTls::ALL)
            .unwrap_or(d.client_tls),
        tls_cert: path(rd, sec, "tls_cert").unwrap_or(d.tls_cert),
        tls_key: path(rd, sec, "tls_key").unwrap_or(d.tls_key),
        http_addr,
    }
}

/// `[auth]`.
pub(super) fn read_auth(rd: &mut Reader<'_>, sec: &Section<'_>) -> Auth {
    sec.check_known(rd, AUTH_KEYS);
    let d = Auth::default();
    Auth {
        auth_type: sec.choice(rd, "type", AuthType::ALL).unwrap_or(d.auth_type),
        file: path(rd, sec, "file").unwrap_or(d.file),
        admin_users: user_names(rd, sec, "admin_users").unwrap_or(d.admin_users),
        stats_users: user_names(rd, sec, "stats_users").unwrap_or(d.stats_users),
        trust_remote: sec.boolean(rd, "trust_remote").unwrap_or(d.trust_remote),
        login_failure_limit: sec
            .count(rd, "login_failure_limit", 0)
            .unwrap_or(d.login_failure_limit),
        login_failure_window: sec
            .duration(rd, "login_failure_window", 1)
            .unwrap_or(d.login_failure_window),
        login_failure_block: sec
            .count(rd, "login_failure_block", 0)
            .unwrap_or(d.login_failure_block),
    }
}

/// `[pool]`.
pub(super) fn read_pool(rd: &mut Reader<'_>, sec: &Section<'_>) -> PoolSettings {
    sec.check_known(rd, POOL_KEYS);
    let d = PoolSettings::default();
    PoolSettings {
        mode: sec.choice(rd, "mode", PoolMode::ALL).unwrap_or(d.mode),
        default_pool_size: sec
            .count(rd, "default_pool_size", 1)
            .unwrap_or(d.default_pool_size),
        min_pool_size: sec.count(rd, "min_pool_size", 0).unwrap_or(d.min_pool_size),
        reserve_pool_size: sec
            .count(rd, "reserve_pool_size", 0)
            .unwrap_or(d.reserve_pool_size),
        reserve_pool_timeout: sec
            .duration(rd, "reserve_pool_timeout_ms", 0)
            .unwrap_or(d.reserve_pool_timeout),
        max_db_connections: sec
            .count(rd, "max_db_connections", 0)
            .unwrap_or(d.max_db_connections),
        server_reset_query: sec
            .string(rd, "server_reset_query")
            .unwrap_or(d.server_reset_query),
        server_reset_query_always: sec
            .boolean(rd, "server_reset_query_always")
            .unwrap_or(d.server_reset_query_always),
        server_check_query: sec
            .string(rd, "server_check_query")
            .unwrap_or(d.server_check_query),
        server_check_delay: sec
            .duration(rd, "server_check_delay", 0)
            .unwrap_or(d.server_check_delay),
        server_idle_timeout: sec
            .duration(rd, "server_idle_timeout", 0)
            .unwrap_or(d.server_idle_timeout),
        server_lifetime: sec
            .duration(rd, "server_lifetime", 1)
            .unwrap_or(d.server_lifetime),
        server_connect_timeout: sec
            .duration(rd, "server_connect_timeout", 1)
            .unwrap_or(d.server_connect_timeout),
        dns_max_ttl: sec.duration(rd, "dns_max_ttl", 0).unwrap_or(d.dns_max_ttl),
        server_tls: sec
            .choice(rd, "server_tls", ServerTls::ALL)
            .unwrap_or(d.server_tls),
        server_tls_ca_file: path(rd, sec, "server_tls_ca_file").unwrap_or(d.server_tls_ca_file),
        query_wait_timeout: sec
            .duration(rd, "query_wait_timeout", 0)
            .unwrap_or(d.query_wait_timeout),
        query_timeout: sec
            .duration(rd, "query_timeout", 0)
            .unwrap_or(d.query_timeout),
        idle_transaction_timeout: sec
            .duration(rd, "idle_transaction_timeout", 0)
            .unwrap_or(d.idle_transaction_timeout),
        client_idle_timeout: sec
            .duration(rd, "client_idle_timeout", 0)
            .unwrap_or(d.client_idle_timeout),
        client_login_timeout: sec
            .duration(rd, "client_login_timeout", 0)
            .unwrap_or(d.client_login_timeout),
        shutdown_timeout: sec
            .duration(rd, "shutdown_timeout", 0)
            .unwrap_or(d.shutdown_timeout),
        max_prepared_statements: sec
            .count(rd, "max_prepared_statements", 0)
            .unwrap_or(d.max_prepared_statements),
    }
}

/// `[databases]`: every entry, keyed by the name clients connect to.
pub(super) fn read_databases(rd: &mut Reader<'_>, sec: &Section<'_>) -> BTreeMap<String, Database> {
    sec.sections(rd)
        .into_iter()
        .map(|(name, entry)| {
            let db = read_database(rd, &entry, &name);
            (name, db)
        })
        .collect()
}

/// `[databases.<name>]`.
fn read_database(rd: &mut Reader<'_>, sec: &Section<'_>, name: &str) -> Database {
    sec.check_known(rd, DATABASE_KEYS);
    let port = sec.port(rd, "port").unwrap_or(DEFAULT_PORT);
    let hosts = match (sec.has("host"), sec.has("hosts")) {
        (true, true) => {
            sec.report(rd, "hosts", "set either host or hosts, not both");
            Vec::new()
        }
        (false, false) => {
            let message = "missing host (set host = \"...\" or hosts = [\"h1:5432\", ...])";
            rd.report(sec.line(), sec.path(), message);
            Vec::new()
        }
        (true, false) => read_host(rd, sec, port),
        (false, true) => read_hosts(rd, sec, port),
    };
    Database {
        name: name.to_owned(),
        hosts,
        dbname: identifier(rd, sec, "dbname").unwrap_or_else(|| name.to_owned()),
        role: sec.choice(rd, "role", Role::ALL).unwrap_or_default(),
        fallback_to_writer: sec.boolean(rd, "fallback_to_writer").unwrap_or(true),
        pool_size: sec.count(rd, "pool_size", 1),
        min_pool_size: sec.count(rd, "min_pool_size", 0),
        max_db_connections: sec.count(rd, "max_db_connections", 0),
        pool_mode: sec.choice(rd, "pool_mode", PoolMode::ALL),
        user: identifier(rd, sec, "user"),
        password: sec.string(rd, "password"),
    }
}

/// `host = "h"`: one server, on the entry's `port`.
fn read_host(rd: &mut Reader<'_>, sec: &Section<'_>, port: u16) -> Vec<HostPort> {
    let Some(text) = sec.string(rd, "host") else {
        return Vec::new();
    };
    match host_only(&text) {
        Ok(host) => vec![HostPort { host, port }],
        Err(message) => {
            sec.report(rd, "host", message);
            Vec::new()
        }
    }
}

/// `hosts = ["h1", "h2:5433", "[::1]:5432"]`: entries without a port use the entry's `port`.
fn read_hosts(rd: &mut Reader<'_>, sec: &Section<'_>, port: u16) -> Vec<HostPort> {
    let Some(list) = sec.strings(rd, "hosts") else {
        return Vec::new();
    };
    if list.is_empty() {
        sec.report(rd, "hosts", "must list at least one host");
        return Vec::new();
    }
    let mut hosts: Vec<HostPort> = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        match split_host_port(text) {
            Ok((host, host_port)) => {
                let entry = HostPort {
                    host,
                    port: host_port.unwrap_or(port),
                };
                if hosts.contains(&entry) {
                    let message = format!("entry {}: {entry} is listed twice", i + 1);
                    sec.report(rd, "hosts", message);
                } else {
                    hosts.push(entry);
                }
            }
            Err(message) => sec.report(rd, "hosts", format!("entry {}: {message}", i + 1)),
        }
    }
    hosts
}
