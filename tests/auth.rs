//! Authentication on both sides of the pooler. Client side: SCRAM with a plaintext or a
//! SCRAM-secret userlist, md5 (plaintext or md5 userlist), trust, and failures (28P01
//! only after the full SCRAM exchange). Server side: SCRAM, md5, cleartext and trust
//! roles, logged in with the client's credentials or a database entry's own user.

mod common;

use common::raw::RawConn;
use common::*;

/// Connects through `pooler` as `user` and checks who the server says we are.
async fn assert_login(pooler: &Pooler, db: &str, user: &str, password: &str, server_user: &str) {
    let client = pooler.connect(db, user, password).await;
    // SELECT current_user needs a server connection: this checks the server-side login.
    assert_eq!(
        simple_value(&client, "SELECT current_user").await,
        server_user
    );
}

#[tokio::test]
async fn scram_with_plaintext_userlist() {
    let pooler = Pooler::start(cluster());
    assert_login(&pooler, "app", "app", "app-pass", "app").await;
}

#[tokio::test]
async fn scram_secret_in_userlist_logs_in_to_the_server_with_the_client_key() {
    let pg = cluster();
    let secret = pg.scram_secret("app").unwrap();
    assert!(secret.starts_with("SCRAM-SHA-256$"));
    let pooler = Pooler::builder(pg)
        .userlist(&[&format!("\"app\" \"{secret}\"")])
        .start();
    // The pooler knows no password: the server login can only use the ClientKey
    // recovered from this client's SCRAM proof.
    assert_login(&pooler, "app", "app", "app-pass", "app").await;
    let err = pooler
        .try_connect("app", "app", "wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
}

#[tokio::test]
async fn md5_client_auth_with_plaintext_userlist() {
    let pooler = Pooler::builder(cluster())
        .set("auth.type", "\"md5\"")
        .start();
    assert_login(&pooler, "app", "app", "app-pass", "app").await;
    assert_login(&pooler, "app", "md5_user", "md5-pass", "md5_user").await;
    let err = pooler
        .try_connect("app", "app", "wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
}

#[tokio::test]
async fn md5_client_auth_with_md5_userlist() {
    let pg = cluster();
    let md5 = pg.scram_secret("md5_user").unwrap();
    assert!(md5.starts_with("md5"), "{md5}");
    let pooler = Pooler::builder(pg)
        .set("auth.type", "\"md5\"")
        .userlist(&[&format!("\"md5_user\" \"{md5}\"")])
        .start();
    // The server (hba md5) accepts the same hash the pooler has.
    assert_login(&pooler, "app", "md5_user", "md5-pass", "md5_user").await;
}

#[tokio::test]
async fn trust_client_auth() {
    let pooler = Pooler::builder(cluster())
        .set("auth.type", "\"trust\"")
        .start();
    // No password asked of the client; the server login uses the userlist's password.
    assert_login(&pooler, "app", "app", "", "app").await;
    assert_login(&pooler, "app", "trust_user", "", "trust_user").await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_after_the_full_scram_exchange() {
    let pooler = Pooler::start(cluster());
    let err = pooler
        .try_connect("app", "app", "wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
    let err = pooler
        .try_connect("app", "nobody", "x")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");

    // An unknown user is not revealed early: SASL, SASL continue, then the error.
    for (user, password) in [("nobody", "x"), ("app", "wrong")] {
        let mut conn = RawConn::connect(pooler.port()).await;
        conn.send_startup(&[("user", user), ("database", "app")])
            .await;
        let failure = conn
            .try_authenticate(user, password)
            .await
            .expect_err("login must fail");
        assert_eq!(failure.codes, vec![10, 11], "{user}: {failure:?}");
        assert_eq!(failure.error.code, "28P01", "{user}: {failure:?}");
        assert_eq!(failure.error.severity, "FATAL");
    }
    // Failed logins do not disturb the pooler.
    assert_login(&pooler, "app", "app", "app-pass", "app").await;
}

#[tokio::test]
async fn server_auth_methods_with_the_clients_credentials() {
    let pooler = Pooler::start(cluster());
    // md5_user: hba md5; plain_user: hba password (cleartext); trust_user: hba trust.
    for user in ["md5_user", "plain_user", "trust_user", "app"] {
        assert_login(&pooler, "app", user, password_of(user), user).await;
    }
}

#[tokio::test]
async fn server_auth_methods_with_the_database_entrys_user() {
    let pg = cluster();
    let mut builder = Pooler::builder(pg);
    for (entry, user, password) in [
        ("as_md5", "md5_user", Some("md5-pass")),
        ("as_plain", "plain_user", Some("plain-pass")),
        ("as_trust", "trust_user", None),
        ("as_scram", "other", Some("other-pass")),
    ] {
        builder = builder
            .database(entry, pg, "app")
            .set(&format!("databases.{entry}.user"), &format!("\"{user}\""));
        if let Some(password) = password {
            builder = builder.set(
                &format!("databases.{entry}.password"),
                &format!("\"{password}\""),
            );
        }
    }
    let pooler = builder.start();
    // Client `app` authenticates to the pooler; the server sees the entry's user.
    assert_login(&pooler, "as_md5", "app", "app-pass", "md5_user").await;
    assert_login(&pooler, "as_plain", "app", "app-pass", "plain_user").await;
    assert_login(&pooler, "as_trust", "app", "app-pass", "trust_user").await;
    assert_login(&pooler, "as_scram", "app", "app-pass", "other").await;
}
