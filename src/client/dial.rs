//! The client's way to an open connection as a state machine: resolving
//! the host, racing its addresses (Happy Eyeballs, [`crate::client::eyeballs`]),
//! the proxy tunnel, starting TLS, following redirects, and the upgrade
//! request and its answer, all within the connect deadline.
//!
//! [`Dial`] works on the connection's [`Link`] and says what happens next
//! as a [`Progress`]; the owner writes, opens the session or fails as told.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::client::endpoint::{self, Endpoint};
use crate::client::eyeballs::{Race, Step, Watch};
use crate::client::handshake::{Accepted, Answer, ClientHandshake};
use crate::client::proxy::{Proxy, ProxySettings, Tunnel, TunnelStep};
use crate::client::resolver::{Lookup, Waker};
use crate::net::link::Link;
use crate::net::os_error;
use crate::net::tls::{self, ClientTls};
use crate::net::tls_error;
use crate::protocol::deflate::Offer;
use crate::protocol::handshake::Parsed;

/// Redirects a server may send a client through before it gives up.
pub const MAX_REDIRECTS: u8 = 5;

/// What a client asks for, kept to open TLS once TCP is up and to make
/// the same request again after a redirect.
pub struct ClientRequest {
    pub url: String,
    pub protocol: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Offer permessage-deflate, so (`None`: do not).
    pub compression: Option<Offer>,
    pub waker: Waker,
    /// For wss://: the TLS settings, and whether to verify the server.
    pub tls: Option<Arc<ClientTls>>,
    pub verify: bool,
    pub proxies: Arc<ProxySettings>,
}

/// Where the dial is (what the event loop needs to watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the resolver thread.
    Resolving,
    /// TCP connect attempts under way (the race's).
    Connecting,
    /// Asking the proxy for a tunnel.
    Tunneling,
    /// Request sent, waiting for the 101.
    AwaitingResponse,
    /// Over: failed, or the server accepted (the owner was told).
    Done,
}

/// What the owner does after a step of the dial.
#[must_use]
#[derive(Debug)]
pub enum Progress {
    /// Nothing yet.
    Wait,
    /// Bytes are queued on the link: write them.
    Write,
    /// The server accepted the upgrade: the session opens.
    Open(Accepted),
    /// The dial failed, with this text for `on_error`.
    Failed(String),
}

enum State {
    Resolving(Lookup, ClientHandshake),
    Connecting(ClientHandshake),
    Tunneling(ClientHandshake),
    AwaitingResponse(ClientHandshake),
    Done,
}

pub struct Dial {
    request: ClientRequest,
    state: State,
    /// The connect attempts, while connecting.
    race: Option<Race>,
    /// The host being connected to (the server's or the proxy's), for
    /// error texts.
    host: String,
    /// The whole dial must be done by then.
    connect_by: Instant,
    /// The current target is wss://, on this host (the TLS server name).
    secure: bool,
    target_host: String,
    redirects_left: u8,
    /// The upgrade request, until it is sent.
    upgrade: Vec<u8>,
    /// The proxy conversation, while the tunnel opens.
    tunnel: Option<Tunnel>,
    /// socks5://: the proxy to use once the server's name is resolved here.
    resolving_for: Option<(Proxy, u16)>,
}

impl Dial {
    /// Check `request` and start reaching its server on `link`, by
    /// `connect_by`.  Errors are argument errors; what happens on the
    /// network is the progress.
    pub fn start(
        request: ClientRequest,
        connect_by: Instant,
        link: &mut Link,
    ) -> Result<(Box<Dial>, Progress), String> {
        let target = endpoint::parse(&request.url).map_err(|e| e.to_string())?;
        crate::client::handshake::validate_user_headers(&request.headers)?;
        if let Some(p) = request.protocol.as_deref().filter(|p| !p.is_empty()) {
            crate::protocol::wire::check_protocol_list(p)
                .map_err(|why| format!("protocol: {why}"))?;
        }
        if target.tls {
            let tls = request
                .tls
                .as_ref()
                .ok_or("connect: no TLS settings for wss://")?;
            tls.config(request.verify)
                .map_err(|e| format!("connect: {e}"))?;
        }
        let mut dial = Box::new(Dial {
            request,
            state: State::Done,
            race: None,
            host: String::new(),
            connect_by,
            secure: target.tls,
            target_host: target.host.clone(),
            redirects_left: MAX_REDIRECTS,
            upgrade: Vec::new(),
            tunnel: None,
            resolving_for: None,
        });
        let progress = dial.open(&target, link);
        Ok((dial, progress))
    }

