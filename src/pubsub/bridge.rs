//! The bridge between a context's topics and Redis: two connections to
//! one server, one SUBSCRIBEd to the channels of the topics this process
//! has subscribers for, one for PUBLISH (a subscribed RESP2 connection
//! takes no other command), reconnected with backoff when the server goes
//! away.  It reports what it wants from the event loop (`interest`,
//! `deadline`) and hands each message from another process to the
//! caller's fan-out, straight from the read buffer.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use redis_protocol::resp2::types::RangeFrame;

use super::Settings;
use super::backoff::Backoff;
use super::envelope;
use super::resp::{Reply, RespStream};
use super::url::Host;
use crate::client::resolver::{Lookup, Waker};
use crate::topics::TopicName;

/// Past this much unwritten output, publishes are dropped.
pub const OUTPUT_LIMIT: usize = 16 << 20;
/// How long resolving, connecting and logging in may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a message from another publisher goes: (topic, binary, data).
pub type Deliver<'a> = dyn FnMut(&[u8], bool, &[u8]) + 'a;

/// The two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Subscriber = 0,
    Publisher = 1,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Both connections are up, logged in and (re)subscribed.
    Connected,
    /// A connection failed (or could not be made); a retry is scheduled.
    Error(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connected: bool,
    /// Messages handed to Redis.
    pub published: u64,
    /// Messages from other publishers, fanned out here.
    pub received: u64,
    /// Publishes not handed to Redis: not connected, or output full.
    pub dropped: u64,
    /// Times the bridge connected again after losing its connection.
    pub reconnects: u64,
    /// Channels subscribed to (topics with local subscribers).
    pub channels: usize,
}

/// What one connection wants from the loop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub fd: Option<RawFd>,
    pub read: bool,
    pub write: bool,
}

#[derive(Debug)]
struct Link {
    stream: RespStream,
    /// Its address's index in the attempt's list.
    addr: usize,
    /// The setup commands whose replies are still owed, oldest first.
    setup: VecDeque<&'static str>,
}

enum Phase {
    Waiting {
        until: Instant,
    },
    Resolving {
        lookup: Lookup,
        until: Instant,
    },
    Linked {
        addrs: Vec<SocketAddr>,
        links: Box<[Link; 2]>,
        up: bool,
        until: Instant,
    },
    Stopped,
}

pub struct Bridge {
    settings: Settings,
    /// This bridge's id in the envelopes it publishes.
    origin: u64,
    waker: Waker,
    phase: Phase,
    backoff: Backoff,
    /// Topics with local subscribers.
    wanted: HashSet<TopicName>,
    events: VecDeque<Event>,
    stats: Stats,
    been_up: bool,
    /// Reused for a publish's channel name and payload.
    channel: Vec<u8>,
    payload: Vec<u8>,
}

