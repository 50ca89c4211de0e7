//! One connection to a PostgreSQL server: connect, negotiate TLS (`server::tls`),
//! log in (trust, cleartext, md5, SCRAM-SHA-256 with a password or a client's
//! recovered keys, SCRAM-SHA-256-PLUS over TLS when the server offers it), learn
//! its parameters and cancel key, and run the pooler's own small queries on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::cancel::ServerKey;
use super::io::{read_message, ReadError};
use super::params::ServerParams;
use super::tls::{ServerStream, ServerTlsError};
use crate::auth::{
    md5_response, md5_secret, AuthError, ClientBinding, ScramClient, ScramCredentials,
};
use crate::protocol::backend::{self, tag, ErrorFields, TxStatus};
use crate::protocol::{frontend, startup};

/// Largest message accepted during login and the pooler's own queries.
const CONTROL_MESSAGE_CAP: usize = 1 << 20;
/// Initial capacity of a connection's read buffer.
pub const READ_BUF_CAPACITY: usize = 16 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How the pooler proves itself to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCredential {
    /// No password known (trust, or the server will refuse).
    None,
    /// A plaintext password.
    Password(String),
    /// Only an md5 secret ("md5..."): enough for md5 auth, not for SCRAM.
    Md5Secret(String),
    /// SCRAM pass-through: keys recovered from the client's own SCRAM proof.
    ScramKeys {
        /// ClientKey recovered from the client's proof.
        client_key: [u8; 32],
        /// ServerKey from the user's secret, to verify the server.
        server_key: [u8; 32],
    },
}

/// Everything needed to open one server connection.
#[derive(Debug, Clone)]
pub struct ConnectTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Server-side user name.
    pub user: String,
    /// Server-side database name.
    pub database: String,
    /// How to authenticate.
    pub credential: ServerCredential,
    /// Bound on connect + login.
    pub connect_timeout: Duration,
    /// TLS towards the server (`pool.server_tls`).
    pub tls: crate::tls::ServerTlsConnector,
}

/// Why a server connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// DNS, TCP or IO failure.
    #[error("could not connect to server {host}:{port}: {source}")]
    Io {
        /// Host tried.
        host: String,
        /// Port tried.
        port: u16,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Connect + login took longer than `server_connect_timeout`.
    #[error("server_connect_timeout: no login to {host}:{port} within {secs} s")]
    Timeout {
        /// Host tried.
        host: String,
        /// Port tried.
        port: u16,
        /// The timeout.
        secs: u64,
    },
    /// TLS could not be set up as `server_tls` requires.
    #[error("TLS with server {host}:{port}: {source}")]
    Tls {
        /// Host tried.
        host: String,
        /// Port tried.
        port: u16,
        /// What failed.
        source: ServerTlsError,
    },
    /// The server refused the login with an ErrorResponse.
    #[error("server login failed: {} ({})", .0.message, .0.code)]
    Server(ErrorFields),
    /// The server asked for something we cannot do.
    #[error("server requested unsupported authentication method {0}")]
    UnsupportedAuth(u32),
    /// The server asked for a password we do not have.
    #[error("server requested a password for user \"{0}\" but none is configured")]
    NoPassword(String),
    /// SCRAM exchange failure.
    #[error("SCRAM authentication with the server failed: {0}")]
    Scram(#[from] AuthError),
    /// The server broke the protocol.
    #[error("protocol error from server: {0}")]
    Protocol(String),
    /// The server is not what the database entry needs (a standby for a writer).
    #[error("{host}:{port} is a {role}, not what database \"{database}\" needs ({wanted})")]
    WrongRole {
        /// Host tried.
        host: String,
        /// Port tried.
        port: u16,
        /// What it is.
        role: &'static str,
        /// The entry.
        database: String,
        /// What the entry needs.
        wanted: &'static str,
    },
    /// No host of the entry can be used right now (all set aside or of the
    /// wrong role); the message says each host's state.
    #[error("{0}")]
    NoHost(String),
    /// A host name did not resolve.
    #[error("{0}")]
    Resolve(String),
}

impl ConnectError {
    /// True for failures that may go away by themselves (a server restarting
    /// or failing over, a network blip): waiting clients keep waiting, up to
    /// `query_wait_timeout`. False for configuration and authentication
    /// problems, which fail the waiting clients at once.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::Io { .. }
            | ConnectError::Timeout { .. }
            | ConnectError::WrongRole { .. }
            | ConnectError::NoHost(_)
            | ConnectError::Resolve(_) => true,
            // Starting up, shutting down, in recovery, too many connections, connection errors.
            ConnectError::Server(f) => {
                f.code.starts_with("57P") || f.code.starts_with("08") || f.code == "53300"
            }
            _ => false,
        }
    }
}

