//! The server's way to an open connection: reading the upgrade request,
//! waiting for the application's verdict (`on_handshake`), and answering
//! it with the 101 or an HTTP refusal.

use std::sync::Arc;

use mio::net::TcpStream;

use super::{Connection, Notice, Phase, ServerSettings};
use crate::net::tls;
use crate::protocol::frame::Role;
use crate::protocol::handshake::Parsed;
use crate::server::handshake::{self, Verdict};

impl Connection {
    /// A server connection for a socket a listener accepted.
    pub fn accept(socket: TcpStream, settings: Arc<ServerSettings>) -> Connection {
        let mut conn = Connection::new(Role::Server, &settings.session);
        // Without TCP_NODELAY small frames wait for the peer's delayed ACK.
        let _ = socket.set_nodelay(true);
        conn.link.peer = socket.peer_addr().ok();
        conn.link.socket = Some(socket);
        conn.phase = Phase::AwaitingRequest;
        conn.set_deadline(Some(settings.handshake_timeout));
        if let Some(config) = &settings.tls {
            match tls::server_session(config) {
                Ok(session) => conn.link.tls = Some(Box::new(session)),
                Err(_) => conn.enter_closed(),
            }
        }
        conn.server = Some(settings);
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
        let Phase::AwaitingVerdict(request) = std::mem::replace(&mut self.phase, Phase::Open)
        else {
            return Ok(());
        };
        let settings = self.server.as_ref().expect("server connection");
        if let Err(why) =
            request.write_response(&settings.policy, extra_headers, self.link.out.raw_buf())
        {
            self.refuse(handshake::http_answer("500 Internal Server Error", ""));
            return Err(why);
        }
        self.protocol = request.protocol;
        if let Some((params, _)) = request.deflate {
            self.enable_deflate(&params, Role::Server);
        }
        self.opened();
        Ok(())
    }

    /// Server: refuse the pending upgrade request with a 403.
    pub fn reject_upgrade(&mut self) {
        if matches!(self.phase, Phase::AwaitingVerdict(_)) {
            self.refuse(handshake::http_answer("403 Forbidden", ""));
        }
    }

    pub(super) fn refuse(&mut self, answer: Vec<u8>) {
        self.link.out.push_raw(&answer);
        self.phase = Phase::Refusing;
    }

    pub(super) fn read_request(&mut self) {
        let settings = Arc::clone(self.server.as_ref().expect("server connection"));
        match handshake::read_request(self.link.inbuf.data(), &settings.policy) {
            Parsed::Complete(used, Verdict::Upgrade(mut request)) => {
                self.link.inbuf.consume(used);
                self.headers = std::mem::take(&mut request.headers);
                self.phase = Phase::AwaitingVerdict(request);
                self.notices.push_back(Notice::Handshake);
            }
            Parsed::Complete(used, Verdict::Refuse(answer)) => {
                self.link.inbuf.consume(used);
                self.refuse(answer);
            }
            Parsed::Incomplete if self.link.eof.is_some() => self.enter_closed(),
            Parsed::Incomplete => self.link.inbuf.settle(),
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
