//! The client side of SCRAM-SHA-256, used by the pooler to log in to Postgres.
//!
//! The caller sends [`ScramClient::client_first`] in `SASLInitialResponse` (mechanism
//! [`SCRAM_SHA_256`], see [`select_mechanism`]), feeds the `AuthenticationSASLContinue` payload
//! to [`ScramClient::server_first`] and sends the result in `SASLResponse`, then feeds the
//! `AuthenticationSASLFinal` payload to [`ScramClient::server_final`]. Only after that returns
//! `Ok` has the server proven it knows the secret.
//!
//! Over TLS, [`ScramClient::with_binding`] binds the exchange to the server's certificate
//! (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) when the server offers it, or says `y`
//! ("I can bind, you did not offer") so a server that did offer it detects a downgrade.

use std::fmt;
use std::mem;

use super::channel_binding::TLS_SERVER_END_POINT;
use super::scram_common::{
    attr, b64, client_key, ct_eq, hmac, is_printable, parse_iterations, random_nonce,
    salted_password, server_key, sha256, unb64, unb64_key, xor, Key,
};
use super::scram_server::{SCRAM_SHA_256, SCRAM_SHA_256_PLUS};
use super::AuthError;

/// The highest iteration count accepted from a server. The count drives a PBKDF2 loop (with
/// [`ScramCredentials::Password`]), so a fake server could otherwise burn CPU at will.
/// Postgres defaults to 4096; this leaves room for hardened settings (OWASP suggests 600,000
/// for PBKDF2-HMAC-SHA-256) at well under a second of CPU per server login.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Picks the mechanism to use from those a server lists in `AuthenticationSASL`: always
/// [`SCRAM_SHA_256`] (no channel binding), or [`AuthError::UnsupportedMechanism`] if absent.
pub fn select_mechanism<'a, I>(offered: I) -> Result<&'static str, AuthError>
where
    I: IntoIterator<Item = &'a str>,
{
    if offered.into_iter().any(|m| m == SCRAM_SHA_256) {
        Ok(SCRAM_SHA_256)
    } else {
        Err(AuthError::UnsupportedMechanism)
    }
}

/// Channel binding, as the client side of an exchange uses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientBinding {
    /// Not on TLS: gs2 flag `n`.
    #[default]
    None,
    /// On TLS, but the server did not offer `SCRAM-SHA-256-PLUS`: gs2 flag `y`.
    NotOffered,
    /// `SCRAM-SHA-256-PLUS` with this `tls-server-end-point` data (the hash of the
    /// server's certificate): gs2 flag `p=tls-server-end-point`.
    TlsServerEndPoint(Vec<u8>),
}

/// What the pooler proves to the server with.
#[derive(Clone)]
pub enum ScramCredentials {
    /// The plaintext password (from the config); costs one PBKDF2 run per login, with the
    /// salt and iteration count the server sends.
    Password(String),
    /// Pass-through: the ClientKey recovered from a client's proof plus the ServerKey from
    /// the user's secret (needed to verify the server). No PBKDF2 at login, and the pooler
    /// never needs the plaintext password.
    Keys {
        /// `ClientKey`, from [`super::ScramVerdict::Success`].
        client_key: [u8; 32],
        /// `ServerKey`, from the user's [`super::ScramSecret`]; checks the server's signature.
        server_key: [u8; 32],
    },
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramCredentials::Password(_) => f.write_str("Password(<redacted>)"),
            ScramCredentials::Keys { .. } => f.write_str("Keys(<redacted>)"),
        }
    }
}

/// One SCRAM-SHA-256 exchange, client side: a state machine advanced by
/// [`ScramClient::server_first`] then [`ScramClient::server_final`]. Any error ends it.
pub struct ScramClient {
    /// Our nonce (`r=` in the client-first-message).
    nonce: String,
    /// The `n=` value, SASLname-escaped; empty unless set by [`ScramClient::with_username`].
    username: String,
    binding: ClientBinding,
    state: State,
}

/// Where the exchange is.
enum State {
    /// Waiting for the server-first-message.
    First(ScramCredentials),
    /// Client-final sent; waiting for the server's signature.
    Final { server_signature: Key },
    /// Finished or failed; every further call is [`AuthError::OutOfOrder`].
    Done,
}

impl ScramClient {
    /// Starts an exchange with a random 18-byte (base64) nonce.
    pub fn new(credentials: ScramCredentials) -> ScramClient {
        ScramClient::with_nonce(credentials, &random_nonce())
    }

    /// Starts an exchange with a fixed nonce, for replaying recorded exchanges. The nonce
    /// must be RFC 5802 `printable` (visible ASCII except `,`).
    pub fn with_nonce(credentials: ScramCredentials, client_nonce: &str) -> ScramClient {
        ScramClient {
            nonce: client_nonce.to_owned(),
            username: String::new(),
            binding: ClientBinding::None,
            state: State::First(credentials),
        }
    }

    /// Uses `binding` (see [`ClientBinding`]); the default is [`ClientBinding::None`].
    pub fn with_binding(mut self, binding: ClientBinding) -> ScramClient {
        self.binding = binding;
        self
    }

