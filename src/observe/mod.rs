//! Observation: counters that pools and sessions bump with relaxed atomics and
//! that the admin console, `/metrics` and tests read.

pub mod cards;
pub mod clock;
pub mod stats;

pub use stats::{GlobalStats, PoolStats};
