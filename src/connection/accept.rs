//! The server's way to an open connection: reading the upgrade request,
//! waiting for the application's verdict (`on_handshake`), and answering
//! it with the 101 or an HTTP refusal.
//!
//! [`Accept`] is that state machine; the connection feeds it the bytes
//! read and acts on what it returns.

use std::sync::Arc;

use mio::net::TcpStream;

use super::{Connection, Notice, Phase, ServerSettings};
use crate::net::link::Link;
use crate::net::tls;
use crate::protocol::deflate::DeflateParams;
use crate::protocol::frame::Role;
use crate::protocol::handshake::Parsed;
use crate::protocol::headers::HeaderList;
use crate::protocol::outbound::Outbound;
use crate::server::handshake::{self, UpgradeRequest, Verdict};

/// A server connection before it is open.
pub(super) struct Accept {
    settings: Arc<ServerSettings>,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Reading the upgrade request.
    Reading,
    /// The request is parsed; the application decides.
    AwaitingVerdict(UpgradeRequest),
    /// An HTTP refusal is being written; the socket closes after.
    Refusing,
}

/// What the connection does after the request was read further.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// Not complete yet, or answered with a refusal that is now queued.
    Wait,
    /// A valid request with these headers: ask the application.
    Handshake(HeaderList),
    /// The peer went away mid-request: close without a word.
    Drop,
}

/// What the application's acceptance led to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Upgrade {
    /// No request was waiting for a verdict.
    NotPending,
    /// The 101 is queued: the session opens.
    Open {
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
    },
    /// A 500 is queued instead, for this reason.
    Refused(String),
}

impl Accept {
    pub(super) fn new(settings: Arc<ServerSettings>) -> Accept {
        Accept {
            settings,
            stage: Stage::Reading,
        }
    }

    /// The request is still being read.
    pub(super) fn reading(&self) -> bool {
        matches!(self.stage, Stage::Reading)
    }

    /// An HTTP refusal is being written.
    pub(super) fn refusing(&self) -> bool {
        matches!(self.stage, Stage::Refusing)
    }

    /// Look at what was read of the request.
    pub(super) fn read(&mut self, link: &mut Link) -> Read {
        if !self.reading() {
            return Read::Wait;
        }
        match handshake::read_request(link.inbuf.data(), &self.settings.policy) {
            Parsed::Complete(used, Verdict::Upgrade(mut request)) => {
                link.inbuf.consume(used);
                let headers = std::mem::take(&mut request.headers);
                self.stage = Stage::AwaitingVerdict(request);
                Read::Handshake(headers)
            }
            Parsed::Complete(used, Verdict::Refuse(answer)) => {
                link.inbuf.consume(used);
                self.refuse(&mut link.out, answer);
                Read::Wait
            }
            Parsed::Incomplete if link.eof.is_some() => Read::Drop,
            Parsed::Incomplete => {
                link.inbuf.settle();
                Read::Wait
            }
        }
    }

    /// Answer the pending request with a 101.  Headers that may not be
    /// sent refuse it with a 500 instead.
    pub(super) fn accept(&mut self, out: &mut Outbound, extra: &[(String, Vec<u8>)]) -> Upgrade {
        let Stage::AwaitingVerdict(request) = std::mem::replace(&mut self.stage, Stage::Reading)
        else {
            return Upgrade::NotPending;
        };
        if let Err(why) = request.write_response(&self.settings.policy, extra, out.raw_buf()) {
            self.refuse(out, handshake::http_answer("500 Internal Server Error", ""));
            return Upgrade::Refused(why);
        }
        Upgrade::Open {
            protocol: request.protocol,
            deflate: request.deflate.map(|(params, _)| params),
        }
    }

    /// Refuse the pending request with a 403.
    pub(super) fn reject(&mut self, out: &mut Outbound) {
        if matches!(self.stage, Stage::AwaitingVerdict(_)) {
            self.refuse(out, handshake::http_answer("403 Forbidden", ""));
        }
    }

    fn refuse(&mut self, out: &mut Outbound, answer: Vec<u8>) {
        out.push_raw(&answer);
        self.stage = Stage::Refusing;
    }
}

impl Connection {
    /// A server connection for a socket a listener accepted.
    pub fn accept(socket: TcpStream, settings: Arc<ServerSettings>) -> Connection {
        let mut conn = Connection::new(Role::Server, &settings.session);
        // Without TCP_NODELAY small frames wait for the peer's delayed ACK.
        let _ = socket.set_nodelay(true);
        conn.link.peer = socket.peer_addr().ok();
        conn.link.socket = Some(socket);
        conn.deadline.set(Some(settings.handshake_timeout));
        let tls = settings.tls.as_ref().map(tls::server_session);
        conn.phase = Phase::Accepting(Box::new(Accept::new(settings)));
        match tls {
            Some(Ok(session)) => conn.link.tls = Some(Box::new(session)),
            Some(Err(_)) => conn.enter_closed(),
            None => {}
        }
        conn
    }

    /// A server connection for a socket someone else accepted, with bytes
    /// already read from it (typically the upgrade request).
    pub fn adopt(
        socket: TcpStream,
        settings: Arc<ServerSettings>,
        initial_data: &[u8],
    ) -> Connection {
        let mut conn = Connection::accept(socket, settings);
        if !initial_data.is_empty() {
            conn.link.inbuf.extend(initial_data);
            conn.read_request();
        }
        conn
    }