    pub fn stage(&self) -> Stage {
        match self.state {
            State::Resolving(..) => Stage::Resolving,
            State::Connecting(_) => Stage::Connecting,
            State::Tunneling(_) => Stage::Tunneling,
            State::AwaitingResponse(_) => Stage::AwaitingResponse,
            State::Done => Stage::Done,
        }
    }

    fn fail(&mut self, text: String) -> Progress {
        self.state = State::Done;
        Progress::Failed(text)
    }

    /// When the owner's timer must call [`Dial::on_timer`]: the connect
    /// deadline, or sooner when the race starts its next attempt.
    pub fn wake_at(&self) -> Instant {
        let next_attempt = self.race.as_ref().and_then(Race::wake_at);
        next_attempt.map_or(self.connect_by, |at| at.min(self.connect_by))
    }

    /// What the loop watches while connecting.
    pub fn watch(&self) -> Option<Watch> {
        self.race.as_ref().and_then(Race::watch)
    }

    /// The race is over (or abandoned): what of it the loop may still
    /// watch stays open until the next call.
    pub fn retire(&mut self, link: &mut Link) {
        if let Some(race) = self.race.take()
            && race.watch().is_some()
        {
            link.retire(Box::new(race));
        }
    }

    /// The owner's timer fired: the deadline passed, or the next attempt
    /// is due.
    pub fn on_timer(&mut self, now: Instant, link: &mut Link) -> Progress {
        if now >= self.connect_by {
            self.retire(link);
            return self.fail("connect timeout".into());
        }
        self.race_on(now, link)
    }

    /// Prepare the request for `target` and start reaching it, directly or
    /// through the context's proxy.
    fn open(&mut self, target: &Endpoint, link: &mut Link) -> Progress {
        self.upgrade.clear();
        self.tunnel = None;
        self.resolving_for = None;
        let written = ClientHandshake::write_request(
            target,
            self.request.protocol.as_deref(),
            self.request.compression,
            &self.request.headers,
            &mut self.upgrade,
        );
        let handshake = match written {
            Ok(handshake) => handshake,
            Err(why) => return self.fail(format!("handshake failed: {why}")),
        };
        let proxies = Arc::clone(&self.request.proxies);
        let proxy = proxies.for_host(&target.host);
        if let Some(Err(text)) = proxy.map(Proxy::check_auth) {
            return self.fail(text);
        }
        let (host, port) = match proxy {
            // socks5:// sends an address: resolve the server's name first.
            Some(proxy) if proxy.resolves_locally() && target.ip_literal().is_none() => {
                self.resolving_for = Some((proxy.clone(), target.port));
                (target.host.clone(), target.port)
            }
            Some(proxy) => {
                let (tunnel, first) = match Tunnel::start(proxy, &target.host, target.port) {
                    Ok(started) => started,
                    Err(text) => return self.fail(text),
                };
                self.tunnel = Some(tunnel);
                link.out.push_raw(&first);
                (proxy.host.clone(), proxy.port)
            }
            None => (target.host.clone(), target.port),
        };
        self.host = host;
        self.resolve(port, handshake, link)
    }

