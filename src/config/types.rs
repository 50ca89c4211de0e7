//! The validated configuration's data types and their defaults (the defaults are the
//! values documented in SPEC.md's `pool.toml` example and in `config/pool.toml`).
//!
//! These are plain data: reading and checking them lives in `read.rs`, `sections.rs`
//! and `validate.rs`. A value of these types that came out of [`super::Config::parse`]
//! has passed every check, so consumers need not re-validate it.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Declares a config enum together with its TOML spelling, `as_str`, `Display`, `FromStr`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value with its spelling in `pool.toml`, in documentation order.
            pub const ALL: &'static [($name, &'static str)] = &[$( ($name::$variant, $text), )+];

            /// The spelling used in `pool.toml` (and in `SHOW CONFIG`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<$name, UnknownValue> {
                $name::ALL
                    .iter()
                    .find(|(_, text)| *text == s)
                    .map(|(value, _)| *value)
                    .ok_or_else(|| UnknownValue::new(s, $name::ALL.iter().map(|(_, t)| *t)))
            }
        }
    };
}

/// A string that is not one of an enum's spellings (e.g. `client_tls = "always"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value \"{value}\" (expected one of {expected})")]
pub struct UnknownValue {
    /// What was given.
    pub value: String,
    /// The accepted spellings, comma-separated.
    pub expected: String,
}

impl UnknownValue {
    fn new<'a>(value: &str, expected: impl Iterator<Item = &'a str>) -> UnknownValue {
        UnknownValue {
            value: value.to_owned(),
            expected: expected.collect::<Vec<_>>().join(", "),
        }
    }
}

named_enum! {
    /// Whether clients may, should or must use TLS (`listen.client_tls`).
    pub enum ClientTls {
        /// Refuse SSLRequest; plaintext only. Needs no certificate.
        #[default]
        Disable => "disable",
        /// Accept TLS if the client asks, but do not prefer it.
        Allow => "allow",
        /// Accept TLS if the client asks (PgBouncer's `prefer`).
        Prefer => "prefer",
        /// Reject clients that do not use TLS.
        Require => "require",
    }
}

named_enum! {
    /// TLS towards the PostgreSQL servers (`pool.server_tls`).
    pub enum ServerTls {
        /// Never use TLS.
        Disable => "disable",
        /// Use TLS when the server offers it, without verifying the certificate.
        #[default]
        Prefer => "prefer",
        /// Insist on TLS, without verifying the certificate.
        Require => "require",
        /// Insist on TLS with a certificate valid for the host name.
        VerifyFull => "verify-full",
    }
}

named_enum! {
    /// How clients prove who they are (`auth.type`).
    pub enum AuthType {
        /// SCRAM-SHA-256 (works with plaintext or SCRAM secrets in the userlist).
        #[default]
        ScramSha256 => "scram-sha-256",
        /// MD5 (works with plaintext or md5 secrets in the userlist).
        Md5 => "md5",
        /// No password; only loopback clients unless `auth.trust_remote = true`.
        Trust => "trust",
    }
}

named_enum! {
    /// When a client gives its server connection back (`pool.mode`, `databases.*.pool_mode`).
    pub enum PoolMode {
        /// At the end of each transaction.
        #[default]
        Transaction => "transaction",
        /// When the client disconnects.
        Session => "session",
    }
}

named_enum! {
    /// What a server of a database entry must be; checked on connect (`databases.*.role`).
    pub enum Role {
        /// Only a primary (not in recovery, not read-only).
        Writer => "writer",
        /// Only a standby / read replica.
        Reader => "reader",
        /// Whatever answers.
        #[default]
        Any => "any",
    }
}

