//! Checks that relate several keys (or a key and its table's name), made on the typed
//! config after reading, with lines looked up by key path in [`Lines`].

use super::read::{join, Lines, Reader};
use super::sections::MAX_IDENTIFIER;
use super::types::{AuthType, ClientTls, Database, PoolSettings, ServerTls};
use super::Config;

/// Database names that clients use to reach the admin console.
pub(super) const RESERVED_NAMES: &[&str] = &["pgbouncer", "pgpool"];

/// Records every cross-key problem of `config`.
pub(super) fn check(config: &Config, lines: &Lines, rd: &mut Reader<'_>) {
    let mut report = |path: &[&str], message: String| {
        let key = path.iter().fold(String::new(), |acc, k| join(&acc, k));
        rd.report(lines.find(path), &key, message);
    };

    let listen = &config.listen;
    if listen.client_tls != ClientTls::Disable {
        for (key, value) in [("tls_cert", &listen.tls_cert), ("tls_key", &listen.tls_key)] {
            if value.is_none() {
                let message = format!("required when client_tls = \"{}\"", listen.client_tls);
                report(&["listen", key], message);
            }
        }
    }

    if config.auth.auth_type != AuthType::Trust && config.auth.file.is_none() {
        let message = format!(
            "a userlist is required unless type = \"trust\" (type is \"{}\")",
            config.auth.auth_type
        );
        report(&["auth", "file"], message);
    }

    let auth = &config.auth;
    if auth.login_failure_limit != 0
        && auth.login_failure_block != 0
        && auth.login_failure_block <= auth.login_failure_limit
    {
        let message = format!(
            "must be greater than login_failure_limit ({}), or 0 to never refuse, got {}",
            auth.login_failure_limit, auth.login_failure_block
        );
        report(&["auth", "login_failure_block"], message);
    }

    let pool = &config.pool;
    if pool.server_tls == ServerTls::VerifyFull && pool.server_tls_ca_file.is_none() {
        let message = "required when server_tls = \"verify-full\" (a PEM bundle of the CA \
                       certificates that signed the servers' certificates)"
            .to_owned();
        report(&["pool", "server_tls_ca_file"], message);
    }
    if pool.min_pool_size > pool.default_pool_size {
        let message = format!(
            "must not exceed default_pool_size ({}), got {}",
            pool.default_pool_size, pool.min_pool_size
        );
        report(&["pool", "min_pool_size"], message);
    } else if pool.max_db_connections != 0 && pool.min_pool_size > pool.max_db_connections {
        let message = format!(
            "must not exceed max_db_connections ({}), got {}",
            pool.max_db_connections, pool.min_pool_size
        );
        report(&["pool", "min_pool_size"], message);
    }

    for (name, db) in &config.databases {
        check_database(name, db, pool, &mut report);
    }
}

/// One `[databases.<name>]` entry.
fn check_database(
    name: &str,
    db: &Database,
    pool: &PoolSettings,
    report: &mut impl FnMut(&[&str], String),
) {
    if name.is_empty() {
        report(
            &["databases", name],
            "database name must not be empty".into(),
        );
    } else if RESERVED_NAMES.contains(&name) {
        let message = format!("the name \"{name}\" is reserved for the admin console");
        report(&["databases", name], message);
    } else if name.len() > MAX_IDENTIFIER {
        let message = format!("database name must be at most {MAX_IDENTIFIER} bytes long");
        report(&["databases", name], message);
    }

    match (&db.user, &db.password) {
        (None, Some(_)) => report(
            &["databases", name, "password"],
            "password is set but user is not (set the server user it belongs to)".into(),
        ),
        (Some(_), Some(password)) if password.is_empty() => report(
            &["databases", name, "password"],
            "must not be empty (omit it to use the userlist's password for user)".into(),
        ),
        _ => {}
    }

    // The effective minimum must fit under the effective limits. Blame a key this entry
    // sets; when it sets none of them, the [pool] checks have already covered it.
    let min = db.effective_min_pool_size(pool);
    let size = db.effective_pool_size(pool);
    let max_db = db.effective_max_db_connections(pool);
    if (db.min_pool_size.is_some() || db.pool_size.is_some()) && min > size {
        let (key, message) = if db.min_pool_size.is_some() {
            (
                "min_pool_size",
                format!("must not exceed the pool size ({size}), got {min}"),
            )
        } else {
            (
                "pool_size",
                format!("must be at least min_pool_size ({min}), got {size}"),
            )
        };
        report(&["databases", name, key], message);
    }
    if (db.min_pool_size.is_some() || db.max_db_connections.is_some())
        && max_db != 0
        && min > max_db
    {
        let (key, message) = if db.min_pool_size.is_some() {
            (
                "min_pool_size",
                format!("must not exceed max_db_connections ({max_db}), got {min}"),
            )
        } else {
            (
                "max_db_connections",
                format!("must be 0 (unlimited) or at least min_pool_size ({min}), got {max_db}"),
            )
        };
        report(&["databases", name, key], message);
    }
}
