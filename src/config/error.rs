//! Configuration problems: what is wrong, and where (file, 1-based line, dotted key).
//!
//! Loading never stops at the first mistake it can get past: every problem found is
//! collected into one [`ConfigError`], so an operator fixes a file in one round trip.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// One thing wrong with a configuration or userlist file, located as precisely as possible
/// so an operator can jump straight to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in, as it was named to us.
    pub file: PathBuf,
    /// 1-based line; `None` when the problem concerns the whole file (it cannot be read,
    /// or a value is missing from a file that does not mention its section at all).
    pub line: Option<usize>,
    /// The dotted key (`databases.app.pool_size`); in a userlist, the user name.
    pub key: Option<String>,
    /// What is wrong and, where it helps, what was expected. Never contains a secret.
    pub message: String,
}

impl Problem {
    /// Builds a problem; `key` is optional because some problems (syntax, IO) have none.
    /// Control characters (from echoed values) are escaped so a problem stays on one line.
    pub fn new(
        file: &Path,
        line: Option<usize>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line,
            key: key.map(one_line),
            message: one_line(&message.into()),
        }
    }
}

/// `text` with control characters escaped (`\n` becomes the two characters `\` `n`).
fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl fmt::Display for Problem {
    /// `<file>:<line>: <key>: <message>`, leaving out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything wrong with a file: the reason a config or userlist was rejected.
///
/// On reload this is logged and the old configuration stays in force; `--check` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, ordered by line (whole-file problems first).
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Wraps collected problems, ordering them by line so the output reads top to bottom.
    pub fn new(mut problems: Vec<Problem>) -> ConfigError {
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        ConfigError { problems }
    }

    /// A file that could not be read at all (missing, unreadable, not UTF-8).
    pub fn unreadable(path: &Path, err: &io::Error) -> ConfigError {
        ConfigError::new(vec![Problem::new(
            path,
            None,
            None,
            format!("cannot read file: {err}"),
        )])
    }
}

impl fmt::Display for ConfigError {
    /// One problem per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
