//! The server side of SCRAM-SHA-256 (what Postgres does), used to authenticate pooler clients.
//!
//! The caller feeds the `SASLInitialResponse` payload to [`ScramServer::client_first`], sends
//! the result in `AuthenticationSASLContinue`, feeds the `SASLResponse` payload to
//! [`ScramServer::client_final`], and on success sends `server_final` in
//! `AuthenticationSASLFinal`.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`, type `tls-server-end-point`) is offered only when
//! the caller supplies the binding data of the TLS connection
//! ([`ScramServer::with_channel_binding`]); the caller then lists [`ScramServer::mechanisms`]
//! and reports the client's pick with [`ScramServer::select`]. The gs2 flag must agree with
//! the pick, as Postgres requires: `p=tls-server-end-point` only with the `-PLUS` mechanism,
//! and `y` ("I could bind but you did not offer it") is a downgrade when we did offer it.

use std::fmt;
use std::mem;
use std::sync::OnceLock;

use rand::RngCore;

use super::scram_common::{
    attr, b64, ct_eq, hmac, is_printable, random_nonce, sha256, unb64_key, xor, Key,
};
use super::scram_secret::DEFAULT_ITERATIONS;
use super::{AuthError, ScramSecret};

/// The SASL mechanism name, as listed in `AuthenticationSASL` and named in
/// `SASLInitialResponse`.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The channel-binding variant of [`SCRAM_SHA_256`] (`tls-server-end-point` binding).
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Checks the mechanism a client named in `SASLInitialResponse`: only [`SCRAM_SHA_256`] is
/// offered, so anything else (including `SCRAM-SHA-256-PLUS`) is
/// [`AuthError::UnsupportedMechanism`].
pub fn check_mechanism(mechanism: &str) -> Result<(), AuthError> {
    if mechanism == SCRAM_SHA_256 {
        Ok(())
    } else {
        Err(AuthError::UnsupportedMechanism)
    }
}

/// How a completed exchange ended, when every message was well-formed. `Debug` hides the
/// ClientKey, which is as good as the password for logging in.
#[derive(Clone, PartialEq, Eq)]
pub enum ScramVerdict {
    /// The proof is right.
    Success {
        /// The server-final-message (`v=<ServerSignature>`) for `AuthenticationSASLFinal`.
        server_final: Vec<u8>,
        /// The client's `ClientKey`, recovered from its proof; with the secret's `server_key`
        /// it lets the pooler log in to Postgres as this user without the password
        /// ([`super::ScramCredentials::Keys`]).
        client_key: [u8; 32],
    },
    /// The proof is wrong, or the user is unknown (the two are indistinguishable to the
    /// client). The caller answers with an ErrorResponse, not a server-final-message.
    WrongPassword,
}

impl fmt::Debug for ScramVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramVerdict::Success { server_final, .. } => f
                .debug_struct("Success")
                .field("server_final", &String::from_utf8_lossy(server_final))
                .field("client_key", &"<redacted>")
                .finish(),
            ScramVerdict::WrongPassword => f.write_str("WrongPassword"),
        }
    }
}

/// One SCRAM-SHA-256 exchange, server side: a state machine advanced by
/// [`ScramServer::client_first`] then [`ScramServer::client_final`]. Any error ends it.
pub struct ScramServer {
    state: State,
    /// The TLS connection's `tls-server-end-point` data, when channel binding is offered.
    binding: Option<Vec<u8>>,
    /// The client picked [`SCRAM_SHA_256_PLUS`].
    plus: bool,
}

/// Where the exchange is.
enum State {
    /// Waiting for the client-first-message.
    First {
        secret: ScramSecret,
        /// A stand-in secret for an unknown user: the exchange runs, then always fails.
        mock: bool,
        server_nonce: String,
    },
    /// Server-first sent; waiting for the client-final-message.
    Final {
        secret: ScramSecret,
        mock: bool,
        /// Expected `c=` value: base64 of the client's gs2 header.
        channel_binding: String,
        /// The combined nonce (client's + ours).
        nonce: String,
        /// `client-first-message-bare "," server-first-message`: the first two thirds of
        /// the AuthMessage.
        auth_prefix: String,
    },
    /// Finished or failed; every further call is [`AuthError::OutOfOrder`].
    Done,
}

impl ScramServer {
    /// Starts an exchange for a user with `secret`, with a fresh random server nonce.
    ///
    /// `None` means the user is unknown: the exchange runs against a random stand-in secret
    /// (so the server-first-message looks normal) and ends in
    /// [`ScramVerdict::WrongPassword`]. Prefer [`ScramServer::mock`] when the user name is
    /// known, so repeated attempts see a stable salt.
    pub fn new(secret: Option<ScramSecret>) -> ScramServer {
        ScramServer::with_nonce(secret, &random_nonce())
    }

