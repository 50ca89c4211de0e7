//! (Test-only module: its parent declares it under `#[cfg(test)]`.)
//! Tests for the SCRAM server and client: RFC 7677's recorded exchange replayed through each
//! side, the two sides against each other (password and pass-through keys), and rejection
//! of wrong, tampered and malformed messages.

use super::scram_common::b64;
use super::*;

pub(super) const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
pub(super) const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
pub(super) const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
pub(super) const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
pub(super) const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
/// The `pg_authid` secret for "pencil" with the RFC's salt, computed independently with
/// Python's hashlib/hmac.
const RFC_SECRET: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
    WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
/// ClientKey for "pencil" with the RFC's salt (same independent computation), hex.
const RFC_CLIENT_KEY: &str = "a60fc923d67e8644a92d16b96eda5ef4656b0c725c484374be25535576996e8b";

fn rfc_secret() -> ScramSecret {
    let salt = scram_common::unb64(SALT_B64, "s").unwrap();
    ScramSecret::from_password("pencil", &salt, 4096)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a full exchange with fresh nonces; returns the server's verdict and, on success,
/// the client's check of the server signature.
fn run(
    secret: Option<ScramSecret>,
    creds: ScramCredentials,
) -> (ScramVerdict, Option<Result<(), AuthError>>) {
    let mut server = ScramServer::new(secret);
    let mut client = ScramClient::new(creds);
    let server_first = server.client_first(&client.client_first()).unwrap();
    let client_final = client.server_first(&server_first).unwrap();
    let verdict = server.client_final(&client_final).unwrap();
    let checked = match &verdict {
        ScramVerdict::Success { server_final, .. } => Some(client.server_final(server_final)),
        ScramVerdict::WrongPassword => None,
    };
    (verdict, checked)
}

/// A server that has answered `client_first` (with the RFC vector's nonces and secret).
fn rfc_server_after(client_first: &str) -> Result<ScramServer, AuthError> {
    let mut server = ScramServer::with_nonce(Some(rfc_secret()), SERVER_NONCE);
    server.client_first(client_first.as_bytes())?;
    Ok(server)
}

#[test]
fn rfc7677_secret_matches_independent_derivation() {
    assert_eq!(rfc_secret().to_text(), RFC_SECRET);
    assert_eq!(ScramSecret::parse(RFC_SECRET).unwrap(), rfc_secret());
}

#[test]
fn rfc7677_server_replay() {
    let mut server = ScramServer::with_nonce(Some(rfc_secret()), SERVER_NONCE);
    let server_first = server.client_first(CLIENT_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(server_first).unwrap(), SERVER_FIRST);
    match server.client_final(CLIENT_FINAL.as_bytes()).unwrap() {
        ScramVerdict::Success {
            server_final,
            client_key,
        } => {
            assert_eq!(String::from_utf8(server_final).unwrap(), SERVER_FINAL);
            assert_eq!(hex(&client_key), RFC_CLIENT_KEY);
        }
        ScramVerdict::WrongPassword => panic!("RFC 7677 proof rejected"),
    }
    // The exchange is over.
    assert_eq!(
        server.client_final(CLIENT_FINAL.as_bytes()),
        Err(AuthError::OutOfOrder)
    );
}

#[test]
fn rfc7677_client_replay_password_and_keys() {
    let secret = rfc_secret();
    let client_key = scram_common::client_key(&scram_common::salted_password(
        b"pencil",
        &secret.salt,
        4096,
    ));
    let keys = ScramCredentials::Keys {
        client_key,
        server_key: secret.server_key,
    };
    for creds in [ScramCredentials::Password("pencil".into()), keys] {
        let mut client = ScramClient::with_nonce(creds, CLIENT_NONCE).with_username("user");
        assert_eq!(client.client_first(), CLIENT_FIRST.as_bytes());
        let client_final = client.server_first(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), CLIENT_FINAL);
        assert_eq!(client.server_final(SERVER_FINAL.as_bytes()), Ok(()));
    }
}

