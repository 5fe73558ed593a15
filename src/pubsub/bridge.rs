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
        deliver: &mut dyn FnMut(&[u8], bool, &[u8]),
    ) {
        if let Some((side, readable, writable)) = io {
            if let Err(e) = self.on_io(side, readable, writable, deliver) {
                self.fail(e, now);
            }
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
        deliver: &mut dyn FnMut(&[u8], bool, &[u8]),
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
        if writable {
            if let Err(e) = link.stream.on_writable() {
                if link.stream.is_connected() {
                    return Err(lost(&link.stream, e));
                }
                // refused: the next address, if the name had another
                let failed = link.stream.addr();
                *link = open(settings, wanted, side, addrs, link.addr + 1)
                    .map_err(|_| format!("cannot connect to Redis at {failed}: {e}"))?;
                return Ok(());
            }
        }
        if readable && link.stream.is_connected() {
            let open = link.stream.read().map_err(|e| lost(&link.stream, e))?;
            while let Some(reply) = link.stream.next_reply()? {
                let bytes = link.stream.reply_bytes();
                if side == Side::Subscriber {
                    if let Some((channel, payload)) = message(&reply, bytes) {
                        if let Some(topic) = channel.strip_prefix(settings.prefix.as_slice()) {
                            let m = envelope::decode(payload);
                            if m.origin != Some(*origin) {
                                stats.received += 1;
                                deliver(topic, m.binary, m.data);
                            }
                        }
                        continue;
                    }
                }
                if let Some(what) = link.setup.pop_front() {
                    if let RangeFrame::Error(e) = reply {
                        let text = String::from_utf8_lossy(&bytes[e.0..e.1]);
                        return Err(format!("Redis {what} failed: {text}"));
                    }
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
