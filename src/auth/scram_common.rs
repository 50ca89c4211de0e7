//! Shared SCRAM-SHA-256 building blocks (RFC 5802 / RFC 7677): the key-derivation primitives,
//! a constant-time comparison, and small helpers for the `a=value,...` attribute syntax.
//!
//! Private to the `auth` module; the server, client and secret files build on these.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::AuthError;

/// A SHA-256-sized key or digest.
pub(crate) type Key = [u8; 32];

/// Bytes of randomness in a nonce (base64 makes 24 printable characters).
pub(crate) const NONCE_BYTES: usize = 18;

/// HMAC-SHA-256 over the concatenation of `parts`, keyed by a 32-byte key.
///
/// RFC 2104 zero-pads keys shorter than the 64-byte block, so keying with the padded block is
/// the same function; it spares the fallible `new_from_slice` (and an `expect`).
pub(crate) fn hmac(key: &Key, parts: &[&[u8]]) -> Key {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// `SaltedPassword := Hi(password, salt, i)`, i.e. PBKDF2-HMAC-SHA-256 with one output block.
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Key {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

/// `ClientKey := HMAC(SaltedPassword, "Client Key")`.
pub(crate) fn client_key(salted_password: &Key) -> Key {
    hmac(salted_password, &[b"Client Key"])
}

/// `ServerKey := HMAC(SaltedPassword, "Server Key")`.
pub(crate) fn server_key(salted_password: &Key) -> Key {
    hmac(salted_password, &[b"Server Key"])
}

/// Byte-wise XOR of two keys (ClientProof <-> ClientKey).
pub(crate) fn xor(a: &Key, b: &Key) -> Key {
    let mut out = *a;
    for (o, b) in out.iter_mut().zip(b) {
        *o ^= b;
    }
    out
}

/// Compares without an early exit, so timing does not reveal how many leading bytes match.
/// Lengths are not secret here (proofs and signatures have fixed sizes).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Standard (padded) base64, as SCRAM and `pg_authid` use.
pub(crate) fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard base64; `attr` names the attribute for the error.
pub(crate) fn unb64(text: &str, attr: &'static str) -> Result<Vec<u8>, AuthError> {
    STANDARD
        .decode(text)
        .map_err(|_| AuthError::InvalidBase64(attr))
}

/// Decodes a base64 attribute that must hold exactly 32 bytes (a proof or a signature).
pub(crate) fn unb64_key(text: &str, attr: &'static str) -> Result<Key, AuthError> {
    let bytes = unb64(text, attr)?;
    Key::try_from(bytes.as_slice()).map_err(|_| AuthError::InvalidBase64(attr))
}

/// A fresh random nonce: [`NONCE_BYTES`] bytes from the thread's CSPRNG, base64-encoded
/// (base64 never contains `,`, so it is a valid `printable` nonce).
pub(crate) fn random_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    b64(&bytes)
}

/// RFC 5802 `printable`: `%x21-2B / %x2D-7E` (visible ASCII except `,`), and non-empty.
pub(crate) fn is_printable(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| matches!(b, 0x21..=0x2b | 0x2d..=0x7e))
}

/// Interprets `part` (one comma-separated piece of a SCRAM message) as attribute `name`,
/// returning its value. `missing` explains the failure if the piece is absent or different.
pub(crate) fn attr<'a>(
    part: Option<&'a str>,
    name: u8,
    missing: &'static str,
) -> Result<&'a str, AuthError> {
    match part {
        Some(p) if p.len() >= 2 && p.as_bytes()[0] == name && p.as_bytes()[1] == b'=' => {
            Ok(&p[2..])
        }
        _ => Err(AuthError::Malformed(missing)),
    }
}

/// Parses an RFC 5802 iteration count (`i=` value): ASCII digits only (no sign), fitting in
/// a `u32`.
pub(crate) fn parse_iterations(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_hmac_matches_hmac_crate() {
        // Keying with the zero-padded 64-byte block must equal keying with the 32-byte slice.
        let key = [7u8; 32];
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(b"Client Key");
        let expected: Key = mac.finalize().into_bytes().into();
        assert_eq!(hmac(&key, &[b"Client ", b"Key"]), expected);
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn printable_and_iterations() {
        assert!(is_printable(
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        ));
        assert!(!is_printable("a,b"));
        assert!(!is_printable(""));
        assert!(!is_printable("caf\u{e9}"));
        assert_eq!(parse_iterations("4096"), Some(4096));
        assert_eq!(parse_iterations("+4096"), None);
        assert_eq!(parse_iterations("99999999999"), None);
        assert_eq!(parse_iterations(""), None);
    }

    #[test]
    fn random_nonce_is_printable_and_fresh() {
        let (a, b) = (random_nonce(), random_nonce());
        assert_eq!(a.len(), 24);
        assert!(is_printable(&a));
        assert_ne!(a, b);
    }
}
