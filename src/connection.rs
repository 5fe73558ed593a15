//! One WebSocket connection as a state machine that the event loop drives.
//!
//! The binding calls `on_readable` / `on_writable` / `on_timer` /
//! `on_lookup` when its watchers fire and `flush` once per loop iteration,
//! then pulls events with [`Connection::next_event`] and mirrors
//! [`Connection::interest`] into its watchers.  Frames are parsed only when
//! an event is pulled, so a paused connection delivers nothing and payloads
//! are handed out straight from the read buffer.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::client::endpoint::{self, Endpoint};
use crate::client::handshake::{Answer, ClientHandshake};
use crate::client::proxy::{Proxy, ProxySettings, Tunnel, TunnelStep};
use crate::client::resolver::{Lookup, Waker};
use crate::net::os_error;
use crate::net::tls::{self, ClientTls};
use crate::net::transport::{self, Received};
use crate::protocol::deflate::{self, Compressor, DeflateParams};
use crate::protocol::frame::{self, Control, Data, FrameHeader, OpCode, Role};
use crate::protocol::handshake::Parsed;
use crate::protocol::headers::HeaderList;
use crate::protocol::inbound::{InBuf, Inbound, MessageReader, Payload, Step};
use crate::protocol::outbound::{Flushed, Outbound};
use crate::protocol::pool;
use crate::protocol::utf8::{self, Utf8Stream};
use crate::server::handshake::{self, ServerPolicy, UpgradeRequest, Verdict};

/// Handshake deadline of a client that did not set `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing handshake may wait for the peer.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server waits for a complete upgrade request.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a server accepts when `max_message_size` is not given
/// (a client's default is unlimited).
pub const DEFAULT_SERVER_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Settings that client and server connections share.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Largest message accepted; 0 means unlimited (the default of
    /// clients; servers default to [`DEFAULT_SERVER_MAX_MESSAGE`]).
    pub max_message: usize,
    /// How long a closing handshake waits for the peer.
    pub close_timeout: Duration,
    /// Ping after this long without hearing from the peer.
    pub ping_interval: Option<Duration>,
    /// Fail the connection when a ping's pong takes longer than this
    /// (default: the interval).
    pub ping_timeout: Option<Duration>,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            max_message: 0,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ping_interval: None,
            ping_timeout: None,
        }
    }
}

/// What `connect` was asked for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    pub protocol: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Offer permessage-deflate.
    pub compression: bool,
    pub connect_timeout: Duration,
    pub session: SessionSettings,
    /// For wss://: the context's TLS settings, and whether to verify.
    pub tls: Option<Arc<ClientTls>>,
    pub verify: bool,
    /// The context's proxies.
    pub proxies: Arc<ProxySettings>,
}

impl ClientOptions {
    pub fn new(url: &str) -> ClientOptions {
        ClientOptions {
            url: url.to_string(),
            protocol: None,
            headers: Vec::new(),
            compression: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            session: SessionSettings::default(),
            tls: None,
            verify: true,
            proxies: Arc::default(),
        }
    }
}

/// What a listener gives each connection it accepts.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub policy: ServerPolicy,
    pub handshake_timeout: Duration,
    pub session: SessionSettings,
    /// Serve wss:// with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            policy: ServerPolicy {
                max_head: crate::protocol::handshake::MAX_HEAD,
                ..ServerPolicy::default()
            },
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            session: SessionSettings {
                max_message: DEFAULT_SERVER_MAX_MESSAGE,
                ..SessionSettings::default()
            },
            tls: None,
        }
    }
}

/// Redirects a server may send a client through before it gives up.
const MAX_REDIRECTS: u8 = 5;

/// What a client asked for, kept to open TLS once TCP is up and to make
/// the same request again after a redirect.
struct ClientRequest {
    url: String,
    protocol: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    compression: bool,
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

/// Keepalive state of an open connection.
#[derive(Debug)]
struct Keepalive {
    interval: Duration,
    timeout: Duration,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

impl Keepalive {
    fn new(settings: &SessionSettings) -> Option<Keepalive> {
        let interval = settings.ping_interval?;
        Some(Keepalive {
            interval,
            timeout: settings.ping_timeout.unwrap_or(interval),
            last_heard: Instant::now(),
            ping_sent: None,
        })
    }

    /// When the keepalive next needs attention.
    fn due(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => later(sent, self.timeout),
            None => later(self.last_heard, self.interval),
        }
    }
}

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
enum Notice {
    Handshake,
    Connected,
    Drain,
    Error(String),
    Closed(u16, Option<Vec<u8>>),
}

impl Notice {
    fn as_event(&self) -> Event<'_> {
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

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    NotOpen,
    FragmentInProgress,
    InvalidUtf8,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "Connection is not open",
            SendError::FragmentInProgress => {
                "Cannot send while a fragmented message is in progress; finish the fragment with send_fragment(..., is_final => 1) first"
            }
            SendError::InvalidUtf8 => "send: text message is not valid UTF-8 (use send_binary for bytes)",
        })
    }
}

