//! The PostgreSQL wire protocol (version 3.0): framing, the messages the pooler
//! reads or writes itself, and the startup packet. No IO happens here: decoders
//! work on byte slices and report "not yet" until a message is whole; encoders
//! append to the caller's `BytesMut`.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod startup;

pub use frame::{FrameError, Header, MAX_MESSAGE_LEN};
