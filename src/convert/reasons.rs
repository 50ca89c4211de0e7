//! Why each PgBouncer setting without a pool.toml equivalent is left out, and what to
//! do instead. Keys missing here get a generic reason.

/// Looks up the reason a `[pgbouncer]` setting is not carried over.
pub(super) fn why_not(key: &str) -> &'static str {
    REASONS
        .iter()
        .find(|(keys, _)| keys.contains(&key))
        .map(|(_, why)| *why)
        .unwrap_or("not a setting pgpool-rs knows")
}

const LOGGING: &str = "pgpool-rs logs to stderr (JSON with PGPOOL_LOG_FORMAT=json, level from \
                       RUST_LOG); let the service manager collect it";
const UNIX_SOCKET: &str = "pgpool-rs listens on TCP only (listen.addr)";
const TLS_TUNING: &str = "no pool.toml setting: pgpool-rs uses its TLS library's protocol \
                          versions and ciphers";
const TCP_TUNING: &str = "no pool.toml setting: pgpool-rs sets TCP_NODELAY and keepalive \
                          (60 s idle, 10 s interval, 6 probes) on every socket";
const BUFFERS: &str = "no pool.toml setting: buffers are sized per message (messages are \
                       capped at 1 GiB)";
const DNS: &str = "no pool.toml setting: pgpool-rs re-resolves host names for new server \
                   connections through the system resolver";
const AUTH_QUERY: &str = "pgpool-rs has no auth_query: list every user (with password or \
                          SCRAM secret) in auth.file";
const NO_AUTODB: &str = "pgpool-rs has no \"*\" fallback database: add a [databases.<name>] \
                         entry per database";
const PER_USER_LIMITS: &str = "no per-user or per-database client limits in pgpool-rs; \
                               listen.max_client_conn caps all clients";

const REASONS: &[(&[&str], &str)] = &[
    (
        &[
            "logfile",
            "syslog",
            "syslog_ident",
            "syslog_facility",
            "log_connections",
            "log_disconnections",
            "log_pooler_errors",
            "log_stats",
            "verbose",
        ],
        LOGGING,
    ),
    (
        &["pidfile"],
        "pgpool-rs does not daemonize; run it under systemd, a container runtime or similar",
    ),
    (
        &["user"],
        "pgpool-rs does not switch users; start it as the user it should run as",
    ),
    (
        &["unix_socket_dir", "unix_socket_mode", "unix_socket_group"],
        UNIX_SOCKET,
    ),
    (
        &["stats_period"],
        "statistics are computed when read (SHOW STATS, /metrics); nothing to configure",
    ),
    (
        &["ignore_startup_parameters", "track_extra_parameters"],
        "not needed: pgpool-rs accepts every startup parameter and keeps each client's \
         parameters in force on whichever server connection serves it",
    ),
    (&["auth_user", "auth_query", "auth_dbname"], AUTH_QUERY),
    (
        &["auth_hba_file", "auth_ident_file", "auth_ldap_options"],
        "pgpool-rs has no HBA, ident or LDAP authentication; auth.type applies to every client",
    ),
    (
        &[
            "client_tls_ca_file",
            "server_tls_cert_file",
            "server_tls_key_file",
        ],
        "no pool.toml setting for client CA or client-certificate files",
    ),
    (
        &[
            "client_tls_protocols",
            "client_tls_ciphers",
            "client_tls13_ciphers",
            "client_tls_ecdhcurve",
            "client_tls_dheparams",
            "server_tls_protocols",
            "server_tls_ciphers",
            "server_tls13_ciphers",
        ],
        TLS_TUNING,
    ),
    (
        &["server_round_robin"],
        "no pool.toml setting: idle server connections are reused most-recent-first, and an \
         entry with several hosts balances new connections by least connections",
    ),
    (
        &["server_fast_close"],
        "no pool.toml setting; in transaction mode a server connection goes back to the \
         pool after every transaction anyway",
    ),
    (
        &["server_login_retry"],
        "no pool.toml setting: pgpool-rs opens a server connection whenever a waiting client \
         needs one; the wait is bounded by query_wait_timeout",
    ),
    (&["autodb_idle_timeout"], NO_AUTODB),
    (
        &["pool_idle_timeout"],
        "no pool.toml setting: empty pools cost nothing worth freeing",
    ),
    (
        &[
            "dns_max_ttl",
            "dns_nxdomain_ttl",
            "dns_zone_check_period",
            "resolv_conf",
        ],
        DNS,
    ),
    (
        &["query_wait_notify", "login_notify_message"],
        "pgpool-rs sends no such notices",
    ),
    (
        &["cancel_wait_timeout"],
        "no pool.toml setting: a cancel request is forwarded to the server straight away",
    ),
    (
        &["transaction_timeout"],
        "no pool.toml setting; query_timeout and idle_transaction_timeout are available, \
         or set PostgreSQL's own transaction_timeout (17+)",
    ),
    (
        &["suspend_timeout"],
        "pgpool-rs has no SUSPEND or online restart (-R); a graceful stop waits up to \
         pool.shutdown_timeout",
    ),
    (
        &[
            "tcp_defer_accept",
            "tcp_socket_buffer",
            "tcp_keepalive",
            "tcp_keepcnt",
            "tcp_keepidle",
            "tcp_keepintvl",
            "tcp_user_timeout",
            "listen_backlog",
        ],
        TCP_TUNING,
    ),
    (&["pkt_buf", "max_packet_size", "sbuf_loopcnt"], BUFFERS),
    (
        &["so_reuseport", "peer_id"],
        "pgpool-rs is one process (PGPOOL_WORKERS=N runs N threads), so there is nothing to \
         share a port or peer with",
    ),
    (
        &["disable_pqexec"],
        "no pool.toml setting: the simple query protocol is always allowed",
    ),
    (
        &["application_name_add_host"],
        "no pool.toml setting: application_name is passed through as the client set it",
    ),
    (
        &["conffile", "service_name", "job_name"],
        "not applicable: the config file is given with --config",
    ),
    (
        &[
            "max_db_client_connections",
            "max_user_connections",
            "max_user_client_connections",
        ],
        PER_USER_LIMITS,
    ),
    (
        &["scram_iterations"],
        "no pool.toml setting: SCRAM secrets in the userlist carry their own iteration count",
    ),
];
