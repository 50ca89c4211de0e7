//! Server connection pools: one per (database entry, user), bounded, with a
//! FIFO queue of waiting clients, kept warm and tidy by a maintenance task.
//! The pool knows nothing of the wire protocol beyond "a connection to hand
//! out"; resets and checks are delegated to [`crate::server::ServerConn`].

pub mod checkout;
pub mod connect;
pub mod db_limit;
pub mod handoff;
pub mod maintain;
#[allow(clippy::module_inception)]
pub mod pool;
pub mod registry;
pub mod settings_cache;

pub use checkout::Checkout;
pub use handoff::WaitSlot;
pub use pool::{CheckoutError, Pool, PoolKey, PoolSettings};
pub use registry::Registry;
pub use settings_cache::SettingsCache;