impl From<ReadError> for ConnectError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(source) => ConnectError::Io {
                host: String::new(),
                port: 0,
                source,
            },
            ReadError::Frame(f) => ConnectError::Protocol(f.to_string()),
        }
    }
}

/// A logged-in server connection.
#[derive(Debug)]
pub struct ServerConn {
    /// The socket (plain or TLS).
    pub stream: ServerStream,
    /// Read buffer, reused for the connection's lifetime.
    pub buf: BytesMut,
    /// Bytes on their way to the server (client messages, possibly
    /// rewritten), reused for the connection's lifetime.
    pub out: BytesMut,
    /// Pooler-named prepared statements this connection holds.
    pub statements: super::prepared::ServerStatements,
    /// Parameters in force on this connection.
    pub params: ServerParams,
    /// Canonical names of reported parameters, for re-sending to clients.
    pub reported_names: Vec<(String, String)>,
    /// Cancel key and address.
    pub key: ServerKey,
    /// Pooler-wide id, for logs and the admin console.
    pub id: u64,
    /// When it logged in.
    pub created: Instant,
    /// When it was last released.
    pub last_used: Instant,
    /// Session state may have been changed since the last reset.
    pub dirty: bool,
    /// Sequence state (`currval`) may have been set since the last reset.
    pub sequences_dirty: bool,
    /// Version of the pool settings it was opened under; a connection from
    /// an older version whose target changed is retired when released.
    pub epoch: u64,
    /// The pooler's end of the socket.
    pub local_addr: Option<std::net::SocketAddr>,
    /// Wall-clock login time, for the admin console.
    pub connected_at: std::time::SystemTime,
    /// The server is a hot standby (`in_hot_standby`, or `pg_is_in_recovery()`
    /// at login); `None` until known. Updated when the server reports a change.
    pub standby: Option<bool>,
    /// The server refused a write as read-only (SQLSTATE 25006): its role is in doubt.
    pub read_only_refusal: bool,
    /// Index of its host in the database entry's host set.
    pub host: usize,
    /// That host's generation when the connection was opened.
    pub host_generation: u64,
}

impl ServerConn {
    /// Connects to `target.host` and logs in, all within `target.connect_timeout`.
    pub async fn connect(target: &ConnectTarget) -> Result<ServerConn, ConnectError> {
        Self::connect_at(target, None).await
    }