    /// Server: answer the pending upgrade request with a 101.  Headers
    /// that may not be sent (see [`crate::protocol::handshake::check_extra_header`])
    /// refuse the request with a 500 instead, and are the error.
    pub fn accept_upgrade(&mut self, extra_headers: &[(String, Vec<u8>)]) -> Result<(), String> {
        let Phase::Accepting(accept) = &mut self.phase else {
            return Ok(());
        };
        match accept.accept(&mut self.link.out, extra_headers) {
            Upgrade::NotPending => Ok(()),
            Upgrade::Refused(why) => Err(why),
            Upgrade::Open { protocol, deflate } => {
                self.protocol = protocol;
                self.open_session(deflate.as_ref());
                Ok(())
            }
        }
    }

    /// Server: refuse the pending upgrade request with a 403.
    pub fn reject_upgrade(&mut self) {
        if let Phase::Accepting(accept) = &mut self.phase {
            accept.reject(&mut self.link.out);
        }
    }

    pub(super) fn read_request(&mut self) {
        let Phase::Accepting(accept) = &mut self.phase else {
            return;
        };
        match accept.read(&mut self.link) {
            Read::Wait => {}
            Read::Handshake(headers) => {
                self.headers = headers;
                self.session.notify(Notice::Handshake);
            }
            Read::Drop => self.enter_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Verdicts of the application, over loopback.

    use super::*;
    use crate::connection::Listener;
    use crate::connection::testing::*;
    use crate::connection::{ClientOptions, State};
    use std::time::{Duration, Instant};

    const REQUEST: &[u8] = b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    /// What the link would write next.
    fn written(link: &mut Link) -> String {
        let mut wire = Vec::new();
        link.out.write_to(&mut wire).unwrap();
        String::from_utf8(wire).unwrap()
    }

    fn waiting_for_verdict() -> (Accept, Link) {
        let mut accept = Accept::new(Arc::new(ServerSettings::default()));
        let mut link = Link::new(false);
        let (head, rest) = REQUEST.split_at(20);
        link.inbuf.extend(head);
        assert_eq!(accept.read(&mut link), Read::Wait);
        assert!(accept.reading());
        link.inbuf.extend(rest);
        match accept.read(&mut link) {
            Read::Handshake(headers) => {
                assert!(headers.contains(&("Path".into(), b"/chat".to_vec())))
            }
            other => panic!("{other:?}"),
        }
        assert!(!accept.reading() && !accept.refusing());
        assert!(link.inbuf.is_empty());
        (accept, link)
    }

    #[test]
    fn a_request_then_acceptance_opens() {
        let (mut accept, mut link) = waiting_for_verdict();
        assert_eq!(
            accept.accept(&mut link.out, &[]),
            Upgrade::Open {
                protocol: None,
                deflate: None
            }
        );
        let answer = written(&mut link);
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        assert!(answer.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(accept.accept(&mut link.out, &[]), Upgrade::NotPending);
    }

    #[test]
    fn a_rejection_is_a_403_then_the_end() {
        let (mut accept, mut link) = waiting_for_verdict();
        accept.reject(&mut link.out);
        assert!(accept.refusing());
        assert!(written(&mut link).starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert_eq!(accept.accept(&mut link.out, &[]), Upgrade::NotPending);
    }

    #[test]
    fn unsendable_headers_refuse_with_a_500() {
        let (mut accept, mut link) = waiting_for_verdict();
        let extra = [("X-Bad".to_string(), b"a\nb".to_vec())];
        assert!(matches!(
            accept.accept(&mut link.out, &extra),
            Upgrade::Refused(_)
        ));
        assert!(accept.refusing());
        assert!(written(&mut link).starts_with("HTTP/1.1 500 "));
    }

    #[test]
    fn a_bad_request_is_refused_without_asking() {
        let mut accept = Accept::new(Arc::new(ServerSettings::default()));
        let mut link = Link::new(false);
        link.inbuf.extend(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(accept.read(&mut link), Read::Wait);
        assert!(accept.refusing());
        assert!(written(&mut link).starts_with("HTTP/1.1 4"));
        assert_eq!(accept.read(&mut link), Read::Wait, "nothing more is read");
    }

    #[test]
    fn a_peer_gone_mid_request_is_dropped() {
        let mut accept = Accept::new(Arc::new(ServerSettings::default()));
        let mut link = Link::new(false);
        link.inbuf.extend(&REQUEST[..30]);
        link.eof = Some(None);
        assert_eq!(accept.read(&mut link), Read::Drop);
    }

    /// Headers that may not be sent, from the application's verdict: the
    /// client gets a 500, and nothing of them.
    #[test]
    fn unsendable_verdict_headers_answer_500() {
        let listener = Listener::bind(
            crate::connection::Bind::default(),
            ServerSettings::default(),
        )
        .unwrap();
        let opts = ClientOptions::new(&format!("ws://127.0.0.1:{}/", listener.port()));
        let mut client = Connection::connect(&opts, &no_waker()).unwrap();
        let (mut client_seen, mut server, mut verdict) = (Vec::new(), None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client_seen.iter().any(|s| matches!(s, Seen::Error(_))) {
            turn(&mut client, &mut client_seen);
            if server.is_none() {
                server = listener.accept().unwrap();
            }
            if let Some(s) = server.as_mut() {
                let interest = s.interest();
                if interest.write {
                    s.on_writable();
                }
                if interest.read {
                    s.on_readable();
                }
                s.flush();
                while let Some(event) = s.next_event() {
                    if owned(event) == Seen::Handshake {
                        let forged = b"a\r\nSec-WebSocket-Accept: forged".to_vec();
                        verdict = Some(s.accept_upgrade(&[("X-Note".into(), forged)]));
                    }
                }
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::yield_now();
        }
        assert_eq!(
            verdict,
            Some(Err("value of 'X-Note' contains CR, LF or NUL".into()))
        );
        assert_eq!(
            client_seen,
            [Seen::Error(
                "handshake failed: HTTP 500 Internal Server Error".into()
            )]
        );
        assert_eq!(server.unwrap().state(), State::Closed);
    }
}
