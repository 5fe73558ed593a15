//! A loopback harness for the connection tests: a small polling loop
//! instead of EV, and a client and server pair that reached each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ClientOptions, Connection, Event, SendKind, ServerSettings, SessionSettings};
use crate::client::resolver::Waker;
use crate::connection::Listener;
use crate::net::tls::{self, ClientTls};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    Handshake,
    Connected,
    Message(bool, Vec<u8>),
    Pong(Vec<u8>),
    Drain,
    Error(String),
    Closed(u16, Option<Vec<u8>>),
}

pub(super) fn owned(event: Event<'_>) -> Seen {
    match event {
        Event::Handshake => Seen::Handshake,
        Event::Connected => Seen::Connected,
        Event::Message { binary, data } => Seen::Message(binary, data.to_vec()),
        Event::Pong(data) => Seen::Pong(data.to_vec()),
        Event::Drain => Seen::Drain,
        Event::Error(text) => Seen::Error(text.to_string()),
        Event::Closed { code, reason } => Seen::Closed(code, reason.map(<[u8]>::to_vec)),
    }
}

/// One turn of the loop for a connection: act on what it wants, then
/// collect its events (accepting upgrades on the server side).
pub(super) fn turn(conn: &mut Connection, seen: &mut Vec<Seen>) {
    let interest = conn.interest();
    if interest.write {
        conn.on_writable();
    }
    if interest.read {
        conn.on_readable();
    }
    if interest.resolving {
        conn.on_lookup();
    }
    if conn.deadline_in() == Some(Duration::ZERO) {
        conn.on_timer();
    }
    conn.flush();
    while let Some(event) = conn.next_event() {
        let event = owned(event);
        if event == Seen::Handshake {
            conn.accept_upgrade(&[("X-Test".into(), b"1".to_vec())])
                .unwrap();
        }
        seen.push(event);
    }
}

/// A client and the server connection it reached, both open.
pub(super) struct Pair {
    pub(super) client: Connection,
    pub(super) server: Connection,
    pub(super) client_seen: Vec<Seen>,
    pub(super) server_seen: Vec<Seen>,
}

impl Pair {
    pub(super) fn open(settings: ServerSettings, url_host: &str) -> Pair {
        Pair::open_with(settings, url_host, SessionSettings::default())
    }

    pub(super) fn open_with(
        settings: ServerSettings,
        url_host: &str,
        client: SessionSettings,
    ) -> Pair {
        let secure = settings.tls.is_some();
        let listener = Listener::bind(crate::connection::Bind::default(), settings).unwrap();
        let scheme = if secure { "wss" } else { "ws" };
        let mut opts = ClientOptions::new(&format!(
            "{scheme}://{url_host}:{}/path?q=1",
            listener.port()
        ));
        opts.session = client;
        if secure {
            let ca = cert_file("ca.pem");
            opts.tls = Some(Arc::new(ClientTls::new(None, None, Some(&ca)).unwrap()));
        }
        let mut client = Connection::connect(&opts, &no_waker()).unwrap();
        let mut client_seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = loop {
            turn(&mut client, &mut client_seen);
            if let Some(conn) = listener.accept().unwrap() {
                break conn;
            }
            assert!(Instant::now() < deadline, "no connection to accept");
            std::thread::yield_now();
        };
        let mut pair = Pair {
            client,
            server,
            client_seen,
            server_seen: Vec::new(),
        };
        pair.run_until(|p| p.client_seen.contains(&Seen::Connected));
        assert_eq!(pair.server_seen[..2], [Seen::Handshake, Seen::Connected]);
        pair
    }

    pub(super) fn run_until(&mut self, done: impl Fn(&Pair) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out: {:?} / {:?}",
                self.client_seen,
                self.server_seen
            );
            turn(&mut self.client, &mut self.client_seen);
            turn(&mut self.server, &mut self.server_seen);
            std::thread::yield_now();
        }
    }

    /// Server echoes every message it has seen so far.
    pub(super) fn echo(&mut self) {
        for seen in std::mem::take(&mut self.server_seen) {
            if let Seen::Message(binary, data) = seen {
                let kind = if binary {
                    SendKind::Binary
                } else {
                    SendKind::Text
                };
                self.server.send(kind, &data).unwrap();
            }
        }
    }
}

/// A wss:// pair (certificates from t/certs), 127.0.0.1 only.
pub(super) fn open_tls(mut settings: ServerSettings) -> Pair {
    let config = tls::server_config(&cert_file("server.pem"), &cert_file("server-key.pem"), None);
    settings.tls = Some(config.unwrap());
    settings.policy.compression = false;
    let client = SessionSettings {
        close_timeout: settings.session.close_timeout,
        ..SessionSettings::default()
    };
    Pair::open_with(settings, "127.0.0.1", client)
}

pub(super) fn cert_file(name: &str) -> String {
    format!("{}/t/certs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The messages among what a side has seen.
pub(super) fn messages(seen: &[Seen]) -> Vec<Seen> {
    seen.iter()
        .filter(|s| matches!(s, Seen::Message(..)))
        .cloned()
        .collect()
}

pub(super) fn no_waker() -> Waker {
    Arc::new(|| {})
}
