//! OS-level plumbing for [`super::LocalPostgres`]: finding the PostgreSQL binaries,
//! running them as the `postgres` OS user when we are root, picking free ports, and the
//! watchdog process that removes a cluster whose owning process died without cleaning up.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::LocalPgError;

/// The three programs a cluster needs; a directory is only accepted if it has all of them.
const REQUIRED: [&str; 3] = ["initdb", "postgres", "pg_ctl"];

/// Finds the PostgreSQL server binaries: `$PG_BIN`, else the directory of `initdb` on
/// `PATH`, else the newest `/usr/lib/postgresql/*/bin` (Debian/Ubuntu keep them off PATH).
pub(crate) fn find_bin_dir() -> Result<PathBuf, LocalPgError> {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server_binaries(&dir) {
            Ok(dir)
        } else {
            Err(LocalPgError::BinariesNotFound)
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // Homebrew and friends symlink initdb; its siblings live next to the target.
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent().filter(|p| has_server_binaries(p)) {
                    return Ok(parent.to_path_buf());
                }
                if has_server_binaries(&dir) {
                    return Ok(dir);
                }
            }
        }
    }
    newest_debian_bin_dir().ok_or(LocalPgError::BinariesNotFound)
}

fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED.iter().all(|name| dir.join(name).is_file())
}

/// The highest-versioned `/usr/lib/postgresql/<version>/bin` that has the server binaries.
fn newest_debian_bin_dir() -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = version_key(&e.file_name());
            let bin = e.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// "15" -> [15], "9.6" -> [9, 6]: numeric so that 10 sorts above 9.6.
fn version_key(name: &OsString) -> Vec<u64> {
    name.to_string_lossy()
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// Who the server processes run as. PostgreSQL refuses to run as root, so when we are
/// root everything that touches the data directory runs as the `postgres` OS user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    /// `(uid, gid)` to switch to, or `None` to run as ourselves.
    pub(crate) ids: Option<(u32, u32)>,
}

impl RunAs {
    /// Decides from the owner of a directory we just created (its uid is our effective
    /// uid, which avoids an `unsafe` call to `geteuid`).
    pub(crate) fn for_dir_we_created(dir: &Path) -> Result<RunAs, LocalPgError> {
        let meta = std::fs::metadata(dir).map_err(|source| LocalPgError::Io {
            action: "reading the temporary directory's owner",
            source,
        })?;
        if meta.uid() != 0 {
            return Ok(RunAs { ids: None });
        }
        let ids = lookup_user("postgres").ok_or(LocalPgError::NoPostgresUser)?;
        Ok(RunAs { ids: Some(ids) })
    }

    /// A command that runs as the server's OS user, in `cwd` (the user may not be able to
    /// read our working directory), with libpq's environment variables removed.
    pub(crate) fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).stdin(Stdio::null());
        scrub_libpq_env(&mut cmd);
        if let Some((uid, gid)) = self.ids {
            // std drops supplementary groups when a root parent sets a uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Gives a path to the server's OS user (no-op when we are not root).
    pub(crate) fn chown(&self, path: &Path) -> Result<(), LocalPgError> {
        match self.ids {
            None => Ok(()),
            Some((uid, gid)) => {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                    LocalPgError::Io {
                        action: "handing the temporary directory to the postgres user",
                        source,
                    }
                })
            }
        }
    }
}

/// Removes the libpq variables that would redirect our psql/pg_ctl calls elsewhere.
pub(crate) fn scrub_libpq_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGDATA",
    ] {
        cmd.env_remove(var);
    }
}

/// `(uid, gid)` of an OS user, from `/etc/passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Next candidate offset for [`free_port`], shared by all threads of this process.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// A TCP port on 127.0.0.1 that is free right now.
///
/// Ports come from below the kernel's ephemeral range (read from
/// `/proc/sys/net/ipv4/ip_local_port_range`), so a port we hand out is never taken in the
/// meantime by the source port of some outgoing connection — a real risk when a test opens
/// a thousand client connections while another test starts a server. Each process starts at
/// a pid-derived offset and walks forward, so concurrent threads never get the same port.
pub fn free_port() -> io::Result<u16> {
    let (low, high) = candidate_range();
    let span = high - low;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span.min(5000) {
        let step = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = low + (start + step) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    // Everything below the ephemeral range is busy: let the kernel choose.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// `[low, high)` of the ports [`free_port`] tries.
fn candidate_range() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 12000 {
        (10000, ephemeral_low)
    } else {
        (40000, 60000)
    }
}

/// Starts the watchdog: a small `sh` loop, in its own process group (so a Ctrl-C aimed at
/// the tests does not kill it), that waits for this process to disappear, then stops the
/// postmaster (SIGQUIT = immediate shutdown, then SIGKILL) and deletes `dir`.
///
/// It runs as ourselves, not as the server's user: it must be allowed to `kill -0` us.
pub(crate) fn spawn_watchdog(dir: &Path, data_dir: &Path) -> Result<Child, LocalPgError> {
    const SCRIPT: &str = r#"
parent=$1; dir=$2; data=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
if [ -f "$data/postmaster.pid" ]; then
  pm=$(head -n 1 "$data/postmaster.pid")
  kill -QUIT "$pm" 2>/dev/null
  i=0
  while kill -0 "$pm" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pm" 2>/dev/null
fi
rm -rf "$dir"
"#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgpool-rs-localpg-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(data_dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| LocalPgError::Io {
            action: "starting the cleanup watchdog",
            source,
        })
}

/// Sends a signal by name (`"TERM"`, `"QUIT"`, ...) with the `kill` utility, which keeps
/// this crate free of `unsafe`.
pub fn send_signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -{signal} {pid} failed: {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = [
            version_key(&"9.6".into()),
            version_key(&"15".into()),
            version_key(&"10".into()),
        ];
        v.sort();
        assert_eq!(v.last().unwrap(), &vec![15]);
    }

    #[test]
    fn free_ports_are_distinct() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        assert!(u32::from(a) < candidate_range().1);
    }
}