    /// Connects to `addr` (or `target.host` when `None`) and logs in as
    /// `target` says, learning the server's role, all within
    /// `target.connect_timeout`.
    pub async fn connect_at(
        target: &ConnectTarget,
        addr: Option<std::net::SocketAddr>,
    ) -> Result<ServerConn, ConnectError> {
        let timeout = target.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(target, addr)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                host: target.host.clone(),
                port: target.port,
                secs: timeout.as_secs(),
            }),
        }
    }

    async fn connect_inner(
        target: &ConnectTarget,
        addr: Option<std::net::SocketAddr>,
    ) -> Result<ServerConn, ConnectError> {
        let io_err = |source| ConnectError::Io {
            host: target.host.clone(),
            port: target.port,
            source,
        };
        let tcp = match addr {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((target.host.as_str(), target.port)).await,
        }
        .map_err(io_err)?;
        configure_socket(&tcp);
        let peer = tcp.peer_addr().map_err(io_err)?;
        let local_addr = tcp.local_addr().ok();
        let stream = super::tls::negotiate(tcp, &target.host, &target.tls)
            .await
            .map_err(|source| ConnectError::Tls {
                host: target.host.clone(),
                port: target.port,
                source,
            })?;
        let mut conn = ServerConn::with_stream(stream, peer, local_addr);
        conn.login(target).await.map_err(|e| match e {
            ConnectError::Io { source, .. } => io_err(source),
            other => other,
        })?;
        if conn.standby.is_none() {
            // Servers before PostgreSQL 14 do not report in_hot_standby.
            let standby = conn.query_bool("SELECT pg_is_in_recovery()").await?;
            conn.standby = Some(standby);
        }
        Ok(conn)
    }

    /// Wraps a connected socket that has not logged in yet. The pooler logs
    /// in right after; benches and tests use it to pool plain sockets.
    pub fn unauthenticated(stream: TcpStream) -> std::io::Result<ServerConn> {
        let addr = stream.peer_addr()?;
        let local_addr = stream.local_addr().ok();
        configure_socket(&stream);
        Ok(ServerConn::with_stream(
            ServerStream::Plain(stream),
            addr,
            local_addr,
        ))
    }

    /// Wraps a connected (and, if so configured, encrypted) stream to `addr`.
    fn with_stream(
        stream: ServerStream,
        addr: std::net::SocketAddr,
        local_addr: Option<std::net::SocketAddr>,
    ) -> ServerConn {
        ServerConn {
            stream,
            buf: BytesMut::with_capacity(READ_BUF_CAPACITY),
            out: BytesMut::new(),
            statements: Default::default(),
            params: ServerParams::default(),
            reported_names: Vec::new(),
            key: ServerKey {
                addr,
                pid: 0,
                secret: 0,
            },
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            created: Instant::now(),
            last_used: Instant::now(),
            dirty: false,
            sequences_dirty: false,
            epoch: 0,
            local_addr,
            connected_at: std::time::SystemTime::now(),
            standby: None,
            read_only_refusal: false,
            host: 0,
            host_generation: 0,
        }
    }

    /// What `SHOW SERVERS` lists of this connection.
    pub fn card(&self) -> crate::observe::cards::ServerCard {
        crate::observe::cards::ServerCard {
            id: self.id,
            remote_pid: self.key.pid,
            addr: self.key.addr,
            local: self.local_addr,
            connected: self.connected_at,
            tls: self.stream.tls_description(),
        }
    }

    async fn login(&mut self, target: &ConnectTarget) -> Result<(), ConnectError> {
        let mut out = BytesMut::with_capacity(256);
        startup::encode_startup(
            &mut out,
            &[("user", &target.user), ("database", &target.database)],
        );
        self.send(&out).await?;
        let mut scram: Option<ScramClient> = None;
        let mut mechanism = "";
        loop {
            let msg = read_message(&mut self.stream, &mut self.buf, CONTROL_MESSAGE_CAP).await?;
            out.clear();
            match msg.tag {
                tag::AUTHENTICATION => {
                    let body = &msg.body[..];
                    if body.len() < 4 {
                        return Err(ConnectError::Protocol(
                            "short authentication message".into(),
                        ));
                    }
                    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let data = &body[4..];
                    match code {
                        0 => {}
                        3 => {
                            let pw = plaintext(&target.credential, &target.user)?;
                            frontend::password_message(&mut out, pw.as_bytes(), true);
                        }
                        5 => {
                            let salt: [u8; 4] = data
                                .get(..4)
                                .and_then(|s| s.try_into().ok())
                                .ok_or_else(|| ConnectError::Protocol("short md5 salt".into()))?;
                            let secret = match &target.credential {
                                ServerCredential::Password(p) => md5_secret(&target.user, p),
                                ServerCredential::Md5Secret(s) => s.clone(),
                                _ => return Err(ConnectError::NoPassword(target.user.clone())),
                            };
                            let resp = md5_response(&secret, salt);
                            frontend::password_message(&mut out, resp.as_bytes(), true);
                        }
                        10 => {
                            let creds = match &target.credential {
                                ServerCredential::Password(p) => {
                                    ScramCredentials::Password(p.clone())
                                }
                                ServerCredential::ScramKeys {
                                    client_key,
                                    server_key,
                                } => ScramCredentials::Keys {
                                    client_key: *client_key,
                                    server_key: *server_key,
                                },
                                _ => return Err(ConnectError::NoPassword(target.user.clone())),
                            };
                            let offers =
                                |name: &str| data.split(|&b| b == 0).any(|m| m == name.as_bytes());
                            if !offers(crate::auth::SCRAM_SHA_256) {
                                return Err(ConnectError::UnsupportedAuth(code));
                            }
                            let binding = match self.stream.channel_binding() {
                                Some(data) if offers(crate::auth::SCRAM_SHA_256_PLUS) => {
                                    ClientBinding::TlsServerEndPoint(data)
                                }
                                _ if self.stream.is_tls() => ClientBinding::NotOffered,
                                _ => ClientBinding::None,
                            };
                            let client = ScramClient::new(creds).with_binding(binding);
                            mechanism = client.mechanism();
                            frontend::sasl_initial_response(
                                &mut out,
                                client.mechanism(),
                                &client.client_first(),
                            );
                            scram = Some(client);
                        }
                        11 => {
                            let client = scram.as_mut().ok_or_else(|| {
                                ConnectError::Protocol("unexpected SASL continue".into())
                            })?;
                            let reply = client.server_first(data)?;
                            frontend::password_message(&mut out, &reply, false);
                        }
                        12 => {
                            let client = scram.as_mut().ok_or_else(|| {
                                ConnectError::Protocol("unexpected SASL final".into())
                            })?;
                            client.server_final(data)?;
                            tracing::debug!(
                                host = %target.host,
                                mechanism,
                                tls = self.stream.is_tls(),
                                "server login authenticated"
                            );
                        }
                        other => return Err(ConnectError::UnsupportedAuth(other)),
                    }
                    if !out.is_empty() {
                        self.send(&out).await?;
                    }
                }
                tag::ERROR_RESPONSE => {
                    return Err(ConnectError::Server(ErrorFields::parse(&msg.body)))
                }
                tag::PARAMETER_STATUS => self.note_parameter(&msg.body),
                tag::BACKEND_KEY_DATA => {
                    let b = &msg.body[..];
                    if b.len() >= 8 {
                        self.key.pid = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        self.key.secret = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                    }
                }
                tag::READY_FOR_QUERY => return Ok(()),
                _ => {}
            }
        }
    }

    /// Runs a one-value boolean query of the pooler's own.
    async fn query_bool(&mut self, sql: &str) -> Result<bool, ConnectError> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        frontend::query(&mut out, sql);
        self.send(&out).await?;
        let mut value = None;
        loop {
            let msg = read_message(&mut self.stream, &mut self.buf, CONTROL_MESSAGE_CAP).await?;
            match msg.tag {
                tag::DATA_ROW => value = backend::first_column(&msg.body).map(|v| v == b"t"),
                tag::ERROR_RESPONSE => {
                    return Err(ConnectError::Server(ErrorFields::parse(&msg.body)))
                }
                tag::PARAMETER_STATUS => self.note_parameter(&msg.body),
                tag::READY_FOR_QUERY => {
                    return value.ok_or_else(|| {
                        ConnectError::Protocol(format!("no boolean answer to {sql}"))
                    })
                }
                _ => {}
            }
        }
    }

    /// Records a ParameterStatus body.
    pub fn note_parameter(&mut self, body: &[u8]) {
        if let Some((name, value)) = backend::parse_parameter_status(body) {
            if name.eq_ignore_ascii_case(b"in_hot_standby") {
                self.standby = Some(value == b"on");
            }
            let name = String::from_utf8_lossy(name);
            let value = String::from_utf8_lossy(value);
            self.params.reported_changed(&name, &value);
            match self.reported_names.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value.into_owned(),
                None => self
                    .reported_names
                    .push((name.into_owned(), value.into_owned())),
            }
        }
    }

    /// Runs a simple query the pooler issues itself (SET, reset, health check),
    /// discarding its results. Returns the first error the server reported.
    pub async fn run_control_query(&mut self, sql: &str) -> Result<Option<ErrorFields>, ReadError> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        frontend::query(&mut out, sql);
        self.send(&out).await?;
        self.read_until_ready().await
    }

    /// Writes all of `bytes` and flushes (TLS may buffer otherwise).
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads and discards until ReadyForQuery, keeping parameter changes.
    pub async fn read_until_ready(&mut self) -> Result<Option<ErrorFields>, ReadError> {
        let mut first_error = None;
        loop {
            let msg = read_message(&mut self.stream, &mut self.buf, CONTROL_MESSAGE_CAP).await?;
            match msg.tag {
                tag::PARAMETER_STATUS => self.note_parameter(&msg.body),
                tag::ERROR_RESPONSE if first_error.is_none() => {
                    first_error = Some(ErrorFields::parse(&msg.body));
                }
                tag::READY_FOR_QUERY => {
                    let status = msg.body.first().copied().map(TxStatus::from_byte);
                    if status != Some(TxStatus::Idle) && first_error.is_none() {
                        first_error = Some(ErrorFields {
                            severity: "ERROR".into(),
                            code: "25000".into(),
                            message: "control query left a transaction open".into(),
                        });
                    }
                    return Ok(first_error);
                }
                _ => {}
            }
        }
    }

    /// Non-blocking check that an idle connection is still usable: no bytes
    /// (an async FATAL) and no EOF waiting on the socket.
    pub fn is_healthy_when_idle(&self) -> bool {
        if !self.buf.is_empty() || !self.out.is_empty() || self.stream.has_buffered_input() {
            return false;
        }
        // The reactor marks the socket readable when bytes or EOF arrive; a
        // short read cleared that mark, so an unmarked socket needs no read
        // at all (nor, unlike a poll, the registration's lock to store a
        // waker); a marked one is probed with a read. Under TLS, bytes
        // on an idle socket are a record the server sent unasked (a FATAL, an
        // alert, close_notify): unhealthy too, so consuming the probe byte
        // from under rustls does no harm — the connection is dropped.
        let tcp = self.stream.tcp();
        if !crate::net::stream::marked_readable(tcp) {
            return true;
        }
        let mut probe = [0u8; 1];
        match tcp.try_read(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// Sends Terminate and closes, ignoring errors (the connection is going away).
    pub async fn terminate(mut self) {
        let mut out = BytesMut::with_capacity(5);
        frontend::terminate(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.stream.write_all(&out).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

fn plaintext<'a>(cred: &'a ServerCredential, user: &str) -> Result<&'a str, ConnectError> {
    match cred {
        ServerCredential::Password(p) => Ok(p),
        _ => Err(ConnectError::NoPassword(user.to_owned())),
    }
}

/// TCP_NODELAY and keepalive on a server or client socket.
pub fn configure_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    let _ = sock.set_tcp_keepalive(&keepalive);
}
