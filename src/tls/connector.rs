//! The server-facing TLS configuration for `pool.server_tls`: with `verify-full`, the
//! CA bundle of `pool.server_tls_ca_file` and webpki's chain + host name checks; with
//! `prefer`/`require`, any certificate is accepted (as libpq's sslmode of the same names
//! does) but the handshake signatures are still verified, so the session key is really
//! shared with the holder of the presented certificate — which is what SCRAM channel
//! binding then ties to the password.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{provider, read_certs, TlsFileError, ALPN_POSTGRESQL, VERSIONS};
use crate::config::ServerTls;

/// How server connections use TLS; built once per config load.
#[derive(Debug, Clone)]
pub struct ServerTlsConnector {
    /// `pool.server_tls`.
    pub mode: ServerTls,
    /// The CA file it was built from (verify-full), to tell a changed setting on reload.
    pub ca_file: Option<PathBuf>,
    /// The rustls client configuration; `None` when `mode` is `disable`.
    pub config: Option<Arc<ClientConfig>>,
}

impl PartialEq for ServerTlsConnector {
    /// Same mode and CA file: existing connections still satisfy the setting (a CA file
    /// whose contents changed applies to new connections only).
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode && self.ca_file == other.ca_file
    }
}

impl ServerTlsConnector {
    /// No TLS towards servers.
    pub fn disabled() -> ServerTlsConnector {
        ServerTlsConnector {
            mode: ServerTls::Disable,
            ca_file: None,
            config: None,
        }
    }

    /// Builds the connector for `mode`; `verify-full` reads `ca_file` (required).
    pub fn load(mode: ServerTls, ca_file: Option<&Path>) -> Result<Self, TlsFileError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsFileError::new("pool.server_tls", Path::new(""), e.to_string()))?;
        let (mut config, ca_file) = match mode {
            ServerTls::Disable => return Ok(Self::disabled()),
            ServerTls::Prefer | ServerTls::Require => {
                let verifier = Arc::new(AnyCertificate(provider()));
                let config = builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
                (config, None)
            }
            ServerTls::VerifyFull => {
                let key = "pool.server_tls_ca_file";
                let path = ca_file.ok_or_else(|| {
                    TlsFileError::new(key, Path::new(""), "required by server_tls = verify-full")
                })?;
                let mut roots = RootCertStore::empty();
                for cert in read_certs(key, path)? {
                    roots.add(cert).map_err(|e| {
                        TlsFileError::new(key, path, format!("unusable CA certificate: {e}"))
                    })?;
                }
                let config = builder.with_root_certificates(roots).with_no_client_auth();
                (config, Some(path.to_path_buf()))
            }
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(ServerTlsConnector {
            mode,
            ca_file,
            config: Some(Arc::new(config)),
        })
    }
}

/// `prefer`/`require`: accepts whatever certificate the server presents, and checks the
/// handshake signatures with it like any verifier.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
