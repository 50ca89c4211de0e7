//! Host name lookup for the host sets: a small trait, so the pooler uses the
//! system resolver and a test can change what a name resolves to.

use std::net::SocketAddr;
use std::sync::Mutex;

/// The answer of a [`Resolve`]: the addresses of a name, or why there are none.
pub type Resolving<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>,
>;

/// Looks host names up. The pooler uses [`SystemResolver`]; a test can
/// substitute one whose answers it changes.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The addresses of `host` on `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a>;
}

/// `getaddrinfo`, through tokio's blocking pool.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Answers every name with the addresses it holds (tests change them).
#[derive(Debug, Default)]
pub struct FixedResolver(pub Mutex<Vec<SocketAddr>>);

impl Resolve for FixedResolver {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> Resolving<'a> {
        let answer = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move { Ok(answer) })
    }
}
