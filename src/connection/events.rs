//! What a connection tells the binding: its state, the events for the
//! user's callbacks, and which watchers it needs.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::{Connection, Phase};
use crate::client::dial::Stage;
use crate::protocol::headers::HeaderList;

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

/// What the binding asks of a connection.
impl Connection {
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Session if self.session.closing() => State::Closing,
            Phase::Session => State::Connected,
            Phase::Closed => State::Closed,
            _ => State::Connecting,
        }
    }

    pub fn interest(&self) -> Interest {
        let socket = self.link.socket.as_ref();
        let stage = match &self.phase {
            Phase::Dialing(dial) => Some(dial.stage()),
            _ => None,
        };
        let reading = match &self.phase {
            Phase::Dialing(_) => {
                matches!(stage, Some(Stage::Tunneling | Stage::AwaitingResponse))
            }
            Phase::Accepting(accept) => accept.reading(),
            Phase::Session => !self.session.paused(),
            Phase::Closed => false,
        };
        let flushable = self.flushable();
        // While connecting, what the race of connect attempts watches.
        let connecting = match &self.phase {
            Phase::Dialing(dial) if stage == Some(Stage::Connecting) => Some(dial.watch()),
            _ => None,
        };
        let fd = match connecting {
            Some(watch) => watch.map(|w| w.fd),
            None => socket.map(AsRawFd::as_raw_fd),
        };
        Interest {
            fd,
            socket_gen: self.link.socket_gen,
            read: match connecting {
                Some(watch) => watch.is_some_and(|w| w.readable),
                None => socket.is_some() && self.link.eof.is_none() && reading,
            },
            write: match connecting {
                Some(watch) => watch.is_some_and(|w| !w.readable),
                None => {
                    socket.is_some()
                        && ((flushable && self.link.write_blocked)
                            || self.link.tls.as_ref().is_some_and(|t| t.wants_write()))
                }
            },
            prepare: self.session.events_waiting()
                || (flushable && !self.link.write_blocked && !self.link.out.is_empty()),
            deadline_gen: self.deadline.generation(),
            resolving: stage == Some(Stage::Resolving),
            finished: matches!(self.phase, Phase::Closed),
        }
    }

    /// Time left until the deadline, if one is set.
    pub fn deadline_in(&self) -> Option<Duration> {
        self.deadline
            .at()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Headers of the handshake, while the `Handshake` / `Connected` event
    /// is current.
    pub fn headers(&self) -> &HeaderList {
        &self.headers
    }

    pub fn protocol(&self) -> Option<&str> {
        match self.phase {
            Phase::Session => self.protocol.as_deref(),
            _ => None,
        }
    }

    pub fn peer_ip(&self) -> Option<IpAddr> {
        match self.phase {
            Phase::Closed => None,
            // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
            _ => self.link.peer.map(|p| p.ip().to_canonical()),
        }
    }

    /// User payload bytes the kernel does not have yet; with TLS that
    /// includes what the session holds, encrypted or not.
    pub fn queued(&self) -> usize {
        match self.phase {
            Phase::Closed => 0,
            _ => self.link.out.queued_payload(),
        }
    }
}