    /// The mechanism to name in `SASLInitialResponse`: [`SCRAM_SHA_256_PLUS`] when binding
    /// to the server's certificate, else [`SCRAM_SHA_256`].
    pub fn mechanism(&self) -> &'static str {
        match self.binding {
            ClientBinding::TlsServerEndPoint(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    /// The gs2 header: `n,,`, `y,,` or `p=tls-server-end-point,,`.
    fn gs2_header(&self) -> String {
        match self.binding {
            ClientBinding::None => "n,,".to_owned(),
            ClientBinding::NotOffered => "y,,".to_owned(),
            ClientBinding::TlsServerEndPoint(_) => format!("p={TLS_SERVER_END_POINT},,"),
        }
    }

    /// Sends `username` in `n=` (escaped as RFC 5802 requires). Postgres ignores it and
    /// libpq leaves it empty, so the pooler need not call this; it exists so a recorded
    /// exchange with a user name (RFC 7677's) replays byte for byte.
    pub fn with_username(mut self, username: &str) -> ScramClient {
        self.username = username.replace('=', "=3D").replace(',', "=2C");
        self
    }

    /// The client-first-message for `SASLInitialResponse`: `n,,n=,r=<nonce>` without
    /// channel binding (`y,,` or `p=tls-server-end-point,,` with [`ScramClient::with_binding`]).
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header(), self.client_first_bare()).into_bytes()
    }

    /// Takes the server-first-message (`r=...,s=...,i=...`) and returns the
    /// client-final-message with our proof.
    ///
    /// The server's nonce must extend ours, and the iteration count must be in
    /// `1..=`[`MAX_ITERATIONS`]. With [`ScramCredentials::Password`] this runs PBKDF2 with the
    /// server's salt and count; with [`ScramCredentials::Keys`] it uses the given ClientKey
    /// (StoredKey = SHA-256(ClientKey)) and ignores the salt.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::First(credentials) = mem::replace(&mut self.state, State::Done) else {
            return Err(AuthError::OutOfOrder);
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| AuthError::Malformed("server-first-message is not UTF-8"))?;
        let mut parts = text.split(',');
        let first = parts.next();
        if first.is_some_and(|p| p.starts_with("m=")) {
            return Err(AuthError::UnsupportedExtension);
        }
        let nonce = attr(first, b'r', "server-first-message lacks r=")?;
        let salt = attr(parts.next(), b's', "server-first-message lacks s=")?;
        let iterations = attr(parts.next(), b'i', "server-first-message lacks i=")?;
        // Any further attributes are extensions, which SCRAM says to ignore.

        if !is_printable(nonce)
            || nonce.len() <= self.nonce.len()
            || !nonce.starts_with(self.nonce.as_str())
        {
            return Err(AuthError::NonceMismatch);
        }
        let salt = unb64(salt, "s")?;
        let iterations = parse_iterations(iterations)
            .ok_or(AuthError::Malformed("iteration count is not a number"))?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(AuthError::BadIterations(iterations));
        }

        let (client_key, server_key) = match credentials {
            ScramCredentials::Password(password) => {
                let salted = salted_password(password.as_bytes(), &salt, iterations);
                (client_key(&salted), server_key(&salted))
            }
            ScramCredentials::Keys {
                client_key,
                server_key,
            } => (client_key, server_key),
        };
        let stored_key = sha256(&client_key);

        // c= is base64 of our gs2 header plus the binding data (c=biws is base64("n,,")).
        let mut cbind = self.gs2_header().into_bytes();
        if let ClientBinding::TlsServerEndPoint(data) = &self.binding {
            cbind.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={nonce}", b64(&cbind));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare());
        let client_signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof = xor(&client_key, &client_signature);
        self.state = State::Final {
            server_signature: hmac(&server_key, &[auth_message.as_bytes()]),
        };
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Takes the server-final-message and checks the server's signature (`v=`), in constant
    /// time. `e=<error>` becomes [`AuthError::ServerError`]; a wrong signature is
    /// [`AuthError::BadServerSignature`] (the server does not know the secret).
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), AuthError> {
        let State::Final { server_signature } = mem::replace(&mut self.state, State::Done) else {
            return Err(AuthError::OutOfOrder);
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| AuthError::Malformed("server-final-message is not UTF-8"))?;
        let first = text.split(',').next();
        if let Some(error) = first.and_then(|p| p.strip_prefix("e=")) {
            return Err(AuthError::ServerError(error.to_owned()));
        }
        let verifier = attr(first, b'v', "server-final-message lacks v= or e=")?;
        let verifier = unb64_key(verifier, "v")?;
        if ct_eq(&verifier, &server_signature) {
            Ok(())
        } else {
            Err(AuthError::BadServerSignature)
        }
    }

    /// `n=<user>,r=<nonce>`: the client-first-message without its gs2 header.
    fn client_first_bare(&self) -> String {
        format!("n={},r={}", self.username, self.nonce)
    }
}
