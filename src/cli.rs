//! Command-line interface (clap): run, `--check`, `demo`, `convert`, `health`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// pgpool-rs: a PostgreSQL connection pooler.
#[derive(Debug, Parser)]
#[command(name = "pgpool-rs", version, about, long_about = None)]
pub struct Cli {
    /// Path of pool.toml.
    #[arg(
        long,
        short = 'c',
        env = "PGPOOL_CONFIG",
        default_value = "pool.toml",
        global = true
    )]
    pub config: PathBuf,
    /// Validate the config, print problems, exit 0 (fine) or 1.
    #[arg(long)]
    pub check: bool,
    /// A subcommand; none means "run the pooler".
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a throwaway local PostgreSQL with the pooler in front of it.
    Demo(crate::demo::DemoOptions),
    /// Print the pool.toml equivalent of a pgbouncer.ini.
    Convert {
        /// The pgbouncer.ini to read.
        file: PathBuf,
    },
    /// GET the pooler's /health/ready (or --url): exit 0 on 200, 1 otherwise.
    /// For container health checks; the default URL comes from --config.
    Health(crate::health_check::HealthOptions),
}
