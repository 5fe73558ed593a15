//! Happy Eyeballs (RFC 8305): reaching a host whose name has several
//! addresses by trying them staggered and in parallel, so that one that
//! never answers costs a quarter of a second rather than the whole
//! connect timeout.
//!
//! [`Schedule`] is the pure part: which address is tried when.  [`Race`]
//! runs it on real sockets: every attempt started is kept going until one
//! connects; that one wins and the others are closed.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::net::link::Link;

/// How long an attempt has before the next address is tried as well (RFC
/// 8305 §5 recommends 250 ms).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The order addresses are tried in (RFC 8305 §4): IPv6 first, then the
/// families alternate, each family keeping the resolver's order.
pub fn interleave(addrs: Vec<SocketAddr>) -> VecDeque<SocketAddr> {
    let (v6, v4): (Vec<_>, Vec<_>) = addrs.into_iter().partition(SocketAddr::is_ipv6);
    let mut order = VecDeque::with_capacity(v6.len() + v4.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return order,
            (a, b) => order.extend(a.into_iter().chain(b)),
        }
    }
}

/// When each address is tried: the first at once, each next one
/// [`ATTEMPT_DELAY`] after the previous started, or at once when an
/// attempt fails.
#[derive(Debug)]
pub struct Schedule {
    waiting: VecDeque<SocketAddr>,
    /// When the next waiting address is due; `None`: now.
    next_at: Option<Instant>,
}

impl Schedule {
    pub fn new(addrs: Vec<SocketAddr>) -> Schedule {
        Schedule {
            waiting: interleave(addrs),
            next_at: None,
        }
    }

    /// The address to try now, if one is due.
    pub fn due(&mut self, now: Instant) -> Option<SocketAddr> {
        if self.next_at.is_some_and(|at| now < at) {
            return None;
        }
        let addr = self.waiting.pop_front()?;
        self.next_at = Some(now + ATTEMPT_DELAY);
        Some(addr)
    }

    /// An attempt failed: the next address is due at once.
    pub fn failed(&mut self) {
        self.next_at = None;
    }

    /// When the next address is due, while one waits.
    pub fn wake_at(&self) -> Option<Instant> {
        if self.waiting.is_empty() {
            None
        } else {
            self.next_at
        }
    }

    pub fn exhausted(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// What the event loop watches while a race runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    pub fd: RawFd,
    /// Readability (of the poll of all attempts) rather than the
    /// writability of the one attempt's socket.
    pub readable: bool,
}

/// What a step of the race came to.
#[derive(Debug)]
pub enum Step {
    /// Attempts are under way.
    Waiting,
    /// This address took the connection: the socket is the link's now.
    Connected(SocketAddr),
    /// Every address failed; the last error, if any attempt was made.
    Failed(Option<io::Error>),
}

/// Connection attempts to a host's addresses on the [`Schedule`].  While
/// one attempt runs, the loop watches its socket; from the second on, a
/// poll of them all (an epoll descriptor, readable when any attempt
/// is).
pub struct Race {
    schedule: Schedule,
    /// The sockets of the attempts under way, oldest first.
    attempts: Vec<TcpStream>,
    poll: Option<(Poll, Events)>,
    last_error: Option<io::Error>,
}

impl Race {
    pub fn new(addrs: Vec<SocketAddr>) -> Race {
        Race {
            schedule: Schedule::new(addrs),
            attempts: Vec::new(),
            poll: None,
            last_error: None,
        }
    }

    pub fn watch(&self) -> Option<Watch> {
        match (&self.poll, self.attempts.first()) {
            (Some((poll, _)), _) => Some(Watch {
                fd: poll.as_raw_fd(),
                readable: true,
            }),
            (None, Some(attempt)) => Some(Watch {
                fd: attempt.as_raw_fd(),
                readable: false,
            }),
            (None, None) => None,
        }
    }

    /// When the next address is due, while one waits.
    pub fn wake_at(&self) -> Option<Instant> {
        self.schedule.wake_at()
    }

