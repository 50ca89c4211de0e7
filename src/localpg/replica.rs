//! Streaming replicas of a [`LocalPostgres`] (`pg_basebackup -R`), and promotion, for
//! tests of writer/reader roles and failover.

use std::process::Stdio;

use super::{check_output, LocalPgError, LocalPostgres};

impl LocalPostgres {
    /// Starts a hot standby streaming from this server, on its own free port. The
    /// primary's `pg_hba.conf` must allow `replication` for `postgres` over TCP (the
    /// test and demo options do).
    pub fn start_replica(&self) -> Result<LocalPostgres, LocalPgError> {
        let mut replica = LocalPostgres::empty("pgpool-rs-pg-replica-", self.bin_dir.clone())?;
        let out = replica
            .run_as
            .command(&replica.bin("pg_basebackup"), replica.dir.path())
            .arg("-D")
            .arg(replica.data_dir())
            .args(["-h", self.host(), "-p", &self.port().to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "--checkpoint=fast",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| LocalPgError::Io {
                action: "running pg_basebackup",
                source,
            })?;
        check_output("pg_basebackup", &out)?;
        // The copied postgresql.conf points at the primary's socket directory.
        let conf = format!(
            "\n# replica\nunix_socket_directories = '{}'\nhot_standby = on\n",
            replica.dir.path().display()
        );
        replica.write_data_file("postgresql.conf", &conf, true)?;
        replica.start_on_a_free_port()?;
        Ok(replica)
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), LocalPgError> {
        let out = self
            .run_as
            .command(&self.bin("pg_ctl"), self.dir.path())
            .arg("-D")
            .arg(self.data_dir())
            .args(["promote", "-w", "-t", "30"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| LocalPgError::Io {
                action: "running pg_ctl promote",
                source,
            })?;
        check_output("pg_ctl promote", &out)
    }

    /// Turns this server, a former primary, into a standby of `primary` and
    /// starts it again on its port: a clean switchover (this one must have been
    /// stopped cleanly before `primary` was promoted, so their histories agree).
    pub fn follow(&mut self, primary: &LocalPostgres) -> Result<(), LocalPgError> {
        self.stop()?;
        self.write_data_file("standby.signal", "", false)?;
        let conninfo = format!(
            "\nprimary_conninfo = 'host={} port={} user=postgres'\nrecovery_target_timeline = 'latest'\n",
            primary.host(),
            primary.port()
        );
        self.write_data_file("postgresql.auto.conf", &conninfo, true)?;
        self.start_postmaster()
    }

    /// Stops the server at once (`immediate`: like a crash; a standby keeps its data).
    pub fn crash(&mut self) -> Result<(), LocalPgError> {
        self.stop_with("immediate")
    }

    /// True when the server is a standby (`pg_is_in_recovery()`).
    pub fn is_in_recovery(&self) -> Result<bool, LocalPgError> {
        Ok(self.psql("postgres", "SELECT pg_is_in_recovery()")? == "t")
    }
}
