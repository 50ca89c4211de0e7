//! What the admin console's `SHOW CLIENTS` and `SHOW SERVERS` list: a card
//! per client (kept in its cancel slot) and per server connection (kept by
//! its pool). A client's card changes with three relaxed stores per
//! transaction; a server's only when the connection opens or closes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where a client is in its transaction cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPhase {
    /// Logged in, between transactions (holds no server).
    Idle,
    /// Waiting for a server connection.
    Waiting,
    /// Holding a server connection.
    Active,
}

impl ClientPhase {
    /// PgBouncer's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientPhase::Idle => "idle",
            ClientPhase::Waiting => "waiting",
            ClientPhase::Active => "active",
        }
    }
}

/// Facts about a client fixed at login.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Client user name.
    pub user: String,
    /// Database entry it connected to.
    pub database: String,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The pooler's address the client connected to.
    pub local: Option<SocketAddr>,
    /// Login time.
    pub connected: SystemTime,
    /// `application_name` from the startup packet.
    pub application_name: String,
    /// TLS version, cipher suite and key exchange (`TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519`,
    /// as PgBouncer shows them); empty for a plain connection.
    pub tls: String,
}

/// A client's live card.
#[derive(Debug, Default)]
pub struct ClientCard {
    info: OnceLock<ClientInfo>,
    phase: AtomicU8,
    /// Start of the current or last request ([`super::clock`] µs; 0: none yet).
    request_at_us: AtomicU64,
    prepared: AtomicU32,
    /// Id of the server connection serving the client (0: none).
    server: AtomicU64,
    /// Set when the client must close at its next idle moment (shutdown,
    /// KILL); checked before a new transaction starts.
    pub closing: AtomicBool,
}

impl ClientCard {
    /// Records the login facts (once).
    pub fn set_info(&self, info: ClientInfo) {
        let _ = self.info.set(info);
    }

    /// The login facts, once logged in.
    pub fn info(&self) -> Option<&ClientInfo> {
        self.info.get()
    }

    /// A transaction's first message arrived at `at`: waiting for a server.
    pub fn waiting(&self, at: Instant) {
        self.request_at_us
            .store(super::clock::micros_since_base(at), Relaxed);
        self.phase.store(ClientPhase::Waiting as u8, Relaxed);
    }

    /// Now holding server connection `server` (its pooler-wide id).
    pub fn active(&self, server: u64) {
        self.server.store(server, Relaxed);
        self.phase.store(ClientPhase::Active as u8, Relaxed);
    }

    /// Released its server; `prepared` statements are known for it.
    pub fn idle(&self, prepared: usize) {
        self.phase.store(ClientPhase::Idle as u8, Relaxed);
        self.server.store(0, Relaxed);
        self.prepared
            .store(u32::try_from(prepared).unwrap_or(u32::MAX), Relaxed);
    }

    /// The current phase.
    pub fn phase(&self) -> ClientPhase {
        match self.phase.load(Relaxed) {
            x if x == ClientPhase::Waiting as u8 => ClientPhase::Waiting,
            x if x == ClientPhase::Active as u8 => ClientPhase::Active,
            _ => ClientPhase::Idle,
        }
    }

    /// Start of the current or last request (login time before the first).
    pub fn request_time(&self) -> SystemTime {
        match self.request_at_us.load(Relaxed) {
            0 => self.info().map_or(UNIX_EPOCH, |i| i.connected),
            us => super::clock::wall_time(us),
        }
    }

    /// Id of the server connection serving the client now, if any.
    pub fn server(&self) -> Option<u64> {
        match self.server.load(Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// Named prepared statements the client had at its last release.
    pub fn prepared(&self) -> u32 {
        self.prepared.load(Relaxed)
    }
}

/// A server connection as listed by `SHOW SERVERS`.
#[derive(Debug, Clone)]
pub struct ServerCard {
    /// Pooler-wide connection id.
    pub id: u64,
    /// The server's backend pid.
    pub remote_pid: u32,
    /// The server's address.
    pub addr: SocketAddr,
    /// The pooler's end of the connection.
    pub local: Option<SocketAddr>,
    /// Login time.
    pub connected: SystemTime,
    /// TLS details as in [`ClientInfo::tls`]; empty for a plain connection.
    pub tls: String,
}

/// `TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519` for a rustls connection, the
/// form of PgBouncer's `tls` column (IANA suite names).
pub fn tls_description<D>(conn: &rustls::ConnectionCommon<D>) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(v) => format!("{v:?}"),
        None => return String::new(),
    };
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .map(|name| match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        })
        .unwrap_or_default();
    match conn.negotiated_key_exchange_group() {
        Some(group) => format!("{version}/{suite}/ECDH={:?}", group.name()),
        None => format!("{version}/{suite}"),
    }
}

/// `2026-11-26 13:16:19 UTC`, as PgBouncer prints times.
pub fn format_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// days-to-civil algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_pgbouncer() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC (a leap day).
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096);
        assert_eq!(format_time(t), "2024-02-29 12:34:56 UTC");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_798_761_599);
        assert_eq!(format_time(t), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn phases_cycle() {
        let card = ClientCard::default();
        assert_eq!(card.phase(), ClientPhase::Idle);
        card.waiting(Instant::now());
        assert_eq!(card.phase(), ClientPhase::Waiting);
        assert!(card.request_time() > UNIX_EPOCH);
        card.active(7);
        assert_eq!(
            (card.phase(), card.server()),
            (ClientPhase::Active, Some(7))
        );
        card.idle(3);
        assert_eq!((card.phase(), card.prepared()), (ClientPhase::Idle, 3));
        assert_eq!(card.server(), None);
    }
}
