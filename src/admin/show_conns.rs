//! `SHOW CLIENTS` and `SHOW SERVERS`: one row per connection, with
//! PgBouncer 1.21's columns (`prepared_statements` last, as 1.21 added it).

use std::time::SystemTime;

use super::show::{Table, INT4, TEXT};
use crate::app::Shared;
use crate::observe::cards::{format_time, ClientPhase};

/// The columns both lists share.
const COLUMNS: &[(&str, u32)] = &[
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT4),
];

fn ip(a: Option<std::net::SocketAddr>) -> (String, String) {
    a.map_or((String::new(), "0".into()), |a| {
        (a.ip().to_string(), a.port().to_string())
    })
}

/// A server connection's `ptr` (and a client's `link` to it).
fn server_ptr(id: u64) -> String {
    format!("{id:#x}")
}

/// SHOW CLIENTS: clients logged in to a pool.
pub fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(COLUMNS);
    let now = SystemTime::now();
    for (pid, slot) in shared.cancels.slots() {
        let card = &slot.card;
        let Some(info) = card.info() else { continue };
        let phase = card.phase();
        let waited = match phase {
            ClientPhase::Waiting => now.duration_since(card.request_time()).unwrap_or_default(),
            _ => std::time::Duration::ZERO,
        };
        let (addr, port) = ip(info.peer);
        let (local_addr, local_port) = ip(info.local);
        let closing = card.closing.load(std::sync::atomic::Ordering::Relaxed);
        t.push(vec![
            "C".into(),
            info.user.clone(),
            info.database.clone(),
            phase.as_str().into(),
            addr,
            port,
            local_addr,
            local_port,
            format_time(info.connected),
            format_time(card.request_time()),
            waited.as_secs().to_string(),
            waited.subsec_micros().to_string(),
            u8::from(closing).to_string(),
            format!("{pid:#x}"),
            card.server().map(server_ptr).unwrap_or_default(),
            "0".into(),
            info.tls.clone(),
            info.application_name.clone(),
            card.prepared().to_string(),
        ]);
    }
    t
}

/// SHOW SERVERS: open server connections of every pool.
pub fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(COLUMNS);
    // Which client each active server serves (`link`), by server id.
    let serving: std::collections::HashMap<u64, u32> = shared
        .cancels
        .slots()
        .into_iter()
        .filter_map(|(pid, slot)| Some((slot.card.server()?, pid)))
        .collect();
    for pool in shared.registry.pools() {
        let user = pool.settings().target.user.clone();
        for (card, idle) in pool.server_cards() {
            let (local_addr, local_port) = ip(card.local);
            t.push(vec![
                "S".into(),
                user.clone(),
                pool.key.database.clone(),
                if idle.is_some() { "idle" } else { "active" }.into(),
                card.addr.ip().to_string(),
                card.addr.port().to_string(),
                local_addr,
                local_port,
                format_time(card.connected),
                format_time(idle.unwrap_or(card.connected)),
                "0".into(),
                "0".into(),
                "0".into(),
                server_ptr(card.id),
                serving
                    .get(&card.id)
                    .filter(|_| idle.is_none())
                    .map(|pid| format!("{pid:#x}"))
                    .unwrap_or_default(),
                card.remote_pid.to_string(),
                card.tls.clone(),
                String::new(),
                "0".into(),
            ]);
        }
    }
    t
}

/// SHOW HOSTS (a pgpool-rs extension): every host of every database entry,
/// with its state (`up`, or `aside` after a failure), last known role, open
/// connections, and the entry's failover and role-change counts.
pub fn hosts(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", TEXT),
        ("host", TEXT),
        ("port", INT4),
        ("addr", TEXT),
        ("state", TEXT),
        ("role", TEXT),
        ("connections", INT4),
        ("last_change", TEXT),
        ("last_error", TEXT),
        ("failovers", INT4),
        ("role_changes", INT4),
    ]);
    for set in shared.host_sets() {
        let failovers = set.failovers.load(std::sync::atomic::Ordering::Relaxed);
        let changes = set.role_changes.load(std::sync::atomic::Ordering::Relaxed);
        for h in set.views() {
            t.push(vec![
                set.database.clone(),
                h.name,
                h.port.to_string(),
                h.addr.map(|a| a.to_string()).unwrap_or_default(),
                if h.up { "up" } else { "aside" }.into(),
                h.role.map_or("unknown", |r| r.as_str()).into(),
                h.connections.to_string(),
                format_time(h.last_change),
                h.last_error.unwrap_or_default(),
                failovers.to_string(),
                changes.to_string(),
            ]);
        }
    }
    t
}
