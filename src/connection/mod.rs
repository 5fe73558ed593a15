//! One WebSocket connection as a state machine that the event loop drives.
//!
//! The binding calls `on_readable` / `on_writable` / `on_timer` /
//! `on_lookup` when its watchers fire and `flush` once per loop iteration,
//! then pulls events with [`Connection::next_event`] and mirrors
//! [`Connection::interest`] into its watchers.  Frames are parsed only when
//! an event is pulled, so a paused connection delivers nothing and payloads
//! are handed out straight from the read buffer.
//!
//! Each phase is a state machine of its own that owns its state and works
//! on the connection's [`Link`]: [`crate::client::dial::Dial`] (a client
//! reaching the server; [`dial`] acts on its progress), [`accept::Accept`]
//! (a server answering the upgrade request) and [`session::Session`] with
//! its [`keepalive`] (the open connection, and the event queue).  This
//! module ties them: it holds the phase, the link, the deadline and the
//! handshake's headers, and routes the loop's calls to the phase.
//!
//! The top layer: it may use every other module of the crate, and none of
//! them uses it.

mod accept;
mod deadline;
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

use std::time::Instant;

use crate::client::dial::{Dial, Stage};
use crate::net::link::Link;
use crate::net::os_error;
use crate::net::transport::{self, Received};
use crate::protocol::deflate::DeflateParams;
use crate::protocol::frame::Role;
use crate::protocol::headers::HeaderList;
use crate::protocol::inbound::Payload;
use crate::protocol::outbound::Flushed;

use accept::Accept;
use deadline::Deadline;
use events::Notice;
use session::{Next, Ready, Session};

enum Phase {
    /// Client: on the way to the server.
    Dialing(Box<Dial>),
    /// Server: the upgrade request and its answer.
    Accepting(Box<Accept>),
    /// Open, or closing once the session sent its close frame.
    Session,
    Closed,
}

pub struct Connection {
    phase: Phase,
    /// The socket, its TLS session and the two buffers.
    link: Link,
    /// The open session's state, and the events for the user.
    session: Session,
    headers: HeaderList,
    protocol: Option<String>,
    deadline: Deadline,
}

impl Connection {
    pub(super) fn new(role: Role, session: &SessionSettings) -> Connection {
        Connection {
            phase: Phase::Closed,
            link: Link::new(role == Role::Client),
            session: Session::new(role, session),
            headers: Vec::new(),
            protocol: None,
            deadline: Deadline::default(),
        }
    }

    /// The owner is going away: what is queued goes out in one last
    /// best-effort write, with a 1001 close to an open peer (a closing
    /// connection's own close frame is queued already); no events.
    pub fn abandon(&mut self) {
        let last_write = match &self.phase {
            Phase::Session => {
                if !self.session.closing() {
                    self.link.out.push_close(Some(1001), b"");
                }
                true
            }
            Phase::Accepting(accept) => accept.refusing(),
            _ => false,
        };
        if last_write && let Some(socket) = self.link.socket.as_mut() {
            let _ = transport::send(socket, self.link.tls.as_deref_mut(), &mut self.link.out);
        }
        self.enter_closed();
        self.session.forget_events();
    }

    pub fn on_readable(&mut self) {
        self.link.retired.clear();
        if let Phase::Dialing(dial) = &mut self.phase
            && dial.stage() == Stage::Connecting
        {
            // The poll of the connect attempts.
            let progress = dial.on_connecting(&mut self.link);
            return self.dialled(progress);
        }
        let Some(socket) = self.link.socket.as_mut() else {
            return;
        };
        let opening = !matches!(self.phase, Phase::Session);
        match transport::receive(
            socket,
            self.link.tls.as_deref_mut(),
            &mut self.link.inbuf,
            self.link.need,
            opening,
        ) {
            Ok(Received::Data) => self.session.heard(),
            Ok(Received::Nothing) => return,
            Ok(Received::Closed) => self.link.eof = Some(None),
            Err(text) => self.link.eof = Some(Some(text)),
        }
        match &mut self.phase {
            Phase::Dialing(dial) => {
                let progress = dial.on_readable(&mut self.link);
                self.dialled(progress);
            }
            Phase::Accepting(_) => self.read_request(),
            _ => {}
        }
    }

    pub fn on_writable(&mut self) {
        self.link.retired.clear();
        match &mut self.phase {
            Phase::Dialing(dial) if dial.stage() == Stage::Connecting => {
                let progress = dial.on_connecting(&mut self.link);
                self.dialled(progress);
            }
            _ => self.write_out(),
        }
    }