    /// Start over at the location a redirect named, on a new socket, with
    /// the same request.  The connect deadline keeps running.
    fn follow_redirect(&mut self, location: &str, link: &mut Link) -> Progress {
        if self.redirects_left == 0 {
            return self.fail("handshake failed: too many redirects".into());
        }
        self.redirects_left -= 1;
        let r = &mut self.request;
        let target =
            match endpoint::redirect_target(&r.url, location).map(|u| (endpoint::parse(&u), u)) {
                Some((Ok(target), url)) if !target.tls || r.tls.is_some() => {
                    // Credentials go to the origin they were given for only
                    // (as browsers and curl do).
                    let same_origin =
                        endpoint::parse(&r.url).is_ok_and(|e| e.origin() == target.origin());
                    if !same_origin {
                        r.headers.retain(|(name, _)| !is_credential(name));
                    }
                    r.url = url;
                    self.secure = target.tls;
                    self.target_host = target.host.clone();
                    target
                }
                _ => return self.fail(format!("handshake failed: bad redirect to '{location}'")),
            };
        link.restart();
        self.open(&target, link)
    }

    /// Resolve `self.host` (unless it is an IP literal) and connect.
    fn resolve(&mut self, port: u16, handshake: ClientHandshake, link: &mut Link) -> Progress {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return self.connect(vec![SocketAddr::new(ip, port)], handshake, link);
        }
        match Lookup::start(&self.host, port, Arc::clone(&self.request.waker)) {
            Ok(lookup) => {
                self.state = State::Resolving(lookup, handshake);
                Progress::Wait
            }
            Err(e) => self.lookup_failed(&os_error::text(&e)),
        }
    }

    /// The resolver woke the loop.
    pub fn on_lookup(&mut self, link: &mut Link) -> Progress {
        let State::Resolving(lookup, _) = &self.state else {
            return Progress::Wait;
        };
        let Some(answer) = lookup.take() else {
            return Progress::Wait;
        };
        let State::Resolving(_, handshake) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("state checked above");
        };
        let socks = self.resolving_for.take();
        match answer {
            Ok(addrs) if !addrs.is_empty() && socks.is_some() => {
                // The server's address is known: now to the SOCKS5 proxy.
                let (proxy, port) = socks.expect("checked in the guard");
                let (tunnel, first) = match Tunnel::start(&proxy, &addrs[0].ip().to_string(), port)
                {
                    Ok(started) => started,
                    Err(text) => return self.fail(text),
                };
                link.out.push_raw(&first);
                self.tunnel = Some(tunnel);
                self.host = proxy.host.clone();
                self.resolve(proxy.port, handshake, link)
            }
            Ok(addrs) if !addrs.is_empty() => self.connect(addrs, handshake, link),
            Ok(_) => self.lookup_failed("no address"),
            Err(e) => self.lookup_failed(&os_error::text(&e)),
        }
    }

    fn lookup_failed(&mut self, why: &str) -> Progress {
        let text = format!("DNS lookup failed for '{}': {why}", self.host);
        self.fail(text)
    }

    /// Race `addrs` for the TCP connection.
    fn connect(
        &mut self,
        addrs: Vec<SocketAddr>,
        handshake: ClientHandshake,
        link: &mut Link,
    ) -> Progress {
        self.state = State::Connecting(handshake);
        self.race = Some(Race::new(addrs));
        self.race_on(Instant::now(), link)
    }

    /// An attempt's socket (or the poll of them) is ready: see whether one
    /// connected, or failed and the next is due.
    pub fn on_connecting(&mut self, link: &mut Link) -> Progress {
        self.race_on(Instant::now(), link)
    }

    fn race_on(&mut self, now: Instant, link: &mut Link) -> Progress {
        let Some(race) = self.race.as_mut() else {
            return Progress::Wait;
        };
        let step = race.advance(now, link);
        if !matches!(step, Step::Waiting) {
            self.retire(link);
        }
        let peer = match step {
            Step::Waiting => return Progress::Wait,
            Step::Connected(peer) => peer,
            Step::Failed(Some(e)) => {
                return self.fail(format!("connect failed: {}", os_error::text(&e)));
            }
            Step::Failed(None) => {
                let text = format!("connect failed: no address for '{}'", self.host);
                return self.fail(text);
            }
        };
        let State::Connecting(handshake) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("a race runs only while connecting");
        };
        link.peer = Some(peer);
        if self.tunnel.is_some() {
            self.state = State::Tunneling(handshake);
            Progress::Write
        } else {
            self.begin_upgrade(handshake, link)
        }
    }

    /// The path to the server is open (TCP, or a proxy's tunnel): start
    /// TLS for wss://, then send the upgrade request.
    fn begin_upgrade(&mut self, handshake: ClientHandshake, link: &mut Link) -> Progress {
        if self.secure {
            let r = &self.request;
            let session = r
                .tls
                .as_ref()
                .ok_or_else(|| "no TLS settings for wss://".to_string())
                .and_then(|t| t.config(r.verify))
                .and_then(|config| tls::client_session(config, &self.target_host));
            match session {
                Ok(session) => link.tls = Some(Box::new(session)),
                Err(e) => return self.fail(format!("TLS handshake failed: {e}")),
            }
        }
        let upgrade = std::mem::take(&mut self.upgrade);
        link.out.push_raw(&upgrade);
        self.state = State::AwaitingResponse(handshake);
        Progress::Write
    }

    /// Bytes came in (or the end of the stream): the proxy's or the
    /// server's answer, read further.
    pub fn on_readable(&mut self, link: &mut Link) -> Progress {
        match self.state {
            State::Tunneling(_) => self.read_tunnel(link),
            State::AwaitingResponse(_) => self.read_response(link),
            _ => Progress::Wait,
        }
    }

    /// The proxy answered: go on with the tunnel's conversation.
    fn read_tunnel(&mut self, link: &mut Link) -> Progress {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return Progress::Wait;
        };
        match tunnel.advance(link.inbuf.data()) {
            TunnelStep::NeedMore if link.eof.is_some() => {
                self.fail("proxy failed: connection closed by the proxy".into())
            }
            TunnelStep::NeedMore => {
                link.inbuf.settle();
                Progress::Wait
            }
            TunnelStep::Send { used, bytes } => {
                link.inbuf.consume(used);
                link.out.push_raw(&bytes);
                Progress::Write
            }
            TunnelStep::Open(used) => {
                link.inbuf.consume(used);
                self.tunnel = None;
                let State::Tunneling(handshake) = std::mem::replace(&mut self.state, State::Done)
                else {
                    unreachable!("only called while tunneling");
                };
                self.begin_upgrade(handshake, link)
            }
            TunnelStep::Failed(text) => self.fail(text),
        }
    }

    fn read_response(&mut self, link: &mut Link) -> Progress {
        let State::AwaitingResponse(handshake) = &self.state else {
            return Progress::Wait;
        };
        if !self.secure && tls_error::is_tls_record(link.inbuf.data()) {
            return self.fail("handshake failed: the server speaks TLS: use wss://".into());
        }
        match handshake.read_response(link.inbuf.data()) {
            Ok(Parsed::Complete(used, Answer::Accepted(accepted))) => {
                link.inbuf.consume(used);
                self.state = State::Done;
                Progress::Open(accepted)
            }
            Ok(Parsed::Complete(_, Answer::Redirect(location))) => {
                self.follow_redirect(&location, link)
            }
            Ok(Parsed::Incomplete) => match link.eof.clone() {
                Some(read_error) => {
                    let text = read_error
                        .unwrap_or_else(|| "handshake failed: connection closed by peer".into());
                    self.fail(text)
                }
                None => {
                    link.inbuf.settle();
                    Progress::Wait
                }
            },
            Err(text) => self.fail(text),
        }
    }
}

