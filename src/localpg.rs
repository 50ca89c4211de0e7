//! A throwaway local PostgreSQL cluster, for `pgpool-rs demo` and the integration tests.
//!
//! [`LocalPostgres::start`] runs `initdb` into a fresh temporary directory, starts a
//! postmaster on a free port of 127.0.0.1 with durability switched off (fast, not for
//! real data) and a `pg_hba.conf` of our choosing. Dropping the value stops the server and
//! deletes the directory; a watchdog process does the same if this process dies first
//! (including clusters kept in a `static`, which Rust never drops).

mod process;
mod replica;
mod text;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use process::{find_bin_dir, spawn_watchdog, RunAs};
pub use process::{free_port, send_signal};
pub use text::{conn_uri, quote_ident, quote_literal};

/// What can go wrong while creating, starting or talking to a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No directory with `initdb`, `postgres` and `pg_ctl` was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found: install PostgreSQL \
         (e.g. apt-get install postgresql) or set PG_BIN"
    )]
    BinariesNotFound,
    /// We are root, and PostgreSQL refuses to run as root, but there is no `postgres` user.
    #[error("running as root, but there is no `postgres` OS user to run PostgreSQL as")]
    NoPostgresUser,
    /// A file-system or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A helper program (`initdb`, `psql`, `pg_ctl`) exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        /// The program's name.
        program: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stderr (or stdout when stderr was empty).
        stderr: String,
    },
    /// The postmaster exited, or did not become ready in time; the server log's tail.
    #[error("PostgreSQL did not start on port {port}: {log_tail}")]
    StartFailed {
        /// The port it was told to listen on.
        port: u16,
        /// The last lines of the server log.
        log_tail: String,
    },
}

/// How a role's password is stored in `pg_authid` (sets `password_encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMethod {
    /// A `SCRAM-SHA-256$...` secret.
    Scram,
    /// An `md5...` hash (what `md5` hba lines need for md5 auth on the wire).
    Md5,
}

/// Settings for [`LocalPostgres::start`].
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// `max_connections` of the server.
    pub max_connections: u32,
    /// The lines of `pg_hba.conf`, in order.
    pub hba_lines: Vec<String>,
    /// Extra `postgresql.conf` settings, as `(name, value)` with the value already quoted
    /// where PostgreSQL needs it.
    pub settings: Vec<(String, String)>,
}

impl LocalPgOptions {
    /// For `pgpool-rs demo`: the superuser by trust, everyone else by SCRAM.
    pub fn demo() -> LocalPgOptions {
        LocalPgOptions {
            max_connections: 200,
            hba_lines: vec![
                "local all all trust".into(),
                "host all postgres 127.0.0.1/32 trust".into(),
                "host all all 127.0.0.1/32 scram-sha-256".into(),
            ],
            settings: Vec::new(),
        }
    }

    /// For the integration tests: one user per server-side auth method (`trust_user`,
    /// `md5_user`, `plain_user` = cleartext `password`), SCRAM for everyone else.
    pub fn for_tests() -> LocalPgOptions {
        LocalPgOptions {
            hba_lines: vec![
                "local all all trust".into(),
                "host all postgres 127.0.0.1/32 trust".into(),
                "host replication postgres 127.0.0.1/32 trust".into(),
                "host all trust_user 127.0.0.1/32 trust".into(),
                "host all md5_user 127.0.0.1/32 md5".into(),
                "host all plain_user 127.0.0.1/32 password".into(),
                "host all all 127.0.0.1/32 scram-sha-256".into(),
            ],
            ..LocalPgOptions::demo()
        }
    }
}

impl Default for LocalPgOptions {
    fn default() -> Self {
        LocalPgOptions::demo()
    }
}

/// A running throwaway cluster. Drop stops it and deletes its files.
#[derive(Debug)]
pub struct LocalPostgres {
    bin_dir: PathBuf,
    run_as: RunAs,
    port: u16,
    postmaster: Option<Child>,
    watchdog: Option<Child>,
    // Declared last: dropped after `drop()` has stopped the server.
    dir: TempDir,
}

