//! [`Pooler`]: the pooler binary under test, started on its own port with a config built
//! by [`PoolerBuilder`], logging into its own temporary directory, killed on drop.

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use pgpool_rs::localpg::{self, LocalPostgres};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use super::pgbouncer;

/// The pooler program the tests run.
const PGPOOL_BIN: &str = env!("CARGO_BIN_EXE_pgpool-rs");
/// How long `start()` waits for the port to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooler still running after this long is killed, so a hung pooler fails its test
/// (clients see EOF) instead of hanging the suite.
const LIFETIME_LIMIT: Duration = Duration::from_secs(240);

/// Which pooler runs: ours, or PgBouncer when `PGPOOL_TEST_POOLER=pgbouncer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolerKind {
    /// The pgpool-rs binary of this package.
    PgPool,
    /// PgBouncer from PATH, with a pgbouncer.ini translated from the pool.toml.
    PgBouncer,
}

impl PoolerKind {
    /// From `PGPOOL_TEST_POOLER` (unset = pgpool-rs).
    pub fn from_env() -> PoolerKind {
        match std::env::var("PGPOOL_TEST_POOLER").as_deref() {
            Ok("pgbouncer") => PoolerKind::PgBouncer,
            _ => PoolerKind::PgPool,
        }
    }

    /// True when PgBouncer stands in for pgpool-rs (tests of our own extensions skip).
    pub fn is_pgbouncer() -> bool {
        PoolerKind::from_env() == PoolerKind::PgBouncer
    }
}

/// A pool.toml under construction: SPEC defaults for a test, any key overridable.
#[derive(Debug, Clone)]
pub struct PoolerBuilder {
    config: toml::Table,
    userlist: Vec<String>,
    env: Vec<(String, String)>,
    own_addr: bool,
    own_http: bool,
    own_auth_file: bool,
    kind: Option<PoolerKind>,
}

impl PoolerBuilder {
    /// Transaction mode, SCRAM client auth with a plaintext userlist of all test users,
    /// server TLS off, databases `app` and `bench` of `pg`.
    pub fn new(pg: &LocalPostgres) -> PoolerBuilder {
        let text = format!(
            r#"
[listen]
max_client_conn = 1000
client_tls = "disable"

[auth]
type = "scram-sha-256"

[pool]
mode = "transaction"
default_pool_size = 20
server_tls = "disable"
shutdown_timeout = 2

[databases.app]
host = "127.0.0.1"
port = {port}
dbname = "app"

[databases.bench]
host = "127.0.0.1"
port = {port}
dbname = "bench"
"#,
            port = pg.port()
        );
        let config = toml::from_str(&text).expect("default test config parses");
        let userlist = super::USERS
            .iter()
            .map(|(user, _, _)| format!("\"{user}\" \"{}\"", super::password_of(user)))
            .collect();
        PoolerBuilder {
            config,
            userlist,
            env: Vec::new(),
            own_addr: false,
            own_http: false,
            own_auth_file: false,
            kind: None,
        }
    }

    /// Runs this pooler whatever `PGPOOL_TEST_POOLER` says (e.g. PgBouncer as a reference).
    pub fn kind(mut self, kind: PoolerKind) -> PoolerBuilder {
        self.kind = Some(kind);
        self
    }

    /// Sets a dotted key (`"pool.default_pool_size"`, `"databases.app.pool_size"`) to a
    /// TOML literal (`"5"`, `"\"session\""`, `"[\"a\"]"`), creating tables on the way.
    pub fn set(mut self, key: &str, raw_value: &str) -> PoolerBuilder {
        let value: toml::Table = toml::from_str(&format!("v = {raw_value}"))
            .unwrap_or_else(|e| panic!("not a TOML value for {key}: {raw_value}: {e}"));
        let value = value["v"].clone();
        match key {
            "listen.addr" => self.own_addr = true,
            "listen.http_addr" => self.own_http = true,
            "auth.file" => self.own_auth_file = true,
            _ => {}
        }
        let (table, last) = self.table_for(key);
        table.insert(last.to_string(), value);
        self
    }

    /// Removes a dotted key (back to the pooler's built-in default).
    pub fn remove(mut self, key: &str) -> PoolerBuilder {
        let (table, last) = self.table_for(key);
        table.remove(last);
        self
    }

