//! Server connections: connecting and logging in to PostgreSQL, tracking the
//! session state the pooler must know about (parameters, dirtiness, cancel key).

pub mod cancel;
pub mod conn;
pub mod dirty;
pub mod hosts;
pub mod io;
pub mod params;
pub mod prepared;
pub mod probe;
pub mod tls;

pub use conn::{ConnectError, ConnectTarget, ServerConn, ServerCredential};