/// `[listen]`: the client-facing side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Postgres-protocol listening address. A reload re-binds (accepted
    /// clients stay).
    pub addr: SocketAddr,
    /// Clients beyond this get a clean FATAL "too many clients". At least 1.
    pub max_client_conn: u32,
    /// TLS towards clients.
    pub client_tls: ClientTls,
    /// PEM certificate chain (absolute, or resolved against the config file's directory).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (absolute, or resolved against the config file's directory).
    pub tls_key: Option<PathBuf>,
    /// `/metrics` and `/health/*`; `None` when `http_addr = ""`. A reload
    /// re-binds (or stops serving, for `""`).
    pub http_addr: Option<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 6432)),
            max_client_conn: 1000,
            client_tls: ClientTls::Disable,
            tls_cert: None,
            tls_key: None,
            http_addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9930))),
        }
    }
}

/// `[auth]`: who may connect and how they prove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The method (TOML key `type`).
    pub auth_type: AuthType,
    /// The PgBouncer-format userlist; `None` only when `file = ""` (allowed with `trust`).
    pub file: Option<PathBuf>,
    /// Users that may use the admin console's commands.
    pub admin_users: Vec<String>,
    /// Users that may use the admin console's read-only SHOW commands.
    pub stats_users: Vec<String>,
    /// Allow `trust` for clients that are not on a loopback address.
    pub trust_remote: bool,
    /// Failed logins from one address within `login_failure_window` before each further
    /// failure is answered late (backoff up to 2 s); 0 turns the login throttle off.
    /// Reloadable.
    pub login_failure_limit: u32,
    /// The window failed logins are counted in, from an address's first failure.
    /// Seconds; reloadable.
    pub login_failure_window: Duration,
    /// Failed logins from one address within the window after which its new connections
    /// are refused (53300) until the window ends; 0 = never refuse. Reloadable.
    pub login_failure_block: u32,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            auth_type: AuthType::ScramSha256,
            file: Some(PathBuf::from("userlist.txt")),
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            trust_remote: false,
            login_failure_limit: 5,
            login_failure_window: Duration::from_secs(60),
            login_failure_block: 50,
        }
    }
}

/// `[pool]`: defaults for every pool, and timeouts. A zero duration means "off" for the
/// timeouts documented so in `config/pool.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Default pool mode.
    pub mode: PoolMode,
    /// Server connections per (database, user) pool. At least 1.
    pub default_pool_size: u32,
    /// Connections kept open and warm per pool.
    pub min_pool_size: u32,
    /// Extra connections allowed after `reserve_pool_timeout` of waiting; 0 = none.
    pub reserve_pool_size: u32,
    /// How long a client waits before the reserve may be used (TOML key `reserve_pool_timeout_ms`).
    pub reserve_pool_timeout: Duration,
    /// Hard cap of server connections per database entry across users; 0 = unlimited.
    pub max_db_connections: u32,
    /// Run when a server connection is released; "" = none.
    pub server_reset_query: String,
    /// Run the reset query after every transaction, not only after ones that changed state.
    pub server_reset_query_always: bool,
    /// Health check for a connection idle longer than `server_check_delay`; "" = none.
    pub server_check_query: String,
    /// Idle time after which a connection is checked before reuse; 0 = always check.
    pub server_check_delay: Duration,
    /// Close server connections idle longer than this; 0 = never.
    pub server_idle_timeout: Duration,
    /// Close server connections older than this when idle. At least 1 s.
    pub server_lifetime: Duration,
    /// Give up connecting (TCP + TLS + auth) to a server after this. At least 1 s.
    pub server_connect_timeout: Duration,
    /// Host names are re-resolved at most this often (0 = at every new
    /// connection). Aurora's DNS TTL is 5 s.
    pub dns_max_ttl: Duration,
    /// TLS towards servers.
    pub server_tls: ServerTls,
    /// PEM bundle of the CA certificates that `server_tls = "verify-full"` trusts (e.g.
    /// Amazon RDS's `global-bundle.pem`); required by verify-full, unused otherwise.
    pub server_tls_ca_file: Option<PathBuf>,
    /// A client waiting this long for a server gets an error; 0 = wait forever.
    pub query_wait_timeout: Duration,
    /// Cancel queries running longer; 0 = off.
    pub query_timeout: Duration,
    /// Disconnect a client idle inside a transaction this long; 0 = off.
    pub idle_transaction_timeout: Duration,
    /// Disconnect a client idle (outside a transaction) this long; 0 = off.
    pub client_idle_timeout: Duration,
    /// A client that has not finished logging in by then is dropped; 0 = off.
    pub client_login_timeout: Duration,
    /// Graceful shutdown waits this long for in-flight transactions; 0 = close at once.
    pub shutdown_timeout: Duration,
    /// Protocol-level prepared statements tracked per server connection; 0 = off.
    pub max_prepared_statements: u32,
}