    /// The table that holds a dotted key, created on the way, and the key's last part.
    fn table_for<'k>(&mut self, key: &'k str) -> (&mut toml::Table, &'k str) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("non-empty key");
        let mut table = &mut self.config;
        for part in parts {
            table = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{part} in {key} is not a table"));
        }
        (table, last)
    }

    /// Adds a database entry `name` -> database `dbname` on `pg`.
    pub fn database(self, name: &str, pg: &LocalPostgres, dbname: &str) -> PoolerBuilder {
        let prefix = format!("databases.{name}");
        self.set(&format!("{prefix}.host"), "\"127.0.0.1\"")
            .set(&format!("{prefix}.port"), &pg.port().to_string())
            .set(&format!("{prefix}.dbname"), &format!("\"{dbname}\""))
    }

    /// Appends a raw line to userlist.txt (a later line for the same user wins in
    /// PgBouncer; prefer [`PoolerBuilder::userlist`] to replace).
    pub fn userlist_line(mut self, line: &str) -> PoolerBuilder {
        self.userlist.push(line.to_string());
        self
    }

    /// Replaces userlist.txt with these lines.
    pub fn userlist(mut self, lines: &[&str]) -> PoolerBuilder {
        self.userlist = lines.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Sets an environment variable of the pooler process.
    pub fn env(mut self, key: &str, value: &str) -> PoolerBuilder {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The config as it would be written for the given ports and directory.
    pub fn config_text(&self, port: u16, http_port: u16, dir: &Path) -> String {
        let mut b = self.clone();
        if !b.own_addr {
            b = b.set("listen.addr", &format!("\"127.0.0.1:{port}\""));
        }
        if !b.own_http {
            b = b.set("listen.http_addr", &format!("\"127.0.0.1:{http_port}\""));
        }
        if !b.own_auth_file {
            let file = toml::Value::String(dir.join("userlist.txt").display().to_string());
            b = b.set("auth.file", &file.to_string());
        }
        toml::to_string(&b.config).expect("serialize config")
    }

    /// Writes pool.toml and userlist.txt into `dir` (for a pooler on `port` and
    /// `http_port`); returns the pool.toml path and text.
    pub fn write_files(&self, port: u16, http_port: u16, dir: &Path) -> (PathBuf, String) {
        let text = self.config_text(port, http_port, dir);
        let config_path = dir.join("pool.toml");
        std::fs::write(&config_path, &text).expect("write pool.toml");
        std::fs::write(dir.join("userlist.txt"), self.userlist.join("\n") + "\n")
            .expect("write userlist.txt");
        (config_path, text)
    }

    /// Starts the pooler and waits until its port accepts TCP (panics with the log if not).
    pub fn start(self) -> Pooler {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = localpg::free_port().expect("free port");
            let http_port = localpg::free_port().expect("free port");
            let mut pooler = self.spawn(port, http_port);
            match pooler.wait_listening() {
                Ok(()) => return pooler,
                Err(log) if log.to_lowercase().contains("in use") => last_log = log,
                Err(log) => panic!("pooler did not start listening on {port}; log:\n{log}"),
            }
        }
        panic!("pooler could not bind a port; log:\n{last_log}");
    }

    fn spawn(&self, port: u16, http_port: u16) -> Pooler {
        let dir = tempfile::Builder::new()
            .prefix("pgpool-rs-test-")
            .tempdir()
            .expect("temp dir");
        let kind = self.kind.unwrap_or_else(PoolerKind::from_env);
        let (config_path, text) = self.write_files(port, http_port, dir.path());
        let log_path = dir.path().join("pooler.log");
        let log = File::create(&log_path).expect("create log");
        let mut cmd = match kind {
            PoolerKind::PgPool => {
                let mut cmd = Command::new(PGPOOL_BIN);
                cmd.arg("--config").arg(&config_path);
                cmd
            }
            PoolerKind::PgBouncer => pgbouncer_command(dir.path(), &text),
        };
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // The log is a file: no colour codes in it.
        cmd.env("NO_COLOR", "1");
        cmd.env_remove("PGPOOL_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn the pooler");
        let (alive, watch) = std::sync::mpsc::channel::<()>();
        let pid = child.id();
        std::thread::spawn(move || {
            // Disconnected (the Pooler was dropped and reaped its child) = nothing to do.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                watch.recv_timeout(LIFETIME_LIMIT)
            {
                eprintln!("pooler {pid} still running after {LIFETIME_LIMIT:?}: killing it");
                let _ = localpg::send_signal(pid, "KILL");
            }
        });
        Pooler {
            _alive: alive,
            child: Some(child),
            port,
            http_port,
            log_path,
            config_path,
            kind,
            dir,
        }
    }
}