#[test]
fn client_first_default_form() {
    let client = ScramClient::with_nonce(ScramCredentials::Password("x".into()), "abc");
    assert_eq!(client.client_first(), b"n,,n=,r=abc");
    let random = ScramClient::new(ScramCredentials::Password("x".into())).client_first();
    let random = String::from_utf8(random).unwrap();
    let nonce = random.strip_prefix("n,,n=,r=").unwrap();
    assert_eq!(nonce.len(), 24);
}

#[test]
fn password_exchange_succeeds() {
    let secret = ScramSecret::generate("hunter2");
    let (verdict, checked) = run(Some(secret), ScramCredentials::Password("hunter2".into()));
    assert!(matches!(verdict, ScramVerdict::Success { .. }));
    assert_eq!(checked, Some(Ok(())));
}

#[test]
fn pass_through_keys_succeed() {
    let secret = ScramSecret::generate("hunter2");
    let (verdict, _) = run(
        Some(secret.clone()),
        ScramCredentials::Password("hunter2".into()),
    );
    let ScramVerdict::Success { client_key, .. } = verdict else {
        panic!("password login failed");
    };
    // The pooler now logs in to "Postgres" (another server with the same secret) using
    // only what it learned: the ClientKey and the secret's ServerKey.
    let keys = ScramCredentials::Keys {
        client_key,
        server_key: secret.server_key,
    };
    let (verdict, checked) = run(Some(secret), keys);
    match verdict {
        ScramVerdict::Success { client_key: k, .. } => assert_eq!(k, client_key),
        ScramVerdict::WrongPassword => panic!("pass-through login failed"),
    }
    assert_eq!(checked, Some(Ok(())));
}

#[test]
fn wrong_password_and_wrong_keys_are_rejected() {
    let secret = ScramSecret::generate("hunter2");
    let (verdict, _) = run(
        Some(secret.clone()),
        ScramCredentials::Password("hunter3".into()),
    );
    assert_eq!(verdict, ScramVerdict::WrongPassword);
    let keys = ScramCredentials::Keys {
        client_key: [9; 32],
        server_key: secret.server_key,
    };
    assert_eq!(run(Some(secret), keys).0, ScramVerdict::WrongPassword);
}

#[test]
fn tampered_proof_is_wrong_password() {
    let mut server = rfc_server_after(CLIENT_FIRST).unwrap();
    let tampered = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    assert_eq!(
        server.client_final(tampered.as_bytes()),
        Ok(ScramVerdict::WrongPassword)
    );
}

#[test]
fn unknown_user_runs_a_plausible_exchange_then_fails() {
    // Even the right password for some other secret cannot succeed against the stand-in.
    let mut server = ScramServer::new(None);
    let mut client = ScramClient::new(ScramCredentials::Password("pencil".into()));
    let server_first = server.client_first(&client.client_first()).unwrap();
    let text = String::from_utf8(server_first.clone()).unwrap();
    let parts: Vec<&str> = text.split(',').collect();
    assert_eq!(parts.len(), 3);
    assert!(parts[0].starts_with("r=") && parts[0].len() == 2 + 24 + 24);
    assert_eq!(scram_common::unb64(&parts[1][2..], "s").unwrap().len(), 16);
    assert_eq!(parts[2], "i=4096");
    // A real client accepts it.
    let client_final = client.server_first(&server_first).unwrap();
    assert_eq!(
        server.client_final(&client_final),
        Ok(ScramVerdict::WrongPassword)
    );
}

