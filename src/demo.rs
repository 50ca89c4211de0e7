//! `pgpool-rs demo`: a working pooler in one command, for a first look.
//!
//! Starts a throwaway PostgreSQL cluster ([`crate::localpg`]), creates the role and
//! database `demo` with a random SCRAM password, writes a `pool.toml` and `userlist.txt`
//! into a temporary directory, runs this same executable with `--config` as a child
//! process, prints how to connect, and on Ctrl-C or SIGTERM stops everything and deletes
//! the temporary files.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::localpg::{self, LocalPgError, LocalPgOptions, LocalPostgres, PasswordMethod};

/// Command-line options of `pgpool-rs demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Client port of the pooler on 127.0.0.1 (default: 6432 if free, else any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Server connections per (database, user) pool.
    #[arg(long, default_value_t = 5)]
    pub pool_size: u32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            port: None,
            pool_size: 5,
        }
    }
}

/// Why the demo could not start, or ended other than by Ctrl-C / SIGTERM.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The local PostgreSQL cluster could not be set up.
    #[error("local PostgreSQL: {0}")]
    LocalPg(#[from] LocalPgError),
    /// A file, process or signal operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A blocking setup step panicked or was cancelled.
    #[error("demo setup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// `--port` names a port something else already listens on.
    #[error("port {port} on 127.0.0.1 is already in use; pick another with --port")]
    PortInUse {
        /// The requested port.
        port: u16,
    },
    /// The pooler did not start listening in time.
    #[error("the pooler did not accept connections on 127.0.0.1:{port} within {secs} s")]
    PoolerNotListening {
        /// Its client port.
        port: u16,
        /// How long we waited.
        secs: u64,
    },
    /// The pooler process ended by itself (its log is on our stderr).
    #[error("the pooler exited unexpectedly ({status}); see its log above")]
    PoolerExited {
        /// How it exited.
        status: ExitStatus,
    },
}

/// How long the pooler may take to start accepting connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the pooler gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the demo until Ctrl-C or SIGTERM (then returns `Ok`) or until the pooler dies.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let exe = std::env::current_exe().map_err(|source| DemoError::Io {
        action: "finding the pgpool-rs executable",
        source,
    })?;
    run_with_executable(opts, &exe).await
}

/// [`run`] with an explicit pooler executable (started as `<exe> --config <pool.toml>`).
pub async fn run_with_executable(opts: DemoOptions, exe: &Path) -> Result<(), DemoError> {
    let io = |action| move |source| DemoError::Io { action, source };
    // Installed first, so a signal during setup is not lost (and does not kill us midway).
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("installing signal handlers"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("installing signal handlers"))?;

    let port = pick_pooler_port(opts.port)?;
    let http_port = localpg::free_port().map_err(io("finding a free port"))?;
    let password = random_password();

    let pw = password.clone();
    let pg = tokio::task::spawn_blocking(move || -> Result<LocalPostgres, LocalPgError> {
        let pg = LocalPostgres::start(LocalPgOptions::demo())?;
        pg.create_user("demo", Some(&pw), PasswordMethod::Scram)?;
        pg.create_database("demo", "demo")?;
        Ok(pg)
    })
    .await??;

    let config_dir = tempfile::Builder::new()
        .prefix("pgpool-rs-demo-")
        .tempdir()
        .map_err(io("creating a temporary directory"))?;
    let config_path = write_config(config_dir.path(), &opts, port, http_port, &pg, &password)
        .map_err(io("writing the demo configuration"))?;

    let mut pooler = Command::new(exe)
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting the pooler"))?;

    let outcome = match wait_until_listening(&mut pooler, port).await {
        Ok(()) => {
            print_banner(&opts, port, http_port, &pg, &password, &config_path);
            tokio::select! {
                _ = sigint.recv() => Ok(()),
                _ = sigterm.recv() => Ok(()),
                status = pooler.wait() => match status {
                    Ok(status) => Err(DemoError::PoolerExited { status }),
                    Err(source) => Err(DemoError::Io { action: "waiting for the pooler", source }),
                },
            }
        }
        Err(err) => Err(err),
    };

    eprintln!("pgpool-rs demo: stopping");
    stop_pooler(&mut pooler).await;
    // Stopping PostgreSQL blocks (pg_ctl); the drop also deletes its directory.
    tokio::task::spawn_blocking(move || drop(pg)).await?;
    drop(config_dir);
    outcome
}

