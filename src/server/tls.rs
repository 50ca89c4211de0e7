//! Server-facing TLS: the connection's stream type (plain or TLS, an enum so the relay
//! stays monomorphic and free of dynamic dispatch), and the SSLRequest negotiation done
//! right after connecting, per `pool.server_tls`:
//! - `disable`: plaintext, no SSLRequest;
//! - `prefer`: SSLRequest; 'S' → TLS, 'N' → plaintext;
//! - `require` / `verify-full`: SSLRequest; 'N' is an error.
//!
//! SNI is the configured host name (not sent for an IP address, as TLS requires).
//! CancelRequests still go over plaintext, as libpq sends them (they carry no data but
//! the key, and Postgres accepts them without TLS).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ServerTls;
use crate::tls::ServerTlsConnector;

/// The SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A server connection's byte stream.
#[derive(Debug)]
pub enum ServerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Why TLS towards a server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// The server answered the SSLRequest with 'N' and the mode needs TLS.
    #[error("server does not support TLS, but server_tls = \"{0}\" requires it")]
    Refused(ServerTls),
    /// The server answered the SSLRequest with something other than 'S' or 'N'.
    #[error("unexpected answer 0x{0:02x} to SSLRequest")]
    BadAnswer(u8),
    /// The host is neither a DNS name nor an IP address usable for SNI/verification.
    #[error("invalid host name for TLS: {0}")]
    BadName(String),
    /// The handshake failed (certificate not trusted, name mismatch, protocol, ...).
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    /// Reading or writing the SSLRequest failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Negotiates TLS on a fresh connection to `host` as `tls` says.
pub async fn negotiate(
    mut tcp: TcpStream,
    host: &str,
    tls: &ServerTlsConnector,
) -> Result<ServerStream, ServerTlsError> {
    let Some(config) = &tls.config else {
        return Ok(ServerStream::Plain(tcp));
    };
    tcp.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    // One byte exactly, unbuffered: nothing the server sends after 'S' can be
    // mistaken for plaintext (CVE-2021-23222).
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {}
        b'N' if tls.mode == ServerTls::Prefer => return Ok(ServerStream::Plain(tcp)),
        b'N' => return Err(ServerTlsError::Refused(tls.mode)),
        other => return Err(ServerTlsError::BadAnswer(other)),
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| ServerTlsError::BadName(host.to_owned()))?;
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(ServerTlsError::Handshake)?;
    Ok(ServerStream::Tls(Box::new(stream)))
}

impl ServerStream {
    /// TLS version, cipher suite and key exchange, as `SHOW SERVERS` shows
    /// them; empty for a plain connection.
    pub fn tls_description(&self) -> String {
        match self {
            ServerStream::Tls(t) => crate::observe::cards::tls_description(t.get_ref().1),
            ServerStream::Plain(_) => String::new(),
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ServerStream::Plain(s) => s,
            ServerStream::Tls(t) => t.get_ref().0,
        }
    }

    /// True when encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }

    /// SCRAM channel binding data (`tls-server-end-point`) of the server's certificate,
    /// when TLS and defined for that certificate.
    pub fn channel_binding(&self) -> Option<Vec<u8>> {
        let ServerStream::Tls(t) = self else {
            return None;
        };
        let cert = t.get_ref().1.peer_certificates()?.first()?;
        crate::auth::tls_server_end_point(cert)
    }

    /// True when TLS holds decrypted bytes not yet read (or the peer's close_notify):
    /// for an idle connection, a sign that the server said something.
    pub fn has_buffered_input(&self) -> bool {
        match self {
            ServerStream::Plain(_) => false,
            ServerStream::Tls(t) => !t.get_ref().1.wants_read(),
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
        }
    }
}