    /// Like [`ScramServer::new`] but with a fixed server nonce, for replaying recorded
    /// exchanges. The nonce must be RFC 5802 `printable` (visible ASCII except `,`).
    pub fn with_nonce(secret: Option<ScramSecret>, server_nonce: &str) -> ScramServer {
        let (secret, mock) = match secret {
            Some(secret) => (secret, false),
            None => (random_stand_in(), true),
        };
        ScramServer {
            state: State::First {
                secret,
                mock,
                server_nonce: server_nonce.to_owned(),
            },
            binding: None,
            plus: false,
        }
    }

    /// Offers channel binding with `data`, the `tls-server-end-point` hash of the
    /// certificate this connection's TLS handshake presented. `None` (plaintext, or a
    /// certificate with no defined hash) offers none.
    pub fn with_channel_binding(mut self, data: Option<Vec<u8>>) -> ScramServer {
        self.binding = data;
        self
    }

    /// The mechanisms to list in `AuthenticationSASL`: [`SCRAM_SHA_256_PLUS`] first when
    /// channel binding is offered (as Postgres lists them), then [`SCRAM_SHA_256`].
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.binding.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// Records the mechanism the client named in `SASLInitialResponse`; anything not in
    /// [`ScramServer::mechanisms`] is [`AuthError::UnsupportedMechanism`].
    pub fn select(&mut self, mechanism: &str) -> Result<(), AuthError> {
        if !self.mechanisms().contains(&mechanism) {
            return Err(AuthError::UnsupportedMechanism);
        }
        self.plus = mechanism == SCRAM_SHA_256_PLUS;
        Ok(())
    }

    /// Starts a mock exchange for an unknown `username`. The salt is derived from the name
    /// and a per-process random key (as Postgres derives its mock salt), so repeated probes
    /// for the same name see the same salt, like for a real user, and the exchange always
    /// ends in [`ScramVerdict::WrongPassword`].
    pub fn mock(username: &str) -> ScramServer {
        static MOCK_KEY: OnceLock<Key> = OnceLock::new();
        let key = MOCK_KEY.get_or_init(|| {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        });
        let mut stand_in = random_stand_in();
        stand_in.salt = hmac(key, &[username.as_bytes()])[..16].to_vec();
        ScramServer {
            state: State::First {
                secret: stand_in,
                mock: true,
                server_nonce: random_nonce(),
            },
            binding: None,
            plus: false,
        }
    }

    /// Takes the client-first-message (the `SASLInitialResponse` payload) and returns the
    /// server-first-message (`r=<nonce>,s=<salt>,i=<iterations>`).
    ///
    /// The gs2 header must be `n,,` or `y,,` (an authzid `a=` is ignored), or
    /// `p=tls-server-end-point,,` after [`SCRAM_SHA_256_PLUS`] was selected; `p=` without
    /// channel binding on offer is [`AuthError::ChannelBindingUnsupported`]. The `n=` user
    /// name is ignored, as Postgres does (libpq sends it empty; the startup packet names
    /// the user).
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::First {
            secret,
            mock,
            server_nonce,
        } = mem::replace(&mut self.state, State::Done)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| AuthError::Malformed("client-first-message is not UTF-8"))?;
        let (gs2_header, bare) = split_gs2_header(text)?;
        let channel_binding =
            b64(&[gs2_header.as_bytes(), self.check_binding_flag(gs2_header)?].concat());

        let mut parts = bare.split(',');
        let first = parts.next();
        if first.is_some_and(|p| p.starts_with("m=")) {
            return Err(AuthError::UnsupportedExtension);
        }
        attr(first, b'n', "client-first-message lacks n=")?;
        let client_nonce = attr(parts.next(), b'r', "client-first-message lacks r=")?;
        if !is_printable(client_nonce) {
            return Err(AuthError::Malformed(
                "client nonce is empty or not printable",
            ));
        }
        // Any further attributes are extensions, which SCRAM says to ignore.

        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", b64(&secret.salt), secret.iterations);
        let reply = server_first.clone().into_bytes();
        self.state = State::Final {
            secret,
            mock,
            channel_binding,
            nonce,
            auth_prefix: format!("{bare},{server_first}"),
        };
        Ok(reply)
    }

    /// Takes the client-final-message (the `SASLResponse` payload) and checks it: `c=` must
    /// match the gs2 header, `r=` the combined nonce, and `p=` must be 32 bytes of base64
    /// that prove knowledge of the password (checked in constant time).
    ///
    /// Malformed input is an error; a well-formed wrong proof is
    /// [`ScramVerdict::WrongPassword`].
    pub fn client_final(&mut self, data: &[u8]) -> Result<ScramVerdict, AuthError> {
        let State::Final {
            secret,
            mock,
            channel_binding,
            nonce,
            auth_prefix,
        } = mem::replace(&mut self.state, State::Done)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| AuthError::Malformed("client-final-message is not UTF-8"))?;
        // The proof is the last attribute; base64 has no ',' so the last ",p=" is it.
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("client-final-message lacks p="))?;
        let mut parts = without_proof.split(',');
        let cbind = attr(parts.next(), b'c', "client-final-message lacks c=")?;
        let final_nonce = attr(parts.next(), b'r', "client-final-message lacks r=")?;
        if cbind != channel_binding {
            return Err(AuthError::ChannelBindingMismatch);
        }
        if final_nonce != nonce {
            return Err(AuthError::NonceMismatch);
        }
        let proof = unb64_key(proof, "p")?;

        let auth_message = format!("{auth_prefix},{without_proof}");
        let client_signature = hmac(&secret.stored_key, &[auth_message.as_bytes()]);
        let client_key = xor(&proof, &client_signature);
        let proof_ok = ct_eq(&sha256(&client_key), &secret.stored_key);
        if mock || !proof_ok {
            return Ok(ScramVerdict::WrongPassword);
        }
        let server_signature = hmac(&secret.server_key, &[auth_message.as_bytes()]);
        Ok(ScramVerdict::Success {
            server_final: format!("v={}", b64(&server_signature)).into_bytes(),
            client_key,
        })
    }
}

