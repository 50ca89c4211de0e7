//! The client-facing TLS configuration: our certificate chain and private key
//! (`listen.tls_cert`, `listen.tls_key`), TLS 1.2/1.3, ALPN `postgresql`, no client
//! certificates, plus the channel-binding data of our certificate for SCRAM-SHA-256-PLUS.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::{pem_error, provider, read_certs, TlsFileError, ALPN_POSTGRESQL, VERSIONS};

/// What a client handshake needs; built once per config load, shared by `Arc`.
#[derive(Debug)]
pub struct ClientTlsAcceptor {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// `tls-server-end-point` data of our certificate (`None` if its signature
    /// algorithm defines no hash): SCRAM channel binding is offered only with it.
    pub end_point: Option<Arc<[u8]>>,
}

impl ClientTlsAcceptor {
    /// Loads the PEM certificate chain (server certificate first) and private key
    /// (PKCS#8, PKCS#1 or SEC1) and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<ClientTlsAcceptor, TlsFileError> {
        let certs = read_certs("listen.tls_cert", cert)?;
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsFileError::new("listen.tls_key", key, pem_error(&e)))?;
        let end_point = crate::auth::tls_server_end_point(&certs[0]).map(Arc::from);
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsFileError::new("listen.tls_cert", cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .map_err(|e| {
                TlsFileError::new(
                    "listen.tls_key",
                    key,
                    format!("does not fit the certificate in {}: {e}", cert.display()),
                )
            })?;
        // An offered ALPN other than "postgresql" fails the handshake (as in PG 17);
        // none offered is fine after an SSLRequest, and checked for direct TLS.
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        // libpq never resumes sessions: tickets would be bytes for nothing.
        config.send_tls13_tickets = 0;
        Ok(ClientTlsAcceptor {
            config: Arc::new(config),
            end_point,
        })
    }
}
