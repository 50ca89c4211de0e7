//! Authentication as pure state machines: SCRAM-SHA-256 (both the server side, used to
//! authenticate pooler clients, and the client side, used to log in to Postgres) and MD5.
//!
//! Nothing here does IO or knows about message framing: callers pull the SASL payload out of
//! `PasswordMessage` / `SASLInitialResponse` / `SASLResponse` and wrap the returned bytes in
//! `AuthenticationSASLContinue` / `AuthenticationSASLFinal` themselves. Every constructor that
//! draws randomness has a deterministic twin (`with_nonce`) so tests can replay recorded
//! exchanges such as RFC 7677's.
//!
//! SCRAM verifiers ([`ScramSecret`]) are meant to be derived once, when the configuration
//! loads; a login then costs a few HMACs, never a PBKDF2 run.

pub mod channel_binding;
#[cfg(test)]
mod interop_tests;
mod md5;
mod scram_client;
#[cfg(test)]
mod scram_client_tests;
mod scram_common;
mod scram_secret;
mod scram_server;
#[cfg(test)]
mod scram_tests;

pub use self::channel_binding::tls_server_end_point;
pub use self::md5::{is_md5_secret, md5_response, md5_secret, md5_verify, random_salt};
pub use self::scram_client::{
    select_mechanism, ClientBinding, ScramClient, ScramCredentials, MAX_ITERATIONS,
};
pub use self::scram_secret::{ScramSecret, DEFAULT_ITERATIONS};
pub use self::scram_server::{
    check_mechanism, ScramServer, ScramVerdict, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};

/// Why an authentication exchange (or parsing a stored secret) failed.
///
/// Every variant except [`AuthError::BadSecret`] describes something a peer sent; the edge
/// maps them all to "password authentication failed" (SQLSTATE 28P01) for clients, or to a
/// server-login failure, without echoing details that would help an attacker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A SCRAM message did not follow the RFC 5802 grammar; the text names what was wrong.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// An attribute that must be base64 (named here) did not decode, or had the wrong length.
    #[error("invalid base64 in SCRAM attribute {0}")]
    InvalidBase64(&'static str),
    /// The nonce in a later message does not continue the nonce agreed earlier.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The peer asked for a SASL mechanism other than SCRAM-SHA-256.
    #[error("unsupported SASL mechanism")]
    UnsupportedMechanism,
    /// The client asked for channel binding (`p=...`) that is not on offer: a plaintext
    /// connection, or a binding type other than `tls-server-end-point`.
    #[error("SCRAM channel binding is not supported")]
    ChannelBindingUnsupported,
    /// The gs2 channel-binding flag contradicts the mechanism chosen or offered (the text
    /// says how); a `y` flag when `-PLUS` was offered may be a downgrade attack.
    #[error("SCRAM channel binding negotiation error: {0}")]
    ChannelBindingNegotiation(&'static str),
    /// The client-final `c=` attribute does not match the gs2 header of the client-first.
    #[error("SCRAM channel binding data does not match")]
    ChannelBindingMismatch,
    /// The peer required a mandatory extension (`m=`), which no SCRAM-SHA-256 peer defines.
    #[error("unsupported mandatory SCRAM extension")]
    UnsupportedExtension,
    /// The server asked for an iteration count of zero or above [`MAX_ITERATIONS`].
    #[error("SCRAM iteration count {0} is out of range")]
    BadIterations(u32),
    /// The server's signature (`v=`) is wrong: the server does not know the password.
    #[error("SCRAM server signature is invalid")]
    BadServerSignature,
    /// The server ended the exchange with `e=<server-error-value>` (an RFC 5802 token such
    /// as `invalid-proof`, kept verbatim because it is the server's own diagnosis).
    #[error("SCRAM server error: {0}")]
    ServerError(String),
    /// A method was called in the wrong order, or again after the exchange ended.
    #[error("SCRAM exchange step called out of order")]
    OutOfOrder,
    /// A stored `SCRAM-SHA-256$...` secret (from the config or userlist) is malformed.
    #[error("invalid SCRAM secret: {0}")]
    BadSecret(&'static str),
}
