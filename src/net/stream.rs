//! The client connection's byte stream. An enum rather than a generic so the
//! session code is compiled once: plain TCP, or TLS (see `net::tls`).
//!
//! TLS and readiness: the session waits for an idle client with [`ClientStream::poll_readable`]
//! instead of a read, so an idle client holds no read buffer. Under TLS, socket readiness
//! alone is not enough: rustls may already hold decrypted bytes (a client that pipelined
//! its next transaction behind the last one, read in the same TLS record or socket read),
//! and the socket will not become readable again for them. So `poll_readable` first asks rustls
//! (`wants_read() == false` means plaintext is buffered, or the peer sent close_notify —
//! either way a read completes at once) and only then waits on the socket. Undecrypted
//! bytes rustls read ahead are a partial record that needs more socket data anyway.
//!
//! Writes: under TLS a write may leave bytes in rustls's buffer when the socket is full,
//! so whoever writes must also flush before waiting on a read ([`ClientStream::send`]
//! does both; the relay polls `poll_flush`). For plain TCP the flush is a no-op.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::tls::TlsClient;

/// A client's connection.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (after an SSLRequest, or direct TLS).
    Tls(Box<TlsClient>),
    /// Given up in the middle of a TLS upgrade (failed handshake): reads see EOF,
    /// writes fail.
    Closed,
}

impl ClientStream {
    /// Ready when a read would make progress, without buffering anything: an
    /// idle client costs no read buffer. See the module doc for TLS. Registers
    /// the task's waker in the socket's own slot (no registration list entry
    /// to add and remove per wait).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientStream::Plain(s) => s.poll_read_ready(cx),
            ClientStream::Tls(t) => {
                let (tcp, conn) = t.stream.get_ref();
                if !conn.wants_read() {
                    return Poll::Ready(Ok(()));
                }
                tcp.poll_read_ready(cx)
            }
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }

    /// True when a read wait can be skipped: `interest` says this task's waker
    /// is already registered for the socket's read readiness, and no readiness
    /// has arrived since (plain TCP only; a TLS stream always waits anew).
    /// Seeing readiness forgets the registration, since the wake-up that set it
    /// has taken the waker.
    fn read_wait_registered(&self, interest: &mut ReadInterest) -> bool {
        if !interest.registered {
            return false;
        }
        if let ClientStream::Plain(s) = self {
            if !marked_readable(s) {
                return true;
            }
        }
        interest.registered = false;
        false
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            ClientStream::Plain(s) => s.peer_addr(),
            ClientStream::Tls(t) => t.stream.get_ref().0.peer_addr(),
            ClientStream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// True once the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// TLS version, cipher suite and key exchange, as `SHOW CLIENTS` shows
    /// them; empty for a plain connection.
    pub fn tls_description(&self) -> String {
        match self {
            ClientStream::Tls(t) => crate::observe::cards::tls_description(t.stream.get_ref().1),
            _ => String::new(),
        }
    }

    /// SCRAM channel binding data (`tls-server-end-point` of the certificate this
    /// connection's handshake presented), when TLS and defined for that certificate.
    pub fn channel_binding(&self) -> Option<&[u8]> {
        match self {
            ClientStream::Tls(t) => t.end_point.as_deref(),
            _ => None,
        }
    }

    /// Writes all of `bytes` and flushes (TLS buffers otherwise): for the login and
    /// console paths, where a reply is followed by waiting for the client.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }
}

/// True when the reactor has marked `tcp` readable (bytes or EOF arrived)
/// since a read last found it empty. Neither touches the socket nor
/// registers a waker: one atomic load.
#[inline]
pub fn marked_readable(tcp: &TcpStream) -> bool {
    // `try_io` runs the closure only when the readiness mark is set.
    let mut marked = false;
    let _ = tcp.try_io(Interest::READABLE, || {
        marked = true;
        Ok(())
    });
    marked
}

/// Whether the session's task has its waker registered for the client
/// socket's read readiness. A client is waited on several times per
/// transaction (for its next message, and by the relay while the server
/// works); registering each time takes the socket's waiter lock, so once a
/// wait has registered, later waits check readiness only
/// ([`ReadInterest::poll`]). Set only after a read or
/// readiness poll returned `Pending` with the session task's waker; any
/// `Ready` clears it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadInterest {
    registered: bool,
}

impl ReadInterest {
    /// Runs `op`, a read or readiness poll of `stream` with the session
    /// task's waker, and records its outcome; or, while this task's last wait
    /// is still registered and nothing has arrived, returns `Pending` without
    /// polling (and so without registering again).
    #[inline]
    pub fn poll<T>(
        &mut self,
        stream: &mut ClientStream,
        op: impl FnOnce(&mut ClientStream) -> Poll<T>,
    ) -> Poll<T> {
        if stream.read_wait_registered(self) {
            return Poll::Pending;
        }
        let poll = op(stream);
        self.polled(&poll);
        poll
    }

    /// Records the outcome of a read or readiness poll of the client made
    /// with the session task's waker.
    #[inline]
    fn polled<T>(&mut self, poll: &Poll<T>) {
        self.registered = poll.is_pending();
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(t) => Pin::new(&mut t.stream).poll_read(cx, buf),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(t) => Pin::new(&mut t.stream).poll_write(cx, buf),
            ClientStream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(t) => Pin::new(&mut t.stream).poll_flush(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(t) => Pin::new(&mut t.stream).poll_shutdown(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use tokio::io::AsyncWriteExt;

    /// Records that it was woken.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_registered_read_wait_is_skipped_until_readiness_arrives() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream = ClientStream::Plain(listener.accept().await.unwrap().0);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut interest = ReadInterest::default();

        assert!(
            !stream.read_wait_registered(&mut interest),
            "nothing registered yet"
        );
        // A new socket may start out marked readable; a read that finds
        // nothing clears that, as in the session's steady state.
        if let ClientStream::Plain(s) = &stream {
            let err = s.try_read(&mut [0; 8]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        }
        let poll = stream.poll_readable(&mut cx);
        interest.polled(&poll);
        assert!(poll.is_pending(), "the peer has sent nothing");
        assert!(
            stream.read_wait_registered(&mut interest),
            "registered and nothing arrived: the wait can be skipped"
        );

        peer.write_all(b"Q").await.unwrap();
        while !flag.0.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(
            !stream.read_wait_registered(&mut interest),
            "readiness arrived (and took the waker): wait again"
        );
        assert!(
            !stream.read_wait_registered(&mut interest),
            "the registration is forgotten once readiness was seen"
        );
        assert!(stream.poll_readable(&mut cx).is_ready());
    }

    #[test]
    fn a_ready_poll_forgets_the_registration() {
        let mut interest = ReadInterest::default();
        interest.polled(&Poll::<()>::Pending);
        assert!(interest.registered);
        interest.polled(&Poll::Ready(()));
        assert!(!interest.registered);
    }
}
