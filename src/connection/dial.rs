//! The client's way to an open connection: resolving the host, trying its
//! addresses in turn, the proxy tunnel, starting TLS, following redirects,
//! and the upgrade request and its answer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;

use super::{ClientOptions, Connection, Phase};
use crate::client::endpoint::{self, Endpoint};
use crate::client::handshake::{Answer, ClientHandshake};
use crate::client::proxy::{Proxy, ProxySettings, Tunnel, TunnelStep};
use crate::client::resolver::{Lookup, Waker};
use crate::net::os_error;
use crate::net::tls::{self, ClientTls};
use crate::protocol::deflate::Offer;
use crate::protocol::frame::Role;
use crate::protocol::handshake::Parsed;

/// Redirects a server may send a client through before it gives up.
const MAX_REDIRECTS: u8 = 5;

/// What a client asked for, kept to open TLS once TCP is up and to make
/// the same request again after a redirect.
pub(super) struct ClientRequest {
    url: String,
    protocol: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    compression: Option<Offer>,
    waker: Waker,
    tls: Option<Arc<ClientTls>>,
    verify: bool,
    proxies: Arc<ProxySettings>,
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

impl Connection {
    /// Start a client connection.  Errors are argument errors (croaks);
    /// everything that happens on the network is reported as events.
    pub fn connect(opts: &ClientOptions, waker: &Waker) -> Result<Connection, String> {
        let target = endpoint::parse(&opts.url).map_err(|e| e.to_string())?;
        crate::client::handshake::validate_user_headers(&opts.headers)?;
        if let Some(p) = opts.protocol.as_deref().filter(|p| !p.is_empty()) {
            crate::protocol::wire::check_protocol_list(p)
                .map_err(|why| format!("protocol: {why}"))?;
        }
        if target.tls {
            let tls = opts
                .tls
                .as_ref()
                .ok_or("connect: no TLS settings for wss://")?;
            tls.config(opts.verify)
                .map_err(|e| format!("connect: {e}"))?;
        }
        let mut conn = Connection::new(Role::Client, &opts.session);
        conn.set_deadline(Some(opts.connect_timeout));
        conn.request = Some(Box::new(ClientRequest {
            url: opts.url.clone(),
            protocol: opts.protocol.clone(),
            headers: opts.headers.clone(),
            compression: opts.compression,
            waker: Arc::clone(waker),
            tls: opts.tls.clone(),
            verify: opts.verify,
            proxies: Arc::clone(&opts.proxies),
            secure: target.tls,
            target_host: target.host.clone(),
            redirects_left: MAX_REDIRECTS,
            upgrade: Vec::new(),
            tunnel: None,
            resolving_for: None,
        }));
        conn.open_client(&target);
        Ok(conn)
    }

    /// Prepare the request for `target` and start reaching it, directly or
    /// through the context's proxy.
    fn open_client(&mut self, target: &Endpoint) {
        let r = self.request.as_mut().expect("client connection");
        r.upgrade.clear();
        r.tunnel = None;
        r.resolving_for = None;
        let handshake = match ClientHandshake::write_request(
            target,
            r.protocol.as_deref(),
            r.compression,
            &r.headers,
            &mut r.upgrade,
        ) {
            Ok(handshake) => handshake,
            Err(why) => return self.fail_early(format!("handshake failed: {why}")),
        };
        let proxy = r.proxies.for_host(&target.host);
        if let Some(Err(text)) = proxy.map(Proxy::check_auth) {
            return self.fail_early(text);
        }
        let (host, port) = match proxy {
            // socks5:// sends an address: resolve the server's name first.
            Some(proxy) if proxy.resolves_locally() && target.ip_literal().is_none() => {
                r.resolving_for = Some((proxy.clone(), target.port));
                (target.host.clone(), target.port)
            }
            Some(proxy) => {
                let (tunnel, first) = match Tunnel::start(proxy, &target.host, target.port) {
                    Ok(started) => started,
                    Err(text) => return self.fail_early(text),
                };
                r.tunnel = Some(tunnel);
                self.link.out.push_raw(&first);
                (proxy.host.clone(), proxy.port)
            }
            None => (target.host.clone(), target.port),
        };
        let waker = Arc::clone(&r.waker);
        self.host = host;
        self.start(port, handshake, &waker);
    }

