//! `[databases]` entries → `[databases.<name>]` tables; `[users]`, `[peers]` and unknown
//! sections → "not carried over" lines.
//!
//! The role of an entry comes from `target_session_attrs` when set, else it is inferred
//! from Aurora endpoint names (`.cluster-ro-` = reader endpoint, `.cluster-` = writer
//! endpoint, `.cluster-custom-` = could be either), with a note saying so.

use toml_edit::Array;

use super::connstr;
use super::ini::Entry;
use super::pgbouncer::{count_of, invalid, latest, Globals};
use super::plan::{Database, Plan, Section};
use super::values;

/// Name of PgBouncer's `*` fallback entry.
const FALLBACK: &str = "*";
/// Database names pgpool-rs reserves for its admin console.
const RESERVED: &[&str] = &["pgbouncer", "pgpool"];

/// Maps `[databases]` (entries in file order; a later one of the same name wins).
pub(super) fn map(
    entries: &[&Entry],
    globals: Globals,
    plan: &mut Plan,
) -> Result<(), super::ConvertError> {
    for entry in latest(entries) {
        let pairs = connstr::parse(&entry.value).map_err(|m| invalid(entry, m))?;
        if entry.key == FALLBACK {
            let why = "pgpool-rs has no \"*\" fallback database: add a [databases.<name>] \
                       entry for each database clients connect to";
            let value = connstr::redacted(&entry.value);
            plan.drop_setting("[databases] *", value, why, &entry.origin);
            continue;
        }
        let db = database(entry, &pairs, globals, plan);
        plan.databases.push(db);
    }
    Ok(())
}

/// Maps one entry; parameters without an equivalent go to `plan.dropped`.
fn database(entry: &Entry, pairs: &[(String, String)], g: Globals, plan: &mut Plan) -> Database {
    let name = entry.key.clone();
    let mut db = Database {
        name: name.clone(),
        origin: entry.origin.clone(),
        section: Section::default(),
        notes: Vec::new(),
        disabled: None,
    };
    let mut hosts: Vec<String> = Vec::new();
    let mut role_attr: Option<&str> = None;
    let mut password: Option<&str> = None;
    for (key, value) in pairs {
        let mut drop = |why: &str| {
            let what = format!("[databases] {name}: {key}");
            plan.drop_setting(what, connstr::quote(value), why, &entry.origin);
        };
        match key.as_str() {
            "host" => hosts = value.split(',').map(|h| h.trim().to_owned()).collect(),
            "port" => match values::integer(value) {
                Ok(p) if (1..=65535).contains(&p) => db.section.set("port", p),
                _ => drop("not a port number from 1 to 65535; the default 5432 applies"),
            },
            "dbname" => db.section.set("dbname", value.as_str()),
            "user" => db.section.set("user", value.as_str()),
            "password" => password = Some(value),
            "pool_size" | "min_pool_size" | "max_db_connections" => {
                let min = if key == "pool_size" { 1 } else { 0 };
                match values::integer(value) {
                    Ok(n) if n >= min && n <= i64::from(u32::MAX) => {
                        let name = match key.as_str() {
                            "pool_size" => "pool_size",
                            "min_pool_size" => "min_pool_size",
                            _ => "max_db_connections",
                        };
                        db.section.set(name, n);
                    }
                    _ => drop(&format!("expected an integer of at least {min}")),
                }
            }
            "pool_mode" => match value.to_ascii_lowercase().as_str() {
                "session" => db.section.set("pool_mode", "session"),
                "transaction" => db.section.set("pool_mode", "transaction"),
                "statement" => db.section.set_noted(
                    "pool_mode",
                    "transaction",
                    Some("statement mode is not supported; transaction is the closest".to_owned()),
                ),
                _ => drop("not a pool mode (session, transaction or statement)"),
            },
            "target_session_attrs" => role_attr = Some(value),
            _ => drop(why_not(key)),
        }
    }
    password_and_user(&mut db, password, entry, plan);
    set_hosts(&mut db, &hosts);
    set_role(&mut db, role_attr, &hosts, entry, plan);
    cap_min_pool_size(&mut db, g);
    if RESERVED.contains(&name.as_str()) {
        db.disabled = Some(format!(
            "the name \"{name}\" is reserved for pgpool-rs's admin console: rename the entry"
        ));
    }
    db
}

/// Why a connect-string parameter is not carried over.
fn why_not(key: &str) -> &'static str {
    match key {
        "reserve_pool" | "reserve_pool_size" => {
            "no per-database reserve pool; [pool] reserve_pool_size applies"
        }
        "server_lifetime" => "no per-database server_lifetime; [pool] server_lifetime applies",
        "query_wait_timeout" => {
            "no per-database query_wait_timeout; [pool] query_wait_timeout applies"
        }
        "auth_user" | "auth_query" | "auth_dbname" => {
            "pgpool-rs has no auth_query: list every user in auth.file"
        }
        "client_encoding" | "datestyle" | "timezone" | "application_name" => {
            "pgpool-rs sets no server parameters per database; clients' own startup \
             parameters apply (or use ALTER DATABASE ... SET on the server)"
        }
        "connect_query" => {
            "no connect_query in pgpool-rs; for settings use ALTER ROLE/DATABASE ... SET"
        }
        "load_balance_hosts" => "several hosts are always balanced by least connections",
        "max_db_client_connections" => {
            "no per-database client limit; listen.max_client_conn caps all clients"
        }
        _ => "not a connect-string parameter pgpool-rs knows",
    }
}

