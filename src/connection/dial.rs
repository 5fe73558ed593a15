//! A client connection: `connect`, and what the connection does with the
//! progress of its [`Dial`] (the state machine in [`crate::client::dial`]).

use std::sync::Arc;
use std::time::Instant;

use super::deadline::later;
use super::{ClientOptions, Connection, Phase};
use crate::client::dial::{ClientRequest, Dial, Progress};
use crate::client::resolver::Waker;
use crate::protocol::frame::Role;

impl Connection {
    /// Start a client connection.  Errors are argument errors (croaks);
    /// everything that happens on the network is reported as events.
    pub fn connect(opts: &ClientOptions, waker: &Waker) -> Result<Connection, String> {
        let request = ClientRequest {
            url: opts.url.clone(),
            protocol: opts.protocol.clone(),
            headers: opts.headers.clone(),
            compression: opts.compression,
            waker: Arc::clone(waker),
            tls: opts.tls.clone(),
            verify: opts.verify,
            proxies: Arc::clone(&opts.proxies),
        };
        let mut conn = Connection::new(Role::Client, &opts.session);
        let connect_by = later(Instant::now(), opts.connect_timeout);
        let (dial, progress) = Dial::start(request, connect_by, &mut conn.link)?;
        conn.phase = Phase::Dialing(dial);
        conn.dialled(progress);
        Ok(conn)
    }

    /// The resolver woke the loop.
    pub fn on_lookup(&mut self) {
        if let Phase::Dialing(dial) = &mut self.phase {
            let progress = dial.on_lookup(&mut self.link);
            self.dialled(progress);
        }
    }

    /// Act on what the dial says happens next; while it goes on, the timer
    /// follows its next wake-up.
    pub(super) fn dialled(&mut self, progress: Progress) {
        if let Phase::Dialing(dial) = &self.phase {
            let wake_at = Some(dial.wake_at());
            if self.deadline.at() != wake_at {
                self.deadline.set_at(wake_at);
            }
        }
        match progress {
            Progress::Wait => {}
            Progress::Write => self.write_out(),
            Progress::Open(accepted) => {
                self.headers = accepted.headers;
                self.protocol = accepted.protocol;
                self.open_session(accepted.deflate.as_ref());
            }
            Progress::Failed(text) => self.fail_early(text),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Failures on the way to a server, over loopback.

    use super::*;
    use crate::connection::State;
    use crate::connection::testing::*;
    use std::time::{Duration, Instant};

    #[test]
    fn refused_connection_is_an_error_only() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = ClientOptions::new(&format!("ws://127.0.0.1:{port}/"));
        let mut client = Connection::connect(&opts, &no_waker()).unwrap();
        assert_eq!(client.state(), State::Connecting);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.state() != State::Closed {
            assert!(Instant::now() < deadline);
            turn(&mut client, &mut seen);
        }
        assert_eq!(
            seen,
            [Seen::Error("connect failed: Connection refused".into())]
        );
    }

    #[test]
    fn silent_server_hits_connect_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut opts = ClientOptions::new(&format!(
            "ws://127.0.0.1:{}/",
            silent.local_addr().unwrap().port()
        ));
        opts.connect_timeout = Duration::from_millis(100);
        let mut client = Connection::connect(&opts, &no_waker()).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.state() != State::Closed {
            assert!(Instant::now() < deadline);
            turn(&mut client, &mut seen);
        }
        assert_eq!(seen, [Seen::Error("connect timeout".into())]);
    }

    #[test]
    fn argument_errors() {
        let err = |url: &str| Connection::connect(&ClientOptions::new(url), &no_waker()).err();
        assert_eq!(
            err("http://x/").as_deref(),
            Some("URL must start with ws:// or wss://")
        );
        let mut opts = ClientOptions::new("ws://127.0.0.1:1/");
        opts.headers = vec![("Connection".into(), b"x".to_vec())];
        assert!(Connection::connect(&opts, &no_waker()).is_err());
        let mut c =
            Connection::connect(&ClientOptions::new("ws://127.0.0.1:1/"), &no_waker()).unwrap();
        assert!(c.close(1005.0, b"").is_err());
        assert_eq!(c.close(1000.0, b""), Ok(()), "no-op while connecting");
        assert_eq!(c.state(), State::Connecting);
    }
}