    /// Look at every attempt, then start what is due.  The winner's
    /// socket goes to `link`; a socket the loop may still watch is retired
    /// there, not closed.
    pub fn advance(&mut self, now: Instant, link: &mut Link) -> Step {
        if let Some((poll, events)) = self.poll.as_mut() {
            // Only to consume the readiness; every attempt is looked at.
            let _ = poll.poll(events, Some(Duration::ZERO));
        }
        let mut i = 0;
        while i < self.attempts.len() {
            match outcome(&self.attempts[i]) {
                None => i += 1,
                Some(Ok(peer)) => return self.won(i, peer, link),
                Some(Err(e)) => {
                    let lost = self.attempts.remove(i);
                    if self.poll.is_none() {
                        link.retire(Box::new(lost));
                    }
                    self.last_error = Some(e);
                    self.schedule.failed();
                }
            }
        }
        self.start_due(now, link);
        if self.attempts.is_empty() && self.schedule.exhausted() {
            return Step::Failed(self.last_error.take());
        }
        Step::Waiting
    }

    fn start_due(&mut self, now: Instant, link: &mut Link) {
        while let Some(addr) = self.schedule.due(now) {
            let started = TcpStream::connect(addr).and_then(|socket| self.add(socket));
            match started {
                Ok(()) => link.socket_gen = link.socket_gen.wrapping_add(1),
                Err(e) => {
                    self.last_error = Some(e);
                    self.schedule.failed();
                }
            }
        }
    }

    /// A started attempt joins the race: from the second on, all are
    /// watched through one poll.
    fn add(&mut self, mut socket: TcpStream) -> io::Result<()> {
        let _ = socket.set_nodelay(true);
        if self.poll.is_none() && !self.attempts.is_empty() {
            let poll = Poll::new()?;
            for attempt in &mut self.attempts {
                poll.registry()
                    .register(attempt, Token(0), Interest::WRITABLE)?;
            }
            self.poll = Some((poll, Events::with_capacity(8)));
        }
        if let Some((poll, _)) = &self.poll {
            poll.registry()
                .register(&mut socket, Token(0), Interest::WRITABLE)?;
        }
        self.attempts.push(socket);
        Ok(())
    }

    fn won(&mut self, i: usize, peer: SocketAddr, link: &mut Link) -> Step {
        let mut winner = self.attempts.swap_remove(i);
        if let Some((poll, _)) = &self.poll {
            let _ = poll.registry().deregister(&mut winner);
            // The loop watches the poll, not these: close them now.
            self.attempts.clear();
            link.socket_gen = link.socket_gen.wrapping_add(1);
        }
        link.socket = Some(winner);
        Step::Connected(peer)
    }
}

/// How a connect attempt stands: `None` while it is under way.
fn outcome(socket: &TcpStream) -> Option<io::Result<SocketAddr>> {
    match socket.take_error() {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match socket.peer_addr() {
            Ok(peer) => Some(Ok(peer)),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_first_then_alternating() {
        let order = interleave(vec![
            addr("10.0.0.1:80"),
            addr("10.0.0.2:80"),
            addr("10.0.0.3:80"),
            addr("[::1]:80"),
            addr("[::2]:80"),
        ]);
        let order: Vec<String> = order.iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            [
                "[::1]:80",
                "10.0.0.1:80",
                "[::2]:80",
                "10.0.0.2:80",
                "10.0.0.3:80"
            ]
        );
        assert!(interleave(Vec::new()).is_empty());
    }

    #[test]
    fn one_attempt_per_delay_while_none_fails() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![
            addr("127.0.0.1:1"),
            addr("[::1]:1"),
            addr("127.0.0.2:1"),
        ]);
        assert_eq!(s.wake_at(), None, "the first is due at once");
        assert_eq!(s.due(t0), Some(addr("[::1]:1")));
        assert_eq!(s.due(t0), None, "the next waits");
        assert_eq!(s.wake_at(), Some(t0 + ATTEMPT_DELAY));
        assert_eq!(s.due(t0 + ATTEMPT_DELAY - Duration::from_millis(1)), None);
        let t1 = t0 + ATTEMPT_DELAY;
        assert_eq!(s.due(t1), Some(addr("127.0.0.1:1")));
        assert_eq!(s.due(t1), None);
        // Woken late: the next delay counts from when the attempt started.
        let t2 = t1 + ATTEMPT_DELAY + Duration::from_millis(40);
        assert_eq!(s.due(t2), Some(addr("127.0.0.2:1")));
        assert!(s.exhausted());
        assert_eq!(s.wake_at(), None, "nothing left to start");
        assert_eq!(s.due(t2 + ATTEMPT_DELAY), None);
    }