    /// Start over at the location a redirect named, on a new socket, with
    /// the same request.  The connect deadline keeps running.
    fn follow_redirect(&mut self, location: &str) {
        let Some(r) = self.request.as_mut() else {
            return self.fail_early("handshake failed: unexpected redirect".into());
        };
        if r.redirects_left == 0 {
            return self.fail_early("handshake failed: too many redirects".into());
        }
        r.redirects_left -= 1;
        let target = match endpoint::redirect_target(&r.url, location)
            .map(|u| (endpoint::parse(&u), u))
        {
            Some((Ok(target), url)) if !target.tls || r.tls.is_some() => {
                // Credentials go to the origin they were given for only
                // (as browsers and curl do).
                let same_origin =
                    endpoint::parse(&r.url).is_ok_and(|e| e.origin() == target.origin());
                if !same_origin {
                    r.headers.retain(|(name, _)| !is_credential(name));
                }
                r.url = url;
                r.secure = target.tls;
                r.target_host = target.host.clone();
                target
            }
            _ => return self.fail_early(format!("handshake failed: bad redirect to '{location}'")),
        };
        self.link.restart();
        self.open_client(&target);
    }

    /// Resolve `self.host` (unless it is an IP literal) and connect.
    pub(super) fn start(&mut self, port: u16, handshake: ClientHandshake, waker: &Waker) {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            self.phase = Phase::Connecting(handshake);
            self.candidates.push_back(SocketAddr::new(ip, port));
            self.try_next_address(None);
            return;
        }
        match Lookup::start(&self.host, port, Arc::clone(waker)) {
            Ok(lookup) => self.phase = Phase::Resolving(lookup, handshake),
            Err(e) => self.fail_early(format!(
                "DNS lookup failed for '{}': {}",
                self.host,
                os_error::text(&e)
            )),
        }
    }

    /// The resolver woke the loop.
    pub fn on_lookup(&mut self) {
        let Phase::Resolving(lookup, _) = &self.phase else {
            return;
        };
        let Some(answer) = lookup.take() else {
            return;
        };
        let Phase::Resolving(_, handshake) = std::mem::replace(&mut self.phase, Phase::Closed)
        else {
            unreachable!("phase checked above");
        };
        let socks = self.request.as_mut().and_then(|r| r.resolving_for.take());
        match answer {
            Ok(addrs) if !addrs.is_empty() && socks.is_some() => {
                // The server's address is known: now to the SOCKS5 proxy.
                let (proxy, port) = socks.expect("checked in the guard");
                let (tunnel, first) = match Tunnel::start(&proxy, &addrs[0].ip().to_string(), port)
                {
                    Ok(started) => started,
                    Err(text) => return self.fail_early(text),
                };
                self.link.out.push_raw(&first);
                let r = self.request.as_mut().expect("a client resolves");
                r.tunnel = Some(tunnel);
                let waker = Arc::clone(&r.waker);
                self.host = proxy.host.clone();
                self.start(proxy.port, handshake, &waker);
            }
            Ok(addrs) if !addrs.is_empty() => {
                self.phase = Phase::Connecting(handshake);
                self.candidates.extend(addrs);
                self.try_next_address(None);
            }
            Ok(_) => self.fail_early(format!("DNS lookup failed for '{}': no address", self.host)),
            Err(e) => self.fail_early(format!(
                "DNS lookup failed for '{}': {}",
                self.host,
                os_error::text(&e)
            )),
        }
    }