    pub fn on_timer(&mut self) {
        self.link.retired.clear();
        let now = Instant::now();
        match self.deadline.at() {
            Some(d) if now >= d => {}
            // Early wake-up: have the binding re-arm for the time left.
            Some(_) => return self.deadline.bump(),
            None => return,
        }
        match &mut self.phase {
            Phase::Dialing(dial) => {
                let progress = dial.on_timer(now, &mut self.link);
                // The watcher fired once: re-armed even if the dial's next
                // wake-up did not move.
                self.deadline.bump();
                self.dialled(progress);
            }
            Phase::Session => {
                let next = self
                    .session
                    .on_timer(&mut self.link, &mut self.deadline, now);
                self.went(next);
            }
            Phase::Closed => {}
            // A server handshake that took too long: drop it silently.
            Phase::Accepting(_) => self.enter_closed(),
        }
    }

    /// Write what is queued (one `write`), before the loop blocks.
    /// Returns whether events wait.
    pub fn flush(&mut self) -> bool {
        self.write_out();
        self.session.has_notices()
    }

    /// Bytes may be written: the handshake's or the session's.
    #[inline]
    fn flushable(&self) -> bool {
        match &self.phase {
            Phase::Dialing(dial) => {
                matches!(dial.stage(), Stage::Tunneling | Stage::AwaitingResponse)
            }
            Phase::Closed => false,
            _ => true,
        }
    }

    pub(super) fn write_out(&mut self) {
        self.link.retired.clear();
        if !self.flushable() {
            return;
        }
        let Some(socket) = self.link.socket.as_mut() else {
            return;
        };
        let result = transport::send(socket, self.link.tls.as_deref_mut(), &mut self.link.out);
        self.session.answer_deferred_ping(&mut self.link.out);
        match result {
            Ok(Flushed::All) => {
                self.link.write_blocked = false;
                match &self.phase {
                    Phase::Session => {
                        let next = self.session.flushed(&self.link);
                        self.went(next);
                    }
                    Phase::Accepting(accept) if accept.refusing() => self.enter_closed(),
                    _ => {}
                }
            }
            Ok(Flushed::Partial) => self.link.write_blocked = true,
            Err(e) => {
                let text = format!("write failed: {}", os_error::text(&e));
                match self.phase {
                    Phase::Session => {
                        let next = self.session.write_failed(text);
                        self.went(next);
                    }
                    Phase::Dialing(_) => self.fail_early(text),
                    _ => self.enter_closed(),
                }
            }
        }
    }

    /// The next event for the user, if any.  Frames are parsed here, so
    /// nothing is parsed while paused.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        if self.session.finish_current(&mut self.link.inbuf) {
            self.headers = Vec::new();
        }
        if !self.session.has_notices() {
            let ready = match self.phase {
                Phase::Session => self
                    .session
                    .parse_frames(&mut self.link, &mut self.deadline),
                _ => self.session.idle(),
            };
            match ready? {
                Ready::Message { binary, payload } => {
                    let data = match payload {
                        Payload::Buffered(range) => &self.link.inbuf.data()[range],
                        Payload::Reassembled => self.session.reader.reassembled(),
                    };
                    return Some(Event::Message { binary, data });
                }
                Ready::Pong(range) => return Some(Event::Pong(&self.link.inbuf.data()[range])),
                Ready::Ended => self.enter_closed(),
            }
        }
        self.session.next_notice()
    }

    /// The handshake completed: the session opens.
    pub(super) fn open_session(&mut self, deflate: Option<&DeflateParams>) {
        self.phase = Phase::Session;
        self.session.open(deflate, &mut self.deadline);
    }

    /// After a step of the session.
    fn went(&mut self, next: Next) {
        if next == Next::Close {
            self.enter_closed();
        }
    }

    /// The end of the socket's use.  It is shut down at once, so the peer
    /// sees FIN even while another descriptor of it lives (an adopted
    /// handle); the descriptor itself closes when the binding drops us,
    /// after it has stopped its watchers.
    pub(super) fn enter_closed(&mut self) {
        if let Phase::Dialing(dial) = &mut self.phase {
            dial.retire(&mut self.link);
        }
        self.link.shut_down();
        self.phase = Phase::Closed;
        self.deadline.set(None);
        self.session.end();
    }

    /// After a panic inside the core: this connection's state can no longer
    /// be trusted, so it ends at once with `text` as its `on_error`.
    pub fn fail_internal(&mut self, text: String) {
        match self.phase {
            Phase::Session => {
                let next = self.session.fail(&mut self.link, 1011, text);
                self.went(next);
            }
            Phase::Closed => self.session.notify(Notice::Error(text)),
            _ => self.fail_early(text),
        }
    }

    /// Fail before the handshake completed: `on_error` only.
    pub(super) fn fail_early(&mut self, text: String) {
        self.enter_closed();
        self.session.notify(Notice::Error(text));
    }
}