impl Default for PoolSettings {
    fn default() -> PoolSettings {
        PoolSettings {
            mode: PoolMode::Transaction,
            default_pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_millis(5000),
            max_db_connections: 100,
            server_reset_query: "DISCARD ALL".to_owned(),
            server_reset_query_always: false,
            server_check_query: "SELECT 1".to_owned(),
            server_check_delay: Duration::from_secs(30),
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            server_connect_timeout: Duration::from_secs(5),
            dns_max_ttl: Duration::from_secs(5),
            server_tls: ServerTls::Prefer,
            server_tls_ca_file: None,
            query_wait_timeout: Duration::from_secs(120),
            query_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            client_login_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            max_prepared_statements: 200,
        }
    }
}

/// One server address of a database entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// DNS name or IP address; an IPv6 address is stored without brackets.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
}

impl fmt::Display for HostPort {
    /// `host:port`, with brackets around an IPv6 address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `[databases.<name>]`: a database clients can connect to, and where it really is.
/// The per-entry overrides are `None` when unset; use the `effective_*` helpers.
#[derive(Clone, PartialEq, Eq)]
pub struct Database {
    /// The name clients connect to (the TOML key).
    pub name: String,
    /// Servers to balance across (one for `host`, one or more for `hosts`).
    pub hosts: Vec<HostPort>,
    /// Server-side database name; defaults to `name`.
    pub dbname: String,
    /// What the server must be.
    pub role: Role,
    /// A `reader` entry may use the writer while no reader is up (as Aurora's
    /// reader endpoint does). Default true.
    pub fallback_to_writer: bool,
    /// Overrides `pool.default_pool_size`.
    pub pool_size: Option<u32>,
    /// Overrides `pool.min_pool_size`.
    pub min_pool_size: Option<u32>,
    /// Overrides `pool.max_db_connections` (0 = unlimited).
    pub max_db_connections: Option<u32>,
    /// Overrides `pool.mode`.
    pub pool_mode: Option<PoolMode>,
    /// Log in to the server as this user for every client (PgBouncer's forced user).
    pub user: Option<String>,
    /// Password for `user`; when absent the userlist's entry for `user` is used.
    pub password: Option<String>,
}

impl Database {
    /// Server connections per (this database, user) pool.
    pub fn effective_pool_size(&self, pool: &PoolSettings) -> u32 {
        self.pool_size.unwrap_or(pool.default_pool_size)
    }

    /// Connections kept warm per (this database, user) pool.
    pub fn effective_min_pool_size(&self, pool: &PoolSettings) -> u32 {
        self.min_pool_size.unwrap_or(pool.min_pool_size)
    }

    /// Cap on server connections to this entry across users; 0 = unlimited.
    pub fn effective_max_db_connections(&self, pool: &PoolSettings) -> u32 {
        self.max_db_connections.unwrap_or(pool.max_db_connections)
    }

    /// Transaction or session pooling for this entry.
    pub fn effective_pool_mode(&self, pool: &PoolSettings) -> PoolMode {
        self.pool_mode.unwrap_or(pool.mode)
    }
}

impl fmt::Debug for Database {
    /// Like a derived `Debug`, but the password is redacted so a logged config leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("dbname", &self.dbname)
            .field("role", &self.role)
            .field("pool_size", &self.pool_size)
            .field("min_pool_size", &self.min_pool_size)
            .field("max_db_connections", &self.max_db_connections)
            .field("pool_mode", &self.pool_mode)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