/// What a `send*` call queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Text,
    Binary,
    Ping,
    Pong,
    Fragment { binary: bool, fin: bool },
}

/// A fragmented message we are sending.
#[derive(Debug, Clone, Copy)]
struct OutgoingFragments {
    binary: bool,
    /// Its fragments are parts of one deflate stream.
    compressed: bool,
    utf8: Utf8Stream,
}

pub struct Connection {
    phase: Phase,
    socket: Option<TcpStream>,
    /// A failed connect attempt's socket, closed on the next call (after
    /// the binding has moved its watcher to the new socket).
    retired: Option<TcpStream>,
    socket_gen: u32,
    /// Client: addresses still to try, and the host for error texts.
    candidates: VecDeque<SocketAddr>,
    host: String,
    peer: Option<SocketAddr>,
    inbuf: InBuf,
    /// Bytes the parser needs before the next frame is complete.
    need: usize,
    /// Bytes of `inbuf` to drop once the current event is done with.
    consume_after: usize,
    reader: MessageReader,
    out: Outbound,
    write_blocked: bool,
    notices: VecDeque<Notice>,
    current: Option<Notice>,
    /// Events may be waiting in `inbuf` (after `resume`).
    recheck: bool,
    paused: bool,
    /// The peer closed its side, or reading failed (with this text).
    eof: Option<Option<String>>,
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
    /// The TLS session, when the connection is wss://.
    tls: Option<Box<rustls::Connection>>,
    server: Option<Arc<ServerSettings>>,
}

