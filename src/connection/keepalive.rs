//! Keepalive of an open connection: a ping after a quiet interval, and
//! failing the connection when its pong does not come in time.

use std::time::{Duration, Instant};

use super::deadline::later;
use super::settings::SessionSettings;

/// Keepalive state of an open connection.
#[derive(Debug)]
pub(super) struct Keepalive {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) last_heard: Instant,
    pub(super) ping_sent: Option<Instant>,
}

/// What the keepalive wants when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tick {
    /// Send a ping (now counted as sent).
    Ping,
    /// The ping's pong did not come in time.
    TimedOut,
    /// Traffic came since: nothing yet.
    Wait,
}

impl Keepalive {
    pub(super) fn new(settings: &SessionSettings) -> Option<Keepalive> {
        let interval = settings.ping_interval?;
        Some(Keepalive {
            interval,
            timeout: settings.ping_timeout.unwrap_or(interval),
            last_heard: Instant::now(),
            ping_sent: None,
        })
    }

    /// When the keepalive next needs attention.
    pub(super) fn due(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => later(sent, self.timeout),
            None => later(self.last_heard, self.interval),
        }
    }

    /// The deadline passed at `now`.
    pub(super) fn tick(&mut self, now: Instant) -> Tick {
        match self.ping_sent {
            Some(sent) if now >= sent + self.timeout => Tick::TimedOut,
            None if now >= self.last_heard + self.interval => {
                self.ping_sent = Some(now);
                Tick::Ping
            }
            _ => Tick::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Pings and missing pongs between a client and a server over loopback.

    use super::*;
    use crate::connection::testing::*;
    use crate::connection::{ServerSettings, State};

    fn keepalive(interval_ms: u64) -> SessionSettings {
        SessionSettings {
            ping_interval: Some(Duration::from_millis(interval_ms)),
            ..SessionSettings::default()
        }
    }

    #[test]
    fn a_quiet_interval_pings_then_a_missing_pong_times_out() {
        let mut settings = keepalive(1000);
        settings.ping_timeout = Some(Duration::from_millis(500));
        let mut k = Keepalive::new(&settings).unwrap();
        let start = k.last_heard;
        let ms = |n| start + Duration::from_millis(n);
        assert_eq!(k.due(), ms(1000));
        assert_eq!(k.tick(ms(999)), Tick::Wait, "traffic moved it");
        assert_eq!(k.tick(ms(1000)), Tick::Ping);
        assert_eq!(k.due(), ms(1500));
        assert_eq!(k.tick(ms(1200)), Tick::Wait);
        assert_eq!(k.tick(ms(1500)), Tick::TimedOut);
        // The pong came: the interval starts over from what was heard.
        k.ping_sent = None;
        k.last_heard = ms(1400);
        assert_eq!(k.due(), ms(2400));
    }

    #[test]
    fn no_interval_no_keepalive() {
        assert!(Keepalive::new(&SessionSettings::default()).is_none());
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
    fn an_idle_connection_closes_with_1001() {
        let settings = SessionSettings {
            idle_timeout: Some(Duration::from_millis(50)),
            ..SessionSettings::default()
        };
        // Before the pair opens: the idle clock cannot start earlier.
        let before = Instant::now();
        let mut p = Pair::open_with(ServerSettings::default(), "127.0.0.1", settings);
        p.run_until(|p| p.client.state() == State::Closed);
        assert!(before.elapsed() >= Duration::from_millis(50));
        assert!(
            p.client_seen
                .iter()
                .any(|s| matches!(s, Seen::Closed(1001, _))),
            "{:?}",
            p.client_seen
        );
    }

    #[test]
    fn pings_keep_an_idle_timeout_away() {
        let settings = SessionSettings {
            idle_timeout: Some(Duration::from_millis(80)),
            ..keepalive(20)
        };
        let mut p = Pair::open_with(ServerSettings::default(), "127.0.0.1", settings);
        let until = Instant::now() + Duration::from_millis(300);
        p.run_until(|_| Instant::now() >= until);
        assert_eq!(p.client.state(), State::Connected);
        assert!(p.client.deadline_in().unwrap() <= Duration::from_millis(80));
    }
}
