//! The HTTP/1.1 upgrade on both sides (RFC 6455 §4).

pub mod client;
pub mod server;

/// Largest request or response head accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header lines parsed in one head.
const MAX_HEADERS: usize = 100;

/// Outcome of trying to parse a head from what has arrived so far.
#[derive(Debug)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Incomplete,
    /// The head was complete: its length in bytes and the result.
    Complete(usize, T),
}