/// Headers that carry the user's credentials.
fn is_credential(name: &str) -> bool {
    ["Authorization", "Cookie", "Proxy-Authorization"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    //! The dial's transitions on a link of its own, against a loopback
    //! listener that never answers (the tests write the server's side into
    //! the read buffer).

    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn request(url: &str) -> ClientRequest {
        ClientRequest {
            url: url.to_string(),
            protocol: None,
            headers: Vec::new(),
            compression: None,
            waker: Arc::new(|| {}),
            tls: None,
            verify: true,
            proxies: Arc::default(),
        }
    }

    /// A connect deadline the tests never reach.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// What the link would write next.
    fn written(link: &mut Link) -> String {
        let mut wire = Vec::new();
        link.out.write_to(&mut wire).unwrap();
        String::from_utf8(wire).unwrap()
    }

    /// Wait for the TCP connect: the dial then sends its upgrade request.
    fn connected(dial: &mut Dial, link: &mut Link) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match dial.on_connecting(link) {
                Progress::Wait => assert!(Instant::now() < deadline, "no connect"),
                Progress::Write => break,
                other => panic!("{other:?}"),
            }
            std::thread::yield_now();
        }
        assert_eq!(dial.stage(), Stage::AwaitingResponse);
        assert!(link.peer.is_some());
    }

    #[test]
    fn ip_literal_connects_then_sends_the_request() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "ws://127.0.0.1:{}/chat",
            server.local_addr().unwrap().port()
        );
        let mut link = Link::new(true);
        let (mut dial, progress) = Dial::start(request(&url), far(), &mut link).unwrap();
        assert!(matches!(progress, Progress::Wait));
        assert_eq!(dial.stage(), Stage::Connecting);
        assert_eq!(link.socket_gen, 1);
        connected(&mut dial, &mut link);
        assert!(written(&mut link).starts_with("GET /chat HTTP/1.1\r\n"));
        link.inbuf.extend(b"HTTP/1.1 404 Not");
        assert!(matches!(dial.on_readable(&mut link), Progress::Wait));
        assert_eq!(dial.stage(), Stage::AwaitingResponse, "incomplete");
        link.inbuf.extend(b" Found\r\n\r\n");
        match dial.on_readable(&mut link) {
            Progress::Failed(text) => assert_eq!(text, "handshake failed: HTTP 404 Not Found"),
            other => panic!("{other:?}"),
        }
        assert_eq!(dial.stage(), Stage::Done);
    }

    #[test]
    fn the_deadline_ends_the_race_and_its_socket_outlives_the_call() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://127.0.0.1:{}/", server.local_addr().unwrap().port());
        let mut link = Link::new(true);
        let connect_by = far();
        let (mut dial, _) = Dial::start(request(&url), connect_by, &mut link).unwrap();
        assert_eq!(dial.stage(), Stage::Connecting);
        assert_eq!(dial.wake_at(), connect_by, "one address: only the deadline");
        let watched = dial.watch().expect("the attempt's socket");
        assert!(!watched.readable);
        match dial.on_timer(connect_by, &mut link) {
            Progress::Failed(text) => assert_eq!(text, "connect timeout"),
            other => panic!("{other:?}"),
        }
        assert!(dial.watch().is_none());
        assert_eq!(link.retired.len(), 1, "kept open until the watcher moved");
    }

    #[test]
    fn a_tls_answer_to_ws_says_use_wss() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://127.0.0.1:{}/", server.local_addr().unwrap().port());
        let mut link = Link::new(true);
        let (mut dial, _) = Dial::start(request(&url), far(), &mut link).unwrap();
        connected(&mut dial, &mut link);
        // A TLS server's alert, in answer to a request in the clear.
        link.inbuf.extend(b"\x15\x03\x03\x00\x02\x02\x32");
        match dial.on_readable(&mut link) {
            Progress::Failed(text) => {
                assert_eq!(text, "handshake failed: the server speaks TLS: use wss://")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_end_of_the_stream_before_the_answer_fails() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://127.0.0.1:{}/", server.local_addr().unwrap().port());
        let mut link = Link::new(true);
        let (mut dial, _) = Dial::start(request(&url), far(), &mut link).unwrap();
        connected(&mut dial, &mut link);
        link.eof = Some(None);
        match dial.on_readable(&mut link) {
            Progress::Failed(text) => {
                assert_eq!(text, "handshake failed: connection closed by peer")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redirects_start_over_on_a_new_socket_and_are_bounded() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let mut link = Link::new(true);
        let url = format!("ws://127.0.0.1:{port}/");
        let (mut dial, _) = Dial::start(request(&url), far(), &mut link).unwrap();
        for hop in 1..=MAX_REDIRECTS + 1 {
            connected(&mut dial, &mut link);
            let path = if hop == 1 {
                String::new()
            } else {
                (hop - 1).to_string()
            };
            assert!(written(&mut link).starts_with(&format!("GET /{path} HTTP/1.1")));
            let answer = format!("HTTP/1.1 302 Found\r\nLocation: /{hop}\r\n\r\n");
            link.inbuf.extend(answer.as_bytes());
            let progress = dial.on_readable(&mut link);
            if hop > MAX_REDIRECTS {
                match progress {
                    Progress::Failed(text) => {
                        assert_eq!(text, "handshake failed: too many redirects")
                    }
                    other => panic!("{other:?}"),
                }
                return;
            }
            assert!(matches!(progress, Progress::Wait));
            assert_eq!(dial.stage(), Stage::Connecting);
            assert!(link.inbuf.is_empty() && !link.retired.is_empty());
            assert_eq!(link.socket_gen, u32::from(hop) + 1);
        }
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let mut link = Link::new(true);
        let mut r = request(&format!("ws://127.0.0.1:{port}/"));
        r.headers = vec![
            ("authorization".into(), b"Basic eA==".to_vec()),
            ("X-Other".into(), b"1".to_vec()),
        ];
        let (mut dial, _) = Dial::start(r, far(), &mut link).unwrap();
        connected(&mut dial, &mut link);
        let answer = format!("HTTP/1.1 301 Moved\r\nLocation: ws://[::1]:{port}/\r\n\r\n");
        link.inbuf.extend(answer.as_bytes());
        let _ = dial.on_readable(&mut link);
        let names: Vec<&str> = dial
            .request
            .headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["X-Other"]);
        assert_eq!(dial.request.url, format!("ws://[::1]:{port}/"));
    }

    #[test]
    fn a_host_name_is_resolved_off_the_loop() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://localhost:{}/", server.local_addr().unwrap().port());
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let mut r = request(&url);
        r.waker = Arc::new(move || tx.lock().unwrap().send(()).unwrap());
        let mut link = Link::new(true);
        let (mut dial, progress) = Dial::start(r, far(), &mut link).unwrap();
        assert!(matches!(progress, Progress::Wait));
        assert_eq!(dial.stage(), Stage::Resolving);
        assert!(link.socket.is_none());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        match dial.on_lookup(&mut link) {
            Progress::Wait => assert_eq!(dial.stage(), Stage::Connecting),
            // Only an IPv6 localhost, and no IPv6 here.
            Progress::Failed(text) => assert!(text.starts_with("connect failed"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn argument_errors_come_before_any_socket() {
        let mut link = Link::new(true);
        let err = |r, link: &mut Link| Dial::start(r, far(), link).err();
        assert_eq!(
            err(request("http://x/"), &mut link).as_deref(),
            Some("URL must start with ws:// or wss://")
        );
        assert_eq!(
            err(request("wss://127.0.0.1:1/"), &mut link).as_deref(),
            Some("connect: no TLS settings for wss://")
        );
        assert!(link.socket.is_none());
    }

    #[test]
    fn credential_names_in_any_case() {
        assert!(is_credential("cookie") && is_credential("PROXY-AUTHORIZATION"));
        assert!(!is_credential("X-Cookie"));
    }
}
