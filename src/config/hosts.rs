//! Server address syntax of database entries: `host = "h"` and
//! `hosts = ["h", "h:port", "[::1]:5432"]`.
//!
//! Errors are plain messages; the caller attaches file, line and key.

use std::net::{IpAddr, Ipv6Addr};

/// Longest DNS name (RFC 1035).
const MAX_HOST_NAME: usize = 253;

/// Splits `h`, `h:port`, `[v6]` or `[v6]:port` into host (IPv6 without brackets) and
/// optional port, checking both. A bare IPv6 address is ambiguous here (`::1:5432`) and
/// rejected; `host = "::1"`, which has no port, is accepted by [`host_only`].
pub(super) fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    if text.is_empty() {
        return Err("empty host".to_owned());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!("\"{text}\": missing ']' after an IPv6 address"));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!("\"{text}\": \"{inside}\" is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(text, port)?),
                None => return Err(format!("\"{text}\": expected ':port' after ']'")),
            },
        };
        return Ok((inside.to_owned(), port));
    }
    match text.matches(':').count() {
        0 => {
            check_host_name(text)?;
            Ok((text.to_owned(), None))
        }
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            if host.is_empty() {
                return Err(format!("\"{text}\": empty host"));
            }
            check_host_name(host)?;
            Ok((host.to_owned(), Some(parse_port(text, port)?)))
        }
        // "::1:5432" is both a valid address and "::1" port 5432: demand brackets.
        _ => Err(format!(
            "\"{text}\": write an IPv6 address in brackets, as [addr] or [addr]:port"
        )),
    }
}

/// The value of `host = "..."`: a host without port; a bare IPv6 address is fine here.
pub(super) fn host_only(text: &str) -> Result<String, String> {
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok(text.to_owned());
    }
    match split_host_port(text)? {
        (host, None) => Ok(host),
        (_, Some(_)) => {
            Err("must not include a port (use port = N, or hosts = [\"host:port\"])".to_owned())
        }
    }
}

/// Accepts an IP address or a DNS name made of letters, digits, `-`, `_` and dots.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid_chars = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_chars || host.starts_with('.') || host.contains("..") {
        return Err(format!("\"{host}\" is not a valid host name or IP address"));
    }
    if host.len() > MAX_HOST_NAME {
        return Err(format!(
            "host name is longer than {MAX_HOST_NAME} characters"
        ));
    }
    Ok(())
}

fn parse_port(whole: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!(
            "\"{whole}\": port must be a number from 1 to 65535, got \"{port}\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn accepts_the_documented_forms() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("db.example.com"), ("db.example.com".to_owned(), None));
        assert_eq!(ok("h1:5433"), ("h1".to_owned(), Some(5433)));
        assert_eq!(ok("10.0.0.1:6000"), ("10.0.0.1".to_owned(), Some(6000)));
        assert_eq!(ok("[::1]:5432"), ("::1".to_owned(), Some(5432)));
        assert_eq!(ok("[fe80::1]"), ("fe80::1".to_owned(), None));
        assert_eq!(super::host_only("::1").unwrap(), "::1");
        assert_eq!(super::host_only("[::1]").unwrap(), "::1");
        assert!(super::host_only("h:1").is_err());
        assert_eq!(
            ok("under_score-1.local"),
            ("under_score-1.local".to_owned(), None)
        );
    }

    #[test]
    fn rejects_malformed_forms() {
        for bad in [
            "",
            "h:0",
            "h:",
            ":5432",
            "h:65536",
            "h:+1",
            "h:abc",
            "[::1",
            "[::1]5432",
            "[nothost]:5432",
            "a:b:c",
            "::1",
            "::1:5432",
            "has space",
            "/var/run/postgresql",
            ".leading",
            "double..dot",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = "a".repeat(254);
        assert!(split_host_port(&long).is_err());
    }
}
