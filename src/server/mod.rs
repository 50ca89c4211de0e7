//! Server connections: connecting and logging in to PostgreSQL, tracking the
//! session state the pooler must know about (parameters, dirtiness, cancel key).

pub mod cancel;
pub mod conn;
pub mod dirty;
pub mod hosts;
#[cfg(test)]
mod hosts_tests;
pub mod io;
pub mod params;
pub mod prepared;
pub mod probe;
pub mod resolve;
pub mod tls;

pub use conn::{ConnectError, ConnectTarget, ServerConn, ServerCredential};
