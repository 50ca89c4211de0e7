//! TLS configuration built from files, once per configuration load: the client-facing
//! acceptor ([`acceptor`]: our certificate and key) and the server-facing connector
//! ([`connector`]: which server certificates to trust). Both are plain data held by the
//! [`crate::snapshot::Snapshot`], so a reload swaps them with the rest of the config
//! and a file that fails to load rejects the whole reload (the old snapshot stays).
//!
//! A leaf module: rustls, the ring crypto provider, PEM files. The handshakes themselves
//! are done by `net::tls` (clients) and `server::tls` (servers).

pub mod acceptor;
pub mod connector;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use acceptor::ClientTlsAcceptor;
pub use connector::ServerTlsConnector;

/// The ALPN protocol name PostgreSQL 17 defined; required for direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// TLS 1.2 and 1.3 only (rustls has nothing older anyway; stated so it stays that way).
pub(crate) const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Why a TLS file could not be used. The `key` is the config key that named the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsFileError {
    /// Dotted config key (`listen.tls_cert`, ...), for a file:line:key problem.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl TlsFileError {
    pub(crate) fn new(key: &'static str, path: &Path, reason: impl Into<String>) -> Self {
        TlsFileError {
            key,
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The one crypto provider (ring), shared by every config.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Every certificate in a PEM file; an empty file (or one without certificates) is an error.
pub(crate) fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsFileError::new(key, path, pem_error(&e)))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::new(key, path, pem_error(&e)))?;
    if certs.is_empty() {
        return Err(TlsFileError::new(
            key,
            path,
            "no PEM certificate (\"-----BEGIN CERTIFICATE-----\") found",
        ));
    }
    Ok(certs)
}

/// A readable description of a PEM reading error.
pub(crate) fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM item of the expected kind found".into()
        }
        other => format!("invalid PEM: {other}"),
    }
}
