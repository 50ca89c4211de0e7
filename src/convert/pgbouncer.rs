//! The `[pgbouncer]` section: each setting mapped to its pool.toml key, approximated with
//! a note, or recorded as not carried over with the reason.
//!
//! Where PgBouncer's default differs from pgpool-rs's (pool_mode, max_client_conn,
//! max_db_connections, server_connect_timeout, auth_type), an unset PgBouncer setting is
//! written out with PgBouncer's default, so the converted pooler behaves the same.

use toml_edit::{Array, Value};

use super::ini::Entry;
use super::plan::{Plan, Section};
use super::values::{self, Converted};
use super::{listen, reasons, ConvertError};

/// The `[pool]` settings the database entries depend on (for capping `min_pool_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Globals {
    /// `pool.default_pool_size` as converted.
    pub default_pool_size: u32,
    /// `pool.min_pool_size` as converted (already capped).
    pub min_pool_size: u32,
    /// `pool.max_db_connections` as converted (0 = unlimited).
    pub max_db_connections: u32,
}

/// Maps the `[pgbouncer]` settings (`entries`, in file order; a later one of the same key
/// wins) into `plan`.
pub(super) fn map(entries: &[&Entry], plan: &mut Plan) -> Result<Globals, ConvertError> {
    let settings = latest(entries);
    let get = |key: &str| settings.iter().copied().find(|e| e.key == key);
    for entry in &settings {
        map_one(entry, plan)?;
    }
    listen::map(&get, plan)?;
    pgbouncer_defaults(&get, plan);
    let globals = Globals {
        default_pool_size: count_of(&plan.pool, "default_pool_size").unwrap_or(20),
        min_pool_size: count_of(&plan.pool, "min_pool_size").unwrap_or(0),
        max_db_connections: count_of(&plan.pool, "max_db_connections").unwrap_or(100),
    };
    cap_min_pool_size(plan, globals);
    reserve_needs_timeout(plan);
    reset_query_note(plan);
    Ok(globals)
}

/// Explains that the reset query now also runs in transaction mode.
fn reset_query_note(plan: &mut Plan) {
    let pool = &plan.pool;
    let transaction = pool.get("mode").and_then(Value::as_str) == Some("transaction");
    let always = pool
        .get("server_reset_query_always")
        .and_then(Value::as_bool)
        == Some(true);
    if transaction && !always && plan.pool.get("server_reset_query").is_some() {
        plan.pool.note(
            "server_reset_query",
            "PgBouncer runs it in transaction mode only with server_reset_query_always = 1; \
             pgpool-rs runs it after any transaction that changed session state"
                .to_owned(),
        );
    }
}

/// One entry per key, the last occurrence winning, in order of first appearance.
pub(super) fn latest<'a>(entries: &[&'a Entry]) -> Vec<&'a Entry> {
    let mut out: Vec<&Entry> = Vec::new();
    for entry in entries {
        match out.iter_mut().find(|e| e.key == entry.key) {
            Some(slot) => *slot = entry,
            None => out.push(entry),
        }
    }
    out
}

/// `[pgbouncer]` counts that keep their name in `[pool]`, with pool.toml's minimum.
const POOL_COUNTS: &[(&str, i64)] = &[
    ("default_pool_size", 1),
    ("min_pool_size", 0),
    ("reserve_pool_size", 0),
    ("max_db_connections", 0),
    ("max_prepared_statements", 0),
];

/// `[pgbouncer]` durations (seconds) that keep their name in `[pool]`; 0 = off in both.
const POOL_SECONDS: &[&str] = &[
    "server_check_delay",
    "server_idle_timeout",
    "query_wait_timeout",
    "query_timeout",
    "idle_transaction_timeout",
    "client_idle_timeout",
    "client_login_timeout",
];