/// `user`/`password`: PgBouncer uses a connect-string password only with `user=`.
fn password_and_user(db: &mut Database, password: Option<&str>, entry: &Entry, plan: &mut Plan) {
    let Some(password) = password else { return };
    if db.section.get("user").is_some() {
        db.section.set("password", password);
    } else {
        let what = format!("[databases] {}: password", db.name);
        let why = "a connect-string password only applies together with user=";
        plan.drop_setting(what, "<redacted>", why, &entry.origin);
    }
}

/// `host = "h"` for one server, `hosts = [...]` for a list; no host or a Unix socket
/// path disables the entry (pgpool-rs connects over TCP only).
fn set_hosts(db: &mut Database, hosts: &[String]) {
    if hosts.is_empty() {
        db.disabled = Some(
            "no host: PgBouncer connected over its Unix socket; pgpool-rs needs a TCP host \
             (e.g. host = \"127.0.0.1\")"
                .to_owned(),
        );
        return;
    }
    if let Some(socket) = hosts
        .iter()
        .find(|h| h.starts_with('/') || h.starts_with('@'))
    {
        db.disabled = Some(format!(
            "host {socket} is a Unix socket; pgpool-rs connects over TCP only: set the \
             server's TCP address"
        ));
    }
    match hosts {
        [one] => db.section.set("host", one.as_str()),
        many => {
            let list = many.iter().map(|h| {
                if h.contains(':') && !h.starts_with('[') {
                    format!("[{h}]")
                } else {
                    h.clone()
                }
            });
            db.section.set("hosts", Array::from_iter(list));
        }
    }
}

/// What kind of server an Aurora endpoint name points at.
fn aurora_role(host: &str) -> Option<&'static str> {
    let host = host.to_ascii_lowercase();
    if host.contains(".cluster-ro-") {
        Some("reader")
    } else if host.contains(".cluster-custom-") {
        None
    } else if host.contains(".cluster-") {
        Some("writer")
    } else {
        None
    }
}

fn set_role(
    db: &mut Database,
    attr: Option<&str>,
    hosts: &[String],
    entry: &Entry,
    plan: &mut Plan,
) {
    if let Some(attr) = attr {
        let role = match attr.to_ascii_lowercase().as_str() {
            "read-write" | "primary" => "writer",
            "read-only" | "standby" => "reader",
            "any" => "any",
            _ => {
                let what = format!("[databases] {}: target_session_attrs", db.name);
                let why = "no role equivalent; role stays \"any\"";
                plan.drop_setting(what, attr, why, &entry.origin);
                return;
            }
        };
        let note = format!("role from target_session_attrs = {attr}");
        db.section.set_noted("role", role, Some(note));
        return;
    }
    let roles: Vec<Option<&str>> = hosts.iter().map(|h| aurora_role(h)).collect();
    let Some(Some(role)) = roles.first().copied() else {
        return;
    };
    if roles.iter().all(|r| *r == Some(role)) {
        let endpoint = if role == "writer" {
            "cluster (writer)"
        } else {
            "reader"
        };
        let note = format!(
            "role inferred: the host is an Aurora {endpoint} endpoint; pgpool-rs checks each \
             server connection is a {role} (after a failover it follows the new one)"
        );
        db.section.set_noted("role", role, Some(note));
    }
}

/// PgBouncer caps min_pool_size at the pool's limits; pool.toml rejects a larger one.
fn cap_min_pool_size(db: &mut Database, g: Globals) {
    let min = count_of(&db.section, "min_pool_size").unwrap_or(g.min_pool_size);
    let size = count_of(&db.section, "pool_size").unwrap_or(g.default_pool_size);
    let limit = match count_of(&db.section, "max_db_connections").unwrap_or(g.max_db_connections) {
        0 => size,
        max => size.min(max),
    };
    if min > limit {
        let note =
            format!("{min} is more than this entry's pool may hold; capped as PgBouncer does");
        db.section
            .set_noted("min_pool_size", i64::from(limit), Some(note));
    }
}

/// `[users]`, `[peers]` and unknown sections: nothing carries over.
pub(super) fn other_section(entry: &Entry, plan: &mut Plan) {
    let (what, why) = match entry.section.as_str() {
        "users" => (
            format!("[users] {}", entry.key),
            "pgpool-rs has no per-user settings; give this user's workload its own \
             [databases] entry (with user, pool_mode, pool_size) if it needs different ones",
        ),
        "peers" => (
            format!("[peers] {}", entry.key),
            "pgpool-rs has no peering; it is one process",
        ),
        section => {
            let what = format!("[{section}] {}", entry.key);
            let why = "not a PgBouncer section pgpool-rs knows";
            plan.drop_setting(what, &entry.value, why, &entry.origin);
            return;
        }
    };
    let value = connstr::redacted(&entry.value);
    plan.drop_setting(what, value, why, &entry.origin);
}
