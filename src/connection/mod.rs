//! One WebSocket connection as a state machine that the event loop drives.
//!
//! The binding calls `on_readable` / `on_writable` / `on_timer` /
//! `on_lookup` when its watchers fire and `flush` once per loop iteration,
//! then pulls events with [`Connection::next_event`] and mirrors
//! [`Connection::interest`] into its watchers.  Frames are parsed only when
//! an event is pulled, so a paused connection delivers nothing and payloads
//! are handed out straight from the read buffer.
//!
//! The connection goes through one phase after another; each phase's work
//! is in its own module: [`dial`] (a client reaching the server),
//! [`accept`] (a server answering the upgrade request), [`session`] and
//! [`keepalive`] (the open connection).  This module holds the state and
//! routes the loop's calls to the phase.
//!
//! The top layer: it may use every other module of the crate, and none of
//! them uses it.

mod accept;
mod dial;
mod events;
mod keepalive;
mod listener;
mod session;
mod settings;
#[cfg(test)]
mod testing;

pub use events::{Event, Interest, State};
pub use listener::{Bind, Listener};
pub use session::{SendError, SendKind, check_close_args};
pub use settings::{
    ClientOptions, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_SERVER_MAX_MESSAGE, ServerSettings, SessionSettings,
};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::handshake::ClientHandshake;
use crate::client::resolver::Lookup;
use crate::net::link::Link;
use crate::net::os_error;
use crate::net::transport::{self, Received};
use crate::protocol::deflate::Compressor;
use crate::protocol::frame::Role;
use crate::protocol::headers::HeaderList;
use crate::protocol::inbound::{MessageReader, Payload};
use crate::protocol::outbound::Flushed;
use crate::server::handshake::UpgradeRequest;

use dial::ClientRequest;
use events::Notice;
use keepalive::Keepalive;
use session::{OutgoingFragments, Ready};

enum Phase {
    /// Client: waiting for the resolver thread.
    Resolving(Lookup, ClientHandshake),
    /// Client: TCP connect under way on `socket`.
    Connecting(ClientHandshake),
    /// Client: asking the proxy for a tunnel.
    Tunneling(ClientHandshake),
    /// Client: request sent, waiting for the 101.
    AwaitingResponse(ClientHandshake),
    /// Server: reading the upgrade request.
    AwaitingRequest,
    /// Server: the request is parsed; the application decides.
    AwaitingVerdict(UpgradeRequest),
    /// Server: an HTTP refusal is being written; the socket closes after.
    Refusing,
    Open,
    Closing,
    Closed,
}

pub struct Connection {
    phase: Phase,
    /// The socket, its TLS session and the two buffers.
    link: Link,
    /// Client: addresses still to try, and the host for error texts.
    candidates: VecDeque<SocketAddr>,
    host: String,
    /// Bytes of `inbuf` to drop once the current event is done with.
    consume_after: usize,
    reader: MessageReader,
    notices: VecDeque<Notice>,
    current: Option<Notice>,
    /// Events may be waiting in `inbuf` (after `resume`).
    recheck: bool,
    paused: bool,
    close_sent: bool,
    close_received: Option<(u16, Vec<u8>)>,
    drain_armed: bool,
    /// Whether anyone listens for [`Event::Drain`].
    drain_wanted: bool,
    /// The latest ping's payload, answered once the pong before it is
    /// written.
    deferred_pong: Option<Vec<u8>>,
    sending_fragments: Option<OutgoingFragments>,
    /// permessage-deflate is in force: what we send is compressed.
    deflater: Option<Compressor>,
    headers: HeaderList,
    protocol: Option<String>,
    deadline: Option<Instant>,
    deadline_gen: u32,
    close_timeout: Duration,
    keepalive: Option<Keepalive>,
    /// Client only (boxed: servers do not pay for it).
    request: Option<Box<ClientRequest>>,
    server: Option<Arc<ServerSettings>>,
}

