//! The login phase: the startup packet (SSLRequest answered 'S' and the TLS
//! handshake done when `client_tls` allows it, else 'N'; direct TLS; GSSENCRequest
//! answered 'N'; CancelRequest forwarded; protocol negotiation), authentication,
//! the pool lookup, and the welcome (AuthenticationOk, ParameterStatus,
//! BackendKeyData, ReadyForQuery). `client_tls = "require"` refuses a plaintext
//! StartupMessage with FATAL 28000.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::app::Shared;
use crate::config::ClientTls;
use crate::error::{sqlstate, ClientError};
use crate::net::tls::{self as client_tls, Negotiation};
use crate::net::ClientStream;
use crate::observe::GlobalStats;
use crate::pool::checkout::Release;
use crate::pool::{Pool, PoolKey};
use crate::protocol::backend::{self, TxStatus};
use crate::protocol::startup::{self, StartupPacket};
use crate::server::cancel::CancelSlot;
use crate::server::params::{client_startup_params, is_tracked_reported, ParamSet};

/// A logged-in client.
#[derive(Debug)]
pub struct Login {
    /// The pool serving it.
    pub pool: Arc<Pool>,
    /// Parameters that must be in force on its server connections.
    pub wanted: ParamSet,
    /// The pooler-issued cancel key's pid.
    pub cancel_pid: u32,
    /// Where the session publishes the server serving it.
    pub cancel_slot: Arc<CancelSlot>,
}

/// A client logged in to the admin console. It has a cancel key like any
/// client (a CancelRequest for it finds no server and does nothing), so that
/// SHOW CLIENTS lists it, as PgBouncer does.
#[derive(Debug)]
pub struct ConsoleLogin {
    /// What the user may do.
    pub access: crate::admin::Access,
    /// Client user name.
    pub user: String,
    /// The admin database it connected to (`pgbouncer` or `pgpool`).
    pub database: String,
    /// `application_name` from the startup packet.
    pub application_name: String,
    /// The pooler-issued cancel key's pid.
    pub cancel_pid: u32,
    /// Its entry in the client list.
    pub cancel_slot: Arc<CancelSlot>,
}

/// Where a logged-in connection goes.
#[derive(Debug)]
pub enum Admitted {
    /// A pool of a database entry.
    Pool(Login),
    /// The admin console.
    Console(ConsoleLogin),
}

