//! The validated configuration plus what is derived from it once at load
//! time (SCRAM verifiers for plaintext userlist entries), so nothing costly
//! happens per login. A reload builds a new Snapshot and swaps it in.

use std::collections::HashMap;
use std::path::Path;

use crate::auth::{md5_secret, ScramSecret};
use crate::config::{AuthType, Config, ConfigError, Secret, Userlist};

/// What the pooler knows about one userlist entry.
#[derive(Debug, Clone)]
pub struct UserEntry {
    /// The plaintext password, when the userlist holds one.
    pub password: Option<String>,
    /// The md5 secret ("md5..."), given or derived from the password.
    pub md5: Option<String>,
    /// The SCRAM verifier, given or derived from the password.
    pub scram: Option<ScramSecret>,
}

/// A validated configuration with derived credentials.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// Userlist entries by user name.
    pub users: HashMap<String, UserEntry>,
}

impl Snapshot {
    /// Loads the config file and its userlist, deriving SCRAM verifiers.
    pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
        let config = Config::load(path)?;
        Self::from_config(config)
    }

    /// Builds a snapshot from an already parsed config (reads the userlist).
    pub fn from_config(config: Config) -> Result<Snapshot, ConfigError> {
        let mut users = HashMap::new();
        let needs_file = config.auth.auth_type != AuthType::Trust
            || config
                .databases
                .values()
                .any(|d| d.user.is_some() && d.password.is_none());
        if let Some(file) = &config.auth.file {
            if needs_file || file.exists() {
                let list = Userlist::load(file)?;
                for (name, secret) in list.iter() {
                    users.insert(name.to_owned(), derive(name, secret));
                }
            }
        }
        Ok(Snapshot { config, users })
    }

    /// The entry for `user`, if the userlist has one.
    pub fn user(&self, user: &str) -> Option<&UserEntry> {
        self.users.get(user)
    }
}

fn derive(user: &str, secret: &Secret) -> UserEntry {
    match secret {
        Secret::Plain(p) => UserEntry {
            password: Some(p.clone()),
            md5: Some(md5_secret(user, p)),
            scram: Some(ScramSecret::generate(p)),
        },
        Secret::Md5(m) => UserEntry {
            password: None,
            md5: Some(m.clone()),
            scram: None,
        },
        Secret::Scram(s) => UserEntry {
            password: None,
            md5: None,
            scram: ScramSecret::parse(s).ok(),
        },
    }
}
