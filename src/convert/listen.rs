//! The settings read together: `listen_addr` + `listen_port` → `listen.addr`, the client
//! TLS trio → `listen.client_tls`/`tls_cert`/`tls_key`, and `server_tls_sslmode` →
//! `pool.server_tls`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::ini::Entry;
use super::pgbouncer::invalid;
use super::plan::Plan;
use super::{values, ConvertError};

/// PgBouncer's default `listen_port`.
const DEFAULT_PORT: u16 = 6432;

/// Maps the listening address and TLS settings. `get` finds a `[pgbouncer]` setting.
pub(super) fn map<'a>(
    get: &dyn Fn(&str) -> Option<&'a Entry>,
    plan: &mut Plan,
) -> Result<(), ConvertError> {
    listen_addr(get, plan)?;
    client_tls(get, plan)?;
    server_tls(get, plan)
}

/// Whether `listen.addr` is a loopback address.
pub(super) fn is_loopback(plan: &Plan) -> bool {
    plan.listen
        .get("addr")
        .and_then(|v| v.as_str())
        .and_then(|text| text.parse::<SocketAddr>().ok())
        .is_some_and(|addr| addr.ip().is_loopback())
}

fn listen_addr<'a>(
    get: &dyn Fn(&str) -> Option<&'a Entry>,
    plan: &mut Plan,
) -> Result<(), ConvertError> {
    let port = match get("listen_port") {
        Some(entry) => match values::integer(&entry.value) {
            Ok(n) if (1..=i64::from(u16::MAX)).contains(&n) => u16::try_from(n).unwrap_or(0),
            _ => return Err(invalid(entry, "expected a port from 1 to 65535".to_owned())),
        },
        None => DEFAULT_PORT,
    };
    let names = get("listen_addr")
        .map(|e| values::list(&e.value))
        .unwrap_or_default();
    let mut notes = Vec::new();
    let ip = match names.first().map(String::as_str) {
        None => {
            notes.push(
                "PgBouncer had no listen_addr, so it listened on its Unix socket only; \
                 pgpool-rs listens on TCP, here on loopback"
                    .to_owned(),
            );
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        Some("*") => {
            notes.push(
                "listen_addr = * (all addresses): 0.0.0.0 is every IPv4 address; use \
                 \"[::]:port\" to take IPv6 clients as well"
                    .to_owned(),
            );
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
        Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(name) => match name.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                notes.push(format!(
                    "listen_addr names a host ({name}); pool.toml needs an IP address, so \
                     this listens on all IPv4 addresses: put the interface's IP here to narrow it"
                ));
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        },
    };
    if names.len() > 1 {
        notes.push(format!(
            "pgpool-rs listens on one address; PgBouncer also listened on {}",
            names[1..].join(", ")
        ));
    }
    let addr = SocketAddr::new(ip, port).to_string();
    plan.listen.set("addr", addr.as_str());
    for note in notes {
        plan.listen.note("addr", note);
    }
    Ok(())
}

fn client_tls<'a>(
    get: &dyn Fn(&str) -> Option<&'a Entry>,
    plan: &mut Plan,
) -> Result<(), ConvertError> {
    let files = [
        ("client_tls_cert_file", "tls_cert"),
        ("client_tls_key_file", "tls_key"),
    ];
    for (ini_key, toml_key) in files {
        if let Some(entry) = get(ini_key) {
            let note = values::path_note(&entry.value);
            plan.listen.set_noted(toml_key, entry.value.as_str(), note);
        }
    }
    let Some(entry) = get("client_tls_sslmode") else {
        return Ok(());
    };
    let mode = entry.value.to_ascii_lowercase();
    let (value, note) = match mode.as_str() {
        "disable" | "allow" | "prefer" | "require" => (mode.clone(), None),
        "verify-ca" | "verify-full" => (
            "require".to_owned(),
            Some(format!(
                "PgBouncer's {mode} also verified client certificates; pgpool-rs does not"
            )),
        ),
        _ => {
            return Err(invalid(
                entry,
                "expected disable, allow, prefer, require, verify-ca or verify-full".to_owned(),
            ))
        }
    };
    let has_files = get("client_tls_cert_file").is_some() && get("client_tls_key_file").is_some();
    if value != "disable" && !has_files {
        let why = "TLS needs client_tls_cert_file and client_tls_key_file, and one is not set; \
                   client TLS stays disabled";
        plan.drop_setting(&entry.key, &entry.value, why, &entry.origin);
        return Ok(());
    }
    plan.listen.set_noted("client_tls", value.as_str(), note);
    Ok(())
}

fn server_tls<'a>(
    get: &dyn Fn(&str) -> Option<&'a Entry>,
    plan: &mut Plan,
) -> Result<(), ConvertError> {
    let Some(entry) = get("server_tls_sslmode") else {
        return Ok(());
    };
    let mode = entry.value.to_ascii_lowercase();
    let (value, note) = match mode.as_str() {
        "disable" | "prefer" | "require" | "verify-full" => (mode.as_str(), None),
        "allow" => (
            "prefer",
            Some(
                "PgBouncer's allow (plain first, TLS only if the server insists) is closest \
                 to prefer (TLS when the server offers it)",
            ),
        ),
        "verify-ca" => (
            "verify-full",
            Some(
                "PgBouncer's verify-ca does not check the host name; verify-full (the closest) \
                 does, so the certificate must name the host",
            ),
        ),
        _ => {
            return Err(invalid(
                entry,
                "expected disable, allow, prefer, require, verify-ca or verify-full".to_owned(),
            ))
        }
    };
    let ca = get("server_tls_ca_file").map(|e| e.value.clone());
    match (value, ca) {
        ("verify-full", None) => plan.pool.set_noted(
            "server_tls",
            "require",
            Some(
                "no server_tls_ca_file: pgpool-rs verifies servers only against a CA file, so \
                 this encrypts without verifying; set pool.server_tls_ca_file and verify-full"
                    .to_owned(),
            ),
        ),
        (value, ca) => {
            plan.pool
                .set_noted("server_tls", value, note.map(str::to_owned));
            if let Some(ca) = ca {
                plan.pool.set_noted(
                    "server_tls_ca_file",
                    ca,
                    Some(
                        "a relative path is taken relative to pool.toml (PgBouncer: the \
                         working directory)"
                            .to_owned(),
                    ),
                );
            }
        }
    }
    Ok(())
}
