//! Client authentication: drives the pure SCRAM / md5 state machines of
//! [`crate::auth`] over the client's stream, and returns the credential the
//! pooler can then use to log in to servers as that user.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::auth::{md5_verify, random_salt, ScramServer, ScramVerdict};
use crate::config::AuthType;
use crate::error::{sqlstate, ClientError};
use crate::net::ClientStream;
use crate::observe::GlobalStats;
use crate::protocol::backend;
use crate::protocol::frontend::{self, tag as ftag};
use crate::server::io::read_message;
use crate::server::ServerCredential;
use crate::snapshot::Snapshot;

/// Largest authentication message accepted from a client.
const AUTH_MESSAGE_CAP: usize = 16 * 1024;

/// Authenticates `user` per `auth.type`; returns how to log in to servers as them.
pub async fn authenticate(
    client: &mut ClientStream,
    snapshot: &Snapshot,
    user: &str,
    peer: Option<SocketAddr>,
    stats: &GlobalStats,
) -> Result<ServerCredential, ClientError> {
    let entry = snapshot.user(user);
    let result = match snapshot.config.auth.auth_type {
        AuthType::Trust => {
            let loopback = peer.is_some_and(|p| p.ip().is_loopback());
            if !loopback && !snapshot.config.auth.trust_remote {
                Err(ClientError::fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    "trust authentication is only allowed from loopback (set auth.trust_remote to allow it)",
                ))
            } else {
                Ok(
                    entry.map_or(ServerCredential::None, |e| match (&e.password, &e.md5) {
                        (Some(p), _) => ServerCredential::Password(p.clone()),
                        (None, Some(m)) => ServerCredential::Md5Secret(m.clone()),
                        _ => ServerCredential::None,
                    }),
                )
            }
        }
        AuthType::Md5 => {
            let md5 = entry.and_then(|e| e.md5.clone());
            let salt = random_salt();
            let mut out = BytesMut::new();
            backend::auth_md5(&mut out, salt);
            client.send(&out).await.map_err(|_| closed())?;
            let msg = read_client(client, &mut BytesMut::new()).await?;
            let response = frontend::parse_password(&msg).unwrap_or_default();
            match md5 {
                Some(secret) if md5_verify(&secret, salt, response) => {
                    let e = entry.map(|e| e.password.clone());
                    Ok(match e.flatten() {
                        Some(p) => ServerCredential::Password(p),
                        None => ServerCredential::Md5Secret(secret),
                    })
                }
                _ => Err(wrong_password(user)),
            }
        }
        AuthType::ScramSha256 => {
            scram(client, entry.and_then(|e| e.scram.clone()), entry, user).await
        }
    };
    if result.is_err() {
        stats.login_failures.fetch_add(1, Ordering::Relaxed);
    }
    result
}

async fn scram(
    client: &mut ClientStream,
    secret: Option<crate::auth::ScramSecret>,
    entry: Option<&crate::snapshot::UserEntry>,
    user: &str,
) -> Result<ServerCredential, ClientError> {
    let server_key = secret.as_ref().map(|s| s.server_key);
    let binding = client.channel_binding().map(<[u8]>::to_vec);
    let mut server = match secret {
        Some(s) => ScramServer::new(Some(s)),
        None => ScramServer::mock(user),
    }
    .with_channel_binding(binding);
    let mut out = BytesMut::new();
    backend::auth_sasl(&mut out, server.mechanisms());
    client.send(&out).await.map_err(|_| closed())?;
    let mut rbuf = BytesMut::new();
    let first = read_client(client, &mut rbuf).await?;
    let (mechanism, data) = frontend::parse_sasl_initial(&first)
        .ok_or_else(|| protocol("malformed SASLInitialResponse"))?;
    let mechanism = std::str::from_utf8(mechanism).unwrap_or_default();
    if server.select(mechanism).is_err() {
        return Err(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let server_first = server
        .client_first(data)
        .map_err(|e| protocol(&e.to_string()))?;
    out.clear();
    backend::auth_sasl_continue(&mut out, &server_first);
    client.send(&out).await.map_err(|_| closed())?;
    let fin = read_client(client, &mut rbuf).await?;
    match server
        .client_final(&fin)
        .map_err(|e| protocol(&e.to_string()))?
    {
        ScramVerdict::Success {
            server_final,
            client_key,
        } => {
            out.clear();
            backend::auth_sasl_final(&mut out, &server_final);
            client.send(&out).await.map_err(|_| closed())?;
            Ok(match (entry.and_then(|e| e.password.clone()), server_key) {
                (Some(p), _) => ServerCredential::Password(p),
                (None, Some(server_key)) => ServerCredential::ScramKeys {
                    client_key,
                    server_key,
                },
                (None, None) => ServerCredential::None,
            })
        }
        ScramVerdict::WrongPassword => Err(wrong_password(user)),
    }
}

/// Reads one password-family message ('p') from the client; returns its body.
async fn read_client(
    client: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, ClientError> {
    let msg = read_message(client, buf, AUTH_MESSAGE_CAP)
        .await
        .map_err(|e| match e {
            crate::server::io::ReadError::Io(_) => closed(),
            crate::server::io::ReadError::Frame(f) => protocol(&f.to_string()),
        })?;
    if msg.tag != ftag::PASSWORD {
        return Err(protocol(&format!(
            "expected password response, got message type {}",
            char::from(msg.tag)
        )));
    }
    Ok(msg.body)
}

fn wrong_password(user: &str) -> ClientError {
    ClientError::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

fn protocol(m: &str) -> ClientError {
    ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, m.to_owned())
}

fn closed() -> ClientError {
    ClientError::fatal(sqlstate::CONNECTION_FAILURE, "client connection closed")
}
