//! What the two sides of the HTTP/1.1 upgrade (RFC 6455 §4) share: the
//! limits on a head, the outcome of parsing one, and the rule for headers
//! the application adds.  The client's request is in
//! `client::handshake`, the server's answer in `server::handshake`.

use crate::protocol::wire;

/// Headers the handshake itself writes; the application may not set them.
const RESERVED: [&str; 6] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
];

/// A header the application adds (the `headers` of connect, listen and
/// adopt, the hash on_handshake returns): not one of the handshake's own,
/// and well-formed ([`wire::check_header`]).
pub fn check_extra_header(name: &str, value: &[u8]) -> Result<(), String> {
    if let Some(r) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(name)) {
        return Err(format!("'{r}' is set by the handshake"));
    }
    wire::check_header(name, value)
}

/// Largest request or response head accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header lines parsed in one head.
pub const MAX_HEADERS: usize = 100;

/// Outcome of trying to parse a head from what has arrived so far.
#[derive(Debug)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Incomplete,
    /// The head was complete: its length in bytes and the result.
    Complete(usize, T),
}