    #[test]
    fn a_failure_starts_the_next_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![addr("[::1]:1"), addr("127.0.0.1:1"), addr("[::2]:1")]);
        assert_eq!(s.due(t0), Some(addr("[::1]:1")));
        let t1 = t0 + Duration::from_millis(10);
        s.failed();
        assert_eq!(s.due(t1), Some(addr("127.0.0.1:1")));
        assert_eq!(s.due(t1), None, "one at a time again");
        assert_eq!(s.wake_at(), Some(t1 + ATTEMPT_DELAY));
        s.failed();
        assert_eq!(s.due(t1), Some(addr("[::2]:1")));
        assert!(s.exhausted());
    }

    /// A port on ::1 where a connect hangs: a listener with a backlog of
    /// 0 whose one queued connection is never accepted, so the kernel
    /// drops further SYNs.  The listener and that connection are returned
    /// to keep it so.
    fn hanging_v6() -> Option<(std::net::TcpListener, std::net::TcpStream, SocketAddr)> {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).ok()?;
        socket.bind(&addr("[::1]:0").into()).ok()?;
        socket.listen(0).ok()?;
        let listener: std::net::TcpListener = socket.into();
        let target = listener.local_addr().unwrap();
        let queued = std::net::TcpStream::connect(target).ok()?;
        Some((listener, queued, target))
    }

    /// Advance `race` until it ends, with the clock frozen at `now`: only
    /// failures can start a next attempt.
    fn run_at(race: &mut Race, link: &mut Link, now: Instant) -> Step {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match race.advance(now, link) {
                Step::Waiting => assert!(Instant::now() < end, "the race did not end"),
                done => return done,
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_hanging_ipv6_address_loses_to_a_live_ipv4_one() {
        let Some((_listener, _queued, v6)) = hanging_v6() else {
            eprintln!("no IPv6 loopback: skipped");
            return;
        };
        let probe = std::net::TcpStream::connect_timeout(&v6, Duration::from_millis(100));
        assert!(
            matches!(&probe, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "a connect to the full listener must hang: {probe:?}"
        );
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v4 = live.local_addr().unwrap();
        let mut link = Link::new(true);
        let t0 = Instant::now();
        let mut race = Race::new(vec![v4, v6]);
        assert!(matches!(race.advance(t0, &mut link), Step::Waiting));
        assert!(
            !race.watch().unwrap().readable,
            "one attempt: its socket is watched"
        );
        assert_eq!(race.wake_at(), Some(t0 + ATTEMPT_DELAY));
        // Until the delay passes, only the ::1 attempt runs, and it hangs.
        for _ in 0..20 {
            assert!(matches!(race.advance(t0, &mut link), Step::Waiting));
            assert_eq!(race.attempts.len(), 1);
        }
        let t1 = t0 + ATTEMPT_DELAY;
        match run_at(&mut race, &mut link, t1) {
            Step::Connected(peer) => assert_eq!(peer, v4),
            other => panic!("{other:?}"),
        }
        assert_eq!(link.socket.as_ref().unwrap().peer_addr().unwrap(), v4);
        assert!(race.attempts.is_empty(), "the hanging attempt is closed");
        assert_eq!(link.socket_gen, 3, "attempt, poll of both, winner");
    }

    #[test]
    fn refused_addresses_are_tried_at_once_and_all_failing_fails() {
        let closed = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (a, b, c) = (closed(), closed(), closed());
        let mut link = Link::new(true);
        let mut race = Race::new(vec![a, b, c]);
        // The clock stands still: each next attempt started on a failure.
        match run_at(&mut race, &mut link, Instant::now()) {
            Step::Failed(Some(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("{other:?}"),
        }
        assert!(link.socket.is_none());
        assert!(matches!(
            Race::new(Vec::new()).advance(Instant::now(), &mut link),
            Step::Failed(None)
        ));
    }
}
