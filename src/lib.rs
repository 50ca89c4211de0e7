//! pgpool-rs: a PostgreSQL connection pooler (transaction mode), built to
//! replace PgBouncer.
//!
//! ```text
//! client socket ─► net::listener ─► session::startup (params, auth) ─► Login
//!        ┌──────────── session loop (one task per client) ◄───────────┘
//!        │  wait for a message ─► pool checkout (FIFO) ─► server conn
//!        │  relay both ways until ReadyForQuery 'I' ─► release (reset if dirty)
//!        └──► wait for the next transaction
//! config file ─► config (parse + validate) ─► snapshot ─► app::Shared
//! pools + sessions bump atomics ─► observe ◄─ admin console, metrics
//! ```
//! Imports point one way: protocol, auth, config, observe, error (leaves) ←
//! server ← pool ← session ← net ← app.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod convert;
pub mod demo;
pub mod error;
pub mod file_watch;
#[doc(hidden)]
pub mod fuzzing;
pub mod health_check;
pub mod http;
pub mod localpg;
pub mod net;
pub mod observe;
pub mod pool;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod tls;
