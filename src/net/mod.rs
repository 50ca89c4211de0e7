//! The client-facing network side: the listener (accept, `max_client_conn`)
//! and the client stream type (plain now; TLS slots in as another variant).

pub mod listener;
pub mod stream;

pub use stream::ClientStream;
