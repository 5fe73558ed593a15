//! The open session: parsing what the peer sent into events, and the
//! closing handshake ([`send`]: what the user sends).
//!
//! [`Session`] is a state machine of its own: open, then closing once a
//! close frame is sent (`close_sent`), then over, which it reports as
//! [`Next::Close`] (or [`Ready::Ended`]) for the connection to close the
//! socket.  It also holds the event queue, which the phases before it
//! use too.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::deadline::{Deadline, later};
use super::events::{Event, Notice};
use super::keepalive::{Keepalive, Tick};
use super::settings::SessionSettings;
use super::{Connection, Phase};
use crate::net::link::Link;
use crate::net::transport;
use crate::protocol::deflate::{Compressor, DeflateParams};
use crate::protocol::frame::{Control, OpCode, Role};
use crate::protocol::inbound::{InBuf, Inbound, MessageReader, Payload, Step};
use crate::protocol::outbound::Outbound;

mod send;

use send::{OutgoingFragments, cut_reason};
pub use send::{SendError, SendKind, check_close_args};

/// [`Session::admit`]'s verdict on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Within the limit (or there is none): queue it.
    Queue,
    /// Over the limit: do not queue it (already counted as dropped).
    Drop,
    /// Over the limit with `close_on_backpressure_limit`: do not queue
    /// it, and close the connection with 1008 ([`send`])
    /// (already counted as dropped).
    Close,
}

/// What parsing found for the user.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ready {
    Message {
        binary: bool,
        payload: Payload,
    },
    Pong(Range<usize>),
    /// The session is over: close the connection, then look in the notice
    /// queue.
    Ended,
}

/// What the connection does after a step of the session.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    /// The session is over (its last events are queued): close the
    /// connection.
    Close,
}

/// The state of the open session, and the events for the user.
pub(super) struct Session {
    role: Role,
    pub(super) reader: MessageReader,
    notices: VecDeque<Notice>,
    current: Option<Notice>,
    /// Bytes of `inbuf` to drop once the current event is done with.
    consume_after: usize,
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
    keepalive: Option<Keepalive>,
    close_timeout: Duration,
    /// `max_backpressure` (0: none) and `close_on_backpressure_limit`.
    max_backpressure: usize,
    close_on_backpressure_limit: bool,
    /// Messages [`Session::admit`] turned away.
    dropped: u64,
    /// `idle_timeout`, and when a frame last went either way (kept only
    /// with a timeout).
    idle_timeout: Option<Duration>,
    last_active: Instant,
}

impl Session {
    pub(super) fn new(role: Role, settings: &SessionSettings) -> Session {
        Session {
            role,
            reader: MessageReader::new(role, settings.max_message),
            notices: VecDeque::new(),
            current: None,
            consume_after: 0,
            recheck: false,
            paused: false,
            close_sent: false,
            close_received: None,
            drain_armed: false,
            drain_wanted: true,
            deferred_pong: None,
            sending_fragments: None,
            deflater: None,
            keepalive: Keepalive::new(settings),
            close_timeout: settings.close_timeout,
            max_backpressure: settings.max_backpressure,
            close_on_backpressure_limit: settings.close_on_backpressure_limit,
            dropped: 0,
            idle_timeout: settings.idle_timeout,
            last_active: Instant::now(),
        }
    }

    /// Our close frame is queued: no more sending.
    pub(super) fn closing(&self) -> bool {
        self.close_sent
    }

    pub(super) fn paused(&self) -> bool {
        self.paused
    }

    pub(super) fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// Events wait to be delivered, queued or in the read buffer.
    pub(super) fn events_waiting(&self) -> bool {
        !self.notices.is_empty() || self.recheck
    }

    pub(super) fn notify(&mut self, notice: Notice) {
        self.notices.push_back(notice);
    }

    /// The owner is going away: no events.
    pub(super) fn forget_events(&mut self) {
        self.notices.clear();
        self.current = None;
    }

    /// The user is done with the current event: its bytes leave the read
    /// buffer.  Returns whether it was [`Event::Connected`].
    #[inline]
    pub(super) fn finish_current(&mut self, inbuf: &mut InBuf) -> bool {
        let connected = matches!(self.current, Some(Notice::Connected));
        self.current = None;
        if self.consume_after > 0 {
            inbuf.consume(std::mem::take(&mut self.consume_after));
        }
        connected
    }