fn map_one(entry: &Entry, plan: &mut Plan) -> Result<(), ConvertError> {
    let key = entry.key.as_str();
    if let Some(&(name, min)) = POOL_COUNTS.iter().find(|(k, _)| *k == key) {
        let n = count(entry, plan, min)?;
        if let Some(n) = n {
            plan.pool.set(name, n);
        }
        return Ok(());
    }
    if let Some(&name) = POOL_SECONDS.iter().find(|k| **k == key) {
        return duration(entry, plan, name, false, 0);
    }
    match key {
        // Read together, in listen.rs.
        "listen_addr"
        | "listen_port"
        | "client_tls_sslmode"
        | "client_tls_cert_file"
        | "client_tls_key_file"
        | "server_tls_sslmode"
        | "server_tls_ca_file" => {}
        "max_client_conn" => {
            if let Some(n) = count(entry, plan, 1)? {
                plan.listen.set("max_client_conn", n);
            }
        }
        "pool_mode" => pool_mode(entry, plan)?,
        "auth_type" => auth_type(entry, plan)?,
        "auth_file" => {
            let note = values::path_note(&entry.value);
            plan.auth.set_noted("file", entry.value.as_str(), note);
        }
        "admin_users" => plan
            .auth
            .set("admin_users", Array::from_iter(values::list(&entry.value))),
        "stats_users" => plan
            .auth
            .set("stats_users", Array::from_iter(values::list(&entry.value))),
        "server_reset_query" => plan.pool.set("server_reset_query", entry.value.as_str()),
        "server_reset_query_always" => {
            let always = values::boolean(&entry.value).map_err(|m| invalid(entry, m))?;
            plan.pool.set("server_reset_query_always", always);
        }
        "server_check_query" => server_check_query(entry, plan),
        "reserve_pool_timeout" => duration(entry, plan, "reserve_pool_timeout_ms", true, 0)?,
        "server_lifetime" => server_lifetime(entry, plan)?,
        "server_connect_timeout" => server_connect_timeout(entry, plan)?,
        _ => plan.drop_setting(key, &entry.value, reasons::why_not(key), &entry.origin),
    }
    Ok(())
}

/// An integer setting of at least `min`; `None` (and a "not carried over" line) when
/// pool.toml cannot hold it.
fn count(entry: &Entry, plan: &mut Plan, min: i64) -> Result<Option<i64>, ConvertError> {
    let n = values::integer(&entry.value).map_err(|m| invalid(entry, m))?;
    if n < min || n > i64::from(u32::MAX) {
        let why = format!("out of range for pool.toml (at least {min})");
        plan.drop_setting(&entry.key, &entry.value, why, &entry.origin);
        return Ok(None);
    }
    Ok(Some(n))
}

fn duration(
    entry: &Entry,
    plan: &mut Plan,
    name: &'static str,
    millis: bool,
    min: u64,
) -> Result<(), ConvertError> {
    let secs = values::seconds(&entry.value).map_err(|m| invalid(entry, m))?;
    let Converted { value, note } = values::duration(secs, millis, min, &entry.value);
    plan.pool.set_noted(name, value, note);
    Ok(())
}

fn pool_mode(entry: &Entry, plan: &mut Plan) -> Result<(), ConvertError> {
    match entry.value.to_ascii_lowercase().as_str() {
        "session" => plan.pool.set("mode", "session"),
        "transaction" => plan.pool.set("mode", "transaction"),
        "statement" => {
            let note = "PgBouncer's statement mode is not supported; transaction mode is the \
                        closest (it also allows multi-statement transactions)";
            plan.pool
                .set_noted("mode", "transaction", Some(note.to_owned()));
        }
        _ => {
            return Err(invalid(
                entry,
                "expected session, transaction or statement".to_owned(),
            ))
        }
    }
    Ok(())
}

fn auth_type(entry: &Entry, plan: &mut Plan) -> Result<(), ConvertError> {
    let value = entry.value.to_ascii_lowercase();
    match value.as_str() {
        "scram-sha-256" | "md5" | "trust" => plan.auth.set("type", value.as_str()),
        "plain" | "any" | "hba" | "cert" | "pam" | "ldap" | "peer" | "crypt" => {
            let why = match value.as_str() {
                "plain" => {
                    "pgpool-rs does not take clear-text passwords over the wire; \
                            scram-sha-256 (the default) checks the same plaintext userlist"
                }
                "any" => {
                    "pgpool-rs always checks the user name; use trust (loopback only \
                          unless auth.trust_remote = true) or list the users in auth.file"
                }
                "hba" => {
                    "pgpool-rs has no HBA file; one auth.type applies to every client \
                          (default scram-sha-256)"
                }
                "cert" => {
                    "pgpool-rs does not authenticate by client certificate; the \
                           default scram-sha-256 applies"
                }
                _ => {
                    "pgpool-rs supports scram-sha-256, md5 and trust; the default \
                      scram-sha-256 applies"
                }
            };
            plan.drop_setting("auth_type", &entry.value, why, &entry.origin);
            // Not PgBouncer's md5 default either: keep pgpool-rs's own default.
            plan.auth.set("type", "scram-sha-256");
            plan.auth.note(
                "type",
                format!(
                    "PgBouncer's auth_type = {} is not supported (see the end of this file)",
                    entry.value
                ),
            );
        }
        _ => {
            return Err(invalid(
                entry,
                "expected one of md5, scram-sha-256, trust, plain, any, hba, cert, pam, ldap"
                    .to_owned(),
            ))
        }
    }
    Ok(())
}

fn server_check_query(entry: &Entry, plan: &mut Plan) {
    if entry.value == "<empty>" {
        let note =
            "PgBouncer's <empty> (an empty query) has no pool.toml form; SELECT 1 checks the same";
        plan.pool
            .set_noted("server_check_query", "SELECT 1", Some(note.to_owned()));
    } else {
        plan.pool.set("server_check_query", entry.value.as_str());
    }
}

