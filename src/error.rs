//! The errors a client can be told about, each mapped once to a SQLSTATE and
//! severity at the edge where it is written to the client.

use crate::protocol::backend::Severity;

/// An error to report to a client as an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// ERROR keeps the session; FATAL ends it.
    pub severity: Severity,
    /// The SQLSTATE.
    pub code: &'static str,
    /// The primary message.
    pub message: String,
}

impl ClientError {
    /// A FATAL error with the given SQLSTATE.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        ClientError {
            severity: Severity::Fatal,
            code,
            message: message.into(),
        }
    }

    /// A non-fatal ERROR with the given SQLSTATE.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        ClientError {
            severity: Severity::Error,
            code,
            message: message.into(),
        }
    }

    /// Appends this error as an ErrorResponse.
    pub fn encode(&self, buf: &mut bytes::BytesMut) {
        crate::protocol::backend::error_response(buf, self.severity, self.code, &self.message);
    }
}

/// SQLSTATE codes the pooler uses itself.
pub mod sqlstate {
    /// protocol_violation
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// connection_failure
    pub const CONNECTION_FAILURE: &str = "08006";
    /// sqlclient_unable_to_establish_sqlconnection
    pub const CANNOT_CONNECT: &str = "08001";
    /// too_many_connections
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// invalid_password
    pub const INVALID_PASSWORD: &str = "28P01";
    /// invalid_authorization_specification
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// invalid_catalog_name (unknown database)
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// query_canceled
    pub const QUERY_CANCELED: &str = "57014";
    /// admin_shutdown
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// idle_session_timeout (PostgreSQL 14+): `client_idle_timeout`.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// idle_in_transaction_session_timeout: `idle_transaction_timeout`.
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    /// feature_not_supported
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// program_limit_exceeded: a fixed per-connection limit was reached.
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// internal_error
    pub const INTERNAL_ERROR: &str = "XX000";
}