impl Bridge {
    /// A bridge whose first attempt is due at once (at the first `poll`);
    /// `waker` wakes the loop when a name lookup has answered.
    pub fn new(settings: Settings, waker: Waker, now: Instant) -> Bridge {
        Bridge {
            settings,
            origin: rand::random(),
            waker,
            phase: Phase::Waiting { until: now },
            backoff: Backoff::default(),
            wanted: HashSet::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            been_up: false,
            channel: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// `topic` got its first local subscriber.
    pub fn subscribe(&mut self, topic: &[u8]) {
        if self.wanted.insert(topic.into()) {
            self.channel_command(b"SUBSCRIBE", topic);
        }
        self.stats.channels = self.wanted.len();
    }

    /// `topic` lost its last local subscriber.
    pub fn unsubscribe(&mut self, topic: &[u8]) {
        if self.wanted.remove(topic) {
            self.channel_command(b"UNSUBSCRIBE", topic);
        }
        self.stats.channels = self.wanted.len();
    }

    fn channel_command(&mut self, command: &[u8], topic: &[u8]) {
        if let Phase::Linked { links, .. } = &mut self.phase {
            set_channel(&mut self.channel, &self.settings.prefix, topic);
            links[Side::Subscriber as usize]
                .stream
                .command(&[command, &self.channel]);
        }
    }

    /// Hand a message to Redis (written at the next `poll`), or count it
    /// dropped: nothing is queued while disconnected.
    pub fn publish(&mut self, topic: &[u8], binary: bool, data: &[u8]) {
        let Phase::Linked {
            links, up: true, ..
        } = &mut self.phase
        else {
            self.stats.dropped += 1;
            return;
        };
        let stream = &mut links[Side::Publisher as usize].stream;
        if stream.queued() + data.len() > OUTPUT_LIMIT {
            self.stats.dropped += 1;
            return;
        }
        set_channel(&mut self.channel, &self.settings.prefix, topic);
        self.payload.clear();
        envelope::encode_header(self.origin, binary, &mut self.payload);
        self.payload.extend_from_slice(data);
        stream.command(&[b"PUBLISH", &self.channel, &self.payload]);
        self.stats.published += 1;
    }

    /// Act on readiness of `io`'s connection (if any), on a lookup's
    /// answer and on deadlines, then write what is queued.  Each message
    /// from another publisher goes to `deliver(topic, binary, data)`.
    pub fn poll(
        &mut self,
        io: Option<(Side, bool, bool)>,
        now: Instant,
        deliver: &mut Deliver<'_>,
    ) {
        if let Some((side, readable, writable)) = io
            && let Err(e) = self.on_io(side, readable, writable, deliver)
        {
            self.fail(e, now);
        }
        self.advance(now);
        if let Err(e) = self.flush() {
            self.fail(e, now);
        }
    }

    fn on_io(
        &mut self,
        side: Side,
        readable: bool,
        writable: bool,
        deliver: &mut Deliver<'_>,
    ) -> Result<(), String> {
        let Bridge {
            settings,
            origin,
            phase,
            stats,
            wanted,
            ..
        } = self;
        let Phase::Linked {
            addrs, links, up, ..
        } = phase
        else {
            return Ok(());
        };
        let link = &mut links[side as usize];
        if writable && let Err(e) = link.stream.on_writable() {
            if link.stream.is_connected() {
                return Err(lost(&link.stream, e));
            }
            // refused: the next address, if the name had another
            let failed = link.stream.addr();
            *link = open(settings, wanted, side, addrs, link.addr + 1)
                .map_err(|_| format!("cannot connect to Redis at {failed}: {e}"))?;
            return Ok(());
        }
        if readable && link.stream.is_connected() {
            let open = link.stream.read().map_err(|e| lost(&link.stream, e))?;
            while let Some(reply) = link.stream.next_reply()? {
                let bytes = link.stream.reply_bytes();
                if side == Side::Subscriber
                    && let Some((channel, payload)) = message(&reply, bytes)
                {
                    if let Some(topic) = channel.strip_prefix(settings.prefix.as_slice()) {
                        let m = envelope::decode(payload);
                        if m.origin != Some(*origin) {
                            stats.received += 1;
                            deliver(topic, m.binary, m.data);
                        }
                    }
                    continue;
                }
                if let Some(what) = link.setup.pop_front()
                    && let RangeFrame::Error(e) = reply
                {
                    let text = String::from_utf8_lossy(&bytes[e.0..e.1]);
                    return Err(format!("Redis {what} failed: {text}"));
                }
            }
            if !open {
                return Err(format!(
                    "Redis at {} closed the connection",
                    link.stream.addr()
                ));
            }
        }
        if !*up
            && links
                .iter()
                .all(|l| l.stream.is_connected() && l.setup.is_empty())
        {
            *up = true;
            self.on_up();
        }
        Ok(())
    }

    fn on_up(&mut self) {
        self.backoff.reset();
        if self.been_up {
            self.stats.reconnects += 1;
        }
        self.been_up = true;
        self.stats.connected = true;
        self.events.push_back(Event::Connected);
    }

    /// Start an attempt when its time has come, take a lookup's answer,
    /// give up an attempt that took too long.
    fn advance(&mut self, now: Instant) {
        let failed = match &mut self.phase {
            Phase::Waiting { until } if now >= *until => self.start(now).err(),
            Phase::Resolving { lookup, until } => match lookup.take() {
                Some(Ok(addrs)) => self.link(addrs, now).err(),
                Some(Err(e)) => Some(format!("cannot resolve {}: {e}", self.host_text())),
                None if now >= *until => Some(format!("timed out resolving {}", self.host_text())),
                None => None,
            },
            Phase::Linked {
                up: false,
                until,
                links,
                ..
            } if now >= *until => Some(format!(
                "timed out connecting to Redis at {}",
                links[0].stream.addr()
            )),
            _ => None,
        };
        if let Some(e) = failed {
            self.fail(e, now);
        }
    }

    fn start(&mut self, now: Instant) -> Result<(), String> {
        let port = self.settings.url.port;
        match &self.settings.url.host {
            Host::Addr(ip) => self.link(vec![SocketAddr::new(*ip, port)], now),
            Host::Name(name) => {
                let lookup = Lookup::start(name, port, self.waker.clone())
                    .map_err(|e| format!("cannot resolve {name}: {e}"))?;
                self.phase = Phase::Resolving {
                    lookup,
                    until: now + CONNECT_TIMEOUT,
                };
                Ok(())
            }
        }
    }

    fn link(&mut self, addrs: Vec<SocketAddr>, now: Instant) -> Result<(), String> {
        if addrs.is_empty() {
            return Err(format!("{} has no address", self.host_text()));
        }
        let (s, w) = (&self.settings, &self.wanted);
        let links = [
            open(s, w, Side::Subscriber, &addrs, 0)?,
            open(s, w, Side::Publisher, &addrs, 0)?,
        ];
        self.phase = Phase::Linked {
            addrs,
            links: Box::new(links),
            up: false,
            until: now + CONNECT_TIMEOUT,
        };
        Ok(())
    }

    fn host_text(&self) -> String {
        match &self.settings.url.host {
            Host::Addr(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// Drop both connections, say why, and retry after the backoff.
    fn fail(&mut self, why: String, now: Instant) {
        if matches!(self.phase, Phase::Stopped) {
            return;
        }
        let delay = self.backoff.next(rand::random());
        self.phase = Phase::Waiting { until: now + delay };
        self.stats.connected = false;
        self.events.push_back(Event::Error(why));
    }

    fn flush(&mut self) -> Result<(), String> {
        if let Phase::Linked { links, .. } = &mut self.phase {
            for link in links.iter_mut() {
                link.stream.flush().map_err(|e| lost(&link.stream, e))?;
            }
        }
        Ok(())
    }

    pub fn interest(&self, side: Side) -> Interest {
        match &self.phase {
            Phase::Linked { links, .. } => {
                let s = &links[side as usize].stream;
                Interest {
                    fd: Some(s.fd()),
                    read: s.is_connected(),
                    write: s.wants_write(),
                }
            }
            _ => Interest::default(),
        }
    }

    /// When `poll` must run next even if no socket is ready.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { until }
            | Phase::Resolving { until, .. }
            | Phase::Linked {
                up: false, until, ..
            } => Some(*until),
            _ => None,
        }
    }

    /// Whether a name lookup is under way (its answer wakes the loop).
    pub fn resolving(&self) -> bool {
        matches!(self.phase, Phase::Resolving { .. })
    }

    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Close both connections for good (with `flush`, after a last
    /// attempt to write what is queued); nothing is reported afterwards.
    pub fn stop(&mut self, flush: bool) {
        if flush {
            let _ = self.flush();
        }
        self.phase = Phase::Stopped;
        self.events.clear();
        self.stats.connected = false;
    }
}

/// A connection for `side` to the first of `addrs[from..]` that a
/// connect starts to, with its setup queued: log in, pick the database,
/// subscribe to every wanted channel, and a PING, whose answer says that
/// the server took all that.
fn open(
    settings: &Settings,
    wanted: &HashSet<TopicName>,
    side: Side,
    addrs: &[SocketAddr],
    from: usize,
) -> Result<Link, String> {
    let mut last = String::from("no address left");
    for (i, addr) in addrs.iter().enumerate().skip(from) {
        let mut stream = match RespStream::connect(*addr) {
            Ok(s) => s,
            Err(e) => {
                last = format!("cannot connect to Redis at {addr}: {e}");
                continue;
            }
        };
        let mut setup = VecDeque::new();
        let url = &settings.url;
        if let Some(password) = &url.password {
            match &url.user {
                Some(user) => stream.command(&[b"AUTH", user.as_bytes(), password]),
                None => stream.command(&[b"AUTH", password]),
            }
            setup.push_back("AUTH");
        }
        if url.db != 0 {
            stream.command(&[b"SELECT", url.db.to_string().as_bytes()]);
            setup.push_back("SELECT");
        }
        if side == Side::Subscriber && !wanted.is_empty() {
            let channels: Vec<Vec<u8>> = wanted
                .iter()
                .map(|t| [settings.prefix.as_slice(), t].concat())
                .collect();
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(channels.iter().map(Vec::as_slice));
            stream.command(&args);
            setup.extend(channels.iter().map(|_| "SUBSCRIBE"));
        }
        stream.command(&[b"PING"]);
        setup.push_back("PING");
        return Ok(Link {
            stream,
            addr: i,
            setup,
        });
    }
    Err(last)
}

fn set_channel(buf: &mut Vec<u8>, prefix: &[u8], topic: &[u8]) {
    buf.clear();
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(topic);
}

fn lost(stream: &RespStream, e: std::io::Error) -> String {
    format!("lost the connection to Redis at {}: {e}", stream.addr())
}

/// A `message` push: its channel and payload.
fn message<'a>(reply: &Reply, bytes: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let RangeFrame::Array(items) = reply else {
        return None;
    };
    match items.as_slice() {
        [
            RangeFrame::BulkString(kind),
            RangeFrame::BulkString(channel),
            RangeFrame::BulkString(payload),
        ] if &bytes[kind.0..kind.1] == b"message" => {
            Some((&bytes[channel.0..channel.1], &bytes[payload.0..payload.1]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::url::RedisUrl;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;

    /// A redis-server of the test's own on a free port; `None` (the test
    /// skips) where none is installed.
    struct Server(Child, u16);

    impl Server {
        fn start(extra: &[&str]) -> Option<Server> {
            let bin = "/usr/bin/redis-server";
            if !std::path::Path::new(bin).exists() {
                eprintln!("skipped: no {bin}");
                return None;
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
                .args(extra)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(Server(child, port))
        }

        fn bridge(&self, userinfo: &str, db: u32) -> Bridge {
            let url = format!("redis://{userinfo}127.0.0.1:{}/{db}", self.1);
            let settings = Settings {
                url: RedisUrl::parse(&url).unwrap(),
                prefix: b"t:".to_vec(),
            };
            Bridge::new(settings, Arc::new(|| {}), Instant::now())
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    type Got = Vec<(Vec<u8>, bool, Vec<u8>)>;

    /// Poll every bridge (both sockets, as if ready) at least once, until
    /// `done` holds.
    fn drive(bridges: &mut [&mut Bridge], got: &mut [Got], mut done: impl FnMut(&[Got]) -> bool) {
        let start = Instant::now();
        loop {
            for (b, got) in bridges.iter_mut().zip(got.iter_mut()) {
                for side in [Side::Subscriber, Side::Publisher] {
                    b.poll(
                        Some((side, true, true)),
                        Instant::now(),
                        &mut |t, bin, d| got.push((t.to_vec(), bin, d.to_vec())),
                    );
                }
            }
            if done(got) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn up(b: &mut Bridge) -> bool {
        std::iter::from_fn(|| b.next_event()).any(|e| e == Event::Connected)
    }

    #[test]
    fn a_publish_reaches_the_other_bridge_once_and_not_its_own() {
        let Some(server) = Server::start(&[]) else {
            return;
        };
        let (mut a, mut b) = (server.bridge("", 0), server.bridge("", 0));
        assert!(!a.stats().connected);
        a.publish(b"news", false, b"too early");
        assert_eq!(a.stats().dropped, 1);
        a.subscribe(b"news");
        b.subscribe(b"news");
        let mut got = vec![Got::new(), Got::new()];
        let (mut a_up, mut b_up) = (false, false);
        let start = Instant::now();
        while !(a_up && b_up) {
            assert!(start.elapsed() < Duration::from_secs(10));
            drive(&mut [&mut a, &mut b], &mut got, |_| true);
            a_up |= up(&mut a);
            b_up |= up(&mut b);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(a.stats().channels, 1);
        a.publish(b"news", false, b"hello");
        a.publish(b"news", true, b"\xff");
        drive(&mut [&mut a, &mut b], &mut got, |g| g[1].len() == 2);
        assert_eq!(
            got[1],
            [
                (b"news".to_vec(), false, b"hello".to_vec()),
                (b"news".to_vec(), true, b"\xff".to_vec())
            ]
        );
        assert!(got[0].is_empty(), "its own messages are skipped");
        assert_eq!((a.stats().published, b.stats().received), (2, 2));
        a.stop(true);
        assert!(a.interest(Side::Subscriber).fd.is_none() && a.deadline().is_none());
    }

    #[test]
    fn login_failures_are_reported_and_retried() {
        let Some(server) = Server::start(&["--requirepass", "sesame"]) else {
            return;
        };
        let mut bridges = [
            server.bridge(":wrong@", 0),
            server.bridge("", 0),
            server.bridge(":sesame@", 2),
        ];
        let mut got = vec![Got::new(), Got::new(), Got::new()];
        let mut events: Vec<Vec<Event>> = vec![vec![], vec![], vec![]];
        let start = Instant::now();
        while events.iter().any(Vec::is_empty) {
            assert!(start.elapsed() < Duration::from_secs(10));
            let [x, y, z] = &mut bridges;
            drive(&mut [x, y, z], &mut got, |_| true);
            for (b, e) in bridges.iter_mut().zip(events.iter_mut()) {
                e.extend(std::iter::from_fn(|| b.next_event()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            matches!(&events[0][0], Event::Error(t) if t.starts_with("Redis AUTH failed: WRONGPASS")),
            "{:?}",
            events[0]
        );
        assert!(
            matches!(&events[1][0], Event::Error(t) if t.starts_with("Redis PING failed: NOAUTH")),
            "{:?}",
            events[1]
        );
        assert_eq!(events[2][0], Event::Connected);
        // the failed ones wait for their retry
        assert!(
            bridges[0].deadline().is_some() && bridges[0].interest(Side::Publisher).fd.is_none()
        );
    }

    #[test]
    fn a_refused_connection_is_one_error_then_a_backoff() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings {
            url: RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap(),
            prefix: b"t:".to_vec(),
        };
        let mut b = Bridge::new(settings, Arc::new(|| {}), Instant::now());
        let mut got = vec![Got::new()];
        let start = Instant::now();
        let err = loop {
            assert!(start.elapsed() < Duration::from_secs(10));
            drive(&mut [&mut b], &mut got, |_| true);
            if let Some(e) = b.next_event() {
                break e;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(
            matches!(&err, Event::Error(t) if t.starts_with("cannot connect to Redis at 127.0.0.1:")),
            "{err:?}"
        );
        assert_eq!(b.next_event(), None, "one report per failure");
        let wait = b
            .deadline()
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(
            wait <= Duration::from_millis(120),
            "the first retry is soon: {wait:?}"
        );
    }
}