/// The requested port if it is free, else 6432 if free, else any free port.
fn pick_pooler_port(requested: Option<u16>) -> Result<u16, DemoError> {
    let is_free = |port: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
    match requested {
        Some(port) if is_free(port) => Ok(port),
        Some(port) => Err(DemoError::PortInUse { port }),
        None if is_free(6432) => Ok(6432),
        None => localpg::free_port().map_err(|source| DemoError::Io {
            action: "finding a free port",
            source,
        }),
    }
}

fn random_password() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Writes `userlist.txt` and `pool.toml`; returns the config's path.
fn write_config(
    dir: &Path,
    opts: &DemoOptions,
    port: u16,
    http_port: u16,
    pg: &LocalPostgres,
    password: &str,
) -> std::io::Result<PathBuf> {
    let userlist = dir.join("userlist.txt");
    std::fs::write(&userlist, format!("\"demo\" \"{password}\"\n"))?;
    let config = format!(
        r#"# Written by `pgpool-rs demo`; deleted when the demo stops.
[listen]
addr = "127.0.0.1:{port}"
max_client_conn = 1000
client_tls = "disable"
http_addr = "127.0.0.1:{http_port}"

[auth]
type = "scram-sha-256"
file = {userlist}
admin_users = ["demo"]

[pool]
mode = "transaction"
default_pool_size = {pool_size}
server_tls = "disable"
shutdown_timeout = 5

[databases.demo]
host = "{pg_host}"
port = {pg_port}
dbname = "demo"
"#,
        userlist = toml_string(&userlist),
        pool_size = opts.pool_size,
        pg_host = pg.host(),
        pg_port = pg.port(),
    );
    let path = dir.join("pool.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A path as a TOML basic string (quotes and backslashes escaped).
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Polls the pooler's port until it accepts, failing early if the process exits.
async fn wait_until_listening(pooler: &mut Child, port: u16) -> Result<(), DemoError> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    loop {
        match pooler.try_wait() {
            Ok(Some(status)) => return Err(DemoError::PoolerExited { status }),
            Ok(None) => {}
            Err(source) => {
                return Err(DemoError::Io {
                    action: "checking on the pooler",
                    source,
                });
            }
        }
        if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::PoolerNotListening {
                port,
                secs: LISTEN_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM (graceful shutdown), then SIGKILL after [`STOP_GRACE`].
async fn stop_pooler(pooler: &mut Child) {
    if let Ok(Some(_)) = pooler.try_wait() {
        return;
    }
    if let Some(pid) = pooler.id() {
        let _ = localpg::send_signal(pid, "TERM");
    }
    if tokio::time::timeout(STOP_GRACE, pooler.wait())
        .await
        .is_err()
    {
        let _ = pooler.kill().await;
    }
}

fn print_banner(
    opts: &DemoOptions,
    port: u16,
    http_port: u16,
    pg: &LocalPostgres,
    password: &str,
    config_path: &Path,
) {
    let admin = localpg::conn_uri("127.0.0.1", port, "pgbouncer", "demo", password);
    let url = localpg::conn_uri("127.0.0.1", port, "demo", "demo", password);
    let pg_port = pg.port();
    println!(
        r#"
pgpool-rs demo is running (transaction mode, pool size {pool_size}).

  Connect:     psql "{url}"
  Benchmark:   PGPASSWORD={password} pgbench -i -h 127.0.0.1 -p {pg_port} -U demo demo   # once, direct
               PGPASSWORD={password} pgbench -c 50 -j 2 -T 10 -S -h 127.0.0.1 -p {port} -U demo demo
  Admin:       psql "{admin}" -c "SHOW POOLS"
  Health:      curl http://127.0.0.1:{http_port}/health/ready ; curl http://127.0.0.1:{http_port}/metrics
  Config:      {config}
  PostgreSQL:  127.0.0.1:{pg_port}, data in {data} (deleted on exit)

Press Ctrl-C to stop.
"#,
        pool_size = opts.pool_size,
        config = config_path.display(),
        data = pg.base_dir().display(),
    );
}
