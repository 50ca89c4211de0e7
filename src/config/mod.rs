//! Configuration: `pool.toml` and the userlist, read, checked and turned into plain data.
//!
//! Owns the file formats and every rule about their values. [`Config::load`] either
//! returns a config that passed every check, or a [`ConfigError`] listing all problems
//! found, each with file, line and dotted key. Nothing here does network IO or keeps
//! state: reload simply loads again and swaps snapshots if the result is `Ok`.
//!
//! Layout: `types.rs` (the data and defaults), `read.rs` (typed reading of a TOML tree
//! with line numbers), `sections.rs` (the schema), `hosts.rs` (server address syntax),
//! `validate.rs` (checks across keys), `userlist.rs`, `error.rs`.

mod error;
mod hosts;
mod read;
mod sections;
mod types;
mod userlist;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_values;
#[cfg(test)]
mod userlist_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem};
pub use sections::{AUTH_KEYS, DATABASE_KEYS, LISTEN_KEYS, POOL_KEYS};
pub use types::{
    Auth, AuthType, ClientTls, Database, HostPort, Listen, PoolMode, PoolSettings, Role, ServerTls,
    UnknownValue,
};
pub use userlist::{Secret, Userlist};

use read::{Lines, Reader, Section};

/// A complete, validated `pool.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (as given, not canonicalized).
    pub path: PathBuf,
    /// `[listen]`.
    pub listen: Listen,
    /// `[auth]`.
    pub auth: Auth,
    /// `[pool]`.
    pub pool: PoolSettings,
    /// `[databases.*]`, keyed by the name clients connect to.
    pub databases: BTreeMap<String, Database>,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`. `path` is used in messages and to resolve relative
    /// file paths (`auth.file`, `listen.tls_cert`, `listen.tls_key`) against its directory;
    /// the file itself is not read.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| syntax_error(text, path, &e))?;
        let mut rd = Reader::new(path, text);
        let root = Section::root(doc.as_table());
        root.check_known(&mut rd, sections::TOP_KEYS);
        let listen = root.section(&mut rd, "listen");
        let auth = root.section(&mut rd, "auth");
        let pool = root.section(&mut rd, "pool");
        let databases = root.section(&mut rd, "databases");
        let mut config = Config {
            path: path.to_path_buf(),
            listen: sections::read_listen(&mut rd, &listen),
            auth: sections::read_auth(&mut rd, &auth),
            pool: sections::read_pool(&mut rd, &pool),
            databases: sections::read_databases(&mut rd, &databases),
        };
        let lines = Lines::index(&rd, doc.as_table());
        validate::check(&config, &lines, &mut rd);

        let problems = rd.into_problems();
        if !problems.is_empty() {
            return Err(ConfigError::new(problems));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        for file in [
            &mut config.auth.file,
            &mut config.listen.tls_cert,
            &mut config.listen.tls_key,
            &mut config.pool.server_tls_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }
}

/// A TOML syntax error: one problem at the error's line (parsing cannot go on past it).
fn syntax_error(text: &str, path: &Path, err: &toml_edit::TomlError) -> ConfigError {
    let rd = Reader::new(path, text);
    let line = rd.span_line(err.span());
    let detail: Vec<&str> = err.message().lines().map(str::trim).collect();
    let message = format!("invalid TOML: {}", detail.join("; "));
    ConfigError::new(vec![Problem::new(path, line, None, message)])
}

/// The line of the dotted key `keys` in the config `text` read from `path`, for problems
/// found after parsing (unreadable or invalid TLS files).
pub fn key_line(text: &str, path: &Path, keys: &[&str]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    Lines::index(&Reader::new(path, text), doc.as_table()).find(keys)
}

/// What `pgpool-rs --check` reports: loads the config and, unless `auth.type = "trust"`,
/// the userlist; checks that TLS files named by an enabled `client_tls` are readable.
/// Returns whether all is well and the text to print: `configuration OK: <path>`, or one
/// problem per line.
pub fn check_report(path: &Path) -> (bool, String) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return (false, ConfigError::unreadable(path, &e).to_string()),
    };
    let config = match Config::parse(&text, path) {
        Ok(config) => config,
        Err(e) => return (false, e.to_string()),
    };
    let mut problems = Vec::new();
    if config.auth.auth_type != AuthType::Trust {
        if let Some(file) = &config.auth.file {
            if let Err(e) = Userlist::load(file) {
                problems.extend(e.problems);
            }
        }
    }
    let mut files = Vec::new();
    if config.listen.client_tls != ClientTls::Disable {
        files.push(("listen", "tls_cert", &config.listen.tls_cert));
        files.push(("listen", "tls_key", &config.listen.tls_key));
    }
    if config.pool.server_tls == ServerTls::VerifyFull {
        files.push((
            "pool",
            "server_tls_ca_file",
            &config.pool.server_tls_ca_file,
        ));
    }
    for (section, key, file) in files {
        let Some(file) = file else { continue };
        if let Err(e) = std::fs::File::open(file) {
            let line = key_line(&text, path, &[section, key]);
            let message = format!("cannot read {}: {e}", file.display());
            let key = format!("{section}.{key}");
            problems.push(Problem::new(path, line, Some(&key), message));
        }
    }
    if problems.is_empty() {
        (true, format!("configuration OK: {}", path.display()))
    } else {
        // Not re-sorted: the problems may come from two files.
        (false, ConfigError { problems }.to_string())
    }
}
