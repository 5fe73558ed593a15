//! What a connection tells the binding: its state, the events for the
//! user's callbacks, and which watchers it needs.

use std::os::fd::RawFd;

/// The state the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Closing,
    Closed,
}

/// An event for the user's callbacks.  Borrowed data is valid until the
/// next call on the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Server only: an upgrade request awaits `accept_upgrade` or
    /// `reject_upgrade`; its headers are in [`Connection::headers`].
    Handshake,
    /// The handshake completed; the peer's headers are in
    /// [`Connection::headers`].
    Connected,
    Message {
        binary: bool,
        data: &'a [u8],
    },
    Pong(&'a [u8]),
    /// The send queue went from non-empty to empty.
    Drain,
    Error(&'a str),
    /// An established connection is gone (fires once).
    Closed {
        code: u16,
        reason: Option<&'a [u8]>,
    },
}

/// Events that are not frames, in the order they arose.
#[derive(Debug)]
pub(super) enum Notice {
    Handshake,
    Connected,
    Drain,
    Error(String),
    Closed(u16, Option<Vec<u8>>),
}

impl Notice {
    pub(super) fn as_event(&self) -> Event<'_> {
        match self {
            Notice::Handshake => Event::Handshake,
            Notice::Connected => Event::Connected,
            Notice::Drain => Event::Drain,
            Notice::Error(text) => Event::Error(text),
            Notice::Closed(code, reason) => Event::Closed {
                code: *code,
                reason: reason.as_deref(),
            },
        }
    }
}

/// Which watchers the connection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub fd: Option<RawFd>,
    /// Changes whenever the socket is replaced (another address tried).
    pub socket_gen: u32,
    pub read: bool,
    pub write: bool,
    /// Output to flush or events to deliver before the loop blocks.
    pub prepare: bool,
    /// Changes whenever the deadline moves.
    pub deadline_gen: u32,
    /// A resolver thread will wake the loop.
    pub resolving: bool,
    /// The socket is done with: stop the watchers and drop the connection.
    pub finished: bool,
}