fn server_lifetime(entry: &Entry, plan: &mut Plan) -> Result<(), ConvertError> {
    let secs = values::seconds(&entry.value).map_err(|m| invalid(entry, m))?;
    let Converted { value, mut note } = values::duration(secs, false, 1, &entry.value);
    if secs == 0.0 {
        note = Some(
            "PgBouncer's 0 (use each server connection once) has no pool.toml form; \
             1 s is the shortest lifetime"
                .to_owned(),
        );
    }
    plan.pool.set_noted("server_lifetime", value, note);
    Ok(())
}

fn server_connect_timeout(entry: &Entry, plan: &mut Plan) -> Result<(), ConvertError> {
    let secs = values::seconds(&entry.value).map_err(|m| invalid(entry, m))?;
    if secs == 0.0 {
        let why =
            "pool.toml needs a connect timeout of at least 1 s; pgpool-rs's default 5 s applies";
        plan.drop_setting(&entry.key, &entry.value, why, &entry.origin);
        return Ok(());
    }
    let Converted { value, note } = values::duration(secs, false, 1, &entry.value);
    plan.pool.set_noted("server_connect_timeout", value, note);
    Ok(())
}

/// Writes out PgBouncer's defaults where they differ from pgpool-rs's and the ini file
/// did not set the key.
fn pgbouncer_defaults<'a>(get: &dyn Fn(&str) -> Option<&'a Entry>, plan: &mut Plan) {
    let note = |pgbouncer: &str, ours: &str| {
        Some(format!(
            "not set in pgbouncer.ini: PgBouncer's default {pgbouncer} (pgpool-rs's own is {ours})"
        ))
    };
    if get("pool_mode").is_none() {
        plan.pool
            .set_noted("mode", "session", note("session", "transaction"));
    }
    if get("max_client_conn").is_none() {
        plan.listen
            .set_noted("max_client_conn", 100, note("100", "1000"));
    }
    if get("max_db_connections").is_none() {
        plan.pool
            .set_noted("max_db_connections", 0, note("0 (unlimited)", "100"));
    }
    if get("server_connect_timeout").is_none() {
        plan.pool
            .set_noted("server_connect_timeout", 15, note("15", "5"));
    }
    if get("auth_type").is_none() {
        plan.auth
            .set_noted("type", "md5", note("md5", "scram-sha-256"));
    }
    let trust = plan.auth.get("type").and_then(Value::as_str) == Some("trust");
    if get("auth_file").is_none() && !trust {
        plan.auth.notes.push(
            "pgbouncer.ini sets no auth_file; pgpool-rs reads userlist.txt next to this file"
                .to_owned(),
        );
    }
    if trust && !listen::is_loopback(plan) {
        plan.auth.set_noted(
            "trust_remote",
            true,
            Some(
                "PgBouncer's trust accepts clients from anywhere; pgpool-rs only with this key \
                 (remove it to allow loopback clients only)"
                    .to_owned(),
            ),
        );
    }
}

/// PgBouncer caps min_pool_size at the pool size; pool.toml rejects a larger one.
fn cap_min_pool_size(plan: &mut Plan, g: Globals) {
    let limit = match g.max_db_connections {
        0 => g.default_pool_size,
        max => g.default_pool_size.min(max),
    };
    if g.min_pool_size > limit {
        plan.pool.set_noted(
            "min_pool_size",
            i64::from(limit),
            Some(format!(
                "{} is more than the pool may hold; PgBouncer caps it, pool.toml needs it \
                 capped: {limit}",
                g.min_pool_size
            )),
        );
    }
}

/// PgBouncer's `reserve_pool_timeout = 0` disables the reserve pool.
fn reserve_needs_timeout(plan: &mut Plan) {
    let timeout = plan.pool.get("reserve_pool_timeout_ms");
    let timeout_zero = timeout.and_then(Value::as_integer) == Some(0);
    let size = count_of(&plan.pool, "reserve_pool_size").unwrap_or(0);
    if timeout_zero && size > 0 {
        plan.pool.set_noted(
            "reserve_pool_size",
            0,
            Some(format!(
                "was {size}, but PgBouncer's reserve_pool_timeout = 0 disables the reserve pool"
            )),
        );
    }
}

/// A count already in `section`.
pub(super) fn count_of(section: &Section, name: &str) -> Option<u32> {
    match section.get(name) {
        Some(Value::Integer(n)) => u32::try_from(*n.value()).ok(),
        _ => None,
    }
}

/// A value PgBouncer itself would reject.
pub(super) fn invalid(entry: &Entry, message: String) -> ConvertError {
    ConvertError::Value {
        origin: entry.origin.clone(),
        key: entry.key.clone(),
        message,
    }
}
