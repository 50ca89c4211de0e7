//! `pgpool-rs convert pgbouncer.ini`: a PgBouncer configuration turned into the equivalent
//! pool.toml, with a comment for every value that is approximated and every setting that
//! cannot be carried over, saying why.
//!
//! ```text
//! pgbouncer.ini (+ %include files) ─► ini::read ─► entries by section
//!   [pgbouncer] ─► pgbouncer::map (+ listen.rs) ─┐
//!   [databases] ─► databases::map (connstr.rs) ──┼─► Plan ─► emit::render ─► pool.toml text
//!   [users], [peers], others ─► "not carried over"┘
//! ```
//! The text is checked with [`crate::config::Config::parse`] before it is returned: a
//! database entry the pool.toml rules reject (a name too long, a host it cannot read) is
//! written commented out with the reason, and anything else wrong is an error here rather
//! than a surprise at startup.

mod connstr;
mod databases;
mod emit;
mod ini;
mod listen;
mod pgbouncer;
mod plan;
mod reasons;
mod values;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mapping;

use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

pub use ini::Origin;

/// The converted configuration.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The pool.toml text (it passes `Config::parse`).
    pub toml: String,
    /// Settings that could not be carried over (each has a comment in `toml`).
    pub not_carried: usize,
    /// Database entries written commented out (each with the reason).
    pub disabled_databases: usize,
}

/// Why a pgbouncer.ini could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The file named on the command line cannot be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file named by `%include` cannot be read.
    #[error("{origin}: %include {}: cannot read: {source}", target.display())]
    Include {
        /// The `%include` line.
        origin: Origin,
        /// The file it names (resolved).
        target: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A line PgBouncer could not read either.
    #[error("{origin}: {message}")]
    Syntax {
        /// Where.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// A value PgBouncer would reject (`pool_mode = often`, `max_client_conn = lots`).
    #[error("{origin}: {key}: {message}")]
    Value {
        /// Where.
        origin: Origin,
        /// The setting (or database name).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The converted text failed pool.toml validation: a bug in the converter.
    #[error("the converted pool.toml does not validate (a converter bug; please report it):\n{0}")]
    Invalid(ConfigError),
}

/// Converts the pgbouncer.ini at `path` (and the files it includes).
pub fn convert_file(path: &Path) -> Result<Conversion, ConvertError> {
    let entries = ini::read(path)?;
    let mut plan = plan::Plan::default();
    let in_section =
        |name: &str| -> Vec<&ini::Entry> { entries.iter().filter(|e| e.section == name).collect() };
    let globals = pgbouncer::map(&in_section("pgbouncer"), &mut plan)?;
    databases::map(&in_section("databases"), globals, &mut plan)?;
    for entry in entries
        .iter()
        .filter(|e| e.section != "pgbouncer" && e.section != "databases")
    {
        databases::other_section(entry, &mut plan);
    }
    // "Not carried over" lines in the order the settings appear in the files.
    let position = |o: &Origin| entries.iter().position(|e| e.origin == *o);
    plan.dropped
        .sort_by_key(|d| position(&d.origin).unwrap_or(usize::MAX));
    let toml = checked(&mut plan, path)?;
    Ok(Conversion {
        toml,
        not_carried: plan.dropped.len(),
        disabled_databases: plan
            .databases
            .iter()
            .filter(|d| d.disabled.is_some())
            .count(),
    })
}

/// Renders `plan` and validates the text; database entries that pool.toml rejects are
/// commented out with the problem, then the text is validated again.
fn checked(plan: &mut plan::Plan, source: &Path) -> Result<String, ConvertError> {
    let name = Path::new("pool.toml");
    loop {
        let text = emit::render(plan, source);
        let problems = match Config::parse(&text, name) {
            Ok(_) => return Ok(text),
            Err(e) => e,
        };
        let mut disabled_any = false;
        for problem in &problems.problems {
            let key = problem.key.as_deref().unwrap_or("");
            let culprit = plan
                .databases
                .iter_mut()
                .filter(|db| db.disabled.is_none())
                .find(|db| in_entry(key, &db.name));
            if let Some(db) = culprit {
                let message = format!("pool.toml rejects it: {}", problem.message);
                db.disabled = Some(message);
                disabled_any = true;
            }
        }
        if !disabled_any {
            return Err(ConvertError::Invalid(problems));
        }
    }
}

/// Whether the dotted config key `key` is database entry `name` or one of its keys.
fn in_entry(key: &str, name: &str) -> bool {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let entry = if bare {
        format!("databases.{name}")
    } else {
        format!(
            "databases.\"{}\"",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    key == entry
        || key
            .strip_prefix(&entry)
            .is_some_and(|rest| rest.starts_with('.'))
}
