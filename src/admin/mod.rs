//! The admin console: the virtual database `pgbouncer` (alias `pgpool`),
//! spoken over the simple query protocol so psql and PgBouncer exporters
//! work. `stats_users` may run SHOW commands; `admin_users` may also RELOAD,
//! SHUTDOWN, KILL and RECONNECT. Each command is parse → rows over
//! read-only state, or one call on the pools / reload machinery.

pub mod parse;
pub mod show;
pub mod show_conns;

use std::sync::Arc;

use bytes::BytesMut;

use crate::app::Shared;
use crate::error::{sqlstate, ClientError};
use crate::net::ClientStream;
use crate::protocol::backend::{self, Severity, TxStatus};
use crate::protocol::frontend::{self, tag as ftag};
use crate::server::io::{read_message, ReadError};
use parse::{Command, Show};
use show::Table;

/// Names of the virtual admin database.
pub const ADMIN_DATABASES: [&str; 2] = ["pgbouncer", "pgpool"];

/// Largest admin query accepted.
const MAX_QUERY: usize = 64 * 1024;

/// What a logged-in console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// SHOW only.
    Stats,
    /// Everything.
    Admin,
}

/// The access `user` has, per `admin_users` / `stats_users`.
pub fn access_of(shared: &Shared, user: &str) -> Option<Access> {
    let snapshot = shared.snapshot();
    let auth = &snapshot.config.auth;
    if auth.admin_users.iter().any(|u| u == user) {
        Some(Access::Admin)
    } else if auth.stats_users.iter().any(|u| u == user) {
        Some(Access::Stats)
    } else {
        None
    }
}

/// Appends the welcome a console client gets after authentication.
pub fn welcome(out: &mut BytesMut, pid: u32, secret: u32) {
    backend::auth_ok(out);
    for (k, v) in [
        ("server_version", "15.0 (pgpool-rs)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("application_name", ""),
    ] {
        backend::parameter_status(out, k, v);
    }
    backend::backend_key_data(out, pid, secret);
    backend::ready_for_query(out, TxStatus::Idle);
}

/// Serves a console session until the client leaves.
pub async fn serve(
    client: &mut ClientStream,
    shared: &Arc<Shared>,
    access: Access,
) -> Result<(), ClientError> {
    let mut rbuf = BytesMut::new();
    let mut out = BytesMut::with_capacity(4096);
    let mut skipping = false;
    let mut shutdown = shared.shutdown.clone();
    loop {
        let read = tokio::select! {
            r = read_message(client, &mut rbuf, MAX_QUERY) => r,
            _ = shutdown.wait_for(|stopping| *stopping) => {
                return Err(ClientError::fatal(sqlstate::ADMIN_SHUTDOWN, "pooler is shutting down"));
            }
        };
        let msg = match read {
            Ok(m) => m,
            Err(ReadError::Io(_)) => return Ok(()),
            Err(ReadError::Frame(f)) => {
                return Err(ClientError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    f.to_string(),
                ))
            }
        };
        out.clear();
        match msg.tag {
            ftag::TERMINATE => return Ok(()),
            ftag::QUERY => {
                let sql = frontend::query_text(ftag::QUERY, &msg.body).unwrap_or_default();
                let sql = String::from_utf8_lossy(sql);
                run(&sql, shared, access, &mut out).await;
                backend::ready_for_query(&mut out, TxStatus::Idle);
            }
            ftag::SYNC => {
                skipping = false;
                backend::ready_for_query(&mut out, TxStatus::Idle);
            }
            ftag::FLUSH => {}
            _ if !skipping => {
                skipping = true;
                backend::error_response(
                    &mut out,
                    Severity::Error,
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "the admin console supports only the simple query protocol",
                );
            }
            _ => {}
        }
        if !out.is_empty() && client.send(&out).await.is_err() {
            return Ok(());
        }
    }
}

/// Runs one command, appending its result (or error) to `out`.
async fn run(sql: &str, shared: &Arc<Shared>, access: Access, out: &mut BytesMut) {
    let cmd = match parse::parse(sql) {
        Ok(c) => c,
        Err(e) => return error(out, "42601", &e.to_string()),
    };
    if cmd.needs_admin() && access != Access::Admin {
        return error(
            out,
            "42501",
            "admin access needed (the user is in stats_users, not admin_users)",
        );
    }
    match cmd {
        Command::Empty => backend::empty_query(out),
        Command::Show(what) => {
            let table = match what {
                Show::Pools => show::pools(shared),
                Show::Stats => show::stats(shared),
                Show::Databases => show::databases(shared),
                Show::Config => show::config(shared),
                Show::Lists => show::lists(shared),
                Show::Version => show::version(),
                Show::Users => show::users(shared),
                Show::Clients => show_conns::clients(shared),
                Show::Servers => show_conns::servers(shared),
                Show::Hosts => show_conns::hosts(shared),
            };
            write_table(out, &table);
        }
        Command::Reload => {
            if crate::reload::reload(&shared.config_path, shared) {
                backend::command_complete(out, "RELOAD");
            } else {
                error(out, "F0000", "configuration reload failed; the old configuration stays in force (see the log)");
            }
        }
        Command::Shutdown => {
            shared.stop.notify_one();
            backend::command_complete(out, "SHUTDOWN");
        }
        Command::Kill(db) => {
            let pools: Vec<_> = shared
                .registry
                .pools()
                .into_iter()
                .filter(|p| p.key.database == db)
                .collect();
            if pools.is_empty() && !shared.snapshot().config.databases.contains_key(&db) {
                return error(out, "3D000", &format!("no such database: {db}"));
            }
            for p in pools {
                p.close();
            }
            backend::command_complete(out, "KILL");
        }
        Command::Reconnect(db) => {
            for p in shared.registry.pools() {
                if db.as_ref().is_none_or(|d| *d == p.key.database) {
                    p.retire_connections();
                }
            }
            backend::command_complete(out, "RECONNECT");
        }
        Command::Pause(db) => {
            if let Some(d) = &db {
                if !shared.snapshot().config.databases.contains_key(d) {
                    return error(out, "3D000", &format!("no such database: {d}"));
                }
            }
            let pools = shared.pause(db.as_deref());
            // PgBouncer's PAUSE returns once running transactions are done.
            loop {
                if pools.iter().all(|p| p.is_drained()) {
                    break;
                }
                if pools.iter().any(|p| !p.is_paused()) {
                    return error(
                        out,
                        "55000",
                        "PAUSE was undone by RESUME before it took effect",
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            backend::command_complete(out, "PAUSE");
        }
        Command::Resume(db) => match shared.resume(db.as_deref()) {
            Ok(()) => backend::command_complete(out, "RESUME"),
            Err(e) => error(out, "55000", &e.to_string()),
        },
    }
}

fn error(out: &mut BytesMut, code: &'static str, message: &str) {
    backend::error_response(out, Severity::Error, code, message);
}

fn write_table(out: &mut BytesMut, t: &Table) {
    backend::row_description(out, &t.columns);
    for row in &t.rows {
        let values: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
        backend::data_row(out, &values);
    }
    backend::command_complete(out, "SHOW");
}