    /// The next queued notice as an event; it stays current until the
    /// next call.
    pub(super) fn next_notice(&mut self) -> Option<Event<'_>> {
        let notice = self.notices.pop_front()?;
        Some(self.current.insert(notice).as_event())
    }

    /// Data came in.
    #[inline]
    pub(super) fn heard(&mut self) {
        if let Some(k) = self.keepalive.as_mut() {
            k.last_heard = Instant::now();
        }
        self.active();
    }

    /// A frame went either way: the connection is not idle.
    #[inline]
    pub(super) fn active(&mut self) {
        if self.idle_timeout.is_some() {
            self.last_active = Instant::now();
        }
    }

    /// When the open session next needs its timer: the earliest of the
    /// keepalive's deadline (not while paused) and the idle timeout's.
    fn due(&self) -> Option<Instant> {
        let keepalive = self
            .keepalive
            .as_ref()
            .filter(|_| !self.paused)
            .map(Keepalive::due);
        let idle = self.idle_timeout.map(|t| later(self.last_active, t));
        match (keepalive, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The handshake completed, with permessage-deflate when negotiated.
    /// No zlib state exists until a message needs it.
    pub(super) fn open(&mut self, deflate: Option<&DeflateParams>, deadline: &mut Deadline) {
        if let Some(params) = deflate {
            self.deflater = Some(params.compressor(self.role));
            self.reader.enable_inflation(params.decompressor(self.role));
        }
        self.notices.push_back(Notice::Connected);
        if let Some(k) = self.keepalive.as_mut() {
            k.last_heard = Instant::now();
        }
        self.last_active = Instant::now();
        deadline.set_at(self.due());
    }

    /// The connection closed: no more messages either way, so any
    /// compression state goes.
    pub(super) fn end(&mut self) {
        self.deflater = None;
        self.reader.disable_inflation();
    }

    /// Without a listener, drains are not reported (each would be an
    /// event per write).
    pub(super) fn set_drain_wanted(&mut self, wanted: bool) {
        self.drain_wanted = wanted;
        self.drain_armed &= wanted;
    }

    /// `pause_recv` / `resume_recv`.
    pub(super) fn set_paused(&mut self, paused: bool, deadline: &mut Deadline) {
        if self.paused == paused {
            return;
        }
        self.paused = paused;
        // Messages already buffered are delivered on the next prepare.
        self.recheck = !paused;
        // A paused connection cannot read the pong: keepalive waits too.
        if !self.close_sent {
            if let Some(k) = self.keepalive.as_mut() {
                k.last_heard = Instant::now();
                k.ping_sent = None;
            }
            if self.keepalive.is_some() || self.idle_timeout.is_some() {
                deadline.set_at(self.due());
            }
        }
    }

    /// Before the session and after it there are no frames to parse.
    pub(super) fn idle(&mut self) -> Option<Ready> {
        self.recheck = false;
        None
    }

    /// Parse buffered frames until one is for the user or a notice arose.
    /// Pings are answered here; a close frame moves the closing handshake.
    #[inline]
    pub(super) fn parse_frames(
        &mut self,
        link: &mut Link,
        deadline: &mut Deadline,
    ) -> Option<Ready> {
        self.recheck = false;
        if self.paused {
            return None;
        }
        if self.close_received.is_some() {
            return self.handle_eof(link);
        }
        loop {
            if link.inbuf.is_empty() {
                // The usual case once a read's messages are out: no frame
                // can be complete, so skip the parser.
                self.reader.release_delivered();
                link.need = 2;
                return self.handle_eof(link);
            }
            let (used, step) = self.reader.next(link.inbuf.data_mut());
            match step {
                Step::NeedMore(n) => {
                    link.inbuf.consume(used);
                    link.inbuf.settle();
                    link.need = n;
                    return self.handle_eof(link);
                }
                Step::Violation(v) => {
                    link.inbuf.consume(used);
                    let _ = self.fail(link, v.code, v.text);
                    return Some(Ready::Ended);
                }
                Step::Frame(Inbound::Ping(range)) => {
                    let payload = &link.inbuf.data()[range];
                    // A peer that pings without reading would have pongs
                    // pile up: while the socket is full only the latest
                    // ping is answered, once the pong before it is out
                    // (RFC 6455 §5.5.3).
                    let pong_waits = link.write_blocked && link.out.has_unsent_pong();
                    match (self.close_sent, pong_waits) {
                        (true, _) => {}
                        (false, true) => self.deferred_pong = Some(payload.to_vec()),
                        (false, false) => link.out.push_pong(payload),
                    }
                    link.inbuf.consume(used);
                }
                Step::Frame(Inbound::Close { code, reason }) => {
                    let reason = link.inbuf.data()[reason].to_vec();
                    link.inbuf.consume(used);
                    if self.close_frame_received(link, deadline, code, reason) == Next::Close {
                        return Some(Ready::Ended);
                    }
                    // The end of the stream may have come in the same read.
                    return self.handle_eof(link);
                }
                Step::Frame(Inbound::Message { binary, payload }) => {
                    self.consume_after = used;
                    return Some(Ready::Message { binary, payload });
                }
                Step::Frame(Inbound::Pong(range)) => {
                    if let Some(k) = self.keepalive.as_mut() {
                        k.ping_sent = None;
                    }
                    self.consume_after = used;
                    return Some(Ready::Pong(range));
                }
            }
        }
    }

    /// Once every complete frame is delivered: the session ends if the
    /// peer is gone.
    fn handle_eof(&mut self, link: &Link) -> Option<Ready> {
        let read_error = link.eof.as_ref()?.clone();
        // A client that sent its close frame and shut down its side may
        // still read: the server writes what is left first (or until
        // close_timeout), then closes.
        if read_error.is_none()
            && self.role == Role::Server
            && self.close_sent
            && self.close_received.is_some()
            && !link.all_written()
        {
            return None;
        }
        // After the peer's close frame a reset is no error: it said goodbye.
        if let Some(text) = read_error.filter(|_| self.close_received.is_none()) {
            self.notices.push_back(Notice::Error(text));
        }
        let _ = self.finish_close();
        Some(Ready::Ended)
    }

    fn close_frame_received(
        &mut self,
        link: &mut Link,
        deadline: &mut Deadline,
        code: u16,
        reason: Vec<u8>,
    ) -> Next {
        self.close_received = Some((code, reason));
        if !self.close_sent {
            // Echo the peer's code (RFC 6455 §5.5.1).
            let echo = (code != 1005).then_some(code);
            link.out.push_close(echo, b"");
            self.close_sent = true;
            self.abandon_fragments();
            deadline.set(Some(self.close_timeout));
        }
        self.finish_server_close(link)
    }

    /// A write took everything queued: report the drain, or end a
    /// server's closing handshake.
    pub(super) fn flushed(&mut self, link: &Link) -> Next {
        if self.close_sent {
            return self.finish_server_close(link);
        }
        if self.drain_armed && link.out.queued_payload() == 0 {
            self.drain_armed = false;
            self.notices.push_back(Notice::Drain);
        }
        Next::Continue
    }

    /// After a write: the deferred pong goes into the queue once the one
    /// before it is out (written by the next flush).
    #[inline]
    pub(super) fn answer_deferred_ping(&mut self, out: &mut Outbound) {
        if !out.has_unsent_pong()
            && let Some(payload) = self.deferred_pong.take()
            && !self.close_sent
        {
            out.push_pong(&payload);
        }
    }

    /// Writing failed with `text`.
    pub(super) fn write_failed(&mut self, text: String) -> Next {
        if self.close_received.is_some() {
            // The peer said goodbye and reset: that is its close.
            return self.finish_close();
        }
        self.notices.push_back(Notice::Error(text));
        self.finish(1006, None)
    }

    /// The deadline passed: the keepalive's, or the closing handshake's.
    pub(super) fn on_timer(
        &mut self,
        link: &mut Link,
        deadline: &mut Deadline,
        now: Instant,
    ) -> Next {
        if self.close_sent {
            self.finish_close()
        } else if self
            .idle_timeout
            .is_some_and(|t| now >= later(self.last_active, t))
        {
            self.close(&mut link.out, deadline, 1001, b"idle timeout");
            Next::Continue
        } else {
            self.keepalive_due(link, deadline, now)
        }
    }

    /// The keepalive deadline passed: ping, or give up on a missing pong.
    /// Traffic since the deadline was set only moves it (no timer churn
    /// per message).
    fn keepalive_due(&mut self, link: &mut Link, deadline: &mut Deadline, now: Instant) -> Next {
        if let Some(k) = self.keepalive.as_mut().filter(|_| !self.paused) {
            match k.tick(now) {
                Tick::TimedOut => return self.fail(link, 1011, "ping timeout".into()),
                Tick::Ping => {
                    link.out
                        .push_frame(OpCode::Control(Control::Ping), true, &[], false);
                    self.active();
                }
                Tick::Wait => {}
            }
        }
        deadline.set_at(self.due());
        Next::Continue
    }

    /// The server closes TCP first, once both close frames have passed
    /// and everything it queued is with the kernel.  Until then the write
    /// watcher runs and `close_timeout` bounds the wait.
    fn finish_server_close(&mut self, link: &Link) -> Next {
        if self.role == Role::Server
            && self.close_sent
            && self.close_received.is_some()
            && link.all_written()
        {
            return self.finish_close();
        }
        Next::Continue
    }

    /// End of an established connection: the peer's close code, or 1006.
    fn finish_close(&mut self) -> Next {
        match self.close_received.take() {
            Some((1005, _)) => self.finish(1005, None),
            Some((code, reason)) => self.finish(code, Some(reason)),
            None => self.finish(1006, None),
        }
    }

    fn finish(&mut self, code: u16, reason: Option<Vec<u8>>) -> Next {
        self.notices.push_back(Notice::Closed(code, reason));
        Next::Close
    }

    /// Fail an established connection: tell the user, send the close code
    /// (one last write).
    pub(super) fn fail(&mut self, link: &mut Link, code: u16, text: String) -> Next {
        if !self.close_sent {
            link.out.push_close(Some(code), cut_reason(text.as_bytes()));
            self.close_sent = true;
            if let Some(socket) = link.socket.as_mut() {
                let _ = transport::send(socket, link.tls.as_deref_mut(), &mut link.out);
            }
        }
        let reason = text.as_bytes().to_vec();
        self.notices.push_back(Notice::Error(text));
        self.finish(code, Some(reason))
    }
}

/// The user's calls on the open session that do not send.
impl Connection {
    /// Without a listener, drains are not reported (each would be an
    /// event per write).
    pub fn set_drain_wanted(&mut self, wanted: bool) {
        self.session.set_drain_wanted(wanted);
    }

    /// `pause_recv` / `resume_recv`; only while connected or closing.
    pub fn set_paused(&mut self, paused: bool) {
        if let Phase::Session = self.phase {
            self.session.set_paused(paused, &mut self.deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Open sessions between a client and a server over loopback, plain and
    //! over TLS.

    use super::*;
    use crate::connection::testing::*;
    use crate::connection::{ServerSettings, SessionSettings, State};
    use std::time::{Duration, Instant};

    /// Make the kernel hold little of what `from` writes to `to` (a few
    /// KiB each way), so that a TLS session keeps the rest.
    fn shrink_buffers(from: &Connection, to: &Connection) {
        let send = socket2::SockRef::from(from.link.socket.as_ref().unwrap());
        send.set_send_buffer_size(4096).unwrap();
        let recv = socket2::SockRef::from(to.link.socket.as_ref().unwrap());
        recv.set_recv_buffer_size(4096).unwrap();
    }

    /// 60 KiB that differ everywhere: less than a TLS session buffers, so
    /// the send queue empties into the session at once.
    fn tail_message() -> Vec<u8> {
        (0..60 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect()
    }

    /// The server sent a message and its close frame and has the client's
    /// close frame (and, with `half_close`, the end of its stream) while
    /// its TLS session still holds most of the message: it closes only
    /// once the client has all of it.
    fn close_waits_for_tls_records(half_close: bool) {
        let mut p = open_tls(ServerSettings::default());
        shrink_buffers(&p.server, &p.client);
        let big = tail_message();
        p.server.send(SendKind::Binary, &big).unwrap();
        p.server.close(1000.0, b"done").unwrap();
        p.client.close(1000.0, b"bye").unwrap();
        p.client.flush();
        if half_close {
            let socket = p.client.link.socket.as_ref().unwrap();
            socket.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Only the server runs: it writes what the kernel takes and reads
        // the client's close frame.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.server.session.close_received.is_none() && p.server.state() != State::Closed {
            assert!(Instant::now() < deadline, "{:?}", p.server_seen);
            turn(&mut p.server, &mut p.server_seen);
            std::thread::yield_now();
        }
        if half_close {
            // and the end of the client's stream
            turn(&mut p.server, &mut p.server_seen);
        }
        assert_eq!(p.server.state(), State::Closing, "still writing");
        assert!(p.server.link.tls.as_ref().unwrap().wants_write());
        assert!(p.server.link.out.is_empty(), "the session took everything");
        assert!(p.server.queued() > 40 * 1024, "and it counts as queued");
        assert!(p.server.interest().write, "the write watcher runs");
        assert!(!p.server.interest().finished);
        p.run_until(|p| p.client.state() == State::Closed && p.server.state() == State::Closed);
        assert_eq!(
            p.client_seen[1..],
            [
                Seen::Message(true, big),
                Seen::Closed(1000, Some(b"done".to_vec()))
            ]
        );
        assert_eq!(
            p.server_seen.last(),
            Some(&Seen::Closed(1000, Some(b"bye".to_vec())))
        );
    }

    #[test]
    fn tls_close_waits_for_the_session_records() {
        close_waits_for_tls_records(false);
    }

    #[test]
    fn tls_close_waits_for_the_session_records_after_a_half_close() {
        close_waits_for_tls_records(true);
    }

    #[test]
    fn tls_drain_waits_for_the_session_records() {
        let mut p = open_tls(ServerSettings::default());
        shrink_buffers(&p.server, &p.client);
        // Well under what the session buffers, whatever the kernel took.
        let big = tail_message()[..40 * 1024].to_vec();
        p.server.send(SendKind::Binary, &big).unwrap();
        turn(&mut p.server, &mut p.server_seen);
        assert!(p.server.link.out.is_empty() && p.server.link.tls.as_ref().unwrap().wants_write());
        assert!(p.server.queued() > 16 * 1024);
        assert!(!p.server_seen.contains(&Seen::Drain));
        p.run_until(|p| p.server_seen.contains(&Seen::Drain));
        assert_eq!(p.server.queued(), 0);
        p.run_until(|p| p.client_seen.contains(&Seen::Message(true, big.clone())));
    }

    #[test]
    fn tls_close_timeout_bounds_a_peer_that_never_reads() {
        let mut settings = ServerSettings::default();
        settings.session.close_timeout = Duration::from_millis(100);
        let mut p = open_tls(settings);
        shrink_buffers(&p.server, &p.client);
        p.server.send(SendKind::Binary, &tail_message()).unwrap();
        p.server.close(1000.0, b"done").unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        while p.server.state() != State::Closed {
            assert!(Instant::now() < deadline);
            turn(&mut p.server, &mut p.server_seen);
            std::thread::yield_now();
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(p.server_seen.last(), Some(&Seen::Closed(1006, None)));
        assert!(p.server.interest().finished);
    }

    #[test]
    fn compression_both_ways() {
        let mut settings = ServerSettings::default();
        settings.policy.compression = true;
        settings.policy.context_takeover = true;
        let mut p = Pair::open(settings, "127.0.0.1");
        assert!(p.client.session.deflater.is_some() && p.server.session.deflater.is_some());
        let text = "{\"price\":\"101.25\",\"side\":\"buy\"} ".repeat(3000);
        p.client.send(SendKind::Text, text.as_bytes()).unwrap();
        assert!(
            p.client.queued() < text.len() / 20,
            "compressed on the wire"
        );
        p.client.send(SendKind::Binary, b"short").unwrap();
        p.client
            .send(
                SendKind::Fragment {
                    binary: false,
                    fin: false,
                },
                b"one, ",
            )
            .unwrap();
        p.client
            .send(
                SendKind::Fragment {
                    binary: false,
                    fin: false,
                },
                b"",
            )
            .unwrap();
        p.client
            .send(
                SendKind::Fragment {
                    binary: false,
                    fin: true,
                },
                b"two",
            )
            .unwrap();
        p.run_until(|p| messages(&p.server_seen).len() == 3);
        p.echo();
        p.run_until(|p| messages(&p.client_seen).len() == 3);
        let expected = vec![
            Seen::Message(false, text.clone().into_bytes()),
            Seen::Message(true, b"short".to_vec()),
            Seen::Message(false, b"one, two".to_vec()),
        ];
        assert_eq!(messages(&p.client_seen), expected);
        // The server keeps context (more compact the second time); the
        // client does not, so it holds no zlib state between messages.
        assert!(
            p.client
                .session
                .deflater
                .as_ref()
                .is_some_and(|d| !d.is_active())
        );
        p.client.close(1000.0, b"").unwrap();
        p.run_until(|p| p.server.state() == State::Closed);
        assert!(p.server.session.deflater.is_none(), "freed at close");
    }

    #[test]
    fn compression_needs_both_sides() {
        let p = Pair::open(ServerSettings::default(), "127.0.0.1");
        assert!(p.client.session.deflater.is_none() && p.server.session.deflater.is_none());
    }

    #[test]
    fn handshake_echo_and_headers() {
        let mut p = Pair::open(ServerSettings::default(), "127.0.0.1");
        assert_eq!(p.client.state(), State::Connected);
        assert_eq!(p.server.peer_ip(), Some("127.0.0.1".parse().unwrap()));
        let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        p.client.send(SendKind::Text, b"hello").unwrap();
        p.client.send(SendKind::Binary, &big).unwrap();
        p.client.send(SendKind::Text, b"").unwrap();
        assert_eq!(p.client.queued(), 5 + big.len());
        let expected = vec![
            Seen::Message(false, b"hello".to_vec()),
            Seen::Message(true, big.clone()),
            Seen::Message(false, Vec::new()),
        ];
        p.run_until(|p| messages(&p.server_seen).len() == 3);
        assert_eq!(p.client.queued(), 0);
        p.echo();
        p.run_until(|p| messages(&p.client_seen).len() == 3);
        assert_eq!(messages(&p.client_seen), expected);
        assert!(p.client_seen.contains(&Seen::Drain));
    }

    #[test]
    fn closing_handshake_reports_the_peer_code() {
        let mut p = Pair::open(ServerSettings::default(), "127.0.0.1");
        p.client.close(4001.0, "bye".as_bytes()).unwrap();
        assert_eq!(p.client.state(), State::Closing);
        assert_eq!(p.client.send(SendKind::Text, b"x"), Err(SendError::NotOpen));
        p.run_until(|p| p.client.state() == State::Closed && p.server.state() == State::Closed);
        assert_eq!(
            p.server_seen.last(),
            Some(&Seen::Closed(4001, Some(b"bye".to_vec())))
        );
        assert_eq!(
            p.client_seen.last(),
            Some(&Seen::Closed(4001, Some(Vec::new())))
        );
        assert!(p.client.interest().finished);
    }

    #[test]
    fn lost_connection_is_1006() {
        let mut p = Pair::open(ServerSettings::default(), "127.0.0.1");
        p.server.abandon();
        p.server = Connection::new(Role::Server, &SessionSettings::default());
        p.run_until(|p| p.client.state() == State::Closed);
        // abandon() sends a best-effort 1001 before dropping the socket.
        assert_eq!(
            p.client_seen.last(),
            Some(&Seen::Closed(1001, Some(Vec::new())))
        );
    }

    #[test]
    fn ping_is_answered_and_size_limit_enforced() {
        let mut settings = ServerSettings::default();
        settings.session.max_message = 10;
        let mut p = Pair::open(settings, "localhost");
        p.client.send(SendKind::Ping, b"are you there").unwrap();
        p.run_until(|p| {
            p.client_seen
                .contains(&Seen::Pong(b"are you there".to_vec()))
        });
        p.client.send(SendKind::Binary, &[0; 11]).unwrap();
        p.run_until(|p| p.client.state() == State::Closed);
        let text = "message exceeds max_message_size";
        assert!(p.server_seen.contains(&Seen::Error(text.into())));
        assert_eq!(
            p.server_seen.last(),
            Some(&Seen::Closed(1009, Some(text.as_bytes().to_vec())))
        );
        assert_eq!(
            p.client_seen.last(),
            Some(&Seen::Closed(1009, Some(text.as_bytes().to_vec())))
        );
    }

    /// A client's session on a link without a socket: the tests put the
    /// server's frames (unmasked) into the read buffer.
    fn open_session() -> (Session, Link, Deadline) {
        open_session_with(&SessionSettings::default())
    }

    fn open_session_with(settings: &SessionSettings) -> (Session, Link, Deadline) {
        let mut session = Session::new(Role::Client, settings);
        let (mut link, mut deadline) = (Link::new(true), Deadline::default());
        session.open(None, &mut deadline);
        assert_eq!(
            session.next_notice().map(|e| owned(e)),
            Some(Seen::Connected)
        );
        assert!(
            session.finish_current(&mut link.inbuf),
            "Connected was current"
        );
        (session, link, deadline)
    }

    fn sent_opcodes(link: &mut Link) -> Vec<u8> {
        let mut wire = Vec::new();
        link.out.write_to(&mut wire).unwrap();
        let mut opcodes = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            opcodes.push(wire[at] & 0x0F);
            // masked, payload < 126 in these tests
            at += 2 + 4 + usize::from(wire[at + 1] & 0x7F);
        }
        opcodes
    }

    #[test]
    fn frames_become_events_and_a_close_frame_moves_to_closing() {
        let (mut session, mut link, mut deadline) = open_session();
        link.inbuf
            .extend(&[0x81, 2, b'h', b'i', 0x89, 1, b'?', 0x8A, 0]);
        let ready = session.parse_frames(&mut link, &mut deadline);
        assert_eq!(
            ready,
            Some(Ready::Message {
                binary: false,
                payload: Payload::Buffered(2..4)
            })
        );
        session.finish_current(&mut link.inbuf);
        // The ping is answered on the way to the pong.
        assert_eq!(
            session.parse_frames(&mut link, &mut deadline),
            Some(Ready::Pong(2..2))
        );
        assert_eq!(sent_opcodes(&mut link), [0xA]);
        session.finish_current(&mut link.inbuf);
        assert_eq!(session.parse_frames(&mut link, &mut deadline), None);
        assert!(link.inbuf.is_empty());
        // The peer's close: echoed, and the session is closing.
        let generation = deadline.generation();
        link.inbuf.extend(&[0x88, 2, 0x03, 0xE8]);
        assert_eq!(session.parse_frames(&mut link, &mut deadline), None);
        assert!(session.closing());
        assert!(deadline.generation() > generation, "close_timeout runs");
        assert_eq!(sent_opcodes(&mut link), [0x8]);
        assert_eq!(
            session.send(&mut link.out, SendKind::Text, b"x"),
            Err(SendError::NotOpen)
        );
        // Then the end of the stream ends the session with the peer's code.
        link.eof = Some(None);
        assert_eq!(
            session.parse_frames(&mut link, &mut deadline),
            Some(Ready::Ended)
        );
        assert_eq!(
            session.next_notice().map(|e| owned(e)),
            Some(Seen::Closed(1000, Some(Vec::new())))
        );
    }

    #[test]
    fn a_paused_session_parses_nothing_until_resumed() {
        let (mut session, mut link, mut deadline) = open_session();
        session.set_paused(true, &mut deadline);
        link.inbuf.extend(&[0x82, 1, 7]);
        assert_eq!(session.parse_frames(&mut link, &mut deadline), None);
        assert!(!session.events_waiting());
        session.set_paused(false, &mut deadline);
        assert!(session.events_waiting(), "buffered messages are rechecked");
        assert!(matches!(
            session.parse_frames(&mut link, &mut deadline),
            Some(Ready::Message { binary: true, .. })
        ));
        assert!(!session.events_waiting());
    }

    #[test]
    fn our_close_finishes_an_open_fragmented_message() {
        let (mut session, mut link, mut deadline) = open_session();
        let first = SendKind::Fragment {
            binary: true,
            fin: false,
        };
        session.send(&mut link.out, first, b"a").unwrap();
        assert_eq!(
            session.send(&mut link.out, SendKind::Binary, b"b"),
            Err(SendError::FragmentInProgress)
        );
        session.close(&mut link.out, &mut deadline, 1000, b"");
        assert!(session.closing());
        assert_eq!(sent_opcodes(&mut link), [0x2, 0x0, 0x8]);
        session.close(&mut link.out, &mut deadline, 1000, b"");
        assert!(link.out.is_empty(), "a second close is a no-op");
    }

    #[test]
    fn the_backpressure_limit_drops_or_closes() {
        let settings = SessionSettings {
            max_backpressure: 10,
            ..SessionSettings::default()
        };
        let (mut session, mut link, mut deadline) = open_session_with(&settings);
        let send =
            |s: &mut Session, link: &mut Link, kind, data: &[u8]| s.send(&mut link.out, kind, data);
        assert_eq!(
            send(&mut session, &mut link, SendKind::Binary, &[0; 6]),
            Ok(Admit::Queue)
        );
        assert_eq!(
            send(&mut session, &mut link, SendKind::Binary, &[0; 5]),
            Ok(Admit::Drop)
        );
        assert_eq!(
            send(&mut session, &mut link, SendKind::Text, b"1234"),
            Ok(Admit::Queue)
        );
        // Control frames are exempt.
        assert_eq!(
            send(&mut session, &mut link, SendKind::Ping, b"p"),
            Ok(Admit::Queue)
        );
        let first = SendKind::Fragment {
            binary: true,
            fin: false,
        };
        let last = SendKind::Fragment {
            binary: true,
            fin: true,
        };
        assert_eq!(send(&mut session, &mut link, first, b"x"), Ok(Admit::Drop));
        assert_eq!(session.dropped(), 2);
        link.out.write_to(&mut Vec::new()).unwrap();
        // A message larger than the limit is dropped on an empty queue too.
        assert_eq!(
            send(&mut session, &mut link, SendKind::Binary, &[0; 11]),
            Ok(Admit::Drop)
        );
        // A started message is always finished.
        assert_eq!(
            send(&mut session, &mut link, first, &[0; 10]),
            Ok(Admit::Queue)
        );
        assert_eq!(
            send(&mut session, &mut link, last, &[0; 10]),
            Ok(Admit::Queue)
        );
        assert_eq!(session.dropped(), 3);
        assert!(!session.closing());

        let settings = SessionSettings {
            close_on_backpressure_limit: true,
            ..settings
        };
        let (mut session, mut link, _) = open_session_with(&settings);
        assert_eq!(
            send(&mut session, &mut link, SendKind::Binary, &[0; 11]),
            Ok(Admit::Close)
        );
        assert_eq!(session.dropped(), 1);
        let _ = &mut deadline;
    }

    #[test]
    fn a_violation_fails_the_session() {
        let (mut session, mut link, mut deadline) = open_session();
        // A masked frame from a server.
        link.inbuf.extend(&[0x81, 0x81, 0, 0, 0, 0, b'x']);
        assert_eq!(
            session.parse_frames(&mut link, &mut deadline),
            Some(Ready::Ended)
        );
        assert!(matches!(
            session.next_notice().map(|e| owned(e)),
            Some(Seen::Error(_))
        ));
        assert!(matches!(
            session.next_notice().map(|e| owned(e)),
            Some(Seen::Closed(1002, Some(_)))
        ));
        assert_eq!(sent_opcodes(&mut link), [0x8], "with a close frame");
    }

    #[test]
    fn a_drain_is_reported_once_everything_is_written() {
        let (mut session, mut link, _) = open_session();
        session.send(&mut link.out, SendKind::Text, b"x").unwrap();
        assert_eq!(session.flushed(&link), Next::Continue);
        assert!(!session.has_notices(), "not yet written");
        link.out.write_to(&mut Vec::new()).unwrap();
        assert_eq!(session.flushed(&link), Next::Continue);
        assert_eq!(session.next_notice().map(|e| owned(e)), Some(Seen::Drain));
        session.set_drain_wanted(false);
        session.send(&mut link.out, SendKind::Text, b"x").unwrap();
        link.out.write_to(&mut Vec::new()).unwrap();
        assert_eq!(session.flushed(&link), Next::Continue);
        assert!(!session.has_notices(), "nobody listens");
    }

    #[test]
    fn a_write_failure_after_the_peers_close_is_its_close() {
        let (mut session, mut link, mut deadline) = open_session();
        link.inbuf.extend(&[0x88, 2, 0x0F, 0xA1]);
        assert_eq!(session.parse_frames(&mut link, &mut deadline), None);
        assert_eq!(session.write_failed("reset".into()), Next::Close);
        assert_eq!(
            session.next_notice().map(|e| owned(e)),
            Some(Seen::Closed(4001, Some(Vec::new())))
        );
    }
}
