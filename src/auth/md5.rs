//! Postgres MD5 password authentication: the stored secret (`md5` + hex(md5(password + user)))
//! and the salted response a client sends in `PasswordMessage`
//! (`md5` + hex(md5(hex-of-secret + salt))).
//!
//! The same functions serve both directions: the pooler verifies clients with
//! [`md5_verify`] and answers a server's `AuthenticationMD5Password` with [`md5_response`].

use md5::{Digest, Md5};

use super::scram_common::ct_eq;

/// Length of `md5` + 32 hex digits.
const SECRET_LEN: usize = 35;

/// The secret Postgres stores for MD5 authentication: `"md5" + hex(md5(password + user))`.
/// Computed once from a plaintext password in the config.
pub fn md5_secret(user: &str, password: &str) -> String {
    md5_hex(&[password.as_bytes(), user.as_bytes()])
}

/// Whether `text` is an MD5 secret as Postgres recognizes one (`md5` + 32 lowercase hex
/// digits), so the config layer can tell secrets from plaintext passwords.
pub fn is_md5_secret(text: &str) -> bool {
    text.len() == SECRET_LEN
        && text.starts_with("md5")
        && text[3..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a client sends for `AuthenticationMD5Password` with `salt`:
/// `"md5" + hex(md5(hex_part_of(secret) + salt))`.
///
/// `secret` is the `md5...` string from [`md5_secret`] or the userlist; if it lacks the `md5`
/// prefix it is hashed whole (the config layer should have rejected it with
/// [`is_md5_secret`]).
pub fn md5_response(secret: &str, salt: [u8; 4]) -> String {
    let hex = secret.strip_prefix("md5").unwrap_or(secret);
    md5_hex(&[hex.as_bytes(), &salt])
}

/// Checks a client's `PasswordMessage` payload against the stored `secret` and the `salt`
/// sent in `AuthenticationMD5Password`, in constant time. One trailing NUL (the C-string
/// terminator of `PasswordMessage`) is tolerated.
pub fn md5_verify(secret: &str, salt: [u8; 4], client_response: &[u8]) -> bool {
    let response = client_response
        .strip_suffix(&[0])
        .unwrap_or(client_response);
    ct_eq(md5_response(secret, salt).as_bytes(), response)
}

/// A fresh random salt for `AuthenticationMD5Password`; never reuse one across logins.
pub fn random_salt() -> [u8; 4] {
    rand::random()
}

/// `"md5"` + lowercase hex of the MD5 of the concatenated `parts`.
fn md5_hex(parts: &[&[u8]]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let mut out = String::with_capacity(SECRET_LEN);
    out.push_str("md5");
    for byte in hasher.finalize() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with coreutils, e.g. `printf 'passworduser' | md5sum`.

    #[test]
    fn secret_known_values() {
        // printf 'passworduser' | md5sum
        assert_eq!(
            md5_secret("user", "password"),
            "md54d45974e13472b5a0be3533de4666414"
        );
        // printf 'secretfoo' | md5sum
        assert_eq!(
            md5_secret("foo", "secret"),
            "md54ab2c5d00339c4b2a4e921d2dc4edec7"
        );
        assert!(is_md5_secret(&md5_secret("u", "p")));
    }

    #[test]
    fn response_known_value() {
        // printf '4d45974e13472b5a0be3533de4666414\x01\x02\x03\x04' | md5sum
        assert_eq!(
            md5_response("md54d45974e13472b5a0be3533de4666414", [1, 2, 3, 4]),
            "md5a3576f1ae039b8996bc4fc2720f9c71a"
        );
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong() {
        let secret = md5_secret("user", "password");
        let salt = [0xde, 0xad, 0xbe, 0xef];
        let good = md5_response(&secret, salt);
        assert!(md5_verify(&secret, salt, good.as_bytes()));
        let mut with_nul = good.clone().into_bytes();
        with_nul.push(0);
        assert!(md5_verify(&secret, salt, &with_nul));
        // Wrong salt, wrong password, truncated, empty.
        assert!(!md5_verify(&secret, [0, 0, 0, 0], good.as_bytes()));
        let other = md5_response(&md5_secret("user", "passw0rd"), salt);
        assert!(!md5_verify(&secret, salt, other.as_bytes()));
        assert!(!md5_verify(&secret, salt, &good.as_bytes()[..34]));
        assert!(!md5_verify(&secret, salt, b""));
        // The secret itself is not a valid response.
        assert!(!md5_verify(&secret, salt, secret.as_bytes()));
    }

    #[test]
    fn secret_recognition() {
        assert!(is_md5_secret("md54d45974e13472b5a0be3533de4666414"));
        assert!(!is_md5_secret("md54D45974E13472B5A0BE3533DE4666414"));
        assert!(!is_md5_secret("md54d45974e13472b5a0be3533de466641"));
        assert!(!is_md5_secret("xx54d45974e13472b5a0be3533de4666414"));
        assert!(!is_md5_secret("password"));
    }

    #[test]
    fn salts_differ() {
        let salts: Vec<[u8; 4]> = (0..8).map(|_| random_salt()).collect();
        assert!(salts.iter().any(|s| *s != salts[0]));
    }
}