impl ScramServer {
    /// Checks the gs2 channel-binding flag against what was offered and selected; returns
    /// the binding data the client must echo in `c=` after the header (empty without).
    fn check_binding_flag(&self, gs2_header: &str) -> Result<&[u8], AuthError> {
        let flag = gs2_header.split(',').next().unwrap_or_default();
        match (flag, &self.binding, self.plus) {
            ("n", _, false) => Ok(&[]),
            ("y", None, false) => Ok(&[]),
            ("y", Some(_), false) => Err(AuthError::ChannelBindingNegotiation(
                "the client supports channel binding but thinks the server does not, \
                 although SCRAM-SHA-256-PLUS was offered",
            )),
            (_, None, _) => Err(AuthError::ChannelBindingUnsupported),
            ("n" | "y", Some(_), true) => Err(AuthError::ChannelBindingNegotiation(
                "SCRAM-SHA-256-PLUS was selected but the message has no channel binding",
            )),
            (p, Some(data), true) => match p.strip_prefix("p=") {
                Some(super::channel_binding::TLS_SERVER_END_POINT) => Ok(data),
                _ => Err(AuthError::ChannelBindingUnsupported),
            },
            (_, Some(_), false) => Err(AuthError::ChannelBindingNegotiation(
                "channel binding data was sent but the mechanism is SCRAM-SHA-256",
            )),
        }
    }
}

/// Splits `gs2-header client-first-message-bare`, returning the header (with its trailing
/// comma, as `c=` encodes it) and the bare message.
fn split_gs2_header(text: &str) -> Result<(&str, &str), AuthError> {
    let (flag, rest) = text.split_once(',').ok_or(AuthError::Malformed(
        "client-first-message lacks a gs2 header",
    ))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {}
        _ => return Err(AuthError::Malformed("bad gs2 channel-binding flag")),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(AuthError::Malformed(
        "client-first-message gs2 header is unterminated",
    ))?;
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(AuthError::Malformed("bad gs2 authzid"));
    }
    let header_len = flag.len() + 1 + authzid.len() + 1;
    Ok((&text[..header_len], bare))
}

/// A random secret for an unknown user; nothing can match its keys.
fn random_stand_in() -> ScramSecret {
    let mut rng = rand::thread_rng();
    let mut salt = vec![0u8; 16];
    let mut stored_key = [0u8; 32];
    let mut server_key = [0u8; 32];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut stored_key);
    rng.fill_bytes(&mut server_key);
    ScramSecret {
        iterations: DEFAULT_ITERATIONS,
        salt,
        stored_key,
        server_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_never_succeeds_even_with_a_valid_proof() {
        // RFC 7677's exchange, but the server is told the user is unknown while holding the
        // matching secret: the verdict must still be WrongPassword.
        let salt = super::super::scram_common::unb64("W22ZaJ0SNY7soEsUEjb6gQ==", "s").unwrap();
        let mut server = ScramServer {
            state: State::First {
                secret: ScramSecret::from_password("pencil", &salt, 4096),
                mock: true,
                server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned(),
            },
            binding: None,
            plus: false,
        };
        server
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            server.client_final(client_final.as_bytes()),
            Ok(ScramVerdict::WrongPassword)
        );
    }
}
