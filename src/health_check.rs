//! `pgpool-rs health`: one HTTP GET against a pooler's own health endpoint,
//! for container health checks (Docker `HEALTHCHECK`) in images that have no
//! curl or wget. Exit 0 on `200`, 1 on anything else, printing what it got.
//!
//! The URL defaults to `/health/ready` on the config's `listen.http_addr`
//! (an unspecified address such as `0.0.0.0` is reached on loopback), or on
//! `127.0.0.1:9930` when the config cannot be read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::HOST;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Config;

/// The path probed when no `--url` is given: the one Kubernetes should gate traffic on.
pub const DEFAULT_PATH: &str = "/health/ready";
/// Where the pooler serves HTTP when no config says otherwise (SPEC default).
const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9930);
/// The most of a response body kept for printing; health bodies are one line.
const MAX_BODY: usize = 4096;

/// Options of `pgpool-rs health`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthOptions {
    /// The URL to GET (http only), e.g. http://127.0.0.1:9930/health/live.
    /// Default: /health/ready on the config's listen.http_addr.
    #[arg(long)]
    pub url: Option<String>,
    /// Give up after this many seconds (connect, request and response).
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// Why a health check did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// `--url` is not an `http://host[:port]/path` URL.
    #[error("bad --url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The config turns HTTP off, so there is nothing to ask.
    #[error("{config}: listen.http_addr is \"\" (HTTP is off); pass --url")]
    HttpOff {
        /// The config file.
        config: String,
    },
    /// TCP connect failed (nothing listening, refused, unreachable).
    #[error("GET {url}: cannot connect: {source}")]
    Connect {
        /// The URL asked.
        url: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed after connecting.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL asked.
        url: String,
        /// hyper's error.
        source: hyper::Error,
    },
    /// No complete answer within the timeout.
    #[error("GET {url}: no answer within {secs} s")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The timeout, in seconds.
        secs: u64,
    },
}

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response status.
    pub status: StatusCode,
    /// The body (at most 4 KiB of it), lossily decoded, trimmed.
    pub body: String,
}

impl std::fmt::Display for Answer {
    /// `200 OK: ready` — the status line and the body's reason, on one line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.body.is_empty() {
            write!(f, ": {}", self.body.replace('\n', "; "))?;
        }
        Ok(())
    }
}

/// Runs the subcommand: `Ok(line to print)` on 200, `Err(message)` otherwise
/// (a non-200 answer or no answer), for the binary to turn into exit 0 / 1.
pub async fn run(opts: &HealthOptions, config: &Path) -> Result<String, String> {
    let url = match &opts.url {
        Some(url) => url.clone(),
        None => default_url(config).map_err(|e| e.to_string())?,
    };
    let timeout = Duration::from_secs(opts.timeout);
    match check(&url, timeout).await {
        Ok(answer) if answer.status == StatusCode::OK => Ok(format!("GET {url}: {answer}")),
        Ok(answer) => Err(format!("GET {url}: {answer}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `http://<listen.http_addr>/health/ready` from the config at `path`, or from the
/// default address when the config cannot be read or is not valid.
pub fn default_url(path: &Path) -> Result<String, HealthError> {
    let addr = match Config::load(path) {
        Ok(config) => config
            .listen
            .http_addr
            .ok_or_else(|| HealthError::HttpOff {
                config: path.display().to_string(),
            })?,
        Err(_) => DEFAULT_ADDR,
    };
    Ok(format!("http://{}{DEFAULT_PATH}", reachable(addr)))
}

/// A listening address turned into one a local client can connect to:
/// `0.0.0.0` becomes `127.0.0.1` and `::` becomes `::1`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// One `GET url` over a fresh HTTP/1.1 connection, all of it within `timeout`.
pub async fn check(url: &str, timeout: Duration) -> Result<Answer, HealthError> {
    let target = Target::parse(url)?;
    tokio::time::timeout(timeout, exchange(url, &target))
        .await
        .map_err(|_| HealthError::Timeout {
            url: url.to_string(),
            secs: timeout.as_secs(),
        })?
}

/// The parts of a URL a GET needs.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HealthError> {
        let bad = |reason| HealthError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        // IPv6 literals come bracketed; connect() wants them bare.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        })
    }
}

/// Connects, sends the request, reads the status and (a bounded part of) the body.
async fn exchange(url: &str, target: &Target) -> Result<Answer, HealthError> {
    let http_err = |source| HealthError::Http {
        url: url.to_string(),
        source,
    };
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| HealthError::Connect {
            url: url.to_string(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    // The connection task ends when the response is read and `sender` is dropped.
    let driver = tokio::spawn(conn);
    let request = Request::get(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|_| HealthError::BadUrl {
            url: url.to_string(),
            reason: "not a valid request target",
        })?;
    let response = sender.send_request(request).await.map_err(http_err)?;
    let status = response.status();
    // A body over the cap (or cut short) is not worth failing on: the status decides.
    let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    drop(sender);
    driver.abort();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        let v4: SocketAddr = "0.0.0.0:9930".parse().unwrap();
        assert_eq!(reachable(v4), "127.0.0.1:9930".parse().unwrap());
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(reachable(v6), "[::1]:9000".parse().unwrap());
        let set: SocketAddr = "10.1.2.3:9930".parse().unwrap();
        assert_eq!(reachable(set), set);
    }

    #[test]
    fn urls_parse_into_targets() {
        let t = Target::parse("http://[::1]:9000/health/live?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("::1", 9000, "[::1]:9000", "/health/live?x=1")
        );
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:9930/health",
            "/health",
            "not a url",
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert!(matches!(err, HealthError::BadUrl { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn unreadable_config_falls_back_to_the_default_address() {
        let url = default_url(Path::new("/nonexistent/pool.toml")).unwrap();
        assert_eq!(url, "http://127.0.0.1:9930/health/ready");
    }

    #[test]
    fn config_http_addr_decides_the_default_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.toml");
        std::fs::write(&path, "[listen]\nhttp_addr = \"0.0.0.0:9123\"\n").unwrap();
        assert_eq!(
            default_url(&path).unwrap(),
            "http://127.0.0.1:9123/health/ready"
        );
        std::fs::write(&path, "[listen]\nhttp_addr = \"\"\n").unwrap();
        let err = default_url(&path).unwrap_err();
        assert!(err.to_string().contains("HTTP is off"), "{err}");
    }

    #[test]
    fn answers_print_on_one_line() {
        let a = Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: "not ready\nwriter app".into(),
        };
        assert_eq!(
            a.to_string(),
            "503 Service Unavailable: not ready; writer app"
        );
    }
}