impl Connection {
    fn new(role: Role, session: &SessionSettings) -> Connection {
        Connection {
            phase: Phase::Closed,
            socket: None,
            retired: None,
            socket_gen: 0,
            candidates: VecDeque::new(),
            host: String::new(),
            peer: None,
            inbuf: InBuf::default(),
            need: 0,
            consume_after: 0,
            reader: MessageReader::new(role, session.max_message),
            out: Outbound::new(role == Role::Client),
            write_blocked: false,
            notices: VecDeque::new(),
            current: None,
            recheck: false,
            paused: false,
            eof: None,
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
            tls: None,
            server: None,
        }
    }

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
                self.out.push_raw(&first);
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
        self.retired = self.socket.take();
        self.tls = None;
        self.inbuf.consume(self.inbuf.data().len());
        self.out = Outbound::new(true);
        self.write_blocked = false;
        self.eof = None;
        self.peer = None;
        self.open_client(&target);
    }

    /// Resolve `self.host` (unless it is an IP literal) and connect.
    fn start(&mut self, port: u16, handshake: ClientHandshake, waker: &Waker) {
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

    /// A server connection for a socket a listener accepted.
    pub fn accept(socket: TcpStream, settings: Arc<ServerSettings>) -> Connection {
        let mut conn = Connection::new(Role::Server, &settings.session);
        // Without TCP_NODELAY small frames wait for the peer's delayed ACK.
        let _ = socket.set_nodelay(true);
        conn.peer = socket.peer_addr().ok();
        conn.socket = Some(socket);
        conn.phase = Phase::AwaitingRequest;
        conn.set_deadline(Some(settings.handshake_timeout));
        if let Some(config) = &settings.tls {
            match tls::server_session(config) {
                Ok(session) => conn.tls = Some(Box::new(session)),
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
            conn.inbuf.extend(initial_data);
            conn.read_request();
        }
        conn
    }

    // ---- what the binding asks -------------------------------------------

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Open => State::Connected,
            Phase::Closing => State::Closing,
            Phase::Closed => State::Closed,
            _ => State::Connecting,
        }
    }

    pub fn interest(&self) -> Interest {
        let socket = self.socket.as_ref();
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
            socket_gen: self.socket_gen,
            read: socket.is_some()
                && self.eof.is_none()
                && (handshaking || (streaming && !self.paused)),
            write: socket.is_some()
                && (matches!(self.phase, Phase::Connecting(_))
                    || (flushable && self.write_blocked)
                    || self.tls.as_ref().is_some_and(|t| t.wants_write())),
            prepare: !self.notices.is_empty()
                || self.recheck
                || (flushable && !self.write_blocked && !self.out.is_empty()),
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
            _ => self.peer.map(|p| p.ip().to_canonical()),
        }
    }

    /// User payload bytes the kernel does not have yet; with TLS that
    /// includes what the session holds, encrypted or not.
    pub fn queued(&self) -> usize {
        match self.phase {
            Phase::Closed => 0,
            _ => self.out.queued_payload(),
        }
    }

    // ---- user actions ------------------------------------------------------

    pub fn send(&mut self, kind: SendKind, data: &[u8]) -> Result<(), SendError> {
        if !matches!(self.phase, Phase::Open) {
            return Err(SendError::NotOpen);
        }
        let data_opcode = |binary| OpCode::Data(if binary { Data::Binary } else { Data::Text });
        match kind {
            SendKind::Text | SendKind::Binary => {
                if self.sending_fragments.is_some() {
                    return Err(SendError::FragmentInProgress);
                }
                let binary = kind == SendKind::Binary;
                if !binary && !utf8::is_valid(data) {
                    return Err(SendError::InvalidUtf8);
                }
                let compressed =
                    self.deflater.is_some() && data.len() >= deflate::MIN_COMPRESSED_SIZE;
                self.queue_data(data_opcode(binary), true, data, compressed, true);
            }
            SendKind::Ping | SendKind::Pong => {
                let control = if kind == SendKind::Ping {
                    Control::Ping
                } else {
                    Control::Pong
                };
                let cut = data.len().min(frame::MAX_CONTROL_PAYLOAD);
                self.out
                    .push_frame(OpCode::Control(control), true, &data[..cut], true);
            }
            SendKind::Fragment { binary, fin } => {
                let message = self.sending_fragments.unwrap_or(OutgoingFragments {
                    binary,
                    // Unless this is the whole message, its size is unknown.
                    compressed: self.deflater.is_some()
                        && (!fin || data.len() >= deflate::MIN_COMPRESSED_SIZE),
                    utf8: Utf8Stream::default(),
                });
                let opcode = match self.sending_fragments {
                    Some(_) => OpCode::Data(Data::Continue),
                    None => data_opcode(binary),
                };
                let mut utf8 = message.utf8;
                if !message.binary && !utf8.feed(data, fin) {
                    return Err(SendError::InvalidUtf8);
                }
                self.sending_fragments = (!fin).then_some(OutgoingFragments { utf8, ..message });
                self.queue_data(opcode, fin, data, message.compressed, true);
            }
        }
        self.drain_armed = self.drain_wanted;
        Ok(())
    }

    /// Queue a data frame, compressed when asked.  The first frame of a
    /// compressed message carries RSV1 (RFC 7692 §6).
    fn queue_data(
        &mut self,
        opcode: OpCode,
        fin: bool,
        data: &[u8],
        compressed: bool,
        counted: bool,
    ) {
        let Some(deflater) = self.deflater.as_mut().filter(|_| compressed) else {
            return self.out.push_frame(opcode, fin, data, counted);
        };
        let mut payload = pool::SCRATCH.with(pool::Pool::take);
        payload.clear();
        deflater.compress(data, fin, &mut payload);
        let header = FrameHeader {
            rsv1: opcode != OpCode::Data(Data::Continue),
            ..frame::header(opcode, fin)
        };
        self.out.push(header, &payload, counted);
        pool::SCRATCH.with(|p| p.give(payload));
    }

    /// A fragmented message we send ends unfinished: the connection is
    /// closing.
    fn abandon_fragments(&mut self) {
        self.sending_fragments = None;
        if let Some(deflater) = self.deflater.as_mut() {
            deflater.release();
        }
    }

    /// Start the closing handshake.  The code is checked in every state;
    /// then it is a no-op unless the connection is open.
    pub fn close(&mut self, code: f64, reason: &[u8]) -> Result<(), String> {
        let code = check_close_args(code, reason)?;
        if !matches!(self.phase, Phase::Open) {
            return Ok(());
        }
        if let Some(message) = self.sending_fragments.take() {
            let continuation = OpCode::Data(Data::Continue);
            self.queue_data(continuation, true, &[], message.compressed, false);
        }
        self.out.push_close(Some(code), cut_reason(reason));
        self.close_sent = true;
        self.phase = Phase::Closing;
        // The peer's close frame must be read (RFC 6455 §7.1.1): a paused
        // connection resumes; what comes before it is still delivered.
        self.set_paused(false);
        self.set_deadline(Some(self.close_timeout));
        Ok(())
    }

    /// Without a listener, drains are not reported (each would be an
    /// event per write).
    pub fn set_drain_wanted(&mut self, wanted: bool) {
        self.drain_wanted = wanted;
        self.drain_armed &= wanted;
    }

    /// `pause_recv` / `resume_recv`; only while connected or closing.
    pub fn set_paused(&mut self, paused: bool) {
        if !matches!(self.phase, Phase::Open | Phase::Closing) || self.paused == paused {
            return;
        }
        self.paused = paused;
        // Messages already buffered are delivered on the next prepare.
        self.recheck = !paused;
        // A paused connection cannot read the pong: keepalive waits too.
        if matches!(self.phase, Phase::Open)
            && let Some(k) = self.keepalive.as_mut()
        {
            k.last_heard = Instant::now();
            k.ping_sent = None;
            let due = (!paused).then(|| k.due());
            self.set_deadline_at(due);
        }
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
            request.write_response(&settings.policy, extra_headers, self.out.raw_buf())
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

    /// The owner is going away: what is queued goes out in one last
    /// best-effort write, with a 1001 close to an open peer (a closing
    /// connection's own close frame is queued already); no events.
    pub fn abandon(&mut self) {
        let last_write = match self.phase {
            Phase::Open => {
                self.out.push_close(Some(1001), b"");
                true
            }
            Phase::Closing | Phase::Refusing => true,
            _ => false,
        };
        if last_write && let Some(socket) = self.socket.as_mut() {
            let _ = transport::send(socket, self.tls.as_deref_mut(), &mut self.out);
        }
        self.enter_closed();
        self.notices.clear();
        self.current = None;
    }

    // ---- loop entry points -------------------------------------------------

    pub fn on_readable(&mut self) {
        self.retired = None;
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let opening = !matches!(self.phase, Phase::Open | Phase::Closing);
        match transport::receive(
            socket,
            self.tls.as_deref_mut(),
            &mut self.inbuf,
            self.need,
            opening,
        ) {
            Ok(Received::Data) => {
                if let Some(k) = self.keepalive.as_mut() {
                    k.last_heard = Instant::now();
                }
            }
            Ok(Received::Nothing) => return,
            Ok(Received::Closed) => self.eof = Some(None),
            Err(text) => self.eof = Some(Some(text)),
        }
        match self.phase {
            Phase::Tunneling(_) => self.read_tunnel(),
            Phase::AwaitingResponse(_) => self.read_response(),
            Phase::AwaitingRequest => self.read_request(),
            _ => {}
        }
    }

    pub fn on_writable(&mut self) {
        self.retired = None;
        if matches!(self.phase, Phase::Connecting(_)) {
            self.finish_tcp_connect();
        } else {
            self.write_out();
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
                self.out.push_raw(&first);
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

    pub fn on_timer(&mut self) {
        self.retired = None;
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

    fn write_out(&mut self) {
        self.retired = None;
        if matches!(
            self.phase,
            Phase::Resolving(..) | Phase::Connecting(_) | Phase::Closed
        ) {
            return;
        }
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let result = transport::send(socket, self.tls.as_deref_mut(), &mut self.out);
        if !self.out.has_unsent_pong()
            && let Some(payload) = self.deferred_pong.take()
            && !self.close_sent
        {
            // written by the next flush
            self.out.push_pong(&payload);
        }
        match result {
            Ok(Flushed::All) => {
                self.write_blocked = false;
                self.flushed_all();
            }
            Ok(Flushed::Partial) => self.write_blocked = true,
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
            self.inbuf.consume(std::mem::take(&mut self.consume_after));
        }
        if self.notices.is_empty() {
            match self.parse_frames()? {
                Ready::Message { binary, payload } => {
                    let data = match payload {
                        Payload::Buffered(range) => &self.inbuf.data()[range],
                        Payload::Reassembled => self.reader.reassembled(),
                    };
                    return Some(Event::Message { binary, data });
                }
                Ready::Pong(range) => return Some(Event::Pong(&self.inbuf.data()[range])),
                Ready::Notice => {}
            }
        }
        let notice = self.notices.pop_front()?;
        Some(self.current.insert(notice).as_event())
    }

    // ---- internals ---------------------------------------------------------

    /// Parse buffered frames until one is for the user or a notice arose.
    /// Pings are answered here; a close frame moves the closing handshake.
    fn parse_frames(&mut self) -> Option<Ready> {
        self.recheck = false;
        if self.paused {
            return None;
        }
        let receiving = matches!(self.phase, Phase::Open)
            || (matches!(self.phase, Phase::Closing) && self.close_received.is_none());
        if !receiving {
            return self.handle_eof();
        }
        loop {
            if self.inbuf.is_empty() {
                // The usual case once a read's messages are out: no frame
                // can be complete, so skip the parser.
                self.reader.release_delivered();
                self.need = 2;
                return self.handle_eof();
            }
            let (used, step) = self.reader.next(self.inbuf.data_mut());
            match step {
                Step::NeedMore(n) => {
                    self.inbuf.consume(used);
                    self.inbuf.settle();
                    self.need = n;
                    return self.handle_eof();
                }
                Step::Violation(v) => {
                    self.inbuf.consume(used);
                    self.fail(v.code, v.text);
                    return Some(Ready::Notice);
                }
                Step::Frame(Inbound::Ping(range)) => {
                    let payload = &self.inbuf.data()[range];
                    // A peer that pings without reading would have pongs
                    // pile up: while the socket is full only the latest
                    // ping is answered, once the pong before it is out
                    // (RFC 6455 §5.5.3).
                    let pong_waits = self.write_blocked && self.out.has_unsent_pong();
                    match (self.close_sent, pong_waits) {
                        (true, _) => {}
                        (false, true) => self.deferred_pong = Some(payload.to_vec()),
                        (false, false) => self.out.push_pong(payload),
                    }
                    self.inbuf.consume(used);
                }
                Step::Frame(Inbound::Close { code, reason }) => {
                    let reason = self.inbuf.data()[reason].to_vec();
                    self.inbuf.consume(used);
                    self.close_frame_received(code, reason);
                    if !self.notices.is_empty() {
                        return Some(Ready::Notice);
                    }
                    // The end of the stream may have come in the same read.
                    return self.handle_eof();
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

    /// Once every complete frame is delivered: tear down if the peer is
    /// gone.
    fn handle_eof(&mut self) -> Option<Ready> {
        let read_error = self.eof.as_ref()?.clone();
        if !matches!(self.phase, Phase::Open | Phase::Closing) {
            return None;
        }
        // A client that sent its close frame and shut down its side may
        // still read: the server writes what is left first (or until
        // close_timeout), then closes.
        if read_error.is_none()
            && self.server.is_some()
            && self.close_sent
            && self.close_received.is_some()
            && !self.all_written()
        {
            return None;
        }
        // After the peer's close frame a reset is no error: it said goodbye.
        if let Some(text) = read_error.filter(|_| self.close_received.is_none()) {
            self.notices.push_back(Notice::Error(text));
        }
        self.finish_close();
        Some(Ready::Notice)
    }

    /// permessage-deflate was negotiated.  No zlib state exists until a
    /// message needs it.
    fn enable_deflate(&mut self, params: &DeflateParams, role: Role) {
        self.deflater = Some(params.compressor(role));
        self.reader.enable_inflation(params.decompressor(role));
    }

    /// The handshake completed.
    fn opened(&mut self) {
        self.phase = Phase::Open;
        self.notices.push_back(Notice::Connected);
        match self.keepalive.as_mut() {
            Some(k) => {
                k.last_heard = Instant::now();
                let due = k.due();
                self.set_deadline_at(Some(due));
            }
            None => self.set_deadline(None),
        }
    }

    /// The keepalive deadline passed: ping, or give up on a missing pong.
    /// Traffic since the deadline was set only moves it (no timer churn
    /// per message).
    fn keepalive_due(&mut self, now: Instant) {
        let Some(k) = self.keepalive.as_mut() else {
            return self.set_deadline(None);
        };
        match k.ping_sent {
            Some(sent) if now >= sent + k.timeout => return self.fail(1011, "ping timeout".into()),
            None if now >= k.last_heard + k.interval => {
                k.ping_sent = Some(now);
                self.out
                    .push_frame(OpCode::Control(Control::Ping), true, &[], false);
            }
            _ => {}
        }
        let due = self.keepalive.as_ref().map(Keepalive::due);
        self.set_deadline_at(due);
    }

    fn close_frame_received(&mut self, code: u16, reason: Vec<u8>) {
        self.close_received = Some((code, reason));
        if matches!(self.phase, Phase::Open) {
            // Echo the peer's code (RFC 6455 §5.5.1).
            let echo = (code != 1005).then_some(code);
            self.out.push_close(echo, b"");
            self.close_sent = true;
            self.abandon_fragments();
            self.phase = Phase::Closing;
            self.set_deadline(Some(self.close_timeout));
        }
        self.finish_server_close();
    }

    /// The server closes TCP first, once both close frames have passed
    /// and everything it queued is with the kernel.  Until then the write
    /// watcher runs and `close_timeout` bounds the wait.
    fn finish_server_close(&mut self) {
        if self.server.is_some()
            && matches!(self.phase, Phase::Closing)
            && self.close_sent
            && self.close_received.is_some()
            && self.all_written()
        {
            self.finish_close();
        }
    }

    /// Nothing waits to be written: the send queue is empty and so is the
    /// TLS session's buffer of records (an empty queue alone means only
    /// that the session took the bytes).
    fn all_written(&self) -> bool {
        self.out.is_empty() && !self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// End of an established connection: the peer's close code, or 1006.
    fn finish_close(&mut self) {
        match self.close_received.take() {
            Some((1005, _)) => self.finish(1005, None),
            Some((code, reason)) => self.finish(code, Some(reason)),
            None => self.finish(1006, None),
        }
    }

    fn finish(&mut self, code: u16, reason: Option<Vec<u8>>) {
        self.enter_closed();
        self.notices.push_back(Notice::Closed(code, reason));
    }

    /// The end of the socket's use.  It is shut down at once, so the peer
    /// sees FIN even while another descriptor of it lives (an adopted
    /// handle); the descriptor itself closes when the binding drops us,
    /// after it has stopped its watchers.
    fn enter_closed(&mut self) {
        if let Some(socket) = self.socket.as_mut() {
            if let Some(tls) = self.tls.as_deref_mut() {
                transport::close_notify(socket, tls);
            }
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        self.phase = Phase::Closed;
        self.set_deadline(None);
        // No more messages either way: free any compression state.
        self.deflater = None;
        self.reader.disable_inflation();
    }

    /// Fail an established connection: tell the user, send the close code,
    /// drop the socket.
    fn fail(&mut self, code: u16, text: String) {
        if !self.close_sent {
            self.out.push_close(Some(code), cut_reason(text.as_bytes()));
            self.close_sent = true;
            if let Some(socket) = self.socket.as_mut() {
                let _ = transport::send(socket, self.tls.as_deref_mut(), &mut self.out);
            }
        }
        let reason = text.as_bytes().to_vec();
        self.notices.push_back(Notice::Error(text));
        self.finish(code, Some(reason));
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
    fn fail_early(&mut self, text: String) {
        self.enter_closed();
        self.notices.push_back(Notice::Error(text));
    }

    fn refuse(&mut self, answer: Vec<u8>) {
        self.out.push_raw(&answer);
        self.phase = Phase::Refusing;
    }

    fn flushed_all(&mut self) {
        match self.phase {
            Phase::Open if self.drain_armed && self.out.queued_payload() == 0 => {
                self.drain_armed = false;
                self.notices.push_back(Notice::Drain);
            }
            Phase::Refusing => self.enter_closed(),
            Phase::Closing => self.finish_server_close(),
            _ => {}
        }
    }

    fn set_deadline(&mut self, after: Option<Duration>) {
        self.set_deadline_at(after.map(|d| later(Instant::now(), d)));
    }

    fn set_deadline_at(&mut self, at: Option<Instant>) {
        self.deadline = at;
        self.deadline_gen = self.deadline_gen.wrapping_add(1);
    }

    fn try_next_address(&mut self, mut last_error: Option<io::Error>) {
        if let Some(old) = self.socket.take() {
            self.retired = Some(old);
        }
        while let Some(addr) = self.candidates.pop_front() {
            match TcpStream::connect(addr) {
                Ok(socket) => {
                    let _ = socket.set_nodelay(true);
                    self.socket = Some(socket);
                    self.socket_gen = self.socket_gen.wrapping_add(1);
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

    fn finish_tcp_connect(&mut self) {
        let Some(socket) = self.socket.as_ref() else {
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
        self.peer = Some(peer);
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
                Ok(session) => self.tls = Some(Box::new(session)),
                Err(e) => return self.fail_early(format!("TLS handshake failed: {e}")),
            }
        }
        let upgrade = std::mem::take(&mut r.upgrade);
        self.out.push_raw(&upgrade);
        self.phase = Phase::AwaitingResponse(handshake);
        self.write_out();
    }

    /// The proxy answered: go on with the tunnel's conversation.
    fn read_tunnel(&mut self) {
        let Some(tunnel) = self.request.as_mut().and_then(|r| r.tunnel.as_mut()) else {
            return;
        };
        match tunnel.advance(self.inbuf.data()) {
            TunnelStep::NeedMore if self.eof.is_some() => {
                self.fail_early("proxy failed: connection closed by the proxy".into())
            }
            TunnelStep::NeedMore => self.inbuf.settle(),
            TunnelStep::Send { used, bytes } => {
                self.inbuf.consume(used);
                self.out.push_raw(&bytes);
                self.write_out();
            }
            TunnelStep::Open(used) => {
                self.inbuf.consume(used);
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

    fn read_response(&mut self) {
        let Phase::AwaitingResponse(handshake) = &self.phase else {
            return;
        };
        match handshake.read_response(self.inbuf.data()) {
            Ok(Parsed::Complete(used, Answer::Accepted(accepted))) => {
                self.inbuf.consume(used);
                self.headers = accepted.headers;
                self.protocol = accepted.protocol;
                if let Some(params) = accepted.deflate {
                    self.enable_deflate(&params, Role::Client);
                }
                self.request = None;
                self.opened();
            }
            Ok(Parsed::Complete(_, Answer::Redirect(location))) => self.follow_redirect(&location),
            Ok(Parsed::Incomplete) => match self.eof.clone() {
                Some(read_error) => {
                    let text = read_error
                        .unwrap_or_else(|| "handshake failed: connection closed by peer".into());
                    self.fail_early(text);
                }
                None => self.inbuf.settle(),
            },
            Err(text) => self.fail_early(text),
        }
    }

    fn read_request(&mut self) {
        let settings = Arc::clone(self.server.as_ref().expect("server connection"));
        match handshake::read_request(self.inbuf.data(), &settings.policy) {
            Parsed::Complete(used, Verdict::Upgrade(mut request)) => {
                self.inbuf.consume(used);
                self.headers = std::mem::take(&mut request.headers);
                self.phase = Phase::AwaitingVerdict(request);
                self.notices.push_back(Notice::Handshake);
            }
            Parsed::Complete(used, Verdict::Refuse(answer)) => {
                self.inbuf.consume(used);
                self.refuse(answer);
            }
            Parsed::Incomplete if self.eof.is_some() => self.enter_closed(),
            Parsed::Incomplete => self.inbuf.settle(),
        }
    }
}

/// What parsing found for the user.
enum Ready {
    Message {
        binary: bool,
        payload: Payload,
    },
    Pong(Range<usize>),
    /// Look in the notice queue.
    Notice,
}

/// Headers that carry the user's credentials.
fn is_credential(name: &str) -> bool {
    ["Authorization", "Cookie", "Proxy-Authorization"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
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

/// The arguments of `close()` checked (in any state), or the croak text.
/// The code is a number as Perl gave it: NaN, an infinity or a fraction
/// is as invalid as an out-of-range integer, and is shown as given.
pub fn check_close_args(code: f64, reason: &[u8]) -> Result<u16, String> {
    let code = Some(code)
        .filter(|c| c.fract() == 0.0 && (0.0..=65535.0).contains(c))
        .map(|c| c as u16)
        .filter(|c| frame::is_valid_close_code(*c))
        .ok_or_else(|| {
            format!(
                "close: invalid close code {code} (RFC 6455 allows 1000-1003, 1007-1014, 3000-4999)"
            )
        })?;
    if !utf8::is_valid(reason) {
        return Err("close: reason is not valid UTF-8".into());
    }
    Ok(code)
}

/// A close reason cut to the 123 bytes a close frame holds, on a character
/// boundary.
fn cut_reason(reason: &[u8]) -> &[u8] {
    const MAX: usize = frame::MAX_CONTROL_PAYLOAD - 2;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    // Step back over UTF-8 continuation bytes (10xxxxxx).
    while end > 0 && reason[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    //! Client and server connections over real loopback sockets, driven by
    //! a small polling loop instead of EV.

    use super::*;
    use crate::listener::Listener;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Handshake,
        Connected,
        Message(bool, Vec<u8>),
        Pong(Vec<u8>),
        Drain,
        Error(String),
        Closed(u16, Option<Vec<u8>>),
    }

    fn owned(event: Event<'_>) -> Seen {
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
    fn turn(conn: &mut Connection, seen: &mut Vec<Seen>) {
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
    struct Pair {
        client: Connection,
        server: Connection,
        client_seen: Vec<Seen>,
        server_seen: Vec<Seen>,
    }

    impl Pair {
        fn open(settings: ServerSettings, url_host: &str) -> Pair {
            Pair::open_with(settings, url_host, SessionSettings::default())
        }

        fn open_with(settings: ServerSettings, url_host: &str, client: SessionSettings) -> Pair {
            let secure = settings.tls.is_some();
            let listener = Listener::bind(crate::listener::Bind::default(), settings).unwrap();
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

        fn run_until(&mut self, done: impl Fn(&Pair) -> bool) {
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
        fn echo(&mut self) {
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
    fn open_tls(mut settings: ServerSettings) -> Pair {
        let config =
            tls::server_config(&cert_file("server.pem"), &cert_file("server-key.pem"), None);
        settings.tls = Some(config.unwrap());
        settings.policy.compression = false;
        let client = SessionSettings {
            close_timeout: settings.session.close_timeout,
            ..SessionSettings::default()
        };
        Pair::open_with(settings, "127.0.0.1", client)
    }

    fn cert_file(name: &str) -> String {
        format!("{}/t/certs/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// Make the kernel hold little of what `from` writes to `to` (a few
    /// KiB each way), so that a TLS session keeps the rest.
    fn shrink_buffers(from: &Connection, to: &Connection) {
        let send = socket2::SockRef::from(from.socket.as_ref().unwrap());
        send.set_send_buffer_size(4096).unwrap();
        let recv = socket2::SockRef::from(to.socket.as_ref().unwrap());
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
            let socket = p.client.socket.as_ref().unwrap();
            socket.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Only the server runs: it writes what the kernel takes and reads
        // the client's close frame.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.server.close_received.is_none() && p.server.state() != State::Closed {
            assert!(Instant::now() < deadline, "{:?}", p.server_seen);
            turn(&mut p.server, &mut p.server_seen);
            std::thread::yield_now();
        }
        if half_close {
            // and the end of the client's stream
            turn(&mut p.server, &mut p.server_seen);
        }
        assert_eq!(p.server.state(), State::Closing, "still writing");
        assert!(p.server.tls.as_ref().unwrap().wants_write());
        assert!(p.server.out.is_empty(), "the session took everything");
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
        let big = tail_message();
        p.server.send(SendKind::Binary, &big).unwrap();
        turn(&mut p.server, &mut p.server_seen);
        assert!(p.server.out.is_empty() && p.server.tls.as_ref().unwrap().wants_write());
        assert!(p.server.queued() > 40 * 1024);
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

    /// The messages among what a side has seen.
    fn messages(seen: &[Seen]) -> Vec<Seen> {
        seen.iter()
            .filter(|s| matches!(s, Seen::Message(..)))
            .cloned()
            .collect()
    }

    fn no_waker() -> Waker {
        Arc::new(|| {})
    }

    #[test]
    fn compression_both_ways() {
        let mut settings = ServerSettings::default();
        settings.policy.compression = true;
        settings.policy.context_takeover = true;
        let mut p = Pair::open(settings, "127.0.0.1");
        assert!(p.client.deflater.is_some() && p.server.deflater.is_some());
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
        assert!(p.client.deflater.as_ref().is_some_and(|d| !d.is_active()));
        p.client.close(1000.0, b"").unwrap();
        p.run_until(|p| p.server.state() == State::Closed);
        assert!(p.server.deflater.is_none(), "freed at close");
    }

    #[test]
    fn compression_needs_both_sides() {
        let p = Pair::open(ServerSettings::default(), "127.0.0.1");
        assert!(p.client.deflater.is_none() && p.server.deflater.is_none());
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

    /// Headers that may not be sent, from the application's verdict: the
    /// client gets a 500, and nothing of them.
    #[test]
    fn unsendable_verdict_headers_answer_500() {
        let listener =
            Listener::bind(crate::listener::Bind::default(), ServerSettings::default()).unwrap();
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

    fn keepalive(interval_ms: u64) -> SessionSettings {
        SessionSettings {
            ping_interval: Some(Duration::from_millis(interval_ms)),
            ..SessionSettings::default()
        }
    }

    #[test]
    fn keepalive_pings_an_idle_peer() {
        let mut p = Pair::open_with(ServerSettings::default(), "127.0.0.1", keepalive(30));
        let pongs = |p: &Pair| {
            p.client_seen
                .iter()
                .filter(|s| **s == Seen::Pong(Vec::new()))
                .count()
        };
        p.run_until(|p| pongs(p) >= 3);
        assert_eq!(p.client.state(), State::Connected);
        assert!(
            p.server_seen
                .iter()
                .all(|s| !matches!(s, Seen::Message(..)))
        );
    }

    #[test]
    fn keepalive_gives_up_without_pong() {
        let mut p = Pair::open_with(ServerSettings::default(), "127.0.0.1", keepalive(30));
        // The server stops being served: nobody answers the ping.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.client.state() != State::Closed {
            assert!(Instant::now() < deadline);
            turn(&mut p.client, &mut p.client_seen);
        }
        assert_eq!(
            p.client_seen[1..],
            [
                Seen::Error("ping timeout".into()),
                Seen::Closed(1011, Some(b"ping timeout".to_vec()))
            ]
        );
    }

    #[test]
    fn keepalive_waits_while_paused() {
        let mut p = Pair::open_with(ServerSettings::default(), "127.0.0.1", keepalive(20));
        p.client.set_paused(true);
        assert_eq!(p.client.deadline_in(), None);
        let until = Instant::now() + Duration::from_millis(100);
        p.run_until(|_| Instant::now() >= until);
        assert_eq!(p.client.state(), State::Connected);
        p.client.set_paused(false);
        assert!(p.client.deadline_in().is_some());
        p.run_until(|p| p.client_seen.contains(&Seen::Pong(Vec::new())));
    }

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

    #[test]
    fn close_reason_cut_on_char_boundary() {
        let reason = "é".repeat(70); // 140 bytes
        let cut = cut_reason(reason.as_bytes());
        assert_eq!(cut.len(), 122);
        assert!(std::str::from_utf8(cut).is_ok());
    }
}
