//! The validated configuration plus what is derived from it once at load
//! time (SCRAM verifiers for plaintext userlist entries, the TLS acceptor and
//! connector), so nothing costly happens per login. A reload builds a new Snapshot
//! and swaps it in: new TLS handshakes use the new certificate, connected clients
//! keep the session they have; a TLS file that does not load fails the reload.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::auth::{md5_secret, ScramSecret};
use crate::config::{AuthType, ClientTls, Config, ConfigError, Problem, Secret, Userlist};
use crate::tls::{ClientTlsAcceptor, ServerTlsConnector, TlsFileError};

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
    /// Client-facing TLS (`None` when `client_tls = "disable"`).
    pub client_tls: Option<Arc<ClientTlsAcceptor>>,
    /// Server-facing TLS.
    pub server_tls: ServerTlsConnector,
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
        let client_tls = match (
            config.listen.client_tls,
            &config.listen.tls_cert,
            &config.listen.tls_key,
        ) {
            (ClientTls::Disable, _, _) => None,
            (_, Some(cert), Some(key)) => Some(Arc::new(
                ClientTlsAcceptor::load(cert, key).map_err(|e| tls_problem(&config, e))?,
            )),
            // Validation already requires both files unless disabled.
            _ => None,
        };
        let server_tls = ServerTlsConnector::load(
            config.pool.server_tls,
            config.pool.server_tls_ca_file.as_deref(),
        )
        .map_err(|e| tls_problem(&config, e))?;
        Ok(Snapshot {
            config,
            users,
            client_tls,
            server_tls,
        })
    }

    /// The entry for `user`, if the userlist has one.
    pub fn user(&self, user: &str) -> Option<&UserEntry> {
        self.users.get(user)
    }
}

/// A TLS file problem, located at the key that named the file.
fn tls_problem(config: &Config, e: TlsFileError) -> ConfigError {
    let keys: Vec<&str> = e.key.split('.').collect();
    let line = std::fs::read_to_string(&config.path)
        .ok()
        .and_then(|text| crate::config::key_line(&text, &config.path, &keys));
    let problem = Problem::new(&config.path, line, Some(e.key), e.to_string());
    ConfigError {
        problems: vec![problem],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    const CONFIG: &str = "[listen]\nclient_tls = \"require\"\ntls_cert = \"c.pem\"\n\
                          tls_key = \"k.pem\"\n[auth]\ntype = \"trust\"\n\
                          [pool]\nserver_tls = \"verify-full\"\nserver_tls_ca_file = \"ca.pem\"\n";

    #[test]
    fn tls_files_load_or_fail_with_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = write(dir.path(), "pool.toml", CONFIG);
        let (cert, key) = pair();
        let (other_cert, _) = pair();
        write(dir.path(), "c.pem", &cert);
        write(dir.path(), "k.pem", &key);
        write(dir.path(), "ca.pem", &other_cert);
        let snap = Snapshot::load(&config).unwrap();
        let acceptor = snap.client_tls.as_ref().expect("client TLS on");
        assert_eq!(acceptor.end_point.as_ref().map(|e| e.len()), Some(32));
        assert!(snap.server_tls.config.is_some());

        write(dir.path(), "c.pem", "garbage");
        let e = Snapshot::load(&config).unwrap_err().to_string();
        assert!(e.contains("pool.toml:3: listen.tls_cert:"), "{e}");
        assert!(e.contains("no PEM certificate"), "{e}");

        // A key that belongs to another certificate.
        write(dir.path(), "c.pem", &other_cert);
        let e = Snapshot::load(&config).unwrap_err().to_string();
        assert!(e.contains("pool.toml:4: listen.tls_key:"), "{e}");
        assert!(e.contains("does not fit the certificate"), "{e}");

        write(dir.path(), "c.pem", &cert);
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        let e = Snapshot::load(&config).unwrap_err().to_string();
        assert!(e.contains("pool.toml:9: pool.server_tls_ca_file:"), "{e}");
        assert!(e.contains("cannot read"), "{e}");
    }
}
