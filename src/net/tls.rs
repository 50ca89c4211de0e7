//! Client-facing TLS: upgrading a plain client connection in place, after an SSLRequest
//! answered 'S' or when the first byte is a TLS handshake record (PostgreSQL 17's
//! `sslnegotiation=direct`, which must negotiate ALPN "postgresql"). Handshakes run
//! inside the login phase, so `client_login_timeout` bounds them; each is counted
//! (ok/failed) for `/metrics`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::ClientStream;
use crate::error::{sqlstate, ClientError};
use crate::observe::GlobalStats;
use crate::tls::{ClientTlsAcceptor, ALPN_POSTGRESQL};

/// The content type byte that starts every TLS handshake record (a ClientHello).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// An encrypted client connection.
#[derive(Debug)]
pub struct TlsClient {
    /// The TLS stream.
    pub stream: tokio_rustls::server::TlsStream<TcpStream>,
    /// Channel binding data of the certificate this handshake presented (kept with the
    /// connection: a reload may change the acceptor meanwhile).
    pub end_point: Option<Arc<[u8]>>,
}

/// How the client asked for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// SSLRequest, answered 'S' (already sent).
    SslRequest,
    /// The connection started with a ClientHello.
    Direct,
}

/// True when a plain connection's first byte says "TLS ClientHello" (direct TLS).
/// Reads nothing: the byte is only peeked. False on EOF or error (the startup read
/// that follows reports those).
pub async fn starts_with_tls(client: &ClientStream) -> bool {
    let ClientStream::Plain(tcp) = client else {
        return false;
    };
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE_RECORD)
}

/// Runs the TLS handshake on `client` (which must be plain) and replaces it with the
/// encrypted stream. On failure the stream is left [`ClientStream::Closed`].
pub async fn upgrade(
    client: &mut ClientStream,
    acceptor: &ClientTlsAcceptor,
    how: Negotiation,
    stats: &GlobalStats,
) -> Result<(), ClientError> {
    let ClientStream::Plain(tcp) = std::mem::replace(client, ClientStream::Closed) else {
        return Err(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "TLS requested on a connection that is already encrypted",
        ));
    };
    let peer = tcp.peer_addr().ok();
    let accept = tokio_rustls::TlsAcceptor::from(acceptor.config.clone()).accept(tcp);
    let stream = match accept.await {
        Ok(s) => s,
        Err(e) => {
            stats.tls_handshakes_failed.fetch_add(1, Relaxed);
            tracing::info!(client = ?peer, error = %e, "client TLS handshake failed");
            return Err(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("TLS handshake failed: {e}"),
            ));
        }
    };
    let alpn_ok = stream.get_ref().1.alpn_protocol() == Some(ALPN_POSTGRESQL);
    *client = ClientStream::Tls(Box::new(TlsClient {
        stream,
        end_point: acceptor.end_point.clone(),
    }));
    if how == Negotiation::Direct && !alpn_ok {
        stats.tls_handshakes_failed.fetch_add(1, Relaxed);
        return Err(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "direct TLS connection without ALPN protocol \"postgresql\"",
        ));
    }
    stats.tls_handshakes_ok.fetch_add(1, Relaxed);
    Ok(())
}