/// Runs the login phase under `client_login_timeout`. `Ok(None)` when the
/// connection was a CancelRequest (handled) or closed quietly.
pub async fn login(
    client: &mut ClientStream,
    shared: &Arc<Shared>,
    peer: Option<SocketAddr>,
) -> Result<Option<Admitted>, ClientError> {
    let timeout = shared.snapshot().config.pool.client_login_timeout;
    let fut = login_inner(client, shared, peer);
    if timeout.is_zero() {
        return fut.await;
    }
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "client_login_timeout: login not completed within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

/// Reads the startup packet until a StartupMessage or CancelRequest arrives.
/// With `tls` (client TLS enabled), an SSLRequest is answered 'S' and the
/// connection upgraded, and a connection that starts with a TLS ClientHello
/// is upgraded directly; without, SSLRequest is answered 'N'. GSSENCRequest
/// is always answered 'N'.
pub async fn read_startup(
    client: &mut ClientStream,
    tls: Option<&crate::tls::ClientTlsAcceptor>,
    stats: &GlobalStats,
) -> Result<Option<StartupPacket>, ClientError> {
    if let Some(acceptor) = tls {
        if client_tls::starts_with_tls(client).await {
            client_tls::upgrade(client, acceptor, Negotiation::Direct, stats).await?;
        }
    }
    loop {
        let mut len = [0u8; 4];
        if client.read_exact(&mut len).await.is_err() {
            return Ok(None);
        }
        let len = startup::packet_len(len).map_err(protocol_violation)?;
        let mut body = vec![0u8; len - 4];
        if client.read_exact(&mut body).await.is_err() {
            return Ok(None);
        }
        match startup::parse(&body).map_err(protocol_violation)? {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if client.is_tls() => {
                return Err(protocol_violation(
                    "SSLRequest or GSSENCRequest on an encrypted connection",
                ));
            }
            StartupPacket::SslRequest => match tls {
                Some(acceptor) => {
                    client.send(b"S").await.map_err(|_| closed())?;
                    client_tls::upgrade(client, acceptor, Negotiation::SslRequest, stats).await?;
                }
                None => client.send(b"N").await.map_err(|_| closed())?,
            },
            StartupPacket::GssEncRequest => {
                client.send(b"N").await.map_err(|_| closed())?;
            }
            other => return Ok(Some(other)),
        }
    }
}

async fn login_inner(
    client: &mut ClientStream,
    shared: &Arc<Shared>,
    peer: Option<SocketAddr>,
) -> Result<Option<Admitted>, ClientError> {
    let tls = shared.snapshot().client_tls.clone();
    let (minor, params) = match read_startup(client, tls.as_deref(), &shared.stats).await? {
        None => return Ok(None),
        Some(StartupPacket::Cancel { pid, secret }) => {
            shared.cancels.cancel(pid, secret, &shared.stats);
            return Ok(None);
        }
        Some(StartupPacket::Startup { minor, params }) => (minor, params),
        Some(_) => return Ok(None),
    };
    if !client.is_tls() && shared.snapshot().config.listen.client_tls == ClientTls::Require {
        return Err(ClientError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "TLS is required (client_tls = \"require\"): connect with sslmode=require or stronger",
        ));
    }
    let mut out = BytesMut::with_capacity(512);
    let unrecognized: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if minor > 0 || !unrecognized.is_empty() {
        backend::negotiate_protocol_version(&mut out, 0, &unrecognized);
        client.send(&out).await.map_err(|_| closed())?;
        out.clear();
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let user = get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ClientError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_owned();
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    if get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off") {
        return Err(ClientError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by the pooler",
        ));
    }
    let wanted_startup = client_startup_params(&params)
        .map_err(|e| ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;

    let snapshot = shared.snapshot();
    let credential = super::throttle::guard(
        &shared.login_throttle,
        peer,
        &snapshot.config.auth,
        super::auth::authenticate(client, &snapshot, &user, peer, &shared.stats),
    )
    .await
    .inspect_err(|e| login_failed(&user, &database, peer, e))?;

    if crate::admin::ADMIN_DATABASES.contains(&database.as_str()) {
        let Some(access) = crate::admin::access_of(shared, &user) else {
            let e = ClientError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!("user \"{user}\" is not allowed to use the admin console (not in admin_users or stats_users)"),
            );
            login_failed(&user, &database, peer, &e);
            return Err(e);
        };
        let mut out = BytesMut::with_capacity(256);
        let (cancel_pid, cancel_slot) =
            send_with_cancel_key(client, shared, &mut out, crate::admin::welcome)
                .await
                .ok_or_else(closed)?;
        return Ok(Some(Admitted::Console(ConsoleLogin {
            access,
            application_name: get("application_name").unwrap_or_default().to_owned(),
            user,
            database,
            cancel_pid,
            cancel_slot,
        })));
    }
    let Some(db) = snapshot.config.databases.get(&database) else {
        let e = ClientError::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{database}\" does not exist"),
        );
        login_failed(&user, &database, peer, &e);
        return Err(e);
    };
    let key = PoolKey {
        database: database.clone(),
        user: user.clone(),
    };
    let pool = shared.pool_for(&snapshot, &key, db, credential)?;

    let welcome = match pool.welcome() {
        Some(w) => w,
        None => {
            // First login for this pool: learn the server's parameters (and
            // prove the credentials work) from a real connection.
            let co = pool
                .checkout(std::time::Instant::now(), &crate::pool::WaitSlot::new())
                .await
                .map_err(super::checkout_error)?;
            co.release(Release::Clean);
            pool.welcome().unwrap_or_default()
        }
    };

    let mut wanted = ParamSet::new();
    backend::auth_ok(&mut out);
    for (name, value) in welcome.iter() {
        let lower = name.to_ascii_lowercase();
        let value = wanted_startup.get(&lower).unwrap_or(value);
        if is_tracked_reported(&lower) {
            wanted.set(&lower, value);
        }
        backend::parameter_status(&mut out, name, value);
    }
    for (k, v) in wanted_startup.iter() {
        if wanted.get(k).is_none() {
            wanted.set(k, v);
        }
    }
    let Some((cancel_pid, cancel_slot)) =
        send_with_cancel_key(client, shared, &mut out, |out, pid, secret| {
            backend::backend_key_data(out, pid, secret);
            backend::ready_for_query(out, TxStatus::Idle);
        })
        .await
    else {
        return Ok(None);
    };
    Ok(Some(Admitted::Pool(Login {
        pool,
        wanted,
        cancel_pid,
        cancel_slot,
    })))
}

/// Registers the client's cancel key, appends the end of its login built
/// around the key (`finish(out, pid, secret)`) and sends `out`; returns the
/// key's pid and slot, or `None` (key forgotten) when the client is gone.
async fn send_with_cancel_key(
    client: &mut ClientStream,
    shared: &Shared,
    out: &mut BytesMut,
    finish: impl FnOnce(&mut BytesMut, u32, u32),
) -> Option<(u32, Arc<CancelSlot>)> {
    let (pid, secret, slot) = shared.cancels.register();
    finish(out, pid, secret);
    if client.send(out).await.is_err() {
        shared.cancels.remove(pid);
        return None;
    }
    Some((pid, slot))
}

/// One info line per refused login: who, where from, why — never a password.
fn login_failed(user: &str, database: &str, peer: Option<SocketAddr>, e: &ClientError) {
    tracing::info!(
        user,
        db = database,
        client = ?peer,
        code = e.code,
        reason = %e.message,
        "login failed"
    );
}

fn protocol_violation(e: impl std::fmt::Display) -> ClientError {
    ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
}

fn closed() -> ClientError {
    ClientError::fatal(sqlstate::CONNECTION_FAILURE, "client connection closed")
}

/// How long a refused client is given to send its startup packet.
pub const REFUSE_GRACE: Duration = Duration::from_secs(5);
