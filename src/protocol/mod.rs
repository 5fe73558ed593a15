//! The WebSocket and HTTP wire formats, without I/O: frames, the message
//! parser and the send queue, UTF-8 and permessage-deflate, header syntax,
//! and what both sides of the upgrade handshake share.
//!
//! The lowest layer: it depends on no other module of the crate.

pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod headers;
pub mod inbound;
pub mod outbound;
pub mod pool;
pub mod prepared;
pub mod utf8;
pub mod wire;
