//! (Test-only module: its parent declares it under `#[cfg(test)]`.)
//! Interoperability tests against `postgres-protocol` (the client code tokio-postgres uses to
//! log in): its SCRAM client against our server, and its MD5 and secret helpers against ours.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::password;

use super::*;

/// Runs postgres-protocol's SCRAM client against our server; returns the verdict and
/// whether their client accepted our server signature.
fn their_client_vs_our_server(
    secret: Option<ScramSecret>,
    password: &str,
    binding: ChannelBinding,
) -> (ScramVerdict, bool) {
    let mut client = ScramSha256::new(password.as_bytes(), binding);
    let mut server = ScramServer::new(secret);
    let server_first = server.client_first(client.message()).unwrap();
    client.update(&server_first).unwrap();
    let verdict = server.client_final(client.message()).unwrap();
    let accepted = match &verdict {
        ScramVerdict::Success { server_final, .. } => client.finish(server_final).is_ok(),
        ScramVerdict::WrongPassword => false,
    };
    (verdict, accepted)
}

#[test]
fn tokio_postgres_client_logs_in() {
    for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
        let secret = ScramSecret::generate("hunter2");
        let (verdict, accepted) = their_client_vs_our_server(Some(secret), "hunter2", binding);
        assert!(matches!(verdict, ScramVerdict::Success { .. }));
        assert!(accepted);
    }
}

#[test]
fn tokio_postgres_client_wrong_password_and_unknown_user() {
    let secret = ScramSecret::generate("hunter2");
    let binding = ChannelBinding::unsupported();
    let (verdict, _) = their_client_vs_our_server(Some(secret), "hunter3", binding);
    assert_eq!(verdict, ScramVerdict::WrongPassword);
    let (verdict, _) = their_client_vs_our_server(None, "hunter2", ChannelBinding::unsupported());
    assert_eq!(verdict, ScramVerdict::WrongPassword);
}

#[test]
fn tokio_postgres_channel_binding_is_refused() {
    let client = ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![1, 2, 3]));
    let mut server = ScramServer::new(Some(ScramSecret::generate("pw")));
    assert_eq!(
        server.client_first(client.message()),
        Err(AuthError::ChannelBindingUnsupported)
    );
}

#[test]
fn their_secret_parses_and_verifies() {
    // password::scram_sha_256 is what tokio-postgres users put in ALTER ROLE.
    let text = password::scram_sha_256(b"hunter2");
    let secret = ScramSecret::parse(&text).unwrap();
    assert_eq!(secret.to_text(), text);
    assert_eq!(
        secret,
        ScramSecret::from_password("hunter2", &secret.salt, secret.iterations)
    );
}

#[test]
fn non_ascii_passwords_and_saslprep() {
    // Already in SASLprep form (NFKC, precomposed): matches libpq/postgres-protocol.
    let secret = ScramSecret::generate("p\u{e4}ssw\u{f6}rd");
    let binding = ChannelBinding::unsupported();
    let (verdict, _) = their_client_vs_our_server(Some(secret), "p\u{e4}ssw\u{f6}rd", binding);
    assert!(matches!(verdict, ScramVerdict::Success { .. }));
    // Documented limitation: we apply no SASLprep, so a decomposed password (which SASLprep
    // would normalize to the precomposed form) does not match what libpq derives. If
    // SASLprep support is added, this becomes Success.
    let secret = ScramSecret::generate("pa\u{308}ssword");
    let binding = ChannelBinding::unsupported();
    let (verdict, _) = their_client_vs_our_server(Some(secret), "pa\u{308}ssword", binding);
    assert_eq!(verdict, ScramVerdict::WrongPassword);
}

#[test]
fn md5_matches_postgres_protocol() {
    let salt = [0x12, 0x34, 0x56, 0x78];
    assert_eq!(
        md5_secret("alice", "s3cret"),
        password::md5(b"s3cret", "alice")
    );
    let theirs = md5_hash(b"alice", b"s3cret", salt);
    assert_eq!(md5_response(&md5_secret("alice", "s3cret"), salt), theirs);
    assert!(md5_verify(
        &md5_secret("alice", "s3cret"),
        salt,
        theirs.as_bytes()
    ));
}

/// Runs postgres-protocol's client with `their` binding against our server offering
/// `ours`, the client naming `mechanism`.
fn bound_exchange(
    ours: Option<Vec<u8>>,
    mechanism: &str,
    their: ChannelBinding,
) -> Result<ScramVerdict, AuthError> {
    let mut client = ScramSha256::new(b"pw", their);
    let mut server = ScramServer::new(Some(ScramSecret::generate("pw"))).with_channel_binding(ours);
    server.select(mechanism)?;
    let server_first = server.client_first(client.message())?;
    client.update(&server_first).unwrap();
    let verdict = server.client_final(client.message())?;
    if let ScramVerdict::Success { server_final, .. } = &verdict {
        client.finish(server_final).unwrap();
    }
    Ok(verdict)
}

#[test]
fn tokio_postgres_channel_binding_plus() {
    let cert_hash = vec![7u8; 32];
    let their = ChannelBinding::tls_server_end_point(cert_hash.clone());
    let verdict = bound_exchange(Some(cert_hash.clone()), SCRAM_SHA_256_PLUS, their);
    assert!(
        matches!(verdict, Ok(ScramVerdict::Success { .. })),
        "{verdict:?}"
    );
    // A different certificate on the client's side (a man in the middle) is refused.
    let their = ChannelBinding::tls_server_end_point(vec![8u8; 32]);
    assert_eq!(
        bound_exchange(Some(cert_hash.clone()), SCRAM_SHA_256_PLUS, their),
        Err(AuthError::ChannelBindingMismatch)
    );
    // 'y' (client could bind, thinks we cannot) while PLUS was offered: a downgrade.
    let verdict = bound_exchange(
        Some(cert_hash.clone()),
        SCRAM_SHA_256,
        ChannelBinding::unrequested(),
    );
    assert!(matches!(
        verdict,
        Err(AuthError::ChannelBindingNegotiation(_))
    ));
    // 'n' (client cannot bind) is fine on a TLS connection.
    let verdict = bound_exchange(
        Some(cert_hash),
        SCRAM_SHA_256,
        ChannelBinding::unsupported(),
    );
    assert!(matches!(verdict, Ok(ScramVerdict::Success { .. })));
    // PLUS is not offered without binding data.
    let their = ChannelBinding::tls_server_end_point(vec![7u8; 32]);
    assert_eq!(
        bound_exchange(None, SCRAM_SHA_256_PLUS, their),
        Err(AuthError::UnsupportedMechanism)
    );
}

#[test]
fn our_client_binds_to_our_server() {
    let secret = ScramSecret::generate("pw");
    for binding in [
        ClientBinding::None,
        ClientBinding::NotOffered,
        ClientBinding::TlsServerEndPoint(vec![1, 2, 3]),
    ] {
        let offered = match &binding {
            ClientBinding::TlsServerEndPoint(d) => Some(d.clone()),
            _ => None,
        };
        let mut client =
            ScramClient::new(ScramCredentials::Password("pw".into())).with_binding(binding);
        let mut server = ScramServer::new(Some(secret.clone())).with_channel_binding(offered);
        assert_eq!(server.mechanisms()[0], client.mechanism());
        server.select(client.mechanism()).unwrap();
        let first = server.client_first(&client.client_first()).unwrap();
        let fin = client.server_first(&first).unwrap();
        let ScramVerdict::Success { server_final, .. } = server.client_final(&fin).unwrap() else {
            panic!("bound login failed");
        };
        client.server_final(&server_final).unwrap();
    }
}
