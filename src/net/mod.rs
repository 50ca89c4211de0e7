//! The client-facing network side: the listener (accept, `max_client_conn`)
//! the client stream type (plain or TLS), and the client-facing TLS upgrade.

pub mod listener;
pub mod stream;
pub mod tls;

pub use stream::{ClientStream, ReadInterest};
