//! TLS test helpers: a throwaway CA issuing certificates (rcgen), a PostgreSQL cluster
//! with `ssl = on`, psql commands with libpq TLS options, and a raw TLS client (rustls)
//! that speaks the startup and simple-query protocol, for what psql cannot do here
//! (PG 15's psql has no `sslnegotiation=direct`) or to hold a TLS session open.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgpool_rs::auth::{ClientBinding, ScramClient, ScramCredentials};
use pgpool_rs::localpg::LocalPostgres;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate authority for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A PEM certificate and its PEM private key.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa { cert, key }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `dir/<file>`; returns its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).expect("write CA file");
        path
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn issue_localhost(&self) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Issued {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key` (mode 0600); returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (cert, key)
    }
}

/// A fresh cluster (the usual users and databases) with `ssl = on`, serving a
/// certificate of `ca` for localhost / 127.0.0.1. The files live in the data directory,
/// owned like it (the `postgres` OS user when the tests run as root), key mode 0600.
pub fn tls_cluster(ca: &TestCa) -> LocalPostgres {
    let pg = super::fresh_cluster();
    let data = pg.data_dir();
    let (cert, key) = ca.issue_localhost().write(&data, "server");
    let meta = std::fs::metadata(&data).expect("data dir");
    for file in [&cert, &key] {
        std::os::unix::fs::chown(file, Some(meta.uid()), Some(meta.gid())).expect("chown");
    }
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        pg.psql("postgres", sql).expect("enable ssl");
    }
    for _ in 0..100 {
        if pg.psql("postgres", "SHOW ssl").is_ok_and(|v| v == "on") {
            return pg;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("ssl did not turn on");
}

/// psql against 127.0.0.1:`port` with a libpq connection string of TLS options
/// (`sslmode=...`, `sslrootcert=...`, `host=localhost`, ...) appended.
pub fn psql_tls(port: u16, user: &str, conninfo: &str, sql: &str) -> Output {
    let mut cmd = Command::new(super::cluster().bin("psql"));
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSERVICE",
        "PGSSLMODE",
    ] {
        cmd.env_remove(var);
    }
    let dsn =
        format!("host=127.0.0.1 port={port} user={user} dbname=app connect_timeout=10 {conninfo}");
    cmd.env("PGPASSWORD", super::password_of(user))
        // No ~/.postgresql client certificate or root store of the machine's user.
        .env("PGSSLCERT", "/nonexistent")
        .env("PGSSLKEY", "/nonexistent")
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &dsn,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
}

/// A rustls client config trusting `ca_pem`, offering ALPN `alpn` (none if empty).
pub fn client_config(ca_pem: &str, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    Arc::new(config)
}

/// A raw protocol client over TLS.
pub struct TlsConn {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    buf: BytesMut,
}

/// How a [`TlsConn`] starts TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// SSLRequest first, expecting 'S'.
    SslRequest,
    /// A ClientHello right away (PostgreSQL 17 `sslnegotiation=direct`).
    Direct,
}

impl TlsConn {
    /// Connects to 127.0.0.1:`port` and runs the TLS handshake (SNI "localhost").
    pub async fn connect(
        port: u16,
        config: Arc<rustls::ClientConfig>,
        start: Start,
    ) -> std::io::Result<TlsConn> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        if start == Start::SslRequest {
            tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await?;
            assert_eq!(answer[0], b'S', "SSLRequest answer");
        }
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(TlsConn {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Writes and flushes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("TLS write");
        self.stream.flush().await.expect("TLS flush");
    }

    /// One backend message; `None` on EOF.
    pub async fn read_message(&mut self) -> Option<(u8, bytes::Bytes)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf.get_u8();
                    self.buf.advance(4);
                    return Some((tag, self.buf.split_to(len - 4).freeze()));
                }
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("no answer within 10 s");
            if !matches!(read, Ok(n) if n > 0) {
                return None;
            }
        }
    }

    /// Sends a StartupMessage and logs in with SCRAM (channel binding to the pooler's
    /// certificate when offered); returns the mechanism used. Panics on failure.
    pub async fn login(&mut self, user: &str, password: &str) -> String {
        self.send(&super::raw::startup_packet(
            super::raw::PROTOCOL_3_0,
            &[("user", user), ("database", "app")],
        ))
        .await;
        let mut scram: Option<ScramClient> = None;
        let mut used = String::new();
        loop {
            let (tag, body) = self.read_message().await.expect("login answer");
            match tag {
                b'R' => {
                    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let data = &body[4..];
                    match code {
                        0 => {}
                        10 => {
                            let offered: Vec<&[u8]> = data.split(|&b| b == 0).collect();
                            let plus = offered.contains(&&b"SCRAM-SHA-256-PLUS"[..]);
                            let binding = if plus {
                                let (_, conn) = self.stream.get_ref();
                                let cert = &conn.peer_certificates().expect("peer cert")[0];
                                ClientBinding::TlsServerEndPoint(
                                    pgpool_rs::auth::tls_server_end_point(cert).expect("hash"),
                                )
                            } else {
                                ClientBinding::NotOffered
                            };
                            let client =
                                ScramClient::new(ScramCredentials::Password(password.to_owned()))
                                    .with_binding(binding);
                            used = client.mechanism().to_owned();
                            let first = client.client_first();
                            let mut msg = Vec::new();
                            msg.extend_from_slice(used.as_bytes());
                            msg.push(0);
                            msg.extend_from_slice(&(first.len() as i32).to_be_bytes());
                            msg.extend_from_slice(&first);
                            self.send(&super::raw::message(b'p', &msg)).await;
                            scram = Some(client);
                        }
                        11 => {
                            let client = scram.as_mut().expect("SASL continue after start");
                            let reply = client.server_first(data).expect("server-first");
                            self.send(&super::raw::message(b'p', &reply)).await;
                        }
                        12 => {
                            let client = scram.as_mut().expect("SASL final after start");
                            client.server_final(data).expect("server signature");
                        }
                        other => panic!("unexpected auth request {other}"),
                    }
                }
                b'E' => panic!("login failed: {:?}", super::raw::parse_error(&body)),
                b'Z' => return used,
                _ => {}
            }
        }
    }

    /// Runs one simple query; returns the first column of each DataRow.
    pub async fn query(&mut self, sql: &str) -> Vec<String> {
        self.send(&super::raw::query(sql)).await;
        self.read_results(1).await
    }

    /// Reads results up to the `count`-th ReadyForQuery; first columns of DataRows.
    pub async fn read_results(&mut self, count: usize) -> Vec<String> {
        let mut values = Vec::new();
        let mut ready = 0;
        while ready < count {
            let (tag, body) = self.read_message().await.expect("query answer");
            match tag {
                b'D' => values.push(super::raw::data_row(&body)[0].clone().unwrap_or_default()),
                b'E' => panic!("query failed: {:?}", super::raw::parse_error(&body)),
                b'Z' => ready += 1,
                _ => {}
            }
        }
        values
    }
}