/// pgbouncer.ini next to pool.toml; as root, PgBouncer must switch to `postgres` (`-u`).
fn pgbouncer_command(dir: &Path, pool_toml: &str) -> Command {
    let table: toml::Table = toml::from_str(pool_toml).expect("pool.toml parses");
    let ini_path = dir.join("pgbouncer.ini");
    std::fs::write(&ini_path, pgbouncer::ini_from_pool_toml(&table, dir)).expect("write ini");
    let mut cmd = Command::new("pgbouncer");
    if std::fs::metadata(dir)
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
    {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown the pgbouncer dir");
        cmd.args(["-u", "postgres"]);
    }
    cmd.arg(&ini_path);
    cmd
}

/// A running pooler; killed (SIGKILL) on drop, printing its log if the test panicked.
#[derive(Debug)]
pub struct Pooler {
    /// Dropped with the Pooler, which tells the lifetime-limit thread to stand down.
    _alive: std::sync::mpsc::Sender<()>,
    child: Option<Child>,
    port: u16,
    http_port: u16,
    log_path: PathBuf,
    config_path: PathBuf,
    kind: PoolerKind,
    dir: TempDir,
}

impl Pooler {
    /// A pooler with the default test config for `pg`.
    pub fn start(pg: &LocalPostgres) -> Pooler {
        PoolerBuilder::new(pg).start()
    }

    /// A builder with the default test config for `pg`.
    pub fn builder(pg: &LocalPostgres) -> PoolerBuilder {
        PoolerBuilder::new(pg)
    }

    /// The client port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP port (127.0.0.1), unless the test set `listen.http_addr` itself.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Which pooler this is.
    pub fn kind(&self) -> PoolerKind {
        self.kind
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("pooler running")
    }

    /// The temporary directory (config, userlist, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the pooler was started with (rewrite it + SIGHUP to reload).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the pooler logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Sends a signal by name: "HUP", "TERM", "INT", "KILL".
    pub fn send_signal(&self, signal: &str) {
        localpg::send_signal(self.pid(), signal).expect("send signal");
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A libpq URI through the pooler.
    pub fn conn_str(&self, db: &str, user: &str, password: &str) -> String {
        localpg::conn_uri("127.0.0.1", self.port, db, user, password)
    }

    /// A tokio-postgres config through the pooler (add options, application_name, ...).
    pub fn config(&self, db: &str, user: &str, password: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        cfg
    }

    /// Connects (NoTls) and spawns the connection task; panics with the log on failure.
    pub async fn connect(&self, db: &str, user: &str, password: &str) -> Client {
        match self.try_connect(db, user, password).await {
            Ok(client) => client,
            Err(e) => panic!(
                "connect to {db} as {user} through the pooler: {e}\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// `connect("app", "app", "app-pass")`.
    pub async fn connect_app(&self) -> Client {
        self.connect("app", "app", super::password_of("app")).await
    }

    /// Connects, returning the error instead of panicking.
    pub async fn try_connect(
        &self,
        db: &str,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        connect_with(&self.config(db, user, password)).await
    }

    /// Runs `--check` on a config text; returns (exit code, stdout + stderr).
    /// The text is written to `<tmp>/pool.toml` next to a `<tmp>/userlist.txt`;
    /// `{dir}` in the text is replaced by `<tmp>`.
    pub fn check(config_text: &str) -> (i32, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pool.toml");
        let text = config_text.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&path, text).expect("write config");
        std::fs::write(dir.path().join("userlist.txt"), "\"app\" \"app-pass\"\n")
            .expect("write userlist");
        let out = Command::new(PGPOOL_BIN)
            .arg("--config")
            .arg(&path)
            .arg("--check")
            .env_remove("PGPOOL_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run --check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// Polls the port until it accepts; `Err(log)` if the process exits or time runs out.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            // A pooler that could not bind exits: checking that ours is still alive after
            // the port accepts keeps us from mistaking someone else's listener for it.
            if self.has_exited() {
                return Err(self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                std::thread::sleep(Duration::from_millis(20));
                if !self.has_exited() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "(not listening after {START_TIMEOUT:?})\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// True if the process has exited.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }
}

/// Connects with a config (NoTls) and spawns the connection task.
pub async fn connect_with(cfg: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

impl Drop for Pooler {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- pooler log ({}), last 80 lines ----\n{}\n---- end of pooler log ----",
                self.log_path.display(),
                self.log_tail(80)
            );
        }
    }
}
