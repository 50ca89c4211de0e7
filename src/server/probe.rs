//! Reachability probe: is a PostgreSQL server answering at this address?
//! Sends an SSLRequest and waits for the one-byte answer ('S' or 'N'), then
//! hangs up: no login attempt, nothing in the server's log.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// True if a PostgreSQL server answers at `host:port` within `timeout`.
pub async fn answers(host: &str, port: u16, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect((host, port)).await.ok()?;
        s.write_all(&SSL_REQUEST).await.ok()?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.ok()?;
        Some(b[0] == b'S' || b[0] == b'N')
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_port_and_non_postgres_peer_are_not_reachable() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        assert!(!answers("127.0.0.1", port, Duration::from_secs(2)).await);
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = unused.local_addr().unwrap().port();
        drop(unused);
        assert!(!answers("127.0.0.1", closed, Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn a_server_answering_n_is_reachable() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut req = [0u8; 8];
                if s.read_exact(&mut req).await.is_ok() && req == SSL_REQUEST {
                    let _ = s.write_all(b"N").await;
                }
            }
        });
        assert!(answers("127.0.0.1", port, Duration::from_secs(2)).await);
    }
}