    pub(super) fn try_next_address(&mut self, mut last_error: Option<io::Error>) {
        if let Some(old) = self.link.socket.take() {
            self.link.retired = Some(old);
        }
        while let Some(addr) = self.candidates.pop_front() {
            match TcpStream::connect(addr) {
                Ok(socket) => {
                    let _ = socket.set_nodelay(true);
                    self.link.socket = Some(socket);
                    self.link.socket_gen = self.link.socket_gen.wrapping_add(1);
                    return;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let text = match last_error {
            Some(e) => format!("connect failed: {}", os_error::text(&e)),
            None => format!("connect failed: no address for '{}'", self.host),
        };
        self.fail_early(text);
    }

    pub(super) fn finish_tcp_connect(&mut self) {
        let Some(socket) = self.link.socket.as_ref() else {
            return;
        };
        let connected = match socket.take_error() {
            Ok(None) => socket.peer_addr(),
            Ok(Some(e)) | Err(e) => Err(e),
        };
        let peer = match connected {
            Ok(peer) => peer,
            // Woken before the connect finished.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.try_next_address(Some(e)),
        };
        let Phase::Connecting(handshake) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            unreachable!("only called while connecting");
        };
        self.link.peer = Some(peer);
        self.candidates.clear();
        if self.request.as_ref().is_some_and(|r| r.tunnel.is_some()) {
            self.phase = Phase::Tunneling(handshake);
            self.write_out();
        } else {
            self.begin_upgrade(handshake);
        }
    }

    /// The path to the server is open (TCP, or a proxy's tunnel): start
    /// TLS for wss://, then send the upgrade request.
    fn begin_upgrade(&mut self, handshake: ClientHandshake) {
        let Some(r) = self.request.as_mut() else {
            return;
        };
        if r.secure {
            let session = r
                .tls
                .as_ref()
                .ok_or_else(|| "no TLS settings for wss://".to_string())
                .and_then(|t| t.config(r.verify))
                .and_then(|config| tls::client_session(config, &r.target_host));
            match session {
                Ok(session) => self.link.tls = Some(Box::new(session)),
                Err(e) => return self.fail_early(format!("TLS handshake failed: {e}")),
            }
        }
        let upgrade = std::mem::take(&mut r.upgrade);
        self.link.out.push_raw(&upgrade);
        self.phase = Phase::AwaitingResponse(handshake);
        self.write_out();
    }

    /// The proxy answered: go on with the tunnel's conversation.
    pub(super) fn read_tunnel(&mut self) {
        let Some(tunnel) = self.request.as_mut().and_then(|r| r.tunnel.as_mut()) else {
            return;
        };
        match tunnel.advance(self.link.inbuf.data()) {
            TunnelStep::NeedMore if self.link.eof.is_some() => {
                self.fail_early("proxy failed: connection closed by the proxy".into())
            }
            TunnelStep::NeedMore => self.link.inbuf.settle(),
            TunnelStep::Send { used, bytes } => {
                self.link.inbuf.consume(used);
                self.link.out.push_raw(&bytes);
                self.write_out();
            }
            TunnelStep::Open(used) => {
                self.link.inbuf.consume(used);
                if let Some(r) = self.request.as_mut() {
                    r.tunnel = None;
                }
                let Phase::Tunneling(handshake) = std::mem::replace(&mut self.phase, Phase::Closed)
                else {
                    unreachable!("only called while tunneling");
                };
                self.begin_upgrade(handshake);
            }
            TunnelStep::Failed(text) => self.fail_early(text),
        }
    }

    pub(super) fn read_response(&mut self) {
        let Phase::AwaitingResponse(handshake) = &self.phase else {
            return;
        };
        match handshake.read_response(self.link.inbuf.data()) {
            Ok(Parsed::Complete(used, Answer::Accepted(accepted))) => {
                self.link.inbuf.consume(used);
                self.headers = accepted.headers;
                self.protocol = accepted.protocol;
                if let Some(params) = accepted.deflate {
                    self.enable_deflate(&params, Role::Client);
                }
                self.request = None;
                self.opened();
            }
            Ok(Parsed::Complete(_, Answer::Redirect(location))) => self.follow_redirect(&location),
            Ok(Parsed::Incomplete) => match self.link.eof.clone() {
                Some(read_error) => {
                    let text = read_error
                        .unwrap_or_else(|| "handshake failed: connection closed by peer".into());
                    self.fail_early(text);
                }
                None => self.link.inbuf.settle(),
            },
            Err(text) => self.fail_early(text),
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
