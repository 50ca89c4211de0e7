//! SCRAM-SHA-256 login cost: what the pooler pays per client login (the
//! server side, with a secret derived at config load) and per server login
//! (the client side, with a password or with keys passed through from the
//! client's own proof), against the one PBKDF2 run that deriving a secret
//! costs. The gap between those is why PBKDF2 happens when the config loads
//! and why pass-through keys beat a stored password for server logins.
//!
//! * `exchange/password`: `ScramServer` against `ScramClient` with
//!   `ScramCredentials::Password`; the client runs PBKDF2 (4096 iterations)
//!   on the server's salt, as the pooler does logging in to PostgreSQL with a
//!   configured password.
//! * `exchange/keys`: the same with `ScramCredentials::Keys`, the
//!   pass-through path: no PBKDF2 on either side.
//! * `server_side`: only the pooler's side of a client login (both client
//!   messages replayed, fixed nonces): a few HMACs and SHA-256s.
//! * `secret/from_password_4096`: one PBKDF2 derivation, done at config load.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pgpool_rs::auth::{
    ScramClient, ScramCredentials, ScramSecret, ScramServer, ScramVerdict, DEFAULT_ITERATIONS,
};

const PASSWORD: &str = "correct horse battery staple";
const SALT: &[u8] = b"0123456789abcdef";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

/// One complete exchange with random nonces, as a real login runs it;
/// returns the ClientKey the server recovered.
fn exchange(secret: &ScramSecret, credentials: ScramCredentials) -> [u8; 32] {
    let mut server = ScramServer::new(Some(secret.clone()));
    let mut client = ScramClient::new(credentials);
    let server_first = server.client_first(&client.client_first()).unwrap();
    let client_final = client.server_first(&server_first).unwrap();
    let ScramVerdict::Success {
        server_final,
        client_key,
    } = server.client_final(&client_final).unwrap()
    else {
        panic!("wrong password");
    };
    client.server_final(&server_final).unwrap();
    client_key
}

fn logins(c: &mut Criterion) {
    let secret = ScramSecret::from_password(PASSWORD, SALT, DEFAULT_ITERATIONS);
    let client_key = exchange(&secret, ScramCredentials::Password(PASSWORD.into()));
    let keys = ScramCredentials::Keys {
        client_key,
        server_key: secret.server_key,
    };

    let mut g = c.benchmark_group("scram/exchange");
    g.bench_function(BenchmarkId::from_parameter("password"), |b| {
        b.iter(|| exchange(&secret, ScramCredentials::Password(PASSWORD.into())))
    });
    g.bench_function(BenchmarkId::from_parameter("keys"), |b| {
        b.iter(|| exchange(&secret, keys.clone()))
    });
    g.finish();

    // Record one client's messages with fixed nonces, then replay them
    // against fresh servers: the pooler's own work per client login.
    let mut client = ScramClient::with_nonce(keys.clone(), CLIENT_NONCE);
    let client_first = client.client_first();
    let mut server = ScramServer::with_nonce(Some(secret.clone()), SERVER_NONCE);
    let server_first = server.client_first(&client_first).unwrap();
    let client_final = client.server_first(&server_first).unwrap();
    c.bench_function("scram/server_side", |b| {
        b.iter(|| {
            let mut server = ScramServer::with_nonce(Some(secret.clone()), SERVER_NONCE);
            server.client_first(black_box(&client_first)).unwrap();
            let verdict = server.client_final(black_box(&client_final)).unwrap();
            assert!(matches!(verdict, ScramVerdict::Success { .. }));
            verdict
        })
    });
}

fn derive(c: &mut Criterion) {
    let mut g = c.benchmark_group("scram/secret");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function(
        BenchmarkId::from_parameter(format!("from_password_{DEFAULT_ITERATIONS}")),
        |b| b.iter(|| ScramSecret::from_password(black_box(PASSWORD), SALT, DEFAULT_ITERATIONS)),
    );
    g.finish();
}

criterion_group!(benches, logins, derive);
criterion_main!(benches);