impl Connection {
    pub(super) fn new(role: Role, session: &SessionSettings) -> Connection {
        Connection {
            phase: Phase::Closed,
            link: Link::new(role == Role::Client),
            candidates: VecDeque::new(),
            host: String::new(),
            consume_after: 0,
            reader: MessageReader::new(role, session.max_message),
            notices: VecDeque::new(),
            current: None,
            recheck: false,
            paused: false,
            close_sent: false,
            close_received: None,
            drain_armed: false,
            drain_wanted: true,
            deferred_pong: None,
            sending_fragments: None,
            deflater: None,
            headers: Vec::new(),
            protocol: None,
            deadline: None,
            deadline_gen: 0,
            close_timeout: session.close_timeout,
            keepalive: Keepalive::new(session),
            request: None,
            server: None,
        }
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Open => State::Connected,
            Phase::Closing => State::Closing,
            Phase::Closed => State::Closed,
            _ => State::Connecting,
        }
    }

    pub fn interest(&self) -> Interest {
        let socket = self.link.socket.as_ref();
        let handshaking = matches!(
            self.phase,
            Phase::Tunneling(_) | Phase::AwaitingResponse(_) | Phase::AwaitingRequest
        );
        let streaming = matches!(self.phase, Phase::Open | Phase::Closing);
        let flushable = !matches!(
            self.phase,
            Phase::Resolving(..) | Phase::Connecting(_) | Phase::Closed
        );
        Interest {
            fd: socket.map(AsRawFd::as_raw_fd),
            socket_gen: self.link.socket_gen,
            read: socket.is_some()
                && self.link.eof.is_none()
                && (handshaking || (streaming && !self.paused)),
            write: socket.is_some()
                && (matches!(self.phase, Phase::Connecting(_))
                    || (flushable && self.link.write_blocked)
                    || self.link.tls.as_ref().is_some_and(|t| t.wants_write())),
            prepare: !self.notices.is_empty()
                || self.recheck
                || (flushable && !self.link.write_blocked && !self.link.out.is_empty()),
            deadline_gen: self.deadline_gen,
            resolving: matches!(self.phase, Phase::Resolving(..)),
            finished: matches!(self.phase, Phase::Closed),
        }
    }

    /// Time left until the deadline, if one is set.
    pub fn deadline_in(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Headers of the handshake, while the `Handshake` / `Connected` event
    /// is current.
    pub fn headers(&self) -> &HeaderList {
        &self.headers
    }

    pub fn protocol(&self) -> Option<&str> {
        match self.phase {
            Phase::Open | Phase::Closing => self.protocol.as_deref(),
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

    /// The owner is going away: what is queued goes out in one last
    /// best-effort write, with a 1001 close to an open peer (a closing
    /// connection's own close frame is queued already); no events.
    pub fn abandon(&mut self) {
        let last_write = match self.phase {
            Phase::Open => {
                self.link.out.push_close(Some(1001), b"");
                true
            }
            Phase::Closing | Phase::Refusing => true,
            _ => false,
        };
        if last_write && let Some(socket) = self.link.socket.as_mut() {
            let _ = transport::send(socket, self.link.tls.as_deref_mut(), &mut self.link.out);
        }
        self.enter_closed();
        self.notices.clear();
        self.current = None;
    }

    pub fn on_readable(&mut self) {
        self.link.retired = None;
        let Some(socket) = self.link.socket.as_mut() else {
            return;
        };
        let opening = !matches!(self.phase, Phase::Open | Phase::Closing);
        match transport::receive(
            socket,
            self.link.tls.as_deref_mut(),
            &mut self.link.inbuf,
            self.link.need,
            opening,
        ) {
            Ok(Received::Data) => {
                if let Some(k) = self.keepalive.as_mut() {
                    k.last_heard = Instant::now();
                }
            }
            Ok(Received::Nothing) => return,
            Ok(Received::Closed) => self.link.eof = Some(None),
            Err(text) => self.link.eof = Some(Some(text)),
        }
        match self.phase {
            Phase::Tunneling(_) => self.read_tunnel(),
            Phase::AwaitingResponse(_) => self.read_response(),
            Phase::AwaitingRequest => self.read_request(),
            _ => {}
        }
    }

    pub fn on_writable(&mut self) {
        self.link.retired = None;
        if matches!(self.phase, Phase::Connecting(_)) {
            self.finish_tcp_connect();
        } else {
            self.write_out();
        }
    }

    pub fn on_timer(&mut self) {
        self.link.retired = None;
        let now = Instant::now();
        match self.deadline {
            Some(d) if now >= d => {}
            // Early wake-up: have the binding re-arm for the time left.
            Some(_) => return self.deadline_gen = self.deadline_gen.wrapping_add(1),
            None => return,
        }
        match self.phase {
            Phase::Resolving(..)
            | Phase::Connecting(_)
            | Phase::Tunneling(_)
            | Phase::AwaitingResponse(_) => self.fail_early("connect timeout".into()),
            Phase::Open => self.keepalive_due(now),
            Phase::Closing => self.finish_close(),
            Phase::Closed => {}
            // A server handshake that took too long: drop it silently.
            _ => self.enter_closed(),
        }
    }

    /// Write what is queued (one `write`), before the loop blocks.
    /// Returns whether events wait.
    pub fn flush(&mut self) -> bool {
        self.write_out();
        !self.notices.is_empty()
    }

    pub(super) fn write_out(&mut self) {
        self.link.retired = None;
        if matches!(
            self.phase,
            Phase::Resolving(..) | Phase::Connecting(_) | Phase::Closed
        ) {
            return;
        }
        let Some(socket) = self.link.socket.as_mut() else {
            return;
        };
        let result = transport::send(socket, self.link.tls.as_deref_mut(), &mut self.link.out);
        if !self.link.out.has_unsent_pong()
            && let Some(payload) = self.deferred_pong.take()
            && !self.close_sent
        {
            // written by the next flush
            self.link.out.push_pong(&payload);
        }
        match result {
            Ok(Flushed::All) => {
                self.link.write_blocked = false;
                self.flushed_all();
            }
            Ok(Flushed::Partial) => self.link.write_blocked = true,
            Err(e) => {
                let text = format!("write failed: {}", os_error::text(&e));
                if self.close_received.is_some() {
                    // The peer said goodbye and reset: that is its close.
                    self.finish_close();
                } else if matches!(self.phase, Phase::Open | Phase::Closing) {
                    self.notices.push_back(Notice::Error(text));
                    self.finish(1006, None);
                } else if matches!(self.phase, Phase::Tunneling(_) | Phase::AwaitingResponse(_)) {
                    self.fail_early(text);
                } else {
                    self.enter_closed();
                }
            }
        }
    }

    /// The next event for the user, if any.  Frames are parsed here, so
    /// nothing is parsed while paused.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        if let Some(Notice::Connected) = self.current {
            self.headers = Vec::new();
        }
        self.current = None;
        if self.consume_after > 0 {
            self.link
                .inbuf
                .consume(std::mem::take(&mut self.consume_after));
        }
        if self.notices.is_empty() {
            match self.parse_frames()? {
                Ready::Message { binary, payload } => {
                    let data = match payload {
                        Payload::Buffered(range) => &self.link.inbuf.data()[range],
                        Payload::Reassembled => self.reader.reassembled(),
                    };
                    return Some(Event::Message { binary, data });
                }
                Ready::Pong(range) => return Some(Event::Pong(&self.link.inbuf.data()[range])),
                Ready::Notice => {}
            }
        }
        let notice = self.notices.pop_front()?;
        Some(self.current.insert(notice).as_event())
    }

    /// The end of the socket's use.  It is shut down at once, so the peer
    /// sees FIN even while another descriptor of it lives (an adopted
    /// handle); the descriptor itself closes when the binding drops us,
    /// after it has stopped its watchers.
    pub(super) fn enter_closed(&mut self) {
        self.link.shut_down();
        self.phase = Phase::Closed;
        self.set_deadline(None);
        // No more messages either way: free any compression state.
        self.deflater = None;
        self.reader.disable_inflation();
    }

    /// After a panic inside the core: this connection's state can no longer
    /// be trusted, so it ends at once with `text` as its `on_error`.
    pub fn fail_internal(&mut self, text: String) {
        match self.state() {
            State::Connected | State::Closing => self.fail(1011, text),
            State::Connecting => self.fail_early(text),
            State::Closed => self.notices.push_back(Notice::Error(text)),
        }
    }

    /// Fail before the handshake completed: `on_error` only.
    pub(super) fn fail_early(&mut self, text: String) {
        self.enter_closed();
        self.notices.push_back(Notice::Error(text));
    }

    pub(super) fn flushed_all(&mut self) {
        match self.phase {
            Phase::Open if self.drain_armed && self.link.out.queued_payload() == 0 => {
                self.drain_armed = false;
                self.notices.push_back(Notice::Drain);
            }
            Phase::Refusing => self.enter_closed(),
            Phase::Closing => self.finish_server_close(),
            _ => {}
        }
    }

    pub(super) fn set_deadline(&mut self, after: Option<Duration>) {
        self.set_deadline_at(after.map(|d| later(Instant::now(), d)));
    }

    pub(super) fn set_deadline_at(&mut self, at: Option<Instant>) {
        self.deadline = at;
        self.deadline_gen = self.deadline_gen.wrapping_add(1);
    }
}

/// `from + d`, or a point so far ahead that it never comes when the sum
/// does not fit in an `Instant`.
fn later(from: Instant, d: Duration) -> Instant {
    from.checked_add(d)
        .or_else(|| from.checked_add(FAR_AHEAD))
        .unwrap_or(from)
}

/// Longer than any timeout the binding accepts (10^9 s).
const FAR_AHEAD: Duration = Duration::from_secs(1 << 40);
