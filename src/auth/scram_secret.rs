//! The server-side SCRAM-SHA-256 verifier (`SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>`,
//! as in `pg_authid.rolpassword`): parsing, printing, and deriving it from a password.
//!
//! Deriving costs a PBKDF2 run, so the config layer does it once at load time and every login
//! reuses the result.

use std::fmt;

use rand::RngCore;

use super::scram_common::{b64, client_key, salted_password, server_key, sha256, unb64, Key};
use super::AuthError;

/// Iteration count Postgres uses by default (`scram_iterations`), and what
/// [`ScramSecret::generate`] uses.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length Postgres uses for generated secrets.
const SALT_LEN: usize = 16;

/// The text prefix of a SCRAM-SHA-256 secret.
const PREFIX: &str = "SCRAM-SHA-256$";

/// A server-side SCRAM-SHA-256 verifier: what Postgres stores in pg_authid.rolpassword.
///
/// It lets the pooler check a client's proof (and recover the client's `ClientKey` for
/// pass-through login) without knowing the password. `Debug` hides the keys so a secret
/// can sit in a logged config struct.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count (`i=`), at least 1.
    pub iterations: u32,
    /// The salt, raw bytes (base64 in the text form).
    pub salt: Vec<u8>,
    /// `StoredKey = SHA-256(ClientKey)`; verifies client proofs.
    pub stored_key: [u8; 32],
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`; signs the server-final-message.
    pub server_key: [u8; 32],
}

impl ScramSecret {
    /// Parses the text form `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`
    /// found in userlists and `pg_authid`. Errors are [`AuthError::BadSecret`] (a config
    /// problem, not a peer one).
    pub fn parse(text: &str) -> Result<ScramSecret, AuthError> {
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(AuthError::BadSecret("missing SCRAM-SHA-256$ prefix"))?;
        let (iter_salt, keys) = rest
            .split_once('$')
            .ok_or(AuthError::BadSecret("missing '$' before the keys"))?;
        let (iterations, salt) = iter_salt.split_once(':').ok_or(AuthError::BadSecret(
            "missing ':' between iterations and salt",
        ))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(AuthError::BadSecret("missing ':' between the keys"))?;

        let iterations = super::scram_common::parse_iterations(iterations)
            .filter(|&i| i > 0)
            .ok_or(AuthError::BadSecret(
                "iteration count is not a positive number",
            ))?;
        let salt = unb64(salt, "salt").map_err(|_| AuthError::BadSecret("salt is not base64"))?;
        if salt.is_empty() {
            return Err(AuthError::BadSecret("salt is empty"));
        }
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: decode_key(stored_key, "StoredKey is not 32 bytes of base64")?,
            server_key: decode_key(server_key, "ServerKey is not 32 bytes of base64")?,
        })
    }

    /// Derives the verifier from a password, exactly as Postgres would for the same salt and
    /// iteration count (PBKDF2-HMAC-SHA-256; one PBKDF2 run, so call it at config load).
    ///
    /// SASLprep: Postgres (and libpq) normalize the password with SASLprep (RFC 4013) when it
    /// is valid UTF-8 and has no prohibited characters. That is the identity on every ASCII
    /// password (ASCII control characters make SASLprep fail, and then the raw bytes are used
    /// too), so ASCII passwords match Postgres byte for byte. Non-ASCII passwords are used
    /// as-is (no NFKC table is in our dependencies); they match Postgres only if already in
    /// SASLprep form (NFKC, no non-ASCII spaces or soft hyphens etc.).
    ///
    /// An iteration count of 0 is treated as 1, so the result always round-trips through
    /// [`ScramSecret::parse`].
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        let iterations = iterations.max(1);
        let salted = salted_password(password.as_bytes(), salt, iterations);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key(&salted)),
            server_key: server_key(&salted),
        }
    }

    /// Derives a verifier with a fresh random 16-byte salt and [`DEFAULT_ITERATIONS`], as
    /// Postgres does for `ALTER ROLE ... PASSWORD` (for plaintext passwords in the config).
    pub fn generate(password: &str) -> ScramSecret {
        let mut salt = [0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        ScramSecret::from_password(password, &salt, DEFAULT_ITERATIONS)
    }

    /// The text form; the inverse of [`ScramSecret::parse`].
    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            b64(&self.salt),
            b64(&self.stored_key),
            b64(&self.server_key)
        )
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &b64(&self.salt))
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// Decodes one of the two 32-byte keys of the text form.
fn decode_key(text: &str, err: &'static str) -> Result<Key, AuthError> {
    let bytes = unb64(text, "key").map_err(|_| AuthError::BadSecret(err))?;
    Key::try_from(bytes.as_slice()).map_err(|_| AuthError::BadSecret(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced by Postgres's algorithm for password "secret" and salt 1..=16 (the value
    /// postgres-protocol's own test pins).
    const SECRET_TEXT: &str = "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$\
        8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=";

    #[test]
    fn from_password_matches_known_secret() {
        let salt: Vec<u8> = (1..=16).collect();
        let secret = ScramSecret::from_password("secret", &salt, 4096);
        assert_eq!(secret.to_text(), SECRET_TEXT);
    }

    #[test]
    fn parse_round_trip() {
        let secret = ScramSecret::parse(SECRET_TEXT).unwrap();
        assert_eq!(secret.iterations, 4096);
        assert_eq!(secret.salt, (1..=16).collect::<Vec<u8>>());
        assert_eq!(secret.to_text(), SECRET_TEXT);
        assert_eq!(
            secret,
            ScramSecret::from_password("secret", &secret.salt, 4096)
        );
    }

    #[test]
    fn generate_is_salted_randomly_and_round_trips() {
        let a = ScramSecret::generate("pw");
        let b = ScramSecret::generate("pw");
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
        assert_eq!(a.salt.len(), 16);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert_eq!(ScramSecret::parse(&a.to_text()).unwrap(), a);
        assert_eq!(
            a,
            ScramSecret::from_password("pw", &a.salt, DEFAULT_ITERATIONS)
        );
    }

    #[test]
    fn zero_iterations_are_clamped() {
        let s = ScramSecret::from_password("pw", b"salt", 0);
        assert_eq!(s.iterations, 1);
        assert_eq!(ScramSecret::parse(&s.to_text()).unwrap(), s);
    }

    #[test]
    fn debug_hides_keys() {
        let shown = format!("{:?}", ScramSecret::parse(SECRET_TEXT).unwrap());
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("8rrDg00"));
    }

    #[test]
    fn parse_rejects_malformed() {
        let bad = [
            "",
            "md5abc",
            "SCRAM-SHA-256$4096:AQID",
            "SCRAM-SHA-256$4096AQID$a:b",
            "SCRAM-SHA-256$0:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
            "SCRAM-SHA-256$-1:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
            "SCRAM-SHA-256$4096:$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
            "SCRAM-SHA-256$4096:!!!$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
            // StoredKey too short (31 bytes).
            "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=",
            "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=",
        ];
        for text in bad {
            assert!(
                matches!(ScramSecret::parse(text), Err(AuthError::BadSecret(_))),
                "accepted {text:?}"
            );
        }
    }
}