/// How long a postmaster may take to report "ready".
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting on a fresh port when the chosen one was taken meanwhile.
const START_ATTEMPTS: usize = 5;

impl LocalPostgres {
    /// Creates and starts a cluster (about half a second).
    pub fn start(opts: LocalPgOptions) -> Result<LocalPostgres, LocalPgError> {
        let mut pg = LocalPostgres::empty("pgpool-rs-pg-", find_bin_dir()?)?;
        pg.initdb(&opts)?;
        pg.start_on_a_free_port()?;
        Ok(pg)
    }

    /// A not yet initialised cluster in a fresh temporary directory owned by
    /// the user the server runs as, with its watchdog started.
    fn empty(prefix: &str, bin_dir: PathBuf) -> Result<LocalPostgres, LocalPgError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|source| LocalPgError::Io {
                action: "creating a temporary directory",
                source,
            })?;
        let run_as = RunAs::for_dir_we_created(dir.path())?;
        run_as.chown(dir.path())?;
        let mut pg = LocalPostgres {
            bin_dir,
            run_as,
            port: 0,
            postmaster: None,
            watchdog: None,
            dir,
        };
        pg.watchdog = Some(spawn_watchdog(pg.dir.path(), &pg.data_dir())?);
        Ok(pg)
    }

    /// Starts the postmaster on a free port, trying again on another one if
    /// the port was taken meanwhile.
    fn start_on_a_free_port(&mut self) -> Result<(), LocalPgError> {
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            self.port = free_port().map_err(|source| LocalPgError::Io {
                action: "finding a free port",
                source,
            })?;
            match self.start_postmaster() {
                Ok(()) => return Ok(()),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or(LocalPgError::StartFailed {
            port: self.port,
            log_tail: String::new(),
        }))
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host to connect to: always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory holding everything (data dir, socket, server log).
    pub fn base_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log file (the postmaster's stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The path of a PostgreSQL program of the same installation (`psql`, `pgbench`, ...).
    pub fn bin(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// The process id of the running postmaster, if any.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// A libpq URI for `user` on `db`.
    pub fn conn_string(&self, db: &str, user: &str, password: &str) -> String {
        conn_uri(self.host(), self.port, db, user, password)
    }

    /// Runs SQL as the superuser `postgres` through `psql -X -A -t -v ON_ERROR_STOP=1` over
    /// TCP and returns its stdout without the trailing newline.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, LocalPgError> {
        let mut cmd = std::process::Command::new(self.bin("psql"));
        process::scrub_libpq_env(&mut cmd);
        let out = cmd
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.host())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| LocalPgError::Io {
                action: "running psql",
                source,
            })?;
        check_output("psql", &out)?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.trim_end_matches('\n').to_string())
    }

    /// Creates a login role; the password (if any) is stored as `method` says.
    pub fn create_user(
        &self,
        name: &str,
        password: Option<&str>,
        method: PasswordMethod,
    ) -> Result<(), LocalPgError> {
        let encryption = match method {
            PasswordMethod::Scram => "scram-sha-256",
            PasswordMethod::Md5 => "md5",
        };
        let password = match password {
            Some(pw) => format!(" PASSWORD {}", quote_literal(pw)),
            None => String::new(),
        };
        let sql = format!(
            "SET password_encryption = '{encryption}'; CREATE ROLE {} LOGIN{password}",
            quote_ident(name)
        );
        self.psql("postgres", &sql).map(drop)
    }

    /// Creates a database owned by `owner`.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), LocalPgError> {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        self.psql("postgres", &sql).map(drop)
    }

    /// The stored secret of a role (`SCRAM-SHA-256$...` or `md5...`), from `pg_authid`.
    pub fn scram_secret(&self, user: &str) -> Result<String, LocalPgError> {
        let sql = format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(user)
        );
        self.psql("postgres", &sql)
    }

    /// Stops the server (fast shutdown: clients are disconnected, data is kept).
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        self.stop_with("fast")
    }

    /// `pg_ctl stop -m <mode>`; falls back to SIGKILL if pg_ctl fails.
    fn stop_with(&mut self, mode: &str) -> Result<(), LocalPgError> {
        let Some(mut child) = self.postmaster.take() else {
            return Ok(());
        };
        let stopped = self
            .run_as
            .command(&self.bin("pg_ctl"), self.dir.path())
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", mode, "-w", "-t", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(stopped, Ok(s) if s.success()) {
            // pg_ctl could not do it: the postmaster's backends exit on their own once
            // the postmaster is gone.
            let _ = child.kill();
        }
        child.wait().map_err(|source| LocalPgError::Io {
            action: "waiting for the postmaster to exit",
            source,
        })?;
        Ok(())
    }

    /// Starts the server again on the same port after [`LocalPostgres::stop`].
    pub fn restart(&mut self) -> Result<(), LocalPgError> {
        self.stop()?;
        self.start_postmaster()
    }

    fn initdb(&self, opts: &LocalPgOptions) -> Result<(), LocalPgError> {
        let out = self
            .run_as
            .command(&self.bin("initdb"), self.dir.path())
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C")
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| LocalPgError::Io {
                action: "running initdb",
                source,
            })?;
        check_output("initdb", &out)?;
        let hba = opts.hba_lines.join("\n") + "\n";
        self.write_data_file("pg_hba.conf", &hba, false)?;
        // shared_buffers needs 2 buffers per connection; 16MB covers 1000 connections.
        let buffers = (2 * u64::from(opts.max_connections) + 64).max(2048);
        let mut conf = format!(
            "\n# pgpool-rs localpg\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = {}\nshared_buffers = {buffers}\n\
             logging_collector = off\nmax_wal_size = '1GB'\n",
            self.dir.path().display(),
            opts.max_connections,
        );
        for (name, value) in &opts.settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        self.write_data_file("postgresql.conf", &conf, true)
    }

    fn write_data_file(&self, name: &str, text: &str, append: bool) -> Result<(), LocalPgError> {
        let io_err = |source| LocalPgError::Io {
            action: "writing the cluster's configuration",
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .append(append)
            .truncate(!append)
            .open(self.data_dir().join(name))
            .map_err(io_err)?;
        file.write_all(text.as_bytes()).map_err(io_err)
    }

    /// Runs `postgres -D data -p port` directly (not via pg_ctl) so that we hold the child,
    /// in its own process group (a Ctrl-C at the terminal does not shut it down under us),
    /// and waits until `postmaster.pid` says "ready".
    fn start_postmaster(&mut self) -> Result<(), LocalPgError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|source| LocalPgError::Io {
                action: "opening the server log",
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| LocalPgError::Io {
            action: "opening the server log",
            source,
        })?;
        let log_start = file_len(&log);
        let mut cmd = self.run_as.command(&self.bin("postgres"), self.dir.path());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|source| LocalPgError::Io {
                action: "starting postgres",
                source,
            })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if !exited && self.postmaster_ready(child.id()) {
                self.postmaster = Some(child);
                return Ok(());
            }
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LocalPgError::StartFailed {
                    port: self.port,
                    log_tail: self.log_tail(log_start),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `postmaster.pid` names our child (not a stale file left by a killed server) and its
    /// line 8, the postmaster's status, says "ready" (or "standby": a hot standby that
    /// accepts connections).
    fn postmaster_ready(&self, pid: u32) -> bool {
        let Ok(file) = std::fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return false;
        };
        let lines: Vec<&str> = file.lines().map(str::trim).collect();
        lines.first() == Some(&pid.to_string().as_str())
            && matches!(lines.get(7), Some(&"ready") | Some(&"standby"))
    }

    fn log_tail(&self, from: u64) -> String {
        let text = std::fs::read(self.log_path()).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(0).min(text.len());
        let text = String::from_utf8_lossy(&text[from..]);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        // Immediate: the data is about to be deleted, no need for a checkpoint.
        let _ = self.stop_with("immediate");
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // `self.dir` (TempDir) is dropped next and removes everything.
    }
}

fn file_len(file: &File) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

fn check_output(program: &'static str, out: &std::process::Output) -> Result<(), LocalPgError> {
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(LocalPgError::CommandFailed {
        program,
        status: out.status,
        stderr,
    })
}