#[test]
fn mock_salt_is_stable_per_user() {
    fn salt_of(mut server: ScramServer) -> String {
        let reply = server.client_first(b"n,,n=,r=abc").unwrap();
        let text = String::from_utf8(reply).unwrap();
        text.split(',').nth(1).unwrap().to_owned()
    }
    let bob = salt_of(ScramServer::mock("bob"));
    assert_eq!(bob, salt_of(ScramServer::mock("bob")));
    assert_ne!(bob, salt_of(ScramServer::mock("alice")));
    let mut server = ScramServer::mock("bob");
    let mut client = ScramClient::new(ScramCredentials::Password("x".into()));
    let first = server.client_first(&client.client_first()).unwrap();
    let last = client.server_first(&first).unwrap();
    assert_eq!(server.client_final(&last), Ok(ScramVerdict::WrongPassword));
}

#[test]
fn server_rejects_malformed_client_first() {
    let cases: &[(&[u8], AuthError)] = &[
        (
            b"",
            AuthError::Malformed("client-first-message lacks a gs2 header"),
        ),
        (
            b"n,",
            AuthError::Malformed("client-first-message gs2 header is unterminated"),
        ),
        (
            b"x,,n=,r=abc",
            AuthError::Malformed("bad gs2 channel-binding flag"),
        ),
        (b"n,b=x,n=,r=abc", AuthError::Malformed("bad gs2 authzid")),
        (
            b"n,,r=abc",
            AuthError::Malformed("client-first-message lacks n="),
        ),
        (
            b"n,,n=",
            AuthError::Malformed("client-first-message lacks r="),
        ),
        (
            b"n,,n=,x=abc",
            AuthError::Malformed("client-first-message lacks r="),
        ),
        (
            b"n,,n=,r=",
            AuthError::Malformed("client nonce is empty or not printable"),
        ),
        (
            b"n,,n=,r=ab\x7fc",
            AuthError::Malformed("client nonce is empty or not printable"),
        ),
        (
            b"n,,n=,r=\xff",
            AuthError::Malformed("client-first-message is not UTF-8"),
        ),
        (b"n,,m=x,n=,r=abc", AuthError::UnsupportedExtension),
        (
            b"p=tls-server-end-point,,n=,r=abc",
            AuthError::ChannelBindingUnsupported,
        ),
    ];
    for (input, expected) in cases {
        let mut server = ScramServer::with_nonce(Some(rfc_secret()), SERVER_NONCE);
        assert_eq!(
            server.client_first(input).as_ref(),
            Err(expected),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        // A failed step ends the exchange.
        assert_eq!(
            server.client_first(b"n,,n=,r=abc"),
            Err(AuthError::OutOfOrder)
        );
    }
}

#[test]
fn server_rejects_malformed_client_final() {
    let nonce = format!("{CLIENT_NONCE}{SERVER_NONCE}");
    let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let short_proof = format!("p={}", b64(&[0u8; 31]));
    let cases: Vec<(String, AuthError)> = vec![
        (
            format!("c=biws,r={nonce}"),
            AuthError::Malformed("client-final-message lacks p="),
        ),
        (
            format!("r={nonce},{proof}"),
            AuthError::Malformed("client-final-message lacks c="),
        ),
        (
            "c=biws,".to_owned() + proof,
            AuthError::Malformed("client-final-message lacks r="),
        ),
        (
            format!("c=eSws,r={nonce},{proof}"),
            AuthError::ChannelBindingMismatch,
        ),
        (
            format!("c=biws,r={nonce}X,{proof}"),
            AuthError::NonceMismatch,
        ),
        (
            format!("c=biws,r={CLIENT_NONCE},{proof}"),
            AuthError::NonceMismatch,
        ),
        (
            format!("c=biws,r={nonce},p=!!notbase64"),
            AuthError::InvalidBase64("p"),
        ),
        (
            format!("c=biws,r={nonce},{short_proof}"),
            AuthError::InvalidBase64("p"),
        ),
        // The proof must come last.
        (
            format!("c=biws,r={nonce},{proof},x=1"),
            AuthError::InvalidBase64("p"),
        ),
    ];
    for (input, expected) in cases {
        let mut server = rfc_server_after(CLIENT_FIRST).unwrap();
        assert_eq!(
            server.client_final(input.as_bytes()),
            Err(expected),
            "{input}"
        );
    }
    let mut server = rfc_server_after(CLIENT_FIRST).unwrap();
    assert_eq!(
        server.client_final(b"\xff"),
        Err(AuthError::Malformed("client-final-message is not UTF-8"))
    );
}

#[test]
fn server_accepts_y_flag_authzid_and_extensions() {
    // "y,," (client could bind, thinks we can't) must be echoed as c=eSws.
    for (header, cbind) in [("y,,", "eSws"), ("n,a=bob,", "bixhPWJvYiw=")] {
        let mut server = ScramServer::with_nonce(Some(rfc_secret()), "SRV");
        let first = format!("{header}n=,r=CLI,ext=ignored");
        server.client_first(first.as_bytes()).unwrap();
        let fin = format!("c={cbind},r=CLISRV,p={}", b64(&[0; 32]));
        assert_eq!(
            server.client_final(fin.as_bytes()),
            Ok(ScramVerdict::WrongPassword),
            "{header}"
        );
    }
    assert_eq!(b64(b"n,a=bob,"), "bixhPWJvYiw=");
}

#[test]
fn out_of_order_calls_are_errors() {
    let mut server = ScramServer::new(Some(rfc_secret()));
    assert_eq!(
        server.client_final(CLIENT_FINAL.as_bytes()),
        Err(AuthError::OutOfOrder)
    );
    let mut client = ScramClient::new(ScramCredentials::Password("pencil".into()));
    assert_eq!(
        client.server_final(SERVER_FINAL.as_bytes()),
        Err(AuthError::OutOfOrder)
    );
    let mut client = ScramClient::with_nonce(ScramCredentials::Password("p".into()), CLIENT_NONCE);
    client.server_first(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        client.server_first(SERVER_FIRST.as_bytes()),
        Err(AuthError::OutOfOrder)
    );
}

#[test]
fn username_is_escaped_and_ignored_by_server() {
    let secret = ScramSecret::generate("pw");
    let mut server = ScramServer::new(Some(secret));
    let mut client =
        ScramClient::new(ScramCredentials::Password("pw".into())).with_username("a,b=c");
    let first = client.client_first();
    assert!(first.starts_with(b"n,,n=a=2Cb=3Dc,r="));
    let server_first = server.client_first(&first).unwrap();
    let fin = client.server_first(&server_first).unwrap();
    let ScramVerdict::Success { server_final, .. } = server.client_final(&fin).unwrap() else {
        panic!("login with a user name failed");
    };
    assert_eq!(client.server_final(&server_final), Ok(()));
}

#[test]
fn mechanisms() {
    assert_eq!(check_mechanism("SCRAM-SHA-256"), Ok(()));
    assert_eq!(
        check_mechanism("SCRAM-SHA-256-PLUS"),
        Err(AuthError::UnsupportedMechanism)
    );
    assert_eq!(
        select_mechanism(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
        Ok(SCRAM_SHA_256)
    );
    assert_eq!(
        select_mechanism(["SCRAM-SHA-256-PLUS"]),
        Err(AuthError::UnsupportedMechanism)
    );
    assert_eq!(select_mechanism([]), Err(AuthError::UnsupportedMechanism));
}

#[test]
fn credentials_debug_is_redacted() {
    let shown = format!("{:?}", ScramCredentials::Password("hunter2".into()));
    assert!(!shown.contains("hunter2"));
}

#[test]
fn verdict_debug_hides_client_key() {
    let verdict = ScramVerdict::Success {
        server_final: b"v=abc".to_vec(),
        client_key: [0xab; 32],
    };
    let shown = format!("{verdict:?}");
    assert!(shown.contains("v=abc") && shown.contains("redacted"));
    assert!(!shown.contains("171"), "{shown}");
}
