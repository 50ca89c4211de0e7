//! One task per client: login, then the transaction loop — wait for the
//! client's next message, check out a server, bring its parameters in line,
//! relay until the transaction ends, release (resetting in the background
//! when dirty), repeat.

pub mod auth;
pub mod prepared;
pub mod relay;
pub mod startup;
pub mod throttle;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::app::Shared;
use crate::config::PoolMode;
use crate::error::{sqlstate, ClientError};
use crate::net::{ClientStream, ReadInterest};
use crate::observe::cards::ClientInfo;
use crate::pool::checkout::Release;
use crate::pool::{Checkout, CheckoutError, Pool, PoolSettings, SettingsCache, WaitSlot};
use crate::protocol::frame::read_header;
use crate::protocol::frontend::tag as ftag;
use crate::server::params::ParamSet;
use crate::server::ConnectError;
use prepared::{ClientStatements, ExpectQueue};
use relay::{ClientSide, Outcome, Relay, RelayError, Timeouts, Waiting};
use startup::Login;

/// Serves one accepted client connection to the end.
pub async fn run(stream: TcpStream, shared: Arc<Shared>) {
    crate::server::conn::configure_socket(&stream);
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    let mut client = ClientStream::Plain(stream);
    let info = |client: &ClientStream, user, database, application_name| ClientInfo {
        user,
        database,
        peer,
        local,
        connected: std::time::SystemTime::now(),
        application_name,
        tls: client.tls_description(),
    };
    // Boxed: the login's state (SCRAM, TLS handshake) is large and needed
    // once; inline it would stay in every client's task for its whole life.
    let login = match Box::pin(startup::login(&mut client, &shared, peer)).await {
        Ok(Some(startup::Admitted::Pool(login))) => login,
        Ok(Some(startup::Admitted::Console(console))) => {
            tracing::info!(client = ?peer, access = ?console.access, "admin console login");
            let card = &console.cancel_slot.card;
            card.set_info(info(
                &client,
                console.user,
                console.database,
                console.application_name,
            ));
            // Served by the pooler itself, with no server: PgBouncer lists
            // a console client as active.
            card.active(0);
            if let Err(e) =
                Box::pin(crate::admin::serve(&mut client, &shared, console.access)).await
            {
                send_error(&mut client, &e).await;
            }
            shared.cancels.remove(console.cancel_pid);
            return;
        }
        Ok(None) => return,
        Err(e) => {
            send_error(&mut client, &e).await;
            return;
        }
    };
    tracing::debug!(client = ?peer, db = %login.pool.key.database, user = %login.pool.key.user, "client logged in");
    login.cancel_slot.card.set_info(info(
        &client,
        login.pool.key.user.clone(),
        login.pool.key.database.clone(),
        login
            .wanted
            .get("application_name")
            .unwrap_or_default()
            .to_owned(),
    ));
    // A drain that started during the login missed this client's slot.
    if *shared.shutdown.borrow() {
        login.cancel_slot.close_when_idle();
    }
    let mut session = Session {
        client,
        login,
        cbuf: BytesMut::new(),
        statements: ClientStatements::default(),
        expect: ExpectQueue::default(),
        wait_slot: WaitSlot::new(),
        read_interest: ReadInterest::default(),
    };
    let pool_stats = session.login.pool.clone();
    pool_stats.stats.client_joined();
    let result = session.serve().await;
    pool_stats.stats.client_left();
    shared.cancels.remove(session.login.cancel_pid);
    if let Err(e) = result {
        if e.code == sqlstate::PROTOCOL_VIOLATION {
            shared
                .stats
                .protocol_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::debug!(client = ?peer, code = e.code, error = %e.message, "client closed with error");
        send_error(&mut session.client, &e).await;
    } else {
        tracing::debug!(client = ?peer, "client disconnected");
    }
}

/// Writes an error to the client and closes its stream, ignoring IO errors.
pub async fn send_error(client: &mut ClientStream, e: &ClientError) {
    let mut buf = BytesMut::with_capacity(128);
    e.encode(&mut buf);
    let _ = client.write_all(&buf).await;
    let _ = client.shutdown().await;
}

struct Session {
    client: ClientStream,
    login: Login,
    /// Client bytes not yet forwarded; empty (no allocation) while idle.
    cbuf: BytesMut,
    /// The client's named prepared statements (pooler-managed).
    statements: ClientStatements,
    /// Replies expected from the server, reused across transactions.
    expect: ExpectQueue,
    /// Where the pool hands this client a connection when it had to wait.
    wait_slot: Arc<WaitSlot>,
    /// Whether this task's waker is registered for the client's reads.
    read_interest: ReadInterest,
}

impl Session {
    async fn serve(&mut self) -> Result<(), ClientError> {
        let pool = self.login.pool.clone();
        // Read once per transaction without touching the pool's ArcSwap.
        let mut settings_cache = SettingsCache::new(&pool);
        let session_mode = pool.settings().mode == PoolMode::Session;
        // Registered once for the whole session: a shutdown or KILL sets the
        // card's `closing` flag, then wakes this task through it, and the
        // idle waits check the flag. (Registering per transaction would take
        // the Notify's lock twice each time.)
        let slot = self.login.cancel_slot.clone();
        let mut kill = pin!(slot.kill.notified());
        poll_fn(|cx| {
            let _ = kill.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await;
        loop {
            let client_idle = settings_cache.get(&pool).client_idle_timeout;
            if !self.wait_for_message(client_idle).await? {
                return Ok(());
            }
            let card = &self.login.cancel_slot.card;
            if card.closing.load(Ordering::Relaxed) {
                return Err(shutting_down());
            }
            let settings = settings_cache.get(&pool);
            let asked = Instant::now();
            card.waiting(asked);
            let mut co = pool
                .checkout_with(asked, &self.wait_slot, settings)
                .await
                .map_err(checkout_error)?;
            self.login.cancel_slot.card.active(co.conn().id);
            let done = self
                .transaction(&pool, &mut co, !session_mode, settings)
                .await;
            let ended = Instant::now();
            pool.stats
                .add_xact_time(ended.saturating_duration_since(co.handed_over_at()));
            let cancelled = self.login.cancel_slot.release();
            let (release, result) = match done {
                Ok(Outcome::Idle) => {
                    let conn = co.conn();
                    let dirty = conn.dirty || settings.reset_always;
                    let release = if dirty {
                        Release::Dirty
                    } else if conn.sequences_dirty {
                        Release::Sequences
                    } else {
                        Release::Clean
                    };
                    (release, Ok(true))
                }
                Ok(Outcome::ClientGone { server_clean }) => {
                    let release = match server_clean {
                        false => Release::Close,
                        true if session_mode || co.conn().dirty => Release::Dirty,
                        true if co.conn().sequences_dirty => Release::Sequences,
                        true => Release::Clean,
                    };
                    (release, Ok(false))
                }
                Ok(Outcome::ServerGone { told_client }) => {
                    pool.stats
                        .servers_lost
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let e = ClientError::fatal(
                        sqlstate::CONNECTION_FAILURE,
                        "server connection closed unexpectedly during the transaction",
                    );
                    (Release::Close, if told_client { Ok(false) } else { Err(e) })
                }
                Ok(Outcome::TimedOut(waiting)) => {
                    count_timeout(&pool.stats, waiting);
                    let e = timed_out(waiting, settings);
                    tracing::info!(db = %pool.key.database, user = %pool.key.user, reason = %e.message, "client closed");
                    // Outside a transaction (session mode) the server is clean;
                    // otherwise it is mid-transaction or mid-query: closed.
                    let release = match waiting {
                        Waiting::ClientIdle => Release::Dirty,
                        _ => Release::Close,
                    };
                    (release, Err(e))
                }
                Err(e) => (Release::Close, Err(e)),
            };
            let how = if cancelled { Release::Close } else { release };
            co.release_with(how, ended, settings);
            self.login.cancel_slot.card.idle(self.statements.len());
            // Keep the small first buffer between transactions (no allocation
            // per transaction); give back one that grew for a large message.
            if self.cbuf.is_empty() && self.cbuf.capacity() > 2 * relay::CLIENT_BUF_FIRST {
                self.cbuf = BytesMut::new();
            }
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until a whole message header is buffered. False when the client
    /// closed or sent Terminate; an error when the client must close
    /// (`closing` was set: shutdown or KILL) or stayed idle longer than
    /// `client_idle` (0 = no limit).
    async fn wait_for_message(&mut self, client_idle: Duration) -> Result<bool, ClientError> {
        let closing = &self.login.cancel_slot.card.closing;
        let stats = &self.login.pool.stats;
        // Armed only while no byte of the next transaction has arrived, and
        // only when a limit is set (no timer, no clock read otherwise).
        let mut idle_timer = pin!(None::<tokio::time::Sleep>);
        loop {
            match read_header(&self.cbuf) {
                Ok(Some(h)) if h.tag == ftag::TERMINATE => return Ok(false),
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        e.to_string(),
                    ))
                }
            }
            if self.cbuf.is_empty() {
                if !client_idle.is_zero() && idle_timer.is_none() {
                    idle_timer.set(Some(tokio::time::sleep(client_idle)));
                }
                let client = &mut self.client;
                let interest = &mut self.read_interest;
                poll_fn(|cx| {
                    if closing.load(Ordering::Relaxed) {
                        return Poll::Ready(Err(shutting_down()));
                    }
                    if let Some(timer) = idle_timer.as_mut().as_pin_mut() {
                        if timer.poll(cx).is_ready() {
                            count_timeout(stats, Waiting::ClientIdle);
                            return Poll::Ready(Err(client_idle_timeout(client_idle)));
                        }
                    }
                    interest
                        .poll(client, |c| c.poll_readable(cx))
                        .map_err(|_| closed())
                })
                .await?;
            }
            if self.cbuf.capacity() - self.cbuf.len() < relay::CLIENT_BUF_FIRST / 2 {
                self.cbuf.reserve(relay::CLIENT_BUF_FIRST);
            }
            // Under TLS, readiness may mean only part of a record has
            // arrived; a shutdown must not wait for the rest.
            let (client, cbuf) = (&mut self.client, &mut self.cbuf);
            let interest = &mut self.read_interest;
            let read = poll_fn(|cx| {
                if closing.load(Ordering::Relaxed) {
                    return Poll::Ready(Err(shutting_down()));
                }
                interest
                    .poll(client, |c| {
                        tokio_util::io::poll_read_buf(Pin::new(c), cx, &mut *cbuf)
                    })
                    .map(|r| Ok(r.unwrap_or(0)))
            })
            .await?;
            if read == 0 {
                return Ok(false);
            }
        }
    }

    async fn transaction(
        &mut self,
        pool: &Arc<Pool>,
        co: &mut Checkout,
        release_on_idle: bool,
        settings: &PoolSettings,
    ) -> Result<Outcome, ClientError> {
        let conn = co.conn();
        self.login.cancel_slot.serve(conn.key);
        if let Some(sql) = conn.params.diff_sql(&self.login.wanted) {
            match conn.run_control_query(&sql).await {
                Ok(None) => {
                    conn.params.applied(&self.login.wanted);
                    canonicalize(&mut self.login.wanted, conn);
                    conn.params.synced_with = self.login.wanted.fingerprint();
                }
                Ok(Some(err)) => {
                    return Err(ClientError::fatal(
                        "22023",
                        format!("could not apply startup parameters: {}", err.message),
                    ))
                }
                Err(_) => {
                    return Ok(Outcome::ServerGone { told_client: false });
                }
            }
        } else {
            conn.params.synced_with = self.login.wanted.fingerprint();
        }
        let max_prepared = settings.max_prepared;
        let timeouts = Timeouts {
            query: settings.query_timeout,
            idle_in_transaction: settings.idle_transaction_timeout,
            client_idle: settings.client_idle_timeout,
        };
        let client = ClientSide {
            stream: &mut self.client,
            buf: &mut self.cbuf,
            wanted: &mut self.login.wanted,
            statements: &mut self.statements,
            expect: &mut self.expect,
            read_interest: &mut self.read_interest,
        };
        let mut relay = Relay::new(client, conn, release_on_idle, max_prepared, timeouts);
        let outcome = relay.run().await;
        let counts = relay.counts;
        let xacts = u64::from(matches!(outcome, Ok(Outcome::Idle)));
        pool.stats.add_traffic(
            xacts,
            counts.queries,
            counts.client_bytes,
            counts.server_bytes,
        );
        pool.stats.add_prepared(
            counts.prepared_hits,
            counts.prepared_misses,
            counts.prepared_evictions,
        );
        outcome.map_err(|e| match e {
            RelayError::ClientProtocol(m) => ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, m),
            RelayError::ClientLimit(m) => ClientError::fatal(sqlstate::PROGRAM_LIMIT_EXCEEDED, m),
            RelayError::ClientIo(_) => closed(),
            RelayError::ServerProtocol(f) => ClientError::fatal(
                sqlstate::CONNECTION_FAILURE,
                format!("server protocol error: {f}"),
            ),
        })
    }
}

/// After SETs, adopt the server's canonical spelling of reported values so
/// the next comparison matches.
fn canonicalize(wanted: &mut ParamSet, conn: &crate::server::ServerConn) {
    let keys: Vec<String> = wanted.iter().map(|(k, _)| k.to_owned()).collect();
    for k in keys {
        if crate::server::params::is_tracked_reported(&k) {
            if let Some(v) = conn.params.reported.get(&k) {
                let v = v.to_owned();
                wanted.set(&k, &v);
            }
        }
    }
}

/// The error a client gets when a relay wait ran past its limit.
fn timed_out(waiting: Waiting, settings: &crate::pool::PoolSettings) -> ClientError {
    match waiting {
        Waiting::Query => ClientError::fatal(
            sqlstate::QUERY_CANCELED,
            format!(
                "query_timeout: no complete reply from the server within {} s; the server connection is closed",
                settings.query_timeout.as_secs_f64()
            ),
        ),
        Waiting::IdleInTransaction => ClientError::fatal(
            sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
            format!(
                "idle_transaction_timeout: idle in a transaction for {} s; the transaction is rolled back",
                settings.idle_transaction_timeout.as_secs_f64()
            ),
        ),
        Waiting::ClientIdle => client_idle_timeout(settings.client_idle_timeout),
    }
}

/// Counts a client closed by one of the relay's timeouts (`/metrics`).
fn count_timeout(stats: &crate::observe::PoolStats, waiting: Waiting) {
    let counter = match waiting {
        Waiting::Query => &stats.query_timeouts,
        Waiting::IdleInTransaction => &stats.idle_transaction_timeouts,
        Waiting::ClientIdle => &stats.client_idle_timeouts,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn client_idle_timeout(limit: Duration) -> ClientError {
    ClientError::fatal(
        sqlstate::IDLE_SESSION_TIMEOUT,
        format!("client_idle_timeout: idle for {} s", limit.as_secs_f64()),
    )
}

fn shutting_down() -> ClientError {
    ClientError::fatal(sqlstate::ADMIN_SHUTDOWN, "pooler is shutting down")
}

fn closed() -> ClientError {
    ClientError::fatal(sqlstate::CONNECTION_FAILURE, "client connection closed")
}

/// Maps a failed checkout to what the client is told.
pub fn checkout_error(e: CheckoutError) -> ClientError {
    match &e {
        CheckoutError::WaitTimeout(..) => {
            ClientError::fatal(sqlstate::QUERY_CANCELED, e.to_string())
        }
        CheckoutError::Closed(_) => ClientError::fatal(sqlstate::ADMIN_SHUTDOWN, e.to_string()),
        CheckoutError::Connect(c) => match &**c {
            ConnectError::Server(fields) => ClientError {
                severity: crate::protocol::backend::Severity::Fatal,
                code: leak_code(&fields.code),
                message: fields.message.clone(),
            },
            other => ClientError::fatal(sqlstate::CANNOT_CONNECT, other.to_string()),
        },
    }
}

/// Maps a server SQLSTATE to a static string (codes the pooler forwards).
fn leak_code(code: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "28P01", "28000", "3D000", "53300", "57P03", "42501", "08004",
    ];
    KNOWN
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or(sqlstate::CANNOT_CONNECT)
}
