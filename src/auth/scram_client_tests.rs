//! (Test-only module: its parent declares it under `#[cfg(test)]`.)
//! Tests for the SCRAM client's handling of bad server messages (a fake or broken server):
//! nonces that do not extend ours, bad salts and iteration counts, wrong signatures, `e=`.

use super::scram_common::b64;
use super::scram_tests::{CLIENT_NONCE, SALT_B64, SERVER_FINAL, SERVER_FIRST, SERVER_NONCE};
use super::*;

/// A client that has answered the RFC server-first-message.
fn rfc_client_after_first() -> ScramClient {
    let mut client =
        ScramClient::with_nonce(ScramCredentials::Password("pencil".into()), CLIENT_NONCE)
            .with_username("user");
    client.server_first(SERVER_FIRST.as_bytes()).unwrap();
    client
}

#[test]
fn client_rejects_bad_server_first() {
    let n = format!("{CLIENT_NONCE}{SERVER_NONCE}");
    let cases: Vec<(String, AuthError)> = vec![
        (
            format!("r=other{SERVER_NONCE},s={SALT_B64},i=4096"),
            AuthError::NonceMismatch,
        ),
        (
            format!("r={CLIENT_NONCE},s={SALT_B64},i=4096"),
            AuthError::NonceMismatch,
        ),
        (
            format!("r={n}\u{7f},s={SALT_B64},i=4096"),
            AuthError::NonceMismatch,
        ),
        (format!("r={n},s=!!!,i=4096"), AuthError::InvalidBase64("s")),
        (
            format!("r={n},s={SALT_B64},i=0"),
            AuthError::BadIterations(0),
        ),
        (
            format!("r={n},s={SALT_B64},i=1000001"),
            AuthError::BadIterations(1_000_001),
        ),
        (
            format!("r={n},s={SALT_B64},i=-1"),
            AuthError::Malformed("iteration count is not a number"),
        ),
        (
            format!("r={n},s={SALT_B64},i=99999999999"),
            AuthError::Malformed("iteration count is not a number"),
        ),
        (
            format!("r={n},s={SALT_B64}"),
            AuthError::Malformed("server-first-message lacks i="),
        ),
        (
            format!("r={n},i=4096"),
            AuthError::Malformed("server-first-message lacks s="),
        ),
        (
            format!("s={SALT_B64},i=4096"),
            AuthError::Malformed("server-first-message lacks r="),
        ),
        (
            format!("m=x,r={n},s={SALT_B64},i=4096"),
            AuthError::UnsupportedExtension,
        ),
        (
            String::new(),
            AuthError::Malformed("server-first-message lacks r="),
        ),
    ];
    for (input, expected) in cases {
        let mut client =
            ScramClient::with_nonce(ScramCredentials::Password("p".into()), CLIENT_NONCE);
        assert_eq!(
            client.server_first(input.as_bytes()),
            Err(expected),
            "{input}"
        );
    }
}

#[test]
fn client_rejects_bad_server_final() {
    let wrong = format!("v={}", b64(&[0u8; 32]));
    let cases: Vec<(&str, AuthError)> = vec![
        (&wrong, AuthError::BadServerSignature),
        (
            "e=invalid-proof",
            AuthError::ServerError("invalid-proof".into()),
        ),
        ("v=!!!", AuthError::InvalidBase64("v")),
        ("v=AAAA", AuthError::InvalidBase64("v")),
        (
            "x=1",
            AuthError::Malformed("server-final-message lacks v= or e="),
        ),
        (
            "",
            AuthError::Malformed("server-final-message lacks v= or e="),
        ),
    ];
    for (input, expected) in cases {
        let mut client = rfc_client_after_first();
        assert_eq!(
            client.server_final(input.as_bytes()),
            Err(expected),
            "{input}"
        );
    }
    // Extensions after v= are ignored.
    let mut client = rfc_client_after_first();
    let with_ext = format!("{SERVER_FINAL},x=1");
    assert_eq!(client.server_final(with_ext.as_bytes()), Ok(()));
}
